/* Threads: a task (a Linux thread) per vCPU, each on a host thread of its
 * own, and the one lock that serializes the shim.
 *
 * A sandbox starts with one task and no struct task at all: the run's
 * caller thread runs vCPU 0 (sandbox.c run_loop). The first
 * clone(CLONE_THREAD) makes struct task 0 for it and one for the new
 * thread; every later thread adds one, on vCPU i of the same VM
 * (cf_vm_vcpu: same memory, page tables and system area, so a write by one
 * thread is seen by all at once, as in a process).
 *
 * The lock (sb->lock) is held while a task runs shim code and released
 * while its vCPU runs and while it blocks. So the shim's state stays
 * single-threaded code: no handler changed. What is per thread in Linux and
 * lived in struct sb before threads (the signal mask and the thread's own
 * pending signals, sigsuspend's saved mask, the alternate signal stack, the
 * tid and clear_child_tid address, the vCPU: sb->vm) stays there as the
 * running task's copy: task_lock switches them when another task takes the
 * lock (a context switch; nothing happens while one task runs alone). The
 * task's struct holds them while it does not hold the lock.
 *
 * Blocking (timer.c sig_wait, sig_poll, and the futex wait here) sleeps in
 * ppoll on the host fds waited for plus the task's wake eventfd, with the
 * lock released. Whatever can end another task's wait writes that eventfd:
 * wake_all (shim state changed: re-check), a signal for it, a futex wake,
 * the end of the sandbox (task_end_all also kicks running vCPUs). A wait
 * that nothing can end with one task alive ends the sandbox with a report
 * (wait_forever); with several, another task may end it, so it sleeps.
 *
 * futex: waiters are kept here by key (process and guest address, or a
 * shared memory object and offset: below), woken under the lock: FUTEX_WAIT checks the value and
 * queues itself under the same lock a waker takes, so no wake is lost.
 *
 * A vCPU keeps its host thread: when a thread ends, its host thread parks
 * (sem_wait on task.go) and the next thread made on that vCPU reuses it
 * (task_clone), so KVM_RUN of a vCPU always comes from one host thread.
 * Linux's KVM_RUN from another thread than the vCPU's last pays for the
 * pid change (6.12 waits for an RCU grace period there: 14.6 ms a call in
 * scripts/kvm-vm.sh's VM), which a new host thread per guest thread paid
 * at every pthread_create. Parked threads end when the
 * run does (task_finish).
 *
 * Pausing (a template, a branch, a live sandbox between execs, then a
 * park): the task that reaches the ready point pauses (sandbox.c pause_at,
 * task_pause_others) and kicks the others; each stops in its run loop at
 * the next point its vCPU can be continued from at CPL3 (task_stop,
 * vmm.h cf_vm_user_state); a wait it was in returns and its call is
 * rewound to run again (sys_dispatch: EINTR under a pause becomes a
 * restart). task_finish then keeps them in sb->held with their vCPU state
 * and puts the pauser's state in vCPU 0 and sb, so a paused sandbox looks
 * like one that ran alone plus a list: snapshot.c saves the list
 * (task_save_threads) and task_resume starts each on a vCPU and host thread
 * of its own when the sandbox runs again, in the same VM or another.
 *
 * Limits: at most max_threads (CF_VM_MAX_VCPUS) threads alive at once (clone is EAGAIN
 * past it, as Linux past RLIMIT_NPROC). The vCPUs a process keeps for its
 * vfork children (process.c, from the top) are not given to threads; a
 * vfork child takes its parent's address space (proc_mm_pull) whenever it
 * takes the lock (switch_to). */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "internal.h"
#include "shim/shim.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1u << 31)
#endif

_Static_assert(CF_SANDBOX_MAX_THREADS == CF_VM_MAX_VCPUS, "a vCPU per thread");

/* ---- the lock and the context switch ---- */

static void ctx_out(struct sb *sb, struct task *t)
{
  t->sigmask = sb->sigmask;
  t->tpending = sb->tpending;
  t->sigwait_set = sb->sigwait_set;
  t->saved_mask = sb->saved_mask;
  t->have_saved_mask = sb->have_saved_mask;
  t->ss_sp = sb->ss_sp;
  t->ss_size = sb->ss_size;
  t->ss_flags = sb->ss_flags;
  t->tid_address = sb->tid_address;
  t->robust_list = sb->robust_list;
  memcpy(t->cpus_off, sb->cpus_off, sizeof t->cpus_off);
  t->policy = sb->policy;
}

static void ctx_in(struct sb *sb, struct task *t)
{
  sb->sigmask = t->sigmask;
  sb->tpending = t->tpending;
  sb->sigwait_set = t->sigwait_set;
  sb->saved_mask = t->saved_mask;
  sb->have_saved_mask = t->have_saved_mask;
  sb->ss_sp = t->ss_sp;
  sb->ss_size = t->ss_size;
  sb->ss_flags = t->ss_flags;
  sb->tid_address = t->tid_address;
  sb->robust_list = t->robust_list;
  memcpy(sb->cpus_off, t->cpus_off, sizeof sb->cpus_off);
  sb->policy = t->policy;
  sb->tid = t->tid;
  sb->vm = t->vm;
}

/* The lock is held: make t the running task. */
static void switch_to(struct sb *sb, struct task *t)
{
  if (sb->mm_parent) /* a vfork child: its parent's address space may have changed meanwhile */
    proc_mm_pull(sb);
  if (t && sb->cur != t) {
    if (sb->cur)
      ctx_out(sb, sb->cur);
    ctx_in(sb, t);
    sb->cur = t;
  }
}

