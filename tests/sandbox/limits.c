/* Resource limits and the alternate signal stack, run natively and in a
 * sandbox by tests/sandbox-limits.sh, which compares the output (it must
 * be the same). Prints what Linux does; every line is deterministic.
 *   limits rlimit     setrlimit/getrlimit/prlimit64 and RLIMIT_NOFILE enforcement
 *   limits altstack   sigaltstack: SA_ONSTACK delivery, SS_ONSTACK, EPERM, ENOMEM,
 *                     SS_DISABLE, SS_AUTODISARM, a stack overflow caught on it
 *   limits keep       (template) set limits and a stack, then read stdin and print them */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1u << 31)
#endif

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }
#define TRY(what, call) printf("%s = %s\n", what, (call) < 0 ? en(errno) : "0")

static void show(const char *name, int res)
{
  struct rlimit rl;
  if (getrlimit(res, &rl) < 0)
    printf("getrlimit %s: %s\n", name, en(errno));
  else
    printf("getrlimit %s: %lld %lld\n", name, (long long)rl.rlim_cur, (long long)rl.rlim_max);
}

static int rlimit_test(void)
{
  struct rlimit rl = {16, 64}, old;
  TRY("setrlimit NOFILE 16 64", setrlimit(RLIMIT_NOFILE, &rl));
  show("NOFILE", RLIMIT_NOFILE);
  /* open until the limit: fds 0-2 are open, so 3..15 */
  int last = -1, fd;
  while ((fd = open("/dev/null", O_RDONLY)) >= 0)
    last = fd;
  printf("opened up to fd %d, then %s\n", last, en(errno));
  TRY("dup2(0, 20) above the limit", dup2(0, 20));
  TRY("fcntl(0, F_DUPFD, 20) above the limit", fcntl(0, F_DUPFD, 20));
  int p[2];
  TRY("pipe at the limit", pipe(p));
  close(last);
  fd = dup(0);
  printf("dup after a close: fd %d\n", fd);
  rl = (struct rlimit){32, 16};
  TRY("setrlimit cur > max", setrlimit(RLIMIT_NOFILE, &rl));
  rl = (struct rlimit){1 << 30, 1 << 30};
  TRY("setrlimit NOFILE above nr_open", setrlimit(RLIMIT_NOFILE, &rl));
  TRY("setrlimit bad resource", setrlimit(RLIM_NLIMITS + 3, &rl));
  TRY("getrlimit bad resource", getrlimit(RLIM_NLIMITS + 3, &rl));
  TRY("setrlimit NULL", (int)syscall(SYS_setrlimit, RLIMIT_CORE, NULL));
  /* CORE: lower it, then set it again through prlimit64 with the old value
   * asked for (no hard limit is raised: whether that is allowed depends on
   * CAP_SYS_RESOURCE, which a native run as root may lack in a container) */
  rl = (struct rlimit){0, 8192};
  TRY("setrlimit CORE 0 8192", setrlimit(RLIMIT_CORE, &rl));
  show("CORE", RLIMIT_CORE);
  struct rlimit nl = {4096, 4096};
  TRY("prlimit64 CORE 4096 (old wanted)", prlimit(0, RLIMIT_CORE, &nl, &old));
  printf("prlimit old: %lld %lld\n", (long long)old.rlim_cur, (long long)old.rlim_max);
  show("CORE", RLIMIT_CORE);
  TRY("prlimit64 of another pid", prlimit(getpid() + 12345, RLIMIT_CORE, NULL, &old));
  rl = (struct rlimit){RLIM_INFINITY, RLIM_INFINITY};
  TRY("setrlimit FSIZE infinity", setrlimit(RLIMIT_FSIZE, &rl));
  show("FSIZE", RLIMIT_FSIZE);
  return 0;
}

static char alt[65536] __attribute__((aligned(16)));
static volatile uintptr_t handler_sp;
static volatile int handler_ss_flags, handler_uc_flags, ss_change;

static void on_usr1(int sig, siginfo_t *si, void *ucv)
{
  (void)sig;
  (void)si;
  ucontext_t *uc = ucv;
  char here;
  handler_sp = (uintptr_t)&here;
  stack_t cur;
  sigaltstack(NULL, &cur);
  handler_ss_flags = cur.ss_flags;
  handler_uc_flags = uc->uc_stack.ss_flags;
  /* changing the stack while on it */
  stack_t ns = {.ss_sp = alt, .ss_size = sizeof alt};
  ss_change = sigaltstack(&ns, NULL) < 0 ? errno : 0;
}

