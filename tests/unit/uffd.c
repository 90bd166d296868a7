/* The userfaultfd page server (lib/uffd.c) across processes.
 *
 * Every child is this binary exec'd in helper mode, so it is a separate
 * process with its own address space; it gets the image through the server
 * only (the userfaultfd goes over the socket with SCM_RIGHTS). Checked:
 *  - the handshake parser on good and bad input;
 *  - Firecracker's side of the handshake, written out by hand as each
 *    Firecracker version's serde emits it (<= 1.6: no page size; 1.7-1.9:
 *    "page_size_kib" holding bytes; >= 1.10: "page_size" then
 *    "page_size_kib", both bytes), no reply expected: every page equals the
 *    image; a refused one (2 MiB pages) gets SIGBUS instead of hanging in its
 *    first fault, and the refusal is logged;
 *  - runs that cross the end of a registered range (a mapping split by
 *    mprotect, as the sandbox's shim does at the end of the heap), faulted
 *    and prefetched, zeros and data: served in bounded time and ioctls;
 *  - a page dropped without a REMOVE event (no EVENT_REMOVE asked) faults
 *    again and is served again, not left faulting forever; a synchronous
 *    write-protect fault (not served) ends its client with SIGBUS;
 *  - remove-then-fault: pages DONTNEED'ed read as zeros afterwards, in data
 *    and in empty extents, and the rest is untouched;
 *  - a child touching pages while it is killed (faults racing its exit),
 *    twenty times: the server drops exactly those clients and serves the next;
 *  - a child that crashes (SIGSEGV) in the middle;
 *  - 100 children at once, each checking its pages;
 *  - garbage on the socket is refused with an error and disturbs nobody;
 *  - CPU-affine serving: a child pinned to each CPU (by its spawner, and
 *    through CF_MEM_PIN) is served by that CPU's worker (its stats say so,
 *    checked while it lives) with every page right, removed pages as zeros;
 *    an unpinned one by the shared worker; pinned children killed while
 *    faulting; 100 pinned children at once, round robin over the CPUs.
 *
 * A helper pins itself first when T_PIN is set: to that CPU, or with
 * CF_MEM_PIN when it is "mem".
 *
 * Helper mode: uffd --helper MODE STORE NAME SOCKET [ARG]; uffd --zero-page
 * prints mem_util.h's probe (1 shared zero page, 0 none for reads, -1
 * unknown) for tests/mem-cli.sh. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/userfaultfd.h>

#include "cowfork/mem.h"
#include "cowfork/uffd.h"
#include "mem_util.h"
#include "internal.h"
#include "tap.h"

#define SIZE (16u << 20)
#define PG 4096u

/* --- Helpers (separate processes) ------------------------------------------- */

static int check_pages(const struct cf_image *img, const char *map, uint64_t first, uint64_t n)
{
  char buf[PG];
  for (uint64_t p = first; p < first + n; p++) {
    if (cf_image_read(img, buf, PG, p * PG) < 0 || memcmp(buf, map + p * PG, PG) != 0)
      return -1;
  }
  return 0;
}

static int all_zero(const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* Firecracker's side, without cf_uffd_handshake: JSON and SCM_RIGHTS by hand.
 * variant: which Firecracker's JSON (serde_json::to_string of its
 * Vec<GuestRegionUffdMapping>: compact, fields in declaration order).
 * Firecracker keeps its own copy of the userfaultfd and reads nothing back. */
