/* cf_tracker: randomized differential tests against a plain array model
 * (one state byte per block), plus an interval-list model for trackers of
 * 2^32 blocks, where foreach_run must take time in the runs, not the blocks.
 *
 * A mismatch prints the seed, size, nstates and operation number; rerun one
 * seed with TRACKER_SEED=n. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <roaring/roaring.h>

#include "cowfork/error.h"
#include "cowfork/tracker.h"
#include "tap.h"

#define BIG (UINT64_C(1) << 32)

static uint64_t rng_state;
static uint64_t rnd(void)
{
  /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}
/* Uniform-ish in [0, n); n > 0. */
static uint64_t below(uint64_t n) { return rnd() % n; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- runs collected from foreach_run ---- */

struct run {
  uint64_t first, count;
};
struct runs {
  struct run *v;
  size_t n, cap;
  size_t stop_after; /* return 42 after this many runs; 0 = never */
};

static int collect(void *ctx, uint64_t first, uint64_t count)
{
  struct runs *r = ctx;
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->v = realloc(r->v, r->cap * sizeof *r->v);
    if (!r->v) {
      perror("realloc");
      exit(2);
    }
  }
  r->v[r->n++] = (struct run){first, count};
  if (r->stop_after && r->n == r->stop_after)
    return 42;
  return 0;
}

/* ---- the array model ---- */

struct ctx {
  uint64_t seed;
  uint64_t n;
  unsigned nstates;
  unsigned long op;
  bool failed; /* report only the first mismatch of a combination */
};

