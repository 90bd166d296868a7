/* What the seccomp-bpf filter of the threads that serve guests
 * (shim/seccomp.c) costs, with and without it in one run:
 *
 *   install   a thread's start to its end (pthread_create + join) with
 *             seccomp_enter on it vs without: the filter's cost per thread
 *             (`cowfork fork` installs it once per worker, the daemon once
 *             per worker, `cowfork run` once); the program is built once per
 *             process (the first install, reported apart);
 *   per call  raw system calls in a loop on a thread without the filter and
 *             on one with it: getpid (no arguments checked), ioctl(-1,
 *             KVM_RUN) (the vCPU's hot path; ioctl's request is checked),
 *             read(-1) and clock_gettime (raw, not the vDSO). A served guest
 *             system call costs one KVM_RUN plus the shim's own calls.
 *
 *   guest     (where /dev/kvm is) a guest system call's round trip as the
 *             shim serves it (VM exit, dispatch, the host calls it makes,
 *             KVM_RUN again): busybox dd of N one-byte blocks from
 *             /dev/zero to /dev/null (2N calls) minus dd count=0 (the
 *             sandbox's start and end), per call, in a sandbox on a fresh
 *             thread with the filter and on one without, taking turns.
 *
 * Each figure is the median of 15 rounds (guest: 7); ns per call. The raw
 * rows need no /dev/kvm: the calls fail fast (EBADF), which is the worst
 * case for the filter's share.
 *
 * Usage: bench/seccomp [--json] */
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/shim.h"
#include "shim/shim.h"

#define ROUNDS 15
#define CALLS 20000 /* per round */

static double now_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

enum { C_GETPID, C_IOCTL, C_READ, C_CLOCK, NCALLS };
static const char *const call_name[NCALLS] = {"getpid", "ioctl(-1, KVM_RUN)", "read(-1)", "clock_gettime (raw)"};

/* A thread that makes calls on demand: the filtered and the plain one take
 * turns, round by round, so that both see the same machine. */
struct caller {
  bool filter;
  int kind, err;
  double ns;
  sem_t go, done;
};

static void *caller_main(void *arg)
{
  struct caller *c = arg;
  if (c->filter && seccomp_enter() < 0)
    c->err = 1;
  struct timespec ts;
  char ch;
  for (;;) {
    sem_wait(&c->go);
    if (c->kind < 0)
      return NULL;
    double t0 = now_ns();
    for (int n = 0; n < CALLS; n++) {
      switch (c->kind) {
      case C_GETPID: syscall(SYS_getpid); break;
      case C_IOCTL: syscall(SYS_ioctl, -1, KVM_RUN, 0); break;
      case C_READ: syscall(SYS_read, -1, &ch, 1); break;
      case C_CLOCK: syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts); break;
      }
    }
    c->ns = (now_ns() - t0) / CALLS;
    sem_post(&c->done);
  }
}

static double round_of(struct caller *c, int kind)
{
  c->kind = kind;
  sem_post(&c->go);
  sem_wait(&c->done);
  return c->ns;
}

static void *enter_only(void *arg)
{
  if (arg && seccomp_enter() < 0)
    return (void *)1;
  return NULL;
}

static double one_thread(bool filter)
{
  pthread_t th;
  void *ret = NULL;
  double t0 = now_ns();
  if (pthread_create(&th, NULL, enter_only, filter ? (void *)1 : NULL) != 0)
    return -1;
  pthread_join(th, &ret);
  return ret ? -1 : now_ns() - t0;
}

#define GUEST_ROUNDS 7
#define GUEST_N 2000 /* dd blocks: 2 calls each */

struct guest {
  bool filter;
  const char *count;
  double ns;
  int err;
};

static void *guest_main(void *arg)
{
  struct guest *g = arg;
  cf_seccomp_set(g->filter);
  char cnt[32];
  snprintf(cnt, sizeof cnt, "count=%s", g->count);
  char *argv[] = {"dd", "if=/dev/zero", "of=/dev/null", "bs=1", cnt, NULL};
  char *envp[] = {"PATH=/bin:/usr/bin", NULL};
  int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
  struct cf_sandbox_opts o = {.program = "/bin/busybox", .argv = argv, .envp = envp, .stdio = {dn, dn, dn}};
  struct cf_sandbox_result res;
  double t0 = now_ns();
  if (cf_sandbox_run(&o, &res) < 0 || res.status != 0)
    g->err = 1;
  g->ns = now_ns() - t0;
  close(dn);
  return NULL;
}

/* One sandbox run on a fresh thread (a filter stays with its thread). */
static double guest_once(bool filter, const char *count)
{
  struct guest g = {.filter = filter, .count = count};
  pthread_t th;
  if (pthread_create(&th, NULL, guest_main, &g) != 0)
    return -1;
  pthread_join(th, NULL);
  return g.err ? -1 : g.ns;
}

/* ns per served guest system call, plain [0] and filtered [1]; false when
 * no sandbox can run here. */
