/* A guest that tries to exhaust its host's resources, for
 * tests/daemon-limits.sh. A daemon template: it reads one command a line
 * from stdin and answers on stdout, then reads again (the pause point).
 *   open N   open /many/f0000.. all at once, then close them:
 *            "opened K errno E"
 *   mmap N   open, map one page of, and close /many/f0000..:
 *            "mapped K errno E" (K: mappings that hold the file's bytes)
 *   mem N    touch N MiB of fresh anonymous memory: "touched N errno E"
 *   ping     "pong"
 * E is 0 when all N succeeded, else the errno of the first failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void cmd(char *line)
{
  char out[128], path[64];
  long n = 0, k = 0;
  int e = 0;
  char *arg = strchr(line, ' ');
  if (arg)
    n = strtol(arg + 1, NULL, 10);
  if (strncmp(line, "open", 4) == 0) {
    static int fds[100000];
    for (k = 0; k < n && k < 100000; k++) {
      snprintf(path, sizeof path, "/many/f%04ld", k);
      if ((fds[k] = open(path, O_RDONLY)) < 0) {
        e = errno;
        break;
      }
    }
    for (long i = 0; i < k; i++)
      close(fds[i]);
    snprintf(out, sizeof out, "opened %ld errno %d\n", k, e);
  } else if (strncmp(line, "mmap", 4) == 0) {
    for (k = 0; k < n; k++) {
      char want[32];
      snprintf(path, sizeof path, "/many/f%04ld", k);
      snprintf(want, sizeof want, "file %ld\n", k);
      int fd = open(path, O_RDONLY);
      if (fd < 0) {
        e = errno;
        break;
      }
      char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED)
        e = errno;
      close(fd);
      if (p == MAP_FAILED)
        break;
      if (memcmp(p, want, strlen(want)) != 0) {
        e = EIO;
        break;
      }
    }
    snprintf(out, sizeof out, "mapped %ld errno %d\n", k, e);
  } else if (strncmp(line, "mem", 3) == 0) {
    for (k = 0; k < n; k++) {
      char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        e = errno;
        break;
      }
      for (int i = 0; i < 1 << 20; i += 4096)
        p[i] = 1;
    }
    snprintf(out, sizeof out, "touched %ld errno %d\n", k, e);
  } else {
    snprintf(out, sizeof out, "pong\n");
  }
  say(out);
}

int main(void)
{
  char buf[256];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(0, buf + len, sizeof buf - 1 - len);
    if (r <= 0)
      return 0;
    len += (size_t)r;
    buf[len] = 0;
    char *nl;
    while ((nl = strchr(buf, '\n'))) {
      *nl = 0;
      cmd(buf);
      len -= (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, len + 1);
    }
    if (len == sizeof buf - 1)
      len = 0;
  }
}
