/* cowfork's NBD server: many exports, each a copy-on-write overlay
 * (cowfork/overlay.h) over an image, served to any number of clients over a
 * Unix or TCP socket, plus a small control socket for saving exports while
 * serving. docs/nbd.md describes the behaviour; nbd/proto.h the wire.
 *
 * Errors follow the project convention: -1 (or NULL) with cf_error(). */
#ifndef COWFORK_NBD_H
#define COWFORK_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "cowfork/overlay.h"
#include "cowfork/store.h"

#define CF_NBD_MAX_REQUEST (32u << 20)   /* NBD_INFO_BLOCK_SIZE maximum */
#define CF_NBD_ABSURD_WRITE (64u << 20)  /* larger WRITE payloads drop the connection */
#define CF_NBD_MAX_CONNECTIONS_DEFAULT 1024
#define CF_NBD_HANDSHAKE_SECONDS 30       /* a handshake must make progress this often */
#define CF_NBD_SOCKET_MODE_DEFAULT 0600   /* a Unix data socket: only our user connects */

struct cf_nbd_server;

struct cf_nbd_config {
  struct cf_store *store;  /* where exports' images are opened and saved (required) */
  const char *cache_dir;   /* overlay cache files (NULL: the overlay's default) */
  bool readonly;           /* every export read-only (NBD_FLAG_READ_ONLY) */
  unsigned max_connections; /* 0: CF_NBD_MAX_CONNECTIONS_DEFAULT */
  /* Permission bits of Unix data sockets, whatever the umask (connecting
   * needs write permission on the socket file). 0: CF_NBD_SOCKET_MODE_DEFAULT.
   * The control socket is always 0600. */
  mode_t socket_mode;
  /* One line of log (no newline), e.g. a connection dropped for a protocol
   * violation. NULL: discard. Called from any thread. */
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
};

struct cf_nbd_server *cf_nbd_server_new(const struct cf_nbd_config *cfg);
/* Frees the exports (their overlays and unsaved changes), closes sockets and
 * removes the socket files it created. Call after cf_nbd_server_run returned. */
void cf_nbd_server_free(struct cf_nbd_server *s);

/* Export image as name with a fresh overlay. save_as (may be NULL) is the
 * image the export is saved as on shutdown; it must not exist yet. */
int cf_nbd_server_add_export(struct cf_nbd_server *s, const char *name, const char *image,
                             const char *save_as);
/* Same with an overlay the caller made (the server takes it over). */
int cf_nbd_server_add_overlay(struct cf_nbd_server *s, const char *name, struct cf_overlay *o,
                              const char *save_as);
size_t cf_nbd_server_nexports(const struct cf_nbd_server *s);

/* Listening sockets. A Unix socket is bound under a temporary name, given
 * its mode (cfg.socket_mode; 0600 for the control socket) and renamed into
 * place once it listens, so its path appearing means ready; a stale socket
 * file (nobody listening) is replaced. */
int cf_nbd_server_listen_unix(struct cf_nbd_server *s, const char *path);
int cf_nbd_server_listen_tcp(struct cf_nbd_server *s, const char *host, const char *port);
int cf_nbd_server_control_unix(struct cf_nbd_server *s, const char *path);

/* Serve until cf_nbd_server_stop: then stop accepting, let every connection
 * finish the request it is executing (its reply is sent), wait for all of
 * them, and save every export that has a save name. 0, or -1 if any save
 * failed (each failure is logged). */
int cf_nbd_server_run(struct cf_nbd_server *s);
/* Async-signal-safe: ask cf_nbd_server_run to finish. */
void cf_nbd_server_stop(struct cf_nbd_server *s);

/* Save export name as image `as` (NULL: its save name), while serving.
 * An image this export saved before is replaced (never left missing: the
 * new one is complete first); if nothing changed since, nothing is written.
 * Any other existing image: EEXIST. info (may be NULL) gets a short line. */
int cf_nbd_server_save(struct cf_nbd_server *s, const char *name, const char *as, char *info,
                       size_t infolen);

/* One client connection over a transport: the whole handshake and then the
 * transmission phase, until the client disconnects, breaks the protocol or
 * the server stops. Returns when the connection is over (the caller closes
 * it). Used by the accept loop and directly by the fuzzer. */
struct cf_nbd_transport {
  /* Read up to n bytes: > 0 read, 0 end of stream, -1 error. */
  ssize_t (*recv)(void *ctx, void *buf, size_t n);
  /* Write every byte of iov: 0, or -1 on error. */
  int (*sendv)(void *ctx, const struct iovec *iov, int iovcnt);
  /* Optional: the handshake is over, transmission starts (the socket
   * transport lifts its handshake timeout here). */
  void (*transmission)(void *ctx);
  void *ctx;
};
void cf_nbd_serve(struct cf_nbd_server *s, const struct cf_nbd_transport *t, const char *peer);

/* Client side of the control socket (for `cowfork disk save`): send one
 * request line, put the reply line (without "ok "/"error ") into reply.
 * 0 on "ok", -1 with cf_error() otherwise. */
int cf_nbd_control_request(const char *path, const char *request, char *reply, size_t len);

#endif
