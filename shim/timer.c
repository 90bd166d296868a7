/* Interval timers (setitimer, getitimer, alarm) and the waits a signal can
 * interrupt (nanosleep, futex, pause, sigsuspend, poll: task.c, signal.c, event.c).
 *
 * Keeps sb->itimer[ITIMER_REAL, _VIRTUAL, _PROF]: an absolute expiry (0 =
 * disarmed) and an interval. REAL counts CLOCK_MONOTONIC; VIRTUAL and PROF
 * count the guest's CPU time (guest_cpu_ns: the vCPU thread's CPU clock
 * during runs, which holds the time in KVM_RUN and the shim's service of
 * the calls; both timers count the same clock, a program cannot tell user
 * from system time here). An expired timer raises its signal (SIGALRM,
 * SIGVTALRM, SIGPROF) and re-arms with its interval; the overruns of one
 * late check are dropped, as Linux does for ITIMER_REAL.
 *
 * Expiry is noticed at three places: after every system call
 * (signal_after_syscall, only when a timer is armed), at a kick exit (the
 * run's host timers, sandbox.c run_timers_arm, fire at the next expiry and
 * kick the vCPU: a loop that makes no system call is interrupted too), and
 * inside the waits below, which sleep at most until the next ITIMER_REAL
 * expiry. A wait ends with -EINTR only when a signal will interrupt the
 * program (a handler or a fatal default): an ignored one is dropped and the
 * wait goes on, as on Linux.
 *
 * Paused sandboxes: a live sandbox between runs (paused, parked) keeps its
 * absolute ITIMER_REAL expiry, so wall time runs on while it waits, like a
 * stopped process's; the CPU timers count only guest CPU time. A template
 * stores the remaining times (itimer_save) and every child starts counting
 * them again when it is made (itimer_load): the timers survive a snapshot
 * as they survive a CRIU dump and restore (Linux's fork would clear them in
 * a new process, but a child here is the same process resumed). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "shim/shim.h"

#define NS 1000000000ull
/* Far enough that no sum of a clock value and a timer overflows. */
#define TIMER_MAX (1ull << 62)

static const int itimer_sig[3] = {SIGALRM, SIGVTALRM, SIGPROF};

uint64_t mono_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * NS + (uint64_t)t.tv_nsec;
}

uint64_t thread_cpu_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (uint64_t)t.tv_sec * NS + (uint64_t)t.tv_nsec;
}

/* Task 0's CPU time is its host thread's (the run's caller) since the
 * run's start; the other tasks' are their whole threads' (thread.c). */
