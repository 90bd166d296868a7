/* Dirty scans (lib/dirty.c) against the truth, both methods, every kind.
 *
 * A child process (this binary exec'd: its own address space) maps a 16 MiB
 * image with empty extents through a backend, reads some pages, writes
 * others (pages two apart, so that the uffd server's sequential runs never
 * install a page nobody touched), and waits. The parent scans the child's
 * range by pid with PAGEMAP_SCAN and with /proc/PID/pagemap and checks both
 * against what the child did:
 *   file backend, ANON:     exactly the written pages, and where the kernel
 *                           has no zero page for reads (mem_util.h
 *                           t_zero_page) also the read pages of empty
 *                           extents: each got a private zeroed page, made
 *                           like a written one; its commit stores exactly
 *                           the written pages either way;
 *   uffd + tracking, WRITTEN: exactly the written pages;
 *   uffd, PRESENT:          the written pages and the read pages that hold data;
 *   any, RESIDENT:          every touched page.
 * Also a scan of our own mapping (pid 0), bad arguments, lib/dirty.c's
 * zero-page probe against the test's own, and the pagemap method right
 * after that probe (--zpfn: a fresh process).
 *
 * Helpers: dirty --helper BACKEND STORE NAME SOCKET TRACK; dirty --zpfn. */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>

#include "cowfork/dirty.h"
#include "cowfork/mem.h"
#include "cowfork/uffd.h"
#include "mem_util.h"
#include "tap.h"

#define SIZE (16u << 20)
#define PG 4096u
#define NP (SIZE / PG)

/* The child's plan: page p is written when p % 10 == 2, read when
 * p % 10 == 6, both only for p % 2 == 0 (never adjacent). */
static bool planned_write(uint64_t p) { return p % 10 == 2 || (p % 40 == 14); }
static bool planned_read(uint64_t p) { return p % 10 == 6; }

static int helper(char **argv)
{
  struct cf_store *s = cf_store_open(argv[3]);
  struct cf_image *img = s ? cf_image_open(s, argv[4]) : NULL;
  const struct cf_mem_backend *be = cf_mem_backend_find(argv[2]);
  if (!img || !be)
    return 2;
  struct cf_mem m;
  struct cf_mem_opts o = {.img = img, .socket = argv[5], .flags = atoi(argv[6]) ? CF_MEM_TRACK : 0};
  if (be->map(&o, &m) < 0) {
    fprintf(stderr, "map: %s\n", cf_error());
    return 3;
  }
  for (uint64_t p = 0; p < NP; p++) {
    char *a = (char *)m.addr + p * PG;
    if (planned_write(p))
      a[p % PG] = (char)(p | 1);
    else if (planned_read(p))
      (void)*(volatile char *)a;
  }
  uint64_t addr = (uintptr_t)m.addr;
  if (write(1, &addr, sizeof addr) != sizeof addr)
    return 4;
  char c;
  while (read(0, &c, 1) > 0) { }
  be->unmap(&m);
  cf_image_close(img);
  cf_store_close(s);
  return 0;
}

/* A fresh process: its first pagemap-method scan makes lib/dirty.c probe
 * for the zero page; right after, it writes 256 fresh anonymous pages
 * (pinned to one CPU, so pages freed just before are the first reused)
 * and prints how many the pagemap method reports as written. A probe
 * that took a page it then freed for the zero page would miss the written
 * page that reuses it. */
static int helper_zpfn(void)
{
  cpu_set_t one_cpu;
  CPU_ZERO(&one_cpu);
  CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one_cpu);
  sched_setaffinity(0, sizeof one_cpu, &one_cpu);
  enum { N = 256 };
  static char one[PG] __attribute__((aligned(PG)));
  one[0] = 1;
  struct cf_dirty d = {0};
  if (cf_dirty_scan(0, one, PG, CF_DIRTY_ANON, CF_DIRTY_PAGEMAP, &d) < 0)
    return 2;
  cf_dirty_free(&d);
  char *p = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return 3;
  madvise(p, N * PG, MADV_NOHUGEPAGE);
  for (int i = 0; i < N; i++)
    p[i * PG] = 1;
  if (cf_dirty_scan(0, p, N * PG, CF_DIRTY_ANON, CF_DIRTY_PAGEMAP, &d) < 0)
    return 4;
  printf("%" PRIu64 "\n", d.pages);
  fflush(stdout);
  cf_dirty_free(&d);
  munmap(p, N * PG);
  return 0;
}

static bool empty_page(const struct cf_header *h, uint64_t p)
{
  int64_t i = cf_header_lookup(h, p * PG / h->block_size);
  return h->extents[i].layer == CF_LAYER_EMPTY;
}

