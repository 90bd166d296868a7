/* Memory backends end to end (lib/mem.c, lib/dirty.c, lib/wset.c, with
 * lib/uffd.c serving): a child process maps an image, changes it, and the
 * parent saves the child's memory as a child image by pid, in every mode:
 *   file, uffd (no tracking: present pages compared with the parent),
 *   uffd + write tracking (WP_ASYNC).
 * The child (this binary exec'd) writes data over data and over empty
 * extents, writes zeros over data, DONTNEEDs a range (file: reads the image
 * again; uffd: reads zeros from then on), and reads some more. The saved
 * image must equal the child's memory byte for byte (read with
 * process_vm_readv), store only what changed, and read zeros where the child
 * wrote zeros over data. Then chains of 10 generations, each child mapping
 * the previous saved image, alternating backends. Also: the backend table,
 * working-set files (round trip, stale, corrupt, missing), and prefetch
 * (installed before the handshake returns, no faults on those pages).
 *
 * Helper: mem --helper BACKEND STORE NAME SOCKET FLAGS SEED. */
#include <errno.h>
#include <inttypes.h>
#include <sys/uio.h>

#include "cowfork/dirty.h"
#include "cowfork/mem.h"
#include "cowfork/uffd.h"
#include "mem_util.h"
#include "tap.h"

#define SIZE (8u << 20)
#define PG 4096u
#define NP (SIZE / PG)

static char storedir[300], sock[300];
static struct cf_uffd_server *srv;

/* A listener per image (a listener serves one image): tdir/NAME.sock. */
static struct cf_image *open_imgs[64];
static int nopen;
static const char *sock_for(const char *name)
{
  snprintf(sock, sizeof sock, "%s/%s.sock", tdir, name);
  if (access(sock, F_OK) == 0 || nopen == 64)
    return sock;
  struct cf_image *img = cf_image_open(tstore, name);
  if (img && cf_uffd_server_listen(srv, sock, img, NULL) == 0)
    open_imgs[nopen++] = img;
  else
    cf_image_close(img);
  return sock;
}

/* The child's changes, from seed: 60 pages. */
static void mutate(char *a, uint64_t seed)
{
  uint64_t x = seed * 7777 + 5;
  for (int i = 0; i < 60; i++) {
    uint64_t p = t_rnd(&x) % NP;
    char *pg = a + p * PG;
    switch (i % 5) {
    case 0: t_fill(pg, PG, t_rnd(&x)); break;        /* new data */
    case 1: memset(pg, 0, PG); break;                /* zeros, over data or not */
    case 2: pg[t_rnd(&x) % PG] ^= 0x5a; break;       /* one byte */
    case 3: madvise(pg, 3 * PG > (NP - p) * PG ? PG : 3 * PG, MADV_DONTNEED); break;
    default: (void)*(volatile char *)pg; break;      /* a read */
    }
  }
}

static int helper(char **argv)
{
  struct cf_store *s = cf_store_open(argv[3]);
  struct cf_image *img = s ? cf_image_open(s, argv[4]) : NULL;
  const struct cf_mem_backend *be = cf_mem_backend_find(argv[2]);
  if (!img || !be)
    return 2;
  struct cf_mem m;
  struct cf_mem_opts o = {.img = img, .socket = argv[5], .flags = (unsigned)atoi(argv[6])};
  if (be->map(&o, &m) < 0) {
    fprintf(stderr, "map: %s\n", cf_error());
    return 3;
  }
  mutate(m.addr, strtoull(argv[7], NULL, 10));
  uint64_t r[2] = {(uintptr_t)m.addr, m.client};
  if (write(1, r, sizeof r) != sizeof r)
    return 4;
  char c;
  while (read(0, &c, 1) > 0) { }
  be->unmap(&m);
  cf_image_close(img);
  cf_store_close(s);
  return 0;
}

struct child {
  pid_t pid;
  int in, out;
  uint64_t addr, client;
};

