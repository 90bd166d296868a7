/* Timers (setitimer, getitimer, alarm; POSIX timers; timerfd) and the waits
 * a signal can interrupt (nanosleep, futex, pause, sigsuspend, poll,
 * rt_sigtimedwait, a timerfd read: task.c, signal.c, event.c).
 *
 * One list, sb->timers: slots 0-2 are ITIMER_REAL, _VIRTUAL, _PROF, the
 * others POSIX timers (kind); a timerfd's timer is its file's own (below). Each holds an absolute expiry (0 =
 * disarmed) on its base clock, CLOCK_MONOTONIC or the guest's CPU time
 * (guest_cpu_ns: the vCPU thread's CPU clock during runs, which holds the
 * time in KVM_RUN and the shim's service of the calls; a program cannot tell
 * user from system time here), and an interval. A program's clock maps onto
 * a base when the timer is set: REALTIME, BOOTTIME and TAI expiries become
 * monotonic ones (a host clock step after that does not move them), the CPU
 * clocks count the guest's CPU time. One expiry path (itimer_poll) serves
 * them all: an interval timer raises its signal (SI_KERNEL; the overruns of
 * one late check are dropped, as Linux does), a POSIX timer queues its
 * siginfo (SI_TIMER, si_value, si_timerid) or, while that is still queued,
 * counts overruns (si_overrun when it is taken, timer_getoverrun); each
 * re-arms with its interval.
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
 * absolute monotonic expiries, so wall time runs on while it waits, like a
 * stopped process's; the CPU timers count only guest CPU time. A template
 * stores the remaining times (itimer_save, timers_save with the signal
 * queue) and every child starts counting them again when it is made: the
 * timers survive a snapshot as they survive a CRIU dump and restore (Linux's
 * fork would clear them in a new process, but a child here is the same
 * process resumed). A timerfd is not saved: fs_save refuses it by name. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>

#include "internal.h"
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

static uint64_t timer_now(struct sb *sb, const struct ktimer *t)
{
  return t->cpu ? guest_cpu_ns(sb) : mono_ns();
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

static struct timespec ns_ts(uint64_t ns)
{
  return (struct timespec){.tv_sec = (time_t)(ns / NS), .tv_nsec = (long)(ns % NS)};
}

/* The remaining time of an armed timer; min when it has expired but not
 * yet been noticed (it is still armed: Linux says so too). */
static uint64_t remaining_min(struct sb *sb, const struct ktimer *t, uint64_t min)
{
  uint64_t v = t->value, now = timer_now(sb, t);
  return v > now + min ? v - now : min;
}

static uint64_t remaining(struct sb *sb, int which) { return remaining_min(sb, &sb->timers[which], 1000); }

static void timer_used(struct sb *sb, int slot)
{
  if (slot >= sb->ntimer)
    sb->ntimer = slot + 1;
}

