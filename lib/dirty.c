/* Dirty scan and commit (include/cowfork/dirty.h).
 *
 * Two ways to ask the kernel about a range of another process's pages, both
 * through /proc/PID/pagemap (ptrace access is checked when it is opened):
 *
 *  PAGEMAP_SCAN (6.7+): one ioctl walks the page tables and returns runs of
 *    pages whose categories match: present / swapped / file / zero pfn /
 *    written (uffd-wp bit clear). The test is done in the kernel: dirty =
 *    (PRESENT or SWAPPED) and, by kind, not FILE and not PFNZERO (file
 *    backend: a written MAP_PRIVATE page is an anonymous copy; a read of an
 *    empty extent maps the zero page), WRITTEN (uffd with WP_ASYNC), or not
 *    PFNZERO (uffd without tracking). Cost: the page-table walk, nothing per
 *    clean page beyond that.
 *  PAGEMAP: read the 64-bit entry of every page: bit 63 present, 62 swapped,
 *    61 file page (or shared anonymous), 57 uffd-wp, bits 0-54 the pfn (zero
 *    without CAP_SYS_ADMIN). The zero page is recognised by its pfn, found
 *    once by probing pages of our own (a constant of the running kernel,
 *    computed once: the only static in here; see probe_zero).
 *
 * Kernels without a zero page for read faults (PVM's pvm_no_zero_page=1):
 * a read of an empty extent of the file backend allocates a private zeroed
 * page whose page-table entry is made exactly like a written one (present,
 * anonymous, dirty; soft-dirty is set by the same pte_mkdirty), so no kind
 * can tell it from a write: CF_DIRTY_ANON reports it. Telling them apart
 * needs the image (an all-zero page over an empty extent is unchanged, the
 * same page over data is a write of zeros), which is what the commit does
 * (it stores nothing for it) and what a reset's comparison with the
 * template does (it copies nothing).
 *
 * Both are tested against each other and against what a child wrote
 * (tests/unit/dirty.c).
 *
 * Commit: dirty pages become block ranges (a block larger than a page is
 * read whole), known-zero pages become empty where not dirty; a tracker
 * over the image's blocks (READ beats ZERO) gives both lists in order, and
 * a merged ascending walk feeds cf_changes_add and the layer writer. Blocks
 * are read from the mapping itself when it is ours, with process_vm_readv
 * in chunks of CHUNK otherwise; runs of stored blocks are one append each. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "cowfork/dirty.h"
#include "cowfork/tracker.h"
#include "cowfork/uffd.h"
#include "cowfork/zero.h"
#include "internal.h"
#include "mem_compat.h"

#define VEC 1024              /* page_region entries per PAGEMAP_SCAN call */
#define PM_CHUNK 65536        /* pagemap entries per read */
#define CHUNK (4u << 20)      /* bytes read from the mapping at once */

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define PM_UFFD_WP (1ull << 57)
#define PM_PFN ((1ull << 55) - 1)

static size_t page_size(void)
{
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

int cf_dirty_add(struct cf_dirty *d, uint64_t first, uint64_t count)
{
  if (count == 0)
    return 0;
  if (d->n) {
    struct cf_run *l = &d->v[d->n - 1];
    if (first < l->first + l->count)
      return cf_fail(EINVAL, "run %llu is not after the last one", (unsigned long long)first);
    if (first == l->first + l->count) {
      l->count += count;
      d->pages += count;
      return 0;
    }
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? 2 * d->cap : 64;
    struct cf_run *v = realloc(d->v, cap * sizeof *v);
    if (!v)
      return cf_fail(ENOMEM, "out of memory");
    d->v = v;
    d->cap = cap;
  }
  d->v[d->n++] = (struct cf_run){first, count};
  d->pages += count;
  return 0;
}

void cf_dirty_free(struct cf_dirty *d)
{
  free(d->v);
  memset(d, 0, sizeof *d);
}

static int open_pagemap(pid_t pid)
{
  char p[64];
  if (pid)
    snprintf(p, sizeof p, "/proc/%d/pagemap", (int)pid);
  else
    snprintf(p, sizeof p, "/proc/self/pagemap");
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "%s: %m", p);
  return fd;
}

bool cf_dirty_have_scan(void)
{
  CLEANUP_CLOSE int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  static char probe[1];
  struct page_region r;
  struct pm_scan_arg a = {.size = sizeof a, .start = (uintptr_t)probe & ~(uintptr_t)4095,
                          .end = ((uintptr_t)probe & ~(uintptr_t)4095) + 4096,
                          .vec = (uintptr_t)&r, .vec_len = 1,
                          .category_anyof_mask = PAGE_IS_PRESENT, .return_mask = PAGE_IS_PRESENT};
  return ioctl(fd, PAGEMAP_SCAN, &a) >= 0;
}

