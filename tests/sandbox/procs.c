/* Processes, run natively and in a sandbox by tests/sandbox-processes.sh
 * (issue 14, item 7): each mode prints what it saw; the two runs must print
 * the same and exit the same, and match the expectation the test stores.
 * A sandbox's pids are not the host's, so nothing here prints a pid: only
 * relations between them (equal, 1, not the parent's...). Built static; it
 * runs itself again by its own path (argv[0], absolute) for exec cases. Files
 * go under /tmp, the one writable directory of a sandbox.
 *
 *   procs fork      copy-on-write memory of parent and child, exit statuses
 *   procs death     exit codes and deaths by signal (WIFSIGNALED, WTERMSIG)
 *   procs wait      wait4/waitid: ECHILD, WNOHANG, WUNTRACED, WCONTINUED,
 *                   WNOWAIT, zombies, SIGCHLD (handler, SIG_IGN), orphans
 *   procs pgrp      setpgid, getpgid, getsid, setsid, kill(-pgid)
 *   procs offsets   open file descriptions shared across fork
 *   procs pipes     blocking pipes between processes, EOF, EPIPE/SIGPIPE,
 *                   PIPE_BUF atomicity, poll, a FIFO
 *   procs fifo      FIFOs between processes: opens that wait for the other
 *                   side (either first), ENXIO, EOF, EPIPE, poll, O_RDWR,
 *                   the data gone with the last open file, unlink while open
 *   procs cloexec   close-on-exec across execve, dup/dup2/dup3/F_DUPFD_CLOEXEC
 *   procs dup2      a child's stdout dup2'ed onto a pipe, then execve
 *   procs spawn     vfork (the child's stores, mmap, handlers, fds, a
 *                   private futex wake of a parent's thread), posix_spawn
 *                   (file actions, exec errors), fork in a threaded process
 *   procs spawnloop [N]  N posix_spawn (default 1000), each of a missing
 *                   program and of a real one: the errors, the statuses,
 *                   no fd left behind
 *   procs locks     fcntl record locks, OFD locks and flock between processes
 *   procs timerfd   a timerfd inherited across fork, also after its maker exits
 *   procs rusage    the CPU time of children in wait4's rusage, getrusage and times
 *   procs zombie    an ended child not yet waited for in /proc (stat, status,
 *                   cmdline, maps, exe, cwd, fd, the listing), gone after the wait
 *   procs shm       shared memory across fork: MAP_SHARED anonymous, of a
 *                   /tmp file and of a /dev/shm file (shm_open); MADV_DONTNEED,
 *                   munmap, mprotect in one process; sem_open, a pshared
 *                   semaphore and mutex waking a waiter in another process
 *   procs pidfd    pidfd_open, pidfd_send_signal (NULL and a siginfo),
 *                   waitid(P_PIDFD) (WNOHANG, PIDFD_NONBLOCK), poll, select and
 *                   epoll readiness, inheritance across fork, pidfd_getfd,
 *                   CLONE_PIDFD in clone and clone3, and their errors
 *   procs sysv     System V shared memory (shmget, shmat with SHM_RDONLY,
 *                   SHM_RND, SHM_REMAP, shmdt, shmctl IPC_STAT, IPC_SET,
 *                   IPC_RMID's deferred destroy, across fork and exec, keys)
 *                   and semaphores (semop all or nothing, waits across
 *                   processes, GETNCNT/GETZCNT, semtimedop, EINTR, SEM_UNDO,
 *                   EIDRM, keys)
 *   procs msg      System V message queues: msgtyp 0, > 0, < 0, MSG_EXCEPT,
 *                   MSG_NOERROR, E2BIG, MSG_COPY, a receiver waiting in
 *                   another process, a sender waiting on a full queue, EINTR,
 *                   IPC_SET msg_qbytes, IPC_INFO, MSG_STAT, EIDRM, keys
 *   procs init     the sandbox's init (pid 1) as a pid namespace's: /proc/1,
 *                   kill (dropped), getpgid/getsid, setpgid, waits, a pidfd,
 *                   an orphan reaped (natively under unshare --pid --fork
 *                   --mount-proc: it makes itself that init)
 *   procs bomb N    a fork bomb under RLIMIT_NPROC N (and at most 255
 *                   processes by construction): EAGAIN, then all killed
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/msg.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static const char *self;

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void msleep(int ms)
{
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) < 0 && errno == EINTR)
    ;
}

static const char *err(long r)
{
  return r < 0 ? strerrorname_np(errno) : "ok";
}

static void status(const char *what, int st)
{
  if (WIFEXITED(st))
    printf("%s: exited %d\n", what, WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    printf("%s: killed by %s\n", what, sigabbrev_np(WTERMSIG(st)));
  else if (WIFSTOPPED(st))
    printf("%s: stopped by %s\n", what, sigabbrev_np(WSTOPSIG(st)));
  else if (WIFCONTINUED(st))
    printf("%s: continued\n", what);
  else
    printf("%s: status %#x\n", what, st);
}

/* Forks a child that runs fn(arg) and _exits with its value. */
static pid_t child(int (*fn)(long), long arg)
{
  fflush(stdout);
  pid_t p = fork();
  if (p < 0) {
    printf("fork: %s\n", strerrorname_np(errno));
    exit(1);
  }
  if (p == 0)
    _exit(fn(arg));
  return p;
}

static int reap(pid_t p, const char *what)
{
  int st;
  pid_t r = waitpid(p, &st, 0);
  if (r != p) {
    printf("%s: waitpid returned %s\n", what, r < 0 ? strerrorname_np(errno) : "another pid");
    return -1;
  }
  status(what, st);
  return st;
}

/* ---- fork ---- */

static char *big;
static long counter = 10;
#define BIG (64L << 20)

static int cow_child(long arg)
{
  long bad = 0;
  for (long i = 0; i < BIG; i += 4096)
    bad += big[i] != (char)(i >> 12);
  for (long i = 0; i < BIG; i += 4096)
    big[i] = 'c';
  counter += 1000;
  return bad ? 1 : (int)(counter - 1000 + arg);
}

static int mode_fork(void)
{
  big = malloc(BIG);
  for (long i = 0; i < BIG; i += 4096)
    big[i] = (char)(i >> 12);
  pid_t p = child(cow_child, 5);
  counter = 20; /* after fork: the child must not see it (it exits 10 + 5) */
  reap(p, "child saw the parent's 64 MiB and counter, wrote both");
  long bad = 0;
  for (long i = 0; i < BIG; i += 4096)
    bad += big[i] != (char)(i >> 12);
  printf("parent's pages after the child wrote them: %s, counter %ld\n", bad ? "CHANGED" : "unchanged", counter);
  /* 20 children one after another, then 20 at once. */
  int sum = 0;
  for (int i = 0; i < 20; i++) {
    int st;
    pid_t c = fork();
    if (c == 0)
      _exit(i);
    waitpid(c, &st, 0);
    sum += WEXITSTATUS(st);
  }
  printf("20 children in turn: statuses add up to %d\n", sum);
  pid_t ps[20];
  for (int i = 0; i < 20; i++) {
    ps[i] = fork();
    if (ps[i] == 0) {
      msleep(20);
      _exit(i + 1);
    }
  }
  sum = 0;
  int distinct = 1;
  for (int i = 0; i < 20; i++) {
    for (int j = 0; j < i; j++)
      distinct &= ps[i] != ps[j];
    distinct &= ps[i] != getpid();
  }
  for (int i = 0; i < 20; i++) {
    int st;
    pid_t r = wait(&st);
    int mine = 0;
    for (int j = 0; j < 20; j++)
      mine |= r == ps[j];
    sum += mine ? WEXITSTATUS(st) : 1000;
  }
  printf("20 children at once: pids distinct %s, statuses add up to %d, then wait: %s\n", distinct ? "yes" : "no", sum,
         err(wait(NULL)));
  /* getppid in the child is the parent's getpid */
  int pp[2];
  pipe(pp);
  pid_t c = fork();
  if (c == 0) {
    pid_t v[2] = {getppid(), getpid()};
    write(pp[1], v, sizeof v);
    _exit(0);
  }
  pid_t v[2];
  read(pp[0], v, sizeof v);
  waitpid(c, NULL, 0);
  printf("child's getppid is the parent's getpid: %s; its getpid is fork's return: %s\n", v[0] == getpid() ? "yes" : "no",
         v[1] == c ? "yes" : "no");
  return 0;
}

/* ---- death ---- */

static int die(long how)
{
  switch (how) {
  case 0: return 0;
  case 1: return 1;
  case 2: return 42;
  case 3: return 255;
  case 4: exit(256);
  case 5: raise(SIGKILL); break;
  case 6: raise(SIGTERM); break;
  case 7: *(volatile int *)8 = 1; break;
  case 8: abort();
  case 9: {
    int p[2];
    pipe(p);
    close(p[0]);
    write(p[1], "x", 1);
    break;
  }
  case 10: {
    signal(SIGUSR1, SIG_IGN);
    raise(SIGUSR1);
    return 3;
  }
  case 11: pause(); break;
  }
  return 99;
}

static int mode_death(void)
{
  static const char *what[] = {"return 0", "return 1", "return 42", "return 255", "exit(256)", "raise(SIGKILL)",
                               "raise(SIGTERM)", "store to address 8", "abort()", "write to a pipe without reader",
                               "raise(SIGUSR1) ignored", "pause(), then kill SIGINT from the parent"};
  struct rlimit no = {0, 0};
  setrlimit(RLIMIT_CORE, &no);
  for (long i = 0; i < 12; i++) {
    pid_t p = child(die, i);
    if (i == 11) {
      msleep(50);
      kill(p, SIGINT);
    }
    int st;
    waitpid(p, &st, 0);
    status(what[i], st);
    printf("  WIFEXITED %d WIFSIGNALED %d\n", !!WIFEXITED(st), !!WIFSIGNALED(st));
  }
  return 0;
}

/* ---- wait ---- */

static volatile sig_atomic_t got_chld;
static volatile pid_t chld_pid;
static volatile int chld_code, chld_status;
static void on_chld(int sig, siginfo_t *si, void *uc)
{
  got_chld++;
  chld_pid = si->si_pid;
  chld_code = si->si_code;
  chld_status = si->si_status;
}

static int gate_child(long fd)
{
  char c;
  int n = read(fd, &c, 1);
  return n == 1 ? c : 100;
}

static const char *code_name(int c)
{
  switch (c) {
  case CLD_EXITED: return "CLD_EXITED";
  case CLD_KILLED: return "CLD_KILLED";
  case CLD_DUMPED: return "CLD_DUMPED";
  case CLD_STOPPED: return "CLD_STOPPED";
  case CLD_CONTINUED: return "CLD_CONTINUED";
  case CLD_TRAPPED: return "CLD_TRAPPED";
  }
  return "?";
}

static int exit_n(long n) { return n; }

static int orphan_parent(long fd)
{
  pid_t me = getpid();
  pid_t g = fork();
  if (g == 0) {
    double t0 = now();
    while (getppid() == me && now() - t0 < 10)
      msleep(5);
    char line[120];
    int n = snprintf(line, sizeof line, "orphan: ppid changed from its parent %s, to 1 %s\n", getppid() != me ? "yes" : "no",
                     getppid() == 1 ? "yes" : "no");
    write(fd, line, n);
    _exit(0);
  }
  msleep(30);
  return 0;
}

