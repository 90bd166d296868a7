/* The guest address space.
 *
 * Keeps a sorted, non-overlapping array of VMAs (sb->vmas) that mirrors the
 * host mapping of guest memory: a guest page is accessible exactly when a
 * VMA covers it, and the host range under it is mapped with the same
 * protection (anonymous or MAP_PRIVATE from a file). Unmapped guest pages
 * are host PROT_NONE, so the program faults on them (KVM_RUN -> EFAULT)
 * and the shim never dereferences them: every guest pointer goes through
 * mm_ptr, which checks the VMAs first. PROT_EXEC is recorded but not
 * enforced (the VMM's page tables map all guest memory executable).
 *
 * File mappings follow LiteBox's copy-on-write mmap: a file with a host
 * backing (a regular file under the root) is mapped MAP_PRIVATE|MAP_FIXED
 * straight from the host file into guest memory, so every sandbox on the
 * host shares its page cache and a write makes a private copy; anything
 * else (a /tmp file, which lives in guest memory) is copied. The mapping
 * is made from the guest's own open file (mm_map_host): the host mapping
 * holds the file, not an fd, so mapping costs the sandbox no host fd beyond
 * the open file the guest already counts against its RLIMIT_NOFILE (issue
 * 12: a per-sandbox cache of one dup per mapped file, kept while a sandbox
 * was parked, let six sandboxes exhaust the daemon's fds).
 *
 * The /tmp data region (tmpfs.c) is guest memory the guest has no part
 * of: mm_reserved ranges are refused to mmap (ENOMEM), skipped by munmap
 * and, having no VMA, ENOMEM to mprotect, so the host never finds it
 * PROT_NONE. A MAP_SHARED mapping (anonymous, or of a /tmp or /dev/shm
 * file) is a host memfd mapped MAP_SHARED there, shared with the children a
 * fork makes (shared memory, below); private mappings of /tmp files are
 * copies.
 *
 * mremap (sys_mremap) works on these kinds: a shared mapping is the same
 * object mapped at the new place; a private one grows with zeros in place
 * or moves as a copy of its pages; a private root-file mapping cannot grow
 * (its VMA does not keep the file: ENOMEM).
 *
 * Addresses: [CF_VM_USER_BASE, mem_size). The stack sits at the top; mmap
 * allocates top-down below it (mmap_top); brk grows up from the end of the
 * program. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

static int find_idx(struct sb *sb, uint64_t addr)
{
  /* first VMA with end > addr */
  int lo = 0, hi = sb->nvma;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (sb->vmas[mid].end <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

const struct vma *mm_find(struct sb *sb, uint64_t addr)
{
  int i = find_idx(sb, addr);
  if (i < sb->nvma && sb->vmas[i].start <= addr)
    return &sb->vmas[i];
  return NULL;
}

static bool range_ok(struct sb *sb, uint64_t start, uint64_t len)
{
  return start % PAGE == 0 && len > 0 && start >= CF_VM_USER_BASE && start + len > start &&
         start + len <= sb->mem_size;
}

static int host_prot(int prot) { return prot & (PROT_READ | PROT_WRITE); }

bool mm_reserved(struct sb *sb, uint64_t start, uint64_t len)
{
  if (!sb->tmpfs)
    return false;
  uint64_t tb = tmp_region_base(sb->tmpfs), te = tb + tmp_region_size(sb->tmpfs);
  return te > tb && start < te && start + len > tb;
}

/* ---- shared memory ----
 *
 * A MAP_SHARED mapping (anonymous, of /dev/zero, or of a /tmp or /dev/shm
 * file) is a host memfd (struct shm_obj) mapped MAP_SHARED|MAP_FIXED at the
 * guest address in the process's host range: KVM follows the host mapping,
 * so the guest's stores go to the object, and every other mapping of it,
 * in this process or another (fork maps the same object at the same place:
 * fork_map below), sees them at once; read(2) and write(2) of a file go to
 * the same object (tmpfs.c), so coherence is the kernel's. sb->shmaps
 * records which guest range maps which object from which offset: fork
 * finds the objects there, a futex word in shared memory is keyed by
 * (object, offset) (thread.c), munmap and a mapping over it drop the
 * record (a part of it: split), mprotect changes the host protection only,
 * MADV_DONTNEED leaves it (Linux drops the pages of the mapping and reads
 * the object again: the same bytes; never zeros for the others). */

struct shm_obj *shm_new(struct sb *sb, uint64_t size, int *err)
{
  struct sb *r = proc_first(sb);
  if (r->hostfiles >= SB_NOFILE(r)) {
    *err = -ENFILE;
    return NULL;
  }
  struct shm_obj *o = calloc(1, sizeof *o);
  if (!o) {
    *err = -ENOMEM;
    return NULL;
  }
  size = PAGE_UP(size);
  o->fd = memfd_create("cowfork-shm", MFD_CLOEXEC);
  if (o->fd < 0 || ftruncate(o->fd, (off_t)size) < 0) {
    *err = o->fd < 0 && (errno == EMFILE || errno == ENFILE) ? -ENFILE : -ENOMEM;
    if (o->fd >= 0)
      close(o->fd);
    free(o);
    return NULL;
  }
  o->refs = 1;
  o->size = size;
  o->hostcount = &r->hostfiles;
  r->hostfiles++;
  return o;
}

void shm_ref(struct shm_obj *o) { o->refs++; }

void shm_unref(struct shm_obj *o)
{
  if (!o || --o->refs > 0)
    return;
  (*o->hostcount)--;
  if (o->charge)
    *o->charge -= o->size / PAGE;
  close(o->fd);
  free(o);
}

int shm_grow(struct shm_obj *o, uint64_t size)
{
  size = PAGE_UP(size);
  if (size <= o->size)
    return 0;
  if (ftruncate(o->fd, (off_t)size) < 0)
    return errno == EFBIG ? -EFBIG : -ENOSPC;
  if (o->charge)
    *o->charge += (size - o->size) / PAGE;
  o->size = size;
  return 0;
}

static int shmap_add(struct sb *sb, uint64_t start, uint64_t end, struct shm_obj *o, uint64_t off, bool nowrite)
{
  if (sb->nshmaps == sb->capshmaps) {
    int cap = sb->capshmaps ? 2 * sb->capshmaps : 8;
    if (cap > MAX_VMAS)
      return -ENOMEM;
    struct shmap *p = realloc(sb->shmaps, (size_t)cap * sizeof *p);
    if (!p)
      return -ENOMEM;
    sb->shmaps = p;
    sb->capshmaps = cap;
  }
  shm_ref(o);
  sb->shmaps[sb->nshmaps++] = (struct shmap){start, end, off, o, nowrite};
  return 0;
}

struct shm_obj *mm_shared_at(struct sb *sb, uint64_t addr, uint64_t *off)
{
  for (int i = 0; i < sb->nshmaps; i++) {
    struct shmap *m = &sb->shmaps[i];
    if (m->start <= addr && addr < m->end) {
      *off = m->off + (addr - m->start);
      return m->obj;
    }
  }
  return NULL;
}

/* [start, end) of guest memory is about to be replaced or unmapped: forget
 * the shared mappings there (a part of one: the rest stays). */
static int shared_release(struct sb *sb, uint64_t start, uint64_t end)
{
  for (int i = 0; i < sb->nshmaps; i++) {
    struct shmap *m = &sb->shmaps[i];
    if (m->end <= start || m->start >= end)
      continue;
    if (m->start < start && m->end > end) { /* a hole in the middle: split */
      if (shmap_add(sb, end, m->end, m->obj, m->off + (end - m->start), m->nowrite) < 0)
        return -ENOMEM;
      sb->shmaps[i].end = start;
    } else if (m->start < start) {
      m->end = start;
    } else if (m->end > end) {
      m->off += end - m->start;
      m->start = end;
    } else {
      struct shm_obj *o = m->obj;
      sb->shmaps[i] = sb->shmaps[--sb->nshmaps];
      if (o->sysv)
        ipc_shm_detached(sb, o); /* (after the record went: nattch counts the others) */
      shm_unref(o);
      i--;
    }
  }
  return 0;
}

int mm_sync(struct sb *sb, uint64_t start, uint64_t len, int flags)
{
  if (start % PAGE || flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE) || (flags & MS_ASYNC && flags & MS_SYNC))
    return -EINVAL;
  uint64_t end = start + PAGE_UP(len);
  if (end < start)
    return -ENOMEM;
  for (uint64_t a = start; a < end;) { /* Linux: ENOMEM if part of it is unmapped */
    const struct vma *v = mm_find(sb, a);
    if (!v)
      return -ENOMEM;
    a = v->end;
  }
  return 0; /* a shared mapping is its file's memory: nothing to write back */
}

