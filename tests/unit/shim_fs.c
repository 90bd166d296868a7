/* The shim's files and address space without a VM: a struct sb over an
 * anonymous "guest memory" mapping, system calls served by sys_dispatch as
 * the run loop would, guest pointers into a scratch VMA. Needs no /dev/kvm,
 * so it runs everywhere. Arguments pick groups (mkdir region attrs locks
 * shared hidden select limits); none runs them all. Each check is what Linux does (issue 11: mkdir
 * under a missing /tmp parent, the /tmp region out of the guest's reach,
 * chmod/utimensat, record locks, MAP_SHARED of /tmp files, the root's /tmp
 * invisible, select, socket calls on files, mmap/brk limits). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "shim/shim.h"
#include "shim_util.h"
#include "tap.h"

static char root[] = "/var/tmp/cowfork-shimfs.XXXXXX";

static void sb_setup(void)
{
  if (!mkdtemp(root))
    abort();
  char p[512];
  /* The root's own /tmp, with a directory and a file: never to be seen. */
  snprintf(p, sizeof p, "%s/tmp", root);
  mkdir(p, 0777);
  snprintf(p, sizeof p, "%s/tmp/hostdir", root);
  mkdir(p, 0777);
  snprintf(p, sizeof p, "%s/tmp/hostdir/file", root);
  int fd = open(p, O_CREAT | O_WRONLY, 0644);
  if (fd < 0 || write(fd, "host", 4) != 4)
    abort();
  close(fd);
  snprintf(p, sizeof p, "%s/lnk", root); /* a path into the root's /tmp through a symlink */
  if (symlink("/tmp/hostdir", p) < 0)
    abort();
  snprintf(p, sizeof p, "%s/etc", root);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/etc/plain", root);
  fd = open(p, O_CREAT | O_WRONLY, 0644);
  close(fd);

  shim_setup(root);
}

static void sb_teardown(void)
{
  shim_teardown();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0)
    diag("could not remove %s", root);
}


static long gwrite(int fd, const char *s) { return S3(SYS_write, fd, gs(s), strlen(s)); }

/* pread into a string (NUL-terminated). */
static const char *gpread(int fd, size_t n, off_t off)
{
  static char out[4096];
  uint64_t b = galloc(NULL, n);
  long r = S4(SYS_pread64, fd, b, n, off);
  if (r < 0)
    r = 0;
  memcpy(out, hp(b), (size_t)r);
  out[r] = 0;
  return out;
}

static long gstat(const char *path, struct stat *st)
{
  uint64_t b = galloc(NULL, sizeof *st);
  long r = S2(SYS_stat, gs(path), b);
  memcpy(st, hp(b), sizeof *st);
  return r;
}

static void test_mkdir(void)
{
  diag("mkdir and friends under a missing /tmp parent: ENOENT, never a crash or a name with '/'");
  /* First a mkdir that works: the frame of the next one then holds its
   * parent and name (what an unset *parent_out of walk() used to pick up). */
  is(S2(SYS_mkdir, gs("/tmp/a"), 0755), 0, "mkdir /tmp/a");
  is(S2(SYS_mkdir, gs("/tmp/nope/x"), 0755), -ENOENT, "then mkdir /tmp/nope/x: ENOENT");
  ok(strcmp(glist("/tmp"), "a") == 0, "/tmp lists only 'a' (got '%s')", glist("/tmp"));
  is(S1(SYS_rmdir, gs("/tmp/a")), 0, "rmdir /tmp/a");
  is(S2(SYS_mkdir, gs("/tmp/nope/x"), 0755), -ENOENT, "mkdir /tmp/nope/x: ENOENT");
  is(S2(SYS_mkdir, gs("/tmp/nope/deeper/x"), 0755), -ENOENT, "mkdir /tmp/nope/deeper/x: ENOENT");
  is(S3(SYS_mkdirat, AT_FDCWD, gs("/tmp/nope/x"), 0755), -ENOENT, "mkdirat: ENOENT");
  is(gopen("/tmp/nope/f", O_CREAT | O_WRONLY, 0644), -ENOENT, "open(O_CREAT) /tmp/nope/f: ENOENT");
  int fd = gopen("/tmp/file", O_CREAT | O_WRONLY, 0644);
  ok(fd >= 0, "create /tmp/file");
  S1(SYS_close, fd);
  is(S2(SYS_mkdir, gs("/tmp/file/x"), 0755), -ENOTDIR, "mkdir /tmp/file/x: ENOTDIR");
  is(gopen("/tmp/file/x", O_CREAT | O_WRONLY, 0644), -ENOTDIR, "open(O_CREAT) /tmp/file/x: ENOTDIR");
  is(S2(SYS_rename, gs("/tmp/file"), gs("/tmp/nope/file")), -ENOENT, "rename into a missing dir: ENOENT");
  is(S2(SYS_rename, gs("/tmp/nope/a"), gs("/tmp/b")), -ENOENT, "rename from a missing dir: ENOENT");
  is(S1(SYS_unlink, gs("/tmp/nope/a")), -ENOENT, "unlink in a missing dir: ENOENT");
  is(S2(SYS_mkdir, gs("/tmp"), 0755), -EEXIST, "mkdir /tmp: EEXIST");
  is(S2(SYS_mkdir, gs("/tmp/d"), 0755), 0, "mkdir /tmp/d");
  is(S2(SYS_mkdir, gs("/tmp/d/e"), 0755), 0, "mkdir /tmp/d/e");
  ok(strcmp(glist("/tmp"), "file d") == 0, "/tmp lists 'file d' (got '%s')", glist("/tmp"));
  ok(strcmp(glist("/tmp/d"), "e") == 0, "/tmp/d lists 'e' (got '%s')", glist("/tmp/d"));
}

static void test_region(void)
{
  diag("the /tmp data region is out of the guest's reach");
  uint64_t tb = TMP_BASE(SHIM_MEM), ts = TMP_SIZE(SHIM_MEM);
  int fd = gopen("/tmp/r", O_CREAT | O_RDWR, 0644);
  is(gwrite(fd, "before"), 6, "write /tmp/r");
  is(S2(SYS_munmap, tb, ts), 0, "munmap of the region: 0 (nothing of the guest's is there)");
  is(S6(SYS_mmap, tb, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), -ENOMEM,
     "mmap MAP_FIXED over it: ENOMEM");
  is(S6(SYS_mmap, tb - PAGE, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), -ENOMEM,
     "mmap MAP_FIXED across its start: ENOMEM");
  is(S6(SYS_mmap, tb, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), -ENOMEM,
     "mmap MAP_FIXED_NOREPLACE over it: ENOMEM");
  long hint = S6(SYS_mmap, tb, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ok(hint > 0 && ((uint64_t)hint + PAGE <= tb || (uint64_t)hint >= tb + ts), "mmap with it as a hint maps elsewhere");
  is(S3(SYS_mprotect, tb, PAGE, PROT_READ | PROT_WRITE), -ENOMEM, "mprotect of it: ENOMEM (unmapped for the guest)");
  /* A mapping just below the region, then one munmap across both. */
  uint64_t below = tb - 2 * PAGE;
  is(S6(SYS_mmap, below, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), (long)below,
     "mmap MAP_FIXED just below it");
  is(S2(SYS_munmap, below, 2 * PAGE + ts + PAGE), 0, "munmap across the mapping and the region");
  ok(mm_find(sb, below) == NULL, "the mapping below went");
  /* The shim still reads and writes /tmp (the region kept its host mapping). */
  is(S4(SYS_pwrite64, fd, gs("after!"), 6, 6), 6, "write /tmp/r after all that");
  ok(strcmp(gpread(fd, 64, 0), "beforeafter!") == 0, "read /tmp/r back: '%s'", gpread(fd, 64, 0));
  for (int i = 0; i < 64; i++) {
    char name[32];
    snprintf(name, sizeof name, "/tmp/many%d", i);
    int f = gopen(name, O_CREAT | O_WRONLY, 0644);
    uint64_t b = galloc(NULL, 8192);
    memset(hp(b), 'x', 8192);
    if (S3(SYS_write, f, b, 8192) != 8192)
      break;
    S1(SYS_close, f);
  }
  ok(1, "64 more /tmp files of 8 KiB written after the munmap");
  S1(SYS_close, fd);
}

static void test_attrs(void)
{
  diag("chmod, fchmod, utime, utimes, utimensat take effect on /tmp files");
  struct stat st;
  int fd = gopen("/tmp/prog", O_CREAT | O_WRONLY, 0644);
  is(S2(SYS_chmod, gs("/tmp/prog"), 0755), 0, "chmod 0755");
  gstat("/tmp/prog", &st);
  is(st.st_mode & 07777, 0755, "stat shows 0755");
  is(S3(SYS_access, gs("/tmp/prog"), X_OK, 0), 0, "access X_OK (shutil.which) now 0");
  is(S2(SYS_fchmod, fd, 0600), 0, "fchmod 0600");
  gstat("/tmp/prog", &st);
  is(st.st_mode & 07777, 0600, "stat shows 0600");
  is(S3(SYS_access, gs("/tmp/prog"), X_OK, 0), -EACCES, "access X_OK: EACCES");
  is(S4(SYS_fchmodat, AT_FDCWD, gs("/tmp/prog"), 0711, 0), 0, "fchmodat 0711");
  gstat("/tmp/prog", &st);
  is(st.st_mode & 07777, 0711, "stat shows 0711");
  is(S2(SYS_chmod, gs("/tmp/nope/x"), 0755), -ENOENT, "chmod of a missing file: ENOENT");
  is(S2(SYS_chmod, gs("/etc/plain"), 0755), 0, "chmod of a root file: done in the upper layer (a copy-up)");
  gstat("/etc/plain", &st);
  is(st.st_mode & 07777, 0755, "stat shows 0755");
  {
    char hpth[600];
    struct stat hst;
    snprintf(hpth, sizeof hpth, "%s/etc/plain", root);
    ok(stat(hpth, &hst) == 0 && (hst.st_mode & 07777) == 0644, "the host file keeps 0644");
  }

  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  is(S4(SYS_utimensat, AT_FDCWD, gs("/tmp/prog"), galloc(ts, sizeof ts), 0), 0, "utimensat");
  gstat("/tmp/prog", &st);
  ok(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789, "atime set");
  ok(st.st_mtim.tv_sec == 1200000000 && st.st_mtim.tv_nsec == 987654321, "mtime set");
  struct timespec omit[2] = {{0, UTIME_OMIT}, {5, 0}};
  is(S4(SYS_utimensat, fd, 0, galloc(omit, sizeof omit), 0), 0, "futimens (utimensat fd, NULL) with UTIME_OMIT");
  gstat("/tmp/prog", &st);
  ok(st.st_atim.tv_sec == 1000000000 && st.st_mtim.tv_sec == 5, "atime kept, mtime 5");
  int64_t ub[2] = {111, 222};
  is(S2(SYS_utime, gs("/tmp/prog"), galloc(ub, sizeof ub)), 0, "utime");
  gstat("/tmp/prog", &st);
  ok(st.st_atim.tv_sec == 111 && st.st_mtim.tv_sec == 222 && st.st_mtim.tv_nsec == 0, "utime's times");
  struct timeval tv[2] = {{333, 1}, {444, 2}};
  is(S2(SYS_utimes, gs("/tmp/prog"), galloc(tv, sizeof tv)), 0, "utimes");
  gstat("/tmp/prog", &st);
  ok(st.st_atim.tv_sec == 333 && st.st_mtim.tv_sec == 444 && st.st_mtim.tv_nsec == 2000, "utimes' times");
  struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
  is(S4(SYS_utimensat, AT_FDCWD, gs("/tmp/prog"), galloc(bad, sizeof bad), 0), -EINVAL, "bad tv_nsec: EINVAL");
  time_t now = time(NULL);
  is(S4(SYS_utimensat, AT_FDCWD, gs("/tmp/prog"), 0, 0), 0, "utimensat(NULL times): now");
  gstat("/tmp/prog", &st);
  ok(st.st_mtim.tv_sec >= now - 1 && st.st_mtim.tv_sec <= now + 1, "mtime is now");
  is(S4(SYS_utimensat, AT_FDCWD, gs("/etc/plain"), 0, 0), 0, "utimensat of a root file: done in the upper layer");
  is(S4(SYS_utimensat, AT_FDCWD, 0, 0, 0), -EFAULT, "utimensat(AT_FDCWD, NULL): EFAULT");
  is(S3(SYS_chown, gs("/tmp/prog"), getuid(), getgid()), 0, "chown to oneself");
  S1(SYS_close, fd);
}

static void test_locks(void)
{
  diag("record locks: F_GETLK fills struct flock; OFD and flock locks conflict between open files");
  int a = gopen("/tmp/lk", O_CREAT | O_RDWR, 0644), b = gopen("/tmp/lk", O_RDWR, 0);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10, .l_pid = 77};
  uint64_t g = galloc(&fl, sizeof fl);
  is(S3(SYS_fcntl, a, F_GETLK, g), 0, "F_GETLK");
  struct flock *o = hp(g);
  is(o->l_type, F_UNLCK, "no conflicting lock: l_type F_UNLCK");
  is(o->l_start, 0, "l_start as given");
  is(o->l_len, 10, "l_len as given");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  is(S3(SYS_fcntl, a, F_SETLK, g), 0, "F_SETLK write lock");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 10};
  is(S3(SYS_fcntl, b, F_SETLK, g), 0, "F_SETLK through another fd: the same process owns POSIX locks");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  is(S3(SYS_fcntl, b, F_OFD_SETLK, g), -EAGAIN, "F_OFD_SETLK over the POSIX lock: EAGAIN");
  *o = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  is(S3(SYS_fcntl, b, F_OFD_GETLK, g), 0, "F_OFD_GETLK");
  ok(o->l_type == F_WRLCK && o->l_start == 0 && o->l_len == 15 && o->l_pid == sb->pid,
     "reports the process's write lock [0, 15) (type %d start %ld len %ld pid %d)", o->l_type, (long)o->l_start,
     (long)o->l_len, o->l_pid);
  *o = (struct flock){.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  is(S3(SYS_fcntl, a, F_SETLK, g), 0, "unlock all");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
  is(S3(SYS_fcntl, a, F_OFD_SETLK, g), 0, "F_OFD_SETLK on fd a");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
  is(S3(SYS_fcntl, b, F_OFD_SETLK, g), -EAGAIN, "F_OFD_SETLK on fd b (another open file): EAGAIN");
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  is(S3(SYS_fcntl, b, F_GETLK, g), 0, "F_GETLK");
  ok(o->l_type == F_WRLCK && o->l_start == 100 && o->l_len == 1 && o->l_pid == -1, "reports the OFD lock, pid -1");
  *o = (struct flock){.l_type = 99, .l_whence = SEEK_SET};
  is(S3(SYS_fcntl, a, F_SETLK, g), -EINVAL, "bad l_type: EINVAL");
  int r = gopen("/tmp/lk", O_RDONLY, 0);
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 1};
  is(S3(SYS_fcntl, r, F_SETLK, g), -EBADF, "write lock on a read-only fd: EBADF");
  S1(SYS_close, r);
  S1(SYS_close, a); /* its OFD lock goes with it */
  *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
  is(S3(SYS_fcntl, b, F_OFD_SETLK, g), 0, "after closing a, b gets the lock");
  a = gopen("/tmp/lk", O_RDWR, 0);
  is(S2(SYS_flock, a, LOCK_EX), 0, "flock LOCK_EX on a");
  is(S2(SYS_flock, b, LOCK_EX | LOCK_NB), -EWOULDBLOCK, "flock LOCK_EX|LOCK_NB on b: EWOULDBLOCK");
  is(S2(SYS_flock, a, LOCK_UN), 0, "flock LOCK_UN");
  is(S2(SYS_flock, b, LOCK_SH | LOCK_NB), 0, "then b gets it");
  is(S2(SYS_flock, 99, LOCK_SH), -EBADF, "flock on a bad fd: EBADF");
  S1(SYS_close, a);
  S1(SYS_close, b);
}