static int mode_wait(void)
{
  int st;
  siginfo_t si;
  printf("waitpid with no children: %s\n", err(waitpid(-1, &st, WNOHANG)));
  printf("waitid with no children: %s\n", err(waitid(P_ALL, 0, &si, WEXITED)));

  int g[2];
  pipe(g);
  pid_t p = child(gate_child, g[0]);
  printf("WNOHANG with the child running: %d\n", (int)waitpid(p, &st, WNOHANG));
  memset(&si, 0xff, sizeof si);
  long r = waitid(P_PID, p, &si, WEXITED | WNOHANG);
  printf("waitid WNOHANG with the child running: %s, si_pid %s\n", err(r), si.si_pid == 0 ? "0" : "set");
  kill(p, SIGSTOP);
  printf("waitpid WUNTRACED: returns the child %s\n", waitpid(p, &st, WUNTRACED) == p ? "yes" : "no");
  status("  after SIGSTOP", st);
  printf("waitpid WUNTRACED|WNOHANG again (already reported): %d\n", (int)waitpid(p, &st, WUNTRACED | WNOHANG));
  kill(p, SIGCONT);
  printf("waitpid WCONTINUED: returns the child %s\n", waitpid(p, &st, WCONTINUED) == p ? "yes" : "no");
  status("  after SIGCONT", st);
  kill(p, SIGSTOP);
  memset(&si, 0, sizeof si);
  r = waitid(P_PID, p, &si, WSTOPPED);
  printf("waitid WSTOPPED: %s, si_pid is the child %s, %s %s\n", err(r), si.si_pid == p ? "yes" : "no",
         code_name(si.si_code), sigabbrev_np(si.si_status));
  kill(p, SIGCONT);
  memset(&si, 0, sizeof si);
  r = waitid(P_PID, p, &si, WCONTINUED);
  printf("waitid WCONTINUED: %s, %s %s\n", err(r), code_name(si.si_code), sigabbrev_np(si.si_status));
  write(g[1], "\7", 1);
  memset(&si, 0, sizeof si);
  r = waitid(P_PID, p, &si, WEXITED | WNOWAIT);
  printf("waitid WEXITED|WNOWAIT: %s, si_pid is the child %s, %s status %d\n", err(r), si.si_pid == p ? "yes" : "no",
         code_name(si.si_code), si.si_status);
  printf("the zombie is still there: kill(pid, 0) %s\n", err(kill(p, 0)));
  struct rusage ru;
  r = wait4(p, &st, 0, &ru);
  printf("wait4 reaps it: returns the child %s\n", r == p ? "yes" : "no");
  status("  wait4", st);
  r = kill(p, 0);
  printf("after reaping: kill(pid, 0) %s", err(r));
  printf(", waitpid %s\n", err(waitpid(p, &st, 0)));

  /* SIGCHLD to a SA_SIGINFO handler */
  struct sigaction sa = {0};
  sa.sa_sigaction = on_chld;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGCHLD, &sa, NULL);
  sigset_t blk, old;
  sigemptyset(&blk);
  sigaddset(&blk, SIGCHLD);
  sigprocmask(SIG_BLOCK, &blk, &old);
  p = child(exit_n, 3);
  while (!got_chld)
    sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);
  printf("SIGCHLD handler: called %d, si_pid is the child %s, %s status %d\n", (int)got_chld, chld_pid == p ? "yes" : "no",
         code_name(chld_code), chld_status);
  reap(p, "  reaped");
  /* SIGCHLD for a stop, and none with SA_NOCLDSTOP */
  pipe(g);
  got_chld = 0;
  p = child(gate_child, g[0]);
  kill(p, SIGSTOP);
  waitpid(p, &st, WUNTRACED);
  msleep(20);
  printf("SIGCHLD for a stop: %d, %s\n", (int)got_chld, code_name(chld_code));
  kill(p, SIGCONT);
  waitpid(p, &st, WCONTINUED);
  sa.sa_flags = SA_SIGINFO | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  got_chld = 0;
  kill(p, SIGSTOP);
  waitpid(p, &st, WUNTRACED);
  msleep(20);
  printf("SIGCHLD for a stop with SA_NOCLDSTOP: %d\n", (int)got_chld);
  kill(p, SIGCONT);
  waitpid(p, &st, WCONTINUED);
  write(g[1], "\0", 1);
  reap(p, "  reaped");
  close(g[0]);
  close(g[1]);

  /* SIGCHLD ignored: children are reaped by themselves */
  signal(SIGCHLD, SIG_IGN);
  p = child(exit_n, 0);
  printf("SIGCHLD SIG_IGN: waitpid on the child %s\n", err(waitpid(p, &st, 0)));
  signal(SIGCHLD, SIG_DFL);

  /* several children: wait(-1), waitpid(0), waitid(P_PGID), __WALL */
  pid_t c1 = child(exit_n, 1), c2 = child(exit_n, 2), c3 = child(exit_n, 3), c4 = child(exit_n, 4);
  int sum = 0;
  sum += WEXITSTATUS((waitpid(-1, &st, 0), st));
  sum += WEXITSTATUS((waitpid(0, &st, 0), st));
  memset(&si, 0, sizeof si);
  waitid(P_PGID, getpgrp(), &si, WEXITED);
  sum += si.si_status;
  sum += WEXITSTATUS((waitpid(-getpgrp(), &st, __WALL), st));
  printf("4 children by wait(-1), waitpid(0), waitid(P_PGID), waitpid(-pgrp, __WALL): statuses add up to %d, then %s\n", sum,
         err(waitpid(-1, &st, 0)));
  (void)c1, (void)c2, (void)c3, (void)c4;
  memset(&si, 0xff, sizeof si);
  pipe(g);
  p = child(gate_child, g[0]);
  r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG);
  printf("waitid(P_ALL, WEXITED|WNOHANG) with one running child: %s, si_pid 0 %s\n", err(r), si.si_pid == 0 ? "yes" : "no");
  write(g[1], "\2", 1);
  reap(p, "  reaped");
  printf("waitid with no W* flags: %s", err(waitid(P_ALL, 0, &si, 0)));
  printf("; waitpid with a bad flag: %s\n", err(waitpid(-1, &st, 0x40000)));

  /* an orphan is re-parented */
  pipe(g);
  p = child(orphan_parent, g[1]);
  close(g[1]);
  reap(p, "orphan's parent");
  char buf[200];
  int n = read(g[0], buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  fputs(buf, stdout);
  close(g[0]);
  return 0;
}

/* ---- pgrp ---- */

static int leader_child(long fd)
{
  setpgid(0, 0);
  char c = getpgid(0) == getpid() && getpgrp() == getpid();
  write(fd, &c, 1);
  pause();
  return 0;
}

static int setsid_child(long arg)
{
  pid_t parent_sid = getsid(0);
  pid_t s = setsid();
  int ok1 = s == getpid(), ok2 = getsid(0) == getpid(), ok3 = getpgrp() == getpid(), ok4 = parent_sid != getpid();
  int again = setsid() < 0 ? errno : 0;
  printf("setsid in a child: returns its pid %s, getsid %s, getpgrp %s, was another session %s; again: %s\n",
         ok1 ? "yes" : "no", ok2 ? "yes" : "no", ok3 ? "yes" : "no", ok4 ? "yes" : "no", again ? strerrorname_np(again) : "ok");
  fflush(stdout);
  return 0;
}

static int leader_setsid_child(long arg)
{
  setpgid(0, 0);
  printf("setsid in a group leader: %s\n", err(setsid()));
  fflush(stdout);
  return 0;
}

static int mode_pgrp(void)
{
  printf("getpgrp == getpgid(0): %s; getsid(0) == getsid(getpid()): %s\n", getpgrp() == getpgid(0) ? "yes" : "no",
         getsid(0) == getsid(getpid()) ? "yes" : "no");
  int g[2];
  pipe(g);
  pid_t a = child(leader_child, g[1]);
  setpgid(a, a); /* both sides, as shells do */
  char c = 0;
  read(g[0], &c, 1);
  printf("child's setpgid(0, 0): it leads its group %s; parent sees getpgid(child) == child %s; parent's group unchanged %s\n",
         c ? "yes" : "no", getpgid(a) == a ? "yes" : "no", getpgid(0) != a ? "yes" : "no");
  pid_t b = fork();
  if (b == 0) {
    pause();
    _exit(0);
  }
  printf("a second child starts in the parent's group %s\n", getpgid(b) == getpgrp() ? "yes" : "no");
  long r = setpgid(b, a);
  printf("setpgid(second, first's group): %s, getpgid(second) == first %s\n", err(r), getpgid(b) == a ? "yes" : "no");
  pid_t gone = child(exit_n, 0);
  waitpid(gone, NULL, 0);
  printf("setpgid(second, a group that does not exist): %s\n", err(setpgid(b, gone)));
  printf("kill(-group, SIGTERM): %s\n", err(kill(-a, SIGTERM)));
  reap(a, "  first");
  reap(b, "  second");
  printf("after: getpgid(first) %s", err(getpgid(a)));
  printf(", kill(-group, 0) %s\n", err(kill(-a, 0)));
  printf("setpgid(0, 0) then setpgid(0, getpgrp()): ");
  fflush(stdout);
  pid_t s = fork();
  if (s == 0) {
    int r1 = setpgid(0, 0);
    int r2 = setpgid(0, getpgrp());
    printf("%s %s\n", err(r1), r2 < 0 ? strerrorname_np(errno) : "ok");
    fflush(stdout);
    _exit(0);
  }
  waitpid(s, NULL, 0);
  fflush(stdout);
  reap(child(setsid_child, 0), "  setsid child");
  reap(child(leader_setsid_child, 0), "  leader child");
  /* setpgid on a child after it has exec'd: EACCES */
  pipe(g);
  int h[2];
  pipe(h);
  fflush(stdout);
  pid_t e = fork();
  if (e == 0) {
    dup2(g[1], 1);
    dup2(h[0], 0);
    close(g[0]), close(g[1]), close(h[0]), close(h[1]);
    execl(self, self, "gate", (char *)NULL);
    _exit(127);
  }
  close(g[1]);
  close(h[0]);
  read(g[0], &c, 1);
  printf("setpgid on a child after its execve: %s\n", err(setpgid(e, e)));
  printf("setpgid on a pid that is not a child: %s\n", err(setpgid(gone, gone)));
  close(h[1]);
  reap(e, "  exec'd child");
  printf("kill(-group) of no group: %s", err(kill(-e, SIGTERM)));
  printf("; getpgid of no process: %s\n", err(getpgid(e)));
  return 0;
}

/* ---- offsets ---- */

static const char *tmpfile_name(const char *tag)
{
  static char name[100];
  snprintf(name, sizeof name, "/tmp/cowfork-procs-%s.%d", tag, (int)getpid());
  return name;
}

