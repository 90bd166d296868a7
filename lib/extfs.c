/* An ext4 file system on a cf_overlay (include/cowfork/extfs.h), through
 * libext2fs.
 *
 * Why libext2fs: it is e2fsprogs' own library (what mke2fs, e2fsck,
 * debugfs and fuse2fs are built on), a Debian package, and it reads and
 * writes ext4 through any io_manager we give it, so the file system lives
 * in the overlay with no kernel mount, no loop or NBD device and no
 * privilege. The disk it leaves is one the kernel mounts and e2fsck checks.
 * Writing our own format would need its own fsck and could not be mounted;
 * running mke2fs and mounting needs root and a block device per sandbox.
 *
 * I/O: an io_manager of our own ("cf-overlay") whose channel is the
 * overlay: reads and writes of blocks go to cf_overlay_pread/pwrite (a
 * block written with zeros becomes a Zero block there), discard and
 * zeroout to cf_overlay_trim/zero. libext2fs names its device by a string:
 * the overlay's address, formatted into it by this file only. There is no
 * block cache here: the overlay's cache file is the page cache's.
 *
 * Freed blocks are discarded: the block allocation callbacks see every
 * block (and range) given back (a deleted file's data, a truncated tail, an
 * extent block), which are then trimmed in the overlay, so a child image
 * saved after a delete holds nothing for them.
 *
 * mkfs: ext2fs_initialize + ext2fs_allocate_tables + root, lost+found and
 * the reserved inodes, as mke2fs does; the device reads as zeros, so the
 * inode tables are marked zeroed and never written (mkfs of 512 MiB writes
 * a few hundred KiB). No journal: the disk is only ever saved while no call
 * runs (cf_extfs_flush first), never after a crash mid-call, so replaying
 * one would never be needed, and libext2fs does not write through one.
 *
 * Locking: libext2fs is not thread-safe; one mutex (lock) guards every
 * call on a file system. The overlay is thread-safe by itself. */
#include <errno.h>
#include <et/com_err.h>
#include <ext2fs/ext2fs.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <uuid/uuid.h>

#include "cowfork/extfs.h"
#include "internal.h"

struct cf_extfs {
  ext2_filsys fs;
  struct cf_overlay *ov;
  pthread_mutex_t lock;
};

/* ---- the io_manager ---- */

static struct struct_io_manager ov_manager;

static errcode_t ov_errno(void) { return errno ? (errcode_t)errno : EXT2_ET_SHORT_READ; }

static errcode_t ov_open(const char *name, int flags, io_channel *out)
{
  void *p = NULL;
  if (sscanf(name, "cf-overlay:%p", &p) != 1 || !p)
    return EXT2_ET_BAD_DEVICE_NAME;
  io_channel ch = calloc(1, sizeof *ch);
  if (!ch || !(ch->name = strdup(name))) {
    free(ch);
    return EXT2_ET_NO_MEMORY;
  }
  ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  ch->manager = &ov_manager;
  ch->block_size = 1024;
  ch->refcount = 1;
  ch->flags = CHANNEL_FLAGS_DISCARD_ZEROES;
  ch->private_data = p;
  *out = ch;
  return 0;
}

static errcode_t ov_close(io_channel ch)
{
  if (--ch->refcount > 0)
    return 0;
  free(ch->name);
  free(ch);
  return 0;
}

static errcode_t ov_set_blksize(io_channel ch, int blksize)
{
  ch->block_size = blksize;
  return 0;
}

/* libext2fs's convention: count < 0 means -count bytes. */
static size_t ov_len(io_channel ch, int count)
{
  return count < 0 ? (size_t)-count : (size_t)count * (size_t)ch->block_size;
}

static errcode_t ov_read64(io_channel ch, unsigned long long block, int count, void *data)
{
  errno = 0;
  return cf_overlay_pread(ch->private_data, data, ov_len(ch, count), block * (uint64_t)ch->block_size) < 0
             ? ov_errno() : 0;
}

static errcode_t ov_write64(io_channel ch, unsigned long long block, int count, const void *data)
{
  errno = 0;
  return cf_overlay_pwrite(ch->private_data, data, ov_len(ch, count), block * (uint64_t)ch->block_size, 0) < 0
             ? ov_errno() : 0;
}

static errcode_t ov_read(io_channel ch, unsigned long block, int count, void *data)
{
  return ov_read64(ch, block, count, data);
}

static errcode_t ov_write(io_channel ch, unsigned long block, int count, const void *data)
{
  return ov_write64(ch, block, count, data);
}

static errcode_t ov_write_byte(io_channel ch, unsigned long offset, int count, const void *data)
{
  errno = 0;
  return cf_overlay_pwrite(ch->private_data, data, (size_t)count, offset, 0) < 0 ? ov_errno() : 0;
}

/* Nothing to make durable: the overlay's cache is scratch space, and a
 * save (cf_overlay_save) copies what it holds. */
static errcode_t ov_flush(io_channel ch) { return 0; }

static errcode_t ov_set_option(io_channel ch, const char *option, const char *arg)
{
  return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t ov_discard(io_channel ch, unsigned long long block, unsigned long long count)
{
  errno = 0;
  return cf_overlay_trim(ch->private_data, count * ch->block_size, block * ch->block_size, 0) < 0 ? ov_errno() : 0;
}

static errcode_t ov_zeroout(io_channel ch, unsigned long long block, unsigned long long count)
{
  errno = 0;
  return cf_overlay_zero(ch->private_data, count * ch->block_size, block * ch->block_size, 0) < 0 ? ov_errno() : 0;
}

static struct struct_io_manager ov_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "cf-overlay",
    .open = ov_open,
    .close = ov_close,
    .set_blksize = ov_set_blksize,
    .read_blk = ov_read,
    .write_blk = ov_write,
    .flush = ov_flush,
    .write_byte = ov_write_byte,
    .set_option = ov_set_option,
    .read_blk64 = ov_read64,
    .write_blk64 = ov_write64,
    .discard = ov_discard,
    .zeroout = ov_zeroout,
};

/* ---- errors ---- */

/* libext2fs's error codes as Linux's errno; small codes are errno values. */
static int to_errno(errcode_t e)
{
  if (e > 0 && e < 4096)
    return (int)e;
  switch (e) {
  case EXT2_ET_NO_MEMORY:
    return ENOMEM;
  case EXT2_ET_BLOCK_ALLOC_FAIL:
  case EXT2_ET_INODE_ALLOC_FAIL:
  case EXT2_ET_DIR_NO_SPACE:
  case EXT2_ET_EA_NO_SPACE:
  case EXT2_ET_TOOSMALL:
    return ENOSPC;
  case EXT2_ET_FILE_NOT_FOUND:
    return ENOENT;
  case EXT2_ET_EA_KEY_NOT_FOUND:
    return ENODATA;
  case EXT2_ET_DIR_EXISTS:
  case EXT2_ET_FILE_EXISTS:
    return EEXIST;
  case EXT2_ET_NO_DIRECTORY:
    return ENOTDIR;
  case EXT2_ET_FILE_TOO_BIG:
  case EXT2_ET_EXTENT_NOT_SUPPORTED:
    return EFBIG;
  case EXT2_ET_BAD_INODE_NUM:
    return ESTALE;
  default:
    return EIO;
  }
}

