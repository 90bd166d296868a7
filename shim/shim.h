/* Shim internals shared by the files in shim/. The whole sandbox state is guest
 * memory + vCPU registers + struct sb (plus the host fds it names): a
 * snapshot saves exactly these. */
#ifndef COWFORK_SHIM_INTERNAL_H
#define COWFORK_SHIM_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "cowfork/shim.h"
#include "cowfork/vmm.h"

#define PAGE 4096ull
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))
#define PAGE_DOWN(x) ((x) & ~(PAGE - 1))

#define MAX_VMAS 4096
#define MAX_FDS 256
#define STACK_SIZE (8ull << 20)
#define STACK_GAP (1ull << 20)

/* One guest mapping: [start, end), PROT_* bits. */
struct vma {
  uint64_t start, end;
  int prot;
};

enum file_type { F_HOST, F_DIR, F_TMP, F_TMPDIR, F_NULL };

struct tnode; /* a file or directory of the in-sandbox /tmp */

struct file {
  int refs;
  enum file_type type;
  int hostfd;          /* F_HOST, F_DIR */
  int flags;           /* O_ACCMODE | O_APPEND | O_NONBLOCK */
  uint64_t off;        /* F_TMP, F_TMPDIR (entry index) */
  struct tnode *node;  /* F_TMP, F_TMPDIR */
  char *path;          /* sandbox path, for *at() and fchdir */
};

struct ksigaction {
  uint64_t handler, flags, restorer, mask;
};

struct sb {
  struct cf_vm *vm;
  uint8_t *mem;
  uint64_t mem_size;
  const struct cf_sandbox_opts *opts;
  FILE *trace;

  /* address space */
  struct vma vmas[MAX_VMAS];
  int nvma;
  uint64_t brk_start, brk_cur, mmap_top;

  /* files */
  int rootfd;
  char root[PATH_MAX];  /* host path of the root, no trailing slash ("" for /) */
  char cwd[PATH_MAX];   /* sandbox path */
  struct file *fds[MAX_FDS];
  bool cloexec[MAX_FDS];
  unsigned umask;
  struct tnode *tmp_root;

  /* signals (one thread) */
  struct ksigaction act[65];
  uint64_t sigmask;
  uint64_t pending;

  /* identity */
  int pid, tid, uid, gid;
  uint64_t tid_address;

  /* end */
  bool exited;
  int exit_code;
  int kill_signal;
  bool timed_out;
  char report[1024];

  /* statistics */
  uint64_t nsys, enosys;
  uint64_t elf_mapped, elf_copied;
};

/* mm.c: the guest address space (VMAs and the host mapping under them) */
int mm_map_anon(struct sb *sb, uint64_t start, uint64_t len, int prot);
int mm_map_file(struct sb *sb, uint64_t start, uint64_t len, int prot, int hostfd, uint64_t off);
int mm_unmap(struct sb *sb, uint64_t start, uint64_t len);
int mm_protect(struct sb *sb, uint64_t start, uint64_t len, int prot);
uint64_t mm_find_free(struct sb *sb, uint64_t len);
bool mm_is_free(struct sb *sb, uint64_t start, uint64_t len);
/* Host pointer to guest [addr, addr+len) if all of it is mapped with prot
 * (PROT_READ and/or PROT_WRITE), else NULL. len 0 is always valid. */
void *mm_ptr(struct sb *sb, uint64_t addr, uint64_t len, int prot);
/* Copy a NUL-terminated guest string: its length, -EFAULT or -ENAMETOOLONG. */
long mm_str(struct sb *sb, uint64_t addr, char *buf, size_t size);
int mm_copy_out(struct sb *sb, uint64_t addr, const void *src, uint64_t len);
int mm_copy_in(struct sb *sb, void *dst, uint64_t addr, uint64_t len);
const struct vma *mm_find(struct sb *sb, uint64_t addr);

/* elf.c. elf_probe: 0 if path is an executable elf_load can load, else
 * -errno (-ENOEXEC for dynamic executables, for now). */
long elf_probe(struct sb *sb, const char *path);
int elf_load(struct sb *sb, const char *path, char *const *argv, char *const *envp, uint64_t *entry,
             uint64_t *sp);

/* fs.c: files (negative errno returns) */
int fs_init(struct sb *sb, const char *root, const int stdio[3]);
void fs_fini(struct sb *sb);
/* Open a host file read-only under the root (for the loader): host fd or -errno. */
int fs_open_host(struct sb *sb, int dirfd, const char *path, int flags);
long fs_syscall(struct sb *sb, long nr, const uint64_t a[6], bool *handled);
struct file *fs_get(struct sb *sb, int fd);

/* syscall.c */
long sys_dispatch(struct sb *sb, long nr, const uint64_t a[6]);
const char *sys_name(long nr);
/* sys_dispatch's result when the handler set the registers itself. */
#define SYS_NORETURN (-4096L - 1)
/* A synchronous fault at user state u: run the handler or end the sandbox. */
void sig_fault(struct sb *sb, int sig, int code, uint64_t addr, struct cf_vm_regs *u);

/* tmpfs.c */
struct tnode *tmp_new_root(void);
void tmp_free(struct tnode *n);
bool tmp_is_tmp(const char *abs);
struct tnode *tmp_lookup(struct sb *sb, const char *abs);
/* Create (file or dir) at abs: -EEXIST, -ENOENT (no parent), -ENOTDIR. */
long tmp_create(struct sb *sb, const char *abs, bool dir, unsigned mode, struct tnode **out);
long tmp_unlink(struct sb *sb, const char *abs, bool dir);
long tmp_rename(struct sb *sb, const char *from, const char *to);
void tmp_stat(struct tnode *n, struct stat *st);
long tmp_read(struct tnode *n, void *buf, uint64_t len, uint64_t off);
long tmp_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off);
long tmp_truncate(struct tnode *n, uint64_t len);
bool tmp_is_dir(struct tnode *n);
/* The idx-th child of dir (NULL past the end), its name into name. */
struct tnode *tmp_child(struct tnode *dir, uint64_t idx, const char **name);
void tmp_ref(struct tnode *n);
void tmp_unref(struct tnode *n);

/* Lexically normalize a sandbox path against cwd into out (absolute). */
int path_abs(const char *cwd, const char *path, char *out, size_t size);

#endif
