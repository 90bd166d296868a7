/* Layered images: opening, reading, verifying, and the whole-image jobs
 * (import, export, commit) the CLI runs. */
#ifndef COWFORK_IMAGE_H
#define COWFORK_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "cowfork/header.h"
#include "cowfork/store.h"

struct cf_image; /* an open header plus one open fd per layer */

/* Progress of a long job: done of total bytes. */
typedef void (*cf_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Open a named image: parse its header and open every layer (each must
 * exist and hold at least the blocks the header says). */
struct cf_image *cf_image_open(struct cf_store *s, const char *name);
void cf_image_close(struct cf_image *img);
/* An image of size bytes that reads as zeros, with no layer and in no
 * store (named name in messages): what an overlay over it makes is a new,
 * empty disk (cf_extfs_new_disk). NULL + cf_error on bad geometry. */
struct cf_image *cf_image_new_empty(uint64_t size, uint32_t block_size, const char *name);
const struct cf_header *cf_image_header(const struct cf_image *img);
/* fd of layer index i (read-only). */
int cf_image_layer_fd(const struct cf_image *img, uint32_t i);

/* Read len bytes at byte offset off (any alignment): each extent is one
 * lookup, empty extents read as zeros. EINVAL past the end. */
int cf_image_read(const struct cf_image *img, void *buf, size_t len, uint64_t off);

/* Check every layer's XXH3 against the header before any of its bytes are
 * used: once per open image, and once per layer file for all images opened
 * from the same store handle (a layer found good is remembered by id,
 * checksum and file identity: dev, ino, size, mtime, ctime). cf_image_read,
 * cf_image_export*, cf_cowmap_map and cf_uffd_server_listen call it; after
 * the first success it costs one atomic load. -1 EIO naming the image and
 * the corrupted layer. */
int cf_image_check(const struct cf_image *img);

/* Check every layer's length and XXH3 against the header, always reading
 * them again (`cowfork image verify`) (the header's own
 * checksum was checked when it was opened). -1 naming the bad layer. */
int cf_image_verify(const struct cf_image *img, cf_progress_fn progress, void *ctx);

struct cf_image_stats {
  uint64_t stored_bytes; /* bytes of layer data the map references */
  uint64_t empty_bytes;  /* bytes in empty extents */
  uint64_t own_bytes;    /* bytes in the image's own layer (what its commit wrote) */
};
void cf_image_stats(const struct cf_header *h, struct cf_image_stats *st);

/* Commit a child of parent as image name: write the layer that w holds (may
 * be empty) and the header of parent's map with changes laid over it.
 * Consumes w. parent NULL: the image has no parent (its base is empty). */
int cf_image_commit(struct cf_store *s, const struct cf_header *parent, const char *name,
                    const struct cf_changes *changes, struct cf_layer_writer *w);

/* Import raw data from fd (size bytes, a multiple of block_size) as a new
 * image with no parent: all-zero blocks become empty extents. */
int cf_image_import(struct cf_store *s, int fd, const char *name, uint32_t block_size,
                    cf_progress_fn progress, void *ctx);

/* Commit fd's contents as a child of parent: stores only blocks that differ
 * from parent (all-zero ones as empty). fd must be parent's size. */
int cf_image_commit_raw(struct cf_store *s, struct cf_image *parent, int fd, const char *name,
                        cf_progress_fn progress, void *ctx);

/* Write the image to fd (a regular file, truncated to the image size):
 * empty extents become holes. */
int cf_image_export(const struct cf_image *img, int fd, cf_progress_fn progress, void *ctx);

/* The same three, saying in *st (may be NULL) how many bytes were shared
 * with their source by reflink (FICLONERANGE, on one file system with
 * reflink, for runs aligned to its block size: a layer's runs with the
 * input file, or the output's with the layers) and how many were copied. */
struct cf_clone_stats;
int cf_image_import_stats(struct cf_store *s, int fd, const char *name, uint32_t block_size,
                          struct cf_clone_stats *st, cf_progress_fn progress, void *ctx);
int cf_image_commit_raw_stats(struct cf_store *s, struct cf_image *parent, int fd, const char *name,
                              struct cf_clone_stats *st, cf_progress_fn progress, void *ctx);
int cf_image_export_stats(const struct cf_image *img, int fd, struct cf_clone_stats *st,
                          cf_progress_fn progress, void *ctx);

#endif