static void itimer_get(struct sb *sb, int which, struct itimerval *cur)
{
  cur->it_value = sb->timers[which].value ? ns_tv(remaining(sb, which)) : (struct timeval){0};
  cur->it_interval = ns_tv(sb->timers[which].interval);
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
  struct ktimer *t = &sb->timers[which];
  t->kind = TK_ITIMER;
  t->cpu = which != ITIMER_REAL;
  t->value = value ? timer_now(sb, t) + value : 0;
  t->interval = interval; /* kept when disarmed: getitimer shows it, as Linux */
  timer_used(sb, which);
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

/* Whether t's expiry raises a signal (and so must kick the vCPU, and end
 * the waits that signals end). */
static bool timer_signals(const struct ktimer *t)
{
  return t->kind == TK_ITIMER || (t->kind == TK_POSIX && t->notify != SIGEV_NONE);
}

/* POSIX timer t (slot) expired n times: its signal queued, or, while it is
 * queued already, the expirations counted as overruns (Linux's si_overrun). */
static void posix_fire(struct sb *sb, int slot, uint64_t n)
{
  struct ktimer *t = &sb->timers[slot];
  if (t->notify == SIGEV_NONE)
    return;
  if (t->queued) {
    t->overrun += n;
    return;
  }
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = t->signo;
  info.si_code = SI_TIMER;
  info.si_timerid = t->id;
  info.si_value.sival_ptr = (void *)(uintptr_t)t->sigval;
  if (sig_queue(sb, &info, slot + 1, t->gen) == 1) {
    t->queued = true;
    t->overrun += n - 1;
  }
}

/* Armed timer t at time now (its base clock's): its expirations since it
 * was last looked at (0: not due), its next expiry set (0: disarmed, a
 * one-shot). */
static uint64_t ktimer_expire(struct ktimer *t, uint64_t now)
{
  if (!t->value || now < t->value)
    return 0;
  uint64_t n = 1;
  if (t->interval) {
    n += (now - t->value) / t->interval;
    t->value += t->interval * n;
  } else {
    t->value = 0;
  }
  return n;
}

void itimer_poll(struct sb *sb)
{
  bool fired = false;
  uint64_t now[2] = {0, 0};
  for (int i = 0; i < sb->ntimer; i++) {
    struct ktimer *t = &sb->timers[i];
    if (!t->value)
      continue;
    if (!now[t->cpu])
      now[t->cpu] = timer_now(sb, t);
    uint64_t n = ktimer_expire(t, now[t->cpu]);
    if (!n)
      continue;
    switch (t->kind) {
    case TK_ITIMER:
      sig_raise(sb, itimer_sig[i]); /* the overruns of one late check are dropped, as Linux */
      break;
    case TK_POSIX:
      posix_fire(sb, i, n);
      break;
    }
    fired = true;
  }
  if (fired) {
    sb->timer_fires++;
    run_timers_arm(sb);
  }
}

uint64_t timer_next(struct sb *sb, bool cpu)
{
  uint64_t dl = 0;
  for (int i = 0; i < sb->ntimer; i++) {
    const struct ktimer *t = &sb->timers[i];
    if (t->value && t->cpu == cpu && timer_signals(t) && (!dl || t->value < dl))
      dl = t->value;
  }
  return dl;
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

/* The time until the next expiry of a CLOCK_MONOTONIC timer that raises a
 * signal, UINT64_MAX if none. */
static uint64_t real_left(struct sb *sb)
{
  uint64_t v = timer_next(sb, false);
  if (!v)
    return UINT64_MAX;
  uint64_t now = mono_ns();
  return v > now ? v - now : 0;
}

long sig_wait(struct sb *sb, clockid_t clk, const struct timespec *deadline)
{
  for (;;) {
    itimer_poll(sb);
    if (sb->exited || sb->timed_out || sb->paused || (sb->cur && sb->cur->exited) || sig_deliverable(sb) ||
        (sb->pending & sb->sigwait_set))
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
    if (left == UINT64_MAX && sb_alone(sb))
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
    /* Before every sleep, the first too: a signal that came while the
     * caller scanned, or that another task's wake (-EAGAIN, the caller
     * calls again) was about, ends the wait. */
    uint64_t p0 = sb->pending, f0 = sb->timer_fires;
    itimer_poll(sb);
    if (sb->exited || sb->timed_out || sb->paused || (sb->cur && sb->cur->exited) || sig_deliverable(sb))
      return -EINTR; /* sb->paused: another thread paused the sandbox, the call runs again later */
    if (sb->pending != p0 || sb->timer_fires != f0)
      return 0; /* a blocked signal came, a timer fired: a signalfd or timerfd may be ready now */
    uint64_t left = UINT64_MAX;
    if (timeout_ms >= 0) {
      uint64_t now = mono_ns();
      left = deadline > now ? deadline - now : 0;
    }
    uint64_t r = real_left(sb);
    if (r < left)
      left = r;
    if (left == UINT64_MAX && !host && sb_alone(sb))
      return wait_forever(sb, "poll");
    long k = task_block(sb, fds, n, left == UINT64_MAX ? -1 : (int64_t)(left > INT64_MAX ? INT64_MAX : left));
    if (k > 0)
      return k;
    if (k < 0)
      return k;
    if (task_take_wake(sb))
      return -EAGAIN;
    p0 = sb->pending, f0 = sb->timer_fires;
    itimer_poll(sb);
    if (sb->exited || sb->timed_out || sb->paused || (sb->cur && sb->cur->exited) || sig_deliverable(sb))
      return -EINTR;
    if (sb->pending != p0 || sb->timer_fires != f0)
      return 0;
    if (timeout_ms >= 0 && mono_ns() >= deadline)
      return 0;
  }
}

/* State file section (version 2): a tag, then per interval timer the
 * remaining time (0: disarmed) and the interval, then the pending signals
 * an interval timer raised (si_code SI_KERNEL; version 5's queue, below,
 * says it again with every other instance). */
#define ITIMER_TAG 0x5352454d49544943ull /* "CITIMERS" */

void itimer_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, ITIMER_TAG);
  for (int i = 0; i < 3; i++) {
    w_u64(w, sb->timers[i].value ? remaining(sb, i) : 0);
    w_u64(w, sb->timers[i].interval);
  }
  uint64_t pk = 0;
  for (int i = 0; i < sb->nsigq; i++)
    if (sb->sigq[i].info.si_code == SI_KERNEL)
      pk |= 1ull << (sb->sigq[i].info.si_signo - 1);
  w_u64(w, pk);
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
    struct ktimer *t = &sb->timers[i];
    *t = (struct ktimer){.kind = TK_ITIMER, .cpu = i != ITIMER_REAL, .interval = iv[i]};
    t->value = v[i] ? timer_now(sb, t) + v[i] : 0;
  }
  timer_used(sb, 2);
  /* The timer-raised pending signals get their info back (a version 5
   * state replaces the whole queue after this). */
  sb->nsigq = 0;
  for (int sig = 1; sig <= 64; sig++)
    if ((pk & sb->pending) >> (sig - 1) & 1) {
      struct sigq_ent *e = &sb->sigq[sb->nsigq++];
      memset(e, 0, sizeof *e);
      e->info.si_signo = sig;
      e->info.si_code = SI_KERNEL;
    }
  return 0;
}