/* Wait on cv (the lock released) for a wake or one time slice (10 ms),
 * then be task t again: 0 or ETIMEDOUT. */
static int slice_wait(struct sb *sb, pthread_cond_t *cv, struct task *t)
{
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_nsec += 10000000;
  if (dl.tv_nsec >= 1000000000) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000;
  }
  int e = pthread_cond_timedwait(cv, sb_mutex(sb), &dl);
  switch_to(sb, t);
  return e;
}

void task_lock(struct sb *sb, struct task *t)
{
  pthread_mutex_lock(sb_mutex(sb));
  switch_to(sb, t);
}

void task_unlock(struct sb *sb) { pthread_mutex_unlock(sb_mutex(sb)); }

/* ---- waking ---- */

static void wake_task(struct task *t)
{
  uint64_t one = 1;
  ssize_t n = write(t->wakefd, &one, sizeof one);
  (void)n; /* a full counter is a pending wake already */
}

void wake_all(struct sb *sb)
{
  /* with processes, every one's: they share open files (an eventfd, an
   * epoll) and /tmp */
  int n = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &n) : &sb;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
      struct task *t = ps[k]->tasks[i];
      if (t && t != sb->cur && t->blocked)
        wake_task(t);
    }
}

/* Make t's vCPU leave KVM_RUN: the next entry returns at once
 * (immediate_exit), and a SIGALRM (si_code SI_TKILL: sandbox.c on_alarm
 * does nothing else) interrupts the one in progress, or its ppoll.
 * Async-signal-safe. */
void task_kick(struct task *t)
{
  cf_vm_kick(t->vm);
  pid_t tid = __atomic_load_n(&t->host_tid, __ATOMIC_ACQUIRE);
  if (tid && tid != (pid_t)syscall(SYS_gettid))
    syscall(SYS_tgkill, getpid(), tid, SIGALRM);
}

void task_signal(struct task *t)
{
  task_kick(t);
  wake_task(t);
}

void task_kick_all(struct sb *sb)
{
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = __atomic_load_n(&sb->tasks[i], __ATOMIC_ACQUIRE);
    if (t)
      task_signal(t);
  }
}

int task_live(const struct sb *sb) { return sb->ntasks ? sb->nlive : 1; }

int sb_cpus(const struct sb *sb)
{
  unsigned n = sb->opts ? sb->opts->cpus : 0;
  return !n ? CF_SANDBOX_DEFAULT_CPUS : n > CF_VM_MAX_VCPUS ? CF_VM_MAX_VCPUS : (int)n;
}

/* ---- CPUs: at most sb_cpus vCPUs in KVM_RUN at once ----
 * A task queues (sb->cpu_q, in order) and waits until it is the first in
 * line and a CPU is free; one that waits a time slice (10 ms) first in line
 * kicks the tasks on a CPU, which give theirs back at that exit and queue
 * behind it: round robin. One thread alone (t NULL) never waits. Only the
 * first in line can go, so a CPU given back wakes that one (cpu_wake), not
 * the whole line: with N threads in line a broadcast made every VM exit
 * cost N wake-ups (40 busy Python threads took minutes under emulation). */

void cpu_wake(struct sb *sb, bool all)
{
  if (all) {
    for (int i = 0; i < sb->cpu_nq; i++)
      pthread_cond_signal(&sb->cpu_q[i]->cpu_cv);
  } else if (sb->cpu_nq && sb->cpu_running < sb_cpus(sb)) {
    pthread_cond_signal(&sb->cpu_q[0]->cpu_cv);
  }
}

bool cpu_get(struct sb *sb, struct task *t)
{
  if (!t)
    return true;
  int n = sb_cpus(sb);
  if (sb->cpu_running < n && !sb->cpu_nq) {
    sb->cpu_running++;
    t->on_cpu = true;
    return true;
  }
  sb->cpu_q[sb->cpu_nq++] = t; /* at most one entry per task: room for all */
  bool ok = true;
  while (sb->cpu_q[0] != t || sb->cpu_running >= n) {
    if (sb->exited || sb->timed_out || t->exited || (sb->paused && !t->run_on)) {
      ok = false;
      break;
    }
    int e = slice_wait(sb, &t->cpu_cv, t);
    if (e == ETIMEDOUT && sb->cpu_q[0] == t)
      for (int i = 0; i < CF_VM_MAX_VCPUS; i++)
        if (sb->tasks[i] && sb->tasks[i]->on_cpu)
          task_kick(sb->tasks[i]);
  }
  /* Our turn (or we leave): out of the line; the next may go. */
  for (int i = 0, k = 0; i < sb->cpu_nq; i++)
    if (sb->cpu_q[i] != t)
      sb->cpu_q[k++] = sb->cpu_q[i];
  sb->cpu_nq--;
  if (ok) {
    sb->cpu_running++;
    t->on_cpu = true;
  }
  cpu_wake(sb, false);
  return ok;
}

void cpu_put(struct sb *sb, struct task *t)
{
  if (!t || !t->on_cpu)
    return;
  t->on_cpu = false;
  sb->cpu_running--;
  cpu_wake(sb, false);
}

