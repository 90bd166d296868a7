/* Shared between the NBD server's files: the server and export structures.
 * server.c owns them; conn.c reads them while serving one connection. */
#ifndef COWFORK_NBD_PRIVATE_H
#define COWFORK_NBD_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nbd/nbd.h"

struct nbd_saved {
  char *name;       /* an image this export was saved as */
  uint64_t changes; /* the export's change count it holds */
};

struct nbd_export {
  char *name;
  char *image;   /* the image the overlay is over ("" for a caller's overlay) */
  char *save_as; /* NULL: not saved on shutdown */
  struct cf_overlay *ov;
  uint64_t size;
  uint32_t block_size;
  /* Bumped by every write, trim and zero *before* it changes the overlay, so
   * a save that reads it first and sees no change since a save really has
   * nothing new. */
  atomic_uint_fast64_t changes;
  pthread_mutex_t save_lock; /* guards saved[] and serializes saves */
  struct nbd_saved *saved;
  size_t nsaved;
};

struct nbd_conn_slot; /* one live connection (server.c) */

#define NBD_MAX_LISTEN 8

struct cf_nbd_server {
  struct cf_nbd_config cfg;
  struct nbd_export **exports;
  size_t nexports;
  int listen_fd[NBD_MAX_LISTEN];
  char *listen_path[NBD_MAX_LISTEN]; /* Unix socket files to remove, or NULL */
  size_t nlisten;
  int control_fd;
  char *control_path;
  int wake[2]; /* self-pipe: cf_nbd_server_stop writes, run polls */
  atomic_bool stopping;
  pthread_mutex_t lock; /* guards conns, nconns, ncontrol */
  pthread_cond_t idle;  /* signalled when a connection or control thread ends */
  struct nbd_conn_slot *conns;
  unsigned nconns, ncontrol;
  atomic_uint_fast64_t next_id;
};

/* The export called name (len bytes, not NUL-terminated); "" is the first. */
struct nbd_export *nbd_find_export(struct cf_nbd_server *s, const char *name, size_t len);

void nbd_log(struct cf_nbd_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
