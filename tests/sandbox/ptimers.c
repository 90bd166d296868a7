/* POSIX timers, timerfd, rt_sigtimedwait and clock_nanosleep: a static
 * program run natively and in a sandbox by tests/sandbox-ptimers.sh, whose
 * output (no timings, only checks of them) must be the same. Each line says
 * what was seen; a timing outside its bound prints what it measured. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t hits, code, val, tid, ovr;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
  (void)sig;
  (void)uc;
  hits++;
  code = si->si_code;
  val = si->si_value.sival_int;
  tid = si->si_timerid;
  ovr += si->si_overrun;
}

static double ms_since(const struct timespec *t0)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void check_ms(const char *what, double ms, double lo, double hi)
{
  if (ms >= lo && ms < hi)
    printf("%s: in [%g, %g) ms\n", what, lo, hi);
  else
    printf("%s: %.1f ms, outside [%g, %g)\n", what, ms, lo, hi);
}

int main(void)
{
  struct timespec t0;

  /* 1. SIGEV_SIGNAL with a value: the handler's siginfo */
  struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGRTMIN, &sa, NULL);
  struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 1234};
  timer_t t;
  if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0) {
    printf("timer_create: %s\n", strerror(errno));
    return 1;
  }
  printf("timer_create: id %ld\n", (long)(intptr_t)t);
  struct itimerspec its = {{0, 10000000}, {0, 10000000}};
  timer_settime(t, 0, &its, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (hits < 5)
    ; /* a loop with no system call: the kick exit delivers */
  check_ms("5 expirations of a 10 ms timer in a busy loop", ms_since(&t0), 45, 1000);
  printf("handler: si_code %s, si_value %d, si_timerid %d\n", code == SI_TIMER ? "SI_TIMER" : "other", (int)val,
         (int)tid);
  struct itimerspec cur;
  timer_gettime(t, &cur);
  printf("timer_gettime: interval %ld ns, value in (0, 10 ms]: %s\n", cur.it_interval.tv_nsec,
         cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 10000000 ? "yes" : "no");
  /* blocked for 55 ms: one signal, the rest overruns */
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN);
  sigprocmask(SIG_BLOCK, &rt, NULL);
  hits = 0;
  ovr = 0;
  struct timespec nap = {0, 55000000};
  nanosleep(&nap, NULL);
  sigprocmask(SIG_UNBLOCK, &rt, NULL);
  /* read at once: the timer goes on, and a slow (emulated) machine may
   * take its next 10 ms period before a later read */
  int h = (int)hits, ov = (int)ovr;
  int o = timer_getoverrun(t);
  printf("blocked 55 ms: %d delivery, si_overrun in [3, 10]: %s, timer_getoverrun the same: %s\n", h,
         ov >= 3 && ov <= 10 ? "yes" : "no", o == ov || hits > h ? "yes" : "no");
  /* sigsuspend woken by it */
  sigprocmask(SIG_BLOCK, &rt, NULL);
  sigset_t none;
  sigemptyset(&none);
  hits = 0;
  int r = sigsuspend(&none);
  printf("sigsuspend: %d %s, handler ran %d\n", r, strerror(errno), (int)hits);
  sigprocmask(SIG_UNBLOCK, &rt, NULL);
  timer_delete(t);

  /* 2. timerfd */
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  struct itimerspec tf = {{0, 10000000}, {0, 20000000}};
  timerfd_settime(fd, 0, &tf, NULL);
  uint64_t n;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ssize_t k = read(fd, &n, 8);
  printf("timerfd read: %zd bytes, count %llu\n", k, (unsigned long long)n);
  check_ms("timerfd first expiry 20 ms", ms_since(&t0), 18, 300);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  r = poll(&p, 1, 1000);
  printf("timerfd poll: %d, revents POLLIN: %s\n", r, p.revents == POLLIN ? "yes" : "no");
  nap.tv_nsec = 35000000;
  nanosleep(&nap, NULL);
  k = read(fd, &n, 8);
  printf("timerfd after 35 more ms: count in [3, 8]: %s\n", n >= 3 && n <= 8 ? "yes" : "no");
  tf = (struct itimerspec){{0, 0}, {0, 0}};
  timerfd_settime(fd, 0, &tf, NULL);
  int fl = TFD_NONBLOCK;
  int fd2 = timerfd_create(CLOCK_REALTIME, fl);
  k = read(fd2, &n, 8);
  printf("non-blocking timerfd read: %zd %s\n", k, strerror(errno));
  struct stat st;
  fstat(fd, &st);
  printf("fstat: mode 0%o\n", st.st_mode);
  char path[64], link[64] = "";
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  k = readlink(path, link, sizeof link - 1);
  printf("link: %s\n", k > 0 ? link : strerror(errno));
  struct timespec rnow;
  clock_gettime(CLOCK_REALTIME, &rnow);
  tf.it_value = (struct timespec){rnow.tv_sec + (rnow.tv_nsec + 30000000) / 1000000000,
                                  (rnow.tv_nsec + 30000000) % 1000000000};
  timerfd_settime(fd2, TFD_TIMER_ABSTIME, &tf, NULL);
  p.fd = fd2;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = poll(&p, 1, 1000);
  printf("realtime TFD_TIMER_ABSTIME +30 ms, poll: %d\n", r);
  check_ms("its expiry", ms_since(&t0), 25, 300);
  close(fd);
  close(fd2);

  /* 3. rt_sigtimedwait, sigqueue */
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGRTMIN + 1);
  sigaddset(&w, SIGUSR1);
  sigprocmask(SIG_BLOCK, &w, NULL);
  union sigval v = {.sival_int = 7};
  sigqueue(getpid(), SIGRTMIN + 1, v);
  v.sival_int = 8;
  sigqueue(getpid(), SIGRTMIN + 1, v);
  kill(getpid(), SIGUSR1);
  siginfo_t si;
  for (int i = 0; i < 3; i++) {
    int s = sigwaitinfo(&w, &si);
    printf("sigwaitinfo: %s, si_code %d, value %d, pid is mine: %s\n", s == SIGUSR1 ? "SIGUSR1" : "SIGRTMIN+1",
           si.si_code, s == SIGUSR1 ? 0 : si.si_value.sival_int, si.si_pid == getpid() ? "yes" : "no");
  }
  struct timespec to = {0, 20000000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = sigtimedwait(&w, &si, &to);
  printf("sigtimedwait 20 ms: %d %s\n", r, strerror(errno));
  check_ms("its timeout", ms_since(&t0), 19, 300);
  /* a POSIX timer's signal waited for */
  ev.sigev_signo = SIGRTMIN + 1;
  ev.sigev_value.sival_int = 99;
  timer_create(CLOCK_REALTIME, &ev, &t);
  its = (struct itimerspec){{0, 0}, {0, 15000000}};
  timer_settime(t, 0, &its, NULL);
  to.tv_sec = 2;
  r = sigtimedwait(&w, &si, &to);
  printf("sigtimedwait for a timer: %s, SI_TIMER %s, value %d\n", r == SIGRTMIN + 1 ? "SIGRTMIN+1" : "other",
         si.si_code == SI_TIMER ? "yes" : "no", si.si_value.sival_int);
  timer_delete(t);

  /* 4. clock_nanosleep */
  clockid_t cl[2] = {CLOCK_MONOTONIC, CLOCK_REALTIME};
  for (int i = 0; i < 2; i++) {
    struct timespec now;
    clock_gettime(cl[i], &now);
    now.tv_nsec += 30000000;
    if (now.tv_nsec >= 1000000000)
      now.tv_sec++, now.tv_nsec -= 1000000000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = clock_nanosleep(cl[i], TIMER_ABSTIME, &now, NULL);
    printf("clock_nanosleep %s TIMER_ABSTIME +30 ms: %d\n", i ? "REALTIME" : "MONOTONIC", r);
    check_ms("its sleep", ms_since(&t0), 29, 300);
  }
  struct timespec past = {1, 0};
  printf("TIMER_ABSTIME in the past: %d\n", clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &past, NULL));
  printf("clock 10: %s\n", strerror(clock_nanosleep(10, 0, &past, NULL)));
  printf("CLOCK_MONOTONIC_RAW: %s\n", strerror(clock_nanosleep(CLOCK_MONOTONIC_RAW, 0, &past, NULL)));
  /* interrupted by a timer's handler: EINTR, the time left for a relative sleep */
  ev.sigev_signo = SIGRTMIN;
  timer_create(CLOCK_MONOTONIC, &ev, &t);
  its = (struct itimerspec){{0, 0}, {0, 20000000}};
  timer_settime(t, 0, &its, NULL);
  struct timespec req = {1, 0}, rem = {0, 0};
  r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
  printf("relative sleep cut by a timer: %s, time left in (0.9, 1) s: %s\n", strerror(r),
         rem.tv_sec == 0 && rem.tv_nsec > 900000000 ? "yes" : "no");
  timer_settime(t, 0, &its, NULL);
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += 1;
  rem = (struct timespec){5, 5};
  r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, &rem);
  printf("absolute sleep cut by a timer: %s, rem untouched: %s\n", strerror(r),
         rem.tv_sec == 5 && rem.tv_nsec == 5 ? "yes" : "no");
  timer_delete(t);
  return 0;
}
