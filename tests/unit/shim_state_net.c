/* Sockets through a template's state (fs_save, fs_load; shim/net.c
 * net_save_check, net_save, net_load), with no VM: a listener on
 * 127.0.0.1:8000 (SO_REUSEADDR, non-blocking), one on [::]:8001, an
 * AF_UNIX listener on an abstract name and one on a path, a bound UDP
 * socket, an unbound TCP socket. Each child (two loads of the same bytes)
 * gets its own listeners on its own loopback: a connect there is accepted,
 * the names, options and flags are back, the ephemeral port counter goes
 * on; neither child's connections reach the other or the template. What
 * is not carried is refused by name: a connected pair, a socketpair, a
 * listener with a connection waiting, a datagram socket with a datagram
 * waiting. Bad records are refused by fs_load. Before, any open socket made
 * fs_save refuse. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "cowfork/error.h"
#include "shim_util.h"
#include "tap.h"

static uint64_t sin4(uint32_t addr, uint16_t port)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr)};
  return galloc(&a, sizeof a);
}

static uint64_t sin6any(uint16_t port)
{
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
  return galloc(&a, sizeof a);
}

static uint64_t sun(const char *name, size_t len)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, name, len);
  return galloc(&a, sizeof a);
}

static int port_of(int fd)
{
  uint64_t a = galloc(NULL, 128), l = galloc(NULL, 4);
  memcpy(hp(l), &(socklen_t){128}, 4);
  if (S3(SYS_getsockname, fd, a, l) < 0)
    return -1;
  struct sockaddr_in in;
  memcpy(&in, hp(a), sizeof in);
  return ntohs(in.sin_port);
}

/* connect a new TCP socket to 127.0.0.1:port, send "hi", accept on l and
 * read it back: 0 or which step failed. */
static const char *round_trip(int l, int port)
{
  int c = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  if (c < 0)
    return "socket";
  const char *why = NULL;
  long r = S3(SYS_connect, c, sin4(0x7f000001, (uint16_t)port), sizeof(struct sockaddr_in));
  if (r < 0)
    why = "connect";
  int a = why ? -1 : (int)S3(SYS_accept4, l, 0, 0);
  if (!why && a < 0)
    why = "accept";
  uint64_t buf = galloc(NULL, 8);
  if (!why && S3(SYS_write, c, gs("hi"), 2) != 2)
    why = "write";
  if (!why && (S3(SYS_read, a, buf, 8) != 2 || memcmp(hp(buf), "hi", 2)))
    why = "read";
  S1(SYS_close, c);
  if (a >= 0)
    S1(SYS_close, a);
  return why;
}

/* A child loaded from w; the template's sb kept in *old. */
static struct sb *child(const struct wbuf *w, int *rc)
{
  struct sb *old = sb;
  struct sb *n = shim_fs_reload(w, rc);
  sb = n;
  (void)old;
  return n;
}

static void leave(struct sb *c, struct sb *tmpl)
{
  fs_fini(c);
  shim_sb_free(c);
  sb = tmpl;
}

/* Offsets of a record's fields after its tag (net_save's order). */
enum { R_FAMILY = 1, R_TYPE, R_PROTO, R_STATE, R_FLAGS, R_SOERR, R_LOCAL = 7 };