static void test_shared(void)
{
  diag("MAP_SHARED of a /tmp file: stores reach the file, writes reach the mapping");
  int fd = gopen("/tmp/shm", O_CREAT | O_RDWR, 0644);
  uint64_t b = galloc(NULL, 8192);
  memset(hp(b), 'a', 8192);
  is(S3(SYS_write, fd, b, 8192), 8192, "write 8 KiB of 'a'");
  long m = S6(SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ok(m > 0, "mmap MAP_SHARED read-write");
  long m2 = S6(SYS_mmap, 0, 8192, PROT_READ, MAP_SHARED, fd, 0);
  ok(m2 > 0, "a second, read-only MAP_SHARED mapping");
  memcpy(hp((uint64_t)m), "Hello", 5);
  memcpy((char *)hp((uint64_t)m) + 4096, "World", 5);
  ok(strncmp(gpread(fd, 5, 0), "Hello", 5) == 0, "pread sees the store at 0");
  ok(strncmp(gpread(fd, 5, 4096), "World", 5) == 0, "pread sees the store at 4096");
  ok(memcmp(hp((uint64_t)m2), "Hello", 5) == 0, "the other mapping sees it");
  is(S4(SYS_pwrite64, fd, gs("J"), 1, 0), 1, "pwrite 'J' at 0");
  ok(memcmp(hp((uint64_t)m), "Jello", 5) == 0, "the mapping sees the write");
  ok(memcmp(hp((uint64_t)m2), "Jello", 5) == 0, "so does the read-only one");
  is(S3(SYS_msync, m, 8192, MS_SYNC), 0, "msync");
  is(S3(SYS_msync, m + 1, 8192, MS_SYNC), -EINVAL, "msync unaligned: EINVAL");
  memcpy((char *)hp((uint64_t)m) + 100, "tail", 4);
  is(S2(SYS_munmap, m, 8192), 0, "munmap");
  S2(SYS_munmap, m2, 8192);
  ok(strncmp(gpread(fd, 4, 100), "tail", 4) == 0, "a store just before munmap is in the file");
  /* Partial munmap keeps the rest coherent. */
  m = S6(SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  is(S2(SYS_munmap, m, 4096), 0, "munmap the first page");
  memcpy((char *)hp((uint64_t)m) + 4096, "Again", 5);
  ok(strncmp(gpread(fd, 5, 4096), "Again", 5) == 0, "the second page is still shared");
  /* After close the mapping stays. */
  S1(SYS_close, fd);
  memcpy((char *)hp((uint64_t)m) + 4096, "Close", 5);
  fd = gopen("/tmp/shm", O_RDONLY, 0);
  ok(strncmp(gpread(fd, 5, 4096), "Close", 5) == 0, "a store after close reaches the file");
  is(S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), -EACCES,
     "MAP_SHARED writable of a read-only fd: EACCES");
  S1(SYS_close, fd);
  S2(SYS_munmap, m + 4096, 4096);
}

static void test_hidden(void)
{
  diag("the root's /tmp is never seen: the sandbox's /tmp is its own");
  struct stat st;
  is(gstat("/tmp/hostdir", &st), -ENOENT, "stat /tmp/hostdir: ENOENT");
  is(gopen("/tmp/hostdir/file", O_RDONLY, 0), -ENOENT, "open /tmp/hostdir/file: ENOENT");
  is(gstat("/lnk/file", &st), -ENOENT, "through a symlink into it: ENOENT");
  is(gopen("/lnk/file", O_RDONLY, 0), -ENOENT, "open through the symlink: ENOENT");
  is(S1(SYS_chdir, gs("/tmp/hostdir")), -ENOENT, "chdir /tmp/hostdir: ENOENT");
  is(S2(SYS_mkdir, gs("/tmp/hostdir"), 0755), 0, "mkdir /tmp/hostdir");
  is(gopen("/tmp/hostdir/file", O_RDONLY, 0), -ENOENT, "its host file still is not seen");
  ok(strcmp(glist("/tmp/hostdir"), "") == 0, "it lists empty");
  ok(gopen("/etc/plain", O_RDONLY, 0) >= 0, "the rest of the root is seen");
}

static void test_select(void)
{
  diag("select, pselect6; socket calls on files");
  fd_set r;
  FD_ZERO(&r);
  FD_SET(0, &r);
  uint64_t gr = galloc(&r, sizeof r);
  struct timeval tv = {1, 0};
  is(S5(SYS_select, 1, gr, 0, 0, galloc(&tv, sizeof tv)), 1, "select on fd 0 (/dev/null): 1 ready");
  ok(FD_ISSET(0, (fd_set *)hp(gr)), "fd 0 is set");
  int fd = gopen("/tmp/sel", O_CREAT | O_RDWR, 0644);
  FD_ZERO(&r);
  FD_SET(fd, &r);
  gr = galloc(&r, sizeof r);
  uint64_t gw = galloc(&r, sizeof r);
  is(S5(SYS_select, fd + 1, gr, gw, 0, 0), 2, "select on a /tmp file: readable and writable");
  FD_ZERO(&r);
  FD_SET(100, &r);
  gr = galloc(&r, sizeof r);
  is(S5(SYS_select, 101, gr, 0, 0, 0), -EBADF, "select with a closed fd: EBADF");
  struct timespec tsp = {0, 0};
  gr = galloc(&r, sizeof r);
  is(S6(SYS_pselect6, 101, gr, 0, 0, galloc(&tsp, sizeof tsp), 0), -EBADF, "pselect6 with a closed fd: EBADF");
  struct timeval t2 = {0, 20000};
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  is(S5(SYS_select, 0, 0, 0, 0, galloc(&t2, sizeof t2)), 0, "select(0, ..., 20 ms): 0");
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
  ok(ms >= 19, "it slept %.1f ms", ms);
  is(S5(SYS_select, -1, 0, 0, 0, 0), -EINVAL, "select(-1): EINVAL");
  uint64_t v = galloc(NULL, 8), vl = galloc(NULL, 4);
  *(int *)hp(vl) = 4;
  is(S5(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, v, vl), -ENOTSOCK, "getsockopt on a file: ENOTSOCK");
  is(S3(SYS_getsockname, 0, v, vl), -ENOTSOCK, "getsockname on stdin: ENOTSOCK");
  is(S3(SYS_getpeername, 99, v, vl), -EBADF, "getpeername on a bad fd: EBADF");
  S1(SYS_close, fd);
}

static void test_limits(void)
{
  diag("mmap larger than guest memory, brk out of range, exec of /tmp files");
  is(S6(SYS_mmap, 0, SHIM_MEM + PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), -ENOMEM,
     "mmap larger than guest memory: ENOMEM");
  is(S6(SYS_mmap, 0, UINT64_MAX - 10, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), -ENOMEM, "mmap of ~2^64: ENOMEM");
  is(S6(SYS_mmap, 0, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0), -EINVAL, "mmap without a mapping type: EINVAL");
  long b0 = S1(SYS_brk, 0);
  is(S1(SYS_brk, UINT64_MAX), b0, "brk(0xffff...): the old break");
  is(S1(SYS_brk, 0), b0, "the break did not move");
  is(S1(SYS_brk, MMAP_TOP(SHIM_MEM) + PAGE), b0, "brk past the mmap area: the old break");
  is(S1(SYS_brk, b0 + 3 * PAGE), b0 + 3 * PAGE, "brk up 3 pages");
  is(S1(SYS_brk, b0), b0, "brk back down");
  int fd = gopen("/tmp/exe", O_CREAT | O_WRONLY, 0644);
  gwrite(fd, "\177ELF not really");
  S1(SYS_close, fd);
  is(fs_open_host(sb, AT_FDCWD, "/tmp/exe", O_RDONLY), -EACCES, "a /tmp file without x is not executable");
  S2(SYS_chmod, gs("/tmp/exe"), 0755);
  int h = fs_open_host(sb, AT_FDCWD, "/tmp/exe", O_RDONLY);
  char buf[32] = {0};
  ok(h >= 0 && pread(h, buf, sizeof buf, 0) == 15 && memcmp(buf, "\177ELF", 4) == 0,
     "with x, the loader gets a host copy of its bytes");
  if (h >= 0)
    close(h);
}

/* Host fds this process holds. */
static int host_fds(void)
{
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  while (readdir(d))
    n++;
  closedir(d);
  return n - 3; /* ".", "..", the DIR's own fd */
}

#define NMAPPED 600

static void test_hostfds(void)
{
  diag("mmap of %d distinct host files holds no host fd once their guest fds are closed (issue 12)", NMAPPED);
  char p[600];
  snprintf(p, sizeof p, "%s/many", root);
  mkdir(p, 0755);
  for (int i = 0; i < NMAPPED; i++) {
    snprintf(p, sizeof p, "%s/many/f%04d", root, i);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    char line[32];
    int n = snprintf(line, sizeof line, "file %d\n", i);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
      abort();
    close(fd);
  }
  int before = host_fds(), bad = 0;
  uint64_t *at = calloc(NMAPPED, sizeof *at);
  for (int i = 0; i < NMAPPED; i++) {
    char g[64], want[32];
    snprintf(g, sizeof g, "/many/f%04d", i);
    int fd = gopen(g, O_RDONLY, 0);
    long a = fd < 0 ? fd : S6(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    S1(SYS_close, fd);
    snprintf(want, sizeof want, "file %d\n", i);
    if (a < 0 || memcmp(hp((uint64_t)a), want, strlen(want)) != 0) {
      if (!bad++)
        diag("file %d: open %d, mmap %ld", i, fd, a);
    } else {
      at[i] = (uint64_t)a;
    }
  }
  is(bad, 0, "%d files opened, mapped (their bytes seen) and closed", NMAPPED);
  int after = host_fds();
  is(after - before, 0, "host fds held: %d before, %d after (no per-file cache)", before, after);
  for (int i = 0; i < NMAPPED; i++)
    if (at[i])
      S2(SYS_munmap, at[i], PAGE);
  free(at);
  int fd = gopen("/many/f0001", O_RDONLY, 0);
  long a = S6(SYS_mmap, 0, 3 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
  ok(a > 0 && memcmp(hp((uint64_t)a), "file 1\n", 7) == 0 && ((char *)hp((uint64_t)a))[PAGE] == 0,
     "a mapping past the end of the file: zeros there");
  S2(SYS_munmap, a, 3 * PAGE);
  S1(SYS_close, fd);
  int dfd = gopen("/many", O_RDONLY | O_DIRECTORY, 0);
  is(S6(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, dfd, 0), -ENODEV, "mmap of a directory: ENODEV");
  S1(SYS_close, dfd);
}

static void test_nofile(void)
{
  diag("max_files: the guest's RLIMIT_NOFILE, EMFILE past it, host fds bounded by it");
  opts.max_files = 20;
  uint64_t rl = galloc(NULL, 16);
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, rl), 0, "prlimit64(RLIMIT_NOFILE)");
  ok(((uint64_t *)hp(rl))[0] == 20 && ((uint64_t *)hp(rl))[1] == 20, "RLIMIT_NOFILE is 20 (max_files)");
  int before = host_fds(), last = -1, n = 0;
  long r;
  while ((r = gopen("/etc/plain", O_RDONLY, 0)) >= 0 && n < 100) {
    last = (int)r;
    n++;
  }
  is(r, -EMFILE, "open past max_files: EMFILE (after %d opens, last fd %d)", n, last);
  is(last, 19, "the last fd is 19");
  ok(host_fds() - before <= n, "host fds grew by %d for %d opens", host_fds() - before, n);
  uint64_t pv = galloc(NULL, 8);
  is(S2(SYS_pipe2, pv, 0), -EMFILE, "pipe2 at the limit: EMFILE");
  is(S1(SYS_dup, 0), -EMFILE, "dup at the limit: EMFILE");
  is(S2(SYS_dup2, 0, 20), -EBADF, "dup2 to fd 20: EBADF");
  is(S3(SYS_fcntl, 0, F_DUPFD, 20), -EINVAL, "F_DUPFD from 20: EINVAL");
  uint64_t pfd = galloc(NULL, 21 * 8);
  is(S3(SYS_poll, pfd, 21, 0), -EINVAL, "poll of 21 fds: EINVAL");
  for (int fd = 3; fd <= last; fd++)
    S1(SYS_close, fd);
  ok(host_fds() <= before, "closed: host fds back to %d (%d)", before, host_fds());
  opts.max_files = 0;
}

/* mremap (issue 15, item 3; it was always ENOMEM): shrink, grow in place,
 * MAYMOVE, FIXED, a shared file mapping moved stays the file's. */
static void test_mremap(void)
{
  diag("mremap: shrink, grow in place, MREMAP_MAYMOVE, MREMAP_FIXED, shared file mappings");
  long p = S6(SYS_mmap, 0, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *h = hp((uint64_t)p);
  for (int i = 0; i < 16; i++)
    h[i * PAGE] = (char)('a' + i);
  S2(SYS_munmap, p + 4 * PAGE, 12 * PAGE);
  is(S5(SYS_mremap, p, 4 * PAGE, 8 * PAGE, 0, 0), p, "grow in place");
  ok(h[3 * PAGE] == 'd' && h[5 * PAGE] == 0, "old bytes kept, new ones zero");
  is(S5(SYS_mremap, p, 8 * PAGE, 2 * PAGE, 0, 0), p, "shrink");
  is(S3(SYS_msync, p + 2 * PAGE, PAGE, 0), -ENOMEM, "the tail is unmapped");
  S6(SYS_mmap, p + 2 * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  is(S5(SYS_mremap, p, 2 * PAGE, 4 * PAGE, 0, 0), -ENOMEM, "grow without room nor MAYMOVE: ENOMEM");
  long q = S5(SYS_mremap, p, 2 * PAGE, 64 * PAGE, MREMAP_MAYMOVE, 0);
  ok(q > 0 && q != p, "MAYMOVE moved it (%lx)", q);
  ok(q > 0 && ((char *)hp((uint64_t)q))[PAGE] == 'b' && ((char *)hp((uint64_t)q))[40 * PAGE] == 0, "moved bytes kept");
  is(S3(SYS_msync, p, PAGE, 0), -ENOMEM, "the old range is unmapped");
  S2(SYS_munmap, p + 2 * PAGE, PAGE);
  long t = S6(SYS_mmap, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  is(S5(SYS_mremap, q, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, t), t, "MREMAP_FIXED to a target");
  is(((char *)hp((uint64_t)t))[0], 'a', "the target holds the bytes");
  is(S5(SYS_mremap, t, PAGE, PAGE, MREMAP_FIXED, t + 8 * PAGE), -EINVAL, "FIXED without MAYMOVE: EINVAL");
  is(S5(SYS_mremap, t + 1, PAGE, PAGE, 0, 0), -EINVAL, "unaligned: EINVAL");
  is(S5(SYS_mremap, t, PAGE, 0, MREMAP_MAYMOVE, 0), -EINVAL, "new size 0: EINVAL");
  is(S5(SYS_mremap, p + 2 * PAGE, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0), -EFAULT, "unmapped: EFAULT");
  S2(SYS_munmap, t, 3 * PAGE);
  S2(SYS_munmap, q, 64 * PAGE);
  int fd = gopen("/tmp/mr", O_CREAT | O_RDWR | O_TRUNC, 0600);
  S2(SYS_ftruncate, fd, 4 * PAGE);
  long m = S6(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ((char *)hp((uint64_t)m))[0] = 's';
  long m2 = S5(SYS_mremap, m, PAGE, 4 * PAGE, MREMAP_MAYMOVE, 0);
  ok(m2 > 0, "a shared file mapping grown (%ld)", m2);
  if (m2 > 0) {
    ((char *)hp((uint64_t)m2))[3 * PAGE] = 'e';
    is(strcmp(gpread(fd, 1, 3 * PAGE), "e"), 0, "a store through it is in the file");
    is(strcmp(gpread(fd, 1, 0), "s"), 0, "the first page kept");
    S2(SYS_munmap, m2, 4 * PAGE);
  }
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/mr"));
  /* glibc's realloc of a big block (busybox sh growing a string): the
   * mapping just below the mmap top grows in place past it; the next mmap
   * must not be placed inside it (mm_find_free walked from below the top). */
  uint64_t top = sb->mmap_top;
  S2(SYS_munmap, top - 33 * PAGE, 65 * PAGE); /* room at and above the top */
  long hi = S6(SYS_mmap, top - 33 * PAGE, 33 * PAGE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  long g = S5(SYS_mremap, hi, 33 * PAGE, 65 * PAGE, MREMAP_MAYMOVE, 0);
  is(g, hi, "the mapping below the mmap top grown in place, past it (%lx -> %lx)", hi, g);
  long nx = S6(SYS_mmap, 0, 33 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ok(nx > 0 && (nx + 33 * (long)PAGE <= g || nx >= g + 65 * (long)PAGE), "a new mapping lies outside it (%lx, grown %lx)",
     nx, g);
  S2(SYS_munmap, nx, 33 * PAGE);
  S2(SYS_munmap, g, 65 * PAGE);
}

/* renameat2 RENAME_EXCHANGE (issue 15, item 3; it was EINVAL). */
static void test_exchange(void)
{
  diag("renameat2 RENAME_EXCHANGE: upper files, a root file, directories");
  int fd = gopen("/tmp/xa", O_CREAT | O_WRONLY, 0600);
  gwrite(fd, "A");
  S1(SYS_close, fd);
  fd = gopen("/tmp/xb", O_CREAT | O_WRONLY, 0600);
  gwrite(fd, "B");
  S1(SYS_close, fd);
  S2(SYS_mkdir, gs("/tmp/xd"), 0700);
  S1(SYS_close, gopen("/tmp/xd/in", O_CREAT | O_WRONLY, 0600));
  is(S5(SYS_renameat2, AT_FDCWD, gs("/tmp/xa"), AT_FDCWD, gs("/tmp/xb"), RENAME_EXCHANGE), 0, "exchange two files");
  fd = gopen("/tmp/xa", O_RDONLY, 0);
  is(strcmp(gpread(fd, 1, 0), "B"), 0, "xa holds B");
  S1(SYS_close, fd);
  is(S5(SYS_renameat2, AT_FDCWD, gs("/tmp/xa"), AT_FDCWD, gs("/tmp/xd"), RENAME_EXCHANGE), 0, "a file and a directory");
  struct stat st;
  ok(gstat("/tmp/xa/in", &st) == 0 && gstat("/tmp/xd", &st) == 0 && S_ISREG(st.st_mode), "they swapped");
  is(S5(SYS_renameat2, AT_FDCWD, gs("/tmp/xb"), AT_FDCWD, gs("/tmp/nope"), RENAME_EXCHANGE), -ENOENT, "a missing one: ENOENT");
  is(S5(SYS_renameat2, AT_FDCWD, gs("/tmp/xb"), AT_FDCWD, gs("/tmp/xd"), RENAME_EXCHANGE | RENAME_NOREPLACE), -EINVAL,
     "EXCHANGE|NOREPLACE: EINVAL");
  is(S5(SYS_renameat2, AT_FDCWD, gs("/tmp/xa"), AT_FDCWD, gs("/tmp/xa/in"), RENAME_EXCHANGE), -EINVAL, "into itself: EINVAL");
  is(S5(SYS_renameat2, AT_FDCWD, gs("/etc/plain"), AT_FDCWD, gs("/tmp/xb"), RENAME_EXCHANGE), 0, "a root file and an upper one");
  fd = gopen("/etc/plain", O_RDONLY, 0);
  is(strcmp(gpread(fd, 1, 0), "A"), 0, "/etc/plain holds the upper file's bytes");
  S1(SYS_close, fd);
  ok(gstat("/tmp/xb", &st) == 0 && st.st_size == 0, "/tmp/xb is the root's (empty) file");
  char p[600];
  snprintf(p, sizeof p, "%s/etc/plain", root);
  ok(stat(p, &st) == 0 && st.st_size == 0, "the host's file untouched");
  is(S5(SYS_renameat2, AT_FDCWD, gs("/etc"), AT_FDCWD, gs("/tmp/xa"), RENAME_EXCHANGE), -EXDEV, "a root directory: EXDEV");
  S1(SYS_unlink, gs("/tmp/xa/in"));
  S1(SYS_rmdir, gs("/tmp/xa"));
  S1(SYS_unlink, gs("/tmp/xb"));
  S1(SYS_unlink, gs("/tmp/xd"));
}

/* O_TMPFILE (issue 15, item 3; it was EISDIR): a file with no name, named
 * by linkat through /proc/self/fd/N or AT_EMPTY_PATH. */
static void test_tmpfile(void)
{
  diag("O_TMPFILE in an upper and a root directory; linkat gives it a name");
  int fd = gopen("/tmp", O_TMPFILE | O_RDWR, 0640);
  ok(fd >= 0, "O_TMPFILE in /tmp (%d)", fd);
  gwrite(fd, "tmp!");
  uint64_t b = galloc(NULL, sizeof(struct stat));
  S2(SYS_fstat, fd, b);
  struct stat st;
  memcpy(&st, hp(b), sizeof st);
  ok(st.st_nlink == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0640 && st.st_size == 4, "nlink 0, mode 0640, 4 bytes");
  is(strcmp(glist("/tmp"), ""), 0, "/tmp lists nothing (%s)", glist("/tmp"));
  char pp[64];
  snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
  is(S5(SYS_linkat, AT_FDCWD, gs(pp), AT_FDCWD, gs("/tmp/named"), AT_SYMLINK_FOLLOW), 0, "linkat /proc/self/fd/N");
  S2(SYS_fstat, fd, b);
  memcpy(&st, hp(b), sizeof st);
  is((int)st.st_nlink, 1, "nlink 1");
  is(S5(SYS_linkat, fd, gs(""), AT_FDCWD, gs("/tmp/named2"), AT_EMPTY_PATH), 0, "linkat AT_EMPTY_PATH (root)");
  int g = gopen("/tmp/named2", O_RDONLY, 0);
  is(strcmp(gpread(g, 4, 0), "tmp!"), 0, "the second name reads its bytes");
  S1(SYS_close, g);
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/named"));
  S1(SYS_unlink, gs("/tmp/named2"));
  fd = gopen("/tmp", O_TMPFILE | O_RDWR | O_EXCL, 0600);
  snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
  is(S5(SYS_linkat, AT_FDCWD, gs(pp), AT_FDCWD, gs("/tmp/ex"), AT_SYMLINK_FOLLOW), -ENOENT, "O_EXCL: never named (ENOENT)");
  S1(SYS_close, fd);
  is(gopen("/tmp", O_TMPFILE | O_RDONLY, 0600), -EINVAL, "O_RDONLY: EINVAL");
  is(gopen("/etc/plain", O_TMPFILE | O_RDWR, 0600), -ENOTDIR, "on a file: ENOTDIR");
  is(gopen("/nope", O_TMPFILE | O_RDWR, 0600), -ENOENT, "on a missing directory: ENOENT");
  fd = gopen("/etc", O_TMPFILE | O_WRONLY, 0600);
  ok(fd >= 0, "O_TMPFILE in a root directory");
  snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
  is(S5(SYS_linkat, AT_FDCWD, gs(pp), AT_FDCWD, gs("/etc/made"), AT_SYMLINK_FOLLOW), 0, "named in the root's /etc");
  ok(gstat("/etc/made", &st) == 0 && S_ISREG(st.st_mode), "/etc/made is there");
  char p[600];
  snprintf(p, sizeof p, "%s/etc/made", root);
  ok(access(p, F_OK) < 0, "not on the host");
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/etc/made"));
  fd = gopen("/tmp/del", O_CREAT | O_RDWR, 0600);
  S1(SYS_unlink, gs("/tmp/del"));
  snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
  is(S5(SYS_linkat, AT_FDCWD, gs(pp), AT_FDCWD, gs("/tmp/back"), AT_SYMLINK_FOLLOW), -ENOENT, "a deleted file: ENOENT");
  S1(SYS_close, fd);
}

/* The next inotify event as "MASK NAME" (mask in hex), or the errno. */
static const char *ievent(int in)
{
  static char out[300];
  uint64_t b = galloc(NULL, 4096);
  long n = S3(SYS_read, in, b, 4096);
  if (n < 0) {
    snprintf(out, sizeof out, "%s", strerrorname_np((int)-n));
    return out;
  }
  struct inotify_event e;
  memcpy(&e, hp(b), sizeof e);
  snprintf(out, sizeof out, "%d %x %s%s", e.wd, e.mask, e.len ? (char *)hp(b) + sizeof e : "-", e.cookie ? " c" : "");
  return out;
}

/* inotify (issue 15, item 3; it was ENOSYS): the calls Python's and
 * Node's watchers make, for changes made in the sandbox. */
static void test_inotify(void)
{
  diag("inotify: create, modify, rename, delete in a watched directory");
  S2(SYS_mkdir, gs("/tmp/iw"), 0700);
  int before = host_fds();
  int in = (int)S1(SYS_inotify_init1, IN_NONBLOCK);
  ok(in >= 0, "inotify_init1 (%d)", in);
  int wd = (int)S3(SYS_inotify_add_watch, in, gs("/tmp/iw"), IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO);
  is(wd, 1, "add_watch: wd 1");
  is(strcmp(ievent(in), "EAGAIN"), 0, "nothing yet: EAGAIN");
  int fd = gopen("/tmp/iw/a", O_CREAT | O_WRONLY, 0600);
  is(strcmp(ievent(in), "1 100 a"), 0, "IN_CREATE a");
  gwrite(fd, "x");
  is(strcmp(ievent(in), "1 2 a"), 0, "IN_MODIFY a");
  S1(SYS_close, fd);
  S2(SYS_rename, gs("/tmp/iw/a"), gs("/tmp/iw/b"));
  is(strcmp(ievent(in), "1 40 a c"), 0, "IN_MOVED_FROM a, a cookie");
  is(strcmp(ievent(in), "1 80 b c"), 0, "IN_MOVED_TO b");
  S2(SYS_mkdir, gs("/tmp/iw/d"), 0700);
  is(strcmp(ievent(in), "1 40000100 d"), 0, "IN_CREATE|IN_ISDIR d");
  S1(SYS_unlink, gs("/tmp/iw/b"));
  is(strcmp(ievent(in), "1 200 b"), 0, "IN_DELETE b");
  /* (file_poll: what poll, select and epoll ask; a signal an earlier
   * group left pending would end a poll call first) */
  is(file_poll(sb, fs_get(sb, in)) & POLLIN, 0, "poll: not ready when empty");
  S1(SYS_rmdir, gs("/tmp/iw/d"));
  is(file_poll(sb, fs_get(sb, in)) & POLLIN, POLLIN, "poll: ready with an event");
  is(strcmp(ievent(in), "1 40000200 d"), 0, "IN_DELETE|IN_ISDIR d");
  is(S2(SYS_inotify_rm_watch, in, wd), 0, "rm_watch");
  is(strcmp(ievent(in), "1 8000 -"), 0, "IN_IGNORED");
  is(S2(SYS_inotify_rm_watch, in, wd), -EINVAL, "rm_watch again: EINVAL");
  is(S3(SYS_inotify_add_watch, in, gs("/tmp/nope"), IN_CREATE), -ENOENT, "a missing path: ENOENT");
  is(S3(SYS_inotify_add_watch, 0, gs("/tmp/iw"), IN_CREATE), -EINVAL, "not an inotify fd: EINVAL");
  S1(SYS_close, in);
  is(host_fds(), before, "closed: its host fds are gone");
  S1(SYS_rmdir, gs("/tmp/iw"));
}

/* inotify's events of open files and attributes (IN_OPEN, IN_ACCESS,
 * IN_CLOSE_*, IN_ATTRIB), IN_MOVE_SELF with the watch following the new
 * name, IN_ISDIR on a directory's own events, and identical consecutive
 * events merged: each was missing before (EAGAIN here). */
static void test_inotify_all(void)
{
  diag("inotify: open, access, close, attrib, move_self, merging");
  S2(SYS_mkdir, gs("/tmp/iv"), 0700);
  int fd = gopen("/tmp/iv/f", O_CREAT | O_WRONLY, 0600);
  gwrite(fd, "abc");
  S1(SYS_close, fd);
  int in = (int)S1(SYS_inotify_init1, IN_NONBLOCK);
  is(S3(SYS_inotify_add_watch, in, gs("/tmp/iv"), IN_ALL_EVENTS), 1, "watch the directory: wd 1");
  fd = gopen("/tmp/iv/f", O_RDONLY, 0);
  is(strcmp(ievent(in), "1 20 f"), 0, "IN_OPEN f");
  uint64_t b = galloc(NULL, 8);
  S3(SYS_read, fd, b, 1);
  S3(SYS_read, fd, b, 1);
  is(strcmp(ievent(in), "1 1 f"), 0, "IN_ACCESS f, once for two reads (merged while unread)");
  is(strcmp(ievent(in), "EAGAIN"), 0, "nothing more");
  S3(SYS_read, fd, b, 1);
  is(strcmp(ievent(in), "1 1 f"), 0, "another read after the event was read: IN_ACCESS again");
  int dup = (int)S1(SYS_dup, fd);
  S1(SYS_close, fd);
  is(strcmp(ievent(in), "EAGAIN"), 0, "close of one of two fds: no event");
  S1(SYS_close, dup);
  is(strcmp(ievent(in), "1 10 f"), 0, "the last close: IN_CLOSE_NOWRITE");
  fd = gopen("/tmp/iv/f", O_WRONLY, 0);
  S1(SYS_close, fd);
  is(strcmp(ievent(in), "1 20 f"), 0, "IN_OPEN f");
  is(strcmp(ievent(in), "1 8 f"), 0, "IN_CLOSE_WRITE f");
  fd = gopen("/tmp/iv/f", O_PATH, 0);
  S1(SYS_close, fd);
  is(strcmp(ievent(in), "EAGAIN"), 0, "O_PATH: no events");
  S2(SYS_chmod, gs("/tmp/iv/f"), 0644);
  is(strcmp(ievent(in), "1 4 f"), 0, "chmod: IN_ATTRIB f");
  is(S3(SYS_inotify_add_watch, in, gs("/tmp/iv/f"), IN_MOVE_SELF | IN_ATTRIB), 2, "watch the file: wd 2");
  S2(SYS_rename, gs("/tmp/iv/f"), gs("/tmp/iv/g"));
  is(strcmp(ievent(in), "1 40 f c"), 0, "IN_MOVED_FROM f");
  is(strcmp(ievent(in), "1 80 g c"), 0, "IN_MOVED_TO g");
  is(strcmp(ievent(in), "2 800 -"), 0, "IN_MOVE_SELF on the file's watch");
  S4(SYS_utimensat, AT_FDCWD, gs("/tmp/iv/g"), 0, 0);
  is(strcmp(ievent(in), "1 4 g"), 0, "utimensat: IN_ATTRIB g");
  is(strcmp(ievent(in), "2 4 -"), 0, "and on the file's watch, which followed it");
  fd = gopen("/tmp/iv", O_RDONLY | O_DIRECTORY, 0);
  is(strcmp(ievent(in), "1 40000020 -"), 0, "open of the directory: IN_OPEN|IN_ISDIR on its own watch");
  glist("/tmp/iv");
  S1(SYS_close, fd);
  is(strcmp(ievent(in), "1 40000020 -"), 0, "a listing: IN_OPEN|IN_ISDIR");
  is(strcmp(ievent(in), "1 40000001 -"), 0, "IN_ACCESS|IN_ISDIR");
  is(strcmp(ievent(in), "1 40000010 -"), 0, "IN_CLOSE_NOWRITE|IN_ISDIR");
  is(strcmp(ievent(in), "EAGAIN"), 0, "the first fd's close: the same event, unread, merged");
  S1(SYS_close, in);
  S1(SYS_unlink, gs("/tmp/iv/g"));
  S1(SYS_rmdir, gs("/tmp/iv"));
}

/* fcntl F_GETPIPE_SZ/F_SETPIPE_SZ are the host pipe's (it was a fixed
 * 65536 and F_SETPIPE_SZ EINVAL), EBADF on a file; F_NOTIFY without events
 * is 0 as Linux (it was EINVAL), ENOTDIR on a file with events. */
static void test_fcntl_linux(void)
{
  diag("fcntl: pipe sizes, F_NOTIFY");
  uint64_t p = galloc(NULL, 8);
  is(S1(SYS_pipe, p), 0, "pipe");
  int pp[2];
  memcpy(pp, hp(p), sizeof pp);
  int hp2[2];
  if (pipe(hp2) < 0)
    abort();
  long want = fcntl(hp2[1], F_GETPIPE_SZ);
  is(S3(SYS_fcntl, pp[1], F_GETPIPE_SZ, 0), want, "F_GETPIPE_SZ: the host's default (%ld)", want);
  is(S3(SYS_fcntl, pp[1], F_SETPIPE_SZ, 5000), fcntl(hp2[1], F_SETPIPE_SZ, 5000), "F_SETPIPE_SZ 5000: rounded as natively");
  is(S3(SYS_fcntl, pp[0], F_GETPIPE_SZ, 0), fcntl(hp2[0], F_GETPIPE_SZ), "the other end sees it");
  close(hp2[0]);
  close(hp2[1]);
  int fd = gopen("/tmp/pz", O_CREAT | O_RDWR, 0600);
  is(S3(SYS_fcntl, fd, F_GETPIPE_SZ, 0), -EBADF, "a file: EBADF");
  /* F_GETFL as Linux's f_flags: open(2) adds O_LARGEFILE (0100000) on x86-64, pipe(2) does not */
  char nat[] = "/tmp/cowfork-getfl.XXXXXX";
  int nf = mkstemp(nat), nf2 = nf < 0 ? -1 : open(nat, O_RDWR | O_APPEND);
  is(S2(SYS_fcntl, fd, F_GETFL), fcntl(nf2, F_GETFL) & ~O_APPEND, "F_GETFL of a file: as natively (%#o)",
     fcntl(nf2, F_GETFL) & ~O_APPEND);
  char rp[4096];
  snprintf(rp, sizeof rp, "%s/etc/plain", root);
  int gfd = gopen("/etc/plain", O_RDONLY, 0), nro = open(rp, O_RDONLY);
  is(S2(SYS_fcntl, gfd, F_GETFL), fcntl(nro, F_GETFL), "F_GETFL of a root file: as natively");
  is(S2(SYS_fcntl, pp[0], F_GETFL), O_RDONLY, "F_GETFL of a pipe: O_RDONLY only");
  S1(SYS_close, gfd);
  close(nro);
  close(nf2);
  close(nf);
  unlink(nat);
  is(S3(SYS_fcntl, fd, F_NOTIFY, DN_MULTISHOT), 0, "F_NOTIFY without events: 0");
  is(S3(SYS_fcntl, fd, F_NOTIFY, DN_CREATE), -ENOTDIR, "F_NOTIFY with events on a file: ENOTDIR");
  /* pwritev, pwritev2 (they were ENOSYS) */
  uint64_t iov = galloc(NULL, 32);
  uint64_t bufs[2] = {gs("test1"), gs("tt2")};
  uint64_t v[4] = {bufs[0], 5, bufs[1], 3};
  memcpy(hp(iov), v, sizeof v);
  gwrite(fd, "xx");
  is(S4(SYS_pwritev, fd, iov, 2, 2), 8, "pwritev at 2");
  is(S3(SYS_lseek, fd, 0, SEEK_CUR), 2, "the offset stays");
  is(S4(SYS_pwritev, fd, iov, 2, -1), -EINVAL, "pwritev at -1: EINVAL");
  is(S6(SYS_pwritev2, fd, iov, 1, -1, 0, 0), 5, "pwritev2 at -1: the file offset");
  is(S3(SYS_lseek, fd, 0, SEEK_CUR), 7, "which moved");
  is(S6(SYS_pwritev2, fd, iov, 1, 0, 0, RWF_APPEND), 5, "pwritev2 RWF_APPEND");
  uint64_t rb = galloc(NULL, 32);
  is(S4(SYS_pread64, fd, rb, 32, 0), 15, "15 bytes");
  ok(memcmp(hp(rb), "xxtest1tt2test1", 15) == 0, "as Linux writes them");
  /* sendfile's checks: in readable, out writable, out not O_APPEND */
  int ro = gopen("/tmp/pz", O_RDONLY, 0);
  is(S4(SYS_sendfile, ro, fd, 0, 4), -EBADF, "sendfile to a read-only fd: EBADF");
  int ap = gopen("/tmp/pz2", O_CREAT | O_WRONLY | O_APPEND, 0600);
  is(S4(SYS_sendfile, ap, ro, 0, 4), -EINVAL, "sendfile to an O_APPEND fd: EINVAL");
  S1(SYS_close, ap);
  S1(SYS_close, ro);
  S1(SYS_unlink, gs("/tmp/pz2"));
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/pz"));
  S1(SYS_close, pp[0]);
  S1(SYS_close, pp[1]);
  /* the scheduler's queries (they were ENOSYS) */
  is(S1(SYS_sched_get_priority_max, SCHED_RR), 99, "sched_get_priority_max(SCHED_RR)");
  is(S1(SYS_sched_get_priority_min, SCHED_OTHER), 0, "sched_get_priority_min(SCHED_OTHER)");
  is(S1(SYS_sched_get_priority_min, -23), -EINVAL, "a bad policy: EINVAL");
  is(S1(SYS_sched_getscheduler, 0), SCHED_OTHER, "sched_getscheduler(0)");
  is(S1(SYS_sched_getscheduler, -1), -EINVAL, "sched_getscheduler(-1): EINVAL");
  /* a sandbox of one process has no world: the search of other processes
   * read sb->w (NULL) and the host died (sandbox-syscall-fuzz, seed 1796665287) */
  is(S1(SYS_sched_getscheduler, 49152), -ESRCH, "sched_getscheduler(another pid): ESRCH");
  uint64_t prm = galloc(NULL, 8);
  is(S2(SYS_sched_getparam, 0, prm), 0, "sched_getparam");
  is(S3(SYS_sched_setscheduler, 0, SCHED_OTHER, prm), 0, "sched_setscheduler to SCHED_OTHER 0: no change");
  uint64_t cpus = galloc(NULL, 8);
  is(S3(SYS_sched_getaffinity, -1, 8, cpus), -ESRCH, "sched_getaffinity(-1): ESRCH, as Linux");
  is(S3(SYS_setresuid, -1, -1, -1), 0, "setresuid(-1, -1, -1)");
}

/* max_files 65536 (`cowfork run`'s where its own fd limit has room):
 * Linux's RLIMIT_NOFILE (soft 1024, hard 65536 = nr_open), the fd table
 * grown on demand (issue 15, item 3; the table was 256 fds); without
 * max_files, soft and hard are CF_SANDBOX_MAX_FILES (the host fds a
 * sandbox may hold: a hard limit above them would be a promise not kept). */
static void test_nofile_linux(void)
{
  diag("RLIMIT_NOFILE as Linux: 1024, raisable to 65536; the fd table grows");
  uint64_t rl = galloc(NULL, 16);
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, rl), 0, "prlimit64(RLIMIT_NOFILE)");
  ok(((uint64_t *)hp(rl))[0] == 1024 && ((uint64_t *)hp(rl))[1] == CF_SANDBOX_MAX_FILES,
     "without max_files RLIMIT_NOFILE is 1024/%d (%llu/%llu)", CF_SANDBOX_MAX_FILES,
     (unsigned long long)((uint64_t *)hp(rl))[0], (unsigned long long)((uint64_t *)hp(rl))[1]);
  opts.max_files = CF_SANDBOX_NR_OPEN;
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, rl), 0, "prlimit64(RLIMIT_NOFILE)");
  ok(((uint64_t *)hp(rl))[0] == 1024 && ((uint64_t *)hp(rl))[1] == 65536, "RLIMIT_NOFILE is 1024/65536 (%llu/%llu)",
     (unsigned long long)((uint64_t *)hp(rl))[0], (unsigned long long)((uint64_t *)hp(rl))[1]);
  ok(sb->nfds <= 64, "the fd table starts small (%d entries)", sb->nfds);
  int fd = gopen("/tmp/nf", O_CREAT | O_RDWR, 0600), last = -1;
  long r;
  while ((r = S1(SYS_dup, fd)) >= 0)
    last = (int)r;
  is(r, -EMFILE, "dup past 1024: EMFILE");
  is(last, 1023, "the last fd is 1023");
  is(S2(SYS_dup2, fd, 1024), -EBADF, "dup2 to 1024: EBADF");
  ((uint64_t *)hp(rl))[0] = 4096;
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, rl, 0), 0, "soft limit raised to 4096");
  is(S2(SYS_dup2, fd, 4000), 4000, "dup2 to 4000");
  ok(sb->nfds >= 4001 && sb->nfds <= 8192, "the table grew to %d", sb->nfds);
  is(S3(SYS_fcntl, fd, F_DUPFD, 4095), 4095, "F_DUPFD from 4095");
  is(S3(SYS_fcntl, fd, F_DUPFD, 4096), -EINVAL, "F_DUPFD from 4096: EINVAL");
  ((uint64_t *)hp(rl))[0] = ((uint64_t *)hp(rl))[1] = 65537;
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, rl, 0), -EPERM, "hard limit above 65536: EPERM (nr_open)");
  for (int i = fd + 1; i < 4096; i++)
    S1(SYS_close, i);
  /* a root file opened 300 times: a host fd each, more than the old 256 */
  int before = host_fds(), n = 0;
  int *fds = calloc(300, sizeof *fds);
  for (int i = 0; i < 300; i++)
    n += (fds[i] = gopen("/etc/plain", O_RDONLY, 0)) >= 0;
  is(n, 300, "a root file opened 300 times");
  ok(host_fds() - before == 300, "300 host fds held (%d)", host_fds() - before);
  for (int i = 0; i < 300; i++)
    S1(SYS_close, fds[i]);
  free(fds);
  ok(host_fds() <= before, "closed: host fds back to %d (%d)", before, host_fds());
  ((uint64_t *)hp(rl))[0] = 1024;
  ((uint64_t *)hp(rl))[1] = 65536;
  is(S4(SYS_prlimit64, 0, RLIMIT_NOFILE, rl, 0), 0, "back to 1024");
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/nf"));
  opts.max_files = 0;
}

