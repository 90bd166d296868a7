/* A warmed-up server for tests/sandbox-net-template.sh and bench/net.sh:
 * it listens on 127.0.0.1 (an ephemeral port, so that a native run never
 * meets another program's), forks a server process that waits in poll()
 * then accept() on it, and listens on an AF_UNIX abstract name itself; then
 * it reads a line from stdin (a template's ready point: the pause comes
 * with the server process blocked in poll). After the read it connects to
 * its own listeners, sends the line, and prints the replies. Each child of
 * the template does so on its own loopback: its own copy of the listener.
 *
 * Output (the same natively and in every child):
 *   ready
 *   tcp: <server pid-free reply to the line>
 *   unix: <reply>
 *   server: exit 0
 * `nettmpl fork` instead prints nothing and exits after the ready point
 * (bench/net.sh's fork time of a template with a listener). */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
  perror(what);
  exit(1);
}

/* Upper-case the request: the reply. */
static void serve_one(int c)
{
  char buf[256];
  ssize_t n = read(c, buf, sizeof buf);
  if (n < 0)
    die("server read");
  for (ssize_t i = 0; i < n; i++)
    buf[i] = (char)toupper((unsigned char)buf[i]);
  if (write(c, buf, (size_t)n) != n)
    die("server write");
  close(c);
}

static void ask(const char *what, int fam, const struct sockaddr *a, socklen_t al, const char *line)
{
  int c = socket(fam, SOCK_STREAM, 0);
  if (c < 0 || connect(c, a, al) < 0)
    die(what);
  if (write(c, line, strlen(line)) != (ssize_t)strlen(line))
    die("write");
  char buf[256];
  ssize_t n, got = 0;
  while ((n = read(c, buf + got, sizeof buf - 1 - (size_t)got)) > 0)
    got += n;
  if (n < 0)
    die("read reply");
  buf[got] = 0;
  printf("%s: %s\n", what, buf);
  close(c);
}

int main(int argc, char **argv)
{
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
    die("socket");
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t il = sizeof in;
  if (bind(l, (struct sockaddr *)&in, sizeof in) < 0 || listen(l, 16) < 0 ||
      getsockname(l, (struct sockaddr *)&in, &il) < 0)
    die("listen");
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  int ul = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "cf-nettmpl-%d", (int)getpid()) + 1;
  socklen_t ulen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + ul);
  int u = socket(AF_UNIX, SOCK_STREAM, 0);
  if (u < 0 || bind(u, (struct sockaddr *)&un, ulen) < 0 || listen(u, 4) < 0)
    die("unix listen");
  pid_t srv = fork();
  if (srv < 0)
    die("fork");
  if (srv == 0) { /* the server: one connection, waited for in poll then accept */
    close(u);
    struct pollfd p = {.fd = l, .events = POLLIN};
    if (poll(&p, 1, -1) != 1 || !(p.revents & POLLIN))
      die("poll");
    int c = accept(l, NULL, NULL);
    if (c < 0)
      die("accept");
    serve_one(c);
    _exit(0);
  }
  printf("ready\n");
  fflush(stdout);
  char line[128];
  if (!fgets(line, sizeof line, stdin)) /* the ready point */
    strcpy(line, "(no input)\n");
  line[strcspn(line, "\n")] = 0;
  if (argc > 1 && strcmp(argv[1], "fork") == 0) {
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    return 0;
  }
  ask("tcp", AF_INET, (struct sockaddr *)&in, sizeof in, line);
  /* the abstract listener: connect, then accept it here */
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&un, ulen) < 0)
    die("unix connect");
  int a = accept(u, NULL, NULL);
  if (a < 0)
    die("unix accept");
  if (write(c, line, strlen(line)) != (ssize_t)strlen(line))
    die("unix write");
  shutdown(c, SHUT_WR);
  serve_one(a);
  char buf[256];
  ssize_t n = read(c, buf, sizeof buf - 1);
  if (n < 0)
    die("unix read");
  buf[n] = 0;
  printf("unix: %s\n", buf);
  int st;
  if (waitpid(srv, &st, 0) != srv)
    die("waitpid");
  printf("server: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 0;
}
