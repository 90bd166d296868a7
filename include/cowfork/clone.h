/* Sharing files: reflink, then hardlink (immutable files only), then copy. */
#ifndef COWFORK_CLONE_H
#define COWFORK_CLONE_H

#include <stdbool.h>
#include <stdint.h>

enum cf_clone_method {
  CF_CLONE_REFLINK,    /* FICLONE: shares extents, copy-on-write on the file system */
  CF_CLONE_HARDLINK,   /* link(2): same inode; only when the caller says src is immutable */
  CF_CLONE_COPY_RANGE, /* copy_file_range(2): in-kernel copy (may itself share extents) */
  CF_CLONE_READWRITE,  /* read/write loop: the last fallback */
};

#define CF_CLONE_IMMUTABLE 1u /* src is never written again: a hardlink is safe */
#define CF_CLONE_NOSYNC 2u    /* no fsync of dst or its directory: the caller syncs (a whole tree at once) */

/* Make dst (which must not exist) a file with src's contents, by the cheapest
 * method that works, and store which in *method (may be NULL). dst is created
 * with src's permission bits; on failure nothing is left at dst.
 * -1 with cf_error() naming the path on failure. */
int cf_clone(const char *src, const char *dst, unsigned flags, enum cf_clone_method *method);

/* Bytes a range clone shared with its source (FICLONERANGE: the extents are
 * the source's until written) and bytes it copied (copy_file_range, which
 * some file systems serve by sharing too without saying so, or read/write). */
struct cf_clone_stats {
  uint64_t shared_bytes, copied_bytes;
};

/* Make [doff, doff+len) of dfd hold what [soff, soff+len) of sfd holds:
 * FICLONERANGE where soff, doff and len are multiples of the block size of
 * dfd's file system (len may also end at sfd's end) and the two files share
 * a file system with reflink; else copy_file_range; else read/write. *state
 * starts at 0 and remembers, across calls on the same pair, which methods
 * were refused as unsupported. Adds to *st. -1 with cf_error() on an I/O
 * error (a short source is EIO). */
int cf_clone_range(int sfd, uint64_t soff, int dfd, uint64_t doff, uint64_t len, unsigned *state,
                   struct cf_clone_stats *st);

/* Only the first method of cf_clone_range: 1 when the range was shared, 0
 * when it cannot be here (not aligned: this range; unsupported or another
 * file system: remembered in *state), -1 with cf_error() on an I/O error. */
int cf_reflink_range(int sfd, uint64_t soff, int dfd, uint64_t doff, uint64_t len, unsigned *state);
/* Whether *state (as above) says reflink was refused for good: every later
 * cf_reflink_range on the same pair returns 0 at once. */
bool cf_reflink_refused(unsigned state);

/* "reflink", "hardlink", "copy_file_range" or "read/write". */
const char *cf_clone_method_name(enum cf_clone_method m);

#endif
