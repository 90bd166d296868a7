/* File-system work for bench/files.sh, timed inside the program so that the
 * same numbers come from a native run and from a sandbox (no VM start or
 * `cowfork` start counted). Each mode prints its times in ms on one line.
 *   files small DIR N      create+write(100 B)+fsync+close N files in DIR,
 *                          then unlink them: "CREATE_MS DELETE_MS"
 *   files stream PATH MIB  write MIB MiB in 1 MiB writes + fsync, close,
 *                          then read it back in 1 MiB reads: "WRITE_MS READ_MS"
 *   files run CMD ARGS...  fork+exec+wait of CMD (it must exit 0): "MS"
 *   files hold PATH MIB    write MIB MiB of distinct bytes to PATH, then
 *                          wait for a line on stdin (a template's ready
 *                          point), print "ok" and exit
 * Errors: a message on stderr and exit 1. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static char buf[1 << 20];

static int write_mib(const char *path, long mib, int sync)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    die(path);
  for (long i = 0; i < mib; i++) {
    for (size_t j = 0; j < sizeof buf; j += 4096)
      memcpy(buf + j, &i, sizeof i), memcpy(buf + j + 8, &j, sizeof j);
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
      die("write");
  }
  if (sync && fsync(fd) < 0)
    die("fsync");
  return close(fd);
}

int main(int argc, char **argv)
{
  if (argc >= 4 && !strcmp(argv[1], "small")) {
    long n = atol(argv[3]);
    char path[4096];
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0)
        die(path);
      if (write(fd, buf, 100) != 100 || fsync(fd) < 0)
        die("write+fsync");
      close(fd);
    }
    double t1 = now_ms();
    for (long i = 0; i < n; i++) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      if (unlink(path) < 0)
        die(path);
    }
    printf("%.3f %.3f\n", t1 - t0, now_ms() - t1);
    return 0;
  }
  if (argc >= 4 && !strcmp(argv[1], "stream")) {
    double t0 = now_ms();
    write_mib(argv[2], atol(argv[3]), 1);
    double t1 = now_ms();
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0)
      die(argv[2]);
    ssize_t r;
    long total = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0)
      total += r;
    if (r < 0 || total != atol(argv[3]) << 20)
      die("read back");
    close(fd);
    printf("%.3f %.3f\n", t1 - t0, now_ms() - t1);
    return 0;
  }
  if (argc >= 3 && !strcmp(argv[1], "run")) {
    double t0 = now_ms();
    pid_t p = fork();
    if (p < 0)
      die("fork");
    if (p == 0) {
      execvp(argv[2], argv + 2);
      die(argv[2]);
    }
    int st;
    if (waitpid(p, &st, 0) < 0)
      die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
      fprintf(stderr, "%s: status 0x%x\n", argv[2], st);
      return 1;
    }
    printf("%.3f\n", now_ms() - t0);
    return 0;
  }
  if (argc >= 4 && !strcmp(argv[1], "hold")) {
    if (atol(argv[3]) > 0)
      write_mib(argv[2], atol(argv[3]), 0);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
      return 2;
    printf("ok\n");
    return 0;
  }
  fprintf(stderr, "usage: files small DIR N | stream PATH MIB | run CMD... | hold PATH MIB\n");
  return 2;
}