void mm_shared_fini(struct sb *sb)
{
  if (sb->mm_sharers)
    return; /* vfork children still run in this address space: dropped when the last leaves (process.c mm_release) */
  while (sb->nshmaps > 0) {
    struct shm_obj *o = sb->shmaps[--sb->nshmaps].obj;
    if (o->sysv)
      ipc_shm_detached(sb, o);
    shm_unref(o);
  }
  free(sb->shmaps);
  sb->shmaps = NULL;
  sb->nshmaps = sb->capshmaps = 0;
}

int mm_vmas_reserve(struct sb *sb, int n)
{
  if (n <= sb->capvma)
    return 0;
  if (n > MAX_VMAS)
    return -ENOMEM;
  int cap = sb->capvma ? sb->capvma : 32;
  while (cap < n)
    cap *= 2;
  if (cap > MAX_VMAS)
    cap = MAX_VMAS;
  struct vma *v = realloc(sb->vmas, (size_t)cap * sizeof *v);
  if (!v)
    return -ENOMEM;
  sb->vmas = v;
  sb->capvma = cap;
  return 0;
}

/* Remove [start, end) from the VMA list (splitting), no host change. */
static int cut(struct sb *sb, uint64_t start, uint64_t end)
{
  int i = find_idx(sb, start);
  while (i < sb->nvma && sb->vmas[i].start < end) {
    struct vma *v = &sb->vmas[i];
    if (v->start < start && v->end > end) {
      if (mm_vmas_reserve(sb, sb->nvma + 1) < 0)
        return -ENOMEM;
      v = &sb->vmas[i];
      memmove(v + 1, v, (sb->nvma - i) * sizeof *v);
      sb->nvma++;
      v[0].end = start;
      v[1].start = end;
      return 0;
    }
    if (v->start < start) {
      v->end = start;
      i++;
    } else if (v->end > end) {
      v->start = end;
      break;
    } else {
      memmove(v, v + 1, (sb->nvma - i - 1) * sizeof *v);
      sb->nvma--;
    }
  }
  return 0;
}

/* A child records every range whose host mapping it replaced since the
 * fork: a branch's dirty scan cannot see those changes (a fresh anonymous
 * range reads as zeros without a private page; a fresh file mapping has
 * file pages), so the branch stores them explicitly (snapshot.c). */
static void note_replaced(struct sb *sb, uint64_t start, uint64_t end, bool file)
{
  if (!sb->forked)
    return;
  if (sb->nreplaced == sb->capreplaced) {
    size_t cap = sb->capreplaced ? 2 * sb->capreplaced : 16;
    struct range *r = realloc(sb->replaced, cap * sizeof *r);
    if (!r) {
      sb->replaced_overflow = true; /* the branch then reads every mapped page */
      return;
    }
    sb->replaced = r;
    sb->capreplaced = cap;
  }
  sb->replaced[sb->nreplaced++] = (struct range){start, end, file};
}

