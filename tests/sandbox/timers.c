/* Timers, signals and waits for tests/sandbox-signals.sh: argv[1] picks the
 * case. Built static; run natively and in a sandbox, the outputs and exit
 * statuses must be the same. Timing is checked here (a line says "ok" or
 * what was measured), so the output is deterministic. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired, flag;

static void on_sig(int sig)
{
  (void)sig;
  fired++;
  flag = 1;
}

static void handle(int sig, int flags)
{
  struct sigaction sa = {.sa_handler = on_sig, .sa_flags = flags};
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void arm(int which, long value_us, long interval_us)
{
  struct itimerval it = {{interval_us / 1000000, interval_us % 1000000}, {value_us / 1000000, value_us % 1000000}};
  if (setitimer(which, &it, NULL) < 0)
    perror("setitimer");
}

/* "ok" if ms is about want (generous above: a busy machine). */
static const char *near(double ms, double want)
{
  static char buf[64];
  if (ms >= want - 2 && ms < want + 400)
    return "ok";
  snprintf(buf, sizeof buf, "took %.1f ms, want %.0f", ms, want);
  return buf;
}

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts, uint32_t val3)
{
  return syscall(SYS_futex, w, op, val, ts, NULL, val3);
}

static struct timespec after_ms(clockid_t c, long ms)
{
  struct timespec t;
  clock_gettime(c, &t);
  t.tv_nsec += ms * 1000000;
  t.tv_sec += t.tv_nsec / 1000000000;
  t.tv_nsec %= 1000000000;
  return t;
}

