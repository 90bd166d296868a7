/* Sockets: AF_UNIX, AF_INET and AF_INET6 on a loopback of the sandbox's
 * own, served in the shim with no host name at all (`--net none`).
 *
 * The mechanism (docs/architecture.md "Network" says why): the bytes of a
 * connection travel through a host AF_UNIX socketpair, and every name
 * (127.0.0.1:8000, ::1 ports, UDP ports, AF_UNIX abstract names and socket
 * files) lives in a table of the sandbox's own (struct net, one per
 * sandbox: its first process's, shared by all its processes). No host
 * socket is ever bound or connected to a name, so one sandbox cannot reach
 * another's ports or the host's, and two sandboxes both bind
 * 127.0.0.1:8000: isolation is structural, and making a sandbox or forking
 * one costs nothing (there is no namespace or stack to make).
 *
 * A socket is an F_HOST file (reads, writes, poll, select and epoll use its
 * host fd as for a pipe) with a struct sock (f->sock) saying what it is.
 * Its host fd is, by state:
 *  - stream or seqpacket, not connected (new, bound): an unconnected host
 *    AF_UNIX socket of the same type, whose readiness (POLLOUT|POLLHUP) is
 *    Linux's for such a socket;
 *  - listening: the read end of a host pipe holding one byte per
 *    connection waiting in its accept queue (readable = accept would not
 *    block; a pipe reports no POLLOUT, as a listener);
 *  - connected (connect, accept, socketpair): one end of a host socketpair
 *    of that type. connect() finds the listener by name, makes the pair,
 *    puts one end in place of its host fd (dup3 onto the same number, so a
 *    wait on it in another thread stays valid) and queues the other with
 *    the addresses for accept. So a listener made in one process accepts
 *    the connections of another (they share the host fd table);
 *  - datagram (UDP, AF_UNIX dgram not from socketpair): the receiving end
 *    of a host SOCK_DGRAM socketpair, its inbox; a sender writes into the
 *    inbox's other end a struct dhdr (its own address) then the data, so
 *    recvfrom gives the source address.
 * Reads and writes of a socket come here from fs.c (net_rw, net_iov) so
 * that timeouts, the datagram header and the errors of a socket that is
 * not connected are Linux's.
 *
 * Addresses (`--net none`): 127.0.0.0/8 and ::1 (and 0.0.0.0, ::, which
 * mean them to connect) are the sandbox's loopback; connecting or sending
 * anywhere else is ENETUNREACH and binding another address EADDRNOTAVAIL,
 * as Linux in a network namespace where only lo is up. With a policy
 * (cf_sandbox_opts.net, --net; lib/netpolicy.c), a connect or sendto to a
 * destination it allows gives the socket a host AF_INET/AF_INET6 socket of
 * its own (ext_make: dup3'd onto its host fd; ext connects, sends and
 * receives there, the host kernel does the rest); loopback stays the
 * sandbox's own unless a rule names a loopback address (then that
 * destination is the host's). cf_sandbox_net_accept queues a connection
 * from outside (the daemon's forwarded ports) on a listener. Other families are
 * EAFNOSUPPORT: glibc's getaddrinfo then assumes both IPv4 and IPv6
 * (check_pf) and reads the root's /etc/hosts.
 *
 * SCM_RIGHTS passes open files between the sandbox's processes: the files
 * are kept in a ticket (struct ticket) and the host message carries the
 * read end of a fresh host pipe that names it (by inode); recvmsg installs
 * the files in the receiver's fd table and gives their new numbers. A
 * ticket whose message is never received goes when its pipe has no reader
 * left (the host dropped the message: ticket_gc). The same ticket carries
 * a message's credentials (SCM_CREDENTIALS, SO_PASSCRED): the sandbox pid,
 * uid and gid of the sender, which the host kernel cannot know (it would
 * attach the cowfork process's own); a ticket ends a host stream read, so
 * messages of two senders are not read as one, as Linux.
 *
 * The two ends of a local stream connection share a struct link (their
 * sockets, FIN and reset flags): a TCP close with bytes unread or
 * SO_LINGER {1, 0} resets the peer (rst_sync: ECONNRESET once, then the
 * end), and net_poll makes a TCP socket's readiness Linux's tcp_poll from
 * its host pair's (which says POLLHUP when the other end closes). A
 * non-blocking TCP connect to a full accept queue waits in the listener's
 * syn_q (EINPROGRESS; its host fd a pipe that polls nothing) until an
 * accept makes room or the listener goes (syn_run).
 *
 * Options: those that change nothing on a local pair are stored and given
 * back (SO_KEEPALIVE, TCP_NODELAY, IP_TOS...); SO_RCVTIMEO and SO_SNDTIMEO
 * bound the blocking calls; SO_REUSEADDR/SO_REUSEPORT and IPV6_V6ONLY
 * change what bind accepts; the others are ENOPROTOOPT.
 *
 * Snapshots (fs_save, fs_load call net_save_check, net_save, net_load): a
 * template carries listeners whose accept queue is empty, stream sockets
 * not connected (new, bound) and datagram sockets (not socketpair's) whose
 * inbox is empty: each as a record after its file table entry (what it is,
 * its names, options, credentials, the table's counters), rebuilt in each
 * child with new host objects (a pipe per listener, a socket or an inbox)
 * and its name in the child's own table: O(sockets), a pipe or a
 * socketpair each. A connected socket is not carried (both ends and the
 * bytes in flight would have to be rebuilt): the save refuses, naming the
 * fd (net_describe), as for a listener with connections waiting or an
 * inbox holding datagrams. A socket file (a path name) is a node of the
 * tree, saved with the tree (an unlinked one with its socket); one whose
 * socket was closed has no listener after a load, as after a reboot.
 *
 * Waits follow the threads' shape (timer.c): try, then sig_poll on the host
 * fd with the lock released, then try again. */
#include <errno.h>
#include <fcntl.h>
#include <linux/net_tstamp.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/netpolicy.h"
#include "internal.h"
#include "shim/shim.h"

#define MAX_IO (1ull << 30)
#define EPHEMERAL_LO 32768 /* Linux's ip_local_port_range */
#define EPHEMERAL_HI 60999
#define MAX_TICKETS 1024
#define UDP_MAX 65507 /* the largest UDP payload over IPv4 */
#ifndef UDPLITE_SEND_CSCOV
#define UDPLITE_SEND_CSCOV 10 /* (linux/udp.h) */
#define UDPLITE_RECV_CSCOV 11
#endif
#define CTL_MAX 20480 /* Linux's optmem_max: a larger control buffer is ENOBUFS */

enum { SS_NEW, SS_LISTEN, SS_CONNECTED };

/* An INET endpoint: the address as IPv6 (IPv4 as ::ffff:a.b.c.d), the port. */
struct ep {
  uint8_t a[16];
  uint16_t port; /* host order */
};

/* An AF_UNIX name: the sockaddr_un bytes after the family (len of them; 0:
 * unnamed); a path name's node once bound. */
struct uname {
  socklen_t len;    /* a path's counts its NUL, as Linux's */
  char name[109];
};

/* A connection waiting in a listener's queue: the accepting side's end and
 * its addresses. */
struct pend {
  int fd;
  struct ep local, peer;
  struct uname upeer;
  struct ucred cred;
  struct link *link;
};

/* What the two ends of a local stream connection know of each other (the
 * connector is end 0, the accepted socket end 1; each holds a reference):
 * its sockets (NULL: not accepted yet, or closed: a sender's credentials
 * go to such a peer if its listener has SO_PASSCRED), whether each end shut down
 * writing (its FIN went) and whether a reset came to it (the other end
 * closed abortively: SO_LINGER {1, 0} or bytes left unread, TCP). */
struct link {
  int refs;
  struct sock *end[2];
  bool fin[2], rst[2];
  bool lpasscred; /* the listener had SO_PASSCRED at connect (its accepted socket will) */
};

/* Stored options (getsockopt gives them back; what they do is in the note). */
struct opts {
  int reuseaddr, reuseport, keepalive, broadcast, oobinline, priority, rcvlowat, passcred;
  int sndbuf, rcvbuf;
  struct linger linger;
  uint64_t rcvtimeo, sndtimeo; /* ns, 0 none */
  int nodelay, keepidle, keepintvl, keepcnt, cork, quickack, maxseg, user_timeout, defer_accept, fastopen, tcp_syncnt;
  int tos, ttl, recverr, v6only, hops, tclass, recverr6, ip_mtu_discover, ip_freebind, ip_pktinfo;
  int cscov_send, cscov_recv; /* UDP-Lite's checksum coverage (UDPLITE_SEND_CSCOV, _RECV_CSCOV) */
};

struct sock {
  struct file *file;   /* its open file (one each) */
  struct net *net;     /* the names it is in (bound) or may look up: held */
  int family, type, proto;
  int state;
  bool bound;          /* it has a name in net (INET: a port; AF_UNIX: un) */
  bool pair;           /* socketpair's: connected, no names, no inbox framing */
  bool connecting;     /* a non-blocking INET connect said EINPROGRESS: the next connect says 0 */
  bool dconnected;     /* a datagram socket with a default destination (peer/upeer) */
  bool shut_rd, shut_wr;
  bool reset;          /* TCP: the connection was reset (a send to a closed peer, or the peer's abortive close) */
  int reset_err;       /* and the error it left: EPIPE or ECONNRESET, given once (SO_ERROR, send, recv) */
  struct link *link;   /* a local stream connection's (NULL: none) */
  int side;            /* its end of link */
  bool ext;            /* its host fd is a host AF_INET/AF_INET6 socket (the policy's outside) */
  int so_error;
  struct ep local, peer;
  struct uname un, upeer;
  struct tnode *node;  /* AF_UNIX bound to a path: its socket file */
  struct ucred cred, peercred;
  /* listening */
  struct pend *q;
  int nq, capq, backlog;
  struct sock **syn_q; /* TCP connects waiting for room in the queue (syn_wait) */
  int nsyn, capsyn;
  struct sock *syn_l;  /* the listener whose syn_q s waits in (its notify_wr: its host pipe's write end) */
  int notify_wr;       /* the pipe's write end (the read end is the file's host fd) */
  /* datagram: the inbox's sending end (the receiving one is the host fd) */
  int inbox_tx;
  struct opts o;
};

/* What a datagram carries before its data in an inbox: its source. */
struct dhdr {
  uint32_t family;
  uint32_t len;     /* AF_UNIX: the name's length */
  struct ep ep;
  struct uname un;
};

struct ticket {
  uint64_t ino;     /* of the pipe whose read end the host message carries */
  int wr;           /* its write end: POLLERR once no reader is left (ticket_gc) */
  struct file **files;
  int n;
  bool has_cred;    /* the message's credentials (SCM_CREDENTIALS, SO_PASSCRED) */
  struct ucred cred;
};

struct net {
  int refs;
  struct sock **socks; /* the bound ones */
  int n, cap;
  uint16_t next_port;
  uint16_t fwd_port;   /* the peer port a forwarded connection shows */
  unsigned next_auto;  /* AF_UNIX autobind names */
  struct ticket *tickets;
  int nt, capt;
};

/* ---- the table ---- */

static struct net *net_get(struct sb *sb)
{
  struct sb *r = proc_first(sb);
  if (!r->net) {
    if (!(r->net = calloc(1, sizeof *r->net)))
      return NULL;
    r->net->refs = 1;
    r->net->next_port = EPHEMERAL_LO;
  }
  return r->net;
}

static void ticket_drop(struct net *n, int i)
{
  struct ticket *t = &n->tickets[i];
  close(t->wr);
  for (int k = 0; k < t->n; k++)
    file_unref(t->files[k]);
  free(t->files);
  n->tickets[i] = n->tickets[--n->nt];
}

static void net_unref(struct net *n)
{
  if (!n || --n->refs > 0)
    return;
  while (n->nt)
    ticket_drop(n, n->nt - 1);
  free(n->tickets);
  free(n->socks);
  free(n);
}

void net_fini(struct sb *sb)
{
  struct net *n = sb->net;
  if (!n || !proc_is_first(sb))
    return;
  sb->net = NULL;
  n->refs++;
  while (n->nt) /* their files may hold names: dropped while the table is alive */
    ticket_drop(n, n->nt - 1);
  n->refs--;
  net_unref(n);
}

static int name_add(struct net *n, struct sock *s)
{
  if (n->n == n->cap) {
    int c = n->cap ? 2 * n->cap : 16;
    struct sock **p = realloc(n->socks, (size_t)c * sizeof *p);
    if (!p)
      return -ENOMEM;
    n->socks = p;
    n->cap = c;
  }
  n->socks[n->n++] = s;
  s->bound = true;
  return 0;
}

static void name_del(struct net *n, struct sock *s)
{
  for (int i = 0; i < n->n; i++)
    if (n->socks[i] == s) {
      n->socks[i] = n->socks[--n->n];
      break;
    }
  s->bound = false;
}

static bool is_inet(const struct sock *s) { return s->family == AF_INET || s->family == AF_INET6; }
static bool is_stream(const struct sock *s) { return s->type == SOCK_STREAM || s->type == SOCK_SEQPACKET; }

static bool mapped(const uint8_t *a)
{
  static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return !memcmp(a, pre, 12);
}
static bool v4_any(const uint8_t *a) { return mapped(a) && !a[12] && !a[13] && !a[14] && !a[15]; }
static bool v4_loop(const uint8_t *a) { return mapped(a) && a[12] == 127; }
static bool v6_any(const uint8_t *a)
{
  static const uint8_t z[16];
  return !memcmp(a, z, 16);
}
static bool v6_loop(const uint8_t *a)
{
  static const uint8_t l[16] = {[15] = 1};
  return !memcmp(a, l, 16);
}
static bool wild(const uint8_t *a) { return v4_any(a) || v6_any(a); }

/* Whether bound socket b receives what is sent to address d (d a loopback
 * address, or the other's wildcard in a bind check). */
static bool covers(const struct sock *b, const uint8_t *d)
{
  if (!memcmp(b->local.a, d, 16))
    return true;
  if (v4_any(b->local.a))
    return mapped(d);
  if (v6_any(b->local.a))
    return !mapped(d) || !b->o.v6only;
  return false;
}

/* TCP, UDP or UDP-Lite: each has ports of its own (as Linux's tables). */
static int proto_of(const struct sock *s) { return s->proto; }

/* Whether INET socket s may take e's port too (same protocol and port). */
static bool may_share(const struct sock *e, const struct sock *s, bool listening)
{
  if (!covers(e, s->local.a) && !covers(s, e->local.a))
    return true;
  if (e->o.reuseport && s->o.reuseport)
    return true;
  return e->o.reuseaddr && s->o.reuseaddr && (s->type == SOCK_DGRAM || (!listening && e->state != SS_LISTEN));
}

static bool port_free(struct net *n, const struct sock *s, uint16_t port, bool listening)
{
  for (int i = 0; i < n->n; i++) {
    struct sock *e = n->socks[i];
    if (e == s || !is_inet(e) || proto_of(e) != proto_of(s) || e->local.port != port)
      continue;
    if (listening && e->state != SS_LISTEN)
      continue;
    struct sock t = *s;
    t.local.port = port;
    if (!may_share(e, &t, listening))
      return false;
  }
  return true;
}

