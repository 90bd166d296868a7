/* POSIX file semantics as Linux (issue 15, item 3) for tests/sandbox-posix.sh:
 * run natively and in a sandbox, the two outputs must be identical.
 * argv[1]: a directory that does not exist yet (made, used, removed);
 * argv[2]: a file the script made (the root's file in the sandbox: the lower
 * layer): 8 KiB of 'L' at offset 0 and at 64 KiB, size 80 KiB (sparse);
 * it is written through a mapping and restored before the end.
 * Cases: RLIMIT_NOFILE, ftruncate, fallocate, SEEK_DATA/SEEK_HOLE (upper
 * and lower files), O_TMPFILE, renameat2 RENAME_EXCHANGE, mremap, msync and
 * MAP_SHARED of files (upper, copied-up root file, across fork), getdents64
 * under concurrent changes. Built static. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *D;
#define PG 4096

static const char *en(long r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static char *P(const char *rel)
{
  static char b[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(b[k], sizeof b[k], "%s/%s", D, rel);
  return b[k];
}

static long long fsize(int fd)
{
  struct stat st;
  return fstat(fd, &st) < 0 ? -1 : (long long)st.st_size;
}

/* SEEK_DATA/SEEK_HOLE from off: the offset or the errno's name. */
static void seeks(const char *what, int fd, off_t off)
{
  off_t d = lseek(fd, off, SEEK_DATA);
  const char *de = d < 0 ? strerrorname_np(errno) : "";
  off_t h = lseek(fd, off, SEEK_HOLE);
  const char *he = h < 0 ? strerrorname_np(errno) : "";
  printf("%s: seek_data(%lld)=%lld%s seek_hole(%lld)=%lld%s\n", what, (long long)off, (long long)d, de,
         (long long)off, (long long)h, he);
}

/* The file's bytes as runs "c*n". */
static void runs(const char *what, int fd)
{
  char buf[1 << 16];
  long long n = pread(fd, buf, sizeof buf, 0);
  printf("%s: size %lld:", what, fsize(fd));
  for (long long i = 0; i < n;) {
    long long j = i;
    while (j < n && buf[j] == buf[i])
      j++;
    printf(" %c*%lld", buf[i] ? buf[i] : '0', j - i);
    i = j;
  }
  printf("\n");
}