int main(int argc, char **argv)
{
  const char *what = argc > 1 ? argv[1] : "";
  setvbuf(stdout, NULL, _IONBF, 0);
  if (!strcmp(what, "alarm-kill")) { /* a CPU loop, no system call: the kick delivers it */
    alarm(1);
    for (;;)
      ;
  }
  if (!strcmp(what, "alarm-pause")) {
    arm(ITIMER_REAL, 100000, 0);
    pause();
    return 3;
  }
  if (!strcmp(what, "flag-loop")) {
    handle(SIGALRM, 0);
    double t = now_ms();
    alarm(1);
    while (!flag)
      ;
    printf("the loop was broken by SIGALRM: %s\n", near(now_ms() - t, 1000));
    return 0;
  }
  if (!strcmp(what, "interval")) { /* interval real|virtual|prof N: busy until N signals */
    const char *w = argc > 2 ? argv[2] : "real";
    int n = argc > 3 ? atoi(argv[3]) : 5;
    int which = !strcmp(w, "virtual") ? ITIMER_VIRTUAL : !strcmp(w, "prof") ? ITIMER_PROF : ITIMER_REAL;
    int sig = which == ITIMER_VIRTUAL ? SIGVTALRM : which == ITIMER_PROF ? SIGPROF : SIGALRM;
    handle(sig, SA_RESTART);
    double t = now_ms();
    arm(which, 20000, 20000);
    while (fired < n) /* no system call: each signal comes at a kick */
      ;
    arm(which, 0, 0);
    int got = fired;
    printf("%s: fired %d times (%s)\n", w, got, near(now_ms() - t, 20.0 * n));
    return got == n ? 0 : 1;
  }
  if (!strcmp(what, "interval-pause")) { /* an interval timer wakes pause() each time */
    handle(SIGALRM, 0);
    double t = now_ms();
    arm(ITIMER_REAL, 20000, 20000);
    int eintr = 0;
    while (fired < 4)
      eintr += pause() == -1 && errno == EINTR;
    arm(ITIMER_REAL, 0, 0);
    printf("pause woken %d times with EINTR (%s)\n", eintr, near(now_ms() - t, 80));
    return 0;
  }
  if (!strcmp(what, "getitimer")) {
    struct itimerval it;
    memset(&it, 0xa5, sizeof it);
    printf("getitimer unarmed: %d", getitimer(ITIMER_REAL, &it));
    printf(" %ld %ld %ld %ld\n", (long)it.it_value.tv_sec, (long)it.it_value.tv_usec, (long)it.it_interval.tv_sec,
           (long)it.it_interval.tv_usec);
    arm(ITIMER_REAL, 2000000, 500000);
    usleep(100000);
    getitimer(ITIMER_REAL, &it);
    double v = it.it_value.tv_sec * 1e3 + it.it_value.tv_usec / 1e3;
    printf("ITIMER_REAL after 100 ms of 2 s: %s, interval %ld.%06ld\n",
           v > 1500 && v <= 1900 ? "1.5-1.9 s left" : "wrong", (long)it.it_interval.tv_sec,
           (long)it.it_interval.tv_usec);
    printf("alarm(5) = %u\n", alarm(5));
    printf("alarm(0) = %u\n", alarm(0));
    getitimer(ITIMER_REAL, &it);
    printf("after alarm(0): %ld %ld\n", (long)it.it_value.tv_sec, (long)it.it_value.tv_usec);
    arm(ITIMER_VIRTUAL, 5000000, 0);
    double t = now_ms();
    while (now_ms() - t < 200) /* CPU time */
      ;
    getitimer(ITIMER_VIRTUAL, &it);
    v = it.it_value.tv_sec * 1e3 + it.it_value.tv_usec / 1e3;
    printf("ITIMER_VIRTUAL after 200 ms of computing: %s\n", v > 4000 && v < 4950 ? "counted down" : "wrong");
    errno = 0;
    int r = getitimer(3, &it);
    printf("getitimer(3): %d %s\n", r, strerrorname_np(errno));
    return 0;
  }
  if (!strcmp(what, "nanosleep")) {
    handle(SIGALRM, 0);
    arm(ITIMER_REAL, 50000, 0);
    struct timespec req = {2, 0}, rem = {0, 0};
    double t = now_ms();
    int r = nanosleep(&req, &rem);
    int e = errno;
    double rm = rem.tv_sec * 1e3 + rem.tv_nsec / 1e6;
    printf("nanosleep(2 s), alarm 50 ms: %d %s, handler ran %d, %s, rem %s\n", r, strerrorname_np(e), fired,
           near(now_ms() - t, 50), rm > 1500 && rm < 1960 ? "ok" : "wrong");
    /* SA_RESTART does not restart nanosleep: still EINTR */
    handle(SIGALRM, SA_RESTART);
    arm(ITIMER_REAL, 50000, 0);
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
    printf("clock_nanosleep with SA_RESTART: %s, handler ran %d\n", strerrorname_np(r), fired);
    return 0;
  }
  if (!strcmp(what, "futex")) {
    uint32_t w = 7;
    double t = now_ms();
    struct timespec ts = after_ms(CLOCK_MONOTONIC, 50);
    long r = futex(&w, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 7, &ts, FUTEX_BITSET_MATCH_ANY);
    printf("FUTEX_WAIT_BITSET monotonic +50 ms: %ld %s %s\n", r, strerrorname_np(errno), near(now_ms() - t, 50));
    t = now_ms();
    ts = after_ms(CLOCK_REALTIME, 50);
    r = futex(&w, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME, 7, &ts, FUTEX_BITSET_MATCH_ANY);
    printf("FUTEX_WAIT_BITSET realtime +50 ms: %ld %s %s\n", r, strerrorname_np(errno), near(now_ms() - t, 50));
    t = now_ms();
    ts = (struct timespec){0, 50000000};
    r = futex(&w, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, &ts, 0);
    printf("FUTEX_WAIT relative 50 ms: %ld %s %s\n", r, strerrorname_np(errno), near(now_ms() - t, 50));
    r = futex(&w, FUTEX_WAIT, 8, &ts, 0);
    printf("value mismatch: %ld %s\n", r, strerrorname_np(errno));
    r = futex((uint32_t *)8, FUTEX_WAIT, 8, &ts, 0);
    printf("bad pointer: %ld %s\n", r, strerrorname_np(errno));
    /* glibc's timed waits on top of it */
    sem_t s;
    sem_init(&s, 0, 0);
    t = now_ms();
    ts = after_ms(CLOCK_REALTIME, 50);
    r = sem_timedwait(&s, &ts);
    printf("sem_timedwait +50 ms: %ld %s %s\n", r, strerrorname_np(errno), near(now_ms() - t, 50));
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    t = now_ms();
    ts = after_ms(CLOCK_REALTIME, 50);
    int e = pthread_cond_timedwait(&c, &m, &ts);
    printf("pthread_cond_timedwait +50 ms: %s %s\n", strerrorname_np(e), near(now_ms() - t, 50));
    /* an untimed wait a signal handler interrupts (no SA_RESTART): EINTR */
    handle(SIGALRM, 0);
    arm(ITIMER_REAL, 50000, 0);
    t = now_ms();
    r = futex(&w, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, NULL, 0);
    printf("untimed FUTEX_WAIT, alarm 50 ms: %ld %s, handler ran %d, %s\n", r, strerrorname_np(errno), fired,
           near(now_ms() - t, 50));
    return 0;
  }
  if (!strcmp(what, "sigsuspend")) {
    handle(SIGALRM, 0);
    sigset_t block, empty, after;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);
    arm(ITIMER_REAL, 50000, 0);
    double t = now_ms();
    int r = sigsuspend(&empty);
    int e = errno;
    sigprocmask(SIG_BLOCK, NULL, &after);
    printf("sigsuspend: %d %s, handler ran %d, %s, SIGALRM blocked again: %d\n", r, strerrorname_np(e), fired,
           near(now_ms() - t, 50), sigismember(&after, SIGALRM));
    return 0;
  }
  if (!strcmp(what, "poll")) {
    double t = now_ms();
    int r = poll(NULL, 0, 50);
    printf("poll(NULL, 0, 50): %d %s\n", r, near(now_ms() - t, 50));
    handle(SIGALRM, 0);
    arm(ITIMER_REAL, 50000, 0);
    t = now_ms();
    r = poll(NULL, 0, 2000);
    printf("poll(NULL, 0, 2000), alarm 50 ms: %d %s, handler ran %d, %s\n", r, strerrorname_np(errno), fired,
           near(now_ms() - t, 50));
    return 0;
  }
  fprintf(stderr, "usage: timers CASE\n");
  return 2;
}
