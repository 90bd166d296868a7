/* cf_sandbox_run: one program in one micro-VM, from ELF load to exit, or
 * to its ready point (a pause, for templates and branches).
 *
 * The run loop owns the vCPU thread: every exit is a system call (served
 * by sys_dispatch), a CPU exception or a refused access (turned into a
 * signal: a handler runs, or the sandbox ends with a report), or a kick
 * from a timer. Nothing the program does ends the VMM process.
 *
 * The timeout is a per-thread POSIX timer sending SIGALRM to this thread;
 * its handler only sets a flag and kicks the vCPU (tl_sb is the one piece
 * of thread-local state, needed by the signal handler). The program's
 * interval timers use the same mechanism (run_timers_arm: timers whose
 * value is 2 or 3 only kick, and the kick exit raises and delivers the
 * signal, sig_at_kick, even to a loop that makes no system call). The handler is
 * installed once per process and left in place: sandboxes run on several
 * threads at once (cowfork fork), and saving/restoring a process-wide
 * disposition per run would race.
 *
 * Pausing: before serving a system call the loop checks the ready point
 * (CF_READY_STDIN: the call reads fd 0; a branch: it reads fd 0 at end of
 * input) and after serving it the marker (CF_READY_MARKER). A pause records
 * the user registers to resume with and whether the call is still pending;
 * the next run (in this sandbox or in a child of its template) serves the
 * pending call first. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
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

/* Both limits signal SIGALRM to the running thread; the CPU-time timer's
 * value is 1, so the report can say which one ended the run. */
static void on_alarm(int sig, siginfo_t *si, void *uc)
{
  (void)sig;
  (void)uc;
  struct sb *sb = tl_sb;
  if (si && si->si_code == SI_TKILL)
    return; /* a kick from another task (thread.c task_kick): its only work is interrupting KVM_RUN */
  if (!sb || !sb->vm)
    return;
  if (si && si->si_code == SI_TIMER && si->si_value.sival_int >= 2) {
    /* an interval timer (run_timers_arm): sig_at_kick; with threads,
     * every task looks (a process signal goes to one not blocking it) */
    if (sb->tasks[0])
      task_kick_all(sb);
    else
      cf_vm_kick(sb->vm);
    return;
  }
  if (si && si->si_code == SI_TIMER && si->si_value.sival_int == 1 && !sb->timed_out)
    sb->cpu_exceeded = true;
  sb->timed_out = true;
  if (sb->tasks[0])
    task_kick_all(sb);
  else
    cf_vm_kick(sb->vm);
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
  char where[64];
  if (addr_known)
    snprintf(where, sizeof where, "address 0x%llx", (unsigned long long)addr);
  else
    snprintf(where, sizeof where, "an unknown address (KVM does not give it)");
  snprintf(sb->report, sizeof sb->report,
           "%s at %s\n"
           "  rip %016llx rsp %016llx rflags %016llx\n"
           "  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
           "  rsi %016llx rdi %016llx rbp %016llx r8  %016llx\n"
           "  r9  %016llx r10 %016llx r11 %016llx r12 %016llx\n"
           "  r13 %016llx r14 %016llx r15 %016llx",
           what, where, (unsigned long long)u->rip,
           (unsigned long long)u->rsp, (unsigned long long)u->rflags, (unsigned long long)u->rax,
           (unsigned long long)u->rbx, (unsigned long long)u->rcx, (unsigned long long)u->rdx,
           (unsigned long long)u->rsi, (unsigned long long)u->rdi, (unsigned long long)u->rbp,
           (unsigned long long)u->r8, (unsigned long long)u->r9, (unsigned long long)u->r10,
           (unsigned long long)u->r11, (unsigned long long)u->r12, (unsigned long long)u->r13,
           (unsigned long long)u->r14, (unsigned long long)u->r15);
}


