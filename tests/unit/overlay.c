/* The overlay against a plain byte-array model: random writes, zero writes
 * and trims at any alignment, reads, block status, save; the template never
 * changes; saving an unchanged overlay writes no data; threads writing
 * disjoint ranges at once lose nothing. Block claims: a write held inside
 * its cache write (pwrite64 below stops it) does not hold up writes to the
 * next block or reads elsewhere, while a read of its blocks, a partial write
 * into them and a save wait for it and then see all of it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/overlay.h"
#include "cowfork/zero.h"
#include "tap.h"

static char dir[] = "/tmp/cowfork-overlay.XXXXXX";

/* Every pwrite of the library lands here (this definition takes precedence
 * over libc's): while `hold` is armed, the first write of data starting with
 * HOLD_BYTE stops until released, so a test can keep one overlay write in
 * the middle of its cache write for as long as it needs. */
#define HOLD_BYTE 0xa5
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static enum { HOLD_OFF, HOLD_ARMED, HOLD_HOLDING } hold;

ssize_t pwrite64(int fd, const void *buf, size_t n, __off64_t off)
{
  if (n && *(const unsigned char *)buf == HOLD_BYTE) {
    pthread_mutex_lock(&hold_mu);
    if (hold == HOLD_ARMED) {
      hold = HOLD_HOLDING;
      pthread_cond_broadcast(&hold_cv);
      while (hold == HOLD_HOLDING)
        pthread_cond_wait(&hold_cv, &hold_mu);
    }
    pthread_mutex_unlock(&hold_mu);
  }
  return syscall(SYS_pwrite64, fd, buf, n, off);
}
static struct cf_store *store;

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int import(const char *name, const char *buf, size_t size, uint32_t bs)
{
  char path[256];
  snprintf(path, sizeof path, "%s/%s.raw", dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || pwrite(fd, buf, size, 0) != (ssize_t)size)
    return -1;
  int r = cf_image_import(store, fd, name, bs, NULL, NULL);
  close(fd);
  return r;
}

static int export_equals(const char *name, const char *model, size_t size)
{
  struct cf_image *img = cf_image_open(store, name);
  char *buf = malloc(size);
  int r = img && cf_image_read(img, buf, size, 0) == 0 && memcmp(buf, model, size) == 0 &&
          cf_image_verify(img, NULL, NULL) == 0;
  free(buf);
  cf_image_close(img);
  return r;
}

struct status_check {
  const char *model;
  uint64_t off;
  int bad;
};

static int check_status(void *ctx, uint64_t n, unsigned flags)
{
  struct status_check *c = ctx;
  if ((flags & CF_STATUS_ZERO) && !cf_is_zero(c->model + c->off, n))
    c->bad++;
  c->off += n;
  return 0;
}

