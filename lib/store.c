/* The store: layers and named images in one directory (include/cowfork/store.h).
 *
 * Crash safety: every file is written under tmp/, fsync'ed, then renamed
 * into layers/ or images/ and the directory fsync'ed. A crash leaves either
 * the old state or the new one, plus garbage in tmp/ that gc removes.
 *
 * Sharing: layers are immutable and shared by every image whose map names
 * them; there are no reference counts to keep in step. gc marks the layers
 * named by all headers in images/ and sweeps the rest. Writers (a layer being
 * written, a header not yet stored) hold flock(LOCK_SH) on DIR/lock and gc
 * holds LOCK_EX, so gc never sweeps a layer whose header is still coming.
 *
 * Privacy: the store holds other tenants' paused memory, so it is its
 * owner's alone (docs/format.md): everything is made through
 * cf_private_mkdir/cf_private_open/cf_write_file_atomic (lib/util.c) with
 * 0700/0600/0400 whatever the umask. A store an older cowfork made wider is
 * made private when opened (cf_store_made_private says how much, for the
 * front end to tell once): first the top directory, which alone closes it
 * to everyone else, then every entry this cowfork writes. A store owned by
 * someone else that others can read is refused.
 *
 * Checked layers: the layers whose checksum has been verified (lib/image.c,
 * cf_image_check) or computed as they were written (the layer writer),
 * keyed by id, checksum and the file's identity (dev, ino, size, mtime,
 * ctime), in a sorted array shared by the store handle and every image
 * opened from it (reference counted, so an image may outlive the handle);
 * its mutex guards it. Each is also recorded in checked/ID (the key, 88
 * bytes), so that the next process (another `cowfork fork`, a restarted
 * daemon) trusts the same file without reading it again: what one long-
 * lived process already did, carried across processes. Any write to the
 * layer file changes its ctime, which nobody can set back, so a record
 * never vouches for changed bytes; a record lost or stale only costs a
 * check. gc removes a layer's record with it. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <uuid/uuid.h>
#include <xxhash.h>

#include "cowfork/clone.h"
#include "cowfork/store.h"
#include "internal.h"

struct cf_checked {
  pthread_mutex_t lock;
  unsigned refs; /* under lock */
  struct cf_layer_key *v;
  size_t n, cap;
  int dfd; /* the store's checked/ directory, or -1 */
};

/* A record in checked/: this magic, then the key. */
static const char CHECKED_MAGIC[8] = "cfchk01";
struct checked_rec {
  char magic[8];
  struct cf_layer_key k;
};

struct cf_store {
  char *dir;
  unsigned made_private, old_mode;
  struct cf_checked *checked;
};

const char *cf_store_dir(const struct cf_store *s) { return s->dir; }

static int mkdir_p(const char *path)
{
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return cf_fail(ENAMETOOLONG, "path too long: %s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = 0;
    if (cf_private_mkdir(buf) < 0)
      return -1;
    *p = '/';
  }
  return cf_private_mkdir(buf);
}

/* The entries of a store that cowfork writes (all at its top level), made
 * private when an older cowfork left them wider. Roots and anything else
 * are left as they are: the top directory at 0700 already closes them. */
static const char *const own_entries[] = {"layers", "images", "tmp", "templates", "wset", "daemon", "lock", "checked"};

/* Directories 0700, regular files and sockets 0600, or 0400 where they had
 * no write bit (immutable ones); symlinks are not followed. */
static int make_private_at(int dfd, const char *name, int depth, unsigned *n)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : cf_fail(errno, "%s: %m", name);
  mode_t want;
  if (S_ISDIR(st.st_mode))
    want = CF_MODE_DIR;
  else if (S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode))
    want = (st.st_mode & 0200) ? CF_MODE_FILE : CF_MODE_RO;
  else
    return 0;
  if ((st.st_mode & 07777) != want) {
    if (fchmodat(dfd, name, want, 0) < 0)
      return cf_fail(errno, "chmod %s: %m", name);
    (*n)++;
  }
  if (!S_ISDIR(st.st_mode) || depth >= 4)
    return 0;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "%s: %m", name);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return cf_fail(errno, "%s: %m", name);
  }
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      r = make_private_at(dirfd(d), de->d_name, depth + 1, n);
  closedir(d);
  return r;
}

