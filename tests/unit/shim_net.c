/* Sockets on the sandbox's own loopback (shim/net.c), with no VM: the name
 * table (bind, EADDRINUSE, SO_REUSEADDR, ephemeral ports, getsockname,
 * connect refused / unreachable), a TCP connection through listen/accept,
 * a non-blocking connect, UDP with the source address, AF_UNIX abstract
 * and path names, SCM_RIGHTS, the options, and two sandboxes binding the
 * same port. Before net.c every socket() was EACCES. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

static uint64_t sin4(uint32_t addr, uint16_t port)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr)};
  return galloc(&a, sizeof a);
}

static uint64_t sun(const char *name, size_t len)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, name, len);
  return galloc(&a, sizeof a);
}

/* getsockname/getpeername as a struct sockaddr_in (port in host order). */
static long name_of(long nr, int fd, struct sockaddr_in *out, socklen_t *len)
{
  uint64_t a = galloc(NULL, 128), l = galloc(NULL, 4);
  socklen_t n = 128;
  memcpy(hp(l), &n, 4);
  long r = S3(nr, fd, a, l);
  memcpy(out, hp(a), sizeof *out);
  memcpy(len, hp(l), 4);
  return r;
}

static int geti(int fd, int level, int name)
{
  uint64_t v = galloc(NULL, 4), l = galloc(NULL, 4);
  socklen_t n = 4;
  memcpy(hp(l), &n, 4);
  if (S5(SYS_getsockopt, fd, level, name, v, l) < 0)
    return -1000;
  int x;
  memcpy(&x, hp(v), 4);
  return x;
}

static long seti(int fd, int level, int name, int x)
{
  return S5(SYS_setsockopt, fd, level, name, galloc(&x, 4), 4);
}

static long gsend(int fd, const char *s) { return S6(SYS_sendto, fd, gs(s), strlen(s), 0, 0, 0); }

static const char *grecv(int fd)
{
  static char out[256];
  uint64_t b = galloc(NULL, 256);
  long n = S6(SYS_recvfrom, fd, b, 255, MSG_DONTWAIT, 0, 0);
  if (n < 0)
    snprintf(out, sizeof out, "(%s)", strerror((int)-n));
  else
    memcpy(out, hp(b), (size_t)n), out[n] = 0;
  return out;
}

