/* Roots: immutable trees a sandbox sees as "/" (include/cowfork/root.h).
 *
 * A build happens in ROOTS/.tmp-NAME-XXXXXX (mkdtemp: 0700), which holds
 * root/ (the tree) and info; when complete the file system is synced once
 * (syncfs: one fsync per file would cost seconds for ten thousand files,
 * so files are cloned with CF_CLONE_NOSYNC) and the directory is renamed to
 * ROOTS/NAME with RENAME_NOREPLACE: a reader sees no root or a whole one,
 * and of two builders of one name the second finds EEXIST and drops its
 * own. A failed build deletes its temp directory; a crash leaves a .tmp-*
 * directory that the next build or `root rm` of any name sweeps (only those
 * older than an hour: another process may be building one now).
 *
 * Packages. One `dpkg-query -W` lists every installed package with its
 * Essential flag, Provides, Pre-Depends and Depends; the closure of the
 * named ones plus the Essential set is taken over every installed
 * alternative and provider of each dependency (a superset of what dpkg
 * needed: cheap, since files are shared). One `dpkg-query -L` lists their
 * files. A listed path may pass through host symlinks (/bin -> usr/bin on a
 * merged-/usr system: those links are in no package's list): each symlink
 * on the way is recreated as it is on the host and the entry is placed at
 * its resolved directory, so every listed path resolves in the root as it
 * does on the host. Symlinks into /etc/alternatives bring that link along
 * (update-alternatives' links are in no list either); each directory
 * holding Python sources brings the .pyc files of its __pycache__ (made by maintainer
 * scripts: without them every run compiles the standard library again);
 * /etc/passwd and /etc/group are base-passwd's masters (the host's own are
 * never read). Nothing else outside the lists is read: the host's
 * /etc/shadow, /root, /home are in no package.
 *
 * Modes: directories get the host's (or the tar's) permission bits once
 * the tree is filled (built 0700 so that a non-root builder can fill a
 * 0555 one); files keep their 0777 bits (cf_clone), set-id bits are
 * dropped (a copy or reflink) or the file is never hardlinked (the inode
 * would keep them). Owners are the builder's (a hardlink keeps the host's).
 *
 * Tar (libarchive: Debian's libarchive-dev; it reads the tar dialects
 * docker and OCI tools write, pax headers, sparse members and the gzip/xz/
 * zstd wrappers, which tar(1) would also do but without letting us vet each
 * member before anything is written). Every member is placed relative to an
 * O_PATH fd of the tree, walking components with O_NOFOLLOW, so a symlink
 * member can never redirect a later member outside the tree.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "cowfork/clone.h"
#include "cowfork/root.h"
#include "internal.h"

/* Paths here are bounded where they come in (ROOTS by cf_root_create, a
 * listed path by build_packages, a name by cf_root_check_name), so the
 * snprintf's below cannot truncate; GCC cannot see that. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* The driver, built into the binary (lib/root_driver.c). */
extern const char cf_root_driver_py[];
extern const unsigned cf_root_driver_py_len;

int cf_roots_dir(const char *store_dir, char *buf, size_t len)
{
  const char *e = getenv("COWFORK_ROOTS");
  int n = e && *e ? snprintf(buf, len, "%s", e) : snprintf(buf, len, "%s/roots", store_dir);
  if (n < 0 || (size_t)n >= len)
    return cf_fail(ENAMETOOLONG, "roots directory path too long");
  return 0;
}

int cf_root_check_name(const char *name)
{
  size_t n = strlen(name);
  if (n == 0 || n > 200 || name[0] == '.')
    return cf_fail(EINVAL, "bad root name '%s': 1-200 characters, not starting with '.'", name);
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return cf_fail(EINVAL, "bad root name '%s': only letters, digits, '.', '_' and '-'", name);
  }
  return 0;
}

/* ---- small string lists ---- */

struct strv {
  char **v;
  size_t n, cap;
};

static int strv_add(struct strv *s, const char *str, size_t len)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    char **v = realloc(s->v, cap * sizeof *v);
    if (!v)
      return cf_fail(ENOMEM, "out of memory");
    s->v = v;
    s->cap = cap;
  }
  if (!(s->v[s->n] = strndup(str, len)))
    return cf_fail(ENOMEM, "out of memory");
  s->n++;
  return 0;
}

static bool strv_has(const struct strv *s, const char *str)
{
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], str) == 0)
      return true;
  return false;
}

static void strv_free(struct strv *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}

/* ---- removing a tree (ours: no symlink is followed) ---- */

static int rm_at(int dfd, const char *name)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode))
    return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
  if ((st.st_mode & 0700) != 0700)
    fchmodat(dfd, name, 0700, 0);
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int r = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && rm_at(fd, de->d_name) < 0)
      r = -1;
  closedir(d);
  if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    r = -1;
  return r;
}

