/* Unit test of lib/zero.c: every scan implementation (forced through the
 * private hook in lib/zero_impl.h) and the public cf_is_zero(), at every
 * length 0..300 and alignment 0..63, zero and with one non-zero byte at every
 * position, plus 4 KiB and 2 MiB buffers and the COWFORK_ZERO_IMPL override.
 *
 * Buffers sit in a mapping whose bytes outside the buffer are 0xff and which
 * is fenced by PROT_NONE pages, so a scan that reads before or after its
 * buffer either calls a zero buffer non-zero or faults, even without ASan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cowfork/zero.h"
#include "tap.h"
#include "zero_impl.h"

static const char *const impl_names[] = { "scalar", "sse2", "avx2" };
#define N_NAMES (sizeof impl_names / sizeof impl_names[0])

/* impl NULL means the public cf_is_zero() with its dispatch. */
static bool check(const char *impl, const void *buf, size_t len)
{
  return impl ? cf_is_zero_with(impl, buf, len) : cf_is_zero(buf, len);
}

static const char *label(const char *impl) { return impl ? impl : "cf_is_zero"; }

/* A fenced arena: guard page, `size` bytes of 0xff, guard page. */
struct arena {
  unsigned char *map, *data;
  size_t size, map_size;
};

static int arena_init(struct arena *a, size_t size)
{
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  a->size = (size + pg - 1) / pg * pg;
  a->map_size = a->size + 2 * pg;
  a->map = mmap(NULL, a->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a->map == MAP_FAILED)
    return -1;
  if (mprotect(a->map, pg, PROT_NONE) || mprotect(a->map + pg + a->size, pg, PROT_NONE))
    return -1;
  a->data = a->map + pg;
  memset(a->data, 0xff, a->size);
  return 0;
}

/* Check buf[0..len) zero, then with a single non-zero byte at each position
 * (its one set bit cycles with position, length and address, so across the
 * grid every bit is tried at every position of every short length). Adds the
 * wrong answers to *bad; the first one ever is described in why. */
static void check_buffer(const char *impl, unsigned char *buf, size_t len, size_t pos_step,
                         long *bad, char *why, size_t why_len)
{
  memset(buf, 0, len);
  if (!check(impl, buf, len) && (*bad)++ == 0)
    snprintf(why, why_len, "zero buffer len %zu align %zu reported non-zero", len,
             (size_t)((uintptr_t)buf & 63));
  for (size_t pos = 0; pos < len; pos += (pos < 64 || pos + 64 >= len) ? 1 : pos_step) {
    buf[pos] = (unsigned char)(1u << ((pos + len + (uintptr_t)buf) & 7));
    if (check(impl, buf, len) && (*bad)++ == 0)
      snprintf(why, why_len, "len %zu align %zu: byte %zu = 0x%02x reported zero", len,
               (size_t)((uintptr_t)buf & 63), pos, buf[pos]);
    buf[pos] = 0;
  }
  memset(buf, 0xff, len);
}

/* All lengths 0..300 at all alignments 0..63, every position. */
static void test_grid(const char *impl, struct arena *a)
{
  char why[160] = "";
  long bad = 0;
  /* a->data is page aligned; leave 64 bytes of 0xff before the buffer. */
  for (size_t align = 0; align < 64; align++)
    for (size_t len = 0; len <= 300; len++)
      check_buffer(impl, a->data + 64 + align, len, 1, &bad, why, sizeof why);
  if (!ok(bad == 0, "%s: lengths 0..300 x alignments 0..63, zero and one byte set", label(impl)))
    diag("%ld wrong; first: %s", bad, why);

  /* Flush against either guard page: an overread faults. */
  bad = 0;
  for (size_t len = 0; len <= 300; len++) {
    check_buffer(impl, a->data + a->size - len, len, 1, &bad, why, sizeof why);
    check_buffer(impl, a->data, len, 1, &bad, why, sizeof why);
  }
  if (!ok(bad == 0, "%s: lengths 0..300 against the guard pages", label(impl)))
    diag("%ld wrong; first: %s", bad, why);
}

