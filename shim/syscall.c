/* System-call dispatch: memory, process, signals, time and identity here;
 * files in fs.c. Each handler returns the Linux result (>= 0 or -errno)
 * or SYS_NORETURN when it has set the registers itself (rt_sigreturn,
 * execve, a signal delivered to a handler).
 *
 * Single-threaded semantics, by decision (docs/python.md): a new thread
 * (clone with CLONE_THREAD) fails with EAGAIN (Python: "can't start new
 * thread"), a new process (fork, vfork, clone without CLONE_THREAD) with
 * ENOMEM, what Linux gives when it cannot make one and what perl and bash
 * give up on at once (they retry EAGAIN for seconds or forever); clone3 is
 * ENOSYS so that libc falls back to clone. wait4 is ECHILD.
 *
 * Waits (timer.c sig_wait): futex WAIT sleeps until its timeout
 * (ETIMEDOUT) or a signal (EINTR); nanosleep, pause and sigsuspend sleep
 * until a signal. A wait that nothing can end (no timeout, no armed
 * ITIMER_REAL: there is no other thread, and a CPU timer does not advance
 * while the program waits) ends the sandbox with a report instead of
 * hanging: natively it would hang forever.
 *
 * Signals: handlers run on the program's stack with a Linux rt_sigframe
 * (ucontext + siginfo + the XSAVE area, push_fpstate). A pending, unblocked
 * signal is delivered after a system call (signal_after_syscall) or at a
 * kick exit while the program runs its own code (sig_at_kick). A call a
 * signal interrupts returns EINTR, or is restarted where Linux restarts it:
 * an untimed futex wait and a host read/write interrupted by the run's
 * timers when the handler has SA_RESTART or no handler runs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/ucontext.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "shim/shim.h"

#define A(i) (a[i])
/* A result meaning: restart the call after a SA_RESTART handler, else EINTR
 * (Linux's ERESTARTSYS; never seen by the program). */
#define RESTARTSYS 512
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004

static const char *const names[] = {
#define N(x) [SYS_##x] = #x
    N(read), N(write), N(open), N(close), N(stat), N(fstat), N(lstat), N(poll), N(lseek), N(mmap),
    N(mprotect), N(munmap), N(brk), N(rt_sigaction), N(rt_sigprocmask), N(rt_sigreturn), N(ioctl),
    N(pread64), N(pwrite64), N(readv), N(writev), N(access), N(pipe), N(select), N(sched_yield),
    N(mremap), N(msync), N(madvise), N(dup), N(dup2), N(pause), N(nanosleep), N(getitimer), N(alarm),
    N(setitimer), N(getpid), N(sendfile), N(socket), N(connect), N(clone), N(fork), N(vfork),
    N(execve), N(exit), N(wait4), N(kill), N(uname), N(sethostname), N(fcntl), N(flock), N(fsync), N(fdatasync),
    N(truncate), N(ftruncate), N(getdents), N(getcwd), N(chdir), N(fchdir), N(rename), N(mkdir),
    N(rmdir), N(creat), N(link), N(unlink), N(symlink), N(readlink), N(chmod), N(fchmod), N(chown),
    N(fchown), N(lchown), N(umask), N(gettimeofday), N(getrlimit), N(getrusage), N(sysinfo), N(times),
    N(getuid), N(getgid), N(setuid), N(setgid), N(geteuid), N(getegid), N(setpgid), N(getppid),
    N(getpgrp), N(setsid), N(getgroups), N(setgroups), N(getresuid), N(getresgid), N(getpgid),
    N(getsid), N(rt_sigpending), N(rt_sigsuspend), N(sigaltstack), N(statfs), N(fstatfs), N(prctl),
    N(arch_prctl), N(setrlimit), N(gettid), N(tkill), N(time), N(futex), N(sched_getaffinity),
    N(getdents64), N(set_tid_address), N(fadvise64), N(clock_gettime), N(clock_getres),
    N(clock_nanosleep), N(exit_group), N(tgkill), N(openat), N(mkdirat), N(fchownat), N(newfstatat),
    N(unlinkat), N(renameat), N(readlinkat), N(fchmodat), N(faccessat), N(pselect6), N(ppoll),
    N(set_robust_list), N(get_robust_list), N(utimensat), N(dup3), N(pipe2), N(preadv),
    N(prlimit64), N(renameat2), N(getrandom), N(statx), N(rseq), N(clone3), N(faccessat2),
    N(getxattr), N(lgetxattr), N(fgetxattr), N(listxattr), N(llistxattr), N(flistxattr), N(setxattr),
    N(lsetxattr), N(fsetxattr), N(removexattr), N(lremovexattr), N(fremovexattr), N(waitid), N(mlock),
    N(munlock), N(socketpair), N(preadv2), N(pwritev), N(pwritev2), N(sched_setaffinity),
    N(sched_getparam), N(sched_getscheduler), N(sched_get_priority_max), N(sched_get_priority_min),
    N(getpriority), N(setpriority), N(memfd_create), N(membarrier), N(mincore), N(epoll_create1),
    N(eventfd2), N(timerfd_create), N(copy_file_range), N(close_range),
#undef N
};

const char *sys_name(long nr)
{
  if (nr >= 0 && (size_t)nr < sizeof names / sizeof names[0] && names[nr])
    return names[nr];
  return NULL;
}

/* ---- memory ---- */

