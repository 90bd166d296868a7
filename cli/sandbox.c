/* cowfork run, template create, fork, snapshot: thin callers of the shim
 * (include/cowfork/shim.h).
 *
 * fork runs its children on a pool of threads in this one process (one VM
 * and one vCPU thread each at a time; docs/sandbox.md says why not a process
 * per child). Each child's stdout and stderr go to its own memfd and are
 * printed in child order once all have ended (or written to
 * --output-dir/I). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cowfork/error.h"
#include "cowfork/extfs.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "cowfork/mem.h"
#include "cowfork/netpolicy.h"
#include "cowfork/shim.h"
#include "cowfork/uffd.h"

extern char **environ;

/* --env K=V / --env K, collected for cf_sandbox_env. */
struct envset {
  const char **v;
  size_t n;
};

static int env_add(struct envset *e, const char *kv)
{
  const char **p = realloc(e->v, (e->n + 1) * sizeof *p);
  if (!p)
    return -1;
  e->v = p;
  e->v[e->n++] = kv;
  return 0;
}

/* The sandbox's environment: the default (the caller's TERM, if set, so
 * that a program on this terminal draws as it should), PWD=DIR with --cwd
 * DIR (the directory it starts in), then --env; never the rest of the
 * caller's. */
static char **env_build(const struct envset *e, const char *cwd)
{
  const char **set = calloc(e->n + 1, sizeof *set);
  char pwd[PATH_MAX + 8];
  size_t n = 0;
  if (!set)
    return NULL; /* (out of memory) */
  if (cwd) {
    snprintf(pwd, sizeof pwd, "PWD=%s", cwd);
    set[n++] = pwd;
  }
  for (size_t i = 0; i < e->n; i++)
    set[n++] = e->v[i];
  char **env = cf_sandbox_env(set, n, environ, (int)getuid(), getenv("TERM"));
  free(set);
  return env;
}

static const char *box_user; /* --user: cli_jail */
static struct cf_net_policy box_net; /* --net (it lives as long as the command) */

/* --net SPEC into box_net and o: the exit code of a bad one, else EXIT_OK.
 * A policy naming the host's network lets the filtered threads make IP
 * sockets (cf_seccomp_allow_inet). */
static int net_opt(const struct cli_cmd *cmd, const char *spec, struct cf_sandbox_opts *o)
{
  if (cf_net_parse(spec, &box_net) < 0)
    return cli_usage(cmd, "bad --net (%s)", cf_error());
  o->net = cf_net_none(&box_net) ? NULL : &box_net;
  cf_seccomp_allow_inet(o->net != NULL);
  return EXIT_OK;
}

/* The options run and template create share (BOX_OPTS in their tables,
 * their own from BOX_OPT_END on), taken by box_opt. */
enum {
  BOX_OPT_ROOT = 1000,
  BOX_OPT_ENV,
  BOX_OPT_HOSTNAME,
  BOX_OPT_MEM,
  BOX_OPT_TIMEOUT,
  BOX_OPT_STRACE,
  BOX_OPT_NO_SECCOMP,
  BOX_OPT_USER,
  BOX_OPT_CPUS,
  BOX_OPT_PIDS,
  BOX_OPT_CWD,
  BOX_OPT_NET,
  BOX_OPT_MAX_FILES,
  BOX_OPT_END
};
#define BOX_OPTS                                                                                                       \
  {"root", required_argument, 0, BOX_OPT_ROOT}, {"env", required_argument, 0, BOX_OPT_ENV},                            \
      {"hostname", required_argument, 0, BOX_OPT_HOSTNAME}, {"mem", required_argument, 0, BOX_OPT_MEM},                \
      {"timeout", required_argument, 0, BOX_OPT_TIMEOUT}, {"strace", no_argument, 0, BOX_OPT_STRACE},           \
      {"no-seccomp", no_argument, 0, BOX_OPT_NO_SECCOMP}, {"user", required_argument, 0, BOX_OPT_USER},          \
      {"cpus", required_argument, 0, BOX_OPT_CPUS}, {"pids", required_argument, 0, BOX_OPT_PIDS},       \
      {"cwd", required_argument, 0, BOX_OPT_CWD}, {"net", required_argument, 0, BOX_OPT_NET},  \
      {"max-files", required_argument, 0, BOX_OPT_MAX_FILES}

/* Option c (getopt_long's, argument optarg) if it is one of BOX_OPTS or -v,
 * into o and env: -1 if c is none of them, EXIT_OK if taken, or the exit
 * code of a bad one (its message printed). */
