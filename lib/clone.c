/* Sharing files: cf_clone (include/cowfork/clone.h).
 *
 * Methods, cheapest first:
 *   1. reflink  ioctl(FICLONE) into a fresh temp file: extents are shared and
 *      the file system copies on write (XFS with reflink=1, btrfs, bcachefs).
 *   2. hardlink linkat(src, dst), only with CF_CLONE_IMMUTABLE (a write via
 *      either name would show through the other) and only when src and dst's
 *      directory are on one file system. It goes straight to dst (the temp
 *      file made for the reflink is dropped): linkat refuses an existing dst.
 *   3. copy_file_range loop over the data segments of src, in the kernel.
 *   4. pread/pwrite loop with a 1 MiB buffer over the same segments.
 * Both copies skip holes (SEEK_DATA/SEEK_HOLE) and end with ftruncate to the
 * size of src, so a sparse source gives an equally sparse clone.
 *
 * Invariants: nothing partial is ever visible at dst. Every method but the
 * hardlink fills a temp file "dst.tmp.XXXXXX" (mkostemp: O_CREAT|O_EXCL,
 * 0600 until filled, then fchmod to src's bits), fsyncs it, and moves it
 * into place with renameat2(RENAME_NOREPLACE) (or link+unlink where the file
 * system lacks it), so a dst that appeared meanwhile is never replaced; then
 * the directory is fsynced. On any failure the temp file is unlinked. A crash
 * can leave a stray *.tmp.* file, never a partial dst.
 *
 * We move to the next method only on errors that mean "not supported here"
 * (FICLONE: EOPNOTSUPP ENOTTY EXDEV EINVAL ENOSYS EBADF; link: EXDEV EPERM
 * EMLINK EOPNOTSUPP ENOSYS; copy_file_range: EXDEV EINVAL EOPNOTSUPP ENOSYS
 * EBADF); a real error (EIO, ENOSPC, EDQUOT...) fails the call. A
 * copy_file_range that gives up part way restarts with read/write from 0.
 *
 * CF_CLONE_NOSYNC leaves out both fsyncs: for a caller that fills a whole
 * tree in a temp directory and syncs it once (syncfs) before renaming it
 * into place (lib/root.c), where one fsync per file would cost seconds.
 *
 * Permission bits are the 0777 bits of src: set-id bits are not carried over
 * (the clone is a new file owned by the caller). No global state; thread-safe.
 *
 * cf_clone_range does the same for a range of an open file into another
 * (image export extent by extent, a layer filled from an imported file):
 * FICLONERANGE for runs aligned to the destination file system's block
 * size, then copy_file_range, then read/write, the caller's state word
 * remembering which were refused so that a file system without reflink is
 * asked once, not once per run.
 */
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "cowfork/clone.h"
#include "internal.h"

#define RW_BUF (1u << 20)

/* Messages carry the API name even when a helper records them. */
#define fail(errnum, ...) cf_fail_("cf_clone", (errnum), __VA_ARGS__)

const char *cf_clone_method_name(enum cf_clone_method m)
{
  switch (m) {
  case CF_CLONE_REFLINK:
    return "reflink";
  case CF_CLONE_HARDLINK:
    return "hardlink";
  case CF_CLONE_COPY_RANGE:
    return "copy_file_range";
  case CF_CLONE_READWRITE:
    return "read/write";
  }
  return "unknown";
}

/* FICLONE: "this file system (pair) cannot share extents". EBADF is listed
 * by ioctl_ficlone(2) for a file system without reflink; our fds are open
 * in the right modes, so it can mean nothing else here. */
static bool reflink_unsupported(int e)
{
  return e == EOPNOTSUPP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS ||
         e == EBADF;
}

/* link(2) refused for policy or limits, not for I/O: cross-device (bind
 * mounts), protected_hardlinks, too many links, no link support (FAT). */
static bool link_unsupported(int e)
{
  return e == EXDEV || e == EPERM || e == EMLINK || e == EOPNOTSUPP || e == ENOSYS;
}

/* copy_file_range(2): cross-file-system (EXDEV), unsupported file types or
 * file systems (EINVAL, EOPNOTSUPP, ENOSYS, EBADF on some FUSE versions). */
static bool copy_range_unsupported(int e)
{
  return e == EXDEV || e == EINVAL || e == EOPNOTSUPP || e == ENOSYS || e == EBADF;
}

