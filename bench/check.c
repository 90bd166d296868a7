/* What checking a template's layers before their first use costs
 * (lib/image.c, cf_image_check): the first fork's memory set-up of a 50 MiB
 * template (cf_image_open + cf_cowmap_map, the file backend's work, then
 * unmap and close), measured interleaved in one run:
 *   unchecked  the layers already known good to the store handle: the work
 *              the code did before checks existed, plus one lookup;
 *   first      a fresh store handle whose layer has no record in checked/
 *              (lib/store.c): the first fork of a layer, paying
 *              the XXH3 of every layer; for three layers with the same
 *              bytes that differ only in how they were written, which is
 *              what decides the size of their page-cache folios and so the
 *              cost of reading them back:
 *                snapshot  runs of 1-16 pages appended through
 *                          cf_layer_writer (as shim/snapshot.c stores a
 *                          template's dirty pages): staged 2 MiB writes;
 *                per-run   the same runs, one pwrite each: what the layer
 *                          writer did before it staged (the file is
 *                          rewritten so and renamed over the layer);
 *                import    cf_image_import, 4 MiB writes;
 *   recorded   a fresh store handle, the layer recorded in checked/ (the
 *              next process's first fork: a record read more than
 *              unchecked);
 *   reuse      the same open image mapped again (the daemon's and
 *              `fork -n`'s path): one atomic load more than unchecked.
 * For the choice of method: XXH3-64 over an mmap (MAP_POPULATE) of the
 * snapshot and per-run layers, and over the layer in memory. And the writing
 * side (a pause): appending the runs through cf_layer_writer vs one pwrite
 * per run, page cache only (the file is dropped, not fsync'ed). No KVM.
 * Usage: bench/check [MiB (default 50)] [runs (default 21)] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cowfork/cowmap.h"
#include "cowfork/error.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "cowfork/store.h"
#include "internal.h"

#define PAGE 4096u

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
  qsort(v, n, sizeof *v, cmp_d);
  return v[n / 2];
}

static void die(void)
{
  fprintf(stderr, "bench/check: %s\n", cf_error());
  exit(1);
}

/* Open and map image name from store s (and unmap it); ms. */
static double map_once(struct cf_store *s, const char *name)
{
  double t0 = now_ms();
  struct cf_image *img = cf_image_open(s, name);
  struct cf_cowmap m;
  if (!img || cf_cowmap_map(img, NULL, 0, &m) < 0)
    die();
  double t1 = now_ms();
  cf_cowmap_unmap(&m);
  cf_image_close(img);
  return t1 - t0;
}

/* Drops the record in checked/ of image name's layer: its next use checks it. */
static void forget(struct cf_store *s, const char *name)
{
  char id[37], path[4096];
  struct cf_image *img = cf_image_open(s, name);
  if (!img)
    die();
  cf_id_format(cf_image_header(img)->layers[0].id, id);
  snprintf(path, sizeof path, "%s/checked/%s", cf_store_dir(s), id);
  unlink(path);
  cf_image_close(img);
}

/* The first use in a process: a fresh store handle; the layer's record kept or not. */
static double first_once(const char *store, const char *name, int recorded)
{
  struct cf_store *cold = cf_store_open(store);
  if (!cold)
    die();
  if (!recorded)
    forget(cold, name);
  double d = map_once(cold, name);
  cf_store_close(cold);
  return d;
}

/* Run lengths in pages, 1-16, covering npages. */
static unsigned *make_runs(size_t npages, size_t *nruns)
{
  unsigned *r = malloc(npages * sizeof *r);
  size_t n = 0;
  for (size_t p = 0; p < npages; n++) {
    unsigned k = 1 + (unsigned)rand() % 16;
    r[n] = p + k > npages ? (unsigned)(npages - p) : k;
    p += r[n];
  }
  *nruns = n;
  return r;
}

