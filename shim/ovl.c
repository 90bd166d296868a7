/* The overlay: every path of the sandbox (but /proc, /dev and /dev/shm) is
 * the root directory (the lower layer, never written) under the tmpfs tree
 * (tmpfs.c, the upper layer, whose data is guest memory: it forks, parks
 * and branches with the sandbox), with overlayfs's semantics:
 *
 * - lookup: the upper entry first; a whiteout hides the lower name; an
 *   opaque upper directory hides the lower directory's entries; else the
 *   lower (host) entry, read through openat2(rootfd, RESOLVE_IN_ROOT |
 *   RESOLVE_NO_SYMLINKS) on a path with no symlink on the way.
 * - symlinks are followed here, component by component, in the merged view
 *   (an upper symlink, or a lower one, can lead anywhere in it), at most 40
 *   (ELOOP); a path that ends up in /proc, /dev or /dev/shm is handed back
 *   (OVL_VIRT). The result is the canonical path: no symlink on the way.
 *   The paths given have no ".." left (fs.c path_dotdot resolved each
 *   as Linux: the parent of where the name before it leads); a symlink's
 *   target is joined to its directory and normalized lexically (subst).
 * - copy-up (ovl_copyup): the missing upper directories are made with the
 *   lower's mode, owner, times and inode number (not opaque: they merge
 *   with the lower), then the entry: a regular file's bytes are copied
 *   into tmpfs pages (holes stay holes: SEEK_DATA), a symlink's target, a
 *   FIFO as a FIFO; a device or socket of the root cannot be copied up
 *   (EACCES, as opening one). An open file of the lower file keeps reading
 *   it (its host fd), as on overlayfs. The entry's extended attributes go
 *   with it (ovl_copy_xattr: those the host lets this process read; a
 *   lower file system without them has none).
 * - a directory made by mkdir is opaque; one made by a copy-up is not. So
 *   a non-opaque upper directory always stands where the lower has a
 *   directory of the same path, and only opaque ones (pure upper) can be
 *   renamed: renaming a lower or merged directory is EXDEV, as overlayfs
 *   without redirect_dir (mv and shutil.move then copy and delete).
 * - unlink, rmdir and the source of a rename leave a whiteout where the
 *   lower has the name (ovl_lower_has); rmdir looks at the merged view for
 *   emptiness (ENOTEMPTY); mkdir over a whiteout gives an opaque directory.
 * - a directory listing (ovl_list) is the upper entries, then the lower
 *   entries the upper does not name (neither an entry nor a whiteout).
 *
 * Everything here runs under the sandbox's lock (the tree is the world's:
 * one per sandbox, shared by its processes). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

#define AGAIN 2
#define MAX_LINKS 40

/* An fd of the lower entry at path (canonical: no symlink on the way; with
 * O_NOFOLLOW|O_PATH the last may be one), or -errno. */
static long lower_fd(struct sb *sb, const char *path, int flags)
{
  if (sb->rootfd < 0)
    return -ENOENT;
  struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  const char *rel = path[1] ? path + 1 : ".";
  long fd = syscall(SYS_openat2, sb->rootfd, rel, &how, sizeof how);
  return fd < 0 ? -errno : fd;
}

/* The lower entry's stat (and a symlink's target into link, PATH_MAX). */
static long lower_lstat(struct sb *sb, const char *path, struct stat *st, char *link)
{
  long fd = lower_fd(sb, path, O_PATH | O_NOFOLLOW);
  if (fd < 0)
    return fd;
  long r = fstatat((int)fd, "", st, AT_EMPTY_PATH) < 0 ? -errno : 0;
  if (r == 0 && link && S_ISLNK(st->st_mode)) {
    ssize_t k = readlinkat((int)fd, "", link, PATH_MAX - 1);
    if (k < 0)
      r = -errno;
    else
      link[k] = 0;
  }
  close((int)fd);
  return r;
}