static long inet_bind_port(struct net *n, struct sock *s, uint16_t port)
{
  if (port) {
    if (!port_free(n, s, port, false))
      return -EADDRINUSE;
  } else {
    for (int k = 0;; k++) {
      if (k > EPHEMERAL_HI - EPHEMERAL_LO)
        return -EADDRINUSE;
      port = n->next_port++;
      if (n->next_port > EPHEMERAL_HI)
        n->next_port = EPHEMERAL_LO;
      bool used = false;
      for (int i = 0; i < n->n && !used; i++)
        used = is_inet(n->socks[i]) && proto_of(n->socks[i]) == proto_of(s) && n->socks[i]->local.port == port;
      if (!used)
        break;
    }
  }
  s->local.port = port;
  return name_add(n, s);
}

/* The INET socket of protocol proto bound to d:port that receives (a
 * listener for TCP), exact address first. */
static struct sock *inet_find(struct net *n, int proto, const uint8_t *d, uint16_t port)
{
  struct sock *w = NULL;
  for (int i = 0; i < n->n; i++) {
    struct sock *e = n->socks[i];
    if (!is_inet(e) || e->proto != proto || e->local.port != port || (proto == IPPROTO_TCP && e->state != SS_LISTEN))
      continue;
    if (e->family == AF_INET && !mapped(d))
      continue;
    if (!memcmp(e->local.a, d, 16))
      return e;
    if (!w && covers(e, d))
      w = e;
  }
  return w;
}

/* ---- addresses ---- */

static void ep_v4(struct ep *e, uint32_t be_addr, uint16_t port)
{
  memset(e->a, 0, 10);
  e->a[10] = e->a[11] = 0xff;
  memcpy(e->a + 12, &be_addr, 4);
  e->port = port;
}

/* A guest INET address for socket s into e: 0, -EINVAL (short),
 * -EAFNOSUPPORT (another family). AF_UNSPEC: *unspec. */
static long ep_in(struct sb *sb, const struct sock *s, uint64_t addr, uint64_t len, struct ep *e, bool *unspec)
{
  union {
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    sa_family_t fam;
  } u;
  memset(&u, 0, sizeof u);
  if (len > sizeof(struct sockaddr_storage))
    return -EINVAL;
  if (len < sizeof(sa_family_t))
    return -EINVAL;
  if (mm_copy_in(sb, &u, addr, len < sizeof u ? len : sizeof u) < 0)
    return -EFAULT;
  if (unspec)
    *unspec = false;
  if (u.fam == AF_UNSPEC && unspec) {
    *unspec = true;
    return 0;
  }
  if (s->family == AF_INET) {
    if (len < sizeof(struct sockaddr_in))
      return -EINVAL;
    if (u.fam != AF_INET)
      return -EAFNOSUPPORT;
    ep_v4(e, u.in.sin_addr.s_addr, ntohs(u.in.sin_port));
    return 0;
  }
  if (len < 24) /* SIN6_LEN_RFC2133 */
    return -EINVAL;
  if (u.fam != AF_INET6)
    return -EAFNOSUPPORT;
  memcpy(e->a, &u.in6.sin6_addr, 16);
  e->port = ntohs(u.in6.sin6_port);
  return 0;
}

/* Copy a socket address out as Linux's move_addr_to_user: at most *lenp
 * bytes of it, *lenp the whole length. */
static long addr_out(struct sb *sb, uint64_t addr, uint64_t lenp, const void *sa, socklen_t len)
{
  if (!addr || !lenp)
    return 0;
  int ul;
  if (mm_copy_in(sb, &ul, lenp, sizeof ul) < 0)
    return -EFAULT;
  if (ul < 0)
    return -EINVAL;
  if (mm_copy_out(sb, addr, sa, (socklen_t)ul < len ? (socklen_t)ul : len) < 0 ||
      mm_copy_out(sb, lenp, &len, sizeof len) < 0)
    return -EFAULT;
  return 0;
}

/* The sockaddr of endpoint e as socket family fam gives it. */
static socklen_t ep_sa(int fam, const struct ep *e, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof *ss);
  if (fam == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(e->port);
    memcpy(&in->sin_addr, e->a + 12, 4);
    return sizeof *in;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(e->port);
  memcpy(&in6->sin6_addr, e->a, 16);
  return sizeof *in6;
}

static socklen_t un_sa(const struct uname *u, struct sockaddr_storage *ss)
{
  memset(ss, 0, sizeof *ss);
  struct sockaddr_un *un = (struct sockaddr_un *)ss;
  un->sun_family = AF_UNIX;
  memcpy((char *)ss + offsetof(struct sockaddr_un, sun_path), u->name, u->len); /* (up to 109 bytes: in ss) */
  return (socklen_t)(sizeof(sa_family_t) + u->len);
}

static socklen_t sock_name(const struct sock *s, bool peer, struct sockaddr_storage *ss)
{
  if (is_inet(s))
    return ep_sa(s->family, peer ? &s->peer : &s->local, ss);
  return un_sa(peer ? &s->upeer : &s->un, ss);
}

/* A guest AF_UNIX address into u: 0, -EINVAL. */
static long un_in(struct sb *sb, uint64_t addr, uint64_t len, struct uname *u)
{
  struct sockaddr_un sa;
  if (len < sizeof(sa_family_t) || len > sizeof sa)
    return -EINVAL;
  memset(&sa, 0, sizeof sa);
  if (mm_copy_in(sb, &sa, addr, len) < 0)
    return -EFAULT;
  if (sa.sun_family != AF_UNIX)
    return -EINVAL;
  u->len = (socklen_t)(len - sizeof(sa_family_t));
  memcpy(u->name, sa.sun_path, u->len);
  if (u->len && u->name[0]) { /* a path: up to its NUL, counted, as Linux's unix_mkname_bsd */
    u->len = (socklen_t)strnlen(u->name, u->len);
    u->name[u->len] = 0;
    u->len++;
  }
  return 0;
}

/* The AF_UNIX socket bound to u (of any type; NULL: none), or an error:
 * a path that is no socket file, or none (ENOENT...). */
static long un_find(struct sb *sb, struct net *n, const struct uname *u, struct sock **out)
{
  *out = NULL;
  struct tnode *node = NULL;
  if (u->name[0]) {
    char path[110];
    memcpy(path, u->name, u->len);
    path[u->len] = 0;
    long r = fs_sock_lookup(sb, path, &node);
    if (r < 0)
      return r;
    if (!node)
      return -ECONNREFUSED;
  }
  for (int i = 0; i < n->n; i++) {
    struct sock *e = n->socks[i];
    if (e->family != AF_UNIX)
      continue;
    if (node ? e->node == node : (!e->node && e->un.len == u->len && !memcmp(e->un.name, u->name, u->len))) {
      *out = e;
      return 0;
    }
  }
  return -ECONNREFUSED;
}

/* ---- sockets ---- */

/* MSG_OOB (oob_note): a stream socket's urgent byte is its host socket's.
 * A local connection's host AF_UNIX pair has TCP's semantics for it (Linux's
 * AF_UNIX MSG_OOB: the last byte of a send is urgent, read apart with
 * MSG_OOB unless SO_OOBINLINE, SIOCATMARK at it, POLLPRI), so sends,
 * receives and SIOCATMARK pass it on and SO_OOBINLINE is set on the host
 * socket (after each change of host fd). Not served: SIGURG (the host
 * kernel would signal the F_SETOWN owner of the host socket: none). */
static void oob_inline(struct file *f, struct sock *s)
{
  if (s->type == SOCK_STREAM && !s->ext && s->state != SS_LISTEN)
    setsockopt(f->hostfd, SOL_SOCKET, SO_OOBINLINE, &s->o.oobinline, sizeof s->o.oobinline);
}

static struct link *link_new(void)
{
  struct link *k = calloc(1, sizeof *k);
  if (k)
    k->refs = 2; /* the two ends' */
  return k;
}

static void link_unref(struct link *k)
{
  if (k && --k->refs == 0)
    free(k);
}

/* Whether TCP socket s (local, connected) closes abortively, as Linux's
 * tcp_close: SO_LINGER {1, 0}, or bytes received and not read. */
static bool closes_abortively(struct file *f, struct sock *s)
{
  if (s->o.linger.l_onoff && !s->o.linger.l_linger)
    return true;
  int n = 0;
  return ioctl(f->hostfd, SIOCINQ, &n) == 0 && n > 0;
}

/* End side of a link goes (its socket closed, or a queued connection
 * dropped): with a reset for the other end if rst. */
static void link_leave(struct link *k, int side, bool rst)
{
  if (!k)
    return;
  k->end[side] = NULL;
  if (rst)
    k->rst[!side] = true;
  link_unref(k);
}

/* A connection not accepted yet goes with its listener (closed, or shut
 * down): Linux resets it (inet_csk_listen_stop: the connector reads
 * ECONNRESET; an AF_UNIX connector reads the end). */
static void pend_close(struct sock *l, struct pend *p)
{
  close(p->fd);
  link_leave(p->link, 1, is_inet(l));
}

static void syn_run(struct sb *sb, struct sock *l, bool fail);
static void syn_leave(struct sock *s);

/* A reset that came to s (its peer closed abortively) takes effect: the
 * error once (ECONNRESET; EPIPE after the peer's FIN, Linux's CLOSE_WAIT),
 * then the end: reads 0, sends EPIPE, poll POLLHUP, getpeername ENOTCONN. */
static void rst_sync(struct sock *s)
{
  if (s->link && s->link->rst[s->side] && !s->reset) {
    s->reset = true;
    s->reset_err = s->link->fin[!s->side] ? EPIPE : ECONNRESET;
  }
}

/* The file's last reference went (fs.c file_unref): its names, queue and
 * extra host fds. */
void net_release(struct file *f)
{
  struct sock *s = f->sock;
  if (!s)
    return;
  if (s->bound && s->net)
    name_del(s->net, s);
  if (s->link)
    link_leave(s->link, s->side, is_inet(s) && !s->reset && closes_abortively(f, s));
  for (int i = 0; i < s->nq; i++)
    pend_close(s, &s->q[i]);
  free(s->q);
  syn_leave(s);
  if (s->nsyn)
    syn_run(NULL, s, true);
  free(s->syn_q);
  if (s->notify_wr >= 0)
    close(s->notify_wr);
  if (s->inbox_tx >= 0)
    close(s->inbox_tx);
  if (s->node)
    tmp_unref(s->node);
  net_unref(s->net);
  free(s);
  f->sock = NULL;
}

static struct sock *sock_new(struct sb *sb, int family, int type, int proto)
{
  struct sock *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->family = family;
  s->type = type;
  s->proto = proto;
  s->notify_wr = s->inbox_tx = -1;
  s->local.port = 0;
  if (family == AF_INET)
    ep_v4(&s->local, 0, 0);
  s->o.sndbuf = 212992;
  s->o.rcvbuf = 212992;
  s->o.ttl = 64;
  s->o.hops = 64;
  s->o.maxseg = 536;
  s->o.keepidle = 7200;
  s->o.keepintvl = 75;
  s->o.keepcnt = 9;
  s->o.tcp_syncnt = 6;
  s->o.rcvlowat = 1;
  s->cred = (struct ucred){.pid = sb->pid, .uid = (uid_t)sb->uid, .gid = (gid_t)sb->gid};
  return s;
}

/* A new socket file around host fd h (taken): 0 and *out or -errno. */
static long sock_file(struct sb *sb, struct sock *s, int h, int nb, struct file **out)
{
  struct file *f = file_new(F_HOST, h, O_RDWR | nb, "socket:");
  if (!f) {
    close(h);
    if (s->notify_wr >= 0)
      close(s->notify_wr);
    if (s->inbox_tx >= 0)
      close(s->inbox_tx);
    free(s);
    return -ENOMEM;
  }
  f->sock = s;
  s->file = f;
  struct net *n = net_get(sb);
  if (!n) {
    file_unref(f);
    return -ENOMEM;
  }
  n->refs++;
  s->net = n;
  *out = f;
  return 0;
}

static int host_type(const struct sock *s) { return s->type == SOCK_SEQPACKET ? SOCK_SEQPACKET : s->type; }

