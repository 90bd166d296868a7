/* sys_dispatch's own cost and its table-driven behaviour, with no VM.
 *
 * Run with an argument N it only makes N getpid calls through sys_dispatch
 * (for callgrind: `valgrind --tool=callgrind --toggle-collect=sys_dispatch
 * build/tests/shim_dispatch 100000`, Ir per call = total / N). Without one
 * it is a TAP test of what every call shares: an unknown number is ENOSYS
 * and counted, getpid and gettid give the sandbox's ids. */
#include <errno.h>

#define SHIM_UTIL_NO_HARNESS
#include "shim_util.h"
#include "tap.h"

int main(int argc, char **argv)
{
  static struct cf_sandbox_opts o;
  struct sb *s = shim_sb_new(&o, 16ull << 20, PROT_READ | PROT_WRITE);
  if (argc > 1) {
    long n = atol(argv[1]), sum = 0;
    for (long i = 0; i < n; i++)
      sum += shim_sys(s, SYS_getpid, 0, 0, 0, 0, 0, 0);
    printf("%ld getpid calls, sum %ld\n", n, sum);
    shim_sb_free(s);
    return 0;
  }
  ok(shim_sys(s, SYS_getpid, 0, 0, 0, 0, 0, 0) == 2, "getpid is the sandbox's pid");
  ok(shim_sys(s, SYS_gettid, 0, 0, 0, 0, 0, 0) == 2, "gettid is the sandbox's tid");
  uint64_t before = s->enosys;
  ok(shim_sys(s, 100000, 0, 0, 0, 0, 0, 0) == -ENOSYS, "an unknown number is ENOSYS");
  ok(shim_sys(s, -1, 0, 0, 0, 0, 0, 0) == -ENOSYS, "a negative number is ENOSYS");
  ok(s->enosys == before + 2, "ENOSYS results are counted");
  shim_sb_free(s);
  return done_testing();
}