static int mode_offsets(void)
{
  const char *name = tmpfile_name("off");
  int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    printf("open %s\n", strerrorname_np(errno));
    return 1;
  }
  fflush(stdout);
  pid_t p = fork();
  const char *rec = p == 0 ? "child   1\n" : "parent  2\n";
  for (int i = 0; i < 500; i++)
    if (write(fd, rec, 10) != 10)
      break;
  if (p == 0)
    _exit(0);
  waitpid(p, NULL, 0);
  struct stat s;
  fstat(fd, &s);
  printf("parent and child wrote 500 records of 10 bytes each: size %lld, offset %lld\n", (long long)s.st_size,
         (long long)lseek(fd, 0, SEEK_CUR));
  char *all = calloc(1, s.st_size + 1);
  pread(fd, all, s.st_size, 0);
  int c = 0, q = 0, torn = 0;
  for (long i = 0; i + 10 <= s.st_size; i += 10)
    if (!memcmp(all + i, "child   1\n", 10))
      c++;
    else if (!memcmp(all + i, "parent  2\n", 10))
      q++;
    else
      torn++;
  printf("  %d child records, %d parent records, %d torn\n", c, q, torn);
  free(all);
  p = fork();
  if (p == 0) {
    lseek(fd, 123, SEEK_SET);
    fcntl(fd, F_SETFL, O_APPEND);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    _exit(0);
  }
  waitpid(p, NULL, 0);
  printf("child's lseek(123) seen by the parent: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
  printf("child's O_APPEND seen by the parent (file status flags are shared): %s\n",
         fcntl(fd, F_GETFL) & O_APPEND ? "yes" : "no");
  printf("child's FD_CLOEXEC seen by the parent (fd flags are not): %s\n", fcntl(fd, F_GETFD) & FD_CLOEXEC ? "yes" : "no");
  fcntl(fd, F_SETFL, 0);
  lseek(fd, 0, SEEK_SET);
  p = fork();
  if (p == 0) {
    int own = open(name, O_RDONLY);
    lseek(own, 77, SEEK_SET);
    char b[4];
    read(fd, b, 4); /* moves the shared offset to 4 */
    _exit(lseek(own, 0, SEEK_CUR) == 77 ? 0 : 1);
  }
  reap(p, "child's own open of the file has its own offset");
  printf("the shared offset after the child read 4 bytes: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
  int d = dup(fd);
  lseek(d, 9, SEEK_SET);
  printf("dup shares the offset: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
  close(d);
  close(fd);
  unlink(name);
  return 0;
}

/* ---- pipes ---- */

#define MB (1 << 20)

static int big_writer(long fd)
{
  char b[4000];
  long pos = 0;
  while (pos < MB) {
    int n = MB - pos < (long)sizeof b ? MB - pos : (int)sizeof b;
    for (int i = 0; i < n; i++)
      b[i] = (char)((pos + i) * 7 + (pos + i) / 4093);
    if (write(fd, b, n) != n)
      return 1;
    pos += n;
  }
  return 0;
}

static int late_writer(long fd)
{
  msleep(150);
  write(fd, "late", 4);
  return 0;
}

static int atomic_writer(long fd)
{
  char rec[512];
  memset(rec, 'a' + (int)(fd >> 16), sizeof rec);
  for (int i = 0; i < 1000; i++)
    if (write(fd & 0xffff, rec, sizeof rec) != sizeof rec)
      return 1;
  return 0;
}

static int mode_pipes(void)
{
  int p[2];
  pipe(p);
  pid_t w = child(big_writer, p[1]);
  close(p[1]);
  msleep(100); /* the writer fills the pipe and blocks */
  long total = 0, mism = 0;
  char b[7000];
  for (;;) {
    int n = read(p[0], b, sizeof b);
    if (n <= 0)
      break;
    for (int i = 0; i < n; i++, total++)
      mism += b[i] != (char)(total * 7 + total / 4093);
  }
  printf("1 MiB through a 64 KiB pipe from a child: read %ld bytes, %ld wrong, then EOF\n", total, mism);
  reap(w, "  writer");
  close(p[0]);

  pipe(p);
  w = child(late_writer, p[1]);
  double t0 = now();
  int n = read(p[0], b, sizeof b);
  printf("a read waits for the other process's write: %d bytes after >= 100 ms %s\n", n, now() - t0 >= 0.1 ? "yes" : "no");
  reap(w, "  writer");
  printf("the read end still has a writer (the parent's): WNOHANG poll %d\n",
         poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, 0));
  close(p[1]);
  printf("after the last writer closed: read %d\n", (int)read(p[0], b, 1));
  close(p[0]);

  pipe(p);
  w = child(late_writer, p[1]);
  struct pollfd pf = {.fd = p[0], .events = POLLIN};
  t0 = now();
  int r = poll(&pf, 1, 5000);
  printf("poll across processes: %d, POLLIN %s, waited %s\n", r, pf.revents & POLLIN ? "yes" : "no",
         now() - t0 >= 0.1 ? "yes" : "no");
  reap(w, "  writer");
  close(p[0]);
  close(p[1]);

  /* writers without a reader */
  pipe(p);
  close(p[0]);
  fflush(stdout);
  w = fork();
  if (w == 0) {
    write(p[1], "x", 1);
    _exit(0);
  }
  reap(w, "write with no reader, SIGPIPE default");
  w = fork();
  if (w == 0) {
    signal(SIGPIPE, SIG_IGN);
    int e = write(p[1], "x", 1) < 0 ? errno : 0;
    _exit(e == EPIPE ? 32 : 1);
  }
  reap(w, "write with no reader, SIGPIPE ignored (32: EPIPE)");
  close(p[1]);

  /* O_NONBLOCK */
  pipe2(p, O_NONBLOCK);
  printf("pipe2(O_NONBLOCK): F_GETFL has it %s; empty read: %s\n", fcntl(p[0], F_GETFL) & O_NONBLOCK ? "yes" : "no",
         err(read(p[0], b, 1)));
  close(p[0]);
  close(p[1]);

  /* PIPE_BUF atomicity: two writers of 512-byte records */
  pipe(p);
  pid_t w1 = child(atomic_writer, p[1] | (0L << 16)), w2 = child(atomic_writer, p[1] | (1L << 16));
  close(p[1]);
  long recs[2] = {0, 0}, torn = 0, got = 0;
  static char rec[512];
  for (;;) {
    int k = 0;
    while (k < 512) {
      int m = read(p[0], rec + k, 512 - k);
      if (m <= 0)
        break;
      k += m;
    }
    if (k < 512)
      break;
    got++;
    int same = 1;
    for (int i = 1; i < 512; i++)
      same &= rec[i] == rec[0];
    if (!same || (rec[0] != 'a' && rec[0] != 'b'))
      torn++;
    else
      recs[rec[0] - 'a']++;
  }
  printf("two children writing 1000 records of 512 bytes each: %ld + %ld, %ld torn\n", recs[0], recs[1], torn);
  reap(w1, "  writer 1");
  reap(w2, "  writer 2");
  close(p[0]);

  /* a FIFO between two processes */
  const char *name = tmpfile_name("fifo");
  unlink(name);
  printf("mkfifo: %s\n", err(mkfifo(name, 0600)));
  fflush(stdout);
  w = fork();
  if (w == 0) {
    int fd = open(name, O_WRONLY);
    write(fd, "through the fifo\n", 17);
    _exit(fd < 0);
  }
  int fd = open(name, O_RDONLY);
  n = read(fd, b, sizeof b);
  printf("read %d bytes: %.*s", n, n > 0 ? n : 0, b);
  printf("then EOF: %d\n", (int)read(fd, b, 1));
  reap(w, "  fifo writer");
  close(fd);
  unlink(name);
  return 0;
}

/* ---- FIFOs ---- */

static char fifo[100];

/* Opens the FIFO for writing after a delay, writes its text, closes. */
static int fifo_late_writer(long ms)
{
  msleep((int)ms);
  int fd = open(fifo, O_WRONLY);
  if (fd < 0)
    return 10;
  return write(fd, "from the writer\n", 16) == 16 ? (close(fd), 0) : 11;
}

/* Opens the FIFO for reading after a delay; exits with what it read
 * before EOF (bytes), or 100+ on an error. */
static int fifo_late_reader(long ms)
{
  msleep((int)ms);
  int fd = open(fifo, O_RDONLY);
  if (fd < 0)
    return 100;
  char b[256];
  int total = 0, n;
  while ((n = read(fd, b + total, sizeof b - total)) > 0)
    total += n;
  return n < 0 ? 101 : strncmp(b, "to the late reader\n", 19) == 0 ? total : 102;
}

/* Opens the FIFO for reading, reads 3 bytes, exits (closing it). */
static int fifo_short_reader(long arg)
{
  int fd = open(fifo, O_RDONLY);
  char b[3];
  return fd >= 0 && read(fd, b, 3) == 3 ? 0 : 1;
}

static int fifo_unlinked_writer(long fd)
{
  return write((int)fd, "through an unlinked fifo\n", 25) == 25 ? 0 : 1;
}

static int mode_fifo(void)
{
  char b[256];
  snprintf(fifo, sizeof fifo, "%s", tmpfile_name("fifo"));
  unlink(fifo);
  printf("mkfifo: %s\n", err(mkfifo(fifo, 0640)));
  struct stat st;
  stat(fifo, &st);
  printf("stat: a FIFO %s, mode %o\n", S_ISFIFO(st.st_mode) ? "yes" : "no", st.st_mode & 07777);
  printf("mkfifo again: %s\n", err(mkfifo(fifo, 0600)));

  /* the reader opens first: its open waits for the writer's */
  pid_t w = child(fifo_late_writer, 300);
  double t0 = now();
  int fd = open(fifo, O_RDONLY);
  printf("O_RDONLY open waited for the writer's open: %s\n", fd >= 0 && now() - t0 >= 0.1 ? "yes" : "no");
  int n = read(fd, b, sizeof b);
  printf("read %d bytes: %.*s", n, n > 0 ? n : 0, b);
  printf("then EOF after the writer's close: %d\n", (int)read(fd, b, 1));
  reap(w, "  writer");
  close(fd);

  /* the writer opens first: its open waits for the reader's */
  pid_t r = child(fifo_late_reader, 300);
  t0 = now();
  fd = open(fifo, O_WRONLY);
  printf("O_WRONLY open waited for the reader's open: %s\n", fd >= 0 && now() - t0 >= 0.1 ? "yes" : "no");
  write(fd, "to the late ", 12);
  msleep(50);
  write(fd, "reader\n", 7);
  close(fd);
  reap(r, "  reader (its exit: the bytes it read before EOF)");

  /* no reader: a non-blocking writer's open is ENXIO; a non-blocking
   * reader's open does not wait, and a writer's then does not either */
  printf("O_WRONLY|O_NONBLOCK open with no reader: %s\n", err(open(fifo, O_WRONLY | O_NONBLOCK)));
  fd = open(fifo, O_RDONLY | O_NONBLOCK);
  printf("O_RDONLY|O_NONBLOCK open: %s; read with no writer: %d (EOF)\n", err(fd), (int)read(fd, b, 1));
  w = child(fifo_late_writer, 0);
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  int k = poll(&pf, 1, 5000);
  printf("poll for the child's write: %d, POLLIN %s\n", k, pf.revents & POLLIN ? "yes" : "no");
  reap(w, "  writer");
  n = read(fd, b, sizeof b);
  printf("read %d bytes: %.*s", n, n > 0 ? n : 0, b);
  close(fd);

  /* the last reader goes: the writer's write is EPIPE (SIGPIPE ignored) */
  r = child(fifo_short_reader, 0);
  fd = open(fifo, O_WRONLY);
  write(fd, "abc", 3);
  reap(r, "  reader of 3 bytes");
  signal(SIGPIPE, SIG_IGN);
  printf("write after the last reader's exit: %s\n", err(write(fd, "x", 1)));
  signal(SIGPIPE, SIG_DFL);
  close(fd);

  /* O_RDWR never waits; the data goes with the last open file */
  fd = open(fifo, O_RDWR | O_NONBLOCK);
  printf("O_RDWR open: %s; write %d\n", err(fd), (int)write(fd, "lost", 4));
  close(fd);
  fd = open(fifo, O_RDWR | O_NONBLOCK);
  printf("after every open file closed, reopened: read %s\n", err(read(fd, b, sizeof b)));

  /* unlinked while open: a child writes through the inherited fd */
  printf("unlink while open: %s\n", err(unlink(fifo)));
  w = child(fifo_unlinked_writer, fd);
  reap(w, "  writer");
  n = read(fd, b, sizeof b);
  printf("read %d bytes: %.*s", n, n > 0 ? n : 0, b);
  close(fd);
  return 0;
}

/* ---- cloexec, dup2 ---- */

static int mode_fdcheck(int argc, char **argv)
{
  for (int i = 2; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    int fd = atoi(eq + 1);
    *eq = 0;
    printf("  after execve, %s: %s\n", argv[i], fcntl(fd, F_GETFD) < 0 ? "closed" : "open");
  }
  return 0;
}

static int mode_cloexec(void)
{
  int a = open("/dev/null", O_RDONLY);
  int b = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int p[2];
  pipe2(p, O_CLOEXEC);
  int d = fcntl(a, F_DUPFD_CLOEXEC, 0);
  int e = dup(b);
  int f = dup3(a, 20, O_CLOEXEC);
  int g = dup2(b, 21);
  int h = open("/dev/null", O_RDONLY);
  fcntl(h, F_SETFD, FD_CLOEXEC);
  int i = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fcntl(i, F_SETFD, 0);
  char args[9][40];
  snprintf(args[0], 40, "plain open=%d", a);
  snprintf(args[1], 40, "O_CLOEXEC open=%d", b);
  snprintf(args[2], 40, "pipe2(O_CLOEXEC) read end=%d", p[0]);
  snprintf(args[3], 40, "F_DUPFD_CLOEXEC=%d", d);
  snprintf(args[4], 40, "dup of an O_CLOEXEC fd=%d", e);
  snprintf(args[5], 40, "dup3(O_CLOEXEC)=%d", f);
  snprintf(args[6], 40, "dup2 of an O_CLOEXEC fd=%d", g);
  snprintf(args[7], 40, "F_SETFD FD_CLOEXEC=%d", h);
  snprintf(args[8], 40, "F_SETFD 0=%d", i);
  printf("dup3(fd, fd): %s", err(dup3(a, a, 0)));
  printf("; dup2(fd, fd): %s\n", dup2(a, a) == a ? "returns fd" : "?");
  printf("dup3 with a bad flag: %s\n", err(dup3(a, 22, O_NONBLOCK)));
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) {
    execl(self, self, "fdcheck", args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8],
          (char *)NULL);
    _exit(127);
  }
  reap(c, "fdcheck");
  /* subprocess's way to see an exec failure: a cloexec pipe */
  pipe2(p, O_CLOEXEC);
  fflush(stdout);
  c = fork();
  if (c == 0) {
    close(p[0]);
    execl("/nonexistent/program", "x", (char *)NULL);
    int e2 = errno;
    write(p[1], &e2, sizeof e2);
    _exit(127);
  }
  close(p[1]);
  int code = 0;
  int n = read(p[0], &code, sizeof code);
  printf("execve of a missing program, reported through a cloexec pipe: %s\n", n == sizeof code ? strerrorname_np(code) : "nothing");
  reap(c, "  that child");
  close(p[0]);
  pipe2(p, O_CLOEXEC);
  fflush(stdout);
  c = fork();
  if (c == 0) {
    close(p[0]);
    execl(self, self, "true", (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  n = read(p[0], &code, sizeof code);
  printf("a successful execve closes the pipe: read %d\n", n);
  reap(c, "  that child");
  close(p[0]);
  return 0;
}

static int mode_dup2(void)
{
  int p[2];
  pipe(p);
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) {
    close(p[0]);
    dup2(p[1], 1);
    dup2(1, 2);
    close(p[1]);
    execl(self, self, "hello", (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  char b[300];
  int n, t = 0;
  while ((n = read(p[0], b + t, sizeof b - 1 - t)) > 0)
    t += n;
  b[t] = 0;
  printf("the child's stdout and stderr through a pipe:\n%s", b);
  reap(c, "  child");
  close(p[0]);
  /* dup2 onto an open fd closes it first */
  int x = open("/dev/null", O_RDONLY);
  long r;
  pipe(p);
  r = dup2(p[0], x);
  write(p[1], "z", 1);
  b[0] = 0;
  int ok = read(x, b, 1) == 1 && b[0] == 'z';
  printf("dup2 onto an open fd: %s, the fd is now the pipe's %s\n", r == x ? "ok" : "?", ok ? "yes" : "no");
  printf("dup2 of a closed fd: %s", err(dup2(999, 5)));
  printf("; dup2 to fd 100000: %s\n", err(dup2(x, 100000)));
  return 0;
}

/* ---- spawn ---- */

static int readall(int fd, char *b, int size)
{
  int t = 0, n;
  while (t < size && (n = read(fd, b + t, size - t)) > 0)
    t += n;
  return t;
}

/* A thread waiting on a private futex that a vfork child wakes (Linux
 * keys a private futex by the address space: the child's is its
 * parent's). 1: it timed out. */
static volatile int vf_word, vf_waiting;
static void *vf_waiter(void *arg)
{
  while (!vf_word) {
    struct timespec ts = {30, 0};
    vf_waiting = 1;
    if (syscall(SYS_futex, &vf_word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0) < 0 && errno == ETIMEDOUT)
      return (void *)1;
  }
  return NULL;
}

static void *spin_thread(void *arg)
{
  for (;;)
    pause();
  return arg;
}

static int mode_spawn(void)
{
  int p[2];
  pipe(p);
  fflush(stdout);
  volatile int touched = 0;
  pid_t c = vfork();
  if (c == 0) {
    touched = 1; /* glibc's vfork shares memory until the child's exec or exit */
    _exit(5);
  }
  printf("vfork: the parent resumed after the child's _exit, child's store seen %s\n", touched ? "yes" : "no");
  reap(c, "  vfork child");
  /* The child's memory is the parent's until its exec or exit: a mapping
   * it makes stays, with what it wrote; its handlers and fds are its own. */
  static char *volatile mapped;
  mapped = NULL;
  c = vfork();
  if (c == 0) {
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
      strcpy(m, "written by the vfork child");
      mapped = m;
    }
    signal(SIGTERM, SIG_IGN);
    close(p[0]);
    _exit(6);
  }
  printf("vfork child's mmap: %s\n", mapped ? mapped : "(not seen)");
  struct sigaction sa;
  sigaction(SIGTERM, NULL, &sa);
  printf("  the parent's SIGTERM after the child ignored it: %s\n", sa.sa_handler == SIG_DFL ? "SIG_DFL" : "changed");
  printf("  the parent's fd the child closed: %s\n", err(fcntl(p[0], F_GETFD)));
  reap(c, "  vfork child");
  if (mapped)
    munmap(mapped, 4096);
  c = vfork();
  if (c == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    execl(self, self, "hello", (char *)NULL);
    _exit(127);
  }
  reap(c, "  vfork+execve child");
  close(p[1]);
  char b[200];
  int n = readall(p[0], b, sizeof b);
  printf("  it wrote: %.*s", n, b);
  close(p[0]);

  pipe(p);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  char *argv[] = {(char *)self, "hello", NULL};
  pid_t s;
  int r = posix_spawn(&s, self, &fa, NULL, argv, environ);
  printf("posix_spawn: %s\n", r ? strerrorname_np(r) : "ok");
  close(p[1]);
  n = readall(p[0], b, sizeof b);
  printf("  it wrote: %.*s", n, b);
  reap(s, "  spawned");
  close(p[0]);
  char *argv2[] = {"no-such-program-here", NULL};
  r = posix_spawnp(&s, "no-such-program-here", NULL, NULL, argv2, environ);
  printf("posix_spawnp of a missing program: %s\n", r ? strerrorname_np(r) : "ok (no error)");
  if (!r)
    reap(s, "  spawned");
  char *argv3[] = {"/no/such/program", NULL};
  r = posix_spawn(&s, "/no/such/program", NULL, NULL, argv3, environ);
  printf("posix_spawn of a missing path: %s\n", r ? strerrorname_np(r) : "ok (no error)");
  if (!r)
    reap(s, "  spawned");
  printf("waitpid after them: %s\n", err(waitpid(-1, NULL, WNOHANG)));

  /* A vfork child killed before its exec: its parent goes on. A vfork
   * parent killed while it waits: the child goes on in its memory. */
  int q[2];
  pipe(p);
  pipe(q);
  pid_t vp = fork();
  if (vp == 0) {
    close(q[0]);
    pid_t k = vfork();
    if (k == 0) {
      pid_t me = getpid();
      write(q[1], &me, sizeof me);
      for (;;)
        pause();
    }
    int st;
    waitpid(k, &st, 0);
    _exit(WIFSIGNALED(st) ? 100 + WTERMSIG(st) : 1);
  }
  close(q[1]);
  pid_t kid = 0;
  if (read(q[0], &kid, sizeof kid) == sizeof kid)
    kill(kid, SIGKILL);
  close(q[0]);
  reap(vp, "a vfork child killed before its exec: its parent (100 + the child's signal)");
  pipe(q);
  vp = fork();
  if (vp == 0) {
    close(p[0]);
    close(q[0]);
    if (vfork() == 0) {
      write(q[1], "r", 1);
      msleep(300); /* its parent is killed meanwhile */
      write(p[1], "the child went on\n", 18);
      _exit(0);
    }
    _exit(1);
  }
  close(p[1]);
  close(q[1]);
  char rc1;
  if (read(q[0], &rc1, 1) == 1)
    kill(vp, SIGKILL);
  close(q[0]);
  reap(vp, "a vfork parent killed while it waits");
  n = readall(p[0], b, sizeof b);
  printf("  then: %.*s", n, b);
  close(p[0]);

  /* A vfork child wakes a thread of its parent waiting on a private futex. */
  pthread_t t;
  vf_word = vf_waiting = 0;
  pthread_create(&t, NULL, vf_waiter, NULL);
  while (!vf_waiting)
    msleep(10);
  msleep(300); /* in its FUTEX_WAIT by now */
  static volatile long vf_woken;
  vf_woken = -1;
  c = vfork();
  if (c == 0) {
    vf_word = 1;
    vf_woken = syscall(SYS_futex, &vf_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    _exit(0);
  }
  reap(c, "a vfork child waking its parent's thread (FUTEX_WAKE_PRIVATE)");
  void *tr = NULL;
  pthread_join(t, &tr);
  printf("  it woke %ld; the thread %s\n", vf_woken, tr ? "timed out" : "was woken");

  /* fork in a threaded process: the child has one thread */
  pthread_create(&t, NULL, spin_thread, NULL);
  pipe(p);
  fflush(stdout);
  c = fork();
  if (c == 0) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[200];
    int threads = -1;
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, "Threads:", 8))
        threads = atoi(line + 8);
    _exit(threads);
  }
  reap(c, "fork in a 2-thread process: the child's thread count");
  return 0;
}

/* N posix_spawn in a row: a missing program (its error comes through the
 * memory the child shares with the parent) and this program's "true" with
 * a dup2 file action; the lowest free fd is the same after. */
static int mode_spawnloop(int n)
{
  int fd0 = dup(0), miss = 0, ok = 0, bad = 0;
  close(fd0);
  char *am[] = {"/no/such/program", NULL};
  char *at[] = {(char *)self, "true", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, 2, 1);
  for (int i = 0; i < n; i++) {
    pid_t s;
    int r = posix_spawn(&s, am[0], NULL, NULL, am, environ);
    if (r == ENOENT)
      miss++;
    else if (!r)
      waitpid(s, NULL, 0);
    r = posix_spawn(&s, self, &fa, NULL, at, environ);
    int st = -1;
    if (!r && waitpid(s, &st, 0) == s && WIFEXITED(st) && WEXITSTATUS(st) == 0)
      ok++;
    else
      bad++;
  }
  posix_spawn_file_actions_destroy(&fa);
  int fd1 = dup(0);
  close(fd1);
  printf("posix_spawn of a missing program: ENOENT %s\n", miss == n ? "every time" : "not every time");
  printf("posix_spawn of a program: exited 0 %s (%s)\n", ok == n ? "every time" : "not every time",
         bad ? "some failed" : "none failed");
  printf("the lowest free fd after: %s; waitpid: %s\n", fd0 == fd1 ? "the same" : "another", err(waitpid(-1, NULL, WNOHANG)));
  return 0;
}

/* ---- record locks between processes ---- */

static const char *lock_name; /* the parent's file: a child's getpid differs */

static int lock_range(int fd, int cmd, short type, off_t start, off_t len)
{
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  return fcntl(fd, cmd, &fl);
}

static int locks_child(long fd)
{
  printf("child: F_SETLK on the parent's write-locked bytes 0-9: %s\n", err(lock_range(fd, F_SETLK, F_WRLCK, 0, 10)));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1};
  fcntl(fd, F_GETLK, &fl);
  printf("child: F_GETLK of byte 5: %s [%lld, +%lld), held by the parent: %s\n",
         fl.l_type == F_WRLCK ? "F_WRLCK" : fl.l_type == F_UNLCK ? "F_UNLCK" : "other", (long long)fl.l_start,
         (long long)fl.l_len, fl.l_pid == getppid() ? "yes" : "no");
  printf("child: F_SETLK of bytes 10-19: %s\n", err(lock_range(fd, F_SETLK, F_WRLCK, 10, 10)));
  printf("child: flock LOCK_EX|LOCK_NB through the inherited fd (the parent's open file holds it): %s\n",
         err(flock(fd, LOCK_EX | LOCK_NB)));
  int own = open(lock_name, O_RDWR);
  printf("child: flock LOCK_EX|LOCK_NB through its own open of the file: %s\n", err(flock(own, LOCK_EX | LOCK_NB)));
  printf("child: F_OFD_SETLK through the inherited fd: %s\n", err(lock_range(fd, F_OFD_SETLK, F_RDLCK, 100, 10)));
  printf("child: F_OFD_SETLK write lock through its own open: %s\n", err(lock_range(own, F_OFD_SETLK, F_WRLCK, 100, 10)));
  fflush(stdout);
  return 0; /* its POSIX lock on 10-19 goes with it */
}

