/* cowfork daemon, and cowfork sandbox create|exec|branch|pause|resume|rm|ls:
 * the daemon (daemon/daemon.c) and thin clients of its API
 * (daemon/client.c, docs/daemon.md). `cowfork fork` needs no daemon. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cowfork/netpolicy.h"
#include "cowfork/daemon.h"
#include "cowfork/error.h"
#include "cowfork/jail.h"
#include "cowfork/root.h"
#include "daemon/util.h"

#include <dirent.h>
#include <libgen.h>
#include <sys/stat.h>

/* The daemon's jail (docs/security.md): where run as root, its own mount
 * namespace, and unless host_roots a new root in which only the store, the
 * roots directory (and where its entries link to: tests share one root) and
 * the socket's directory are visible; sandbox roots must lie there
 * (o->visible). Then --user. keep/store hold the strings o points to. */
static int daemon_jail(struct cf_daemon_opts *o, const char *store, bool host_roots, const char *user,
                       char keep[][PATH_MAX], const char **keepv, size_t max)
{
  const char *j = getenv("COWFORK_JAIL");
  if ((j && !strcmp(j, "0") && !user) || geteuid() != 0)
    return cf_jail_enter(&(struct cf_jail_opts){.user = user}) < 0 ? cli_error("%s", cf_error()) : 0;
  size_t n = 0;
  char roots[PATH_MAX], sockdir[PATH_MAX];
  /* At the paths as the daemon names them (templates record their roots
   * so); link targets at their real paths. */
  snprintf(keep[n++], PATH_MAX, "%s", store);
  if (!host_roots) {
    /* The default root is built from the host's packages: here, while they
     * are visible (a request naming no root gets it). */
    char def[PATH_MAX];
    if (cli_root_resolve(NULL, def, sizeof def) < 0) /* said why; the daemon still serves named roots */
      fprintf(stderr, "cowfork daemon: no root 'default': requests that name no root will fail\n");
    if (cf_roots_dir(store, roots, sizeof roots) < 0)
      return cli_error("%s", cf_error());
    struct stat st;
    if (stat(roots, &st) == 0 && strlen(roots) < PATH_MAX)
      snprintf(keep[n++], PATH_MAX, "%s", roots);
    DIR *dir = opendir(roots);
    for (struct dirent *e; dir && (e = readdir(dir)) && n + 1 < max;) {
      char p[PATH_MAX + 256];
      snprintf(p, sizeof p, "%s/%s", roots, e->d_name);
      if (e->d_name[0] != '.' && lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && realpath(p, keep[n]))
        n++;
    }
    if (dir)
      closedir(dir);
    snprintf(sockdir, sizeof sockdir, "%s", o->socket_path);
    if (realpath(dirname(sockdir), keep[n]))
      n++;
  }
  for (size_t i = 0; i < n; i++)
    keepv[i] = keep[i];
  if (cf_jail_enter(&(struct cf_jail_opts){.keep = keepv, .nkeep = n, .pivot = !host_roots, .user = user}) < 0)
    return cli_error("%s", cf_error());
  if (!host_roots) {
    o->visible = keepv;
    o->nvisible = n - 1; /* not the socket's directory */
  }
  return 0;
}

