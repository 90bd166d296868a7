/* Copy-on-write ELF loading and the Linux initial stack.
 *
 * A PT_LOAD segment whose file offset and address agree modulo the page
 * size (what every linker emits) is mapped MAP_PRIVATE|MAP_FIXED from the
 * ELF file straight into the host mapping that backs guest memory: every
 * sandbox running the program shares the host page cache, and a write
 * gets a private copy. Anything else is read in (copied). sb->elf_mapped
 * and sb->elf_copied count the bytes of each.
 *
 * Static (ET_EXEC), static-pie and dynamic executables. A dynamic one
 * (PT_INTERP) gets its interpreter (Debian's ld-linux-x86-64.so.2, looked up
 * under the sandbox root like any file) loaded by a second load_image call
 * at a base chosen top-down in the mmap area, as Linux does; the program
 * starts at the interpreter's entry with AT_BASE = its base and AT_ENTRY,
 * AT_PHDR, AT_PHNUM the program's. The interpreter then maps the libraries
 * itself through mmap (mm.c do_mmap, the same copy-on-write choice).
 * A PIE program goes at ET_DYN_BASE. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

#define ET_DYN_BASE 0x1000000ull

struct image {
  uint64_t bias, entry, phdr, phnum, end;
  bool interp;
  char interp_path[256];
};

static int prot_of(uint32_t pf)
{
  return (pf & PF_R ? PROT_READ : 0) | (pf & PF_W ? PROT_WRITE : 0) | (pf & PF_X ? PROT_EXEC : 0);
}

/* at_top: an ET_DYN image goes top-down in the mmap area (the interpreter)
 * instead of at ET_DYN_BASE. */