static int box_opt(const struct cli_cmd *cmd, int c, struct cf_sandbox_opts *o, struct envset *env)
{
  switch (c) {
  case BOX_OPT_ROOT:
    o->root = optarg;
    return EXIT_OK;
  case BOX_OPT_MEM:
    if (cli_parse_size(optarg, &o->mem_size) < 0 || o->mem_size % (2 << 20) || o->mem_size < (16 << 20))
      return cli_usage(cmd, "bad --mem '%s' (a multiple of 2M, at least 16M)", optarg);
    return EXIT_OK;
  case BOX_OPT_TIMEOUT:
    if (cli_parse_seconds(optarg, &o->timeout) < 0)
      return cli_usage(cmd, "bad --timeout '%s' (seconds)", optarg);
    return EXIT_OK;
  case BOX_OPT_STRACE:
    o->strace = true;
    return EXIT_OK;
  case BOX_OPT_CPUS:
    if (cli_parse_uint(optarg, 1, CF_SANDBOX_MAX_THREADS, &o->cpus) < 0)
      return cli_usage(cmd, "bad --cpus '%s' (1-%d)", optarg, CF_SANDBOX_MAX_THREADS);
    return EXIT_OK;
  case BOX_OPT_PIDS:
    if (cli_parse_uint(optarg, 1, 4096, &o->max_pids) < 0)
      return cli_usage(cmd, "bad --pids '%s' (1-4096)", optarg);
    return EXIT_OK;
  case BOX_OPT_MAX_FILES:
    if (cli_parse_uint(optarg, 16, CF_SANDBOX_NR_OPEN, &o->max_files) < 0)
      return cli_usage(cmd, "bad --max-files '%s' (16-%d)", optarg, CF_SANDBOX_NR_OPEN);
    return EXIT_OK;
  case BOX_OPT_CWD:
    if (optarg[0] != '/' || strlen(optarg) >= PATH_MAX)
      return cli_usage(cmd, "bad --cwd '%s' (an absolute path in the sandbox)", optarg);
    o->cwd = optarg;
    return EXIT_OK;
  case BOX_OPT_NET:
    return net_opt(cmd, optarg, o);
  case BOX_OPT_NO_SECCOMP:
    cf_seccomp_set(false);
    return EXIT_OK;
  case BOX_OPT_USER:
    if (geteuid() != 0) /* before anything is built or opened */
      return cli_error("--user %s needs root (this process runs as uid %d)", optarg, (int)geteuid());
    box_user = optarg;
    return EXIT_OK;
  case 'v':
    o->verbose = true;
    return EXIT_OK;
  case BOX_OPT_ENV:
    if (env_add(env, optarg) < 0)
      return cli_error("out of memory");
    return EXIT_OK;
  case BOX_OPT_HOSTNAME:
    if (!cf_sandbox_hostname_ok(optarg))
      return cli_usage(cmd, "bad --hostname '%s' (1-64 bytes, no control characters or '/')", optarg);
    o->hostname = optarg;
    return EXIT_OK;
  default:
    return -1;
  }
}

/* --max-files of `cowfork run` when not given: its one sandbox may hold
 * what this process's fd limit leaves room for (main raised the soft limit
 * to the hard one), at most CF_SANDBOX_NR_OPEN, at least the default. */
static unsigned run_max_files(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return CF_SANDBOX_MAX_FILES;
  rlim_t room = rl.rlim_cur == RLIM_INFINITY ? CF_SANDBOX_NR_OPEN : rl.rlim_cur;
  room = room > 2 * CF_SANDBOX_FIXED_FDS + 64 ? room - 2 * CF_SANDBOX_FIXED_FDS - 64 : 0;
  if (room > CF_SANDBOX_NR_OPEN)
    room = CF_SANDBOX_NR_OPEN;
  return room < CF_SANDBOX_MAX_FILES ? CF_SANDBOX_MAX_FILES : (unsigned)room;
}

/* --disk SIZE of `cowfork run` and `template create`: a new disk
 * (cf_extfs_new_disk: an overlay over an empty image in no store, holding
 * an empty ext4 file system), its cache file unlinked in $TMPDIR or
 * /var/tmp: it vanishes with the process unless a save commits it into
 * the store (NAME.disk: only the blocks written). */
static struct cf_overlay *run_disk(uint64_t size)
{
  const char *tmp = getenv("TMPDIR");
  struct cf_overlay *ov = cf_extfs_new_disk(size, tmp && *tmp ? tmp : "/var/tmp");
  if (!ov)
    cli_error("--disk: %s", cf_error());
  return ov;
}

