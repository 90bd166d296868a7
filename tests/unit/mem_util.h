/* Shared by tests/unit/{uffd,mem,dirty}.c: a temp store, deterministic
 * images with data and empty runs, helpers run as separate processes
 * (this binary exec'd with --helper ...). Not a test program itself. */
#ifndef COWFORK_TEST_MEM_UTIL_H
#define COWFORK_TEST_MEM_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/image.h"
#include "cowfork/store.h"

__attribute__((unused)) static char tdir[256];
__attribute__((unused)) static struct cf_store *tstore;

__attribute__((unused)) static uint64_t t_rnd(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

__attribute__((unused)) static void t_fill(char *b, size_t n, uint64_t seed)
{
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = t_rnd(&x);
    memcpy(b + i, &v, 8);
  }
}

/* size bytes of 4 KiB blocks: runs of 1..maxrun blocks, a third zero. */
__attribute__((unused)) static void t_make_raw(char *buf, uint64_t size, unsigned maxrun, uint64_t seed)
{
  uint64_t x = seed + 77, nb = size / 4096, b = 0;
  while (b < nb) {
    uint64_t n = 1 + t_rnd(&x) % maxrun;
    if (n > nb - b)
      n = nb - b;
    if (t_rnd(&x) % 3 == 0)
      memset(buf + b * 4096, 0, n * 4096);
    else
      t_fill(buf + b * 4096, n * 4096, t_rnd(&x));
    b += n;
  }
}

__attribute__((unused)) static int t_rm(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
  return remove(p);
}

__attribute__((unused)) static void t_cleanup(void)
{
  if (tstore)
    cf_store_close(tstore);
  if (tdir[0])
    nftw(tdir, t_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* A temp dir with a store in it. */
__attribute__((unused)) static int t_setup(const char *what)
{
  snprintf(tdir, sizeof tdir, "/tmp/cowfork-%s.XXXXXX", what);
  if (!mkdtemp(tdir))
    return -1;
  char s[300];
  snprintf(s, sizeof s, "%s/store", tdir);
  tstore = cf_store_open(s);
  atexit(t_cleanup);
  return tstore ? 0 : -1;
}

/* Import buf (size bytes) as image name. */
__attribute__((unused)) static int t_import(const char *name, const char *buf, uint64_t size)
{
  char p[512];
  snprintf(p, sizeof p, "%s/%s.raw", tdir, name);
  int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || pwrite(fd, buf, size, 0) != (ssize_t)size)
    return -1;
  int r = cf_image_import(tstore, fd, name, 4096, NULL, NULL);
  close(fd);
  unlink(p);
  return r;
}

/* Run this binary as a helper: argv = {self, "--helper", args...}. */
__attribute__((unused)) static pid_t t_spawn(char *const *args)
{
  char *argv[32];
  int n = 0;
  argv[n++] = "/proc/self/exe";
  argv[n++] = "--helper";
  for (int i = 0; args[i] && n < 31; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  pid_t p = fork();
  if (p == 0) {
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  return p;
}

__attribute__((unused)) static int t_wait(pid_t p)
{
  int st;
  if (waitpid(p, &st, 0) < 0)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

__attribute__((unused)) static double t_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What a read of untouched private anonymous memory costs on this kernel,
 * probed once, independently of lib/dirty.c's probe (cf_dirty_shared_zero_page):
 * 64 fresh pages are read and the Rss of their mapping in /proc/self/smaps
 * counts the ones that got a page of their own (the shared zero page is not
 * counted). 1: the shared zero page (Rss 0, Linux's usual way); 0: a private
 * zeroed page each (Rss 256 kB: no zero page for reads, as in a PVM guest
 * booted with pvm_no_zero_page=1); -1: neither, or no smaps. The finding is
 * said in the TAP output, since tests expect different private memory. */
__attribute__((unused)) static int t_zero_page(void)
{
  static int v = -2;
  if (v != -2)
    return v;
  v = -1;
  size_t n = 64, pg = 4096;
  char *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  FILE *f = NULL;
  if (p != MAP_FAILED) {
    madvise(p, n * pg, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < n; i++)
      (void)*(volatile char *)(p + i * pg);
    f = fopen("/proc/self/smaps", "re");
  }
  char line[512], want[32];
  snprintf(want, sizeof want, "%lx-", (unsigned long)(uintptr_t)p);
  bool in = false;
  while (f && fgets(line, sizeof line, f)) {
    if (!in)
      in = strncmp(line, want, strlen(want)) == 0;
    else if (strncmp(line, "Rss:", 4) == 0) {
      long kb = strtol(line + 4, NULL, 10);
      v = kb == 0 ? 1 : kb == (long)(n * pg / 1024) ? 0 : -1;
      break;
    }
  }
  if (f)
    fclose(f);
  if (p != MAP_FAILED)
    munmap(p, n * pg);
  printf("# kernel: a read of untouched anonymous memory %s\n",
         v == 1   ? "maps the shared zero page"
         : v == 0 ? "allocates a private zeroed page (no shared zero page for reads, "
                    "e.g. PVM's pvm_no_zero_page=1): reads of empty extents cost private memory"
                  : "could not be probed");
  fflush(stdout);
  return v;
}

#endif
