/* Roots: immutable directory trees a sandbox sees as "/" (docs/sandbox.md
 * "Roots", docs/format.md "Roots").
 *
 *   ROOTS/NAME/root   the tree (the packages' own modes, so programs run)
 *   ROOTS/NAME/info   what it was made from and how, "key value" lines
 *   ROOTS/.tmp-*      a root being built (renamed to NAME when complete)
 *
 * ROOTS is $COWFORK_ROOTS when set, else STORE/roots. Every root also holds
 * cowfork's Python driver at /usr/lib/cowfork/driver.py (CF_ROOT_DRIVER). */
#ifndef COWFORK_ROOT_H
#define COWFORK_ROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cowfork/image.h" /* cf_progress_fn */

#define CF_ROOT_DRIVER "/usr/lib/cowfork/driver.py"
#define CF_ROOT_DEFAULT "default"

enum cf_root_kind { CF_ROOT_PACKAGES, CF_ROOT_DIR, CF_ROOT_TAR };

struct cf_root_source {
  enum cf_root_kind kind;
  /* PACKAGES: the named installed Debian packages, their installed
   * dependencies (Depends, Pre-Depends, recursively; every installed
   * alternative and provider) and the Essential set. A named package that
   * is not installed is an error (ENOENT) unless optional is set, when it is
   * left out. */
  const char *const *packages;
  size_t npackages;
  bool optional;
  /* DIR: a host directory; TAR: a tar file (docker export, an OCI layer;
   * gzip/xz/zstd as libarchive reads them). */
  const char *path;
};

/* What a build did. files/bytes are the regular files placed by each
 * method of cf_clone (index enum cf_clone_method; a tar's files are written:
 * counted as read/write). */
struct cf_root_stats {
  uint64_t files[4], bytes[4];
  uint64_t dirs, symlinks, hardlinks; /* hardlinks: a tar's link members */
  uint64_t skipped;                   /* listed but missing, or device/FIFO/socket */
  uint64_t whiteouts;                 /* a tar's .wh.* members (see cf_root_create) */
  uint64_t packages;                  /* PACKAGES: how many went in */
  bool driver;                        /* CF_ROOT_DRIVER was written */
  double seconds;
};

/* ROOTS for the store at store_dir: $COWFORK_ROOTS, else STORE/roots. */
int cf_roots_dir(const char *store_dir, char *buf, size_t len);
/* Root names: as image names (1-200 of [A-Za-z0-9._-], no leading '.'). */
int cf_root_check_name(const char *name);

/* Build root name in ROOTS (created 0700 if missing) from src. Nothing is
 * visible under ROOTS/NAME until it is complete (built in ROOTS/.tmp-*,
 * synced, renamed); EEXIST if NAME exists (also when another process
 * finished it first). Files are shared by cf_clone: reflink, else hardlink
 * (PACKAGES only, and not under /etc nor set-id files: dpkg replaces files
 * by rename, an admin may edit a conffile in place), else copy.
 * TAR: member names that are absolute or hold ".." are refused (EINVAL), so
 * is a member under a symlink member (ELOOP); a whiteout (.wh.NAME,
 * .wh..wh..opq) hides what lower layers hold, and a root is one layer on
 * nothing: counted and skipped. Device nodes, FIFOs, sockets are skipped.
 * progress (may be NULL) gets bytes done and total. */
int cf_root_create(const char *roots, const char *name, const struct cf_root_source *src, struct cf_root_stats *st,
                   cf_progress_fn progress, void *ctx);
/* The default root: Essential + busybox-static + python3 + python3-numpy
 * where installed. */
int cf_root_create_default(const char *roots, struct cf_root_stats *st, cf_progress_fn progress, void *ctx);

/* The host directory for a --root argument: spec with a '/' is a host
 * directory (as given; "/" is the host's root); otherwise a root name,
 * ROOTS/NAME/root (ENOENT if missing), except that "default" is built here
 * when missing (*built set true, *st filled). */
int cf_root_resolve(const char *roots, const char *spec, char *buf, size_t len, bool *built,
                    struct cf_root_stats *st, cf_progress_fn progress, void *ctx);

struct cf_root_info {
  char name[256];
  char source[16];  /* "packages", "dir", "tar" */
  char from[1024];  /* the named packages, or the directory or tar file */
  uint64_t packages, created; /* created: seconds since the epoch */
  struct cf_root_stats st;
};
/* Every root in ROOTS, sorted by name (malloc'ed; 0 roots when ROOTS does
 * not exist). */
int cf_root_list(const char *roots, struct cf_root_info **out, size_t *n);
/* Remove root name (ENOENT if none): renamed away first, so it disappears
 * at once, then deleted. A sandbox running in it loses its files. Whether a
 * template still uses it is the caller's check (cf_template_root). */
int cf_root_remove(const char *roots, const char *name);

#endif
