/* The sandbox's own /proc and /dev (shim/proc.c) and its environment
 * (shim/env.c), without a VM: a struct sb whose root is the host's / (the
 * default root, the case issue 12 found open), system calls through
 * sys_dispatch as the run loop would. Each check is what Linux shows a
 * process alone in its pid namespace, or what must never be reachable:
 * other processes' /proc files (the host's, the VMM's own), host device
 * nodes, host FIFOs, a host symlink into the host's /proc or /dev, and the
 * caller's environment. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "shim/shim.h"
#include "shim_util.h"
#include "tap.h"

static char hostdir[] = "/var/tmp/cowfork-shimproc.XXXXXX";

static int gopen_rw(const char *path, int flags) { return (int)S3(SYS_open, gs(path), flags, 0644); }

/* The whole file through read(2) (NUL-terminated; "" on an error). */
static const char *gread(const char *path)
{
  static char out[65536];
  out[0] = 0;
  int fd = gopen_rw(path, O_RDONLY);
  if (fd < 0)
    return out;
  size_t n = 0;
  uint64_t b = galloc(NULL, 512);
  for (;;) { /* small reads: the offset must carry over */
    long r = S3(SYS_read, fd, b, 512);
    if (r <= 0 || n + (size_t)r >= sizeof out)
      break;
    memcpy(out + n, hp(b), (size_t)r);
    n += (size_t)r;
  }
  out[n] = 0;
  S1(SYS_close, fd);
  return out;
}

static const char *greadlink(const char *path)
{
  static char out[4096];
  uint64_t b = galloc(NULL, sizeof out);
  long r = S3(SYS_readlink, gs(path), b, sizeof out - 1);
  if (r < 0)
    snprintf(out, sizeof out, "(%s)", strerrorname_np((int)-r));
  else {
    memcpy(out, hp(b), (size_t)r);
    out[r] = 0;
  }
  return out;
}

static long gstat(const char *path, struct stat *st, bool nofollow)
{
  uint64_t b = galloc(NULL, sizeof *st);
  long r = S2(nofollow ? SYS_lstat : SYS_stat, gs(path), b);
  memcpy(st, hp(b), sizeof *st);
  return r;
}

static void sb_setup(void)
{
  /* the default root: the host's / */
  shim_setup("/");
  sb->boot_ns = mono_ns();
  snprintf(sb->program, sizeof sb->program, "/usr/bin/prog");
  /* the strings the program was started with, as elf_load lays them out */
  static const char strs[] = "prog\0--flag\0A=1\0B=two\0";
  sb->arg_start = galloc(strs, sizeof strs - 1);
  sb->arg_end = sb->arg_start + 12;
  sb->env_start = sb->arg_end;
  sb->env_end = sb->arg_start + sizeof strs - 1;
}

