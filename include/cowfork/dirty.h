/* Which pages of a mapping were written, and committing them as a child
 * image (docs/memory.md). The mapping may belong to another process (pid):
 * pages are found through /proc/PID/pagemap (its PAGEMAP_SCAN ioctl where
 * the kernel has it, 6.7+, or reading its entries) and read with
 * process_vm_readv, so a paused child never has to cooperate. */
#ifndef COWFORK_DIRTY_H
#define COWFORK_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cowfork/image.h"

/* Runs of pages, ascending, non-overlapping, coalesced; pages counted from
 * the scanned address (for a whole-image mapping: image pages). */
struct cf_run {
  uint64_t first, count;
};
struct cf_dirty {
  struct cf_run *v;
  size_t n, cap;
  uint64_t pages; /* sum of the counts */
};
/* Append [first, first+count), at or after the end of the last run. */
int cf_dirty_add(struct cf_dirty *d, uint64_t first, uint64_t count);
void cf_dirty_free(struct cf_dirty *d);

/* What counts as dirty, by how the mapping was made. */
enum cf_dirty_kind {
  /* file backend (MAP_PRIVATE of layers, anonymous where empty): a page is
   * dirty when present and not a file page nor the shared zero page (a write
   * made it a private anonymous copy), or swapped out. Exact where reads
   * map the zero page; where they do not (cf_dirty_shared_zero_page() is
   * false) a page only read in an empty extent is a private zeroed page,
   * indistinguishable in the page tables from a written one, and is
   * reported too: private memory, but committed as nothing (zero over
   * empty) and equal to the template's bytes for a reset. */
  CF_DIRTY_ANON,
  /* uffd backend with write tracking (UFFD_FEATURE_WP_ASYNC): present or
   * swapped with its uffd write-protect bit cleared by a write. */
  CF_DIRTY_WRITTEN,
  /* uffd backend without tracking: every page installed and not the zero
   * page. A superset: commit it with CF_DIRTY_COMPARE. */
  CF_DIRTY_PRESENT,
  /* Residency, not dirtiness: every page present or swapped, the zero page
   * included (a working set recorded without uffd). */
  CF_DIRTY_RESIDENT,
};

enum cf_dirty_method {
  CF_DIRTY_AUTO,     /* PAGEMAP_SCAN when the kernel has it, else PAGEMAP */
  CF_DIRTY_SCAN,     /* the PAGEMAP_SCAN ioctl on /proc/PID/pagemap */
  CF_DIRTY_PAGEMAP,  /* reading /proc/PID/pagemap's 64-bit entries */
};

/* Whether this kernel has PAGEMAP_SCAN. */
bool cf_dirty_have_scan(void);

/* Whether a read of untouched private anonymous memory maps the kernel's
 * shared zero page (Linux's usual way, and the answer when it cannot be
 * told); false where it allocates a private zeroed page (a PVM guest booted
 * with pvm_no_zero_page=1): there a child's reads of an image's empty
 * extents cost it private memory and CF_DIRTY_ANON reports those pages.
 * Probed once per process. */
bool cf_dirty_shared_zero_page(void);

/* The dirty pages of [addr, addr+len) in process pid (0: this process),
 * appended to d (which should be empty). Needs ptrace access to pid (same
 * user, or root). Without CAP_SYS_ADMIN the PAGEMAP method cannot see page
 * frame numbers and counts zero-page reads as dirty (harmless: they commit as
 * nothing, being zero over empty or compared). */
int cf_dirty_scan(pid_t pid, const void *addr, size_t len, enum cf_dirty_kind kind,
                  enum cf_dirty_method method, struct cf_dirty *d);

#define CF_DIRTY_COMPARE 1u /* store a dirty block only if it differs from the parent */

struct cf_dirty_stats {
  uint64_t blocks_read;    /* blocks read from the mapping */
  uint64_t blocks_stored;  /* written to the new layer */
  uint64_t blocks_zeroed;  /* became empty (zero where the parent has data) */
  uint64_t blocks_same;    /* unchanged: zero over empty, or equal with CF_DIRTY_COMPARE */
};

/* Commit the mapping at addr in process pid (0: this one), which holds
 * parent's contents at its byte 0 as changed by the child, as image name:
 * blocks under dirty pages are read (all-zero ones become empty extents,
 * the rest go into the new layer), pages in zeros (may be NULL: pages known
 * to read as zeros, such as a uffd client's removed pages) become empty
 * where not dirty; everything else keeps the parent's extents. With a block
 * size larger than the page size a dirty page makes its whole block read. */
int cf_dirty_commit(struct cf_store *s, const struct cf_image *parent, const char *name, pid_t pid,
                    const void *addr, const struct cf_dirty *dirty, const struct cf_dirty *zeros,
                    unsigned flags, struct cf_dirty_stats *st);

#endif
