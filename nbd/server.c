/* The NBD server: exports, listening sockets, one thread per connection,
 * the control socket, saving, and the orderly stop.
 *
 * Threads. cf_nbd_server_run polls the listening sockets, the control socket
 * and a self-pipe. Each accepted client gets a detached thread running
 * cf_nbd_serve (conn.c); each control client a detached thread answering
 * its request lines. Every such thread has a slot in s->conns while it runs;
 * s->lock guards that list and the counts, and s->idle is signalled as each
 * thread leaves, so the stop can wait for all of them.
 *
 * Exports. The export table is fixed before run starts and read without a
 * lock afterwards. Each export has one overlay shared by every connection
 * (the overlay is thread-safe); e->save_lock serializes saves of it and
 * guards e->saved, the images this export was saved as.
 *
 * Stop (cf_nbd_server_stop, async-signal-safe: a flag and a byte in the
 * pipe). run closes the listening sockets, shuts down the reading side of
 * every connection, so each finishes the requests it has already read
 * (their replies still go out) and then sees end of stream, waits (after
 * 10 s it also shuts down the writing side of connections whose client
 * stopped reading replies), then saves every export that has a save name. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/image.h"
#include "internal.h"
#include "nbd/private.h"

#define STOP_GRACE_SECONDS 10
#define CONTROL_LINE_MAX 1024
#define SNDBUF_BYTES (4 << 20) /* a Unix connection's send buffer (see accept_one) */

struct nbd_conn_slot {
  struct nbd_conn_slot *prev, *next;
  struct cf_nbd_server *srv;
  int fd;
  bool control;
  char peer[48];
};

void nbd_log(struct cf_nbd_server *s, const char *fmt, ...)
{
  if (!s->cfg.log)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  s->cfg.log(s->cfg.log_ctx, line);
}

struct cf_nbd_server *cf_nbd_server_new(const struct cf_nbd_config *cfg)
{
  if (!cfg || !cfg->store)
    return cf_fail_null(EINVAL, "a store is required");
  struct cf_nbd_server *s = calloc(1, sizeof *s);
  if (!s)
    return cf_fail_null(ENOMEM, "out of memory");
  s->cfg = *cfg;
  if (!s->cfg.max_connections)
    s->cfg.max_connections = CF_NBD_MAX_CONNECTIONS_DEFAULT;
  s->control_fd = -1;
  if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
    int e = errno;
    free(s);
    return cf_fail_null(e, "pipe: %s", strerror(e));
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->idle, NULL);
  return s;
}

static void export_free(struct nbd_export *e)
{
  if (!e)
    return;
  cf_overlay_free(e->ov);
  for (size_t i = 0; i < e->nsaved; i++)
    free(e->saved[i].name);
  free(e->saved);
  pthread_mutex_destroy(&e->save_lock);
  free(e->name);
  free(e->image);
  free(e->save_as);
  free(e);
}

static void close_listeners(struct cf_nbd_server *s)
{
  for (size_t i = 0; i < s->nlisten; i++) {
    close(s->listen_fd[i]);
    if (s->listen_path[i])
      unlink(s->listen_path[i]);
    free(s->listen_path[i]);
  }
  s->nlisten = 0;
  if (s->control_fd >= 0) {
    close(s->control_fd);
    unlink(s->control_path);
  }
  s->control_fd = -1;
  free(s->control_path);
  s->control_path = NULL;
}

void cf_nbd_server_free(struct cf_nbd_server *s)
{
  if (!s)
    return;
  close_listeners(s);
  for (size_t i = 0; i < s->nexports; i++)
    export_free(s->exports[i]);
  free(s->exports);
  close(s->wake[0]);
  close(s->wake[1]);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->idle);
  free(s);
}

size_t cf_nbd_server_nexports(const struct cf_nbd_server *s) { return s->nexports; }

struct nbd_export *nbd_find_export(struct cf_nbd_server *s, const char *name, size_t len)
{
  if (len == 0)
    return s->nexports ? s->exports[0] : NULL;
  for (size_t i = 0; i < s->nexports; i++)
    if (strlen(s->exports[i]->name) == len && memcmp(s->exports[i]->name, name, len) == 0)
      return s->exports[i];
  return NULL;
}

/* Export names: 1-4096 printable ASCII characters other than space, '=' and
 * ':' (so that NAME=IMAGE[:SAVE_AS] and control lines stay unambiguous). */
