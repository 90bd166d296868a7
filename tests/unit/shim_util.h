/* Shared by tests/unit/shim_{fs,proc,wait}.c: a struct sb over plain
 * anonymous memory, no VM and no /dev/kvm, whose system calls go to
 * sys_dispatch as the run loop would. Not a test program itself.
 *
 * shim_sb_new/shim_sb_free/shim_sys take the sandbox as an argument. Unless
 * SHIM_UTIL_NO_HARNESS is defined before the include, the header also holds
 * the one-sandbox harness of shim_fs.c and shim_proc.c: the global sb, a
 * read-write scratch VMA [SHIM_SCRATCH, +SHIM_SCRATCH_LEN) for guest
 * buffers (galloc, gs, hp), S0..S6, glist and shim_setup/shim_teardown. */
#ifndef COWFORK_TEST_SHIM_UTIL_H
#define COWFORK_TEST_SHIM_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/shim.h"

/* A sandbox state over size bytes of anonymous memory mapped with prot
 * (PROT_NONE: only what mm_map_anon maps is the guest's), options o, pid
 * and tid 2, no root fd. Aborts on failure. */
__attribute__((unused)) static struct sb *shim_sb_new(struct cf_sandbox_opts *o, uint64_t size, int prot)
{
  struct sb *s = calloc(1, sizeof *s);
  if (!s)
    abort();
  s->opts = o;
  s->trace = stderr;
  s->mem = mmap(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (s->mem == MAP_FAILED)
    abort();
  s->mem_size = size;
  s->rootfd = -1;
  s->pid = s->tid = 2;
  return s;
}

/* The memory and tables of s, and s (not its files: fs_fini first where
 * fs_init ran). */
__attribute__((unused)) static void shim_sb_free(struct sb *s)
{
  munmap(s->mem, s->mem_size);
  free(s->vmas);
  free(s->replaced);
  free(s);
}

__attribute__((unused)) static long shim_sys(struct sb *s, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                                             uint64_t a4, uint64_t a5)
{
  const uint64_t a[6] = {a0, a1, a2, a3, a4, a5};
  return sys_dispatch(s, nr, a);
}

#ifndef SHIM_UTIL_NO_HARNESS

#define SHIM_MEM (64ull << 20)
#define SHIM_SCRATCH (4ull << 20) /* a read-write VMA [4 MiB, 8 MiB) for guest buffers */
#define SHIM_SCRATCH_LEN (4ull << 20)

static struct sb *sb;
static struct cf_sandbox_opts opts;
static uint64_t bump;

#define S0(nr) shim_sys(sb, nr, 0, 0, 0, 0, 0, 0)
#define S1(nr, a) shim_sys(sb, nr, (uint64_t)(a), 0, 0, 0, 0, 0)
#define S2(nr, a, b) shim_sys(sb, nr, (uint64_t)(a), (uint64_t)(b), 0, 0, 0, 0)
#define S3(nr, a, b, c) shim_sys(sb, nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), 0, 0, 0)
#define S4(nr, a, b, c, d) shim_sys(sb, nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), (uint64_t)(d), 0, 0)
#define S5(nr, a, b, c, d, e)                                                                                  \
  shim_sys(sb, nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), (uint64_t)(d), (uint64_t)(e), 0)
#define S6(nr, a, b, c, d, e, f)                                                                               \
  shim_sys(sb, nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), (uint64_t)(d), (uint64_t)(e), (uint64_t)(f))

/* Guest scratch: n bytes (copied from p when given, zero otherwise), 16-aligned. */
__attribute__((unused)) static uint64_t galloc(const void *p, size_t n)
{
  uint64_t g = SHIM_SCRATCH + bump;
  bump += (n + 15) & ~15ul;
  if (bump > SHIM_SCRATCH_LEN)
    abort();
  if (p)
    memcpy(sb->mem + g, p, n);
  else
    memset(sb->mem + g, 0, n);
  return g;
}
__attribute__((unused)) static uint64_t gs(const char *s) { return galloc(s, strlen(s) + 1); }
/* open(2) of a guest path through the shim: the fd, or -errno */
__attribute__((unused)) static int gopen(const char *path, int flags, int mode)
{
  return (int)S3(SYS_open, gs(path), flags, mode);
}
__attribute__((unused)) static void *hp(uint64_t g) { return sb->mem + g; }

/* The names in directory dir but "." and "..", in getdents64 order, joined
 * with ' ' ("(open failed)" if it cannot be opened). */
__attribute__((unused)) static const char *glist(const char *dir)
{
  static char out[2048];
  out[0] = 0;
  int fd = (int)S3(SYS_open, gs(dir), O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0)
    return "(open failed)";
  uint64_t b = galloc(NULL, 4096);
  long n;
  while ((n = S3(SYS_getdents64, fd, b, 4096)) > 0) {
    for (long pos = 0; pos < n;) {
      uint8_t *d = (uint8_t *)hp(b) + pos;
      uint16_t rec;
      memcpy(&rec, d + 16, 2);
      const char *name = (const char *)d + 19;
      if (strcmp(name, ".") && strcmp(name, "..")) {
        if (out[0])
          strcat(out, " ");
        strncat(out, name, sizeof out - strlen(out) - 2);
      }
      pos += rec;
    }
  }
  S1(SYS_close, fd);
  return out;
}

/* sb: SHIM_MEM bytes of guest memory, stdio on /dev/null, the caller's
 * uid and gid, files under root (fs_init), the scratch VMA mapped. */
__attribute__((unused)) static void shim_setup(const char *root)
{
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  opts.stdio[0] = opts.stdio[1] = opts.stdio[2] = null;
  sb = shim_sb_new(&opts, SHIM_MEM, PROT_NONE);
  sb->uid = (int)getuid();
  sb->gid = (int)getgid();
  sb->mmap_top = MMAP_TOP(SHIM_MEM);
  sb->brk_start = sb->brk_cur = 12ull << 20;
  if (fs_init(sb, root, opts.stdio) < 0 ||
      mm_map_anon(sb, SHIM_SCRATCH, SHIM_SCRATCH_LEN, PROT_READ | PROT_WRITE) < 0)
    abort();
}

/* A new sb loaded from what fs_save wrote into w (as a template's child
 * loads it; *rc fs_load's result), the scratch VMA mapped: the caller keeps
 * the old one. */
__attribute__((unused)) static struct sb *shim_fs_reload(const struct wbuf *w, int *rc)
{
  static struct cf_sandbox_opts o2;
  o2 = opts;
  struct sb *n = shim_sb_new(&o2, SHIM_MEM, PROT_READ | PROT_WRITE);
  n->mmap_top = MMAP_TOP(SHIM_MEM);
  struct rbuf r = {w->p, w->n, 0, false};
  *rc = fs_load(n, &r, "t");
  if (mm_vmas_reserve(n, 1) < 0 || mm_map_anon(n, SHIM_SCRATCH, SHIM_SCRATCH_LEN, PROT_READ | PROT_WRITE) < 0)
    abort();
  return n;
}

__attribute__((unused)) static void shim_teardown(void)
{
  fs_fini(sb);
  shim_sb_free(sb);
  sb = NULL;
}

#endif /* SHIM_UTIL_NO_HARNESS */
#endif
