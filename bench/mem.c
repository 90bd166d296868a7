/* Copy-on-write memory for children, against its peers, in one run
 * (issue 4's "done when"). A temp store gets a 1 GiB image of random data
 * with some empty extents (runs of 8-40 MiB data, 1-4 MiB empty), then:
 *
 *  1. spawn latency of one child per backend (request to mapped, median of
 *     RUNS) against fork() of a process holding the same 1 GiB mapped and
 *     touched (fork to the child running), and against reading the image
 *     eagerly into anonymous memory (what a copy costs);
 *  2. 100 children per backend, each touching 256 pages and writing 16:
 *     time until all are ready (goal, file: <= 50 ms) and private memory per
 *     child from smaps_rollup (goal, file: written + <= 64 KiB; where the
 *     kernel has no zero page for reads, cf_dirty_shared_zero_page, the
 *     pages a child only read of empty extents are private too and are
 *     added to "written", said in the row);
 *  3. the uffd backend's first-touch time per fault (child-timed p50/p99,
 *     the server's own share, and one UFFDIO_COPY with nobody waiting: the
 *     floor) in both placements, each run alternating with the others:
 *     CPU-affine (the default: the child pinned, served by the page
 *     server's worker on its CPU, which blocks) and shared (the child left
 *     to the scheduler, served by the shared worker, which polls after a
 *     fault), against an anonymous minor fault (write to a fresh page)
 *     timed the same way (goal p50 <= 5 us, judged on the default), and the
 *     file backend's first touch;
 *     and faults on the recorded working set with prefetch against without
 *     (goal: >= 90 % fewer), for both backends;
 *  4. dirty scan of a child's 1 GiB file-backend mapping with 1 % of its
 *     pages written (a tenth of them with zeros): PAGEMAP_SCAN and reading
 *     /proc/PID/pagemap, both from another process, median of RUNS (goal
 *     <= 5 ms), both checked against the pages written (and, where the
 *     kernel has no zero page for reads, the read pages of empty extents,
 *     which it cannot tell from written ones); then the commit and
 *     the child image's own layer against the dirty non-zero pages (goal:
 *     <= 1 % more).
 *
 * Usage: bench/mem [--quick]   (RUNS=N overrides the repetitions; --quick
 * uses a 256 MiB image). Prints the table, the machine and PASS/MISS per
 * goal. Exit 0 whatever the goals say: a benchmark reports, tests judge. */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/dirty.h"
#include "cowfork/error.h"
#include "cowfork/fanout.h"
#include "cowfork/image.h"
#include "cowfork/mem.h"
#include "cowfork/store.h"
#include "cowfork/uffd.h"
#include "cowfork/zero.h"
#include "internal.h"
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#define PG 4096u
static uint64_t SIZE = 1ull << 30;
static int RUNS = 5;
static char dir[] = "/var/tmp/cowfork-bench-mem.XXXXXX";
static struct cf_store *store;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static int cmpd(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
  qsort(v, n, sizeof *v, cmpd);
  return v[n / 2];
}

static double pctl(double *v, size_t n, double q)
{
  qsort(v, n, sizeof *v, cmpd);
  return v[(size_t)(q * (n - 1))];
}

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw) { return remove(p); }
static void cleanup(void) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void die(const char *what)
{
  fprintf(stderr, "bench/mem: %s: %s\n", what, cf_error());
  exit(1);
}

/* The image: runs of data and empty space, random bytes. */
static void make_image(void)
{
  char raw[512];
  snprintf(raw, sizeof raw, "%s/base.raw", dir);
  int fd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, SIZE) < 0)
    die("create raw");
  uint64_t x = 42, off = 0;
  size_t chunk = 8u << 20;
  uint64_t *buf = malloc(chunk);
  bool data = true;
  while (off < SIZE) {
    uint64_t n = data ? (8 + rnd(&x) % 33) << 20 : (1 + rnd(&x) % 4) << 20;
    if (n > SIZE - off)
      n = SIZE - off;
    for (uint64_t done = 0; data && done < n;) {
      size_t k = n - done < chunk ? n - done : chunk;
      for (size_t i = 0; i < k / 8; i++)
        buf[i] = rnd(&x) | 1;
      if (pwrite(fd, buf, k, off + done) != (ssize_t)k)
        die("write raw");
      done += k;
    }
    off += n;
    data = !data;
  }
  free(buf);
  if (cf_image_import(store, fd, "base", 4096, NULL, NULL) < 0)
    die("import");
  close(fd);
  unlink(raw);
  /* The layers in the page cache, as for a template in use. */
  struct cf_image *img = cf_image_open(store, "base");
  char *b = malloc(8u << 20);
  for (uint64_t o = 0; o < SIZE; o += 8u << 20)
    cf_image_read(img, b, 8u << 20, o);
  free(b);
  cf_image_close(img);
}

