/* cowfork template ls|rm: the one way to list and remove templates.
 *
 * A template NAME is STORE/templates/NAME (its state file) plus the image
 * STORE/images/NAME.mem (shim/snapshot.c). Removing one is refused while
 * something needs it:
 *   - a branch: a template (not a daemon's internal pause template "_...")
 *     whose state file names NAME as its parent. Images are flattened, so a
 *     branch's data does not depend on its parent's header, but the lineage
 *     is what users fork from; the daemon refuses the same (docs/daemon.md);
 *   - a daemon sandbox running from it or paused in it.
 * How the CLI knows the daemon's sandboxes: a daemon holds STORE/daemon/lock
 * exclusively for its life and records its socket in STORE/daemon/socket
 * (cf_daemon_probe). When one runs, `template rm` is its
 * DELETE /v1/templates/NAME and `template ls` its GET /v1/templates: the
 * daemon checks its live sandboxes and queued forks under its own lock.
 * When none runs, the CLI holds the lock shared (no daemon starts meanwhile)
 * and reads STORE/daemon/state.json: a paused sandbox needs its current
 * template (a running one on record is lost at the next start).
 *
 * `image rm` refuses the image of a template (NAME.mem while templates/NAME
 * exists) and `template create` / `fork --branch` refuse a taken name before
 * they run anything (cli_template_name_free). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cowfork/daemon.h"
#include "cowfork/error.h"
#include "cowfork/image.h"
#include "cowfork/mem.h"
#include "cowfork/shim.h"
#include "internal.h"

static bool internal_name(const char *name) { return name[0] == '_'; }

/* Whether image is a template's (NAME.mem, NAME.mem.PID) and the template
 * NAME exists. */
static bool image_template(struct cf_store *s, const char *image, char *tname, size_t len)
{
  char path[PATH_MAX];
  return cf_template_of_image(image, tname, len) == 0 && cf_store_check_name(tname) == 0 &&
         cf_template_path(s, tname, path, sizeof path) == 0 && access(path, F_OK) == 0;
}

int cli_image_in_use(struct cf_store *s, const char *image)
{
  char t[256];
  if (!image_template(s, image, t, sizeof t))
    return 0;
  cli_error("image %s is the memory of template %s: remove the template with `cowfork template rm %s`%s", image,
            t, t, internal_name(t) ? " (a daemon's pause template: delete its sandbox instead)" : "");
  return -1;
}

int cli_template_name_free(struct cf_store *s, const char *name)
{
  char path[PATH_MAX], image[300];
  snprintf(image, sizeof image, "%s.mem", name);
  if (strlen(name) > 200 || cf_store_check_name(name) < 0 || cf_store_check_name(image) < 0)
    return cli_error("bad template name '%s': 1-200 of [A-Za-z0-9._-], not starting with '.'", name), -1;
  if (cf_template_path(s, name, path, sizeof path) < 0)
    return cli_error("%s", cf_error()), -1;
  if (access(path, F_OK) == 0)
    return cli_error("template %s exists (templates are immutable; `cowfork template rm %s` first)", name,
                     name), -1;
  for (int k = 0; k < 2; k++) { /* NAME.mem, NAME.disk */
    if (k)
      snprintf(image, sizeof image, "%s.disk", name);
    snprintf(path, sizeof path, "%s/images/%s", cf_store_dir(s), image);
    if (access(path, F_OK) == 0)
      return cli_error("an image named %s exists (left by an interrupted save? `cowfork image rm %s`)", image,
                       image), -1;
  }
  return 0;
}

/* One template as the daemon's GET /v1/templates shows it. */
struct tinfo {
  char name[256];
  json_t *j; /* NULL: unreadable (err says why) */
  char parent[256];
  char err[300];
};

static int cmp_tinfo(const void *a, const void *b)
{
  return strcmp(((const struct tinfo *)a)->name, ((const struct tinfo *)b)->name);
}

