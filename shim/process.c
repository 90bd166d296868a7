/* Processes: a sandbox as a tree of processes (fork, exit, wait, kill,
 * process groups and sessions).
 *
 * A process is a struct sb (the shim's state of one address space, its
 * files, signal handlers and threads) with a VM of its own: the guest sees
 * its host mapping (vmm.h), so a process's memory is a host range laid out
 * as its parent's at the fork, file pages and template pages mapped again
 * from the same files and only the pages the parent owned privately copied
 * (mm.c mm_fork_vm). What the processes of a sandbox share is a struct
 * world, made at the first fork and owned by the first process (the one
 * the run started: the sandbox's handle, pid 2 as before): the lock (the
 * first process's sb->lock: every process's tasks take that one, so the
 * shim stays single-threaded code across processes: open file descriptions
 * (struct file: offsets, flags) shared across a fork and the /tmp tree are
 * only touched under it), the list of processes, the next pid/tid.
 *
 * Each process runs on host threads of its own: task 0 of a forked process
 * on one made here (sandbox.c proc_main), its other threads as any
 * (thread.c). Once a sandbox has two processes, each has struct tasks, so a
 * blocked call releases the lock (task_block) and another process's exit,
 * signal or write can wake it (task_kick_all).
 *
 * Exit: a process's last thread ends its run loop (exit_group, a fatal
 * signal, the sandbox's end); proc_main then closes its files, frees its VM
 * and memory, gives its children to the sandbox's init (pid 1: no process
 * the shim runs, proc_init; it reaps them at once), and becomes a zombie: its parent gets
 * exit_signal (SIGCHLD) and a wait4/waitid takes its status and frees it
 * (at once when the parent ignores SIGCHLD or set SA_NOCLDWAIT, as Linux).
 * The first process's end ends the sandbox: every other process is killed
 * and waited for (proc_end_all), as when a pid namespace's init exits.
 *
 * vfork (CLONE_VM|CLONE_VFORK): the child shares the parent's memory
 * until its execve or exit, on a vCPU of the parent's VM lent to it; the
 * parent's calling thread waits (below, "vfork: a child in its parent's
 * memory").
 *
 * A pause (a template, a live sandbox between execs) stops every process
 * and keeps it whole (below, "pausing a tree"); a template made from a
 * program saves each one (snapshot.c, version 7). It is refused while a
 * vfork is in progress (a parent waits, or a child runs in another's
 * memory). A branch saves every process too (snapshot.c commit_compare).
 * Not yet (the syscall table says so): a park of a sandbox with more than
 * one process alive (ENOTSUP: the sandbox goes on); CLONE_VM without CLONE_VFORK or
 * CLONE_THREAD (a process sharing memory for its whole life: robust lists
 * are per process); threads in a vfork child before its exec (EAGAIN);
 * --mem across the tree (each process has its own). MAP_SHARED memory is shared with the children
 * (mm.c: the same host memfds mapped at the same places; proc_copy takes a
 * reference on each, except for a vfork child in its parent's memory,
 * whose mapping records are the parent's), and the futex waiters of all
 * the processes are on one list (thread.c), keyed by object and offset in
 * shared memory, else by the address space's owner (a vfork child's
 * parent) and the address. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "internal.h"
#include "shim/shim.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct world {
  struct sb *root;
  struct sb **procs; /* every process not yet reaped, root first */
  int nprocs, cap;
  int next_id;       /* the next pid or tid */
  int nthreads;      /* forked processes whose host thread has not ended */
  uint64_t dead_cpu_ns; /* CPU time of the processes that ended in this run */
  pthread_cond_t cv; /* a process's host thread ended */
};

pthread_mutex_t *sb_mutex(struct sb *sb) { return sb->w ? &sb->w->root->lock : &sb->lock; }

int new_id(struct sb *sb)
{
  if (!sb->w)
    return sb->next_tid++;
  int id = sb->w->next_id++;
  sb->w->root->next_tid = sb->w->next_id;
  return id;
}

bool proc_is_first(const struct sb *sb) { return !sb->w || sb->w->root == sb; }

struct sb *proc_first(struct sb *sb) { return sb->w ? sb->w->root : sb; }

int proc_threads(const struct sb *sb)
{
  if (!sb->w)
    return task_live(sb);
  int n = 0;
  for (int i = 0; i < sb->w->nprocs; i++)
    if (!sb->w->procs[i]->zombie)
      n += task_live(sb->w->procs[i]);
  return n;
}

/* The processes of sb's world; only where it has one (sb->w). */
struct sb *const *proc_list(const struct sb *sb, int *n)
{
  *n = sb->w->nprocs;
  return sb->w->procs;
}

bool sb_alone(const struct sb *sb)
{
  if (task_live(sb) > 1)
    return false;
  if (!sb->w)
    return true;
  for (int i = 0; i < sb->w->nprocs; i++)
    if (sb->w->procs[i] != sb && !sb->w->procs[i]->zombie)
      return false;
  return true;
}

/* The sandbox's init (shim.h PROC_INIT): one struct sb for every
 * sandbox, never written (its pid, a cwd for /proc/1/cwd, a name for
 * comm; the rest zero: root's, no memory, no files, default
 * dispositions, not stopped: it sleeps). */
static struct sb init_sb = {.pid = PROC_INIT, .tid = PROC_INIT, .cwd = "/", .program = "init"};
struct sb *proc_init(void) { return &init_sb; }
bool proc_is_init(const struct sb *p) { return p == &init_sb; }

long proc_init_signal(const struct sb *from, int sig)
{
  if (sig < 0 || sig > 64)
    return -EINVAL;
  return from->uid != 0 ? -EPERM : 0; /* Linux's kill_ok_by_cred: init is root's */
}

/* The first process starts in the group and session of the sandbox's
 * init, as a program a non-interactive shell started: pgid and sid 0
 * stand for init's (PROC_INIT); init's parent is 0, as Linux shows a
 * namespace's init. */
int proc_ppid(const struct sb *p) { return proc_is_init(p) ? 0 : p->parent ? p->parent->pid : PROC_INIT; }
int proc_pgid(const struct sb *p) { return p->pgid ? p->pgid : PROC_INIT; }
int proc_sid(const struct sb *p) { return p->sid ? p->sid : PROC_INIT; }

static struct sb *find_pid(struct sb *sb, int pid);
struct sb *proc_find(struct sb *sb, int pid)
{
  struct sb *t = find_pid(sb, pid);
  return t && !t->zombie ? t : NULL;
}