/* Temp directories of builds that died (older than an hour). */
static void sweep_tmp(const char *roots)
{
  DIR *d = opendir(roots);
  if (!d)
    return;
  struct dirent *de;
  time_t now = time(NULL);
  while ((de = readdir(d))) {
    struct stat st;
    if ((strncmp(de->d_name, ".tmp-", 5) && strncmp(de->d_name, ".rm-", 4)) ||
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
      continue;
    if (de->d_name[1] == 'r' || now - st.st_mtime > 3600)
      rm_at(dirfd(d), de->d_name);
  }
  closedir(d);
}

/* ---- a tree being built ---- */

struct dirmode {
  char *rel;
  mode_t mode;
};

struct build {
  char top[PATH_MAX];  /* ROOTS/.tmp-NAME-XXXXXX */
  char root[PATH_MAX]; /* top/root */
  int rootfd;          /* O_PATH of root */
  struct cf_root_stats *st;
  struct dirmode *dirs; /* directories made, with the mode they get at the end */
  size_t ndirs, capdirs;
  char lastdir[PATH_MAX]; /* the last directory mkdir_host made sure of */
  struct strv pydirs;     /* directories whose __pycache__ was taken */
  uint64_t done, total;
  cf_progress_fn progress;
  void *ctx;
};

static int dir_record(struct build *b, const char *rel, mode_t mode)
{
  if (b->ndirs == b->capdirs) {
    size_t cap = b->capdirs ? b->capdirs * 2 : 256;
    struct dirmode *v = realloc(b->dirs, cap * sizeof *v);
    if (!v)
      return cf_fail(ENOMEM, "out of memory");
    b->dirs = v;
    b->capdirs = cap;
  }
  if (!(b->dirs[b->ndirs].rel = strdup(rel)))
    return cf_fail(ENOMEM, "out of memory");
  b->dirs[b->ndirs++].mode = mode & 07777 & ~(mode_t)S_ISUID;
  b->st->dirs++;
  return 0;
}

/* Make directory rel (relative to the tree, no symlink on the way: every
 * parent was made by us) with final mode mode, if missing. */
static int mkdir_rel(struct build *b, const char *rel, mode_t mode)
{
  if (mkdirat(b->rootfd, rel, 0700) < 0) {
    if (errno == EEXIST)
      return 0;
    return cf_fail(errno, "mkdir %s/%s: %m", b->root, rel);
  }
  return dir_record(b, rel, mode);
}

/* Make sure the tree holds host directory dir (absolute, resolved: each of
 * its prefixes is a real directory on the host), each level with the
 * host's mode. */
static int mkdir_host(struct build *b, const char *dir)
{
  if (strcmp(dir, b->lastdir) == 0 || strcmp(dir, "/") == 0)
    return 0;
  char rel[PATH_MAX];
  snprintf(rel, sizeof rel, "%s", dir + 1);
  for (char *p = rel;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      struct stat st;
      char host[PATH_MAX];
      snprintf(host, sizeof host, "/%s", rel);
      if (fstatat(b->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (stat(host, &st) < 0)
          return cf_fail(errno, "stat %s: %m", host);
        if (mkdir_rel(b, rel, st.st_mode) < 0)
          return -1;
      }
      *p = c;
      if (!c)
        break;
    }
  }
  snprintf(b->lastdir, sizeof b->lastdir, "%s", dir);
  return 0;
}

static void progress(struct build *b, uint64_t add)
{
  b->done += add;
  if (b->progress)
    b->progress(b->ctx, b->done, b->total);
}

/* Share regular file src at rel of the tree by cf_clone. */
static int put_file(struct build *b, const char *src, const char *rel, const struct stat *sst, unsigned flags)
{
  char dst[PATH_MAX];
  if (snprintf(dst, sizeof dst, "%s/%s", b->root, rel) >= (int)sizeof dst)
    return cf_fail(ENAMETOOLONG, "path too long: %s", rel);
  if (sst->st_mode & (S_ISUID | S_ISGID))
    flags &= ~CF_CLONE_IMMUTABLE;
  enum cf_clone_method m;
  if (cf_clone(src, dst, flags | CF_CLONE_NOSYNC, &m) < 0) {
    if (errno == EEXIST) /* listed twice (a diversion, two packages' dirs) */
      return 0;
    if (errno == EACCES && !(flags & CF_CLONE_IMMUTABLE)) {
      /* A file the builder cannot read (root's 0600 in a package): left out. */
      b->st->skipped++;
      return 0;
    }
    return -1;
  }
  b->st->files[m]++;
  b->st->bytes[m] += (uint64_t)sst->st_size;
  progress(b, (uint64_t)sst->st_size);
  return 0;
}

/* ---- packages ---- */

struct pkg {
  char *full; /* binary:Package, as dpkg-query -L wants it */
  char *name; /* without :arch */
  bool essential, installed, chosen;
  char *provides, *deps; /* Provides; Pre-Depends, Depends */
};

static void pkgs_free(struct pkg *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(p[i].full);
    free(p[i].name);
    free(p[i].provides);
    free(p[i].deps);
  }
  free(p);
}

/* Run argv (a program and its arguments) with stdout into *out (malloc'ed,
 * NUL-terminated); stderr to /dev/null. 0 when it exited 0. */
static int run_capture(char *const argv[], char **out, size_t *outlen)
{
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0)
    return cf_fail(errno, "pipe: %m");
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(pfd[0]);
    close(pfd[1]);
    return cf_fail(e, "fork: %s", strerror(e));
  }
  if (pid == 0) {
    dup2(pfd[1], 1);
    int nul = open("/dev/null", O_WRONLY);
    if (nul >= 0)
      dup2(nul, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(pfd[1]);
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int e = 0;
  for (;;) {
    if (!buf) {
      e = ENOMEM;
      break;
    }
    if (len + 4096 > cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = nb;
    }
    ssize_t r = read(pfd[0], buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r < 0)
        e = errno;
      break;
    }
    len += (size_t)r;
  }
  close(pfd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (e || !buf) {
    free(buf);
    return cf_fail(e ? e : ENOMEM, "%s: reading its output: %s", argv[0], strerror(e ? e : ENOMEM));
  }
  buf[len] = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    free(buf);
    return cf_fail(WIFEXITED(status) && WEXITSTATUS(status) == 127 ? ENOENT : EIO, "%s failed (status %d)",
                   argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  *out = buf;
  if (outlen)
    *outlen = len;
  return 0;
}

static int pkgs_load(struct pkg **out, size_t *n)
{
  char *const argv[] = {"dpkg-query", "-W", "-f",
                        "${binary:Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Provides}\\t${Pre-Depends}, "
                        "${Depends}\\n",
                        NULL};
  CLEANUP_FREE char *text = NULL;
  if (run_capture(argv, &text, NULL) < 0)
    return cf_fail(errno, "listing the installed packages: %s", cf_error());
  struct pkg *v = NULL;
  size_t cnt = 0, cap = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = 0;
    char *f[5];
    int k = 0;
    for (char *p = line; k < 5; k++) {
      f[k] = p;
      p = strchr(p, '\t');
      if (!p)
        break;
      *p++ = 0;
    }
    if (k < 4)
      continue;
    if (cnt == cap) {
      cap = cap ? cap * 2 : 1024;
      struct pkg *nv = realloc(v, cap * sizeof *nv);
      if (!nv) {
        pkgs_free(v, cnt);
        return cf_fail(ENOMEM, "out of memory");
      }
      v = nv;
    }
    struct pkg *p = &v[cnt];
    memset(p, 0, sizeof *p);
    p->full = strdup(f[0]);
    p->name = strndup(f[0], strcspn(f[0], ":"));
    p->installed = strncmp(f[1], "ii", 2) == 0;
    p->essential = strcmp(f[2], "yes") == 0;
    p->provides = strdup(f[3]);
    p->deps = strdup(f[4]);
    cnt++;
    if (!p->full || !p->name || !p->provides || !p->deps) {
      pkgs_free(v, cnt);
      return cf_fail(ENOMEM, "out of memory");
    }
  }
  *out = v;
  *n = cnt;
  return 0;
}

/* Whether list (a Provides or Depends value) names name, as a whole word. */
static bool names(const char *list, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n) {
    bool start = p == list || p[-1] == ' ' || p[-1] == ',' || p[-1] == '|';
    char c = p[n];
    if (start && (c == 0 || c == ' ' || c == ',' || c == ':' || c == '(' || c == '|'))
      return true;
  }
  return false;
}

