/* A writable copy-on-write block device over an image (include/cowfork/overlay.h).
 *
 * What it keeps: the image (never written), a sparse cache file with the
 * same geometry as the device (block b of the device is at b*bs in the
 * cache, so no allocation map is needed) and a tracker with one state per
 * block: Untouched (read from the image), Dirty (read from the cache),
 * Zero (reads as zeros; the cache is punched there).
 *
 * Invariants: a Dirty block's cache bytes are its contents; a Zero block's
 * cache range is a hole; an Untouched block's cache range is a hole. A block
 * only moves away from Untouched with its full contents written: a partial
 * write first fills the block from its current contents (read-modify-write),
 * so base data is never lost whatever alignment a client uses. A block's
 * cache bytes are written before its new state is set (a failed write
 * leaves the old state, which never reads those bytes).
 *
 * Locking: two levels, so that operations on different blocks run in
 * parallel and only the tracker itself is serialized.
 *
 *  - Block claims (claim_lock, claims): every operation first claims the
 *    whole blocks it touches, [first block, last block]: reads and block
 *    status shared, writes, zeroing and trim exclusive, save the whole
 *    device shared. A claim is granted when no claim queued before it
 *    overlaps it with either side exclusive; claims are granted in arrival
 *    order per block (a waiting write holds back later overlapping reads),
 *    so nobody starves. claim_lock (a mutex) guards only the queue, never
 *    I/O. Because a writer holds its blocks alone from before its first
 *    cache write until after its tracker update, a concurrent read of a
 *    block sees all of the old contents or all of the new, never a torn
 *    block or a state that does not match the cache; and the read-modify-
 *    write of a partial block cannot lose a neighbour's write in the same
 *    block. Writes to different blocks (adjacent ones included) copy into
 *    the cache at the same time.
 *  - The tracker (tlock, a rwlock): CRoaring is not thread-safe for
 *    writers, so set_range takes it exclusive and get/count/foreach_run
 *    shared, each for the tracker call only, never across I/O. The states
 *    of claimed blocks cannot change between reading them and using them:
 *    only an exclusive claim on those blocks changes them.
 *
 * Save claims the whole device shared: it waits for the writes claimed
 * before it to finish and holds back the ones after it, so it sees one
 * consistent tracker and cache (a commit of a point in time), while reads
 * go on. Claim order is always claim, then tlock, never the reverse, and
 * an operation holds one claim at a time, so there is no lock cycle. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cowfork/overlay.h"
#include "cowfork/tracker.h"
#include "cowfork/zero.h"
#include "internal.h"

#define IO_CHUNK (4u << 20) /* bounce buffer for save */

/* One operation's claim on blocks [first, last], queued in arrival order. */
struct claim {
  struct claim *prev, *next;
  uint64_t first, last;
  bool excl;
};

struct cf_overlay {
  struct cf_image *img;
  bool own_img; /* closed by cf_overlay_free (cf_overlay_new), else the caller's (cf_overlay_new_shared) */
  const struct cf_header *h;
  uint32_t bs;
  uint64_t size, nblocks;
  int cache;
  struct cf_tracker *t;
  pthread_rwlock_t tlock;    /* the tracker */
  pthread_mutex_t claim_lock; /* the claim queue below */
  pthread_cond_t claim_freed;
  struct claim *head, *tail;
  unsigned waiting; /* claims waiting for claim_freed */
};

uint64_t cf_overlay_size(const struct cf_overlay *o) { return o->size; }
uint32_t cf_overlay_block_size(const struct cf_overlay *o) { return o->bs; }
const struct cf_image *cf_overlay_image(const struct cf_overlay *o) { return o->img; }

static int open_cache(const char *dir, uint64_t size)
{
  if (!dir) {
    struct stat st;
    dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  }
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) { /* file systems without O_TMPFILE: create and unlink */
    char path[4096];
    snprintf(path, sizeof path, "%s/cowfork-cache.XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
      return cf_fail(errno, "cache file in %s: %m", dir);
    unlink(path);
  }
  if (ftruncate(fd, (off_t)size) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "size cache file in %s: %s", dir, strerror(e));
  }
  return fd;
}

