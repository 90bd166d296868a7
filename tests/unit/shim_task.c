/* Resource limits and the alternate signal stack with no VM: the checks
 * Linux makes (tests/sandbox-limits.sh compares whole programs with native
 * runs in a VM). setrlimit used to return 0 and set nothing, and sigaltstack
 * to ignore a new stack: the limits read back, EMFILE/EBADF/EINVAL at the
 * limit, every refused setrlimit, ENOMEM/EINVAL of sigaltstack and the kept
 * stack all failed then. */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include "shim_util.h"
#include "tap.h"

int main(void)
{
  shim_setup("/");
  struct rlimit rl = {8, 16}, got;
  uint64_t g = galloc(&rl, sizeof rl), out = galloc(NULL, sizeof rl);
  is(S2(SYS_setrlimit, RLIMIT_NOFILE, g), 0, "setrlimit NOFILE 8 16");
  is(S2(SYS_getrlimit, RLIMIT_NOFILE, out), 0, "getrlimit NOFILE");
  memcpy(&got, hp(out), sizeof got);
  ok(got.rlim_cur == 8 && got.rlim_max == 16, "getrlimit gives 8 16 (got %lu %lu)", got.rlim_cur, got.rlim_max);
  long fd, last = -1;
  while ((fd = S3(SYS_open, gs("/dev/null"), O_RDONLY, 0)) >= 0)
    last = fd;
  ok(last == 7 && fd == -EMFILE, "open stops at fd 7 with EMFILE (last %ld, then %ld)", last, fd);
  is(S2(SYS_dup2, 0, 9), -EBADF, "dup2 above the limit: EBADF");
  is(S3(SYS_fcntl, 0, F_DUPFD, 9), -EINVAL, "F_DUPFD above the limit: EINVAL");
  rl = (struct rlimit){4, 2};
  is(S2(SYS_setrlimit, RLIMIT_NOFILE, galloc(&rl, sizeof rl)), -EINVAL, "cur > max: EINVAL");
  rl = (struct rlimit){1 << 20, 1 << 20};
  is(S2(SYS_setrlimit, RLIMIT_NOFILE, galloc(&rl, sizeof rl)), -EPERM, "NOFILE above the fd table: EPERM");
  is(S2(SYS_setrlimit, RLIM_NLIMITS, g), -EINVAL, "a bad resource: EINVAL");
  is(S4(SYS_prlimit64, sb->pid + 1, RLIMIT_NOFILE, 0, out), -ESRCH, "prlimit64 of another pid: ESRCH");
  sb->uid = 1000;
  rl = (struct rlimit){8, 32};
  is(S2(SYS_setrlimit, RLIMIT_NOFILE, galloc(&rl, sizeof rl)), -EPERM, "raising the hard limit unprivileged: EPERM");
  sb->uid = 0;
  is(S2(SYS_setrlimit, RLIMIT_NOFILE, galloc(&rl, sizeof rl)), 0, "raising it as root");

  stack_t ss = {.ss_sp = (void *)(SHIM_SCRATCH + (1 << 20)), .ss_size = 1024}, os;
  uint64_t gss = galloc(&ss, sizeof ss), gos = galloc(NULL, sizeof os);
  is(S2(SYS_sigaltstack, gss, 0), -ENOMEM, "sigaltstack below MINSIGSTKSZ: ENOMEM");
  ss.ss_size = 65536;
  ss.ss_flags = 5;
  memcpy(hp(gss), &ss, sizeof ss);
  is(S2(SYS_sigaltstack, gss, 0), -EINVAL, "a bad mode: EINVAL");
  ss.ss_flags = 0;
  memcpy(hp(gss), &ss, sizeof ss);
  is(S2(SYS_sigaltstack, gss, gos), 0, "sigaltstack 64K");
  memcpy(&os, hp(gos), sizeof os);
  ok(os.ss_flags == SS_DISABLE && os.ss_size == 0, "the old one: none");
  is(S2(SYS_sigaltstack, 0, gos), 0, "sigaltstack(NULL, &old)");
  memcpy(&os, hp(gos), sizeof os);
  ok(os.ss_flags == 0 && os.ss_size == 65536 && os.ss_sp == ss.ss_sp, "it is kept");
  ss.ss_flags = SS_DISABLE;
  memcpy(hp(gss), &ss, sizeof ss);
  is(S2(SYS_sigaltstack, gss, 0), 0, "SS_DISABLE");
  S2(SYS_sigaltstack, 0, gos);
  memcpy(&os, hp(gos), sizeof os);
  ok(os.ss_flags == SS_DISABLE && os.ss_size == 0, "disabled");
  shim_teardown();
  return done_testing();
}
