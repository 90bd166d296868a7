/* Sockets on the loopback, run natively and in a sandbox
 * (tests/sandbox-net.sh compares the outputs): TCP echo between a forked
 * server and its client over 127.0.0.1 and ::1, a non-blocking connect,
 * SO_RCVTIMEO, UDP with recvfrom's address, AF_UNIX path and abstract
 * names between processes, SCM_RIGHTS of a pipe and of a /tmp file from a
 * child, ECONNREFUSED, readiness through poll/select/epoll, getaddrinfo of
 * localhost; SO_PASSCRED/SCM_CREDENTIALS and SO_PEERCRED between processes,
 * TCP resets and a peer's orderly close as poll and recv see them, a
 * non-blocking connect to a full accept queue, UDP-Lite's coverage options
 * (gaps()). Prints no port or pid (they differ from run to run).
 * `net unreach`: the `--net none` policy (sandbox only: natively the host's
 * routes decide). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#ifndef UDPLITE_SEND_CSCOV
#define UDPLITE_SEND_CSCOV 10 /* (linux/udp.h) */
#endif
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x)                                                                                               \
  do {                                                                                                         \
    if (!(x)) {                                                                                                \
      printf("FAILED %s:%d: %s (%s)\n", __FILE__, __LINE__, #x, strerror(errno));                            \
      fflush(stdout);                                                                                          \
      _exit(1);                                                                                                \
    }                                                                                                          \
  } while (0)

static void echo_server(int l, int n)
{
  for (int i = 0; i < n; i++) {
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    char buf[256];
    ssize_t r;
    while ((r = read(s, buf, sizeof buf)) > 0)
      CHECK(write(s, buf, (size_t)r) == r);
    close(s);
  }
}

static void echo_client(const struct sockaddr *a, socklen_t al, const char *tag)
{
  int c = socket(a->sa_family, SOCK_STREAM, 0);
  CHECK(c >= 0);
  CHECK(connect(c, a, al) == 0);
  int one = 1;
  CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 || a->sa_family == AF_UNIX);
  for (int i = 0; i < 3; i++) {
    char msg[64], got[64] = {0};
    int len = snprintf(msg, sizeof msg, "%s message %d", tag, i);
    CHECK(write(c, msg, (size_t)len) == len);
    ssize_t r = 0;
    while (r < len) {
      ssize_t k = read(c, got + r, (size_t)(len - r));
      CHECK(k > 0);
      r += k;
    }
    printf("%s echo: %s\n", tag, got);
  }
  shutdown(c, SHUT_WR);
  char b;
  printf("%s after shutdown: read %zd\n", tag, read(c, &b, 1));
  close(c);
}

/* A listener on a, served by a forked child (n connections); the parent is the client. */
static void tcp_echo(struct sockaddr *a, socklen_t al, const char *tag)
{
  int l = socket(a->sa_family, SOCK_STREAM, 0);
  CHECK(l >= 0);
  int one = 1;
  CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
  CHECK(bind(l, a, al) == 0);
  CHECK(listen(l, 8) == 0);
  CHECK(getsockname(l, a, &al) == 0);
  int acc = -1;
  socklen_t ol = sizeof acc;
  CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) == 0);
  printf("%s listening: SO_ACCEPTCONN %d, family %s\n", tag, acc,
         a->sa_family == AF_INET ? "AF_INET" : a->sa_family == AF_INET6 ? "AF_INET6" : "AF_UNIX");
  pid_t p = fork();
  CHECK(p >= 0);
  if (p == 0) {
    echo_server(l, 1);
    _exit(0);
  }
  close(l);
  echo_client(a, al, tag);
  int st;
  CHECK(waitpid(p, &st, 0) == p);
  printf("%s server exit %d\n", tag, WEXITSTATUS(st));
}