static void differential(uint32_t bs, unsigned seed)
{
  enum { NB = 300 };
  size_t size = (size_t)NB * bs;
  char *tmpl = calloc(1, size), *model = malloc(size), *buf = malloc(size);
  char name[64], child[64];
  rng = seed * 2654435761u + 1;
  for (size_t b = 0; b < NB; b++)
    if (rnd() % 2)
      for (size_t i = 0; i < bs; i++)
        tmpl[b * bs + i] = (char)rnd();
  snprintf(name, sizeof name, "t%u-%u", bs, seed);
  snprintf(child, sizeof child, "c%u-%u", bs, seed);
  ok(import(name, tmpl, size, bs) == 0, "import %s", name);
  memcpy(model, tmpl, size);
  struct cf_overlay *o = cf_overlay_new(cf_image_open(store, name), NULL);
  ok(o != NULL, "overlay over %s", name);
  int bad = 0;
  for (int op = 0; op < 3000; op++) {
    uint64_t off = rnd() % size, len = 1 + rnd() % (3 * bs);
    if (rnd() % 4 == 0) { /* aligned ops too */
      off -= off % bs;
      len = bs * (1 + rnd() % 4);
    }
    if (len > size - off)
      len = size - off;
    switch (rnd() % 5) {
    case 0: case 1: /* data */
      for (uint64_t i = 0; i < len; i++)
        buf[i] = (char)(rnd() | 1);
      bad += cf_overlay_pwrite(o, buf, len, off, rnd() % 8 == 0 ? CF_OVERLAY_FUA : 0) != 0;
      memcpy(model + off, buf, len);
      break;
    case 2: /* a write of zeros */
      memset(buf, 0, len);
      bad += cf_overlay_pwrite(o, buf, len, off, 0) != 0;
      memset(model + off, 0, len);
      break;
    case 3:
      bad += cf_overlay_zero(o, len, off, 0) != 0;
      memset(model + off, 0, len);
      break;
    case 4:
      bad += cf_overlay_trim(o, len, off, 0) != 0;
      memset(model + off, 0, len);
      break;
    }
    if (op % 100 == 0) {
      bad += cf_overlay_pread(o, buf, size, 0) != 0 || memcmp(buf, model, size) != 0;
      uint64_t roff = rnd() % size, rlen = 1 + rnd() % (size - roff);
      bad += cf_overlay_pread(o, buf, rlen, roff) != 0 || memcmp(buf, model + roff, rlen) != 0;
      struct status_check sc = {model, roff, 0};
      bad += cf_overlay_block_status(o, rlen, roff, check_status, &sc) != 0 || sc.bad ||
             sc.off != roff + rlen;
    }
  }
  is(bad, 0, "bs %u seed %u: 3000 random operations agree with the model", bs, seed);
  struct cf_overlay_stats st;
  cf_overlay_stats(o, &st);
  size_t dirty_nonzero = 0;
  ok(cf_overlay_save(o, store, child) == 0, "save %s: %s", child, cf_error());
  ok(export_equals(child, model, size), "the saved child reads like the model");
  struct cf_header *h = cf_store_get_header(store, child);
  struct cf_image_stats ist;
  cf_image_stats(h, &ist);
  for (size_t b = 0; b < NB; b++)
    dirty_nonzero += !cf_is_zero(model + b * bs, bs) && memcmp(model + b * bs, tmpl + b * bs, bs);
  ok(ist.own_bytes <= st.dirty_blocks * bs && ist.own_bytes >= dirty_nonzero * bs,
     "the child stores its dirty blocks only (%llu bytes, %zu changed non-zero blocks)",
     (unsigned long long)ist.own_bytes, dirty_nonzero);
  cf_header_free(h);
  ok(export_equals(name, tmpl, size), "the template is unchanged and verifies");
  /* The overlay keeps working after a save. */
  memset(buf, 0x5a, bs);
  ok(cf_overlay_pwrite(o, buf, bs, 0, 0) == 0 && cf_overlay_pread(o, buf + bs, bs, 0) == 0 &&
         memcmp(buf, buf + bs, bs) == 0,
     "writes after a save work");
  ok(cf_overlay_pread(o, buf, 1, size) < 0 && errno == EINVAL, "a read past the end is EINVAL");
  ok(cf_overlay_pwrite(o, buf, 2, size - 1, 0) < 0 && errno == EINVAL, "a write across the end is EINVAL");
  cf_overlay_free(o);
  free(tmpl);
  free(model);
  free(buf);
}

static void unchanged(void)
{
  char tmpl[8192 * 4];
  memset(tmpl, 7, sizeof tmpl);
  ok(import("u", tmpl, sizeof tmpl, 4096) == 0, "import u");
  struct cf_overlay *o = cf_overlay_new(cf_image_open(store, "u"), "/tmp");
  char buf[100];
  ok(cf_overlay_pread(o, buf, sizeof buf, 5000) == 0 && buf[0] == 7, "reads from the template");
  ok(cf_overlay_save(o, store, "u-child") == 0, "save an unchanged overlay");
  struct cf_header *h = cf_store_get_header(store, "u-child");
  struct cf_image_stats st;
  cf_image_stats(h, &st);
  is(st.own_bytes, 0, "saving an unchanged overlay writes no data");
  cf_header_free(h);
  cf_overlay_free(o);
}

struct writer {
  struct cf_overlay *o;
  int id;
  int bad;
};