static long do_mmap(struct sb *sb, const uint64_t a[6])
{
  uint64_t addr = A(0), len = A(1), off = A(5);
  int prot = (int)A(2), flags = (int)A(3), fd = (int)A(4);
  int type = flags & MAP_TYPE;
  if (len == 0 || off % PAGE || (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE))
    return -EINVAL;
  if (len > sb->mem_size)
    return -ENOMEM; /* Linux: more than the address space can hold */
  len = PAGE_UP(len);
  uint64_t at;
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    if (addr % PAGE)
      return -EINVAL;
    if (mm_reserved(sb, addr, len))
      return -ENOMEM; /* the shim's own memory: not part of the guest's address space */
    if ((flags & MAP_FIXED_NOREPLACE) && !mm_is_free(sb, addr, len))
      return -EEXIST;
    at = addr;
  } else if (addr && addr % PAGE == 0 && mm_is_free(sb, addr, len)) {
    at = addr;
  } else {
    at = mm_find_free(sb, len);
    if (!at)
      return -ENOMEM;
  }
  long r;
  if (flags & MAP_ANONYMOUS) {
    r = mm_map_anon(sb, at, len, prot);
    return r < 0 ? r : (long)at;
  }
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  if (f->type == F_HOST) {
    /* A host backing: map the file's pages copy-on-write (mm.c). */
    if ((f->flags & O_ACCMODE) == O_WRONLY)
      return -EACCES;
    if ((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE))
      return -EACCES; /* the root is read-only: a shared writable mapping cannot be honoured */
    return mm_map_host(sb, at, len, prot, f->hostfd, off);
  }
  if (f->type == F_TMP || (f->type == F_DEV && f->dev == 5 /* /dev/zero */)) {
    int acc = f->flags & O_ACCMODE;
    if (acc == O_WRONLY || (type != MAP_PRIVATE && (prot & PROT_WRITE) && acc != O_RDWR))
      return -EACCES;
    if ((r = mm_map_anon(sb, at, len, PROT_READ | PROT_WRITE)) < 0)
      return r;
    if (f->type == F_TMP) {
      /* No host backing (its data is in guest memory): copy. A shared
       * mapping stays coherent with the file (mm.c, mm_shared_*). */
      mm_shared_flush(sb, f->node);
      long n = tmp_read(f->node, sb->mem + at, len, off);
      if (n > 0)
        sb->pages_copied += PAGE_UP((uint64_t)n) / PAGE;
      if (type != MAP_PRIVATE && (r = mm_shared_add(sb, at, len, f->node, off)) < 0) {
        mm_unmap(sb, at, len);
        return r;
      }
    }
    if (prot != (PROT_READ | PROT_WRITE) && (r = mm_protect(sb, at, len, prot)) < 0)
      return r;
    return (long)at;
  }
  return -ENODEV;
}

static long do_brk(struct sb *sb, uint64_t addr)
{
  /* Out of range (below the start, or past where mmap begins, which also
   * keeps PAGE_UP from wrapping): the break stays, as Linux. */
  if (addr < sb->brk_start || addr > sb->mmap_top)
    return (long)sb->brk_cur;
  uint64_t old = PAGE_UP(sb->brk_cur), new = PAGE_UP(addr);
  if (new > old) {
    if (!mm_is_free(sb, old, new - old) || new > sb->mmap_top)
      return (long)sb->brk_cur;
    if (mm_map_anon(sb, old, new - old, PROT_READ | PROT_WRITE) < 0)
      return (long)sb->brk_cur;
  } else if (new < old) {
    mm_unmap(sb, new, old - new);
  }
  sb->brk_cur = addr;
  return (long)addr;
}

/* ---- signals ---- */