static bool fd0_pollin(struct sb *sb, long nr, const uint64_t a[6])
{
  if (nr == SYS_poll || nr == SYS_ppoll) {
    uint64_t n = a[1] > (uint64_t)fd_limit(sb) ? (uint64_t)fd_limit(sb) : a[1];
    const struct pollfd *p = mm_ptr(sb, a[0], n * sizeof *p, PROT_READ);
    for (uint64_t i = 0; p && i < n; i++)
      if (p[i].fd == 0 && (p[i].events & POLLIN))
        return true;
    return false;
  }
  if (nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2)
    return epoll_watches_fd0(sb, (int)a[0]);
  /* select, pselect6: nfds > 0 and bit 0 of readfds */
  if ((int64_t)a[0] <= 0 || !a[1])
    return false;
  const uint8_t *set = mm_ptr(sb, a[1], 1, PROT_READ);
  return set && (*set & 1);
}

/* Whether the call reads fd 0 (the CF_READY_STDIN point). A preadv2 with
 * RWF_NOWAIT does not wait for input, so it is no pause point: that is how
 * a program that needs to see the end of its input to finish its last
 * request (shim/py/driver.py without a final "#---") learns it is there
 * without pausing first, and pauses at its next (waiting) read, after
 * the request ran. */
static bool reads_fd0(struct sb *sb, long nr, const uint64_t a[6])
{
  unsigned fl = sys_flags(nr);
  if (fl & CF_SYSCALL_FD0)
    return a[0] == 0 && !(nr == SYS_preadv2 && (a[5] & RWF_NOWAIT));
  if (fl & CF_SYSCALL_READY)
    return fd0_pollin(sb, nr, a);
  return false;
}

/* fd 0 has nothing more to give: end of a file, or a closed pipe. */
static bool stdin_at_eof(struct sb *sb)
{
  struct file *f = fs_get(sb, 0);
  if (!f || f->type == F_DEV)
    return true;
  if (f->type == F_TMP) {
    struct stat st;
    tmp_stat(f->node, &st);
    return f->off >= (uint64_t)st.st_size;
  }
  if (f->type != F_HOST)
    return false;
  struct stat st;
  if (fstat(f->hostfd, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t cur = lseek(f->hostfd, 0, SEEK_CUR);
    return cur >= st.st_size;
  }
  struct pollfd p = {.fd = f->hostfd, .events = POLLIN};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) && !(p.revents & POLLIN);
}

static void pause_at(struct sb *sb, bool pending)
{
  const char *why = proc_pause_refused(sb);
  if (why) {
    snprintf(sb->report, sizeof sb->report, "the sandbox cannot be paused now: %s", why);
    kill_sandbox(sb, SIGKILL);
    return;
  }
  struct cf_vm_regs u = *cf_vm_regs(sb->vm);
  u.rip = u.rcx; /* after the SYSCALL instruction, in both syscall modes */
  u.rflags = u.r11;
  sb->pause_regs = u;
  sb->pause_pending = pending;
  sb->paused = true;
  task_pause_others(sb);
  proc_pause_all(sb); /* and the sandbox's other processes (process.c) */
}

/* Did this write to fd 1 complete the marker? Keeps the tail of stdout. */
static bool marker_seen(struct sb *sb, long nr, const uint64_t a[6], long ret)
{
  size_t ml = strlen(sb->marker);
  if (ret <= 0 || !ml)
    return false;
  struct iovec one = {(void *)a[1], (size_t)ret}, *iov = &one;
  size_t cnt = 1;
  if (nr == SYS_writev) {
    cnt = a[2] > 1024 ? 1024 : a[2];
    iov = mm_ptr(sb, a[1], cnt * sizeof *iov, PROT_READ);
    if (!iov)
      return false;
  }
  size_t left = (size_t)ret;
  bool found = false;
  for (size_t i = 0; i < cnt && left; i++) {
    size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
    const char *p = mm_ptr(sb, (uint64_t)iov[i].iov_base, n, PROT_READ);
    if (!p)
      return false;
    left -= n;
    /* Search tail + data without copying all of the data. */
    for (size_t k = 0; k < n && !found;) {
      size_t take = n - k < 4096 ? n - k : 4096;
      char buf[sizeof sb->marker_tail + 4096];
      memcpy(buf, sb->marker_tail, sb->marker_tail_len);
      memcpy(buf + sb->marker_tail_len, p + k, take);
      size_t bl = sb->marker_tail_len + take;
      if (memmem(buf, bl, sb->marker, ml))
        found = true;
      size_t keep = ml - 1 < bl ? ml - 1 : bl;
      memcpy(sb->marker_tail, buf + bl - keep, keep);
      sb->marker_tail_len = keep;
      k += take;
    }
  }
  return found;
}