static bool mismatch(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool mismatch(struct ctx *c, const char *fmt, ...)
{
  if (!c->failed) {
    va_list ap;
    printf("# MISMATCH seed=%" PRIu64 " nblocks=%" PRIu64 " nstates=%u op=%lu: ", c->seed, c->n,
           c->nstates, c->op);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
  }
  c->failed = true;
  return false;
}

static bool model_range_is(const uint8_t *m, uint64_t first, uint64_t count, unsigned s)
{
  for (uint64_t i = first; i < first + count; i++)
    if (m[i] != s)
      return false;
  return true;
}

/* Compare every observable of t with the model m. */
static bool check_all(struct ctx *c, struct cf_tracker *t, const uint8_t *m)
{
  uint64_t n = c->n;
  uint64_t cnt[CF_TRACKER_MAX_STATES] = {0};

  if (cf_tracker_nblocks(t) != n)
    return mismatch(c, "nblocks %" PRIu64, cf_tracker_nblocks(t));
  for (uint64_t i = 0; i < n; i++) {
    int g = cf_tracker_get(t, i);
    if (g != m[i])
      return mismatch(c, "get(%" PRIu64 ") = %d, model %u", i, g, m[i]);
    cnt[m[i]]++;
  }
  errno = 0;
  if (cf_tracker_get(t, n) != -1 || errno != EINVAL)
    return mismatch(c, "get(nblocks) not EINVAL");

  for (unsigned s = 0; s < c->nstates; s++) {
    uint64_t k = cf_tracker_count(t, s);
    if (k != cnt[s])
      return mismatch(c, "count(%u) = %" PRIu64 ", model %" PRIu64, s, k, cnt[s]);

    /* runs: exactly the model's maximal runs of s, ascending */
    struct runs r = {0};
    int rc = cf_tracker_foreach_run(t, s, collect, &r);
    if (rc != 0) {
      free(r.v);
      return mismatch(c, "foreach_run(%u) = %d", s, rc);
    }
    size_t j = 0;
    bool ok_runs = true;
    for (uint64_t i = 0; i < n && ok_runs;) {
      if (m[i] != s) {
        i++;
        continue;
      }
      uint64_t e = i;
      while (e < n && m[e] == s)
        e++;
      if (j >= r.n || r.v[j].first != i || r.v[j].count != e - i) {
        mismatch(c, "state %u run %zu: got [%" PRIu64 ", +%" PRIu64 "), model [%" PRIu64 ", +%" PRIu64 ")",
                 s, j, j < r.n ? r.v[j].first : 0, j < r.n ? r.v[j].count : 0, i, e - i);
        ok_runs = false;
      }
      j++;
      i = e;
    }
    if (ok_runs && j != r.n) {
      mismatch(c, "state %u: %zu runs, model %zu", s, r.n, j);
      ok_runs = false;
    }
    /* early stop: fn's non-zero value comes back and the walk ends there */
    if (ok_runs && r.n >= 2) {
      struct runs r2 = {.stop_after = 1 + below(r.n - 1)};
      rc = cf_tracker_foreach_run(t, s, collect, &r2);
      if (rc != 42 || r2.n != r2.stop_after || memcmp(r2.v, r.v, r2.n * sizeof *r.v) != 0)
        ok_runs = mismatch(c, "state %u: early stop after %zu runs: rc %d, %zu calls", s,
                           r2.stop_after, rc, r2.n);
      free(r2.v);
    }
    free(r.v);
    if (!ok_runs)
      return false;

    /* export */
    roaring_bitmap_t *b = cf_tracker_export(t, s);
    if (!b)
      return mismatch(c, "export(%u) failed: %s", s, cf_error());
    uint64_t card = roaring_bitmap_get_cardinality(b);
    bool ok_exp = card == cnt[s];
    if (ok_exp && card) {
      uint32_t *v = malloc(card * sizeof *v);
      if (!v) {
        perror("malloc");
        exit(2);
      }
      roaring_bitmap_to_uint32_array(b, v);
      for (uint64_t i = 0; i < card && ok_exp; i++)
        ok_exp = v[i] < n && m[v[i]] == s;
      free(v);
    }
    roaring_bitmap_free(b);
    if (!ok_exp)
      return mismatch(c, "export(%u): %" PRIu64 " blocks or wrong ones, model %" PRIu64, s, card, cnt[s]);
  }

  /* range_is on random ranges, every state */
  for (int k = 0; k < 50; k++) {
    uint64_t first = below(n + 1);
    uint64_t count;
    switch (below(4)) {
    case 0: count = 0; break;
    case 1: count = first < n ? 1 : 0; break;
    case 2: count = below(n - first + 1); break;
    default: count = below((n - first < 8 ? n - first : 8) + 1); break;
    }
    for (unsigned s = 0; s < c->nstates; s++) {
      int want = model_range_is(m, first, count, s);
      int got = cf_tracker_range_is(t, first, count, s);
      if (got != want)
        return mismatch(c, "range_is([%" PRIu64 ", +%" PRIu64 "), %u) = %d, model %d", first, count, s,
                        got, want);
    }
  }
  /* range_is over each model run and one block beyond it */
  for (uint64_t i = 0; i < n;) {
    uint64_t e = i;
    while (e < n && m[e] == m[i])
      e++;
    if (cf_tracker_range_is(t, i, e - i, m[i]) != 1)
      return mismatch(c, "range_is(run [%" PRIu64 ", %" PRIu64 "), %u) not 1", i, e, m[i]);
    if (e < n && cf_tracker_range_is(t, i, e - i + 1, m[i]) != 0)
      return mismatch(c, "range_is([%" PRIu64 ", %" PRIu64 "], %u) not 0", i, e, m[i]);
    i = e;
  }
  return true;
}

/* A random operation: mostly valid set_range calls of assorted shapes, some
 * invalid ones (which must fail with EINVAL and change nothing). */
static bool random_op(struct ctx *c, struct cf_tracker *t, uint8_t *m)
{
  uint64_t n = c->n;
  unsigned state = below(c->nstates);
  uint64_t first, count;

  switch (below(20)) {
  case 0: /* invalid: bad state */
    errno = 0;
    if (cf_tracker_set_range(t, 0, n, c->nstates + below(3)) != -1 || errno != EINVAL)
      return mismatch(c, "set_range with bad state did not fail EINVAL");
    if (cf_tracker_range_is(t, 0, n ? 1 : 0, c->nstates) != -1 || errno != EINVAL)
      return mismatch(c, "range_is with bad state did not fail EINVAL");
    return true;
  case 1: /* invalid: range leaves the tracker, or overflows */
    switch (below(3)) {
    case 0: first = n + 1 + below(10); count = below(3); break;
    case 1: first = below(n + 1); count = n - first + 1 + below(10); break;
    default: first = UINT64_MAX - below(4); count = 2 + below(10); break;
    }
    errno = 0;
    if (cf_tracker_set_range(t, first, count, state) != -1 || errno != EINVAL)
      return mismatch(c, "set_range([%" PRIu64 ", +%" PRIu64 ")) did not fail EINVAL", first, count);
    if (strstr(cf_error(), "cf_tracker_set_range") != cf_error())
      return mismatch(c, "message not prefixed with the API name: %s", cf_error());
    errno = 0;
    if (cf_tracker_range_is(t, first, count, state) != -1 || errno != EINVAL)
      return mismatch(c, "range_is([%" PRIu64 ", +%" PRIu64 ")) did not fail EINVAL", first, count);
    return true;
  case 2: first = below(n + 1); count = 0; break;              /* empty */
  case 3: first = 0; count = n; break;                         /* full */
  case 4: first = below(n); count = 1; break;                  /* one block */
  case 5: first = n - 1; count = 1; break;                     /* last block */
  case 6: count = below(n + 1); first = n - count; break;      /* to the end */
  case 7: case 8: case 9: case 10:                             /* short */
    first = below(n);
    count = 1 + below(n - first < 40 ? n - first : 40);
    break;
  default:                                                     /* anything */
    first = below(n + 1);
    count = below(n - first + 1);
    break;
  }
  if (cf_tracker_set_range(t, first, count, state) != 0)
    return mismatch(c, "set_range([%" PRIu64 ", +%" PRIu64 "), %u) failed: %s", first, count, state,
                    cf_error());
  memset(m + first, (int)state, count);
  return true;
}

static void differential(uint64_t seed, uint64_t n, unsigned nstates, unsigned long nops,
                         unsigned long every)
{
  struct ctx c = {.seed = seed, .n = n, .nstates = nstates};
  rng_state = seed * UINT64_C(0x9E3779B97F4A7C15) + n * 31 + nstates;
  if (!rng_state)
    rng_state = 1;

  struct cf_tracker *t = cf_tracker_new(n, nstates);
  uint8_t *m = calloc(n, 1);
  if (!t || !m) {
    ok(0, "seed %" PRIu64 " nblocks %" PRIu64 " nstates %u: setup: %s", seed, n, nstates, cf_error());
    free(m);
    cf_tracker_free(t);
    return;
  }
  bool good = check_all(&c, t, m);
  for (c.op = 1; good && c.op <= nops; c.op++) {
    good = random_op(&c, t, m);
    if (good && c.op % every == 0)
      good = check_all(&c, t, m);
  }
  ok(good, "seed %" PRIu64 " nblocks %" PRIu64 " nstates %u: %lu ops match the model", seed, n,
     nstates, nops);
  free(m);
  cf_tracker_free(t);
}

/* ---- trackers of 2^32 blocks: an interval-list model ---- */

#define MAXSEG 4096
struct seg {
  uint64_t first, end;
  unsigned state;
};
struct imodel {
  struct seg v[MAXSEG];
  size_t n;
};

/* Paint [first, end) with state; segments stay sorted, adjacent ones may
 * share a state (runs merge them). */
static void ipaint(struct imodel *im, uint64_t first, uint64_t end, unsigned state)
{
  static struct seg out[MAXSEG];
  size_t k = 0;
  bool placed = false;
  if (first >= end)
    return;
  for (size_t i = 0; i < im->n; i++) {
    struct seg s = im->v[i];
    if (s.end <= first || s.first >= end) {
      out[k++] = s;
      continue;
    }
    if (s.first < first)
      out[k++] = (struct seg){s.first, first, s.state};
    if (!placed)
      out[k++] = (struct seg){first, end, state};
    placed = true;
    if (s.end > end)
      out[k++] = (struct seg){end, s.end, s.state};
  }
  /* merge equal neighbours so the list stays short */
  im->n = 0;
  for (size_t i = 0; i < k; i++) {
    if (im->n && im->v[im->n - 1].state == out[i].state && im->v[im->n - 1].end == out[i].first)
      im->v[im->n - 1].end = out[i].end;
    else
      im->v[im->n++] = out[i];
  }
}

static unsigned iget(const struct imodel *im, uint64_t b)
{
  for (size_t i = 0; i < im->n; i++)
    if (b >= im->v[i].first && b < im->v[i].end)
      return im->v[i].state;
  abort();
}

/* Compare runs, counts and some point lookups with the interval model;
 * returns the seconds spent in foreach_run for all states. */
static bool check_big(struct ctx *c, struct cf_tracker *t, const struct imodel *im, double *secs)
{
  double spent = 0;
  for (unsigned s = 0; s < c->nstates; s++) {
    struct runs r = {0};
    double t0 = now();
    int rc = cf_tracker_foreach_run(t, s, collect, &r);
    spent += now() - t0;
    if (rc != 0) {
      free(r.v);
      return mismatch(c, "foreach_run(%u) = %d", s, rc);
    }
    size_t j = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < im->n; i++) {
      if (im->v[i].state != s)
        continue;
      total += im->v[i].end - im->v[i].first;
      if (j >= r.n || r.v[j].first != im->v[i].first || r.v[j].count != im->v[i].end - im->v[i].first) {
        free(r.v);
        return mismatch(c, "state %u run %zu: got [%" PRIu64 ", +%" PRIu64 "), model [%" PRIu64
                        ", %" PRIu64 ")", s, j, j < r.n ? r.v[j].first : 0,
                        j < r.n ? r.v[j].count : 0, im->v[i].first, im->v[i].end);
      }
      j++;
    }
    size_t got = r.n;
    free(r.v);
    if (got != j)
      return mismatch(c, "state %u: %zu runs, model %zu", s, got, j);
    if (cf_tracker_count(t, s) != total)
      return mismatch(c, "count(%u) = %" PRIu64 ", model %" PRIu64, s, cf_tracker_count(t, s), total);
  }
  for (size_t i = 0; i < im->n; i++) {
    const struct seg *g = &im->v[i];
    uint64_t len = g->end - g->first;
    if (cf_tracker_get(t, g->first) != (int)g->state || cf_tracker_get(t, g->end - 1) != (int)g->state)
      return mismatch(c, "get at the ends of [%" PRIu64 ", %" PRIu64 ") not %u", g->first, g->end, g->state);
    if (cf_tracker_range_is(t, g->first, len, g->state) != 1)
      return mismatch(c, "range_is([%" PRIu64 ", %" PRIu64 "), %u) not 1", g->first, g->end, g->state);
    if (g->end < BIG && cf_tracker_range_is(t, g->first, len + 1, g->state) != 0)
      return mismatch(c, "range_is([%" PRIu64 ", %" PRIu64 "], %u) not 0", g->first, g->end, g->state);
  }
  for (int k = 0; k < 200; k++) {
    uint64_t b = below(BIG);
    if (cf_tracker_get(t, b) != (int)iget(im, b))
      return mismatch(c, "get(%" PRIu64 ") = %d, model %u", b, cf_tracker_get(t, b), iget(im, b));
  }
  *secs = spent;
  return true;
}