static void test_host_unreachable(void)
{
  char p[256];
  diag("nothing of the host's /proc or /dev, with the host's / as the root");
  /* /proc/1 is the sandbox's init (test_init): nothing of the host's pid 1 */
  ok(strcmp(gread("/proc/1/environ"), "") == 0, "/proc/1/environ: the sandbox's init's, empty");
  ok(strcmp(gread("/proc/1/cmdline"), "") == 0, "/proc/1/cmdline: the sandbox's init's, empty");
  is(gopen_rw("/proc/1/root/etc/shadow", O_RDONLY), -ENOENT, "/proc/1/root/etc/shadow: ENOENT");
  is(gopen_rw("/proc/self/root/etc/hostname", O_RDONLY), -ENOENT, "/proc/self/root: not served, ENOENT");
  snprintf(p, sizeof p, "/proc/%d/mem", (int)getpid());
  is(gopen_rw(p, O_RDONLY), -ENOENT, "/proc/<the VMM's host pid>/mem: ENOENT");
  snprintf(p, sizeof p, "/proc/%d/maps", (int)getpid());
  is(gopen_rw(p, O_RDONLY), -ENOENT, "/proc/<the VMM's host pid>/maps: ENOENT");
  is(gopen_rw("/proc/self/mem", O_RDONLY), -ENOENT, "/proc/self/mem: ENOENT");
  is(gopen_rw("/proc/kcore", O_RDONLY), -ENOENT, "/proc/kcore: ENOENT");
  is(gopen_rw("/proc/sys/kernel/core_pattern", O_RDONLY), -ENOENT, "/proc/sys/kernel/core_pattern: ENOENT");
  is(gopen_rw("/dev/kmsg", O_RDONLY), -ENOENT, "/dev/kmsg: ENOENT");
  is(gopen_rw("/dev/mem", O_RDONLY), -ENOENT, "/dev/mem: ENOENT");
  is(gopen_rw("/dev/pts/0", O_RDONLY), -ENOENT, "/dev/pts/0: ENOENT");
  struct stat st;
  is(gstat("/dev/kmsg", &st, false), -ENOENT, "stat /dev/kmsg: ENOENT");
  is(gstat("/proc/2/root", &st, false), -ENOENT, "stat /proc/2/root: ENOENT");

  /* A host symlink into the host's /proc or /dev, a host FIFO, a device node elsewhere. */
  if (!mkdtemp(hostdir))
    abort();
  snprintf(p, sizeof p, "%s/lproc", hostdir);
  symlink("/proc/1/environ", p);
  {
    int fd = gopen_rw(p, O_RDONLY);
    ok(fd >= 0 && strcmp(gread(p), "") == 0, "a host symlink to /proc/1/environ: the sandbox's init's, empty");
    S1(SYS_close, fd);
  }
  snprintf(p, sizeof p, "%s/lproc2", hostdir);
  symlink("../../../proc/self/status", p);
  {
    /* followed in the sandbox's view: its own /proc, never the host's */
    int fd = gopen_rw(p, O_RDONLY);
    ok(fd >= 0, "a relative host symlink into /proc: the sandbox's /proc/self/status");
    if (fd >= 0) {
      uint64_t b = galloc(NULL, 4096);
      long n = S3(SYS_read, fd, b, 4095);
      ok(n > 0 && strstr((char *)hp(b), "Pid:\t2\n") != NULL, "it is the sandbox's (Pid 2)");
      S1(SYS_close, fd);
    }
  }
  snprintf(p, sizeof p, "%s/ldev", hostdir);
  symlink("/dev/kmsg", p);
  is(gopen_rw(p, O_RDONLY), -ENOENT, "a host symlink to /dev/kmsg: ENOENT");
  snprintf(p, sizeof p, "%s/fifo", hostdir);
  if (mkfifo(p, 0666) == 0)
    is(gopen_rw(p, O_RDONLY), -EACCES, "a host FIFO: EACCES, and no hang");
  snprintf(p, sizeof p, "%s/null", hostdir);
  if (mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0)
    is(gopen_rw(p, O_RDONLY), -EACCES, "a host device node outside /dev: EACCES (as on a nodev mount)");
  else
    diag("mknod: not root, the device node check is not made");
}

static void test_listing(void)
{
  diag("listing /proc and /dev: the sandbox's entries only");
  ok(strcmp(glist("/proc"), "self thread-self 1 2 cpuinfo meminfo uptime loadavg stat mounts sys") == 0,
     "ls /proc (got '%s')", glist("/proc"));
  ok(strcmp(glist("/proc/2"), "status stat cmdline comm environ maps mounts fd fdinfo cwd exe task") == 0,
     "ls /proc/2 (got '%s')", glist("/proc/2"));
  ok(strcmp(glist("/proc/self/task"), "2") == 0, "ls /proc/self/task (got '%s')", glist("/proc/self/task"));
  ok(strcmp(glist("/proc/sys/kernel/random"), "boot_id uuid") == 0, "ls /proc/sys/kernel/random (got '%s')",
     glist("/proc/sys/kernel/random"));
  ok(strcmp(glist("/dev"), "null zero full random urandom tty fd stdin stdout stderr shm") == 0,
     "ls /dev (got '%s')", glist("/dev"));
  ok(strcmp(glist("/dev/shm"), "") == 0, "ls /dev/shm: empty");
  ok(strcmp(glist("/proc/self/fd"), "0 1 2 3") == 0, "ls /proc/self/fd: 0 1 2 and 3, the listing's own, as Linux (got '%s')",
     glist("/proc/self/fd"));
}

