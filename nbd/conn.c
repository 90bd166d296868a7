/* One NBD connection: the fixed-newstyle handshake, then the transmission
 * phase, over a transport (a socket, or the fuzzer's memory buffer).
 *
 * Threads. The connection's own thread (the reader) does the handshake, then
 * reads requests: it checks each one, receives a WRITE's payload, and either
 * answers an invalid request at once, runs a small request itself when
 * nothing else is in flight (a hand-off would cost more than the work), or
 * queues it for up to MAX_WORKERS worker threads of this connection, started
 * on demand. So a pipelining client's large reads and writes overlap with
 * receiving the next ones, and reads run in parallel (the overlay is
 * thread-safe: operations claim their blocks, reads shared, writes alone).
 * Large READ/WRITE buffers come from a per-connection pool. Backpressure:
 * at most MAX_QUEUED requests and MAX_INFLIGHT bytes of buffers in flight.
 *
 * Locks. qlock guards the queue and its counts (head, tail, nqueued, idle,
 * nworkers, inflight, closing). send_lock is held for each message written,
 * and every message (option reply, simple reply, structured chunk) is one
 * sendv call, so replies of concurrent workers never interleave. pool_lock
 * guards the free buffers (taken and given back by reader and workers). The input
 * buffer and the handshake state belong to the reader alone; the export
 * pointer and negotiated flags are fixed before any worker starts.
 *
 * Ordering. Replies may come out of order (the protocol allows it; handles
 * tell them apart). A FLUSH is an fdatasync of the export's one cache file,
 * so it covers every write whose reply was sent before the FLUSH arrived,
 * on any connection. When reading ends (the client left, sent DISC, broke
 * the protocol, or the server stops reading), every request already queued
 * is still executed and answered before the connection is closed.
 *
 * Bad input. Every length and count from the client is checked before it is
 * used. What the stream cannot recover from (bad magic, an absurd length, a
 * message cut short, unknown client flags) ends this connection only; a
 * request that is merely wrong (outside the export, too large, bad flags)
 * gets an error reply and the connection goes on (a WRITE's payload is read
 * and dropped first, so the stream stays in step). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/error.h"
#include "nbd/private.h"
#include "nbd/proto.h"

#define RBUF_SIZE (64u << 10)
#define OPT_MAX (64u << 10)       /* largest option payload we parse */
#define OPT_DISCARD_MAX (1u << 20) /* larger options end the connection */
#define MAX_WORKERS 4              /* threads executing one connection's requests */
#define MAX_QUEUED 64              /* requests queued or executing per connection */
#define MAX_INFLIGHT (64u << 20)   /* their READ/WRITE bytes, per connection */
#define INLINE_MAX (64u << 10)     /* smaller requests may run in the reader */
#define MAX_EXTENTS 65536u         /* descriptors per BLOCK_STATUS reply */
#define POOL_MIN (64u << 10)       /* READ/WRITE buffers this large are recycled */
#define POOL_BYTES (16u << 20)     /* free buffers a connection keeps */
#define POOL_CLASSES 10            /* powers of two, POOL_MIN .. CF_NBD_MAX_REQUEST */
#define META_ALLOC_ID 1u           /* our id for base:allocation */
#define META_ALLOC "base:allocation"

struct conn {
  struct cf_nbd_server *srv;
  const struct cf_nbd_transport *t;
  const char *peer;
  uint8_t *rbuf;
  size_t rpos, rlen;
  bool structured, no_zeroes;
  struct nbd_export *exp;      /* set when transmission starts */
  struct nbd_export *meta_exp; /* export SET_META_CONTEXT named */
  bool meta_alloc;             /* base:allocation selected */
  uint8_t *data;               /* option payloads (handshake only) */
  size_t datacap;
  /* Transmission: the reader queues requests for up to MAX_WORKERS workers.
   * qlock guards the queue and counts; send_lock makes each reply one
   * uninterrupted write on the socket. */
  pthread_mutex_t qlock, send_lock;
  pthread_cond_t qwork, qspace;
  struct req *head, *tail;
  unsigned nqueued, idle, nworkers;
  uint64_t inflight; /* READ/WRITE bytes queued or executing */
  bool closing;
  atomic_bool dead; /* a reply could not be sent */
  pthread_t workers[MAX_WORKERS];
  /* Free READ/WRITE buffers of POOL_MIN bytes or more, one list per power
   * of two (linked through their first bytes), POOL_BYTES in all. */
  pthread_mutex_t pool_lock;
  void *pool[POOL_CLASSES];
  size_t pool_bytes;
};