/* --- Peers --------------------------------------------------------------- */

/* In a helper process: read the image eagerly into anonymous memory (timed),
 * then fork() RUNS times with that 1 GiB touched, timing fork to the child
 * running. Results through a pipe: eager seconds, fork median seconds. */
static void peers_fork(double *eager, double *forkt)
{
  int p[2];
  if (pipe(p) < 0)
    die("pipe");
  pid_t h = fork();
  if (h == 0) {
    struct cf_image *img = cf_image_open(store, "base");
    double t0 = now();
    char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!img || m == MAP_FAILED || cf_image_read(img, m, SIZE, 0) < 0)
      _exit(1);
    double r[2] = {now() - t0, 0}, v[64];
    for (int i = 0; i < RUNS; i++) {
      int q[2];
      if (pipe(q) < 0)
        _exit(1);
      double a = now();
      pid_t c = fork();
      if (c == 0) {
        if (write(q[1], "x", 1) != 1) { /* parent sees EOF */ }
        _exit(0);
      }
      char ch;
      if (read(q[0], &ch, 1) != 1)
        _exit(1);
      v[i] = now() - a;
      waitpid(c, NULL, 0);
      close(q[0]);
      close(q[1]);
    }
    r[1] = median(v, RUNS);
    if (write(p[1], r, sizeof r) != sizeof r)
      _exit(1);
    _exit(0);
  }
  close(p[1]);
  double r[2] = {0, 0};
  if (read(p[0], r, sizeof r) != sizeof r)
    die("fork peer");
  close(p[0]);
  waitpid(h, NULL, 0);
  *eager = r[0];
  *forkt = r[1];
}

/* First-touch time of n random pages of a fresh anonymous mapping, written
 * (a minor fault that allocates a page): the peer of a uffd fault. */
static double touch_p50(double *p99)
{
  size_t len = 256u << 20, n = 4096;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (m == MAP_FAILED)
    die("mmap");
  madvise(m, len, MADV_NOHUGEPAGE);
  double *v = malloc(n * sizeof *v);
  uint64_t x = 7, stride = len / PG / n;
  for (size_t i = 0; i < n; i++) {
    volatile char *p = m + ((i * stride) + rnd(&x) % stride) * PG;
    double t0 = now();
    *p = 1;
    v[i] = now() - t0;
  }
  double r = pctl(v, n, 0.5);
  *p99 = pctl(v, n, 0.99);
  free(v);
  munmap(m, len);
  return r;
}

/* The floor under a uffd fault: one UFFDIO_COPY of a page into a region
 * of our own with nobody waiting (no sleep, no wake-up), p50. */
static double copy_p50(void)
{
  size_t len = 64u << 20, n = 4096;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  char *src = aligned_alloc(PG, PG);
  memset(src, 7, PG);
  int u = cf_uffd_open(0, NULL);
  if (m == MAP_FAILED || u < 0 || cf_uffd_register(u, m, len, 0) < 0)
    return 0;
  double *v = malloc(n * sizeof *v);
  uint64_t x = 3, stride = len / PG / n;
  for (size_t i = 0; i < n; i++) {
    struct uffdio_copy c = {.dst = (uintptr_t)m + (i * stride + rnd(&x) % stride) * PG,
                            .src = (uintptr_t)src, .len = PG};
    double t0 = now();
    ioctl(u, UFFDIO_COPY, &c);
    v[i] = now() - t0;
  }
  double r = pctl(v, n, 0.5);
  free(v);
  free(src);
  close(u);
  munmap(m, len);
  return r;
}

