/* cowfork root create|ls|rm: thin callers of lib/root.c
 * (include/cowfork/root.h). `root rm` refuses a root a template was made
 * in (cf_template_root names its directory). */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cowfork/clone.h"
#include "cowfork/error.h"
#include "cowfork/root.h"
#include "cowfork/shim.h"
#include "internal.h"

static void human_bytes(char *buf, size_t len, uint64_t b)
{
  if (b >= (1ull << 30))
    snprintf(buf, len, "%.1f GiB", (double)b / (1ull << 30));
  else if (b >= (1ull << 20))
    snprintf(buf, len, "%.1f MiB", (double)b / (1ull << 20));
  else if (b >= 1024)
    snprintf(buf, len, "%.1f KiB", (double)b / 1024);
  else
    snprintf(buf, len, "%llu B", (unsigned long long)b);
}

static void stats_json(const struct cf_root_stats *st)
{
  printf("\"packages\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"hardlinks\":%llu,\"skipped\":%llu,"
         "\"whiteouts\":%llu,\"driver\":%s,\"seconds\":%.3f,\"methods\":{",
         (unsigned long long)st->packages, (unsigned long long)st->dirs, (unsigned long long)st->symlinks,
         (unsigned long long)st->hardlinks, (unsigned long long)st->skipped, (unsigned long long)st->whiteouts,
         st->driver ? "true" : "false", st->seconds);
  for (int m = 0; m < 4; m++)
    printf("%s\"%s\":{\"files\":%llu,\"bytes\":%llu}", m ? "," : "", cf_clone_method_name(m),
           (unsigned long long)st->files[m], (unsigned long long)st->bytes[m]);
  /* shared: the store holds no second copy (reflink, hardlink); copied: it does */
  printf("},\"shared_bytes\":%llu,\"copied_bytes\":%llu", (unsigned long long)(st->bytes[0] + st->bytes[1]),
         (unsigned long long)(st->bytes[2] + st->bytes[3]));
}

static void stats_human(const char *name, const struct cf_root_stats *st)
{
  printf("root %s: %llu files, %llu directories, %llu symlinks", name,
         (unsigned long long)(st->files[0] + st->files[1] + st->files[2] + st->files[3]),
         (unsigned long long)st->dirs, (unsigned long long)st->symlinks);
  if (st->packages)
    printf(" from %llu packages", (unsigned long long)st->packages);
  printf(" in %.2f s\n", st->seconds);
  for (int m = 0; m < 4; m++)
    if (st->files[m]) {
      char hb[32];
      human_bytes(hb, sizeof hb, st->bytes[m]);
      printf("  %-16s %8llu files %12s (%llu bytes)\n", cf_clone_method_name(m), (unsigned long long)st->files[m],
             hb, (unsigned long long)st->bytes[m]);
    }
  if (st->hardlinks)
    printf("  %llu hardlink members\n", (unsigned long long)st->hardlinks);
  if (st->skipped)
    printf("  %llu skipped (listed but missing, or device/FIFO/socket)\n", (unsigned long long)st->skipped);
  if (st->whiteouts)
    printf("  %llu whiteouts (.wh.*: nothing below a single layer to hide)\n", (unsigned long long)st->whiteouts);
}