static void test_names(void)
{
  diag("the name table");
  int a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0), b = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  ok(a >= 0 && b >= 0, "socket(AF_INET, SOCK_STREAM) twice (%d %d)", a, b);
  is(S3(SYS_bind, a, sin4(0x7f000001, 8000), 16), 0, "bind 127.0.0.1:8000");
  is(S3(SYS_bind, a, sin4(0x7f000001, 8001), 16), -EINVAL, "bind again: EINVAL");
  is(S3(SYS_bind, b, sin4(0x7f000001, 8000), 16), -EADDRINUSE, "another on 127.0.0.1:8000: EADDRINUSE");
  is(S3(SYS_bind, b, sin4(0, 8000), 16), -EADDRINUSE, "0.0.0.0:8000: EADDRINUSE (the wildcard covers it)");
  is(S3(SYS_bind, b, sin4(0x0a010203, 8000), 16), -EADDRNOTAVAIL, "10.1.2.3: EADDRNOTAVAIL (only lo is up)");
  is(S3(SYS_bind, b, sin4(0x7f000001, 8000), 8), -EINVAL, "a short address: EINVAL");
  is(S3(SYS_bind, b, sin4(0x7f000002, 8000), 16), 0, "127.0.0.2:8000: another address of lo, free");
  S1(SYS_close, b);
  b = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(seti(a, SOL_SOCKET, SO_REUSEADDR, 1), 0, "SO_REUSEADDR on the first");
  is(seti(b, SOL_SOCKET, SO_REUSEADDR, 1), 0, "and on the second");
  is(S3(SYS_bind, b, sin4(0x7f000001, 8000), 16), 0, "both bound, neither listening: allowed (SO_REUSEADDR)");
  is(S2(SYS_listen, a, 4), 0, "listen on the first");
  is(S2(SYS_listen, b, 4), -EADDRINUSE, "the second cannot listen too");
  S1(SYS_close, b);
  is(geti(a, SOL_SOCKET, SO_ACCEPTCONN), 1, "SO_ACCEPTCONN 1");
  is(geti(a, SOL_SOCKET, SO_TYPE), SOCK_STREAM, "SO_TYPE");
  is(geti(a, SOL_SOCKET, SO_DOMAIN), AF_INET, "SO_DOMAIN");
  is(geti(a, SOL_SOCKET, SO_PROTOCOL), IPPROTO_TCP, "SO_PROTOCOL");
  is(geti(a, SOL_SOCKET, SO_REUSEADDR), 1, "SO_REUSEADDR given back");
  is(seti(a, IPPROTO_TCP, TCP_NODELAY, 5), 0, "TCP_NODELAY");
  is(geti(a, IPPROTO_TCP, TCP_NODELAY), 1, "TCP_NODELAY given back as 1");
  is(seti(a, SOL_SOCKET, SO_ATTACH_FILTER, 1), -ENOPROTOOPT, "an option it cannot honour: ENOPROTOOPT");
  is(seti(a, SOL_SOCKET, SO_PASSCRED, 1), -EOPNOTSUPP, "SO_PASSCRED of a TCP socket: EOPNOTSUPP (AF_UNIX's)");

  int e = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, e, sin4(0x7f000001, 0), 16), 0, "bind port 0");
  struct sockaddr_in sa;
  socklen_t l;
  is(name_of(SYS_getsockname, e, &sa, &l), 0, "getsockname");
  ok(l == 16 && sa.sin_family == AF_INET && ntohl(sa.sin_addr.s_addr) == 0x7f000001 && ntohs(sa.sin_port) >= 32768 &&
         ntohs(sa.sin_port) <= 60999,
     "an ephemeral port on 127.0.0.1 (%u)", ntohs(sa.sin_port));
  S1(SYS_close, e);

  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 9), 16), -ECONNREFUSED, "connect to a port nobody listens on: ECONNREFUSED");
  is(S3(SYS_connect, c, sin4(0x0a010203, 80), 16), -ENETUNREACH, "connect to 10.1.2.3: ENETUNREACH (--net none)");
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), 0, "connect to 127.0.0.1:8000");
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), -EISCONN, "again: EISCONN");
  struct sockaddr_in cs, cp;
  name_of(SYS_getsockname, c, &cs, &l);
  name_of(SYS_getpeername, c, &cp, &l);
  ok(ntohl(cs.sin_addr.s_addr) == 0x7f000001 && ntohs(cs.sin_port) >= 32768, "its name: 127.0.0.1:%u",
     ntohs(cs.sin_port));
  ok(ntohs(cp.sin_port) == 8000 && ntohl(cp.sin_addr.s_addr) == 0x7f000001, "its peer: 127.0.0.1:8000");
  uint64_t pa = galloc(NULL, 16), pl = galloc(NULL, 4);
  memcpy(hp(pl), &(socklen_t){16}, 4);
  int s = (int)S4(SYS_accept4, a, pa, pl, SOCK_CLOEXEC);
  ok(s >= 0, "accept4 (%d)", s);
  struct sockaddr_in ap;
  memcpy(&ap, hp(pa), 16);
  ok(ap.sin_family == AF_INET && ap.sin_port == cs.sin_port && ap.sin_addr.s_addr == cs.sin_addr.s_addr,
     "accept's address: the connector's name");
  is(S2(SYS_fcntl, s, F_GETFD), FD_CLOEXEC, "SOCK_CLOEXEC");
  name_of(SYS_getsockname, s, &sa, &l);
  ok(ntohs(sa.sin_port) == 8000, "the accepted socket's name: port 8000");
  is(gsend(c, "hello"), 5, "send");
  ok(!strcmp(grecv(s), "hello"), "received by the accepted socket");
  is(gsend(s, "back"), 4, "and back");
  ok(!strcmp(grecv(c), "back"), "received");
  is(S2(SYS_shutdown, c, SHUT_WR), 0, "shutdown SHUT_WR");
  ok(!strcmp(grecv(s), ""), "end of file");
  S3(SYS_fcntl, a, F_SETFL, O_NONBLOCK);
  is(S4(SYS_accept4, a, 0, 0, 0), -EAGAIN, "accept with nothing queued on a non-blocking listener: EAGAIN");
  S3(SYS_fcntl, a, F_SETFL, 0);
  S1(SYS_close, c);
  S1(SYS_close, s);

  diag("non-blocking connect");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), -EINPROGRESS, "EINPROGRESS, as Linux over loopback");
  uint64_t pfd = galloc(&(struct pollfd){.fd = c, .events = POLLOUT}, sizeof(struct pollfd));
  is(S3(SYS_poll, pfd, 1, 0), 1, "writable at once");
  is(geti(c, SOL_SOCKET, SO_ERROR), 0, "SO_ERROR 0");
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), 0, "connect again: 0 (done)");
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), -EISCONN, "and then EISCONN");
  memcpy(hp(pfd), &(struct pollfd){.fd = a, .events = POLLIN}, sizeof(struct pollfd));
  is(S3(SYS_poll, pfd, 1, 0), 1, "the listener polls readable");
  s = (int)S3(SYS_accept, a, 0, 0);
  ok(s >= 0, "accepted");
  is(S3(SYS_poll, pfd, 1, 0), 0, "then not");
  S1(SYS_close, c);
  S1(SYS_close, s);

  diag("shutdown of a listener (Linux's inet_shutdown)");
  is(S2(SYS_shutdown, a, SHUT_WR), 0, "SHUT_WR: 0, it goes on listening");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), 0, "a connection queued");
  is(S2(SYS_shutdown, a, SHUT_RDWR), 0, "SHUT_RDWR: 0");
  ok(!strcmp(grecv(c), "(Connection reset by peer)"), "the queued connection is reset (ECONNRESET, as Linux)");
  S1(SYS_close, c);
  is(S3(SYS_accept, a, 0, 0), -EINVAL, "accept after: EINVAL (it listens no more)");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), -ECONNREFUSED, "connect to it: ECONNREFUSED");
  S1(SYS_close, c);
  is(S2(SYS_listen, a, 5), 0, "listen again");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), 0, "connect");
  s = (int)S3(SYS_accept, a, 0, 0);
  ok(s >= 0, "accepted on the listener made again");
  S1(SYS_close, c);
  S1(SYS_close, s);
  S1(SYS_close, a);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, 8000), 16), -ECONNREFUSED, "the listener closed: ECONNREFUSED");
  S1(SYS_close, c);
  a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, a, sin4(0x7f000001, 8000), 16), 0, "its port is free again");
  S1(SYS_close, a);

  is(S3(SYS_socket, AF_NETLINK, SOCK_RAW, 0), -EAFNOSUPPORT, "AF_NETLINK: EAFNOSUPPORT");
  is(S3(SYS_socket, AF_PACKET, SOCK_RAW, 0), -EAFNOSUPPORT, "AF_PACKET: EAFNOSUPPORT");
  is(S3(SYS_socket, AF_INET, SOCK_SEQPACKET, 0), -ESOCKTNOSUPPORT, "AF_INET SOCK_SEQPACKET: ESOCKTNOSUPPORT");
}

static void test_udp(void)
{
  diag("UDP");
  int r = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0), t = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(S3(SYS_bind, r, sin4(0x7f000001, 9000), 16), 0, "bind UDP 127.0.0.1:9000");
  int tcp = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, tcp, sin4(0x7f000001, 9000), 16), 0, "TCP 9000 is another port space");
  S1(SYS_close, tcp);
  is(S6(SYS_sendto, t, gs("dgram"), 5, 0, sin4(0x7f000001, 9000), 16), 5, "sendto from an unbound socket");
  is(S6(SYS_sendto, t, gs("x"), 1, 0, sin4(0x0a010203, 9000), 16), -ENETUNREACH, "sendto 10.1.2.3: ENETUNREACH");
  is(S6(SYS_sendto, t, gs("lost"), 4, 0, sin4(0x7f000001, 9001), 16), 4, "to a port nobody bound: sent (dropped)");
  uint64_t b = galloc(NULL, 64), a = galloc(NULL, 16), l = galloc(NULL, 4);
  memcpy(hp(l), &(socklen_t){16}, 4);
  is(S6(SYS_recvfrom, r, b, 64, MSG_DONTWAIT, a, l), 5, "recvfrom");
  struct sockaddr_in from, ts;
  socklen_t tl;
  memcpy(&from, hp(a), 16);
  name_of(SYS_getsockname, t, &ts, &tl);
  ok(from.sin_family == AF_INET && ntohl(from.sin_addr.s_addr) == 0x7f000001 && from.sin_port == ts.sin_port &&
         ntohs(ts.sin_port) >= 32768,
     "from 127.0.0.1:%u, the sender's autobound port", ntohs(from.sin_port));
  ok(ts.sin_addr.s_addr == 0, "the sender is bound to the wildcard (as Linux's autobind)");
  is(S6(SYS_recvfrom, r, b, 64, MSG_DONTWAIT, 0, 0), -EAGAIN, "nothing more (the dropped one went nowhere)");
  is(S6(SYS_sendto, r, gs("reply!"), 6, 0, a, 16), 6, "reply to that address");
  ok(!strcmp(grecv(t), "reply!"), "the sender gets it");
  is(S3(SYS_connect, t, sin4(0x7f000001, 9001), 16), 0, "connect UDP to a port nobody bound");
  is(gsend(t, "x"), 1, "send: ok");
  is(gsend(t, "x"), -ECONNREFUSED, "the next call: ECONNREFUSED (Linux's ICMP error)");
  S1(SYS_close, r);
  S1(SYS_close, t);
}

