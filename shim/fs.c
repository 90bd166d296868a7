/* Files: the sandbox's fd table, the overlay of its root (ovl.c: the root
 * read-only as the lower layer, tmpfs.c's in-memory tree as the upper one),
 * its own /proc and /dev (proc.c), /dev/shm, and pipes.
 *
 * The fd table (sb->fds, sb->cloexec: nfds entries) grows on demand, by
 * doubling from 64, up to RLIMIT_NOFILE (Linux's 1024 soft, 65536 hard:
 * fd_limit) and never past MAX_FDS; a fork copies the parent's nfds
 * entries. Guest fds are not host fds: the host fds of the open files of
 * all a sandbox's processes are counted in its first process's hostfiles,
 * bounded by max_files (fd_install: ENFILE).
 *
 * The root: every host path is opened with openat2(rootfd, path,
 * RESOLVE_IN_ROOT | ...): "..", absolute symlinks and symlink loops cannot
 * reach outside it. Host files are only ever opened read-only (O_PATH for
 * stat/readlink): a write goes to the upper layer (copy-up at open, ovl.c).
 * Paths are made absolute against the sandbox cwd and normalized
 * (path_dotdot: "." dropped, ".." the parent of where the name before it
 * leads, as Linux); "/proc" and "/dev" and below are proc.c's virtual files,
 * never the host's; "/dev/shm" is its own tree (tmpfs.c); every other path
 * is looked up in the merged view by ovl_lookup, which follows symlinks
 * itself (an upper or lower one; one that leads into /proc or /dev hands
 * the new path back: OVL_VIRT) and gives the canonical path, the upper
 * node or the lower's stat. /tmp is an opaque upper directory, so the
 * root's own /tmp is never seen. Host files that are not regular files or
 * directories (device nodes, FIFOs, sockets in the root) are not opened
 * (open_abs). chmod/chown/utimes act on upper nodes (a lower entry is
 * copied up first); record locks (fcntl, flock) are kept here per sandbox.
 * A path through /proc/<pid>/fd/N (or /dev/fd/N) that a call follows to its
 * end names that fd's open file, as Linux's magic link: the file itself,
 * even renamed or unlinked (open: reopen_fd; stat, chmod, chown, utimes,
 * truncate, execve: follow_magic).
 * FIFOs (mknod S_IFIFO) are upper nodes whose open files are F_HOST files
 * on one host pipe, so that reads, writes, poll and their waits are the
 * pipes' own (fifo_open says how the node keeps its ends).
 * Every guest buffer goes through mm_ptr/mm_str: a bad pointer is -EFAULT.
 * Functions return a result or -errno, like the system calls they serve. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/extfs.h"
#include "internal.h"
#include "shim/shim.h"

#define MAX_IO (1ull << 30)

int path_abs(const char *cwd, const char *path, char *out, size_t size)
{
  char buf[2 * PATH_MAX + 2];
  if (path[0] == '/')
    snprintf(buf, sizeof buf, "%s", path);
  else
    snprintf(buf, sizeof buf, "%s/%s", cwd, path);
  /* Normalize: split on '/', drop "" and ".", ".." pops. */
  size_t n = 0;
  out[0] = 0;
  char *save, *tok = strtok_r(buf, "/", &save);
  for (; tok; tok = strtok_r(NULL, "/", &save)) {
    if (strcmp(tok, ".") == 0)
      continue;
    if (strcmp(tok, "..") == 0) {
      char *s = strrchr(out, '/');
      if (s) {
        *s = 0;
        n = (size_t)(s - out);
      }
      continue;
    }
    size_t l = strlen(tok);
    if (n + l + 2 > size)
      return -ENAMETOOLONG;
    out[n++] = '/';
    memcpy(out + n, tok, l + 1);
    n += l;
  }
  if (n == 0) {
    out[0] = '/';
    out[1] = 0;
  }
  return 0;
}

/* r, after telling the watchers (inotify.c) of a change at path when it
 * succeeded. */
static long note(struct sb *sb, long r, const char *path, uint32_t mask, bool dir)
{
  if (r >= 0)
    inotify_event(sb, path, mask, 0, dir);
  return r;
}

/* An open file's own inotify events (IN_OPEN, IN_ACCESS, IN_CLOSE_*): a
 * file or directory of the overlay or /dev/shm, by the path it was opened
 * at; none for an O_PATH file (as Linux), a pipe, socket, /proc or /dev
 * file, or the sandbox's stdio. */
static void note_file(struct sb *sb, struct file *f, uint32_t mask)
{
  if ((!proc_first(sb)->inotifies && !proc_first(sb)->dnotifies) || f->stdio >= 0 || (f->flags & O_PATH) || f->sock || f->inotify || !f->path ||
      f->path[0] != '/' || virt_is_virt(f->path))
    return;
  if (f->type == F_TMP || f->type == F_TMPDIR || f->type == F_HOST || f->type == F_DIR)
    inotify_event(sb, f->path, mask, 0, f->type == F_TMPDIR || f->type == F_DIR);
}

/* The fd table grows by doubling from 64 entries (a fork copies only
 * what the parent has), never past MAX_FDS. */
int fd_table_grow(struct sb *sb, int n)
{
  if (n <= sb->nfds)
    return 0;
  if (n > MAX_FDS)
    return -EMFILE;
  int cap = sb->nfds ? sb->nfds : 64;
  while (cap < n)
    cap *= 2;
  if (cap > MAX_FDS)
    cap = MAX_FDS;
  struct file **f = realloc(sb->fds, (size_t)cap * sizeof *f);
  if (!f)
    return -ENOMEM;
  sb->fds = f;
  bool *c = realloc(sb->cloexec, (size_t)cap * sizeof *c);
  if (!c)
    return -ENOMEM;
  sb->cloexec = c;
  memset(f + sb->nfds, 0, (size_t)(cap - sb->nfds) * sizeof *f);
  memset(c + sb->nfds, 0, (size_t)(cap - sb->nfds) * sizeof *c);
  sb->nfds = cap;
  return 0;
}

struct file *fs_get(struct sb *sb, int fd)
{
  if (fd < 0 || fd >= sb->nfds)
    return NULL;
  return sb->fds[fd];
}

struct file *file_new(enum file_type t, int hostfd, int flags, const char *path)
{
  struct file *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->refs = 1;
  f->stdio = -1;
  f->type = t;
  f->hostfd = hostfd;
  f->flags = flags;
  f->path = strdup(path ? path : "");
  if (t == F_DEV)
    f->dev = virt_dev_of(f->path);
  return f;
}

static void fifo_close(struct file *f);

void file_unref(struct file *f)
{
  if (--f->refs > 0)
    return;
  event_release(f);
  if (f->sock)
    net_release(f);
  if (f->inotify)
    inotify_release(f);
  if (f->dn_owner)
    dnotify_release(f);
  if (f->type == F_HOST && f->node)
    fifo_close(f);
  if (f->hostcount)
    (*f->hostcount)--;
  if (f->hostfd >= 0)
    close(f->hostfd);
  if (f->node)
    tmp_unref(f->node);
  if (f->timer)
    timerfd_release(f);
  free(f->vdata);
  free(f->path);
  free(f);
}

/* The lowest free fd >= min below RLIMIT_NOFILE (fd_limit), or -EMFILE.
 * A file with a host fd is counted once in the sandbox's host fds (the
 * first process's hostfiles): past its RLIMIT_NOFILE in all its processes
 * together, -ENFILE (the sandbox is the system here), so that forked
 * processes cannot hold more host fds than one (the daemon's budget,
 * docs/sandbox.md "Limits"). */
int fd_install(struct sb *sb, struct file *f, int min, bool cloexec)
{
  struct sb *r = proc_first(sb);
  bool count = f->hostfd >= 0 && !f->hostcount;
  if (count && r->hostfiles >= SB_NOFILE(r))
    return -ENFILE;
  for (int i = min, n = fd_limit(sb); i < n; i++) {
    if (i >= sb->nfds && fd_table_grow(sb, i + 1) < 0)
      return -ENOMEM;
    if (!sb->fds[i]) {
      sb->fds[i] = f;
      sb->cloexec[i] = cloexec;
      if (count) {
        f->hostcount = &r->hostfiles;
        r->hostfiles++;
      }
      return i;
    }
  }
  return -EMFILE;
}

long fs_install(struct sb *sb, struct file *f, bool cloexec) { return fd_install(sb, f, 0, cloexec); }

static void locks_on_close(struct sb *sb, struct file *f);

static void fd_close(struct sb *sb, int fd)
{
  if (fd < sb->nfds && sb->fds[fd]) {
    struct file *f = sb->fds[fd];
    locks_on_close(sb, f);
    if (f->refs == 1) /* its last close */
      note_file(sb, f, (f->flags & O_ACCMODE) != O_RDONLY ? IN_CLOSE_WRITE : IN_CLOSE_NOWRITE);
    file_unref(f);
    sb->fds[fd] = NULL;
  }
}

/* Whether host fd (opened under the root) is the root's /proc or /dev or
 * inside them (real paths: the fd's path starts with the root's). */
static bool in_root_virt(struct sb *sb, int fd)
{
  char link[64], fp[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t fl = readlink(link, fp, sizeof fp - 1);
  if (fl <= 0)
    return true;
  fp[fl] = 0;
  size_t rl = strlen(sb->root);
  if ((size_t)fl < rl || memcmp(fp, sb->root, rl) != 0)
    return false;
  return virt_is_virt(fp + rl);
}

/* Whether host fd (opened under the root) is the root's /tmp or inside it. */
static bool in_root_tmp(struct sb *sb, int fd)
{
  char link[64], fp[PATH_MAX];
  if (!sb->root_tmp) {
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int t = (int)syscall(SYS_openat2, sb->rootfd, "tmp", &how, sizeof how);
    ssize_t tl = 0;
    if (t >= 0) {
      snprintf(link, sizeof link, "/proc/self/fd/%d", t);
      tl = readlink(link, fp, sizeof fp - 1);
      close(t);
      if (tl <= 0)
        return true; /* cannot tell: refuse */
    }
    fp[tl] = 0; /* "" when the root has no /tmp */
    if (!(sb->root_tmp = strdup(fp)))
      return true;
  }
  size_t tl = strlen(sb->root_tmp);
  if (!tl)
    return false;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t fl = readlink(link, fp, sizeof fp - 1);
  if (fl <= 0)
    return true;
  if (tl == 1) /* the root's /tmp is the host's / */
    return true;
  return (size_t)fl >= tl && memcmp(fp, sb->root_tmp, tl) == 0 && ((size_t)fl == tl || fp[tl] == '/');
}

long host_openat2(struct sb *sb, const char *abs, int flags)
{
  if (virt_is_virt(abs))
    return -ENOENT; /* the sandbox's /proc and /dev are proc.c's: the root's are never seen */
  if ((strncmp(abs, "/tmp", 4) == 0 && (abs[4] == 0 || abs[4] == '/')) || tmp_is_shm(abs))
    return -ENOENT; /* the sandbox's /tmp is its own: the root's is never seen */
  /* Without symlinks first: then the path is what it says. A path through
   * a symlink is opened again following them and refused if it ends up in
   * the root's /tmp. */
  struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS};
  const char *rel = abs[1] ? abs + 1 : ".";
  long fd = syscall(SYS_openat2, sb->rootfd, rel, &how, sizeof how);
  if (fd >= 0 || errno != ELOOP)
    return fd < 0 ? -errno : fd;
  /* O_PATH first: where the symlinks lead is checked before anything is
   * opened there (opening is an access: a host /proc file, a device). */
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  how.flags = O_PATH | O_CLOEXEC | (uint64_t)(flags & (O_NOFOLLOW | O_DIRECTORY));
  fd = syscall(SYS_openat2, sb->rootfd, rel, &how, sizeof how);
  if (fd < 0)
    return -errno;
  if (in_root_tmp(sb, (int)fd) || in_root_virt(sb, (int)fd)) {
    close((int)fd);
    return -ENOENT;
  }
  if (flags & O_PATH)
    return fd;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%ld", fd);
  long h = open(link, (flags & ~(O_NOFOLLOW | O_CREAT)) | O_CLOEXEC);
  int e = errno;
  close((int)fd);
  return h < 0 ? -e : h;
}

static long follow_magic(struct sb *sb, char *abs, struct file **fp);
static long path_dotdot(struct sb *sb, const char *base, const char *path, char *out);

int fs_open_host(struct sb *sb, int dirfd, const char *path, int flags)
{
  char abs[PATH_MAX];
  (void)dirfd;
  int r = (int)path_dotdot(sb, sb->cwd, path, abs);
  struct file *mf;
  if (r < 0 || (r = (int)follow_magic(sb, abs, &mf)) < 0)
    return r;
  struct tnode *n = NULL;
  if (mf && mf->type == F_TMP) { /* execve("/proc/self/fd/N") (fexecve): the file itself */
    n = mf->node;
  } else if (mf && (mf->type == F_HOST || mf->type == F_DIR) && mf->stdio < 0 && mf->path[0] == '/' && !mf->node) {
    snprintf(abs, sizeof abs, "%s", mf->path); /* a file of the root: opened again */
  } else if (mf || virt_is_virt(abs)) { /* /proc/self/exe was followed above: nothing here is a program */
    const struct vent *v;
    int arg;
    return !mf && virt_lookup(sb, abs, &v, &arg) < 0 ? -ENOENT : -EACCES;
  }
  if (!n && tmp_is_shm(abs)) {
    long e = tmp_lookup_err(sb, abs, &n);
    if (e < 0)
      return (int)e;
  } else if (!n) {
    struct ovl o;
    long e = ovl_lookup(sb, abs, true, &o);
    if (e == OVL_VIRT)
      return -EACCES;
    if (e < 0)
      return (int)e;
    if (!o.node)
      return (int)host_openat2(sb, o.path, flags);
    n = o.node;
  }
  /* A program of the upper layer: the loader maps files, so it gets a
   * host copy (a memfd; mapped copy-on-write like any host file). */
  struct stat st;
  tmp_stat(n, &st);
  if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
    return -EACCES; /* execve(2): not a regular file, or no execute permission */
  int fd = memfd_create("cowfork-tmp", MFD_CLOEXEC);
  if (fd < 0)
    return -errno;
  char buf[65536];
  for (uint64_t off = 0; off < (uint64_t)st.st_size;) {
    long k = tmp_read(n, buf, sizeof buf, off);
    if (k <= 0 || write(fd, buf, (size_t)k) != k) {
      close(fd);
      return -EIO;
    }
    off += (uint64_t)k;
  }
  return fd;
}

/* The upper layer's "/" looks like the root's (it merges with it). */
static void root_attr(struct sb *sb)
{
  struct stat st;
  if (sb->rootfd >= 0 && fstat(sb->rootfd, &st) == 0)
    tmp_set_root_attr(sb->tmpfs, &st);
}

int fs_init(struct sb *sb, const char *root, const int stdio[3])
{
  sb->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (sb->rootfd < 0)
    return cf_fail(errno, "%s: %m", root);
  char real[PATH_MAX];
  if (!realpath(root, real))
    return cf_fail(errno, "%s: %m", root);
  snprintf(sb->root, sizeof sb->root, "%s", strcmp(real, "/") == 0 ? "" : real);
  strcpy(sb->cwd, "/");
  if (!sb->tmpfs) {
    uint64_t base = TMP_BASE(sb->mem_size);
    if (mprotect(sb->mem + base, TMP_SIZE(sb->mem_size), PROT_READ | PROT_WRITE) < 0)
      return cf_fail(errno, "tmpfs region: %m");
    sb->tmpfs = tmp_new(sb->mem, base, TMP_SIZE(sb->mem_size));
    if (!sb->tmpfs)
      return cf_fail(ENOMEM, "tmpfs: %m");
    if (sb->opts && sb->opts->disk) {
      struct cf_extfs *x = cf_extfs_open(sb->opts->disk);
      if (!x || tmp_set_disk(sb->tmpfs, x, sb->opts->disk) < 0) {
        int e = cf_errno();
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cf_error());
        if (x)
          cf_extfs_close(x);
        return cf_fail(e ? e : EIO, "--disk: %s", msg);
      }
    }
    root_attr(sb);
    /* The program cannot reach the region through its page tables either:
     * a stray store there is a SIGSEGV, as on Linux, not a change to /tmp. */
    if (sb->vm && cf_vm_guard(sb->vm, base, base + TMP_SIZE(sb->mem_size)) < 0)
      return -1;
  }
  sb->umask = 022;
  if (fd_table_grow(sb, 64) < 0)
    return cf_fail(ENOMEM, "calloc: %m");
  for (int i = 0; i < 3; i++) {
    int h = fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
    if (h < 0)
      continue; /* a closed stdio stays closed */
    int fl = fcntl(h, F_GETFL);
    struct file *f = file_new(F_HOST, h, fl < 0 ? O_RDWR : (fl & (O_ACCMODE | O_APPEND)), NULL);
    if (!f) {
      close(h);
      return cf_fail(ENOMEM, "calloc: %m");
    }
    f->stdio = i;
    sb->fds[i] = f;
  }
  return 0;
}

void fs_fini(struct sb *sb)
{
  fs_load_done(sb);
  for (int i = 0; i < sb->nfds; i++)
    fd_close(sb, i);
  free(sb->fds);
  free(sb->cloexec);
  sb->fds = NULL;
  sb->cloexec = NULL;
  sb->nfds = 0;
  net_fini(sb); /* (before the /tmp tree: its files may hold socket files) */
  free(sb->locks);
  sb->locks = NULL;
  free(sb->root_tmp);
  sb->root_tmp = NULL;
  sb->nlocks = sb->caplocks = 0;
  ipc_exit(sb);
  mm_shared_fini(sb);
  if (proc_is_first(sb))
    ipc_fini(sb);
  if (sb->rootfd >= 0)
    close(sb->rootfd);
  sb->rootfd = -1;
  if (proc_is_first(sb)) /* the first process's: every process's /tmp (process.c) */
    tmp_destroy(sb->tmpfs);
  sb->tmpfs = NULL;
}

/* path_abs with Linux's "..": the parent of what the path before it names
 * with its symlinks followed (ovl_lookup's canonical path), ENOENT or
 * ENOTDIR when that is nothing or no directory; a lexical pop would take
 * "link/.." for the directory holding the link. Lexical in /proc, /dev
 * and /dev/shm (their links are virt_path's). A path without ".." is
 * path_abs's. out: PATH_MAX bytes. */
static long path_dotdot(struct sb *sb, const char *base, const char *path, char *out)
{
  const char *d = strstr(path, "..");
  while (d && !((d == path || d[-1] == '/') && (!d[2] || d[2] == '/')))
    d = strstr(d + 2, "..");
  if (!d)
    return path_abs(base, path, out, PATH_MAX);
  char buf[2 * PATH_MAX + 2];
  if (path[0] == '/')
    snprintf(buf, sizeof buf, "%s", path);
  else
    snprintf(buf, sizeof buf, "%s/%s", base, path);
  size_t n = 0;
  out[0] = 0;
  char *save, *tok = strtok_r(buf, "/", &save);
  for (; tok; tok = strtok_r(NULL, "/", &save)) {
    if (!strcmp(tok, "."))
      continue;
    if (!strcmp(tok, "..")) {
      struct ovl o;
      long r;
      if (n && !virt_is_virt(out) && !tmp_is_shm(out)) {
        if ((r = ovl_lookup(sb, out, true, &o)) < 0)
          return r;
        if (r == 0 && !S_ISDIR(o.st.st_mode))
          return -ENOTDIR;
        snprintf(out, PATH_MAX, "%s", strcmp(o.path, "/") ? o.path : "");
        n = strlen(out);
      }
      char *s = strrchr(out, '/');
      if (s) {
        *s = 0;
        n = (size_t)(s - out);
      }
      continue;
    }
    size_t l = strlen(tok);
    if (n + l + 2 > PATH_MAX)
      return -ENAMETOOLONG;
    out[n++] = '/';
    memcpy(out + n, tok, l + 1);
    n += l;
  }
  if (n == 0)
    strcpy(out, "/");
  return 0;
}