static int cmd_daemon(const struct cli_cmd *cmd, int argc, char **argv)
{
  enum { OPT_SOCKET = 1000, OPT_LISTEN, OPT_TOKEN, OPT_WORKERS, OPT_MAX, OPT_BODY, OPT_TIMEOUT, OPT_CPU, OPT_QUIET, OPT_NO_PARK, OPT_PARK_AFTER, OPT_NO_SECCOMP, OPT_USER, OPT_HOST_ROOTS, OPT_FILES, OPT_MEMORY, OPT_NET_CEILING };
  static const struct option opts[] = {{"socket", required_argument, 0, OPT_SOCKET},
                                       {"listen", required_argument, 0, OPT_LISTEN},
                                       {"token-file", required_argument, 0, OPT_TOKEN},
                                       {"workers", required_argument, 0, OPT_WORKERS},
                                       {"max-sandboxes", required_argument, 0, OPT_MAX},
                                       {"max-body", required_argument, 0, OPT_BODY},
                                       {"max-files", required_argument, 0, OPT_FILES},
                                       {"max-memory", required_argument, 0, OPT_MEMORY},
                                       {"timeout", required_argument, 0, OPT_TIMEOUT},
                                       {"cpu-limit", required_argument, 0, OPT_CPU},
                                       {"quiet", no_argument, 0, OPT_QUIET},
                                       {"no-park", no_argument, 0, OPT_NO_PARK},
                                       {"no-seccomp", no_argument, 0, OPT_NO_SECCOMP},
                                       {"park-after", required_argument, 0, OPT_PARK_AFTER},
                                       {"user", required_argument, 0, OPT_USER},
                                       {"host-roots", no_argument, 0, OPT_HOST_ROOTS},
                                       {"net-ceiling", required_argument, 0, OPT_NET_CEILING},
                                       {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  char sockbuf[PATH_MAX], token[512] = "";
  const char *user = NULL;
  bool host_roots = false;
  struct cf_daemon_opts o = {.socket_path = cf_daemon_default_socket(sockbuf, sizeof sockbuf)};
  int c;
  uint64_t size;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET: o.socket_path = optarg; break;
    case OPT_LISTEN: o.tcp_listen = optarg; break;
    case OPT_TOKEN: {
      FILE *f = fopen(optarg, "r");
      if (!f)
        return cli_error("%s: %m", optarg);
      if (!fgets(token, sizeof token, f))
        token[0] = 0;
      fclose(f);
      token[strcspn(token, "\r\n")] = 0;
      if (strlen(token) < 16)
        return cli_error("%s: the token must be at least 16 characters", optarg);
      o.token = token;
      break;
    }
    case OPT_WORKERS:
    case OPT_MAX:
      if (cli_parse_uint(optarg, 1, 100000, c == OPT_WORKERS ? &o.workers : &o.max_live) < 0)
        return cli_usage(cmd, "bad %s '%s'", c == OPT_WORKERS ? "--workers" : "--max-sandboxes", optarg);
      break;
    case OPT_FILES:
      if (cli_parse_uint(optarg, 4, CF_SANDBOX_NR_OPEN, &o.max_files) < 0)
        return cli_usage(cmd, "bad --max-files '%s' (4..%d)", optarg, CF_SANDBOX_NR_OPEN);
      break;
    case OPT_MEMORY:
      if (cli_parse_size(optarg, &size) < 0 || size < (1u << 20))
        return cli_usage(cmd, "bad --max-memory '%s' (a size, at least 1M)", optarg);
      o.max_memory = size;
      break;
    case OPT_BODY:
      if (cli_parse_size(optarg, &size) < 0 || size == 0)
        return cli_usage(cmd, "bad --max-body '%s'", optarg);
      o.max_body = size;
      break;
    case OPT_TIMEOUT:
      if (cli_parse_seconds(optarg, &o.default_timeout) < 0)
        return cli_usage(cmd, "bad --timeout '%s' (seconds)", optarg);
      break;
    case OPT_CPU:
      if (cli_parse_seconds(optarg, &o.default_cpu_limit) < 0)
        return cli_usage(cmd, "bad --cpu-limit '%s' (seconds)", optarg);
      break;
    case 'q':
    case OPT_QUIET: o.quiet = true; break;
    case OPT_NO_PARK: o.no_park = true; break;
    case OPT_NO_SECCOMP: cf_seccomp_set(false); break;
    case OPT_USER: user = optarg; break;
    case OPT_HOST_ROOTS: host_roots = true; break;
    case OPT_NET_CEILING: {
      struct cf_net_policy p;
      if (cf_net_parse(optarg, &p) < 0)
        return cli_usage(cmd, "bad --net-ceiling (%s)", cf_error());
      o.net_ceiling = optarg;
      break;
    }
    case OPT_PARK_AFTER:
      if (strcmp(optarg, "0") != 0 && cli_parse_seconds(optarg, &o.park_after) < 0)
        return cli_usage(cmd, "bad --park-after '%s' (seconds, 0: at once)", optarg);
      break;
    default: return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  if (o.tcp_listen && !o.token)
    return cli_usage(cmd, "--listen needs --token-file");
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", cf_store_dir(s));
  /* Before the daemon's first thread (docs/security.md). */
  char keep[16][PATH_MAX];
  const char *keepv[16];
  int jr = daemon_jail(&o, dir, host_roots, user, keep, keepv, 16);
  cf_store_close(s);
  if (jr)
    return jr;
  o.store_dir = dir;
  if (cf_daemon_run(&o) < 0)
    return cli_error("daemon: %s", cf_error());
  return EXIT_OK;
}

/* --- clients ---------------------------------------------------------------- */

static const char *sock_opt;

static const char *sock(void)
{
  static char buf[PATH_MAX];
  return sock_opt ? sock_opt : cf_daemon_default_socket(buf, sizeof buf);
}

/* Parse "--socket PATH" and the words after the verb. */
static int parse_common(const struct cli_cmd *cmd, int argc, char **argv, const char *shortopts,
                        const struct option *extra, int (*on)(int c, const char *arg), int *first)
{
  struct option opts[16];
  int n = 0;
  opts[n++] = (struct option){"socket", required_argument, 0, 1000};
  for (const struct option *e = extra; e && e->name && n < 15; e++)
    opts[n++] = *e;
  opts[n] = (struct option){0};
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
    if (c == 1000)
      sock_opt = optarg;
    else if (c == '?' || !on || on(c, optarg) < 0)
      return cli_usage(cmd, "bad option '%s'", argv[optind - 1]);
  }
  *first = optind;
  return 0;
}

/* Send a request; print the daemon's error and return NULL on failure. */
static json_t *call(const char *method, const char *path, json_t *body, int *status)
{
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  char *resp = NULL;
  size_t len = 0;
  int st = 0;
  int rc = cf_daemon_request(sock(), method, path, text, text ? strlen(text) : 0, &st, &resp, &len);
  free(text);
  if (rc < 0) {
    cli_error("%s", cf_error());
    return NULL;
  }
  json_error_t je;
  json_t *j = json_loadb(resp, len, 0, &je);
  if (status)
    *status = st;
  if (st >= 400) {
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    cli_error("%s (HTTP %d)", msg ? msg : resp, st);
    json_decref(j);
    free(resp);
    return NULL;
  }
  free(resp);
  if (!j)
    cli_error("the daemon's answer is not JSON: %s", je.text);
  return j;
}

static unsigned long create_n = 1;
static const char *create_backend, *create_net;
static int opt_create(int c, const char *a)
{
  char *e;
  if (c == 'n') {
    create_n = strtoul(a, &e, 10);
    return *e || create_n == 0 || create_n > 1000 ? -1 : 0;
  }
  if (c == 'N') {
    create_net = a;
    return 0;
  }
  create_backend = a;
  return 0;
}

static int cmd_create(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  static const struct option extra[] = {{"backend", required_argument, 0, 'b'}, {"net", required_argument, 0, 'N'}, {0}};
  int first;
  if (parse_common(cmd, argc, argv, "n:", extra, opt_create, &first))
    return EXIT_USAGE;
  if (first + 1 != argc)
    return cli_usage(cmd, "want exactly one TEMPLATE");
  json_t *b = json_pack("{s:s,s:i}", "template", argv[first], "count", (int)create_n);
  if (create_backend)
    json_object_set_new(b, "backend", json_string(create_backend));
  if (create_net)
    json_object_set_new(b, "net", json_string(create_net));
  json_t *r = call("POST", "/v1/sandboxes", b, NULL);
  json_decref(b);
  if (!r)
    return EXIT_ERR;
  size_t i;
  json_t *id;
  json_array_foreach(json_object_get(r, "ids"), i, id) puts(json_string_value(id));
  json_decref(r);
  return EXIT_OK;
}

/* Write a string field of an exec answer to f (exact bytes from _base64). */
static void put_field(json_t *r, const char *key, FILE *f)
{
  char k2[64];
  snprintf(k2, sizeof k2, "%s_base64", key);
  const char *b64 = json_string_value(json_object_get(r, k2));
  if (b64) {
    size_t n;
    char *raw = base64_decode(b64, strlen(b64), &n);
    if (raw)
      fwrite(raw, 1, n, f);
    free(raw);
    return;
  }
  json_t *s = json_object_get(r, key);
  fwrite(json_string_value(s), 1, json_string_length(s), f);
}

static double exec_timeout;
static bool json_out;
static int opt_exec(int c, const char *a)
{
  char *e;
  if (c == 'j') {
    json_out = true;
    return 0;
  }
  exec_timeout = strtod(a, &e);
  return *e || !(exec_timeout > 0) ? -1 : 0;
}

static int opt_json(int c, const char *a)
{
  (void)c;
  (void)a;
  json_out = true;
  return 0;
}

static int cmd_exec(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  static const struct option extra[] = {{"timeout", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {0}};
  int first;
  if (parse_common(cmd, argc, argv, "+", extra, opt_exec, &first))
    return EXIT_USAGE;
  if (first >= argc)
    return cli_usage(cmd, "missing ID");
  const char *id = argv[first++];
  /* The input: the words after ID as one line, or this command's stdin. */
  char *in = NULL;
  size_t len = 0;
  if (first < argc) {
    FILE *m = open_memstream(&in, &len);
    for (int i = first; i < argc; i++)
      fprintf(m, "%s%s", i > first ? " " : "", argv[i]);
    fputc('\n', m);
    fclose(m);
  } else {
    FILE *m = open_memstream(&in, &len);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, stdin)) > 0)
      fwrite(buf, 1, k, m);
    fclose(m);
  }
  json_t *b = json_object();
  if (utf8_valid(in, len))
    json_object_set_new(b, "input", json_stringn(in, len));
  else {
    char *e = base64_encode(in, len);
    json_object_set_new(b, "input_base64", json_string(e));
    free(e);
  }
  free(in);
  if (exec_timeout > 0)
    json_object_set_new(b, "timeout", json_real(exec_timeout));
  char path[512];
  snprintf(path, sizeof path, "/v1/sandboxes/%s/exec", id);
  json_t *r = call("POST", path, b, NULL);
  json_decref(b);
  if (!r)
    return EXIT_ERR;
  int rc = EXIT_OK;
  if (json_out) {
    json_dumpf(r, stdout, JSON_COMPACT);
    putchar('\n');
  } else {
    put_field(r, "output", stdout);
    fflush(stdout);
    put_field(r, "stderr", stderr);
    json_t *ec = json_object_get(r, "exit_code");
    if (json_is_integer(ec)) {
      rc = (int)json_integer_value(ec);
      fprintf(stderr, "cowfork sandbox exec: %s ended (status %d)%s\n", id, rc,
              json_is_true(json_object_get(r, "timed_out")) ? ": timed out" : "");
    }
  }
  json_decref(r);
  return rc;
}

