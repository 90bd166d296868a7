/* The store: a directory of immutable layers and named images.
 *
 *   DIR/layers/ID   layer data (packed blocks), read-only once written
 *   DIR/images/NAME an image header, replaced only by rename
 *   DIR/tmp/        files being written; anything here is garbage after a crash
 *   DIR/lock        flock: shared while adding layers and images, exclusive for gc
 */
#ifndef COWFORK_STORE_H
#define COWFORK_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cowfork/header.h"

struct cf_store;

/* Open the store at dir, creating its directories if needed. A store is
 * private to its owner (directories 0700, files 0600, immutable ones 0400,
 * whatever the umask); one that others could read (an older cowfork's) is
 * made private here, and refused (EPERM) if it belongs to another user. */
struct cf_store *cf_store_open(const char *dir);
/* How many entries cf_store_open narrowed to make the store private (0 when
 * it was private already), and the top directory's mode before: for the
 * front end to say once. */
unsigned cf_store_made_private(const struct cf_store *s, unsigned *old_mode);
void cf_store_close(struct cf_store *s);
const char *cf_store_dir(const struct cf_store *s);

/* Image names: 1-200 of [A-Za-z0-9._-], not starting with '.'. -1 EINVAL if not. */
int cf_store_check_name(const char *name);

/* Path of a layer file (into buf of size len). */
int cf_store_layer_path(const struct cf_store *s, const uint8_t id[16], char *buf, size_t len);

/* Read and parse the header of a named image (ENOENT if there is none). */
struct cf_header *cf_store_get_header(struct cf_store *s, const char *name);

/* Store h as image name: temp file, fsync, renamed into place, directory
 * fsync'ed. EEXIST if name exists. Every layer h references must exist. */
int cf_store_put_header(struct cf_store *s, const char *name, const struct cf_header *h);

/* The names of all images, sorted (a malloc'ed array of malloc'ed strings). */
int cf_store_list(struct cf_store *s, char ***names, size_t *n);
void cf_store_free_list(char **names, size_t n);

/* Name of the image whose id is id, or NULL if none (malloc'ed). */
char *cf_store_find_id(struct cf_store *s, const uint8_t id[16]);

/* Remove image name, then collect the layers no remaining image uses. Other
 * images sharing its layers are untouched. */
int cf_store_remove(struct cf_store *s, const char *name);

struct cf_gc_stats {
  uint64_t layers_kept, layers_removed, bytes_removed, tmp_removed;
};
/* Mark and sweep: delete every layer no image references and every temp
 * file. Refuses (leaving everything) if any image header cannot be parsed. */
int cf_store_gc(struct cf_store *s, struct cf_gc_stats *stats);

/* Writing a layer. Blocks are appended; finish fsyncs the file, makes it
 * read-only and renames it into layers/ under a fresh id. A writer that is
 * aborted (or a process that dies) leaves only a temp file for gc. The
 * writer holds the store's shared lock until finish/abort, so gc cannot
 * collect the layer before a header references it. */
struct cf_layer_writer;
struct cf_layer_writer *cf_layer_writer_new(struct cf_store *s, uint32_t block_size);
/* Append nblocks blocks from buf; *offset gets the block index they start at. */
int cf_layer_writer_append(struct cf_layer_writer *w, const void *buf, uint64_t nblocks, uint64_t *offset);
uint64_t cf_layer_writer_nblocks(const struct cf_layer_writer *w);
/* The same, where buf holds what src_fd holds at src_off: the blocks are
 * shared with src_fd by FICLONERANGE where the store's file system can
 * (cf_reflink_range; *state as there), else written from buf. The checksum
 * is of buf: src_fd must not change meanwhile. Adds to *st. */
struct cf_clone_stats;
int cf_layer_writer_append_from(struct cf_layer_writer *w, const void *buf, uint64_t nblocks, int src_fd,
                                uint64_t src_off, unsigned *state, struct cf_clone_stats *st, uint64_t *offset);
/* Finish: *ref describes the new layer. With no block appended nothing is
 * written and ref->nblocks is 0. Then frees w (also on failure). */
int cf_layer_writer_finish(struct cf_layer_writer *w, struct cf_layer_ref *ref);
void cf_layer_writer_abort(struct cf_layer_writer *w);

/* Hold the store's shared lock (writers) for the life of the returned token. */
int cf_store_lock_shared(struct cf_store *s);
void cf_store_unlock(int token);

#endif