/* Resolve (dirfd, guest path) into a normalized absolute sandbox path;
 * *slash: the path ends in "/" (or "/.", "/.."): its last name must be a
 * directory (the caller's to check: resolve does for lookups). */
static long resolve_at(struct sb *sb, int dirfd, uint64_t gpath, char *abs, bool allow_empty, bool *slash)
{
  char path[PATH_MAX];
  long r = mm_str(sb, gpath, path, sizeof path);
  if (r < 0)
    return r;
  if (!path[0] && !allow_empty)
    return -ENOENT;
  size_t pl = strlen(path);
  *slash = pl && (path[pl - 1] == '/' || (path[pl - 1] == '.' && (pl == 1 || path[pl - 2] == '/')) ||
                  (pl >= 2 && !strcmp(path + pl - 2, "..") && (pl == 2 || path[pl - 3] == '/')));
  const char *base = sb->cwd;
  if (path[0] != '/' && dirfd != AT_FDCWD) {
    struct file *f = fs_get(sb, dirfd);
    if (!f)
      return -EBADF;
    if (f->type != F_DIR && f->type != F_TMPDIR && f->type != F_VDIR && path[0])
      return -ENOTDIR;
    base = f->path;
  }
  long r2 = path_dotdot(sb, base, path, abs);
  /* The links of /proc and /dev on the way (the last component's are the
   * caller's to follow or not). */
  return r2 < 0 ? r2 : virt_path(sb, abs, PATH_MAX, false);
}

static long stat_abs(struct sb *sb, const char *abs, bool nofollow, struct stat *st);

/* resolve_at for a call that looks its path up: a trailing "/" on a name
 * that is no directory (its symlink followed) is ENOTDIR, as Linux. */
static long resolve(struct sb *sb, int dirfd, uint64_t gpath, char *abs, bool allow_empty)
{
  bool slash;
  struct stat st;
  long r = resolve_at(sb, dirfd, gpath, abs, allow_empty, &slash);
  if (r == 0 && slash && strcmp(abs, "/") && stat_abs(sb, abs, false, &st) == 0 && !S_ISDIR(st.st_mode))
    return -ENOTDIR;
  return r;
}

/* For a call that follows its path to the end (stat, chmod, chown, utimes,
 * truncate, execve): 0 and the open file abs names through a
 * /proc/<pid>/fd/N (or /dev/fd/N) link into *fp, as Linux's magic link (the
 * file itself, whatever its path now), else *fp NULL and abs rewritten
 * through the other links of /proc on the way (/proc/self/cwd: the cwd);
 * -errno for a bad link. abs: PATH_MAX bytes. */
static long follow_magic(struct sb *sb, char *abs, struct file **fp)
{
  *fp = NULL;
  if (!virt_is_virt(abs))
    return 0;
  long r = virt_path(sb, abs, PATH_MAX, true);
  if (r < 0 || !virt_is_virt(abs))
    return r;
  const struct vent *v;
  int arg;
  if (virt_lookup(sb, abs, &v, &arg) == 0 && virt_is_fd(v))
    *fp = virt_fd_file(sb, arg);
  return 0;
}

static long file_stat(struct sb *sb, struct file *f, struct stat *st);

static long stat_abs(struct sb *sb, const char *abs, bool nofollow, struct stat *st)
{
  if (tmp_is_shm(abs)) {
    struct tnode *n;
    long r = tmp_lookup_err(sb, abs, &n);
    if (r == 0)
      tmp_stat(n, st);
    return r;
  }
  if (virt_is_virt(abs)) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", abs);
    long r = virt_path(sb, p, sizeof p, !nofollow);
    if (r < 0)
      return r;
    if (!virt_is_virt(p))
      return stat_abs(sb, p, nofollow, st);
    const struct vent *v;
    int arg;
    if ((r = virt_lookup(sb, p, &v, &arg)) < 0)
      return r;
    if (virt_is_fd(v) && !nofollow)
      return file_stat(sb, virt_fd_file(sb, arg), st);
    virt_stat(sb, v, st);
    return 0;
  }
  struct ovl o;
  long r = ovl_lookup(sb, abs, !nofollow, &o);
  if (r == OVL_VIRT)
    return stat_abs(sb, o.path, nofollow, st);
  if (r == 0)
    *st = o.st;
  return r;
}

long fs_file_stat(struct sb *sb, struct file *f, struct stat *st) { return file_stat(sb, f, st); }

static long file_stat(struct sb *sb, struct file *f, struct stat *st)
{
  switch (f->type) {
  case F_HOST:
  case F_DIR:
    if (f->node) { /* a FIFO: its node, as Linux's fstat of a FIFO's fd (not the pipe's) */
      tmp_stat(f->node, st);
      return 0;
    }
    if (fstat(f->hostfd, st) < 0)
      return -errno;
    if (f->sock)
      net_stat(f, st);
    return 0;
  case F_TMP:
  case F_TMPDIR:
    tmp_stat(f->node, st);
    return 0;
  case F_DEV:
    virt_dev_stat(f, st);
    return 0;
  case F_VIRT:
    virt_stat(sb, f->vent, st);
    return 0;
  case F_VDIR: {
    const struct vent *v;
    int arg;
    if (virt_lookup(sb, f->path, &v, &arg) < 0)
      return -ENOENT; /* an fd directory whose fd closed */
    virt_stat(sb, v, st);
    return 0;
  }
  case F_EVENTFD:
  case F_SIGNALFD:
  case F_EPOLL:
  case F_TIMERFD:
  case F_PIDFD:
    /* Linux's anonymous inode: mode 0600 and no file type, owned by root */
    memset(st, 0, sizeof *st);
    st->st_mode = S_IRUSR | S_IWUSR;
    st->st_nlink = 1;
    st->st_blksize = 4096;
    st->st_dev = makedev(0, 14);
    st->st_ino = 1;
    return 0;
  }
  return -EBADF;
}

static void stat_to_statx(const struct stat *st, struct statx *x)
{
  memset(x, 0, sizeof *x);
  x->stx_mask = STATX_BASIC_STATS;
  x->stx_blksize = (uint32_t)st->st_blksize;
  x->stx_nlink = (uint32_t)st->st_nlink;
  x->stx_uid = st->st_uid;
  x->stx_gid = st->st_gid;
  x->stx_mode = (uint16_t)st->st_mode;
  x->stx_ino = st->st_ino;
  x->stx_size = (uint64_t)st->st_size;
  x->stx_blocks = (uint64_t)st->st_blocks;
  x->stx_atime.tv_sec = st->st_atim.tv_sec;
  x->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
  x->stx_mtime.tv_sec = st->st_mtim.tv_sec;
  x->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
  x->stx_ctime.tv_sec = st->st_ctim.tv_sec;
  x->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
  x->stx_rdev_major = major(st->st_rdev);
  x->stx_rdev_minor = minor(st->st_rdev);
  x->stx_dev_major = major(st->st_dev);
  x->stx_dev_minor = minor(st->st_dev);
}

static long open_abs(struct sb *sb, char *abs, int flags, unsigned mode, struct file **out, int depth);

/* ---- FIFOs ----
 *
 * A FIFO's open files are F_HOST files (f->node: the FIFO's node, for
 * fstat, chmod and the counts), each with its own host fd of one host pipe,
 * non-blocking as every host pipe here (a blocking read or write waits in
 * host_wait). So that the pipe's own EOF and EPIPE are the FIFO's, the node
 * holds a read end only while the FIFO has a reader and a write end only
 * while it has a writer (struct fifo): after the last writer's close the
 * pipe has no writer (readers read EOF), after the last reader's no reader
 * (a write is EPIPE and SIGPIPE), and with neither no fd of it is left and
 * its data goes, as Linux frees a FIFO's buffer then. A new end is a dup of
 * a held end of its direction, or an open of /proc/self/fd/N of a held end
 * (Linux opens a pipe through that link in either direction; the pipe then
 * has a reader, so a non-blocking O_WRONLY open of it cannot be ENXIO); the
 * first open makes the pipe. Opens wait as Linux's fifo_open: O_RDONLY until
 * a writer opens, O_WRONLY until a reader opens (with O_NONBLOCK and no
 * reader: ENXIO), O_RDWR never; a signal ends the wait (the open restarts
 * under SA_RESTART), and so does the sandbox's end. */
static long fifo_fd(struct fifo *p, int acc)
{
  int h;
  if (acc == O_RDONLY && p->rd >= 0) {
    h = fcntl(p->rd, F_DUPFD_CLOEXEC, 3);
  } else if (acc == O_WRONLY && p->wr >= 0) {
    h = fcntl(p->wr, F_DUPFD_CLOEXEC, 3);
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", p->rd >= 0 ? p->rd : p->wr);
    h = open(link, acc | O_NONBLOCK | O_CLOEXEC);
  }
  return h < 0 ? -errno : h;
}

/* The node lets go of the ends no open file needs. */
static void fifo_trim(struct fifo *p)
{
  if (!p->readers && p->rd >= 0) {
    close(p->rd);
    p->rd = -1;
  }
  if (!p->writers && p->wr >= 0) {
    close(p->wr);
    p->wr = -1;
  }
}

/* f (a FIFO's open file) goes: its side counts one less. No wait needs a
 * wake-up: readers and writers wait on the host pipe, which sees the ends go. */
static void fifo_close(struct file *f)
{
  struct fifo *p = tmp_fifo(f->node);
  int acc = f->flags & O_ACCMODE;
  if (!p)
    return;
  if (acc != O_WRONLY)
    p->readers--;
  if (acc != O_RDONLY)
    p->writers--;
  fifo_trim(p);
}

bool fifo_hup_hidden(struct file *f)
{
  struct fifo *p;
  return f->fifo_nohup && f->node && (p = tmp_fifo(f->node)) && p->w_opens == f->fifo_w0;
}

/* Open FIFO n (abs: its path, for *at and /proc) with flags. */
static long fifo_open(struct sb *sb, struct tnode *n, const char *abs, int flags, struct file **out)
{
  struct fifo *p = tmp_fifo(n);
  int acc = flags & O_ACCMODE;
  bool rd = acc != O_WRONLY, wr = acc != O_RDONLY;
  if (flags & O_DIRECTORY)
    return -ENOTDIR;
  if (flags & O_PATH) { /* no open of the FIFO (no wait, no pipe): a handle on its node (fstat, fchmod, *at) */
    struct file *f = file_new(F_TMP, -1, O_RDONLY, abs);
    if (!f)
      return -ENOMEM;
    f->node = n;
    tmp_ref(n);
    *out = f;
    return 0;
  }
  if (acc == O_ACCMODE)
    return -EINVAL; /* neither read nor write: Linux's fifo_open */
  if (acc == O_WRONLY && (flags & O_NONBLOCK) && !p->readers)
    return -ENXIO;
  if (p->rd < 0 && p->wr < 0) {
    int pf[2];
    if (pipe2(pf, O_NONBLOCK | O_CLOEXEC) < 0)
      return -errno;
    p->rd = pf[0];
    p->wr = pf[1];
  }
  long h = fifo_fd(p, acc), k;
  if (h >= 0 && rd && p->rd < 0) {
    if ((k = fifo_fd(p, O_RDONLY)) < 0) {
      close((int)h);
      h = k;
    } else {
      p->rd = (int)k;
    }
  }
  if (h >= 0 && wr && p->wr < 0) {
    if ((k = fifo_fd(p, O_WRONLY)) < 0) {
      close((int)h);
      h = k;
    } else {
      p->wr = (int)k;
    }
  }
  struct file *f = h >= 0 ? file_new(F_HOST, (int)h, acc | (flags & (O_APPEND | O_NONBLOCK)), abs) : NULL;
  if (!f) {
    if (h >= 0)
      close((int)h);
    fifo_trim(p); /* as before */
    return h >= 0 ? -ENOMEM : h;
  }
  f->node = n;
  tmp_ref(n);
  if (rd) {
    p->readers++;
    p->r_opens++;
  }
  if (wr) {
    p->writers++;
    p->w_opens++;
  }
  if (acc == O_RDONLY && (flags & O_NONBLOCK) && !p->writers) {
    f->fifo_nohup = true; /* no POLLHUP before a writer came (Linux's f_version) */
    f->fifo_w0 = p->w_opens;
  }
  fifo_trim(p); /* a new pipe's end of the side nobody has */
  wake_all(sb); /* an open waiting for this side */
  if (acc != O_RDWR && !(flags & O_NONBLOCK) && !(rd ? p->writers : p->readers)) {
    uint64_t *opens = rd ? &p->w_opens : &p->r_opens, seen = *opens;
    while (*opens == seen) { /* p stays: f holds the node */
      long r = sig_wait(sb, CLOCK_MONOTONIC, NULL);
      if (r == -EAGAIN)
        continue; /* another task's change: look again */
      file_unref(f);
      if (r == -EDEADLK)
        return wait_forever(sb, rd ? "open of a FIFO for reading, no writer" : "open of a FIFO for writing, no reader");
      return -RESTARTSYS;
    }
  }
  *out = f;
  return 0;
}

/* open(/proc/self/fd/N): a new open file of what fd N refers to, as
 * Linux's magic link (a host pipe or the sandbox's stdio: the same host
 * file, dup'ed; a path: opened again). */
static long reopen_fd(struct sb *sb, struct file *of, int flags, unsigned mode, struct file **out, int depth)
{
  int acc = flags & O_ACCMODE;
  int keep = acc | (flags & (O_APPEND | O_NONBLOCK));
  int oacc = of->flags & O_ACCMODE;
  if (of->node && tmp_fifo(of->node)) /* the FIFO itself, in any direction (its path may be gone) */
    return fifo_open(sb, of->node, of->path, flags, out);
  if ((acc != O_WRONLY && oacc == O_WRONLY) || (acc != O_RDONLY && oacc == O_RDONLY))
    return -EACCES;
  struct file *f = NULL;
  if (of->type == F_EVENTFD || of->type == F_SIGNALFD || of->type == F_EPOLL || of->type == F_PIDFD || of->sock)
    return -ENXIO; /* an anonymous inode or a socket cannot be opened again (Linux) */
  if (of->type == F_HOST && (of->stdio >= 0 || of->path[0] != '/')) {
    int h = fcntl(of->hostfd, F_DUPFD_CLOEXEC, 3);
    if (h < 0)
      return -errno;
    if (!(f = file_new(F_HOST, h, keep, of->path)))
      close(h);
    else
      f->stdio = of->stdio; /* rebound to a child's own, like the original */
  } else if (of->type == F_TMP || of->type == F_TMPDIR) {
    if ((f = file_new(of->type, -1, keep, of->path))) {
      f->node = of->node;
      tmp_ref(f->node);
    }
  } else if (of->type == F_DEV) {
    f = file_new(F_DEV, -1, keep, of->path);
  } else {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", of->path);
    return open_abs(sb, p, flags, mode, out, depth + 1);
  }
  if (!f)
    return -ENOMEM;
  *out = f;
  return 0;
}

long fs_canonical(struct sb *sb, uint64_t gpath, bool follow, char *abs, bool *isdir)
{
  long r = resolve(sb, AT_FDCWD, gpath, abs, false);
  struct stat st;
  if (r < 0 || (r = stat_abs(sb, abs, !follow, &st)) < 0)
    return r;
  *isdir = S_ISDIR(st.st_mode);
  struct ovl o;
  if (!tmp_is_shm(abs) && !virt_is_virt(abs) && ovl_lookup(sb, abs, follow, &o) == 0)
    snprintf(abs, PATH_MAX, "%s", o.path);
  return 0;
}

/* O_TMPFILE: an upper file with no name, in any directory of the overlay
 * or /dev/shm (the upper layer holds it whatever the directory's layer);
 * linkat names it unless O_EXCL. Its path, as Linux's: "DIR/#INO". */
static long open_tmpfile(struct sb *sb, char *abs, int flags, unsigned mode, struct file **out)
{
  if ((flags & (O_TMPFILE | O_CREAT)) != O_TMPFILE || (flags & O_ACCMODE) == O_RDONLY)
    return -EINVAL;
  struct stat st;
  long r = stat_abs(sb, abs, false, &st);
  if (r < 0)
    return r;
  if (!S_ISDIR(st.st_mode))
    return -ENOTDIR;
  if (virt_is_virt(abs))
    return -EOPNOTSUPP; /* /proc, /dev: not a file system that has it */
  struct tnode *n;
  if ((r = tmp_tmpfile(sb, abs, mode, !(flags & O_EXCL), &n)) < 0)
    return r;
  tmp_stat(n, &st);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/#%llu", strcmp(abs, "/") ? abs : "", (unsigned long long)st.st_ino);
  struct file *f = file_new(F_TMP, -1, flags & (O_ACCMODE | O_APPEND | O_NONBLOCK), path);
  if (!f) {
    tmp_ref(n);
    tmp_unref(n);
    return -ENOMEM;
  }
  f->node = n;
  tmp_ref(n);
  *out = f;
  return 0;
}

static long do_open(struct sb *sb, int dirfd, uint64_t gpath, int flags, unsigned mode)
{
  char abs[PATH_MAX];
  bool slash;
  long r = (flags & O_CREAT) ? resolve_at(sb, dirfd, gpath, abs, false, &slash) : resolve(sb, dirfd, gpath, abs, false);
  if (r < 0)
    return r;
  if ((flags & O_CREAT) && slash)
    return -EISDIR; /* Linux: O_CREAT and a trailing slash, whatever is there */
  struct file *f;
  if ((flags & O_TMPFILE & ~O_DIRECTORY) ? (r = open_tmpfile(sb, abs, flags, mode, &f)) < 0
                            : (r = open_abs(sb, abs, flags, mode, &f, 0)) < 0)
    return r;
  if (flags & O_PATH)
    f->flags |= O_PATH; /* (F_GETFL shows it, as Linux; no inotify events) */
  int fd = fd_install(sb, f, 0, flags & O_CLOEXEC);
  if (fd < 0)
    file_unref(f);
  else
    note_file(sb, f, IN_OPEN);
  return fd;
}

/* Open abs (a normalized sandbox path, PATH_MAX bytes: it may be rewritten)
 * into a new struct file. */