static int lockw_child(long fd)
{
  double t0 = now();
  int r = lock_range(fd, F_SETLKW, F_WRLCK, 0, 10);
  printf("child: F_SETLKW on bytes the parent holds: %s after the parent's unlock: %s\n", err(r),
         now() - t0 >= 0.1 ? "yes" : "no");
  fflush(stdout);
  return 0;
}

static int lockdl_child(long fd)
{
  printf("child: F_SETLK of byte 20: %s\n", err(lock_range(fd, F_SETLK, F_WRLCK, 20, 1)));
  fflush(stdout);
  int r = lock_range(fd, F_SETLKW, F_WRLCK, 0, 1);
  printf("child: F_SETLKW of byte 0 (the parent's): %s, once the parent let it go\n", err(r));
  fflush(stdout);
  return 0;
}

static int mode_locks(void)
{
  const char *name = lock_name = tmpfile_name("lock");
  int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    printf("open %s\n", strerrorname_np(errno));
    return 1;
  }
  printf("parent: F_SETLK of bytes 0-9: %s\n", err(lock_range(fd, F_SETLK, F_WRLCK, 0, 10)));
  printf("parent: flock LOCK_EX: %s\n", err(flock(fd, LOCK_EX)));
  reap(child(locks_child, fd), "the child");
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
  fcntl(fd, F_GETLK, &fl);
  printf("parent: F_GETLK of bytes 10-19 after the child exited: %s\n", fl.l_type == F_UNLCK ? "F_UNLCK" : "locked");
  pid_t p = child(lockw_child, fd);
  msleep(150);
  printf("parent: unlocks bytes 0-9\n");
  fflush(stdout); /* before the child can take them and print */
  int r = lock_range(fd, F_SETLK, F_UNLCK, 0, 10);
  reap(p, "the waiting child");
  printf("parent: its F_UNLCK: %s\n", err(r));
  /* a cycle: the child holds byte 20 and waits for the parent's byte 0 */
  printf("parent: F_SETLK of byte 0: %s\n", err(lock_range(fd, F_SETLK, F_WRLCK, 0, 1)));
  fflush(stdout);
  p = child(lockdl_child, fd);
  msleep(300);
  r = lock_range(fd, F_SETLKW, F_WRLCK, 20, 1);
  printf("parent: F_SETLKW of byte 20 (the child's, which waits for byte 0): %s\n", err(r));
  fflush(stdout);
  lock_range(fd, F_SETLK, F_UNLCK, 0, 1);
  reap(p, "the child in the cycle");
  close(fd);
  unlink(name);
  return 0;
}

/* ---- a timerfd inherited across fork ---- */

static int tfd_child(long fd)
{
  struct pollfd pf = {.fd = (int)fd, .events = POLLIN};
  int n = poll(&pf, 1, 5000);
  uint64_t v = 0;
  long r = n == 1 ? read((int)fd, &v, 8) : -1;
  printf("child: poll of the inherited timerfd: %d (%s), read %ld: %llu expiration(s)\n", n,
         pf.revents & POLLIN ? "POLLIN" : "nothing", r, (unsigned long long)v);
  fflush(stdout);
  return 0;
}

static int tfd_middle(long fd)
{
  struct itimerspec its = {.it_value = {0, 200 * 1000000L}};
  timerfd_settime((int)fd, 0, &its, NULL);
  child(tfd_child, fd);
  return 0; /* at once: the grandchild keeps the timerfd its maker left */
}

static int mode_timerfd(void)
{
  int fd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {.it_value = {0, 100 * 1000000L}};
  timerfd_settime(fd, 0, &its, NULL);
  pid_t p = child(tfd_child, fd);
  /* The parent makes no call that waits, so nothing of its own looks at
   * the timer while the child waits for it. */
  int st;
  while (waitpid(p, &st, WNOHANG) == 0)
    sched_yield();
  status("the child", st);
  int pfd[2];
  pipe(pfd);
  fflush(stdout);
  p = fork();
  if (p == 0) {
    close(pfd[0]);
    dup2(pfd[1], 1);
    _exit(tfd_middle(fd));
  }
  close(pfd[1]);
  close(fd);
  reap(p, "the timerfd's maker");
  char buf[256];
  int n = readall(pfd[0], buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  printf("its orphaned child (its output through a pipe):\n%s", buf);
  return 0;
}

/* ---- rusage of children ---- */

static double tv_s(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

static int burn(long ms)
{
  struct timespec t;
  do /* CPU time, not wall time: the same work natively and in a sandbox */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  while (t.tv_sec * 1000 + t.tv_nsec / 1000000 < ms);
  return 0;
}

static int burn_twice(long ms)
{
  reap(child(burn, ms), "  the grandchild");
  return burn(ms);
}

static int mode_rusage(void)
{
  struct rusage ru;
  int st;
  pid_t p = child(burn, 300);
  pid_t r = wait4(p, &st, 0, &ru);
  double c = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  printf("wait4: %s, the child's CPU time in its rusage >= 0.25 s: %s\n", r == p ? "ok" : err(r), c >= 0.25 ? "yes" : "no");
  getrusage(RUSAGE_CHILDREN, &ru);
  c = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  printf("getrusage(RUSAGE_CHILDREN) >= 0.25 s: %s\n", c >= 0.25 ? "yes" : "no");
  /* a child that waited for its own child: both counted once it is waited for */
  reap(child(burn_twice, 200), "the child that waited for a grandchild");
  getrusage(RUSAGE_CHILDREN, &ru);
  c = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  printf("getrusage(RUSAGE_CHILDREN) now >= 0.65 s (grandchild included): %s\n", c >= 0.65 ? "yes" : "no");
  struct tms tm;
  times(&tm);
  long hz = sysconf(_SC_CLK_TCK);
  printf("times: the children's >= 0.65 s: %s\n", (double)(tm.tms_cutime + tm.tms_cstime) / hz >= 0.65 ? "yes" : "no");
  burn(100);
  getrusage(RUSAGE_SELF, &ru);
  c = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  printf("getrusage(RUSAGE_SELF) >= 0.1 s: %s, < 0.6 s (not the children's): %s\n", c >= 0.1 ? "yes" : "no",
         c < 0.6 ? "yes" : "no");
  printf("getrusage(RUSAGE_THREAD): %s\n", err(getrusage(RUSAGE_THREAD, &ru)));
  printf("getrusage(42): %s\n", err(getrusage(42, &ru)));
  return 0;
}

/* ---- zombie: an ended child not yet waited for, as /proc shows it ---- */

static long slurp(const char *path, char *buf, size_t size)
{
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return -1;
  long n = 0, k;
  while ((size_t)n < size - 1 && (k = read(fd, buf + n, size - 1 - (size_t)n)) > 0)
    n += k;
  buf[n] = 0;
  close(fd);
  return n;
}

static int mode_zombie(void)
{
  pid_t p = fork();
  if (p == 0)
    _exit(5);
  siginfo_t si = {0};
  int r = waitid(P_PID, (id_t)p, &si, WEXITED | WNOWAIT);
  printf("waitid(WNOWAIT): %s, %s\n", err(r), si.si_code == CLD_EXITED ? "CLD_EXITED" : "other");
  char path[64], buf[8192], link[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
  char *c = slurp(path, buf, sizeof buf) > 0 ? strrchr(buf, ')') : NULL;
  printf("stat: state %c\n", c && c[1] ? c[2] : '?');
  snprintf(path, sizeof path, "/proc/%d/status", (int)p);
  long n = slurp(path, buf, sizeof buf);
  char *s = n > 0 ? strstr(buf, "State:") : NULL;
  printf("status: %.*s, VmSize: %s\n", s ? (int)strcspn(s, "\n") : 4, s ? s : "none", strstr(buf, "VmSize") ? "shown" : "none");
  snprintf(path, sizeof path, "/proc/%d/comm", (int)p);
  printf("comm: %s", slurp(path, buf, sizeof buf) > 0 ? buf : "(unreadable)\n");
  static const char *const empty[] = {"cmdline", "maps"};
  for (int i = 0; i < 2; i++) { /* (environ: ESRCH at its open on Linux 6.18, not on 6.12) */
    snprintf(path, sizeof path, "/proc/%d/%s", (int)p, empty[i]);
    n = slurp(path, buf, sizeof buf);
    printf("%s: %s\n", empty[i], n < 0 ? strerrorname_np(errno) : n == 0 ? "empty" : "not empty");
  }
  static const char *const links[] = {"exe", "cwd"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "/proc/%d/%s", (int)p, links[i]);
    printf("readlink %s: %s\n", links[i], err(readlink(path, link, sizeof link)));
  }
  snprintf(path, sizeof path, "/proc/%d/fd", (int)p);
  DIR *d = opendir(path);
  int nfd = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    nfd += e->d_name[0] != '.';
  printf("fd directory: %s, %d entries\n", d ? "ok" : strerrorname_np(errno), nfd);
  if (d)
    closedir(d);
  bool listed = false;
  d = opendir("/proc");
  for (struct dirent *e; d && (e = readdir(d));)
    listed |= atoi(e->d_name) == p;
  if (d)
    closedir(d);
  printf("listed in /proc: %s\n", listed ? "yes" : "no");
  int st;
  printf("waitpid: %s\n", waitpid(p, &st, 0) == p ? "reaped" : err(-1));
  status("the zombie", st);
  snprintf(path, sizeof path, "/proc/%d", (int)p);
  printf("after the wait, /proc/PID: %s\n", err(access(path, F_OK)));
  return 0;
}

/* ---- bomb ---- */

static int bomb_pipe;

static void bomb_body(int depth)
{
  /* Each process forks up to 2 children, 7 levels at most: 255 processes
   * whatever the limits are, so a native run with no RLIMIT_NPROC (root)
   * cannot run away either. */
  for (int i = 0; i < 2 && depth < 7; i++) {
    pid_t p = fork();
    if (p < 0) {
      char c = errno == EAGAIN ? 'E' : 'X';
      write(bomb_pipe, &c, 1);
      break;
    }
    if (p == 0) {
      write(bomb_pipe, "+", 1);
      depth++;
      i = -1;
    }
  }
  for (;;)
    pause();
}

static int mode_bomb(int limit)
{
  struct rlimit r = {limit, limit};
  printf("setrlimit(RLIMIT_NPROC, %d): %s\n", limit, err(setrlimit(RLIMIT_NPROC, &r)));
  int p[2];
  pipe(p);
  bomb_pipe = p[1];
  fflush(stdout);
  pid_t b = fork();
  if (b == 0) {
    close(p[0]);
    setpgid(0, 0);
    bomb_body(0);
  }
  setpgid(b, b);
  if (b < 0) {
    printf("the first fork failed: %s\n", strerrorname_np(errno));
    return 1;
  }
  close(p[1]);
  /* until the first refusal, all 255 started, or 20 s */
  long started = 1, refused = 0, other = 0;
  double t0 = now();
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  while (!refused && started < 255 && now() - t0 < 20) {
    char c[64];
    int n = read(p[0], c, sizeof c);
    if (n <= 0) {
      msleep(10);
      continue;
    }
    for (int i = 0; i < n; i++)
      started += c[i] == '+', refused += c[i] == 'E', other += c[i] == 'X';
  }
  printf("a fork failed with EAGAIN: %s; with another error: %s; processes started under the limit: %s\n", refused ? "yes" : "no",
         other ? "yes" : "no", started <= limit ? "yes" : "no");
  printf("kill(-group, SIGKILL): %s\n", err(kill(-b, SIGKILL)));
  int reaped = 0;
  while (waitpid(-1, NULL, 0) > 0)
    reaped++;
  printf("the first child reaped %s; then %s\n", reaped == 1 ? "yes" : "no", strerrorname_np(errno));
  /* the others were re-parented and are reaped by pid 1: none may stay */
  double t1 = now();
  while (kill(-b, 0) == 0 && now() - t1 < 10)
    msleep(10);
  printf("after: the group is gone: %s\n", err(kill(-b, 0)));
  return 0;
}

/* ---- shared memory ---- */

struct shared {
  volatile long counter;
  char text[64];
  sem_t sem;
  pthread_mutex_t mu;
  long total;
};

static struct shared *shm_area;

static int shm_store_child(long v)
{
  shm_area->counter = v;
  /* a grandchild's store reaches the first process too */
  pid_t g = fork();
  if (g == 0) {
    strcpy(shm_area->text, "from the grandchild");
    _exit(0);
  }
  waitpid(g, NULL, 0);
  return 0;
}

static int shm_dontneed_child(long arg)
{
  /* Linux drops the child's pages of the mapping and reads the object
   * again: the same bytes here, and nothing zeroed in the parent. */
  madvise((void *)shm_area, 4096, MADV_DONTNEED);
  printf("  child after MADV_DONTNEED reads counter %ld\n", shm_area->counter);
  mprotect((void *)shm_area, 4096, PROT_READ);
  munmap((char *)shm_area + 4096, 4096);
  return 0;
}

static int sem_poster(long arg)
{
  msleep(100);
  shm_area->counter = 7;
  sem_post(&shm_area->sem);
  return 0;
}

static int named_poster(long arg)
{
  sem_t *s = sem_open("/cowfork-procs-sem", 0);
  if (s == SEM_FAILED)
    return 1;
  msleep(100);
  sem_post(s);
  sem_close(s);
  return 0;
}

static int mutex_adder(long n)
{
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&shm_area->mu);
    long t = shm_area->total;
    if (i % 50 == 0)
      sched_yield(); /* hold it a while: the other process waits on the futex */
    shm_area->total = t + 1;
    pthread_mutex_unlock(&shm_area->mu);
  }
  return 0;
}