static void inet_names(void)
{
  int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, b, pa, ca;
  socklen_t al = sizeof a;
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
  int r = connect(c, (struct sockaddr *)&a, sizeof a);
  printf("non-blocking connect: %s\n", r == 0 ? "0" : errno == EINPROGRESS ? "EINPROGRESS" : strerror(errno));
  struct pollfd pf = {.fd = c, .events = POLLOUT};
  int pr = poll(&pf, 1, 5000);
  printf("poll for writing: %d revents %#x\n", pr, pf.revents);
  int err = -1;
  socklen_t el = sizeof err;
  CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
  printf("SO_ERROR %d\n", err);
  pf = (struct pollfd){.fd = l, .events = POLLIN};
  pr = poll(&pf, 1, 5000);
  printf("listener poll: %d revents %#x\n", pr, pf.revents);
  socklen_t pl = sizeof pa;
  int s = accept(l, (struct sockaddr *)&pa, &pl);
  CHECK(s >= 0);
  al = sizeof b;
  CHECK(getsockname(c, (struct sockaddr *)&b, &al) == 0);
  socklen_t cl = sizeof ca;
  CHECK(getpeername(s, (struct sockaddr *)&ca, &cl) == 0);
  printf("accept's address is the client's name: %s (%s)\n",
         pl == sizeof pa && pa.sin_port == b.sin_port && pa.sin_addr.s_addr == b.sin_addr.s_addr ? "yes" : "no",
         inet_ntoa(pa.sin_addr));
  printf("getpeername of the accepted one: %s\n", cl == sizeof ca && ca.sin_port == b.sin_port ? "the same" : "differs");
  struct sockaddr_in sn;
  socklen_t snl = sizeof sn;
  CHECK(getsockname(s, (struct sockaddr *)&sn, &snl) == 0);
  printf("the accepted socket's name: %s, the listener's port: %s\n", inet_ntoa(sn.sin_addr),
         sn.sin_port == a.sin_port ? "yes" : "no");
  struct timeval tv = {0, 100000};
  CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  char buf[8];
  errno = 0;
  ssize_t n = recv(s, buf, sizeof buf, 0);
  printf("recv with SO_RCVTIMEO 100 ms: %zd %s\n", n, n < 0 && errno == EAGAIN ? "EAGAIN" : strerror(errno));
  struct timeval got;
  socklen_t gl = sizeof got;
  CHECK(getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &gl) == 0);
  printf("SO_RCVTIMEO given back: %ld.%06ld\n", (long)got.tv_sec, (long)got.tv_usec);
  int ka = 1, v = 0;
  socklen_t vl = sizeof v;
  CHECK(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &ka, sizeof ka) == 0);
  CHECK(getsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, &vl) == 0);
  printf("SO_KEEPALIVE %d, ", v);
  vl = sizeof v;
  CHECK(getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &vl) == 0);
  printf("SO_TYPE %d, ", v);
  vl = sizeof v;
  CHECK(getsockopt(c, SOL_SOCKET, SO_DOMAIN, &v, &vl) == 0);
  printf("SO_DOMAIN %d\n", v);

  /* select and epoll */
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(s, &rs);
  struct timeval zero = {0, 0};
  printf("select before data: %d\n", select(s + 1, &rs, NULL, NULL, &zero));
  CHECK(send(c, "x", 1, 0) == 1);
  FD_ZERO(&rs);
  FD_SET(s, &rs);
  struct timeval five = {5, 0};
  printf("select after data: %d\n", select(s + 1, &rs, NULL, NULL, &five));
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) == 0);
  printf("epoll on the idle listener: %d\n", epoll_wait(ep, &ev, 1, 0));
  int c2 = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(c2, (struct sockaddr *)&a, sizeof a) == 0);
  printf("epoll after a connect: %d (EPOLLIN %d)\n", epoll_wait(ep, &ev, 1, 5000), !!(ev.events & EPOLLIN));
  close(c2);
  close(ep);
  close(s);
  close(c);
  close(l);
  c = socket(AF_INET, SOCK_STREAM, 0);
  printf("connect to the closed listener's port: %s\n", connect(c, (struct sockaddr *)&a, sizeof a) == 0 ? "0" : strerror(errno));
  close(c);
}