static pthread_once_t messages_once = PTHREAD_ONCE_INIT;
static void messages_init(void) { initialize_ext2_error_table(); }
static const char *emsg(errcode_t e)
{
  pthread_once(&messages_once, messages_init);
  return error_message(e);
}

#define FAIL(e, what, ...) cf_fail(to_errno(e), what ": %s", ##__VA_ARGS__, emsg(e))

/* ---- mkfs ---- */

static int mkfs_locked(ext2_filsys fs, const char *label)
{
  errcode_t e;
  uuid_generate(fs->super->s_uuid);
  uuid_generate((unsigned char *)fs->super->s_hash_seed);
  fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  fs->super->s_checksum_type = EXT2_CRC32C_CHKSUM;
  ext2fs_init_csum_seed(fs);
  if (label)
    snprintf((char *)fs->super->s_volume_name, sizeof fs->super->s_volume_name, "%s", label);
  fs->super->s_max_mnt_count = (__u16)-1;
  fs->super->s_mkfs_time = fs->super->s_lastcheck = (__u32)time(NULL);
  if ((e = ext2fs_allocate_tables(fs)))
    return FAIL(e, "allocating the group tables");
  if ((e = ext2fs_convert_subcluster_bitmap(fs, &fs->block_map)))
    return FAIL(e, "block bitmap");
  /* The device reads as zeros: every inode table is zeroed already. */
  for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
    ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs, g);
  }
  if ((e = ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, 0)))
    return FAIL(e, "the root directory");
  ext2_ino_t lf;
  if ((e = ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, "lost+found")) ||
      (e = ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, 0, &lf)))
    return FAIL(e, "lost+found");
  /* e2fsck wants room in lost+found without allocating: 16 KiB, as mke2fs. */
  for (int i = 1; i < 4; i++)
    if ((e = ext2fs_expand_dir(fs, lf)))
      return FAIL(e, "lost+found");
  struct ext2_inode_large root;
  if ((e = ext2fs_read_inode_full(fs, EXT2_ROOT_INO, (struct ext2_inode *)&root, sizeof root)))
    return FAIL(e, "the root directory");
  root.i_mode = LINUX_S_IFDIR | 0755;
  if ((e = ext2fs_write_inode_full(fs, EXT2_ROOT_INO, (struct ext2_inode *)&root, sizeof root)))
    return FAIL(e, "the root directory");
  ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
  for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(fs->super); i++)
    ext2fs_inode_alloc_stats2(fs, i, +1, 0);
  ext2fs_mark_ib_dirty(fs);
  /* The last block is listed as bad, so no file ever ends there:
   * libext2fs 1.47.0 (Debian 12) refuses to free an extent that ends at
   * the file system's last block (an off-by-one in punch_extent_blocks,
   * fixed upstream later: truncating such a file failed with "Illegal
   * block number" and left it half done). */
  badblocks_list bb;
  blk64_t last = ext2fs_blocks_count(fs->super) - 1;
  if ((e = ext2fs_badblocks_list_create(&bb, 1)))
    return FAIL(e, "the bad blocks list");
  if (!(e = ext2fs_badblocks_list_add(bb, (blk_t)last))) {
    ext2fs_mark_block_bitmap2(fs->block_map, last); /* counted by ext2fs_update_bb_inode */
    e = ext2fs_update_bb_inode(fs, bb);
  }
  ext2fs_badblocks_list_free(bb);
  if (e)
    return FAIL(e, "the bad blocks inode");
  return 0;
}

static void device_name(struct cf_overlay *ov, char *buf, size_t n) { snprintf(buf, n, "cf-overlay:%p", (void *)ov); }

int cf_extfs_mkfs(struct cf_overlay *ov, const char *label)
{
  uint64_t size = cf_overlay_size(ov);
  if (size < (1u << 20) || size % CF_EXTFS_BLOCK)
    return cf_fail(EINVAL, "a disk of %llu bytes: at least 1 MiB, a multiple of 4 KiB", (unsigned long long)size);
  struct ext2_super_block p;
  memset(&p, 0, sizeof p);
  ext2fs_blocks_count_set(&p, size / CF_EXTFS_BLOCK);
  p.s_log_block_size = 2; /* 1024 << 2 */
  p.s_rev_level = EXT2_DYNAMIC_REV;
  p.s_inode_size = 256;
  p.s_min_extra_isize = p.s_want_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
  p.s_log_groups_per_flex = 4;
  p.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  p.s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
  p.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                         EXT4_FEATURE_INCOMPAT_FLEX_BG | EXT4_FEATURE_INCOMPAT_64BIT;
  p.s_feature_ro_compat = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
                          EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
                          EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
  char name[64];
  device_name(ov, name, sizeof name);
  ext2_filsys fs;
  errcode_t e = ext2fs_initialize(name, EXT2_FLAG_64BITS, &p, &ov_manager, &fs);
  if (e)
    return FAIL(e, "making a file system of %llu bytes", (unsigned long long)size);
  int r = mkfs_locked(fs, label);
  if (r < 0) {
    ext2fs_free(fs);
    return r;
  }
  if ((e = ext2fs_close2(fs, 0))) {
    ext2fs_free(fs);
    return FAIL(e, "writing the new file system");
  }
  return 0;
}

/* ---- opening ---- */

static void on_block(ext2_filsys fs, blk64_t blk, int inuse)
{
  if (inuse < 0)
    io_channel_discard(fs->io, blk, 1);
}

static void on_range(ext2_filsys fs, blk64_t blk, blk_t num, int inuse)
{
  if (inuse < 0)
    io_channel_discard(fs->io, blk, num);
}

struct cf_overlay *cf_extfs_new_disk(uint64_t size, const char *cache_dir)
{
  if (size < (16u << 20) || size % (1u << 20))
    return cf_fail_null(EINVAL, "a disk is a multiple of 1 MiB, at least 16 MiB (not %llu bytes)",
                        (unsigned long long)size);
  struct cf_image *img = cf_image_new_empty(size, CF_EXTFS_BLOCK, "(new disk)");
  struct cf_overlay *ov = img ? cf_overlay_new(img, cache_dir) : NULL;
  if (ov && cf_extfs_mkfs(ov, "cowfork") < 0) {
    cf_overlay_free(ov);
    return NULL;
  }
  return ov;
}

struct cf_extfs *cf_extfs_open(struct cf_overlay *ov)
{
  char name[64];
  device_name(ov, name, sizeof name);
  ext2_filsys fs;
  errcode_t e = ext2fs_open2(name, NULL, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, &ov_manager, &fs);
  if (e)
    return cf_fail_null(to_errno(e) == EIO ? EINVAL : to_errno(e), "opening the file system: %s", emsg(e));
  /* The group descriptors as e2fsck checks them (bitmaps and inode tables
   * inside the file system, not overlapping its metadata): libext2fs's
   * open reads them without that, and every later call trusts them. */
  if ((e = ext2fs_check_desc(fs))) {
    ext2fs_free(fs);
    return cf_fail_null(EINVAL, "the group descriptors are damaged: %s", emsg(e));
  }
  if ((e = ext2fs_read_bitmaps(fs))) {
    ext2fs_free(fs);
    return cf_fail_null(to_errno(e), "reading the bitmaps: %s", emsg(e));
  }
  struct cf_extfs *x = calloc(1, sizeof *x);
  if (!x) {
    ext2fs_free(fs);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  x->fs = fs;
  x->ov = ov;
  pthread_mutex_init(&x->lock, NULL);
  ext2fs_set_block_alloc_stats_callback(fs, on_block, NULL);
  ext2fs_set_block_alloc_stats_range_callback(fs, on_range, NULL);
  return x;
}

int cf_extfs_flush(struct cf_extfs *x)
{
  pthread_mutex_lock(&x->lock);
  errcode_t e = ext2fs_flush2(x->fs, 0);
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "writing the file system's metadata") : 0;
}