static int helper_fc(struct cf_image *img, const char *sock, const char *variant)
{
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* a refused one dies of SIGBUS: no core file */
  signal(SIGBUS, SIG_DFL);           /* ... by the signal, even under ASan's handler */
  uint64_t size = cf_image_header(img)->size;
  char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (map == MAP_FAILED)
    return 2;
  int uffd = cf_uffd_open(UFFD_FEATURE_EVENT_REMOVE, NULL);
  if (uffd < 0 || cf_uffd_register(uffd, map, size, 0) < 0)
    return 3;
  /* The page-size keys after "offset", per version. */
  const char *ps = strcmp(variant, "v1.6") == 0    ? ""
                   : strcmp(variant, "v1.7") == 0  ? ",\"page_size_kib\":4096"
                   : strcmp(variant, "v1.10") == 0 ? ",\"page_size\":4096,\"page_size_kib\":4096"
                   : strcmp(variant, "kib") == 0   ? ",\"page_size_kib\":4" /* KiB, as named */
                   : strcmp(variant, "huge") == 0  ? ",\"page_size\":2097152,\"page_size_kib\":2097152"
                                                   : NULL;
  if (!ps)
    return 20;
  /* Two regions, like a guest with a memory hole: [0, half) and [half, size). */
  char js[512];
  uint64_t half = size / 2;
  snprintf(js, sizeof js,
           "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0%s},"
           "{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu%s}]",
           (unsigned long long)(uintptr_t)map, (unsigned long long)half, ps,
           (unsigned long long)(uintptr_t)(map + half), (unsigned long long)(size - half),
           (unsigned long long)half, ps);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, sock);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
    return 4;
  char cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {js, strlen(js)};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
  if (sendmsg(s, &mh, 0) != (ssize_t)strlen(js))
    return 5;
  close(s); /* as Firecracker does: it reads nothing back, and keeps its uffd */
  if (check_pages(img, map, 0, size / PG) < 0)
    return 6;
  /* Balloon: the guest gives pages back, then touches them again. */
  uint64_t a = 100 * PG, n = 300 * PG;
  if (madvise(map + a, n, MADV_DONTNEED) < 0)
    return 7;
  if (!all_zero(map + a, n))
    return 8;
  if (check_pages(img, map, 0, 100) < 0 || check_pages(img, map, 400, size / PG - 400) < 0)
    return 9;
  return 0;
}

/* The "vma" image: VPAGES pages, [0, VPAGES/2) empty, the rest data. */
#define VPAGES 256u

/* Say our client id on stdout, then live until stdin closes (the parent
 * reads our stats meanwhile). */
static int report_and_wait(uint64_t id)
{
  char line[32], c;
  int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)id);
  return write(1, line, n) == n && read(0, &c, 1) >= 0 ? 0 : 8;
}

/* A mapping split by mprotect into three VMAs, [0, 40) RW, [40, 168) R,
 * [168, 256) RW, as the sandbox's shim splits guest memory (the end of the
 * heap is followed by PROT_NONE), registered and handed over as one region,
 * then read page by page in order: the growing runs of sequential faults
 * cross both splits, in zeros at 40 and in data at 168. mode "prefetch":
 * the listener installs every page before its answer. */
static int helper_vma(struct cf_image *img, const char *sock, const char *mode)
{
  uint64_t size = cf_image_header(img)->size, np = size / PG;
  char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (map == MAP_FAILED || np != VPAGES)
    return 2;
  int uffd = cf_uffd_open(UFFD_FEATURE_EVENT_REMOVE, NULL);
  if (uffd < 0 || cf_uffd_register(uffd, map, size, 0) < 0)
    return 3;
  if (mprotect(map + 40 * PG, 128 * PG, PROT_READ) < 0)
    return 4;
  struct cf_uffd_region r = {.base = (uintptr_t)map, .size = size, .offset = 0};
  uint64_t id = 0;
  unsigned fl = CF_UFFD_ACK | (strcmp(mode, "prefetch") == 0 ? CF_UFFD_PREFETCH : 0);
  if (cf_uffd_handshake(sock, uffd, &r, 1, fl, &id) < 0)
    return 5;
  close(uffd);
  if (check_pages(img, map, 0, np) < 0)
    return 6;
  return report_and_wait(id);
}

/* A client without EVENT_REMOVE (Firecracker without a balloon): pages it
 * drops with MADV_DONTNEED send no event, so the server still holds them
 * installed; touched again, they fault again and must be served again. */
static int helper_noremove(struct cf_image *img, const char *sock)
{
  uint64_t size = cf_image_header(img)->size, np = size / PG;
  char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (map == MAP_FAILED)
    return 2;
  int uffd = cf_uffd_open(0, NULL);
  if (uffd < 0 || cf_uffd_register(uffd, map, size, 0) < 0)
    return 3;
  struct cf_uffd_region r = {.base = (uintptr_t)map, .size = size, .offset = 0};
  uint64_t id = 0;
  if (cf_uffd_handshake(sock, uffd, &r, 1, CF_UFFD_ACK, &id) < 0)
    return 5;
  close(uffd);
  if (check_pages(img, map, 0, np) < 0)
    return 6;
  /* Data pages and zero pages, dropped and read again. */
  if (madvise(map + 10 * PG, 4 * PG, MADV_DONTNEED) < 0 ||
      madvise(map + (np - 20) * PG, 4 * PG, MADV_DONTNEED) < 0)
    return 7;
  if (check_pages(img, map, 10, 4) < 0 || check_pages(img, map, np - 20, 4) < 0)
    return 9;
  return report_and_wait(id);
}

