/* An ext4 file system on a copy-on-write block device (a cf_overlay),
 * through libext2fs (e2fsprogs): the upper layer of a sandbox's overlay when
 * it has a disk (`--disk SIZE`), and a disk any Linux can mount or fsck.
 *
 * Every read, write and discard goes to the overlay, so a block written
 * with zeros or freed (a deleted file's data, a truncated tail) becomes a
 * Zero block there: a child image saved from the overlay stores only the
 * blocks with data that changed. The file system on the device is
 * consistent (what `e2fsck -fn` accepts) after cf_extfs_flush and between
 * calls, except for inodes kept open after their last link went
 * (cf_extfs_unlink keep): those are on the orphan list, as the kernel
 * leaves them.
 *
 * Files are named by inode number; a call takes a directory's inode and a
 * name in it. Calls return 0 (or a count) or -1 with errno and a message
 * (cf_error) as Linux would give it (ENOENT, EEXIST, ENOTDIR, ENOTEMPTY,
 * ENOSPC, EFBIG, ENODATA, ENAMETOOLONG). One lock per file system: every
 * call is thread-safe and they run one at a time (libext2fs is not
 * thread-safe). */
#ifndef COWFORK_EXTFS_H
#define COWFORK_EXTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "cowfork/overlay.h"

struct cf_extfs;

#define CF_EXTFS_ROOT 2u /* the root directory's inode */
#define CF_EXTFS_BLOCK 4096u /* the file system's block size */

/* Make a new, empty ext4 file system on the whole of ov, which must read as
 * zeros (an overlay over an empty image: the inode tables are then already
 * zeroed and nothing but the metadata is written). At least 1 MiB; a
 * multiple of 4 KiB. Features: extents, flex_bg, 64bit, huge_file,
 * dir_nlink, extra_isize (256-byte inodes, nanosecond times), ext_attr,
 * metadata_csum; no journal (see lib/extfs.c). */
int cf_extfs_mkfs(struct cf_overlay *ov, const char *label);

/* A new disk of size bytes (a multiple of 1 MiB, at least 16 MiB) holding
 * an empty file system: an overlay (its cache file in cache_dir, as
 * cf_overlay_new) over an empty image in no store, so it needs no name and
 * vanishes with cf_overlay_free unless a save commits it (cf_overlay_save:
 * the blocks written). `--disk SIZE` of cowfork run and template create,
 * the daemon's "disk". */
struct cf_overlay *cf_extfs_new_disk(uint64_t size, const char *cache_dir);

/* Open the file system on ov (which the caller keeps and frees after
 * cf_extfs_close). */
struct cf_extfs *cf_extfs_open(struct cf_overlay *ov);
/* Write the bitmaps, group descriptors and superblock: the device then
 * holds a clean file system (a save of the overlay may follow). */
int cf_extfs_flush(struct cf_extfs *fs);
/* Flush and free (also on failure: -1 says the flush failed). */
int cf_extfs_close(struct cf_extfs *fs);

/* statfs: blocks of CF_EXTFS_BLOCK bytes and inodes, total and free. */
void cf_extfs_statfs(struct cf_extfs *fs, uint64_t *blocks, uint64_t *bfree, uint64_t *files, uint64_t *ffree);

/* The inode of name (len bytes) in directory dir: 0 and *ino, -1 ENOENT. */
int cf_extfs_lookup(struct cf_extfs *fs, uint32_t dir, const char *name, size_t len, uint32_t *ino);
/* An inode's attributes; st_dev is 0, st_ino the inode number. */
int cf_extfs_stat(struct cf_extfs *fs, uint32_t ino, struct stat *st);

/* A new entry name in dir, of type and permission mode (S_IFREG, S_IFDIR,
 * S_IFLNK with target, S_IFIFO, S_IFSOCK, S_IFCHR/S_IFBLK with rdev),
 * owned by uid:gid, all times now: 0 and *ino, -1 EEXIST when dir has the
 * name. A directory gets "." and ".." (and counts as a link of dir). */