static int check_export_name(const char *name)
{
  size_t n = strlen(name);
  if (n == 0 || n > 4096)
    return -1;
  for (const char *p = name; *p; p++)
    if (*p <= ' ' || *p >= 0x7f || *p == '=' || *p == ':')
      return -1;
  return 0;
}

int cf_nbd_server_add_overlay(struct cf_nbd_server *s, const char *name, struct cf_overlay *o,
                              const char *save_as)
{
  if (check_export_name(name) < 0)
    return cf_fail(EINVAL, "bad export name '%s': use 1-4096 printable characters, no space, '=' or ':'", name);
  for (size_t i = 0; i < s->nexports; i++) {
    if (strcmp(s->exports[i]->name, name) == 0)
      return cf_fail(EEXIST, "export %s is given twice", name);
    if (save_as && s->exports[i]->save_as && strcmp(s->exports[i]->save_as, save_as) == 0)
      return cf_fail(EEXIST, "exports %s and %s would both be saved as %s", s->exports[i]->name, name, save_as);
  }
  if (save_as) {
    if (cf_store_check_name(save_as) < 0)
      return -1;
    struct cf_header *h = cf_store_get_header(s->cfg.store, save_as);
    if (h) {
      cf_header_free(h);
      return cf_fail(EEXIST, "export %s: image %s already exists (choose another name to save as)", name, save_as);
    }
    if (cf_errno() != ENOENT)
      return -1;
  }
  struct nbd_export *e = calloc(1, sizeof *e);
  struct nbd_export **v = realloc(s->exports, (s->nexports + 1) * sizeof *v);
  if (v)
    s->exports = v;
  if (!e || !v) {
    free(e);
    return cf_fail(ENOMEM, "out of memory");
  }
  e->name = strdup(name);
  e->image = strdup("");
  e->save_as = save_as ? strdup(save_as) : NULL;
  if (!e->name || !e->image || (save_as && !e->save_as)) {
    free(e->name);
    free(e->image);
    free(e->save_as);
    free(e);
    return cf_fail(ENOMEM, "out of memory");
  }
  pthread_mutex_init(&e->save_lock, NULL);
  e->ov = o;
  e->size = cf_overlay_size(o);
  e->block_size = cf_overlay_block_size(o);
  s->exports[s->nexports++] = e;
  return 0;
}

int cf_nbd_server_add_export(struct cf_nbd_server *s, const char *name, const char *image,
                             const char *save_as)
{
  if (check_export_name(name) < 0)
    return cf_fail(EINVAL, "bad export name '%s': use 1-4096 printable characters, no space, '=' or ':'", name);
  struct cf_image *img = cf_image_open(s->cfg.store, image);
  if (!img)
    return -1;
  if (cf_image_check(img) < 0) { /* refused before anyone connects, not at the first read */
    cf_image_close(img);
    return -1;
  }
  struct cf_overlay *o = cf_overlay_new(img, s->cfg.cache_dir); /* takes img over */
  if (!o)
    return -1;
  if (cf_nbd_server_add_overlay(s, name, o, save_as) < 0) {
    int e = errno;
    cf_overlay_free(o);
    errno = e;
    return -1;
  }
  struct nbd_export *e = s->exports[s->nexports - 1];
  char *dup = strdup(image);
  if (dup) {
    free(e->image);
    e->image = dup;
  }
  return 0;
}

/* ---- sockets ---- */

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path)
    return cf_fail(ENAMETOOLONG, "%s: socket path too long (max %zu bytes)", path, sizeof sa->sun_path - 1);
  strcpy(sa->sun_path, path);
  return 0;
}

/* Bind under PATH.PID.tmp, set its mode, listen, rename to PATH: the path
 * appears only once it accepts, and with its final mode. The mode is set with
 * chmod on the bound path, not with umask (process-wide, so racy with other
 * threads): before listen nobody can connect whatever the umask left, so no
 * client ever connects through wider permissions than asked. A socket file
 * nobody listens on is replaced. */
static int listen_unix(const char *path, mode_t mode)
{
  struct sockaddr_un sa, tmp;
  char tpath[sizeof sa.sun_path + 32];
  if (unix_addr(path, &sa) < 0)
    return -1;
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return cf_fail(EEXIST, "%s exists and is not a socket", path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
      close(probe);
      return cf_fail(EADDRINUSE, "%s: another server is listening there", path);
    }
    if (probe >= 0)
      close(probe);
    unlink(path);
  }
  snprintf(tpath, sizeof tpath, "%s.%d.tmp", path, (int)getpid());
  if (unix_addr(tpath, &tmp) < 0)
    return -1;
  unlink(tpath);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cf_fail(errno, "socket: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *)&tmp, sizeof tmp) < 0 || chmod(tpath, mode) < 0 ||
      listen(fd, 1024) < 0 || rename(tpath, path) < 0) {
    int e = errno;
    close(fd);
    unlink(tpath);
    return cf_fail(e, "%s: %s", path, strerror(e));
  }
  return fd;
}