/* ---- transport helpers ---- */

static int recv_exact(struct conn *c, void *p, size_t n)
{
  uint8_t *d = p;
  while (n) {
    if (c->rpos < c->rlen) {
      size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;
      memcpy(d, c->rbuf + c->rpos, k);
      c->rpos += k;
      d += k;
      n -= k;
      continue;
    }
    ssize_t r;
    if (n >= RBUF_SIZE) { /* big payload: straight into place */
      r = c->t->recv(c->t->ctx, d, n);
      if (r <= 0)
        return -1;
      d += r;
      n -= (size_t)r;
      continue;
    }
    r = c->t->recv(c->t->ctx, c->rbuf, RBUF_SIZE);
    if (r <= 0)
      return -1;
    c->rpos = 0;
    c->rlen = (size_t)r;
  }
  return 0;
}

/* Read and drop n bytes (a payload we refuse). */
static int discard(struct conn *c, uint64_t n)
{
  while (n) {
    if (c->rpos == c->rlen) {
      ssize_t r = c->t->recv(c->t->ctx, c->rbuf, RBUF_SIZE);
      if (r <= 0)
        return -1;
      c->rpos = 0;
      c->rlen = (size_t)r;
    }
    size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;
    c->rpos += k;
    n -= k;
  }
  return 0;
}

/* Every message (option reply, reply, chunk) is one call: with send_lock
 * held, replies of concurrent workers never interleave. */
static int send_all(struct conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
  struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
  pthread_mutex_lock(&c->send_lock);
  int r = c->t->sendv(c->t->ctx, iov, blen ? 2 : 1);
  pthread_mutex_unlock(&c->send_lock);
  return r;
}

static uint8_t *data_buf(struct conn *c, size_t n)
{
  if (!c->data || n > c->datacap) {
    free(c->data);
    c->datacap = 0;
    c->data = malloc(n ? n : 1);
    if (!c->data)
      return NULL;
    c->datacap = n;
  }
  return c->data;
}

/* ---- request buffers ----
 *
 * Why a pool: a READ or WRITE of 1 MiB needs a 1 MiB buffer, which malloc
 * takes from a fresh mmap or from an arena it trims after each burst, so
 * every request page-faulted its buffer in again (a fault per 4 KiB, each
 * zeroing a page: about a tenth of the server's CPU time in a 1 MiB write
 * stream, and more or less of it depending on how the arena happened to be
 * trimmed). Buffers of POOL_MIN bytes or more are rounded up to a power of
 * two and kept, at most POOL_BYTES per connection, until it closes. */

static unsigned pool_class(size_t n, size_t *cap)
{
  unsigned k = 0;
  size_t c = POOL_MIN;
  while (c < n) {
    c <<= 1;
    k++;
  }
  *cap = c;
  return k;
}

static void *buf_get(struct conn *c, size_t n)
{
  if (n < POOL_MIN)
    return malloc(n ? n : 1);
  size_t cap;
  unsigned k = pool_class(n, &cap);
  void *p = NULL;
  if (k < POOL_CLASSES) {
    pthread_mutex_lock(&c->pool_lock);
    p = c->pool[k];
    if (p) {
      memcpy(&c->pool[k], p, sizeof(void *));
      c->pool_bytes -= cap;
    }
    pthread_mutex_unlock(&c->pool_lock);
  }
  return p ? p : malloc(cap);
}

static void buf_put(struct conn *c, void *p, size_t n)
{
  if (!p)
    return;
  size_t cap;
  unsigned k = pool_class(n, &cap);
  if (n >= POOL_MIN && k < POOL_CLASSES) {
    pthread_mutex_lock(&c->pool_lock);
    bool keep = c->pool_bytes + cap <= POOL_BYTES;
    if (keep) {
      memcpy(p, &c->pool[k], sizeof(void *));
      c->pool[k] = p;
      c->pool_bytes += cap;
    }
    pthread_mutex_unlock(&c->pool_lock);
    if (keep)
      return;
  }
  free(p);
}

static void pool_free(struct conn *c)
{
  for (unsigned k = 0; k < POOL_CLASSES; k++)
    while (c->pool[k]) {
      void *p = c->pool[k];
      memcpy(&c->pool[k], p, sizeof(void *));
      free(p);
    }
  c->pool_bytes = 0;
}