long task_block(struct sb *sb, struct pollfd *fds, unsigned long n, int64_t timeout_ns)
{
  struct task *me = sb->cur;
  struct timespec ts, *tp = NULL;
  if (timeout_ns >= 0) {
    ts = (struct timespec){.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    tp = &ts;
  }
  if (!me) { /* one thread: nobody to wake it but a signal or its fds */
    if (!n) {
      if (tp)
        nanosleep(tp, NULL);
      else
        pause();
      return 0;
    }
    int k = ppoll(fds, n, tp, NULL);
    return k < 0 ? (errno == EINTR ? 0 : -errno) : k;
  }
  struct pollfd all[n + 1];
  if (n) /* fds is NULL for none (sig_wait): memcpy's arguments must not be */
    memcpy(all, fds, n * sizeof *fds);
  all[n] = (struct pollfd){.fd = me->wakefd, .events = POLLIN};
  me->blocked = true;
  task_unlock(sb);
  int k = ppoll(all, n + 1, tp, NULL);
  int e = errno;
  task_lock(sb, me);
  me->blocked = false;
  if (k > 0 && all[n].revents) {
    uint64_t v;
    ssize_t r = read(me->wakefd, &v, sizeof v);
    (void)r;
    k--;
    me->woken = true;
  }
  for (unsigned long i = 0; i < n; i++)
    fds[i].revents = all[i].revents;
  return k < 0 ? (e == EINTR ? 0 : -e) : k;
}

bool task_take_wake(struct sb *sb)
{
  struct task *me = sb->cur;
  if (!me || !me->woken)
    return false;
  me->woken = false;
  return true;
}

/* ---- creating and ending tasks ---- */

static struct task *task_alloc(struct sb *sb, int idx)
{
  struct task *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (t->wakefd < 0) {
    free(t);
    return NULL;
  }
  t->sb = sb;
  t->idx = idx;
  return t;
}

/* ---- the CPU-time limit with threads ----
 * The run's limit timer (sandbox.c) counts the run's own thread, task 0.
 * Once there are others, this host thread adds up all of their CPU time
 * (guest_cpu_ns, less the earlier runs') every 10 ms and ends the sandbox
 * past the limit, as the timer does: a program cannot escape --cpu-limit
 * by computing in threads, nor in other processes (their CPU time is
 * added: process.c proc_others_cpu_ns). */
static void *cpu_watch(void *arg)
{
  struct sb *sb = arg;
  uint64_t limit = (uint64_t)(sb->opts->cpu_limit * 1e9);
  pthread_mutex_lock(sb_mutex(sb));
  while (!sb->watch_quit) {
    if (!sb->timed_out && !sb->exited && guest_cpu_ns(sb) - sb->cpu_ns + proc_others_cpu_ns(sb) >= limit) {
      sb->cpu_exceeded = true;
      sb->timed_out = true;
      task_end_all(sb);
    }
    slice_wait(sb, &sb->task_cv, NULL);
  }
  pthread_mutex_unlock(sb_mutex(sb));
  return NULL;
}

/* Task 0: the thread that ran alone so far (the run's caller), its
 * context the one in sb. */
static int task0_make(struct sb *sb)
{
  if (sb->ntasks)
    return 0;
  struct task *t = task_alloc(sb, 0);
  if (!t)
    return -1;
  t->vm = sb->vm;
  t->tid = sb->tid;
  t->host = pthread_self();
  t->host_tid = sb->run_tid;
  t->own_thread = false;
  sb->cur = t;
  __atomic_store_n(&sb->tasks[0], t, __ATOMIC_RELEASE);
  sb->ntasks = 1;
  sb->nlive = 1;
  if (!sb->next_tid)
    sb->next_tid = sb->pid + 1;
  sb->watch_quit = false;
  if (sb->opts && sb->opts->cpu_limit > 0 && sb->running && proc_is_first(sb)) /* the tree's: process.c */
    sb->watching = pthread_create(&sb->watch, NULL, cpu_watch, sb) == 0;
  return 0;
}

int task_make0(struct sb *sb) { return task0_make(sb); }

int task_process(struct sb *c)
{
  struct task *t = task_alloc(c, 0);
  if (!t)
    return -1;
  t->vm = c->vm;
  t->tid = c->tid;
  t->own_thread = false; /* its host thread is the process's (proc_start) */
  c->cur = t;
  __atomic_store_n(&c->tasks[0], t, __ATOMIC_RELEASE);
  c->ntasks = c->nlive = 1;
  return 0;
}

/* Clear and wake the exiting task's clear_child_tid word (CLONE_CHILD_CLEARTID,
 * set_tid_address), as Linux does at a thread's exit. */
static void clear_child_tid(struct sb *sb)
{
  if (!sb->tid_address)
    return;
  uint32_t *p = mm_ptr(sb, sb->tid_address, 4, PROT_READ | PROT_WRITE);
  if (p) {
    __atomic_store_n(p, 0, __ATOMIC_SEQ_CST);
    futex_wake(sb, sb->tid_address, 1, FUTEX_BITSET_MATCH_ANY);
  }
  sb->tid_address = 0;
}

void task_end_all(struct sb *sb)
{
  if (sb->ntasks)
    task_kick_all(sb);
}

long task_exit(struct sb *sb, int code)
{
  if (task_live(sb) <= 1) { /* the last thread: the process exits */
    sb->exited = true;
    sb->exit_code = code;
    task_end_all(sb);
    return SYS_NORETURN;
  }
  robust_exit(sb);
  clear_child_tid(sb);
  struct task *me = sb->cur;
  me->exited = true;
  sb->nlive--;
  pthread_cond_broadcast(&sb->task_cv);
  return SYS_NORETURN;
}

/* The host thread of a task other than 0, and of every later task on
 * its vCPU: between two, it is parked on t->go. */
static void *task_main(void *arg)
{
  struct task *t = arg;
  struct sb *sb = t->sb;
  __atomic_store_n(&t->host_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
  for (;;) {
    task_lock(sb, t);
    task_run(sb, t);
    t->cpu_ns = thread_cpu_ns() - t->cpu0;
    if (!t->exited && !t->stopped) { /* the sandbox ended under it (not a pause) */
      t->exited = true;
      sb->nlive--;
    }
    t->done = true;
    pthread_cond_broadcast(&sb->task_cv);
    task_unlock(sb);
    /* Parked: no lock taken until task_clone reuses t or task_finish ends us. */
    while (sem_wait(&t->go) < 0)
      ; /* EINTR: a kick */
    if (__atomic_load_n(&t->quit, __ATOMIC_ACQUIRE))
      return NULL;
  }
}

/* End the host thread of a task that is done (parked: it takes no lock
 * after that, so joining it with the lock held cannot wait for us). Its
 * vCPU stays in the VM for the next thread. */
static void host_end(struct task *t)
{
  __atomic_store_n(&t->quit, true, __ATOMIC_RELEASE);
  sem_post(&t->go);
  pthread_join(t->host, NULL);
  sem_destroy(&t->go);
}


int task_copy_cpu(struct sb *sb, struct cf_vm *to, uint64_t sp, bool settls, uint64_t tls)
{
  /* The caller's registers after the SYSCALL, rax 0, the new stack; its
   * FPU state and FS base (Linux copies them), TLS if set. */
  struct cf_vm_regs u = *cf_vm_regs(sb->vm);
  u.rip = u.rcx;
  u.rflags = u.r11;
  u.rax = 0;
  if (sp)
    u.rsp = sp;
  static __thread struct cf_vm_cpu cpu;
  if (cf_vm_save_cpu(sb->vm, &cpu) < 0)
    return -1;
  if (settls)
    cpu.fs_base = tls;
  return cf_vm_load_cpu(to, &cpu, &u);
}

static unsigned thread_cap(const struct sb *sb)
{
  unsigned cap = sb->opts && sb->opts->max_threads ? sb->opts->max_threads : CF_SANDBOX_MAX_THREADS;
  return cap > CF_VM_MAX_VCPUS ? CF_VM_MAX_VCPUS : cap;
}

/* clone(2)/clone3(2) of a thread: flags, the new stack pointer (0: the
 * caller's), parent_tid, child_tid, tls. The caller checked the flags. */
long task_clone(struct sb *sb, uint64_t flags, uint64_t sp, uint64_t parent_tid, uint64_t child_tid, uint64_t tls)
{
  if ((flags & (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD)) !=
      (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD))
    return -EINVAL; /* a thread with its own fd table or cwd: not kept apart here (table note) */
  if (flags & (CLONE_VFORK | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
               CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_PTRACE | CLONE_UNTRACED))
    return -EINVAL;
  if ((flags & CLONE_SETTLS) && tls >= (1ull << 47))
    return -EPERM;
  if (!sb->vm)
    return -EAGAIN;
  if (sb->mm_parent)
    return -EAGAIN; /* a vfork child in its parent's memory: its vCPUs are the parent's (table note) */
  if (task0_make(sb) < 0)
    return -EAGAIN;
  unsigned cap = thread_cap(sb);
  if (sb->w && (unsigned)proc_threads(sb) >= cap)
    return -EAGAIN; /* max_threads counts every process's threads */
  /* The first free slot, or one whose thread ended: its host thread is
   * parked and runs the new thread (the opening note). */
  int idx = -1;
  for (int i = 1; i < (int)cap && idx < 0; i++)
    if ((!sb->tasks[i] || sb->tasks[i]->done) && !sb->vcpu_lent[i]) /* (lent: a vfork child runs on it) */
      idx = i;
  if (idx < 0)
    return -EAGAIN;
  struct cf_vm *vm = cf_vm_vcpu(sb->vm, idx);
  if (!vm)
    return -EAGAIN;
  struct task *old = sb->tasks[idx], *t = old;
  if (!t && !(t = task_alloc(sb, idx)))
    return -EAGAIN;
  if (task_copy_cpu(sb, vm, sp, flags & CLONE_SETTLS, tls) < 0)
    goto fail;
  if (old) { /* the ended thread's task, made new; its CPU time to the dead */
    sb->cpu_dead_ns += old->cpu_ns;
    uint64_t v;
    while (read(old->wakefd, &v, sizeof v) > 0)
      ; /* a stale wake */
    pthread_t host = old->host;
    pid_t host_tid = old->host_tid;
    int wakefd = old->wakefd;
    memset(old, 0, offsetof(struct task, go)); /* all but go (its thread waits on it) */
    memset(&old->quit, 0, sizeof *old - offsetof(struct task, quit));
    old->sb = sb;
    old->idx = idx;
    old->host = host;
    old->host_tid = host_tid;
    old->wakefd = wakefd;
    clockid_t c;
    struct timespec ts;
    if (pthread_getcpuclockid(old->host, &c) == 0 && clock_gettime(c, &ts) == 0)
      old->cpu0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  }
  t->vm = vm;
  t->tid = new_id(sb);
  /* Its context: the caller's mask, CPUs and policy (Linux's copy_process;
   * SCHED_RESET_ON_FORK acts on real-time policies only: none here); no
   * pending signals, no alternate stack. */
  t->sigmask = sb->sigmask;
  memcpy(t->cpus_off, sb->cpus_off, sizeof t->cpus_off);
  t->policy = sb->policy;
  t->tid_address = flags & CLONE_CHILD_CLEARTID ? child_tid : 0;
  /* As Linux: a tid that cannot be stored is not an error. */
  if (flags & CLONE_PARENT_SETTID)
    mm_copy_out(sb, parent_tid, &t->tid, 4);
  if (flags & CLONE_CHILD_SETTID)
    mm_copy_out(sb, child_tid, &t->tid, 4);
  t->own_thread = true;
  if (old) { /* its parked host thread runs it */
    sb->nlive++;
    sem_post(&t->go);
    return t->tid;
  }
  run_kick_install();
  if (sem_init(&t->go, 0, 0) < 0)
    goto fail;
  __atomic_store_n(&sb->tasks[idx], t, __ATOMIC_RELEASE);
  sb->ntasks++;
  sb->nlive++;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  int e = pthread_create(&t->host, &attr, task_main, t);
  pthread_attr_destroy(&attr);
  if (e) {
    __atomic_store_n(&sb->tasks[idx], NULL, __ATOMIC_RELEASE);
    sb->ntasks--;
    sb->nlive--;
    sem_destroy(&t->go);
    goto fail;
  }
  return t->tid;
fail:
  if (!old) { /* a reused task stays as it was: ended, its thread parked */
    close(t->wakefd);
    free(t);
  }
  return -EAGAIN;
}

long task_exec_alone(struct sb *sb)
{
  struct task *me = sb->cur;
  if (task_live(sb) <= 1)
    return 0;
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = sb->tasks[i];
    if (!t || t == me || t->exited)
      continue;
    t->exited = true;
    sb->nlive--;
    task_signal(t);
  }
  /* Wait until each has left the shim and its vCPU (task 0: its loop). */
  for (;;) {
    bool busy = false;
    for (int i = 0; i < CF_VM_MAX_VCPUS; i++)
      if (sb->tasks[i] && sb->tasks[i] != me && !sb->tasks[i]->done)
        busy = true;
    if (!busy) {
      me->tid = sb->tid = sb->pid; /* the exec'ing thread becomes the leader, as Linux */
      return 0;
    }
    if (sb->exited || sb->timed_out)
      return -EINTR;
    slice_wait(sb, &sb->task_cv, me);
  }
}

/* After a pause: the tasks alive but the pauser go to sb->held with
 * their vCPU state; the pauser's goes to vCPU 0 (pause_regs), and its
 * context to sb, as if it had always run alone there. */
static int hold_tasks(struct sb *sb)
{
  struct task *p = sb->pauser, *t0 = sb->tasks[0];
  int n = 0;
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++)
    n += sb->tasks[i] && sb->tasks[i] != p && !sb->tasks[i]->exited;
  if (n && !(sb->held = calloc((size_t)n, sizeof *sb->held)))
    return cf_fail(ENOMEM, "out of memory");
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = sb->tasks[i];
    if (!t || t == p || t->exited)
      continue;
    if (!(t->cpu = malloc(sizeof *t->cpu)) || cf_vm_save_cpu(t->vm, t->cpu) < 0)
      return t->cpu ? -1 : cf_fail(ENOMEM, "out of memory");
    sb->held[sb->nheld++] = t;
  }
  if (p != t0) {
    struct cf_vm_cpu *c = malloc(sizeof *c);
    int rc = !c ? cf_fail(ENOMEM, "out of memory")
                : cf_vm_save_cpu(p->vm, c) < 0 || cf_vm_load_cpu(t0->vm, c, &sb->pause_regs) < 0 ? -1 : 0;
    free(c);
    if (rc < 0)
      return -1;
  }
  return 0;
}