struct sb *proc_find_any(struct sb *sb, int pid) { return find_pid(sb, pid); }

static struct sb *find_pid(struct sb *sb, int pid)
{
  if (!sb->w)
    return pid == sb->pid ? sb : NULL;
  for (int i = 0; i < sb->w->nprocs; i++)
    if (sb->w->procs[i]->pid == pid)
      return sb->w->procs[i];
  return NULL;
}

static int world_add(struct world *w, struct sb *p)
{
  if (w->nprocs == w->cap) {
    int cap = w->cap ? 2 * w->cap : 16;
    struct sb **n = realloc(w->procs, (size_t)cap * sizeof *n);
    if (!n)
      return -1;
    w->procs = n;
    w->cap = cap;
  }
  w->procs[w->nprocs++] = p;
  return 0;
}

static void world_remove(struct world *w, struct sb *p)
{
  for (int i = 0; i < w->nprocs; i++)
    if (w->procs[i] == p) {
      memmove(&w->procs[i], &w->procs[i + 1], (size_t)(w->nprocs - i - 1) * sizeof *w->procs);
      w->nprocs--;
      return;
    }
}

/* The world of sb (the first process, at its first fork). */
static struct world *world_get(struct sb *sb)
{
  if (sb->w)
    return sb->w;
  struct world *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  if (world_add(w, sb) < 0) {
    free(w);
    return NULL;
  }
  w->root = sb;
  w->next_id = sb->next_tid ? sb->next_tid : sb->pid + 1;
  pthread_cond_init(&w->cv, NULL);
  sb->w = w; /* its lock is sb->lock, held now: the same mutex from here on */
  return w;
}

int proc_adopt(struct sb *first, struct sb *c)
{
  struct world *w = world_get(first);
  if (!w || world_add(w, c) < 0)
    return cf_fail(ENOMEM, "out of memory");
  c->w = w;
  return 0;
}

void proc_unadopt(struct sb *c)
{
  world_remove(c->w, c);
  fs_fini(c);
  if (c->vm)
    vm_free(c->vm, c->gm);
  proc_free_reaped(c);
}

void proc_adopted_start(struct sb *c)
{
  c->w->nthreads++;
  if (proc_start(c) < 0) {
    c->w->nthreads--;
    c->exited = true; /* it never runs: a zombie killed by SIGKILL */
    c->kill_signal = SIGKILL;
    c->zombie = true;
    c->wstatus = SIGKILL;
    fs_fini(c);
    vm_free(c->vm, c->gm);
    c->vm = NULL;
    c->gm = NULL;
  }
}

uint64_t proc_others_cpu_ns(struct sb *sb)
{
  if (!sb->w)
    return 0;
  uint64_t sum = sb->w->dead_cpu_ns;
  for (int i = 0; i < sb->w->nprocs; i++) {
    struct sb *p = sb->w->procs[i];
    if (p != sb && !p->zombie)
      sum += guest_cpu_ns(p);
  }
  return sum;
}

void proc_run_start(struct sb *sb)
{
  if (sb->w)
    sb->w->dead_cpu_ns = 0;
}

static void mm_release(struct sb *c);
static struct vlend *lend_get(struct sb *o);
static void lenders_end(struct sb *o);

/* A zombie's (or a never-started child's) last memory. */
static void proc_free(struct sb *c)
{
  if (c->mm_lend) { /* never started on it */
    c->mm_lend->busy = false;
    c->mm_lend->child = NULL;
  }
  mm_release(c);
  fs_fini(c);
  vm_free(c->vm, c->gm);
  proc_free_reaped(c);
}

/* A new process: sb's copy at this instant (Linux's copy_process for a
 * fork): the same address space copy-on-write, open files shared, cwd,
 * umask, handlers, the caller's signal mask, alternate stack, CPU mask and
 * scheduling policy, limits, supplementary groups (a copy);
 * nothing pending, no timers, no other threads, no record locks. */