/* Runs of d against the expectation; diag the first difference. */
static bool matches(const struct cf_dirty *d, bool (*want)(const struct cf_header *, uint64_t),
                    const struct cf_header *h, const char *what)
{
  uint64_t n = 0;
  for (uint64_t p = 0; p < NP; p++)
    n += want(h, p);
  if (d->pages != n) {
    diag("%s: %" PRIu64 " pages, expected %" PRIu64, what, d->pages, n);
    return false;
  }
  for (size_t r = 0; r < d->n; r++)
    for (uint64_t p = d->v[r].first; p < d->v[r].first + d->v[r].count; p++)
      if (!want(h, p)) {
        diag("%s: page %" PRIu64 " reported but not expected", what, p);
        return false;
      }
  return true;
}

static bool want_written(const struct cf_header *h, uint64_t p) { return planned_write(p); }
/* File backend: a read page of an empty extent is private where the kernel
 * has no zero page for reads. */
static bool want_anon(const struct cf_header *h, uint64_t p)
{
  return planned_write(p) || (t_zero_page() == 0 && planned_read(p) && empty_page(h, p));
}
static bool want_present(const struct cf_header *h, uint64_t p)
{
  return planned_write(p) || (planned_read(p) && !empty_page(h, p));
}
static bool want_touched(const struct cf_header *h, uint64_t p)
{
  return planned_write(p) || planned_read(p);
}

static char storedir[300], sock[300];