/* Appends the runs through a layer writer; with name, stores the image. */
static double write_snapshot(struct cf_store *s, const char *buf, const unsigned *runs, size_t nruns,
                             size_t len, const char *name)
{
  struct cf_layer_writer *w = cf_layer_writer_new(s, PAGE);
  struct cf_changes ch = {0};
  if (!w)
    die();
  double t0 = now_ms();
  uint64_t first = 0, off;
  for (size_t i = 0; i < nruns; first += runs[i++])
    if (cf_layer_writer_append(w, buf + first * PAGE, runs[i], &off) < 0 ||
        (name && cf_changes_add(&ch, first, runs[i], CF_LAYER_NEW, off) < 0))
      die();
  double t1 = now_ms();
  if (!name) {
    cf_layer_writer_abort(w);
    return t1 - t0;
  }
  struct cf_header *parent = cf_header_new_empty(len, PAGE);
  if (!parent || cf_image_commit(s, parent, name, &ch, w) < 0)
    die();
  cf_header_free(parent);
  cf_changes_free(&ch);
  return t1 - t0;
}

/* One pwrite per run into path (the writer before staging); ms. */
static double write_per_run(const char *path, const char *buf, const unsigned *runs, size_t nruns)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return perror(path), exit(1), 0;
  double t0 = now_ms();
  uint64_t first = 0;
  for (size_t i = 0; i < nruns; first += runs[i++])
    if (cf_pwrite_full(fd, buf + first * PAGE, (size_t)runs[i] * PAGE, first * PAGE) < 0)
      return perror(path), exit(1), 0;
  double t1 = now_ms();
  close(fd);
  return t1 - t0;
}

/* The path of image name's only layer. */
static void layer_path(struct cf_store *s, const char *name, char *path, size_t len)
{
  struct cf_image *img = cf_image_open(s, name);
  if (!img || cf_store_layer_path(s, cf_image_header(img)->layers[0].id, path, len) < 0)
    die();
  cf_image_close(img);
}

static double hash_mmap(const char *path, size_t len, volatile uint64_t *sink)
{
  double t0 = now_ms();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  void *p = fd < 0 ? MAP_FAILED : mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED)
    return perror(path), exit(1), 0;
  *sink += XXH3_64bits(p, len);
  munmap(p, len);
  close(fd);
  return now_ms() - t0;
}

enum { UN, F_SNAP, F_RUN, F_IMP, F_REC, RE, M_SNAP, M_RUN, HASH, W_SNAP, W_RUN, NROWS };

