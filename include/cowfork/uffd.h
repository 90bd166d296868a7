/* The userfaultfd page server and its client side (docs/memory.md).
 *
 * One server is one epoll loop in its own thread. It serves any number of
 * clients; a client is one userfaultfd (of one process) with one or more
 * regions, each region a range of that process's address space whose
 * contents are a range of an image. Missing pages are installed with
 * UFFDIO_COPY from the image's layers (a sequential run of faults is served with growing runs of pages, bounded and
 * within one extent, halved when it crosses the end of one of the client's
 * VMAs); pages of empty extents with UFFDIO_ZEROPAGE. Pages a
 * client releases (madvise DONTNEED: UFFD_EVENT_REMOVE) read as zeros from
 * then on.
 *
 * Clients are added in-process (cf_uffd_server_add) or over a Unix socket
 * with Firecracker's handshake (cf_uffd_server_listen): a JSON array of
 * {"base_host_virt_addr", "size", "offset", "page_size", "page_size_kib"}
 * with the userfaultfd as SCM_RIGHTS ancillary data; "offset" is a byte
 * offset in the image; either page size key may be absent, and both hold
 * bytes as Firecracker sends them ("page_size_kib" in KiB is accepted too).
 * A client that also sends "cowfork_flags" (an integer of
 * CF_UFFD_* bits) in its first object gets a one-line reply, "ok ID\n" once
 * it is registered and, with CF_UFFD_PREFETCH, once its working set is
 * installed (REAP-style: the child runs only after that), or "error
 * MESSAGE\n". Firecracker sends no such key and gets a reply only when its
 * message is refused (it reads none; the line is harmless); as it keeps its
 * own copy of the userfaultfd and would wait forever in its first fault, a
 * refused peer that sent a userfaultfd without cowfork_flags is also sent
 * SIGBUS. Refusals are logged (cf_uffd_server_set_log).
 *
 * Placement: the server runs one worker thread per CPU of its affinity
 * mask, pinned there, plus one shared worker. A client whose process is
 * pinned to exactly one CPU when it is added (sched_setaffinity before the
 * handshake, as cf_fanout_run and CF_MEM_PIN do) is served by that CPU's
 * worker, which blocks when idle: its faults are served on its own CPU. Any
 * other client is served by the shared worker, which polls for a while
 * after each fault. A client keeps its worker for its life.
 *
 * A client ends when its process exits (a pidfd in the loop), when the
 * kernel says its address space is gone (ESRCH), or on an error serving it
 * (it is then sent SIGBUS rather than left to read zeros); others are never
 * disturbed. */
#ifndef COWFORK_UFFD_H
#define COWFORK_UFFD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cowfork/image.h"

/* One region: [base, base+size) of the client's address space holds image
 * bytes [offset, offset+size). base, size and offset are page-aligned. */
struct cf_uffd_region {
  uint64_t base, size, offset;
};

#define CF_UFFD_RECORD 1u   /* record the image pages in first-touch order (serves single pages) */
#define CF_UFFD_WP 2u       /* install pages write-protected: the client tracks writes (WP_ASYNC) */
#define CF_UFFD_PREFETCH 4u /* install the server's or listener's prefetch list in the background */
#define CF_UFFD_ALL_FLAGS 7u

/* Per-client counters, and the record when CF_UFFD_RECORD was asked for. */
struct cf_uffd_stats {
  uint64_t faults;          /* page-fault messages */
  uint64_t pages_copied;    /* pages installed from layers for faults */
  uint64_t pages_zeroed;    /* pages installed as zeros for faults */
  uint64_t pages_prefetched;/* pages installed by prefetch */
  uint64_t pages_removed;   /* pages marked removed by REMOVE / UNMAP events */
  uint64_t ioctls;          /* UFFDIO_COPY / ZEROPAGE calls */
  uint64_t eexist, eagain;  /* retried or woken */
  uint64_t clipped;         /* runs shortened: they crossed the end of a registered range */
  uint64_t service_ns;      /* total time from reading a fault to its ioctl's return */
  int error;                /* errno that ended the client, 0 when its process exited */
  int cpu;                  /* the CPU of the worker serving it; -1: the shared worker */
  const uint64_t *touched;  /* image pages (offset / page size) in first-touch order */
  size_t ntouched;
};