uint64_t guest_cpu_ns(struct sb *sb)
{
  if (!sb->running)
    return sb->cpu_ns;
  uint64_t t = sb->cpu_ns + task_cpu_ns(sb);
  struct timespec ts;
  if (clock_gettime(sb->run_clock, &ts) == 0) {
    uint64_t c = (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
    t += c > sb->run_cpu0 ? c - sb->run_cpu0 : 0;
  }
  return t;
}

static uint64_t timer_now(struct sb *sb, int which)
{
  return which == ITIMER_REAL ? mono_ns() : guest_cpu_ns(sb);
}

static bool tv_valid(const struct timeval *tv)
{
  return tv->tv_sec >= 0 && tv->tv_usec >= 0 && tv->tv_usec < 1000000 && (uint64_t)tv->tv_sec < TIMER_MAX / NS;
}

static uint64_t tv_ns(const struct timeval *tv) { return (uint64_t)tv->tv_sec * NS + (uint64_t)tv->tv_usec * 1000; }

static struct timeval ns_tv(uint64_t ns)
{
  return (struct timeval){.tv_sec = (time_t)(ns / NS), .tv_usec = (suseconds_t)(ns % NS / 1000)};
}

/* The remaining time of an armed timer; one microsecond when it has
 * expired but not yet been noticed (it is still armed: Linux says so too). */
static uint64_t remaining(struct sb *sb, int which)
{
  uint64_t v = sb->itimer[which].value, now = timer_now(sb, which);
  return v > now + 1000 ? v - now : 1000;
}

static void itimer_get(struct sb *sb, int which, struct itimerval *cur)
{
  cur->it_value = sb->itimer[which].value ? ns_tv(remaining(sb, which)) : (struct timeval){0};
  cur->it_interval = ns_tv(sb->itimer[which].interval);
}

long do_getitimer(struct sb *sb, long which, uint64_t addr)
{
  if (which < 0 || which > 2)
    return -EINVAL;
  struct itimerval cur;
  itimer_get(sb, (int)which, &cur);
  return mm_copy_out(sb, addr, &cur, sizeof cur) < 0 ? -EFAULT : 0;
}

static void itimer_set(struct sb *sb, int which, uint64_t value, uint64_t interval)
{
  sb->itimer[which].value = value ? timer_now(sb, which) + value : 0;
  sb->itimer[which].interval = interval; /* kept when disarmed: getitimer shows it, as Linux */
  run_timers_arm(sb);
}

long do_setitimer(struct sb *sb, long which, uint64_t new_addr, uint64_t old_addr)
{
  if (which < 0 || which > 2)
    return -EINVAL;
  struct itimerval nv = {0}, ov;
  /* A NULL new value disarms (Linux accepts it, with a warning). */
  if (new_addr && mm_copy_in(sb, &nv, new_addr, sizeof nv) < 0)
    return -EFAULT;
  if (!tv_valid(&nv.it_value) || !tv_valid(&nv.it_interval))
    return -EINVAL;
  itimer_get(sb, (int)which, &ov);
  itimer_set(sb, (int)which, tv_ns(&nv.it_value), tv_ns(&nv.it_interval));
  if (old_addr && mm_copy_out(sb, old_addr, &ov, sizeof ov) < 0)
    return -EFAULT;
  return 0;
}

long do_alarm(struct sb *sb, unsigned secs)
{
  struct itimerval ov;
  itimer_get(sb, ITIMER_REAL, &ov);
  itimer_set(sb, ITIMER_REAL, (uint64_t)secs * NS, 0);
  /* Linux rounds the old remaining time to the nearest second, never to 0. */
  long r = ov.it_value.tv_sec;
  if (ov.it_value.tv_usec >= 500000 || (!r && ov.it_value.tv_usec))
    r++;
  return r;
}

void itimer_poll(struct sb *sb)
{
  if (!itimer_armed(sb))
    return;
  bool fired = false;
  for (int w = 0; w < 3; w++) {
    struct itimer *t = &sb->itimer[w];
    if (!t->value)
      continue;
    uint64_t now = timer_now(sb, w);
    if (now < t->value)
      continue;
    sig_raise(sb, itimer_sig[w]);
    if (t->interval)
      t->value += t->interval * ((now - t->value) / t->interval + 1);
    else
      t->value = 0;
    fired = true;
  }
  if (fired)
    run_timers_arm(sb);
}

/* A valid timespec in ns, saturated (a deadline centuries away stays one). */
static uint64_t ts_ns(const struct timespec *ts)
{
  if ((uint64_t)ts->tv_sec >= UINT64_MAX / NS - 1)
    return UINT64_MAX - 1;
  return (uint64_t)ts->tv_sec * NS + (uint64_t)ts->tv_nsec;
}

static uint64_t clock_ns(clockid_t clk)
{
  struct timespec t;
  if (clock_gettime(clk, &t) < 0)
    return 0;
  return ts_ns(&t);
}

/* The time until the next ITIMER_REAL expiry, UINT64_MAX if none. */
static uint64_t real_left(struct sb *sb)
{
  uint64_t v = sb->itimer[ITIMER_REAL].value;
  if (!v)
    return UINT64_MAX;
  uint64_t now = mono_ns();
  return v > now ? v - now : 0;
}

long sig_wait(struct sb *sb, clockid_t clk, const struct timespec *deadline)
{
  for (;;) {
    itimer_poll(sb);
    if (sb->exited || sb->timed_out || sig_deliverable(sb))
      return -EINTR;
    uint64_t left = UINT64_MAX;
    if (deadline) {
      uint64_t now = clock_ns(clk), d = ts_ns(deadline);
      if (now >= d)
        return 0;
      left = d - now;
    }
    uint64_t r = real_left(sb);
    if (r < left)
      left = r;
    if (left == UINT64_MAX && task_live(sb) <= 1)
      return -EDEADLK;
    /* The run's own timers (--timeout) interrupt this: the loop sees it. */
    task_block(sb, NULL, 0, left == UINT64_MAX ? -1 : (int64_t)(left > INT64_MAX ? INT64_MAX : left));
    if (task_take_wake(sb))
      return -EAGAIN;
  }
}

long sig_poll(struct sb *sb, struct pollfd *fds, unsigned long n, int timeout_ms)
{
  bool host = false;
  for (unsigned long i = 0; i < n; i++)
    host |= fds[i].fd >= 0;
  uint64_t deadline = timeout_ms >= 0 ? mono_ns() + (uint64_t)timeout_ms * 1000000 : 0;
  for (;;) {
    uint64_t left = UINT64_MAX;
    if (timeout_ms >= 0) {
      uint64_t now = mono_ns();
      left = deadline > now ? deadline - now : 0;
    }
    uint64_t r = real_left(sb);
    if (r < left)
      left = r;
    if (left == UINT64_MAX && !host && task_live(sb) <= 1)
      return wait_forever(sb, "poll");
    long k = task_block(sb, fds, n, left == UINT64_MAX ? -1 : (int64_t)(left > INT64_MAX ? INT64_MAX : left));
    if (k > 0)
      return k;
    if (k < 0)
      return k;
    if (task_take_wake(sb))
      return -EAGAIN;
    uint64_t p0 = sb->pending;
    itimer_poll(sb);
    if (sb->exited || sb->timed_out || sig_deliverable(sb))
      return -EINTR;
    if (sb->pending != p0)
      return 0; /* a blocked signal came: a signalfd may be ready now */
    if (timeout_ms >= 0 && mono_ns() >= deadline)
      return 0;
  }
}

/* State file section: a tag, then per timer the remaining time (0:
 * disarmed) and the interval, then the timer-raised pending signals. */
#define ITIMER_TAG 0x5352454d49544943ull /* "CITIMERS" */

void itimer_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, ITIMER_TAG);
  for (int i = 0; i < 3; i++) {
    w_u64(w, sb->itimer[i].value ? remaining(sb, i) : 0);
    w_u64(w, sb->itimer[i].interval);
  }
  w_u64(w, sb->pending_kernel);
}

