/* Shared memory, /dev/shm and hard links through a template's state
 * (snapshot.c's order: fs_save_prepare before the memory images, then
 * mm_save, fs_save, mm_save_shared; a child: mm_load, fs_load,
 * mm_load_shared), with no VM: the child's memory starts as a copy of the
 * template's /tmp region (what its image gives it). The template holds a
 * MAP_SHARED|MAP_ANONYMOUS mapping, a /dev/shm file mapped MAP_SHARED
 * (sem_open's), a deleted /tmp file only a mapping holds, a /tmp file once
 * mapped and unmapped, and hard links in /tmp and /dev/shm (one whose
 * first name was removed). Each child gets its own objects with the
 * template's bytes; a second process of a child (its own address space,
 * the same state: what a template of two processes loads) maps the same
 * objects, so a store of one is seen by the other; two children and the
 * template never see each other's stores. Hard links stay one inode with
 * their link count. Bad shared mapping records and hard link targets are
 * refused. Before, fs_save refused each of these by name. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

static char root[] = "/var/tmp/cowfork-stateshm.XXXXXX";


static const char *gpread(int fd, size_t n, off_t off)
{
  static char out[4096];
  uint64_t b = galloc(NULL, n + 1);
  long r = S4(SYS_pread64, fd, b, n, off);
  memcpy(out, hp(b), r > 0 ? (size_t)r : 0);
  out[r > 0 ? r : 0] = 0;
  return out;
}

static int gstat(const char *path, struct stat *st)
{
  uint64_t b = galloc(NULL, sizeof *st);
  long r = S2(SYS_stat, gs(path), b);
  memcpy(st, hp(b), sizeof *st);
  return (int)r;
}

struct saved {
  struct wbuf mm, fs, shared;
};

/* A process of a child: the VMAs and, for the first, the files; then the
 * shared mappings (another process takes the first's nodes). 0 or -1. */
static struct sb *load(const struct saved *s, struct sb *first, int *rc)
{
  static struct cf_sandbox_opts o2;
  o2 = opts;
  struct sb *n = shim_sb_new(&o2, SHIM_MEM, PROT_READ | PROT_WRITE);
  n->mmap_top = MMAP_TOP(SHIM_MEM);
  memcpy(n->mem + TMP_BASE(SHIM_MEM), sb->mem + TMP_BASE(SHIM_MEM), TMP_SIZE(SHIM_MEM)); /* its image */
  struct rbuf rm = {s->mm.p, s->mm.n, 0, false}, rf = {s->fs.p, s->fs.n, 0, false},
              rs = {s->shared.p, s->shared.n, 0, false};
  *rc = mm_load(n, &rm, "t");
  if (*rc == 0 && !first)
    *rc = fs_load(n, &rf, "t");
  if (*rc == 0 && first) {
    n->tmpfs = first->tmpfs;
    n->load_nodes = first->load_nodes;
    n->nload_nodes = first->nload_nodes;
  }
  if (*rc == 0)
    *rc = mm_load_shared(n, &rs, "t");
  if (first) {
    n->load_nodes = NULL;
    n->nload_nodes = 0;
  }
  if (*rc < 0)
    diag("load: %s", cf_error());
  return n;
}

static void leave(struct sb *c, bool first)
{
  mm_shared_fini(c);
  if (first)
    fs_fini(c);
  shim_sb_free(c);
}

