/* Templates: saving a paused sandbox, and forking children from it.
 *
 * A template NAME is two things in the store:
 *   images/NAME.mem     guest memory as a layered image (4 KiB blocks; zero
 *                       pages empty). A root template's image has no parent;
 *                       a branch's is a child of its template's image holding
 *                       only the pages the child changed.
 *   images/NAME.mem.PID the memory of another process of a template made
 *                       with several (version 7), one image each.
 *   images/NAME.disk    a sandbox with a disk (--disk, version 8): the disk
 *                       (4 KiB blocks, an ext4 file system) as a child of
 *                       the image its overlay was made over: for a root
 *                       template an empty one, for a branch its template's
 *                       disk; so it holds only the blocks written since
 *                       (zero ones empty). Its children each make an
 *                       overlay of their own over it (disk_overlay_load).
 *   templates/NAME      the state file: vCPU registers, FS/GS base and XSAVE
 *                       area, and the shim's state (VMAs, brk, fd table, cwd,
 *                       signal state, the /tmp tree). Format below; written to
 *                       a temp name, fsync'ed, renamed without replacing.
 * Neither is ever modified: templates are immutable.
 *
 * State file: 32-byte header, then the payload.
 *   0  magic "CFSTATE\0"   8  u32 version (8; 1-7 are read too: 1's /tmp
 *   nodes have no atime/ctime, it has no interval timers; neither has the
 *   identity)   12 u32 zero
 *   16 u64 payload bytes   24 u64 XXH3-64 of the payload
 * The payload is a sequence of little-endian u64s and strings (u64 length +
 * bytes), in the order save_state writes them: this file's part (names,
 * root, program, ready point, registers), then each subsystem's, written and
 * read by the subsystem (mm_save, fs_save_cwd, sig_save, task_save, fs_save,
 * itimer_save, task_save_ident and their loads; shim.h); every count and
 * length is checked when read (rbuf), every value validated before use. Version 2
 * appends the interval timers (timer.c itimer_save: remaining times, which
 * every child counts again from when it is made); a version 1 file loads
 * with no timer armed, an unknown version is refused by name. Version 3
 * appends the identity: the hostname and the program's argument and
 * environment ranges (/proc/self/cmdline, environ); a version 1 or 2 file
 * loads with the default hostname and an empty cmdline and environ.
 * Version 4 appends the resource limits the program set (task.c,
 * setrlimit/prlimit64) and the alternate signal stack (signal.c,
 * sigaltstack); a version 1-3 file loads with the default limits and none.
 * Version 5 appends the POSIX timers and the signal queue (timer.c
 * timers_save: each pending instance's siginfo, a timer's time left); a
 * version 1-4 file loads with no POSIX timer, its pending signals without
 * their info (SI_USER; an interval timer's SI_KERNEL). Version 6 appends
 * the threads of a program paused with several (thread.c
 * task_save_threads: the next tid, and for each thread but the one that
 * paused its tid, registers, FS/GS base, XSAVE area, per-thread signal
 * state and robust list head; the pausing thread's robust list head); a
 * version 1-5 file has one thread. Version 7 appends the sandbox's other
 * processes (procs_save: relations, groups, zombies, and each live one's
 * image name and own state payload, whose fs part is only its fd table
 * into the first's file table); a version 1-6 file has one process.
 * Version 8 appends the supplementary groups and each thread's CPU mask and
 * scheduling policy (thread.c task_save_sched), then each process's shared
 * mappings (mm.c mm_save_shared: range, offset and the /tmp node its
 * object's data was saved as; after the first's process list and at the
 * end of each other's payload); a version 1-7 file loads with the host's
 * groups, every CPU, SCHED_OTHER and no shared memory. In version 8 too
 * the tree's nodes may have extended attributes (tmpfs.c NODE_XATTR), be
 * on a disk (NODE_DISK: the data's inode, and on the root the disk image's
 * name and id), and the tree may hold /dev/shm, anon nodes (an object's
 * data) and hard links. Files
 * of type F_DEV (version 2's F_NULL, /dev/null) are reopened by path, and
 * F_VIRT and F_VDIR (/proc, /dev) too: a child's /proc file shows the
 * child.
 *
 * What a save scans. A root template (a sandbox started from an ELF): the
 * system area, every page of file-backed VMAs, the present or swapped pages
 * of anonymous VMAs (/proc/self/pagemap), the allocated pages of the /tmp
 * region; non-zero pages go to the layer. A branch (a forked child): the
 * memory backend's dirty scan (lib/dirty.c: file backend = pages no longer
 * backed by the image), plus the ranges whose mapping the shim replaced
 * since the fork (mm.c note_replaced: new file mappings are read, new
 * anonymous ranges are zeros), committed with cf_dirty_commit. During a
 * save the user range is made readable (a PROT_NONE VMA may hold data) and
 * the protections are re-applied afterwards (mm_apply). Shared memory: its
 * objects' data is copied into the /tmp region before the images are taken
 * (fs_save_prepare, freed after by fs_save_done), so it is in the first
 * process's image once; every image skips the shared mappings' ranges
 * (next_private), which a load maps from the objects (mm_load_shared).
 *
 * Host files open in the sandbox are saved as (path, flags, offset) and
 * reopened under the root in each child; the sandbox's stdin/stdout/stderr
 * are saved as such and bound to each child's own. Pipes cannot be saved;
 * sockets that are not connected can (net.c: a record after the file table
 * entry, no version of its own: an older state has no socket). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cowfork/cowmap.h"
#include "cowfork/dirty.h"
#include "cowfork/extfs.h"
#include "cowfork/image.h"
#include "cowfork/mem.h"
#include "cowfork/overlay.h"
#include "cowfork/store.h"
#include "cowfork/zero.h"
#include "internal.h"
#include "shim/shim.h"

#define STATE_MAGIC "CFSTATE"
#define STATE_VERSION 8
#define STATE_VERSION_MIN 1 /* tmpfs.c reads both node forms; no timers */
#define STATE_HDR 32
#define MAX_STATE (64u << 20)

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* ---- serialization buffers ---- */

void w_bytes(struct wbuf *w, const void *p, size_t n)
{
  if (w->err)
    return;
  if (w->n + n > w->cap) {
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->n + n)
      cap *= 2;
    uint8_t *q = realloc(w->p, cap);
    if (!q) {
      w->err = true;
      return;
    }
    w->p = q;
    w->cap = cap;
  }
  if (n)
    memcpy(w->p + w->n, p, n);
  w->n += n;
}

void w_u64(struct wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }

void w_str(struct wbuf *w, const char *s)
{
  size_t n = strlen(s);
  w_u64(w, n);
  w_bytes(w, s, n);
}

void r_bytes(struct rbuf *r, void *p, size_t n)
{
  if (r->err || n > r->n - r->off) {
    r->err = true;
    if (n)
      memset(p, 0, n);
    return;
  }
  memcpy(p, r->p + r->off, n);
  r->off += n;
}

uint64_t r_u64(struct rbuf *r)
{
  uint64_t v;
  r_bytes(r, &v, 8);
  return v;
}

void r_str(struct rbuf *r, char *buf, size_t size)
{
  uint64_t n = r_u64(r);
  if (r->err || n >= size) {
    r->err = true;
    buf[0] = 0;
    return;
  }
  r_bytes(r, buf, n);
  buf[r->err ? 0 : n] = 0;
}

/* ---- the template object ---- */

