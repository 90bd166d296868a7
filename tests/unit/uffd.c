/* The userfaultfd page server (lib/uffd.c) across processes.
 *
 * Every child is this binary exec'd in helper mode, so it is a separate
 * process with its own address space; it gets the image through the server
 * only (the userfaultfd goes over the socket with SCM_RIGHTS). Checked:
 *  - the handshake parser on good and bad input;
 *  - Firecracker's side of the handshake, written out by hand as Firecracker
 *    sends it (page_size and the older page_size_kib), no reply expected:
 *    every page equals the image;
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
#include <sched.h>
#include <signal.h>
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

/* Firecracker's side, without cf_uffd_handshake: JSON and SCM_RIGHTS by hand. */
static int helper_fc(struct cf_image *img, const char *sock, const char *variant)
{
  uint64_t size = cf_image_header(img)->size;
  char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (map == MAP_FAILED)
    return 2;
  int uffd = cf_uffd_open(UFFD_FEATURE_EVENT_REMOVE, NULL);
  if (uffd < 0 || cf_uffd_register(uffd, map, size, 0) < 0)
    return 3;
  /* Two regions, like a guest with a memory hole: [0, half) and [half, size). */
  char js[512];
  uint64_t half = size / 2;
  if (strcmp(variant, "kib") == 0)
    snprintf(js, sizeof js,
             "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0,\"page_size_kib\":4},"
             " {\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,\"page_size_kib\":4}]",
             (unsigned long long)(uintptr_t)map, (unsigned long long)half,
             (unsigned long long)(uintptr_t)(map + half), (unsigned long long)(size - half),
             (unsigned long long)half);
  else
    snprintf(js, sizeof js,
             "[{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":0,\"page_size\":4096},"
             "{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,\"page_size\":4096}]",
             (unsigned long long)(uintptr_t)map, (unsigned long long)half,
             (unsigned long long)(uintptr_t)(map + half), (unsigned long long)(size - half),
             (unsigned long long)half);
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
  /* Firecracker keeps its socket and fd; it reads nothing back. */
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
  const char *mode = argv[2], *sock = argv[5];
  int r = strcmp(mode, "fc") == 0 ? helper_fc(img, sock, argc > 6 ? argv[6] : "")
                                  : helper_child(img, sock, argc > 6 ? argv[6] : "verify");
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
  static const char *const bad[] = {
      "", "[]", "{}", "[{}]", "[{\"size\":1,\"offset\":0}]",
      "[{\"base_host_virt_addr\":1,\"size\":1,\"offset\":0,\"page_size\":2097152}]",
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

static int run_helper(const char *mode, const char *arg)
{
  char *args[] = {(char *)mode, storedir, "base", sock, (char *)arg, NULL};
  return t_wait(t_spawn(args));
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

/* A helper with its stdin and stdout on pipes. */
static pid_t spawn_io(const char *mode, int *to, int *from)
{
  int a[2], b[2]; /* close-on-exec: the helper must hold only its own ends */
  if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(a[0], 0);
    dup2(b[1], 1);
    execl("/proc/self/exe", "/proc/self/exe", "--helper", "child", storedir, "base", sock, mode,
          (char *)NULL);
    _exit(127);
  }
  close(a[0]);
  close(b[1]);
  *to = a[1];
  *from = b[0];
  return pid;
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
  ok(srv && cf_uffd_server_listen(srv, sock, img, NULL) == 0, "server listens");
  if (!srv)
    return done_testing();
  struct cf_uffd_server_info in;

  test_parse();

  is(run_helper("fc", "bytes"), 0, "Firecracker handshake (page_size): every page, then balloon");
  is(run_helper("fc", "kib"), 0, "Firecracker handshake (page_size_kib)");
  is(run_helper("child", "all"), 0, "cowfork child: every page, writes, remove-then-fault");
  wait_clients(srv, 0);
  cf_uffd_server_info(srv, &in);
  is(in.clients, 0, "clients end with their processes");
  is(in.clients_failed, 0, "none failed");

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

  int st = run_helper("child", "crash");
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
  is(in.clients_failed, 0, "no client failed");

  cf_uffd_server_free(srv);
  cf_image_close(img);
  free(raw);
  return done_testing();
}