/* ---- POSIX timers ---- */

/* What clock clk is for a timer: 0 and *cpu (it counts the guest's CPU
 * time), or Linux's error: -ENOTSUP for a clock with no timers (the raw
 * and coarse clocks; the alarm clocks, which need a wake-up device), else
 * -EINVAL. A CPU clock of a pid or thread (clock_getcpuclockid,
 * pthread_getcpuclockid) must be the sandbox's own. */
static int timer_clock(struct sb *sb, clockid_t clk, bool *cpu)
{
  *cpu = false;
  switch (clk) {
  case CLOCK_REALTIME:
  case CLOCK_MONOTONIC:
  case CLOCK_BOOTTIME:
  case CLOCK_TAI:
    return 0;
  case CLOCK_PROCESS_CPUTIME_ID:
  case CLOCK_THREAD_CPUTIME_ID:
    *cpu = true;
    return 0;
  case CLOCK_MONOTONIC_RAW:
  case CLOCK_REALTIME_COARSE:
  case CLOCK_MONOTONIC_COARSE:
  case CLOCK_REALTIME_ALARM:
  case CLOCK_BOOTTIME_ALARM:
    return -ENOTSUP;
  }
  if (clk >= 0 || (clk & 3) == 3)
    return -EINVAL; /* (clk & 7) == 3: a dynamic (fd) clock, none here */
  int pid = ~(clk >> 3);
  if (pid != 0 && pid != (clk & 4 ? sb->tid : sb->pid))
    return -EINVAL;
  *cpu = true;
  return 0;
}

