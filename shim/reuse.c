/* VM reuse: putting a finished child's VM back to its template's state so
 * the next child runs in it (cf_template_refork in snapshot.c).
 *
 * Why: under PVM's shadow paging every first touch of a guest page by a new
 * VM is a host fault (~12 us), and VM create + destroy cost ~0.4 ms. A
 * reused VM keeps its vCPU, its memslot and the shadow entries of every
 * template page the previous child only read: those still map the same
 * page-cache pages, so the next child does not fault on them again.
 *
 * Invariant this file keeps (file backend only): after reuse_reset_memory
 * every byte of guest memory is the template image's, and the host mapping
 * is, page for page, what cf_cowmap_map of the template's image gave (a
 * MAP_PRIVATE file page of the same layer at the same offset, or anonymous
 * zero memory for an empty extent), except that up to REUSE_KEEP_MAX pages
 * outside the system area, and the generation page, may be private
 * anonymous copies holding the template's bytes. Two things can break it
 * in a child, and both are undone:
 *   - the shim replaced a range (mmap MAP_FIXED of a file or of anonymous
 *     memory, munmap, brk, MADV_DONTNEED, execve): mm.c note_replaced
 *     recorded it in sb->replaced; those ranges are mapped again from the
 *     image's extents (remap_from_image);
 *   - the program (or the shim on its behalf, /tmp data included) wrote a
 *     page: it became a private anonymous copy. lib/dirty.c's scan
 *     (CF_DIRTY_ANON: present, not a file page, not the zero page, or
 *     swapped; the one made when the child's run ended) finds exactly
 *     those. Where the host may write them, they are restored in place:
 *     the template's bytes (template_ref, the image mapped read-only) are
 *     copied over the pages that differ. Their host PTEs, and so KVM's
 *     writable shadow entries, stay valid: the next child writes the same
 *     pages without a fault (under PVM, a written page dropped with
 *     MADV_DONTNEED cost the next child two shadow faults and a host
 *     copy-on-write, ~25 us). The generation page, which every child
 *     writes, is restored in place too. The others (read-only or PROT_NONE
 *     under the child's VMAs, the rest of the system area, all of them past
 *     REUSE_KEEP_MAX) are
 *     dropped with MADV_DONTNEED of the coalesced runs: a MAP_PRIVATE file
 *     page reads the file again, an empty page reads zeros.
 *   Nothing else is zapped, so the clean shadow entries stay. KVM follows
 *   both changes through its MMU notifiers.
 * Protections are then the template's again by mm_apply (it sets every
 * byte of the user range; skipped when the child's VMAs are the template's
 * and nothing was replaced). Reuse is refused when the invariant cannot be
 * kept: cowmap read some extents in (copied_bytes: their anonymous pages
 * hold template data, the scan would drop them), the replaced list
 * overflowed, the VM broke, another backend.
 *
 * reuse_check (COWFORK_CHECK_RESET=1) verifies all of it the slow way. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cowfork/dirty.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "cowfork/zero.h"
#include "internal.h"
#include "shim/shim.h"

int reuse_check_possible(struct sb *sb, const struct cf_sandbox_opts *next)
{
  const struct cf_mem *memb = sb_memb(sb);
  if (sb->park)
    return cf_fail(ENOTSUP, "the child is parked (it has no VM)");
  if (!sb->forked || !memb)
    return cf_fail(ENOTSUP, "not a forked child");
  if (memb->backend != &cf_mem_backend_file || (next->backend && next->backend != &cf_mem_backend_file))
    return cf_fail(ENOTSUP, "only the file backend reuses VMs");
  if (sb->vm_broken)
    return cf_fail(ENOTSUP, "the VM failed");
  if (sb->w)
    return cf_fail(ENOTSUP, "the sandbox has had several processes (process.c: not kept by a park yet)");
  if (memb->cm.copied_bytes)
    return cf_fail(ENOTSUP, "part of the image was read in, not mapped");
  if (sb->replaced_overflow)
    return cf_fail(ENOTSUP, "the list of replaced ranges overflowed");
  return 0;
}

static int range_cmp(const void *a, const void *b)
{
  const struct range *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* sb->replaced sorted and overlapping ranges merged, in place (a merged
 * range keeps the first one's file flag: callers that care refuse file
 * ranges first). */