int cf_extfs_close(struct cf_extfs *x)
{
  if (!x)
    return 0;
  errcode_t e = ext2fs_close2(x->fs, 0);
  if (e)
    ext2fs_free(x->fs);
  pthread_mutex_destroy(&x->lock);
  free(x);
  return e ? FAIL(e, "closing the file system") : 0;
}

void cf_extfs_statfs(struct cf_extfs *x, uint64_t *blocks, uint64_t *bfree, uint64_t *files, uint64_t *ffree)
{
  pthread_mutex_lock(&x->lock);
  struct ext2_super_block *s = x->fs->super;
  *blocks = ext2fs_blocks_count(s);
  *bfree = ext2fs_free_blocks_count(s);
  *files = s->s_inodes_count;
  *ffree = s->s_free_inodes_count;
  pthread_mutex_unlock(&x->lock);
}

/* ---- inodes ---- */

typedef struct ext2_inode_large inode_t;
#define EXT4_LINK_MAX 65000 /* the kernel's: a directory with more counts as 1 (dir_nlink) */
#define I(p) ((struct ext2_inode *)(p))

static errcode_t iget(ext2_filsys fs, uint32_t ino, inode_t *in)
{
  if (ino < 1 || ino > fs->super->s_inodes_count)
    return EXT2_ET_BAD_INODE_NUM;
  memset(in, 0, sizeof *in);
  return ext2fs_read_inode_full(fs, ino, I(in), sizeof *in);
}

static errcode_t iput(ext2_filsys fs, uint32_t ino, inode_t *in)
{
  return ext2fs_write_inode_full(fs, ino, I(in), sizeof *in);
}

/* ext4's times: 32 bits of seconds, and in the extra word 2 more (the
 * epoch) below the nanoseconds. */
static void put_time(__u32 *lo, __u32 *extra, const struct timespec *ts)
{
  *lo = (__u32)ts->tv_sec;
  *extra = ((__u32)ts->tv_nsec << 2) | (__u32)(((ts->tv_sec - (int32_t)ts->tv_sec) >> 32) & 3);
}

static struct timespec get_time(__u32 lo, __u32 extra)
{
  struct timespec ts = {.tv_sec = (int32_t)lo + ((int64_t)(extra & 3) << 32), .tv_nsec = extra >> 2};
  return ts;
}

static struct timespec now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

static void touch_ctime(inode_t *in)
{
  struct timespec t = now();
  put_time(&in->i_ctime, &in->i_ctime_extra, &t);
}

static void touch_mctime(inode_t *in)
{
  struct timespec t = now();
  put_time(&in->i_ctime, &in->i_ctime_extra, &t);
  put_time(&in->i_mtime, &in->i_mtime_extra, &t);
}

static unsigned iuid(const inode_t *in) { return in->i_uid | (unsigned)in->osd2.linux2.l_i_uid_high << 16; }
static unsigned igid(const inode_t *in) { return in->i_gid | (unsigned)in->osd2.linux2.l_i_gid_high << 16; }
static void set_owner(inode_t *in, unsigned uid, unsigned gid)
{
  if (uid != (unsigned)-1) {
    in->i_uid = (__u16)uid;
    in->osd2.linux2.l_i_uid_high = (__u16)(uid >> 16);
  }
  if (gid != (unsigned)-1) {
    in->i_gid = (__u16)gid;
    in->osd2.linux2.l_i_gid_high = (__u16)(gid >> 16);
  }
}

static uint64_t get_rdev(const inode_t *in)
{
  if (in->i_block[0]) {
    uint32_t d = in->i_block[0];
    return makedev((d >> 8) & 0xff, d & 0xff);
  }
  uint32_t d = in->i_block[1];
  return makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
}

static void put_rdev(inode_t *in, uint64_t rdev)
{
  unsigned ma = major(rdev), mi = minor(rdev);
  if (ma < 256 && mi < 256) {
    in->i_block[0] = ma << 8 | mi;
    in->i_block[1] = 0;
  } else {
    in->i_block[0] = 0;
    in->i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
  }
}

static unsigned char ft_of(unsigned mode)
{
  switch (mode & S_IFMT) {
  case S_IFREG: return EXT2_FT_REG_FILE;
  case S_IFDIR: return EXT2_FT_DIR;
  case S_IFLNK: return EXT2_FT_SYMLINK;
  case S_IFIFO: return EXT2_FT_FIFO;
  case S_IFSOCK: return EXT2_FT_SOCK;
  case S_IFCHR: return EXT2_FT_CHRDEV;
  case S_IFBLK: return EXT2_FT_BLKDEV;
  default: return EXT2_FT_UNKNOWN;
  }
}

static unsigned char dt_of(int ft)
{
  switch (ft) {
  case EXT2_FT_REG_FILE: return DT_REG;
  case EXT2_FT_DIR: return DT_DIR;
  case EXT2_FT_SYMLINK: return DT_LNK;
  case EXT2_FT_FIFO: return DT_FIFO;
  case EXT2_FT_SOCK: return DT_SOCK;
  case EXT2_FT_CHRDEV: return DT_CHR;
  case EXT2_FT_BLKDEV: return DT_BLK;
  default: return DT_UNKNOWN;
  }
}

int cf_extfs_lookup(struct cf_extfs *x, uint32_t dir, const char *name, size_t len, uint32_t *ino)
{
  if (len > EXT2_NAME_LEN)
    return cf_fail(ENAMETOOLONG, "a name of %zu bytes", len);
  pthread_mutex_lock(&x->lock);
  ext2_ino_t i;
  errcode_t e = ext2fs_lookup(x->fs, dir, name, (int)len, NULL, &i);
  pthread_mutex_unlock(&x->lock);
  if (e)
    return FAIL(e, "'%.*s' in inode %u", (int)len, name, dir);
  *ino = i;
  return 0;
}

static int stat_locked(struct cf_extfs *x, uint32_t ino, struct stat *st)
{
  inode_t in;
  errcode_t e = iget(x->fs, ino, &in);
  if (e)
    return FAIL(e, "inode %u", ino);
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = in.i_mode;
  st->st_nlink = in.i_links_count;
  st->st_uid = iuid(&in);
  st->st_gid = igid(&in);
  st->st_size = (off_t)EXT2_I_SIZE(&in);
  st->st_blksize = CF_EXTFS_BLOCK;
  st->st_blocks = (blkcnt_t)ext2fs_get_stat_i_blocks(x->fs, I(&in));
  if (LINUX_S_ISCHR(in.i_mode) || LINUX_S_ISBLK(in.i_mode))
    st->st_rdev = get_rdev(&in);
  st->st_atim = get_time(in.i_atime, in.i_atime_extra);
  st->st_mtim = get_time(in.i_mtime, in.i_mtime_extra);
  st->st_ctim = get_time(in.i_ctime, in.i_ctime_extra);
  return 0;
}

