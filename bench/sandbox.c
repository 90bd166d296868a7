/* Sandbox fork benchmark: children of a busybox sh template against the
 * same busybox command run natively (fork+exec) and against fork() of a warm
 * process, in one run. Prints a table with medians, p99 and the issue's
 * goals marked PASS/MISS.
 *
 *   latency   fork call -> the child's first guest instruction (first
 *             KVM_RUN), and -> its first output (the write served); native:
 *             fork() -> the child's first instruction (it writes to a pipe
 *             at once) and fork+exec -> busybox's first output
 *   fan-out   100 and 1000 children, each running `echo hi`, all ended
 *   memory    per idle child beyond what it dirtied: MemAvailable drop over
 *             200 live children (paused at their next read of stdin) minus
 *             their private pages, divided by 200: parked (the default for
 *             an idle child: cf_sandbox_park), 1000 parked, and each in
 *             its own VM; with how long parking takes and how long a child
 *             takes to go on to its next pause (parked: the unpark)
 *             against fork() of a warm process */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/shim.h"
#include "cowfork/store.h"

#define BB "/bin/busybox"
#define IDLE 200

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

static double pct(double *v, int n, double p)
{
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

/* The "KEY: N kB" line of a /proc file: N, or -1. */
static long proc_kib(const char *path, const char *key)
{
  FILE *f = fopen(path, "r");
  char line[256];
  long v = -1;
  size_t kl = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, kl) == 0 && line[kl] == ':' && sscanf(line + kl + 1, "%ld", &v) == 1)
      break;
  if (f)
    fclose(f);
  return v;
}

static long mem_available_kib(void) { return proc_kib("/proc/meminfo", "MemAvailable"); }

/* Memory charged to this process alone, kernel memory (KVM's) included:
 * the usage of a memory cgroup (v1 with kmem accounting, or v2) made for
 * it, so that other processes on the machine do not move the figure as
 * they move MemAvailable. -1 when no cgroup could be made. */
static char cg_dir[640];

static void cg_enter(void)
{
  FILE *f = fopen("/proc/self/cgroup", "r");
  char line[512], rel[512] = "", base[64] = "";
  while (f && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (sscanf(line, "%*d:memory:%511s", rel) == 1) {
      snprintf(base, sizeof base, "/sys/fs/cgroup/memory");
      break;
    }
    if (strncmp(line, "0::", 3) == 0 && access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
      snprintf(rel, sizeof rel, "%s", line + 3);
      snprintf(base, sizeof base, "/sys/fs/cgroup");
    }
  }
  if (f)
    fclose(f);
  if (!base[0])
    return;
  snprintf(cg_dir, sizeof cg_dir, "%s%s/cowfork-bench-%d", base, strcmp(rel, "/") ? rel : "", (int)getpid());
  char p[700];
  snprintf(p, sizeof p, "%s/cgroup.procs", cg_dir);
  FILE *w = NULL;
  if (mkdir(cg_dir, 0755) < 0 || !(w = fopen(p, "w")) || fprintf(w, "%d\n", (int)getpid()) < 0 || fclose(w) != 0) {
    rmdir(cg_dir);
    cg_dir[0] = 0;
  }
}

static long cg_kib(void)
{
  if (!cg_dir[0])
    return -1;
  char p[700];
  long long v = -1;
  snprintf(p, sizeof p, "%s/memory.usage_in_bytes", cg_dir);
  FILE *f = fopen(p, "r");
  if (!f) {
    snprintf(p, sizeof p, "%s/memory.current", cg_dir);
    f = fopen(p, "r");
  }
  if (f && fscanf(f, "%lld", &v) != 1)
    v = -1;
  if (f)
    fclose(f);
  return v < 0 ? -1 : (long)(v / 1024);
}

static void cg_leave(void)
{
  if (!cg_dir[0])
    return;
  char p[700];
  snprintf(p, sizeof p, "%s/../cgroup.procs", cg_dir);
  FILE *w = fopen(p, "w");
  if (w) {
    fprintf(w, "%d\n", (int)getpid());
    fclose(w);
  }
  rmdir(cg_dir);
}

/* This process's resident anonymous memory (user pages only, no KVM). */
static long rss_anon_kib(void) { return proc_kib("/proc/self/status", "RssAnon"); }

