/* POSIX timers, timerfd, rt_sigtimedwait and rt_(tg)sigqueueinfo (issue 13
 * item 4), driven through sys_dispatch with no VM, each compared where it
 * can be with the same call made natively in this process first: timer ids
 * count up from 0 and are never reused; the clocks timer_create and
 * timerfd_create take or refuse, with Linux's errno; a SIGEV_SIGNAL timer's
 * queued siginfo (SI_TIMER, si_value, si_timerid, si_overrun) and
 * timer_getoverrun; a deleted timer's pending signal is dropped when taken;
 * TIMER_ABSTIME; rt_sigtimedwait's timeout, EAGAIN and EINTR; queued
 * real-time signals and coalesced standard ones, EAGAIN past
 * RLIMIT_SIGPENDING; timerfd reads, counts, EAGAIN, fstat, its
 * /proc/self/fd link, poll; a template state keeps POSIX timers and the
 * queue (version 5) and refuses an open timerfd. All of these were ENOSYS
 * before. (The frame a handler gets is tests/sandbox-timers2.sh's.) */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

#define NEAR(ms, want) ((ms) >= (want) - 2 && (ms) < (want) + 250)
#define SIGBIT(s) (1ull << ((s) - 1))

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static long nat(long r) { return r < 0 ? -errno : r; }

static uint64_t its_g(long value_us, long interval_us)
{
  struct itimerspec its = {{interval_us / 1000000, interval_us % 1000000 * 1000},
                           {value_us / 1000000, value_us % 1000000 * 1000}};
  return galloc(&its, sizeof its);
}

static uint64_t sigset_g(uint64_t set) { return galloc(&set, 8); }

static uint64_t ts_g(long ms)
{
  struct timespec ts = {ms / 1000, ms % 1000 * 1000000};
  return galloc(&ts, sizeof ts);
}

static uint64_t sev_g(int notify, int signo, int val, int tid)
{
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = notify;
  ev.sigev_signo = signo;
  ev.sigev_value.sival_int = val;
  ev._sigev_un._tid = tid;
  return galloc(&ev, sizeof ev);
}