/* A blocking lock call on a conflict waits as on Linux. Nothing else in a
 * one-task sandbox can release the lock, so only a signal ends the wait;
 * with none possible the sandbox ends with a report (not a hang). Each case
 * on a fresh sandbox (the cases end it). */
static double mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* pipe2's flags as Linux: O_CLOEXEC, O_NONBLOCK, O_DIRECT (packet mode:
 * each write one packet, a read takes one), anything else EINVAL. */
static void test_pipe_flags(void)
{
  diag("pipe2 flags against the native call");
  int np[2];
  errno = 0;
  int nr = pipe2(np, O_NONBLOCK | O_NOCTTY);
  uint64_t pv = galloc(NULL, 8);
  is(S2(SYS_pipe2, pv, O_NONBLOCK | O_NOCTTY), nr < 0 ? -errno : 0, "pipe2 with O_NOCTTY: as natively (EINVAL)");
  if (nr == 0) {
    close(np[0]);
    close(np[1]);
  }
  is(S2(SYS_pipe2, pv, O_DIRECT), 0, "pipe2(O_DIRECT)");
  int *g = hp(pv);
  int r = g[0], w = g[1];
  uint64_t b = galloc("abcdef", 6);
  S3(SYS_write, w, b, 3);
  S3(SYS_write, w, b + 3, 3);
  uint64_t in = galloc(NULL, 16);
  is(S3(SYS_read, r, in, 16), 3, "packet mode: a read takes one write's packet");
  S1(SYS_close, r);
  S1(SYS_close, w);
}