int cf_extfs_stat(struct cf_extfs *x, uint32_t ino, struct stat *st)
{
  pthread_mutex_lock(&x->lock);
  int r = stat_locked(x, ino, st);
  pthread_mutex_unlock(&x->lock);
  return r;
}

/* ext2fs_link, growing the directory when it is full. */
static errcode_t link_in(ext2_filsys fs, uint32_t dir, const char *name, uint32_t ino, int ft)
{
  errcode_t e = ext2fs_link(fs, dir, name, ino, ft);
  if (e == EXT2_ET_DIR_NO_SPACE) {
    if ((e = ext2fs_expand_dir(fs, dir)))
      return e;
    e = ext2fs_link(fs, dir, name, ino, ft);
  }
  return e;
}

/* A new inode's fields in a zeroed inode of the file system's full size
 * (no stale in-inode attributes of a freed one survive). */
static errcode_t write_new(ext2_filsys fs, uint32_t ino, inode_t *in)
{
  size_t n = EXT2_INODE_SIZE(fs->super);
  char *buf = calloc(1, n);
  if (!buf)
    return EXT2_ET_NO_MEMORY;
  memcpy(buf, in, sizeof *in < n ? sizeof *in : n);
  errcode_t e = ext2fs_write_inode_full(fs, ino, I(buf), (int)n);
  free(buf);
  return e;
}

static int create_locked(struct cf_extfs *x, uint32_t dir, const char *name, unsigned mode, uint64_t rdev,
                         const char *target, unsigned uid, unsigned gid, uint32_t *out)
{
  ext2_filsys fs = x->fs;
  size_t len = strlen(name);
  if (len > EXT2_NAME_LEN)
    return cf_fail(ENAMETOOLONG, "a name of %zu bytes", len);
  if (!len || strchr(name, '/'))
    return cf_fail(EINVAL, "bad name '%s'", name);
  inode_t in;
  errcode_t e = iget(fs, dir, &in);
  if (e)
    return FAIL(e, "directory inode %u", dir);
  if (!LINUX_S_ISDIR(in.i_mode))
    return cf_fail(ENOTDIR, "inode %u is not a directory", dir);
  ext2_ino_t ino;
  if (!(e = ext2fs_lookup(fs, dir, name, (int)len, NULL, &ino)))
    return cf_fail(EEXIST, "'%s' exists", name);
  if (e != EXT2_ET_FILE_NOT_FOUND)
    return FAIL(e, "'%s'", name);
  unsigned type = mode & S_IFMT;
  if (type == S_IFDIR || type == S_IFLNK) {
    /* The library's own, which link before they account: a full
     * directory is grown and the call made again. */
    e = type == S_IFDIR ? ext2fs_mkdir(fs, dir, 0, name) : ext2fs_symlink(fs, dir, 0, name, target);
    if (e == EXT2_ET_DIR_NO_SPACE) {
      if ((e = ext2fs_expand_dir(fs, dir)))
        return FAIL(e, "growing directory %u", dir);
      e = type == S_IFDIR ? ext2fs_mkdir(fs, dir, 0, name) : ext2fs_symlink(fs, dir, 0, name, target);
    }
    if (e)
      return FAIL(e, "making '%s'", name);
    if ((e = ext2fs_lookup(fs, dir, name, (int)len, NULL, &ino)) || (e = iget(fs, ino, &in)))
      return FAIL(e, "'%s'", name);
    in.i_mode = (__u16)(type | (type == S_IFLNK ? 0777 : (mode & 07777)));
  } else {
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK)
      return cf_fail(EINVAL, "file type %o", type);
    if ((e = ext2fs_new_inode(fs, dir, (int)type, NULL, &ino)))
      return FAIL(e, "a new inode");
    memset(&in, 0, sizeof in);
    in.i_mode = (__u16)(type | (mode & 07777));
    in.i_links_count = 1;
    in.i_extra_isize = sizeof(inode_t) - EXT2_GOOD_OLD_INODE_SIZE;
    if (type == S_IFCHR || type == S_IFBLK)
      put_rdev(&in, rdev);
    if (type == S_IFREG && ext2fs_has_feature_extents(fs->super)) {
      ext2_extent_handle_t h;
      if ((e = ext2fs_extent_open2(fs, ino, I(&in), &h)))
        return FAIL(e, "extent header");
      ext2fs_extent_free(h);
    }
    if ((e = write_new(fs, ino, &in)))
      return FAIL(e, "writing inode %u", ino);
    if ((e = link_in(fs, dir, name, ino, ft_of(type))))
      return FAIL(e, "linking '%s'", name);
    ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  }
  set_owner(&in, uid, gid);
  struct timespec t = now();
  put_time(&in.i_atime, &in.i_atime_extra, &t);
  put_time(&in.i_mtime, &in.i_mtime_extra, &t);
  put_time(&in.i_ctime, &in.i_ctime_extra, &t);
  put_time(&in.i_crtime, &in.i_crtime_extra, &t);
  if ((e = iput(fs, ino, &in)))
    return FAIL(e, "writing inode %u", ino);
  inode_t d;
  if ((e = iget(fs, dir, &d)))
    return FAIL(e, "directory inode %u", dir);
  touch_mctime(&d);
  if ((e = iput(fs, dir, &d)))
    return FAIL(e, "directory inode %u", dir);
  *out = ino;
  return 0;
}

int cf_extfs_create(struct cf_extfs *x, uint32_t dir, const char *name, unsigned mode, uint64_t rdev,
                    const char *target, unsigned uid, unsigned gid, uint32_t *ino)
{
  if (S_ISLNK(mode) && (!target || !target[0]))
    return cf_fail(ENOENT, "an empty symlink target");
  pthread_mutex_lock(&x->lock);
  int r = create_locked(x, dir, name, mode, rdev, target, uid, gid, ino);
  pthread_mutex_unlock(&x->lock);
  return r;
}

long cf_extfs_readlink(struct cf_extfs *x, uint32_t ino, char *buf, size_t size)
{
  pthread_mutex_lock(&x->lock);
  inode_t in;
  long r;
  errcode_t e = iget(x->fs, ino, &in);
  if (e) {
    r = FAIL(e, "inode %u", ino);
  } else if (!LINUX_S_ISLNK(in.i_mode)) {
    r = cf_fail(EINVAL, "inode %u is not a symlink", ino);
  } else {
    uint64_t len = EXT2_I_SIZE(&in);
    if (len + 1 > size) {
      r = cf_fail(ENAMETOOLONG, "a link of %llu bytes", (unsigned long long)len);
    } else if (ext2fs_is_fast_symlink(I(&in))) {
      memcpy(buf, in.i_block, len);
      buf[len] = 0;
      r = (long)len;
    } else {
      ext2_file_t f;
      unsigned got = 0;
      if ((e = ext2fs_file_open2(x->fs, ino, I(&in), 0, &f)) == 0) {
        e = ext2fs_file_read(f, buf, (unsigned)len, &got);
        ext2fs_file_close(f);
      }
      if (e || got != len) {
        r = e ? FAIL(e, "reading link %u", ino) : cf_fail(EIO, "link %u is short", ino);
      } else {
        buf[len] = 0;
        r = (long)len;
      }
    }
  }
  pthread_mutex_unlock(&x->lock);
  return r;
}