static struct sb *proc_copy(struct sb *p, bool share, long *err)
{
  struct sb *c = malloc(sizeof *c);
  if (!c) {
    *err = -ENOMEM;
    return NULL;
  }
  memcpy(c, p, sizeof *c);
  /* everything that is not inherited or not shared */
  c->vm = NULL;
  c->mem = NULL;
  c->vmas = NULL;
  c->rootfd = -1;
  c->root_tmp = NULL;
  c->shmaps = NULL;
  c->nshmaps = c->capshmaps = 0;
  c->locks = NULL;
  c->nlocks = c->caplocks = 0;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->task_cv, NULL);
  memset(c->tasks, 0, sizeof c->tasks);
  c->cur = NULL;
  c->ntasks = c->nlive = 0;
  c->cpu_running = c->cpu_nq = 0;
  c->cpu_dead_ns = 0;
  c->futex_waiters = NULL;
  c->pauser = NULL;
  c->held = NULL;
  c->nheld = 0;
  c->watching = c->watch_quit = false;
  c->tpending = c->pending = 0;
  c->nsigq = 0;
  c->timer_fires = 0;
  c->sigwait_set = 0;
  c->have_saved_mask = false;
  memset(c->timers, 0, sizeof c->timers);
  c->ntimer = 0;
  c->cpu_ns = 0;
  c->running = false;
  c->have_htimer[0] = c->have_htimer[1] = false;
  c->tid_address = 0;
  c->robust_list = 0;
  c->exited = c->timed_out = c->cpu_exceeded = false;
  c->exit_code = c->kill_signal = 0;
  c->report[0] = 0;
  c->paused = c->pause_pending = c->resume_pending = c->eof_pause = false;
  c->marker_tail_len = 0;
  c->ready = CF_READY_NONE;
  c->entered = c->gen_done = true;
  c->tmpl = NULL;
  c->gm = NULL;
  c->park = NULL;
  c->forked = false;
  c->replaced = NULL;
  c->nreplaced = c->capreplaced = 0;
  c->replaced_overflow = false;
  c->vm_broken = false;
  memset(&c->end_dirty, 0, sizeof c->end_dirty);
  c->have_end_dirty = false;
  c->nsys = c->enosys = c->elf_mapped = c->elf_copied = c->pages_mapped = c->pages_copied = 0;
  c->first_exit_us = 0;
  c->zombie = false;
  c->wstatus = 0;
  c->vfork_parent = NULL;
  c->vfork_wait = false;
  c->execed = false; /* (a parent's setpgid of it is allowed until it execs) */
  c->stopped = c->stop_report = c->cont_report = false;
  c->mm_parent = NULL;
  c->mm_vcpu = 0;
  c->mm_lend = c->lend = NULL;
  c->mm_sharers = 0;
  c->mm_gone = c->reap_pending = c->mm_exec_wait = false;
  memset(c->vcpu_lent, 0, sizeof c->vcpu_lent);
  c->pause_done = false;
  c->child_cpu_ns = 0;
  c->lkwait.on = false; /* (another thread of the parent may wait in F_SETLKW) */
  c->net = NULL; /* the sandbox's socket names are the first process's (net.c) */
  c->inotifies = NULL; /* (the first process's: inotify.c) */
  c->dnotifies = NULL;
  c->ipc = NULL;       /* (the first process's: ipc.c) */
  c->semundo = NULL;   /* a fork's child has no SEM_UNDO adjustments (Linux) */
  c->nsemundo = 0;
  c->groups = NULL; /* its own copy, below */
  c->ngroups = 0;
  c->parent = p;
  /* the copies (a vfork child sharing the memory takes the owner's
   * address-space fields instead: proc_mm_pull) */
  if (!share) {
    if (!(c->vmas = malloc((size_t)p->capvma * sizeof *c->vmas)))
      goto nomem;
    memcpy(c->vmas, p->vmas, (size_t)p->nvma * sizeof *c->vmas);
  }
  if (p->rootfd >= 0 && (c->rootfd = fcntl(p->rootfd, F_DUPFD_CLOEXEC, 0)) < 0)
    goto nomem;
  if (p->root_tmp && !(c->root_tmp = strdup(p->root_tmp)))
    goto nomem;
  /* every allocation first, then the references: nomem takes none back */
  c->fds = NULL;
  c->cloexec = NULL;
  c->nfds = 0;
  if (task_copy_creds(c, p) < 0 || fd_table_grow(c, p->nfds) < 0)
    goto nomem;
  if (p->nshmaps && !share && !(c->shmaps = malloc((size_t)p->nshmaps * sizeof *c->shmaps)))
    goto nomem;
  memcpy(c->fds, p->fds, (size_t)p->nfds * sizeof *c->fds);
  memcpy(c->cloexec, p->cloexec, (size_t)p->nfds * sizeof *c->cloexec);
  for (int i = 0; i < c->nfds; i++)
    if (c->fds[i])
      c->fds[i]->refs++;
  if (c->shmaps) {
    memcpy(c->shmaps, p->shmaps, (size_t)p->nshmaps * sizeof *c->shmaps);
    c->nshmaps = c->capshmaps = p->nshmaps;
    for (int i = 0; i < c->nshmaps; i++) {
      shm_ref(c->shmaps[i].obj); /* mm_fork_vm maps each in the child */
      ipc_shm_attached(p, c->shmaps[i].obj); /* (Linux's shm_open, run by the parent) */
    }
  }
  return c;
nomem:
  *err = -ENOMEM;
  task_free_creds(c);
  if (c->rootfd >= 0)
    close(c->rootfd);
  free(c->root_tmp);
  free(c->vmas);
  free(c->fds);
  free(c->cloexec);
  free(c);
  return NULL;
}

/* A file dropped when the scope ends (proc_fork's pidfd until installed). */
static void file_drop(struct file **f)
{
  if (*f)
    file_unref(*f);
}
#define CLEANUP_PIDFD __attribute__((cleanup(file_drop)))

/* Whether sb has a free fd below its RLIMIT_NOFILE. */
static bool fd_free(struct sb *sb)
{
  for (int i = 0, n = fd_limit(sb); i < n; i++)
    if (i >= sb->nfds || !sb->fds[i])
      return true;
  return false;
}

static unsigned pid_cap(const struct sb *sb)
{
  struct rlimit rl;
  rlim_get((struct sb *)sb, RLIMIT_NPROC, &rl);
  unsigned cap = sb->opts && sb->opts->max_pids ? sb->opts->max_pids : CF_SANDBOX_DEFAULT_PIDS;
  return rl.rlim_cur < cap ? (unsigned)rl.rlim_cur : cap;
}