static int cmd_run(const struct cli_cmd *cmd, int argc, char **argv)
{
  enum { OPT_CPU = BOX_OPT_END, OPT_VERBOSE, OPT_COPY_FILES, OPT_DISK };
  static const struct option opts[] = {BOX_OPTS,
                                       {"copy-files", no_argument, 0, OPT_COPY_FILES},
                                       {"disk", required_argument, 0, OPT_DISK},
                                       {"cpu-limit", required_argument, 0, OPT_CPU},
                                       {"verbose", no_argument, 0, OPT_VERBOSE},
                                       {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct cf_sandbox_opts o = {.root = NULL, .stdio = {0, 1, 2}};
  struct envset env = {0};
  uint64_t disk_size = 0;
  int c;
  optind = 1;
  opterr = 0;
  /* "+": stop at the first non-option (the program). */
  while ((c = getopt_long(argc, argv, "+v", opts, NULL)) != -1) {
    int br = box_opt(cmd, c, &o, &env);
    if (br > EXIT_OK)
      return br;
    if (br == EXIT_OK)
      continue;
    switch (c) {
    case OPT_CPU:
      if (cli_parse_seconds(optarg, &o.cpu_limit) < 0)
        return cli_usage(cmd, "bad --cpu-limit '%s' (seconds)", optarg);
      break;
    case OPT_VERBOSE:
      o.verbose = true;
      break;
    case OPT_COPY_FILES:
      o.copy_files = true;
      break;
    case OPT_DISK:
      if (cli_parse_size(optarg, &disk_size) < 0 || disk_size % (1 << 20) || disk_size < (16 << 20))
        return cli_usage(cmd, "bad --disk '%s' (a multiple of 1M, at least 16M)", optarg);
      break;
    default:
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return cli_usage(cmd, "missing PROGRAM");
  o.program = argv[optind];
  o.argv = argv + optind;
  if (!o.max_files)
    o.max_files = run_max_files();
  char rootbuf[PATH_MAX];
  if (cli_root_resolve(o.root, rootbuf, sizeof rootbuf) < 0) {
    free(env.v);
    return EXIT_ERR;
  }
  o.root = rootbuf;
  char **envp = env_build(&env, o.cwd);
  free(env.v);
  if (!envp)
    return cli_usage(cmd, "%s", cf_error());
  o.envp = envp;
  if (disk_size && !(o.disk = run_disk(disk_size))) {
    free(envp);
    return EXIT_ERR;
  }
  char jailbuf[PATH_MAX];
  int jr = cli_jail(&o.root, jailbuf, NULL, box_user);
  if (jr) {
    free(envp);
    cf_overlay_free(o.disk);
    return jr;
  }
  struct cf_sandbox_result res;
  fflush(stdout);
  int rr = cf_sandbox_run(&o, &res);
  free(envp);
  cf_overlay_free(o.disk);
  if (rr < 0)
    return cli_error("run %s: %s", o.program, cf_error());
  if (res.timed_out)
    fprintf(stderr, "cowfork run: %s: %s, sandbox killed\n", o.program, res.report);
  else if (res.signal)
    fprintf(stderr, "cowfork run: %s: killed by SIG%s%s%s\n", o.program, sigabbrev_np(res.signal) ? sigabbrev_np(res.signal) : "?",
            res.report[0] ? ": " : "", res.report);
  return res.status;
}

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmd_template_create(const struct cli_cmd *cmd, int argc, char **argv)
{
  enum { OPT_READY = BOX_OPT_END, OPT_DISK };
  static const struct option opts[] = {
      BOX_OPTS, {"ready", required_argument, 0, OPT_READY}, {"disk", required_argument, 0, OPT_DISK}, {0}};
  uint64_t disk_size = 0;
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct cf_sandbox_opts o = {.root = NULL, .stdio = {-1, 1, 2}, .ready = CF_READY_STDIN};
  struct envset env = {0};
  int c;
  /* NAME and options before "--", the program after it (or, without "--",
   * NAME then the program, options first). */
  int dd = argc;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--") == 0) {
      dd = i;
      break;
    }
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(dd, argv, dd < argc ? "v" : "+v", opts, NULL)) != -1) {
    int br = box_opt(cmd, c, &o, &env);
    if (br > EXIT_OK)
      return br;
    if (br == EXIT_OK)
      continue;
    switch (c) {
    case OPT_READY:
      if (strcmp(optarg, "stdin") == 0)
        o.ready = CF_READY_STDIN;
      else if (*optarg && strlen(optarg) < 256) {
        o.ready = CF_READY_MARKER;
        o.marker = optarg;
      } else
        return cli_usage(cmd, "bad --ready '%s' (stdin, or a marker of 1-255 bytes)", optarg);
      break;
    case OPT_DISK:
      if (cli_parse_size(optarg, &disk_size) < 0 || disk_size % (1 << 20) || disk_size < (16 << 20))
        return cli_usage(cmd, "bad --disk '%s' (a multiple of 1M, at least 16M)", optarg);
      break;
    default: return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  char **envp = env_build(&env, o.cwd);
  free(env.v);
  if (!envp)
    return cli_usage(cmd, "%s", cf_error());
  o.envp = envp;
  int rc = EXIT_ERR;
  int devnull = -1;
  struct cf_store *s = NULL;
  struct cf_sandbox *box = NULL;
  if (optind >= dd) {
    rc = cli_usage(cmd, "missing NAME");
    goto out;
  }
  const char *name = argv[optind++];
  if (dd < argc) {
    if (optind != dd) {
      rc = cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
      goto out;
    }
    optind = dd + 1;
  }
  if (optind >= argc) {
    rc = cli_usage(cmd, "missing PROGRAM");
    goto out;
  }
  o.program = argv[optind];
  o.argv = argv + optind;
  /* The template never reads its stdin (it pauses first): /dev/null, so that
   * the terminal is not consumed. */
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  o.stdio[0] = devnull;
  s = cli_open_store();
  if (!s || cli_template_name_free(s, name) < 0)
    goto out;
  char rootbuf[PATH_MAX];
  if (cli_root_resolve(o.root, rootbuf, sizeof rootbuf) < 0)
    goto out;
  o.root = rootbuf;
  if (disk_size && !(o.disk = run_disk(disk_size)))
    goto out;
  char jailbuf[PATH_MAX];
  if ((rc = cli_jail(&o.root, jailbuf, s, box_user)) != 0)
    goto out;
  rc = EXIT_ERR;
  fflush(stdout);
  struct cf_sandbox_result res;
  struct cf_save_stats st;
  box = cf_sandbox_new(&o);
  if (!box) {
    cli_error("template create %s: %s", name, cf_error());
    goto out;
  }
  if (cf_sandbox_run_until(box, &res) < 0) {
    cli_error("template create %s: %s", name, cf_error());
    goto out;
  }
  if (!res.paused) {
    cli_error("template create %s: %s ended (status %d%s%s) before its ready point (%s%s)", name, o.program,
              res.status, res.report[0] ? ": " : "", res.report,
              o.ready == CF_READY_STDIN ? "a read of stdin" : "the marker ", o.marker ? o.marker : "");
    goto out;
  }
  if (cf_sandbox_save(box, s, name, &st) < 0) {
    cli_error("template create %s: %s", name, cf_error());
    goto out;
  }
  char disk[128] = "";
  if (o.disk)
    snprintf(disk, sizeof disk, ", disk %llu bytes stored (%.1f MiB) of %llu", (unsigned long long)st.disk_bytes_stored,
             st.disk_bytes_stored / 1048576.0, (unsigned long long)disk_size);
  fprintf(stderr, "template %s: %llu pages stored (%.1f MiB) of %llu scanned%s, state %llu bytes, %.1f ms\n", name,
          (unsigned long long)st.pages_stored, st.pages_stored * 4096.0 / 1048576,
          (unsigned long long)st.pages_scanned, disk, (unsigned long long)st.state_bytes, st.save_ms);
  rc = EXIT_OK;
out:
  cf_sandbox_free(box);
  cf_overlay_free(o.disk);
  cf_store_close(s);
  if (devnull >= 0)
    close(devnull);
  free(envp);
  return rc;
}

struct child {
  struct cf_sandbox_opts o;
  struct cf_sandbox_result res;
  int out, err; /* memfds, or files in --output-dir */
  bool failed;
  char error[512];
  struct cf_save_stats save;
};

struct forkjob {
  struct cf_template *t;
  struct cf_store *s;
  struct child *kids;
  unsigned n;
  unsigned next; /* atomic */
  const char *branch;
  bool reuse;
};

/* Each worker keeps the VM of its last finished child and resets it for the
 * next one (cf_template_refork, file backend): no VM create/destroy, and
 * the template pages the last child only read need no new shadow-paging
 * fault. A branching child's VM is not reused (it is freed after its save);
 * when reuse is refused the child is forked anew. */
static void *worker(void *arg)
{
  struct forkjob *j = arg;
  struct cf_sandbox *keep = NULL;
  for (;;) {
    unsigned i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
    if (i >= j->n)
      break;
    struct child *k = &j->kids[i];
    struct cf_sandbox *box = cf_template_next(j->t, keep, &k->o);
    keep = NULL;
    if (!box || cf_sandbox_run_until(box, &k->res) < 0) {
      k->failed = true;
      snprintf(k->error, sizeof k->error, "%s", cf_error());
    } else if (j->branch) {
      if (!k->res.paused) {
        k->failed = true;
        snprintf(k->error, sizeof k->error, "the child ended (status %d) before its ready point: no branch",
                 k->res.status);
      } else if (cf_sandbox_save(box, j->s, j->branch, &k->save) < 0) {
        k->failed = true;
        snprintf(k->error, sizeof k->error, "branch %s: %s", j->branch, cf_error());
      }
    } else if (j->reuse && !k->failed) {
      keep = box;
      continue;
    }
    cf_sandbox_free(box);
  }
  cf_sandbox_free(keep);
  return NULL;
}

static void copy_fd(int from, FILE *to)
{
  char buf[65536];
  ssize_t n;
  off_t off = 0;
  fflush(to);
  while ((n = pread(from, buf, sizeof buf, off)) > 0) {
    fwrite(buf, 1, (size_t)n, to);
    off += n;
  }
  fflush(to);
}

static void json_string_fd(int fd)
{
  char buf[65536];
  ssize_t n;
  off_t off = 0;
  putchar('"');
  while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      unsigned char ch = (unsigned char)buf[i];
      if (ch == '"' || ch == '\\')
        printf("\\%c", ch);
      else if (ch == '\n')
        fputs("\\n", stdout);
      else if (ch < 0x20 || ch == 0x7f)
        printf("\\u%04x", ch);
      else
        putchar(ch);
    }
    off += n;
  }
  putchar('"');
}

static int cmd_fork(const struct cli_cmd *cmd, int argc, char **argv)
{
  enum { OPT_BACKEND = 1000, OPT_INPUT, OPT_INPUT_DIR, OPT_JSON, OPT_BRANCH, OPT_OUTPUT_DIR, OPT_TIMEOUT,
         OPT_JOBS, OPT_STRACE, OPT_NO_REUSE, OPT_NO_SECCOMP, OPT_USER, OPT_NET };
  static const struct option opts[] = {{"backend", required_argument, 0, OPT_BACKEND},
                                       {"input", required_argument, 0, OPT_INPUT},
                                       {"input-dir", required_argument, 0, OPT_INPUT_DIR},
                                       {"json", no_argument, 0, OPT_JSON},
                                       {"branch", required_argument, 0, OPT_BRANCH},
                                       {"output-dir", required_argument, 0, OPT_OUTPUT_DIR},
                                       {"timeout", required_argument, 0, OPT_TIMEOUT},
                                       {"jobs", required_argument, 0, OPT_JOBS},
                                       {"strace", no_argument, 0, OPT_STRACE},
                                       {"no-reuse", no_argument, 0, OPT_NO_REUSE},
                                       {"no-seccomp", no_argument, 0, OPT_NO_SECCOMP},
                                       {"user", required_argument, 0, OPT_USER},
                                       {"net", required_argument, 0, OPT_NET},
                                       {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct cf_sandbox_opts no = {0}; /* (--net's) */
  bool reuse = true;
  const char *user = NULL;
  unsigned long n = 1, jobs = (unsigned long)sysconf(_SC_NPROCESSORS_ONLN);
  const struct cf_mem_backend *be = &cf_mem_backend_file;
  const char *input = NULL, *input_dir = NULL, *branch = NULL, *outdir = NULL;
  bool json = false, strace = false;
  double timeout = 0;
  int c;
  unsigned v;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
    switch (c) {
    case 'n':
      if (cli_parse_uint(optarg, 1, 100000, &v) < 0)
        return cli_usage(cmd, "bad -n '%s' (1..100000)", optarg);
      n = v;
      break;
    case OPT_JOBS:
      if (cli_parse_uint(optarg, 1, 1024, &v) < 0)
        return cli_usage(cmd, "bad --jobs '%s' (1..1024)", optarg);
      jobs = v;
      break;
    case OPT_BACKEND:
      if (!(be = cf_mem_backend_find(optarg)))
        return cli_usage(cmd, "%s", cf_error());
      break;
    case OPT_INPUT: input = optarg; break;
    case OPT_INPUT_DIR: input_dir = optarg; break;
    case OPT_JSON: json = true; break;
    case OPT_BRANCH: branch = optarg; break;
    case OPT_OUTPUT_DIR: outdir = optarg; break;
    case OPT_STRACE: strace = true; break;
    case OPT_NO_REUSE: reuse = false; break;
    case OPT_NO_SECCOMP: cf_seccomp_set(false); break;
    case OPT_NET: {
      int nr = net_opt(cmd, optarg, &no);
      if (nr != EXIT_OK)
        return nr;
      break;
    }
    case OPT_USER:
      if (geteuid() != 0)
        return cli_error("--user %s needs root (this process runs as uid %d)", optarg, (int)geteuid());
      user = optarg;
      break;
    case OPT_TIMEOUT:
      if (cli_parse_seconds(optarg, &timeout) < 0)
        return cli_usage(cmd, "bad --timeout '%s' (seconds)", optarg);
      break;
    default: return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  const char *name = optind < argc ? argv[optind++] : NULL;
  if (!name)
    return cli_usage(cmd, "missing NAME");
  if (strcmp(cmd->name, "snapshot") == 0) {
    if (optind >= argc)
      return cli_usage(cmd, "missing NEW");
    branch = argv[optind++];
  }
  if (optind != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  if (input && input_dir)
    return cli_usage(cmd, "--input and --input-dir exclude each other");
  if (branch && n != 1)
    return cli_usage(cmd, "--branch takes one child (-n 1)");
  if (jobs > n)
    jobs = n;
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  if (branch && cli_template_name_free(s, branch) < 0) {
    cf_store_close(s);
    return EXIT_ERR;
  }
  int rc = EXIT_ERR;
  struct cf_template *t = cf_template_open(s, name);
  struct cf_uffd_server *srv = NULL;
  struct cf_image *uimg = NULL;
  char sock[PATH_MAX] = "";
  struct child *kids = NULL;
  pthread_t *th = NULL;
  if (!t) {
    cli_error("fork %s: %s", name, cf_error());
    goto out;
  }
  if (be == &cf_mem_backend_uffd)
    snprintf(sock, sizeof sock, "/tmp/cowfork-uffd.%d.sock", (int)getpid());
  if (!(kids = calloc(n, sizeof *kids)) || !(th = calloc(jobs, sizeof *th))) {
    cli_error("out of memory");
    goto out;
  }
  if (outdir && mkdir(outdir, 0755) < 0 && errno != EEXIST) {
    cli_error("%s: %m", outdir);
    goto out;
  }
  for (unsigned long i = 0; i < n; i++) {
    struct child *k = &kids[i];
    k->out = k->err = -1;
    char path[PATH_MAX];
    int in;
    if (input_dir) {
      snprintf(path, sizeof path, "%s/%lu", input_dir, i);
      in = open(path, O_RDONLY | O_CLOEXEC);
    } else {
      snprintf(path, sizeof path, "%s", input ? input : "/dev/null");
      in = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (in < 0) {
      cli_error("%s: %m", path);
      goto out;
    }
    if (outdir) {
      snprintf(path, sizeof path, "%s/%lu", outdir, i);
      k->out = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      snprintf(path, sizeof path, "%s/%lu.err", outdir, i);
      k->err = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
      k->out = memfd_create("cowfork-child-out", MFD_CLOEXEC);
      k->err = memfd_create("cowfork-child-err", MFD_CLOEXEC);
    }
    if (k->out < 0 || k->err < 0) {
      close(in);
      cli_error("child output: %m");
      goto out;
    }
    k->o = (struct cf_sandbox_opts){.stdio = {in, k->out, k->err}, .timeout = timeout, .strace = strace,
                                    .branch = branch != NULL, .backend = be,
                                    .uffd_socket = sock[0] ? sock : NULL, .net = no.net};
  }
  /* Every file is open: the jail (in the new root, /tmp is its own: the
   * page server's socket goes there), then the page server. */
  char rootbuf[PATH_MAX];
  const char *rootp = cf_template_root(t);
  if ((rc = cli_jail(&rootp, rootbuf, s, user)) != 0)
    goto out;
  rc = EXIT_ERR;
  if (be == &cf_mem_backend_uffd) {
    struct cf_uffd_opts uo = {0};
    if (!(uimg = cf_image_open(s, cf_template_image(t))) || !(srv = cf_seccomp_uffd_server_new(NULL, NULL)) ||
        cf_uffd_server_listen(srv, sock, uimg, &uo) < 0) {
      cli_error("fork %s: uffd page server: %s", name, cf_error());
      goto out;
    }
  }
  fflush(stdout);
  struct forkjob j = {.t = t, .s = s, .kids = kids, .n = (unsigned)n, .branch = branch,
                       .reuse = reuse && be == &cf_mem_backend_file && !branch};
  double t0 = now_ms();
  unsigned long started = 0;
  for (; started < jobs; started++)
    if (pthread_create(&th[started], NULL, worker, &j) != 0)
      break;
  if (started == 0)
    worker(&j);
  for (unsigned long i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  double total = now_ms() - t0;
  unsigned failed = 0;
  for (unsigned long i = 0; i < n; i++) {
    struct child *k = &kids[i];
    if (k->failed) {
      failed++;
      fprintf(stderr, "cowfork fork: child %lu: %s\n", i, k->error);
    }
    if (json) {
      printf("{\"child\":%lu,\"ok\":%s,\"status\":%d,\"signal\":%d,\"paused\":%s,\"spawn_us\":%.1f,"
             "\"first_output_us\":%.1f,\"run_us\":%.1f,\"private_kib\":%llu,\"syscalls\":%llu,"
             "\"pages_mapped\":%llu,\"pages_copied\":%llu",
             i, k->failed ? "false" : "true", k->res.status, k->res.signal, k->res.paused ? "true" : "false",
             k->res.spawn_us, k->res.first_output_us, k->res.run_us,
             (unsigned long long)(k->res.private_bytes >> 10), (unsigned long long)k->res.syscalls,
             (unsigned long long)k->res.pages_mapped, (unsigned long long)k->res.pages_copied);
      if (!outdir) {
        fputs(",\"stdout\":", stdout);
        json_string_fd(k->out);
        fputs(",\"stderr\":", stdout);
        json_string_fd(k->err);
      }
      puts("}");
    } else if (!outdir) {
      copy_fd(k->out, stdout);
      copy_fd(k->err, stderr);
    }
    if (!k->failed && k->res.signal)
      fprintf(stderr, "cowfork fork: child %lu: killed by SIG%s%s%s\n", i,
              sigabbrev_np(k->res.signal) ? sigabbrev_np(k->res.signal) : "?", k->res.report[0] ? ": " : "",
              k->res.report);
  }
  if (branch && !kids[0].failed) {
    char disk[96] = "";
    if (kids[0].save.disk_bytes_stored)
      snprintf(disk, sizeof disk, ", disk %llu bytes stored", (unsigned long long)kids[0].save.disk_bytes_stored);
    fprintf(stderr, "branch %s of %s: %llu pages stored, %llu zeroed%s, state %llu bytes, %.1f ms\n", branch, name,
            (unsigned long long)kids[0].save.pages_stored, (unsigned long long)kids[0].save.pages_zeroed, disk,
            (unsigned long long)kids[0].save.state_bytes, kids[0].save.save_ms);
  }
  if (json)
    printf("{\"children\":%lu,\"failed\":%u,\"total_ms\":%.2f,\"jobs\":%lu,\"backend\":\"%s\"}\n", n, failed, total,
           jobs, be->name);
  fflush(stdout);
  rc = failed ? EXIT_ERR : n == 1 ? kids[0].res.status : EXIT_OK;
out:
  for (unsigned long i = 0; kids && i < n; i++) {
    if (kids[i].o.stdio[0] > 0)
      close(kids[i].o.stdio[0]);
    if (kids[i].out >= 0)
      close(kids[i].out);
    if (kids[i].err >= 0)
      close(kids[i].err);
  }
  free(kids);
  free(th);
  cf_uffd_server_free(srv);
  cf_image_close(uimg);
  cf_template_close(t);
  cf_store_close(s);
  return rc;
}

#define ROOT_HELP                                                                       \
  "  --root NAME|DIR  the sandbox's read-only /: a root of the store (cowfork root\n"   \
  "                ls; default 'default', built on first use from Essential +\n"      \
  "                busybox-static + python3 + python3-numpy), or with a '/' a host\n" \
  "                directory. --root / shows the host's whole file system to the\n"   \
  "                guest: unsafe for code you do not trust. Writes go to an\n"        \
  "                upper layer in guest memory (the root's files are never\n"       \
  "                written; docs/sandbox.md \"Files\")\n"
#define NET_HELP                                                                      \
  "  --net POLICY  where its sockets may go beyond its own loopback: none (the\n"  \
  "                default), all (any address but the host's loopback), or\n"     \
  "                allow=ADDR[/BITS][:PORT],... (IPv6 as [ADDR[/BITS]][:PORT]).\n" \
  "                127.0.0.0/8 and ::1 stay the sandbox's own; a rule naming a\n"  \
  "                loopback address (allow=127.0.0.1:8080) reaches the host's\n"   \
  "                port instead. Elsewhere: ENETUNREACH (docs/sandbox.md)\n"
#define ENV_HELP                                                                      \
  "  --env K=V     set K in the program's environment (repeatable); --env K\n"     \
  "                passes this command's value of K (nothing when unset)\n"        \
  "  --hostname NAME  the sandbox's hostname (uname -n; default cowfork)\n"        \
  "  --cpus N      vCPUs that run the program's threads at once (1-121, default\n" \
  "                2; more threads take turns); what sched_getaffinity and\n"    \
  "                /proc/cpuinfo show\n"                                          \
  "  --pids N      processes alive at once, zombies included (default 64): a\n"  \
  "                fork past it fails with EAGAIN\n"                              \
  "  --max-files N host fds the open files of all its processes may hold\n"     \
  "                together (16-65536; ENFILE past it), also its RLIMIT_NOFILE\n" \
  "                hard limit (soft: 1024 or N); default 1024, and for run what\n" \
  "                this command's own fd limit leaves room for, up to 65536\n"    \
  "  --cwd DIR     the directory the program starts in (an absolute path in the\n" \
  "                sandbox; default /); a relative PROGRAM is found from it, and\n" \
  "                PWD=DIR is set (before --env)\n"                               \
  NET_HELP                                                                         \
  "\n"                                                                           \
  "The environment is a clean default, never this command's: PATH=/usr/local/\n"  \
  "sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, HOME=/root (uid 0) or /,\n" \
  "LANG=C.UTF-8, TERM as this command's when it is set, then --env.\n"  \
  "  --no-seccomp  no seccomp-bpf filter on the threads that serve the sandbox\n" \
  "                (debugging; also COWFORK_SECCOMP=0; docs/security.md)\n" \
  "  --user NAME   run as NAME (uid, gid, groups) after the setup; needs root\n"  \
  "\n"                                                                           \
  "As root, this process moves into its own mount namespace; with a root other\n" \
  "than / it sees only the root, the store, /proc and /dev/kvm (docs/security.md;\n" \
  "--root / is unsafe: a guest that took over this process would see the host).\n"

const struct cli_cmd cli_sandbox_cmds[] = {
    {"run", "run a Linux program in a micro-VM sandbox",
     "Usage: cowfork run [--root NAME|DIR] [--mem SIZE] [--timeout S] [--cpu-limit S] [--strace] [-v]\n"
     "                   [--copy-files] [--env K=V|K]... [--hostname NAME] [--cpus N] [--pids N] [--max-files N] [--cwd DIR]\n"
     "                   [--net POLICY] [--disk SIZE] [--no-seccomp] [--user NAME] -- PROGRAM [ARGS...]\n"
     "\n"
     "Run an x86-64 Linux PROGRAM (a path inside the root; static, or dynamic with\n"
     "its interpreter and libraries from the root) in a KVM micro-VM\n"
     "sandbox. Its stdin, stdout and stderr are this command's; the exit status is\n"
     "the program's, or 128+signal when it was killed (a fault, or a limit).\n"
     "\n"
     "Options:\n"
     ROOT_HELP
     "  --mem SIZE    guest memory, a multiple of 2M (default 256M)\n"
     "  --disk SIZE   keep the data of the files the program writes (outside\n"
     "                /tmp and /dev/shm) on a disk of SIZE (a multiple of 1M,\n"
     "                at least 16M), not in guest memory: an ext4 file system\n"
     "                on a copy-on-write image, removed when the run ends (kept\n"
     "                by `template create --disk`)\n"
     "  --timeout S   kill the sandbox after S seconds\n"
     "  --cpu-limit S kill the sandbox after S seconds of CPU time\n"
     "  --strace      print every system call and its result to stderr\n"
     "  -v, --verbose print loader and timing statistics to stderr (file pages\n"
     "                mapped copy-on-write from host files vs copied)\n"
     "  --copy-files  copy file pages into the sandbox instead of mapping them\n"
     "                copy-on-write (the baseline of bench/python.sh)\n"
     ENV_HELP,
     cmd_run},
    {"template create", "run a program to its ready point and save it as a template",
     "Usage: cowfork template create NAME [--root NAME|DIR] [--mem SIZE] [--ready stdin|MARKER]\n"
     "                               [--timeout S] [--strace] [-v] [--env K=V|K]...\n"
     "                               [--hostname NAME] [--cpus N] [--pids N] [--max-files N] [--cwd DIR] [--net POLICY]\n"
     "                               [--disk SIZE] [--no-seccomp] [--user NAME]\n"
     "                               -- PROGRAM [ARGS...]\n"
     "\n"
     "Run PROGRAM in a sandbox (stdin /dev/null, stdout and stderr this command's)\n"
     "until its ready point, pause it there and save it as template NAME: guest\n"
     "memory as the image NAME.mem (zero pages empty) and the vCPU and shim state\n"
     "in STORE/templates/NAME. Templates are immutable.\n"
     "\n"
     "  --ready stdin   (default) the first system call that reads fd 0 (read,\n"
     "                  readv, pread64, preadv(2) on fd 0, or poll/ppoll/select/\n"
     "                  pselect6 waiting on it), before it is served: each child\n"
     "                  serves it from its own stdin\n"
     "  --ready MARKER  right after the write to stdout that completes MARKER\n"
     "  --disk SIZE     the data of the files it writes outside /tmp and /dev/shm\n"
     "                  on an ext4 disk of SIZE (as cowfork run's), saved as the\n"
     "                  image NAME.disk holding only the blocks written; each\n"
     "                  child writes to a copy-on-write overlay of its own over\n"
     "                  it, and a branch stores only the blocks its child wrote\n"
     ROOT_HELP
     "\n"
     "The template's children (cowfork fork, the daemon) keep its environment,\n"
     "working directory and hostname.\n"
     ENV_HELP,
     cmd_template_create},
    {"fork", "start children from a template",
     "Usage: cowfork fork NAME [-n N] [--backend file|uffd] [--input FILE | --input-dir DIR]\n"
     "                    [--output-dir DIR] [--json] [--branch NEW] [--timeout S] [--jobs J]\n"
     "                    [--no-reuse] [--no-seccomp] [--user NAME] [--net POLICY]\n"
     "\n"
     "Start N children (default 1) from template NAME. Each is a VM whose\n"
     "memory maps the template's image copy-on-write, resumed where the template\n"
     "paused. With the file backend a thread reuses the VM of its last child for\n"
     "the next, reset to the template (pages written dropped, mappings and\n"
     "registers put back); --no-reuse creates a new VM per child. Its stdin is\n"
     "FILE, or DIR/I for child I (default /dev/null); its\n"
     "stdout and stderr are printed in child order when all have ended, or\n"
     "written to DIR/I and DIR/I.err with --output-dir. --json prints one object\n"
     "per child (status, spawn_us: fork to its first instruction, first_output_us,\n"
     "run_us, private_kib, and stdout/stderr unless --output-dir) and a summary.\n"
     "--branch NEW (with -n 1): the child pauses at the template's ready point\n"
     "again (for a stdin template: a read of stdin at end of input) and is saved\n"
     "as template NEW, storing only what it changed (with a disk: the blocks the\n"
     "child wrote, as NEW.disk). Children run on J threads\n"
     "(default: the number of CPUs). Exit status: the child's with -n 1, else 0\n"
     "when every child started, 1 otherwise. --no-seccomp: no seccomp-bpf filter\n"
     "on the threads that run children (debugging; docs/security.md). --user\n"
     "NAME: run as NAME after the setup (root only; the store must be NAME's). As\n"
     "root, this process moves into its own mount namespace; with a template\n"
     "whose root is not / it sees only that root, the store, /proc and /dev/kvm.\n"
     "--net POLICY: the children's network policy, as cowfork run's (the\n"
     "template's is not kept; default none).\n",
     cmd_fork},
    {"snapshot", "run one child of a template and save it as a branch",
     "Usage: cowfork snapshot NAME NEW [--input FILE] [--backend file|uffd] [--timeout S]\n"
     "\n"
     "The same as cowfork fork NAME -n 1 --branch NEW: one child of template NAME\n"
     "runs on FILE until the template's ready point comes again, and is saved as\n"
     "template NEW holding only the pages it changed and its shim state.\n",
     cmd_fork},
    {0},
};