static void test_unix(void)
{
  diag("AF_UNIX names");
  int l = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0), l2 = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  uint64_t ab = sun("\0abstract", 9);
  is(S3(SYS_bind, l, ab, 2 + 9), 0, "bind an abstract name");
  is(S3(SYS_bind, l2, ab, 2 + 9), -EADDRINUSE, "again: EADDRINUSE");
  int c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, ab, 2 + 9), -ECONNREFUSED, "not listening: ECONNREFUSED");
  is(S2(SYS_listen, l, 1), 0, "listen");
  is(S3(SYS_connect, c, ab, 2 + 9), 0, "connect");
  uint64_t a = galloc(NULL, 128), al = galloc(NULL, 4);
  memcpy(hp(al), &(socklen_t){128}, 4);
  int s = (int)S3(SYS_accept, l, a, al);
  ok(s >= 0, "accept");
  socklen_t n;
  memcpy(&n, hp(al), 4);
  is(n, (socklen_t)sizeof(sa_family_t), "the connector is unnamed (len 2)");
  memcpy(hp(al), &(socklen_t){128}, 4);
  is(S3(SYS_getpeername, c, a, al), 0, "getpeername");
  memcpy(&n, hp(al), 4);
  ok(n == 2 + 9 && !memcmp((char *)hp(a) + 2, "\0abstract", 9), "the peer: the abstract name");
  is(gsend(c, "u"), 1, "send");
  ok(!strcmp(grecv(s), "u"), "recv");

  diag("SCM_RIGHTS");
  uint64_t pv = galloc(NULL, 8);
  S1(SYS_pipe, pv);
  int p[2];
  memcpy(p, hp(pv), 8);
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof ctl);
  struct cmsghdr *cm = (struct cmsghdr *)ctl;
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
  struct iovec v = {(void *)gs("F"), 1};
  uint64_t gv = galloc(&v, sizeof v), gc = galloc(ctl, sizeof ctl);
  struct msghdr mh = {.msg_iov = (void *)gv, .msg_iovlen = 1, .msg_control = (void *)gc, .msg_controllen = sizeof ctl};
  is(S3(SYS_sendmsg, c, galloc(&mh, sizeof mh), 0), 1, "sendmsg with the pipe's read end");
  S1(SYS_close, p[0]);
  uint64_t rb = galloc(NULL, 8), rc = galloc(NULL, 64);
  struct iovec rv = {(void *)rb, 8};
  struct msghdr rm = {.msg_iov = (void *)galloc(&rv, sizeof rv), .msg_iovlen = 1, .msg_control = (void *)rc,
                      .msg_controllen = 64};
  uint64_t grm = galloc(&rm, sizeof rm);
  is(S3(SYS_recvmsg, s, grm, MSG_CMSG_CLOEXEC), 1, "recvmsg");
  memcpy(&rm, hp(grm), sizeof rm);
  struct cmsghdr got;
  memcpy(&got, hp(rc), sizeof got);
  int nfd = -1;
  memcpy(&nfd, (char *)hp(rc) + CMSG_LEN(0), sizeof nfd);
  ok(rm.msg_controllen == CMSG_SPACE(sizeof(int)) && got.cmsg_type == SCM_RIGHTS && nfd >= 0 && nfd < 1024,
     "an SCM_RIGHTS with an fd of the sandbox's table (%d)", nfd);
  is(S2(SYS_fcntl, nfd, F_GETFD), FD_CLOEXEC, "MSG_CMSG_CLOEXEC");
  is(S3(SYS_write, p[1], gs("through"), 7), 7, "write into the pipe");
  uint64_t b = galloc(NULL, 16);
  is(S3(SYS_read, nfd, b, 16), 7, "read from the passed fd");
  S1(SYS_close, nfd);
  S1(SYS_close, p[1]);
  S1(SYS_close, c);
  S1(SYS_close, s);

  diag("a path name");
  int pl = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  uint64_t path = sun("/tmp/srv.sock", 14);
  is(S3(SYS_bind, pl, path, sizeof(struct sockaddr_un)), 0, "bind /tmp/srv.sock");
  uint64_t st = galloc(NULL, sizeof(struct stat));
  is(S2(SYS_stat, gs("/tmp/srv.sock"), st), 0, "it exists");
  ok(S_ISSOCK(((struct stat *)hp(st))->st_mode), "a socket file");
  is(S3(SYS_open, gs("/tmp/srv.sock"), O_RDONLY, 0), -ENXIO, "open: ENXIO");
  is(S3(SYS_bind, l2, path, sizeof(struct sockaddr_un)), -EADDRINUSE, "bind another there: EADDRINUSE");
  is(S2(SYS_listen, pl, 5), 0, "listen");
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sun("/tmp/none", 10), sizeof(struct sockaddr_un)), -ENOENT, "connect to no file: ENOENT");
  is(S3(SYS_connect, c, sun("/etc/passwd", 12), sizeof(struct sockaddr_un)), -ECONNREFUSED, "to a file: ECONNREFUSED");
  strcpy(sb->cwd, "/tmp");
  is(S3(SYS_connect, c, sun("srv.sock", 9), sizeof(struct sockaddr_un)), 0, "connect by a relative path");
  strcpy(sb->cwd, "/");
  s = (int)S3(SYS_accept, pl, 0, 0);
  ok(s >= 0, "accepted");
  memcpy(hp(al), &(socklen_t){128}, 4);
  S3(SYS_getsockname, s, a, al);
  memcpy(&n, hp(al), 4);
  ok(n == 2 + 13 + 1 && !strcmp((char *)hp(a) + 2, "/tmp/srv.sock"), "the accepted socket's name: the path");
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "is a socket (AF_UNIX stream socket, connected)") &&
         strstr(cf_error(), "connected sockets are not carried"),
     "a save refuses, naming the connected socket (listeners are carried: shim_state_net.c): %s", cf_error());
  free(w.p);
  S1(SYS_close, s);
  S1(SYS_close, c);
  S1(SYS_close, pl);
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, path, sizeof(struct sockaddr_un)), -ECONNREFUSED, "closed: the file stays, ECONNREFUSED");
  is(S1(SYS_unlink, gs("/tmp/srv.sock")), 0, "unlink it");
  S1(SYS_close, c);
  S1(SYS_close, l);
  S1(SYS_close, l2);

  diag("AF_UNIX datagrams");
  int d1 = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0), d2 = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0);
  uint64_t dn = sun("\0dg", 3);
  is(S3(SYS_bind, d1, dn, 5), 0, "bind @dg");
  is(S3(SYS_bind, d2, galloc(&(sa_family_t){AF_UNIX}, 2), 2), 0, "autobind the other");
  memcpy(hp(al), &(socklen_t){128}, 4);
  S3(SYS_getsockname, d2, a, al);
  memcpy(&n, hp(al), 4);
  is(n, 2u + 6, "an abstract name of 5 hex digits");
  is(S6(SYS_sendto, d2, gs("hi"), 2, 0, dn, 5), 2, "sendto @dg");
  uint64_t fa = galloc(NULL, 128), fl = galloc(NULL, 4);
  memcpy(hp(fl), &(socklen_t){128}, 4);
  is(S6(SYS_recvfrom, d1, b, 16, MSG_DONTWAIT, fa, fl), 2, "recvfrom");
  memcpy(&n, hp(fl), 4);
  ok(n == 8 && !memcmp((char *)hp(fa), hp(a), 8), "from the sender's autobound name");
  is(S6(SYS_sendto, d2, gs("x"), 1, 0, sun("\0nobody", 7), 9), -ECONNREFUSED, "to a name nobody has: ECONNREFUSED");
  S1(SYS_close, d1);
  S1(SYS_close, d2);
}