static int scan_ioctl(int fd, uintptr_t start, uintptr_t end, enum cf_dirty_kind kind,
                      struct cf_dirty *d)
{
  size_t pg = page_size();
  struct page_region vec[VEC];
  struct pm_scan_arg a = {.size = sizeof a, .vec = (uintptr_t)vec, .vec_len = VEC,
                          .category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                          .return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED};
  switch (kind) {
  case CF_DIRTY_ANON:
    a.category_mask = a.category_inverted = PAGE_IS_FILE | PAGE_IS_PFNZERO;
    break;
  case CF_DIRTY_WRITTEN:
    a.category_mask = PAGE_IS_WRITTEN;
    break;
  case CF_DIRTY_PRESENT:
    a.category_mask = a.category_inverted = PAGE_IS_PFNZERO;
    break;
  case CF_DIRTY_RESIDENT:
    break;
  }
  for (uintptr_t at = start; at < end;) {
    a.start = at;
    a.end = end;
    a.walk_end = 0;
    long n = ioctl(fd, PAGEMAP_SCAN, &a);
    if (n < 0)
      return cf_fail(errno, "PAGEMAP_SCAN [%#lx, %#lx): %m", (unsigned long)at, (unsigned long)end);
    for (long i = 0; i < n; i++) {
      /* A call that fills the vector may report a region again from where
       * its walk stopped: keep only what is new. */
      uint64_t a0 = (vec[i].start - start) / pg, a1 = (vec[i].end - start) / pg;
      uint64_t last = d->n ? d->v[d->n - 1].first + d->v[d->n - 1].count : 0;
      if (d->n && a0 < last)
        a0 = last;
      if (a1 > a0 && cf_dirty_add(d, a0, a1 - a0) < 0)
        return -1;
    }
    if (a.walk_end <= at)
      return cf_fail(EIO, "PAGEMAP_SCAN made no progress at %#lx", (unsigned long)at);
    at = a.walk_end;
  }
  return 0;
}

/* The kernel's shared zero page, probed once (the only state in here):
 * whether a read fault on untouched private anonymous memory maps it
 * (Linux's usual way; a PVM guest booted with pvm_no_zero_page=1 allocates
 * a private zeroed page instead), and its pfn for the pagemap method (0:
 * unknown: pfns read as 0 without CAP_SYS_ADMIN, or no way to get the zero
 * page mapped here). A pfn is taken only when two distinct pages map it at
 * once: a page that was allocated for the probe and freed again must never
 * be taken for the zero page, or the written page that reuses it next would
 * be missed. Where reads do not map it, UFFDIO_ZEROPAGE still may (it does
 * on 6.18 with pvm_no_zero_page=1), and a uffd client's empty pages are
 * installed that way: a userfaultfd of our own asks for it. */
static struct {
  bool read_maps_zero;
  uint64_t zero_pfn;
} zp;

/* Pagemap entries of the two pages at p: both present with pfns
 * visible and equal: that pfn; else 0. *distinct: visible and different. */
static uint64_t same_pfn(int fd, const char *p, bool *distinct)
{
  size_t pg = page_size();
  uint64_t e[2] = {0, 0};
  *distinct = false;
  if (pread(fd, e, sizeof e, (uintptr_t)p / pg * 8) != sizeof e || !(e[0] & e[1] & PM_PRESENT))
    return 0;
  uint64_t a = e[0] & PM_PFN, b = e[1] & PM_PFN;
  *distinct = a && b && a != b;
  return a && a == b ? a : 0;
}

/* Rss of our own mapping at p from /proc/self/smaps, in kB; -1 unknown. */
static long smaps_rss(const void *p)
{
  FILE *f = fopen("/proc/self/smaps", "re");
  if (!f)
    return -1;
  char line[512], want[32];
  snprintf(want, sizeof want, "%lx-", (unsigned long)(uintptr_t)p);
  long rss = -1;
  bool in = false;
  while (fgets(line, sizeof line, f)) {
    if (!in)
      in = strncmp(line, want, strlen(want)) == 0;
    else if (strncmp(line, "Rss:", 4) == 0) {
      rss = strtol(line + 4, NULL, 10);
      break;
    }
  }
  fclose(f);
  return rss;
}