static int make_private(struct cf_store *s, const struct stat *top)
{
  if (top->st_uid != geteuid())
    return cf_fail(EPERM,
                   "the store %s (mode %04o) is readable by others and belongs to uid %u, not to this user: "
                   "a store must be private to its owner",
                   s->dir, (unsigned)(top->st_mode & 07777), (unsigned)top->st_uid);
  /* The top first: from then on nobody else can reach anything inside. */
  if (chmod(s->dir, CF_MODE_DIR) < 0)
    return cf_fail(errno, "chmod %s: %m", s->dir);
  s->old_mode = top->st_mode & 07777;
  s->made_private = 1;
  CLEANUP_CLOSE int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return cf_fail(errno, "%s: %m", s->dir);
  for (size_t i = 0; i < sizeof own_entries / sizeof *own_entries; i++)
    if (make_private_at(dfd, own_entries[i], 0, &s->made_private) < 0)
      return cf_fail(errno, "making the store %s private: %s", s->dir, cf_error());
  return 0;
}

unsigned cf_store_made_private(const struct cf_store *s, unsigned *old_mode)
{
  if (old_mode)
    *old_mode = s->old_mode;
  return s->made_private;
}

struct cf_store *cf_store_open(const char *dir)
{
  static const char *const sub[] = {"layers", "images", "tmp", "checked"};
  char path[PATH_MAX];
  struct stat st;
  if (mkdir_p(dir) < 0)
    return NULL;
  if (stat(dir, &st) < 0)
    return cf_fail_null(errno, "%s: %m", dir);
  if (!S_ISDIR(st.st_mode))
    return cf_fail_null(ENOTDIR, "the store %s is not a directory", dir);
  struct cf_store *s = calloc(1, sizeof *s);
  if (!s || !(s->dir = strdup(dir)) || !(s->checked = calloc(1, sizeof *s->checked))) {
    cf_store_close(s);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  pthread_mutex_init(&s->checked->lock, NULL);
  s->checked->refs = 1;
  s->checked->dfd = -1;
  if ((st.st_mode & 077) && make_private(s, &st) < 0)
    goto err;
  for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
    if (cf_private_mkdir(path) < 0)
      goto err;
  }
  /* checked/: without it (unreadable) layers are checked once per process, as before */
  s->checked->dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return s;
err:
  cf_store_close(s);
  return NULL;
}

struct cf_checked *cf_store_checked_ref(struct cf_store *s)
{
  pthread_mutex_lock(&s->checked->lock);
  s->checked->refs++;
  pthread_mutex_unlock(&s->checked->lock);
  return s->checked;
}

void cf_checked_unref(struct cf_checked *c)
{
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  bool last = --c->refs == 0;
  pthread_mutex_unlock(&c->lock);
  if (last) {
    pthread_mutex_destroy(&c->lock);
    if (c->dfd >= 0)
      close(c->dfd);
    free(c->v);
    free(c);
  }
}

static int cmp_key(const void *a, const void *b) { return memcmp(a, b, sizeof(struct cf_layer_key)); }

void cf_layer_key_set(struct cf_layer_key *k, const uint8_t id[16], uint64_t checksum, const struct stat *st)
{
  memset(k, 0, sizeof *k);
  memcpy(k->id, id, 16);
  k->checksum = checksum;
  k->dev = st->st_dev;
  k->ino = st->st_ino;
  k->size = (uint64_t)st->st_size;
  k->mtime_s = st->st_mtim.tv_sec;
  k->mtime_ns = st->st_mtim.tv_nsec;
  k->ctime_s = st->st_ctim.tv_sec;
  k->ctime_ns = st->st_ctim.tv_nsec;
}