/* Choose every installed package called, or providing, name; queue them. */
static void choose(struct pkg *v, size_t n, const char *name, size_t *queue, size_t *qn)
{
  for (size_t i = 0; i < n; i++)
    if (v[i].installed && !v[i].chosen && (strcmp(v[i].name, name) == 0 || names(v[i].provides, name))) {
      v[i].chosen = true;
      queue[(*qn)++] = i;
    }
}

static int pkgs_closure(struct pkg *v, size_t n, const struct cf_root_source *src, uint64_t *count)
{
  CLEANUP_FREE size_t *queue = malloc((n + 1) * sizeof *queue);
  if (!queue)
    return cf_fail(ENOMEM, "out of memory");
  size_t qn = 0;
  for (size_t i = 0; i < src->npackages; i++) {
    const char *want = src->packages[i];
    bool found = false;
    for (size_t j = 0; j < n; j++)
      if (v[j].installed && (strcmp(v[j].name, want) == 0 || strcmp(v[j].full, want) == 0)) {
        found = true;
        if (!v[j].chosen) {
          v[j].chosen = true;
          queue[qn++] = j;
        }
      }
    if (!found && !src->optional)
      return cf_fail(ENOENT, "package '%s' is not installed on this host (dpkg-query -W %s)", want, want);
  }
  for (size_t j = 0; j < n; j++)
    if (v[j].installed && v[j].essential && !v[j].chosen) {
      v[j].chosen = true;
      queue[qn++] = j;
    }
  for (size_t qi = 0; qi < qn; qi++) {
    /* "a (>= 1), b:any | c, ..." */
    const char *p = v[queue[qi]].deps;
    while (*p) {
      p += strspn(p, " ,|");
      size_t len = strcspn(p, " ,|:(");
      if (len) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < 255 ? len : 255), p);
        choose(v, n, name, queue, &qn);
      }
      p += len;
      p += strcspn(p, ",|"); /* skip a version or :arch */
    }
  }
  *count = qn;
  return 0;
}

/* Place host path (a dpkg -L line) in the tree; depth bounds the symlink
 * chases (a symlink into /etc/alternatives). */
static int add_host_path(struct build *b, const char *path, int depth);

/* Recreate host symlink path (whose parent is resolved to rdir) in the tree. */
static int add_symlink(struct build *b, const char *path, const char *rdir, int depth)
{
  char target[PATH_MAX], rel[PATH_MAX];
  ssize_t tl = readlink(path, target, sizeof target - 1);
  if (tl < 0)
    return cf_fail(errno, "readlink %s: %m", path);
  target[tl] = 0;
  const char *base = strrchr(path, '/') + 1;
  snprintf(rel, sizeof rel, "%s%s%s", rdir + 1, rdir[1] ? "/" : "", base);
  if (symlinkat(target, b->rootfd, rel) < 0) {
    if (errno == EEXIST)
      return 0;
    return cf_fail(errno, "symlink %s/%s: %m", b->root, rel);
  }
  b->st->symlinks++;
  if (strncmp(target, "/etc/alternatives/", 18) == 0 && depth < 8)
    return add_host_path(b, target, depth + 1);
  return 0;
}

/* Python's compiled sources for directory dir of the host, once. */
static int add_pycache(struct build *b, const char *dir)
{
  if (strv_has(&b->pydirs, dir))
    return 0;
  if (strv_add(&b->pydirs, dir, strlen(dir)) < 0)
    return -1;
  char pc[PATH_MAX];
  snprintf(pc, sizeof pc, "%s/__pycache__", dir);
  DIR *d = opendir(pc);
  if (!d)
    return 0;
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n < 5 || strcmp(de->d_name + n - 4, ".pyc"))
      continue;
    char src[PATH_MAX], rel[PATH_MAX];
    struct stat st;
    snprintf(src, sizeof src, "%s/%s", pc, de->d_name);
    if (lstat(src, &st) < 0 || !S_ISREG(st.st_mode))
      continue;
    if ((r = mkdir_host(b, pc)) < 0)
      break;
    snprintf(rel, sizeof rel, "%s", src + 1);
    r = put_file(b, src, rel, &st, CF_CLONE_IMMUTABLE);
  }
  closedir(d);
  return r;
}

