/* Working sets (include/cowfork/mem.h): image pages in first-touch order,
 * saved beside the store's images and used to prefetch.
 *
 * File (little-endian): 64-byte header then count 8-byte page numbers.
 *   0 magic "CFWSET\0\1"   8 version (u32) = 1   12 page size (u32)
 *   16 image id (16)       32 count (u64)        40 XXH3-64 of the entries
 *   48 reserved, zero (16)
 * Written to a temp name, fsync'ed, renamed. Loading checks everything and
 * that the image id is the one asked for: an image replaced under the same
 * name makes the old record stale, never wrong. No state outside the
 * caller's struct. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "cowfork/mem.h"
#include "internal.h"

#define HDR 64
#define MAX_PAGES (UINT64_C(1) << 32)
static const char magic[8] = {'C', 'F', 'W', 'S', 'E', 'T', 0, 1};

static size_t page_size(void)
{
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

int cf_wset_add(struct cf_wset *w, uint64_t page)
{
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 256;
    uint64_t *p = realloc(w->pages, cap * sizeof *p);
    if (!p)
      return cf_fail(ENOMEM, "out of memory");
    w->pages = p;
    w->cap = cap;
  }
  w->pages[w->n++] = page;
  return 0;
}

void cf_wset_free(struct cf_wset *w)
{
  free(w->pages);
  memset(w, 0, sizeof *w);
}

int cf_wset_path(const struct cf_store *s, const char *name, char *buf, size_t len)
{
  if (cf_store_check_name(name) < 0)
    return -1;
  int n = snprintf(buf, len, "%s/wset", cf_store_dir(s));
  if (n < 0 || (size_t)n >= len)
    return cf_fail(ENAMETOOLONG, "store path too long");
  if (cf_private_mkdir(buf) < 0)
    return -1;
  n = snprintf(buf, len, "%s/wset/%s", cf_store_dir(s), name);
  if (n < 0 || (size_t)n >= len)
    return cf_fail(ENAMETOOLONG, "store path too long");
  return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

int cf_wset_save(const char *path, const uint8_t image_id[16], const struct cf_wset *w)
{
  size_t len = HDR + w->n * 8;
  CLEANUP_FREE unsigned char *b = calloc(1, len);
  if (!b)
    return cf_fail(ENOMEM, "out of memory");
  for (size_t i = 0; i < w->n; i++)
    put64(b + HDR + 8 * i, w->pages[i]);
  memcpy(b, magic, 8);
  put32(b + 8, 1);
  put32(b + 12, (uint32_t)page_size());
  memcpy(b + 16, image_id, 16);
  put64(b + 32, w->n);
  put64(b + 40, XXH3_64bits(b + HDR, w->n * 8));
  return cf_write_file_atomic(path, b, len, CF_MODE_FILE, false);
}

int cf_wset_load(const char *path, const uint8_t image_id[16], struct cf_wset *w)
{
  memset(w, 0, sizeof *w);
  CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "%s: %m", path);
  unsigned char h[HDR];
  struct stat st;
  if (fstat(fd, &st) < 0)
    return cf_fail(errno, "%s: %m", path);
  if (cf_pread_full(fd, h, HDR, 0) != HDR || memcmp(h, magic, 8) || get32(h + 8) != 1)
    return cf_fail(EINVAL, "%s: not a working set file", path);
  uint64_t n = get64(h + 32);
  for (int i = 48; i < HDR; i++)
    if (h[i])
      return cf_fail(EINVAL, "%s: reserved bytes are not zero", path);
  if (n > MAX_PAGES || (uint64_t)st.st_size != HDR + n * 8)
    return cf_fail(EINVAL, "%s: %llu entries do not match its size", path, (unsigned long long)n);
  if (get32(h + 12) != page_size())
    return cf_fail(ESTALE, "%s: recorded with page size %u", path, get32(h + 12));
  if (image_id && memcmp(h + 16, image_id, 16))
    return cf_fail(ESTALE, "%s: recorded on another image", path);
  CLEANUP_FREE unsigned char *b = malloc(n * 8 + 1);
  if (!b)
    return cf_fail(ENOMEM, "out of memory");
  if (cf_pread_full(fd, b, n * 8, HDR) != (ssize_t)(n * 8))
    return cf_fail(EIO, "%s: short read", path);
  if (XXH3_64bits(b, n * 8) != get64(h + 40))
    return cf_fail(EINVAL, "%s: checksum mismatch", path);
  if (!(w->pages = malloc((n ? n : 1) * sizeof *w->pages)))
    return cf_fail(ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++)
    w->pages[i] = get64(b + 8 * i);
  w->n = w->cap = n;
  return 0;
}

int cf_wset_from_residency(pid_t pid, const void *addr, size_t len, struct cf_wset *w)
{
  struct cf_dirty d = {0};
  if (cf_dirty_scan(pid, addr, len, CF_DIRTY_RESIDENT, CF_DIRTY_AUTO, &d) < 0)
    return -1;
  int ret = 0;
  for (size_t i = 0; i < d.n && ret == 0; i++)
    for (uint64_t p = d.v[i].first; p < d.v[i].first + d.v[i].count && ret == 0; p++)
      ret = cf_wset_add(w, p);
  cf_dirty_free(&d);
  return ret;
}

int cf_wset_readahead(const struct cf_image *img, const struct cf_wset *w)
{
  const struct cf_header *h = cf_image_header(img);
  size_t pg = page_size();
  /* Pages in order, runs coalesced; each run split at extent boundaries. */
  for (size_t i = 0; i < w->n;) {
    size_t j = i + 1;
    while (j < w->n && w->pages[j] == w->pages[j - 1] + 1)
      j++;
    uint64_t off = w->pages[i] * pg, end = (w->pages[i] + (j - i)) * pg;
    if (end > h->size)
      end = h->size;
    while (off < end) {
      int64_t k = cf_header_lookup(h, off / h->block_size);
      if (k < 0)
        break;
      const struct cf_extent *e = &h->extents[k];
      uint64_t eend = (e->first + e->count) * h->block_size, stop = eend < end ? eend : end;
      if (e->layer != CF_LAYER_EMPTY) {
        uint64_t loff = e->offset * h->block_size + (off - e->first * h->block_size);
        if (posix_fadvise(cf_image_layer_fd(img, e->layer), (off_t)loff, (off_t)(stop - off),
                          POSIX_FADV_WILLNEED) != 0)
          return cf_fail(EIO, "readahead of layer %u failed", e->layer);
      }
      off = stop;
    }
    i = j;
  }
  return 0;
}