long proc_fork(struct sb *sb, uint64_t flags, uint64_t sp, uint64_t parent_tid, uint64_t child_tid, uint64_t tls,
               uint64_t pidfd)
{
  if (flags & (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
               CLONE_NEWCGROUP))
    return -EPERM; /* no CAP_SYS_ADMIN in a sandbox */
  if ((flags & CLONE_VM) && !(flags & CLONE_VFORK))
    return -EINVAL; /* processes sharing an address space: not kept (table note) */
  if (flags & (CLONE_FILES | CLONE_FS | CLONE_SIGHAND | CLONE_PTRACE | CLONE_PARENT))
    return -EINVAL; /* shared tables between processes: not kept (table note) */
  if ((flags & CLONE_SETTLS) && tls >= (1ull << 47))
    return -EPERM;
  if (!sb->vm)
    return -EAGAIN;
  if (sb->paused)
    return -EINTR; /* the sandbox pauses: the call runs again after it (systab.c), its child not made yet */
  if (sb->exited || sb->timed_out)
    return -EINTR; /* killed meanwhile: its children would outlive it */
  if ((unsigned)(sb->w ? sb->w->nprocs : 1) >= pid_cap(sb))
    return -EAGAIN; /* zombies count, as for RLIMIT_NPROC and a cgroup's pids.max */
  /* CLONE_PIDFD: the parent's new pidfd (O_CLOEXEC), made before the
   * child as Linux does (EMFILE, EFAULT: no child); installed once the
   * child runs, so the child's copy of the fd table has not got it. */
  CLEANUP_PIDFD struct file *pf = NULL;
  if (flags & CLONE_PIDFD) {
    if (!mm_ptr(sb, pidfd, 4, PROT_WRITE))
      return -EFAULT;
    if (!fd_free(sb))
      return -EMFILE;
    if (!(pf = file_new(F_PIDFD, -1, O_RDWR, "anon_inode:[pidfd]")))
      return -ENOMEM;
  }
  struct world *w = world_get(sb);
  if (!w || task_make0(sb) < 0)
    return -EAGAIN;
  /* vfork (CLONE_VM|CLONE_VFORK): the child runs in this memory on a vCPU
   * of this VM lent to it, until its exec or exit; with none to lend, a
   * fork whose parent waits. */
  struct sb *owner = sb->mm_parent ? sb->mm_parent : sb;
  struct vlend *l = (flags & CLONE_VM) ? lend_get(owner) : NULL;
  int k = l ? l->idx : -1;
  long err = -ENOMEM;
  struct sb *c = proc_copy(sb, k > 0, &err);
  if (!c)
    return err;
  c->w = w;
  c->pid = c->tid = new_id(sb);
  c->exit_signal = (int)(flags & 0xff);
  c->t_spawn = 0;
  if (k > 0) {
    c->vm = cf_vm_vcpu(sb->vm, k);
    if (!c->vm) {
      proc_free(c);
      return -EAGAIN;
    }
    c->mm_parent = owner;
    c->mm_vcpu = k;
    c->mm_lend = l;
    l->busy = true;
    l->child = c;
    owner->mm_sharers++;
    c->mem = owner->mem;
    proc_mm_pull(c);
    /* Its first thread: the caller as after the SYSCALL with rax 0, on
     * the lent vCPU (the VM's clock). */
    if (task_copy_cpu(sb, c->vm, sp, flags & CLONE_SETTLS, tls) < 0)
      goto fail;
  } else {
    c->vm = mm_fork_vm(owner);
    if (!c->vm) {
      if (sb->opts && sb->opts->verbose)
        fprintf(sb->trace, "[sandbox] fork: %s\n", cf_error());
      proc_free(c);
      return -ENOMEM;
    }
    c->mem = cf_vm_mem(c->vm);
    /* Its first thread: the caller as after the SYSCALL with rax 0, its
     * TSC the parent's. */
    uint64_t tsc = 0;
    if (cf_vm_tsc(sb->vm, &tsc, 0) < 0 || task_copy_cpu(sb, c->vm, sp, flags & CLONE_SETTLS, tls) < 0 ||
        cf_vm_tsc(c->vm, NULL, tsc) < 0)
      goto fail;
  }
  /* The tid words: the parent's in its memory, the child's in its own. */
  if (flags & CLONE_PARENT_SETTID)
    mm_copy_out(sb, parent_tid, &c->pid, 4);
  if (flags & CLONE_CHILD_SETTID)
    mm_copy_out(c, child_tid, &c->pid, 4);
  if (flags & CLONE_CHILD_CLEARTID)
    c->tid_address = child_tid;
  if (world_add(w, c) < 0)
    goto fail;
  if (task_process(c) < 0) {
    world_remove(w, c);
    goto fail;
  }
  w->nthreads++;
  if ((l ? proc_start_lent(c, l) : proc_start(c)) < 0) {
    w->nthreads--;
    world_remove(w, c);
    goto fail;
  }
  int pid = c->pid;
  if (pf) {
    pf->pid = pid;
    int fd = fd_install(sb, pf, 0, true); /* (a free fd was there: fd_free; the lock is held since) */
    if (fd >= 0) {
      pf = NULL;
      mm_copy_out(sb, pidfd, &fd, 4);
    }
  }
  if (flags & CLONE_VFORK) { /* the parent waits for the child's exec or exit */
    c->vfork_parent = sb;
    sb->vfork_wait = true;
    /* Signals wait for the vfork's return, as Linux (a sig_wait would end
     * at once on one pending and spin); the child's exec or exit and a
     * kill wake it. */
    while (sb->vfork_wait && !sb->exited && !sb->timed_out && !(sb->cur && sb->cur->exited))
      task_block(sb, NULL, 0, -1);
    sb->vfork_wait = false;
  }
  return pid;
fail:
  if (sb->opts && sb->opts->verbose)
    fprintf(sb->trace, "[sandbox] fork: %s\n", cf_error());
  proc_free(c);
  return -EAGAIN;
}

/* ---- vfork: a child in its parent's memory ----
 * The child is a process of its own (pid, fd table, handlers, signals:
 * proc_copy) whose vCPU is one of the parent's VM, lent to it: it sees and
 * writes the parent's memory, as Linux's vfork child, until its execve
 * (proc_exec_detach: a VM of its own) or its end (mm_release: nothing of
 * the memory is touched). Its address-space fields (VMAs, break, mmap top,
 * shared /tmp mappings, the ranges a template's child replaced) are the
 * owner's: taken at each taking of the lock (thread.c switch_to) and given
 * back after each of its calls (systab.c sys_dispatch), so an mmap, brk or
 * munmap in the child acts on the shared address space, as on Linux, and
 * one by another thread of the parent meanwhile is seen. An owner that
 * ends while a child still runs in its memory keeps its VM (mm_gone) and,
 * reaped, its struct (reap_pending) until the last one leaves. */

#define MM_FIELDS(X)                                                                                           \
  X(vmas) X(nvma) X(capvma) X(brk_start) X(brk_cur) X(mmap_top) X(shmaps) X(nshmaps) X(capshmaps) X(forked)    \
      X(replaced) X(nreplaced) X(capreplaced) X(replaced_overflow)

void proc_mm_pull(struct sb *c)
{
  struct sb *o = c->mm_parent;
  if (!o)
    return;
#define PULL(f) c->f = o->f;
  MM_FIELDS(PULL)
#undef PULL
}

void proc_mm_push(struct sb *c)
{
  struct sb *o = c->mm_parent;
  if (!o)
    return;
#define PUSH(f) o->f = c->f;
  MM_FIELDS(PUSH)
#undef PUSH
}

/* A vCPU of o's VM to lend to a vfork child: an idle lender's (its host
 * thread runs the child), else a new one on a vCPU that no thread of o
 * runs, from the top (threads take them from 1 up; thread.c task_clone
 * skips kept ones). NULL: none. */
static struct vlend *lend_get(struct sb *o)
{
  if (!o->vm)
    return NULL;
  for (struct vlend *l = o->lend; l; l = l->next)
    if (!l->busy)
      return l;
  for (int i = CF_VM_MAX_VCPUS - 1; i >= 1; i--)
    if (!o->vcpu_lent[i] && (!o->tasks[i] || o->tasks[i]->done)) {
      struct vlend *l = calloc(1, sizeof *l);
      if (!l || sem_init(&l->go, 0, 0) < 0) {
        free(l);
        return NULL;
      }
      l->idx = i;
      l->next = o->lend;
      o->lend = l;
      o->vcpu_lent[i] = true;
      return l;
    }
  return NULL;
}

/* o's VM goes (the lock held): its lenders' host threads end (a busy one
 * when its child leaves it: sandbox.c lend_main; each frees its own). */
static void lenders_end(struct sb *o)
{
  while (o->lend) {
    struct vlend *l = o->lend;
    o->lend = l->next;
    o->vcpu_lent[l->idx] = false;
    __atomic_store_n(&l->quit, true, __ATOMIC_RELEASE);
    if (l->busy)
      continue;
    if (l->started) {
      sem_post(&l->go);
    } else {
      sem_destroy(&l->go);
      free(l);
    }
  }
}

