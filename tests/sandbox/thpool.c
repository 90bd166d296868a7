/* A program paused with threads in every state a template can catch them
 * in (tests/sandbox-thread-templates.sh): workers of a pool blocked on a
 * condition variable (an untimed futex wait), a thread computing in its
 * own code with live FPU registers, one in nanosleep, one in a timed
 * condition wait, one in sigwait, two handing a token back and forth
 * (condition variable ping-pong: system calls in flight at the pause) and
 * one making system calls in a loop. Main then reads a line (the template's
 * ready point: a read of fd 0). In each child it hands the pool N jobs,
 * stops every thread and prints what each saw: the output is the same
 * natively and in every child of the template for the same input.
 *
 * Usage: thpool    (one line on stdin: N, the jobs to run) */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NW 3
#define MAXJ 64
#define NT 11 /* main and 10 threads */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER,
                      tw_cv = PTHREAD_COND_INITIALIZER;
static long job[MAXJ], result[MAXJ];
static int njob, next_job, ndone, quit;
static __thread int tls_id = -1;
static atomic_int ready, stop;
static pid_t tids[NT];

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void hello(int id)
{
  tls_id = id;
  tids[id] = gettid_();
  atomic_fetch_add(&ready, 1);
}

/* The thread kept its tid and its TLS across the pause. */
static long bye(int id) { return tls_id == id && tids[id] == gettid_() ? id : -1000 - id; }

static void *worker(void *a)
{
  hello((int)(long)a);
  pthread_mutex_lock(&mu);
  for (;;) {
    while (next_job == njob && !quit)
      pthread_cond_wait(&work_cv, &mu);
    if (next_job == njob)
      break;
    int k = next_job++;
    pthread_mutex_unlock(&mu);
    long r = 0;
    for (long i = 1; i <= job[k] * 1000; i++)
      r = (r * 31 + i) % 1000003;
    pthread_mutex_lock(&mu);
    result[k] = r;
    ndone++;
    pthread_cond_broadcast(&done_cv);
  }
  pthread_mutex_unlock(&mu);
  return (void *)bye((int)(long)a);
}

/* b == 2a + 1 throughout, in registers: a vCPU state lost or mixed up at
 * the pause breaks it. */
static double fpu_a, fpu_b;
static void *spinner(void *arg)
{
  hello((int)(long)arg);
  double a = 1, b = 3;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    a += 1.0;
    b += 2.0;
    if (a > 1e9) {
      a -= 1e9;
      b -= 2e9;
    }
  }
  fpu_a = a;
  fpu_b = b;
  return (void *)bye((int)(long)arg);
}

static void *sleeper(void *arg)
{
  hello((int)(long)arg);
  while (!atomic_load(&stop)) {
    struct timespec ts = {0, 3000000};
    nanosleep(&ts, NULL);
  }
  return (void *)bye((int)(long)arg);
}

static void *timedwaiter(void *arg)
{
  hello((int)(long)arg);
  pthread_mutex_lock(&mu);
  while (!quit) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 20000000;
    if (dl.tv_nsec >= 1000000000) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&tw_cv, &mu, &dl);
  }
  pthread_mutex_unlock(&mu);
  return (void *)bye((int)(long)arg);
}

static int got_sig;
static void *sigwaiter(void *arg)
{
  hello((int)(long)arg);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  int sig = 0;
  sigwait(&s, &sig);
  got_sig = sig;
  return (void *)bye((int)(long)arg);
}

/* Ping-pong: thread 8 moves turn 0 -> 1, thread 9 1 -> 0, each counting
 * its moves; at any time a8 == a9 or a8 == a9 + 1. */