/* At most this many spare VMs per template: enough for every CPU to take
 * one while another is being given back; each holds the KVM memory of a VM
 * (~0.5 MiB, docs/sandbox.md). */
#define SPARES_MAX 8

struct cf_template {
  struct cf_store *store;
  char name[256];
  char image[264];
  char parent[256];
  char root[PATH_MAX]; /* the host directory its sandboxes see as "/" */
  uint64_t mem_size;
  struct cf_image *img;
  uint8_t *payload;
  size_t len;
  /* VM reuse (reuse.c): the image mapped once more, read-only, made on
   * first use; the workers of one template share it under ref_lock */
  pthread_mutex_t ref_lock;
  struct cf_cowmap ref;
  bool have_ref;
  /* spare VMs parked children gave back (reuse.c), under ref_lock: the
   * next unparked or forked child takes one instead of making a VM */
  struct spare { struct cf_vm *vm; struct guest_mem *gm; } spares[SPARES_MAX];
  int nspares;
  /* a template of several processes (version 7): the others' images,
   * opened by the first fork, under ref_lock */
  struct pimg { char name[300]; struct cf_image *img; } *pimgs;
  int npimgs;
  bool tree;
  /* a template with a disk: its image, opened by the first fork and shared
   * by every child's overlay (disk_overlay_load), under ref_lock */
  struct cf_image *disk;
  char disk_name[300];
  bool shared; /* its state maps shared memory (version 8): a child's VM is not reused */
};

const struct cf_image *template_image(const struct cf_template *t) { return t->img; }

const uint8_t *template_ref(struct cf_template *t)
{
  pthread_mutex_lock(&t->ref_lock);
  if (!t->have_ref) {
    if (cf_cowmap_map(t->img, NULL, 0, &t->ref) == 0) {
      if (mprotect(t->ref.addr, t->ref.len, PROT_READ) == 0) {
        t->have_ref = true;
      } else {
        cf_fail(errno, "mprotect of the template's reference mapping: %m");
        cf_cowmap_unmap(&t->ref);
      }
    }
  }
  pthread_mutex_unlock(&t->ref_lock);
  return t->have_ref ? t->ref.addr : NULL;
}
const char *cf_template_parent(const struct cf_template *t) { return t->parent; }
const char *cf_template_image(const struct cf_template *t) { return t->image; }
uint64_t cf_template_mem_size(const struct cf_template *t) { return t->mem_size; }
const char *cf_template_root(const struct cf_template *t) { return t->root; }

int cf_template_of_image(const char *image, char *name, size_t len)
{
  size_t n = strlen(image), d = n;
  if (n > 5 && strcmp(image + n - 5, ".disk") == 0) { /* NAME.disk */
    if (n - 5 >= len)
      return -1;
    memcpy(name, image, n - 5);
    name[n - 5] = 0;
    return 0;
  }
  while (d > 0 && image[d - 1] >= '0' && image[d - 1] <= '9')
    d--;
  if (d < n && d > 1 && image[d - 1] == '.' && image[d] != '0') /* NAME.mem.PID */
    n = d - 1;
  if (n <= 4 || strncmp(image + n - 4, ".mem", 4) != 0 || n - 4 >= len)
    return -1;
  memcpy(name, image, n - 4);
  name[n - 4] = 0;
  return 0;
}

int cf_template_remove_images(struct cf_store *s, const char *name)
{
  char **names = NULL, tn[256], path[PATH_MAX];
  size_t n = 0;
  if (cf_store_list(s, &names, &n) < 0)
    return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc >= 0; i++) {
    if (cf_template_of_image(names[i], tn, sizeof tn) < 0 || strcmp(tn, name) != 0)
      continue;
    if (cf_store_remove(s, names[i]) == 0)
      rc++;
    else if (errno != ENOENT)
      rc = -1;
    if (cf_wset_path(s, names[i], path, sizeof path) == 0)
      unlink(path);
  }
  cf_store_free_list(names, n);
  return rc;
}

int cf_template_path(struct cf_store *s, const char *name, char *buf, size_t len)
{
  if (cf_store_check_name(name) < 0)
    return -1;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/templates", cf_store_dir(s));
  if (cf_private_mkdir(dir) < 0)
    return -1;
  if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
    return cf_fail(ENAMETOOLONG, "template path too long");
  return 0;
}

/* ---- saving ---- */

struct pagelist {
  struct cf_changes ch;
  struct cf_layer_writer *w;
  uint64_t scanned, stored;
  uint8_t *mem;
};

/* Store the non-zero pages of [first, first+n) (page numbers). */
static int store_pages(struct pagelist *pl, uint64_t first, uint64_t n)
{
  uint64_t i = 0;
  pl->scanned += n;
  while (i < n) {
    if (cf_is_zero(pl->mem + (first + i) * PAGE, PAGE)) {
      i++;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && !cf_is_zero(pl->mem + (first + j) * PAGE, PAGE))
      j++;
    uint64_t off;
    if (cf_layer_writer_append(pl->w, pl->mem + (first + i) * PAGE, j - i, &off) < 0 ||
        cf_changes_add(&pl->ch, first + i, j - i, CF_LAYER_NEW, off) < 0)
      return -1;
    pl->stored += j - i;
    i = j;
  }
  return 0;
}

/* Anonymous range: only present or swapped pages can hold data. */
static int store_anon(struct pagelist *pl, int pm, uint64_t start, uint64_t end)
{
  uint64_t buf[4096];
  for (uint64_t a = start; a < end;) {
    uint64_t n = (end - a) / PAGE < 4096 ? (end - a) / PAGE : 4096;
    uint64_t vpn = (uint64_t)(uintptr_t)(pl->mem + a) / PAGE;
    if (pread(pm, buf, n * 8, (off_t)(vpn * 8)) != (ssize_t)(n * 8))
      return cf_fail(errno ? errno : EIO, "/proc/self/pagemap: %m");
    for (uint64_t i = 0; i < n;) {
      if (!(buf[i] >> 62)) {
        i++;
        continue;
      }
      uint64_t j = i + 1;
      while (j < n && (buf[j] >> 62))
        j++;
      if (store_pages(pl, a / PAGE + i, j - i) < 0)
        return -1;
      i = j;
    }
    a += n * PAGE;
  }
  return 0;
}

struct span {
  uint64_t start, end;
  bool anon;
};

/* The next piece of [*a, b) that no shared mapping covers, into [*ps, *pe):
 * false when none is left. A shared mapping's memory is not saved with the
 * process: its object's data is, once, in the /tmp region (fs_save_prepare),
 * and a load maps the object there (mm_load_shared). */
static bool next_private(const struct sb *sb, uint64_t *a, uint64_t b, uint64_t *ps, uint64_t *pe)
{
  while (*a < b) {
    uint64_t start = *a, end = b;
    bool covered = false;
    for (int i = 0; i < sb->nshmaps && !covered; i++) {
      const struct shmap *m = &sb->shmaps[i];
      if (m->start <= start && start < m->end) {
        *a = m->end < b ? m->end : b;
        covered = true;
      } else if (m->start > start && m->start < end) {
        end = m->start;
      }
    }
    if (covered)
      continue;
    *ps = start;
    *pe = end;
    *a = end;
    return true;
  }
  return false;
}

