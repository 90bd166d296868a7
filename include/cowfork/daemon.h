/* The cowfork daemon (docs/daemon.md): a REST API on a Unix socket over
 * live sandboxes and templates, and the sandbox call it is built on. */
#ifndef COWFORK_DAEMON_H
#define COWFORK_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cowfork/shim.h"

/* --- Live sandboxes (shim/live.c) -----------------------------------------
 * A live sandbox is a forked child with opts.branch: it pauses at each read
 * of fd 0 that finds no input left, so feeding fd 0 (a regular file the
 * caller rewrites) and calling cf_sandbox_run_until in a loop is a
 * request/answer conversation with the program. Between rounds the caller
 * may park it (cf_sandbox_park, shim.h) so that an idle one holds no VM. */
/* Whether the sandbox stopped at a pause point (and can be saved). A fresh
 * child of a template has not: its pending call is still to be served
 * (cf_sandbox_run_until with nothing on fd 0 serves it and pauses again). */
bool cf_sandbox_is_paused(const struct cf_sandbox *sb);
/* Whether the sandbox is parked (cf_sandbox_park: idle, holding no VM). */
bool cf_sandbox_is_parked(const struct cf_sandbox *sb);
/* The uffd page server's client id of a child mapped with the uffd backend
 * (for cf_uffd_server_stats), else 0. */
uint64_t cf_sandbox_uffd_client(const struct cf_sandbox *sb);

/* --- The daemon (daemon/daemon.c) ------------------------------------------ */
struct cf_daemon_opts {
  const char *store_dir;     /* the store (templates, paused sandboxes, state) */
  const char *socket_path;   /* Unix socket, mode 0600 */
  const char *tcp_listen;    /* "127.0.0.1:PORT" or NULL: loopback only */
  const char *token;         /* bearer token required on TCP (required with tcp_listen) */
  unsigned workers;          /* threads running sandboxes (0: 2 x CPUs) */
  unsigned max_live;         /* live sandboxes at once; 429 past it (0: 512, lowered to what
                                RLIMIT_NOFILE holds; given and not fitting: the daemon refuses to start) */
  unsigned max_files;        /* open files per sandbox, its RLIMIT_NOFILE (0: CF_SANDBOX_MAX_FILES) */
  uint64_t max_memory;       /* private memory of the live sandboxes; creates and resumes past it
                                get 507 (0: 3/4 of the machine's RAM; more than RAM + swap: refused) */
  unsigned max_queue;        /* queued jobs; 429 past it (0: 4096) */
  size_t max_body;           /* request body bytes; 413 past it (0: 8 MiB) */
  size_t max_output;         /* bytes of stdout/stderr returned per exec (0: 8 MiB) */
  double default_timeout;    /* exec wall-clock timeout in seconds (0: 30) */
  double max_timeout;        /* largest timeout a request may ask (0: 600) */
  double default_cpu_limit;  /* exec CPU-time limit in seconds (0: none; a request may ask one) */
  uint64_t max_mem;          /* largest template memory (0: 1 GiB) */
  bool quiet;                /* no log lines on stderr */
  bool no_park;              /* keep idle live sandboxes in their VMs (cf_sandbox_park) */
  double park_after;         /* park a live sandbox idle this many seconds (0: at once after each job) */
  /* The most network a sandbox may get (--net-ceiling; a create request's
   * "net" beyond it is 403): "none" (NULL: the default), "all" or
   * "allow=..." (include/cowfork/netpolicy.h). */
  const char *net_ceiling;
  /* Set when the daemon runs in its own new root (cli_jail): the host
   * directories visible there in which a sandbox's root may lie (the store,
   * the roots directory and where its entries link to). NULL: any
   * directory (--host-roots). */
  const char *const *visible;
  size_t nvisible;
};

/* Run the daemon until SIGINT or SIGTERM (blocked in every thread; the
 * calling thread waits for them), then pause every live sandbox into the
 * store and return 0. -1 with cf_error() when it could not start. */
int cf_daemon_run(const struct cf_daemon_opts *o);

/* --- A minimal client (daemon/client.c), for the CLI and benchmarks ---------
 * One HTTP/1.1 request on a new connection to the Unix socket. *status gets
 * the HTTP status, *body a malloc'ed, NUL-terminated body (*len bytes).
 * -1 with cf_error() when the daemon could not be reached. */
int cf_daemon_request(const char *socket_path, const char *method, const char *path, const char *body,
                      size_t body_len, int *status, char **resp, size_t *resp_len);
/* $COWFORK_SOCKET, else $XDG_RUNTIME_DIR/cowfork.sock, else /run/cowfork.sock. */
const char *cf_daemon_default_socket(char *buf, size_t len);

/* Whether a daemon serves the store at store_dir. A running daemon holds
 * flock(LOCK_EX) on STORE/daemon/lock for its whole life and has written
 * the path of its Unix socket to STORE/daemon/socket. 1: one does (its
 * socket path in sock); 0: none does, and *guard (when guard is not NULL)
 * is an fd holding that lock shared, so that no daemon starts until the
 * caller closes it (a daemon waits up to 3 s for it at start); -1 with
 * cf_error() on failure. */
int cf_daemon_probe(const char *store_dir, char *sock, size_t len, int *guard);

#endif