/* Serve the system call in the registers. pending_resume: the call a
 * template paused on, served in a child before its first entry (the VM has
 * never exited, so the return is done here, not by cf_vm_syscall_return). */
static void serve_syscall(struct sb *sb, double t_start, bool pending_resume)
{
  struct cf_vm_regs *r = cf_vm_regs(sb->vm);
  uint64_t a[6] = {r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9};
  long nr = (long)r->rax;
  if (__builtin_expect(seccomp_test_armed, 0))
    seccomp_test_fire(); /* COWFORK_SECCOMP_TEST=1: dies of SIGSYS here */
  if (sb->paused) { /* another thread paused the sandbox: the call runs when this one goes on */
    sig_restart_now(sb, nr);
    return;
  }
  if (sb->ready == CF_READY_STDIN && reads_fd0(sb, nr, a) && (!sb->eof_pause || stdin_at_eof(sb))) {
    pause_at(sb, true);
    return;
  }
  long ret = sys_dispatch(sb, nr, a);
  if (ret != SYS_NORETURN) {
    r->rax = (uint64_t)ret;
    if (pending_resume) {
      r->rip = r->rcx;
      r->rflags = (r->r11 & 0x240cd5) | 0x202;
      cf_vm_regs_dirty(sb->vm);
    } else {
      cf_vm_syscall_return(sb->vm);
    }
  }
  bool out = (nr == SYS_write || nr == SYS_writev) && (a[0] == 1 || a[0] == 2) && ret > 0;
  if (out && sb->t_first_output == 0)
    sb->t_first_output = now_us() - t_start;
  if (sb->ready == CF_READY_MARKER && out && a[0] == 1 && ret != SYS_NORETURN && !sb->exited &&
      marker_seen(sb, nr, a, ret))
    pause_at(sb, false);
}

/* The loop of one task (t NULL: the only one, before any thread), with
 * the lock held; it is released while the vCPU runs. Task 0's loop is the
 * run's caller's (run_loop); the others' run on their own threads
 * (thread.c). */