/* Calls fn(sfd, dfd, start, end) for every data segment of src in [0, size).
 * A file system without SEEK_DATA is treated as all data. Returns 0, or -1
 * with errno from lseek or from fn (fn returns -1 and sets errno). */
static int for_each_data(int sfd, int dfd, uint64_t size, void *arg,
                         int (*fn)(int, int, uint64_t, uint64_t, void *))
{
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = lseek(sfd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) /* only a hole from pos to the end */
        return 0;
      if (errno != EINVAL && errno != EOPNOTSUPP)
        return -1;
      return fn(sfd, dfd, pos, size, arg); /* no hole support: all data */
    }
    if ((uint64_t)data >= size)
      return 0;
    off_t hole = lseek(sfd, data, SEEK_HOLE);
    if (hole < 0)
      return -1;
    uint64_t end = (uint64_t)hole < size ? (uint64_t)hole : size;
    if (end <= (uint64_t)data) /* cannot happen unless src changes under us */
      end = size;
    if (fn(sfd, dfd, data, end, arg) < 0)
      return -1;
    pos = end;
  }
  return 0;
}

struct copy_state {
  bool unsupported; /* copy_file_range: gave up with a "not supported" error */
  char *buf;        /* read/write: the buffer */
};

static int copy_range_segment(int sfd, int dfd, uint64_t start, uint64_t end, void *arg)
{
  struct copy_state *st = arg;
  loff_t in = start, out = start;
  while ((uint64_t)in < end) {
    uint64_t left = end - in;
    ssize_t r = copy_file_range(sfd, &in, dfd, &out, left > (1u << 30) ? (1u << 30) : left, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (copy_range_unsupported(errno))
        st->unsupported = true;
      return -1;
    }
    if (r == 0) { /* early EOF: some file systems do this instead of failing */
      st->unsupported = true;
      errno = EOPNOTSUPP;
      return -1;
    }
  }
  return 0;
}

static int readwrite_segment(int sfd, int dfd, uint64_t start, uint64_t end, void *arg)
{
  struct copy_state *st = arg;
  uint64_t off = start;
  while (off < end) {
    size_t len = end - off < RW_BUF ? end - off : RW_BUF;
    ssize_t r = cf_pread_full(sfd, st->buf, len, off);
    if (r < 0)
      return -1;
    if ((size_t)r < len) { /* src shrank while we copied: refuse a torn copy */
      errno = EAGAIN;
      return -1;
    }
    if (cf_pwrite_full(dfd, st->buf, len, off) < 0)
      return -1;
    off += len;
  }
  return 0;
}

/* Copies the data of src into the empty file dfd and sets its size. */
static int copy_data(const char *src, const char *tmp, int sfd, int dfd, uint64_t size,
                     enum cf_clone_method *m)
{
  struct copy_state st = {0};
  if (for_each_data(sfd, dfd, size, &st, copy_range_segment) == 0) {
    *m = CF_CLONE_COPY_RANGE;
  } else {
    int e = errno;
    if (!st.unsupported)
      return fail(e, "copy_file_range %s -> %s: %s", src, tmp, strerror(e));
    /* Start over: a partial in-kernel copy is not worth resuming. */
    if (ftruncate(dfd, 0) < 0) {
      e = errno;
      return fail(e, "ftruncate %s: %s", tmp, strerror(e));
    }
    CLEANUP_FREE char *buf = malloc(RW_BUF);
    if (!buf)
      return fail(ENOMEM, "%s: out of memory", src);
    st.buf = buf;
    if (for_each_data(sfd, dfd, size, &st, readwrite_segment) < 0) {
      e = errno;
      if (e == EAGAIN)
        return fail(e, "%s: file shrank while being copied", src);
      return fail(e, "copy %s -> %s: %s", src, tmp, strerror(e));
    }
    *m = CF_CLONE_READWRITE;
  }
  if (ftruncate(dfd, size) < 0) {
    int e = errno;
    return fail(e, "ftruncate %s: %s", tmp, strerror(e));
  }
  return 0;
}

/* fsync the directory holding path, so a new name in it survives a crash.
 * File systems that cannot fsync a directory (EINVAL) are not an error. */