static bool guest_rt(double out[2], double ratio[1])
{
  if (access("/dev/kvm", R_OK | W_OK) < 0 || access("/bin/busybox", X_OK) < 0)
    return false;
  double v[2][GUEST_ROUNDS], r[GUEST_ROUNDS];
  char n[16];
  snprintf(n, sizeof n, "%d", GUEST_N);
  for (int i = 0; i < GUEST_ROUNDS; i++) {
    double per[2];
    for (int f = 0; f < 2; f++) {
      double base = guest_once(f, "0"), full = guest_once(f, n);
      if (base < 0 || full < 0)
        return false;
      per[f] = v[f][i] = (full - base) / (2.0 * GUEST_N);
    }
    r[i] = per[1] / per[0];
  }
  out[0] = median(v[0], GUEST_ROUNDS), out[1] = median(v[1], GUEST_ROUNDS);
  ratio[0] = median(r, GUEST_ROUNDS);
  cf_seccomp_set(true);
  return true;
}

int main(int argc, char **argv)
{
  bool json = argc > 1 && !strcmp(argv[1], "--json");
  cf_seccomp_set(true);
  /* The once-per-process build (libseccomp: rules, tree, export). */
  double b0 = now_ns();
  unsigned len = seccomp_prog_len();
  double build_us = (now_ns() - b0) / 1e3;
  if (!len) {
    fprintf(stderr, "bench/seccomp: the filter could not be built\n");
    return 1;
  }
  /* Thread lives, alternating plain and filtered. */
  double tp[ROUNDS * 4], tf[ROUNDS * 4];
  for (int i = 0; i < ROUNDS * 4; i++)
    if ((tp[i] = one_thread(false)) < 0 || (tf[i] = one_thread(true)) < 0) {
      fprintf(stderr, "bench/seccomp: %s\n", cf_error());
      return 1;
    }
  double t_plain = median(tp, ROUNDS * 4), t_filter = median(tf, ROUNDS * 4);
  double tp_min = tp[0], tf_min = tf[0];
  struct caller pc = {.filter = false}, fc = {.filter = true};
  pthread_t th[2];
  sem_init(&pc.go, 0, 0), sem_init(&pc.done, 0, 0), sem_init(&fc.go, 0, 0), sem_init(&fc.done, 0, 0);
  pthread_create(&th[0], NULL, caller_main, &pc);
  pthread_create(&th[1], NULL, caller_main, &fc);
  double plain_ns[NCALLS], filt_ns[NCALLS], plain_min[NCALLS], filt_min[NCALLS];
  for (int k = 0; k < NCALLS; k++) {
    double a[ROUNDS], b[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
      a[i] = round_of(&pc, k);
      b[i] = round_of(&fc, k);
    }
    plain_ns[k] = median(a, ROUNDS), filt_ns[k] = median(b, ROUNDS);
    plain_min[k] = a[0], filt_min[k] = b[0];
  }
  pc.kind = fc.kind = -1;
  sem_post(&pc.go), sem_post(&fc.go);
  pthread_join(th[0], NULL), pthread_join(th[1], NULL);
  if (fc.err) {
    fprintf(stderr, "bench/seccomp: %s\n", cf_error());
    return 1;
  }
  double grt[2], gratio[1];
  bool have_guest = guest_rt(grt, gratio);
  if (json) {
    if (have_guest)
      printf("{\"guest_round_trip_ns\":[%.0f,%.0f],\"guest_ratio\":%.3f,", grt[0], grt[1], gratio[0]);
    else
      putchar('{');
    printf("\"bpf_instructions\":%u,\"build_us\":%.1f,\"thread_ns\":%.0f,\"thread_filter_ns\":%.0f", len, build_us,
           t_plain, t_filter);
    for (int k = 0; k < NCALLS; k++)
      printf(",\"%s\":[%.1f,%.1f]", call_name[k], plain_ns[k], filt_ns[k]);
    puts("}");
    return 0;
  }
  printf("filter: %u BPF instructions, built once per process in %.0f us\n\n", len, build_us);
  printf("%-24s %12s %12s %10s   %12s %12s\n", "median (min)", "no filter", "filter", "extra", "min no filter",
         "min filter");
  printf("%-24s %10.1f us %10.1f us %7.1f us   %10.1f us %10.1f us\n", "thread create+join", t_plain / 1e3,
         t_filter / 1e3, (t_filter - t_plain) / 1e3, tp_min / 1e3, tf_min / 1e3);
  for (int k = 0; k < NCALLS; k++)
    printf("%-24s %10.1f ns %10.1f ns %7.1f ns   %10.1f ns %10.1f ns\n", call_name[k], plain_ns[k], filt_ns[k],
           filt_ns[k] - plain_ns[k], plain_min[k], filt_min[k]);
  if (have_guest)
    printf("%-24s %10.0f ns %10.0f ns %7.0f ns   filter/no filter %.3f (median of per-round ratios)\n",
           "guest call round trip", grt[0], grt[1], grt[1] - grt[0], gratio[0]);
  else
    printf("guest call round trip: not measured (no /dev/kvm or /bin/busybox here)\n");
  return 0;
}