/* Options for a client (or for every client of a listener). */
struct cf_uffd_opts {
  unsigned flags;           /* CF_UFFD_* */
  const uint64_t *prefetch; /* image pages to install in the background, in order (copied) */
  size_t nprefetch;
};

struct cf_uffd_server;

/* Called in the server's thread when a client ends, with its final stats
 * (valid during the call only). */
typedef void (*cf_uffd_end_fn)(void *ctx, uint64_t id, pid_t pid, const struct cf_uffd_stats *st);

/* Start a server (its thread runs until cf_uffd_server_free). end may be NULL. */
struct cf_uffd_server *cf_uffd_server_new(cf_uffd_end_fn end, void *ctx);

/* Called in a server thread with one line (no newline) when the server
 * refuses a handshake or ends a client on an error: lib/ prints nothing, the
 * front end logs it. Set it before the first cf_uffd_server_listen/add. */
typedef void (*cf_uffd_log_fn)(void *ctx, const char *msg);
void cf_uffd_server_set_log(struct cf_uffd_server *srv, cf_uffd_log_fn fn, void *ctx);

/* Stop the thread, end every client (closing its userfaultfd: the process
 * then reads zeros in the regions, so stop a server only after its
 * clients), close listeners and unlink their sockets. */
void cf_uffd_server_free(struct cf_uffd_server *srv);

/* Add a client: uffd (dup'ed; the caller keeps its own fd) belongs to process
 * pid (> 0) and has regions r[0..n) registered for missing faults, with the
 * contents of img, which must stay open until the server is freed. *id gets
 * the client's id. -1 (EINVAL) on a region outside the image or unaligned. */
int cf_uffd_server_add(struct cf_uffd_server *srv, const struct cf_image *img, int uffd, pid_t pid,
                       const struct cf_uffd_region *r, size_t n, const struct cf_uffd_opts *o,
                       uint64_t *id);

/* Accept clients on a Unix socket at path (created; removed when the
 * server is freed) whose regions hold img's contents. o gives the flags of
 * clients that do not send cowfork_flags and the prefetch list. */
int cf_uffd_server_listen(struct cf_uffd_server *srv, const char *path, const struct cf_image *img,
                          const struct cf_uffd_opts *o);

/* A live client's counters (touched/ntouched are not filled in). -1 ENOENT
 * when it has ended. */
int cf_uffd_server_stats(struct cf_uffd_server *srv, uint64_t id, struct cf_uffd_stats *st);

/* Runs of a live client's pages that read as zeros because they were
 * removed (image pages: fn(ctx, first, count)), for committing it. */
int cf_uffd_server_removed(struct cf_uffd_server *srv, uint64_t id,
                           int (*fn)(void *ctx, uint64_t first, uint64_t count), void *ctx);

/* Server-wide counts. */
struct cf_uffd_server_info {
  uint64_t clients, clients_total, clients_failed, connections_refused;
};
void cf_uffd_server_info(struct cf_uffd_server *srv, struct cf_uffd_server_info *info);

/* --- Client side ---------------------------------------------------------- */

/* A new userfaultfd (non-blocking, close-on-exec) through /dev/userfaultfd
 * (USERFAULTFD_IOC_NEW), falling back to the system call, with UFFDIO_API
 * done asking for features; *got (may be NULL) gets what the kernel has. */
int cf_uffd_open(uint64_t features, uint64_t *got);

/* Register [addr, addr+len) for missing faults, and write-protect faults too
 * when wp. */
int cf_uffd_register(int uffd, void *addr, size_t len, int wp);

/* Connect to the server at path and hand it uffd with regions r[0..n) as
 * Firecracker does. flags != 0 adds "cowfork_flags" and waits for the reply:
 * *id (may be NULL) gets the client id; the server's refusal is the error. */
int cf_uffd_handshake(const char *path, int uffd, const struct cf_uffd_region *r, size_t n,
                      unsigned flags, uint64_t *id);
#define CF_UFFD_ACK 0x100u /* flag for cf_uffd_handshake only: ask for the reply */

/* Parse the handshake's JSON (exported for tests and fuzzing): *r gets a
 * malloc'ed array, *flags the cowfork_flags (-1 when absent). Unknown keys
 * are skipped; anything malformed is EINVAL. */
int cf_uffd_parse_regions(const char *buf, size_t len, struct cf_uffd_region **r, size_t *n,
                          long *flags);

#endif