static void run_case(const char *backend, int track, struct cf_image *img)
{
  const struct cf_header *h = cf_image_header(img);
  int in[2], out[2];
  if (pipe(in) < 0 || pipe(out) < 0)
    return;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execl("/proc/self/exe", "/proc/self/exe", "--helper", backend, storedir, "base", sock,
          track ? "1" : "0", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  uint64_t addr = 0;
  char name[64];
  snprintf(name, sizeof name, "%s%s", backend, track ? "+track" : "");
  if (!ok(read(out[0], &addr, sizeof addr) == sizeof addr, "%s: child mapped and wrote", name)) {
    close(in[1]);
    t_wait(pid);
    return;
  }
  enum cf_dirty_kind kind = strcmp(backend, "file") == 0 ? CF_DIRTY_ANON
                            : track                      ? CF_DIRTY_WRITTEN
                                                         : CF_DIRTY_PRESENT;
  bool (*want)(const struct cf_header *, uint64_t) = kind == CF_DIRTY_PRESENT ? want_present
                                                    : kind == CF_DIRTY_ANON    ? want_anon
                                                                               : want_written;
  struct cf_dirty a = {0}, b = {0}, r = {0};
  size_t len = SIZE;
  int ra = cf_dirty_scan(pid, (void *)(uintptr_t)addr, len, kind, CF_DIRTY_SCAN, &a);
  int rb = cf_dirty_scan(pid, (void *)(uintptr_t)addr, len, kind, CF_DIRTY_PAGEMAP, &b);
  const char *truth = kind == CF_DIRTY_ANON && t_zero_page() == 0
                          ? ": the written ones and the read ones of empty extents (no zero page)"
                          : "";
  ok(ra == 0 && matches(&a, want, h, "PAGEMAP_SCAN"), "%s: PAGEMAP_SCAN equals the truth (%" PRIu64
     " pages%s)", name, a.pages, truth);
  ok(rb == 0 && matches(&b, want, h, "pagemap"), "%s: /proc/PID/pagemap equals the truth", name);
  ok(a.n == b.n && a.pages == b.pages && (a.n == 0 || memcmp(a.v, b.v, a.n * sizeof *a.v) == 0),
     "%s: both methods give the same runs", name);
  if (kind == CF_DIRTY_ANON) {
    /* What the scan reports beyond the writes stores nothing. */
    uint64_t nw = 0, nre = 0;
    for (uint64_t p = 0; p < NP; p++) {
      nw += planned_write(p);
      nre += !planned_write(p) && want_anon(h, p);
    }
    struct cf_dirty_stats st = {0};
    int rc = ra == 0 ? cf_dirty_commit(tstore, img, "file-child", pid, (void *)(uintptr_t)addr, &a,
                                       NULL, 0, &st)
                     : -1;
    ok(rc == 0 && st.blocks_stored == nw && st.blocks_zeroed == 0 && st.blocks_same == nre,
       "%s: commit stores the %" PRIu64 " written pages, nothing for the %" PRIu64
       " read ones of empty extents the scan reported (stored %" PRIu64 ", same %" PRIu64 ")",
       name, nw, nre, st.blocks_stored, st.blocks_same);
  }
  cf_dirty_free(&a);
  cf_dirty_free(&b);
  int rr = cf_dirty_scan(pid, (void *)(uintptr_t)addr, len, CF_DIRTY_RESIDENT, CF_DIRTY_SCAN, &r);
  if (kind == CF_DIRTY_ANON) { /* file faults map cached neighbours too (fault-around) */
    uint64_t seen = 0;
    for (size_t i = 0; i < r.n; i++)
      for (uint64_t p = r.v[i].first; p < r.v[i].first + r.v[i].count; p++)
        seen += want_touched(h, p);
    uint64_t n = 0;
    for (uint64_t p = 0; p < NP; p++)
      n += want_touched(h, p);
    ok(rr == 0 && seen == n, "%s: resident pages include every touched one (%" PRIu64 " of %" PRIu64
       ")", name, seen, r.pages);
  } else
    ok(rr == 0 && matches(&r, want_touched, h, "resident"), "%s: resident pages are the touched ones",
       name);
  cf_dirty_free(&r);
  close(in[1]);
  is(t_wait(pid), 0, "%s: child exits cleanly", name);
  close(out[0]);
}

int main(int argc, char **argv)
{
  if (argc > 6 && strcmp(argv[1], "--helper") == 0)
    return helper(argv);
  if (argc > 1 && strcmp(argv[1], "--zpfn") == 0)
    return helper_zpfn();
  if (t_setup("dirty") < 0)
    skip_all("cannot make a temp store");
  snprintf(storedir, sizeof storedir, "%s/store", tdir);
  snprintf(sock, sizeof sock, "%s/uffd.sock", tdir);
  diag("PAGEMAP_SCAN %s", cf_dirty_have_scan() ? "available" : "missing: both methods read pagemap");
  char *raw = malloc(SIZE);
  t_make_raw(raw, SIZE, 40, 3);
  ok(t_import("base", raw, SIZE) == 0, "import");
  struct cf_image *img = cf_image_open(tstore, "base");

  int zp = t_zero_page();
  ok(zp >= 0, "the kernel's way with reads of anonymous memory was probed");
  ok(cf_dirty_shared_zero_page() == (zp != 0), "cf_dirty_shared_zero_page() says %s, as the test's probe",
     cf_dirty_shared_zero_page() ? "the zero page" : "private pages");
  run_case("file", 0, img);
  struct cf_uffd_server *srv = cf_uffd_server_new(NULL, NULL);
  if (srv && cf_uffd_server_listen(srv, sock, img, NULL) == 0 &&
      access("/dev/userfaultfd", R_OK | W_OK) == 0) {
    run_case("uffd", 1, img);
    run_case("uffd", 0, img);
  } else
    diag("no userfaultfd: uffd cases not run");
  cf_uffd_server_free(srv);

  /* Our own mapping, pid 0. */
  struct cf_mem m;
  struct cf_mem_opts o = {.img = img};
  struct cf_dirty d = {0};
  ok(cf_mem_backend_file.map(&o, &m) == 0, "map in this process");
  for (uint64_t p = 0; p < NP; p += 100)
    ((char *)m.addr)[p * PG + 5] ^= 1;
  int rs = cf_dirty_scan(0, m.addr, m.len, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d);
  ok(rs == 0 && d.pages == (NP + 99) / 100, "self scan: %" PRIu64 " pages written (%d %s)", d.pages,
     rs, rs ? cf_error() : "");
  cf_dirty_free(&d);
  ok(cf_dirty_scan(0, (char *)m.addr + 1, PG, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d) < 0 &&
         cf_errno() == EINVAL, "unaligned range refused");
  ok(cf_dirty_scan(999999999, m.addr, PG, CF_DIRTY_ANON, CF_DIRTY_AUTO, &d) < 0 && cf_errno() == ENOENT,
     "no such process: ENOENT");
  cf_mem_backend_file.unmap(&m);

  /* The pagemap method in a fresh process, right after its zero-page probe. */
  int pz[2];
  char got[32] = "";
  if (pipe(pz) == 0) {
    pid_t zpid = fork();
    if (zpid == 0) {
      dup2(pz[1], 1);
      execl("/proc/self/exe", "/proc/self/exe", "--zpfn", (char *)NULL);
      _exit(127);
    }
    close(pz[1]);
    ssize_t n = read(pz[0], got, sizeof got - 1);
    got[n > 0 ? n : 0] = 0;
    close(pz[0]);
    t_wait(zpid);
  }
  is(atoi(got), 256, "pagemap method after its zero-page probe: all 256 pages written just then are dirty");
  cf_image_close(img);
  free(raw);
  return done_testing();
}