static void udp(void)
{
  int r = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, from, tn;
  socklen_t al = sizeof a;
  CHECK(bind(r, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(getsockname(r, (struct sockaddr *)&a, &al) == 0);
  pid_t p = fork();
  CHECK(p >= 0);
  if (p == 0) { /* the sender, in another process */
    CHECK(sendto(t, "ping", 4, 0, (struct sockaddr *)&a, sizeof a) == 4);
    char b[16];
    ssize_t n = recv(t, b, sizeof b, 0);
    printf("udp child got: %.*s\n", (int)n, b);
    fflush(stdout);
    _exit(0);
  }
  char b[16];
  socklen_t fl = sizeof from;
  ssize_t n = recvfrom(r, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
  int st;
  CHECK(n == 4);
  CHECK(sendto(r, "pong", 4, 0, (struct sockaddr *)&from, fl) == 4);
  CHECK(waitpid(p, &st, 0) == p);
  socklen_t tl = sizeof tn;
  CHECK(getsockname(t, (struct sockaddr *)&tn, &tl) == 0);
  printf("udp got %.*s from %s, the sender's port: %s\n", (int)n, b, inet_ntoa(from.sin_addr),
         from.sin_port == tn.sin_port ? "yes" : "no");
  char big[2000];
  memset(big, 'u', sizeof big);
  CHECK(sendto(t, big, sizeof big, 0, (struct sockaddr *)&a, sizeof a) == (ssize_t)sizeof big);
  n = recv(r, b, sizeof b, MSG_TRUNC);
  printf("a 2000-byte datagram into 16 bytes with MSG_TRUNC: %zd\n", n);
  CHECK(connect(t, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(send(t, "conn", 4, 0) == 4);
  n = recv(r, b, sizeof b, 0);
  printf("connected udp: %.*s\n", (int)n, b);
  close(r);
  close(t);
}

static void unix_names(void)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "/tmp/cowfork-net-%d.sock", (int)getpid());
  unlink(a.sun_path);
  tcp_echo((struct sockaddr *)&a, sizeof a, "unix path");
  struct stat st;
  printf("the socket file: %s\n", stat(a.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) ? "S_IFSOCK" : "missing");
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("connect after its listener closed: %s\n", connect(c, (struct sockaddr *)&a, sizeof a) == 0 ? "0" : strerror(errno));
  close(c);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("bind over the left file: %s\n", bind(l, (struct sockaddr *)&a, sizeof a) == 0 ? "0" : strerror(errno));
  close(l);
  unlink(a.sun_path);

  struct sockaddr_un b = {.sun_family = AF_UNIX};
  int len = snprintf(b.sun_path + 1, sizeof b.sun_path - 1, "cowfork-net-%d", (int)getpid());
  tcp_echo((struct sockaddr *)&b, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len), "abstract");
  c = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("connect to a free abstract name: %s\n",
         connect(c, (struct sockaddr *)&b, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)) == 0
             ? "0"
             : strerror(errno));
  close(c);
}

static void send_fd(int sock, int fd)
{
  char ctl[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec v = {"F", 1};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  CHECK(sendmsg(sock, &m, 0) == 1);
}

static int recv_fd(int sock)
{
  char ctl[CMSG_SPACE(sizeof(int))], b;
  struct iovec v = {&b, 1};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  CHECK(recvmsg(sock, &m, 0) == 1);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  CHECK(cm && cm->cmsg_type == SCM_RIGHTS);
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

static void rights(void)
{
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  char path[64];
  snprintf(path, sizeof path, "/tmp/cowfork-net-%d.txt", (int)getpid());
  pid_t p = fork();
  CHECK(p >= 0);
  if (p == 0) {
    close(sv[0]);
    int pp[2];
    CHECK(pipe(pp) == 0);
    CHECK(write(pp[1], "through a pipe", 14) == 14);
    close(pp[1]);
    send_fd(sv[1], pp[0]);
    close(pp[0]);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0 && write(f, "a /tmp file", 11) == 11);
    send_fd(sv[1], f); /* its offset is shared: 11 */
    close(f);
    _exit(0);
  }
  close(sv[1]);
  int a = recv_fd(sv[0]), b = recv_fd(sv[0]);
  int st;
  CHECK(waitpid(p, &st, 0) == p);
  char buf[64] = {0};
  ssize_t n = read(a, buf, sizeof buf);
  printf("SCM_RIGHTS from a child: a pipe gives \"%.*s\"\n", (int)n, buf);
  printf("  a file at offset %ld", (long)lseek(b, 0, SEEK_CUR));
  n = pread(b, buf, sizeof buf, 0);
  printf(" holding \"%.*s\"\n", (int)n, buf);
  close(a);
  close(b);
  close(sv[0]);
  unlink(path);
}

static void lookup(void)
{
  struct addrinfo h = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  int r = getaddrinfo("localhost", "80", &h, &res);
  printf("getaddrinfo(localhost, AF_INET): %s", r ? gai_strerror(r) : "ok");
  if (!r) {
    printf(" %s", inet_ntoa(((struct sockaddr_in *)res->ai_addr)->sin_addr));
    freeaddrinfo(res);
  }
  printf("\n");
}

static void inet6(void)
{
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int t = socket(AF_INET6, SOCK_STREAM, 0);
  if (t < 0 || bind(t, (struct sockaddr *)&a, sizeof a) < 0) {
    printf("no ::1 here (%s)\n", strerror(errno)); /* both sides print it: no IPv6 on this machine */
    if (t >= 0)
      close(t);
    return;
  }
  close(t);
  tcp_echo((struct sockaddr *)&a, sizeof a, "tcp6");
  /* a v6 wildcard listener takes a v4 client, which it sees as ::ffff:127.0.0.1 */
  int l = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 w = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
  socklen_t wl = sizeof w;
  CHECK(bind(l, (struct sockaddr *)&w, sizeof w) == 0 && listen(l, 1) == 0 && getsockname(l, (struct sockaddr *)&w, &wl) == 0);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = w.sin6_port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(connect(c, (struct sockaddr *)&v4, sizeof v4) == 0);
  struct sockaddr_in6 pa;
  socklen_t pl = sizeof pa;
  int s = accept(l, (struct sockaddr *)&pa, &pl);
  CHECK(s >= 0);
  char txt[64];
  printf("a v4 client of a [::] listener: %s\n", inet_ntop(AF_INET6, &pa.sin6_addr, txt, sizeof txt));
  close(s);
  close(c);
  close(l);
}

static void unreach(void)
{
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = inet_addr("10.1.2.3")};
  printf("connect 10.1.2.3:80: %s\n", connect(c, (struct sockaddr *)&a, sizeof a) == 0 ? "0" : strerror(errno));
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  printf("sendto 10.1.2.3:80: %s\n", sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a) == 1 ? "sent" : strerror(errno));
  a.sin_addr.s_addr = INADDR_ANY;
  struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr("10.1.2.3")};
  printf("bind 10.1.2.3: %s\n", bind(u, (struct sockaddr *)&b, sizeof b) == 0 ? "0" : strerror(errno));
  int nl = socket(AF_NETLINK, SOCK_RAW, 0);
  printf("socket(AF_NETLINK): %s\n", nl >= 0 ? "ok" : strerror(errno));
  struct addrinfo h = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *res;
  int r = getaddrinfo("localhost", "80", &h, &res);
  printf("getaddrinfo(localhost, AI_ADDRCONFIG): %s\n", r ? gai_strerror(r) : "ok");
}