static bool is_held(const struct sb *sb, const struct task *t)
{
  for (int i = 0; i < sb->nheld; i++)
    if (sb->held[i] == t)
      return true;
  return false;
}

int task_finish(struct sb *sb)
{
  if (!sb->ntasks)
    return 0;
  struct task *t0 = sb->tasks[0];
  bool pause = sb->paused && !sb->exited && !sb->timed_out && sb->pauser;
  /* Task 0 (this thread) is done: the others run on until the last one
   * exits, or until the sandbox ends (which kicks them), or stop for the
   * pause. */
  if (!t0->exited && !(pause && t0->stopped)) {
    t0->exited = true;
    sb->nlive--;
  }
  t0->done = true;
  pthread_cond_broadcast(&sb->task_cv);
  for (;;) {
    bool running = false;
    for (int i = 1; i < CF_VM_MAX_VCPUS; i++)
      if (sb->tasks[i] && !sb->tasks[i]->done)
        running = true;
    if (!running)
      break;
    for (int i = 1; i < CF_VM_MAX_VCPUS; i++) {
      struct task *t = sb->tasks[i];
      if (t && !t->done && (sb->exited || sb->timed_out || (sb->paused && !t->stopped)))
        task_signal(t);
    }
    slice_wait(sb, &sb->task_cv, NULL);
  }
  if (sb->watching) { /* the lock released: it takes it to see quit */
    sb->watch_quit = true;
    pthread_cond_broadcast(&sb->task_cv);
    pthread_mutex_unlock(sb_mutex(sb));
    pthread_join(sb->watch, NULL);
    pthread_mutex_lock(sb_mutex(sb));
    sb->watching = false;
  }
  pause = sb->paused && !sb->exited && !sb->timed_out && sb->pauser;
  for (int i = 1; i < CF_VM_MAX_VCPUS; i++)
    if (sb->tasks[i])
      host_end(sb->tasks[i]);
  /* Every task's context in its struct, then sb's from the one that goes
   * on in vCPU 0: task 0, or after a pause the pauser. */
  if (sb->cur)
    ctx_out(sb, sb->cur);
  int rc = 0;
  if (pause && (rc = hold_tasks(sb)) < 0) {
    snprintf(sb->report, sizeof sb->report, "the threads could not be paused: %s", cf_error());
    kill_sandbox(sb, SIGKILL);
    task_free_held(sb);
  }
  ctx_in(sb, pause && rc == 0 ? sb->pauser : t0);
  sb->vm = t0->vm;
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = sb->tasks[i];
    if (!t)
      continue;
    __atomic_store_n(&sb->tasks[i], NULL, __ATOMIC_RELEASE);
    if (i)
      sb->cpu_dead_ns += t->cpu_ns;
    close(t->wakefd);
    t->wakefd = -1;
    if (!is_held(sb, t))
      free(t);
  }
  sb->cur = sb->pauser = NULL;
  sb->ntasks = sb->nlive = 0;
  /* A still-running sandbox (task 0 exited, the others after it) is over. */
  if (!sb->exited && !sb->timed_out && !sb->paused)
    sb->exited = true;
  return rc;
}

