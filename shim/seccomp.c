/* The seccomp-bpf filter of the threads that serve guests (docs/security.md).
 *
 * Every thread that runs a sandbox's vCPU (cf_sandbox_run_until's caller:
 * `cowfork run`'s main thread, `cowfork fork`'s workers, the daemon's
 * workers) installs it once, before it first enters guest code
 * (seccomp_enter). A filter cannot be taken off a thread, so it allows what
 * such a thread does for the rest of its life, not only while a guest runs:
 * forking and reusing VMs, parking, saving templates into the store,
 * connecting to a uffd page server, the daemon's state file. Whatever else
 * the thread asks (a compromised shim's execve, ptrace, socket(AF_INET),
 * mount, a fork...) raises SIGSYS; on_sigsys writes the call's number and
 * name to stderr and the process dies of SIGSYS. Threads a filtered thread
 * creates inherit it (the uffd server's workers in the daemon).
 *
 * The program is built once per process with libseccomp (binary-tree
 * optimisation where libseccomp has it), exported as classic BPF into
 * memory, and loaded per thread with seccomp(2) directly: a thread's install
 * is two system calls, no libseccomp work.
 *
 * Arguments are checked where it is cheap and the call is dangerous:
 * ioctl only with KVM's and userfaultfd's request types, PAGEMAP_SCAN,
 * FICLONE(RANGE) and the three terminal requests the shim forwards
 * (shim/fs.c do_ioctl) plus TCGETS (isatty), FIONREAD, TIOCOUTQ and
 * SIOCATMARK (a socket's SIOCINQ, SIOCOUTQ and urgent mark: net.c
 * net_ioctl); mmap, mprotect never with
 * PROT_EXEC (the shim never maps guest memory executable on the host:
 * mm.c host_prot); socket and socketpair only AF_UNIX (socket also AF_INET
 * and AF_INET6 when a --net policy names the host's network:
 * cf_seccomp_allow_inet, before the first install); clone only for threads (clone3,
 * whose flags are out of reach in memory, gets ENOSYS: glibc then uses
 * clone); kill and tgkill only this process; prctl only PR_SET_NAME and
 * PR_GET_NAME... (see allow_rules). openat2's flags are in memory: not
 * checked.
 *
 * Whether threads install it is the program's choice (cf_seccomp_set): the
 * cowfork command turns it on at start (cli/main.c) unless COWFORK_SECCOMP=0
 * (in sanitizer builds only with COWFORK_SECCOMP=1: LeakSanitizer's check
 * at exit stops the world from a cloned tracer the filter does not let
 * work, and the process then spins at exit),
 * and --no-seccomp turns it off again (debugging); a program that links
 * libcowfork and also forks or execs on the threads that run its sandboxes
 * (bench/sandbox.c's native rows) leaves it off there. COWFORK_SECCOMP_TEST=1 makes the first system call a
 * filtered thread serves also call personality(0xffffffff), which the
 * filter forbids: the test (tests/sandbox-seccomp.sh) sees the process die
 * of SIGSYS with the report. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN _IOWR('f', 16, char[96]) /* struct pm_scan_arg: 96 bytes */
#endif

static int enabled; /* cf_seccomp_set: the cowfork command turns it on */
static int inet;    /* cf_seccomp_allow_inet: a --net policy naming the host's network */
static __thread bool installed;
__thread bool seccomp_test_armed;

static pthread_once_t build_once = PTHREAD_ONCE_INIT;
static struct sock_filter *prog;
static unsigned short prog_len;
static char build_error[256];
static bool test_hook;

#define NNAMES 512
static const char *names[NNAMES]; /* for on_sigsys: resolved before any filter runs */

void cf_seccomp_set(bool on) { __atomic_store_n(&enabled, on ? 1 : 0, __ATOMIC_RELAXED); }

bool cf_seccomp_enabled(void) { return __atomic_load_n(&enabled, __ATOMIC_RELAXED); }

void cf_seccomp_allow_inet(bool on) { __atomic_store_n(&inet, on ? 1 : 0, __ATOMIC_RELAXED); }

/* Async-signal-safe: write(2) and the names resolved in advance only. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
  (void)uc;
  char buf[320], num[24];
  int nr = si ? si->si_syscall : -1;
  const char *name = nr >= 0 && nr < NNAMES && names[nr] ? names[nr] : "?";
  int n = 0;
  unsigned long v = nr < 0 ? 0 : (unsigned long)nr;
  do
    num[n++] = (char)('0' + v % 10);
  while ((v /= 10));
  size_t l = 0;
#define PUT(s) for (const char *p_ = (s); *p_ && l < sizeof buf - 1; p_++) buf[l++] = *p_
  PUT("cowfork: seccomp: forbidden host system call ");
  while (n && l < sizeof buf - 1)
    buf[l++] = num[--n];
  PUT(" (");
  PUT(name);
  PUT(") on a thread that serves guests: the process dies of SIGSYS. A bug in cowfork's allowlist "
      "(shim/seccomp.c) or an attack; --no-seccomp or COWFORK_SECCOMP=0 turns the filter off.\n");
#undef PUT
  ssize_t w = write(2, buf, l);
  (void)w;
  /* Die of SIGSYS: no core dump (the daemon's would hold every sandbox's
   * memory and take minutes to write), then a call the filter answers with
   * SECCOMP_RET_KILL_PROCESS: the kernel ends the whole process at once, as
   * killed by SIGSYS, without another signal delivery. */
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  syscall(SYS_kexec_file_load, -1L, -1L, 0L, 0L, 0L);
  struct sigaction sa = {.sa_handler = SIG_DFL}; /* the filter is off: die anyway */
  sigaction(sig, &sa, NULL);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
  _exit(128 + sig); /* not reached */
}

