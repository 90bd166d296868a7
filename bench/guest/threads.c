/* A guest for bench/threads.sh: one measurement per run, one number on
 * stdout. Built static by the script; run natively and in a sandbox.
 *
 *   threads pingpong N   N futex round trips between two threads (each
 *                        waits on one word for its turn, FUTEX_WAKEs the
 *                        other): mean round trip, us
 *   threads create N     N pthread_create + pthread_join of a thread that
 *                        returns at once, one after the other: mean, us
 *   threads condwake N   N wake-ups: a signaller thread sleeps 1 ms
 *                        (CLOCK_MONOTONIC, absolute), reads the clock (T)
 *                        and pthread_cond_signal()s a waiter that sits in
 *                        pthread_cond_timedwait (deadline 10 s away); the
 *                        waiter, back with the mutex, takes now - T:
 *                        median, us
 *   threads condtimeout N N pthread_cond_timedwait calls with a deadline
 *                        1 ms ahead that nobody signals: median lateness
 *                        (return time - deadline), us
 *   threads busy N       16 threads (more than the sandbox's 2 CPUs), each
 *                        making N getppid calls at once: wall time per
 *                        call, us (every call a VM exit, a CPU given back
 *                        and taken again while 14 wait in line)
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static struct timespec after(double us)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  long long ns = t.tv_nsec + (long long)(us * 1000);
  t.tv_sec += ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  return t;
}

static double ts_us(const struct timespec *t) { return t->tv_sec * 1e6 + t->tv_nsec / 1e3; }

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
  qsort(v, n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- futex ping-pong ---- */

static uint32_t turn; /* 0: the main thread's, 1: the other's */
static int rounds;

static void fwait(uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0); }
static void fwake(uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

/* Wait until turn is mine, then hand it over. */
static void play(uint32_t mine)
{
  uint32_t v;
  while ((v = __atomic_load_n(&turn, __ATOMIC_ACQUIRE)) != mine)
    fwait(&turn, v);
  __atomic_store_n(&turn, !mine, __ATOMIC_RELEASE);
  fwake(&turn);
}

static void *pong(void *arg)
{
  (void)arg;
  for (int i = 0; i < rounds; i++)
    play(1);
  return NULL;
}

static double pingpong(int n)
{
  pthread_t t;
  rounds = n;
  double t0 = now_us();
  if (pthread_create(&t, NULL, pong, NULL))
    exit(1);
  for (int i = 0; i < n; i++)
    play(0);
  pthread_join(t, NULL);
  return (now_us() - t0) / n;
}

/* ---- create + join ---- */

static void *nothing(void *arg) { return arg; }

static double create(int n)
{
  double t0 = now_us();
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL) || pthread_join(t, NULL))
      exit(1);
  }
  return (now_us() - t0) / n;
}

/* ---- condition variable wake-up and timeout ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int flag, waiting;
static double signalled; /* when the signal was sent, us */

static void *signaller(void *arg)
{
  int n = *(int *)arg;
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    while (!waiting) { /* the waiter is in its wait (it released mu there) */
      pthread_mutex_unlock(&mu);
      usleep(100);
      pthread_mutex_lock(&mu);
    }
    waiting = 0;
    pthread_mutex_unlock(&mu);
    struct timespec when = after(1000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, NULL) == EINTR)
      ;
    pthread_mutex_lock(&mu);
    flag = 1;
    signalled = now_us();
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static double condwake(int n)
{
  double *lat = calloc(n, sizeof *lat);
  pthread_t t;
  if (!lat || pthread_create(&t, NULL, signaller, &n))
    exit(1);
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    struct timespec dl = after(10e6);
    waiting = 1;
    while (!flag)
      if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT) {
        fprintf(stderr, "condwake: no signal in 10 s\n");
        exit(1);
      }
    lat[i] = now_us() - signalled;
    flag = 0;
    pthread_mutex_unlock(&mu);
  }
  pthread_join(t, NULL);
  return median(lat, n);
}

static double condtimeout(int n)
{
  double *late = calloc(n, sizeof *late);
  if (!late)
    exit(1);
  pthread_mutex_lock(&mu);
  for (int i = 0; i < n; i++) {
    struct timespec dl = after(1000);
    int e;
    while ((e = pthread_cond_timedwait(&cv, &mu, &dl)) == 0)
      ; /* nobody signals: a spurious wake-up waits on */
    if (e != ETIMEDOUT)
      exit(1);
    late[i] = now_us() - ts_us(&dl);
  }
  pthread_mutex_unlock(&mu);
  return median(late, n);
}

#define BUSY_THREADS 16
static void *busy_one(void *arg)
{
  int n = *(int *)arg;
  for (int i = 0; i < n; i++)
    syscall(SYS_getppid);
  return NULL;
}

static double busy(int n)
{
  pthread_t t[BUSY_THREADS];
  double t0 = now_us();
  for (int i = 0; i < BUSY_THREADS; i++)
    if (pthread_create(&t[i], NULL, busy_one, &n))
      exit(1);
  for (int i = 0; i < BUSY_THREADS; i++)
    pthread_join(t[i], NULL);
  return (now_us() - t0) / ((double)n * BUSY_THREADS);
}

int main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: %s pingpong|create|condwake|condtimeout|busy N\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[2]);
  if (n < 1)
    return 2;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&cv, &ca);
  double r;
  if (!strcmp(argv[1], "pingpong"))
    r = pingpong(n);
  else if (!strcmp(argv[1], "create"))
    r = create(n);
  else if (!strcmp(argv[1], "condwake"))
    r = condwake(n);
  else if (!strcmp(argv[1], "condtimeout"))
    r = condtimeout(n);
  else if (!strcmp(argv[1], "busy"))
    r = busy(n);
  else
    return 2;
  printf("%.3f\n", r);
  return 0;
}
