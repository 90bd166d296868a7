/* cf_cowmap: mapping images copy-on-write, in a temp store.
 *
 * Images are imported from raw files with zero and random blocks and then
 * committed as modified children (two layers). Checked: the mapping's bytes
 * equal the raw file (normal and CF_COWMAP_COPY, block size 4096 and 512),
 * the byte counters, writes staying private across fork() and across an
 * independent mapper (this binary exec'd in helper mode), the layers staying
 * unchanged, and read-only mappers sharing the page cache (Private_Dirty;
 * reads of empty extents are private memory where the kernel has no zero
 * page for reads, mem_util.h t_zero_page).
 *
 * Helper mode: `cowmap --child STORE NAME OFFSET` maps image NAME on its
 * own, runs the child protocol of cross_process() on stdin/stdout, exits. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cowfork/cowmap.h"
#include "cowfork/error.h"
#include "cowfork/image.h"
#include "cowfork/store.h"
#include "mem_util.h"
#include "tap.h"

static char dir[256];
static struct cf_store *store;

/* Deterministic pseudo-random numbers, so a failure is reproducible. */
static uint64_t rnd(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void fill(char *b, size_t n, uint64_t seed)
{
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rnd(&x);
    memcpy(b + i, &v, 8);
  }
  for (; i < n; i++)
    b[i] = (char)rnd(&x);
}

/* Runs of 1..maxrun blocks, about a third of them zero. */
static void make_raw(char *buf, uint64_t size, uint32_t bs, unsigned maxrun, uint64_t seed)
{
  uint64_t x = seed + 77, nb = size / bs, b = 0;
  while (b < nb) {
    uint64_t n = 1 + rnd(&x) % maxrun;
    if (n > nb - b)
      n = nb - b;
    if (rnd(&x) % 3 == 0)
      memset(buf + b * bs, 0, n * bs);
    else
      fill(buf + b * bs, n * bs, rnd(&x));
    b += n;
  }
}

/* A child's raw contents: parent's, with some runs rewritten or zeroed. */
static void modify_raw(char *buf, uint64_t size, uint32_t bs, unsigned maxrun, uint64_t seed)
{
  uint64_t x = seed + 99, nb = size / bs, b = 0;
  while (b < nb) {
    uint64_t n = 1 + rnd(&x) % maxrun;
    if (n > nb - b)
      n = nb - b;
    unsigned r = rnd(&x) % 5;
    if (r == 0)
      fill(buf + b * bs, n * bs, rnd(&x));
    else if (r == 1)
      memset(buf + b * bs, 0, n * bs);
    b += n;
  }
}