/* A client registered for synchronous write-protect faults (no WP_ASYNC),
 * which the server does not serve: a write to a protected page must end it
 * (SIGBUS), not leave it faulting forever. */
static int helper_wpsync(struct cf_image *img, const char *sock)
{
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(SIGBUS, SIG_DFL);
  uint64_t size = cf_image_header(img)->size;
  char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (map == MAP_FAILED)
    return 2;
  int uffd = cf_uffd_open(UFFD_FEATURE_PAGEFAULT_FLAG_WP, NULL);
  if (uffd < 0 || cf_uffd_register(uffd, map, size, 1) < 0)
    return 3;
  struct cf_uffd_region r = {.base = (uintptr_t)map, .size = size, .offset = 0};
  if (cf_uffd_handshake(sock, uffd, &r, 1, CF_UFFD_ACK, NULL) < 0)
    return 5;
  if (check_pages(img, map, 0, 1) < 0)
    return 6;
  struct uffdio_writeprotect w = {.range = {(uintptr_t)map, PG}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
  if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0)
    return 7;
  map[0] = 1; /* a write-protect fault */
  return 0;   /* the fault was let through: not what the server does */
}

/* A cowfork child through the uffd backend. */
static int helper_child(struct cf_image *img, const char *sock, const char *mode)
{
  struct cf_mem m;
  struct cf_mem_opts o = {.img = img, .socket = sock};
  const char *pin = getenv("T_PIN");
  if (pin && strcmp(pin, "mem") == 0)
    o.flags |= CF_MEM_PIN;
  else if (pin) { /* what a spawner does: pin, then map */
    if (cf_pin_cpu(atoi(pin)) < 0)
      return 10;
  }
  if (cf_mem_backend_uffd.map(&o, &m) < 0) {
    fprintf(stderr, "map: %s\n", cf_error());
    return 2;
  }
  uint64_t np = m.len / PG, x = (uint64_t)getpid() * 7919 + 1;
  if (strcmp(mode, "spin") == 0) { /* touch pages until killed */
    if (write(1, "r", 1) != 1)
      return 3;
    for (;;) {
      uint64_t p = t_rnd(&x) % np;
      (void)*(volatile char *)((char *)m.addr + p * PG);
    }
  }
  if (strcmp(mode, "crash") == 0) {
    for (int i = 0; i < 100; i++)
      (void)*(volatile char *)((char *)m.addr + (t_rnd(&x) % np) * PG);
    abort();
  }
  /* verify: random pages first (single faults), then everything (runs). */
  for (int i = 0; i < 64; i++) {
    uint64_t p = t_rnd(&x) % np;
    if (check_pages(img, m.addr, p, 1) < 0)
      return 4;
  }
  bool report = strcmp(mode, "report") == 0;
  if ((strcmp(mode, "all") == 0 || report) && check_pages(img, m.addr, 0, np) < 0)
    return 5;
  /* Writes stay private; removed pages read zeros. */
  memset(m.addr, 0x5a, PG);
  if (((unsigned char *)m.addr)[PG - 1] != 0x5a)
    return 6;
  if (madvise((char *)m.addr + 8 * PG, 8 * PG, MADV_DONTNEED) < 0 ||
      !all_zero((char *)m.addr + 8 * PG, 8 * PG))
    return 7;
  if (report) { /* say who we are and where we run, then live until told */
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %d\n", (unsigned long long)m.client, sched_getcpu());
    char c;
    if (write(1, line, n) != n || read(0, &c, 1) < 0)
      return 8;
  }
  return 0;
}

static int helper(int argc, char **argv)
{
  if (argc < 6)
    return 100;
  struct cf_store *s = cf_store_open(argv[3]);
  struct cf_image *img = s ? cf_image_open(s, argv[4]) : NULL;
  if (!img)
    return 101;
  const char *mode = argv[2], *sock = argv[5], *arg = argc > 6 ? argv[6] : "";
  int r = strcmp(mode, "fc") == 0         ? helper_fc(img, sock, arg)
          : strcmp(mode, "vma") == 0      ? helper_vma(img, sock, arg)
          : strcmp(mode, "noremove") == 0 ? helper_noremove(img, sock)
          : strcmp(mode, "wpsync") == 0   ? helper_wpsync(img, sock)
                                          : helper_child(img, sock, *arg ? arg : "verify");
  cf_image_close(img);
  cf_store_close(s);
  return r;
}