/* socket, socketpair */
long sys_socket(struct sb *sb, const uint64_t a[6], long nr)
{
  int family = (int)A(0), type = (int)A(1) & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), proto = (int)A(2);
  if (A(1) & ~(uint64_t)(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC))
    return -EINVAL;
  if (family != AF_UNIX && family != AF_INET && family != AF_INET6)
    return -EAFNOSUPPORT; /* (AF_NETLINK too: glibc's check_pf then assumes IPv4 and IPv6) */
  if (type == SOCK_RAW && family != AF_UNIX)
    return -EPERM; /* as Linux without CAP_NET_RAW */
  if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
    return -ESOCKTNOSUPPORT;
  if (family == AF_UNIX) {
    if (proto != 0 && proto != PF_UNIX)
      return -EPROTONOSUPPORT;
  } else {
    if (type == SOCK_SEQPACKET)
      return -ESOCKTNOSUPPORT; /* no SCTP */
    int want = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    if (proto != 0 && proto != want && !(type == SOCK_DGRAM && proto == IPPROTO_UDPLITE))
      return -EPROTONOSUPPORT;
    if (proto != IPPROTO_UDPLITE)
      proto = want;
  }
  int nb = A(1) & SOCK_NONBLOCK ? O_NONBLOCK : 0;
  bool ce = A(1) & SOCK_CLOEXEC;
  if (nr == SYS_socketpair) {
    if (family != AF_UNIX)
      return -EOPNOTSUPP; /* as Linux: IP sockets come in no pairs */
    int p[2];
    if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0)
      return -errno;
    struct sock *s0 = sock_new(sb, family, type, proto), *s1 = sock_new(sb, family, type, proto);
    struct file *f0 = NULL, *f1 = NULL;
    long r = -ENOMEM;
    if (!s0 || !s1) {
      free(s0);
      free(s1);
      close(p[0]);
      close(p[1]);
      return -ENOMEM;
    }
    if ((r = sock_file(sb, s0, p[0], nb, &f0)) < 0) {
      free(s1);
      close(p[1]);
      return r;
    }
    if ((r = sock_file(sb, s1, p[1], nb, &f1)) < 0) {
      file_unref(f0);
      return r;
    }
    s0->pair = s1->pair = true;
    s0->state = s1->state = SS_CONNECTED;
    if ((s0->link = link_new())) { /* (for the credentials: without one, each message carries them) */
      s1->link = s0->link;
      s1->side = 1;
      s0->link->end[0] = s0;
      s0->link->end[1] = s1;
    }
    s0->peercred = s1->cred;
    s1->peercred = s0->cred;
    int g[2] = {fd_install(sb, f0, 0, ce), -1};
    if (g[0] >= 0)
      g[1] = fd_install(sb, f1, 0, ce);
    if (g[1] < 0 || mm_copy_out(sb, A(3), g, sizeof g) < 0) {
      if (g[0] >= 0)
        sb->fds[g[0]] = NULL;
      if (g[1] >= 0)
        sb->fds[g[1]] = NULL;
      file_unref(f0);
      file_unref(f1);
      return g[1] < 0 && g[0] >= 0 ? g[1] : g[0] < 0 ? g[0] : -EFAULT;
    }
    return 0;
  }
  struct sock *s = sock_new(sb, family, type, proto);
  if (!s)
    return -ENOMEM;
  int h, p[2];
  if (type == SOCK_DGRAM) {
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0) {
      free(s);
      return -errno;
    }
    h = p[0];
    s->inbox_tx = p[1];
    shutdown(p[1], SHUT_RD); /* the inbox's sender reads nothing */
  } else if ((h = socket(AF_UNIX, host_type(s) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
    free(s);
    return -errno;
  }
  struct file *f;
  long r = sock_file(sb, s, h, nb, &f);
  if (r < 0)
    return r;
  int fd = fd_install(sb, f, 0, ce);
  if (fd < 0)
    file_unref(f);
  return fd;
}

/* Run op on the call's socket (fd a[0]) with its file held: a call may
 * wait with the lock released, and another thread may close the fd
 * meanwhile. -EBADF, -ENOTSOCK. */
static long sock_call(struct sb *sb, const uint64_t a[6], long nr,
                      long (*op)(struct sb *, struct file *, const uint64_t *, long))
{
  struct file *f = fs_get(sb, (int)A(0));
  if (!f)
    return -EBADF;
  if (!f->sock)
    return -ENOTSOCK;
  f->refs++;
  long r = op(sb, f, a, nr);
  file_unref(f);
  return r;
}

/* Deadline of a wait with timeout ns (0: none). */
static uint64_t deadline_of(uint64_t ns) { return ns ? mono_ns() + ns : 0; }

/* Wait until host fd is ready for ev, the deadline passes (-EAGAIN, as
 * Linux's SO_RCVTIMEO) or a signal comes (-RESTARTSYS; -EINTR with a
 * timeout, as Linux's sock_intr_errno). 0: try again. */
static long sk_wait(struct sb *sb, int fd, short ev, uint64_t deadline)
{
  struct pollfd pf = {.fd = fd, .events = ev};
  int ms = -1;
  if (deadline) {
    uint64_t now = mono_ns();
    if (now >= deadline)
      return -EAGAIN;
    ms = (int)((deadline - now + 999999) / 1000000);
  }
  long r = sig_poll(sb, &pf, 1, ms);
  if (r == -EINTR)
    return deadline ? -EINTR : -RESTARTSYS;
  if (r < 0 && r != -EAGAIN)
    return r;
  return 0;
}

/* ---- bind, listen, connect, accept ---- */

static long do_bind(struct sb *sb, struct sock *s, uint64_t addr, uint64_t len)
{
  struct net *n = s->net;
  if (s->pair)
    return -EINVAL;
  if (is_inet(s)) {
    struct ep e;
    long r = ep_in(sb, s, addr, len, &e, NULL);
    if (r == -EAFNOSUPPORT && s->family == AF_INET) { /* Linux takes AF_UNSPEC with INADDR_ANY */
      struct sockaddr_in in;
      if (mm_copy_in(sb, &in, addr, sizeof in) == 0 && in.sin_family == AF_UNSPEC && !in.sin_addr.s_addr) {
        ep_v4(&e, 0, ntohs(in.sin_port));
        r = 0;
      }
    }
    if (r < 0)
      return r;
    if (s->bound)
      return -EINVAL;
    if (s->family == AF_INET6 && mapped(e.a) && s->o.v6only)
      return -EINVAL;
    if (!v4_any(e.a) && !v4_loop(e.a) && !v6_any(e.a) && !v6_loop(e.a))
      return -EADDRNOTAVAIL;
    struct ep old = s->local;
    memcpy(s->local.a, e.a, 16);
    long b = inet_bind_port(n, s, e.port);
    if (b < 0)
      s->local = old;
    return b;
  }
  struct uname u;
  long r = un_in(sb, addr, len, &u);
  if (r < 0)
    return r;
  if (s->bound)
    return -EINVAL;
  if (u.len == 0) { /* autobind: an abstract name of 5 hex digits, as Linux */
    for (int k = 0; k < 0x100000; k++) {
      u.len = 6;
      u.name[0] = 0;
      snprintf(u.name + 1, sizeof u.name - 1, "%05x", n->next_auto++ & 0xfffff);
      struct sock *o;
      un_find(sb, n, &u, &o);
      if (!o)
        break;
    }
  } else if (u.name[0]) {
    char path[110];
    memcpy(path, u.name, u.len);
    path[u.len] = 0;
    struct tnode *node;
    if ((r = fs_sock_bind(sb, path, &node)) < 0)
      return r == -EEXIST ? -EADDRINUSE : r;
    s->node = node;
  } else {
    struct sock *o;
    un_find(sb, n, &u, &o);
    if (o)
      return -EADDRINUSE;
  }
  s->un = u;
  if ((r = name_add(n, s)) < 0) {
    if (s->node)
      tmp_unref(s->node);
    s->node = NULL;
    s->un.len = 0;
  }
  return r;
}

/* An INET socket with no port gets an ephemeral one (connect, sendto,
 * listen), on the address it goes out from. */
static long autobind(struct sock *s, const uint8_t *dst)
{
  if (s->bound) {
    if (dst && wild(s->local.a)) { /* bound to a wildcard: now the address it goes out from */
      if (mapped(dst))
        ep_v4(&s->local, htonl(0x7f000001), s->local.port);
      else
        memcpy(s->local.a, dst, 16);
    }
    return 0;
  }
  if (dst) {
    if (mapped(dst))
      ep_v4(&s->local, htonl(0x7f000001), 0);
    else
      memcpy(s->local.a, dst, 16);
  }
  return inet_bind_port(s->net, s, 0);
}

/* f's host fd becomes the read end of a new pipe (what polls: a listener's
 * queue, a waiting connect's wake-up); the write end, or -errno. */
static int notify_pipe(struct file *f)
{
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
    return -errno;
  if (dup3(p[0], f->hostfd, O_CLOEXEC) < 0) {
    int r = -errno;
    close(p[0]);
    close(p[1]);
    return r;
  }
  close(p[0]);
  return p[1];
}

static long do_listen(struct sb *sb, struct file *f, struct sock *s, int backlog)
{
  if (!is_stream(s) || s->pair)
    return -EOPNOTSUPP;
  if (s->state == SS_CONNECTED)
    return -EINVAL;
  if (backlog < 0 || backlog > 4096)
    backlog = 4096;
  if (s->state == SS_LISTEN) {
    s->backlog = backlog;
    return 0;
  }
  long r;
  if (s->family == AF_UNIX && !s->bound)
    return -EINVAL;
  if (is_inet(s)) {
    if (!s->bound && (r = autobind(s, NULL)) < 0)
      return r;
    if (!port_free(s->net, s, s->local.port, true))
      return -EADDRINUSE;
  }
  int wr = notify_pipe(f);
  if (wr < 0)
    return wr;
  if (s->notify_wr >= 0) /* a listener shut down before (sys_shutdown) */
    close(s->notify_wr);
  s->notify_wr = wr;
  s->state = SS_LISTEN;
  s->backlog = backlog;
  s->cred = (struct ucred){.pid = sb->pid, .uid = (uid_t)sb->uid, .gid = (gid_t)sb->gid};
  return 0;
}

static const struct cf_net_policy *policy(struct sb *sb) { return sb->opts ? sb->opts->net : NULL; }

/* Where a connect or sendto of an INET socket goes: the destination in *d
 * (0.0.0.0 and :: are the loopback); 0: the sandbox's own loopback, 1: the
 * host's network (the policy allows it; a loopback address only by a rule
 * naming it), or -ENETUNREACH (anywhere else, as Linux with no route). */
static long inet_dest(struct sb *sb, const struct sock *s, struct ep *d)
{
  if (v4_any(d->a))
    ep_v4(d, htonl(0x7f000001), d->port);
  else if (v6_any(d->a)) {
    memset(d->a, 0, 16);
    d->a[15] = 1;
  }
  if (s->family == AF_INET6 && mapped(d->a) && s->o.v6only)
    return -ENETUNREACH;
  if (cf_net_allows(policy(sb), d->a, d->port))
    return 1;
  if (!v4_loop(d->a) && !v6_loop(d->a))
    return -ENETUNREACH;
  return 0;
}

/* ---- the host's network (a policy's allowed destinations) ----
 * A guest INET socket whose connect or sendto goes outside gets a host
 * socket of its own family and type in place of its host fd: reads,
 * writes, readiness, shutdown and a non-blocking connect are then the host
 * kernel's; its name leaves the sandbox's table. */

static void ep_from_sa(struct ep *e, const struct sockaddr_storage *ss)
{
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    ep_v4(e, in->sin_addr.s_addr, ntohs(in->sin_port));
  } else {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    memcpy(e->a, &in6->sin6_addr, 16);
    e->port = ntohs(in6->sin6_port);
  }
}

static void ext_local(struct sock *s, int h)
{
  struct sockaddr_storage ss;
  socklen_t l = sizeof ss;
  if (getsockname(h, (struct sockaddr *)&ss, &l) == 0)
    ep_from_sa(&s->local, &ss);
}

/* The stored options that change what a host socket does, onto h. */
static void ext_opts(const struct sock *s, int h)
{
  const struct opts *o = &s->o;
  setsockopt(h, SOL_SOCKET, SO_KEEPALIVE, &o->keepalive, sizeof(int));
  setsockopt(h, SOL_SOCKET, SO_BROADCAST, &o->broadcast, sizeof(int));
  setsockopt(h, SOL_SOCKET, SO_LINGER, &o->linger, sizeof o->linger);
  setsockopt(h, SOL_SOCKET, SO_OOBINLINE, &o->oobinline, sizeof(int));
  if (s->type == SOCK_STREAM) {
    setsockopt(h, IPPROTO_TCP, TCP_NODELAY, &o->nodelay, sizeof(int));
    setsockopt(h, IPPROTO_TCP, TCP_KEEPIDLE, &o->keepidle, sizeof(int));
    setsockopt(h, IPPROTO_TCP, TCP_KEEPINTVL, &o->keepintvl, sizeof(int));
    setsockopt(h, IPPROTO_TCP, TCP_KEEPCNT, &o->keepcnt, sizeof(int));
    setsockopt(h, IPPROTO_TCP, TCP_USER_TIMEOUT, &o->user_timeout, sizeof(int));
    setsockopt(h, IPPROTO_TCP, TCP_CORK, &o->cork, sizeof(int));
  }
  if (s->family == AF_INET)
    setsockopt(h, IPPROTO_IP, IP_TOS, &o->tos, sizeof(int));
  else
    setsockopt(h, IPPROTO_IPV6, IPV6_V6ONLY, &o->v6only, sizeof(int));
}

/* s's host fd := a new host socket of its family and type (ext), or back
 * to a local one (!ext: a connect to its own loopback after an outside one). */
