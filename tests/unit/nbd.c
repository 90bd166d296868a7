/* The NBD connection handler over a socketpair, driven by a hand-written
 * client (no libnbd needed): handshake and options (LIST, INFO, GO, meta
 * contexts, errors), every command with simple and structured replies,
 * block status, error replies that keep the stream in step, pipelined
 * requests answered by several workers, and the save rules of
 * cf_nbd_server_save (replace, unchanged, never someone else's image). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/image.h"
#include "nbd/nbd.h"
#include "nbd/proto.h"
#include "tap.h"

#define SIZE (1u << 20)
static char dir[] = "/tmp/cowfork-nbd.XXXXXX";
static struct cf_store *store;
static struct cf_nbd_server *srv;
static uint8_t model[SIZE]; /* what export "a" should hold */

/* ---- a tiny client ---- */

struct serve_arg {
  int fd;
};

static ssize_t t_recv(void *ctx, void *buf, size_t n)
{
  return recv(*(int *)ctx, buf, n, 0);
}

static int t_sendv(void *ctx, const struct iovec *iov, int n)
{
  for (int i = 0; i < n; i++) {
    size_t done = 0;
    while (done < iov[i].iov_len) {
      ssize_t r = send(*(int *)ctx, (char *)iov[i].iov_base + done, iov[i].iov_len - done, MSG_NOSIGNAL);
      if (r <= 0)
        return -1;
      done += (size_t)r;
    }
  }
  return 0;
}

static void *serve_thread(void *p)
{
  struct serve_arg *a = p;
  struct cf_nbd_transport t = {.recv = t_recv, .sendv = t_sendv, .ctx = &a->fd};
  cf_nbd_serve(srv, &t, "unit");
  close(a->fd);
  return NULL;
}

static int cfd = -1;
static pthread_t th;
static struct serve_arg sarg;

static void connect_srv(void)
{
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  sarg.fd = sv[1];
  cfd = sv[0];
  pthread_create(&th, NULL, serve_thread, &sarg);
}

static void disconnect_srv(void)
{
  close(cfd);
  pthread_join(th, NULL);
}