/* --- The tests ---------------------------------------------------------------- */

static char storedir[300], sock[300];

static void test_parse(void)
{
  struct cf_uffd_region *r;
  size_t n;
  long fl;
  const char *good = " [ {\"base_host_virt_addr\": 140000000000, \"size\": 8192, \"offset\": 4096, "
                     "\"page_size\": 4096, \"extra\": \"x\\\"y\", \"b\": true, \"z\": null} ] ";
  ok(cf_uffd_parse_regions(good, strlen(good), &r, &n, &fl) == 0 && n == 1 &&
         r[0].base == 140000000000ull && r[0].size == 8192 && r[0].offset == 4096 && fl == -1,
     "parse: Firecracker's message with unknown keys");
  free(r);
  const char *flags = "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"cowfork_flags\":5}]";
  ok(cf_uffd_parse_regions(flags, strlen(flags), &r, &n, &fl) == 0 && fl == 5, "parse: cowfork_flags");
  free(r);
  /* Exactly what each Firecracker's serde_json::to_string emits (x86-64,
   * no huge pages): compact, fields in the struct's declaration order. */
  static const struct {
    const char *who, *js;
  } fc[] = {
      {"<= 1.6", "[{\"base_host_virt_addr\":139925422080000,\"size\":134217728,\"offset\":0}]"},
      {"1.7-1.9", "[{\"base_host_virt_addr\":139925422080000,\"size\":134217728,\"offset\":0,"
                  "\"page_size_kib\":4096}]"},
      {">= 1.10", "[{\"base_host_virt_addr\":139925422080000,\"size\":134217728,\"offset\":0,"
                  "\"page_size\":4096,\"page_size_kib\":4096}]"},
  };
  for (size_t i = 0; i < sizeof fc / sizeof *fc; i++) {
    r = NULL;
    int ret = cf_uffd_parse_regions(fc[i].js, strlen(fc[i].js), &r, &n, &fl);
    ok(ret == 0 && n == 1 && r[0].base == 139925422080000ull && r[0].size == 134217728 &&
           r[0].offset == 0 && fl == -1,
       "parse: Firecracker %s's message%s%s", fc[i].who, ret ? ": " : "", ret ? cf_error() : "");
    free(r);
  }
  const char *two = "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
                    "\"page_size_kib\":4096},{\"base_host_virt_addr\":8192,\"size\":8192,"
                    "\"offset\":4096,\"page_size\":4096,\"page_size_kib\":4096}]";
  ok(cf_uffd_parse_regions(two, strlen(two), &r, &n, &fl) == 0 && n == 2 && r[1].base == 8192 &&
         r[1].size == 8192 && r[1].offset == 4096,
     "parse: two regions in the >= 1.10 form");
  free(r);
  static const char *const bad[] = {
      "", "[]", "{}", "[{}]", "[{\"size\":1,\"offset\":0}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size\":2097152}]",
      /* Firecracker with 2 MiB huge pages: not served */
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size_kib\":2097152}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size\":2097152,"
      "\"page_size_kib\":2097152}]",
      /* the two disagree */
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size\":4096,"
      "\"page_size_kib\":2097152}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size_kib\":4194304}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size_kib\":18014398509481988}]",
      "[{\"base_host_virt_addr\":-1,\"size\":1,\"offset\":0}]",
      "[{\"base_host_virt_addr\":1.5,\"size\":1,\"offset\":0}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0}] x",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"n\":{\"a\":1}}]",
      "[{\"base_host_virt_addr\":99999999999999999999999,\"size\":1,\"offset\":0}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"size\":2}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"cowfork_flags\":99}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0}", "[{\"base_host_virt_addr\":1,\"size",
  };
  int nbad = 0;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    r = NULL;
    if (cf_uffd_parse_regions(bad[i], strlen(bad[i]), &r, &n, &fl) < 0 && cf_errno() == EINVAL && !r)
      nbad++;
    else
      diag("accepted: %s", bad[i]);
  }
  is(nbad, (int)(sizeof bad / sizeof *bad), "parse: every malformed message refused");
}