static long ext_make(struct file *f, struct sock *s, bool ext)
{
  int h = ext ? socket(s->family, s->type | SOCK_NONBLOCK | SOCK_CLOEXEC, s->proto)
              : socket(AF_UNIX, host_type(s) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (h < 0)
    return -errno;
  if (ext)
    ext_opts(s, h);
  if (dup3(h, f->hostfd, O_CLOEXEC) < 0) {
    long r = -errno;
    close(h);
    return r;
  }
  close(h);
  if (ext && s->bound) /* its name is the host's now */
    name_del(s->net, s);
  if (ext && s->inbox_tx >= 0) { /* (a datagram socket: no inbox any more) */
    close(s->inbox_tx);
    s->inbox_tx = -1;
  }
  s->ext = ext;
  return 0;
}

/* connect(2) of a stream socket to an outside d, as the host kernel answers
 * it (EINPROGRESS, EALREADY, EISCONN, ECONNREFUSED...): a blocking one
 * waits for the host socket (SO_SNDTIMEO: EINPROGRESS after it). */
static long ext_connect(struct sb *sb, struct file *f, struct sock *s, const struct ep *d)
{
  long r;
  if (!s->ext && (r = ext_make(f, s, true)) < 0)
    return r;
  struct sockaddr_storage ss;
  socklen_t l = ep_sa(s->family, d, &ss);
  uint64_t dl = deadline_of(s->o.sndtimeo);
  for (;;) {
    r = connect(f->hostfd, (struct sockaddr *)&ss, l) < 0 ? -errno : 0;
    if (r == 0 || r == -EISCONN) {
      if (r == 0 || s->connecting) {
        s->state = SS_CONNECTED;
        r = 0;
      }
      s->connecting = false;
      ext_local(s, f->hostfd);
      s->peer = *d;
      return r;
    }
    if (r != -EINPROGRESS && r != -EALREADY) {
      s->state = SS_NEW;
      s->connecting = false;
      return r;
    }
    /* under way: reads and writes go to the host socket (they wait for it) */
    s->state = SS_CONNECTED;
    s->peer = *d;
    ext_local(s, f->hostfd);
    bool first = !s->connecting;
    s->connecting = true;
    if (f->flags & O_NONBLOCK)
      return first ? -EINPROGRESS : r;
    long w = sk_wait(sb, f->hostfd, POLLOUT, dl);
    if (w < 0)
      return w == -EAGAIN ? -EINPROGRESS : w;
  }
}

/* Queue s's connection (f its file) on listener l (room checked), to d
 * (INET): a host socketpair, one end in place of s's host fd, the other in
 * l's queue with the addresses; l's pipe says one more is waiting. */
static long conn_queue(struct sb *sb, struct file *f, struct sock *s, struct sock *l, const struct ep *d)
{
  long r;
  if (is_inet(s) && (r = autobind(s, d->a)) < 0)
    return r;
  if (l->nq == l->capq) {
    int c = l->capq ? 2 * l->capq : 8;
    struct pend *q = realloc(l->q, (size_t)c * sizeof *q);
    if (!q)
      return -ENOMEM;
    l->q = q;
    l->capq = c;
  }
  struct link *k = link_new();
  if (!k)
    return -ENOMEM;
  int p[2];
  if (socketpair(AF_UNIX, host_type(s) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0) {
    free(k);
    return -errno;
  }
  if (dup3(p[0], f->hostfd, O_CLOEXEC) < 0) {
    r = -errno;
    close(p[0]);
    close(p[1]);
    free(k);
    return r;
  }
  close(p[0]);
  oob_inline(f, s);
  struct pend *q = &l->q[l->nq++];
  memset(q, 0, sizeof *q);
  q->fd = p[1];
  q->cred = (struct ucred){.pid = sb->pid, .uid = (uid_t)sb->uid, .gid = (gid_t)sb->gid}; /* at connect, as Linux's */
  q->link = k;
  k->lpasscred = l->o.passcred;
  link_unref(s->link); /* (a connect after an outside one: none) */
  s->link = k;
  s->side = 0;
  k->end[0] = s;
  if (is_inet(s)) {
    q->local = *d;
    q->local.port = l->local.port;
    q->peer = s->local;
    s->peer = *d;
    if (l->family == AF_INET6 && s->family == AF_INET)
      q->peer = s->local; /* kept ::ffff:a.b.c.d: the v6 listener shows it mapped */
  } else {
    q->upeer = s->un;
    s->upeer = l->un;
  }
  s->peercred = l->cred;
  s->state = SS_CONNECTED;
  char one = 1;
  if (write(l->notify_wr, &one, 1) != 1) { /* cannot happen below 64 KiB queued */
    l->nq--;
    pend_close(l, q);
    return -ENOBUFS;
  }
  wake_all(sb);
  return 0;
}

/* The non-blocking TCP connects waiting for room in l's queue (Linux's
 * SYN_SENT: the SYN dropped by a full queue, sent again until an accept
 * makes room): as many as now fit are queued, in order (they become
 * writable, SO_ERROR 0); with fail (l closed or shut down), each is
 * refused (SO_ERROR ECONNREFUSED, as the SYN's answer is then a reset). */
static void syn_run(struct sb *sb, struct sock *l, bool fail) /* (sb: NULL only with fail) */
{
  bool woke = false;
  while (l->nsyn && (fail || l->nq <= l->backlog)) {
    struct sock *w = l->syn_q[0];
    memmove(l->syn_q, l->syn_q + 1, (size_t)--l->nsyn * sizeof *l->syn_q);
    w->syn_l = NULL;
    close(w->notify_wr); /* (its host fd, a pipe's read end, says POLLHUP: a wait on it ends) */
    w->notify_wr = -1;
    woke = true;
    if (fail || conn_queue(sb, w->file, w, l, &w->peer) < 0) {
      ext_make(w->file, w, false); /* a closed socket again */
      w->so_error = ECONNREFUSED;
      continue;
    }
    w->connecting = true; /* (its next connect says 0) */
  }
  if (woke && sb) /* (NULL: the listener's release; a waiter's pipe said POLLHUP) */
    wake_all(sb);
}

/* A non-blocking TCP connect to l, whose queue is full: EINPROGRESS, s
 * waits in l's syn_q with a host fd that polls nothing (a pipe's read end,
 * its write end kept) until syn_run queues or refuses it. */
static long syn_wait(struct file *f, struct sock *s, struct sock *l, const struct ep *d)
{
  long r;
  if ((r = autobind(s, d->a)) < 0)
    return r;
  if (l->nsyn == l->capsyn) {
    int c = l->capsyn ? 2 * l->capsyn : 8;
    struct sock **q = realloc(l->syn_q, (size_t)c * sizeof *q);
    if (!q)
      return -ENOMEM;
    l->syn_q = q;
    l->capsyn = c;
  }
  int wr = notify_pipe(f);
  if (wr < 0)
    return wr;
  s->notify_wr = wr;
  s->syn_l = l;
  s->peer = *d;
  l->syn_q[l->nsyn++] = s;
  return -EINPROGRESS;
}

/* s leaves the queue of connects waiting for room (it closed). */
static void syn_leave(struct sock *s)
{
  struct sock *l = s->syn_l;
  if (!l)
    return;
  for (int i = 0; i < l->nsyn; i++)
    if (l->syn_q[i] == s) {
      memmove(l->syn_q + i, l->syn_q + i + 1, (size_t)(--l->nsyn - i) * sizeof *l->syn_q);
      break;
    }
  s->syn_l = NULL;
}

static long stream_connect(struct sb *sb, struct file *f, struct sock *s, uint64_t addr, uint64_t len)
{
  struct net *n = s->net;
  struct sock *l = NULL;
  struct ep d;
  struct uname u;
  long r;
  if (is_inet(s)) {
    bool unspec;
    if ((r = ep_in(sb, s, addr, len, &d, &unspec)) < 0)
      return r;
    if (unspec)
      return s->state == SS_CONNECTED ? -EISCONN : 0;
  } else if ((r = un_in(sb, addr, len, &u)) < 0)
    return r;
  if (s->state == SS_CONNECTED) {
    if (s->ext)
      return ext_connect(sb, f, s, &s->peer); /* the host says (0, EALREADY, EISCONN, the error) */
    if (s->connecting) {
      s->connecting = false;
      return 0;
    }
    return -EISCONN;
  }
  if (s->state == SS_LISTEN)
    return -EINVAL;
  if (s->syn_l)
    return -EALREADY; /* waiting for room in the listener's queue */
  if (is_inet(s)) {
    if ((r = inet_dest(sb, s, &d)) < 0)
      return r;
    if (r == 1)
      return ext_connect(sb, f, s, &d);
    if (s->ext && (r = ext_make(f, s, false)) < 0)
      return r;
  } else if (!u.len)
    return -EINVAL;
  /* The listener, found again after every wait (it may have gone). A full
   * accept queue (backlog + 1 waiting, as Linux's sk_acceptq_is_full and
   * unix_recvq_full) makes a blocking connect wait until an accept takes
   * one (accept wakes every task), up to SO_SNDTIMEO; a non-blocking one
   * is EAGAIN (AF_UNIX's answer; TCP would say EINPROGRESS and finish the
   * handshake later, which a local pair cannot do). */
  uint64_t dl = deadline_of(s->o.sndtimeo);
  for (;;) {
    if (is_inet(s)) {
      if (!(l = inet_find(n, s->proto, d.a, d.port)))
        return -ECONNREFUSED;
    } else {
      if ((r = un_find(sb, n, &u, &l)) < 0)
        return r;
      if (l->type != s->type)
        return -EPROTOTYPE;
      if (l->state != SS_LISTEN || l->shut_rd)
        return -ECONNREFUSED;
    }
    if (l->nq <= l->backlog && !l->nsyn)
      break;
    if ((f->flags & O_NONBLOCK) && is_inet(s))
      return syn_wait(f, s, l, &d);
    if (f->flags & O_NONBLOCK)
      return -EAGAIN;
    int ms = -1;
    if (dl) {
      uint64_t now = mono_ns();
      if (now >= dl)
        return -EAGAIN;
      ms = (int)((dl - now + 999999) / 1000000);
    }
    /* (its queue pipe, asked for nothing: POLLHUP when the listener goes
     * and closes the write end; an accept wakes us by wake_all) */
    struct pollfd pf = {.fd = fcntl(l->file->hostfd, F_DUPFD_CLOEXEC, 0), .events = 0};
    if (pf.fd < 0)
      return -errno;
    r = sig_poll(sb, &pf, 1, ms);
    close(pf.fd);
    if (r == -EINTR)
      return dl ? -EINTR : -RESTARTSYS;
    if (r < 0 && r != -EAGAIN)
      return r;
    if (f->sock != s || s->state != SS_NEW)
      return s->state == SS_CONNECTED ? -EISCONN : -EINVAL; /* another thread's connect or listen won */
  }
  if ((r = conn_queue(sb, f, s, l, is_inet(s) ? &d : NULL)) < 0)
    return r;
  if (is_inet(s) && (f->flags & O_NONBLOCK)) {
    s->connecting = true; /* as Linux over loopback: in progress, then writable with SO_ERROR 0 */
    return -EINPROGRESS;
  }
  return 0;
}

static long dgram_connect(struct sb *sb, struct file *f, struct sock *s, uint64_t addr, uint64_t len)
{
  long r;
  if (s->pair)
    return -EINVAL;
  if (is_inet(s)) {
    struct ep d;
    bool unspec;
    if ((r = ep_in(sb, s, addr, len, &d, &unspec)) < 0)
      return r;
    if (unspec) {
      s->dconnected = false;
      if (s->ext) {
        struct sockaddr sa = {.sa_family = AF_UNSPEC};
        connect(f->hostfd, &sa, sizeof sa);
      }
      return 0;
    }
    if ((r = inet_dest(sb, s, &d)) < 0)
      return r;
    if (r == 1) { /* outside: a host UDP socket connected there */
      if (!s->ext && (r = ext_make(f, s, true)) < 0)
        return r;
      struct sockaddr_storage ss;
      socklen_t l = ep_sa(s->family, &d, &ss);
      if (connect(f->hostfd, (struct sockaddr *)&ss, l) < 0)
        return -errno;
      ext_local(s, f->hostfd);
      s->peer = d;
      s->dconnected = true;
      return 0;
    }
    if (!s->ext && (r = autobind(s, d.a)) < 0)
      return r;
    s->peer = d;
    s->dconnected = true;
    return 0;
  }
  struct uname u;
  if ((r = un_in(sb, addr, len, &u)) < 0)
    return r;
  if (!u.len) {
    s->dconnected = false;
    return 0;
  }
  struct sock *o;
  if ((r = un_find(sb, s->net, &u, &o)) < 0)
    return r;
  if (o->type != s->type)
    return -EPROTOTYPE;
  s->upeer = o->un;
  s->dconnected = true;
  return 0;
}

static long connect_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  struct sock *s = f->sock;
  if (nr == SYS_bind)
    return do_bind(sb, s, A(1), A(2));
  if (nr == SYS_listen)
    return do_listen(sb, f, s, (int)A(1));
  if (s->type == SOCK_DGRAM)
    return dgram_connect(sb, f, s, A(1), A(2));
  return s->pair ? (s->family == AF_UNIX ? -EISCONN : -EINVAL) : stream_connect(sb, f, s, A(1), A(2));
}

long sys_connect(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, connect_on); }

/* accept, accept4 */
static long accept_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  long r = 0;
  struct sock *s = f->sock;
  int flags = nr == SYS_accept4 ? (int)A(3) : 0;
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
    r = -EINVAL;
  else if (!is_stream(s))
    r = -EOPNOTSUPP;
  else if (s->state != SS_LISTEN)
    r = -EINVAL;
  uint64_t dl = deadline_of(s->o.rcvtimeo);
  while (r == 0) {
    if (f->sock != s || s->state != SS_LISTEN) {
      r = -EINVAL;
      break;
    }
    if (s->nq) {
      struct pend p = s->q[0];
      memmove(s->q, s->q + 1, (size_t)--s->nq * sizeof *s->q);
      if (s->nq == s->backlog) /* it was full: a connect may wait for room */
        wake_all(sb);
      syn_run(sb, s, false);
      char c;
      if (read(f->hostfd, &c, 1) != 1) {
        /* cannot happen: one byte per queued connection */
      }
      struct sock *c2 = sock_new(sb, s->family, s->type, s->proto);
      struct file *nf;
      if (!c2) {
        pend_close(s, &p);
        r = -ENOMEM;
        break;
      }
      if ((r = sock_file(sb, c2, p.fd, flags & SOCK_NONBLOCK ? O_NONBLOCK : 0, &nf)) < 0) {
        link_leave(p.link, 1, is_inet(s));
        break;
      }
      c2->state = SS_CONNECTED;
      if ((c2->link = p.link)) {
        c2->side = 1;
        p.link->end[1] = c2;
      }
      c2->local = p.local;
      c2->peer = p.peer;
      c2->un = s->un;
      c2->upeer = p.upeer;
      c2->peercred = p.cred;
      c2->cred = s->cred;
      c2->o = s->o; /* accepted sockets inherit the listener's options, as Linux's */
      oob_inline(nf, c2);
      int fd = fd_install(sb, nf, 0, flags & SOCK_CLOEXEC);
      if (fd < 0) {
        file_unref(nf);
        r = fd;
        break;
      }
      struct sockaddr_storage ss;
      socklen_t l = sock_name(c2, true, &ss);
      if (addr_out(sb, A(1), A(2), &ss, l) < 0) {
        /* Linux: the connection is accepted; a bad address buffer is EFAULT after */
        r = -EFAULT;
        sb->fds[fd] = NULL;
        file_unref(nf);
        break;
      }
      r = fd;
      break;
    }
    if (f->flags & O_NONBLOCK) {
      r = -EAGAIN;
      break;
    }
    if (s->shut_rd) { /* an AF_UNIX listener shut down: no more come (unix_accept) */
      r = -EINVAL;
      break;
    }
    if ((r = sk_wait(sb, f->hostfd, POLLIN, dl)) < 0)
      break;
  }
  return r;
}

long sys_accept(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, accept_on); }

/* ---- data ---- */

/* A message as the guest gave it: its iovecs (guest addresses), name and
 * control buffers. */
struct gmsg {
  struct iovec *iov; /* guest addresses */
  int niov;
  uint64_t name, namelen_p; /* namelen_p: recvfrom's address of the length, else 0 */
  socklen_t namelen;
  uint64_t control;
  uint64_t controllen;
  int flags_out;
  uint64_t controllen_out;
};

static uint64_t gmsg_len(const struct gmsg *m)
{
  uint64_t t = 0;
  for (int i = 0; i < m->niov; i++)
    t += m->iov[i].iov_len;
  return t;
}

/* Host iovecs for m's guest ones (after skip bytes), at most MAX_IO in
 * all: the count, or -EFAULT. */
static int host_iov(struct sb *sb, const struct gmsg *m, struct iovec *h, uint64_t skip, int prot)
{
  int k = 0;
  uint64_t total = 0;
  for (int i = 0; i < m->niov; i++) {
    uint64_t base = (uint64_t)m->iov[i].iov_base, len = m->iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    base += skip;
    len -= skip;
    skip = 0;
    if (total + len > MAX_IO)
      len = MAX_IO - total;
    void *p = mm_ptr(sb, base, len, prot);
    if (!p && len)
      return -EFAULT;
    h[k].iov_base = p;
    h[k++].iov_len = len;
    total += len;
    if (total >= MAX_IO)
      break;
  }
  return k;
}

/* SCM_RIGHTS: files into a ticket whose host fd goes in the host message. */
static void ticket_gc(struct net *n)
{
  for (int i = 0; i < n->nt;) {
    struct pollfd p = {.fd = n->tickets[i].wr, .events = POLLOUT};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
      ticket_drop(n, i);
    else
      i++;
  }
}

static long ticket_make(struct net *n, struct file **files, int nf, const struct ucred *cred, int *hostfd)
{
  ticket_gc(n);
  if (n->nt >= MAX_TICKETS)
    return -ETOOMANYREFS;
  if (n->nt == n->capt) {
    int c = n->capt ? 2 * n->capt : 8;
    struct ticket *t = realloc(n->tickets, (size_t)c * sizeof *t);
    if (!t)
      return -ENOMEM;
    n->tickets = t;
    n->capt = c;
  }
  int p[2];
  struct stat st;
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
    return -errno;
  if (fstat(p[0], &st) < 0) {
    close(p[0]);
    close(p[1]);
    return -EMFILE;
  }
  struct ticket *t = &n->tickets[n->nt++];
  t->ino = st.st_ino;
  t->wr = p[1];
  t->files = files;
  t->n = nf;
  t->has_cred = cred != NULL;
  if (cred)
    t->cred = *cred;
  *hostfd = p[0];
  return 0;
}

/* The sender's credentials as Linux's scm_check_creds and __scm_send take
 * an explicit SCM_CREDENTIALS: ids of -1 EINVAL; another pid, uid or gid
 * than its own EPERM unless root (the sandbox's root has CAP_SYS_ADMIN,
 * CAP_SETUID, CAP_SETGID); a pid of no process of the sandbox ESRCH. */
static long cred_check(struct sb *sb, const struct ucred *u)
{
  if (u->uid == (uid_t)-1 || u->gid == (gid_t)-1)
    return -EINVAL;
  bool root = sb->uid == 0;
  if ((u->pid != sb->pid && !root) || (u->uid != (uid_t)sb->uid && !root) || (u->gid != (gid_t)sb->gid && !root))
    return -EPERM;
  if (u->pid != sb->pid && !proc_find_any(sb, u->pid))
    return -ESRCH;
  return 0;
}

/* The guest's control messages into host ones: 0 and *hlen bytes in hctl,
 * or -errno. Files (SCM_RIGHTS) and credentials go in a ticket whose fd is
 * the host message's one SCM_RIGHTS: an explicit SCM_CREDENTIALS (checked),
 * else the sender's own when want_cred (Linux's maybe_add_creds: either
 * end has SO_PASSCRED; see sk_send for a peer not accepted yet). The host kernel
 * attaches its own process's credentials to nothing we read: these are the
 * guest's, its sandbox pid among them. */
