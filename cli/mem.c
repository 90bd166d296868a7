/* cowfork bench fanout, cowfork mem serve: thin callers of lib/fanout.c and
 * lib/uffd.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cowfork/error.h"
#include "cowfork/fanout.h"
#include "cowfork/mem.h"
#include "cowfork/uffd.h"

static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
  char *end;
  if (!*s || *s == '-')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

enum { O_IMAGE = 1000, O_CHILDREN, O_BACKEND, O_PREFETCH, O_TOUCH, O_WRITE, O_JSON, O_SOCKET, O_SEED, O_CPU };

static int cmd_fanout(const struct cli_cmd *cmd, int argc, char **argv)
{
  static const struct option opts[] = {
      {"image", required_argument, 0, O_IMAGE},   {"children", required_argument, 0, O_CHILDREN},
      {"backend", required_argument, 0, O_BACKEND}, {"prefetch", no_argument, 0, O_PREFETCH},
      {"touch", required_argument, 0, O_TOUCH},   {"write", required_argument, 0, O_WRITE},
      {"json", no_argument, 0, O_JSON},           {"seed", required_argument, 0, O_SEED},
      {"cpu", required_argument, 0, O_CPU},       {0}};
  struct cf_fanout_opts o = {.children = 10, .touch = 256, .write = 16, .seed = 1,
                             .backend = &cf_mem_backend_file};
  bool json = false;
  uint64_t v;
  int c;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case O_IMAGE: o.image = optarg; break;
    case O_CHILDREN:
      if (parse_count(optarg, 4096, &v) < 0 || v == 0)
        return cli_usage(cmd, "--children wants 1..4096, not '%s'", optarg);
      o.children = (unsigned)v;
      break;
    case O_BACKEND:
      if (!(o.backend = cf_mem_backend_find(optarg)))
        return cli_usage(cmd, "%s", cf_error());
      break;
    case O_PREFETCH: o.prefetch = true; break;
    case O_TOUCH:
      if (parse_count(optarg, UINT32_MAX, &o.touch) < 0)
        return cli_usage(cmd, "bad --touch '%s'", optarg);
      break;
    case O_WRITE:
      if (parse_count(optarg, UINT32_MAX, &o.write) < 0)
        return cli_usage(cmd, "bad --write '%s'", optarg);
      break;
    case O_SEED:
      if (parse_count(optarg, UINT64_MAX, &o.seed) < 0)
        return cli_usage(cmd, "bad --seed '%s'", optarg);
      break;
    case O_JSON: json = true; break;
    case O_CPU:
      if (strcmp(optarg, "pin") == 0)
        o.cpu = CF_FANOUT_CPU_PIN;
      else if (strcmp(optarg, "free") == 0)
        o.cpu = CF_FANOUT_CPU_FREE;
      else
        return cli_usage(cmd, "--cpu wants pin or free, not '%s'", optarg);
      break;
    default: return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  if (!o.image)
    return cli_usage(cmd, "--image NAME is required");
  if (o.write > o.touch)
    return cli_usage(cmd, "--write must not exceed --touch");
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  o.store = s;
  struct cf_fanout_result r;
  int rc = cf_fanout_run(&o, &r);
  cf_store_close(s);
  if (rc < 0)
    return cli_error("fanout: %s", cf_error());
  if (json) {
    printf("{\"backend\":\"%s\",\"children\":%u,\"failed\":%u,\"prefetch\":%s,\"touch\":%llu,"
           "\"write\":%llu,\"spawn_p50_us\":%.1f,\"spawn_p99_us\":%.1f,\"all_ready_ms\":%.2f,"
           "\"touch_p50_us\":%.2f,\"touch_p99_us\":%.2f,\"faults_per_child\":%.1f,"
           "\"prefetched_per_child\":%.1f,\"server_us_per_fault\":%.2f,\"private_kib_p50\":%.0f,\"private_kib_max\":%.0f,"
           "\"map_private_kib_p50\":%.0f,\"written_kib\":%.0f,\"read_empty_kib\":%.0f,"
           "\"shared_zero_page\":%s,\"shared_fraction\":%.4f,"
           "\"wset_pages\":%llu,\"recorded\":%s,\"pinned\":%s}\n",
           o.backend->name, r.children, r.failed, o.prefetch ? "true" : "false",
           (unsigned long long)o.touch, (unsigned long long)o.write, r.spawn_p50_us, r.spawn_p99_us,
           r.all_ready_ms, r.touch_p50_us, r.touch_p99_us, r.faults_per_child,
           r.prefetched_per_child, r.server_us_per_fault, r.private_kib_p50, r.private_kib_max, r.map_private_kib_p50,
           r.written_kib, r.read_empty_kib, r.shared_zero_page ? "true" : "false", r.shared_fraction,
           (unsigned long long)r.wset_pages,
           r.recorded ? "true" : "false", r.pinned ? "true" : "false");
  } else {
    printf("backend %s, %u children (%u failed), touch %llu pages, write %llu%s%s\n",
           o.backend->name, r.children, r.failed, (unsigned long long)o.touch,
           (unsigned long long)o.write, o.prefetch ? ", prefetch" : "",
           r.pinned ? ", pinned round robin to the CPUs" : "");
    if (o.prefetch)
      printf("working set       %llu pages%s\n", (unsigned long long)r.wset_pages,
             r.recorded ? " (recorded by this run)" : "");
    printf("spawn latency     p50 %.1f us, p99 %.1f us\n", r.spawn_p50_us, r.spawn_p99_us);
    printf("all ready         %.2f ms\n", r.all_ready_ms);
    printf("first touch       p50 %.2f us, p99 %.2f us\n", r.touch_p50_us, r.touch_p99_us);
    printf("faults per child  %.1f%s\n", r.faults_per_child,
           o.backend == &cf_mem_backend_uffd ? " (served by the page server)" : " (minor faults)");
    if (o.backend == &cf_mem_backend_uffd)
      printf("server time       %.2f us per fault (mean: lookup, read, ioctl)\n", r.server_us_per_fault);
    if (o.prefetch && o.backend == &cf_mem_backend_uffd)
      printf("prefetched        %.1f pages per child\n", r.prefetched_per_child);
    printf("private memory    p50 %.0f KiB, max %.0f KiB per child (smaps_rollup); "
           "%.0f KiB in the mapping; wrote %.0f KiB\n",
           r.private_kib_p50, r.private_kib_max, r.map_private_kib_p50, r.written_kib);
    if (!r.shared_zero_page)
      printf("                  this kernel has no zero page for reads: the %.0f KiB each child "
             "only read of empty extents are private%s\n",
             r.read_empty_kib, o.backend == &cf_mem_backend_file ? " too" : " for the file backend");
    printf("shared fraction   %.1f %% of the mapping's resident pages\n", 100 * r.shared_fraction);
  }
  return r.failed ? EXIT_ERR : EXIT_OK;
}

/* The page server's refusals and failed clients, on stderr. */
static void serve_log(void *ctx, const char *msg)
{
  fprintf(stderr, "cowfork: %s\n", msg);
}

