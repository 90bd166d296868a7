/* Shim internals shared by the files in shim/. The whole sandbox state is guest
 * memory + vCPU registers + struct sb (plus the host fds it names): a
 * snapshot saves exactly these. */
#ifndef COWFORK_SHIM_INTERNAL_H
#define COWFORK_SHIM_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include "cowfork/dirty.h"
#include "cowfork/mem.h"
#include "cowfork/shim.h"
#include "cowfork/vmm.h"

#define PAGE 4096ull
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))
#define PAGE_DOWN(x) ((x) & ~(PAGE - 1))

#define MAX_VMAS 4096
#define MAX_FDS CF_SANDBOX_NR_OPEN /* the fd table's most (sb->fds grows: fd_table_grow) */
#define STACK_SIZE (8ull << 20)
#define STACK_GAP (1ull << 20)
/* Guest memory from the top: the stack, a gap, the /tmp data region (a
 * quarter of guest memory), a gap, then mmap space top-down. */
#define TMP_SIZE(mem) (((mem) / 4) & ~(PAGE - 1))
#define TMP_BASE(mem) ((mem) - STACK_SIZE - STACK_GAP - TMP_SIZE(mem))
#define MMAP_TOP(mem) (TMP_BASE(mem) - STACK_GAP)

/* The host fds the sandbox's open files may hold: its options' max_files
 * (CF_SANDBOX_MAX_FILES when 0), at most MAX_FDS. */
#define SB_NOFILE(sb)                                                                                          \
  ((sb)->opts && (sb)->opts->max_files ? ((sb)->opts->max_files < MAX_FDS ? (int)(sb)->opts->max_files : MAX_FDS) \
                                       : CF_SANDBOX_MAX_FILES)
/* RLIMIT_NOFILE's ceiling (nr_open): the host fds it may hold, so that a
 * guest that raises its limit to the hard one can open that many. */
#define SB_NR_OPEN(sb) SB_NOFILE(sb)

/* One guest mapping: [start, end), PROT_* bits. */
struct vma {
  uint64_t start, end;
  int prot;
  bool file; /* mapped from a host file (its pages are not zero when absent) */
};

/* Whether two VMA lists are the same (field by field: struct vma has padding). */
static inline bool vmas_equal(const struct vma *a, int na, const struct vma *b, int nb)
{
  if (na != nb)
    return false;
  for (int i = 0; i < na; i++)
    if (a[i].start != b[i].start || a[i].end != b[i].end || a[i].prot != b[i].prot || a[i].file != b[i].file)
      return false;
  return true;
}

/* F_DEV: a device of the sandbox's /dev (null, zero, full, random, urandom;
 * state files of version <= 2 call it F_NULL: /dev/null); F_VIRT, F_VDIR: a
 * generated file and a directory of its /proc or /dev (proc.c); F_EVENTFD,
 * F_SIGNALFD, F_EPOLL: the shim's own event files (event.c); F_PIDFD: a
 * process file descriptor (process.c). The values are saved in state files. */
enum file_type { F_HOST, F_DIR, F_TMP, F_TMPDIR, F_DEV, F_VIRT, F_VDIR, F_EVENTFD, F_SIGNALFD, F_EPOLL, F_TIMERFD, F_PIDFD };
#define F_LAST F_PIDFD
struct epoll;  /* an epoll instance's interest list (event.c) */
struct epitem; /* one entry of it */
struct vent; /* an entry of /proc or /dev (proc.c) */

struct tnode; /* a file or directory of the in-sandbox /tmp */
struct shm_obj; /* shared memory (mm.c) */
struct tmpfs; /* the /tmp tree; its file data lives in guest memory */

struct file {
  int refs;
  int stdio;           /* 0-2: the sandbox's own stdin/out/err (rebound in a child), else -1 */
  int save_id;         /* snapshot.c, while saving */
  enum file_type type;
  int hostfd;          /* F_HOST, F_DIR */
  int flags;           /* O_ACCMODE | O_APPEND | O_NONBLOCK */
  uint64_t off;        /* F_TMP, F_TMPDIR (entry index) */
  struct tnode *node;  /* F_TMP, F_TMPDIR */
  char *path;          /* sandbox path, for *at() and fchdir */
  int dev;             /* F_DEV: the minor (3 null, 5 zero, 7 full, 8 random, 9 urandom) */
  const struct vent *vent; /* F_VIRT */
  int varg;            /* F_VIRT: the entry's fd number, if any */
  char *vdata;         /* F_VIRT: the text generated at open */
  size_t vlen;
  uint64_t count;      /* F_EVENTFD: the counter */
  bool semaphore;      /* F_EVENTFD: EFD_SEMAPHORE */
  uint64_t sigset;     /* F_SIGNALFD: the signals it reads (bit sig-1) */
  struct epoll *ep;    /* F_EPOLL: its interest list */
  /* The epoll entries that watch this file (event.c; they hold no
   * reference: the last close of the file removes them, as on Linux), and
   * its wake-up counters (readable, writable: bumped by the shim's own
   * files when a waiter would be woken) for edge-triggered entries. */
  struct epitem *watchers;
  uint64_t wake_in, wake_out;
  struct ktimer *timer; /* F_TIMERFD: its timer (its own: timer.c) */
  int pid;              /* F_PIDFD: the process it refers to (a sandbox never reuses a pid: process.c) */
  int *hostcount;       /* the sandbox's count of host fds it is in (fd_install), or NULL */
  /* A FIFO's reader opened O_NONBLOCK with no writer: poll shows no POLLHUP
   * until a writer has opened (its FIFO's w_opens moved from fifo_w0), as
   * Linux's f_version (fs.c fifo_hup_hidden). */
  bool fifo_nohup;
  uint64_t fifo_w0;
  struct sock *sock;    /* a socket (F_HOST, path "socket:"): what it is (net.c) */
  struct inotify *inotify; /* an inotify instance (F_HOST on a packet pipe's read end): inotify.c */
  struct sb *dn_owner;  /* a directory with dnotify registrations (F_NOTIFY): the first process, whose list holds them */
};

struct ksigaction {
  uint64_t handler, flags, restorer, mask;
};

/* A thread of the sandbox's program (thread.c). Exists only once the
 * program made a second thread; its context fields hold its values while
 * another task holds the lock (the running one's are in struct sb). */
struct task {
  struct sb *sb;
  int idx;              /* its slot in sb->tasks and its vCPU's index */
  struct cf_vm *vm;     /* its vCPU */
  int tid;
  pthread_t host;       /* its host thread (task 0: the run's caller) */
  pid_t host_tid;       /* its host tid (0 until the thread runs) */
  bool own_thread;      /* host made by task_clone (joined at the end) */
  int wakefd;           /* eventfd: written to end its wait */
  bool blocked;         /* in task_block, the lock released */
  bool woken;           /* its wakefd fired in the last task_block */
  bool exited;          /* its exit ran (or the sandbox ended under it) */
  bool done;            /* its host thread left the shim */
  bool on_cpu;          /* counted in sb->cpu_running (in or about to be in KVM_RUN) */
  pthread_cond_t cpu_cv; /* signalled when it may take a CPU (thread.c cpu_wake; calloc's
                            zeros are PTHREAD_COND_INITIALIZER) */
  /* pausing with threads (thread.c task_stop): stopped at stop_regs (at
   * CPL3); run_on: not at such a point yet, runs to its next exit. A paused
   * sandbox keeps its threads (but the one that paused it) in sb->held with
   * their vCPU state in cpu. */
  bool stopped, run_on;
  struct cf_vm_regs stop_regs;
  struct cf_vm_cpu *cpu;
  uint64_t cpu_ns;      /* its host thread's CPU time when done */
  uint64_t cpu0;        /* its host thread's CPU time when it started (a reused host thread) */
  sem_t go;             /* own_thread: posted to run the next task on this vCPU, or to quit */
  bool quit;            /* own_thread: the host thread ends at the next post of go */
  bool handoff;         /* a vfork child's task 0 exec'd on a lent vCPU: its loop ends, its
                           process goes on on a host thread of its own (sandbox.c lend_main) */
  /* context (ctx_in/ctx_out) */
  uint64_t sigmask, tpending, saved_mask, sigwait_set;
  bool have_saved_mask;
  uint64_t ss_sp, ss_size;
  int ss_flags;
  uint64_t tid_address;
  uint64_t robust_list;
  uint64_t cpus_off[2];
  int policy;
};
struct fwaiter;

/* A vCPU of a process's VM kept for vfork children (process.c), with the
 * host thread that runs them on it one after another (sandbox.c
 * lend_main): KVM_RUN of a vCPU from another thread than its last costs an
 * RCU grace period (thread.c's opening note), so each vCPU keeps one. */
struct vlend {
  int idx;              /* the vCPU */
  bool busy;            /* a child is on it (from its vfork to its exec or end) */
  bool started;         /* its host thread runs */
  bool quit;            /* the VM goes: the thread ends (and frees this) when not busy */
  struct sb *child;
  sem_t go;             /* posted for each child, and to quit */
  pthread_t host;
  pid_t host_tid;
  struct vlend *next;
};

/* A timer (timer.c): the interval timers in slots 0-2 (ITIMER_REAL,
 * _VIRTUAL, _PROF), POSIX timers in the others; one expiry path serves them
 * all (itimer_poll, run_timers_arm). A timerfd's (TK_TIMERFD) is its file's. */
enum { TK_FREE, TK_ITIMER, TK_POSIX, TK_TIMERFD };
#define NTIMER 128          /* slots; POSIX timers have NTIMER - 3 */
struct ktimer {
  uint64_t value, interval; /* absolute expiry (cpu: guest CPU ns, guest_cpu_ns;
                               else CLOCK_MONOTONIC ns), 0 = disarmed; interval ns */
  uint8_t kind;             /* TK_* */
  bool cpu;                 /* counts the guest's CPU time */
  bool queued;              /* POSIX: its signal is queued, not yet taken */
  int clock;                /* POSIX, timerfd: the clock the program named */
  int id;                   /* POSIX: the timer id */
  int notify, signo;        /* POSIX: SIGEV_SIGNAL/NONE/THREAD_ID; the signal */
  uint64_t sigval;          /* POSIX: sigev_value */
  uint64_t overrun, overrun_last; /* POSIX: expirations past the queued one; at the last take */
  uint32_t gen;             /* POSIX: bumped by settime and delete: a queued signal of an older gen is dropped */
  uint64_t ticks;           /* timerfd: expirations not read yet */
};