static long control_in(struct sb *sb, struct sock *s, const struct gmsg *m, bool want_cred, char *hctl, size_t hcap,
                       size_t *hlen, int *ticket_fd)
{
  *hlen = 0;
  *ticket_fd = -1;
  struct ucred cred = {.pid = sb->pid, .uid = (uid_t)sb->uid, .gid = (gid_t)sb->gid};
  bool has_cred = want_cred && s->family == AF_UNIX;
  if (!m->control || !m->controllen) {
    if (!has_cred)
      return 0;
  } else if (m->controllen > CTL_MAX)
    return -ENOBUFS;
  char *c = m->controllen ? malloc(m->controllen) : NULL;
  if (!c && m->control && m->controllen)
    return -ENOMEM;
  long r = 0;
  struct file **files = NULL;
  int nf = 0;
  if (c && mm_copy_in(sb, c, m->control, m->controllen) < 0) {
    free(c);
    return -EFAULT;
  }
  struct msghdr mh = {.msg_control = c, .msg_controllen = c ? m->controllen : 0};
  for (struct cmsghdr *cm = c ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {

    if (cm->cmsg_len < sizeof *cm || cm->cmsg_len > m->controllen - (size_t)((char *)cm - c)) {
      r = -EINVAL;
      break;
    }
    if (cm->cmsg_level != SOL_SOCKET) { /* (IP_PKTINFO, IP_TOS... are not served) */
      r = -EINVAL;
      break;
    }
    if (cm->cmsg_type == SCM_CREDENTIALS && s->family == AF_UNIX) {
      struct ucred u;
      if (cm->cmsg_len != CMSG_LEN(sizeof u)) {
        r = -EINVAL;
        break;
      }
      memcpy(&u, CMSG_DATA(cm), sizeof u);
      if ((r = cred_check(sb, &u)) < 0)
        break;
      cred = u;
      has_cred = true;
      continue;
    }
    if (cm->cmsg_type != SCM_RIGHTS || s->family != AF_UNIX) {
      r = -EINVAL;
      break;
    }
    int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    if (k <= 0 || nf + k > 253) { /* SCM_MAX_FD */
      r = -EINVAL;
      break;
    }
    struct file **nfs = realloc(files, (size_t)(nf + k) * sizeof *nfs);
    if (!nfs) {
      r = -ENOMEM;
      break;
    }
    files = nfs;
    for (int i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      struct file *g = fs_get(sb, fd);
      if (!g) {
        r = -EBADF;
        break;
      }
      g->refs++;
      files[nf++] = g;
    }
    if (r < 0)
      break;
  }
  free(c);
  if (r == 0 && (nf || has_cred)) {
    int hfd = -1;
    if ((r = ticket_make(s->net, files, nf, has_cred ? &cred : NULL, &hfd)) == 0) {
      struct msghdr h = {.msg_control = hctl, .msg_controllen = hcap};
      struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &hfd, sizeof hfd);
      *hlen = CMSG_SPACE(sizeof(int));
      *ticket_fd = hfd;
      return 0;
    }
  }
  for (int i = 0; i < nf; i++)
    file_unref(files[i]);
  free(files);
  return r;
}

/* The host control messages received into the guest's: SCM_RIGHTS tickets
 * become fds of the receiver; with creds (the receiver's SO_PASSCRED) an
 * SCM_CREDENTIALS first, as Linux's scm_recv: the message's (its ticket's),
 * or pid 0 and the overflow ids for one sent with none (neither end had
 * SO_PASSCRED then). */
static long control_out(struct sb *sb, struct sock *s, struct msghdr *h, struct gmsg *m, int rflags, bool creds)
{
  m->controllen_out = 0;
  if (!h->msg_controllen && !creds)
    return 0;
  struct net *n = s->net;
  char *out = m->controllen ? calloc(1, m->controllen) : NULL;
  uint64_t used = 0;
  struct ucred *cred_at = NULL; /* where the credentials went in out */
  if (creds) {
    if (out && m->controllen >= CMSG_LEN(sizeof(struct ucred))) {
      struct cmsghdr g = {.cmsg_len = CMSG_LEN(sizeof(struct ucred)), .cmsg_level = SOL_SOCKET,
                          .cmsg_type = SCM_CREDENTIALS};
      struct ucred none = {.pid = 0, .uid = 65534, .gid = 65534};
      memcpy(out, &g, sizeof g);
      memcpy(out + CMSG_LEN(0), &none, sizeof none);
      cred_at = (struct ucred *)(out + CMSG_LEN(0));
      used = CMSG_SPACE(sizeof(struct ucred)) < m->controllen ? CMSG_SPACE(sizeof(struct ucred)) : m->controllen;
    } else
      m->flags_out |= MSG_CTRUNC;
  }
  for (struct cmsghdr *cm = h->msg_controllen ? CMSG_FIRSTHDR(h) : NULL; cm; cm = CMSG_NXTHDR(h, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k; i++) {
      int hfd;
      memcpy(&hfd, CMSG_DATA(cm) + i * sizeof(int), sizeof hfd);
      struct stat st;
      int ti = -1;
      if (fstat(hfd, &st) == 0)
        for (int j = 0; j < n->nt; j++)
          if (n->tickets[j].ino == st.st_ino) {
            ti = j;
            break;
          }
      close(hfd);
      if (ti < 0)
        continue;
      struct ticket *t = &n->tickets[ti];
      if (t->has_cred && cred_at)
        memcpy(cred_at, &t->cred, sizeof t->cred);
      if (!t->n && (rflags & MSG_PEEK))
        continue; /* credentials only: the ticket stays for the read */
      /* as many fds as fit (Linux's scm_detach_fds), the others closed */
      uint64_t room = used < m->controllen && out ? m->controllen - used : 0;
      int fit = room >= CMSG_LEN(sizeof(int)) ? (int)((room - CMSG_LEN(0)) / sizeof(int)) : 0;
      int *fds = calloc((size_t)t->n + 1, sizeof *fds);
      int got = 0;
      for (int j = 0; j < t->n && fds; j++) {
        if (got < fit) {
          int fd = fd_install(sb, t->files[j], 0, rflags & MSG_CMSG_CLOEXEC);
          if (fd >= 0) {
            fds[got++] = fd;
            t->files[j] = NULL; /* the fd table has its reference */
            continue;
          }
        }
        m->flags_out |= MSG_CTRUNC;
      }
      if (got) {
        struct cmsghdr g = {.cmsg_len = CMSG_LEN((size_t)got * sizeof(int)), .cmsg_level = SOL_SOCKET,
                            .cmsg_type = SCM_RIGHTS};
        memcpy(out + used, &g, sizeof g);
        memcpy(out + used + CMSG_LEN(0), fds, (size_t)got * sizeof(int));
        uint64_t sp = CMSG_SPACE((size_t)got * sizeof(int));
        used += sp < room ? sp : room;
      }
      free(fds);
      for (int j = 0; j < t->n; j++)
        if (t->files[j])
          file_unref(t->files[j]);
      t->n = 0;
      ticket_drop(n, ti);
    }
  }
  if (h->msg_flags & MSG_CTRUNC)
    m->flags_out |= MSG_CTRUNC;
  long r = 0;
  if (used && mm_copy_out(sb, m->control, out, used) < 0)
    r = -EFAULT;
  m->controllen_out = used;
  free(out);
  return r;
}

static bool ep_eq(const struct ep *a, const struct ep *b) { return a->port == b->port && !memcmp(a->a, b->a, 16); }

/* A datagram to the host's network (to d, or the host socket's connected
 * peer): bytes sent or -errno. */
static long ext_send(struct sb *sb, struct file *f, struct sock *s, struct gmsg *m, int flags, const struct ep *d)
{
  long r;
  if (!s->ext && (r = ext_make(f, s, true)) < 0)
    return r;
  if (m->control && m->controllen)
    return -EINVAL; /* (no IP control messages are served) */
  bool nb = (f->flags & O_NONBLOCK) || (flags & MSG_DONTWAIT);
  uint64_t dl = deadline_of(s->o.sndtimeo);
  struct sockaddr_storage ss;
  socklen_t l = d ? ep_sa(s->family, d, &ss) : 0;
  struct iovec hv[1024];
  int k = host_iov(sb, m, hv, 0, PROT_READ);
  if (k < 0)
    return k;
  for (;;) {
    struct msghdr h = {.msg_name = d ? &ss : NULL, .msg_namelen = l, .msg_iov = hv, .msg_iovlen = (size_t)k};
    r = sendmsg(f->hostfd, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0 || errno != EAGAIN || nb) {
      r = r >= 0 ? r : -errno;
      break;
    }
    if ((r = sk_wait(sb, f->hostfd, POLLOUT, dl)) < 0)
      break;
  }
  if (r >= 0 && !s->local.port)
    ext_local(s, f->hostfd);
  return r;
}

/* A call on a TCP socket whose connect waits for room in a listener's
 * queue (syn_wait): EAGAIN if nb, else it waits until queued or refused
 * (Linux's sk_stream_wait_connect); 0: go on. */
static long syn_block(struct sb *sb, struct file *f, struct sock *s, bool nb, uint64_t dl)
{
  while (s->syn_l && f->sock == s) {
    if (nb)
      return -EAGAIN;
    long w = sk_wait(sb, f->hostfd, POLLIN, dl);
    if (w < 0)
      return w;
  }
  return 0;
}

/* Send m on s (f): bytes sent or -errno. */
static long sk_send(struct sb *sb, struct file *f, struct sock *s, struct gmsg *m, int flags)
{
  if ((flags & MSG_OOB) && s->type != SOCK_STREAM)
    return -EOPNOTSUPP; /* (a stream's goes to its host socket: oob_note) */
  bool nb = (f->flags & O_NONBLOCK) || (flags & MSG_DONTWAIT);
  uint64_t dl = deadline_of(s->o.sndtimeo);
  long r;
  if (s->syn_l && (r = syn_block(sb, f, s, nb, dl)) < 0)
    return r;
  if (s->so_error) {
    r = -s->so_error;
    s->so_error = 0;
    return r;
  }
  rst_sync(s);
  if (s->reset && is_inet(s) && !s->ext && s->state == SS_CONNECTED) {
    /* a reset connection (Linux's sk_stream_error): its error once, then EPIPE */
    r = s->reset_err ? -s->reset_err : -EPIPE;
    s->reset_err = 0;
    return r;
  }
  char hctl[CMSG_SPACE(sizeof(int))];
  size_t hlen;
  int tfd;
  if (s->type != SOCK_DGRAM || s->pair) {
    if (m->name && m->namelen && !s->pair && s->family == AF_UNIX)
      return s->state == SS_CONNECTED ? -EISCONN : -EOPNOTSUPP;
    if (m->name && m->namelen && s->pair)
      return -EISCONN;
    if (s->state != SS_CONNECTED) {
      if (is_inet(s))
        return -EPIPE; /* (with SIGPIPE: the caller) */
      return -ENOTCONN;
    }
    /* (a peer not accepted yet: Linux gives credentials to every message
     * it queues; here only if its listener has SO_PASSCRED, which the
     * accepted socket inherits: a ticket ends a host read, and most
     * receivers never ask) */
    struct sock *peer = s->link ? s->link->end[!s->side] : NULL;
    bool want = s->o.passcred || (peer ? peer->o.passcred : s->link && s->link->lpasscred);
    if ((r = control_in(sb, s, m, want, hctl, sizeof hctl, &hlen, &tfd)) < 0)
      return r;
    uint64_t total = gmsg_len(m), done = 0;
    struct iovec hv[1024];
    for (;;) {
      int k = host_iov(sb, m, hv, done, PROT_READ);
      if (k < 0) {
        r = done ? (long)done : k;
        break;
      }
      struct msghdr h = {.msg_iov = hv, .msg_iovlen = (size_t)k, .msg_control = hlen ? hctl : NULL,
                         .msg_controllen = hlen};
      r = sendmsg(f->hostfd, &h, (flags & (MSG_EOR | MSG_OOB)) | MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r >= 0) {
        hlen = 0; /* the fds went with the first bytes */
        done += (uint64_t)r;
        if (done >= total || s->type == SOCK_SEQPACKET || nb) {
          r = (long)done;
          break;
        }
      } else if (errno == EPIPE && is_inet(s) && !s->ext && !s->shut_wr && !s->reset) {
        /* TCP: the peer closed, and the first send to it succeeds (its
         * bytes go, the peer answers with a reset: tcp_reset in
         * CLOSE_WAIT): SO_ERROR EPIPE once, every send after EPIPE, reads
         * the end. (A local pair's end says EPIPE at once.) */
        if (total) { /* (nothing to send, nothing comes back) */
          s->reset = true;
          s->reset_err = EPIPE;
        }
        r = (long)total;
        break;
      } else if (errno != EAGAIN) {
        r = done ? (long)done : -errno;
        break;
      } else if (nb) {
        r = done ? (long)done : -EAGAIN;
        break;
      }
      long w = sk_wait(sb, f->hostfd, POLLOUT, dl);
      if (w < 0) {
        r = done ? (long)done : w;
        break;
      }
    }
    if (tfd >= 0) {
      close(tfd);
      if (hlen) /* not sent: the ticket goes (its pipe has no reader now) */
        ticket_gc(s->net);
    }
    return r;
  }
  /* a datagram: to its destination's inbox, with our address */
  struct sock *d = NULL;
  struct dhdr hd;
  memset(&hd, 0, sizeof hd);
  hd.family = (uint32_t)s->family;
  uint64_t total = gmsg_len(m);
  if (is_inet(s)) {
    struct ep de;
    if (m->name && m->namelen) {
      if ((r = ep_in(sb, s, m->name, m->namelen, &de, NULL)) < 0)
        return r;
    } else if (s->dconnected)
      de = s->peer;
    else
      return -EDESTADDRREQ;
    if ((r = inet_dest(sb, s, &de)) < 0)
      return r;
    if (total > UDP_MAX)
      return -EMSGSIZE;
    if (r == 1)
      return ext_send(sb, f, s, m, flags, m->name && m->namelen ? &de : NULL);
    if (!s->ext && (r = autobind(s, NULL)) < 0) /* (an unconnected UDP socket binds the wildcard) */
      return r;
    hd.ep = s->local;
    if (wild(hd.ep.a)) { /* the address it goes out from */
      if (mapped(de.a))
        ep_v4(&hd.ep, htonl(0x7f000001), s->local.port);
      else {
        memset(hd.ep.a, 0, 16);
        hd.ep.a[15] = 1;
      }
    }
    d = inet_find(s->net, s->proto, de.a, de.port);
    if (!d) { /* nobody there: dropped (an ICMP error for a connected socket) */
      if (s->dconnected)
        s->so_error = ECONNREFUSED;
      return (long)total;
    }
  } else {
    struct uname u;
    if (m->name && m->namelen) {
      if (s->dconnected)
        return -EISCONN;
      if ((r = un_in(sb, m->name, m->namelen, &u)) < 0)
        return r;
    } else if (s->dconnected)
      u = s->upeer;
    else
      return -ENOTCONN;
    if ((r = un_find(sb, s->net, &u, &d)) < 0)
      return r;
    if (d->type != SOCK_DGRAM)
      return -EPROTOTYPE;
    if (s->shut_wr || d->shut_rd)
      return -EPIPE; /* as unix_dgram_sendmsg (with SIGPIPE: the caller) */
    hd.un = s->un;
    hd.len = s->un.len;
  }
  if ((r = control_in(sb, s, m, s->o.passcred || d->o.passcred, hctl, sizeof hctl, &hlen, &tfd)) < 0)
    return r;
  struct file *df = d->file;
  df->refs++; /* a wait may release the lock */
  for (;;) {
    struct iovec hv[1025];
    hv[0] = (struct iovec){&hd, sizeof hd};
    int k = host_iov(sb, m, hv + 1, 0, PROT_READ);
    if (k < 0) {
      r = k;
      break;
    }
    if (df->sock != d || d->inbox_tx < 0) {
      r = -ECONNREFUSED;
      break;
    }
    struct msghdr h = {.msg_iov = hv, .msg_iovlen = (size_t)k + 1, .msg_control = hlen ? hctl : NULL,
                       .msg_controllen = hlen};
    r = sendmsg(d->inbox_tx, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0) {
      r = (long)total;
      hlen = 0;
      break;
    }
    if (errno == EPIPE && is_inet(s)) { /* its receiver shut down reading: never read, as UDP's */
      r = (long)total;
      break;
    }
    if (errno != EAGAIN) {
      r = -errno;
      break;
    }
    if (is_inet(s)) { /* a full receive buffer drops a UDP datagram */
      r = (long)total;
      break;
    }
    if (nb) {
      r = -EAGAIN;
      break;
    }
    if ((r = sk_wait(sb, d->inbox_tx, POLLOUT, dl)) < 0)
      break;
  }
  file_unref(df);
  if (tfd >= 0) {
    close(tfd);
    if (hlen)
      ticket_gc(s->net);
  }
  return r;
}

