/* Private test hooks of lib/zero.c: run one named scan implementation
 * directly, bypassing the run-time dispatch, so tests/unit/zero.c and
 * bench/zero.c can check and time every implementation in one process.
 * Not installed; not part of the public API. */
#ifndef COWFORK_ZERO_IMPL_H
#define COWFORK_ZERO_IMPL_H

#include <stdbool.h>
#include <stddef.h>

/* True when impl ("scalar", "sse2" or "avx2") is known and this CPU can run it. */
bool cf_zero_impl_supported(const char *impl);

/* The full scan of implementation impl over len bytes at buf, without the
 * cheap sample cf_is_zero() does first (so every byte position exercises the
 * vector code). An unknown or unsupported impl uses the scalar scan. */
bool cf_is_zero_with(const char *impl, const void *buf, size_t len);

#endif