static int on_alt(uintptr_t sp) { return sp >= (uintptr_t)alt && sp < (uintptr_t)alt + sizeof alt; }

static void on_segv(int sig)
{
  char here;
  /* a stack overflow: this handler can only run on the alternate stack */
  printf("SIGSEGV handler on the alternate stack: %d\n", on_alt((uintptr_t)&here));
  fflush(stdout);
  _exit(0);
}

static volatile int stop;
static int recurse(int n)
{
  if (stop)
    return 0;
  volatile char buf[4096];
  buf[0] = (char)n;
  return recurse(n + 1) + buf[0];
}

static int altstack_test(void)
{
  stack_t ss, old;
  TRY("sigaltstack(NULL, &old)", sigaltstack(NULL, &old));
  printf("initial: flags %d size %zu\n", old.ss_flags, old.ss_size);
  ss = (stack_t){.ss_sp = alt, .ss_size = 1024};
  TRY("sigaltstack size 1024", sigaltstack(&ss, NULL));
  ss = (stack_t){.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 5};
  TRY("sigaltstack bad flags", sigaltstack(&ss, NULL));
  ss = (stack_t){.ss_sp = alt, .ss_size = sizeof alt};
  TRY("sigaltstack 64K", sigaltstack(&ss, &old));
  printf("old: flags %d size %zu\n", old.ss_flags, old.ss_size);
  sigaltstack(NULL, &old);
  printf("now: flags %d size %zu at alt %d\n", old.ss_flags, old.ss_size, old.ss_sp == alt);

  struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_ONSTACK};
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  printf("SA_ONSTACK handler on the alternate stack: %d, sigaltstack says %d, uc_stack %d, change: %s\n",
         on_alt(handler_sp), handler_ss_flags, handler_uc_flags, en(ss_change));
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  printf("without SA_ONSTACK on the alternate stack: %d, sigaltstack says %d\n", on_alt(handler_sp),
         handler_ss_flags);

  /* SS_AUTODISARM: the handler runs with no alternate stack, it is back after */
  ss = (stack_t){.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = SS_AUTODISARM};
  TRY("sigaltstack SS_AUTODISARM", sigaltstack(&ss, NULL));
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  sigaltstack(NULL, &old);
  printf("autodisarm: on it %d, in the handler %d (uc_stack %#x), change: %s, after: flags %#x size %zu\n",
         on_alt(handler_sp), handler_ss_flags, (unsigned)handler_uc_flags, en(ss_change), (unsigned)old.ss_flags,
         old.ss_size);

  ss = (stack_t){.ss_flags = SS_DISABLE};
  TRY("sigaltstack SS_DISABLE", sigaltstack(&ss, NULL));
  sigaltstack(NULL, &old);
  printf("disabled: flags %d size %zu\n", old.ss_flags, old.ss_size);

  /* a stack overflow caught on the alternate stack */
  ss = (stack_t){.ss_sp = alt, .ss_size = sizeof alt};
  sigaltstack(&ss, NULL);
  struct sigaction sv = {.sa_handler = on_segv, .sa_flags = SA_ONSTACK};
  sigaction(SIGSEGV, &sv, NULL);
  fflush(stdout);
  return recurse(0);
}

static int keep_test(void)
{
  struct rlimit rl = {20, 40};
  setrlimit(RLIMIT_NOFILE, &rl);
  stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
  sigaltstack(&ss, NULL);
  char buf[64];
  if (read(0, buf, sizeof buf) < 0) /* the template's ready point */
    return 1;
  show("NOFILE", RLIMIT_NOFILE);
  stack_t old;
  sigaltstack(NULL, &old);
  printf("altstack: flags %d size %zu at alt %d\n", old.ss_flags, old.ss_size, old.ss_sp == alt);
  struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_ONSTACK};
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  printf("handler on the alternate stack: %d\n", on_alt(handler_sp));
  return 0;
}

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && !strcmp(argv[1], "rlimit"))
    return rlimit_test();
  if (argc > 1 && !strcmp(argv[1], "altstack"))
    return altstack_test();
  if (argc > 1 && !strcmp(argv[1], "keep"))
    return keep_test();
  fprintf(stderr, "usage: limits rlimit|altstack|keep\n");
  return 2;
}