static long open_abs(struct sb *sb, char *abs, int flags, unsigned mode, struct file **out, int depth)
{
  long r;
  int acc = flags & O_ACCMODE;
  int keep = acc | (flags & (O_APPEND | O_NONBLOCK));
  struct file *f;
  if (depth > 8)
    return -ELOOP;
  if (virt_is_virt(abs) && (r = virt_path(sb, abs, PATH_MAX, !(flags & O_NOFOLLOW))) < 0)
    return r;
  if (virt_is_virt(abs)) {
    const struct vent *v;
    int arg;
    if (virt_lookup(sb, abs, &v, &arg) < 0) /* Linux: no create in /proc; /dev is read-only here */
      return (flags & O_CREAT) && strncmp(abs, "/dev", 4) == 0 ? -EROFS : -ENOENT;
    if (virt_is_fd(v) && !(flags & O_NOFOLLOW)) {
      if ((flags & O_CREAT) && (flags & O_EXCL))
        return -EEXIST;
      return reopen_fd(sb, virt_fd_file(sb, arg), flags, mode, out, depth);
    }
    return virt_open(sb, v, arg, abs, flags, out);
  }
  struct tnode *n = NULL;
  struct ovl o;
  if (tmp_is_shm(abs)) {
    r = tmp_lookup_err(sb, abs, &n);
    if (n && (flags & O_CREAT) && (flags & O_EXCL))
      return -EEXIST;
    if (!n) {
      if (!(flags & O_CREAT) || r != -ENOENT)
        return r;
      r = tmp_create(sb, abs, false, mode, &n);
      if (note(sb, r, abs, IN_CREATE, false) < 0)
        return r;
    }
  } else {
    /* O_CREAT|O_EXCL does not follow a symlink at the end (EEXIST), as Linux */
    bool excl = (flags & O_CREAT) && (flags & O_EXCL);
    r = ovl_lookup(sb, abs, !(flags & O_NOFOLLOW) && !excl, &o);
    if (r == OVL_VIRT) {
      snprintf(abs, PATH_MAX, "%s", o.path);
      return open_abs(sb, abs, flags, mode, out, depth + 1);
    }
    if (r == 0 && excl)
      return -EEXIST;
    if (r == -ENOENT && (flags & O_CREAT) && o.parent_ok) {
      struct tnode *dir;
      if ((r = ovl_copyup_parent(sb, o.path, &dir)) < 0 || (r = tmp_create(sb, o.path, false, mode, &n)) < 0)
        return r;
      inotify_event(sb, o.path, IN_CREATE, 0, false);
      snprintf(abs, PATH_MAX, "%s", o.path);
    } else if (r < 0) {
      return r;
    } else {
      snprintf(abs, PATH_MAX, "%s", o.path);
      n = o.node;
      if (S_ISLNK(o.st.st_mode) && !(flags & O_PATH))
        return -ELOOP; /* O_NOFOLLOW on a symlink */
      if (!n && S_ISREG(o.st.st_mode) && (acc != O_RDONLY || (flags & O_TRUNC))) {
        /* a write to a lower file: copy-up (O_TRUNC: no bytes to copy) */
        if ((r = ovl_copyup(sb, o.path, !(flags & O_TRUNC) || acc == O_RDONLY, &n)) < 0)
          return r;
      } else if (!n && S_ISDIR(o.st.st_mode) && (acc != O_RDONLY || (flags & O_CREAT))) {
        return -EISDIR;
      }
    }
  }
  if (n) {
    if (tmp_fifo(n))
      return fifo_open(sb, n, abs, flags, out); /* O_TRUNC does nothing to it, as Linux */
    if (tmp_is_sock(n) && !(flags & O_PATH))
      return -ENXIO; /* a socket file is connected to, not opened (Linux) */
    if (tmp_is_dir(n)) {
      if (acc != O_RDONLY)
        return -EISDIR;
      f = file_new(F_TMPDIR, -1, keep, abs);
    } else {
      if (flags & O_DIRECTORY)
        return -ENOTDIR;
      if ((flags & O_TRUNC) && acc != O_RDONLY) {
        tmp_truncate(n, 0);
      }
      f = file_new(F_TMP, -1, keep, abs);
    }
    if (f) {
      f->node = n;
      tmp_ref(n);
    }
  } else {
    /* A lower file, read only (a write copied it up above). */
    int hf = flags & (O_DIRECTORY | O_NOFOLLOW | O_PATH);
    /* O_NONBLOCK: opening a FIFO must not wait; only regular files and
     * directories of the root are opened (a device node is EACCES, as on
     * a nodev mount; a FIFO or a socket belongs to host processes: EACCES,
     * ENXIO as Linux for a socket), so the flag changes nothing after. */
    long fd = host_openat2(sb, abs, O_RDONLY | O_NONBLOCK | hf);
    if (fd < 0)
      return fd;
    struct stat st;
    if (fstat((int)fd, &st) < 0) {
      close((int)fd);
      return -EIO;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !(flags & O_PATH)) {
      close((int)fd);
      return S_ISSOCK(st.st_mode) ? -ENXIO : -EACCES;
    }
    if (!(flags & O_NONBLOCK) && !(flags & O_PATH))
      fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) & ~O_NONBLOCK);
    f = file_new(S_ISDIR(st.st_mode) ? F_DIR : F_HOST, (int)fd, keep, abs);
    if (!f)
      close((int)fd);
  }
  if (!f)
    return -ENOMEM;
  *out = f;
  return 0;
}

static long do_read_held(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off);

/* Wait (the lock released: timer.c sig_poll) until host fd is ready for
 * events, another task's wakes aside: > 0 (at once when it is ready), or
 * -EINTR / -errno. */
static long host_wait(struct sb *sb, int fd, short events)
{
  struct pollfd pf = {.fd = fd, .events = events};
  /* Ready now (a regular file always is): no wait, so a pending signal
   * does not end it (Linux looks at signals only when it would sleep). */
  struct timespec zero = {0, 0};
  if (ppoll(&pf, 1, &zero, NULL) == 1)
    return 1;
  long r;
  while ((r = sig_poll(sb, &pf, 1, -1)) == -EAGAIN)
    ;
  return r;
}

/* A read or write may block and release the lock (thread.c): the file is
 * held meanwhile, so that another thread's close does not free it under
 * the call (Linux holds it too). */
static long do_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off)
{
  f->refs++;
  long r = do_read_held(sb, f, buf, len, off);
  if (r > 0)
    note_file(sb, f, IN_ACCESS);
  file_unref(f);
  return r;
}

static long do_read_held(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off)
{
  if ((f->flags & O_ACCMODE) == O_WRONLY)
    return -EBADF;
  if (len > MAX_IO)
    len = MAX_IO;
  void *p = mm_ptr(sb, buf, len, PROT_WRITE);
  if (!p)
    return -EFAULT;
  long r;
  switch (f->type) {
  case F_HOST:
    if (f->sock)
      return off >= 0 ? -ESPIPE : net_rw(sb, f, buf, len, false);
    if (off < 0 && !(f->flags & O_NONBLOCK)) {
      /* A read that may block (a pipe, a terminal) waits with the lock
       * released, so that the other threads run, and a signal ends it
       * (EINTR, or a restart under SA_RESTART), one thread alone too: its
       * handler or another thread may write what it waits for. The buffer
       * is looked up again after (another thread may have unmapped it).
       * Another reader of the pipe (a process, a FIFO's other reader) may
       * take what woke it: then it waits again. */
      for (;;) {
        if ((r = host_wait(sb, f->hostfd, POLLIN)) < 0)
          return r == -EINTR ? -RESTARTSYS : r;
        if (!(p = mm_ptr(sb, buf, len, PROT_WRITE)))
          return -EFAULT;
        if ((r = read(f->hostfd, p, len)) >= 0 || errno != EAGAIN)
          return r < 0 ? -errno : r;
      }
    }
    r = off < 0 ? read(f->hostfd, p, len) : pread(f->hostfd, p, len, off);
    return r < 0 ? -errno : r;
  case F_DIR:
  case F_TMPDIR:
  case F_VDIR:
    return -EISDIR;
  case F_DEV:
    return virt_read(f, p, len, 0);
  case F_VIRT:
    r = virt_read(f, p, len, off < 0 ? f->off : (uint64_t)off);
    if (r > 0 && off < 0)
      f->off += (uint64_t)r;
    return r;
  case F_TMP:
    if (tmp_fifo(f->node))
      return -EBADF; /* an O_PATH handle of a FIFO (fifo_open) */
    r = tmp_read(f->node, p, len, off < 0 ? f->off : (uint64_t)off);
    if (r > 0 && off < 0)
      f->off += (uint64_t)r;
    return r;
  case F_EVENTFD:
  case F_SIGNALFD:
  case F_EPOLL:
    return off >= 0 ? -ESPIPE : event_read(sb, f, buf, len);
  case F_TIMERFD:
    return off >= 0 ? -ESPIPE : timerfd_read(sb, f, buf, len);
  case F_PIDFD:
    return -EINVAL; /* no read method (Linux) */
  }
  return -EBADF;
}

static long do_write_held(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off);

static long do_write(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off)
{
  f->refs++;
  long r = do_write_held(sb, f, buf, len, off);
  /* A pipe or socket with no reader: EPIPE and SIGPIPE, as Linux (the host
   * process ignores its own SIGPIPE: sandbox.c). */
  if (r == -EPIPE && f->type == F_HOST)
    sig_raise(sb, SIGPIPE);
  file_unref(f);
  return r;
}

static long do_write_held(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, int64_t off)
{
  if ((f->flags & O_ACCMODE) == O_RDONLY)
    return -EBADF;
  if (len > MAX_IO)
    len = MAX_IO;
  void *p = mm_ptr(sb, buf, len, PROT_READ);
  if (!p)
    return -EFAULT;
  long r;
  switch (f->type) {
  case F_HOST:
    if (f->sock)
      return off >= 0 ? -ESPIPE : net_rw(sb, f, buf, len, true);
    r = off < 0 ? write(f->hostfd, p, len) : pwrite(f->hostfd, p, len, off);
    if (off < 0 && !(f->flags & O_NONBLOCK) && (r >= 0 ? (uint64_t)r < len : errno == EAGAIN)) {
      /* A blocking write into a pipe (host pipes are non-blocking) that
       * did not fit: the rest waits for room with the lock released, as
       * Linux writes it all (another thread, or a signal handler, empties
       * it); a signal ends it with what was written (nothing: EINTR, or a
       * restart under SA_RESTART). */
      uint64_t done = r > 0 ? (uint64_t)r : 0;
      while (done < len) {
        long w = host_wait(sb, f->hostfd, POLLOUT);
        if (w < 0)
          return done ? (long)done : w == -EINTR ? -RESTARTSYS : w;
        if (!(p = mm_ptr(sb, buf, len, PROT_READ)))
          return done ? (long)done : -EFAULT;
        r = write(f->hostfd, (const char *)p + done, len - done);
        if (r < 0 && errno != EAGAIN)
          return done ? (long)done : -errno;
        if (r > 0)
          done += (uint64_t)r;
      }
      return (long)done;
    }
    return r < 0 ? -errno : r;
  case F_DEV:
  case F_VIRT:
    return virt_write(sb, f, p, len);
  case F_DIR:
  case F_TMPDIR:
  case F_VDIR:
    return -EISDIR;
  case F_TIMERFD:
    return off >= 0 ? -ESPIPE : -EINVAL; /* no write, as Linux */
  case F_PIDFD:
    return -EINVAL;
  case F_TMP: {
    if (tmp_fifo(f->node))
      return -EBADF; /* an O_PATH handle of a FIFO (fifo_open) */
    uint64_t o = off >= 0 ? (uint64_t)off : f->off;
    if (off < 0 && (f->flags & O_APPEND)) {
      struct stat st;
      tmp_stat(f->node, &st);
      o = (uint64_t)st.st_size;
    }
    r = tmp_write(f->node, p, len, o);
    if (r > 0 && off < 0)
      f->off = o + (uint64_t)r;
    if (r > 0)
      inotify_event(sb, f->path, IN_MODIFY, 0, false);
    return r;
  }
  case F_EVENTFD:
  case F_SIGNALFD:
  case F_EPOLL:
    return off >= 0 ? -ESPIPE : event_write(sb, f, p, len);
  }
  return -EBADF;
}

static long do_iov(struct sb *sb, struct file *f, uint64_t iov, uint64_t cnt, int64_t off, bool wr)
{
  if (cnt > 1024)
    return -EINVAL;
  if (f->sock) { /* one message (a datagram is not split per iovec) */
    if (off >= 0)
      return -ESPIPE;
    if ((f->flags & O_ACCMODE) == (wr ? O_RDONLY : O_WRONLY))
      return -EBADF;
    f->refs++;
    long r = net_iov(sb, f, iov, cnt, wr);
    file_unref(f);
    return r;
  }
  long total = 0;
  for (uint64_t i = 0; i < cnt; i++) {
    struct iovec v;
    if (mm_copy_in(sb, &v, iov + i * sizeof v, sizeof v) < 0)
      return total ? total : -EFAULT;
    if (v.iov_len == 0)
      continue;
    long r = wr ? do_write(sb, f, (uint64_t)v.iov_base, v.iov_len, off)
                : do_read(sb, f, (uint64_t)v.iov_base, v.iov_len, off);
    if (r < 0)
      return total ? total : r;
    total += r;
    if (off >= 0)
      off += r;
    if ((uint64_t)r < v.iov_len)
      break;
  }
  return total;
}

bool dirent_put(void *buf, size_t len, size_t *pos, uint64_t ino, int64_t next_off, uint8_t type, const char *name)
{
  size_t nl = strlen(name);
  size_t rec = (19 + nl + 1 + 7) & ~(size_t)7;
  if (*pos + rec > len)
    return false;
  uint8_t *d = (uint8_t *)buf + *pos;
  memset(d, 0, rec);
  memcpy(d, &ino, 8);
  memcpy(d + 8, &next_off, 8);
  uint16_t r16 = (uint16_t)rec;
  memcpy(d + 16, &r16, 2);
  d[18] = type;
  memcpy(d + 19, name, nl);
  *pos += rec;
  return true;
}

static long do_getdents(struct sb *sb, struct file *f, uint64_t buf, uint64_t len)
{
  void *p = mm_ptr(sb, buf, len, PROT_WRITE);
  if (!p)
    return -EFAULT;
  if (f->type == F_VDIR)
    return virt_getdents(sb, f, p, len);
  struct tnode *dir = f->node;
  if (f->type == F_DIR) {
    /* A root directory opened while the upper layer had nothing of it:
     * its host fd's listing while that is so. A reading from offset 0
     * (opendir, rewinddir) after something in it changed (the upper layer
     * has it now: a copy-up) lists the merged view from then on, entry
     * indexes as offsets as below; one removed since (its path now a
     * whiteout, or an opaque directory made there) lists nothing, as
     * Linux's getdents of a removed directory. */
    struct ovl o;
    if (!f->vdata && lseek(f->hostfd, 0, SEEK_CUR) != 0)
      dir = NULL;
    else if (!f->vdata || f->off == 0) {
      long r = ovl_lookup(sb, f->path, true, &o);
      if (r == 0 && !o.node && !f->vdata)
        dir = NULL;
      else if (r != 0 || !o.node || !tmp_is_dir(o.node) || tmp_is_opaque(o.node))
        return 0;
      else
        dir = o.node;
      if (!f->vdata)
        f->off = 0;
    }
    if (!dir && !f->vdata) {
      long r = syscall(SYS_getdents64, f->hostfd, p, len);
      return r < 0 ? -errno : r;
    }
  } else if (f->type != F_TMPDIR) {
    return -ENOTDIR;
  }
  /* The entries are listed once (ovl_list: the upper's, then the lower's
   * the upper does not name) when the reading starts at 0 (opendir,
   * rewinddir) and after a load: one open directory's offsets (entry
   * indexes) stay stable while the tree changes. */
  if (f->off == 0 || !f->vdata) {
    struct ovl_list *l;
    long r = ovl_list(sb, dir, tmp_is_shm(f->path) ? NULL : f->path, &l);
    if (r < 0)
      return r;
    free(f->vdata);
    f->vdata = (char *)l;
  }
  size_t pos = 0;
  for (;;) {
    const char *name;
    uint64_t ino = 1;
    uint8_t type = DT_DIR;
    if (f->off == 0)
      name = ".";
    else if (f->off == 1)
      name = "..";
    else if (!(name = ovl_list_get((struct ovl_list *)f->vdata, f->off - 2, &ino, &type)))
      break;
    if (!dirent_put(p, len, &pos, ino, (int64_t)f->off + 1, type, name)) {
      if (pos == 0)
        return -EINVAL;
      break;
    }
    f->off++;
  }
  return (long)pos;
}

static long do_readlink(struct sb *sb, int dirfd, uint64_t gpath, uint64_t buf, uint64_t size)
{
  char abs[PATH_MAX];
  long r = resolve(sb, dirfd, gpath, abs, false);
  if (r < 0)
    return r;
  if ((int64_t)size <= 0)
    return -EINVAL;
  void *p = mm_ptr(sb, buf, size, PROT_WRITE);
  if (!p)
    return -EFAULT;
  if (virt_is_virt(abs)) {
    const struct vent *v;
    int arg;
    if ((r = virt_lookup(sb, abs, &v, &arg)) < 0)
      return r;
    char link[PATH_MAX];
    if ((r = virt_readlink(sb, v, arg, link, sizeof link)) < 0)
      return r;
    size_t n = (size_t)r < size ? (size_t)r : size;
    memcpy(p, link, n);
    return (long)n;
  }
  if (tmp_is_shm(abs)) {
    struct tnode *n;
    r = tmp_lookup_err(sb, abs, &n);
    return r < 0 ? r : -EINVAL; /* no symlinks there */
  }
  struct ovl o;
  if ((r = ovl_lookup(sb, abs, false, &o)) == OVL_VIRT)
    return -EINVAL; /* (a /proc or /dev path through a symlink on the way) */
  if (r < 0)
    return r;
  if (o.node) {
    const char *t = tmp_symlink_target(o.node);
    if (!t)
      return -EINVAL;
    size_t n = strlen(t) < size ? strlen(t) : size;
    memcpy(p, t, n);
    return (long)n;
  }
  long fd = host_openat2(sb, o.path, O_PATH | O_NOFOLLOW);
  if (fd < 0)
    return fd;
  struct stat st;
  if (fstat((int)fd, &st) == 0 && !S_ISLNK(st.st_mode))
    r = -EINVAL; /* readlinkat(fd, "") says ENOENT there; readlink(2) says EINVAL */
  else
    r = (r = readlinkat((int)fd, "", p, size)) < 0 ? -errno : r;
  close((int)fd);
  return r;
}

static long do_access(struct sb *sb, int dirfd, uint64_t gpath, int mode, int flags)
{
  char abs[PATH_MAX];
  long r = resolve(sb, dirfd, gpath, abs, flags & AT_EMPTY_PATH);
  if (r < 0)
    return r;
  struct stat st;
  r = stat_abs(sb, abs, flags & AT_SYMLINK_NOFOLLOW, &st);
  if (r < 0)
    return r;
  if ((mode & W_OK) && virt_is_virt(abs)) {
    /* /proc and /dev: the mode says (root passes, as on Linux) */
    if (!S_ISCHR(st.st_mode) && sb->uid != 0 &&
        !(st.st_mode & ((uid_t)sb->uid == st.st_uid ? 0200 : 0002)))
      return -EACCES;
  }
  if ((mode & R_OK) && virt_is_virt(abs) && sb->uid != 0 && !S_ISLNK(st.st_mode) &&
      !(st.st_mode & ((uid_t)sb->uid == st.st_uid ? 0400 : 0004)))
    return -EACCES;
  if ((mode & X_OK) && !(st.st_mode & 0111) && !S_ISDIR(st.st_mode))
    return -EACCES;
  return 0;
}