/* A client-supplied name made safe for a log line or message. */
static void printable(char *out, size_t outlen, const uint8_t *s, size_t n)
{
  size_t j = 0;
  for (size_t i = 0; i < n && j + 4 < outlen; i++)
    out[j++] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
  if (n > 0 && j + 4 >= outlen)
    out[j++] = '.', out[j++] = '.', out[j++] = '.';
  out[j] = 0;
}

/* ---- handshake ---- */

static int opt_reply(struct conn *c, uint32_t opt, uint32_t type, const void *data, size_t len)
{
  uint8_t h[NBD_OPT_REPLY_HEADER_SIZE];
  nbd_put64(h, NBD_REP_MAGIC);
  nbd_put32(h + 8, opt);
  nbd_put32(h + 12, type);
  nbd_put32(h + 16, (uint32_t)len);
  return send_all(c, h, sizeof h, data, len);
}

static int opt_error(struct conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int opt_error(struct conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof msg)
    n = sizeof msg - 1;
  return opt_reply(c, opt, type, msg, (size_t)n);
}

static uint16_t export_flags(const struct conn *c)
{
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;
  if (c->srv->cfg.readonly)
    f |= NBD_FLAG_READ_ONLY;
  else
    f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  if (c->structured)
    f |= NBD_FLAG_SEND_DF;
  return f;
}

/* Transmission starts on exp: forget meta contexts chosen for another one. */
static void enter_transmission(struct conn *c, struct nbd_export *exp)
{
  c->exp = exp;
  if (c->meta_exp != exp)
    c->meta_alloc = false;
}

static int info_reply(struct conn *c, uint32_t opt, uint16_t type, const void *data, size_t len)
{
  uint8_t buf[2 + 4096 + 64];
  if (len > sizeof buf - 2)
    len = sizeof buf - 2;
  nbd_put16(buf, type);
  memcpy(buf + 2, data, len);
  return opt_reply(c, opt, NBD_REP_INFO, buf, 2 + len);
}

