/* Image headers: the metadata and the flattened extent map of one image
 * (docs/format.md). Pure functions over memory: no files here, so the parser
 * can be fuzzed on its own. */
#ifndef COWFORK_HEADER_H
#define COWFORK_HEADER_H

#include <stddef.h>
#include <stdint.h>

#define CF_HEADER_VERSION 1
#define CF_MIN_BLOCK_SIZE 512u
#define CF_MAX_BLOCK_SIZE (64u << 20)
#define CF_LAYER_EMPTY UINT32_MAX     /* extent reads as zeros, stored nowhere */
#define CF_LAYER_NEW (UINT32_MAX - 1) /* in a change list: the layer being committed */

/* A run of blocks [first, first+count) held by layers[layer] starting at
 * block `offset` of that layer, or empty (layer == CF_LAYER_EMPTY, offset 0). */
struct cf_extent {
  uint64_t first;
  uint64_t count;
  uint64_t offset;
  uint32_t layer;
};

/* A layer the image references: its id (the file name in the store), its
 * length in blocks and the XXH3-64 of its whole contents. */
struct cf_layer_ref {
  uint8_t id[16];
  uint64_t nblocks;
  uint64_t checksum;
};

struct cf_header {
  uint64_t size;       /* bytes, a multiple of block_size, > 0 */
  uint32_t block_size; /* a power of two in [CF_MIN_BLOCK_SIZE, CF_MAX_BLOCK_SIZE] */
  uint64_t generation; /* 0 for an image with no parent, parent's + 1 otherwise */
  uint8_t id[16];      /* this image; also the id of the layer it wrote, if any */
  uint8_t parent[16];  /* all zero when there is no parent */
  uint32_t nlayers;
  struct cf_layer_ref *layers;
  uint64_t nextents;
  struct cf_extent *extents; /* sorted, contiguous, covering [0, size/block_size) */
};

static inline uint64_t cf_header_nblocks(const struct cf_header *h) { return h->size / h->block_size; }

/* A header for an image of size bytes whose every block is empty, with a
 * fresh id and no parent. NULL with cf_error() on bad size/block size. */
struct cf_header *cf_header_new_empty(uint64_t size, uint32_t block_size);

void cf_header_free(struct cf_header *h);

/* Parse and validate an on-disk header: magic, version, checksum, sizes,
 * extents sorted with no gap or overlap and covering the image, every layer
 * index valid and every extent inside its layer. NULL with cf_error() (EINVAL
 * for malformed input) describing the first problem found. */
struct cf_header *cf_header_parse(const void *buf, size_t len);

/* The checksum of an on-disk header of len bytes (>= 96): XXH3-64 of the
 * whole buffer with the checksum field (bytes 80-87) taken as zero. */
uint64_t cf_header_checksum(const void *buf, size_t len);

/* Serialize to the on-disk form (malloc'ed, checksum filled in). */
int cf_header_serialize(const struct cf_header *h, void **buf, size_t *len);

/* Index of the extent holding block (one binary search), or -1 (EINVAL)
 * when block is past the end. */
int64_t cf_header_lookup(const struct cf_header *h, uint64_t block);

/* The header of a child of parent: parent's map with the changes laid over
 * it. changes are sorted, non-overlapping, inside the image, each with layer
 * CF_LAYER_EMPTY or CF_LAYER_NEW (offset = block in the new layer). newlayer
 * describes the new layer (ignored when no change uses it); its id becomes
 * the child's id, otherwise the child gets a fresh one. The result is
 * coalesced and references only the layers it uses. Untouched blocks keep
 * their parent extents: nothing is read. NULL with cf_error() on bad input. */
struct cf_header *cf_header_derive(const struct cf_header *parent, const struct cf_extent *changes,
                                   size_t nchanges, const struct cf_layer_ref *newlayer);

/* A growing, coalesced list of changes for cf_header_derive. */
struct cf_changes {
  struct cf_extent *v;
  size_t n, cap;
};
/* Append [first, first+count) as layer (CF_LAYER_NEW at offset, or
 * CF_LAYER_EMPTY); merged into the last entry when it continues it. Appends
 * must come in ascending order. -1 (ENOMEM/EINVAL) on failure. */
int cf_changes_add(struct cf_changes *c, uint64_t first, uint64_t count, uint32_t layer, uint64_t offset);
void cf_changes_free(struct cf_changes *c);

/* Text form of a 16-byte id (36 chars + NUL) and back (-1 EINVAL if bad). */
void cf_id_format(const uint8_t id[16], char out[37]);
int cf_id_parse(const char *s, uint8_t id[16]);
int cf_id_is_null(const uint8_t id[16]);

#endif
