/* A minimal HTTP/1.1 client for the daemon's Unix socket (the CLI's
 * `cowfork sandbox ...` and the benchmarks): one request per connection,
 * "Connection: close", the answer read to end of file. The daemon answers
 * with Content-Length (never chunked), which is checked when present. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cowfork/daemon.h"
#include "internal.h"

const char *cf_daemon_default_socket(char *buf, size_t len)
{
  const char *e = getenv("COWFORK_SOCKET");
  if (e && *e)
    snprintf(buf, len, "%s", e);
  else if ((e = getenv("XDG_RUNTIME_DIR")) && *e)
    snprintf(buf, len, "%s/cowfork.sock", e);
  else
    snprintf(buf, len, "/run/cowfork.sock");
  return buf;
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int cf_daemon_request(const char *socket_path, const char *method, const char *path, const char *body,
                      size_t body_len, int *status, char **resp, size_t *resp_len)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof a.sun_path)
    return cf_fail(ENAMETOOLONG, "socket path too long: %s", socket_path);
  strcpy(a.sun_path, socket_path);
  CLEANUP_CLOSE int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cf_fail(errno, "socket: %m");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    return cf_fail(errno, "cannot reach the daemon at %s: %m (is `cowfork daemon` running?)", socket_path);
  char head[1024];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                    "Content-Length: %zu\r\n\r\n",
                    method, path, body_len ? "Content-Type: application/json\r\n" : "", body_len);
  if (hn < 0 || (size_t)hn >= sizeof head)
    return cf_fail(EINVAL, "request path too long");
  if (write_all(fd, head, (size_t)hn) < 0 || (body_len && write_all(fd, body, body_len) < 0))
    return cf_fail(errno ? errno : EPIPE, "sending to the daemon: %m");
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return cf_fail(ENOMEM, "out of memory");
  for (;;) {
    if (n + 1 >= cap) {
      char *b = realloc(buf, cap *= 2);
      if (!b) {
        free(buf);
        return cf_fail(ENOMEM, "out of memory");
      }
      buf = b;
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      return cf_fail(e, "reading the daemon's answer: %s", strerror(e));
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = 0;
  char *sep = strstr(buf, "\r\n\r\n");
  int st;
  if (!sep || sscanf(buf, "HTTP/1.%*d %d", &st) != 1) {
    free(buf);
    return cf_fail(EPROTO, "the daemon's answer is not HTTP");
  }
  char *b = sep + 4;
  size_t blen = n - (size_t)(b - buf);
  memmove(buf, b, blen);
  buf[blen] = 0;
  *status = st;
  *resp = buf;
  if (resp_len)
    *resp_len = blen;
  return 0;
}

int cf_daemon_probe(const char *store_dir, char *sock, size_t len, int *guard)
{
  char path[PATH_MAX];
  if (guard)
    *guard = -1;
  if (snprintf(path, sizeof path, "%s/daemon", store_dir) >= (int)sizeof path)
    return cf_fail(ENAMETOOLONG, "store path too long: %s", store_dir);
  if (cf_private_mkdir(path) < 0)
    return -1;
  strcat(path, "/lock");
  int fd = cf_private_open(path, O_RDWR);
  if (fd < 0)
    return -1;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    if (guard)
      *guard = fd;
    else
      close(fd);
    return 0;
  }
  int e = errno;
  close(fd);
  if (e != EWOULDBLOCK)
    return cf_fail(e, "lock %s: %s", path, strerror(e));
  snprintf(path, sizeof path, "%s/daemon/socket", store_dir);
  CLEANUP_CLOSE int sfd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = sfd < 0 ? -1 : read(sfd, sock, len - 1);
  if (n <= 0)
    return cf_fail(n < 0 ? errno : EIO, "a daemon serves %s but its socket is not recorded in %s", store_dir,
                   path);
  sock[n] = 0;
  sock[strcspn(sock, "\n")] = 0;
  return 1;
}
