/* Benchmark of cf_is_zero() (lib/zero.c) against the two obvious peers, a
 * plain byte loop and memcmp() against a static zero buffer, with memcpy()
 * of 2 MiB as the machine's bandwidth baseline, all in one run.
 *
 * Cases: 4 KiB and 2 MiB buffers that are all zero, have their first byte
 * non-zero (the common non-zero block), only their last byte non-zero (a full
 * scan for the peers; cf_is_zero's sample looks at the last byte, so not for
 * it) or only byte len-2 non-zero (outside the sample: a full scan for all).
 * Each measurement is 15 rounds of enough calls to take
 * >= 2 ms; the median round gives ns/call, and GB/s is bytes judged per
 * second. Buffers are reused, so 2 MiB working sets are cache-resident after
 * the first call (on this class of machine: L2/L3), for memcpy too.
 *
 * Usage: bench/zero [--json]. COWFORK_ZERO_IMPL=scalar|sse2|avx2 forces the
 * implementation cf_is_zero() uses. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cowfork/zero.h"
#include "internal.h"

#define ROUNDS 15
#define MIN_ROUND_NS 2e6
#define BIG (2u << 20)
#define HUGE (256u << 20) /* far larger than any cache: memory bandwidth */
#define SMALL 4096u
#define N_CONTENTS 4

/* memcmp's reference: non-const, so it lives in .bss and is written (faulted
 * in) at start-up rather than being the shared zero page, which would make
 * every one of its pages the same cache-hot 4 KiB. */
static unsigned char zeros[BIG];

/* The peer a C programmer writes first. Kept a byte-at-a-time loop: not
 * inlined into the timing loop, not vectorised. */
#ifdef __clang__
__attribute__((noinline)) static bool byte_loop(const unsigned char *p, size_t len)
{
#pragma clang loop vectorize(disable) interleave(disable)
  for (size_t i = 0; i < len; i++)
    if (p[i])
      return false;
  return true;
}
#else
__attribute__((noinline, noclone, optimize("no-tree-vectorize"))) static bool
byte_loop(const unsigned char *p, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (p[i])
      return false;
  return true;
}
#endif

__attribute__((noinline)) static bool memcmp_zero(const unsigned char *p, size_t len)
{
  return memcmp(p, zeros, len) == 0;
}

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

enum method { M_CF, M_LOOP, M_MEMCMP, M_MEMCPY, N_METHODS };
static const char *const method_names[] = { "cf_is_zero", "byte loop", "memcmp", "memcpy" };

/* Every result is summed into sink, so no call is dead code. */
static volatile unsigned long sink;

/* One round of iters calls; returns elapsed ns. The empty asm with a memory
 * clobber makes each call observe "new" memory, so no call can be hoisted
 * out of the loop or merged with the next; each call is a direct call. */
static double round_ns(enum method m, unsigned char *buf, size_t len, long iters)
{
  unsigned long acc = 0;
  double t0 = now_ns();
  switch (m) {
  case M_CF:
    for (long i = 0; i < iters; i++) {
      __asm__ volatile("" : : "r"(buf) : "memory");
      acc += cf_is_zero(buf, len);
    }
    break;
  case M_LOOP:
    for (long i = 0; i < iters; i++) {
      __asm__ volatile("" : : "r"(buf) : "memory");
      acc += byte_loop(buf, len);
    }
    break;
  case M_MEMCMP:
    for (long i = 0; i < iters; i++) {
      __asm__ volatile("" : : "r"(buf) : "memory");
      acc += memcmp_zero(buf, len);
    }
    break;
  case M_MEMCPY:
    /* buf holds 2 * len bytes: copy the first half onto the second. */
    for (long i = 0; i < iters; i++) {
      __asm__ volatile("" : : "r"(buf) : "memory");
      memcpy(buf + len, buf, len);
      acc += buf[len];
    }
    break;
  default:
    break;
  }
  double t = now_ns() - t0;
  sink += acc;
  return t;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

struct result {
  size_t len;
  const char *content;
  enum method method;
  double ns, min_ns, max_ns; /* per call: median, fastest, slowest round */
  double gbps;
};

static struct result measure(enum method m, unsigned char *buf, size_t len, const char *content)
{
  long iters = 1;
  for (;;) { /* calibrate: a round of >= MIN_ROUND_NS */
    double t = round_ns(m, buf, len, iters);
    if (t >= MIN_ROUND_NS)
      break;
    iters = t > 0 && MIN_ROUND_NS / t < 4 ? (long)(iters * 1.2 * MIN_ROUND_NS / t) + 1 : iters * 4;
  }
  double per[ROUNDS];
  for (int r = 0; r < ROUNDS; r++)
    per[r] = round_ns(m, buf, len, iters) / iters;
  qsort(per, ROUNDS, sizeof per[0], cmp_double);
  struct result res = { .len = len, .content = content, .method = m, .ns = per[ROUNDS / 2],
                        .min_ns = per[0], .max_ns = per[ROUNDS - 1] };
  res.gbps = len / res.ns; /* bytes per ns = GB/s */
  return res;
}

static void cpu_model(char *out, size_t out_len)
{
  snprintf(out, out_len, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *v = strchr(line, ':');
      if (v) {
        v += 1 + strspn(v + 1, " \t");
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, out_len, "%s", v);
      }
      break;
    }
  }
  fclose(f);
}

