/* Per-block state tracker over CRoaring bitmaps.
 *
 * What it keeps: nblocks (<= 2^32), nstates (2..4), and one roaring bitmap
 * for each non-default state 1..nstates-1 (bm[0] is unused and NULL).
 *
 * Invariants:
 *  - the bitmaps are pairwise disjoint and hold only values < nblocks;
 *  - a block is in state s > 0 iff it is in bm[s], and in state 0 iff it is in
 *    no bitmap (state 0 is never stored, so a fresh tracker is tiny);
 *  - every function validates its arguments before touching a bitmap, so a
 *    call that fails with EINVAL leaves the tracker unchanged.
 *
 * Runs. The public API of libroaring 0.2.66 has no "next absent value", so
 * foreach_run finds the start of a run with the iterator (first value >= pos,
 * a binary search over containers) and its end by galloping then bisecting
 * with contains_range from the run's start (run_end below). A run spanning L
 * blocks costs O(log L) contains_range calls that together visit O(L/2^16)
 * containers once each, so a walk costs O(runs * log + containers), never
 * O(blocks). The default state walks the gaps of the union of the bitmaps:
 * a gap ends at the smallest next value of any bitmap, a run of the union is
 * stepped through as the chain of the bitmaps' runs it is made of, and when
 * that chain gets longer than the bitmaps have containers a temporary union
 * bitmap is built once and walked instead. A tracker of 2^32 blocks that is
 * almost all default costs only as much as its few non-default runs.
 *
 * Compaction. Ranges added to fresh containers become run containers, but
 * block-by-block writes leave array and bitset containers behind. Each bitmap
 * is run_optimize'd once as many set_range calls have touched it as it has
 * containers (at least OPT_MIN), which keeps the cost amortized O(1) container
 * visits per call.
 *
 * libroaring 0.2.66 quirks handled here:
 *  - roaring_bitmap_contains_range(b, s, e) mistakes the insertion point of
 *    e-1's container for its index when that container is missing: it then
 *    returns true for a range with a hole, or, with no container after it,
 *    fails an assert() (Debian builds it with asserts on: abort). has_range()
 *    checks e-1 itself first.
 *  - roaring_bitmap_or_many / or_inplace insert containers one at a time
 *    (quadratic memmove over 65536 containers); the union uses pairwise
 *    roaring_bitmap_or, a linear merge.
 *  - the mutating calls (add/remove range, run_optimize) return void and do
 *    not report allocation failure; only the constructors (create, copy, or)
 *    return NULL, which becomes ENOMEM here.
 *
 * Locking: none. A tracker is used by one thread at a time; const functions
 * may run concurrently with each other. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <roaring/roaring.h>

#include "cowfork/tracker.h"
#include "internal.h"

#define MAX_BLOCKS (UINT64_C(1) << 32)
#define OPT_MIN 64

struct cf_tracker {
  uint64_t nblocks;
  unsigned nstates;
  roaring_bitmap_t *bm[CF_TRACKER_MAX_STATES];
  uint64_t ops[CF_TRACKER_MAX_STATES]; /* set_range calls since run_optimize */
};

struct cf_tracker *cf_tracker_new(uint64_t nblocks, unsigned nstates)
{
  if (nblocks > MAX_BLOCKS)
    return cf_fail_null(EINVAL, "%llu blocks is more than 2^32", (unsigned long long)nblocks);
  if (nstates < 2 || nstates > CF_TRACKER_MAX_STATES)
    return cf_fail_null(EINVAL, "%u states, must be 2..%d", nstates, CF_TRACKER_MAX_STATES);

  struct cf_tracker *t = calloc(1, sizeof *t);
  if (!t)
    return cf_fail_null(ENOMEM, "tracker of %llu blocks", (unsigned long long)nblocks);
  t->nblocks = nblocks;
  t->nstates = nstates;
  for (unsigned s = 1; s < nstates; s++) {
    t->bm[s] = roaring_bitmap_create();
    if (!t->bm[s]) {
      cf_tracker_free(t);
      return cf_fail_null(ENOMEM, "bitmap for state %u", s);
    }
  }
  return t;
}

void cf_tracker_free(struct cf_tracker *t)
{
  if (!t)
    return;
  for (unsigned s = 1; s < CF_TRACKER_MAX_STATES; s++)
    if (t->bm[s])
      roaring_bitmap_free(t->bm[s]);
  free(t);
}

uint64_t cf_tracker_nblocks(const struct cf_tracker *t) { return t->nblocks; }

/* [first, first+count) inside [0, nblocks) without overflow. */
static bool range_ok(const struct cf_tracker *t, uint64_t first, uint64_t count)
{
  return first <= t->nblocks && count <= t->nblocks - first;
}

