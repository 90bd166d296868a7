/* A program for fork benchmarks of threaded templates (bench/thread-fork.sh):
 * `idlethreads K` starts K-1 threads that wait on a condition variable
 * (as a thread pool's idle workers do), then reads a line from stdin (the
 * template's ready point); on it, prints "ok K" and exits (exit_group ends
 * the waiting threads). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int up;

static void *idle(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&mu);
  up++;
  pthread_cond_broadcast(&cv);
  for (;;)
    pthread_cond_wait(&cv, &mu);
  return NULL;
}

int main(int argc, char **argv)
{
  int k = argc > 1 ? atoi(argv[1]) : 1;
  for (int i = 1; i < k; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL))
      return 1;
  }
  pthread_mutex_lock(&mu);
  while (up < k - 1)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  char line[64];
  if (!fgets(line, sizeof line, stdin))
    return 2;
  printf("ok %d\n", k);
  return 0;
}