static void remember(struct cf_checked *c, const struct cf_layer_key *k);

bool cf_checked_has(struct cf_checked *c, const struct cf_layer_key *k)
{
  pthread_mutex_lock(&c->lock);
  bool r = c->n && bsearch(k, c->v, c->n, sizeof *k, cmp_key);
  pthread_mutex_unlock(&c->lock);
  if (r || c->dfd < 0)
    return r;
  /* A record of another process: the same key, byte for byte. */
  char name[37];
  struct checked_rec rec;
  cf_id_format(k->id, name);
  int fd = openat(c->dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return false;
  r = read(fd, &rec, sizeof rec) == (ssize_t)sizeof rec && !memcmp(rec.magic, CHECKED_MAGIC, 8) &&
      !memcmp(&rec.k, k, sizeof *k);
  close(fd);
  if (r)
    remember(c, k);
  return r;
}

void cf_checked_add(struct cf_checked *c, const struct cf_layer_key *k)
{
  remember(c, k);
  if (c->dfd < 0)
    return;
  /* The record for the next process: written whole under a temporary name
   * and renamed over any older one (not fsync'ed: lost, it costs a check). */
  char name[37], tmp[64];
  struct checked_rec rec;
  memset(&rec, 0, sizeof rec);
  memcpy(rec.magic, CHECKED_MAGIC, 8);
  rec.k = *k;
  cf_id_format(k->id, name);
  snprintf(tmp, sizeof tmp, ".%s.%d", name, (int)gettid());
  int fd = openat(c->dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, CF_MODE_FILE);
  if (fd < 0)
    return;
  bool good = write(fd, &rec, sizeof rec) == (ssize_t)sizeof rec;
  close(fd);
  if (!good || renameat(c->dfd, tmp, c->dfd, name) < 0)
    unlinkat(c->dfd, tmp, 0);
}

static void remember(struct cf_checked *c, const struct cf_layer_key *k)
{
  pthread_mutex_lock(&c->lock);
  size_t lo = 0, hi = c->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int r = cmp_key(&c->v[mid], k);
    if (r == 0)
      goto out;
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    void *nv = realloc(c->v, cap * sizeof *c->v);
    if (!nv)
      goto out; /* not remembered: checked again next time */
    c->v = nv;
    c->cap = cap;
  }
  memmove(&c->v[lo + 1], &c->v[lo], (c->n - lo) * sizeof *k);
  c->v[lo] = *k;
  c->n++;
out:
  pthread_mutex_unlock(&c->lock);
}

void cf_store_close(struct cf_store *s)
{
  if (s) {
    cf_checked_unref(s->checked);
    free(s->dir);
    free(s);
  }
}

int cf_store_check_name(const char *name)
{
  size_t n = strlen(name);
  if (n == 0 || n > 200 || name[0] == '.')
    return cf_fail(EINVAL, "bad image name '%s': 1-200 characters, not starting with '.'", name);
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return cf_fail(EINVAL, "bad image name '%s': only letters, digits, '.', '_' and '-'", name);
  }
  return 0;
}

int cf_store_layer_path(const struct cf_store *s, const uint8_t id[16], char *buf, size_t len)
{
  char idtxt[37];
  cf_id_format(id, idtxt);
  if (snprintf(buf, len, "%s/layers/%s", s->dir, idtxt) >= (int)len)
    return cf_fail(ENAMETOOLONG, "path too long in %s", s->dir);
  return 0;
}

int cf_store_lock_shared(struct cf_store *s)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/lock", s->dir);
  int fd = cf_private_open(path, O_RDWR);
  if (fd < 0)
    return -1;
  if (flock(fd, LOCK_SH) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "lock %s: %s", path, strerror(e));
  }
  return fd;
}

