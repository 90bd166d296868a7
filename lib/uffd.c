/* The userfaultfd page server (include/cowfork/uffd.h).
 *
 * What it keeps: a list of sources (an image shared by its clients and
 * listeners, reference-counted), a list of clients (a userfaultfd, a pidfd,
 * regions, a page tracker per region, counters, a prefetch cursor),
 * listeners and half-done connections. Everything is reached from one epoll set; each epoll entry
 * points at a `struct watch` that says what it is.
 *
 * Page states per region (cf_tracker, one block per page):
 *   MISSING (0)  never installed: served from the image
 *   FAULTED (1)  installed from the image (by a fault or by prefetch)
 *   REMOVED (2)  released by the client (DONTNEED/UNMAP): served as zeros
 *   ZEROED  (3)  removed, then served as zeros: reads as zeros, present
 * REMOVED and ZEROED together are what the client reads as zeros although
 * the image may hold data there; cf_uffd_server_removed reports them.
 *
 * Serving a fault: the page is looked up in the image's flattened map (one
 * binary search). Sequential faults (a fault at the page after the last run)
 * double the run, up to MAX_RUN pages, cut at the end of the extent, of the
 * region and at the first page not MISSING; the run is one UFFDIO_COPY
 * straight from a read-only MAP_SHARED|MAP_POPULATE mapping of the layer,
 * made once per source (or, where a layer cannot be mapped, from one pread
 * into a bounce buffer of BOUNCE_PAGES), or one UFFDIO_ZEROPAGE for an
 * empty extent. Populated matters: unpopulated, the server took a page
 * fault on every first use of a source page and was slower than pread
 * (6.4 against 4.9 us); populated it saves the pread and the bounce copy
 * (bench/mem, same run: server time per fault 3.4-4.4 us against 5.1,
 * child-timed p50 -0.6 to -0.9 us), for ~40 ms of populating per GiB of
 * layers when a source is first used. A
 * page that is not one aligned piece of one extent (block size < page size,
 * or a layer offset not congruent with the page) is assembled by
 * cf_image_read. Recording clients get single pages, so that
 * every first touch is a fault and lands in the record.
 *
 * A run must lie in one VMA of the client, and the server does not see
 * where the client split its mapping (the sandbox's shim mprotects guest
 * memory per guest mapping): ENOENT for a run of several pages halves it
 * (the faulting page is always inside), at most log2(MAX_RUN) times.
 *
 * Errors, each ending in bounded work: EEXIST (the page is already there: a
 * prefetch or a racing fault won) marks what was copied and wakes the
 * faulting thread; EAGAIN (the address space is changing under a pending
 * event) is retried 3 times, then wakes it so that it faults again after the
 * event is read; ENOENT for the faulting page alone (unregistered or
 * unmapped since) drops the fault with a wake; ESRCH (the process is gone)
 * ends the client quietly; anything else ends it with SIGBUS, logged, so that
 * it cannot go on reading zeros where the image has data. A fault on a page
 * the tracker holds as installed installs it again (one page; EEXIST tells
 * the race): a page dropped without a REMOVE event would otherwise fault
 * forever. Write-protect and minor faults (a client registered for them
 * without WP_ASYNC) are not served: the client fails (an install would find
 * the page present and it would fault forever). A refused handshake is
 * answered, logged and closed, and a peer
 * that sent a userfaultfd without asking for an answer (Firecracker: it
 * keeps its own copy and would hang in its first fault) is sent SIGBUS.
 *
 * Workers: one loop, run by several threads, each over its own epoll set
 * and its own clients. Worker 0 is the shared worker: not pinned, it also
 * holds the listeners and half-done handshakes, and after a fault it polls
 * for SPIN_NS before it sleeps again (so the next fault of a burst finds it
 * awake: child-timed p50 ~17 -> 6-12 us on the 2-core PVM host), reading
 * the last client's uffd directly while it polls (a fault found that way
 * costs read + ioctl, not epoll_wait + read + ioctl). Workers 1..N are
 * pinned one per CPU of the process's affinity mask and never poll: they
 * share their CPU with their clients, and polling would take it from them.
 * A client goes to a worker when it is added: to the worker of its CPU when
 * its process is pinned to exactly one CPU (sched_getaffinity of its pid),
 * else to the shared worker. So a pinned client's fault is served on its
 * own CPU: the faulting thread sleeps, the local worker is woken without an
 * IPI, serves, and wakes the thread locally; the cross-CPU path (a host
 * round trip to wake a halted vCPU here) is avoided. An unpinned client
 * gets the shared worker's polling, which is what helps it. A client stays
 * on its worker for its life (re-pinning it later does not move it).
 * Prefetch avoids faults instead: a client asking for it is installed
 * first, in sorted runs of up to PREFETCH_RUN pages, in slices between
 * looks at the other clients.
 *
 * Locking: each worker's `lock` guards its client list and those clients'
 * state; its thread holds it while handling one uffd or pidfd event or one
 * prefetch slice, and cf_uffd_server_add/stats/removed take it from other
 * threads. The server's `lock` guards the sources and the listener list and
 * is a leaf: taken under a worker's lock (freeing a client puts its
 * source), never the other way round. Half-done connections belong to
 * worker 0's thread. Counters in `info` are atomic. Only a client's worker
 * thread frees it (and cf_uffd_server_free after joining every worker). */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "cowfork/tracker.h"
#include "cowfork/uffd.h"
#include "internal.h"
#include "mem_compat.h"

enum { MISSING, FAULTED, REMOVED, ZEROED };
enum { W_EVENT, W_LISTEN, W_CONN, W_UFFD, W_PIDFD };

#define MAX_RUN 64        /* pages per UFFDIO_COPY for a sequential run */
#define PREFETCH_SLICE 256 /* pages of prefetch between two looks at the uffds */
#define PREFETCH_RUN 64    /* pages per prefetch ioctl at most */
#define MAX_MSGS 64        /* uffd messages read at once */
#define MAX_JSON 65536     /* handshake message */
#define MAX_REGIONS 1024
#define MAX_CONNS 256       /* handshakes in progress at once */
#define REPLY_TIMEOUT_S 60  /* a client waits this long for the server's answer */
#define BOUNCE_PAGES 64    /* >= MAX_RUN and PREFETCH_RUN */
#define SPIN_NS 200000     /* shared worker: after a fault, poll this long before sleeping */
#define SPIN_EPOLL_EVERY 4 /* while polling, look at the whole epoll set every this many reads */
#define MAX_WORKERS 257    /* the shared one and one per CPU */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

struct watch {
  int kind, fd;
  void *p;
};

struct source {
  const struct cf_image *img;
  unsigned refs;
  uint32_t nmap;
  const char **map; /* per layer: a read-only MAP_SHARED|MAP_POPULATE mapping, or NULL */
  size_t *maplen;
  struct source *next;
};

struct region {
  uint64_t base, size, off;
  struct cf_tracker *t;
};

struct worker;

struct client {
  uint64_t id;
  pid_t pid;
  struct worker *w;    /* the worker that serves it, for its whole life */
  struct watch wu, wp; /* uffd, pidfd */
  struct source *src;
  struct region *r;
  size_t nr;
  unsigned flags;
  uint64_t next_addr; /* the page after the last run: a fault here is sequential */
  unsigned run;
  uint64_t *pf; /* prefetch list (image pages) and cursor */
  size_t npf, pf_pos;
  int ackfd;    /* socket to answer "ok ID" on once the prefetch is in, or -1 */
  uint64_t *rec; /* record: image pages in first-touch order */
  size_t nrec, caprec;
  struct cf_uffd_stats st;
  bool dead;
  struct client *next;
};

struct listener {
  struct watch w;
  struct source *src;
  unsigned flags;
  uint64_t *pf;
  size_t npf;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  struct listener *next;
};

struct conn {
  struct watch w;
  struct listener *l;
  int uffd;
  bool had_uffd; /* a userfaultfd came (k->uffd may be consumed since) */
  size_t len;
  char buf[MAX_JSON];
  struct conn *next;
};

