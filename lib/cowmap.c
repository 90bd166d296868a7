/* Mapping an image into memory copy-on-write (include/cowfork/cowmap.h).
 *
 * Reserve first: the whole range is taken in one anonymous MAP_NORESERVE
 * mapping before any layer is mapped, so the image gets one contiguous range
 * that nothing else can land in between our calls, empty extents are simply
 * left as they are (untouched anonymous memory reads as zeros and costs
 * nothing), and every layer extent is then a MAP_FIXED replacement inside
 * memory we own. Unmapping is one munmap of the whole range.
 *
 * What is shared: a layer extent is mapped MAP_PRIVATE from its layer file,
 * so every process mapping the image (or forked from one that did) reads the
 * same page-cache pages; a write faults in a private anonymous copy of that
 * one page and never reaches the file. Layers stay immutable.
 *
 * The fallback: a file mapping needs the image address and the file offset
 * to be congruent modulo the page size. With block_size < page size an
 * extent may start or end mid-page, or sit at a file offset that is not
 * congruent with its address at all. Then only the page-aligned interior is
 * mapped, and the partial pages at either end (which may be shared with the
 * neighbouring extent) are read in with pread: they are anonymous memory of
 * the reservation, so neighbours can fill their parts of one page without
 * disturbing each other. An extent that is not congruent is read in whole,
 * as is everything under CF_COWMAP_COPY, and a layer whose file cannot be
 * mapped (ENODEV, EACCES, EINVAL from mmap). Read-in bytes are private to
 * the mapper: they are counted in copied_bytes.
 *
 * Each extent maps at most one interior, so nmaps <= the number of extents.
 * Every mapped extent costs a VMA (two with the anonymous gap after it) and
 * the kernel's vm.max_map_count (65530 by default) bounds them per process,
 * so at most CF_COWMAP_MAX_MAPS extents are mapped: in a more fragmented
 * image the smallest extents are read in (a 4 KiB pread costs about what an
 * mmap call does; only sharing is lost, and only for those). No state outside
 * the struct. */
#include <string.h>
#include <sys/mman.h>

#include "cowfork/cowmap.h"
#include "internal.h"

/* Messages name the API, not the static helper that failed. */
#define fail(errnum, ...) cf_fail_("cf_cowmap_map", (errnum), __VA_ARGS__)