long ovl_lower_xattr(struct sb *sb, const char *path, const char *name, void *buf, size_t size)
{
  long fd = lower_fd(sb, path, O_PATH | O_NOFOLLOW);
  if (fd < 0)
    return fd;
  /* An O_PATH fd has no f*xattr: its /proc/self/fd link leads to the
   * entry itself (a symlink's own attributes). */
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%ld", fd);
  ssize_t k = name ? getxattr(proc, name, buf, size) : listxattr(proc, buf, size);
  long r = k < 0 ? -errno : k;
  close((int)fd);
  return r;
}

/* The lower entry's attributes onto its copy n (overlayfs's
 * ovl_copy_xattr): none where the host has none or refuses to list them. */
static long copy_xattr(struct sb *sb, const char *path, struct tnode *n)
{
  long len = ovl_lower_xattr(sb, path, NULL, NULL, 0);
  if (len <= 0)
    return 0;
  char *names = malloc((size_t)len), *val = malloc(65536);
  long r = names && val ? 0 : -ENOMEM;
  if (r == 0 && (len = ovl_lower_xattr(sb, path, NULL, names, (size_t)len)) < 0)
    len = 0; /* changed meanwhile: none */
  for (long off = 0; r == 0 && off < len; off += (long)strlen(names + off) + 1) {
    long vl = ovl_lower_xattr(sb, path, names + off, val, 65536);
    if (vl >= 0 && (r = tmp_setxattr(n, names + off, val, (size_t)vl, 0)) < 0)
      break;
  }
  free(names);
  free(val);
  return r;
}

/* path := target (relative to dir) then rest, normalized. */
static long subst(char *path, const char *dir, const char *target, const char *rest)
{
  char buf[2 * PATH_MAX + 2];
  bool rel = target[0] != '/';
  if (!target[0])
    return -ENOENT; /* an empty link */
  int n = snprintf(buf, sizeof buf, "%s%s%s%s%s", rel ? dir : "", rel ? "/" : "", target, rest[0] ? "/" : "", rest);
  if (n < 0 || (size_t)n >= sizeof buf)
    return -ENAMETOOLONG;
  long r = path_abs("/", buf, path, PATH_MAX);
  return r < 0 ? r : AGAIN;
}

/* The lower part of a walk: every component from p on (cur: the canonical
 * prefix before it, "" for /) is only the lower's. */
static long lower_walk(struct sb *sb, char *path, char *cur, const char *p, bool follow, struct ovl *o)
{
  char link[PATH_MAX];
  /* One call for the whole path first: no symlink on the way (the usual
   * case) gives the answer at once. */
  long fd = lower_fd(sb, path, O_PATH | O_NOFOLLOW);
  if (fd >= 0) {
    long r = fstatat((int)fd, "", &o->st, AT_EMPTY_PATH) < 0 ? -errno : 0;
    if (r == 0 && S_ISLNK(o->st.st_mode) && follow) {
      ssize_t k = readlinkat((int)fd, "", link, sizeof link - 1);
      close((int)fd);
      if (k < 0)
        return -errno;
      link[k] = 0;
      char dir[PATH_MAX];
      snprintf(dir, sizeof dir, "%s", path);
      *strrchr(dir, '/') = 0;
      return subst(path, dir[0] ? dir : "/", link, "");
    }
    close((int)fd);
    if (r == 0)
      snprintf(o->path, sizeof o->path, "%s", path);
    return r;
  }
  if (fd == -ENOENT) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    long d = lower_fd(sb, dir[0] ? dir : "/", O_PATH | O_DIRECTORY);
    if (d >= 0) {
      close((int)d);
      snprintf(o->path, sizeof o->path, "%s", path);
      o->parent_ok = true;
      return -ENOENT;
    }
    if (d != -ELOOP)
      return d;
  } else if (fd != -ELOOP) {
    return fd;
  }
  /* A symlink on the way: one component at a time. */
  for (;;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p), cl = strlen(cur);
    const char *next = p + len;
    while (*next == '/')
      next++;
    bool last = !*next;
    if (cl + 1 + len >= PATH_MAX)
      return -ENAMETOOLONG;
    cur[cl] = '/';
    memcpy(cur + cl + 1, p, len);
    cur[cl + 1 + len] = 0;
    long r = lower_lstat(sb, cur, &o->st, link);
    if (r == -ENOENT && last) {
      snprintf(o->path, sizeof o->path, "%s", cur);
      o->parent_ok = true;
      return r;
    }
    if (r < 0)
      return r;
    if (S_ISLNK(o->st.st_mode) && (!last || follow)) {
      cur[cl] = 0;
      return subst(path, cl ? cur : "/", link, next);
    }
    if (last) {
      snprintf(o->path, sizeof o->path, "%s", cur);
      return 0;
    }
    if (!S_ISDIR(o->st.st_mode))
      return -ENOTDIR;
    p = next;
  }
}