/* A vfork child leaves its parent's memory (its exec, its end): its vCPU
 * back, its address-space fields its own again (empty), the owner's VM
 * freed if the owner ended meanwhile. */
static void mm_release(struct sb *c)
{
  struct sb *o = c->mm_parent;
  if (!o)
    return;
  c->mm_parent = NULL;
  c->mm_lend = NULL; /* (its host thread is still the lender's: sandbox.c lend_main hands it over) */
#define FORGET(f) c->f = 0;
  MM_FIELDS(FORGET) /* the owner's, not its own */
#undef FORGET
  c->vm = NULL;
  c->mem = NULL;
  if (--o->mm_sharers > 0)
    return;
  if (o->mm_exec_wait)
    task_kick_all(o); /* its execve goes on */
  if (o->mm_gone) {
    mm_shared_fini(o); /* (kept at its fs_fini: they were the child's too) */
    lenders_end(o);
    vm_free(o->vm, o->gm);
    o->vm = NULL;
    o->gm = NULL;
    o->mem = NULL;
    o->mm_gone = false;
    if (o->reap_pending)
      proc_free_reaped(o);
  }
}

long proc_exec_detach(struct sb *sb)
{
  /* A process whose memory vfork children run in: its exec waits for
   * them (they would see the new program's memory: Linux keeps them the
   * old one). */
  while (sb->mm_sharers) {
    if (sb->exited || sb->timed_out || (sb->cur && sb->cur->exited))
      return -EINTR;
    sb->mm_exec_wait = true;
    task_block(sb, NULL, 0, -1);
    sb->mm_exec_wait = false;
  }
  if (!sb->mm_parent)
    return 0;
  struct cf_vm *old = sb->vm, *vm = cf_vm_create(sb->mem_size);
  if (!vm)
    return -ENOMEM;
  /* As the first process's VM: /tmp's region not the program's (fs.c
   * fs_init), the same generation id, a clock that does not go back. */
  uint64_t tsc = 0;
  uint8_t *g0 = cf_vm_generation_page(old), *g1 = cf_vm_generation_page(vm);
  if ((sb->tmpfs && cf_vm_guard(vm, tmp_region_base(sb->tmpfs),
                                tmp_region_base(sb->tmpfs) + tmp_region_size(sb->tmpfs)) < 0) ||
      cf_vm_tsc(old, &tsc, 0) < 0 || cf_vm_tsc(vm, NULL, tsc) < 0) {
    cf_vm_destroy(vm);
    return -ENOMEM;
  }
  if (g0 && g1)
    memcpy(g1, g0, CF_VM_GENERATION_LEN);
  mm_release(sb);
  sb->vm = vm;
  sb->mem = cf_vm_mem(vm);
  sb->mmap_top = MMAP_TOP(sb->mem_size);
  if (sb->cur) {
    sb->cur->vm = vm;
    sb->cur->handoff = true; /* its lender's thread runs no more than this call (sandbox.c lend_main) */
  }
  return 0;
}

void proc_vfork_done(struct sb *c)
{
  struct sb *p = c->vfork_parent;
  if (!p)
    return;
  c->vfork_parent = NULL;
  if (p->vfork_wait) {
    p->vfork_wait = false;
    task_kick_all(p);
  }
}

/* ---- pausing a tree ----
 *
 * A template, a branch or a live pause of a sandbox with several processes
 * keeps them all. The first process pauses at its ready point (sandbox.c
 * pause_at); every other one then stops as a paused sandbox's other
 * threads do: its task 0 is its pauser, stopped where it can go on at CPL3
 * (thread.c task_stop: a call it waited in runs again later), its other
 * threads held (task_finish). Its host thread (sandbox.c proc_main) then
 * waits with its process kept whole until the sandbox runs again
 * (proc_resume_all) or ends (proc_end_all). */

const char *proc_pause_refused(struct sb *sb)
{
  if (!sb->w)
    return NULL;
  for (int i = 0; i < sb->w->nprocs; i++) {
    const struct sb *p = sb->w->procs[i];
    if (!p->zombie && (p->vfork_wait || p->vfork_parent))
      return "a vfork is in progress (its parent waits for the child's exec or exit)";
    if (!p->zombie && p->mm_parent) /* (its parent may have ended: nobody waits) */
      return "a vfork child runs in its parent's memory (until its exec or exit)";
  }
  return NULL;
}

void proc_pause_all(struct sb *sb)
{
  struct world *w = sb->w;
  if (!w)
    return;
  for (int i = 0; i < w->nprocs; i++) {
    struct sb *p = w->procs[i];
    if (p == sb || p->zombie || p->exited)
      continue;
    p->paused = true;
    p->pause_done = false;
    p->pauser = p->tasks[0];
    task_kick_all(p);
    cpu_wake(p, true);
  }
}

void proc_pause_wait(struct sb *sb)
{
  struct world *w = sb->w;
  for (;;) {
    bool busy = false;
    for (int i = 0; w && i < w->nprocs; i++) {
      struct sb *p = w->procs[i];
      busy |= p != sb && !p->zombie && p->paused && !p->pause_done;
    }
    if (!busy)
      return;
    pthread_cond_wait(&w->cv, &sb->lock);
  }
}

void proc_resume_all(struct sb *sb)
{
  struct world *w = sb->w;
  if (!w || w->root != sb)
    return;
  for (int i = 0; i < w->nprocs; i++) {
    struct sb *p = w->procs[i];
    if (p != sb && !p->zombie)
      p->paused = false;
  }
  pthread_cond_broadcast(&w->cv);
}

bool proc_paused_wait(struct sb *c)
{
  struct world *w = c->w;
  c->pause_done = true;
  pthread_cond_broadcast(&w->cv);
  while (c->paused && !c->exited && !c->timed_out)
    pthread_cond_wait(&w->cv, sb_mutex(c));
  c->pause_done = false;
  return !c->exited && !c->timed_out;
}

/* SIGCHLD-like notice to c's parent (code CLD_*, status) and a wake of
 * its waits. */
static void notify_parent(struct sb *c, int code, int status)
{
  struct sb *p = c->parent;
  if (!p || p->exited)
    return;
  bool nocldstop = code != CLD_EXITED && code != CLD_KILLED && (p->act[SIGCHLD].flags & SA_NOCLDSTOP);
  if (c->exit_signal && !nocldstop) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = code == CLD_EXITED || code == CLD_KILLED ? c->exit_signal : SIGCHLD;
    info.si_code = code;
    info.si_pid = c->pid;
    info.si_uid = (uid_t)c->uid;
    info.si_status = status;
    sig_queue(p, &info, 0, 0);
  }
  task_kick_all(p); /* a wait4 looks again */
}