int main(void)
{
  /* ---- natively first (a fresh process: its timer ids start at 0) ---- */
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN);
  sigprocmask(SIG_BLOCK, &rt, NULL);
  struct sigevent nev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 77};
  int nid[4];
  for (int i = 0; i < 3; i++)
    syscall(SYS_timer_create, CLOCK_MONOTONIC, &nev, &nid[i]);
  syscall(SYS_timer_delete, nid[1]);
  syscall(SYS_timer_create, CLOCK_MONOTONIC, &nev, &nid[3]);
  struct itimerspec nits = {{0, 1000000}, {0, 1000}};
  syscall(SYS_timer_settime, nid[0], 0, &nits, NULL);
  usleep(10500);
  siginfo_t nsi;
  struct timespec zero = {0, 0};
  int nsig = sigtimedwait(&rt, &nsi, &zero);
  long novr = syscall(SYS_timer_getoverrun, nid[0]);
  struct itimerspec once = {{0, 0}, {0, 1000}};
  syscall(SYS_timer_settime, nid[2], 0, &once, NULL);
  usleep(3000);
  syscall(SYS_timer_delete, nid[0]);
  syscall(SYS_timer_delete, nid[2]);
  sigset_t np;
  sigpending(&np);
  int npend = sigismember(&np, SIGRTMIN);
  long nafter = nat(sigtimedwait(&rt, &nsi, &zero));
  syscall(SYS_timer_delete, nid[3]);
  static const clockid_t clocks[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -6, -2, -100};
  long ncreate[16], ntfd[16];
  for (int i = 0; i < 16; i++) {
    int id;
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    ncreate[i] = nat(syscall(SYS_timer_create, clocks[i], &none, &id));
    if (ncreate[i] == 0)
      syscall(SYS_timer_delete, id);
    ntfd[i] = nat(timerfd_create(clocks[i], 0));
    if (ntfd[i] >= 0) {
      close((int)ntfd[i]);
      ntfd[i] = 0;
    }
  }
  long ntfd_flags = nat(timerfd_create(CLOCK_MONOTONIC, 0x4000));
  int ntf = timerfd_create(CLOCK_MONOTONIC, 0);
  struct stat nst;
  fstat(ntf, &nst);
  long nwrite = nat(write(ntf, &nev, 8));
  long nset_bad = nat(timerfd_settime(ntf, 4, &once, NULL));
  close(ntf);

  shim_setup("/");
  sb->tid = sb->pid = 2;

  /* ---- timer ids ---- */
  uint64_t idg = galloc(NULL, 4);
  int id[4];
  for (int i = 0; i < 3; i++) {
    S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL, SIGRTMIN, 77, 0), idg);
    memcpy(&id[i], hp(idg), 4);
  }
  S1(SYS_timer_delete, id[1]);
  S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL, SIGRTMIN, 77, 0), idg);
  memcpy(&id[3], hp(idg), 4);
  ok(id[0] == nid[0] && id[1] == nid[1] && id[2] == nid[2] && id[3] == nid[3],
     "timer ids count up, never reused: %d %d %d then %d (natively %d %d %d then %d)", id[0], id[1], id[2], id[3],
     nid[0], nid[1], nid[2], nid[3]);

  /* ---- a periodic timer's queued siginfo and its overruns ---- */
  sb->sigmask = SIGBIT(SIGRTMIN);
  struct timespec el0, el1;
  clock_gettime(CLOCK_MONOTONIC, &el0);
  is(S4(SYS_timer_settime, id[0], 0, its_g(1, 1000), 0), 0, "timer_settime 1 us, then every 1 ms");
  usleep(10500);
  uint64_t sig_g = galloc(NULL, sizeof(siginfo_t));
  long r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGRTMIN)), sig_g, ts_g(0), 8);
  siginfo_t si;
  memcpy(&si, hp(sig_g), sizeof si);
  clock_gettime(CLOCK_MONOTONIC, &el1);
  long el = (el1.tv_sec - el0.tv_sec) * 1000 + (el1.tv_nsec - el0.tv_nsec) / 1000000; /* ms: under load, more */
  ok(r == nsig && si.si_code == SI_TIMER && si.si_value.sival_int == 77 && si.si_timerid == id[0],
     "rt_sigtimedwait takes it: signal %ld, SI_TIMER, si_value 77, si_timerid %d (natively %d, code %d)", r,
     si.si_timerid, nsig, nsi.si_code);
  ok(si.si_overrun >= 5 && si.si_overrun <= el && novr >= 5,
     "si_overrun counts the expirations while it was queued: %d in %ld ms (natively %ld)", si.si_overrun, el, novr);
  is(S1(SYS_timer_getoverrun, id[0]), si.si_overrun, "timer_getoverrun: the last taken one's");
  S4(SYS_timer_settime, id[2], 0, its_g(1, 0), 0);
  usleep(3000);
  S0(SYS_getpid); /* any call: the timers are looked at */
  S1(SYS_timer_delete, id[0]);
  S1(SYS_timer_delete, id[2]);
  uint64_t pend_g = galloc(NULL, 8);
  S2(SYS_rt_sigpending, pend_g, 8);
  uint64_t pend;
  memcpy(&pend, hp(pend_g), 8);
  ok(!!(pend & SIGBIT(SIGRTMIN)) == !!npend, "a deleted timer's signal is still pending (natively %d)", npend);
  r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGRTMIN)), 0, ts_g(0), 8);
  S2(SYS_rt_sigpending, pend_g, 8);
  memcpy(&pend, hp(pend_g), 8);
  ok(r == nafter && r == -EAGAIN && !(pend & SIGBIT(SIGRTMIN)),
     "... and dropped when taken: %ld (natively %ld), no longer pending", r, nafter);
  S1(SYS_timer_delete, id[3]);
  is(S1(SYS_timer_delete, id[3]), -EINVAL, "timer_delete of a deleted timer: EINVAL");
  is(S1(SYS_timer_getoverrun, 12345), -EINVAL, "timer_getoverrun of no timer: EINVAL");

  /* ---- clocks and sigevents ---- */
  for (int i = 0; i < 16; i++) {
    r = S3(SYS_timer_create, (uint64_t)(int64_t)clocks[i], sev_g(SIGEV_NONE, 0, 0, 0), idg);
    if (r == 0) {
      memcpy(&id[0], hp(idg), 4);
      S1(SYS_timer_delete, id[0]);
    }
    ok(r == ncreate[i], "timer_create on clock %d: %ld (natively %ld)", (int)clocks[i], r, ncreate[i]);
  }
  is(S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGRTMIN, 0, 3), idg), -EINVAL,
     "SIGEV_THREAD_ID to another thread: EINVAL");
  is(S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGRTMIN, 0, 2), idg), 0,
     "SIGEV_THREAD_ID to the sandbox's own: created");
  is(S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL, 65, 0, 0), idg), -EINVAL, "signal 65: EINVAL");
  is(S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(99, SIGRTMIN, 0, 0), idg), -EINVAL, "notify 99: EINVAL");
  is(S3(SYS_timer_create, CLOCK_MONOTONIC, 8, idg), -EFAULT, "a bad sigevent pointer: EFAULT");

  /* NULL sigevent: SIGALRM with the id as its value; TIMER_ABSTIME on
   * CLOCK_REALTIME; the old value; SIGEV_NONE gives no signal. */
  sb->sigmask |= SIGBIT(SIGALRM);
  S3(SYS_timer_create, CLOCK_REALTIME, 0, idg);
  memcpy(&id[0], hp(idg), 4);
  struct timespec rt_now;
  clock_gettime(CLOCK_REALTIME, &rt_now);
  struct itimerspec abs = {{0, 0}, {rt_now.tv_sec, rt_now.tv_nsec + 40000000}};
  if (abs.it_value.tv_nsec >= 1000000000)
    abs.it_value.tv_sec++, abs.it_value.tv_nsec -= 1000000000;
  is(S4(SYS_timer_settime, id[0], TIMER_ABSTIME, galloc(&abs, sizeof abs), 0), 0, "TIMER_ABSTIME realtime +40 ms");
  uint64_t cur_g = galloc(NULL, sizeof(struct itimerspec));
  S2(SYS_timer_gettime, id[0], cur_g);
  struct itimerspec cur;
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 30000000 && cur.it_value.tv_nsec <= 40000000,
     "timer_gettime: %ld ns left", cur.it_value.tv_nsec);
  double t = now_ms();
  r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGALRM)), sig_g, ts_g(2000), 8);
  t = now_ms() - t;
  memcpy(&si, hp(sig_g), sizeof si);
  ok(r == SIGALRM && si.si_code == SI_TIMER && si.si_value.sival_int == id[0] && NEAR(t, 40),
     "rt_sigtimedwait wakes for it after %.1f ms: SIGALRM, SI_TIMER, si_value the id %d", t, si.si_value.sival_int);
  is(S4(SYS_timer_settime, id[0], 0, its_g(3000000, 500000), cur_g), 0, "timer_settime 3 s every 0.5 s");
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0, "the old value: disarmed");
  S4(SYS_timer_settime, id[0], 0, its_g(0, 0), cur_g);
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(cur.it_value.tv_sec == 2 && cur.it_interval.tv_nsec == 500000000, "the old value: %ld s left, every %ld ns",
     (long)cur.it_value.tv_sec, cur.it_interval.tv_nsec);
  is(S4(SYS_timer_settime, id[0], 0, 0, 0), -EINVAL, "timer_settime with no value: EINVAL");
  struct itimerspec bad = {{0, 0}, {0, 1000000000}};
  is(S4(SYS_timer_settime, id[0], 0, galloc(&bad, sizeof bad), 0), -EINVAL, "tv_nsec 1e9: EINVAL");
  S1(SYS_timer_delete, id[0]);
  S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_NONE, 0, 0, 0), idg);
  memcpy(&id[0], hp(idg), 4);
  S4(SYS_timer_settime, id[0], 0, its_g(1000, 0), 0);
  usleep(3000);
  S0(SYS_getpid);
  S2(SYS_timer_gettime, id[0], cur_g);
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(!sb->pending && cur.it_value.tv_nsec == 0, "SIGEV_NONE: expired, no signal");
  S1(SYS_timer_delete, id[0]);

  /* ---- rt_sigtimedwait ---- */
  t = now_ms();
  r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGUSR1)), 0, ts_g(30), 8);
  t = now_ms() - t;
  ok(r == -EAGAIN && NEAR(t, 30), "a 30 ms timeout: EAGAIN after %.1f ms", t);
  is(S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGUSR1)), 0, ts_g(30), 4), -EINVAL, "sigsetsize 4: EINVAL");
  struct timespec badts = {0, -1};
  is(S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGUSR1)), 0, galloc(&badts, sizeof badts), 8), -EINVAL,
     "a bad timeout: EINVAL");

  /* ---- rt_sigqueueinfo, the queue ---- */
  siginfo_t q;
  memset(&q, 0, sizeof q);
  q.si_code = SI_QUEUE;
  q.si_pid = 1234;
  q.si_value.sival_int = 5;
  uint64_t q_g = galloc(&q, sizeof q);
  sb->sigmask = SIGBIT(SIGRTMIN + 1) | SIGBIT(SIGUSR1);
  is(S3(SYS_rt_sigqueueinfo, 2, SIGRTMIN + 1, q_g), 0, "rt_sigqueueinfo to itself");
  q.si_value.sival_int = 6;
  memcpy(hp(q_g), &q, sizeof q);
  is(S3(SYS_rt_sigqueueinfo, 2, SIGRTMIN + 1, q_g), 0, "again: a real-time signal queues");
  is(S3(SYS_rt_sigqueueinfo, 2, SIGUSR1, q_g), 0, "SIGUSR1");
  is(S3(SYS_rt_sigqueueinfo, 2, SIGUSR1, q_g), 0, "SIGUSR1 again: coalesced");
  int got[4], qpid = 0, qcode = 0;
  for (int i = 0; i < 4; i++) {
    r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGRTMIN + 1) | SIGBIT(SIGUSR1)), sig_g, ts_g(0), 8);
    memcpy(&si, hp(sig_g), sizeof si);
    got[i] = r > 0 ? (int)r * 100 + si.si_value.sival_int : (int)r;
    if (i == 1)
      qpid = si.si_pid, qcode = si.si_code;
  }
  ok(got[0] == SIGUSR1 * 100 + 6 && got[1] == (SIGRTMIN + 1) * 100 + 5 && got[2] == (SIGRTMIN + 1) * 100 + 6 &&
         got[3] == -EAGAIN,
     "taken lowest first, each queued instance with its value: %d %d %d %d", got[0], got[1], got[2], got[3]);
  ok(qpid == 1234 && qcode == SI_QUEUE, "the program's siginfo is kept: si_code %d, si_pid %d", qcode, qpid);
  q.si_code = SI_USER;
  memcpy(hp(q_g), &q, sizeof q);
  is(S3(SYS_rt_sigqueueinfo, 3, SIGUSR1, q_g), -EPERM, "si_code SI_USER to another process: EPERM");
  q.si_code = SI_QUEUE;
  memcpy(hp(q_g), &q, sizeof q);
  is(S3(SYS_rt_sigqueueinfo, 3, SIGUSR1, q_g), -ESRCH, "SI_QUEUE to another process: ESRCH");
  is(S3(SYS_rt_sigqueueinfo, 2, 65, q_g), -EINVAL, "signal 65: EINVAL");
  is(S4(SYS_rt_tgsigqueueinfo, 2, 0, SIGUSR1, q_g), -EINVAL, "rt_tgsigqueueinfo tid 0: EINVAL");
  is(S4(SYS_rt_tgsigqueueinfo, 2, 3, SIGUSR1, q_g), -ESRCH, "rt_tgsigqueueinfo to another thread: ESRCH");
  is(S4(SYS_rt_tgsigqueueinfo, 2, 2, SIGUSR1, q_g), 0, "rt_tgsigqueueinfo to itself");
  S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGUSR1)), 0, ts_g(0), 8);
  long n = 0;
  while (n < 1000 && S3(SYS_rt_sigqueueinfo, 2, SIGRTMIN + 1, q_g) == 0)
    n++;
  r = S3(SYS_rt_sigqueueinfo, 2, SIGRTMIN + 1, q_g);
  ok(n == SIGQ_MAX && r == -EAGAIN, "%ld real-time signals queue, then EAGAIN (RLIMIT_SIGPENDING)", n);
  is(S2(SYS_kill, 2, SIGRTMIN + 1), 0, "kill() past the limit: pending, its info lost (as Linux)");
  struct rlimit rl;
  rlim_get(sb, RLIMIT_SIGPENDING, &rl);
  ok(rl.rlim_cur == SIGQ_MAX, "getrlimit(RLIMIT_SIGPENDING) says so: %lu", (unsigned long)rl.rlim_cur);
  for (long i = 0; i <= n; i++)
    S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGRTMIN + 1)), 0, ts_g(0), 8);
  ok(!sb->pending && !sb->nsigq, "all taken");

  /* A signal outside the set interrupts the wait: EINTR (here a fatal SIGALRM). */
  sb->sigmask = 0;
  struct itimerval it = {{0, 0}, {0, 30000}};
  S3(SYS_setitimer, ITIMER_REAL, galloc(&it, sizeof it), 0);
  t = now_ms();
  r = S4(SYS_rt_sigtimedwait, sigset_g(SIGBIT(SIGUSR1)), 0, ts_g(2000), 8);
  t = now_ms() - t;
  ok(r == -EINTR && sb->kill_signal == SIGALRM && NEAR(t, 30), "EINTR by another signal after %.1f ms", t);
  sb->exited = false;
  sb->kill_signal = 0;

  /* ---- timerfd ---- */
  for (int i = 0; i < 16; i++) {
    r = S2(SYS_timerfd_create, (uint64_t)(int64_t)clocks[i], 0);
    if (r >= 0) {
      S1(SYS_close, r);
      r = 0;
    }
    ok(r == ntfd[i], "timerfd_create on clock %d: %ld (natively %ld)", (int)clocks[i], r, ntfd[i]);
  }
  is(S2(SYS_timerfd_create, CLOCK_MONOTONIC, 0x4000), ntfd_flags, "a bad flag: as natively");
  long tfd = S2(SYS_timerfd_create, CLOCK_MONOTONIC, 0);
  ok(tfd >= 3, "timerfd_create: fd %ld", tfd);
  uint64_t cnt_g = galloc(NULL, 8);
  is(S3(SYS_read, tfd, cnt_g, 4), -EINVAL, "a read of 4 bytes: EINVAL");
  is(S4(SYS_timerfd_settime, tfd, 0, its_g(20000, 0), 0), 0, "timerfd_settime 20 ms");
  t = now_ms();
  r = S3(SYS_read, tfd, cnt_g, 8);
  t = now_ms() - t;
  uint64_t cnt;
  memcpy(&cnt, hp(cnt_g), 8);
  ok(r == 8 && cnt == 1 && NEAR(t, 20), "read waits for it: %ld bytes, count %lu, after %.1f ms", r,
     (unsigned long)cnt, t);
  S4(SYS_timerfd_settime, tfd, 0, its_g(5000, 5000), 0);
  usleep(27500);
  r = S3(SYS_read, tfd, cnt_g, 8);
  memcpy(&cnt, hp(cnt_g), 8);
  ok(r == 8 && cnt >= 4 && cnt <= 6, "every 5 ms, read after 27.5 ms: count %lu", (unsigned long)cnt);
  S2(SYS_timerfd_gettime, tfd, cur_g);
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(cur.it_interval.tv_nsec == 5000000 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 5000000,
     "timerfd_gettime: %ld ns left, every %ld", cur.it_value.tv_nsec, cur.it_interval.tv_nsec);
  S4(SYS_timerfd_settime, tfd, 0, its_g(0, 0), 0);
  is(S3(SYS_fcntl, tfd, F_SETFL, O_NONBLOCK), 0, "O_NONBLOCK");
  is(S3(SYS_read, tfd, cnt_g, 8), -EAGAIN, "a disarmed non-blocking timerfd reads EAGAIN");
  ok((S2(SYS_fcntl, tfd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDWR | O_NONBLOCK), "F_GETFL: O_RDWR|O_NONBLOCK");
  is(S3(SYS_write, tfd, cnt_g, 8), nwrite, "write: as natively (EINVAL)");
  is(S3(SYS_lseek, tfd, 0, SEEK_CUR), 0, "lseek: 0 (noop_llseek)");
  is(S4(SYS_pread64, tfd, cnt_g, 8, 0), -ESPIPE, "pread: ESPIPE");
  is(S4(SYS_timerfd_settime, tfd, 4, its_g(1, 0), 0), nset_bad, "timerfd_settime flag 4: as natively (EINVAL)");
  is(S4(SYS_timerfd_settime, 0, 0, its_g(1, 0), 0), -EINVAL, "timerfd_settime of stdin: EINVAL");
  is(S4(SYS_timerfd_settime, 999, 0, its_g(1, 0), 0), -EBADF, "of no fd: EBADF");
  is(S4(SYS_timerfd_settime, tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, its_g(1, 0), 0), 0,
     "TFD_TIMER_ABSTIME|TFD_TIMER_CANCEL_ON_SET accepted (1 us after the epoch: expired)");
  r = S3(SYS_read, tfd, cnt_g, 8);
  memcpy(&cnt, hp(cnt_g), 8);
  ok(r == 8 && cnt == 1, "and it reads at once: count %lu", (unsigned long)cnt);
  uint64_t st_g = galloc(NULL, sizeof(struct stat));
  S2(SYS_fstat, tfd, st_g);
  struct stat st;
  memcpy(&st, hp(st_g), sizeof st);
  ok(st.st_mode == nst.st_mode && st.st_nlink == nst.st_nlink && st.st_size == nst.st_size &&
         st.st_blksize == nst.st_blksize,
     "fstat: mode 0%o nlink %lu size %ld (natively 0%o %lu %ld)", st.st_mode, (unsigned long)st.st_nlink,
     (long)st.st_size, nst.st_mode, (unsigned long)nst.st_nlink, (long)nst.st_size);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%ld", tfd);
  uint64_t lk = galloc(NULL, 64);
  r = S3(SYS_readlink, gs(path), lk, 64);
  ok(r == 20 && memcmp(hp(lk), "anon_inode:[timerfd]", 20) == 0, "its /proc/self/fd link: %.*s", (int)(r > 0 ? r : 0),
     (char *)hp(lk));
  /* poll and select see it */
  S4(SYS_timerfd_settime, tfd, 0, its_g(30000, 0), 0);
  struct pollfd pf = {.fd = (int)tfd, .events = POLLIN};
  uint64_t pf_g = galloc(&pf, sizeof pf);
  is(S3(SYS_poll, pf_g, 1, 0), 0, "poll: not ready before it expires");
  t = now_ms();
  r = S3(SYS_poll, pf_g, 1, 2000);
  t = now_ms() - t;
  memcpy(&pf, hp(pf_g), sizeof pf);
  ok(r == 1 && pf.revents == POLLIN && NEAR(t, 30), "poll: POLLIN when it expires, after %.1f ms", t);
  S3(SYS_read, tfd, cnt_g, 8);
  S4(SYS_timerfd_settime, tfd, 0, its_g(20000, 0), 0);
  uint64_t rset = 1ull << tfd;
  uint64_t rs_g = galloc(&rset, 8);
  struct timeval tv = {2, 0};
  t = now_ms();
  r = S5(SYS_select, tfd + 1, rs_g, 0, 0, galloc(&tv, sizeof tv));
  t = now_ms() - t;
  memcpy(&rset, hp(rs_g), 8);
  ok(r == 1 && rset == 1ull << tfd && NEAR(t, 20), "select: readable when it expires, after %.1f ms", t);

  /* a template: an open timerfd is refused by name; the POSIX timers and
   * the signal queue are saved and loaded (version 5) */
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "timerfd"), "saving with an open timerfd: %s", cf_error());
  free(w.p);
  S1(SYS_close, tfd);
  sb->sigmask = SIGBIT(SIGRTMIN) | SIGBIT(SIGUSR2);
  S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL, SIGRTMIN, 42, 0), idg);
  memcpy(&id[0], hp(idg), 4);
  S4(SYS_timer_settime, id[0], 0, its_g(1, 0), 0);
  usleep(1000);
  S0(SYS_getpid);
  S4(SYS_timer_settime, id[0], 0, its_g(4000000, 100000), 0); /* the queued one is stale now */
  S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_SIGNAL, SIGRTMIN, 43, 0), idg);
  memcpy(&id[1], hp(idg), 4);
  S4(SYS_timer_settime, id[1], 0, its_g(1, 0), 0);
  usleep(1000);
  S0(SYS_getpid);
  S2(SYS_kill, 2, SIGUSR2);
  struct wbuf tw = {0};
  timers_save(sb, &tw);
  /* c, c2: children over the same guest memory and VMAs (no memory of their own) */
  struct sb *c = calloc(1, sizeof *c), *c2 = calloc(1, sizeof *c2);
  *c = (struct sb){.opts = &opts, .mem = sb->mem, .mem_size = sb->mem_size, .vmas = sb->vmas, .nvma = sb->nvma,
                   .pid = 2, .tid = 2, .rootfd = -1};
  c->pending = sb->pending;
  struct rbuf rb = {tw.p, tw.n, 0, false};
  ok(timers_load(c, &rb, "t") == 0 && rb.off == tw.n, "POSIX timers and the queue saved and loaded");
  c->sigmask = sb->sigmask;
  r = shim_sys(c, SYS_timer_gettime, id[0], cur_g, 0, 0, 0, 0);
  memcpy(&cur, hp(cur_g), sizeof cur);
  ok(r == 0 && cur.it_value.tv_sec == 3 && cur.it_interval.tv_nsec == 100000000, "the child's timer: %ld s left",
     (long)cur.it_value.tv_sec);
  siginfo_t a1, a2, a3;
  int s1 = sig_dequeue(c, ~0ull, &a1), s2 = sig_dequeue(c, ~0ull, &a2), s3 = sig_dequeue(c, ~0ull, &a3);
  ok(s1 == SIGUSR2 && a1.si_code == SI_USER && s2 == SIGRTMIN && a2.si_value.sival_int == 43 && s3 == 0,
     "its queue: SIGUSR2 (SI_USER), then the live timer's SIGRTMIN (value %d); the stale one dropped",
     a2.si_value.sival_int);
  S3(SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_NONE, 0, 0, 0), idg);
  memcpy(&id[2], hp(idg), 4);
  r = shim_sys(c, SYS_timer_create, CLOCK_MONOTONIC, sev_g(SIGEV_NONE, 0, 0, 0), idg, 0, 0, 0);
  memcpy(&id[3], hp(idg), 4);
  ok(r == 0 && id[3] == id[2], "the child's next timer id is the parent's: %d", id[3]);
  tw.p[tw.n - 144] = 99; /* the last instance's signal number (siginfo, timer, gen): 99 */
  *c2 = *c;
  c2->ntimer = 0;
  memset(c2->timers, 0, sizeof c2->timers);
  c2->pending = sb->pending;
  rb = (struct rbuf){tw.p, tw.n, 0, false};
  ok(timers_load(c2, &rb, "t") < 0 && strstr(cf_error(), "signal queue"), "a bad queue is refused: %s", cf_error());
  free(tw.p);
  free(c);
  free(c2);

  /* a blocking read of a disarmed timerfd nothing can end: the sandbox ends */
  S1(SYS_timer_delete, id[0]);
  S1(SYS_timer_delete, id[1]);
  tfd = S2(SYS_timerfd_create, CLOCK_MONOTONIC, 0);
  r = S3(SYS_read, tfd, cnt_g, 8);
  ok(r == SYS_NORETURN && sb->exited && strstr(sb->report, "timerfd"), "a read of a disarmed timerfd: %s",
     sb->report);
  shim_teardown();
  return done_testing();
}