static struct cf_template *tmpl;
static int input_fd, null_fd;

struct fan {
  int n;
  int next;
  int failed;
  bool reuse; /* each thread resets its last child's VM for the next (cf_template_refork) */
};

static void *fan_worker(void *arg)
{
  struct fan *f = arg;
  struct cf_sandbox_opts o = {.stdio = {-1, null_fd, null_fd}};
  struct cf_sandbox *keep = NULL;
  for (;;) {
    int i = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED);
    if (i >= f->n) {
      cf_sandbox_free(keep);
      return NULL;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", input_fd);
    int in = open(path, O_RDONLY | O_CLOEXEC); /* own offset per child */
    o.stdio[0] = in;
    struct cf_sandbox *b = cf_template_next(tmpl, keep, &o);
    keep = NULL;
    struct cf_sandbox_result r;
    bool ok = b && cf_sandbox_run_until(b, &r) == 0 && r.status == 0;
    if (!ok)
      __atomic_fetch_add(&f->failed, 1, __ATOMIC_RELAXED);
    if (ok && f->reuse)
      keep = b;
    else
      cf_sandbox_free(b);
    close(in);
  }
}

static double fanout(int n, int threads, int *failed, bool reuse)
{
  struct fan f = {.n = n, .reuse = reuse};
  pthread_t th[16];
  /* The workers run under the seccomp filter, as `cowfork fork`'s do (each
   * installs it once); this thread stays free to fork the native rows. */
  cf_seccomp_set(getenv("COWFORK_SECCOMP") == NULL || strcmp(getenv("COWFORK_SECCOMP"), "0") != 0);
  double t0 = now_us();
  for (int i = 0; i < threads; i++)
    pthread_create(&th[i], NULL, fan_worker, &f);
  for (int i = 0; i < threads; i++)
    pthread_join(th[i], NULL);
  cf_seccomp_set(false);
  *failed = f.failed;
  return (now_us() - t0) / 1e3;
}

static double native_fanout(int n)
{
  double t0 = now_us();
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      dup2(null_fd, 1);
      execl(BB, "busybox", "echo", "hi", (char *)NULL);
      _exit(127);
    }
  }
  for (int i = 0; i < n; i++)
    wait(NULL);
  return (now_us() - t0) / 1e3;
}

static const char *mark(bool ok) { return ok ? "PASS" : "MISS"; }


/* n children forked and run to their next read of stdin (at end of input:
 * they pause), each parked or not; host memory they hold (MemAvailable
 * drop / n), their private pages, and how long one takes to go on to its
 * next pause (parked: unpark + the read served). */
struct idle {
  int n;
  double kib, cg_kib, anon_kib, dirtied_kib, park50, resume50, resume99;
};

static struct idle idle_children(struct cf_template *t, int in_fd, int n, bool park)
{
  struct cf_sandbox **box = calloc((size_t)n, sizeof *box);
  struct cf_sandbox_opts *io = calloc((size_t)n, sizeof *io);
  double *pk = calloc((size_t)n, sizeof *pk), *rs = calloc((size_t)n, sizeof *rs);
  struct idle r = {0};
  usleep(300000); /* what earlier phases freed (KVM frees some of a VM late) settles first */
  long avail0 = mem_available_kib(), anon0 = rss_anon_kib(), cg0 = cg_kib();
  uint64_t priv = 0;
  for (; r.n < n; r.n++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", in_fd);
    io[r.n] = (struct cf_sandbox_opts){.stdio = {open(path, O_RDONLY | O_CLOEXEC), null_fd, null_fd}, .branch = true};
    box[r.n] = cf_template_fork(t, &io[r.n]);
    struct cf_sandbox_result res;
    if (!box[r.n] || cf_sandbox_run_until(box[r.n], &res) < 0 || !res.paused)
      break;
    priv += res.private_bytes;
    double t0 = now_us();
    if (park && cf_sandbox_park(box[r.n]) < 0) {
      fprintf(stderr, "park: %s\n", cf_error());
      break;
    }
    pk[r.n] = now_us() - t0;
  }
  usleep(200000);
  r.kib = (double)(avail0 - mem_available_kib()) / r.n;
  r.anon_kib = (double)(rss_anon_kib() - anon0) / r.n;
  r.cg_kib = cg0 < 0 ? -1 : (double)(cg_kib() - cg0) / r.n;
  r.dirtied_kib = (double)priv / 1024 / r.n;
  for (int i = 0; i < r.n; i++) {
    struct cf_sandbox_result res;
    double t0 = now_us();
    if (cf_sandbox_run_until(box[i], &res) < 0 || !res.paused)
      fprintf(stderr, "resume: %s\n", cf_error());
    rs[i] = now_us() - t0;
    if (park && cf_sandbox_park(box[i]) < 0) /* idle again: its VM back to the spares */
      fprintf(stderr, "park: %s\n", cf_error());
  }
  for (int i = 0; i < n; i++) {
    cf_sandbox_free(box[i]);
    if (io[i].stdio[0] > 0)
      close(io[i].stdio[0]);
  }
  if (r.n) {
    r.park50 = pct(pk, r.n, 0.5);
    r.resume50 = pct(rs, r.n, 0.5);
    r.resume99 = pct(rs, r.n, 0.99);
  }
  free(box);
  free(io);
  free(pk);
  free(rs);
  return r;
}