#define ALLOW(call, ...) seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(call), __VA_ARGS__)

static int allow_rules(scmp_filter_ctx ctx)
{
  /* Calls allowed whatever their arguments. */
  static const int any[] = {
      /* memory (mmap, mprotect: below) */
      SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap), SCMP_SYS(brk),
      /* i/o on fds the process holds */
      SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(readv),
      SCMP_SYS(writev), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(preadv2), SCMP_SYS(pwritev2),
      SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(dup), SCMP_SYS(dup3), SCMP_SYS(fcntl), SCMP_SYS(fstat),
      SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs), SCMP_SYS(getdents64), SCMP_SYS(ftruncate),
      SCMP_SYS(fallocate), SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(flock), SCMP_SYS(copy_file_range),
      SCMP_SYS(fadvise64), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(memfd_create),
      /* paths: openat2 resolves inside a sandbox's root (shim/fs.c); openat
       * the store, /dev/kvm, /dev/userfaultfd, /proc/self/{pagemap,maps,mem} */
      SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(open), SCMP_SYS(readlinkat), SCMP_SYS(readlink),
      SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(access),
      /* a root file's extended attributes, read through /proc/self/fd (shim/ovl.c ovl_lower_xattr) */
      SCMP_SYS(getxattr), SCMP_SYS(listxattr),
      /* the store's files (a template save, gc, the daemon's state file) */
      SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(rmdir), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
      SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(link), SCMP_SYS(linkat),
      SCMP_SYS(fchmod), SCMP_SYS(fchmodat), SCMP_SYS(chmod), SCMP_SYS(umask), /* the store's modes */
      /* the uffd backend: a client's Unix socket to the page server; a page
       * server a filtered thread starts (its workers inherit the filter) */
      SCMP_SYS(userfaultfd), SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept4), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
      SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(shutdown), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt),
      SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
      SCMP_SYS(epoll_pwait), SCMP_SYS(eventfd2), SCMP_SYS(pipe2), SCMP_SYS(pidfd_open),
      SCMP_SYS(pidfd_send_signal),
      /* time, timers (limits, interval timers, the kick) */
      SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
      SCMP_SYS(gettimeofday), SCMP_SYS(timer_create), SCMP_SYS(timer_settime), SCMP_SYS(timer_gettime),
      SCMP_SYS(timer_delete), SCMP_SYS(timer_getoverrun),
      /* threads, signals, the end */
      SCMP_SYS(futex), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
      SCMP_SYS(sigaltstack), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(set_robust_list),
      SCMP_SYS(rseq), SCMP_SYS(restart_syscall), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(getrandom),
      /* identity (libuuid reads getpid, getuid, getppid) */
      SCMP_SYS(getpid), SCMP_SYS(getppid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid),
      SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getgroups), /* a new sandbox starts with the host's groups */
      SCMP_SYS(getrusage), SCMP_SYS(uname), SCMP_SYS(sysinfo),
  };
  for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, any[i], 0) < 0)
      return -1;

  /* Memory never executable on the host. */
  if (ALLOW(mmap, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0 ||
      ALLOW(mprotect, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0)
    return -1;
  /* ioctl: by request type (KVM, userfaultfd), else the exact request. */
  if (ALLOW(ioctl, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, KVMIO << 8)) < 0 ||
      ALLOW(ioctl, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, UFFDIO << 8)) < 0)
    return -1;
  static const unsigned long reqs[] = {TCGETS, TIOCGWINSZ, TIOCGPGRP, FIONREAD, TIOCOUTQ, SIOCATMARK, FICLONE, FICLONERANGE,
                                       PAGEMAP_SCAN, 0xc0686611ul /* PROCMAP_QUERY: mm.c fork */};
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++)
    if (ALLOW(ioctl, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffff, reqs[i])) < 0)
      return -1;
  /* Threads only (pthread_create), never a new process. */
  if (ALLOW(clone, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) < 0 ||
      seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
    return -1;
  /* Signals to this process only (abort, pthread_kill, on_sigsys). */
  pid_t me = getpid();
  if (ALLOW(tgkill, 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)me)) < 0 ||
      ALLOW(kill, 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)me)) < 0)
    return -1;
  /* Unix sockets only (the uffd page server's; a guest's socketpair, fs.c). */
  if (ALLOW(socket, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) < 0 || ALLOW(socketpair, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) < 0)
    return -1;
  /* IP sockets only when a --net policy names the host's network
   * (cf_seccomp_allow_inet): shim/net.c connects them where it allows. */
  if (__atomic_load_n(&inet, __ATOMIC_RELAXED) &&
      (ALLOW(socket, 1, SCMP_A0(SCMP_CMP_EQ, AF_INET)) < 0 || ALLOW(socket, 1, SCMP_A0(SCMP_CMP_EQ, AF_INET6)) < 0))
    return -1;
  /* This process's own limits (glibc's getrlimit), CPU affinity (the uffd
   * server's workers), a thread's name. */
  if (ALLOW(prlimit64, 1, SCMP_A0(SCMP_CMP_EQ, 0)) < 0 || ALLOW(getrlimit, 0) < 0 ||
      ALLOW(sched_setaffinity, 0) < 0) /* glibc pins a new thread by its tid */
    return -1;
  /* on_sigsys's way out. */
  if (seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(kexec_file_load), 0) < 0)
    return -1;
  if (ALLOW(prctl, 2, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE), SCMP_A1(SCMP_CMP_EQ, 0)) < 0 ||
      ALLOW(prctl, 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)) < 0 ||
      ALLOW(prctl, 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME)) < 0)
    return -1;
  return 0;
}

