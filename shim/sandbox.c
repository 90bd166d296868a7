/* cf_sandbox_run: one program in one micro-VM, from ELF load to exit.
 *
 * The run loop owns the vCPU thread: every exit is a system call (served
 * by sys_dispatch), a CPU exception or a refused access (turned into a
 * signal: a handler runs, or the sandbox ends with a report), or a kick
 * from the timeout timer. Nothing the program does ends the VMM process.
 *
 * The timeout is a per-thread POSIX timer sending SIGALRM to this thread;
 * its handler only sets a flag and kicks the vCPU (tl_sb is the one piece
 * of thread-local state, needed by the signal handler). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

static __thread struct sb *tl_sb;

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void on_alarm(int sig)
{
  (void)sig;
  struct sb *sb = tl_sb;
  if (sb && sb->vm) {
    sb->timed_out = true;
    cf_vm_kick(sb->vm);
  }
}

static const char *exc_name(int v)
{
  static const char *const n[32] = {"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
                                    "#BR bound range", "#UD invalid opcode", "#NM device not available",
                                    "#DF double fault", "coprocessor overrun", "#TS invalid TSS",
                                    "#NP segment not present", "#SS stack fault", "#GP general protection",
                                    "#PF page fault", "reserved", "#MF x87 error", "#AC alignment check",
                                    "#MC machine check", "#XM SIMD error"};
  return v >= 0 && v < 32 && n[v] ? n[v] : "exception";
}

static int exc_signal(int v, int *code)
{
  switch (v) {
  case 0: *code = 1; return SIGFPE;  /* FPE_INTDIV */
  case 16:
  case 19: *code = 0; return SIGFPE;
  case 1:
  case 3: *code = 1; return SIGTRAP;
  case 6: *code = 1; return SIGILL;  /* ILL_ILLOPC */
  case 17: *code = 1; return SIGBUS; /* BUS_ADRALN */
  case 14: *code = 1; return SIGSEGV; /* SEGV_MAPERR */
  default: *code = 0x80; return SIGSEGV; /* SI_KERNEL */
  }
}

static void report(struct sb *sb, const char *what, uint64_t addr, bool addr_known, const struct cf_vm_regs *u)
{
  snprintf(sb->report, sizeof sb->report,
           "%s at address %s0x%llx\n"
           "  rip %016llx rsp %016llx rflags %016llx\n"
           "  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
           "  rsi %016llx rdi %016llx rbp %016llx r8  %016llx\n"
           "  r9  %016llx r10 %016llx r11 %016llx r12 %016llx\n"
           "  r13 %016llx r14 %016llx r15 %016llx",
           what, addr_known ? "" : "(unknown, rip) ", (unsigned long long)addr, (unsigned long long)u->rip,
           (unsigned long long)u->rsp, (unsigned long long)u->rflags, (unsigned long long)u->rax,
           (unsigned long long)u->rbx, (unsigned long long)u->rcx, (unsigned long long)u->rdx,
           (unsigned long long)u->rsi, (unsigned long long)u->rdi, (unsigned long long)u->rbp,
           (unsigned long long)u->r8, (unsigned long long)u->r9, (unsigned long long)u->r10,
           (unsigned long long)u->r11, (unsigned long long)u->r12, (unsigned long long)u->r13,
           (unsigned long long)u->r14, (unsigned long long)u->r15);
}

static void run_loop(struct sb *sb, struct cf_sandbox_result *res, double t_start)
{
  struct cf_vm_exit ex;
  bool first = true;
  while (!sb->exited) {
    if (sb->timed_out)
      break;
    if (cf_vm_run(sb->vm, &ex) < 0) {
      snprintf(sb->report, sizeof sb->report, "the VM failed: %s", cf_error());
      sb->exited = true;
      sb->kill_signal = SIGKILL;
      break;
    }
    if (first) {
      res->first_exit_us = now_us() - t_start;
      first = false;
    }
    struct cf_vm_regs *r = cf_vm_regs(sb->vm);
    switch (ex.reason) {
    case CF_VM_EXIT_SYSCALL: {
      uint64_t a[6] = {r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9};
      long ret = sys_dispatch(sb, (long)r->rax, a);
      if (ret != SYS_NORETURN) {
        r->rax = (uint64_t)ret;
        cf_vm_syscall_return(sb->vm);
      }
      break;
    }
    case CF_VM_EXIT_EXCEPTION: {
      struct cf_vm_regs u;
      if (cf_vm_exception_state(sb->vm, &u) < 0) {
        snprintf(sb->report, sizeof sb->report, "the VM failed: %s", cf_error());
        sb->exited = true;
        sb->kill_signal = SIGKILL;
        break;
      }
      int code, sig = exc_signal(ex.vector, &code);
      char what[96];
      snprintf(what, sizeof what, "%s (error code 0x%llx)", exc_name(ex.vector),
               (unsigned long long)ex.error_code);
      uint64_t addr = ex.vector == 14 ? ex.addr : u.rip;
      report(sb, what, addr, true, &u);
      sig_fault(sb, sig, code, addr, &u);
      if (!sb->exited)
        sb->report[0] = 0;
      break;
    }
    case CF_VM_EXIT_FAULT: {
      struct cf_vm_regs u = *r;
      /* KVM gives no address: if the instruction itself is not readable
       * memory, it is the address; else it is somewhere the instruction
       * points. */
      const struct vma *v = mm_find(sb, u.rip);
      bool fetch = !v || !(v->prot & PROT_READ);
      uint64_t addr = ex.addr ? ex.addr : fetch ? u.rip : 0;
      report(sb, "access to unmapped or protected memory", addr, ex.addr || fetch, &u);
      sig_fault(sb, SIGSEGV, 2 /* SEGV_ACCERR */, addr, &u);
      if (!sb->exited)
        sb->report[0] = 0;
      break;
    }
    case CF_VM_EXIT_KICKED:
      break;
    }
  }
  if (sb->timed_out && !sb->exited) {
    sb->exited = true;
    sb->kill_signal = SIGKILL;
    snprintf(sb->report, sizeof sb->report, "timed out after %g s", sb->opts->timeout);
  }
}