/* The headline workload's density: idle Python sandboxes with numpy
 * loaded (shim/py/driver.py --preload numpy, 256 MiB guest), each having
 * answered one request, parked and each in its own VM, against a warm
 * Python zygote that imported numpy and fork()ed children that answered
 * the same request and wait: memory per idle child from the memory cgroup.
 * Skipped without /usr/bin/python3 + numpy or outside the source tree. */
#define PYN 20
static void python_density(struct cf_store *s, const char *dir)
{
  const char *py = "/usr/bin/python3";
  char driver[PATH_MAX], cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof cmd, "%s -c 'import numpy' 2>/dev/null", py);
  if (!cg_dir[0] || access(py, X_OK) != 0 || !realpath("shim/py/driver.py", driver) || system(cmd) != 0) {
    printf("python density: skipped (needs %s with numpy, a memory cgroup, and the source tree as cwd)\n", py);
    return;
  }
  char *argv[] = {"python3", driver, "--preload", "numpy", NULL};
  char *envp[] = {"PATH=/usr/bin:/bin", "OPENBLAS_NUM_THREADS=1", NULL};
  struct cf_sandbox_opts to = {.root = "/", .mem_size = 256ull << 20, .program = py, .argv = argv, .envp = envp,
                               .stdio = {null_fd, null_fd, 2}, .ready = CF_READY_STDIN};
  struct cf_sandbox *tb = cf_sandbox_new(&to);
  struct cf_sandbox_result tr;
  if (!tb || cf_sandbox_run_until(tb, &tr) < 0 || !tr.paused || cf_sandbox_save(tb, s, "py", NULL) < 0) {
    printf("python density: template failed: %s\n", cf_error());
    cf_sandbox_free(tb);
    return;
  }
  cf_sandbox_free(tb);
  struct cf_template *t = cf_template_open(s, "py");
  char inpath[PATH_MAX];
  snprintf(inpath, sizeof inpath, "%s/py-input", dir);
  FILE *fi = fopen(inpath, "w");
  fputs("print(numpy.zeros(5).tolist())\n#---\n", fi);
  fclose(fi);
  int in = open(inpath, O_RDONLY | O_CLOEXEC);
  struct idle parked = idle_children(t, in, PYN, true), held = idle_children(t, in, PYN, false);
  close(in);
  cf_template_close(t);
  /* The zygote: numpy imported, then PYN children forked on "go", each
   * answering once and then waiting on stdin; "idle" when all answered. */
  static const char zy[] =
      "import numpy, os, sys\n"
      "r, w = os.pipe()\n"
      "print('ready', flush=True)\n"
      "sys.stdin.readline()\n"
      "kids = []\n"
      "for i in range(int(sys.argv[1])):\n"
      "    p = os.fork()\n"
      "    if p == 0:\n"
      "        os.write(w, (str(numpy.zeros(5).tolist()) + '\\n').encode())\n"
      "        sys.stdin.readline()\n"
      "        os._exit(0)\n"
      "    kids.append(p)\n"
      "got = b''\n"
      "while got.count(b'\\n') < len(kids):\n"
      "    got += os.read(r, 4096)\n"
      "print('idle', flush=True)\n"
      "for p in kids:\n"
      "    os.waitpid(p, 0)\n";
  int to_z[2], from_z[2];
  if (pipe(to_z) < 0 || pipe(from_z) < 0)
    return;
  pid_t z = fork();
  if (z == 0) {
    dup2(to_z[0], 0);
    dup2(from_z[1], 1);
    close(to_z[1]);
    close(from_z[0]);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    char n[16];
    snprintf(n, sizeof n, "%d", PYN);
    execl(py, "python3", "-c", zy, n, (char *)NULL);
    _exit(127);
  }
  close(to_z[0]);
  close(from_z[1]);
  FILE *zr = fdopen(from_z[0], "r");
  char line[64] = "";
  double zygote = -1;
  if (zr && fgets(line, sizeof line, zr) && strncmp(line, "ready", 5) == 0) {
    usleep(300000);
    long c0 = cg_kib();
    if (write(to_z[1], "go\n", 3) == 3 && fgets(line, sizeof line, zr) && strncmp(line, "idle", 4) == 0) {
      usleep(200000);
      zygote = (double)(cg_kib() - c0) / PYN;
    }
  }
  close(to_z[1]); /* the children read EOF and end */
  if (zr)
    fclose(zr);
  waitpid(z, NULL, 0);
  printf("\n%-44s %12s %12s %12s\n", "python + numpy, idle after one request", "parked", "own VM", "zygote fork");
  printf("%-44s %8.1f KiB %8.1f KiB %8.1f KiB   (%d children, memory cgroup; ratio zygote/parked %.1fx)\n",
         "host memory per idle child", parked.cg_kib, held.cg_kib, zygote, PYN, zygote / parked.cg_kib);
  printf("%-44s %8.1f KiB %8.1f KiB\n", "  of which its dirtied (private) pages", parked.dirtied_kib, held.dirtied_kib);
  printf("%-44s %9.0f us %9.0f us\n", "  to its next pause (unpark + serve), p50", parked.resume50, held.resume50);
}