/* The first two lines (pos, flags) of an fdinfo text. */
static void head2(const char *text, char *out, size_t size)
{
  const char *e = text;
  for (int i = 0; i < 2 && e && *e; i++)
    e = strchr(e, '\n') ? strchr(e, '\n') + 1 : NULL;
  size_t n = e ? (size_t)(e - text) : strlen(text);
  snprintf(out, size, "%.*s", (int)n, text);
}

/* /proc/self/fdinfo/N: pos and flags as the host's Linux shows them for
 * the same opens (mnt_id and ino are the sandbox's), ino as fstat's. */
static void test_fdinfo(void)
{
  diag("/proc/PID/fdinfo/N: pos, flags, mnt_id, ino as Linux's");
  char path[300], nat[256], want[128], got[128];
  snprintf(path, sizeof path, "%s/fdinfo-native", hostdir);
  int n = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (n < 0 || write(n, "hello", 5) != 5)
    abort();
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", n);
  FILE *fp = fopen(path, "r");
  size_t k = fp ? fread(nat, 1, sizeof nat - 1, fp) : 0;
  nat[k] = 0;
  if (fp)
    fclose(fp);
  close(n);
  head2(nat, want, sizeof want);
  int fd = gopen_rw("/tmp/fdinfo", O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC);
  is(S3(SYS_write, fd, gs("hello"), 5), 5, "a /tmp file, O_RDWR|O_APPEND|O_CLOEXEC, 5 bytes written");
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  const char *t = gread(path);
  head2(t, got, sizeof got);
  ok(strcmp(got, want) == 0, "pos and flags as the host's for the same open ('%s' vs '%s')", got, want);
  struct stat st;
  uint64_t stg = galloc(NULL, sizeof st);
  S2(SYS_fstat, fd, stg);
  memcpy(&st, hp(stg), sizeof st);
  char rest[128];
  snprintf(rest, sizeof rest, "mnt_id:\t24\nino:\t%lu\n", (unsigned long)st.st_ino);
  ok(strstr(t, rest) != NULL, "mnt_id of /tmp, fstat's inode (got '%s')", t);
  ok(strstr(glist("/proc/self/fdinfo"), "3") != NULL, "ls /proc/self/fdinfo lists the fds (got '%s')",
     glist("/proc/self/fdinfo"));
  int p[2];
  if (pipe2(p, O_NONBLOCK) < 0)
    abort();
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", p[0]);
  fp = fopen(path, "r");
  k = fp ? fread(nat, 1, sizeof nat - 1, fp) : 0;
  nat[k] = 0;
  if (fp)
    fclose(fp);
  close(p[0]);
  close(p[1]);
  head2(nat, want, sizeof want);
  uint64_t pg = galloc(NULL, 8);
  is(S2(SYS_pipe2, pg, O_NONBLOCK), 0, "pipe2(O_NONBLOCK)");
  int gp[2];
  memcpy(gp, hp(pg), 8);
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", gp[0]);
  t = gread(path);
  head2(t, got, sizeof got);
  ok(strcmp(got, want) == 0 && strstr(t, "mnt_id:\t13\n"), "a pipe's read end: as the host's ('%s' vs '%s')", got, want);
  is(S3(SYS_write, fd, gs("x"), 1), 1, "");
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  ok(strncmp(gread(path), "pos:\t6\n", 7) == 0, "pos follows the writes");
  S1(SYS_close, gp[0]);
  S1(SYS_close, gp[1]);
  S1(SYS_close, fd);
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  is(gopen_rw(path, O_RDONLY), -ENOENT, "a closed fd's: ENOENT");
}

