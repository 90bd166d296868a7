/* Tasks: the program's process and identity, execve and exit, futexes,
 * limits and the rest of what a process asks about itself.
 *
 * Threads (clone or clone3 with CLONE_THREAD) are tasks of thread.c, each
 * on a vCPU of its own. One process, by decision until the processes issue
 * (docs/python.md): a new process (fork, vfork, clone without
 * CLONE_THREAD) fails with ENOMEM, what Linux gives when it cannot make one
 * and what perl and bash give up on at once (they retry EAGAIN for seconds
 * or forever); clone3 of a process is ENOSYS so that libc falls back to
 * clone. wait4 is ECHILD.
 *
 * futex WAIT sleeps until a wake, its timeout (ETIMEDOUT) or a signal
 * (EINTR) (thread.c futex_wait). A wait that nothing can end (one thread,
 * no timeout, no armed ITIMER_REAL: a CPU timer does not advance while the
 * program waits) ends the sandbox with a report instead of hanging:
 * natively it would hang forever.
 *
 * Resource limits are kept per sandbox (sb->rlim, only those the program
 * set; rlim_default gives the others) with Linux's checks; RLIMIT_NOFILE
 * is enforced where fds are allocated (fs.c, fd_limit), the others are
 * reported but not enforced (docs/syscalls.md says so).
 *
 * Supplementary groups are each process's (setgroups by root, sorted);
 * a thread's CPU mask and scheduling policy (SCHED_OTHER, SCHED_BATCH,
 * SCHED_IDLE) are kept per thread and reported, with Linux's checks: the
 * vCPUs are still shared in turn (thread.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "internal.h"
#include "shim/shim.h"

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004

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
  /* "#!" scripts, as Linux (elf.c elf_script): path becomes the
   * interpreter, pre the words that replace argv[0]. */
  char(*pre)[PATH_MAX] = malloc(ELF_SCRIPT_WORDS * PATH_MAX);
  if (!pre)
    return -ENOMEM;
  int npre = (int)elf_script(sb, path, pre);
  if (npre < 0) {
    free(pre);
    return npre;
  }
  /* Check before the point of no return: exists, is an ELF we load. */
  if ((r = elf_probe(sb, path)) < 0) {
    free(pre);
    return r;
  }
  /* The program is opened now, as Linux does before close-on-exec: a
   * path through /proc/self/fd/N of an O_CLOEXEC fd (glibc's fexecve)
   * names a file that is closed below. */
  int pfd = fs_open_host(sb, AT_FDCWD, path, O_RDONLY);
  if (pfd < 0) {
    free(pre);
    return pfd;
  }
  long err = 0;
  char **argv = copy_strv(sb, A(1), &err), **envp = argv ? copy_strv(sb, A(2), &err) : NULL;
  if (argv && envp && npre) { /* a script's: the words above, then argv[1...] */
    char **nv = elf_script_argv(pre, npre, argv);
    free_strv(argv);
    if (!(argv = nv)) {
      free_strv(envp);
      envp = NULL;
      err = -ENOMEM;
    }
  }
  free(pre);
  if (!argv || !envp) {
    close(pfd);
    free_strv(argv);
    return err;
  }
  /* The other threads end first (Linux's de_thread): none may run in the
   * memory about to be replaced. A vfork child in its parent's memory gets
   * a VM of its own then: the unmapping below is of that, never of the
   * parent's (process.c). */
  if ((r = task_exec_alone(sb)) < 0 || (r = proc_exec_detach(sb)) < 0) {
    close(pfd);
    free_strv(argv);
    free_strv(envp);
    return r;
  }
  /* Every VMA goes; the /tmp region (no VMA) stays. */
  while (sb->nvma > 0 && mm_unmap(sb, sb->vmas[0].start, sb->vmas[0].end - sb->vmas[0].start) == 0)
    ;
  sb->nvma = 0;
  for (int i = 0; i < sb->nfds; i++)
    if (sb->fds[i] && sb->cloexec[i]) {
      uint64_t ca[6] = {(uint64_t)i}; /* fs.c owns the refcount: close(2) */
      sys_close(sb, ca, SYS_close);
    }
  for (int s = 1; s <= 64; s++)
    if (sb->act[s].handler != (uint64_t)SIG_IGN)
      sb->act[s] = (struct ksigaction){0};
  sb->ss_sp = sb->ss_size = 0; /* the alternate signal stack is cleared, as Linux */
  timers_exec(sb);             /* and the POSIX timers deleted */
  sb->ss_flags = SS_DISABLE;
  sb->robust_list = 0; /* its mutexes go with the memory; the new program sets its own */
  sb->execed = true;
  proc_vfork_done(sb); /* a vfork parent goes on */
  uint64_t entry, sp;
  r = elf_load(sb, pfd, path, argv, envp, &entry, &sp); /* (it closes pfd) */
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

/* ---- futex ---- */