static int insert(struct sb *sb, uint64_t start, uint64_t end, int prot, bool file)
{
  int r = cut(sb, start, end);
  if (r < 0)
    return r;
  int i = find_idx(sb, start);
  /* merge with neighbours of the same protection */
  if (i > 0 && sb->vmas[i - 1].end == start && sb->vmas[i - 1].prot == prot && sb->vmas[i - 1].file == file) {
    sb->vmas[i - 1].end = end;
    if (i < sb->nvma && sb->vmas[i].start == end && sb->vmas[i].prot == prot && sb->vmas[i].file == file) {
      sb->vmas[i - 1].end = sb->vmas[i].end;
      memmove(&sb->vmas[i], &sb->vmas[i + 1], (sb->nvma - i - 1) * sizeof sb->vmas[0]);
      sb->nvma--;
    }
    return 0;
  }
  if (i < sb->nvma && sb->vmas[i].start == end && sb->vmas[i].prot == prot && sb->vmas[i].file == file) {
    sb->vmas[i].start = start;
    return 0;
  }
  if (mm_vmas_reserve(sb, sb->nvma + 1) < 0)
    return -ENOMEM;
  memmove(&sb->vmas[i + 1], &sb->vmas[i], (sb->nvma - i) * sizeof sb->vmas[0]);
  sb->vmas[i] = (struct vma){start, end, prot, file};
  sb->nvma++;
  return 0;
}

int mm_map_anon(struct sb *sb, uint64_t start, uint64_t len, int prot)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len) || mm_reserved(sb, start, len))
    return -ENOMEM;
  if (sb->nshmaps && shared_release(sb, start, start + len) < 0)
    return -ENOMEM;
  if (mmap(sb->mem + start, len, host_prot(prot), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
           -1, 0) == MAP_FAILED)
    return -errno;
  note_replaced(sb, start, start + len, false);
  return insert(sb, start, start + len, prot, false);
}

int mm_map_file(struct sb *sb, uint64_t start, uint64_t len, int prot, int hostfd, uint64_t off)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len) || off % PAGE)
    return -EINVAL;
  if (mm_reserved(sb, start, len))
    return -ENOMEM;
  if (sb->nshmaps && shared_release(sb, start, start + len) < 0)
    return -ENOMEM;
  if (sb->opts->copy_files) {
    /* Forced copy (the benchmark's baseline): anonymous pages filled from
     * the file, what a loader without copy-on-write mapping does. */
    if (mmap(sb->mem + start, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
             -1, 0) == MAP_FAILED)
      return -errno;
    ssize_t n = pread(hostfd, sb->mem + start, len, (off_t)off);
    if (n < 0 || (prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE)) {
      int e = errno;
      if (mprotect(sb->mem + start, len, host_prot(prot)) < 0 || n < 0)
        return n < 0 ? -e : -errno;
    }
    note_replaced(sb, start, start + len, false);
    sb->pages_copied += PAGE_UP((uint64_t)n) / PAGE;
    return insert(sb, start, start + len, prot, false);
  }
  if (mmap(sb->mem + start, len, host_prot(prot), MAP_PRIVATE | MAP_FIXED, hostfd, (off_t)off) ==
      MAP_FAILED)
    return -errno;
  note_replaced(sb, start, start + len, true);
  sb->pages_mapped += len / PAGE;
  return insert(sb, start, start + len, prot, true);
}

long mm_map_host(struct sb *sb, uint64_t at, uint64_t len, int prot, int hostfd, uint64_t off)
{
  struct stat st;
  if (fstat(hostfd, &st) < 0)
    return -errno;
  if (!S_ISREG(st.st_mode))
    return -ENODEV;
  /* Pages wholly past the end of the file become anonymous zeros, so that
   * the VMM never touches a mapping that would raise SIGBUS. */
  uint64_t fsize = PAGE_UP((uint64_t)st.st_size), flen = 0;
  int r;
  if (off < fsize)
    flen = fsize - off < len ? fsize - off : len;
  if (flen && (r = mm_map_file(sb, at, flen, prot, hostfd, off)) < 0)
    return r;
  if (flen < len && (r = mm_map_anon(sb, at + flen, len - flen, prot)) < 0)
    return r;
  return (long)at;
}

int mm_map_shared(struct sb *sb, uint64_t start, uint64_t len, int prot, struct shm_obj *o, uint64_t off, bool nowrite)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len) || off % PAGE || off + len < off || off + len > o->size)
    return -EINVAL;
  if (mm_reserved(sb, start, len))
    return -ENOMEM;
  if (sb->nshmaps && shared_release(sb, start, start + len) < 0)
    return -ENOMEM;
  int r = mm_vmas_reserve(sb, sb->nvma + 2); /* a split of one on each side, at most */
  if (r < 0)
    return r;
  if (mmap(sb->mem + start, len, host_prot(prot), MAP_SHARED | MAP_FIXED, o->fd, (off_t)off) == MAP_FAILED)
    return -errno;
  note_replaced(sb, start, start + len, true);
  if ((r = shmap_add(sb, start, start + len, o, off, nowrite)) < 0) {
    mmap(sb->mem + start, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    cut(sb, start, start + len);
    return r;
  }
  return insert(sb, start, start + len, prot, true);
}

int mm_unmap(struct sb *sb, uint64_t start, uint64_t len)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len))
    return -EINVAL;
  if (mm_reserved(sb, start, len)) {
    /* Not the guest's: nothing of it is mapped from the guest's view, so
     * unmapping around it is what Linux does with an unmapped hole. */
    uint64_t tb = tmp_region_base(sb->tmpfs), te = tb + tmp_region_size(sb->tmpfs);
    int r = 0;
    if (start < tb)
      r = mm_unmap(sb, start, tb - start);
    if (r == 0 && start + len > te)
      r = mm_unmap(sb, te, start + len - te);
    return r;
  }
  if (sb->nshmaps && shared_release(sb, start, start + len) < 0)
    return -ENOMEM;
  if (mmap(sb->mem + start, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
           0) == MAP_FAILED)
    return -errno;
  note_replaced(sb, start, start + len, false);
  return cut(sb, start, start + len);
}