/* One queued signal instance (signal.c): its siginfo; a POSIX timer's
 * (si_code SI_TIMER) names its slot and gen. Standard signals keep at most
 * one, real-time ones queue (at most SIGQ_MAX of those sent by calls). */
#define SIGQ_MAX 256
#define SIGQ_CAP (SIGQ_MAX + 32 + NTIMER)
struct sigq_ent {
  siginfo_t info;
  int timer;                /* slot + 1 of a POSIX timer's, else 0 */
  uint32_t gen;
};

struct sb {
  struct cf_vm *vm;
  uint8_t *mem;
  uint64_t mem_size;
  const struct cf_sandbox_opts *opts;
  FILE *trace;

  /* address space */
  struct vma *vmas;     /* sorted, at most MAX_VMAS (mm_vmas_reserve) */
  int nvma, capvma;
  uint64_t brk_start, brk_cur, mmap_top;

  /* files */
  int rootfd;
  char root[PATH_MAX];  /* host path of the root, no trailing slash ("" for /) */
  char cwd[PATH_MAX];   /* sandbox path */
  struct file **fds;    /* nfds entries, grown on demand up to MAX_FDS (fd_table_grow) */
  bool *cloexec;
  int nfds;
  unsigned umask;
  struct tmpfs *tmpfs;

  /* threads (thread.c): none until the program makes a second one. The
   * lock is held while a task runs shim code; cur is its holder; the fields
   * marked [task] are cur's (switched by task_lock). */
  pthread_mutex_t lock;
  pthread_cond_t task_cv;   /* a task exited or its host thread is done */
  struct task *tasks[CF_VM_MAX_VCPUS];
  struct task *cur;
  int ntasks, nlive, next_tid;
  /* vCPUs in KVM_RUN (at most sb_cpus) and the tasks waiting for one, in
   * order (thread.c cpu_get) */
  int cpu_running;
  struct task *cpu_q[CF_VM_MAX_VCPUS];
  int cpu_nq;
  uint64_t cpu_dead_ns;     /* CPU time of the tasks whose threads ended */
  struct fwaiter *futex_waiters;
  /* a pause with threads: the task that paused (its context is sb's after
   * the run, on vCPU 0); the others, held until the next run starts them
   * again (task_resume), saved with a template (task_save_threads) */
  struct task *pauser;
  struct task **held;
  int nheld;
  /* --cpu-limit with threads: a host thread that adds up every thread's
   * CPU time (thread.c cpu_watch) */
  pthread_t watch;
  bool watching, watch_quit;

  /* signals */
  struct ksigaction act[65];
  uint64_t sigmask;         /* [task] */
  uint64_t tpending;        /* [task] directed at the thread (tgkill) */
  uint64_t pending;         /* the process's */
  /* the pending instances with their siginfo, in order (signal.c); a
   * pending signal with none is taken as SI_USER from the program */
  struct sigq_ent sigq[SIGQ_CAP];
  int nsigq;
  uint64_t timer_fires;     /* timers that fired (itimer_poll): a wait looks again */
  uint64_t sigwait_set;     /* [task] rt_sigtimedwait: the signals the wait takes (not dropped when ignored) */
  uint64_t saved_mask;      /* [task] rt_sigsuspend: the mask to restore after the handler */
  bool have_saved_mask;     /* [task] */

  /* the alternate signal stack (signal.c, sigaltstack): size 0 when there
   * is none; flags: SS_AUTODISARM or 0 [task] */
  uint64_t ss_sp, ss_size;
  int ss_flags;

  /* resource limits (task.c): rlim[r] holds limit r when bit r of rlim_set
   * says the program set it, else the limit is rlim_default's */
  struct rlimit rlim[RLIM_NLIMITS];
  uint32_t rlim_set;

  /* timers (timer.c): slots 0-2 the interval timers by ITIMER_REAL,
   * _VIRTUAL, _PROF; POSIX timers after them. ntimer: one
   * past the highest slot ever used (the scans stop there) */
  struct ktimer timers[NTIMER];
  int ntimer;
  int next_timer_id;        /* the next POSIX timer id (Linux counts up, never reuses) */
  uint64_t cpu_ns;          /* guest CPU time of the runs before this one */
  /* during a run only (sandbox.c): this thread's CPU clock at its start,
   * and the host timers that kick the vCPU at the next expiry (REAL, CPU) */
  bool running;
  uint64_t run_cpu0;
  clockid_t run_clock;      /* the CPU clock of the run's caller thread (task 0) */
  pid_t run_tid;            /* its host tid: the run's host timers signal it */
  bool have_htimer[2];
  timer_t htimer[2];

  /* identity */
  int pid, tid, uid, gid;   /* tid: [task] */
  uint64_t tid_address;     /* [task] clear_child_tid */
  uint64_t robust_list;     /* [task] set_robust_list's head (0: none) */
  /* [task] scheduling (task.c sys_sched): the sandbox's CPUs the thread may
   * not run on (sched_setaffinity; zeros: all of them; a bit per CPU index
   * below CF_VM_MAX_VCPUS), its policy (SCHED_OTHER, SCHED_BATCH or
   * SCHED_IDLE, | SCHED_RESET_ON_FORK). Kept and reported: the threads still
   * take the sandbox's CPUs in turn (thread.c). */
  uint64_t cpus_off[2];
  int policy;
  /* the supplementary groups (setgroups; the host's at the start), this
   * process's own copy (malloc'ed; task_free_creds) */
  int ngroups;
  uint32_t *groups;
  char hostname[65];        /* uname's nodename, /proc/sys/kernel/hostname ("": "cowfork") */
  char boot_id[37];         /* /proc/sys/kernel/random/boot_id, made on first use ("": not yet) */
  uint64_t boot_ns;         /* CLOCK_MONOTONIC when this sandbox (or child) was made: uptime */
  /* the program's argument and environment strings in its memory, as
   * elf_load laid them out (/proc/self/cmdline, environ) */
  uint64_t arg_start, arg_end, env_start, env_end;

  /* end */
  bool exited;
  int exit_code;
  int kill_signal;
  bool timed_out;
  bool cpu_exceeded;        /* timed_out by the CPU-time limit, not the wall clock */
  char report[1024];

  /* pausing (template create, branch): see cf_sandbox_opts.ready */
  bool paused;
  bool pause_pending;       /* the paused syscall is still to be served (in the child) */
  struct cf_vm_regs pause_regs; /* user registers to resume with */
  char marker_tail[256];    /* last bytes written to fd 1, for a marker split across writes */
  size_t marker_tail_len;
  bool eof_pause;           /* branch: pause on a read of fd 0 at end of input */
  enum cf_ready ready;      /* this run's pause point */
  char marker[256];
  bool resume_pending;      /* serve pause_regs' system call before entering */
  bool entered;
  bool gen_done;            /* this sandbox's generation id is written (gen_new) */

  /* a forked child: its template, and its memory as the backend mapped it
   * (it belongs to the VM: NULL while the child is parked) */
  struct cf_template *tmpl;
  struct guest_mem *gm;
  /* the image this process's memory was laid out over: its template's (a
   * forked child), its own (a process a tree template's child adopted);
   * a fork keeps its parent's (mm_fork_vm maps the same pieces); NULL in a
   * sandbox that did not start from a template. What a branch compares
   * a process other than the first with (snapshot.c commit_compare). */
  const struct cf_image *base;
  /* an F_SETLKW this process waits in: what it waits for (fs.c
   * lock_deadlock: EDEADLK for a wait that would close a cycle) */
  struct lkwait { bool on; uint64_t dev, ino, start, end; short type; } lkwait;
  /* a parked child (reuse.c): its VM given back, what its memory held
   * beyond the template's kept here until it runs again */
  struct parked *park;

  /* a forked child: ranges whose mapping was replaced since the fork */
  bool forked;
  struct range { uint64_t start, end; bool file; } *replaced;
  size_t nreplaced, capreplaced;
  bool replaced_overflow;
  char program[PATH_MAX];   /* for /proc/self/exe */
  bool vm_broken;           /* the VM failed or its protections could not be
                               restored: never reused (reuse.c) */
  struct cf_dirty end_dirty; /* a forked child: its private pages when its run ended */
  bool have_end_dirty;

  /* timing */
  double t_spawn, t_enter, t_first_output;
  double first_exit_us;     /* when the run's first exit came (0: none yet) */

  /* statistics */
  uint64_t nsys, enosys;
  uint64_t elf_mapped, elf_copied;
  uint64_t pages_mapped, pages_copied; /* file pages: mapped copy-on-write vs copied (loader + mmap) */

  /* MAP_SHARED mappings (mm.c): [start, end) maps obj from off; sorted by
   * nothing, at most MAX_VMAS */
  struct shmap {
    uint64_t start, end, off;
    struct shm_obj *obj;
    bool nowrite; /* mprotect may not add PROT_WRITE (Linux's VMA without VM_MAYWRITE: SHM_RDONLY, a read-only fd) */
  } *shmaps;
  int nshmaps, capshmaps;

  /* the host path of the root's /tmp ("" if it has none), found on the
   * first path through a symlink (fs.c in_root_tmp); freed by fs_fini */
  char *root_tmp;

  /* record locks (fcntl F_SETLK/F_OFD_SETLK, flock): fs.c */
  struct flock_ent *locks;
  int nlocks, caplocks;