/* NBD_OPT_INFO and NBD_OPT_GO. 1: transmission starts; 0: go on; -1: end. */
static int opt_info_go(struct conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  if (len < 6)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
  uint32_t namelen = nbd_get32(d);
  if (namelen > len - 6)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name length beyond the option");
  uint16_t nreq = nbd_get16(d + 4 + namelen);
  if ((uint64_t)4 + namelen + 2 + 2ull * nreq != len)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "option length does not match its contents");
  struct nbd_export *e = nbd_find_export(c->srv, (const char *)d + 4, namelen);
  if (!e) {
    char nm[80];
    printable(nm, sizeof nm, d + 4, namelen);
    return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no export named '%s'", nm);
  }
  if (atomic_load(&c->srv->stopping))
    return opt_error(c, opt, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
  bool want_name = false, want_desc = false;
  for (uint16_t i = 0; i < nreq; i++) {
    uint16_t t = nbd_get16(d + 4 + namelen + 2 + 2 * i);
    want_name |= t == NBD_INFO_NAME;
    want_desc |= t == NBD_INFO_DESCRIPTION;
  }
  uint8_t b[12];
  nbd_put64(b, e->size);
  nbd_put16(b + 8, export_flags(c));
  if (info_reply(c, opt, NBD_INFO_EXPORT, b, 10) < 0)
    return -1;
  /* Any alignment works (the overlay fills partial blocks); the overlay's
   * block size is what avoids read-modify-write. */
  uint32_t pref = e->block_size < CF_NBD_MAX_REQUEST ? e->block_size : CF_NBD_MAX_REQUEST;
  nbd_put32(b, 1);
  nbd_put32(b + 4, pref);
  nbd_put32(b + 8, CF_NBD_MAX_REQUEST);
  if (info_reply(c, opt, NBD_INFO_BLOCK_SIZE, b, 12) < 0)
    return -1;
  if (want_name && info_reply(c, opt, NBD_INFO_NAME, e->name, strlen(e->name)) < 0)
    return -1;
  if (want_desc) {
    char desc[512];
    snprintf(desc, sizeof desc, "cowfork copy-on-write overlay of image %s", e->image);
    if (info_reply(c, opt, NBD_INFO_DESCRIPTION, desc, strlen(desc)) < 0)
      return -1;
  }
  if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0)
    return -1;
  if (opt == NBD_OPT_GO) {
    enter_transmission(c, e);
    return 1;
  }
  return 0;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static int opt_meta(struct conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
  bool set = opt == NBD_OPT_SET_META_CONTEXT;
  if (!c->structured)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "negotiate structured replies first");
  if (len < 8)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
  uint32_t namelen = nbd_get32(d);
  if (namelen > len - 8)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name length beyond the option");
  uint32_t nq = nbd_get32(d + 4 + namelen);
  /* Validate every query before replying anything. */
  bool match = false;
  uint64_t p = 8 + (uint64_t)namelen;
  for (uint32_t i = 0; i < nq; i++) {
    if (len - p < 4)
      return opt_error(c, opt, NBD_REP_ERR_INVALID, "query %u beyond the option", i);
    uint32_t ql = nbd_get32(d + p);
    p += 4;
    if (ql > len - p)
      return opt_error(c, opt, NBD_REP_ERR_INVALID, "query %u length beyond the option", i);
    const char *q = (const char *)d + p;
    size_t al = strlen(META_ALLOC);
    if (ql == al && memcmp(q, META_ALLOC, al) == 0)
      match = true;
    else if (!set && ql == 5 && memcmp(q, "base:", 5) == 0)
      match = true; /* listing a namespace lists all of it */
    p += ql;
  }
  if (p != len)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "option length does not match its contents");
  if (!set && nq == 0)
    match = true; /* an empty list asks for everything */
  struct nbd_export *e = nbd_find_export(c->srv, (const char *)d + 4, namelen);
  if (!e) {
    char nm[80];
    printable(nm, sizeof nm, d + 4, namelen);
    return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no export named '%s'", nm);
  }
  if (set) {
    c->meta_exp = e;
    c->meta_alloc = match;
  }
  if (match) {
    uint8_t b[4 + sizeof META_ALLOC];
    nbd_put32(b, set ? META_ALLOC_ID : 0);
    memcpy(b + 4, META_ALLOC, strlen(META_ALLOC));
    if (opt_reply(c, opt, NBD_REP_META_CONTEXT, b, 4 + strlen(META_ALLOC)) < 0)
      return -1;
  }
  return opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static int opt_list(struct conn *c, uint32_t opt, uint32_t len)
{
  if (len != 0)
    return opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
  for (size_t i = 0; i < c->srv->nexports; i++) {
    const char *n = c->srv->exports[i]->name;
    uint8_t b[4];
    nbd_put32(b, (uint32_t)strlen(n));
    uint8_t h[NBD_OPT_REPLY_HEADER_SIZE + 4];
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, NBD_REP_SERVER);
    nbd_put32(h + 16, (uint32_t)(4 + strlen(n)));
    memcpy(h + NBD_OPT_REPLY_HEADER_SIZE, b, 4);
    if (send_all(c, h, sizeof h, n, strlen(n)) < 0)
      return -1;
  }
  return opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* 0: transmission starts (c->exp set); -1: the connection ends. */
static int handshake(struct conn *c)
{
  uint8_t g[18];
  nbd_put64(g, NBD_MAGIC);
  nbd_put64(g + 8, NBD_OPTS_MAGIC);
  nbd_put16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  if (send_all(c, g, sizeof g, NULL, 0) < 0)
    return -1;
  uint8_t cf[4];
  if (recv_exact(c, cf, 4) < 0)
    return -1;
  uint32_t cflags = nbd_get32(cf);
  if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
    nbd_log(c->srv, "%s: unknown client flags 0x%x, closing", c->peer, cflags);
    return -1;
  }
  c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
  for (;;) {
    uint8_t h[NBD_OPT_HEADER_SIZE];
    if (recv_exact(c, h, sizeof h) < 0)
      return -1;
    if (nbd_get64(h) != NBD_OPTS_MAGIC) {
      nbd_log(c->srv, "%s: bad option magic, closing", c->peer);
      return -1;
    }
    uint32_t opt = nbd_get32(h + 8), len = nbd_get32(h + 12);
    if (len > OPT_MAX) {
      if (len > OPT_DISCARD_MAX || opt == NBD_OPT_EXPORT_NAME || discard(c, len) < 0) {
        nbd_log(c->srv, "%s: option %u of %u bytes, closing", c->peer, opt, len);
        return -1;
      }
      if (opt_error(c, opt, NBD_REP_ERR_TOO_BIG, "option too large") < 0)
        return -1;
      continue;
    }
    uint8_t *d = data_buf(c, len);
    if (!d || recv_exact(c, d, len) < 0)
      return -1;
    int r;
    if (atomic_load(&c->srv->stopping) && opt != NBD_OPT_ABORT && opt != NBD_OPT_EXPORT_NAME) {
      if (opt_error(c, opt, NBD_REP_ERR_SHUTDOWN, "the server is shutting down") < 0)
        return -1;
      continue;
    }
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: {
      struct nbd_export *e = nbd_find_export(c->srv, (const char *)d, len);
      if (!e || atomic_load(&c->srv->stopping)) {
        char nm[80];
        printable(nm, sizeof nm, d, len);
        nbd_log(c->srv, "%s: no export named '%s' (NBD_OPT_EXPORT_NAME), closing", c->peer, nm);
        return -1;
      }
      uint8_t b[10 + 124] = {0};
      nbd_put64(b, e->size);
      nbd_put16(b + 8, export_flags(c));
      if (send_all(c, b, c->no_zeroes ? 10 : sizeof b, NULL, 0) < 0)
        return -1;
      enter_transmission(c, e);
      return 0;
    }
    case NBD_OPT_ABORT:
      opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
      return -1;
    case NBD_OPT_LIST:
      r = opt_list(c, opt, len);
      break;
    case NBD_OPT_STARTTLS:
      r = opt_error(c, opt, NBD_REP_ERR_POLICY, "TLS is not supported by this server");
      break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      r = opt_info_go(c, opt, d, len);
      if (r == 1)
        return 0;
      break;
    case NBD_OPT_STRUCTURED_REPLY:
      if (len != 0) {
        r = opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
        break;
      }
      c->structured = true;
      r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
      break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      r = opt_meta(c, opt, d, len);
      break;
    default:
      r = opt_error(c, opt, NBD_REP_ERR_UNSUP, "option %u is not supported", opt);
      break;
    }
    if (r < 0)
      return -1;
  }
}