int cf_nbd_server_listen_unix(struct cf_nbd_server *s, const char *path)
{
  if (s->nlisten == NBD_MAX_LISTEN)
    return cf_fail(EMFILE, "too many listening sockets");
  char *p = strdup(path);
  if (!p)
    return cf_fail(ENOMEM, "out of memory");
  int fd = listen_unix(path, s->cfg.socket_mode ? s->cfg.socket_mode & 0777 : CF_NBD_SOCKET_MODE_DEFAULT);
  if (fd < 0) {
    free(p);
    return -1;
  }
  s->listen_fd[s->nlisten] = fd;
  s->listen_path[s->nlisten++] = p;
  return 0;
}

int cf_nbd_server_control_unix(struct cf_nbd_server *s, const char *path)
{
  if (s->control_fd >= 0)
    return cf_fail(EEXIST, "a control socket is already open");
  char *p = strdup(path);
  if (!p)
    return cf_fail(ENOMEM, "out of memory");
  int fd = listen_unix(path, 0600); /* only our user may save or list exports */
  if (fd < 0) {
    free(p);
    return -1;
  }
  s->control_fd = fd;
  s->control_path = p;
  return 0;
}

int cf_nbd_server_listen_tcp(struct cf_nbd_server *s, const char *host, const char *port)
{
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *res;
  int r = getaddrinfo(host && *host ? host : NULL, port, &hints, &res);
  if (r != 0)
    return cf_fail(EINVAL, "%s:%s: %s", host ? host : "", port, gai_strerror(r));
  size_t bound = 0;
  int err = 0;
  for (struct addrinfo *a = res; a && s->nlisten < NBD_MAX_LISTEN; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
      err = errno;
      close(fd);
      continue;
    }
    s->listen_fd[s->nlisten] = fd;
    s->listen_path[s->nlisten++] = NULL;
    bound++;
  }
  freeaddrinfo(res);
  if (!bound)
    return cf_fail(err ? err : EADDRNOTAVAIL, "%s:%s: %s", host ? host : "", port, strerror(err ? err : EADDRNOTAVAIL));
  return 0;
}

/* ---- the socket transport ---- */

static ssize_t sock_recv(void *ctx, void *buf, size_t n)
{
  int fd = *(int *)ctx;
  for (;;) {
    ssize_t r = recv(fd, buf, n, 0);
    if (r >= 0 || errno != EINTR)
      return r;
  }
}

static int sock_sendv(void *ctx, const struct iovec *iov_in, int n)
{
  int fd = *(int *)ctx;
  struct iovec iov[4];
  if (n > 4)
    n = 4;
  memcpy(iov, iov_in, (size_t)n * sizeof *iov);
  struct iovec *v = iov;
  while (n > 0) {
    struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
    ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    while (n > 0 && (size_t)r >= v->iov_len) {
      r -= (ssize_t)v->iov_len;
      v++;
      n--;
    }
    if (n > 0) {
      v->iov_base = (char *)v->iov_base + r;
      v->iov_len -= (size_t)r;
    }
  }
  return 0;
}

/* ---- saving ---- */

static struct nbd_saved *find_saved(struct nbd_export *e, const char *name)
{
  for (size_t i = 0; i < e->nsaved; i++)
    if (strcmp(e->saved[i].name, name) == 0)
      return &e->saved[i];
  return NULL;
}

/* Replace image target (an earlier save of this export) with the overlay's
 * current state, so that at every moment one complete copy exists under
 * target or under the temporary name: save as tmp, remove target, store
 * tmp's header as target, remove tmp. */