/* Free inode ino (no link left): its blocks (discarded by on_block) and
 * attribute block, then the inode. */
static errcode_t free_inode(ext2_filsys fs, uint32_t ino, inode_t *in)
{
  errcode_t e;
  bool dir = LINUX_S_ISDIR(in->i_mode);
  if (ext2fs_inode_has_valid_blocks2(fs, I(in)) && (e = ext2fs_punch(fs, ino, I(in), NULL, 0, ~0ULL)))
    return e;
  if ((e = ext2fs_free_ext_attr(fs, ino, in)))
    return e;
  memset(in, 0, sizeof *in);
  in->i_dtime = (__u32)time(NULL);
  if ((e = write_new(fs, ino, in)))
    return e;
  ext2fs_inode_alloc_stats2(fs, ino, -1, dir);
  return 0;
}

/* Take ino off the orphan list (its links are 0, i_dtime the next one). */
static errcode_t orphan_remove(ext2_filsys fs, uint32_t ino, inode_t *in)
{
  errcode_t e;
  if (fs->super->s_last_orphan == ino) {
    fs->super->s_last_orphan = in->i_dtime;
    ext2fs_mark_super_dirty(fs);
    return 0;
  }
  for (uint32_t cur = fs->super->s_last_orphan, n = 0; cur && n < fs->super->s_inodes_count; n++) {
    inode_t o;
    if ((e = iget(fs, cur, &o)))
      return e;
    if (o.i_dtime == ino) {
      o.i_dtime = in->i_dtime;
      return iput(fs, cur, &o);
    }
    cur = o.i_dtime;
  }
  return 0;
}

int cf_extfs_link(struct cf_extfs *x, uint32_t ino, uint32_t dir, const char *name)
{
  pthread_mutex_lock(&x->lock);
  ext2_filsys fs = x->fs;
  inode_t in, d;
  ext2_ino_t other;
  int r = 0;
  errcode_t e = iget(fs, ino, &in);
  if (e)
    r = FAIL(e, "inode %u", ino);
  else if (LINUX_S_ISDIR(in.i_mode))
    r = cf_fail(EPERM, "a hard link to directory %u", ino);
  else if (in.i_links_count >= EXT4_LINK_MAX)
    r = cf_fail(EMLINK, "inode %u has %u links", ino, in.i_links_count);
  else if (strlen(name) > EXT2_NAME_LEN)
    r = cf_fail(ENAMETOOLONG, "a name of %zu bytes", strlen(name));
  else if (!(e = ext2fs_lookup(fs, dir, name, (int)strlen(name), NULL, &other)))
    r = cf_fail(EEXIST, "'%s' exists", name);
  else if (e != EXT2_ET_FILE_NOT_FOUND)
    r = FAIL(e, "'%s'", name);
  else if ((e = link_in(fs, dir, name, ino, ft_of(in.i_mode))))
    r = FAIL(e, "linking '%s'", name);
  if (r == 0) {
    /* A kept inode named again leaves the orphan list. */
    if (in.i_links_count == 0 && (e = orphan_remove(fs, ino, &in)))
      r = FAIL(e, "the orphan list");
    in.i_dtime = 0;
    in.i_links_count++;
    touch_ctime(&in);
    if (r < 0)
      ;
    else if ((e = iput(fs, ino, &in)) || (e = iget(fs, dir, &d)))
      r = FAIL(e, "inode %u", ino);
    else {
      touch_mctime(&d);
      if ((e = iput(fs, dir, &d)))
        r = FAIL(e, "directory %u", dir);
    }
  }
  pthread_mutex_unlock(&x->lock);
  return r;
}

struct empty_ctx {
  bool empty;
};