  /* processes (process.c): the sandbox's processes share w (NULL until the
   * first fork); this one's parent (NULL: the first process), group and
   * session (0: the sandbox's init's, 1), the signal its end sends the
   * parent, and after its end the status a wait takes */
  struct world *w;
  struct sb *parent;
  struct inotify *inotifies; /* the first process: the sandbox's inotify instances (inotify.c) */
  struct dnotify *dnotifies; /* the first process: the sandbox's dnotify registrations (inotify.c) */
  int hostfiles;            /* the first process: host fds held by the open files of all the
                               sandbox's processes, at most its RLIMIT_NOFILE (ENFILE past it) */
  int pgid, sid;
  int exit_signal;
  bool execed;              /* it called execve since its fork (setpgid EACCES) */
  bool zombie;
  int wstatus;
  struct sb *vfork_parent;  /* a vfork child: the parent waiting for its exec or exit */
  /* stopped by a stop signal (stop_sig) until a SIGCONT; what a wait with
   * WUNTRACED / WCONTINUED has yet to report */
  bool stopped, stop_report, cont_report;
  int stop_sig;
  bool vfork_wait;          /* a vfork parent, waiting */
  /* vfork's shared memory (process.c): a vfork child runs in the memory of
   * mm_parent (the process whose VM it is) on a vCPU of that VM lent to it
   * (mm_vcpu), until its exec or exit; its address-space fields are the
   * owner's (proc_mm_pull at each taking of the lock, proc_mm_push after
   * each of its calls). The owner: how many share its memory, which vCPUs
   * are lent, and whether it ended with sharers left (mm_gone: the last
   * one frees its VM; reap_pending: and its struct). */
  struct sb *mm_parent;
  int mm_vcpu;
  struct vlend *mm_lend;    /* the child's: its vCPU's */
  struct vlend *lend;       /* the owner's: its vCPUs kept for vfork children */
  int mm_sharers;
  bool mm_gone, reap_pending, mm_exec_wait;
  bool vcpu_lent[CF_VM_MAX_VCPUS];
  bool pause_done;          /* not the first process: stopped for the sandbox's pause (process.c) */
  uint64_t child_cpu_ns;    /* CPU time of the children it waited for, and of theirs (RUSAGE_CHILDREN) */
  /* a load in progress (fs.c fs_load): the first process's file table,
   * which the other processes' fd tables refer to; fs_load_done drops it */
  struct file **load_files;
  uint64_t nload_files;
  /* and its /tmp nodes by id ((load_nodes)[id-1], NULL: dropped), which the
   * shared mappings of every process refer to (version 8, mm_load_shared) */
  struct tnode **load_nodes;
  uint64_t nload_nodes;
  /* a load in progress (snapshot.c): the other processes of a template's
   * state (version 7), made by cf_template_fork (procs_make) */
  struct proc_rec *load_procs;
  int nload_procs;
  /* a save in progress (snapshot.c): this process's image and store; the
   * first process's: the image its disk is saved as (fs_save,
   * tmp_disk_commit), and whether that was done */
  char save_image[300];
  struct cf_store *save_store;
  char save_disk[300];
  bool save_disk_done;
  uint64_t save_disk_bytes;
  /* where a loaded state's disk image is found when the sandbox has no
   * template (unit tests; a template's children use its store) */
  struct cf_store *disk_store;
  /* the first process: the sandbox's socket names and in-flight SCM_RIGHTS
   * files (net.c), NULL until a socket is made */
  struct net *net;
  /* the first process: the sandbox's System V IPC objects (ipc.c), NULL
   * until the first use; each process: its SEM_UNDO adjustments */
  struct ipc *ipc;
  struct semundo **semundo;
  int nsemundo;
};

struct cf_sandbox {
  struct sb s;
};

/* One of the other processes in a state file (snapshot.c, version 7). */
struct proc_rec {
  int pid, ppid, pgid, sid, exit_signal, stop_sig, wstatus, exit_code, kill_signal;
  unsigned flags; /* PF_* (snapshot.c) */
  char image[300];
  const uint8_t *payload; /* its own state payload, in the template's */
  size_t len;
};

/* A forked child's guest memory: the context of the VMM's memory source
 * (snapshot.c map_image/unmap_image). It belongs to the VM, moves with it
 * (parking, reuse.c) and is freed after cf_vm_destroy (vm_free). */
struct guest_mem {
  struct cf_mem m;
  bool mapped;                         /* m holds the backend's mapping */
  uint8_t *base;
  uint64_t size;
  const struct cf_sandbox_opts *opts;  /* map_image only (NULL after) */
  struct cf_template *tmpl;
  const struct cf_image *img;          /* map_image only: another process's image (else tmpl's) */
};
/* The memory backend's mapping of sb's guest memory, or NULL (a root
 * sandbox, a parked child). */
static inline struct cf_mem *sb_memb(const struct sb *sb) { return sb->gm && sb->gm->mapped ? &sb->gm->m : NULL; }

/* snapshot.c */
const struct cf_image *template_image(const struct cf_template *t);
/* The shim state a template's state file payload holds, into sb (a forked
 * child: sb->opts, mem and mem_size set), its vCPU state into cpu and regs.
 * name: the template's, for messages. -1 + cf_error (EINVAL: malformed),
 * sb then holding what was loaded so far (fs_fini frees it). Fuzzed:
 * tests/fuzz/state.c. */
int state_parse(struct sb *sb, const uint8_t *payload, size_t len, const char *name, struct cf_vm_cpu *cpu,
                struct cf_vm_regs *regs);
/* A new VM whose memory maps t's image (opts->backend), before any state is
 * loaded; *gm its memory. NULL + cf_error. */
struct cf_vm *template_new_vm(struct cf_template *t, const struct cf_sandbox_opts *opts, struct guest_mem **gm);
/* Destroy a VM and its memory (either may be NULL). */
void vm_free(struct cf_vm *vm, struct guest_mem *gm);
/* t's spare VMs (file backend, memory reset to the template's, vCPU reset):
 * put one (false when the pool is full: the caller frees it), take one. */
bool template_put_spare(struct cf_template *t, struct cf_vm *vm, struct guest_mem *gm);
bool template_take_spare(struct cf_template *t, struct cf_vm **vm, struct guest_mem **gm);
/* The template's image mapped read-only (shared, made on first use; NULL +
 * cf_error on failure): what a reset compares written pages with. */
const uint8_t *template_ref(struct cf_template *t);

/* mm.c: the guest address space (VMAs and the host mapping under them) */
/* Room for n VMAs in sb->vmas: 0 or -ENOMEM (past MAX_VMAS too). */
int mm_vmas_reserve(struct sb *sb, int n);
int mm_map_anon(struct sb *sb, uint64_t start, uint64_t len, int prot);
int mm_map_file(struct sb *sb, uint64_t start, uint64_t len, int prot, int hostfd, uint64_t off);
int mm_unmap(struct sb *sb, uint64_t start, uint64_t len);
int mm_protect(struct sb *sb, uint64_t start, uint64_t len, int prot);
uint64_t mm_find_free(struct sb *sb, uint64_t len);
bool mm_is_free(struct sb *sb, uint64_t start, uint64_t len);
/* Host pointer to guest [addr, addr+len) if all of it is mapped with prot
 * (PROT_READ and/or PROT_WRITE), else NULL. len 0 is always valid. */
void *mm_ptr(struct sb *sb, uint64_t addr, uint64_t len, int prot);
/* Copy a NUL-terminated guest string: its length, -EFAULT or -ENAMETOOLONG. */
long mm_str(struct sb *sb, uint64_t addr, char *buf, size_t size);
int mm_copy_out(struct sb *sb, uint64_t addr, const void *src, uint64_t len);
int mm_copy_in(struct sb *sb, void *dst, uint64_t addr, uint64_t len);
const struct vma *mm_find(struct sb *sb, uint64_t addr);
/* Whether [start, start+len) overlaps guest memory the shim keeps for
 * itself (the /tmp data region): no guest call may map, unmap or protect it. */
bool mm_reserved(struct sb *sb, uint64_t start, uint64_t len);
/* Shared memory (mm.c): a host memfd that every MAP_SHARED mapping of it,
 * in any process of the sandbox, maps MAP_SHARED at its guest address, so
 * stores are seen by all at once (KVM follows the host mapping). Made for a
 * MAP_SHARED|MAP_ANONYMOUS mapping, or for a /tmp or /dev/shm file the
 * first time it is mapped MAP_SHARED (the node then keeps its data there:
 * tmpfs.c). Its fd is counted in the sandbox's host fds (the first
 * process's hostfiles, ENFILE past its RLIMIT_NOFILE). Refcounted: each
 * mapping record (sb->shmaps) and the node holding it. Touched under the
 * sandbox's lock only. */
struct shm_obj {
  int fd;
  int refs;
  uint64_t size;  /* the memfd's size: never shrinks (a mapping past it would raise SIGBUS) */
  int *hostcount; /* the count its fd is in */
  uint64_t *charge; /* a file's: the /tmp pages it is counted in (size / PAGE), or NULL */
  struct ipc_shm *sysv; /* a System V segment's (ipc.c), or NULL */
  struct tnode *save_node; /* a save in progress (tmp_save_shared): the node its data is saved as */
};
/* A new object of size bytes (zeros): NULL and *err (-ENFILE, -ENOMEM). */
struct shm_obj *shm_new(struct sb *sb, uint64_t size, int *err);
void shm_ref(struct shm_obj *o);
void shm_unref(struct shm_obj *o);
/* Grow o to at least size bytes (page-rounded): 0 or -errno. */
int shm_grow(struct shm_obj *o, uint64_t size);
/* Map [off, off+len) of o at guest [start, start+len) MAP_SHARED, replacing
 * what was there: 0 or -errno. */
int mm_map_shared(struct sb *sb, uint64_t start, uint64_t len, int prot, struct shm_obj *o, uint64_t off,
                  bool nowrite);
/* The shared object under guest address addr and its offset there, or NULL
 * (private memory): a futex's key (thread.c). */
struct shm_obj *mm_shared_at(struct sb *sb, uint64_t addr, uint64_t *off);
/* Drop every shared mapping record (end of the process). */
void mm_shared_fini(struct sb *sb);
/* ipc.c: System V IPC. ipc_shm_detached: a mapping record of o (a
 * segment's object: o->sysv) went (mm.c); ipc_exit: the process's SEM_UNDO
 * adjustments applied and dropped (its end: fs_fini); ipc_fini: the
 * sandbox's objects freed (the first process's fs_fini); ipc_save_refused:
 * -1 and why (a template cannot hold System V objects), else 0. */
struct ipc;
struct ipc_shm;
struct semundo;
void ipc_shm_detached(struct sb *sb, struct shm_obj *o);
/* A mapping record of segment o's object was made (shmat; a fork copied
 * the parent sb's: Linux's shm_open): shm_atime and shm_lpid (sb's pid). */
void ipc_shm_attached(struct sb *sb, struct shm_obj *o);
void ipc_exit(struct sb *sb);
void ipc_fini(struct sb *sb);
int ipc_save_refused(struct sb *sb, char *why, size_t size);
/* msync(2): the checks (the mappings are the files' memory: nothing to write back). */
int mm_sync(struct sb *sb, uint64_t start, uint64_t len, int flags);
/* mmap(2) of the guest's open host file hostfd (a regular file, else
 * -ENODEV) at [at, at+len), copy-on-write from the file, pages wholly past
 * its end anonymous zeros: at or -errno. Keeps no fd (the mapping holds the
 * file). */
long mm_map_host(struct sb *sb, uint64_t at, uint64_t len, int prot, int hostfd, uint64_t off);

/* elf.c. elf_probe: 0 if path is an executable elf_load can load, else
 * -errno (-ENOEXEC for dynamic executables, for now). */