void cf_store_unlock(int token)
{
  if (token >= 0)
    close(token);
}

/* Read a whole small file (a header) into memory. */
static int read_file(const char *path, void **buf, size_t *len)
{
  CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return cf_fail(errno, "%s: %m", path);
  if (fstat(fd, &st) < 0)
    return cf_fail(errno, "%s: %m", path);
  if (!S_ISREG(st.st_mode) || st.st_size > (1ll << 34))
    return cf_fail(EINVAL, "%s: not a header file", path);
  void *b = malloc(st.st_size ? st.st_size : 1);
  if (!b)
    return cf_fail(ENOMEM, "out of memory");
  ssize_t r = cf_pread_full(fd, b, st.st_size, 0);
  if (r != st.st_size) {
    free(b);
    return cf_fail(r < 0 ? errno : EIO, "read %s: %s", path, r < 0 ? strerror(errno) : "short read");
  }
  *buf = b;
  *len = st.st_size;
  return 0;
}

struct cf_header *cf_store_get_header(struct cf_store *s, const char *name)
{
  char path[PATH_MAX];
  CLEANUP_FREE void *buf = NULL;
  size_t len = 0;
  if (cf_store_check_name(name) < 0)
    return NULL;
  snprintf(path, sizeof path, "%s/images/%s", s->dir, name);
  if (read_file(path, &buf, &len) < 0) {
    if (errno == ENOENT)
      return cf_fail_null(ENOENT, "no image named '%s' in %s", name, s->dir);
    return NULL;
  }
  struct cf_header *h = cf_header_parse(buf, len);
  if (!h)
    return cf_fail_null(errno, "image '%s': %s", name, cf_error());
  return h;
}

/* A new temp file in tmp/ (mkostemp: 0600 whatever the umask allows, never
 * wider); returns the fd, the path in tmp. */
static int write_tmp(struct cf_store *s, char *tmp, size_t tmplen)
{
  if (snprintf(tmp, tmplen, "%s/tmp/XXXXXX", s->dir) >= (int)tmplen)
    return cf_fail(ENAMETOOLONG, "path too long in %s", s->dir);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "create temp file in %s/tmp: %m", s->dir);
  return fd;
}

int cf_store_put_header(struct cf_store *s, const char *name, const struct cf_header *h)
{
  char tmp[PATH_MAX], path[PATH_MAX], dir[PATH_MAX];
  CLEANUP_FREE void *buf = NULL;
  size_t len = 0;
  if (cf_store_check_name(name) < 0 || cf_header_serialize(h, &buf, &len) < 0)
    return -1;
  for (uint32_t i = 0; i < h->nlayers; i++) {
    char lp[PATH_MAX];
    if (cf_store_layer_path(s, h->layers[i].id, lp, sizeof lp) < 0)
      return -1;
    if (access(lp, F_OK) < 0)
      return cf_fail(errno, "layer %s of image '%s': %m", lp, name);
  }
  snprintf(path, sizeof path, "%s/images/%s", s->dir, name);
  snprintf(dir, sizeof dir, "%s/images", s->dir);
  int fd = write_tmp(s, tmp, sizeof tmp);
  if (fd < 0)
    return -1;
  if (cf_pwrite_full(fd, buf, len, 0) < 0 || fsync(fd) < 0 || fchmod(fd, CF_MODE_RO) < 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return cf_fail(e, "write %s: %s", tmp, strerror(e));
  }
  close(fd);
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
    int e = errno;
    unlink(tmp);
    if (e == EEXIST)
      return cf_fail(EEXIST, "an image named '%s' already exists", name);
    return cf_fail(e, "rename %s to %s: %s", tmp, path, strerror(e));
  }
  return cf_fsync_dir(dir);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void cf_store_free_list(char **names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

int cf_store_list(struct cf_store *s, char ***out, size_t *nout)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/images", s->dir);
  DIR *d = opendir(path);
  if (!d)
    return cf_fail(errno, "%s: %m", path);
  char **v = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **nv = realloc(v, cap * sizeof *v);
      if (!nv)
        goto nomem;
      v = nv;
    }
    if (!(v[n] = strdup(de->d_name)))
      goto nomem;
    n++;
  }
  closedir(d);
  if (n)
    qsort(v, n, sizeof *v, cmp_str);
  *out = v;
  *nout = n;
  return 0;