int cf_extfs_create(struct cf_extfs *fs, uint32_t dir, const char *name, unsigned mode, uint64_t rdev,
                    const char *target, unsigned uid, unsigned gid, uint32_t *ino);
/* A symbolic link's target into buf (size bytes, NUL-terminated): its
 * length, -1 EINVAL if ino is not a symlink, ENAMETOOLONG if it does not fit. */
long cf_extfs_readlink(struct cf_extfs *fs, uint32_t ino, char *buf, size_t size);
/* A new name for the file ino (not a directory: EPERM). */
int cf_extfs_link(struct cf_extfs *fs, uint32_t ino, uint32_t dir, const char *name);
/* Remove name from dir (a directory must be empty: ENOTEMPTY). When it was
 * the file's last link: with keep, the inode stays (open files read it;
 * it is put on the orphan list) until cf_extfs_release; without, it is
 * freed now, its blocks discarded. *ino (may be NULL) gets the inode. */
int cf_extfs_unlink(struct cf_extfs *fs, uint32_t dir, const char *name, bool keep, uint32_t *ino);
/* Free an inode kept by cf_extfs_unlink (no link left): its blocks are
 * discarded. A no-op for an inode that has links again (cf_extfs_link). */
int cf_extfs_release(struct cf_extfs *fs, uint32_t ino);
/* Move sdir/sname to ddir/dname, which must not exist (EEXIST: unlink it
 * first). A directory moved to another parent has its ".." and both
 * parents' link counts updated. */
int cf_extfs_rename(struct cf_extfs *fs, uint32_t sdir, const char *sname, uint32_t ddir, const char *dname);
/* Every entry of dir but "." and "..", in on-disk order: fn gets its name
 * (NUL-terminated), inode and DT_* type; a non-zero return stops the walk
 * and is returned. */
typedef int (*cf_extfs_dir_fn)(void *ctx, const char *name, uint32_t ino, unsigned char type);
int cf_extfs_readdir(struct cf_extfs *fs, uint32_t dir, cf_extfs_dir_fn fn, void *ctx);

/* File data. read: the bytes read (short at end of file); write: len,
 * growing the file as needed (-1 ENOSPC, EFBIG past the maximum size). */
long cf_extfs_read(struct cf_extfs *fs, uint32_t ino, void *buf, size_t len, uint64_t off);
long cf_extfs_write(struct cf_extfs *fs, uint32_t ino, const void *buf, size_t len, uint64_t off);
/* Set the size; the blocks past it are freed and discarded. */
int cf_extfs_truncate(struct cf_extfs *fs, uint32_t ino, uint64_t size);
/* Make [off, off+len) a hole (whole blocks freed and discarded, the partial
 * ends zeroed); the size does not change. */
int cf_extfs_punch(struct cf_extfs *fs, uint32_t ino, uint64_t off, uint64_t len);
/* SEEK_DATA / SEEK_HOLE (whence) from off: the offset, or -1 ENXIO. */
int64_t cf_extfs_seek_data(struct cf_extfs *fs, uint32_t ino, uint64_t off, int whence);

/* Attributes. mode: the permission bits (and S_ISUID etc.), the type is
 * kept. uid/gid: (unsigned)-1 keeps one. Times: NULL leaves it; ctime is
 * always set to now. */
int cf_extfs_chmod(struct cf_extfs *fs, uint32_t ino, unsigned mode);
int cf_extfs_chown(struct cf_extfs *fs, uint32_t ino, unsigned uid, unsigned gid);
int cf_extfs_set_times(struct cf_extfs *fs, uint32_t ino, const struct timespec *atime,
                       const struct timespec *mtime, const struct timespec *ctime);

/* Extended attributes by full name ("trusted.overlay.opaque"). get: the
 * value's length (copied when it fits in size), -1 ENODATA; remove: -1
 * ENODATA when absent. */
long cf_extfs_getxattr(struct cf_extfs *fs, uint32_t ino, const char *name, void *value, size_t size);
int cf_extfs_setxattr(struct cf_extfs *fs, uint32_t ino, const char *name, const void *value, size_t len);
int cf_extfs_removexattr(struct cf_extfs *fs, uint32_t ino, const char *name);

#endif