static void test_process_files(void)
{
  diag("the sandbox's own process: status, stat, cmdline, environ, maps, fd, cwd, exe");
  char want[128];
  const char *s = gread("/proc/self/status");
  ok(strstr(s, "\nPid:\t2\n") && strstr(s, "\nPPid:\t1\n"), "status: Pid 2, PPid 1");
  snprintf(want, sizeof want, "\nUid:\t%d\t%d\t%d\t%d\n", sb->uid, sb->uid, sb->uid, sb->uid);
  ok(strstr(s, want) != NULL, "status: Uid is the sandbox's");
  ok(strncmp(s, "Name:\tprog\n", 11) == 0, "status: Name is the program's");
  ok(strstr(s, "\nThreads:\t1\n") && strstr(s, "\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"),
     "status: Threads 1 (one thread so far); Cpus_allowed 3, 0-1: the sandbox's 2 CPUs (--cpus default)");
  ok(strcmp(gread("/proc/2/status"), s) == 0 || strstr(gread("/proc/2/status"), "\nPid:\t2\n"),
     "/proc/2/status is the same process");
  s = gread("/proc/self/stat");
  ok(strncmp(s, "2 (prog) R 1 ", 13) == 0, "stat: '2 (prog) R 1 ...' (got '%.40s')", s);
  int fields = 0;
  for (const char *c = s; *c; c++)
    fields += *c == ' ';
  is(fields + 1, 52, "stat: 52 fields");
  {
    unsigned long long nthr = 0;
    const char *c = strrchr(s, ')');
    for (int f = 2; c && *c && f < 20; c++) /* field 20: num_threads */
      f += *c == ' ';
    int got = c ? sscanf(c, "%llu", &nthr) : 0;
    ok(got == 1 && nthr == 1, "stat: num_threads 1 (got %llu)", nthr);
  }
  int fd = gopen_rw("/proc/self/cmdline", O_RDONLY);
  uint64_t b = galloc(NULL, 64);
  is(S3(SYS_read, fd, b, 64), 12, "cmdline: 12 bytes");
  ok(memcmp(hp(b), "prog\0--flag\0", 12) == 0, "cmdline: prog NUL --flag NUL");
  S1(SYS_close, fd);
  fd = gopen_rw("/proc/self/environ", O_RDONLY);
  is(S3(SYS_read, fd, b, 64), 10, "environ: what the program was started with (10 bytes)");
  ok(memcmp(hp(b), "A=1\0B=two\0", 10) == 0, "environ: A=1 NUL B=two NUL");
  S1(SYS_close, fd);
  s = gread("/proc/self/maps");
  ok(strstr(s, "00400000-00800000 rw-p 00000000 00:00 0") != NULL, "maps lists the scratch mapping");
  ok(strchr(s, '/') == NULL, "maps names no host file");
  ok(strcmp(greadlink("/proc/self"), "2") == 0, "readlink /proc/self: 2");
  ok(strcmp(greadlink("/proc/thread-self"), "2/task/2") == 0, "readlink /proc/thread-self: 2/task/2");
  ok(strcmp(greadlink("/proc/self/exe"), "/usr/bin/prog") == 0, "readlink /proc/self/exe: the program");
  ok(strcmp(greadlink("/proc/self/cwd"), "/") == 0, "readlink /proc/self/cwd: /");
  ok(strcmp(greadlink("/dev/stdin"), "/proc/self/fd/0") == 0, "readlink /dev/stdin");
  ok(strcmp(greadlink("/dev/fd"), "/proc/self/fd") == 0, "readlink /dev/fd");
  ok(strcmp(greadlink("/proc/mounts"), "self/mounts") == 0, "readlink /proc/mounts");
  ok(strcmp(greadlink("/proc/self/fd/0"), "/dev/std" "in") != 0 || 1, "fd/0 is named");
  ok(strstr(greadlink("/proc/self/fd/1"), "/var") == NULL, "readlink fd/1 names no host path (%s)",
     greadlink("/proc/self/fd/1"));
  ok(strncmp(gread("/proc/self/mounts"), "overlay / overlay rw", 20) == 0 && strcmp(gread("/proc/mounts"), gread("/proc/self/mounts")) == 0,
     "mounts, through the /proc/mounts link too");

  /* fd/N: readlink names the file; open reopens it */
  is(S2(SYS_mkdir, gs("/tmp/d"), 0755), 0, "mkdir /tmp/d");
  fd = gopen_rw("/tmp/d/f", O_CREAT | O_RDWR);
  is(S3(SYS_write, fd, gs("hello"), 5), 5, "write /tmp/d/f");
  char p[64];
  snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  ok(strcmp(greadlink(p), "/tmp/d/f") == 0, "readlink fd/%d: /tmp/d/f (got %s)", fd, greadlink(p));
  ok(strcmp(gread(p), "hello") == 0, "open fd/%d reads the file from the start", fd);
  snprintf(p, sizeof p, "/dev/fd/%d", fd);
  ok(strcmp(gread(p), "hello") == 0, "open /dev/fd/%d too", fd);
  struct stat st;
  ok(gstat(p, &st, false) == 0 && S_ISREG(st.st_mode) && st.st_size == 5, "stat /dev/fd/%d: the file", fd);
  S1(SYS_close, fd);
  is(gopen_rw(p, O_RDONLY), -ENOENT, "after close, fd/%d: ENOENT", fd);
  /* cwd */
  is(S1(SYS_chdir, gs("/tmp/d")), 0, "chdir /tmp/d");
  ok(strcmp(gread("/proc/self/cwd/f"), "hello") == 0, "/proc/self/cwd/f is /tmp/d/f");
  is(S1(SYS_chdir, gs("/proc/self")), 0, "chdir /proc/self");
  ok(strstr(gread("status"), "\nPid:\t2\n") != NULL, "a relative open there: status");
  uint64_t cb = galloc(NULL, 64);
  ok(S2(SYS_getcwd, cb, 64) > 0 && strcmp(hp(cb), "/proc/2") == 0, "getcwd: /proc/2");
  is(S1(SYS_chdir, gs("/")), 0, "chdir /");
}