static void test_lockwait(void)
{
  for (int c = 0; c < 4; c++) {
    shim_teardown();
    shim_setup(root);
    int a = gopen("/tmp/lw", O_RDWR | O_CREAT, 0600), b = gopen("/tmp/lw", O_RDWR, 0);
    uint64_t g = galloc(NULL, sizeof(struct flock));
    struct flock *o = hp(g);
    bool flk = c & 1, timer = c & 2;
    *o = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (flk ? S2(SYS_flock, a, LOCK_EX) != 0 : S3(SYS_fcntl, a, F_OFD_SETLK, g) != 0)
      abort();
    if (timer) { /* ITIMER_REAL 30 ms; SIGALRM's default action ends the sandbox */
      struct itimerval it = {{0, 0}, {0, 30000}};
      if (S3(SYS_setitimer, ITIMER_REAL, galloc(&it, sizeof it), 0) != 0)
        abort();
    }
    const char *what = flk ? "flock" : "fcntl F_OFD_SETLKW";
    double t = mono_ms();
    long r = flk ? S2(SYS_flock, b, LOCK_SH) : S3(SYS_fcntl, b, F_OFD_SETLKW, g);
    t = mono_ms() - t;
    if (!timer)
      ok(r == SYS_NORETURN && sb->exited && sb->kill_signal == SIGKILL && strstr(sb->report, what),
         "%s on a conflict, no signal possible: the sandbox ends with a report (%s)", what, sb->report);
    else
      ok(sb->exited && sb->kill_signal == SIGALRM && t >= 25,
         "%s on a conflict with alarm 30 ms: waits until SIGALRM ends it (%.1f ms, signal %d)", what, t,
         sb->kill_signal);
  }
  shim_teardown();
  shim_setup(root);
}