/* Another sandbox (its own sb): its names are its own. */
static void test_two(void)
{
  diag("two sandboxes");
  int a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, a, sin4(0x7f000001, 8000), 16), 0, "sandbox 1 binds 127.0.0.1:8000");
  is(S2(SYS_listen, a, 1), 0, "and listens");
  struct sb *one = sb;
  static struct cf_sandbox_opts o2;
  o2 = opts;
  struct sb *two = shim_sb_new(&o2, SHIM_MEM, PROT_NONE);
  two->mmap_top = MMAP_TOP(SHIM_MEM);
  if (fs_init(two, "/", o2.stdio) < 0 || mm_map_anon(two, SHIM_SCRATCH, SHIM_SCRATCH_LEN, PROT_READ | PROT_WRITE) < 0)
    abort();
  sb = two;
  uint64_t addr = sin4(0x7f000001, 8000);
  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, addr, 16), -ECONNREFUSED, "sandbox 2 cannot reach sandbox 1's port");
  int b = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, b, addr, 16), 0, "sandbox 2 binds 127.0.0.1:8000 too");
  is(S2(SYS_listen, b, 1), 0, "and listens");
  is(S3(SYS_connect, c, addr, 16), 0, "its own connect reaches its own");
  int s = (int)S3(SYS_accept, b, 0, 0);
  ok(s >= 0, "sandbox 2 accepts it");
  fs_fini(two);
  shim_sb_free(two);
  sb = one;
  S3(SYS_fcntl, a, F_SETFL, O_NONBLOCK);
  is(S4(SYS_accept4, a, 0, 0, 0), -EAGAIN, "sandbox 1's listener got nothing");
  S1(SYS_close, a);
}

static short revents(int fd, short events)
{
  uint64_t p = galloc(&(struct pollfd){.fd = fd, .events = events}, sizeof(struct pollfd));
  if (S3(SYS_poll, p, 1, 0) < 0)
    return -1;
  struct pollfd r;
  memcpy(&r, hp(p), sizeof r);
  return r.revents;
}

static long ioc(int fd, unsigned long req)
{
  uint64_t v = galloc(NULL, 4);
  long r = S3(SYS_ioctl, fd, req, v);
  int x;
  memcpy(&x, hp(v), 4);
  return r < 0 ? r : x;
}

/* The semantics issue 16 item 6 made Linux's (each fails before it):
 * SIOCINQ/SIOCOUTQ/SIOCATMARK, the accept queue's length, shutdown of a
 * listener and of sockets that are not connected. Expected values from
 * Linux 6.18 (a Python script run natively). */