/* ---- transmission ---- */

static uint32_t nbd_errno(int e)
{
  switch (e) {
  case EPERM: case EROFS: return NBD_EPERM;
  case ENOMEM: return NBD_ENOMEM;
  case EINVAL: return NBD_EINVAL;
  case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
  case EOVERFLOW: return NBD_EOVERFLOW;
  case ENOTSUP: return NBD_ENOTSUP;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  default: return NBD_EIO;
  }
}

static int reply_ok(struct conn *c, uint64_t handle)
{
  uint8_t h[NBD_SIMPLE_REPLY_SIZE];
  nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
  nbd_put32(h + 4, 0);
  nbd_put64(h + 8, handle);
  return send_all(c, h, sizeof h, NULL, 0);
}

static int reply_error(struct conn *c, uint64_t handle, uint32_t err, const char *msg)
{
  if (!c->structured) {
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(h + 4, err);
    nbd_put64(h + 8, handle);
    return send_all(c, h, sizeof h, NULL, 0);
  }
  size_t ml = strlen(msg);
  if (ml > 200)
    ml = 200;
  uint8_t h[NBD_CHUNK_HEADER_SIZE + 6];
  nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
  nbd_put16(h + 4, NBD_REPLY_FLAG_DONE);
  nbd_put16(h + 6, NBD_REPLY_TYPE_ERROR);
  nbd_put64(h + 8, handle);
  nbd_put32(h + 16, (uint32_t)(6 + ml));
  nbd_put32(h + 20, err);
  nbd_put16(h + 24, (uint16_t)ml);
  return send_all(c, h, sizeof h, msg, ml);
}

/* An operation on the overlay failed: log the library's message, send the
 * client the errno's text (not our paths). */
static int reply_failure(struct conn *c, uint64_t handle, const char *what)
{
  int e = errno;
  char msg[128];
  nbd_log(c->srv, "%s: %s on export %s failed: %s", c->peer, what, c->exp->name, cf_error());
  snprintf(msg, sizeof msg, "%s failed: %s", what, strerror(e));
  return reply_error(c, handle, nbd_errno(e), msg);
}

/* One request travelling from the reader to a worker. */
struct req {
  struct req *next;
  uint16_t flags, type;
  uint32_t len;
  uint32_t mem; /* buffer bytes it holds while in flight (READ, WRITE) */
  uint64_t handle, off;
  uint8_t *payload; /* a WRITE's data, received by the reader */
};