/* Every value of [start, end) is in b; true for an empty range. */
static bool has_range(const roaring_bitmap_t *b, uint64_t start, uint64_t end)
{
  if (start >= end)
    return true;
  /* Works around the 0.2.66 contains_range bug (see the note above): with the
   * last value present, its container index is exact. */
  if (!roaring_bitmap_contains(b, (uint32_t)(end - 1)))
    return false;
  return roaring_bitmap_contains_range(b, start, end);
}

/* The end of the run of b starting at v (v is in b, v < limit): the first
 * value > v that is not in b, or limit. Gallops from v, then bisects; every
 * probe only checks values not yet known to be present. */
static uint64_t run_end(const roaring_bitmap_t *b, uint64_t v, uint64_t limit)
{
  uint64_t lo = v + 1; /* [v, lo) is in b */
  uint64_t hi;         /* [v, hi) is not */
  uint64_t step = 1;

  for (;;) {
    if (lo >= limit)
      return limit;
    uint64_t probe = limit - lo <= step ? limit : lo + step;
    if (!has_range(b, lo, probe)) {
      hi = probe;
      break;
    }
    lo = probe;
    if (step < MAX_BLOCKS)
      step <<= 1;
  }
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (has_range(b, lo, mid))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* The first value >= pos in b (pos < 2^32), or limit if there is none. */
static uint64_t next_present(roaring_uint32_iterator_t *it, uint64_t pos, uint64_t limit)
{
  if (pos >= limit)
    return limit;
  if (!roaring_move_uint32_iterator_equalorlarger(it, (uint32_t)pos))
    return limit;
  return it->current_value < limit ? it->current_value : limit;
}

static void note_change(struct cf_tracker *t, unsigned s)
{
  uint64_t n = (uint64_t)t->bm[s]->high_low_container.size;
  if (++t->ops[s] >= (n > OPT_MIN ? n : OPT_MIN)) {
    roaring_bitmap_run_optimize(t->bm[s]);
    t->ops[s] = 0;
  }
}

int cf_tracker_set_range(struct cf_tracker *t, uint64_t first, uint64_t count, unsigned state)
{
  if (state >= t->nstates)
    return cf_fail(EINVAL, "state %u, tracker has %u", state, t->nstates);
  if (!range_ok(t, first, count))
    return cf_fail(EINVAL, "blocks [%llu, +%llu) outside [0, %llu)", (unsigned long long)first,
                   (unsigned long long)count, (unsigned long long)t->nblocks);
  if (count == 0)
    return 0;

  uint32_t lo = (uint32_t)first, hi = (uint32_t)(first + count - 1);
  for (unsigned s = 1; s < t->nstates; s++) {
    if (s == state || roaring_bitmap_is_empty(t->bm[s]))
      continue;
    roaring_bitmap_remove_range_closed(t->bm[s], lo, hi);
    note_change(t, s);
  }
  if (state) {
    roaring_bitmap_add_range_closed(t->bm[state], lo, hi);
    note_change(t, state);
  }
  return 0;
}

int cf_tracker_get(const struct cf_tracker *t, uint64_t block)
{
  if (block >= t->nblocks)
    return cf_fail(EINVAL, "block %llu outside [0, %llu)", (unsigned long long)block,
                   (unsigned long long)t->nblocks);
  for (unsigned s = 1; s < t->nstates; s++)
    if (roaring_bitmap_contains(t->bm[s], (uint32_t)block))
      return (int)s;
  return 0;
}

int cf_tracker_range_is(const struct cf_tracker *t, uint64_t first, uint64_t count, unsigned state)
{
  if (state >= t->nstates)
    return cf_fail(EINVAL, "state %u, tracker has %u", state, t->nstates);
  if (!range_ok(t, first, count))
    return cf_fail(EINVAL, "blocks [%llu, +%llu) outside [0, %llu)", (unsigned long long)first,
                   (unsigned long long)count, (unsigned long long)t->nblocks);
  if (count == 0)
    return 1;
  if (state)
    return has_range(t->bm[state], first, first + count);
  /* Default: no bitmap has a value in the range. range_cardinality would
   * visit every container in the range; the iterator's binary search finds
   * the first value >= first directly. */
  for (unsigned s = 1; s < t->nstates; s++) {
    roaring_uint32_iterator_t it;
    roaring_init_iterator(t->bm[s], &it);
    if (next_present(&it, first, first + count) < first + count)
      return 0;
  }
  return 1;
}

uint64_t cf_tracker_count(const struct cf_tracker *t, unsigned state)
{
  if (state >= t->nstates) {
    cf_fail(EINVAL, "state %u, tracker has %u", state, t->nstates);
    return 0;
  }
  if (state)
    return roaring_bitmap_get_cardinality(t->bm[state]);
  uint64_t n = t->nblocks;
  for (unsigned s = 1; s < t->nstates; s++)
    n -= roaring_bitmap_get_cardinality(t->bm[s]);
  return n;
}

/* A new run-optimized bitmap, the union of the non-default bitmaps
 * (nstates > 2), or NULL with ENOMEM. */
static roaring_bitmap_t *make_union(const struct cf_tracker *t)
{
  /* Pairwise roaring_bitmap_or, which merges the container arrays in one
   * pass. Not or_many or or_inplace: in 0.2.66 they insert the second
   * operand's containers one at a time, shifting the arrays (quadratic in
   * the number of containers, 0.25 s on a 2^32-block tracker). */
  roaring_bitmap_t *u = roaring_bitmap_or(t->bm[1], t->bm[2]);
  for (unsigned s = 3; u && s < t->nstates; s++) {
    roaring_bitmap_t *v = roaring_bitmap_or(u, t->bm[s]);
    roaring_bitmap_free(u);
    u = v;
  }
  if (!u)
    return cf_fail_null(ENOMEM, "union of %u bitmaps", t->nstates - 1);
  roaring_bitmap_run_optimize(u);
  return u;
}

int cf_tracker_foreach_run(const struct cf_tracker *t, unsigned state, cf_tracker_run_fn fn, void *ctx)
{
  if (state >= t->nstates)
    return cf_fail(EINVAL, "state %u, tracker has %u", state, t->nstates);

  const uint64_t n = t->nblocks;
  roaring_uint32_iterator_t it;
  uint64_t pos = 0;
  int rc = 0;

  if (state) {
    const roaring_bitmap_t *b = t->bm[state];
    roaring_init_iterator(b, &it);
    while (pos < n) {
      uint64_t start = next_present(&it, pos, n);
      if (start >= n)
        break;
      pos = run_end(b, start, n);
      if ((rc = fn(ctx, start, pos - start)) != 0)
        break;
    }
    return rc;
  }

  /* Default state: the gaps between the runs of the union U of the bitmaps.
   * At the top of the loop pos is 0 or the end of a run of U, so not in U.
   * With one bitmap U is that bitmap. With more, a run of U is first walked
   * as the chain of runs of the (disjoint) bitmaps it is made of; building U
   * costs a pass over every container, so the chain walk is only given that
   * many steps before U is built and used instead (a run of U made of
   * millions of alternating tiny runs). Cost: O(runs * log + min(chain
   * steps, containers)). */
  const roaring_bitmap_t *u = t->nstates == 2 ? t->bm[1] : NULL;
  roaring_bitmap_t *owned = NULL;
  roaring_uint32_iterator_t its[CF_TRACKER_MAX_STATES];
  uint64_t budget = OPT_MIN;

  if (u)
    roaring_init_iterator(u, &it);
  for (unsigned s = 1; s < t->nstates; s++) {
    roaring_init_iterator(t->bm[s], &its[s]);
    budget += (uint64_t)t->bm[s]->high_low_container.size;
  }
  while (pos < n) {
    uint64_t next = n;
    if (u)
      next = next_present(&it, pos, n);
    else
      for (unsigned s = 1; s < t->nstates; s++) {
        uint64_t x = next_present(&its[s], pos, next);
        if (x < next)
          next = x;
      }
    if (next > pos && (rc = fn(ctx, pos, next - pos)) != 0)
      break;
    if (next >= n)
      break;
    pos = next;
    while (!u && pos < n) {
      unsigned s = 1;
      while (s < t->nstates && !roaring_bitmap_contains(t->bm[s], (uint32_t)pos))
        s++;
      if (s == t->nstates)
        break; /* pos ends the run of U */
      if (budget-- == 0) {
        owned = make_union(t);
        if (!owned)
          return -1;
        u = owned;
        roaring_init_iterator(u, &it);
        break;
      }
      pos = run_end(t->bm[s], pos, n);
    }
    if (u)
      pos = run_end(u, pos, n);
  }
  if (owned)
    roaring_bitmap_free(owned);
  return rc;
}

roaring_bitmap_t *cf_tracker_export(const struct cf_tracker *t, unsigned state)
{
  if (state >= t->nstates)
    return cf_fail_null(EINVAL, "state %u, tracker has %u", state, t->nstates);

  roaring_bitmap_t *r;
  if (state) {
    r = roaring_bitmap_copy(t->bm[state]);
    if (!r)
      return cf_fail_null(ENOMEM, "copy of state %u", state);
    return r;
  }
  r = roaring_bitmap_create();
  if (!r)
    return cf_fail_null(ENOMEM, "bitmap for state 0");
  if (t->nblocks)
    roaring_bitmap_add_range_closed(r, 0, (uint32_t)(t->nblocks - 1));
  for (unsigned s = 1; s < t->nstates; s++)
    roaring_bitmap_andnot_inplace(r, t->bm[s]);
  roaring_bitmap_run_optimize(r);
  return r;
}