int main(void)
{
  if (access("/dev/kvm", R_OK | W_OK) != 0 || access(BB, X_OK) != 0) {
    printf("skipped: needs /dev/kvm and %s\n", BB);
    return 0;
  }
  char dir[] = "/tmp/cowfork-bench-sb.XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  struct cf_store *s = cf_store_open(dir);
  cg_enter();
  null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  char inpath[256];
  snprintf(inpath, sizeof inpath, "%s/input", dir);
  FILE *fi = fopen(inpath, "w");
  fputs("echo hi\n", fi);
  fclose(fi);
  input_fd = open(inpath, O_RDONLY | O_CLOEXEC);

  /* The template: busybox sh paused at its first read of stdin. */
  char *argv[] = {"busybox", "sh", NULL}, *envp[] = {"PATH=/bin:/usr/bin", NULL};
  struct cf_sandbox_opts to = {.root = "/", .mem_size = 64ull << 20, .program = BB, .argv = argv, .envp = envp,
                               .stdio = {null_fd, null_fd, 2}, .ready = CF_READY_STDIN};
  struct cf_sandbox *tb = cf_sandbox_new(&to);
  struct cf_sandbox_result tr;
  struct cf_save_stats ss;
  if (!tb || cf_sandbox_run_until(tb, &tr) < 0 || !tr.paused || cf_sandbox_save(tb, s, "bb", &ss) < 0) {
    fprintf(stderr, "template: %s\n", cf_error());
    return 1;
  }
  cf_sandbox_free(tb);
  tmpl = cf_template_open(s, "bb");
  if (!tmpl) {
    fprintf(stderr, "open: %s\n", cf_error());
    return 1;
  }
  printf("template: busybox sh, 64 MiB guest memory, %llu pages stored, state %llu bytes, saved in %.1f ms\n",
         (unsigned long long)ss.pages_stored, (unsigned long long)ss.state_bytes, ss.save_ms);

  /* Latency, one child at a time. */
  enum { N = 200 };
  static double sp[N], fo[N], nf[N], nx[N], create[N];
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", input_fd);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    struct cf_sandbox_opts o = {.stdio = {in, null_fd, null_fd}};
    struct cf_sandbox *b = cf_template_fork(tmpl, &o);
    struct cf_sandbox_result r;
    if (!b || cf_sandbox_run_until(b, &r) < 0) {
      fprintf(stderr, "fork: %s\n", cf_error());
      return 1;
    }
    sp[i] = r.spawn_us;
    fo[i] = r.first_output_us;
    create[i] = r.create_us;
    cf_sandbox_free(b);
    close(in);
  }
  for (int i = 0; i < N; i++) {
    int p[2];
    if (pipe(p) < 0)
      return 1;
    char c;
    double t0 = now_us();
    pid_t pid = fork();
    if (pid == 0) {
      if (write(p[1], "x", 1) < 0)
        _exit(1);
      _exit(0);
    }
    if (read(p[0], &c, 1) != 1)
      return 1;
    nf[i] = now_us() - t0;
    waitpid(pid, NULL, 0);
    close(p[0]);
    close(p[1]);
    t0 = now_us();
    if (pipe(p) < 0)
      return 1;
    pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      execl(BB, "busybox", "echo", "hi", (char *)NULL);
      _exit(127);
    }
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
      return 1;
    nx[i] = now_us() - t0;
    waitpid(pid, NULL, 0);
    close(p[0]);
  }
  /* The same with one VM reset for each next child, as `cowfork fork` does by
   * default: spawn is then the reset (cf_template_refork) to the first KVM_RUN. */
  static double rsp[N], rfo[N];
  struct cf_sandbox *keep = NULL;
  for (int i = 0; i < N; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", input_fd);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    struct cf_sandbox_opts o = {.stdio = {in, null_fd, null_fd}};
    struct cf_sandbox *b = cf_template_next(tmpl, keep, &o);
    keep = NULL;
    struct cf_sandbox_result r;
    if (!b || cf_sandbox_run_until(b, &r) < 0) {
      fprintf(stderr, "fork: %s\n", cf_error());
      return 1;
    }
    rsp[i] = r.spawn_us;
    rfo[i] = r.first_output_us;
    keep = b;
    close(in);
  }
  cf_sandbox_free(keep);
  /* The first child of the loop made its VM: leave it out. */
  double rsp50 = pct(rsp + 1, N - 1, 0.5), rsp99 = pct(rsp + 1, N - 1, 0.99);
  double rfo50 = pct(rfo + 1, N - 1, 0.5), rfo99 = pct(rfo + 1, N - 1, 0.99);
  double sp50 = pct(sp, N, 0.5), sp99 = pct(sp, N, 0.99), fo50 = pct(fo, N, 0.5), fo99 = pct(fo, N, 0.99);
  double nf50 = pct(nf, N, 0.5), nf99 = pct(nf, N, 0.99), nx50 = pct(nx, N, 0.5), nx99 = pct(nx, N, 0.99);
  double cr50 = pct(create, N, 0.5);

  /* Fan-out. */
  int f100, f1000;
  double s100 = fanout(100, 2, &f100, false), s1000 = fanout(1000, 2, &f1000, false);
  int fr100 = 0, fr1000 = 0;
  double r100 = fanout(100, 2, &fr100, true), r1000 = fanout(1000, 2, &fr1000, true);
  f100 += fr100;
  f1000 += fr1000;
  double n100 = native_fanout(100), n1000 = native_fanout(1000);

  /* Idle children: alive, paused at their next read of stdin, in their
   * own VMs and parked. */
  struct idle parked = idle_children(tmpl, input_fd, IDLE, true), parked1000 = idle_children(tmpl, input_fd, 1000, true),
              held = idle_children(tmpl, input_fd, IDLE, false);
  /* Native: warm processes fork()ed and blocked in read. */
  int p[2];
  if (pipe(p) < 0)
    return 1;
  pid_t pids[IDLE];
  long avail0 = mem_available_kib(), ncg0 = cg_kib();
  for (int i = 0; i < IDLE; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      char c;
      close(p[1]);
      if (read(p[0], &c, 1) < 0)
        _exit(1);
      _exit(0);
    }
  }
  usleep(200000);
  long avail1 = mem_available_kib();
  double native_idle = (double)(avail0 - avail1) / IDLE;
  if (ncg0 >= 0)
    native_idle = (double)(cg_kib() - ncg0) / IDLE;
  close(p[1]);
  for (int i = 0; i < IDLE; i++)
    waitpid(pids[i], NULL, 0);

  printf("\n%-44s %12s %12s %12s %6s\n", "", "cowfork", "fork+exec", "fork()", "goal");
  /* Goals are marked on the default paths (`cowfork fork`: a reused VM;
   * the daemon: parked idle children); the new-VM rows are what
   * --no-reuse costs. */
  printf("%-44s %9.0f us %12s %9.0f us %6s  (goal <= 500 us)\n", "spawn to first instruction, p50", rsp50, "", nf50,
         mark(rsp50 <= 500));
  printf("%-44s %9.0f us %12s %9.0f us\n", "spawn to first instruction, p99", rsp99, "", nf99);
  printf("%-44s %9.0f us %9.0f us %12s\n", "spawn to first output, p50", rfo50, nx50, "");
  printf("%-44s %9.0f us %9.0f us %12s\n", "spawn to first output, p99", rfo99, nx99, "");
  printf("%-44s %9.0f us %12s %9.0f us         (VM create p50 %.0f us)\n", "  new VM each: first instruction, p50", sp50,
         "", nf50, cr50);
  printf("%-44s %9.0f us %12s %9.0f us\n", "  new VM each: first instruction, p99", sp99, "", nf99);
  printf("%-44s %9.0f us %9.0f us %12s\n", "  new VM each: first output, p50", fo50, nx50, "");
  printf("%-44s %9.0f us %9.0f us %12s\n", "  new VM each: first output, p99", fo99, nx99, "");
  printf("%-44s %9.1f ms %9.1f ms %12s\n", "100 children `echo hi`, all ended", r100, n100, "");
  printf("%-44s %9.1f ms %9.1f ms %12s %6s  (goal <= 1 s)\n", "1000 children `echo hi`, all ended", r1000, n1000,
         "", mark(r1000 <= 1000 && !fr1000));
  printf("%-44s %9.1f ms %9.1f ms\n", "  new VM each: 100 children", s100, n100);
  printf("%-44s %9.1f ms %9.1f ms\n", "  new VM each: 1000 children", s1000, n1000);
  /* Per child beyond its dirtied pages: from this process's memory cgroup
   * (KVM's kernel memory included, other processes excluded) when one
   * could be made, else from MemAvailable (machine-wide: noisy). */
  const char *how = cg_dir[0] ? "memory cgroup" : "MemAvailable";
