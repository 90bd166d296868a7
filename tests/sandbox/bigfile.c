/* A file bigger than a sandbox's guest memory (tests/sandbox-disk.sh,
 * issue 15 item 2): writes MIB MiB of a pattern that differs per offset to
 * PATH in 1 MiB writes, reads it back and checks every byte, then a sparse
 * tail (a hole past the end), SEEK_DATA/SEEK_HOLE, a truncation and an
 * fallocate; prints a summary natively and in the sandbox alike.
 * Usage: bigfile PATH MIB
 * bigfile PATH MIB write: only the pattern, kept (a template's file);
 * bigfile PATH MIB check: reads it back, prints how many MiB differ. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static void fill(uint64_t *w, uint64_t off)
{
  for (size_t i = 0; i < CHUNK / 8; i++)
    w[i] = (off + i * 8) * 0x9e3779b97f4a7c15ull ^ 0x5a5a;
}

static void die(const char *what)
{
  printf("%s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv)
{
  if (argc != 3 && argc != 4)
    return 2;
  const char *path = argv[1], *mode = argc == 4 ? argv[3] : "all";
  uint64_t n = strtoull(argv[2], NULL, 10);
  uint64_t *buf = malloc(CHUNK), *got = malloc(CHUNK);
  if (!buf || !got)
    die("malloc");
  if (strcmp(mode, "check") == 0) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
      die("open");
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
      fill(buf, i * CHUNK);
      if (read(fd, got, CHUNK) != CHUNK)
        die("read");
      bad += memcmp(buf, got, CHUNK) != 0;
    }
    printf("%s: %llu of %llu MiB differ, then %zd bytes\n", path, (unsigned long long)bad, (unsigned long long)n,
           read(fd, got, CHUNK));
    return 0;
  }
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0)
    die("open");
  for (uint64_t i = 0; i < n; i++) {
    fill(buf, i * CHUNK);
    ssize_t k = write(fd, buf, CHUNK);
    if (k != CHUNK) {
      printf("write at %llu MiB: %zd %s\n", (unsigned long long)i, k, k < 0 ? strerror(errno) : "short");
      return 1;
    }
  }
  if (fsync(fd) < 0 || close(fd) < 0)
    die("fsync/close");
  if (strcmp(mode, "write") == 0)
    return 0;
  struct stat st;
  if (stat(path, &st) < 0)
    die("stat");
  printf("size %lld\n", (long long)st.st_size);
  fd = open(path, O_RDWR);
  if (fd < 0)
    die("reopen");
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    fill(buf, i * CHUNK);
    ssize_t k = read(fd, got, CHUNK);
    if (k != CHUNK)
      die("read");
    bad += memcmp(buf, got, CHUNK) != 0;
  }
  printf("read back: %llu of %llu MiB differ, then read at the end: %zd\n", (unsigned long long)bad,
         (unsigned long long)n, read(fd, got, CHUNK));
  /* a hole of 3 MiB past the end, then 1 MiB of data */
  uint64_t end = n * CHUNK, tail = end + 3 * CHUNK;
  fill(buf, tail);
  if (pwrite(fd, buf, CHUNK, (off_t)tail) != CHUNK)
    die("pwrite tail");
  off_t h = lseek(fd, 0, SEEK_HOLE), d = lseek(fd, (off_t)end, SEEK_DATA);
  printf("first hole at %lld MiB, data again at %lld MiB\n", (long long)(h / CHUNK), (long long)(d / CHUNK));
  if (pread(fd, got, CHUNK, (off_t)(end + CHUNK)) != CHUNK)
    die("pread hole");
  uint64_t nz = 0;
  for (size_t i = 0; i < CHUNK / 8; i++)
    nz += got[i] != 0;
  printf("the hole reads %llu non-zero words\n", (unsigned long long)nz);
  /* truncate into the middle, grow again: the cut part reads as zeros */
  if (ftruncate(fd, (off_t)(end / 2 + 100)) < 0 || ftruncate(fd, (off_t)end) < 0)
    die("ftruncate");
  if (pread(fd, got, CHUNK, (off_t)(end / 2)) != CHUNK)
    die("pread cut");
  fill(buf, end / 2);
  nz = 0;
  for (size_t i = 0; i < CHUNK / 8; i++)
    nz += i < 100 / 8 ? got[i] != buf[i] : i == 100 / 8 ? 0 : got[i] != 0;
  printf("after truncate and grow: %llu words wrong\n", (unsigned long long)nz);
  if (fallocate(fd, 0, (off_t)end, 2 * CHUNK) < 0)
    die("fallocate");
  if (fstat(fd, &st) < 0)
    die("fstat");
  printf("after fallocate: size %lld\n", (long long)st.st_size);
  if (close(fd) < 0 || unlink(path) < 0)
    die("unlink");
  printf("done\n");
  return 0;
}