/* One pass over path: 0, -errno, or AGAIN (a symlink: path rewritten). */
static long walk_once(struct sb *sb, char *path, bool follow, struct ovl *o)
{
  struct tnode *u = tmp_root(sb->tmpfs);
  bool low = !tmp_is_opaque(u);
  char cur[PATH_MAX] = "";
  const char *p = path;
  while (*p == '/')
    p++;
  if (!*p) {
    strcpy(o->path, "/");
    o->node = u;
    tmp_stat(u, &o->st);
    return 0;
  }
  for (;;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p), cl = strlen(cur);
    const char *next = p + len;
    while (*next == '/')
      next++;
    bool last = !*next;
    if (len > 255)
      return -ENAMETOOLONG;
    if (cl + 1 + len >= PATH_MAX)
      return -ENAMETOOLONG;
    struct tnode *k = tmp_kid(u, p, len);
    if (!k && low)
      return lower_walk(sb, path, cur, p, follow, o);
    cur[cl] = '/';
    memcpy(cur + cl + 1, p, len);
    cur[cl + 1 + len] = 0;
    if (!k || tmp_is_whiteout(k)) { /* whited out, or in an opaque directory */
      if (!last)
        return -ENOENT;
      snprintf(o->path, sizeof o->path, "%s", cur);
      o->parent_ok = true;
      return -ENOENT;
    }
    const char *t = tmp_symlink_target(k);
    if (t && (!last || follow)) {
      cur[cl] = 0;
      return subst(path, cl ? cur : "/", t, next);
    }
    if (last) {
      snprintf(o->path, sizeof o->path, "%s", cur);
      o->node = k;
      tmp_stat(k, &o->st);
      return 0;
    }
    if (!tmp_is_dir(k))
      return -ENOTDIR;
    u = k;
    low = !tmp_is_opaque(k);
    p = next;
  }
}

long ovl_lookup(struct sb *sb, const char *abs, bool follow, struct ovl *o)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", abs);
  for (int n = 0;; n++) {
    o->node = NULL;
    o->parent_ok = false;
    if (virt_is_virt(path) || tmp_is_shm(path)) {
      snprintf(o->path, sizeof o->path, "%s", path);
      return OVL_VIRT;
    }
    long r = walk_once(sb, path, follow, o);
    if (r != AGAIN)
      return r;
    if (n >= MAX_LINKS)
      return -ELOOP;
  }
}

bool ovl_lower_has(struct sb *sb, const char *path)
{
  struct tnode *u = tmp_root(sb->tmpfs);
  const char *p = path;
  while (*p == '/')
    p++;
  for (;;) {
    if (u && tmp_is_opaque(u))
      return false;
    const char *e = strchr(p, '/');
    if (!e)
      break;
    struct tnode *k = u ? tmp_kid(u, p, (size_t)(e - p)) : NULL;
    if (k && tmp_is_whiteout(k))
      return false;
    u = k && tmp_is_dir(k) ? k : NULL;
    p = e + 1;
  }
  if (!*p)
    return true; /* "/" */
  long fd = lower_fd(sb, path, O_PATH | O_NOFOLLOW);
  if (fd < 0)
    return false;
  close((int)fd);
  return true;
}