static int do_read(struct conn *c, const struct req *r)
{
  uint8_t *buf = buf_get(c, r->len);
  if (!buf)
    return reply_error(c, r->handle, NBD_ENOMEM, "out of memory");
  if (cf_overlay_pread(c->exp->ov, buf, r->len, r->off) < 0) {
    buf_put(c, buf, r->len);
    return reply_failure(c, r->handle, "read");
  }
  int ret;
  if (c->structured) {
    uint8_t h[NBD_CHUNK_HEADER_SIZE + 8];
    nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(h + 4, NBD_REPLY_FLAG_DONE);
    nbd_put16(h + 6, NBD_REPLY_TYPE_OFFSET_DATA);
    nbd_put64(h + 8, r->handle);
    nbd_put32(h + 16, 8 + r->len);
    nbd_put64(h + 20, r->off);
    ret = send_all(c, h, sizeof h, buf, r->len);
  } else {
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(h + 4, 0);
    nbd_put64(h + 8, r->handle);
    ret = send_all(c, h, sizeof h, buf, r->len);
  }
  buf_put(c, buf, r->len);
  return ret;
}

struct status_ctx {
  uint8_t *d; /* descriptors, 8 bytes each */
  size_t n, cap;
  bool have, req_one, stopped, nomem;
  uint64_t cur_len;
  uint32_t cur_flags;
};

static int status_emit(struct status_ctx *s)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    uint8_t *d = realloc(s->d, cap * 8);
    if (!d) {
      s->nomem = true;
      return -1;
    }
    s->d = d;
    s->cap = cap;
  }
  nbd_put32(s->d + 8 * s->n, (uint32_t)s->cur_len);
  nbd_put32(s->d + 8 * s->n + 4, s->cur_flags);
  s->n++;
  return 0;
}

static int status_cb(void *ctx, uint64_t n, unsigned flags)
{
  struct status_ctx *s = ctx;
  uint32_t f = (flags & CF_STATUS_HOLE ? NBD_STATE_HOLE : 0) | (flags & CF_STATUS_ZERO ? NBD_STATE_ZERO : 0);
  if (n == 0)
    return 0;
  if (s->have && f == s->cur_flags) {
    s->cur_len += n; /* the request is < 4 GiB, so this fits 32 bits */
    return 0;
  }
  if (s->have) {
    if (status_emit(s) < 0 || s->req_one || s->n >= MAX_EXTENTS) {
      s->have = false;
      s->stopped = true;
      return 1;
    }
  }
  s->have = true;
  s->cur_len = n;
  s->cur_flags = f;
  return 0;
}

