/* Thread-local last error (docs/error-handling.md). No global mutable state:
 * each thread has its own message buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread char msg[512];
static __thread int err;

const char *cf_error(void) { return msg; }
int cf_errno(void) { return err; }

int cf_fail_(const char *func, int errnum, const char *fmt, ...)
{
  /* Format into a local buffer first: the arguments may point into msg
   * (a caller wrapping the previous error with "%s", cf_error()). */
  char local[sizeof msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(local, sizeof local, fmt, ap);
  va_end(ap);
  int n = snprintf(msg, sizeof msg, "%s: ", func);
  if (n > 0 && (size_t)n < sizeof msg)
    memcpy(msg + n, local, strnlen(local, sizeof msg - n - 1) + 1);
  msg[sizeof msg - 1] = 0;
  err = errnum;
  errno = errnum;
  return -1;
}

ssize_t cf_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
  size_t done = 0;
  while (done < len) {
    ssize_t r = pread(fd, (char *)buf + done, len - done, off + done);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0)
      break;
    done += r;
  }
  return done;
}

int cf_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
  size_t done = 0;
  while (done < len) {
    ssize_t r = pwrite(fd, (const char *)buf + done, len - done, off + done);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += r;
  }
  return 0;
}