/* Receive into m on s (f): bytes (the datagram's length with MSG_TRUNC) or -errno. */
static long sk_recv(struct sb *sb, struct file *f, struct sock *s, struct gmsg *m, int flags)
{
  if ((flags & MSG_OOB) && s->type != SOCK_STREAM)
    return -EOPNOTSUPP;
  if (flags & MSG_ERRQUEUE)
    return -EAGAIN; /* nothing ever goes wrong on the loopback */
  bool nb = (f->flags & O_NONBLOCK) || (flags & MSG_DONTWAIT);
  uint64_t dl = deadline_of(s->o.rcvtimeo);
  long r;
  if (s->syn_l && (r = syn_block(sb, f, s, nb, dl)) < 0)
    return r;
  if (s->so_error) {
    r = -s->so_error;
    s->so_error = 0;
    return r;
  }
  if (s->state == SS_LISTEN || (s->type != SOCK_DGRAM && s->state != SS_CONNECTED))
    return is_inet(s) ? -ENOTCONN : -EINVAL;
  bool framed = s->type == SOCK_DGRAM && !s->pair && !s->ext;
  struct sockaddr_storage from;
  int hflags = flags & (MSG_PEEK | MSG_TRUNC | MSG_WAITALL | MSG_CMSG_CLOEXEC | MSG_OOB);
  uint64_t total = gmsg_len(m), done = 0;
  char ctl[CMSG_SPACE(253 * sizeof(int))];
  for (;;) {
    struct iovec hv[1025];
    struct dhdr hd;
    int off = 0;
    if (framed)
      hv[off++] = (struct iovec){&hd, sizeof hd};
    int k = host_iov(sb, m, hv + off, done, PROT_WRITE);
    if (k < 0)
      return done ? (long)done : k;
    struct msghdr h = {.msg_iov = hv, .msg_iovlen = (size_t)(k + off), .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (s->ext && s->type == SOCK_DGRAM) {
      h.msg_name = &from;
      h.msg_namelen = sizeof from;
    }
    r = recvmsg(f->hostfd, &h, (hflags & ~(MSG_WAITALL | MSG_CMSG_CLOEXEC)) | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r >= 0) {
      long cr = control_out(sb, s, &h, m, flags, s->family == AF_UNIX && s->o.passcred && r > 0);
      if (framed) {
        if (r == 0)
          return 0; /* (no header: the end after shutdown(SHUT_RD)) */
        if ((size_t)r < sizeof hd)
          continue; /* cannot happen: every datagram has its header */
        r -= (long)sizeof hd;
        if (s->dconnected && is_inet(s) && !ep_eq(&hd.ep, &s->peer) && !(flags & MSG_PEEK))
          continue; /* a connected UDP socket takes only its peer's */
        if (h.msg_flags & MSG_TRUNC)
          m->flags_out |= MSG_TRUNC;
        struct sockaddr_storage ss;
        socklen_t l = is_inet(s) ? ep_sa(s->family, &hd.ep, &ss) : un_sa(&hd.un, &ss);
        if (m->name) {
          socklen_t give = m->namelen < l ? m->namelen : l;
          if (mm_copy_out(sb, m->name, &ss, give) < 0)
            return -EFAULT;
        }
        m->namelen = l;
        if (cr < 0)
          return cr;
        return r;
      }
      if (h.msg_flags & MSG_TRUNC)
        m->flags_out |= MSG_TRUNC;
      if (h.msg_flags & MSG_EOR)
        m->flags_out |= MSG_EOR;
      socklen_t room = m->namelen;
      m->namelen = 0;
      if (s->ext && s->type == SOCK_DGRAM) { /* the host's source address, in the guest's family */
        struct ep e;
        struct sockaddr_storage ss;
        ep_from_sa(&e, &from);
        socklen_t l = ep_sa(s->family, &e, &ss);
        if (m->name && mm_copy_out(sb, m->name, &ss, room < l ? room : l) < 0)
          return -EFAULT;
        m->namelen = l;
        if (cr < 0)
          return cr;
        return r;
      }
      if (s->family == AF_UNIX && m->name && s->upeer.len && !s->pair) {
        struct sockaddr_storage ss;
        socklen_t l = un_sa(&s->upeer, &ss);
        socklen_t give = room < l ? room : l;
        if (mm_copy_out(sb, m->name, &ss, give) < 0)
          return -EFAULT;
        m->namelen = l;
      }
      if (cr < 0)
        return cr;
      if (r == 0 && !done && total && s->type == SOCK_STREAM && (rst_sync(s), s->reset_err == ECONNRESET)) {
        s->reset_err = 0; /* a reset: what came is read, then ECONNRESET once, then the end (tcp_recvmsg) */
        return -ECONNRESET;
      }
      done += (uint64_t)r;
      if (r == 0 || !(flags & MSG_WAITALL) || done >= total || s->type != SOCK_STREAM || (flags & MSG_PEEK) ||
          h.msg_controllen)
        return (long)done;
      continue;
    }
    if (errno == ECONNRESET && is_inet(s) && !s->ext) {
      /* the host pair's own word for a peer closed with bytes unread
       * (unix_release_sock): the reset, taken as ours (rst_sync) */
      rst_sync(s);
      if (done || s->reset_err != ECONNRESET)
        return (long)done;
      s->reset_err = 0;
      return -ECONNRESET;
    }
    if (errno != EAGAIN)
      return done ? (long)done : -errno;
    if (s->shut_rd && s->type != SOCK_DGRAM)
      return (long)done; /* a stream's read after shutdown(SHUT_RD): the end, before EAGAIN (tcp_recvmsg) */
    if (nb)
      return done ? (long)done : -EAGAIN;
    if (s->shut_rd)
      return (long)done; /* a datagram's blocking read: its wait ends */
    long w = sk_wait(sb, f->hostfd, POLLIN, dl);
    if (w < 0)
      return done ? (long)done : w;
  }
}

/* fs.c's read/write (readv/writev: iov) of a socket. */
long net_rw(struct sb *sb, struct file *f, uint64_t buf, uint64_t len, bool wr)
{
  struct iovec v = {(void *)buf, len};
  struct gmsg m = {.iov = &v, .niov = 1};
  return wr ? sk_send(sb, f, f->sock, &m, 0) : sk_recv(sb, f, f->sock, &m, 0); /* (do_write raises SIGPIPE) */
}

long net_iov(struct sb *sb, struct file *f, uint64_t iov, uint64_t cnt, bool wr)
{
  if (cnt > 1024)
    return -EINVAL;
  struct iovec v[1024];
  if (cnt && mm_copy_in(sb, v, iov, cnt * sizeof *v) < 0)
    return -EFAULT;
  struct gmsg m = {.iov = v, .niov = (int)cnt};
  long r = wr ? sk_send(sb, f, f->sock, &m, 0) : sk_recv(sb, f, f->sock, &m, 0);
  if (r == -EPIPE && wr)
    sig_raise(sb, SIGPIPE);
  return r;
}

/* sendto, recvfrom */
static long sendto_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  long r = 0;
  struct sock *s = f->sock;
  struct iovec v = {(void *)A(1), A(2) > MAX_IO ? MAX_IO : A(2)};
  struct gmsg m = {.iov = &v, .niov = 1};
  int flags = (int)A(3);
  if (nr == SYS_sendto) {
    m.name = A(4);
    m.namelen = (socklen_t)A(5);
    if (A(4) && A(5) > sizeof(struct sockaddr_storage))
      r = -EINVAL;
    else
      r = sk_send(sb, f, s, &m, flags);
    if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
      sig_raise(sb, SIGPIPE);
  } else {
    int ul = 0;
    if (A(4) && A(5) && mm_copy_in(sb, &ul, A(5), sizeof ul) < 0)
      r = -EFAULT;
    else if (ul < 0)
      r = -EINVAL;
    else {
      m.name = A(5) ? A(4) : 0;
      m.namelen = (socklen_t)ul;
      r = sk_recv(sb, f, s, &m, flags);
      if (r >= 0 && A(4) && A(5) && mm_copy_out(sb, A(5), &m.namelen, sizeof m.namelen) < 0)
        r = -EFAULT;
    }
  }
  return r;
}

long sys_sendto(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, sendto_on); }

struct kmsghdr { /* struct msghdr as the guest lays it out */
  uint64_t name;
  uint32_t namelen, pad0;
  uint64_t iov, iovlen, control, controllen;
  int32_t flags, pad1;
};

static long one_msg(struct sb *sb, struct file *f, uint64_t gm, int flags, bool send)
{
  struct kmsghdr k;
  if (mm_copy_in(sb, &k, gm, sizeof k) < 0)
    return -EFAULT;
  if (k.iovlen > 1024)
    return -EMSGSIZE;
  struct iovec v[1024];
  if (k.iovlen && mm_copy_in(sb, v, k.iov, k.iovlen * sizeof *v) < 0)
    return -EFAULT;
  if ((int)k.namelen < 0)
    return -EINVAL;
  struct gmsg m = {.iov = v, .niov = (int)k.iovlen, .name = k.name, .namelen = k.namelen, .control = k.control,
                   .controllen = k.controllen};
  if (send) {
    if (m.name && m.namelen > sizeof(struct sockaddr_storage))
      return -EINVAL;
    long r = sk_send(sb, f, f->sock, &m, flags);
    if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
      sig_raise(sb, SIGPIPE);
    return r;
  }
  long r = sk_recv(sb, f, f->sock, &m, flags);
  if (r < 0)
    return r;
  k.namelen = k.name ? m.namelen : 0;
  k.controllen = m.controllen_out;
  k.flags = m.flags_out;
  if (mm_copy_out(sb, gm + offsetof(struct kmsghdr, namelen), &k.namelen, sizeof k.namelen) < 0 ||
      mm_copy_out(sb, gm + offsetof(struct kmsghdr, controllen), &k.controllen, sizeof k.controllen) < 0 ||
      mm_copy_out(sb, gm + offsetof(struct kmsghdr, flags), &k.flags, sizeof k.flags) < 0)
    return -EFAULT;
  return r;
}

/* sendmsg, recvmsg, sendmmsg, recvmmsg */
static long sendmsg_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  long r = 0;
  if (nr == SYS_sendmsg || nr == SYS_recvmsg) {
    r = one_msg(sb, f, A(1), (int)A(2), nr == SYS_sendmsg);
  } else {
    /* struct mmsghdr: a msghdr and the count it moved */
    unsigned vlen = (unsigned)A(2) > 1024 ? 1024 : (unsigned)A(2);
    int flags = (int)A(3);
    struct timespec to;
    uint64_t dl = 0;
    if (nr == SYS_recvmmsg && A(4)) {
      if (mm_copy_in(sb, &to, A(4), sizeof to) < 0)
        return -EFAULT;
      if (to.tv_sec < 0 || to.tv_nsec < 0 || to.tv_nsec >= 1000000000)
        return -EINVAL;
      dl = mono_ns() + (uint64_t)to.tv_sec * 1000000000ull + (uint64_t)to.tv_nsec;
    }
    unsigned i;
    r = 0;
    for (i = 0; i < vlen; i++) {
      uint64_t gm = A(1) + (uint64_t)i * 64;
      int fl = flags & ~MSG_WAITFORONE;
      if (nr == SYS_recvmmsg && i > 0 && (flags & MSG_WAITFORONE))
        fl |= MSG_DONTWAIT;
      long n = one_msg(sb, f, gm, fl, nr == SYS_sendmmsg);
      if (n < 0) {
        r = n;
        break;
      }
      uint32_t len = (uint32_t)n;
      if (mm_copy_out(sb, gm + 56, &len, sizeof len) < 0) {
        r = -EFAULT;
        break;
      }
      if (dl && mono_ns() >= dl) {
        i++;
        break;
      }
    }
    if (i > 0)
      r = i;
  }
  return r;
}

long sys_sendmsg(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, sendmsg_on); }

/* shutdown */
static long shutdown_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  struct sock *s = f->sock;
  int how = (int)A(1);
  if (how < SHUT_RD || how > SHUT_RDWR)
    return -EINVAL;
  bool rd = how != SHUT_WR, wr = how != SHUT_RD;
  if (s->state == SS_LISTEN && is_inet(s)) {
    /* Linux (inet_shutdown): SHUT_WR leaves a listener as it is; SHUT_RD
     * or SHUT_RDWR disconnects it: the connections not accepted yet are
     * reset, it is a closed socket again (accept EINVAL; poll POLLOUT |
     * POLLHUP as a new socket: its host fd becomes one), which may listen
     * again. Its name stays bound (Linux keeps a port bind() named; one
     * listen() chose goes). Closing the queue pipe's write end wakes an
     * accept or poll waiting on it (POLLHUP), in any process. */
    if (!rd)
      return 0;
    int h = socket(AF_UNIX, host_type(s) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h < 0)
      return -errno;
    if (dup3(h, f->hostfd, O_CLOEXEC) < 0) {
      long r = -errno;
      close(h);
      return r;
    }
    close(h);
    for (int i = 0; i < s->nq; i++)
      pend_close(s, &s->q[i]);
    s->nq = 0;
    syn_run(sb, s, true);
    s->state = SS_NEW;
    close(s->notify_wr);
    s->notify_wr = -1;
    wake_all(sb);
    return 0;
  }
  if (s->state == SS_LISTEN) {
    /* AF_UNIX (unix_shutdown): it stays a listener; after SHUT_RD an
     * accept with an empty queue is EINVAL, a connect ECONNREFUSED, and it
     * polls readable (a byte in its pipe no accept takes), with POLLHUP
     * after SHUT_RDWR (the pipe's write end closed: nothing more comes). */
    if (rd && !s->shut_rd) {
      s->shut_rd = true;
      if (write(s->notify_wr, "x", 1) < 0) {
        /* full: readable already */
      }
    }
    if (wr)
      s->shut_wr = true;
    if (s->shut_rd && s->shut_wr && s->notify_wr >= 0) {
      close(s->notify_wr);
      s->notify_wr = -1;
    }
    wake_all(sb);
    return 0;
  }
  /* Any other socket: its host socket (a connected pair's end, an
   * unconnected socket, a datagram inbox, a host INET socket) takes the
   * shutdown, so reads, writes and poll are the host kernel's: a read
   * after SHUT_RD is end of file, poll POLLIN | POLLRDHUP (and POLLHUP
   * after both). As Linux, INET sockets not connected (a stream socket
   * before connect, a UDP socket without a peer) say ENOTCONN after
   * taking it (inet_shutdown); AF_UNIX ones say 0 (unix_shutdown). */
  if (is_inet(s) && !s->ext && s->state == SS_CONNECTED && is_stream(s)) {
    /* TCP's SHUT_RD sends nothing: the peer's sends go on succeeding and
     * what came is still read here, then the end (sk_recv); only SHUT_WR
     * reaches the pair (the peer reads the end). */
    rst_sync(s);
    if (s->reset) { /* closed by the reset (TCP_CLOSE): inet_shutdown's ENOTCONN */
      s->shut_rd |= rd;
      s->shut_wr |= wr;
      return -ENOTCONN;
    }
    if (wr && shutdown(f->hostfd, SHUT_WR) < 0)
      return -errno;
    if (wr && s->link)
      s->link->fin[s->side] = true;
  } else if (s->ext || s->pair || (s->state == SS_CONNECTED && is_stream(s))) {
    if (shutdown(f->hostfd, how) < 0)
      return -errno;
  } else
    shutdown(f->hostfd, how); /* (an unconnected host socket: it keeps the flags, as Linux's) */
  s->shut_rd |= rd;
  s->shut_wr |= wr;
  if (is_inet(s) && !s->ext && !(s->state == SS_CONNECTED || s->dconnected))
    return -ENOTCONN;
  return 0;
}

