/* Mapping an image into memory copy-on-write. */
#ifndef COWFORK_COWMAP_H
#define COWFORK_COWMAP_H

#include <stddef.h>
#include <stdint.h>

#include "cowfork/image.h"

struct cf_cowmap {
  void *addr;            /* start of the mapping: the image's byte 0 */
  size_t len;            /* image size rounded up to the page size */
  uint64_t mapped_bytes; /* bytes mapped MAP_PRIVATE from layer files */
  uint64_t copied_bytes; /* bytes read in because their layer could not be mapped */
  uint64_t empty_bytes;  /* bytes of empty extents: anonymous zero memory */
  unsigned nmaps;        /* mmap calls made for layer extents */
};

/* At most this many layer extents are mapped (each costs the process one or
 * two VMAs, and vm.max_map_count is 65530 by default). A more fragmented
 * image has its smallest extents read in instead, reported in copied_bytes. */
#define CF_COWMAP_MAX_MAPS 8192

#define CF_COWMAP_COPY 1u /* never map layers: read every extent in (for tests, benchmarks) */

/* Map img into one contiguous range, readable and writable, private: every
 * layer extent is mapped MAP_PRIVATE|MAP_FIXED from its layer file (all
 * mappers share the page cache; a writer gets private copies and the layer
 * never changes), empty extents stay anonymous zero memory; an extent whose
 * layer offset or image offset is not page-aligned is read in instead.
 * addr NULL: the kernel chooses; otherwise the range [addr, addr+len) (page
 * aligned) is replaced, as by MAP_FIXED. Costs O(extents) system calls, not
 * O(size). The layer fds may be closed afterwards. */
int cf_cowmap_map(const struct cf_image *img, void *addr, unsigned flags, struct cf_cowmap *m);

/* Unmap what cf_cowmap_map mapped. */
int cf_cowmap_unmap(struct cf_cowmap *m);

#endif
