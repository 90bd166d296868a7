/* eventfd, signalfd, epoll, poll/select and the signal masks of ppoll,
 * pselect6 and epoll_pwait (shim/event.c), driven through sys_dispatch on
 * a sandbox state with plain memory and no VM. Wherever Linux's behaviour
 * can be seen from here, the same sequence runs natively in this process
 * (eventfd, signalfd, epoll, pipes of its own) and the results and errnos
 * are compared; the rest (a fatal signal let in by the call's mask, a wait
 * nothing can end, a state file round trip) is checked against what Linux
 * documents. Handlers need the vCPU: tests/sandbox-events.sh runs those
 * natively and in a sandbox. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

#define NAT(x) ({ long x_ = (long)(x); x_ < 0 ? -(long)errno : x_; })
#define SIGBIT(s) (1ull << ((s) - 1))

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* The shim's eventfd write / read of a u64 (result, value read). */
static long s_write64(int fd, uint64_t v)
{
  uint64_t g = galloc(&v, 8);
  return S3(SYS_write, fd, g, 8);
}
static long s_read64(int fd, uint64_t *v)
{
  uint64_t g = galloc(NULL, 8);
  long r = S3(SYS_read, fd, g, 8);
  memcpy(v, hp(g), 8);
  return r;
}
static long n_write64(int fd, uint64_t v) { return NAT(write(fd, &v, 8)); }
static long n_read64(int fd, uint64_t *v) { return NAT(read(fd, v, 8)); }

/* poll of one fd for ev: revents (or -errno), shim and native. */
static long s_poll1(int fd, short ev, int ms)
{
  struct pollfd p = {fd, ev, 0};
  uint64_t g = galloc(&p, sizeof p);
  long r = S3(SYS_poll, g, 1, ms);
  return r < 0 ? r : ((struct pollfd *)hp(g))->revents;
}
static long n_poll1(int fd, short ev, int ms)
{
  struct pollfd p = {fd, ev, 0};
  long r = NAT(poll(&p, 1, ms));
  return r < 0 ? r : p.revents;
}

static long s_ctl(int ep, int op, int fd, uint32_t events, uint64_t data)
{
  struct epoll_event e = {.events = events, .data.u64 = data};
  return S4(SYS_epoll_ctl, ep, op, fd, galloc(&e, sizeof e));
}
static long n_ctl(int ep, int op, int fd, uint32_t events, uint64_t data)
{
  struct epoll_event e = {.events = events, .data.u64 = data};
  return NAT(epoll_ctl(ep, op, fd, &e));
}

/* epoll_wait into out (max entries): the count, the events as a string
 * "data:events ..." for comparing. */
static char sbuf[512], nbuf[512];
static const char *fmt_events(char *buf, const struct epoll_event *e, long n)
{
  buf[0] = 0;
  if (n < 0) {
    snprintf(buf, 512, "error %ld", n);
    return buf;
  }
  for (long i = 0; i < n; i++) {
    struct epoll_event x;
    memcpy(&x, &e[i], sizeof x);
    snprintf(buf + strlen(buf), 512 - strlen(buf), "%s%llx:%x", i ? " " : "", (unsigned long long)x.data.u64,
             x.events);
  }
  return buf;
}
static const char *s_wait(int ep, int max, int ms)
{
  uint64_t g = galloc(NULL, (size_t)max * sizeof(struct epoll_event));
  long n = S4(SYS_epoll_wait, ep, g, max, ms);
  return fmt_events(sbuf, hp(g), n);
}
static const char *n_wait(int ep, int max, int ms)
{
  struct epoll_event e[64];
  long n = NAT(epoll_wait(ep, e, max, ms));
  return fmt_events(nbuf, e, n);
}
#define SAME_WAIT(sep, nep, max, ms, what)                                                                     \
  do {                                                                                                         \
    const char *s_ = s_wait(sep, max, ms), *n_ = n_wait(nep, max, ms);                                         \
    ok(strcmp(s_, n_) == 0, "%s: shim [%s] native [%s]", what, s_, n_);                                        \
  } while (0)
#define SAME(s, n, what)                                                                                       \
  do {                                                                                                         \
    long s_ = (s), n_ = (n);                                                                                   \
    ok(s_ == n_, "%s: shim %ld native %ld", what, s_, n_);                                                     \
  } while (0)