/* Now on clock clk (already checked), as the program reads it
 * (sys_clock_gettime): a CPU clock is the guest's CPU time. */
static uint64_t clk_now(struct sb *sb, clockid_t clk, bool cpu)
{
  return cpu ? guest_cpu_ns(sb) : clock_ns(clk);
}

static bool its_valid(const struct itimerspec *its)
{
  return ts_valid(&its->it_value) && ts_valid(&its->it_interval);
}

static uint64_t ts_ns_max(const struct timespec *ts)
{
  uint64_t v = ts_ns(ts);
  return v < TIMER_MAX ? v : TIMER_MAX;
}

/* Arm t (its clock and cpu set) with its (valid): relative, or absolute on
 * t's clock (turned into an expiry on its base clock now: a host clock
 * step after this does not move it). */
static void ktimer_arm(struct sb *sb, struct ktimer *t, const struct itimerspec *its, bool abs)
{
  uint64_t v = ts_ns_max(&its->it_value);
  t->interval = ts_ns_max(&its->it_interval);
  if (!v) {
    t->value = 0;
    return;
  }
  if (abs) {
    uint64_t now = clk_now(sb, t->clock, t->cpu);
    v = v > now ? v - now : 0;
  }
  t->value = timer_now(sb, t) + v;
  if (!t->value)
    t->value = 1;
}

/* t's setting now: the time left (0: disarmed; 1 ns when expired but not
 * yet noticed) and the interval. */
static void ktimer_get(struct sb *sb, struct ktimer *t, struct itimerspec *its)
{
  itimer_poll(sb);
  its->it_value = t->value ? ns_ts(remaining_min(sb, t, 1)) : (struct timespec){0, 0};
  its->it_interval = ns_ts(t->interval);
}

/* A free slot for a POSIX timer or a timerfd (the interval timers have
 * 0-2), or -1. */
static int timer_slot(struct sb *sb)
{
  for (int i = 3; i < NTIMER; i++)
    if (sb->timers[i].kind == TK_FREE)
      return i;
  return -1;
}

static struct ktimer *posix_timer(struct sb *sb, int id)
{
  for (int i = 3; i < sb->ntimer; i++)
    if (sb->timers[i].kind == TK_POSIX && sb->timers[i].id == id)
      return &sb->timers[i];
  return NULL;
}

static void posix_free(struct ktimer *t)
{
  uint32_t gen = t->gen + 1; /* its queued signal is dropped when taken, as Linux */
  *t = (struct ktimer){.gen = gen};
}

void timers_exec(struct sb *sb)
{
  for (int i = 3; i < sb->ntimer; i++)
    if (sb->timers[i].kind == TK_POSIX)
      posix_free(&sb->timers[i]);
  run_timers_arm(sb);
}

/* timer_create(clock, sigevent, id): Linux's checks in its order (the
 * sigevent read, the clock, a slot, the id taken, the notification). */
long sys_timer_create(struct sb *sb, const uint64_t a[6], long nr)
{
  clockid_t clk = (clockid_t)A(0);
  struct sigevent ev;
  bool cpu;
  if (A(1) && mm_copy_in(sb, &ev, A(1), sizeof ev) < 0)
    return -EFAULT;
  int r = timer_clock(sb, clk, &cpu);
  if (r < 0)
    return r;
  int slot = timer_slot(sb);
  if (slot < 0)
    return -EAGAIN; /* Linux: past RLIMIT_SIGPENDING (each timer holds a queue entry) */
  int id = sb->next_timer_id;
  sb->next_timer_id = (id + 1) & INT_MAX; /* counts up, never reused (as Linux) */
  struct ktimer t = {.kind = TK_POSIX, .cpu = cpu, .clock = clk, .id = id, .gen = sb->timers[slot].gen,
                     .notify = SIGEV_SIGNAL, .signo = SIGALRM, .sigval = (uint64_t)id};
  if (A(1)) {
    switch (ev.sigev_notify) {
    case SIGEV_SIGNAL | SIGEV_THREAD_ID:
      if (ev._sigev_un._tid != sb->tid)
        return -EINVAL; /* not a thread of the sandbox */
      /* fall through */
    case SIGEV_SIGNAL:
    case SIGEV_THREAD: /* glibc runs the thread itself; the kernel signals */
      if (ev.sigev_signo <= 0 || ev.sigev_signo > 64)
        return -EINVAL;
      break;
    case SIGEV_NONE:
      break;
    default:
      return -EINVAL;
    }
    t.notify = ev.sigev_notify;
    t.signo = ev.sigev_signo;
    t.sigval = (uint64_t)(uintptr_t)ev.sigev_value.sival_ptr;
  }
  if (mm_copy_out(sb, A(2), &id, sizeof id) < 0)
    return -EFAULT;
  sb->timers[slot] = t;
  timer_used(sb, slot);
  return 0;
}

