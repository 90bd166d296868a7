/* Fan-out of child processes over one image (include/cowfork/fanout.h).
 *
 * Processes: this one (the parent: times, the page server for uffd, reads
 * /proc), a zygote forked before anything is mapped, and the children the
 * zygote forks on request, one per request. A child inherits the open image
 * (header and layer fds) and the page list, maps the image through the
 * backend, says READY (with its own CLOCK_MONOTONIC time: the clock is
 * system-wide), waits until every child is ready (the go pipe closes: spawns
 * are timed without the others' work in the way), touches its pages timing
 * each first touch, writes some, says DONE and then waits for the release
 * pipe to close. Meanwhile the parent reads every touched page out of it
 * (process_vm_readv) and checks it against cf_image_read, and reads its
 * smaps_rollup while its memory is still there. Messages go over one
 * SOCK_SEQPACKET socket (one message each, never interleaved). A child is
 * never the parent's: the zygote ignores SIGCHLD so they are reaped.
 *
 * The zygote is forked before a round's page server starts, so it never
 * inherits the server thread (nor the malloc arena that thread would leave,
 * which glibc's fork handlers would make every child write to); children
 * talk to the server through its socket only. Spawn latency = READY time -
 * request time: the zygote's fork, the child's mapping (and for uffd the
 * handshake), no exec; what spawning a sandbox from a template costs.
 *
 * CPUs: with CF_FANOUT_CPU_PIN (the default for uffd) child i pins itself to
 * the (i mod n)-th CPU of the parent's affinity mask first thing after the
 * fork, before it maps, so the page server assigns it to its worker on that
 * CPU and every fault is served without a cross-CPU wake-up. The price is
 * load balancing: a pinned child never moves, even when its CPU is busy and
 * another is idle; round robin keeps the count per CPU even. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "cowfork/fanout.h"
#include "cowfork/uffd.h"
#include "internal.h"

#define NSAMPLES 200
#define MAX_CHILDREN 4096
#define MSG_TIMEOUT_MS 60000

enum { M_READY = 1, M_DONE, M_FAIL };

struct msg {
  uint32_t type, idx;
  int32_t pid;
  uint32_t nsamples;
  uint64_t t_ready, client, addr, len, errors, minflt;
  uint32_t samples[NSAMPLES]; /* first-touch times, ns: quantiles of this child's */
};