static long do_chdir_abs(struct sb *sb, const char *abs0)
{
  char abs[PATH_MAX];
  snprintf(abs, sizeof abs, "%s", abs0);
  if (virt_is_virt(abs)) {
    long r = virt_path(sb, abs, sizeof abs, true);
    if (r < 0)
      return r;
  }
  if (virt_is_virt(abs)) {
    const struct vent *v;
    int arg;
    long r = virt_lookup(sb, abs, &v, &arg);
    if (r < 0)
      return r;
    if (virt_is_fd(v)) {
      struct file *f = virt_fd_file(sb, arg);
      if (f->type != F_DIR && f->type != F_TMPDIR && f->type != F_VDIR)
        return -ENOTDIR;
      return do_chdir_abs(sb, f->path);
    }
    if (!virt_is_dir(v))
      return -ENOTDIR;
    snprintf(sb->cwd, sizeof sb->cwd, "%s", abs);
    return 0;
  }
  if (tmp_is_shm(abs)) {
    struct tnode *n;
    long r = tmp_lookup_err(sb, abs, &n);
    if (r < 0)
      return r;
    if (!tmp_is_dir(n))
      return -ENOTDIR;
    snprintf(sb->cwd, sizeof sb->cwd, "%s", abs);
    return 0;
  }
  /* The canonical path (symlinks followed), so that getcwd matches Linux. */
  struct ovl o;
  long r = ovl_lookup(sb, abs, true, &o);
  if (r == OVL_VIRT)
    return do_chdir_abs(sb, o.path);
  if (r < 0)
    return r;
  if (!S_ISDIR(o.st.st_mode))
    return -ENOTDIR;
  snprintf(sb->cwd, sizeof sb->cwd, "%s", o.path);
  return 0;
}

/* ---- record locks: fcntl F_SETLK/F_OFD_SETLK and flock ----
 *
 * One table per sandbox (the first process's sb->locks: every process of a
 * sandbox uses it, under the one lock), as Linux keeps one per file. A
 * process's own POSIX locks never conflict with each other (and F_GETLK
 * never reports them); another process's do, and so do open file
 * description (OFD) and flock locks of other open files, as on Linux. A
 * fork's child holds none of its parent's POSIX locks, and shares its OFD
 * and flock locks with the open files it inherits. POSIX locks go when
 * their process closes any fd of the file (or exits), OFD and flock locks
 * when their open file is closed for the last time, in any process. A wait
 * (F_SETLKW, flock without LOCK_NB) sleeps until a lock goes or shrinks
 * (lock_set and locks_on_close wake every waiter to try again) or a
 * signal comes (EINTR, or the call again after an SA_RESTART handler, as
 * Linux restarts F_SETLKW and flock); with nothing that could release it,
 * the sandbox ends with a report (lock_wait). An F_SETLKW that would close
 * a cycle of processes waiting for each other's POSIX locks is EDEADLK, as
 * Linux (lock_deadlock: each waiting process records what it waits for in
 * sb->lkwait). Locks are not part of a snapshot. */
enum { LK_POSIX, LK_OFD, LK_FLOCK };

/* A wait for a lock nothing in the sandbox can release: until a signal
 * (then EINTR, or the call again after an SA_RESTART handler, as Linux
 * restarts F_SETLKW and flock), or, when no signal can come, the end of
 * the sandbox with a report instead of a hang. */
static long lock_wait(struct sb *sb, const char *what)
{
  long r = sig_wait(sb, CLOCK_MONOTONIC, NULL);
  return r == -EDEADLK ? wait_forever(sb, what) : -RESTARTSYS;
}

struct flock_ent {
  uint64_t dev, ino;   /* the file */
  int kind;            /* LK_* */
  struct file *ofd;    /* the owner of an LK_OFD or LK_FLOCK lock */
  struct sb *proc;     /* the owner of an LK_POSIX lock (its process) */
  short type;          /* F_RDLCK or F_WRLCK */
  uint64_t start, end; /* [start, end); UINT64_MAX: to the end of the file, ever */
};

static bool lock_same_owner(const struct flock_ent *l, const struct flock_ent *q)
{
  return l->kind == q->kind && (q->kind == LK_POSIX ? l->proc == q->proc : l->ofd == q->ofd);
}

static const struct flock_ent *lock_conflict(struct sb *sb, const struct flock_ent *q)
{
  sb = proc_first(sb); /* the sandbox's table */
  for (int i = 0; i < sb->nlocks; i++) {
    const struct flock_ent *l = &sb->locks[i];
    if (l->dev != q->dev || l->ino != q->ino || (l->kind == LK_FLOCK) != (q->kind == LK_FLOCK) ||
        lock_same_owner(l, q) || l->end <= q->start || l->start >= q->end ||
        (l->type != F_WRLCK && q->type != F_WRLCK))
      continue;
    return l;
  }
  return NULL;
}

/* Whether q's process (a POSIX lock) waiting for q would close a cycle: the
 * owner of a lock in its way waits (F_SETLKW) for a lock whose owner ...
 * is q's process. Follows the first lock in the way at each step, at most
 * 10 steps, as Linux's posix_locks_deadlock. */
static bool lock_deadlock(struct sb *sb, const struct flock_ent *q)
{
  const struct flock_ent *l = lock_conflict(sb, q);
  for (int i = 0; i < 10 && l && l->kind == LK_POSIX; i++) {
    struct sb *o = l->proc;
    if (o == q->proc)
      return true;
    if (!o->lkwait.on)
      return false;
    struct flock_ent w = {.kind = LK_POSIX, .proc = o, .dev = o->lkwait.dev, .ino = o->lkwait.ino,
                          .type = o->lkwait.type, .start = o->lkwait.start, .end = o->lkwait.end};
    l = lock_conflict(sb, &w);
  }
  return false;
}

/* Take or release (type F_UNLCK) q's range for its owner: its own locks in
 * the range are replaced. 0, -EAGAIN (conflict) or -ENOLCK. */
static long lock_set(struct sb *sb, const struct flock_ent *q)
{
  wake_all(sb); /* a lock that goes or shrinks may end another task's wait */
  if (q->type != F_UNLCK && lock_conflict(sb, q))
    return -EAGAIN;
  sb = proc_first(sb); /* the sandbox's table */
  if (sb->nlocks + 2 > sb->caplocks) {
    int cap = sb->caplocks ? 2 * sb->caplocks : 16;
    if (cap > 65536)
      return -ENOLCK;
    struct flock_ent *p = realloc(sb->locks, (size_t)cap * sizeof *p);
    if (!p)
      return -ENOLCK;
    sb->locks = p;
    sb->caplocks = cap;
  }
  for (int i = 0; i < sb->nlocks; i++) {
    struct flock_ent *l = &sb->locks[i];
    if (l->dev != q->dev || l->ino != q->ino || !lock_same_owner(l, q) || l->end <= q->start ||
        l->start >= q->end)
      continue;
    if (l->start < q->start && l->end > q->end) { /* split around q */
      struct flock_ent tail = *l;
      tail.start = q->end;
      l->end = q->start;
      sb->locks[sb->nlocks++] = tail; /* room reserved above; its range is past q: not met again */
    } else if (l->start < q->start) {
      l->end = q->start;
    } else if (l->end > q->end) {
      l->start = q->end;
    } else {
      sb->locks[i--] = sb->locks[--sb->nlocks];
    }
  }
  if (q->type == F_UNLCK)
    return 0;
  /* Own locks of the same type that touch it merge with it, as Linux's. */
  struct flock_ent m = *q;
  for (int i = 0; i < sb->nlocks; i++) {
    struct flock_ent *l = &sb->locks[i];
    if (l->dev == m.dev && l->ino == m.ino && lock_same_owner(l, &m) && l->type == m.type &&
        (l->end == m.start || l->start == m.end)) {
      m.start = l->start < m.start ? l->start : m.start;
      m.end = l->end > m.end ? l->end : m.end;
      sb->locks[i] = sb->locks[--sb->nlocks];
      i = -1; /* the merged range may touch one more */
    }
  }
  sb->locks[sb->nlocks++] = m;
  return 0;
}

static bool file_key(struct sb *sb, struct file *f, uint64_t *dev, uint64_t *ino)
{
  struct stat st;
  if (file_stat(sb, f, &st) < 0)
    return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

/* fd of process sb is being closed (f its file, refs not yet dropped). */
static void locks_on_close(struct sb *sb, struct file *f)
{
  struct sb *t = proc_first(sb); /* the sandbox's table */
  uint64_t dev, ino;
  if (!t->nlocks || !file_key(sb, f, &dev, &ino))
    return;
  wake_all(sb);
  for (int i = 0; i < t->nlocks; i++) {
    struct flock_ent *l = &t->locks[i];
    if ((l->kind == LK_POSIX && l->proc == sb && l->dev == dev && l->ino == ino) ||
        (l->kind != LK_POSIX && l->ofd == f && f->refs == 1))
      t->locks[i--] = t->locks[--t->nlocks];
  }
}

static long do_lock(struct sb *sb, struct file *f, int cmd, uint64_t arg)
{
  struct flock fl;
  if (mm_copy_in(sb, &fl, arg, sizeof fl) < 0)
    return -EFAULT;
  bool ofd = cmd == F_OFD_GETLK || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW;
  bool get = cmd == F_GETLK || cmd == F_OFD_GETLK;
  if (fl.l_type != F_RDLCK && fl.l_type != F_WRLCK && (fl.l_type != F_UNLCK || get))
    return -EINVAL;
  if (ofd && fl.l_pid != 0)
    return -EINVAL;
  int64_t base;
  struct stat st;
  switch (fl.l_whence) {
  case SEEK_SET:
    base = 0;
    break;
  case SEEK_CUR:
    if (f->type == F_HOST || f->type == F_DIR) {
      off_t o = lseek(f->hostfd, 0, SEEK_CUR);
      base = o < 0 ? 0 : o;
    } else {
      base = (int64_t)f->off;
    }
    break;
  case SEEK_END:
    if (file_stat(sb, f, &st) < 0)
      return -EBADF;
    base = st.st_size;
    break;
  default:
    return -EINVAL;
  }
  int64_t start;
  if (__builtin_add_overflow(base, (int64_t)fl.l_start, &start))
    return -EOVERFLOW;
  struct flock_ent q = {.kind = ofd ? LK_OFD : LK_POSIX, .ofd = ofd ? f : NULL, .proc = ofd ? NULL : sb,
                        .type = fl.l_type};
  if (fl.l_len > 0) {
    int64_t end;
    if (__builtin_add_overflow(start, (int64_t)fl.l_len, &end))
      return -EOVERFLOW;
    q.start = (uint64_t)start;
    q.end = (uint64_t)end;
  } else if (fl.l_len == 0) {
    q.start = (uint64_t)start;
    q.end = UINT64_MAX;
  } else {
    q.end = (uint64_t)start;
    start += fl.l_len;
    q.start = (uint64_t)start;
  }
  if (start < 0)
    return -EINVAL;
  if (!file_key(sb, f, &q.dev, &q.ino))
    return -EBADF;
  if (get) {
    const struct flock_ent *l = lock_conflict(sb, &q);
    if (!l) {
      fl.l_type = F_UNLCK; /* the rest as given, as Linux */
    } else {
      fl.l_type = l->type;
      fl.l_whence = SEEK_SET;
      fl.l_start = (off_t)l->start;
      fl.l_len = l->end == UINT64_MAX ? 0 : (off_t)(l->end - l->start);
      fl.l_pid = l->kind == LK_POSIX ? l->proc->pid : -1;
    }
    return mm_copy_out(sb, arg, &fl, sizeof fl);
  }
  int acc = f->flags & O_ACCMODE;
  if ((q.type == F_RDLCK && acc == O_WRONLY) || (q.type == F_WRLCK && acc == O_RDONLY))
    return -EBADF;
  long r = lock_set(sb, &q);
  if (r == -EAGAIN && cmd == F_SETLKW) {
    if (lock_deadlock(sb, &q))
      return -EDEADLK;
    sb->lkwait = (struct lkwait){true, q.dev, q.ino, q.start, q.end, q.type};
    r = lock_wait(sb, "fcntl F_SETLKW");
    sb->lkwait.on = false;
    return r;
  }
  if (r == -EAGAIN && cmd == F_OFD_SETLKW)
    return lock_wait(sb, "fcntl F_OFD_SETLKW");
  return r;
}

static long do_flock(struct sb *sb, int fd, uint64_t op)
{
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  int how = (int)(op & ~(uint64_t)LOCK_NB);
  if (how != LOCK_SH && how != LOCK_EX && how != LOCK_UN)
    return -EINVAL;
  struct flock_ent q = {.kind = LK_FLOCK, .ofd = f, .start = 0, .end = UINT64_MAX,
                        .type = how == LOCK_SH ? F_RDLCK : how == LOCK_EX ? F_WRLCK : F_UNLCK};
  if (!file_key(sb, f, &q.dev, &q.ino))
    return -EBADF;
  long r = lock_set(sb, &q);
  if (r == -EAGAIN && !(op & LOCK_NB))
    return lock_wait(sb, "flock");
  return r == -EAGAIN ? -EWOULDBLOCK : r;
}

static long do_fcntl(struct sb *sb, int fd, int cmd, uint64_t arg)
{
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  if ((f->flags & O_PATH) && cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC && cmd != F_GETFD && cmd != F_SETFD &&
      cmd != F_GETFL)
    return -EBADF; /* Linux's check_fcntl_cmd */
  switch (cmd) {
  case F_DUPFD:
  case F_DUPFD_CLOEXEC: {
    if (arg >= (uint64_t)fd_limit(sb))
      return -EINVAL;
    f->refs++;
    long r = fd_install(sb, f, (int)arg, cmd == F_DUPFD_CLOEXEC);
    if (r < 0)
      f->refs--;
    return r;
  }
  case F_GETFD:
    return sb->cloexec[fd] ? FD_CLOEXEC : 0;
  case F_SETFD:
    sb->cloexec[fd] = arg & FD_CLOEXEC;
    return 0;
  case F_GETFL:
    return fs_getfl(f);
  case F_SETFL:
    f->flags = (f->flags & (O_ACCMODE | O_PATH)) | (int)(arg & (O_APPEND | O_NONBLOCK));
    return 0;
  case F_GETLK:
  case F_SETLK:
  case F_SETLKW:
  case F_OFD_GETLK:
  case F_OFD_SETLK:
  case F_OFD_SETLKW:
    return do_lock(sb, f, cmd, arg);
  case F_NOTIFY: /* dnotify (inotify.c): SIGIO to this process at the directory's events */
    return dnotify_set(sb, f, arg);
  case F_GETPIPE_SZ:
  case F_SETPIPE_SZ: { /* a pipe or FIFO is a host pipe: its own size (Linux's rounding and bounds); else EBADF */
    if (f->type != F_HOST || f->hostfd < 0 || f->sock || f->inotify)
      return -EBADF;
    int r = fcntl(f->hostfd, cmd, (int)arg);
    return r < 0 ? -errno : r;
  }
  }
  return -EINVAL;
}

static long do_ioctl(struct sb *sb, int fd, unsigned long req, uint64_t arg)
{
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  int v;
  switch (req) { /* the requests Linux serves for every fd (do_vfs_ioctl) */
  case FIOCLEX:
  case FIONCLEX:
    sb->cloexec[fd] = req == FIOCLEX;
    return 0;
  case FIONBIO:
    if (mm_copy_in(sb, &v, arg, sizeof v) < 0)
      return -EFAULT;
    f->flags = v ? f->flags | O_NONBLOCK : f->flags & ~O_NONBLOCK;
    return 0;
  }
  if (f->sock)
    return net_ioctl(sb, f, req, arg);
  if (f->type != F_HOST || !isatty(f->hostfd))
    return -ENOTTY;
  size_t sz;
  switch (req) {
  case TCGETS: sz = 36; break; /* struct termios (kernel) */
  case TIOCGWINSZ: sz = sizeof(struct winsize); break;
  case TIOCGPGRP: sz = sizeof(int); break;
  case TCSETS:
  case TCSETSW:
  case TCSETSF:
  case TIOCSPGRP:
    return 0; /* the sandbox does not get to change the host terminal */
  default:
    return -ENOTTY;
  }
  char tmp[64];
  if (ioctl(f->hostfd, req, tmp) < 0)
    return -errno;
  return mm_copy_out(sb, arg, tmp, sz);
}

/* ---- names: the overlay's (ovl.c), and /dev/shm's own tree ---- */

/* A path of /proc or /dev (not /dev/shm): nothing there is made or
 * removed (Linux: EACCES/EPERM in /proc; /dev is read-only here). */
static long virt_name(struct sb *sb, const char *abs, bool exists_err)
{
  struct stat st;
  long r = stat_abs(sb, abs, true, &st);
  return r < 0 ? (exists_err ? -EROFS : r) : exists_err ? -EEXIST : -EROFS;
}

/* A new name other than a directory's (mknod, symlink, link) given with a
 * trailing slash: Linux's filename_create, EEXIST if it exists, else
 * ENOENT ("a directory was asked for"). 0 without the slash. */
static long slash_new(struct sb *sb, const char *abs, bool slash)
{
  struct stat st;
  if (!slash)
    return 0;
  return stat_abs(sb, abs, true, &st) == 0 ? -EEXIST : -ENOENT;
}

/* Where a new name abs will go (mkdir, mknod, symlink, link's new name):
 * 0 and the canonical path in o->path with its parent copied up, or
 * -EEXIST (it exists: a dangling symlink too), -ENOENT, -ENOTDIR... */
static long new_name(struct sb *sb, const char *abs, struct ovl *o)
{
  long r = ovl_lookup(sb, abs, false, o);
  if (r == OVL_VIRT)
    return virt_name(sb, o->path, true);
  if (r == 0)
    return -EEXIST;
  if (r != -ENOENT || !o->parent_ok)
    return r;
  struct tnode *dir;
  return ovl_copyup_parent(sb, o->path, &dir);
}

static long do_unlink(struct sb *sb, int dirfd, uint64_t gpath, int flags)
{
  char abs[PATH_MAX];
  long r = resolve(sb, dirfd, gpath, abs, false);
  if (r < 0)
    return r;
  if (flags & ~AT_REMOVEDIR)
    return -EINVAL;
  bool rmdir = flags & AT_REMOVEDIR;
  if (tmp_is_shm(abs))
    return note(sb, tmp_unlink(sb, abs, rmdir, false), abs, IN_DELETE, rmdir);
  if (virt_is_virt(abs))
    return virt_name(sb, abs, false);
  struct ovl o;
  if ((r = ovl_lookup(sb, abs, false, &o)) == OVL_VIRT)
    return virt_name(sb, o.path, false);
  if (r < 0)
    return r;
  if (rmdir != S_ISDIR(o.st.st_mode))
    return rmdir ? -ENOTDIR : -EISDIR;
  if (!strcmp(o.path, "/"))
    return -EBUSY;
  if (rmdir && (r = ovl_empty(sb, &o)) < 0)
    return r;
  bool wh = ovl_lower_has(sb, o.path);
  struct tnode *dir;
  if ((r = ovl_copyup_parent(sb, o.path, &dir)) < 0)
    return r;
  return note(sb, o.node ? tmp_unlink(sb, o.path, rmdir, wh) : tmp_whiteout(sb, o.path), o.path, IN_DELETE, rmdir);
}

/* A rename done (r 0): IN_MOVED_FROM and IN_MOVED_TO with one cookie. */
static long moved(struct sb *sb, long r, const char *from, const char *to, bool dir)
{
  if (r == 0) {
    uint32_t c = inotify_cookie(sb);
    inotify_event(sb, from, IN_MOVED_FROM, c, dir);
    inotify_event(sb, to, IN_MOVED_TO, c, dir);
    inotify_moved(sb, from, to, dir);
  }
  return r;
}

/* rename, renameat, renameat2. RENAME_NOREPLACE: EEXIST where the new
 * name exists. RENAME_EXCHANGE: both names exist (ENOENT), neither inside
 * the other (EINVAL); files are copied up, then the two upper entries swap
 * places (tmp_exchange); where the lower has a name the upper entry keeps
 * hiding it. A directory moves (or swaps) only if it was made in the
 * sandbox (opaque): a lower or merged one is EXDEV, as overlayfs without
 * redirect_dir (mv and shutil.move copy it then). One set of lookups and
 * checks for both. */
static long do_rename(struct sb *sb, int ofd, uint64_t op, int nfd, uint64_t np, uint64_t flags)
{
  if (flags & ~(uint64_t)(RENAME_NOREPLACE | RENAME_EXCHANGE))
    return -EINVAL; /* RENAME_WHITEOUT: not done */
  if ((flags & RENAME_EXCHANGE) && (flags & RENAME_NOREPLACE))
    return -EINVAL;
  bool xchg = flags & RENAME_EXCHANGE;
  char from[PATH_MAX], to[PATH_MAX];
  bool fslash, tslash;
  struct stat st;
  long r = resolve_at(sb, ofd, op, from, false, &fslash);
  if (r < 0 || (r = resolve_at(sb, nfd, np, to, false, &tslash)) < 0)
    return r;
  /* Linux: a trailing slash on either name is ENOTDIR unless the source is a directory */
  if ((fslash || tslash) && stat_abs(sb, from, true, &st) == 0 && !S_ISDIR(st.st_mode))
    return -ENOTDIR;
  if (tmp_is_shm(from) || tmp_is_shm(to)) {
    struct tnode *x;
    if (tmp_is_shm(from) != tmp_is_shm(to))
      return -EXDEV;
    if (xchg)
      return tmp_exchange(sb, from, to);
    if ((flags & RENAME_NOREPLACE) && tmp_lookup_err(sb, to, &x) == 0)
      return -EEXIST;
    return moved(sb, tmp_rename(sb, from, to, false), from, to, false);
  }
  if (virt_is_virt(from) || virt_is_virt(to))
    return virt_is_virt(from) != virt_is_virt(to) ? -EXDEV : -EROFS;
  struct ovl a, b;
  if ((r = ovl_lookup(sb, from, false, &a)) == OVL_VIRT)
    return -EXDEV;
  if (r < 0)
    return r;
  if ((r = ovl_lookup(sb, to, false, &b)) == OVL_VIRT)
    return -EXDEV;
  if (r < 0 && (xchg || r != -ENOENT || !b.parent_ok))
    return r;
  bool exists = r == 0, dir = S_ISDIR(a.st.st_mode);
  if (exists && (flags & RENAME_NOREPLACE))
    return -EEXIST;
  if (!strcmp(a.path, "/") || !strcmp(b.path, "/"))
    return -EBUSY;
  size_t al = strlen(a.path), bl = strlen(b.path);
  if ((!strncmp(b.path, a.path, al) && b.path[al] == '/') ||
      (xchg && !strncmp(a.path, b.path, bl) && a.path[bl] == '/'))
    return -EINVAL; /* into itself */
  if (exists && !strcmp(a.path, b.path))
    return 0;
  struct tnode *n;
  if (xchg) {
    if ((dir && (!a.node || !tmp_is_opaque(a.node))) || (S_ISDIR(b.st.st_mode) && (!b.node || !tmp_is_opaque(b.node))))
      return -EXDEV;
    if ((!a.node && (r = ovl_copyup(sb, a.path, true, &n)) < 0) ||
        (!b.node && (r = ovl_copyup(sb, b.path, true, &n)) < 0))
      return r;
    return tmp_exchange(sb, a.path, b.path);
  }
  if (exists) {
    if (S_ISDIR(b.st.st_mode) && !dir)
      return -EISDIR;
    if (!S_ISDIR(b.st.st_mode) && dir)
      return -ENOTDIR;
    if (dir && (r = ovl_empty(sb, &b)) < 0)
      return r;
  }
  if (dir && (!a.node || !tmp_is_opaque(a.node)))
    return -EXDEV;
  if (!a.node && (r = ovl_copyup(sb, a.path, true, &n)) < 0)
    return r;
  if ((r = ovl_copyup_parent(sb, b.path, &n)) < 0)
    return r;
  return moved(sb, tmp_rename(sb, a.path, b.path, ovl_lower_has(sb, a.path)), a.path, b.path, dir);
}

/* link, linkat: hard links within the overlay (a lower file is copied up
 * first) or within /dev/shm. */
/* link of an open file (linkat AT_EMPTY_PATH, or a /proc/self/fd/N link
 * followed): an upper file by its node (an O_TMPFILE one takes the name),
 * a lower one by its path (copied up). */
static long link_file(struct sb *sb, struct file *f, char *from, const char *to)
{
  long r;
  if (f->type == F_TMPDIR || f->type == F_DIR || f->type == F_VDIR)
    return -EPERM;
  if (f->type == F_TMP && f->node) {
    if (tmp_is_shm(to))
      return note(sb, tmp_link_node(sb, f->node, to), to, IN_CREATE, false);
    struct ovl b;
    if (virt_is_virt(to))
      return -EXDEV;
    if ((r = new_name(sb, to, &b)) < 0)
      return r;
    return note(sb, tmp_link_node(sb, f->node, b.path), b.path, IN_CREATE, false);
  }
  if (f->type == F_HOST && !f->node && f->stdio < 0 && f->path[0] == '/') {
    snprintf(from, PATH_MAX, "%s", f->path);
    return 1; /* by its path */
  }
  return -EXDEV; /* a pipe, a socket, a device... */
}

static long do_link(struct sb *sb, int ofd, uint64_t op, int nfd, uint64_t np, int flags)
{
  if (flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH))
    return -EINVAL;
  char from[PATH_MAX], to[PATH_MAX];
  long r;
  if (flags & AT_EMPTY_PATH) {
    char first[2];
    if ((r = mm_str(sb, op, first, sizeof first)) < 0 && r != -ENAMETOOLONG)
      return r;
    if (r >= 0 && !first[0]) {
      /* Linux: only with CAP_DAC_READ_SEARCH (root here), else ENOENT */
      if (sb->uid != 0)
        return -ENOENT;
      struct file *f = fs_get(sb, ofd);
      if (!f)
        return ofd == AT_FDCWD ? -EPERM : -EBADF;
      bool slash;
      if ((r = resolve_at(sb, nfd, np, to, false, &slash)) < 0 || (r = slash_new(sb, to, slash)) < 0 ||
          (r = link_file(sb, f, from, to)) <= 0)
        return r;
      goto by_path;
    }
  }
  bool slash;
  if ((r = resolve(sb, ofd, op, from, false)) < 0 || (r = resolve_at(sb, nfd, np, to, false, &slash)) < 0 ||
      (r = slash_new(sb, to, slash)) < 0)
    return r;
  if (flags & AT_SYMLINK_FOLLOW) {
    struct file *f;
    if ((r = follow_magic(sb, from, &f)) < 0)
      return r;
    if (f && (r = link_file(sb, f, from, to)) <= 0)
      return r;
  }
by_path:;
  struct stat st;
  if (tmp_is_shm(from) || tmp_is_shm(to)) {
    if (tmp_is_shm(from) != tmp_is_shm(to))
      return stat_abs(sb, from, true, &st) < 0 ? -ENOENT : -EXDEV;
    return note(sb, tmp_link(sb, from, to), to, IN_CREATE, false);
  }
  if (virt_is_virt(from) || virt_is_virt(to))
    return (r = stat_abs(sb, from, true, &st)) < 0 ? r : virt_is_virt(from) != virt_is_virt(to) ? -EXDEV : -EPERM;
  struct ovl a, b;
  if ((r = ovl_lookup(sb, from, flags & AT_SYMLINK_FOLLOW, &a)) == OVL_VIRT)
    return -EXDEV;
  if (r < 0)
    return r;
  if (S_ISDIR(a.st.st_mode))
    return -EPERM; /* Linux: no hard link to a directory */
  if ((r = new_name(sb, to, &b)) < 0)
    return r;
  struct tnode *n;
  if (!a.node && (r = ovl_copyup(sb, a.path, true, &n)) < 0)
    return r;
  return note(sb, tmp_link(sb, a.path, b.path), b.path, IN_CREATE, false);
}

