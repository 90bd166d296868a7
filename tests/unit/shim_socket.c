/* socketpair(AF_UNIX) and the socket calls on its sockets, with no VM, and
 * the ioctls Linux serves on every fd (FIONBIO, FIOCLEX, FIONCLEX). Before,
 * socketpair was EACCES (asyncio's event loop could not make its self-pipe:
 * tests/sandbox-pythreads.sh's asyncio part) and those ioctls were ENOTTY
 * on anything but a terminal, where Linux gives 0. Compared with the same
 * calls made natively where the result is the host's. */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "shim_util.h"
#include "tap.h"

int main(void)
{
  shim_setup("/");
  uint64_t sv = galloc(NULL, 8), buf = galloc(NULL, 64), one = galloc(NULL, 4);
  int v = 1;
  memcpy(hp(one), &v, 4);
  is(S3(SYS_socket, AF_NETLINK, SOCK_RAW, 0), -EAFNOSUPPORT, "socket(AF_NETLINK): EAFNOSUPPORT (shim_net.c: the others)");
  int nat[2], want = socketpair(AF_INET, SOCK_STREAM, 0, nat) < 0 ? -errno : 0;
  is(S4(SYS_socketpair, AF_INET, SOCK_STREAM, 0, sv), want, "socketpair(AF_INET): as natively (%d)", want);
  is(S4(SYS_socketpair, AF_UNIX, 99, 0, sv), -EINVAL, "socketpair of a bad type: EINVAL");
  is(S4(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0, "socketpair(AF_UNIX, SOCK_STREAM)");
  int s[2];
  memcpy(s, hp(sv), 8);
  ok(s[0] >= 0 && s[1] >= 0 && s[0] != s[1], "two fds (%d %d)", s[0], s[1]);
  is(S2(SYS_fcntl, s[0], F_GETFD), FD_CLOEXEC, "SOCK_CLOEXEC: FD_CLOEXEC");
  is(S3(SYS_write, s[0], gs("ping"), 4), 4, "write to one end");
  is(S3(SYS_read, s[1], buf, 64), 4, "read from the other");
  ok(!memcmp(hp(buf), "ping", 4), "the bytes");
  is(S6(SYS_sendto, s[1], gs("pong!"), 5, 0, 0, 0), 5, "send");
  uint64_t addr = galloc(NULL, 128), alen = galloc(NULL, 4);
  uint32_t l = 128;
  memcpy(hp(alen), &l, 4);
  is(S6(SYS_recvfrom, s[0], buf, 64, 0, addr, alen), 5, "recvfrom");
  memcpy(&l, hp(alen), 4);
  ok(l == 0, "the peer is unnamed: length 0, as Linux (was 2: a family alone) (len %u)", l);
  is(S6(SYS_recvfrom, s[0], buf, 64, MSG_DONTWAIT, 0, 0), -EAGAIN, "recv on an empty socket, MSG_DONTWAIT: EAGAIN");
  is(S6(SYS_sendto, s[0], gs("x"), 1, 0, addr, 2), -EISCONN, "sendto with a destination: EISCONN");
  uint64_t opt = galloc(NULL, 4), olen = galloc(NULL, 4);
  l = 4;
  memcpy(hp(olen), &l, 4);
  is(S5(SYS_getsockopt, s[0], SOL_SOCKET, SO_TYPE, opt, olen), 0, "getsockopt SO_TYPE");
  memcpy(&v, hp(opt), 4);
  is(v, SOCK_STREAM, "SOCK_STREAM");
  memcpy(hp(opt), &(int){65536}, 4);
  is(S5(SYS_setsockopt, s[0], SOL_SOCKET, SO_SNDBUF, opt, 4), 0, "setsockopt SO_SNDBUF");
  is(S2(SYS_shutdown, s[0], SHUT_WR), 0, "shutdown SHUT_WR");
  is(S6(SYS_recvfrom, s[1], buf, 64, 0, 0, 0), 0, "the peer reads end of file");
  is(S6(SYS_sendto, s[0], gs("x"), 1, MSG_NOSIGNAL, 0, 0), -EPIPE, "send after SHUT_WR: EPIPE");
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", s[0]);
  long n = S3(SYS_readlink, gs(path), buf, 63);
  ok(n > 8 && !memcmp(hp(buf), "socket:[", 8), "/proc/self/fd/N of a socket reads socket:[...] (%.*s)", (int)(n > 0 ? n : 0),
     (char *)hp(buf));
  long st = galloc(NULL, 144);
  is(S2(SYS_fstat, s[0], st), 0, "fstat");
  uint32_t mode;
  memcpy(&mode, (char *)hp(st) + 24, 4);
  ok(S_ISSOCK(mode), "S_IFSOCK");

  /* The ioctls of every fd. */
  uint64_t pv = galloc(NULL, 8);
  is(S1(SYS_pipe, pv), 0, "pipe");
  int p[2];
  memcpy(p, hp(pv), 8);
  is(S3(SYS_ioctl, p[0], FIONBIO, one), 0, "FIONBIO 1 on a pipe");
  ok(S2(SYS_fcntl, p[0], F_GETFL) & O_NONBLOCK, "it is O_NONBLOCK");
  memcpy(hp(opt), &(int){0}, 4);
  is(S3(SYS_ioctl, p[0], FIONBIO, opt), 0, "FIONBIO 0");
  ok(!(S2(SYS_fcntl, p[0], F_GETFL) & O_NONBLOCK), "it is blocking");
  is(S3(SYS_ioctl, s[1], FIONBIO, one), 0, "FIONBIO 1 on a socket (Python's setblocking)");
  is(S6(SYS_recvfrom, s[1], buf, 64, 0, 0, 0), 0, "still end of file");
  is(S3(SYS_ioctl, p[1], FIOCLEX, 0), 0, "FIOCLEX");
  is(S2(SYS_fcntl, p[1], F_GETFD), FD_CLOEXEC, "FD_CLOEXEC set");
  is(S3(SYS_ioctl, p[1], FIONCLEX, 0), 0, "FIONCLEX");
  is(S2(SYS_fcntl, p[1], F_GETFD), 0, "FD_CLOEXEC clear");
  is(S3(SYS_ioctl, p[1], TCGETS, buf), -ENOTTY, "TCGETS on a pipe: ENOTTY");
  is(S3(SYS_sendto, p[1], buf, 1), -ENOTSOCK, "send on a pipe: ENOTSOCK");
  is(S3(SYS_ioctl, 99, FIONBIO, one), -EBADF, "FIONBIO on a closed fd: EBADF");
  return done_testing();
}