static struct cf_overlay *overlay_new(struct cf_image *img, bool own, const char *cache_dir)
{
  const struct cf_header *h = cf_image_header(img);
  struct cf_overlay *o = calloc(1, sizeof *o);
  if (!o) {
    if (own)
      cf_image_close(img);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  o->img = img;
  o->own_img = own;
  o->h = h;
  o->bs = h->block_size;
  o->size = h->size;
  o->nblocks = cf_header_nblocks(h);
  o->cache = -1;
  if (!(o->t = cf_tracker_new(o->nblocks, 3)) || (o->cache = open_cache(cache_dir, o->size)) < 0) {
    int e = errno;
    cf_tracker_free(o->t);
    if (own)
      cf_image_close(img);
    free(o);
    errno = e;
    return NULL;
  }
  pthread_rwlock_init(&o->tlock, NULL);
  pthread_mutex_init(&o->claim_lock, NULL);
  pthread_cond_init(&o->claim_freed, NULL);
  return o;
}

struct cf_overlay *cf_overlay_new(struct cf_image *img, const char *cache_dir)
{
  return overlay_new(img, true, cache_dir);
}

struct cf_overlay *cf_overlay_new_shared(const struct cf_image *img, const char *cache_dir)
{
  /* Only read (cf_image_read and cf_image_check are thread-safe) and never
   * closed here. */
  return overlay_new((struct cf_image *)img, false, cache_dir);
}

void cf_overlay_free(struct cf_overlay *o)
{
  if (!o)
    return;
  pthread_cond_destroy(&o->claim_freed);
  pthread_mutex_destroy(&o->claim_lock);
  pthread_rwlock_destroy(&o->tlock);
  cf_tracker_free(o->t);
  close(o->cache);
  if (o->own_img)
    cf_image_close(o->img);
  free(o);
}

static int check_range(const struct cf_overlay *o, uint64_t len, uint64_t off)
{
  if (off > o->size || len > o->size - off)
    return cf_fail(EINVAL, "[%llu, +%llu) is outside the device of %llu bytes",
                   (unsigned long long)off, (unsigned long long)len, (unsigned long long)o->size);
  return 0;
}

/* ---- block claims ---- */

static bool conflicts(const struct claim *a, const struct claim *b)
{
  return (a->excl || b->excl) && a->first <= b->last && b->first <= a->last;
}

/* Claim the blocks under [off, off+len) (len > 0), waiting for every
 * conflicting claim queued before this one. */
static void claim(struct cf_overlay *o, struct claim *c, uint64_t len, uint64_t off, bool excl)
{
  *c = (struct claim){.first = off / o->bs, .last = (off + len - 1) / o->bs, .excl = excl};
  pthread_mutex_lock(&o->claim_lock);
  c->prev = o->tail;
  if (o->tail)
    o->tail->next = c;
  else
    o->head = c;
  o->tail = c;
  for (;;) {
    const struct claim *e = c->prev;
    while (e && !conflicts(e, c))
      e = e->prev;
    if (!e)
      break;
    o->waiting++;
    pthread_cond_wait(&o->claim_freed, &o->claim_lock);
    o->waiting--;
  }
  pthread_mutex_unlock(&o->claim_lock);
}

static void unclaim(struct cf_overlay *o, struct claim *c)
{
  pthread_mutex_lock(&o->claim_lock);
  if (c->prev)
    c->prev->next = c->next;
  else
    o->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    o->tail = c->prev;
  if (o->waiting)
    pthread_cond_broadcast(&o->claim_freed);
  pthread_mutex_unlock(&o->claim_lock);
}

/* ---- the tracker, under tlock ---- */

static int state_of(struct cf_overlay *o, uint64_t b)
{
  pthread_rwlock_rdlock(&o->tlock);
  int state = cf_tracker_get(o->t, b);
  pthread_rwlock_unlock(&o->tlock);
  return state;
}

/* The state of block b and the end (exclusive, <= limit) of the run of
 * blocks from b in that same state. */
static int run_of(struct cf_overlay *o, uint64_t b, uint64_t limit, uint64_t *end)
{
  pthread_rwlock_rdlock(&o->tlock);
  int state = cf_tracker_get(o->t, b);
  uint64_t e = b + 1;
  while (e < limit && cf_tracker_get(o->t, e) == state)
    e++;
  pthread_rwlock_unlock(&o->tlock);
  *end = e;
  return state;
}

static int set_state(struct cf_overlay *o, uint64_t first, uint64_t n, int state)
{
  pthread_rwlock_wrlock(&o->tlock);
  int r = cf_tracker_set_range(o->t, first, n, (unsigned)state);
  pthread_rwlock_unlock(&o->tlock);
  return r;
}

/* ---- reading and writing claimed blocks ---- */

/* Read [off, off+len) that lies in blocks all in one state. */
static int read_state(struct cf_overlay *o, int state, char *buf, size_t len, uint64_t off)
{
  if (state == CF_BLOCK_ZERO) {
    memset(buf, 0, len);
    return 0;
  }
  if (state == CF_BLOCK_UNTOUCHED)
    return cf_image_read(o->img, buf, len, off);
  ssize_t r = cf_pread_full(o->cache, buf, len, off);
  if (r != (ssize_t)len)
    return cf_fail(r < 0 ? errno : EIO, "read cache at %llu: %s", (unsigned long long)off,
                   r < 0 ? strerror(errno) : "short read");
  return 0;
}

/* Read claimed blocks: runs of blocks in the same state are one read each. */
static int read_claimed(struct cf_overlay *o, char *buf, size_t len, uint64_t off)
{
  uint64_t limit = (off + len - 1) / o->bs + 1;
  while (len) {
    uint64_t end;
    int state = run_of(o, off / o->bs, limit, &end);
    size_t n = end * o->bs - off < len ? end * o->bs - off : len;
    if (read_state(o, state, buf, n, off) < 0)
      return -1;
    buf += n;
    off += n;
    len -= n;
  }
  return 0;
}

int cf_overlay_pread(struct cf_overlay *o, void *buf, size_t len, uint64_t off)
{
  if (check_range(o, len, off) < 0)
    return -1;
  if (len == 0)
    return 0;
  struct claim c;
  claim(o, &c, len, off, false);
  int r = read_claimed(o, buf, len, off);
  unclaim(o, &c);
  return r;
}

/* Blocks [first, first+n) become Zero: one punch for the run. */
static int zero_blocks(struct cf_overlay *o, uint64_t first, uint64_t n)
{
  if (n == 0)
    return 0;
  if (fallocate(o->cache, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * o->bs),
                (off_t)(n * o->bs)) < 0)
    return cf_fail(errno, "punch cache at block %llu (+%llu): %m", (unsigned long long)first,
                   (unsigned long long)n);
  return set_state(o, first, n, CF_BLOCK_ZERO);
}