int mm_protect(struct sb *sb, uint64_t start, uint64_t len, int prot)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len))
    return -EINVAL;
  /* Linux: ENOMEM if part of the range is unmapped. */
  for (uint64_t a = start; a < start + len;) {
    const struct vma *v = mm_find(sb, a);
    if (!v)
      return -ENOMEM;
    a = v->end;
  }
  if (prot & PROT_WRITE) { /* Linux: EACCES at the first mapping that may not be written, those before it changed */
    uint64_t bad = start + len;
    for (int i = 0; i < sb->nshmaps; i++) {
      const struct shmap *m = &sb->shmaps[i];
      if (m->nowrite && m->start < start + len && m->end > start && m->start < bad)
        bad = m->start > start ? m->start : start;
    }
    if (bad < start + len) {
      int r = bad > start ? mm_protect(sb, start, bad - start, prot) : 0;
      return r < 0 ? r : -EACCES;
    }
  }
  if (mprotect(sb->mem + start, len, host_prot(prot)) < 0)
    return -errno;
  /* Piece by piece: each keeps whether it is a file mapping. */
  for (uint64_t a = start; a < start + len;) {
    const struct vma *v = mm_find(sb, a);
    uint64_t e = v->end < start + len ? v->end : start + len;
    int r = insert(sb, a, e, prot, v->file);
    if (r < 0)
      return r;
    a = e;
  }
  return 0;
}

int mm_zero(struct sb *sb, uint64_t start, uint64_t len)
{
  len = PAGE_UP(len);
  if (!range_ok(sb, start, len))
    return -EINVAL;
  for (uint64_t a = start; a < start + len;) {
    const struct vma *v = mm_find(sb, a);
    if (!v) {
      int i = find_idx(sb, a);
      a = i < sb->nvma ? sb->vmas[i].start : start + len;
      continue;
    }
    uint64_t e = v->end < start + len ? v->end : start + len;
    int prot = v->prot;
    /* A shared mapping reads its object again (Linux): the same bytes,
     * whoever wrote them. Left as it is. */
    bool shared = false;
    for (int i = 0; i < sb->nshmaps; i++) {
      struct shmap *m = &sb->shmaps[i];
      if (m->start <= a && m->end > a) {
        shared = true;
        e = m->end < e ? m->end : e;
      } else if (m->start > a && m->start < e) {
        e = m->start;
      }
    }
    if (shared) {
      a = e;
      continue;
    }
    /* A fresh anonymous range: zeros whatever backs guest memory (an
     * image mapped copy-on-write would bring its own bytes back). */
    int r = mm_map_anon(sb, a, e - a, prot);
    if (r < 0)
      return r;
    a = e;
  }
  return 0;
}

int mm_apply(struct sb *sb)
{
  uint64_t prev = CF_VM_USER_BASE;
  uint64_t tb = tmp_region_base(sb->tmpfs), te = tb + tmp_region_size(sb->tmpfs);
  for (int i = 0; i <= sb->nvma; i++) {
    uint64_t gs = i < sb->nvma ? sb->vmas[i].start : sb->mem_size;
    /* A gap is PROT_NONE, except the /tmp region in it: setting that to
     * PROT_NONE and back would make KVM drop its shadow entries. */
    uint64_t a = prev, b = gs;
    if (te > tb && tb < b && te > a) {
      if (tb > a && mprotect(sb->mem + a, tb - a, PROT_NONE) < 0)
        return -errno;
      a = te;
    }
    if (b > a && mprotect(sb->mem + a, b - a, PROT_NONE) < 0)
      return -errno;
    if (i == sb->nvma)
      break;
    const struct vma *v = &sb->vmas[i];
    if (mprotect(sb->mem + v->start, v->end - v->start, host_prot(v->prot)) < 0)
      return -errno;
    prev = v->end;
  }
  if (te > tb && mprotect(sb->mem + tb, te - tb, PROT_READ | PROT_WRITE) < 0)
    return -errno;
  return 0;
}

bool mm_is_free(struct sb *sb, uint64_t start, uint64_t len)
{
  if (!range_ok(sb, start, PAGE_UP(len)) || mm_reserved(sb, start, PAGE_UP(len)))
    return false;
  int i = find_idx(sb, start);
  return i >= sb->nvma || sb->vmas[i].start >= start + len;
}

uint64_t mm_find_free(struct sb *sb, uint64_t len)
{
  len = PAGE_UP(len);
  uint64_t top = sb->mmap_top;
  /* Walk the VMAs below top from the highest down; one that reaches
   * across top (an mremap grown in place, a MAP_FIXED) lowers it. */
  int i = find_idx(sb, top);
  if (i < sb->nvma && sb->vmas[i].start < top)
    top = sb->vmas[i].start;
  i--;
  for (;;) {
    uint64_t floor = i >= 0 ? sb->vmas[i].end : CF_VM_USER_BASE;
    uint64_t lowest = sb->brk_cur + (64ull << 20); /* leave brk room to grow */
    if (floor < lowest && top > lowest)
      floor = lowest;
    if (top >= floor + len && top - len >= CF_VM_USER_BASE)
      return top - len;
    if (i < 0)
      return 0;
    top = sb->vmas[i].start;
    i--;
  }
}

void *mm_ptr(struct sb *sb, uint64_t addr, uint64_t len, int prot)
{
  if (len == 0)
    return sb->mem; /* never dereferenced */
  if (addr + len < addr || addr + len > sb->mem_size)
    return NULL;
  for (uint64_t a = addr; a < addr + len;) {
    const struct vma *v = mm_find(sb, a);
    if (!v || (v->prot & prot) != prot)
      return NULL;
    a = v->end;
  }
  return sb->mem + addr;
}

long mm_str(struct sb *sb, uint64_t addr, char *buf, size_t size)
{
  size_t n = 0;
  while (n < size) {
    const struct vma *v = mm_find(sb, addr + n);
    if (!v || !(v->prot & PROT_READ))
      return -EFAULT;
    uint64_t avail = v->end - (addr + n);
    if (avail > size - n)
      avail = size - n;
    const char *src = (const char *)sb->mem + addr + n;
    const char *z = memchr(src, 0, avail);
    if (z) {
      memcpy(buf + n, src, (size_t)(z - src) + 1);
      return (long)(n + (size_t)(z - src));
    }
    memcpy(buf + n, src, avail);
    n += avail;
  }
  return -ENAMETOOLONG;
}

int mm_copy_out(struct sb *sb, uint64_t addr, const void *src, uint64_t len)
{
  void *p = mm_ptr(sb, addr, len, PROT_WRITE);
  if (!p)
    return -EFAULT;
  memcpy(p, src, len);
  return 0;
}