long sys_shutdown(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, shutdown_on); }

/* getsockname, getpeername */
static long getsockname_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  long r = 0;
  struct sock *s = f->sock;
  struct sockaddr_storage ss;
  socklen_t l;
  bool peer = nr == SYS_getpeername;
  rst_sync(s);
  if (peer && (!(s->state == SS_CONNECTED || (s->type == SOCK_DGRAM && s->dconnected)) || (s->reset && is_inet(s))))
    r = -ENOTCONN; /* (a reset TCP connection is closed: Linux's TCP_CLOSE) */
  else {
    l = sock_name(s, peer, &ss);
    r = addr_out(sb, A(1), A(2), &ss, l);
    if (!A(1) || !A(2))
      r = -EFAULT;
  }
  return r;
}

long sys_getsockname(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, getsockname_on); }

/* ---- options ---- */

enum { O_INT, O_BOOL, O_TV, O_LINGER };
struct optdef {
  int level, name, kind;
  size_t off;
  unsigned fams; /* 1 unix, 2 inet, 4 inet6 */
  unsigned types; /* 1 stream, 2 dgram, 4 seqpacket */
};
#define OF(x) offsetof(struct opts, x)
#define ALLF 7u
#define ALLT 7u
static const struct optdef optdefs[] = {
    {SOL_SOCKET, SO_REUSEADDR, O_BOOL, OF(reuseaddr), ALLF, ALLT},
    {SOL_SOCKET, SO_REUSEPORT, O_BOOL, OF(reuseport), ALLF, ALLT},
    {SOL_SOCKET, SO_KEEPALIVE, O_BOOL, OF(keepalive), ALLF, ALLT},
    {SOL_SOCKET, SO_BROADCAST, O_BOOL, OF(broadcast), ALLF, ALLT},
    {SOL_SOCKET, SO_OOBINLINE, O_BOOL, OF(oobinline), ALLF, ALLT},
    {SOL_SOCKET, SO_PASSCRED, O_BOOL, OF(passcred), 1, ALLT},
    {SOL_SOCKET, SO_PRIORITY, O_INT, OF(priority), ALLF, ALLT},
    {SOL_SOCKET, SO_RCVLOWAT, O_INT, OF(rcvlowat), ALLF, ALLT},
    {SOL_SOCKET, SO_SNDBUF, O_INT, OF(sndbuf), ALLF, ALLT},
    {SOL_SOCKET, SO_RCVBUF, O_INT, OF(rcvbuf), ALLF, ALLT},
    {SOL_SOCKET, SO_LINGER, O_LINGER, OF(linger), ALLF, ALLT},
    {SOL_SOCKET, SO_RCVTIMEO_OLD, O_TV, OF(rcvtimeo), ALLF, ALLT},
    {SOL_SOCKET, SO_SNDTIMEO_OLD, O_TV, OF(sndtimeo), ALLF, ALLT},
    {IPPROTO_TCP, TCP_NODELAY, O_BOOL, OF(nodelay), 6, 1},
    {IPPROTO_TCP, TCP_KEEPIDLE, O_INT, OF(keepidle), 6, 1},
    {IPPROTO_TCP, TCP_KEEPINTVL, O_INT, OF(keepintvl), 6, 1},
    {IPPROTO_TCP, TCP_KEEPCNT, O_INT, OF(keepcnt), 6, 1},
    {IPPROTO_TCP, TCP_CORK, O_BOOL, OF(cork), 6, 1},
    {IPPROTO_TCP, TCP_QUICKACK, O_BOOL, OF(quickack), 6, 1},
    {IPPROTO_TCP, TCP_MAXSEG, O_INT, OF(maxseg), 6, 1},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, O_INT, OF(user_timeout), 6, 1},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, O_INT, OF(defer_accept), 6, 1},
    {IPPROTO_TCP, TCP_FASTOPEN, O_INT, OF(fastopen), 6, 1},
    {IPPROTO_TCP, TCP_SYNCNT, O_INT, OF(tcp_syncnt), 6, 1},
    {IPPROTO_IP, IP_TOS, O_INT, OF(tos), 2, ALLT},
    {IPPROTO_IP, IP_TTL, O_INT, OF(ttl), 2, ALLT},
    {IPPROTO_IP, IP_RECVERR, O_BOOL, OF(recverr), 2, ALLT},
    {IPPROTO_IP, IP_MTU_DISCOVER, O_INT, OF(ip_mtu_discover), 2, ALLT},
    {IPPROTO_IP, IP_FREEBIND, O_BOOL, OF(ip_freebind), 2, ALLT},
    {IPPROTO_IPV6, IPV6_V6ONLY, O_BOOL, OF(v6only), 4, ALLT},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, O_INT, OF(hops), 4, ALLT},
    {IPPROTO_IPV6, IPV6_TCLASS, O_INT, OF(tclass), 4, ALLT},
    {IPPROTO_IPV6, IPV6_RECVERR, O_BOOL, OF(recverr6), 4, ALLT},
};

static const struct optdef *opt_find(const struct sock *s, int level, int name)
{
  if (level == SOL_SOCKET && name == SO_RCVTIMEO_NEW)
    name = SO_RCVTIMEO_OLD;
  if (level == SOL_SOCKET && name == SO_SNDTIMEO_NEW)
    name = SO_SNDTIMEO_OLD;
  unsigned fam = s->family == AF_UNIX ? 1 : s->family == AF_INET ? 2 : 4;
  unsigned ty = s->type == SOCK_STREAM ? 1 : s->type == SOCK_DGRAM ? 2 : 4;
  for (size_t i = 0; i < sizeof optdefs / sizeof *optdefs; i++)
    if (optdefs[i].level == level && optdefs[i].name == name && (optdefs[i].fams & fam) && (optdefs[i].types & ty))
      return &optdefs[i];
  return NULL;
}

/* setsockopt, getsockopt */
static long sockopt_on(struct sb *sb, struct file *f, const uint64_t a[6], long nr)
{
  long r = 0;
  struct sock *s = f->sock;
  int level = (int)A(1), name = (int)A(2);
  const struct optdef *d = opt_find(s, level, name);
  char *base = (char *)&s->o;
  union {
    int i;
    struct timeval tv;
    struct linger lg;
    struct ucred uc;
    char b[32];
  } v;
  memset(&v, 0, sizeof v);
  if (level == SOL_SOCKET && name == SO_PASSCRED && is_inet(s))
    return -EOPNOTSUPP; /* (Linux: AF_UNIX and netlink only) */
  if (s->type == SOCK_DGRAM && is_inet(s) && (level == IPPROTO_UDP || level == IPPROTO_UDPLITE) &&
      (name == UDPLITE_SEND_CSCOV || name == UDPLITE_RECV_CSCOV)) {
    /* UDP-Lite's checksum coverage, as udp_lib_setsockopt/getsockopt:
     * stored (a local datagram is never corrupted: nothing to check), 1-7
     * is 8, above 65535 is 65535; a UDP socket reads 0 and cannot set it. */
    int *x = name == UDPLITE_SEND_CSCOV ? &s->o.cscov_send : &s->o.cscov_recv;
    if (nr == SYS_setsockopt) {
      if (A(4) < sizeof(int))
        return -EINVAL;
      if (mm_copy_in(sb, &v.i, A(3), sizeof v.i) < 0)
        return -EFAULT;
      if (s->proto != IPPROTO_UDPLITE)
        return -ENOPROTOOPT;
      *x = v.i != 0 && v.i < 8 ? 8 : v.i > 65535 ? 65535 : v.i;
      return 0;
    }
    int ul;
    if (mm_copy_in(sb, &ul, A(4), sizeof ul) < 0)
      return -EFAULT;
    if (ul < 0)
      return -EINVAL;
    socklen_t l = ul < (int)sizeof(int) ? (socklen_t)ul : sizeof(int);
    if (mm_copy_out(sb, A(3), x, l) < 0 || mm_copy_out(sb, A(4), &l, sizeof l) < 0)
      return -EFAULT;
    return 0;
  }
  if (nr == SYS_setsockopt) {
    uint64_t len = A(4);
    if (!d)
      r = -ENOPROTOOPT;
    else if ((d->kind == O_TV && len < sizeof(struct timeval)) || (d->kind == O_LINGER && len < sizeof(struct linger)) ||
             len < sizeof(int))
      r = -EINVAL;
    else if (mm_copy_in(sb, &v, A(3), len < sizeof v ? len : sizeof v) < 0)
      r = -EFAULT;
    else if (d->kind == O_TV) {
      if (v.tv.tv_usec < 0 || v.tv.tv_usec >= 1000000)
        r = -EDOM;
      else
        *(uint64_t *)(base + d->off) =
            v.tv.tv_sec < 0 ? 0 : (uint64_t)v.tv.tv_sec * 1000000000ull + (uint64_t)v.tv.tv_usec * 1000ull;
    } else if (d->kind == O_LINGER)
      memcpy(base + d->off, &v.lg, sizeof v.lg);
    else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && s->bound)
      r = -EINVAL; /* as Linux: not after bind */
    else if (level == SOL_SOCKET && (name == SO_SNDBUF || name == SO_RCVBUF)) {
      /* Linux doubles it (bookkeeping room), at least its minimum */
      int x = v.i < 0 ? 0 : v.i > 212992 ? 212992 : v.i;
      *(int *)(base + d->off) = 2 * x < (name == SO_SNDBUF ? 4608 : 2304) ? (name == SO_SNDBUF ? 4608 : 2304) : 2 * x;
    } else if (d->kind == O_BOOL)
      *(int *)(base + d->off) = v.i != 0;
    else if (level == SOL_SOCKET && name == SO_RCVLOWAT)
      *(int *)(base + d->off) = v.i < 1 ? 1 : v.i;
    else
      *(int *)(base + d->off) = v.i;
    if (r == 0 && s->ext)
      ext_opts(s, f->hostfd);
    else if (r == 0 && level == SOL_SOCKET && name == SO_OOBINLINE)
      oob_inline(f, s);
    return r;
  }
  int ul;
  if (mm_copy_in(sb, &ul, A(4), sizeof ul) < 0)
    return -EFAULT;
  if (ul < 0)
    return -EINVAL;
  socklen_t l = sizeof(int);
  if (d) {
    if (d->kind == O_TV) {
      uint64_t ns = *(uint64_t *)(base + d->off);
      v.tv.tv_sec = (time_t)(ns / 1000000000ull);
      v.tv.tv_usec = (suseconds_t)(ns % 1000000000ull / 1000);
      l = sizeof v.tv;
    } else if (d->kind == O_LINGER) {
      memcpy(&v.lg, base + d->off, sizeof v.lg);
      l = sizeof v.lg;
    } else
      v.i = *(int *)(base + d->off);
  } else if (level == SOL_SOCKET && name == SO_ERROR) {
    rst_sync(s);
    v.i = s->so_error ? s->so_error : s->reset_err;
    s->so_error = 0;
    s->reset_err = 0;
    if (!v.i && s->ext) { /* the host socket's (a non-blocking connect's outcome) */
      socklen_t el = sizeof v.i;
      getsockopt(f->hostfd, SOL_SOCKET, SO_ERROR, &v.i, &el);
      if (v.i && s->connecting) {
        s->state = SS_NEW;
        s->connecting = false;
      }
    }
  } else if (level == SOL_SOCKET && name == SO_TYPE)
    v.i = s->type;
  else if (level == SOL_SOCKET && name == SO_DOMAIN)
    v.i = s->family;
  else if (level == SOL_SOCKET && name == SO_PROTOCOL)
    v.i = s->proto;
  else if (level == SOL_SOCKET && name == SO_ACCEPTCONN)
    v.i = s->state == SS_LISTEN;
  else if (level == SOL_SOCKET && name == SO_PEERCRED && s->family == AF_UNIX) {
    v.uc = s->state == SS_CONNECTED ? s->peercred : (struct ucred){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    l = sizeof v.uc;
  } else if (level == IPPROTO_IP && name == IP_MTU && s->state == SS_CONNECTED && s->family == AF_INET)
    v.i = 65536;
  else
    r = -ENOPROTOOPT;
  if (r == 0) {
    if ((socklen_t)ul < l && !(l == sizeof(int) && ul > 0))
      l = (socklen_t)ul;
    else if ((socklen_t)ul < l)
      l = (socklen_t)ul;
    if (mm_copy_out(sb, A(3), &v, l) < 0 || mm_copy_out(sb, A(4), &l, sizeof l) < 0)
      r = -EFAULT;
  }
  return r;
}

long sys_sockopt(struct sb *sb, const uint64_t a[6], long nr) { return sock_call(sb, a, nr, sockopt_on); }

/* ---- hooks ---- */

/* Readiness of a socket (event.c file_poll) from its host fd's (hostev).
 * A local TCP connection is a host AF_UNIX pair, whose end says POLLHUP
 * once the other is closed; Linux's tcp_poll says POLLHUP only when both
 * directions are shut (the peer's FIN and our SHUT_WR) or the connection
 * is reset, POLLIN | POLLRDHUP once nothing more comes (the peer's FIN, our
 * SHUT_RD), POLLERR while an error waits (SO_ERROR). */
short net_poll(struct file *f, short hostev)
{
  struct sock *s = f->sock;
  if (!s->ext && s->so_error)
    hostev |= POLLERR; /* (an error waits: a refused connect, a UDP peer's ICMP) */
  if (s->ext || !is_inet(s) || s->type != SOCK_STREAM || s->state != SS_CONNECTED)
    return hostev;
  rst_sync(s);
  bool rcv_end = (hostev & POLLRDHUP) || s->shut_rd || s->reset;
  short ev = hostev & ~(POLLHUP | POLLERR); /* (the host pair's POLLERR: its ECONNRESET, see sk_recv) */
  if (rcv_end)
    ev |= POLLIN | POLLRDNORM | POLLRDHUP;
  if (s->reset)
    ev |= POLLOUT | POLLWRNORM | POLLHUP;
  else if (rcv_end && s->shut_wr)
    ev |= POLLHUP;
  if (s->reset_err || s->so_error)
    ev |= POLLERR;
  return ev;
}

/* Whether a wait must not block on f's host fd: it says POLLHUP, which
 * net_poll hides (a TCP peer's orderly close; nothing more can happen:
 * the host fd would end every wait at once). */
bool net_hup_hidden(struct file *f)
{
  struct sock *s = f->sock;
  if (s->ext || !is_inet(s) || s->type != SOCK_STREAM || s->state != SS_CONNECTED)
    return false;
  struct pollfd p = {.fd = f->hostfd, .events = POLLIN | POLLOUT | POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) && !(net_poll(f, p.revents) & POLLHUP);
}