nomem:
  closedir(d);
  cf_store_free_list(v, n);
  return cf_fail(ENOMEM, "out of memory");
}

char *cf_store_find_id(struct cf_store *s, const uint8_t id[16])
{
  char **names;
  size_t n;
  char *found = NULL;
  if (cf_store_list(s, &names, &n) < 0)
    return NULL;
  for (size_t i = 0; i < n && !found; i++) {
    struct cf_header *h = cf_store_get_header(s, names[i]);
    if (h && memcmp(h->id, id, 16) == 0)
      found = strdup(names[i]);
    cf_header_free(h);
  }
  cf_store_free_list(names, n);
  return found;
}

int cf_store_remove(struct cf_store *s, const char *name)
{
  char path[PATH_MAX], dir[PATH_MAX];
  if (cf_store_check_name(name) < 0)
    return -1;
  snprintf(path, sizeof path, "%s/images/%s", s->dir, name);
  snprintf(dir, sizeof dir, "%s/images", s->dir);
  if (unlink(path) < 0) {
    if (errno == ENOENT)
      return cf_fail(ENOENT, "no image named '%s' in %s", name, s->dir);
    return cf_fail(errno, "unlink %s: %m", path);
  }
  if (cf_fsync_dir(dir) < 0)
    return -1;
  snprintf(path, sizeof path, "%s/wset/%s", s->dir, name);
  unlink(path); /* its working set (lib/wset.c), if one was recorded */
  return cf_store_gc(s, NULL);
}

/* Layer ids referenced by the images, sorted for bsearch. */
struct idset {
  uint8_t (*v)[16];
  size_t n, cap;
};

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 16); }

int cf_store_gc(struct cf_store *s, struct cf_gc_stats *stats)
{
  struct cf_gc_stats st = {0};
  struct idset ids = {0};
  char path[PATH_MAX];
  char **names = NULL;
  size_t n = 0;
  int ret = -1;
  snprintf(path, sizeof path, "%s/lock", s->dir);
  CLEANUP_CLOSE int lock = cf_private_open(path, O_RDWR);
  if (lock < 0)
    return -1;
  if (flock(lock, LOCK_EX) < 0)
    return cf_fail(errno, "lock %s: %m", path);

  /* Mark. */
  if (cf_store_list(s, &names, &n) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    struct cf_header *h = cf_store_get_header(s, names[i]);
    if (!h) {
      cf_fail(errno, "gc refused, nothing removed: %s", cf_error());
      goto out;
    }
    for (uint32_t j = 0; j < h->nlayers; j++) {
      if (ids.n == ids.cap) {
        ids.cap = ids.cap ? ids.cap * 2 : 64;
        void *nv = realloc(ids.v, ids.cap * 16);
        if (!nv) {
          cf_header_free(h);
          cf_fail(ENOMEM, "out of memory");
          goto out;
        }
        ids.v = nv;
      }
      memcpy(ids.v[ids.n++], h->layers[j].id, 16);
    }
    cf_header_free(h);
  }
  if (ids.n)
    qsort(ids.v, ids.n, 16, cmp_id);

  /* Sweep layers. */
  snprintf(path, sizeof path, "%s/layers", s->dir);
  DIR *d = opendir(path);
  if (!d) {
    cf_fail(errno, "%s: %m", path);
    goto out;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    uint8_t id[16];
    struct stat sb;
    if (de->d_name[0] == '.')
      continue;
    if (uuid_parse(de->d_name, id) == 0 && ids.n && bsearch(id, ids.v, ids.n, 16, cmp_id)) {
      st.layers_kept++;
      continue;
    }
    if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0)
      st.bytes_removed += sb.st_size;
    if (unlinkat(dirfd(d), de->d_name, 0) == 0)
      st.layers_removed++;
    if (s->checked->dfd >= 0)
      unlinkat(s->checked->dfd, de->d_name, 0); /* its record, if it had one */
  }
  closedir(d);
  /* Sweep temp files: with LOCK_EX held no writer is alive. */
  snprintf(path, sizeof path, "%s/tmp", s->dir);
  if ((d = opendir(path))) {
    while ((de = readdir(d)))
      if (de->d_name[0] != '.' && unlinkat(dirfd(d), de->d_name, 0) == 0)
        st.tmp_removed++;
    closedir(d);
  }
  if (stats)
    *stats = st;
  ret = 0;