static int sync_parent(const char *path)
{
  CLEANUP_FREE char *copy = strdup(path);
  if (!copy)
    return fail(ENOMEM, "%s: out of memory", path);
  const char *dir = dirname(copy);
  CLEANUP_CLOSE int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(e, "open %s: %s", dir, strerror(e));
  }
  if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS) {
    int e = errno;
    return fail(e, "fsync %s: %s", dir, strerror(e));
  }
  return 0;
}

/* Moves tmp to dst unless dst exists. */
static int place(const char *tmp, const char *dst)
{
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
    return 0;
  int e = errno;
  if (e != EINVAL && e != ENOSYS && e != EOPNOTSUPP)
    return fail(e, "rename %s -> %s: %s", tmp, dst, strerror(e));
  /* No RENAME_NOREPLACE here (some network and FUSE file systems). */
  if (link(tmp, dst) < 0) {
    e = errno;
    return fail(e, "link %s -> %s: %s", tmp, dst, strerror(e));
  }
  unlink(tmp);
  return 0;
}

enum { NO_REFLINK = 1, NO_COPY_RANGE = 2 };

int cf_reflink_range(int sfd, uint64_t soff, int dfd, uint64_t doff, uint64_t len, unsigned *state)
{
  if (*state & NO_REFLINK)
    return 0;
  struct stat ss, ds;
  if (fstat(sfd, &ss) < 0 || fstat(dfd, &ds) < 0)
    return fail(errno, "stat: %s", strerror(errno));
  uint64_t blk = ds.st_blksize > 0 ? (uint64_t)ds.st_blksize : 4096;
  bool to_end = soff + len == (uint64_t)ss.st_size;
  if (ss.st_dev != ds.st_dev) {
    *state |= NO_REFLINK; /* another file system: never */
    return 0;
  }
  if (soff % blk || doff % blk || (len % blk && !to_end))
    return 0; /* this run only */
  struct file_clone_range r = {.src_fd = sfd, .src_offset = soff, .src_length = len, .dest_offset = doff};
  int rc;
  while ((rc = ioctl(dfd, FICLONERANGE, &r)) < 0 && errno == EINTR)
    ;
  if (rc == 0)
    return 1;
  if (!reflink_unsupported(errno))
    return fail(errno, "reflink range at %llu: %s", (unsigned long long)soff, strerror(errno));
  *state |= NO_REFLINK;
  return 0;
}

bool cf_reflink_refused(unsigned state) { return state & NO_REFLINK; }

int cf_clone_range(int sfd, uint64_t soff, int dfd, uint64_t doff, uint64_t len, unsigned *state,
                   struct cf_clone_stats *st)
{
  if (len == 0)
    return 0;
  int shared = cf_reflink_range(sfd, soff, dfd, doff, len, state);
  if (shared < 0)
    return -1;
  if (shared) {
    st->shared_bytes += len;
    return 0;
  }
  uint64_t left = len;
  loff_t in = (loff_t)soff, out = (loff_t)doff;
  while (left && !(*state & NO_COPY_RANGE)) {
    ssize_t r = copy_file_range(sfd, &in, dfd, &out, left > (1u << 30) ? (1u << 30) : left, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && !copy_range_unsupported(errno))
      return fail(errno, "copy_file_range at %llu: %s", (unsigned long long)in, strerror(errno));
    if (r <= 0) {
      if (r == 0 && in < (loff_t)(soff + len)) {
        struct stat ss;
        if (fstat(sfd, &ss) == 0 && (uint64_t)ss.st_size < soff + len)
          return fail(EIO, "source ends at %llu, before %llu", (unsigned long long)ss.st_size,
                      (unsigned long long)(soff + len));
      }
      *state |= NO_COPY_RANGE;
      break;
    }
    left -= (uint64_t)r;
    st->copied_bytes += (uint64_t)r;
  }
  if (!left)
    return 0;
  CLEANUP_FREE char *buf = malloc(left < RW_BUF ? left : RW_BUF);
  if (!buf)
    return fail(ENOMEM, "out of memory");
  while (left) {
    size_t k = left < RW_BUF ? left : RW_BUF;
    ssize_t r = cf_pread_full(sfd, buf, k, (uint64_t)in);
    if (r != (ssize_t)k)
      return fail(r < 0 ? errno : EIO, "read at %llu: %s", (unsigned long long)in,
                  r < 0 ? strerror(errno) : "short read");
    if (cf_pwrite_full(dfd, buf, k, (uint64_t)out) < 0)
      return fail(errno, "write at %llu: %s", (unsigned long long)out, strerror(errno));
    in += (loff_t)k;
    out += (loff_t)k;
    left -= k;
    st->copied_bytes += k;
  }
  return 0;
}

