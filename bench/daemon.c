/* The daemon through its API (docs/daemon.md), against `cowfork fork` (a
 * process per run, no daemon) in the same run:
 *   create -> first exec latency; exec round trip on a live sandbox;
 *   100 sandboxes created and each exec'd once (the forkd workload);
 *   pause and resume time against the sandbox's dirty memory.
 * Starts its own daemon ($BUILD/cowfork or $COWFORK) on a private store. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/daemon.h"
#include "cowfork/error.h"

static char sock[300], cowfork_bin[600], store[200];

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
  qsort(v, (size_t)n, sizeof *v, cmp);
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

static json_t *req(const char *method, const char *path, const char *fmt, ...)
{
  char body[4096] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
  }
  int st;
  char *resp;
  size_t len;
  if (cf_daemon_request(sock, method, path, body, strlen(body), &st, &resp, &len) < 0) {
    fprintf(stderr, "bench daemon: %s\n", cf_error());
    exit(1);
  }
  json_t *j = json_loadb(resp, len, 0, NULL);
  if (st >= 400 || !j) {
    fprintf(stderr, "bench daemon: %s %s: HTTP %d %s\n", method, path, st, resp);
    exit(1);
  }
  free(resp);
  return j;
}

static char *create(void)
{
  json_t *j = req("POST", "/v1/sandboxes", "{\"template\":\"sh\"}");
  char *id = strdup(json_string_value(json_array_get(json_object_get(j, "ids"), 0)));
  json_decref(j);
  return id;
}

static void exec_expect(const char *id, const char *input, const char *want)
{
  char path[128];
  snprintf(path, sizeof path, "/v1/sandboxes/%s/exec", id);
  json_t *j = req("POST", path, "{\"input\":\"%s\"}", input);
  const char *out = json_string_value(json_object_get(j, "output"));
  if (want && (!out || strcmp(out, want) != 0)) {
    fprintf(stderr, "bench daemon: exec answered '%s', wanted '%s'\n", out ? out : "(null)", want);
    exit(1);
  }
  json_decref(j);
}

static void del(const char *id)
{
  char path[128];
  snprintf(path, sizeof path, "/v1/sandboxes/%s", id);
  json_decref(req("DELETE", path, NULL));
}

/* `cowfork fork sh [-n N] --input FILE --output-dir DIR`, wall time in ms. */
static double run_fork(int n, const char *input)
{
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s fork sh -n %d --input %s --output-dir %s/out >/dev/null 2>&1", cowfork_bin, n,
           input, store);
  double t0 = now_ms();
  if (system(cmd) != 0) {
    fprintf(stderr, "bench daemon: %s failed\n", cmd);
    exit(1);
  }
  return now_ms() - t0;
}

