/* The overlay against a plain byte-array model: random writes, zero writes
 * and trims at any alignment, reads, block status, save; the template never
 * changes; saving an unchanged overlay writes no data; threads writing
 * disjoint ranges at once lose nothing. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/overlay.h"
#include "cowfork/zero.h"
#include "tap.h"

static char dir[] = "/tmp/cowfork-overlay.XXXXXX";
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
  cf_store_close(store);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
