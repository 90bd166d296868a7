/* Zero detection (include/cowfork/zero.h).
 *
 * Why sample first: the blocks we are asked about are mostly either all
 * zero (freshly mapped or trimmed memory, sparse disk regions) or plainly
 * not (code, data, page tables). Non-zero data almost always has a non-zero
 * byte in its first 16 bytes, its last byte or its middle, so looking at
 * those three spots first rejects such a block in a few nanoseconds without
 * the indirect call and without touching the rest of its cache lines. A
 * block that passes the sample is scanned in full; the sampled bytes are
 * scanned again, which is cheap and keeps the scans self-contained.
 *
 * Why this dispatch: the scan runs at memory bandwidth only with the widest
 * vector unit, and which one exists is known only at run time (the library
 * is built for baseline x86-64). The choice is made once, under
 * pthread_once, and kept in `chosen`, a pointer into a const table of
 * implementations; that pointer is the only mutable state in this file and
 * is written exactly once, before any reader uses it (pthread_once orders
 * the write before every return from it). COWFORK_ZERO_IMPL=scalar|sse2|avx2
 * forces an implementation (tests, benchmarks); it is read at that moment
 * only, and an unknown or unsupported value falls back to the best one.
 *
 * Every scan reads only bytes inside [buf, buf + len): the unaligned head and
 * tail are covered by one unaligned load each, overlapping the aligned body,
 * rather than by loads that straddle the ends. Loads of possibly unaligned
 * words go through memcpy or loadu intrinsics, never through casted
 * pointers. Each scan returns at the first non-zero chunk. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/zero.h"
#include "internal.h"
#include "zero_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#define ZERO_X86 1
#include <immintrin.h>
#endif

typedef bool scan_fn(const unsigned char *p, size_t len);

struct zero_impl {
  const char *name;
  scan_fn *scan;
  bool (*supported)(void);
};

static inline uint64_t load64(const unsigned char *p)
{
  uint64_t w;
  memcpy(&w, p, sizeof w);
  return w;
}

static inline const unsigned char *align_up(const unsigned char *p, uintptr_t a)
{
  return p + ((a - ((uintptr_t)p & (a - 1))) & (a - 1));
}

/* Scalar: 64-bit words, four per iteration. */
static bool scan_scalar(const unsigned char *p, size_t len)
{
  if (len < 8) {
    unsigned char acc = 0;
    for (size_t i = 0; i < len; i++)
      acc |= p[i];
    return acc == 0;
  }
  const unsigned char *end = p + len;
  if (load64(p) != 0)
    return false;
  /* The first word covered [p, p + 8); resume at the next aligned word. */
  const unsigned char *a = align_up(p + 1, 8);
  for (; end - a >= 32; a += 32)
    if ((load64(a) | load64(a + 8) | load64(a + 16) | load64(a + 24)) != 0)
      return false;
  for (; end - a >= 8; a += 8)
    if (load64(a) != 0)
      return false;
  return load64(end - 8) == 0;
}

static bool always(void) { return true; }

#ifdef ZERO_X86

__attribute__((target("sse2"))) static inline bool zero128(__m128i v)
{
  return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) == 0xffff;
}

/* SSE2 (no ptest before SSE4.1): OR four 16-byte loads, then one compare. */
__attribute__((target("sse2"))) static bool scan_sse2(const unsigned char *p, size_t len)
{
  if (len < 16)
    return scan_scalar(p, len);
  const unsigned char *end = p + len;
  if (!zero128(_mm_loadu_si128((const __m128i *)p)))
    return false;
  const unsigned char *a = align_up(p + 1, 16);
  for (; end - a >= 64; a += 64) {
    const __m128i *v = (const __m128i *)a;
    __m128i x = _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)),
                             _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3)));
    if (!zero128(x))
      return false;
  }
  for (; end - a >= 16; a += 16)
    if (!zero128(_mm_load_si128((const __m128i *)a)))
      return false;
  return zero128(_mm_loadu_si128((const __m128i *)(end - 16)));
}