/* Whole blocks from buf: runs of all-zero blocks are punched, runs of data
 * blocks written with one pwrite each. */
static int write_blocks(struct cf_overlay *o, const char *buf, uint64_t first, uint64_t n)
{
  uint64_t i = 0;
  while (i < n) {
    bool zero = cf_is_zero(buf + i * o->bs, o->bs);
    uint64_t j = i + 1;
    while (j < n && cf_is_zero(buf + j * o->bs, o->bs) == zero)
      j++;
    if (zero) {
      if (zero_blocks(o, first + i, j - i) < 0)
        return -1;
    } else {
      if (cf_pwrite_full(o->cache, buf + i * o->bs, (j - i) * o->bs, (first + i) * o->bs) < 0)
        return cf_fail(errno, "write cache at block %llu: %m", (unsigned long long)(first + i));
      if (set_state(o, first + i, j - i, CF_BLOCK_DIRTY) < 0)
        return -1;
    }
    i = j;
  }
  return 0;
}

/* Part of one block: its current contents with [skip, skip+len) replaced by
 * src (or zeros when src is NULL), written back as a whole block. */
static int write_partial(struct cf_overlay *o, uint64_t b, size_t skip, const char *src, size_t len)
{
  CLEANUP_FREE char *blk = malloc(o->bs);
  if (!blk)
    return cf_fail(ENOMEM, "out of memory");
  if (read_state(o, state_of(o, b), blk, o->bs, b * o->bs) < 0)
    return -1;
  if (src)
    memcpy(blk + skip, src, len);
  else
    memset(blk + skip, 0, len);
  return write_blocks(o, blk, b, 1);
}

