/* cf_clone on the file system of $TMPDIR (default /tmp): contents, size,
 * holes, permission bits, which method is taken, errors, no temp files left.
 * The expected methods follow from a reflink probe: with reflink, both
 * cases reflink; without (ext4), CF_CLONE_IMMUTABLE gives a hardlink and a
 * plain clone copy_file_range. A tmpfs source (/dev/shm) exercises the
 * cross-file-system copy.
 *
 * Helper mode for tests/clone-xfs.sh: `clone [-i] SRC DST` runs one cf_clone
 * (-i: CF_CLONE_IMMUTABLE), prints the method name, exits 1 on error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "cowfork/clone.h"
#include "cowfork/error.h"
#include "tap.h"

static char dir[256];

/* errno right after a cf_clone, before TAP output can clobber it. */
static int last_errno;
static int try_(int r)
{
  last_errno = errno;
  if (r < 0)
    diag("cf_clone: -1, %s", cf_error());
  return r;
}
#define CLONE(...) try_(cf_clone(__VA_ARGS__))

static const char *path(const char *name)
{
  static __thread char buf[4][512]; /* racers call this from threads */
  static __thread int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

/* Deterministic pseudo-random bytes, so a mismatch is reproducible. */
static void fill(char *b, size_t n, uint64_t seed)
{
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (char)x;
  }
}

static int write_at(const char *p, uint64_t off, size_t len, uint64_t seed)
{
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  if (fd < 0)
    return -1;
  char *b = malloc(len ? len : 1);
  fill(b, len, seed);
  ssize_t w = pwrite(fd, b, len, off);
  free(b);
  close(fd);
  return w == (ssize_t)len ? 0 : -1;
}

static int make_file(const char *p, size_t len, uint64_t seed, mode_t mode)
{
  unlink(p);
  if (write_at(p, 0, len, seed) < 0)
    return -1;
  return chmod(p, mode);
}

/* 1 when both files have the same size and bytes. */
static int same_contents(const char *a, const char *b)
{
  int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
  int same = fa >= 0 && fb >= 0;
  static char ba[1 << 20], bb[1 << 20];
  while (same) {
    ssize_t ra = read(fa, ba, sizeof ba), rb = read(fb, bb, sizeof bb);
    if (ra != rb || ra < 0 || memcmp(ba, bb, ra) != 0)
      same = 0;
    if (ra <= 0)
      break;
  }
  if (fa >= 0)
    close(fa);
  if (fb >= 0)
    close(fb);
  return same;
}

static struct stat st_of(const char *p)
{
  struct stat st;
  if (lstat(p, &st) < 0)
    memset(&st, 0, sizeof st);
  return st;
}

static int exists(const char *p)
{
  struct stat st;
  return lstat(p, &st) == 0;
}

/* Names in dir that look like cf_clone temp files. */
static int temp_files_left(void)
{
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) {
      diag("left behind: %s", e->d_name);
      n++;
    }
  if (d)
    closedir(d);
  return n;
}

/* Does this file system share extents? Probed here, independently of the
 * library, so the expectation is not derived from the code under test. */