void task_run(struct sb *sb, struct task *t)
{
  struct cf_vm_exit ex;
  for (;;) {
    if (sb->exited || sb->timed_out || (t && (t->exited || t->handoff)))
      break;
    /* A pause (by this task or another): stopped where it can go on later,
     * or run on to the next exit first (thread.c task_stop). */
    if (sb->paused && task_stop(sb, t))
      break;
    if (sb->stopped) { /* SIGSTOP: no program code until a SIGCONT (process.c) */
      proc_stopped_wait(sb);
      continue;
    }
    struct cf_vm *vm = sb->vm;
    if (!cpu_get(sb, t))
      continue;
    task_unlock(sb);
    int rc = cf_vm_run(vm, &ex);
    task_lock(sb, t);
    cpu_put(sb, t);
    if ((t && t->exited) || sb->exited)
      break; /* ended meanwhile (another thread's execve, a kill): its exit is not served */
    if (rc < 0) {
      snprintf(sb->report, sizeof sb->report, "the VM failed: %s", cf_error());
      sb->vm_broken = true;
      sb->exited = true;
      sb->kill_signal = SIGKILL;
      task_end_all(sb);
      break;
    }
    if (!sb->first_exit_us)
      sb->first_exit_us = now_us();
    struct cf_vm_regs *r = cf_vm_regs(sb->vm);
    switch (ex.reason) {
    case CF_VM_EXIT_SYSCALL:
      serve_syscall(sb, sb->t_spawn, false);
      break;
    case CF_VM_EXIT_EXCEPTION: {
      struct cf_vm_regs u;
      if (cf_vm_exception_state(sb->vm, &u) < 0) {
        snprintf(sb->report, sizeof sb->report, "the VM failed: %s", cf_error());
        sb->vm_broken = true;
        kill_sandbox(sb, SIGKILL);
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
      sig_at_kick(sb);
      break;
    }
    /* a new thread (the first clone): this one is task 0 from now on */
    if (!t && sb->cur)
      t = sb->cur;
  }
}

static void run_loop(struct sb *sb, struct cf_sandbox_result *res, double t_start)
{
  task_lock(sb, NULL);
  proc_run_start(sb);
  sb->first_exit_us = 0;
  if (task_resume(sb) < 0) { /* a paused sandbox's other threads */
    snprintf(sb->report, sizeof sb->report, "the sandbox's threads cannot go on: %s", cf_error());
    kill_sandbox(sb, SIGKILL);
    task_end_all(sb);
  }
  /* A sandbox of several processes: every one has tasks (process.c), and
   * the others go on too. */
  if (sb->w && task_make0(sb) < 0) {
    snprintf(sb->report, sizeof sb->report, "out of memory");
    kill_sandbox(sb, SIGKILL);
  }
  proc_resume_all(sb);
  if (sb->resume_pending && !sb->exited) {
    sb->resume_pending = false;
    serve_syscall(sb, sb->t_spawn, true);
  }
  if (!sb->entered && !sb->exited && !sb->paused && !sb->timed_out) {
    sb->entered = true;
    sb->t_enter = now_us();
  }
  task_run(sb, sb->cur);
  task_finish(sb);
  if (!sb->paused || sb->exited || sb->timed_out)
    proc_end_all(sb); /* the first process's end ends the others */
  else
    proc_pause_wait(sb); /* they stop too (process.c) */
  task_unlock(sb);
  if (sb->first_exit_us)
    res->first_exit_us = sb->first_exit_us - t_start;
  if (sb->timed_out && !sb->exited) {
    sb->exited = true;
    sb->kill_signal = SIGKILL;
    if (sb->cpu_exceeded)
      snprintf(sb->report, sizeof sb->report, "CPU time limit of %g s exceeded", sb->opts->cpu_limit);
    else
      snprintf(sb->report, sizeof sb->report, "timed out after %g s", sb->opts->timeout);
  }
}

static void run_timers_start(struct sb *sb);
static void run_timers_end(struct sb *sb);

/* A paused process waits for the sandbox to run again: then task 0 on
 * this thread and its held threads (true), or its end (false). */
static bool proc_go_on(struct sb *c)
{
  if (!proc_paused_wait(c))
    return false;
  if (task_process(c) < 0 || task_resume(c) < 0) {
    snprintf(c->report, sizeof c->report, "the process cannot go on after the pause: %s", cf_error());
    kill_sandbox(c, SIGKILL);
    task_finish(c);
    return false;
  }
  return true;
}

/* The host thread of a forked process (process.c): its task 0's run loop,
 * then its exit. A pause of the sandbox stops the process here, kept whole
 * (its task 0's state in sb and pause_regs, its other threads held), until
 * the sandbox runs again or ends. */
static void *proc_main(void *arg)
{
  struct sb *c = arg;
  tl_sb = c;
  pthread_mutex_lock(sb_mutex(c));
  bool go = c->tasks[0] || proc_go_on(c); /* none: a template's, paused */
  while (go) {
    struct task *t = c->tasks[0];
    __atomic_store_n(&t->host_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    run_timers_start(c);
    task_run(c, t);
    bool pause = c->paused && !c->exited && !c->timed_out && t->stopped;
    if (pause) {
      c->pause_regs = t->stop_regs;
      c->pause_pending = false;
    }
    task_finish(c);
    run_timers_end(c);
    go = pause && proc_go_on(c);
  }
  bool reaped = proc_exit(c);
  task_unlock(c);
  if (reaped)
    proc_free_reaped(c);
  tl_sb = NULL;
  return NULL;
}

int proc_start(struct sb *c)
{
  run_kick_install();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t th;
  int e = pthread_create(&th, &attr, proc_main, c);
  if (!e && c->tasks[0])
    c->tasks[0]->host = th;
  pthread_attr_destroy(&attr);
  return e ? cf_fail(e, "pthread_create: %s", strerror(e)) : 0;
}

/* The host thread of a vCPU kept for vfork children (process.c struct
 * vlend): runs each child lent the vCPU, from its vfork to its end, or to
 * its execve (its own VM from then on: a host thread of its own goes on
 * with it, proc_start, and this one waits for the next child). */
static void *lend_main(void *arg)
{
  struct vlend *l = arg;
  __atomic_store_n(&l->host_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  for (;;) {
    while (sem_wait(&l->go) < 0)
      ; /* EINTR: a kick */
    if (__atomic_load_n(&l->quit, __ATOMIC_ACQUIRE) && !l->busy)
      break;
    struct sb *c = l->child;
    struct task *t = c->tasks[0];
    tl_sb = c;
    __atomic_store_n(&t->host_tid, l->host_tid, __ATOMIC_RELEASE);
    task_lock(c, t);
    run_timers_start(c);
    task_run(c, t);
    bool moved = false, reaped = false;
    if (t->handoff) {
      t->handoff = false;
      run_timers_end(c);
      __atomic_store_n(&t->host_tid, 0, __ATOMIC_RELEASE);
      if (!c->exited && !c->timed_out && !t->exited) {
        moved = proc_start(c) == 0;
        if (!moved) {
          snprintf(c->report, sizeof c->report, "execve: no host thread for the process: %s", cf_error());
          kill_sandbox(c, SIGKILL);
        }
      }
      if (!moved)
        run_timers_start(c);
    }
    if (!moved) {
      task_finish(c);
      run_timers_end(c);
      reaped = proc_exit(c);
    }
    l->busy = false;
    l->child = NULL;
    bool quit = __atomic_load_n(&l->quit, __ATOMIC_ACQUIRE);
    task_unlock(c);
    if (reaped)
      proc_free_reaped(c);
    tl_sb = NULL;
    if (quit)
      break;
  }
  sem_destroy(&l->go);
  free(l);
  return NULL;
}

int proc_start_lent(struct sb *c, struct vlend *l)
{
  if (!l->started) {
    run_kick_install();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&l->host, &attr, lend_main, l);
    pthread_attr_destroy(&attr);
    if (e)
      return cf_fail(e, "pthread_create: %s", strerror(e));
    l->started = true;
  }
  c->tasks[0]->host = l->host;
  sem_post(&l->go);
  return 0;
}

static pthread_once_t alarm_once = PTHREAD_ONCE_INIT;
static void install_alarm(void)
{
  struct sigaction sa = {.sa_sigaction = on_alarm, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
}

void run_kick_install(void) { pthread_once(&alarm_once, install_alarm); }

/* The program's timers (timer.c) during a run: host timers on this thread
 * at the next expiry of a timer that signals on CLOCK_MONOTONIC (ITIMER_REAL,
 * POSIX timers) and on the guest's CPU clock (ITIMER_VIRTUAL/PROF, POSIX
 * timers of a CPU clock: this thread's CPU clock, which KVM_RUN counts), made
 * on first need, deleted at the run's end (run_timers_end). A timer that
 * cannot be made leaves the expiry to the next system call. */
void run_timers_arm(struct sb *sb)
{
  if (!sb->running)
    return;
  for (int k = 0; k < 2; k++) {
    uint64_t dl;
    if (k == 0) {
      dl = timer_next(sb, false);
    } else {
      dl = timer_next(sb, true);
      if (dl) /* guest CPU time to this thread's clock */
        dl = sb->run_cpu0 + (dl > sb->cpu_ns ? dl - sb->cpu_ns : 1);
    }
    if (!dl && !sb->have_htimer[k])
      continue;
    if (!sb->have_htimer[k]) {
      pthread_once(&alarm_once, install_alarm);
      struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM,
                             .sigev_value.sival_int = 2 + k};
      sev._sigev_un._tid = sb->run_tid;
      if (timer_create(k == 0 ? CLOCK_MONOTONIC : sb->run_clock, &sev, &sb->htimer[k]) < 0)
        continue;
      sb->have_htimer[k] = true;
    }
    struct itimerspec its = {.it_value = {(time_t)(dl / 1000000000), (long)(dl % 1000000000)}};
    timer_settime(sb->htimer[k], TIMER_ABSTIME, &its, NULL);
  }
}

void run_timers_rekick(struct sb *sb)
{
  if (!sb->running)
    return;
  if (!sb->have_htimer[0]) {
    pthread_once(&alarm_once, install_alarm);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM, .sigev_value.sival_int = 2};
    sev._sigev_un._tid = sb->run_tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, &sb->htimer[0]) < 0)
      return;
    sb->have_htimer[0] = true;
  }
  struct itimerspec its = {.it_value = {0, 1000000}};
  timer_settime(sb->htimer[0], 0, &its, NULL);
}