struct run {
  const struct cf_fanout_opts *o;
  struct cf_image *img;
  const struct cf_mem_backend *be;
  uint64_t *pages;
  uint64_t npages;
  const char *sock;
  unsigned flags;
  const struct cf_wset *wset;
  pthread_mutex_t lock;
  struct cf_wset rec; /* uffd recording, from the server's end callback */
  bool pin;
  int ncpu, cpus[CPU_SETSIZE]; /* the CPUs children are pinned to, round robin */
};

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double q)
{
  if (!n)
    return 0;
  qsort(v, n, sizeof *v, cmp_dbl);
  size_t i = (size_t)(q * (n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* --- The child ----------------------------------------------------------------- */

static void child_main(struct run *R, uint32_t idx, int rep, int release, int go)
{
  struct msg m = {.idx = idx, .pid = getpid()};
  struct cf_mem mem;
  if (R->pin && R->ncpu) {
    if (cf_pin_cpu(R->cpus[idx % R->ncpu]) < 0) {
      m.type = M_FAIL;
      if (send(rep, &m, sizeof m, 0) < 0) { /* the parent sees it missing */ }
      _exit(1);
    }
  }
  struct cf_mem_opts mo = {.img = R->img, .socket = R->sock, .flags = R->flags, .wset = R->wset};
  if (R->be->map(&mo, &mem) < 0) {
    m.type = M_FAIL;
    if (send(rep, &m, sizeof m, 0) < 0) { /* the parent sees it missing */ }
    _exit(1);
  }
  m.type = M_READY;
  m.t_ready = now_ns();
  m.client = mem.client;
  m.addr = (uintptr_t)mem.addr;
  m.len = mem.len;
  if (send(rep, &m, sizeof m, 0) < 0)
    _exit(1);
  char c;
  while (read(go, &c, 1) > 0 || errno == EINTR) { /* until every child is ready */ }
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  /* Scratch from mmap, not malloc: malloc would dirty heap pages and arena
   * headers that are not the child's memory. The contents are checked by
   * the parent (process_vm_readv), so the child needs no buffer for that. */
  size_t tlen = ((R->npages ? R->npages : 1) * sizeof(uint32_t) + pg - 1) / pg * pg;
  uint32_t *t = mmap(NULL, tlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (t == MAP_FAILED)
    _exit(1);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  for (uint64_t i = 0; i < R->npages; i++) {
    volatile char *p = (char *)mem.addr + R->pages[i] * pg;
    uint64_t t0 = now_ns();
    (void)*p;
    uint64_t dt = now_ns() - t0;
    t[i] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
  }
  getrusage(RUSAGE_SELF, &ru1);
  m.minflt = ru1.ru_minflt - ru0.ru_minflt;
  uint64_t nw = R->o->write < R->npages ? R->o->write : R->npages;
  for (uint64_t i = 0; i < nw; i++) {
    uint64_t v[2] = {idx, R->pages[i]};
    memcpy((char *)mem.addr + R->pages[i] * pg, v, sizeof v);
  }
  qsort(t, R->npages, sizeof *t, cmp_u32);
  m.nsamples = R->npages < NSAMPLES ? (uint32_t)R->npages : NSAMPLES;
  for (uint32_t k = 0; k < m.nsamples; k++)
    m.samples[k] = t[(uint64_t)k * R->npages / m.nsamples];
  m.type = M_DONE;
  if (send(rep, &m, sizeof m, 0) < 0)
    _exit(1);
  while (read(release, &c, 1) > 0 || errno == EINTR) { /* until the parent closes it */ }
  _exit(0);
}

static void zygote_main(struct run *R, int req, int rep, int release, int go)
{
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  uint32_t idx;
  for (;;) {
    ssize_t n = recv(req, &idx, sizeof idx, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n != sizeof idx)
      _exit(0);
    pid_t p = fork();
    if (p == 0) {
      close(req);
      child_main(R, idx, rep, release, go);
    }
    if (p < 0) {
      struct msg m = {.type = M_FAIL, .idx = idx};
      if (send(rep, &m, sizeof m, 0) < 0) { /* the parent times out */ }
    }
  }
}

/* --- /proc ----------------------------------------------------------------- */

static void rollup(pid_t pid, double *private_kib)
{
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(p, "re");
  *private_kib = 0;
  if (!f)
    return;
  unsigned long long v;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Private_Clean: %llu", &v) == 1 || sscanf(line, "Private_Dirty: %llu", &v) == 1)
      *private_kib += v;
  fclose(f);
}

/* Private and Shared kiB and Rss of the VMAs inside [a, b). */
static void smaps_range(pid_t pid, uint64_t a, uint64_t b, double *priv, double *shared, double *rss)
{
  char p[64], line[512];
  snprintf(p, sizeof p, "/proc/%d/smaps", (int)pid);
  FILE *f = fopen(p, "re");
  *priv = *shared = *rss = 0;
  if (!f)
    return;
  bool in = false;
  unsigned long long s, e, v;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%llx-%llx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = s >= a && e <= b;
      continue;
    }
    if (!in)
      continue;
    if (sscanf(line, "Private_Clean: %llu", &v) == 1 || sscanf(line, "Private_Dirty: %llu", &v) == 1)
      *priv += v;
    else if (sscanf(line, "Shared_Clean: %llu", &v) == 1 || sscanf(line, "Shared_Dirty: %llu", &v) == 1)
      *shared += v;
    else if (sscanf(line, "Rss: %llu", &v) == 1)
      *rss += v;
  }
  fclose(f);
}

static void end_cb(void *ctx, uint64_t id, pid_t pid, const struct cf_uffd_stats *st)
{
  struct run *R = ctx;
  if (!st->ntouched)
    return;
  pthread_mutex_lock(&R->lock);
  if (R->rec.n == 0)
    for (size_t i = 0; i < st->ntouched; i++)
      cf_wset_add(&R->rec, st->touched[i]);
  pthread_mutex_unlock(&R->lock);
}

/* Each child's touched pages, read from it, against the image (the first
 * `write` of them carry {child index, page} in their first 16 bytes).
 * Mismatches go into done[i].errors. */
static void check_children(struct run *R, const struct msg *ready, struct msg *done, unsigned n)
{
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), batch = 64;
  uint64_t nw = R->o->write < R->npages ? R->o->write : R->npages;
  char *want = malloc(R->npages * pg + 1), *got = malloc(batch * pg);
  if (!want || !got) {
    free(want);
    free(got);
    return;
  }
  for (uint64_t k = 0; k < R->npages; k++)
    if (cf_image_read(R->img, want + k * pg, pg, R->pages[k] * pg) < 0)
      memset(want + k * pg, 0xff, pg); /* cannot read: every child mismatches, loudly */
  for (unsigned i = 0; i < n; i++) {
    if (done[i].type != M_DONE)
      continue;
    for (uint64_t k = 0; k < R->npages; k += batch) {
      size_t m = R->npages - k < batch ? R->npages - k : batch;
      struct iovec l = {got, m * pg}, r[64];
      for (size_t j = 0; j < m; j++)
        r[j] = (struct iovec){(void *)(uintptr_t)(ready[i].addr + R->pages[k + j] * pg), pg};
      if (process_vm_readv(ready[i].pid, &l, 1, r, m, 0) != (ssize_t)(m * pg)) {
        done[i].errors += m;
        continue;
      }
      for (size_t j = 0; j < m; j++) {
        const char *g = got + j * pg, *w = want + (k + j) * pg;
        if (k + j < nw) {
          uint64_t v[2];
          memcpy(v, g, sizeof v);
          done[i].errors += v[0] != i || v[1] != R->pages[k + j] || memcmp(g + 16, w + 16, pg - 16);
        } else
          done[i].errors += memcmp(g, w, pg) != 0;
      }
    }
  }
  free(want);
  free(got);
}

/* Touched pages that are not written and lie wholly in one empty extent:
 * the file backend's anonymous memory, private where reads do not map the
 * zero page. */
static uint64_t read_empty_pages(const struct run *R)
{
  const struct cf_header *h = cf_image_header(R->img);
  uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), n = 0;
  uint64_t nw = R->o->write < R->npages ? R->o->write : R->npages;
  for (uint64_t k = nw; k < R->npages; k++) {
    int64_t i = cf_header_lookup(h, R->pages[k] * pg / h->block_size);
    if (i < 0)
      continue;
    const struct cf_extent *e = &h->extents[i];
    uint64_t end = (e->first + e->count) * h->block_size;
    n += e->layer == CF_LAYER_EMPTY && (end >= (R->pages[k] + 1) * pg || end >= h->size);
  }
  return n;
}