static int empty_cb(ext2_ino_t dino, int entry, struct ext2_dir_entry *de, int off, int bs, char *buf, void *priv)
{
  int n = ext2fs_dirent_name_len(de);
  const char *s = de->name;
  if (!(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.')) {
    ((struct empty_ctx *)priv)->empty = false;
    return DIRENT_ABORT;
  }
  return 0;
}

static int unlink_locked(struct cf_extfs *x, uint32_t dir, const char *name, bool keep, uint32_t *out)
{
  ext2_filsys fs = x->fs;
  size_t len = strlen(name);
  if (len > EXT2_NAME_LEN)
    return cf_fail(ENAMETOOLONG, "a name of %zu bytes", len);
  ext2_ino_t ino;
  inode_t in, d;
  errcode_t e = ext2fs_lookup(fs, dir, name, (int)len, NULL, &ino);
  if (e)
    return FAIL(e, "'%s'", name);
  if ((e = iget(fs, ino, &in)))
    return FAIL(e, "inode %u", ino);
  bool isdir = LINUX_S_ISDIR(in.i_mode);
  if (isdir) {
    struct empty_ctx c = {true};
    if ((e = ext2fs_dir_iterate2(fs, ino, 0, NULL, empty_cb, &c)))
      return FAIL(e, "reading directory %u", ino);
    if (!c.empty)
      return cf_fail(ENOTEMPTY, "directory '%s' is not empty", name);
  }
  if ((e = ext2fs_unlink(fs, dir, name, ino, 0)))
    return FAIL(e, "unlinking '%s'", name);
  if ((e = iget(fs, dir, &d)))
    return FAIL(e, "directory %u", dir);
  if (isdir && d.i_links_count > 2 && d.i_links_count < EXT4_LINK_MAX)
    d.i_links_count--;
  touch_mctime(&d);
  if ((e = iput(fs, dir, &d)))
    return FAIL(e, "directory %u", dir);
  if (isdir)
    in.i_links_count = 0;
  else if (in.i_links_count > 0)
    in.i_links_count--;
  touch_ctime(&in);
  if (out)
    *out = ino;
  if (in.i_links_count > 0)
    e = iput(fs, ino, &in);
  else if (keep) {
    in.i_dtime = fs->super->s_last_orphan;
    fs->super->s_last_orphan = ino;
    ext2fs_mark_super_dirty(fs);
    e = iput(fs, ino, &in);
  } else
    e = free_inode(fs, ino, &in);
  return e ? FAIL(e, "inode %u", ino) : 0;
}

int cf_extfs_unlink(struct cf_extfs *x, uint32_t dir, const char *name, bool keep, uint32_t *ino)
{
  pthread_mutex_lock(&x->lock);
  int r = unlink_locked(x, dir, name, keep, ino);
  pthread_mutex_unlock(&x->lock);
  return r;
}

int cf_extfs_release(struct cf_extfs *x, uint32_t ino)
{
  pthread_mutex_lock(&x->lock);
  inode_t in;
  errcode_t e = iget(x->fs, ino, &in);
  if (!e && in.i_links_count == 0 && in.i_mode) {
    if (!(e = orphan_remove(x->fs, ino, &in)))
      e = free_inode(x->fs, ino, &in);
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "inode %u", ino) : 0;
}

/* A moved directory's ".." names its new parent. */
struct dotdot {
  uint32_t parent;
};

static int dotdot_cb(ext2_ino_t dino, int entry, struct ext2_dir_entry *de, int off, int bs, char *buf, void *priv)
{
  if (ext2fs_dirent_name_len(de) == 2 && de->name[0] == '.' && de->name[1] == '.') {
    de->inode = ((struct dotdot *)priv)->parent;
    return DIRENT_CHANGED | DIRENT_ABORT;
  }
  return 0;
}

static int rename_locked(struct cf_extfs *x, uint32_t sdir, const char *sname, uint32_t ddir, const char *dname)
{
  ext2_filsys fs = x->fs;
  if (strlen(dname) > EXT2_NAME_LEN || strlen(sname) > EXT2_NAME_LEN)
    return cf_fail(ENAMETOOLONG, "a name over 255 bytes");
  ext2_ino_t ino, other;
  inode_t in, d;
  errcode_t e = ext2fs_lookup(fs, sdir, sname, (int)strlen(sname), NULL, &ino);
  if (e)
    return FAIL(e, "'%s'", sname);
  if (!(e = ext2fs_lookup(fs, ddir, dname, (int)strlen(dname), NULL, &other)))
    return cf_fail(EEXIST, "'%s' exists", dname);
  if (e != EXT2_ET_FILE_NOT_FOUND)
    return FAIL(e, "'%s'", dname);
  if ((e = iget(fs, ino, &in)))
    return FAIL(e, "inode %u", ino);
  bool isdir = LINUX_S_ISDIR(in.i_mode);
  if ((e = link_in(fs, ddir, dname, ino, ft_of(in.i_mode))))
    return FAIL(e, "linking '%s'", dname);
  if ((e = ext2fs_unlink(fs, sdir, sname, ino, 0)))
    return FAIL(e, "unlinking '%s'", sname);
  if (isdir && sdir != ddir) {
    struct dotdot c = {ddir};
    if ((e = ext2fs_dir_iterate2(fs, ino, 0, NULL, dotdot_cb, &c)))
      return FAIL(e, "'..' of '%s'", dname);
  }
  touch_ctime(&in);
  if ((e = iput(fs, ino, &in)))
    return FAIL(e, "inode %u", ino);
  for (int k = 0; k < (sdir == ddir ? 1 : 2); k++) {
    uint32_t di = k ? ddir : sdir;
    if ((e = iget(fs, di, &d)))
      return FAIL(e, "directory %u", di);
    if (isdir && sdir != ddir) {
      if (k == 0 && d.i_links_count > 2 && d.i_links_count < EXT4_LINK_MAX)
        d.i_links_count--;
      else if (k == 1 && d.i_links_count < EXT4_LINK_MAX - 1 && d.i_links_count > 1)
        d.i_links_count++;
    }
    touch_mctime(&d);
    if ((e = iput(fs, di, &d)))
      return FAIL(e, "directory %u", di);
  }
  return 0;
}

int cf_extfs_rename(struct cf_extfs *x, uint32_t sdir, const char *sname, uint32_t ddir, const char *dname)
{
  pthread_mutex_lock(&x->lock);
  int r = rename_locked(x, sdir, sname, ddir, dname);
  pthread_mutex_unlock(&x->lock);
  return r;
}

struct rd_ctx {
  cf_extfs_dir_fn fn;
  void *ctx;
  int ret;
};

static int readdir_cb(ext2_ino_t dino, int entry, struct ext2_dir_entry *de, int off, int bs, char *buf, void *priv)
{
  struct rd_ctx *c = priv;
  int n = ext2fs_dirent_name_len(de);
  if ((n == 1 && de->name[0] == '.') || (n == 2 && de->name[0] == '.' && de->name[1] == '.'))
    return 0;
  char name[EXT2_NAME_LEN + 1];
  memcpy(name, de->name, (size_t)n);
  name[n] = 0;
  c->ret = c->fn(c->ctx, name, de->inode, dt_of(ext2fs_dirent_file_type(de)));
  return c->ret ? DIRENT_ABORT : 0;
}

int cf_extfs_readdir(struct cf_extfs *x, uint32_t dir, cf_extfs_dir_fn fn, void *ctx)
{
  struct rd_ctx c = {fn, ctx, 0};
  pthread_mutex_lock(&x->lock);
  errcode_t e = ext2fs_dir_iterate2(x->fs, dir, 0, NULL, readdir_cb, &c);
  pthread_mutex_unlock(&x->lock);
  if (e)
    return FAIL(e, "reading directory %u", dir);
  return c.ret;
}

/* ---- data ---- */

static errcode_t open_file(ext2_filsys fs, uint32_t ino, int flags, ext2_file_t *f)
{
  inode_t in;
  errcode_t e = iget(fs, ino, &in);
  if (e)
    return e;
  if (!LINUX_S_ISREG(in.i_mode))
    return LINUX_S_ISDIR(in.i_mode) ? EISDIR : EINVAL;
  return ext2fs_file_open2(fs, ino, I(&in), flags, f);
}

/* Whole blocks [lblk, lblk+n) of a file with extents, straight between
 * buf and the device: each mapped run is one overlay read or write (the
 * file API moves one block per call). Unmapped blocks read as zeros (a
 * write never meets one: cf_extfs_write allocates first). */
static errcode_t map_io(ext2_filsys fs, uint32_t ino, inode_t *in, uint64_t lblk, uint64_t n, char *buf, bool wr)
{
  ext2_extent_handle_t h;
  errcode_t e = ext2fs_extent_open2(fs, ino, I(in), &h);
  if (e)
    return e;
  uint64_t bs = fs->blocksize, cur = lblk, end = lblk + n;
  while (!e && cur < end) {
    struct ext2fs_extent ex;
    uint64_t run = 0, pblk = 0;
    bool mapped = false;
    errcode_t g = ext2fs_extent_goto(h, cur);
    if (!g && !(e = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex)) && ex.e_lblk <= cur &&
        cur < ex.e_lblk + ex.e_len) {
      run = ex.e_lblk + ex.e_len - cur;
      pblk = ex.e_pblk + (cur - ex.e_lblk);
      mapped = !(ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT);
    } else if (!e) {
      /* A hole: up to the next extent (or the end). */
      e = 0;
      run = end - cur;
      struct ext2fs_extent nx;
      if ((g == 0 || g == EXT2_ET_EXTENT_NOT_FOUND) && !ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &nx) &&
          nx.e_lblk > cur && nx.e_lblk - cur < run)
        run = nx.e_lblk - cur;
      else if (!ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &nx) && nx.e_lblk > cur && nx.e_lblk - cur < run)
        run = nx.e_lblk - cur;
    }
    if (e)
      break;
    if (run > end - cur)
      run = end - cur;
    if (run > (1u << 18))
      run = 1u << 18; /* io_channel counts in an int */
    char *p = buf + (cur - lblk) * bs;
    if (wr && !mapped)
      e = EXT2_ET_BLOCK_ALLOC_FAIL; /* not allocated: the caller's fallocate failed */
    else if (wr)
      e = io_channel_write_blk64(fs->io, pblk, (int)run, p);
    else if (mapped)
      e = io_channel_read_blk64(fs->io, pblk, (int)run, p);
    else
      memset(p, 0, run * bs);
    cur += run;
  }
  ext2fs_extent_free(h);
  return e;
}

/* Bulk transfers are worth it from this many whole blocks on. */
#define BULK_BLOCKS 16