static int add_host_path(struct build *b, const char *path, int depth)
{
  if (path[0] != '/' || strcmp(path, "/.") == 0 || strcmp(path, "/") == 0)
    return 0;
  struct stat st;
  if (lstat(path, &st) < 0) {
    b->st->skipped++; /* listed, but gone (removed, or a dpkg path-exclude) */
    return 0;
  }
  /* Each symlink among path's parents, as the host has it. */
  char pre[PATH_MAX], rdir[PATH_MAX];
  snprintf(pre, sizeof pre, "%s", path);
  for (char *p = strchr(pre + 1, '/'); p; p = strchr(p + 1, '/')) {
    *p = 0;
    struct stat ps;
    if (lstat(pre, &ps) == 0 && S_ISLNK(ps.st_mode)) {
      char pdir[PATH_MAX];
      snprintf(pdir, sizeof pdir, "%s", pre);
      *strrchr(pdir, '/') = 0;
      if (!realpath(pdir[0] ? pdir : "/", rdir))
        return cf_fail(errno, "realpath %s: %m", pdir);
      if (mkdir_host(b, rdir) < 0 || add_symlink(b, pre, rdir, depth) < 0)
        return -1;
      char rt[PATH_MAX];
      if (realpath(pre, rt) && mkdir_host(b, rt) < 0)
        return -1;
    }
    *p = '/';
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  const char *base = slash + 1;
  *slash = 0;
  if (!realpath(dir[0] ? dir : "/", rdir))
    return cf_fail(errno, "realpath %s: %m", dir);
  if (mkdir_host(b, rdir) < 0)
    return -1;
  char rel[PATH_MAX];
  if (snprintf(rel, sizeof rel, "%s%s%s", rdir + 1, rdir[1] ? "/" : "", base) >= (int)sizeof rel)
    return cf_fail(ENAMETOOLONG, "path too long: %s", path);
  if (S_ISDIR(st.st_mode)) {
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s%s%s", rdir, rdir[1] ? "/" : "", base);
    return mkdir_host(b, full);
  }
  if (S_ISLNK(st.st_mode))
    return add_symlink(b, path, rdir, depth);
  if (!S_ISREG(st.st_mode)) {
    b->st->skipped++;
    return 0;
  }
  /* /etc holds conffiles an admin may edit in place: never hardlinked. */
  unsigned flags = strncmp(rdir, "/etc", 4) == 0 && (rdir[4] == 0 || rdir[4] == '/') ? 0 : CF_CLONE_IMMUTABLE;
  if (put_file(b, path, rel, &st, flags) < 0)
    return -1;
  size_t bl = strlen(base);
  if (bl > 3 && strcmp(base + bl - 3, ".py") == 0)
    return add_pycache(b, rdir);
  return 0;
}

/* Whether absolute path p exists in the tree (resolved inside it). */
static bool in_tree(struct build *b, const char *p)
{
  struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
  long fd = syscall(SYS_openat2, b->rootfd, p, &how, sizeof how);
  if (fd < 0)
    return false;
  close((int)fd);
  return true;
}

/* update-alternatives' links (in no package's list): for every alternative
 * (master and slaves, /var/lib/dpkg/alternatives/NAME) whose current choice
 * is in the tree, /etc/alternatives/NAME and the link to it (libblas.so.3
 * for numpy). */
static int add_alternatives(struct build *b)
{
  DIR *d = opendir("/var/lib/dpkg/alternatives");
  if (!d)
    return 0;
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    char path[PATH_MAX], text[16384];
    snprintf(path, sizeof path, "/var/lib/dpkg/alternatives/%s", de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
      continue;
    text[n] = 0;
    /* mode, master link, then slave name/link pairs up to an empty line */
    char *save, *line = strtok_r(text, "\n", &save);
    const char *name = de->d_name;
    char *link = line ? strtok_r(NULL, "\n", &save) : NULL;
    while (r == 0 && name && link && link[0] == '/') {
      char alt[PATH_MAX], target[PATH_MAX];
      snprintf(alt, sizeof alt, "/etc/alternatives/%s", name);
      ssize_t tl = readlink(alt, target, sizeof target - 1);
      if (tl > 0) {
        target[tl] = 0;
        if (target[0] == '/' && in_tree(b, target) && (r = add_host_path(b, alt, 8)) == 0)
          r = add_host_path(b, link, 8);
      }
      /* strtok_r skips empty lines: a slave name never starts with '/', a
       * choice (after the empty line) does, so stop at a non-link. */
      name = strtok_r(NULL, "\n", &save);
      link = name && name[0] != '/' ? strtok_r(NULL, "\n", &save) : NULL;
    }
  }
  closedir(d);
  return r;
}

/* Copy host file src (if in the tree) to rel, 0644: base-passwd's masters. */
static int put_small(struct build *b, const char *srcrel, const char *rel)
{
  int fd = openat(b->rootfd, srcrel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[65536];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n < 0)
    return 0;
  int ofd = openat(b->rootfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (ofd < 0)
    return errno == EEXIST ? 0 : cf_fail(errno, "create %s/%s: %m", b->root, rel);
  int r = cf_pwrite_full(ofd, buf, (size_t)n, 0) < 0 || fchmod(ofd, 0644) < 0 ? -1 : 0;
  int e = errno;
  close(ofd);
  if (r < 0)
    return cf_fail(e, "write %s/%s: %s", b->root, rel, strerror(e));
  b->st->files[CF_CLONE_READWRITE]++;
  b->st->bytes[CF_CLONE_READWRITE] += (uint64_t)n;
  return 0;
}

static int build_packages(struct build *b, const struct cf_root_source *src)
{
  for (size_t i = 0; i < src->npackages; i++)
    for (const char *c = src->packages[i]; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr("+-.:", *c)) || !*src->packages[i])
        return cf_fail(EINVAL, "bad package name '%s'", src->packages[i]);
  struct pkg *v = NULL;
  size_t n = 0;
  if (pkgs_load(&v, &n) < 0)
    return -1;
  int ret = -1;
  char **argv = NULL;
  char *text = NULL;
  struct strv paths = {0};
  if (pkgs_closure(v, n, src, &b->st->packages) < 0)
    goto out;
  if (!(argv = calloc(n + 3, sizeof *argv))) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  size_t k = 0;
  argv[k++] = "dpkg-query";
  argv[k++] = "-L";
  for (size_t i = 0; i < n; i++)
    if (v[i].chosen)
      argv[k++] = v[i].full;
  if (run_capture(argv, &text, NULL) < 0) {
    cf_fail(errno, "listing the packages' files: %s", cf_error());
    goto out;
  }
  for (char *line = text, *next; *line; line = next) {
    next = line + strcspn(line, "\n");
    size_t len = (size_t)(next - line);
    if (*next)
      next++;
    if (len >= PATH_MAX - 256) {
      cf_fail(ENAMETOOLONG, "a listed path too long: %.100s...", line);
      goto out;
    }
    if (len && line[0] == '/' && strv_add(&paths, line, len) < 0)
      goto out;
  }
  for (size_t i = 0; i < paths.n; i++) {
    struct stat st;
    if (lstat(paths.v[i], &st) == 0 && S_ISREG(st.st_mode))
      b->total += (uint64_t)st.st_size;
  }
  for (size_t i = 0; i < paths.n; i++)
    if (add_host_path(b, paths.v[i], 0) < 0)
      goto out;
  if (add_alternatives(b) < 0)
    goto out;
  if (mkdirat(b->rootfd, "etc", 0755) == 0 && dir_record(b, "etc", 0755) < 0)
    goto out;
  if (put_small(b, "usr/share/base-passwd/passwd.master", "etc/passwd") < 0 ||
      put_small(b, "usr/share/base-passwd/group.master", "etc/group") < 0)
    goto out;
  ret = 0;
out:
  strv_free(&paths);
  free(text);
  free(argv);
  pkgs_free(v, n);
  return ret;
}

/* ---- a host directory ---- */

static int walk_dir(struct build *b, const char *src, const char *rel)
{
  DIR *d = opendir(src);
  if (!d)
    return cf_fail(errno, "opendir %s: %m", src);
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char s[PATH_MAX], rl[PATH_MAX];
    if (snprintf(s, sizeof s, "%s/%s", src, de->d_name) >= (int)sizeof s ||
        snprintf(rl, sizeof rl, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= (int)sizeof rl) {
      r = cf_fail(ENAMETOOLONG, "path too long under %s", src);
      break;
    }
    struct stat st;
    if (lstat(s, &st) < 0) {
      r = cf_fail(errno, "stat %s: %m", s);
    } else if (S_ISDIR(st.st_mode)) {
      if ((r = mkdir_rel(b, rl, st.st_mode)) == 0)
        r = walk_dir(b, s, rl);
    } else if (S_ISLNK(st.st_mode)) {
      char t[PATH_MAX];
      ssize_t tl = readlink(s, t, sizeof t - 1);
      if (tl < 0)
        r = cf_fail(errno, "readlink %s: %m", s);
      else {
        t[tl] = 0;
        if (symlinkat(t, b->rootfd, rl) < 0)
          r = cf_fail(errno, "symlink %s/%s: %m", b->root, rl);
        else
          b->st->symlinks++;
      }
    } else if (S_ISREG(st.st_mode)) {
      /* Not hardlinked: the directory's files may be written in place later. */
      r = put_file(b, s, rl, &st, 0);
    } else {
      b->st->skipped++;
    }
  }
  closedir(d);
  return r;
}

/* ---- a tar file ---- */

/* Check and normalize a member name into out: "./a//b/" -> "a/b"; "" is the
 * top. -1 EINVAL for an absolute name or a ".." component. */
static int member_name(const char *name, char *out, size_t len)
{
  if (name[0] == '/')
    return cf_fail(EINVAL, "member '%s': an absolute name", name);
  size_t o = 0;
  for (const char *p = name; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return cf_fail(EINVAL, "member '%s': a '..' component", name);
    if (n && !(n == 1 && p[0] == '.')) {
      if (o + n + 2 > len)
        return cf_fail(ENAMETOOLONG, "member '%s': name too long", name);
      if (o)
        out[o++] = '/';
      memcpy(out + o, p, n);
      o += n;
    }
    p += n;
    p += strspn(p, "/");
  }
  out[o] = 0;
  return 0;
}

/* An fd of the directory holding rel (made 0755 where missing), walking
 * from the tree without following any symlink; *base = rel's last part. */
static int open_parent(struct build *b, char *rel, const char **base)
{
  int fd = openat(b->rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "open %s: %m", b->root);
  char *p = rel, *slash;
  char sofar[PATH_MAX] = "";
  while ((slash = strchr(p, '/'))) {
    *slash = 0;
    int nfd = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0 && errno == ENOENT) {
      snprintf(sofar + strlen(sofar), sizeof sofar - strlen(sofar), "%s%s", *sofar ? "/" : "", p);
      if (mkdirat(fd, p, 0700) < 0 || dir_record(b, sofar, 0755) < 0) {
        int e = errno;
        close(fd);
        *slash = '/';
        return cf_fail(e, "mkdir %s/%s: %s", b->root, sofar, strerror(e));
      }
      nfd = openat(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } else if (nfd >= 0) {
      snprintf(sofar + strlen(sofar), sizeof sofar - strlen(sofar), "%s%s", *sofar ? "/" : "", p);
    }
    int e = errno;
    close(fd);
    *slash = '/';
    if (nfd < 0)
      return cf_fail(e == ENOTDIR ? ELOOP : e, "'%s': %s", rel,
                     e == ELOOP || e == ENOTDIR ? "goes through a symlink or a file" : strerror(e));
    fd = nfd;
    p = slash + 1;
  }
  *base = p;
  return fd;
}

/* Write the data of the current member to fd (sparse blocks at their offsets). */
static int tar_data(struct archive *a, int fd, const char *name, uint64_t *bytes)
{
  const void *buf;
  size_t size;
  la_int64_t off;
  int r;
  la_int64_t end = 0;
  while ((r = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
    if (size && cf_pwrite_full(fd, buf, size, (uint64_t)off) < 0)
      return cf_fail(errno, "write %s: %m", name);
    end = off + (la_int64_t)size;
    *bytes += size;
  }
  if (r != ARCHIVE_EOF)
    return cf_fail(EIO, "member '%s': %s", name, archive_error_string(a));
  (void)end;
  return 0;
}

static int tar_member(struct build *b, struct archive *a, struct archive_entry *e)
{
  char rel[PATH_MAX];
  const char *pname = archive_entry_pathname(e);
  if (!pname)
    return cf_fail(EINVAL, "a member without a name");
  if (member_name(pname, rel, sizeof rel) < 0)
    return -1;
  if (!*rel)
    return 0; /* "./": the top, ours */
  const char *last = strrchr(rel, '/');
  last = last ? last + 1 : rel;
  if (strncmp(last, ".wh.", 4) == 0) {
    b->st->whiteouts++;
    return 0;
  }
  const char *base;
  int pfd = open_parent(b, rel, &base);
  if (pfd < 0)
    return -1;
  int r = 0;
  mode_t mode = archive_entry_perm(e) & 07777;
  const char *hl = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  if (hl) {
    char trel[PATH_MAX];
    const char *tbase;
    if (member_name(hl, trel, sizeof trel) < 0) {
      r = -1;
    } else {
      int tfd = open_parent(b, trel, &tbase);
      if (tfd < 0) {
        r = -1;
      } else {
        unlinkat(pfd, base, 0);
        if (linkat(tfd, tbase, pfd, base, 0) < 0)
          r = cf_fail(errno, "member '%s': link to '%s': %m", pname, hl);
        else
          b->st->hardlinks++;
        close(tfd);
      }
    }
  } else if (type == AE_IFDIR) {
    if (mkdirat(pfd, base, 0700) == 0) {
      r = dir_record(b, rel, mode);
    } else if (errno == EEXIST) {
      /* Seen before (made as a parent or listed twice): its mode is this. */
      for (size_t i = b->ndirs; i-- > 0;)
        if (strcmp(b->dirs[i].rel, rel) == 0) {
          b->dirs[i].mode = mode & ~(mode_t)S_ISUID;
          break;
        }
      struct stat st;
      if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        r = cf_fail(EEXIST, "member '%s': exists and is not a directory", pname);
    } else {
      r = cf_fail(errno, "member '%s': mkdir: %m", pname);
    }
  } else if (type == AE_IFLNK) {
    const char *t = archive_entry_symlink(e);
    unlinkat(pfd, base, 0);
    if (!t || symlinkat(t, pfd, base) < 0)
      r = cf_fail(t ? errno : EINVAL, "member '%s': symlink: %m", pname);
    else
      b->st->symlinks++;
  } else if (type == AE_IFREG) {
    unlinkat(pfd, base, 0); /* a later member of one name wins, as tar does */
    int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      r = cf_fail(errno, "member '%s': create: %m", pname);
    } else {
      uint64_t bytes = 0;
      r = tar_data(a, fd, pname, &bytes);
      la_int64_t size = archive_entry_size(e);
      if (r == 0 && size > 0 && ftruncate(fd, size) < 0)
        r = cf_fail(errno, "member '%s': truncate: %m", pname);
      if (r == 0 && fchmod(fd, mode & 0777) < 0)
        r = cf_fail(errno, "member '%s': chmod: %m", pname);
      close(fd);
      if (r == 0) {
        b->st->files[CF_CLONE_READWRITE]++;
        b->st->bytes[CF_CLONE_READWRITE] += (uint64_t)(size > 0 ? size : 0);
        progress(b, bytes);
      }
    }
  } else {
    b->st->skipped++; /* devices, FIFOs, sockets: a sandbox opens none of them */
  }
  close(pfd);
  return r;
}

static int build_tar(struct build *b, const char *path)
{
  struct archive *a = archive_read_new();
  if (!a)
    return cf_fail(ENOMEM, "out of memory");
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  int r = 0;
  struct stat st;
  if (stat(path, &st) == 0)
    b->total = (uint64_t)st.st_size;
  if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
    r = cf_fail(archive_errno(a) > 0 ? archive_errno(a) : EINVAL, "%s: %s", path, archive_error_string(a));
  } else {
    struct archive_entry *e;
    int ar;
    while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN)
      if ((r = tar_member(b, a, e)) < 0) {
        cf_fail(errno, "%s: %s", path, cf_error());
        break;
      }
    if (r == 0 && ar != ARCHIVE_EOF)
      r = cf_fail(EINVAL, "%s: %s", path, archive_error_string(a));
  }
  archive_read_free(a);
  return r;
}