/* The least any page server can cost a fault on this host: a faulting
 * thread and a server thread of this process, both pinned to CPU 0, the
 * server blocked in read() on the userfaultfd and answering each fault with
 * one UFFDIO_COPY of a fixed page: no epoll, no lookup, no state, no
 * second process. Child-timed first touches of random pages, p50. */
struct floor_arg {
  int u;
  size_t n;
  const char *src;
};

static void *floor_server(void *arg)
{
  struct floor_arg *a = arg;
  cf_pin_cpu(0);
  for (size_t served = 0; served < a->n;) {
    struct uffd_msg m[16];
    ssize_t r = read(a->u, m, sizeof m);
    for (ssize_t i = 0; i < r / (ssize_t)sizeof *m; i++) {
      if (m[i].event != UFFD_EVENT_PAGEFAULT)
        continue;
      struct uffdio_copy c = {.dst = m[i].arg.pagefault.address & ~(uint64_t)(PG - 1),
                              .src = (uintptr_t)a->src, .len = PG};
      ioctl(a->u, UFFDIO_COPY, &c);
      served++;
    }
  }
  return NULL;
}

static double floor_p50(void)
{
  size_t len = 256u << 20, n = 4096;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  char *src = aligned_alloc(PG, PG);
  double *v = malloc(n * sizeof *v);
  int u = cf_uffd_open(0, NULL);
  if (m == MAP_FAILED || !src || !v || u < 0 || cf_uffd_register(u, m, len, 0) < 0)
    return 0;
  madvise(m, len, MADV_NOHUGEPAGE);
  memset(src, 7, PG);
  fcntl(u, F_SETFL, fcntl(u, F_GETFL) & ~O_NONBLOCK);
  cpu_set_t old;
  sched_getaffinity(0, sizeof old, &old);
  cf_pin_cpu(0);
  struct floor_arg a = {u, n, src};
  pthread_t th;
  pthread_create(&th, NULL, floor_server, &a);
  uint64_t x = 5, stride = len / PG / n;
  for (size_t i = 0; i < n; i++) {
    volatile char *p = m + ((i * stride) + rnd(&x) % stride) * PG;
    double t0 = now();
    (void)*p;
    v[i] = now() - t0;
  }
  pthread_join(th, NULL);
  sched_setaffinity(0, sizeof old, &old);
  double r = pctl(v, n, 0.5);
  free(v);
  free(src);
  close(u);
  munmap(m, len);
  return r;
}

/* --- Dirty scan ------------------------------------------------------------- */

struct dirty_res {
  double scan_ms, pagemap_ms, commit_ms;
  bool scan_ok, pagemap_ok;
  uint64_t dirty_pages, want_pages, nonzero_pages, own_bytes, zeroed_blocks;
};

