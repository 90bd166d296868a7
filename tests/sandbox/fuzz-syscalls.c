/* A system call fuzzer guest for tests/sandbox-fuzz.sh (issue 12, item 3):
 * random system calls 0..460 with random arguments, pointers among them
 * into every region of the guest address space: its stack, heap and mmap
 * areas, the shim's /tmp data region, the VMM's system area below 0x10000,
 * the kernel half, non-canonical addresses and unmapped holes. The shim must
 * survive all of it: this program may end in any way (a signal, a limit),
 * the cowfork process must not.
 *
 *   fuzz-syscalls SEED CALLS [SECONDS [TMP_BASE]]
 *
 * SEED "-": read it from stdin (a template paused at that read gives each
 * child its own).
 *
 * Built static with -fno-stack-protector and without using its own TLS
 * after start (system calls by inline asm, no errno, no stdio): a random
 * arch_prctl(ARCH_SET_FS) or brk must not break the fuzzer itself. What
 * would only end it early is left out or tamed: exit, exit_group, execve,
 * execveat, rt_sigreturn are never called; fork-like calls' children _exit
 * at once (clone without CLONE_VM/CLONE_THREAD); kill-like calls never send
 * SIGKILL or SIGSTOP; every catchable signal has an empty handler,
 * restored after any call that may change it, and an interval timer
 * (re-armed after calls that may change it) interrupts blocking calls;
 * calls that map, unmap or protect memory only get addresses outside the
 * fuzzer's own code, data, stack and heap. Writes through pointers land in
 * scratch buffers whose overflow clobbers nothing it still needs (the stack
 * buffer lies above the loop's frame: main never returns). */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
  register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static void out(const char *s) { sys3(SYS_write, 2, s, strlen(s)); }

static void out_num(const char *pre, uint64_t v, const char *post)
{
  char b[24];
  int n = 0;
  do
    b[n++] = (char)('0' + v % 10);
  while ((v /= 10));
  char o[64];
  size_t l = 0;
  for (const char *p = pre; *p; p++)
    o[l++] = *p;
  while (n)
    o[l++] = b[--n];
  for (const char *p = post; *p; p++)
    o[l++] = *p;
  sys3(SYS_write, 2, o, l);
}

static uint64_t rng;
static uint64_t rnd(void)
{
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1Dull;
}

/* The kernel's struct sigaction for rt_sigaction. */
struct ksa {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

static void nothing(int sig) { (void)sig; }
__attribute__((naked)) static void restorer(void) { __asm__ volatile("mov $15, %eax\n syscall\n hlt"); }

static void handlers(void)
{
  struct ksa a = {nothing, 0x04000000 /* SA_RESTORER */, restorer, 0};
  for (int s = 1; s < 65; s++)
    if (s != SIGKILL && s != SIGSTOP)
      sys6(SYS_rt_sigaction, s, (long)&a, 0, 8, 0, 0);
  uint64_t none = 0;
  sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8, 0, 0);
  sys6(SYS_sigaltstack, 0, 0, 0, 0, 0, 0);
}

static void arm_timer(void)
{
  struct {
    long is, ius, vs, vus;
  } it = {0, 20000, 0, 20000}; /* every 20 ms: blocking calls end with EINTR */
  sys3(SYS_setitimer, 0 /* ITIMER_REAL */, &it, 0);
}

static uint64_t zero_mask;
static uint64_t tmp_base = 0xb700000; /* TMP_BASE of 256 MiB guest memory (shim/shim.h) */

/* Where pointers may point. */
static char *heap, *rw, *ro, *none;
static const uint64_t RW_LEN = 1 << 20;