static bool default_ignored(int sig)
{
  return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

static void kill_sandbox(struct sb *sb, int sig)
{
  sb->exited = true;
  sb->kill_signal = sig;
}

long wait_forever(struct sb *sb, const char *what)
{
  kill_sandbox(sb, SIGKILL);
  snprintf(sb->report, sizeof sb->report,
           "the program waits for what nothing can bring (%s with no timeout, no other thread, no armed timer)",
           what);
  return SYS_NORETURN;
}

static bool ignored(struct sb *sb, int sig)
{
  uint64_t h = sb->act[sig].handler;
  return h == (uint64_t)SIG_IGN || (h == (uint64_t)SIG_DFL && default_ignored(sig));
}

void sig_raise(struct sb *sb, int sig)
{
  uint64_t bit = 1ull << (sig - 1);
  if (!(sb->sigmask & bit) && ignored(sb, sig))
    return; /* Linux drops an ignored signal that is not blocked */
  sb->pending |= bit;
  sb->pending_kernel |= bit;
}

bool sig_deliverable(struct sb *sb)
{
  uint64_t ready = sb->pending & ~sb->sigmask;
  while (ready) {
    int sig = __builtin_ctzll(ready) + 1;
    uint64_t bit = 1ull << (sig - 1);
    ready &= ~bit;
    if (!ignored(sb, sig))
      return true;
    sb->pending &= ~bit;
    sb->pending_kernel &= ~bit;
  }
  return false;
}

/* The program's user-mode registers to resume with after the current
 * syscall exit: rip = rcx, rflags = r11 (what SYSCALL saved). */
static void user_regs_after_syscall(struct sb *sb, struct cf_vm_regs *u)
{
  *u = *cf_vm_regs(sb->vm);
  u->rip = u->rcx;
  u->rflags = u->r11;
}

/* The FPU/SSE/AVX state in a signal frame: the vCPU's XSAVE area (KVM's
 * standard, non-compacted format, which is XRSTOR's and Linux's user
 * format), 64-byte aligned, Linux's software bytes in the legacy area's
 * reserved tail and FP_XSTATE_MAGIC2 after it; uc_mcontext.fpregs points
 * at it and rt_sigreturn loads it back. A handler that interrupts any
 * instruction (a kick exit) must not leave the program with its vector
 * registers changed. */
#define FP_SIZE 4096u
#define FP_MAGIC1 0x46505853u
#define FP_MAGIC2 0x46505845u

static uint64_t push_fpstate(struct sb *sb, uint64_t sp)
{
  struct cf_vm_cpu c;
  if (cf_vm_save_cpu(sb->vm, &c) < 0)
    return 0;
  sp = (sp - FP_SIZE - 4) & ~63ull;
  uint8_t *p = mm_ptr(sb, sp, FP_SIZE + 4, PROT_READ | PROT_WRITE);
  if (!p)
    return 0;
  memcpy(p, c.xsave, FP_SIZE);
  uint32_t sw[4] = {FP_MAGIC1, FP_SIZE + 4, 0, FP_SIZE}; /* magic1, extended size, xfeatures, xstate size */
  uint64_t xfeatures;
  memcpy(&xfeatures, p + 512, 8); /* the XSAVE header's XSTATE_BV */
  memcpy(p + 464, sw, 8);
  memcpy(p + 472, &xfeatures, 8);
  memcpy(p + 480, &sw[3], 4);
  uint32_t m2 = FP_MAGIC2;
  memcpy(p + FP_SIZE, &m2, 4);
  return sp;
}

/* Build an rt_sigframe for sig on the program's stack and point regs at
 * the handler. false if the frame cannot be written (then the caller kills). */
static bool push_frame(struct sb *sb, int sig, int code, uint64_t addr, struct cf_vm_regs *u)
{
  struct ksigaction *act = &sb->act[sig];
  if (!(act->flags & SA_RESTORER))
    return false;
  uint64_t sp = u->rsp - 128; /* red zone */
  uint64_t fp = push_fpstate(sb, sp);
  if (!fp)
    return false;
  sp = fp;
  sp -= sizeof(siginfo_t);
  sp &= ~15ull;
  uint64_t info_addr = sp;
  sp -= sizeof(ucontext_t);
  sp &= ~15ull;
  uint64_t uc_addr = sp;
  sp -= 8; /* the return address: rsp + 8 is 16-byte aligned at entry */
  ucontext_t *uc = mm_ptr(sb, uc_addr, sizeof *uc, PROT_READ | PROT_WRITE);
  siginfo_t *si = mm_ptr(sb, info_addr, sizeof *si, PROT_READ | PROT_WRITE);
  if (!uc || !si || mm_copy_out(sb, sp, &act->restorer, 8) < 0)
    return false;
  memset(uc, 0, sizeof *uc);
  memset(si, 0, sizeof *si);
  si->si_signo = sig;
  si->si_code = code;
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE)
    si->si_addr = (void *)addr;
  else
    si->si_pid = sb->pid, si->si_uid = (uid_t)sb->uid;
  greg_t *g = uc->uc_mcontext.gregs;
  g[REG_R8] = (greg_t)u->r8, g[REG_R9] = (greg_t)u->r9, g[REG_R10] = (greg_t)u->r10;
  g[REG_R11] = (greg_t)u->r11, g[REG_R12] = (greg_t)u->r12, g[REG_R13] = (greg_t)u->r13;
  g[REG_R14] = (greg_t)u->r14, g[REG_R15] = (greg_t)u->r15, g[REG_RDI] = (greg_t)u->rdi;
  g[REG_RSI] = (greg_t)u->rsi, g[REG_RBP] = (greg_t)u->rbp, g[REG_RBX] = (greg_t)u->rbx;
  g[REG_RDX] = (greg_t)u->rdx, g[REG_RAX] = (greg_t)u->rax, g[REG_RCX] = (greg_t)u->rcx;
  g[REG_RSP] = (greg_t)u->rsp, g[REG_RIP] = (greg_t)u->rip, g[REG_EFL] = (greg_t)u->rflags;
  g[REG_CSGSFS] = 0x33;
  g[REG_CR2] = (greg_t)addr;
  uc->uc_mcontext.fpregs = (fpregset_t)fp;
  /* After sigsuspend the handler returns to the mask from before it. */
  memcpy(&uc->uc_sigmask, sb->have_saved_mask ? &sb->saved_mask : &sb->sigmask, 8);
  sb->have_saved_mask = false;
  sb->sigmask |= act->mask;
  if (!(act->flags & SA_NODEFER))
    sb->sigmask |= 1ull << (sig - 1);
  if (act->flags & SA_RESETHAND)
    act->handler = 0;
  u->rip = act->handler;
  u->rdi = (uint64_t)sig;
  u->rsi = info_addr;
  u->rdx = uc_addr;
  u->rax = 0;
  u->rsp = sp;
  return true;
}

/* Deliver sig to a program stopped with user registers u. Returns true if
 * it now runs a handler (u changed), false if ignored; kills if fatal. */
static bool deliver(struct sb *sb, int sig, int code, uint64_t addr, bool sync, struct cf_vm_regs *u)
{
  struct ksigaction *act = &sb->act[sig];
  bool blocked = sb->sigmask & (1ull << (sig - 1));
  if (sync && (blocked || act->handler == (uint64_t)SIG_IGN)) {
    kill_sandbox(sb, sig);
    return false;
  }
  if (!sync && blocked) {
    sb->pending |= 1ull << (sig - 1);
    return false;
  }
  if (act->handler == (uint64_t)SIG_IGN)
    return false;
  if (act->handler == (uint64_t)SIG_DFL) {
    if (!default_ignored(sig))
      kill_sandbox(sb, sig);
    return false;
  }
  if (!push_frame(sb, sig, code, addr, u)) {
    kill_sandbox(sb, SIGSEGV);
    return false;
  }
  return true;
}

void sig_fault(struct sb *sb, int sig, int code, uint64_t addr, struct cf_vm_regs *u)
{
  if (deliver(sb, sig, code, addr, true, u) && cf_vm_resume_user(sb->vm, u) < 0)
    kill_sandbox(sb, SIGKILL);
}

/* The next pending, unblocked signal (taken off the pending set) and its
 * si_code; 0 if none. */
static int take_signal(struct sb *sb, int *code)
{
  uint64_t ready = sb->pending & ~sb->sigmask;
  if (!ready)
    return 0;
  int sig = __builtin_ctzll(ready) + 1;
  uint64_t bit = 1ull << (sig - 1);
  *code = sb->pending_kernel & bit ? SI_KERNEL : SI_USER;
  sb->pending &= ~bit;
  sb->pending_kernel &= ~bit;
  return sig;
}