int main(void)
{
  if (!mkdtemp(root))
    abort();
  shim_setup(root);
  struct sb *tmpl = sb;

  /* The template. */
  long anon = S6(SYS_mmap, 0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ok(anon > 0, "MAP_SHARED|MAP_ANONYMOUS, 3 pages");
  strcpy(hp((uint64_t)anon + 4096), "counter=41");
  int sem = gopen("/dev/shm/sem.tmpXYZ", O_CREAT | O_RDWR | O_EXCL, 0600);
  uint64_t page = galloc(NULL, 4096);
  memset(hp(page), 0, 4096);
  memcpy(hp(page), "semaphore", 9);
  is(S3(SYS_write, sem, page, 4096), 4096, "a /dev/shm file of one page (sem_open)");
  long semm = S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sem, 0);
  ok(semm > 0, "mapped MAP_SHARED");
  is(S2(SYS_link, gs("/dev/shm/sem.tmpXYZ"), gs("/dev/shm/sem.name")), 0, "linked to its name");
  is(S1(SYS_unlink, gs("/dev/shm/sem.tmpXYZ")), 0, "its first name removed");
  S1(SYS_close, sem);
  memcpy(hp((uint64_t)semm), "S", 1);
  int del = gopen("/tmp/del", O_CREAT | O_RDWR, 0600);
  is(S3(SYS_write, del, gs("deleted but mapped"), 18), 18, "a /tmp file");
  long delm = S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, del, 0);
  ok(delm > 0, "mapped MAP_SHARED, then closed and unlinked");
  S1(SYS_close, del);
  S1(SYS_unlink, gs("/tmp/del"));
  int once = gopen("/tmp/once", O_CREAT | O_RDWR, 0600);
  S3(SYS_write, once, gs("was shared"), 10);
  long oncem = S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, once, 0);
  memcpy(hp((uint64_t)oncem), "WAS", 3);
  S2(SYS_munmap, oncem, 4096);
  S1(SYS_close, once);
  int l1 = gopen("/tmp/l1", O_CREAT | O_RDWR, 0600);
  S3(SYS_write, l1, gs("linked"), 6);
  S1(SYS_close, l1);
  is(S2(SYS_link, gs("/tmp/l1"), gs("/tmp/l2")), 0, "a hard link in /tmp");
  int files0 = sb->hostfiles;

  struct saved s = {0};
  int rc = fs_save_prepare(sb);
  ok(rc == 0, "fs_save_prepare: %s", rc ? cf_error() : "the objects' data copied into /tmp pages");
  mm_save(sb, &s.mm);
  rc = fs_save(sb, &s.fs);
  ok(rc == 0, "fs_save: %s", rc ? cf_error() : "ok");
  mm_save_shared(sb, &s.shared);
  struct sb *c[2], *p2[2];
  int rcs[4];
  for (int k = 0; k < 2; k++) {
    c[k] = load(&s, NULL, &rcs[2 * k]);
    p2[k] = load(&s, c[k], &rcs[2 * k + 1]);
    fs_load_done(c[k]);
  }
  fs_save_done(sb);
  is(sb->hostfiles, files0, "the template keeps its objects (no fd more or less)");
  ok(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == 0 && rcs[3] == 0, "two children of two processes each load");
  if (rcs[0] || rcs[1] || rcs[2] || rcs[3])
    return done_testing();

  for (int k = 0; k < 2; k++) {
    diag("child %d", k);
    struct sb *a = c[k], *b = p2[k];
    ok(strcmp((char *)a->mem + anon + 4096, "counter=41") == 0 && strcmp((char *)b->mem + anon + 4096, "counter=41") == 0,
       "the anonymous shared memory has the template's bytes in both processes");
    is(a->nshmaps, 3, "three shared mappings");
    strcpy((char *)a->mem + anon + 4096, k ? "counter=B" : "counter=A");
    ok(strcmp((char *)b->mem + anon + 4096, k ? "counter=B" : "counter=A") == 0,
       "a store of one process is seen by the other (one object)");
    strcpy((char *)b->mem + anon + 8192, "back");
    ok(strcmp((char *)a->mem + anon + 8192, "back") == 0, "and the other way");
    uint64_t o1, o2;
    ok(mm_shared_at(a, (uint64_t)anon, &o1) == mm_shared_at(b, (uint64_t)anon, &o2) && o1 == o2,
       "the same object and offset in both (a futex there has one key)");
    ok(memcmp((char *)a->mem + semm, "Semaphore", 9) == 0, "the /dev/shm mapping: the template's bytes");
    ok(strcmp((char *)a->mem + delm, "deleted but mapped") == 0, "the deleted file's mapping too");
    sb = a;
    is(strcmp(glist("/dev/shm"), "sem.name"), 0, "/dev/shm: %s", glist("/dev/shm"));
    int f = gopen("/dev/shm/sem.name", O_RDWR, 0);
    ok(f >= 0 && strcmp(gpread(f, 9, 0), "Semaphore") == 0, "its file reads the mapping's bytes");
    memcpy((char *)b->mem + semm, k ? "2" : "1", 1);
    ok(strcmp(gpread(f, 9, 0), k ? "2emaphore" : "1emaphore") == 0,
       "a store of the other process through its mapping is in the file");
    S1(SYS_close, f);
    f = gopen("/tmp/once", O_RDONLY, 0);
    ok(strcmp(gpread(f, 10, 0), "WAS shared") == 0, "a file once shared: its data");
    S1(SYS_close, f);
    struct stat s1 = {0}, s2 = {0};
    int g1 = gstat("/tmp/l1", &s1), g2 = gstat("/tmp/l2", &s2);
    ok(g1 == 0 && g2 == 0 && s1.st_ino == s2.st_ino && s1.st_nlink == 2 &&
           s2.st_nlink == 2,
       "/tmp/l1 and l2: one inode, 2 links (%lu %lu, %lu %lu)", (unsigned long)s1.st_ino, (unsigned long)s2.st_ino,
       (unsigned long)s1.st_nlink, (unsigned long)s2.st_nlink);
    f = gopen("/tmp/l1", O_RDWR, 0);
    S4(SYS_pwrite64, f, gs(k ? "B" : "A"), 1, 0);
    S1(SYS_close, f);
    f = gopen("/tmp/l2", O_RDONLY, 0);
    ok(strcmp(gpread(f, 6, 0), k ? "Binked" : "Ainked") == 0, "a write through one name is read through the other");
    S1(SYS_close, f);
    g1 = gstat("/dev/shm/sem.name", &s1);
    ok(g1 == 0 && s1.st_nlink == 1, "/dev/shm/sem.name: 1 link (its first name went)");
    sb = tmpl;
  }
  ok(strcmp((char *)c[0]->mem + anon + 4096, "counter=A") == 0 && strcmp((char *)c[1]->mem + anon + 4096, "counter=B") == 0,
     "the children do not share with each other");
  ok(strcmp(hp((uint64_t)anon + 4096), "counter=41") == 0 && memcmp(hp((uint64_t)semm), "Semaphore", 9) == 0,
     "nor with the template");
  strcpy(hp((uint64_t)anon + 4096), "tmpl");
  ok(strcmp((char *)c[0]->mem + anon + 4096, "counter=A") == 0, "a store of the template reaches no child");

  /* Bad records (ANON: the anonymous mapping's node). */
