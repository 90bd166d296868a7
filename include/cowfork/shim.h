/* The Linux ABI shim: runs one static x86-64 Linux program in a micro-VM
 * (vmm.h) and serves its system calls. */
#ifndef COWFORK_SHIM_H
#define COWFORK_SHIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cowfork/uffd.h"

struct cf_store;
struct cf_mem_backend;
struct cf_net_policy;

/* When a sandbox pauses instead of going on (template create, branch). */
enum cf_ready {
  CF_READY_NONE = 0,
  /* at the first system call that reads fd 0 (read, readv, pread64, preadv,
   * preadv2 on fd 0; poll, ppoll, select, pselect6 waiting for fd 0 to be
   * readable), before it is served, whether or not data is waiting: each
   * child serves that call from its own stdin */
  CF_READY_STDIN,
  /* right after the write/writev to fd 1 that completes MARKER (it may span
   * several writes); children resume after that call */
  CF_READY_MARKER,
};

struct cf_overlay;
struct cf_sandbox_opts {
  const char *root;     /* host directory seen as "/", read-only (NULL: "/") */
  uint64_t mem_size;    /* guest memory (0: 256 MiB) */
  double timeout;       /* wall-clock seconds per cf_sandbox_run_until, 0: none */
  double cpu_limit;     /* CPU seconds (guest and shim) per cf_sandbox_run_until, 0: none */
  bool strace;          /* print every system call to trace */
  bool verbose;         /* print loader and exit statistics to trace */
  FILE *trace;          /* NULL: stderr */
  const char *program;  /* path inside the sandbox (resolved under root; a
                           relative one against cwd) */
  /* The working directory the program starts in: an absolute path of a
   * directory in the sandbox (NULL: "/"). cf_template_fork: ignored (the
   * template's). */
  const char *cwd;
  char *const *argv;    /* argv[0] included */
  char *const *envp;
  int stdio[3];         /* host fds the sandbox's 0, 1, 2 refer to (dup'ed) */
  enum cf_ready ready;  /* cf_sandbox_new: pause at this point (template create) */
  const char *marker;   /* CF_READY_MARKER */
  bool copy_files;      /* copy file pages instead of mapping them copy-on-write
                           from the host file (a benchmark baseline) */
  /* cf_template_fork only (root, mem_size, program, argv, envp, ready come
   * from the template): */
  bool branch;          /* pause at the template's ready point again: a read
                           of fd 0 at end of input (stdin templates) or the
                           next MARKER; then cf_sandbox_save stores a branch */
  const struct cf_mem_backend *backend; /* NULL: file */
  const char *uffd_socket;              /* uffd backend: the page server */
  /* uname's nodename and /proc/sys/kernel/hostname, 1-64 bytes (NULL:
   * CF_DEFAULT_HOSTNAME; cf_template_fork: NULL keeps the template's) */
  const char *hostname;
  /* Host fds the open files of all the sandbox's processes hold at once
   * (ENFILE past it: the sandbox is the system), and the hard limit of the
   * guest's RLIMIT_NOFILE (its soft one: Linux's 1024, or max_files when
   * lower): a guest that raises its limit as far as it may can use it.
   * 0: CF_SANDBOX_MAX_FILES; at most CF_SANDBOX_NR_OPEN (`cowfork run`
   * gives what its own fd limit leaves room for). A guest open file holds at most one host fd (an
   * upper file none), so a sandbox holds at most max_files +
   * CF_SANDBOX_FIXED_FDS host fds (docs/sandbox.md, "Limits").
   * cf_template_fork: the child's own (the template's is not kept). */
  unsigned max_files;
  /* vCPUs that run the program's threads at once (--cpus): 1 ..
   * CF_SANDBOX_MAX_THREADS; 0: CF_SANDBOX_DEFAULT_CPUS. What
   * sched_getaffinity, /proc/cpuinfo and /proc/stat show; more threads than
   * this take turns (time slices of 10 ms). */
  unsigned cpus;
  /* Threads alive at once (a vCPU each): clone past it is EAGAIN (0:
   * CF_SANDBOX_MAX_THREADS; at most that). Each thread beyond the first
   * holds CF_SANDBOX_THREAD_FDS host fds. */
  unsigned max_threads;
  /* Processes alive at once (--pids): fork past it is EAGAIN, as Linux past
   * RLIMIT_NPROC (0: CF_SANDBOX_DEFAULT_PIDS). Each process beyond the
   * first holds CF_SANDBOX_PROC_FDS host fds and a VM. */
  unsigned max_pids;
  /* Where its sockets may go beyond its own loopback (--net; NULL: none,
   * include/cowfork/netpolicy.h). It must live as long as the sandbox.
   * cf_template_fork: the child's own (the template's is not kept). */
  const struct cf_net_policy *net;
  /* --disk: a block device holding an empty ext4 file system
   * (cf_extfs_mkfs) on which the upper layer's files other than /tmp's and
   * /dev/shm's keep their data (files larger than guest memory fit), or
   * NULL. The caller frees it after the sandbox. A save stores it as the
   * image NAME.disk (cf_sandbox_save). cf_template_fork: ignored (a child
   * of a template with a disk gets an overlay of its own over the
   * template's disk image, its cache file in the store's tmp/). */
  struct cf_overlay *disk;
};
#define CF_SANDBOX_DEFAULT_CPUS 2
#define CF_SANDBOX_DEFAULT_PIDS 64
#define CF_SANDBOX_PROC_FDS 5 /* /dev/kvm, its VM, its vCPU, its root, its wake eventfd */

