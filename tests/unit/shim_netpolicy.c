/* Outbound by policy and forwarded ports (shim/net.c with
 * cf_sandbox_opts.net; cf_sandbox_net_accept), with no VM: a host test
 * server on 127.0.0.1 is unreachable with no policy (the sandbox's own
 * loopback: ECONNREFUSED; another address: ENETUNREACH); a rule naming
 * 127.0.0.1:PORT reaches exactly it (data both ways, the names, a
 * non-blocking connect's EINPROGRESS/EALREADY/0/EISCONN, TCP_NODELAY on the
 * host socket, a refused one) while another host port stays the sandbox's
 * own; UDP to an allowed port and its answer; a connection queued on the
 * sandbox's listener from outside. Before the policy, every one of them
 * was the sandbox's own loopback (ECONNREFUSED) and cf_sandbox_net_accept
 * did not exist. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "cowfork/error.h"
#include "cowfork/netpolicy.h"
#include "shim_util.h"
#include "tap.h"

static uint64_t sin4(uint32_t addr, uint16_t port)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr)};
  return galloc(&a, sizeof a);
}

/* A host socket of type bound to 127.0.0.1 (listening for a stream), its port in *port. */
static int host_server(int type, uint16_t *port)
{
  int h = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  socklen_t l = sizeof a;
  if (h < 0 || bind(h, (struct sockaddr *)&a, sizeof a) < 0 || (type == SOCK_STREAM && listen(h, 8) < 0) ||
      getsockname(h, (struct sockaddr *)&a, &l) < 0)
    abort();
  *port = ntohs(a.sin_port);
  return h;
}

static long name_of(long nr, int fd, struct sockaddr_in *out)
{
  uint64_t a = galloc(NULL, 128), l = galloc(NULL, 4);
  socklen_t n = 128;
  memcpy(hp(l), &n, 4);
  long r = S3(nr, fd, a, l);
  memcpy(out, hp(a), sizeof *out);
  return r;
}

static struct cf_net_policy pol;

static void set_policy(const char *spec)
{
  if (cf_net_parse(spec, &pol) < 0)
    abort();
  opts.net = &pol;
}