/* sandbox branch | pause | resume: a POST to /v1/sandboxes/ID/VERB. */
static int simple_post(const struct cli_cmd *cmd, int argc, char **argv)
{
  const char *name = cmd->name;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int first;
  if (parse_common(cmd, argc, argv, "", NULL, NULL, &first))
    return EXIT_USAGE;
  bool branch = strcmp(name, "sandbox branch") == 0;
  if (argc - first != (branch ? 2 : 1))
    return cli_usage(cmd, branch ? "want ID NEW" : "want one ID");
  char path[512];
  snprintf(path, sizeof path, "/v1/sandboxes/%s/%s", argv[first], strchr(name, ' ') + 1);
  json_t *b = branch ? json_pack("{s:s}", "template", argv[first + 1]) : NULL;
  json_t *r = call("POST", path, b, NULL);
  json_decref(b);
  if (!r)
    return EXIT_ERR;
  if (branch)
    fprintf(stderr, "branch %s of %s: %lld pages stored, %.1f ms\n", argv[first + 1], argv[first],
            (long long)json_integer_value(json_object_get(r, "pages_stored")),
            json_number_value(json_object_get(r, "save_ms")));
  else
    printf("%s %s\n", argv[first], json_string_value(json_object_get(r, "state")));
  json_decref(r);
  return EXIT_OK;
}