static int file_child(long fd)
{
  char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (m == MAP_FAILED)
    return 1;
  memcpy(m + 4096, "child store", 11);
  return 0;
}

static int mode_shm(void)
{
  shm_area = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm_area == MAP_FAILED) {
    printf("mmap MAP_SHARED|MAP_ANONYMOUS: %s\n", err(-1));
    return 1;
  }
  long *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  *priv = 1;
  shm_area->counter = 1;
  reap(child(shm_store_child, 42), "child storing 42");
  printf("MAP_SHARED|MAP_ANONYMOUS: the parent reads the child's 42: %ld; the grandchild's text: \"%s\"\n",
         shm_area->counter, shm_area->text);
  pid_t c = fork();
  if (c == 0) {
    *priv = 2;
    _exit(0);
  }
  reap(c, "child storing in private memory");
  printf("MAP_PRIVATE: the child's store is its own: %ld\n", *priv);

  reap(child(shm_dontneed_child, 0), "child: madvise, mprotect, munmap");
  printf("after the child's MADV_DONTNEED, mprotect and munmap the parent reads %ld and writes: ", shm_area->counter);
  ((char *)shm_area)[4096] = 'w';
  printf("%c\n", ((char *)shm_area)[4096]);

  /* a pshared semaphore and mutex in the shared page */
  sem_init(&shm_area->sem, 1, 0);
  shm_area->counter = 0;
  pid_t p = child(sem_poster, 0);
  int r = sem_wait(&shm_area->sem);
  printf("sem_wait (pshared) woken by the child's sem_post: %d, counter %ld\n", r, shm_area->counter);
  reap(p, "poster");
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&shm_area->mu, &ma);
  shm_area->total = 0;
  pid_t a1 = child(mutex_adder, 1000), a2 = child(mutex_adder, 1000);
  mutex_adder(1000);
  reap(a1, "adder 1");
  reap(a2, "adder 2");
  printf("three processes added 1000 each under a pshared mutex: %ld\n", shm_area->total);

  /* sem_open: a file in /dev/shm, mapped MAP_SHARED */
  sem_unlink("/cowfork-procs-sem");
  sem_t *s = sem_open("/cowfork-procs-sem", O_CREAT | O_EXCL, 0600, 0);
  printf("sem_open: %s\n", s == SEM_FAILED ? err(-1) : "ok");
  if (s != SEM_FAILED) {
    p = child(named_poster, 0);
    printf("sem_wait (named) woken by the child's sem_post: %d\n", sem_wait(s));
    reap(p, "named poster");
    sem_close(s);
    printf("sem_unlink: %d\n", sem_unlink("/cowfork-procs-sem"));
  }

  /* shm_open: /dev/shm/NAME */
  int fd = shm_open("/cowfork-procs-shm", O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 8192) < 0) {
    printf("shm_open: %s\n", err(-1));
  } else {
    reap(child(file_child, fd), "child mapping the shm object");
    char buf[16] = "";
    pread(fd, buf, 11, 4096);
    printf("shm_open + mmap in the child, pread in the parent: \"%s\"\n", buf);
    close(fd);
    int u = shm_unlink("/cowfork-procs-shm");
    printf("shm_unlink: %d; ", u);
    printf("again: %s\n", err(shm_unlink("/cowfork-procs-shm")));
  }

  /* a /tmp file: the child's store through its mapping, read(2) here;
   * the parent's write(2), seen in the child's mapping */
  const char *path = tmpfile_name("shm");
  fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
  char zeros[8192] = {0};
  write(fd, zeros, sizeof zeros);
  reap(child(file_child, fd), "child mapping the /tmp file");
  char buf[16] = "";
  pread(fd, buf, 11, 4096);
  printf("MAP_SHARED of a /tmp file in the child, pread in the parent: \"%s\"\n", buf);
  char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int gate[2];
  pipe(gate);
  c = fork();
  if (c == 0) {
    char x;
    read(gate[0], &x, 1);
    printf("  the child's mapping shows the parent's pwrite: \"%.6s\"\n", m + 100);
    _exit(0);
  }
  pwrite(fd, "pwrite", 6, 100);
  write(gate[1], "x", 1);
  reap(c, "child reading its mapping");
  munmap(m, 8192);
  close(fd);
  unlink(path);
  return 0;
}

/* ---- pidfds ---- */

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif

static int pidfd_open_(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }
static int pidfd_signal(int fd, int sig, siginfo_t *info, unsigned flags)
{
  return (int)syscall(SYS_pidfd_send_signal, fd, sig, info, flags);
}

/* A child that waits for a byte on fd, then exits 3 (or dies). */
static int pidfd_gated(long fd)
{
  char c;
  if (read((int)fd, &c, 1) != 1)
    return 9;
  return 3;
}

static void pidfd_waitid(int fd, int options, const char *what)
{
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_PIDFD, fd, &si, options);
  if (r < 0) {
    printf("%s: waitid(P_PIDFD): %s\n", what, err(-1));
    return;
  }
  if (!si.si_pid) {
    printf("%s: waitid(P_PIDFD): nothing yet\n", what);
    return;
  }
  printf("%s: waitid(P_PIDFD): %s %s%d\n", what, code_name(si.si_code),
         si.si_code == CLD_EXITED ? "status " : "signal ", si.si_status);
}

static short pidfd_revents(int fd, int ms)
{
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, 1, ms);
  return r < 0 ? -1 : p.revents;
}

static const char *revents_name(short r)
{
  return r < 0 ? "error" : r == 0 ? "none" : (r & (POLLIN | POLLHUP)) == (POLLIN | POLLHUP) ? "POLLIN|POLLHUP"
                                           : r & POLLIN                                      ? "POLLIN"
                                                                                             : "other";
}

static volatile sig_atomic_t usr1_got, usr1_code, usr1_value, usr1_pid_ok;
static void on_usr1(int sig, siginfo_t *si, void *uc)
{
  usr1_got = 1;
  usr1_code = si->si_code;
  usr1_value = si->si_value.sival_int;
  usr1_pid_ok = si->si_pid == getppid();
}

/* Waits for SIGUSR1 (reports its si_code and value on fd), then exits. */
static int pidfd_usr1_child(long fd)
{
  char line[160];
  sigset_t none;
  sigemptyset(&none);
  while (!usr1_got)
    sigsuspend(&none);
  int n = snprintf(line, sizeof line, "child got SIGUSR1: si_code %s, value %d, si_pid the parent's: %s\n",
               usr1_code == SI_QUEUE ? "SI_QUEUE" : usr1_code == SI_USER ? "SI_USER" : "other", usr1_value,
               usr1_pid_ok ? "yes" : "no");
  write((int)fd, line, (size_t)n);
  return 0;
}

/* The inherited pidfd of a sibling: signal it, poll it until it ended. */
static int pidfd_sibling(long fd)
{
  if (pidfd_signal((int)fd, SIGTERM, NULL, 0) < 0)
    return 10;
  short r = pidfd_revents((int)fd, 10000);
  siginfo_t si;
  int w = waitid(P_PIDFD, (int)fd, &si, WEXITED | WNOHANG);
  return (r & POLLIN) && w < 0 && errno == ECHILD ? 0 : 11;
}

/* Opens a file of its own and tells its fd on fd, then waits for a byte. */
static int pidfd_holder(long fds)
{
  int tell = (int)(fds & 0xffff), gate = (int)(fds >> 16);
  const char *path = tmpfile_name("getfd");
  int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
  write(f, "the child's file", 16);
  unlink(path);
  write(tell, &f, sizeof f);
  char c;
  read(gate, &c, 1);
  return 0;
}

static int count_fds(void)
{
  int n = 0;
  for (int i = 0; i < 256; i++)
    n += fcntl(i, F_GETFD) >= 0;
  return n;
}

struct clone_args_ {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static int mode_pidfd(void)
{
  /* pidfd_open's errors */
  pid_t gone = child(exit_n, 0);
  reap(gone, "a child to be gone");
  printf("pidfd_open(0): %s; (-1): %s; flags 1: %s; a reaped child: %s\n", err(pidfd_open_(0, 0)),
         err(pidfd_open_(-1, 0)), err(pidfd_open_(getpid(), 1)), err(pidfd_open_(gone, 0)));