static const char *evs(short r)
{
  static char b[64];
  snprintf(b, sizeof b, "%s%s%s%s%s", r & POLLIN ? "IN " : "", r & POLLOUT ? "OUT " : "", r & POLLERR ? "ERR " : "",
           r & POLLHUP ? "HUP " : "", r & POLLRDHUP ? "RDHUP " : "");
  return b;
}

static short pollev(int fd, int ms)
{
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
  return poll(&p, 1, ms) < 0 ? -1 : p.revents;
}

static const char *res(long r)
{
  static char b[64];
  snprintf(b, sizeof b, "%ld%s%s", r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
  return b;
}

/* A recvmsg of len bytes: the bytes and the SCM_CREDENTIALS (pid -1: none). */
static long recv_cred(int fd, struct ucred *u, size_t len)
{
  char b[64], c[256];
  struct iovec v = {b, len};
  struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
  long r = recvmsg(fd, &m, 0);
  u->pid = -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); r >= 0 && cm; cm = CMSG_NXTHDR(&m, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS)
      memcpy(u, CMSG_DATA(cm), sizeof *u);
  return r;
}

/* A connected TCP pair through listener l: *c the connector, *s accepted. */
static void tcp_pair(int l, int *c, int *s)
{
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
  *c = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(*c, (struct sockaddr *)&a, al) == 0);
  CHECK((*s = accept(l, NULL, NULL)) >= 0);
}