static const char *size_name(size_t len) { return len == BIG ? "2 MiB" : "4 KiB"; }

int main(int argc, char **argv)
{
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      json = true;
    else {
      fprintf(stderr, "usage: %s [--json]\n", argv[0]);
      return 2;
    }
  }

  /* Four buffers per size (one per content), plus the
   * memcpy pair. Written before use so that each page is private memory. */
  static const char *const contents[] = { "zero", "first byte set", "last byte set",
                                          "byte len-2 set" };
  const size_t sizes[] = { SMALL, BIG };
  unsigned char *bufs[2][N_CONTENTS];
  for (int s = 0; s < 2; s++)
    for (int c = 0; c < N_CONTENTS; c++) {
      unsigned char *b = aligned_alloc(4096, sizes[s]);
      if (!b) {
        perror("aligned_alloc");
        return 1;
      }
      memset(b, 0xa5, sizes[s]);
      memset(b, 0, sizes[s]);
      if (c == 1)
        b[0] = 1;
      if (c == 2)
        b[sizes[s] - 1] = 1;
      if (c == 3)
        b[sizes[s] - 2] = 1;
      bufs[s][c] = b;
    }
  unsigned char *copy = aligned_alloc(4096, 2 * BIG);
  if (!copy) {
    perror("aligned_alloc");
    return 1;
  }
  memset(copy, 0x5a, 2 * BIG);
  memset(zeros, 0, sizeof zeros);
  __asm__ volatile("" : : "r"(zeros) : "memory");

  char cpu[256];
  cpu_model(cpu, sizeof cpu);
  const char *impl = cf_is_zero_impl();
  const char *forced = getenv("COWFORK_ZERO_IMPL");

  /* results[s][c][m] */
  struct result res[2][N_CONTENTS][3];
  for (int s = 0; s < 2; s++)
    for (int c = 0; c < N_CONTENTS; c++)
      for (int m = 0; m < 3; m++)
        res[s][c][m] = measure((enum method)m, bufs[s][c], sizes[s], contents[c]);
  struct result cpy = measure(M_MEMCPY, copy, BIG, "copy");
  /* From memory, not cache: a 256 MiB zero buffer against memcpy of 256 MiB. */
  unsigned char *huge = aligned_alloc(4096, 2 * (size_t)HUGE);
  if (!huge) {
    perror("aligned_alloc");
    return 1;
  }
  memset(huge, 0, 2 * (size_t)HUGE);
  struct result hz = measure(M_CF, huge, HUGE, "zero");
  struct result hc = measure(M_MEMCPY, huge, HUGE, "copy");
  free(huge);
  double huge_ratio = hz.gbps / hc.gbps;

  /* The goals of the issue. */
  double big_ratio = res[1][0][M_CF].gbps / cpy.gbps;
  bool goal_bw = big_ratio >= 0.8;
  double reject_ns = res[0][1][M_CF].ns;
  bool goal_reject = reject_ns <= 10.0;

  if (json) {
    printf("{\n  \"benchmark\": \"zero\",\n  \"cpu\": ");
    cf_json_puts(cpu);
    printf(",\n  \"impl\": ");
    cf_json_puts(impl);
    printf(",\n  \"impl_forced\": ");
    if (forced)
      cf_json_puts(forced);
    else
      printf("null");
    printf(",\n  \"rounds\": %d,\n  \"results\": [\n", ROUNDS);
    for (int s = 0; s < 2; s++)
      for (int c = 0; c < N_CONTENTS; c++)
        for (int m = 0; m < 3; m++) {
          const struct result *r = &res[s][c][m];
          printf("    {\"bytes\": %zu, \"content\": \"%s\", \"method\": \"%s\", "
                 "\"ns_per_call\": %.3f, \"ns_min\": %.3f, \"ns_max\": %.3f, \"gb_per_s\": %.3f",
                 r->len, r->content, method_names[m], r->ns, r->min_ns, r->max_ns, r->gbps);
          if (m == M_CF)
            printf(", \"speedup_vs_byte_loop\": %.3f, \"speedup_vs_memcmp\": %.3f",
                   res[s][c][M_LOOP].ns / r->ns, res[s][c][M_MEMCMP].ns / r->ns);
          printf("},\n");
        }
    printf("    {\"bytes\": %zu, \"content\": \"copy\", \"method\": \"memcpy\", "
           "\"ns_per_call\": %.3f, \"ns_min\": %.3f, \"ns_max\": %.3f, \"gb_per_s\": %.3f}\n  ],\n",
           cpy.len, cpy.ns, cpy.min_ns, cpy.max_ns, cpy.gbps);
    printf("  \"from_memory\": {\"bytes\": %u, \"cf_is_zero_gb_per_s\": %.3f, "
           "\"memcpy_gb_per_s\": %.3f},\n",
           HUGE, hz.gbps, hc.gbps);
    printf("  \"goals\": [\n"
           "    {\"goal\": \"2 MiB zero buffer throughput >= 80%% of memcpy bandwidth\", "
           "\"value\": %.3f, \"target\": 0.8, \"pass\": %s},\n"
           "    {\"goal\": \"4 KiB block with first bytes non-zero rejected in <= 10 ns\", "
           "\"value\": %.3f, \"target\": 10, \"pass\": %s}\n  ]\n}\n",
           big_ratio, goal_bw ? "true" : "false", reject_ns, goal_reject ? "true" : "false");
  } else {
    printf("zero detection: cf_is_zero vs byte loop vs memcmp(static zeros); memcpy baseline\n");
    printf("cpu:    %s\n", cpu);
    printf("impl:   %s%s%s%s\n", impl, forced ? " (COWFORK_ZERO_IMPL=" : "", forced ? forced : "",
           forced ? ")" : "");
    printf("method: %d rounds of >= %.0f ms each, median ns/call; GB/s = bytes judged / time;\n"
           "        spread = (slowest - fastest round) / median; speedup = peer ns / cf_is_zero ns\n\n",
           ROUNDS, MIN_ROUND_NS / 1e6);
    printf("%-6s  %-14s  %-10s  %12s  %9s  %7s  %9s  %9s\n", "size", "content", "method",
           "ns/call", "GB/s", "spread", "vs loop", "vs memcmp");
    for (int s = 0; s < 2; s++)
      for (int c = 0; c < N_CONTENTS; c++)
        for (int m = 0; m < 3; m++) {
          const struct result *r = &res[s][c][m];
          printf("%-6s  %-14s  %-10s  %12.2f  %9.2f  %6.1f%%", size_name(r->len), r->content,
                 method_names[m], r->ns, r->gbps, 100 * (r->max_ns - r->min_ns) / r->ns);
          if (m == M_CF)
            printf("  %8.1fx  %8.1fx", res[s][c][M_LOOP].ns / r->ns, res[s][c][M_MEMCMP].ns / r->ns);
          printf("\n");
        }
    printf("%-6s  %-14s  %-10s  %12.2f  %9.2f  %6.1f%%\n\n", size_name(cpy.len), "copy", "memcpy",
           cpy.ns, cpy.gbps, 100 * (cpy.max_ns - cpy.min_ns) / cpy.ns);
    printf("%-6s  %-14s  %-10s  %12.0f  %9.2f  %6.1f%%\n", "256MiB", "zero", "cf_is_zero", hz.ns,
           hz.gbps, 100 * (hz.max_ns - hz.min_ns) / hz.ns);
    printf("%-6s  %-14s  %-10s  %12.0f  %9.2f  %6.1f%%\n\n", "256MiB", "copy", "memcpy", hc.ns,
           hc.gbps, 100 * (hc.max_ns - hc.min_ns) / hc.ns);
    printf("goals:\n");
    printf("  %s  2 MiB zero buffer: %.2f GB/s = %.0f%% of memcpy %.2f GB/s (goal >= 80%%)\n",
           goal_bw ? "PASS" : "MISS", res[1][0][M_CF].gbps, 100 * big_ratio, cpy.gbps);
    printf("  %s  256 MiB zero buffer (from memory): %.2f GB/s = %.0f%% of memcpy %.2f GB/s "
           "(goal >= 80%%)\n",
           huge_ratio >= 0.8 ? "PASS" : "MISS", hz.gbps, 100 * huge_ratio, hc.gbps);
    printf("  %s  4 KiB block, first byte non-zero: rejected in %.2f ns (goal <= 10 ns)\n",
           goal_reject ? "PASS" : "MISS", reject_ns);
  }

  for (int s = 0; s < 2; s++)
    for (int c = 0; c < N_CONTENTS; c++)
      free(bufs[s][c]);
  free(copy);
  return 0;
}