  /* a child alive, then ended, then reaped */
  int gate[2];
  pipe(gate);
  pid_t c = child(pidfd_gated, gate[0]);
  int fd = pidfd_open_(c, 0), nb = pidfd_open_(c, PIDFD_NONBLOCK);
  printf("pidfd_open: %s, close-on-exec: %s; PIDFD_NONBLOCK: %s, O_NONBLOCK: %s\n", err(fd),
         fcntl(fd, F_GETFD) == FD_CLOEXEC ? "yes" : "no", err(nb), fcntl(nb, F_GETFL) & O_NONBLOCK ? "yes" : "no");
  char link[64], target[64] = "";
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  readlink(link, target, sizeof target - 1);
  printf("its /proc/self/fd link: %s\n", target);
  char b;
  printf("read: %s; write: %s\n", err(read(fd, &b, 1)), err(write(fd, "x", 1)));
  printf("alive: poll %s\n", revents_name(pidfd_revents(fd, 0)));
  pidfd_waitid(fd, WEXITED | WNOHANG, "alive, WNOHANG");
  pidfd_waitid(nb, WEXITED, "alive, PIDFD_NONBLOCK");
  pidfd_waitid(nb, WEXITED | WNOHANG, "alive, PIDFD_NONBLOCK and WNOHANG");
  printf("pidfd_send_signal flags 8: %s; signal 0: %s; a bad signal: %s\n", err(pidfd_signal(fd, 0, NULL, 8)),
         err(pidfd_signal(fd, 0, NULL, 0)), err(pidfd_signal(fd, 65, NULL, 0)));
  printf("waitid(P_PIDFD) of stdin: %s; of -1: %s\n", err(waitid(P_PIDFD, 0, &(siginfo_t){0}, WEXITED)),
         err(waitid(P_PIDFD, -1, &(siginfo_t){0}, WEXITED)));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, got;
  printf("epoll_ctl ADD: %s; ", err(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)));
  printf("epoll_wait while alive: %d\n", epoll_wait(ep, &got, 1, 0));
  write(gate[1], "x", 1);
  printf("ended: poll (waiting) %s\n", revents_name(pidfd_revents(fd, 10000)));
  int n = epoll_wait(ep, &got, 1, 10000);
  printf("epoll_wait: %d, EPOLLIN: %s, data %u\n", n, n == 1 && (got.events & EPOLLIN) ? "yes" : "no", got.data.u32);
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(fd, &rs);
  struct timeval tv = {0, 0};
  printf("select: %d, readable: %s\n", select(fd + 1, &rs, NULL, NULL, &tv), FD_ISSET(fd, &rs) ? "yes" : "no");
  pidfd_waitid(fd, WEXITED | WNOWAIT, "ended, WNOWAIT");
  pidfd_waitid(nb, WEXITED, "ended, PIDFD_NONBLOCK");
  printf("reaped: poll %s\n", revents_name(pidfd_revents(fd, 0)));
  pidfd_waitid(fd, WEXITED, "reaped");
  printf("pidfd_send_signal to the reaped: %s\n", err(pidfd_signal(fd, SIGTERM, NULL, 0)));
  close(ep);
  close(fd);
  close(nb);
  close(gate[0]);
  close(gate[1]);

  /* signals: SI_USER from NULL info; a given siginfo (SI_QUEUE); EPERM,
   * EINVAL for a mismatched signal */
  struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO};
  sigaction(SIGUSR1, &sa, NULL);
  int rep[2];
  pipe(rep);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  for (int k = 0; k < 2; k++) {
    c = child(pidfd_usr1_child, rep[1]);
    fd = pidfd_open_(c, 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = 77;
    if (k == 1) {
      siginfo_t bad = si;
      bad.si_code = SI_USER;
      printf("a siginfo with si_code SI_USER to another process: %s\n", err(pidfd_signal(fd, SIGUSR1, &bad, 0)));
      printf("a siginfo of another signal: %s\n", err(pidfd_signal(fd, SIGUSR2, &si, 0)));
    }
    printf("pidfd_send_signal(SIGUSR1, %s): %s\n", k ? "SI_QUEUE info" : "NULL",
           err(pidfd_signal(fd, SIGUSR1, k ? &si : NULL, 0)));
    char line[160];
    int m = (int)read(rep[0], line, sizeof line - 1);
    line[m > 0 ? m : 0] = 0;
    printf("  %s", line);
    reap(c, "  the child");
    close(fd);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  signal(SIGUSR1, SIG_DFL);
  /* to itself with a siginfo whose si_code is SI_USER: allowed */
  int me = pidfd_open_(getpid(), 0);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, &old);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIGUSR2;
  si.si_code = SI_USER;
  si.si_value.sival_int = 5;
  printf("to itself with si_code SI_USER: %s", err(pidfd_signal(me, SIGUSR2, &si, 0)));
  struct timespec zero = {0, 0};
  siginfo_t in;
  int s = sigtimedwait(&usr2, &in, &zero);
  printf("; taken: %s, si_code %s\n", s == SIGUSR2 ? "SIGUSR2" : err(s), in.si_code == SI_USER ? "SI_USER" : "other");
  sigprocmask(SIG_SETMASK, &old, NULL);
  printf("waitid(P_PIDFD) of itself: %s\n", err(waitid(P_PIDFD, me, &in, WEXITED | WNOHANG)));
  close(me);

  /* inherited across fork: a second child signals the first and waits for
   * its end through the pidfd it inherited */
  pipe(gate);
  c = child(pidfd_gated, gate[0]);
  fd = pidfd_open_(c, 0);
  pid_t c2 = child(pidfd_sibling, fd);
  reap(c2, "a sibling that signalled the child through the inherited pidfd and polled it");
  reap(c, "the child");
  close(fd);
  close(gate[0]);
  close(gate[1]);

  /* pidfd_getfd: another process's open file, close-on-exec */
  int tell[2];
  pipe(tell);
  pipe(gate);
  c = child(pidfd_holder, tell[1] | ((long)gate[0] << 16));
  fd = pidfd_open_(c, 0);
  int theirs = -1;
  read(tell[0], &theirs, sizeof theirs);
  printf("pidfd_getfd flags 1: %s; a closed fd: %s; a non-pidfd: %s\n", err(syscall(SYS_pidfd_getfd, fd, theirs, 1)),
         err(syscall(SYS_pidfd_getfd, fd, 200, 0)), err(syscall(SYS_pidfd_getfd, 0, theirs, 0)));
  int mine = (int)syscall(SYS_pidfd_getfd, fd, theirs, 0);
  char buf[32] = "";
  pread(mine, buf, 16, 0);
  printf("pidfd_getfd: %s, reads \"%s\", close-on-exec: %s\n", err(mine), buf,
         fcntl(mine, F_GETFD) == FD_CLOEXEC ? "yes" : "no");
  close(mine);
  write(gate[1], "x", 1);
  pidfd_revents(fd, 10000);
  printf("pidfd_getfd of the ended child: %s\n", err(syscall(SYS_pidfd_getfd, fd, theirs, 0)));
  pidfd_waitid(fd, WEXITED, "the child");
  close(fd);
  close(tell[0]);
  close(tell[1]);
  close(gate[0]);
  close(gate[1]);

  /* CLONE_PIDFD: clone3 (args.pidfd) and clone (parent_tid) */
  for (int k = 0; k < 2; k++) {
    int pfd = -1, before = count_fds();
    fflush(stdout);
    long r;
    if (k == 0) {
      struct clone_args_ ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pfd, .exit_signal = SIGCHLD};
      r = syscall(SYS_clone3, &ca, sizeof ca);
    } else {
      r = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pfd, 0, 0);
    }
    if (r == 0) /* the child: neither the fd nor the parent's store of it */
      _exit(pfd == -1 && count_fds() == before ? 7 : 8);
    printf("%s CLONE_PIDFD: %s, close-on-exec: %s\n", k ? "clone" : "clone3", err(r),
           fcntl(pfd, F_GETFD) == FD_CLOEXEC ? "yes" : "no");
    pidfd_waitid(pfd, WEXITED, "  its child (7: it saw no pidfd)");
    close(pfd);
  }
  int pfd = -1;
  printf("clone CLONE_PIDFD|CLONE_PARENT_SETTID: %s\n",
         err(syscall(SYS_clone, CLONE_PIDFD | CLONE_PARENT_SETTID | SIGCHLD, 0, &pfd, 0, 0)));
  return 0;
}

/* ---- System V shared memory and semaphores ---- */

static int sysv_id;
static char *sysv_at;

static long sysv_nattch(int id)
{
  struct shmid_ds ds;
  return shmctl(id, IPC_STAT, &ds) < 0 ? -errno : (long)ds.shm_nattch;
}

/* A child: what it sees in the segment, the attachments then; it writes. */
static int shm_sysv_child(long arg)
{
  int ok = !strcmp(sysv_at, "from the parent");
  strcpy(sysv_at, "from the child");
  return ok * 10 + (int)sysv_nattch(sysv_id);
}

static int shm_sysv_exec(long arg)
{
  char id[16];
  snprintf(id, sizeof id, "%d", sysv_id);
  execl(self, self, "sysvnattch", id, (char *)NULL);
  return 99;
}

/* At its start: whether the fork set shm_lpid to the parent's pid (Linux's
 * shm_open runs in the parent for each attachment it copies). */
static int shm_fork_lpid(long arg)
{
  struct shmid_ds ds;
  return shmctl(sysv_id, IPC_STAT, &ds) == 0 && ds.shm_lpid == getppid() ? 0 : 1;
}

static int shm_ro_writer(long arg)
{
  sysv_at[0] = 'x'; /* SHM_RDONLY: SIGSEGV */
  return 0;
}

static void sem_show(int id, const char *what)
{
  unsigned short v[3];
  if (semctl(id, 0, GETALL, v) < 0)
    printf("%s: GETALL %s\n", what, err(-1));
  else
    printf("%s: %u %u %u\n", what, v[0], v[1], v[2]);
}

static int semop1(int id, int num, int op, int flg)
{
  struct sembuf b = {(unsigned short)num, (short)op, (short)flg};
  return semop(id, &b, 1);
}

/* Until `count` of semaphore num of id reaches want (at most 10 s). */
static int sem_wait_count(int id, int num, int count, int want)
{
  for (int i = 0; i < 1000; i++) {
    if (semctl(id, num, count) == want)
      return 1;
    msleep(10);
  }
  return 0;
}

static int sem_blocker(long how)
{
  int num = (int)(how & 0xff), op = (int)(how >> 8) - 100;
  int r = semop1(sysv_id, num, op, 0);
  return r == 0 ? 0 : errno == EINTR ? 4 : errno == EIDRM ? 43 : 1;
}

static void on_usr1_nop(int sig) {}

static int sem_interrupted(long arg)
{
  struct sigaction sa = {.sa_handler = on_usr1_nop, .sa_flags = SA_RESTART};
  sigaction(SIGUSR1, &sa, NULL);
  return sem_blocker(arg);
}

static int sem_undo_child(long op)
{
  if (semop1(sysv_id, 0, (int)op, SEM_UNDO) < 0)
    return 1;
  pid_t g = fork(); /* its child has no adjustments of its own: its end changes nothing */
  if (g == 0)
    _exit(0);
  waitpid(g, NULL, 0);
  return semctl(sysv_id, 0, GETVAL);
}

static int sem_undo_cleared(long fd)
{
  if (semop1(sysv_id, 0, -1, SEM_UNDO) < 0)
    return 1;
  write((int)fd, "x", 1);
  msleep(1); /* the parent's SETVAL clears the adjustment before the end (it waits for the byte) */
  char c;
  read((int)fd, &c, 1); /* (a second pipe end is not needed: the parent closes its copy) */
  return 0;
}

