/* A writable copy-on-write block device over an image (a child's disk).
 *
 * Writes land in a sparse cache file (unlinked at creation, so it vanishes
 * with the process); a tracker keeps every block Untouched (read from the
 * image), Dirty (read from the cache) or Zero (reads as zeros, punched in
 * the cache). The image is never written. All calls are thread-safe: any
 * number of threads (NBD connections) may use one overlay. Operations on
 * different blocks run in parallel; a read overlapping a write sees each
 * block wholly as before or wholly as after it, and a save sees the device
 * between writes (lib/overlay.c: block claims). */
#ifndef COWFORK_OVERLAY_H
#define COWFORK_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#include "cowfork/image.h"

struct cf_overlay;

enum { CF_BLOCK_UNTOUCHED = 0, CF_BLOCK_DIRTY = 1, CF_BLOCK_ZERO = 2 };

/* A new overlay over img, which it takes over: closed by cf_overlay_free,
 * or at once if this fails.
 * The cache file goes in cache_dir (NULL: /dev/shm, else /tmp). */
struct cf_overlay *cf_overlay_new(struct cf_image *img, const char *cache_dir);
/* The same over img, which stays the caller's: open and unchanged until
 * every overlay over it is freed. Any number of overlays may share one
 * image (the children of a template with a disk: shim/snapshot.c). */
struct cf_overlay *cf_overlay_new_shared(const struct cf_image *img, const char *cache_dir);
void cf_overlay_free(struct cf_overlay *o);

uint64_t cf_overlay_size(const struct cf_overlay *o);
uint32_t cf_overlay_block_size(const struct cf_overlay *o);
const struct cf_image *cf_overlay_image(const struct cf_overlay *o);

/* Read/write any byte range inside the device (EINVAL outside). A write is
 * split into runs of whole blocks that are all zero (punched, marked Zero)
 * or not (copied, marked Dirty); a partial block that is still Untouched is
 * filled from the image first. CF_OVERLAY_FUA: data is durable (fdatasync
 * of the cache) before the call returns. */
#define CF_OVERLAY_FUA 1u
int cf_overlay_pread(struct cf_overlay *o, void *buf, size_t len, uint64_t off);
int cf_overlay_pwrite(struct cf_overlay *o, const void *buf, size_t len, uint64_t off, unsigned flags);

/* TRIM and WRITE_ZEROES: whole blocks become Zero (their cache punched),
 * partial head and tail blocks get zeros written. Both leave the range
 * reading as zeros (a TRIM is allowed to, and does). */
int cf_overlay_zero(struct cf_overlay *o, uint64_t len, uint64_t off, unsigned flags);
int cf_overlay_trim(struct cf_overlay *o, uint64_t len, uint64_t off, unsigned flags);

/* Make every acknowledged write durable in the cache (fdatasync). */
int cf_overlay_flush(struct cf_overlay *o);

/* Block status of [off, off+len): calls fn with consecutive runs, each
 * `n` bytes long with flags CF_STATUS_HOLE (not stored anywhere) and/or
 * CF_STATUS_ZERO (reads as zeros). Runs follow block boundaries; the first
 * and last may be partial. Stops early if fn returns non-zero. */
#define CF_STATUS_HOLE 1u
#define CF_STATUS_ZERO 2u
typedef int (*cf_status_fn)(void *ctx, uint64_t n, unsigned flags);
int cf_overlay_block_status(struct cf_overlay *o, uint64_t len, uint64_t off, cf_status_fn fn, void *ctx);

struct cf_overlay_stats {
  uint64_t dirty_blocks, zero_blocks, untouched_blocks;
};
void cf_overlay_stats(struct cf_overlay *o, struct cf_overlay_stats *st);

/* Save the overlay as image name in s, a child of the overlay's image: its
 * Dirty blocks become the new layer, its Zero blocks empty extents; Untouched
 * blocks are neither read nor copied. The overlay keeps working (a later
 * save again holds everything changed since the overlay was made). */
int cf_overlay_save(struct cf_overlay *o, struct cf_store *s, const char *name);

#endif