long sys_timer_settime(struct sb *sb, const uint64_t a[6], long nr)
{
  struct itimerspec nv, ov;
  if (!A(2))
    return -EINVAL;
  if (mm_copy_in(sb, &nv, A(2), sizeof nv) < 0)
    return -EFAULT;
  if (!its_valid(&nv))
    return -EINVAL;
  struct ktimer *t = posix_timer(sb, (int)A(0));
  if (!t)
    return -EINVAL;
  ktimer_get(sb, t, &ov);
  t->gen++; /* a signal of the old setting still queued is dropped when taken (Linux 6) */
  t->queued = false;
  t->overrun = t->overrun_last = 0;
  ktimer_arm(sb, t, &nv, A(1) & TIMER_ABSTIME);
  run_timers_arm(sb);
  if (A(3) && mm_copy_out(sb, A(3), &ov, sizeof ov) < 0)
    return -EFAULT;
  return 0;
}

long sys_timer_gettime(struct sb *sb, const uint64_t a[6], long nr)
{
  struct ktimer *t = posix_timer(sb, (int)A(0));
  struct itimerspec cur;
  if (!t)
    return -EINVAL;
  ktimer_get(sb, t, &cur);
  return mm_copy_out(sb, A(1), &cur, sizeof cur) < 0 ? -EFAULT : 0;
}

long sys_timer_getoverrun(struct sb *sb, const uint64_t a[6], long nr)
{
  struct ktimer *t = posix_timer(sb, (int)A(0));
  if (!t)
    return -EINVAL;
  return t->overrun_last > INT_MAX ? INT_MAX : (long)t->overrun_last;
}

long sys_timer_delete(struct sb *sb, const uint64_t a[6], long nr)
{
  struct ktimer *t = posix_timer(sb, (int)A(0));
  if (!t)
    return -EINVAL;
  posix_free(t);
  run_timers_arm(sb);
  return 0;
}

/* timerfd: a file of type F_TIMERFD with a timer of its own (kind
 * TK_TIMERFD, on CLOCK_MONOTONIC's ns), not a slot of sb->timers: the file
 * is shared by every process a fork gives it to, and outlives the process
 * that made it. Its expirations are counted when looked at (timerfd_tick:
 * a read, a poll, gettime, settime); a wait for one blocks until its due
 * time (a read: sig_wait's deadline; poll, select, epoll: event.c's
 * hostset.due), and settime wakes every waiter to look again. */

/* t's expirations up to now, added to its ticks. */
static void timerfd_tick(struct ktimer *t) { t->ticks += ktimer_expire(t, mono_ns()); }

