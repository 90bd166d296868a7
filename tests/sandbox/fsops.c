/* File operations on /tmp for tests/sandbox-fs.sh, run natively and in a
 * sandbox: the two outputs must be identical (issue 11, items 1 and 7).
 * argv[1]: a directory under /tmp that does not exist yet. Built static. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

static const char *D;

static const char *en(long r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static char *P(const char *rel)
{
  static char b[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(b[k], sizeof b[k], "%s/%s", D, rel);
  return b[k];
}

static void show(const char *what, const char *path)
{
  struct stat st;
  if (stat(path, &st) < 0) {
    printf("%s: stat %s\n", what, strerrorname_np(errno));
    return;
  }
  printf("%s: mode %04o atime %lld.%09ld mtime %lld.%09ld size %lld\n", what, st.st_mode & 07777,
         (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
         (long long)st.st_size);
}

int main(int argc, char **argv)
{
  if (argc < 2)
    return 2;
  D = argv[1];
  umask(022);
  /* item 1: missing parents */
  printf("mkdir D/nope/x: %s\n", en(mkdir(P("nope/x"), 0755)));
  printf("mkdir D: %s\n", en(mkdir(D, 0755)));
  printf("mkdir D/nope/x: %s\n", en(mkdir(P("nope/x"), 0755)));
  char tpl[512];
  snprintf(tpl, sizeof tpl, "%s/nope/XXXXXX", D);
  printf("mkdtemp D/nope/XXXXXX: %s\n", mkdtemp(tpl) ? "ok" : strerrorname_np(errno));
  printf("open(O_CREAT) D/nope/f: %s\n", en(open(P("nope/f"), O_CREAT | O_WRONLY, 0644)));
  int fd = open(P("f"), O_CREAT | O_RDWR, 0644);
  printf("create D/f: %s\n", en(fd));
  printf("mkdir D/f/x: %s\n", en(mkdir(P("f/x"), 0755)));

  /* chmod, utime */
  printf("write: %zd\n", write(fd, "hello", 5));
  struct stat st0;
  stat(P("f"), &st0);
  printf("created: mode %04o size %lld\n", st0.st_mode & 07777, (long long)st0.st_size);
  printf("chmod 0755: %s\n", en(chmod(P("f"), 0755)));
  printf("access X_OK: %s\n", en(access(P("f"), X_OK)));
  printf("fchmod 0600: %s\n", en(fchmod(fd, 0600)));
  printf("access X_OK: %s\n", en(access(P("f"), X_OK)));
  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  printf("utimensat: %s\n", en(utimensat(AT_FDCWD, P("f"), ts, 0)));
  show("utimensat", P("f"));
  struct timespec om[2] = {{0, UTIME_OMIT}, {7, 5}};
  printf("futimens omit: %s\n", en(futimens(fd, om)));
  show("futimens", P("f"));
  struct utimbuf ub = {111, 222};
  printf("utime: %s\n", en(utime(P("f"), &ub)));
  show("utime", P("f"));
  struct timeval tv[2] = {{333, 1}, {444, 2}};
  printf("utimes: %s\n", en(utimes(P("f"), tv)));
  show("utimes", P("f"));

  /* locks */
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  printf("F_GETLK: %s", en(fcntl(fd, F_GETLK, &fl)));
  printf(" type %s start %ld len %ld\n", fl.l_type == F_UNLCK ? "F_UNLCK" : "locked", (long)fl.l_start,
         (long)fl.l_len);
  int fd2 = open(P("f"), O_RDWR);
  fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  printf("F_OFD_SETLK fd: %s\n", en(fcntl(fd, F_OFD_SETLK, &fl)));
  fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  printf("F_OFD_SETLK fd2: %s\n", en(fcntl(fd2, F_OFD_SETLK, &fl)));
  fl = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  printf("F_OFD_GETLK fd2: %s", en(fcntl(fd2, F_OFD_GETLK, &fl)));
  printf(" type %s start %ld len %ld pid %d\n", fl.l_type == F_WRLCK ? "F_WRLCK" : "other", (long)fl.l_start,
         (long)fl.l_len, fl.l_pid);
  printf("flock fd LOCK_EX: %s\n", en(flock(fd, LOCK_EX)));
  printf("flock fd2 LOCK_EX|LOCK_NB: %s\n", en(flock(fd2, LOCK_EX | LOCK_NB)));
  close(fd2);

  /* MAP_SHARED */
  char page[8192];
  memset(page, 'a', sizeof page);
  printf("pwrite 8 KiB: %zd\n", pwrite(fd, page, sizeof page, 0));
  char *m = mmap(NULL, sizeof page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("mmap MAP_SHARED: %s\n", m == MAP_FAILED ? strerrorname_np(errno) : "ok");
  if (m != MAP_FAILED) {
    memcpy(m, "Hello", 5);
    memcpy(m + 4096, "World", 5);
    char b[6] = {0};
    pread(fd, b, 5, 0);
    printf("pread 0 after a store: %s\n", b);
    pread(fd, b, 5, 4096);
    printf("pread 4096 after a store: %s\n", b);
    pwrite(fd, "J", 1, 0);
    printf("mapping after pwrite: %.5s\n", m);
    printf("msync: %s\n", en(msync(m, sizeof page, MS_SYNC)));
    memcpy(m + 100, "tail", 4);
    printf("munmap: %s\n", en(munmap(m, sizeof page)));
    pread(fd, b, 4, 100);
    b[4] = 0;
    printf("pread 100 after munmap: %s\n", b);
  }

  /* select, sockets */
  fd_set r;
  FD_ZERO(&r);
  FD_SET(fd, &r);
  struct timeval z = {0, 0};
  printf("select on the file: %d\n", select(fd + 1, &r, NULL, NULL, &z));
  FD_ZERO(&r);
  FD_SET(100, &r);
  z = (struct timeval){0, 0};
  printf("select on a closed fd: %s\n", en(select(101, &r, NULL, NULL, &z)));
  struct timeval ten = {0, 10000};
  printf("select(0) 10 ms: %d\n", select(0, NULL, NULL, NULL, &ten));
  int v;
  socklen_t vl = sizeof v;
  printf("getsockopt on a file: %s\n", en(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl)));
  printf("getsockname on a bad fd: %s\n", en(getsockname(99, NULL, &vl)));

  /* mmap and brk limits */
  void *big = mmap(NULL, (1ull << 47) + 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("mmap 128 TiB: %s\n", big == MAP_FAILED ? strerrorname_np(errno) : "mapped");
  long b0 = syscall(SYS_brk, 0);
  long b1 = syscall(SYS_brk, ~0ul);
  long b2 = syscall(SYS_brk, 0);
  printf("brk(~0): %s, break after: %s\n", b1 == b0 ? "old break" : "moved", b2 == b0 ? "same" : "moved");

  close(fd);
  unlink(P("f"));
  rmdir(D);
  printf("done\n");
  return 0;
}