static int do_block_status(struct conn *c, const struct req *q)
{
  struct status_ctx s = {.req_one = q->flags & NBD_CMD_FLAG_REQ_ONE};
  int r = cf_overlay_block_status(c->exp->ov, q->len, q->off, status_cb, &s);
  if ((r < 0 && !s.stopped) || s.nomem || (s.have && status_emit(&s) < 0)) {
    free(s.d);
    if (s.nomem)
      errno = ENOMEM;
    return reply_failure(c, q->handle, "block status");
  }
  if (s.n == 0) { /* cannot happen for len > 0; never send an empty chunk */
    free(s.d);
    return reply_error(c, q->handle, NBD_EIO, "no block status");
  }
  uint8_t h[NBD_CHUNK_HEADER_SIZE + 4];
  nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
  nbd_put16(h + 4, NBD_REPLY_FLAG_DONE);
  nbd_put16(h + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
  nbd_put64(h + 8, q->handle);
  nbd_put32(h + 16, (uint32_t)(4 + 8 * s.n));
  nbd_put32(h + 20, META_ALLOC_ID);
  r = send_all(c, h, sizeof h, s.d, 8 * s.n);
  free(s.d);
  return r;
}

/* Execute one valid request and send its reply (a worker). -1: the reply
 * could not be sent, the connection is dead. */
static int execute(struct conn *c, struct req *q)
{
  struct nbd_export *e = c->exp;
  unsigned fua = q->flags & NBD_CMD_FLAG_FUA ? CF_OVERLAY_FUA : 0;
  int r;
  const char *what;
  switch (q->type) {
  case NBD_CMD_READ:
    return do_read(c, q);
  case NBD_CMD_BLOCK_STATUS:
    return do_block_status(c, q);
  case NBD_CMD_FLUSH:
    what = "flush";
    r = cf_overlay_flush(e->ov);
    break;
  case NBD_CMD_WRITE:
    what = "write";
    /* The change count goes up before and after, so a save that reads it
     * in between knows a change may have escaped it (server.c). */
    atomic_fetch_add(&e->changes, 1);
    r = cf_overlay_pwrite(e->ov, q->payload, q->len, q->off, fua);
    atomic_fetch_add(&e->changes, 1);
    /* Back to the pool before the reply: the client's next write, sent
     * when it has the reply, finds it there. */
    buf_put(c, q->payload, q->len);
    q->payload = NULL;
    break;
  case NBD_CMD_TRIM:
    what = "trim";
    atomic_fetch_add(&e->changes, 1);
    r = cf_overlay_trim(e->ov, q->len, q->off, fua);
    atomic_fetch_add(&e->changes, 1);
    break;
  default: /* NBD_CMD_WRITE_ZEROES */
    /* The overlay zeroes by marking blocks Zero: always fast (FAST_ZERO is
     * served), and it stores nothing whether or not NO_HOLE is set. */
    what = "write zeroes";
    atomic_fetch_add(&e->changes, 1);
    r = cf_overlay_zero(e->ov, q->len, q->off, fua);
    atomic_fetch_add(&e->changes, 1);
    break;
  }
  return r < 0 ? reply_failure(c, q->handle, what) : reply_ok(c, q->handle);
}

static void *worker(void *arg)
{
  struct conn *c = arg;
  pthread_mutex_lock(&c->qlock);
  for (;;) {
    while (!c->head && !c->closing)
      pthread_cond_wait(&c->qwork, &c->qlock);
    struct req *q = c->head;
    if (!q)
      break;
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->idle--;
    pthread_mutex_unlock(&c->qlock);
    if (!atomic_load(&c->dead) && execute(c, q) < 0)
      atomic_store(&c->dead, true);
    pthread_mutex_lock(&c->qlock);
    c->idle++;
    c->nqueued--;
    c->inflight -= q->mem;
    pthread_cond_broadcast(&c->qspace);
    pthread_mutex_unlock(&c->qlock);
    buf_put(c, q->payload, q->len);
    free(q);
    pthread_mutex_lock(&c->qlock);
  }
  pthread_mutex_unlock(&c->qlock);
  return NULL;
}

/* Hand q to the workers, starting one if none is idle (up to MAX_WORKERS).
 * Waits while the connection has too much in flight. */
static void enqueue(struct conn *c, struct req *q)
{
  pthread_mutex_lock(&c->qlock);
  while (c->nqueued > 0 && (c->nqueued >= MAX_QUEUED || c->inflight + q->mem > MAX_INFLIGHT))
    pthread_cond_wait(&c->qspace, &c->qlock);
  q->next = NULL;
  if (c->tail)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  c->nqueued++;
  c->inflight += q->mem;
  if (c->idle == 0 && c->nworkers < MAX_WORKERS) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 << 10);
    if (pthread_create(&c->workers[c->nworkers], &attr, worker, c) == 0) {
      c->nworkers++;
      c->idle++;
    }
    pthread_attr_destroy(&attr);
  }
  bool none = c->nworkers == 0;
  pthread_cond_signal(&c->qwork);
  pthread_mutex_unlock(&c->qlock);
  if (none) { /* no thread could be started: run it here */
    pthread_mutex_lock(&c->qlock);
    c->head = c->tail = NULL;
    c->nqueued = 0;
    c->inflight = 0;
    pthread_mutex_unlock(&c->qlock);
    if (execute(c, q) < 0)
      atomic_store(&c->dead, true);
    buf_put(c, q->payload, q->len);
    free(q);
  }
}

/* Read and check one request; queue it, or answer an invalid one at once.
 * 0: next one; 1: the client disconnected (DISC); -1: close. */