static void run_timers_start(struct sb *sb)
{
  sb->run_tid = (pid_t)syscall(SYS_gettid);
  if (pthread_getcpuclockid(pthread_self(), &sb->run_clock) != 0)
    sb->run_clock = CLOCK_THREAD_CPUTIME_ID;
  struct timespec ts;
  clock_gettime(sb->run_clock, &ts);
  sb->run_cpu0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  sb->running = true;
  if (itimer_armed(sb))
    run_timers_arm(sb);
}

static void run_timers_end(struct sb *sb)
{
  sb->cpu_ns = guest_cpu_ns(sb);
  sb->cpu_dead_ns = 0; /* counted in cpu_ns now */
  sb->running = false;
  for (int k = 0; k < 2; k++)
    if (sb->have_htimer[k]) {
      timer_delete(sb->htimer[k]);
      sb->have_htimer[k] = false;
    }
}

struct cf_sandbox *cf_sandbox_new(const struct cf_sandbox_opts *opts)
{
  struct cf_sandbox *box = calloc(1, sizeof *box);
  if (!box)
    return cf_fail_null(ENOMEM, "calloc: %m");
  struct sb *sb = &box->s;
  sb->t_spawn = now_us();
  sb->opts = opts;
  sb->trace = opts->trace ? opts->trace : stderr;
  sb->rootfd = -1;
  pthread_mutex_init(&sb->lock, NULL);
  pthread_cond_init(&sb->task_cv, NULL);
  sb->pid = sb->tid = 2;
  sb->uid = (int)getuid();
  sb->gid = (int)getgid();
  task_init_creds(sb);
  sb->boot_ns = mono_ns();
  if (opts->hostname && !cf_sandbox_hostname_ok(opts->hostname)) {
    free(box);
    return cf_fail_null(EINVAL, "bad hostname '%s' (1-64 bytes, no control characters or '/')", opts->hostname);
  }
  snprintf(sb->hostname, sizeof sb->hostname, "%s", opts->hostname ? opts->hostname : CF_DEFAULT_HOSTNAME);
  sb->ready = opts->ready;
  if (opts->ready == CF_READY_MARKER) {
    if (!opts->marker || !*opts->marker || strlen(opts->marker) >= sizeof sb->marker) {
      free(box);
      return cf_fail_null(EINVAL, "the ready marker must be 1-%zu bytes", sizeof sb->marker - 1);
    }
    snprintf(sb->marker, sizeof sb->marker, "%s", opts->marker);
  }
  snprintf(sb->program, sizeof sb->program, "%s", opts->program);
  sb->vm = cf_vm_create(opts->mem_size ? opts->mem_size : 256ull << 20);
  if (!sb->vm)
    goto err;
  sb->mem = cf_vm_mem(sb->vm);
  sb->mem_size = cf_vm_mem_size(sb->vm);
  sb->mmap_top = MMAP_TOP(sb->mem_size);
  if (fs_init(sb, opts->root ? opts->root : "/", opts->stdio) < 0)
    goto err;
  if (opts->cwd && fs_chdir(sb, opts->cwd) < 0)
    goto err;
  /* A "#!" script runs its interpreter, as execve (elf.c elf_script). */
  uint64_t entry, sp;
  char(*pre)[PATH_MAX] = malloc(ELF_SCRIPT_WORDS * PATH_MAX);
  char prog[PATH_MAX], **av = NULL;
  snprintf(prog, sizeof prog, "%s", opts->program);
  long npre = pre ? elf_script(sb, prog, pre) : -ENOMEM;
  if (npre > 0 && !(av = elf_script_argv(pre, (int)npre, opts->argv)))
    npre = -ENOMEM;
  free(pre);
  if (npre < 0) {
    cf_fail((int)-npre, "%s: %s", opts->program, strerror((int)-npre));
    goto err;
  }
  int lr = elf_load(sb, -1, prog, av ? av : opts->argv, opts->envp, &entry, &sp);
  for (char **p = av; p && *p; p++)
    free(*p);
  free(av);
  if (lr < 0)
    goto err;
  if (opts->verbose)
    fprintf(sb->trace, "[sandbox] %s: %llu bytes mapped copy-on-write from the file, %llu copied\n",
            opts->program, (unsigned long long)sb->elf_mapped, (unsigned long long)sb->elf_copied);
  if (cf_vm_enter_user(sb->vm, entry, sp) < 0)
    goto err;
  return box;
err:
  cf_sandbox_free(box);
  return NULL;
}

