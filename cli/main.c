/* cowfork: entry point, global options and the subcommand table. */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cowfork/jail.h"
#include "cowfork/shim.h"
#include "cowfork/store.h"
#include "cowfork/error.h"
#include "cowfork/root.h"
#include "internal.h"

const char *cli_store_dir;

#define NTABLES 8
static const struct cli_cmd *tables[NTABLES];

static void init_tables(void)
{
  const struct cli_cmd *all[NTABLES] = {cli_image_cmds, cli_disk_cmds, cli_mem_cmds, cli_sandbox_cmds,
                                       cli_template_cmds, cli_root_cmds, cli_daemon_cmds, cli_syscalls_cmds};
  size_t n = 0;
  for (size_t i = 0; i < NTABLES; i++)
    if (all[i])
      tables[n++] = all[i];
}

static void print_help(FILE *f)
{
  fprintf(f, "Usage: cowfork [--store DIR] COMMAND [ARGS...]\n"
             "\n"
             "Fork sandboxes and images by copy-on-write.\n"
             "\n"
             "Options:\n"
             "  --store DIR   the store (default: $COWFORK_STORE, else ~/.local/share/cowfork)\n"
             "  -h, --help    this text; COMMAND --help describes one command\n"
             "\n"
             "Commands:\n");
  for (size_t t = 0; t < NTABLES && tables[t]; t++)
    for (const struct cli_cmd *c = tables[t]; c->name; c++)
      fprintf(f, "  %-16s %s\n", c->name, c->summary);
}

int cli_error(const char *fmt, ...)
{
  va_list ap;
  fputs("cowfork: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_ERR;
}

int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "cowfork %s: ", cmd->name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'cowfork %s --help'.\n", cmd->name);
  return EXIT_USAGE;
}

bool cli_wants_help(const struct cli_cmd *cmd, int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(cmd->usage, stdout);
      return true;
    }
  }
  return false;
}

const char *cli_store_path(char *buf, size_t len)
{
  const char *dir = cli_store_dir;
  if (!dir)
    dir = getenv("COWFORK_STORE");
  if (!dir || !*dir) {
    const char *home = getenv("HOME");
    if (!home || !*home) {
      cli_error("no store: pass --store DIR or set COWFORK_STORE (HOME is not set)");
      return NULL;
    }
    snprintf(buf, len, "%s/.local/share/cowfork", home);
    dir = buf;
  }
  return dir;
}

const char *cli_roots_path(char *buf, size_t len)
{
  char sb[PATH_MAX];
  const char *store = cli_store_path(sb, sizeof sb);
  if (!store)
    return NULL;
  if (cf_roots_dir(store, buf, len) < 0) {
    cli_error("%s", cf_error());
    return NULL;
  }
  return buf;
}

int cli_root_resolve(const char *spec, char *buf, size_t len)
{
  char roots[PATH_MAX];
  if (spec && strchr(spec, '/')) {
    snprintf(buf, len, "%s", spec);
    return 0;
  }
  if (!cli_roots_path(roots, sizeof roots))
    return -1;
  bool built;
  struct cf_root_stats st;
  struct cli_progress p;
  cli_progress_init(&p, "root default");
  if (p.tty)
    fprintf(stderr, "cowfork: building the root 'default' (first use) in %s\n", roots);
  int r = cf_root_resolve(roots, spec, buf, len, &built, &st, cli_progress, &p);
  cli_progress_end(&p);
  if (r < 0) {
    cli_error("root %s: %s", spec ? spec : CF_ROOT_DEFAULT, cf_error());
    return -1;
  }
  if (built)
    fprintf(stderr, "cowfork: built the root 'default' (%llu packages, %llu files, %.1f s): cowfork root ls\n",
            (unsigned long long)st.packages,
            (unsigned long long)(st.files[0] + st.files[1] + st.files[2] + st.files[3]), st.seconds);
  /* Its real path: what templates record and the jail binds. */
  char real[PATH_MAX];
  if (realpath(buf, real) && strlen(real) < len)
    memcpy(buf, real, strlen(real) + 1);
  return 0;
}

struct cf_store *cli_open_store(void)
{
  char buf[PATH_MAX];
  const char *dir = cli_store_path(buf, sizeof buf);
  if (!dir)
    return NULL;
  /* Absolute: the jail (cli_jail) changes the working directory. */
  char abs[PATH_MAX];
  if (dir[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd) || snprintf(abs, sizeof abs, "%s/%s", cwd, dir) >= (int)sizeof abs) {
      cli_error("the store %s: cannot make its path absolute", dir);
      return NULL;
    }
    dir = abs;
  }
  struct cf_store *s = cf_store_open(dir);
  if (!s) {
    cli_error("%s", cf_error());
    return NULL;
  }
  /* Said once: the next open finds the store private. */
  unsigned old_mode, n = cf_store_made_private(s, &old_mode);
  if (n)
    fprintf(stderr,
            "cowfork: the store %s was readable by others (mode %04o): made it private (%u entries now "
            "0700/0600/0400)\n",
            cf_store_dir(s), old_mode, n);
  return s;
}

int cli_parse_size(const char *s, uint64_t *out) { return cf_parse_size(s, out); }

int cli_parse_seconds(const char *s, double *out)
{
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v > 0) || !isfinite(v))
    return -1;
  *out = v;
  return 0;
}

int cli_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || end == s || *s == '-' || v < lo || v > hi)
    return -1;
  *out = (unsigned)v;
  return 0;
}