struct worker {
  struct cf_uffd_server *srv;
  int ep, evfd;
  int cpu;               /* pinned to this CPU, or -1 (the shared worker) */
  pthread_t thread;
  bool started;
  pthread_mutex_t lock;  /* clients and their state */
  struct watch wev;
  struct client *clients;
  struct client *last;   /* shared worker: the client of the last fault, read while polling */
  size_t nclients;
  char *bounce;
  uint64_t spin_ns;      /* 0: block as soon as there is nothing to do */
};

struct cf_uffd_server {
  pthread_mutex_t lock;  /* sources, listeners */
  struct worker *w;      /* w[0] shared; w[1..nw) one per CPU */
  size_t nw;
  struct source *sources;
  struct listener *listeners;
  struct conn *conns;    /* worker 0's thread only */
  size_t nconns;
  uint64_t next_id;      /* atomic */
  cf_uffd_end_fn end;
  void *ctx;
  cf_uffd_log_fn log;    /* set before any client or listener exists */
  void *log_ctx;
  size_t pg;
  struct cf_uffd_server_info info; /* atomic counters */
  volatile int stop;
};

#define COUNT(x, d) __atomic_add_fetch(&(x), (d), __ATOMIC_RELAXED)

static void prefetch_done(struct client *c);
static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void srv_log(struct cf_uffd_server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void srv_log(struct cf_uffd_server *srv, const char *fmt, ...)
{
  if (!srv->log)
    return;
  char b[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  srv->log(srv->log_ctx, b);
}

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* --- Sources ---------------------------------------------------------------- */

static void source_put(struct cf_uffd_server *srv, struct source *s)
{
  if (!s || --s->refs)
    return;
  for (struct source **pp = &srv->sources; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  for (uint32_t i = 0; i < s->nmap; i++)
    if (s->map[i])
      munmap((void *)s->map[i], s->maplen[i]);
  free(s->map);
  free(s->maplen);
  free(s);
}

/* Map every layer of s read-only and populated, so that a fault is one
 * UFFDIO_COPY straight from the page cache: no pread, no bounce copy, and
 * (populated) no page fault in the server. Best effort: a layer that cannot
 * be mapped is served with pread. */
static void source_map(struct source *s)
{
  const struct cf_header *h = cf_image_header(s->img);
  if (!h->nlayers || !(s->map = calloc(h->nlayers, sizeof *s->map)) ||
      !(s->maplen = calloc(h->nlayers, sizeof *s->maplen)))
    return;
  s->nmap = h->nlayers;
  for (uint32_t i = 0; i < h->nlayers; i++) {
    int fd = cf_image_layer_fd(s->img, i);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0)
      continue;
    void *m = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED)
      continue;
    s->map[i] = m;
    s->maplen[i] = st.st_size;
  }
}

/* The source of img. Called with srv->lock held. */
static struct source *source_get(struct cf_uffd_server *srv, const struct cf_image *img)
{
  for (struct source *s = srv->sources; s; s = s->next)
    if (s->img == img) {
      s->refs++;
      return s;
    }
  struct source *s = calloc(1, sizeof *s);
  if (!s)
    return cf_fail_null(ENOMEM, "out of memory");
  s->img = img;
  s->refs = 1;
  source_map(s);
  s->next = srv->sources;
  srv->sources = s;
  return s;
}

/* --- Clients ---------------------------------------------------------------- */

/* Free c (unlinked, or never linked). Its worker's lock held if it was linked. */
static void client_free(struct cf_uffd_server *srv, struct client *c)
{
  if (c->ackfd >= 0)
    close(c->ackfd);
  if (c->wu.fd >= 0) {
    if (c->w)
      epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->wu.fd, NULL);
    close(c->wu.fd);
  }
  if (c->wp.fd >= 0) {
    if (c->w)
      epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->wp.fd, NULL);
    close(c->wp.fd);
  }
  for (size_t i = 0; c->r && i < c->nr; i++)
    cf_tracker_free(c->r[i].t);
  free(c->r);
  free(c->pf);
  free(c->rec);
  if (c->src) {
    pthread_mutex_lock(&srv->lock);
    source_put(srv, c->src);
    pthread_mutex_unlock(&srv->lock);
  }
  free(c);
}

/* End client c: report it, unlink it, free it. Its worker's lock held. */
static void client_end(struct cf_uffd_server *srv, struct client *c, int err)
{
  struct worker *w = c->w;
  for (struct client **pp = &w->clients; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  w->nclients--;
  if (w->last == c)
    w->last = NULL;
  COUNT(srv->info.clients, -1);
  if (err)
    COUNT(srv->info.clients_failed, 1);
  c->st.error = err;
  c->st.touched = c->rec;
  c->st.ntouched = c->nrec;
  if (srv->end)
    srv->end(srv->ctx, c->id, c->pid, &c->st);
  client_free(srv, c);
}

/* A failure serving c that is not the process going away: make it loud. */
static void client_fail(struct cf_uffd_server *srv, struct client *c, int err)
{
  if (c->dead)
    return;
  c->dead = true;
  c->st.error = err;
  srv_log(srv, "page server: client %llu (pid %d) ended with SIGBUS: %s",
          (unsigned long long)c->id, (int)c->pid, cf_error());
  if (c->wp.fd >= 0)
    syscall(SYS_pidfd_send_signal, c->wp.fd, SIGBUS, NULL, 0);
  /* The pidfd reports the exit and ends the client then; until it does, the
   * uffd stays open so the process cannot read zeros in place of data. */
  epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->wu.fd, NULL);
}

static struct region *find_region(struct client *c, uint64_t addr)
{
  for (size_t i = 0; i < c->nr; i++)
    if (addr >= c->r[i].base && addr - c->r[i].base < c->r[i].size)
      return &c->r[i];
  return NULL;
}

static void record(struct client *c, uint64_t page)
{
  if (c->nrec == c->caprec) {
    size_t cap = c->caprec ? 2 * c->caprec : 1024;
    uint64_t *p = realloc(c->rec, cap * sizeof *p);
    if (!p)
      return; /* a shorter record, never a failure to serve */
    c->rec = p;
    c->caprec = cap;
  }
  c->rec[c->nrec++] = page;
}

static int do_wake(struct client *c, uint64_t addr, uint64_t len)
{
  struct uffdio_range r = {.start = addr, .len = len};
  return ioctl(c->wu.fd, UFFDIO_WAKE, &r);
}

/* Where the page at image byte ioff comes from: zeros (*empty), or layer
 * fd *fd at byte *loff; returns how many pages from there are one aligned
 * piece of one extent (0: assemble the page with cf_image_read). */
static uint64_t locate(struct cf_uffd_server *srv, struct source *s, uint64_t ioff, int *fd,
                       uint64_t *loff, bool *empty, const char **mapped)
{
  *mapped = NULL;
  const struct cf_header *h = cf_image_header(s->img);
  size_t pg = srv->pg;
  *fd = -1;
  *loff = 0;
  *empty = false;
  if (ioff + pg > h->size)
    return 0;
  int64_t i = cf_header_lookup(h, ioff / h->block_size);
  if (i < 0)
    return 0;
  const struct cf_extent *e = &h->extents[i];
  uint64_t estart = e->first * h->block_size, eend = estart + e->count * h->block_size;
  if (ioff < estart || ioff + pg > eend)
    return 0;
  uint64_t pages = (eend - ioff) / pg;
  if (e->layer == CF_LAYER_EMPTY) {
    *empty = true;
    return pages;
  }
  *loff = e->offset * h->block_size + (ioff - estart);
  if (*loff % pg)
    return 0;
  *fd = cf_image_layer_fd(s->img, e->layer);
  if (e->layer < s->nmap && s->map[e->layer] && *loff < s->maplen[e->layer]) {
    uint64_t in = (s->maplen[e->layer] - *loff) / pg;
    if (in) {
      *mapped = s->map[e->layer] + *loff;
      if (pages > in)
        pages = in;
    }
  }
  return pages;
}