int cf_clone(const char *src, const char *dst, unsigned flags, enum cf_clone_method *method)
{
  if (!src || !dst || !*src || !*dst)
    return fail(EINVAL, "empty path");
  if (flags & ~(CF_CLONE_IMMUTABLE | CF_CLONE_NOSYNC))
    return fail(EINVAL, "%s: unknown flags %#x", src, flags);

  /* O_NONBLOCK: a FIFO at src must not hang the open; it is refused below. */
  CLEANUP_CLOSE int sfd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (sfd < 0) {
    int e = errno;
    return fail(e, "open %s: %s", src, strerror(e));
  }
  struct stat sst;
  if (fstat(sfd, &sst) < 0) {
    int e = errno;
    return fail(e, "stat %s: %s", src, strerror(e));
  }
  if (S_ISDIR(sst.st_mode))
    return fail(EISDIR, "%s: is a directory", src);
  if (!S_ISREG(sst.st_mode))
    return fail(EINVAL, "%s: not a regular file", src);

  /* Fail fast before copying gigabytes; the final rename checks again. */
  struct stat dstat;
  if (lstat(dst, &dstat) == 0)
    return fail(EEXIST, "%s: already exists", dst);
  if (errno != ENOENT) {
    int e = errno;
    return fail(e, "stat %s: %s", dst, strerror(e));
  }

  size_t n = strlen(dst);
  CLEANUP_FREE char *tmp = malloc(n + sizeof ".tmp.XXXXXX");
  if (!tmp)
    return fail(ENOMEM, "%s: out of memory", dst);
  memcpy(tmp, dst, n);
  memcpy(tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
  CLEANUP_CLOSE int dfd = mkostemp(tmp, O_CLOEXEC);
  if (dfd < 0) {
    int e = errno;
    return fail(e, "create a temp file for %s: %s", dst, strerror(e));
  }

  enum cf_clone_method m = CF_CLONE_REFLINK;
  int e;
  struct stat tst;
  int r;
  while ((r = ioctl(dfd, FICLONE, sfd)) < 0 && errno == EINTR)
    ; /* a whole-file clone: repeating it is harmless */
  if (r == 0)
    goto finish;
  e = errno;
  if (!reflink_unsupported(e)) {
    fail(e, "reflink %s -> %s: %s", src, tmp, strerror(e));
    goto err;
  }

  if ((flags & CF_CLONE_IMMUTABLE) && fstat(dfd, &tst) == 0 && tst.st_dev == sst.st_dev) {
    /* AT_SYMLINK_FOLLOW: link what open() opened, not a symlink at src. */
    if (linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0) {
      unlink(tmp);
      if (!(flags & CF_CLONE_NOSYNC) && sync_parent(dst) < 0) {
        e = errno;
        unlink(dst);
        errno = e;
        return -1;
      }
      if (method)
        *method = CF_CLONE_HARDLINK;
      return 0;
    }
    e = errno;
    if (!link_unsupported(e)) {
      if (e == EEXIST)
        fail(e, "%s: already exists", dst);
      else
        fail(e, "link %s -> %s: %s", src, dst, strerror(e));
      goto err;
    }
  }

  if (copy_data(src, tmp, sfd, dfd, sst.st_size, &m) < 0)
    goto err;

finish:
  if (fchmod(dfd, sst.st_mode & 0777) < 0) {
    e = errno;
    fail(e, "chmod %s: %s", tmp, strerror(e));
    goto err;
  }
  if (!(flags & CF_CLONE_NOSYNC) && fsync(dfd) < 0) {
    e = errno;
    fail(e, "fsync %s: %s", tmp, strerror(e));
    goto err;
  }
  if (place(tmp, dst) < 0) {
    if (errno == EEXIST)
      fail(EEXIST, "%s: already exists", dst);
    goto err;
  }
  if (!(flags & CF_CLONE_NOSYNC) && sync_parent(dst) < 0) {
    e = errno;
    unlink(dst);
    errno = e;
    return -1;
  }
  if (method)
    *method = m;
  return 0;

err:
  e = errno;
  unlink(tmp);
  errno = e;
  return -1;
}