int mm_copy_in(struct sb *sb, void *dst, uint64_t addr, uint64_t len)
{
  void *p = mm_ptr(sb, addr, len, PROT_READ);
  if (!p)
    return -EFAULT;
  memcpy(dst, p, len);
  return 0;
}

/* ---- the system calls (systab.c's table) ---- */

static long do_mmap(struct sb *sb, const uint64_t a[6])
{
  uint64_t addr = A(0), len = A(1), off = A(5);
  int prot = (int)A(2), flags = (int)A(3), fd = (int)A(4);
  int type = flags & MAP_TYPE;
  if (len == 0 || off % PAGE || (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE))
    return -EINVAL;
  if (len > sb->mem_size)
    return -ENOMEM; /* Linux: more than the address space can hold */
  len = PAGE_UP(len);
  uint64_t at;
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    if (addr % PAGE)
      return -EINVAL;
    if (mm_reserved(sb, addr, len))
      return -ENOMEM; /* the shim's own memory: not part of the guest's address space */
    if ((flags & MAP_FIXED_NOREPLACE) && !mm_is_free(sb, addr, len))
      return -EEXIST;
    at = addr;
  } else if (addr && addr % PAGE == 0 && mm_is_free(sb, addr, len)) {
    at = addr;
  } else {
    at = mm_find_free(sb, len);
    if (!at)
      return -ENOMEM;
  }
  long r;
  struct file *f = NULL;
  if (!(flags & MAP_ANONYMOUS) && !(f = fs_get(sb, fd)))
    return -EBADF;
  bool zero = f && f->type == F_DEV && f->dev == 5; /* /dev/zero */
  if (f && (f->type == F_TMP || zero)) {
    int acc = f->flags & O_ACCMODE;
    if (acc == O_WRONLY || (type != MAP_PRIVATE && (prot & PROT_WRITE) && acc != O_RDWR))
      return -EACCES;
  }
  if (type != MAP_PRIVATE && (!f || zero || f->type == F_TMP)) {
    /* Shared memory (mm.c): anonymous (and /dev/zero's) a new object, a
     * /tmp file's its own (tmpfs.c). */
    int err = 0;
    struct shm_obj *o;
    if (f && f->type == F_TMP) {
      if (off + len < off)
        return -EOVERFLOW;
      o = tmp_shared(sb, f->node, off + len, &err);
      if (o)
        shm_ref(o);
    } else {
      o = shm_new(sb, len, &err);
      off = 0;
    }
    if (!o)
      return err == -ENOSPC ? -ENOMEM : err; /* a file's would not fit in /tmp */
    r = mm_map_shared(sb, at, len, prot, o, off, f && (f->flags & O_ACCMODE) != O_RDWR);
    shm_unref(o); /* the mapping's record holds it */
    return r < 0 ? r : (long)at;
  }
  if (!f || zero) {
    r = mm_map_anon(sb, at, len, prot);
    return r < 0 ? r : (long)at;
  }
  if (f->type == F_HOST) {
    /* A host backing: map the file's pages copy-on-write (mm.c). */
    if ((f->flags & O_ACCMODE) == O_WRONLY)
      return -EACCES;
    if ((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE))
      return -EACCES; /* the root is read-only: a shared writable mapping cannot be honoured */
    return mm_map_host(sb, at, len, prot, f->hostfd, off);
  }
  if (f->type == F_TMP) {
    /* A private mapping of a /tmp file: a copy (its data has no host file
     * to map copy-on-write). */
    if ((r = mm_map_anon(sb, at, len, PROT_READ | PROT_WRITE)) < 0)
      return r;
    long n = tmp_read(f->node, sb->mem + at, len, off);
    if (n > 0)
      sb->pages_copied += PAGE_UP((uint64_t)n) / PAGE;
    if (prot != (PROT_READ | PROT_WRITE) && (r = mm_protect(sb, at, len, prot)) < 0)
      return r;
    return (long)at;
  }
  return -ENODEV;
}

static long do_brk(struct sb *sb, uint64_t addr)
{
  /* Out of range (below the start, or past where mmap begins, which also
   * keeps PAGE_UP from wrapping): the break stays, as Linux. */
  if (addr < sb->brk_start || addr > sb->mmap_top)
    return (long)sb->brk_cur;
  uint64_t old = PAGE_UP(sb->brk_cur), new = PAGE_UP(addr);
  if (new > old) {
    if (!mm_is_free(sb, old, new - old) || new > sb->mmap_top)
      return (long)sb->brk_cur;
    if (mm_map_anon(sb, old, new - old, PROT_READ | PROT_WRITE) < 0)
      return (long)sb->brk_cur;
  } else if (new < old) {
    mm_unmap(sb, new, old - new);
  }
  sb->brk_cur = addr;
  return (long)addr;
}

long sys_mmap(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_mmap(sb, a);
}

long sys_munmap(struct sb *sb, const uint64_t a[6], long nr)
{
  if (A(0) % PAGE || !A(1))
    return -EINVAL;
  return mm_unmap(sb, A(0), A(1));
}

long sys_mprotect(struct sb *sb, const uint64_t a[6], long nr)
{
  if (A(0) % PAGE)
    return -EINVAL;
  return A(1) ? mm_protect(sb, A(0), A(1), (int)A(2)) : 0;
}

long sys_brk(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_brk(sb, A(0));
}

long sys_madvise(struct sb *sb, const uint64_t a[6], long nr)
{
  if (A(2) == MADV_DONTNEED && mm_ptr(sb, A(0), A(1), 0) && A(0) % PAGE == 0 && A(1))
    return mm_zero(sb, A(0), A(1));
  return 0;
}

/* mremap: Linux's checks, then by the kind of mapping at old (one VMA):
 * a shared one maps the same object (grown to cover it) at its new place,
 * so it stays shared; a private one grows in place with zeros, or moves
 * as a copy of its pages (the old range unmapped). A private mapping of a
 * root file cannot grow (its VMA does not keep the file): ENOMEM, which
 * callers take as "no room" (glibc realloc and Python's mmap.resize copy
 * instead); it can shrink and move at its size. MREMAP_DONTUNMAP: EINVAL. */