static void coalesce_replaced(struct sb *sb)
{
  size_t nr = 0;
  if (!sb->nreplaced)
    return;
  qsort(sb->replaced, sb->nreplaced, sizeof *sb->replaced, range_cmp);
  for (size_t i = 0; i < sb->nreplaced; i++) {
    if (nr && sb->replaced[i].start <= sb->replaced[nr - 1].end) {
      if (sb->replaced[i].end > sb->replaced[nr - 1].end)
        sb->replaced[nr - 1].end = sb->replaced[i].end;
    } else {
      sb->replaced[nr++] = sb->replaced[i];
    }
  }
  sb->nreplaced = nr;
}

/* [start, end) of guest memory mapped again as cf_cowmap_map maps it:
 * MAP_PRIVATE from the layer of each extent, anonymous for empty ones. */
static int remap_from_image(struct sb *sb, uint64_t start, uint64_t end)
{
  const struct cf_image *img = template_image(sb->tmpl);
  const struct cf_header *h = cf_image_header(img);
  uint64_t blk = start / PAGE, lo = 0, hi = h->nextents;
  while (lo + 1 < hi) { /* the extent holding blk: last with first <= blk */
    uint64_t mid = (lo + hi) / 2;
    if (h->extents[mid].first <= blk)
      lo = mid;
    else
      hi = mid;
  }
  for (uint64_t i = lo; i < h->nextents && start < end; i++) {
    const struct cf_extent *e = &h->extents[i];
    uint64_t es = e->first * PAGE, ee = (e->first + e->count) * PAGE;
    if (ee <= start)
      continue;
    uint64_t a = start > es ? start : es, b = end < ee ? end : ee;
    void *p;
    if (e->layer == CF_LAYER_EMPTY)
      p = mmap(sb->mem + a, b - a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
               -1, 0);
    else
      p = mmap(sb->mem + a, b - a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, cf_image_layer_fd(img, e->layer),
               (off_t)((e->offset + (a - es) / PAGE) * PAGE));
    if (p == MAP_FAILED)
      return cf_fail(errno, "mapping the template's image again at 0x%" PRIx64 ": %m", a);
    start = b;
  }
  return 0;
}


/* Whether guest page p is writable on the host now (under the finished
 * child's VMAs), so that the reset may copy the template's bytes into it:
 * a page of a writable VMA or of the /tmp region, or the generation page
 * (every child writes it: kept private, the next child's read of it takes
 * no shadow fault). The rest of the system area is left to MADV_DONTNEED
 * (its stub page is read-only). */
static bool host_writable(struct sb *sb, uint64_t p)
{
  uint64_t tb = tmp_region_base(sb->tmpfs), te = tb + tmp_region_size(sb->tmpfs);
  if (p >= tb && p < te)
    return true;
  if (p == CF_VM_GENERATION_VA)
    return true;
  if (p < CF_VM_USER_BASE)
    return false;
  const struct vma *v = mm_find(sb, p);
  return v && (v->prot & PROT_WRITE);
}

/* Whether page p lies in one of the n sorted, disjoint ranges r. */
static bool in_ranges(const struct range *r, size_t n, uint64_t p)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (r[mid].end <= p)
      lo = mid + 1;
    else if (r[mid].start > p)
      hi = mid;
    else
      return true;
  }
  return false;
}

static int drop(struct sb *sb, uint64_t first, uint64_t count)
{
  if (madvise(sb->mem + first * PAGE, count * PAGE, MADV_DONTNEED) < 0)
    return cf_fail(errno, "madvise(MADV_DONTNEED): %m");
  return 0;
}