/* Read n pages of layer fd at loff into the worker's bounce buffer. */
static const char *fill(struct cf_uffd_server *srv, struct worker *w, int fd, uint64_t loff, uint64_t n)
{
  ssize_t r = cf_pread_full(fd, w->bounce, n * srv->pg, loff);
  if (r != (ssize_t)(n * srv->pg)) {
    cf_fail(r < 0 ? errno : EIO, "read layer at %llu: %s", (unsigned long long)loff,
            r < 0 ? strerror(errno) : "short read");
    errno = r < 0 ? errno : EIO;
    return NULL;
  }
  return w->bounce;
}

/* Install pages [p, p+n) of region r (all MISSING or all REMOVED, or one
 * page installed before). Returns the pages installed (>= 1), 0 when the
 * first page was already there (caller wakes), -1 with errno on failure
 * (ENOENT: the range is not inside one registered VMA). wake: wake faulting
 * threads. */
static long install(struct cf_uffd_server *srv, struct client *c, struct region *r, uint64_t p,
                    uint64_t n, bool zero, const char *src, bool wake)
{
  size_t pg = srv->pg;
  uint64_t dst = r->base + p * pg;
  bool wp = c->flags & CF_UFFD_WP;
  long done;
  c->st.ioctls++;
  if (zero) {
    struct uffdio_zeropage z = {.range = {.start = dst, .len = n * pg},
                                .mode = (wp || !wake) ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0};
    int rc = ioctl(c->wu.fd, UFFDIO_ZEROPAGE, &z);
    done = z.zeropage > 0 ? z.zeropage / (long)pg : 0;
    if (rc < 0 && done == 0 && errno != EEXIST)
      return -1;
    if (done && wp) {
      /* A zero page cannot be installed write-protected in one step: protect
       * it before anyone is woken, so no write can slip in untracked. */
      struct uffdio_writeprotect w = {.range = {.start = dst, .len = done * pg},
                                      .mode = UFFDIO_WRITEPROTECT_MODE_WP}; /* never wakes */
      ioctl(c->wu.fd, UFFDIO_WRITEPROTECT, &w); /* on failure the pages only look written */
      if (wake)
        do_wake(c, dst, done * pg);
    }
  } else {
    struct uffdio_copy cp = {.dst = dst, .src = (uintptr_t)src, .len = n * pg,
                             .mode = (wp ? UFFDIO_COPY_MODE_WP : 0) |
                                     (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE)};
    int rc = ioctl(c->wu.fd, UFFDIO_COPY, &cp);
    done = cp.copy > 0 ? cp.copy / (long)pg : 0;
    if (rc < 0 && done == 0 && errno != EEXIST)
      return -1;
  }
  if (done == 0) {
    c->st.eexist++;
    return 0;
  }
  return done;
}

/* The tracker state of a page once it is installed from state s. */
static int installed(int s)
{
  return s == REMOVED || s == ZEROED ? ZEROED : FAULTED;
}

/* Serve the fault at addr. Returns 0, or -1 with errno and cf_error when the
 * client must end (ESRCH: its address space is gone). */
static int serve_fault(struct cf_uffd_server *srv, struct client *c, uint64_t addr)
{
  size_t pg = srv->pg;
  uint64_t t0 = now_ns();
  addr &= ~(uint64_t)(pg - 1);
  struct region *r = find_region(c, addr);
  c->st.faults++;
  if (!r) /* registered memory we were not told about: cannot serve it */
    return cf_fail(EFAULT, "fault at %#llx, outside every region", (unsigned long long)addr);
  uint64_t p = (addr - r->base) / pg, ioff = r->off + p * pg;
  int state = cf_tracker_get(r->t, p);
  if (c->flags & CF_UFFD_RECORD && state == MISSING)
    record(c, ioff / pg);
  /* A page we installed faults again: mostly a race (a run or the prefetch
   * put it there after this fault was queued), but it may also have been
   * dropped without an event (a client without EVENT_REMOVE): install it
   * again, one page, and let EEXIST tell the race. Only waking would leave
   * a dropped page faulting forever. */
  bool again = state == FAULTED || state == ZEROED;
  /* The run: grows while faults are sequential. */
  unsigned run = 1;
  if (!again) {
    if (!(c->flags & CF_UFFD_RECORD) && addr == c->next_addr && state == MISSING)
      run = c->run * 2 > MAX_RUN ? MAX_RUN : c->run * 2;
    c->run = run;
  }
  uint64_t n = 1;
  const char *src = NULL;
  bool empty = state == REMOVED || state == ZEROED, bounce = false;
  const char *mapped = NULL;
  int fd = -1;
  uint64_t loff = 0;
  if (!empty) {
    uint64_t avail = locate(srv, c->src, ioff, &fd, &loff, &empty, &mapped);
    if (avail == 0)
      bounce = true;
    else {
      uint64_t lim = run < avail ? run : avail;
      if (lim > r->size / pg - p)
        lim = r->size / pg - p;
      while (n < lim && cf_tracker_get(r->t, p + n) == MISSING)
        n++;
    }
  }
  if (!bounce && !empty && !(src = mapped) && !(src = fill(srv, c->w, fd, loff, n)))
    return -1;
  if (bounce) {
    const struct cf_header *h = cf_image_header(c->src->img);
    uint64_t len = ioff < h->size ? (h->size - ioff < pg ? h->size - ioff : pg) : 0;
    memset(c->w->bounce, 0, pg);
    if (len && cf_image_read(c->src->img, c->w->bounce, len, ioff) < 0)
      return -1;
    src = c->w->bounce;
  }
  /* Every error ends this loop: ENOENT halves the run (at most
   * log2(MAX_RUN) times), EAGAIN retries at most 3 times. */
  long done;
  unsigned eagain = 0;
  for (;;) {
    done = install(srv, c, r, p, n, empty, src, true);
    if (done >= 0)
      break;
    if (errno == ENOENT && n > 1) {
      /* The run crosses the end of the registered range (the VMA) it starts
       * in: the client split its mapping (mprotect, mmap) where the server
       * cannot see. The faulting page is in that range: halve the run. */
      n = (n + 1) / 2;
      c->run = (unsigned)n;
      c->st.clipped++;
      continue;
    }
    if (errno == EAGAIN && eagain++ < 3) {
      c->st.eagain++;
      continue;
    }
    if (errno == EAGAIN || errno == ENOENT) {
      /* EAGAIN: the address space is changing under an event not yet read;
       * ENOENT for the faulting page alone: it is no longer registered
       * (unregistered or unmapped since it faulted). Either way drop this
       * fault: the thread faults again if it still has to, after the event. */
      do_wake(c, addr, pg);
      goto out;
    }
    int e = errno;
    return cf_fail(e, "%s at %#llx (+%llu pages): %s", empty ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
                   (unsigned long long)(r->base + p * pg), (unsigned long long)n, strerror(e));
  }
  if (done == 0) { /* already there */
    cf_tracker_set_range(r->t, p, 1, installed(state));
    do_wake(c, addr, pg);
    goto out;
  }
  cf_tracker_set_range(r->t, p, done, installed(state));
  if (empty)
    c->st.pages_zeroed += done;
  else
    c->st.pages_copied += done;
  c->next_addr = addr + done * pg;
out:
  c->st.service_ns += now_ns() - t0;
  return 0;
}

static void mark_removed(struct client *c, uint64_t start, uint64_t end, size_t pg)
{
  for (size_t i = 0; i < c->nr; i++) {
    struct region *r = &c->r[i];
    uint64_t a = start > r->base ? start : r->base;
    uint64_t b = end < r->base + r->size ? end : r->base + r->size;
    if (a >= b)
      continue;
    uint64_t p = (a - r->base + pg - 1) / pg, q = (b - r->base) / pg;
    if (q > p) {
      cf_tracker_set_range(r->t, p, q - p, REMOVED);
      c->st.pages_removed += q - p;
    }
  }
}

/* Read and handle every pending message of c. Its worker's lock held.
 * Returns whether there was any. */