long elf_probe(struct sb *sb, const char *path);
/* "#!" scripts (Linux's binfmt_script): while the file at path (PATH_MAX)
 * is a script, path becomes its interpreter; the words that replace
 * argv[0] (interpreter, its one optional argument, the script's path as
 * given; a script as another's interpreter replaces that word) go into pre
 * (ELF_SCRIPT_WORDS of PATH_MAX): their number (0: no script), or -errno
 * (ELOOP past 4 scripts, ENOEXEC for a bad "#!" line). elf_script_argv: a
 * new vector (new strings) of those words, then argv[1...]; NULL: ENOMEM. */
#define ELF_SCRIPT_WORDS 13
long elf_script(struct sb *sb, char *path, char (*pre)[PATH_MAX]);
char **elf_script_argv(char (*pre)[PATH_MAX], int npre, char *const *argv);
int elf_load(struct sb *sb, int fd, const char *path, char *const *argv, char *const *envp, uint64_t *entry,
             uint64_t *sp);

/* fs.c: files (negative errno returns) */
int fs_init(struct sb *sb, const char *root, const int stdio[3]);
void fs_fini(struct sb *sb);
/* After a load: the file table's own references dropped (the fd tables of
 * the sandbox's processes hold theirs). */
void fs_load_done(struct sb *sb);
/* fstat of an open file, as sys_fstat: 0 or -errno. */
long fs_file_stat(struct sb *sb, struct file *f, struct stat *st);
/* At most this many open files in a state file's table (every process's). */
#define MAX_FILE_TABLE (1u << 16)
/* Open a host file read-only under the root (for the loader): host fd or -errno. */
int fs_open_host(struct sb *sb, int dirfd, const char *path, int flags);
struct file *fs_get(struct sb *sb, int fd);
int fs_getfl(struct file *f); /* Linux's f_flags of f (F_GETFL, fdinfo) */
struct file *file_new(enum file_type t, int hostfd, int flags, const char *path);
/* Install f at the lowest free fd: the fd, or -EMFILE (f not taken). */
long fs_install(struct sb *sb, struct file *f, bool cloexec);
void file_unref(struct file *f);
/* Put f at the lowest free fd >= min below fd_limit: the fd, or -EMFILE. */
int fd_install(struct sb *sb, struct file *f, int min, bool cloexec);
/* openat2 under the root (RESOLVE_IN_ROOT): host fd or -errno. */
long host_openat2(struct sb *sb, const char *abs, int flags);
/* Append one linux_dirent64 record (d_ino ino, d_off next_off, d_type
 * type, NUL-terminated name, padded to 8 bytes) at buf + *pos, len bytes
 * in all, and advance *pos; false (nothing written) if it does not fit. */
bool dirent_put(void *buf, size_t len, size_t *pos, uint64_t ino, int64_t next_off, uint8_t type, const char *name);

/* net.c: sockets (an F_HOST file with f->sock). net_release: its last
 * reference went (file_unref); net_rw, net_iov: read/write, readv/writev;
 * net_ioctl: a socket's ioctl requests (SIOCINQ, SIOCOUTQ, SIOCATMARK);
 * net_stat: fstat's fields a socket changes; net_describe: what it is, for
 * messages (fs_save's refusal); net_fini: the first process's table goes.
 * Snapshots: net_save_check: NULL if the socket is carried into children
 * (a listener with an empty queue, an unconnected socket, a datagram one
 * with an empty inbox), else why not; net_node: the socket file node it is
 * bound to (saved with the /tmp tree); net_save/net_load: its record after
 * its file table entry (fs_save, fs_load), new host objects on load. */
struct sock;
struct net;
void net_release(struct file *f);
long net_rw(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, bool wr);
long net_iov(struct sb *sb, struct file *f, uint64_t iov, uint64_t cnt, bool wr);
long net_ioctl(struct sb *sb, struct file *f, unsigned long req, uint64_t arg);
short net_poll(struct file *f, short hostev);
bool net_hup_hidden(struct file *f);
void net_stat(struct file *f, struct stat *st);
int net_describe(struct file *f, char *out, size_t size);
void net_fini(struct sb *sb);
struct wbuf;
struct rbuf;
const char *net_save_check(struct file *f);
struct tnode *net_node(struct file *f);
void net_save(struct file *f, struct wbuf *w);
int net_load(struct sb *sb, struct rbuf *r, int fl, struct tnode **nodes, size_t nnodes, struct file **out);
/* fs.c: AF_UNIX path names. fs_sock_bind makes the socket file path (a /tmp
 * node; mknod's errors, -EEXIST) and gives its node, referenced;
 * fs_sock_lookup: the node of the socket file at path (NULL: a file that is
 * no socket of the sandbox's), or -ENOENT and the other lookup errors. */
long fs_sock_bind(struct sb *sb, const char *path, struct tnode **out);
long fs_sock_lookup(struct sb *sb, const char *path, struct tnode **out);

/* proc.c: the sandbox's own /proc and /dev (negative errno returns) */
/* Whether abs is /proc, /dev or below: never the host's. */
bool virt_is_virt(const char *abs);
/* Replace the symbolic links of /proc and /dev in abs (size bytes) by
 * their targets: in every component but the last, and in the last with
 * follow (not /proc/PID/fd/N's, which the caller handles: virt_is_fd). The
 * result may lie outside (a cwd, the program). 0 or -errno. */
long virt_path(struct sb *sb, char *abs, size_t size, bool follow);
/* The entry of abs (after virt_path), *arg its fd for fd/N: 0 or -ENOENT. */
long virt_lookup(struct sb *sb, const char *abs, const struct vent **v, int *arg);
bool virt_is_link(const struct vent *v);
bool virt_is_fd(const struct vent *v);
/* The open file of a /proc/PID/fd/N entry just looked up (arg: N), of the
 * process PID names. */
struct file *virt_fd_file(struct sb *sb, int arg);
bool virt_is_dir(const struct vent *v);
void virt_stat(struct sb *sb, const struct vent *v, struct stat *st);
long virt_readlink(struct sb *sb, const struct vent *v, int arg, char *out, size_t size);
/* A new open file for v (open(2) flags): 0 and *out, or -errno. */
long virt_open(struct sb *sb, const struct vent *v, int arg, const char *abs, int flags, struct file **out);
/* F_VIRT, F_DEV reads and writes on host memory. */
long virt_read(struct file *f, void *p, uint64_t len, uint64_t off);
long virt_write(struct sb *sb, struct file *f, const void *p, uint64_t len);
long virt_getdents(struct sb *sb, struct file *f, void *p, uint64_t len);
void virt_dev_stat(const struct file *f, struct stat *st);
/* The minor of the device at path ("/dev/zero"...; /dev/null otherwise). */
int virt_dev_of(const char *path);
long virt_sethostname(struct sb *sb, const char *name, uint64_t len);
const char *virt_boot_id(struct sb *sb);

/* systab.c: the system-call table and dispatch */
long sys_dispatch(struct sb *sb, long nr, const uint64_t a[6]);
/* The name of call nr (NULL: not a Linux x86-64 call), its CF_SYSCALL_* flags. */
const char *sys_name(long nr);
unsigned sys_flags(long nr);
/* sys_dispatch's result when the handler set the registers itself. */
#define SYS_NORETURN (-4096L - 1)
/* A result meaning: restart the call after a SA_RESTART handler, else EINTR
 * (Linux's ERESTARTSYS; never seen by the program). */
#define RESTARTSYS 512
/* The i-th argument of a handler's call. */
#define A(i) (a[i])
/* The system-call handlers (systab.c's table), by file. nr: the number
 * called (one handler may serve several). */
typedef long sys_fn(struct sb *sb, const uint64_t a[6], long nr);
/* mm.c */
sys_fn sys_brk, sys_madvise, sys_mlock, sys_mmap, sys_mprotect, sys_mremap, sys_msync, sys_munmap;
/* net.c */
sys_fn sys_accept, sys_connect, sys_getsockname, sys_sendmsg, sys_sendto, sys_shutdown, sys_socket, sys_sockopt;
/* fs.c */
sys_fn sys_link, sys_linkat, sys_symlink, sys_access, sys_chdir, sys_chmod, sys_close, sys_creat, sys_dup, sys_dup2, sys_faccessat,
    sys_faccessat2, sys_fchdir, sys_fcntl, sys_fgetxattr, sys_flock, sys_fstat, sys_fsync, sys_ftruncate, sys_fallocate, sys_getcwd,
    sys_getdents64, sys_getxattr, sys_ioctl, sys_lseek, sys_mkdir, sys_mkdirat, sys_mknod, sys_newfstatat, sys_open, sys_openat,
    sys_pipe, sys_pread64, sys_preadv, sys_preadv2, sys_pwrite64, sys_pwritev, sys_read, sys_readlink,
    sys_readlinkat, sys_readv, sys_rename, sys_renameat, sys_rmdir, sys_sendfile, sys_setxattr,
    sys_stat, sys_statfs, sys_statx, sys_truncate, sys_umask, sys_unlink, sys_unlinkat, sys_write,
    sys_writev;
/* event.c */
sys_fn sys_epoll_create, sys_epoll_ctl, sys_epoll_wait, sys_eventfd, sys_poll, sys_ppoll, sys_select, sys_signalfd;
/* signal.c */
sys_fn sys_kill, sys_pause, sys_rt_sigaction, sys_rt_sigpending, sys_rt_sigprocmask, sys_rt_sigqueueinfo,
    sys_rt_sigreturn, sys_rt_sigsuspend, sys_rt_sigtimedwait, sys_rt_tgsigqueueinfo, sys_sigaltstack, sys_tgkill,
    sys_tkill;
/* timer.c */
sys_fn sys_alarm, sys_clock_getres, sys_clock_gettime, sys_clock_nanosleep, sys_clock_settime, sys_getitimer,
    sys_gettimeofday, sys_settimeofday,
    sys_nanosleep, sys_setitimer, sys_time, sys_timer_create, sys_timer_delete, sys_timer_getoverrun,
    sys_timer_gettime, sys_timer_settime, sys_timerfd_create, sys_timerfd_gettime, sys_timerfd_settime, sys_times;
/* process.c */
sys_fn sys_pidfd_open, sys_pidfd_getfd;
/* ipc.c */
sys_fn sys_shmget, sys_shmat, sys_shmdt, sys_shmctl, sys_semget, sys_semop, sys_semctl, sys_msgget, sys_msgsnd,
    sys_msgrcv, sys_msgctl;