int main(int argc, char **argv)
{
  int mib = argc > 1 ? atoi(argv[1]) : 50, runs = argc > 2 ? atoi(argv[2]) : 21;
  if (mib <= 0 || runs <= 0)
    return fprintf(stderr, "usage: bench/check [MiB] [runs]\n"), 2;
  char dir[] = "/var/tmp/cowfork-bench-check.XXXXXX", path[300], cmd[400], tmp[300], lsnap[300], lrun[300];
  if (!mkdtemp(dir))
    return perror("mkdtemp"), 1;
  size_t len = (size_t)mib << 20, nruns;
  char *buf = malloc(len);
  srand(1);
  for (size_t i = 0; i < len; i += 4)
    *(uint32_t *)(buf + i) = (uint32_t)rand() | 1; /* no zero block: all of it is stored */
  unsigned *rl = make_runs(len / PAGE, &nruns);
  snprintf(path, sizeof path, "%s/t.raw", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || cf_pwrite_full(fd, buf, len, 0) < 0)
    return perror(path), 1;
  snprintf(path, sizeof path, "%s/store", dir);
  struct cf_store *warm = cf_store_open(path);
  if (!warm || cf_image_import(warm, fd, "imp", PAGE, NULL, NULL) < 0)
    die();
  close(fd);
  write_snapshot(warm, buf, rl, nruns, len, "snap");
  write_snapshot(warm, buf, rl, nruns, len, "run");
  layer_path(warm, "snap", lsnap, sizeof lsnap);
  layer_path(warm, "run", lrun, sizeof lrun);
  /* The per-run layer: the same bytes rewritten one pwrite per run. */
  snprintf(tmp, sizeof tmp, "%s/run.tmp", dir);
  write_per_run(tmp, buf, rl, nruns);
  if (chmod(tmp, 0400) < 0 || rename(tmp, lrun) < 0)
    return perror(lrun), 1;
  sync();
  /* All three in the page cache, as a template's layer is when it is forked
   * (written moments ago, or read before). */
  snprintf(cmd, sizeof cmd, "cat %s/store/layers/* >/dev/null", dir);
  if (system(cmd) != 0)
    return 1;
  struct cf_image *reuse = cf_image_open(warm, "snap");
  if (!reuse || cf_image_check(reuse) < 0) /* the warm handle now knows the layer */
    die();

  double *v[NROWS];
  for (int i = 0; i < NROWS; i++)
    v[i] = calloc(runs, sizeof(double));
  volatile uint64_t sink = 0;
  for (int r = -2; r < runs; r++) { /* two warm-up rounds */
    double d[NROWS];
    d[UN] = map_once(warm, "snap");
    d[F_SNAP] = first_once(path, "snap", 0);
    d[F_RUN] = first_once(path, "run", 0);
    d[F_IMP] = first_once(path, "imp", 0);
    d[F_REC] = first_once(path, "snap", 1);
    double t0 = now_ms();
    struct cf_cowmap m;
    if (cf_cowmap_map(reuse, NULL, 0, &m) < 0)
      die();
    d[RE] = now_ms() - t0;
    cf_cowmap_unmap(&m);
    d[M_SNAP] = hash_mmap(lsnap, len, &sink);
    d[M_RUN] = hash_mmap(lrun, len, &sink);
    t0 = now_ms();
    sink += XXH3_64bits(buf, len);
    d[HASH] = now_ms() - t0;
    d[W_SNAP] = write_snapshot(warm, buf, rl, nruns, len, NULL);
    d[W_RUN] = write_per_run(tmp, buf, rl, nruns);
    unlink(tmp);
    if (r >= 0)
      for (int i = 0; i < NROWS; i++)
        v[i][r] = d[i];
  }
  (void)sink;
  double md[NROWS];
  for (int i = 0; i < NROWS; i++)
    md[i] = median(v[i], runs);
  char cpu[256] = "?";
  FILE *ci = fopen("/proc/cpuinfo", "re");
  char line[512];
  while (ci && fgets(line, sizeof line, ci))
    if (strncmp(line, "model name", 10) == 0) {
      snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
      cpu[strcspn(cpu, "\n")] = 0;
      break;
    }
  if (ci)
    fclose(ci);
  printf("cpu: %s; a %d MiB template image (one layer, %zu runs of 1-16 pages, page cache warm);\n"
         "median of %d runs, interleaved\n",
         cpu, mib, nruns, runs);
  printf("%-66s %9s\n", "memory set-up of a fork (image open + cowmap map)", "ms");
  printf("%-66s %9.3f\n", "  unchecked: layer already known good (the work before checks)", md[UN]);
  printf("%-66s %9.3f\n", "  first use, layer written by cf_layer_writer (staged, 2 MiB)", md[F_SNAP]);
  printf("%-66s %9.3f\n", "  first use, the same layer written one pwrite per run (before)", md[F_RUN]);
  printf("%-66s %9.3f\n", "  first use, layer written by import (4 MiB writes)", md[F_IMP]);
  printf("%-66s %9.3f\n", "  first use in a new process, the layer recorded in checked/", md[F_REC]);
  printf("%-66s %9.3f\n", "  reuse: the same open image mapped again", md[RE]);
  printf("%-66s %9.3f\n", "first - unchecked, cf_layer_writer's layer (budget: <= 10 ms)", md[F_SNAP] - md[UN]);
  printf("%-66s %9.3f\n", "first - unchecked, per-run layer (before)", md[F_RUN] - md[UN]);
  printf("%-66s %9.3f\n", "XXH3-64 over mmap(MAP_POPULATE), cf_layer_writer's layer", md[M_SNAP]);
  printf("%-66s %9.3f\n", "XXH3-64 over mmap(MAP_POPULATE), per-run layer", md[M_RUN]);
  printf("%-66s %9.3f\n", "XXH3-64 alone over the layer in memory", md[HASH]);
  printf("%-66s %9.3f\n", "writing the runs (no fsync): cf_layer_writer (staged)", md[W_SNAP]);
  printf("%-66s %9.3f\n", "writing the runs (no fsync): one pwrite per run (before)", md[W_RUN]);
  cf_image_close(reuse);
  cf_store_close(warm);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) != 0;
}
