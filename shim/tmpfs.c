/* The sandbox's writable file system: a tree of files and directories under
 * /tmp, kept in memory.
 *
 * Invariants: a node is owned by its parent's kids array while linked, and
 * by the open files (refs) after unlink; it is freed when both are gone.
 * Paths given here are already lexically normalized (path_abs).
 *
 * For now the data lives on the VMM's heap; for snapshots it will move into
 * a region of guest memory that the shim reserves (not yet done). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "shim/shim.h"

struct tnode {
  char *name;
  bool dir;
  bool linked;
  unsigned mode;
  int refs;
  uint64_t ino;
  uint8_t *data;
  uint64_t size, cap;
  struct timespec mtime;
  struct tnode *parent;
  struct tnode **kids;
  int nkids;
};

static uint64_t next_ino = 1000000;

static struct tnode *node_new(const char *name, bool dir, unsigned mode)
{
  struct tnode *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->name = strdup(name);
  if (!n->name) {
    free(n);
    return NULL;
  }
  n->dir = dir;
  n->mode = mode & 07777;
  n->ino = __atomic_fetch_add(&next_ino, 1, __ATOMIC_RELAXED);
  n->linked = true;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  return n;
}

struct tnode *tmp_new_root(void) { return node_new("tmp", true, 01777); }

void tmp_free(struct tnode *n)
{
  if (!n)
    return;
  for (int i = 0; i < n->nkids; i++)
    tmp_free(n->kids[i]);
  free(n->kids);
  free(n->data);
  free(n->name);
  free(n);
}

bool tmp_is_tmp(const char *abs) { return strncmp(abs, "/tmp", 4) == 0 && (abs[4] == 0 || abs[4] == '/'); }

bool tmp_is_dir(struct tnode *n) { return n->dir; }

static struct tnode *kid(struct tnode *d, const char *name, size_t len)
{
  for (int i = 0; i < d->nkids; i++)
    if (strlen(d->kids[i]->name) == len && memcmp(d->kids[i]->name, name, len) == 0)
      return d->kids[i];
  return NULL;
}

/* Walk abs ("/tmp/..."); with parent_out, stop at the last component. */
static struct tnode *walk(struct sb *sb, const char *abs, struct tnode **parent_out, const char **last)
{
  struct tnode *n = sb->tmp_root;
  const char *p = abs + 4;
  while (*p == '/')
    p++;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *next = p + len;
    while (*next == '/')
      next++;
    if (parent_out && !*next) {
      *parent_out = n;
      *last = p;
      return kid(n, p, len);
    }
    if (!n->dir)
      return NULL;
    n = kid(n, p, len);
    if (!n)
      return NULL;
    p = next;
  }
  if (parent_out) {
    *parent_out = NULL;
    *last = NULL;
  }
  return n;
}

struct tnode *tmp_lookup(struct sb *sb, const char *abs) { return walk(sb, abs, NULL, NULL); }

static int add_kid(struct tnode *d, struct tnode *n)
{
  struct tnode **k = realloc(d->kids, (d->nkids + 1) * sizeof *k);
  if (!k)
    return -ENOMEM;
  d->kids = k;
  d->kids[d->nkids++] = n;
  n->parent = d;
  n->linked = true;
  clock_gettime(CLOCK_REALTIME, &d->mtime);
  return 0;
}

static void del_kid(struct tnode *d, struct tnode *n)
{
  for (int i = 0; i < d->nkids; i++)
    if (d->kids[i] == n) {
      memmove(&d->kids[i], &d->kids[i + 1], (d->nkids - i - 1) * sizeof *d->kids);
      d->nkids--;
      break;
    }
  n->linked = false;
  n->parent = NULL;
  clock_gettime(CLOCK_REALTIME, &d->mtime);
}

long tmp_create(struct sb *sb, const char *abs, bool dir, unsigned mode, struct tnode **out)
{
  struct tnode *parent;
  const char *last;
  struct tnode *n = walk(sb, abs, &parent, &last);
  if (!parent) {
    if (tmp_lookup(sb, abs))
      return -EEXIST;
    return -ENOENT;
  }
  if (!parent->dir)
    return -ENOTDIR;
  if (n)
    return -EEXIST;
  if (strlen(last) > 255)
    return -ENAMETOOLONG;
  n = node_new(last, dir, mode & ~sb->umask);
  if (!n)
    return -ENOMEM;
  if (add_kid(parent, n) < 0) {
    tmp_free(n);
    return -ENOMEM;
  }
  *out = n;
  return 0;
}