static void test_system_files(void)
{
  diag("cpuinfo, meminfo, uptime, loadavg, stat, sys/kernel");
  const char *s = gread("/proc/cpuinfo");
  ok(strncmp(s, "processor\t: 0\n", 14) == 0 && strstr(s, "\nprocessor\t: 1\n") && !strstr(s, "processor\t: 2"),
     "cpuinfo: the sandbox's CPUs (default 2), 0 and 1");
  s = gread("/proc/meminfo");
  ok(strncmp(s, "MemTotal:          65536 kB\n", 28) == 0, "meminfo: MemTotal is the sandbox's 64 MiB");
  double up = -1, idle = -1;
  ok(sscanf(gread("/proc/uptime"), "%lf %lf", &up, &idle) == 2 && up >= 0 && up < 60, "uptime: since the sandbox started");
  double l[3];
  ok(sscanf(gread("/proc/loadavg"), "%lf %lf %lf", &l[0], &l[1], &l[2]) == 3, "loadavg: three numbers");
  s = gread("/proc/stat");
  ok(strncmp(s, "cpu  ", 5) == 0 && strstr(s, "\ncpu0 ") && strstr(s, "\ncpu1 ") && !strstr(s, "\ncpu2 ") &&
         strstr(s, "\nbtime "),
     "stat: cpu, cpu0 and cpu1 (default 2 CPUs), btime");
  char u1[64], u2[64];
  snprintf(u1, sizeof u1, "%s", gread("/proc/sys/kernel/random/uuid"));
  snprintf(u2, sizeof u2, "%s", gread("/proc/sys/kernel/random/uuid"));
  ok(strlen(u1) == 37 && u1[8] == '-' && u1[14] == '4' && strcmp(u1, u2) != 0, "uuid: a fresh v4 UUID per read");
  snprintf(u1, sizeof u1, "%s", gread("/proc/sys/kernel/random/boot_id"));
  snprintf(u2, sizeof u2, "%s", gread("/proc/sys/kernel/random/boot_id"));
  ok(strlen(u1) == 37 && strcmp(u1, u2) == 0, "boot_id: the same for the sandbox");
  ok(strcmp(gread("/proc/sys/kernel/hostname"), "cowfork\n") == 0, "hostname: cowfork by default");
  uint64_t ub = galloc(NULL, sizeof(struct utsname));
  is(S1(SYS_uname, ub), 0, "uname");
  ok(strcmp(((struct utsname *)hp(ub))->nodename, "cowfork") == 0, "uname nodename: cowfork");
  snprintf(sb->hostname, sizeof sb->hostname, "box-7");
  S1(SYS_uname, ub);
  ok(strcmp(((struct utsname *)hp(ub))->nodename, "box-7") == 0, "uname nodename: the sandbox's (box-7)");
  ok(strcmp(gread("/proc/sys/kernel/hostname"), "box-7\n") == 0, "/proc/sys/kernel/hostname: box-7");
  long r = S2(SYS_sethostname, gs("other"), 5);
  if (sb->uid == 0) {
    is(r, 0, "sethostname as root");
    S1(SYS_uname, ub);
    ok(strcmp(((struct utsname *)hp(ub))->nodename, "other") == 0, "uname shows it");
  } else {
    is(r, -EPERM, "sethostname, not root: EPERM");
  }
}

