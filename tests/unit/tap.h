/* Minimal TAP producer for the C unit tests: ok()/is() print one line per
 * check, done_testing() prints the plan and returns the exit status (1 when
 * any check failed). skip_all() exits 77, which tests/run reports as skipped. */
#ifndef COWFORK_TAP_H
#define COWFORK_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  tap_n++;
  printf("%sok %d - ", cond ? "" : "not ", tap_n);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  if (!cond) {
    tap_failed++;
    printf("#   failed at %s:%d\n", file, line);
  }
  fflush(stdout);
  return cond;
}
#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is(a, b, ...)                                                          \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (!ok(a_ == b_, __VA_ARGS__))                                            \
      printf("#   got %lld, expected %lld\n", a_, b_);                         \
  } while (0)
#define diag(...) (printf("# " __VA_ARGS__), printf("\n"))

static inline int done_testing(void)
{
  printf("1..%d\n", tap_n);
  return tap_failed ? 1 : 0;
}

static inline void skip_all(const char *why)
{
  printf("1..0 # SKIP %s\n", why);
  exit(77);
}

#endif