static int cmd_rm(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  int first;
  if (parse_common(cmd, argc, argv, "", NULL, NULL, &first))
    return EXIT_USAGE;
  if (first >= argc)
    return cli_usage(cmd, "missing ID");
  int rc = EXIT_OK;
  for (int i = first; i < argc; i++) {
    char path[512];
    snprintf(path, sizeof path, "/v1/sandboxes/%s", argv[i]);
    json_t *r = call("DELETE", path, NULL, NULL);
    if (!r)
      rc = EXIT_ERR;
    json_decref(r);
  }
  return rc;
}

/* cowfork sandbox port ID [PORT] [--rm] */
static bool port_rm;
static int opt_port(int c, const char *a)
{
  (void)a;
  if (c == 'r')
    port_rm = true;
  else
    json_out = true;
  return 0;
}

static int cmd_port(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  static const struct option extra[] = {{"rm", no_argument, 0, 'r'}, {"json", no_argument, 0, 'j'}, {0}};
  int first;
  if (parse_common(cmd, argc, argv, "", extra, opt_port, &first))
    return EXIT_USAGE;
  if (first >= argc || argc - first > 2)
    return cli_usage(cmd, "want ID [PORT]");
  const char *id = argv[first];
  char path[512];
  json_t *r;
  if (argc - first == 1) {
    if (port_rm)
      return cli_usage(cmd, "--rm wants a PORT");
    snprintf(path, sizeof path, "/v1/sandboxes/%s/ports", id);
    if (!(r = call("GET", path, NULL, NULL)))
      return EXIT_ERR;
    size_t i;
    json_t *f;
    if (json_out) {
      json_dumpf(r, stdout, JSON_COMPACT);
      putchar('\n');
    } else
      json_array_foreach(json_object_get(r, "ports"), i, f) printf("%lld %s\n",
                                                                  (long long)json_integer_value(json_object_get(f, "port")),
                                                                  json_string_value(json_object_get(f, "socket")));
    json_decref(r);
    return EXIT_OK;
  }
  unsigned port;
  if (cli_parse_uint(argv[first + 1], 1, 65535, &port) < 0)
    return cli_usage(cmd, "bad PORT '%s' (1-65535)", argv[first + 1]);
  if (port_rm) {
    snprintf(path, sizeof path, "/v1/sandboxes/%s/ports/%u", id, port);
    r = call("DELETE", path, NULL, NULL);
  } else {
    snprintf(path, sizeof path, "/v1/sandboxes/%s/ports", id);
    json_t *b = json_pack("{s:i}", "port", (int)port);
    r = call("POST", path, b, NULL);
    json_decref(b);
    if (r)
      puts(json_string_value(json_object_get(r, "socket")));
  }
  json_decref(r);
  return r ? EXIT_OK : EXIT_ERR;
}