static void big_fixed(void)
{
  struct ctx c = {.seed = 0, .n = BIG, .nstates = 4};
  struct cf_tracker *t = cf_tracker_new(BIG, 4);
  ok(t != NULL, "a tracker of 2^32 blocks");
  if (!t)
    return;
  struct imodel *im = calloc(1, sizeof *im);
  im->v[0] = (struct seg){0, BIG, 0};
  im->n = 1;
  static const struct {
    uint64_t first, count;
    unsigned state;
  } ops[] = {
      {BIG - 1, 1, 1},              /* the very last block */
      {0, 1, 2},                    /* the first */
      {12345, 3000000000u, 3},      /* one run over ~46000 containers */
      {65535, 2, 1},                /* across a container boundary */
      {1u << 31, 1u << 16, 2},      /* exactly one container, inside the run */
      {4000000000u, 10, 1},
      {BIG - 100, 50, 3},
  };
  double set0 = now();
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    is(cf_tracker_set_range(t, ops[i].first, ops[i].count, ops[i].state), 0, "big: set_range %zu", i);
    ipaint(im, ops[i].first, ops[i].first + ops[i].count, ops[i].state);
  }
  diag("big: %zu set_range calls took %.3f ms", sizeof ops / sizeof *ops, (now() - set0) * 1e3);
  double secs = 0;
  bool good = check_big(&c, t, im, &secs);
  ok(good, "big: runs, counts and lookups match the interval model");
  diag("big: foreach_run over all 4 states took %.3f ms", secs * 1e3);
  ok(secs < 0.25, "big: iterating every state's runs is fast (%.3f s)", secs);

  /* Almost all default: the run of state 0 is 2^32 - 2 blocks long. */
  is(cf_tracker_set_range(t, 0, BIG, 0), 0, "big: clear everything");
  is(cf_tracker_count(t, 0), BIG, "big: all 2^32 blocks in state 0");
  is(cf_tracker_range_is(t, 0, BIG, 0), 1, "big: range_is(all, 0)");
  is(cf_tracker_set_range(t, 7, 1, 1), 0, "big: one block");
  struct runs r = {0};
  double t0 = now();
  is(cf_tracker_foreach_run(t, 0, collect, &r), 0, "big: foreach_run(0)");
  secs = now() - t0;
  ok(r.n == 2 && r.v[0].first == 0 && r.v[0].count == 7 && r.v[1].first == 8 && r.v[1].count == BIG - 8,
     "big: the two default runs are [0, 7) and [8, 2^32)");
  ok(secs < 0.05, "big: walking 2^32 - 1 default blocks takes %.3f ms", secs * 1e3);
  free(r.v);

  /* Everything non-default: state 3 covers all of it. */
  is(cf_tracker_set_range(t, 0, BIG, 3), 0, "big: fill with state 3");
  is(cf_tracker_count(t, 3), BIG, "big: count(3) = 2^32");
  memset(&r, 0, sizeof r);
  t0 = now();
  is(cf_tracker_foreach_run(t, 3, collect, &r), 0, "big: foreach_run(3)");
  secs = now() - t0;
  ok(r.n == 1 && r.v[0].first == 0 && r.v[0].count == BIG, "big: one run of 2^32 blocks");
  free(r.v);
  memset(&r, 0, sizeof r);
  is(cf_tracker_foreach_run(t, 0, collect, &r), 0, "big: foreach_run(0)");
  secs += now() - t0;
  is(r.n, 0, "big: no default runs");
  free(r.v);
  ok(secs < 0.25, "big: full-tracker walks take %.3f ms", secs * 1e3);
  roaring_bitmap_t *b = cf_tracker_export(t, 0);
  ok(b && roaring_bitmap_is_empty(b), "big: export(0) is empty");
  roaring_bitmap_free(b);
  b = cf_tracker_export(t, 3);
  ok(b && roaring_bitmap_get_cardinality(b) == BIG, "big: export(3) has 2^32 blocks");
  roaring_bitmap_free(b);

  free(im);
  cf_tracker_free(t);
}