static void nofile(void)
{
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  printf("nofile: soft %llu\n", (unsigned long long)rl.rlim_cur);
  int fd = open(P("nf"), O_CREAT | O_RDWR, 0600);
  int n = 0, last = -1, e = 0;
  for (;;) {
    int k = dup(fd);
    if (k < 0) {
      e = errno;
      break;
    }
    last = k;
    n++;
  }
  printf("nofile: %d dups, last fd %d, then %s\n", n, last, strerrorname_np(e));
  for (int i = fd + 1; i <= last; i++)
    close(i);
  printf("nofile: dup2 to 1024: %s\n", en(dup2(fd, 1024)));
  struct rlimit up = {4096, rl.rlim_max};
  printf("nofile: setrlimit 4096: %s\n", en(setrlimit(RLIMIT_NOFILE, &up)));
  int k = dup2(fd, 4000);
  printf("nofile: dup2 to 4000: %s\n", en(k));
  n = 0, last = -1;
  for (;;) {
    int j = dup(fd);
    if (j < 0) {
      e = errno;
      break;
    }
    last = j, n++;
  }
  printf("nofile: %d dups, last fd %d, then %s\n", n, last, strerrorname_np(e));
  pid_t p = fork();
  if (p == 0) {
    char c;
    _exit(pread(4000, &c, 1, 0) == 0 && fcntl(4095, F_GETFD) == 0 ? 0 : 1);
  }
  int st;
  waitpid(p, &st, 0);
  printf("nofile: a forked child has fds 4000 and 4095: %s\n", WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "yes" : "no");
  for (int i = fd + 1; i < 4096; i++)
    close(i);
  /* the root's file opened 600 times: a host fd each in the sandbox */
  int fds[600];
  n = 0;
  for (int i = 0; i < 600; i++)
    if ((fds[i] = open("/proc/self/exe", O_RDONLY)) >= 0)
      n++;
  printf("nofile: /proc/self/exe opened %d times of 600\n", n);
  for (int i = 0; i < 600; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  printf("nofile: setrlimit back to 1024: %s\n", en(setrlimit(RLIMIT_NOFILE, &rl)));
  struct rlimit big = {70000, 70000};
  printf("nofile: setrlimit above nr_open 2^30: %s\n",
         en(setrlimit(RLIMIT_NOFILE, &(struct rlimit){1u << 30, 1u << 30})));
  (void)big;
  close(fd);
}

static void truncates(void)
{
  int fd = open(P("t"), O_CREAT | O_RDWR, 0600);
  char b[3 * PG];
  memset(b, 'a', sizeof b);
  write(fd, b, 5000);
  printf("ftruncate 100000: %s\n", en(ftruncate(fd, 100000)));
  runs("grown", fd);
  seeks("grown", fd, 0);
  seeks("grown", fd, 5000);
  printf("ftruncate 3000: %s\n", en(ftruncate(fd, 3000)));
  runs("shrunk", fd);
  printf("ftruncate 6000: %s\n", en(ftruncate(fd, 6000)));
  runs("regrown", fd);
  printf("ftruncate -1: %s\n", en(ftruncate(fd, -1)));
  int ro = open(P("t"), O_RDONLY);
  printf("ftruncate of O_RDONLY: %s\n", en(ftruncate(ro, 10)));
  printf("fallocate of O_RDONLY: %s\n", en(fallocate(ro, 0, 0, 10)));
  close(ro);
  close(fd);

  fd = open(P("fa"), O_CREAT | O_RDWR | O_TRUNC, 0600);
  printf("fallocate 0 0+10000: %s size %lld\n", en(fallocate(fd, 0, 0, 10000)), fsize(fd));
  printf("fallocate KEEP_SIZE 0+50000: %s size %lld\n", en(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 50000)), fsize(fd));
  printf("fallocate 0 20000+100: %s size %lld\n", en(fallocate(fd, 0, 20000, 100)), fsize(fd));
  memset(b, 'x', sizeof b);
  pwrite(fd, b, 3 * PG, 0);
  pwrite(fd, b, 2 * PG, 5 * PG);
  printf("punch 100+8000: %s size %lld\n",
         en(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 8000)), fsize(fd));
  runs("punched", fd);
  seeks("punched", fd, 0);
  seeks("punched", fd, PG);
  printf("punch without KEEP_SIZE: %s\n", en(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 100)));
  printf("zero range: %s\n", en(fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 100)));
  printf("collapse range: %s\n", en(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, PG)));
  printf("insert range: %s\n", en(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, PG)));
  printf("fallocate len 0: %s\n", en(fallocate(fd, 0, 0, 0)));
  printf("fallocate off -1: %s\n", en(fallocate(fd, 0, -1, 10)));
  printf("fallocate mode 0x100: %s\n", en(fallocate(fd, 0x100, 0, 10)));
  int dfd = open(D, O_RDONLY | O_DIRECTORY);
  printf("fallocate of a directory: %s\n", en(fallocate(dfd, 0, 0, 10)));
  close(dfd);
  int pp[2];
  pipe(pp);
  printf("fallocate of a pipe: %s\n", en(fallocate(pp[1], 0, 0, 10)));
  printf("lseek SEEK_DATA of a pipe: %s\n", en(lseek(pp[0], 0, SEEK_DATA)));
  close(pp[0]), close(pp[1]);
  close(fd);

  /* sparse: data on pages 0 and 5 of 10 */
  fd = open(P("sp"), O_CREAT | O_RDWR | O_TRUNC, 0600);
  pwrite(fd, "d", 1, 0);
  pwrite(fd, "d", 1, 5 * PG + 7);
  ftruncate(fd, 10 * PG);
  seeks("sparse", fd, 0);
  seeks("sparse", fd, 1);
  seeks("sparse", fd, PG);
  seeks("sparse", fd, 6 * PG);
  seeks("sparse", fd, 10 * PG - 1);
  seeks("sparse", fd, 10 * PG);
  seeks("sparse", fd, -1);
  close(fd);
  fd = open(P("empty"), O_CREAT | O_RDWR | O_TRUNC, 0600);
  seeks("empty", fd, 0);
  close(fd);
}