static int gread_str(int fd, char *out, size_t n)
{
  uint64_t b = galloc(NULL, n);
  long r = S3(SYS_read, fd, b, n - 1);
  out[0] = 0;
  if (r > 0) {
    memcpy(out, hp(b), (size_t)r);
    out[r] = 0;
  }
  return (int)r;
}

/* FIFOs (mknod S_IFIFO) within one process: each check is what Linux does
 * (issue 15: mkfifo was ENOSYS). The blocking opens are test_fifo_wait's
 * and tests/sandbox/procs.c fifo's (between processes). */
static void test_fifo(void)
{
  diag("mknod/mknodat: FIFOs and regular files in /tmp, Linux's errors");
  struct stat st = {0}, st2 = {0};
  char b[64];
  is(S3(SYS_mknod, gs("/tmp/f"), S_IFIFO | 0666, 0), 0, "mknod /tmp/f S_IFIFO");
  ok(gstat("/tmp/f", &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0644 && st.st_size == 0,
     "stat: a FIFO, mode 0644 (umask 022)");
  is(S3(SYS_mknod, gs("/tmp/f"), S_IFIFO | 0600, 0), -EEXIST, "again: EEXIST");
  is(S3(SYS_mknod, gs("/tmp/f"), S_IFCHR | 0600, makedev(1, 3)), -EEXIST, "S_IFCHR over it: EEXIST first");
  is(S3(SYS_mknod, gs("/tmp/nope/f"), S_IFIFO | 0600, 0), -ENOENT, "in a missing directory: ENOENT");
  is(S3(SYS_mknod, gs("/tmp/f/x"), S_IFIFO | 0600, 0), -ENOTDIR, "under the FIFO: ENOTDIR");
  is(S3(SYS_mknod, gs("/etc/fifo"), S_IFIFO | 0600, 0), 0, "outside /tmp: in the upper layer");
  ok(gstat("/etc/fifo", &st) == 0 && S_ISFIFO(st.st_mode), "stat /etc/fifo: a FIFO");
  is(S1(SYS_unlink, gs("/etc/fifo")), 0, "unlink /etc/fifo");
  is(S3(SYS_mknod, gs("/etc/plain"), S_IFIFO | 0600, 0), -EEXIST, "outside /tmp over a file: EEXIST");
  is(S3(SYS_mknod, gs("/etc/plain/x"), S_IFIFO | 0600, 0), -ENOTDIR, "outside /tmp under a file: ENOTDIR");
  is(S3(SYS_mknod, gs("/nope/x"), S_IFIFO | 0600, 0), -ENOENT, "outside /tmp in a missing directory: ENOENT");
  is(S3(SYS_mknod, gs("/tmp/c"), S_IFCHR | 0600, makedev(1, 3)), -EPERM, "S_IFCHR: EPERM (no CAP_MKNOD)");
  is(S3(SYS_mknod, gs("/tmp/b"), S_IFBLK | 0600, makedev(7, 0)), -EPERM, "S_IFBLK: EPERM");
  is(S3(SYS_mknod, gs("/tmp/d"), S_IFDIR | 0700, 0), -EPERM, "S_IFDIR: EPERM");
  is(S3(SYS_mknod, gs("/tmp/l"), S_IFLNK | 0700, 0), -EINVAL, "S_IFLNK: EINVAL");
  is(S3(SYS_mknod, gs("/tmp/l"), 0030000 | 0700, 0), -EINVAL, "no such type: EINVAL");
  is(S4(SYS_mknodat, AT_FDCWD, gs("/tmp/reg"), S_IFREG | 0640, 0), 0, "mknodat S_IFREG");
  ok(gstat("/tmp/reg", &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640, "a regular file");
  is(S4(SYS_mknodat, AT_FDCWD, gs("/tmp/reg0"), 0600, 0), 0, "mknodat type 0");
  ok(gstat("/tmp/reg0", &st) == 0 && S_ISREG(st.st_mode), "a regular file");
  is(S1(SYS_unlink, gs("/tmp/reg")), 0, "unlink");
  S1(SYS_unlink, gs("/tmp/reg0"));
  is(S2(SYS_truncate, gs("/tmp/f"), 0), -EINVAL, "truncate of a FIFO: EINVAL");
  int o = gopen("/tmp/f", O_PATH, 0);
  ok(o >= 0, "O_PATH open of the FIFO: at once, no other side needed");
  char olink[64];
  snprintf(olink, sizeof olink, "/proc/self/fd/%d", o);
  is(S2(SYS_chmod, gs(olink), 0664), 0, "chmod %s (glibc's fchmodat AT_SYMLINK_NOFOLLOW)", olink);
  ok(gstat("/tmp/f", &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0664, "the FIFO is 0664");
  is(gread_str(o, b, sizeof b), -EBADF, "read of the O_PATH fd: EBADF");
  S1(SYS_close, o);

  diag("FIFO opens that do not wait, EOF and EPIPE in one process");
  is(gopen("/tmp/f", O_WRONLY | O_NONBLOCK, 0), -ENXIO, "O_WRONLY|O_NONBLOCK, no reader: ENXIO");
  int r = gopen("/tmp/f", O_RDONLY | O_NONBLOCK, 0);
  ok(r >= 0, "O_RDONLY|O_NONBLOCK: at once");
  is(gread_str(r, b, sizeof b), 0, "read with no writer: EOF");
  uint64_t pfd = galloc(&(struct pollfd){.fd = r, .events = POLLIN}, sizeof(struct pollfd));
  is(S3(SYS_poll, pfd, 1, 0), 0, "poll: nothing, no POLLHUP before any writer opened (Linux's f_version)");
  int w = gopen("/tmp/f", O_WRONLY | O_NONBLOCK, 0);
  ok(w >= 0, "O_WRONLY|O_NONBLOCK with a reader");
  is(gwrite(w, "hello"), 5, "write");
  uint64_t sp = galloc(NULL, sizeof st);
  ok(S2(SYS_fstat, r, sp) == 0 && (memcpy(&st2, hp(sp), sizeof st2), 1) && gstat("/tmp/f", &st) == 0 &&
         S_ISFIFO(st2.st_mode) && st2.st_ino == st.st_ino,
     "fstat of the open FIFO: the FIFO's node");
  ok(gread_str(r, b, sizeof b) == 5 && !strcmp(b, "hello"), "the reader reads it (%s)", b);
  is(gread_str(r, b, sizeof b), -EAGAIN, "then empty, a writer open: EAGAIN");
  is(gwrite(w, "kept"), 4, "write more");
  S1(SYS_close, w);
  ok(gread_str(r, b, sizeof b) == 4 && !strcmp(b, "kept"), "after the last writer's close: the data (%s)", b);
  is(gread_str(r, b, sizeof b), 0, "then EOF");
  ok(S3(SYS_poll, pfd, 1, 0) == 1 && ((struct pollfd *)hp(pfd))->revents == POLLHUP,
     "poll after a writer came and went: POLLHUP");
  w = gopen("/tmp/f", O_WRONLY | O_NONBLOCK, 0);
  is(gwrite(w, "old"), 3, "a new writer writes");
  S1(SYS_close, w);
  S1(SYS_close, r);
  int rw = gopen("/tmp/f", O_RDWR | O_NONBLOCK, 0);
  ok(rw >= 0, "O_RDWR: at once");
  is(gread_str(rw, b, sizeof b), -EAGAIN, "the data went with the last open file: empty (EAGAIN, a writer: itself)");
  /* a new end through /proc/self/fd/N, in the other direction too */
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", rw);
  r = gopen(link, O_RDONLY | O_NONBLOCK, 0);
  w = gopen(link, O_WRONLY, 0);
  ok(r >= 0 && w >= 0, "reopened through %s for reading and for writing", link);
  S1(SYS_close, rw);
  is(gwrite(w, "via proc"), 8, "write on the reopened end");
  ok(gread_str(r, b, sizeof b) == 8 && !strcmp(b, "via proc"), "read on the other (%s)", b);
  signal(SIGPIPE, SIG_IGN); /* the host process's own, as cowfork's (sandbox.c) */
  struct sigaction ign = {.sa_handler = SIG_IGN};
  S4(SYS_rt_sigaction, SIGPIPE, galloc(&ign, sizeof ign), 0, 8);
  S1(SYS_close, r);
  is(gwrite(w, "x"), -EPIPE, "after the last reader's close: EPIPE");
  S1(SYS_close, w);

  diag("unlink while open");
  rw = gopen("/tmp/f", O_RDWR, 0);
  is(S1(SYS_unlink, gs("/tmp/f")), 0, "unlink the open FIFO");
  is(gwrite(rw, "still"), 5, "write");
  ok(gread_str(rw, b, sizeof b) == 5 && !strcmp(b, "still"), "read (%s)", b);
  ok(S2(SYS_fstat, rw, sp) == 0 && S_ISFIFO(((struct stat *)hp(sp))->st_mode), "fstat: still a FIFO");
  is(S2(SYS_fchmod, rw, 0600), 0, "fchmod of its fd");
  S1(SYS_close, rw);
  is(gstat("/tmp/f", &st), -ENOENT, "gone");

  diag("a FIFO node in a snapshot; an open FIFO file refuses the save");
  is(S3(SYS_mknod, gs("/tmp/saved"), S_IFIFO | 0640, 0), 0, "mknod /tmp/saved");
  rw = gopen("/tmp/saved", O_RDWR, 0);
  struct wbuf sw = {0};
  ok(fs_save(sb, &sw) < 0 && strstr(cf_error(), "FIFO"), "saving with an open FIFO: %s", cf_error());
  free(sw.p);
  S1(SYS_close, rw);
  struct wbuf w3 = {0};
  ok(fs_save(sb, &w3) == 0 && !w3.err, "saving with the FIFO closed");
  struct sb *old = sb;
  int rc;
  sb = shim_fs_reload(&w3, &rc);
  ok(rc == 0, "fs_load: %s", rc ? cf_error() : "ok");
  strcpy(sb->cwd, "/");
  ok(gstat("/tmp/saved", &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640,
     "loaded: /tmp/saved is a FIFO, mode 0640");
  rw = gopen("/tmp/saved", O_RDWR, 0);
  ok(rw >= 0 && gwrite(rw, "after") == 5 && gread_str(rw, b, sizeof b) == 5, "and works as one");
  fs_fini(sb);
  shim_sb_free(sb);
  sb = old;
  free(w3.p);
  S1(SYS_unlink, gs("/tmp/saved"));
}

/* A blocking open of a FIFO with nothing that could open the other side:
 * it waits (then the sandbox ends with a report, as a lock wait does), or
 * until an alarm's signal. Each ends the sandbox: a fresh one after. */
static void test_fifo_wait(void)
{
  for (int c = 0; c < 3; c++) {
    shim_teardown();
    shim_setup(root);
    S3(SYS_mknod, gs("/tmp/w"), S_IFIFO | 0600, 0);
    bool timer = c == 2;
    if (timer) {
      struct itimerval it = {{0, 0}, {0, 30000}};
      if (S3(SYS_setitimer, ITIMER_REAL, galloc(&it, sizeof it), 0) != 0)
        abort();
    }
    int flags = c == 1 ? O_WRONLY : O_RDONLY;
    const char *what = c == 1 ? "O_WRONLY" : "O_RDONLY";
    double t = mono_ms();
    long r = gopen("/tmp/w", flags, 0);
    t = mono_ms() - t;
    if (!timer)
      ok(r == SYS_NORETURN && sb->exited && sb->kill_signal == SIGKILL && strstr(sb->report, "FIFO"),
         "open %s of a FIFO with no other side, no signal possible: the sandbox ends with a report (%s)", what,
         sb->report);
    else
      ok(sb->exited && sb->kill_signal == SIGALRM && t >= 25,
         "open %s with alarm 30 ms: waits until SIGALRM ends it (%.1f ms, signal %d)", what, t, sb->kill_signal);
  }
  shim_teardown();
  shim_setup(root);
}

/* Paths through /proc/self/fd/N name that fd's file for the calls that
 * follow them (GNU tar's fchmodat(AT_SYMLINK_NOFOLLOW) is glibc's
 * open(O_PATH) + chmod("/proc/self/fd/N")). */
static void test_magic(void)
{
  diag("chmod, chown, utimensat, truncate through /proc/self/fd/N of /tmp files");
  struct stat st = {0};
  char link[64];
  is(S2(SYS_mkdir, gs("/tmp/md"), 0700), 0, "mkdir /tmp/md");
  int d = gopen("/tmp/md", O_PATH | O_NOFOLLOW | O_DIRECTORY, 0);
  snprintf(link, sizeof link, "/proc/self/fd/%d", d);
  is(S2(SYS_chmod, gs(link), 0755), 0, "chmod %s (an O_PATH fd of a directory)", link);
  ok(gstat("/tmp/md", &st) == 0 && (st.st_mode & 07777) == 0755, "the directory is 0755");
  int f = gopen("/tmp/mf", O_CREAT | O_RDWR, 0600);
  gwrite(f, "0123456789");
  snprintf(link, sizeof link, "/proc/self/fd/%d", f);
  is(S4(SYS_fchmodat, AT_FDCWD, gs(link), 0640, 0), 0, "fchmodat %s", link);
  ok(gstat("/tmp/mf", &st) == 0 && (st.st_mode & 07777) == 0640, "the file is 0640");
  is(S3(SYS_chown, gs(link), getuid(), getgid()), 0, "chown %s", link);
  struct timespec ts[2] = {{1000, 1}, {2000, 2}};
  is(S4(SYS_utimensat, AT_FDCWD, gs(link), galloc(ts, sizeof ts), 0), 0, "utimensat %s", link);
  ok(gstat("/tmp/mf", &st) == 0 && st.st_atim.tv_sec == 1000 && st.st_mtim.tv_sec == 2000, "times set");
  is(S2(SYS_truncate, gs(link), 4), 0, "truncate %s", link);
  ok(gstat("/tmp/mf", &st) == 0 && st.st_size == 4, "size 4");
  is(S1(SYS_unlink, gs("/tmp/mf")), 0, "unlink /tmp/mf");
  is(S2(SYS_chmod, gs(link), 0600), 0, "chmod %s after the unlink: the file itself", link);
  uint64_t sp = galloc(NULL, sizeof st);
  ok(S2(SYS_fstat, f, sp) == 0 && (((struct stat *)hp(sp))->st_mode & 07777) == 0600, "fstat: 0600");
  snprintf(link, sizeof link, "/dev/fd/%d", d);
  is(S2(SYS_chmod, gs(link), 0711), 0, "chmod %s", link);
  ok(gstat("/tmp/md", &st) == 0 && (st.st_mode & 07777) == 0711, "the directory is 0711");
  int h = gopen("/etc/plain", O_RDONLY, 0);
  snprintf(link, sizeof link, "/proc/self/fd/%d", h);
  is(S2(SYS_chmod, gs(link), 0600), 0, "chmod %s of a root file: its copy-up", link);
  is(S2(SYS_truncate, gs(link), 0), 0, "truncate of it: its copy-up");
  ok(gstat("/etc/plain", &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_size == 0, "stat /etc/plain: 0600, empty");
  snprintf(link, sizeof link, "/proc/self/fd/%d", 200);
  is(S2(SYS_chmod, gs(link), 0600), -ENOENT, "chmod of a closed fd's link: ENOENT");
  S1(SYS_close, h);
  S1(SYS_close, f);
  S1(SYS_close, d);
  S1(SYS_rmdir, gs("/tmp/md"));
}

/* Last: it ends the sandbox. */
static void test_pending(void)
{
  diag("a read that need not wait gives its bytes with a signal pending: Linux looks at signals only before it sleeps");
  char p[600];
  snprintf(p, sizeof p, "%s/pend", root);
  int h = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (h < 0 || write(h, "abc", 3) != 3)
    abort();
  close(h);
  int fd = gopen("/pend", O_RDONLY, 0);
  uint64_t b = galloc(NULL, 8);
  sb->pending |= 1ull << (SIGTERM - 1); /* SIG_DFL: it ends the sandbox after the call */
  long r = S3(SYS_read, fd, b, 8);
  ok(r == 3 && memcmp(hp(b), "abc", 3) == 0, "read of a regular file with SIGTERM pending: 3 bytes (got %ld; was EINTR)", r);
  ok(sb->exited && sb->kill_signal == SIGTERM, "then the pending SIGTERM ends the sandbox");
}

/* fallocate and SEEK_DATA/SEEK_HOLE on an upper file as Linux's tmpfs
 * (issue 15, item 3): tests/sandbox/posix.c checks the same against the
 * native calls in a VM. */
static void test_sparse(void)
{
  diag("fallocate, SEEK_DATA/SEEK_HOLE on a /tmp file");
  int fd = gopen("/tmp/sparse", O_CREAT | O_RDWR | O_TRUNC, 0600);
  S4(SYS_pwrite64, fd, gs("d"), 1, 0);
  S4(SYS_pwrite64, fd, gs("d"), 1, 5 * PAGE + 7);
  S2(SYS_ftruncate, fd, 10 * PAGE);
  is(S3(SYS_lseek, fd, 0, SEEK_DATA), 0, "SEEK_DATA 0: 0");
  is(S3(SYS_lseek, fd, 1, SEEK_HOLE), PAGE, "SEEK_HOLE 1: the next page");
  is(S3(SYS_lseek, fd, PAGE, SEEK_DATA), 5 * PAGE, "SEEK_DATA in a hole: the next data page");
  is(S3(SYS_lseek, fd, 6 * PAGE, SEEK_DATA), -ENXIO, "SEEK_DATA past the last data: ENXIO");
  is(S3(SYS_lseek, fd, 10 * PAGE - 1, SEEK_HOLE), 10 * PAGE - 1, "SEEK_HOLE in the last hole: there");
  is(S3(SYS_lseek, fd, 10 * PAGE, SEEK_HOLE), -ENXIO, "SEEK_HOLE at the end: ENXIO");
  is(S3(SYS_lseek, fd, 0, SEEK_CUR), 10 * PAGE - 1, "the offset moved to the last answer");
  is(S4(SYS_fallocate, fd, FALLOC_FL_KEEP_SIZE, 2 * PAGE, PAGE), 0, "fallocate KEEP_SIZE of a hole");
  is(S3(SYS_lseek, fd, PAGE, SEEK_DATA), 5 * PAGE, "the allocated page is a hole until written (tmpfs)");
  S4(SYS_pwrite64, fd, gs("w"), 1, 2 * PAGE + 9);
  is(S3(SYS_lseek, fd, PAGE, SEEK_DATA), 2 * PAGE, "written, it is data");
  is(S4(SYS_fallocate, fd, 0, 20 * PAGE, 100), 0, "fallocate past the end");
  struct stat st;
  gstat("/tmp/sparse", &st);
  is(st.st_size, 20 * PAGE + 100, "the size grew to its end");
  is(S4(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5 * PAGE + 3, 2 * PAGE), 0, "punch a hole");
  is(S3(SYS_lseek, fd, 3 * PAGE, SEEK_DATA), 5 * PAGE, "the partial page stays data");
  is(S3(SYS_lseek, fd, 5 * PAGE, SEEK_HOLE), 6 * PAGE, "the whole page punched is a hole");
  ok(strcmp(gpread(fd, 8, 5 * PAGE), "") == 0 && ((char *)hp(galloc(NULL, 1)))[0] == 0, "punched bytes read zero");
  uint64_t b = galloc(NULL, 8);
  S4(SYS_pread64, fd, b, 8, 5 * PAGE + 7);
  is(((char *)hp(b))[0], 0, "the byte at 5 pages + 7 was zeroed");
  is(S4(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 1), -EOPNOTSUPP, "punch without KEEP_SIZE: EOPNOTSUPP");
  is(S4(SYS_fallocate, fd, FALLOC_FL_ZERO_RANGE, 0, 1), -EOPNOTSUPP, "ZERO_RANGE: EOPNOTSUPP as tmpfs");
  is(S4(SYS_fallocate, fd, 0, 0, 0), -EINVAL, "len 0: EINVAL");
  int ro = gopen("/tmp/sparse", O_RDONLY, 0);
  is(S4(SYS_fallocate, ro, 0, 0, 1), -EBADF, "not open for writing: EBADF");
  S1(SYS_close, ro);
  uint64_t pv = galloc(NULL, 8);
  S2(SYS_pipe2, pv, 0);
  int *pp = hp(pv);
  is(S4(SYS_fallocate, pp[1], 0, 0, 1), -ESPIPE, "a pipe: ESPIPE");
  S1(SYS_close, pp[0]);
  S1(SYS_close, pp[1]);
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/sparse"));
}

/* The names listxattr gave (NUL-separated, n bytes) joined with ' '. */
static const char *xnames(uint64_t b, long n)
{
  static char out[512];
  out[0] = 0;
  for (long off = 0; off < n && n > 0; off += (long)strlen((char *)hp(b) + off) + 1) {
    if (out[0])
      strcat(out, " ");
    strncat(out, (char *)hp(b) + off, sizeof out - strlen(out) - 2);
  }
  return out;
}

static void test_xattr(void)
{
  diag("extended attributes: tmpfs's rules on upper files, the root's read from the host, copy-up on a set");
  int uid = sb->uid;
  sb->uid = 0; /* root: trusted.* and security.* allowed */
  int fd = gopen("/tmp/xa", O_CREAT | O_RDWR, 0644);
  uint64_t b = galloc(NULL, 70000), name = gs("user.one"), v1 = gs("value1");
  is(S4(SYS_getxattr, gs("/tmp/xa"), name, b, 100), -ENODATA, "getxattr of a name not set: ENODATA");
  is(S5(SYS_setxattr, gs("/tmp/xa"), name, v1, 6, 0), 0, "setxattr user.one");
  is(S4(SYS_getxattr, gs("/tmp/xa"), name, b, 0), 6, "size 0: the value's length");
  memset(hp(b), 0, 16);
  is(S4(SYS_getxattr, gs("/tmp/xa"), name, b, 100), 6, "getxattr: its length");
  ok(memcmp(hp(b), "value1", 6) == 0, "and its value");
  is(S4(SYS_fgetxattr, fd, name, b, 5), -ERANGE, "a buffer too small: ERANGE");
  is(S5(SYS_setxattr, gs("/tmp/xa"), name, v1, 6, XATTR_CREATE), -EEXIST, "XATTR_CREATE of an existing one: EEXIST");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("user.two"), v1, 6, XATTR_REPLACE), -ENODATA,
     "XATTR_REPLACE of a missing one: ENODATA");
  is(S5(SYS_setxattr, gs("/tmp/xa"), name, v1, 6, 4), -EINVAL, "unknown flags: EINVAL");
  is(S5(SYS_fsetxattr, fd, gs("user.two"), v1, 0, XATTR_CREATE), 0, "an empty value (fsetxattr)");
  is(S4(SYS_getxattr, gs("/tmp/xa"), gs("user.two"), b, 10), 0, "reads back empty");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("trusted.t"), v1, 1, 0), 0, "trusted.* as root");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("security.s"), v1, 1, 0), 0, "security.* as root");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("security.capability"), v1, 6, 0), -EINVAL,
     "security.capability not a capability header: EINVAL");
  long n = S3(SYS_listxattr, gs("/tmp/xa"), b, 1000);
  ok(strcmp(xnames(b, n), "user.two user.one trusted.t security.s") == 0, "listxattr: the names, by name descending (tmpfs's order): %s",
     xnames(b, n));
  is(S3(SYS_listxattr, gs("/tmp/xa"), b, 0), n, "size 0: the list's length");
  is(S3(SYS_flistxattr, fd, b, 10), -ERANGE, "a list buffer too small: ERANGE");
  char big[300];
  memset(big, 'a', sizeof big);
  memcpy(big, "user.", 5);
  big[256] = 0;
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs(big), v1, 1, 0), -ERANGE, "a name of 256 bytes: ERANGE");
  big[255] = 0;
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs(big), v1, 1, 0), 0, "one of 255: set");
  is(S2(SYS_removexattr, gs("/tmp/xa"), gs(big)), 0, "removexattr");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs(""), v1, 1, 0), -ERANGE, "an empty name: ERANGE");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("user."), v1, 1, 0), -EINVAL, "the prefix alone: EINVAL");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("other.x"), v1, 1, 0), -EOPNOTSUPP, "another namespace: EOPNOTSUPP");
  is(S4(SYS_getxattr, gs("/tmp/xa"), gs("system.posix_acl_access"), b, 10), -ENODATA, "no ACL: ENODATA, as Linux's tmpfs");
  is(S5(SYS_setxattr, gs("/tmp/xa"), name, b, 65537, 0), -E2BIG, "a value over 64 KiB: E2BIG");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("user.big"), b, 65536, 0), 0, "one of 64 KiB: set");
  is(S4(SYS_getxattr, gs("/tmp/xa"), gs("user.big"), b, 65535), -ERANGE, "a smaller buffer: ERANGE");
  is(S4(SYS_getxattr, gs("/tmp/xa"), gs("user.big"), b, 65536), 65536, "read back");
  is(S2(SYS_removexattr, gs("/tmp/xa"), gs("user.big")), 0, "removed");
  is(S2(SYS_removexattr, gs("/tmp/xa"), gs("user.big")), -ENODATA, "removed twice: ENODATA");
  is(S2(SYS_fremovexattr, fd, gs("trusted.t")), 0, "fremovexattr");
  S1(SYS_close, fd);
  S2(SYS_symlink, gs("xa"), gs("/tmp/xl"));
  is(S5(SYS_lsetxattr, gs("/tmp/xl"), name, v1, 1, 0), -EPERM, "user.* on a symlink: EPERM");
  is(S4(SYS_lgetxattr, gs("/tmp/xl"), name, b, 10), -ENODATA, "lgetxattr user.* of a symlink: ENODATA");
  is(S4(SYS_getxattr, gs("/tmp/xl"), name, b, 10), 6, "getxattr follows it");
  is(S5(SYS_lsetxattr, gs("/tmp/xl"), gs("trusted.l"), v1, 1, 0), 0, "trusted.* on a symlink (root)");
  n = S3(SYS_llistxattr, gs("/tmp/xl"), b, 100);
  ok(strcmp(xnames(b, n), "trusted.l") == 0, "llistxattr: the symlink's own" ": %s", xnames(b, n));

  /* not root: trusted.* hidden, security.* and trusted.* refused, the mode checked */
  sb->uid = 1234;
  n = S3(SYS_listxattr, gs("/tmp/xa"), b, 1000);
  ok(strcmp(xnames(b, n), "user.two user.one security.s") == 0, "not root: trusted.* is not listed" ": %s", xnames(b, n));
  is(S4(SYS_getxattr, gs("/tmp/xl"), gs("trusted.l"), b, 10), -ENODATA, "not root: trusted.* ENODATA");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("trusted.x"), v1, 1, 0), -EPERM, "not root: set trusted.* EPERM");
  is(S5(SYS_setxattr, gs("/tmp/xa"), gs("security.x"), v1, 1, 0), -EPERM, "not root: set security.* EPERM");
  is(S5(SYS_setxattr, gs("/tmp/xa"), name, v1, 1, 0), -EACCES, "not root, not the owner, mode 0644: EACCES");
  is(S4(SYS_getxattr, gs("/tmp/xa"), name, b, 10), 6, "but may read");
  sb->uid = 0;

  /* the root's files: read from the host; a set copies up with them */
  char p[600];
  snprintf(p, sizeof p, "%s/etc/xattrs", root); /* made now: no earlier group copied it up */
  close(open(p, O_CREAT | O_WRONLY, 0644));
  if (setxattr(p, "user.host", "hv", 2, 0) < 0) {
    diag("the host file system has no user xattrs (%s): the lower cases skipped", strerror(errno));
  } else {
    is(S4(SYS_getxattr, gs("/etc/xattrs"), gs("user.host"), b, 10), 2, "a root file's attribute, from the host");
    is(S4(SYS_getxattr, gs("/etc/xattrs"), gs("user.none"), b, 10), -ENODATA, "one it does not have: ENODATA");
    n = S3(SYS_listxattr, gs("/etc/xattrs"), b, 1000);
    ok(strstr(xnames(b, n), "user.host") != NULL, "listxattr of a root file: %s", xnames(b, n));
    is(S5(SYS_setxattr, gs("/etc/xattrs"), name, v1, 6, 0), 0, "setxattr of a root file: copied up");
    n = S3(SYS_listxattr, gs("/etc/xattrs"), b, 1000);
    ok(strstr(xnames(b, n), "user.one user.host") != NULL, "the copy has the host's and the new one: %s", xnames(b, n));
    char hv[8];
    is(getxattr(p, "user.one", hv, sizeof hv), -1, "the host file is not changed");
    S1(SYS_unlink, gs("/etc/xattrs"));
  }
  is(S4(SYS_getxattr, gs("/proc/self/status"), name, b, 10), -EOPNOTSUPP, "/proc: EOPNOTSUPP");
  is(S3(SYS_listxattr, gs("/proc/self/status"), b, 10), 0, "/proc: no names");
  is(S4(SYS_getxattr, gs("/tmp/none"), name, b, 10), -ENOENT, "a missing file: ENOENT");

  /* a template keeps them (the earlier groups' open files of the root
   * closed: the reloaded sb has no root to reopen them in) */
  for (int i = 3; i < 1024; i++)
    S1(SYS_close, i);
  struct wbuf w = {0};
  ok(fs_save(sb, &w) == 0 && !w.err, "fs_save with attributes");
  struct sb *old = sb;
  int rc;
  sb = shim_fs_reload(&w, &rc);
  is(rc, 0, "fs_load: %s", rc ? cf_error() : "");
  b = galloc(NULL, 1000);
  n = S3(SYS_listxattr, gs("/tmp/xa"), b, 1000);
  ok(strcmp(xnames(b, n), "user.two user.one security.s") == 0, "the loaded file's names" ": %s", xnames(b, n));
  is(S4(SYS_getxattr, gs("/tmp/xa"), gs("user.one"), b, 10), 6, "and values");
  ok(memcmp(hp(b), "value1", 6) == 0, "value1");
  fs_fini(sb);
  shim_sb_free(sb);
  sb = old;
  free(w.p);
  S1(SYS_unlink, gs("/tmp/xa"));
  S1(SYS_unlink, gs("/tmp/xl"));
  sb->uid = uid;
}