/* t_wait, but a helper that has not exited after secs is killed: -2. */
static int wait_timeout(pid_t p, int secs)
{
  for (int i = 0; i < secs * 100; i++) {
    int st;
    pid_t r = waitpid(p, &st, WNOHANG);
    if (r == p)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0)
      return -1;
    usleep(10000);
  }
  kill(p, SIGKILL);
  t_wait(p);
  return -2;
}

static pid_t last_helper;

/* A helper that hangs is a failure (-2 after 60 s), not a hung test. */
static int run_helper(const char *mode, const char *arg)
{
  char *args[] = {(char *)mode, storedir, "base", sock, (char *)arg, NULL};
  last_helper = t_spawn(args);
  return wait_timeout(last_helper, 60);
}

/* What the server logged (cf_uffd_server_set_log). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[16384];

static void collect_log(void *ctx, const char *msg)
{
  pthread_mutex_lock(&log_lock);
  size_t n = strlen(logbuf);
  snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
  pthread_mutex_unlock(&log_lock);
}

static bool logged(const char *want)
{
  pthread_mutex_lock(&log_lock);
  bool r = strstr(logbuf, want) != NULL;
  pthread_mutex_unlock(&log_lock);
  return r;
}

static void wait_clients(struct cf_uffd_server *srv, uint64_t want)
{
  struct cf_uffd_server_info in;
  for (int i = 0; i < 500; i++) {
    cf_uffd_server_info(srv, &in);
    if (in.clients == want)
      return;
    usleep(10000);
  }
}

/* A helper (args as for t_spawn) with its stdin and stdout on pipes. */
static pid_t spawn_args(char *const *args, int *to, int *from)
{
  int a[2], b[2]; /* close-on-exec: the helper must hold only its own ends */
  if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(a[0], 0);
    dup2(b[1], 1);
    char *argv[16] = {"/proc/self/exe", "--helper"};
    for (int i = 0; args[i] && i < 13; i++)
      argv[i + 2] = args[i];
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  close(a[0]);
  close(b[1]);
  *to = a[1];
  *from = b[0];
  return pid;
}

static pid_t spawn_io(const char *mode, int *to, int *from)
{
  char *args[] = {"child", storedir, "base", sock, (char *)mode, NULL};
  return spawn_args(args, to, from);
}

/* Run a helper that reports its client id and waits (report_and_wait):
 * *st gets the client's stats while it lives. Returns the helper's exit
 * status, or -2 when it said nothing within secs (it hung: killed). */
static int run_reporting(struct cf_uffd_server *srv, char *const *args, int secs,
                         struct cf_uffd_stats *st)
{
  int to, from;
  memset(st, 0, sizeof *st);
  pid_t pid = spawn_args(args, &to, &from);
  if (pid < 0)
    return -1;
  struct pollfd pf = {.fd = from, .events = POLLIN};
  char line[64] = {0};
  int ret = 0;
  if (poll(&pf, 1, secs * 1000) <= 0) {
    kill(pid, SIGKILL);
    ret = -2;
  } else if (read(from, line, sizeof line - 1) > 0) {
    unsigned long long id = strtoull(line, NULL, 10);
    if (cf_uffd_server_stats(srv, id, st) < 0)
      diag("no stats for client %llu: %s", id, cf_error());
  }
  close(to);
  close(from);
  int w = t_wait(pid);
  return ret ? ret : w;
}

