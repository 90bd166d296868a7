/* Zero detection. */
#ifndef COWFORK_ZERO_H
#define COWFORK_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* True when all len bytes at buf are zero. Samples a few bytes first (a
 * non-zero block is usually rejected there), then scans with the widest
 * vector unit the CPU has (AVX2, SSE2, or scalar), chosen once at run time.
 * Any alignment and length; len 0 is zero. */
bool cf_is_zero(const void *buf, size_t len);

/* Name of the scan implementation in use: "avx2", "sse2" or "scalar". */
const char *cf_is_zero_impl(void);

#endif
