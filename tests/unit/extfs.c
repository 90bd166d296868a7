/* lib/extfs.c: an ext4 file system made and changed through libext2fs in a
 * copy-on-write overlay over an empty image, saved as an image, exported
 * and checked by e2fsck -fn (a peer nobody here wrote: it fails on a wrong
 * block of the io_manager, a bad checksum, a wrong link count or bitmap);
 * a second overlay over the saved image sees the same files; deleting a
 * file there saves as a child image holding almost nothing (the freed
 * blocks were discarded: empty extents, not data). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/extfs.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "cowfork/overlay.h"
#include "cowfork/store.h"
#include "tap.h"

static char dir[] = "/tmp/cowfork-extfs.XXXXXX";
static struct cf_store *store;

static int have_e2fsck(void) { return system("command -v e2fsck >/dev/null 2>&1") == 0; }

/* Export image name to a raw file and run e2fsck -fn on it: its status. */
static int fsck(const char *name)
{
  char path[512], cmd[1024];
  snprintf(path, sizeof path, "%s/%s.raw", dir, name);
  struct cf_image *img = cf_image_open(store, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (!img || fd < 0 || cf_image_export(img, fd, NULL, NULL) < 0) {
    diag("export %s: %s", name, cf_error());
    return -1;
  }
  close(fd);
  cf_image_close(img);
  snprintf(cmd, sizeof cmd, "e2fsck -fn %s > %s/fsck.out 2>&1", path, dir);
  int st = system(cmd);
  if (st != 0) {
    snprintf(cmd, sizeof cmd, "sed 's/^/#   /' %s/fsck.out", dir);
    if (system(cmd)) {
    }
  }
  if (!getenv("KEEP")) unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static struct cf_overlay *overlay(const char *name)
{
  struct cf_image *img = cf_image_open(store, name);
  return img ? cf_overlay_new(img, dir) : NULL;
}

struct count {
  int n, whiteouts;
};
static int count_cb(void *ctx, const char *name, uint32_t ino, unsigned char type)
{
  struct count *c = ctx;
  c->n++;
  c->whiteouts += type == DT_CHR;
  return 0;
}

int main(void)
{
  if (!have_e2fsck())
    skip_all("e2fsck is not installed (e2fsprogs)");
  if (!mkdtemp(dir))
    return 1;
  char sd[300];
  snprintf(sd, sizeof sd, "%s/store", dir);
  store = cf_store_open(sd);
  ok(store, "store");
  const uint64_t size = 64u << 20;
  struct cf_header *h = cf_header_new_empty(size, 4096);
  ok(h && cf_store_put_header(store, "empty", h) == 0, "an empty image of 64 MiB");
  cf_header_free(h);

  struct cf_overlay *ov = overlay("empty");
  ok(ov, "overlay");
  ok(cf_extfs_mkfs(ov, "test") == 0, "mkfs: %s", cf_error());
  struct cf_overlay_stats os;
  cf_overlay_stats(ov, &os);
  ok(os.dirty_blocks < 256, "mkfs wrote %llu blocks (the inode tables are not written)",
     (unsigned long long)os.dirty_blocks);
  struct cf_extfs *fs = cf_extfs_open(ov);
  ok(fs, "open: %s", cf_error());

  uint32_t d, f, e2, l, l2, p, w, hard, sock, dev;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "d", S_IFDIR | 0750, 0, NULL, 1000, 100, &d) == 0, "mkdir d");
  is(cf_extfs_create(fs, CF_EXTFS_ROOT, "d", S_IFDIR | 0750, 0, NULL, 0, 0, &e2), -1, "mkdir d again");
  is(errno, EEXIST, "EEXIST");
  ok(cf_extfs_create(fs, d, "f", S_IFREG | 0640, 0, NULL, 1000, 100, &f) == 0, "create d/f");
  struct stat st;
  ok(cf_extfs_stat(fs, d, &st) == 0 && st.st_mode == (S_IFDIR | 0750) && st.st_uid == 1000 && st.st_gid == 100 &&
         st.st_nlink == 2,
     "d: mode, owner, links");
  ok(cf_extfs_stat(fs, CF_EXTFS_ROOT, &st) == 0 && st.st_nlink == 4, "root: 4 links (., .., lost+found, d)");

  /* Data: 1 MiB of a pattern, then a few bytes far away (a hole between). */
  size_t n = 1u << 20;
  char *buf = malloc(n), *back = malloc(n);
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)(i * 7 + i / 4096);
  is(cf_extfs_write(fs, f, buf, n, 0), (long)n, "write 1 MiB");
  is(cf_extfs_write(fs, f, "tail", 4, 5u << 20), 4, "write at 5 MiB");
  ok(cf_extfs_stat(fs, f, &st) == 0 && st.st_size == (5 << 20) + 4, "size 5 MiB + 4");
  ok(st.st_blocks < 2 * 1024 * 2 + 64, "sparse: %lld sectors", (long long)st.st_blocks);
  is(cf_extfs_read(fs, f, back, n, 0), (long)n, "read 1 MiB");
  ok(memcmp(buf, back, n) == 0, "same bytes");
  char small[16] = {0};
  is(cf_extfs_read(fs, f, small, 16, (5u << 20) - 4), 8, "a read at the end is short");
  ok(memcmp(small, "\0\0\0\0tail", 8) == 0, "hole reads as zeros");
  is(cf_extfs_seek_data(fs, f, 0, SEEK_HOLE), 1 << 20, "SEEK_HOLE at 1 MiB");
  is(cf_extfs_seek_data(fs, f, 2 << 20, SEEK_DATA), 5 << 20, "SEEK_DATA at 5 MiB");
  is(cf_extfs_seek_data(fs, f, 6 << 20, SEEK_DATA), -1, "SEEK_DATA past the end");
  ok(cf_extfs_punch(fs, f, 4096 + 100, 3 * 4096) == 0, "punch a hole");
  is(cf_extfs_read(fs, f, back, n, 0), (long)n, "read again");
  memset(buf + 4096 + 100, 0, 3 * 4096);
  ok(memcmp(buf, back, n) == 0, "the punched range reads as zeros, the rest is kept");
  is(cf_extfs_seek_data(fs, f, 8192, SEEK_DATA), 4 * 4096, "SEEK_DATA after the punched blocks");

  /* Unaligned ends around a bulk middle, over a file with data already:
   * compared with a model. */
  uint32_t u;
  size_t un = 300 * 1024 + 77;
  char *model = calloc(1, 1u << 20), *got = malloc(1u << 20);
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "u", S_IFREG | 0644, 0, NULL, 0, 0, &u) == 0, "u");
  memset(model + 4000, 0x11, 9000);
  is(cf_extfs_write(fs, u, model + 4000, 9000, 4000), 9000, "small write (file API)");
  for (size_t i = 0; i < un; i++)
    model[1000 + i] = (char)(i * 13 + 1);
  is(cf_extfs_write(fs, u, model + 1000, un, 1000), (long)un, "unaligned 300 KiB write (bulk middle)");
  is(cf_extfs_read(fs, u, got, 1u << 20, 0), (long)(1000 + un), "read it all");
  ok(memcmp(model, got, 1000 + un) == 0, "same bytes as the model");
  is(cf_extfs_read(fs, u, got, 200 * 1024 + 3, 4097), 200 * 1024 + 3, "unaligned bulk read");
  ok(memcmp(model + 4097, got, 200 * 1024 + 3) == 0, "same bytes");
  free(model);
  free(got);

  /* Other kinds of file. */
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "l", S_IFLNK, 0, "d/f", 0, 0, &l) == 0, "short symlink");
  char lt[300], longt[200];
  memset(longt, 'x', 150);
  longt[150] = 0;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "l2", S_IFLNK, 0, longt, 0, 0, &l2) == 0, "long symlink");
  ok(cf_extfs_readlink(fs, l, lt, sizeof lt) == 3 && !strcmp(lt, "d/f"), "readlink short");
  ok(cf_extfs_readlink(fs, l2, lt, sizeof lt) == 150 && !strcmp(lt, longt), "readlink long");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "p", S_IFIFO | 0600, 0, NULL, 0, 0, &p) == 0, "fifo");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "s", S_IFSOCK | 0600, 0, NULL, 0, 0, &sock) == 0, "socket");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "w", S_IFCHR, 0, NULL, 0, 0, &w) == 0, "whiteout (char 0/0)");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "null", S_IFCHR | 0666, makedev(1, 3), NULL, 0, 0, &dev) == 0 &&
         cf_extfs_stat(fs, dev, &st) == 0 && st.st_rdev == makedev(1, 3),
     "char device 1:3");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "big", S_IFBLK | 0600, makedev(259, 300), NULL, 0, 0, &dev) == 0 &&
         cf_extfs_stat(fs, dev, &st) == 0 && st.st_rdev == makedev(259, 300),
     "block device 259:300 (the new encoding)");
  ok(cf_extfs_setxattr(fs, d, "trusted.overlay.opaque", "y", 1) == 0, "opaque: %s", cf_error());
  char xv[8];
  is(cf_extfs_getxattr(fs, d, "trusted.overlay.opaque", xv, sizeof xv), 1, "getxattr");
  ok(xv[0] == 'y', "its value");
  is(cf_extfs_getxattr(fs, f, "trusted.overlay.opaque", xv, sizeof xv), -1, "none on f");
  is(errno, ENODATA, "ENODATA");

  /* Links, renames, times. */
  ok(cf_extfs_link(fs, f, CF_EXTFS_ROOT, "hard") == 0 && cf_extfs_lookup(fs, CF_EXTFS_ROOT, "hard", 4, &hard) == 0 &&
         hard == f,
     "hard link");
  ok(cf_extfs_stat(fs, f, &st) == 0 && st.st_nlink == 2, "2 links");
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "e", S_IFDIR | 0755, 0, NULL, 0, 0, &e2) == 0, "mkdir e");
  ok(cf_extfs_rename(fs, CF_EXTFS_ROOT, "d", e2, "d2") == 0, "rename d to e/d2");
  uint32_t dotdot;
  ok(cf_extfs_lookup(fs, d, "..", 2, &dotdot) == 0 && dotdot == e2, "its .. is e");
  ok(cf_extfs_stat(fs, e2, &st) == 0 && st.st_nlink == 3, "e has 3 links");
  ok(cf_extfs_stat(fs, CF_EXTFS_ROOT, &st) == 0 && st.st_nlink == 4, "root has 4 (d left, e came)");
  ok(cf_extfs_rename(fs, d, "f", CF_EXTFS_ROOT, "g") == 0, "rename e/d2/f to g");
  is(cf_extfs_rename(fs, CF_EXTFS_ROOT, "g", CF_EXTFS_ROOT, "hard"), -1, "rename onto an existing name");
  is(errno, EEXIST, "EEXIST (the caller unlinks first)");
  struct timespec t1 = {1234567890, 123456789}, t2 = {(1ll << 32) + 5, 42};
  ok(cf_extfs_set_times(fs, f, &t1, &t2, NULL) == 0 && cf_extfs_stat(fs, f, &st) == 0 &&
         st.st_atim.tv_sec == t1.tv_sec && st.st_atim.tv_nsec == t1.tv_nsec && st.st_mtim.tv_sec == t2.tv_sec &&
         st.st_mtim.tv_nsec == t2.tv_nsec,
     "times with nanoseconds, past 2038");
  ok(cf_extfs_chmod(fs, f, 04711) == 0 && cf_extfs_chown(fs, f, 70000, (unsigned)-1) == 0 &&
         cf_extfs_stat(fs, f, &st) == 0 && st.st_mode == (S_IFREG | 04711) && st.st_uid == 70000 && st.st_gid == 100,
     "chmod, chown with a 32-bit uid");

  /* A directory grown past one block. */
  uint32_t many;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "many", S_IFDIR | 0755, 0, NULL, 0, 0, &many) == 0, "mkdir many");
  int made = 0;
  for (int i = 0; i < 300; i++) {
    char name[64];
    uint32_t k;
    snprintf(name, sizeof name, "file-with-a-longish-name-%04d", i);
    made += cf_extfs_create(fs, many, name, (i % 10 ? S_IFREG : S_IFDIR) | 0644, 0, NULL, 0, 0, &k) == 0;
  }
  is(made, 300, "300 entries");
  struct count c = {0};
  ok(cf_extfs_readdir(fs, many, count_cb, &c) == 0 && c.n == 300, "readdir sees 300");
  is(cf_extfs_unlink(fs, CF_EXTFS_ROOT, "many", false, NULL), -1, "rmdir of a full directory");
  is(errno, ENOTEMPTY, "ENOTEMPTY");
  c = (struct count){0};
  ok(cf_extfs_readdir(fs, CF_EXTFS_ROOT, count_cb, &c) == 0 && c.whiteouts == 2, "readdir of / (types)");

  /* Unlinks: a file with two names, an open one kept, a big one freed. */
  ok(cf_extfs_unlink(fs, CF_EXTFS_ROOT, "hard", false, NULL) == 0 && cf_extfs_stat(fs, f, &st) == 0 &&
         st.st_nlink == 1,
     "unlink one of two names");
  uint32_t big;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "big8", S_IFREG | 0644, 0, NULL, 0, 0, &big) == 0, "big8");
  char *mb = malloc(8u << 20);
  memset(mb, 0x5a, 8u << 20);
  is(cf_extfs_write(fs, big, mb, 8u << 20, 0), 8 << 20, "write 8 MiB");
  uint64_t blocks, bfree0, bfree1, files, ffree;
  cf_extfs_statfs(fs, &blocks, &bfree0, &files, &ffree);
  uint32_t kept;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "kept", S_IFREG | 0644, 0, NULL, 0, 0, &kept) == 0 &&
         cf_extfs_write(fs, kept, "abc", 3, 0) == 3 && cf_extfs_unlink(fs, CF_EXTFS_ROOT, "kept", true, NULL) == 0,
     "unlink a file kept open");
  ok(cf_extfs_read(fs, kept, small, 3, 0) == 3 && !memcmp(small, "abc", 3), "it still reads");
  /* Not checked here: a save while it is kept. e2fsck -n does not process
   * the orphan list (the kernel and a writing e2fsck free such inodes),
   * so it reports "deleted inode has zero dtime"; the shim is to name kept
   * inodes in a work directory before a save (docs/architecture.md). */
  ok(cf_extfs_release(fs, kept) == 0, "release it");
  for (int i = 0; i < 300; i++) {
    char name[64];
    snprintf(name, sizeof name, "file-with-a-longish-name-%04d", i);
    cf_extfs_unlink(fs, many, name, false, NULL);
  }
  ok(cf_extfs_unlink(fs, CF_EXTFS_ROOT, "many", false, NULL) == 0, "rmdir many once empty");
  ok(cf_extfs_flush(fs) == 0, "flush");
  ok(cf_overlay_save(ov, store, "disk1") == 0, "save as disk1: %s", cf_error());
  is(fsck("disk1"), 0, "e2fsck -fn of disk1 is clean");

  /* A second overlay over disk1 (a child): the same files; delete big8. */
  ok(cf_extfs_close(fs) == 0, "close");
  cf_overlay_free(ov);
  ov = overlay("disk1");
  fs = ov ? cf_extfs_open(ov) : NULL;
  ok(fs, "reopen over disk1");
  uint32_t g;
  ok(fs && cf_extfs_lookup(fs, CF_EXTFS_ROOT, "g", 1, &g) == 0 && g == f, "g is there");
  ok(fs && cf_extfs_read(fs, g, back, n, 0) == (long)n && memcmp(buf, back, n) == 0, "with its bytes");
  ok(fs && cf_extfs_unlink(fs, CF_EXTFS_ROOT, "big8", false, NULL) == 0, "delete big8");
  cf_extfs_statfs(fs, &blocks, &bfree1, &files, &ffree);
  ok(bfree1 >= bfree0 + 2048, "its 2048 blocks are free again (%llu -> %llu)", (unsigned long long)bfree0,
     (unsigned long long)bfree1);
  ok(cf_extfs_flush(fs) == 0 && cf_overlay_save(ov, store, "disk2") == 0, "save as disk2");
  struct cf_header *h2 = cf_store_get_header(store, "disk2");
  struct cf_image_stats is2;
  cf_image_stats(h2, &is2);
  ok(is2.own_bytes < (1u << 20), "disk2 stores %llu bytes of its own (metadata only: freed blocks are empty)",
     (unsigned long long)is2.own_bytes);
  cf_header_free(h2);
  is(fsck("disk2"), 0, "e2fsck -fn of disk2 is clean");

  /* A file larger than the disk: ENOSPC, and the file system stays sound. */
  uint32_t huge;
  ok(cf_extfs_create(fs, CF_EXTFS_ROOT, "huge", S_IFREG | 0644, 0, NULL, 0, 0, &huge) == 0, "huge");
  long wrote = 0, k;
  while ((k = cf_extfs_write(fs, huge, mb, 8u << 20, (uint64_t)wrote)) == 8 << 20)
    wrote += k;
  if (k > 0)
    wrote += k;
  ok(wrote < (long)size && wrote > (long)size / 2, "filled to %ld bytes", wrote);
  ok(cf_extfs_write(fs, huge, mb, 8u << 20, (uint64_t)wrote) == -1 && errno == ENOSPC, "then ENOSPC");
  ok(cf_extfs_flush(fs) == 0 && cf_overlay_save(ov, store, "diskfull") == 0, "save as diskfull");
  is(fsck("diskfull"), 0, "e2fsck -fn of diskfull is clean");
  ok(cf_extfs_truncate(fs, huge, 4096) == 0 && cf_extfs_stat(fs, huge, &st) == 0 && st.st_size == 4096,
     "truncate to 4 KiB: %s", cf_error());
  ok(cf_extfs_flush(fs) == 0 && cf_overlay_save(ov, store, "disk3") == 0, "save as disk3");
  is(fsck("disk3"), 0, "e2fsck -fn of disk3 is clean");
  ok(cf_extfs_close(fs) == 0, "close");
  cf_overlay_free(ov);

  /* A damaged disk: open fails with a message, never a crash (a sandbox's
   * disk image is checked by its layers' checksums first; this is what is
   * left to libext2fs). */
  struct {
    const char *what;
    uint64_t off, len;
    int fill; /* -1: a byte flipped at off; else memset */
  } bad[] = {{"no file system (zeros)", 0, 1 << 20, 0},
             {"a superblock byte flipped", 1024 + 0x30, 1, -1},
             {"the group descriptors overwritten", 4096, 4096, 0xa5},
             {"the first MiB random", 0, 1 << 20, 'r'}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ov = overlay("disk3");
    if (bad[i].fill == -1) {
      uint8_t x = 0;
      cf_overlay_pread(ov, &x, 1, bad[i].off);
      x ^= 0xff;
      cf_overlay_pwrite(ov, &x, 1, bad[i].off, 0);
    } else {
      for (uint64_t j = 0; j < bad[i].len; j++)
        mb[j] = (char)(bad[i].fill == 'r' ? (uint8_t)(j * 2654435761u >> 13) : (uint8_t)bad[i].fill);
      cf_overlay_pwrite(ov, mb, bad[i].len, bad[i].off, 0);
    }
    errno = 0;
    fs = cf_extfs_open(ov);
    ok(!fs && cf_error()[0], "%s: open fails: %s", bad[i].what, cf_error());
    cf_extfs_close(fs);
    cf_overlay_free(ov);
  }

  /* cf_extfs_new_disk: a disk in no store (cowfork run --disk, the daemon) */
  errno = 0;
  ok(!cf_extfs_new_disk(15u << 20, dir) && errno == EINVAL, "a 15 MiB disk is refused: %s", cf_error());
  ok(!cf_extfs_new_disk((16u << 20) + 4096, dir) && errno == EINVAL, "so is one not a multiple of 1 MiB");
  ov = cf_extfs_new_disk(32u << 20, dir);
  fs = ov ? cf_extfs_open(ov) : NULL;
  uint32_t nf;
  ok(fs && cf_extfs_create(fs, CF_EXTFS_ROOT, "n", S_IFREG | 0644, 0, NULL, 0, 0, &nf) == 0 &&
         cf_extfs_write(fs, nf, "new", 3, 0) == 3,
     "a new 32 MiB disk holds a file system: %s", cf_error());
  ok(fs && cf_extfs_close(fs) == 0 && cf_overlay_save(ov, store, "newdisk") == 0, "saved into a store");
  cf_overlay_free(ov);
  is(fsck("newdisk"), 0, "e2fsck -fn of it is clean");
  struct cf_header *nh = cf_store_get_header(store, "newdisk");
  struct cf_image_stats nis = {0};
  if (nh)
    cf_image_stats(nh, &nis);
  ok(nh && nis.own_bytes < (1u << 20), "it stores %llu bytes (metadata and the file)",
     (unsigned long long)nis.own_bytes);
  cf_header_free(nh);
  free(buf);
  free(back);
  free(mb);
  cf_store_close(store);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", getenv("KEEP") ? "/nonexistent" : dir);
  if (system(cmd)) {
  }
  return done_testing();
}