long sys_timerfd_create(struct sb *sb, const uint64_t a[6], long nr)
{
  clockid_t clk = (clockid_t)A(0);
  int flags = (int)A(1);
  if ((flags & ~(O_CLOEXEC | O_NONBLOCK)) || (clk != CLOCK_MONOTONIC && clk != CLOCK_REALTIME &&
                                              clk != CLOCK_BOOTTIME && clk != CLOCK_REALTIME_ALARM &&
                                              clk != CLOCK_BOOTTIME_ALARM))
    return -EINVAL;
  if ((clk == CLOCK_REALTIME_ALARM || clk == CLOCK_BOOTTIME_ALARM) && sb->uid != 0)
    return -EPERM; /* CAP_WAKE_ALARM */
  struct ktimer *t = calloc(1, sizeof *t);
  struct file *f = t ? file_new(F_TIMERFD, -1, O_RDWR | (flags & O_NONBLOCK), "anon_inode:[timerfd]") : NULL;
  if (!f) {
    free(t);
    return -ENOMEM;
  }
  *t = (struct ktimer){.kind = TK_TIMERFD, .clock = clk};
  f->timer = t;
  long fd = fs_install(sb, f, flags & O_CLOEXEC);
  if (fd < 0)
    file_unref(f); /* frees the timer */
  return fd;
}

/* The timerfd at fd: 0 and *t, -EBADF, or -EINVAL (not a timerfd). */
static long timerfd_get(struct sb *sb, int fd, struct ktimer **t)
{
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  if (f->type != F_TIMERFD)
    return -EINVAL;
  *t = f->timer;
  return 0;
}

long sys_timerfd_settime(struct sb *sb, const uint64_t a[6], long nr)
{
  struct itimerspec nv, ov;
  struct ktimer *t;
  if (mm_copy_in(sb, &nv, A(2), sizeof nv) < 0)
    return -EFAULT;
  if (((int)A(1) & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) || !its_valid(&nv))
    return -EINVAL;
  long r = timerfd_get(sb, (int)A(0), &t);
  if (r < 0)
    return r;
  timerfd_tick(t);
  ktimer_get(sb, t, &ov);
  t->ticks = 0;
  /* TFD_TIMER_CANCEL_ON_SET: a read would fail with ECANCELED when the
   * realtime clock is set; the sandbox cannot set it (and host clock steps
   * are not watched), so it never happens here. */
  ktimer_arm(sb, t, &nv, A(1) & TFD_TIMER_ABSTIME);
  wake_all(sb);
  if (A(3) && mm_copy_out(sb, A(3), &ov, sizeof ov) < 0)
    return -EFAULT;
  return 0;
}

long sys_timerfd_gettime(struct sb *sb, const uint64_t a[6], long nr)
{
  struct itimerspec cur;
  struct ktimer *t;
  long r = timerfd_get(sb, (int)A(0), &t);
  if (r < 0)
    return r;
  timerfd_tick(t);
  ktimer_get(sb, t, &cur);
  return mm_copy_out(sb, A(1), &cur, sizeof cur) < 0 ? -EFAULT : 0;
}

/* read(2) of a timerfd: the expirations since the last read (8 bytes);
 * none: EAGAIN with O_NONBLOCK, else a wait until its next expiry that a
 * signal interrupts (restarted after an SA_RESTART handler, as Linux). */
long timerfd_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len)
{
  struct ktimer *t = f->timer;
  if (len < 8)
    return -EINVAL;
  for (;;) {
    timerfd_tick(t);
    if (t->ticks) {
      uint64_t v = t->ticks;
      t->ticks = 0;
      /* through the program's memory again: a wait released the lock */
      return mm_copy_out(sb, buf, &v, 8) < 0 ? -EFAULT : 8;
    }
    if (f->flags & O_NONBLOCK)
      return -EAGAIN;
    struct timespec dl = ns_ts(t->value);
    long r = sig_wait(sb, CLOCK_MONOTONIC, t->value ? &dl : NULL);
    if (r == -EDEADLK)
      return wait_forever(sb, "read of a disarmed timerfd");
    if (r < 0 && r != -EAGAIN) /* -EAGAIN: another task woke it: look again */
      return -RESTARTSYS;
  }
}

short timerfd_poll(struct sb *sb, struct file *f)
{
  timerfd_tick(f->timer);
  return f->timer->ticks ? POLLIN : 0;
}

