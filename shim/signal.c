/* Signals: dispositions, the blocked mask, pending signals, and delivery
 * onto the program's stack.
 *
 * With threads (thread.c) the mask, sigsuspend's saved mask, the
 * alternate stack and the signals sent to the thread itself (tgkill,
 * tpending) are per task: sb's fields are the running task's. A signal for
 * the process (kill, a timer) is pending in sb->pending until a thread
 * that does not block it takes it: every task is kicked and woken to look
 * (task_kick_all), the first one to get the lock delivers it.
 *
 * Pending signals: the set (sb->pending) and, for each pending instance, its
 * siginfo in a queue (sb->sigq, sig_queue/sig_dequeue), as Linux keeps them:
 * a standard signal pending already is not queued again, real-time ones
 * queue (those sent by calls up to RLIMIT_SIGPENDING, SIGQ_MAX here; past it
 * EAGAIN, or for kill() pending without info); the lowest is taken first,
 * each signal's instances in order. A POSIX timer's instance names its timer
 * (slot and gen): taken, it gets the overrun count; if the timer was reset
 * or deleted since, it is dropped (Linux 6). The handler's frame and
 * rt_sigtimedwait get the taken instance's siginfo.
 *
 * Handlers run on the program's stack with a Linux rt_sigframe (ucontext +
 * siginfo + the XSAVE area, push_fpstate). A pending, unblocked signal is
 * delivered after a system call (signal_after_syscall) or at a kick exit
 * while the program runs its own code (sig_at_kick). A call a signal
 * interrupts returns EINTR, or is restarted where Linux restarts it: an
 * untimed futex wait and a host read/write interrupted by the run's timers
 * when the handler has SA_RESTART or no handler runs (systab.c). pause and
 * sigsuspend sleep until a signal (timer.c sig_wait); one that nothing can
 * end ends the sandbox with a report instead of hanging.
 *
 * The alternate signal stack (sigaltstack) is kept as Linux keeps it
 * (sb->ss_*): an SA_ONSTACK handler's frame goes on it unless the program
 * is on it already; SS_AUTODISARM disarms it while the handler runs, and
 * rt_sigreturn sets the frame's uc_stack again. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1u << 31)
#endif
/* The kernel's MINSIGSTKSZ (glibc's may be a sysconf call). */
#define LINUX_MINSIGSTKSZ 2048u