static void test_eventfd(void)
{
  diag("eventfd");
  uint64_t sv = 0, nv = 0;
  int se = (int)S2(SYS_eventfd2, 3, EFD_NONBLOCK), ne = eventfd(3, EFD_NONBLOCK);
  ok(se >= 3, "eventfd2: fd %d", se);
  SAME(s_read64(se, &sv), n_read64(ne, &nv), "read of 3");
  ok(sv == 3 && nv == 3, "reads the counter (%llu, %llu)", (unsigned long long)sv, (unsigned long long)nv);
  SAME(s_read64(se, &sv), n_read64(ne, &nv), "read of 0: EAGAIN");
  SAME(s_poll1(se, POLLIN | POLLOUT, 0), n_poll1(ne, POLLIN | POLLOUT, 0), "poll at 0");
  SAME(S3(SYS_read, se, galloc(NULL, 8), 4), NAT(read(ne, &nv, 4)), "read of 4 bytes: EINVAL");
  SAME(S3(SYS_write, se, galloc(NULL, 8), 7), NAT(write(ne, &nv, 7)), "write of 7 bytes: EINVAL");
  SAME(s_write64(se, UINT64_MAX), n_write64(ne, UINT64_MAX), "write of UINT64_MAX: EINVAL");
  SAME(s_write64(se, UINT64_MAX - 1), n_write64(ne, UINT64_MAX - 1), "write up to the maximum");
  SAME(s_write64(se, 1), n_write64(ne, 1), "write past the maximum: EAGAIN");
  SAME(s_write64(se, 0), n_write64(ne, 0), "write of 0");
  SAME(s_poll1(se, POLLIN | POLLOUT, 0), n_poll1(ne, POLLIN | POLLOUT, 0), "poll at the maximum");
  {
    uint64_t g = galloc(NULL, 16);
    long s = S3(SYS_read, se, g, 16);
    uint64_t big[2];
    long n = NAT(read(ne, big, 16));
    SAME(s, n, "read of 16 bytes gives 8");
  }
  SAME(S3(SYS_pread64, se, galloc(NULL, 8), 8), NAT(pread(ne, &nv, 8, 0)), "pread: ESPIPE");
  SAME(S3(SYS_lseek, se, 5, SEEK_SET), NAT(lseek(ne, 5, SEEK_SET)), "lseek");
  SAME(S2(SYS_fcntl, se, F_GETFL), NAT(fcntl(ne, F_GETFL)), "F_GETFL");
  SAME(S2(SYS_eventfd2, 0, 0x10), NAT(eventfd(0, 0x10)), "eventfd2 with a bad flag: EINVAL");
  {
    uint64_t g = galloc(NULL, sizeof(struct stat));
    struct stat ns;
    SAME(S2(SYS_fstat, se, g), NAT(fstat(ne, &ns)), "fstat");
    struct stat *ss = hp(g);
    ok(ss->st_mode == ns.st_mode && ss->st_nlink == ns.st_nlink && ss->st_size == ns.st_size &&
           ss->st_uid == ns.st_uid && ss->st_blksize == ns.st_blksize,
       "fstat: an anonymous inode (mode %o nlink %lu, native %o %lu)", ss->st_mode, (unsigned long)ss->st_nlink,
       ns.st_mode, (unsigned long)ns.st_nlink);
    char p[64], nl[64] = {0};
    snprintf(p, sizeof p, "/proc/self/fd/%d", se);
    uint64_t b = galloc(NULL, 64);
    long sr = S3(SYS_readlink, gs(p), b, 64);
    snprintf(p, sizeof p, "/proc/self/fd/%d", ne);
    long nr = NAT(readlink(p, nl, sizeof nl));
    ok(sr == nr && memcmp(hp(b), nl, (size_t)(nr > 0 ? nr : 0)) == 0, "/proc/self/fd link: %.*s (native %s)",
       (int)(sr > 0 ? sr : 0), (char *)hp(b), nl);
    char sp[64];
    snprintf(sp, sizeof sp, "/proc/self/fd/%d", se);
    SAME(S2(SYS_open, gs(sp), O_RDWR), NAT(open(p, O_RDWR)), "open of /proc/self/fd/N: ENXIO");
  }
  S1(SYS_close, se);
  close(ne);

  /* EFD_SEMAPHORE: one at a time */
  se = (int)S2(SYS_eventfd2, 2, EFD_NONBLOCK | EFD_SEMAPHORE);
  ne = eventfd(2, EFD_NONBLOCK | EFD_SEMAPHORE);
  for (int i = 0; i < 3; i++) {
    long s = s_read64(se, &sv), n = n_read64(ne, &nv);
    ok(s == n && (s < 0 || sv == nv), "EFD_SEMAPHORE read %d: %ld %llu (native %ld %llu)", i, s,
       (unsigned long long)sv, n, (unsigned long long)nv);
  }
  S1(SYS_close, se);
  close(ne);
  /* eventfd (the old call) takes no flags: blocking, counter as given */
  se = (int)S1(SYS_eventfd, 7);
  ne = (int)syscall(SYS_eventfd, 7);
  SAME(S2(SYS_fcntl, se, F_GETFL), NAT(fcntl(ne, F_GETFL)), "eventfd: F_GETFL");
  SAME(s_read64(se, &sv), n_read64(ne, &nv), "eventfd: read");
  ok(sv == 7 && nv == 7, "eventfd: the initial count");
  S1(SYS_close, se);
  close(ne);
}