static void gaps(void)
{
  /* credentials from a child: its pid, not the parent's */
  int p[2], one = 1;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0);
  CHECK(setsockopt(p[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
  pid_t kid = fork();
  if (kid == 0) {
    CHECK(write(p[0], "child", 5) == 5);
    struct ucred u = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    char ctl[CMSG_SPACE(sizeof u)];
    struct iovec v = {"own", 3};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof u);
    memcpy(CMSG_DATA(cm), &u, sizeof u);
    CHECK(sendmsg(p[0], &m, 0) == 3);
    u.uid = (uid_t)-1;
    memcpy(CMSG_DATA(cm), &u, sizeof u);
    printf("SCM_CREDENTIALS uid -1: %s\n", res(sendmsg(p[0], &m, 0)));
    _exit(0);
  }
  CHECK(waitpid(kid, NULL, 0) == kid);
  struct ucred u;
  long n = recv_cred(p[1], &u, 5);
  printf("SO_PASSCRED: %ld bytes from the child, pid %s, uid %s\n", n, u.pid == kid ? "the child's" : "WRONG",
         u.uid == getuid() && u.gid == getgid() ? "ours" : "WRONG");
  n = recv_cred(p[1], &u, 3);
  printf("its explicit SCM_CREDENTIALS: %ld bytes, pid %s\n", n, u.pid == kid ? "the child's" : "WRONG");
  close(p[0]);
  close(p[1]);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "\0cowfork-net-gaps"};
  socklen_t ul = offsetof(struct sockaddr_un, sun_path) + 18;
  CHECK(bind(l, (struct sockaddr *)&un, ul) == 0 && listen(l, 1) == 0);
  int cs[2];
  CHECK(pipe(cs) == 0);
  if ((kid = fork()) == 0) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&un, ul) == 0);
    char x;
    CHECK(read(cs[0], &x, 1) == 1);
    _exit(0);
  }
  int s = accept(l, NULL, NULL);
  socklen_t cl = sizeof u;
  CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &u, &cl) == 0);
  printf("SO_PEERCRED of a child's connection: pid %s\n", u.pid == kid ? "the child's" : "WRONG");
  CHECK(write(cs[1], "x", 1) == 1);
  CHECK(waitpid(kid, NULL, 0) == kid);
  close(s);
  close(l);
  close(cs[0]);
  close(cs[1]);

  /* TCP: an orderly close, resets */
  char b[64];
  l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 8) == 0);
  int c;
  tcp_pair(l, &c, &s);
  CHECK(write(c, "hi", 2) == 2);
  close(c);
  printf("peer closed: poll %s\n", evs(pollev(s, 1000)));
  printf("  recv %s", res(recv(s, b, sizeof b, 0)));
  printf(", %s\n", res(recv(s, b, sizeof b, 0)));
  shutdown(s, SHUT_WR);
  printf("  after SHUT_WR: poll %s\n", evs(pollev(s, 0)));
  close(s);
  tcp_pair(l, &c, &s);
  CHECK(write(s, "xyz", 3) == 3 && write(c, "abc", 3) == 3);
  usleep(20000);
  close(c);
  printf("peer closed with bytes unread: poll %s\n", evs(pollev(s, 1000)));
  socklen_t al = sizeof a;
  printf("  getpeername %s\n", res(getpeername(s, (struct sockaddr *)&a, &al)));
  printf("  recv %s", res(recv(s, b, sizeof b, 0)));
  printf(", %s", res(recv(s, b, sizeof b, 0)));
  printf(", %s\n", res(recv(s, b, sizeof b, 0)));
  printf("  send %s\n", res(send(s, "q", 1, MSG_NOSIGNAL)));
  close(s);
  tcp_pair(l, &c, &s);
  struct linger lg = {1, 0};
  CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
  close(c);
  printf("SO_LINGER {1, 0}: poll %s\n", evs(pollev(s, 1000)));
  printf("  send %s", res(send(s, "q", 1, MSG_NOSIGNAL)));
  printf(", %s\n", res(send(s, "q", 1, MSG_NOSIGNAL)));
  close(s);
  close(l);

  /* a non-blocking connect to a full accept queue: in progress until an accept makes room */
  l = socket(AF_INET, SOCK_STREAM, 0);
  a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  al = sizeof a;
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 0) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
  int q[2];
  for (int i = 0; i < 2; i++) {
    q[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    printf("full queue: connect %d: %s\n", i, res(connect(q[i], (struct sockaddr *)&a, al)));
  }
  usleep(50000);
  printf("  the second: poll %s\n", evs(pollev(q[1], 0)));
  s = accept(l, NULL, NULL);
  printf("  after an accept: poll %s (within 5 s)\n", evs(pollev(q[1], 5000)));
  int e = -1;
  socklen_t el = sizeof e;
  getsockopt(q[1], SOL_SOCKET, SO_ERROR, &e, &el);
  printf("  SO_ERROR %d\n", e);
  close(s);
  close(q[0]);
  close(q[1]);
  close(l);

  /* MSG_OOB: TCP's urgent byte */
  l = socket(AF_INET, SOCK_STREAM, 0);
  a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 8) == 0);
  tcp_pair(l, &c, &s);
  CHECK(send(c, "ab", 2, MSG_OOB) == 2);
  struct pollfd pp = {.fd = s, .events = POLLIN | POLLPRI};
  CHECK(poll(&pp, 1, 1000) == 1);
  int mk = -1;
  ioctl(s, SIOCATMARK, &mk);
  printf("MSG_OOB: poll %s%s, SIOCATMARK %d", evs(pp.revents), pp.revents & POLLPRI ? "PRI" : "", mk);
  printf(", recv %s", res(recv(s, b, sizeof b, 0)));
  ioctl(s, SIOCATMARK, &mk);
  printf(", SIOCATMARK %d", mk);
  printf(", recv(MSG_OOB) %s", res(recv(s, b, 1, MSG_OOB)));
  printf(" '%c', again %s\n", b[0], res(recv(s, b, 1, MSG_OOB | MSG_DONTWAIT)));
  close(c);
  close(s);
  close(l);

  /* UDP-Lite's checksum coverage */
  int lite = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), v = 3;
  CHECK(lite >= 0);
  printf("UDPLITE_SEND_CSCOV 3: %s", res(setsockopt(lite, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &v, sizeof v)));
  el = sizeof v;
  CHECK(getsockopt(lite, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &v, &el) == 0);
  printf(", reads %d\n", v);
  close(lite);
}

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 2 && !strcmp(argv[1], "host")) { /* connect to a host port: refused in a sandbox */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    printf("connect to 127.0.0.1:%s: %s\n", argv[2], connect(c, (struct sockaddr *)&a, sizeof a) == 0 ? "0" : strerror(errno));
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "unreach")) {
    unreach();
    return 0;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  tcp_echo((struct sockaddr *)&a, sizeof a, "tcp");
  inet_names();
  udp();
  unix_names();
  rights();
  lookup();
  inet6();
  gaps();
  return 0;
}