void cf_sandbox_free(struct cf_sandbox *box)
{
  if (!box)
    return;
  struct sb *sb = &box->s;
  int e = errno;
  proc_world_free(sb);
  free(sb->load_procs);
  fs_fini(sb);
  vm_free(sb->vm, sb->gm); /* unmaps a child's memory backend too */
  park_free(sb);
  task_free_held(sb);
  task_free_creds(sb);
  free(sb->replaced);
  free(sb->vmas);
  cf_dirty_free(&sb->end_dirty);
  free(box);
  errno = e;
}

/* A new generation id (docs/sandbox.md, "Generation"), written before the
 * first run of every sandbox: a root one, and every child of a template
 * (a new VM, a reused one, a spare one). Not again on later runs of the
 * same sandbox (a live sandbox's next exec, an unparked child: the page is
 * part of what parking keeps). Written here and not at the fork so that a
 * child that never runs (COWFORK_CHECK_RESET's fresh child) is the
 * template's byte for byte. 128 bits from the host's getrandom, with the
 * version and variant bits of an RFC 9562 version 4 UUID. */
static int gen_new(struct sb *sb)
{
  uint8_t *p = cf_vm_generation_page(sb->vm);
  if (p) {
    uint8_t id[CF_VM_GENERATION_LEN];
    if (getrandom(id, sizeof id, 0) != (ssize_t)sizeof id)
      return cf_fail(errno ? errno : EIO, "getrandom: %m");
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
    memcpy(p, id, sizeof id);
  }
  sb->gen_done = true;
  return 0;
}

