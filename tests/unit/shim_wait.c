/* The shim's waits, timers and process calls' errors, driven through
 * sys_dispatch on a sandbox state with plain memory and no VM (so it runs
 * where /dev/kvm does not): timed futex waits sleep to their deadline and
 * give ETIMEDOUT, value mismatch EAGAIN, bad pointers EFAULT; an untimed
 * wait nothing can end ends the sandbox with a report; setitimer/getitimer/
 * alarm keep and report real timers (and a state file keeps them, version 1
 * files still load); an armed ITIMER_REAL interrupts
 * nanosleep, futex, poll, pause (a fatal SIGALRM here: a handler needs the
 * vCPU, tests/sandbox-signals.sh runs those); clone/clone3/wait4/waitid/
 * kill/setpgid/setsid give Linux's errors (forks themselves need a VM:
 * tests/sandbox-processes.sh); the timers survive a state save and load. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include "cowfork/error.h"
#include "shim/shim.h"
#define SHIM_UTIL_NO_HARNESS
#include "shim_util.h"
#include "tap.h"

#define MEM (16ull << 20)
#define WORD 0x20000ull   /* a futex word */
#define TS 0x21000ull     /* a timespec / itimerval */
#define OUT 0x22000ull    /* an output buffer */
#define WORD2 0x23000ull
#define UNMAPPED 0x800000ull

static struct cf_sandbox_opts opts;

/* A waker that comes while the wait sleeps (a host signal in this one
 * thread): what another thread's FUTEX_WAKE does to the waiter. */
static struct sb *wake_sb;
static void wake_word(int sig)
{
  (void)sig;
  futex_wake(wake_sb, WORD, 1, FUTEX_BITSET_MATCH_ANY);
}

/* MEM bytes, all of it readable and writable; one VMA [64 KiB, 1 MiB). */
static struct sb *new_sb(void)
{
  struct sb *sb = shim_sb_new(&opts, MEM, PROT_READ | PROT_WRITE);
  if (mm_vmas_reserve(sb, 1) < 0)
    abort();
  sb->vmas[0] = (struct vma){.start = 0x10000, .end = 0x100000, .prot = PROT_READ | PROT_WRITE};
  sb->nvma = 1;
  return sb;
}