static void probe_zero(void)
{
  size_t pg = page_size();
  int saved = errno;
  zp.read_maps_zero = true; /* unknown stays Linux's default */
  CLEANUP_CLOSE int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || fd < 0)
    goto out;
  madvise(p, 2 * pg, MADV_NOHUGEPAGE);
  (void)*(volatile char *)p;
  (void)*(volatile char *)(p + pg);
  bool distinct;
  uint64_t pfn = same_pfn(fd, p, &distinct);
  struct page_region r[2];
  struct pm_scan_arg a = {.size = sizeof a, .start = (uintptr_t)p, .end = (uintptr_t)p + 2 * pg,
                          .vec = (uintptr_t)r, .vec_len = 2, .category_mask = PAGE_IS_PFNZERO,
                          .return_mask = PAGE_IS_PFNZERO};
  long n = ioctl(fd, PAGEMAP_SCAN, &a);
  if (n >= 0)
    zp.read_maps_zero = n == 1 && r[0].start == (uintptr_t)p && r[0].end == (uintptr_t)p + 2 * pg;
  else if (pfn || distinct)
    zp.read_maps_zero = pfn != 0;
  else { /* no PAGEMAP_SCAN, pfns hidden: the zero page is not counted in Rss */
    long rss = smaps_rss(p);
    if (rss >= 0)
      zp.read_maps_zero = rss == 0;
  }
  if (zp.read_maps_zero) {
    zp.zero_pfn = pfn;
    goto out;
  }
  if (!distinct) /* pfns hidden */
    goto out;
  munmap(p, 2 * pg);
  p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    goto out;
  int u = cf_uffd_open(0, NULL);
  if (u >= 0) {
    struct uffdio_zeropage z = {.range = {.start = (uintptr_t)p, .len = 2 * pg}};
    if (cf_uffd_register(u, p, 2 * pg, 0) == 0 && ioctl(u, UFFDIO_ZEROPAGE, &z) == 0)
      zp.zero_pfn = same_pfn(fd, p, &distinct);
    close(u);
  }
out:
  if (p != MAP_FAILED)
    munmap(p, 2 * pg);
  errno = saved;
}

static pthread_once_t zp_once = PTHREAD_ONCE_INIT;

bool cf_dirty_shared_zero_page(void)
{
  pthread_once(&zp_once, probe_zero);
  return zp.read_maps_zero;
}

static int scan_pagemap(int fd, uintptr_t start, uintptr_t end, enum cf_dirty_kind kind,
                        struct cf_dirty *d)
{
  pthread_once(&zp_once, probe_zero);
  uint64_t zpfn = zp.zero_pfn;
  size_t pg = page_size();
  CLEANUP_FREE uint64_t *e = malloc(PM_CHUNK * sizeof *e);
  if (!e)
    return cf_fail(ENOMEM, "out of memory");
  uint64_t npages = (end - start) / pg, run = 0, runlen = 0;
  for (uint64_t i = 0; i < npages;) {
    size_t n = npages - i < PM_CHUNK ? npages - i : PM_CHUNK;
    ssize_t r = cf_pread_full(fd, e, n * 8, (start / pg + i) * 8);
    if (r != (ssize_t)(n * 8))
      return cf_fail(r < 0 ? errno : EIO, "read pagemap: %s", r < 0 ? strerror(errno) : "short");
    for (size_t k = 0; k < n; k++) {
      uint64_t v = e[k];
      bool dirty;
      bool zero = zpfn && (v & PM_PRESENT) && (v & PM_PFN) == zpfn;
      switch (kind) {
      case CF_DIRTY_ANON:
        dirty = (v & PM_SWAPPED) || ((v & PM_PRESENT) && !(v & PM_FILE) && !zero);
        break;
      case CF_DIRTY_WRITTEN:
        dirty = (v & (PM_PRESENT | PM_SWAPPED)) && !(v & PM_UFFD_WP);
        break;
      case CF_DIRTY_PRESENT:
        dirty = (v & PM_SWAPPED) || ((v & PM_PRESENT) && !zero);
        break;
      default:
        dirty = v & (PM_SWAPPED | PM_PRESENT);
        break;
      }
      if (dirty) {
        if (!runlen)
          run = i + k;
        runlen++;
      } else if (runlen) {
        if (cf_dirty_add(d, run, runlen) < 0)
          return -1;
        runlen = 0;
      }
    }
    i += n;
  }
  return runlen ? cf_dirty_add(d, run, runlen) : 0;
}