/* The signals whose default action stops the process (process.c). */
static bool default_stop(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

static bool default_ignored(int sig)
{
  return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

void kill_sandbox(struct sb *sb, int sig)
{
  sb->exited = true;
  sb->kill_signal = sig;
  task_end_all(sb);
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

static uint64_t sig_bit(int sig) { return 1ull << (sig - 1); }

/* The queued instance e leaves the queue: a POSIX timer's may queue again. */
static void entry_gone(struct sb *sb, const struct sigq_ent *e)
{
  if (!e->timer)
    return;
  struct ktimer *t = &sb->timers[e->timer - 1];
  if (t->kind == TK_POSIX && t->gen == e->gen)
    t->queued = false;
}

/* Whether e is a POSIX timer's whose timer was reset or deleted since. */
static bool entry_stale(struct sb *sb, const struct sigq_ent *e)
{
  if (!e->timer)
    return false;
  const struct ktimer *t = &sb->timers[e->timer - 1];
  return t->kind != TK_POSIX || t->gen != e->gen;
}

/* Drop every pending instance of sig. */
static void sig_flush(struct sb *sb, int sig)
{
  int j = 0;
  for (int i = 0; i < sb->nsigq; i++) {
    if (sb->sigq[i].info.si_signo == sig)
      entry_gone(sb, &sb->sigq[i]);
    else
      sb->sigq[j++] = sb->sigq[i];
  }
  sb->nsigq = j;
  sb->pending &= ~sig_bit(sig);
}

/* Drop sig's stale timer instances (Linux drops them when taken); false
 * if that leaves sig not pending. */
static bool purge_stale(struct sb *sb, int sig)
{
  int j = 0, left = 0, dropped = 0;
  for (int i = 0; i < sb->nsigq; i++) {
    struct sigq_ent *e = &sb->sigq[i];
    if (e->info.si_signo == sig && entry_stale(sb, e)) {
      dropped++;
      continue;
    }
    left += e->info.si_signo == sig;
    sb->sigq[j++] = *e;
  }
  sb->nsigq = j;
  if (dropped && !left)
    sb->pending &= ~sig_bit(sig);
  return (sb->pending & sig_bit(sig)) != 0;
}

/* Real-time instances queued by calls (not timers): RLIMIT_SIGPENDING's
 * soft limit counts them, at most SIGQ_MAX. */
static bool rt_queue_full(struct sb *sb)
{
  struct rlimit rl;
  rlim_get(sb, RLIMIT_SIGPENDING, &rl);
  uint64_t lim = rl.rlim_cur < SIGQ_MAX ? rl.rlim_cur : SIGQ_MAX;
  uint64_t n = 0;
  for (int i = 0; i < sb->nsigq; i++)
    n += sb->sigq[i].info.si_signo >= 32 && !sb->sigq[i].timer;
  return n >= lim;
}

/* A signal for the process is pending: with threads, every task looks
 * (kicked out of its vCPU, woken from its wait: a signalfd, a sigtimedwait
 * or a handler); the first that does not block it takes it. */
static void sig_notify(struct sb *sb)
{
  if (sb->ntasks)
    task_kick_all(sb);
}

int sig_queue(struct sb *sb, const siginfo_t *info, int timer, uint32_t gen)
{
  int sig = info->si_signo;
  uint64_t bit = sig_bit(sig);
  /* Linux drops an ignored signal that is not blocked (nor waited for) */
  if (!(sb->sigmask & bit) && !(sb->sigwait_set & bit) && ignored(sb, sig))
    return 0;
  if (sig < 32 && (sb->pending & bit))
    return 0; /* a standard signal pending already: they coalesce */
  if (sig >= 32 && !timer && rt_queue_full(sb)) {
    if (info->si_code != SI_USER)
      return -EAGAIN;
    sb->pending |= bit; /* kill(): pending, its info lost, as Linux */
    sig_notify(sb);
    return 1;
  }
  /* Standard signals hold at most 31 entries and timers NTIMER: only a
   * real-time signal can meet the cap, and rt_queue_full stops it first. */
  if (sb->nsigq < SIGQ_CAP)
    sb->sigq[sb->nsigq++] = (struct sigq_ent){.info = *info, .timer = timer, .gen = gen};
  sb->pending |= bit;
  sig_notify(sb);
  return 1;
}

void sig_raise(struct sb *sb, int sig)
{
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = sig;
  info.si_code = SI_KERNEL;
  sig_queue(sb, &info, 0, 0);
}

int sig_dequeue(struct sb *sb, uint64_t set, siginfo_t *info)
{
  /* The running thread's own (tgkill, tkill from another thread) first. */
  uint64_t own = sb->tpending & set;
  if (own) {
    int sig = __builtin_ctzll(own) + 1;
    sb->tpending &= ~sig_bit(sig);
    memset(info, 0, sizeof *info);
    info->si_signo = sig;
    info->si_code = SI_TKILL;
    info->si_pid = sb->pid;
    info->si_uid = (uid_t)sb->uid;
    return sig;
  }
  for (;;) {
    uint64_t ready = sb->pending & set;
    if (!ready)
      return 0;
    int sig = __builtin_ctzll(ready) + 1;
    int i = 0, more = 0;
    while (i < sb->nsigq && sb->sigq[i].info.si_signo != sig)
      i++;
    if (i == sb->nsigq) { /* pending without its info (lost, or an older state): SI_USER */
      sb->pending &= ~sig_bit(sig);
      memset(info, 0, sizeof *info);
      info->si_signo = sig;
      info->si_code = SI_USER;
      return sig;
    }
    struct sigq_ent e = sb->sigq[i];
    memmove(&sb->sigq[i], &sb->sigq[i + 1], (size_t)(sb->nsigq - i - 1) * sizeof e);
    sb->nsigq--;
    for (int k = i; k < sb->nsigq; k++)
      more += sb->sigq[k].info.si_signo == sig;
    if (!more)
      sb->pending &= ~sig_bit(sig);
    if (entry_stale(sb, &e))
      continue; /* its timer was reset or deleted: dropped, as Linux */
    if (e.timer) {
      itimer_poll(sb); /* its expirations up to now counted first, as Linux's posixtimer_rearm at dequeue */
      struct ktimer *t = &sb->timers[e.timer - 1];
      t->queued = false;
      t->overrun_last = t->overrun;
      t->overrun = 0;
      e.info.si_overrun = t->overrun_last > INT_MAX ? INT_MAX : (int)t->overrun_last;
    }
    *info = e.info;
    return sig;
  }
}

bool sig_deliverable(struct sb *sb)
{
  uint64_t ready = (sb->pending | sb->tpending) & ~sb->sigmask;
  while (ready) {
    int sig = __builtin_ctzll(ready) + 1;
    uint64_t bit = sig_bit(sig);
    ready &= ~bit;
    if (ignored(sb, sig) && !(sb->sigwait_set & bit)) {
      sig_flush(sb, sig);
      sb->tpending &= ~bit;
    } else if ((sb->tpending & bit) || purge_stale(sb, sig)) {
      return true;
    }
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

/* ---- the alternate signal stack (sigaltstack), as Linux keeps it ---- */

/* Whether sp is on the alternate stack (never with SS_AUTODISARM: the
 * handler that runs on it has disarmed it). */
static bool on_altstack(struct sb *sb, uint64_t sp)
{
  if (sb->ss_flags & SS_AUTODISARM)
    return false;
  return sb->ss_size && sp > sb->ss_sp && sp - sb->ss_sp <= sb->ss_size;
}

/* SS_DISABLE (none), SS_ONSTACK (sp on it) or 0 (Linux's sas_ss_flags). */
static int altstack_state(struct sb *sb, uint64_t sp)
{
  if (!sb->ss_size)
    return SS_DISABLE;
  return on_altstack(sb, sp) ? SS_ONSTACK : 0;
}

/* Linux's do_sigaltstack for a new stack ss, the program's stack pointer
 * being sp: EPERM while on the current one, EINVAL for a bad mode, ENOMEM
 * below MINSIGSTKSZ. */
static long altstack_set(struct sb *sb, const stack_t *ss, uint64_t sp)
{
  if (on_altstack(sb, sp))
    return -EPERM;
  int mode = (int)((unsigned)ss->ss_flags & ~SS_AUTODISARM);
  if (mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0)
    return -EINVAL;
  uint64_t ssp = (uint64_t)ss->ss_sp, size = ss->ss_size;
  if (mode == SS_DISABLE)
    ssp = size = 0;
  else if (size < LINUX_MINSIGSTKSZ)
    return -ENOMEM;
  sb->ss_sp = ssp;
  sb->ss_size = size;
  sb->ss_flags = ss->ss_flags;
  return 0;
}

/* Build an rt_sigframe for sig on the program's stack and point regs at
 * the handler. false if the frame cannot be written (then the caller kills). */
static bool push_frame(struct sb *sb, const siginfo_t *info, uint64_t addr, struct cf_vm_regs *u)
{
  int sig = info->si_signo;
  struct ksigaction *act = &sb->act[sig];
  if (!(act->flags & SA_RESTORER))
    return false;
  uint64_t sp = u->rsp - 128; /* red zone */
  /* SA_ONSTACK: the frame goes on the alternate stack, unless there is
   * none or the program is on it already (a nested signal) */
  if ((act->flags & SA_ONSTACK) && altstack_state(sb, sp) == 0)
    sp = sb->ss_sp + sb->ss_size;
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
  /* The alternate stack as it was, for rt_sigreturn to set again; with
   * SS_AUTODISARM the handler runs with none (Linux's __save_altstack). */
  uc->uc_stack.ss_sp = (void *)sb->ss_sp;
  uc->uc_stack.ss_size = sb->ss_size;
  uc->uc_stack.ss_flags = sb->ss_size ? sb->ss_flags : SS_DISABLE;
  memcpy(si, info, sizeof *si);
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
  if (sb->ss_flags & SS_AUTODISARM)
    sb->ss_sp = sb->ss_size = 0, sb->ss_flags = SS_DISABLE;
  return true;
}

/* Deliver sig to a program stopped with user registers u. Returns true if
 * it now runs a handler (u changed), false if ignored; kills if fatal. */
static bool deliver(struct sb *sb, const siginfo_t *info, uint64_t addr, bool sync, struct cf_vm_regs *u)
{
  int sig = info->si_signo;
  struct ksigaction *act = &sb->act[sig];
  bool blocked = sb->sigmask & sig_bit(sig);
  if (sync && (blocked || act->handler == (uint64_t)SIG_IGN)) {
    kill_sandbox(sb, sig);
    return false;
  }
  if (!sync && blocked) {
    sig_queue(sb, info, 0, 0);
    return false;
  }
  if (act->handler == (uint64_t)SIG_IGN)
    return false;
  if (act->handler == (uint64_t)SIG_DFL) {
    if (default_stop(sig))
      proc_stop(sb, sig);
    else if (!default_ignored(sig))
      kill_sandbox(sb, sig);
    return false;
  }
  if (!push_frame(sb, info, addr, u)) {
    kill_sandbox(sb, SIGSEGV);
    return false;
  }
  return true;
}

void sig_fault(struct sb *sb, int sig, int code, uint64_t addr, struct cf_vm_regs *u)
{
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = sig;
  info.si_code = code;
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE)
    info.si_addr = (void *)addr;
  else
    info.si_pid = sb->pid, info.si_uid = (uid_t)sb->uid;
  if (deliver(sb, &info, addr, true, u) && cf_vm_resume_user(sb->vm, u) < 0)
    kill_sandbox(sb, SIGKILL);
}

int sig_take(struct sb *sb, uint64_t set, int *code)
{
  siginfo_t info;
  int sig = sig_dequeue(sb, set, &info);
  *code = sig ? info.si_code : 0;
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

long sig_restart_now(struct sb *sb, long nr)
{
  struct cf_vm_regs u;
  user_regs_after_syscall(sb, &u);
  return restart_call(sb, nr, &u);
}

/* After syscall nr: deliver one pending, unblocked signal. result
 * -RESTARTSYS restarts the call if the handler has SA_RESTART or no
 * handler runs, else it is EINTR. */
long signal_after_syscall(struct sb *sb, long nr, long result)
{
  if (itimer_armed(sb))
    itimer_poll(sb);
  if (sb->exited)
    return result;
  siginfo_t info;
  int sig = sig_dequeue(sb, ~sb->sigmask, &info);
  if (sb->have_saved_mask && !sig) { /* sigsuspend woken by nothing (its wait ended the run) */
    sb->sigmask = sb->saved_mask;
    sb->have_saved_mask = false;
  }
  if (!sig) {
    if (result != -RESTARTSYS)
      return result;
    return sig_restart_now(sb, nr);
  }
  struct ksigaction *act = &sb->act[sig];
  /* Ignored or fatal: no frame, no registers to read. */
  if (act->handler == (uint64_t)SIG_IGN || act->handler == (uint64_t)SIG_DFL) {
    if (act->handler == (uint64_t)SIG_DFL && default_stop(sig))
      proc_stop(sb, sig);
    else if (act->handler == (uint64_t)SIG_DFL && !default_ignored(sig))
      kill_sandbox(sb, sig);
    if (sb->have_saved_mask) {
      sb->sigmask = sb->saved_mask;
      sb->have_saved_mask = false;
    }
    if (result == -RESTARTSYS && !sb->exited) {
      return sig_restart_now(sb, nr);
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
  if (deliver(sb, &info, 0, false, &u)) {
    if (cf_vm_resume_user(sb->vm, &u) < 0)
      kill_sandbox(sb, SIGKILL);
    return SYS_NORETURN;
  }
  return result;
}

void sig_at_kick(struct sb *sb)
{
  if (!itimer_armed(sb) && !((sb->pending | sb->tpending) & ~sb->sigmask))
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
  siginfo_t info;
  int sig = sig_dequeue(sb, ~sb->sigmask, &info);
  if (sig && deliver(sb, &info, 0, false, &u) && cf_vm_resume_user(sb->vm, &u) < 0)
    kill_sandbox(sb, SIGKILL);
}

/* Drop the pending instances of the signals in set (a stop drops SIGCONT,
 * a SIGCONT the stop signals, as Linux). */
static void sig_discard(struct sb *sb, uint64_t set)
{
  int j = 0;
  for (int i = 0; i < sb->nsigq; i++)
    if (!(sig_bit(sb->sigq[i].info.si_signo) & set))
      sb->sigq[j++] = sb->sigq[i];
  sb->nsigq = j;
  sb->pending &= ~set;
  sb->tpending &= ~set;
}

/* Send info->si_signo (checked: 0..64) to the process: 0 checks only,
 * SIGKILL ends it, SIGSTOP stops it (process.c), SIGCONT continues it
 * (and is queued for a handler), the others are queued. */
static long send_info(struct sb *sb, const siginfo_t *info)
{
  int sig = info->si_signo;
  uint64_t stops = sig_bit(SIGSTOP) | sig_bit(SIGTSTP) | sig_bit(SIGTTIN) | sig_bit(SIGTTOU);
  if (sig == 0)
    return 0;
  if (sig == SIGKILL) {
    sb->pending |= sig_bit(sig);
    kill_sandbox(sb, SIGKILL);
    return 0;
  }
  if (default_stop(sig))
    sig_discard(sb, sig_bit(SIGCONT));
  if (sig == SIGSTOP) {
    proc_stop(sb, SIGSTOP);
    return 0;
  }
  if (sig == SIGCONT) {
    sig_discard(sb, stops);
    proc_cont(sb);
  }
  long r = sig_queue(sb, info, 0, 0);
  return r < 0 ? r : 0;
}

/* A signal from process `from` to process `to` (si_code code). */
static long send_from(struct sb *from, struct sb *to, int sig, int code)
{
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = sig;
  info.si_code = code;
  info.si_pid = from->pid;
  info.si_uid = (uid_t)from->uid;
  return send_info(to, &info);
}

/* kill (SI_USER), tkill and tgkill (SI_TKILL): sent by the program itself. */
static long do_kill(struct sb *sb, int sig, int code)
{
  if (sig < 0 || sig > 64)
    return -EINVAL;
  return send_from(sb, sb, sig, code);
}

/* tgkill/tkill: to the thread tid of this process. One thread: queued
 * with its siginfo (SI_TKILL) as any signal; with several, it is the
 * thread's own (tpending), taken only by it (its siginfo made then). */
static long do_tkill(struct sb *sb, int tid, int sig)
{
  if (sig < 0 || sig > 64)
    return -EINVAL;
  if (tid <= 0)
    return -EINVAL;
  struct task *t = NULL;
  if (sb->ntasks) {
    for (int i = 0; i < CF_VM_MAX_VCPUS && !t; i++)
      if (sb->tasks[i] && sb->tasks[i]->tid == tid && !sb->tasks[i]->exited)
        t = sb->tasks[i];
    if (!t)
      return -ESRCH;
  } else if (tid != sb->tid) {
    return -ESRCH;
  }
  if (!t || sig == 0 || sig == SIGKILL || sig == SIGSTOP)
    return do_kill(sb, sig, SI_TKILL);
  uint64_t bit = sig_bit(sig);
  if (!(sb->sigmask & bit) && t == sb->cur && ignored(sb, sig))
    return 0;
  if (t == sb->cur) {
    sb->tpending |= bit;
  } else {
    t->tpending |= bit;
    task_signal(t);
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
  /* Linux's restore_altstack: the frame's stack is set again, with the
   * handler's stack pointer (so not while on the stack, unless
   * SS_AUTODISARM); its errors are ignored. */
  altstack_set(sb, &uc.uc_stack, r->rsp);
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
  long r;
  while ((r = sig_wait(sb, CLOCK_MONOTONIC, NULL)) == -EAGAIN)
    ;
  if (r == -EDEADLK) {
    sb->sigmask = sb->saved_mask;
    sb->have_saved_mask = false;
    return wait_forever(sb, "sigsuspend");
  }
  return -EINTR;
}

/* ---- the system calls (systab.c's table) ---- */

long sys_rt_sigaction(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigaction(sb, a);
}

long sys_rt_sigprocmask(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigprocmask(sb, a);
}

long sys_rt_sigreturn(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigreturn(sb);
}

long sys_rt_sigpending(struct sb *sb, const uint64_t a[6], long nr)
{
  return mm_copy_out(sb, A(0), &sb->pending, 8);
}

long sys_sigaltstack(struct sb *sb, const uint64_t a[6], long nr)
{
  stack_t ss, old = {0};
  if (A(0) && mm_copy_in(sb, &ss, A(0), sizeof ss) < 0)
    return -EFAULT;
  uint64_t sp = sb->vm ? cf_vm_regs(sb->vm)->rsp : 0;
  old.ss_sp = (void *)sb->ss_sp;
  old.ss_size = sb->ss_size;
  old.ss_flags = altstack_state(sb, sp) | (sb->ss_flags & SS_AUTODISARM);
  if (A(0)) {
    long r = altstack_set(sb, &ss, sp);
    if (r < 0)
      return r;
  }
  return A(1) ? mm_copy_out(sb, A(1), &old, sizeof old) : 0;
}

/* kill's delivery to one process (process.c proc_kill picks them). */
static long send_to(struct sb *from, struct sb *to, int sig) { return send_from(from, to, sig, SI_USER); }

long sys_kill(struct sb *sb, const uint64_t a[6], long nr)
{
  return proc_kill(sb, (int)A(0), (int)A(1), send_to);
}

long sys_tkill(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_tkill(sb, (int)A(0), (int)A(1));
}

long sys_tgkill(struct sb *sb, const uint64_t a[6], long nr)
{
  if ((int)A(0) <= 0)
    return -EINVAL;
  return (int)A(0) == sb->pid ? do_tkill(sb, (int)A(1), (int)A(2)) : -ESRCH;
}

long sys_pause(struct sb *sb, const uint64_t a[6], long nr)
{
  long r;
  while ((r = sig_wait(sb, CLOCK_MONOTONIC, NULL)) == -EAGAIN)
    ;
  return r == -EDEADLK ? wait_forever(sb, "pause") : -EINTR;
}

long sys_rt_sigsuspend(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigsuspend(sb, a);
}

/* rt_sigtimedwait(set, info, timeout, size): take a pending signal of set
 * (blocked or not) with its info; wait for one until the timeout (NULL:
 * none; zero: a poll): EAGAIN when it passes, EINTR when a signal outside
 * set is to be delivered (never restarted, as Linux). */
long sys_rt_sigtimedwait(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t set;
  struct timespec ts, dl;
  if (A(3) != 8)
    return -EINVAL;
  if (mm_copy_in(sb, &set, A(0), 8) < 0)
    return -EFAULT;
  set &= ~(sig_bit(SIGKILL) | sig_bit(SIGSTOP));
  if (A(2)) {
    if (mm_copy_in(sb, &ts, A(2), sizeof ts) < 0)
      return -EFAULT;
    if (!ts_valid(&ts))
      return -EINVAL;
    dl = ts_after(CLOCK_MONOTONIC, &ts);
  }
  long r = 1;
  for (;;) {
    siginfo_t info;
    int sig = sig_dequeue(sb, set, &info);
    if (sig) {
      if (A(1) && mm_copy_out(sb, A(1), &info, sizeof info) < 0)
        return -EFAULT; /* taken all the same, as Linux */
      return sig;
    }
    if (r == 0)
      return -EAGAIN;
    if (r == -EDEADLK)
      return wait_forever(sb, "rt_sigtimedwait");
    if (r < 0)
      return -EINTR;
    sb->sigwait_set = set; /* sig_wait ends when one of set comes */
    r = sig_wait(sb, CLOCK_MONOTONIC, A(2) ? &dl : NULL);
    sb->sigwait_set = 0;
  }
}

/* rt_sigqueueinfo, rt_tgsigqueueinfo: the program's own siginfo (its
 * si_signo replaced by sig), to itself. As Linux: a si_code >= 0 or
 * SI_TKILL (what the kernel or kill() would fill) only to itself, else
 * EPERM; no such process or thread ESRCH; a real-time signal past the
 * queue's limit EAGAIN. */
static long do_sigqueue(struct sb *sb, int tgid, int tid, int sig, uint64_t uinfo, bool tg)
{
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (mm_copy_in(sb, &info, uinfo, 48) < 0) /* the kernel's siginfo is 48 bytes */
    return -EFAULT;
  info.si_signo = sig;
  if (tg && (tgid <= 0 || tid <= 0))
    return -EINVAL;
  if ((info.si_code >= 0 || info.si_code == SI_TKILL) && (tg ? tid : tgid) != sb->tid)
    return -EPERM;
  if (tgid != sb->pid || (tg && tid != sb->tid))
    return -ESRCH;
  if (sig < 0 || sig > 64)
    return -EINVAL;
  return send_info(sb, &info);
}

long sys_rt_sigqueueinfo(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigqueue(sb, (int)A(0), 0, (int)A(1), A(2), false);
}

long sys_rt_tgsigqueueinfo(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sigqueue(sb, (int)A(0), (int)A(1), (int)A(2), A(3), true);
}

/* pidfd_send_signal(pidfd, sig, info, flags): kill(2) of the pidfd's
 * process (info NULL: SI_USER from the caller), or rt_sigqueueinfo's with
 * the caller's siginfo (a si_code >= 0 or SI_TKILL only to the calling
 * thread's own process, else EPERM, as Linux). A zombie takes it and
 * ignores it; a reaped process is ESRCH. An open /proc/PID directory
 * serves as a pidfd here, as on Linux. The PIDFD_SIGNAL_* scopes of
 * Linux 6.9 are EINVAL, as before them (table note). */
long sys_pidfd_send_signal(struct sb *sb, const uint64_t a[6], long nr)
{
  int sig = (int)A(1);
  if (A(3))
    return -EINVAL;
  struct file *f = fs_get(sb, (int)A(0));
  struct sb *t;
  if (f && f->type == F_PIDFD) {
    t = pidfd_proc(sb, f);
  } else if (f && f->type == F_VDIR && !strncmp(f->path, "/proc/", 6) && f->path[6] >= '1' && f->path[6] <= '9' &&
             strspn(f->path + 6, "0123456789") == strlen(f->path + 6)) {
    /* a /proc/PID directory stands for its process too (Linux's tgid_pidfd_to_pid) */
    t = atoi(f->path + 6) == PROC_INIT ? proc_init() : proc_find_any(sb, atoi(f->path + 6));
  } else {
    return -EBADF;
  }
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (A(2)) {
    if (mm_copy_in(sb, &info, A(2), sizeof info) < 0)
      return -EFAULT;
    if (info.si_signo != sig)
      return -EINVAL;
    if ((t != sb || sb->tid != sb->pid) && (info.si_code >= 0 || info.si_code == SI_TKILL))
      return -EPERM;
  } else {
    info.si_signo = sig;
    info.si_code = SI_USER;
    info.si_pid = sb->pid;
    info.si_uid = (uid_t)sb->uid;
  }
  if (!t)
    return -ESRCH;
  if (proc_is_init(t)) /* dropped (info given: EPERM above unless si_code < 0) */
    return proc_init_signal(sb, sig);
  if (sig < 0 || sig > 64)
    return -EINVAL;
  if (t->zombie)
    return 0;
  return send_info(t, &info);
}

/* ---- state file (snapshot.c orchestrates) ---- */

/* The blocked mask, the pending set and the dispositions. */
void sig_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, sb->sigmask);
  w_u64(w, sb->pending);
  w_bytes(w, sb->act, sizeof sb->act);
}

int sig_load(struct sb *sb, struct rbuf *r, const char *name)
{
  sb->sigmask = r_u64(r);
  sb->pending = r_u64(r);
  sb->nsigq = 0; /* the instances' info: timer.c (itimer_load, timers_load) */
  r_bytes(r, sb->act, sizeof sb->act);
  return r->err ? cf_fail(EINVAL, "template '%s': malformed state file", name) : 0;
}

/* Version 4: the alternate signal stack (a tag, its address, size, flags). */
#define ALTSTACK_TAG 0x4b5453544c414343ull /* "CCALTSTK" */

void sig_save_altstack(struct sb *sb, struct wbuf *w)
{
  w_u64(w, ALTSTACK_TAG);
  w_u64(w, sb->ss_sp);
  w_u64(w, sb->ss_size);
  w_u64(w, (uint64_t)(uint32_t)sb->ss_flags);
}

int sig_load_altstack(struct sb *sb, struct rbuf *r, const char *name)
{
  sb->ss_sp = sb->ss_size = 0;
  sb->ss_flags = 0;
  if (r->off == r->n)
    return 0; /* version 1-3: none */
  uint64_t tag = r_u64(r), sp = r_u64(r), size = r_u64(r), fl = r_u64(r);
  if (r->err || tag != ALTSTACK_TAG || (fl & ~(uint64_t)(SS_AUTODISARM | SS_ONSTACK | SS_DISABLE)) ||
      size > sb->mem_size || (size && (sp > sb->mem_size - size)))
    return cf_fail(EINVAL, "template '%s': bad alternate signal stack", name);
  sb->ss_sp = sp;
  sb->ss_size = size;
  sb->ss_flags = (int)fl;
  return 0;
}