int main(void)
{
  shim_setup("/");
  sb->pid = sb->tid = 2;
  int one = 1;
  uint64_t onep = galloc(&one, 4);
  int l4 = (int)S3(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  is(S5(SYS_setsockopt, l4, SOL_SOCKET, SO_REUSEADDR, onep, 4), 0, "SO_REUSEADDR");
  is(S3(SYS_bind, l4, sin4(0x7f000001, 8000), sizeof(struct sockaddr_in)), 0, "bind 127.0.0.1:8000");
  is(S2(SYS_listen, l4, 16), 0, "listen");
  int l6 = (int)S3(SYS_socket, AF_INET6, SOCK_STREAM, 0);
  is(S3(SYS_bind, l6, sin6any(8001), sizeof(struct sockaddr_in6)), 0, "bind [::]:8001");
  is(S2(SYS_listen, l6, 5), 0, "listen");
  int lu = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_bind, lu, sun("\0srv", 4), 6), 0, "bind @srv");
  is(S2(SYS_listen, lu, 5), 0, "listen");
  int lp = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  is(S3(SYS_bind, lp, sun("/tmp/srv.sock", 14), sizeof(struct sockaddr_un)), 0, "bind /tmp/srv.sock");
  is(S2(SYS_listen, lp, 5), 0, "listen");
  int ud = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(S3(SYS_bind, ud, sin4(0x7f000001, 5353), sizeof(struct sockaddr_in)), 0, "bind UDP 127.0.0.1:5353");
  int un = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  ok(un >= 0, "an unbound TCP socket");
  int eph = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S2(SYS_listen, eph, 1), 0, "a listener on an ephemeral port");
  int ephport = port_of(eph);
  ok(ephport >= 32768, "port %d", ephport);
  ok(round_trip(l4, 8000) == NULL, "the template's listener works before the save");

  struct wbuf w = {0};
  int rc = fs_save(sb, &w);
  ok(rc == 0 && !w.err, "fs_save with listeners, a UDP socket, an unbound one: %s", rc ? cf_error() : "ok");
  struct sb *tmpl = sb;
  for (int k = 0; k < 2 && rc == 0; k++) {
    diag("child %d", k);
    struct sb *c = child(&w, &rc);
    ok(rc == 0, "fs_load: %s", rc ? cf_error() : "ok");
    if (rc)
      break;
    ok(fs_get(c, l4) && fs_get(c, l4)->sock && (fs_get(c, l4)->flags & O_NONBLOCK), "the listener's fd, O_NONBLOCK");
    is(S3(SYS_accept4, l4, 0, 0), -EAGAIN, "its queue is empty (non-blocking accept: EAGAIN)");
    const char *why = round_trip(l4, 8000);
    ok(!why, "127.0.0.1:8000 answers in the child (%s)", why ? why : "ok");
    uint64_t v = galloc(NULL, 4), vl = galloc(NULL, 4);
    memcpy(hp(vl), &(socklen_t){4}, 4);
    S5(SYS_getsockopt, l4, SOL_SOCKET, SO_REUSEADDR, v, vl);
    is(*(int *)hp(v), 1, "SO_REUSEADDR kept");
    memcpy(hp(vl), &(socklen_t){4}, 4);
    S5(SYS_getsockopt, l4, SOL_SOCKET, SO_ACCEPTCONN, v, vl);
    is(*(int *)hp(v), 1, "SO_ACCEPTCONN");
    is(port_of(l4), 8000, "getsockname: 8000");
    int t = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
    is(S3(SYS_bind, t, sin4(0x7f000001, 8000), sizeof(struct sockaddr_in)), -EADDRINUSE,
       "the name is in the child's table: binding 8000 again is EADDRINUSE");
    S1(SYS_close, t);
    why = round_trip(l6, 8001);
    ok(!why, "[::]:8001 answers 127.0.0.1 (%s)", why ? why : "ok");
    why = round_trip(eph, ephport);
    ok(!why, "the ephemeral listener answers on %d (%s)", ephport, why ? why : "ok");
    int c2 = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    is(S3(SYS_connect, c2, sun("\0srv", 4), 6), 0, "connect @srv");
    int a = (int)S3(SYS_accept, lu, 0, 0);
    ok(a >= 0, "accepted on @srv");
    S1(SYS_close, a);
    S1(SYS_close, c2);
    c2 = (int)S3(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    is(S3(SYS_connect, c2, sun("/tmp/srv.sock", 14), sizeof(struct sockaddr_un)), 0, "connect /tmp/srv.sock");
    a = (int)S3(SYS_accept, lp, 0, 0);
    ok(a >= 0, "accepted on the path");
    S1(SYS_close, a);
    S1(SYS_close, c2);
    int us = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
    is(S6(SYS_sendto, us, gs("dg"), 2, 0, sin4(0x7f000001, 5353), sizeof(struct sockaddr_in)), 2, "sendto :5353");
    uint64_t buf = galloc(NULL, 8);
    is(S6(SYS_recvfrom, ud, buf, 8, MSG_DONTWAIT, 0, 0), 2, "the UDP socket receives it");
    S1(SYS_close, us);
    is(S3(SYS_bind, un, sin4(0x7f000001, 0), sizeof(struct sockaddr_in)), 0, "the unbound socket binds");
    int p = port_of(un);
    ok(p > ephport, "an ephemeral port after the template's (%d > %d): the counter goes on", p, ephport);
    leave(c, tmpl);
  }
  ok(round_trip(l4, 8000) == NULL, "the template's listener still works, its queue untouched by the children");
  free(w.p);

  diag("bad records are refused");
  w = (struct wbuf){0};
  int only = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  (void)only;
  rc = fs_save(sb, &w);
  ok(rc == 0, "saved again");
  /* find the records: each starts with the tag */
  const uint64_t tag = 0x314b434f53464343ull;
  size_t first = 0;
  for (size_t i = 0; i + 8 <= w.n && !first; i++)
    if (!memcmp(w.p + i, &tag, 8))
      first = i;
  ok(first > 0, "a socket record at %zu", first);
  struct {
    const char *what;
    size_t field;
    uint64_t v;
  } bad[] = {{"a bad tag", 0, 1},         {"an unknown family", R_FAMILY, AF_NETLINK},
             {"an unknown type", R_TYPE, 7}, {"a bad protocol", R_PROTO, 99},
             {"an unknown state", R_STATE, 2}, {"unknown flags", R_FLAGS, 16},
             {"a bad so_error", R_SOERR, 1u << 20}};
  for (size_t i = 0; first && i < sizeof bad / sizeof *bad; i++) {
    struct wbuf b = {0};
    w_bytes(&b, w.p, w.n);
    memcpy(b.p + first + 8 * bad[i].field, &bad[i].v, 8);
    struct sb *c = child(&b, &rc);
    ok(rc < 0 && strstr(cf_error(), "bad socket"), "%s: refused (%s)", bad[i].what, rc ? cf_error() : "loaded");
    leave(c, tmpl);
    free(b.p);
  }
  /* the local address: 10.0.0.1 (not the loopback) for a bound socket */
  for (size_t i = 0; first && i < 1; i++) {
    struct wbuf b = {0};
    w_bytes(&b, w.p, w.n);
    uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    memcpy(b.p + first + 8 * R_LOCAL, a, 16);
    struct sb *c = child(&b, &rc);
    ok(rc < 0 && strstr(cf_error(), "bad socket"), "a bound address off the loopback: refused (%s)",
       rc ? cf_error() : "loaded");
    leave(c, tmpl);
    free(b.p);
  }
  for (size_t cut = first + 8; first && cut < first + 200; cut += 64) {
    struct wbuf b = {0};
    w_bytes(&b, w.p, cut);
    struct sb *c = child(&b, &rc);
    ok(rc < 0, "cut at %zu: refused (%s)", cut, rc ? cf_error() : "loaded");
    leave(c, tmpl);
    free(b.p);
  }
  free(w.p);

  diag("what is not carried is refused by name");
  int cc = (int)S3(SYS_socket, AF_INET, SOCK_STREAM, 0);
  is(S3(SYS_connect, cc, sin4(0x7f000001, 8000), sizeof(struct sockaddr_in)), 0, "connect to 8000");
  w = (struct wbuf){0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "listening on 127.0.0.1:8000") &&
         strstr(cf_error(), "accept queue holds 1 connection"),
     "a listener with a connection waiting: %s", cf_error());
  free(w.p);
  int ac = (int)S3(SYS_accept4, l4, 0, 0);
  ok(ac >= 0, "accepted");
  w = (struct wbuf){0};
  char want[64];
  snprintf(want, sizeof want, "fd %d is a socket (AF_INET stream socket, connected", cc < ac ? cc : ac);
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), want) && strstr(cf_error(), "connected sockets are not carried"),
     "a connected socket: %s", cf_error());
  free(w.p);
  S1(SYS_close, cc);
  S1(SYS_close, ac);
  uint64_t sv = galloc(NULL, 8);
  is(S4(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, sv), 0, "socketpair");
  w = (struct wbuf){0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "from socketpair") && strstr(cf_error(), "a connected pair"),
     "a socketpair: %s", cf_error());
  free(w.p);
  int sp[2];
  memcpy(sp, hp(sv), 8);
  S1(SYS_close, sp[0]);
  S1(SYS_close, sp[1]);
  int us = (int)S3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  is(S6(SYS_sendto, us, gs("x"), 1, 0, sin4(0x7f000001, 5353), sizeof(struct sockaddr_in)), 1, "a datagram to :5353");
  w = (struct wbuf){0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "datagram socket, bound on 127.0.0.1:5353") &&
         strstr(cf_error(), "datagrams wait"),
     "a datagram waiting: %s", cf_error());
  free(w.p);
  uint64_t buf = galloc(NULL, 8);
  is(S6(SYS_recvfrom, ud, buf, 8, MSG_DONTWAIT, 0, 0), 1, "received");
  w = (struct wbuf){0};
  ok(fs_save(sb, &w) == 0, "then it saves: %s", cf_error());
  free(w.p);
  shim_teardown();
  return done_testing();
}