long sys_mremap(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t old = A(0), olen = A(1), nlen = A(2), naddr = A(4);
  int flags = (int)A(3);
  if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) || old % PAGE)
    return -EINVAL;
  if ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE))
    return -EINVAL;
  if (flags & MREMAP_DONTUNMAP)
    return -EINVAL; /* not done */
  if (olen > sb->mem_size || nlen > sb->mem_size)
    return nlen > sb->mem_size ? -ENOMEM : -EINVAL;
  olen = PAGE_UP(olen);
  nlen = PAGE_UP(nlen);
  if (!nlen)
    return -EINVAL;
  if (flags & MREMAP_FIXED) {
    if (naddr % PAGE)
      return -EINVAL;
    if (naddr < old + (olen ? olen : nlen) && old < naddr + nlen)
      return -EINVAL; /* the ranges overlap */
  }
  const struct vma *v = mm_find(sb, old);
  if (!v || old + olen > v->end)
    return -EFAULT;
  int prot = v->prot;
  bool file = v->file;
  uint64_t off = 0;
  struct shm_obj *o = mm_shared_at(sb, old, &off);
  bool nowrite = false;
  for (int i = 0; i < sb->nshmaps; i++)
    if (sb->shmaps[i].start <= old && old < sb->shmaps[i].end)
      nowrite = sb->shmaps[i].nowrite;
  if (!olen && !o)
    return -EINVAL; /* Linux: a second mapping of the same pages is for shared mappings only */
  if (!(flags & MREMAP_FIXED)) {
    if (nlen <= olen) {
      if (nlen < olen) {
        long r = mm_unmap(sb, old + nlen, olen - nlen);
        if (r < 0)
          return r;
      }
      return (long)old;
    }
    if (olen && mm_is_free(sb, old + olen, nlen - olen)) { /* grow in place */
      long r;
      if (o) {
        if (off + nlen < off)
          return -ENOMEM;
        if ((r = shm_grow(o, off + nlen)) < 0 ||
            (r = mm_map_shared(sb, old + olen, nlen - olen, prot, o, off + olen, nowrite)) < 0)
          return r == -EFBIG || r == -ENOSPC ? -ENOMEM : r;
        return (long)old;
      }
      if (file)
        return -ENOMEM;
      if ((r = mm_map_anon(sb, old + olen, nlen - olen, prot)) < 0)
        return r;
      return (long)old;
    }
    if (!(flags & MREMAP_MAYMOVE))
      return -ENOMEM;
  }
  if (!o && file && nlen > olen)
    return -ENOMEM;
  uint64_t at;
  if (flags & MREMAP_FIXED) {
    if (!range_ok(sb, naddr, nlen) || mm_reserved(sb, naddr, nlen))
      return -ENOMEM;
    at = naddr;
  } else if (!(at = mm_find_free(sb, nlen))) {
    return -ENOMEM;
  }
  long r;
  if (o) {
    if (off + nlen < off)
      return -ENOMEM;
    shm_ref(o); /* (unmapping the old range may drop the last record) */
    r = shm_grow(o, off + nlen);
    if (r == 0)
      r = mm_map_shared(sb, at, nlen, prot, o, off, nowrite);
    shm_unref(o);
    if (r < 0)
      return r == -EFBIG || r == -ENOSPC ? -ENOMEM : r;
  } else {
    if ((r = mm_map_anon(sb, at, nlen, PROT_READ | PROT_WRITE)) < 0)
      return r;
    uint64_t n = nlen < olen ? nlen : olen;
    if (!(prot & PROT_READ) && mprotect(sb->mem + old, n, PROT_READ) < 0)
      return -errno;
    memcpy(sb->mem + at, sb->mem + old, n);
    sb->pages_copied += n / PAGE;
    if (prot != (PROT_READ | PROT_WRITE) && (r = mm_protect(sb, at, nlen, prot)) < 0)
      return r;
  }
  if (olen && (r = mm_unmap(sb, old, olen)) < 0)
    return r;
  return (long)at;
}

long sys_msync(struct sb *sb, const uint64_t a[6], long nr)
{
  return mm_sync(sb, A(0), A(1), (int)A(2));
}

/* mlock, munlock */
long sys_mlock(struct sb *sb, const uint64_t a[6], long nr)
{
  return 0;
}

/* ---- state file (snapshot.c orchestrates) ---- */

/* The break, the mmap top and the VMA list. */
void mm_save(struct sb *sb, struct wbuf *w)
{
  w_u64(w, sb->brk_start);
  w_u64(w, sb->brk_cur);
  w_u64(w, sb->mmap_top);
  w_u64(w, (uint64_t)sb->nvma);
  for (int i = 0; i < sb->nvma; i++) {
    w_u64(w, sb->vmas[i].start);
    w_u64(w, sb->vmas[i].end);
    w_u64(w, (uint64_t)sb->vmas[i].prot | (uint64_t)sb->vmas[i].file << 8);
  }
}

#define BAD(what)                                                  \
  do {                                                             \
    cf_fail(EINVAL, "template '%s': %s", name, what);              \
    goto err;                                                      \
  } while (0)

int mm_load(struct sb *sb, struct rbuf *r, const char *name)
{
  sb->brk_start = r_u64(r);
  sb->brk_cur = r_u64(r);
  sb->mmap_top = r_u64(r);
  uint64_t nvma = r_u64(r);
  if (r->err || nvma > MAX_VMAS || sb->mmap_top > MMAP_TOP(sb->mem_size))
    BAD("malformed state file");
  if (mm_vmas_reserve(sb, (int)nvma) < 0)
    return cf_fail(ENOMEM, "out of memory");
  uint64_t prev = CF_VM_USER_BASE, tb = TMP_BASE(sb->mem_size), te = tb + TMP_SIZE(sb->mem_size);
  for (uint64_t i = 0; i < nvma; i++) {
    struct vma *v = &sb->vmas[i];
    v->start = r_u64(r);
    v->end = r_u64(r);
    uint64_t pf = r_u64(r);
    v->prot = (int)(pf & 7);
    v->file = (pf >> 8) & 1;
    if (r->err || v->start < prev || v->end <= v->start || v->end > sb->mem_size || v->start % PAGE ||
        v->end % PAGE || (v->start < te && v->end > tb) || (pf & ~0x107ull))
      BAD("bad VMA list");
    prev = v->end;
  }
  sb->nvma = (int)nvma;
  return 0;
err:
  return -1;
}