static void *thread_writer(void *arg)
{
  struct writer *w = arg;
  char buf[1000];
  for (int k = 0; k < 200; k++) {
    uint64_t off = (uint64_t)w->id * 200000 + (uint64_t)k * 1000; /* unaligned, disjoint */
    memset(buf, 'a' + w->id, sizeof buf);
    w->bad += cf_overlay_pwrite(w->o, buf, sizeof buf, off, 0) != 0;
  }
  return NULL;
}

static void threads(void)
{
  size_t size = 8 * 200000 + 4096 * 10;
  size -= size % 4096;
  char *tmpl = calloc(1, size);
  for (size_t i = 0; i < size; i++)
    tmpl[i] = (char)(i * 7);
  ok(import("thr", tmpl, size, 4096) == 0, "import thr");
  struct cf_overlay *o = cf_overlay_new(cf_image_open(store, "thr"), NULL);
  pthread_t th[8];
  struct writer w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (struct writer){o, i, 0};
    pthread_create(&th[i], NULL, thread_writer, &w[i]);
  }
  int bad = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    bad += w[i].bad;
    memset(tmpl + (size_t)i * 200000, 'a' + i, 200000);
  }
  char *buf = malloc(size);
  ok(bad == 0 && cf_overlay_pread(o, buf, size, 0) == 0 && memcmp(buf, tmpl, size) == 0,
     "8 threads writing unaligned neighbouring ranges lose nothing");
  free(buf);
  free(tmpl);
  cf_overlay_free(o);
}

/* One overlay call on its own thread, and whether it has returned. */
struct op {
  struct cf_overlay *o;
  enum { OP_WRITE, OP_READ, OP_SAVE } kind;
  char *buf;
  size_t len;
  uint64_t off;
  const char *name;
  int ret;
  bool done;
  pthread_t th;
};
static pthread_mutex_t op_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t op_cv = PTHREAD_COND_INITIALIZER;

static void *op_thread(void *arg)
{
  struct op *p = arg;
  int r = p->kind == OP_WRITE  ? cf_overlay_pwrite(p->o, p->buf, p->len, p->off, 0)
          : p->kind == OP_READ ? cf_overlay_pread(p->o, p->buf, p->len, p->off)
                               : cf_overlay_save(p->o, store, p->name);
  pthread_mutex_lock(&op_mu);
  p->ret = r;
  p->done = true;
  pthread_cond_broadcast(&op_cv);
  pthread_mutex_unlock(&op_mu);
  return NULL;
}

static void op_start(struct op *p) { pthread_create(&p->th, NULL, op_thread, p); }

/* Has p returned within ms milliseconds? */
static bool op_wait(struct op *p, int ms)
{
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000;
  if (t.tv_nsec >= 1000000000) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&op_mu);
  while (!p->done && pthread_cond_timedwait(&op_cv, &op_mu, &t) == 0)
    ;
  bool d = p->done;
  pthread_mutex_unlock(&op_mu);
  return d;
}

static void hold_arm(void)
{
  pthread_mutex_lock(&hold_mu);
  hold = HOLD_ARMED;
  pthread_mutex_unlock(&hold_mu);
}

/* Wait (up to 10 s) until a write is held. */
static bool hold_wait(void)
{
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += 10;
  pthread_mutex_lock(&hold_mu);
  while (hold != HOLD_HOLDING && pthread_cond_timedwait(&hold_cv, &hold_mu, &t) == 0)
    ;
  bool held = hold == HOLD_HOLDING;
  pthread_mutex_unlock(&hold_mu);
  return held;
}

static void hold_release(void)
{
  pthread_mutex_lock(&hold_mu);
  hold = HOLD_OFF;
  pthread_cond_broadcast(&hold_cv);
  pthread_mutex_unlock(&hold_mu);
}

static bool all(const char *p, int c, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != (char)c)
      return false;
  return true;
}

