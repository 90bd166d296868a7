/* What checking a template's layers before their first use costs
 * (lib/image.c, cf_image_check): the first fork's memory set-up of a 50 MiB
 * template (cf_image_open + cf_cowmap_map, the file backend's work, then
 * unmap and close), measured three ways interleaved in one run:
 *   unchecked  the layers already known good to the store handle: the work
 *              the code did before checks existed, plus one lookup;
 *   first      a fresh store handle: the first fork in a process, paying
 *              the XXH3 of every layer;
 *   reuse      the same open image mapped again (the daemon's and
 *              `fork -n`'s path): one atomic load more than unchecked.
 * Plus XXH3-64 alone over the layer in memory, for scale. No KVM needed.
 * Usage: bench/check [MiB (default 50)] [runs (default 21)] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xxhash.h>

#include "cowfork/cowmap.h"
#include "cowfork/error.h"
#include "cowfork/image.h"
#include "cowfork/store.h"
#include "internal.h"

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

/* Open and map the image from store s (and unmap it); ms. */
static double map_once(struct cf_store *s)
{
  double t0 = now_ms();
  struct cf_image *img = cf_image_open(s, "t");
  struct cf_cowmap m;
  if (!img || cf_cowmap_map(img, NULL, 0, &m) < 0) {
    fprintf(stderr, "bench/check: %s\n", cf_error());
    exit(1);
  }
  double t1 = now_ms();
  cf_cowmap_unmap(&m);
  cf_image_close(img);
  return t1 - t0;
}

int main(int argc, char **argv)
{
  int mib = argc > 1 ? atoi(argv[1]) : 50, runs = argc > 2 ? atoi(argv[2]) : 21;
  if (mib <= 0 || runs <= 0)
    return fprintf(stderr, "usage: bench/check [MiB] [runs]\n"), 2;
  char dir[] = "/var/tmp/cowfork-bench-check.XXXXXX", path[300], cmd[400];
  if (!mkdtemp(dir))
    return perror("mkdtemp"), 1;
  size_t len = (size_t)mib << 20;
  char *buf = malloc(len);
  srand(1);
  for (size_t i = 0; i < len; i += 4)
    *(uint32_t *)(buf + i) = (uint32_t)rand() | 1; /* no zero block: all of it is stored */
  snprintf(path, sizeof path, "%s/t.raw", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || cf_pwrite_full(fd, buf, len, 0) < 0)
    return perror(path), 1;
  snprintf(path, sizeof path, "%s/store", dir);
  struct cf_store *warm = cf_store_open(path);
  if (!warm || cf_image_import(warm, fd, "t", 4096, NULL, NULL) < 0)
    return fprintf(stderr, "bench/check: %s\n", cf_error()), 1;
  close(fd);
  /* The layer in the page cache, as a template's is when it is forked. */
  snprintf(cmd, sizeof cmd, "cat %s/store/layers/* >/dev/null", dir);
  if (system(cmd) != 0)
    return 1;
  struct cf_image *reuse = cf_image_open(warm, "t");
  if (!reuse || cf_image_check(reuse) < 0) /* the warm handle now knows the layer */
    return fprintf(stderr, "bench/check: %s\n", cf_error()), 1;

  double *un = calloc(runs, sizeof *un), *first = calloc(runs, sizeof *first), *re = calloc(runs, sizeof *re),
         *hash = calloc(runs, sizeof *hash);
  volatile uint64_t sink = 0;
  for (int r = -2; r < runs; r++) { /* two warm-up rounds */
    double u = map_once(warm);
    struct cf_store *cold = cf_store_open(path);
    double f = map_once(cold);
    cf_store_close(cold);
    double t0 = now_ms();
    struct cf_cowmap m;
    if (cf_cowmap_map(reuse, NULL, 0, &m) < 0)
      return fprintf(stderr, "bench/check: %s\n", cf_error()), 1;
    double t1 = now_ms();
    cf_cowmap_unmap(&m);
    double h0 = now_ms();
    sink += XXH3_64bits(buf, len);
    double h1 = now_ms();
    if (r >= 0) {
      un[r] = u;
      first[r] = f;
      re[r] = t1 - t0;
      hash[r] = h1 - h0;
    }
  }
  (void)sink;
  double mu = median(un, runs), mf = median(first, runs), mr = median(re, runs), mh = median(hash, runs);
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
  printf("cpu: %s; a %d MiB template image (one layer, page cache warm); median of %d runs, interleaved\n", cpu,
         mib, runs);
  printf("%-58s %10s\n", "memory set-up of a fork (image open + cowmap map)", "ms");
  printf("%-58s %10.3f\n", "  unchecked: layer already known good (the old work)", mu);
  printf("%-58s %10.3f\n", "  first use in a process: checks the layer's XXH3", mf);
  printf("%-58s %10.3f\n", "  reuse: the same open image mapped again", mr);
  printf("%-58s %10.3f\n", "first - unchecked (the budget: <= 10 ms)", mf - mu);
  printf("%-58s %10.3f\n", "XXH3-64 alone over the layer in memory", mh);
  cf_image_close(reuse);
  cf_store_close(warm);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) != 0;
}