static int cmd_ls(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  static const struct option extra[] = {{"json", no_argument, 0, 'j'}, {0}};
  int first;
  if (parse_common(cmd, argc, argv, "", extra, opt_json, &first))
    return EXIT_USAGE;
  if (first != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[first]);
  json_t *r = call("GET", "/v1/sandboxes", NULL, NULL);
  if (!r)
    return EXIT_ERR;
  if (json_out) {
    json_dumpf(r, stdout, JSON_COMPACT);
    putchar('\n');
  } else {
    printf("%-20s %-8s %-20s %7s %10s %s\n", "ID", "STATE", "TEMPLATE", "EXECS", "PRIVATE", "AGE");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(r, "sandboxes"), i, s)
    {
      printf("%-20s %-8s %-20s %7lld %9lldK %.0fs\n", json_string_value(json_object_get(s, "id")),
             json_string_value(json_object_get(s, "state")), json_string_value(json_object_get(s, "template")),
             (long long)json_integer_value(json_object_get(s, "execs")),
             (long long)json_integer_value(json_object_get(json_object_get(s, "memory"), "private_bytes")) >> 10,
             json_number_value(json_object_get(s, "age_s")));
    }
  }
  json_decref(r);
  return EXIT_OK;
}

const struct cli_cmd cli_daemon_cmds[] = {
    {"daemon", "serve the REST API over live sandboxes on a Unix socket",
     "Usage: cowfork daemon [--socket PATH] [--listen 127.0.0.1:PORT --token-file FILE]\n"
     "                      [--workers N] [--max-sandboxes N] [--max-files N] [--max-memory SIZE]\n"
     "                      [--max-body SIZE] [--timeout S] [--cpu-limit S]\n"
     "                      [--no-park | --park-after S] [--no-seccomp] [--user NAME]\n"
     "                      [--host-roots] [--net-ceiling POLICY] [-q]\n"
     "\n"
     "Serve the cowfork API (docs/daemon.md): HTTP/1.1 + JSON on a Unix socket\n"
     "(default $COWFORK_SOCKET, else $XDG_RUNTIME_DIR/cowfork.sock, else\n"
     "/run/cowfork.sock; mode 0600) over the store's templates and live sandboxes.\n"
     "Runs in the foreground until SIGTERM or SIGINT, then pauses every running\n"
     "sandbox into the store (a restart resumes them). The state file is\n"
     "STORE/daemon/state.json; after a crash, sandboxes that were running are\n"
     "reported lost and paused ones stay resumable.\n"
     "\n"
     "  --listen ADDR:PORT  also serve on loopback TCP; every request must carry\n"
     "                      \"Authorization: Bearer TOKEN\" (TOKEN: --token-file)\n"
     "  --workers N         threads running sandboxes (default 2 x CPUs)\n"
     "  --max-sandboxes N   live sandboxes at once; 429 past it (default 512, lowered to\n"
     "                      what RLIMIT_NOFILE holds; given and not fitting: refused)\n"
     "  --max-files N       open files per sandbox, its RLIMIT_NOFILE (default 256)\n"
     "  --max-memory SIZE   private memory of the live sandboxes; creates and resumes past\n"
     "                      it get 507 (default 3/4 of RAM)\n"
     "  --max-body SIZE     largest request body; 413 past it (default 8M)\n"
     "  --timeout S         default exec timeout (default 30; a request may ask up to 600)\n"
     "  --cpu-limit S       default exec CPU-time limit (default none; a request may ask one)\n"
     "  --park-after S      park a live sandbox once it has been idle S seconds (default\n"
     "                      0: after every create, exec and branch). Parked, it keeps\n"
     "                      only the pages it changed and its registers (~0.7 MiB less\n"
     "                      than in its own VM) and its next exec takes a spare VM\n"
     "                      (~70 us more per exec when parking after each one)\n"
     "  --no-park           keep every idle live sandbox in its own VM\n"
     "  --no-seccomp        no seccomp-bpf filter on the worker threads (debugging;\n"
     "                      also COWFORK_SECCOMP=0; docs/security.md)\n"
     "  --user NAME         run as NAME after the setup (root only; the store must\n"
     "                      be NAME's)\n"
     "  --host-roots        keep the host's file system visible, so that any host\n"
     "                      directory may be a sandbox's root (unsafe). Without it,\n"
     "                      as root, the daemon runs in its own mount namespace and\n"
     "                      new root showing only the store, its roots and the\n"
     "                      socket's directory; the root 'default' is built at start\n"
     "                      when missing (docs/security.md)\n"
     "  --net-ceiling POLICY  the most network a sandbox may ask (\"net\" in a create\n"
     "                      request, as cowfork run --net): none (default), all, or\n"
     "                      allow=ADDR[/BITS][:PORT],...; beyond it: 403\n"
     "  -q, --quiet         no log lines\n",
     cmd_daemon},
    {"sandbox create", "start live sandboxes from a template (daemon)",
     "Usage: cowfork sandbox create TEMPLATE [-n N] [--backend file|uffd] [--net POLICY] [--socket PATH]\n"
     "\n"
     "Ask the daemon for N (default 1) live sandboxes forked from TEMPLATE; prints\n"
     "their ids, one a line. --net: their network policy (as cowfork run's; at\n"
     "most the daemon's --net-ceiling).\n",
     cmd_create},
    {"sandbox exec", "send input to a live sandbox and print its answer (daemon)",
     "Usage: cowfork sandbox exec ID [--timeout S] [--json] [--socket PATH] [WORDS...]\n"
     "\n"
     "Hand the input (WORDS joined by spaces plus a newline, or else this\n"
     "command's stdin) to the sandbox's program, which runs until it reads its\n"
     "stdin again with nothing left; print what it wrote to stdout and stderr.\n"
     "The sandbox stays alive for the next exec. If the program ended, the exit\n"
     "status is its status. --json prints the daemon's answer as is.\n",
     cmd_exec},
    {"sandbox branch", "save a live sandbox as a new template (daemon)",
     "Usage: cowfork sandbox branch ID NEW [--socket PATH]\n"
     "\n"
     "Save the sandbox, as it is between two execs, as template NEW holding only\n"
     "the pages it changed; the sandbox goes on.\n",
     simple_post},
    {"sandbox pause", "save a live sandbox into the store and free its VM (daemon)",
     "Usage: cowfork sandbox pause ID [--socket PATH]\n", simple_post},
    {"sandbox resume", "bring a paused sandbox back (daemon)",
     "Usage: cowfork sandbox resume ID [--socket PATH]\n", simple_post},
    {"sandbox rm", "delete sandboxes (daemon)", "Usage: cowfork sandbox rm ID... [--socket PATH]\n", cmd_rm},
    {"sandbox port", "forward a live sandbox's TCP port to a host Unix socket (daemon)",
     "Usage: cowfork sandbox port ID [PORT [--rm]] [--json] [--socket PATH]\n"
     "\n"
     "With PORT: ask the daemon to forward PORT of sandbox ID and print the host\n"
     "Unix socket (mode 0600, next to the daemon's socket) whose connections reach\n"
     "the sandbox's listener on 127.0.0.1:PORT (or ::1, or a wildcard) as if made\n"
     "inside it: curl --unix-socket SOCKET http://x/. --rm stops forwarding it.\n"
     "Without PORT: list the forwarded ports. A connection is served while the\n"
     "sandbox runs (during an exec); between execs it waits in the listener's\n"
     "queue (docs/daemon.md).\n",
     cmd_port},
    {"sandbox ls", "list the daemon's sandboxes", "Usage: cowfork sandbox ls [--json] [--socket PATH]\n", cmd_ls},
    {0},
};