static void lower(const char *path)
{
  int fd = open(path, O_RDONLY);
  seeks("lower", fd, 0);
  seeks("lower", fd, 8192);
  seeks("lower", fd, 70000);
  seeks("lower", fd, 80 * 1024);
  close(fd);
  /* MAP_SHARED read-only of the root's file: its page cache */
  fd = open(path, O_RDONLY);
  char *m = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
  printf("lower shared read map: %s first %c\n", m == MAP_FAILED ? strerrorname_np(errno) : "ok",
         m == MAP_FAILED ? '?' : m[0]);
  if (m != MAP_FAILED)
    munmap(m, 2 * PG);
  m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("lower shared write map of O_RDONLY: %s\n", m == MAP_FAILED ? strerrorname_np(errno) : "ok");
  close(fd);
  /* opened O_RDWR (copied up in the sandbox): written through a shared mapping */
  fd = open(path, O_RDWR);
  m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("lower O_RDWR shared write map: %s\n", m == MAP_FAILED ? strerrorname_np(errno) : "ok");
  if (m != MAP_FAILED) {
    memcpy(m + 10, "MAPPED", 6);
    char b[8] = {0};
    pread(fd, b, 6, 10);
    printf("lower O_RDWR: read sees the store: %s\n", b);
    printf("msync: %s\n", en(msync(m, 2 * PG, MS_SYNC)));
    int fd2 = open(path, O_RDONLY);
    pread(fd2, b, 6, 10);
    printf("lower O_RDWR: another open sees it: %s\n", b);
    close(fd2);
    memcpy(m + 10, "LLLLLL", 6); /* restore */
    msync(m, 2 * PG, MS_SYNC);
    munmap(m, 2 * PG);
  }
  close(fd);
}

static void shared(void)
{
  int fd = open(P("sh"), O_CREAT | O_RDWR | O_TRUNC, 0600);
  ftruncate(fd, 2 * PG);
  char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char *m2 = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
  strcpy(m, "hello");
  char b[16] = {0};
  pread(fd, b, 5, 0);
  printf("shared: read sees %s, second map sees %s\n", b, m2);
  pwrite(fd, "WORLD", 5, PG);
  printf("shared: write seen by the maps: %.5s %.5s\n", m + PG, m2 + PG);
  pid_t p = fork();
  if (p == 0) {
    strcpy(m + 100, "child");
    _exit(0);
  }
  waitpid(p, NULL, 0);
  pread(fd, b, 5, 100);
  printf("shared: the child's store: %.5s, read: %s\n", m2 + 100, b);
  printf("msync MS_SYNC: %s, MS_ASYNC: %s, MS_INVALIDATE: %s, both: %s, unaligned: %s\n",
         en(msync(m, 2 * PG, MS_SYNC)), en(msync(m, PG, MS_ASYNC)), en(msync(m, PG, MS_INVALIDATE)),
         en(msync(m, PG, MS_SYNC | MS_ASYNC)), en(msync(m + 1, PG, MS_SYNC)));
  munmap(m, 2 * PG);
  munmap(m2, 2 * PG);
  printf("msync unmapped: %s\n", en(msync(m, PG, MS_SYNC)));
  close(fd);
}

static void remaps(void)
{
  char *p = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < 16; i++)
    p[i * PG] = (char)('a' + i);
  munmap(p + 4 * PG, 12 * PG);
  char *q = mremap(p, 4 * PG, 8 * PG, 0);
  printf("mremap grow in place: %s same %d keeps %c%c new %d\n", q == MAP_FAILED ? strerrorname_np(errno) : "ok",
         q == p, q[0], q[3 * PG], q[5 * PG]);
  q[7 * PG] = 'z';
  q = mremap(p, 8 * PG, 2 * PG, 0);
  printf("mremap shrink: %s same %d\n", q == MAP_FAILED ? strerrorname_np(errno) : "ok", q == p);
  printf("mremap shrink: tail unmapped: %s\n", en(msync(p + 2 * PG, PG, 0)));
  /* a neighbour after it: no room in place */
  char *n = mmap(p + 2 * PG, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  q = mremap(p, 2 * PG, 4 * PG, 0);
  printf("mremap grow without room: %s\n", q == MAP_FAILED ? strerrorname_np(errno) : "ok");
  q = mremap(p, 2 * PG, 64 * PG, MREMAP_MAYMOVE);
  printf("mremap MAYMOVE: %s moved %d keeps %c%c new %d\n", q == MAP_FAILED ? strerrorname_np(errno) : "ok",
         q != p, q[0], q[PG], q[40 * PG]);
  printf("mremap MAYMOVE: old unmapped: %s\n", en(msync(p, PG, 0)));
  munmap(n, PG);
  char *t = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *r = mremap(q, 2 * PG, 3 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t);
  printf("mremap FIXED: %s at target %d keeps %c%c, rest of target %s\n",
         r == MAP_FAILED ? strerrorname_np(errno) : "ok", r == t, r[0], r[PG], en(msync(t + 3 * PG, PG, 0)));
  printf("mremap FIXED without MAYMOVE: %s\n",
         en((long)mremap(r, PG, PG, MREMAP_FIXED, t + 8 * PG) == -1 ? -1 : 0));
  printf("mremap unaligned: %s\n", en((long)mremap(r + 1, PG, PG, 0) == -1 ? -1 : 0));
  printf("mremap new size 0: %s\n", en((long)mremap(r, PG, 0, MREMAP_MAYMOVE) == -1 ? -1 : 0));
  printf("mremap unmapped: %s\n", en((long)mremap(p + 2 * PG, PG, 2 * PG, MREMAP_MAYMOVE) == -1 ? -1 : 0));
  munmap(r, 3 * PG);
  munmap(q, 64 * PG);
  /* a shared file mapping moved keeps sharing */
  int fd = open(P("mr"), O_CREAT | O_RDWR | O_TRUNC, 0600);
  ftruncate(fd, 4 * PG);
  char *m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  m[0] = 's';
  char *m2 = mremap(m, PG, 4 * PG, MREMAP_MAYMOVE);
  if (m2 == MAP_FAILED) {
    printf("mremap of a shared file map: %s\n", strerrorname_np(errno));
  } else {
    m2[3 * PG] = 'e';
    char b[2] = {0};
    pread(fd, b, 1, 3 * PG);
    printf("mremap of a shared file map: keeps %c, store at 3 pages read back %s\n", m2[0], b);
    munmap(m2, 4 * PG);
  }
  close(fd);
}