static void test_signalfd(void)
{
  diag("signalfd");
  uint64_t set = SIGBIT(SIGUSR1) | SIGBIT(SIGUSR2) | SIGBIT(SIGALRM);
  sigset_t ns;
  sigemptyset(&ns);
  sigaddset(&ns, SIGUSR1);
  sigaddset(&ns, SIGUSR2);
  sigaddset(&ns, SIGALRM);
  S4(SYS_rt_sigprocmask, SIG_BLOCK, galloc(&set, 8), 0, 8);
  sigprocmask(SIG_BLOCK, &ns, NULL);

  uint64_t one = SIGBIT(SIGUSR1);
  sigset_t n1;
  sigemptyset(&n1);
  sigaddset(&n1, SIGUSR1);
  int sf = (int)S4(SYS_signalfd4, -1, galloc(&one, 8), 8, SFD_NONBLOCK);
  int nf = signalfd(-1, &n1, SFD_NONBLOCK);
  ok(sf >= 0 && nf >= 0, "signalfd4: %d", sf);
  uint64_t g = galloc(NULL, 256);
  struct signalfd_siginfo nsi[2];
  SAME(S3(SYS_read, sf, g, 128), NAT(read(nf, nsi, 128)), "read with nothing pending: EAGAIN");
  SAME(S3(SYS_read, sf, g, 100), NAT(read(nf, nsi, 100)), "read of 100 bytes: EINVAL");
  SAME(s_poll1(sf, POLLIN | POLLOUT, 0), n_poll1(nf, POLLIN | POLLOUT, 0), "poll, nothing pending");
  S2(SYS_kill, sb->pid, SIGUSR1);
  kill(getpid(), SIGUSR1);
  SAME(s_poll1(sf, POLLIN | POLLOUT, 0), n_poll1(nf, POLLIN | POLLOUT, 0), "poll, SIGUSR1 pending");
  SAME(S3(SYS_read, sf, g, 256), NAT(read(nf, nsi, 256)), "read: one siginfo");
  struct signalfd_siginfo *si = hp(g);
  ok(si->ssi_signo == nsi[0].ssi_signo && si->ssi_code == nsi[0].ssi_code && si->ssi_pid == (uint32_t)sb->pid &&
         si->ssi_uid == (uint32_t)sb->uid,
     "siginfo: signo %u code %d pid %u (native %u %d)", si->ssi_signo, si->ssi_code, si->ssi_pid, nsi[0].ssi_signo,
     nsi[0].ssi_code);
  ok(!(sb->pending & SIGBIT(SIGUSR1)), "the signal is no longer pending");
  /* a new mask on the same fd */
  uint64_t two = SIGBIT(SIGUSR1) | SIGBIT(SIGUSR2);
  sigaddset(&n1, SIGUSR2);
  SAME(S3(SYS_signalfd, sf, galloc(&two, 8), 8) == sf ? 0 : -1, NAT(signalfd(nf, &n1, 0)) == nf ? 0 : -1,
       "signalfd on the same fd: the fd");
  S2(SYS_kill, sb->pid, SIGUSR2);
  S2(SYS_kill, sb->pid, SIGUSR1);
  kill(getpid(), SIGUSR2);
  kill(getpid(), SIGUSR1);
  SAME(S3(SYS_read, sf, g, 256), NAT(read(nf, nsi, 256)), "read of 256 bytes: two siginfos");
  ok(si[0].ssi_signo == nsi[0].ssi_signo && si[1].ssi_signo == nsi[1].ssi_signo, "in order: %u %u (native %u %u)",
     si[0].ssi_signo, si[1].ssi_signo, nsi[0].ssi_signo, nsi[1].ssi_signo);
  SAME(S2(SYS_fcntl, sf, F_GETFL), NAT(fcntl(nf, F_GETFL)), "F_GETFL");
  int se = (int)S2(SYS_eventfd2, 0, 0), ne = eventfd(0, 0);
  SAME(S4(SYS_signalfd4, se, galloc(&one, 8), 8, 0), NAT(signalfd(ne, &n1, 0)), "signalfd on an eventfd: EINVAL");
  SAME(S4(SYS_signalfd4, -2, galloc(&one, 8), 8, 0), NAT(syscall(SYS_signalfd4, -2, &n1, 8, 0)), "fd -2: EBADF");
  SAME(S4(SYS_signalfd4, -1, galloc(&one, 8), 4, 0), NAT(syscall(SYS_signalfd4, -1, &n1, 4, 0)), "size 4: EINVAL");
  SAME(S4(SYS_signalfd4, -1, galloc(&one, 8), 8, 1), NAT(syscall(SYS_signalfd4, -1, &n1, 8, 1)), "bad flags: EINVAL");
  SAME(S2(SYS_write, sf, g) , NAT(write(nf, nsi, 0)), "write: EINVAL");
  S1(SYS_close, se);
  close(ne);

  /* a blocking read ends when a timer raises a blocked signal in the set */
  uint64_t alrm = SIGBIT(SIGALRM);
  sigset_t na;
  sigemptyset(&na);
  sigaddset(&na, SIGALRM);
  int sa = (int)S4(SYS_signalfd4, -1, galloc(&alrm, 8), 8, 0);
  int na_fd = signalfd(-1, &na, 0);
  struct itimerval it = {{0, 0}, {0, 30000}};
  S3(SYS_setitimer, ITIMER_REAL, galloc(&it, sizeof it), 0);
  double t = now_ms();
  long r = S3(SYS_read, sa, g, 128);
  double ts = now_ms() - t;
  setitimer(ITIMER_REAL, &it, NULL);
  t = now_ms();
  long nr = NAT(read(na_fd, nsi, 128));
  double tn = now_ms() - t;
  ok(r == nr && r == 128 && si->ssi_signo == SIGALRM && si->ssi_code == nsi[0].ssi_code && ts >= 25 && ts < 500,
     "blocking read, a timer's SIGALRM: %ld after %.1f ms, code %d (native %ld after %.1f ms, code %d)", r, ts,
     si->ssi_code, nr, tn, nsi[0].ssi_code);
  S1(SYS_close, sa);
  close(na_fd);
  S1(SYS_close, sf);
  close(nf);
  sigprocmask(SIG_UNBLOCK, &ns, NULL);
  S4(SYS_rt_sigprocmask, SIG_UNBLOCK, galloc(&set, 8), 0, 8);
}