void proc_stop(struct sb *sb, int sig)
{
  if (sb->stopped || sb->exited)
    return;
  sb->stopped = true;
  sb->stop_sig = sig;
  sb->stop_report = true;
  sb->cont_report = false;
  notify_parent(sb, CLD_STOPPED, sig);
  task_end_all(sb); /* its threads leave their vCPUs and stop */
}

void proc_cont(struct sb *sb)
{
  if (!sb->stopped)
    return;
  sb->stopped = false;
  sb->stop_report = false;
  sb->cont_report = true;
  notify_parent(sb, CLD_CONTINUED, SIGCONT);
  task_end_all(sb); /* wakes them */
}

void proc_stopped_wait(struct sb *sb)
{
  while (sb->stopped && !sb->paused && !sb->exited && !sb->timed_out && !(sb->cur && sb->cur->exited))
    task_block(sb, NULL, 0, -1);
}

/* The wait status of an ended process. */
static int status_of(const struct sb *c)
{
  return c->kill_signal ? (c->kill_signal & 0x7f) : (c->exit_code & 0xff) << 8;
}

static bool nocldwait(const struct sb *p)
{
  return p->act[SIGCHLD].handler == (uint64_t)SIG_IGN || (p->act[SIGCHLD].flags & SA_NOCLDWAIT);
}

/* Called by a forked process's host thread when its run loop is over (the
 * lock held): it becomes a zombie (freed here when nobody will wait). True
 * when it was freed. */
bool proc_exit(struct sb *c)
{
  struct world *w = c->w;
  proc_vfork_done(c);
  mm_release(c); /* a vfork child's memory was its parent's: left alone */
  /* Its files and memory go now (its memory when no vfork child runs in
   * it any more: mm_release); its status stays. */
  fs_fini(c);
  if (c->mm_sharers) { /* freed with the last sharer's release (mm_release) */
    c->mm_gone = true;
  } else {
    lenders_end(c);
    vm_free(c->vm, c->gm); /* gm: a template's process (snapshot.c), else NULL */
    c->vm = NULL;
    c->gm = NULL;
    c->mem = NULL;
  }
  c->wstatus = status_of(c);
  struct sb *p = c->parent;
  /* Its children go to the sandbox's init (pid 1, proc_init: it reaps
   * them), as orphans in a pid namespace. */
  for (int i = 0; i < w->nprocs; i++) {
    struct sb *o = w->procs[i];
    if (o->parent != c)
      continue;
    o->parent = NULL;
    if (o->vfork_parent == c)
      o->vfork_parent = NULL; /* nobody waits for its exec now */
    if (o->zombie) {
      world_remove(w, o);
      proc_free_reaped(o);
      i--;
    }
  }
  bool reap = !p || nocldwait(p) || !c->exit_signal;
  notify_parent(c, c->kill_signal ? CLD_KILLED : CLD_EXITED, c->kill_signal ? c->kill_signal : c->exit_code);
  w->dead_cpu_ns += c->cpu_ns; /* its run's, counted at run_timers_end */
  c->zombie = true;
  wake_all(c); /* its pidfds are readable now (a poll of one, in any process, looks again) */
  w->nthreads--;
  pthread_cond_broadcast(&w->cv);
  if (reap) {
    world_remove(w, c);
    if (c->mm_sharers) { /* its address space lives on: freed with the last sharer's release */
      c->reap_pending = true;
      return false;
    }
    return true;
  }
  return false;
}

void proc_free_reaped(struct sb *c)
{
  if (c->mm_sharers) { /* a vfork child runs in its memory: mm_release frees it */
    c->reap_pending = true;
    return;
  }
  task_free_held(c);
  task_free_creds(c);
  free(c->vmas);
  free(c);
}

/* The first process ended (its run loop is over, the lock held): every
 * other process is killed and waited for, then freed. */
void proc_end_all(struct sb *sb)
{
  struct world *w = sb->w;
  if (!w || w->root != sb)
    return;
  for (int i = 0; i < w->nprocs; i++) {
    struct sb *p = w->procs[i];
    if (p == sb || p->zombie)
      continue;
    if (!p->exited) {
      p->exited = true;
      p->kill_signal = SIGKILL;
    }
    task_end_all(p);
  }
  pthread_cond_broadcast(&w->cv); /* the paused ones wait there (proc_paused_wait) */
  while (w->nthreads > 0)
    pthread_cond_wait(&w->cv, &sb->lock);
  lenders_end(sb);
  for (int i = w->nprocs - 1; i >= 0; i--)
    if (w->procs[i] != sb) {
      struct sb *p = w->procs[i];
      world_remove(w, p);
      proc_free_reaped(p);
    }
}

void proc_world_free(struct sb *sb)
{
  struct world *w = sb->w;
  if (!w || w->root != sb)
    return;
  pthread_mutex_lock(&sb->lock);
  proc_end_all(sb);
  pthread_mutex_unlock(&sb->lock);
  free(w->procs);
  pthread_cond_destroy(&w->cv);
  free(w);
  sb->w = NULL;
}

/* Whether process c matches wait's id: pid > 0 that pid, 0 the caller's
 * group, -1 any, < -1 group -pid. */
static bool wait_match(const struct sb *sb, const struct sb *c, int pid)
{
  return pid > 0 ? c->pid == pid : pid == 0 ? proc_pgid(c) == proc_pgid(sb) : pid == -1 ? true : proc_pgid(c) == -pid;
}

struct wait_res {
  int pid, status, code, cstatus, uid;
  uint64_t cpu_ns; /* an ended child's CPU time and its children's (rusage) */
};

/* A wait's rusage: the child's CPU time (all of it user time: the guest's
 * and the shim's serving it are one clock here), the rest zero. */
static long put_rusage(struct sb *sb, uint64_t addr, const struct wait_res *res)
{
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  ru.ru_utime.tv_sec = (time_t)(res->cpu_ns / 1000000000u);
  ru.ru_utime.tv_usec = (suseconds_t)(res->cpu_ns % 1000000000u / 1000);
  return mm_copy_out(sb, addr, &ru, sizeof ru) < 0 ? -EFAULT : 0;
}