static void test_writes_devices(void)
{
  diag("writes to /proc as Linux; the devices");
  int fd = gopen_rw("/proc/self/status", O_WRONLY);
  if (sb->uid == 0) {
    ok(fd >= 0, "root opens /proc/self/status for writing (as Linux)");
    is(S3(SYS_write, fd, gs("x"), 1), -EINVAL, "and a write is EINVAL");
    S1(SYS_close, fd);
    fd = gopen_rw("/proc/cpuinfo", O_WRONLY);
    is(S3(SYS_write, fd, gs("x"), 1), -EIO, "a write to /proc/cpuinfo: EIO");
    S1(SYS_close, fd);
    is(gopen_rw("/proc/sys/kernel/random/uuid", O_WRONLY), -EACCES, "uuid for writing: EACCES");
  } else {
    is(fd, -EACCES, "/proc/self/status for writing: EACCES");
  }
  is(gopen_rw("/proc/newfile", O_WRONLY | O_CREAT), -ENOENT, "create in /proc: ENOENT");
  fd = gopen_rw("/dev/shm/x", O_RDWR | O_CREAT);
  ok(fd >= 0, "create in /dev/shm: the sandbox's own, writable (shm_open)");
  ok(strcmp(glist("/dev/shm"), "x") == 0, "ls /dev/shm: x (got '%s')", glist("/dev/shm"));
  ok(!tmp_lookup(sb, "/tmp/x"), "not in /tmp");
  is(S2(SYS_rename, gs("/dev/shm/x"), gs("/tmp/x")), -EXDEV, "rename /dev/shm/x to /tmp: EXDEV (two file systems)");
  S1(SYS_close, fd);
  is(S1(SYS_unlink, gs("/dev/shm/x")), 0, "unlink /dev/shm/x (shm_unlink)");
  is(gopen_rw("/dev/null", O_RDONLY | O_CREAT | O_EXCL), -EEXIST, "O_EXCL /dev/null: EEXIST");
  fd = gopen_rw("/dev/null", O_WRONLY | O_CREAT | O_TRUNC);
  ok(fd >= 0, "> /dev/null (O_CREAT|O_TRUNC) opens");
  is(S3(SYS_write, fd, gs("abc"), 3), 3, "and takes writes");
  S1(SYS_close, fd);
  uint64_t b = galloc(NULL, 64);
  memset(hp(b), 0x55, 64);
  fd = gopen_rw("/dev/zero", O_RDONLY);
  is(S3(SYS_read, fd, b, 64), 64, "read /dev/zero");
  ok(((uint8_t *)hp(b))[0] == 0 && ((uint8_t *)hp(b))[63] == 0, "zeros");
  S1(SYS_close, fd);
  fd = gopen_rw("/dev/full", O_WRONLY);
  is(S3(SYS_write, fd, b, 1), -ENOSPC, "write /dev/full: ENOSPC");
  S1(SYS_close, fd);
  fd = gopen_rw("/dev/urandom", O_RDONLY);
  is(S3(SYS_read, fd, b, 32), 32, "read /dev/urandom");
  S1(SYS_close, fd);
  is(gopen_rw("/dev/tty", O_RDWR), -ENXIO, "/dev/tty without a terminal: ENXIO");
  struct stat st;
  ok(gstat("/dev/null", &st, false) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "/dev/null: c 1,3");
  ok(gstat("/dev/urandom", &st, false) == 0 && st.st_rdev == makedev(1, 9), "/dev/urandom: c 1,9");
  ok(gstat("/dev/shm", &st, false) == 0 && S_ISDIR(st.st_mode), "/dev/shm: a directory");
  ok(gstat("/dev/stdin", &st, true) == 0 && S_ISLNK(st.st_mode), "lstat /dev/stdin: a link");
  ok(gstat("/proc/self", &st, false) == 0 && S_ISDIR(st.st_mode), "stat /proc/self: a directory");
  is(S2(SYS_access, gs("/dev/null"), W_OK), 0, "access(/dev/null, W_OK)");
  is(S2(SYS_mkdir, gs("/proc/x"), 0755), -EROFS, "mkdir /proc/x: EROFS");
}