/* Runs crossing the end of a registered range, faulted and prefetched. */
static void test_vma(struct cf_uffd_server *srv, const char *vsock, const char *vpsock)
{
  struct cf_uffd_stats st;
  char *fault[] = {"vma", storedir, "vma", (char *)vsock, "fault", NULL};
  double t0 = t_now();
  int r = run_reporting(srv, fault, 20, &st);
  double ms = (t_now() - t0) * 1e3;
  is(r, 0, "split mapping, sequential faults: every page right, in %.0f ms%s", ms,
     r == -2 ? " (hung: killed after 20 s)" : "");
  diag("faults %llu, ioctls %llu, clipped %llu, copied %llu, zeroed %llu",
       (unsigned long long)st.faults, (unsigned long long)st.ioctls, (unsigned long long)st.clipped,
       (unsigned long long)st.pages_copied, (unsigned long long)st.pages_zeroed);
  ok(st.clipped > 0 && st.pages_copied + st.pages_zeroed == VPAGES,
     "split mapping: runs crossing a split were shortened (%llu times), each page installed once",
     (unsigned long long)st.clipped);
  /* Without the splits the runs double (1, 2, 4 .. 64 pages, cut at the
   * extent end): about 16 faults and ioctls; each crossing costs at most
   * log2(64) more ioctls. */
  ok(st.faults > 0 && st.faults <= 40 && st.ioctls <= 80, "split mapping: bounded work: %llu faults, %llu ioctls",
     (unsigned long long)st.faults, (unsigned long long)st.ioctls);

  char *pre[] = {"vma", storedir, "vma", (char *)vpsock, "prefetch", NULL};
  r = run_reporting(srv, pre, 20, &st);
  is(r, 0, "split mapping, prefetch: every page right%s", r == -2 ? " (hung: killed after 20 s)" : "");
  diag("prefetched %llu, faults %llu, ioctls %llu, clipped %llu",
       (unsigned long long)st.pages_prefetched, (unsigned long long)st.faults,
       (unsigned long long)st.ioctls, (unsigned long long)st.clipped);
  ok(st.pages_prefetched == VPAGES && st.faults == 0 && st.ioctls <= 40,
     "split mapping, prefetch: all %u pages installed across the splits, no fault, %llu ioctls",
     VPAGES, (unsigned long long)st.ioctls);

  char *nr[] = {"noremove", storedir, "vma", (char *)vsock, NULL};
  r = run_reporting(srv, nr, 20, &st);
  is(r, 0, "dropped without a REMOVE event: served again when touched%s",
     r == -2 ? " (hung: killed after 20 s)" : "");
  ok(st.faults > 0 && st.faults <= 40 && st.ioctls <= 60,
     "dropped without an event: bounded work: %llu faults, %llu ioctls",
     (unsigned long long)st.faults, (unsigned long long)st.ioctls);

  char *wp[] = {"wpsync", storedir, "vma", (char *)vsock, NULL};
  pid_t pid = t_spawn(wp);
  r = wait_timeout(pid, 20);
  is(r, 128 + SIGBUS, "a synchronous write-protect fault (not served) ends its client with SIGBUS%s",
     r == -2 ? ", not a hang (it hung: killed after 20 s)" : "");
  ok(logged("write-protect fault"), "and is logged");
}

/* Start a "report" helper with T_PIN = pin (NULL: unpinned); while it lives,
 * *cpu gets the worker CPU the server gives it (-2 when unknown) and
 * *ran_on the CPU it ran on; returns its exit status. */
static int affine_child(struct cf_uffd_server *srv, const char *pin, int *cpu, int *ran_on)
{
  int to, from;
  *cpu = *ran_on = -2;
  if (pin)
    setenv("T_PIN", pin, 1);
  pid_t pid = spawn_io("report", &to, &from);
  unsetenv("T_PIN");
  if (pid < 0)
    return -1;
  char line[64] = {0};
  ssize_t n = read(from, line, sizeof line - 1);
  unsigned long long id;
  struct cf_uffd_stats st;
  if (n > 0 && sscanf(line, "%llu %d", &id, ran_on) == 2 && cf_uffd_server_stats(srv, id, &st) == 0 &&
      st.faults > 0)
    *cpu = st.cpu;
  close(to); /* it exits */
  close(from);
  return t_wait(pid);
}