/* --- One round -------------------------------------------------------------- */

/* One round of n children. For uffd (R->sock set) a page server runs for
 * the round, started after the zygote is forked so that the zygote (and so
 * every child) never inherits the server thread's malloc arena. */
static int round_run(struct run *R, const struct cf_uffd_opts *uo, cf_uffd_end_fn end, unsigned n,
                     struct cf_fanout_result *res, struct cf_wset *filerec)
{
  struct cf_uffd_server *srv = NULL;
  int req[2] = {-1, -1}, rep[2] = {-1, -1}, rel[2] = {-1, -1}, go[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) < 0 ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rep) < 0 || pipe2(rel, O_CLOEXEC) < 0 ||
      pipe2(go, O_CLOEXEC) < 0) {
    int e = errno;
    for (int i = 0; i < 2; i++) {
      if (req[i] >= 0) close(req[i]);
      if (rep[i] >= 0) close(rep[i]);
      if (rel[i] >= 0) close(rel[i]);
      if (go[i] >= 0) close(go[i]);
    }
    return cf_fail(e, "socketpair/pipe: %s", strerror(e));
  }
  int sndbuf = 4 << 20;
  setsockopt(rep[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  setsockopt(rep[0], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof sndbuf);
  pid_t z = fork();
  if (z < 0)
    return cf_fail(errno, "fork: %m");
  if (z == 0) {
    close(req[0]);
    close(rep[0]);
    close(rel[1]);
    close(go[1]);
    zygote_main(R, req[1], rep[1], rel[0], go[0]);
  }
  close(req[1]);
  close(rep[1]);
  close(rel[0]);
  close(go[0]);
  int ret = -1;
  uint64_t *treq = NULL;
  struct msg *ready = NULL, *done = NULL;
  double *v = NULL;
  if (R->sock && (!(srv = cf_uffd_server_new(end, R)) ||
                  cf_uffd_server_listen(srv, R->sock, R->img, uo) < 0)) {
    n = 0;
    goto out;
  }
  treq = calloc(n, sizeof *treq);
  ready = calloc(n, sizeof *ready);
  done = calloc(n, sizeof *done);
  v = calloc((size_t)n * NSAMPLES + n, sizeof *v);
  if (!treq || !ready || !done || !v) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  uint64_t t0 = now_ns(), tlast = 0;
  for (uint32_t i = 0; i < n; i++) {
    treq[i] = now_ns();
    if (send(req[0], &i, sizeof i, 0) != sizeof i) {
      cf_fail(errno, "zygote: %m");
      goto out;
    }
  }
  unsigned ndone = 0, nfail = 0, nready = 0;
  struct msg m;
  while (ndone + nfail < n) {
    struct pollfd pf = {rep[0], POLLIN, 0};
    if (poll(&pf, 1, MSG_TIMEOUT_MS) <= 0) {
      cf_fail(ETIMEDOUT, "%u of %u children did not report", n - ndone - nfail, n);
      goto out;
    }
    if (recv(rep[0], &m, sizeof m, 0) != sizeof m || m.idx >= n)
      continue;
    if (m.type == M_READY) {
      ready[m.idx] = m;
      if (m.t_ready > tlast)
        tlast = m.t_ready;
      if (++nready + nfail == n) { /* all mapped: let them run */
        close(go[1]);
        go[1] = -1;
      }
    } else if (m.type == M_DONE) {
      done[m.idx] = m;
      ndone++;
    } else if (++nfail + nready == n && go[1] >= 0) {
      close(go[1]);
      go[1] = -1;
    }
  }
  /* Everyone is done and still alive: check what each one sees, then measure. */
  check_children(R, ready, done, n);
  double *spawn = calloc(n, sizeof *spawn), *prv = calloc(n, sizeof *prv),
         *mprv = calloc(n, sizeof *mprv);
  size_t nv = 0, ns = 0;
  double faults = 0, pref = 0, shared_sum = 0, svc = 0;
  for (uint32_t i = 0; spawn && prv && mprv && i < n; i++) {
    if (done[i].type != M_DONE) {
      continue;
    }
    if (done[i].errors)
      nfail++;
    spawn[ns] = (ready[i].t_ready - treq[i]) / 1e3;
    for (uint32_t k = 0; k < done[i].nsamples; k++)
      v[nv++] = done[i].samples[k] / 1e3;
    double sh, rss;
    rollup(ready[i].pid, &prv[ns]);

    smaps_range(ready[i].pid, ready[i].addr, ready[i].addr + ready[i].len, &mprv[ns], &sh, &rss);
    shared_sum += rss > 0 ? sh / rss : 0;
    if (srv) {
      struct cf_uffd_stats st;
      if (cf_uffd_server_stats(srv, ready[i].client, &st) == 0) {
        faults += st.faults;
        pref += st.pages_prefetched;
        svc += st.service_ns;
      }
    } else
      faults += done[i].minflt;
    if (filerec && i == 0)
      cf_wset_from_residency(ready[i].pid, (void *)(uintptr_t)ready[i].addr, ready[i].len, filerec);
    ns++;
  }
  if (res && spawn && prv && mprv) {
    res->children = n;
    res->failed = nfail;
    res->spawn_p50_us = pct(spawn, ns, 0.5);
    res->spawn_p99_us = pct(spawn, ns, 0.99);
    res->all_ready_ms = tlast > t0 ? (tlast - t0) / 1e6 : 0;
    res->touch_p50_us = pct(v, nv, 0.5);
    res->touch_p99_us = pct(v, nv, 0.99);
    res->faults_per_child = ns ? faults / ns : 0;
    res->prefetched_per_child = ns ? pref / ns : 0;
    res->server_us_per_fault = faults > 0 && srv ? svc / faults / 1e3 : 0;
    res->private_kib_p50 = pct(prv, ns, 0.5);
    res->private_kib_max = ns ? prv[ns - 1] : 0;
    res->map_private_kib_p50 = pct(mprv, ns, 0.5);
    res->shared_fraction = ns ? shared_sum / ns : 0;
    res->written_kib = (double)(R->o->write < R->npages ? R->o->write : R->npages) *
                       sysconf(_SC_PAGESIZE) / 1024;
    res->read_empty_kib = (double)read_empty_pages(R) * sysconf(_SC_PAGESIZE) / 1024;
    res->shared_zero_page = cf_dirty_shared_zero_page();
  }
  free(spawn);
  free(prv);
  free(mprv);
  ret = 0;
out:
  if (go[1] >= 0)
    close(go[1]);
  close(req[0]); /* the zygote exits */
  close(rel[1]); /* the children exit */
  close(rep[0]);
  waitpid(z, NULL, 0);
  if (srv) { /* wait for the children to be gone before the server may go */
    struct cf_uffd_server_info in;
    for (int i = 0; i < 1000; i++) {
      cf_uffd_server_info(srv, &in);
      if (in.clients == 0)
        break;
      usleep(5000);
    }
    cf_uffd_server_free(srv);
  }
  free(treq);
  free(ready);
  free(done);
  free(v);
  return ret;
}

int cf_fanout_run(const struct cf_fanout_opts *o, struct cf_fanout_result *res)
{
  memset(res, 0, sizeof *res);
  if (!o || !o->store || !o->image || !o->backend || o->children == 0 || o->children > MAX_CHILDREN)
    return cf_fail(EINVAL, "bad options (children 1..%d)", MAX_CHILDREN);
  struct run R = {.o = o, .be = o->backend};
  pthread_mutex_init(&R.lock, NULL);
  struct cf_wset ws = {0}, frec = {0};
  char dir[] = "/tmp/cowfork-fanout.XXXXXX", sock[64] = "";
  int ret = -1;
  bool uffd = o->backend == &cf_mem_backend_uffd;
  R.pin = o->cpu == CF_FANOUT_CPU_PIN || (o->cpu == CF_FANOUT_CPU_DEFAULT && uffd);
  if (R.pin) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
      return cf_fail(errno, "sched_getaffinity: %m");
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &set))
        R.cpus[R.ncpu++] = i;
  }
  res->pinned = R.pin;
  if (!(R.img = cf_image_open(o->store, o->image)))
    return -1;
  if (uffd) {
    if (!mkdtemp(dir)) {
      cf_fail(errno, "mkdtemp: %m");
      goto out;
    }
    snprintf(sock, sizeof sock, "%s/s", dir);
  }
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  uint64_t np = (cf_image_header(R.img)->size + pg - 1) / pg;
  R.npages = o->touch < np ? o->touch : np;
  if (!(R.pages = malloc((R.npages ? R.npages : 1) * sizeof *R.pages))) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  /* Distinct pseudo-random pages: a random permutation's prefix. */
  {
    uint64_t x = o->seed * 0x9E3779B97F4A7C15ull + 12345, a = 0;
    uint64_t stride = np / (R.npages ? R.npages : 1);
    for (uint64_t i = 0; i < R.npages; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      R.pages[i] = a + (stride > 1 ? x % stride : 0);
      a += stride ? stride : 1;
    }
    for (uint64_t i = R.npages; i > 1; i--) { /* shuffle the order of first touches */
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint64_t j = x % i, t = R.pages[i - 1];
      R.pages[i - 1] = R.pages[j];
      R.pages[j] = t;
    }
  }
  char wpath[4096];
  const uint8_t *id = cf_image_header(R.img)->id;
  if (o->prefetch) {
    if (cf_wset_path(o->store, o->image, wpath, sizeof wpath) < 0)
      goto out;
    if (cf_wset_load(wpath, id, &ws) < 0) {
      /* Record one child's first touches. */
      if (uffd) {
        R.sock = sock;
        R.flags = CF_MEM_RECORD;
        if (round_run(&R, NULL, end_cb, 1, NULL, NULL) < 0)
          goto out;
        ws = R.rec;
        R.rec = (struct cf_wset){0};
      } else if (round_run(&R, NULL, NULL, 1, NULL, &frec) < 0)
        goto out;
      else {
        ws = frec;
        frec = (struct cf_wset){0};
      }
      if (cf_wset_save(wpath, id, &ws) < 0)
        goto out;
      res->recorded = true;
    }
    res->wset_pages = ws.n;
    R.wset = &ws;
    R.flags = CF_MEM_PREFETCH;
    R.sock = uffd ? sock : NULL;
    if (!uffd && cf_wset_readahead(R.img, &ws) < 0)
      goto out;
  }
  struct cf_uffd_opts uo = {.prefetch = ws.pages, .nprefetch = ws.n};
  R.sock = uffd ? sock : NULL;
  ret = round_run(&R, &uo, NULL, o->children, res, NULL);
out:
  if (sock[0])
    rmdir(dir);
  cf_wset_free(&ws);
  cf_wset_free(&frec);
  cf_wset_free(&R.rec);
  free(R.pages);
  cf_image_close(R.img);
  pthread_mutex_destroy(&R.lock);
  return ret;
}
