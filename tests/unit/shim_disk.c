/* The `disk` store of shim/tmpfs.c (--disk, issue 15 item 2) without a VM:
 * a sandbox over the host's "/" whose upper layer keeps file data on an
 * ext4 disk (lib/extfs.c on an overlay over an empty image). A file twice
 * the size of the in-memory region (which /tmp still uses: ENOSPC there)
 * written and read back; a sparse write at 2 GiB; truncate, PUNCH_HOLE,
 * SEEK_DATA/SEEK_HOLE, fallocate; an open file unlinked keeps its data and
 * gives its blocks back at close; a /tmp file renamed under /root keeps
 * its bytes; MAP_SHARED's copy into a memory object (tmp_shared); statfs
 * reports the disk. Then (step 3) a save: fs_save commits the disk as the
 * image t.disk holding only the blocks written (e2fsck -fn accepts it); two
 * sandboxes loaded from the state each see the template's files (disk,
 * /tmp, the one that was mapped shared, an open deleted one) through an
 * overlay of their own, write their own and see none of the other's; a
 * branch of one stores only its blocks as a child image of t.disk, and a
 * sandbox loaded from it sees them; a damaged, cut or missing t.disk fails
 * the load naming it. Last, the run's disk saved and exported passes
 * e2fsck -fn. Before step 2 there was no disk (the 32 MiB file was ENOSPC
 * at 16 MiB); before step 3 the save was refused (ENOTSUP). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include "cowfork/error.h"
#include "cowfork/extfs.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "cowfork/store.h"
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

/* A new sandbox loaded from what fs_save wrote into w, its disk image from
 * store, its /tmp pages those of sb's memory (as a fork maps them). */
static struct sb *disk_reload(const struct wbuf *w, struct cf_store *store, int *rc)
{
  static struct cf_sandbox_opts o2;
  o2 = opts;
  o2.disk = NULL;
  struct sb *n = shim_sb_new(&o2, SHIM_MEM, PROT_READ | PROT_WRITE);
  n->mmap_top = MMAP_TOP(SHIM_MEM);
  n->uid = sb->uid;
  n->gid = sb->gid;
  n->disk_store = store;
  memcpy(n->mem + TMP_BASE(SHIM_MEM), sb->mem + TMP_BASE(SHIM_MEM), TMP_SIZE(SHIM_MEM));
  struct rbuf r = {w->p, w->n, 0, false};
  *rc = fs_load(n, &r, "t");
  if (*rc == 0)
    n->rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (mm_vmas_reserve(n, 1) < 0 || mm_map_anon(n, SHIM_SCRATCH, SHIM_SCRATCH_LEN, PROT_READ | PROT_WRITE) < 0)
    abort();
  return n;
}

static const char *gread(const char *path)
{
  static char out[256];
  out[0] = 0;
  long fd = S3(SYS_open, gs(path), O_RDONLY, 0);
  if (fd < 0)
    return "(open failed)";
  uint64_t b = galloc(NULL, sizeof out);
  long n = S3(SYS_read, fd, b, sizeof out - 1);
  S1(SYS_close, fd);
  if (n < 0)
    return "(read failed)";
  memcpy(out, hp(b), (size_t)n);
  out[n] = 0;
  return out;
}

static long gstat_(const char *path, struct stat *st)
{
  uint64_t g = galloc(NULL, sizeof *st);
  long r = S2(SYS_stat, gs(path), g);
  memcpy(st, hp(g), sizeof *st);
  return r;
}

/* /root/keep: pat() over 3 MiB + 100, with "AAAA" at 1 MiB when changed. */
static bool check_keep(const char *path, int changed)
{
  enum { MB = 1 << 20 };
  long fd = S3(SYS_open, gs(path), O_RDONLY, 0);
  uint64_t b = galloc(NULL, MB);
  uint8_t *B = hp(b);
  bool good = fd >= 0;
  uint64_t off = 0;
  for (long k; good && (k = S4(SYS_pread64, fd, b, MB, off)) > 0; off += (uint64_t)k)
    for (long j = 0; j < k && good; j++) {
      uint64_t o = off + (uint64_t)j;
      good = B[j] == (changed && o >= MB && o < MB + 4 ? 'A' : pat(o));
    }
  S1(SYS_close, fd);
  bump -= MB; /* (the scratch is small) */
  return good && off == 3 * MB + 100;
}