static void test_large(const char *impl, struct arena *a)
{
  char why[160] = "";
  long bad = 0;
  for (size_t align = 0; align < 64; align++)
    check_buffer(impl, a->data + 64 + align, 4096, align < 2 ? 1 : 7, &bad, why, sizeof why);
  check_buffer(impl, a->data + a->size - 4096, 4096, 1, &bad, why, sizeof why);
  if (!ok(bad == 0, "%s: 4 KiB at alignments 0..63, zero and one byte set", label(impl)))
    diag("%ld wrong; first: %s", bad, why);

  bad = 0;
  size_t big = 2u << 20;
  /* Every position near the ends; a spread of odd strides in between. */
  check_buffer(impl, a->data + 64, big, 4093, &bad, why, sizeof why);
  check_buffer(impl, a->data + 64 + 1, big, 65521, &bad, why, sizeof why);
  check_buffer(impl, a->data + 64 + 33, big, 65521, &bad, why, sizeof why);
  check_buffer(impl, a->data + a->size - big, big, 65521, &bad, why, sizeof why);
  if (!ok(bad == 0, "%s: 2 MiB, zero and one byte set", label(impl)))
    diag("%ld wrong; first: %s", bad, why);
}

/* Run this program again with COWFORK_ZERO_IMPL=impl; return what the child's
 * cf_is_zero_impl() said. */
static int impl_under_env(const char *impl, char *out, size_t out_len)
{
  int fd[2];
  if (pipe(fd))
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    setenv("COWFORK_ZERO_IMPL", impl, 1);
    execl("/proc/self/exe", "zero", "--print-impl", (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  ssize_t n = read(fd[0], out, out_len - 1);
  close(fd[0]);
  int status;
  waitpid(pid, &status, 0);
  if (n < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return -1;
  out[n] = '\0';
  out[strcspn(out, "\n")] = '\0';
  return 0;
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--print-impl") == 0) {
    printf("%s\n", cf_is_zero_impl());
    return 0;
  }

  struct arena a;
  if (arena_init(&a, (2u << 20) + 4096)) {
    perror("mmap");
    return 1;
  }

  const char *best = "scalar";
  for (size_t i = 0; i < N_NAMES; i++)
    if (cf_zero_impl_supported(impl_names[i]))
      best = impl_names[i];
  ok(cf_zero_impl_supported("scalar"), "scalar is always supported");
  ok(!cf_zero_impl_supported("bogus") && !cf_zero_impl_supported(NULL),
     "unknown implementation names are not supported");

  const char *in_use = cf_is_zero_impl();
  const char *forced = getenv("COWFORK_ZERO_IMPL");
  const char *want = forced && cf_zero_impl_supported(forced) ? forced : best;
  if (!ok(strcmp(in_use, want) == 0, "cf_is_zero_impl() is %s", want))
    diag("got %s", in_use);
  diag("in use: %s (best supported: %s)", in_use, best);

  for (size_t i = 0; i < N_NAMES; i++) {
    char got[32] = "";
    const char *name = impl_names[i];
    if (!cf_zero_impl_supported(name)) {
      ok(1, "COWFORK_ZERO_IMPL=%s # SKIP CPU lacks %s", name, name);
      continue;
    }
    if (!ok(impl_under_env(name, got, sizeof got) == 0 && strcmp(got, name) == 0,
            "COWFORK_ZERO_IMPL=%s forces %s", name, name))
      diag("got '%s'", got);
  }
  {
    char got[32] = "";
    if (!ok(impl_under_env("bogus", got, sizeof got) == 0 && strcmp(got, best) == 0,
            "COWFORK_ZERO_IMPL=bogus falls back to %s", best))
      diag("got '%s'", got);
  }

  for (size_t i = 0; i < N_NAMES; i++) {
    const char *name = impl_names[i];
    if (!cf_zero_impl_supported(name)) {
      ok(1, "%s scans # SKIP CPU lacks %s", name, name);
      continue;
    }
    test_grid(name, &a);
    test_large(name, &a);
  }
  test_grid(NULL, &a);
  test_large(NULL, &a);

  /* The public entry point must not read a NULL pointer when len is 0. */
  ok(cf_is_zero(NULL, 0), "cf_is_zero(NULL, 0) is true");

  munmap(a.map, a.map_size);
  return done_testing();
}