#define FUTEX_PRIVATE FUTEX_PRIVATE_FLAG
#define FUTEX_REALTIME FUTEX_CLOCK_REALTIME

/* futex: WAIT, WAIT_BITSET, WAKE, WAKE_BITSET, REQUEUE, CMP_REQUEUE,
 * WAKE_OP on thread.c's waiters. The PI and requeue-PI operations are
 * ENOSYS (an error, never a silent success). */
static long do_futex(struct sb *sb, const uint64_t a[6])
{
  int op = (int)A(1), cmd = op & ~(FUTEX_PRIVATE | FUTEX_REALTIME);
  uint64_t uaddr = A(0);
  uint32_t val = (uint32_t)A(2), val3 = (uint32_t)A(5);
  bool priv = op & FUTEX_PRIVATE; /* else keyed by the shared object under it, if any (thread.c) */
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
    long r = futex_wait_key(sb, futex_key(sb, uaddr, priv), cmd == FUTEX_WAIT ? FUTEX_BITSET_MATCH_ANY : val3, clk, timed ? &dl : NULL);
    if (r == 1) /* woken, even if the deadline passed since */
      return 0;
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
    if (uaddr % 4)
      return -EINVAL;
    return futex_wake_key(sb, futex_key(sb, uaddr, priv), (int)(val > INT32_MAX ? INT32_MAX : val),
                          cmd == FUTEX_WAKE ? FUTEX_BITSET_MATCH_ANY : val3);
  case FUTEX_REQUEUE:
  case FUTEX_CMP_REQUEUE: {
    uint32_t cur;
    if (uaddr % 4 || A(4) % 4)
      return -EINVAL;
    int nwake = (int)(val > INT32_MAX ? INT32_MAX : val), nmove = (int)(uint32_t)A(3);
    if (nwake < 0 || nmove < 0)
      return -EINVAL;
    if (cmd == FUTEX_CMP_REQUEUE) {
      if (mm_copy_in(sb, &cur, uaddr, 4) < 0)
        return -EFAULT;
      if (cur != val3)
        return -EAGAIN;
    }
    return futex_requeue_key(sb, futex_key(sb, uaddr, priv), nwake, futex_key(sb, A(4), priv), nmove);
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
    /* Atomic against the other vCPUs, which do not take the lock. */
    uint32_t old = __atomic_load_n(p, __ATOMIC_SEQ_CST), nv;
    do {
      switch (wop) {
      case 0: nv = oparg; break;        /* SET */
      case 1: nv = old + oparg; break;  /* ADD */
      case 2: nv = old | oparg; break;  /* OR */
      case 3: nv = old & ~oparg; break; /* ANDN */
      default: nv = old ^ oparg; break; /* XOR */
      }
    } while (!__atomic_compare_exchange_n(p, &old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    uint32_t cmparg = val3 & 0xfff;
    bool hit = cmp == 0 ? old == cmparg : cmp == 1 ? old != cmparg : cmp == 2 ? old < cmparg
             : cmp == 3 ? old <= cmparg : cmp == 4 ? old > cmparg : old >= cmparg;
    if (uaddr % 4)
      return -EINVAL;
    int n = futex_wake_key(sb, futex_key(sb, uaddr, priv), (int)(val > INT32_MAX ? INT32_MAX : val),
                           FUTEX_BITSET_MATCH_ANY);
    if (hit)
      n += futex_wake_key(sb, futex_key(sb, uaddr2, priv), (int)(uint32_t)A(3) > 0 ? (int)(uint32_t)A(3) : 0, FUTEX_BITSET_MATCH_ANY);
    return n;
  }
  }
  return -ENOSYS;
}

/* ---- the system calls (systab.c's table) ---- */

long sys_arch_prctl(struct sb *sb, const uint64_t a[6], long nr)
{
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

long sys_set_tid_address(struct sb *sb, const uint64_t a[6], long nr)
{
  sb->tid_address = A(0);
  return sb->tid;
}

/* The list is the program's (glibc's robust mutexes, each entry's futex
 * word at futex_offset from it); the head is the thread's (sb->robust_list,
 * switched with the task). A thread's exit walks it (robust_exit). */
long sys_set_robust_list(struct sb *sb, const uint64_t a[6], long nr)
{
  if (A(1) != 24) /* sizeof(struct robust_list_head) */
    return -EINVAL;
  sb->robust_list = A(0);
  return 0;
}

/* One robust futex of an exiting thread, as Linux's handle_futex_death:
 * held by this thread, it becomes FUTEX_OWNER_DIED (keeping
 * FUTEX_WAITERS) and a waiter is woken, whose lock then returns
 * EOWNERDEAD; the pending entry (a lock or unlock the thread was in the
 * middle of) with a zero word only wakes a waiter. PI entries are not
 * woken here (the PI futex calls are ENOSYS, so none can wait). */
static void robust_death(struct sb *sb, uint64_t uaddr, bool pi, bool pending)
{
  if (uaddr % 4)
    return;
  uint32_t *p = mm_ptr(sb, uaddr, 4, PROT_READ | PROT_WRITE);
  if (!p)
    return;
  uint32_t v = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  if (pending && !pi && !v) {
    futex_wake(sb, uaddr, 1, FUTEX_BITSET_MATCH_ANY);
    return;
  }
  do {
    if ((v & FUTEX_TID_MASK) != (uint32_t)sb->tid)
      return;
    /* Other vCPUs run meanwhile (they do not take the lock): a compare and swap. */
  } while (!__atomic_compare_exchange_n(p, &v, (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST));
  if (!pi && (v & FUTEX_WAITERS))
    futex_wake(sb, uaddr, 1, FUTEX_BITSET_MATCH_ANY);
}

/* A thread ends: its robust list (struct robust_list_head: the list's
 * next, futex_offset, list_op_pending; bit 0 of an entry pointer marks a PI
 * futex), walked as Linux's exit_robust_list, at most 2048 entries (a
 * circular or bad list ends the walk, never the shim). */
void robust_exit(struct sb *sb)
{
  uint64_t head[3], head_addr = sb->robust_list, entry, pending, next;
  sb->robust_list = 0;
  if (!head_addr || mm_copy_in(sb, head, head_addr, sizeof head) < 0)
    return;
  int64_t off = (int64_t)head[1];
  entry = head[0];
  pending = head[2];
  for (int n = 0; (entry & ~1ull) != head_addr && n < 2048; n++) {
    if (mm_copy_in(sb, &next, entry & ~1ull, 8) < 0)
      break;
    if ((entry & ~1ull) != (pending & ~1ull))
      robust_death(sb, (entry & ~1ull) + (uint64_t)off, entry & 1, false);
    entry = next;
  }
  if (pending)
    robust_death(sb, (pending & ~1ull) + (uint64_t)off, pending & 1, true);
}

long sys_futex(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_futex(sb, a);
}

/* exit, exit_group */
long sys_exit(struct sb *sb, const uint64_t a[6], long nr)
{
  int code = (int)(A(0) & 0xff);
  if (nr == SYS_exit)
    return task_exit(sb, code);
  sb->exited = true;
  sb->exit_code = code;
  task_end_all(sb);
  return SYS_NORETURN;
}

/* clone(flags, stack, parent_tid, child_tid, tls): a thread (thread.c) or
 * a process (process.c) */
long sys_clone(struct sb *sb, const uint64_t a[6], long nr)
{
  /* Linux's checks first: a thread shares the handlers, which share the memory. */
  if (((A(0) & CLONE_THREAD) && !(A(0) & CLONE_SIGHAND)) || ((A(0) & CLONE_SIGHAND) && !(A(0) & CLONE_VM)))
    return -EINVAL;
  /* CLONE_PIDFD puts the pidfd where parent_tid points: not with
   * CLONE_PARENT_SETTID (the same word) nor the legacy CLONE_DETACHED. */
  if ((A(0) & CLONE_PIDFD) && (A(0) & (CLONE_PARENT_SETTID | CLONE_DETACHED)))
    return -EINVAL;
  if (!(A(0) & CLONE_THREAD))
    return proc_fork(sb, A(0), A(1), A(2), A(3), A(4), A(2));
  return task_clone(sb, A(0), A(1), A(2), A(3), A(4));
}

/* fork, vfork */
long sys_fork(struct sb *sb, const uint64_t a[6], long nr)
{
  return proc_fork(sb, nr == SYS_vfork ? CLONE_VM | CLONE_VFORK | SIGCHLD : SIGCHLD, 0, 0, 0, 0, 0);
}

/* clone3(args, size): threads and processes as clone */
long sys_clone3(struct sb *sb, const uint64_t a[6], long nr)
{
  struct {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
  } ca = {0};
  if (A(1) < 64 || A(1) > 4096)
    return -EINVAL;
  if (mm_copy_in(sb, &ca, A(0), A(1) < sizeof ca ? A(1) : sizeof ca) < 0)
    return -EFAULT;
  if ((ca.flags & 0xff) || ca.exit_signal > 64)
    return -EINVAL;
  if (ca.flags & 0x200000000ull) /* CLONE_INTO_CGROUP: no cgroups in a sandbox */
    return -EINVAL;
  if (ca.set_tid_size)
    return -EPERM; /* choosing a pid needs CAP_SYS_ADMIN */
  if (!ca.stack != !ca.stack_size)
    return -EINVAL;
  uint64_t sp = ca.stack ? ca.stack + ca.stack_size : 0;
  if (!(ca.flags & CLONE_THREAD)) {
    if ((ca.flags & CLONE_SIGHAND) && !(ca.flags & CLONE_VM))
      return -EINVAL;
    if ((ca.flags & CLONE_PIDFD) && (ca.flags & CLONE_PARENT_SETTID) && ca.pidfd == ca.parent_tid)
      return -EINVAL;
    return proc_fork(sb, ca.flags | ca.exit_signal, sp, ca.parent_tid, ca.child_tid, ca.tls, ca.pidfd);
  }
  if (!(ca.flags & CLONE_SIGHAND) || !(ca.flags & CLONE_VM) || ca.exit_signal)
    return -EINVAL;
  return task_clone(sb, ca.flags, sp, ca.parent_tid, ca.child_tid, ca.tls);
}

long sys_execve(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_execve(sb, a);
}

long sys_getpid(struct sb *sb, const uint64_t a[6], long nr)
{
  return sb->pid;
}

long sys_gettid(struct sb *sb, const uint64_t a[6], long nr)
{
  return sb->tid;
}

/* getuid, geteuid */
long sys_getuid(struct sb *sb, const uint64_t a[6], long nr)
{
  return sb->uid;
}

/* getgid, getegid */
long sys_getgid(struct sb *sb, const uint64_t a[6], long nr)
{
  return sb->gid;
}

/* setuid, setgid */
long sys_setuid(struct sb *sb, const uint64_t a[6], long nr)
{
  return (int)A(0) == (nr == SYS_setgid ? sb->gid : sb->uid) ? 0 : -EPERM;
}

/* setresuid, setresgid: as setuid, each id -1 (kept) or the current one */
long sys_setresuid(struct sb *sb, const uint64_t a[6], long nr)
{
  int cur = nr == SYS_setresuid ? sb->uid : sb->gid;
  for (int i = 0; i < 3; i++)
    if ((int)A(i) != -1 && (int)A(i) != cur)
      return -EPERM;
  return 0;
}

/* getresuid, getresgid */
long sys_getresuid(struct sb *sb, const uint64_t a[6], long nr)
{
  uint32_t id = (uint32_t)(nr == SYS_getresuid ? sb->uid : sb->gid);
  for (int i = 0; i < 3; i++)
    if (mm_copy_out(sb, A(i), &id, 4) < 0)
      return -EFAULT;
  return 0;
}

/* ---- supplementary groups: each process's list, sorted (Linux's
 * groups_sort); the host process's at the start (a sandbox runs as the
 * host's uid and gid). Only root may set them (CAP_SETGID). ---- */

void task_init_creds(struct sb *sb)
{
  sb->groups = NULL;
  sb->ngroups = 0;
  int n = getgroups(0, NULL);
  gid_t *g = n > 0 ? malloc((size_t)n * sizeof *g) : NULL;
  if (g && (n = getgroups(n, g)) > 0 && (sb->groups = malloc((size_t)n * sizeof *sb->groups))) {
    for (int i = 0; i < n; i++)
      sb->groups[i] = (uint32_t)g[i];
    sb->ngroups = n;
  }
  free(g);
}

void task_free_creds(struct sb *sb)
{
  free(sb->groups);
  sb->groups = NULL;
  sb->ngroups = 0;
}

int task_copy_creds(struct sb *c, const struct sb *p)
{
  c->groups = NULL;
  c->ngroups = 0;
  if (!p->ngroups)
    return 0;
  if (!(c->groups = malloc((size_t)p->ngroups * sizeof *c->groups)))
    return -ENOMEM;
  memcpy(c->groups, p->groups, (size_t)p->ngroups * sizeof *c->groups);
  c->ngroups = p->ngroups;
  return 0;
}

bool task_in_group(const struct sb *sb, uint32_t gid)
{
  if (gid == (uint32_t)sb->gid)
    return true;
  for (int i = 0; i < sb->ngroups; i++)
    if (sb->groups[i] == gid)
      return true;
  return false;
}

long sys_getgroups(struct sb *sb, const uint64_t a[6], long nr)
{
  int size = (int)A(0);
  if (size < 0)
    return -EINVAL;
  if (size == 0)
    return sb->ngroups;
  if (size < sb->ngroups)
    return -EINVAL;
  return mm_copy_out(sb, A(1), sb->groups, (size_t)sb->ngroups * 4) < 0 ? -EFAULT : sb->ngroups;
}

static int gid_cmp(const void *x, const void *y)
{
  uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
  return a < b ? -1 : a > b;
}

/* setgroups(size, list): Linux's order: the capability, the size
 * (NGROUPS_MAX), the list. */
long sys_setgroups(struct sb *sb, const uint64_t a[6], long nr)
{
  if (sb->uid != 0)
    return -EPERM;
  if ((uint32_t)A(0) > NGROUPS_MAX)
    return -EINVAL;
  size_t n = (uint32_t)A(0);
  uint32_t *g = n ? malloc(n * 4) : NULL;
  if (n && !g)
    return -ENOMEM;
  if (n && mm_copy_in(sb, g, A(1), n * 4) < 0) {
    free(g);
    return -EFAULT;
  }
  qsort(g, n, 4, gid_cmp);
  free(sb->groups);
  sb->groups = g;
  sb->ngroups = (int)n;
  return 0;
}

long sys_uname(struct sb *sb, const uint64_t a[6], long nr)
{
  /* The host's kernel, the sandbox's own name. */
  struct utsname u;
  uname(&u);
  snprintf(u.nodename, sizeof u.nodename, "%s", sb->hostname[0] ? sb->hostname : CF_DEFAULT_HOSTNAME);
  snprintf(u.domainname, sizeof u.domainname, "(none)");
  return mm_copy_out(sb, A(0), &u, sizeof u);
}

long sys_sethostname(struct sb *sb, const uint64_t a[6], long nr)
{
  if (sb->uid != 0) /* Linux: the capability first, then the length */
    return -EPERM;
  if ((int64_t)A(1) < 0 || A(1) > 64)
    return -EINVAL;
  char name[65];
  if (mm_copy_in(sb, name, A(0), A(1)) < 0)
    return -EFAULT;
  return virt_sethostname(sb, name, A(1));
}

long sys_sysinfo(struct sb *sb, const uint64_t a[6], long nr)
{
  struct sysinfo si;
  sysinfo(&si);
  si.procs = 1;
  return mm_copy_out(sb, A(0), &si, sizeof si);
}

/* The limits a sandbox starts with: the stack it has, the fds it can
 * have, its memory; no limit on the rest. */
static struct rlimit rlim_default(struct sb *sb, int res)
{
  switch (res) {
  case RLIMIT_STACK:
    return (struct rlimit){STACK_SIZE, STACK_SIZE};
  case RLIMIT_NOFILE:
    /* Linux's default soft limit (1024), at most the hard one: the host
     * fds the sandbox may hold (max_files) */
    return (struct rlimit){SB_NR_OPEN(sb) < 1024 ? (rlim_t)SB_NR_OPEN(sb) : 1024, (rlim_t)SB_NR_OPEN(sb)};
  case RLIMIT_AS:
  case RLIMIT_DATA:
    return (struct rlimit){sb->mem_size, sb->mem_size};
  case RLIMIT_SIGPENDING: /* the signal queue's real size (signal.c) */
    return (struct rlimit){SIGQ_MAX, SIGQ_MAX};
  }
  return (struct rlimit){RLIM_INFINITY, RLIM_INFINITY};
}

void rlim_get(struct sb *sb, int res, struct rlimit *rl)
{
  *rl = sb->rlim_set & (1u << res) ? sb->rlim[res] : rlim_default(sb, res);
}

int fd_limit(struct sb *sb)
{
  /* at most the sandbox's nr_open (its max_files), whatever a template's
   * state says */
  int max = SB_NR_OPEN(sb);
  struct rlimit rl;
  rlim_get(sb, RLIMIT_NOFILE, &rl);
  rlim_t n = rl.rlim_cur;
  return n < (rlim_t)max ? (int)n : max;
}

/* Linux's do_prlimit: the old limit into *old (if asked), the new one nl
 * (if given, already read in) checked and kept. The limits are kept and
 * reported; the shim enforces RLIMIT_NOFILE (fd allocation, fs.c), and the
 * others are what the sandbox has anyway or not enforced (docs/syscalls.md). */
static long do_prlimit(struct sb *sb, int res, const struct rlimit *nl, struct rlimit *old)
{
  if (res < 0 || res >= RLIM_NLIMITS)
    return -EINVAL;
  struct rlimit cur;
  rlim_get(sb, res, &cur);
  if (nl) {
    if (nl->rlim_cur > nl->rlim_max)
      return -EINVAL;
    /* Linux: NOFILE never above nr_open (here: the sandbox's max_files),
     * and raising a hard limit needs
     * CAP_SYS_RESOURCE (root here). */
    if (res == RLIMIT_NOFILE && nl->rlim_max > (rlim_t)SB_NR_OPEN(sb))
      return -EPERM;
    if (nl->rlim_max > cur.rlim_max && sb->uid != 0)
      return -EPERM;
  }
  if (old)
    *old = cur;
  if (nl) {
    sb->rlim[res] = *nl;
    sb->rlim_set |= 1u << res;
  }
  return 0;
}

long sys_getrlimit(struct sb *sb, const uint64_t a[6], long nr)
{
  struct rlimit rl;
  long r = do_prlimit(sb, (int)A(0), NULL, &rl);
  return r < 0 ? r : mm_copy_out(sb, A(1), &rl, sizeof rl);
}

long sys_setrlimit(struct sb *sb, const uint64_t a[6], long nr)
{
  struct rlimit nl;
  if (mm_copy_in(sb, &nl, A(1), sizeof nl) < 0)
    return -EFAULT;
  return do_prlimit(sb, (int)A(0), &nl, NULL);
}

long sys_prlimit64(struct sb *sb, const uint64_t a[6], long nr)
{
  struct rlimit nl, old;
  if (A(2) && mm_copy_in(sb, &nl, A(2), sizeof nl) < 0)
    return -EFAULT;
  if (A(0) && (int)A(0) != sb->pid)
    return -ESRCH;
  long r = do_prlimit(sb, (int)A(1), A(2) ? &nl : NULL, A(3) ? &old : NULL);
  if (r < 0)
    return r;
  return A(3) ? mm_copy_out(sb, A(3), &old, sizeof old) : 0;
}

/* getrusage(who, usage): the CPU time of the process (RUSAGE_SELF), the
 * calling thread (RUSAGE_THREAD) or the children it waited for and theirs
 * (RUSAGE_CHILDREN), all of it as user time (the guest's running and the
 * shim's serving it are one clock here); the other fields zero. */
long sys_getrusage(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t ns;
  switch ((int)A(0)) {
  case RUSAGE_SELF:
    ns = guest_cpu_ns(sb);
    break;
  case RUSAGE_THREAD: /* a thread of its own: its host thread's; task 0: the rest */
    ns = sb->cur && sb->cur->idx ? thread_cpu_ns() - sb->cur->cpu0 : guest_cpu_ns(sb) - task_cpu_ns(sb);
    break;
  case RUSAGE_CHILDREN:
    ns = sb->child_cpu_ns;
    break;
  default:
    return -EINVAL;
  }
  struct rusage ru = {0};
  ru.ru_utime.tv_sec = (time_t)(ns / 1000000000u);
  ru.ru_utime.tv_usec = (suseconds_t)(ns % 1000000000u / 1000);
  return mm_copy_out(sb, A(1), &ru, sizeof ru);
}

long sys_getrandom(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t len = A(1) > (1 << 20) ? 1 << 20 : A(1);
  void *p = mm_ptr(sb, A(0), len, PROT_WRITE);
  if (!p)
    return -EFAULT;
  ssize_t n = getrandom(p, len, (unsigned)(A(2) & GRND_NONBLOCK));
  return n < 0 ? -errno : n;
}

/* A thread's scheduling fields (struct sb's [task] cpus_off and policy):
 * those of thread pid (0: the caller) of any process of the sandbox, in
 * its struct sb while it is the one that runs (or ran last) there, else in
 * its struct task. The sandbox's init (PROC_INIT, proc_init: no thread
 * the shim runs): INIT (root's, SCHED_OTHER on every CPU, as Linux's
 * init; changes EPERM), or -EINVAL for a negative pid, -ESRCH. */
#define INIT 1
struct sched_of {
  uint64_t *off;
  int *policy;
};

static long sched_find(struct sb *sb, int pid, struct sched_of *o)
{
  if (pid < 0)
    return -EINVAL;
  if (pid == 0)
    pid = sb->tid;
  int n = 0;
  struct sb *self = sb;
  struct sb *const *all = sb->w ? proc_list(sb, &n) : &self; /* (a sandbox of one process has no world) */
  if (!sb->w)
    n = 1;
  for (int k = 0; k < n; k++) {
    struct sb *p = all[k];
    if (p->zombie)
      continue;
    if (p->tid == pid) {
      *o = (struct sched_of){p->cpus_off, &p->policy};
      return 0;
    }
    for (int i = 0; i < CF_VM_MAX_VCPUS; i++) {
      struct task *t = p->tasks[i];
      if (t && t->tid == pid && !t->exited) {
        *o = (struct sched_of){t->cpus_off, &t->policy};
        return 0;
      }
    }
  }
  return pid == PROC_INIT ? INIT : -ESRCH;
}

/* Scheduling policies: SCHED_OTHER, and SCHED_BATCH and SCHED_IDLE, which
 * any thread may take (Linux's rules for a caller without CAP_SYS_NICE:
 * leaving SCHED_IDLE needs an RLIMIT_NICE that allows nice 0, and the
 * reset-on-fork flag once set stays; root may anything here). They are
 * kept and reported (the sandbox's CPUs are shared by its threads in turn:
 * thread.c), with Linux's checks and ranges. The real-time policies
 * (SCHED_FIFO, SCHED_RR) and SCHED_DEADLINE are not done: EPERM, as for a
 * caller without CAP_SYS_NICE (root's too). So is a change of the
 * sandbox's init (pid 1: no thread the shim runs). */
long sys_sched(struct sb *sb, const uint64_t a[6], long nr)
{
  long r;
  int pol = (int)A(0);
  struct sched_of o;
  switch (nr) {
  case SYS_sched_get_priority_max:
  case SYS_sched_get_priority_min:
    if (pol == SCHED_FIFO || pol == SCHED_RR)
      return nr == SYS_sched_get_priority_max ? 99 : 1;
    return pol == SCHED_OTHER || pol == SCHED_BATCH || pol == SCHED_IDLE || pol == 6 /* SCHED_DEADLINE */ ? 0 : -EINVAL;
  case SYS_sched_getscheduler:
    if ((r = sched_find(sb, (int)A(0), &o)) < 0)
      return r;
    return r == INIT ? SCHED_OTHER : *o.policy;
  case SYS_sched_getparam: {
    if (!A(1) || (int)A(0) < 0)
      return -EINVAL;
    if ((r = sched_find(sb, (int)A(0), &o)) < 0)
      return r;
    int prio = 0;
    return mm_copy_out(sb, A(1), &prio, sizeof prio) < 0 ? -EFAULT : 0;
  }
  case SYS_sched_rr_get_interval: { /* SCHED_OTHER: Linux gives the CFS slice; one vCPU turn here */
    if ((r = sched_find(sb, (int)A(0), &o)) < 0)
      return r;
    struct timespec ts = {0, 4000000};
    return mm_copy_out(sb, A(1), &ts, sizeof ts) < 0 ? -EFAULT : 0;
  }
  default: { /* sched_setscheduler(pid, policy, param), sched_setparam(pid, param) */
    bool set = nr == SYS_sched_setscheduler;
    uint64_t pp = set ? A(2) : A(1);
    int flags = set ? (int)A(1) & SCHED_RESET_ON_FORK : 0, policy = set ? (int)A(1) & ~SCHED_RESET_ON_FORK : -1, prio;
    if (!pp || (int)A(0) < 0)
      return -EINVAL;
    if (mm_copy_in(sb, &prio, pp, sizeof prio) < 0)
      return -EFAULT;
    if ((r = sched_find(sb, (int)A(0), &o)) < 0)
      return r;
    int cur = r == INIT ? SCHED_OTHER : *o.policy;
    if (policy == -1) { /* sched_setparam: the policy stays */
      policy = cur & ~SCHED_RESET_ON_FORK;
      flags = cur & SCHED_RESET_ON_FORK;
    }
    if (policy < 0 || policy > 6 || policy == 4)
      return -EINVAL;
    if (((policy == SCHED_FIFO || policy == SCHED_RR) ? prio < 1 || prio > 99 : prio != 0))
      return -EINVAL;
    if (policy == SCHED_FIFO || policy == SCHED_RR || policy == 6 || r == INIT)
      return -EPERM;
    if (sb->uid != 0) {
      struct rlimit nice;
      rlim_get(sb, RLIMIT_NICE, &nice);
      if ((cur & ~SCHED_RESET_ON_FORK) == SCHED_IDLE && policy != SCHED_IDLE && nice.rlim_cur < 20)
        return -EPERM; /* out of SCHED_IDLE: nice 0 must be allowed */
      if ((cur & SCHED_RESET_ON_FORK) && !flags)
        return -EPERM;
    }
    *o.policy = policy | flags;
    return 0;
  }
  }
}

/* The CPU mask of the sandbox (sb_cpus bits) minus off, into m. */
static void cpus_mask(const struct sb *sb, const uint64_t off[2], uint64_t m[2])
{
  int n = sb_cpus(sb);
  for (int w = 0; w < 2; w++) {
    int bits = n - 64 * w;
    uint64_t all = bits >= 64 ? ~0ull : bits <= 0 ? 0 : (1ull << bits) - 1;
    m[w] = all & ~off[w];
  }
}

void task_cpus(struct sb *sb, int tid, uint64_t m[2])
{
  static const uint64_t none[2];
  struct sched_of o;
  cpus_mask(sb, sched_find(sb, tid, &o) == 0 ? o.off : none, m);
}

/* sched_getaffinity(pid, len, mask): the thread's CPUs (sched_setaffinity),
 * for any thread of the sandbox. The sandbox's CPUs are Linux's possible
 * ones (nr_cpu_ids: sb_cpus): Linux's checks in its order: a length shorter
 * than their mask or not a multiple of 8 is EINVAL, then a pid that is no
 * thread (a negative one too) ESRCH; the result is the mask's size in
 * bytes (8 per 64 CPUs). */
long sys_sched_getaffinity(struct sb *sb, const uint64_t a[6], long nr)
{
  size_t size = (size_t)(sb_cpus(sb) + 63) / 64 * 8;
  if (A(1) * 8 < (uint64_t)sb_cpus(sb) || A(1) % 8)
    return -EINVAL;
  struct sched_of o;
  long r = sched_find(sb, (int)A(0), &o);
  if (r < 0)
    return -ESRCH;
  static const uint64_t none[2];
  uint64_t m[2];
  cpus_mask(sb, r == INIT ? none : o.off, m);
  return mm_copy_out(sb, A(2), m, size) < 0 ? -EFAULT : (long)size;
}

/* sched_setaffinity(pid, len, mask): the thread's CPUs, those of the
 * sandbox's the mask names (Linux: bits past len bytes are 0, past the
 * CPUs ignored; none left: EINVAL). Kept and reported: a thread still runs
 * on whichever of the sandbox's vCPUs is free (thread.c). */
long sys_sched_setaffinity(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t in[2] = {0, 0};
  size_t len = A(1) > sizeof in ? sizeof in : (size_t)A(1);
  if (len && mm_copy_in(sb, in, A(2), len) < 0)
    return -EFAULT;
  struct sched_of o;
  long r = sched_find(sb, (int)A(0), &o);
  if (r < 0)
    return -ESRCH;
  if (r == INIT) /* Linux's permission check comes first: another user's (root's: not done here) */
    return -EPERM;
  static const uint64_t none[2];
  uint64_t all[2];
  cpus_mask(sb, none, all);
  if (!(in[0] & all[0]) && !(in[1] & all[1]))
    return -EINVAL;
  o.off[0] = all[0] & ~in[0];
  o.off[1] = all[1] & ~in[1];
  return 0;
}

long sys_sched_yield(struct sb *sb, const uint64_t a[6], long nr)
{
  if (task_live(sb) > 1) { /* let a task waiting for the lock have it */
    struct task *me = sb->cur;
    task_unlock(sb);
    sched_yield();
    task_lock(sb, me);
  }
  return 0;
}

long sys_prctl(struct sb *sb, const uint64_t a[6], long nr)
{
  return A(0) == 15 /* PR_SET_NAME */ || A(0) == 16 ? 0 : -EINVAL;
}

/* ---- state file (snapshot.c orchestrates) ---- */

/* The ids. */
void task_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, (uint64_t)sb->pid);
  w_u64(w, (uint64_t)sb->tid);
  w_u64(w, sb->tid_address);
}

int task_load(struct sb *sb, struct rbuf *r, const char *name)
{
  sb->pid = (int)r_u64(r);
  sb->tid = (int)r_u64(r);
  sb->tid_address = r_u64(r);
  return r->err ? cf_fail(EINVAL, "template '%s': malformed state file", name) : 0;
}

/* Version 3: the identity, the hostname and the program's argument and
 * environment ranges (/proc/self/cmdline, environ). */
void task_save_ident(struct sb *sb, struct wbuf *w)
{
  w_str(w, sb->hostname);
  w_u64(w, sb->arg_start);
  w_u64(w, sb->arg_end);
  w_u64(w, sb->env_start);
  w_u64(w, sb->env_end);
}

/* A version 1 or 2 payload ends before it: the default hostname and an
 * empty cmdline and environ. The sandbox's options may name a hostname. */
int task_load_ident(struct sb *sb, struct rbuf *r, const char *name)
{
  snprintf(sb->hostname, sizeof sb->hostname, "%s", CF_DEFAULT_HOSTNAME);
  if (r->off != r->n) {
    r_str(r, sb->hostname, sizeof sb->hostname);
    sb->arg_start = r_u64(r);
    sb->arg_end = r_u64(r);
    sb->env_start = r_u64(r);
    sb->env_end = r_u64(r);
    if (r->err || sb->arg_end < sb->arg_start || sb->env_start < sb->arg_end || sb->env_end < sb->env_start ||
        sb->env_end > sb->mem_size)
      return cf_fail(EINVAL, "template '%s': bad identity", name);
  }
  if (sb->opts->hostname) {
    if (!cf_sandbox_hostname_ok(sb->opts->hostname))
      return cf_fail(EINVAL, "bad hostname '%s' (1-64 bytes, no control characters or '/')", sb->opts->hostname);
    snprintf(sb->hostname, sizeof sb->hostname, "%s", sb->opts->hostname);
  }
  return 0;
}

/* Version 4: the limits the program set (a tag, the mask, then each one). */
#define RLIMIT_TAG 0x5354494d494c5243ull /* "CRLIMITS" */

void task_save_limits(struct sb *sb, struct wbuf *w)
{
  w_u64(w, RLIMIT_TAG);
  w_u64(w, sb->rlim_set);
  for (int i = 0; i < RLIM_NLIMITS; i++)
    if (sb->rlim_set & (1u << i)) {
      w_u64(w, sb->rlim[i].rlim_cur);
      w_u64(w, sb->rlim[i].rlim_max);
    }
}

int task_load_limits(struct sb *sb, struct rbuf *r, const char *name)
{
  sb->rlim_set = 0;
  if (r->off == r->n)
    return 0; /* version 1-3: the defaults */
  uint64_t tag = r_u64(r), set = r_u64(r);
  if (r->err || tag != RLIMIT_TAG || set >> RLIM_NLIMITS)
    return cf_fail(EINVAL, "template '%s': bad resource limits", name);
  for (int i = 0; i < RLIM_NLIMITS; i++)
    if (set & (1u << i)) {
      sb->rlim[i].rlim_cur = r_u64(r);
      sb->rlim[i].rlim_max = r_u64(r);
      if (r->err || sb->rlim[i].rlim_cur > sb->rlim[i].rlim_max ||
          (i == RLIMIT_NOFILE && sb->rlim[i].rlim_max > MAX_FDS))
        return cf_fail(EINVAL, "template '%s': bad resource limits", name);
    }
  sb->rlim_set = (uint32_t)set;
  return 0;
}