static bool client_events(struct cf_uffd_server *srv, struct client *c)
{
  struct uffd_msg msg[MAX_MSGS];
  bool any = false;
  while (!c->dead) {
    ssize_t r = read(c->wu.fd, msg, sizeof msg);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN) {
        int e = errno;
        cf_fail(e, "read of its userfaultfd: %s", strerror(e));
        client_fail(srv, c, e);
      }
      return any;
    }
    if (r == 0)
      return any;
    any = true;
    for (size_t i = 0; i < (size_t)r / sizeof *msg && !c->dead; i++) {
      switch (msg[i].event) {
      case UFFD_EVENT_PAGEFAULT:
        if (msg[i].arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)) {
          /* Synchronous write-protect or minor faults are not served (only
           * missing ones; write tracking is WP_ASYNC, which sends none): an
           * install would find the page there and the thread would fault
           * again forever. */
          bool wp = msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
          cf_fail(EOPNOTSUPP, "%s fault at %#llx: only missing faults are served%s",
                  wp ? "write-protect" : "minor", (unsigned long long)msg[i].arg.pagefault.address,
                  wp ? " (track writes with UFFD_FEATURE_WP_ASYNC)" : "");
          client_fail(srv, c, EOPNOTSUPP);
        } else if (serve_fault(srv, c, msg[i].arg.pagefault.address) < 0) {
          if (errno == ESRCH) { /* the address space is gone: the pidfd follows */
            c->dead = true;
            epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->wu.fd, NULL);
          } else
            client_fail(srv, c, errno);
        }
        break;
      case UFFD_EVENT_REMOVE:
      case UFFD_EVENT_UNMAP:
        mark_removed(c, msg[i].arg.remove.start, msg[i].arg.remove.end, srv->pg);
        break;
      default: /* FORK / REMAP are not asked for by our clients; ignore */
        break;
      }
    }
    if ((size_t)r < sizeof msg)
      return any;
  }
  return any;
}

/* Install the next slice of c's prefetch list. Its worker's lock held. Returns true
 * while more is left. */
static bool prefetch_slice(struct cf_uffd_server *srv, struct client *c)
{
  size_t pg = srv->pg, budget = PREFETCH_SLICE;
  while (c->pf_pos < c->npf && budget && !c->dead) {
    uint64_t ioff = c->pf[c->pf_pos] * pg;
    struct region *r = NULL;
    for (size_t i = 0; i < c->nr && !r; i++)
      if (ioff >= c->r[i].off && ioff - c->r[i].off < c->r[i].size)
        r = &c->r[i];
    uint64_t p = r ? (ioff - r->off) / pg : 0;
    const char *src = NULL;
    bool empty;
    int fd;
    uint64_t loff;
    const char *mapped = NULL;
    uint64_t avail = r && cf_tracker_get(r->t, p) == MISSING
                         ? locate(srv, c->src, ioff, &fd, &loff, &empty, &mapped)
                         : 0;
    if (!avail) { /* absent, already there, or not one aligned piece: leave it to faults */
      c->pf_pos++;
      budget--;
      continue;
    }
    /* Extend over the following list entries that continue the run. */
    uint64_t n = 1;
    while (n < avail && n < PREFETCH_RUN && c->pf_pos + n < c->npf &&
           c->pf[c->pf_pos + n] == c->pf[c->pf_pos] + n && p + n < r->size / pg &&
           cf_tracker_get(r->t, p + n) == MISSING)
      n++;
    if (!empty && !(src = mapped) && !(src = fill(srv, c->w, fd, loff, n))) {
      c->pf_pos = c->npf; /* prefetch is an optimization: give it up */
      prefetch_done(c);
      return false;
    }
    long done;
    while ((done = install(srv, c, r, p, n, empty, src, true)) < 0 && errno == ENOENT && n > 1) {
      n = (n + 1) / 2; /* crosses the end of a registered range: see serve_fault */
      c->st.clipped++;
    }
    if (done < 0 && errno == ENOENT) { /* this page is not registered: nothing to install */
      c->pf_pos++;
      budget--;
      continue;
    }
    if (done < 0) {
      if (errno == EAGAIN)
        return true; /* an event is pending: read it, come back */
      if (errno == ESRCH) {
        c->dead = true;
        epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->wu.fd, NULL);
      } else { /* prefetch is an optimization: give it up, faults will serve */
        int e = errno;
        srv_log(srv, "page server: client %llu (pid %d): prefetch given up: %s at %#llx: %s",
                (unsigned long long)c->id, (int)c->pid, empty ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
                (unsigned long long)(r->base + p * pg), strerror(e));
        c->pf_pos = c->npf;
      }
      prefetch_done(c);
      return false;
    }
    if (done == 0)
      done = 1; /* that page was there: skip it */
    cf_tracker_set_range(r->t, p, done, FAULTED);
    c->st.pages_prefetched += done;
    c->pf_pos += done;
    budget = budget > (size_t)done ? budget - done : 0;
  }
  if (c->pf_pos >= c->npf && c->pf) {
    free(c->pf);
    c->pf = NULL;
    c->npf = c->pf_pos = 0;
    prefetch_done(c);
  }
  return c->pf_pos < c->npf;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The prefetch of c is over (done or given up): answer a waiting handshake. */
static void prefetch_done(struct client *c)
{
  if (c->ackfd >= 0) {
    reply(c->ackfd, "ok %llu\n", (unsigned long long)c->id);
    close(c->ackfd);
    c->ackfd = -1;
  }
}

static int watch_add(int ep, struct watch *w)
{
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, w->fd, &ev) < 0)
    return cf_fail(errno, "epoll_ctl: %m");
  return 0;
}

static int check_regions(const struct cf_header *h, const struct cf_uffd_region *r, size_t n, size_t pg)
{
  if (n == 0 || n > MAX_REGIONS)
    return cf_fail(EINVAL, "%zu regions (1..%d)", n, MAX_REGIONS);
  uint64_t img = (h->size + pg - 1) / pg * pg;
  for (size_t i = 0; i < n; i++) {
    if (r[i].base % pg || r[i].size % pg || r[i].offset % pg || !r[i].size || !r[i].base)
      return cf_fail(EINVAL, "region %zu: base %#llx, size %llu, offset %llu are not page-aligned "
                     "and non-zero", i, (unsigned long long)r[i].base, (unsigned long long)r[i].size,
                     (unsigned long long)r[i].offset);
    if (r[i].offset > img || r[i].size > img - r[i].offset)
      return cf_fail(EINVAL, "region %zu: [%llu, +%llu) is outside the image of %llu bytes", i,
                     (unsigned long long)r[i].offset, (unsigned long long)r[i].size,
                     (unsigned long long)h->size);
    if (r[i].base + r[i].size < r[i].base)
      return cf_fail(EINVAL, "region %zu wraps around", i);
    if (r[i].size / pg > UINT32_MAX)
      return cf_fail(EINVAL, "region %zu: more than 2^32 pages", i);
    for (size_t j = 0; j < i; j++)
      if (r[i].base < r[j].base + r[j].size && r[j].base < r[i].base + r[i].size)
        return cf_fail(EINVAL, "regions %zu and %zu overlap", j, i);
  }
  return 0;
}

/* The worker for a client of process pid: the one pinned to its CPU when the
 * process is pinned to exactly one CPU that has a worker, else the shared
 * one. */
