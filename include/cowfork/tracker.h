/* Per-block state tracker over CRoaring bitmaps.
 *
 * Every block of [0, nblocks) is in exactly one state. State 0 is the
 * default: a block is in it when it is in none of the bitmaps. States
 * 1..nstates-1 (at most 3) each have one bitmap. Blocks are 32-bit
 * indices, so nblocks <= 2^32. */
#ifndef COWFORK_TRACKER_H
#define COWFORK_TRACKER_H

#include <stdbool.h>
#include <stdint.h>

#define CF_TRACKER_MAX_STATES 4

struct cf_tracker;
typedef struct roaring_bitmap_s roaring_bitmap_t;

/* A tracker of nblocks blocks, all in state 0. nstates is 2..4.
 * NULL with cf_error() on bad arguments or no memory. */
struct cf_tracker *cf_tracker_new(uint64_t nblocks, unsigned nstates);
void cf_tracker_free(struct cf_tracker *t);

uint64_t cf_tracker_nblocks(const struct cf_tracker *t);

/* Put blocks [first, first+count) into state. count 0 is a no-op.
 * -1 (EINVAL) if the range leaves [0, nblocks) or state >= nstates. */
int cf_tracker_set_range(struct cf_tracker *t, uint64_t first, uint64_t count, unsigned state);

/* State of one block, or -1 (EINVAL) when block >= nblocks. */
int cf_tracker_get(const struct cf_tracker *t, uint64_t block);

/* 1 if every block of [first, first+count) is in state, 0 if not,
 * -1 (EINVAL) on a bad range or state. An empty range is 1. */
int cf_tracker_range_is(const struct cf_tracker *t, uint64_t first, uint64_t count, unsigned state);

/* Number of blocks in state. */
uint64_t cf_tracker_count(const struct cf_tracker *t, unsigned state);

/* Calls fn once for each maximal run of consecutive blocks in state, in
 * ascending order. fn returning non-zero stops the walk and that value is
 * returned; otherwise 0. -1 (EINVAL) on a bad state, (ENOMEM) when the
 * temporary union a walk of the default state may build cannot be allocated. */
typedef int (*cf_tracker_run_fn)(void *ctx, uint64_t first, uint64_t count);
int cf_tracker_foreach_run(const struct cf_tracker *t, unsigned state, cf_tracker_run_fn fn, void *ctx);

/* A new bitmap holding exactly the blocks in state (the caller frees it with
 * roaring_bitmap_free). NULL with cf_error() on a bad state or no memory. */
roaring_bitmap_t *cf_tracker_export(const struct cf_tracker *t, unsigned state);

#endif