/* Every template in the store, sorted by name. */
static int scan(struct cf_store *s, struct tinfo **out, size_t *nout)
{
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/templates", cf_store_dir(s));
  *out = NULL;
  *nout = 0;
  DIR *dp = opendir(dir);
  if (!dp)
    return errno == ENOENT ? 0 : cf_fail(errno, "%s: %m", dir);
  struct tinfo *v = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(dp))) {
    if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp.") || strlen(e->d_name) >= sizeof v->name)
      continue;
    struct tinfo *nv = realloc(v, (n + 1) * sizeof *v);
    if (!nv) {
      closedir(dp);
      for (size_t i = 0; i < n; i++)
        json_decref(v[i].j);
      free(v);
      return cf_fail(ENOMEM, "out of memory");
    }
    v = nv;
    struct tinfo *t = &v[n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", e->d_name);
    struct cf_template *ct = cf_template_open(s, t->name);
    if (!ct) {
      snprintf(t->err, sizeof t->err, "%s", cf_error());
      continue;
    }
    snprintf(t->parent, sizeof t->parent, "%s", cf_template_parent(ct));
    struct cf_image_stats is = {0};
    struct cf_header *h = cf_store_get_header(s, cf_template_image(ct));
    if (h) {
      cf_image_stats(h, &is);
      cf_header_free(h);
    }
    char path[PATH_MAX];
    struct stat st;
    double created = 0;
    if (cf_template_path(s, t->name, path, sizeof path) == 0 && stat(path, &st) == 0)
      created = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
    t->j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:i,s:[],s:f,s:b}", "name", t->name, "parent", t->parent, "image",
                     cf_template_image(ct), "mem_size", (json_int_t)cf_template_mem_size(ct), "stored_bytes",
                     (json_int_t)is.stored_bytes, "own_bytes", (json_int_t)is.own_bytes, "sandboxes", 0,
                     "branches", "created", created, "internal", internal_name(t->name));
    cf_template_close(ct);
  }
  closedir(dp);
  if (n)
    qsort(v, n, sizeof *v, cmp_tinfo);
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < n; k++)
      if (v[k].j && v[i].j && strcmp(v[k].parent, v[i].name) == 0)
        json_array_append_new(json_object_get(v[i].j, "branches"), json_string(v[k].name));
  *out = v;
  *nout = n;
  return 0;
}

static void free_scan(struct tinfo *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    json_decref(v[i].j);
  free(v);
}

/* The records of a daemon that is not running (STORE/daemon/state.json):
 * how many running or paused sandboxes have name as their current template,
 * and one of their ids. -1 with cf_error() when the file is unreadable. */
static int state_users(struct cf_store *s, const char *name, bool paused_only, char *id, size_t idlen)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/daemon/state.json", cf_store_dir(s));
  if (access(path, F_OK) != 0)
    return 0;
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (!j)
    return cf_fail(EINVAL, "%s: line %d: %s", path, je.line, je.text);
  int users = 0;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(j, "sandboxes"), i, e)
  {
    const char *st = json_string_value(json_object_get(e, "state"));
    const char *cur = json_string_value(json_object_get(e, "current"));
    const char *sid = json_string_value(json_object_get(e, "id"));
    if (!st || !cur || strcmp(cur, name) != 0)
      continue;
    if (strcmp(st, "paused") == 0 || (!paused_only && strcmp(st, "running") == 0)) {
      if (users++ == 0 && id)
        snprintf(id, idlen, "%s", sid ? sid : "?");
    }
  }
  json_decref(j);
  return users;
}

/* A daemon's answer (GET or DELETE): the JSON body, or NULL after printing
 * its error. */
static json_t *ask(const char *sock, const char *method, const char *path)
{
  int st;
  char *resp;
  size_t len;
  if (cf_daemon_request(sock, method, path, NULL, 0, &st, &resp, &len) < 0) {
    cli_error("a daemon serves this store, but: %s", cf_error());
    return NULL;
  }
  json_error_t je;
  json_t *j = json_loadb(resp, len, 0, &je);
  if (st >= 400 || !j) {
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    cli_error("%s (daemon at %s, HTTP %d)", msg ? msg : resp, sock, st);
    json_decref(j);
    free(resp);
    return NULL;
  }
  free(resp);
  return j;
}