static int child_start(struct child *c, const char *backend, const char *image, unsigned flags,
                       uint64_t seed)
{
  int in[2], out[2];
  if (pipe(in) < 0 || pipe(out) < 0)
    return -1;
  char fl[16], sd[32];
  snprintf(fl, sizeof fl, "%u", flags);
  snprintf(sd, sizeof sd, "%" PRIu64, seed);
  const char *path = sock_for(image);
  c->pid = fork();
  if (c->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execl("/proc/self/exe", "/proc/self/exe", "--helper", backend, storedir, image, path, fl, sd,
          (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c->in = in[1];
  c->out = out[0];
  uint64_t r[2];
  if (read(c->out, r, sizeof r) != sizeof r)
    return -1;
  c->addr = r[0];
  c->client = r[1];
  return 0;
}

static int child_end(struct child *c)
{
  close(c->in);
  close(c->out);
  return t_wait(c->pid);
}

static int add_zero(void *ctx, uint64_t first, uint64_t count)
{
  return cf_dirty_add(ctx, first, count);
}

/* Save child c's memory (mapped from parent) as name; check it. */
static int save_and_check(struct child *c, const char *backend, unsigned flags, const char *parent,
                          const char *name, char *mem)
{
  const struct cf_mem_backend *be = cf_mem_backend_find(backend);
  struct cf_image *p = cf_image_open(tstore, parent);
  struct cf_dirty d = {0}, z = {0};
  int ret = -1;
  if (!p)
    return -1;
  if (cf_dirty_scan(c->pid, (void *)(uintptr_t)c->addr, SIZE, be->dirty_kind(flags), CF_DIRTY_AUTO,
                    &d) < 0)
    goto out;
  if (be == &cf_mem_backend_uffd && cf_uffd_server_removed(srv, c->client, add_zero, &z) < 0)
    goto out;
  struct cf_dirty_stats st;
  if (cf_dirty_commit(tstore, p, name, c->pid, (void *)(uintptr_t)c->addr, &d, &z,
                      be->commit_flags(flags), &st) < 0)
    goto out;
  /* The child's memory, the truth. */
  struct iovec l = {mem, SIZE}, r = {(void *)(uintptr_t)c->addr, SIZE};
  if (process_vm_readv(c->pid, &l, 1, &r, 1, 0) != SIZE)
    goto out;
  ret = 0;
out:
  if (ret < 0)
    diag("%s: %s", name, cf_error());
  cf_dirty_free(&d);
  cf_dirty_free(&z);
  cf_image_close(p);
  return ret;
}

static bool image_equals(const char *name, const char *mem)
{
  struct cf_image *img = cf_image_open(tstore, name);
  char *b = malloc(SIZE);
  bool eq = img && b && cf_image_read(img, b, SIZE, 0) == 0 && memcmp(b, mem, SIZE) == 0;
  if (img && b && !eq)
    for (uint64_t p = 0; p < NP; p++)
      if (memcmp(b + p * PG, mem + p * PG, PG)) {
        diag("%s: page %" PRIu64 " differs", name, p);
        break;
      }
  free(b);
  cf_image_close(img);
  return eq;
}

static const struct {
  const char *backend;
  unsigned flags;
} modes[] = {{"file", 0}, {"uffd", 0}, {"uffd", CF_MEM_TRACK}};

static void one_child(int mi, const char *parent_raw)
{
  const char *be = modes[mi].backend;
  unsigned fl = modes[mi].flags;
  char name[64], *mem = malloc(SIZE);
  snprintf(name, sizeof name, "one-%s-%u", be, fl);
  struct child c;
  if (!ok(child_start(&c, be, "base", fl, 11) == 0, "%s: child maps and changes its memory", name))
    return;
  ok(save_and_check(&c, be, fl, "base", name, mem) == 0, "%s: saved by pid", name);
  ok(image_equals(name, mem), "%s: saved image equals the child's memory", name);
  /* Zeros over data read as zeros, stored as nothing. */
  uint64_t x = 11 * 7777 + 5, zp = UINT64_MAX;
  for (int i = 0; i < 60; i++) {
    uint64_t p = t_rnd(&x) % NP;
    if (i % 5 == 0)
      t_rnd(&x);
    if (i % 5 == 1 && zp == UINT64_MAX) {
      static const char z[PG];
      if (memcmp(parent_raw + p * PG, z, PG) != 0)
        zp = p;
    }
    if (i % 5 == 2)
      t_rnd(&x);
  }
  struct cf_image *img = cf_image_open(tstore, name);
  if (img && zp != UINT64_MAX) {
    char b[PG], z[PG] = {0};
    ok(cf_image_read(img, b, PG, zp * PG) == 0 && memcmp(b, z, PG) == 0 &&
           cf_image_header(img)->extents[cf_header_lookup(cf_image_header(img), zp)].layer ==
               CF_LAYER_EMPTY,
       "%s: zeros written over data: page %" PRIu64 " reads zeros, stored empty", name, zp);
  }
  struct cf_image_stats st;
  if (img) {
    cf_image_stats(cf_image_header(img), &st);
    ok(st.own_bytes <= 60 * PG, "%s: its layer holds only changed pages (%" PRIu64 " KiB)", name,
       st.own_bytes / 1024);
  }
  cf_image_close(img);
  is(child_end(&c), 0, "%s: child exits", name);
  free(mem);
}

static void chain(int start_mode)
{
  char prev[64] = "base", name[64], *mem = malloc(SIZE);
  int good = 0;
  for (int g = 1; g <= 10; g++) {
    int mi = (start_mode + g) % 3;
    snprintf(name, sizeof name, "chain%d-%d", start_mode, g);
    struct child c;
    if (child_start(&c, modes[mi].backend, prev, modes[mi].flags, 100 + g) < 0)
      break;
    int r = save_and_check(&c, modes[mi].backend, modes[mi].flags, prev, name, mem);
    child_end(&c);
    if (r < 0 || !image_equals(name, mem))
      break;
    struct cf_header *h = cf_store_get_header(tstore, name);
    bool gen = h && h->generation == (uint64_t)g;
    cf_header_free(h);
    if (!gen)
      break;
    good++;
    snprintf(prev, sizeof prev, "%s", name);
  }
  is(good, 10, "chain of 10 saved generations (from %s), each equal to its child's memory",
     modes[(start_mode + 1) % 3].backend);
  free(mem);
}

static void test_wset(void)
{
  char path[512];
  uint8_t id[16] = {1, 2, 3}, other[16] = {9};
  struct cf_wset w = {0}, r;
  for (uint64_t i = 0; i < 1000; i++)
    cf_wset_add(&w, (i * 7919) % 2048);
  ok(cf_wset_path(tstore, "base", path, sizeof path) == 0 && strstr(path, "/wset/base"),
     "working set path is STORE/wset/NAME");
  ok(cf_wset_save(path, id, &w) == 0, "save");
  ok(cf_wset_load(path, id, &r) == 0 && r.n == w.n && memcmp(r.pages, w.pages, w.n * 8) == 0,
     "load gives the same pages in the same order");
  cf_wset_free(&r);
  ok(cf_wset_load(path, other, &r) < 0 && cf_errno() == ESTALE, "another image's: ESTALE");
  int fd = open(path, O_WRONLY);
  ok(fd >= 0 && pwrite(fd, "x", 1, 100) == 1, "corrupt one byte");
  close(fd);
  ok(cf_wset_load(path, id, &r) < 0 && cf_errno() == EINVAL, "corrupt: EINVAL (%s)", cf_error());
  unlink(path);
  ok(cf_wset_load(path, id, &r) < 0 && cf_errno() == ENOENT, "missing: ENOENT");
  cf_wset_free(&w);
}

static void test_prefetch(struct cf_image *img)
{
  /* A second listener whose clients get a working set installed first. */
  char s2[300];
  snprintf(s2, sizeof s2, "%s/pf.sock", tdir);
  uint64_t pages[512];
  for (int i = 0; i < 512; i++)
    pages[i] = (uint64_t)i * 3 + 7;
  struct cf_uffd_opts uo = {.prefetch = pages, .nprefetch = 512};
  ok(cf_uffd_server_listen(srv, s2, img, &uo) == 0, "listener with a prefetch list");
  struct cf_mem m;
  struct cf_mem_opts o = {.img = img, .socket = s2, .flags = CF_MEM_PREFETCH};
  int rm = cf_mem_backend_uffd.map(&o, &m);
  if (!ok(rm == 0, "map with prefetch%s%s", rm ? ": " : "", rm ? cf_error() : ""))
    return;
  struct cf_uffd_stats st = {0};
  int rs = cf_uffd_server_stats(srv, m.client, &st);
  ok(rs == 0 && st.pages_prefetched == 512, "512 pages installed before the handshake returned (%" PRIu64
     ")", st.pages_prefetched);
  char *b = malloc(PG);
  int same = 0;
  for (int i = 0; i < 512; i++)
    same += cf_image_read(img, b, PG, pages[i] * PG) == 0 &&
            memcmp(b, (char *)m.addr + pages[i] * PG, PG) == 0;
  is(same, 512, "prefetched pages hold the image");
  cf_uffd_server_stats(srv, m.client, &st);
  is(st.faults, 0, "touching them took no fault");
  (void)*(volatile char *)((char *)m.addr + 2 * PG);
  cf_uffd_server_stats(srv, m.client, &st);
  is(st.faults, 1, "a page outside the set faults");
  free(b);
  cf_mem_backend_uffd.unmap(&m);
}

int main(int argc, char **argv)
{
  if (argc > 7 && strcmp(argv[1], "--helper") == 0)
    return helper(argv);
  if (t_setup("mem") < 0)
    skip_all("cannot make a temp store");
  if (access("/dev/userfaultfd", R_OK | W_OK) != 0)
    skip_all("no access to /dev/userfaultfd");
  snprintf(storedir, sizeof storedir, "%s/store", tdir);
  snprintf(sock, sizeof sock, "%s/uffd.sock", tdir);
  ok(cf_mem_backend_find("file") == &cf_mem_backend_file &&
         cf_mem_backend_find("uffd") == &cf_mem_backend_uffd && !cf_mem_backend_find("nope"),
     "backends by name");
  char *raw = malloc(SIZE);
  t_make_raw(raw, SIZE, 32, 5);
  ok(t_import("base", raw, SIZE) == 0, "import");
  struct cf_image *img = cf_image_open(tstore, "base");
  srv = cf_uffd_server_new(NULL, NULL);
  ok(srv != NULL, "page server");
  for (int i = 0; i < 3; i++)
    one_child(i, raw);
  for (int i = 0; i < 3; i++)
    chain(i);
  test_wset();
  test_prefetch(img);
  cf_uffd_server_free(srv);
  srv = NULL;
  for (int i = 0; i < nopen; i++)
    cf_image_close(open_imgs[i]);
  cf_image_close(img);
  free(raw);
  return done_testing();
}