/* signal.c */
sys_fn sys_pidfd_send_signal;
/* task.c */
sys_fn sys_arch_prctl, sys_clone, sys_clone3, sys_execve, sys_exit, sys_fork, sys_futex, sys_getgid, sys_getgroups,
    sys_getpgrp, sys_getpid, sys_getppid, sys_getrandom, sys_getresuid, sys_getrlimit, sys_prlimit64, sys_getrusage, sys_gettid,
    sys_getuid, sys_prctl, sys_sched, sys_sched_getaffinity, sys_sched_setaffinity, sys_sched_yield, sys_set_robust_list, sys_set_tid_address,
    sys_setgroups, sys_setresuid, sys_sethostname, sys_setpgid, sys_setrlimit, sys_setuid, sys_sysinfo, sys_uname, sys_wait4;

/* task.c */
/* Resource limit res (< RLIM_NLIMITS) of the sandbox. */
void rlim_get(struct sb *sb, int res, struct rlimit *rl);
/* How many fds the program may have: RLIMIT_NOFILE's soft limit, at most
 * MAX_FDS. */
int fd_limit(struct sb *sb);
/* inotify.c: the watchers are told of a change at path (canonical) with
 * mask (IN_CREATE, IN_DELETE, IN_MODIFY, IN_MOVED_FROM/TO with cookie...);
 * dir: the entry is a directory (IN_ISDIR). */
void inotify_event(struct sb *sb, const char *path, uint32_t mask, uint32_t cookie, bool dir);
uint32_t inotify_cookie(struct sb *sb);
/* A rename from -> to done (after its IN_MOVED_FROM/TO): IN_MOVE_SELF to
 * the watches of from, and every watch of from or below it follows. */
void inotify_moved(struct sb *sb, const char *from, const char *to, bool dir);
/* f's instance goes (its last reference is dropped: file_unref). */
void inotify_release(struct file *f);
/* fcntl(F_NOTIFY) of directory f with arg (DN_* events, DN_MULTISHOT; none:
 * f's registrations go): 0 or -errno. */
long dnotify_set(struct sb *sb, struct file *f, uint64_t arg);
/* f's registrations go (its last reference is dropped: file_unref). */
void dnotify_release(struct file *f);
sys_fn sys_inotify_init, sys_inotify_add_watch, sys_inotify_rm_watch;
/* fs.c: gpath as a canonical sandbox path (the overlay's, symlinks
 * followed unless !follow) into abs (PATH_MAX) of an existing entry. */
long fs_canonical(struct sb *sb, uint64_t gpath, bool follow, char *abs, bool *isdir);
/* fs.c: sb's fd table at least n entries long (n <= MAX_FDS): 0 or -ENOMEM. */
int fd_table_grow(struct sb *sb, int n);

/* event.c: readiness, eventfd, signalfd, epoll */
struct wbuf;
struct rbuf;
/* What f is ready for now: poll(2)'s revents with every event asked
 * (POLLIN, POLLOUT, POLLPRI, POLLRDHUP, the NORM/BAND bits, POLLERR,
 * POLLHUP), as Linux's file poll gives them. One case per file kind: poll,
 * select and epoll all use it. */
short file_poll(struct sb *sb, struct file *f);
/* read/write of F_EVENTFD, F_SIGNALFD, F_EPOLL (p: host memory, len bytes). */
/* Read into the program's buf (the wait may release the lock: the buffer
 * is written after it, through mm_copy_out). */
long event_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len);
long event_write(struct sb *sb, struct file *f, const void *p, uint64_t len);
/* The file's last reference went: drop the epoll entries watching it (and
 * an epoll's own entries). From file_unref. */
void event_release(struct file *f);
/* Whether fd 0 is in epoll fd epfd's interest list for reading (the stdin
 * pause point of epoll_wait). */
bool epoll_watches_fd0(struct sb *sb, int epfd);
/* State files: an event file's own part after its file record (fs_save,
 * fs_load); then, once every file is loaded, the epoll entries linked.
 * files: the loaded files by index. -1 on a malformed record. */
int event_save(struct sb *sb, struct file *f, struct wbuf *w);
int event_load(struct sb *sb, struct file *f, struct rbuf *r, uint64_t nfiles);
int event_link_all(struct sb *sb, struct file **files, uint64_t nfiles);

/* signal.c */
/* Take the lowest pending signal in set off the pending set: its number
 * and *code (SI_USER or SI_KERNEL), 0 if none is pending. */
int sig_take(struct sb *sb, uint64_t set, int *code);
/* A synchronous fault at user state u: run the handler or end the sandbox. */
void sig_fault(struct sb *sb, int sig, int code, uint64_t addr, struct cf_vm_regs *u);
/* A signal raised by the shim (an interval timer, si_code SI_KERNEL):
 * pending, or dropped when ignored. */
void sig_raise(struct sb *sb, int sig);
/* Queue signal info->si_signo with its info (timer: slot + 1 of the POSIX
 * timer whose signal it is, gen its gen; else 0). Standard signals
 * coalesce; real-time ones queue, those sent by calls up to RLIMIT_SIGPENDING
 * (at most SIGQ_MAX): past it kill()'s (SI_USER) is pending without its
 * info and the others are -EAGAIN, as Linux. 1 if queued, 0 if dropped
 * (ignored and not blocked, or coalesced), -EAGAIN. Wakes the waiters. */
int sig_queue(struct sb *sb, const siginfo_t *info, int timer, uint32_t gen);
/* Take the lowest pending signal of set (its first instance) into *info:
 * its number, or 0 if none. A POSIX timer's gets its overrun count; one of
 * a timer reset or deleted since is dropped. */
int sig_dequeue(struct sb *sb, uint64_t set, siginfo_t *info);
/* Whether an unblocked pending signal will interrupt the program (run a
 * handler or end it); ignored ones are dropped on the way. */
bool sig_deliverable(struct sb *sb);
/* At a kick exit: expire timers, deliver one signal if the program is in
 * its own code (the registers are its current ones). */
void sig_at_kick(struct sb *sb);
/* After system call nr with result: deliver one pending, unblocked signal;
 * -RESTARTSYS restarts the call or becomes EINTR. The result to return. */
long signal_after_syscall(struct sb *sb, long nr, long result);
/* Rewind the system call nr just made to run again when the vCPU goes on
 * (rip back over the SYSCALL, rax nr): SYS_NORETURN. */
long sig_restart_now(struct sb *sb, long nr);
/* End the sandbox by signal sig. */
void kill_sandbox(struct sb *sb, int sig);
/* End the sandbox: the program waits for what nothing can bring
 * (what: the call). SYS_NORETURN. */
long wait_forever(struct sb *sb, const char *what);

/* process.c: the processes of a sandbox */
struct world;
/* The lock every task of sb's sandbox takes (the first process's). */
pthread_mutex_t *sb_mutex(struct sb *sb);
/* A new pid or tid (one namespace for both, as Linux). */
int new_id(struct sb *sb);
/* Whether nothing but the running task could end its wait: one thread, one
 * process alive. */
bool sb_alone(const struct sb *sb);
/* The sandbox's init (process.c): pid 1, the parent of the first process
 * (pid 2) and of every orphan, which reaps them; the group and session 1
 * the first process starts in are its. It is no process the shim runs but
 * one that exists and sleeps, as a pid namespace's init waiting for its
 * children: proc_init() is its struct sb (read only, the same for every
 * sandbox: root's, named "init", no memory, files or handlers) for what
 * /proc, getpgid/getsid and pidfds show of it; a signal to it is dropped
 * (proc_init_signal), as Linux drops the signals a namespace's init has
 * no handler for, SIGKILL and SIGSTOP too; kill(-1) never reaches it, it
 * is nobody's child to wait for and nobody's to setpgid. */
#define PROC_INIT 1
struct sb *proc_init(void);
bool proc_is_init(const struct sb *p);
/* kill(1, sig) or a pidfd's signal to init: 0 (dropped), -EPERM for a
 * sender that is not root (init is root's), -EINVAL for a bad sig. */
long proc_init_signal(const struct sb *from, int sig);
/* The process pid of sb's sandbox that has not ended (NULL: none), its
 * parent's pid (1: the sandbox's init; init's own: 0), group and session. */
struct sb *proc_find(struct sb *sb, int pid);
/* The process pid of sb's sandbox, a zombie too (its memory and files
 * gone: sb->mem NULL): what /proc shows. NULL: none. */
struct sb *proc_find_any(struct sb *sb, int pid);
int proc_ppid(const struct sb *p);
int proc_pgid(const struct sb *p);
int proc_sid(const struct sb *p);
/* The sandbox's first process (sb itself before any fork). */
struct sb *proc_first(struct sb *sb);
/* Threads alive in all the sandbox's processes (max_threads bounds them). */
int proc_threads(const struct sb *sb);
/* Whether sb is the sandbox's first process (the run's; the one with /tmp). */
bool proc_is_first(const struct sb *sb);
/* Every process of sb's world (sb->w set), zombies too. */
struct sb *const *proc_list(const struct sb *sb, int *n);
/* The CPU time of the sandbox's other processes in this run (--cpu-limit
 * counts the whole tree: thread.c cpu_watch); proc_run_start: a run of the
 * first process begins. */
uint64_t proc_others_cpu_ns(struct sb *sb);
void proc_run_start(struct sb *sb);
/* fork, vfork, clone without CLONE_THREAD: the child's pid or -errno.
 * pidfd: where CLONE_PIDFD puts the new pidfd (clone's parent_tid,
 * clone3's own field). */
long proc_fork(struct sb *sb, uint64_t flags, uint64_t sp, uint64_t parent_tid, uint64_t child_tid, uint64_t tls,
               uint64_t pidfd);
/* The pidfd f's process (a zombie too), NULL when it was reaped. */
struct sb *pidfd_proc(struct sb *sb, const struct file *f);
long proc_waitid(struct sb *sb, const uint64_t a[6]);
/* kill(2)'s targets; send delivers to one process. */
long proc_kill(struct sb *sb, int pid, int sig, long (*send)(struct sb *from, struct sb *to, int sig));
/* A stop signal's default action: every thread of sb stops before it runs
 * program code again (task_run: proc_stopped_wait) until a SIGCONT; its
 * parent learns of it (SIGCHLD CLD_STOPPED unless SA_NOCLDSTOP, a wait
 * with WUNTRACED). proc_cont: SIGCONT's. */
void proc_stop(struct sb *sb, int sig);
void proc_cont(struct sb *sb);
/* In a task's run loop while its process is stopped: wait (the lock
 * released) for the continue or the end. */