/* Shared by write, zero and trim: head and tail partial blocks through
 * write_partial, whole blocks through whole(). */
static int apply(struct cf_overlay *o, const char *src, uint64_t len, uint64_t off, bool zero)
{
  while (len) {
    uint64_t b = off / o->bs, skip = off % o->bs;
    if (skip || len < o->bs) {
      size_t n = o->bs - skip < len ? o->bs - skip : len;
      if (write_partial(o, b, skip, zero ? NULL : src, n) < 0)
        return -1;
      off += n;
      len -= n;
      if (!zero)
        src += n;
      continue;
    }
    uint64_t nb = len / o->bs;
    if ((zero ? zero_blocks(o, b, nb) : write_blocks(o, src, b, nb)) < 0)
      return -1;
    off += nb * o->bs;
    len -= nb * o->bs;
    if (!zero)
      src += nb * o->bs;
  }
  return 0;
}

static int modify(struct cf_overlay *o, const void *src, uint64_t len, uint64_t off, unsigned flags,
                  bool zero)
{
  if (check_range(o, len, off) < 0)
    return -1;
  int r = 0;
  if (len) {
    struct claim c;
    claim(o, &c, len, off, true);
    r = apply(o, src, len, off, zero);
    unclaim(o, &c);
  }
  if (r == 0 && (flags & CF_OVERLAY_FUA))
    r = cf_overlay_flush(o);
  return r;
}

int cf_overlay_pwrite(struct cf_overlay *o, const void *buf, size_t len, uint64_t off, unsigned flags)
{
  return modify(o, buf, len, off, flags, false);
}

int cf_overlay_zero(struct cf_overlay *o, uint64_t len, uint64_t off, unsigned flags)
{
  return modify(o, NULL, len, off, flags, true);
}

int cf_overlay_trim(struct cf_overlay *o, uint64_t len, uint64_t off, unsigned flags)
{
  return modify(o, NULL, len, off, flags, true);
}

int cf_overlay_flush(struct cf_overlay *o)
{
  if (fdatasync(o->cache) < 0 && errno != EINVAL)
    return cf_fail(errno, "sync cache: %m");
  return 0;
}

/* Flags of one block: Dirty is data; Zero is a hole; Untouched is whatever
 * the image has there (empty extents are holes). Under tlock, shared. */
static unsigned block_flags(struct cf_overlay *o, uint64_t b, int64_t *ext)
{
  int state = cf_tracker_get(o->t, b);
  if (state == CF_BLOCK_DIRTY)
    return 0;
  if (state == CF_BLOCK_ZERO)
    return CF_STATUS_HOLE | CF_STATUS_ZERO;
  const struct cf_extent *e = &o->h->extents[*ext];
  if (b < e->first || b >= e->first + e->count)
    e = &o->h->extents[*ext = cf_header_lookup(o->h, b)];
  return e->layer == CF_LAYER_EMPTY ? CF_STATUS_HOLE | CF_STATUS_ZERO : 0;
}

int cf_overlay_block_status(struct cf_overlay *o, uint64_t len, uint64_t off, cf_status_fn fn, void *ctx)
{
  if (check_range(o, len, off) < 0)
    return -1;
  if (len == 0)
    return 0;
  int r = 0;
  int64_t ext = 0;
  struct claim c;
  claim(o, &c, len, off, false);
  while (len && r == 0) {
    uint64_t b = off / o->bs;
    pthread_rwlock_rdlock(&o->tlock);
    unsigned flags = block_flags(o, b, &ext);
    uint64_t end = (b + 1) * o->bs;
    while (end - off < len && block_flags(o, end / o->bs, &ext) == flags)
      end += o->bs;
    pthread_rwlock_unlock(&o->tlock);
    uint64_t n = end - off < len ? end - off : len;
    r = fn(ctx, n, flags); /* not under tlock: fn may take its time */
    off += n;
    len -= n;
  }
  unclaim(o, &c);
  return r < 0 ? -1 : 0;
}