#define BEYOND(x) ((cg_dir[0] ? (x).cg_kib : (x).kib) - (x).dirtied_kib)
  printf("%-44s %8.1f KiB %12s %8.1f KiB %6s  (goal <= 64 KiB; %d parked children, %s)\n",
         "host memory per idle child beyond dirtied", BEYOND(parked), "", native_idle,
         mark(BEYOND(parked) <= 64 && parked.n == IDLE), parked.n, how);
  printf("%-44s %8.1f KiB\n", "  of which its dirtied (private) pages", parked.dirtied_kib);
  printf("%-44s %8.1f KiB %12s %12s         (%d children)\n", "  the same, 1000 parked children",
         BEYOND(parked1000), "", "", parked1000.n);
  printf("%-44s %8.1f KiB %12s %12s         (%d children)\n", "  the same, each child holding its VM",
         BEYOND(held), "", "", held.n);
  printf("%-44s %8.1f KiB %12s %12s         (RssAnon: user memory only, dirtied included)\n",
         "  this process's own memory per parked child", parked.anon_kib, "", "");
  printf("%-44s %9.0f us %12s %9.0f us\n", "park an idle child, p50", parked.park50, "", nf50);
  printf("%-44s %9.0f us %12s %9.0f us\n", "idle child to its next pause, parked, p50", parked.resume50, "", nf50);
  printf("%-44s %9.0f us %12s %9.0f us\n", "idle child to its next pause, parked, p99", parked.resume99, "", nf99);
  printf("%-44s %9.0f us %12s %9.0f us\n", "idle child to its next pause, own VM, p50", held.resume50, "", nf50);
  printf("ratios (default paths): spawn p50 %.2fx fork(), first output p50 %.2fx fork+exec, 1000 fan-out %.2fx "
         "fork+exec\n",
         rsp50 / nf50, rfo50 / nx50, r1000 / n1000);
  if (f100 || f1000)
    printf("FAILED children: %d of 100, %d of 1000\n", f100, f1000);
  python_density(s, dir);
  cf_template_close(tmpl);
  cf_store_close(s);
  cg_leave();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    return 1;
  return 0;
}