/* Version 8: the shared mappings, each naming the node its object's data
 * was saved as (tmpfs.c tmp_save_shared; fs_save refused a System V one). */
#define SHMAPS_TAG 0x3850414d48534343ull /* "CCSHMAP8" */

void mm_save_shared(struct sb *sb, struct wbuf *w)
{
  w_u64(w, SHMAPS_TAG);
  w_u64(w, (uint64_t)sb->nshmaps);
  for (int i = 0; i < sb->nshmaps; i++) {
    const struct shmap *m = &sb->shmaps[i];
    w_u64(w, m->start);
    w_u64(w, m->end);
    w_u64(w, m->off);
    w_u64(w, m->obj->save_node ? tmp_node_id(m->obj->save_node) : 0);
    w_u64(w, m->nowrite);
  }
}

int mm_load_shared(struct sb *sb, struct rbuf *r, const char *name)
{
  const struct sb *f0 = proc_first(sb);
  uint64_t tag = r_u64(r), n = r_u64(r);
  if (r->err || tag != SHMAPS_TAG || n > MAX_VMAS)
    BAD("bad shared mapping list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t start = r_u64(r), end = r_u64(r), off = r_u64(r), id = r_u64(r), nowrite = r_u64(r);
    if (r->err || start % PAGE || end % PAGE || end <= start || start < CF_VM_USER_BASE || end > sb->mem_size ||
        off % PAGE || off + (end - start) < off || off + (end - start) > (1ull << 46) || nowrite > 1 || !id ||
        id > f0->nload_nodes || !f0->load_nodes[id - 1] || tmp_is_dir(f0->load_nodes[id - 1]) ||
        mm_reserved(sb, start, end - start))
      BAD("bad shared mapping");
    for (uint64_t a = start; a < end;) { /* inside the VMAs, over no other shared mapping */
      const struct vma *v = mm_find(sb, a);
      if (!v)
        BAD("a shared mapping outside the VMAs");
      a = v->end;
    }
    for (int k = 0; k < sb->nshmaps; k++)
      if (sb->shmaps[k].start < end && start < sb->shmaps[k].end)
        BAD("overlapping shared mappings");
    int err = 0;
    struct shm_obj *o = tmp_shared(sb, f0->load_nodes[id - 1], off + (end - start), &err);
    if (!o) {
      cf_fail(-err, "template '%s': the shared memory at 0x%llx: %s", name, (unsigned long long)start,
              strerror(-err));
      goto err;
    }
    if (mmap(sb->mem + start, end - start, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, o->fd, (off_t)off) ==
        MAP_FAILED) {
      cf_fail(errno, "template '%s': mapping the shared memory at 0x%llx: %m", name, (unsigned long long)start);
      goto err;
    }
    if (shmap_add(sb, start, end, o, off, nowrite) < 0) {
      cf_fail(ENOMEM, "out of memory");
      goto err;
    }
  }
  return 0;
err:
  return -1;
}

/* ---- fork: a new VM whose memory is the parent's, copy-on-write ----
 *
 * The guest sees its host mapping (vmm.h), so a process's copy is a host
 * range laid out as the parent's: every host mapping of the parent's range
 * (PROCMAP_QUERY on /proc/self/maps: Linux 6.11+) is made again at the same
 * offset, a private file mapping from the same file (opened through
 * /proc/self/map_files: the template's layers, the program's and its
 * libraries' files) so clean file and template pages stay shared through
 * the page cache, never copied; then the pages the parent owns privately
 * (written, or anonymous: cf_dirty CF_DIRTY_ANON) are copied, read through
 * /proc/self/mem so that a page the guest made PROT_NONE copies too. The
 * cost grows with the pages the parent wrote, not with its size. A mapping
 * that cannot be opened again (no CAP_SYS_ADMIN for map_files) or a shared
 * one the shim did not make is copied whole; the shim's shared memory
 * (sb->shmaps) is mapped again from the same objects, MAP_SHARED at the
 * same places, never copied. The /tmp region is the sandbox's (its first
 * process's memory holds it, tmpfs.c): never copied. A uffd-backed parent
 * has pages its page server has not installed yet: the guest's readable
 * VMAs are copied whole (reads fault them in). */