static void test_linux(void)
{
  diag("ioctl SIOCINQ, SIOCOUTQ, SIOCATMARK");
  int a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, a, sin4(0x7f000001, 8100), 16);
  S2(SYS_listen, a, 5);
  is(ioc(a, SIOCINQ), -EINVAL, "a TCP listener: SIOCINQ EINVAL");
  is(ioc(a, SIOCOUTQ), -EINVAL, "SIOCOUTQ EINVAL");
  is(ioc(a, SIOCATMARK), 0, "SIOCATMARK 0");
  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(ioc(c, SIOCINQ), 0, "a new TCP socket: SIOCINQ 0");
  S3(SYS_connect, c, sin4(0x7f000001, 8100), 16);
  int s = (int)S3(SYS_accept, a, 0, 0);
  gsend(c, "hello");
  is(ioc(s, SIOCINQ), 5, "5 bytes sent: SIOCINQ 5");
  is(ioc(s, FIONREAD), 5, "FIONREAD 5");
  is(ioc(c, SIOCOUTQ), 0, "the sender's SIOCOUTQ 0 (the loopback acknowledged them)");
  is(ioc(c, TCGETS), -ENOTTY, "TCGETS: ENOTTY");
  S1(SYS_close, s);
  S1(SYS_close, c);
  int u = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0), v = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  S3(SYS_bind, u, sin4(0x7f000001, 8101), 16);
  S6(SYS_sendto, v, gs("1234567"), 7, 0, sin4(0x7f000001, 8101), 16);
  S6(SYS_sendto, v, gs("12"), 2, 0, sin4(0x7f000001, 8101), 16);
  is(ioc(u, SIOCINQ), 7, "UDP: SIOCINQ the first datagram's length (7)");
  is(ioc(u, SIOCOUTQ), 0, "SIOCOUTQ 0");
  is(ioc(u, SIOCATMARK), -ENOTTY, "SIOCATMARK ENOTTY");
  diag("shutdown of sockets not connected");
  is(S2(SYS_shutdown, u, SHUT_RD), -ENOTCONN, "UDP without a peer: ENOTCONN");
  ok(!strcmp(grecv(u), "1234567") && !strcmp(grecv(u), "12"), "what was queued is still read");
  S1(SYS_close, u);
  S1(SYS_close, v);
  int d = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0), e = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0);
  S3(SYS_bind, d, sun("\0semd", 5), 7);
  S6(SYS_sendto, e, gs("abcde"), 5, 0, sun("\0semd", 5), 7);
  is(ioc(d, SIOCINQ), 5, "AF_UNIX datagram: SIOCINQ 5");
  is(ioc(d, SIOCATMARK), -EOPNOTSUPP, "SIOCATMARK EOPNOTSUPP");
  is(S2(SYS_shutdown, d, SHUT_RD), 0, "shutdown(SHUT_RD) of an unconnected AF_UNIX socket: 0");
  ok(!strcmp(grecv(d), "abcde"), "the queued datagram is read");
  is(S6(SYS_recvfrom, d, galloc(NULL, 8), 8, 0, 0, 0), 0, "then end of file (0), not a wait");
  is(S6(SYS_sendto, e, gs("x"), 1, MSG_NOSIGNAL, sun("\0semd", 5), 7), -EPIPE, "a send to it: EPIPE");
  S1(SYS_close, d);
  S1(SYS_close, e);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S2(SYS_shutdown, c, SHUT_RD), -ENOTCONN, "a new TCP socket: ENOTCONN");
  is(revents(c, POLLIN | POLLOUT), POLLIN | POLLOUT | POLLHUP, "and polls POLLIN | POLLOUT | POLLHUP after it");
  S1(SYS_close, c);
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S2(SYS_shutdown, c, SHUT_RDWR), 0, "a new AF_UNIX stream socket: 0");
  S1(SYS_close, c);

  diag("shutdown of a TCP listener: a closed socket again");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8100), 16);
  is(S2(SYS_shutdown, a, SHUT_RDWR), 0, "SHUT_RDWR");
  is(revents(a, POLLIN | POLLOUT), POLLOUT | POLLHUP, "polls POLLOUT | POLLHUP as a new socket (no POLLIN)");
  S1(SYS_close, c);
  S1(SYS_close, a);

  diag("shutdown of an AF_UNIX listener: it stays one");
  a = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  S3(SYS_bind, a, sun("\0seml", 5), 7);
  S2(SYS_listen, a, 1);
  is(revents(a, POLLIN | POLLOUT), 0, "listening: nothing ready");
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  S3(SYS_connect, c, sun("\0seml", 5), 7);
  is(S2(SYS_shutdown, a, SHUT_RD), 0, "SHUT_RD: 0");
  is(revents(a, POLLIN), POLLIN, "readable");
  s = (int)S3(SYS_accept, a, 0, 0);
  ok(s >= 0, "the queued connection is accepted");
  S1(SYS_close, s);
  S1(SYS_close, c);
  is(S3(SYS_accept, a, 0, 0), -EINVAL, "then accept: EINVAL, not a wait");
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sun("\0seml", 5), 7), -ECONNREFUSED, "connect: ECONNREFUSED");
  S1(SYS_close, c);
  is(S2(SYS_shutdown, a, SHUT_RDWR), 0, "SHUT_RDWR");
  is(revents(a, POLLIN), POLLIN | POLLHUP, "POLLIN | POLLHUP");
  S1(SYS_close, a);

  diag("a full accept queue: backlog + 1 connections wait");
  a = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  S3(SYS_bind, a, sun("\0semq", 5), 7);
  S2(SYS_listen, a, 1);
  int q[3];
  for (int i = 0; i < 3; i++)
    q[i] = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  is(S3(SYS_connect, q[0], sun("\0semq", 5), 7), 0, "listen(1): a first connect");
  is(S3(SYS_connect, q[1], sun("\0semq", 5), 7), 0, "a second");
  is(S3(SYS_connect, q[2], sun("\0semq", 5), 7), -EAGAIN, "a third, non-blocking: EAGAIN");
  c = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  S5(SYS_setsockopt, c, SOL_SOCKET, SO_SNDTIMEO, galloc(&(struct timeval){0, 50000}, 16), 16);
  is(S3(SYS_connect, c, sun("\0semq", 5), 7), -EAGAIN, "blocking with SO_SNDTIMEO 50 ms: it waited, then EAGAIN");
  s = (int)S3(SYS_accept, a, 0, 0);
  is(S3(SYS_connect, q[2], sun("\0semq", 5), 7), 0, "one accepted: room for one more");
  S1(SYS_close, s);
  S1(SYS_close, c);
  for (int i = 0; i < 3; i++)
    S1(SYS_close, q[i]);
  S1(SYS_close, a);

  diag("TCP: a peer that closed, a peer that shut down reading");
  a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, a, sin4(0x7f000001, 8102), 16);
  S2(SYS_listen, a, 5);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8102), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  S1(SYS_close, c);
  is(S6(SYS_sendto, s, gs(""), 0, MSG_NOSIGNAL, 0, 0), 0, "peer closed: a send of 0 bytes: 0");
  is(S6(SYS_sendto, s, gs("abc"), 3, MSG_NOSIGNAL, 0, 0), 3, "the first send: 3 (its reset comes back)");
  is(geti(s, SOL_SOCKET, SO_ERROR), EPIPE, "SO_ERROR: EPIPE");
  is(geti(s, SOL_SOCKET, SO_ERROR), 0, "once");
  is(S6(SYS_sendto, s, gs("abc"), 3, MSG_NOSIGNAL, 0, 0), -EPIPE, "the next send: EPIPE");
  ok(!strcmp(grecv(s), ""), "a read: the end");
  S1(SYS_close, s);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8102), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  is(S2(SYS_shutdown, c, SHUT_RD), 0, "shutdown(SHUT_RD)");
  is(S6(SYS_sendto, s, gs("abc"), 3, MSG_NOSIGNAL, 0, 0), 3, "the peer's sends go on");
  ok(!strcmp(grecv(c), "abc"), "what came is read");
  ok(!strcmp(grecv(c), ""), "then the end, not EAGAIN");
  S1(SYS_close, s);
  S1(SYS_close, c);
  S1(SYS_close, a);

  diag("UDP-Lite: datagrams with ports of their own");
  u = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  v = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  ok(u >= 0, "socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE) (%d)", u);
  is(geti(u, SOL_SOCKET, SO_PROTOCOL), IPPROTO_UDPLITE, "SO_PROTOCOL: IPPROTO_UDPLITE");
  is(S3(SYS_bind, u, sin4(0x7f000001, 8200), 16), 0, "bind 127.0.0.1:8200");
  is(S3(SYS_bind, v, sin4(0x7f000001, 8200), 16), 0, "a UDP socket binds the same port");
  c = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  is(S6(SYS_sendto, c, gs("lite"), 4, 0, sin4(0x7f000001, 8200), 16), 4, "sendto the UDP-Lite port");
  ok(!strcmp(grecv(u), "lite") && !strcmp(grecv(v), "(Resource temporarily unavailable)"),
     "the UDP-Lite socket receives it, the UDP one not");
  is(S3(SYS_socket, AF_INET, SOCK_STREAM, IPPROTO_UDPLITE), -EPROTONOSUPPORT, "a UDP-Lite stream: EPROTONOSUPPORT");
  S1(SYS_close, c);
  S1(SYS_close, u);
  S1(SYS_close, v);
}