static void otmpfile(const char *lowerfile)
{
  int fd = open(D, O_TMPFILE | O_RDWR, 0640);
  printf("O_TMPFILE: %s\n", en(fd));
  if (fd >= 0) {
    write(fd, "tmp!", 4);
    struct stat st;
    fstat(fd, &st);
    printf("O_TMPFILE: nlink %lu mode %o size %lld\n", (unsigned long)st.st_nlink, st.st_mode, (long long)st.st_size);
    char pp[64];
    snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
    printf("O_TMPFILE: linkat /proc/self/fd: %s\n", en(linkat(AT_FDCWD, pp, AT_FDCWD, P("named"), AT_SYMLINK_FOLLOW)));
    fstat(fd, &st);
    printf("O_TMPFILE: nlink now %lu\n", (unsigned long)st.st_nlink);
    printf("O_TMPFILE: linkat AT_EMPTY_PATH: %s\n", en(linkat(fd, "", AT_FDCWD, P("named2"), AT_EMPTY_PATH)));
    char b[8] = {0};
    int g = open(P("named"), O_RDONLY);
    read(g, b, 4);
    printf("O_TMPFILE: named reads %s\n", b);
    close(g);
    close(fd);
    unlink(P("named"));
    unlink(P("named2"));
  }
  fd = open(D, O_TMPFILE | O_RDWR | O_EXCL, 0600);
  char pp[64];
  snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
  printf("O_TMPFILE|O_EXCL: %s, linkat %s\n", en(fd), en(linkat(AT_FDCWD, pp, AT_FDCWD, P("ex"), AT_SYMLINK_FOLLOW)));
  close(fd);
  printf("O_TMPFILE O_RDONLY: %s\n", en(open(D, O_TMPFILE | O_RDONLY, 0600)));
  close(open(P("plain"), O_CREAT | O_WRONLY, 0600));
  printf("O_TMPFILE on a file: %s\n", en(open(P("plain"), O_TMPFILE | O_RDWR, 0600)));
  printf("O_TMPFILE on a missing dir: %s\n", en(open(P("nope"), O_TMPFILE | O_RDWR, 0600)));
  unlink(P("plain"));
  /* in the lower file's directory: the root's, in the sandbox */
  char home[512];
  snprintf(home, sizeof home, "%s", lowerfile);
  *strrchr(home, '/') = 0;
  fd = open(home, O_TMPFILE | O_WRONLY, 0600);
  printf("O_TMPFILE in a root directory: %s\n", en(fd));
  if (fd >= 0)
    close(fd);
}