static int replace_save(struct cf_nbd_server *s, struct nbd_export *e, const char *target)
{
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%.180s.saving-%d", target, (int)getpid());
  if (cf_overlay_save(e->ov, s->cfg.store, tmp) < 0)
    return -1;
  struct cf_header *h = cf_store_get_header(s->cfg.store, tmp);
  if (!h)
    return -1;
  int r = cf_store_remove(s->cfg.store, target);
  if (r == 0)
    r = cf_store_put_header(s->cfg.store, target, h);
  cf_header_free(h);
  if (r < 0)
    return cf_fail(cf_errno(), "%s (the saved export is image %s)", cf_error(), tmp);
  if (cf_store_remove(s->cfg.store, tmp) < 0)
    nbd_log(s, "saving %s: could not remove temporary image %s: %s", target, tmp, cf_error());
  return 0;
}

int cf_nbd_server_save(struct cf_nbd_server *s, const char *name, const char *as, char *info,
                       size_t infolen)
{
  struct nbd_export *e = name ? nbd_find_export(s, name, strlen(name)) : NULL;
  if (!e || !*name)
    return cf_fail(ENOENT, "no export named '%s'", name ? name : "");
  const char *target = as ? as : e->save_as;
  if (!target)
    return cf_fail(EINVAL, "export %s has no name to save as (give one)", e->name);
  if (cf_store_check_name(target) < 0)
    return -1;
  pthread_mutex_lock(&e->save_lock);
  /* Read the change count first: a change racing with this save bumps it
   * again when it completes, so the next save is not wrongly skipped. */
  uint64_t changes = atomic_load(&e->changes);
  struct nbd_saved *prev = find_saved(e, target);
  int r;
  bool skipped = false;
  struct cf_header *h = cf_store_get_header(s->cfg.store, target);
  if (h) {
    cf_header_free(h);
    if (!prev)
      r = cf_fail(EEXIST, "image %s already exists", target);
    else if (prev->changes == changes)
      r = 0, skipped = true;
    else
      r = replace_save(s, e, target);
  } else if (cf_errno() != ENOENT) {
    r = -1;
  } else {
    r = cf_overlay_save(e->ov, s->cfg.store, target);
  }
  if (r == 0 && !skipped) {
    if (prev)
      prev->changes = changes;
    else {
      struct nbd_saved *v = realloc(e->saved, (e->nsaved + 1) * sizeof *v);
      char *dup = strdup(target);
      if (v)
        e->saved = v;
      if (v && dup)
        e->saved[e->nsaved++] = (struct nbd_saved){dup, changes};
      else
        free(dup); /* only costs a later save of it its EEXIST check */
    }
  }
  pthread_mutex_unlock(&e->save_lock);
  if (r < 0)
    return cf_fail(cf_errno(), "saving export %s as %s: %s", e->name, target, cf_error());
  if (info) {
    struct cf_overlay_stats st;
    cf_overlay_stats(e->ov, &st);
    if (skipped)
      snprintf(info, infolen, "export %s unchanged since it was saved as %s", e->name, target);
    else
      snprintf(info, infolen, "saved export %s as %s (%llu dirty, %llu zero blocks of %u bytes)", e->name,
               target, (unsigned long long)st.dirty_blocks, (unsigned long long)st.zero_blocks, e->block_size);
  }
  return 0;
}

/* ---- connection and control threads ---- */

static void slot_leave(struct nbd_conn_slot *c)
{
  struct cf_nbd_server *s = c->srv;
  pthread_mutex_lock(&s->lock);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->control)
    s->ncontrol--;
  else
    s->nconns--;
  close(c->fd); /* under the lock: the stop never shuts down a reused fd */
  pthread_cond_broadcast(&s->idle);
  pthread_mutex_unlock(&s->lock);
  free(c);
}