static void claims(void)
{
  enum { BS = 4096, NB = 16 };
  static char tmpl[NB * BS], a[2 * BS], b[BS], c[BS], d[100], e[BS], model[NB * BS], out[NB * BS];
  memset(tmpl, 0x11, sizeof tmpl);
  ok(import("cl", tmpl, sizeof tmpl, BS) == 0, "import cl");
  struct cf_overlay *o = cf_overlay_new(cf_image_open(store, "cl"), NULL);
  memset(a, HOLD_BYTE, sizeof a);
  memset(b, 'b', sizeof b);
  memset(d, 'd', sizeof d);
  memcpy(model, tmpl, sizeof model);

  /* A: blocks 0-1, held in the middle of its cache write. */
  hold_arm();
  struct op A = {o, OP_WRITE, a, sizeof a, 0, NULL, 0, false, 0};
  op_start(&A);
  ok(hold_wait(), "a write of blocks 0-1 is held inside its cache write");
  struct op B = {o, OP_WRITE, b, sizeof b, 2 * BS, NULL, 0, false, 0};  /* the next block */
  struct op C = {o, OP_READ, c, sizeof c, 9 * BS, NULL, 0, false, 0};   /* elsewhere */
  struct op D = {o, OP_WRITE, d, sizeof d, BS + 100, NULL, 0, false, 0}; /* inside block 1 */
  struct op E = {o, OP_READ, e, sizeof e, 0, NULL, 0, false, 0};        /* block 0 */
  op_start(&B);
  op_start(&C);
  op_start(&D);
  op_start(&E);
  ok(op_wait(&B, 10000) && B.ret == 0, "meanwhile a write of the adjacent block completes");
  ok(op_wait(&C, 10000) && C.ret == 0 && all(c, 0x11, BS), "meanwhile a read of another block completes");
  ok(!op_wait(&D, 200), "a partial write into the held write's block waits");
  ok(!op_wait(&E, 0), "a read of the held write's block waits");
  hold_release();
  ok(op_wait(&A, 10000) && A.ret == 0, "the held write completes once released");
  ok(op_wait(&E, 10000) && E.ret == 0 && all(e, HOLD_BYTE, BS), "the waiting read sees the whole new block");
  ok(op_wait(&D, 10000) && D.ret == 0, "the waiting partial write completes");
  memcpy(model, a, sizeof a);
  memcpy(model + 2 * BS, b, sizeof b);
  memcpy(model + BS + 100, d, sizeof d);
  ok(cf_overlay_pread(o, out, sizeof out, 0) == 0 && memcmp(out, model, sizeof out) == 0,
     "the device holds every write, the partial one over the held one");

  /* A save waits for a write in progress and then holds all of it. */
  hold_arm();
  struct op A2 = {o, OP_WRITE, a, sizeof a, 5 * BS, NULL, 0, false, 0};
  op_start(&A2);
  ok(hold_wait(), "a write of blocks 5-6 is held");
  struct op S = {o, OP_SAVE, NULL, 0, 0, "cl-child", 0, false, 0};
  op_start(&S);
  struct op F = {o, OP_READ, c, sizeof c, 12 * BS, NULL, 0, false, 0};
  op_start(&F);
  ok(op_wait(&F, 10000) && F.ret == 0, "reads go on while a save waits");
  ok(!op_wait(&S, 200), "the save waits for the write in progress");
  hold_release();
  ok(op_wait(&A2, 10000) && op_wait(&S, 10000) && A2.ret == 0 && S.ret == 0, "both complete");
  memcpy(model + 5 * BS, a, sizeof a);
  ok(export_equals("cl-child", model, sizeof model), "the saved image holds the whole write");
  struct op *ops[] = {&A, &B, &C, &D, &E, &A2, &S, &F};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    if (op_wait(ops[i], 30000))
      pthread_join(ops[i]->th, NULL);
  cf_overlay_free(o);
}

int main(void)
{
  if (!mkdtemp(dir))
    skip_all("no temp directory");
  char sd[300];
  snprintf(sd, sizeof sd, "%s/store", dir);
  store = cf_store_open(sd);
  for (unsigned seed = 1; seed <= 3; seed++) {
    differential(4096, seed);
    differential(512, seed);
  }
  differential(65536, 9);
  unchanged();
  threads();
  claims();
  cf_store_close(store);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