long cf_extfs_read(struct cf_extfs *x, uint32_t ino, void *buf, size_t len, uint64_t off)
{
  pthread_mutex_lock(&x->lock);
  ext2_file_t f;
  uint64_t done = 0;
  errcode_t e = open_file(x->fs, ino, 0, &f);
  if (!e) {
    __u64 size;
    ext2fs_file_get_lsize(f, &size);
    if (off < size && len > size - off)
      len = size - off;
    if (off >= size)
      len = 0;
    uint64_t bs = x->fs->blocksize, a = (off + bs - 1) / bs * bs, b = (off + len) / bs * bs;
    inode_t *in = (inode_t *)ext2fs_file_get_inode(f);
    bool bulk = b > a && (b - a) / bs >= BULK_BLOCKS && (in->i_flags & EXT4_EXTENTS_FL);
    /* The file API for the unaligned head (all of it without bulk), the
     * middle straight from the device, the file API for the tail. */
    uint64_t head = bulk ? a - off : len;
    if (len && !(e = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL)))
      while (done < head) {
        unsigned want = head - done > (1u << 30) ? (1u << 30) : (unsigned)(head - done), got = 0;
        if ((e = ext2fs_file_read(f, (char *)buf + done, want, &got)) || !got)
          break;
        done += got;
      }
    if (!e && bulk && done == head) {
      if (!(e = map_io(x->fs, ino, in, a / bs, (b - a) / bs, (char *)buf + done, false)))
        done += b - a;
      if (!e && done < len && !(e = ext2fs_file_llseek(f, b, EXT2_SEEK_SET, NULL)))
        while (done < len) {
          unsigned got = 0;
          if ((e = ext2fs_file_read(f, (char *)buf + done, (unsigned)(len - done), &got)) || !got)
            break;
          done += got;
        }
    }
    errcode_t c = ext2fs_file_close(f);
    if (!e)
      e = c;
  }
  pthread_mutex_unlock(&x->lock);
  return e && !done ? FAIL(e, "reading inode %u", ino) : (long)done;
}

/* The file API over [off, off+len) of f: the bytes moved. */
static uint64_t file_write(ext2_file_t f, const char *buf, uint64_t len, uint64_t off, errcode_t *e)
{
  uint64_t done = 0;
  if ((*e = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL)))
    return 0;
  while (done < len) {
    unsigned want = len - done > (1u << 30) ? (1u << 30) : (unsigned)(len - done), got = 0;
    if ((*e = ext2fs_file_write(f, buf + done, want, &got)) || !got)
      break;
    done += got;
  }
  return done;
}

long cf_extfs_write(struct cf_extfs *x, uint32_t ino, const void *vbuf, size_t len, uint64_t off)
{
  const char *buf = vbuf;
  if (off + len < off || off + len > (1ull << 44))
    return cf_fail(EFBIG, "a write to %llu", (unsigned long long)(off + len));
  pthread_mutex_lock(&x->lock);
  ext2_file_t f;
  uint64_t done = 0;
  errcode_t e = 0;
  uint64_t bs = x->fs->blocksize, a = (off + bs - 1) / bs * bs, b = (off + len) / bs * bs;
  inode_t in;
  /* Only where the blocks surely fit (with room for extent tree blocks):
   * ext2fs_fallocate running out of space midway leaves a broken extent
   * tree (libext2fs 1.47.0, seen with e2fsck), where the file API's
   * block-at-a-time allocation stops cleanly at ENOSPC. */
  bool bulk = b > a && (b - a) / bs >= BULK_BLOCKS &&
              ext2fs_free_blocks_count(x->fs->super) > (b - a) / bs + (b - a) / bs / 256 + 64 &&
              !iget(x->fs, ino, &in) && LINUX_S_ISREG(in.i_mode) && (in.i_flags & EXT4_EXTENTS_FL);
  if (bulk) {
    /* The whole blocks first: allocated in one go (initialized extents:
     * this file system never has uninitialized ones), then written straight
     * to the device, one overlay write per extent; the size grows once
     * they are. The unaligned ends then go through the file API, which
     * leaves the middle alone. */
    e = ext2fs_fallocate(x->fs, EXT2_FALLOCATE_FORCE_INIT | EXT2_FALLOCATE_INIT_BEYOND_EOF, ino, I(&in), ~0ULL,
                         a / bs, (b - a) / bs);
    if (!e)
      e = map_io(x->fs, ino, &in, a / bs, (b - a) / bs, (char *)buf + (a - off), true);
    if (!e && EXT2_I_SIZE(&in) < b)
      e = ext2fs_inode_size_set(x->fs, I(&in), b);
    if (!e)
      e = iput(x->fs, ino, &in);
    if (e) {
      /* Blocks fallocate gave stay allocated (as after a failed write on
       * Linux); the size is unchanged. */
      pthread_mutex_unlock(&x->lock);
      return FAIL(e, "writing inode %u", ino);
    }
  }
  if (!(e = open_file(x->fs, ino, EXT2_FILE_WRITE, &f))) {
    if (!bulk) {
      done = file_write(f, buf, len, off, &e);
    } else {
      done = file_write(f, buf, a - off, off, &e);
      if (!e && done == a - off) {
        done += b - a;
        done += file_write(f, buf + (b - off), off + len - b, b, &e);
      }
    }
    touch_mctime((inode_t *)ext2fs_file_get_inode(f));
    /* ext2fs_file_close flushes the last block and writes the inode
     * (size, blocks, times). */
    errcode_t c = ext2fs_file_close(f);
    if (!e)
      e = c;
  }
  pthread_mutex_unlock(&x->lock);
  if (e && !done)
    return FAIL(e, "writing inode %u", ino);
  return (long)done;
}

int cf_extfs_truncate(struct cf_extfs *x, uint32_t ino, uint64_t size)
{
  if (size > (1ull << 44))
    return cf_fail(EFBIG, "a size of %llu", (unsigned long long)size);
  pthread_mutex_lock(&x->lock);
  ext2_file_t f;
  errcode_t e = open_file(x->fs, ino, EXT2_FILE_WRITE, &f);
  if (!e) {
    e = ext2fs_file_set_size2(f, size);
    touch_mctime((inode_t *)ext2fs_file_get_inode(f));
    errcode_t c = ext2fs_file_close(f);
    if (!e)
      e = c;
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "truncating inode %u", ino) : 0;
}

int cf_extfs_punch(struct cf_extfs *x, uint32_t ino, uint64_t off, uint64_t len)
{
  if (!len)
    return 0;
  pthread_mutex_lock(&x->lock);
  ext2_filsys fs = x->fs;
  inode_t in;
  errcode_t e = iget(fs, ino, &in);
  uint64_t size = EXT2_I_SIZE(&in), end = off + len < off ? UINT64_MAX : off + len;
  if (!e && !LINUX_S_ISREG(in.i_mode))
    e = EINVAL;
  if (!e && end > size)
    end = size;
  if (!e && off < end) {
    uint64_t bs = fs->blocksize, first = (off + bs - 1) / bs, last = end / bs; /* whole blocks [first, last) */
    /* The partial ends: zeros written over what is mapped there. */
    static const char zeros[4096];
    for (int k = 0; k < 2 && !e; k++) {
      uint64_t a = k ? (last * bs > off ? last * bs : off) : off, b = k ? end : (first * bs < end ? first * bs : end);
      if (k == 1 && last < first)
        break; /* one partial block: done by k == 0 */
      if (a >= b)
        continue;
      blk64_t pb = 0;
      if ((e = ext2fs_bmap2(fs, ino, I(&in), NULL, 0, a / bs, NULL, &pb)) || !pb)
        continue;
      ext2_file_t f;
      unsigned got;
      if ((e = ext2fs_file_open2(fs, ino, I(&in), EXT2_FILE_WRITE, &f)))
        break;
      if (!(e = ext2fs_file_llseek(f, a, EXT2_SEEK_SET, NULL)))
        e = ext2fs_file_write(f, zeros, (unsigned)(b - a), &got);
      errcode_t c = ext2fs_file_close(f);
      if (!e)
        e = c;
      if (!e)
        e = iget(fs, ino, &in);
    }
    if (!e && first < last)
      e = ext2fs_punch(fs, ino, I(&in), NULL, first, last - 1);
    if (!e) {
      touch_mctime(&in);
      e = iput(fs, ino, &in);
    }
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "punching inode %u", ino) : 0;
}