long tmp_unlink(struct sb *sb, const char *abs, bool dir)
{
  struct tnode *parent;
  const char *last;
  struct tnode *n = walk(sb, abs, &parent, &last);
  if (!parent)
    return tmp_lookup(sb, abs) ? -EBUSY : -ENOENT;
  if (!n)
    return -ENOENT;
  if (dir && !n->dir)
    return -ENOTDIR;
  if (!dir && n->dir)
    return -EISDIR;
  if (dir && n->nkids)
    return -ENOTEMPTY;
  del_kid(parent, n);
  if (n->refs == 0)
    tmp_free(n);
  return 0;
}

long tmp_rename(struct sb *sb, const char *from, const char *to)
{
  struct tnode *fp, *tp;
  const char *fl, *tl;
  struct tnode *n = walk(sb, from, &fp, &fl);
  if (!fp || !n)
    return -ENOENT;
  struct tnode *old = walk(sb, to, &tp, &tl);
  if (!tp)
    return -EBUSY;
  if (!tp->dir)
    return -ENOTDIR;
  for (struct tnode *a = tp; a; a = a->parent)
    if (a == n)
      return -EINVAL;
  if (old == n)
    return 0;
  if (old) {
    if (old->dir && !n->dir)
      return -EISDIR;
    if (!old->dir && n->dir)
      return -ENOTDIR;
    if (old->dir && old->nkids)
      return -ENOTEMPTY;
    del_kid(tp, old);
    if (old->refs == 0)
      tmp_free(old);
  }
  char *name = strdup(tl);
  if (!name)
    return -ENOMEM;
  del_kid(fp, n);
  free(n->name);
  n->name = name;
  return add_kid(tp, n);
}

void tmp_stat(struct tnode *n, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_dev = 0x7f;
  st->st_ino = n->ino;
  st->st_mode = (n->dir ? S_IFDIR : S_IFREG) | n->mode;
  st->st_nlink = n->dir ? 2 : 1;
  st->st_size = (off_t)n->size;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
  st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
}

long tmp_read(struct tnode *n, void *buf, uint64_t len, uint64_t off)
{
  if (n->dir)
    return -EISDIR;
  if (off >= n->size)
    return 0;
  if (len > n->size - off)
    len = n->size - off;
  memcpy(buf, n->data + off, len);
  return (long)len;
}

static int reserve(struct tnode *n, uint64_t size)
{
  if (size <= n->cap)
    return 0;
  if (size > (1ull << 32))
    return -EFBIG;
  uint64_t cap = n->cap ? n->cap : 4096;
  while (cap < size)
    cap *= 2;
  uint8_t *d = realloc(n->data, cap);
  if (!d)
    return -ENOSPC;
  n->data = d;
  n->cap = cap;
  return 0;
}

long tmp_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off)
{
  if (n->dir)
    return -EISDIR;
  int r = reserve(n, off + len);
  if (r < 0)
    return r;
  if (off > n->size)
    memset(n->data + n->size, 0, off - n->size);
  memcpy(n->data + off, buf, len);
  if (off + len > n->size)
    n->size = off + len;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  return (long)len;
}

long tmp_truncate(struct tnode *n, uint64_t len)
{
  if (n->dir)
    return -EISDIR;
  int r = reserve(n, len);
  if (r < 0)
    return r;
  if (len > n->size)
    memset(n->data + n->size, 0, len - n->size);
  n->size = len;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  return 0;
}

struct tnode *tmp_child(struct tnode *dir, uint64_t idx, const char **name)
{
  if (idx >= (uint64_t)dir->nkids)
    return NULL;
  *name = dir->kids[idx]->name;
  return dir->kids[idx];
}

void tmp_ref(struct tnode *n) { n->refs++; }

void tmp_unref(struct tnode *n)
{
  if (--n->refs == 0 && !n->linked && n->parent == NULL)
    tmp_free(n);
}