static int load_image(struct sb *sb, int fd, const char *path, struct image *im, bool at_top)
{
  Elf64_Ehdr eh;
  if (cf_pread_full(fd, &eh, sizeof eh, 0) != sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return cf_fail(ENOEXEC, "%s: not an ELF file", path);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
      eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
    return cf_fail(ENOEXEC, "%s: not an x86-64 executable", path);
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
    return cf_fail(ENOEXEC, "%s: bad program headers", path);
  Elf64_Phdr ph[64];
  size_t phsz = eh.e_phnum * sizeof ph[0];
  if (cf_pread_full(fd, ph, phsz, eh.e_phoff) != (ssize_t)phsz)
    return cf_fail(ENOEXEC, "%s: truncated program headers", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return cf_fail(errno, "%s: %m", path);

  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 0; i < eh.e_phnum; i++) {
    if (ph[i].p_type == PT_INTERP) {
      if (ph[i].p_filesz < 2 || ph[i].p_filesz > sizeof im->interp_path ||
          cf_pread_full(fd, im->interp_path, ph[i].p_filesz, ph[i].p_offset) != (ssize_t)ph[i].p_filesz ||
          im->interp_path[ph[i].p_filesz - 1] != 0 || im->interp_path[0] != '/')
        return cf_fail(ENOEXEC, "%s: bad PT_INTERP", path);
      im->interp = true;
    }
    if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
      continue;
    if (ph[i].p_filesz > ph[i].p_memsz || ph[i].p_offset + ph[i].p_filesz < ph[i].p_offset ||
        ph[i].p_offset + ph[i].p_filesz > (uint64_t)st.st_size || ph[i].p_vaddr + ph[i].p_memsz < ph[i].p_vaddr)
      return cf_fail(ENOEXEC, "%s: bad PT_LOAD segment %d", path, i);
    if (PAGE_DOWN(ph[i].p_vaddr) < lo)
      lo = PAGE_DOWN(ph[i].p_vaddr);
    if (PAGE_UP(ph[i].p_vaddr + ph[i].p_memsz) > hi)
      hi = PAGE_UP(ph[i].p_vaddr + ph[i].p_memsz);
  }
  if (hi == 0)
    return cf_fail(ENOEXEC, "%s: no loadable segments", path);
  uint64_t bias = 0;
  if (eh.e_type == ET_DYN) {
    bias = ET_DYN_BASE - lo;
    if (at_top || !mm_is_free(sb, lo + bias, hi - lo)) {
      uint64_t a = mm_find_free(sb, hi - lo);
      if (!a)
        return cf_fail(ENOMEM, "%s: no room for %llu bytes", path, (unsigned long long)(hi - lo));
      bias = a - lo;
    }
  }
  if (lo + bias < CF_VM_USER_BASE || hi + bias > MMAP_TOP(sb->mem_size))
    return cf_fail(ENOMEM, "%s: segments at 0x%llx-0x%llx do not fit in guest memory (--mem)", path,
                   (unsigned long long)(lo + bias), (unsigned long long)(hi + bias));

  im->phdr = 0;
  for (int i = 0; i < eh.e_phnum; i++) {
    const Elf64_Phdr *p = &ph[i];
    if (p->p_type == PT_PHDR)
      im->phdr = p->p_vaddr + bias;
    if (p->p_type != PT_LOAD || p->p_memsz == 0)
      continue;
    if (!im->phdr && eh.e_phoff >= p->p_offset && eh.e_phoff + phsz <= p->p_offset + p->p_filesz)
      im->phdr = p->p_vaddr + bias + (eh.e_phoff - p->p_offset);
    int prot = prot_of(p->p_flags);
    uint64_t va = p->p_vaddr + bias, start = PAGE_DOWN(va), file_end = va + p->p_filesz;
    uint64_t mem_end = PAGE_UP(va + p->p_memsz);
    int r;
    if (p->p_filesz && (p->p_offset % PAGE) == (va % PAGE)) {
      uint64_t flen = PAGE_UP(file_end) - start;
      r = mm_map_file(sb, start, flen, prot, fd, PAGE_DOWN(p->p_offset));
      if (r < 0)
        return cf_fail(-r, "%s: mmap segment %d: %s", path, i, strerror(-r));
      sb->elf_mapped += p->p_filesz;
      /* The rest of the last file page belongs to .bss: zero it. */
      if (p->p_memsz > p->p_filesz && file_end % PAGE) {
        uint64_t n = PAGE_UP(file_end) - file_end;
        if (!(prot & PROT_WRITE))
          mprotect(sb->mem + PAGE_DOWN(file_end), PAGE, PROT_READ | PROT_WRITE);
        memset(sb->mem + file_end, 0, n);
        if (!(prot & PROT_WRITE))
          mprotect(sb->mem + PAGE_DOWN(file_end), PAGE, prot & (PROT_READ | PROT_WRITE));
      }
      if (mem_end > PAGE_UP(file_end)) {
        r = mm_map_anon(sb, PAGE_UP(file_end), mem_end - PAGE_UP(file_end), prot);
        if (r < 0)
          return cf_fail(-r, "%s: bss of segment %d: %s", path, i, strerror(-r));
      }
    } else {
      r = mm_map_anon(sb, start, mem_end - start, PROT_READ | PROT_WRITE);
      if (r < 0)
        return cf_fail(-r, "%s: segment %d: %s", path, i, strerror(-r));
      if (p->p_filesz && cf_pread_full(fd, sb->mem + va, p->p_filesz, p->p_offset) != (ssize_t)p->p_filesz)
        return cf_fail(EIO, "%s: reading segment %d: %m", path, i);
      sb->elf_copied += p->p_filesz;
      if (p->p_filesz)
        sb->pages_copied += PAGE_UP(va + p->p_filesz) / PAGE - start / PAGE;
      if (prot != (PROT_READ | PROT_WRITE) && (r = mm_protect(sb, start, mem_end - start, prot)) < 0)
        return cf_fail(-r, "%s: mprotect: %s", path, strerror(-r));
    }
  }
  im->bias = bias;
  im->entry = eh.e_entry + bias;
  im->phnum = eh.e_phnum;
  im->end = hi + bias;
  return 0;
}

/* Linux's binfmt_script: if the file at path starts with "#!", its first
 * line (within 256 bytes) names the interpreter and at most one argument:
 * 1 with them in interp and arg ("" if none), 0 for another file, or
 * -errno (ENOEXEC: the interpreter's name does not fit). */
static long script_interp(struct sb *sb, const char *path, char interp[256], char arg[256])
{
  int fd = fs_open_host(sb, AT_FDCWD, path, O_RDONLY);
  if (fd < 0)
    return fd;
  char buf[257];
  ssize_t n = cf_pread_full(fd, buf, 256, 0);
  close(fd);
  if (n < 2 || buf[0] != '#' || buf[1] != '!')
    return 0;
  buf[n] = 0;
  char *end = memchr(buf, '\n', (size_t)n);
  char *p = buf + 2;
  while (*p == ' ' || *p == '\t')
    p++;
  if (!end) { /* no newline in the buffer: the name must end before its end (Linux 5.0+) */
    char *q = p;
    while (*q && *q != ' ' && *q != '\t')
      q++;
    if (!*q)
      return -ENOEXEC;
    end = buf + n;
  }
  *end = 0;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
    *--end = 0;
  if (!*p)
    return -ENOEXEC; /* "#!" and nothing */
  char *q = p;
  while (*q && *q != ' ' && *q != '\t')
    q++;
  char *a = q;
  while (*a == ' ' || *a == '\t')
    *a++ = 0;
  *q = 0;
  snprintf(interp, 256, "%s", p);
  snprintf(arg, 256, "%s", a);
  return 1;
}

long elf_script(struct sb *sb, char *path, char (*pre)[PATH_MAX])
{
  int npre = 0;
  for (int depth = 0;; depth++) {
    char interp[256], arg[256];
    long r = script_interp(sb, path, interp, arg);
    if (r <= 0)
      return r < 0 ? r : npre;
    if (depth >= 4)
      return -ELOOP;
    /* interp [arg] path replace the earlier words' first (argv[0], or the
     * interpreter that is this script: Linux's bprm_remove_arg) */
    int k = arg[0] ? 3 : 2, keep = npre ? npre - 1 : 0;
    memmove(pre[k], pre[npre ? 1 : 0], (size_t)keep * PATH_MAX);
    snprintf(pre[0], PATH_MAX, "%s", interp);
    if (arg[0])
      snprintf(pre[1], PATH_MAX, "%s", arg);
    snprintf(pre[k - 1], PATH_MAX, "%s", path);
    npre = k + keep;
    snprintf(path, PATH_MAX, "%s", interp);
  }
}

char **elf_script_argv(char (*pre)[PATH_MAX], int npre, char *const *argv)
{
  size_t n = 0;
  while (argv && argv[n])
    n++;
  char **nv = calloc((size_t)npre + n + 1, sizeof *nv);
  bool ok = nv != NULL;
  for (int i = 0; ok && i < npre; i++)
    ok = (nv[i] = strdup(pre[i])) != NULL;
  for (size_t i = 1; ok && i < n; i++)
    ok = (nv[npre + i - 1] = strdup(argv[i])) != NULL;
  if (!ok && nv) {
    for (size_t i = 0; i < (size_t)npre + n; i++)
      free(nv[i]);
    free(nv);
    nv = NULL;
  }
  return nv;
}

long elf_probe(struct sb *sb, const char *path)
{
  int fd = fs_open_host(sb, AT_FDCWD, path, O_RDONLY);
  if (fd < 0)
    return fd;
  Elf64_Ehdr eh;
  Elf64_Phdr ph[64];
  long r = -ENOEXEC;
  if (cf_pread_full(fd, &eh, sizeof eh, 0) == sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
      eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_machine == EM_X86_64 &&
      (eh.e_type == ET_EXEC || eh.e_type == ET_DYN) && eh.e_phentsize == sizeof ph[0] && eh.e_phnum &&
      eh.e_phnum <= 64 &&
      cf_pread_full(fd, ph, eh.e_phnum * sizeof ph[0], eh.e_phoff) == (ssize_t)(eh.e_phnum * sizeof ph[0])) {
    r = 0;
    for (int i = 0; i < eh.e_phnum && r == 0; i++) {
      if (ph[i].p_type != PT_INTERP)
        continue;
      /* The interpreter must exist under the root: checked before execve's
       * point of no return. */
      char ip[256];
      if (ph[i].p_filesz < 2 || ph[i].p_filesz > sizeof ip ||
          cf_pread_full(fd, ip, ph[i].p_filesz, ph[i].p_offset) != (ssize_t)ph[i].p_filesz ||
          ip[ph[i].p_filesz - 1] != 0) {
        r = -ENOEXEC;
        break;
      }
      int ifd = fs_open_host(sb, AT_FDCWD, ip, O_RDONLY);
      if (ifd < 0)
        r = ifd == -ENOENT ? -ENOENT : -ELIBBAD;
      else
        close(ifd);
    }
  }
  close(fd);
  return r;
}

/* Push helpers: the stack is built downwards in guest memory. */
static uint64_t push_bytes(struct sb *sb, uint64_t *sp, const void *p, size_t n)
{
  *sp -= n;
  memcpy(sb->mem + *sp, p, n);
  return *sp;
}

int elf_load(struct sb *sb, int fd, const char *path, char *const *argv, char *const *envp, uint64_t *entry,
             uint64_t *sp_out)
{
  if (fd < 0)
    fd = fs_open_host(sb, AT_FDCWD, path, O_RDONLY);
  if (fd < 0)
    return cf_fail(-fd, "%s: %s", path, strerror(-fd));
  struct image im = {0}, in = {0};
  sb->mmap_top = MMAP_TOP(sb->mem_size);
  int r = load_image(sb, fd, path, &im, false);
  close(fd);
  if (r < 0)
    return -1;
  sb->brk_start = sb->brk_cur = im.end;
  uint64_t start = im.entry;
  if (im.interp) {
    int ifd = fs_open_host(sb, AT_FDCWD, im.interp_path, O_RDONLY);
    if (ifd < 0)
      return cf_fail(-ifd, "%s: its interpreter %s: %s", path, im.interp_path, strerror(-ifd));
    r = load_image(sb, ifd, im.interp_path, &in, true);
    close(ifd);
    if (r < 0)
      return -1;
    if (in.interp)
      return cf_fail(ELIBBAD, "%s: the interpreter %s has an interpreter itself", path, im.interp_path);
    start = in.entry;
  }

  /* The stack: STACK_SIZE at the top, a PROT_NONE gap below it. */
  uint64_t top = sb->mem_size;
  r = mm_map_anon(sb, top - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE);
  if (r < 0)
    return cf_fail(-r, "stack: %s", strerror(-r));
  sb->mmap_top = MMAP_TOP(top);

  size_t argc = 0, envc = 0, strsz = strlen(path) + 1 + 7 + 16;
  for (; argv[argc]; argc++)
    strsz += strlen(argv[argc]) + 1;
  for (; envp[envc]; envc++)
    strsz += strlen(envp[envc]) + 1;
  if (strsz + (argc + envc + 64) * 8 > STACK_SIZE / 4)
    return cf_fail(E2BIG, "arguments and environment too large");

  uint64_t sp = top;
  uint64_t execfn = push_bytes(sb, &sp, path, strlen(path) + 1);
  uint64_t platform = push_bytes(sb, &sp, "x86_64", 7);
  uint8_t rnd[16];
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
    memset(rnd, 0x5a, sizeof rnd);
  uint64_t random = push_bytes(sb, &sp, rnd, sizeof rnd);
  uint64_t *av = calloc(argc + envc + 2, sizeof *av);
  if (!av)
    return cf_fail(ENOMEM, "calloc: %m");
  /* The strings as Linux lays them out: the arguments, then the
   * environment, one block in ascending order (/proc/self/cmdline and
   * environ are these ranges of the program's memory). */
  size_t alen = 0, elen = 0;
  for (size_t i = 0; i < argc; i++)
    alen += strlen(argv[i]) + 1;
  for (size_t i = 0; i < envc; i++)
    elen += strlen(envp[i]) + 1;
  sp -= alen + elen;
  uint64_t at = sp;
  sb->arg_start = at;
  for (size_t i = 0; i < argc; i++) {
    size_t l = strlen(argv[i]) + 1;
    memcpy(sb->mem + at, argv[i], l);
    av[i] = at;
    at += l;
  }
  sb->arg_end = sb->env_start = at;
  for (size_t i = 0; i < envc; i++) {
    size_t l = strlen(envp[i]) + 1;
    memcpy(sb->mem + at, envp[i], l);
    av[argc + 1 + i] = at;
    at += l;
  }
  sb->env_end = at;
  sp &= ~15ull;

  uint64_t aux[][2] = {
      {AT_PHDR, im.phdr},
      {AT_PHENT, sizeof(Elf64_Phdr)},
      {AT_PHNUM, im.phnum},
      {AT_PAGESZ, PAGE},
      {AT_BASE, im.interp ? in.bias : 0},
      {AT_FLAGS, 0},
      {AT_ENTRY, im.entry},
      {AT_UID, (uint64_t)sb->uid},
      {AT_EUID, (uint64_t)sb->uid},
      {AT_GID, (uint64_t)sb->gid},
      {AT_EGID, (uint64_t)sb->gid},
      {AT_SECURE, 0},
      {AT_RANDOM, random},
      {AT_HWCAP, getauxval(AT_HWCAP)},
      {AT_HWCAP2, getauxval(AT_HWCAP2)},
      {AT_CLKTCK, 100},
      {AT_PLATFORM, platform},
      {AT_EXECFN, execfn},
      {AT_MINSIGSTKSZ, getauxval(AT_MINSIGSTKSZ) ? getauxval(AT_MINSIGSTKSZ) : 2048},
      /* the generation page (docs/sandbox.md); AT_IGNORE where the page
       * tables (an older template's) do not give it to the program */
      {cf_vm_generation_page(sb->vm) ? CF_AT_GENERATION : AT_IGNORE,
       cf_vm_generation_page(sb->vm) ? CF_VM_GENERATION_VA : 0},
      {AT_NULL, 0},
  };
  size_t nwords = 1 + argc + 1 + envc + 1 + 2 * (sizeof aux / sizeof aux[0]);
  if (nwords % 2)
    sp -= 8; /* keep rsp 16-byte aligned at entry */
  push_bytes(sb, &sp, aux, sizeof aux);
  push_bytes(sb, &sp, &(uint64_t){0}, 8);
  for (size_t i = envc; i-- > 0;)
    push_bytes(sb, &sp, &av[argc + 1 + i], 8);
  push_bytes(sb, &sp, &(uint64_t){0}, 8);
  for (size_t i = argc; i-- > 0;)
    push_bytes(sb, &sp, &av[i], 8);
  push_bytes(sb, &sp, &(uint64_t){argc}, 8);
  free(av);
  /* /proc/self/exe from now on: the program as a path from / */
  char prog[PATH_MAX];
  if (path_abs(sb->cwd, path, prog, sizeof prog) == 0 && virt_path(sb, prog, sizeof prog, true) == 0)
    snprintf(sb->program, sizeof sb->program, "%s", prog);
  *entry = start;
  *sp_out = sp;
  return 0;
}