long sys_link(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_link(sb, AT_FDCWD, A(0), AT_FDCWD, A(1), 0);
}

long sys_linkat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_link(sb, (int)A(0), A(1), (int)A(2), A(3), (int)A(4));
}

/* symlink, symlinkat: a symlink node of the upper layer (or /dev/shm). */
long sys_symlink(struct sb *sb, const uint64_t a[6], long nr)
{
  char target[PATH_MAX], abs[PATH_MAX];
  uint64_t tp = A(0), lp = nr == SYS_symlink ? A(1) : A(2);
  int dirfd = nr == SYS_symlink ? AT_FDCWD : (int)A(1);
  bool slash;
  long r = mm_str(sb, tp, target, sizeof target);
  if (r < 0 || (r = resolve_at(sb, dirfd, lp, abs, false, &slash)) < 0 || (r = slash_new(sb, abs, slash)) < 0)
    return r;
  if (!target[0])
    return -ENOENT;
  struct tnode *n;
  if (tmp_is_shm(abs))
    return note(sb, tmp_symlink(sb, abs, target, &n), abs, IN_CREATE, false);
  if (virt_is_virt(abs))
    return virt_name(sb, abs, true);
  struct ovl o;
  if ((r = new_name(sb, abs, &o)) < 0)
    return r;
  return note(sb, tmp_symlink(sb, o.path, target, &n), o.path, IN_CREATE, false);
}

static long do_mkdir(struct sb *sb, int dirfd, uint64_t gpath, unsigned mode)
{
  char abs[PATH_MAX];
  bool slash;
  long r = resolve_at(sb, dirfd, gpath, abs, false, &slash); /* "new/" names a directory: fine */
  if (r < 0)
    return r;
  struct tnode *n;
  if (tmp_is_shm(abs))
    return note(sb, tmp_create(sb, abs, true, mode, &n), abs, IN_CREATE, true);
  if (virt_is_virt(abs))
    return virt_name(sb, abs, true);
  struct ovl o;
  if ((r = new_name(sb, abs, &o)) < 0)
    return r;
  return note(sb, tmp_create(sb, o.path, true, mode, &n), o.path, IN_CREATE, true);
}

/* mknod, mknodat: a FIFO, a regular file (type 0 or S_IFREG) or a socket
 * file (S_IFSOCK: no socket is bound to it, as Linux's) anywhere writable;
 * a device node is EPERM (a sandbox has no CAP_MKNOD); the other errors in
 * Linux's order (may_mknod, then the path, then the type's privilege). */
static long mknod_abs(struct sb *sb, const char *abs, unsigned mode, struct tnode **np);

static long do_mknod(struct sb *sb, int dirfd, uint64_t gpath, unsigned mode)
{
  unsigned type = mode & S_IFMT;
  if (type == S_IFDIR)
    return -EPERM;
  if (type != 0 && type != S_IFREG && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK && type != S_IFSOCK)
    return -EINVAL;
  char abs[PATH_MAX];
  bool slash;
  long r = resolve_at(sb, dirfd, gpath, abs, false, &slash);
  if (r < 0 || (r = slash_new(sb, abs, slash)) < 0)
    return r;
  struct tnode *n;
  return mknod_abs(sb, abs, mode, &n);
}

static long mknod_abs(struct sb *sb, const char *abs, unsigned mode, struct tnode **np)
{
  unsigned type = mode & S_IFMT;
  long r;
  struct tnode *n;
  struct ovl o;
  if (virt_is_virt(abs))
    return virt_name(sb, abs, true);
  if (tmp_is_shm(abs)) {
    if ((r = tmp_lookup_err(sb, abs, &n)) == 0)
      return -EEXIST;
    char dir[PATH_MAX];
    struct tnode *parent;
    snprintf(dir, sizeof dir, "%s", abs);
    *strrchr(dir, '/') = 0;
    if (r != -ENOENT || (r = tmp_lookup_err(sb, dir, &parent)) < 0)
      return r;
    if (!tmp_is_dir(parent))
      return -ENOTDIR;
    snprintf(o.path, sizeof o.path, "%s", abs);
  } else if ((r = ovl_lookup(sb, abs, false, &o)) == 0) {
    return -EEXIST;
  } else if (r == OVL_VIRT) {
    return virt_name(sb, o.path, true);
  } else if (r != -ENOENT || !o.parent_ok) {
    return r;
  }
  if (type == S_IFCHR || type == S_IFBLK)
    return -EPERM;
  struct tnode *dir;
  if (!tmp_is_shm(o.path) && (r = ovl_copyup_parent(sb, o.path, &dir)) < 0)
    return r;
  return note(sb,
              type == S_IFIFO    ? tmp_mkfifo(sb, o.path, mode, np)
              : type == S_IFSOCK ? tmp_mksock(sb, o.path, mode, np)
                                 : tmp_create(sb, o.path, false, mode, np),
              o.path, IN_CREATE, false);
}

/* bind(2) of an AF_UNIX path name (net.c): mknod S_IFSOCK with the mode
 * Linux gives (0777 less the umask), the node referenced for the socket. */
long fs_sock_bind(struct sb *sb, const char *path, struct tnode **out)
{
  char abs[PATH_MAX];
  long r = path_abs(sb->cwd, path, abs, sizeof abs);
  if (r < 0)
    return r;
  if (!strcmp(abs, "/"))
    return -EEXIST;
  if ((r = mknod_abs(sb, abs, S_IFSOCK | 0777, out)) < 0)
    return r;
  tmp_ref(*out);
  return 0;
}

/* connect(2), sendto(2) of an AF_UNIX path name (net.c): 0 and the socket
 * file's node (NULL: the name exists but is no socket of the sandbox's: a
 * file of the root, of /proc or /dev), or -errno. */
long fs_sock_lookup(struct sb *sb, const char *path, struct tnode **out)
{
  char abs[PATH_MAX];
  long r = path_abs(sb->cwd, path, abs, sizeof abs);
  *out = NULL;
  if (r < 0)
    return r;
  struct tnode *n;
  if (tmp_is_shm(abs)) {
    if ((r = tmp_lookup_err(sb, abs, &n)) < 0)
      return r;
    *out = tmp_is_sock(n) ? n : NULL;
    return 0;
  }
  struct ovl o;
  if ((r = ovl_lookup(sb, abs, true, &o)) == OVL_VIRT) {
    struct stat st;
    return (r = stat_abs(sb, o.path, false, &st)) < 0 ? r : 0;
  }
  if (r < 0)
    return r;
  *out = o.node && tmp_is_sock(o.node) ? o.node : NULL;
  return 0;
}

static long do_stat_path(struct sb *sb, int dirfd, uint64_t gpath, int flags, struct stat *st)
{
  if (flags & AT_EMPTY_PATH) {
    char c;
    if (mm_copy_in(sb, &c, gpath, 1) < 0)
      return -EFAULT;
    if (!c) {
      if (dirfd == AT_FDCWD)
        return stat_abs(sb, sb->cwd, false, st);
      struct file *f = fs_get(sb, dirfd);
      return f ? file_stat(sb, f, st) : -EBADF;
    }
  }
  char abs[PATH_MAX];
  long r = resolve(sb, dirfd, gpath, abs, false);
  if (r < 0)
    return r;
  return stat_abs(sb, abs, flags & AT_SYMLINK_NOFOLLOW, st);
}

static long truncate_node(struct sb *sb, struct tnode *n, uint64_t len)
{
  if ((int64_t)len < 0)
    return -EINVAL;
  if (tmp_is_dir(n))
    return -EISDIR;
  if (tmp_fifo(n))
    return -EINVAL; /* not a regular file */
  return tmp_truncate(n, len);
}

static long do_sendfile(struct sb *sb, int out, int in, uint64_t offp, uint64_t count)
{
  struct file *fo = fs_get(sb, out), *fi = fs_get(sb, in);
  if (!fo || !fi)
    return -EBADF;
  /* Linux's checks: in readable, out writable (EBADF), out not O_APPEND */
  if ((fi->flags & O_ACCMODE) == O_WRONLY || (fi->flags & O_PATH) || (fo->flags & O_ACCMODE) == O_RDONLY ||
      (fo->flags & O_PATH))
    return -EBADF;
  if (fo->flags & O_APPEND)
    return -EINVAL;
  int64_t off = -1;
  if (offp && mm_copy_in(sb, &off, offp, 8) < 0)
    return -EFAULT;
  if (count > (1 << 20))
    count = 1 << 20;
  char *buf = malloc(count ? count : 1);
  if (!buf)
    return -ENOMEM;
  long n;
  /* Read into the bounce buffer through the same paths as read(2). */
  switch (fi->type) {
  case F_HOST:
    n = off < 0 ? read(fi->hostfd, buf, count) : pread(fi->hostfd, buf, count, off);
    n = n < 0 ? -errno : n;
    break;
  case F_TMP:
    n = tmp_read(fi->node, buf, count, off < 0 ? fi->off : (uint64_t)off);
    if (n > 0 && off < 0)
      fi->off += (uint64_t)n;
    break;
  case F_DEV:
    n = virt_read(fi, buf, count, 0);
    break;
  case F_VIRT:
    n = virt_read(fi, buf, count, off < 0 ? fi->off : (uint64_t)off);
    if (n > 0 && off < 0)
      fi->off += (uint64_t)n;
    break;
  default:
    n = -EINVAL;
  }
  long w = n;
  if (n > 0) {
    switch (fo->type) {
    case F_HOST:
      w = write(fo->hostfd, buf, (size_t)n);
      w = w < 0 ? -errno : w;
      break;
    case F_TMP: {
      uint64_t o = fo->off;
      if (fo->flags & O_APPEND) {
        struct stat st;
        tmp_stat(fo->node, &st);
        o = (uint64_t)st.st_size;
      }
      w = tmp_write(fo->node, buf, (uint64_t)n, o);
      if (w > 0) {
        fo->off = o + (uint64_t)w;
      }
      break;
    }
    case F_DEV:
    case F_VIRT:
      w = virt_write(sb, fo, buf, (uint64_t)n);
      break;
    default:
      w = -EINVAL;
    }
  }
  free(buf);
  if (n > 0 && off >= 0 && w > 0) {
    off += w;
    mm_copy_out(sb, offp, &off, 8);
  }
  return w;
}

/* ---- chmod, chown, utimes: the upper layer keeps them (a lower entry is
 * copied up first); /proc and /dev are read-only ---- */

/* The upper node (file, directory or FIFO) of open file f: its own, or for
 * a file of the lower opened by path, the copy-up of that path (overlayfs
 * copies up the file an fd refers to; the fd reads the lower still); else
 * -EROFS: stdio, pipes, /dev/null: nothing of the host changes. */
/* What a metadata call asks (do_setattr): checked against its target's
 * attributes before anything is copied up, so a call that is refused
 * changes nothing (Linux checks before it acts; a copy-up is an act). */