static int cmd_serve(const struct cli_cmd *cmd, int argc, char **argv)
{
  static const struct option opts[] = {{"socket", required_argument, 0, O_SOCKET},
                                       {"image", required_argument, 0, O_IMAGE},
                                       {"prefetch", no_argument, 0, O_PREFETCH},
                                       {0}};
  const char *sock = NULL, *name = NULL;
  bool prefetch = false;
  int c;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == O_SOCKET)
      sock = optarg;
    else if (c == O_IMAGE)
      name = optarg;
    else if (c == O_PREFETCH)
      prefetch = true;
    else
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
  }
  if (optind != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  if (!sock || !name)
    return cli_usage(cmd, "--socket PATH and --image NAME are required");
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  int ret = EXIT_OK;
  struct cf_wset ws = {0};
  struct cf_image *img = cf_image_open(s, name);
  struct cf_uffd_server *srv = NULL;
  if (!img) {
    ret = cli_error("%s", cf_error());
    goto out;
  }
  if (prefetch) {
    char path[4096];
    if (cf_wset_path(s, name, path, sizeof path) < 0 ||
        cf_wset_load(path, cf_image_header(img)->id, &ws) < 0)
      fprintf(stderr, "cowfork: no working set, serving without prefetch: %s\n", cf_error());
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server thread exists: it inherits it */
  struct cf_uffd_opts uo = {.flags = ws.n ? CF_UFFD_PREFETCH : 0, .prefetch = ws.pages,
                            .nprefetch = ws.n};
  if (!(srv = cf_uffd_server_new(NULL, NULL))) {
    ret = cli_error("%s", cf_error());
    goto out;
  }
  cf_uffd_server_set_log(srv, serve_log, NULL);
  if (cf_uffd_server_listen(srv, sock, img, &uo) < 0) {
    ret = cli_error("%s", cf_error());
    goto out;
  }
  int sig;
  sigwait(&set, &sig);
out:
  cf_uffd_server_free(srv);
  cf_image_close(img);
  cf_wset_free(&ws);
  cf_store_close(s);
  return ret;
}

const struct cli_cmd cli_mem_cmds[] = {
    {"bench fanout", "spawn N child processes from an image and measure them",
     "Usage: cowfork bench fanout --image NAME [--children N] [--backend file|uffd]\n"
     "                            [--prefetch] [--touch PAGES] [--write PAGES]\n"
     "                            [--cpu pin|free] [--json]\n"
     "\n"
     "Spawn N child processes (default 10) that each map image NAME copy-on-write\n"
     "through the memory backend (file: MAP_PRIVATE of the layers, the default;\n"
     "uffd: a userfaultfd page server started for the run), read PAGES pseudo-random\n"
     "pages (default 256) timing each first touch, write the first of them (default\n"
     "16), check every page's contents, and report: spawn latency p50/p99 (request\n"
     "to mapped), time until all are ready, first-touch time p50/p99, faults per\n"
     "child (uffd: served by the page server; file: minor faults), private memory\n"
     "per child (smaps_rollup, and inside the mapping) and the shared fraction of\n"
     "the mapping's resident pages.\n"
     "\n"
     "  --prefetch   use the working set recorded for NAME (STORE/wset/NAME),\n"
     "               recording it first with one child if there is none: uffd\n"
     "               installs it before the child runs, file reads it into the\n"
     "               page cache and maps it at spawn\n"
     "  --cpu pin    pin child i to the (i mod n)-th CPU before it maps (the\n"
     "               default for uffd: the page server then serves each fault\n"
     "               on the child's own CPU; the price is load balancing)\n"
     "  --cpu free   let the scheduler place children (the default for file)\n"
     "  --seed N     choose other pages (default 1)\n"
     "  --json       one JSON object\n"
     "Exit status 1 when a child failed or saw wrong contents.\n",
     cmd_fanout},
    {"mem serve", "userfaultfd page server for an image (Firecracker-compatible)",
     "Usage: cowfork mem serve --socket PATH --image NAME [--prefetch]\n"
     "\n"
     "Serve the memory of image NAME to any number of processes that connect to\n"
     "the Unix socket PATH and hand over a userfaultfd with Firecracker's\n"
     "handshake: a JSON array of {\"base_host_virt_addr\", \"size\", \"offset\",\n"
     "\"page_size\", \"page_size_kib\"} (offset: a byte offset in the image; either\n"
     "page size key may be absent; both hold bytes, as Firecracker sends them).\n"
     "A refused handshake is logged on stderr, and a client that asked for no\n"
     "answer (Firecracker) is sent SIGBUS rather than left waiting in its first\n"
     "fault. Runs until SIGINT or SIGTERM. --prefetch installs NAME's recorded\n"
     "working set into each client in the background.\n",
     cmd_serve},
    {0},
};