void cf_overlay_stats(struct cf_overlay *o, struct cf_overlay_stats *st)
{
  pthread_rwlock_rdlock(&o->tlock);
  st->dirty_blocks = cf_tracker_count(o->t, CF_BLOCK_DIRTY);
  st->zero_blocks = cf_tracker_count(o->t, CF_BLOCK_ZERO);
  st->untouched_blocks = o->nblocks - st->dirty_blocks - st->zero_blocks;
  pthread_rwlock_unlock(&o->tlock);
}

/* Runs of one state, collected for the merge in save (tracker runs are
 * maximal, so cf_changes_add never merges two of them). */
static int collect(void *ctx, uint64_t first, uint64_t count)
{
  return cf_changes_add(ctx, first, count, CF_LAYER_EMPTY, 0);
}

/* Copy Dirty run [first, first+count) from the cache into the layer. */
static int save_run(struct cf_overlay *o, struct cf_layer_writer *w, char *buf, uint64_t first,
                    uint64_t count, struct cf_changes *ch)
{
  uint64_t per = IO_CHUNK / o->bs ? IO_CHUNK / o->bs : 1;
  while (count) {
    uint64_t n = count < per ? count : per, at;
    if (read_state(o, CF_BLOCK_DIRTY, buf, n * o->bs, first * o->bs) < 0 ||
        cf_layer_writer_append(w, buf, n, &at) < 0 ||
        cf_changes_add(ch, first, n, CF_LAYER_NEW, at) < 0)
      return -1;
    first += n;
    count -= n;
  }
  return 0;
}

int cf_overlay_save(struct cf_overlay *o, struct cf_store *s, const char *name)
{
  struct cf_changes dirty = {0}, zero = {0}, ch = {0};
  struct cf_layer_writer *w = NULL;
  char *buf = NULL;
  int ret = -1;
  if (cf_store_check_name(name) < 0)
    return -1;
  /* The whole device, shared: no write runs until the save is done. */
  struct claim c;
  claim(o, &c, o->size ? o->size : 1, 0, false);
  pthread_rwlock_rdlock(&o->tlock);
  int walk = cf_tracker_foreach_run(o->t, CF_BLOCK_DIRTY, collect, &dirty) != 0 ||
             cf_tracker_foreach_run(o->t, CF_BLOCK_ZERO, collect, &zero) != 0;
  pthread_rwlock_unlock(&o->tlock);
  if (walk)
    goto out;
  uint64_t bufsize = IO_CHUNK < o->bs ? o->bs : IO_CHUNK;
  if (!(buf = malloc(bufsize)) || !(w = cf_layer_writer_new(s, o->bs))) {
    if (!buf)
      cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  /* Merge the two ascending run lists into one ascending change list. */
  size_t i = 0, j = 0;
  while (i < dirty.n || j < zero.n) {
    if (j == zero.n || (i < dirty.n && dirty.v[i].first < zero.v[j].first)) {
      if (save_run(o, w, buf, dirty.v[i].first, dirty.v[i].count, &ch) < 0)
        goto out;
      i++;
    } else {
      if (cf_changes_add(&ch, zero.v[j].first, zero.v[j].count, CF_LAYER_EMPTY, 0) < 0)
        goto out;
      j++;
    }
  }
  ret = cf_image_commit(s, o->h, name, &ch, w);
  w = NULL; /* consumed */
out:
  unclaim(o, &c);
  cf_layer_writer_abort(w);
  free(buf);
  cf_changes_free(&dirty);
  cf_changes_free(&zero);
  cf_changes_free(&ch);
  return ret;
}