/* A guest's write to a pipe with no reader is its EPIPE and SIGPIPE
 * (fs.c), never this process's death: SIGPIPE is ignored here unless the
 * caller set a handler of its own. */
static void host_sigpipe(void)
{
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
    signal(SIGPIPE, SIG_IGN);
}
static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

int cf_sandbox_run_until(struct cf_sandbox *box, struct cf_sandbox_result *res)
{
  pthread_once(&sigpipe_once, host_sigpipe);
  struct sb *sb = &box->s;
  const struct cf_sandbox_opts *opts = sb->opts;
  memset(res, 0, sizeof *res);
  double t0 = now_us();
  timer_t timers[2];
  int ntimers = 0;
  if (sb->exited)
    return cf_fail(EINVAL, "the sandbox has ended");
  /* From here on this thread serves a guest: the filter goes on before
   * anything touches guest state, once per thread (shim/seccomp.c). */
  if (seccomp_enter() < 0)
    return -1;
  if (sb->park && reuse_unpark(sb) < 0)
    return -1;
  if (!sb->gen_done && gen_new(sb) < 0)
    return -1;
  /* Paused before serving a call (a read of fd 0): going on re-enters at
   * CPL3 after the SYSCALL with the call still to serve (live.c); entering
   * the VM as it stopped would end the syscall stub with rax holding the
   * call's number. */
  if (sb->paused && sb->pause_pending && !sb->resume_pending) {
    if (cf_vm_resume_user(sb->vm, &sb->pause_regs) < 0)
      return -1;
    sb->resume_pending = true;
  }
  sb->paused = false;
  cf_dirty_free(&sb->end_dirty); /* the run writes: stale */
  sb->have_end_dirty = false;
  tl_sb = sb;
  /* The wall clock and this thread's CPU clock (KVM_RUN time counts as the
   * thread's, so the guest's computing is limited, not only the shim's). */
  const struct {
    double secs;
    clockid_t clock;
  } limits[2] = {{opts->timeout, CLOCK_MONOTONIC}, {opts->cpu_limit, CLOCK_THREAD_CPUTIME_ID}};
  for (int i = 0; i < 2; i++) {
    if (!(limits[i].secs > 0))
      continue;
    pthread_once(&alarm_once, install_alarm);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM,
                           .sigev_value.sival_int = i};
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(limits[i].clock, &sev, &timers[ntimers]) < 0) {
      int e = errno;
      while (ntimers)
        timer_delete(timers[--ntimers]);
      tl_sb = NULL;
      return cf_fail(e, "timer_create: %s", strerror(e));
    }
    double secs = limits[i].secs;
    struct itimerspec its = {.it_value = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)}};
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1;
    its.it_interval.tv_nsec = 10000000; /* re-kick if the first lands between checks */
    timer_settime(timers[ntimers++], 0, &its, NULL);
  }
  double t_run = now_us();
  run_timers_start(sb);
  run_loop(sb, res, t_run);
  run_timers_end(sb);
  res->run_us = now_us() - t_run;
  while (ntimers)
    timer_delete(timers[--ntimers]);
  tl_sb = NULL;

  res->paused = sb->paused && !sb->exited;
  res->exit_code = sb->exit_code;
  res->signal = sb->kill_signal;
  res->timed_out = sb->timed_out;
  res->status = sb->kill_signal ? 128 + sb->kill_signal : sb->exit_code;
  snprintf(res->report, sizeof res->report, "%s", sb->report);
  res->syscalls = sb->nsys;
  res->enosys = sb->enosys;
  res->exits = cf_vm_stats(sb->vm)->exits;
  res->create_us = cf_vm_stats(sb->vm)->create_us;
  res->elf_mapped_bytes = sb->elf_mapped;
  res->elf_copied_bytes = sb->elf_copied;
  res->pages_mapped = sb->pages_mapped;
  res->pages_copied = sb->pages_copied;
  res->spawn_us = sb->entered ? sb->t_enter - sb->t_spawn : 0;
  res->first_output_us = sb->t_first_output;
  const struct cf_mem *memb = sb_memb(sb);
  if (memb) {
    struct cf_dirty d = {0};
    if (cf_dirty_scan(0, sb->mem, sb->mem_size, memb->backend->dirty_kind(memb->flags), CF_DIRTY_AUTO, &d) == 0) {
      res->private_bytes = d.pages * PAGE;
      if (sb->forked && memb->backend == &cf_mem_backend_file) { /* what a VM reuse resets (reuse.c) */
        sb->end_dirty = d;
        sb->have_end_dirty = true;
        d = (struct cf_dirty){0};
      }
    }
    cf_dirty_free(&d);
  }
  if (opts->verbose)
    fprintf(sb->trace,
            "[sandbox] VM create %.0f us, first exit %.0f us after entry, run %.0f us, %llu exits, "
            "%llu syscalls (%llu ENOSYS), %.0f us total%s; file pages: %llu mapped copy-on-write, %llu copied\n",
            res->create_us, res->first_exit_us, res->run_us, (unsigned long long)res->exits,
            (unsigned long long)res->syscalls, (unsigned long long)res->enosys, now_us() - t0,
            res->paused ? ", paused" : "", (unsigned long long)res->pages_mapped,
            (unsigned long long)res->pages_copied);
  return 0;
}

int cf_sandbox_run(const struct cf_sandbox_opts *opts, struct cf_sandbox_result *res)
{
  memset(res, 0, sizeof *res);
  struct cf_sandbox *box = cf_sandbox_new(opts);
  if (!box)
    return -1;
  int rc = cf_sandbox_run_until(box, res);
  cf_sandbox_free(box);
  return rc;
}