/* Supplementary groups and scheduling as Linux (issue 15 item 3; setgroups
 * was EPERM and getgroups empty, sched_setaffinity ENOSYS, SCHED_BATCH and
 * SCHED_IDLE EPERM). */
static void test_ident(void)
{
  diag("setgroups/getgroups, sched_setaffinity, SCHED_BATCH/SCHED_IDLE");
  int uid = sb->uid;
  sb->uid = 0;
  uint64_t g = galloc(NULL, 65537 * 4);
  uint32_t set[4] = {7, 3, 100, 3};
  memcpy(hp(g), set, sizeof set);
  is(S2(SYS_setgroups, 4, g), 0, "setgroups as root");
  is(S2(SYS_getgroups, 0, 0), 4, "getgroups(0): their number");
  is(S2(SYS_getgroups, 3, g), -EINVAL, "a list too short: EINVAL");
  is(S2(SYS_getgroups, -1, g), -EINVAL, "a negative size: EINVAL");
  memset(hp(g), 0, 16);
  is(S2(SYS_getgroups, 10, g), 4, "getgroups");
  uint32_t *got = hp(g);
  ok(got[0] == 3 && got[1] == 3 && got[2] == 7 && got[3] == 100, "sorted, as Linux's groups_sort: %u %u %u %u", got[0],
     got[1], got[2], got[3]);
  int fd = gopen("/proc/self/status", O_RDONLY, 0);
  uint64_t sbuf = galloc(NULL, 4096);
  long n = S3(SYS_read, fd, sbuf, 4095);
  S1(SYS_close, fd);
  ((char *)hp(sbuf))[n > 0 ? n : 0] = 0;
  ok(strstr(hp(sbuf), "\nGroups:\t3 3 7 100\n") != NULL, "/proc/self/status shows them");
  is(S2(SYS_setgroups, 65537, g), -EINVAL, "more than NGROUPS_MAX: EINVAL");
  memset(hp(g), 0, 65536 * 4);
  is(S2(SYS_setgroups, 65536, g), 0, "NGROUPS_MAX of them");
  is(S2(SYS_getgroups, 0, 0), 65536, "all kept");
  is(S2(SYS_setgroups, 1, 0), -EFAULT, "a bad list: EFAULT");
  memcpy(hp(g), set, 4);
  S2(SYS_setgroups, 1, g);
  /* a group of the list gives access (chown to it by the owner) */
  int f = gopen("/tmp/grp", O_CREAT | O_RDWR, 0600);
  S3(SYS_fchown, f, 1234, 5);
  sb->uid = 1234;
  is(S3(SYS_fchown, f, -1, 7), 0, "not root: chown to a supplementary group");
  is(S3(SYS_fchown, f, -1, 8), -EPERM, "to another: EPERM");
  is(S2(SYS_setgroups, 0, 0), -EPERM, "setgroups not root: EPERM");
  S1(SYS_close, f);
  S1(SYS_unlink, gs("/tmp/grp"));

  /* affinity: within the sandbox's 2 CPUs, per thread */
  uint64_t m = galloc(NULL, 16);
  is(S3(SYS_sched_getaffinity, 0, 8, m), 8, "sched_getaffinity: 8 bytes");
  is(*(uint64_t *)hp(m), 3, "both CPUs");
  *(uint64_t *)hp(m) = 2;
  is(S3(SYS_sched_setaffinity, 0, 8, m), 0, "sched_setaffinity to CPU 1");
  *(uint64_t *)hp(m) = 0;
  is(S3(SYS_sched_getaffinity, 0, 8, m), 8, "read back");
  is(*(uint64_t *)hp(m), 2, "CPU 1 only");
  is(S3(SYS_sched_getaffinity, sb->pid, 8, m), 8, "by its pid");
  is(*(uint64_t *)hp(m), 2, "the same");
  *(uint64_t *)hp(m) = 4;
  is(S3(SYS_sched_setaffinity, 0, 8, m), -EINVAL, "no CPU of the sandbox's: EINVAL");
  *(uint64_t *)hp(m) = 0;
  is(S3(SYS_sched_setaffinity, 0, 8, m), -EINVAL, "none: EINVAL");
  *(uint64_t *)hp(m) = ~0ull;
  is(S3(SYS_sched_setaffinity, 0, 8, m), 0, "all bits: the sandbox's CPUs");
  is(S3(SYS_sched_getaffinity, 0, 8, m), 8, "read back");
  is(*(uint64_t *)hp(m), 3, "both");
  is(S3(SYS_sched_setaffinity, -1, 8, m), -ESRCH, "pid -1: ESRCH");
  is(S3(SYS_sched_setaffinity, 49152, 8, m), -ESRCH, "another pid: ESRCH");
  is(S3(SYS_sched_getaffinity, 1, 8, m), 8, "the sandbox's init (pid 1, getppid): a thread");
  is(S1(SYS_sched_getscheduler, 1), SCHED_OTHER, "init's policy: SCHED_OTHER");
  is(S3(SYS_sched_setaffinity, 1, 8, m), -EPERM, "init's affinity, not root: EPERM");
  /* policies */
  uint64_t prm = galloc(NULL, 8);
  is(S3(SYS_sched_setscheduler, 0, SCHED_BATCH, prm), 0, "SCHED_BATCH, not root");
  is(S1(SYS_sched_getscheduler, 0), SCHED_BATCH, "kept");
  is(S2(SYS_sched_setparam, 0, prm), 0, "sched_setparam keeps it");
  is(S1(SYS_sched_getscheduler, 0), SCHED_BATCH, "still SCHED_BATCH");
  is(S3(SYS_sched_setscheduler, 0, SCHED_IDLE | SCHED_RESET_ON_FORK, prm), 0, "SCHED_IDLE | SCHED_RESET_ON_FORK");
  is(S1(SYS_sched_getscheduler, 0), SCHED_IDLE | SCHED_RESET_ON_FORK, "reported with the flag");
  is(S3(SYS_sched_setscheduler, 0, SCHED_IDLE, prm), -EPERM, "the flag cleared, not root: EPERM");
  *(int *)hp(prm) = 1;
  is(S3(SYS_sched_setscheduler, 0, SCHED_BATCH, prm), -EINVAL, "priority 1 with SCHED_BATCH: EINVAL");
  is(S3(SYS_sched_setscheduler, 0, SCHED_FIFO, prm), -EPERM, "SCHED_FIFO: EPERM");
  *(int *)hp(prm) = 0;
  is(S3(SYS_sched_setscheduler, 1, SCHED_BATCH, prm), -EPERM, "init's: EPERM");
  sb->uid = 0;
  is(S3(SYS_sched_setscheduler, 0, SCHED_OTHER, prm), 0, "root: back to SCHED_OTHER");
  is(S1(SYS_sched_getscheduler, 0), SCHED_OTHER, "SCHED_OTHER");

  /* a template keeps groups, CPUs and policy (state version 8) */
  *(uint64_t *)hp(m) = 1;
  S3(SYS_sched_setaffinity, 0, 8, m);
  S3(SYS_sched_setscheduler, 0, SCHED_IDLE, prm);
  struct wbuf w = {0};
  task_save_sched(sb, &w);
  sb->cpus_off[0] = 0;
  sb->policy = 0;
  free(sb->groups);
  sb->groups = NULL;
  sb->ngroups = 0;
  struct rbuf r = {w.p, w.n, 0, false};
  is(task_load_sched(sb, &r, "t"), 0, "task_load_sched");
  ok(r.off == r.n, "all read");
  is(S1(SYS_sched_getscheduler, 0), SCHED_IDLE, "the policy");
  is(S3(SYS_sched_getaffinity, 0, 8, m), 8, "the mask");
  is(*(uint64_t *)hp(m), 1, "CPU 0");
  is(S2(SYS_getgroups, 0, 0), 1, "the groups");
  ((uint8_t *)w.p)[w.n - 24] = 3; /* the thread's cpus_off[0]: CPU 0 off too, no CPU left */
  r = (struct rbuf){w.p, w.n, 0, false};
  ok(task_load_sched(sb, &r, "t") < 0, "a mask with no CPU: refused");
  free(w.p);
  *(uint64_t *)hp(m) = 3;
  S3(SYS_sched_setaffinity, 0, 8, m);
  S3(SYS_sched_setscheduler, 0, SCHED_OTHER, prm);
  task_free_creds(sb); /* (the harness's sb has none of its own to free) */
  sb->uid = uid;
}