#define CF_DEFAULT_HOSTNAME "cowfork"
/* max_files when 0: the host fds the open files of a sandbox may hold, and
 * its guest RLIMIT_NOFILE (soft and hard). */
#define CF_SANDBOX_MAX_FILES 1024
/* The guest fd table's most (it grows on demand): nr_open, the ceiling of
 * RLIMIT_NOFILE, and the largest max_files. */
#define CF_SANDBOX_NR_OPEN 65536
/* Host fds a sandbox holds beyond its open files: its root (1), its VM
 * (/dev/kvm, the VM, the vCPU: 3), a transient one while it executes a /tmp
 * file or is parked (1), the uffd backend's userfaultfd (1), with margin
 * (8); and CF_SANDBOX_THREAD_FDS per thread beyond the first (max_threads).
 * A caller adds its own (the daemon: 3 memfds for stdio). */
#define CF_SANDBOX_FIXED_FDS 8
#define CF_SANDBOX_THREAD_FDS 2 /* its vCPU, its wake eventfd */
#define CF_SANDBOX_MAX_THREADS 121 /* vmm.h CF_VM_MAX_VCPUS */

/* A sandbox's environment (shim/env.c): the default, then each of set[0..n)
 * in order: "K=V" sets K (replacing the default's or an earlier K), "K"
 * alone takes the value of K in from (a caller's environment) and is
 * dropped when from has none (from NULL: "K" alone is an error). Nothing
 * else of from is taken. The default: PATH=/usr/local/sbin:/usr/local/bin:
 * /usr/sbin:/usr/bin:/sbin:/bin, HOME=/root for uid 0 else /, LANG=C.UTF-8,
 * and TERM=term when term is not NULL. NULL-terminated, one malloc'ed block
 * (free()); NULL + cf_error (EINVAL: a bad entry, an empty name). */
char **cf_sandbox_env(const char *const *set, size_t n, char *const *from, int uid, const char *term);
/* Whether name is a hostname cf_sandbox_opts takes: 1-64 bytes (Linux's
 * limit), no control characters and no '/'. */
bool cf_sandbox_hostname_ok(const char *name);

/* The shim's system-call table (shim/systab.c): what `cowfork syscalls`
 * prints and docs/syscalls.md is generated from. */
enum cf_syscall_status {
  CF_SYSCALL_ABSENT = 0,  /* fails as Linux does for a call it lacks (ENOSYS) */
  CF_SYSCALL_PARTIAL,     /* served, with the limits its note says */
  CF_SYSCALL_FULL,
};
/* Flags of a call. */
#define CF_SYSCALL_BLOCKS 1u  /* may wait (for input, a timeout, a signal) */
#define CF_SYSCALL_READY 2u   /* a readiness point: poll, select and kin */
#define CF_SYSCALL_FD0 4u     /* reads fd 0 when its first argument is 0 (CF_READY_STDIN) */
#define CF_SYSCALL_HOSTIO 8u  /* host I/O the run's own timers may interrupt: restarted
                                 (SA_RESTART, no handler) or EINTR, as Linux */
#define CF_SYSCALL_NORETURN 16u /* may set the registers itself (execve, exit, rt_sigreturn) */
struct cf_syscall_info {
  long nr;
  const char *name;
  /* How --strace prints each argument, one letter each ("" none, NULL not
   * described: six in hex): i int, u unsigned, x hex, o octal, d fd, p path,
   * b buffer read by the call (its length the next argument), B buffer
   * written by it (shown after the call, the result's length), P pointer,
   * s signal number. */
  const char *args;
  unsigned flags;
  enum cf_syscall_status status;
  const char *note;
};
/* The highest system-call number the table knows. */
long cf_syscall_max(void);
/* Entry nr: 0 and *out, or -1 (ENOENT) when the table has none. */
int cf_syscall_info(long nr, struct cf_syscall_info *out);