int main(void)
{
  shim_setup("/");
  uint16_t p1, p2, pu;
  int srv1 = host_server(SOCK_STREAM, &p1), srv2 = host_server(SOCK_STREAM, &p2), usrv = host_server(SOCK_DGRAM, &pu);
  char spec[128];

  /* none: the host's server is not reachable */
  opts.net = NULL;
  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, p1), 16), -ECONNREFUSED, "none: 127.0.0.1:%u is the sandbox's own (nothing there)", p1);
  is(S3(SYS_connect, c, sin4(0x0a010203, 80), 16), -ENETUNREACH, "none: 10.1.2.3:80 unreachable");
  S1(SYS_close, c);
  struct pollfd pf = {.fd = srv1, .events = POLLIN};
  is(poll(&pf, 1, 0), 0, "the host server saw no connection");

  /* all: still not the host's loopback */
  set_policy("all");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, p1), 16), -ECONNREFUSED, "all: 127.0.0.1:%u is still the sandbox's own", p1);
  S1(SYS_close, c);

  /* a rule naming 127.0.0.1:p1 */
  snprintf(spec, sizeof spec, "allow=127.0.0.1:%u,127.0.0.1:%u", p1, pu);
  set_policy(spec);
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S5(SYS_setsockopt, c, IPPROTO_TCP, TCP_NODELAY, galloc(&(int){1}, 4), 4), 0, "TCP_NODELAY before connect");
  is(S3(SYS_connect, c, sin4(0x7f000001, p1), 16), 0, "allow=127.0.0.1:%u: connect reaches the host's server", p1);
  int a = accept4(srv1, NULL, NULL, SOCK_CLOEXEC);
  ok(a >= 0, "the host server accepted it");
  is(S3(SYS_write, c, gs("ping"), 4), 4, "write");
  char buf[16] = "";
  is(read(a, buf, sizeof buf), 4, "host reads");
  ok(!memcmp(buf, "ping", 4), "... ping");
  is(write(a, "pong!", 5), 5, "host writes");
  uint64_t g = galloc(NULL, 16);
  is(S3(SYS_read, c, g, 16), 5, "read");
  ok(!memcmp(hp(g), "pong!", 5), "... pong!");
  struct sockaddr_in peer, me, hpeer;
  socklen_t hl = sizeof hpeer;
  is(name_of(SYS_getpeername, c, &peer), 0, "getpeername");
  ok(peer.sin_family == AF_INET && ntohs(peer.sin_port) == p1 && peer.sin_addr.s_addr == htonl(0x7f000001),
     "... 127.0.0.1:%u", p1);
  is(name_of(SYS_getsockname, c, &me), 0, "getsockname");
  getpeername(a, (struct sockaddr *)&hpeer, &hl);
  ok(me.sin_port == hpeer.sin_port && me.sin_addr.s_addr == hpeer.sin_addr.s_addr,
     "... the host socket's own name (port %u)", ntohs(me.sin_port));
  int nd = 0;
  socklen_t ndl = sizeof nd;
  getsockopt(sb->fds[c]->hostfd, IPPROTO_TCP, TCP_NODELAY, &nd, &ndl);
  ok(nd == 1, "TCP_NODELAY is on the host socket");
  struct pollfd gp = {.fd = sb->fds[c]->hostfd, .events = POLLIN};
  close(a);
  is(poll(&gp, 1, 1000), 1, "the peer's close: readable");
  is(S3(SYS_read, c, g, 16), 0, "... end of file");
  S1(SYS_close, c);

  /* another host port: the sandbox's own */
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, p2), 16), -ECONNREFUSED, "127.0.0.1:%u (not in the rule): the sandbox's own", p2);
  S1(SYS_close, c);
  pf.fd = srv2;
  is(poll(&pf, 1, 0), 0, "the other host server saw no connection");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x0a010203, p1), 16), -ENETUNREACH, "10.1.2.3:%u (not in the rule): unreachable", p1);
  S1(SYS_close, c);

  /* the sandbox's own server on another port still works */
  int l = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_bind, l, sin4(0x7f000001, p2), 16), 0, "bind 127.0.0.1:%u in the sandbox", p2);
  is(S2(SYS_listen, l, 4), 0, "listen");
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, p2), 16), 0, "connect to its own listener");
  int ac = (int)S3(SYS_accept, l, 0, 0);
  ok(ac >= 0, "accepted inside");
  S1(SYS_close, ac);
  S1(SYS_close, c);

  /* non-blocking connect to the host's server */
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  long r = S3(SYS_connect, c, sin4(0x7f000001, p1), 16);
  ok(r == -EINPROGRESS || r == 0, "non-blocking connect: EINPROGRESS (%ld)", r);
  struct pollfd wp = {.fd = sb->fds[c]->hostfd, .events = POLLOUT};
  is(poll(&wp, 1, 2000), 1, "writable once connected");
  is(S3(SYS_connect, c, sin4(0x7f000001, p1), 16), 0, "connect again: 0");
  is(S3(SYS_connect, c, sin4(0x7f000001, p1), 16), -EISCONN, "and again: EISCONN");
  a = accept4(srv1, NULL, NULL, SOCK_CLOEXEC);
  ok(a >= 0, "the host server accepted it");
  close(a);
  S1(SYS_close, c);

  /* an allowed port where nothing listens on the host: the host's refusal */
  close(srv2);
  snprintf(spec, sizeof spec, "allow=127.0.0.1:%u", p2);
  set_policy(spec);
  S1(SYS_close, l); /* (the sandbox's own listener on p2 goes too) */
  c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, c, sin4(0x7f000001, p2), 16), -ECONNREFUSED, "allowed, nothing listening on the host: ECONNREFUSED");
  int e = 0;
  uint64_t ev = galloc(NULL, 4), el = galloc(&(socklen_t){4}, 4);
  S5(SYS_getsockopt, c, SOL_SOCKET, SO_ERROR, ev, el);
  memcpy(&e, hp(ev), 4);
  is(e, 0, "SO_ERROR taken");
  S1(SYS_close, c);

  /* UDP to an allowed host port and the answer */
  snprintf(spec, sizeof spec, "allow=127.0.0.1:%u", pu);
  set_policy(spec);
  int u = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(S6(SYS_sendto, u, gs("dgram"), 5, 0, sin4(0x7f000001, pu), 16), 5, "sendto 127.0.0.1:%u", pu);
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  memset(buf, 0, sizeof buf);
  is(recvfrom(usrv, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl), 5, "the host server got it");
  ok(!memcmp(buf, "dgram", 5), "... dgram");
  is(name_of(SYS_getsockname, u, &me), 0, "getsockname of the UDP socket");
  ok(me.sin_port == from.sin_port, "... the port it came from (%u)", ntohs(from.sin_port));
  is(sendto(usrv, "back", 4, 0, (struct sockaddr *)&from, fl), 4, "the host answers");
  uint64_t ga = galloc(NULL, 16), gl = galloc(&(socklen_t){16}, 4);
  is(S6(SYS_recvfrom, u, g, 16, 0, ga, gl), 4, "recvfrom");
  struct sockaddr_in src;
  memcpy(&src, hp(ga), sizeof src);
  ok(!memcmp(hp(g), "back", 4) && ntohs(src.sin_port) == pu && src.sin_addr.s_addr == htonl(0x7f000001),
     "... back from 127.0.0.1:%u (got %.4s from %x:%u fam %d)", pu, (char *)hp(g), ntohl(src.sin_addr.s_addr), ntohs(src.sin_port), src.sin_family);
  is(S6(SYS_sendto, u, gs("x"), 1, 0, sin4(0x7f000001, pu + 1), 16), 1,
     "sendto another loopback port: the sandbox's own (dropped)");
  S1(SYS_close, u);

  /* a connection from outside queued on the sandbox's listener */
  opts.net = NULL;
  l = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  S3(SYS_bind, l, sin4(0, 8000), 16);
  S2(SYS_listen, l, 4);
  int sp[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
  is(cf_sandbox_net_accept((struct cf_sandbox *)sb, 8000, sp[1]), 0, "cf_sandbox_net_accept on port 8000");
  uint64_t pa = galloc(NULL, 16), pl = galloc(&(socklen_t){16}, 4);
  ac = (int)S3(SYS_accept, l, pa, pl);
  ok(ac >= 0, "the sandbox accepts it");
  memcpy(&src, hp(pa), sizeof src);
  ok(src.sin_family == AF_INET && src.sin_addr.s_addr == htonl(0x7f000001), "... from 127.0.0.1:%u", ntohs(src.sin_port));
  is(write(sp[0], "GET", 3), 3, "the outside writes");
  is(S3(SYS_read, ac, g, 16), 3, "the sandbox reads");
  is(S3(SYS_write, ac, gs("200"), 3), 3, "the sandbox answers");
  memset(buf, 0, sizeof buf);
  is(read(sp[0], buf, sizeof buf), 3, "the outside reads it");
  ok(!memcmp(buf, "200", 3), "... 200");
  S1(SYS_close, ac);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
  ok(cf_sandbox_net_accept((struct cf_sandbox *)sb, 8001, sp[1]) < 0 && cf_errno() == ECONNREFUSED,
     "port 8001 (no listener): ECONNREFUSED (%s)", cf_error());
  pf.fd = sp[0];
  pf.events = POLLIN;
  ok(poll(&pf, 1, 1000) == 1 && read(sp[0], buf, 1) == 0, "... the outside sees the end");
  close(sp[0]);
  S1(SYS_close, l);
  close(srv1);
  close(usrv);
  shim_teardown();
  return done_testing();
}
