#define _GNU_SOURCE
/* Hostile programs for tests/sandbox-hostile.sh: argv[1] picks the misdeed.
 * Built static by the test. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int depth(int n)
{
  volatile char pad[4096];
  pad[0] = (char)n;
  return depth(n + 1) + pad[0];
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
  (void)uc;
  char msg[80];
  int n = snprintf(msg, sizeof msg, "caught signal %d at %p\n", sig, si->si_addr);
  write(1, msg, (size_t)n);
  _exit(42);
}

int main(int argc, char **argv)
{
  const char *what = argc > 1 ? argv[1] : "";
  if (!strcmp(what, "wild-syscalls")) {
    /* Every bad pointer must come back as EFAULT, never crash anything. */
    long r1 = syscall(SYS_write, 1, (void *)0xdeadbeef000ul, 10);
    int e1 = errno;
    long r2 = syscall(SYS_read, 0, (void *)0x1000, 10);
    int e2 = errno;
    long r3 = syscall(SYS_open, (void *)0x7ffffffff000ul, 0);
    int e3 = errno;
    long r4 = syscall(SYS_write, 1, (void *)0x10000, 1ul << 40);
    int e4 = errno;
    long r5 = syscall(SYS_read, 0, (void *)main, 16); /* read-only text: EFAULT (Linux: 0 at EOF) */
    int e5 = errno;
    long r6 = syscall(SYS_rt_sigaction, SIGSEGV, (void *)8, NULL, 8);
    int e6 = errno;
    long r7 = syscall(999);
    int e7 = errno;
    printf("%ld %d %ld %d %ld %d %ld %d %ld %d %ld %d %ld %d\n", r1, e1, r2, e2, r3, e3, r4, e4, r5, e5, r6,
           e6, r7, e7);
    return 0;
  }
  if (!strcmp(what, "null"))
    return *(volatile int *)0;
  if (!strcmp(what, "wild-jump"))
    ((void (*)(void))0x12345678)();
  if (!strcmp(what, "garbage")) {
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 0xff, 4096); /* ff ff: an invalid encoding */
    ((void (*)(void))p)();
  }
  if (!strcmp(what, "stack"))
    return depth(0);
  if (!strcmp(what, "div0")) {
    volatile int z = 0;
    return 10 / z;
  }
  if (!strcmp(what, "rodata")) {
    char *s = (char *)"constant";
    s[0] = 'X';
    return s[0];
  }
  if (!strcmp(what, "loop"))
    for (;;)
      ;
  /* The /tmp data region of a 256 MiB sandbox (shim.h: TMP_BASE, TMP_SIZE):
   * guest memory the shim keeps for itself (tests/sandbox-fs.sh). */
  if (!strcmp(what, "tmp-region")) {
    char *tb = (char *)0xb700000ul;
    size_t ts = 64ul << 20;
    int u = munmap(tb, ts);
    void *m = mmap(tb, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    int me = m == MAP_FAILED ? errno : 0;
    int p = mprotect(tb, 4096, PROT_READ | PROT_WRITE);
    int pe = p < 0 ? errno : 0;
    int fd = open("/tmp/x", O_CREAT | O_RDWR | O_TRUNC, 0644);
    char buf[8] = {0};
    int okio = fd >= 0 && write(fd, "data", 4) == 4 && pread(fd, buf, 4, 0) == 4 && !strcmp(buf, "data");
    printf("munmap %d, mmap-fixed %s, mprotect %s, /tmp %s\n", u, me ? strerrorname_np(me) : "mapped",
           pe ? strerrorname_np(pe) : "0", okio ? "ok" : "broken");
    return 0;
  }
  if (!strcmp(what, "tmp-store")) {
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &sa, NULL);
    *(volatile char *)0xb700000ul = 1;
    return 0;
  }
  if (!strcmp(what, "handler")) {
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &sa, NULL);
    return *(volatile int *)16;
  }
  if (!strcmp(what, "fork-bomb")) {
    int ok = 0, failed = 0;
    for (int i = 0; i < 1000; i++) {
      pid_t p = fork();
      if (p == 0)
        _exit(0);
      if (p < 0)
        failed++;
      else
        ok++;
    }
    printf("forked %d, refused %d\n", ok, failed);
    return 0;
  }
  if (!strcmp(what, "fd-fork")) {
    /* 700 host fds in the parent, then a child that closes its copies and
     * opens more: the sandbox's host fds are shared by its processes. The
     * program's own file: a root file, so a host fd each ("/" is the upper
     * layer's directory, which holds none). */
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
      return 1;
    self[sl] = 0;
    int n1 = 0;
    while (n1 < 700 && open(self, O_RDONLY) >= 0)
      n1++;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
      for (int fd = 3; fd < 3 + n1; fd++)
        close(fd);
      int n2 = 0, e = 0;
      while (n2 < 1000) {
        if (open(self, O_RDONLY) < 0) {
          e = errno;
          break;
        }
        n2++;
      }
      printf("child opened %d: %s\n", n2, e ? strerrorname_np(e) : "no error");
      fflush(stdout);
      _exit(0);
    }
    waitpid(p, NULL, 0);
    printf("parent opened %d\n", n1);
    return 0;
  }
  if (!strcmp(what, "abort"))
    abort();
  fprintf(stderr, "usage: hostile WHAT\n");
  return 2;
}