/* A lower regular file's bytes into n (a new upper file): the data
 * segments only (SEEK_DATA/SEEK_HOLE), so holes stay holes. */
static long copy_data(struct sb *sb, const char *path, struct tnode *n, uint64_t size)
{
  long fd = lower_fd(sb, path, O_RDONLY | O_NONBLOCK);
  if (fd < 0)
    return fd;
  char *buf = malloc(1 << 16);
  long r = buf ? 0 : -ENOMEM;
  for (off_t off = 0; r == 0 && (uint64_t)off < size;) {
    off_t d = lseek((int)fd, off, SEEK_DATA);
    if (d < 0)
      break; /* a hole to the end (ENXIO) */
    off_t h = lseek((int)fd, d, SEEK_HOLE);
    if (h < 0)
      h = (off_t)size;
    for (off = d; r == 0 && off < h;) {
      size_t want = (size_t)(h - off) < (1u << 16) ? (size_t)(h - off) : (1u << 16);
      ssize_t k = pread((int)fd, buf, want, off);
      if (k <= 0) {
        if (k < 0)
          r = -EIO;
        off = h;
        break;
      }
      long w = tmp_write(n, buf, (uint64_t)k, (uint64_t)off);
      if (w < 0)
        r = w;
      else if (w < k)
        r = -ENOSPC;
      off += k;
    }
  }
  free(buf);
  close((int)fd);
  if (r == 0)
    r = tmp_truncate(n, size); /* a hole at the end */
  return r;
}

long ovl_copyup(struct sb *sb, const char *path, bool data, struct tnode **out)
{
  struct tnode *u = tmp_root(sb->tmpfs);
  char cur[PATH_MAX] = "", link[PATH_MAX];
  const char *p = path;
  while (*p == '/')
    p++;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p), cl = strlen(cur);
    bool last = !e || !e[1];
    if (cl + 1 + len >= PATH_MAX || len > 255)
      return -ENAMETOOLONG;
    cur[cl] = '/';
    memcpy(cur + cl + 1, p, len);
    cur[cl + 1 + len] = 0;
    struct tnode *k = tmp_kid(u, p, len);
    if (k && tmp_is_whiteout(k))
      return -ENOENT;
    if (!k) {
      if (tmp_is_opaque(u))
        return -ENOENT;
      struct stat st;
      long r = lower_lstat(sb, cur, &st, link);
      if (r < 0)
        return r;
      if (!last && !S_ISDIR(st.st_mode))
        return -ENOTDIR;
      if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode) && !S_ISFIFO(st.st_mode))
        return -EACCES; /* a device or socket of the root: not opened, not copied */
      if (!(k = tmp_copyup(u, cur + cl + 1, &st, S_ISLNK(st.st_mode) ? link : NULL, &r)))
        return r;
      if (S_ISREG(st.st_mode) && data && st.st_size > 0) {
        if ((r = copy_data(sb, cur, k, (uint64_t)st.st_size)) < 0) {
          tmp_drop(k);
          return r;
        }
        tmp_set_times(k, &st);
      }
      if ((r = copy_xattr(sb, cur, k)) < 0) {
        tmp_drop(k);
        return r;
      }
    }
    if (last) {
      *out = k;
      return 0;
    }
    if (!tmp_is_dir(k))
      return -ENOTDIR;
    u = k;
    p = e + 1;
  }
  *out = u; /* "/" */
  return 0;
}

long ovl_copyup_parent(struct sb *sb, const char *path, struct tnode **out)
{
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *s = strrchr(dir, '/');
  if (!s)
    return -ENOENT;
  *s = 0;
  return ovl_copyup(sb, dir[0] ? dir : "/", true, out);
}

/* ---- listings ---- */

struct lbuf {
  char *p;
  size_t len, cap, n;
};