int itimer_load(struct sb *sb, struct rbuf *r)
{
  if (r_u64(r) != ITIMER_TAG)
    return -1;
  uint64_t v[3], iv[3];
  for (int i = 0; i < 3; i++) {
    v[i] = r_u64(r);
    iv[i] = r_u64(r);
    if (v[i] >= TIMER_MAX || iv[i] >= TIMER_MAX)
      return -1;
  }
  uint64_t pk = r_u64(r);
  if (r->err)
    return -1;
  /* The child counts from now: REAL from the monotonic clock, the others
   * from its guest CPU time (guest_cpu_ns). */
  for (int i = 0; i < 3; i++) {
    sb->itimer[i].value = v[i] ? timer_now(sb, i) + v[i] : 0;
    sb->itimer[i].interval = iv[i];
  }
  sb->pending_kernel = pk & sb->pending;
  return 0;
}

/* ---- sleeping and the clocks ---- */

bool ts_valid(const struct timespec *ts)
{
  return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

/* deadline = now on clk + rel */
struct timespec ts_after(clockid_t clk, const struct timespec *rel)
{
  struct timespec now;
  clock_gettime(clk, &now);
  struct timespec d = {now.tv_sec + rel->tv_sec, now.tv_nsec + rel->tv_nsec};
  if (d.tv_nsec >= 1000000000) {
    d.tv_sec++;
    d.tv_nsec -= 1000000000;
  }
  if (d.tv_sec < now.tv_sec) /* overflow: as good as never */
    d = (struct timespec){INT64_MAX, 0};
  return d;
}

/* nanosleep, clock_nanosleep: -EINTR (and the time left, if asked, for a
 * relative sleep) when a signal interrupts it. */
static long do_sleep(struct sb *sb, clockid_t clk, int flags, uint64_t req, uint64_t rem)
{
  struct timespec ts;
  if (mm_copy_in(sb, &ts, req, sizeof ts) < 0)
    return -EFAULT;
  if (!ts_valid(&ts))
    return -EINVAL;
  switch (clk) {
  case CLOCK_REALTIME:
  case CLOCK_MONOTONIC:
  case CLOCK_BOOTTIME:
  case CLOCK_TAI:
    break;
  case CLOCK_PROCESS_CPUTIME_ID:
    return -ENOTSUP; /* Linux sleeps on the process's CPU clock; not here */
  default:
    return -EINVAL;  /* CLOCK_THREAD_CPUTIME_ID too, as Linux */
  }
  bool abs = flags & TIMER_ABSTIME;
  struct timespec dl = abs ? ts : ts_after(clk, &ts);
  long r;
  while ((r = sig_wait(sb, clk, &dl)) == -EAGAIN)
    ;
  if (r == 0)
    return 0;
  if (!abs && rem && !sb->exited) {
    struct timespec now, left = {0, 0};
    clock_gettime(clk, &now);
    if (now.tv_sec < dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec < dl.tv_nsec)) {
      left.tv_sec = dl.tv_sec - now.tv_sec;
      left.tv_nsec = dl.tv_nsec - now.tv_nsec;
      if (left.tv_nsec < 0) {
        left.tv_sec--;
        left.tv_nsec += 1000000000;
      }
    }
    if (mm_copy_out(sb, rem, &left, sizeof left) < 0)
      return -EFAULT;
  }
  return -EINTR;
}