struct attr_req {
  enum { ATTR_MODE, ATTR_OWNER, ATTR_TIMES } kind;
  int uid, gid; /* ATTR_OWNER: -1 keeps */
  bool now;     /* ATTR_TIMES: NULL times (set to now) */
};

static long attr_allowed(struct sb *sb, const struct attr_req *q, const struct stat *st)
{
  if (sb->uid == 0)
    return 0;
  switch (q->kind) {
  case ATTR_MODE:
    return st->st_uid != (uid_t)sb->uid ? -EPERM : 0;
  case ATTR_OWNER: /* not root: the owner may keep the owner and pick a group it is in */
    return (q->uid != -1 && (uid_t)q->uid != st->st_uid) || st->st_uid != (uid_t)sb->uid ||
                   (q->gid != -1 && !task_in_group(sb, (uint32_t)q->gid) && (gid_t)q->gid != st->st_gid)
               ? -EPERM
               : 0;
  default: /* only the owner (or root) may set explicit times; anyone who may write may set now */
    if (st->st_uid != (uid_t)sb->uid && (!q->now || !(st->st_mode & 0002)))
      return q->now ? -EACCES : -EPERM;
    return 0;
  }
}

static long file_node(struct sb *sb, struct file *f, const struct attr_req *q, struct tnode **n, char *path)
{
  struct stat st;
  long r;
  *n = f->node;
  snprintf(path, PATH_MAX, "%s", f->path ? f->path : "");
  if (f->node) {
    tmp_stat(f->node, &st);
    return attr_allowed(sb, q, &st);
  }
  if ((f->type == F_HOST || f->type == F_DIR) && f->stdio < 0 && f->path[0] == '/' && !virt_is_virt(f->path) &&
      !tmp_is_shm(f->path)) {
    if (fstat(f->hostfd, &st) < 0)
      return -EIO;
    return (r = attr_allowed(sb, q, &st)) < 0 ? r : ovl_copyup(sb, f->path, true, n);
  }
  return -EROFS;
}

/* The upper node of abs (a lower one copied up once q is allowed); -EROFS
 * in /proc, /dev. */
static long path_node(struct sb *sb, const char *abs, bool nofollow, const struct attr_req *q, struct tnode **n,
                      char *path)
{
  struct stat st;
  long r;
  snprintf(path, PATH_MAX, "%s", abs);
  if (tmp_is_shm(abs)) {
    if ((r = tmp_lookup_err(sb, abs, n)) < 0)
      return r;
    tmp_stat(*n, &st);
    return attr_allowed(sb, q, &st);
  }
  if (virt_is_virt(abs))
    return (r = stat_abs(sb, abs, nofollow, &st)) < 0 ? r : -EROFS;
  struct ovl o;
  if ((r = ovl_lookup(sb, abs, !nofollow, &o)) == OVL_VIRT)
    return (r = stat_abs(sb, o.path, nofollow, &st)) < 0 ? r : -EROFS;
  if (r < 0 || (r = attr_allowed(sb, q, &o.st)) < 0)
    return r;
  snprintf(path, PATH_MAX, "%s", o.path);
  *n = o.node;
  return o.node ? 0 : ovl_copyup(sb, o.path, true, n);
}

/* The upper node of a metadata call's target once q is allowed on it: 0
 * and *n, or -errno (EROFS for an existing file of /proc or /dev). use_fd:
 * dfd itself (fchmod; a NULL path of utimensat/futimesat); empty_ok:
 * AT_EMPTY_PATH. The target's path goes into path (PATH_MAX), for
 * IN_ATTRIB. */
static long setattr_target(struct sb *sb, int dfd, uint64_t gpath, bool nofollow, bool empty_ok, bool use_fd,
                           const struct attr_req *q, struct tnode **n, char *path)
{
  long r;
  if (!use_fd && empty_ok) {
    char c;
    if (mm_copy_in(sb, &c, gpath, 1) < 0)
      return -EFAULT;
    use_fd = !c;
  }
  if (use_fd) {
    struct file *f = dfd == AT_FDCWD ? NULL : fs_get(sb, dfd);
    if (dfd == AT_FDCWD)
      return path_node(sb, sb->cwd, false, q, n, path);
    return f ? file_node(sb, f, q, n, path) : -EBADF;
  }
  char abs[PATH_MAX];
  struct file *f = NULL;
  if ((r = resolve(sb, dfd, gpath, abs, false)) < 0 || (!nofollow && (r = follow_magic(sb, abs, &f)) < 0))
    return r;
  if (f) /* chmod("/proc/self/fd/N"): that file (glibc's fchmodat with AT_SYMLINK_NOFOLLOW does this) */
    return file_node(sb, f, q, n, path);
  return path_node(sb, abs, nofollow, q, n, path);
}

/* utime/utimes/futimesat/utimensat times into utimensat's form: 0 with
 * ts[2] filled (*now: NULL times), 1 when both are UTIME_OMIT, or -errno. */
static long read_times(struct sb *sb, long nr, uint64_t addr, struct timespec ts[2], bool *now)
{
  *now = !addr;
  if (!addr)
    return 0;
  if (nr == SYS_utime) {
    int64_t t[2]; /* struct utimbuf: actime, modtime */
    if (mm_copy_in(sb, t, addr, sizeof t) < 0)
      return -EFAULT;
    ts[0] = (struct timespec){t[0], 0};
    ts[1] = (struct timespec){t[1], 0};
    return 0;
  }
  if (nr == SYS_utimes || nr == SYS_futimesat) {
    struct timeval tv[2];
    if (mm_copy_in(sb, tv, addr, sizeof tv) < 0)
      return -EFAULT;
    for (int i = 0; i < 2; i++) {
      if (tv[i].tv_usec < 0 || tv[i].tv_usec >= 1000000)
        return -EINVAL;
      ts[i] = (struct timespec){tv[i].tv_sec, tv[i].tv_usec * 1000};
    }
    return 0;
  }
  if (mm_copy_in(sb, ts, addr, 2 * sizeof *ts) < 0)
    return -EFAULT;
  for (int i = 0; i < 2; i++)
    if (ts[i].tv_nsec != UTIME_NOW && ts[i].tv_nsec != UTIME_OMIT && (ts[i].tv_nsec < 0 || ts[i].tv_nsec >= 1000000000))
      return -EINVAL;
  return ts[0].tv_nsec == UTIME_OMIT && ts[1].tv_nsec == UTIME_OMIT ? 1 : 0;
}

/* 0, after IN_ATTRIB to the watchers of path (n's). */
static long attr_changed(struct sb *sb, struct tnode *n, const char *path)
{
  if (path[0] == '/')
    inotify_event(sb, path, IN_ATTRIB, 0, tmp_is_dir(n));
  return 0;
}

static long do_setattr(struct sb *sb, long nr, const uint64_t a[6])
{
  struct tnode *n;
  char path[PATH_MAX];
  long r;
  switch (nr) {
  case SYS_chmod:
  case SYS_fchmodat:
  case SYS_fchmod: {
    unsigned mode = (unsigned)(nr == SYS_fchmodat ? A(2) : A(1));
    struct attr_req q = {.kind = ATTR_MODE};
    if (nr == SYS_fchmod)
      r = setattr_target(sb, (int)A(0), 0, false, false, true, &q, &n, path);
    else
      r = setattr_target(sb, nr == SYS_chmod ? AT_FDCWD : (int)A(0), nr == SYS_chmod ? A(0) : A(1), false, false, false,
                         &q, &n, path);
    if (r < 0)
      return r;
    tmp_chmod(n, mode);
    return attr_changed(sb, n, path);
  }
  case SYS_chown:
  case SYS_lchown:
  case SYS_fchown:
  case SYS_fchownat: {
    struct attr_req q = {.kind = ATTR_OWNER};
    if (nr == SYS_fchownat) {
      if (A(4) & ~(uint64_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
        return -EINVAL;
      q.uid = (int)A(2);
      q.gid = (int)A(3);
      r = setattr_target(sb, (int)A(0), A(1), A(4) & AT_SYMLINK_NOFOLLOW, A(4) & AT_EMPTY_PATH, false, &q, &n, path);
    } else {
      q.uid = (int)A(1);
      q.gid = (int)A(2);
      if (nr == SYS_fchown)
        r = setattr_target(sb, (int)A(0), 0, false, false, true, &q, &n, path);
      else
        r = setattr_target(sb, AT_FDCWD, A(0), nr == SYS_lchown, false, false, &q, &n, path);
    }
    if (r < 0)
      return r;
    tmp_chown(n, q.uid, q.gid);
    return attr_changed(sb, n, path);
  }
  default: { /* utime, utimes, futimesat, utimensat */
    struct timespec ts[2];
    struct attr_req q = {.kind = ATTR_TIMES};
    uint64_t times = nr == SYS_utime || nr == SYS_utimes ? A(1) : A(2);
    if ((r = read_times(sb, nr, times, ts, &q.now)) < 0)
      return r;
    if (nr == SYS_utimensat) {
      if (A(3) & ~(uint64_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
        return -EINVAL;
      if (r == 1)
        return 0; /* both UTIME_OMIT: Linux does not even look the path up */
      if (!A(1) && A(3) & AT_SYMLINK_NOFOLLOW)
        return -EINVAL;
      /* A NULL path: the fd itself (futimens); with AT_FDCWD, EFAULT as Linux. */
      if (!A(1) && (int)A(0) == AT_FDCWD)
        return -EFAULT;
      r = setattr_target(sb, (int)A(0), A(1), A(3) & AT_SYMLINK_NOFOLLOW, A(3) & AT_EMPTY_PATH, !A(1), &q, &n, path);
    } else if (nr == SYS_futimesat) {
      if (!A(1) && (int)A(0) == AT_FDCWD)
        return -EFAULT;
      r = setattr_target(sb, (int)A(0), A(1), false, false, !A(1), &q, &n, path);
    } else {
      r = setattr_target(sb, AT_FDCWD, A(0), false, false, false, &q, &n, path);
    }
    if (r < 0)
      return r;
    tmp_utimes(n, q.now ? NULL : ts);
    return attr_changed(sb, n, path);
  }
  }
}

/* ---- the system calls (systab.c's table) ---- */

long sys_read(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? do_read(sb, f, A(1), A(2), -1) : -EBADF;
}

long sys_write(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? do_write(sb, f, A(1), A(2), -1) : -EBADF;
}

long sys_pread64(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? ((int64_t)A(3) < 0 ? -EINVAL : do_read(sb, f, A(1), A(2), (int64_t)A(3))) : -EBADF;
}

long sys_pwrite64(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? ((int64_t)A(3) < 0 ? -EINVAL : do_write(sb, f, A(1), A(2), (int64_t)A(3))) : -EBADF;
}

long sys_readv(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? do_iov(sb, f, A(1), A(2), -1, false) : -EBADF;
}

long sys_writev(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? do_iov(sb, f, A(1), A(2), -1, true) : -EBADF;
}

long sys_preadv(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  return (f = fs_get(sb, fd)) ? do_iov(sb, f, A(1), A(2), (int64_t)A(3), false) : -EBADF;
}

long sys_preadv2(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  /* preadv2(fd, iov, cnt, pos, pos_high, flags); pos -1: the file offset.
   * No file here ever waits for I/O (memory, host files, non-blocking
   * pipes), so RWF_NOWAIT changes nothing; the other flags are hints for
   * a read. RWF_NOWAIT matters to the pause point (sandbox.c): a read
   * that does not wait is not a program waiting for input. */
  if (A(5) & ~(uint64_t)(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND))
    return -EOPNOTSUPP;
  if ((int64_t)A(3) < -1)
    return -EINVAL;
  return (f = fs_get(sb, fd)) ? do_iov(sb, f, A(1), A(2), (int64_t)A(3), false) : -EBADF;
}

/* pwritev, pwritev2(fd, iov, cnt, pos, pos_high, flags): pos -1 (pwritev2
 * only) is the file offset. Every write here is done when the call
 * returns (memory, host pipes): RWF_DSYNC, RWF_SYNC and RWF_HIPRI change
 * nothing; RWF_NOWAIT too (no file waits for I/O); RWF_APPEND writes at
 * the end, as O_APPEND, without moving the offset. */
long sys_pwritev(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  uint64_t flags = nr == SYS_pwritev2 ? A(5) : 0;
  int64_t off = (int64_t)A(3);
  struct file *f;
  if (flags & ~(uint64_t)(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND))
    return -EOPNOTSUPP;
  if (off < (nr == SYS_pwritev2 ? -1 : 0))
    return -EINVAL;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if (!(flags & RWF_APPEND))
    return do_iov(sb, f, A(1), A(2), off, true);
  int keep = f->flags;
  uint64_t pos = f->off;
  f->flags |= O_APPEND;
  long r = do_iov(sb, f, A(1), A(2), -1, true);
  f->flags = keep;
  if (off >= 0 && f->type == F_TMP)
    f->off = pos;
  return r;
}

long sys_open(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_open(sb, AT_FDCWD, A(0), (int)A(1), (unsigned)A(2));
}

long sys_creat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_open(sb, AT_FDCWD, A(0), O_CREAT | O_WRONLY | O_TRUNC, (unsigned)A(1));
}

long sys_openat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_open(sb, (int)A(0), A(1), (int)A(2), (unsigned)A(3));
}

long sys_close(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  if (!fs_get(sb, fd))
    return -EBADF;
  fd_close(sb, fd);
  return 0;
}

long sys_fstat(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  struct stat st;
  long r;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if ((r = file_stat(sb, f, &st)) < 0)
    return r;
  return mm_copy_out(sb, A(1), &st, sizeof st);
}

/* stat, lstat */
long sys_stat(struct sb *sb, const uint64_t a[6], long nr)
{
  struct stat st;
  long r;
  if ((r = do_stat_path(sb, AT_FDCWD, A(0), nr == SYS_lstat ? AT_SYMLINK_NOFOLLOW : 0, &st)) < 0)
    return r;
  return mm_copy_out(sb, A(1), &st, sizeof st);
}

long sys_newfstatat(struct sb *sb, const uint64_t a[6], long nr)
{
  struct stat st;
  long r;
  if ((r = do_stat_path(sb, (int)A(0), A(1), (int)A(3), &st)) < 0)
    return r;
  return mm_copy_out(sb, A(2), &st, sizeof st);
}

long sys_statx(struct sb *sb, const uint64_t a[6], long nr)
{
  struct stat st;
  long r;
  if ((r = do_stat_path(sb, (int)A(0), A(1), (int)A(2), &st)) < 0)
    return r;
  struct statx x;
  stat_to_statx(&st, &x);
  return mm_copy_out(sb, A(4), &x, sizeof x);
}

long sys_lseek(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  struct stat st;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  int64_t off = (int64_t)A(1);
  int wh = (int)A(2);
  if (f->type == F_HOST || (f->type == F_DIR && !f->vdata)) {
    off_t o = lseek(f->hostfd, off, wh);
    return o < 0 ? -errno : o;
  }
  if (f->type == F_DEV || f->type == F_EVENTFD || f->type == F_SIGNALFD || f->type == F_EPOLL ||
      f->type == F_TIMERFD)
    return 0; /* noop_llseek */
  if (f->type == F_PIDFD)
    return -ESPIPE;
  if (wh == SEEK_DATA || wh == SEEK_HOLE) {
    if (f->type != F_TMP || !f->node)
      return -EINVAL; /* F_VDIR, F_VIRT: default_llseek's */
    long r = tmp_seek_data(f->node, off, wh);
    if (r >= 0)
      f->off = (uint64_t)r;
    return r;
  }
  if (f->type == F_VDIR || f->type == F_DIR) { /* an entry index, as tmpfs directories (F_DIR: listing merged) */
    if (wh != SEEK_SET && wh != SEEK_CUR)
      return -EINVAL;
    st.st_size = 0;
  } else if (f->type == F_VIRT) {
    st.st_size = (off_t)f->vlen;
  } else {
    tmp_stat(f->node, &st);
  }
  int64_t base = wh == SEEK_SET ? 0 : wh == SEEK_CUR ? (int64_t)f->off : wh == SEEK_END ? st.st_size : -1;
  if (base < 0 || base + off < 0)
    return -EINVAL;
  f->off = (uint64_t)(base + off);
  return (long)f->off;
}

long sys_getdents64(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f = fs_get(sb, fd);
  if (!f)
    return -EBADF;
  long r = do_getdents(sb, f, A(1), A(2));
  if (r > 0)
    note_file(sb, f, IN_ACCESS);
  return r;
}

long sys_getcwd(struct sb *sb, const uint64_t a[6], long nr)
{
  long r;
  size_t n = strlen(sb->cwd) + 1;
  if (A(1) < n)
    return -ERANGE;
  r = mm_copy_out(sb, A(0), sb->cwd, n);
  return r < 0 ? r : (long)n;
}

int fs_chdir(struct sb *sb, const char *path)
{
  char abs[PATH_MAX];
  long r;
  if (path[0] != '/')
    return cf_fail(EINVAL, "the working directory %s: not an absolute path", path);
  if ((r = path_abs("/", path, abs, sizeof abs)) < 0 || (r = do_chdir_abs(sb, abs)) < 0)
    return cf_fail((int)-r, "the working directory %s: %s", path, strerror((int)-r));
  return 0;
}

long sys_chdir(struct sb *sb, const uint64_t a[6], long nr)
{
  long r;
  char abs[PATH_MAX];
  if ((r = resolve(sb, AT_FDCWD, A(0), abs, false)) < 0)
    return r;
  return do_chdir_abs(sb, abs);
}

long sys_fchdir(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if (f->type != F_DIR && f->type != F_TMPDIR && f->type != F_VDIR)
    return -ENOTDIR;
  return do_chdir_abs(sb, f->path);
}

long sys_readlink(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_readlink(sb, AT_FDCWD, A(0), A(1), A(2));
}

long sys_readlinkat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_readlink(sb, (int)A(0), A(1), A(2), A(3));
}

long sys_access(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_access(sb, AT_FDCWD, A(0), (int)A(1), 0);
}

long sys_faccessat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_access(sb, (int)A(0), A(1), (int)A(2), 0);
}

long sys_faccessat2(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_access(sb, (int)A(0), A(1), (int)A(2), (int)A(3));
}

long sys_dup(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  long r;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  f->refs++;
  r = fd_install(sb, f, 0, false);
  if (r < 0)
    f->refs--;
  return r;
}

/* dup2, dup3 */
long sys_dup2(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  int nfd = (int)A(1);
  if (nr == SYS_dup3 && (A(2) & ~(uint64_t)O_CLOEXEC))
    return -EINVAL;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if (nfd < 0 || nfd >= fd_limit(sb))
    return -EBADF;
  if (nfd == fd)
    return nr == SYS_dup3 ? -EINVAL : nfd;
  if (fd_table_grow(sb, nfd + 1) < 0)
    return -ENOMEM;
  f->refs++;
  fd_close(sb, nfd);
  sb->fds[nfd] = f;
  sb->cloexec[nfd] = nr == SYS_dup3 && (A(2) & O_CLOEXEC);
  return nfd;
}