static bool have_sse2(void) { return __builtin_cpu_supports("sse2"); }

/* AVX2: OR eight 32-byte loads (four cache lines), then one vptest, so the
 * loop is load-bound; the unaligned head and tail are one loadu each. */
__attribute__((target("avx2"))) static bool scan_avx2(const unsigned char *p, size_t len)
{
  if (len < 32)
    return scan_sse2(p, len);
  const unsigned char *end = p + len;
  __m256i x = _mm256_loadu_si256((const __m256i *)p);
  if (!_mm256_testz_si256(x, x))
    return false;
  const unsigned char *a = align_up(p + 1, 32);
  for (; end - a >= 256; a += 256) {
    const __m256i *v = (const __m256i *)a;
    __m256i x0 = _mm256_or_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1));
    __m256i x1 = _mm256_or_si256(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3));
    __m256i x2 = _mm256_or_si256(_mm256_load_si256(v + 4), _mm256_load_si256(v + 5));
    __m256i x3 = _mm256_or_si256(_mm256_load_si256(v + 6), _mm256_load_si256(v + 7));
    x = _mm256_or_si256(_mm256_or_si256(x0, x1), _mm256_or_si256(x2, x3));
    if (!_mm256_testz_si256(x, x))
      return false;
  }
  for (; end - a >= 32; a += 32) {
    x = _mm256_load_si256((const __m256i *)a);
    if (!_mm256_testz_si256(x, x))
      return false;
  }
  x = _mm256_loadu_si256((const __m256i *)(end - 32));
  return _mm256_testz_si256(x, x);
}

static bool have_avx2(void) { return __builtin_cpu_supports("avx2"); }

#endif /* ZERO_X86 */

/* Best first; the last entry is always supported. */
static const struct zero_impl impls[] = {
#ifdef ZERO_X86
  { .name = "avx2", .scan = scan_avx2, .supported = have_avx2 },
  { .name = "sse2", .scan = scan_sse2, .supported = have_sse2 },
#endif
  { .name = "scalar", .scan = scan_scalar, .supported = always },
};
#define N_IMPLS (sizeof impls / sizeof impls[0])

static const struct zero_impl *find_impl(const char *name)
{
  for (size_t i = 0; name && i < N_IMPLS; i++)
    if (strcmp(impls[i].name, name) == 0)
      return &impls[i];
  return NULL;
}

/* The one-time dispatch: written once by choose(), read after pthread_once. */
static const struct zero_impl *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
#ifdef ZERO_X86
  __builtin_cpu_init();
#endif
  const struct zero_impl *want = find_impl(getenv("COWFORK_ZERO_IMPL"));
  if (want && want->supported()) {
    chosen = want;
    return;
  }
  for (size_t i = 0; i < N_IMPLS; i++)
    if (impls[i].supported()) {
      chosen = &impls[i];
      return;
    }
}

static const struct zero_impl *dispatch(void)
{
  pthread_once(&chosen_once, choose);
  return chosen;
}

bool cf_is_zero(const void *buf, size_t len)
{
  const unsigned char *p = buf;
  if (len < 16)
    return scan_scalar(p, len);
  /* The sample: bytes 0..15 (their own branch, so the usual non-zero block
   * costs two loads), then the 8-byte word at the middle (len >= 16 keeps it
   * inside the buffer) and the last byte. */
  if ((load64(p) | load64(p + 8)) != 0)
    return false;
  if ((load64(p + len / 2) | p[len - 1]) != 0)
    return false;
  return dispatch()->scan(p, len);
}

const char *cf_is_zero_impl(void) { return dispatch()->name; }

bool cf_zero_impl_supported(const char *impl)
{
  const struct zero_impl *z = find_impl(impl);
#ifdef ZERO_X86
  __builtin_cpu_init();
#endif
  return z && z->supported();
}

bool cf_is_zero_with(const char *impl, const void *buf, size_t len)
{
  const struct zero_impl *z = find_impl(impl);
  if (!cf_zero_impl_supported(impl))
    z = &impls[N_IMPLS - 1];
  return z->scan(buf, len);
}