static void big_random(uint64_t seed)
{
  struct ctx c = {.seed = seed, .n = BIG, .nstates = 2 + seed % 3};
  rng_state = seed * UINT64_C(0xD1B54A32D192ED03) + 1;
  struct cf_tracker *t = cf_tracker_new(BIG, c.nstates);
  struct imodel *im = calloc(1, sizeof *im);
  if (!t || !im) {
    ok(0, "big random seed %" PRIu64 ": setup", seed);
    free(im);
    cf_tracker_free(t);
    return;
  }
  im->v[0] = (struct seg){0, BIG, 0};
  im->n = 1;
  bool good = true;
  double worst = 0;
  for (c.op = 1; good && c.op <= 300; c.op++) {
    uint64_t first, count;
    unsigned state = below(c.nstates);
    switch (below(5)) {
    case 0: first = below(BIG); count = 1 + below(70000); break;
    case 1: count = 1 + below(BIG); first = BIG - count; break;
    case 2: first = below(BIG); count = 1 + below(BIG - first); break;
    case 3: first = below(BIG >> 16) << 16; count = 1 + below(4) * 65536; break;
    default: first = below(BIG); count = 1 + below(10); break;
    }
    if (first + count > BIG)
      count = BIG - first;
    if (cf_tracker_set_range(t, first, count, state) != 0) {
      good = mismatch(&c, "set_range failed: %s", cf_error());
      break;
    }
    ipaint(im, first, first + count, state);
    if (im->n > MAXSEG - 8) {
      /* keep the model small: repaint everything to state 0 */
      cf_tracker_set_range(t, 0, BIG, 0);
      im->v[0] = (struct seg){0, BIG, 0};
      im->n = 1;
    }
    if (c.op % 30 == 0) {
      double secs;
      good = check_big(&c, t, im, &secs);
      if (secs > worst)
        worst = secs;
    }
  }
  ok(good, "big random seed %" PRIu64 " nstates %u: 300 ops match the interval model", seed, c.nstates);
  diag("big random seed %" PRIu64 ": slowest foreach_run over all states %.3f ms", seed, worst * 1e3);
  ok(worst < 0.5, "big random seed %" PRIu64 ": every walk took under 0.5 s", seed);
  free(im);
  cf_tracker_free(t);
}