/* Run again the system call nr the program just made (rip back over the
 * 2-byte SYSCALL instruction), with the user registers u. */
static long restart_call(struct sb *sb, long nr, struct cf_vm_regs *u)
{
  u->rip -= 2;
  u->rax = (uint64_t)nr;
  if (cf_vm_resume_user(sb->vm, u) < 0)
    kill_sandbox(sb, SIGKILL);
  return SYS_NORETURN;
}

/* After syscall nr: deliver one pending, unblocked signal. result
 * -RESTARTSYS restarts the call if the handler has SA_RESTART or no
 * handler runs, else it is EINTR. */
static long signal_after_syscall(struct sb *sb, long nr, long result)
{
  if (itimer_armed(sb))
    itimer_poll(sb);
  if (sb->exited)
    return result;
  int code, sig = take_signal(sb, &code);
  if (sb->have_saved_mask && !sig) { /* sigsuspend woken by nothing (its wait ended the run) */
    sb->sigmask = sb->saved_mask;
    sb->have_saved_mask = false;
  }
  if (!sig) {
    if (result != -RESTARTSYS)
      return result;
    struct cf_vm_regs u;
    user_regs_after_syscall(sb, &u);
    return restart_call(sb, nr, &u);
  }
  struct ksigaction *act = &sb->act[sig];
  /* Ignored or fatal: no frame, no registers to read. */
  if (act->handler == (uint64_t)SIG_IGN || act->handler == (uint64_t)SIG_DFL) {
    if (act->handler == (uint64_t)SIG_DFL && !default_ignored(sig))
      kill_sandbox(sb, sig);
    if (sb->have_saved_mask) {
      sb->sigmask = sb->saved_mask;
      sb->have_saved_mask = false;
    }
    if (result == -RESTARTSYS && !sb->exited) {
      struct cf_vm_regs u;
      user_regs_after_syscall(sb, &u);
      return restart_call(sb, nr, &u);
    }
    return result == -RESTARTSYS ? -EINTR : result;
  }
  struct cf_vm_regs u;
  user_regs_after_syscall(sb, &u);
  if (result == -RESTARTSYS) {
    if (act->flags & SA_RESTART) {
      u.rip -= 2;
      result = nr;
    } else {
      result = -EINTR;
    }
  }
  u.rax = (uint64_t)result;
  if (deliver(sb, sig, code, 0, false, &u)) {
    if (cf_vm_resume_user(sb->vm, &u) < 0)
      kill_sandbox(sb, SIGKILL);
    return SYS_NORETURN;
  }
  return result;
}

void sig_at_kick(struct sb *sb)
{
  if (!itimer_armed(sb) && !(sb->pending & ~sb->sigmask))
    return;
  if (itimer_armed(sb)) {
    itimer_poll(sb);
    run_timers_arm(sb); /* a host timer that fired early is set again */
  }
  if (sb->exited || !sig_deliverable(sb))
    return;
  /* In the system call stub or an exception stub (below the user range),
   * or an exception on its way: the exit that follows comes first, and a
   * kick soon after delivers it if that exit does not. */
  struct cf_vm_regs u = *cf_vm_regs(sb->vm);
  if (u.rip < CF_VM_USER_BASE || cf_vm_event_pending(sb->vm) != 0) {
    run_timers_rekick(sb);
    return;
  }
  int code, sig = take_signal(sb, &code);
  if (sig && deliver(sb, sig, code, 0, false, &u) && cf_vm_resume_user(sb->vm, &u) < 0)
    kill_sandbox(sb, SIGKILL);
}

static long do_kill(struct sb *sb, int sig)
{
  if (sig < 0 || sig > 64)
    return -EINVAL;
  if (sig == 0)
    return 0;
  sb->pending |= 1ull << (sig - 1);
  if (sig == SIGKILL || sig == SIGSTOP) {
    kill_sandbox(sb, SIGKILL);
    return 0;
  }
  return 0;
}

static long do_sigreturn(struct sb *sb)
{
  struct cf_vm_regs *r = cf_vm_regs(sb->vm);
  ucontext_t uc;
  if (mm_copy_in(sb, &uc, r->rsp, sizeof uc) < 0) {
    kill_sandbox(sb, SIGSEGV);
    return SYS_NORETURN;
  }
  greg_t *g = uc.uc_mcontext.gregs;
  struct cf_vm_regs u = {
      .r8 = (uint64_t)g[REG_R8], .r9 = (uint64_t)g[REG_R9], .r10 = (uint64_t)g[REG_R10],
      .r11 = (uint64_t)g[REG_R11], .r12 = (uint64_t)g[REG_R12], .r13 = (uint64_t)g[REG_R13],
      .r14 = (uint64_t)g[REG_R14], .r15 = (uint64_t)g[REG_R15], .rdi = (uint64_t)g[REG_RDI],
      .rsi = (uint64_t)g[REG_RSI], .rbp = (uint64_t)g[REG_RBP], .rbx = (uint64_t)g[REG_RBX],
      .rdx = (uint64_t)g[REG_RDX], .rax = (uint64_t)g[REG_RAX], .rcx = (uint64_t)g[REG_RCX],
      .rsp = (uint64_t)g[REG_RSP], .rip = (uint64_t)g[REG_RIP], .rflags = (uint64_t)g[REG_EFL],
  };
  memcpy(&sb->sigmask, &uc.uc_sigmask, 8);
  sb->sigmask &= ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
  uint64_t fp = (uint64_t)uc.uc_mcontext.fpregs;
  if (!fp) { /* no FPU state in the frame: the registers stay as they are */
    cf_vm_resume_user(sb->vm, &u);
    return SYS_NORETURN;
  }
  struct cf_vm_cpu c;
  if (cf_vm_save_cpu(sb->vm, &c) < 0 || mm_copy_in(sb, c.xsave, fp, FP_SIZE) < 0 ||
      cf_vm_load_cpu(sb->vm, &c, &u) < 0) {
    snprintf(sb->report, sizeof sb->report, "rt_sigreturn: bad FPU state in the signal frame at 0x%llx",
             (unsigned long long)fp);
    kill_sandbox(sb, SIGSEGV);
  }
  return SYS_NORETURN;
}