static int request(struct conn *c, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off,
                   uint32_t len)
{
  struct nbd_export *e = c->exp;
  bool writes = type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
  uint16_t allowed = NBD_CMD_FLAG_FUA;
  const char *bad = NULL;
  uint32_t err = NBD_EINVAL;
  switch (type) {
  case NBD_CMD_READ:
    if (c->structured)
      allowed |= NBD_CMD_FLAG_DF;
    break;
  case NBD_CMD_WRITE: case NBD_CMD_FLUSH: case NBD_CMD_TRIM: break;
  case NBD_CMD_WRITE_ZEROES: allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO; break;
  case NBD_CMD_BLOCK_STATUS: allowed |= NBD_CMD_FLAG_REQ_ONE; break;
  case NBD_CMD_DISC: return 1;
  default: bad = "unknown command"; break;
  }
  if (type == NBD_CMD_WRITE && len > CF_NBD_ABSURD_WRITE) {
    nbd_log(c->srv, "%s: write of %u bytes, closing", c->peer, len);
    return -1;
  }
  bool ranged = type != NBD_CMD_FLUSH;
  if (bad)
    ;
  else if (flags & ~allowed)
    bad = "unsupported command flags";
  else if (writes && c->srv->cfg.readonly)
    bad = "the export is read-only", err = NBD_EPERM;
  else if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > CF_NBD_MAX_REQUEST)
    bad = "request larger than the maximum (32 MiB)";
  else if (ranged && len == 0)
    bad = "zero-length request";
  else if (ranged && (off > e->size || len > e->size - off))
    bad = "request outside the export";
  else if (type == NBD_CMD_BLOCK_STATUS && !c->meta_alloc)
    bad = "no metadata context was negotiated";
  if (bad) {
    if (type == NBD_CMD_WRITE && discard(c, len) < 0)
      return -1;
    return reply_error(c, handle, err, bad) < 0 ? -1 : 0;
  }
  struct req *q = calloc(1, sizeof *q);
  if (!q) {
    if (type == NBD_CMD_WRITE && discard(c, len) < 0)
      return -1;
    return reply_error(c, handle, NBD_ENOMEM, "out of memory") < 0 ? -1 : 0;
  }
  *q = (struct req){.flags = flags, .type = type, .len = len, .handle = handle, .off = off};
  if (type == NBD_CMD_WRITE) {
    q->payload = buf_get(c, len);
    if (!q->payload) {
      free(q);
      if (discard(c, len) < 0)
        return -1;
      return reply_error(c, handle, NBD_ENOMEM, "out of memory") < 0 ? -1 : 0;
    }
    if (recv_exact(c, q->payload, len) < 0) {
      nbd_log(c->srv, "%s: connection lost in the middle of a write, closing", c->peer);
      buf_put(c, q->payload, len);
      free(q);
      return -1;
    }
  }
  q->mem = type == NBD_CMD_READ || type == NBD_CMD_WRITE ? len : 0;
  /* A small request while nothing else is in flight runs right here: a
   * hand-off to a worker would cost more than the request. */
  pthread_mutex_lock(&c->qlock);
  bool here = q->mem <= INLINE_MAX && c->nqueued == 0;
  pthread_mutex_unlock(&c->qlock);
  if (here) {
    int r = execute(c, q);
    buf_put(c, q->payload, q->len);
    free(q);
    return r < 0 ? -1 : 0;
  }
  enqueue(c, q);
  return 0;
}

/* The reader: requests in, to the workers; at the end (the client left,
 * broke the protocol, or the server stops reading) every request already
 * queued is still executed and answered before the connection closes. */
static void transmission(struct conn *c)
{
  for (;;) {
    uint8_t h[NBD_REQUEST_SIZE];
    if (atomic_load(&c->dead) || recv_exact(c, h, sizeof h) < 0)
      break; /* the client went away (or the server stops reading) */
    if (nbd_get32(h) != NBD_REQUEST_MAGIC) {
      nbd_log(c->srv, "%s: bad request magic 0x%08x, closing", c->peer, nbd_get32(h));
      break;
    }
    uint16_t flags = nbd_get16(h + 4), type = nbd_get16(h + 6);
    if (request(c, flags, type, nbd_get64(h + 8), nbd_get64(h + 16), nbd_get32(h + 24)) != 0)
      break;
  }
  pthread_mutex_lock(&c->qlock);
  c->closing = true;
  pthread_cond_broadcast(&c->qwork);
  pthread_mutex_unlock(&c->qlock);
  for (unsigned i = 0; i < c->nworkers; i++)
    pthread_join(c->workers[i], NULL);
}

void cf_nbd_serve(struct cf_nbd_server *s, const struct cf_nbd_transport *t, const char *peer)
{
  struct conn c = {.srv = s, .t = t, .peer = peer ? peer : "client"};
  pthread_mutex_init(&c.qlock, NULL);
  pthread_mutex_init(&c.send_lock, NULL);
  pthread_cond_init(&c.qwork, NULL);
  pthread_cond_init(&c.qspace, NULL);
  pthread_mutex_init(&c.pool_lock, NULL);
  c.rbuf = malloc(RBUF_SIZE);
  if (c.rbuf && handshake(&c) == 0) {
    if (t->transmission)
      t->transmission(t->ctx);
    free(c.data); /* option payloads only */
    c.data = NULL;
    c.datacap = 0;
    transmission(&c);
  }
  free(c.rbuf);
  free(c.data);
  pool_free(&c);
  pthread_mutex_destroy(&c.pool_lock);
  pthread_cond_destroy(&c.qspace);
  pthread_cond_destroy(&c.qwork);
  pthread_mutex_destroy(&c.send_lock);
  pthread_mutex_destroy(&c.qlock);
}