static void test_epoll(void)
{
  diag("epoll_ctl rules");
  int sep = (int)S1(SYS_epoll_create1, 0), nep = epoll_create1(0);
  int se = (int)S2(SYS_eventfd2, 1, EFD_NONBLOCK), ne = eventfd(1, EFD_NONBLOCK);
  SAME(S1(SYS_epoll_create, 0), NAT(syscall(SYS_epoll_create, 0)), "epoll_create(0): EINVAL");
  SAME(S1(SYS_epoll_create1, 1), NAT(epoll_create1(1)), "epoll_create1 bad flags: EINVAL");
  int stf = (int)S3(SYS_open, gs("/tmp/f"), O_CREAT | O_RDWR, 0600);
  char tmpl[] = "/var/tmp/shim_event_XXXXXX";
  int ntf = mkstemp(tmpl);
  unlink(tmpl);
  SAME(s_ctl(sep, EPOLL_CTL_ADD, stf, EPOLLIN, 0), n_ctl(nep, EPOLL_CTL_ADD, ntf, EPOLLIN, 0),
       "a regular file: EPERM");
  const char *paths[] = {"/dev/null", "/dev/random", "/dev/urandom", "/proc/cpuinfo", "/proc/self/status",
                         "/proc/self/mounts", "/proc/sys/kernel/hostname", "/etc"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int sfd = (int)S2(SYS_open, gs(paths[i]), O_RDONLY), nfd = open(paths[i], O_RDONLY);
    char w[96];
    snprintf(w, sizeof w, "%s: epoll_ctl ADD", paths[i]);
    SAME(s_ctl(sep, EPOLL_CTL_ADD, sfd, EPOLLIN, 0), n_ctl(nep, EPOLL_CTL_ADD, nfd, EPOLLIN, 0), w);
    snprintf(w, sizeof w, "%s: poll", paths[i]);
    short all = POLLIN | POLLOUT | POLLPRI | POLLRDNORM | POLLWRNORM | POLLRDBAND | POLLWRBAND;
    SAME(s_poll1(sfd, all, 0), n_poll1(nfd, all, 0), w);
    s_ctl(sep, EPOLL_CTL_DEL, sfd, 0, 0);
    n_ctl(nep, EPOLL_CTL_DEL, nfd, 0, 0);
    S1(SYS_close, sfd);
    close(nfd);
  }
  SAME(s_ctl(sep, EPOLL_CTL_ADD, sep, EPOLLIN, 0), n_ctl(nep, EPOLL_CTL_ADD, nep, EPOLLIN, 0), "itself: EINVAL");
  SAME(s_ctl(se, EPOLL_CTL_ADD, sep, EPOLLIN, 0), n_ctl(ne, EPOLL_CTL_ADD, nep, EPOLLIN, 0), "not an epoll: EINVAL");
  SAME(s_ctl(sep, EPOLL_CTL_ADD, 200, EPOLLIN, 0), n_ctl(nep, EPOLL_CTL_ADD, 900, EPOLLIN, 0), "closed fd: EBADF");
  SAME(s_ctl(200, EPOLL_CTL_ADD, se, EPOLLIN, 0), n_ctl(900, EPOLL_CTL_ADD, ne, EPOLLIN, 0), "closed epfd: EBADF");
  SAME(s_ctl(sep, EPOLL_CTL_DEL, se, 0, 0), n_ctl(nep, EPOLL_CTL_DEL, ne, 0, 0), "DEL of none: ENOENT");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLIN, 0), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLIN, 0), "MOD of none: ENOENT");
  SAME(s_ctl(sep, 7, se, EPOLLIN, 0), n_ctl(nep, 7, ne, EPOLLIN, 0), "bad op: EINVAL");
  SAME(S4(SYS_epoll_ctl, sep, EPOLL_CTL_ADD, se, 0x10), NAT(syscall(SYS_epoll_ctl, nep, EPOLL_CTL_ADD, ne, 0x10)),
       "bad event pointer: EFAULT");
  SAME(s_ctl(sep, EPOLL_CTL_ADD, se, EPOLLIN | EPOLLEXCLUSIVE | EPOLLPRI, 0),
       n_ctl(nep, EPOLL_CTL_ADD, ne, EPOLLIN | EPOLLEXCLUSIVE | EPOLLPRI, 0), "EPOLLEXCLUSIVE with EPOLLPRI: EINVAL");
  SAME(s_ctl(sep, EPOLL_CTL_ADD, se, EPOLLIN | EPOLLEXCLUSIVE, 1), n_ctl(nep, EPOLL_CTL_ADD, ne, EPOLLIN | EPOLLEXCLUSIVE, 1),
       "ADD with EPOLLEXCLUSIVE");
  SAME(s_ctl(sep, EPOLL_CTL_ADD, se, EPOLLIN, 1), n_ctl(nep, EPOLL_CTL_ADD, ne, EPOLLIN, 1), "ADD twice: EEXIST");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLIN, 1), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLIN, 1),
       "MOD of an EPOLLEXCLUSIVE entry: EINVAL");
  SAME_WAIT(sep, nep, 8, 0, "EPOLLEXCLUSIVE entry reports");
  SAME(s_ctl(sep, EPOLL_CTL_DEL, se, 0, 0), n_ctl(nep, EPOLL_CTL_DEL, ne, 0, 0), "DEL");
  SAME_WAIT(sep, nep, 8, 0, "after DEL: nothing");

  diag("epoll_wait arguments");
  uint64_t g = galloc(NULL, 16 * sizeof(struct epoll_event));
  struct epoll_event ev[16];
  SAME(S4(SYS_epoll_wait, sep, g, 0, 0), NAT(epoll_wait(nep, ev, 0, 0)), "maxevents 0: EINVAL");
  SAME(S4(SYS_epoll_wait, sep, 0x10, 1, 0), NAT(syscall(SYS_epoll_wait, nep, 0x10, 1, 0)),
       "a bad events pointer, nothing to report: 0 (Linux writes nothing)");
  SAME(S4(SYS_epoll_wait, sep, 0x800000000000ull, 1, 0), NAT(syscall(SYS_epoll_wait, nep, 0x800000000000ull, 1, 0)),
       "an events pointer past user space: EFAULT");
  SAME(S4(SYS_epoll_wait, se, g, 1, 0), NAT(epoll_wait(ne, ev, 1, 0)), "not an epoll: EINVAL");
  SAME(S4(SYS_epoll_wait, 200, g, 1, 0), NAT(epoll_wait(900, ev, 1, 0)), "closed: EBADF");
  SAME(S6(SYS_epoll_pwait, sep, g, 1, 0, galloc(NULL, 8), 4), NAT(syscall(SYS_epoll_pwait, nep, ev, 1, 0, ev, 4)),
       "epoll_pwait sigsetsize 4: EINVAL");
  {
    struct timespec bad = {0, 1000000000};
    SAME(S6(SYS_epoll_pwait2, sep, g, 1, galloc(&bad, sizeof bad), 0, 8),
         NAT(syscall(SYS_epoll_pwait2, nep, ev, 1, &bad, NULL, 8)), "epoll_pwait2 bad timespec: EINVAL");
    struct timespec t30 = {0, 30000000};
    double t = now_ms();
    long r = S6(SYS_epoll_pwait2, sep, g, 1, galloc(&t30, sizeof t30), 0, 8);
    t = now_ms() - t;
    ok(r == 0 && t >= 29 && t < 500, "epoll_pwait2 30 ms, nothing ready: %ld after %.1f ms", r, t);
    t = now_ms();
    r = S4(SYS_epoll_wait, sep, g, 1, 30);
    t = now_ms() - t;
    ok(r == 0 && t >= 29 && t < 500, "epoll_wait 30 ms, nothing ready: %ld after %.1f ms", r, t);
  }

  diag("level- and edge-triggered, one-shot, data verbatim");
  uint64_t sv, nv;
  SAME(s_ctl(sep, EPOLL_CTL_ADD, se, EPOLLIN | EPOLLOUT, 0x1122334455667788ull),
       n_ctl(nep, EPOLL_CTL_ADD, ne, EPOLLIN | EPOLLOUT, 0x1122334455667788ull), "ADD level-triggered");
  SAME_WAIT(sep, nep, 8, 0, "level: reported");
  SAME(S4(SYS_epoll_wait, sep, 0x10, 1, 0), NAT(syscall(SYS_epoll_wait, nep, 0x10, 1, 0)),
       "a bad events pointer, an event to report: EFAULT");
  SAME_WAIT(sep, nep, 8, 0, "level: reported again");
  s_read64(se, &sv);
  n_read64(ne, &nv);
  SAME_WAIT(sep, nep, 8, 0, "level: after the read, writable only");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLIN | EPOLLET, 2), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLIN | EPOLLET, 2),
       "MOD to edge-triggered");
  SAME_WAIT(sep, nep, 8, 0, "edge: nothing readable");
  s_write64(se, 1);
  n_write64(ne, 1);
  SAME_WAIT(sep, nep, 8, 0, "edge: a write, reported");
  SAME_WAIT(sep, nep, 8, 0, "edge: not again");
  s_write64(se, 1);
  n_write64(ne, 1);
  SAME_WAIT(sep, nep, 8, 0, "edge: a second write while readable, reported");
  SAME_WAIT(sep, nep, 8, 0, "edge: not again");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLOUT | EPOLLET, 3), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLOUT | EPOLLET, 3),
       "MOD to EPOLLOUT edge-triggered: reported at once");
  SAME_WAIT(sep, nep, 8, 0, "edge OUT: reported");
  SAME_WAIT(sep, nep, 8, 0, "edge OUT: not again");
  s_read64(se, &sv);
  n_read64(ne, &nv);
  SAME_WAIT(sep, nep, 8, 0, "edge OUT: a read wakes writers, reported");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLOUT | EPOLLONESHOT, 4), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLOUT | EPOLLONESHOT, 4),
       "MOD to one-shot");
  SAME_WAIT(sep, nep, 8, 0, "one-shot: reported");
  SAME_WAIT(sep, nep, 8, 0, "one-shot: disabled");
  SAME(s_ctl(sep, EPOLL_CTL_MOD, se, EPOLLOUT | EPOLLONESHOT, 5), n_ctl(nep, EPOLL_CTL_MOD, ne, EPOLLOUT | EPOLLONESHOT, 5),
       "one-shot re-armed by MOD");
  SAME_WAIT(sep, nep, 8, 0, "one-shot: reported again");
  s_ctl(sep, EPOLL_CTL_DEL, se, 0, 0);
  n_ctl(nep, EPOLL_CTL_DEL, ne, 0, 0);

  diag("maxevents rotates through ready entries");
  int s3[3], n3[3];
  for (int i = 0; i < 3; i++) {
    s3[i] = (int)S2(SYS_eventfd2, 1, EFD_NONBLOCK);
    n3[i] = eventfd(1, EFD_NONBLOCK);
    s_ctl(sep, EPOLL_CTL_ADD, s3[i], EPOLLIN, 0xa0 + (uint64_t)i);
    n_ctl(nep, EPOLL_CTL_ADD, n3[i], EPOLLIN, 0xa0 + (uint64_t)i);
  }
  SAME_WAIT(sep, nep, 2, 0, "maxevents 2, first");
  SAME_WAIT(sep, nep, 2, 0, "maxevents 2, second");
  SAME_WAIT(sep, nep, 2, 0, "maxevents 2, third");

  diag("closing: an entry lives as long as its file");
  int sd = (int)S1(SYS_dup, s3[0]), nd = dup(n3[0]);
  S1(SYS_close, s3[0]);
  close(n3[0]);
  SAME_WAIT(sep, nep, 8, 0, "one of two fds closed: still reported");
  SAME(s_ctl(sep, EPOLL_CTL_DEL, s3[0], 0, 0), n_ctl(nep, EPOLL_CTL_DEL, n3[0], 0, 0), "DEL by the closed fd: EBADF");
  S1(SYS_close, sd);
  close(nd);
  SAME_WAIT(sep, nep, 8, 0, "last fd closed: gone");

  diag("nesting");
  int sin = (int)S1(SYS_epoll_create1, 0), nin = epoll_create1(0);
  SAME(s_ctl(sep, EPOLL_CTL_ADD, sin, EPOLLIN, 0xe0), n_ctl(nep, EPOLL_CTL_ADD, nin, EPOLLIN, 0xe0),
       "an epoll in an epoll");
  SAME(s_ctl(sin, EPOLL_CTL_ADD, sep, EPOLLIN, 0), n_ctl(nin, EPOLL_CTL_ADD, nep, EPOLLIN, 0), "a cycle: ELOOP");
  SAME(s_ctl(sep, EPOLL_CTL_ADD, sin, EPOLLIN | EPOLLEXCLUSIVE, 0xe1),
       n_ctl(nep, EPOLL_CTL_ADD, nin, EPOLLIN | EPOLLEXCLUSIVE, 0xe1), "EPOLLEXCLUSIVE on an epoll: EINVAL");
  SAME(s_poll1(sin, POLLIN, 0), n_poll1(nin, POLLIN, 0), "an empty epoll polls not ready");
  int sx = (int)S2(SYS_eventfd2, 0, EFD_NONBLOCK), nx = eventfd(0, EFD_NONBLOCK);
  s_ctl(sin, EPOLL_CTL_ADD, sx, EPOLLIN, 0xf0);
  n_ctl(nin, EPOLL_CTL_ADD, nx, EPOLLIN, 0xf0);
  s_ctl(sep, EPOLL_CTL_DEL, s3[1], 0, 0);
  n_ctl(nep, EPOLL_CTL_DEL, n3[1], 0, 0);
  s_ctl(sep, EPOLL_CTL_DEL, s3[2], 0, 0);
  n_ctl(nep, EPOLL_CTL_DEL, n3[2], 0, 0);
  SAME_WAIT(sep, nep, 8, 0, "outer, inner not ready");
  s_write64(sx, 1);
  n_write64(nx, 1);
  SAME(s_poll1(sin, POLLIN | POLLOUT, 0), n_poll1(nin, POLLIN | POLLOUT, 0), "poll of the inner epoll");
  SAME_WAIT(sep, nep, 8, 0, "outer reports the inner");
  SAME_WAIT(sin, nin, 8, 0, "inner reports the eventfd");
  /* chains: Linux allows at most 5 epolls deep */
  int sc[7], nc[7];
  for (int i = 0; i < 7; i++) {
    sc[i] = (int)S1(SYS_epoll_create1, 0);
    nc[i] = epoll_create1(0);
  }
  for (int i = 0; i < 6; i++) {
    char w[64];
    snprintf(w, sizeof w, "chain: epoll %d into epoll %d", i + 1, i);
    SAME(s_ctl(sc[i], EPOLL_CTL_ADD, sc[i + 1], EPOLLIN, 0), n_ctl(nc[i], EPOLL_CTL_ADD, nc[i + 1], EPOLLIN, 0), w);
  }
  for (int i = 6; i >= 0; i--) {
    S1(SYS_close, sc[i]);
    close(nc[i]);
  }

  diag("poll and select over every kind");
  int sp[2], np[2];
  uint64_t gp = galloc(NULL, 8);
  S1(SYS_pipe, gp);
  memcpy(sp, hp(gp), 8);
  if (pipe(np) < 0)
    abort();
  S3(SYS_write, sp[1], gs("x"), 1);
  if (write(np[1], "x", 1) != 1)
    abort();
  int snull = (int)S2(SYS_open, gs("/dev/null"), O_RDWR), nnull = open("/dev/null", O_RDWR);
  uint64_t one = SIGBIT(SIGUSR1);
  sigset_t n1;
  sigemptyset(&n1);
  sigaddset(&n1, SIGUSR1);
  int ssf = (int)S4(SYS_signalfd4, -1, galloc(&one, 8), 8, 0), nsf = signalfd(-1, &n1, 0);
  int sfds[] = {sp[0], sp[1], stf, snull, sx, ssf, sin, sep, 250};
  int nfds_[] = {np[0], np[1], ntf, nnull, nx, nsf, nin, nep, 1000};
  int k = sizeof sfds / sizeof sfds[0];
  struct pollfd spf[9], npf[9];
  for (int i = 0; i < k; i++) {
    spf[i] = (struct pollfd){sfds[i], POLLIN | POLLOUT | POLLPRI, 0};
    npf[i] = (struct pollfd){nfds_[i], POLLIN | POLLOUT | POLLPRI, 0};
  }
  uint64_t gpf = galloc(spf, sizeof spf);
  SAME(S3(SYS_poll, gpf, k, 0), NAT(poll(npf, (nfds_t)k, 0)), "poll of pipe ends, /tmp file, /dev/null, eventfd, "
                                                              "signalfd, epolls, a closed fd");
  struct pollfd *r = hp(gpf);
  for (int i = 0; i < k; i++)
    ok(r[i].revents == npf[i].revents, "poll fd kind %d: revents %x (native %x)", i, r[i].revents, npf[i].revents);
  {
    fd_set srd, swr, nrd, nwr;
    FD_ZERO(&srd);
    FD_ZERO(&swr);
    FD_ZERO(&nrd);
    FD_ZERO(&nwr);
    int smax = 0, nmax = 0;
    for (int i = 0; i < k - 1; i++) {
      FD_SET(sfds[i], &srd);
      FD_SET(sfds[i], &swr);
      FD_SET(nfds_[i], &nrd);
      FD_SET(nfds_[i], &nwr);
      smax = sfds[i] > smax ? sfds[i] : smax;
      nmax = nfds_[i] > nmax ? nfds_[i] : nmax;
    }
    struct timeval z = {0, 0};
    uint64_t grd = galloc(&srd, sizeof srd), gwr = galloc(&swr, sizeof swr);
    SAME(S5(SYS_select, smax + 1, grd, gwr, 0, galloc(&z, sizeof z)), NAT(select(nmax + 1, &nrd, &nwr, NULL, &z)),
         "select over every kind");
    for (int i = 0; i < k - 1; i++)
      ok(FD_ISSET(sfds[i], (fd_set *)hp(grd)) == FD_ISSET(nfds_[i], &nrd) &&
             FD_ISSET(sfds[i], (fd_set *)hp(gwr)) == FD_ISSET(nfds_[i], &nwr),
         "select fd kind %d: r%d w%d (native r%d w%d)", i, FD_ISSET(sfds[i], (fd_set *)hp(grd)) != 0,
         FD_ISSET(sfds[i], (fd_set *)hp(gwr)) != 0, FD_ISSET(nfds_[i], &nrd) != 0, FD_ISSET(nfds_[i], &nwr) != 0);
  }
  /* a pipe in an epoll: host fds wait on the host */
  int sq = (int)S1(SYS_epoll_create1, 0), nq = epoll_create1(0);
  char c;
  S3(SYS_read, sp[0], galloc(NULL, 1), 1);
  if (read(np[0], &c, 1) != 1)
    abort();
  s_ctl(sq, EPOLL_CTL_ADD, sp[0], EPOLLIN | EPOLLET, 0x77);
  n_ctl(nq, EPOLL_CTL_ADD, np[0], EPOLLIN | EPOLLET, 0x77);
  SAME_WAIT(sq, nq, 4, 0, "empty pipe");
  {
    /* the order of Linux's ready list: an entry ready since ADD first, one
     * woken later after it (tests/sandbox-events.sh found this) */
    int sr = (int)S2(SYS_eventfd2, 1, EFD_NONBLOCK), nr_ = eventfd(1, EFD_NONBLOCK);
    int sq2 = (int)S1(SYS_epoll_create1, 0), nq2 = epoll_create1(0);
    s_ctl(sq2, EPOLL_CTL_ADD, sr, EPOLLIN, 0xe1);
    n_ctl(nq2, EPOLL_CTL_ADD, nr_, EPOLLIN, 0xe1);
    s_ctl(sq2, EPOLL_CTL_ADD, sp[0], EPOLLIN | EPOLLET, 0xb1);
    n_ctl(nq2, EPOLL_CTL_ADD, np[0], EPOLLIN | EPOLLET, 0xb1);
    SAME_WAIT(sq2, nq2, 4, 0, "order: the eventfd");
    S3(SYS_write, sp[1], gs("z"), 1);
    if (write(np[1], "z", 1) != 1)
      abort();
    SAME_WAIT(sq2, nq2, 4, 0, "order: the eventfd, then the pipe woken after it");
    S3(SYS_read, sp[0], galloc(NULL, 1), 1);
    if (read(np[0], &c, 1) != 1)
      abort();
    S1(SYS_close, sq2);
    close(nq2);
    S1(SYS_close, sr);
    close(nr_);
  }
  S3(SYS_write, sp[1], gs("y"), 1);
  if (write(np[1], "y", 1) != 1)
    abort();
  SAME_WAIT(sq, nq, 4, 0, "pipe written: edge");
  SAME_WAIT(sq, nq, 4, 0, "pipe: not again");
  S1(SYS_close, sp[1]);
  close(np[1]);
  SAME_WAIT(sq, nq, 4, 0, "pipe writer closed: EPOLLHUP is a new edge");
  S1(SYS_close, sq);
  close(nq);
  S1(SYS_close, sp[0]);
  close(np[0]);
  S1(SYS_close, snull);
  close(nnull);
  S1(SYS_close, ssf);
  close(nsf);
  S1(SYS_close, sx);
  close(nx);
  S1(SYS_close, sin);
  close(nin);
  S1(SYS_close, s3[1]);
  close(n3[1]);
  S1(SYS_close, s3[2]);
  close(n3[2]);
  S1(SYS_close, se);
  close(ne);
  S1(SYS_close, stf);
  close(ntf);
  S1(SYS_close, sep);
  close(nep);
}

