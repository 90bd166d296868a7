/* libFuzzer target: the NBD server's connection handler. The input is a
 * client's whole byte stream (handshake, options, requests, payloads),
 * delivered in pieces whose sizes the input's first byte chooses, against two
 * small exports over one image; replies are dropped. The handler must never
 * crash, hang or leak, whatever the stream; the exports keep any writes
 * between runs, as a long-lived server's would. Seeds in corpus/nbd/ are
 * real clients' streams (libnbd's handshake, then each command). */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowfork/image.h"
#include "cowfork/overlay.h"
#include "nbd/nbd.h"

static char dir[64];
static struct cf_store *store;
static struct cf_nbd_server *srv;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
  (void)st, (void)flag, (void)f;
  return remove(p);
}

static void cleanup(void)
{
  cf_nbd_server_free(srv);
  cf_store_close(store);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what)
{
  fprintf(stderr, "nbd fuzz setup: %s\n", what);
  abort();
}

static void setup(void)
{
  strcpy(dir, "/tmp/cowfork-nbd-fuzz.XXXXXX");
  if (!mkdtemp(dir))
    die("mkdtemp");
  char path[128];
  snprintf(path, sizeof path, "%s/store", dir);
  if (!(store = cf_store_open(path)))
    die("store");
  /* 256 KiB: data blocks, zero blocks, a pattern a read can be checked by. */
  snprintf(path, sizeof path, "%s/base.raw", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  static uint8_t blk[4096];
  for (int b = 0; b < 64; b++) {
    memset(blk, b % 3 ? b : 0, sizeof blk);
    if (fd < 0 || pwrite(fd, blk, sizeof blk, (off_t)b * 4096) != (ssize_t)sizeof blk)
      die("raw file");
  }
  if (cf_image_import(store, fd, "base", 4096, NULL, NULL) < 0)
    die("import");
  close(fd);
  struct cf_nbd_config cfg = {.store = store, .cache_dir = dir};
  if (!(srv = cf_nbd_server_new(&cfg)))
    die("server");
  const char *names[] = {"a", "b"};
  for (int i = 0; i < 2; i++) {
    struct cf_image *img = cf_image_open(store, "base");
    struct cf_overlay *o = img ? cf_overlay_new(img, dir) : NULL;
    if (!o || cf_nbd_server_add_overlay(srv, names[i], o, NULL) < 0)
      die("export");
  }
  atexit(cleanup);
}

struct mem {
  const uint8_t *p;
  size_t n, piece;
};

static ssize_t mem_recv(void *ctx, void *buf, size_t n)
{
  struct mem *m = ctx;
  if (n > m->n)
    n = m->n;
  if (n > m->piece)
    n = m->piece;
  memcpy(buf, m->p, n);
  m->p += n;
  m->n -= n;
  return (ssize_t)n;
}

static int mem_sendv(void *ctx, const struct iovec *iov, int n)
{
  (void)ctx;
  for (int i = 0; i < n; i++) /* touch every byte: a reply past its buffer shows up under ASan */
    if (iov[i].iov_len && ((volatile const uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1] == 0x5a &&
        ((volatile const uint8_t *)iov[i].iov_base)[0] == 0xa5)
      ;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!srv)
    setup();
  if (size == 0)
    return 0;
  static const size_t pieces[] = {1 << 20, 1, 3, 7, 16, 28, 100, 4096};
  struct mem m = {data + 1, size - 1, pieces[data[0] & 7]};
  struct cf_nbd_transport t = {.recv = mem_recv, .sendv = mem_sendv, .ctx = &m};
  cf_nbd_serve(srv, &t, "fuzz");
  return 0;
}