static void build(void)
{
  for (int i = 0; i < NNAMES; i++) {
    char *n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
    names[i] = n; /* kept for the process's life */
  }
  const char *t = getenv("COWFORK_SECCOMP_TEST");
  test_hook = t && !strcmp(t, "1");
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx) {
    snprintf(build_error, sizeof build_error, "seccomp_init failed");
    return;
  }
  int rc;
  /* The binary tree of syscall numbers (libseccomp >= 2.5): a lookup in
   * O(log n) comparisons instead of a linear walk. */
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if ((rc = allow_rules(ctx)) < 0) {
    snprintf(build_error, sizeof build_error, "seccomp_rule_add: %s", strerror(-rc));
    seccomp_release(ctx);
    return;
  }
  /* Export the BPF program once; each thread loads it with seccomp(2). */
  int fd = memfd_create("cowfork-seccomp", MFD_CLOEXEC);
  if (fd < 0 || (rc = seccomp_export_bpf(ctx, fd)) < 0) {
    snprintf(build_error, sizeof build_error, "seccomp_export_bpf: %s", strerror(fd < 0 ? errno : -rc));
    if (fd >= 0)
      close(fd);
    seccomp_release(ctx);
    return;
  }
  seccomp_release(ctx);
  off_t len = lseek(fd, 0, SEEK_END);
  if (len <= 0 || len % (off_t)sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS ||
      !(prog = malloc((size_t)len)) || pread(fd, prog, (size_t)len, 0) != len) {
    snprintf(build_error, sizeof build_error, "reading the exported BPF program failed");
    free(prog);
    prog = NULL;
    close(fd);
    return;
  }
  close(fd);
  prog_len = (unsigned short)(len / sizeof(struct sock_filter));
  struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSYS, &sa, NULL);
}

int seccomp_enter(void)
{
  if (installed || !cf_seccomp_enabled())
    return 0;
  pthread_once(&build_once, build);
  if (!prog)
    return cf_fail(ENOSYS, "the seccomp filter of this thread: %s (--no-seccomp or COWFORK_SECCOMP=0 runs without it)",
                   build_error);
  struct sock_fprog fp = {.len = prog_len, .filter = prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
    return cf_fail(errno, "installing the seccomp filter: %m (--no-seccomp or COWFORK_SECCOMP=0 runs without it)");
  installed = true;
  seccomp_test_armed = test_hook;
  return 0;
}

int cf_seccomp_enter(void) { return seccomp_enter(); }

bool seccomp_installed(void) { return installed; }

struct uffd_new {
  cf_uffd_end_fn end;
  void *ctx;
  struct cf_uffd_server *srv;
  int err;
  char msg[512];
};

static void *uffd_new_thread(void *arg)
{
  struct uffd_new *u = arg;
  if (seccomp_enter() < 0 || !(u->srv = cf_uffd_server_new(u->end, u->ctx))) {
    u->err = errno ? errno : EIO;
    snprintf(u->msg, sizeof u->msg, "%s", cf_error());
  }
  return NULL;
}

struct cf_uffd_server *cf_seccomp_uffd_server_new(cf_uffd_end_fn end, void *ctx)
{
  if (!cf_seccomp_enabled())
    return cf_uffd_server_new(end, ctx);
  struct uffd_new u = {.end = end, .ctx = ctx};
  pthread_t th;
  int e = pthread_create(&th, NULL, uffd_new_thread, &u);
  if (e)
    return cf_fail(e, "pthread_create: %s", strerror(e)), NULL;
  pthread_join(th, NULL);
  if (!u.srv)
    return cf_fail(u.err, "%s", u.msg), NULL;
  return u.srv;
}

unsigned seccomp_prog_len(void)
{
  pthread_once(&build_once, build);
  return prog_len;
}

void seccomp_test_fire(void)
{
  seccomp_test_armed = false;
  syscall(SYS_personality, 0xffffffffUL); /* a query, harmless where allowed */
}