#ifndef PROCMAP_QUERY
struct procmap_query {
  uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
  uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
  uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY 0xc0686611ul
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#endif

static int self_maps = -1, self_mem = -1;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static void self_open(void)
{
  self_maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  self_mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
}

struct fork_src {
  struct sb *parent;
  uint8_t *to;
  uint64_t size;
  int copied;        /* pieces copied whole (not openable again) */
};

/* Copy [off, off+len) of the parent's range into the child's at the same
 * offset (the child's pages writable now). */
static int copy_range(const struct fork_src *s, uint64_t off, uint64_t len)
{
  while (len) {
    ssize_t n = pread(self_mem, s->to + off, len, (off_t)(uintptr_t)(s->parent->mem + off));
    if (n <= 0)
      return cf_fail(n < 0 ? errno : EIO, "fork: copying guest memory at 0x%llx: %m", (unsigned long long)off);
    off += (uint64_t)n;
    len -= (uint64_t)n;
  }
  return 0;
}

/* Copy the pieces of [a, b) outside the /tmp region. */
static int copy_outside_tmp(const struct fork_src *s, uint64_t a, uint64_t b)
{
  uint64_t t0 = s->parent->tmpfs ? tmp_region_base(s->parent->tmpfs) : 0;
  uint64_t t1 = s->parent->tmpfs ? t0 + tmp_region_size(s->parent->tmpfs) : 0;
  if (a < t0 && copy_range(s, a, (b < t0 ? b : t0) - a) < 0)
    return -1;
  if (b > t1 && copy_range(s, a > t1 ? a : t1, b - (a > t1 ? a : t1)) < 0)
    return -1;
  return 0;
}

/* Whether the parent's shared mapping records cover guest [a, b). */
static bool shared_covers(struct sb *p, uint64_t a, uint64_t b)
{
  while (a < b) {
    int i;
    for (i = 0; i < p->nshmaps; i++)
      if (p->shmaps[i].start <= a && a < p->shmaps[i].end)
        break;
    if (i == p->nshmaps)
      return false;
    a = p->shmaps[i].end;
  }
  return true;
}

static int fork_map(void *ctx, uint8_t *to, uint64_t size)
{
  struct fork_src *s = ctx;
  struct sb *p = s->parent;
  s->to = to;
  s->size = size;
  pthread_once(&self_once, self_open);
  if (self_maps < 0 || self_mem < 0)
    return cf_fail(ENOSYS, "fork: /proc/self/maps or /proc/self/mem cannot be opened");
  /* The final protections, set once everything is copied. */
  struct piece { uint64_t off, len; int prot; } *pc = NULL;
  size_t npc = 0, cap = 0;
  uint64_t from = (uint64_t)(uintptr_t)p->mem, a = from, end = from + size;
  int rc = -1;
  while (a < end) {
    struct procmap_query q = {.size = sizeof q, .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA, .query_addr = a};
    if (ioctl(self_maps, PROCMAP_QUERY, &q) < 0) {
      if (errno == ENOENT)
        break;
      cf_fail(errno, "fork: PROCMAP_QUERY (Linux 6.11 or later): %m");
      goto out;
    }
    if (q.vma_start >= end)
      break;
    uint64_t s0 = q.vma_start > a ? q.vma_start : a, e0 = q.vma_end < end ? q.vma_end : end;
    uint64_t off = s0 - from, len = e0 - s0;
    int prot = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
               (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0);
    bool whole = false, shared = (q.vma_flags & PROCMAP_QUERY_VMA_SHARED) && shared_covers(p, off, off + len);
    if (shared) {
      /* the parent's shared memory: mapped below, the same object */
    } else if (q.inode && !(q.vma_flags & PROCMAP_QUERY_VMA_SHARED)) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/map_files/%llx-%llx", (unsigned long long)q.vma_start,
               (unsigned long long)q.vma_end);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        void *m = mmap(to + off, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                       (off_t)(q.vma_offset + (s0 - q.vma_start)));
        close(fd);
        if (m == MAP_FAILED) {
          cf_fail(errno, "fork: mapping a file into the child: %m");
          goto out;
        }
      } else {
        whole = true;
      }
    } else if (q.inode || (q.vma_flags & PROCMAP_QUERY_VMA_SHARED)) {
      whole = true; /* a shared mapping the shim did not make: the child's is a private copy */
    }
    if (!q.inode || whole || shared) { /* anonymous in the child (the VMM reserved the range so) */
      if (mmap(to + off, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
               0) == MAP_FAILED) {
        cf_fail(errno, "fork: mmap: %m");
        goto out;
      }
    }
    if (whole) {
      s->copied++;
      if (prot & PROT_READ && copy_outside_tmp(s, off, off + len) < 0)
        goto out;
    }
    if (npc == cap) {
      cap = cap ? 2 * cap : 64;
      struct piece *n = realloc(pc, cap * sizeof *pc);
      if (!n) {
        cf_fail(ENOMEM, "out of memory");
        goto out;
      }
      pc = n;
    }
    pc[npc++] = (struct piece){off, len, prot};
    a = e0;
  }
  /* The parent's private pages. */
  const struct cf_mem *memb = sb_memb(p);
  if (memb && memb->backend != &cf_mem_backend_file) {
    for (int i = 0; i < p->nvma; i++)
      if ((p->vmas[i].prot & PROT_READ) && copy_outside_tmp(s, p->vmas[i].start, p->vmas[i].end) < 0)
        goto out;
    if (copy_range(s, 0, CF_VM_USER_BASE) < 0) /* the system area */
      goto out;
  } else {
    struct cf_dirty d = {0};
    if (cf_dirty_scan(0, p->mem, size, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d) < 0)
      goto out;
    for (size_t i = 0; i < d.n; i++)
      if (copy_outside_tmp(s, d.v[i].first * PAGE, (d.v[i].first + d.v[i].count) * PAGE) < 0) {
        cf_dirty_free(&d);
        goto out;
      }
    cf_dirty_free(&d);
  }
  /* The parent's shared memory: the same objects at the same places. */
  for (int i = 0; i < p->nshmaps; i++) {
    const struct shmap *m = &p->shmaps[i];
    if (mmap(to + m->start, m->end - m->start, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m->obj->fd,
             (off_t)m->off) == MAP_FAILED) {
      cf_fail(errno, "fork: mapping shared memory into the child: %m");
      goto out;
    }
  }
  for (size_t i = 0; i < npc; i++)
    if (pc[i].prot != (PROT_READ | PROT_WRITE) && mprotect(to + pc[i].off, pc[i].len, pc[i].prot) < 0) {
      cf_fail(errno, "fork: mprotect: %m");
      goto out;
    }
  rc = 0;
out:
  free(pc);
  if (rc < 0) { /* the range stays reserved for the VMM to unmap, s ours to free */
    mmap(to, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    s->to = NULL;
  }
  return rc;
}

static void fork_unmap(void *ctx)
{
  struct fork_src *s = ctx;
  if (s->to)
    munmap(s->to, s->size);
  free(s);
}

struct cf_vm *mm_fork_vm(struct sb *parent)
{
  struct fork_src *s = calloc(1, sizeof *s);
  if (!s)
    return cf_fail_null(ENOMEM, "out of memory");
  s->parent = parent;
  struct cf_vm_mem_source src = {.map = fork_map, .unmap = fork_unmap, .ctx = s};
  struct cf_vm *vm = cf_vm_create_from(parent->mem_size, &src);
  if (!vm && !s->to)
    free(s); /* map() never ran or failed before taking the range: ours to free */
  return vm;
}