/* ---- the build itself ---- */

static int put_driver(struct build *b)
{
  char rel[] = "usr/lib/cowfork/driver.py";
  const char *base;
  int pfd = open_parent(b, rel, &base);
  if (pfd < 0)
    return 0; /* a tar root whose /usr/lib is a symlink: no driver */
  int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  int e = errno;
  close(pfd);
  if (fd < 0)
    return e == EEXIST ? 0 : cf_fail(e, "create %s/%s: %s", b->root, rel, strerror(e));
  int r = cf_pwrite_full(fd, cf_root_driver_py, cf_root_driver_py_len, 0) < 0 || fchmod(fd, 0644) < 0 ? -1 : 0;
  e = errno;
  close(fd);
  if (r < 0)
    return cf_fail(e, "write %s/%s: %s", b->root, rel, strerror(e));
  b->st->driver = true;
  return 0;
}

static int write_info(struct build *b, const struct cf_root_source *src)
{
  char from[1024] = "";
  if (src->kind == CF_ROOT_PACKAGES) {
    for (size_t i = 0; i < src->npackages; i++) {
      size_t l = strlen(from);
      snprintf(from + l, sizeof from - l, "%s%s", l ? " " : "", src->packages[i]);
    }
  } else {
    snprintf(from, sizeof from, "%s", src->path);
  }
  for (char *p = from; *p; p++)
    if (*p == '\n')
      *p = ' ';
  static const char *const kinds[] = {"packages", "dir", "tar"};
  char buf[4096];
  const struct cf_root_stats *s = b->st;
  int n = snprintf(buf, sizeof buf,
                   "source %s\nfrom %s\ncreated %lld\npackages %llu\nreflink %llu %llu\nhardlink %llu %llu\n"
                   "copy_file_range %llu %llu\nread/write %llu %llu\ndirs %llu\nsymlinks %llu\nhardlinks %llu\n"
                   "skipped %llu\nwhiteouts %llu\ndriver %d\nseconds %.3f\n",
                   kinds[src->kind], from, (long long)time(NULL), (unsigned long long)s->packages,
                   (unsigned long long)s->files[0], (unsigned long long)s->bytes[0], (unsigned long long)s->files[1],
                   (unsigned long long)s->bytes[1], (unsigned long long)s->files[2], (unsigned long long)s->bytes[2],
                   (unsigned long long)s->files[3], (unsigned long long)s->bytes[3], (unsigned long long)s->dirs,
                   (unsigned long long)s->symlinks, (unsigned long long)s->hardlinks, (unsigned long long)s->skipped,
                   (unsigned long long)s->whiteouts, s->driver, s->seconds);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/info", b->top);
  int fd = cf_private_open(path, O_WRONLY | O_EXCL);
  if (fd < 0)
    return -1;
  int r = cf_pwrite_full(fd, buf, (size_t)n, 0);
  int e = errno;
  if (r == 0 && fchmod(fd, CF_MODE_RO) < 0)
    r = -1, e = errno;
  close(fd);
  return r < 0 ? cf_fail(e, "write %s: %s", path, strerror(e)) : 0;
}

