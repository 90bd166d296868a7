/* Sharing files: reflink, then hardlink (immutable files only), then copy. */
#ifndef COWFORK_CLONE_H
#define COWFORK_CLONE_H

enum cf_clone_method {
  CF_CLONE_REFLINK,    /* FICLONE: shares extents, copy-on-write on the file system */
  CF_CLONE_HARDLINK,   /* link(2): same inode; only when the caller says src is immutable */
  CF_CLONE_COPY_RANGE, /* copy_file_range(2): in-kernel copy (may itself share extents) */
  CF_CLONE_READWRITE,  /* read/write loop: the last fallback */
};

#define CF_CLONE_IMMUTABLE 1u /* src is never written again: a hardlink is safe */

/* Make dst (which must not exist) a file with src's contents, by the cheapest
 * method that works, and store which in *method (may be NULL). dst is created
 * with src's permission bits; on failure nothing is left at dst.
 * -1 with cf_error() naming the path on failure. */
int cf_clone(const char *src, const char *dst, unsigned flags, enum cf_clone_method *method);

/* "reflink", "hardlink", "copy_file_range" or "read/write". */
const char *cf_clone_method_name(enum cf_clone_method m);

#endif