static long copy_time(struct sb *sb, uint64_t addr, clockid_t clk, bool timeval)
{
  struct timespec ts;
  if (clock_gettime(clk, &ts) < 0)
    return -errno;
  if (!timeval)
    return mm_copy_out(sb, addr, &ts, sizeof ts);
  struct timeval tv = {ts.tv_sec, ts.tv_nsec / 1000};
  return mm_copy_out(sb, addr, &tv, sizeof tv);
}

/* ---- the system calls (systab.c's table) ---- */

long sys_times(struct sb *sb, const uint64_t a[6], long nr)
{
  struct {
    int64_t u, s, cu, cs;
  } t = {0};
  if (A(0) && mm_copy_out(sb, A(0), &t, sizeof t) < 0)
    return -EFAULT;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 100 + ts.tv_nsec / 10000000;
}

long sys_clock_gettime(struct sb *sb, const uint64_t a[6], long nr)
{
  return copy_time(sb, A(1), (clockid_t)A(0), false);
}

long sys_clock_getres(struct sb *sb, const uint64_t a[6], long nr)
{
  struct timespec ts = {0, 1};
  return A(1) ? mm_copy_out(sb, A(1), &ts, sizeof ts) : 0;
}

long sys_gettimeofday(struct sb *sb, const uint64_t a[6], long nr)
{
  return A(0) ? copy_time(sb, A(0), CLOCK_REALTIME, true) : 0;
}

long sys_time(struct sb *sb, const uint64_t a[6], long nr)
{
  int64_t t = (int64_t)time(NULL);
  if (A(0) && mm_copy_out(sb, A(0), &t, 8) < 0)
    return -EFAULT;
  return t;
}

long sys_nanosleep(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sleep(sb, CLOCK_MONOTONIC, 0, A(0), A(1));
}

long sys_clock_nanosleep(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sleep(sb, (clockid_t)A(0), (int)A(1), A(2), A(3));
}

long sys_alarm(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_alarm(sb, (unsigned)A(0));
}

long sys_setitimer(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_setitimer(sb, (long)(int)A(0), A(1), A(2));
}

long sys_getitimer(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_getitimer(sb, (long)(int)A(0), A(1));
}