static long do_sigaction(struct sb *sb, const uint64_t a[6])
{
  int sig = (int)A(0);
  if (sig < 1 || sig > 64 || A(3) != 8)
    return -EINVAL;
  if (A(2) && mm_copy_out(sb, A(2), &sb->act[sig], sizeof sb->act[sig]) < 0)
    return -EFAULT;
  if (A(1)) {
    if (sig == SIGKILL || sig == SIGSTOP)
      return -EINVAL;
    struct ksigaction k;
    if (mm_copy_in(sb, &k, A(1), sizeof k) < 0)
      return -EFAULT;
    sb->act[sig] = k;
  }
  return 0;
}

static long do_sigprocmask(struct sb *sb, const uint64_t a[6])
{
  if (A(3) != 8)
    return -EINVAL;
  uint64_t old = sb->sigmask, set;
  if (A(1)) {
    if (mm_copy_in(sb, &set, A(1), 8) < 0)
      return -EFAULT;
    switch (A(0)) {
    case SIG_BLOCK: sb->sigmask |= set; break;
    case SIG_UNBLOCK: sb->sigmask &= ~set; break;
    case SIG_SETMASK: sb->sigmask = set; break;
    default: return -EINVAL;
    }
    sb->sigmask &= ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
  }
  if (A(2) && mm_copy_out(sb, A(2), &old, 8) < 0)
    return -EFAULT;
  return 0;
}

/* ---- execve: replace the program in the same sandbox ---- */

static char **copy_strv(struct sb *sb, uint64_t addr, long *err)
{
  size_t n = 0, cap = 16;
  char **v = calloc(cap, sizeof *v);
  if (!v)
    return *err = -ENOMEM, NULL;
  for (; addr; n++) {
    uint64_t p;
    if (mm_copy_in(sb, &p, addr + n * 8, 8) < 0) {
      *err = -EFAULT;
      goto fail;
    }
    if (!p)
      break;
    if (n + 2 > cap) {
      char **nv = realloc(v, (cap *= 2) * sizeof *v);
      if (!nv || cap > 65536) {
        free(nv ? nv : v);
        return *err = -E2BIG, NULL;
      }
      v = nv;
    }
    char buf[65536];
    long l = mm_str(sb, p, buf, sizeof buf);
    if (l < 0) {
      *err = l == -ENAMETOOLONG ? -E2BIG : l;
      goto fail;
    }
    v[n] = strdup(buf);
    v[n + 1] = NULL;
  }
  v[n] = NULL;
  return v;
fail:
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
  return NULL;
}

static void free_strv(char **v)
{
  if (v)
    for (char **p = v; *p; p++)
      free(*p);
  free(v);
}

static long do_execve(struct sb *sb, const uint64_t a[6])
{
  char path[PATH_MAX];
  long r = mm_str(sb, A(0), path, sizeof path);
  if (r < 0)
    return r;
  /* Check before the point of no return: exists, is an ELF we load. */
  if ((r = elf_probe(sb, path)) < 0)
    return r;
  long err = 0;
  char **argv = copy_strv(sb, A(1), &err), **envp = argv ? copy_strv(sb, A(2), &err) : NULL;
  if (!argv || !envp) {
    free_strv(argv);
    return err;
  }
  /* Every VMA goes; the /tmp region (no VMA) stays. */
  while (sb->nvma > 0 && mm_unmap(sb, sb->vmas[0].start, sb->vmas[0].end - sb->vmas[0].start) == 0)
    ;
  sb->nvma = 0;
  for (int i = 0; i < MAX_FDS; i++)
    if (sb->fds[i] && sb->cloexec[i]) {
      uint64_t ca[6] = {(uint64_t)i}; /* fs.c owns the refcount: close(2) */
      bool h;
      fs_syscall(sb, SYS_close, ca, &h);
    }
  for (int s = 1; s <= 64; s++)
    if (sb->act[s].handler != (uint64_t)SIG_IGN)
      sb->act[s] = (struct ksigaction){0};
  uint64_t entry, sp;
  r = elf_load(sb, path, argv, envp, &entry, &sp);
  free_strv(argv);
  free_strv(envp);
  if (r < 0) {
    snprintf(sb->report, sizeof sb->report, "execve %.200s failed after the point of no return: %.700s", path,
             cf_error());
    kill_sandbox(sb, SIGKILL);
    return SYS_NORETURN;
  }
  if (cf_vm_set_fs_base(sb->vm, 0) < 0 || cf_vm_enter_user(sb->vm, entry, sp) < 0)
    kill_sandbox(sb, SIGKILL);
  return SYS_NORETURN;
}

/* ---- waits ---- */