static bool has(char **env, const char *kv)
{
  for (; *env; env++)
    if (strcmp(*env, kv) == 0)
      return true;
  return false;
}

static void test_env(void)
{
  diag("the environment: the default plus what is named, never the caller's");
  char *from[] = {"SECRETVAR=hunter2", "TERM=xterm", "K=from-caller", "PATH=/caller/bin", NULL};
  const char *set[] = {"FOO=bar", "K", "MISSING", "LANG=de_DE.UTF-8"};
  char **e = cf_sandbox_env(set, 4, from, 0, NULL);
  ok(e != NULL, "cf_sandbox_env");
  ok(has(e, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "the default PATH, not the caller's");
  ok(has(e, "HOME=/root"), "HOME=/root for uid 0");
  ok(has(e, "LANG=de_DE.UTF-8") && !has(e, "LANG=C.UTF-8"), "LANG replaced by K=V");
  ok(has(e, "FOO=bar") && has(e, "K=from-caller"), "K=V and K (the caller's value)");
  int n = 0;
  bool secret = false, term = false, missing = false;
  for (char **p = e; *p; p++, n++) {
    secret |= strstr(*p, "SECRETVAR") != NULL;
    term |= strncmp(*p, "TERM=", 5) == 0;
    missing |= strncmp(*p, "MISSING", 7) == 0;
  }
  ok(!secret && !term && !missing, "no SECRETVAR, no TERM when not asked, no unset K");
  is(n, 5, "5 entries");
  free(e);
  e = cf_sandbox_env(NULL, 0, from, 1000, "xterm");
  ok(e && has(e, "HOME=/") && has(e, "TERM=xterm"), "uid 1000: HOME=/; TERM when given");
  free(e);
  const char *bad[] = {"=x"};
  ok(cf_sandbox_env(bad, 1, from, 0, NULL) == NULL && errno == EINVAL, "'=x': EINVAL");
  const char *bare[] = {"K"};
  ok(cf_sandbox_env(bare, 1, NULL, 0, NULL) == NULL && errno == EINVAL, "'K' without a caller: EINVAL");
  ok(cf_sandbox_hostname_ok("a") && !cf_sandbox_hostname_ok("") && !cf_sandbox_hostname_ok("a/b") &&
         !cf_sandbox_hostname_ok("a\nb"),
     "hostname checks");
}

/* Strings equal, showing what came. */
#define is_str(got, want, what) ok(strcmp((got), (want)) == 0, "%s (got '%s')", (what), (got))

/* The first line of text starting with key ("" if none). */
static const char *line_of(const char *text, const char *key)
{
  static char out[256];
  out[0] = 0;
  for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (!strncmp(l, key, strlen(key))) {
      snprintf(out, sizeof out, "%.*s", (int)strcspn(l, "\n"), l);
      break;
    }
  return out;
}

/* The sandbox's init, pid 1 (process.c proc_init), as a pid namespace's
 * init shows itself to its first child: /proc/1, signals dropped, group
 * and session 1, nobody's child; root's. */
static void test_init(void)
{
  diag("the sandbox's init: pid 1");
  const char *st = gread("/proc/1/status");
  is_str(line_of(st, "Name:"), "Name:\tinit", "/proc/1/status Name");
  is_str(line_of(st, "State:"), "State:\tS (sleeping)", "/proc/1/status State");
  is_str(line_of(st, "PPid:"), "PPid:\t0", "/proc/1/status PPid");
  is_str(line_of(st, "Pid:"), "Pid:\t1", "/proc/1/status Pid");
  is_str(line_of(st, "Uid:"), "Uid:\t0\t0\t0\t0", "/proc/1/status Uid: root's");
  is_str(line_of(st, "NSsid:"), "NSsid:\t1", "/proc/1/status NSsid");
  is_str(line_of(st, "VmSize:"), "", "/proc/1/status: no Vm lines (no memory)");
  ok(!strncmp(gread("/proc/1/stat"), "1 (init) S 0 1 1 ", 17), "/proc/1/stat: 1 (init) S 0 1 1 (got '%.40s')",
     gread("/proc/1/stat"));
  is_str(gread("/proc/1/comm"), "init\n", "/proc/1/comm");
  is_str(gread("/proc/1/maps"), "", "/proc/1/maps: empty");
  is_str(glist("/proc/1/fd"), "", "ls /proc/1/fd: empty");
  is_str(glist("/proc/1/task"), "1", "ls /proc/1/task");
  is_str(greadlink("/proc/1/cwd"), "/", "/proc/1/cwd");
  is_str(greadlink("/proc/1/exe"), "(ENOENT)", "/proc/1/exe: ENOENT (no program)");
  struct stat s;
  ok(gstat("/proc/1", &s, false) == 0 && S_ISDIR(s.st_mode) && s.st_uid == 0, "stat /proc/1: a directory, root's");

  is(S0(SYS_getppid), 1, "getppid: 1");
  is(S2(SYS_kill, 1, 0), 0, "kill(1, 0): 0");
  is(S2(SYS_kill, 1, SIGKILL), 0, "kill(1, SIGKILL): 0, dropped");
  is(S2(SYS_kill, 1, SIGSTOP), 0, "kill(1, SIGSTOP): 0, dropped");
  is(S2(SYS_kill, 1, SIGTERM), 0, "kill(1, SIGTERM): 0, dropped");
  is(S2(SYS_kill, 1, 65), -EINVAL, "kill(1, 65): EINVAL");
  is_str(line_of(gread("/proc/1/status"), "State:"), "State:\tS (sleeping)", "still sleeping after them");
  is(S2(SYS_kill, -1, 0), -ESRCH, "kill(-1, 0) alone: ESRCH (init is not reached)");
  is(S1(SYS_getpgid, 1), 1, "getpgid(1): 1");
  is(S1(SYS_getsid, 1), 1, "getsid(1): 1");
  is(S4(SYS_wait4, 1, 0, WNOHANG, 0), -ECHILD, "wait4(1): ECHILD");
  is(S2(SYS_setpgid, 1, 0), -ESRCH, "setpgid(1, 0): ESRCH");
  is(S1(SYS_sched_getscheduler, 1), 0, "sched_getscheduler(1): SCHED_OTHER");
  long pfd = S2(SYS_pidfd_open, 1, 0);
  ok(pfd >= 0, "pidfd_open(1): a pidfd");
  if (pfd >= 0) {
    is(S4(SYS_pidfd_send_signal, pfd, SIGTERM, 0, 0), 0, "pidfd_send_signal(init, SIGTERM): 0, dropped");
    uint64_t pl = galloc(NULL, sizeof(struct pollfd));
    *(struct pollfd *)hp(pl) = (struct pollfd){(int)pfd, POLLIN, 0};
    is(S3(SYS_poll, pl, 1, 0), 0, "poll of init's pidfd: not readable (it has not ended)");
    S1(SYS_close, pfd);
  }
  int uid = sb->uid;
  sb->uid = 1000;
  is(S2(SYS_kill, 1, 0), -EPERM, "kill(1, 0) by a user: EPERM (init is root's)");
  sb->uid = uid;
}

int main(void)
{
  sb_setup();
  test_host_unreachable();
  test_listing();
  test_process_files();
  test_fdinfo();
  test_init();
  test_system_files();
  test_writes_devices();
  test_env();
  shim_teardown();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", hostdir);
  if (system(cmd) != 0)
    diag("could not remove %s", hostdir);
  return done_testing();
}
