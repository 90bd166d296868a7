/* eventfd, epoll, signalfd, ppoll and epoll_pwait with handlers: run
 * natively and in a sandbox by tests/sandbox-events.sh, which compares the
 * output. Every line printed is something Linux decides; nothing depends
 * on pids or timing beyond "before the deadline". */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void handler(int s) { got = s; }

static void show(const char *what, int n, const struct epoll_event *e)
{
  printf("%s: %d", what, n);
  if (n < 0)
    printf(" (%s)", strerrorname_np(errno));
  for (int i = 0; i < n; i++)
    printf(" [%llx %x]", (unsigned long long)e[i].data.u64, e[i].events);
  printf("\n");
}

int main(void)
{
  setvbuf(stdout, NULL, _IONBF, 0);
  struct epoll_event ev[8];
  uint64_t v;

  /* eventfd */
  int e = eventfd(2, EFD_NONBLOCK | EFD_SEMAPHORE);
  ssize_t r1 = read(e, &v, 8), r2 = read(e, &v, 8), r3 = read(e, &v, 8);
  printf("semaphore reads: %zd %zd %zd %s\n", r1, r2, r3, strerrorname_np(errno));
  v = 40;
  printf("write 40: %zd\n", write(e, &v, 8));

  /* epoll: level and edge over an eventfd and a pipe */
  int ep = epoll_create1(EPOLL_CLOEXEC), p[2];
  if (pipe(p) < 0)
    return 1;
  struct epoll_event a = {.events = EPOLLIN, .data.u64 = 0xe1}, b = {.events = EPOLLIN | EPOLLET, .data.u64 = 0xb1};
  printf("ctl: %d %d\n", epoll_ctl(ep, EPOLL_CTL_ADD, e, &a), epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &b));
  show("eventfd ready", epoll_wait(ep, ev, 8, 0), ev);
  if (write(p[1], "hi", 2) != 2)
    return 1;
  show("pipe written", epoll_wait(ep, ev, 8, 0), ev);
  show("again (pipe is edge)", epoll_wait(ep, ev, 8, 0), ev);
  printf("read eventfd: %zd\n", read(e, &v, 8));
  for (int i = 0; i < 40; i++)
    if (read(e, &v, 8) != 8)
      break;
  show("eventfd drained", epoll_wait(ep, ev, 8, 10), ev);

  /* signalfd in the epoll; a timer's blocked SIGALRM wakes the wait */
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGALRM);
  sigaddset(&m, SIGUSR1);
  sigprocmask(SIG_BLOCK, &m, NULL);
  int sf = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
  struct epoll_event c = {.events = EPOLLIN, .data.u64 = 0x5f};
  printf("ctl signalfd: %d\n", epoll_ctl(ep, EPOLL_CTL_ADD, sf, &c));
  struct itimerval it = {{0, 0}, {0, 50000}};
  setitimer(ITIMER_REAL, &it, NULL);
  show("a timer's SIGALRM", epoll_wait(ep, ev, 8, 5000), ev);
  struct signalfd_siginfo si[2];
  ssize_t n = read(sf, si, sizeof si);
  printf("signalfd read: %zd signo %u code %d\n", n, si[0].ssi_signo, si[0].ssi_code);
  kill(getpid(), SIGUSR1);
  struct pollfd pf = {sf, POLLIN, 0};
  int pr = poll(&pf, 1, 0);
  printf("poll signalfd: %d %x\n", pr, pf.revents);
  n = read(sf, si, sizeof si);
  printf("signalfd read: %zd signo %u code %d uid-ok %d\n", n, si[0].ssi_signo, si[0].ssi_code,
         si[0].ssi_uid == getuid());

  /* ppoll's mask lets a pending SIGUSR2 in: the handler runs, EINTR, and
   * the old mask (SIGUSR2 blocked) is back after */
  struct sigaction sa = {.sa_handler = handler};
  sigaction(SIGUSR2, &sa, NULL);
  sigset_t u2, empty, cur;
  sigemptyset(&u2);
  sigaddset(&u2, SIGUSR2);
  sigemptyset(&empty);
  sigprocmask(SIG_BLOCK, &u2, NULL);
  kill(getpid(), SIGUSR2);
  int ef = eventfd(0, 0);
  struct pollfd q = {ef, POLLIN, 0};
  struct timespec ts = {5, 0};
  int r = ppoll(&q, 1, &ts, &empty);
  sigprocmask(SIG_BLOCK, NULL, &cur);
  printf("ppoll: %d %s handler %d usr2 blocked after %d\n", r, r < 0 ? strerrorname_np(errno) : "", got,
         sigismember(&cur, SIGUSR2));
  /* a ready fd wins: no EINTR, the signal stays pending */
  got = 0;
  kill(getpid(), SIGUSR2);
  uint64_t one = 1;
  if (write(ef, &one, 8) != 8)
    return 1;
  r = ppoll(&q, 1, &ts, &empty);
  sigset_t pend;
  sigpending(&pend);
  printf("ppoll ready: %d handler %d usr2 pending %d\n", r, got, sigismember(&pend, SIGUSR2));
  /* epoll_pwait: the same with nothing ready */
  int ep2 = epoll_create1(0);
  r = epoll_pwait(ep2, ev, 4, 5000, &empty);
  printf("epoll_pwait: %d %s handler %d\n", r, r < 0 ? strerrorname_np(errno) : "", got);
  /* a handler from a timer interrupts epoll_wait (never restarted) */
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  sigprocmask(SIG_UNBLOCK, &m, NULL);
  got = 0;
  setitimer(ITIMER_REAL, &it, NULL);
  r = epoll_wait(ep2, ev, 4, 5000);
  printf("epoll_wait and SA_RESTART: %d %s handler %d\n", r, r < 0 ? strerrorname_np(errno) : "", got);
  /* select over the eventfd and the pipe */
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(ef, &rd);
  FD_SET(p[0], &rd);
  FD_SET(sf, &rd);
  struct timeval tv = {0, 0};
  r = select(sf > ef ? sf + 1 : ef + 1, &rd, NULL, NULL, &tv);
  printf("select: %d eventfd %d pipe %d signalfd %d\n", r, FD_ISSET(ef, &rd) != 0, FD_ISSET(p[0], &rd) != 0,
         FD_ISSET(sf, &rd) != 0);
  return 0;
}