/* Runs of the non-default states that touch each other, with no default
 * block between them: the default walk has to step over thousands of
 * neighbouring runs (and falls back to building their union). */
static void alternating(unsigned nstates)
{
  const uint64_t n = 100000;
  struct ctx c = {.seed = 0, .n = n, .nstates = nstates};
  struct cf_tracker *t = cf_tracker_new(n, nstates);
  uint8_t *m = calloc(n, 1);
  bool good = t && m;
  rng_state = 77;
  for (uint64_t b = 100; good && b < 90000; b++) {
    unsigned s = 1 + (b + b / 3) % (nstates - 1);
    good = cf_tracker_set_range(t, b, 1, s) == 0;
    m[b] = s;
  }
  for (int k = 0; good && k < 30; k++) { /* a few default holes */
    uint64_t b = 100 + below(89900), k2 = 1 + below(3);
    good = cf_tracker_set_range(t, b, k2, 0) == 0;
    memset(m + b, 0, k2);
  }
  ok(good && check_all(&c, t, m), "alternating neighbour runs, %u states", nstates);
  free(m);
  cf_tracker_free(t);
}

static void bad_arguments(void)
{
  errno = 0;
  ok(cf_tracker_new(BIG + 1, 2) == NULL && errno == EINVAL, "new(2^32 + 1 blocks) fails EINVAL");
  ok(strstr(cf_error(), "cf_tracker_new: ") == cf_error(), "message names the API: %s", cf_error());
  errno = 0;
  ok(cf_tracker_new(UINT64_MAX, 2) == NULL && errno == EINVAL, "new(UINT64_MAX blocks) fails EINVAL");
  unsigned bad[] = {0, 1, 5, 100};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    errno = 0;
    ok(cf_tracker_new(10, bad[i]) == NULL && errno == EINVAL, "new(nstates %u) fails EINVAL", bad[i]);
  }
  for (unsigned s = 2; s <= 4; s++) {
    struct cf_tracker *t = cf_tracker_new(BIG, s);
    ok(t != NULL, "new(2^32 blocks, %u states)", s);
    cf_tracker_free(t);
  }
  cf_tracker_free(NULL);

  struct cf_tracker *t = cf_tracker_new(10, 3);
  errno = 0;
  is(cf_tracker_foreach_run(t, 3, collect, NULL), -1, "foreach_run(bad state)");
  is(errno, EINVAL, "... EINVAL");
  errno = 0;
  ok(cf_tracker_export(t, 3) == NULL && errno == EINVAL, "export(bad state) fails EINVAL");
  errno = 0;
  is(cf_tracker_count(t, 7), 0, "count(bad state) is 0");
  is(errno, EINVAL, "... with EINVAL");
  errno = 0;
  is(cf_tracker_get(t, 10), -1, "get(nblocks)");
  is(errno, EINVAL, "... EINVAL");
  is(cf_tracker_set_range(t, 10, 0, 1), 0, "empty range at the end is fine");
  is(cf_tracker_range_is(t, 10, 0, 2), 1, "empty range is every state");
  errno = 0;
  is(cf_tracker_set_range(t, 11, 0, 1), -1, "empty range past the end");
  is(errno, EINVAL, "... EINVAL");
  cf_tracker_free(t);

  t = cf_tracker_new(0, 2);
  ok(t != NULL, "a tracker of 0 blocks");
  if (t) {
    struct runs r = {0};
    is(cf_tracker_foreach_run(t, 0, collect, &r), 0, "0 blocks: foreach_run");
    is(r.n, 0, "0 blocks: no runs");
    is(cf_tracker_count(t, 0), 0, "0 blocks: count 0");
    roaring_bitmap_t *b = cf_tracker_export(t, 0);
    ok(b && roaring_bitmap_is_empty(b), "0 blocks: export empty");
    roaring_bitmap_free(b);
    free(r.v);
  }
  cf_tracker_free(t);
}

int main(void)
{
  static const uint64_t sizes[] = {1, 7, 1000, 100000};
  uint64_t seeds[] = {1, 2, 3, 0xC0FFEE, 20240601};
  size_t nseeds = sizeof seeds / sizeof *seeds;
  const char *env = getenv("TRACKER_SEED");
  if (env) {
    seeds[0] = strtoull(env, NULL, 0);
    nseeds = 1;
  }

  bad_arguments();
  for (size_t i = 0; i < nseeds; i++)
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
      for (unsigned ns = 2; ns <= 4; ns++) {
        uint64_t n = sizes[k];
        /* the big model is checked less often: a full check reads every block */
        differential(seeds[i], n, ns, n >= 100000 ? 1500 : 3000, n >= 100000 ? 250 : n >= 1000 ? 100 : 10);
      }
  for (unsigned ns = 2; ns <= 4; ns++)
    alternating(ns);
  big_fixed();
  for (size_t i = 0; i < nseeds; i++)
    big_random(seeds[i]);
  return done_testing();
}