static int mode_sysv(void)
{
  /* shmget */
  printf("shmget size 0: %s\n", err(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600)));
  int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
  sysv_id = id;
  struct shmid_ds ds;
  shmctl(id, IPC_STAT, &ds);
  printf("shmget: %s; IPC_STAT: size %zu, mode %o, key %d, nattch %lu, cpid mine: %s, owner mine: %s, "
         "never attached: %s\n",
         err(id), ds.shm_segsz, ds.shm_perm.mode, ds.shm_perm.__key, ds.shm_nattch,
         ds.shm_cpid == getpid() ? "yes" : "no", ds.shm_perm.uid == getuid() && ds.shm_perm.cuid == getuid() ? "yes" : "no",
         ds.shm_atime == 0 && ds.shm_lpid == 0 ? "yes" : "no");
  sysv_at = shmat(id, NULL, 0);
  shmctl(id, IPC_STAT, &ds);
  printf("shmat: %s, page-aligned: %s, zeros: %s; nattch %lu, lpid mine: %s, atime set: %s\n",
         sysv_at == (void *)-1 ? err(-1) : "ok", ((uintptr_t)sysv_at & 4095) == 0 ? "yes" : "no",
         sysv_at[0] == 0 && sysv_at[9999] == 0 ? "yes" : "no", ds.shm_nattch, ds.shm_lpid == getpid() ? "yes" : "no",
         ds.shm_atime ? "yes" : "no");
  strcpy(sysv_at, "from the parent");
  pid_t c = child(shm_sysv_child, 0);
  int st;
  waitpid(c, &st, 0);
  shmctl(id, IPC_STAT, &ds);
  printf("a forked child saw the parent's bytes and %d attachments (code %d); the parent reads \"%s\"; "
         "after its end: nattch %lu, lpid the child's: %s, dtime set: %s\n",
         WEXITSTATUS(st) % 10, WEXITSTATUS(st), sysv_at, ds.shm_nattch, ds.shm_lpid == c ? "yes" : "no",
         ds.shm_dtime ? "yes" : "no");
  fflush(stdout);
  reap(child(shm_sysv_exec, 0), "a child that exec'd (it printed the attachments it saw)");
  char *ro = shmat(id, NULL, SHM_RDONLY);
  printf("SHM_RDONLY: %s, reads \"%s\", nattch %ld\n", ro == (void *)-1 ? err(-1) : "ok", ro, sysv_nattch(id));
  char *keep = sysv_at;
  sysv_at = ro;
  reap(child(shm_ro_writer, 0), "a child writing to the SHM_RDONLY attachment");
  sysv_at = keep;
  /* (whole attachments: Linux never merges the VMAs of a segment again, nattch would count the pieces) */
  printf("mprotect of the SHM_RDONLY attachment: writable: %s, ", err(mprotect(ro, 10000, PROT_READ | PROT_WRITE)));
  printf("executable: %s; ", err(mprotect(ro, 10000, PROT_READ | PROT_EXEC)));
  printf("the other: none %s, ", err(mprotect(keep, 10000, PROT_NONE)));
  printf("writable again %s\n", err(mprotect(keep, 10000, PROT_READ | PROT_WRITE)));
  reap(child(shm_fork_lpid, 0), "a child: did the fork make shm_lpid the parent's (0: yes)");
  /* addresses: SHM_RND, an unaligned one without it, a taken one, SHM_REMAP */
  char *hole = mmap(NULL, 32768, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(hole, 32768); /* (its top half stays free: shmdt of no attachment) */
  printf("shmat unaligned: %s; ", err((long)shmat(id, hole + 5, 0)));
  char *r1 = shmat(id, hole + 5, SHM_RND);
  printf("SHM_RND: %s; the same again: %s; ", r1 == hole ? "rounded down" : err((long)r1),
         err((long)shmat(id, hole, 0)));
  char *r2 = shmat(id, hole, SHM_REMAP);
  printf("SHM_REMAP: %s, reads \"%s\"; nattch %ld\n", r2 == hole ? "ok" : err((long)r2), r2, sysv_nattch(id));
  printf("shmdt unaligned: %s; ", err(shmdt(hole + 1)));
  printf("of no attachment: %s; ", err(shmdt(hole + 16384)));
  printf("of the SHM_RND one: %s, ", err(shmdt(hole)));
  printf("again: %s; nattch %ld\n", err(shmdt(hole)), sysv_nattch(id));
  shmdt(ro);
  printf("shmat of a bad id: %s; shmctl of a bad id: %s, a bad command: %s\n", err((long)shmat(id + 1, NULL, 0)),
         err(shmctl(id + 1, IPC_STAT, &ds)), err(shmctl(id, 77, &ds)));
  /* IPC_RMID while attached: destroyed with the last detach */
  printf("IPC_RMID attached: %s; ", err(shmctl(id, IPC_RMID, NULL)));
  shmctl(id, IPC_STAT, &ds);
  printf("IPC_STAT: SHM_DEST %s, key %d, nattch %lu; still usable: \"%s\"\n", ds.shm_perm.mode & SHM_DEST ? "set" : "not set",
         ds.shm_perm.__key, ds.shm_nattch, sysv_at);
  c = child(shm_sysv_child, 0);
  waitpid(c, &st, 0);
  printf("a child of the removed segment saw %d attachments; ", WEXITSTATUS(st) % 10);
  printf("shmdt: %s; ", err(shmdt(sysv_at)));
  printf("IPC_STAT after: %s\n", err(shmctl(id, IPC_STAT, &ds)));

  /* keys */
  key_t key = 0x5c0f0000 | (getpid() & 0xffff);
  id = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0640);
  printf("keyed shmget: %s; IPC_EXCL again: %s; by key: %s; larger: %s; a missing key: %s\n", err(id),
         err(shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0640)), shmget(key, 0, 0) == id ? "the same id" : "other",
         err(shmget(key, 8192, 0)), err(shmget(key ^ 0x8000, 4096, 0)));
  shmctl(id, IPC_STAT, &ds);
  ds.shm_perm.mode = 0604;
  printf("IPC_SET: %s; ", err(shmctl(id, IPC_SET, &ds)));
  shmctl(id, IPC_STAT, &ds);
  printf("mode now %o; ", ds.shm_perm.mode);
  printf("IPC_RMID unattached: %s; ", err(shmctl(id, IPC_RMID, NULL)));
  printf("by key after: %s; ", err(shmget(key, 0, 0)));
  printf("IPC_STAT: %s\n", err(shmctl(id, IPC_STAT, &ds)));

  /* semaphores */
  printf("semget 0 semaphores: %s; ", err(semget(IPC_PRIVATE, 0, 0600)));
  id = semget(IPC_PRIVATE, 3, 0600);
  sysv_id = id;
  printf("3: %s\n", err(id));
  sem_show(id, "new set");
  unsigned short init[3] = {1, 0, 5};
  printf("SETALL: %s; ", err(semctl(id, 0, SETALL, init)));
  printf("SETVAL 40000: %s; GETVAL of semaphore 3: %s; ", err(semctl(id, 0, SETVAL, 40000)), err(semctl(id, 3, GETVAL)));
  printf("GETVAL 2: %d\n", semctl(id, 2, GETVAL));
  printf("semop -1 IPC_NOWAIT: %s, ", err(semop1(id, 0, -1, IPC_NOWAIT)));
  printf("again: %s; ", err(semop1(id, 0, -1, IPC_NOWAIT)));
  printf("wait for zero of 1: %s; ", err(semop1(id, 1, 0, IPC_NOWAIT)));
  printf("semaphore 5: %s; ", err(semop1(id, 5, 1, 0)));
  printf("no operations: %s\n", err(semop(id, NULL, 0)));
  struct sembuf two[2] = {{0, 1, 0}, {2, -10, IPC_NOWAIT}};
  printf("two operations, the second would wait: %s; ", err(semop(id, two, 2)));
  sem_show(id, "nothing applied");
  printf("past SEMVMX: %s; ", err(semop1(id, 2, 32767, 0)));
  struct timespec t50 = {0, 50000000};
  struct sembuf dec = {0, -1, 0};
  printf("semtimedop 50 ms: %s\n", err(semtimedop(id, &dec, 1, &t50)));
  /* waits across processes */
  c = child(sem_blocker, 1 | (99 << 8));
  printf("a child waits for semaphore 1: GETNCNT 1: %s; ", sem_wait_count(id, 1, GETNCNT, 1) ? "yes" : "no");
  semop1(id, 1, 1, 0);
  reap(c, "woken by the parent's +1");
  printf("GETPID of 1 is the child's: %s, GETNCNT %d\n", semctl(id, 1, GETPID) == c ? "yes" : "no",
         semctl(id, 1, GETNCNT));
  c = child(sem_blocker, 2 | (100 << 8));
  printf("a child waits for zero: GETZCNT 1: %s; ", sem_wait_count(id, 2, GETZCNT, 1) ? "yes" : "no");
  semctl(id, 2, SETVAL, 0);
  reap(c, "woken by SETVAL 0");
  c = child(sem_interrupted, 0 | (99 << 8));
  sem_wait_count(id, 0, GETNCNT, 1);
  kill(c, SIGUSR1);
  reap(c, "a waiter interrupted by a SA_RESTART handler (4: EINTR)");
  /* SEM_UNDO */
  semctl(id, 0, SETVAL, 3);
  c = child(sem_undo_child, -2);
  waitpid(c, &st, 0);
  printf("SEM_UNDO -2: the child saw %d (after its own child's end), the parent %d after its end\n",
         WEXITSTATUS(st), semctl(id, 0, GETVAL));
  int pp[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, pp);
  c = child(sem_undo_cleared, pp[1]);
  char x;
  read(pp[0], &x, 1);
  semctl(id, 0, SETVAL, 10);
  write(pp[0], "x", 1);
  reap(c, "a child whose adjustment SETVAL cleared");
  printf("  value after its end: %d\n", semctl(id, 0, GETVAL));
  close(pp[0]);
  close(pp[1]);
  /* removed under a waiter */
  c = child(sem_blocker, 1 | (99 << 8));
  sem_wait_count(id, 1, GETNCNT, 1);
  printf("IPC_RMID with a waiter: %s; ", err(semctl(id, 0, IPC_RMID)));
  reap(c, "the waiter (43: EIDRM)");
  printf("semop on the removed set: %s\n", err(semop1(id, 0, 1, 0)));
  /* keys, IPC_STAT, IPC_SET */
  id = semget(key, 2, IPC_CREAT | 0600);
  struct semid_ds sds;
  semctl(id, 0, IPC_STAT, &sds);
  printf("keyed semget: %s; more semaphores by key: %s; by key: %s; IPC_STAT: nsems %lu, mode %o, otime %ld\n",
         err(id), err(semget(key, 3, 0)), semget(key, 0, 0) == id ? "the same id" : "other", sds.sem_nsems,
         sds.sem_perm.mode, (long)sds.sem_otime);
  sds.sem_perm.mode = 0640;
  semctl(id, 0, IPC_SET, &sds);
  semctl(id, 0, IPC_STAT, &sds);
  printf("IPC_SET mode %o; ", sds.sem_perm.mode);
  printf("IPC_RMID: %s; ", err(semctl(id, 0, IPC_RMID)));
  printf("by key after: %s\n", err(semget(key, 0, 0)));
  return 0;
}

/* ---- System V message queues ---- */

static int msq_id;

struct pmsg {
  long type;
  char text[64];
};

static int msg_send(int id, long type, const char *s, int flg)
{
  struct pmsg m = {type, {0}};
  memcpy(m.text, s, strlen(s));
  return msgsnd(id, &m, strlen(s), flg);
}

/* What msgrcv gave: "type N, K bytes 'TEXT'" or the error. */
static const char *msg_got(ssize_t r, const struct pmsg *m)
{
  static char b[128];
  if (r < 0)
    return err(-1);
  snprintf(b, sizeof b, "type %ld, %zd bytes '%.*s'", m->type, r, (int)r, m->text);
  return b;
}

static int msg_status(ssize_t r) { return r >= 0 ? 0 : errno == EINTR ? 4 : errno == EIDRM ? 43 : errno == E2BIG ? 7 : 1; }

/* A child: says it is ready (type 9), then waits for a message of type 2
 * in a buffer of arg bytes: its size, or 4 (EINTR), 43 (EIDRM), 7 (E2BIG). */
static int msg_receiver(long arg)
{
  if (msg_send(msq_id, 9, "ready", 0) < 0)
    return 1;
  struct pmsg m;
  ssize_t r = msgrcv(msq_id, &m, (size_t)arg, 2, 0);
  return r >= 0 ? 10 + (int)r : msg_status(r);
}

static int msg_sender(long arg) { return msg_status(msg_send(msq_id, 5, "late", 0)); }

static int msg_interrupted(long arg)
{
  struct pmsg m;
  return msg_status(msgrcv(msq_id, &m, sizeof m.text, 2, 0));
}

/* A child running fn(0) with a SA_RESTART handler of SIGUSR1 (from its
 * start), sent SIGUSR1 every 20 ms until it ends (one reaches it in its wait). */
static void signal_until_end(int (*fn)(long), const char *what)
{
  struct sigaction sa = {.sa_handler = on_usr1_nop, .sa_flags = SA_RESTART}, old;
  sigaction(SIGUSR1, &sa, &old);
  pid_t c = child(fn, 0);
  sigaction(SIGUSR1, &old, NULL);
  int st;
  while (waitpid(c, &st, WNOHANG) == 0) {
    kill(c, SIGUSR1);
    msleep(20);
  }
  status(what, st);
}

static void msq_show(int id, const char *what)
{
  struct msqid_ds d;
  if (msgctl(id, IPC_STAT, &d) < 0)
    printf("%s: IPC_STAT %s\n", what, err(-1));
  else
    printf("%s: qnum %lu, cbytes %lu, qbytes %lu\n", what, (unsigned long)d.msg_qnum, (unsigned long)d.__msg_cbytes,
           (unsigned long)d.msg_qbytes);
}

static int mode_msg(void)
{
  struct pmsg m;
  key_t key = 0x5c0e0000 | (getpid() & 0xffff);
  printf("msgget of a missing key: %s; ", err(msgget(key, 0)));
  int id = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
  msq_id = id;
  printf("keyed: %s; again with IPC_EXCL: %s; by key: %s\n", err(id), err(msgget(key, IPC_CREAT | IPC_EXCL)),
         msgget(key, 0) == id ? "the same id" : "other");
  printf("mtype 0: %s; 8193 bytes: %s; a bad buffer: %s; msgrcv of a negative size: %s\n", err(msg_send(id, 0, "x", 0)),
         err(msgsnd(id, &m, 8193, 0)), err(msgsnd(id, NULL, 1, 0)), err(msgrcv(id, &m, (size_t)-1, 0, 0)));
  msg_send(id, 3, "three", 0);
  msg_send(id, 1, "one", 0);
  msg_send(id, 2, "two", 0);
  msg_send(id, 1, "uno", 0);
  msq_show(id, "sent 3 1 2 1");
  struct msqid_ds d;
  msgctl(id, IPC_STAT, &d);
  printf("lspid is ours: %s, lrpid %d, stime set: %s, rtime %ld\n", d.msg_lspid == getpid() ? "yes" : "no",
         d.msg_lrpid, d.msg_stime ? "yes" : "no", (long)d.msg_rtime);
  printf("msgtyp 2: %s\n", msg_got(msgrcv(id, &m, sizeof m.text, 2, 0), &m));
  printf("MSG_COPY index 2: %s\n", msg_got(msgrcv(id, &m, sizeof m.text, 2, MSG_COPY | IPC_NOWAIT), &m));
  printf("MSG_COPY index 3: %s; without IPC_NOWAIT: %s; with MSG_EXCEPT: %s; MSG_NOERROR short: %s\n",
         err(msgrcv(id, &m, sizeof m.text, 3, MSG_COPY | IPC_NOWAIT)), err(msgrcv(id, &m, sizeof m.text, 0, MSG_COPY)),
         err(msgrcv(id, &m, sizeof m.text, 0, MSG_COPY | IPC_NOWAIT | MSG_EXCEPT)),
         err(msgrcv(id, &m, 2, 0, MSG_COPY | IPC_NOWAIT | MSG_NOERROR)));
  printf("MSG_EXCEPT 1: %s\n", msg_got(msgrcv(id, &m, sizeof m.text, 1, MSG_EXCEPT), &m));
  msg_send(id, 5, "five", 0);
  msg_send(id, 4, "four", 0);
  printf("msgtyp -4: %s\n", msg_got(msgrcv(id, &m, sizeof m.text, -4, 0), &m));
  printf("a buffer of 2: %s; ", err(msgrcv(id, &m, 2, -4, 0)));
  printf("MSG_NOERROR: %s\n", msg_got(msgrcv(id, &m, 2, -4, MSG_NOERROR), &m));
  printf("type 7, IPC_NOWAIT: %s; ", err(msgrcv(id, &m, sizeof m.text, 7, IPC_NOWAIT)));
  printf("msgtyp 0: %s; ", msg_got(msgrcv(id, &m, sizeof m.text, 0, 0), &m));
  printf("LONG_MIN: %s\n", msg_got(msgrcv(id, &m, sizeof m.text, LONG_MIN, 0), &m));
  msq_show(id, "empty");
  /* across processes: a receiver waiting, handed the message */
  pid_t c = child(msg_receiver, sizeof m.text);
  msgrcv(id, &m, sizeof m.text, 9, 0);
  msg_send(id, 2, "for the child", 0);
  reap(c, "a child waiting for type 2 (10 + its size)");
  msgctl(id, IPC_STAT, &d);
  printf("lrpid is the child's: %s; ", d.msg_lrpid == c ? "yes" : "no");
  msq_show(id, "after");
  c = child(msg_receiver, 2);
  msgrcv(id, &m, sizeof m.text, 9, 0);
  msg_send(id, 2, "too long", 0);
  reap(c, "a child waiting with a buffer of 2 (7: E2BIG)");
  msq_show(id, "the message stays");
  msgrcv(id, &m, sizeof m.text, 0, 0);
  /* a full queue: a sender waits until there is room */
  struct {
    long type;
    char text[8192];
  } *big = calloc(1, sizeof *big);
  big->type = 1;
  printf("two of 8192 bytes: %s %s; ", err(msgsnd(id, big, 8192, IPC_NOWAIT)), err(msgsnd(id, big, 8192, IPC_NOWAIT)));
  printf("one more byte, IPC_NOWAIT: %s; 0 bytes: %s\n", err(msgsnd(id, big, 1, IPC_NOWAIT)),
         err(msgsnd(id, big, 0, IPC_NOWAIT)));
  msgrcv(id, &m, 0, 0, IPC_NOWAIT);
  c = child(msg_sender, 0);
  msleep(50);
  msq_show(id, "a child sends into the full queue");
  printf("the parent takes one: %zd bytes; ", msgrcv(id, big, 8192, 0, 0));
  reap(c, "the sender (0: sent)");
  msq_show(id, "then");
  while (msgrcv(id, big, 8192, 0, IPC_NOWAIT) >= 0)
    ;
  msgsnd(id, big, 8192, 0);
  msgsnd(id, big, 8192, 0);
  signal_until_end(msg_sender, "a sender interrupted by a SA_RESTART handler (4: EINTR)");
  while (msgrcv(id, big, 8192, 0, IPC_NOWAIT) >= 0)
    ;
  signal_until_end(msg_interrupted, "a receiver interrupted by a SA_RESTART handler (4: EINTR)");
  /* removed under a waiter */
  c = child(msg_receiver, sizeof m.text);
  msgrcv(id, &m, sizeof m.text, 9, 0);
  msleep(200); /* (until it waits) */
  printf("IPC_RMID with a waiter: %s; ", err(msgctl(id, IPC_RMID, NULL)));
  reap(c, "the waiter (43: EIDRM)");
  printf("msgsnd to the removed queue: %s; by key: %s\n", err(msg_send(id, 1, "x", 0)), err(msgget(key, 0)));
  /* IPC_SET, IPC_INFO, MSG_STAT */
  id = msgget(IPC_PRIVATE, 0600);
  msgctl(id, IPC_STAT, &d);
  d.msg_qbytes = 2;
  d.msg_perm.mode = 0640;
  printf("IPC_SET qbytes 2: %s; ", err(msgctl(id, IPC_SET, &d)));
  printf("3 messages of 0 bytes: %s ", err(msg_send(id, 1, "", IPC_NOWAIT)));
  printf("%s ", err(msg_send(id, 1, "", IPC_NOWAIT)));
  printf("%s\n", err(msg_send(id, 1, "", IPC_NOWAIT)));
  msq_show(id, "qbytes 2");
  msgctl(id, IPC_STAT, &d);
  printf("mode %o\n", d.msg_perm.mode);
  struct msginfo in;
  int mx = msgctl(0, IPC_INFO, (struct msqid_ds *)&in);
  printf("IPC_INFO: %s, msgmax %d msgmnb %d msgmni %d msgssz %d msgseg %d msgpool %d msgmap %d msgtql %d\n",
         mx >= 0 ? "ok" : err(-1), in.msgmax, in.msgmnb, in.msgmni, in.msgssz, in.msgseg, in.msgpool, in.msgmap,
         in.msgtql);
  int found = 0;
  for (int i = 0; i <= mx; i++)
    found |= msgctl(i, MSG_STAT, &d) == id;
  printf("MSG_STAT finds it: %s; MSG_STAT past the highest index: %s; ", found ? "yes" : "no",
         err(msgctl(mx + 1, MSG_STAT, &d)));
  printf("IPC_RMID: %s\n", err(msgctl(id, IPC_RMID, NULL)));
  free(big);
  return 0;
}