void proc_stopped_wait(struct sb *sb);
/* Pausing a tree (a template, a branch, a live pause): the first process
 * reached its ready point. proc_pause_refused: why the tree cannot pause
 * now (NULL: it can); proc_pause_all: every other process stops (its
 * threads as a paused sandbox's: thread.c); proc_pause_wait: the first
 * process's run waits until they all did (the lock held); proc_resume_all:
 * the sandbox runs again; proc_paused_wait: a forked process's host thread
 * after it stopped, until then (true) or the sandbox's end (false). */
const char *proc_pause_refused(struct sb *sb);
void proc_pause_all(struct sb *sb);
void proc_pause_wait(struct sb *sb);
void proc_resume_all(struct sb *sb);
bool proc_paused_wait(struct sb *c);
/* A vfork child exec'd or ended: its parent goes on. */
void proc_vfork_done(struct sb *c);
/* A vfork child sharing its parent's memory (sb->mm_parent): take the
 * owner's address-space fields (the lock just taken: another process may
 * have changed them) and give its own changes back (after its call). */
void proc_mm_pull(struct sb *c);
void proc_mm_push(struct sb *c);
/* execve of a vfork child sharing memory: its own VM and memory from now
 * on (the parent's stay as they are), the lent vCPU given back; of a
 * process whose memory vfork children share: wait until none does. 0 or
 * -errno (before execve's point of no return). */
long proc_exec_detach(struct sb *sb);
/* A forked process's run is over (its host thread, the lock held): a
 * zombie now; true when it was reaped at once (proc_free_reaped it after
 * the lock is released). */
bool proc_exit(struct sb *c);
void proc_free_reaped(struct sb *c);
/* The first process's run is over: the others are killed, waited for and
 * freed (the lock held). proc_world_free: that and the world (the lock not
 * held; from cf_sandbox_free). */
void proc_end_all(struct sb *sb);
void proc_world_free(struct sb *sb);
/* A template's child (snapshot.c): c (its state loaded) joins first's
 * world; proc_adopted_start: its host thread, which waits for the
 * sandbox's first run (c->paused) before it goes on. */
int proc_adopt(struct sb *first, struct sb *c);
void proc_adopted_start(struct sb *c);
/* One adopted but not started: out of the world and freed. */
void proc_unadopt(struct sb *c);
/* sandbox.c: start the host thread of a forked process (task 0 made, or
 * none: a paused process of a template's child, made when it goes on). */
int proc_start(struct sb *c);
/* The same for a vfork child on the vCPU of l (its host thread started, or
 * posted). */
int proc_start_lent(struct sb *c, struct vlend *l);

/* thread.c: tasks, the lock, blocking and futex waiters */
/* Make task 0 of sb (the running thread) if it has none: a process that
 * forks blocks with the lock released from then on. 0 or -1. */
int task_make0(struct sb *sb);
/* vCPU `to` goes on as the running task after its SYSCALL, returning 0 (a
 * clone's child): its registers (stack sp if not 0), FPU state and FS base
 * (tls if settls). 0 or -1 + cf_error. */
int task_copy_cpu(struct sb *sb, struct cf_vm *to, uint64_t sp, bool settls, uint64_t tls);
/* Task 0 of a new process c, to run on the host thread proc_start makes. */
int task_process(struct sb *c);
struct pollfd;
void task_lock(struct sb *sb, struct task *t);
void task_unlock(struct sb *sb);
/* Threads alive (1 before the program made a second one). */
int task_live(const struct sb *sb);
/* The sandbox's vCPUs that run at once (opts->cpus). */
int sb_cpus(const struct sb *sb);
/* Around the running task's KVM_RUN: wait for one of the sandbox's CPUs
 * (false: the task or the sandbox ended meanwhile), give it back. */
bool cpu_get(struct sb *sb, struct task *t);
/* Wake the first task in line for a CPU when one is free, or (all) every
 * task in line: a pause or an end each must see. */
void cpu_wake(struct sb *sb, bool all);
void cpu_put(struct sb *sb, struct task *t);
/* Sleep with the lock released until a host fd of fds is ready (their
 * revents set; the count), the timeout (ns; -1 none) passes or a wake or
 * host signal comes (0). -errno of ppoll. */
long task_block(struct sb *sb, struct pollfd *fds, unsigned long n, int64_t timeout_ns);
/* Whether the running task's last block ended by a wake (and forget it). */
bool task_take_wake(struct sb *sb);
/* Kick every vCPU and wake every task (the sandbox ends, a signal for the
 * process). Async-signal-safe. */
void task_kick_all(struct sb *sb);
void task_kick(struct task *t);
/* Kick t's vCPU and end its wait: something for it (a signal, its end). */
void task_signal(struct task *t);
void task_end_all(struct sb *sb);
/* clone/clone3 of a thread: its tid or -errno. */
long task_clone(struct sb *sb, uint64_t flags, uint64_t sp, uint64_t parent_tid, uint64_t child_tid, uint64_t tls);
/* exit(2) of the running task: the sandbox's exit when it is the last. */
long task_exit(struct sb *sb, int code);
/* The run loop of the running task (sandbox.c), until it or the sandbox ends. */
void task_run(struct sb *sb, struct task *t);
/* A pause by the running task (sandbox.c pause_at): the others stop at
 * their next point they can be continued from (task_stop, in their run
 * loops; a blocked call is rewound to run again). */
void task_pause_others(struct sb *sb);
/* Whether t (NULL: the only thread) is stopped for the pause now; false:
 * it runs on to its next exit first. */
bool task_stop(struct sb *sb, struct task *t);
/* At the start of a run: start the held threads of a paused sandbox again
 * (each on a vCPU of its own, its registers and FPU state loaded). -1 +
 * cf_error (the sandbox cannot go on). */
int task_resume(struct sb *sb);
/* Free the held threads (a sandbox freed, a VM reused for another child). */
void task_free_held(struct sb *sb);
/* execve with other threads alive: end them first, as Linux (they leave
 * their waits and vCPUs before the memory is replaced). 0, or -EINTR when
 * the sandbox ended meanwhile. */
long task_exec_alone(struct sb *sb);
/* After task 0's loop: wait for the other tasks, join and free them; after
 * a pause, hold the ones alive (sb->held) and give sb and vCPU 0 the
 * pausing task's context. -1 + cf_error when a vCPU's state cannot be read. */
int task_finish(struct sb *sb);
/* The CPU time of the tasks other than task 0 (running and ended). */
uint64_t task_cpu_ns(struct sb *sb);
/* futex waiters by key: a futex word's key (futex_key: with priv, or in
 * private memory, the process (a vfork child's: its parent, whose memory
 * it runs in) and its address; else the shared memory object and the
 * offset in it, as Linux keys a shared futex). Wake up to n
 * (bitset matched; the count), requeue (wake nwake, move up to nmove to
 * k2; both counted), wait (queued before the lock is released: 1 woken, 0
 * at the deadline, -EINTR). futex_wake and futex_wait take the address of
 * a shared (not private) futex. */
struct fkey {
  const void *obj;
  uint64_t off;
};
struct fkey futex_key(struct sb *sb, uint64_t addr, bool priv);
int futex_wake_key(struct sb *sb, struct fkey k, int n, uint32_t bitset);
int futex_requeue_key(struct sb *sb, struct fkey k, int nwake, struct fkey k2, int nmove);
long futex_wait_key(struct sb *sb, struct fkey k, uint32_t bitset, clockid_t clk, const struct timespec *deadline);
int futex_wake(struct sb *sb, uint64_t addr, int n, uint32_t bitset);
/* The running task ends: its robust futexes (set_robust_list) are marked
 * FUTEX_OWNER_DIED and a waiter of each woken, as Linux (task.c). */
void robust_exit(struct sb *sb);
long futex_wait(struct sb *sb, uint64_t addr, uint32_t bitset, clockid_t clk, const struct timespec *deadline);

/* timer.c: interval timers and the waits a signal can interrupt */
struct wbuf;
struct rbuf;
struct pollfd;
uint64_t mono_ns(void);
uint64_t thread_cpu_ns(void);
/* The guest's CPU time: the earlier runs' plus this run's so far. */
uint64_t guest_cpu_ns(struct sb *sb);
bool ts_valid(const struct timespec *ts);
/* now on clk + rel (saturated) */
struct timespec ts_after(clockid_t clk, const struct timespec *rel);
long do_setitimer(struct sb *sb, long which, uint64_t new_addr, uint64_t old_addr);
long do_getitimer(struct sb *sb, long which, uint64_t addr);
long do_alarm(struct sb *sb, unsigned secs);
/* Whether any timer is armed. */
static inline bool itimer_armed(const struct sb *sb)
{
  for (int i = 0; i < sb->ntimer; i++)
    if (sb->timers[i].value)
      return true;
  return false;
}
/* Expire every timer due (signals raised or queued),
 * re-arm intervals. */
void itimer_poll(struct sb *sb);
/* The earliest expiry of the timers that signal (cpu: on the guest CPU
 * clock, else CLOCK_MONOTONIC), 0 if none: what the run's host timers
 * kick the vCPU at. */
uint64_t timer_next(struct sb *sb, bool cpu);
/* execve: the POSIX timers go (the interval timers stay, as Linux). */
void timers_exec(struct sb *sb);
/* POSIX timers and the signal queue in a state file (version 5). */
void timers_save(struct sb *sb, struct wbuf *w);
int timers_load(struct sb *sb, struct rbuf *r, const char *name);
/* timerfd (an open file of type F_TIMERFD): read, readiness (poll
 * events), a timerfd's struct file going (its timer freed). */
long timerfd_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len);
short timerfd_poll(struct sb *sb, struct file *f);
void timerfd_release(struct file *f);
/* The earliest expiry (CLOCK_MONOTONIC ns) of timerfd f, 0 if disarmed. */
uint64_t timerfd_due(struct file *f);
/* Wait until deadline (absolute on clk; NULL: none) or a signal: 0 when
 * the deadline passed, -EINTR when a signal is to be delivered (or the run
 * ends: sb->exited, sb->timed_out), -EDEADLK when nothing can end it (no
 * deadline, no timer, no other thread), -EAGAIN when another task woke it
 * (wake_all, futex_wake: re-check what it waits for). The lock is released
 * while it sleeps. */
long sig_wait(struct sb *sb, clockid_t clk, const struct timespec *deadline);
/* poll(2) of host fds (fd -1: none) with a timeout in ms (-1: none) that
 * signals interrupt (-EINTR); -EAGAIN when another task woke it; ends the
 * sandbox (SYS_NORETURN) when nothing can end it (no host fd, no timeout,
 * no timer, no other thread). The lock is released while it sleeps. > 0: a
 * host fd is ready; 0: the timeout passed or a timer raised a signal (shim
 * state changed: the caller checks its readiness again). */