static int fs_has_reflink(void)
{
  write_at(path("probe-a"), 0, 4096, 1);
  int a = open(path("probe-a"), O_RDONLY);
  int b = open(path("probe-b"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int r = a >= 0 && b >= 0 && ioctl(b, FICLONE, a) == 0;
  close(a);
  close(b);
  unlink(path("probe-a"));
  unlink(path("probe-b"));
  return r;
}

static int rm_one(const char *p, const struct stat *sb, int type, struct FTW *f)
{
  return remove(p);
}

/* Racing clones to one dst: RENAME_NOREPLACE lets exactly one win. */
struct racer {
  unsigned flags;
  int r, err;
};

static void *race(void *arg)
{
  struct racer *rc = arg;
  rc->r = cf_clone(path("data"), path("race"), rc->flags, NULL);
  rc->err = rc->r < 0 ? cf_errno() : 0;
  return NULL;
}

static int one_clone(int argc, char **argv)
{
  unsigned flags = 0;
  int i = 1;
  if (argc == 4 && strcmp(argv[1], "-i") == 0) {
    flags = CF_CLONE_IMMUTABLE;
    i = 2;
  } else if (argc != 3) {
    fprintf(stderr, "usage: %s [-i] SRC DST\n", argv[0]);
    return 2;
  }
  enum cf_clone_method m;
  if (cf_clone(argv[i], argv[i + 1], flags, &m) < 0) {
    fprintf(stderr, "%s\n", cf_error());
    return 1;
  }
  printf("%s\n", cf_clone_method_name(m));
  return 0;
}

int main(int argc, char **argv)
{
  if (argc > 1)
    return one_clone(argc, argv);

  const char *tmpdir = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/cowfork-clone.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dir))
    skip_all("cannot make a temp directory");

  struct statfs sfs;
  statfs(dir, &sfs);
  int ext4 = sfs.f_type == EXT4_SUPER_MAGIC;
  int reflink = fs_has_reflink();
  diag("testing in %s: f_type %#lx%s, reflink %s", dir, (unsigned long)sfs.f_type,
       ext4 ? " (ext4)" : "", reflink ? "yes" : "no");
  enum cf_clone_method m;

  /* Method names. */
  ok(strcmp(cf_clone_method_name(CF_CLONE_REFLINK), "reflink") == 0, "name reflink");
  ok(strcmp(cf_clone_method_name(CF_CLONE_HARDLINK), "hardlink") == 0, "name hardlink");
  ok(strcmp(cf_clone_method_name(CF_CLONE_COPY_RANGE), "copy_file_range") == 0,
     "name copy_file_range");
  ok(strcmp(cf_clone_method_name(CF_CLONE_READWRITE), "read/write") == 0, "name read/write");

  /* A plain clone: a new inode with the same bytes, never a hardlink. */
  size_t len = (5u << 20) + 123;
  ok(make_file(path("data"), len, 42, 0640) == 0, "made a %zu-byte source", len);
  umask(077); /* must not affect the copied permission bits */
  m = 99;
  is(CLONE(path("data"), path("plain"), 0, &m), 0, "plain clone");
  if (reflink)
    is(m, CF_CLONE_REFLINK, "plain clone reflinks (got %s)", cf_clone_method_name(m));
  else if (ext4)
    is(m, CF_CLONE_COPY_RANGE, "plain clone on ext4 uses copy_file_range (got %s)",
       cf_clone_method_name(m));
  else
    diag("plain clone used %s", cf_clone_method_name(m));
  ok(m != CF_CLONE_HARDLINK, "plain clone is not a hardlink");
  struct stat a = st_of(path("data")), b = st_of(path("plain"));
  ok(a.st_ino != b.st_ino, "plain clone has its own inode");
  is(a.st_nlink, 1, "source still has one link");
  is(b.st_size, (long long)len, "plain clone size");
  ok(S_ISREG(b.st_mode), "plain clone is a regular file");
  is(b.st_mode & 07777, 0640, "plain clone permission bits (umask 077)");
  ok(same_contents(path("data"), path("plain")), "plain clone contents equal");

  /* Writing to a plain clone leaves the source alone. */
  ok(write_at(path("plain"), 4096, 100, 7) == 0, "wrote to the clone");
  ok(!same_contents(path("data"), path("plain")), "clone now differs");
  ok(make_file(path("data-again"), len, 42, 0640) == 0 &&
         same_contents(path("data"), path("data-again")),
     "source unchanged by a write to its clone");

  /* Other modes, including read-only and executable. */
  static const mode_t modes[] = {0600, 0755, 0444, 0700};
  for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
    char s[32], d[32];
    snprintf(s, sizeof s, "mode-%o", modes[i]);
    snprintf(d, sizeof d, "mode-%o-clone", modes[i]);
    make_file(path(s), 1000, i, modes[i]);
    is(CLONE(path(s), path(d), 0, NULL), 0, "clone of a %o file (method NULL)", modes[i]);
    is(st_of(path(d)).st_mode & 07777, modes[i], "permission bits %o copied", modes[i]);
  }
  umask(022);

  /* CF_CLONE_IMMUTABLE: a hardlink unless the file system can reflink. */
  m = 99;
  is(CLONE(path("data"), path("immutable"), CF_CLONE_IMMUTABLE, &m), 0,
     "immutable clone");
  b = st_of(path("immutable"));
  if (reflink) {
    is(m, CF_CLONE_REFLINK, "immutable clone still prefers reflink (got %s)",
       cf_clone_method_name(m));
  } else {
    is(m, CF_CLONE_HARDLINK, "immutable clone hardlinks (got %s)", cf_clone_method_name(m));
    ok(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "hardlink shares the inode");
    is(st_of(path("data")).st_nlink, 2, "source now has two links");
  }
  ok(same_contents(path("data"), path("immutable")), "immutable clone contents equal");

  /* Through a symlink, the hardlink is to the target, not to the link. */
  ok(symlink("data", path("link-to-data")) == 0, "made a symlink to the source");
  is(CLONE(path("link-to-data"), path("via-link"), CF_CLONE_IMMUTABLE, &m), 0,
     "clone through a symlink");
  b = st_of(path("via-link"));
  ok(S_ISREG(b.st_mode), "clone through a symlink is a regular file");
  ok(same_contents(path("data"), path("via-link")), "clone through a symlink: contents");
  if (m == CF_CLONE_HARDLINK)
    ok(b.st_ino == a.st_ino, "hardlink through a symlink is to its target");

  /* A sparse file: 256 MiB with 3 small data extents. */
  const uint64_t big = 256ull << 20;
  unlink(path("sparse"));
  ok(write_at(path("sparse"), 0, 65536, 3) == 0 &&
         write_at(path("sparse"), 100ull << 20, 65536, 4) == 0 &&
         write_at(path("sparse"), big - 10, 10, 5) == 0,
     "made a sparse source");
  a = st_of(path("sparse"));
  diag("sparse source: %lld bytes, %lld blocks", (long long)a.st_size, (long long)a.st_blocks);
  for (unsigned f = 0; f < 2; f++) {
    const char *d = f ? path("sparse-immutable") : path("sparse-clone");
    m = 99;
    is(CLONE(path("sparse"), d, f ? CF_CLONE_IMMUTABLE : 0, &m), 0, "clone sparse%s",
       f ? " immutable" : "");
    b = st_of(d);
    diag("  by %s: %lld blocks", cf_clone_method_name(m), (long long)b.st_blocks);
    is(b.st_size, (long long)big, "sparse clone size");
    ok(b.st_blocks * 512 <= (1 << 20), "sparse clone allocates little (%lld blocks)",
       (long long)b.st_blocks);
    ok(same_contents(path("sparse"), d), "sparse clone contents equal");
    int fd = open(d, O_RDONLY);
    is(lseek(fd, 65536, SEEK_DATA), 100ll << 20, "hole after the first extent kept");
    close(fd);
  }

  /* A source on another file system (tmpfs) cannot be linked or shared. */
  char shm[] = "/dev/shm/cowfork-clone.XXXXXX";
  int sfd = mkstemp(shm);
  struct stat shst;
  if (sfd >= 0 && fstat(sfd, &shst) == 0 && shst.st_dev != st_of(dir).st_dev) {
    close(sfd);
    ok(write_at(shm, 1 << 20, 4096, 9) == 0 && write_at(shm, (64 << 20) - 1, 1, 10) == 0 &&
           chmod(shm, 0604) == 0,
       "made a sparse source on /dev/shm");
    m = 99;
    is(CLONE(shm, path("from-shm"), CF_CLONE_IMMUTABLE, &m), 0,
       "clone across file systems");
    ok(m == CF_CLONE_COPY_RANGE || m == CF_CLONE_READWRITE,
       "across file systems: a copy (got %s)", cf_clone_method_name(m));
    b = st_of(path("from-shm"));
    is(b.st_size, 64 << 20, "cross-fs clone size");
    ok(b.st_blocks * 512 <= (1 << 20), "cross-fs clone keeps holes (%lld blocks)",
       (long long)b.st_blocks);
    is(b.st_mode & 07777, 0604, "cross-fs clone permission bits");
    ok(same_contents(shm, path("from-shm")), "cross-fs clone contents equal");
    unlink(shm);
  } else {
    if (sfd >= 0) {
      close(sfd);
      unlink(shm);
    }
    diag("no separate /dev/shm: cross-file-system copy not tested");
  }

  /* Empty and all-hole files. */
  make_file(path("empty"), 0, 0, 0644);
  is(CLONE(path("empty"), path("empty-clone"), 0, &m), 0, "clone an empty file");
  is(st_of(path("empty-clone")).st_size, 0, "empty clone is empty");
  int fd = open(path("holes"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ok(fd >= 0 && ftruncate(fd, 10 << 20) == 0, "made an all-hole file");
  close(fd);
  is(CLONE(path("holes"), path("holes-clone"), 0, &m), 0, "clone an all-hole file");
  b = st_of(path("holes-clone"));
  is(b.st_size, 10 << 20, "all-hole clone size");
  is(b.st_blocks, 0, "all-hole clone allocates nothing");

  /* dst exists: EEXIST, and dst untouched, with either flag. */
  make_file(path("taken"), 100, 77, 0600);
  for (unsigned f = 0; f < 2; f++) {
    is(CLONE(path("data"), path("taken"), f ? CF_CLONE_IMMUTABLE : 0, &m), -1,
       "existing dst refused%s", f ? " (immutable)" : "");
    is(last_errno, EEXIST, "errno EEXIST");
    is(cf_errno(), EEXIST, "cf_errno EEXIST");
    ok(strstr(cf_error(), path("taken")) != NULL, "message names dst: %s", cf_error());
    ok(strncmp(cf_error(), "cf_clone: ", 10) == 0, "message starts with cf_clone:");
    b = st_of(path("taken"));
    is(b.st_size, 100, "existing dst keeps its size");
    is(b.st_mode & 07777, 0600, "existing dst keeps its mode");
  }
  ok(symlink("nowhere", path("dangling")) == 0, "made a dangling symlink");
  is(CLONE(path("data"), path("dangling"), 0, &m), -1, "dangling symlink at dst refused");
  is(last_errno, EEXIST, "errno EEXIST for a dangling symlink");
  ok(!exists(path("nowhere")), "nothing created through the dangling symlink");

  /* src missing: ENOENT naming src, nothing at dst. */
  is(CLONE(path("missing"), path("missing-clone"), 0, &m), -1, "missing src refused");
  is(last_errno, ENOENT, "errno ENOENT");
  ok(strstr(cf_error(), path("missing")) != NULL, "message names src: %s", cf_error());
  ok(!exists(path("missing-clone")), "nothing at dst");
  is(CLONE(path("missing"), path("missing-clone"), CF_CLONE_IMMUTABLE, &m), -1,
     "missing src refused (immutable)");
  is(last_errno, ENOENT, "errno ENOENT (immutable)");

  /* dst's directory missing. */
  is(CLONE(path("data"), path("no-such-dir/x"), 0, &m), -1, "missing dst directory refused");
  is(last_errno, ENOENT, "errno ENOENT for a missing dst directory");
  ok(strstr(cf_error(), "no-such-dir/x") != NULL, "message names dst: %s", cf_error());

  /* Not regular files, bad flags. */
  ok(mkdir(path("adir"), 0755) == 0, "made a directory");
  is(CLONE(path("adir"), path("adir-clone"), 0, &m), -1, "directory src refused");
  is(last_errno, EISDIR, "errno EISDIR");
  ok(mkfifo(path("fifo"), 0644) == 0, "made a FIFO");
  is(CLONE(path("fifo"), path("fifo-clone"), 0, &m), -1, "FIFO src refused without hanging");
  is(last_errno, EINVAL, "errno EINVAL for a FIFO");
  is(CLONE(path("data"), path("badflags"), 0x80, &m), -1, "unknown flags refused");
  is(last_errno, EINVAL, "errno EINVAL for unknown flags");
  ok(!exists(path("adir-clone")) && !exists(path("fifo-clone")) && !exists(path("badflags")),
     "nothing created by refused calls");

  for (unsigned f = 0; f < 2; f++) {
    enum { N = 8 };
    struct racer rc[N];
    pthread_t t[N];
    unlink(path("race"));
    for (int i = 0; i < N; i++) {
      rc[i] = (struct racer){.flags = f ? CF_CLONE_IMMUTABLE : 0};
      pthread_create(&t[i], NULL, race, &rc[i]);
    }
    int won = 0, eexist = 0;
    for (int i = 0; i < N; i++) {
      pthread_join(t[i], NULL);
      won += rc[i].r == 0;
      eexist += rc[i].r < 0 && rc[i].err == EEXIST;
    }
    is(won, 1, "%d racing clones%s: one wins", N, f ? " (immutable)" : "");
    is(eexist, N - 1, "the others get EEXIST");
    ok(same_contents(path("data"), path("race")), "the winner's dst is complete");
  }

  is(temp_files_left(), 0, "no temp files left behind");

  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return done_testing();
}