static int cmd_create(const struct cli_cmd *cmd, int argc, char **argv)
{
  enum { OPT_PACKAGES = 1000, OPT_DIR, OPT_TAR, OPT_JSON };
  static const struct option opts[] = {{"packages", required_argument, 0, OPT_PACKAGES},
                                       {"from-dir", required_argument, 0, OPT_DIR},
                                       {"from-tar", required_argument, 0, OPT_TAR},
                                       {"json", no_argument, 0, OPT_JSON},
                                       {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  struct cf_root_source src = {.kind = CF_ROOT_PACKAGES};
  const char *packages = NULL;
  int nsrc = 0, c;
  bool json = false;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case OPT_PACKAGES:
      packages = optarg;
      src.kind = CF_ROOT_PACKAGES;
      nsrc++;
      break;
    case OPT_DIR:
      src.kind = CF_ROOT_DIR;
      src.path = optarg;
      nsrc++;
      break;
    case OPT_TAR:
      src.kind = CF_ROOT_TAR;
      src.path = optarg;
      nsrc++;
      break;
    case OPT_JSON:
      json = true;
      break;
    default:
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc - 1)
    return cli_usage(cmd, optind >= argc ? "missing NAME" : "one NAME");
  const char *name = argv[optind];
  if (nsrc > 1)
    return cli_usage(cmd, "one of --packages, --from-dir, --from-tar");
  if (nsrc == 0 && strcmp(name, CF_ROOT_DEFAULT) != 0)
    return cli_usage(cmd, "say what to build it from: --packages, --from-dir or --from-tar");
  char roots[PATH_MAX];
  if (!cli_roots_path(roots, sizeof roots))
    return EXIT_ERR;
  const char **pk = NULL;
  size_t npk = 0;
  char *copy = packages ? strdup(packages) : NULL;
  if (packages) {
    for (char *save, *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
      const char **np = realloc(pk, (npk + 1) * sizeof *np);
      if (!np) {
        free(pk);
        free(copy);
        return cli_error("out of memory");
      }
      pk = np;
      pk[npk++] = t;
    }
  }
  src.packages = pk;
  src.npackages = npk;
  struct cf_root_stats st;
  struct cli_progress p;
  cli_progress_init(&p, "root");
  int r = nsrc == 0 ? cf_root_create_default(roots, &st, cli_progress, &p)
                    : cf_root_create(roots, name, &src, &st, cli_progress, &p);
  cli_progress_end(&p);
  free(pk);
  free(copy);
  if (r < 0)
    return cli_error("root create %s: %s", name, cf_error());
  if (json) {
    printf("{\"name\":");
    cf_json_puts(name);
    printf(",");
    stats_json(&st);
    printf("}\n");
  } else {
    stats_human(name, &st);
  }
  return EXIT_OK;
}

static int cmd_ls(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
  if (argc > 1 && !json)
    return cli_usage(cmd, "unknown argument '%s'", argv[1]);
  char roots[PATH_MAX];
  if (!cli_roots_path(roots, sizeof roots))
    return EXIT_ERR;
  struct cf_root_info *v;
  size_t n;
  if (cf_root_list(roots, &v, &n) < 0)
    return cli_error("%s", cf_error());
  if (json)
    putchar('[');
  else if (n)
    printf("%-20s %-9s %8s %10s %10s  %s\n", "NAME", "SOURCE", "FILES", "SHARED", "COPIED", "FROM");
  for (size_t i = 0; i < n; i++) {
    const struct cf_root_stats *st = &v[i].st;
    if (json) {
      printf("%s{\"name\":", i ? "," : "");
      cf_json_puts(v[i].name);
      printf(",\"path\":\"%s/%s/root\",\"source\":", roots, v[i].name);
      cf_json_puts(v[i].source);
      printf(",\"from\":");
      cf_json_puts(v[i].from);
      printf(",\"created\":%llu,", (unsigned long long)v[i].created);
      stats_json(st);
      putchar('}');
    } else {
      char sh[32], cp[32];
      human_bytes(sh, sizeof sh, st->bytes[0] + st->bytes[1]);
      human_bytes(cp, sizeof cp, st->bytes[2] + st->bytes[3]);
      printf("%-20s %-9s %8llu %10s %10s  %s\n", v[i].name, v[i].source,
             (unsigned long long)(st->files[0] + st->files[1] + st->files[2] + st->files[3]), sh, cp, v[i].from);
    }
  }
  if (json)
    puts("]");
  free(v);
  return EXIT_OK;
}

/* How many templates of the store were made in root directory path; their
 * names into names. */
static int templates_using(const char *path, char *names, size_t len)
{
  names[0] = 0;
  struct cf_store *s = cli_open_store();
  if (!s)
    return -1;
  char dir[PATH_MAX], real[PATH_MAX];
  if (!realpath(path, real))
    snprintf(real, sizeof real, "%s", path);
  snprintf(dir, sizeof dir, "%s/templates", cf_store_dir(s));
  int n = 0;
  DIR *dp = opendir(dir);
  struct dirent *de;
  while (dp && (de = readdir(dp))) {
    if (de->d_name[0] == '.')
      continue;
    struct cf_template *t = cf_template_open(s, de->d_name);
    if (!t)
      continue;
    if (strcmp(cf_template_root(t), real) == 0) {
      size_t l = strlen(names);
      snprintf(names + l, len - l, "%s%s", n ? ", " : "", de->d_name);
      n++;
    }
    cf_template_close(t);
  }
  if (dp)
    closedir(dp);
  cf_store_close(s);
  return n;
}

static int cmd_rm(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  bool force = false;
  int i = 1;
  if (i < argc && strcmp(argv[i], "--force") == 0) {
    force = true;
    i++;
  }
  if (i >= argc)
    return cli_usage(cmd, "missing NAME");
  char roots[PATH_MAX];
  if (!cli_roots_path(roots, sizeof roots))
    return EXIT_ERR;
  int rc = EXIT_OK;
  for (; i < argc; i++) {
    char path[PATH_MAX];
    if (cf_root_check_name(argv[i]) < 0) {
      rc = cli_error("%s", cf_error());
      continue;
    }
    if (snprintf(path, sizeof path, "%s/%s/root", roots, argv[i]) >= (int)sizeof path) {
      rc = cli_error("path too long");
      continue;
    }
    char names[2048];
    int n = force ? 0 : templates_using(path, names, sizeof names);
    if (n < 0) {
      rc = EXIT_ERR;
      continue;
    }
    if (n > 0) {
      rc = cli_error("root rm %s: refused: templates made in it: %s (cowfork template rm them first, or root rm "
                     "--force)",
                     argv[i], names);
      continue;
    }
    if (cf_root_remove(roots, argv[i]) < 0)
      rc = cli_error("root rm %s: %s", argv[i], cf_error());
  }
  return rc;
}

const struct cli_cmd cli_root_cmds[] = {
    {"root create", "build an immutable root (the sandbox's /) from packages, a directory or a tar",
     "Usage: cowfork root create NAME --packages \"P ...\" | --from-dir DIR | --from-tar FILE [--json]\n"
     "       cowfork root create default\n"
     "\n"
     "Build root NAME in the store (STORE/roots/NAME/root, or $COWFORK_ROOTS/NAME/root):\n"
     "an immutable directory tree a sandbox sees as / (cowfork run --root NAME).\n"
     "  --packages \"P ...\"  the named Debian packages installed on this host, their\n"
     "                     installed dependencies (Depends, Pre-Depends) and the\n"
     "                     Essential set, each file of `dpkg -L` shared into the\n"
     "                     store by reflink, else hardlink (not /etc, not set-id\n"
     "                     files), else copy\n"
     "  --from-dir DIR      a host directory's tree (reflink, else copy)\n"
     "  --from-tar FILE     a tar file: `docker export`, an OCI layer (gzip/xz/zstd\n"
     "                     too); absolute or '..' member names are refused, .wh.*\n"
     "                     whiteouts skipped (a root is one layer on nothing)\n"
     "  --json              print the figures as JSON\n"
     "'default' with no source is Essential + busybox-static + python3 +\n"
     "python3-numpy where installed (what `cowfork run` uses without --root; built\n"
     "on first use). Every root holds the Python driver at " CF_ROOT_DRIVER ".\n"
     "Prints the files and bytes each method placed (reflink and hardlink share,\n"
     "copy_file_range and read/write copy).\n",
     cmd_create},
    {"root ls", "list the roots",
     "Usage: cowfork root ls [--json]\n"
     "\n"
     "List the roots: source, files, bytes shared (reflink, hardlink) and copied.\n",
     cmd_ls},
    {"root rm", "remove roots no template uses",
     "Usage: cowfork root rm [--force] NAME...\n"
     "\n"
     "Remove root NAME. Refused while a template of the store was made in it\n"
     "(its children would find no root); --force removes it anyway. A sandbox\n"
     "running in it at the time loses its files (reads fail).\n",
     cmd_rm},
    {0},
};