static void exchange(void)
{
  int fd = open(P("xa"), O_CREAT | O_WRONLY, 0600);
  write(fd, "A", 1);
  close(fd);
  fd = open(P("xb"), O_CREAT | O_WRONLY, 0600);
  write(fd, "B", 1);
  close(fd);
  mkdir(P("xd"), 0700);
  close(open(P("xd/in"), O_CREAT | O_WRONLY, 0600));
  printf("exchange: %s\n", en(syscall(SYS_renameat2, AT_FDCWD, P("xa"), AT_FDCWD, P("xb"), RENAME_EXCHANGE)));
  char b[2] = {0};
  fd = open(P("xa"), O_RDONLY);
  read(fd, b, 1);
  close(fd);
  printf("exchange: xa holds %s\n", b);
  printf("exchange file and dir: %s\n",
         en(syscall(SYS_renameat2, AT_FDCWD, P("xa"), AT_FDCWD, P("xd"), RENAME_EXCHANGE)));
  struct stat st;
  printf("exchange: xa/in %s, xd is a file %d\n", en(stat(P("xa/in"), &st)),
         stat(P("xd"), &st) == 0 && S_ISREG(st.st_mode));
  printf("exchange with a missing one: %s\n",
         en(syscall(SYS_renameat2, AT_FDCWD, P("xb"), AT_FDCWD, P("missing"), RENAME_EXCHANGE)));
  printf("exchange|noreplace: %s\n",
         en(syscall(SYS_renameat2, AT_FDCWD, P("xb"), AT_FDCWD, P("xd"), RENAME_EXCHANGE | RENAME_NOREPLACE)));
  printf("noreplace onto one: %s\n", en(syscall(SYS_renameat2, AT_FDCWD, P("xb"), AT_FDCWD, P("xd"), RENAME_NOREPLACE)));
  printf("exchange into itself: %s\n",
         en(syscall(SYS_renameat2, AT_FDCWD, P("xa"), AT_FDCWD, P("xa/in"), RENAME_EXCHANGE)));
  printf("renameat2 bad flag: %s\n", en(syscall(SYS_renameat2, AT_FDCWD, P("xb"), AT_FDCWD, P("xd"), 8)));
  unlink(P("xa/in"));
  rmdir(P("xa"));
  unlink(P("xb"));
  unlink(P("xd"));
}

static void dents(void)
{
  mkdir(P("dl"), 0700);
  char nm[64];
  for (int i = 0; i < 200; i++) {
    snprintf(nm, sizeof nm, "dl/f%03d", i);
    close(open(P(nm), O_CREAT | O_WRONLY, 0600));
  }
  int fd = open(P("dl"), O_RDONLY | O_DIRECTORY);
  static char seen[400];
  int dups = 0, got = 0, round = 0;
  char buf[512];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0)
      break;
    for (long o = 0; o < n;) {
      struct dirent64 *e = (void *)(buf + o);
      int k;
      if (sscanf(e->d_name, "f%d", &k) == 1) {
        dups += seen[k]++ > 0;
        got++;
      }
      o += e->d_reclen;
    }
    /* between reads: remove 0..9 (read already) and the odd ones of
     * 100..199, add 200..299 */
    if (round++ == 1)
      for (int i = 0; i < 100; i++) {
        snprintf(nm, sizeof nm, "dl/f%03d", i);
        if (i < 10)
          unlink(P(nm));
        snprintf(nm, sizeof nm, "dl/f%03d", 200 + i);
        close(open(P(nm), O_CREAT | O_WRONLY, 0600));
        snprintf(nm, sizeof nm, "dl/f%03d", 100 + i);
        if (i % 2)
          unlink(P(nm));
      }
  }
  int missing = 0;
  for (int i = 0; i < 200; i++)
    missing += i >= 10 && (i < 100 || i % 2 == 0) && !seen[i];
  printf("getdents64 under changes: %d entries read, %d seen twice, %d that stayed missing\n", got > 0, dups,
         missing);
  close(fd);
  for (int i = 0; i < 300; i++) {
    snprintf(nm, sizeof nm, "dl/f%03d", i);
    unlink(P(nm));
  }
  rmdir(P("dl"));
}

