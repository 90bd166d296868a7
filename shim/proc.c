/* The sandbox's own /proc and /dev: one table of virtual files.
 *
 * Nothing under /proc or /dev is ever the host's: fs.c sends every path
 * there (and every path a host symlink leads there: host_openat2) here, and
 * a path the table does not hold is ENOENT. Each entry of `vents` is a
 * directory, a generated file (its text made by a generator function when
 * the file is opened, so a read sees one consistent snapshot, as a seq_file
 * read does), a symbolic link, or a device (null, zero, full, random,
 * urandom, tty). Patterns: "%p" matches a pid of the sandbox (1: its init), "%t" its tid,
 * "%f" an open fd number. A directory lists the entries one level below it,
 * in table order.
 *
 * Links are resolved here, lexically, as the kernel would follow them
 * (virt_path): /proc/self -> PID, /proc/thread-self -> PID/task/TID (which
 * is PID again), /dev/fd -> /proc/self/fd, /dev/std* -> /proc/self/fd/N,
 * /proc/PID/cwd -> the cwd, /proc/PID/exe -> the program, /proc/PID/fd/N
 * of a directory -> its path. /proc/PID/fd/N as the last component is a
 * "magic" link: opening it opens what the fd refers to (fs.c), stat shows
 * the file.
 *
 * What the generated files hold comes from struct sb only: the VMA list
 * (maps, status), the fd table (fd/), the argument and environment strings
 * the program was started with, read from its memory at [arg_start,
 * arg_end) and [env_start, env_end) as Linux reads them (so a program that
 * rewrites its argv shows it, as on Linux; a range it unmapped reads as
 * empty), the sandbox's memory size (meminfo), its start (uptime, stat),
 * its hostname and boot id. cpuinfo shows the host's first CPU renumbered
 * as the sandbox's one vCPU. Writes: only /proc/sys/kernel/hostname (root,
 * as sethostname); otherwise what Linux says (EACCES for a non-root opener;
 * for root the open works and a write is EINVAL in /proc/PID, EIO at the
 * top, EACCES in /proc/sys). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

/* ---- text buffers ---- */

struct vbuf {
  char *p;
  size_t n, cap;
  bool err;
};

static void vb_bytes(struct vbuf *b, const void *p, size_t n)
{
  if (b->err)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->err = true;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = 0;
}