static void test_affine(struct cf_uffd_server *srv)
{
  cpu_set_t set;
  int cpus[CPU_SETSIZE], ncpu = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &set))
        cpus[ncpu++] = i;
  if (ncpu == 0) {
    ok(0, "sched_getaffinity");
    return;
  }
  diag("%d CPUs", ncpu);
  int right = 0, served = 0;
  for (int i = 0; i < ncpu; i++) {
    char pin[16];
    snprintf(pin, sizeof pin, "%d", cpus[i]);
    int cpu, ran;
    int st = affine_child(srv, pin, &cpu, &ran);
    right += st == 0;
    served += cpu == cpus[i] && ran == cpus[i];
    if (cpu != cpus[i])
      diag("pinned to %d: served by the worker of %d, ran on %d, exit %d", cpus[i], cpu, ran, st);
  }
  is(right, ncpu, "affine: a child pinned to each CPU sees every page, removed pages as zeros");
  is(served, ncpu, "affine: each is served by the worker of its CPU");
  int cpu, ran;
  is(affine_child(srv, "mem", &cpu, &ran), 0, "affine: CF_MEM_PIN child sees every page");
  ok(cpu >= 0 && cpu == ran, "affine: CF_MEM_PIN pins it where it ran: worker %d, ran on %d", cpu, ran);
  is(affine_child(srv, NULL, &cpu, &ran), 0, "unpinned child sees every page");
  is(cpu, -1, "unpinned child is served by the shared worker");

  /* Pinned children killed while faulting: their CPU's worker drops them. */
  int killed = 0;
  for (int i = 0; i < 20; i++) {
    char pin[16];
    snprintf(pin, sizeof pin, "%d", cpus[i % ncpu]);
    setenv("T_PIN", pin, 1);
    int to, from;
    pid_t pid = spawn_io("spin", &to, &from);
    unsetenv("T_PIN");
    if (pid < 0)
      break;
    char c;
    if (read(from, &c, 1) == 1) {
      usleep((i % 5) * 1000);
      kill(pid, SIGKILL);
    }
    close(to);
    close(from);
    killed += t_wait(pid) == 128 + SIGKILL;
  }
  is(killed, 20, "affine: 20 pinned children killed while faulting");
  wait_clients(srv, 0);
  struct cf_uffd_server_info in;
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "affine: their clients are gone");
  is(affine_child(srv, "0", &cpu, &ran) == 0 && cpu == cpus[0] ? 0 : 1, 0,
     "affine: the next pinned child is served (worker %d)", cpu);

  /* Many clients on each CPU at once. */
  pid_t pids[100];
  for (int i = 0; i < 100; i++) {
    char pin[16];
    snprintf(pin, sizeof pin, "%d", cpus[i % ncpu]);
    setenv("T_PIN", pin, 1);
    char *args[] = {"child", storedir, "base", sock, "verify", NULL};
    pids[i] = t_spawn(args);
  }
  unsetenv("T_PIN");
  int good = 0;
  for (int i = 0; i < 100; i++)
    good += t_wait(pids[i]) == 0;
  is(good, 100, "affine: 100 children pinned round robin each see the image");
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "affine: no client left");
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--helper") == 0)
    return helper(argc, argv);
  if (argc > 1 && strcmp(argv[1], "--zero-page") == 0)
    return printf("%d\n", t_zero_page()) < 0;
  if (access("/dev/userfaultfd", R_OK | W_OK) != 0 && geteuid() != 0)
    skip_all("no access to /dev/userfaultfd");
  if (t_setup("uffd") < 0)
    skip_all("cannot make a temp store");
  snprintf(storedir, sizeof storedir, "%s/store", tdir);
  snprintf(sock, sizeof sock, "%s/uffd.sock", tdir);
  char *raw = malloc(SIZE);
  t_make_raw(raw, SIZE, 48, 1);
  ok(t_import("base", raw, SIZE) == 0, "import a 16 MiB image with empty extents");
  struct cf_image *img = cf_image_open(tstore, "base");
  struct cf_uffd_server *srv = cf_uffd_server_new(NULL, NULL);
  if (srv)
    cf_uffd_server_set_log(srv, collect_log, NULL);
  ok(srv && cf_uffd_server_listen(srv, sock, img, NULL) == 0, "server listens");
  if (!srv)
    return done_testing();
  /* The "vma" image and its two listeners, the second prefetching it all. */
  char *vraw = calloc(VPAGES, PG), vsock[300], vpsock[300];
  t_fill(vraw + VPAGES / 2 * PG, VPAGES / 2 * PG, 5);
  ok(t_import("vma", vraw, VPAGES * PG) == 0, "import a %u-page image, half empty", VPAGES);
  struct cf_image *vimg = cf_image_open(tstore, "vma");
  uint64_t all[VPAGES];
  for (unsigned i = 0; i < VPAGES; i++)
    all[i] = i;
  struct cf_uffd_opts vo = {.prefetch = all, .nprefetch = VPAGES};
  snprintf(vsock, sizeof vsock, "%s/vma.sock", tdir);
  snprintf(vpsock, sizeof vpsock, "%s/vmap.sock", tdir);
  ok(vimg && cf_uffd_server_listen(srv, vsock, vimg, NULL) == 0 &&
         cf_uffd_server_listen(srv, vpsock, vimg, &vo) == 0,
     "listeners for it, one prefetching every page");
  struct cf_uffd_server_info in;

  test_parse();
  test_vma(srv, vsock, vpsock);
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  uint64_t failed0 = in.clients_failed; /* the write-protect client, on purpose */

  is(run_helper("fc", "v1.6"), 0, "Firecracker <= 1.6 handshake (no page size): every page, then balloon");
  is(run_helper("fc", "v1.7"), 0, "Firecracker 1.7-1.9 handshake (page_size_kib in bytes)");
  is(run_helper("fc", "v1.10"), 0, "Firecracker >= 1.10 handshake (page_size, page_size_kib, bytes)");
  is(run_helper("fc", "kib"), 0, "handshake with page_size_kib in KiB, as the name says");
  cf_uffd_server_info(srv, &in);
  uint64_t refused = in.connections_refused;
  int st = run_helper("fc", "huge");
  is(st, 128 + SIGBUS, "a refused Firecracker handshake (2 MiB pages) fails with SIGBUS%s",
     st == -2 ? ", not a hang (it hung: killed after 60 s)" : "");
  char want[64];
  snprintf(want, sizeof want, "handshake from pid %d refused", (int)last_helper);
  ok(logged(want) && logged("page_size") && logged("sent SIGBUS"), "the refusal is logged");
  diag("log: %s", logbuf);
  cf_uffd_server_info(srv, &in);
  is(in.connections_refused, refused + 1, "and counted");
  is(run_helper("child", "all"), 0, "cowfork child: every page, writes, remove-then-fault");
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "clients end with their processes");
  is(in.clients_failed, failed0, "none failed");

  /* Faults racing the child's exit. */
  int killed = 0;
  for (int i = 0; i < 20; i++) {
    int p[2];
    if (pipe(p) < 0)
      break;
    pid_t pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      execl("/proc/self/exe", "/proc/self/exe", "--helper", "child", storedir, "base", sock, "spin",
            (char *)NULL);
      _exit(127);
    }
    close(p[1]);
    char c;
    if (read(p[0], &c, 1) == 1) {
      usleep((i % 5) * 1000);
      kill(pid, SIGKILL);
    }
    close(p[0]);
    killed += t_wait(pid) == 128 + SIGKILL;
  }
  is(killed, 20, "20 children killed while faulting");
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "their clients are gone");
  is(run_helper("child", "verify"), 0, "the next child is served");

  st = run_helper("child", "crash");
  is(st, 128 + SIGABRT, "a child crashes");
  is(run_helper("child", "verify"), 0, "the server is unmoved");

  /* Garbage on the socket. */
  {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    const char *junk = "[{\"base_host_virt_addr\":1,\"size\":[1],\"cowfork_flags\":0}]";
    char ans[256] = {0};
    ok(connect(s, (struct sockaddr *)&sa, sizeof sa) == 0 &&
           write(s, junk, strlen(junk)) == (ssize_t)strlen(junk) && read(s, ans, sizeof ans - 1) > 0 &&
           strncmp(ans, "error ", 6) == 0,
       "garbage gets an error reply: %.60s", ans);
    close(s);
    char *m = mmap(NULL, 2 * SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct cf_uffd_region r = {.base = (uintptr_t)m, .size = 2 * SIZE, .offset = 0};
    int fd = cf_uffd_open(0, NULL);
    ok(fd >= 0 && cf_uffd_register(fd, m, 2 * SIZE, 0) == 0 &&
           cf_uffd_handshake(sock, fd, &r, 1, CF_UFFD_ACK, NULL) < 0,
       "a region past the image's end is refused: %s", cf_error());
    close(fd);
    munmap(m, 2 * SIZE);
  }

  /* 100 children at once. */
  pid_t pids[100];
  double t0 = t_now();
  for (int i = 0; i < 100; i++) {
    char *args[] = {"child", storedir, "base", sock, "verify", NULL};
    pids[i] = t_spawn(args);
  }
  int good = 0;
  for (int i = 0; i < 100; i++)
    good += t_wait(pids[i]) == 0;
  diag("100 children in %.0f ms", (t_now() - t0) * 1e3);
  is(good, 100, "100 concurrent children each see the image");
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "no client left");
  diag("clients total %llu, failed %llu, refused %llu", (unsigned long long)in.clients_total,
       (unsigned long long)in.clients_failed, (unsigned long long)in.connections_refused);

  test_affine(srv);
  cf_uffd_server_info(srv, &in);
  is(in.clients_failed, failed0, "no client failed");

  cf_uffd_server_free(srv);
  cf_image_close(img);
  cf_image_close(vimg);
  free(raw);
  free(vraw);
  return done_testing();
}