/* The signals pending (rt_sigpending), SIGIO's bit. */
static bool sigio_pending(void)
{
  uint64_t set = galloc(NULL, 8);
  S2(SYS_rt_sigpending, set, 8);
  return *(uint64_t *)hp(set) & (1ull << (SIGIO - 1));
}

/* dnotify: F_NOTIFY with events on a directory sends SIGIO at them (it
 * was EINVAL). SIGIO is blocked here: it stays pending, and sigtimedwait
 * takes it. */
static void test_dnotify(void)
{
  diag("dnotify: fcntl F_NOTIFY, SIGIO");
  uint64_t set = galloc(NULL, 8);
  *(uint64_t *)hp(set) = 1ull << (SIGIO - 1);
  S4(SYS_rt_sigprocmask, SIG_BLOCK, set, 0, 8);
  uint64_t ts = galloc(NULL, 16);
  S2(SYS_mkdir, gs("/tmp/dn"), 0755);
  int d = gopen("/tmp/dn", O_RDONLY | O_DIRECTORY, 0);
  is(S3(SYS_fcntl, d, F_NOTIFY, DN_CREATE), 0, "F_NOTIFY DN_CREATE on a directory");
  ok(!sigio_pending(), "nothing yet");
  int f = gopen("/tmp/dn/a", O_CREAT | O_WRONLY, 0600);
  ok(sigio_pending(), "a file made in it: SIGIO");
  is(S4(SYS_rt_sigtimedwait, set, 0, ts, 8), SIGIO, "taken");
  S1(SYS_close, gopen("/tmp/dn/b", O_CREAT | O_WRONLY, 0600));
  ok(!sigio_pending(), "without DN_MULTISHOT, once only");
  is(S3(SYS_fcntl, d, F_NOTIFY, DN_MODIFY | DN_DELETE | DN_MULTISHOT), 0, "DN_MODIFY | DN_DELETE | DN_MULTISHOT");
  gwrite(f, "x");
  ok(sigio_pending(), "a write in it: SIGIO");
  S4(SYS_rt_sigtimedwait, set, 0, ts, 8);
  S1(SYS_unlink, gs("/tmp/dn/b"));
  ok(sigio_pending(), "an unlink: SIGIO again (multishot)");
  S4(SYS_rt_sigtimedwait, set, 0, ts, 8);
  S2(SYS_chmod, gs("/tmp/dn/a"), 0644);
  ok(!sigio_pending(), "a chmod: not asked for (DN_ATTRIB)");
  S2(SYS_mkdir, gs("/tmp/other"), 0755);
  S1(SYS_close, gopen("/tmp/other/c", O_CREAT | O_WRONLY, 0600));
  gwrite(f, "y");
  S4(SYS_rt_sigtimedwait, set, 0, ts, 8);
  S1(SYS_unlink, gs("/tmp/other/c"));
  ok(!sigio_pending(), "another directory's events: none");
  is(S3(SYS_fcntl, d, F_NOTIFY, 0), 0, "F_NOTIFY 0: the registration goes");
  S1(SYS_unlink, gs("/tmp/dn/a"));
  ok(!sigio_pending(), "no more SIGIO");
  S1(SYS_close, gopen("/tmp/dn/z", O_CREAT | O_WRONLY, 0600));
  is(S3(SYS_fcntl, d, F_NOTIFY, DN_DELETE | DN_MULTISHOT), 0, "registered again");
  S1(SYS_close, d);
  S1(SYS_unlink, gs("/tmp/dn/z"));
  ok(!sigio_pending(), "the directory's last close removed it");
  S1(SYS_rmdir, gs("/tmp/other"));
  S1(SYS_close, f);
  S1(SYS_rmdir, gs("/tmp/dn"));
  S4(SYS_rt_sigprocmask, SIG_UNBLOCK, set, 0, 8);
}