__attribute__((format(printf, 2, 3))) static void vb_printf(struct vbuf *b, const char *fmt, ...)
{
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    vb_bytes(b, tmp, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    b->err = true;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  vb_bytes(b, big, (size_t)n);
  free(big);
}

/* ---- which process a /proc/PID path is about ----
 * /proc/PID is any process of the sandbox not yet reaped (process.c), a
 * zombie too: as Linux, its status and stat say Z, its cmdline, environ and
 * maps are empty, its fd directory lists nothing, and its cwd and exe links
 * are ENOENT (its memory and files are gone: sb->mem is NULL).
 * /proc/1 is the sandbox's init (process.c proc_init: a struct sb of no
 * memory and no files, sleeping): its status and stat (PPid 0, group and
 * session 1), comm "init", an empty cmdline, environ and maps (a kernel
 * thread's), an empty fd directory, cwd "/" and no exe (ENOENT).
 * find() sets vtarget when a path names another process than the caller's
 * (vcaller); the generators and links then read that one's state. Every
 * generator or link call follows the find of its path in the same call of
 * the shim, under the sandbox's lock, on one host thread: a thread-local
 * is enough. */
static __thread struct sb *vtarget, *vcaller;
static struct sb *T(struct sb *sb) { return vtarget ? vtarget : sb; }

/* ---- what the generators share ---- */

static uint64_t vm_bytes(const struct sb *sb)
{
  uint64_t t = 0;
  if (sb->zombie)
    return 0;
  for (int i = 0; i < sb->nvma; i++)
    t += sb->vmas[i].end - sb->vmas[i].start;
  return t;
}

static double uptime_s(const struct sb *sb)
{
  uint64_t now = mono_ns();
  return now > sb->boot_ns ? (double)(now - sb->boot_ns) / 1e9 : 0;
}

/* The program's name as Linux's comm: the file name, at most 15 bytes. */
static void comm(const struct sb *sb, char out[16])
{
  const char *s = strrchr(sb->program, '/');
  snprintf(out, 16, "%.15s", s ? s + 1 : sb->program);
}

/* Guest bytes [start, end) (bounded), or nothing where they are unmapped. */
static void guest_range(struct sb *sb, struct vbuf *b, uint64_t start, uint64_t end)
{
  if (sb->zombie || end <= start || end - start > (64u << 20))
    return;
  const void *p = mm_ptr(sb, start, end - start, PROT_READ);
  if (p)
    vb_bytes(b, p, end - start);
}

static uint64_t sig_set(const struct sb *sb, int which)
{
  uint64_t m = 0;
  for (int s = 1; s <= 64; s++) {
    uint64_t h = sb->act[s].handler;
    if ((which == 0 && h == (uint64_t)SIG_IGN) || (which == 1 && h != (uint64_t)SIG_IGN && h != (uint64_t)SIG_DFL))
      m |= 1ull << (s - 1);
  }
  return m;
}

const char *virt_boot_id(struct sb *sb)
{
  if (!sb->boot_id[0]) {
    uint8_t u[16];
    if (getrandom(u, sizeof u, 0) != sizeof u)
      memset(u, 0x42, sizeof u);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(sb->boot_id, sizeof sb->boot_id,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
             u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  }
  return sb->boot_id;
}

/* ---- generators ---- */

static void gen_status(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  char name[16];
  comm(sb, name);
  int nfd = 0;
  for (int i = 0; i < sb->nfds; i++)
    nfd += sb->fds[i] != NULL;
  uint64_t kb = vm_bytes(sb) >> 10;
  const char *cap = sb->uid == 0 ? "000001ffffffffff" : "0000000000000000";
  vb_printf(b, "Name:\t%s\nUmask:\t%04o\nState:\t%s\nTgid:\t%d\nNgid:\t0\nPid:\t%d\nPPid:\t%d\nTracerPid:\t0\n",
            name, sb->umask,
            sb->zombie    ? "Z (zombie)"
            : sb->stopped ? "T (stopped)"
            : sb == vcaller ? "R (running)"
                            : "S (sleeping)",
            sb->pid,
            sb->pid, proc_ppid(sb));
  vb_printf(b, "Uid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nFDSize:\t%d\nGroups:\t", sb->uid, sb->uid, sb->uid,
            sb->uid, sb->gid, sb->gid, sb->gid, sb->gid, sb->nfds);
  for (int i = 0; i < sb->ngroups; i++)
    vb_printf(b, i ? " %u" : "%u", sb->groups[i]);
  vb_printf(b, "\n");
  vb_printf(b, "NStgid:\t%d\nNSpid:\t%d\nNSpgid:\t%d\nNSsid:\t%d\n", sb->pid, sb->pid, proc_pgid(sb), proc_sid(sb));
  if (!sb->zombie && !proc_is_init(sb)) /* no memory: no Vm lines, as Linux */
    vb_printf(b, "VmPeak:\t%8llu kB\nVmSize:\t%8llu kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\n"
               "VmHWM:\t%8llu kB\nVmRSS:\t%8llu kB\nVmData:\t%8llu kB\nVmStk:\t%8llu kB\nVmExe:\t       0 kB\n"
               "VmLib:\t       0 kB\nVmPTE:\t       0 kB\nVmSwap:\t       0 kB\n",
            (unsigned long long)kb, (unsigned long long)kb, (unsigned long long)kb, (unsigned long long)kb,
            (unsigned long long)((sb->brk_cur > sb->brk_start ? sb->brk_cur - sb->brk_start : 0) >> 10),
            (unsigned long long)(STACK_SIZE >> 10));
  vb_printf(b, "Threads:\t%d\nSigQ:\t%d/%d\nSigPnd:\t%016llx\nShdPnd:\t%016llx\nSigBlk:\t%016llx\nSigIgn:\t%016llx\n"
               "SigCgt:\t%016llx\n",
            task_live(sb), sb->nsigq, SIGQ_MAX, (unsigned long long)sb->pending, 0ull, (unsigned long long)sb->sigmask,
            (unsigned long long)sig_set(sb, 0), (unsigned long long)sig_set(sb, 1));
  vb_printf(b, "CapInh:\t0000000000000000\nCapPrm:\t%s\nCapEff:\t%s\nCapBnd:\t000001ffffffffff\n"
               "CapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\n",
            cap, cap);
  /* the CPUs of its main thread, as sched_getaffinity says: a hex mask of
   * the sandbox's CPUs (--cpus), a comma every 32 bits as Linux prints it,
   * and the list of ranges */
  int n = sb_cpus(vcaller), k = 0; /* (the sandbox's: init has no options of its own) */
  uint64_t m[2];
  task_cpus(vcaller, sb->pid, m);
  char mask[48], list[512] = "";
  for (int d = (n + 3) / 4 - 1; d >= 0; d--) {
    mask[k++] = "0123456789abcdef"[m[d / 16] >> (d % 16 * 4) & 15];
    if (d && d % 8 == 0)
      mask[k++] = ',';
  }
  mask[k] = 0;
  for (int c = 0, len = 0; c < n; c++) {
    if (!(m[c / 64] >> (c % 64) & 1))
      continue;
    int e = c;
    while (e + 1 < n && (m[(e + 1) / 64] >> ((e + 1) % 64) & 1))
      e++;
    len += snprintf(list + len, sizeof list - (size_t)len, e > c ? "%s%d-%d" : "%s%d", len ? "," : "", c, e);
    c = e;
  }
  vb_printf(b, "Cpus_allowed:\t%s\nCpus_allowed_list:\t%s\n", mask, list);
  vb_printf(b, "voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n");
}

static void gen_pstat(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  char name[16];
  comm(sb, name);
  uint64_t ticks = guest_cpu_ns(sb) / 10000000;
  uint64_t stack = sb->mem_size ? sb->mem_size - STACK_SIZE : 0; /* (init has no memory) */
  /* pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
   * majflt cmajflt utime stime cutime cstime priority nice num_threads
   * itrealvalue starttime vsize rss rsslim */
  vb_printf(b, "%d (%s) %c %d %d %d 0 -1 4194304 0 0 0 0 %llu 0 0 0 20 0 %d 0 0 %llu %llu 18446744073709551615 ",
            sb->pid, name, sb->zombie ? 'Z' : sb->stopped ? 'T' : sb == vcaller ? 'R' : 'S', proc_ppid(sb), proc_pgid(sb),
            proc_sid(sb),
            (unsigned long long)ticks, task_live(sb), (unsigned long long)vm_bytes(sb),
            (unsigned long long)(vm_bytes(sb) / PAGE));
  /* startcode endcode startstack kstkesp kstkeip signal blocked sigignore
   * sigcatch wchan nswap cnswap exit_signal processor rt_priority policy
   * delayacct_blkio_ticks guest_time cguest_time start_data end_data
   * start_brk arg_start arg_end env_start env_end exit_code */
  vb_printf(b, "0 0 %llu 0 0 %llu %llu %llu %llu 0 0 0 17 0 0 0 0 0 0 0 0 %llu %llu %llu %llu %llu 0\n",
            (unsigned long long)stack, (unsigned long long)sb->pending, (unsigned long long)sb->sigmask,
            (unsigned long long)sig_set(sb, 0), (unsigned long long)sig_set(sb, 1),
            (unsigned long long)sb->brk_start, (unsigned long long)sb->arg_start, (unsigned long long)sb->arg_end,
            (unsigned long long)sb->env_start, (unsigned long long)sb->env_end);
}

static void gen_cmdline(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  guest_range(sb, b, sb->arg_start, sb->arg_end);
}

static void gen_environ(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  guest_range(sb, b, sb->env_start, sb->env_end);
}

static void gen_comm(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  char name[16];
  comm(sb, name);
  vb_printf(b, "%s\n", name);
}

static void gen_maps(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  for (int i = 0; i < sb->nvma && !sb->zombie; i++) {
    const struct vma *v = &sb->vmas[i];
    const char *name = "";
    if (v->end == sb->mem_size)
      name = "[stack]";
    else if (sb->brk_cur > sb->brk_start && v->start >= PAGE_DOWN(sb->brk_start) && v->end <= PAGE_UP(sb->brk_cur))
      name = "[heap]";
    char line[128];
    int n = snprintf(line, sizeof line, "%08llx-%08llx %c%c%cp 00000000 00:00 0", (unsigned long long)v->start,
                     (unsigned long long)v->end, v->prot & PROT_READ ? 'r' : '-', v->prot & PROT_WRITE ? 'w' : '-',
                     v->prot & PROT_EXEC ? 'x' : '-');
    if (*name)
      vb_printf(b, "%s%*s%s\n", line, n < 73 ? 73 - n : 1, "", name);
    else
      vb_printf(b, "%s\n", line);
  }
}

static void gen_mounts(struct sb *sb, struct vbuf *b, int arg)
{
  (void)sb;
  (void)arg;
  vb_printf(b, "overlay / overlay rw,relatime 0 0\n" /* the root under the upper layer (ovl.c) */
               "proc /proc proc ro,nosuid,nodev,noexec,relatime 0 0\n"
               "tmpfs /dev tmpfs ro,nosuid,mode=755 0 0\n"
               "tmpfs /tmp tmpfs rw,nosuid,nodev 0 0\n");
}

static void gen_cpuinfo_one(struct vbuf *b, int cpu, int ncpu);

/* The host's first CPU, once for each of the sandbox's CPUs (sb_cpus),
 * numbered from 0. */
static void gen_cpuinfo(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  for (int cpu = 0; cpu < sb_cpus(sb); cpu++)
    gen_cpuinfo_one(b, cpu, sb_cpus(sb));
}

static void gen_cpuinfo_one(struct vbuf *b, int cpu, int ncpu)
{
  FILE *f = fopen("/proc/cpuinfo", "re");
  char line[4096];
  bool any = false;
  while (f && fgets(line, sizeof line, f)) {
    if (line[0] == '\n' && any)
      break;
    any = true;
    char key[64];
    const char *colon = strchr(line, ':');
    size_t kl = colon ? (size_t)(colon - line) : 0;
    while (kl && (line[kl - 1] == ' ' || line[kl - 1] == '\t'))
      kl--;
    snprintf(key, sizeof key, "%.*s", (int)(kl < sizeof key ? kl : sizeof key - 1), line);
    static const char *const idx[] = {"processor", "core id", "apicid", "initial apicid"};
    static const char *const count[] = {"siblings", "cpu cores"};
    bool done = false;
    if (strcmp(key, "physical id") == 0) {
      vb_printf(b, "%.*s: 0\n", (int)(colon - line), line);
      done = true;
    }
    for (size_t i = 0; i < sizeof idx / sizeof *idx && !done; i++)
      if (strcmp(key, idx[i]) == 0) {
        vb_printf(b, "%.*s: %d\n", (int)(colon - line), line, cpu);
        done = true;
      }
    for (size_t i = 0; i < sizeof count / sizeof *count && !done; i++)
      if (strcmp(key, count[i]) == 0) {
        vb_printf(b, "%.*s: %d\n", (int)(colon - line), line, ncpu);
        done = true;
      }
    if (!done)
      vb_bytes(b, line, strlen(line));
  }
  if (f)
    fclose(f);
  if (!any)
    vb_printf(b, "processor\t: %d\nvendor_id\t: unknown\nmodel name\t: unknown\n", cpu);
  vb_printf(b, "\n");
}

static void gen_meminfo(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  uint64_t total = sb->mem_size >> 10, used = vm_bytes(sb) >> 10;
  uint64_t free_kb = used < total ? total - used : 0;
  vb_printf(b, "MemTotal:       %8llu kB\nMemFree:        %8llu kB\nMemAvailable:   %8llu kB\n",
            (unsigned long long)total, (unsigned long long)free_kb, (unsigned long long)free_kb);
  vb_printf(b, "Buffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\n"
               "Active:                0 kB\nInactive:              0 kB\nSwapTotal:             0 kB\n"
               "SwapFree:              0 kB\nShmem:                 0 kB\n");
}

static void gen_uptime(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  double up = uptime_s(sb), busy = (double)guest_cpu_ns(sb) / 1e9;
  vb_printf(b, "%.2f %.2f\n", up, up > busy ? up - busy : 0);
}

static void gen_loadavg(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  vb_printf(b, "0.00 0.00 0.00 1/1 %d\n", sb->pid);
}

static void gen_stat(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  uint64_t busy = guest_cpu_ns(sb) / 10000000, up = (uint64_t)(uptime_s(sb) * 100);
  uint64_t idle = up > busy ? up - busy : 0;
  int n = sb_cpus(sb);
  vb_printf(b, "cpu  %llu 0 0 %llu 0 0 0 0 0 0\n", (unsigned long long)busy, (unsigned long long)(idle * n));
  for (int i = 0; i < n; i++) /* the busy time is not kept per CPU: the first has it */
    vb_printf(b, "cpu%d %llu 0 0 %llu 0 0 0 0 0 0\n", i, (unsigned long long)(i ? 0 : busy),
              (unsigned long long)(i ? up : idle));
  vb_printf(b, "intr 0\nctxt 0\nbtime %lld\nprocesses 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0\n",
            (long long)time(NULL) - (long long)uptime_s(sb));
}

static void gen_hostname(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  vb_printf(b, "%s\n", sb->hostname[0] ? sb->hostname : CF_DEFAULT_HOSTNAME);
}

static void gen_uuid(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  char save[37];
  memcpy(save, sb->boot_id, sizeof save);
  sb->boot_id[0] = 0; /* a fresh one, with the same code */
  vb_printf(b, "%s\n", virt_boot_id(sb));
  memcpy(sb->boot_id, save, sizeof save);
}

static void gen_boot_id(struct sb *sb, struct vbuf *b, int arg)
{
  (void)arg;
  vb_printf(b, "%s\n", virt_boot_id(sb));
}

/* ---- links ---- */

static void link_self(struct sb *sb, int arg, char *out, size_t size)
{
  (void)arg;
  snprintf(out, size, "%d", sb->pid);
}

static void link_thread_self(struct sb *sb, int arg, char *out, size_t size)
{
  (void)arg;
  snprintf(out, size, "%d/task/%d", sb->pid, sb->tid);
}

/* A link with no target (a zombie's cwd and exe): "" (ENOENT). */
static void link_cwd(struct sb *sb, int arg, char *out, size_t size)
{
  (void)arg;
  snprintf(out, size, "%s", sb->zombie ? "" : sb->cwd);
}

static void link_exe(struct sb *sb, int arg, char *out, size_t size)
{
  (void)arg;
  if (sb->zombie || proc_is_init(sb)) /* no program: ENOENT, as a kernel thread's */
    out[0] = 0;
  else if (path_abs("/", sb->program, out, size) < 0)
    snprintf(out, size, "/");
}

/* What readlink(/proc/self/fd/N) says: the sandbox path of the file;
 * the sandbox's stdio as what it is (a pipe, a socket, the terminal),
 * never a host path. */
static void link_fd(struct sb *sb, int fd, char *out, size_t size)
{
  struct file *f = fs_get(sb, fd);
  if (!f) {
    snprintf(out, size, "/");
    return;
  }
  struct stat st;
  if (f->type == F_HOST && (f->stdio >= 0 || strncmp(f->path, "pipe:", 5) == 0 || !strcmp(f->path, "socket:"))) {
    if (isatty(f->hostfd))
      snprintf(out, size, "/dev/tty");
    else if (fstat(f->hostfd, &st) == 0 && S_ISFIFO(st.st_mode))
      snprintf(out, size, "pipe:[%d]", 4000 + fd);
    else if (fstat(f->hostfd, &st) == 0 && S_ISSOCK(st.st_mode))
      snprintf(out, size, "socket:[%d]", 4000 + fd);
    else
      snprintf(out, size, "/dev/std%s", f->stdio == 0 ? "in" : f->stdio == 1 ? "out" : "err");
    return;
  }
  if (f->node && !tmp_is_linked(f->node)) /* a /tmp file, directory or FIFO */
    snprintf(out, size, "%s (deleted)", f->path);
  else
    snprintf(out, size, "%s", f->path[0] ? f->path : "/");
}

/* /proc/PID/fdinfo/N as Linux's (fs/proc/fd.c seq_show): the offset, the
 * open flags in octal (fs_getfl's, with O_CLOEXEC from the fd), the mount's
 * id (the sandbox's mounts, /proc/mounts: / 21, /proc 22, /dev 23, /tmp 24;
 * pipes, sockets and anonymous-inode files the internal mounts 12-14) and
 * the inode. */
static void gen_fdinfo(struct sb *sb, struct vbuf *b, int fd)
{
  struct file *f = fs_get(sb, fd);
  if (!f)
    return;
  long long pos = 0;
  int flags = fs_getfl(f), mnt = 21;
  if ((f->type == F_HOST || f->type == F_DIR) && f->hostfd >= 0) {
    off_t o = lseek(f->hostfd, 0, SEEK_CUR);
    pos = o < 0 ? 0 : (long long)o;
  } else if (f->type == F_TMP || f->type == F_TMPDIR) {
    pos = (long long)f->off;
  }
  if (fd < sb->nfds && sb->cloexec[fd])
    flags |= O_CLOEXEC;
  const char *p = f->path ? f->path : "";
  struct stat st = {0};
  fs_file_stat(sb, f, &st);
  if (f->sock || S_ISSOCK(st.st_mode))
    mnt = 12;
  else if (S_ISFIFO(st.st_mode) && !f->node)
    mnt = 13;
  else if (f->type >= F_EVENTFD)
    mnt = 14;
  else if (strncmp(p, "/proc", 5) == 0 && (p[5] == '/' || !p[5]))
    mnt = 22;
  else if (strncmp(p, "/dev", 4) == 0 && (p[4] == '/' || !p[4]) && strncmp(p, "/dev/shm", 8) != 0)
    mnt = 23;
  else if (strncmp(p, "/tmp", 4) == 0 && (p[4] == '/' || !p[4]))
    mnt = 24;
  vb_printf(b, "pos:\t%lld\nflags:\t0%o\nmnt_id:\t%d\nino:\t%lu\n", pos, (unsigned)flags, mnt,
            (unsigned long)st.st_ino);
}

static void link_text(struct sb *sb, int arg, char *out, size_t size, const char *t)
{
  (void)sb;
  (void)arg;
  snprintf(out, size, "%s", t);
}
#define LINK_TO(fn, text)                                         \
  static void fn(struct sb *sb, int arg, char *out, size_t size) \
  {                                                               \
    link_text(sb, arg, out, size, text);                          \
  }
LINK_TO(link_mounts, "self/mounts")
LINK_TO(link_devfd, "/proc/self/fd")
LINK_TO(link_stdin, "/proc/self/fd/0")
LINK_TO(link_stdout, "/proc/self/fd/1")
LINK_TO(link_stderr, "/proc/self/fd/2")

/* ---- the table ---- */

enum vkind { V_DIR, V_FILE, V_LINK, V_DEV };

struct vent {
  const char *path;
  enum vkind kind;
  unsigned mode;
  void (*gen)(struct sb *, struct vbuf *, int arg);              /* V_FILE */
  void (*link)(struct sb *, int arg, char *out, size_t size);     /* V_LINK */
  int werr;       /* a write by root: this errno (0: the file is writable, gen_write) */
  int major, minor; /* V_DEV */
};

enum { DEV_NULL = 3, DEV_ZERO = 5, DEV_FULL = 7, DEV_RANDOM = 8, DEV_URANDOM = 9 };

static const struct vent vents[] = {
    {.path = "/proc", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/self", .kind = V_LINK, .mode = 0777, .link = link_self},
    {.path = "/proc/thread-self", .kind = V_LINK, .mode = 0777, .link = link_thread_self},
    {.path = "/proc/%p", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/%p/status", .kind = V_FILE, .mode = 0444, .gen = gen_status, .werr = EINVAL},
    {.path = "/proc/%p/stat", .kind = V_FILE, .mode = 0444, .gen = gen_pstat, .werr = EINVAL},
    {.path = "/proc/%p/cmdline", .kind = V_FILE, .mode = 0444, .gen = gen_cmdline, .werr = EINVAL},
    {.path = "/proc/%p/comm", .kind = V_FILE, .mode = 0444, .gen = gen_comm, .werr = EINVAL},
    {.path = "/proc/%p/environ", .kind = V_FILE, .mode = 0400, .gen = gen_environ, .werr = EINVAL},
    {.path = "/proc/%p/maps", .kind = V_FILE, .mode = 0444, .gen = gen_maps, .werr = EINVAL},
    {.path = "/proc/%p/mounts", .kind = V_FILE, .mode = 0444, .gen = gen_mounts, .werr = EINVAL},
    {.path = "/proc/%p/fd", .kind = V_DIR, .mode = 0500},
    {.path = "/proc/%p/fd/%f", .kind = V_LINK, .mode = 0700, .link = link_fd},
    {.path = "/proc/%p/fdinfo", .kind = V_DIR, .mode = 0500},
    {.path = "/proc/%p/fdinfo/%f", .kind = V_FILE, .mode = 0444, .gen = gen_fdinfo, .werr = EINVAL},
    {.path = "/proc/%p/cwd", .kind = V_LINK, .mode = 0777, .link = link_cwd},
    {.path = "/proc/%p/exe", .kind = V_LINK, .mode = 0777, .link = link_exe},
    {.path = "/proc/%p/task", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/%p/task/%t", .kind = V_DIR, .mode = 0555}, /* the same as /proc/%p (virt_path) */
    {.path = "/proc/cpuinfo", .kind = V_FILE, .mode = 0444, .gen = gen_cpuinfo, .werr = EIO},
    {.path = "/proc/meminfo", .kind = V_FILE, .mode = 0444, .gen = gen_meminfo, .werr = EIO},
    {.path = "/proc/uptime", .kind = V_FILE, .mode = 0444, .gen = gen_uptime, .werr = EIO},
    {.path = "/proc/loadavg", .kind = V_FILE, .mode = 0444, .gen = gen_loadavg, .werr = EIO},
    {.path = "/proc/stat", .kind = V_FILE, .mode = 0444, .gen = gen_stat, .werr = EIO},
    {.path = "/proc/mounts", .kind = V_LINK, .mode = 0777, .link = link_mounts},
    {.path = "/proc/sys", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/sys/kernel", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/sys/kernel/hostname", .kind = V_FILE, .mode = 0644, .gen = gen_hostname},
    {.path = "/proc/sys/kernel/random", .kind = V_DIR, .mode = 0555},
    {.path = "/proc/sys/kernel/random/boot_id", .kind = V_FILE, .mode = 0444, .gen = gen_boot_id, .werr = EACCES},
    {.path = "/proc/sys/kernel/random/uuid", .kind = V_FILE, .mode = 0444, .gen = gen_uuid, .werr = EACCES},
    {.path = "/dev", .kind = V_DIR, .mode = 0755},
    {.path = "/dev/null", .kind = V_DEV, .mode = 0666, .major = 1, .minor = DEV_NULL},
    {.path = "/dev/zero", .kind = V_DEV, .mode = 0666, .major = 1, .minor = DEV_ZERO},
    {.path = "/dev/full", .kind = V_DEV, .mode = 0666, .major = 1, .minor = DEV_FULL},
    {.path = "/dev/random", .kind = V_DEV, .mode = 0666, .major = 1, .minor = DEV_RANDOM},
    {.path = "/dev/urandom", .kind = V_DEV, .mode = 0666, .major = 1, .minor = DEV_URANDOM},
    {.path = "/dev/tty", .kind = V_DEV, .mode = 0666, .major = 5, .minor = 0},
    {.path = "/dev/fd", .kind = V_LINK, .mode = 0777, .link = link_devfd},
    {.path = "/dev/stdin", .kind = V_LINK, .mode = 0777, .link = link_stdin},
    {.path = "/dev/stdout", .kind = V_LINK, .mode = 0777, .link = link_stdout},
    {.path = "/dev/stderr", .kind = V_LINK, .mode = 0777, .link = link_stderr},
    {.path = "/dev/shm", .kind = V_DIR, .mode = 01777},
};
#define NVENTS ((int)(sizeof vents / sizeof vents[0]))

bool virt_is_virt(const char *abs)
{
  return (strncmp(abs, "/proc", 5) == 0 && (abs[5] == 0 || abs[5] == '/')) ||
         (strncmp(abs, "/dev", 4) == 0 && (abs[4] == 0 || abs[4] == '/') && !tmp_is_shm(abs)); /* /dev/shm: tmpfs.c */
}

/* A decimal number (no sign, no leading zero) filling [s, s+n): its value, or -1. */
static long num(const char *s, size_t n)
{
  if (n == 0 || n > 9 || (s[0] == '0' && n > 1))
    return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Whether path [s, s+n) matches pattern pat; *arg gets a %f's fd. */
static bool match(struct sb *sb, const char *pat, const char *s, size_t n, int *arg)
{
  const char *e = s + n;
  while (*pat) {
    if (pat[0] == '%') {
      const char *c = s;
      while (c < e && *c != '/')
        c++;
      long v = num(s, (size_t)(c - s));
      struct sb *t = pat[1] != 'p' || v < 0 || v == sb->pid ? NULL
                     : v == PROC_INIT                    ? proc_init()
                                                         : proc_find_any(sb, (int)v);
      if (v < 0 || (pat[1] == 'p' && v != sb->pid && !t) ||
          (pat[1] == 't' && v != (T(sb) == sb ? sb->tid : T(sb)->pid)) || (pat[1] == 'f' && !fs_get(T(sb), (int)v)))
        return false;
      if (pat[1] == 'p')
        vtarget = t;
      if (pat[1] == 'f')
        *arg = (int)v;
      pat += 2;
      s = c;
      continue;
    }
    if (s >= e || *s != *pat)
      return false;
    s++;
    pat++;
  }
  return s == e;
}

static const struct vent *find(struct sb *sb, const char *s, size_t n, int *arg)
{
  vcaller = sb;
  for (int i = 0; i < NVENTS; i++) {
    vtarget = NULL;
    if (match(sb, vents[i].path, s, n, arg))
      return &vents[i];
  }
  vtarget = NULL;
  return NULL;
}

long virt_path(struct sb *sb, char *abs, size_t size, bool follow)
{
  for (int hops = 0; hops < 40; hops++) {
    if (!virt_is_virt(abs))
      return 0;
    bool changed = false;
    /* Each prefix, shortest first: a link in the middle (or at the end,
     * with follow) is replaced by its target. */
    for (size_t i = 1;; i++) {
      if (abs[i] != '/' && abs[i] != 0)
        continue;
      bool last = abs[i] == 0;
      int arg = -1;
      const struct vent *v = find(sb, abs, i, &arg);
      if (!v)
        return 0; /* not in the table: the caller's lookup says ENOENT */
      char target[PATH_MAX];
      if (v->kind == V_DIR && strcmp(v->path, "/proc/%p/task/%t") == 0) {
        snprintf(target, sizeof target, "/proc/%d", T(sb)->pid);
      } else if (v->kind == V_LINK && (!last || follow)) {
        if (v->link == link_fd) {
          if (last)
            return 0; /* magic: the caller opens or stats the fd's file */
          struct file *f = fs_get(T(sb), arg);
          if (!f || (f->type != F_DIR && f->type != F_TMPDIR && f->type != F_VDIR))
            return -ENOTDIR;
          snprintf(target, sizeof target, "%s", f->path);
        } else {
          v->link(T(sb), arg, target, sizeof target);
          if (!target[0])
            return -ENOENT;
        }
      } else {
        if (last)
          return 0;
        if (v->kind != V_DIR)
          return -ENOTDIR;
        continue;
      }
      /* target (relative to the link's directory) + the rest of abs */
      char dir[PATH_MAX], joined[2 * PATH_MAX + 2];
      size_t d = i;
      while (d > 0 && abs[d - 1] != '/')
        d--;
      snprintf(dir, sizeof dir, "%.*s", (int)(d > 1 ? d - 1 : 1), abs);
      snprintf(joined, sizeof joined, "%s%s", target, abs + i);
      char out[PATH_MAX];
      long r = path_abs(dir, joined, out, sizeof out);
      if (r < 0)
        return r;
      if (strlen(out) >= size)
        return -ENAMETOOLONG;
      strcpy(abs, out);
      changed = true;
      break;
    }
    if (!changed)
      return 0;
  }
  return -ELOOP;
}

long virt_lookup(struct sb *sb, const char *abs, const struct vent **v, int *arg)
{
  *arg = -1;
  *v = find(sb, abs, strlen(abs), arg);
  return *v ? 0 : -ENOENT;
}

bool virt_is_link(const struct vent *v) { return v->kind == V_LINK; }
bool virt_is_fd(const struct vent *v) { return v->link == link_fd; }
struct file *virt_fd_file(struct sb *sb, int arg) { return fs_get(T(sb), arg); }
bool virt_is_dir(const struct vent *v) { return v->kind == V_DIR; }

void virt_stat(struct sb *sb, const struct vent *v, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)(v - vents) + 0x1000;
  st->st_dev = v->path[1] == 'p' ? 22 : 5;
  st->st_nlink = v->kind == V_DIR ? 2 : 1;
  st->st_blksize = 4096;
  bool own = strncmp(v->path, "/proc/%p", 8) == 0;
  st->st_uid = own ? (uid_t)T(sb)->uid : 0; /* the process's: init's is root's */
  st->st_gid = own ? (gid_t)T(sb)->gid : 0;
  st->st_mode = v->mode | (v->kind == V_DIR ? S_IFDIR : v->kind == V_LINK ? S_IFLNK : v->kind == V_DEV ? S_IFCHR : S_IFREG);
  if (v->kind == V_DEV)
    st->st_rdev = makedev((unsigned)v->major, (unsigned)v->minor);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  st->st_atim = st->st_mtim = st->st_ctim = now;
}

long virt_readlink(struct sb *sb, const struct vent *v, int arg, char *out, size_t size)
{
  if (v->kind != V_LINK)
    return -EINVAL;
  v->link(T(sb), arg, out, size);
  return out[0] ? (long)strlen(out) : -ENOENT;
}

/* The terminal: the first of the sandbox's stdin/out/err that is one. */
/* The host process's controlling terminal (tty_nr of /proc/self/stat: 0
 * for none), read once at start, before any jail or seccomp filter. */
static dev_t host_ctty;
__attribute__((constructor)) static void host_ctty_init(void)
{
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0)
    close(fd);
  if (n <= 0)
    return;
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* after the command name, which may hold anything */
  unsigned long long tty;
  if (p && sscanf(p + 1, " %*c %*d %*d %*d %llu", &tty) == 1)
    host_ctty = (dev_t)tty;
}

/* /dev/tty is the controlling terminal (Linux's tty_open_current_tty): the
 * first of stdin/out/err that is the host process's controlling terminal;
 * none (-1: ENXIO) when it has none, or the stdio's terminal is another
 * (a program started without one, as under nohup or a CI runner). */
static int tty_fd(struct sb *sb)
{
  if (!host_ctty)
    return -1;
  for (int i = 0; i < 3; i++) {
    struct file *f = fs_get(sb, i);
    struct stat st;
    if (f && f->type == F_HOST && f->stdio >= 0 && isatty(f->hostfd) && fstat(f->hostfd, &st) == 0 &&
        st.st_rdev == host_ctty)
      return f->hostfd;
  }
  return -1;
}

long virt_open(struct sb *sb, const struct vent *v, int arg, const char *abs, int flags, struct file **out)
{
  (void)arg;
  int acc = flags & O_ACCMODE;
  int keep = acc | (flags & (O_APPEND | O_NONBLOCK));
  bool wr = acc != O_RDONLY;
  struct file *f = NULL;
  if ((flags & O_CREAT) && (flags & O_EXCL))
    return -EEXIST;
  switch (v->kind) {
  case V_LINK:
    return -ELOOP; /* O_NOFOLLOW on a link (the others were followed) */
  case V_DIR:
    if (wr || (flags & O_CREAT))
      return -EISDIR;
    f = file_new(F_VDIR, -1, keep, abs);
    break;
  case V_DEV:
    if (v->major == 5) { /* /dev/tty */
      int t = tty_fd(sb);
      if (t < 0)
        return -ENXIO;
      int h = fcntl(t, F_DUPFD_CLOEXEC, 3);
      if (h < 0)
        return -errno;
      if (!(f = file_new(F_HOST, h, keep, abs)))
        close(h);
      break;
    }
    if (flags & O_DIRECTORY)
      return -ENOTDIR;
    f = file_new(F_DEV, -1, keep, abs);
    if (f)
      f->dev = v->minor;
    break;
  case V_FILE:
    if (flags & O_DIRECTORY)
      return -ENOTDIR;
    if (wr && (sb->uid != 0 || v->werr == EACCES))
      return -EACCES;
    f = file_new(F_VIRT, -1, keep, abs);
    if (!f)
      break;
    f->vent = v;
    f->varg = arg;
    if (acc != O_WRONLY) {
      struct vbuf b = {0};
      v->gen(T(sb), &b, arg);
      if (b.err) {
        free(b.p);
        file_unref(f);
        return -ENOMEM;
      }
      f->vdata = b.p;
      f->vlen = b.n;
    }
    break;
  }
  if (!f)
    return -ENOMEM;
  *out = f;
  return 0;
}

long virt_read(struct file *f, void *p, uint64_t len, uint64_t off)
{
  if (f->type == F_DEV) {
    switch (f->dev) {
    case DEV_NULL:
      return 0;
    case DEV_RANDOM:
    case DEV_URANDOM: {
      if (len > (1u << 25))
        len = 1u << 25;
      ssize_t n = getrandom(p, len, 0);
      return n < 0 ? -errno : n;
    }
    default: /* zero, full */
      memset(p, 0, len);
      return (long)len;
    }
  }
  if (off >= f->vlen)
    return 0;
  uint64_t n = f->vlen - off < len ? f->vlen - off : len;
  memcpy(p, f->vdata + off, n);
  return (long)n;
}

long virt_write(struct sb *sb, struct file *f, const void *p, uint64_t len)
{
  if (f->type == F_DEV)
    return f->dev == DEV_FULL ? -ENOSPC : (long)len;
  if (f->vent->werr)
    return -f->vent->werr;
  /* /proc/sys/kernel/hostname: as sethostname (a trailing newline dropped) */
  const char *s = p;
  uint64_t n = len && s[len - 1] == '\n' ? len - 1 : len;
  long r = virt_sethostname(sb, s, n);
  return r < 0 ? r : (long)len;
}

long virt_sethostname(struct sb *sb, const char *name, uint64_t len)
{
  if (sb->uid != 0)
    return -EPERM;
  if (len >= sizeof sb->hostname)
    return -EINVAL;
  memcpy(sb->hostname, name, len);
  sb->hostname[len] = 0;
  return 0;
}

long virt_getdents(struct sb *sb, struct file *f, void *p, uint64_t len)
{
  const struct vent *dir;
  int darg;
  if (virt_lookup(sb, f->path, &dir, &darg) < 0)
    return 0; /* gone (an fd directory whose fd closed): empty */
  size_t dl = strlen(dir->path);
  size_t pos = 0;
  /* f->off counts entries: ".", "..", then the table's children in order,
   * an "%f" entry standing for every open fd. */
  for (;;) {
    uint64_t idx = 2;
    char name[32];
    const char *nm = NULL;
    unsigned char type = DT_DIR;
    uint64_t ino = 1;
    if (f->off == 0)
      nm = ".";
    else if (f->off == 1)
      nm = "..";
    for (int i = 0; !nm && i < NVENTS; i++) {
      const char *c = vents[i].path;
      if (strncmp(c, dir->path, dl) != 0 || c[dl] != '/' || strchr(c + dl + 1, '/'))
        continue;
      const char *leaf = c + dl + 1;
      type = vents[i].kind == V_DIR ? DT_DIR : vents[i].kind == V_LINK ? DT_LNK : vents[i].kind == V_DEV ? DT_CHR
                                                                                                         : DT_REG;
      ino = (uint64_t)i + 0x1000;
      if (strcmp(leaf, "%f") == 0) {
        for (int fd = 0; fd < T(sb)->nfds && !nm; fd++) {
          if (!T(sb)->fds[fd])
            continue;
          if (idx++ == f->off) {
            snprintf(name, sizeof name, "%d", fd);
            nm = name;
          }
        }
        continue;
      }
      if (strcmp(leaf, "%p") == 0) { /* init, then every process of the sandbox */
        int np = 1;
        struct sb *self = sb;
        struct sb *const *ps = sb->w ? proc_list(sb, &np) : &self;
        if (idx++ == f->off) {
          snprintf(name, sizeof name, "%d", PROC_INIT);
          nm = name;
        }
        for (int k = 0; k < np && !nm; k++) {
          if (idx++ == f->off) {
            snprintf(name, sizeof name, "%d", ps[k]->pid);
            nm = name;
          }
        }
        continue;
      }
      if (idx++ != f->off)
        continue;
      if (leaf[0] == '%')
        snprintf(name, sizeof name, "%d", leaf[1] == 'p' ? sb->pid : T(sb) == sb ? sb->tid : T(sb)->pid);
      else
        snprintf(name, sizeof name, "%s", leaf);
      nm = name;
    }
    if (!nm)
      break;
    if (!dirent_put(p, len, &pos, ino, (int64_t)f->off + 1, type, nm)) {
      if (pos == 0)
        return -EINVAL;
      break;
    }
    f->off++;
  }
  return (long)pos;
}

void virt_dev_stat(const struct file *f, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFCHR | 0666;
  st->st_rdev = makedev(1, (unsigned)f->dev);
  st->st_nlink = 1;
  st->st_ino = (ino_t)f->dev + 0x100;
  st->st_dev = 5;
  st->st_blksize = 4096;
}

int virt_dev_of(const char *path)
{
  for (int i = 0; i < NVENTS; i++)
    if (vents[i].kind == V_DEV && vents[i].major == 1 && strcmp(vents[i].path, path) == 0)
      return vents[i].minor;
  return DEV_NULL;
}