static int write_raw(const char *name, const char *buf, uint64_t size)
{
  char p[512];
  snprintf(p, sizeof p, "%s/%s.raw", dir, name);
  int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  if (pwrite(fd, buf, size, 0) != (ssize_t)size) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Import raw as image name (parent NULL) or commit it as a child of parent. */
static int make_image(const char *name, const char *raw, uint64_t size, uint32_t bs,
                      const char *parent)
{
  int fd = write_raw(name, raw, size);
  if (fd < 0)
    return -1;
  int r;
  if (parent) {
    struct cf_image *p = cf_image_open(store, parent);
    r = p ? cf_image_commit_raw(store, p, fd, name, NULL, NULL) : -1;
    cf_image_close(p);
  } else
    r = cf_image_import(store, fd, name, bs, NULL, NULL);
  if (r < 0)
    diag("make_image %s: %s", name, cf_error());
  close(fd);
  return r;
}

static int all_zero(const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* Map name in both modes and check the contents and the counters. */
static void check_image(const char *name, const char *raw, uint64_t size, uint32_t bs,
                        uint32_t nlayers)
{
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  struct cf_image *img = cf_image_open(store, name);
  if (!ok(img != NULL, "%s: open", name)) {
    diag("%s", cf_error());
    return;
  }
  const struct cf_header *h = cf_image_header(img);
  struct cf_image_stats st;
  cf_image_stats(h, &st);
  uint64_t nlayer_ext = 0;
  for (uint64_t i = 0; i < h->nextents; i++)
    nlayer_ext += h->extents[i].layer != CF_LAYER_EMPTY;
  is(h->nlayers, nlayers, "%s: %u layers", name, nlayers);
  diag("%s: bs %u, %" PRIu64 " extents (%" PRIu64 " with data), stored %" PRIu64 ", empty %" PRIu64,
       name, bs, h->nextents, nlayer_ext, st.stored_bytes, st.empty_bytes);
  ok(st.stored_bytes > 0 && st.empty_bytes > 0, "%s: has stored and empty blocks", name);

  for (int copy = 0; copy < 2; copy++) {
    const char *mode = copy ? "copy" : "map";
    struct cf_cowmap m;
    int r = cf_cowmap_map(img, NULL, copy ? CF_COWMAP_COPY : 0, &m);
    if (!ok(r == 0, "%s %s: cf_cowmap_map", name, mode)) {
      diag("%s", cf_error());
      continue;
    }
    is(m.len, (size + pg - 1) / pg * pg, "%s %s: len is the size rounded up to pages", name, mode);
    ok(memcmp(m.addr, raw, size) == 0, "%s %s: contents equal the raw file", name, mode);
    ok(all_zero((char *)m.addr + size, m.len - size), "%s %s: zeros past the end", name, mode);
    is(m.mapped_bytes + m.copied_bytes, st.stored_bytes, "%s %s: mapped + copied = stored", name,
       mode);
    is(m.empty_bytes, st.empty_bytes, "%s %s: empty_bytes", name, mode);
    ok(m.nmaps <= h->nextents, "%s %s: nmaps %u <= %" PRIu64 " extents", name, mode, m.nmaps,
       h->nextents);
    diag("%s %s: mapped %" PRIu64 " copied %" PRIu64 " empty %" PRIu64 " nmaps %u", name, mode,
         m.mapped_bytes, m.copied_bytes, m.empty_bytes, m.nmaps);
    if (copy) {
      is(m.mapped_bytes, 0, "%s copy: nothing mapped", name);
      is(m.nmaps, 0, "%s copy: no mmap of a layer", name);
    } else if (bs >= pg) {
      is(m.mapped_bytes, st.stored_bytes, "%s map: every stored byte mapped", name);
      is(m.copied_bytes, 0, "%s map: nothing copied", name);
      is(m.nmaps, nlayer_ext, "%s map: one mmap per layer extent", name);
    } else {
      ok(m.copied_bytes > 0, "%s map: block size %u < page: some bytes copied", name, bs);
      ok(m.mapped_bytes > 0, "%s map: block size %u < page: some bytes still mapped", name, bs);
    }
    /* A write lands in our private copy only. */
    memset(m.addr, 0xa5, pg);
    ok(((unsigned char *)m.addr)[pg - 1] == 0xa5, "%s %s: the mapping is writable", name, mode);
    is(cf_cowmap_unmap(&m), 0, "%s %s: unmap", name, mode);
  }
  char *back = malloc(size);
  ok(back && cf_image_read(img, back, size, 0) == 0 && memcmp(back, raw, size) == 0,
     "%s: image unchanged by writes to its mappings", name);
  free(back);
  is(cf_image_verify(img, NULL, NULL), 0, "%s: layers verify", name);
  cf_image_close(img);
}

/* Cross-process regions: each child writes its own and the common one. */
#define REG (64u << 10)
#define COMMON (40ull << 20)
static const uint64_t child_off[3] = {3ull << 20, (17ull << 20) + 4096, 29ull << 20};

/* The child side: write the pattern, report 'w' (or 'x' if we do not see
 * it), wait for the parent's go, then check that our writes are still ours
 * and the other children's regions still hold the image's bytes; report
 * 'o' or 'x'. */
static int child_body(const struct cf_image *img, char *map, int me, int in, int out)
{
  char *pat = malloc(REG), *want = malloc(REG), c;
  int good = pat && want;
  if (good) {
    fill(pat, REG, 1000 + me);
    memcpy(map + child_off[me], pat, REG);
    memcpy(map + COMMON, pat, REG);
    good = memcmp(map + child_off[me], pat, REG) == 0 && memcmp(map + COMMON, pat, REG) == 0;
  }
  c = good ? 'w' : 'x';
  if (write(out, &c, 1) != 1 || read(in, &c, 1) != 1)
    good = 0;
  if (good)
    good = memcmp(map + child_off[me], pat, REG) == 0 && memcmp(map + COMMON, pat, REG) == 0;
  for (int i = 0; i < 3 && good; i++)
    if (i != me)
      good = cf_image_read(img, want, REG, child_off[i]) == 0 &&
             memcmp(map + child_off[i], want, REG) == 0;
  c = good ? 'o' : 'x';
  good = write(out, &c, 1) == 1 && good;
  free(pat);
  free(want);
  return good ? 0 : 1;
}

static int helper(int argc, char **argv)
{
  if (argc != 5)
    return 2;
  struct cf_store *s = cf_store_open(argv[2]);
  struct cf_image *img = s ? cf_image_open(s, argv[3]) : NULL;
  struct cf_cowmap m;
  uint64_t off = strtoull(argv[4], NULL, 0);
  int me = -1;
  for (int i = 0; i < 3; i++)
    if (child_off[i] == off)
      me = i;
  if (!img || me < 0 || cf_cowmap_map(img, NULL, 0, &m) < 0) {
    fprintf(stderr, "cowmap --child: %s\n", cf_error());
    return 1;
  }
  int r = child_body(img, m.addr, me, 0, 1);
  cf_cowmap_unmap(&m);
  cf_image_close(img);
  cf_store_close(s);
  return r;
}

static void cross_process(const char *name, const char *raw, uint64_t size)
{
  struct cf_image *img = cf_image_open(store, name);
  struct cf_cowmap m;
  if (!ok(img && cf_cowmap_map(img, NULL, 0, &m) == 0, "cross-process: map %s in the parent", name)) {
    diag("%s", cf_error());
    cf_image_close(img);
    return;
  }
  int up[3][2], down[3][2];
  pid_t pid[3];
  fflush(stdout);
  for (int i = 0; i < 3; i++) {
    if (pipe2(up[i], O_CLOEXEC) < 0 || pipe2(down[i], O_CLOEXEC) < 0) {
      ok(0, "pipe: %m");
      exit(done_testing());
    }
    pid[i] = fork();
    if (pid[i] == 0) {
      if (i < 2)
        _exit(child_body(img, m.addr, i, down[i][0], up[i][1]));
      /* An independent mapper: this binary, exec'd in helper mode. */
      char offs[32];
      snprintf(offs, sizeof offs, "%" PRIu64, child_off[i]);
      if (dup2(down[i][0], 0) < 0 || dup2(up[i][1], 1) < 0)
        _exit(3);
      execl("/proc/self/exe", "cowmap", "--child", dir, name, offs, (char *)NULL);
      _exit(4);
    }
    close(down[i][0]);
    close(up[i][1]);
  }
  char c;
  for (int i = 0; i < 3; i++)
    ok(read(up[i][0], &c, 1) == 1 && c == 'w', "child %d%s wrote and sees its writes", i,
       i == 2 ? " (exec'd)" : "");
  ok(memcmp(m.addr, raw, size) == 0, "parent does not see the children's writes");
  for (int i = 0; i < 3; i++)
    ok(write(down[i][1], "g", 1) == 1, "go to child %d", i);
  for (int i = 0; i < 3; i++) {
    int status = -1;
    ok(read(up[i][0], &c, 1) == 1 && c == 'o',
       "child %d still sees its own writes and not the others'", i);
    waitpid(pid[i], &status, 0);
    is(status, 0, "child %d exit status", i);
    close(up[i][0]);
    close(down[i][1]);
  }
  ok(memcmp(m.addr, raw, size) == 0, "parent mapping still equals the raw file");
  cf_cowmap_unmap(&m);
  cf_image_close(img);

  img = cf_image_open(store, name);
  char *back = malloc(size);
  ok(img && back && cf_image_read(img, back, size, 0) == 0 && memcmp(back, raw, size) == 0,
     "layers unchanged by the children (pread)");
  is(img ? cf_image_verify(img, NULL, NULL) : -1, 0, "layer checksums still verify");
  free(back);
  cf_image_close(img);
}

/* kB of a field of /proc/self/smaps_rollup, -1 if unavailable. */
static long rollup(const char *field)
{
  FILE *f = fopen("/proc/self/smaps_rollup", "re");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':')
      v = strtol(line + n + 1, NULL, 10);
  if (f)
    fclose(f);
  return v;
}

/* Parent and a child both read every page; the child's reads must not make
 * private copies. The child reports its Private_Dirty growth in kB. */
static void sharing(const char *name, const char *raw, uint64_t size)
{
  if (rollup("Private_Dirty") < 0) {
    printf("ok %d # SKIP no /proc/self/smaps_rollup\n", ++tap_n);
    return;
  }
  struct cf_image *img = cf_image_open(store, name);
  struct cf_cowmap m;
  if (!ok(img && cf_cowmap_map(img, NULL, 0, &m) == 0, "sharing: map %s in the parent", name)) {
    cf_image_close(img);
    return;
  }
  ok(memcmp(m.addr, raw, size) == 0, "sharing: parent read every page");
  int p[2];
  long res[3] = {-1, -1, -1};
  fflush(stdout);
  if (pipe(p) == 0) {
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      struct cf_image *ci = cf_image_open(store, name);
      struct cf_cowmap cm;
      long out[3] = {-1, -1, -1};
      long before = rollup("Private_Dirty"), sc0 = rollup("Shared_Clean");
      if (ci && cf_cowmap_map(ci, NULL, 0, &cm) == 0) {
        int same = memcmp(cm.addr, raw, size) == 0;
        out[0] = same ? rollup("Private_Dirty") - before : -1;
        out[1] = rollup("Shared_Clean") - sc0;
        out[2] = same;
      }
      _exit(write(p[1], out, sizeof out) == sizeof out ? 0 : 1);
    }
    close(p[1]);
    if (read(p[0], res, sizeof res) != sizeof res)
      res[0] = -1;
    close(p[0]);
    waitpid(pid, NULL, 0);
  }
  ok(res[2] == 1, "sharing: the child's own mapping reads the right bytes");
  /* Layer pages stay shared. Empty extents read as the zero page, or where
   * the kernel has none for reads as a private zeroed page each: exactly
   * their bytes more. Besides, the child's own allocations (< 1 MiB). */
  struct cf_image_stats st;
  cf_image_stats(cf_image_header(img), &st);
  long empty_kb = t_zero_page() == 0 ? (long)(st.empty_bytes >> 10) : 0;
#ifdef __SANITIZE_ADDRESS__
  /* ASan's memcmp reads the shadow of the child's fresh mapping, an eighth
   * of its size: private pages too where reads allocate. */
  empty_kb += t_zero_page() == 0 ? (long)(size >> 13) : 0;
#endif
  ok(res[0] >= empty_kb && res[0] < empty_kb + 1024,
     "sharing: child's Private_Dirty grew %ld kB (< 1 MiB%s) reading %" PRIu64 " MiB", res[0],
     empty_kb ? " + the bytes it read of empty anonymous memory: no zero page" : "", size >> 20);
  if (empty_kb)
    diag("empty anonymous memory read: %ld kB (empty extents %" PRIu64 " kB)", empty_kb,
         st.empty_bytes >> 10);
  /* Pages both processes map count as shared: the layer pages are. */
  ok(res[1] >= (long)(st.stored_bytes >> 11),
     "sharing: child's Shared_Clean grew %ld kB (layer data: %" PRIu64 " kB)", res[1],
     st.stored_bytes >> 10);
  cf_cowmap_unmap(&m);
  cf_image_close(img);
}