static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc = PTHREAD_COND_INITIALIZER;
static int turn;
static long moves[2];
static void *ponger(void *arg)
{
  int id = (int)(long)arg, me = id - 8;
  hello(id);
  pthread_mutex_lock(&pm);
  while (!atomic_load(&stop)) {
    while (turn != me && !atomic_load(&stop))
      pthread_cond_wait(&pc, &pm);
    if (atomic_load(&stop))
      break;
    moves[me]++;
    turn = !me;
    pthread_cond_broadcast(&pc);
  }
  pthread_cond_broadcast(&pc);
  pthread_mutex_unlock(&pm);
  return (void *)bye(id);
}

static long calls;
static void *caller(void *arg)
{
  hello((int)(long)arg);
  while (!atomic_load(&stop)) {
    if (getppid() < 0)
      return NULL;
    calls++;
  }
  return (void *)bye((int)(long)arg);
}

static void *late(void *arg)
{
  (void)arg;
  return (void *)(long)gettid_();
}

int main(void)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  tls_id = 0;
  tids[0] = gettid_();
  pthread_t th[NT];
  void *(*fn[NT])(void *) = {NULL,        worker,    worker, worker, spinner, sleeper,
                             timedwaiter, sigwaiter, ponger, ponger, caller};
  for (int i = 1; i < NT; i++)
    if (pthread_create(&th[i], NULL, fn[i], (void *)(long)i)) {
      printf("pthread_create %d failed\n", i);
      return 1;
    }
  while (atomic_load(&ready) < NT - 1)
    sched_yield();
  /* Warm the pool up: two jobs done before the pause. */
  pthread_mutex_lock(&mu);
  job[njob++] = 1;
  job[njob++] = 2;
  pthread_cond_broadcast(&work_cv);
  while (ndone < 2)
    pthread_cond_wait(&done_cv, &mu);
  pthread_mutex_unlock(&mu);
  printf("%d threads up, 2 jobs done\n", NT);
  fflush(stdout);

  char line[64];
  if (!fgets(line, sizeof line, stdin)) /* the template pauses here */
    return 2;
  int n = atoi(line);
  if (n < 0 || n > MAXJ - 2)
    return 3;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < n; i++)
    job[njob++] = 3 + i;
  pthread_cond_broadcast(&work_cv);
  while (ndone < njob)
    pthread_cond_wait(&done_cv, &mu);
  long sum = 0;
  for (int i = 0; i < njob; i++)
    sum = (sum * 7 + result[i]) % 1000000007;
  quit = 1;
  pthread_cond_broadcast(&work_cv);
  pthread_cond_broadcast(&tw_cv);
  pthread_mutex_unlock(&mu);
  pthread_mutex_lock(&pm);
  atomic_store(&stop, 1);
  pthread_cond_broadcast(&pc);
  pthread_mutex_unlock(&pm);
  pthread_kill(th[7], SIGUSR1);
  printf("%d jobs, checksum %ld\n", njob, sum);
  for (int i = 1; i < NT; i++) {
    void *r;
    pthread_join(th[i], &r);
    printf("thread %d: %ld\n", i, (long)r);
  }
  printf("fpu: %s\n", fpu_b == 2 * fpu_a + 1 && fpu_a >= 1 ? "kept" : "LOST");
  printf("sigwait: %d\n", got_sig);
  printf("ping-pong: %s\n", moves[0] > 0 && (moves[0] == moves[1] || moves[0] == moves[1] + 1) ? "consistent" : "BROKEN");
  printf("system call loop: %s\n", calls > 0 ? "ran" : "did not run");
  printf("main: tls %d, tid %s\n", tls_id, tids[0] == gettid_() && tids[0] == getpid() ? "kept" : "changed");
  bool distinct = true;
  for (int i = 0; i < NT; i++)
    for (int j = 0; j < i; j++)
      distinct &= tids[i] != tids[j];
  pthread_t lt;
  void *ltid;
  pthread_create(&lt, NULL, late, NULL);
  pthread_join(lt, &ltid);
  for (int i = 0; i < NT; i++)
    distinct &= tids[i] != (pid_t)(long)ltid;
  printf("tids distinct (and a new thread's): %s\n", distinct ? "yes" : "no");
  return 0;
}
