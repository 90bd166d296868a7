/* Layered images: the read path and the whole-image jobs.
 *
 * An open image is its parsed header plus one read-only fd per layer. Every
 * read is a binary search in the flattened map (cf_header_lookup) and then
 * preads from the layer, or zeros for an empty extent: there is no chain to
 * walk, however many ancestors the image has.
 *
 * Import, commit and export stream the data in chunks of CHUNK bytes; a run
 * of changed blocks inside a chunk becomes one write to the new layer.
 *
 * Checked before use: no byte of a layer is read (cf_image_read, export) or
 * mapped (lib/cowmap.c, the uffd server, shim/snapshot.c's map) before
 * cf_image_check has compared every layer's XXH3-64 with the header's, once
 * per image (an atomic flag, so the path after the first use costs one
 * load) and once per layer file while it is unchanged (lib/store.c keeps
 * the layers found good, by id, checksum and file identity, in the store
 * handle and in a record for the next process). cf_image_open itself
 * reads no data: listing and `image info` stay cheap. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "cowfork/clone.h"
#include "cowfork/image.h"
#include "cowfork/zero.h"
#include "internal.h"

#define CHUNK (4u << 20)
/* Checking reads through a buffer that stays in L2: the copy out of the
 * page cache and the hash then cost about one pass over memory. Not an mmap:
 * mapping costs a fault per folio, cheap only for a layer cached in large
 * folios (as cf_layer_writer leaves one: 1.5-3 ms less than this pread for
 * 50 MiB) and 3-4x this pread where it is cached in small ones (written by
 * an older cowfork, or read back from disk) on a machine whose page faults
 * are VM exits; and a layer truncated under a mapping is a SIGBUS where
 * pread is a short read (bench/check, BENCHMARKS.md). */
#define CHECK_CHUNK (256u << 10)

struct cf_image {
  struct cf_header *h;
  int *fds;
  char *name;
  struct cf_layer_key *keys; /* per layer: what cf_checked remembers */
  struct cf_checked *checked;
  bool ok; /* every layer checked (atomic: read without the lock) */
  pthread_mutex_t check_lock;
};

const struct cf_header *cf_image_header(const struct cf_image *img) { return img->h; }
int cf_image_layer_fd(const struct cf_image *img, uint32_t i) { return img->fds[i]; }

void cf_image_close(struct cf_image *img)
{
  if (!img)
    return;
  for (uint32_t i = 0; img->fds && i < img->h->nlayers; i++)
    if (img->fds[i] >= 0)
      close(img->fds[i]);
  free(img->fds);
  free(img->keys);
  free(img->name);
  cf_checked_unref(img->checked);
  pthread_mutex_destroy(&img->check_lock);
  cf_header_free(img->h);
  free(img);
}