struct cf_sandbox_result {
  int status;           /* the exit status the command should return */
  int exit_code;        /* exit_group argument when exited */
  int signal;           /* killing signal, 0 when the program exited */
  bool timed_out;
  char report[1024];    /* why it was killed: signal, address, registers */
  uint64_t syscalls, enosys, exits;
  uint64_t elf_mapped_bytes, elf_copied_bytes; /* the ELF loader's choice */
  /* file pages (4 KiB) the loader and mmap mapped copy-on-write from a host
   * file vs copied (no host backing: /tmp files, unaligned segments) */
  uint64_t pages_mapped, pages_copied;
  double create_us, first_exit_us, run_us;
  bool paused;          /* stopped at its ready point (cf_sandbox_run_until) */
  double spawn_us;      /* start of cf_sandbox_new / cf_template_fork to the first KVM_RUN */
  double first_output_us; /* start to the first write to fd 1 or 2 served (0: none) */
  uint64_t private_bytes; /* forked child: its private pages (written or replaced) */
};

/* Run opts->program to completion. -1 when the sandbox could not start
 * (no /dev/kvm, program not found or not a supported ELF...): cf_error()
 * says why. Otherwise 0 and res says how it ended (the program's faults,
 * timeouts and VM failures are results, not errors). */
int cf_sandbox_run(const struct cf_sandbox_opts *opts, struct cf_sandbox_result *res);

/* The same in steps. A sandbox belongs to one thread at a time; opts must
 * outlive it. */
struct cf_sandbox;
struct cf_sandbox *cf_sandbox_new(const struct cf_sandbox_opts *opts);
/* Run until the program ends or pauses (res->paused). Once more after a
 * pause continues it: the call it paused on (a read of fd 0) is served
 * first, from whatever fd 0 holds now. A parked sandbox gets a VM first. */
int cf_sandbox_run_until(struct cf_sandbox *sb, struct cf_sandbox_result *res);
void cf_sandbox_free(struct cf_sandbox *sb);
/* Park a paused child of a template, or one just forked that has not run
 * (file backend): its VM is reset and
 * given to the template's spare VMs, and what its memory holds beyond the
 * template's (the pages that differ, its anonymous ranges) and its vCPU
 * state are kept in this process, so that an idle child costs those bytes
 * and no VM (KVM's per-VM memory, ~0.5 MiB). cf_sandbox_run_until (and
 * cf_sandbox_save) give it a VM again — a spare or a new one — with memory
 * and registers exactly as they were. 0 when parked (or already parked);
 * -1 with errno ENOTSUP when it cannot be (not paused, another backend, a
 * host file mapped since the fork, a VM that failed): the child is then
 * unchanged and goes on in its own VM. shim/reuse.c, docs/sandbox.md. */
int cf_sandbox_park(struct cf_sandbox *sb);
/* A connection from outside (the daemon's forwarded port): fd, a connected
 * host AF_UNIX stream socket (taken in every case), is queued on the
 * sandbox's TCP listener on port (127.0.0.1 or ::1 or a wildcard), as if
 * made from inside its own loopback; its accept gets a socket whose host fd
 * is fd itself (no relay). Any thread, while the sandbox runs or not (its
 * lock is taken). 0, or -1 + cf_error: ECONNREFUSED (no listener on port:
 * fd closed), EAGAIN (its queue is full). shim/net.c. */
int cf_sandbox_net_accept(struct cf_sandbox *sb, unsigned port, int fd);

/* The seccomp-bpf filter (shim/seccomp.c, docs/security.md): while it is
 * on (cf_seccomp_set(true); off until then), every thread that runs a
 * sandbox installs it at its first cf_sandbox_run_until and keeps it for
 * life, so such a thread must not fork, exec or open sockets other than
 * Unix ones afterwards; a system call outside the allowlist kills the
 * process with SIGSYS and a report on stderr. The cowfork command turns it
 * on unless COWFORK_SECCOMP=0 or --no-seccomp. */
void cf_seccomp_set(bool on);
bool cf_seccomp_enabled(void);
/* Also let the filtered threads make AF_INET and AF_INET6 sockets (the
 * sockets of a sandbox whose --net policy names the host's network: they
 * are connected only where the policy allows, shim/net.c). Before the first
 * install in the process; the cowfork command calls it when --net is not
 * none (the daemon: when its ceiling is not none). */