static int span_cmp(const void *a, const void *b)
{
  const struct span *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

static int tmp_page_span(void *ctx, uint64_t addr)
{
  struct span **sp = ctx;
  **sp = (struct span){addr, addr + PAGE, false};
  (*sp)++;
  return 0;
}

static int commit_root(struct sb *sb, struct cf_store *s, const char *image, struct cf_save_stats *st)
{
  struct cf_header *base = cf_header_new_empty(sb->mem_size, PAGE);
  if (!base)
    return -1;
  memset(base->id, 0, 16);
  base->generation = UINT64_MAX; /* derive adds one: a root image is generation 0 */
  struct pagelist pl = {.mem = sb->mem};
  int ret = -1, pm = -1;
  size_t ntmp = 0;
  struct span *sp = NULL;
  if (!(pl.w = cf_layer_writer_new(s, PAGE)))
    goto out;
  /* Candidate ranges, sorted: system area, VMAs, /tmp pages. */
  uint64_t tb = tmp_region_base(sb->tmpfs), tn = tmp_region_size(sb->tmpfs) / PAGE;
  (void)tb;
  sp = malloc((2 + (size_t)sb->nvma + (size_t)sb->nshmaps + tn) * sizeof *sp);
  if (!sp) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  size_t n = 0;
  sp[n++] = (struct span){0, CF_VM_USER_BASE, false};
  for (int i = 0; i < sb->nvma; i++)
    for (uint64_t a = sb->vmas[i].start, ps, pe; next_private(sb, &a, sb->vmas[i].end, &ps, &pe);)
      sp[n++] = (struct span){ps, pe, !sb->vmas[i].file};
  struct span *tp = sp + n;
  if (proc_is_first(sb)) /* the /tmp region is in the first process's memory only */
    tmp_pages(sb->tmpfs, tmp_page_span, &tp);
  ntmp = (size_t)(tp - (sp + n));
  n += ntmp;
  qsort(sp, n, sizeof *sp, span_cmp);
  if ((pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
    cf_fail(errno, "/proc/self/pagemap: %m");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    int r = sp[i].anon ? store_anon(&pl, pm, sp[i].start, sp[i].end)
                       : store_pages(&pl, sp[i].start / PAGE, (sp[i].end - sp[i].start) / PAGE);
    if (r < 0)
      goto out;
  }
  struct cf_layer_writer *w = pl.w;
  pl.w = NULL;
  ret = cf_image_commit(s, base, image, &pl.ch, w);
  st->pages_scanned = pl.scanned;
  st->pages_stored = pl.stored;
out:
  if (pm >= 0)
    close(pm);
  if (pl.w)
    cf_layer_writer_abort(pl.w);
  cf_changes_free(&pl.ch);
  cf_header_free(base);
  free(sp);
  return ret;
}

static void bits_set(uint64_t *b, uint64_t first, uint64_t n)
{
  for (uint64_t i = first; i < first + n; i++)
    b[i / 64] |= 1ull << (i % 64);
}

static int bits_runs(const uint64_t *b, uint64_t npages, struct cf_dirty *d)
{
  for (uint64_t i = 0; i < npages;) {
    if (!(b[i / 64] & (1ull << (i % 64)))) {
      i++;
      continue;
    }
    uint64_t j = i + 1;
    while (j < npages && (b[j / 64] & (1ull << (j % 64))))
      j++;
    if (cf_dirty_add(d, i, j - i) < 0)
      return -1;
    i = j;
  }
  return 0;
}

static int commit_branch(struct sb *sb, struct cf_store *s, const char *image, struct cf_save_stats *st)
{
  const struct cf_mem *memb = sb_memb(sb);
  const struct cf_mem_backend *be = memb->backend;
  uint64_t np = sb->mem_size / PAGE;
  struct cf_dirty scan = {0}, dirty = {0}, zeros = {0};
  uint64_t *db = calloc((np + 63) / 64, 8), *zb = calloc((np + 63) / 64, 8);
  int ret = -1;
  if (!db || !zb) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  if (cf_dirty_scan(0, sb->mem, sb->mem_size, be->dirty_kind(memb->flags), CF_DIRTY_AUTO, &scan) < 0)
    goto out;
  for (size_t i = 0; i < scan.n; i++)
    bits_set(db, scan.v[i].first, scan.v[i].count);
  for (size_t i = 0; i < sb->nreplaced; i++) {
    const struct range *r = &sb->replaced[i];
    bits_set(r->file ? db : zb, r->start / PAGE, (r->end - r->start) / PAGE);
  }
  if (sb->replaced_overflow)
    for (int i = 0; i < sb->nvma; i++)
      bits_set(db, sb->vmas[i].start / PAGE, (sb->vmas[i].end - sb->vmas[i].start) / PAGE);
  for (int i = 0; i < sb->nshmaps; i++) /* (next_private) */
    for (uint64_t p = sb->shmaps[i].start / PAGE; p < sb->shmaps[i].end / PAGE; p++)
      db[p / 64] &= ~(1ull << (p % 64));
  if (bits_runs(db, np, &dirty) < 0 || bits_runs(zb, np, &zeros) < 0)
    goto out;
  struct cf_dirty_stats ds;
  ret = cf_dirty_commit(s, template_image(sb->tmpl), image, 0, sb->mem, &dirty, &zeros,
                        be->commit_flags(memb->flags), &ds);
  st->pages_scanned = ds.blocks_read;
  st->pages_stored = ds.blocks_stored;
  st->pages_zeroed = ds.blocks_zeroed;
out:
  cf_dirty_free(&scan);
  cf_dirty_free(&dirty);
  cf_dirty_free(&zeros);
  free(db);
  free(zb);
  return ret;
}

/* A process of a forked sandbox other than the first (a branch of a
 * tree): its memory was laid out over base by fork (mm.c fork_map: the
 * parent's host mappings again, its private pages copied), a mix the dirty
 * scan cannot tell from the template's pages. So every page of the system
 * area and of its VMAs is read and stored where it differs from base
 * (CF_DIRTY_COMPARE), and every other page becomes empty: no VMA covers
 * it, so nothing can read it before a mapping puts new pages there (the
 * /tmp region is the first process's). The image stays a child of base:
 * stores what the process changed, reads O(its mapped size). */
static int commit_compare(struct sb *sb, struct cf_store *s, const char *image, const struct cf_image *base,
                          struct cf_save_stats *st)
{
  struct cf_dirty dirty = {0}, zeros = {0};
  uint64_t at = CF_VM_USER_BASE / PAGE, np = sb->mem_size / PAGE;
  int ret = -1;
  if (cf_dirty_add(&dirty, 0, at) < 0)
    goto out;
  for (int i = 0; i < sb->nvma; i++) {
    uint64_t a = sb->vmas[i].start / PAGE, b = sb->vmas[i].end / PAGE;
    if (cf_dirty_add(&zeros, at, a - at) < 0)
      goto out;
    for (uint64_t x = sb->vmas[i].start, ps, pe; next_private(sb, &x, sb->vmas[i].end, &ps, &pe);)
      if (cf_dirty_add(&dirty, ps / PAGE, (pe - ps) / PAGE) < 0) /* (a shared range: base's, never read) */
        goto out;
    at = b;
  }
  if (cf_dirty_add(&zeros, at, np - at) < 0)
    goto out;
  struct cf_dirty_stats ds;
  ret = cf_dirty_commit(s, base, image, 0, sb->mem, &dirty, &zeros, CF_DIRTY_COMPARE, &ds);
  st->pages_scanned = ds.blocks_read;
  st->pages_stored = ds.blocks_stored;
  st->pages_zeroed = ds.blocks_zeroed;
out:
  cf_dirty_free(&dirty);
  cf_dirty_free(&zeros);
  return ret;
}

static int procs_save(struct sb *sb, struct wbuf *w);

static int save_state(struct sb *sb, struct wbuf *w, const char *image, const uint8_t id[16], const char *parent)
{
  struct cf_vm_cpu cpu;
  if (cf_vm_save_cpu(sb->vm, &cpu) < 0)
    return -1;
  w_str(w, image);
  w_bytes(w, id, 16);
  w_str(w, parent);
  w_u64(w, sb->mem_size);
  w_str(w, sb->root[0] ? sb->root : "/");
  w_str(w, sb->program);
  w_u64(w, sb->ready);
  w_str(w, sb->marker);
  w_u64(w, sb->pause_pending);
  w_bytes(w, &sb->pause_regs, sizeof sb->pause_regs);
  w_u64(w, cpu.fs_base);
  w_u64(w, cpu.gs_base);
  w_bytes(w, cpu.xsave, sizeof cpu.xsave);
  /* Each subsystem writes its part, in the order of the file format. */
  mm_save(sb, w);
  fs_save_cwd(sb, w);
  sig_save(sb, w);
  task_save(sb, w);
  if (fs_save(sb, w) < 0)
    return -1;
  itimer_save(sb, w);  /* version 2 */
  task_save_ident(sb, w); /* version 3 */
  task_save_limits(sb, w); /* version 4 */
  sig_save_altstack(sb, w);
  timers_save(sb, w); /* version 5 */
  task_save_threads(sb, w); /* version 6 */
  if (proc_is_first(sb) && procs_save(sb, w) < 0) /* version 7 */
    return -1;
  task_save_sched(sb, w); /* version 8 */
  mm_save_shared(sb, w); /* version 8 */
  return w->err ? cf_fail(ENOMEM, "out of memory") : 0;
}

/* Version 7: the sandbox's other processes (process.c), after the first's
 * own state: a tag, the next pid, the first process's group and session,
 * then for each other process its identity and relations (pid, parent's
 * pid (0: the sandbox's init), group, session, exit signal, flags, stop
 * signal, and a zombie's status), and for each live one its memory image's
 * name and its own state payload (this format, its fs part only its fd
 * table: the first's file table holds every process's open files, so the
 * ones a fork shares stay shared). The processes' images were committed by
 * cf_sandbox_save (save_image_of). */
#define PROCS_TAG 0x3753434f52504343ull /* "CCPROCS7" */
enum { PF_ZOMBIE = 1, PF_STOPPED = 2, PF_STOP_REPORT = 4, PF_CONT_REPORT = 8, PF_EXECED = 16 };

static int procs_save(struct sb *sb, struct wbuf *w)
{
  int n = 0;
  struct sb *const *ps = sb->w ? proc_list(sb, &n) : NULL;
  w_u64(w, PROCS_TAG);
  w_u64(w, (uint64_t)(sb->w ? sb->next_tid : 0));
  w_u64(w, (uint64_t)sb->pgid);
  w_u64(w, (uint64_t)sb->sid);
  w_u64(w, (uint64_t)(n ? n - 1 : 0));
  for (int i = 0; i < n; i++) {
    struct sb *p = ps[i];
    if (p == sb)
      continue;
    w_u64(w, (uint64_t)p->pid);
    w_u64(w, (uint64_t)(p->parent ? p->parent->pid : 0));
    w_u64(w, (uint64_t)p->pgid);
    w_u64(w, (uint64_t)p->sid);
    w_u64(w, (uint64_t)p->exit_signal);
    w_u64(w, (p->zombie ? PF_ZOMBIE : 0) | (p->stopped ? PF_STOPPED : 0) | (p->stop_report ? PF_STOP_REPORT : 0) |
                 (p->cont_report ? PF_CONT_REPORT : 0) | (p->execed ? PF_EXECED : 0));
    w_u64(w, (uint64_t)p->stop_sig);
    w_u64(w, (uint64_t)p->wstatus);
    w_u64(w, (uint64_t)p->exit_code);
    w_u64(w, (uint64_t)p->kill_signal);
    if (p->zombie)
      continue;
    struct wbuf sub = {0};
    p->next_tid = sb->next_tid; /* the sandbox's next id (its thread list checks tids against it) */
    struct cf_header *h = cf_store_get_header(p->save_store, p->save_image);
    int r = h ? save_state(p, &sub, p->save_image, h->id, "") : -1;
    cf_header_free(h);
    if (r == 0) {
      w_str(w, p->save_image);
      w_u64(w, (uint64_t)sub.n);
      w_bytes(w, sub.p, sub.n);
    }
    free(sub.p);
    if (r < 0)
      return -1;
  }
  return w->err ? cf_fail(ENOMEM, "out of memory") : 0;
}

/* The state file: a header (magic, version, payload length, XXH3 of the
 * payload) and the payload, written crash-safely and never over an existing
 * template (templates are immutable). */
static int write_state(const char *path, const struct wbuf *w)
{
  CLEANUP_FREE uint8_t *buf = calloc(1, STATE_HDR + w->n);
  if (!buf)
    return cf_fail(ENOMEM, "out of memory");
  memcpy(buf, STATE_MAGIC, 8);
  uint32_t v = STATE_VERSION;
  memcpy(buf + 8, &v, 4);
  uint64_t len = w->n, sum = XXH3_64bits(w->p, w->n);
  memcpy(buf + 16, &len, 8);
  memcpy(buf + 24, &sum, 8);
  memcpy(buf + STATE_HDR, w->p, w->n);
  if (cf_write_file_atomic(path, buf, STATE_HDR + w->n, CF_MODE_RO, true) < 0)
    return cf_fail(errno, "%s", errno == EEXIST ? "the template exists (templates are immutable)" : cf_error());
  return 0;
}

/* Commit process sb's memory as image (a branch's: what changed since its
 * template, the first process's by its dirty scan, another's by
 * comparing; else every page it holds), its protections put back after. */
static int save_image_of(struct sb *sb, struct cf_store *s, const char *image, struct cf_save_stats *st)
{
  /* Everything readable while it is read (a PROT_NONE VMA may hold data). */
  if (mprotect(sb->mem + CF_VM_USER_BASE, sb->mem_size - CF_VM_USER_BASE, PROT_READ) < 0)
    return cf_fail(errno, "mprotect: %m");
  int r = sb->forked && proc_is_first(sb) ? commit_branch(sb, s, image, st)
          : sb->base                       ? commit_compare(sb, s, image, sb->base, st)
                                           : commit_root(sb, s, image, st);
  int e = errno;
  if (mm_apply(sb) < 0) {
    snprintf(sb->report, sizeof sb->report, "could not restore the memory protections after a save");
    sb->vm_broken = true;
    sb->exited = true;
    sb->kill_signal = SIGKILL;
  }
  errno = e;
  return r;
}

int cf_sandbox_save(struct cf_sandbox *box, struct cf_store *s, const char *name, struct cf_save_stats *st)
{
  struct sb *sb = &box->s;
  struct cf_save_stats dummy;
  if (!st)
    st = &dummy;
  memset(st, 0, sizeof *st);
  double t0 = now_us();
  if (!sb->paused || sb->exited)
    return cf_fail(EINVAL, "only a paused sandbox can be saved");
  if (sb->park && reuse_unpark(sb) < 0)
    return -1;
  char path[PATH_MAX], image[300];
  if (cf_template_path(s, name, path, sizeof path) < 0)
    return -1;
  if (access(path, F_OK) == 0)
    return cf_fail(EEXIST, "template '%s' exists (templates are immutable)", name);
  snprintf(image, sizeof image, "%s.mem", name);
  if (cf_store_check_name(image) < 0)
    return -1;
  /* A disk is committed by fs_save (after its checks) as NAME.disk. */
  snprintf(sb->save_disk, sizeof sb->save_disk, "%s.disk", name);
  if (cf_store_check_name(sb->save_disk) < 0)
    return -1;
  sb->save_store = s;
  sb->save_disk_done = false;
  sb->save_disk_bytes = 0;
  int np = 0;
  struct sb *const *ps = sb->w ? proc_list(sb, &np) : NULL;
  /* Shared memory into the /tmp region first: the first image holds it. */
  if (fs_save_prepare(sb) < 0)
    return -1;
  int r = save_image_of(sb, s, image, st);
  /* The other processes' memory, each an image of its own (NAME.mem.PID). */
  for (int i = 0; i < np && r == 0; i++) {
    struct sb *p = ps[i];
    if (p == sb || p->zombie)
      continue;
    struct cf_save_stats pst = {0};
    snprintf(p->save_image, sizeof p->save_image, "%s.mem.%d", name, p->pid);
    p->save_store = s;
    if ((r = cf_store_check_name(p->save_image)) == 0 && (r = save_image_of(p, s, p->save_image, &pst)) == 0) {
      st->pages_scanned += pst.pages_scanned;
      st->pages_stored += pst.pages_stored;
      st->pages_zeroed += pst.pages_zeroed;
    }
  }
  struct cf_header *h = r < 0 ? NULL : cf_store_get_header(s, image);
  if (!h) {
    fs_save_done(sb);
    return -1;
  }
  struct wbuf w = {0};
  r = save_state(sb, &w, image, h->id, sb->forked ? sb->tmpl->name : "");
  fs_save_done(sb);
  cf_header_free(h);
  if (r == 0)
    r = write_state(path, &w);
  if (r < 0 && sb->save_disk_done) { /* no state names it: not left behind */
    int e = cf_errno() ? cf_errno() : EIO;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cf_error());
    cf_store_remove(s, sb->save_disk);
    cf_fail(e, "%s", msg);
  }
  st->disk_bytes_stored = sb->save_disk_bytes;
  sb->save_disk_done = false;
  sb->save_store = NULL;
  st->state_bytes = w.n + STATE_HDR;
  free(w.p);
  st->save_ms = (now_us() - t0) / 1e3;
  return r;
}

/* ---- opening and forking ---- */

void cf_template_close(struct cf_template *t)
{
  if (!t)
    return;
  if (t->have_ref)
    cf_cowmap_unmap(&t->ref);
  while (t->nspares > 0) {
    t->nspares--;
    vm_free(t->spares[t->nspares].vm, t->spares[t->nspares].gm);
  }
  pthread_mutex_destroy(&t->ref_lock);
  for (int i = 0; i < t->npimgs; i++)
    cf_image_close(t->pimgs[i].img);
  free(t->pimgs);
  cf_image_close(t->disk);
  cf_image_close(t->img);
  free(t->payload);
  free(t);
}

struct cf_template *cf_template_open(struct cf_store *s, const char *name)
{
  char path[PATH_MAX];
  if (cf_template_path(s, name, path, sizeof path) < 0)
    return NULL;
  struct cf_template *t = calloc(1, sizeof *t);
  if (!t)
    return cf_fail_null(ENOMEM, "out of memory");
  t->store = s;
  pthread_mutex_init(&t->ref_lock, NULL);
  snprintf(t->name, sizeof t->name, "%s", name);
  CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
  uint8_t hdr[STATE_HDR];
  struct stat stb;
  if (fd < 0) {
    cf_fail(errno, "template '%s': %m", name);
    goto err;
  }
  if (fstat(fd, &stb) < 0 || cf_pread_full(fd, hdr, sizeof hdr, 0) != sizeof hdr ||
      memcmp(hdr, STATE_MAGIC, 8) != 0) {
    cf_fail(EINVAL, "template '%s': %s is not a cowfork state file", name, path);
    goto err;
  }
  uint32_t ver;
  uint64_t len, sum;
  memcpy(&ver, hdr + 8, 4);
  memcpy(&len, hdr + 16, 8);
  memcpy(&sum, hdr + 24, 8);
  if (ver < STATE_VERSION_MIN || ver > STATE_VERSION) {
    cf_fail(EINVAL, "template '%s': state file version %u, this cowfork reads %u-%u", name, ver, STATE_VERSION_MIN,
            STATE_VERSION);
    goto err;
  }
  if (len > MAX_STATE || (uint64_t)stb.st_size != STATE_HDR + len) {
    cf_fail(EINVAL, "template '%s': state file length does not match its header", name);
    goto err;
  }
  if (!(t->payload = malloc(len ? len : 1)) || cf_pread_full(fd, t->payload, len, STATE_HDR) != (ssize_t)len) {
    cf_fail(errno ? errno : EIO, "template '%s': reading the state file: %m", name);
    goto err;
  }
  t->len = len;
  if (XXH3_64bits(t->payload, len) != sum) {
    cf_fail(EINVAL, "template '%s': state file checksum mismatch (corrupted)", name);
    goto err;
  }
  struct rbuf r = {t->payload, len, 0, false};
  uint8_t id[16];
  r_str(&r, t->image, sizeof t->image);
  r_bytes(&r, id, 16);
  r_str(&r, t->parent, sizeof t->parent);
  t->mem_size = r_u64(&r);
  r_str(&r, t->root, sizeof t->root);
  if (r.err || t->mem_size < (16ull << 20) || t->mem_size > (4ull << 30) || t->mem_size % (2ull << 20)) {
    cf_fail(EINVAL, "template '%s': malformed state file", name);
    goto err;
  }
  if (!(t->img = cf_image_open(s, t->image)))
    goto err;
  const struct cf_header *h = cf_image_header(t->img);
  if (memcmp(h->id, id, 16) != 0 || h->size != t->mem_size || h->block_size != PAGE) {
    cf_fail(EINVAL, "template '%s': memory image '%s' is not the one it was saved with", name, t->image);
    goto err;
  }
  return t;
err:
  cf_template_close(t);
  return NULL;
}

static int map_image(void *ctx, uint8_t *addr, uint64_t size)
{
  struct guest_mem *gm = ctx;
  gm->base = addr;
  gm->size = size;
  const struct cf_sandbox_opts *o = gm->opts;
  const struct cf_mem_backend *be = o->backend ? o->backend : &cf_mem_backend_file;
  struct cf_mem_opts mo = {.img = gm->img ? gm->img : template_image(gm->tmpl), .addr = addr, .socket = o->uffd_socket,
                           .flags = be == &cf_mem_backend_uffd ? CF_MEM_TRACK : 0};
  /* Whatever the backend (the uffd server checks its own copy; shim/reuse.c
   * maps this image again later), the template's layers are checked before
   * its memory is: once per process, one atomic load after that. */
  if (cf_image_check(mo.img) < 0)
    return -1;
  if (be->map(&mo, &gm->m) < 0)
    return -1;
  gm->mapped = true;
  return 0;
}

/* The whole of guest memory, once: the backend's mapping, then whatever of
 * the VM's reservation lies beyond it (cf_vm_destroy leaves it all to us). */
static void unmap_image(void *ctx)
{
  struct guest_mem *gm = ctx;
  uint64_t done = 0;
  if (gm->mapped) {
    done = gm->m.len < gm->size ? gm->m.len : gm->size;
    gm->m.backend->unmap(&gm->m);
  }
  gm->mapped = false;
  if (done < gm->size)
    munmap(gm->base + done, gm->size - done);
}

struct cf_vm *template_new_vm(struct cf_template *t, const struct cf_sandbox_opts *opts, struct guest_mem **gmp)
{
  struct guest_mem *gm = calloc(1, sizeof *gm);
  if (!gm)
    return cf_fail_null(ENOMEM, "out of memory");
  gm->opts = opts;
  gm->tmpl = t;
  struct cf_vm_mem_source src = {.map = map_image, .unmap = unmap_image, .ctx = gm};
  struct cf_vm *vm = cf_vm_create_from(t->mem_size, &src);
  if (!vm) {
    free(gm);
    return NULL;
  }
  gm->opts = NULL; /* map_image's context only: the VM outlives the child that made it */
  gm->tmpl = NULL;
  *gmp = gm;
  return vm;
}

void vm_free(struct cf_vm *vm, struct guest_mem *gm)
{
  cf_vm_destroy(vm); /* unmaps gm's mapping too */
  free(gm);
}

bool template_put_spare(struct cf_template *t, struct cf_vm *vm, struct guest_mem *gm)
{
  pthread_mutex_lock(&t->ref_lock);
  bool ok = t->nspares < SPARES_MAX;
  if (ok)
    t->spares[t->nspares++] = (struct spare){vm, gm};
  pthread_mutex_unlock(&t->ref_lock);
  return ok;
}

bool template_take_spare(struct cf_template *t, struct cf_vm **vm, struct guest_mem **gm)
{
  pthread_mutex_lock(&t->ref_lock);
  bool ok = t->nspares > 0;
  if (ok) {
    t->nspares--;
    *vm = t->spares[t->nspares].vm;
    *gm = t->spares[t->nspares].gm;
  }
  pthread_mutex_unlock(&t->ref_lock);
  return ok;
}

#define BAD(what)                                                  \
  do {                                                             \
    cf_fail(EINVAL, "template '%s': %s", name, what);              \
    goto err;                                                      \
  } while (0)

static int procs_parse(struct sb *sb, struct rbuf *r, const char *name)
{
  uint64_t tag = r_u64(r), next = r_u64(r), pgid = r_u64(r), sid = r_u64(r), n = r_u64(r);
  const uint64_t ID_MAX = 1u << 22;
  if (r->err || tag != PROCS_TAG || next > ID_MAX || pgid >= ID_MAX || sid >= ID_MAX || n > 4096 ||
      (n && next <= (uint64_t)sb->pid) || (next && next < (uint64_t)sb->next_tid))
    return cf_fail(EINVAL, "template '%s': bad process list", name);
  sb->pgid = (int)pgid;
  sb->sid = (int)sid;
  if (!n)
    return 0;
  sb->next_tid = (int)next;
  if (!(sb->load_procs = calloc(n, sizeof *sb->load_procs)))
    return cf_fail(ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++) {
    struct proc_rec *p = &sb->load_procs[sb->nload_procs++];
    uint64_t v[10];
    for (int k = 0; k < 10; k++)
      v[k] = r_u64(r);
    /* pid, ppid, pgid, sid, exit signal, flags, stop signal, wstatus, exit code, kill signal */
    bool bad = r->err || v[0] < 2 || v[0] >= next || v[0] == (uint64_t)sb->pid || v[1] >= next || v[2] >= next ||
               v[3] >= next || v[4] > 64 || v[5] > 31 || v[6] > 64 || v[7] > 0xffff || v[8] > 255 || v[9] > 64;
    for (uint64_t k = 0; k < i && !bad; k++)
      bad = sb->load_procs[k].pid == (int)v[0];
    if (bad)
      return cf_fail(EINVAL, "template '%s': bad process %llu", name, (unsigned long long)i);
    *p = (struct proc_rec){.pid = (int)v[0], .ppid = (int)v[1], .pgid = (int)v[2], .sid = (int)v[3],
                           .exit_signal = (int)v[4], .flags = (unsigned)v[5], .stop_sig = (int)v[6],
                           .wstatus = (int)v[7], .exit_code = (int)v[8], .kill_signal = (int)v[9]};
    if (p->flags & PF_ZOMBIE)
      continue;
    r_str(r, p->image, sizeof p->image);
    uint64_t len = r_u64(r);
    if (r->err || len > r->n - r->off || cf_store_check_name(p->image) < 0)
      return cf_fail(EINVAL, "template '%s': bad process %llu", name, (unsigned long long)i);
    p->payload = r->p + r->off;
    p->len = len;
    r->off += len;
  }
  /* Each parent is the first process or one of the list, alive. */
  for (int i = 0; i < sb->nload_procs; i++) {
    int pp = sb->load_procs[i].ppid;
    bool ok = pp == 0 || pp == sb->pid;
    for (int k = 0; k < sb->nload_procs && !ok; k++)
      ok = sb->load_procs[k].pid == pp && !(sb->load_procs[k].flags & PF_ZOMBIE);
    if (!ok || pp == sb->load_procs[i].pid)
      return cf_fail(EINVAL, "template '%s': bad parent of process %d", name, sb->load_procs[i].pid);
  }
  return 0;
}

int state_parse(struct sb *sb, const uint8_t *payload, size_t len, const char *name, struct cf_vm_cpu *cpu,
                struct cf_vm_regs *regs)
{
  struct rbuf r = {payload, len, 0, false};
  char buf[PATH_MAX];
  r_str(&r, buf, sizeof buf); /* image */
  r_bytes(&r, buf, 16);
  r_str(&r, buf, sizeof buf); /* parent */
  r_u64(&r);                  /* mem_size, checked at open */
  r_str(&r, buf, sizeof buf);
  sb->rootfd = open(buf, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (sb->rootfd < 0) {
    cf_fail(errno, "template '%s': root %s: %m", name, buf);
    goto err;
  }
  snprintf(sb->root, sizeof sb->root, "%s", strcmp(buf, "/") == 0 ? "" : buf);
  r_str(&r, sb->program, sizeof sb->program);
  uint64_t ready = r_u64(&r);
  r_str(&r, sb->marker, sizeof sb->marker);
  if (ready > CF_READY_MARKER)
    BAD("bad ready mode");
  sb->resume_pending = r_u64(&r) != 0;
  r_bytes(&r, regs, sizeof *regs);
  cpu->fs_base = r_u64(&r);
  cpu->gs_base = r_u64(&r);
  r_bytes(&r, cpu->xsave, sizeof cpu->xsave);
  /* Each subsystem reads and checks its part, in the order of the format. */
  if (mm_load(sb, &r, name) < 0 || fs_load_cwd(sb, &r, name) < 0 || sig_load(sb, &r, name) < 0 ||
      task_load(sb, &r, name) < 0 || fs_load(sb, &r, name) < 0)
    goto err;
  /* Version 2: the interval timers (a version 1 payload ends here). */
  if (r.off != r.n && itimer_load(sb, &r) < 0)
    BAD("bad interval timers");
  /* Version 3: the identity (a version 1 or 2 payload ends before it). */
  if (task_load_ident(sb, &r, name) < 0)
    goto err;
  /* Version 4: the resource limits, the alternate signal stack. */
  if (task_load_limits(sb, &r, name) < 0 || sig_load_altstack(sb, &r, name) < 0)
    goto err;
  /* Version 5: the POSIX timers and the signal queue (a version 1-4
   * payload ends before them: none, and the pending signals without info). */
  if (r.off != r.n && timers_load(sb, &r, name) < 0)
    goto err;
  /* Version 6: the threads besides the one that paused (none before). */
  if (task_load_threads(sb, &r, name) < 0)
    goto err;
  /* Version 7: the other processes (the first's state only; made later,
   * procs_make). */
  if (proc_is_first(sb) && r.off != r.n && procs_parse(sb, &r, name) < 0)
    goto err;
  /* Version 8: the supplementary groups and the threads' scheduling
   * (before: the host's groups, as a new sandbox's; every CPU, SCHED_OTHER),
   * then the shared mappings (after the process list: the first's). */
  if (r.off != r.n && task_load_sched(sb, &r, name) < 0)
    goto err;
  if (r.off != r.n && mm_load_shared(sb, &r, name) < 0)
    goto err;
  if (r.off != r.n)
    BAD("trailing bytes in the state file");
  if (!sb->nload_procs)
    fs_load_done(sb); /* else when the others took their files (procs_make) */
  sb->ready = (enum cf_ready)ready;
  if (!sb->opts->branch)
    sb->ready = CF_READY_NONE;
  else
    sb->eof_pause = sb->ready == CF_READY_STDIN;
  return 0;
err:
  return -1;
}

static int load_state(struct sb *sb, struct cf_template *t)
{
  struct cf_vm_cpu *cpu = calloc(1, sizeof *cpu);
  struct cf_vm_regs regs;
  if (!cpu)
    return cf_fail(ENOMEM, "out of memory");
  int rc = state_parse(sb, t->payload, t->len, t->name, cpu, &regs);
  if (rc == 0)
    rc = cf_vm_load_cpu(sb->vm, cpu, &regs);
  free(cpu);
  return rc;
}

/* What every child of t starts with before its state is loaded, in a new VM
 * or a reused one. */
static void child_init(struct sb *sb, struct cf_template *t, const struct cf_sandbox_opts *opts, double t0)
{
  sb->t_spawn = t0;
  sb->opts = opts;
  sb->trace = opts->trace ? opts->trace : stderr;
  sb->rootfd = -1;
  sb->uid = (int)getuid();
  sb->gid = (int)getgid();
  task_init_creds(sb);
  sb->boot_ns = mono_ns(); /* a child is a new sandbox: its own uptime and boot id */
  sb->tmpl = t;
  sb->base = template_image(t);
  sb->forked = true;
}

struct cf_overlay *disk_overlay_load(struct sb *sb, const char *image, const uint8_t id[16], struct cf_image **own)
{
  struct cf_template *t = sb->tmpl;
  struct cf_store *s = t ? t->store : sb->disk_store;
  *own = NULL;
  if (!s)
    return cf_fail_null(EINVAL, "the state has a disk (%s) but no store to find it in", image);
  if (cf_store_check_name(image) < 0)
    return cf_fail_null(EINVAL, "bad disk image name in the state");
  struct cf_image *img = NULL;
  if (t)
    pthread_mutex_lock(&t->ref_lock);
  if (t && t->disk && strcmp(t->disk_name, image) == 0) {
    img = t->disk;
  } else {
    struct cf_image *im = cf_image_open(s, image);
    if (!im) {
      int e = cf_errno();
      char msg[512];
      snprintf(msg, sizeof msg, "%s", cf_error());
      cf_fail(e == ENOENT ? ENOENT : EIO, "disk image %s: %s", image, msg);
    } else if (memcmp(cf_image_header(im)->id, id, 16) != 0 || cf_image_header(im)->block_size != CF_EXTFS_BLOCK) {
      cf_fail(EINVAL, "disk image %s is not the one the state was saved with", image);
      cf_image_close(im);
    } else if (cf_image_check(im) < 0) { /* every layer's checksum, once */
      char msg[512];
      snprintf(msg, sizeof msg, "%s", cf_error());
      cf_fail(EIO, "disk image %s: %s", image, msg);
      cf_image_close(im);
    } else if (t && !t->disk) {
      t->disk = img = im;
      snprintf(t->disk_name, sizeof t->disk_name, "%s", image);
    } else {
      *own = img = im; /* no template, or a second disk name (not made by a save) */
    }
  }
  if (t)
    pthread_mutex_unlock(&t->ref_lock);
  if (!img)
    return NULL;
  char cache[PATH_MAX];
  snprintf(cache, sizeof cache, "%s/tmp", cf_store_dir(s));
  struct cf_overlay *ov = cf_overlay_new_shared(img, cache);
  if (!ov) {
    cf_image_close(*own);
    *own = NULL;
  }
  return ov;
}

/* The image of another process of t (version 7), opened once. */
static const struct cf_image *template_pimg(struct cf_template *t, const char *name)
{
  const struct cf_image *img = NULL;
  pthread_mutex_lock(&t->ref_lock);
  for (int i = 0; i < t->npimgs && !img; i++)
    if (strcmp(t->pimgs[i].name, name) == 0)
      img = t->pimgs[i].img;
  struct pimg *n = img ? NULL : realloc(t->pimgs, (size_t)(t->npimgs + 1) * sizeof *n);
  struct cf_image *im = n ? cf_image_open(t->store, name) : NULL;
  if (n)
    t->pimgs = n;
  else if (!img)
    cf_fail(ENOMEM, "out of memory");
  if (im) {
    const struct cf_header *h = cf_image_header(im);
    if (h->size != t->mem_size || h->block_size != PAGE) {
      cf_fail(EINVAL, "template '%s': memory image '%s' does not fit its sandbox", t->name, name);
      cf_image_close(im);
    } else if (cf_image_check(im) < 0) {
      cf_image_close(im);
    } else {
      snprintf(n[t->npimgs].name, sizeof n[t->npimgs].name, "%s", name);
      n[t->npimgs++].img = im;
      img = im;
    }
  }
  pthread_mutex_unlock(&t->ref_lock);
  return img;
}

/* The other processes of a template's state (version 7): each a VM
 * mapping its own image copy-on-write, its state loaded, its host thread
 * waiting for the child's first run (process.c proc_adopted_start). The
 * lock held. */
static int procs_make(struct sb *sb, struct cf_template *t, const struct cf_sandbox_opts *opts)
{
  int n = sb->nload_procs, rc = 0;
  struct sb **made = calloc(n ? (size_t)n : 1, sizeof *made);
  struct cf_vm_cpu *cpu = malloc(sizeof *cpu);
  if (!made || !cpu) {
    rc = cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  if (n)
    t->tree = true;
  for (int i = 0; i < n && rc == 0; i++) {
    const struct proc_rec *pr = &sb->load_procs[i];
    struct sb *c = calloc(1, sizeof *c);
    if (!c) {
      rc = cf_fail(ENOMEM, "out of memory");
      break;
    }
    child_init(c, t, opts, sb->t_spawn);
    c->tmpl = NULL; /* its memory is its own image's (c->base, below) */
    c->boot_ns = sb->boot_ns;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->task_cv, NULL);
    c->pid = c->tid = pr->pid;
    c->pgid = pr->pgid;
    c->sid = pr->sid;
    c->exit_signal = pr->exit_signal;
    c->stopped = pr->flags & PF_STOPPED;
    c->stop_report = pr->flags & PF_STOP_REPORT;
    c->cont_report = pr->flags & PF_CONT_REPORT;
    c->execed = pr->flags & PF_EXECED;
    c->stop_sig = pr->stop_sig;
    if (proc_adopt(sb, c) < 0) {
      task_free_creds(c);
      free(c);
      rc = -1;
      break;
    }
    made[i] = c;
    if (pr->flags & PF_ZOMBIE) {
      c->zombie = c->exited = true;
      c->wstatus = pr->wstatus;
      c->exit_code = pr->exit_code;
      c->kill_signal = pr->kill_signal;
      continue;
    }
    const struct cf_image *img = template_pimg(t, pr->image);
    struct guest_mem *gm = img ? calloc(1, sizeof *gm) : NULL;
    struct cf_vm_regs regs;
    if (img && !gm)
      cf_fail(ENOMEM, "out of memory");
    c->base = img;
    if (gm) {
      gm->opts = opts;
      gm->img = img;
      struct cf_vm_mem_source src = {.map = map_image, .unmap = unmap_image, .ctx = gm};
      c->vm = cf_vm_create_from(t->mem_size, &src);
      gm->opts = NULL;
      gm->img = NULL;
      if (!c->vm)
        free(gm);
      else
        c->gm = gm;
    }
    if (c->vm) {
      c->mem = cf_vm_mem(c->vm);
      c->mem_size = cf_vm_mem_size(c->vm);
    }
    if (!c->vm || state_parse(c, pr->payload, pr->len, t->name, cpu, &regs) < 0 ||
        (c->pid != pr->pid && cf_fail(EINVAL, "template '%s': process %d's state is another's", t->name, pr->pid)) ||
        cf_vm_load_cpu(c->vm, cpu, &regs) < 0 || mm_apply(c) < 0) {
      made[i] = NULL;
      proc_unadopt(c);
      rc = -1;
      break;
    }
    c->paused = true; /* until the child's first run */
    proc_adopted_start(c);
  }
  /* Parents: the first process or one of these (procs_parse checked). */
  for (int i = 0; i < n; i++)
    for (int k = 0; made[i] && k < n; k++)
      if (made[k] && made[k]->pid == sb->load_procs[i].ppid)
        made[i]->parent = made[k];
  for (int i = 0; i < n; i++)
    if (made[i] && sb->load_procs[i].ppid == sb->pid)
      made[i]->parent = sb;
out:
  fs_load_done(sb);
  free(sb->load_procs);
  sb->load_procs = NULL;
  sb->nload_procs = 0;
  free(made);
  free(cpu);
  return rc;
}

struct cf_sandbox *cf_template_fork(struct cf_template *t, const struct cf_sandbox_opts *opts)
{
  double t0 = now_us();
  struct cf_sandbox *box = calloc(1, sizeof *box);
  if (!box)
    return cf_fail_null(ENOMEM, "out of memory");
  struct sb *sb = &box->s;
  child_init(sb, t, opts, t0);
  /* A spare VM a parked child gave back (file backend; its memory and vCPU
   * are reset to the template's) or a new one. */
  bool spare = (!opts->backend || opts->backend == &cf_mem_backend_file) && template_take_spare(t, &sb->vm, &sb->gm);
  if (!spare && !(sb->vm = template_new_vm(t, opts, &sb->gm)))
    goto err;
  sb->mem = cf_vm_mem(sb->vm);
  sb->mem_size = cf_vm_mem_size(sb->vm);
  if (load_state(sb, t) < 0)
    goto err;
  if (sb->nshmaps)
    __atomic_store_n(&t->shared, true, __ATOMIC_RELAXED);
  if (mm_apply(sb) < 0) {
    cf_fail(errno, "applying the template's memory protections: %m");
    goto err;
  }
  pthread_mutex_lock(&sb->lock);
  int rc = procs_make(sb, t, opts);
  pthread_mutex_unlock(&sb->lock);
  if (rc < 0)
    goto err;
  return box;
err:
  cf_sandbox_free(box);
  return NULL;
}

int cf_template_refork(struct cf_template *t, struct cf_sandbox *box, const struct cf_sandbox_opts *opts)
{
  double t0 = now_us();
  struct sb *sb = &box->s;
  if (sb->tmpl != t)
    return cf_fail(ENOTSUP, "the VM ran a child of another template");
  if (t->tree || sb->w)
    return cf_fail(ENOTSUP, "a sandbox of several processes is not reused");
  if (__atomic_load_n(&t->shared, __ATOMIC_RELAXED))
    return cf_fail(ENOTSUP, "a child of a template holding shared memory is not reused");
  if (reuse_check_possible(sb, opts) < 0 || cf_vm_reset(sb->vm) < 0)
    return -1;
  /* Memory first: it needs the old child's list of replaced ranges. Its
   * VMAs are kept to compare with the template's (below). */
  bool replaced = sb->nreplaced > 0;
  if (reuse_reset_memory(sb) < 0)
    return -1;
  int nold = sb->nvma;
  struct vma *old = sb->vmas; /* the state below gets its own list */
  /* Then a shim state exactly as cf_template_fork makes it: everything of
   * the old child dropped, the template's loaded. Only the VM and the
   * memory (gm, the memory source's context, moves with the VM) stay. */
  fs_fini(sb);
  free(sb->replaced);
  task_free_held(sb);
  task_free_creds(sb);
  struct cf_vm *vm = sb->vm;
  uint8_t *mem = sb->mem;
  uint64_t mem_size = sb->mem_size;
  struct guest_mem *gm = sb->gm;
  memset(sb, 0, sizeof *sb);
  sb->vm = vm;
  sb->mem = mem;
  sb->mem_size = mem_size;
  sb->gm = gm;
  child_init(sb, t, opts, t0);
  if (load_state(sb, t) < 0) {
    free(old);
    return -1;
  }
  /* Host protections follow the VMAs (mm.c), and mapping again a replaced
   * range made it read-write: when no range was replaced and the child
   * left the VMAs as the template has them, every protection already is
   * the template's. Otherwise they are all set again (mprotect to the
   * protection a range already has is free for KVM: no invalidation). */
  bool same = !replaced && vmas_equal(old, nold, sb->vmas, sb->nvma);
  free(old);
  if (!same && mm_apply(sb) < 0)
    return cf_fail(errno, "applying the template's memory protections: %m");
  const char *chk = getenv("COWFORK_CHECK_RESET");
  if (chk && (strcmp(chk, "1") == 0 || strcmp(chk, "leak") == 0)) {
    if (reuse_check(sb) < 0)
      return -1;
    sb->t_spawn = now_us(); /* the check is not part of the spawn */
  }
  return 0;
}

struct cf_sandbox *cf_template_next(struct cf_template *t, struct cf_sandbox *keep,
                                    const struct cf_sandbox_opts *opts)
{
  if (keep) {
    if (cf_template_refork(t, keep, opts) == 0)
      return keep;
    int e = errno;
    cf_sandbox_free(keep);
    if (e == EUCLEAN) { /* the COWFORK_CHECK_RESET comparison failed: loud, no fallback */
      errno = e;
      return NULL;
    }
  }
  return cf_template_fork(t, opts);
}