static uint64_t pick_ptr(char *stack, int unsafe_ok)
{
  uint64_t off = rnd() % 3 == 0 ? rnd() % 64 : rnd() % 65536;
  switch (rnd() % (unsafe_ok ? 14 : 10)) {
  case 0: return (uint64_t)(rw + rnd() % RW_LEN);                  /* our scratch mmap area */
  case 1: return (uint64_t)(ro + rnd() % 4096);                     /* read-only */
  case 2: return (uint64_t)(none + rnd() % 4096);                   /* PROT_NONE */
  case 3: return tmp_base + (rnd() % (64ull << 20));                /* the /tmp data region */
  case 4: return rnd() % 0x10000;                                   /* the system area */
  case 5: return 0xffff800000000000ull + (rnd() % (1ull << 46));   /* kernel half */
  case 6: return 0xffffffffff600000ull + (rnd() % 4096);            /* vsyscall page */
  case 7: return (1ull << 47) - (rnd() % 8192);                     /* end of the lower half */
  case 8: return rnd();                                             /* anything, mostly non-canonical */
  case 9: return 0x40000000ull + rnd() % (1ull << 36);              /* holes beyond guest memory */
  case 10: return (uint64_t)(stack + off % 65536);                  /* our stack (scratch part) */
  case 11: return (uint64_t)(heap + off % 65536);                   /* our heap (scratch part) */
  case 12: return (uint64_t)(rw + RW_LEN - 1 - rnd() % 16);         /* straddling the end of a mapping */
  default: return (uint64_t)(ro - 1 - rnd() % 16);
  }
}

static uint64_t pick_arg(char *stack, int unsafe_ok)
{
  switch (rnd() % 12) {
  case 0: return rnd() % 8;                          /* small: fds, flags, counts */
  case 1: return rnd() % 64;
  case 2: return (uint64_t)-(int64_t)(rnd() % 4);    /* -1.. */
  case 3: return (uint64_t)-100;                     /* AT_FDCWD */
  case 4: return 1ull << (rnd() % 64);               /* one flag bit */
  case 5: return rnd() & 0xffffffff;
  case 6: return rnd();
  case 7: return 4096 * (rnd() % 64);                /* sizes */
  case 8: return 0;
  default: return pick_ptr(stack, unsafe_ok);
  }
}

static int mm_call(long nr)
{
  switch (nr) {
  case SYS_mmap: case SYS_munmap: case SYS_mprotect: case SYS_mremap: case SYS_madvise: case SYS_brk:
  case SYS_msync: case SYS_mlock: case SYS_munlock: case SYS_mlock2: case SYS_shmat: case SYS_remap_file_pages:
  case SYS_pkey_mprotect: case SYS_process_madvise: case SYS_userfaultfd: case SYS_shmdt:
    return 1;
  }
  return 0;
}

/* An address for a call that maps, unmaps or protects: never ours. */
static uint64_t mm_addr(void)
{
  switch (rnd() % 7) {
  case 0: return (uint64_t)(rw + (rnd() % RW_LEN & ~4095ull));
  case 1: return (uint64_t)none;
  case 2: return tmp_base + ((rnd() % (64ull << 20)) & ~4095ull);
  case 3: return (rnd() % 0x10000) & ~4095ull;
  case 4: return 0xffff800000000000ull + ((rnd() % (1ull << 46)) & ~4095ull);
  case 5: return rnd() & ~4095ull;
  default: return 0x40000000ull + ((rnd() % (1ull << 36)) & ~4095ull);
  }
}

static const char *const paths[] = {"/", "/tmp", "/tmp/f", "/proc/self/maps", "/proc/self/mem", "/dev/null",
                                    "/dev/zero", "/etc/passwd", ".", "..", "/proc/self/fd/0", "/tmp/../../..",
                                    "/dev/tty", "/proc", "/tmp/d/"};