/* Wait for a child (the common part of wait4 and waitid): 0 and *res, 0
 * with res->pid 0 (WNOHANG, none ready), or -errno. */
static long do_wait(struct sb *sb, int pid, int options, bool keep, struct wait_res *res)
{
  memset(res, 0, sizeof *res);
  for (;;) {
    bool any = false;
    struct sb *z = NULL;
    int kind = 0; /* CLD_EXITED (a zombie), CLD_STOPPED, CLD_CONTINUED */
    if (sb->w)
      for (int i = 0; i < sb->w->nprocs && !z; i++) {
        struct sb *c = sb->w->procs[i];
        if (c->parent != sb || !wait_match(sb, c, pid))
          continue;
        if (!(options & __WALL) && ((options & __WCLONE) ? c->exit_signal == SIGCHLD : c->exit_signal != SIGCHLD))
          continue;
        any = true;
        if (c->zombie && (options & WEXITED))
          z = c, kind = CLD_EXITED;
        else if (!c->zombie && c->stop_report && (options & WUNTRACED))
          z = c, kind = CLD_STOPPED;
        else if (!c->zombie && c->cont_report && (options & WCONTINUED))
          z = c, kind = CLD_CONTINUED;
      }
    if (!any)
      return -ECHILD;
    if (z && kind != CLD_EXITED) {
      res->pid = z->pid;
      res->uid = z->uid;
      res->code = kind;
      res->cstatus = kind == CLD_STOPPED ? z->stop_sig : SIGCONT;
      res->status = kind == CLD_STOPPED ? (z->stop_sig << 8) | 0x7f : 0xffff;
      if (!keep) {
        if (kind == CLD_STOPPED)
          z->stop_report = false;
        else
          z->cont_report = false;
      }
      return 0;
    }
    if (z) {
      res->pid = z->pid;
      res->status = z->wstatus;
      res->code = z->kill_signal ? CLD_KILLED : CLD_EXITED;
      res->cstatus = z->kill_signal ? z->kill_signal : z->exit_code;
      res->uid = z->uid;
      res->cpu_ns = z->cpu_ns + z->child_cpu_ns;
      if (!keep) {
        sb->child_cpu_ns += res->cpu_ns; /* Linux: a wait adds the child's and its waited-for children's */
        world_remove(sb->w, z);
        proc_free_reaped(z);
        wake_all(sb); /* its pidfds hang up */
      }
      return 0;
    }
    if (options & WNOHANG)
      return 0;
    long r = sig_wait(sb, CLOCK_MONOTONIC, NULL);
    if (r == -EINTR) /* (-EAGAIN, 0, -EDEADLK: look again; a child is alive) */
      return -RESTARTSYS;
  }
}

/* wait4(pid, status, options, rusage) */
long sys_wait4(struct sb *sb, const uint64_t a[6], long nr)
{
  if (nr == SYS_waitid)
    return proc_waitid(sb, a);
  int pid = (int)A(0), options = (int)A(2);
  if (options & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WCLONE | __WALL))
    return -EINVAL;
  if (pid == INT_MIN)
    return -ESRCH;
  struct wait_res res;
  long r = do_wait(sb, pid, options | WEXITED, false, &res);
  if (r < 0)
    return r;
  if (res.pid && A(1) && mm_copy_out(sb, A(1), &res.status, 4) < 0)
    return -EFAULT;
  if (res.pid && A(3) && put_rusage(sb, A(3), &res) < 0)
    return -EFAULT;
  return res.pid;
}

/* waitid(idtype, id, infop, options, rusage) */
long proc_waitid(struct sb *sb, const uint64_t a[6])
{
  int idtype = (int)A(0), id = (int)A(1), options = (int)A(3);
  if (options & ~(WNOHANG | WSTOPPED | WEXITED | WCONTINUED | WNOWAIT | __WNOTHREAD | __WCLONE | __WALL))
    return -EINVAL;
  if (!(options & (WEXITED | WSTOPPED | WCONTINUED)))
    return -EINVAL;
  int pid;
  bool nonblock = false;
  switch (idtype) {
  case P_ALL:
    pid = -1;
    break;
  case P_PID:
    if (id <= 0)
      return -EINVAL;
    pid = id;
    break;
  case P_PGID:
    if (id < 0)
      return -EINVAL;
    pid = id ? -id : 0;
    break;
  case P_PIDFD: { /* the pidfd's process; PIDFD_NONBLOCK: WNOHANG, EAGAIN when not ready without it */
    if (id < 0)
      return -EINVAL;
    struct file *f = fs_get(sb, id);
    if (!f || f->type != F_PIDFD)
      return -EBADF;
    pid = f->pid;
    nonblock = (f->flags & O_NONBLOCK) != 0;
    break;
  }
  default:
    return -EINVAL;
  }
  struct wait_res res;
  long r = do_wait(sb, pid, options | (nonblock ? WNOHANG : 0), (options & WNOWAIT) != 0, &res);
  if (r < 0)
    return r;
  if (!res.pid && nonblock && !(options & WNOHANG))
    return -EAGAIN;
  if (A(2)) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (res.pid) {
      si.si_signo = SIGCHLD;
      si.si_code = res.code;
      si.si_pid = res.pid;
      si.si_uid = (uid_t)res.uid;
      si.si_status = res.cstatus;
    }
    if (mm_copy_out(sb, A(2), &si, sizeof si) < 0)
      return -EFAULT;
  }
  if (A(4) && put_rusage(sb, A(4), &res) < 0)
    return -EFAULT;
  return 0;
}

/* ---- pidfds ----
 * A pidfd is an open file (F_PIDFD) naming a process by its pid: a
 * sandbox never gives a pid twice (new_id counts up), so the number is
 * the process's identity for as long as the file lives, across a fork
 * (the file is shared), a template (the number is saved: fs.c) and the
 * process's reaping (then it names nobody: ESRCH, ECHILD, POLLHUP). Its
 * readiness (event.c file_poll) is Linux's pidfd_poll: POLLIN once the
 * process has ended (a zombie), POLLHUP too once it was reaped; proc_exit
 * and a reaping wake every wait so a poll looks again. */

struct sb *pidfd_proc(struct sb *sb, const struct file *f)
{
  return f->pid == PROC_INIT ? proc_init() : find_pid(sb, f->pid);
}

/* Whether pid is a thread of a process other than its first one. */
static bool is_thread(struct sb *sb, int pid)
{
  int n = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &n) : &sb;
  for (int k = 0; k < n; k++)
    for (int i = 1; i < CF_VM_MAX_VCPUS; i++) {
      const struct task *t = ps[k]->tasks[i];
      if (t && !t->done && t->tid == pid)
        return true;
    }
  return false;
}