static int lb_add(struct lbuf *b, uint64_t ino, uint8_t type, const char *name)
{
  size_t nl = strlen(name), need = 8 + 1 + nl + 1;
  if (b->len + need > b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 4096;
    while (cap < b->len + need)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q)
      return -ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, &ino, 8);
  b->p[b->len + 8] = (char)type;
  memcpy(b->p + b->len + 9, name, nl + 1);
  b->len += need;
  b->n++;
  return 0;
}

static uint8_t dtype(mode_t m)
{
  return S_ISDIR(m) ? DT_DIR : S_ISFIFO(m) ? DT_FIFO : S_ISLNK(m) ? DT_LNK : S_ISREG(m) ? DT_REG
         : S_ISCHR(m) ? DT_CHR : S_ISBLK(m) ? DT_BLK : S_ISSOCK(m) ? DT_SOCK : DT_UNKNOWN;
}

long ovl_list(struct sb *sb, struct tnode *dir, const char *path, struct ovl_list **out)
{
  struct lbuf b = {0};
  long r = 0;
  const char *name;
  struct tnode *k;
  for (uint64_t i = 0; r == 0 && (k = tmp_child(dir, i, &name)); i++) {
    if (tmp_is_whiteout(k))
      continue;
    struct stat st;
    tmp_stat(k, &st);
    r = lb_add(&b, st.st_ino, dtype(st.st_mode), name);
  }
  if (r == 0 && path && !tmp_is_opaque(dir) && tmp_is_linked(dir)) {
    long fd = lower_fd(sb, path, O_RDONLY | O_DIRECTORY);
    char *dbuf = fd >= 0 ? malloc(32768) : NULL;
    long n;
    while (dbuf && r == 0 && (n = syscall(SYS_getdents64, (int)fd, dbuf, 32768)) > 0)
      for (long pos = 0; r == 0 && pos < n;) {
        struct dirent64 *d = (struct dirent64 *)(dbuf + pos);
        pos += d->d_reclen;
        if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..") || tmp_kid(dir, d->d_name, strlen(d->d_name)))
          continue;
        r = lb_add(&b, d->d_ino, d->d_type, d->d_name);
      }
    free(dbuf);
    if (fd >= 0)
      close((int)fd);
  }
  if (r < 0) {
    free(b.p);
    return r;
  }
  /* one block: the header, the entries' offsets, the entries */
  struct ovl_list *l = malloc(sizeof *l + b.n * sizeof(size_t) + b.len);
  if (!l) {
    free(b.p);
    return -ENOMEM;
  }
  l->n = b.n;
  char *data = (char *)(l->at + b.n);
  if (b.len)
    memcpy(data, b.p, b.len);
  for (size_t i = 0, pos = 0; i < b.n; i++) {
    l->at[i] = pos;
    pos += 9 + strlen(data + pos + 9) + 1;
  }
  free(b.p);
  *out = l;
  return 0;
}

const char *ovl_list_get(const struct ovl_list *l, size_t i, uint64_t *ino, uint8_t *type)
{
  if (i >= l->n)
    return NULL;
  const char *e = (const char *)(l->at + l->n) + l->at[i];
  memcpy(ino, e, 8);
  *type = (uint8_t)e[8];
  return e + 9;
}

long ovl_empty(struct sb *sb, const struct ovl *o)
{
  if (!o->node) { /* a lower-only directory */
    long fd = lower_fd(sb, o->path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
      return fd;
    char dbuf[4096];
    long n, r = 0;
    while (r == 0 && (n = syscall(SYS_getdents64, (int)fd, dbuf, sizeof dbuf)) > 0)
      for (long pos = 0; pos < n;) {
        struct dirent64 *d = (struct dirent64 *)(dbuf + pos);
        pos += d->d_reclen;
        if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
          r = -ENOTEMPTY;
      }
    close((int)fd);
    return r;
  }
  struct ovl_list *l;
  long r = ovl_list(sb, o->node, o->path, &l);
  if (r < 0)
    return r;
  r = l->n ? -ENOTEMPTY : 0;
  free(l);
  return r;
}