/* image exported from store to a raw file, then e2fsck -fn of it. */
static bool check_fsck(struct cf_store *store, const char *image)
{
  char raw[400], cmd[1000];
  snprintf(raw, sizeof raw, "%s/%s.raw", dir, image);
  struct cf_image *ai = cf_image_open(store, image);
  int rfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
  bool good = ai && rfd >= 0 && cf_image_export(ai, rfd, NULL, NULL) == 0;
  if (rfd >= 0)
    close(rfd);
  cf_image_close(ai);
  snprintf(cmd, sizeof cmd, "e2fsck -fn %s >%s/fsck.out 2>&1", raw, dir);
  int st = good ? system(cmd) : -1;
  unlink(raw);
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    snprintf(cmd, sizeof cmd, "cat %s/fsck.out >&2", dir);
    if (system(cmd) != 0)
      diag("no fsck output");
    return false;
  }
  return true;
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

  /* ---- save and load (issue 15 item 2, step 3) ---- */
  enum { KEEP = 3 * MB + 100 };
  fd = S3(SYS_open, gs("/root/keep"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  bad = 0;
  for (uint64_t off = 0; off < KEEP; off += MB) {
    uint64_t k = KEEP - off < MB ? KEEP - off : MB;
    for (uint64_t j = 0; j < k; j++)
      B[j] = pat(off + j);
    bad += S3(SYS_write, fd, b, k) != (long)k;
  }
  ok(!bad && gfsize(fd) == KEEP, "/root/keep: 3 MiB + 100 on the disk");
  S1(SYS_close, fd);
  tf = S3(SYS_open, gs("/tmp/t"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  is(S3(SYS_write, tf, gs("tmp"), 3), 3, "/tmp/t in memory");
  S1(SYS_close, tf);
  long gone = S3(SYS_open, gs("/root/gone"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  is(S3(SYS_write, gone, gs("deleted but open"), 16), 16, "/root/gone, open");
  is(S1(SYS_unlink, gs("/root/gone")), 0, "and unlinked");

  struct wbuf w = {0};
  sb->save_store = store;
  snprintf(sb->save_disk, sizeof sb->save_disk, "t.disk");
  ok(fs_save(sb, &w) == 0, "fs_save of a sandbox with a disk: %s", cf_error());
  ok(sb->save_disk_done, "its disk committed as t.disk (%llu bytes stored)", (unsigned long long)sb->save_disk_bytes);
  ok(sb->save_disk_bytes >= KEEP && sb->save_disk_bytes < 8 * MB,
     "only the written blocks: %llu bytes stored of a 256 MiB disk", (unsigned long long)sb->save_disk_bytes);
  ok(check_fsck(store, "t.disk"), "t.disk exported passes e2fsck -fn");

  /* Two children of the state, each an overlay of its own over t.disk. */
  int rc;
  struct sb *parent = sb, *ka = disk_reload(&w, store, &rc);
  is(rc, 0, "child A loads: %s", rc ? cf_error() : "");
  struct sb *kb = disk_reload(&w, store, &rc);
  is(rc, 0, "child B loads: %s", rc ? cf_error() : "");
  sb = ka;
  B = hp(b);
  ok(strcmp(gread("/root/m"), "ON memory") == 0, "A: /root/m (got '%s')", gread("/root/m"));
  ok(strcmp(gread("/tmp/t"), "tmp") == 0, "A: /tmp/t from guest memory (got '%s')", gread("/tmp/t"));
  ok(check_keep("/root/keep", 0), "A: /root/keep's 3 MiB byte for byte");
  fd = S3(SYS_open, gs("/root/shared"), O_RDONLY, 0);
  ok(S4(SYS_pread64, fd, b, 3 * 4096, 0) == 3 * 4096 && B[5000] == pat(5000) && B[6000] == 0xee,
     "A: the file that was mapped MAP_SHARED, its store kept");
  S1(SYS_close, fd);
  fd = ka->nfds > gone ? gone : -1;
  ok(fd >= 0 && S4(SYS_pread64, fd, b, 64, 0) == 16 && memcmp(B, "deleted but open", 16) == 0,
     "A: the open deleted file reads");
  fd = S3(SYS_open, gs("/root/a"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  is(S3(SYS_write, fd, gs("child A"), 7), 7, "A writes /root/a");
  S1(SYS_close, fd);
  fd = S3(SYS_open, gs("/root/keep"), O_RDWR, 0);
  is(S4(SYS_pwrite64, fd, gs("AAAA"), 4, MB), 4, "A changes /root/keep at 1 MiB");
  S1(SYS_close, fd);
  sb = kb;
  B = hp(b);
  struct stat gst;
  is(gstat_("/root/a", &gst), -ENOENT, "B does not see A's /root/a");
  ok(check_keep("/root/keep", 0), "B: /root/keep as the template left it");
  fd = S3(SYS_open, gs("/root/b"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  is(S3(SYS_write, fd, gs("child B"), 7), 7, "B writes /root/b");
  S1(SYS_close, fd);
  sb = ka;
  B = hp(b);
  is(gstat_("/root/b", &gst), -ENOENT, "A does not see B's /root/b");

  /* A branch of A: only what A wrote, as a child image of t.disk. */
  struct wbuf w2 = {0};
  ka->save_store = store;
  snprintf(ka->save_disk, sizeof ka->save_disk, "a.disk");
  ok(fs_save(ka, &w2) == 0, "fs_save of child A (a branch): %s", cf_error());
  ok(ka->save_disk_bytes > 0 && ka->save_disk_bytes <= 64 * 4096,
     "a.disk stores only A's blocks: %llu bytes", (unsigned long long)ka->save_disk_bytes);
  struct cf_header *ah = cf_store_get_header(store, "a.disk"), *th = cf_store_get_header(store, "t.disk");
  ok(ah && th && memcmp(ah->parent, th->id, 16) == 0, "a.disk is a child of t.disk");
  cf_header_free(ah);
  cf_header_free(th);
  ok(check_fsck(store, "a.disk"), "a.disk exported passes e2fsck -fn");
  struct sb *kc = disk_reload(&w2, store, &rc);
  is(rc, 0, "a child of the branch loads: %s", rc ? cf_error() : "");
  sb = kc;
  B = hp(b);
  ok(strcmp(gread("/root/a"), "child A") == 0, "it sees A's /root/a (got '%s')", gread("/root/a"));
  ok(check_keep("/root/keep", 1), "and A's change to /root/keep, the rest as the template's");
  is(gstat_("/root/b", &gst), -ENOENT, "not B's /root/b");
  struct sb *kids[] = {ka, kb, kc};
  for (int i = 0; i < 3; i++) {
    fs_fini(kids[i]);
    shim_sb_free(kids[i]);
  }
  sb = parent;
  B = hp(b);

  /* A damaged or missing disk image: a clear error, no crash. */
  struct cf_header *dh = cf_store_get_header(store, "t.disk");
  char lp[PATH_MAX];
  ok(dh && dh->nlayers >= 1 && cf_store_layer_path(store, dh->layers[dh->nlayers - 1].id, lp, sizeof lp) == 0,
     "t.disk's layer");
  cf_header_free(dh);
  int lfd = (chmod(lp, 0600), open(lp, O_RDWR));
  uint8_t byte = 0;
  ok(lfd >= 0 && pread(lfd, &byte, 1, 4096) == 1 && (byte ^= 0x5a, pwrite(lfd, &byte, 1, 4096)) == 1,
     "a byte of it flipped");
  if (lfd >= 0)
    close(lfd);
  struct cf_store *fresh = cf_store_open(sd); /* (another handle: its layer checks are its own) */
  struct sb *kd = disk_reload(&w, fresh, &rc);
  ok(rc < 0 && cf_errno() == EIO && strstr(cf_error(), "t.disk") && strstr(cf_error(), "corrupted"),
     "loading it fails naming the image: %s", cf_error());
  fs_fini(kd);
  shim_sb_free(kd);
  ok(truncate(lp, 4096) == 0, "the layer cut short");
  kd = disk_reload(&w, fresh, &rc);
  ok(rc < 0 && strstr(cf_error(), "t.disk"), "loading it fails naming the image: %s", cf_error());
  fs_fini(kd);
  shim_sb_free(kd);
  ok(cf_store_remove(fresh, "a.disk") == 0 && cf_store_remove(fresh, "t.disk") == 0, "t.disk removed");
  kd = disk_reload(&w, fresh, &rc);
  ok(rc < 0 && cf_errno() == ENOENT && strstr(cf_error(), "t.disk"), "loading without it: %s", cf_error());
  fs_fini(kd);
  shim_sb_free(kd);
  cf_store_close(fresh);
  free(w.p);
  free(w2.p);
  S1(SYS_close, gone);

  shim_teardown(); /* closes the file system: flushed */
  ok(cf_overlay_save(ov, store, "after") == 0, "the disk saved as an image after the run");
  ok(check_fsck(store, "after"), "e2fsck -fn accepts it");
  cf_overlay_free(ov);
  cf_store_close(store);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