/* pipe, pipe2 */
long sys_pipe(struct sb *sb, const uint64_t a[6], long nr)
{
  int p[2];
  if (nr == SYS_pipe2 && (A(1) & ~(uint64_t)(O_CLOEXEC | O_NONBLOCK | O_DIRECT)))
    return -EINVAL; /* (O_NOTIFICATION_PIPE: no watch queues here) */
  /* O_DIRECT: packet mode, the host pipe's own */
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK | (nr == SYS_pipe2 ? (int)(A(1) & O_DIRECT) : 0)) < 0)
    return -errno;
  int nb = nr == SYS_pipe2 ? (int)(A(1) & O_NONBLOCK) : 0;
  struct file *rf = file_new(F_HOST, p[0], O_RDONLY | nb, "pipe:"), *wf = file_new(F_HOST, p[1], O_WRONLY | nb, "pipe:");
  if (!rf || !wf) {
    if (rf)
      file_unref(rf);
    else
      close(p[0]);
    if (wf)
      file_unref(wf);
    else
      close(p[1]);
    return -ENOMEM;
  }
  bool ce = nr == SYS_pipe2 && (A(1) & O_CLOEXEC);
  int g[2] = {fd_install(sb, rf, 0, ce), -1};
  if (g[0] >= 0)
    g[1] = fd_install(sb, wf, 0, ce);
  if (g[1] < 0 || mm_copy_out(sb, A(0), g, sizeof g) < 0) {
    if (g[0] >= 0)
      sb->fds[g[0]] = NULL;
    if (g[1] >= 0)
      sb->fds[g[1]] = NULL;
    file_unref(rf);
    file_unref(wf);
    return g[1] < 0 ? -EMFILE : -EFAULT;
  }
  return 0;
}

/* f's open flags as Linux's f_flags (F_GETFL, /proc/PID/fdinfo): what the
 * open asked, and O_LARGEFILE where Linux's open(2) adds it on x86-64 (a
 * file opened by path: the sandbox's own, or a host file as the host says;
 * never a pipe, socket or anonymous-inode file, nor an O_PATH open). */
#define KERNEL_O_LARGEFILE 0100000 /* (glibc's O_LARGEFILE is 0 on x86-64) */
int fs_getfl(struct file *f)
{
  int flags = f->flags;
  if ((f->type == F_HOST || f->type == F_DIR) && f->hostfd >= 0) {
    int hf = fcntl(f->hostfd, F_GETFL);
    if (hf >= 0)
      flags |= hf & KERNEL_O_LARGEFILE;
  }
  if (f->type == F_TMP || f->type == F_TMPDIR || f->type == F_DEV || f->type == F_VIRT || f->type == F_VDIR)
    flags |= KERNEL_O_LARGEFILE;
  if (flags & O_PATH) /* (Linux keeps only O_PATH of an O_PATH open's flags) */
    flags &= ~KERNEL_O_LARGEFILE;
  return flags;
}

long sys_fcntl(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  return do_fcntl(sb, fd, (int)A(1), A(2));
}

long sys_ioctl(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  return do_ioctl(sb, fd, A(1), A(2));
}

long sys_mkdir(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_mkdir(sb, AT_FDCWD, A(0), (unsigned)A(1));
}

long sys_mkdirat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_mkdir(sb, (int)A(0), A(1), (unsigned)A(2));
}

/* mknod, mknodat */
long sys_mknod(struct sb *sb, const uint64_t a[6], long nr)
{
  return nr == SYS_mknod ? do_mknod(sb, AT_FDCWD, A(0), (unsigned)A(1)) : do_mknod(sb, (int)A(0), A(1), (unsigned)A(2));
}

long sys_unlink(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_unlink(sb, AT_FDCWD, A(0), 0);
}

long sys_rmdir(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_unlink(sb, AT_FDCWD, A(0), AT_REMOVEDIR);
}

long sys_unlinkat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_unlink(sb, (int)A(0), A(1), (int)A(2));
}

long sys_rename(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_rename(sb, AT_FDCWD, A(0), AT_FDCWD, A(1), 0);
}

/* renameat, renameat2 */
long sys_renameat(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_rename(sb, (int)A(0), A(1), (int)A(2), A(3), nr == SYS_renameat2 ? A(4) : 0);
}

long sys_ftruncate(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  struct file *f;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if (f->type != F_TMP)
    return f->type == F_HOST ? -EINVAL : -EROFS;
  if ((f->flags & O_ACCMODE) == O_RDONLY)
    return -EINVAL; /* Linux: not open for writing */
  return note(sb, truncate_node(sb, f->node, A(1)), f->path, IN_MODIFY, false);
}

/* Linux's vfs_fallocate checks in its order, then the file's own: an
 * upper file's is tmpfs's (tmp_fallocate); a lower file is open read-only
 * (one opened for writing was copied up), so EBADF. */
long sys_fallocate(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0), mode = (int)A(1);
  int64_t off = (int64_t)A(2), len = (int64_t)A(3);
  struct file *f;
  if (!(f = fs_get(sb, fd)))
    return -EBADF;
  if (off < 0 || len <= 0)
    return -EINVAL;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |
               FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE))
    return -EOPNOTSUPP;
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
    return -EOPNOTSUPP;
  if ((mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) && (mode & ~(FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)))
    return -EINVAL;
  if ((mode & FALLOC_FL_ZERO_RANGE) && (mode & ~(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)))
    return -EINVAL;
  if ((f->flags & O_ACCMODE) == O_RDONLY || f->type == F_DIR || f->type == F_TMPDIR || f->type == F_VDIR)
    return -EBADF;
  if (f->type == F_HOST) {
    struct stat st;
    if (fstat(f->hostfd, &st) == 0 && S_ISFIFO(st.st_mode))
      return -ESPIPE;
    return -ENODEV;
  }
  if (f->type != F_TMP || !f->node)
    return -ENODEV; /* devices, eventfd, sockets...: not a regular file */
  if (tmp_fifo(f->node))
    return -ESPIPE;
  if ((uint64_t)off + (uint64_t)len > (uint64_t)INT64_MAX)
    return -EFBIG;
  return note(sb, tmp_fallocate(f->node, mode, (uint64_t)off, (uint64_t)len), f->path, IN_MODIFY, false);
}

long sys_truncate(struct sb *sb, const uint64_t a[6], long nr)
{
  struct stat st;
  long r;
  char abs[PATH_MAX];
  struct file *f;
  if ((r = resolve(sb, AT_FDCWD, A(0), abs, false)) < 0 || (r = follow_magic(sb, abs, &f)) < 0)
    return r;
  if (f && (f->type == F_DIR || f->type == F_TMPDIR || f->type == F_VDIR))
    return -EISDIR;
  if (f && !f->node && f->type == F_HOST && f->stdio < 0 && f->path[0] == '/') {
    snprintf(abs, sizeof abs, "%s", f->path); /* a lower file: by its path (copied up) */
    f = NULL;
  } else if (f)
    return f->node ? truncate_node(sb, f->node, A(1)) : -EINVAL; /* a pipe, a device... */
  struct tnode *n;
  if (tmp_is_shm(abs)) {
    if ((r = tmp_lookup_err(sb, abs, &n)) < 0)
      return r;
    return truncate_node(sb, n, A(1));
  }
  if (virt_is_virt(abs))
    return (r = stat_abs(sb, abs, false, &st)) < 0 ? r : -EROFS;
  struct ovl o;
  if ((r = ovl_lookup(sb, abs, true, &o)) == OVL_VIRT)
    return -EROFS;
  if (r < 0)
    return r;
  if (S_ISDIR(o.st.st_mode))
    return -EISDIR;
  if ((int64_t)A(1) < 0)
    return -EINVAL;
  if (!o.node && (r = ovl_copyup(sb, o.path, A(1) > 0, &o.node)) < 0)
    return r;
  return truncate_node(sb, o.node, A(1));
}

long sys_flock(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  return do_flock(sb, fd, A(1));
}

/* fsync, fdatasync, fadvise64 */
long sys_fsync(struct sb *sb, const uint64_t a[6], long nr)
{
  int fd = (int)A(0);
  return fs_get(sb, fd) ? 0 : -EBADF;
}

long sys_umask(struct sb *sb, const uint64_t a[6], long nr)
{
  long r;
  r = sb->umask;
  sb->umask = A(0) & 0777;
  return r;
}

/* chmod, fchmodat, chown, lchown, fchownat, fchmod, fchown, utime, utimes, futimesat, utimensat */
long sys_chmod(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_setattr(sb, nr, a);
}

long sys_sendfile(struct sb *sb, const uint64_t a[6], long nr)
{
  return do_sendfile(sb, (int)A(0), (int)A(1), A(2), A(3));
}

/* ---- extended attributes: tmpfs's in the upper layer (tmp_setxattr),
 * the host file's for a lower entry, as overlayfs (a set or remove copies
 * the entry up, with its attributes: ovl_copyup) ---- */

/* What an xattr call acts on: an upper node, the lower entry at path, or
 * (none) a file without attributes: /proc, a pipe, a socket (Linux:
 * EOPNOTSUPP), /dev (the sandbox's devices keep none: ENODATA, sets
 * EOPNOTSUPP). st: its attributes. */
struct xtarget {
  struct tnode *node;
  bool lower, none, dev;
  char path[PATH_MAX];
  struct stat st;
};

static long xattr_target(struct sb *sb, const uint64_t a[6], bool byfd, bool nofollow, struct xtarget *t)
{
  long r;
  struct file *f = NULL;
  memset(t, 0, sizeof *t);
  if (byfd) {
    if (!(f = fs_get(sb, (int)A(0))))
      return -EBADF;
  } else {
    if ((r = resolve(sb, AT_FDCWD, A(0), t->path, false)) < 0 || (!nofollow && (r = follow_magic(sb, t->path, &f)) < 0))
      return r;
  }
  if (f) {
    if (f->node) {
      t->node = f->node;
      tmp_stat(f->node, &t->st);
      snprintf(t->path, sizeof t->path, "%s", f->path ? f->path : "");
      return 0;
    }
    if (!((f->type == F_HOST || f->type == F_DIR) && f->stdio < 0 && f->path && f->path[0] == '/' &&
          !virt_is_virt(f->path) && !tmp_is_shm(f->path))) {
      t->none = true;
      t->dev = f->type == F_DEV;
      return 0;
    }
    snprintf(t->path, sizeof t->path, "%s", f->path); /* a lower file, perhaps copied up since */
    nofollow = true;
  }
  if (tmp_is_shm(t->path)) {
    if ((r = tmp_lookup_err(sb, t->path, &t->node)) < 0)
      return r;
    tmp_stat(t->node, &t->st);
    return 0;
  }
  struct ovl o;
  if (virt_is_virt(t->path) || (r = ovl_lookup(sb, t->path, !nofollow, &o)) == OVL_VIRT) {
    if (!virt_is_virt(t->path))
      snprintf(t->path, sizeof t->path, "%s", o.path);
    if ((r = stat_abs(sb, t->path, nofollow, &t->st)) < 0)
      return r;
    t->none = true;
    t->dev = strncmp(t->path, "/proc", 5) != 0 || (t->path[5] && t->path[5] != '/');
    return 0;
  }
  if (r < 0)
    return f ? (t->none = true, 0) : r; /* an fd of a lower file gone since: none */
  snprintf(t->path, sizeof t->path, "%s", o.path);
  t->node = o.node;
  t->lower = !o.node;
  t->st = o.st;
  return 0;
}

/* The name of an xattr call: -ERANGE for an empty one or one of 256 bytes
 * or more (Linux's order: before the path is looked up). */
static long xattr_name(struct sb *sb, uint64_t gname, char name[256])
{
  size_t i = 0;
  for (; i < 256; i++) {
    if (mm_copy_in(sb, &name[i], gname + i, 1) < 0)
      return -EFAULT;
    if (!name[i])
      break;
  }
  return i == 0 || i == 256 ? -ERANGE : 0;
}

/* Linux's xattr_permission and the namespaces' rules (fs/xattr.c, the
 * capability module's for security.*): 0 or -errno. Root is the sandbox's
 * uid 0 (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE). */
static long xattr_allowed(struct sb *sb, const struct stat *st, const char *name, bool write)
{
  bool root = sb->uid == 0;
  if (strncmp(name, "security.", 9) == 0 || strncmp(name, "system.", 7) == 0)
    return write && strncmp(name, "security.", 9) == 0 && !root ? -EPERM : 0;
  if (strncmp(name, "trusted.", 8) == 0)
    return root ? 0 : write ? -EPERM : -ENODATA;
  if (strncmp(name, "user.", 5) == 0) {
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
      return write ? -EPERM : -ENODATA;
    if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) && write && !root && st->st_uid != (uid_t)sb->uid)
      return -EPERM;
  }
  if (root)
    return 0;
  unsigned want = write ? 2 : 4;
  unsigned bits = st->st_uid == (uid_t)sb->uid         ? st->st_mode >> 6
                  : task_in_group(sb, st->st_gid) ? st->st_mode >> 3
                                                  : st->st_mode;
  return bits & want ? 0 : -EACCES;
}

/* The namespaces tmpfs keeps (Linux's handlers): -EOPNOTSUPP for any other
 * (system.* too: POSIX ACLs are not kept), -EINVAL for a prefix alone. */
static long xattr_ns(const char *name)
{
  static const char *const ns[] = {"user.", "trusted.", "security."};
  for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
    if (strncmp(name, ns[i], strlen(ns[i])) == 0)
      return name[strlen(ns[i])] ? 0 : -EINVAL;
  return -EOPNOTSUPP;
}

#define XATTR_MAX 65536 /* XATTR_SIZE_MAX, XATTR_LIST_MAX */