/* The sandbox's init, pid 1, as a pid namespace's: natively this runs as
 * the namespace's first process (`unshare --pid --fork --mount-proc procs
 * init`: pid 1), which becomes an init that has no handlers (setsid: group
 * and session 1, comm "init", reaping every child until none is left) and
 * runs the cases in its first child, pid 2, as a sandbox's first process
 * is. What the child sees of pid 1: /proc/1 (status, stat, comm, cmdline
 * readable: its text is the program's natively, empty in a sandbox, not
 * compared), the listing of /proc, kill (0, signals it has no handler for,
 * SIGKILL and SIGSTOP: dropped), kill(-1) not reaching it, getpgid/getsid,
 * setpgid, waits, pidfds, sched_getscheduler, an orphan re-parented to it
 * and reaped. */
static void init_status(const char *when)
{
  char buf[8192];
  /* natively init may not be in its wait yet (R): up to 2 s for it to sleep */
  for (int i = 0; i < 200; i++) {
    char *e = slurp("/proc/1/stat", buf, sizeof buf) > 0 ? strrchr(buf, ')') : NULL;
    if (!e || e[1] != ' ' || e[2] != 'R')
      break;
    msleep(10);
  }
  printf("%s: /proc/1/status:", when);
  if (slurp("/proc/1/status", buf, sizeof buf) <= 0) {
    printf(" %s\n", strerrorname_np(errno));
    return;
  }
  static const char *const keys[] = {"Name:", "State:", "Tgid:", "Pid:", "PPid:", "Uid:", "NSpgid:", "NSsid:"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    char *l = buf;
    while (l && strncmp(l, keys[k], strlen(keys[k])))
      l = (l = strchr(l, '\n')) ? l + 1 : NULL;
    printf(" [%.*s]", l ? (int)strcspn(l, "\n") : 4, l ? l : "none");
  }
  printf("\n");
}

static int mode_init(void)
{
  if (getpid() == 1) { /* natively: the namespace's init */
    setsid();
    prctl(PR_SET_NAME, "init");
    fflush(stdout);
    pid_t c = fork();
    if (c < 0)
      return 1;
    if (c > 0) {
      int st, rc = 1;
      pid_t r;
      while ((r = waitpid(-1, &st, 0)) > 0 || errno == EINTR)
        if (r == c)
          rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return rc;
    }
  }
  printf("pid %s, parent %s\n", getpid() == 2 ? "2" : "not 2", getppid() == 1 ? "1" : "not 1");
  printf("kill(1, 0): %s; kill(-1, 0) with no other process: %s\n", err(kill(1, 0)), err(kill(-1, 0)));
  printf("getpgid(1) %d, getsid(1) %d; getpgid(0) %d, getsid(0) %d\n", (int)getpgid(1), (int)getsid(1),
         (int)getpgid(0), (int)getsid(0));
  init_status("at first");
  char buf[8192];
  long n = slurp("/proc/1/stat", buf, sizeof buf);
  char *e = n > 0 ? strrchr(buf, ')') : NULL;
  int f = 0;
  for (char *q = e; q && *q && f < 5; q++)
    if (*q == ' ' && ++f == 5)
      *q = 0;
  printf("/proc/1/stat: %s\n", e ? buf : "unreadable");
  printf("/proc/1/comm: %s", slurp("/proc/1/comm", buf, sizeof buf) > 0 ? buf : "unreadable\n");
  printf("/proc/1/cmdline: %s\n", slurp("/proc/1/cmdline", buf, sizeof buf) >= 0 ? "readable" : strerrorname_np(errno));
  struct stat sst = {0};
  const char *sr = err(stat("/proc/1", &sst));
  printf("stat(/proc/1): %s, a directory: %s\n", sr, S_ISDIR(sst.st_mode) ? "yes" : "no");
  DIR *d = opendir("/proc");
  printf("the numbers in /proc:");
  for (struct dirent *de; d && (de = readdir(d));)
    if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
      printf(" %s", de->d_name);
  printf("\n");
  if (d)
    closedir(d);

  /* signals: dropped, init goes on sleeping */
  static const int sigs[] = {SIGUSR1, SIGTERM, SIGHUP, SIGINT, SIGCHLD, SIGKILL, SIGSTOP, SIGCONT};
  printf("kill(1, sig):");
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    printf(" %s %s", sigabbrev_np(sigs[i]), err(kill(1, sigs[i])));
  printf("; kill(1, 65): %s\n", err(kill(1, 65)));
  msleep(50);
  printf("after them: kill(1, 0): %s\n", err(kill(1, 0)));
  init_status("after them");
  signal(SIGUSR1, SIG_IGN);
  printf("kill(0, SIGUSR1) to group 1 (init's): %s\n", err(kill(0, SIGUSR1)));

  /* waits, groups */
  int st;
  siginfo_t si;
  printf("waitpid(1, WNOHANG): %s; waitid(P_PID, 1): %s\n", err(waitpid(1, &st, WNOHANG)),
         err(waitid(P_PID, 1, &si, WEXITED | WNOHANG)));
  printf("setpgid(1, 1): %s; setpgid(1, 0): %s\n", err(setpgid(1, 1)), err(setpgid(1, 0)));
  const char *own = err(setpgid(0, 0));
  int own_pgid = (int)getpgid(0);
  const char *back = err(setpgid(0, 1));
  printf("setpgid(0, 0): %s (getpgid(0) %s), then setpgid(0, 1) back into init's group: %s, getpgid(0) %d\n", own,
         own_pgid == getpid() ? "its pid" : "not its pid", back, (int)getpgid(0));
  printf("sched_getscheduler(1): %d\n", sched_getscheduler(1));

  /* a pidfd of init */
  int pfd = pidfd_open_(1, 0);
  printf("pidfd_open(1): %s", err(pfd));
  if (pfd >= 0) {
    struct pollfd pl = {pfd, POLLIN, 0};
    int pr = poll(&pl, 1, 0);
    const char *sent = err(pidfd_signal(pfd, SIGTERM, NULL, 0));
    printf(", poll: %d, pidfd_send_signal SIGTERM: %s, waitid(P_PIDFD): %s", pr, sent,
           err(waitid(P_PIDFD, (id_t)pfd, &si, WEXITED | WNOHANG)));
    close(pfd);
  }
  int dfd = open("/proc/1", O_RDONLY | O_DIRECTORY);
  printf("; pidfd_send_signal(/proc/1, SIGTERM): %s\n", err(dfd < 0 ? dfd : pidfd_signal(dfd, SIGTERM, NULL, 0)));
  if (dfd >= 0)
    close(dfd);

  /* an orphan: its parent ends, it goes to init, which reaps it */
  int pp[2];
  if (pipe(pp) < 0)
    return 1;
  fflush(stdout);
  pid_t a = fork();
  if (a == 0) {
    pid_t g = fork();
    if (g == 0) {
      close(pp[0]);
      for (int i = 0; i < 500 && getppid() != 1; i++)
        msleep(10);
      char line[64];
      int k = snprintf(line, sizeof line, "%d", getppid() == 1 ? 1 : 0);
      write(pp[1], line, (size_t)k);
      _exit(0);
    }
    write(pp[1], &g, sizeof g);
    _exit(0);
  }
  close(pp[1]);
  pid_t g = 0;
  read(pp[0], &g, sizeof g);
  reap(a, "the orphan's parent");
  char got[8] = "";
  read(pp[0], got, sizeof got - 1);
  close(pp[0]);
  int i = 0;
  while (i++ < 1000 && kill(g, 0) == 0)
    msleep(10);
  printf("the orphan's parent was 1: %s; reaped by init: %s\n", got[0] == '1' ? "yes" : "no",
         kill(g, 0) < 0 && errno == ESRCH ? "yes" : "no");
  printf("at the end: kill(1, 0): %s\n", err(kill(1, 0)));
  return 0;
}

int main(int argc, char **argv)
{
  self = argv[0];
  setvbuf(stdout, NULL, _IOLBF, 0); /* a run cut short still shows how far it got */
  const char *m = argc > 1 ? argv[1] : "";
  int rc;
  if (!strcmp(m, "fork"))
    rc = mode_fork();
  else if (!strcmp(m, "death"))
    rc = mode_death();
  else if (!strcmp(m, "wait"))
    rc = mode_wait();
  else if (!strcmp(m, "pgrp"))
    rc = mode_pgrp();
  else if (!strcmp(m, "offsets"))
    rc = mode_offsets();
  else if (!strcmp(m, "pipes"))
    rc = mode_pipes();
  else if (!strcmp(m, "fifo"))
    rc = mode_fifo();
  else if (!strcmp(m, "cloexec"))
    rc = mode_cloexec();
  else if (!strcmp(m, "fdcheck"))
    rc = mode_fdcheck(argc, argv);
  else if (!strcmp(m, "dup2"))
    rc = mode_dup2();
  else if (!strcmp(m, "spawn"))
    rc = mode_spawn();
  else if (!strcmp(m, "spawnloop"))
    rc = mode_spawnloop(argc > 2 ? atoi(argv[2]) : 1000);
  else if (!strcmp(m, "locks"))
    rc = mode_locks();
  else if (!strcmp(m, "rusage"))
    rc = mode_rusage();
  else if (!strcmp(m, "zombie"))
    rc = mode_zombie();
  else if (!strcmp(m, "timerfd"))
    rc = mode_timerfd();
  else if (!strcmp(m, "shm"))
    rc = mode_shm();
  else if (!strcmp(m, "pidfd"))
    rc = mode_pidfd();
  else if (!strcmp(m, "sysv"))
    rc = mode_sysv();
  else if (!strcmp(m, "msg"))
    rc = mode_msg();
  else if (!strcmp(m, "init"))
    rc = mode_init();
  else if (!strcmp(m, "sysvnattch") && argc > 2) {
    printf("  the exec'd child sees %ld attachments\n", sysv_nattch(atoi(argv[2])));
    return 0;
  }
  else if (!strcmp(m, "bomb") && argc > 2)
    rc = mode_bomb(atoi(argv[2]));
  else if (!strcmp(m, "hello")) {
    printf("hello from the exec'd child\n");
    fflush(stdout);
    fprintf(stderr, "and from its stderr\n");
    return 0;
  } else if (!strcmp(m, "gate")) {
    write(1, "g", 1);
    char c;
    read(0, &c, 1);
    return 0;
  } else if (!strcmp(m, "true"))
    return 0;
  else {
    fprintf(stderr, "usage: procs fork|death|wait|pgrp|offsets|pipes|fifo|cloexec|dup2|spawn|spawnloop [N]|locks|timerfd|shm|pidfd|sysv|msg|rusage|init|bomb N\n");
    return 2;
  }
  fflush(stdout);
  return rc;
}