static int rd(void *p, size_t n)
{
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(cfd, (char *)p + got, n - got, 0);
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

static void wr(const void *p, size_t n) { send(cfd, p, n, MSG_NOSIGNAL); }

static void send_opt(uint32_t opt, const void *d, uint32_t len)
{
  uint8_t h[16];
  nbd_put64(h, NBD_OPTS_MAGIC);
  nbd_put32(h + 8, opt);
  nbd_put32(h + 12, len);
  wr(h, 16);
  if (len)
    wr(d, len);
}

/* One option reply: its type; data into buf (up to cap). */
static uint32_t opt_reply(uint32_t opt, uint8_t *buf, size_t cap, uint32_t *len)
{
  uint8_t h[20];
  if (rd(h, 20) < 0 || nbd_get64(h) != NBD_REP_MAGIC || nbd_get32(h + 8) != opt) {
    diag("bad option reply header for option %u: %016llx %08x", opt, (unsigned long long)nbd_get64(h), nbd_get32(h + 8));
    return 0;
  }
  uint32_t l = nbd_get32(h + 16);
  uint8_t junk[4096];
  if (rd(l <= cap ? buf : junk, l) < 0)
    return 0;
  if (len)
    *len = l;
  return nbd_get32(h + 12);
}

static void greet(void)
{
  uint8_t g[18], cf[4];
  rd(g, 18);
  nbd_put32(cf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  wr(cf, 4);
}

static void req(uint16_t flags, uint16_t type, uint64_t handle, uint64_t off, uint32_t len)
{
  uint8_t h[28];
  nbd_put32(h, NBD_REQUEST_MAGIC);
  nbd_put16(h + 4, flags);
  nbd_put16(h + 6, type);
  nbd_put64(h + 8, handle);
  nbd_put64(h + 16, off);
  nbd_put32(h + 24, len);
  wr(h, 28);
}

static int64_t simple(uint64_t *handle)
{
  uint8_t h[16];
  if (rd(h, 16) < 0 || nbd_get32(h) != NBD_SIMPLE_REPLY_MAGIC)
    return -1;
  *handle = nbd_get64(h + 8);
  return nbd_get32(h + 4);
}

/* A structured chunk: type, handle, payload (malloc'ed). */
static int chunk(uint16_t *type, uint64_t *handle, uint8_t **payload, uint32_t *len)
{
  uint8_t h[20];
  if (rd(h, 20) < 0 || nbd_get32(h) != NBD_STRUCTURED_REPLY_MAGIC || !(nbd_get16(h + 4) & NBD_REPLY_FLAG_DONE))
    return -1;
  *type = nbd_get16(h + 6);
  *handle = nbd_get64(h + 8);
  *len = nbd_get32(h + 16);
  *payload = malloc(*len ? *len : 1);
  return rd(*payload, *len);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
  (void)st, (void)flag, (void)f;
  return remove(p);
}

static void test_options(void)
{
  uint8_t b[4096];
  uint32_t len;
  connect_srv();
  greet();
  send_opt(NBD_OPT_LIST, NULL, 0);
  int names = 0;
  uint32_t t;
  while ((t = opt_reply(NBD_OPT_LIST, b, sizeof b, &len)) == NBD_REP_SERVER)
    names++;
  is(t, NBD_REP_ACK, "LIST ends with ACK");
  is(names, 2, "LIST names both exports");
  send_opt(NBD_OPT_LIST, "x", 1);
  is(opt_reply(NBD_OPT_LIST, b, sizeof b, NULL), NBD_REP_ERR_INVALID, "LIST with data: ERR_INVALID");
  uint8_t o[64];
  nbd_put32(o, 6);
  memcpy(o + 4, "nosuch", 6);
  nbd_put16(o + 10, 0);
  send_opt(NBD_OPT_INFO, o, 12);
  is(opt_reply(NBD_OPT_INFO, b, sizeof b, NULL), NBD_REP_ERR_UNKNOWN, "INFO of an unknown export: ERR_UNKNOWN");
  nbd_put32(o, 100);
  send_opt(NBD_OPT_GO, o, 12);
  is(opt_reply(NBD_OPT_GO, b, sizeof b, NULL), NBD_REP_ERR_INVALID, "GO with a lying name length: ERR_INVALID");
  /* meta context before structured replies: refused */
  uint8_t m[64];
  nbd_put32(m, 1);
  m[4] = 'a';
  nbd_put32(m + 5, 1);
  nbd_put32(m + 9, 15);
  memcpy(m + 13, "base:allocation", 15);
  send_opt(NBD_OPT_SET_META_CONTEXT, m, 28);
  is(opt_reply(NBD_OPT_SET_META_CONTEXT, b, sizeof b, NULL), NBD_REP_ERR_INVALID, "SET_META_CONTEXT needs structured replies");
  send_opt(99, NULL, 0);
  is(opt_reply(99, b, sizeof b, NULL), NBD_REP_ERR_UNSUP, "unknown option: ERR_UNSUP");
  send_opt(NBD_OPT_STARTTLS, NULL, 0);
  is(opt_reply(NBD_OPT_STARTTLS, b, sizeof b, NULL), NBD_REP_ERR_POLICY, "STARTTLS: ERR_POLICY");
  send_opt(NBD_OPT_ABORT, NULL, 0);
  is(opt_reply(NBD_OPT_ABORT, b, sizeof b, NULL), NBD_REP_ACK, "ABORT: ACK");
  ok(rd(b, 1) < 0, "the server closes after ABORT");
  disconnect_srv();
}

/* Handshake to export a with or without structured replies (and meta). */
static uint16_t go(bool structured)
{
  uint8_t b[4096];
  uint32_t len, t;
  connect_srv();
  greet();
  if (structured) {
    send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    opt_reply(NBD_OPT_STRUCTURED_REPLY, b, sizeof b, NULL);
    uint8_t m[64];
    nbd_put32(m, 1);
    m[4] = 'a';
    nbd_put32(m + 5, 1);
    nbd_put32(m + 9, 15);
    memcpy(m + 13, "base:allocation", 15);
    send_opt(NBD_OPT_SET_META_CONTEXT, m, 28);
    ok(opt_reply(NBD_OPT_SET_META_CONTEXT, b, sizeof b, &len) == NBD_REP_META_CONTEXT && len == 19 &&
           memcmp(b + 4, "base:allocation", 15) == 0,
       "SET_META_CONTEXT selects base:allocation");
    is(opt_reply(NBD_OPT_SET_META_CONTEXT, b, sizeof b, NULL), NBD_REP_ACK, "then ACK");
  }
  uint8_t o[16];
  nbd_put32(o, 1);
  o[4] = 'a';
  nbd_put16(o + 5, 1);
  nbd_put16(o + 7, NBD_INFO_BLOCK_SIZE);
  send_opt(NBD_OPT_GO, o, 9);
  uint16_t flags = 0;
  bool size_ok = false, bs_ok = false;
  while ((t = opt_reply(NBD_OPT_GO, b, sizeof b, &len)) == NBD_REP_INFO) {
    if (nbd_get16(b) == NBD_INFO_EXPORT) {
      size_ok = nbd_get64(b + 2) == SIZE;
      flags = nbd_get16(b + 10);
    } else if (nbd_get16(b) == NBD_INFO_BLOCK_SIZE) {
      bs_ok = nbd_get32(b + 2) == 1 && nbd_get32(b + 6) == 4096 && nbd_get32(b + 10) == CF_NBD_MAX_REQUEST;
    }
  }
  is(t, NBD_REP_ACK, "GO: ACK");
  ok(size_ok && bs_ok, "GO: size %u and block sizes 1/4096/32M", SIZE);
  return flags;
}

static void test_commands(bool structured)
{
  uint16_t fl = go(structured);
  uint16_t want = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                  NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN;
  ok((fl & want) == want && !(fl & NBD_FLAG_READ_ONLY), "transmission flags 0x%x", fl);
  ok(!!(fl & NBD_FLAG_SEND_DF) == structured, "SEND_DF only with structured replies");
  uint64_t h;
  uint16_t type;
  uint8_t *p;
  uint32_t len;
  /* random writes, zeroes, trims, each followed by a check read */
  for (int i = 0; i < 200; i++) {
    uint32_t n = 1 + rnd() % 20000;
    uint64_t off = rnd() % (SIZE - n);
    int op = (int)(rnd() % 4);
    if (op <= 1) {
      uint8_t *d = malloc(n);
      for (uint32_t k = 0; k < n; k++)
        d[k] = op ? (uint8_t)rnd() : 0;
      req(i % 3 ? 0 : NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1000 + i, off, n);
      wr(d, n);
      memcpy(model + off, d, n);
      free(d);
    } else {
      req(op == 2 ? NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO : 0, op == 2 ? NBD_CMD_WRITE_ZEROES : NBD_CMD_TRIM,
          1000 + i, off, n);
      memset(model + off, 0, n);
    }
    if (simple(&h) != 0 || h != 1000u + i) {
      ok(0, "command %d (op %d) failed", i, op);
      break;
    }
  }
  req(0, NBD_CMD_FLUSH, 7, 0, 0);
  ok(simple(&h) == 0 && h == 7, "FLUSH");
  /* Pipelined large reads: several workers, replies matched by handle. */
  enum { NR = 8 };
  for (int i = 0; i < NR; i++)
    req(0, NBD_CMD_READ, 500 + i, (uint64_t)i * (SIZE / NR), SIZE / NR);
  int good = 0;
  for (int i = 0; i < NR; i++) {
    uint8_t *d = malloc(SIZE / NR);
    uint64_t off;
    if (structured) {
      if (chunk(&type, &h, &p, &len) < 0 || type != NBD_REPLY_TYPE_OFFSET_DATA || len != 8 + SIZE / NR) {
        free(d);
        break;
      }
      off = nbd_get64(p);
      memcpy(d, p + 8, SIZE / NR);
      free(p);
    } else {
      /* Simple replies carry no offset: the handle says which read it is. */
      if (simple(&h) != 0 || rd(d, SIZE / NR) < 0) {
        free(d);
        break;
      }
      off = (h - 500) * (SIZE / NR);
    }
    good += h >= 500 && h < 500 + NR && off == (h - 500) * (SIZE / NR) && memcmp(d, model + off, SIZE / NR) == 0;
    free(d);
  }
  is(good, NR, "%d pipelined reads return the model's bytes (%s replies)", NR, structured ? "structured" : "simple");
  /* errors keep the stream in step */
  req(0, NBD_CMD_READ, 8, SIZE - 10, 20);
  if (structured) {
    ok(chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_ERROR && nbd_get32(p) == NBD_EINVAL && h == 8,
       "READ past the end: an EINVAL error chunk");
    free(p);
  } else {
    is(simple(&h), NBD_EINVAL, "READ past the end: EINVAL");
  }
  req(0, NBD_CMD_WRITE, 9, 0, CF_NBD_MAX_REQUEST + 1);
  uint8_t *big = calloc(1, CF_NBD_MAX_REQUEST + 1);
  wr(big, CF_NBD_MAX_REQUEST + 1);
  free(big);
  if (structured) {
    ok(chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_ERROR && nbd_get32(p) == NBD_EINVAL && h == 9,
       "WRITE over 32 MiB: EINVAL, payload dropped");
    free(p);
  } else {
    is(simple(&h), NBD_EINVAL, "WRITE over 32 MiB: EINVAL, payload dropped");
  }
  req(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_WRITE_ZEROES, 10, 0, 4096);
  if (structured) {
    ok(chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_ERROR && nbd_get32(p) == NBD_EINVAL, "bad flag: EINVAL");
    free(p);
  } else {
    is(simple(&h), NBD_EINVAL, "bad flag: EINVAL");
  }
  if (structured) {
    /* Block status: a zeroed aligned block is hole|zero, a data block data. */
    memset(model + 8192, 0x42, 4096);
    req(0, NBD_CMD_WRITE, 11, 8192, 4096);
    wr(model + 8192, 4096);
    simple(&h);
    req(0, NBD_CMD_WRITE_ZEROES, 12, 16384, 8192);
    memset(model + 16384, 0, 8192);
    simple(&h);
    req(0, NBD_CMD_BLOCK_STATUS, 13, 8192, 16384);
    ok(chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_BLOCK_STATUS && nbd_get32(p) == 1 && len >= 12 &&
           nbd_get32(p + 4) == 4096 && nbd_get32(p + 8) == 0,
       "BLOCK_STATUS: the written block is data");
    free(p);
    /* The whole disk: in this overlay a block is hole,zero exactly when it
     * reads as zeros (zero runs are detected on every write). */
    req(0, NBD_CMD_BLOCK_STATUS, 16, 0, SIZE);
    int bad = -1;
    uint64_t sum = 0;
    if (chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_BLOCK_STATUS) {
      bad = 0;
      for (uint32_t k = 4; k + 8 <= len; k += 8) {
        uint32_t ln = nbd_get32(p + k), f = nbd_get32(p + k + 4);
        for (uint64_t blk = sum / 4096; blk < (sum + ln) / 4096; blk++) {
          bool zero = true;
          for (int j = 0; j < 4096; j++)
            zero &= model[blk * 4096 + j] == 0;
          bad += zero != (f == (NBD_STATE_HOLE | NBD_STATE_ZERO));
        }
        sum += ln;
      }
      free(p);
    }
    ok(bad == 0 && sum == SIZE, "BLOCK_STATUS of the disk matches the model (%d wrong blocks)", bad);
    req(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 14, 0, SIZE);
    ok(chunk(&type, &h, &p, &len) == 0 && type == NBD_REPLY_TYPE_BLOCK_STATUS && len == 12, "REQ_ONE: one extent");
    free(p);
  }
  req(0, NBD_CMD_DISC, 15, 0, 0);
  uint8_t x;
  ok(rd(&x, 1) < 0, "DISC closes the connection");
  disconnect_srv();
}

static void test_saves(void)
{
  char info[512];
  ok(cf_nbd_server_save(srv, "a", "a-snap", info, sizeof info) == 0, "save a as a-snap: %s", info);
  ok(cf_nbd_server_save(srv, "a", "a-snap", info, sizeof info) == 0 && strstr(info, "unchanged"),
     "saving again with no change: %s", info);
  struct cf_image *img = cf_image_open(store, "a-snap");
  static uint8_t got[SIZE];
  ok(img && cf_image_read(img, got, SIZE, 0) == 0 && memcmp(got, model, SIZE) == 0, "a-snap holds the model");
  cf_image_close(img);
  /* change, save again: replaced */
  go(false);
  uint64_t h;
  req(0, NBD_CMD_WRITE, 1, 0, 4);
  wr("abcd", 4);
  memcpy(model, "abcd", 4);
  simple(&h);
  req(0, NBD_CMD_DISC, 2, 0, 0);
  disconnect_srv();
  ok(cf_nbd_server_save(srv, "a", "a-snap", info, sizeof info) == 0 && strstr(info, "saved"), "re-save replaces: %s", info);
  img = cf_image_open(store, "a-snap");
  ok(img && cf_image_read(img, got, SIZE, 0) == 0 && memcmp(got, model, SIZE) == 0, "the replaced a-snap holds the change");
  cf_image_close(img);
  ok(cf_nbd_server_save(srv, "a", "base", info, sizeof info) < 0 && cf_errno() == EEXIST, "never over another image: %s",
     cf_error());
  ok(cf_nbd_server_save(srv, "b", NULL, info, sizeof info) < 0 && cf_errno() == EINVAL, "no save name: %s", cf_error());
  ok(cf_nbd_server_save(srv, "zz", "x", info, sizeof info) < 0 && cf_errno() == ENOENT, "unknown export: %s", cf_error());
  char **names;
  size_t n;
  cf_store_list(store, &names, &n);
  bool tmp_left = false;
  for (size_t i = 0; i < n; i++)
    tmp_left |= strstr(names[i], ".saving-") != NULL;
  cf_store_free_list(names, n);
  ok(!tmp_left, "no temporary image left");
  struct cf_image *base = cf_image_open(store, "base");
  ok(base && cf_image_verify(base, NULL, NULL) == 0, "the template verifies");
  cf_image_close(base);
}

int main(void)
{
  if (!mkdtemp(dir))
    skip_all("mkdtemp failed");
  char path[256];
  snprintf(path, sizeof path, "%s/store", dir);
  store = cf_store_open(path);
  for (uint32_t i = 0; i < SIZE; i++)
    model[i] = (i / 4096) % 3 ? (uint8_t)(i * 7 + i / 4096) : 0;
  snprintf(path, sizeof path, "%s/base.raw", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ok(fd >= 0 && pwrite(fd, model, SIZE, 0) == SIZE && cf_image_import(store, fd, "base", 4096, NULL, NULL) == 0,
     "import the template");
  close(fd);
  struct cf_nbd_config cfg = {.store = store, .cache_dir = dir};
  srv = cf_nbd_server_new(&cfg);
  ok(srv && cf_nbd_server_add_export(srv, "a", "base", NULL) == 0 && cf_nbd_server_add_export(srv, "b", "base", NULL) == 0,
     "two exports of one image");
  ok(cf_nbd_server_add_export(srv, "a", "base", NULL) < 0 && cf_errno() == EEXIST, "a duplicate export name is refused");
  ok(cf_nbd_server_add_export(srv, "c", "base", "base") < 0 && cf_errno() == EEXIST, "an existing SAVE_AS is refused");
  ok(cf_nbd_server_add_export(srv, "bad name", "base", NULL) < 0 && cf_errno() == EINVAL, "a bad export name is refused");
  test_options();
  test_commands(false);
  test_commands(true);
  test_saves();
  cf_nbd_server_free(srv);
  cf_store_close(store);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return done_testing();
}