uint64_t timerfd_due(struct file *f) { return f->timer->value; }

void timerfd_release(struct file *f)
{
  free(f->timer);
  f->timer = NULL;
}

/* State file section (version 5): a tag, the next POSIX timer id, the
 * POSIX timers (slot, clock, id, notification, the time left on their
 * base clock (0: disarmed), interval, overrun counts, gen), then the whole
 * signal queue (each instance's siginfo, timer slot + 1 and gen). A child
 * counts the times left from when it is made, as the interval timers'.
 * Timerfds are not saved: fs_save refuses a sandbox with one open. */
#define TIMERS_TAG 0x3553524d49544343ull /* "CCTIMRS5" */

void timers_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, TIMERS_TAG);
  w_u64(w, (uint64_t)sb->next_timer_id);
  uint64_t n = 0;
  for (int i = 3; i < sb->ntimer; i++)
    n += sb->timers[i].kind == TK_POSIX;
  w_u64(w, n);
  for (int i = 3; i < sb->ntimer; i++) {
    struct ktimer *t = &sb->timers[i];
    if (t->kind != TK_POSIX)
      continue;
    w_u64(w, (uint64_t)i);
    w_u64(w, (uint64_t)(int64_t)t->clock);
    w_u64(w, (uint64_t)t->id);
    w_u64(w, (uint64_t)t->notify);
    w_u64(w, (uint64_t)t->signo);
    w_u64(w, t->sigval);
    w_u64(w, t->value ? remaining_min(sb, t, 1) : 0);
    w_u64(w, t->interval);
    w_u64(w, t->overrun);
    w_u64(w, t->overrun_last);
    w_u64(w, t->gen);
  }
  w_u64(w, (uint64_t)sb->nsigq);
  for (int i = 0; i < sb->nsigq; i++) {
    w_bytes(w, &sb->sigq[i].info, sizeof sb->sigq[i].info);
    w_u64(w, (uint64_t)sb->sigq[i].timer);
    w_u64(w, sb->sigq[i].gen);
  }
}