static int cmd_ls(const struct cli_cmd *cmd, int argc, char **argv)
{
  bool json = false;
  int c;
  static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {0}};
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c != 'j')
      return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    json = true;
  }
  if (optind != argc)
    return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  char sock[PATH_MAX];
  int guard = -1, rc = EXIT_ERR;
  json_t *arr = NULL;
  int live = cf_daemon_probe(cf_store_dir(s), sock, sizeof sock, &guard);
  if (live < 0) {
    cli_error("%s", cf_error());
    goto out;
  }
  if (live) {
    json_t *j = ask(sock, "GET", "/v1/templates");
    if (!j)
      goto out;
    arr = json_incref(json_object_get(j, "templates"));
    json_decref(j);
    if (!json_is_array(arr)) {
      cli_error("the daemon's template list is not an array");
      goto out;
    }
  } else {
    struct tinfo *v;
    size_t n;
    if (scan(s, &v, &n) < 0) {
      cli_error("%s", cf_error());
      goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
      if (!v[i].j) {
        json_array_append_new(arr, json_pack("{s:s,s:s}", "name", v[i].name, "error", v[i].err));
        continue;
      }
      int users = state_users(s, v[i].name, true, NULL, 0);
      json_object_set_new(v[i].j, "sandboxes", json_integer(users > 0 ? users : 0));
      json_array_append(arr, v[i].j);
    }
    free_scan(v, n);
  }
  if (json) {
    json_dumpf(arr, stdout, JSON_COMPACT);
    putchar('\n');
  } else {
    printf("%-24s %-24s %8s %14s %14s %9s %s\n", "NAME", "PARENT", "MEM", "STORED", "OWN", "SANDBOXES",
           "BRANCHES");
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t)
    {
      const char *name = json_string_value(json_object_get(t, "name"));
      const char *err = json_string_value(json_object_get(t, "error"));
      if (err) {
        printf("%-24s (unreadable: %s)\n", name ? name : "?", err);
        continue;
      }
      const char *parent = json_string_value(json_object_get(t, "parent"));
      printf("%-24s %-24s %7lldM %14lld %14lld %9lld ", name ? name : "?", parent && *parent ? parent : "-",
             (long long)json_integer_value(json_object_get(t, "mem_size")) >> 20,
             (long long)json_integer_value(json_object_get(t, "stored_bytes")),
             (long long)json_integer_value(json_object_get(t, "own_bytes")),
             (long long)json_integer_value(json_object_get(t, "sandboxes")));
      size_t k;
      json_t *b;
      json_t *br = json_object_get(t, "branches");
      if (!json_array_size(br))
        fputs("-", stdout);
      json_array_foreach(br, k, b) printf("%s%s", k ? "," : "", json_string_value(b));
      putchar('\n');
    }
  }
  rc = EXIT_OK;
out:
  json_decref(arr);
  if (guard >= 0)
    close(guard);
  cf_store_close(s);
  return rc;
}