/* ioctl of a socket (fs.c, after the requests every fd has): SIOCINQ
 * (FIONREAD), SIOCOUTQ and SIOCATMARK as Linux's unix_ioctl, tcp_ioctl and
 * udp_ioctl answer them; any other request ENOTTY (sock_do_ioctl). A
 * listener's SIOCINQ is EINVAL (and a TCP one's SIOCOUTQ). SIOCINQ is the host socket's (the
 * bytes a connected pair holds; a datagram inbox's first datagram, less
 * its source header); SIOCOUTQ is the host's for AF_UNIX, 0 for a local
 * TCP or UDP socket (Linux's loopback acknowledges what its receiver has
 * queued at once: the unacknowledged bytes it counts are none).
 * SIOCATMARK of a connected stream socket is its host socket's (the urgent
 * byte's mark: oob_inline's note), 0 for one not connected; UDP's is
 * ENOTTY, AF_UNIX datagram and seqpacket ones' EOPNOTSUPP. */
long net_ioctl(struct sb *sb, struct file *f, unsigned long req, uint64_t arg)
{
  struct sock *s = f->sock;
  int v = 0;
  if (req != SIOCINQ && req != SIOCOUTQ && req != SIOCATMARK)
    return -ENOTTY;
  if (s->ext) {
    if (ioctl(f->hostfd, req, &v) < 0)
      return -errno;
  } else if (req == SIOCATMARK) {
    if (s->type != SOCK_STREAM)
      return is_inet(s) ? -ENOTTY : -EOPNOTSUPP;
    if (s->state == SS_CONNECTED && ioctl(f->hostfd, req, &v) < 0) /* (the host pair's mark: oob_note) */
      return -errno;
  } else if (s->state == SS_LISTEN) {
    if (req == SIOCINQ || is_inet(s))
      return -EINVAL; /* (an AF_UNIX listener's SIOCOUTQ: 0, nothing sent) */
  } else if (req == SIOCINQ || s->family == AF_UNIX) {
    if (ioctl(f->hostfd, req, &v) < 0)
      return -errno;
    if (req == SIOCINQ && s->type == SOCK_DGRAM && !s->pair && v > 0)
      v = v >= (int)sizeof(struct dhdr) ? v - (int)sizeof(struct dhdr) : 0;
  }
  return mm_copy_out(sb, arg, &v, sizeof v) < 0 ? -EFAULT : 0;
}


void net_stat(struct file *f, struct stat *st)
{
  st->st_mode = S_IFSOCK | 0777;
  st->st_size = 0;
  st->st_blksize = 4096;
  st->st_nlink = 1;
  (void)f;
}

int net_describe(struct file *f, char *out, size_t size)
{
  struct sock *s = f->sock;
  const char *fam = s->family == AF_UNIX ? "AF_UNIX" : s->family == AF_INET ? "AF_INET" : "AF_INET6";
  const char *ty = s->type == SOCK_STREAM ? "stream" : s->type == SOCK_DGRAM ? "datagram" : "seqpacket";
  const char *st = s->pair ? "from socketpair" : s->ext ? "to the host's network" : s->state == SS_LISTEN ? "listening" : s->state == SS_CONNECTED ? "connected" : s->bound ? "bound" : "unbound";
  char name[160] = "";
  if (s->bound && is_inet(s)) {
    char a[64];
    if (mapped(s->local.a))
      snprintf(a, sizeof a, "%u.%u.%u.%u", s->local.a[12], s->local.a[13], s->local.a[14], s->local.a[15]);
    else
      snprintf(a, sizeof a, "%s", v6_any(s->local.a) ? "[::]" : v6_loop(s->local.a) ? "[::1]" : "[v6]");
    snprintf(name, sizeof name, " on %s:%u", a, s->local.port);
  } else if (s->bound && s->un.len)
    snprintf(name, sizeof name, " on %s%.*s", s->un.name[0] ? "" : "@", (int)(s->un.len - !s->un.name[0]),
             s->un.name + !s->un.name[0]);
  return snprintf(out, size, "%s %s socket, %s%s", fam, ty, st, name);
}

/* ---- snapshots (fs.c fs_save, fs_load) ---- */

/* What a template carries of a socket (the note at the top says which):
 * a listener with an empty accept queue, a stream or seqpacket socket that
 * is not connected (new or bound), a datagram socket (not socketpair's)
 * whose inbox is empty; with its name in the table, options, credentials.
 * NULL: it can be saved; else why not (fs_save names the fd). */
const char *net_save_check(struct file *f)
{
  struct sock *s = f->sock;
  static char why[96];
  if (s->pair)
    return "a connected pair: connected sockets are not carried into children";
  if (s->ext)
    return "a socket of the host's network (--net): not carried into children";
  if (s->state == SS_CONNECTED)
    return "connected: connected sockets are not carried into children";
  if (s->state == SS_LISTEN && s->nq) {
    snprintf(why, sizeof why, "its accept queue holds %d connection%s not accepted yet", s->nq, s->nq == 1 ? "" : "s");
    return why;
  }
  char c;
  if (s->type == SOCK_DGRAM && recv(f->hostfd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0)
    return "datagrams wait in its inbox";
  return NULL;
}

/* The socket file node of an AF_UNIX socket bound to a path (to be saved
 * with the /tmp tree), else NULL. */
struct tnode *net_node(struct file *f) { return f->sock ? f->sock->node : NULL; }

#define SOCK_TAG 0x314b434f53464343ull /* "CCFSOCK1" */
enum { SV_BOUND = 1, SV_DCONN = 2, SV_SHUT_RD = 4, SV_SHUT_WR = 8, SV_ALL = 15 };

static void ep_save(struct wbuf *w, const struct ep *e)
{
  w_bytes(w, e->a, 16);
  w_u64(w, e->port);
}

static void un_save(struct wbuf *w, const struct uname *u)
{
  w_u64(w, u->len);
  w_bytes(w, u->name, sizeof u->name);
}

/* One socket's record, after its file table entry (net_save_check said
 * yes): the tag, what it is, its names, options, credentials and the
 * table's counters (the same in every record: next ephemeral port and
 * autobind name). Its node's id: the /tmp tree was written before. */
void net_save(struct file *f, struct wbuf *w)
{
  struct sock *s = f->sock;
  w_u64(w, SOCK_TAG);
  w_u64(w, (uint64_t)s->family);
  w_u64(w, (uint64_t)s->type);
  w_u64(w, (uint64_t)s->proto);
  w_u64(w, (uint64_t)s->state);
  w_u64(w, (s->bound ? SV_BOUND : 0) | (s->dconnected ? SV_DCONN : 0) | (s->shut_rd ? SV_SHUT_RD : 0) |
               (s->shut_wr ? SV_SHUT_WR : 0));
  w_u64(w, (uint64_t)(uint32_t)s->so_error);
  ep_save(w, &s->local);
  ep_save(w, &s->peer);
  un_save(w, &s->un);
  un_save(w, &s->upeer);
  w_u64(w, s->node ? tmp_node_id(s->node) : 0);
  w_u64(w, (uint64_t)(uint32_t)s->cred.pid);
  w_u64(w, s->cred.uid);
  w_u64(w, s->cred.gid);
  w_u64(w, (uint64_t)s->backlog);
  w_u64(w, sizeof s->o);
  w_bytes(w, &s->o, sizeof s->o);
  w_u64(w, s->net->next_port);
  w_u64(w, s->net->next_auto);
}

static bool ep_load(struct rbuf *r, struct ep *e)
{
  r_bytes(r, e->a, 16);
  uint64_t p = r_u64(r);
  e->port = (uint16_t)p;
  return !r->err && p <= 0xffff;
}

static bool un_load(struct rbuf *r, struct uname *u)
{
  uint64_t l = r_u64(r);
  r_bytes(r, u->name, sizeof u->name);
  if (r->err || l > sizeof u->name - 1) /* sun_path's 108 bytes */
    return false;
  u->len = (socklen_t)l;
  memset(u->name + l, 0, sizeof u->name - l);
  /* a path name: NUL-terminated at its end, counted (un_in) */
  return !(l && u->name[0] && (u->name[l - 1] || strlen(u->name) != l - 1));
}

static bool addr_ok(const struct sock *s, const struct ep *e)
{
  if (s->family == AF_INET && !mapped(e->a))
    return false;
  return v4_any(e->a) || v4_loop(e->a) || v6_any(e->a) || v6_loop(e->a);
}

/* A socket file from its record (net_save), its host objects new: a
 * listener's queue pipe, a socket's unconnected host socket, a datagram
 * socket's inbox; its name in sb's table. nodes: the /tmp tree's (ids
 * 1..nnodes). 0 and *out, or -1 (a bad record; cf_error not set: fs_load
 * names it). */
int net_load(struct sb *sb, struct rbuf *r, int fl, struct tnode **nodes, size_t nnodes, struct file **out)
{
  *out = NULL;
  if (r_u64(r) != SOCK_TAG || r->err)
    return -1;
  uint64_t family = r_u64(r), type = r_u64(r), proto = r_u64(r), state = r_u64(r), flags = r_u64(r),
           so_error = r_u64(r);
  struct sock t;
  memset(&t, 0, sizeof t);
  t.family = (int)family;
  t.type = (int)type;
  if (r->err || (family != AF_UNIX && family != AF_INET && family != AF_INET6) ||
      (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET) || (state != SS_NEW && state != SS_LISTEN) ||
      (flags & ~(uint64_t)SV_ALL) || so_error > 4095)
    return -1;
  if (family == AF_UNIX ? proto != 0 && proto != PF_UNIX
                        : type == SOCK_SEQPACKET || (proto != (type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP) &&
                                                   !(type == SOCK_DGRAM && proto == IPPROTO_UDPLITE)))
    return -1;
  bool bound = flags & SV_BOUND;
  if ((state == SS_LISTEN && (type == SOCK_DGRAM || !bound)) || ((flags & SV_DCONN) && type != SOCK_DGRAM))
    return -1;
  if (!ep_load(r, &t.local) || !ep_load(r, &t.peer) || !un_load(r, &t.un) || !un_load(r, &t.upeer))
    return -1;
  uint64_t node = r_u64(r), pid = r_u64(r), uid = r_u64(r), gid = r_u64(r), backlog = r_u64(r), osize = r_u64(r);
  if (r->err || node > nnodes || pid > INT32_MAX || uid > UINT32_MAX || gid > UINT32_MAX || backlog > 4096 ||
      osize > sizeof t.o || osize < offsetof(struct opts, cscov_send))
    return -1;
  r_bytes(r, &t.o, osize); /* (a record from before the UDP-Lite coverage options: without them, 0 as a new socket's) */
  uint64_t next_port = r_u64(r), next_auto = r_u64(r);
  if (r->err || next_port < EPHEMERAL_LO || next_port > EPHEMERAL_HI || next_auto > UINT32_MAX)
    return -1;
  /* the names: INET on the loopback (or a wildcard); AF_UNIX a path's
   * socket file node, or an abstract name, or none */
  if (family != AF_UNIX) {
    if (t.un.len || t.upeer.len || node || (bound && !addr_ok(&t, &t.local)) ||
        ((flags & SV_DCONN) && !addr_ok(&t, &t.peer)))
      return -1;
  } else {
    bool path = t.un.len && t.un.name[0];
    if (bound != (t.un.len > 0) || path != (node != 0) || (node && (!nodes[node - 1] || !tmp_is_sock(nodes[node - 1]))))
      return -1;
  }
  struct sock *s = sock_new(sb, (int)family, (int)type, (int)proto);
  if (!s)
    return -1;
  s->state = (int)state;
  s->dconnected = flags & SV_DCONN;
  s->shut_rd = flags & SV_SHUT_RD;
  s->shut_wr = flags & SV_SHUT_WR;
  s->so_error = (int)so_error;
  s->local = t.local;
  s->peer = t.peer;
  s->un = t.un;
  s->upeer = t.upeer;
  s->cred = (struct ucred){.pid = (pid_t)pid, .uid = (uid_t)uid, .gid = (gid_t)gid};
  s->backlog = (int)backlog;
  s->o = t.o;
  int h, p[2];
  if (type == SOCK_DGRAM) {
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0)
      goto fail;
    h = p[0];
    s->inbox_tx = p[1];
    shutdown(p[1], SHUT_RD);
  } else if (state == SS_LISTEN) {
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
      goto fail;
    h = p[0];
    s->notify_wr = p[1];
  } else if ((h = socket(AF_UNIX, host_type(s) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
    goto fail;
  struct file *f;
  if (sock_file(sb, s, h, fl & O_NONBLOCK, &f) < 0) /* (it closed and freed it all) */
    return -1;
  if (node) {
    s->node = nodes[node - 1];
    tmp_ref(s->node);
  }
  s->net->next_port = (uint16_t)next_port;
  s->net->next_auto = (unsigned)next_auto;
  if (bound && name_add(s->net, s) < 0) {
    file_unref(f);
    return -1;
  }
  *out = f;
  return 0;
fail:
  if (s->inbox_tx >= 0)
    close(s->inbox_tx);
  if (s->notify_wr >= 0)
    close(s->notify_wr);
  free(s);
  return -1;
}

/* ---- forwarded ports (the daemon's POST /v1/sandboxes/ID/ports) ---- */

int cf_sandbox_net_accept(struct cf_sandbox *box, unsigned port, int fd)
{
  struct sb *sb = &box->s;
  pthread_mutex_t *mu = sb_mutex(sb);
  int e = 0;
  pthread_mutex_lock(mu);
  struct net *n = proc_first(sb)->net;
  struct ep lo;
  ep_v4(&lo, htonl(0x7f000001), (uint16_t)port);
  struct sock *l = NULL;
  if (n && port && port < 65536 && !(l = inet_find(n, IPPROTO_TCP, lo.a, (uint16_t)port))) {
    memset(lo.a, 0, 16);
    lo.a[15] = 1;
    l = inet_find(n, IPPROTO_TCP, lo.a, (uint16_t)port);
    if (!l)
      ep_v4(&lo, htonl(0x7f000001), (uint16_t)port);
  }
  int cap = l && l->backlog + 1 >= 64 ? l->backlog + 1 : 64;
  if (!l)
    e = ECONNREFUSED;
  else if (l->nq >= cap)
    e = EAGAIN;
  else if (l->nq == l->capq) {
    int c = l->capq ? 2 * l->capq : 8;
    struct pend *q = realloc(l->q, (size_t)c * sizeof *q);
    if (!q)
      e = ENOMEM;
    else {
      l->q = q;
      l->capq = c;
    }
  }
  if (!e && (fcntl(fd, F_SETFL, O_RDWR | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0))
    e = errno;
  if (!e) {
    struct pend *q = &l->q[l->nq++];
    memset(q, 0, sizeof *q);
    q->fd = fd;
    q->local = lo;
    if (l->family == AF_INET6 && !v6_any(l->local.a) && !v6_loop(l->local.a) && !mapped(l->local.a))
      q->local = l->local;
    q->peer = lo; /* from the loopback, as a client inside would */
    if (n->fwd_port < EPHEMERAL_LO || n->fwd_port >= EPHEMERAL_HI)
      n->fwd_port = EPHEMERAL_HI - 1024;
    q->peer.port = n->fwd_port++;
    q->cred = (struct ucred){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    char one = 1;
    if (write(l->notify_wr, &one, 1) != 1) {
      l->nq--;
      e = ENOBUFS;
    } else
      wake_all(sb);
  }
  pthread_mutex_unlock(mu);
  if (e) {
    close(fd);
    return cf_fail(e, "port %u: %s", port,
                   e == ECONNREFUSED ? "nothing listens on it in the sandbox" : e == EAGAIN ? "its listener's queue is full" : strerror(e));
  }
  return 0;
}