int timers_load(struct sb *sb, struct rbuf *r, const char *name)
{
  uint64_t tag = r_u64(r), next = r_u64(r), n = r_u64(r);
  if (r->err || tag != TIMERS_TAG || next > INT_MAX || n > NTIMER - 3)
    return cf_fail(EINVAL, "template '%s': bad POSIX timers", name);
  sb->next_timer_id = (int)next;
  for (uint64_t k = 0; k < n; k++) {
    uint64_t slot = r_u64(r), clk = r_u64(r), id = r_u64(r), notify = r_u64(r), signo = r_u64(r);
    uint64_t sigval = r_u64(r), v = r_u64(r), iv = r_u64(r), ovr = r_u64(r), ovl = r_u64(r), gen = r_u64(r);
    bool cpu;
    if (r->err || slot < 3 || slot >= NTIMER || sb->timers[slot].kind != TK_FREE ||
        (int64_t)clk != (int64_t)(clockid_t)clk || timer_clock(sb, (clockid_t)clk, &cpu) < 0 || id > INT_MAX ||
        posix_timer(sb, (int)id) || (notify != SIGEV_SIGNAL && notify != SIGEV_NONE && notify != SIGEV_THREAD &&
                                     notify != (SIGEV_SIGNAL | SIGEV_THREAD_ID)) ||
        (notify != SIGEV_NONE && (signo < 1 || signo > 64)) || signo > 64 || v >= TIMER_MAX || iv >= TIMER_MAX ||
        gen > UINT32_MAX)
      return cf_fail(EINVAL, "template '%s': bad POSIX timer", name);
    struct ktimer *t = &sb->timers[slot];
    *t = (struct ktimer){.kind = TK_POSIX, .cpu = cpu, .clock = (clockid_t)clk, .id = (int)id,
                         .notify = (int)notify, .signo = (int)signo, .sigval = sigval, .interval = iv,
                         .overrun = ovr, .overrun_last = ovl, .gen = (uint32_t)gen};
    t->value = v ? timer_now(sb, t) + v : 0;
    timer_used(sb, (int)slot);
  }
  uint64_t nq = r_u64(r);
  if (r->err || nq > SIGQ_CAP)
    return cf_fail(EINVAL, "template '%s': bad signal queue", name);
  uint64_t seen = 0;
  sb->nsigq = 0;
  for (uint64_t k = 0; k < nq; k++) {
    struct sigq_ent *e = &sb->sigq[sb->nsigq];
    r_bytes(r, &e->info, sizeof e->info);
    uint64_t timer = r_u64(r), gen = r_u64(r);
    int sig = e->info.si_signo;
    if (r->err || sig < 1 || sig > 64 || !(sb->pending >> (sig - 1) & 1) || timer > NTIMER || gen > UINT32_MAX ||
        (sig < 32 && (seen >> (sig - 1) & 1)))
      return cf_fail(EINVAL, "template '%s': bad signal queue", name);
    seen |= 1ull << (sig - 1);
    e->timer = (int)timer;
    e->gen = (uint32_t)gen;
    sb->nsigq++;
    struct ktimer *t = timer ? &sb->timers[timer - 1] : NULL;
    if (t && t->kind == TK_POSIX && t->gen == e->gen)
      t->queued = true;
  }
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
  /* Linux: the clocks with timers sleep; the thread's CPU clock, the raw,
   * coarse and alarm clocks cannot (EOPNOTSUPP), unknown ones are EINVAL. */
  bool cpu;
  int cr = timer_clock(sb, clk, &cpu);
  if (cr < 0)
    return cr;
  if (cpu) /* Linux sleeps on the process's CPU clock (ENOTSUP for a thread's); not here */
    return -ENOTSUP;
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
  bool cpu;
  if (!timeval && clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC && timer_clock(sb, clk, &cpu) == 0 && cpu)
    ts = ns_ts(guest_cpu_ns(sb)); /* the guest's CPU time (what its CPU timers count), not the VMM's */
  else if (clock_gettime(clk, &ts) < 0)
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
  /* clock ticks (100 a second); all user time, as getrusage (task.c) */
  t.u = (int64_t)(guest_cpu_ns(sb) / 10000000u);
  t.cu = (int64_t)(sb->child_cpu_ns / 10000000u);
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

/* Setting a clock: a sandbox's program never has CAP_SYS_TIME on the host
 * (its uid 0 is the sandbox's), so CLOCK_REALTIME is EPERM, as Linux gives
 * a process without it, after the checks Linux makes first (EFAULT, an
 * invalid time EINVAL); every other clock (no setter on Linux 6: MONOTONIC,
 * BOOTTIME, TAI, the CPU clocks) or none at all is EINVAL, before the
 * pointer is read. */
long sys_clock_settime(struct sb *sb, const uint64_t a[6], long nr)
{
  struct timespec ts;
  if ((clockid_t)A(0) != CLOCK_REALTIME)
    return -EINVAL;
  if (mm_copy_in(sb, &ts, A(1), sizeof ts) < 0)
    return -EFAULT;
  return ts.tv_sec < 0 || !ts_valid(&ts) ? -EINVAL : -EPERM;
}

long sys_settimeofday(struct sb *sb, const uint64_t a[6], long nr)
{
  struct timeval tv;
  if (A(0)) {
    if (mm_copy_in(sb, &tv, A(0), sizeof tv) < 0)
      return -EFAULT;
    if (tv.tv_usec < 0 || tv.tv_usec >= 1000000 || tv.tv_sec < 0)
      return -EINVAL;
  }
  struct timezone tz;
  if (A(1) && mm_copy_in(sb, &tz, A(1), sizeof tz) < 0)
    return -EFAULT;
  return -EPERM;
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