/* A recvmsg of up to 63 bytes on fd with room for control messages: the
 * bytes, and in *u the SCM_CREDENTIALS it carried (pid -1: none). */
static long recv_cred(int fd, struct ucred *u, int flags)
{
  uint64_t b = galloc(NULL, 64), c = galloc(NULL, 128);
  struct iovec v = {(void *)b, 63};
  struct msghdr m = {.msg_iov = (void *)galloc(&v, sizeof v), .msg_iovlen = 1, .msg_control = (void *)c,
                     .msg_controllen = 128};
  uint64_t gm = galloc(&m, sizeof m);
  long r = S3(SYS_recvmsg, fd, gm, flags | MSG_DONTWAIT);
  memcpy(&m, hp(gm), sizeof m);
  u->pid = -1;
  struct cmsghdr h;
  memcpy(&h, hp(c), sizeof h);
  if (r >= 0 && m.msg_controllen >= CMSG_LEN(sizeof *u) && h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_CREDENTIALS)
    memcpy(u, (char *)hp(c) + CMSG_LEN(0), sizeof *u);
  return r;
}

/* sendmsg of s on fd, with an explicit SCM_CREDENTIALS if u. */
static long send_cred(int fd, const char *s, const struct ucred *u)
{
  char ctl[CMSG_SPACE(sizeof *u)];
  memset(ctl, 0, sizeof ctl);
  struct cmsghdr *cm = (struct cmsghdr *)ctl;
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_CREDENTIALS;
  cm->cmsg_len = CMSG_LEN(sizeof *u);
  if (u)
    memcpy(CMSG_DATA(cm), u, sizeof *u);
  struct iovec v = {(void *)gs(s), strlen(s)};
  struct msghdr m = {.msg_iov = (void *)galloc(&v, sizeof v), .msg_iovlen = 1,
                     .msg_control = u ? (void *)galloc(ctl, sizeof ctl) : NULL, .msg_controllen = u ? sizeof ctl : 0};
  return S3(SYS_sendmsg, fd, galloc(&m, sizeof m), MSG_NOSIGNAL);
}

/* The gaps issue 16's last session left (each fails before it): the
 * credentials of AF_UNIX messages, TCP resets and a peer's orderly close
 * as poll sees them, UDP-Lite's coverage options. Expected values from
 * Linux 6.18 (C programs run natively). */