static double now_ms(clockid_t c)
{
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void put_ts(struct sb *sb, uint64_t at, double ms)
{
  struct timespec ts = {(time_t)(ms / 1e3), (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
  memcpy(sb->mem + at, &ts, sizeof ts);
}

static void put_u32(struct sb *sb, uint64_t at, uint32_t v) { memcpy(sb->mem + at, &v, 4); }

static void set_real(struct sb *sb, double value_ms, double interval_ms)
{
  struct itimerval it = {{(time_t)(interval_ms / 1e3), (suseconds_t)((long)(interval_ms * 1e3) % 1000000)},
                         {(time_t)(value_ms / 1e3), (suseconds_t)((long)(value_ms * 1e3) % 1000000)}};
  memcpy(sb->mem + TS + 0x100, &it, sizeof it);
  if (shim_sys(sb, SYS_setitimer, ITIMER_REAL, TS + 0x100, 0, 0, 0, 0) != 0)
    abort();
}

/* A wait of about want ms (the machine may be busy: generous above). */
#define NEAR(ms, want) ((ms) >= (want) - 2 && (ms) < (want) + 250)

int main(void)
{
  struct sb *sb = new_sb();
  double t;
  long r;

  /* ---- futex ---- */
  put_u32(sb, WORD, 7);
  t = now_ms(CLOCK_MONOTONIC);
  put_ts(sb, TS, t + 50);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 7, TS, 0, FUTEX_BITSET_MATCH_ANY);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == -ETIMEDOUT && NEAR(t, 50), "FUTEX_WAIT_BITSET, absolute CLOCK_MONOTONIC +50 ms: %ld after %.1f ms", r, t);

  t = now_ms(CLOCK_REALTIME);
  put_ts(sb, TS, t + 50);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME, 7, TS, 0,
          FUTEX_BITSET_MATCH_ANY);
  t = now_ms(CLOCK_REALTIME) - t;
  ok(r == -ETIMEDOUT && NEAR(t, 50), "FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME +50 ms: %ld after %.1f ms", r, t);

  put_ts(sb, TS, 50);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, TS, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == -ETIMEDOUT && NEAR(t, 50), "FUTEX_WAIT, relative 50 ms: %ld after %.1f ms", r, t);

  /* Woken at 20 ms, back only at the deadline (60 ms; here the sleep goes
   * on, as a waiter that gets the lock late): Linux returns 0, a wake is
   * never lost (it was ETIMEDOUT: the shim looked at the clock). */
  {
    wake_sb = sb;
    struct sigaction sa = {.sa_handler = wake_word};
    sigaction(SIGUSR2, &sa, NULL);
    timer_t ht;
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    struct itimerspec its = {.it_value = {0, 20000000}};
    timer_create(CLOCK_MONOTONIC, &sev, &ht);
    put_ts(sb, TS, 60);
    t = now_ms(CLOCK_MONOTONIC);
    timer_settime(ht, 0, &its, NULL);
    r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, TS, 0, 0);
    t = now_ms(CLOCK_MONOTONIC) - t;
    timer_delete(ht);
    ok(r == 0 && t >= 55, "FUTEX_WAIT woken before its deadline, running again after it: 0 (%ld after %.1f ms)", r, t);
  }

  struct timespec far = {INT64_MAX, 0}; /* never: ends only by the alarm */
  memcpy(sb->mem + TS, &far, sizeof far);
  set_real(sb, 30, 0);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT_BITSET, 7, TS, 0, FUTEX_BITSET_MATCH_ANY);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == -EINTR && sb->kill_signal == SIGALRM && NEAR(t, 30),
     "a deadline INT64_MAX s away does not wrap: the wait goes on until a signal (%ld after %.1f ms)", r, t);
  shim_sb_free(sb);
  sb = new_sb();
  put_u32(sb, WORD, 7);

  put_ts(sb, TS, 0);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT, 7, TS, 0, 0);
  ok(r == -ETIMEDOUT, "FUTEX_WAIT with a zero timeout: ETIMEDOUT (%ld)", r);

  put_ts(sb, TS, 5000);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT, 8, TS, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == -EAGAIN && t < 50, "value mismatch: EAGAIN at once (%ld)", r);
  ok(shim_sys(sb, SYS_futex, UNMAPPED, FUTEX_WAIT, 7, TS, 0, 0) == -EFAULT, "bad futex address: EFAULT");
  ok(shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT, 7, UNMAPPED, 0, 0) == -EFAULT, "bad timeout pointer: EFAULT");
  ok(shim_sys(sb, SYS_futex, WORD + 1, FUTEX_WAIT, 7, 0, 0, 0) == -EINVAL, "misaligned futex: EINVAL");
  ok(shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT_BITSET, 7, 0, 0, 0) == -EINVAL, "bitset 0: EINVAL");
  struct timespec bad = {0, 1000000000};
  memcpy(sb->mem + TS, &bad, sizeof bad);
  ok(shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT, 7, TS, 0, 0) == -EINVAL, "tv_nsec 1e9: EINVAL");
  ok(shim_sys(sb, SYS_futex, WORD, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0) == 0, "FUTEX_WAKE wakes nobody: 0");
  ok(shim_sys(sb, SYS_futex, WORD, FUTEX_LOCK_PI, 0, 0, 0, 0) == -ENOSYS, "FUTEX_LOCK_PI: ENOSYS, not a silent 0");
  put_u32(sb, WORD2, 10);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAKE_OP, 1, 1, WORD2, FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_EQ, 0));
  uint32_t w2;
  memcpy(&w2, sb->mem + WORD2, 4);
  ok(r == 0 && w2 == 15, "FUTEX_WAKE_OP does its operation: %u", w2);
  ok(!sb->exited, "the sandbox goes on");

  /* An untimed wait nothing can end: the sandbox ends with a report. */
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, 0, 0, 0);
  ok(r == SYS_NORETURN && sb->exited && sb->kill_signal == SIGKILL && strstr(sb->report, "futex"),
     "untimed FUTEX_WAIT, no timer: ends with a report (%s)", sb->report);
  shim_sb_free(sb);

  /* ... unless a timer can end it: SIGALRM (default action) ends it then. */
  sb = new_sb();
  put_u32(sb, WORD, 7);
  set_real(sb, 50, 0);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_futex, WORD, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(sb->exited && sb->kill_signal == SIGALRM && NEAR(t, 50),
     "untimed FUTEX_WAIT with alarm 50 ms: killed by SIGALRM after %.1f ms (signal %d)", t, sb->kill_signal);
  shim_sb_free(sb);

  /* ---- nanosleep, poll, pause ---- */
  sb = new_sb();
  set_real(sb, 50, 0);
  put_ts(sb, TS, 2000);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_nanosleep, TS, OUT, 0, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == -EINTR && sb->kill_signal == SIGALRM && NEAR(t, 50),
     "nanosleep 2 s, alarm 50 ms: EINTR, killed by SIGALRM after %.1f ms", t);
  shim_sb_free(sb);

  sb = new_sb();
  sb->sigmask = 1ull << (SIGALRM - 1); /* blocked: pending, the sleep goes on */
  set_real(sb, 20, 0);
  put_ts(sb, TS, 120);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_nanosleep, TS, 0, 0, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == 0 && NEAR(t, 120) && (sb->pending & (1ull << (SIGALRM - 1))) && !sb->exited,
     "a blocked SIGALRM does not cut a 120 ms nanosleep (%.1f ms), it is pending", t);
  sb->act[SIGALRM].handler = (uint64_t)SIG_IGN;
  sb->pending = 0;
  sb->sigmask = 0;
  set_real(sb, 20, 20);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, TS, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == 0 && NEAR(t, 120) && !sb->pending, "an ignored SIGALRM every 20 ms does not cut it either (%.1f ms)", t);
  set_real(sb, 0, 0);
  t = now_ms(CLOCK_MONOTONIC);
  put_ts(sb, TS, t + 50);
  r = shim_sys(sb, SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, TS, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == 0 && NEAR(t, 50), "clock_nanosleep TIMER_ABSTIME +50 ms (%.1f ms)", t);
  /* The clocks Linux cannot sleep on (EOPNOTSUPP on 6.x; older kernels
   * said EINVAL for the thread's CPU clock) and unknown ones, against the
   * native call; the process CPU clock is left out (natively it sleeps). */
  {
    static const clockid_t clk[] = {CLOCK_THREAD_CPUTIME_ID, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE,
                                    CLOCK_MONOTONIC_COARSE, 10, 12, 99, -1};
    struct timespec one = {0, 1};
    for (size_t i = 0; i < sizeof clk / sizeof *clk; i++) {
      long nat = syscall(SYS_clock_nanosleep, clk[i], 0, &one, NULL) < 0 ? -errno : 0;
      memcpy(sb->mem + TS, &one, sizeof one);
      r = shim_sys(sb, SYS_clock_nanosleep, (uint64_t)(int64_t)clk[i], 0, TS, 0, 0, 0);
      ok(r == nat, "clock_nanosleep on clock %d: %ld, natively %ld", (int)clk[i], r, nat);
    }
  }

  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_poll, 0, 0, 50, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == 0 && NEAR(t, 50), "poll(NULL, 0, 50) sleeps 50 ms: %ld after %.1f ms", r, t);
  put_ts(sb, TS, 50);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_ppoll, 0, 0, TS, 0, 8, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(r == 0 && NEAR(t, 50), "ppoll(NULL, 0, 50 ms) sleeps 50 ms: %ld after %.1f ms", r, t);
  r = shim_sys(sb, SYS_poll, 0, 0, (uint64_t)-1, 0, 0, 0);
  ok(r == SYS_NORETURN && sb->exited && strstr(sb->report, "poll"), "poll forever with nothing to wait for: ends (%s)",
     sb->report);
  shim_sb_free(sb);

  sb = new_sb();
  sb->act[SIGALRM].handler = (uint64_t)SIG_DFL;
  set_real(sb, 50, 0);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_pause, 0, 0, 0, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(sb->exited && sb->kill_signal == SIGALRM && NEAR(t, 50), "pause with alarm 50 ms: SIGALRM after %.1f ms", t);
  shim_sb_free(sb);

  sb = new_sb();
  sb->sigmask = 1ull << (SIGALRM - 1);
  set_real(sb, 50, 0);
  memset(sb->mem + OUT, 0, 8);
  t = now_ms(CLOCK_MONOTONIC);
  r = shim_sys(sb, SYS_rt_sigsuspend, OUT, 8, 0, 0, 0, 0);
  t = now_ms(CLOCK_MONOTONIC) - t;
  ok(sb->exited && sb->kill_signal == SIGALRM && NEAR(t, 50),
     "sigsuspend(empty mask) with SIGALRM blocked and alarm 50 ms: SIGALRM after %.1f ms", t);
  shim_sb_free(sb);

  sb = new_sb();
  r = shim_sys(sb, SYS_pause, 0, 0, 0, 0, 0, 0);
  ok(r == SYS_NORETURN && sb->exited && strstr(sb->report, "pause"), "pause with no timer: ends (%s)", sb->report);
  shim_sb_free(sb);

  /* ---- setitimer, getitimer, alarm ---- */
  sb = new_sb();
  struct itimerval it;
  memset(sb->mem + OUT, 0xa5, 64); /* the old stub left this garbage */
  ok(shim_sys(sb, SYS_getitimer, ITIMER_VIRTUAL, OUT, 0, 0, 0, 0) == 0, "getitimer(ITIMER_VIRTUAL)");
  memcpy(&it, sb->mem + OUT, sizeof it);
  ok(!it.it_value.tv_sec && !it.it_value.tv_usec && !it.it_interval.tv_sec && !it.it_interval.tv_usec,
     "an unarmed timer reads as zeros");
  set_real(sb, 2000, 500);
  ok(shim_sys(sb, SYS_getitimer, ITIMER_REAL, OUT, 0, 0, 0, 0) == 0, "getitimer(ITIMER_REAL)");
  memcpy(&it, sb->mem + OUT, sizeof it);
  double v = it.it_value.tv_sec * 1e3 + it.it_value.tv_usec / 1e3;
  ok(v > 1900 && v <= 2000 && it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == 500000,
     "it reads the time left, %.3f ms, and the interval", v);
  r = shim_sys(sb, SYS_alarm, 5, 0, 0, 0, 0, 0);
  ok(r == 2, "alarm(5) returns the old time left rounded: %ld", r);
  r = shim_sys(sb, SYS_alarm, 0, 0, 0, 0, 0, 0);
  ok(r == 5, "alarm(0) returns 5: %ld", r);
  ok(shim_sys(sb, SYS_getitimer, ITIMER_REAL, OUT, 0, 0, 0, 0) == 0, "getitimer after alarm(0)");
  memcpy(&it, sb->mem + OUT, sizeof it);
  ok(!it.it_value.tv_sec && !it.it_value.tv_usec && !it.it_interval.tv_sec, "alarm(0) disarmed it");
  ok(shim_sys(sb, SYS_getitimer, 3, OUT, 0, 0, 0, 0) == -EINVAL, "getitimer(3): EINVAL");
  ok(shim_sys(sb, SYS_getitimer, ITIMER_REAL, UNMAPPED, 0, 0, 0, 0) == -EFAULT, "getitimer to a bad pointer: EFAULT");
  ok(shim_sys(sb, SYS_setitimer, ITIMER_PROF, UNMAPPED, 0, 0, 0, 0) == -EFAULT, "setitimer from a bad pointer: EFAULT");
  it = (struct itimerval){.it_value = {0, 1000000}};
  memcpy(sb->mem + TS, &it, sizeof it);
  ok(shim_sys(sb, SYS_setitimer, ITIMER_REAL, TS, 0, 0, 0, 0) == -EINVAL, "tv_usec 1e6: EINVAL");
  it = (struct itimerval){.it_value = {3, 0}};
  memcpy(sb->mem + TS, &it, sizeof it);
  ok(shim_sys(sb, SYS_setitimer, ITIMER_PROF, TS, 0, 0, 0, 0) == 0, "setitimer(ITIMER_PROF, 3 s)");
  ok(shim_sys(sb, SYS_setitimer, ITIMER_PROF, 0, OUT, 0, 0, 0) == 0, "setitimer(ITIMER_PROF, NULL) disarms");
  memcpy(&it, sb->mem + OUT, sizeof it);
  ok(it.it_value.tv_sec == 2 || it.it_value.tv_sec == 3, "and gives the old value (%ld s)", (long)it.it_value.tv_sec);

  /* The timers in a state file: remaining times, counted again on load. */
  set_real(sb, 3000, 250);
  it = (struct itimerval){.it_value = {7, 0}};
  memcpy(sb->mem + TS, &it, sizeof it);
  shim_sys(sb, SYS_setitimer, ITIMER_VIRTUAL, TS, 0, 0, 0, 0);
  struct wbuf w = {0};
  itimer_save(sb, &w);
  struct sb *c = new_sb();
  struct rbuf rb = {w.p, w.n, 0, false};
  ok(itimer_load(c, &rb) == 0 && rb.off == w.n, "timers saved and loaded");
  shim_sys(c, SYS_getitimer, ITIMER_REAL, OUT, 0, 0, 0, 0);
  memcpy(&it, c->mem + OUT, sizeof it);
  v = it.it_value.tv_sec * 1e3 + it.it_value.tv_usec / 1e3;
  ok(v > 2900 && v <= 3000 && it.it_interval.tv_usec == 250000, "ITIMER_REAL kept: %.1f ms left", v);
  shim_sys(c, SYS_getitimer, ITIMER_VIRTUAL, OUT, 0, 0, 0, 0);
  memcpy(&it, c->mem + OUT, sizeof it);
  ok(it.it_value.tv_sec == 6 || it.it_value.tv_sec == 7, "ITIMER_VIRTUAL kept: %ld s", (long)it.it_value.tv_sec);
  w.p[0] ^= 1;
  rb = (struct rbuf){w.p, w.n, 0, false};
  ok(itimer_load(c, &rb) < 0, "a bad section is refused");
  free(w.p);
  shim_sb_free(c);
  shim_sb_free(sb);

  /* A version 1 state payload (no timer section; a seed of the state
   * fuzzer, a busybox sh template) still loads, with no timer armed; with
   * the section appended, the timers load too; a bad section is refused. */
  FILE *seed = fopen("tests/fuzz/corpus/state/s2", "rb");
  if (seed) {
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 256, seed);
    fclose(seed);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    opts.stdio[0] = opts.stdio[1] = opts.stdio[2] = null;
    for (int k = 0; k < 3; k++) {
      size_t len = n;
      if (k > 0) { /* append a section: REAL 4 s left, 100 ms interval */
        struct sb *src = new_sb();
        src->timers[ITIMER_REAL] = (struct ktimer){.value = mono_ns() + 4000000000ull, .interval = 100000000ull,
                                                   .kind = TK_ITIMER};
        src->ntimer = 3;
        struct wbuf sw = {0};
        itimer_save(src, &sw);
        if (k == 2)
          sw.p[15] = 0x7f; /* a time left far past any clock: refused */
        memcpy(buf + n, sw.p, sw.n);
        len += sw.n;
        free(sw.p);
        shim_sb_free(src);
      }
      struct sb *s2 = shim_sb_new(&opts, 64ull << 20, PROT_READ | PROT_WRITE);
      struct cf_vm_cpu *cpu = malloc(sizeof *cpu);
      struct cf_vm_regs regs;
      s2->forked = true;
      int rc = state_parse(s2, buf, len, "seed", cpu, &regs);
      if (k == 0)
        ok(rc == 0 && !itimer_armed(s2), "a version 1 state loads, no timer armed (%s)", rc ? cf_error() : "ok");
      else if (k == 1)
        ok(rc == 0 && s2->timers[ITIMER_REAL].value > mono_ns() + 3900000000ull &&
               s2->timers[ITIMER_REAL].interval == 100000000ull,
           "with the timer section: ITIMER_REAL armed, 4 s left (%s)", rc ? cf_error() : "ok");
      else
        ok(rc < 0 && strstr(cf_error(), "interval timers"), "a bad timer section is refused: %s", cf_error());
      fs_fini(s2);
      shim_sb_free(s2);
      free(cpu);
    }
    close(null);
  } else {
    diag("tests/fuzz/corpus/state/s2 not found (run from the source tree): state file cases skipped");
  }

  /* ---- processes and threads ---- */
  sb = new_sb();
  /* (forks themselves run in tests/sandbox-processes.sh: they need a VM) */
  ok(shim_sys(sb, SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0, 0) == -EINVAL,
     "clone(CLONE_SIGHAND) without CLONE_VM: EINVAL");
  ok(shim_sys(sb, SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0, 0) == -EPERM, "clone(CLONE_NEWPID): EPERM");
  ok(shim_sys(sb, SYS_wait4, -1, 0, 0, 0, 0, 0) == -ECHILD, "wait4 without children: ECHILD");
  ok(shim_sys(sb, SYS_wait4, -1, 0, WNOWAIT, 0, 0, 0) == -EINVAL, "wait4 with WNOWAIT (waitid's only): EINVAL");
  ok(shim_sys(sb, SYS_waitid, P_ALL, 0, 0, WNOHANG, 0, 0) == -EINVAL, "waitid without WEXITED/WSTOPPED/WCONTINUED: EINVAL");
  ok(shim_sys(sb, SYS_waitid, P_ALL, 0, 0, WEXITED, 0, 0) == -ECHILD, "waitid without children: ECHILD");
  ok(shim_sys(sb, SYS_getppid, 0, 0, 0, 0, 0, 0) == 1, "getppid of the first process: 1 (the sandbox's init)");
  ok(shim_sys(sb, SYS_getpgrp, 0, 0, 0, 0, 0, 0) == 1 && shim_sys(sb, SYS_getsid, 0, 0, 0, 0, 0, 0) == 1,
     "the first process is in init's group and session");
  ok(shim_sys(sb, SYS_kill, -1, 0, 0, 0, 0, 0) == -ESRCH, "kill(-1) with no other process: ESRCH");
  ok(shim_sys(sb, SYS_setpgid, 0, 0, 0, 0, 0, 0) == 0 && shim_sys(sb, SYS_getpgid, 0, 0, 0, 0, 0, 0) == sb->pid,
     "setpgid(0, 0): its own group");
  ok(shim_sys(sb, SYS_setsid, 0, 0, 0, 0, 0, 0) == -EPERM, "setsid of a group leader: EPERM");
  ok(shim_sys(sb, SYS_setpgid, 0, 12345, 0, 0, 0, 0) == -EPERM, "setpgid to a group that does not exist: EPERM");
  ok(shim_sys(sb, SYS_setpgid, 999, 0, 0, 0, 0, 0) == -ESRCH, "setpgid of a process that is not a child: ESRCH");
  uint64_t thr = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS |
                 CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  ok(shim_sys(sb, SYS_clone, CLONE_THREAD, 0, 0, 0, 0, 0) == -EINVAL,
     "clone(CLONE_THREAD) without CLONE_SIGHAND: EINVAL");
  /* threads themselves run in tests/sandbox-threads.sh (they need vCPUs) */
  uint64_t cargs[11] = {SIGCHLD};
  uint64_t ca = 0x60000; /* inside the one VMA */
  memcpy(sb->mem + ca, cargs, sizeof cargs);
  cargs[0] = 0;
  cargs[4] = SIGCHLD; /* exit_signal */
  cargs[9] = 1;       /* set_tid_size */
  memcpy(sb->mem + ca, cargs, sizeof cargs);
  ok(shim_sys(sb, SYS_clone3, ca, 88, 0, 0, 0, 0) == -EPERM, "clone3 with set_tid: EPERM (needs CAP_SYS_ADMIN)");
  cargs[9] = 0;
  cargs[0] = 0x200000000ull; /* CLONE_INTO_CGROUP */
  memcpy(sb->mem + ca, cargs, sizeof cargs);
  ok(shim_sys(sb, SYS_clone3, ca, 88, 0, 0, 0, 0) == -EINVAL, "clone3 with CLONE_INTO_CGROUP: EINVAL");
  cargs[0] = SIGCHLD;
  cargs[4] = 0;
  memcpy(sb->mem + ca, cargs, sizeof cargs);
  ok(shim_sys(sb, SYS_clone3, ca, 32, 0, 0, 0, 0) == -EINVAL, "clone3 with a short struct: EINVAL");
  cargs[0] = thr;
  cargs[4] = SIGCHLD; /* exit_signal with CLONE_THREAD */
  memcpy(sb->mem + ca, cargs, sizeof cargs);
  ok(shim_sys(sb, SYS_clone3, ca, 88, 0, 0, 0, 0) == -EINVAL, "clone3 of a thread with an exit signal: EINVAL");
  ok(shim_sys(sb, SYS_clone3, 0x10, 88, 0, 0, 0, 0) == -EFAULT, "clone3 with a bad pointer: EFAULT");
  shim_sb_free(sb);
  return done_testing();
}