int cf_root_create(const char *roots, const char *name, const struct cf_root_source *src, struct cf_root_stats *st,
                   cf_progress_fn progress_fn, void *ctx)
{
  struct cf_root_stats local;
  if (!st)
    st = &local;
  memset(st, 0, sizeof *st);
  if (cf_root_check_name(name) < 0)
    return -1;
  if ((src->kind == CF_ROOT_DIR || src->kind == CF_ROOT_TAR) && (!src->path || !*src->path))
    return cf_fail(EINVAL, "no source path");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (strlen(roots) > PATH_MAX - 512)
    return cf_fail(ENAMETOOLONG, "roots directory path too long");
  /* ROOTS and any missing parent (the store itself, before its first
   * open), each private. */
  char mk[PATH_MAX];
  snprintf(mk, sizeof mk, "%s", roots);
  for (char *p = mk + 1;; p++)
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (access(mk, F_OK) < 0 && cf_private_mkdir(mk) < 0)
        return -1;
      if (!(*p = c))
        break;
    }
  char final[PATH_MAX];
  if (snprintf(final, sizeof final, "%s/%s", roots, name) >= (int)sizeof final)
    return cf_fail(ENAMETOOLONG, "path too long");
  if (access(final, F_OK) == 0)
    return cf_fail(EEXIST, "root '%s' exists already (cowfork root rm %s)", name, name);
  sweep_tmp(roots);
  if (src->kind == CF_ROOT_DIR) {
    struct stat sst;
    if (stat(src->path, &sst) < 0 || !S_ISDIR(sst.st_mode))
      return cf_fail(errno ? errno : ENOTDIR, "%s: not a directory", src->path);
  }

  struct build b = {.st = st, .rootfd = -1, .progress = progress_fn, .ctx = ctx};
  snprintf(b.top, sizeof b.top, "%s/.tmp-%.200s-XXXXXX", roots, name);
  if (!mkdtemp(b.top))
    return cf_fail(errno, "mkdtemp in %s: %m", roots);
  int ret = -1;
  snprintf(b.root, sizeof b.root, "%s/root", b.top);
  if (mkdir(b.root, 0700) < 0) {
    cf_fail(errno, "mkdir %s: %m", b.root);
    goto out;
  }
  if ((b.rootfd = open(b.root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
    cf_fail(errno, "open %s: %m", b.root);
    goto out;
  }
  int r = src->kind == CF_ROOT_PACKAGES ? build_packages(&b, src)
          : src->kind == CF_ROOT_DIR    ? walk_dir(&b, src->path, "")
                                        : build_tar(&b, src->path);
  if (r < 0 || put_driver(&b) < 0)
    goto out;
  for (size_t i = b.ndirs; i-- > 0;)
    if (fchmodat(b.rootfd, b.dirs[i].rel, b.dirs[i].mode, 0) < 0) {
      cf_fail(errno, "chmod %s/%s: %m", b.root, b.dirs[i].rel);
      goto out;
    }
  if (chmod(b.root, 0755) < 0) {
    cf_fail(errno, "chmod %s: %m", b.root);
    goto out;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  st->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (write_info(&b, src) < 0)
    goto out;
  int tfd = open(b.top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (tfd < 0 || syncfs(tfd) < 0) {
    int e = errno;
    if (tfd >= 0)
      close(tfd);
    cf_fail(e, "sync %s: %s", b.top, strerror(e));
    goto out;
  }
  close(tfd);
  if (renameat2(AT_FDCWD, b.top, AT_FDCWD, final, RENAME_NOREPLACE) < 0) {
    int e = errno;
    cf_fail(e == ENOTEMPTY ? EEXIST : e, "root '%s': %s", name,
            e == EEXIST || e == ENOTEMPTY ? "made meanwhile by another process" : strerror(e));
    goto out;
  }
  b.top[0] = 0;
  ret = cf_fsync_dir(roots);
out:;
  int e = errno;
  if (b.rootfd >= 0)
    close(b.rootfd);
  if (b.top[0])
    rm_at(AT_FDCWD, b.top);
  for (size_t i = 0; i < b.ndirs; i++)
    free(b.dirs[i].rel);
  free(b.dirs);
  strv_free(&b.pydirs);
  errno = e;
  return ret;
}

int cf_root_create_default(const char *roots, struct cf_root_stats *st, cf_progress_fn progress_fn, void *ctx)
{
  static const char *const pk[] = {"busybox-static", "python3", "python3-numpy"};
  struct cf_root_source src = {.kind = CF_ROOT_PACKAGES, .packages = pk, .npackages = 3, .optional = true};
  return cf_root_create(roots, CF_ROOT_DEFAULT, &src, st, progress_fn, ctx);
}

int cf_root_resolve(const char *roots, const char *spec, char *buf, size_t len, bool *built,
                    struct cf_root_stats *st, cf_progress_fn progress_fn, void *ctx)
{
  if (built)
    *built = false;
  if (!spec || !*spec)
    spec = CF_ROOT_DEFAULT;
  if (strchr(spec, '/')) {
    if (snprintf(buf, len, "%s", spec) >= (int)len)
      return cf_fail(ENAMETOOLONG, "path too long: %s", spec);
    return 0;
  }
  if (cf_root_check_name(spec) < 0)
    return -1;
  if (snprintf(buf, len, "%s/%s/root", roots, spec) >= (int)len)
    return cf_fail(ENAMETOOLONG, "path too long");
  if (access(buf, F_OK) == 0)
    return 0;
  if (strcmp(spec, CF_ROOT_DEFAULT) != 0)
    return cf_fail(ENOENT, "no root '%s' in %s (cowfork root ls; a host directory needs a '/': ./%s)", spec,
                   roots, spec);
  if (cf_root_create_default(roots, st, progress_fn, ctx) < 0 && errno != EEXIST)
    return -1;
  if (built)
    *built = true;
  return 0;
}

static void parse_info(struct cf_root_info *ri, char *text)
{
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = 0;
    char *v = strchr(line, ' ');
    if (!v)
      continue;
    *v++ = 0;
    unsigned long long a = 0, c = 0;
    sscanf(v, "%llu %llu", &a, &c);
    static const char *const m[] = {"reflink", "hardlink", "copy_file_range", "read/write"};
    for (int i = 0; i < 4; i++)
      if (strcmp(line, m[i]) == 0)
        ri->st.files[i] = a, ri->st.bytes[i] = c;
    if (!strcmp(line, "source"))
      snprintf(ri->source, sizeof ri->source, "%s", v);
    else if (!strcmp(line, "from"))
      snprintf(ri->from, sizeof ri->from, "%s", v);
    else if (!strcmp(line, "created"))
      ri->created = a;
    else if (!strcmp(line, "packages"))
      ri->packages = ri->st.packages = a;
    else if (!strcmp(line, "dirs"))
      ri->st.dirs = a;
    else if (!strcmp(line, "symlinks"))
      ri->st.symlinks = a;
    else if (!strcmp(line, "hardlinks"))
      ri->st.hardlinks = a;
    else if (!strcmp(line, "skipped"))
      ri->st.skipped = a;
    else if (!strcmp(line, "whiteouts"))
      ri->st.whiteouts = a;
    else if (!strcmp(line, "driver"))
      ri->st.driver = a != 0;
    else if (!strcmp(line, "seconds"))
      ri->st.seconds = strtod(v, NULL);
  }
}

static int cmp_info(const void *a, const void *b)
{
  return strcmp(((const struct cf_root_info *)a)->name, ((const struct cf_root_info *)b)->name);
}

int cf_root_list(const char *roots, struct cf_root_info **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  DIR *d = opendir(roots);
  if (!d)
    return errno == ENOENT ? 0 : cf_fail(errno, "%s: %m", roots);
  struct cf_root_info *v = NULL;
  size_t cnt = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || cf_root_check_name(de->d_name) < 0)
      continue;
    struct cf_root_info *nv = realloc(v, (cnt + 1) * sizeof *nv);
    if (!nv) {
      free(v);
      closedir(d);
      return cf_fail(ENOMEM, "out of memory");
    }
    v = nv;
    struct cf_root_info *ri = &v[cnt++];
    memset(ri, 0, sizeof *ri);
    snprintf(ri->name, sizeof ri->name, "%s", de->d_name);
    char path[PATH_MAX], text[8192];
    snprintf(path, sizeof path, "%s/%s/info", roots, de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t r = read(fd, text, sizeof text - 1);
      close(fd);
      text[r > 0 ? r : 0] = 0;
      parse_info(ri, text);
    }
  }
  closedir(d);
  if (cnt)
    qsort(v, cnt, sizeof *v, cmp_info);
  *out = v;
  *n = cnt;
  return 0;
}

int cf_root_remove(const char *roots, const char *name)
{
  if (cf_root_check_name(name) < 0)
    return -1;
  char path[PATH_MAX], gone[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", roots, name);
  snprintf(gone, sizeof gone, "%s/.rm-%.200s-%d-%lld", roots, name, (int)getpid(), (long long)time(NULL));
  if (rename(path, gone) < 0)
    return cf_fail(errno, "root '%s': %s", name, errno == ENOENT ? "no such root" : strerror(errno));
  cf_fsync_dir(roots);
  if (rm_at(AT_FDCWD, gone) < 0)
    return cf_fail(errno, "removing %s: %m", gone);
  return 0;
}