__attribute__((noinline)) static void loop(char *stack, uint64_t calls, uint64_t secs)
{
  uint64_t start[2], now[2];
  sys3(SYS_clock_gettime, 1, start, 0);
  uint64_t brk0 = (uint64_t)sys3(SYS_brk, 0, 0, 0);
  uint64_t done = 0, counts[4] = {0};
  for (; done < calls; done++) {
    if ((done & 255) == 0) {
      sys3(SYS_clock_gettime, 1, now, 0);
      if (now[0] - start[0] >= secs)
        break;
      /* Some plausible paths in the scratch areas, for the open-like calls. */
      const char *p = paths[rnd() % (sizeof paths / sizeof *paths)];
      memcpy(rw + (rnd() % (RW_LEN - 64)), p, strlen(p) + 1);
      memcpy(stack + (rnd() % 60000), p, strlen(p) + 1);
    }
    long nr = (long)(rnd() % 461);
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_execve: case SYS_execveat: case SYS_rt_sigreturn:
      continue;
    }
    int mm = mm_call(nr);
    uint64_t a[6];
    for (int i = 0; i < 6; i++)
      a[i] = pick_arg(stack, !mm);
    if (mm) {
      a[0] = mm_addr();
      if (nr == SYS_mmap && (a[3] & MAP_FIXED) == 0 && rnd() % 2)
        a[0] = 0;
      if (nr == SYS_mremap)
        a[4] = mm_addr();
      if (nr == SYS_brk)
        a[0] = brk0 + rnd() % (64ull << 20);
      if (nr == SYS_mprotect || nr == SYS_pkey_mprotect || nr == SYS_munmap || nr == SYS_madvise)
        a[1] = rnd() % 2 ? 4096 * (1 + rnd() % 16) : a[1];
    }
    switch (nr) {
    case SYS_kill: case SYS_tkill: case SYS_tgkill: case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo:
    case SYS_pidfd_send_signal: {
      int si = nr == SYS_tgkill || nr == SYS_rt_tgsigqueueinfo ? 2 : 1;
      if ((a[si] & 0xffffffff) == SIGKILL || (a[si] & 0xffffffff) == SIGSTOP)
        a[si] = SIGUSR1;
      break;
    }
    case SYS_clone:
      a[0] &= ~(uint64_t)(CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_VFORK | CLONE_SETTLS |
                          CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID | CLONE_CHILD_SETTID | CLONE_PIDFD);
      a[1] = 0;
      break;
    case SYS_clone3:
      a[0] = pick_ptr(stack, 0);
      break;
    case SYS_rt_sigsuspend: /* a mask blocking SIGALRM would wait for good: half the time none */
      if (rnd() % 2)
        a[0] = (uint64_t)&zero_mask;
      break;
    case SYS_arch_prctl:
      if ((a[0] & 0xffff) == 0x1002) /* ARCH_SET_FS: harmless to us, but keep the TLS of the start code */
        a[1] = 0;
      break;
    }
    long r = sys6(nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
    if (r == 0 && (nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == SYS_clone3))
      sys3(SYS_exit, 0, 0, 0); /* the child */
    counts[r >= 0 ? 0 : r == -38 ? 1 : r == -14 ? 2 : 3]++;
    switch (nr) {
    case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack: case SYS_signalfd:
    case SYS_signalfd4: case SYS_setitimer: case SYS_alarm: case SYS_rt_sigsuspend:
      handlers();
      arm_timer();
      break;
    }
  }
  out_num("fuzz-syscalls: done: ", done, " calls");
  out_num(", ok ", counts[0], "");
  out_num(", ENOSYS ", counts[1], "");
  out_num(", EFAULT ", counts[2], "");
  out_num(", other errors ", counts[3], "\n");
  sys3(SYS_exit_group, 0, 0, 0);
}

int main(int argc, char **argv)
{
  char stack[65536 + 64]; /* above loop's frame: overflows clobber only what main no longer needs */
  uint64_t seed = argc > 1 ? strtoull(argv[1], 0, 0) : 1;
  if (argc > 1 && !strcmp(argv[1], "-")) { /* from stdin: a template pauses here, each child fuzzes its own */
    char b[32] = {0};
    sys3(SYS_read, 0, b, sizeof b - 1);
    seed = strtoull(b, 0, 0);
  }
  uint64_t calls = argc > 2 ? strtoull(argv[2], 0, 0) : 100000;
  uint64_t secs = argc > 3 ? strtoull(argv[3], 0, 0) : 20;
  if (argc > 4)
    tmp_base = strtoull(argv[4], 0, 0);
  rng = seed * 0x9E3779B97F4A7C15ull + 1;
  out_num("fuzz-syscalls: seed ", seed, "\n");
  heap = malloc(65536 + 64);
  rw = mmap(0, RW_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ro = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  none = mmap(0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!heap || rw == MAP_FAILED || ro == MAP_FAILED || none == MAP_FAILED) {
    out("fuzz-syscalls: no memory\n");
    return 1;
  }
  memset(stack, 0, sizeof stack);
  memset(heap, 0, 65536);
  handlers();
  arm_timer();
  loop(stack, calls, secs);
  return 0;
}
