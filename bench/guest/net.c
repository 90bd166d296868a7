/* Guest of bench/net.sh: loopback TCP measured from inside, the same binary
 * natively and in a sandbox. Each mode prints one number.
 *   rtt N     a server process (fork) echoes 1 byte N times to its client
 *             over 127.0.0.1 (TCP_NODELAY both ways): us per round trip
 *   tput MIB  the client writes MIB MiB in 64 KiB writes, the server reads
 *             them all and answers 1 byte: MiB/s from the first write to
 *             that answer
 *   conn N    connect + accept + close of both ends, N times, one process
 *             (the connection lands in the listener's queue): us each
 *   ready L   a template's program: L (0/1) listeners on 127.0.0.1, then
 *             reads a line (the ready point), prints "ok", exits */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int listener(struct sockaddr_in *in)
{
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  socklen_t il = sizeof *in;
  memset(in, 0, sizeof *in);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(l, (struct sockaddr *)in, sizeof *in) < 0 || listen(l, 128) < 0 ||
      getsockname(l, (struct sockaddr *)in, &il) < 0)
    die("listen");
  return l;
}

static int dial(const struct sockaddr_in *in)
{
  int c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (c < 0 || connect(c, (const struct sockaddr *)in, sizeof *in) < 0)
    die("connect");
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

static void full(int fd, char *p, size_t n)
{
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r <= 0)
      die("read");
    p += r;
    n -= (size_t)r;
  }
}

int main(int argc, char **argv)
{
  if (argc < 3)
    return 2;
  long n = atol(argv[2]);
  struct sockaddr_in in;
  if (!strcmp(argv[1], "ready")) {
    for (long i = 0; i < n; i++)
      listener(&in);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
      return 1;
    puts("ok");
    return 0;
  }
  int l = listener(&in);
  if (!strcmp(argv[1], "conn")) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
      int c = dial(&in), a = accept(l, NULL, NULL);
      if (a < 0)
        die("accept");
      close(c);
      close(a);
    }
    printf("%.3f\n", (now() - t0) / n * 1e6);
    return 0;
  }
  int rtt = !strcmp(argv[1], "rtt");
  if (!rtt && strcmp(argv[1], "tput"))
    return 2;
  pid_t p = fork();
  if (p < 0)
    die("fork");
  if (p == 0) { /* the server */
    int a = accept(l, NULL, NULL), one = 1;
    if (a < 0)
      die("accept");
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rtt) {
      char c;
      for (long i = 0; i < n; i++)
        if (read(a, &c, 1) != 1 || write(a, &c, 1) != 1)
          die("echo");
    } else {
      static char buf[1 << 16];
      long long left = (long long)n << 20;
      while (left > 0) {
        ssize_t r = read(a, buf, sizeof buf);
        if (r <= 0)
          die("server read");
        left -= r;
      }
      if (write(a, "k", 1) != 1)
        die("ack");
    }
    _exit(0);
  }
  close(l);
  int c = dial(&in);
  double t0 = now(), t;
  if (rtt) {
    char ch = 'x';
    for (long i = 0; i < n; i++) {
      if (write(c, &ch, 1) != 1)
        die("write");
      full(c, &ch, 1);
    }
    t = now() - t0;
    printf("%.3f\n", t / n * 1e6);
  } else {
    static char buf[1 << 16];
    memset(buf, 'a', sizeof buf);
    for (long i = 0; i < n * 16; i++) {
      size_t off = 0;
      while (off < sizeof buf) {
        ssize_t w = write(c, buf + off, sizeof buf - off);
        if (w <= 0)
          die("write");
        off += (size_t)w;
      }
    }
    char k;
    full(c, &k, 1);
    t = now() - t0;
    printf("%.1f\n", n / t);
  }
  close(c);
  int st;
  waitpid(p, &st, 0);
  return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