void cli_progress_init(struct cli_progress *p, const char *what)
{
  p->what = what;
  p->tty = isatty(2);
  p->last_pct = -1;
}

void cli_progress(void *ctx, uint64_t done, uint64_t total)
{
  struct cli_progress *p = ctx;
  if (!p->tty || total == 0)
    return;
  int pct = (int)(done * 100 / total);
  if (pct == p->last_pct)
    return;
  p->last_pct = pct;
  int bar = pct * 30 / 100;
  fprintf(stderr, "\r%-8s [%.*s%*s] %3d%% %llu/%llu MiB", p->what, bar,
          "##############################", 30 - bar, "", pct,
          (unsigned long long)(done >> 20), (unsigned long long)(total >> 20));
}

void cli_progress_end(struct cli_progress *p)
{
  if (p->tty && p->last_pct >= 0)
    fputs("\r\033[K", stderr);
}

int main(int argc, char **argv)
{
  int i = 1;
  init_tables();
  /* fork -n N keeps two files per child; run's sandbox may hold up to
   * CF_SANDBOX_NR_OPEN (its guest's nr_open, as Linux's) */
  cf_nofile_raise(CF_SANDBOX_NR_OPEN + 1024);
  /* The threads that serve guests run under seccomp (shim/seccomp.c)
   * unless COWFORK_SECCOMP=0 here or --no-seccomp on the command. */
  const char *sc = getenv("COWFORK_SECCOMP");
#if defined(__SANITIZE_ADDRESS__)
  /* LeakSanitizer's exit-time check cannot stop the world from a filtered
   * thread (its tracer spins): in sanitizer builds only on request. */
  cf_seccomp_set(sc && !strcmp(sc, "1"));
#else
  cf_seccomp_set(!(sc && (!strcmp(sc, "0") || !strcmp(sc, "off") || !strcmp(sc, "no"))));
#endif
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_help(stdout);
      return EXIT_OK;
    } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
      cli_store_dir = argv[++i];
    } else if (strncmp(argv[i], "--store=", 8) == 0) {
      cli_store_dir = argv[i] + 8;
    } else {
      fprintf(stderr, "cowfork: unknown option '%s'\nTry 'cowfork --help'.\n", argv[i]);
      return EXIT_USAGE;
    }
  }
  if (i >= argc) {
    print_help(stderr);
    return EXIT_USAGE;
  }
  /* Commands are one or two words ("image import"): match the longest. */
  for (size_t t = 0; t < NTABLES && tables[t]; t++)
    for (const struct cli_cmd *c = tables[t]; c->name; c++) {
      const char *sp = strchr(c->name, ' ');
      size_t n1 = sp ? (size_t)(sp - c->name) : strlen(c->name);
      if (strncmp(c->name, argv[i], n1) != 0 || argv[i][n1])
        continue;
      if (!sp)
        return c->run(c, argc - i, argv + i);
      if (i + 1 < argc && strcmp(sp + 1, argv[i + 1]) == 0)
        return c->run(c, argc - i - 1, argv + i + 1);
    }
  /* "cowfork image" alone or with an unknown verb: list that group. */
  bool group = false;
  for (size_t t = 0; t < NTABLES && tables[t]; t++)
    for (const struct cli_cmd *c = tables[t]; c->name; c++) {
      size_t n = strlen(argv[i]);
      if (strncmp(c->name, argv[i], n) == 0 && c->name[n] == ' ') {
        if (!group)
          fprintf(stderr, "cowfork %s: %s '%s'. Commands:\n", argv[i],
                  i + 1 < argc ? "unknown command" : "missing command",
                  i + 1 < argc ? argv[i + 1] : "");
        group = true;
        fprintf(stderr, "  %-16s %s\n", c->name, c->summary);
      }
    }
  if (!group)
    fprintf(stderr, "cowfork: unknown command '%s'\nTry 'cowfork --help'.\n", argv[i]);
  return EXIT_USAGE;
}

int cli_jail(const char **root, char *rootbuf, struct cf_store *s, const char *user)
{
  const char *j = getenv("COWFORK_JAIL");
  if (j && !strcmp(j, "0") && !user)
    return 0;
  const char *keep[2];
  size_t n = 0;
  bool pivot = false;
  if (root) {
    /* Kept at its real path, which the sandbox then opens: a symbolic link
     * on the way (a store's roots/NAME pointing elsewhere) would point
     * nowhere in the new root. */
    const char *r = *root ? *root : "/";
    if (!realpath(r, rootbuf))
      return cli_error("--root %s: %m", r);
    *root = rootbuf;
    pivot = strcmp(rootbuf, "/") != 0;
  }
  /* The store first (writable): a root inside it is bound again on top
   * (read-only). */
  bool ro[2];
  if (s && pivot) {
    ro[n] = false;
    keep[n++] = cf_store_dir(s);
  }
  if (pivot) {
    ro[n] = true;
    keep[n++] = rootbuf;
  }
  struct cf_jail_opts o = {.keep = keep, .nkeep = n, .readonly = ro, .pivot = pivot, .user = user};
  if (cf_jail_enter(&o) < 0)
    return cli_error("%s", cf_error());
  if (user && s && access(cf_store_dir(s), R_OK | W_OK | X_OK) < 0)
    return cli_error("--user %s: the store %s: %m (it must belong to that user: chown -R)", user, cf_store_dir(s));
  return 0;
}