long sig_poll(struct sb *sb, struct pollfd *fds, unsigned long n, int timeout_ms);
/* Another task's wait may have become ready (shim state it waits on
 * changed): wake every blocked task of the sandbox so it re-checks. */
void wake_all(struct sb *sb);
/* Interval timers in a state file (version 2): remaining times. */
void itimer_save(struct sb *sb, struct wbuf *w);
int itimer_load(struct sb *sb, struct rbuf *r);

/* sandbox.c: point the run's host timers at the next expiries (no-op
 * outside a run). */
void run_timers_arm(struct sb *sb);
/* Kick the vCPU again in a millisecond (a signal that could not be
 * delivered at this kick). */
void run_timers_rekick(struct sb *sb);
/* The SIGALRM handler that makes KVM_RUN return (a tgkill from another
 * task is a kick: thread.c), installed once per process. */
void run_kick_install(void);

/* tmpfs.c. The upper layer of the overlay over the root (ovl.c), /tmp in
 * it, and /dev/shm: trees whose file data is kept in pages of a region of
 * guest memory [base, base+size) that no VMA covers (tmpfs.c says why).
 * Paths given to the tmp_* calls name the upper tree with no symlink on the
 * way (ovl.c resolves them), or /dev/shm. */
struct tmpfs *tmp_new(uint8_t *mem, uint64_t base, uint64_t size);
void tmp_destroy(struct tmpfs *fs);
/* --disk: the upper layer's files (not /tmp's or /dev/shm's) keep their
 * data on disk, an ext4 file system on ov that tmp_destroy closes (the
 * caller frees ov after it; tmpfs.c, the `disk` store). At once after
 * tmp_new. */
struct cf_extfs;
struct cf_overlay;
struct cf_store;
struct cf_image;
int tmp_set_disk(struct tmpfs *fs, struct cf_extfs *disk, struct cf_overlay *ov);
bool tmp_has_disk(const struct tmpfs *fs);
/* A save: the disk flushed (a clean file system) and its overlay
 * committed as image in s (a child of the image it was made over: only the
 * blocks written since, zero ones empty), which tmp_save then records;
 * *stored: the bytes its own layer holds. 0 without a disk. -1 + cf_error. */
int tmp_disk_commit(struct tmpfs *fs, struct cf_store *s, const char *image, uint64_t *stored);
/* snapshot.c: the disk of a state being loaded (tmp_load), a new overlay
 * over image (whose id must be id) with its cache in the store's tmp/: the
 * image of sb's template, opened once and shared by all its children, or,
 * for a sandbox with no template (tests), opened from sb->disk_store into
 * *own (the caller closes it after the overlay). NULL + cf_error naming the
 * image (missing, damaged: EIO, another one than saved: EINVAL). */
struct cf_overlay *disk_overlay_load(struct sb *sb, const char *image, const uint8_t id[16], struct cf_image **own);
/* statfs of the disk in 4 KiB blocks and inodes: false without one. */
bool tmp_disk_usage(struct tmpfs *fs, uint64_t *blocks, uint64_t *bfree, uint64_t *files, uint64_t *ffree);
uint64_t tmp_region_base(const struct tmpfs *fs);
uint64_t tmp_region_size(const struct tmpfs *fs);
/* Guest memory moved to another host mapping (a parked child's new VM). */
void tmp_set_mem(struct tmpfs *fs, uint8_t *mem);
void tmp_free(struct tnode *n);
/* Whether abs is /dev/shm or below (its own tree, no lower layer). */
bool tmp_is_shm(const char *abs);
struct tnode *tmp_lookup(struct sb *sb, const char *abs);
/* Like tmp_lookup, with Linux's error: 0 and *out, -ENOENT or -ENOTDIR. */
long tmp_lookup_err(struct sb *sb, const char *abs, struct tnode **out);
/* Create (file or dir) at abs: -EEXIST, -ENOENT (no parent), -ENOTDIR. A
 * whiteout there makes way; a new directory is opaque. */
long tmp_create(struct sb *sb, const char *abs, bool dir, unsigned mode, struct tnode **out);
/* A symbolic link to target at abs: tmp_create's errors. */
long tmp_symlink(struct sb *sb, const char *abs, const char *target, struct tnode **out);
/* A whiteout at abs (its parent in the upper tree), replacing what is there. */
long tmp_whiteout(struct sb *sb, const char *abs);
/* The overlay's view (ovl.c): the upper root, a child by name (whiteouts
 * included, a hard link resolved), the flags. */
struct tnode *tmp_root(struct tmpfs *fs);
struct tnode *tmp_kid(struct tnode *dir, const char *name, size_t len);
bool tmp_is_whiteout(struct tnode *n);
bool tmp_is_opaque(struct tnode *n);
const char *tmp_symlink_target(struct tnode *n); /* NULL: not a symlink */
/* A copy-up: a new node name in dir with st's type, mode, owner, times and
 * inode number (a directory not opaque; link: a symlink's target). NULL and
 * *err (-EEXIST, -ENOMEM). ovl_copyup then copies the lower's extended
 * attributes. */
struct tnode *tmp_copyup(struct tnode *dir, const char *name, const struct stat *st, const char *link, long *err);
void tmp_set_times(struct tnode *n, const struct stat *st); /* atime, mtime */
/* Extended attributes of n, stored as tmpfs's (no permission checks: fs.c
 * sys_xattr). get: the value's length (size 0: only that), -ENODATA,
 * -ERANGE; list: the NUL-terminated names (trusted.* only with trusted),
 * their length, -ERANGE; set (val NULL: remove; flags XATTR_CREATE,
 * XATTR_REPLACE): -EEXIST, -ENODATA, -ENOSPC (the sandbox's room for them
 * is full), -ENOMEM. A set or remove stamps the ctime. */
long tmp_getxattr(struct tnode *n, const char *name, void *buf, size_t size);
long tmp_listxattr(struct tnode *n, char *buf, size_t size, bool trusted);
long tmp_setxattr(struct tnode *n, const char *name, const void *val, size_t len, int flags);
void tmp_set_root_attr(struct tmpfs *fs, const struct stat *st);
/* n out of its directory (freed unless open). */
void tmp_drop(struct tnode *n);
/* The region's pages and those in use (statfs). */
void tmp_usage(struct tmpfs *fs, uint64_t *total, uint64_t *used);
/* A FIFO's state, kept in its /tmp node and served by fs.c (fifo_open):
 * the ends of the host pipe its open files share that the node holds (rd
 * while it has readers, wr while it has writers; -1: none; with neither,
 * there is no pipe), its open files that read and that write (O_RDWR: both),
 * and how many opens each side has had (a blocking open waits for the other
 * side's to move, as Linux's w_counter/r_counter). Under the sandbox's lock. */
struct fifo {
  int rd, wr;
  int readers, writers;
  uint64_t r_opens, w_opens;
};
/* mknod S_IFIFO at abs: tmp_create's errors. */
long tmp_mkfifo(struct sb *sb, const char *abs, unsigned mode, struct tnode **out);
/* mknod S_IFSOCK at abs (a socket file: bind of an AF_UNIX path name, net.c). */
long tmp_mksock(struct sb *sb, const char *abs, unsigned mode, struct tnode **out);
bool tmp_is_sock(struct tnode *n);
/* n's FIFO state, NULL when n is not a FIFO. */
struct fifo *tmp_fifo(struct tnode *n);
/* fs.c: whether f is a FIFO's reader whose POLLHUP Linux would not show yet
 * (struct file fifo_nohup): poll masks it, a wait does not block on its host
 * fd (only a writer's open, which wakes every task, can change it). */
bool fifo_hup_hidden(struct file *f);
/* whiteout: a whiteout takes the name's place (the lower has one). */
long tmp_unlink(struct sb *sb, const char *abs, bool dir, bool whiteout);
/* whiteout: one is left at from (the lower has that name). */
long tmp_rename(struct sb *sb, const char *from, const char *to, bool whiteout);
/* A hard link to the file from at to: 0, -EEXIST, -EPERM (a directory),
 * -EXDEV (between /tmp and /dev/shm), -ENOENT. */
long tmp_link(struct sb *sb, const char *from, const char *to);
void tmp_stat(struct tnode *n, struct stat *st);
void tmp_chmod(struct tnode *n, unsigned mode);
/* Owner: -1 keeps one. */
void tmp_chown(struct tnode *n, int uid, int gid);
/* ts: NULL (both now) or utimensat's pair (tv_nsec UTIME_NOW/UTIME_OMIT allowed). */
void tmp_utimes(struct tnode *n, const struct timespec *ts);
long tmp_read(struct tnode *n, void *buf, uint64_t len, uint64_t off);
long tmp_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off);
long tmp_truncate(struct tnode *n, uint64_t len);
/* renameat2 RENAME_EXCHANGE: the entries at a and b swap places (both
 * must exist: -ENOENT; one inside the other: -EINVAL). */
long tmp_exchange(struct sb *sb, const char *a, const char *b);
/* O_TMPFILE: a new regular file with no name (nlink 0), mode & ~umask;
 * linkable: linkat may give it one (tmp_link_node), else (O_EXCL) never. */
long tmp_tmpfile(struct sb *sb, const char *dir, unsigned mode, bool linkable, struct tnode **out);
/* link(2) of the node n (an open file's) at to: as tmp_link; an unlinked
 * node is -ENOENT unless an O_TMPFILE one, which takes the name itself. */
long tmp_link_node(struct sb *sb, struct tnode *n, const char *to);
/* fallocate(2)'s tmpfs part: modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE; others -EOPNOTSUPP. */
long tmp_fallocate(struct tnode *n, int mode, uint64_t off, uint64_t len);
/* lseek's SEEK_DATA/SEEK_HOLE (whence) from off: the offset or -ENXIO. */
long tmp_seek_data(struct tnode *n, int64_t off, int whence);
/* The shared memory object holding n's data from now on (made on the first
 * call: the data moves from the /tmp region into it), at least end bytes
 * long: NULL and *err (-ENOSPC past the region's size, -ENFILE). */
struct shm_obj *tmp_shared(struct sb *sb, struct tnode *n, uint64_t end, int *err);
/* Before a save: 0, or -1 + cf_error (ENOTSUP: a sandbox with a disk). */
int tmp_save_prepare(struct tmpfs *fs, struct tnode *const *extra, size_t nextra);
/* Before a save's memory images are taken: the data of every shared
 * memory object (of a file of the trees or of extra, the deleted files open
 * files hold, or one of objs, the mappings' objects) is copied into fresh
 * pages of the /tmp region, the file's node or, for an object no node
 * holds, an unlinked node of its own (o->save_node), which tmp_save writes.
 * The objects stay as they are: the sandbox goes on using them.
 * tmp_save_shared_done frees the copies (and those nodes) after the save,
 * on every path. 0, or -1 + cf_error (ENOSPC: no room for the copies). */