/* Remove one template when no daemon runs (the caller holds the guard). */
static int rm_local(struct cf_store *s, const char *name)
{
  char path[PATH_MAX], why[600] = "";
  if (cf_store_check_name(name) < 0 || strlen(name) > 200)
    return cli_error("template rm %s: bad template name", name);
  if (cf_template_path(s, name, path, sizeof path) < 0)
    return cli_error("template rm %s: %s", name, cf_error());
  if (access(path, F_OK) != 0)
    return cli_error("template rm %s: no template %s", name, name);
  if (internal_name(name))
    return cli_error("template rm %s: a daemon's pause template: delete its sandbox (cowfork sandbox rm)", name);
  struct tinfo *v;
  size_t n;
  if (scan(s, &v, &n) < 0)
    return cli_error("template rm %s: %s", name, cf_error());
  for (size_t i = 0; i < n && !why[0]; i++) {
    if (!v[i].j)
      fprintf(stderr, "cowfork: template rm %s: warning: template %s is unreadable, not checked: %s\n", name,
              v[i].name, v[i].err);
    else if (!internal_name(v[i].name) && strcmp(v[i].parent, name) == 0)
      snprintf(why, sizeof why, "template %s is a branch of it", v[i].name);
  }
  free_scan(v, n);
  char id[64];
  int users = state_users(s, name, true, id, sizeof id);
  if (users < 0)
    return cli_error("template rm %s: cannot tell which daemon sandboxes need it: %s", name, cf_error());
  if (!why[0] && users)
    snprintf(why, sizeof why, "%d paused daemon sandbox%s (%s%s) resume%s from it", users, users > 1 ? "es" : "",
             id, users > 1 ? ", ..." : "", users > 1 ? "" : "s");
  if (why[0])
    return cli_error("template rm %s: in use: %s", name, why);
  /* State file first: from then on nobody can fork from it. */
  if (unlink(path) < 0)
    return cli_error("template rm %s: %s: %m", name, path);
  if (cf_template_remove_images(s, name) < 0)
    return cli_error("template rm %s: its state file is removed, but its images: %s", name, cf_error());
  return EXIT_OK;
}

static int cmd_rm(const struct cli_cmd *cmd, int argc, char **argv)
{
  if (cli_wants_help(cmd, argc, argv))
    return EXIT_OK;
  optind = 1;
  opterr = 0;
  if (getopt_long(argc, argv, "", (const struct option[]){{0}}, NULL) != -1)
    return cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
  if (optind >= argc)
    return cli_usage(cmd, "expected at least one NAME");
  struct cf_store *s = cli_open_store();
  if (!s)
    return EXIT_ERR;
  char sock[PATH_MAX];
  int guard = -1, rc = EXIT_OK;
  int live = cf_daemon_probe(cf_store_dir(s), sock, sizeof sock, &guard);
  if (live < 0)
    rc = cli_error("template rm: %s", cf_error());
  for (int i = optind; live >= 0 && i < argc; i++) {
    if (!live) {
      if (rm_local(s, argv[i]) != EXIT_OK)
        rc = EXIT_ERR;
      continue;
    }
    char path[600];
    if (cf_store_check_name(argv[i]) < 0 || strlen(argv[i]) > 200) {
      rc = cli_error("template rm %s: bad template name", argv[i]);
      continue;
    }
    snprintf(path, sizeof path, "/v1/templates/%s", argv[i]);
    json_t *j = ask(sock, "DELETE", path);
    if (!j)
      rc = EXIT_ERR;
    json_decref(j);
  }
  if (guard >= 0)
    close(guard);
  cf_store_close(s);
  return rc;
}

const struct cli_cmd cli_template_cmds[] = {
    {"template ls", "list templates (parent, size, branches, daemon sandboxes)",
     "Usage: cowfork template ls [--json]\n"
     "\n"
     "List the store's templates: parent, memory size, bytes stored and in their\n"
     "own layer, how many daemon sandboxes run from or are paused in each, and\n"
     "its branches. Templates named _... are a daemon's pause templates. When a\n"
     "daemon serves the store the list is its GET /v1/templates; --json prints\n"
     "that array (keys name, parent, image, mem_size, stored_bytes, own_bytes,\n"
     "sandboxes, branches, created, internal; \"error\" for an unreadable one).\n",
     cmd_ls},
    {"template rm", "remove templates nothing needs (its state file and image)",
     "Usage: cowfork template rm NAME...\n"
     "\n"
     "Remove template NAME: its state file STORE/templates/NAME and its image\n"
     "NAME.mem (layers other images share stay). Refused while a template is a\n"
     "branch of it or a daemon sandbox runs from it or is paused in it. When a\n"
     "daemon serves the store this is its DELETE /v1/templates/NAME (it knows its\n"
     "live sandboxes); otherwise the daemon's state file is read and no daemon\n"
     "can start until the removal is done.\n",
     cmd_rm},
    {0},
};