int64_t cf_extfs_seek_data(struct cf_extfs *x, uint32_t ino, uint64_t off, int whence)
{
  pthread_mutex_lock(&x->lock);
  ext2_filsys fs = x->fs;
  inode_t in;
  int64_t r;
  errcode_t e = iget(fs, ino, &in);
  uint64_t size = EXT2_I_SIZE(&in), bs = fs->blocksize;
  if (e) {
    r = FAIL(e, "inode %u", ino);
  } else if (off >= size) {
    r = cf_fail(ENXIO, "offset %llu at or past the end", (unsigned long long)off);
  } else {
    /* Walk the leaf extents: data is an initialized extent; uninitialized
     * (fallocated) ones read as zeros and count as holes, as on Linux. */
    uint64_t pos = off, data = UINT64_MAX, hole = size;
    ext2_extent_handle_t h = NULL;
    if (ext2fs_has_feature_extents(fs->super) && (in.i_flags & EXT4_EXTENTS_FL) &&
        !(e = ext2fs_extent_open2(fs, ino, I(&in), &h))) {
      struct ext2fs_extent ex;
      int op = EXT2_EXTENT_ROOT;
      uint64_t cur = pos; /* the first byte not known to be data */
      bool found_data = false;
      while (!(e = ext2fs_extent_get(h, op, &ex))) {
        op = EXT2_EXTENT_NEXT_LEAF;
        if (!(ex.e_flags & EXT2_EXTENT_FLAGS_LEAF))
          continue;
        uint64_t a = ex.e_lblk * bs, b = (ex.e_lblk + ex.e_len) * bs;
        if (b <= pos || (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
          continue;
        if (!found_data) {
          data = a > pos ? a : pos;
          found_data = true;
          cur = b;
          if (data > pos) {
            hole = pos;
            break;
          }
        } else if (a > cur) {
          break;
        } else {
          cur = b;
        }
      }
      ext2fs_extent_free(h);
      e = 0;
      if (found_data && data == pos)
        hole = cur < size ? cur : size;
      else if (!found_data)
        hole = pos;
    } else {
      e = 0;
      data = pos; /* no extents: take everything as data */
      hole = size;
    }
    if (whence == SEEK_DATA)
      r = data < size ? (int64_t)data : cf_fail(ENXIO, "no data after %llu", (unsigned long long)off);
    else
      r = (int64_t)hole;
  }
  pthread_mutex_unlock(&x->lock);
  return r;
}

/* ---- attributes ---- */

int cf_extfs_chmod(struct cf_extfs *x, uint32_t ino, unsigned mode)
{
  pthread_mutex_lock(&x->lock);
  inode_t in;
  errcode_t e = iget(x->fs, ino, &in);
  if (!e) {
    in.i_mode = (__u16)((in.i_mode & S_IFMT) | (mode & 07777));
    touch_ctime(&in);
    e = iput(x->fs, ino, &in);
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "inode %u", ino) : 0;
}

int cf_extfs_chown(struct cf_extfs *x, uint32_t ino, unsigned uid, unsigned gid)
{
  pthread_mutex_lock(&x->lock);
  inode_t in;
  errcode_t e = iget(x->fs, ino, &in);
  if (!e) {
    set_owner(&in, uid, gid);
    touch_ctime(&in);
    e = iput(x->fs, ino, &in);
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "inode %u", ino) : 0;
}

int cf_extfs_set_times(struct cf_extfs *x, uint32_t ino, const struct timespec *atime,
                       const struct timespec *mtime, const struct timespec *ctime)
{
  pthread_mutex_lock(&x->lock);
  inode_t in;
  errcode_t e = iget(x->fs, ino, &in);
  if (!e) {
    if (atime)
      put_time(&in.i_atime, &in.i_atime_extra, atime);
    if (mtime)
      put_time(&in.i_mtime, &in.i_mtime_extra, mtime);
    if (ctime)
      put_time(&in.i_ctime, &in.i_ctime_extra, ctime);
    else
      touch_ctime(&in);
    e = iput(x->fs, ino, &in);
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "inode %u", ino) : 0;
}

/* ---- extended attributes ---- */

static errcode_t xattrs(ext2_filsys fs, uint32_t ino, struct ext2_xattr_handle **h)
{
  errcode_t e = ext2fs_xattrs_open(fs, ino, h);
  if (e)
    return e;
  if ((e = ext2fs_xattrs_read(*h)))
    ext2fs_xattrs_close(h);
  return e;
}

long cf_extfs_getxattr(struct cf_extfs *x, uint32_t ino, const char *name, void *value, size_t size)
{
  pthread_mutex_lock(&x->lock);
  struct ext2_xattr_handle *h;
  void *v = NULL;
  size_t n = 0;
  errcode_t e = xattrs(x->fs, ino, &h);
  if (!e) {
    e = ext2fs_xattr_get(h, name, &v, &n);
    ext2fs_xattrs_close(&h);
  }
  pthread_mutex_unlock(&x->lock);
  if (e)
    return FAIL(e, "attribute %s of inode %u", name, ino);
  if (value && n <= size)
    memcpy(value, v, n);
  ext2fs_free_mem(&v);
  return (long)n;
}

int cf_extfs_setxattr(struct cf_extfs *x, uint32_t ino, const char *name, const void *value, size_t len)
{
  pthread_mutex_lock(&x->lock);
  struct ext2_xattr_handle *h;
  errcode_t e = xattrs(x->fs, ino, &h);
  if (!e) {
    e = ext2fs_xattr_set(h, name, value, len);
    ext2fs_xattrs_close(&h);
  }
  if (!e) {
    inode_t in;
    if (!(e = iget(x->fs, ino, &in))) {
      touch_ctime(&in);
      e = iput(x->fs, ino, &in);
    }
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "attribute %s of inode %u", name, ino) : 0;
}

int cf_extfs_removexattr(struct cf_extfs *x, uint32_t ino, const char *name)
{
  pthread_mutex_lock(&x->lock);
  struct ext2_xattr_handle *h;
  void *v = NULL;
  size_t n;
  errcode_t e = xattrs(x->fs, ino, &h);
  if (!e) {
    if (!(e = ext2fs_xattr_get(h, name, &v, &n))) {
      ext2fs_free_mem(&v);
      e = ext2fs_xattr_remove(h, name);
    }
    ext2fs_xattrs_close(&h);
  }
  pthread_mutex_unlock(&x->lock);
  return e ? FAIL(e, "attribute %s of inode %u", name, ino) : 0;
}