int reuse_reset_memory(struct sb *sb)
{
  /* 1. Ranges the shim replaced, coalesced (in place, kept for step 2),
   * from the image again. */
  coalesce_replaced(sb); /* kept: a parked child maps them again (cf_sandbox_park) */
  size_t nr = sb->nreplaced;
  for (size_t i = 0; i < nr; i++)
    if (remap_from_image(sb, sb->replaced[i].start, sb->replaced[i].end) < 0)
      return -1;
  /* 2. Pages written (private copies): the scan made when the child's run
   * ended (nothing ran since; pages in replaced ranges are skipped, they
   * were mapped anew), or a new one. */
  struct cf_dirty d = {0};
  if (sb->have_end_dirty) {
    d = sb->end_dirty;
    sb->end_dirty = (struct cf_dirty){0};
    sb->have_end_dirty = false;
  } else if (cf_dirty_scan(0, sb->mem, sb->mem_size, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d) < 0) {
    return -1;
  }
  /* Up to REUSE_KEEP_MAX of them are restored in place: the template's
   * bytes copied over the ones that differ. The page stays a private
   * anonymous page with the template's contents, its host PTE and KVM's
   * shadow entry stay valid and writable, and the next child, which most
   * likely writes the same pages, takes no fault on it. Pages the host may
   * not write now (read-only or PROT_NONE under the child's VMAs, the
   * system area), every page past the budget, or all of them when the
   * template's reference mapping is unavailable are dropped with
   * MADV_DONTNEED as before: a file page reads the layer again, an empty
   * page zeros. Test hook: COWFORK_CHECK_RESET=leak leaves one differing
   * page (or one dropped run) as the child left it, which the check must
   * report (tests/sandbox-reuse.sh). */
  const char *hook = getenv("COWFORK_CHECK_RESET");
  bool leak = hook && strcmp(hook, "leak") == 0;
  const uint8_t *ref = d.pages <= REUSE_KEEP_MAX ? template_ref(sb->tmpl) : NULL;
  uint64_t dfirst = 0, dcount = 0;
  int rc = 0;
  for (size_t i = 0; i < d.n && rc == 0; i++)
    for (uint64_t p = d.v[i].first; p < d.v[i].first + d.v[i].count && rc == 0; p++) {
      uint64_t a = p * PAGE;
      if (nr && in_ranges(sb->replaced, nr, a))
        continue;
      if (ref && host_writable(sb, a)) {
        if (memcmp(sb->mem + a, ref + a, PAGE) == 0)
          continue;
        if (leak && a != CF_VM_GENERATION_VA) { /* a page the program wrote */
          leak = false;
          continue;
        }
        memcpy(sb->mem + a, ref + a, PAGE);
        continue;
      }
      if (dcount && dfirst + dcount == p) {
        dcount++;
        continue;
      }
      if (dcount)
        rc = drop(sb, dfirst, dcount);
      dfirst = p;
      dcount = 1;
    }
  if (rc == 0 && dcount) {
    if (leak)
      dcount = 0; /* the hook keeps the last dropped run */
    else
      rc = drop(sb, dfirst, dcount);
  }
  cf_dirty_free(&d);
  return rc;
}

/* ---- COWFORK_CHECK_RESET ---- */

/* The host mappings of [base, base+size) from /proc/self/maps, relative to
 * base, coalesced: neighbours with the same permissions that continue the
 * same file (or are both anonymous) are one entry. */
struct mapent {
  uint64_t start, end, off, ino;
  char perms[5], dev[16];
};

static int read_maps(const uint8_t *base, uint64_t size, struct mapent **out, size_t *n)
{
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f)
    return cf_fail(errno, "/proc/self/maps: %m");
  char line[4096];
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  uint64_t b = (uint64_t)(uintptr_t)base, lim = b + size;
  while (fgets(line, sizeof line, f)) {
    struct mapent m;
    uint64_t s, e;
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %15s %" SCNu64, &s, &e, m.perms, &m.off, m.dev,
               &m.ino) != 6)
      continue;
    if (e <= b || s >= lim)
      continue;
    if (s < b) {
      m.off += m.ino ? b - s : 0;
      s = b;
    }
    if (e > lim)
      e = lim;
    m.start = s - b;
    m.end = e - b;
    if (!m.ino)
      m.off = 0;
    struct mapent *l = *n ? &(*out)[*n - 1] : NULL;
    if (l && l->end == m.start && !strcmp(l->perms, m.perms) && l->ino == m.ino && !strcmp(l->dev, m.dev) &&
        (!m.ino || l->off + (l->end - l->start) == m.off)) {
      l->end = m.end;
      continue;
    }
    if (*n == cap) {
      cap = cap ? 2 * cap : 256;
      struct mapent *q = realloc(*out, cap * sizeof *q);
      if (!q) {
        fclose(f);
        return cf_fail(ENOMEM, "out of memory");
      }
      *out = q;
    }
    (*out)[(*n)++] = m;
  }
  fclose(f);
  return 0;
}