static void dirty_bench(struct dirty_res *dr)
{
  struct cf_image *img = cf_image_open(store, "base");
  if (!img)
    die("open");
  uint64_t np = SIZE / PG, nd = np / 100;
  /* Pages to write: distinct, spread; every tenth written with zeros. */
  uint64_t *pages = malloc(nd * sizeof *pages), x = 99, stride = np / nd;
  for (uint64_t i = 0; i < nd; i++)
    pages[i] = i * stride + rnd(&x) % stride;
  int go[2], ready[2];
  if (pipe(go) < 0 || pipe(ready) < 0)
    die("pipe");
  pid_t c = fork();
  struct cf_mem m;
  if (c == 0) {
    close(go[1]);
    close(ready[0]);
    struct cf_mem_opts o = {.img = img};
    if (cf_mem_backend_file.map(&o, &m) < 0)
      _exit(1);
    /* Read some pages too: reads must not count as dirty. */
    for (uint64_t p = 0; p < np; p += 7)
      (void)*(volatile char *)((char *)m.addr + p * PG);
    for (uint64_t i = 0; i < nd; i++) {
      char *p = (char *)m.addr + pages[i] * PG;
      if (i % 10 == 0)
        memset(p, 0, PG);
      else
        memset(p, (int)(i % 251) + 1, 64);
    }
    uint64_t a = (uintptr_t)m.addr;
    if (write(ready[1], &a, sizeof a) != sizeof a)
      _exit(1);
    char ch;
    if (read(go[0], &ch, 1) < 0) { /* exit either way */ }
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  uint64_t a;
  if (read(ready[0], &a, sizeof a) != sizeof a)
    die("dirty child");
  void *addr = (void *)(uintptr_t)a;
  size_t len = (SIZE + PG - 1) / PG * PG;
  double ts[64], tp[64];
  struct cf_dirty d1 = {0}, d2 = {0};
  for (int i = 0; i < RUNS; i++) {
    cf_dirty_free(&d1);
    double t0 = now();
    if (cf_dirty_scan(c, addr, len, CF_DIRTY_ANON, CF_DIRTY_SCAN, &d1) < 0)
      die("PAGEMAP_SCAN");
    ts[i] = now() - t0;
    cf_dirty_free(&d2);
    t0 = now();
    if (cf_dirty_scan(c, addr, len, CF_DIRTY_ANON, CF_DIRTY_PAGEMAP, &d2) < 0)
      die("pagemap");
    tp[i] = now() - t0;
  }
  dr->scan_ms = median(ts, RUNS) * 1e3;
  dr->pagemap_ms = median(tp, RUNS) * 1e3;
  /* Against the truth: exactly the written pages, and where reads of
   * untouched anonymous memory allocate, the read pages of empty extents. */
  const struct cf_header *ih = cf_image_header(img);
  bool zp = cf_dirty_shared_zero_page();
  char *want = calloc(np, 1);
  if (!want)
    die("calloc");
  for (uint64_t i = 0; i < nd; i++)
    want[pages[i]] = 1;
  for (uint64_t p = 0; !zp && p < np; p += 7) {
    int64_t e = cf_header_lookup(ih, p * PG / ih->block_size);
    want[p] |= e >= 0 && ih->extents[e].layer == CF_LAYER_EMPTY;
  }
  uint64_t nwant = 0;
  for (uint64_t p = 0; p < np; p++)
    nwant += want[p];
  dr->want_pages = nwant;
  for (int k = 0; k < 2; k++) {
    struct cf_dirty *d = k ? &d2 : &d1;
    bool good = d->pages == nwant;
    for (size_t r = 0; good && r < d->n; r++)
      for (uint64_t p = d->v[r].first; good && p < d->v[r].first + d->v[r].count; p++)
        good = p < np && want[p];
    *(k ? &dr->pagemap_ok : &dr->scan_ok) = good;
  }
  free(want);
  dr->dirty_pages = d1.pages;
  double t0 = now();
  struct cf_dirty_stats st;
  if (cf_dirty_commit(store, img, "child", c, addr, &d1, NULL, 0, &st) < 0)
    die("commit");
  dr->commit_ms = (now() - t0) * 1e3;
  close(go[1]);
  waitpid(c, NULL, 0);
  struct cf_header *h = cf_store_get_header(store, "child");
  struct cf_image_stats is;
  cf_image_stats(h, &is);
  dr->own_bytes = is.own_bytes;
  dr->zeroed_blocks = st.blocks_zeroed;
  /* Non-zero dirty pages: 9 in 10. */
  dr->nonzero_pages = nd - (nd + 9) / 10;
  cf_header_free(h);
  cf_dirty_free(&d1);
  cf_dirty_free(&d2);
  free(pages);
  cf_image_close(img);
}

/* --- Main ------------------------------------------------------------------- */

static struct cf_fanout_result fanc(const struct cf_mem_backend *be, unsigned n, uint64_t touch,
                                    uint64_t wr, bool prefetch, unsigned cpu)
{
  struct cf_fanout_opts o = {.store = store, .image = "base", .backend = be, .children = n,
                             .touch = touch, .write = wr, .prefetch = prefetch, .seed = 1,
                             .cpu = cpu};
  struct cf_fanout_result r;
  if (cf_fanout_run(&o, &r) < 0)
    die("fanout");
  if (r.failed)
    fprintf(stderr, "bench/mem: %u children failed\n", r.failed);
  return r;
}

/* With the backend's default placement (uffd: pinned, CPU-affine). */
static struct cf_fanout_result fan(const struct cf_mem_backend *be, unsigned n, uint64_t touch,
                                   uint64_t wr, bool prefetch)
{
  return fanc(be, n, touch, wr, prefetch, CF_FANOUT_CPU_DEFAULT);
}

static const char *mark(bool pass) { return pass ? "PASS" : "MISS"; }

int main(int argc, char **argv)
{
  if (getenv("RUNS"))
    RUNS = atoi(getenv("RUNS"));
  if (RUNS < 1 || RUNS > 64)
    RUNS = 5;
  if (argc > 1 && strcmp(argv[1], "--quick") == 0)
    SIZE = 256ull << 20;
  if (!mkdtemp(dir))
    die("mkdtemp");
  atexit(cleanup);
  char sdir[300];
  snprintf(sdir, sizeof sdir, "%s/store", dir);
  if (!(store = cf_store_open(sdir)))
    die("store");
  double t_start = now();
  make_image();
  {
    struct cf_header *h = cf_store_get_header(store, "base");
    struct cf_image_stats is;
    cf_image_stats(h, &is);
    struct utsname u;
    uname(&u);
    printf("# bench/mem: %llu MiB image, %llu extents, %llu MiB empty; %ld CPUs, kernel %s%s; "
           "runs %d\n", (unsigned long long)(SIZE >> 20), (unsigned long long)h->nextents,
           (unsigned long long)(is.empty_bytes >> 20), sysconf(_SC_NPROCESSORS_ONLN), u.release,
           cf_dirty_shared_zero_page() ? "" : " (no zero page for reads: reading empty extents "
                                              "costs private pages)", RUNS);
    cf_header_free(h);
  }

  /* 2. 100 children, first: before any page server thread has left a malloc
   * arena in this process for every forked child to touch. */
  struct cf_fanout_result f100 = fan(&cf_mem_backend_file, 100, 256, 16, false);
  struct cf_fanout_result u100 = fan(&cf_mem_backend_uffd, 100, 256, 16, false);

  /* 1. One child. */
  double sf[64], su[64], sus[64];
  for (int i = 0; i < RUNS; i++) {
    sf[i] = fan(&cf_mem_backend_file, 1, 16, 1, false).spawn_p50_us;
    su[i] = fan(&cf_mem_backend_uffd, 1, 16, 1, false).spawn_p50_us;
    sus[i] = fanc(&cf_mem_backend_uffd, 1, 16, 1, false, CF_FANOUT_CPU_FREE).spawn_p50_us;
  }
  double spawn_file = median(sf, RUNS), spawn_uffd = median(su, RUNS),
         spawn_uffd_free = median(sus, RUNS), eager, forkt;
  peers_fork(&eager, &forkt);


  /* 3. Faults. */
  /* Medians over RUNS of each run's p50 (p99, server time: of the median run's
   * neighbours alike), the peer measured in alternation with it. */
  double a50[64], a99[64], c50[64], fl50[64], w50[64], w99[64], wsv[64], s50[64], s99[64], ssv[64];
  struct cf_fanout_result u1 = {0}, us = {0};
  for (int i = 0; i < RUNS; i++) {
    a50[i] = touch_p50(&a99[i]);
    c50[i] = copy_p50();
    fl50[i] = floor_p50();
    u1 = fan(&cf_mem_backend_uffd, 1, 4096, 0, false); /* default: pinned, CPU-affine */
    w50[i] = u1.touch_p50_us;
    w99[i] = u1.touch_p99_us;
    wsv[i] = u1.server_us_per_fault;
    us = fanc(&cf_mem_backend_uffd, 1, 4096, 0, false, CF_FANOUT_CPU_FREE); /* shared worker */
    s50[i] = us.touch_p50_us;
    s99[i] = us.touch_p99_us;
    ssv[i] = us.server_us_per_fault;
  }
  double anon50 = median(a50, RUNS), anon99 = median(a99, RUNS), copy50 = median(c50, RUNS), floor50 = median(fl50, RUNS);
  u1.touch_p50_us = median(w50, RUNS);
  u1.touch_p99_us = median(w99, RUNS);
  u1.server_us_per_fault = median(wsv, RUNS);
  us.touch_p50_us = median(s50, RUNS);
  us.touch_p99_us = median(s99, RUNS);
  us.server_us_per_fault = median(ssv, RUNS);
  struct cf_fanout_result up = fan(&cf_mem_backend_uffd, 1, 4096, 0, true); /* records */
  up = fan(&cf_mem_backend_uffd, 1, 4096, 0, true);
  struct cf_fanout_result f1 = fan(&cf_mem_backend_file, 1, 4096, 0, false);
  char wp[512];
  snprintf(wp, sizeof wp, "%s/wset/base", sdir);
  unlink(wp); /* record again, through the file backend's fallback */
  struct cf_fanout_result fp = fan(&cf_mem_backend_file, 1, 4096, 0, true);
  fp = fan(&cf_mem_backend_file, 1, 4096, 0, true);

  /* 4. Dirty scan. */
  struct dirty_res dr;
  dirty_bench(&dr);

  double cut_u = u1.faults_per_child ? 1 - up.faults_per_child / u1.faults_per_child : 0;
  double cut_f = f1.faults_per_child ? 1 - fp.faults_per_child / f1.faults_per_child : 0;
  double over = dr.nonzero_pages ? (double)dr.own_bytes / (dr.nonzero_pages * PG) - 1 : 0;
  printf("\n%-44s %12s %12s %9s  %-22s %s\n", "measure", "cowfork", "peer", "ratio", "goal", "");
  printf("%-44s %12s %12s %9s  %-22s %s\n", "--------------------------------------------",
         "------------", "------------", "---------", "----------------------", "----");
  printf("%-44s %9.0f us %9.0f us %8.0fx  %-22s\n", "spawn 1 child, file vs fork() holding image", spawn_file,
         forkt * 1e6, forkt * 1e6 / spawn_file, "");
  printf("%-44s %9.0f us %9.0f us %8.0fx  %-22s\n", "spawn 1 child, uffd vs fork() holding image", spawn_uffd,
         forkt * 1e6, forkt * 1e6 / spawn_uffd, "");
  printf("%-44s %9.0f us %9.0f us %8.2fx  %-22s\n", "  uffd spawn: pinned (default) / child free",
         spawn_uffd, spawn_uffd_free, spawn_uffd / spawn_uffd_free, "");
  printf("%-44s %9.0f us %9.0f ms %8.0fx  %-22s\n", "spawn 1 child, file vs eager read of image",
         spawn_file, eager * 1e3, eager * 1e6 / spawn_file, "");
  printf("%-44s %9.1f ms %12s %9s  %-22s %s\n", "100 children all ready, file", f100.all_ready_ms,
         "", "", "<= 50 ms", mark(f100.all_ready_ms <= 50));
  printf("%-44s %9.1f ms %12s %9s  %-22s\n", "100 children all ready, uffd", u100.all_ready_ms, "",
         "", "");
  printf("%-44s %9.0f us %9.0f us %9s  %-22s\n", "  spawn p50 / p99 (file, of 100)", f100.spawn_p50_us,
         f100.spawn_p99_us, "", "");
  /* Without a zero page for reads, what a child only read of the empty
   * extents is private memory too: the kernel's, added to "written". */
  double extra = f100.shared_zero_page ? 0 : f100.read_empty_kib;
  char goal[64];
  snprintf(goal, sizeof goal, f100.shared_zero_page ? "<= written %.0f + 64 KiB"
                                                    : "<= wr+read-empty %.0f + 64", f100.written_kib + extra);
  printf("%-44s %8.0f KiB %8.0f KiB %9s  %-22s %s\n", "private per child, file (p50 / max)",
         f100.private_kib_p50, f100.private_kib_max, "", goal,
         mark(f100.private_kib_max <= f100.written_kib + extra + 64));
  printf("%-44s %8.0f KiB %12s %9s  %-22s\n", "  of which inside the mapping (p50)",
         f100.map_private_kib_p50, "", "", "");
  printf("%-44s %8.0f KiB %8.0f KiB %9s  %-22s\n", "private per child, uffd (p50 / max)",
         u100.private_kib_p50, u100.private_kib_max, "", "");
  printf("%-44s %10.1f %% %10.1f %% %9s  %-22s\n", "shared fraction of resident, file / uffd",
         100 * f100.shared_fraction, 100 * u100.shared_fraction, "", "");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s %s\n", "uffd fault p50, CPU-affine (default) vs anon",
         u1.touch_p50_us, anon50 * 1e6, u1.touch_p50_us / (anon50 * 1e6), "<= 5 us",
         mark(u1.touch_p50_us <= 5));
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s %s\n", "  the same vs the floor (bare same-CPU server)",
         u1.touch_p50_us, floor50 * 1e6, u1.touch_p50_us / (floor50 * 1e6), "floor <= 5 us?",
         floor50 * 1e6 <= 5 ? "yes" : "no: goal out of reach here");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s\n", "uffd fault p99, CPU-affine vs anon p99",
         u1.touch_p99_us, anon99 * 1e6, u1.touch_p99_us / (anon99 * 1e6), "");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s\n", "uffd fault p50, shared server vs anon",
         us.touch_p50_us, anon50 * 1e6, us.touch_p50_us / (anon50 * 1e6), "");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s\n", "uffd fault p99, shared server vs anon p99",
         us.touch_p99_us, anon99 * 1e6, us.touch_p99_us / (anon99 * 1e6), "");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s\n", "  p50 CPU-affine vs shared server",
         u1.touch_p50_us, us.touch_p50_us, u1.touch_p50_us / us.touch_p50_us, "");
  printf("%-44s %9.2f us %9.2f us %9s  %-22s\n", "  server time/fault, mean: affine / shared",
         u1.server_us_per_fault, us.server_us_per_fault, "", "");
  printf("%-44s %9.2f us %12s %9s  %-22s\n", "  UFFDIO_COPY of a page, nobody waiting (p50)",
         copy50 * 1e6, "", "", "");
  printf("%-44s %9.2f us %9.2f us %8.2fx  %-22s\n", "file backend first touch p50 vs anon fault",
         f1.touch_p50_us, anon50 * 1e6, f1.touch_p50_us / (anon50 * 1e6), "");
  printf("%-44s %12.0f %12.0f %8.1f%%  %-22s %s\n", "faults on working set, uffd: prefetch / none",
         up.faults_per_child, u1.faults_per_child, 100 * cut_u, ">= 90 % fewer", mark(cut_u >= 0.9));
  printf("%-44s %9.2f us %12s %9s  %-22s\n", "  first touch p50 with prefetch, uffd", up.touch_p50_us,
         "", "", "");
  printf("%-44s %12.0f %12.0f %8.1f%%  %-22s %s\n", "faults on working set, file: prefetch / none",
         fp.faults_per_child, f1.faults_per_child, 100 * cut_f, ">= 90 % fewer", mark(cut_f >= 0.9));
  printf("%-44s %9.2f ms %9.2f ms %8.1fx  %-22s %s\n", "dirty scan 1 %: PAGEMAP_SCAN / pagemap read",
         dr.scan_ms, dr.pagemap_ms, dr.pagemap_ms / dr.scan_ms, "<= 5 ms", mark(dr.scan_ms <= 5));
  printf("%-44s %12s %12s %9s  %-22s %s\n",
         cf_dirty_shared_zero_page() ? "  both equal the pages written"
                                     : "  both equal the pages written + read-empty",
         dr.scan_ok ? "yes" : "NO", dr.pagemap_ok ? "yes" : "NO", "", "exact",
         mark(dr.scan_ok && dr.pagemap_ok));
  printf("%-44s %9.1f ms %12s %9s  %-22s\n", "commit the dirty pages (process_vm_readv)", dr.commit_ms,
         "", "", "");
  printf("%-44s %8.0f KiB %8.0f KiB %8.2f%%  %-22s %s\n", "child image own layer vs dirty non-zero",
         dr.own_bytes / 1024.0, dr.nonzero_pages * PG / 1024.0, 100 * over, "<= +1 %",
         mark(dr.own_bytes <= dr.nonzero_pages * PG * 1.01));
  printf("%-44s %12llu %12s %9s  %-22s\n", "  zero-written blocks stored as empty",
         (unsigned long long)dr.zeroed_blocks, "", "", "");
  printf("\n# %d pages touched per child in the fault rows; working set %llu pages (uffd), %llu (file); "
         "total %.0f s\n", 4096, (unsigned long long)up.wset_pages, (unsigned long long)fp.wset_pages,
         now() - t_start);
  cf_store_close(store);
  return 0;
}