static bool ts_valid(const struct timespec *ts)
{
  return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

/* deadline = now on clk + rel */
static struct timespec ts_after(clockid_t clk, const struct timespec *rel)
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
  switch (clk) {
  case CLOCK_REALTIME:
  case CLOCK_MONOTONIC:
  case CLOCK_BOOTTIME:
  case CLOCK_TAI:
    break;
  case CLOCK_PROCESS_CPUTIME_ID:
    return -ENOTSUP; /* Linux sleeps on the process's CPU clock; not here */
  default:
    return -EINVAL;  /* CLOCK_THREAD_CPUTIME_ID too, as Linux */
  }
  bool abs = flags & TIMER_ABSTIME;
  struct timespec dl = abs ? ts : ts_after(clk, &ts);
  long r = sig_wait(sb, clk, &dl);
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

#define FUTEX_PRIVATE FUTEX_PRIVATE_FLAG
#define FUTEX_REALTIME FUTEX_CLOCK_REALTIME

/* futex: one thread, so nobody else waits or wakes. WAIT sleeps until its
 * timeout or a signal; WAKE wakes nobody; WAKE_OP does its operation on
 * uaddr2; CMP_REQUEUE compares. The PI and requeue-PI operations are
 * ENOSYS (an error, never a silent success). */
static long do_futex(struct sb *sb, const uint64_t a[6])
{
  int op = (int)A(1), cmd = op & ~(FUTEX_PRIVATE | FUTEX_REALTIME);
  uint64_t uaddr = A(0);
  uint32_t val = (uint32_t)A(2), val3 = (uint32_t)A(5);
  if ((op & FUTEX_REALTIME) && cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET)
    return -ENOSYS;
  switch (cmd) {
  case FUTEX_WAIT:
  case FUTEX_WAIT_BITSET: {
    if (uaddr % 4)
      return -EINVAL;
    if (cmd == FUTEX_WAIT_BITSET && !val3)
      return -EINVAL;
    struct timespec ts, dl;
    bool timed = A(3) != 0;
    if (timed) {
      if (mm_copy_in(sb, &ts, A(3), sizeof ts) < 0)
        return -EFAULT;
      if (!ts_valid(&ts))
        return -EINVAL;
    }
    uint32_t cur;
    if (mm_copy_in(sb, &cur, uaddr, 4) < 0)
      return -EFAULT;
    if (cur != val)
      return -EAGAIN;
    /* FUTEX_WAIT: relative, on CLOCK_MONOTONIC; WAIT_BITSET: absolute, on
     * CLOCK_MONOTONIC or with FUTEX_CLOCK_REALTIME on CLOCK_REALTIME. */
    clockid_t clk = op & FUTEX_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC;
    if (timed)
      dl = cmd == FUTEX_WAIT ? ts_after(clk, &ts) : ts;
    long r = sig_wait(sb, clk, timed ? &dl : NULL);
    if (r == 0)
      return -ETIMEDOUT;
    if (r == -EDEADLK)
      return wait_forever(sb, "futex wait");
    return timed ? -EINTR : -RESTARTSYS; /* as Linux: only the untimed wait restarts */
  }
  case FUTEX_WAKE:
  case FUTEX_WAKE_BITSET:
    if (cmd == FUTEX_WAKE_BITSET && !val3)
      return -EINVAL;
    return uaddr % 4 ? -EINVAL : 0;
  case FUTEX_REQUEUE:
    return uaddr % 4 || A(4) % 4 ? -EINVAL : 0;
  case FUTEX_CMP_REQUEUE: {
    uint32_t cur;
    if (uaddr % 4 || A(4) % 4)
      return -EINVAL;
    if (mm_copy_in(sb, &cur, uaddr, 4) < 0)
      return -EFAULT;
    return cur == val3 ? 0 : -EAGAIN;
  }
  case FUTEX_WAKE_OP: {
    /* *uaddr2 = old OP oparg; the wakes that follow wake nobody. */
    uint64_t uaddr2 = A(4);
    if (uaddr % 4 || uaddr2 % 4)
      return -EINVAL;
    uint32_t *p = mm_ptr(sb, uaddr2, 4, PROT_READ | PROT_WRITE);
    if (!p)
      return -EFAULT;
    int wop = (int)(val3 >> 28) & 7, cmp = (int)(val3 >> 24) & 15;
    uint32_t oparg = (val3 >> 12) & 0xfff;
    if (val3 & (8u << 28)) { /* FUTEX_OP_OPARG_SHIFT */
      if (oparg > 31)
        return -EINVAL;
      oparg = 1u << oparg;
    }
    if (cmp > 5 || wop > 4)
      return -ENOSYS;
    uint32_t old = *p;
    switch (wop) {
    case 0: *p = oparg; break;        /* SET */
    case 1: *p = old + oparg; break;  /* ADD */
    case 2: *p = old | oparg; break;  /* OR */
    case 3: *p = old & ~oparg; break; /* ANDN */
    case 4: *p = old ^ oparg; break;  /* XOR */
    }
    return 0;
  }
  }
  return -ENOSYS;
}

/* rt_sigsuspend: wait with the given mask until a signal; the handler
 * returns to the mask from before (push_frame). */
static long do_sigsuspend(struct sb *sb, const uint64_t a[6])
{
  uint64_t set;
  if (A(1) != 8)
    return -EINVAL;
  if (mm_copy_in(sb, &set, A(0), 8) < 0)
    return -EFAULT;
  sb->saved_mask = sb->sigmask;
  sb->have_saved_mask = true;
  sb->sigmask = set & ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
  long r = sig_wait(sb, CLOCK_MONOTONIC, NULL);
  if (r == -EDEADLK) {
    sb->sigmask = sb->saved_mask;
    sb->have_saved_mask = false;
    return wait_forever(sb, "sigsuspend");
  }
  return -EINTR;
}

/* ---- the rest ---- */

static long copy_time(struct sb *sb, uint64_t addr, clockid_t clk, bool timeval)
{
  struct timespec ts;
  if (clock_gettime(clk, &ts) < 0)
    return -errno;
  if (!timeval)
    return mm_copy_out(sb, addr, &ts, sizeof ts);
  struct timeval tv = {ts.tv_sec, ts.tv_nsec / 1000};
  return mm_copy_out(sb, addr, &tv, sizeof tv);
}

static long dispatch(struct sb *sb, long nr, const uint64_t a[6])
{
  bool handled;
  long r = fs_syscall(sb, nr, a, &handled);
  if (handled)
    return r;
  switch (nr) {
  case SYS_mmap:
    return do_mmap(sb, a);
  case SYS_munmap:
    if (A(0) % PAGE || !A(1))
      return -EINVAL;
    return mm_unmap(sb, A(0), A(1));
  case SYS_mprotect:
    if (A(0) % PAGE)
      return -EINVAL;
    return A(1) ? mm_protect(sb, A(0), A(1), (int)A(2)) : 0;
  case SYS_brk:
    return do_brk(sb, A(0));
  case SYS_madvise:
    if (A(2) == MADV_DONTNEED && mm_ptr(sb, A(0), A(1), 0) && A(0) % PAGE == 0 && A(1))
      return mm_zero(sb, A(0), A(1));
    return 0;
  case SYS_mremap:
    return -ENOMEM;
  case SYS_msync:
    return mm_sync(sb, A(0), A(1), (int)A(2));
  case SYS_mlock:
  case SYS_munlock:
    return 0;
  case SYS_arch_prctl: {
    uint64_t v;
    switch (A(0)) {
    case ARCH_SET_FS:
      if (A(1) >= (1ull << 47))
        return -EPERM;
      return cf_vm_set_fs_base(sb->vm, A(1)) < 0 ? -EIO : 0;
    case ARCH_GET_FS:
      if (cf_vm_get_fs_base(sb->vm, &v) < 0)
        return -EIO;
      return mm_copy_out(sb, A(1), &v, 8);
    }
    return -EINVAL;
  }
  case SYS_set_tid_address:
    sb->tid_address = A(0);
    return sb->tid;
  case SYS_set_robust_list:
    return 0;
  case SYS_futex:
    return do_futex(sb, a);
  case SYS_rt_sigaction:
    return do_sigaction(sb, a);
  case SYS_rt_sigprocmask:
    return do_sigprocmask(sb, a);
  case SYS_rt_sigreturn:
    return do_sigreturn(sb);
  case SYS_rt_sigpending:
    return mm_copy_out(sb, A(0), &sb->pending, 8);
  case SYS_sigaltstack:
    if (A(1)) {
      stack_t ss = {.ss_flags = SS_DISABLE};
      return mm_copy_out(sb, A(1), &ss, sizeof ss);
    }
    return 0;
  case SYS_kill:
    if ((int)A(0) != sb->pid && (int)A(0) != 0 && (int)A(0) != -1 && (int)A(0) != -sb->pid)
      return -ESRCH;
    return do_kill(sb, (int)A(1));
  case SYS_tkill:
    return (int)A(0) == sb->tid ? do_kill(sb, (int)A(1)) : -ESRCH;
  case SYS_tgkill:
    return (int)A(0) == sb->pid && (int)A(1) == sb->tid ? do_kill(sb, (int)A(2)) : -ESRCH;
  case SYS_pause:
    r = sig_wait(sb, CLOCK_MONOTONIC, NULL);
    return r == -EDEADLK ? wait_forever(sb, "pause") : -EINTR;
  case SYS_rt_sigsuspend:
    return do_sigsuspend(sb, a);
  case SYS_exit:
  case SYS_exit_group:
    sb->exited = true;
    sb->exit_code = (int)(A(0) & 0xff);
    return SYS_NORETURN;
  case SYS_clone:
    /* Linux's checks first: a thread shares the handlers, which share the memory. */
    if (((A(0) & CLONE_THREAD) && !(A(0) & CLONE_SIGHAND)) || ((A(0) & CLONE_SIGHAND) && !(A(0) & CLONE_VM)))
      return -EINVAL;
    return A(0) & CLONE_THREAD ? -EAGAIN : -ENOMEM;
  case SYS_fork:
  case SYS_vfork:
    return -ENOMEM;
  case SYS_clone3:
    return -ENOSYS; /* libc falls back to clone */
  case SYS_execve:
    return do_execve(sb, a);
  case SYS_wait4:
  case SYS_waitid:
    return -ECHILD;
  case SYS_getpid:
    return sb->pid;
  case SYS_gettid:
    return sb->tid;
  case SYS_getppid:
    return 1;
  case SYS_getpgrp:
  case SYS_getsid:
  case SYS_getpgid:
  case SYS_setsid:
    return sb->pid;
  case SYS_setpgid:
    return 0;
  case SYS_getuid:
  case SYS_geteuid:
    return sb->uid;
  case SYS_getgid:
  case SYS_getegid:
    return sb->gid;
  case SYS_setuid:
  case SYS_setgid:
    return (int)A(0) == sb->uid ? 0 : -EPERM;
  case SYS_getresuid:
  case SYS_getresgid: {
    uint32_t id = (uint32_t)(nr == SYS_getresuid ? sb->uid : sb->gid);
    for (int i = 0; i < 3; i++)
      if (mm_copy_out(sb, A(i), &id, 4) < 0)
        return -EFAULT;
    return 0;
  }
  case SYS_getgroups:
    return 0;
  case SYS_setgroups:
    return -EPERM;
  case SYS_uname: {
    /* The host's kernel, the sandbox's own name. */
    struct utsname u;
    uname(&u);
    snprintf(u.nodename, sizeof u.nodename, "%s", sb->hostname[0] ? sb->hostname : CF_DEFAULT_HOSTNAME);
    snprintf(u.domainname, sizeof u.domainname, "(none)");
    return mm_copy_out(sb, A(0), &u, sizeof u);
  }
  case SYS_sethostname: {
    if (sb->uid != 0) /* Linux: the capability first, then the length */
      return -EPERM;
    if ((int64_t)A(1) < 0 || A(1) > 64)
      return -EINVAL;
    char name[65];
    if (mm_copy_in(sb, name, A(0), A(1)) < 0)
      return -EFAULT;
    return virt_sethostname(sb, name, A(1));
  }
  case SYS_sysinfo: {
    struct sysinfo si;
    sysinfo(&si);
    si.procs = 1;
    return mm_copy_out(sb, A(0), &si, sizeof si);
  }
  case SYS_getrlimit:
  case SYS_prlimit64: {
    int res = (int)(nr == SYS_getrlimit ? A(0) : A(1));
    uint64_t out = nr == SYS_getrlimit ? A(1) : A(3);
    if (nr == SYS_prlimit64 && A(0) && (int)A(0) != sb->pid)
      return -ESRCH;
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (res == RLIMIT_STACK)
      rl.rlim_cur = rl.rlim_max = STACK_SIZE;
    else if (res == RLIMIT_NOFILE)
      rl.rlim_cur = rl.rlim_max = (rlim_t)SB_NOFILE(sb);
    else if (res == RLIMIT_AS || res == RLIMIT_DATA)
      rl.rlim_cur = rl.rlim_max = sb->mem_size;
    return out ? mm_copy_out(sb, out, &rl, sizeof rl) : 0;
  }
  case SYS_setrlimit:
    return 0;
  case SYS_getrusage: {
    struct rusage ru = {0};
    return mm_copy_out(sb, A(1), &ru, sizeof ru);
  }
  case SYS_times: {
    struct {
      int64_t u, s, cu, cs;
    } t = {0};
    if (A(0) && mm_copy_out(sb, A(0), &t, sizeof t) < 0)
      return -EFAULT;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 100 + ts.tv_nsec / 10000000;
  }
  case SYS_clock_gettime:
    return copy_time(sb, A(1), (clockid_t)A(0), false);
  case SYS_clock_getres: {
    struct timespec ts = {0, 1};
    return A(1) ? mm_copy_out(sb, A(1), &ts, sizeof ts) : 0;
  }
  case SYS_gettimeofday:
    return A(0) ? copy_time(sb, A(0), CLOCK_REALTIME, true) : 0;
  case SYS_time: {
    int64_t t = (int64_t)time(NULL);
    if (A(0) && mm_copy_out(sb, A(0), &t, 8) < 0)
      return -EFAULT;
    return t;
  }
  case SYS_nanosleep:
    return do_sleep(sb, CLOCK_MONOTONIC, 0, A(0), A(1));
  case SYS_clock_nanosleep:
    return do_sleep(sb, (clockid_t)A(0), (int)A(1), A(2), A(3));
  case SYS_getrandom: {
    uint64_t len = A(1) > (1 << 20) ? 1 << 20 : A(1);
    void *p = mm_ptr(sb, A(0), len, PROT_WRITE);
    if (!p)
      return -EFAULT;
    ssize_t n = getrandom(p, len, (unsigned)(A(2) & GRND_NONBLOCK));
    return n < 0 ? -errno : n;
  }
  case SYS_sched_getaffinity: {
    if (A(1) < 8)
      return -EINVAL;
    uint64_t mask = 1;
    return mm_copy_out(sb, A(2), &mask, 8) < 0 ? -EFAULT : 8;
  }
  case SYS_sched_yield:
    return 0;
  case SYS_prctl:
    return A(0) == 15 /* PR_SET_NAME */ || A(0) == 16 ? 0 : -EINVAL;
  case SYS_socket:
  case SYS_socketpair:
    return -EACCES;
  case SYS_alarm:
    return do_alarm(sb, (unsigned)A(0));
  case SYS_setitimer:
    return do_setitimer(sb, (long)(int)A(0), A(1), A(2));
  case SYS_getitimer:
    return do_getitimer(sb, (long)(int)A(0), A(1));
  }
  return -ENOSYS;
}

static void trace_call(struct sb *sb, long nr, const uint64_t a[6], long r)
{
  const char *n = sys_name(nr);
  FILE *t = sb->trace;
  if (n)
    fprintf(t, "[sandbox] %s(", n);
  else
    fprintf(t, "[sandbox] syscall_%ld(", nr);
  int str = -1;
  switch (nr) {
  case SYS_open: case SYS_stat: case SYS_lstat: case SYS_access: case SYS_execve: case SYS_chdir:
  case SYS_mkdir: case SYS_unlink: case SYS_rmdir: case SYS_readlink: case SYS_creat: case SYS_truncate:
    str = 0;
    break;
  case SYS_openat: case SYS_newfstatat: case SYS_statx: case SYS_unlinkat: case SYS_mkdirat:
  case SYS_readlinkat: case SYS_faccessat: case SYS_faccessat2:
    str = 1;
    break;
  }
  for (int i = 0; i < 6; i++) {
    if (i == str) {
      char buf[256];
      if (mm_str(sb, a[i], buf, sizeof buf) >= 0)
        fprintf(t, "%s\"%s\"", i ? ", " : "", buf);
      else
        fprintf(t, "%s0x%llx", i ? ", " : "", (unsigned long long)a[i]);
    } else {
      fprintf(t, "%s0x%llx", i ? ", " : "", (unsigned long long)a[i]);
    }
  }
  if (r == SYS_NORETURN)
    fprintf(t, ") = ?\n");
  else if (r < 0 && r > -4096)
    fprintf(t, ") = -%ld (%s)\n", -r, strerrorname_np((int)-r) ? strerrorname_np((int)-r) : "?");
  else
    fprintf(t, ") = %ld (0x%lx)\n", r, (unsigned long)r);
}

long sys_dispatch(struct sb *sb, long nr, const uint64_t a[6])
{
  sb->nsys++;
  long r = dispatch(sb, nr, a);
  if (r == -ENOSYS)
    sb->enosys++;
  if (sb->opts->strace)
    trace_call(sb, nr, a, r == -RESTARTSYS ? -EINTR : r);
  /* A host read or write the run's own timers interrupted: Linux would
   * restart it (SA_RESTART, or no handler runs), or give EINTR. */
  if (r == -EINTR && sb->running && !sb->timed_out && !sb->exited) {
    switch (nr) {
    case SYS_read: case SYS_readv: case SYS_pread64: case SYS_preadv: case SYS_preadv2:
    case SYS_write: case SYS_writev: case SYS_pwrite64: case SYS_pwritev: case SYS_pwritev2:
      r = -RESTARTSYS;
    }
  }
  if (r != SYS_NORETURN)
    r = signal_after_syscall(sb, nr, r);
  return r;
}