int cf_dirty_scan(pid_t pid, const void *addr, size_t len, enum cf_dirty_kind kind,
                  enum cf_dirty_method method, struct cf_dirty *d)
{
  size_t pg = page_size();
  uintptr_t start = (uintptr_t)addr;
  if (start % pg || len % pg || start + len < start)
    return cf_fail(EINVAL, "range %p (+%zu) is not page-aligned", addr, len);
  if (kind > CF_DIRTY_RESIDENT || method > CF_DIRTY_PAGEMAP)
    return cf_fail(EINVAL, "bad kind %d or method %d", kind, method);
  CLEANUP_CLOSE int fd = open_pagemap(pid);
  if (fd < 0)
    return -1;
  if (method == CF_DIRTY_SCAN || method == CF_DIRTY_AUTO) {
    size_t n0 = d->n;
    uint64_t p0 = d->pages;
    if (scan_ioctl(fd, start, start + len, kind, d) == 0)
      return 0;
    if (method == CF_DIRTY_SCAN || (errno != ENOTTY && errno != EINVAL))
      return -1;
    d->n = n0; /* no PAGEMAP_SCAN here: fall back */
    d->pages = p0;
  }
  return scan_pagemap(fd, start, start + len, kind, d);
}

/* --- Commit ------------------------------------------------------------------ */

enum { UNTOUCHED, ZERO, READ };

static int runs_add(void *ctx, uint64_t first, uint64_t count)
{
  struct cf_dirty *d = ctx;
  return cf_dirty_add(d, first, count);
}

struct committer {
  const struct cf_image *parent;
  const struct cf_header *h;
  pid_t pid;
  const char *addr;
  struct cf_changes ch;
  struct cf_layer_writer *w;
  unsigned flags;
  char *buf, *old;
  struct cf_dirty_stats st;
};

/* Blocks [first, first+n) read as zeros: empty where the parent has data. */
static int zero_blocks(struct committer *c, uint64_t first, uint64_t n)
{
  const struct cf_header *h = c->h;
  int64_t i = cf_header_lookup(h, first);
  if (i < 0)
    return -1;
  for (uint64_t end = first + n; first < end; i++) {
    const struct cf_extent *e = &h->extents[i];
    uint64_t stop = e->first + e->count < end ? e->first + e->count : end;
    if (e->layer != CF_LAYER_EMPTY) {
      if (cf_changes_add(&c->ch, first, stop - first, CF_LAYER_EMPTY, 0) < 0)
        return -1;
      c->st.blocks_zeroed += stop - first;
    } else
      c->st.blocks_same += stop - first;
    first = stop;
  }
  return 0;
}

static bool parent_empty(const struct cf_header *h, uint64_t block)
{
  int64_t i = cf_header_lookup(h, block);
  return i >= 0 && h->extents[i].layer == CF_LAYER_EMPTY;
}

/* Blocks [first, first+n) are read from the mapping and judged. */
static int read_blocks(struct committer *c, uint64_t first, uint64_t n)
{
  uint32_t bs = c->h->block_size;
  uint64_t per = CHUNK / bs ? CHUNK / bs : 1;
  while (n) {
    uint64_t k = n < per ? n : per;
    const char *data;
    size_t len = k * bs;
    uint64_t off = first * bs;
    if (off + len > c->h->size) /* never past the image */
      len = c->h->size - off;
    if (!c->pid)
      data = c->addr + off;
    else {
      struct iovec l = {c->buf, len}, r = {(void *)(c->addr + off), len};
      ssize_t got = process_vm_readv(c->pid, &l, 1, &r, 1, 0);
      if (got != (ssize_t)len)
        return cf_fail(got < 0 ? errno : EIO, "read %zu bytes at %p of process %d: %s", len,
                       (void *)(c->addr + off), (int)c->pid, got < 0 ? strerror(errno) : "short");
      data = c->buf;
    }
    if ((c->flags & CF_DIRTY_COMPARE) && cf_image_read(c->parent, c->old, len, off) < 0)
      return -1;
    c->st.blocks_read += k;
    for (uint64_t i = 0; i < k;) {
      const char *b = data + i * bs;
      if (cf_is_zero(b, bs)) {
        if (parent_empty(c->h, first + i))
          c->st.blocks_same++;
        else {
          if (cf_changes_add(&c->ch, first + i, 1, CF_LAYER_EMPTY, 0) < 0)
            return -1;
          c->st.blocks_zeroed++;
        }
        i++;
        continue;
      }
      if ((c->flags & CF_DIRTY_COMPARE) && memcmp(b, c->old + i * bs, bs) == 0) {
        c->st.blocks_same++;
        i++;
        continue;
      }
      uint64_t j = i + 1;
      while (j < k && !cf_is_zero(data + j * bs, bs) &&
             !((c->flags & CF_DIRTY_COMPARE) && memcmp(data + j * bs, c->old + j * bs, bs) == 0))
        j++;
      uint64_t loff;
      if (cf_layer_writer_append(c->w, b, j - i, &loff) < 0 ||
          cf_changes_add(&c->ch, first + i, j - i, CF_LAYER_NEW, loff) < 0)
        return -1;
      c->st.blocks_stored += j - i;
      i = j;
    }
    first += k;
    n -= k;
  }
  return 0;
}

