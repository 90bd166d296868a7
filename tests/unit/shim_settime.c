/* clock_settime and settimeofday with no VM, against the same calls made
 * natively by a process without CAP_SYS_TIME (a forked child that drops to
 * uid 65534): a sandbox's program never may set the host's clock. Both were
 * ENOSYS before (CPython's test_time expects EPERM or success). */
#include <errno.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim_util.h"
#include "tap.h"

#define NCASE 9
/* Case i's result, natively (errno) when native, else the shim's (-errno). */
static long run_case(int i, bool native)
{
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct timespec bad = {now.tv_sec, 1000000000};
  struct timeval tv = {now.tv_sec, 0}, badtv = {now.tv_sec, 1000000};
  clockid_t clk = CLOCK_REALTIME;
  const void *arg = &now;
  bool tod = false;
  const void *tz = NULL;
  switch (i) {
  case 0: break;                                  /* REALTIME, now */
  case 1: arg = &bad; break;                      /* tv_nsec 1e9 */
  case 2: clk = CLOCK_MONOTONIC; break;           /* no setter */
  case 3: clk = CLOCK_PROCESS_CPUTIME_ID; break;  /* a CPU clock */
  case 4: clk = 99; break;                        /* no clock */
  case 5: arg = NULL; break;                      /* a bad pointer */
  case 6: tod = true; arg = &tv; break;
  case 7: tod = true; arg = &badtv; break;
  case 8: tod = true; arg = NULL; break;          /* settimeofday(NULL, NULL) */
  }
  size_t sz = tod ? sizeof tv : sizeof now;
  if (native) {
    long r = tod ? syscall(SYS_settimeofday, arg, tz) : syscall(SYS_clock_settime, clk, arg);
    return r < 0 ? errno : 0;
  }
  uint64_t g = arg ? galloc(arg, sz) : (i == 5 ? 0x10 : 0);
  return -(tod ? S2(SYS_settimeofday, g, 0) : S2(SYS_clock_settime, clk, g));
}

int main(void)
{
  shim_setup("/");
  static const char *what[NCASE] = {"clock_settime(REALTIME, now)", "clock_settime(REALTIME, tv_nsec 1e9)",
                                    "clock_settime(MONOTONIC)", "clock_settime(PROCESS_CPUTIME_ID)",
                                    "clock_settime(99)", "clock_settime(REALTIME, a bad pointer)",
                                    "settimeofday(now)", "settimeofday(tv_usec 1e6)", "settimeofday(NULL, NULL)"};
  int pfd[2];
  if (pipe(pfd) < 0)
    return 1;
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
      _exit(1);
    for (int i = 0; i < NCASE; i++) {
      int e = (int)run_case(i, true);
      if (write(pfd[1], &e, sizeof e) != sizeof e)
        _exit(1);
    }
    _exit(0);
  }
  close(pfd[1]);
  int native[NCASE];
  size_t got_bytes = 0;
  ssize_t n;
  while (got_bytes < sizeof native && (n = read(pfd[0], (char *)native + got_bytes, sizeof native - got_bytes)) > 0)
    got_bytes += (size_t)n;
  bool have = got_bytes == sizeof native;
  int status = 0;
  waitpid(pid, &status, 0);
  if (!have)
    diag("the native child: status %d, %zu bytes", status, got_bytes);
  static const int want[NCASE] = {EPERM, EINVAL, EINVAL, EINVAL, EINVAL, EFAULT, EPERM, EINVAL, EPERM};
  for (int i = 0; i < NCASE; i++) {
    long got = run_case(i, false);
    int w = have ? native[i] : want[i];
    ok(got == w, "%s: %s (natively without CAP_SYS_TIME: %s)", what[i], strerrorname_np((int)got) ?: "0",
       have ? strerrorname_np(native[i]) ?: "0" : "not run; Linux's documented");
  }
  return done_testing();
}