/* The daemon on sock; no_park: --no-park (idle sandboxes keep their VMs). */
static pid_t start_daemon(bool no_park)
{
  unlink(sock);
  pid_t pid = fork();
  if (pid == 0) {
    execl(cowfork_bin, cowfork_bin, "daemon", "-q", "--socket", sock, no_park ? "--no-park" : (char *)NULL,
          (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++)
    usleep(10000);
  return pid;
}

static void stop_daemon(pid_t pid)
{
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

/* Exec round trips on one live sandbox, into a[n]. */
static void exec_rounds(double *a, int n)
{
  char *id = create();
  exec_expect(id, "echo warm\\n", "warm\n");
  for (int i = 0; i < n; i++) {
    double t0 = now_ms();
    exec_expect(id, "echo hi\\n", "hi\n");
    a[i] = now_ms() - t0;
  }
  del(id);
  free(id);
}

/* 100 sandboxes created in one request and each exec'd once: ms; *tc the
 * create request alone. */
static double hundred(double *tc)
{
  double t0 = now_ms();
  json_t *j = req("POST", "/v1/sandboxes", "{\"template\":\"sh\",\"count\":100}");
  *tc = now_ms() - t0;
  json_t *ids = json_object_get(j, "ids");
  for (size_t i = 0; i < json_array_size(ids); i++)
    exec_expect(json_string_value(json_array_get(ids, i)), "echo hi\\n", "hi\n");
  double t = now_ms() - t0;
  for (size_t i = 0; i < json_array_size(ids); i++)
    del(json_string_value(json_array_get(ids, i)));
  json_decref(j);
  return t;
}

int main(void)
{
  const char *build = getenv("BUILD");
  const char *c = getenv("COWFORK");
  snprintf(cowfork_bin, sizeof cowfork_bin, "%s", c ? c : "");
  if (!c) {
    char self[500];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    char *sl = strrchr(self, '/');
    if (sl)
      *sl = 0; /* BUILD/bench */
    snprintf(cowfork_bin, sizeof cowfork_bin, "%s/../cowfork", self);
  }
  (void)build;
  if (access("/dev/kvm", R_OK | W_OK) != 0 || access("/bin/busybox", X_OK) != 0 || access(cowfork_bin, X_OK) != 0) {
    printf("skipped: needs /dev/kvm, /bin/busybox and %s\n", cowfork_bin);
    return 0;
  }
  snprintf(store, sizeof store, "/tmp/cowfork-bench-daemon.%d", (int)getpid());
  mkdir(store, 0700);
  snprintf(sock, sizeof sock, "%s/d.sock", store);
  char st[300], cmd[2048];
  snprintf(st, sizeof st, "%s/store", store);
  setenv("COWFORK_STORE", st, 1);
  snprintf(cmd, sizeof cmd, "%s template create sh --mem 64M -- /bin/busybox sh 2>/dev/null", cowfork_bin);
  if (system(cmd) != 0) {
    fprintf(stderr, "bench daemon: template create failed\n");
    return 1;
  }
  pid_t pid = start_daemon(false);
  char in[300];
  snprintf(in, sizeof in, "%s/in", store);
  FILE *f = fopen(in, "w");
  fputs("echo hi\n", f);
  fclose(f);

  enum { N = 50, R = 300 };
  double a[R], b[R];
  /* 1. create -> first exec answer */
  for (int i = 0; i < N; i++) {
    double t0 = now_ms();
    char *id = create();
    exec_expect(id, "echo hi\\n", "hi\n");
    a[i] = now_ms() - t0;
    del(id);
    free(id);
  }
  for (int i = 0; i < N; i++)
    b[i] = run_fork(1, in);
  printf("%-52s %10s %14s %8s\n", "", "daemon API", "cowfork fork", "ratio");
  double ap = pct(a, N, .5), bp = pct(b, N, .5);
  printf("%-52s %8.2f ms %11.2f ms %8.2f\n", "create -> first exec answer, p50", ap, bp, ap / bp);
  printf("%-52s %8.2f ms %11.2f ms\n", "create -> first exec answer, p99", pct(a, N, .99), pct(b, N, .99));
  /* 2. exec round trip on one live sandbox (parked between execs) */
  exec_rounds(a, R);
  ap = pct(a, R, .5);
  printf("%-52s %8.2f ms %11.2f ms %8.2f\n", "exec round trip (live sandbox vs a fork per run), p50", ap, bp, ap / bp);
  printf("%-52s %8.2f ms\n", "exec round trip, p99", pct(a, R, .99));
  /* 3. 100 sandboxes created and each exec'd once */
  double tc, t100 = hundred(&tc);
  double f100 = run_fork(100, in);
  printf("%-52s %8.1f ms %11.1f ms %8.2f\n", "100 sandboxes created + each exec'd once", t100, f100, t100 / f100);
  printf("%-52s %8.1f ms\n", "  of which the one create request (100 forks)", tc);
  /* 2 and 3 again with every idle sandbox in its own VM (--no-park), the
   * daemon restarted on the same store. */
  stop_daemon(pid);
  pid = start_daemon(true);
  exec_rounds(b, R);
  double tcn, t100n = hundred(&tcn);
  stop_daemon(pid);
  pid = start_daemon(false);
  double np = pct(b, R, .5);
  printf("%-52s %8.2f ms %11.2f ms %8.2f\n", "exec round trip, parked vs --no-park, p50", ap, np, ap / np);
  printf("%-52s %8.1f ms %11.1f ms %8.2f\n", "100 created + exec'd, parked vs --no-park", t100, t100n, t100 / t100n);
  double t0;
  char *id;
  /* 4. pause / resume vs dirty memory */
  printf("\n%-14s %12s %10s %10s %12s\n", "string in sh", "pages saved", "pause ms", "resume ms", "first exec ms");
  static const int logs[] = {0, 16, 20, 22, 23};
  for (size_t k = 0; k < sizeof logs / sizeof *logs; k++) {
    id = create();
    char prog[256];
    snprintf(prog, sizeof prog, "s=x; i=0; while [ $i -lt %d ]; do s=$s$s; i=$((i+1)); done; echo ${#s}\\n", logs[k]);
    char want[32];
    snprintf(want, sizeof want, "%d\n", 1 << logs[k]);
    exec_expect(id, prog, want);
    char path[128];
    snprintf(path, sizeof path, "/v1/sandboxes/%s/pause", id);
    t0 = now_ms();
    json_t *p = req("POST", path, "{}");
    double pms = now_ms() - t0;
    long long pages = json_integer_value(json_object_get(p, "pages_stored"));
    json_decref(p);
    snprintf(path, sizeof path, "/v1/sandboxes/%s/resume", id);
    t0 = now_ms();
    json_decref(req("POST", path, "{}"));
    double rms = now_ms() - t0;
    t0 = now_ms();
    exec_expect(id, "echo ${#s}\\n", want);
    double ems = now_ms() - t0;
    char label[32];
    snprintf(label, sizeof label, "%d KiB", (1 << logs[k]) >> 10);
    printf("%-14s %12lld %10.1f %10.1f %12.1f\n", logs[k] ? label : "1 byte", pages, pms, rms, ems);
    del(id);
    free(id);
  }
  stop_daemon(pid);
  snprintf(cmd, sizeof cmd, "rm -rf %s", store);
  if (system(cmd) != 0)
    fprintf(stderr, "bench daemon: could not remove %s\n", store);
  return 0;
}