/* getxattr, lgetxattr, fgetxattr, listxattr, llistxattr, flistxattr */
long sys_getxattr(struct sb *sb, const uint64_t a[6], long nr)
{
  bool list = nr == SYS_listxattr || nr == SYS_llistxattr || nr == SYS_flistxattr;
  char name[256] = "";
  long r;
  if (!list && (r = xattr_name(sb, A(1), name)) < 0)
    return r;
  struct xtarget t;
  if ((r = xattr_target(sb, a, nr == SYS_fgetxattr || nr == SYS_flistxattr, nr == SYS_lgetxattr || nr == SYS_llistxattr,
                        &t)) < 0)
    return r;
  uint64_t buf = list ? A(1) : A(2), size = list ? A(2) : A(3);
  size_t n = size > XATTR_MAX ? XATTR_MAX : size;
  if (t.none)
    return list ? 0 : t.dev ? -ENODATA : -EOPNOTSUPP;
  if (!list && !t.lower && (r = xattr_allowed(sb, &t.st, name, false)) < 0)
    return r;
  if (!list && !t.lower && (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default")))
    return S_ISLNK(t.st.st_mode) ? -EOPNOTSUPP : -ENODATA; /* no ACL: a file without one (Linux's answer) */
  if (!list && !t.lower && (r = xattr_ns(name)) < 0)
    return r;
  char *v = n ? malloc(n) : NULL;
  if (n && !v)
    return -ENOMEM;
  if (t.lower)
    r = ovl_lower_xattr(sb, t.path, list ? NULL : name, v, n);
  else
    r = list ? tmp_listxattr(t.node, v, n, sb->uid == 0) : tmp_getxattr(t.node, name, v, n);
  if (r > 0 && n && mm_copy_out(sb, buf, v, (size_t)r) < 0)
    r = -EFAULT;
  free(v);
  return r == -ERANGE && size >= XATTR_MAX ? -E2BIG : r;
}

/* fgetxattr, flistxattr */
long sys_fgetxattr(struct sb *sb, const uint64_t a[6], long nr)
{
  return sys_getxattr(sb, a, nr);
}

/* security.capability's value: a VFS_CAP_REVISION_2 or _3 header of its
 * size (Linux's cap_convert_nscap: EINVAL otherwise). */
static bool caps_valid(const uint8_t *v, size_t len)
{
  uint32_t magic;
  if (len < 4)
    return false;
  memcpy(&magic, v, 4);
  return (len == 20 && (magic & 0xFF000000u) == 0x02000000u) || (len == 24 && (magic & 0xFF000000u) == 0x03000000u);
}

/* setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr, fremovexattr */
long sys_setxattr(struct sb *sb, const uint64_t a[6], long nr)
{
  bool rm = nr == SYS_removexattr || nr == SYS_lremovexattr || nr == SYS_fremovexattr;
  uint64_t len = rm ? 0 : A(3);
  int flags = rm ? XATTR_REPLACE : (int)A(4);
  long r;
  if (!rm && (A(4) & ~(uint64_t)(XATTR_CREATE | XATTR_REPLACE)))
    return -EINVAL;
  char name[256];
  if ((r = xattr_name(sb, A(1), name)) < 0)
    return r;
  if (len > XATTR_MAX)
    return -E2BIG;
  uint8_t *v = malloc(len ? len : 1);
  if (!v)
    return -ENOMEM;
  if (len && mm_copy_in(sb, v, A(2), len) < 0) {
    free(v);
    return -EFAULT;
  }
  struct xtarget t;
  r = xattr_target(sb, a, nr == SYS_fsetxattr || nr == SYS_fremovexattr, nr == SYS_lsetxattr || nr == SYS_lremovexattr,
                   &t);
  if (r == 0 && t.none)
    r = !t.dev ? -EOPNOTSUPP : strncmp(name, "user.", 5) == 0 ? -EPERM : -EOPNOTSUPP;
  if (r == 0)
    r = xattr_allowed(sb, &t.st, name, true);
  if (r == 0)
    r = xattr_ns(name);
  if (r == 0 && !rm && strcmp(name, "security.capability") == 0 && !caps_valid(v, len))
    r = -EINVAL;
  if (r == 0 && t.lower)
    r = ovl_copyup(sb, t.path, true, &t.node);
  if (r == 0)
    r = tmp_setxattr(t.node, name, rm ? NULL : v, len, flags);
  free(v);
  if (r == 0 && t.path[0] == '/')
    inotify_event(sb, t.path, IN_ATTRIB, 0, tmp_is_dir(t.node));
  return r;
}

/* statfs, fstatfs: the file system the path or fd is on: /proc
 * (PROC_SUPER_MAGIC), /dev, /dev/shm and /tmp (tmpfs's magic, as
 * /proc/mounts shows them), the overlay elsewhere (OVERLAYFS_SUPER_MAGIC). The sizes
 * are the upper layer's: the /tmp region's pages (tmpfs.c), those free. */
long sys_statfs(struct sb *sb, const uint64_t a[6], long nr)
{
  struct {
    int64_t type, bsize, blocks, bfree, bavail, files, ffree;
    int32_t fsid[2];
    int64_t namelen, frsize, flags, spare[4];
  } s = {.type = 0x794c7630, .bsize = 4096, .namelen = 255, .frsize = 4096};
  char abs[PATH_MAX];
  long r;
  if (nr == SYS_fstatfs) {
    struct file *f = fs_get(sb, (int)A(0));
    if (!f)
      return -EBADF;
    snprintf(abs, sizeof abs, "%s", f->stdio < 0 && f->path[0] == '/' ? f->path : "/dev");
  } else {
    struct stat st;
    if ((r = resolve(sb, AT_FDCWD, A(0), abs, false)) < 0 || (r = stat_abs(sb, abs, false, &st)) < 0)
      return r;
  }
  if (strncmp(abs, "/proc", 5) == 0 && (abs[5] == 0 || abs[5] == '/')) {
    s.type = 0x9fa0;
  } else if (virt_is_virt(abs) || tmp_is_shm(abs) || (strncmp(abs, "/tmp", 4) == 0 && (abs[4] == 0 || abs[4] == '/'))) {
    s.type = 0x01021994; /* /tmp: as /proc/mounts shows it, a tmpfs (on the same pages) */
  }
  uint64_t b, bf, fi, ff;
  if (s.type == 0x794c7630 && tmp_disk_usage(sb->tmpfs, &b, &bf, &fi, &ff)) { /* --disk: the disk's */
    s.blocks = (int64_t)b;
    s.bfree = s.bavail = (int64_t)bf;
    s.files = (int64_t)fi;
    s.ffree = (int64_t)ff;
  } else if (s.type != 0x9fa0) {
    uint64_t total, used;
    tmp_usage(sb->tmpfs, &total, &used);
    s.blocks = (int64_t)total;
    s.bfree = s.bavail = (int64_t)(total - used);
    s.files = (int64_t)total; /* a node per page at most, as tmpfs's nr_inodes default */
    s.ffree = (int64_t)(total - used);
  }
  return mm_copy_out(sb, A(1), &s, sizeof s);
}


/* ---- state file (snapshot.c orchestrates) ---- */

/* The working directory and the umask. */
void fs_save_cwd(struct sb *sb, struct wbuf *w)
{
  w_str(w, sb->cwd);
  w_u64(w, sb->umask);
}

int fs_load_cwd(struct sb *sb, struct rbuf *r, const char *name)
{
  r_str(r, sb->cwd, sizeof sb->cwd);
  sb->umask = (unsigned)r_u64(r) & 0777;
  if (r->err || sb->cwd[0] != '/')
    return cf_fail(EINVAL, "template '%s': malformed state file", name);
  return 0;
}

/* The fd table: each fd's index in the file table (f->save_id) and its
 * close-on-exec flag. */
static void fds_save(struct sb *sb, struct wbuf *w)
{
  int nfd = 0;
  for (int i = 0; i < sb->nfds; i++)
    nfd += sb->fds[i] != NULL;
  w_u64(w, (uint64_t)nfd);
  for (int i = 0; i < sb->nfds; i++)
    if (sb->fds[i]) {
      w_u64(w, (uint64_t)i);
      w_u64(w, (uint64_t)sb->fds[i]->save_id);
      w_u64(w, sb->cloexec[i]);
    }
}

/* A file table entry's flags bit: a socket, whose record (net.c net_save)
 * follows the entry. (Above any open flag; a reader before sockets were
 * saved masks it off and fails to reopen "socket:" by path.) */
#define FILE_SOCK (1ull << 40)

/* The /tmp tree (tmpfs.c tmp_save), every distinct open file once (host
 * files by path, flags and offset; the sandbox's stdio as such; /tmp files
 * by node; eventfd, signalfd and epoll files with their state, event.c
 * event_save; sockets net.c carries, net_save: listeners, unconnected
 * sockets; a pidfd as its pid, in the offset field), then the fd table
 * referring to them. The first process's
 * file table holds the open files of every process of the sandbox (one a
 * fork shares stays one), the others' state has only their fd table
 * (snapshot.c, version 7). Shared memory needs fs_save_prepare first
 * (its objects' data in the /tmp tree). -1 + cf_error (ENOTSUP: a System V
 * object or attachment, ipc.c; an open pipe or FIFO, an epoll entry of a
 * pipe; a disk, tmpfs.c tmp_save_prepare; a connected socket, a listener
 * with connections waiting, a datagram socket with datagrams waiting:
 * net_save_check). */
int fs_save(struct sb *sb, struct wbuf *w)
{
  if (!proc_is_first(sb)) {
    fds_save(sb, w);
    return w->err ? cf_fail(ENOMEM, "out of memory") : 0;
  }
  char ipc_why[300];
  if (ipc_save_refused(sb, ipc_why, sizeof ipc_why) < 0)
    return cf_fail(ENOTSUP, "%s", ipc_why);
  int np = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &np) : &sb;
  size_t all = 1;
  for (int k = 0; k < np; k++)
    all += (size_t)ps[k]->nfds;
  CLEANUP_FREE struct file **files = malloc(all * sizeof *files);
  CLEANUP_FREE struct tnode **nodes = malloc(all * sizeof *nodes);
  int nf = 0, nn = 0;
  if (!files || !nodes)
    return cf_fail(ENOMEM, "out of memory");
  for (int k = 0; k < np; k++) {
    struct sb *p = ps[k];
    if (p->zombie)
      continue;
    for (int i = 0; i < p->nshmaps; i++)
      if (p->shmaps[i].obj->sysv || !p->shmaps[i].obj->save_node)
        return cf_fail(ENOTSUP, "the %sshared mapping at 0x%llx%s cannot be saved%s: unmap it before the pause",
                       p->shmaps[i].obj->sysv ? "System V " : "", (unsigned long long)p->shmaps[i].start,
                       p == sb ? "" : " of another process",
                       p->shmaps[i].obj->sysv ? " (the state does not hold System V objects)" : "");
    for (int i = 0; i < p->nfds; i++)
      if (p->fds[i])
        p->fds[i]->save_id = -1;
  }
  for (int k = 0; k < np; k++) {
    struct sb *p = ps[k];
    for (int i = 0; i < p->nfds && !p->zombie; i++) {
      struct file *f = p->fds[i];
      if (!f || f->save_id >= 0)
        continue;
      if (f->inotify)
        return cf_fail(ENOTSUP, "fd %d%s is an inotify instance: a sandbox with one cannot be saved (close it "
                                "before the pause)", i, p == sb ? "" : " of another process");
      if (f->dn_owner)
        return cf_fail(ENOTSUP, "fd %d%s has dnotify registrations (F_NOTIFY): a sandbox with them cannot be saved",
                       i, p == sb ? "" : " of another process");
      if (f->type == F_HOST && f->stdio < 0 && strncmp(f->path, "pipe:", 5) == 0)
        return cf_fail(ENOTSUP, "fd %d%s is a pipe: a sandbox with an open pipe cannot be saved", i,
                       p == sb ? "" : " of another process");
      const char *why = f->sock ? net_save_check(f) : NULL;
      if (why) {
        char what[256];
        net_describe(f, what, sizeof what);
        return cf_fail(ENOTSUP, "fd %d%s is a socket (%s) that cannot be saved: %s (close it before the pause)", i,
                       p == sb ? "" : " of another process", what, why);
      }
      if (f->type == F_HOST && f->node) /* its node is saved (tmp_save), not its pipe */
        return cf_fail(ENOTSUP, "fd %d%s is a FIFO (%s): a sandbox with an open FIFO cannot be saved (as with a pipe)",
                       i, p == sb ? "" : " of another process", f->path);
      if (f->type == F_TIMERFD)
        return cf_fail(ENOTSUP, "fd %d is a timerfd: a sandbox with an open timerfd cannot be saved (close it "
                                "before the pause)", i);
      f->save_id = nf;
      files[nf++] = f;
      if (f->node)
        nodes[nn++] = f->node;
      else if (net_node(f)) /* an AF_UNIX socket's file, maybe unlinked */
        nodes[nn++] = net_node(f);
    }
  }
  if (tmp_save_prepare(sb->tmpfs, nodes, (size_t)nn) < 0)
    return -1;
  if (tmp_has_disk(sb->tmpfs)) { /* the disk as an image of its own, which the tree names (tmp_save) */
    if (!sb->save_store || !sb->save_disk[0])
      return cf_fail(ENOTSUP, "a sandbox with a disk is saved into a store (cf_sandbox_save)");
    if (tmp_disk_commit(sb->tmpfs, sb->save_store, sb->save_disk, &sb->save_disk_bytes) < 0)
      return -1;
    sb->save_disk_done = true;
  }
  if (tmp_save(sb->tmpfs, w, nodes, (size_t)nn) < 0)
    return cf_fail(ENOMEM, "out of memory");
  w_u64(w, (uint64_t)nf);
  for (int i = 0; i < nf; i++) {
    struct file *f = files[i];
    w_u64(w, f->type);
    w_u64(w, (uint64_t)f->flags | (f->sock ? FILE_SOCK : 0));
    w_u64(w, (uint64_t)(int64_t)f->stdio);
    w_str(w, f->path);
    w_u64(w, f->node ? tmp_node_id(f->node) : 0);
    uint64_t off = f->off;
    if ((f->type == F_HOST && f->stdio < 0) || f->type == F_DIR) {
      off_t o = lseek(f->hostfd, 0, SEEK_CUR);
      off = o < 0 ? 0 : (uint64_t)o;
    }
    if (f->type == F_PIDFD)
      off = (uint64_t)f->pid; /* the pid it names: the template keeps every process's (process.c) */
    w_u64(w, off);
    if ((f->type == F_EVENTFD || f->type == F_SIGNALFD || f->type == F_EPOLL) && event_save(sb, f, w) < 0)
      return -1;
    if (f->sock)
      net_save(f, w);
  }
  fds_save(sb, w);
  return w->err ? cf_fail(ENOMEM, "out of memory") : 0;
}

/* Before the memory images of a save (snapshot.c): the data of every
 * shared memory object of the sandbox (the live processes' mappings, the
 * /tmp and /dev/shm files, the deleted files open files hold) copied into
 * the /tmp region (tmp_save_shared), where the first process's image takes
 * it; fs_save_done frees the copies. 0, or -1 + cf_error. */
int fs_save_prepare(struct sb *sb)
{
  if (!sb->tmpfs)
    return 0;
  int np = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &np) : &sb;
  size_t nn = 0, no = 0, all = 1, allo = 1;
  for (int k = 0; k < np; k++) {
    all += (size_t)ps[k]->nfds;
    allo += (size_t)ps[k]->nshmaps;
  }
  CLEANUP_FREE struct tnode **nodes = malloc(all * sizeof *nodes);
  CLEANUP_FREE struct shm_obj **objs = malloc(allo * sizeof *objs);
  if (!nodes || !objs)
    return cf_fail(ENOMEM, "out of memory");
  for (int k = 0; k < np; k++) {
    struct sb *p = ps[k];
    if (p->zombie)
      continue;
    for (int i = 0; i < p->nfds; i++) {
      struct file *f = p->fds[i];
      struct tnode *n = !f ? NULL : f->node ? f->node : f->sock ? net_node(f) : NULL;
      if (n)
        nodes[nn++] = n;
    }
    for (int i = 0; i < p->nshmaps; i++)
      if (!p->shmaps[i].obj->sysv) /* (refused by fs_save) */
        objs[no++] = p->shmaps[i].obj;
  }
  if (tmp_save_shared(sb->tmpfs, nodes, nn, objs, no) < 0) {
    tmp_save_shared_done(sb->tmpfs);
    return -1;
  }
  return 0;
}

void fs_save_done(struct sb *sb)
{
  if (sb->tmpfs)
    tmp_save_shared_done(sb->tmpfs);
}

/* The fd table fds_save wrote, its indexes into files (n). */
static int fds_load(struct sb *sb, struct rbuf *r, const char *name, struct file **files, uint64_t n)
{
  uint64_t nfd = r_u64(r);
  if (r->err || nfd > MAX_FDS)
    return cf_fail(EINVAL, "template '%s': bad fd table", name);
  for (uint64_t i = 0; i < nfd; i++) {
    uint64_t fd = r_u64(r), idx = r_u64(r), ce = r_u64(r);
    if (r->err || fd >= MAX_FDS || idx >= n)
      return cf_fail(EINVAL, "template '%s': bad fd table", name);
    if (fd_table_grow(sb, (int)fd + 1) < 0)
      return cf_fail(ENOMEM, "out of memory");
    if (sb->fds[fd])
      return cf_fail(EINVAL, "template '%s': bad fd table", name);
    files[idx]->refs++;
    sb->fds[fd] = files[idx];
    sb->cloexec[fd] = ce != 0;
  }
  return 0;
}

void fs_load_done(struct sb *sb)
{
  for (uint64_t i = 0; i < sb->nload_nodes; i++)
    if (sb->load_nodes[i] && tmp_is_anon(sb->load_nodes[i]))
      tmp_unref(sb->load_nodes[i]); /* the load's: a mapping's object holds the data now */
  free(sb->load_nodes);
  sb->load_nodes = NULL;
  sb->nload_nodes = 0;
  for (uint64_t i = 0; i < sb->nload_files; i++)
    file_unref(sb->load_files[i]); /* the fd tables hold the references now */
  free(sb->load_files);
  sb->load_files = NULL;
  sb->nload_files = 0;
}

#define BAD(what)                                                  \
  do {                                                             \
    cf_fail(EINVAL, "template '%s': %s", name, what);              \
    goto err;                                                      \
  } while (0)

/* Loads what fs_save wrote: the /tmp tree into guest memory's /tmp region,
 * the files (host files reopened under the root, stdio bound to this
 * sandbox's, /proc and /dev opened as this sandbox's), the fd table. -1 +
 * cf_error, sb holding what was loaded so far (fs_fini frees it). */
int fs_load(struct sb *sb, struct rbuf *r, const char *name)
{
  if (!proc_is_first(sb)) { /* another process: its fd table, into the first's file table */
    struct sb *f0 = proc_first(sb);
    sb->tmpfs = f0->tmpfs;
    return fds_load(sb, r, name, f0->load_files, f0->nload_files);
  }
  char buf[PATH_MAX];
  struct tnode **nodes = NULL;
  size_t nnodes = 0;
  struct file **files = NULL;
  uint64_t nf = 0;
  uint64_t tb = TMP_BASE(sb->mem_size);
  if (!(sb->tmpfs = tmp_new(sb->mem, tb, TMP_SIZE(sb->mem_size)))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  root_attr(sb); /* an older state's: it holds /tmp only */
  int tr = tmp_load(sb, sb->tmpfs, r, &nodes, &nnodes);
  if (tr == -EIO) { /* its disk */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cf_error());
    cf_fail(cf_errno() ? cf_errno() : EIO, "template '%s': %s", name, msg);
    goto err;
  }
  if (tr < 0)
    BAD("bad /tmp tree");
  nf = r_u64(r);
  if (r->err || nf > MAX_FILE_TABLE)
    BAD("bad file table");
  if (!(files = calloc(nf ? nf : 1, sizeof *files))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  for (uint64_t i = 0; i < nf; i++) {
    uint64_t type = r_u64(r), flags = r_u64(r);
    int64_t stdio = (int64_t)r_u64(r);
    r_str(r, buf, sizeof buf);
    uint64_t node = r_u64(r), off = r_u64(r);
    if (r->err || type > F_LAST || stdio < -1 || stdio > 2 || node > nnodes)
      BAD("bad file table");
    struct file *f = NULL;
    int fl = (int)(flags & (O_ACCMODE | O_APPEND | O_NONBLOCK));
    if (flags & FILE_SOCK) { /* a socket: its record follows (net.c net_save) */
      if (type != F_HOST || stdio >= 0 || node)
        BAD("bad file table");
      if (net_load(sb, r, fl, nodes, nnodes, &f) < 0)
        BAD("bad socket");
    } else if (stdio >= 0) {
      int h = fcntl(sb->opts->stdio[stdio], F_DUPFD_CLOEXEC, 3);
      if (h < 0) {
        f = file_new(F_DEV, -1, fl, "/dev/null"); /* a closed stdio reads EOF, writes vanish */
      } else {
        int hfl = fcntl(h, F_GETFL);
        f = file_new(F_HOST, h, hfl < 0 ? O_RDWR : (hfl & (O_ACCMODE | O_APPEND)), NULL);
        if (!f)
          close(h);
      }
      if (f)
        f->stdio = (int)stdio;
    } else if (type == F_VIRT || type == F_VDIR || ((type == F_HOST || type == F_DIR) && virt_is_virt(buf))) {
      /* /proc, /dev (and /dev/tty, a host terminal): opened again, as the child's */
      const struct vent *v;
      int arg;
      char vp[PATH_MAX];
      snprintf(vp, sizeof vp, "%s", buf);
      long e = virt_path(sb, vp, sizeof vp, true);
      if (e == 0)
        e = virt_lookup(sb, vp, &v, &arg);
      if (e == 0)
        e = virt_open(sb, v, arg, vp, fl, &f);
      if (e < 0) {
        cf_fail((int)-e, "template '%s': reopening %s: %s", name, buf, strerror((int)-e));
        goto err;
      }
      f->off = off;
    } else if (type == F_HOST || type == F_DIR) {
      /* O_NONBLOCK: a state file naming a FIFO must not hang the fork */
      long h = host_openat2(sb, buf, O_RDONLY | O_NONBLOCK | (type == F_DIR ? O_DIRECTORY : 0));
      if (h < 0) {
        cf_fail((int)-h, "template '%s': reopening %s: %s", name, buf, strerror((int)-h));
        goto err;
      }
      if (!(fl & O_NONBLOCK))
        fcntl((int)h, F_SETFL, fcntl((int)h, F_GETFL) & ~O_NONBLOCK);
      if (off)
        lseek((int)h, (off_t)off, SEEK_SET);
      f = file_new((enum file_type)type, (int)h, fl, buf);
      if (!f)
        close((int)h);
    } else if (type == F_EVENTFD || type == F_SIGNALFD || type == F_EPOLL) {
      if (!(f = file_new((enum file_type)type, -1, fl, buf))) {
        cf_fail(ENOMEM, "out of memory");
        goto err;
      }
      files[i] = f;
      if (event_load(sb, f, r, nf) < 0)
        BAD("bad event file");
    } else if (type == F_PIDFD) {
      if (!off || off > INT_MAX)
        BAD("bad pidfd");
      if ((f = file_new(F_PIDFD, -1, fl, buf)))
        f->pid = (int)off;
    } else if (type == F_TMP || type == F_TMPDIR) {
      if (!node || tmp_is_dir(nodes[node - 1]) != (type == F_TMPDIR))
        BAD("bad file table");
      f = file_new((enum file_type)type, -1, fl, buf);
      if (f) {
        f->node = nodes[node - 1];
        tmp_ref(f->node);
        f->off = off;
      }
    } else {
      f = file_new(F_DEV, -1, fl, buf);
    }
    if (!f) {
      cf_fail(ENOMEM, "out of memory");
      goto err;
    }
    files[i] = f;
  }
  if (event_link_all(sb, files, nf) < 0)
    BAD("bad epoll entries");
  /* Unlinked nodes no file took: cannot happen from save_state; drop them. */
  for (size_t i = 1; i < nnodes; i++)
    if (nodes[i] && !tmp_is_linked(nodes[i]) && tmp_refs(nodes[i]) == 0) {
      tmp_free(nodes[i]);
      nodes[i] = NULL;
    }
  if (fds_load(sb, r, name, files, nf) < 0)
    goto err;
  /* The load's references go when the other processes took theirs
   * (fs_load_done; at once without them: snapshot.c). */
  sb->load_files = files;
  sb->nload_files = nf;
  sb->load_nodes = nodes; /* the shared mappings' (version 8, mm_load_shared) */
  sb->nload_nodes = nnodes;
  return 0;
err:
  /* Unlinked /tmp nodes no file took are owned by nothing yet (the ones
   * files took go with the files). */
  for (size_t i = 1; nodes && i < nnodes; i++)
    if (nodes[i] && tmp_is_anon(nodes[i]))
      tmp_unref(nodes[i]); /* the load's reference (tmp_load) */
    else if (nodes[i] && !tmp_is_linked(nodes[i]) && tmp_refs(nodes[i]) == 0)
      tmp_free(nodes[i]);
  for (uint64_t i = 0; files && i < nf; i++)
    if (files[i])
      file_unref(files[i]);
  free(files);
  free(nodes);
  return -1;
}