static bool mapent_same(const struct mapent *x, const struct mapent *y)
{
  return x->start == y->start && x->end == y->end && !strcmp(x->perms, y->perms) && x->ino == y->ino &&
         x->off == y->off && !strcmp(x->dev, y->dev);
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

#define FAIL(...)                                                     \
  do {                                                                \
    snprintf(why, sizeof why, __VA_ARGS__);                           \
    goto out;                                                         \
  } while (0)

int reuse_check(struct sb *sb)
{
  char why[512] = "";
  int ret = -1;
  struct cf_sandbox *fresh = NULL;
  struct mapent *ma = NULL, *mb = NULL;
  size_t na = 0, nb = 0;
  struct wbuf wa = {0}, wb = {0};
  uint8_t *buf = NULL;
  struct tnode **xa = NULL, **xb = NULL;
  struct cf_dirty d = {0};

  /* 1. Private pages only where the reset may keep them (restored in
   * place, within the budget); their bytes are checked in 3. */
  if (cf_dirty_scan(0, sb->mem, sb->mem_size, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d) < 0)
    goto err;
  if (d.pages > REUSE_KEEP_MAX)
    FAIL("%" PRIu64 " private pages remain after the reset, more than %u (first at guest 0x%" PRIx64 ")",
         d.pages, REUSE_KEEP_MAX, (uint64_t)(d.v[0].first * PAGE));
  for (size_t i = 0; i < d.n; i++)
    for (uint64_t p = d.v[i].first; p < d.v[i].first + d.v[i].count && p * PAGE < CF_VM_USER_BASE; p++)
      if (p * PAGE != CF_VM_GENERATION_VA) /* restored in place like a user page */
        FAIL("a private page remains in the system area at guest 0x%" PRIx64, (uint64_t)(p * PAGE));

  /* 2. A fresh child of the same template, for everything else. */
  if (!(fresh = cf_template_fork(sb->tmpl, sb->opts)))
    goto err;
  struct sb *f = &fresh->s;
  if (read_maps(sb->mem, sb->mem_size, &ma, &na) < 0 || read_maps(f->mem, f->mem_size, &mb, &nb) < 0)
    goto err;
  for (size_t i = 0; i < na || i < nb; i++) {
    if (i >= na || i >= nb)
      FAIL("host mapping: %zu pieces, a fresh child's %zu", na, nb);
    if (!mapent_same(&ma[i], &mb[i]))
      FAIL("host mapping differs from a fresh child's at piece %zu: guest 0x%" PRIx64 "-0x%" PRIx64
           " %s ino %" PRIu64 " off 0x%" PRIx64 " vs 0x%" PRIx64 "-0x%" PRIx64 " %s ino %" PRIu64
           " off 0x%" PRIx64,
           i, ma[i].start, ma[i].end, ma[i].perms, ma[i].ino, ma[i].off, mb[i].start, mb[i].end, mb[i].perms,
           mb[i].ino, mb[i].off);
  }
  /* Shim state: each subsystem's part of a state file must be the fresh
   * child's, byte for byte (the files and the /tmp tree below). */
  static const struct {
    void (*save)(struct sb *, struct wbuf *);
    const char *what;
  } parts[] = {{mm_save, "VMA list, brk or mmap top"},
               {fs_save_cwd, "cwd or umask"},
               {sig_save, "signal state"},
               {task_save, "task ids"},
               {task_save_ident, "identity"},
               {task_save_limits, "resource limits"},
               {sig_save_altstack, "alternate signal stack"}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    wa.n = wb.n = 0;
    parts[i].save(sb, &wa);
    parts[i].save(f, &wb);
    if (wa.err || wb.err) {
      cf_fail(ENOMEM, "out of memory");
      goto err;
    }
    if (wa.n != wb.n || memcmp(wa.p, wb.p, wa.n))
      FAIL("%s differs from a fresh child's", parts[i].what);
  }
  wa.n = wb.n = 0;
  if (strcmp(sb->root, f->root) || strcmp(sb->program, f->program))
    FAIL("root/program differ");
  if (sb->nsigq != f->nsigq || memcmp(sb->sigq, f->sigq, (size_t)sb->nsigq * sizeof *sb->sigq))
    FAIL("signal queue differs");
  if (sb->next_timer_id != f->next_timer_id || sb->cpu_ns != f->cpu_ns)
    FAIL("timer state differs");
  for (int i = 0; i < NTIMER; i++) { /* expiries are absolute: only whether armed */
    const struct ktimer *p = &sb->timers[i], *q = &f->timers[i];
    if (!p->value != !q->value || p->interval != q->interval || p->kind != q->kind || p->id != q->id ||
        p->clock != q->clock || p->notify != q->notify || p->signo != q->signo || p->sigval != q->sigval ||
        p->queued != q->queued || p->overrun != q->overrun || p->gen != q->gen)
      FAIL("timer %d differs", i);
  }
  if (sb->uid != f->uid || sb->gid != f->gid)
    FAIL("identity differs");
  if (sb->nheld != f->nheld || sb->next_tid != f->next_tid)
    FAIL("threads differ");
  for (int i = 0; i < sb->nheld; i++)
    if (sb->held[i]->tid != f->held[i]->tid ||
        memcmp(&sb->held[i]->stop_regs, &f->held[i]->stop_regs, sizeof sb->held[i]->stop_regs) ||
        memcmp(sb->held[i]->cpu, f->held[i]->cpu, sizeof *sb->held[i]->cpu))
      FAIL("thread %d differs", i);
  if (sb->ready != f->ready || sb->eof_pause != f->eof_pause || sb->resume_pending != f->resume_pending ||
      strcmp(sb->marker, f->marker) || sb->paused != f->paused || sb->exited != f->exited ||
      sb->entered != f->entered || sb->nreplaced != f->nreplaced || sb->nsys != f->nsys ||
      sb->pages_mapped != f->pages_mapped || sb->pages_copied != f->pages_copied)
    FAIL("run state differs");
  int nfd = sb->nfds > f->nfds ? sb->nfds : f->nfds;
  xa = malloc((size_t)(nfd + 1) * sizeof *xa);
  xb = malloc((size_t)(nfd + 1) * sizeof *xb);
  if (!xa || !xb)
    FAIL("out of memory");
  size_t nxa = 0, nxb = 0;
  for (int i = 0; i < nfd; i++) {
    struct file *p = i < sb->nfds ? sb->fds[i] : NULL, *q = i < f->nfds ? f->fds[i] : NULL;
    if (!p != !q)
      FAIL("fd %d open in one child only", i);
    if (!p)
      continue;
    if (p->type != q->type || p->flags != q->flags || p->stdio != q->stdio || !str_eq(p->path, q->path) ||
        p->off != q->off || sb->cloexec[i] != f->cloexec[i] || !p->node != !q->node)
      FAIL("fd %d differs", i);
    if (p->type == F_HOST && p->stdio < 0 && lseek(p->hostfd, 0, SEEK_CUR) != lseek(q->hostfd, 0, SEEK_CUR))
      FAIL("fd %d: file offset differs", i);
    if (p->node) {
      xa[nxa++] = p->node;
      xb[nxb++] = q->node;
    }
  }
  if (tmp_save(sb->tmpfs, &wa, xa, nxa) < 0 || tmp_save(f->tmpfs, &wb, xb, nxb) < 0 || wa.err || wb.err) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  if (wa.n != wb.n || memcmp(wa.p, wb.p, wa.n)) {
    size_t k = 0;
    while (k < wa.n && k < wb.n && wa.p[k] == wb.p[k])
      k++;
    uint64_t va = 0, vb = 0;
    memcpy(&va, wa.p + (k & ~7ul), k + 8 <= wa.n ? 8 : 0);
    memcpy(&vb, wb.p + (k & ~7ul), k + 8 <= wb.n ? 8 : 0);
    FAIL("/tmp tree differs (%zu vs %zu bytes, first difference at byte %zu: %#" PRIx64 " vs %#" PRIx64 ")", wa.n,
         wb.n, k, va, vb);
  }
  for (size_t i = 0; i < nxa; i++)
    if (tmp_node_id(xa[i]) != tmp_node_id(xb[i]))
      FAIL("an fd refers to another /tmp node");
  /* vCPU. */
  int c = cf_vm_compare(sb->vm, f->vm, why, sizeof why);
  if (c < 0)
    goto err;
  if (c > 0)
    goto out;

  /* 3. Every byte of guest memory against the template's image. */
  if (mprotect(sb->mem + CF_VM_USER_BASE, sb->mem_size - CF_VM_USER_BASE, PROT_READ) < 0) {
    cf_fail(errno, "mprotect: %m");
    goto err;
  }
  const uint64_t chunk = 1 << 20;
  if (!(buf = malloc(chunk))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  const struct cf_image *img = template_image(sb->tmpl);
  for (uint64_t off = 0; off < sb->mem_size && !why[0]; off += chunk) {
    uint64_t n = sb->mem_size - off < chunk ? sb->mem_size - off : chunk;
    if (cf_image_read(img, buf, n, off) < 0)
      goto err_apply;
    if (memcmp(buf, sb->mem + off, n) == 0)
      continue;
    for (uint64_t p = 0; p < n; p += PAGE)
      if (memcmp(buf + p, sb->mem + off + p, PAGE)) {
        snprintf(why, sizeof why, "guest page 0x%" PRIx64 " differs from the template's image", off + p);
        break;
      }
  }
  if (mm_apply(sb) < 0) {
    cf_fail(errno, "mm_apply: %m");
    goto err;
  }
out:
  if (why[0]) {
    fprintf(stderr, "COWFORK_CHECK_RESET: FAILED: %s\n", why);
    cf_fail(EUCLEAN, "COWFORK_CHECK_RESET: reused VM differs from a fresh child: %s", why);
  } else {
    ret = 0;
  }
  goto done;
err_apply:
  mm_apply(sb);
err:
  ret = -1;
  if (!why[0])
    errno = EUCLEAN; /* a check that could not run is a failed check */
done:
  {
    int e = errno;
    cf_dirty_free(&d);
    cf_sandbox_free(fresh);
    free(ma);
    free(mb);
    free(wa.p);
    free(wb.p);
    free(buf);
    free(xa);
    free(xb);
    errno = e;
  }
  return ret;
}

/* ---- Parking (cf_sandbox_park) ----
 *
 * A paused child that waits (a daemon sandbox between execs) need not hold
 * a VM: KVM's own memory for one (memslot rmap, vCPU, shadow pages: ~0.5
 * MiB, docs/sandbox.md) is most of what an idle child costs. Parking keeps
 * what the child's memory holds beyond its template's — the pages that
 * differ from it, in one compact buffer, and its coalesced list of ranges
 * mapped anew (anonymous: the host mapping says where zeros are) — and its
 * vCPU state (XSAVE, FS/GS base, TSC); the shim state stays in struct sb as
 * it is. The VM is then reset as for a reuse (reuse_reset_memory,
 * cf_vm_reset) and given to the template's spares.
 *
 * reuse_unpark takes a spare (or makes a VM), maps the anonymous ranges
 * again, applies the child's protections, writes the kept pages back
 * (through /proc/self/mem where the host mapping is not writable) and
 * loads the vCPU state: guest memory then reads byte for byte as it did,
 * and COWFORK_CHECK_PARK=1 verifies that (all of guest memory and the host
 * mapping's pieces compared with a copy taken at park time).
 *
 * Refused (ENOTSUP, the child left as it was): not a paused (or fresh,
 * never run) child of the file backend, a VM that cannot be reused (reuse_check_possible), or a
 * range mapped from a host file since the fork (its pages would have to be
 * copied to be kept; not done). */
struct parked {
  struct cf_vm_cpu cpu;
  struct cf_vm_regs regs; /* to enter with */
  bool resume_pending;    /* serve the call in regs first */
  uint64_t tsc;
  size_t n, cap;      /* pages kept */
  uint64_t *addr;     /* their guest addresses, ascending */
  uint8_t *data;      /* n pages */
  /* COWFORK_CHECK_PARK: guest memory and its host mapping at park time */
  uint8_t *check;
  struct mapent *maps;
  size_t nmaps;
};

/* Give sb the VM vm with memory gm, or (vm NULL) take it away. */
static void vm_attach(struct sb *sb, struct cf_vm *vm, struct guest_mem *gm)
{
  sb->vm = vm;
  sb->gm = gm;
  sb->mem = vm ? cf_vm_mem(vm) : NULL;
  tmp_set_mem(sb->tmpfs, sb->mem);
}

void park_free(struct sb *sb)
{
  struct parked *pk = sb->park;
  if (!pk)
    return;
  free(pk->addr);
  free(pk->data);
  free(pk->check);
  free(pk->maps);
  free(pk);
  sb->park = NULL;
}

/* Whether guest page a can be read (w: written) through the host mapping
 * as sb's VMAs and the VMM set it; if not, /proc/self/mem can (FOLL_FORCE). */
static bool host_can(struct sb *sb, uint64_t a, bool w)
{
  uint64_t tb = tmp_region_base(sb->tmpfs), te = tb + tmp_region_size(sb->tmpfs);
  if (a >= tb && a < te)
    return true;
  if (a < CF_VM_USER_BASE)
    return !w; /* read-write but for the read-only stub page: never written here */
  const struct vma *v = mm_find(sb, a);
  return v && (v->prot & (w ? PROT_WRITE : PROT_READ | PROT_WRITE));
}

static int self_mem(int *fd)
{
  if (*fd < 0 && (*fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC)) < 0)
    return cf_fail(errno, "/proc/self/mem: %m");
  return 0;
}

/* Guest [a, a+len) read through /proc/self/mem into dst (any protection). */
static int read_guest(struct sb *sb, uint8_t *dst, uint64_t a, uint64_t len, int *fd)
{
  if (self_mem(fd) < 0 || cf_pread_full(*fd, dst, len, (off_t)(uintptr_t)(sb->mem + a)) != (ssize_t)len)
    return cf_fail(errno ? errno : EIO, "reading guest memory at 0x%" PRIx64 ": %m", a);
  return 0;
}

/* Guest page a: in place when the host may read it, else copied into buf. */
static const uint8_t *guest_page(struct sb *sb, uint64_t a, uint8_t *buf, int *fd)
{
  if (host_can(sb, a, false))
    return sb->mem + a;
  return read_guest(sb, buf, a, PAGE, fd) < 0 ? NULL : buf;
}

static int keep_page(struct parked *pk, uint64_t a, const uint8_t *src)
{
  if (pk->n == pk->cap) {
    size_t cap = pk->cap ? 2 * pk->cap : 16;
    uint64_t *na = realloc(pk->addr, cap * sizeof *na);
    if (na)
      pk->addr = na;
    uint8_t *nd = na ? realloc(pk->data, cap * PAGE) : NULL;
    if (!nd)
      return cf_fail(ENOMEM, "out of memory");
    pk->data = nd;
    pk->cap = cap;
  }
  pk->addr[pk->n] = a;
  memcpy(pk->data + pk->n * PAGE, src, PAGE);
  pk->n++;
  return 0;
}

/* COWFORK_CHECK_PARK=1: verify each unpark; =leak: also forget the last
 * page kept (the test that the check fails). */
static bool check_park(bool *leak)
{
  const char *e = getenv("COWFORK_CHECK_PARK");
  *leak = e && strcmp(e, "leak") == 0;
  return e && (strcmp(e, "1") == 0 || *leak);
}

/* What sb's memory holds beyond the template's, into pk. */
static int park_capture(struct sb *sb, struct parked *pk)
{
  const uint8_t *ref = template_ref(sb->tmpl);
  if (!ref)
    return -1;
  if (!sb->have_end_dirty) {
    if (cf_dirty_scan(0, sb->mem, sb->mem_size, CF_DIRTY_ANON, CF_DIRTY_AUTO, &sb->end_dirty) < 0)
      return -1;
    sb->have_end_dirty = true; /* reuse_reset_memory takes it */
  }
  const struct cf_dirty *d = &sb->end_dirty;
  int fd = -1, rc = 0;
  uint8_t buf[PAGE];
  for (size_t i = 0; i < d->n && rc == 0; i++)
    for (uint64_t p = d->v[i].first; p < d->v[i].first + d->v[i].count && rc == 0; p++) {
      uint64_t a = p * PAGE;
      const uint8_t *page = guest_page(sb, a, buf, &fd);
      if (!page) {
        rc = -1;
        break;
      }
      /* In a range mapped anew the host has zeros, elsewhere the template. */
      bool anon = sb->nreplaced && in_ranges(sb->replaced, sb->nreplaced, a);
      if (anon ? !cf_is_zero(page, PAGE) : memcmp(page, ref + a, PAGE) != 0)
        rc = keep_page(pk, a, page);
    }
  bool leak;
  if (rc == 0 && check_park(&leak)) {
    if (leak && pk->n)
      pk->n--;
    if (!(pk->check = malloc(sb->mem_size)))
      rc = cf_fail(ENOMEM, "out of memory");
    for (uint64_t a = 0; rc == 0 && a < sb->mem_size; a += 1 << 20)
      rc = read_guest(sb, pk->check + a, a, 1 << 20, &fd);
    if (rc == 0)
      rc = read_maps(sb->mem, sb->mem_size, &pk->maps, &pk->nmaps);
  }
  if (fd >= 0)
    close(fd);
  return rc;
}

int cf_sandbox_park(struct cf_sandbox *box)
{
  struct sb *sb = &box->s;
  if (sb->park)
    return 0;
  /* Paused at its ready point, or a fresh child that never ran (its
   * registers and pending call are the template's, loaded). */
  bool fresh = !sb->paused && !sb->entered && !sb->exited && sb->nsys == 0;
  if ((!sb->paused && !fresh) || sb->exited)
    return cf_fail(ENOTSUP, "only a paused sandbox can be parked");
  if (reuse_check_possible(sb, sb->opts) < 0)
    return -1;
  for (size_t i = 0; i < sb->nreplaced; i++)
    if (sb->replaced[i].file)
      return cf_fail(ENOTSUP, "it mapped a host file since the fork");
  coalesce_replaced(sb); /* sorted: in_ranges below */
  struct parked *pk = calloc(1, sizeof *pk);
  if (!pk)
    return cf_fail(ENOMEM, "out of memory");
  sb->park = pk;
  pk->regs = fresh ? *cf_vm_regs(sb->vm) : sb->pause_regs;
  pk->resume_pending = fresh ? sb->resume_pending : sb->pause_pending;
  if (cf_vm_save_cpu(sb->vm, &pk->cpu) < 0 || cf_vm_tsc(sb->vm, &pk->tsc, 0) < 0 || park_capture(sb, pk) < 0) {
    park_free(sb);
    return -1;
  }
  /* The child's state is kept: from here on the VM goes to the spares, or
   * is destroyed when it cannot be reset; the child is parked either way. */
  struct cf_vm *vm = sb->vm;
  struct guest_mem *gm = sb->gm;
  bool reset = reuse_reset_memory(sb) == 0 && cf_vm_reset(vm) == 0; /* keeps sb->replaced */
  cf_dirty_free(&sb->end_dirty);
  sb->have_end_dirty = false;
  vm_attach(sb, NULL, NULL);
  if (!reset || !template_put_spare(sb->tmpl, vm, gm))
    vm_free(vm, gm);
  return 0;
}

static int unpark_check(struct sb *sb, struct parked *pk)
{
  char why[512] = "";
  struct mapent *m = NULL;
  size_t n = 0;
  uint8_t *buf = malloc(1 << 20);
  int fd = -1, rc = buf ? 0 : cf_fail(ENOMEM, "out of memory");
  for (uint64_t a = 0; rc == 0 && !why[0] && a < sb->mem_size; a += 1 << 20) {
    if ((rc = read_guest(sb, buf, a, 1 << 20, &fd)) < 0 || memcmp(buf, pk->check + a, 1 << 20) == 0)
      continue;
    for (uint64_t p = 0; p < 1 << 20; p += PAGE)
      if (memcmp(buf + p, pk->check + a + p, PAGE)) {
        snprintf(why, sizeof why, "guest page 0x%" PRIx64 " differs from what it held when parked", a + p);
        break;
      }
  }
  if (rc == 0 && !why[0] && (rc = read_maps(sb->mem, sb->mem_size, &m, &n)) == 0) {
    for (size_t i = 0; !why[0] && (i < n || i < pk->nmaps); i++) {
      const struct mapent *x = i < n ? &m[i] : NULL, *y = i < pk->nmaps ? &pk->maps[i] : NULL;
      if (!x || !y || !mapent_same(x, y))
        snprintf(why, sizeof why, "host mapping piece %zu differs from the one when parked (guest 0x%" PRIx64 ")", i,
                 x ? x->start : y->start);
    }
  }
  if (fd >= 0)
    close(fd);
  free(buf);
  free(m);
  if (rc == 0 && why[0]) {
    fprintf(stderr, "COWFORK_CHECK_PARK: FAILED: %s\n", why);
    rc = cf_fail(EUCLEAN, "COWFORK_CHECK_PARK: %s", why);
  }
  return rc;
}

int reuse_unpark(struct sb *sb)
{
  struct parked *pk = sb->park;
  struct cf_vm *vm;
  struct guest_mem *gm;
  if (!template_take_spare(sb->tmpl, &vm, &gm) && !(vm = template_new_vm(sb->tmpl, sb->opts, &gm)))
    return -1;
  vm_attach(sb, vm, gm);
  int fd = -1, rc = 0;
  for (size_t i = 0; i < sb->nreplaced && rc == 0; i++) {
    const struct range *r = &sb->replaced[i];
    if (mmap(sb->mem + r->start, r->end - r->start, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
      rc = cf_fail(errno, "mapping guest 0x%" PRIx64 " again: %m", r->start);
  }
  if (rc == 0 && mm_apply(sb) < 0)
    rc = cf_fail(errno, "applying the child's memory protections: %m");
  for (size_t i = 0; i < pk->n && rc == 0; i++) {
    uint64_t a = pk->addr[i];
    if (host_can(sb, a, true))
      memcpy(sb->mem + a, pk->data + i * PAGE, PAGE);
    else if (self_mem(&fd) < 0 || cf_pwrite_full(fd, pk->data + i * PAGE, PAGE, (off_t)(uintptr_t)(sb->mem + a)) < 0)
      rc = cf_fail(errno ? errno : EIO, "writing guest memory at 0x%" PRIx64 ": %m", a);
  }
  if (fd >= 0)
    close(fd);
  if (rc == 0)
    rc = cf_vm_load_cpu(vm, &pk->cpu, &pk->regs);
  if (rc == 0)
    rc = cf_vm_tsc(vm, NULL, pk->tsc);
  if (rc == 0 && pk->check)
    rc = unpark_check(sb, pk);
  if (rc < 0) { /* still parked; this VM is not reused */
    int e = errno;
    vm_attach(sb, NULL, NULL);
    vm_free(vm, gm);
    errno = e;
    return -1;
  }
  sb->resume_pending = pk->resume_pending; /* the call it paused on is served first */
  park_free(sb);
  return 0;
}