void cf_seccomp_allow_inet(bool on);
/* Install the filter on the calling thread now (when it is on; 0 when it
 * is off or already installed): a thread that will serve guests takes it
 * before its first job (the daemon's workers), so that no such thread is
 * ever without it. -1 and cf_error() when it cannot. */
int cf_seccomp_enter(void);
/* cf_uffd_server_new (cowfork/uffd.h) with its worker threads under the
 * filter when it is on: they serve guests' page faults. The server is made
 * by a short-lived thread that installs the filter first (a thread's filter
 * passes to the threads it creates). */
struct cf_uffd_server *cf_seccomp_uffd_server_new(cf_uffd_end_fn end, void *ctx);

/* --- Templates (shim/snapshot.c, docs/sandbox.md) ---------------------------
 * A template NAME is the memory image NAME.mem in the store's images/ and
 * the state file STORE/templates/NAME (vCPU + shim state: magic, version,
 * XXH3). Both are immutable. */
struct cf_save_stats {
  uint64_t pages_scanned;   /* root template: candidate pages read */
  uint64_t pages_stored;    /* pages written into the new layer */
  uint64_t pages_zeroed;    /* branch: pages that became empty */
  uint64_t state_bytes;     /* size of the state file */
  uint64_t disk_bytes_stored; /* a sandbox with a disk: the bytes its image NAME.disk stores itself */
  double save_ms;
};
/* Save a paused sandbox as template name: a sandbox started with
 * cf_sandbox_new as a root template (every non-zero page), a forked child as
 * a branch of its template (only what it changed since the fork). The
 * sandbox may then go on or be freed. */
int cf_sandbox_save(struct cf_sandbox *sb, struct cf_store *s, const char *name, struct cf_save_stats *st);

struct cf_template;
/* The template an image belongs to: NAME for NAME.mem (its first
 * process's memory), NAME.mem.PID (another process's) and NAME.disk (its
 * disk): 0 and name, or -1 for any other image name. */
int cf_template_of_image(const char *image, char *name, size_t len);
/* Remove template name's images (NAME.mem, NAME.mem.PID, NAME.disk) and their
 * working-set files (the state file is the caller's): how many were
 * removed, or -1 + cf_error at the first that cannot be (one already gone
 * is no error). */
int cf_template_remove_images(struct cf_store *s, const char *name);
struct cf_template *cf_template_open(struct cf_store *s, const char *name);
void cf_template_close(struct cf_template *t);
/* The template's parent (a branch) or "" (a root template), its memory
 * image's name and guest memory size. */
const char *cf_template_parent(const struct cf_template *t);
const char *cf_template_image(const struct cf_template *t);
uint64_t cf_template_mem_size(const struct cf_template *t);
/* The host directory the template's sandboxes see as "/" (its root, as
 * resolved when it was created: STORE/roots/NAME/root for a store root). */
const char *cf_template_root(const struct cf_template *t);
/* A child: a new VM whose memory maps the template's image copy-on-write,
 * registers and shim state loaded, stdio from opts->stdio, paused where the
 * template paused; cf_sandbox_run_until resumes it. Thread-safe for one t. */
struct cf_sandbox *cf_template_fork(struct cf_template *t, const struct cf_sandbox_opts *opts);
/* Reuse the VM of box, a finished (or paused) child of t, for a new child:
 * the same as freeing box and calling cf_template_fork(t, opts), without
 * destroying the VM (shim/reuse.c: written pages are dropped, replaced
 * ranges mapped from the image again, protections, registers and shim
 * state loaded from t). The shadow page-table entries of template pages the
 * old child only read stay valid. File backend only. On failure box must be
 * freed (cf_sandbox_free); errno ENOTSUP means reuse was not possible (a
 * branch, another backend, a VM that failed...: fork anew), EUCLEAN that
 * the COWFORK_CHECK_RESET=1 comparison with a fresh child failed. */
int cf_template_refork(struct cf_template *t, struct cf_sandbox *box, const struct cf_sandbox_opts *opts);
/* The next child of t, in keep's VM when keep (a finished child of t, or
 * NULL) can be reset (cf_template_refork), else in a new VM
 * (cf_template_fork; keep is freed). keep is consumed either way. NULL with
 * cf_error() when no child could be made; errno EUCLEAN when the
 * COWFORK_CHECK_RESET comparison failed (no fallback then). */
struct cf_sandbox *cf_template_next(struct cf_template *t, struct cf_sandbox *keep,
                                    const struct cf_sandbox_opts *opts);
/* STORE/templates/NAME into buf. */
int cf_template_path(struct cf_store *s, const char *name, char *buf, size_t len);

#endif