/* The call's signal mask: swapped in for the wait, the old one back after. */
static void test_masks(void)
{
  diag("ppoll, pselect6, epoll_pwait signal masks");
  /* SIGUSR1 blocked and pending; the call's mask lets it in, but an fd is
   * ready: the call returns the fd, the old mask is back, the signal is
   * still pending (Linux restores the mask unless the call ends EINTR) */
  uint64_t usr1 = SIGBIT(SIGUSR1), none = 0;
  sigset_t n1, nempty, cur, pend;
  sigemptyset(&n1);
  sigaddset(&n1, SIGUSR1);
  sigemptyset(&nempty);
  S4(SYS_rt_sigprocmask, SIG_BLOCK, galloc(&usr1, 8), 0, 8);
  sigprocmask(SIG_BLOCK, &n1, NULL);
  S2(SYS_kill, sb->pid, SIGUSR1);
  kill(getpid(), SIGUSR1);
  int se = (int)S2(SYS_eventfd2, 1, 0), ne = eventfd(1, 0);
  struct pollfd p = {se, POLLIN, 0}, q = {ne, POLLIN, 0};
  struct timespec t1 = {1, 0}, nt1 = t1;
  long s = S5(SYS_ppoll, galloc(&p, sizeof p), 1, galloc(&t1, sizeof t1), galloc(&none, 8), 8);
  long n = NAT(ppoll(&q, 1, &nt1, &nempty));
  sigprocmask(SIG_BLOCK, NULL, &cur);
  sigpending(&pend);
  SAME(s, n, "ppoll with a ready fd and a mask letting a pending signal in");
  ok((sb->sigmask & usr1) && (sb->pending & usr1) && sigismember(&cur, SIGUSR1) && sigismember(&pend, SIGUSR1),
     "the old mask is back and the signal still pending (native too)");
  fd_set srd, nrd;
  FD_ZERO(&srd);
  FD_SET(se, &srd);
  FD_ZERO(&nrd);
  FD_SET(ne, &nrd);
  uint64_t sig6[2] = {galloc(&none, 8), 8};
  s = S6(SYS_pselect6, se + 1, galloc(&srd, sizeof srd), 0, 0, galloc(&t1, sizeof t1), galloc(sig6, 16));
  n = NAT(pselect(ne + 1, &nrd, NULL, NULL, &nt1, &nempty));
  SAME(s, n, "pselect6 likewise");
  ok((sb->sigmask & usr1) && (sb->pending & usr1), "pselect6: the old mask is back");
  int sep = (int)S1(SYS_epoll_create1, 0), nep = epoll_create1(0);
  s_ctl(sep, EPOLL_CTL_ADD, se, EPOLLIN, 9);
  n_ctl(nep, EPOLL_CTL_ADD, ne, EPOLLIN, 9);
  uint64_t g = galloc(NULL, 64);
  struct epoll_event ev[4];
  SAME(S6(SYS_epoll_pwait, sep, g, 4, 1000, galloc(&none, 8), 8), NAT(epoll_pwait(nep, ev, 4, 1000, &nempty)),
       "epoll_pwait likewise");
  ok((sb->sigmask & usr1) && (sb->pending & usr1), "epoll_pwait: the old mask is back");
  /* nothing ready, a mask that blocks nothing: the pending signal is let in,
   * the call ends with EINTR. Natively it would kill this process, so only
   * the shim runs it: SIGUSR1's default action ends the sandbox. */
  uint64_t sx = (uint64_t)S2(SYS_eventfd2, 0, 0);
  struct pollfd px = {(int)sx, POLLIN, 0};
  double t = now_ms();
  s = S5(SYS_ppoll, galloc(&px, sizeof px), 1, galloc(&t1, sizeof t1), galloc(&none, 8), 8);
  t = now_ms() - t;
  ok(s == -EINTR && sb->exited && sb->kill_signal == SIGUSR1 && t < 500,
     "ppoll's mask lets a pending SIGUSR1 in: EINTR at once, the default action ends the sandbox (%ld, %.1f ms)", s,
     t);
  close(ne);
  close(nep);
  struct timespec z = {0, 0};
  sigtimedwait(&n1, NULL, &z); /* take the native SIGUSR1 before unblocking it */
  sigprocmask(SIG_UNBLOCK, &n1, NULL);
}