static struct worker *pick_worker(struct cf_uffd_server *srv, pid_t pid)
{
  cpu_set_t set;
  if (srv->nw > 1 && sched_getaffinity(pid, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
    for (size_t i = 1; i < srv->nw; i++)
      if (CPU_ISSET(srv->w[i].cpu, &set))
        return &srv->w[i];
  return &srv->w[0];
}

/* Takes ownership of uffd (closed on failure) and, on success only, of
 * ackfd (-1: none; the socket answered "ok ID" once the prefetch is in, or
 * at once without one).
 * Takes no lock on entry; takes the server's, then the chosen worker's. */
static int add_client(struct cf_uffd_server *srv, const struct cf_image *img, int uffd, pid_t pid,
                      const struct cf_uffd_region *r, size_t n, unsigned flags,
                      const uint64_t *pf, size_t npf, int ackfd, uint64_t *id)
{
  struct client *c = calloc(1, sizeof *c);
  if (!c) {
    close(uffd);
    return cf_fail(ENOMEM, "out of memory");
  }
  c->wu = (struct watch){W_UFFD, uffd, c};
  c->wp = (struct watch){W_PIDFD, -1, c};
  c->ackfd = -1;
  c->pid = pid;
  c->flags = flags & CF_UFFD_ALL_FLAGS;
  c->run = 1;
  int fl = fcntl(uffd, F_GETFL);
  if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0) {
    cf_fail(errno, "uffd: %m");
    goto err;
  }
  if ((c->wp.fd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0) {
    cf_fail(errno, "pidfd_open %d: %m", (int)pid);
    goto err;
  }
  pthread_mutex_lock(&srv->lock);
  c->src = source_get(srv, img);
  pthread_mutex_unlock(&srv->lock);
  if (!c->src)
    goto err;
  if (!(c->r = calloc(n, sizeof *c->r))) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  c->nr = n;
  for (size_t i = 0; i < n; i++) {
    c->r[i] = (struct region){r[i].base, r[i].size, r[i].offset, NULL};
    if (!(c->r[i].t = cf_tracker_new(r[i].size / srv->pg, 4)))
      goto err;
  }
  if ((c->flags & CF_UFFD_PREFETCH) && npf) {
    if (!(c->pf = malloc(npf * sizeof *pf))) {
      cf_fail(ENOMEM, "out of memory");
      goto err;
    }
    memcpy(c->pf, pf, npf * sizeof *pf);
    /* Installed before the client runs, so order does not matter: sorted,
     * the runs coalesce into few large copies. */
    qsort(c->pf, npf, sizeof *c->pf, cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < npf; i++)
      if (k == 0 || c->pf[i] != c->pf[k - 1])
        c->pf[k++] = c->pf[i];
    c->npf = k;
  }
  struct worker *w = pick_worker(srv, pid);
  c->id = COUNT(srv->next_id, 1);
  pthread_mutex_lock(&w->lock);
  if (watch_add(w->ep, &c->wu) < 0 || watch_add(w->ep, &c->wp) < 0) {
    int e = errno;
    c->w = w; /* remove what was added */
    client_free(srv, c);
    pthread_mutex_unlock(&w->lock);
    errno = e;
    return -1;
  }
  c->w = w;
  c->st.cpu = w->cpu;
  c->ackfd = ackfd;
  c->next = w->clients;
  w->clients = c;
  w->nclients++;
  COUNT(srv->info.clients, 1);
  COUNT(srv->info.clients_total, 1);
  if (id)
    *id = c->id;
  if (c->npf) { /* wake the loop: it polls without blocking while prefetch is left */
    uint64_t one = 1;
    if (write(w->evfd, &one, sizeof one) < 0) { /* cannot fail short of a full counter */ }
  } else if (c->ackfd >= 0)
    prefetch_done(c); /* nothing to install: answer now */
  pthread_mutex_unlock(&w->lock);
  return 0;
err:;
  int e = errno;
  client_free(srv, c);
  errno = e;
  return -1;
}

int cf_uffd_server_add(struct cf_uffd_server *srv, const struct cf_image *img, int uffd, pid_t pid,
                       const struct cf_uffd_region *r, size_t n, const struct cf_uffd_opts *o,
                       uint64_t *id)
{
  if (!srv || !img || uffd < 0 || pid <= 0 || !r)
    return cf_fail(EINVAL, "bad arguments");
  if (check_regions(cf_image_header(img), r, n, srv->pg) < 0)
    return -1;
  int fd = fcntl(uffd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return cf_fail(errno, "dup uffd: %m");
  return add_client(srv, img, fd, pid, r, n, o ? o->flags : 0, o ? o->prefetch : NULL,
                    o ? o->nprefetch : 0, -1, id);
}

/* --- The handshake ----------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *e)
{
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* A JSON string starting at p (at the quote); *k and *kn get its raw body. */
static const char *parse_str(const char *p, const char *e, const char **k, size_t *kn)
{
  if (p >= e || *p != '"')
    return NULL;
  const char *s = ++p;
  while (p < e && *p != '"') {
    if (*p == '\\' && ++p >= e)
      return NULL;
    if ((unsigned char)*p < 0x20)
      return NULL;
    p++;
  }
  if (p >= e)
    return NULL;
  *k = s;
  *kn = (size_t)(p - s);
  return p + 1;
}

/* A value we accept and maybe skip: an unsigned integer (into *v, *isnum),
 * a string, true/false/null. Nested arrays and objects are refused. */
static const char *parse_val(const char *p, const char *e, uint64_t *v, bool *isnum)
{
  *isnum = false;
  if (p < e && *p >= '0' && *p <= '9') {
    uint64_t x = 0;
    while (p < e && *p >= '0' && *p <= '9') {
      unsigned d = *p++ - '0';
      if (x > (UINT64_MAX - d) / 10)
        return NULL;
      x = x * 10 + d;
    }
    if (p < e && (*p == '.' || *p == 'e' || *p == 'E'))
      return NULL;
    *v = x;
    *isnum = true;
    return p;
  }
  if (p < e && *p == '"') {
    const char *k;
    size_t kn;
    return parse_str(p, e, &k, &kn);
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t l = strlen(words[i]);
    if ((size_t)(e - p) >= l && memcmp(p, words[i], l) == 0) {
      *v = i == 0;
      *isnum = i < 2;
      return p + l;
    }
  }
  return NULL;
}

static bool key_is(const char *k, size_t kn, const char *want)
{
  return kn == strlen(want) && memcmp(k, want, kn) == 0;
}

int cf_uffd_parse_regions(const char *buf, size_t len, struct cf_uffd_region **out, size_t *nout,
                          long *flags)
{
  const char *p = buf, *e = buf + len;
  struct cf_uffd_region *v = NULL;
  size_t n = 0;
  long pg = sysconf(_SC_PAGESIZE);
  *out = NULL;
  *nout = 0;
  *flags = -1;
  p = skip_ws(p, e);
  if (p >= e || *p++ != '[')
    goto bad;
  p = skip_ws(p, e);
  if (p < e && *p == ']')
    goto bad; /* no regions */
  for (;;) {
    p = skip_ws(p, e);
    if (p >= e || *p++ != '{')
      goto bad;
    if (n == MAX_REGIONS)
      goto bad;
    struct cf_uffd_region *nv = realloc(v, (n + 1) * sizeof *v);
    if (!nv) {
      free(v);
      return cf_fail(ENOMEM, "out of memory");
    }
    v = nv;
    struct cf_uffd_region *r = &v[n++];
    unsigned seen = 0;
    bool page_ok = true;
    *r = (struct cf_uffd_region){0};
    p = skip_ws(p, e);
    if (p < e && *p == '}')
      goto bad;
    for (;;) {
      const char *k;
      size_t kn;
      uint64_t val = 0;
      bool isnum;
      p = skip_ws(p, e);
      const char *q = parse_str(p, e, &k, &kn);
      if (!q)
        goto bad;
      p = q;
      p = skip_ws(p, e);
      if (p >= e || *p++ != ':')
        goto bad;
      p = skip_ws(p, e);
      if (!(q = parse_val(p, e, &val, &isnum)))
        goto bad;
      p = q;
      unsigned bit = key_is(k, kn, "base_host_virt_addr") ? 1
                     : key_is(k, kn, "size")              ? 2
                     : key_is(k, kn, "offset")            ? 4
                     : key_is(k, kn, "page_size")         ? 8
                     : key_is(k, kn, "page_size_kib")     ? 16
                     : key_is(k, kn, "cowfork_flags")     ? 32
                                                          : 0;
      if (bit && (!isnum || (seen & bit)))
        goto bad;
      seen |= bit;
      if (bit == 1)
        r->base = val;
      else if (bit == 2)
        r->size = val;
      else if (bit == 4)
        r->offset = val;
      else if (bit == 8) /* bytes */
        page_ok &= val == (uint64_t)pg;
      else if (bit == 16) /* Firecracker >= 1.7 sends bytes despite the name; KiB as named is
                             accepted too (the two cannot be confused) */
        page_ok &= val == (uint64_t)pg || (val <= UINT64_MAX / 1024 && val * 1024 == (uint64_t)pg);
      else if (bit == 32) {
        if (val > CF_UFFD_ALL_FLAGS)
          goto bad;
        *flags = (long)val;
      }
      p = skip_ws(p, e);
      if (p < e && *p == ',') {
        p++;
        continue;
      }
      if (p < e && *p == '}') {
        p++;
        break;
      }
      goto bad;
    }
    if ((seen & 7) != 7)
      goto bad;
    if (!page_ok) {
      free(v);
      return cf_fail(EINVAL, "region %zu: page_size/page_size_kib is not the system page size, %ld "
                     "bytes (huge pages are not served)", n - 1, pg);
    }
    p = skip_ws(p, e);
    if (p < e && *p == ',') {
      p++;
      continue;
    }
    if (p < e && *p == ']') {
      p++;
      break;
    }
    goto bad;
  }
  if (skip_ws(p, e) != e)
    goto bad;
  *out = v;
  *nout = n;
  return 0;
bad:
  free(v);
  return cf_fail(EINVAL, "malformed region list near byte %zu (expected a JSON array of "
                 "{base_host_virt_addr, size, offset[, page_size][, page_size_kib]})",
                 (size_t)(p - buf));
}

static void conn_free(struct cf_uffd_server *srv, struct conn *k)
{
  srv->nconns--;
  for (struct conn **pp = &srv->conns; *pp; pp = &(*pp)->next)
    if (*pp == k) {
      *pp = k->next;
      break;
    }
  if (k->w.fd >= 0) {
    epoll_ctl(srv->w[0].ep, EPOLL_CTL_DEL, k->w.fd, NULL);
    close(k->w.fd);
  }
  if (k->uffd >= 0)
    close(k->uffd);
  free(k);
}

static void reply(int fd, const char *fmt, ...)
{
  char b[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof b - 1)
    n = sizeof b - 1;
  if (send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* the peer left: nothing to tell */ }
}

/* Refuse connection k: answer "error WHY" (a cowfork client reads it;
 * Firecracker reads nothing, and the line is harmless), log it, close the
 * socket and our copy of the userfaultfd. A peer that sent a userfaultfd
 * without asking for an answer (no cowfork_flags: Firecracker) keeps its own
 * copy and would wait forever in its first fault, since nobody reads that
 * uffd: it is sent SIGBUS (pidfd of the SO_PEERCRED pid, as a failed client
 * is) so that it fails instead of hanging. fl: the cowfork_flags, -1 when
 * absent or not parsed. */
static void refuse(struct cf_uffd_server *srv, struct conn *k, long fl, const char *why)
{
  COUNT(srv->info.connections_refused, 1);
  struct ucred cr = {0};
  socklen_t crl = sizeof cr;
  if (k->w.fd >= 0) {
    reply(k->w.fd, "error %s\n", why);
    if (getsockopt(k->w.fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0)
      cr.pid = 0;
  }
  bool sig = k->had_uffd && fl < 0 && cr.pid > 0;
  if (sig) {
    int pfd = (int)syscall(SYS_pidfd_open, cr.pid, 0);
    sig = pfd >= 0 && syscall(SYS_pidfd_send_signal, pfd, SIGBUS, NULL, 0) == 0;
    if (pfd >= 0)
      close(pfd);
  }
  srv_log(srv, "page server: handshake from pid %d refused: %s%s", (int)cr.pid, why,
          sig ? " (sent SIGBUS: its userfaultfd would never be served)" : "");
  conn_free(srv, k);
}

/* Whether buf holds a complete top-level JSON array (brackets balance
 * outside strings). */
static bool json_complete(const char *b, size_t n)
{
  int depth = 0;
  bool str = false, any = false;
  for (size_t i = 0; i < n; i++) {
    char ch = b[i];
    if (str) {
      if (ch == '\\')
        i++;
      else if (ch == '"')
        str = false;
    } else if (ch == '"')
      str = true;
    else if (ch == '[' || ch == '{')
      depth++, any = true;
    else if (ch == ']' || ch == '}')
      if (--depth == 0 && any)
        return true;
  }
  return false;
}

static void conn_readable(struct cf_uffd_server *srv, struct conn *k)
{
  char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {.iov_base = k->buf + k->len, .iov_len = sizeof k->buf - k->len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  ssize_t r = recvmsg(k->w.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); r >= 0 && cm; cm = CMSG_NXTHDR(&mh, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int fds[4];
      memcpy(fds, CMSG_DATA(cm), nfd * sizeof(int));
      for (size_t i = 0; i < nfd; i++) {
        if (k->uffd < 0 && !k->had_uffd) {
          k->uffd = fds[i];
          k->had_uffd = true;
        } else
          close(fds[i]); /* only one userfaultfd per handshake */
      }
    }
  if (r <= 0 || (mh.msg_flags & MSG_CTRUNC)) {
    refuse(srv, k, -1, r < 0 ? strerror(errno) : r == 0 ? "the peer closed before a complete "
                                                            "region list" : "too many fds");
    return;
  }
  k->len += r;
  if (!json_complete(k->buf, k->len)) {
    if (k->len == sizeof k->buf) {
      char why[64];
      snprintf(why, sizeof why, "handshake longer than %d bytes", MAX_JSON);
      refuse(srv, k, -1, why);
    }
    return;
  }
  struct cf_uffd_region *reg = NULL;
  size_t n = 0;
  long fl = -1;
  struct ucred cr;
  socklen_t crl = sizeof cr;
  int ret = cf_uffd_parse_regions(k->buf, k->len, &reg, &n, &fl);
  if (ret == 0 && k->uffd < 0)
    ret = cf_fail(EINVAL, "no userfaultfd came with the region list");
  if (ret == 0 && getsockopt(k->w.fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0)
    ret = cf_fail(errno, "SO_PEERCRED: %m");
  if (ret == 0)
    ret = check_regions(cf_image_header(k->l->src->img), reg, n, srv->pg);
  if (ret == 0) {
    unsigned flags = fl >= 0 ? (unsigned)fl : k->l->flags;
    /* With cowfork_flags the client waits for "ok ID": the socket goes with
     * the client, answered once its prefetch (if any) is in. */
    int ackfd = -1;
    if (fl >= 0) {
      epoll_ctl(srv->w[0].ep, EPOLL_CTL_DEL, k->w.fd, NULL);
      ackfd = k->w.fd;
      k->w.fd = -1;
    }
    ret = add_client(srv, k->l->src->img, k->uffd, cr.pid, reg, n, flags, k->l->pf, k->l->npf,
                     ackfd, NULL);
    k->uffd = -1; /* consumed either way */
    if (ret < 0)
      k->w.fd = ackfd; /* not taken: answered and closed below */
  }
  free(reg);
  if (ret < 0)
    refuse(srv, k, fl, cf_error());
  else
    conn_free(srv, k);
}

static void listener_readable(struct cf_uffd_server *srv, struct listener *l)
{
  for (;;) {
    int fd = accept4(l->w.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      return;
    struct conn *k = srv->nconns < MAX_CONNS ? malloc(sizeof *k) : NULL;
    if (!k) { /* too many half-done handshakes (or no memory): refuse this one */
      COUNT(srv->info.connections_refused, 1);
      close(fd);
      continue;
    }
    srv->nconns++;
    k->w = (struct watch){W_CONN, fd, k};
    k->l = l;
    k->uffd = -1;
    k->had_uffd = false;
    k->len = 0;
    k->next = srv->conns;
    srv->conns = k;
    if (watch_add(srv->w[0].ep, &k->w) < 0)
      conn_free(srv, k);
  }
}

int cf_uffd_server_listen(struct cf_uffd_server *srv, const char *path, const struct cf_image *img,
                          const struct cf_uffd_opts *o)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (!srv || !path || !img)
    return cf_fail(EINVAL, "bad arguments");
  if (strlen(path) >= sizeof sa.sun_path)
    return cf_fail(ENAMETOOLONG, "socket path '%s' is too long", path);
  if (cf_image_check(img) < 0) /* no page served from a layer before its checksum matched */
    return -1;
  strcpy(sa.sun_path, path);
  struct listener *l = calloc(1, sizeof *l);
  if (!l)
    return cf_fail(ENOMEM, "out of memory");
  l->w = (struct watch){W_LISTEN, socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), l};
  if (l->w.fd < 0 || bind(l->w.fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(l->w.fd, 128) < 0) {
    int e = errno;
    if (l->w.fd >= 0)
      close(l->w.fd);
    free(l);
    return cf_fail(e, "listen on %s: %s", path, strerror(e));
  }
  strcpy(l->path, path);
  if (o && o->nprefetch) {
    if (!(l->pf = malloc(o->nprefetch * sizeof *l->pf))) {
      close(l->w.fd);
      unlink(path);
      free(l);
      return cf_fail(ENOMEM, "out of memory");
    }
    memcpy(l->pf, o->prefetch, o->nprefetch * sizeof *l->pf);
    l->npf = o->nprefetch;
  }
  l->flags = o ? o->flags & CF_UFFD_ALL_FLAGS : 0;
  pthread_mutex_lock(&srv->lock);
  int ret = -1;
  if ((l->src = source_get(srv, img)) && watch_add(srv->w[0].ep, &l->w) == 0) {
    l->next = srv->listeners;
    srv->listeners = l;
    ret = 0;
  }
  if (ret < 0) {
    int e = errno;
    source_put(srv, l->src);
    close(l->w.fd);
    unlink(path);
    free(l->pf);
    free(l);
    errno = e;
  }
  pthread_mutex_unlock(&srv->lock);
  return ret;
}

/* --- The loop ---------------------------------------------------------------- */

/* One worker's loop: the same for the shared worker and the per-CPU ones;
 * they differ in their epoll set and in spin_ns. */
static void *loop(void *arg)
{
  struct worker *w = arg;
  struct cf_uffd_server *srv = w->srv;
  struct epoll_event ev[64];
  bool prefetching = false;
  uint64_t spin_until = 0;
  unsigned spins = 0;
  while (!srv->stop) {
    bool spin = spin_until && now_ns() < spin_until;
    if (spin && w->last && ++spins % SPIN_EPOLL_EVERY) {
      /* Polling after a fault: the next one most likely comes from the same
       * client, so read its uffd directly (one system call, not epoll_wait
       * and then read); every SPIN_EPOLL_EVERY-th turn looks at the rest. */
      pthread_mutex_lock(&w->lock);
      bool got = w->last && client_events(srv, w->last);
      pthread_mutex_unlock(&w->lock);
      if (got)
        spin_until = now_ns() + w->spin_ns;
      else
        cpu_relax();
      continue;
    }
    int n = epoll_wait(w->ep, ev, 64, prefetching || spin ? 0 : -1);
    if (n < 0 && errno != EINTR)
      break;
    if (n == 0 && spin) {
      cpu_relax();
      continue;
    }
    for (int i = 0; i < n; i++) {
      struct watch *x = ev[i].data.ptr;
      switch (x->kind) {
      case W_EVENT: {
        uint64_t v;
        if (read(x->fd, &v, sizeof v) < 0) { /* nothing pending */ }
        break;
      }
      case W_LISTEN: listener_readable(srv, x->p); break;
      case W_CONN: conn_readable(srv, x->p); break;
      case W_UFFD:
        pthread_mutex_lock(&w->lock);
        if (client_events(srv, x->p) && w->spin_ns) {
          spin_until = now_ns() + w->spin_ns;
          w->last = x->p;
        }
        pthread_mutex_unlock(&w->lock);
        break;
      case W_PIDFD: {
        struct client *c = x->p;
        /* Pages it still waited for do not matter any more. Other events in
         * this batch may point at c: mark them stale first. */
        for (int j = i + 1; j < n; j++) {
          struct watch *o = ev[j].data.ptr;
          if ((o->kind == W_UFFD || o->kind == W_PIDFD) && o->p == c)
            ev[j].data.ptr = &w->wev;
        }
        pthread_mutex_lock(&w->lock);
        client_end(srv, c, c->st.error);
        pthread_mutex_unlock(&w->lock);
        break;
      }
      }
    }
    pthread_mutex_lock(&w->lock);
    prefetching = false;
    for (struct client *c = w->clients; c; c = c->next)
      if (c->npf && !c->dead)
        prefetching |= prefetch_slice(srv, c);
    pthread_mutex_unlock(&w->lock);
  }
  return NULL;
}

static int worker_init(struct cf_uffd_server *srv, struct worker *w, int cpu)
{
  w->srv = srv;
  w->cpu = cpu;
  w->spin_ns = cpu < 0 ? SPIN_NS : 0;
  w->evfd = -1;
  pthread_mutex_init(&w->lock, NULL);
  if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
    return cf_fail(errno, "epoll/eventfd: %m");
  if (!(w->bounce = aligned_alloc(srv->pg, srv->pg * BOUNCE_PAGES)))
    return cf_fail(ENOMEM, "out of memory");
  w->wev = (struct watch){W_EVENT, w->evfd, NULL};
  if (watch_add(w->ep, &w->wev) < 0)
    return -1;
  pthread_attr_t a;
  pthread_attr_init(&a);
  if (cpu >= 0) { /* pinned from its first instruction */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_attr_setaffinity_np(&a, sizeof set, &set);
  }
  int e = pthread_create(&w->thread, &a, loop, w);
  pthread_attr_destroy(&a);
  if (e)
    return cf_fail(e, "pthread_create: %s", strerror(e));
  w->started = true;
  return 0;
}

struct cf_uffd_server *cf_uffd_server_new(cf_uffd_end_fn end, void *ctx)
{
  struct cf_uffd_server *srv = calloc(1, sizeof *srv);
  if (!srv)
    return cf_fail_null(ENOMEM, "out of memory");
  long pg = sysconf(_SC_PAGESIZE);
  srv->pg = pg > 0 ? (size_t)pg : 4096;
  srv->end = end;
  srv->ctx = ctx;
  pthread_mutex_init(&srv->lock, NULL);
  /* The shared worker, then one per CPU this process may run on. */
  cpu_set_t set;
  int cpus[MAX_WORKERS - 1], ncpu = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int i = 0; i < CPU_SETSIZE && ncpu < MAX_WORKERS - 1; i++)
      if (CPU_ISSET(i, &set))
        cpus[ncpu++] = i;
  if (!(srv->w = calloc(1 + ncpu, sizeof *srv->w))) {
    free(srv);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  for (int i = 0; i <= ncpu; i++) {
    srv->nw = i + 1;
    srv->w[i].ep = srv->w[i].evfd = -1;
    if (worker_init(srv, &srv->w[i], i ? cpus[i - 1] : -1) < 0) {
      cf_uffd_server_free(srv);
      return NULL;
    }
  }
  return srv;
}

void cf_uffd_server_set_log(struct cf_uffd_server *srv, cf_uffd_log_fn fn, void *ctx)
{
  srv->log = fn;
  srv->log_ctx = ctx;
}

void cf_uffd_server_free(struct cf_uffd_server *srv)
{
  if (!srv)
    return;
  int e = errno;
  srv->stop = 1;
  for (size_t i = 0; i < srv->nw; i++) {
    struct worker *w = &srv->w[i];
    uint64_t one = 1;
    if (w->started && write(w->evfd, &one, sizeof one) < 0) { /* it also stops on its next event */ }
  }
  for (size_t i = 0; i < srv->nw; i++)
    if (srv->w[i].started)
      pthread_join(srv->w[i].thread, NULL);
  while (srv->conns)
    conn_free(srv, srv->conns);
  for (size_t i = 0; i < srv->nw; i++)
    while (srv->w[i].clients)
      client_end(srv, srv->w[i].clients, 0);
  while (srv->listeners) {
    struct listener *l = srv->listeners;
    srv->listeners = l->next;
    close(l->w.fd);
    unlink(l->path);
    source_put(srv, l->src);
    free(l->pf);
    free(l);
  }
  for (size_t i = 0; i < srv->nw; i++) {
    struct worker *w = &srv->w[i];
    if (w->evfd >= 0)
      close(w->evfd);
    if (w->ep >= 0)
      close(w->ep);
    free(w->bounce);
    pthread_mutex_destroy(&w->lock);
  }
  free(srv->w);
  pthread_mutex_destroy(&srv->lock);
  free(srv);
  errno = e;
}

/* The live client id, with its worker's lock held (released by the caller),
 * or NULL with no lock held. */
static struct client *find_client(struct cf_uffd_server *srv, uint64_t id)
{
  for (size_t i = 0; i < srv->nw; i++) {
    pthread_mutex_lock(&srv->w[i].lock);
    for (struct client *c = srv->w[i].clients; c; c = c->next)
      if (c->id == id)
        return c;
    pthread_mutex_unlock(&srv->w[i].lock);
  }
  return NULL;
}

int cf_uffd_server_stats(struct cf_uffd_server *srv, uint64_t id, struct cf_uffd_stats *st)
{
  struct client *c = find_client(srv, id);
  if (!c)
    return cf_fail(ENOENT, "no client %llu", (unsigned long long)id);
  *st = c->st;
  st->touched = NULL;
  st->ntouched = c->nrec;
  pthread_mutex_unlock(&c->w->lock);
  return 0;
}

struct runs {
  uint64_t (*v)[2];
  size_t n, cap;
  uint64_t base; /* image page of the region's first page */
};

static int collect_run(void *ctx, uint64_t first, uint64_t count)
{
  struct runs *r = ctx;
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 64;
    void *v = realloc(r->v, cap * sizeof *r->v);
    if (!v)
      return cf_fail(ENOMEM, "out of memory");
    r->v = v;
    r->cap = cap;
  }
  r->v[r->n][0] = r->base + first;
  r->v[r->n][1] = count;
  r->n++;
  return 0;
}

static int cmp_run(const void *a, const void *b)
{
  return cmp_u64(a, b);
}

int cf_uffd_server_removed(struct cf_uffd_server *srv, uint64_t id,
                           int (*fn)(void *ctx, uint64_t first, uint64_t count), void *ctx)
{
  /* REMOVED and ZEROED runs of every region, gathered under the lock, then
   * handed out in ascending order with touching runs merged. */
  struct runs r = {0};
  int ret = 0;
  struct client *c = find_client(srv, id);
  if (!c)
    ret = cf_fail(ENOENT, "no client %llu", (unsigned long long)id);
  for (size_t i = 0; c && i < c->nr && ret == 0; i++) {
    r.base = c->r[i].off / srv->pg;
    for (unsigned s = REMOVED; s <= ZEROED && ret == 0; s++)
      ret = cf_tracker_foreach_run(c->r[i].t, s, collect_run, &r);
  }
  if (c)
    pthread_mutex_unlock(&c->w->lock);
  if (ret == 0 && r.n) {
    qsort(r.v, r.n, sizeof *r.v, cmp_run);
    uint64_t f = r.v[0][0], n = r.v[0][1];
    for (size_t i = 1; i <= r.n && ret == 0; i++) {
      if (i < r.n && r.v[i][0] <= f + n) {
        uint64_t e = r.v[i][0] + r.v[i][1];
        if (e > f + n)
          n = e - f;
        continue;
      }
      ret = fn(ctx, f, n);
      if (i < r.n) {
        f = r.v[i][0];
        n = r.v[i][1];
      }
    }
  }
  free(r.v);
  return ret;
}

void cf_uffd_server_info(struct cf_uffd_server *srv, struct cf_uffd_server_info *info)
{
  info->clients = __atomic_load_n(&srv->info.clients, __ATOMIC_RELAXED);
  info->clients_total = __atomic_load_n(&srv->info.clients_total, __ATOMIC_RELAXED);
  info->clients_failed = __atomic_load_n(&srv->info.clients_failed, __ATOMIC_RELAXED);
  info->connections_refused = __atomic_load_n(&srv->info.connections_refused, __ATOMIC_RELAXED);
}

/* --- Client side ---------------------------------------------------------------- */

int cf_uffd_open(uint64_t features, uint64_t *got)
{
  int fd = -1;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    close(dev);
  }
  if (fd < 0)
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return cf_fail(errno, "userfaultfd: %m%s",
                   errno == EPERM ? " (needs access to /dev/userfaultfd or "
                                    "vm.unprivileged_userfaultfd=1)" : "");
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  if (ioctl(fd, UFFDIO_API, &api) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "UFFDIO_API with features %#llx: %s", (unsigned long long)features,
                   strerror(e));
  }
  if (got)
    *got = api.features;
  return fd;
}

int cf_uffd_register(int uffd, void *addr, size_t len, int wp)
{
  struct uffdio_register reg = {.range = {.start = (uintptr_t)addr, .len = len},
                                .mode = UFFDIO_REGISTER_MODE_MISSING |
                                        (wp ? UFFDIO_REGISTER_MODE_WP : 0)};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
    return cf_fail(errno, "UFFDIO_REGISTER %p (+%zu): %m", addr, len);
  return 0;
}

int cf_uffd_handshake(const char *path, int uffd, const struct cf_uffd_region *r, size_t n,
                      unsigned flags, uint64_t *id)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (!path || strlen(path) >= sizeof sa.sun_path || !r || n == 0 || n > MAX_REGIONS)
    return cf_fail(EINVAL, "bad socket path or region list");
  strcpy(sa.sun_path, path);
  size_t cap = 160 * n + 64, len = 0;
  CLEANUP_FREE char *js = malloc(cap);
  if (!js)
    return cf_fail(ENOMEM, "out of memory");
  long pg = sysconf(_SC_PAGESIZE);
  js[len++] = '[';
  for (size_t i = 0; i < n; i++) {
    len += snprintf(js + len, cap - len,
                    "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,\"page_size\":%ld",
                    i ? "," : "", (unsigned long long)r[i].base, (unsigned long long)r[i].size,
                    (unsigned long long)r[i].offset, pg);
    if (i == 0 && flags)
      len += snprintf(js + len, cap - len, ",\"cowfork_flags\":%u", flags & CF_UFFD_ALL_FLAGS);
    js[len++] = '}';
  }
  js[len++] = ']';
  CLEANUP_CLOSE int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
    return cf_fail(errno, "connect to %s: %m", path);
  struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S}; /* a stuck server is an error, not a hang */
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {.iov_base = js, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
  ssize_t w = sendmsg(s, &mh, MSG_NOSIGNAL);
  if (w < 0)
    return cf_fail(errno, "send to %s: %m", path);
  for (size_t off = w; off < len;) { /* the rest of a long list, without the fd */
    ssize_t k = send(s, js + off, len - off, MSG_NOSIGNAL);
    if (k <= 0)
      return cf_fail(errno, "send to %s: %m", path);
    off += k;
  }
  if (!flags)
    return 0;
  char ans[512];
  size_t got = 0;
  while (got < sizeof ans - 1) {
    ssize_t k = read(s, ans + got, sizeof ans - 1 - got);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    got += k;
    if (memchr(ans, '\n', got))
      break;
  }
  ans[got] = 0;
  char *nl = strchr(ans, '\n');
  if (nl)
    *nl = 0;
  if (strncmp(ans, "ok ", 3) == 0) {
    if (id)
      *id = strtoull(ans + 3, NULL, 10);
    return 0;
  }
  if (strncmp(ans, "error ", 6) == 0)
    return cf_fail(EINVAL, "page server %s refused: %s", path, ans + 6);
  return cf_fail(got ? EPROTO : ETIMEDOUT, "page server %s: %s", path,
                 got ? "malformed reply to the handshake" : "no reply to the handshake");
}