struct cf_image *cf_image_new_empty(uint64_t size, uint32_t block_size, const char *name)
{
  struct cf_image *img = calloc(1, sizeof *img);
  if (!img)
    return cf_fail_null(ENOMEM, "out of memory");
  pthread_mutex_init(&img->check_lock, NULL);
  if (!(img->name = strdup(name)) || !(img->fds = malloc(sizeof *img->fds)) ||
      !(img->keys = calloc(1, sizeof *img->keys))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  if (!(img->h = cf_header_new_empty(size, block_size)))
    goto err;
  img->ok = true; /* no layer to check */
  return img;
err:
  cf_image_close(img);
  return NULL;
}

struct cf_image *cf_image_open(struct cf_store *s, const char *name)
{
  struct cf_image *img = calloc(1, sizeof *img);
  if (!img)
    return cf_fail_null(ENOMEM, "out of memory");
  pthread_mutex_init(&img->check_lock, NULL);
  img->checked = cf_store_checked_ref(s);
  if (!(img->name = strdup(name))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  if (!(img->h = cf_store_get_header(s, name)))
    goto err;
  if (!(img->fds = malloc((img->h->nlayers ? img->h->nlayers : 1) * sizeof *img->fds)) ||
      !(img->keys = calloc(img->h->nlayers ? img->h->nlayers : 1, sizeof *img->keys))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  for (uint32_t i = 0; i < img->h->nlayers; i++)
    img->fds[i] = -1;
  for (uint32_t i = 0; i < img->h->nlayers; i++) {
    char path[PATH_MAX];
    struct stat st;
    const struct cf_layer_ref *l = &img->h->layers[i];
    if (cf_store_layer_path(s, l->id, path, sizeof path) < 0)
      goto err;
    if ((img->fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
      cf_fail(errno, "image '%s': layer %s: %m", name, path);
      goto err;
    }
    if (fstat(img->fds[i], &st) < 0 || !S_ISREG(st.st_mode)) {
      cf_fail(EINVAL, "image '%s': layer %s is not a regular file", name, path);
      goto err;
    }
    if ((uint64_t)st.st_size != l->nblocks * img->h->block_size) {
      cf_fail(EINVAL, "image '%s': layer %s has %lld bytes, the header says %llu", name, path,
              (long long)st.st_size, (unsigned long long)(l->nblocks * img->h->block_size));
      goto err;
    }
    cf_layer_key_set(&img->keys[i], l->id, l->checksum, &st);
  }
  return img;
err:
  cf_image_close(img);
  return NULL;
}

int cf_image_read(const struct cf_image *img, void *vbuf, size_t len, uint64_t off)
{
  const struct cf_header *h = img->h;
  char *buf = vbuf;
  if (off > h->size || len > h->size - off)
    return cf_fail(EINVAL, "read [%llu, +%zu) is outside the image of %llu bytes",
                   (unsigned long long)off, len, (unsigned long long)h->size);
  if (len == 0)
    return 0;
  if (cf_image_check(img) < 0)
    return -1;
  int64_t i = cf_header_lookup(h, off / h->block_size);
  while (len) {
    const struct cf_extent *e = &h->extents[i++];
    uint64_t end = (e->first + e->count) * h->block_size;
    size_t n = end - off < len ? end - off : len;
    if (e->layer == CF_LAYER_EMPTY)
      memset(buf, 0, n);
    else {
      uint64_t loff = e->offset * h->block_size + (off - e->first * h->block_size);
      ssize_t r = cf_pread_full(img->fds[e->layer], buf, n, loff);
      if (r != (ssize_t)n)
        return cf_fail(r < 0 ? errno : EIO, "read layer %u at %llu: %s", e->layer,
                       (unsigned long long)loff, r < 0 ? strerror(errno) : "short read");
    }
    buf += n;
    off += n;
    len -= n;
  }
  return 0;
}

/* XXH3-64 of the first len bytes of fd, through buf (n bytes). */
static int hash_layer(int fd, uint64_t len, char *buf, size_t n, XXH3_state_t *st, uint64_t *sum,
                      cf_progress_fn progress, void *ctx, uint64_t *done, uint64_t total)
{
  XXH3_64bits_reset(st);
  for (uint64_t off = 0; off < len;) {
    size_t k = len - off < n ? len - off : n;
    ssize_t r = cf_pread_full(fd, buf, k, off);
    if (r != (ssize_t)k)
      return cf_fail(r < 0 ? errno : EIO, "%s", r < 0 ? strerror(errno) : "shorter than the header says");
    XXH3_64bits_update(st, buf, k);
    off += k;
    if (done) {
      *done += k;
      if (progress)
        progress(ctx, *done, total);
    }
  }
  *sum = XXH3_64bits_digest(st);
  return 0;
}

int cf_image_check(const struct cf_image *cimg)
{
  /* The check state is the one part of an open image that changes; the
   * image itself is always heap-allocated by cf_image_open. */
  struct cf_image *img = (struct cf_image *)cimg;
  if (__atomic_load_n(&img->ok, __ATOMIC_ACQUIRE))
    return 0;
  const struct cf_header *h = img->h;
  int ret = 0;
  char *buf = NULL;
  XXH3_state_t *st = NULL;
  pthread_mutex_lock(&img->check_lock);
  for (uint32_t i = 0; i < h->nlayers && !img->ok; i++) {
    const struct cf_layer_key *k = &img->keys[i];
    if (cf_checked_has(img->checked, k))
      continue;
    if ((!buf && !(buf = aligned_alloc(4096, CHECK_CHUNK))) || (!st && !(st = XXH3_createState()))) {
      ret = cf_fail(ENOMEM, "out of memory");
      break;
    }
    char idtxt[37];
    uint64_t sum;
    cf_id_format(k->id, idtxt);
    if (hash_layer(img->fds[i], k->size, buf, CHECK_CHUNK, st, &sum, NULL, NULL, NULL, 0) < 0) {
      ret = cf_fail(errno, "image '%s': reading layer %s to check it: %s", img->name, idtxt, cf_error());
      break;
    }
    if (sum != k->checksum) {
      ret = cf_fail(EIO,
                    "image '%s': layer %s is corrupted (its XXH3-64 is %016" PRIx64 ", the header says %016" PRIx64
                    "); refusing to use it",
                    img->name, idtxt, sum, k->checksum);
      break;
    }
    cf_checked_add(img->checked, k);
  }
  if (ret == 0)
    __atomic_store_n(&img->ok, true, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&img->check_lock);
  XXH3_freeState(st);
  free(buf);
  return ret;
}

int cf_image_verify(const struct cf_image *img, cf_progress_fn progress, void *ctx)
{
  const struct cf_header *h = img->h;
  uint64_t total = 0, done = 0;
  for (uint32_t i = 0; i < h->nlayers; i++)
    total += h->layers[i].nblocks * h->block_size;
  CLEANUP_FREE char *buf = malloc(CHUNK);
  XXH3_state_t *st = XXH3_createState();
  if (!buf || !st) {
    XXH3_freeState(st);
    return cf_fail(ENOMEM, "out of memory");
  }
  int ret = 0;
  for (uint32_t i = 0; i < h->nlayers && ret == 0; i++) {
    const struct cf_layer_ref *l = &h->layers[i];
    uint64_t sum;
    char idtxt[37];
    cf_id_format(l->id, idtxt);
    if (hash_layer(img->fds[i], l->nblocks * h->block_size, buf, CHUNK, st, &sum, progress, ctx, &done, total) < 0)
      ret = cf_fail(errno, "layer %s: %s", idtxt, cf_error());
    else if (sum != l->checksum)
      ret = cf_fail(EIO, "layer %s: checksum mismatch (corrupted layer)", idtxt);
  }
  XXH3_freeState(st);
  return ret;
}

void cf_image_stats(const struct cf_header *h, struct cf_image_stats *st)
{
  memset(st, 0, sizeof *st);
  for (uint64_t i = 0; i < h->nextents; i++) {
    const struct cf_extent *e = &h->extents[i];
    uint64_t bytes = e->count * h->block_size;
    if (e->layer == CF_LAYER_EMPTY)
      st->empty_bytes += bytes;
    else {
      st->stored_bytes += bytes;
      if (memcmp(h->layers[e->layer].id, h->id, 16) == 0)
        st->own_bytes += bytes;
    }
  }
}

int cf_image_commit(struct cf_store *s, const struct cf_header *parent, const char *name,
                    const struct cf_changes *changes, struct cf_layer_writer *w)
{
  struct cf_layer_ref ref;
  if (cf_store_check_name(name) < 0) {
    cf_layer_writer_abort(w);
    return -1;
  }
  /* Held from before the layer lands until the header names it: gc waits. */
  int lock = cf_store_lock_shared(s);
  if (lock < 0) {
    cf_layer_writer_abort(w);
    return -1;
  }
  int ret = -1;
  struct cf_header *h = NULL;
  if (cf_layer_writer_finish(w, &ref) < 0)
    goto out;
  if (!(h = cf_header_derive(parent, changes->v, changes->n, &ref)))
    goto out;
  ret = cf_store_put_header(s, name, h);
out:
  cf_header_free(h);
  cf_store_unlock(lock);
  return ret;
}

/* A fresh image with no parent is a child of the all-empty image, with its
 * parent link cleared. */
static int commit_root(struct cf_store *s, uint64_t size, uint32_t bs, const char *name,
                       const struct cf_changes *c, struct cf_layer_writer *w)
{
  struct cf_header *base = cf_header_new_empty(size, bs);
  if (!base) {
    cf_layer_writer_abort(w);
    return -1;
  }
  memset(base->id, 0, 16);
  base->generation = UINT64_MAX; /* derive adds one: the root is generation 0 */
  int r = cf_image_commit(s, base, name, c, w);
  cf_header_free(base);
  return r;
}

static int input_size(int fd, uint64_t *size)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return cf_fail(errno, "stat input: %m");
  if (!S_ISREG(st.st_mode))
    return cf_fail(EINVAL, "input is not a regular file");
  *size = st.st_size;
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return 0;
}

/* One chunk of input being diffed: a changed block that is all zero becomes
 * an empty extent; a run of changed non-zero blocks is one layer write. */
struct chunk {
  const char *data; /* the new contents */
  const char *old; /* parent's bytes of this chunk, or NULL when all empty */
  uint64_t first;  /* image block of data[0] */
  uint64_t n;
  uint32_t bs;
  int fd;                    /* the input: runs are shared with it where the store can reflink */
  unsigned *clone_state;
  struct cf_clone_stats *st;
};

/* Whether block i of the chunk differs from what the parent holds there. */
static bool changed(const struct chunk *c, uint64_t i)
{
  const char *b = c->data + i * c->bs;
  return c->old ? memcmp(b, c->old + i * c->bs, c->bs) != 0 : !cf_is_zero(b, c->bs);
}

static int diff_chunk(const struct chunk *c, struct cf_changes *ch, struct cf_layer_writer *w)
{
  uint64_t i = 0;
  while (i < c->n) {
    const char *b = c->data + i * c->bs;
    if (!changed(c, i)) {
      i++;
      continue;
    }
    /* Without a parent a changed block is never zero; with one, it may be. */
    if (c->old && cf_is_zero(b, c->bs)) {
      if (cf_changes_add(ch, c->first + i, 1, CF_LAYER_EMPTY, 0) < 0)
        return -1;
      i++;
      continue;
    }
    uint64_t j = i + 1;
    while (j < c->n && changed(c, j) && !(c->old && cf_is_zero(c->data + j * c->bs, c->bs)))
      j++;
    uint64_t off;
    if (cf_layer_writer_append_from(w, b, j - i, c->fd, (c->first + i) * c->bs, c->clone_state, c->st, &off) < 0 ||
        cf_changes_add(ch, c->first + i, j - i, CF_LAYER_NEW, off) < 0)
      return -1;
    i = j;
  }
  return 0;
}

/* The next offset >= off that may hold data (size when the rest is a hole),
 * and the next offset >= off in a hole (size when none). Where the file
 * system cannot say, everything is data. */
static uint64_t input_data(int fd, uint64_t off, uint64_t size)
{
  off_t r = lseek(fd, (off_t)off, SEEK_DATA);
  if (r < 0)
    return errno == ENXIO ? size : off;
  return (uint64_t)r < size ? (uint64_t)r : size;
}

static uint64_t input_hole(int fd, uint64_t off, uint64_t size)
{
  off_t r = lseek(fd, (off_t)off, SEEK_HOLE);
  return r < 0 || (uint64_t)r > size || (uint64_t)r <= off ? size : (uint64_t)r;
}

/* Blocks [first, first+n) of the input are zero: where the parent holds
 * data they become empty; where it is already empty nothing changes. */
static int zero_run(const struct cf_header *p, uint64_t first, uint64_t n, struct cf_changes *ch)
{
  int64_t i = cf_header_lookup(p, first);
  for (uint64_t end = first + n; first < end; i++) {
    const struct cf_extent *e = &p->extents[i];
    uint64_t stop = e->first + e->count < end ? e->first + e->count : end;
    if (e->layer != CF_LAYER_EMPTY && cf_changes_add(ch, first, stop - first, CF_LAYER_EMPTY, 0) < 0)
      return -1;
    first = stop;
  }
  return 0;
}

/* Import (parent NULL) or commit against parent: one pass over fd. */
static int ingest(struct cf_store *s, struct cf_image *parent, int fd, const char *name,
                  uint32_t bs, struct cf_clone_stats *st, cf_progress_fn progress, void *ctx)
{
  uint64_t size = 0;
  unsigned clone_state = 0;
  struct cf_changes ch = {0};
  if (cf_store_check_name(name) < 0 || input_size(fd, &size) < 0)
    return -1;
  if (parent && size != parent->h->size)
    return cf_fail(EINVAL, "input has %llu bytes, parent image has %llu", (unsigned long long)size,
                   (unsigned long long)parent->h->size);
  if (!parent && size == 0)
    return cf_fail(EINVAL, "input is empty");
  if (!parent && cf_is_pow2(bs) && size % bs)
    return cf_fail(EINVAL, "input size %llu is not a multiple of the block size %u",
                   (unsigned long long)size, bs);
  if (!parent && (!cf_is_pow2(bs) || bs < CF_MIN_BLOCK_SIZE || bs > CF_MAX_BLOCK_SIZE))
    return cf_fail(EINVAL, "block size %u is not a power of two in [%u, %u]", bs,
                   CF_MIN_BLOCK_SIZE, CF_MAX_BLOCK_SIZE);
  uint32_t chunk = CHUNK < bs ? bs : CHUNK;
  CLEANUP_FREE char *buf = aligned_alloc(4096, chunk);
  CLEANUP_FREE char *old = parent ? aligned_alloc(4096, chunk) : NULL;
  if (!buf || (parent && !old))
    return cf_fail(ENOMEM, "out of memory");
  struct cf_layer_writer *w = cf_layer_writer_new(s, bs);
  if (!w)
    return -1;
  for (uint64_t off = 0; off < size;) {
    /* Whole blocks inside a hole of the input are zeros: not read at all. */
    uint64_t data = input_data(fd, off, size) / bs * bs;
    if (data > off) {
      if (parent && zero_run(parent->h, off / bs, (data - off) / bs, &ch) < 0)
        goto err;
      off = data;
    } else {
      uint64_t hole = input_hole(fd, off, size);
      hole = (hole + bs - 1) / bs * bs;
      size_t n = hole - off < chunk ? hole - off : chunk;
      ssize_t r = cf_pread_full(fd, buf, n, off);
      if (r != (ssize_t)n) {
        cf_fail(r < 0 ? errno : EIO, "read input at %llu: %s", (unsigned long long)off,
                r < 0 ? strerror(errno) : "file shrank");
        goto err;
      }
      struct chunk c = {.data = buf, .first = off / bs, .n = n / bs, .bs = bs, .fd = fd,
                        .clone_state = &clone_state, .st = st};
      if (parent) {
        if (cf_image_read(parent, old, n, off) < 0)
          goto err;
        c.old = old;
      }
      if (diff_chunk(&c, &ch, w) < 0)
        goto err;
      off += n;
    }
    if (progress)
      progress(ctx, off, size);
  }
  int r = parent ? cf_image_commit(s, parent->h, name, &ch, w)
                 : commit_root(s, size, bs, name, &ch, w);
  cf_changes_free(&ch);
  return r;
err:
  cf_changes_free(&ch);
  cf_layer_writer_abort(w);
  return -1;
}

int cf_image_import_stats(struct cf_store *s, int fd, const char *name, uint32_t block_size,
                          struct cf_clone_stats *st, cf_progress_fn progress, void *ctx)
{
  struct cf_clone_stats dummy;
  memset(st ? st : &dummy, 0, sizeof dummy);
  return ingest(s, NULL, fd, name, block_size, st ? st : &dummy, progress, ctx);
}

int cf_image_import(struct cf_store *s, int fd, const char *name, uint32_t block_size,
                    cf_progress_fn progress, void *ctx)
{
  return cf_image_import_stats(s, fd, name, block_size, NULL, progress, ctx);
}

int cf_image_commit_raw_stats(struct cf_store *s, struct cf_image *parent, int fd, const char *name,
                              struct cf_clone_stats *st, cf_progress_fn progress, void *ctx)
{
  struct cf_clone_stats dummy;
  memset(st ? st : &dummy, 0, sizeof dummy);
  return ingest(s, parent, fd, name, parent->h->block_size, st ? st : &dummy, progress, ctx);
}

int cf_image_commit_raw(struct cf_store *s, struct cf_image *parent, int fd, const char *name,
                        cf_progress_fn progress, void *ctx)
{
  return cf_image_commit_raw_stats(s, parent, fd, name, NULL, progress, ctx);
}

/* Every extent that holds data is cf_clone_range'd from its layer: shared
 * (FICLONERANGE) where the output is on the store's file system with
 * reflink and the run is aligned, else copied in the kernel, else through
 * a buffer. */
int cf_image_export_stats(const struct cf_image *img, int fd, struct cf_clone_stats *st,
                          cf_progress_fn progress, void *ctx)
{
  const struct cf_header *h = img->h;
  struct cf_clone_stats dummy;
  if (!st)
    st = &dummy;
  memset(st, 0, sizeof *st);
  if (cf_image_check(img) < 0)
    return -1;
  if (ftruncate(fd, 0) < 0 || ftruncate(fd, h->size) < 0)
    return cf_fail(errno, "truncate output: %m");
  unsigned state = 0;
  for (uint64_t i = 0; i < h->nextents; i++) {
    const struct cf_extent *e = &h->extents[i];
    uint64_t end = (e->first + e->count) * h->block_size;
    /* Empty extents are left as the holes the truncate made. */
    if (e->layer != CF_LAYER_EMPTY &&
        cf_clone_range(img->fds[e->layer], e->offset * h->block_size, fd, e->first * h->block_size,
                       e->count * h->block_size, &state, st) < 0)
      return cf_fail(errno, "export at %llu: %s", (unsigned long long)(e->first * h->block_size), cf_error());
    if (progress)
      progress(ctx, end, h->size);
  }
  if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
    return cf_fail(errno, "fsync output: %m");
  return 0;
}

int cf_image_export(const struct cf_image *img, int fd, cf_progress_fn progress, void *ctx)
{
  return cf_image_export_stats(img, fd, NULL, progress, ctx);
}