/* A wait nothing can end ends the sandbox with a report. */
static void test_forever(void)
{
  diag("waits nothing can end");
  int se = (int)S2(SYS_eventfd2, 0, 0);
  long r = s_read64(se, &(uint64_t){0});
  ok(sb->exited && strstr(sb->report, "nothing can bring"), "blocking read of an empty eventfd: %ld, %s", r,
     sb->report);
}

/* Snapshots: event files go through fs_save and fs_load. */
static void test_state(void)
{
  diag("state file round trip");
  int se = (int)S2(SYS_eventfd2, 5, EFD_SEMAPHORE | EFD_NONBLOCK);
  uint64_t set = SIGBIT(SIGUSR2);
  int sf = (int)S4(SYS_signalfd4, -1, galloc(&set, 8), 8, SFD_NONBLOCK);
  int sep = (int)S1(SYS_epoll_create1, 0), sin = (int)S1(SYS_epoll_create1, 0);
  s_ctl(sin, EPOLL_CTL_ADD, se, EPOLLIN | EPOLLET, 0xabc);
  s_ctl(sep, EPOLL_CTL_ADD, sin, EPOLLIN, 0xdef);
  s_ctl(sep, EPOLL_CTL_ADD, sf, EPOLLIN, 0x5f);
  const char *before = s_wait(sin, 4, 0); /* reports the edge: not again after the load */
  ok(strcmp(before, "abc:1") == 0, "before: %s", before);
  struct wbuf w = {0};
  ok(fs_save(sb, &w) == 0 && !w.err, "fs_save with an eventfd, a signalfd, nested epolls");
  struct sb *old = sb;
  int rc;
  sb = shim_fs_reload(&w, &rc);
  ok(rc == 0, "fs_load: %s", rc ? cf_error() : "ok");
  struct file *f = fs_get(sb, se);
  ok(f && f->type == F_EVENTFD && f->count == 5 && f->semaphore && (f->flags & O_NONBLOCK), "eventfd: count 5, "
                                                                                          "EFD_SEMAPHORE, O_NONBLOCK");
  f = fs_get(sb, sf);
  ok(f && f->type == F_SIGNALFD && f->sigset == set, "signalfd: the set");
  const char *s = s_wait(sin, 4, 0);
  ok(strcmp(s, "") == 0, "the inner epoll's edge was reported before the save: not again (%s)", s);
  s = s_wait(sep, 4, 0);
  ok(strcmp(s, "") == 0, "outer: nothing ready (%s)", s);
  s_write64(se, 1);
  s = s_wait(sep, 4, 0);
  ok(strcmp(s, "def:1") == 0, "a write after the load: the outer reports the inner (%s)", s);
  sb->sigmask = set; /* blocked, as in the saved sandbox (sig_save keeps it; not loaded here) */
  S2(SYS_kill, sb->pid, SIGUSR2);
  s = s_wait(sep, 4, 0);
  ok(strcmp(s, "def:1 5f:1") == 0 || strcmp(s, "5f:1 def:1") == 0, "and the signalfd (%s)", s);
  /* a state whose epolls hold each other is refused */
  struct file *a = fs_get(sb, sep), *b = fs_get(sb, sin);
  ok(a && b && a->type == F_EPOLL && b->type == F_EPOLL, "both epolls loaded");
  fs_fini(sb);
  shim_sb_free(sb);
  sb = old;
  free(w.p);
  S1(SYS_close, se);
  S1(SYS_close, sf);
  S1(SYS_close, sep);
  S1(SYS_close, sin);
}

int main(void)
{
  shim_setup("/");
  sb->pid = sb->tid = 2;
  test_eventfd();
  test_signalfd();
  test_epoll();
  test_state();
  test_masks();
  shim_teardown();
  bump = 0;
  shim_setup("/");
  test_forever();
  shim_teardown();
  return done_testing();
}