/* pidfd_open(pid, flags) */
long sys_pidfd_open(struct sb *sb, const uint64_t a[6], long nr)
{
  int pid = (int)A(0);
  unsigned flags = (unsigned)A(1);
  if (flags & ~(unsigned)O_NONBLOCK) /* PIDFD_NONBLOCK; PIDFD_THREAD (6.9) is not kept (table note) */
    return -EINVAL;
  if (pid <= 0)
    return -EINVAL;
  if (pid != PROC_INIT && !find_pid(sb, pid))
    return is_thread(sb, pid) ? -EINVAL : -ESRCH; /* a thread: not a process's leader (Linux) */
  struct file *f = file_new(F_PIDFD, -1, O_RDWR | (int)(flags & O_NONBLOCK), "anon_inode:[pidfd]");
  if (!f)
    return -ENOMEM;
  f->pid = pid;
  int fd = fd_install(sb, f, 0, true);
  if (fd < 0)
    file_unref(f);
  return fd;
}

/* pidfd_getfd(pidfd, targetfd, flags): a duplicate of the process's open
 * file (close-on-exec), as Linux's; the permission ptrace's attach check
 * would give in a sandbox: root, or the same user. */
long sys_pidfd_getfd(struct sb *sb, const uint64_t a[6], long nr)
{
  if (A(2))
    return -EINVAL;
  struct file *pf = fs_get(sb, (int)A(0));
  if (!pf || pf->type != F_PIDFD)
    return -EBADF;
  struct sb *t = pidfd_proc(sb, pf);
  if (!t)
    return -ESRCH;
  if (proc_is_init(t)) /* root's; it has no open files */
    return sb->uid != 0 ? -EPERM : -EBADF;
  if (sb->uid != 0 && (sb->uid != t->uid || sb->gid != t->gid))
    return -EPERM;
  if (t->zombie)
    return -ESRCH; /* its files are gone: Linux's ESRCH for an exiting task */
  struct file *f = fs_get(t, (int)A(1));
  if (!f)
    return -EBADF;
  f->refs++;
  int fd = fd_install(sb, f, 0, true);
  if (fd < 0)
    file_unref(f);
  return fd;
}

/* ---- signals to other processes ---- */

/* kill(pid, sig) with Linux's targets: pid > 0 that process (1: the
 * sandbox's init, which drops it), 0 the caller's group, -1 every process
 * of the sandbox but the caller and init (as in a pid namespace), < -1
 * group -pid (init, in group 1, drops its share: -1 is never a group). send: signal.c's
 * delivery to one process. */
long proc_kill(struct sb *sb, int pid, int sig, long (*send)(struct sb *from, struct sb *to, int sig))
{
  if (sig < 0 || sig > 64)
    return -EINVAL;
  if (pid == INT_MIN)
    return -ESRCH;
  if (pid == PROC_INIT)
    return proc_init_signal(sb, sig);
  if (pid > 0) {
    struct sb *t = find_pid(sb, pid);
    if (!t || t->zombie)
      return t ? 0 : -ESRCH; /* a zombie takes a signal and ignores it */
    return send(sb, t, sig);
  }
  if (!sb->w) /* one process: its own group is itself, -1 nobody */
    return pid != -1 && (pid == 0 || -pid == proc_pgid(sb)) ? send(sb, sb, sig) : -ESRCH;
  int pgid = pid == 0 ? proc_pgid(sb) : -pid;
  bool found = false;
  long ret = 0;
  /* self last: its delivery may end this call */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < sb->w->nprocs; i++) {
      struct sb *t = sb->w->procs[i];
      if ((t == sb) != (pass == 1) || t->zombie)
        continue;
      if (pid == -1 ? t == sb : proc_pgid(t) != pgid)
        continue;
      found = true;
      long r = send(sb, t, sig);
      if (r < 0)
        ret = r;
    }
  return found ? ret : -ESRCH;
}

/* ---- identity: parent, groups, sessions ---- */

long sys_getppid(struct sb *sb, const uint64_t a[6], long nr) { return proc_ppid(sb); }


/* getpgrp, getpgid, getsid, setsid */
long sys_getpgrp(struct sb *sb, const uint64_t a[6], long nr)
{
  if (nr == SYS_getpgrp)
    return proc_pgid(sb);
  if (nr == SYS_setsid) {
    /* a group leader may not start a session (EPERM), as Linux */
    if (proc_pgid(sb) == sb->pid)
      return -EPERM;
    if (sb->w)
      for (int i = 0; i < sb->w->nprocs; i++)
        if (sb->w->procs[i] != sb && proc_pgid(sb->w->procs[i]) == sb->pid)
          return -EPERM;
    sb->pgid = sb->sid = sb->pid;
    return sb->pid;
  }
  int pid = (int)A(0);
  struct sb *t = pid == PROC_INIT ? proc_init() : pid ? find_pid(sb, pid) : sb;
  if (!t)
    return -ESRCH;
  return nr == SYS_getsid ? proc_sid(t) : proc_pgid(t);
}

/* setpgid(pid, pgid) */
long sys_setpgid(struct sb *sb, const uint64_t a[6], long nr)
{
  int pid = (int)A(0), pgid = (int)A(1);
  if (pgid < 0)
    return -EINVAL;
  struct sb *t = pid ? find_pid(sb, pid) : sb;
  if (!t || (t != sb && t->parent != sb))
    return -ESRCH;
  if (!pgid)
    pgid = t->pid;
  if (proc_sid(t) == t->pid) /* a session leader */
    return -EPERM;
  if (t != sb && proc_sid(t) != proc_sid(sb))
    return -EPERM;
  if (t != sb && t->execed)
    return -EACCES;
  if (pgid != t->pid) { /* joining a group: it must exist in the session (init's too) */
    bool ok = pgid == proc_pgid(proc_init()) && proc_sid(proc_init()) == proc_sid(sb);
    if (sb->w)
      for (int i = 0; i < sb->w->nprocs && !ok; i++)
        ok = !sb->w->procs[i]->zombie && proc_pgid(sb->w->procs[i]) == pgid &&
             proc_sid(sb->w->procs[i]) == proc_sid(sb);
    else
      ok = ok || proc_pgid(sb) == pgid;
    if (!ok)
      return -EPERM;
  }
  t->pgid = pgid;
  if (!t->sid)
    t->sid = proc_sid(t);
  return 0;
}
