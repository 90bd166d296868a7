/* A guest for bench/procs.sh (issue 14, processes): one measurement per
 * run, numbers on stdout, built static by the script and run the same way
 * natively and in a sandbox, so both sides time the same calls from inside.
 *
 *   procs forkexec N PROG [ARGS...]
 *       N times: fork(), the child execv(PROG, ARGS) (its stdout
 *       /dev/null), waitpid; each round timed from before fork() to
 *       waitpid's return. Prints "P50 P99" (us). The child must exit 0.
 *   procs spawn N PROG [ARGS...]
 *       The same with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)).
 *   procs bigfork MIB PCT ROUNDS [nothp]
 *       Maps MIB MiB of anonymous memory ("nothp": MADV_NOHUGEPAGE first)
 *       and writes every page; then reads a line from stdin (a template's
 *       ready point: children go on from here); then ROUNDS times: rewrites
 *       PCT % of the pages (every (100/PCT)th), fork()s — the child checks
 *       a rewritten and an untouched page and _exits — and waits. Prints
 *       "FORK1 FORK_P50 FORKWAIT_P50 REWRITE_P50" (us): the first round's
 *       fork() (its return in the parent), the median fork() and fork-to-
 *       reaped of all rounds, and the rewrite's median.
 *
 * A failed fork/spawn prints "procs: fork: ERRNO-TEXT" on stderr and exits
 * 3, so a sandbox that refuses fork (ENOMEM before issue 14) says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The value at fraction q of the sorted v (nearest rank). */
static double pct(double *v, int n, double q)
{
  qsort(v, n, sizeof *v, cmp_d);
  int i = (int)(q * n + 0.999999) - 1;
  if (i < 0)
    i = 0;
  if (i >= n)
    i = n - 1;
  return v[i];
}

static int reap(pid_t pid, const char *what)
{
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      fprintf(stderr, "procs: waitpid: %s\n", strerror(errno));
      return -1;
    }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "procs: %s: child status %#x\n", what, st);
    return -1;
  }
  return 0;
}

static int run_many(int spawn, int n, char **argv)
{
  double *t = calloc(n, sizeof *t);
  int null = open("/dev/null", O_WRONLY);
  if (!t || null < 0) {
    fprintf(stderr, "procs: setup: %s\n", strerror(errno));
    return 2;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, null, 1);
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    pid_t pid;
    if (spawn) {
      int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
      if (e) {
        fprintf(stderr, "procs: posix_spawn: %s\n", strerror(e));
        return 3;
      }
    } else {
      pid = fork();
      if (pid < 0) {
        fprintf(stderr, "procs: fork: %s\n", strerror(errno));
        return 3;
      }
      if (pid == 0) {
        dup2(null, 1);
        execv(argv[0], argv);
        _exit(127);
      }
    }
    if (reap(pid, argv[0]) < 0)
      return 4;
    t[i] = now_us() - t0;
  }
  double p99 = pct(t, n, 0.99), p50 = pct(t, n, 0.50);
  printf("%.1f %.1f\n", p50, p99);
  return 0;
}

static int bigfork(size_t mib, int pctw, int rounds, int nothp)
{
  size_t len = mib << 20, pg = 4096, npg = len / pg;
  int step = 100 / (pctw > 0 ? pctw : 1);
  unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    fprintf(stderr, "procs: mmap %zu MiB: %s\n", mib, strerror(errno));
    return 2;
  }
  if (nothp)
    madvise(m, len, MADV_NOHUGEPAGE);
  for (size_t i = 0; i < npg; i++)
    m[i * pg] = 1 + (i & 0x7f);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) {
    fprintf(stderr, "procs: no line on stdin\n");
    return 2;
  }
  double *tf = calloc(rounds, sizeof *tf), *tw = calloc(rounds, sizeof *tw),
         *tr = calloc(rounds, sizeof *tr), first = 0;
  for (int r = 0; r < rounds; r++) {
    unsigned char v = 0x80 | r;
    double t0 = now_us();
    for (size_t i = 0; i < npg; i += step)
      m[i * pg + 8] = v;
    double t1 = now_us();
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "procs: fork: %s\n", strerror(errno));
      return 3;
    }
    if (pid == 0) /* the rewritten page, and an untouched one */
      _exit(m[8] != v || (step > 1 && npg > 1 && m[pg] != 2) ? 1 : 0);
    double t2 = now_us();
    if (reap(pid, "bigfork child") < 0)
      return 4;
    double t3 = now_us();
    tr[r] = t1 - t0, tf[r] = t2 - t1, tw[r] = t3 - t1;
    if (r == 0)
      first = tf[0];
  }
  printf("%.1f %.1f %.1f %.1f\n", first, pct(tf, rounds, 0.5), pct(tw, rounds, 0.5), pct(tr, rounds, 0.5));
  return 0;
}

int main(int argc, char **argv)
{
  if (argc >= 4 && (!strcmp(argv[1], "forkexec") || !strcmp(argv[1], "spawn")))
    return run_many(argv[1][0] == 's', atoi(argv[2]), argv + 3);
  if (argc >= 5 && !strcmp(argv[1], "bigfork"))
    return bigfork(strtoul(argv[2], NULL, 10), atoi(argv[3]), atoi(argv[4]),
                   argc > 5 && !strcmp(argv[5], "nothp"));
  fprintf(stderr, "usage: procs forkexec|spawn N PROG [ARGS...] | procs bigfork MIB PCT ROUNDS [nothp]\n");
  return 2;
}