int cf_sandbox_run(const struct cf_sandbox_opts *opts, struct cf_sandbox_result *res)
{
  memset(res, 0, sizeof *res);
  double t0 = now_us();
  struct sb *sb = calloc(1, sizeof *sb);
  if (!sb)
    return cf_fail(ENOMEM, "calloc: %m");
  sb->opts = opts;
  sb->trace = opts->trace ? opts->trace : stderr;
  sb->rootfd = -1;
  sb->pid = sb->tid = 2;
  sb->uid = (int)getuid();
  sb->gid = (int)getgid();
  int rc = -1;
  timer_t timer;
  bool have_timer = false;
  struct sigaction old_alarm;

  sb->vm = cf_vm_create(opts->mem_size ? opts->mem_size : 256ull << 20);
  if (!sb->vm)
    goto out;
  res->create_us = cf_vm_stats(sb->vm)->create_us;
  sb->mem = cf_vm_mem(sb->vm);
  sb->mem_size = cf_vm_mem_size(sb->vm);
  sb->mmap_top = sb->mem_size - STACK_SIZE - STACK_GAP;
  if (fs_init(sb, opts->root ? opts->root : "/", opts->stdio) < 0)
    goto out;
  uint64_t entry, sp;
  if (elf_load(sb, opts->program, opts->argv, opts->envp, &entry, &sp) < 0)
    goto out;
  if (opts->verbose)
    fprintf(sb->trace, "[sandbox] %s: %llu bytes mapped copy-on-write from the file, %llu copied\n",
            opts->program, (unsigned long long)sb->elf_mapped, (unsigned long long)sb->elf_copied);
  if (cf_vm_enter_user(sb->vm, entry, sp) < 0)
    goto out;

  tl_sb = sb;
  if (opts->timeout > 0) {
    struct sigaction sa = {.sa_handler = on_alarm};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &old_alarm);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM};
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0) {
      cf_fail(errno, "timer_create: %m");
      sigaction(SIGALRM, &old_alarm, NULL);
      goto out;
    }
    have_timer = true;
    struct itimerspec its = {.it_value = {(time_t)opts->timeout,
                                          (long)((opts->timeout - (double)(time_t)opts->timeout) * 1e9)}};
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1;
    its.it_interval.tv_nsec = 10000000; /* re-kick if the first lands between checks */
    timer_settime(timer, 0, &its, NULL);
  }
  double t_run = now_us();
  run_loop(sb, res, t_run);
  res->run_us = now_us() - t_run;
  rc = 0;

  res->exit_code = sb->exit_code;
  res->signal = sb->kill_signal;
  res->timed_out = sb->timed_out;
  res->status = sb->kill_signal ? 128 + sb->kill_signal : sb->exit_code;
  snprintf(res->report, sizeof res->report, "%s", sb->report);
  res->syscalls = sb->nsys;
  res->enosys = sb->enosys;
  res->exits = cf_vm_stats(sb->vm)->exits;
  res->elf_mapped_bytes = sb->elf_mapped;
  res->elf_copied_bytes = sb->elf_copied;
  if (opts->verbose)
    fprintf(sb->trace,
            "[sandbox] VM create %.0f us, first exit %.0f us after entry, run %.0f us, %llu exits, "
            "%llu syscalls (%llu ENOSYS), %.0f us total\n",
            res->create_us, res->first_exit_us, res->run_us, (unsigned long long)res->exits,
            (unsigned long long)res->syscalls, (unsigned long long)res->enosys, now_us() - t0);
out:
  if (have_timer) {
    timer_delete(timer);
    sigaction(SIGALRM, &old_alarm, NULL);
  }
  tl_sb = NULL;
  int e = errno;
  fs_fini(sb);
  cf_vm_destroy(sb->vm);
  free(sb);
  errno = e;
  return rc;
}
