/* The `disk` store of shim/tmpfs.c (--disk, issue 15 item 2) without a VM:
 * a sandbox over the host's "/" whose upper layer keeps file data on an
 * ext4 disk (lib/extfs.c on an overlay over an empty image). A file twice
 * the size of the in-memory region (which /tmp still uses: ENOSPC there)
 * written and read back; a sparse write at 2 GiB; truncate, PUNCH_HOLE,
 * SEEK_DATA/SEEK_HOLE, fallocate; an open file unlinked keeps its data and
 * gives its blocks back at close; a /tmp file renamed under /root keeps
 * its bytes; MAP_SHARED's copy into a memory object (tmp_shared); statfs
 * reports the disk; a save is refused by name. Then the disk, saved as an
 * image and exported, passes e2fsck -fn. Before step 2 there was no disk
 * (the 32 MiB file was ENOSPC at 16 MiB). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include "cowfork/error.h"
#include "cowfork/extfs.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "shim_util.h"
#include "tap.h"

static char dir[] = "/tmp/cowfork-shimdisk.XXXXXX";

static uint8_t pat(uint64_t off) { return (uint8_t)(off * 7 + off / 4096); }

static int64_t gfsize(long fd)
{
  uint64_t st = galloc(NULL, sizeof(struct stat));
  struct stat s;
  if (S2(SYS_fstat, fd, st) < 0)
    return -1;
  memcpy(&s, hp(st), sizeof s);
  return s.st_size;
}

static uint64_t gbfree(const char *path)
{
  uint64_t b = galloc(NULL, sizeof(struct statfs));
  struct statfs s;
  if (S2(SYS_statfs, gs(path), b) < 0)
    return 0;
  memcpy(&s, hp(b), sizeof s);
  return s.f_bfree;
}

int main(void)
{
  if (system("command -v e2fsck >/dev/null 2>&1") != 0)
    skip_all("e2fsck is not installed (e2fsprogs)");
  if (!mkdtemp(dir))
    return 1;
  char sd[300];
  snprintf(sd, sizeof sd, "%s/store", dir);
  struct cf_store *store = cf_store_open(sd);
  struct cf_header *h = cf_header_new_empty(256u << 20, CF_EXTFS_BLOCK);
  ok(store && h && cf_store_put_header(store, "disk", h) == 0, "an empty image of 256 MiB");
  cf_header_free(h);
  struct cf_image *img = cf_image_open(store, "disk");
  struct cf_overlay *ov = img ? cf_overlay_new(img, dir) : NULL;
  ok(ov && cf_extfs_mkfs(ov, "t") == 0, "an ext4 file system on an overlay over it: %s", cf_error());
  opts.disk = ov;
  shim_setup("/");

  /* 32 MiB under /root: twice the in-memory region (TMP_SIZE(64M) = 16 MiB) */
  enum { MB = 1 << 20, N = 32 };
  uint64_t b = galloc(NULL, MB);
  uint8_t *B = hp(b);
  long fd = S3(SYS_open, gs("/root/cowfork-disk-big"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ok(fd >= 0, "open /root/cowfork-disk-big");
  long bad = 0;
  for (uint64_t i = 0; i < N; i++) {
    for (uint64_t j = 0; j < MB; j++)
      B[j] = pat(i * MB + j);
    bad += S3(SYS_write, fd, b, MB) != MB;
  }
  is(bad, 0, "%d MiB written in 1 MiB writes", N);
  is(gfsize(fd), (int64_t)N * MB, "its size");
  bad = 0;
  for (uint64_t i = 0; i < N; i++) {
    memset(hp(b), 0, MB);
    if (S4(SYS_pread64, fd, b, MB, i * MB) != MB)
      bad++;
    for (uint64_t j = 0; j < MB && !bad; j++)
      bad += B[j] != pat(i * MB + j);
  }
  is(bad, 0, "read back byte for byte");
  ok(access("/root/cowfork-disk-big", F_OK) != 0, "not on the host");

  long tf = S3(SYS_open, gs("/tmp/full"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  long r = 0;
  for (int i = 0; i < N && r >= 0; i++)
    r = S3(SYS_write, tf, b, MB);
  is(r, -ENOSPC, "/tmp stays in memory: the same writes there end in ENOSPC");
  S1(SYS_close, tf);
  S1(SYS_unlink, gs("/tmp/full"));

  /* holes: a write at 2 GiB, SEEK_DATA/SEEK_HOLE, PUNCH_HOLE, truncate */
  const uint64_t far = 1ull << 31;
  is(S4(SYS_pwrite64, fd, gs("xyz"), 3, far), 3, "pwrite at 2 GiB");
  is(gfsize(fd), (int64_t)(far + 3), "size 2 GiB + 3");
  is(S3(SYS_lseek, fd, 0, SEEK_HOLE), (long)N * MB, "SEEK_HOLE: the end of the written part");
  is(S3(SYS_lseek, fd, N * MB, SEEK_DATA), (long)(far & ~4095ull), "SEEK_DATA: the block at 2 GiB");
  memset(hp(b), 0x55, 4096);
  ok(S4(SYS_pread64, fd, b, 4096, far / 2) == 4096 && B[0] == 0 && B[4095] == 0, "the hole reads zeros");
  is(S4(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MB, 2 * MB), 0, "PUNCH_HOLE of [1, 3) MiB");
  ok(S4(SYS_pread64, fd, b, 4096, 2 * MB) == 4096 && B[1] == 0 && B[4000] == 0, "reads zeros");
  ok(S4(SYS_pread64, fd, b, 4096, 3 * MB) == 4096 && B[1] == pat(3 * MB + 1), "the data after it stays");
  is(S3(SYS_lseek, fd, MB, SEEK_DATA), 3 * MB, "SEEK_DATA skips it");
  is(S2(SYS_ftruncate, fd, 5 * MB + 10), 0, "ftruncate to 5 MiB + 10");
  is(S2(SYS_ftruncate, fd, 6 * MB), 0, "and back up to 6 MiB");
  ok(S4(SYS_pread64, fd, b, 4096, 5 * MB) == 4096 && B[9] == pat(5 * MB + 9) && B[10] == 0 &&
         B[4095] == 0,
     "the cut part reads zeros");
  is(S4(SYS_fallocate, fd, 0, 6 * MB, 2 * MB), 0, "fallocate 2 MiB past the end");
  is(gfsize(fd), (int64_t)8 * MB, "the size grows");

  /* an open file unlinked: its data stays until the close */
  uint64_t before = gbfree("/root");
  is(S1(SYS_unlink, gs("/root/cowfork-disk-big")), 0, "unlink while open");
  ok(S4(SYS_pread64, fd, b, 4096, 4 * MB) == 4096 && B[7] == pat(4 * MB + 7), "the open file still reads");
  S1(SYS_close, fd);
  uint64_t after = gbfree("/root");
  ok(after > before + 1000, "the close gives its blocks back (statfs of /root: %llu -> %llu free)",
     (unsigned long long)before, (unsigned long long)after);
  ok(after > 0 && after < 65536, "statfs of /root is the disk's (%llu free 4 KiB blocks of 65536)",
     (unsigned long long)after);

  /* a /tmp file (memory) renamed under /root keeps its bytes */
  tf = S3(SYS_open, gs("/tmp/m"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  is(S3(SYS_write, tf, gs("in memory"), 9), 9, "a /tmp file");
  S1(SYS_close, tf);
  is(S2(SYS_rename, gs("/tmp/m"), gs("/root/m")), 0, "renamed to /root");
  tf = S3(SYS_open, gs("/root/m"), O_RDWR, 0);
  ok(S4(SYS_pread64, tf, b, 64, 0) == 9 && memcmp(hp(b), "in memory", 9) == 0, "its bytes");
  is(S4(SYS_pwrite64, tf, gs("ON"), 2, 0), 2, "written there");
  S1(SYS_close, tf);

  /* MAP_SHARED of a disk file: its data moves to a memory object */
  fd = S3(SYS_open, gs("/root/shared"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  for (uint64_t j = 0; j < 3 * 4096; j++)
    B[j] = pat(j);
  is(S3(SYS_write, fd, b, 3 * 4096), 3 * 4096, "a 12 KiB file under /root");
  long a = S6(SYS_mmap, 0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ok(a > 0, "mmap MAP_SHARED (%ld)", a);
  if (a > 0) {
    ok(((uint8_t *)hp((uint64_t)a))[5000] == pat(5000), "the mapping holds its bytes");
    ((uint8_t *)hp((uint64_t)a))[6000] = 0xee;
    ok(S4(SYS_pread64, fd, b, 4096, 4096) == 4096 && B[6000 - 4096] == 0xee, "a store is in the file");
    S2(SYS_munmap, a, 3 * 4096);
  }
  S1(SYS_close, fd);

  errno = 0;
  ok(tmp_save_prepare(sb->tmpfs, NULL, 0) < 0 && cf_errno() == ENOTSUP, "a save is refused: %s", cf_error());

  shim_teardown(); /* closes the file system: flushed */
  ok(cf_overlay_save(ov, store, "after") == 0, "the disk saved as an image");
  char raw[400], cmd[1000];
  snprintf(raw, sizeof raw, "%s/after.raw", dir);
  struct cf_image *ai = cf_image_open(store, "after");
  int rfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ok(ai && rfd >= 0 && cf_image_export(ai, rfd, NULL, NULL) == 0, "exported");
  close(rfd);
  cf_image_close(ai);
  snprintf(cmd, sizeof cmd, "e2fsck -fn %s >%s/fsck.out 2>&1", raw, dir);
  int st = system(cmd);
  ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "e2fsck -fn accepts it (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  cf_overlay_free(ov);
  cf_store_close(store);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