int main(int argc, char **argv)
{
  static const struct { const char *name; void (*fn)(void); } groups[] = {
      {"mkdir", test_mkdir},   {"region", test_region}, {"attrs", test_attrs},   {"locks", test_locks},
      {"shared", test_shared}, {"hidden", test_hidden}, {"select", test_select}, {"limits", test_limits},
      {"hostfds", test_hostfds}, {"nofile", test_nofile}, {"fifo", test_fifo}, {"fifo_wait", test_fifo_wait}, {"magic", test_magic}, {"lockwait", test_lockwait}, {"pending", test_pending}, {"pipe_flags", test_pipe_flags}, {"sparse", test_sparse}, {"nofile_linux", test_nofile_linux}, {"mremap", test_mremap}, {"exchange", test_exchange}, {"tmpfile", test_tmpfile}, {"inotify", test_inotify}, {"inotify_all", test_inotify_all}, {"fcntl_linux", test_fcntl_linux}, {"xattr", test_xattr}, {"ident", test_ident}, {"dnotify", test_dnotify},
  };
  sb_setup();
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
    bool run = argc < 2;
    for (int k = 1; k < argc; k++)
      run |= strcmp(argv[k], groups[i].name) == 0;
    if (run)
      groups[i].fn();
  }
  sb_teardown();
  return done_testing();
}