static void bad_input(const char *name)
{
  struct cf_image *img = cf_image_open(store, name);
  struct cf_cowmap m;
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  if (!ok(img != NULL, "bad input: open %s", name))
    return;
  const struct cf_header *h = cf_image_header(img);
  size_t len = (h->size + pg - 1) / pg * pg;
  char *area = mmap(NULL, len + pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ok(area != MAP_FAILED, "reserved an area");
  int r = cf_cowmap_map(img, area + 1, 0, &m), e = errno;
  is(r, -1, "unaligned addr fails");
  is(e, EINVAL, "... with EINVAL");
  ok(strstr(cf_error(), "cf_cowmap_map") != NULL, "... and a message naming the API: %s", cf_error());
  r = cf_cowmap_map(img, NULL, 0x80, &m);
  e = errno;
  is(r, -1, "unknown flag fails");
  is(e, EINVAL, "... with EINVAL");

  /* At the caller's address: replaces the range. */
  is(cf_cowmap_map(img, area + pg, 0, &m), 0, "map at a given address");
  ok(m.addr == area + pg && m.len == len, "... lands there");
  char *want = malloc(h->size);
  ok(want && cf_image_read(img, want, h->size, 0) == 0 && memcmp(m.addr, want, h->size) == 0,
     "... with the image's bytes");
  free(want);
  is(cf_cowmap_unmap(&m), 0, "unmap");
  ok(m.addr == NULL, "unmap clears the struct");
  is(cf_cowmap_unmap(&m), 0, "unmap twice is harmless");
  munmap(area, len + pg);
  cf_image_close(img);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
  return remove(p);
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--child") == 0)
    return helper(argc, argv);

  const char *tmpdir = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/cowfork-cowmap.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dir))
    skip_all("cannot make a temp directory");
  if (!(store = cf_store_open(dir)))
    skip_all("cannot open a store");

  /* Block size 4096: every extent is page-aligned, everything is mapped. */
  uint64_t size = 8u << 20;
  char *raw = malloc(size), *raw2 = malloc(size);
  make_raw(raw, size, 4096, 40, 1);
  memcpy(raw2, raw, size);
  modify_raw(raw2, size, 4096, 40, 2);
  is(make_image("base4k", raw, size, 4096, NULL), 0, "import base4k");
  is(make_image("child4k", raw2, size, 4096, "base4k"), 0, "commit child4k");
  check_image("base4k", raw, size, 4096, 1);
  check_image("child4k", raw2, size, 4096, 2);

  /* Block size 512, size not a multiple of the page: partial pages and
   * extents whose layer offset is not congruent are read in. A long first
   * run keeps some extent congruent and mapped. */
  size = (4u << 20) + 1536;
  make_raw(raw, size, 512, 40, 3);
  fill(raw, 256 * 512, 4);
  memcpy(raw2, raw, size);
  modify_raw(raw2, size, 512, 40, 5);
  is(make_image("base512", raw, size, 512, NULL), 0, "import base512");
  is(make_image("child512", raw2, size, 512, "base512"), 0, "commit child512");
  check_image("base512", raw, size, 512, 1);
  check_image("child512", raw2, size, 512, 2);
  free(raw);
  free(raw2);

  /* 64 MiB, two layers: cross-process isolation and page sharing. */
  size = 64u << 20;
  raw = malloc(size);
  raw2 = malloc(size);
  make_raw(raw, size, 4096, 256, 6);
  memcpy(raw2, raw, size);
  modify_raw(raw2, size, 4096, 256, 7);
  is(make_image("big", raw, size, 4096, NULL), 0, "import big");
  is(make_image("bigchild", raw2, size, 4096, "big"), 0, "commit bigchild");
  cross_process("bigchild", raw2, size);
  sharing("bigchild", raw2, size);
  free(raw);
  free(raw2);

  /* Fragmented: single blocks, about 20000 data extents, more than
   * CF_COWMAP_MAX_MAPS: the mapping still works, within the map budget. */
  size = 256u << 20;
  raw = malloc(size);
  make_raw(raw, size, 4096, 1, 8);
  if (ok(make_image("frag", raw, size, 4096, NULL) == 0, "import frag")) {
    struct cf_image *img = cf_image_open(store, "frag");
    struct cf_image_stats st;
    struct cf_cowmap m;
    cf_image_stats(cf_image_header(img), &st);
    ok(cf_image_header(img)->nextents > 2 * CF_COWMAP_MAX_MAPS, "frag has %llu extents",
       (unsigned long long)cf_image_header(img)->nextents);
    int r = cf_cowmap_map(img, NULL, 0, &m);
    ok(r == 0, "a fragmented image maps: %s", r ? cf_error() : "ok");
    if (r == 0) {
      ok(m.nmaps <= CF_COWMAP_MAX_MAPS, "nmaps %u within the budget", m.nmaps);
      is(m.mapped_bytes + m.copied_bytes, st.stored_bytes, "mapped + copied = stored");
      ok(memcmp(m.addr, raw, size) == 0, "fragmented contents match");
      cf_cowmap_unmap(&m);
    }
    cf_image_close(img);
  }
  free(raw);

  bad_input("child512");

  cf_store_close(store);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return done_testing();
}