static void set_recv_timeout(int fd, int seconds)
{
  struct timeval tv = {.tv_sec = seconds};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Clients may be idle as long as they like once connected to an export;
 * during the handshake a silent peer only holds a thread, so it gets
 * CF_NBD_HANDSHAKE_SECONDS between messages. */
static void sock_transmission(void *ctx) { set_recv_timeout(*(int *)ctx, 0); }

static void *conn_thread(void *arg)
{
  struct nbd_conn_slot *c = arg;
  struct cf_nbd_transport t = {.recv = sock_recv, .sendv = sock_sendv, .transmission = sock_transmission,
                               .ctx = &c->fd};
  set_recv_timeout(c->fd, CF_NBD_HANDSHAKE_SECONDS);
  cf_nbd_serve(c->srv, &t, c->peer);
  slot_leave(c);
  return NULL;
}

static int ctl_send(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl_send(int fd, const char *fmt, ...)
{
  char line[CONTROL_LINE_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1;
  if ((size_t)n > sizeof line - 2)
    n = sizeof line - 2;
  line[n++] = '\n';
  struct iovec iov = {line, (size_t)n};
  int fdv = fd;
  return sock_sendv(&fdv, &iov, 1);
}

static void control_request(struct cf_nbd_server *s, int fd, char *line)
{
  char *w[4] = {0};
  int n = 0;
  for (char *save, *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
    if (n == 4) {
      ctl_send(fd, "error too many words");
      return;
    }
    w[n++] = tok;
  }
  if (n == 0)
    return;
  if (strcmp(w[0], "save") == 0 && (n == 2 || n == 3)) {
    char info[512];
    if (cf_nbd_server_save(s, w[1], n == 3 ? w[2] : NULL, info, sizeof info) < 0)
      ctl_send(fd, "error %s", cf_error());
    else {
      nbd_log(s, "%s", info);
      ctl_send(fd, "ok %s", info);
    }
  } else if (strcmp(w[0], "list") == 0 && n == 1) {
    for (size_t i = 0; i < s->nexports; i++) {
      struct nbd_export *e = s->exports[i];
      struct cf_overlay_stats st;
      cf_overlay_stats(e->ov, &st);
      ctl_send(fd, "export %s image=%s save_as=%s size=%llu block_size=%u dirty=%llu zero=%llu", e->name,
               e->image, e->save_as ? e->save_as : "-", (unsigned long long)e->size, e->block_size,
               (unsigned long long)st.dirty_blocks, (unsigned long long)st.zero_blocks);
    }
    ctl_send(fd, "ok %zu exports", s->nexports);
  } else {
    ctl_send(fd, "error unknown request (expected 'save NAME [IMAGE]' or 'list')");
  }
}

static void *control_thread(void *arg)
{
  struct nbd_conn_slot *c = arg;
  char buf[CONTROL_LINE_MAX + 1];
  size_t len = 0;
  for (;;) {
    ssize_t r = sock_recv(&c->fd, buf + len, CONTROL_LINE_MAX - len);
    if (r <= 0)
      break;
    len += (size_t)r;
    char *nl;
    while ((nl = memchr(buf, '\n', len))) {
      *nl = 0;
      control_request(c->srv, c->fd, buf);
      len -= (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, len);
    }
    if (len == CONTROL_LINE_MAX) {
      ctl_send(c->fd, "error line too long");
      break;
    }
  }
  slot_leave(c);
  return NULL;
}

static void accept_one(struct cf_nbd_server *s, int lfd, bool control)
{
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
      nbd_log(s, "accept: %s", strerror(errno));
    if (errno == EMFILE || errno == ENFILE)
      usleep(100 * 1000); /* do not spin on a full fd table */
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on Unix sockets */
  /* A Unix socket's default send buffer (net.core.wmem_default, 208 KiB)
   * holds a fifth of a 1 MiB read reply: the worker sending it blocked and
   * was woken about five times per reply (five times the context switches
   * of a 4 MiB buffer, measured). TCP keeps its own autotuning. */
  int dom = 0, sndbuf = SNDBUF_BYTES;
  socklen_t dl = sizeof dom;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0 && dom == AF_UNIX)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf); /* capped at net.core.wmem_max */
  struct nbd_conn_slot *c = calloc(1, sizeof *c);
  pthread_mutex_lock(&s->lock);
  bool full = !control && s->nconns >= s->cfg.max_connections;
  if (!c || full) {
    pthread_mutex_unlock(&s->lock);
    if (full)
      nbd_log(s, "refusing a connection: %u connections already", s->cfg.max_connections);
    free(c);
    close(fd);
    return;
  }
  c->srv = s;
  c->fd = fd;
  c->control = control;
  snprintf(c->peer, sizeof c->peer, "%s %llu", control ? "control" : "connection",
           (unsigned long long)atomic_fetch_add(&s->next_id, 1) + 1);
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  if (control)
    s->ncontrol++;
  else
    s->nconns++;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_t th;
  int r = pthread_create(&th, &attr, control ? control_thread : conn_thread, c);
  pthread_attr_destroy(&attr);
  pthread_mutex_unlock(&s->lock);
  if (r != 0) {
    nbd_log(s, "cannot start a thread for %s: %s", c->peer, strerror(r));
    slot_leave(c);
  }
}

static void shutdown_all(struct cf_nbd_server *s, int how)
{
  for (struct nbd_conn_slot *c = s->conns; c; c = c->next)
    shutdown(c->fd, how);
}

void cf_nbd_server_stop(struct cf_nbd_server *s)
{
  int e = errno;
  atomic_store(&s->stopping, true);
  ssize_t r = write(s->wake[1], "x", 1);
  (void)r;
  errno = e;
}

int cf_nbd_server_run(struct cf_nbd_server *s)
{
  struct pollfd p[NBD_MAX_LISTEN + 2];
  while (!atomic_load(&s->stopping)) {
    nfds_t n = 0;
    for (size_t i = 0; i < s->nlisten; i++)
      p[n++] = (struct pollfd){.fd = s->listen_fd[i], .events = POLLIN};
    if (s->control_fd >= 0)
      p[n++] = (struct pollfd){.fd = s->control_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
    if (poll(p, n, -1) < 0) {
      if (errno == EINTR)
        continue;
      nbd_log(s, "poll: %s", strerror(errno));
      break;
    }
    for (nfds_t i = 0; i + 1 < n; i++)
      if (p[i].revents & POLLIN)
        accept_one(s, p[i].fd, p[i].fd == s->control_fd);
  }
  atomic_store(&s->stopping, true);
  close_listeners(s);

  /* Let every connection finish what it is executing, then end. */
  pthread_mutex_lock(&s->lock);
  shutdown_all(s, SHUT_RD);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += STOP_GRACE_SECONDS;
  while (s->nconns + s->ncontrol > 0)
    if (pthread_cond_timedwait(&s->idle, &s->lock, &deadline) == ETIMEDOUT) {
      nbd_log(s, "%u connections still busy after %d s: closing them", s->nconns + s->ncontrol,
              STOP_GRACE_SECONDS);
      shutdown_all(s, SHUT_RDWR);
      while (s->nconns + s->ncontrol > 0)
        pthread_cond_wait(&s->idle, &s->lock);
    }
  pthread_mutex_unlock(&s->lock);

  int ret = 0;
  for (size_t i = 0; i < s->nexports; i++) {
    struct nbd_export *e = s->exports[i];
    if (!e->save_as)
      continue;
    char info[512];
    if (cf_nbd_server_save(s, e->name, NULL, info, sizeof info) < 0) {
      nbd_log(s, "%s", cf_error());
      ret = -1;
    } else {
      nbd_log(s, "%s", info);
    }
  }
  return ret;
}

/* ---- control client ---- */

int cf_nbd_control_request(const char *path, const char *request, char *reply, size_t len)
{
  struct sockaddr_un sa;
  if (unix_addr(path, &sa) < 0)
    return -1;
  int fd CLEANUP_CLOSE = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cf_fail(errno, "socket: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    return cf_fail(errno, "%s: %s (is the server running with this control socket?)", path, strerror(errno));
  char line[CONTROL_LINE_MAX + 2];
  int n = snprintf(line, sizeof line, "%s\n", request);
  if (n < 0 || (size_t)n >= sizeof line || strchr(request, '\n'))
    return cf_fail(EINVAL, "bad control request");
  struct iovec iov = {line, (size_t)n};
  if (sock_sendv(&fd, &iov, 1) < 0)
    return cf_fail(errno, "%s: %s", path, strerror(errno));
  /* Reply: any lines, then one starting with "ok" or "error". */
  size_t got = 0, start = 0;
  char buf[65536];
  for (;;) {
    ssize_t r = sock_recv(&fd, buf + got, sizeof buf - 1 - got);
    if (r <= 0)
      return cf_fail(EPROTO, "%s: the server closed the control connection without a reply", path);
    got += (size_t)r;
    buf[got] = 0;
    char *nl;
    while ((nl = strchr(buf + start, '\n'))) {
      char *l = buf + start;
      *nl = 0;
      bool ok = strncmp(l, "ok", 2) == 0 && (l[2] == ' ' || !l[2]);
      bool err = strncmp(l, "error", 5) == 0 && (l[5] == ' ' || !l[5]);
      if (ok || err) {
        const char *msg = l + (ok ? 2 : 5) + (l[ok ? 2 : 5] == ' ');
        /* Lines before the last one are the reply body (e.g. list). */
        snprintf(reply, len, "%.*s%s", (int)start, buf, msg);
        if (err)
          return cf_fail(EIO, "%s", msg);
        return 0;
      }
      *nl = '\n';
      start = (size_t)(nl + 1 - buf);
    }
    if (got == sizeof buf - 1)
      return cf_fail(EPROTO, "%s: reply too long", path);
  }
}