int cf_dirty_commit(struct cf_store *s, const struct cf_image *parent, const char *name, pid_t pid,
                    const void *addr, const struct cf_dirty *dirty, const struct cf_dirty *zeros,
                    unsigned flags, struct cf_dirty_stats *st)
{
  size_t pg = page_size();
  if (!s || !parent || !name || !addr || !dirty)
    return cf_fail(EINVAL, "bad arguments");
  const struct cf_header *h = cf_image_header(parent);
  uint32_t bs = h->block_size;
  uint64_t nb = cf_header_nblocks(h);
  struct cf_tracker *t = cf_tracker_new(nb, 3);
  if (!t)
    return -1;
  struct committer c = {.parent = parent, .h = h, .pid = pid == getpid() ? 0 : pid, .addr = addr,
                        .flags = flags};
  struct cf_dirty zr = {0}, rd = {0};
  int ret = -1;
  /* Pages to blocks: zero runs keep only whole blocks, dirty runs round out. */
  for (size_t i = 0; zeros && i < zeros->n; i++) {
    uint64_t a = (zeros->v[i].first * pg + bs - 1) / bs;
    uint64_t b = (zeros->v[i].first + zeros->v[i].count) * pg / bs;
    if (b > nb)
      b = nb;
    if (a < b && cf_tracker_set_range(t, a, b - a, ZERO) < 0)
      goto out;
  }
  for (size_t i = 0; i < dirty->n; i++) {
    uint64_t a = dirty->v[i].first * pg / bs;
    uint64_t b = ((dirty->v[i].first + dirty->v[i].count) * pg + bs - 1) / bs;
    if (b > nb)
      b = nb;
    if (a < b && cf_tracker_set_range(t, a, b - a, READ) < 0)
      goto out;
  }
  /* A partial zero block that is not dirty: its other pages are unknown,
   * so it is read as a whole. */
  for (size_t i = 0; zeros && i < zeros->n; i++) {
    uint64_t a = zeros->v[i].first * pg / bs, b = (zeros->v[i].first + zeros->v[i].count) * pg;
    uint64_t bl = (b + bs - 1) / bs;
    if (zeros->v[i].first * pg % bs && a < nb && cf_tracker_get(t, a) == UNTOUCHED)
      cf_tracker_set_range(t, a, 1, READ);
    if (b % bs && bl - 1 < nb && cf_tracker_get(t, bl - 1) == UNTOUCHED)
      cf_tracker_set_range(t, bl - 1, 1, READ);
  }
  if (cf_tracker_foreach_run(t, ZERO, runs_add, &zr) != 0 ||
      cf_tracker_foreach_run(t, READ, runs_add, &rd) != 0)
    goto out;
  if (!(c.buf = aligned_alloc(4096, CHUNK < bs ? bs : CHUNK)) ||
      ((flags & CF_DIRTY_COMPARE) && !(c.old = aligned_alloc(4096, CHUNK < bs ? bs : CHUNK)))) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  if (!(c.w = cf_layer_writer_new(s, bs)))
    goto out;
  for (size_t i = 0, j = 0; i < zr.n || j < rd.n;) {
    if (j >= rd.n || (i < zr.n && zr.v[i].first < rd.v[j].first)) {
      if (zero_blocks(&c, zr.v[i].first, zr.v[i].count) < 0)
        goto out;
      i++;
    } else {
      if (read_blocks(&c, rd.v[j].first, rd.v[j].count) < 0)
        goto out;
      j++;
    }
  }
  struct cf_layer_writer *w = c.w;
  c.w = NULL;
  ret = cf_image_commit(s, h, name, &c.ch, w);
  if (st)
    *st = c.st;
out:
  if (c.w)
    cf_layer_writer_abort(c.w);
  cf_changes_free(&c.ch);
  cf_dirty_free(&zr);
  cf_dirty_free(&rd);
  free(c.buf);
  free(c.old);
  cf_tracker_free(t);
  return ret;
}
