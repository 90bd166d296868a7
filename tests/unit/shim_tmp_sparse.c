/* Sparse files in the sandbox's /tmp with no VM, as on Linux's tmpfs: a
 * write at 2 GiB (CPython's test_io large_file_ops) makes a file of that
 * size whose hole reads as zeros, and truncate moves its end; a file far
 * larger than /tmp itself holds only the pages written. Before, a write or
 * truncate past the /tmp region's size was EFBIG. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "shim_util.h"
#include "tap.h"

int main(void)
{
  shim_setup("/");
  const uint64_t large = 1ull << 31;
  long fd = S3(SYS_open, gs("/tmp/big"), O_RDWR | O_CREAT, 0600);
  ok(fd >= 0, "open /tmp/big");
  is(S4(SYS_pwrite64, fd, gs("xxx"), 3, large), 3, "pwrite of 3 bytes at 2 GiB");
  uint64_t st = galloc(NULL, sizeof(struct stat));
  is(S2(SYS_fstat, fd, st), 0, "fstat");
  struct stat s;
  memcpy(&s, hp(st), sizeof s);
  ok((uint64_t)s.st_size == large + 3, "size 2 GiB + 3 (got %lld)", (long long)s.st_size);
  uint64_t b = galloc(NULL, 4096);
  memset(hp(b), 0x55, 4096);
  is(S4(SYS_pread64, fd, b, 4096, large / 2), 4096, "pread in the hole");
  uint8_t want[4096] = {0};
  ok(!memcmp(hp(b), want, 4096), "reads zeros");
  is(S4(SYS_pread64, fd, b, 10, large), 3, "pread at 2 GiB: the 3 bytes");
  ok(!memcmp(hp(b), "xxx", 3), "xxx");
  is(S2(SYS_ftruncate, fd, large + 2), 0, "ftruncate to 2 GiB + 2");
  is(S2(SYS_fstat, fd, st), 0, "fstat");
  memcpy(&s, hp(st), sizeof s);
  ok((uint64_t)s.st_size == large + 2, "size 2 GiB + 2");
  is(S2(SYS_ftruncate, fd, 4 * large), 0, "ftruncate to 8 GiB (larger than /tmp)");
  is(S4(SYS_pwrite64, fd, gs("y"), 1, 4 * large - 1), 1, "a byte at its end");
  is(S1(SYS_close, fd), 0, "close");
  is(S1(SYS_unlink, gs("/tmp/big")), 0, "unlink");
  return done_testing();
}