static const char *mask_names(uint32_t m)
{
  static char b[256];
  static const struct { uint32_t bit; const char *name; } names[] = {
      {IN_ACCESS, "ACCESS"}, {IN_MODIFY, "MODIFY"}, {IN_ATTRIB, "ATTRIB"}, {IN_CLOSE_WRITE, "CLOSE_WRITE"},
      {IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"}, {IN_OPEN, "OPEN"}, {IN_MOVED_FROM, "MOVED_FROM"}, {IN_MOVED_TO, "MOVED_TO"},
      {IN_CREATE, "CREATE"}, {IN_DELETE, "DELETE"}, {IN_DELETE_SELF, "DELETE_SELF"}, {IN_MOVE_SELF, "MOVE_SELF"},
      {IN_UNMOUNT, "UNMOUNT"}, {IN_Q_OVERFLOW, "Q_OVERFLOW"}, {IN_IGNORED, "IGNORED"}, {IN_ISDIR, "ISDIR"}};
  b[0] = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (m & names[i].bit) {
      strcat(b, b[0] ? "|" : "");
      strcat(b, names[i].name);
    }
  return b;
}

/* Every event queued now, one line each (the moved pair: "same cookie"). */
static void events(int fd, const char *when)
{
  char buf[4096] __attribute__((aligned(8)));
  uint32_t cookie = 0;
  printf("inotify %s:", when);
  for (;;) {
    long n = read(fd, buf, sizeof buf);
    if (n < 0) {
      printf(" then %s\n", strerrorname_np(errno));
      return;
    }
    for (long o = 0; o < n;) {
      struct inotify_event *e = (void *)(buf + o);
      printf(" [wd %d %s %s", e->wd, mask_names(e->mask), e->len ? e->name : "-");
      if (e->cookie)
        printf(" cookie %s", cookie == e->cookie ? "same" : "new");
      cookie = e->cookie ? e->cookie : cookie;
      printf("]");
      o += (long)sizeof *e + e->len;
    }
  }
}

static void watches(void)
{
  mkdir(P("iw"), 0700);
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  printf("inotify_init1: %s\n", en(in));
  int wd = inotify_add_watch(in, P("iw"), IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO);
  printf("add_watch: %d\n", wd);
  printf("add_watch again: %d\n", inotify_add_watch(in, P("iw"), IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO));
  events(in, "at first");
  int fd = open(P("iw/a"), O_CREAT | O_WRONLY, 0600);
  events(in, "create");
  write(fd, "x", 1);
  events(in, "write");
  int wf = inotify_add_watch(in, P("iw/a"), IN_MODIFY);
  printf("add_watch of the file: %d\n", wf);
  write(fd, "y", 1);
  events(in, "write with two watches");
  inotify_rm_watch(in, wf);
  events(in, "rm_watch of the file");
  close(fd);
  rename(P("iw/a"), P("iw/b"));
  events(in, "rename");
  mkdir(P("iw/sub"), 0700);
  rmdir(P("iw/sub"));
  unlink(P("iw/b"));
  events(in, "mkdir, rmdir, unlink");
  fd = open(P("iw/c"), O_CREAT | O_WRONLY, 0600);
  ftruncate(fd, 100);
  close(fd);
  symlink("c", P("iw/l"));
  link(P("iw/c"), P("iw/h"));
  events(in, "create, ftruncate, symlink, link");
  const char *first = en(inotify_rm_watch(in, wd));
  printf("rm_watch: %s, again: %s\n", first, en(inotify_rm_watch(in, wd)));
  events(in, "rm_watch");
  printf("add_watch of a missing path: %s\n", en(inotify_add_watch(in, P("nope"), IN_CREATE)));
  printf("add_watch mask 0: %s\n", en(inotify_add_watch(in, P("iw"), 0)));
  printf("add_watch of a bad fd: %s\n", en(inotify_add_watch(999, P("iw"), IN_CREATE)));
  printf("add_watch of a file fd: %s\n", en(inotify_add_watch(1, P("iw"), IN_CREATE)));
  printf("add_watch IN_ONLYDIR of a file: %s\n", en(inotify_add_watch(in, P("iw/c"), IN_CREATE | IN_ONLYDIR)));
  printf("inotify_init1 bad flag: %s\n", en(inotify_init1(1)));
  close(in);
  unlink(P("iw/c"));
  unlink(P("iw/l"));
  unlink(P("iw/h"));
  rmdir(P("iw"));
}

/* A result: its value, or the errno's name. */
static const char *rv(long r)
{
  static char b[4][32];
  static int k;
  k = (k + 1) % 4;
  if (r < 0)
    return strerrorname_np(errno);
  snprintf(b[k], sizeof b[k], "%ld", r);
  return b[k];
}

/* The NUL-separated names of a list, joined with ' '. */
static const char *names(const char *l, long n)
{
  static char b[512];
  b[0] = 0;
  for (long o = 0; o < n; o += (long)strlen(l + o) + 1) {
    strcat(b, o ? " " : "");
    strncat(b, l + o, sizeof b - strlen(b) - 2);
  }
  return b;
}

static void xattrs(void)
{
  char v[70000];
  int fd = open(P("xa"), O_CREAT | O_RDWR, 0600);
  printf("getxattr of none: %s\n", rv(getxattr(P("xa"), "user.a", v, sizeof v)));
  printf("setxattr user.b: %s\n", rv(setxattr(P("xa"), "user.b", "v1", 2, 0)));
  printf("setxattr user.a: %s\n", rv(setxattr(P("xa"), "user.a", "value", 5, 0)));
  printf("getxattr size 0: %s\n", rv(getxattr(P("xa"), "user.a", NULL, 0)));
  printf("getxattr small: %s\n", rv(getxattr(P("xa"), "user.a", v, 2)));
  long n = getxattr(P("xa"), "user.a", v, sizeof v);
  printf("getxattr: %s %.*s\n", rv(n), n > 0 ? (int)n : 0, v);
  printf("XATTR_CREATE existing: %s\n", rv(setxattr(P("xa"), "user.a", "x", 1, XATTR_CREATE)));
  printf("XATTR_REPLACE missing: %s\n", rv(setxattr(P("xa"), "user.c", "x", 1, XATTR_REPLACE)));
  printf("flags 4: %s\n", rv(setxattr(P("xa"), "user.a", "x", 1, 4)));
  printf("fsetxattr empty value: %s\n", rv(fsetxattr(fd, "user.e", "", 0, 0)));
  printf("fgetxattr empty: %s\n", rv(fgetxattr(fd, "user.e", v, sizeof v)));
  n = listxattr(P("xa"), v, sizeof v);
  printf("listxattr: %s [%s]\n", rv(n), n > 0 ? names(v, n) : "");
  printf("listxattr size 0: %s\n", rv(listxattr(P("xa"), NULL, 0)));
  printf("flistxattr small: %s\n", rv(flistxattr(fd, v, 3)));
  char big[300];
  memset(big, 'n', sizeof big);
  memcpy(big, "user.", 5);
  big[256] = 0;
  printf("name of 256: %s\n", rv(setxattr(P("xa"), big, "x", 1, 0)));
  big[255] = 0;
  printf("name of 255: %s\n", rv(setxattr(P("xa"), big, "x", 1, 0)));
  printf("removexattr it: %s\n", rv(removexattr(P("xa"), big)));
  printf("empty name: %s\n", rv(setxattr(P("xa"), "", "x", 1, 0)));
  printf("prefix alone: %s\n", rv(setxattr(P("xa"), "user.", "x", 1, 0)));
  printf("unknown namespace: %s\n", rv(setxattr(P("xa"), "foo.x", "x", 1, 0)));
  memset(v, 'v', sizeof v);
  printf("value of 65537: %s\n", rv(setxattr(P("xa"), "user.big", v, 65537, 0)));
  printf("value of 65536: %s\n", rv(setxattr(P("xa"), "user.big", v, 65536, 0)));
  printf("read it into 65535: %s\n", rv(getxattr(P("xa"), "user.big", v, 65535)));
  printf("read it: %s\n", rv(getxattr(P("xa"), "user.big", v, sizeof v)));
  printf("removexattr: %s, again: %s\n", rv(removexattr(P("xa"), "user.big")), rv(removexattr(P("xa"), "user.big")));
  printf("fremovexattr: %s\n", rv(fremovexattr(fd, "user.e")));
  printf("ACL of a file without: %s\n", rv(getxattr(P("xa"), "system.posix_acl_access", v, sizeof v)));
  symlink("xa", P("xl"));
  printf("lsetxattr user.* of a symlink: %s\n", rv(lsetxattr(P("xl"), "user.a", "x", 1, 0)));
  printf("lgetxattr user.* of a symlink: %s\n", rv(lgetxattr(P("xl"), "user.a", v, sizeof v)));
  printf("getxattr through it: %s\n", rv(getxattr(P("xl"), "user.a", v, sizeof v)));
  n = llistxattr(P("xl"), v, sizeof v);
  printf("llistxattr: %s [%s]\n", rv(n), n > 0 ? names(v, n) : "");
  if (getuid() == 0) {
    printf("trusted.* as root: %s\n", rv(setxattr(P("xa"), "trusted.t", "1", 1, 0)));
    printf("security.capability bad: %s\n", rv(setxattr(P("xa"), "security.capability", "123", 3, 0)));
    printf("lsetxattr trusted.* of a symlink: %s\n", rv(lsetxattr(P("xl"), "trusted.l", "1", 1, 0)));
    n = listxattr(P("xa"), v, sizeof v);
    printf("listxattr: %s [%s]\n", rv(n), n > 0 ? names(v, n) : "");
  }
  struct stat a, b;
  fstat(fd, &a);
  struct timespec t = {0, 20000000};
  nanosleep(&t, NULL);
  setxattr(P("xa"), "user.t", "1", 1, 0);
  fstat(fd, &b);
  printf("a set moves the ctime: %d\n", b.st_ctim.tv_sec != a.st_ctim.tv_sec || b.st_ctim.tv_nsec != a.st_ctim.tv_nsec);
  mkdir(P("xd"), 0700);
  printf("user.* on a directory: %s\n", rv(setxattr(P("xd"), "user.d", "1", 1, 0)));
  rmdir(P("xd"));
  close(fd);
  unlink(P("xl"));
  unlink(P("xa"));
}

/* Whether SIGIO (blocked) is pending: taken, with its si_code. */
static const char *sigio(void)
{
  sigset_t w;
  sigemptyset(&w);
  sigaddset(&w, SIGIO);
  struct timespec z = {0, 0};
  siginfo_t si;
  static char b[32];
  if (sigtimedwait(&w, &si, &z) < 0)
    return "none";
  snprintf(b, sizeof b, "SIGIO code %d", si.si_code);
  return b;
}

static void dnotifies(void)
{
  sigset_t bl;
  sigemptyset(&bl);
  sigaddset(&bl, SIGIO);
  sigprocmask(SIG_BLOCK, &bl, NULL);
  mkdir(P("dn"), 0700);
  int d = open(P("dn"), O_RDONLY | O_DIRECTORY);
  int f0 = open(P("dn/f"), O_CREAT | O_WRONLY, 0600);
  printf("F_NOTIFY of a file: %s\n", en(fcntl(f0, F_NOTIFY, DN_CREATE)));
  printf("F_NOTIFY DN_CREATE: %s\n", en(fcntl(d, F_NOTIFY, DN_CREATE)));
  printf("nothing yet: %s\n", sigio());
  int f = open(P("dn/a"), O_CREAT | O_WRONLY, 0600);
  printf("create: %s\n", sigio());
  close(open(P("dn/b"), O_CREAT | O_WRONLY, 0600));
  printf("create again (one shot): %s\n", sigio());
  printf("F_NOTIFY the others, multishot: %s\n",
         en(fcntl(d, F_NOTIFY, DN_MODIFY | DN_DELETE | DN_ATTRIB | DN_RENAME | DN_MULTISHOT)));
  write(f, "x", 1);
  printf("write: %s\n", sigio());
  chmod(P("dn/a"), 0644);
  printf("chmod: %s\n", sigio());
  rename(P("dn/b"), P("dn/c"));
  printf("rename: %s\n", sigio());
  unlink(P("dn/c"));
  printf("unlink: %s\n", sigio());
  mkdir(P("dn2"), 0700);
  close(open(P("dn2/x"), O_CREAT | O_WRONLY, 0600));
  unlink(P("dn2/x"));
  rmdir(P("dn2"));
  printf("another directory: %s\n", sigio());
  printf("F_NOTIFY 0: %s\n", en(fcntl(d, F_NOTIFY, 0)));
  write(f, "y", 1);
  printf("write after: %s\n", sigio());
  printf("F_NOTIFY DN_DELETE again: %s\n", en(fcntl(d, F_NOTIFY, DN_DELETE | DN_MULTISHOT)));
  close(d);
  unlink(P("dn/a"));
  printf("unlink after the close: %s\n", sigio());
  close(f);
  close(f0);
  unlink(P("dn/f"));
  rmdir(P("dn"));
  sigprocmask(SIG_UNBLOCK, &bl, NULL);
}

int main(int argc, char **argv)
{
  if (argc < 3)
    return 2;
  D = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mkdir(D, 0700) < 0) {
    perror(D);
    return 1;
  }
  const char *only = argc > 3 ? argv[3] : "";
#define RUN(name, call)                                                                                       \
  if (!*only || strstr(only, name))                                                                          \
    call;
  RUN("nofile", nofile());
  RUN("truncate", truncates());
  RUN("lower", lower(argv[2]));
  RUN("shared", shared());
  RUN("mremap", remaps());
  RUN("tmpfile", otmpfile(argv[2]));
  RUN("exchange", exchange());
  RUN("dents", dents());
  RUN("inotify", watches());
  RUN("xattr", xattrs());
  RUN("dnotify", dnotifies());
  unlink(P("nf"));
  unlink(P("t"));
  unlink(P("fa"));
  unlink(P("sp"));
  unlink(P("empty"));
  unlink(P("sh"));
  unlink(P("mr"));
  printf("rmdir: %s\n", en(rmdir(D)));
  return 0;
}