/* ---- pausing with threads ---- */

void task_pause_others(struct sb *sb)
{
  struct task *me = sb->cur;
  if (!me)
    return;
  sb->pauser = me;
  me->stopped = true;
  for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = sb->tasks[i];
    if (t && t != me && !t->done)
      task_signal(t);
  }
  cpu_wake(sb, true);
}

bool task_stop(struct sb *sb, struct task *t)
{
  if (!t || t->stopped)
    return true;
  struct cf_vm_regs u;
  int r = cf_vm_user_state(t->vm, &u);
  if (r < 0) {
    snprintf(sb->report, sizeof sb->report, "the VM failed: %s", cf_error());
    sb->vm_broken = true;
    kill_sandbox(sb, SIGKILL);
    task_end_all(sb);
    return true;
  }
  t->run_on = r == 0;
  if (r == 0)
    return false;
  t->stop_regs = u;
  t->stopped = true;
  return true;
}

void task_free_held(struct sb *sb)
{
  for (int i = 0; i < sb->nheld; i++)
    if (sb->held[i]) {
      free(sb->held[i]->cpu);
      free(sb->held[i]);
    }
  free(sb->held);
  sb->held = NULL;
  sb->nheld = 0;
}

int task_resume(struct sb *sb)
{
  sb->pauser = NULL;
  if (!sb->nheld)
    return 0;
  int rc = 0;
  uint64_t tsc;
  if ((unsigned)sb->nheld + 1 > thread_cap(sb)) {
    rc = cf_fail(EAGAIN, "the sandbox has %d threads; at most %u may run in it", sb->nheld + 1, thread_cap(sb));
    goto out;
  }
  if (task0_make(sb) < 0) {
    rc = cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  if (cf_vm_tsc(sb->vm, &tsc, 0) < 0) {
    rc = -1;
    goto out;
  }
  run_kick_install();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  /* Each on vCPU i+1, as new (a reused VM's vCPU: reset first), its clock
   * the same as vCPU 0's. */
  for (int i = 0; i < sb->nheld && rc == 0; i++) {
    struct task *t = sb->held[i];
    int idx = i + 1;
    struct cf_vm *vm = cf_vm_vcpu(sb->vm, idx);
    if (!vm || cf_vm_reset(vm) < 0 || cf_vm_load_cpu(vm, t->cpu, &t->stop_regs) < 0 || cf_vm_tsc(vm, NULL, tsc) < 0) {
      rc = -1;
      break;
    }
    if ((t->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
      rc = cf_fail(errno, "eventfd: %m");
      break;
    }
    free(t->cpu);
    t->cpu = NULL;
    t->sb = sb;
    t->idx = idx;
    t->vm = vm;
    t->host_tid = 0;
    t->own_thread = true;
    t->stopped = t->run_on = t->exited = t->done = t->blocked = t->woken = t->on_cpu = false;
    t->cpu_ns = t->cpu0 = 0;
    t->quit = false;
    if (sem_init(&t->go, 0, 0) < 0) {
      rc = cf_fail(errno, "sem_init: %m");
      close(t->wakefd);
      break;
    }
    sb->held[i] = NULL;
    __atomic_store_n(&sb->tasks[idx], t, __ATOMIC_RELEASE);
    sb->ntasks++;
    sb->nlive++;
    int e = pthread_create(&t->host, &attr, task_main, t);
    if (e) {
      __atomic_store_n(&sb->tasks[idx], NULL, __ATOMIC_RELEASE);
      sb->ntasks--;
      sb->nlive--;
      close(t->wakefd);
      sem_destroy(&t->go);
      free(t);
      rc = cf_fail(e, "pthread_create: %s", strerror(e));
    }
  }
  pthread_attr_destroy(&attr);
out:
  task_free_held(sb); /* what did not start */
  return rc;
}

/* Version 6 of the state file: the held threads. */
#define THREADS_TAG 0x3653444145524854ull /* "THREADS6" */

void task_save_threads(struct sb *sb, struct wbuf *w)
{
  w_u64(w, THREADS_TAG);
  w_u64(w, (uint64_t)sb->next_tid);
  w_u64(w, sb->robust_list); /* the pausing thread's */
  w_u64(w, (uint64_t)sb->nheld);
  for (int i = 0; i < sb->nheld; i++) {
    const struct task *t = sb->held[i];
    w_u64(w, (uint64_t)t->tid);
    w_bytes(w, &t->stop_regs, sizeof t->stop_regs);
    w_u64(w, t->cpu->fs_base);
    w_u64(w, t->cpu->gs_base);
    w_bytes(w, t->cpu->xsave, sizeof t->cpu->xsave);
    w_u64(w, t->sigmask);
    w_u64(w, t->tpending);
    w_u64(w, t->saved_mask);
    w_u64(w, t->sigwait_set);
    w_u64(w, t->have_saved_mask);
    w_u64(w, t->ss_sp);
    w_u64(w, t->ss_size);
    w_u64(w, (uint64_t)t->ss_flags);
    w_u64(w, t->tid_address);
    w_u64(w, t->robust_list);
  }
}

int task_load_threads(struct sb *sb, struct rbuf *r, const char *name)
{
  if (r->off == r->n)
    return 0; /* version 1-5: one thread */
  uint64_t tag = r_u64(r), next = r_u64(r), robust = r_u64(r), n = r_u64(r);
  if (r->err || tag != THREADS_TAG || next > (1u << 22) || (next && next <= (uint64_t)sb->pid) ||
      n >= CF_VM_MAX_VCPUS || (n && !next) || robust >= sb->mem_size)
    return cf_fail(EINVAL, "template '%s': bad thread list", name);
  if (n + 1 > thread_cap(sb))
    return cf_fail(EAGAIN, "template '%s' has %llu threads; at most %u may run in this sandbox", name,
                   (unsigned long long)n + 1, thread_cap(sb));
  sb->next_tid = (int)next;
  sb->robust_list = robust;
  if (n && !(sb->held = calloc(n, sizeof *sb->held)))
    return cf_fail(ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++) {
    struct task *t = calloc(1, sizeof *t);
    if (t)
      t->cpu = malloc(sizeof *t->cpu);
    if (!t || !t->cpu) {
      free(t);
      return cf_fail(ENOMEM, "out of memory");
    }
    sb->held[sb->nheld++] = t;
    t->wakefd = -1;
    uint64_t tid = r_u64(r);
    r_bytes(r, &t->stop_regs, sizeof t->stop_regs);
    t->cpu->fs_base = r_u64(r);
    t->cpu->gs_base = r_u64(r);
    r_bytes(r, t->cpu->xsave, sizeof t->cpu->xsave);
    t->sigmask = r_u64(r);
    t->tpending = r_u64(r);
    t->saved_mask = r_u64(r);
    t->sigwait_set = r_u64(r);
    uint64_t hs = r_u64(r);
    t->ss_sp = r_u64(r);
    t->ss_size = r_u64(r);
    uint64_t fl = r_u64(r);
    t->tid_address = r_u64(r);
    t->robust_list = r_u64(r);
    t->tid = (int)tid;
    t->have_saved_mask = hs;
    t->ss_flags = (int)fl;
    bool dup = tid == (uint64_t)sb->tid;
    for (uint64_t k = 0; k < i; k++)
      dup |= sb->held[k]->tid == t->tid;
    if (r->err || !tid || tid >= next || dup || hs > 1 || (fl & ~(uint64_t)(SS_AUTODISARM | SS_ONSTACK | SS_DISABLE)) ||
        t->ss_size > sb->mem_size || (t->ss_size && t->ss_sp > sb->mem_size - t->ss_size) ||
        t->tid_address >= sb->mem_size || t->robust_list >= sb->mem_size)
      return cf_fail(EINVAL, "template '%s': bad thread %llu", name, (unsigned long long)i);
  }
  return 0;
}

#define SCHED_TAG 0x3844454843535055ull /* "UPSCHED8" */

static void save_sched1(struct wbuf *w, const uint64_t off[2], int policy)
{
  w_u64(w, off[0]);
  w_u64(w, off[1]);
  w_u64(w, (uint64_t)(uint32_t)policy);
}

void task_save_sched(struct sb *sb, struct wbuf *w)
{
  w_u64(w, SCHED_TAG);
  w_u64(w, (uint64_t)sb->ngroups);
  for (int i = 0; i < sb->ngroups; i++)
    w_u64(w, sb->groups[i]);
  save_sched1(w, sb->cpus_off, sb->policy);
  for (int i = 0; i < sb->nheld; i++)
    save_sched1(w, sb->held[i]->cpus_off, sb->held[i]->policy);
}

/* One thread's: a mask that leaves it a CPU of this sandbox, a policy of
 * those sys_sched allows. */
static bool load_sched1(struct sb *sb, struct rbuf *r, uint64_t off[2], int *policy)
{
  off[0] = r_u64(r);
  off[1] = r_u64(r);
  uint64_t pol = r_u64(r), p = pol & ~(uint64_t)SCHED_RESET_ON_FORK;
  *policy = (int)pol;
  int n = sb_cpus(sb);
  bool any = false;
  for (int c = 0; c < n; c++)
    any |= !(off[c / 64] >> (c % 64) & 1);
  return !r->err && any && (p == SCHED_OTHER || p == SCHED_BATCH || p == SCHED_IDLE);
}

int task_load_sched(struct sb *sb, struct rbuf *r, const char *name)
{
  uint64_t tag = r_u64(r), n = r_u64(r);
  if (r->err || tag != SCHED_TAG || n > NGROUPS_MAX)
    return cf_fail(EINVAL, "template '%s': bad groups or scheduling", name);
  uint32_t *g = n ? malloc(n * sizeof *g) : NULL;
  if (n && !g)
    return cf_fail(ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++)
    g[i] = (uint32_t)r_u64(r);
  free(sb->groups);
  sb->groups = g;
  sb->ngroups = (int)n;
  bool ok = load_sched1(sb, r, sb->cpus_off, &sb->policy);
  for (int i = 0; ok && i < sb->nheld; i++)
    ok = load_sched1(sb, r, sb->held[i]->cpus_off, &sb->held[i]->policy);
  return ok ? 0 : cf_fail(EINVAL, "template '%s': bad groups or scheduling", name);
}

/* ---- futex waiters ----
 *
 * Keyed as Linux keys them: a private futex (FUTEX_PRIVATE_FLAG) and any
 * futex word in private memory by (address space, address): the process,
 * or for a vfork child in its parent's memory that parent (Linux keys by
 * mm), so a wake between the child and the parent's threads is seen; a
 * shared one in
 * shared memory (mm.c: MAP_SHARED) by (object, offset), so a process-shared
 * mutex or semaphore wakes a waiter in another process, whose mapping is at
 * another host address and maybe another guest address. The waiters of
 * every process of the sandbox are on one list (the first process's), under
 * the sandbox's one lock. */

struct fwaiter {
  struct fkey key;
  uint32_t bitset;
  struct task *t;
  bool woken;
  struct fwaiter *next;
};

static struct fwaiter **fw_head(struct sb *sb) { return &proc_first(sb)->futex_waiters; }

struct fkey futex_key(struct sb *sb, uint64_t addr, bool priv)
{
  uint64_t off;
  struct shm_obj *o = priv ? NULL : mm_shared_at(sb, addr, &off);
  if (o)
    return (struct fkey){o, off};
  /* private: the address space's, as Linux keys by mm (a vfork child's is
   * its parent's: a wake between them is seen) */
  return (struct fkey){sb->mm_parent ? sb->mm_parent : sb, addr};
}

static bool key_eq(struct fkey a, struct fkey b) { return a.obj == b.obj && a.off == b.off; }

static void fw_unlink(struct sb *sb, struct fwaiter *w)
{
  for (struct fwaiter **p = fw_head(sb); *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      return;
    }
}

int futex_wake_key(struct sb *sb, struct fkey k, int n, uint32_t bitset)
{
  int woken = 0;
  for (struct fwaiter **p = fw_head(sb); *p && woken < n;) {
    struct fwaiter *w = *p;
    if (key_eq(w->key, k) && (w->bitset & bitset)) {
      *p = w->next;
      w->woken = true;
      if (w->t) /* a waiter with no task is alone: nothing to write (tests/unit/shim_wait.c) */
        wake_task(w->t);
      woken++;
    } else {
      p = &w->next;
    }
  }
  return woken;
}

int futex_wake(struct sb *sb, uint64_t addr, int n, uint32_t bitset)
{
  return futex_wake_key(sb, futex_key(sb, addr, false), n, bitset);
}

int futex_requeue_key(struct sb *sb, struct fkey k, int nwake, struct fkey k2, int nmove)
{
  int n = futex_wake_key(sb, k, nwake, FUTEX_BITSET_MATCH_ANY);
  for (struct fwaiter *w = *fw_head(sb); w && nmove > 0; w = w->next)
    if (key_eq(w->key, k)) {
      w->key = k2;
      nmove--;
      n++;
    }
  return n;
}

long futex_wait_key(struct sb *sb, struct fkey k, uint32_t bitset, clockid_t clk, const struct timespec *deadline)
{
  struct fwaiter w = {.key = k, .bitset = bitset, .t = sb->cur};
  struct fwaiter **head = fw_head(sb);
  w.next = *head;
  *head = &w;
  for (;;) {
    long r = sig_wait(sb, clk, deadline);
    if (w.woken) /* even when the deadline passed meanwhile: a wake is never lost (Linux: 0) */
      return 1;
    if (r == -EAGAIN)
      continue;
    fw_unlink(sb, &w);
    return r; /* 0: the deadline; -EINTR */
  }
}

long futex_wait(struct sb *sb, uint64_t addr, uint32_t bitset, clockid_t clk, const struct timespec *deadline)
{
  return futex_wait_key(sb, futex_key(sb, addr, false), bitset, clk, deadline);
}

/* ---- CPU time ---- */

uint64_t task_cpu_ns(struct sb *sb)
{
  uint64_t sum = sb->cpu_dead_ns;
  for (int i = 1; i < CF_VM_MAX_VCPUS; i++) {
    struct task *t = sb->tasks[i];
    clockid_t c;
    struct timespec ts;
    if (t && !t->done && pthread_getcpuclockid(t->host, &c) == 0 && clock_gettime(c, &ts) == 0)
      sum += (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - t->cpu0;
    else if (t)
      sum += t->cpu_ns;
  }
  return sum;
}
