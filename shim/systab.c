/* The system-call table: one line per x86-64 Linux system call, in the
 * spirit of gVisor's linux64.go. Each line says the number, the name, the
 * handler (NULL: absent, ENOSYS), how --strace prints each argument, the
 * call's flags (it may block, it is a readiness point, it reads fd 0, its
 * host I/O may be interrupted by the run's timers, it may not return), its
 * support status and a one-line note. Everything else derives from it:
 * dispatch (sys_dispatch), --strace (trace_call), the CF_READY_STDIN pause
 * point (sandbox.c reads_fd0), the restart of interrupted host I/O, and
 * `cowfork syscalls` with docs/syscalls.md (cf_syscall_info).
 *
 * The handlers live with their subsystem: mm.c (memory), fs.c (files,
 * pipes), net.c (sockets), event.c (poll, select, epoll, eventfd,
 * signalfd), signal.c, timer.c (clocks, sleeps, interval and POSIX timers,
 * timerfd), task.c (process, identity, execve, futex, limits). Each returns
 * the Linux result (>= 0 or -errno) or SYS_NORETURN when it has set the
 * registers itself (rt_sigreturn, execve, a signal delivered to a handler).
 * A status other than FULL has a note that says what is missing; an absent
 * call fails with ENOSYS, never a silent success (docs/syscalls.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "shim/shim.h"

#define FULL CF_SYSCALL_FULL
#define PARTIAL CF_SYSCALL_PARTIAL
#define ABSENT CF_SYSCALL_ABSENT
#define SF_BLOCK CF_SYSCALL_BLOCKS
#define SF_READY CF_SYSCALL_READY
#define SF_FD0 CF_SYSCALL_FD0
#define SF_HOSTIO CF_SYSCALL_HOSTIO
#define SF_NORET CF_SYSCALL_NORETURN

struct sys_ent {
  sys_fn *fn;
  const char *name;
  const char *args;
  uint8_t flags;
  uint8_t status;
  const char *note;
};

#define NSYS 463
/* number, name, handler, arguments (cf_syscall_info.args), flags, status, note */
#define E(nr_, name_, fn_, args_, flags_, st_, note_) [nr_] = {fn_, #name_, args_, flags_, st_, note_}
static const struct sys_ent table[NSYS] = {
    E(0, read, sys_read, "dBu", SF_BLOCK | SF_FD0 | SF_HOSTIO, FULL, "files, pipes, the overlay, /proc, /dev"),
    E(1, write, sys_write, "dbu", SF_BLOCK | SF_HOSTIO, FULL, "a lower (root) file opened for writing was copied up at open (shim/ovl.c); the host's files are never written"),
    E(2, open, sys_open, "pxo", SF_BLOCK, FULL, "every path writable: the root is the lower layer of an overlay whose upper layer is in guest memory (shim/ovl.c; copy-up on a write open, whiteouts, opaque directories); own /proc and /dev; a FIFO's open waits for the other side as Linux's; O_TMPFILE: an upper file with no name in any directory (linkat names it unless O_EXCL; a template keeps it unnamed and no longer linkable)"),
    E(3, close, sys_close, "d", 0, FULL, ""),
    E(4, stat, sys_stat, "pP", 0, FULL, ""),
    E(5, fstat, sys_fstat, "dP", 0, FULL, ""),
    E(6, lstat, sys_stat, "pP", 0, FULL, ""),
    E(7, poll, sys_poll, "Pui", SF_BLOCK | SF_READY, FULL, "every fd kind (event.c file_poll); regular files, /proc and /dev files are always ready, as on Linux"),
    E(8, lseek, sys_lseek, "dix", 0, FULL, "SEEK_DATA/SEEK_HOLE: an upper file's page index (a 0 is a hole), a lower file's host answer"),
    E(9, mmap, sys_mmap, "Puxxdx", 0, PARTIAL, "MAP_SHARED (anonymous, /dev/zero, files of the upper layer (shim/ovl.c) and of /dev/shm) is a host memfd shared with the process's children and the file's read/write; a sandbox holding one cannot be saved; MAP_SHARED writable of a lower file (open read-only: a write open copies it up) is EACCES"),
    E(10, mprotect, sys_mprotect, "Pux", 0, PARTIAL, "PROT_EXEC is recorded, not enforced"),
    E(11, munmap, sys_munmap, "Pu", 0, FULL, ""),
    E(12, brk, sys_brk, "P", 0, FULL, ""),
    E(13, rt_sigaction, sys_rt_sigaction, "sPPu", 0, FULL, ""),
    E(14, rt_sigprocmask, sys_rt_sigprocmask, "iPPu", 0, FULL, ""),
    E(15, rt_sigreturn, sys_rt_sigreturn, "", SF_NORET, FULL, ""),
    E(16, ioctl, sys_ioctl, "dxP", 0, PARTIAL, "terminal queries (TCGETS, TIOCGWINSZ) on a terminal; FIONBIO, FIOCLEX, FIONCLEX on any fd; SIOCINQ (FIONREAD), SIOCOUTQ, SIOCATMARK on a socket"),
    E(17, pread64, sys_pread64, "dBui", SF_BLOCK | SF_FD0 | SF_HOSTIO, FULL, ""),
    E(18, pwrite64, sys_pwrite64, "dbui", SF_BLOCK | SF_HOSTIO, FULL, ""),
    E(19, readv, sys_readv, "dPu", SF_BLOCK | SF_FD0 | SF_HOSTIO, FULL, ""),
    E(20, writev, sys_writev, "dPu", SF_BLOCK | SF_HOSTIO, FULL, ""),
    E(21, access, sys_access, "po", 0, FULL, ""),
    E(22, pipe, sys_pipe, "P", 0, PARTIAL, "host pipes; a sandbox with an open pipe cannot be saved"),
    E(23, select, sys_select, "iPPPP", SF_BLOCK | SF_READY, FULL, "every fd kind, as poll"),
    E(24, sched_yield, sys_sched_yield, "", 0, FULL, ""),
    E(25, mremap, sys_mremap, "PuuxP", 0, PARTIAL, "shrink, grow in place, MREMAP_MAYMOVE, MREMAP_FIXED; a shared mapping stays shared (its object grows), a private one moves as a copy; a private mapping of a root file cannot grow (ENOMEM); MREMAP_DONTUNMAP EINVAL"),
    E(26, msync, sys_msync, "Pux", 0, FULL, "checks only: a shared mapping is its file's memory"),
    E(27, mincore, NULL, "PuP", 0, ABSENT, "ENOSYS"),
    E(28, madvise, sys_madvise, "Pui", 0, PARTIAL, "MADV_DONTNEED zeroes private memory, leaves shared memory (as Linux); other advice accepted as a hint"),
    E(29, shmget, sys_shmget, "iux", 0, PARTIAL, "System V segments of the sandbox's own IPC namespace (shim/ipc.c): a host memfd shared by every attachment; IPC_PRIVATE and keys, IPC_CREAT/IPC_EXCL, Linux's ids and checks; at most the guest memory's size in all (ENOSPC, Linux's shmall); SHM_HUGETLB ENOMEM (no huge pages); a sandbox holding one cannot be saved"),
    E(30, shmat, sys_shmat, "ixx", 0, FULL, "MAP_SHARED of the segment (kept across fork, which sets shm_atime and shm_lpid as Linux; gone at exec and exit); SHM_RDONLY (mprotect cannot make it writable: EACCES), SHM_RND, SHM_REMAP, SHM_EXEC; an mremap growing an attachment grows the segment's memory (Linux: the pages past the segment fault)"),
    E(31, shmctl, sys_shmctl, "iiP", 0, FULL, "IPC_STAT, IPC_SET, IPC_RMID (destroyed when the last attachment goes), IPC_INFO, SHM_INFO, SHM_STAT(_ANY), SHM_LOCK/UNLOCK (a mode bit)"),
    E(32, dup, sys_dup, "d", 0, FULL, ""),
    E(33, dup2, sys_dup2, "dd", 0, FULL, ""),
    E(34, pause, sys_pause, "", SF_BLOCK, FULL, "sleeps until a signal"),
    E(35, nanosleep, sys_nanosleep, "PP", SF_BLOCK, FULL, ""),
    E(36, getitimer, sys_getitimer, "iP", 0, FULL, ""),
    E(37, alarm, sys_alarm, "u", 0, FULL, ""),
    E(38, setitimer, sys_setitimer, "iPP", 0, FULL, ""),
    E(39, getpid, sys_getpid, "", 0, FULL, ""),
    E(40, sendfile, sys_sendfile, "ddPu", 0, FULL, "any readable fd to any writable one (EBADF otherwise, EINVAL for an O_APPEND one, as Linux)"),
    E(41, socket, sys_socket, "iii", 0, PARTIAL, "AF_UNIX, AF_INET, AF_INET6 stream/dgram (TCP, UDP, UDP-Lite; + AF_UNIX seqpacket) served in the shim on the sandbox's own loopback (net.c); other families EAFNOSUPPORT; a sandbox with one open cannot be saved"),
    E(42, connect, sys_connect, "dPu", SF_BLOCK, PARTIAL, "to a listener of the sandbox (127.0.0.0/8, ::1, AF_UNIX abstract and path names): a host socketpair; no listener ECONNREFUSED; other addresses ENETUNREACH unless --net allows them (then a host socket of its own); a full accept queue (backlog + 1) makes a blocking connect wait for an accept (SO_SNDTIMEO: EAGAIN), a non-blocking one EAGAIN (TCP: Linux says EINPROGRESS)"),
    E(43, accept, sys_accept, "dPP", SF_BLOCK, FULL, "from the listener's queue (any process of the sandbox); SO_RCVTIMEO honoured"),
    E(44, sendto, sys_sendto, "dbuxPu", SF_BLOCK, PARTIAL, "MSG_OOB EOPNOTSUPP; UDP to a port nobody bound is dropped (a connected socket's next call ECONNREFUSED); TCP to a peer that closed: the first send succeeds, then EPIPE (SO_ERROR EPIPE once)"),
    E(45, recvfrom, sys_sendto, "dBuxPP", SF_BLOCK, PARTIAL, "the source address of a datagram; MSG_OOB EOPNOTSUPP, MSG_ERRQUEUE EAGAIN (no errors on the loopback)"),
    E(46, sendmsg, sys_sendmsg, "dPx", SF_BLOCK, PARTIAL, "SCM_RIGHTS between the sandbox's processes (files, not host fds); SCM_CREDENTIALS checked, not delivered (no SO_PASSCRED); other control messages EINVAL"),
    E(47, recvmsg, sys_sendmsg, "dPx", SF_BLOCK, PARTIAL, "SCM_RIGHTS installs the files (MSG_CTRUNC past the buffer); as recvfrom"),
    E(48, shutdown, sys_shutdown, "di", 0, PARTIAL, "the host socket's (pairs, unconnected and datagram sockets: reads after SHUT_RD end, poll as Linux; INET not connected ENOTCONN); an INET listener as Linux: SHUT_WR nothing, SHUT_RD/SHUT_RDWR make it a closed socket (queued connections dropped, accept EINVAL, POLLOUT|POLLHUP); an AF_UNIX one stays a listener (accept EINVAL when empty, connect ECONNREFUSED)"),
    E(49, bind, sys_connect, "dPu", 0, PARTIAL, "names of the sandbox's own: 127.0.0.0/8, ::1, 0.0.0.0, :: (others EADDRNOTAVAIL), port 0 ephemeral, EADDRINUSE, SO_REUSEADDR/PORT; AF_UNIX abstract names, autobind, path names as socket files in /tmp (EROFS elsewhere)"),
    E(50, listen, sys_connect, "di", 0, FULL, "an accept queue in the shim, readable through a host pipe"),
    E(51, getsockname, sys_getsockname, "dPP", 0, FULL, "the guest's INET/INET6/UNIX address (never the host's)"),
    E(52, getpeername, sys_getsockname, "dPP", 0, FULL, ""),
    E(53, socketpair, sys_socket, "iiiP", 0, PARTIAL, "AF_UNIX (stream, dgram, seqpacket) as host socketpairs; AF_INET/AF_INET6 EOPNOTSUPP as Linux, other families EAFNOSUPPORT; a sandbox with one open cannot be saved"),
    E(54, setsockopt, sys_sockopt, "diiPu", 0, PARTIAL, "stored and given back: SO_REUSEADDR/PORT, SO_KEEPALIVE, SO_LINGER, SO_SNDBUF/RCVBUF, TCP_NODELAY, TCP_KEEP*, IP_TOS/TTL, IPV6_V6ONLY...; SO_RCVTIMEO/SNDTIMEO bound the blocking calls; others ENOPROTOOPT"),
    E(55, getsockopt, sys_sockopt, "diiPP", 0, PARTIAL, "the stored options, SO_ERROR, SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, SO_PEERCRED; others ENOPROTOOPT"),
    E(56, clone, sys_clone, "xPPPx", 0, PARTIAL, "threads (CLONE_VM|FS|FILES|SIGHAND|THREAD, SETTLS, PARENT_SETTID, CHILD_SETTID, CHILD_CLEARTID), a vCPU each, at most 121 at once (31 in the daemon; EAGAIN past it); a thread with its own fd table or cwd EINVAL; processes as fork (a VM each, memory copy-on-write; --pids, EAGAIN past it); CLONE_VM|CLONE_VFORK as vfork (posix_spawn: the child in the parent's memory); CLONE_VM without CLONE_VFORK or THREAD (a process sharing memory for life), CLONE_FILES/FS/SIGHAND/PARENT for a process EINVAL; CLONE_PIDFD for a process (the pidfd at parent_tid), for a thread EINVAL (as before Linux 6.9)"),
    E(57, fork, sys_fork, "", 0, FULL, "a new VM whose memory is the parent's copy-on-write (file and template pages shared, private pages copied); EAGAIN past --pids (zombies count)"),
    E(58, vfork, sys_fork, "", 0, PARTIAL, "the child runs in the parent's memory (its stores seen: posix_spawn's exec error) on a vCPU of the parent's VM lent to it, until its execve (a VM of its own then) or exit; the parent's calling thread waits; fd table and handlers copied as fork; no threads in the child before its exec (EAGAIN); with no vCPU to lend (121 a VM), a fork whose parent waits"),
    E(59, execve, sys_execve, "pPP", SF_NORET, FULL, "static and dynamic ELF, #! scripts; a vfork child gets a VM of its own (the parent's memory untouched); in a process a vfork child still runs in, it waits for that child's exec or exit"),
    E(60, exit, sys_exit, "i", SF_NORET, FULL, ""),
    E(61, wait4, sys_wait4, "iPxP", SF_BLOCK, PARTIAL, "exits, signal deaths, stops (WUNTRACED) and continues (WCONTINUED); rusage: the reaped child's CPU time and its children's, as ru_utime"),
    E(62, kill, sys_kill, "is", 0, PARTIAL, "a process, a group, -1 (every other process of the sandbox); SIGSTOP/SIGCONT stop and continue; pid 1 (the sandbox's init) drops it: 0"),
    E(63, uname, sys_uname, "P", 0, FULL, "the host's kernel, the sandbox's hostname"),
    E(64, semget, sys_semget, "iix", 0, PARTIAL, "System V semaphore sets of the sandbox's own IPC namespace (shim/ipc.c), Linux's limits and checks; a sandbox holding one cannot be saved"),
    E(65, semop, sys_semop, "iPu", SF_BLOCK, FULL, "all or nothing; waits across processes (EINTR on a signal, never restarted; EIDRM when removed); SEM_UNDO applied at the process's end"),
    E(66, semctl, sys_semctl, "iiix", 0, FULL, "IPC_STAT, IPC_SET, IPC_RMID, IPC_INFO, SEM_INFO, SEM_STAT(_ANY), GETVAL, GETALL, GETPID, GETNCNT, GETZCNT, SETVAL, SETALL"),
    E(67, shmdt, sys_shmdt, "x", 0, FULL, ""),
    E(68, msgget, sys_msgget, "ix", 0, PARTIAL, "System V message queues of the sandbox's own IPC namespace (shim/ipc.c), Linux's limits (MSGMAX 8192, MSGMNB 16384, MSGMNI 32000) and checks; the bytes queued in the sandbox at most its guest memory (msgsnd ENOMEM past it); a sandbox holding one cannot be saved"),
    E(69, msgsnd, sys_msgsnd, "iPux", SF_BLOCK, FULL, "waits while the queue is full (EINTR on a signal, never restarted; EIDRM when removed); a waiting receiver is handed the message directly, as Linux"),
    E(70, msgrcv, sys_msgrcv, "iPuix", SF_BLOCK, FULL, "msgtyp 0, > 0, < 0, MSG_EXCEPT, MSG_NOERROR, MSG_COPY; waits across processes (EINTR, EIDRM)"),
    E(71, msgctl, sys_msgctl, "iiP", 0, FULL, "IPC_STAT, IPC_SET (msg_qbytes above MSGMNB for root only), IPC_RMID, IPC_INFO, MSG_INFO, MSG_STAT(_ANY)"),
    E(72, fcntl, sys_fcntl, "dix", 0, PARTIAL, "record locks in one table per sandbox, between its processes as Linux (EDEADLK for an F_SETLKW that would close a cycle of waiting processes); F_GETPIPE_SZ/F_SETPIPE_SZ the host pipe's; F_NOTIFY: dnotify, SIGIO to the caller (inotify.c); F_SETOWN/F_SETSIG EINVAL"),
    E(73, flock, sys_flock, "dx", 0, FULL, "locks in one table per sandbox, between its processes"),
    E(74, fsync, sys_fsync, "d", 0, FULL, "nothing to write back"),
    E(75, fdatasync, sys_fsync, "d", 0, FULL, ""),
    E(76, truncate, sys_truncate, "pi", 0, PARTIAL, "anywhere but /proc and /dev (a lower file is copied up; through /proc/self/fd/N too: that fd's file)"),
    E(77, ftruncate, sys_ftruncate, "di", 0, PARTIAL, "on a file open for writing (upper: copied up at open); EINVAL otherwise, as Linux"),
    E(78, getdents, NULL, "dPu", 0, ABSENT, "ENOSYS (libc uses getdents64)"),
    E(79, getcwd, sys_getcwd, "Bu", 0, FULL, ""),
    E(80, chdir, sys_chdir, "p", 0, FULL, ""),
    E(81, fchdir, sys_fchdir, "d", 0, FULL, ""),
    E(82, rename, sys_rename, "pp", 0, PARTIAL, "in the overlay: a file (a lower one copied up first) or a directory made in the sandbox; a lower or merged directory is EXDEV as overlayfs without redirect_dir (mv and shutil.move then copy); EXDEV to or from /dev/shm"),
    E(83, mkdir, sys_mkdir, "po", 0, PARTIAL, "anywhere but /proc and /dev (EROFS); the parents of a lower directory are copied up; the new directory is opaque"),
    E(84, rmdir, sys_rmdir, "p", 0, PARTIAL, "a merged directory must be empty in the merged view (ENOTEMPTY); a lower name leaves a whiteout"),
    E(85, creat, sys_creat, "po", SF_BLOCK, FULL, ""),
    E(86, link, sys_link, "pp", 0, PARTIAL, "within the overlay (a lower file is copied up first) or within /dev/shm (EXDEV between them); a sandbox with one cannot be saved"),
    E(87, unlink, sys_unlink, "p", 0, PARTIAL, "a lower name leaves a whiteout (the host file stays); /proc and /dev EROFS"),
    E(88, symlink, sys_symlink, "pp", 0, FULL, "a symlink node in the upper layer (or /dev/shm), followed in the merged view"),
    E(89, readlink, sys_readlink, "pBu", 0, FULL, ""),
    E(90, chmod, sys_chmod, "po", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(91, fchmod, sys_chmod, "do", 0, PARTIAL, "the fd's file; a lower file opened by path is copied up (the fd still reads the lower, as overlayfs); EROFS for stdio, pipes, /dev"),
    E(92, chown, sys_chmod, "pii", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(93, fchown, sys_chmod, "dii", 0, PARTIAL, "the fd's file; a lower file opened by path is copied up (the fd still reads the lower, as overlayfs); EROFS for stdio, pipes, /dev"),
    E(94, lchown, sys_chmod, "pii", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up once the call is allowed); EROFS there"),
    E(95, umask, sys_umask, "o", 0, FULL, ""),
    E(96, gettimeofday, sys_gettimeofday, "PP", 0, FULL, ""),
    E(97, getrlimit, sys_getrlimit, "iP", 0, FULL, "per sandbox; defaults: stack 8M, NOFILE 1024/65536 as Linux (the daemon: its --max-files for both), AS/DATA the memory"),
    E(98, getrusage, sys_getrusage, "iP", 0, PARTIAL, "CPU time (SELF, THREAD, CHILDREN: the children waited for) all as ru_utime; the other fields zero"),
    E(99, sysinfo, sys_sysinfo, "P", 0, PARTIAL, "the host's figures, one process"),
    E(100, times, sys_times, "P", 0, PARTIAL, "CPU time all as user time (tms_utime, tms_cutime); the return is the tick count"),
    E(101, ptrace, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(102, getuid, sys_getuid, "", 0, FULL, ""),
    E(103, syslog, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(104, getgid, sys_getgid, "", 0, FULL, ""),
    E(105, setuid, sys_setuid, "i", 0, PARTIAL, "only to the current uid"),
    E(106, setgid, sys_setuid, "i", 0, PARTIAL, "only to the current uid"),
    E(107, geteuid, sys_getuid, "", 0, FULL, ""),
    E(108, getegid, sys_getgid, "", 0, FULL, ""),
    E(109, setpgid, sys_setpgid, "ii", 0, FULL, ""),
    E(110, getppid, sys_getppid, "", 0, FULL, ""),
    E(111, getpgrp, sys_getpgrp, "", 0, FULL, ""),
    E(112, setsid, sys_getpgrp, "", 0, FULL, ""),
    E(113, setreuid, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(114, setregid, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(115, getgroups, sys_getgroups, "iP", 0, FULL, "the process's supplementary groups (the host's at the start)"),
    E(116, setgroups, sys_setgroups, "iP", 0, FULL, "root only (EPERM), at most NGROUPS_MAX (65536)"),
    E(117, setresuid, sys_setresuid, "iii", 0, PARTIAL, "each id -1 or the current one (as setuid); EPERM otherwise"),
    E(118, getresuid, sys_getresuid, "PPP", 0, FULL, ""),
    E(119, setresgid, sys_setresuid, "iii", 0, PARTIAL, "each id -1 or the current one (as setuid); EPERM otherwise"),
    E(120, getresgid, sys_getresuid, "PPP", 0, FULL, ""),
    E(121, getpgid, sys_getpgrp, "i", 0, FULL, ""),
    E(122, setfsuid, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(123, setfsgid, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(124, getsid, sys_getpgrp, "i", 0, FULL, ""),
    E(125, capget, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(126, capset, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(127, rt_sigpending, sys_rt_sigpending, "Pu", 0, FULL, ""),
    E(128, rt_sigtimedwait, sys_rt_sigtimedwait, "PPPu", SF_BLOCK, FULL, "takes a pending signal of the set with its siginfo; EAGAIN at the timeout, EINTR for another signal"),
    E(129, rt_sigqueueinfo, sys_rt_sigqueueinfo, "isP", 0, FULL, "to the sandbox itself (ESRCH otherwise); real-time signals queue, EAGAIN past RLIMIT_SIGPENDING (256)"),
    E(130, rt_sigsuspend, sys_rt_sigsuspend, "Pu", SF_BLOCK, FULL, "sleeps until a signal"),
    E(131, sigaltstack, sys_sigaltstack, "PP", 0, FULL, "SA_ONSTACK frames on it, SS_AUTODISARM; kept in templates"),
    E(132, utime, sys_chmod, "pP", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(133, mknod, sys_mknod, "pox", 0, PARTIAL, "S_IFIFO (a FIFO, between all the sandbox's processes), S_IFREG and S_IFSOCK (a socket file, no socket bound to it) anywhere but /proc and /dev (EROFS); S_IFCHR/S_IFBLK EPERM (a sandbox has no CAP_MKNOD); a sandbox with an open FIFO cannot be saved (its node is)"),
    E(134, uselib, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(135, personality, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(136, ustat, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(137, statfs, sys_statfs, "pP", 0, FULL, "the overlay's (OVERLAYFS_SUPER_MAGIC; sizes: the upper layer's pages, those free), /proc's; /dev, /dev/shm and /tmp: tmpfs's"),
    E(138, fstatfs, sys_statfs, "dP", 0, FULL, "as statfs, for the fd's path"),
    E(139, sysfs, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(140, getpriority, NULL, "ii", 0, ABSENT, "ENOSYS"),
    E(141, setpriority, NULL, "iii", 0, ABSENT, "ENOSYS"),
    E(142, sched_setparam, sys_sched, "iP", 0, PARTIAL, "SCHED_OTHER priority 0 only (no change); EPERM otherwise"),
    E(143, sched_getparam, sys_sched, "iP", 0, PARTIAL, "priority 0 (every thread is SCHED_OTHER)"),
    E(144, sched_setscheduler, sys_sched, "iiP", 0, PARTIAL, "SCHED_OTHER, SCHED_BATCH, SCHED_IDLE kept per thread and reported (no effect on how threads share the vCPUs); real-time policies and SCHED_DEADLINE EPERM"),
    E(145, sched_getscheduler, sys_sched, "i", 0, PARTIAL, "SCHED_OTHER for every thread of the sandbox"),
    E(146, sched_get_priority_max, sys_sched, "i", 0, FULL, "Linux's ranges"),
    E(147, sched_get_priority_min, sys_sched, "i", 0, FULL, "Linux's ranges"),
    E(148, sched_rr_get_interval, sys_sched, "iP", 0, PARTIAL, "4 ms (every thread is SCHED_OTHER)"),
    E(149, mlock, sys_mlock, "Pu", 0, PARTIAL, "nothing is ever swapped out by the shim: accepted"),
    E(150, munlock, sys_mlock, "Pu", 0, PARTIAL, "accepted, as mlock"),
    E(151, mlockall, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(152, munlockall, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(153, vhangup, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(154, modify_ldt, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(155, pivot_root, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(156, _sysctl, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(157, prctl, sys_prctl, "ixxxx", 0, PARTIAL, "PR_SET_NAME and PR_GET_NAME accepted; others EINVAL"),
    E(158, arch_prctl, sys_arch_prctl, "xP", 0, PARTIAL, "ARCH_SET_FS and ARCH_GET_FS; others EINVAL"),
    E(159, adjtimex, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(160, setrlimit, sys_setrlimit, "iP", 0, PARTIAL, "kept per sandbox; NOFILE enforced (hard at most nr_open 65536, or the daemon's --max-files: EPERM above), others only reported"),
    E(161, chroot, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(162, sync, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(163, acct, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(164, settimeofday, sys_settimeofday, "PP", 0, PARTIAL, "EPERM (no CAP_SYS_TIME: the host's clock is not the sandbox's to set), after Linux's EFAULT and EINVAL checks"),
    E(165, mount, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(166, umount2, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(167, swapon, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(168, swapoff, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(169, reboot, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(170, sethostname, sys_sethostname, "bu", 0, FULL, ""),
    E(171, setdomainname, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(172, iopl, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(173, ioperm, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(174, create_module, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(175, init_module, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(176, delete_module, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(177, get_kernel_syms, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(178, query_module, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(179, quotactl, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(180, nfsservctl, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(181, getpmsg, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(182, putpmsg, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(183, afs_syscall, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(184, tuxcall, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(185, security, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(186, gettid, sys_gettid, "", 0, FULL, ""),
    E(187, readahead, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(188, setxattr, sys_setxattr, "ppPux", 0, PARTIAL, "user.*, trusted.*, security.* as tmpfs (a root file copied up); system.* (POSIX ACLs) EOPNOTSUPP; /dev EOPNOTSUPP"),
    E(189, lsetxattr, sys_setxattr, "ppPux", 0, FULL, ""),
    E(190, fsetxattr, sys_setxattr, "dpPux", 0, FULL, ""),
    E(191, getxattr, sys_getxattr, "ppPu", 0, FULL, "the upper file's, a root file's from the host"),
    E(192, lgetxattr, sys_getxattr, "ppPu", 0, FULL, ""),
    E(193, fgetxattr, sys_fgetxattr, "dpPu", 0, FULL, ""),
    E(194, listxattr, sys_getxattr, "pPu", 0, FULL, ""),
    E(195, llistxattr, sys_getxattr, "pPu", 0, FULL, ""),
    E(196, flistxattr, sys_fgetxattr, "dPu", 0, FULL, ""),
    E(197, removexattr, sys_setxattr, "pp", 0, FULL, ""),
    E(198, lremovexattr, sys_setxattr, "pp", 0, FULL, ""),
    E(199, fremovexattr, sys_setxattr, "dp", 0, FULL, ""),
    E(200, tkill, sys_tkill, "is", 0, FULL, ""),
    E(201, time, sys_time, "P", 0, FULL, ""),
    E(202, futex, sys_futex, "PiuPPu", SF_BLOCK, PARTIAL, "WAIT, WAKE, *_BITSET, REQUEUE, CMP_REQUEUE, WAKE_OP; a futex in MAP_SHARED memory without FUTEX_PRIVATE_FLAG is keyed by the memory, waking other processes; a vfork child's others by its parent's address space (it runs in it); PI ops ENOSYS"),
    E(203, sched_setaffinity, sys_sched_setaffinity, "iuP", 0, PARTIAL, "kept per thread and reported; threads still take the sandbox's vCPUs in turn"),
    E(204, sched_getaffinity, sys_sched_getaffinity, "iuP", 0, FULL, "the thread's mask within the sandbox's CPUs (--cpus, default 2)"),
    E(205, set_thread_area, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(206, io_setup, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(207, io_destroy, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(208, io_getevents, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(209, io_submit, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(210, io_cancel, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(211, get_thread_area, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(212, lookup_dcookie, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(213, epoll_create, sys_epoll_create, "i", 0, FULL, "saved in snapshots with its entries"),
    E(214, epoll_ctl_old, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(215, epoll_wait_old, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(216, remap_file_pages, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(217, getdents64, sys_getdents64, "dPu", 0, FULL, ""),
    E(218, set_tid_address, sys_set_tid_address, "P", 0, FULL, ""),
    E(219, restart_syscall, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(220, semtimedop, sys_semop, "iPuP", SF_BLOCK, FULL, "as semop; EAGAIN at the timeout"),
    E(221, fadvise64, sys_fsync, "diui", 0, FULL, "a hint: accepted"),
    E(222, timer_create, sys_timer_create, "iPP", 0, PARTIAL, "SIGEV_SIGNAL/NONE/THREAD_ID (own tid); REALTIME, MONOTONIC, BOOTTIME, TAI, the CPU clocks (guest CPU time); an absolute REALTIME expiry does not follow a host clock step; 125 timers at most (EAGAIN)"),
    E(223, timer_settime, sys_timer_settime, "ixPP", 0, FULL, "TIMER_ABSTIME; si_overrun as Linux"),
    E(224, timer_gettime, sys_timer_gettime, "iP", 0, FULL, ""),
    E(225, timer_getoverrun, sys_timer_getoverrun, "i", 0, FULL, ""),
    E(226, timer_delete, sys_timer_delete, "i", 0, FULL, "POSIX timers are kept in templates, deleted by execve"),
    E(227, clock_settime, sys_clock_settime, "iP", 0, PARTIAL, "CLOCK_REALTIME EPERM (no CAP_SYS_TIME: the host's clock is not the sandbox's to set), other clocks EINVAL, as Linux"),
    E(228, clock_gettime, sys_clock_gettime, "iP", 0, FULL, ""),
    E(229, clock_getres, sys_clock_getres, "iP", 0, FULL, ""),
    E(230, clock_nanosleep, sys_clock_nanosleep, "ixPP", SF_BLOCK, PARTIAL, "TIMER_ABSTIME; no sleep on the process CPU clock (ENOTSUP; Linux sleeps)"),
    E(231, exit_group, sys_exit, "i", SF_NORET, FULL, ""),
    E(232, epoll_wait, sys_epoll_wait, "dPii", SF_BLOCK | SF_READY, PARTIAL, "EPOLLET: an edge is a ready bit not set at the last report or an eventfd wake-up; more data into an already readable host pipe is none"),
    E(233, epoll_ctl, sys_epoll_ctl, "didP", 0, FULL, "every fd kind; EPERM, EEXIST, ENOENT, ELOOP as Linux; EPOLLWAKEUP dropped (no CAP_BLOCK_SUSPEND)"),
    E(234, tgkill, sys_tgkill, "iis", 0, FULL, ""),
    E(235, utimes, sys_chmod, "pP", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(236, vserver, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(237, mbind, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(238, set_mempolicy, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(239, get_mempolicy, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(240, mq_open, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(241, mq_unlink, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(242, mq_timedsend, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(243, mq_timedreceive, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(244, mq_notify, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(245, mq_getsetattr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(246, kexec_load, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(247, waitid, sys_wait4, "iiPxP", SF_BLOCK, PARTIAL, "P_ALL, P_PID, P_PGID, WEXITED, WSTOPPED, WCONTINUED, WNOHANG, WNOWAIT; P_PIDFD (PIDFD_NONBLOCK: EAGAIN when not ready); rusage as wait4's (zero for a stop or continue)"),
    E(248, add_key, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(249, request_key, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(250, keyctl, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(251, ioprio_set, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(252, ioprio_get, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(253, inotify_init, sys_inotify_init, "", 0, PARTIAL, "as inotify_init1(0)"),
    E(254, inotify_add_watch, sys_inotify_add_watch, "dpx", 0, PARTIAL, "events of the sandbox's own changes and opens: IN_CREATE, IN_DELETE, IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM/TO, IN_MOVE_SELF, IN_DELETE_SELF, IN_OPEN, IN_ACCESS, IN_CLOSE_WRITE/NOWRITE, IN_ONESHOT, identical unread events merged; an open file renamed or unlinked since is known by its old path; a sandbox with an instance cannot be saved"),
    E(255, inotify_rm_watch, sys_inotify_rm_watch, "di", 0, PARTIAL, "IN_IGNORED queued"),
    E(256, migrate_pages, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(257, openat, sys_openat, "dpxo", SF_BLOCK, FULL, "as open; RESOLVE_IN_ROOT under the root"),
    E(258, mkdirat, sys_mkdirat, "dpo", 0, PARTIAL, "as mkdir"),
    E(259, mknodat, sys_mknod, "dpox", 0, PARTIAL, "as mknod"),
    E(260, fchownat, sys_chmod, "dpiix", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(261, futimesat, sys_chmod, "dpP", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(262, newfstatat, sys_newfstatat, "dpPx", 0, FULL, ""),
    E(263, unlinkat, sys_unlinkat, "dpx", 0, PARTIAL, "as unlink and rmdir"),
    E(264, renameat, sys_renameat, "dpdp", 0, PARTIAL, "as rename"),
    E(265, linkat, sys_linkat, "dpdpx", 0, PARTIAL, "as link; AT_SYMLINK_FOLLOW through /proc/self/fd/N links the open file (an O_TMPFILE one takes the name); AT_EMPTY_PATH the same for root (CAP_DAC_READ_SEARCH), else ENOENT"),
    E(266, symlinkat, sys_symlink, "pdp", 0, FULL, "as symlink"),
    E(267, readlinkat, sys_readlinkat, "dpBu", 0, FULL, ""),
    E(268, fchmodat, sys_chmod, "dpo", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(269, faccessat, sys_faccessat, "dpo", 0, FULL, ""),
    E(270, pselect6, sys_select, "iPPPPP", SF_BLOCK | SF_READY, FULL, "the signal mask is applied during the wait"),
    E(271, ppoll, sys_ppoll, "PuPPu", SF_BLOCK | SF_READY, FULL, "the signal mask is applied during the wait"),
    E(272, unshare, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(273, set_robust_list, sys_set_robust_list, "Pu", 0, PARTIAL, "a thread's exit marks the robust mutexes it holds FUTEX_OWNER_DIED and wakes a waiter, as Linux; the head is not in a state file (a template's main thread's list is forgotten)"),
    E(274, get_robust_list, NULL, "iPP", 0, ABSENT, "ENOSYS"),
    E(275, splice, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(276, tee, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(277, sync_file_range, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(278, vmsplice, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(279, move_pages, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(280, utimensat, sys_chmod, "dpPx", 0, PARTIAL, "anywhere but /proc and /dev (a lower entry is copied up with its data once the call is allowed; through /proc/self/fd/N too: that fd's file); EROFS there"),
    E(281, epoll_pwait, sys_epoll_wait, "dPiiPu", SF_BLOCK | SF_READY, PARTIAL, "as epoll_wait; the signal mask is applied during the wait"),
    E(282, signalfd, sys_signalfd, "dPu", 0, PARTIAL, "siginfo: signo, code, pid, uid; saved in snapshots"),
    E(283, timerfd_create, sys_timerfd_create, "ix", 0, PARTIAL, "a sandbox with an open timerfd cannot be saved as a template; its timer is the file's own (shared across fork)"),
    E(284, eventfd, sys_eventfd, "u", 0, FULL, "saved in snapshots"),
    E(285, fallocate, sys_fallocate, "dixx", 0, PARTIAL, "upper files as Linux's tmpfs: modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE (others EOPNOTSUPP); an allocated page is a hole for SEEK_DATA until written, as tmpfs; a lower file is open read-only: EBADF"),
    E(286, timerfd_settime, sys_timerfd_settime, "dxPP", 0, PARTIAL, "TFD_TIMER_CANCEL_ON_SET accepted, never cancels (the sandbox cannot set the clock)"),
    E(287, timerfd_gettime, sys_timerfd_gettime, "dP", 0, FULL, ""),
    E(288, accept4, sys_accept, "dPPx", SF_BLOCK, FULL, "as accept; SOCK_NONBLOCK, SOCK_CLOEXEC"),
    E(289, signalfd4, sys_signalfd, "dPux", 0, PARTIAL, "as signalfd"),
    E(290, eventfd2, sys_eventfd, "ux", 0, FULL, "EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC; saved in snapshots"),
    E(291, epoll_create1, sys_epoll_create, "x", 0, FULL, "saved in snapshots with its entries"),
    E(292, dup3, sys_dup2, "ddx", 0, FULL, ""),
    E(293, pipe2, sys_pipe, "Px", 0, PARTIAL, "host pipes (O_CLOEXEC, O_NONBLOCK, O_DIRECT packets; other flags EINVAL); a sandbox with an open pipe cannot be saved"),
    E(294, inotify_init1, sys_inotify_init, "x", 0, PARTIAL, "an instance is a host packet pipe: a read returns one event; a full queue (64 KiB) drops events, then IN_Q_OVERFLOW"),
    E(295, preadv, sys_preadv, "dPui", SF_BLOCK | SF_FD0 | SF_HOSTIO, FULL, ""),
    E(296, pwritev, sys_pwritev, "dPui", SF_BLOCK | SF_HOSTIO, FULL, ""),
    E(297, rt_tgsigqueueinfo, sys_rt_tgsigqueueinfo, "iisP", 0, FULL, "to the sandbox's own thread (ESRCH otherwise)"),
    E(298, perf_event_open, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(299, recvmmsg, sys_sendmsg, "dPuxP", SF_BLOCK, PARTIAL, "recvmsg per entry; the timeout is looked at after each, as Linux"),
    E(300, fanotify_init, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(301, fanotify_mark, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(302, prlimit64, sys_prlimit64, "iiPP", 0, PARTIAL, "the sandbox's own pid only; as getrlimit and setrlimit"),
    E(303, name_to_handle_at, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(304, open_by_handle_at, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(305, clock_adjtime, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(306, syncfs, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(307, sendmmsg, sys_sendmsg, "dPux", SF_BLOCK, PARTIAL, "sendmsg per entry"),
    E(308, setns, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(309, getcpu, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(310, process_vm_readv, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(311, process_vm_writev, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(312, kcmp, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(313, finit_module, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(314, sched_setattr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(315, sched_getattr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(316, renameat2, sys_renameat, "dpdpx", 0, PARTIAL, "as rename; flags: RENAME_NOREPLACE, RENAME_EXCHANGE (a lower or merged directory: EXDEV, as a rename); RENAME_WHITEOUT EINVAL"),
    E(317, seccomp, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(318, getrandom, sys_getrandom, "Bux", 0, FULL, "the host's"),
    E(319, memfd_create, NULL, "px", 0, ABSENT, "ENOSYS"),
    E(320, kexec_file_load, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(321, bpf, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(322, execveat, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(323, userfaultfd, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(324, membarrier, NULL, "ixi", 0, ABSENT, "ENOSYS"),
    E(325, mlock2, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(326, copy_file_range, NULL, "dPdPux", 0, ABSENT, "ENOSYS"),
    E(327, preadv2, sys_preadv2, "dPuiix", SF_BLOCK | SF_FD0 | SF_HOSTIO, PARTIAL, "flags are hints"),
    E(328, pwritev2, sys_pwritev, "dPuiix", SF_BLOCK | SF_HOSTIO, PARTIAL, "RWF_APPEND as O_APPEND; the other flags change nothing (every write is done at return)"),
    E(329, pkey_mprotect, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(330, pkey_alloc, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(331, pkey_free, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(332, statx, sys_statx, "dpxxP", 0, FULL, ""),
    E(333, io_pgetevents, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(334, rseq, NULL, "Puix", 0, ABSENT, "ENOSYS (glibc goes on without it)"),
    E(424, pidfd_send_signal, sys_pidfd_send_signal, "dsPx", 0, PARTIAL, "as kill (info NULL) or rt_sigqueueinfo (info given, EPERM for a si_code >= 0 to another process); ESRCH once reaped; the flags (Linux 6.9's PIDFD_SIGNAL_* scopes) EINVAL, as before 6.9"),
    E(425, io_uring_setup, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(426, io_uring_enter, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(427, io_uring_register, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(428, open_tree, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(429, move_mount, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(430, fsopen, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(431, fsconfig, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(432, fsmount, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(433, fspick, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(434, pidfd_open, sys_pidfd_open, "ix", 0, PARTIAL, "any process of the sandbox, a zombie too, its init (pid 1: never readable); O_CLOEXEC, PIDFD_NONBLOCK; readable (poll, select, epoll) once it ended, POLLHUP once reaped; a template carries it (its pid); PIDFD_THREAD (Linux 6.9) EINVAL, a thread's tid EINVAL"),
    E(435, clone3, sys_clone3, "Pu", 0, PARTIAL, "threads and processes as clone (CLONE_VM|CLONE_VFORK as vfork); CLONE_PIDFD for a process; set_tid EPERM, CLONE_INTO_CGROUP EINVAL"),
    E(436, close_range, NULL, "ddx", 0, ABSENT, "ENOSYS"),
    E(437, openat2, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(438, pidfd_getfd, sys_pidfd_getfd, "ddx", 0, FULL, "the same open file, close-on-exec; EPERM unless root or the same uid and gid; ESRCH once it ended"),
    E(439, faccessat2, sys_faccessat2, "dpox", 0, FULL, ""),
    E(440, process_madvise, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(441, epoll_pwait2, sys_epoll_wait, "dPiPPu", SF_BLOCK | SF_READY, PARTIAL, "as epoll_pwait, with a timespec timeout"),
    E(442, mount_setattr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(443, quotactl_fd, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(444, landlock_create_ruleset, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(445, landlock_add_rule, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(446, landlock_restrict_self, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(447, memfd_secret, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(448, process_mrelease, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(449, futex_waitv, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(450, set_mempolicy_home_node, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(451, cachestat, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(452, fchmodat2, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(453, map_shadow_stack, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(454, futex_wake, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(455, futex_wait, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(456, futex_requeue, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(457, statmount, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(458, listmount, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(459, lsm_get_self_attr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(460, lsm_set_self_attr, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(461, lsm_list_modules, NULL, NULL, 0, ABSENT, "ENOSYS"),
    E(462, mseal, NULL, NULL, 0, ABSENT, "ENOSYS"),
};
#undef E

const char *sys_name(long nr)
{
  return nr >= 0 && nr < NSYS ? table[nr].name : NULL;
}

unsigned sys_flags(long nr)
{
  return nr >= 0 && nr < NSYS ? table[nr].flags : 0;
}

long cf_syscall_max(void) { return NSYS - 1; }

int cf_syscall_info(long nr, struct cf_syscall_info *out)
{
  if (nr < 0 || nr >= NSYS || !table[nr].name) {
    errno = ENOENT;
    return -1;
  }
  const struct sys_ent *e = &table[nr];
  *out = (struct cf_syscall_info){nr, e->name, e->args, e->flags, (enum cf_syscall_status)e->status, e->note};
  return 0;
}

/* ---- --strace ---- */

/* n bytes at p as a C string literal, at most 32 of them. */
static void trace_bytes(FILE *t, const uint8_t *p, uint64_t n)
{
  fputc('"', t);
  for (uint64_t i = 0; i < n && i < 32; i++) {
    uint8_t c = p[i];
    if (c == '"' || c == '\\')
      fprintf(t, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", t);
    else if (c == '\t')
      fputs("\\t", t);
    else if (c >= 32 && c < 127)
      fputc(c, t);
    else
      fprintf(t, "\\x%02x", c);
  }
  fputs(n > 32 ? "\"..." : "\"", t);
}

static void trace_arg(struct sb *sb, FILE *t, char how, const uint64_t a[6], int i, long r)
{
  uint64_t v = a[i];
  switch (how) {
  case 'i':
    fprintf(t, "%d", (int)v);
    return;
  case 'u':
    fprintf(t, "%llu", (unsigned long long)v);
    return;
  case 'o':
    fprintf(t, "0%llo", (unsigned long long)v);
    return;
  case 'd':
    if ((int)v == -100)
      fputs("AT_FDCWD", t);
    else
      fprintf(t, "%d", (int)v);
    return;
  case 's': {
    const char *n = (int)v > 0 && (int)v < 65 ? sigabbrev_np((int)v) : NULL;
    if (n)
      fprintf(t, "SIG%s", n);
    else
      fprintf(t, "%d", (int)v);
    return;
  }
  case 'p': {
    char buf[256];
    if (mm_str(sb, v, buf, sizeof buf) >= 0) {
      trace_bytes(t, (const uint8_t *)buf, strlen(buf));
      return;
    }
    break;
  }
  case 'b':
  case 'B': {
    /* b: what the call reads (length: the next argument); B: what it
     * wrote (length: the result) */
    uint64_t n = how == 'b' ? (i < 5 ? a[i + 1] : 0) : r > 0 ? (uint64_t)r : 0;
    const uint8_t *p = n ? mm_ptr(sb, v, n < 33 ? n : 33, PROT_READ) : NULL;
    if (p) {
      trace_bytes(t, p, n);
      return;
    }
    break;
  }
  }
  if (how == 'P' && !v)
    fputs("NULL", t);
  else
    fprintf(t, "0x%llx", (unsigned long long)v);
}

static void trace_call(struct sb *sb, long nr, const uint64_t a[6], long r)
{
  const char *n = sys_name(nr);
  const char *args = n ? table[nr].args : NULL;
  FILE *t = sb->trace;
  if (n)
    fprintf(t, "[sandbox] %s(", n);
  else
    fprintf(t, "[sandbox] syscall_%ld(", nr);
  int na = args ? (int)strlen(args) : 6;
  for (int i = 0; i < na && i < 6; i++) {
    if (i)
      fputs(", ", t);
    trace_arg(sb, t, args ? args[i] : 'x', a, i, r);
  }
  if (r == SYS_NORETURN)
    fprintf(t, ") = ?\n");
  else if (r < 0 && r > -4096)
    fprintf(t, ") = -%ld (%s)\n", -r, strerrorname_np((int)-r) ? strerrorname_np((int)-r) : "?");
  else
    fprintf(t, ") = %ld (0x%lx)\n", r, (unsigned long)r);
}

/* ---- dispatch ---- */

long sys_dispatch(struct sb *sb, long nr, const uint64_t a[6])
{
  sb->nsys++;
  const struct sys_ent *e = (unsigned long)nr < NSYS ? &table[nr] : NULL;
  long r = e && e->fn ? e->fn(sb, a, nr) : -ENOSYS;
  if (sb->mm_parent) /* a vfork child: what it changed of the address space is its parent's (process.c) */
    proc_mm_push(sb);
  if (r == -ENOSYS)
    sb->enosys++;
  if (sb->opts->strace)
    trace_call(sb, nr, a, r == -RESTARTSYS ? -EINTR : r);
  /* A host read or write the run's own timers interrupted: Linux would
   * restart it (SA_RESTART, or no handler runs), or give EINTR. */
  if (r == -EINTR && e && (e->flags & SF_HOSTIO) && sb->running && !sb->timed_out && !sb->exited)
    r = -RESTARTSYS;
  /* Another thread paused the sandbox while this call waited: it runs
   * again when the thread goes on (thread.c task_stop), as if it had not
   * started. */
  if (r == -EINTR && sb->paused && !sb->exited)
    r = -RESTARTSYS;
  if (r != SYS_NORETURN)
    r = signal_after_syscall(sb, nr, r);
  return r;
}