out:
  cf_store_free_list(names, n);
  free(ids.v);
  return ret;
}

/* Appends reach the file through a staging buffer, in writes of STAGE bytes
 * at multiples of STAGE: the page cache then holds a new layer in large
 * folios (the file system picks a folio's size from the write's), and reading
 * it back costs a third of what it costs from 4 KiB folios, which is what a
 * write per run of dirty pages left (cf_image_check on a template's first
 * fork: bench/check). Appends of whole STAGE-aligned spans bypass it. */
#define STAGE (2u << 20)

struct cf_layer_writer {
  struct cf_store *s;
  uint32_t block_size;
  int fd, lock;
  uint64_t nblocks;
  XXH3_state_t *xxh;
  char *stage;   /* the file's bytes [nblocks * block_size - staged, nblocks * block_size) */
  size_t staged; /* never crosses a multiple of STAGE */
  char tmp[PATH_MAX];
};

struct cf_layer_writer *cf_layer_writer_new(struct cf_store *s, uint32_t block_size)
{
  struct cf_layer_writer *w = calloc(1, sizeof *w);
  if (!w)
    return cf_fail_null(ENOMEM, "out of memory");
  w->s = s;
  w->block_size = block_size;
  w->fd = -1;
  if ((w->lock = cf_store_lock_shared(s)) < 0) {
    free(w);
    return NULL;
  }
  if (!(w->xxh = XXH3_createState()) || XXH3_64bits_reset(w->xxh) != XXH_OK) {
    cf_layer_writer_abort(w);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  return w;
}

uint64_t cf_layer_writer_nblocks(const struct cf_layer_writer *w) { return w->nblocks; }

static int stage_flush(struct cf_layer_writer *w)
{
  if (w->staged &&
      cf_pwrite_full(w->fd, w->stage, w->staged, w->nblocks * w->block_size - w->staged) < 0)
    return cf_fail(errno, "write %s: %m", w->tmp);
  w->staged = 0;
  return 0;
}

/* Write len bytes of buf at the end of the layer (the file's offset
 * nblocks * block_size, before nblocks counts them). */
static int stage_write(struct cf_layer_writer *w, const char *buf, size_t len)
{
  uint64_t pos = w->nblocks * w->block_size; /* the file's offset of buf[0] */
  if (!w->stage && !(w->stage = malloc(STAGE)))
    return cf_fail(ENOMEM, "out of memory");
  while (len) {
    size_t n;
    if (w->staged == 0 && pos % STAGE == 0 && len >= STAGE) {
      n = len - len % STAGE;
      if (cf_pwrite_full(w->fd, buf, n, pos) < 0)
        return cf_fail(errno, "write %s: %m", w->tmp);
    } else {
      size_t room = STAGE - pos % STAGE;
      n = len < room ? len : room;
      memcpy(w->stage + w->staged, buf, n);
      w->staged += n;
      if ((pos + n) % STAGE == 0) {
        uint64_t end = pos + n;
        if (cf_pwrite_full(w->fd, w->stage, w->staged, end - w->staged) < 0)
          return cf_fail(errno, "write %s: %m", w->tmp);
        w->staged = 0;
      }
    }
    buf += n;
    len -= n;
    pos += n;
  }
  return 0;
}

int cf_layer_writer_append(struct cf_layer_writer *w, const void *buf, uint64_t nblocks, uint64_t *offset)
{
  size_t len = nblocks * w->block_size;
  if (w->fd < 0 && (w->fd = write_tmp(w->s, w->tmp, sizeof w->tmp)) < 0)
    return -1;
  if (stage_write(w, buf, len) < 0)
    return -1;
  XXH3_64bits_update(w->xxh, buf, len);
  if (offset)
    *offset = w->nblocks;
  w->nblocks += nblocks;
  return 0;
}

int cf_layer_writer_append_from(struct cf_layer_writer *w, const void *buf, uint64_t nblocks, int src_fd,
                                uint64_t src_off, unsigned *state, struct cf_clone_stats *st, uint64_t *offset)
{
  size_t len = nblocks * w->block_size;
  if (w->fd < 0 && (w->fd = write_tmp(w->s, w->tmp, sizeof w->tmp)) < 0)
    return -1;
  /* A reflink lands in the file: what is staged before it goes first. */
  int shared = 0;
  if (!cf_reflink_refused(*state)) {
    if (stage_flush(w) < 0)
      return -1;
    if ((shared = cf_reflink_range(src_fd, src_off, w->fd, w->nblocks * w->block_size, len, state)) < 0)
      return cf_fail(errno, "%s: %s", w->tmp, cf_error());
  }
  if (!shared && stage_write(w, buf, len) < 0)
    return -1;
  if (shared)
    st->shared_bytes += len;
  else
    st->copied_bytes += len;
  XXH3_64bits_update(w->xxh, buf, len);
  if (offset)
    *offset = w->nblocks;
  w->nblocks += nblocks;
  return 0;
}

void cf_layer_writer_abort(struct cf_layer_writer *w)
{
  if (!w)
    return;
  if (w->fd >= 0) {
    close(w->fd);
    unlink(w->tmp);
  }
  cf_store_unlock(w->lock);
  XXH3_freeState(w->xxh);
  free(w->stage);
  free(w);
}

int cf_layer_writer_finish(struct cf_layer_writer *w, struct cf_layer_ref *ref)
{
  char path[PATH_MAX], dir[PATH_MAX];
  memset(ref, 0, sizeof *ref);
  uuid_generate(ref->id);
  if (w->nblocks == 0) {
    cf_layer_writer_abort(w);
    return 0;
  }
  ref->nblocks = w->nblocks;
  ref->checksum = XXH3_64bits_digest(w->xxh);
  if (cf_store_layer_path(w->s, ref->id, path, sizeof path) < 0)
    goto err;
  if (stage_flush(w) < 0)
    goto err;
  if (fsync(w->fd) < 0 || fchmod(w->fd, CF_MODE_RO) < 0) {
    cf_fail(errno, "fsync %s: %m", w->tmp);
    goto err;
  }
  if (rename(w->tmp, path) < 0) {
    cf_fail(errno, "rename %s to %s: %m", w->tmp, path);
    goto err;
  }
  /* Its checksum is of the bytes written: checked, for this and the next process. */
  struct stat st;
  if (fstat(w->fd, &st) == 0) {
    struct cf_layer_key k;
    cf_layer_key_set(&k, ref->id, ref->checksum, &st);
    cf_checked_add(w->s->checked, &k);
  }
  close(w->fd);
  w->fd = -1;
  snprintf(dir, sizeof dir, "%s/layers", w->s->dir);
  int r = cf_fsync_dir(dir);
  cf_layer_writer_abort(w);
  return r;
err:
  cf_layer_writer_abort(w);
  return -1;
}
