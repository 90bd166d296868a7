/* Thread-local last error (docs/error-handling.md). No global mutable state:
 * each thread has its own message buffer. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static __thread char msg[512];
static __thread int err;

const char *cf_error(void) { return msg; }
int cf_errno(void) { return err; }

int cf_fail_(const char *func, int errnum, const char *fmt, ...)
{
  va_list ap;
  int n = snprintf(msg, sizeof msg, "%s: ", func);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof msg)
    vsnprintf(msg + n, sizeof msg - n, fmt, ap);
  va_end(ap);
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