static size_t page_size(void)
{
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

/* Read n bytes of layer fd at file offset off into p (anonymous memory). */
static int read_in(int fd, uint32_t layer, char *p, uint64_t n, uint64_t off)
{
  ssize_t r = n ? cf_pread_full(fd, p, n, off) : 0;
  if (r != (ssize_t)n)
    return fail(r < 0 ? errno : EIO, "read layer %u at %llu (+%llu): %s", layer,
                (unsigned long long)off, (unsigned long long)n,
                r < 0 ? strerror(errno) : "short read");
  return 0;
}

static int cmp_desc(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* The least block count an extent needs to be mapped rather than read in,
 * so that at most CF_COWMAP_MAX_MAPS extents are mapped. */
static int map_threshold(const struct cf_header *h, uint64_t *min_blocks)
{
  uint64_t n = 0;
  *min_blocks = 1;
  for (uint64_t i = 0; i < h->nextents; i++)
    n += h->extents[i].layer != CF_LAYER_EMPTY;
  if (n <= CF_COWMAP_MAX_MAPS)
    return 0;
  uint64_t *c = malloc(n * sizeof *c), k = 0;
  if (!c)
    return fail(ENOMEM, "out of memory");
  for (uint64_t i = 0; i < h->nextents; i++)
    if (h->extents[i].layer != CF_LAYER_EMPTY)
      c[k++] = h->extents[i].count;
  qsort(c, n, sizeof *c, cmp_desc);
  *min_blocks = c[CF_COWMAP_MAX_MAPS] + 1; /* strictly larger than the first one left out */
  free(c);
  return 0;
}

/* One layer extent at image byte ioff, file byte foff, n bytes. Extents of
 * fewer than min_blocks blocks are read in. */
static int map_extent(const struct cf_image *img, const struct cf_extent *e, char *base,
                      unsigned flags, uint64_t min_blocks, size_t pg, struct cf_cowmap *m)
{
  const struct cf_header *h = cf_image_header(img);
  int fd = cf_image_layer_fd(img, e->layer);
  uint64_t ioff = e->first * h->block_size, foff = e->offset * h->block_size;
  uint64_t n = e->count * h->block_size;
  /* The page-aligned interior [a, b) of the extent, in image bytes. */
  uint64_t a = (ioff + pg - 1) / pg * pg, b = (ioff + n) / pg * pg;
  if ((flags & CF_COWMAP_COPY) || e->count < min_blocks || (ioff - foff) % pg != 0 || a >= b) {
    if (read_in(fd, e->layer, base + ioff, n, foff) < 0)
      return -1;
    m->copied_bytes += n;
    return 0;
  }
  void *p = mmap(base + a, b - a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                 (off_t)(foff + (a - ioff)));
  if (p == MAP_FAILED) {
    int err = errno;
    if (err != ENODEV && err != EACCES && err != EINVAL)
      return fail(err, "mmap layer %u at %llu (+%llu) after %u mappings: %s%s", e->layer,
                  (unsigned long long)(foff + (a - ioff)), (unsigned long long)(b - a), m->nmaps,
                  strerror(err), err == ENOMEM ? " (too fragmented for vm.max_map_count?)" : "");
    /* The file cannot be mapped: the reservation is still there, read it all. */
    if (read_in(fd, e->layer, base + ioff, n, foff) < 0)
      return -1;
    m->copied_bytes += n;
    return 0;
  }
  m->nmaps++;
  m->mapped_bytes += b - a;
  /* The partial pages at either end: anonymous, shared with neighbours. */
  if (read_in(fd, e->layer, base + ioff, a - ioff, foff) < 0 ||
      read_in(fd, e->layer, base + b, ioff + n - b, foff + (b - ioff)) < 0)
    return -1;
  m->copied_bytes += (a - ioff) + (ioff + n - b);
  return 0;
}

int cf_cowmap_map(const struct cf_image *img, void *addr, unsigned flags, struct cf_cowmap *m)
{
  size_t pg = page_size();
  if (!img || !m)
    return cf_fail(EINVAL, "no image or no result given");
  memset(m, 0, sizeof *m);
  if (flags & ~CF_COWMAP_COPY)
    return cf_fail(EINVAL, "unknown flags %#x", flags & ~CF_COWMAP_COPY);
  if ((uintptr_t)addr % pg)
    return cf_fail(EINVAL, "address %p is not aligned to the page size %zu", addr, pg);
  const struct cf_header *h = cf_image_header(img);
  if (cf_image_check(img) < 0) /* no byte of a layer mapped before its checksum matched */
    return -1;
  if (h->size > SIZE_MAX - pg)
    return cf_fail(ENOMEM, "image of %llu bytes does not fit in the address space",
                   (unsigned long long)h->size);
  size_t len = (h->size + pg - 1) / pg * pg;
  if (addr && (uintptr_t)addr > UINTPTR_MAX - len)
    return cf_fail(EINVAL, "range at %p of %zu bytes wraps around", addr, len);

  uint64_t min_blocks;
  if (map_threshold(h, &min_blocks) < 0)
    return -1;
  char *base = mmap(addr, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (addr ? MAP_FIXED : 0), -1, 0);
  if (base == MAP_FAILED)
    return cf_fail(errno, "reserve %zu bytes at %p: %m", len, addr);

  for (uint64_t i = 0; i < h->nextents; i++) {
    const struct cf_extent *e = &h->extents[i];
    if (e->layer == CF_LAYER_EMPTY) {
      m->empty_bytes += e->count * h->block_size;
      continue;
    }
    if (map_extent(img, e, base, flags, min_blocks, pg, m) < 0) {
      int err = errno;
      if (!addr)
        munmap(base, len);
      else /* The caller's range: drop our layer mappings, leave it reserved. */
        mmap(base, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      memset(m, 0, sizeof *m);
      errno = err;
      return -1;
    }
  }
  m->addr = base;
  m->len = len;
  return 0;
}

int cf_cowmap_unmap(struct cf_cowmap *m)
{
  if (!m || !m->addr)
    return 0;
  if (munmap(m->addr, m->len) < 0)
    return cf_fail(errno, "munmap %p (+%zu): %m", m->addr, m->len);
  memset(m, 0, sizeof *m);
  return 0;
}