static void test_gaps(void)
{
  diag("SO_PASSCRED, SCM_CREDENTIALS");
  uint64_t pv = galloc(NULL, 8);
  int p[2];
  S4(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, pv);
  memcpy(p, hp(pv), 8);
  is(geti(p[1], SOL_SOCKET, SO_PASSCRED), 0, "SO_PASSCRED 0 at first");
  is(gsend(p[0], "before"), 6, "a message sent before the receiver's SO_PASSCRED");
  is(seti(p[1], SOL_SOCKET, SO_PASSCRED, 5), 0, "SO_PASSCRED on the receiver");
  is(geti(p[1], SOL_SOCKET, SO_PASSCRED), 1, "given back as 1");
  struct ucred u;
  is(recv_cred(p[1], &u, 0), 6, "recvmsg");
  ok(u.pid == 0 && u.uid == 65534 && u.gid == 65534, "it carried none: pid 0, uid and gid 65534 (%d %u %u)", u.pid,
     u.uid, u.gid);
  int me = sb->pid;
  sb->pid = 4242; /* as another process of the sandbox (a child that has the fd) sends */
  is(gsend(p[0], "child"), 5, "a send from process 4242");
  sb->pid = me;
  is(gsend(p[0], "parent"), 6, "then one from this process");
  is(recv_cred(p[1], &u, 0), 5, "the first message alone (messages of two senders are not glued)");
  ok(u.pid == 4242 && u.uid == (uid_t)sb->uid && u.gid == (gid_t)sb->gid, "its sender's sandbox pid 4242 (%d)", u.pid);
  is(recv_cred(p[1], &u, 0), 6, "the second");
  ok(u.pid == me, "this process's pid (%d)", u.pid);
  is(send_cred(p[0], "as", &(struct ucred){.pid = me, .uid = 5, .gid = 6}), 2, "an explicit SCM_CREDENTIALS (root: uid 5, gid 6)");
  is(recv_cred(p[1], &u, 0), 2, "received");
  ok(u.pid == me && u.uid == 5 && u.gid == 6, "with the credentials sent (%d %u %u)", u.pid, u.uid, u.gid);
  is(send_cred(p[0], "x", &(struct ucred){.pid = 999999, .uid = 0, .gid = 0}), -ESRCH, "root, a pid that is no process: ESRCH");
  is(send_cred(p[0], "x", &(struct ucred){.pid = me, .uid = (uid_t)-1, .gid = 0}), -EINVAL, "uid -1: EINVAL");
  int uid = sb->uid;
  sb->uid = 1000;
  is(send_cred(p[0], "x", &(struct ucred){.pid = me, .uid = 0, .gid = (gid_t)sb->gid}), -EPERM, "uid 1000 claims uid 0: EPERM");
  is(send_cred(p[0], "x", &(struct ucred){.pid = me + 1, .uid = 1000, .gid = (gid_t)sb->gid}), -EPERM,
     "another pid: EPERM");
  is(send_cred(p[0], "ok", &(struct ucred){.pid = me, .uid = 1000, .gid = (gid_t)sb->gid}), 2, "its own: sent");
  sb->uid = uid;
  is(recv_cred(p[1], &u, 0), 2, "received");
  ok(u.uid == 1000, "uid 1000");
  is(seti(p[1], SOL_SOCKET, SO_PASSCRED, 0), 0, "SO_PASSCRED off");
  gsend(p[0], "no");
  is(recv_cred(p[1], &u, 0), 2, "received");
  is(u.pid, -1, "no SCM_CREDENTIALS");
  S1(SYS_close, p[0]);
  S1(SYS_close, p[1]);
  int ls = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0), cc = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  S3(SYS_bind, ls, sun("\0credl", 6), 8);
  seti(ls, SOL_SOCKET, SO_PASSCRED, 1);
  S2(SYS_listen, ls, 1);
  S3(SYS_connect, cc, sun("\0credl", 6), 8);
  sb->pid = 4343;
  is(gsend(cc, "early"), 5, "a listener with SO_PASSCRED: a send from process 4343 before the accept");
  sb->pid = me;
  int as = (int)S3(SYS_accept, ls, 0, 0);
  is(geti(as, SOL_SOCKET, SO_PASSCRED), 1, "the accepted socket inherits SO_PASSCRED");
  is(recv_cred(as, &u, 0), 5, "received");
  is(u.pid, 4343, "with its sender's pid");
  S1(SYS_close, as);
  S1(SYS_close, cc);
  S1(SYS_close, ls);
  int d1 = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0), d2 = (int)S3(SYS_socket, AF_UNIX, SOCK_DGRAM, 0);
  S3(SYS_bind, d1, sun("\0credd", 6), 8);
  seti(d1, SOL_SOCKET, SO_PASSCRED, 1);
  is(S6(SYS_sendto, d2, gs("dg"), 2, 0, sun("\0credd", 6), 8), 2, "a datagram to a socket with SO_PASSCRED");
  is(recv_cred(d1, &u, 0), 2, "received");
  ok(u.pid == me && u.uid == (uid_t)sb->uid, "with the sender's credentials");
  S1(SYS_close, d1);
  S1(SYS_close, d2);

  diag("TCP: a peer's orderly close, resets");
  int a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, a, sin4(0x7f000001, 8300), 16);
  S2(SYS_listen, a, 5);
  short all = POLLIN | POLLOUT | POLLRDHUP | POLLPRI;
  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8300), 16);
  int s = (int)S3(SYS_accept, a, 0, 0);
  gsend(c, "hi");
  S1(SYS_close, c);
  is(revents(s, all), POLLIN | POLLOUT | POLLRDHUP, "the peer closed: POLLIN | POLLOUT | POLLRDHUP, no POLLHUP");
  ok(!strcmp(grecv(s), "hi") && !strcmp(grecv(s), ""), "its bytes, then the end");
  is(S2(SYS_shutdown, s, SHUT_WR), 0, "shutdown(SHUT_WR)");
  is(revents(s, all), POLLIN | POLLOUT | POLLRDHUP | POLLHUP, "both directions shut: POLLHUP");
  S1(SYS_close, s);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8300), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  S2(SYS_shutdown, s, SHUT_RD);
  is(revents(s, all), POLLIN | POLLOUT | POLLRDHUP, "shutdown(SHUT_RD): POLLIN | POLLOUT | POLLRDHUP");
  S2(SYS_shutdown, s, SHUT_WR);
  is(revents(s, all), POLLIN | POLLOUT | POLLRDHUP | POLLHUP, "and SHUT_WR: POLLHUP");
  S1(SYS_close, c);
  S1(SYS_close, s);

  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8300), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  gsend(s, "xyz");
  gsend(c, "abc");
  S1(SYS_close, c);
  is(revents(s, all), POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP,
     "the peer closed with bytes unread: a reset (POLLERR | POLLHUP too)");
  struct sockaddr_in sa;
  socklen_t sl;
  is(name_of(SYS_getpeername, s, &sa, &sl), -ENOTCONN, "getpeername: ENOTCONN");
  ok(!strcmp(grecv(s), "abc"), "what came is read");
  ok(!strcmp(grecv(s), "(Connection reset by peer)"), "then ECONNRESET");
  is(revents(s, all), POLLIN | POLLOUT | POLLHUP | POLLRDHUP, "no POLLERR after");
  ok(!strcmp(grecv(s), ""), "then the end");
  is(S6(SYS_sendto, s, gs("q"), 1, MSG_NOSIGNAL, 0, 0), -EPIPE, "a send: EPIPE");
  S1(SYS_close, s);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8300), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  gsend(s, "xyz");
  S1(SYS_close, c);
  is(S6(SYS_sendto, s, gs("q"), 1, MSG_NOSIGNAL, 0, 0), -ECONNRESET, "a reset: the first send ECONNRESET");
  is(S6(SYS_sendto, s, gs("q"), 1, MSG_NOSIGNAL, 0, 0), -EPIPE, "the next EPIPE");
  S1(SYS_close, s);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8300), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  gsend(c, "abc");
  S5(SYS_setsockopt, c, SOL_SOCKET, SO_LINGER, galloc(&(struct linger){1, 0}, sizeof(struct linger)),
     sizeof(struct linger));
  S1(SYS_close, c);
  is(revents(s, all), POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDHUP, "SO_LINGER {1, 0}: a reset");
  is(geti(s, SOL_SOCKET, SO_ERROR), ECONNRESET, "SO_ERROR: ECONNRESET");
  ok(!strcmp(grecv(s), "abc") && !strcmp(grecv(s), ""), "the bytes, then the end (the error was taken)");
  S1(SYS_close, s);
  S1(SYS_close, a);

  diag("a non-blocking TCP connect to a full accept queue");
  a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, a, sin4(0x7f000001, 8301), 16);
  S2(SYS_listen, a, 0);
  int q[4];
  for (int i = 0; i < 4; i++) {
    q[i] = (int)S3(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    is(S3(SYS_connect, q[i], sin4(0x7f000001, 8301), 16), -EINPROGRESS, "connect %d: EINPROGRESS", i);
  }
  is(revents(q[0], POLLIN | POLLOUT), POLLOUT, "the first is queued: writable");
  is(revents(q[1], POLLIN | POLLOUT), 0, "the second waits for room: nothing ready");
  is(S3(SYS_connect, q[1], sin4(0x7f000001, 8301), 16), -EALREADY, "connect again: EALREADY");
  is(geti(q[1], SOL_SOCKET, SO_ERROR), 0, "SO_ERROR 0");
  is(gsend(q[1], "x"), -EAGAIN, "a send: EAGAIN");
  is(name_of(SYS_getpeername, q[1], &sa, &sl), -ENOTCONN, "getpeername: ENOTCONN");
  s = (int)S3(SYS_accept, a, 0, 0);
  is(revents(q[1], POLLIN | POLLOUT), POLLOUT, "an accept made room: the second is queued, writable");
  is(revents(q[2], POLLIN | POLLOUT), 0, "the third still waits");
  is(S3(SYS_connect, q[3], sin4(0x7f000001, 8301), 16), -EALREADY, "and the fourth");
  is(S3(SYS_connect, q[1], sin4(0x7f000001, 8301), 16), 0, "connect again: 0");
  is(gsend(q[1], "two"), 3, "a send");
  S1(SYS_close, s);
  s = (int)S3(SYS_accept, a, 0, 0);
  ok(!strcmp(grecv(s), "two"), "accepted: it came");
  S1(SYS_close, s);
  S1(SYS_close, a);
  ok(revents(q[3], POLLOUT) & POLLERR, "the listener closed: the fourth, still waiting, is refused (POLLERR)");
  is(geti(q[3], SOL_SOCKET, SO_ERROR), ECONNREFUSED, "SO_ERROR: ECONNREFUSED");
  is(geti(q[2], SOL_SOCKET, SO_ERROR), ECONNRESET, "the third, queued by the second accept: reset (ECONNRESET)");
  for (int i = 0; i < 4; i++)
    S1(SYS_close, q[i]);

  diag("MSG_OOB: TCP's urgent byte");
  a = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, a, sin4(0x7f000001, 8302), 16);
  S2(SYS_listen, a, 5);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_connect, c, sin4(0x7f000001, 8302), 16);
  s = (int)S3(SYS_accept, a, 0, 0);
  uint64_t ob = galloc(NULL, 8);
  is(S6(SYS_recvfrom, s, ob, 1, MSG_OOB | MSG_DONTWAIT, 0, 0), -EINVAL, "recv(MSG_OOB) with none: EINVAL");
  is(S6(SYS_sendto, c, gs("ab"), 2, MSG_OOB, 0, 0), 2, "send(\"ab\", MSG_OOB)");
  is(revents(s, POLLIN | POLLPRI), POLLIN | POLLPRI, "POLLIN | POLLPRI");
  is(ioc(s, SIOCATMARK), 0, "SIOCATMARK 0");
  ok(!strcmp(grecv(s), "a"), "a read stops at the mark: \"a\"");
  is(ioc(s, SIOCATMARK), 1, "SIOCATMARK 1");
  is(S6(SYS_recvfrom, s, ob, 1, MSG_OOB | MSG_DONTWAIT, 0, 0), 1, "recv(MSG_OOB): 1 byte");
  ok(*(char *)hp(ob) == 'b', "the urgent \"b\"");
  is(S6(SYS_recvfrom, s, ob, 1, MSG_OOB | MSG_DONTWAIT, 0, 0), -EINVAL, "again: EINVAL");
  is(seti(s, SOL_SOCKET, SO_OOBINLINE, 1), 0, "SO_OOBINLINE");
  S6(SYS_sendto, c, gs("gh"), 2, MSG_OOB, 0, 0);
  ok(!strcmp(grecv(s), "g") && !strcmp(grecv(s), "h"), "inline: \"g\", then the urgent \"h\" in the stream");
  int ud = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(S6(SYS_sendto, ud, gs("x"), 1, MSG_OOB, sin4(0x7f000001, 8302), 16), -EOPNOTSUPP, "UDP: EOPNOTSUPP");
  S1(SYS_close, ud);
  S1(SYS_close, s);
  S1(SYS_close, c);
  S1(SYS_close, a);

  diag("UDP-Lite: UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV");
  int l = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), v = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(geti(l, IPPROTO_UDPLITE, 10), 0, "SEND_CSCOV 0 at first");
  is(seti(l, IPPROTO_UDPLITE, 10, 20), 0, "set 20");
  is(geti(l, IPPROTO_UDPLITE, 10), 20, "given back");
  is(seti(l, IPPROTO_UDPLITE, 11, 3), 0, "RECV_CSCOV 3");
  is(geti(l, IPPROTO_UDPLITE, 11), 8, "is 8 (1-7: the header's)");
  is(seti(l, IPPROTO_UDP, 10, 70000), 0, "SEND_CSCOV 70000 at level IPPROTO_UDP");
  is(geti(l, IPPROTO_UDPLITE, 10), 65535, "is 65535");
  is(S5(SYS_setsockopt, l, IPPROTO_UDPLITE, 10, galloc(&(int){9}, 4), 2), -EINVAL, "a short value: EINVAL");
  is(seti(v, IPPROTO_UDPLITE, 10, 20), -ENOPROTOOPT, "on a UDP socket: ENOPROTOOPT");
  is(geti(v, IPPROTO_UDPLITE, 10), 0, "which reads 0");
  S1(SYS_close, l);
  S1(SYS_close, v);
}

int main(void)
{
  shim_setup("/");
  test_names();
  test_udp();
  test_unix();
  test_two();
  test_linux();
  test_gaps();
  shim_teardown();
  return done_testing();
}
