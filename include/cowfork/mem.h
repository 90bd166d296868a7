/* A child's memory: an image's contents at one contiguous address,
 * copy-on-write, behind one interface with two implementations
 * (docs/memory.md), plus the working set recorded for prefetching.
 *
 *   file  cf_cowmap_map: extent by extent MAP_PRIVATE of the layers; every
 *         child shares the page cache, pays only for what it writes, and
 *         spawning costs O(extents). The default.
 *   uffd  an anonymous region registered with a userfaultfd that is handed
 *         to a page server (include/cowfork/uffd.h) over its socket;
 *         every page is installed on first touch (or by prefetch). */
#ifndef COWFORK_MEM_H
#define COWFORK_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cowfork/cowmap.h"
#include "cowfork/dirty.h"
#include "cowfork/image.h"
#include "cowfork/store.h"

/* A working set: image pages (offset / page size) in first-touch order. */
struct cf_wset {
  uint64_t *pages;
  size_t n, cap;
};

#define CF_MEM_PREFETCH 1u /* uffd: server installs its prefetch list; file: map o->wset's pages now */
#define CF_MEM_RECORD 2u   /* uffd: server records first touches */
#define CF_MEM_TRACK 4u    /* uffd: track writes (WP_ASYNC) so dirty scans are exact */
#define CF_MEM_PIN 8u      /* uffd: pin this process to the CPU it runs on before the handshake,
                            * so the server's worker on that CPU serves its faults (uffd.h) */

struct cf_mem_opts {
  const struct cf_image *img; /* file: required. uffd: gives the size if set */
  uint64_t size;              /* uffd without img: the image size in bytes */
  const char *socket;         /* uffd: the page server's socket */
  void *addr;                 /* NULL: the kernel chooses; else replaced as by MAP_FIXED */
  unsigned flags;             /* CF_MEM_* */
  const struct cf_wset *wset; /* file with CF_MEM_PREFETCH */
};

struct cf_mem_backend;

struct cf_mem {
  void *addr;  /* the image's byte 0 */
  size_t len;  /* image size rounded up to the page size */
  const struct cf_mem_backend *backend;
  unsigned flags;
  uint64_t client;      /* uffd: the client id the server gave */
  struct cf_cowmap cm;  /* file */
};

struct cf_mem_backend {
  const char *name;
  /* Map the image for the calling process into m. */
  int (*map)(const struct cf_mem_opts *o, struct cf_mem *m);
  int (*unmap)(struct cf_mem *m);
  /* What a dirty scan of a mapping made with flags looks for. */
  enum cf_dirty_kind (*dirty_kind)(unsigned flags);
  /* Flags cf_dirty_commit needs with that kind. */
  unsigned (*commit_flags)(unsigned flags);
};

extern const struct cf_mem_backend cf_mem_backend_file;
extern const struct cf_mem_backend cf_mem_backend_uffd;

/* "file" or "uffd"; NULL (EINVAL) otherwise. */
const struct cf_mem_backend *cf_mem_backend_find(const char *name);

/* --- Working sets (lib/wset.c) ------------------------------------------------
 * Kept in STORE/wset/NAME, not in images/ (which holds only headers: gc
 * parses every file there and refuses to run on one it cannot parse). The
 * file names the image id it was recorded on; a stale one is ignored. */
int cf_wset_add(struct cf_wset *w, uint64_t page);
void cf_wset_free(struct cf_wset *w);
/* STORE/wset/NAME into buf (creating STORE/wset). */
int cf_wset_path(const struct cf_store *s, const char *name, char *buf, size_t len);
/* Temp file, fsync, rename. Header: magic, version, page size, image id,
 * count, XXH3 of the entries. */
int cf_wset_save(const char *path, const uint8_t image_id[16], const struct cf_wset *w);
/* ENOENT when absent, ESTALE when recorded on another image, EINVAL when
 * malformed. */
int cf_wset_load(const char *path, const uint8_t image_id[16], struct cf_wset *w);
/* Fallback record for the file backend: the present pages of [addr, addr+len)
 * of process pid (0: self), in address order (the kernel keeps no order). */
int cf_wset_from_residency(pid_t pid, const void *addr, size_t len, struct cf_wset *w);
/* Read w's pages of img into the page cache (readahead of the layer ranges,
 * coalesced). For the file backend, before the first spawn. */
int cf_wset_readahead(const struct cf_image *img, const struct cf_wset *w);

#endif
