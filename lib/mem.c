/* Memory backends (include/cowfork/mem.h).
 *
 * file: cf_cowmap_map does the work; on top of it transparent huge pages
 * are turned off for the range, because a write into an empty extent
 * (anonymous memory) would otherwise get a private 2 MiB page where the
 * child wrote 4 KiB, and a dirty scan would report all of it. With
 * CF_MEM_PREFETCH the recorded working set is mapped at once
 * (MADV_POPULATE_READ on its runs): the page cache pages it shares become
 * present in this process, so first touches take no fault at all.
 *
 * uffd: an anonymous MAP_NORESERVE range (THP off too: the server installs
 * 4 KiB pages), a userfaultfd with EVENT_REMOVE (so DONTNEED'ed pages read as
 * zeros, not as the image) and, with CF_MEM_TRACK, WP_ASYNC + WP_UNPOPULATED
 * so that every page starts write-protected and a write clears the bit
 * without any message (PAGEMAP_SCAN's PAGE_IS_WRITTEN then finds them). The
 * handshake asks for the server's reply, so map returns only once the server
 * has the region; our copy of the userfaultfd is closed afterwards (the
 * server's keeps the registration alive). With CF_MEM_PIN the process is
 * pinned to the CPU it is running on before the handshake: the server then
 * serves it from its worker on that CPU (include/cowfork/uffd.h), which
 * halves the fault time here but gives up load balancing for the process.
 * No state outside struct cf_mem. */
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "cowfork/mem.h"
#include "cowfork/uffd.h"
#include "internal.h"
#include "mem_compat.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static size_t page_size(void)
{
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096;
}

/* Map the runs of w's pages inside [0, len). Best effort: an error leaves
 * pages to be faulted later. */
static void populate(char *base, size_t len, const struct cf_wset *w)
{
  size_t pg = page_size();
  for (size_t i = 0; i < w->n;) {
    size_t j = i + 1;
    while (j < w->n && w->pages[j] == w->pages[j - 1] + 1)
      j++;
    uint64_t off = w->pages[i] * pg, n = (uint64_t)(j - i) * pg;
    if (off < len) {
      if (n > len - off)
        n = len - off;
      madvise(base + off, n, MADV_POPULATE_READ);
    }
    i = j;
  }
}

static int file_map(const struct cf_mem_opts *o, struct cf_mem *m)
{
  if (!o->img)
    return cf_fail(EINVAL, "the file backend needs an image");
  memset(m, 0, sizeof *m);
  if (cf_cowmap_map(o->img, o->addr, 0, &m->cm) < 0)
    return -1;
  madvise(m->cm.addr, m->cm.len, MADV_NOHUGEPAGE);
  m->addr = m->cm.addr;
  m->len = m->cm.len;
  m->backend = &cf_mem_backend_file;
  m->flags = o->flags;
  if ((o->flags & CF_MEM_PREFETCH) && o->wset)
    populate(m->addr, m->len, o->wset);
  return 0;
}

static int file_unmap(struct cf_mem *m) { return cf_cowmap_unmap(&m->cm); }

static enum cf_dirty_kind file_kind(unsigned flags) { return CF_DIRTY_ANON; }
static unsigned file_commit_flags(unsigned flags) { return 0; }

static int uffd_map(const struct cf_mem_opts *o, struct cf_mem *m)
{
  size_t pg = page_size();
  uint64_t size = o->img ? cf_image_header(o->img)->size : o->size;
  memset(m, 0, sizeof *m);
  if (!o->socket)
    return cf_fail(EINVAL, "the uffd backend needs the page server's socket");
  if (size == 0 || size > SIZE_MAX - pg)
    return cf_fail(EINVAL, "bad image size %llu", (unsigned long long)size);
  if ((uintptr_t)o->addr % pg)
    return cf_fail(EINVAL, "address %p is not page-aligned", o->addr);
  size_t len = (size + pg - 1) / pg * pg;
  char *base = mmap(o->addr, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (o->addr ? MAP_FIXED : 0), -1, 0);
  if (base == MAP_FAILED)
    return cf_fail(errno, "reserve %zu bytes: %m", len);
  madvise(base, len, MADV_NOHUGEPAGE);
  bool track = o->flags & CF_MEM_TRACK;
  uint64_t want = UFFD_FEATURE_EVENT_REMOVE |
                  (track ? UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED : 0);
  CLEANUP_CLOSE int uffd = cf_uffd_open(want, NULL);
  if (uffd < 0)
    goto err;
  if (cf_uffd_register(uffd, base, len, track) < 0)
    goto err;
  if (o->flags & CF_MEM_PIN) {
    int cpu = sched_getcpu();
    if (cf_pin_cpu(cpu) < 0) {
      cf_fail(errno, "pin to CPU %d: %m", cpu);
      goto err;
    }
  }
  unsigned flags = CF_UFFD_ACK | (o->flags & CF_MEM_PREFETCH ? CF_UFFD_PREFETCH : 0) |
                   (o->flags & CF_MEM_RECORD ? CF_UFFD_RECORD : 0) | (track ? CF_UFFD_WP : 0);
  struct cf_uffd_region r = {.base = (uintptr_t)base, .size = len, .offset = 0};
  if (cf_uffd_handshake(o->socket, uffd, &r, 1, flags, &m->client) < 0)
    goto err;
  m->addr = base;
  m->len = len;
  m->backend = &cf_mem_backend_uffd;
  m->flags = o->flags;
  return 0;
err:;
  int e = errno;
  if (o->addr) /* the caller's range: leave it reserved, unregistered */
    mmap(base, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
         -1, 0);
  else
    munmap(base, len);
  errno = e;
  return -1;
}

static int uffd_unmap(struct cf_mem *m)
{
  if (!m->addr)
    return 0;
  if (munmap(m->addr, m->len) < 0)
    return cf_fail(errno, "munmap %p (+%zu): %m", m->addr, m->len);
  memset(m, 0, sizeof *m);
  return 0;
}

static enum cf_dirty_kind uffd_kind(unsigned flags)
{
  return flags & CF_MEM_TRACK ? CF_DIRTY_WRITTEN : CF_DIRTY_PRESENT;
}

static unsigned uffd_commit_flags(unsigned flags)
{
  return flags & CF_MEM_TRACK ? 0 : CF_DIRTY_COMPARE;
}

const struct cf_mem_backend cf_mem_backend_file = {
    .name = "file",
    .map = file_map,
    .unmap = file_unmap,
    .dirty_kind = file_kind,
    .commit_flags = file_commit_flags,
};

const struct cf_mem_backend cf_mem_backend_uffd = {
    .name = "uffd",
    .map = uffd_map,
    .unmap = uffd_unmap,
    .dirty_kind = uffd_kind,
    .commit_flags = uffd_commit_flags,
};

const struct cf_mem_backend *cf_mem_backend_find(const char *name)
{
  static const struct cf_mem_backend *const all[] = {&cf_mem_backend_file, &cf_mem_backend_uffd};
  for (size_t i = 0; name && i < sizeof all / sizeof *all; i++)
    if (strcmp(all[i]->name, name) == 0)
      return all[i];
  return cf_fail_null(EINVAL, "unknown memory backend '%s' (file, uffd)", name ? name : "");
}