int tmp_save_shared(struct tmpfs *fs, struct tnode *const *extra, size_t nextra, struct shm_obj *const *objs,
                    size_t nobjs);
void tmp_save_shared_done(struct tmpfs *fs);
/* fs.c: the same for a sandbox (every live process's open files and
 * shared mappings), and its end. */
int fs_save_prepare(struct sb *sb);
void fs_save_done(struct sb *sb);
bool tmp_is_dir(struct tnode *n);
/* The idx-th child of dir (NULL past the end), its name into name. */
struct tnode *tmp_child(struct tnode *dir, uint64_t idx, const char **name);
void tmp_ref(struct tnode *n);
bool tmp_is_linked(struct tnode *n);
bool tmp_is_anon(struct tnode *n); /* a shared memory object's data in a load (NODE_ANON) */
int tmp_refs(struct tnode *n);
void tmp_unref(struct tnode *n);

/* ovl.c: the overlay of the tmpfs tree (upper) over the root (lower). */
struct ovl {
  char path[PATH_MAX]; /* canonical: no symlink on the way (nor at the end when followed) */
  struct tnode *node;  /* the upper entry, or NULL: the lower's (st) or none */
  bool parent_ok;      /* -ENOENT: the parent is a directory (a create may go to path) */
  struct stat st;      /* found: the entry's */
};
#define OVL_VIRT 1 /* ovl_lookup: the path leads into /proc, /dev or /dev/shm (o->path) */
/* abs (normalized) in the merged view, following a symlink at the end when
 * follow: 0, OVL_VIRT, or -errno (-ENOENT with o->parent_ok and o->path
 * where a create would go). */
long ovl_lookup(struct sb *sb, const char *abs, bool follow, struct ovl *o);
/* Whether the lower has an entry at canonical path that the upper's
 * directories do not hide (then a removal leaves a whiteout). */
bool ovl_lower_has(struct sb *sb, const char *path);
/* The upper node of canonical path, copied up from the lower with its
 * directories when needed (data: a regular file's bytes too; without, an
 * empty file: O_TRUNC). 0 and *out, or -errno (-ENOSPC: the region is full;
 * -EACCES: a device or socket). */
long ovl_copyup(struct sb *sb, const char *path, bool data, struct tnode **out);
/* The lower entry's extended attributes at canonical path (a symlink's
 * own), read from the host file: name's value (NULL: the list of names)
 * into buf (size 0: the length only); the host's result or -errno. */
long ovl_lower_xattr(struct sb *sb, const char *path, const char *name, void *buf, size_t size);
/* The upper directory that holds (or will hold) canonical path, copied up. */
long ovl_copyup_parent(struct sb *sb, const char *path, struct tnode **out);
/* A directory's merged entries (path: where the lower's are, NULL: none),
 * one malloc'ed block (free()). */
struct ovl_list {
  size_t n;
  size_t at[]; /* then the entries: u64 ino, u8 type, name, NUL */
};
long ovl_list(struct sb *sb, struct tnode *dir, const char *path, struct ovl_list **out);
/* Entry i (NULL past the end): its name, *ino, *type (DT_*). */
const char *ovl_list_get(const struct ovl_list *l, size_t i, uint64_t *ino, uint8_t *type);
/* 0 if the merged directory o names is empty, -ENOTEMPTY, -errno. */
long ovl_empty(struct sb *sb, const struct ovl *o);

/* state.c: serialization buffers (bounds-checked reader) */
struct wbuf {
  uint8_t *p;
  size_t n, cap;
  bool err;
};
struct rbuf {
  const uint8_t *p;
  size_t n, off;
  bool err;
};
void w_bytes(struct wbuf *w, const void *p, size_t n);
void w_u64(struct wbuf *w, uint64_t v);
void w_str(struct wbuf *w, const char *s);
void r_bytes(struct rbuf *r, void *p, size_t n);
uint64_t r_u64(struct rbuf *r);
/* A string of at most size-1 bytes into buf; sets r->err otherwise. */
void r_str(struct rbuf *r, char *buf, size_t size);
/* tmpfs.c: the tree and its page lists; files refer to nodes by id. */
int tmp_save(struct tmpfs *fs, struct wbuf *w, struct tnode *const *extra, size_t nextra);
uint64_t tmp_node_id(struct tnode *n); /* after tmp_save: 1.. */
/* Rebuilds the tree (nodes by id into *nodes, malloc'ed, (*nodes)[id-1]). */
/* -EINVAL (a bad tree), -ENOMEM, or -EIO: the disk it names could not be
 * opened (cf_error says why). */
int tmp_load(struct sb *sb, struct tmpfs *fs, struct rbuf *r, struct tnode ***nodes, size_t *nnodes);
void tmp_pages(struct tmpfs *fs, int (*fn)(void *ctx, uint64_t addr), void *ctx);

/* Each subsystem's part of a template's state file. snapshot.c calls them
 * in the order of the format (save_state, state_parse): mm, fs_cwd, sig,
 * task, fs (the /tmp tree, files, fds), then itimer (version 2),
 * task_ident (version 3), task_limits and sig_altstack (version 4). A load reads and checks its part: 0, or -1 +
 * cf_error naming the template (name). */
void mm_save(struct sb *sb, struct wbuf *w);
int mm_load(struct sb *sb, struct rbuf *r, const char *name);
/* Version 8: the shared mappings (start, end, offset, the id of the node
 * holding the object's data: tmp_save_shared), after the rest of the
 * process's state. The load maps each node's object (tmp_shared: one
 * object per node, so the processes of a child share it again) and takes
 * the nodes from the first process's load (load_nodes). */
void mm_save_shared(struct sb *sb, struct wbuf *w);
int mm_load_shared(struct sb *sb, struct rbuf *r, const char *name);
void fs_save_cwd(struct sb *sb, struct wbuf *w);
int fs_load_cwd(struct sb *sb, struct rbuf *r, const char *name);
void sig_save(struct sb *sb, struct wbuf *w);
int sig_load(struct sb *sb, struct rbuf *r, const char *name);
void task_save(struct sb *sb, struct wbuf *w);
int task_load(struct sb *sb, struct rbuf *r, const char *name);
int fs_save(struct sb *sb, struct wbuf *w);
int fs_load(struct sb *sb, struct rbuf *r, const char *name);
void task_save_ident(struct sb *sb, struct wbuf *w);
int task_load_ident(struct sb *sb, struct rbuf *r, const char *name);
/* Version 4: the resource limits, the alternate signal stack. A version
 * 1-3 payload ends before them: the defaults. */
void task_save_limits(struct sb *sb, struct wbuf *w);
int task_load_limits(struct sb *sb, struct rbuf *r, const char *name);
void sig_save_altstack(struct sb *sb, struct wbuf *w);
int sig_load_altstack(struct sb *sb, struct rbuf *r, const char *name);
/* Version 6: the held threads of a paused sandbox (registers, FPU state,
 * their context, robust list heads) and the next tid, the pausing thread's
 * robust list head. A version 1-5 payload ends before them:
 * none. */
void task_save_threads(struct sb *sb, struct wbuf *w);
int task_load_threads(struct sb *sb, struct rbuf *r, const char *name);
/* Version 8: the supplementary groups and each thread's scheduling (the
 * pausing one's, then the held ones' as task_save_threads gave them). */
void task_save_sched(struct sb *sb, struct wbuf *w);
int task_load_sched(struct sb *sb, struct rbuf *r, const char *name);
/* task.c: whether gid is the process's group or one of its supplementary
 * groups; the groups freed (an sb's end); a copy of p's into c (fork: 0 or
 * -ENOMEM, c's own then). */
bool task_in_group(const struct sb *sb, uint32_t gid);
/* The CPUs thread tid of sb's sandbox may run on (sched_getaffinity's
 * mask; every one of the sandbox's for one it does not know). */
void task_cpus(struct sb *sb, int tid, uint64_t m[2]);
void task_init_creds(struct sb *sb); /* the host process's groups (none if they cannot be had) */
void task_free_creds(struct sb *sb);
int task_copy_creds(struct sb *c, const struct sb *p);

/* reuse.c: putting a finished child's memory back to its template's
 * (file backend), and the strict comparison with a fresh child that
 * COWFORK_CHECK_RESET=1 runs after each reset. */
/* A reset keeps at most this many written pages private (restored in place). */
#define REUSE_KEEP_MAX 8192u
int reuse_check_possible(struct sb *sb, const struct cf_sandbox_opts *next);
int reuse_reset_memory(struct sb *sb);
int reuse_check(struct sb *sb);
/* Parking (cf_sandbox_park): unpark gives a parked child a VM again (a
 * spare or a new one) holding exactly the memory it had; park_free drops a
 * parked child's kept state. */
int reuse_unpark(struct sb *sb);
void park_free(struct sb *sb);

/* mm.c: snapshot support */
/* Make the host mapping match the VMA list (PROT_NONE between VMAs, the
 * VMA's protection inside; the /tmp region read-write). */
int mm_apply(struct sb *sb);
/* MADV_DONTNEED semantics on any backend: the range reads as zeros. */
int mm_zero(struct sb *sb, uint64_t start, uint64_t len);
/* fork: a new VM whose memory is sb's at this instant, copy-on-write (file
 * and template pages mapped again, private pages copied). NULL + cf_error. */
struct cf_vm *mm_fork_vm(struct sb *sb);

/* Lexically normalize a sandbox path against cwd into out (absolute). */
int path_abs(const char *cwd, const char *path, char *out, size_t size);
/* The sandbox's working directory := path (absolute; symlinks followed):
 * 0, or -1 + cf_error (not a directory, missing). */
int fs_chdir(struct sb *sb, const char *path);

/* seccomp.c: the filter of the threads that serve guests. seccomp_enter
 * installs it on the calling thread once (unless turned off); -1 with
 * cf_error() when it cannot. seccomp_test_armed: COWFORK_SECCOMP_TEST=1 and
 * not fired yet on this thread; seccomp_test_fire makes a forbidden call. */
int seccomp_enter(void);
bool seccomp_installed(void);
unsigned seccomp_prog_len(void);
extern __thread bool seccomp_test_armed;
void seccomp_test_fire(void);

#endif