#define ANON UINT64_MAX
  struct {
    const char *what;
    uint64_t start, end, off, id, nowrite;
  } bad[] = {
      {"node id 0", (uint64_t)anon, (uint64_t)anon + 4096, 0, 0, 0},
      {"a write-protection flag of 2", (uint64_t)anon, (uint64_t)anon + 4096, 0, ANON, 2},
      {"a node id past the end", (uint64_t)anon, (uint64_t)anon + 4096, 0, 1u << 30, 0},
      {"a directory", (uint64_t)anon, (uint64_t)anon + 4096, 0, 1, 0},
      {"an unaligned start", (uint64_t)anon + 1, (uint64_t)anon + 4096, 0,ANON, 0},
      {"an empty range", (uint64_t)anon, (uint64_t)anon, 0,ANON, 0},
      {"outside the VMAs", 4096ull << 20 >> 8, (4096ull << 20 >> 8) + 4096, 0,ANON, 0},
      {"an offset past 64 TiB", (uint64_t)anon, (uint64_t)anon + 4096, 1ull << 46,ANON, 0},
      {"in the /tmp region", TMP_BASE(SHIM_MEM), TMP_BASE(SHIM_MEM) + 4096, 0,ANON, 0},
  };
  uint64_t anon_id = 0;
  {
    struct rbuf r = {s.shared.p, s.shared.n, 16, false};
    for (int i = 0; i < 3 && !anon_id; i++) {
      uint64_t st = r_u64(&r), en = r_u64(&r), off = r_u64(&r), id = r_u64(&r);
      r_u64(&r);
      if (st == (uint64_t)anon)
        anon_id = id;
      (void)en;
      (void)off;
    }
  }
  ok(anon_id > 1, "the anonymous mapping's node id %llu", (unsigned long long)anon_id);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct wbuf w = {0};
    w_u64(&w, 0x3850414d48534343ull);
    w_u64(&w, 1);
    w_u64(&w, bad[i].start);
    w_u64(&w, bad[i].end);
    w_u64(&w, bad[i].off);
    w_u64(&w, bad[i].id == ANON ? anon_id : bad[i].id);
    w_u64(&w, bad[i].nowrite);
    struct saved s2 = {s.mm, s.fs, w};
    int r;
    struct sb *x = load(&s2, NULL, &r);
    ok(r < 0 && errno == EINVAL, "a shared mapping with %s: refused (%s)", bad[i].what, r ? cf_error() : "loaded");
    fs_load_done(x);
    leave(x, true);
    free(w.p);
  }
  {
    struct wbuf w = {0};
    w_u64(&w, 0x3850414d48534343ull);
    w_u64(&w, 2);
    for (int k = 0; k < 2; k++) {
      w_u64(&w, (uint64_t)anon);
      w_u64(&w, (uint64_t)anon + 4096);
      w_u64(&w, 0);
      w_u64(&w, anon_id);
      w_u64(&w, 0);
    }
    struct saved s2 = {s.mm, s.fs, w};
    int r;
    struct sb *x = load(&s2, NULL, &r);
    ok(r < 0 && errno == EINVAL, "two shared mappings over each other: refused (%s)", r ? cf_error() : "loaded");
    fs_load_done(x);
    leave(x, true);
    free(w.p);
  }
  for (int k = 0; k < 2; k++) {
    leave(p2[k], false);
    leave(c[k], true);
  }
  free(s.mm.p);
  free(s.fs.p);
  free(s.shared.p);
  S2(SYS_munmap, anon, 3 * 4096);
  S2(SYS_munmap, semm, 4096);
  S2(SYS_munmap, delm, 4096);
  shim_teardown();
  rmdir(root);
  return done_testing();
}
