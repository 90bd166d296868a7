/* cowfork daemon: a REST API (HTTP/1.1 + JSON on a Unix socket, optionally
 * loopback TCP with a bearer token) over templates and live sandboxes.
 * docs/daemon.md describes the API, the request protocol and the model.
 *
 * Objects (all in struct daemon, guarded by d->lock):
 *   tmpl   an opened template (cf_template), cached by name; "inflight"
 *          counts queued jobs that will fork from it.
 *   sbx    a sandbox record: running (a live VM paused at a read of fd 0,
 *          waiting for the next exec), paused (saved as the internal
 *          template "_ID-pN" in the store, no VM), exited (its program
 *          ended; the record stays until DELETE) or lost (it was running
 *          when a previous daemon died). refs counts the jobs naming it;
 *          a deleted record is freed when the last one is done.
 *   job    one unit of work on a worker thread: fork, exec, branch, pause,
 *          resume, delete, template create.
 *
 * Threads. libmicrohttpd's one internal polling thread (epoll) parses
 * requests and answers the cheap routes (health, metrics, lists, gets,
 * template delete) itself. Everything that runs or saves a sandbox is a job:
 * the connection is suspended, the job queued, and one of `workers` threads
 * runs it and resumes the connection with the answer. A sandbox belongs to
 * one thread at a time (shim.h): a worker takes the first queued job whose
 * sandbox is not busy, marks it busy and runs it without d->lock, so jobs
 * on one sandbox run in arrival order and jobs on different sandboxes run
 * in parallel. A live sandbox's VM stays in this process (a VM belongs to
 * the mm that created it); between execs it costs its private pages plus
 * the kernel's VM state, not a thread.
 *
 * The exec loop. A sandbox is a child of its template forked with
 * opts.branch: it pauses at every read of fd 0 that finds no input left.
 * Its stdin, stdout and stderr are memfds the daemon owns (the shim's
 * copies are dups, sharing the file offset). An exec truncates them,
 * writes the input into stdin, and continues the sandbox
 * (cf_sandbox_run_until after a pause) until it pauses again (the answer is
 * what it wrote) or ends.
 *
 * Durability. STORE/daemon/state.json maps sandbox ids to their state and
 * templates. It is rewritten (temp file, fsync, rename, directory fsync)
 * before any change of the set of sandboxes or of a sandbox's state is
 * acknowledged; concurrent writers share one write (persist(): a
 * generation counter). At start, records that say running become lost
 * (their VMs died with the old process); paused ones are resumable, their
 * templates being in the store. Internal templates no record and no user
 * template names are removed at start (a crash between saving a pause and
 * recording it leaves one). A clean stop (SIGTERM) pauses every running
 * sandbox first, so a restart loses nothing. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/daemon.h"
#include "cowfork/error.h"
#include "cowfork/extfs.h"
#include "cowfork/overlay.h"
#include "cowfork/image.h"
#include "cowfork/root.h"
#include "cowfork/mem.h"
#include "cowfork/netpolicy.h"
#include "cowfork/store.h"
#include "cowfork/uffd.h"
#include "daemon/util.h"
#include "internal.h"

/* Threads alive at once in a daemon's sandbox (cf_sandbox_opts.max_threads):
 * its fd budget counts their vCPUs and wake fds. */
#define SBX_MAX_THREADS 31u
#define FD_SBX_THREADS (CF_SANDBOX_THREAD_FDS * (SBX_MAX_THREADS - 1))
/* Processes alive at once in a daemon's sandbox (cf_sandbox_opts.max_pids):
 * each beyond the first holds CF_SANDBOX_PROC_FDS host fds (its VM, vCPU,
 * root, wake fd); their open files share the sandbox's max_files (the shim
 * counts host fds across its processes: ENFILE past it) and their threads
 * its SBX_MAX_THREADS. */
#define SBX_MAX_PIDS 16u
/* POST /v1/templates "disk": at most this (a sandbox's disk is sparse, but
 * libext2fs keeps its block bitmap in memory: 32 KiB per GiB). */
#define MAX_DISK (64ull << 30)
#define FD_SBX_PROCS (CF_SANDBOX_PROC_FDS * (SBX_MAX_PIDS - 1))

enum st { ST_RUNNING, ST_PAUSED, ST_EXITED, ST_LOST };
static const char *const st_name[] = {"running", "paused", "exited", "lost"};

struct tmpl {
  struct tmpl *next;
  char name[256];
  char parent[256];
  struct cf_template *t;
  uint64_t mem_size, stored_bytes, own_bytes;
  double created;
  int inflight;
  char sock[108]; /* uffd listener of its image, "" when none */
  struct cf_image *uimg;
};

struct sbx {
  struct sbx *next;
  char id[32];
  enum st state;
  char origin[256]; /* the template it was created from */
  char cur[256];    /* the template its memory comes from: origin or its last pause */
  unsigned gen;     /* pauses so far */
  const struct cf_mem_backend *be;
  struct tmpl *t;   /* cur's cache entry while running */
  struct cf_sandbox *box;
  struct cf_sandbox_opts o;
  int in, out, err;
  int refs;
  bool busy, gone, pending_live; /* pending_live: counted in d->live before its VM exists */
  bool stop_pause;               /* a pause at shutdown was queued for it */
  int pause_err;                 /* errno of its last failed pause, 0 after a pause */
  bool parked;                   /* idle without a VM (sbx_park; atomic: set by the worker) */
  bool unparkable;               /* parking was refused (the uffd backend): keeps its VM */
  double created, last;
  uint64_t execs, private_bytes, mem_size;
  int status;
  char why[256];
  struct cf_net_policy net; /* its "net" (s->o.net points here unless none) */
};

/* A forwarded port (POST /v1/sandboxes/ID/ports): a host Unix socket at
 * path whose connections the thread th accepts and queues on the sandbox's
 * listener on port (cf_sandbox_net_accept). */
struct fwd {
  struct fwd *next;
  struct daemon *d;
  char id[32];
  unsigned port;
  int lfd;
  char path[PATH_MAX];
  pthread_t th;
};

struct daemon;
struct req {
  struct daemon *d;
  struct MHD_Connection *c;
  bool tcp, too_big, ready, suspended;
  char *body;
  size_t len, cap;
  int pending;
  int status;
  json_t *out;
  /* POST /v1/sandboxes */
  struct sbx **made;
  unsigned nmade;
};

enum jk { J_CREATE, J_EXEC, J_BRANCH, J_PAUSE, J_RESUME, J_DELETE, J_TEMPLATE };
struct job {
  struct job *next;
  enum jk k;
  struct req *r; /* NULL: no one waits (pauses at shutdown) */
  struct sbx *s;
  struct tmpl *t;
  json_t *args;
};

#define NB 12
static const double bounds[NB] = {0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 10};
struct hist {
  uint64_t b[NB], n;
  double sum;
};

struct listener {
  struct daemon *d;
  bool tcp;
};

struct daemon {
  const struct cf_daemon_opts *o;
  struct cf_store *store;
  char statepath[PATH_MAX];
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct sbx *sbs;
  struct tmpl *tmpls;
  struct job *qhead, *qtail;
  unsigned qlen;
  bool stopping;
  bool trim_due; /* sandboxes were freed since the last malloc_trim */
  uint64_t trims;
  unsigned live; /* VMs: running sandboxes + forks and resumes under way */
  unsigned nsb;
  unsigned nreq; /* requests MHD has not completed */
  pthread_mutex_t flock;
  uint64_t gen, written;
  struct cf_uffd_server *uffd;
  unsigned nsock;
  uint64_t uffd_faults_ended;
  struct listener lu, lt;
  struct MHD_Daemon *mhd, *mhd_tcp;
  int lockfd; /* STORE/daemon/lock, held LOCK_EX for the daemon's life (cf_daemon_probe) */
  double t0;
  /* metrics */
  uint64_t forks, fork_failures, execs, exec_timeouts, exec_ended, pauses, resumes, branches, templates_made,
      deletes, lost_at_start, refused_capacity, refused_memory, http[6];
  /* the fd budget (fit_limits): RLIMIT_NOFILE, what a live sandbox may hold,
   * what is kept for connections, templates and the store */
  uint64_t fd_limit, fd_per_sandbox, fd_reserve;
  struct hist h_fork, h_exec, h_pause, h_resume;
  struct cf_net_policy ceiling; /* --net-ceiling */
  struct fwd *fwds;             /* under d->lock */
  pthread_mutex_t boxlock;      /* a forwarder's use of s->box against its free (sbx_drop_vm) */
  uint64_t forwarded, forward_refused;
};

static double now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double wall_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double thread_cpu_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void hist_add(struct hist *h, double v)
{
  for (int i = 0; i < NB; i++)
    if (v <= bounds[i])
      h->b[i]++;
  h->n++;
  h->sum += v;
}

static void logmsg(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(struct daemon *d, const char *fmt, ...)
{
  if (d->o->quiet)
    return;
  va_list ap;
  fputs("cowfork daemon: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* ---- JSON answers ---- */

static json_t *err_json(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *err_json(int status, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return json_pack("{s:s%,s:i}", "error", msg, strlen(msg), "code", status);
}

/* A job's answer (first error wins over later successes). Under d->lock. */
/* Private memory of the running sandboxes (what they changed of their
 * templates' pages, as of their last job). Under d->lock. */
static uint64_t live_private(struct daemon *d)
{
  uint64_t n = 0;
  for (struct sbx *s = d->sbs; s; s = s->next)
    if (s->state == ST_RUNNING)
      n += s->private_bytes;
  return n;
}

/* The status for a job that failed with errno e: a limit of this process
 * (fds: 429, memory or store space: 507) or anything else (500). */
static int fail_status(int e)
{
  if (e == EMFILE || e == ENFILE)
    return 429;
  if (e == ENOMEM || e == ENOSPC || e == EDQUOT)
    return 507;
  return 500;
}

/* Host fds this process holds (/proc/self/fd), -1 if unknown. */
static long host_fds(void)
{
  DIR *dir = opendir("/proc/self/fd");
  if (!dir)
    return -1;
  long n = 0;
  while (readdir(dir))
    n++;
  closedir(dir);
  return n - 3; /* ".", "..", the DIR's own */
}

static void req_set(struct req *r, int status, json_t *j)
{
  if (!r) {
    json_decref(j);
    return;
  }
  if (r->out && r->status >= 400) {
    json_decref(j);
    return;
  }
  json_decref(r->out);
  r->out = j;
  r->status = status;
}

static enum MHD_Result send_text(struct req *r, int status, char *text, size_t len, const char *ctype)
{
  struct daemon *d = r->d;
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  enum MHD_Result rc = MHD_queue_response(r->c, (unsigned)status, resp);
  MHD_destroy_response(resp);
  pthread_mutex_lock(&d->lock);
  int cls = status / 100;
  d->http[cls >= 1 && cls <= 5 ? cls : 0]++;
  pthread_mutex_unlock(&d->lock);
  return rc;
}

static enum MHD_Result send_json(struct req *r, int status, json_t *j)
{
  if (!j) {
    status = 500;
    j = err_json(500, "out of memory");
  }
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (!s)
    return MHD_NO;
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (t) {
    s = t;
    s[n++] = '\n';
    s[n] = 0;
  }
  return send_text(r, status, s, n, "application/json");
}

#define SEND_ERR(r, status, ...) send_json((r), (status), err_json((status), __VA_ARGS__))

/* ---- templates ---- */

static bool internal_name(const char *name) { return name[0] == '_'; }

static int check_tmpl_name(const char *name)
{
  char img[300];
  if (strlen(name) > 200 || !*name)
    return -1;
  snprintf(img, sizeof img, "%s.mem", name);
  return cf_store_check_name(img);
}

/* Whether a sandbox may run in the host directory root: always, unless the
 * daemon runs in its own new root, where only the directories it kept are
 * there (and "/" is that new root, holding the store: never). */
static bool root_visible(const struct daemon *d, const char *root)
{
  if (!d->o->visible)
    return true;
  for (size_t i = 0; i < d->o->nvisible; i++) {
    size_t n = strlen(d->o->visible[i]);
    if (strncmp(root, d->o->visible[i], n) == 0 && (root[n] == '/' || root[n] == 0) && strcmp(root, "/") != 0)
      return true;
  }
  return false;
}

#define ROOT_HIDDEN_HINT                                                                                        \
  "this daemon runs in its own mount namespace showing only the store and its roots: make a root with "      \
  "`cowfork root create NAME --from-dir DIR`, or start the daemon with --host-roots (unsafe)"

/* The cache entry of name, opening it if needed. Under d->lock. NULL with
 * cf_error() when there is no such template (errno ENOENT) or it is bad. */
static struct tmpl *tmpl_get(struct daemon *d, const char *name)
{
  for (struct tmpl *t = d->tmpls; t; t = t->next)
    if (strcmp(t->name, name) == 0)
      return t;
  if (check_tmpl_name(name) < 0)
    return cf_fail_null(EINVAL, "bad template name '%s'", name);
  char path[PATH_MAX];
  if (cf_template_path(d->store, name, path, sizeof path) < 0)
    return NULL;
  struct stat st;
  if (stat(path, &st) < 0)
    return cf_fail_null(ENOENT, "no template '%s'", name);
  struct cf_template *ct = cf_template_open(d->store, name);
  if (!ct)
    return NULL;
  struct tmpl *t = calloc(1, sizeof *t);
  if (!t) {
    cf_template_close(ct);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  snprintf(t->name, sizeof t->name, "%s", name);
  snprintf(t->parent, sizeof t->parent, "%s", cf_template_parent(ct));
  t->t = ct;
  t->mem_size = cf_template_mem_size(ct);
  t->created = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
  struct cf_header *h = cf_store_get_header(d->store, cf_template_image(ct));
  if (h) {
    struct cf_image_stats is;
    cf_image_stats(h, &is);
    t->stored_bytes = is.stored_bytes;
    t->own_bytes = is.own_bytes;
    cf_header_free(h);
  }
  t->next = d->tmpls;
  d->tmpls = t;
  return t;
}

/* Open every template in the store (lists and dependency checks need all of
 * them). Under d->lock. */
static void tmpl_scan(struct daemon *d)
{
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/templates", cf_store_dir(d->store));
  DIR *dp = opendir(dir);
  if (!dp)
    return;
  struct dirent *e;
  while ((e = readdir(dp))) {
    if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp."))
      continue;
    if (!tmpl_get(d, e->d_name))
      logmsg(d, "template %s: %s", e->d_name, cf_error());
  }
  closedir(dp);
}

static void tmpl_free(struct tmpl *t)
{
  cf_template_close(t->t);
  /* A uffd listener keeps its image until the server is freed. */
  free(t);
}

/* Why name cannot be removed ("" when it can). Under d->lock, after
 * tmpl_scan. Internal templates' parent links do not count (a pause
 * template is a branch of the previous one, which it does not need: images
 * are flattened). */
static bool tmpl_busy(struct daemon *d, const char *name, char *why, size_t len)
{
  for (struct sbx *s = d->sbs; s; s = s->next)
    if ((s->state == ST_RUNNING || s->state == ST_PAUSED || s->pending_live) && strcmp(s->cur, name) == 0) {
      snprintf(why, len, "sandbox %s (%s) uses it", s->id, st_name[s->state]);
      return true;
    }
  for (struct tmpl *t = d->tmpls; t; t = t->next) {
    if (strcmp(t->name, name) == 0 && t->inflight) {
      snprintf(why, len, "sandboxes are being started from it");
      return true;
    }
    if (!internal_name(t->name) && strcmp(t->parent, name) == 0) {
      snprintf(why, len, "template %s is a branch of it", t->name);
      return true;
    }
  }
  return false;
}

/* Remove a template's files and cache entry. Under d->lock. */
static int tmpl_remove(struct daemon *d, const char *name)
{
  char path[PATH_MAX];
  for (struct tmpl **pp = &d->tmpls; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->name, name) == 0) {
      struct tmpl *t = *pp;
      *pp = t->next;
      tmpl_free(t);
      break;
    }
  if (cf_template_path(d->store, name, path, sizeof path) < 0)
    return -1;
  if (unlink(path) < 0 && errno != ENOENT)
    return cf_fail(errno, "%s: %m", path);
  return cf_template_remove_images(d->store, name) < 0 ? -1 : 0;
}

/* Remove internal template name if nothing needs it any more, then its
 * internal parent the same way. Under d->lock. */
static void tmpl_gc(struct daemon *d, const char *name)
{
  char cur[256], why[300];
  snprintf(cur, sizeof cur, "%s", name);
  while (cur[0] && internal_name(cur)) {
    if (tmpl_busy(d, cur, why, sizeof why))
      return;
    char parent[256] = "";
    struct tmpl *t = tmpl_get(d, cur);
    if (t)
      snprintf(parent, sizeof parent, "%s", t->parent);
    if (tmpl_remove(d, cur) < 0)
      logmsg(d, "removing template %s: %s", cur, cf_error());
    snprintf(cur, sizeof cur, "%s", parent);
  }
}

/* The uffd page server's socket for t's image (one listener per template).
 * Under d->lock. */
static const char *tmpl_uffd(struct daemon *d, struct tmpl *t)
{
  if (t->sock[0])
    return t->sock;
  if (!d->uffd && !(d->uffd = cf_seccomp_uffd_server_new(NULL, NULL)))
    return NULL;
  if (!(t->uimg = cf_image_open(d->store, cf_template_image(t->t))))
    return NULL;
  char sock[108];
  snprintf(sock, sizeof sock, "/tmp/cowfork-daemon.%d.%u.sock", (int)getpid(), d->nsock++);
  struct cf_uffd_opts uo = {0};
  if (cf_uffd_server_listen(d->uffd, sock, t->uimg, &uo) < 0)
    return NULL; /* the image stays open: the server may hold it */
  snprintf(t->sock, sizeof t->sock, "%s", sock);
  return t->sock;
}

/* Whether a template name is taken: its state file, or an image NAME.mem
 * (a save that did not finish, or an image of that name), with why. Checked
 * before anything runs; the save checks again. */
static bool name_taken(struct daemon *d, const char *name, char *why, size_t len)
{
  char path[PATH_MAX];
  if (cf_template_path(d->store, name, path, sizeof path) == 0 && access(path, F_OK) == 0) {
    snprintf(why, len, "template %s exists (templates are immutable)", name);
    return true;
  }
  for (int k = 0; k < 2; k++) { /* its memory, its disk */
    const char *ext = k ? "disk" : "mem";
    snprintf(path, sizeof path, "%s/images/%s.%s", cf_store_dir(d->store), name, ext);
    if (access(path, F_OK) == 0) {
      snprintf(why, len, "an image named %s.%s exists (a save that did not finish? `cowfork image rm %s.%s`)",
               name, ext, name, ext);
      return true;
    }
  }
  return false;
}

/* ---- what a crash of this daemon leaves in the store ---- *
 *
 * Saving a template (a branch, POST /v1/templates) writes a layer in tmp/,
 * then the image NAME.mem, then the state file templates/NAME. A crash
 * (kill -9) in between leaves an image without a template: the name is
 * taken (409) but no template exists to delete (404). So the daemon records
 * its intent, STORE/daemon/saving/NAME, before it saves and removes it
 * after; at start, an intent whose template never came means its image and
 * temp state file are debris of this daemon's and go. Pause templates
 * ("_ID-pN") are the daemon's alone: their image without a state file goes
 * too. Temp files in tmp/ go with cf_store_gc (under the store's exclusive
 * lock, so never one a live writer holds). */
static void intent_path(struct daemon *d, const char *name, char *buf, size_t len)
{
  snprintf(buf, len, "%s/daemon/saving/%s", cf_store_dir(d->store), name);
}

static int intent_begin(struct daemon *d, const char *name)
{
  char path[PATH_MAX], dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/daemon/saving", cf_store_dir(d->store));
  if (cf_private_mkdir(dir) < 0)
    return -1;
  intent_path(d, name, path, sizeof path);
  int fd = cf_private_open(path, O_WRONLY);
  if (fd < 0)
    return -1;
  close(fd);
  return cf_fsync_dir(dir);
}

static void intent_end(struct daemon *d, const char *name)
{
  char path[PATH_MAX];
  intent_path(d, name, path, sizeof path);
  unlink(path);
}

/* The image of template name (and its working set and temp state files),
 * when the template's state file does not exist. */
static void drop_half_template(struct daemon *d, const char *name)
{
  char path[PATH_MAX];
  if (check_tmpl_name(name) < 0 || cf_template_path(d->store, name, path, sizeof path) < 0 ||
      access(path, F_OK) == 0)
    return;
  int gone = cf_template_remove_images(d->store, name);
  if (gone > 0)
    logmsg(d, "removed %s.mem%s: the image of a template whose save did not finish", name,
           gone > 1 ? " and its other processes' images" : "");
  else if (gone < 0)
    logmsg(d, "removing %s.mem: %s", name, cf_error());
  /* cf_write_file_atomic's temp name: templates/.NAME.XXXXXX */
  snprintf(path, sizeof path, "%s/templates", cf_store_dir(d->store));
  DIR *dp = opendir(path);
  if (!dp)
    return;
  size_t n = strlen(name);
  struct dirent *e;
  while ((e = readdir(dp)))
    if (e->d_name[0] == '.' && strncmp(e->d_name + 1, name, n) == 0 && e->d_name[n + 1] == '.' &&
        strlen(e->d_name) == n + 8)
      unlinkat(dirfd(dp), e->d_name, 0);
  closedir(dp);
}

static void sweep_own(struct daemon *d)
{
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/daemon/saving", cf_store_dir(d->store));
  DIR *dp = opendir(path);
  struct dirent *e;
  if (dp) {
    while ((e = readdir(dp))) {
      if (e->d_name[0] == '.')
        continue;
      drop_half_template(d, e->d_name);
      unlinkat(dirfd(dp), e->d_name, 0);
    }
    closedir(dp);
  }
  snprintf(path, sizeof path, "%s/images", cf_store_dir(d->store));
  if ((dp = opendir(path))) {
    char names[64][256];
    int n = 0;
    while ((e = readdir(dp)) && n < 64) {
      size_t len = strlen(e->d_name);
      if (e->d_name[0] == '_' && len < 256 && cf_template_of_image(e->d_name, names[n], sizeof names[n]) == 0 &&
          strcmp(e->d_name + len - 4, ".mem") == 0) /* NAME.mem: its others (NAME.mem.PID) go with it */
        n++;
    }
    closedir(dp);
    for (int i = 0; i < n; i++)
      drop_half_template(d, names[i]);
  }
  snprintf(path, sizeof path, "%s/daemon", cf_store_dir(d->store));
  if ((dp = opendir(path))) {
    while ((e = readdir(dp)))
      if (strncmp(e->d_name, ".state.json.", 12) == 0 || strncmp(e->d_name, ".socket.", 8) == 0)
        unlinkat(dirfd(dp), e->d_name, 0);
    closedir(dp);
  }
  struct cf_gc_stats st;
  if (cf_store_gc(d->store, &st) < 0)
    logmsg(d, "store gc at start: %s", cf_error());
  else if (st.tmp_removed || st.layers_removed)
    logmsg(d, "removed %llu temp files and %llu unused layers (%llu bytes) left by an interrupted write",
           (unsigned long long)st.tmp_removed, (unsigned long long)st.layers_removed,
           (unsigned long long)st.bytes_removed);
}

/* ---- sandbox records and the state file ---- */

static struct sbx *sbx_find(struct daemon *d, const char *id)
{
  for (struct sbx *s = d->sbs; s; s = s->next)
    if (strcmp(s->id, id) == 0)
      return s;
  return NULL;
}

static void sbx_close_io(struct sbx *s)
{
  int *fds[3] = {&s->in, &s->out, &s->err};
  for (int i = 0; i < 3; i++)
    if (*fds[i] >= 0) {
      close(*fds[i]);
      *fds[i] = -1;
    }
}

static struct sbx *sbx_new(struct daemon *d)
{
  struct sbx *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  uint8_t rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
    free(s);
    return NULL;
  }
  snprintf(s->id, sizeof s->id, "sb-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
           rnd[5], rnd[6], rnd[7]);
  s->in = s->out = s->err = -1;
  s->created = s->last = wall_s();
  s->be = &cf_mem_backend_file;
  s->next = d->sbs;
  d->sbs = s;
  d->nsb++;
  return s;
}

/* Unlink s from the list; freed once no job names it. Under d->lock. */
static void sbx_unlink(struct daemon *d, struct sbx *s)
{
  for (struct sbx **pp = &d->sbs; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      d->nsb--;
      break;
    }
  s->gone = true;
}

static void sbx_unref(struct sbx *s)
{
  if (--s->refs == 0 && s->gone) {
    cf_sandbox_free(s->box);
    sbx_close_io(s);
    free(s);
  }
}

static json_t *state_json(struct daemon *d)
{
  json_t *arr = json_array();
  for (struct sbx *s = d->sbs; s; s = s->next) {
    if (s->pending_live && s->state == ST_RUNNING && !s->box)
      continue; /* a fork not yet acknowledged */
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:f,s:i,s:s,s:I}", "id", s->id, "state",
                                         st_name[s->state], "template", s->origin, "current", s->cur, "gen",
                                         (int)s->gen, "backend", s->be->name, "created", s->created, "status",
                                         s->status, "why", s->why, "mem_size", (json_int_t)s->mem_size));
  }
  return json_pack("{s:i,s:o}", "version", 1, "sandboxes", arr);
}


/* Make the state file say what memory says now. Call without d->lock; one
 * write covers every change made before it started (group commit). */
static int persist(struct daemon *d)
{
  pthread_mutex_lock(&d->lock);
  uint64_t mine = ++d->gen;
  pthread_mutex_unlock(&d->lock);
  pthread_mutex_lock(&d->flock);
  int rc = 0;
  if (d->written < mine) {
    pthread_mutex_lock(&d->lock);
    uint64_t g = d->gen;
    json_t *j = state_json(d);
    pthread_mutex_unlock(&d->lock);
    char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    json_decref(j);
    if (!text)
      rc = cf_fail(ENOMEM, "out of memory");
    else
      rc = cf_write_file_atomic(d->statepath, text, strlen(text), CF_MODE_FILE, false);
    free(text);
    if (rc == 0)
      d->written = g;
  }
  pthread_mutex_unlock(&d->flock);
  if (rc < 0)
    logmsg(d, "writing the state file: %s", cf_error());
  return rc;
}

static const char *jstr(json_t *o, const char *k)
{
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Read the state file of the previous daemon: running -> lost. */
static int load_state(struct daemon *d)
{
  json_error_t je;
  json_t *j = json_load_file(d->statepath, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    if (access(d->statepath, F_OK) != 0)
      return 0;
    return cf_fail(EINVAL, "%s: line %d: %s (move it away to start with no sandboxes)", d->statepath, je.line,
                   je.text);
  }
  json_t *arr = json_object_get(j, "sandboxes");
  if (json_integer_value(json_object_get(j, "version")) != 1 || !json_is_array(arr)) {
    json_decref(j);
    return cf_fail(EINVAL, "%s: not a version 1 daemon state file", d->statepath);
  }
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e)
  {
    const char *id = jstr(e, "id"), *state = jstr(e, "state"), *origin = jstr(e, "template"),
               *cur = jstr(e, "current"), *be = jstr(e, "backend"), *why = jstr(e, "why");
    int st = -1;
    for (int k = 0; state && k < 4; k++)
      if (strcmp(state, st_name[k]) == 0)
        st = k;
    if (!id || strlen(id) >= 32 || st < 0 || !origin || !cur || strlen(origin) > 200 || strlen(cur) > 200) {
      json_decref(j);
      return cf_fail(EINVAL, "%s: malformed entry %zu", d->statepath, i);
    }
    struct sbx *s = sbx_new(d);
    if (!s) {
      json_decref(j);
      return cf_fail(ENOMEM, "out of memory");
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    snprintf(s->cur, sizeof s->cur, "%s", cur);
    snprintf(s->why, sizeof s->why, "%s", why ? why : "");
    s->state = (enum st)st;
    s->gen = (unsigned)json_integer_value(json_object_get(e, "gen"));
    s->status = (int)json_integer_value(json_object_get(e, "status"));
    s->mem_size = (uint64_t)json_integer_value(json_object_get(e, "mem_size"));
    s->created = json_number_value(json_object_get(e, "created"));
    const struct cf_mem_backend *b = be ? cf_mem_backend_find(be) : NULL;
    s->be = b ? b : &cf_mem_backend_file;
    if (s->state == ST_RUNNING) {
      s->state = ST_LOST;
      snprintf(s->why, sizeof s->why, "it was running when the daemon stopped without pausing it");
      d->lost_at_start++;
    } else if (s->state == ST_PAUSED && !tmpl_get(d, s->cur)) {
      s->state = ST_LOST;
      if (snprintf(s->why, sizeof s->why, "its pause template is gone: %s", cf_error()) >= (int)sizeof s->why)
        s->why[sizeof s->why - 1] = 0;
      d->lost_at_start++;
    }
  }
  json_decref(j);
  return 0;
}

/* ---- jobs ---- */

static void enqueue(struct daemon *d, enum jk k, struct req *r, struct sbx *s, struct tmpl *t, json_t *args)
{
  struct job *j = calloc(1, sizeof *j);
  if (!j) {
    req_set(r, 500, err_json(500, "out of memory"));
    return;
  }
  j->k = k;
  j->r = r;
  j->s = s;
  j->t = t;
  j->args = json_incref(args);
  if (s)
    s->refs++;
  if (t)
    t->inflight++;
  if (r)
    r->pending++;
  if (d->qtail)
    d->qtail->next = j;
  else
    d->qhead = j;
  d->qtail = j;
  d->qlen++;
  pthread_cond_broadcast(&d->cond);
}

static struct job *dequeue(struct daemon *d)
{
  for (struct job **pp = &d->qhead, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
    struct job *j = *pp;
    if (j->s && j->s->busy)
      continue;
    *pp = j->next;
    if (d->qtail == j)
      d->qtail = prev;
    d->qlen--;
    if (j->s)
      j->s->busy = true;
    return j;
  }
  return NULL;
}

/* fd 0..2 of a live sandbox. */
static int sbx_open_io(struct sbx *s)
{
  s->in = memfd_create("cowfork-stdin", MFD_CLOEXEC);
  s->out = memfd_create("cowfork-stdout", MFD_CLOEXEC);
  s->err = memfd_create("cowfork-stderr", MFD_CLOEXEC);
  if (s->in < 0 || s->out < 0 || s->err < 0) {
    int e = errno;
    sbx_close_io(s);
    return cf_fail(e, "memfd_create: %s", strerror(e));
  }
  return 0;
}

/* An idle live sandbox gives its VM back (cf_sandbox_park) unless the
 * daemon runs with no_park; one that cannot be parked (the uffd backend)
 * keeps it (s->unparkable: not tried again). now: right after a job
 * (parks only with park_after 0; else the idle scan in worker() parks it
 * once it has been idle park_after seconds). The worker owns s->box. */
static void sbx_park(struct daemon *d, struct sbx *s, bool now)
{
  if (d->o->no_park || !s->box || (now && d->o->park_after > 0))
    return;
  if (cf_sandbox_park(s->box) < 0) {
    s->unparkable = true;
    if (errno != ENOTSUP)
      logmsg(d, "parking %s: %s", s->id, cf_error());
  }
  __atomic_store_n(&s->parked, cf_sandbox_is_parked(s->box), __ATOMIC_RELAXED);
}

/* With d->lock: a running sandbox idle for park_after seconds, not parked
 * yet, and no job on it (NULL: none; *next: when the next one is due, in
 * wall_s() time, or 0). */
static struct sbx *park_due(struct daemon *d, double *next)
{
  *next = 0;
  if (d->o->no_park || d->o->park_after <= 0 || d->stopping)
    return NULL;
  double now = wall_s();
  for (struct sbx *s = d->sbs; s; s = s->next) {
    if (s->state != ST_RUNNING || !s->box || s->busy || s->gone || s->unparkable ||
        __atomic_load_n(&s->parked, __ATOMIC_RELAXED))
      continue;
    double due = s->last + d->o->park_after;
    if (due <= now)
      return s;
    if (!*next || due < *next)
      *next = due;
  }
  return NULL;
}

/* Fork s from t (its cur). Without d->lock. */
static int sbx_fork(struct daemon *d, struct sbx *s, struct tmpl *t, double *secs)
{
  if (sbx_open_io(s) < 0)
    return -1;
  s->o = (struct cf_sandbox_opts){
      .stdio = {s->in, s->out, s->err}, .branch = true, .backend = s->be, .max_files = d->o->max_files,
      .max_threads = SBX_MAX_THREADS, .max_pids = SBX_MAX_PIDS, .net = cf_net_none(&s->net) ? NULL : &s->net};
  if (s->be == &cf_mem_backend_uffd) {
    pthread_mutex_lock(&d->lock);
    const char *sock = tmpl_uffd(d, t);
    pthread_mutex_unlock(&d->lock);
    if (!sock) {
      sbx_close_io(s);
      return -1;
    }
    s->o.uffd_socket = sock;
  }
  double t0 = now_s();
  s->box = cf_template_fork(t->t, &s->o);
  *secs = now_s() - t0;
  if (!s->box) {
    sbx_close_io(s);
    return -1;
  }
  sbx_park(d, s, true);
  return 0;
}

static pthread_mutex_t *g_boxlock; /* the daemon's boxlock (one daemon per process) */

static void sbx_drop_vm(struct sbx *s)
{
  if (g_boxlock)
    pthread_mutex_lock(g_boxlock);
  cf_sandbox_free(s->box);
  s->box = NULL;
  if (g_boxlock)
    pthread_mutex_unlock(g_boxlock);
  __atomic_store_n(&s->parked, false, __ATOMIC_RELAXED);
  s->t = NULL;
  sbx_close_io(s);
}

static json_t *sbx_json(struct daemon *d, struct sbx *s);

static void job_create(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  double secs;
  int rc = sbx_fork(d, s, j->t, &secs);
  pthread_mutex_lock(&d->lock);
  j->t->inflight--;
  if (rc < 0) {
    int code = fail_status(errno);
    d->fork_failures++;
    req_set(j->r, code, err_json(code, "fork of template %s: %s", j->t->name, cf_error()));
    d->live--;
    s->pending_live = false;
    sbx_unlink(d, s);
  } else {
    d->forks++;
    hist_add(&d->h_fork, secs);
    s->t = j->t;
    s->mem_size = j->t->mem_size;
    s->pending_live = false;
  }
  pthread_mutex_unlock(&d->lock);
}

/* Replace invalid UTF-8 (jansson refuses it) with U+FFFD. */
static json_t *text_json(const char *p, size_t n, bool *lossy)
{
  json_t *j = json_stringn(p, n);
  if (j) {
    *lossy = false;
    return j;
  }
  *lossy = true;
  char *q = malloc(n * 3 + 1);
  if (!q)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    size_t len = utf8_seq_len((const unsigned char *)p + i, n - i);
    if (len) {
      memcpy(q + k, p + i, len);
      k += len;
      i += len;
    } else {
      memcpy(q + k, "\xef\xbf\xbd", 3);
      k += 3;
      i++;
    }
  }
  j = json_stringn(q, k);
  free(q);
  return j;
}

/* The bytes a sandbox wrote to fd into o[key] (and key_base64 when they are
 * not UTF-8), at most max. */
static void put_output(json_t *o, const char *key, int fd, size_t max)
{
  struct stat st;
  size_t n = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
  bool trunc = n > max;
  if (trunc)
    n = max;
  char *buf = malloc(n + 1);
  ssize_t got = buf ? cf_pread_full(fd, buf, n, 0) : -1;
  if (got < 0)
    got = 0;
  bool lossy;
  json_object_set_new(o, key, text_json(buf ? buf : "", (size_t)got, &lossy));
  char k2[64];
  if (lossy) {
    char *b64 = base64_encode(buf, (size_t)got);
    snprintf(k2, sizeof k2, "%s_base64", key);
    json_object_set_new(o, k2, json_string(b64 ? b64 : ""));
    free(b64);
  }
  if (trunc) {
    snprintf(k2, sizeof k2, "%s_truncated", key);
    json_object_set_new(o, k2, json_true());
  }
  free(buf);
}

static int reset_fd(int fd)
{
  if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
    return cf_fail(errno, "memfd: %m");
  return 0;
}

static void job_exec(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  pthread_mutex_lock(&d->lock);
  enum st st = s->state;
  bool gone = s->gone;
  pthread_mutex_unlock(&d->lock);
  if (gone) {
    pthread_mutex_lock(&d->lock);
    req_set(j->r, 404, err_json(404, "no sandbox %s (deleted)", s->id));
    pthread_mutex_unlock(&d->lock);
    return;
  }
  if (st != ST_RUNNING) {
    pthread_mutex_lock(&d->lock);
    if (st == ST_EXITED)
      req_set(j->r, 409, err_json(409, "sandbox %s has exited (status %d)", s->id, s->status));
    else
      req_set(j->r, 409, err_json(409, "sandbox %s is %s%s", s->id, st_name[st],
                                  st == ST_PAUSED ? ": resume it first" : ""));
    pthread_mutex_unlock(&d->lock);
    return;
  }
  /* The input: "input" (a string) or "input_base64". */
  const char *in = jstr(j->args, "input");
  size_t inlen = in ? json_string_length(json_object_get(j->args, "input")) : 0;
  char *decoded = NULL;
  const char *b64 = jstr(j->args, "input_base64");
  if (b64) {
    if (!(decoded = base64_decode(b64, strlen(b64), &inlen))) {
      pthread_mutex_lock(&d->lock);
      req_set(j->r, 400, err_json(400, "input_base64 is not base64"));
      pthread_mutex_unlock(&d->lock);
      return;
    }
    in = decoded;
  }
  json_t *tv = json_object_get(j->args, "timeout"), *cv = json_object_get(j->args, "cpu_limit");
  s->o.timeout = tv ? json_number_value(tv) : d->o->default_timeout;
  s->o.cpu_limit = cv ? json_number_value(cv) : d->o->default_cpu_limit;
  struct cf_sandbox_result res;
  int rc = 0;
  if (reset_fd(s->in) < 0 || reset_fd(s->out) < 0 || reset_fd(s->err) < 0 ||
      (inlen && cf_pwrite_full(s->in, in, inlen, 0) < 0))
    rc = cf_fail(errno, "feeding the sandbox: %m");
  free(decoded);
  double t0 = now_s(), c0 = thread_cpu_s();
  if (rc == 0)
    rc = cf_sandbox_run_until(s->box, &res);
  double secs = now_s() - t0, cpu = thread_cpu_s() - c0;
  if (rc < 0) {
    pthread_mutex_lock(&d->lock);
    req_set(j->r, 500, err_json(500, "exec in %s: %s", s->id, cf_error()));
    pthread_mutex_unlock(&d->lock);
    return;
  }
  json_t *o = json_object();
  put_output(o, "output", s->out, d->o->max_output);
  put_output(o, "stderr", s->err, d->o->max_output);
  bool ended = !res.paused;
  json_object_set_new(o, "exit_code", ended ? json_integer(res.status) : json_null());
  json_object_set_new(o, "duration_ms", json_real(secs * 1e3));
  json_object_set_new(o, "cpu_ms", json_real(cpu * 1e3));
  json_object_set_new(o, "timed_out", json_boolean(res.timed_out));
  if (res.signal)
    json_object_set_new(o, "signal", json_integer(res.signal));
  if (res.report[0] && ended)
    json_object_set_new(o, "report", json_string(res.report));
  if (ended)
    sbx_drop_vm(s);
  else
    sbx_park(d, s, true);
  pthread_mutex_lock(&d->lock);
  s->execs++;
  s->last = wall_s();
  s->private_bytes = res.private_bytes;
  d->execs++;
  hist_add(&d->h_exec, secs);
  if (res.timed_out)
    d->exec_timeouts++;
  if (ended) {
    d->exec_ended++;
    d->trim_due = true;
    s->state = ST_EXITED;
    s->status = res.status;
    snprintf(s->why, sizeof s->why, "%s", res.timed_out ? "timed out" : res.signal ? "killed by a signal" : "exited");
    d->live--;
  }
  json_object_set_new(o, "state", json_string(st_name[s->state]));
  req_set(j->r, 200, o);
  pthread_mutex_unlock(&d->lock);
  if (ended)
    persist(d);
}

static bool sbx_check_running(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  pthread_mutex_lock(&d->lock);
  bool ok = !s->gone && s->state == ST_RUNNING && s->box;
  if (s->gone)
    req_set(j->r, 404, err_json(404, "no sandbox %s (deleted)", s->id));
  else if (!ok)
    req_set(j->r, 409, err_json(409, "sandbox %s is %s, not running", s->id, st_name[s->state]));
  pthread_mutex_unlock(&d->lock);
  return ok;
}

/* A fresh child has not reached its pause point yet (the template's pending
 * read is still to be served): serve it with nothing on stdin, so that it
 * pauses there again and can be saved. Output of a marker template's run
 * to its next marker is dropped. */
static int sbx_settle(struct sbx *s)
{
  if (cf_sandbox_is_paused(s->box))
    return 0;
  struct cf_sandbox_result res;
  s->o.timeout = 30;
  if (reset_fd(s->in) < 0 || cf_sandbox_run_until(s->box, &res) < 0)
    return -1;
  if (!res.paused)
    return cf_fail(ECHILD, "the program ended (status %d) before its pause point", res.status);
  reset_fd(s->out);
  reset_fd(s->err);
  return 0;
}

static json_t *save_json(const struct cf_save_stats *st)
{
  json_t *o = json_pack("{s:I,s:I,s:I,s:f}", "pages_stored", (json_int_t)st->pages_stored, "pages_zeroed",
                        (json_int_t)st->pages_zeroed, "state_bytes", (json_int_t)st->state_bytes, "save_ms",
                        st->save_ms);
  if (o && st->disk_bytes_stored) /* a sandbox with a disk: what NAME.disk stores itself */
    json_object_set_new(o, "disk_bytes_stored", json_integer((json_int_t)st->disk_bytes_stored));
  return o;
}

static void job_branch(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  if (!sbx_check_running(d, j))
    return;
  const char *name = jstr(j->args, "template");
  struct cf_save_stats st;
  int rc = sbx_settle(s);
  if (rc == 0)
    rc = intent_begin(d, name);
  int e = errno;
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", rc < 0 ? cf_error() : "");
  if (rc == 0) {
    rc = cf_sandbox_save(s->box, d->store, name, &st);
    e = errno;
    snprintf(msg, sizeof msg, "%s", rc < 0 ? cf_error() : "");
    if (rc < 0 && e != EEXIST)
      drop_half_template(d, name);
    intent_end(d, name);
  }
  sbx_park(d, s, true);
  pthread_mutex_lock(&d->lock);
  if (rc < 0) {
    int code = e == EEXIST ? 409 : 500;
    req_set(j->r, code, err_json(code, "branch of %s: %s", s->id, msg));
  } else {
    d->branches++;
    json_t *o = save_json(&st);
    json_object_set_new(o, "template", json_string(name));
    json_object_set_new(o, "parent", json_string(s->cur));
    json_object_set_new(o, "sandbox", json_string(s->id));
    tmpl_get(d, name);
    req_set(j->r, 201, o);
  }
  pthread_mutex_unlock(&d->lock);
}

static void job_pause(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  if (!sbx_check_running(d, j))
    return;
  char name[256];
  snprintf(name, sizeof name, "_%s-p%u", s->id, s->gen + 1);
  struct cf_save_stats st;
  double t0 = now_s();
  int rc = sbx_settle(s);
  if (rc == 0)
    rc = cf_sandbox_save(s->box, d->store, name, &st);
  if (rc < 0) {
    int e = errno;
    pthread_mutex_lock(&d->lock);
    s->pause_err = e ? e : EIO;
    req_set(j->r, 500, err_json(500, "pause of %s: %s", s->id, cf_error()));
    /* A save that failed part way may have stored the image: it is ours. */
    tmpl_remove(d, name);
    pthread_mutex_unlock(&d->lock);
    logmsg(d, "pause of %s: %s", s->id, cf_error());
    return;
  }
  pthread_mutex_lock(&d->lock);
  char old[256];
  snprintf(old, sizeof old, "%s", s->cur);
  snprintf(s->cur, sizeof s->cur, "%s", name);
  s->gen++;
  s->state = ST_PAUSED;
  tmpl_get(d, name);
  pthread_mutex_unlock(&d->lock);
  rc = persist(d);
  if (rc < 0) {
    /* The state file still says running, and a restart would drop the
     * pause template as unrecorded: the sandbox is not paused. It keeps its
     * VM and its old record; the pause template goes. */
    int e = errno;
    pthread_mutex_lock(&d->lock);
    snprintf(s->cur, sizeof s->cur, "%s", old);
    s->gen--;
    s->state = ST_RUNNING;
    s->pause_err = e ? e : EIO;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", cf_error());
    if (tmpl_remove(d, name) < 0)
      logmsg(d, "removing the unrecorded pause template %s: %s", name, cf_error());
    req_set(j->r, 500, err_json(500, "pause of %s: the state file: %s (the sandbox is still running)", s->id, msg));
    pthread_mutex_unlock(&d->lock);
    logmsg(d, "pause of %s: the state file: %s; it is still running", s->id, msg);
    return;
  }
  sbx_drop_vm(s);
  double secs = now_s() - t0;
  pthread_mutex_lock(&d->lock);
  s->pause_err = 0;
  d->live--;
  d->pauses++;
  d->trim_due = true;
  hist_add(&d->h_pause, secs);
  tmpl_gc(d, old);
  json_t *o = save_json(&st);
  json_object_set_new(o, "id", json_string(s->id));
  json_object_set_new(o, "state", json_string("paused"));
  json_object_set_new(o, "template", json_string(name));
  json_object_set_new(o, "pause_ms", json_real(secs * 1e3));
  req_set(j->r, 200, o);
  pthread_mutex_unlock(&d->lock);
}

static void job_resume(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  pthread_mutex_lock(&d->lock);
  struct tmpl *t = s->gone || s->state != ST_PAUSED ? NULL : tmpl_get(d, s->cur);
  if (!t) {
    if (s->gone)
      req_set(j->r, 404, err_json(404, "no sandbox %s (deleted)", s->id));
    else if (s->state != ST_PAUSED)
      req_set(j->r, 409, err_json(409, "sandbox %s is %s, not paused", s->id, st_name[s->state]));
    else
      req_set(j->r, 500, err_json(500, "resume of %s: %s", s->id, cf_error()));
    d->live--;
    s->pending_live = false;
    pthread_mutex_unlock(&d->lock);
    return;
  }
  t->inflight++;
  pthread_mutex_unlock(&d->lock);
  double secs, t0 = now_s();
  int rc = sbx_fork(d, s, t, &secs);
  pthread_mutex_lock(&d->lock);
  t->inflight--;
  s->pending_live = false;
  if (rc < 0) {
    int code = fail_status(errno);
    d->live--;
    req_set(j->r, code, err_json(code, "resume of %s: %s", s->id, cf_error()));
    pthread_mutex_unlock(&d->lock);
    return;
  }
  s->t = t;
  s->state = ST_RUNNING;
  d->forks++;
  hist_add(&d->h_fork, secs);
  pthread_mutex_unlock(&d->lock);
  rc = persist(d);
  secs = now_s() - t0;
  pthread_mutex_lock(&d->lock);
  d->resumes++;
  hist_add(&d->h_resume, secs);
  if (rc < 0) {
    req_set(j->r, 500, err_json(500, "resume of %s: the state file: %s", s->id, cf_error()));
  } else {
    json_t *o = sbx_json(d, s);
    json_object_set_new(o, "resume_ms", json_real(secs * 1e3));
    req_set(j->r, 200, o);
  }
  pthread_mutex_unlock(&d->lock);
}

static void job_delete(struct daemon *d, struct job *j)
{
  struct sbx *s = j->s;
  pthread_mutex_lock(&d->lock);
  if (s->gone) {
    req_set(j->r, 404, err_json(404, "no sandbox %s (deleted)", s->id));
    pthread_mutex_unlock(&d->lock);
    return;
  }
  bool had_vm = s->box != NULL;
  sbx_unlink(d, s);
  pthread_mutex_unlock(&d->lock);
  sbx_drop_vm(s);
  int rc = persist(d);
  pthread_mutex_lock(&d->lock);
  if (had_vm)
    d->live--;
  d->deletes++;
  d->trim_due = true;
  tmpl_scan(d);
  tmpl_gc(d, s->cur);
  if (rc < 0)
    req_set(j->r, 500, err_json(500, "delete of %s: the state file: %s", s->id, cf_error()));
  else
    req_set(j->r, 200, json_pack("{s:s,s:b}", "id", s->id, "deleted", 1));
  pthread_mutex_unlock(&d->lock);
}


/* POST /v1/templates: validated in the request thread. */
static void job_template(struct daemon *d, struct job *j)
{
  json_t *a = j->args;
  const char *name = jstr(a, "name"), *program = jstr(a, "program"), *root = jstr(a, "root"),
             *ready = jstr(a, "ready"), *hostname = jstr(a, "hostname"), *cwd = jstr(a, "cwd");
  json_t *args = json_object_get(a, "args"), *env = json_object_get(a, "env"), *mv = json_object_get(a, "mem");
  size_t nargs = json_array_size(args), nenv = json_array_size(env);
  char **argv = calloc(nargs + 2, sizeof *argv), **envp = NULL;
  const char **set = calloc(nenv + 2, sizeof *set);
  char pwd[PATH_MAX + 8];
  int out = memfd_create("cowfork-template-out", MFD_CLOEXEC);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  struct cf_sandbox *box = NULL;
  struct cf_overlay *disk_ov = NULL;
  int status = 500;
  json_t *o = NULL;
  if (!argv || !set || out < 0 || devnull < 0) {
    o = err_json(500, "out of resources: %s", strerror(errno));
    goto done;
  }
  argv[0] = (char *)program;
  for (size_t i = 0; i < nargs; i++)
    argv[i + 1] = (char *)json_string_value(json_array_get(args, i));
  /* The sandbox default (shim/env.c: PATH, HOME, LANG; no TERM: the
   * client's terminal is not the daemon's), PWD with "cwd", then "env",
   * never the daemon's. */
  size_t ns = 0;
  if (cwd) {
    snprintf(pwd, sizeof pwd, "PWD=%s", cwd);
    set[ns++] = pwd;
  }
  for (size_t i = 0; i < nenv; i++)
    set[ns++] = json_string_value(json_array_get(env, i));
  if (!(envp = cf_sandbox_env(set, ns, NULL, (int)getuid(), NULL))) {
    status = 400;
    o = err_json(400, "template %s: %s", name, cf_error());
    goto done;
  }
  uint64_t mem = 256ull << 20;
  if (json_is_string(mv))
    cf_parse_size(json_string_value(mv), &mem);
  else if (json_is_integer(mv))
    mem = (uint64_t)json_integer_value(mv);
  /* A root of the store by name ("default" when none is given, built here
   * on first use), or an absolute host directory. */
  char roots[PATH_MAX], rootdir[PATH_MAX];
  if (cf_roots_dir(cf_store_dir(d->store), roots, sizeof roots) < 0 ||
      cf_root_resolve(roots, root, rootdir, sizeof rootdir, NULL, NULL, NULL, NULL) < 0) {
    status = errno == ENOENT || errno == EINVAL ? 400 : 500;
    o = err_json(status, "template %s: root %s: %s", name, root ? root : CF_ROOT_DEFAULT, cf_error());
    goto done;
  }
  struct cf_sandbox_opts so = {.root = rootdir, .mem_size = mem, .program = program, .argv = argv,
                               .envp = envp, .stdio = {devnull, out, out}, .ready = CF_READY_STDIN,
                               .hostname = hostname, .max_threads = SBX_MAX_THREADS,
                               .max_pids = SBX_MAX_PIDS, .cwd = cwd};
  /* "disk": a new disk (its cache in the store's tmp/), saved as NAME.disk */
  json_t *dv = json_object_get(a, "disk");
  uint64_t disk = 0;
  if (json_is_string(dv))
    cf_parse_size(json_string_value(dv), &disk);
  else if (json_is_integer(dv))
    disk = (uint64_t)json_integer_value(dv);
  char cache[PATH_MAX];
  snprintf(cache, sizeof cache, "%s/tmp", cf_store_dir(d->store));
  if (disk && !(so.disk = disk_ov = cf_extfs_new_disk(disk, cache))) {
    o = err_json(500, "template %s: disk: %s", name, cf_error());
    goto done;
  }
  json_t *tv = json_object_get(a, "timeout");
  so.timeout = tv ? json_number_value(tv) : 60;
  if (ready && strcmp(ready, "stdin") != 0) {
    so.ready = CF_READY_MARKER;
    so.marker = ready;
  }
  struct cf_sandbox_result res;
  double t0 = now_s();
  if (!(box = cf_sandbox_new(&so)) || cf_sandbox_run_until(box, &res) < 0) {
    status = 400;
    o = err_json(400, "template %s: %s", name, cf_error());
    goto done;
  }
  if (!res.paused) {
    char tail[300] = "";
    struct stat st;
    if (fstat(out, &st) == 0) {
      off_t from = st.st_size > 256 ? st.st_size - 256 : 0;
      ssize_t n = pread(out, tail, 256, from);
      tail[n > 0 ? n : 0] = 0;
    }
    status = 400;
    o = err_json(400, "template %s: %s ended (status %d%s%s) before its ready point; its output ends: %s", name,
                 program, res.status, res.report[0] ? ": " : "", res.report, tail);
    goto done;
  }
  struct cf_save_stats st;
  if (intent_begin(d, name) < 0) {
    o = err_json(status, "template %s: %s", name, cf_error());
    goto done;
  }
  int src = cf_sandbox_save(box, d->store, name, &st), e = errno;
  if (src < 0) {
    status = e == EEXIST ? 409 : 500;
    o = err_json(status, "template %s: %s", name, cf_error());
    if (e != EEXIST)
      drop_half_template(d, name);
  }
  intent_end(d, name);
  if (src < 0)
    goto done;
  status = 201;
  o = save_json(&st);
  json_object_set_new(o, "name", json_string(name));
  json_object_set_new(o, "mem_size", json_integer((json_int_t)mem));
  json_object_set_new(o, "create_ms", json_real((now_s() - t0) * 1e3));
  put_output(o, "output", out, d->o->max_output);
done:
  cf_sandbox_free(box);
  cf_overlay_free(disk_ov);
  pthread_mutex_lock(&d->lock);
  if (status == 201) {
    d->templates_made++;
    tmpl_get(d, name);
  }
  req_set(j->r, status, o);
  pthread_mutex_unlock(&d->lock);
  free(argv);
  free(set);
  free(envp);
  if (out >= 0)
    close(out);
  if (devnull >= 0)
    close(devnull);
}

static void *worker(void *arg)
{
  struct daemon *d = arg;
  /* Every job serves guests: the filter from the start, not from the first
   * sandbox this worker happens to run (shim/seccomp.c). When it cannot be
   * installed, each job's cf_sandbox_run_until fails with the reason. */
  if (cf_seccomp_enter() < 0)
    logmsg(d, "%s", cf_error());
  pthread_mutex_lock(&d->lock);
  for (;;) {
    struct job *j = dequeue(d);
    if (!j) {
      if (d->stopping && !d->qhead)
        break;
      /* Nothing queued: park a sandbox that has been idle long enough, or
       * sleep until one will have been (or a job comes). */
      if (d->trim_due) {
        /* Sandboxes were freed and nothing is queued: give the free
         * memory of every malloc arena back to the kernel. A sandbox's
         * shim and VM structures are malloc'ed by whichever worker ran
         * it, in that thread's arena; freed, they leave holes glibc keeps
         * (it only trims the top of an arena), so without this the daemon
         * keeps the peak of its sandboxes' heap for good. */
        d->trim_due = false;
        pthread_mutex_unlock(&d->lock);
        malloc_trim(0);
        pthread_mutex_lock(&d->lock);
        d->trims++; /* counted once done: tests wait for it (daemon-memory) */
        continue;
      }
      double next;
      struct sbx *s = park_due(d, &next);
      if (s) {
        s->busy = true;
        s->refs++;
        pthread_mutex_unlock(&d->lock);
        sbx_park(d, s, false);
        pthread_mutex_lock(&d->lock);
        s->busy = false;
        sbx_unref(s);
        pthread_cond_broadcast(&d->cond); /* a job may have waited for it */
      } else if (next) {
        struct timespec ts = {(time_t)next, (long)((next - (double)(time_t)next) * 1e9)};
        pthread_cond_timedwait(&d->cond, &d->lock, &ts);
      } else {
        pthread_cond_wait(&d->cond, &d->lock);
      }
      continue;
    }
    pthread_mutex_unlock(&d->lock);
    switch (j->k) {
    case J_CREATE: job_create(d, j); break;
    case J_EXEC: job_exec(d, j); break;
    case J_BRANCH: job_branch(d, j); break;
    case J_PAUSE: job_pause(d, j); break;
    case J_RESUME: job_resume(d, j); break;
    case J_DELETE: job_delete(d, j); break;
    case J_TEMPLATE: job_template(d, j); break;
    }
    pthread_mutex_lock(&d->lock);
    struct req *r = j->r;
    bool wake = false;
    if (r && --r->pending == 0) {
      r->ready = true;
      wake = true;
    }
    if (j->s) {
      j->s->busy = false;
      sbx_unref(j->s);
    }
    json_decref(j->args);
    free(j);
    pthread_cond_broadcast(&d->cond);
    if (wake) {
      pthread_mutex_unlock(&d->lock);
      MHD_resume_connection(r->c);
      pthread_mutex_lock(&d->lock);
    }
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

/* ---- routes ---- */

static json_t *sbx_json(struct daemon *d, struct sbx *s)
{
  (void)d;
  double now = wall_s();
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:I,s:I},s:f,s:f,s:I,s:b}", "id", s->id, "state",
                        st_name[s->state], "template", s->origin, "current_template", s->cur, "backend",
                        s->be->name, "memory", "size", (json_int_t)s->mem_size, "private_bytes",
                        (json_int_t)(s->state == ST_RUNNING ? s->private_bytes : 0), "age_s", now - s->created,
                        "idle_s", now - s->last, "execs", (json_int_t)s->execs, "busy", s->busy);
  if (s->state == ST_RUNNING)
    json_object_set_new(o, "parked", json_boolean(__atomic_load_n(&s->parked, __ATOMIC_RELAXED)));
  if (s->state == ST_EXITED)
    json_object_set_new(o, "exit_code", json_integer(s->status));
  if (s->why[0])
    json_object_set_new(o, "why", json_string(s->why));
  char net[2048];
  cf_net_format(&s->net, net, sizeof net);
  json_object_set_new(o, "net", json_string(net));
  return o;
}

static json_t *tmpl_json(struct daemon *d, struct tmpl *t)
{
  int users = 0;
  for (struct sbx *s = d->sbs; s; s = s->next)
    users += (s->state == ST_RUNNING || s->state == ST_PAUSED) && strcmp(s->cur, t->name) == 0;
  json_t *kids = json_array();
  for (struct tmpl *u = d->tmpls; u; u = u->next)
    if (strcmp(u->parent, t->name) == 0)
      json_array_append_new(kids, json_string(u->name));
  json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:i,s:o,s:f,s:b}", "name", t->name, "parent", t->parent,
                        "image", cf_template_image(t->t), "mem_size", (json_int_t)t->mem_size, "stored_bytes",
                        (json_int_t)t->stored_bytes, "own_bytes", (json_int_t)t->own_bytes, "sandboxes", users,
                        "branches", kids, "created", t->created, "internal", internal_name(t->name));
  return o;
}

static char *metrics_text(struct daemon *d)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  unsigned by[4] = {0};
  uint64_t priv = 0, shared = 0;
  for (struct sbx *s = d->sbs; s; s = s->next) {
    by[s->state]++;
    if (s->state == ST_RUNNING) {
      priv += s->private_bytes;
      shared += s->t ? s->t->stored_bytes : 0;
    }
  }
  uint64_t faults = d->uffd_faults_ended, pages = 0;
  if (d->uffd)
    for (struct sbx *s = d->sbs; s; s = s->next) {
      uint64_t id = s->box && !s->busy ? cf_sandbox_uffd_client(s->box) : 0;
      struct cf_uffd_stats us;
      if (id && cf_uffd_server_stats(d->uffd, id, &us) == 0) {
        faults += us.faults;
        pages += us.pages_copied + us.pages_zeroed;
      }
    }
  unsigned ntmpl = 0;
  for (struct tmpl *t = d->tmpls; t; t = t->next)
    ntmpl += !internal_name(t->name);
  fprintf(f, "# HELP cowfork_sandboxes Sandboxes by state.\n# TYPE cowfork_sandboxes gauge\n");
  for (int i = 0; i < 4; i++)
    fprintf(f, "cowfork_sandboxes{state=\"%s\"} %u\n", st_name[i], by[i]);
  fprintf(f, "# HELP cowfork_live_sandboxes Sandboxes holding a VM (running, starting, resuming).\n"
             "# TYPE cowfork_live_sandboxes gauge\ncowfork_live_sandboxes %u\n"
             "# HELP cowfork_live_sandboxes_max The global cap (429 past it).\n"
             "# TYPE cowfork_live_sandboxes_max gauge\ncowfork_live_sandboxes_max %u\n",
          d->live, d->o->max_live);
  fprintf(f, "# HELP cowfork_templates Templates in the store (not counting pause templates).\n"
             "# TYPE cowfork_templates gauge\ncowfork_templates %u\n",
          ntmpl);
  struct {
    const char *name, *help;
    uint64_t v;
  } counters[] = {
      {"cowfork_forks_total", "Children forked from templates (creates and resumes).", d->forks},
      {"cowfork_fork_failures_total", "Forks that failed.", d->fork_failures},
      {"cowfork_execs_total", "Execs served.", d->execs},
      {"cowfork_exec_timeouts_total", "Execs ended by their timeout.", d->exec_timeouts},
      {"cowfork_exec_ended_total", "Execs after which the program had ended.", d->exec_ended},
      {"cowfork_pauses_total", "Sandboxes paused into the store.", d->pauses},
      {"cowfork_resumes_total", "Sandboxes resumed.", d->resumes},
      {"cowfork_branches_total", "Branch templates saved from sandboxes.", d->branches},
      {"cowfork_templates_created_total", "Templates created through the API.", d->templates_made},
      {"cowfork_deletes_total", "Sandboxes deleted.", d->deletes},
      {"cowfork_malloc_trims_total", "malloc_trim calls after sandboxes were freed (memory given back).", d->trims},
      {"cowfork_lost_at_start", "Sandboxes found lost when this daemon started.", d->lost_at_start},
      {"cowfork_capacity_refusals_total", "Requests refused with 429 (the sandbox cap, the job queue).",
       d->refused_capacity},
      {"cowfork_memory_refusals_total", "Creates and resumes refused with 507 (--max-memory).", d->refused_memory},
      {"cowfork_uffd_faults_total", "Page faults served by the uffd page server.", faults},
  };
  for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", counters[i].name, counters[i].help, counters[i].name,
            strcmp(counters[i].name, "cowfork_lost_at_start") == 0 ? "gauge" : "counter", counters[i].name,
            (unsigned long long)counters[i].v);
  (void)pages;
  fprintf(f, "# HELP cowfork_http_responses_total HTTP responses by status class.\n"
             "# TYPE cowfork_http_responses_total counter\n");
  for (int i = 1; i <= 5; i++)
    fprintf(f, "cowfork_http_responses_total{code=\"%dxx\"} %llu\n", i, (unsigned long long)d->http[i]);
  fprintf(f, "# HELP cowfork_memory_private_bytes Pages the running sandboxes wrote (their own).\n"
             "# TYPE cowfork_memory_private_bytes gauge\ncowfork_memory_private_bytes %llu\n"
             "# HELP cowfork_memory_shared_bytes Template pages mapped by running sandboxes, counted per "
             "sandbox (shared copy-on-write, stored once).\n"
             "# TYPE cowfork_memory_shared_bytes gauge\ncowfork_memory_shared_bytes %llu\n",
          (unsigned long long)priv, (unsigned long long)shared);
  fprintf(f, "# HELP cowfork_memory_max_bytes The cap on cowfork_memory_private_bytes (--max-memory; 507 past it).\n"
             "# TYPE cowfork_memory_max_bytes gauge\ncowfork_memory_max_bytes %llu\n"
             "# HELP cowfork_host_fds File descriptors this process holds.\n"
             "# TYPE cowfork_host_fds gauge\ncowfork_host_fds %ld\n"
             "# HELP cowfork_host_fds_max Its RLIMIT_NOFILE.\n"
             "# TYPE cowfork_host_fds_max gauge\ncowfork_host_fds_max %llu\n",
          (unsigned long long)d->o->max_memory, host_fds(), (unsigned long long)d->fd_limit);
  fprintf(f, "# HELP cowfork_queue_jobs Jobs waiting for a worker.\n# TYPE cowfork_queue_jobs gauge\n"
             "cowfork_queue_jobs %u\n# HELP cowfork_workers Worker threads.\n# TYPE cowfork_workers gauge\n"
             "cowfork_workers %u\n",
          d->qlen, d->o->workers);
  struct {
    const char *name, *help;
    const struct hist *h;
  } hs[] = {{"cowfork_fork_seconds", "Fork latency: template to a paused child.", &d->h_fork},
            {"cowfork_exec_seconds", "Exec: feeding the input to the next pause.", &d->h_exec},
            {"cowfork_pause_seconds", "Pause: save, record, release the VM.", &d->h_pause},
            {"cowfork_resume_seconds", "Resume: fork from the pause template and record.", &d->h_resume}};
  for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", hs[i].name, hs[i].help, hs[i].name);
    for (int k = 0; k < NB; k++)
      fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", hs[i].name, bounds[k], (unsigned long long)hs[i].h->b[k]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hs[i].name,
            (unsigned long long)hs[i].h->n, hs[i].name, hs[i].h->sum, hs[i].name, (unsigned long long)hs[i].h->n);
  }
  fprintf(f, "# HELP cowfork_uptime_seconds Seconds since the daemon started.\n"
             "# TYPE cowfork_uptime_seconds gauge\ncowfork_uptime_seconds %.3f\n",
          now_s() - d->t0);
  fclose(f);
  return buf;
}

/* Parse the body as a JSON object (an empty body is {}). NULL: *resp set. */
static json_t *body_object(struct req *r, int *status, json_t **err)
{
  if (r->len == 0)
    return json_object();
  json_error_t je;
  json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    *status = 400;
    *err = err_json(400, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    *status = 400;
    *err = err_json(400, "the body must be a JSON object");
    return NULL;
  }
  return j;
}

/* Suspend the connection and queue one job; the worker answers. */
static enum MHD_Result go_async(struct req *r)
{
  r->suspended = true;
  MHD_suspend_connection(r->c);
  return MHD_YES;
}

static struct fwd *fwd_take(struct daemon *d, const char *id, unsigned port);
static void fwd_stop_all(struct fwd *l);

static enum MHD_Result route_sandbox(struct req *r, const char *id, const char *verb, const char *method,
                                     json_t *body)
{
  struct daemon *d = r->d;
  enum jk k;
  if (!verb) {
    if (strcmp(method, "GET") == 0) {
      pthread_mutex_lock(&d->lock);
      struct sbx *s = sbx_find(d, id);
      json_t *o = s ? sbx_json(d, s) : NULL;
      pthread_mutex_unlock(&d->lock);
      return o ? send_json(r, 200, o) : SEND_ERR(r, 404, "no sandbox %s", id);
    }
    if (strcmp(method, "DELETE") != 0)
      return SEND_ERR(r, 405, "%s is not allowed on a sandbox (GET, DELETE)", method);
    k = J_DELETE;
    pthread_mutex_lock(&d->lock);
    struct fwd *l = fwd_take(d, id, 0); /* its forwarded ports go with it */
    pthread_mutex_unlock(&d->lock);
    fwd_stop_all(l);
  } else {
    if (strcmp(method, "POST") != 0)
      return SEND_ERR(r, 405, "%s is not allowed here (POST)", method);
    if (strcmp(verb, "exec") == 0)
      k = J_EXEC;
    else if (strcmp(verb, "branch") == 0)
      k = J_BRANCH;
    else if (strcmp(verb, "pause") == 0)
      k = J_PAUSE;
    else if (strcmp(verb, "resume") == 0)
      k = J_RESUME;
    else
      return SEND_ERR(r, 404, "no route /v1/sandboxes/%s/%s", id, verb);
  }
  /* Validate the body before queueing. */
  if (k == J_EXEC) {
    json_t *in = json_object_get(body, "input"), *b64 = json_object_get(body, "input_base64"),
           *tv = json_object_get(body, "timeout"), *cv = json_object_get(body, "cpu_limit");
    if ((in && !json_is_string(in)) || (b64 && !json_is_string(b64)) || (in && b64))
      return SEND_ERR(r, 400, "\"input\" must be a string (or \"input_base64\" instead)");
    if (tv && (!json_is_number(tv) || !(json_number_value(tv) > 0) ||
               json_number_value(tv) > d->o->max_timeout))
      return SEND_ERR(r, 400, "\"timeout\" must be a number of seconds in (0, %g]", d->o->max_timeout);
    if (cv && (!json_is_number(cv) || !(json_number_value(cv) > 0) ||
               json_number_value(cv) > d->o->max_timeout))
      return SEND_ERR(r, 400, "\"cpu_limit\" must be a number of seconds in (0, %g]", d->o->max_timeout);
  } else if (k == J_BRANCH) {
    const char *name = jstr(body, "template");
    if (!name || check_tmpl_name(name) < 0 || internal_name(name))
      return SEND_ERR(r, 400, "\"template\" must be a template name: 1-200 of [A-Za-z0-9._-], not starting "
                              "with '.' or '_'");
    char why[600];
    if (name_taken(d, name, why, sizeof why))
      return SEND_ERR(r, 409, "%s", why);
  }
  pthread_mutex_lock(&d->lock);
  struct sbx *s = sbx_find(d, id);
  int status = 0;
  json_t *err = NULL;
  if (!s) {
    status = 404;
    err = err_json(404, "no sandbox %s", id);
  } else if (d->stopping) {
    status = 503;
    err = err_json(503, "the daemon is stopping");
  } else if (d->qlen >= d->o->max_queue) {
    status = 429;
    d->refused_capacity++;
    err = err_json(429, "%u jobs queued: try again later", d->qlen);
  } else if (k == J_RESUME && s->state == ST_PAUSED && !s->pending_live) {
    uint64_t priv = live_private(d);
    if (d->live >= d->o->max_live) {
      status = 429;
      d->refused_capacity++;
      err = err_json(429, "%u live sandboxes: the cap (--max-sandboxes %u) is reached", d->live, d->o->max_live);
    } else if (priv >= d->o->max_memory) {
      status = 507;
      d->refused_memory++;
      err = err_json(507, "the live sandboxes hold %llu MiB of private memory: the cap (--max-memory %llu MiB) "
                          "is reached",
                     (unsigned long long)(priv >> 20), (unsigned long long)(d->o->max_memory >> 20));
    } else {
      d->live++;
      s->pending_live = true;
    }
  } else if (k == J_RESUME) {
    status = 409;
    err = err_json(409, "sandbox %s is %s, not paused", id, s->pending_live ? "resuming" : st_name[s->state]);
  }
  if (!err) {
    go_async(r);
    enqueue(d, k, r, s, NULL, body);
  }
  pthread_mutex_unlock(&d->lock);
  return err ? send_json(r, status, err) : MHD_YES;
}

/* Whether policy p lets a sandbox reach the daemon's own TCP listener. */
static bool net_reaches_daemon(struct daemon *d, const struct cf_net_policy *p)
{
  const char *l = d->o->tcp_listen;
  if (!l || cf_net_none(p))
    return false;
  char host[64];
  const char *c = strrchr(l, ':');
  if (!c || (size_t)(c - l) >= sizeof host)
    return true; /* (cannot tell: refuse) */
  memcpy(host, l, (size_t)(c - l));
  host[c - l] = 0;
  unsigned port = (unsigned)atoi(c + 1);
  uint8_t a[16] = {[10] = 0xff, [11] = 0xff};
  if (inet_pton(AF_INET, host, a + 12) != 1)
    return true;
  if (!a[12] && !a[13] && !a[14] && !a[15]) /* 0.0.0.0: its loopback address too */
    a[12] = 127, a[15] = 1;
  return cf_net_allows(p, a, (uint16_t)port);
}

/* ---- forwarded ports ---- */

static void *fwd_main(void *arg)
{
  struct fwd *f = arg;
  struct daemon *d = f->d;
  for (;;) {
    int c = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        if (errno != EINTR && errno != ECONNABORTED)
          usleep(10000);
        continue;
      }
      break; /* shut down: the forward is removed */
    }
    pthread_mutex_lock(&d->lock);
    struct sbx *s = sbx_find(d, f->id);
    if (s && s->state == ST_RUNNING)
      s->refs++;
    else
      s = NULL;
    pthread_mutex_unlock(&d->lock);
    int rc = -1;
    if (s) {
      pthread_mutex_lock(&d->boxlock);
      if (s->box)
        rc = cf_sandbox_net_accept(s->box, f->port, c); /* (takes c in every case) */
      else
        close(c);
      pthread_mutex_unlock(&d->boxlock);
      pthread_mutex_lock(&d->lock);
      sbx_unref(s);
      pthread_mutex_unlock(&d->lock);
    } else
      close(c); /* the host side sees the end at once */
    pthread_mutex_lock(&d->lock);
    if (rc == 0)
      d->forwarded++;
    else
      d->forward_refused++;
    pthread_mutex_unlock(&d->lock);
  }
  return NULL;
}

/* Unlink f and stop its thread; the caller holds no lock. */
static void fwd_stop(struct fwd *f)
{
  shutdown(f->lfd, SHUT_RDWR); /* accept returns EINVAL */
  pthread_join(f->th, NULL);
  close(f->lfd);
  unlink(f->path);
  free(f);
}

static json_t *fwd_json(const struct fwd *f)
{
  return json_pack("{s:i,s:s}", "port", (int)f->port, "socket", f->path);
}

/* Detach every forward of sandbox id (all when NULL) from d->fwds into a
 * list to fwd_stop. Under d->lock. */
static struct fwd *fwd_take(struct daemon *d, const char *id, unsigned port)
{
  struct fwd *out = NULL;
  for (struct fwd **pp = &d->fwds; *pp;) {
    struct fwd *f = *pp;
    if ((!id || !strcmp(f->id, id)) && (!port || f->port == port)) {
      *pp = f->next;
      f->next = out;
      out = f;
    } else
      pp = &f->next;
  }
  return out;
}

static void fwd_stop_all(struct fwd *l)
{
  for (struct fwd *n; l; l = n) {
    n = l->next;
    fwd_stop(l);
  }
}

/* GET, POST /v1/sandboxes/ID/ports; DELETE /v1/sandboxes/ID/ports/PORT */
static enum MHD_Result route_ports(struct req *r, const char *id, const char *portseg, const char *method,
                                   json_t *body)
{
  struct daemon *d = r->d;
  pthread_mutex_lock(&d->lock);
  bool known = sbx_find(d, id) != NULL;
  pthread_mutex_unlock(&d->lock);
  if (!known)
    return SEND_ERR(r, 404, "no sandbox %s", id);
  if (portseg) {
    char *end;
    unsigned long port = strtoul(portseg, &end, 10);
    if (*end || !port || port > 65535)
      return SEND_ERR(r, 404, "no route: the port is 1-65535");
    if (strcmp(method, "DELETE"))
      return SEND_ERR(r, 405, "%s is not allowed here (DELETE)", method);
    pthread_mutex_lock(&d->lock);
    struct fwd *l = fwd_take(d, id, (unsigned)port);
    pthread_mutex_unlock(&d->lock);
    if (!l)
      return SEND_ERR(r, 404, "port %lu of sandbox %s is not forwarded", port, id);
    fwd_stop_all(l);
    return send_json(r, 200, json_pack("{s:i}", "port", (int)port));
  }
  if (!strcmp(method, "GET")) {
    json_t *arr = json_array();
    pthread_mutex_lock(&d->lock);
    for (struct fwd *f = d->fwds; f; f = f->next)
      if (!strcmp(f->id, id))
        json_array_append_new(arr, fwd_json(f));
    pthread_mutex_unlock(&d->lock);
    return send_json(r, 200, json_pack("{s:o}", "ports", arr));
  }
  if (strcmp(method, "POST"))
    return SEND_ERR(r, 405, "%s is not allowed here (GET, POST)", method);
  json_t *pv = json_object_get(body, "port");
  if (!json_is_integer(pv) || json_integer_value(pv) < 1 || json_integer_value(pv) > 65535)
    return SEND_ERR(r, 400, "\"port\" must be an integer in 1..65535");
  unsigned port = (unsigned)json_integer_value(pv);
  struct fwd *f = calloc(1, sizeof *f);
  if (!f)
    return SEND_ERR(r, 500, "out of memory");
  f->d = d;
  f->lfd = -1;
  f->port = port;
  snprintf(f->id, sizeof f->id, "%s", id);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s.ports", d->o->socket_path);
  int n = snprintf(f->path, sizeof f->path, "%s/%s-%u", dir, id, port);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
    free(f);
    return SEND_ERR(r, 500, "the socket path %s.ports/%s-%u is too long for a Unix socket", d->o->socket_path, id,
                    port);
  }
  memcpy(sa.sun_path, f->path, (size_t)n + 1);
  pthread_mutex_lock(&d->lock);
  for (struct fwd *e = d->fwds; e; e = e->next)
    if (!strcmp(e->id, id) && e->port == port) {
      json_t *o = fwd_json(e);
      pthread_mutex_unlock(&d->lock);
      free(f);
      return send_json(r, 200, o); /* already: the same answer */
    }
  int e = 0;
  if (mkdir(dir, 0700) < 0 && errno != EEXIST)
    e = errno;
  unlink(f->path);
  mode_t old = umask(0177); /* the socket 0600 from its first moment */
  if (!e && ((f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
             bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(f->lfd, 128) < 0))
    e = errno;
  umask(old);
  if (!e && (e = pthread_create(&f->th, NULL, fwd_main, f)) != 0)
    unlink(f->path);
  if (e) {
    pthread_mutex_unlock(&d->lock);
    if (f->lfd >= 0)
      close(f->lfd);
    free(f);
    return SEND_ERR(r, 500, "forward port %u: %s", port, strerror(e));
  }
  f->next = d->fwds;
  d->fwds = f;
  json_t *o = fwd_json(f);
  pthread_mutex_unlock(&d->lock);
  return send_json(r, 201, o);
}

static enum MHD_Result route_create(struct req *r, json_t *body)
{
  struct daemon *d = r->d;
  const char *name = jstr(body, "template"), *be = jstr(body, "backend");
  json_t *cv = json_object_get(body, "count");
  if (!name)
    return SEND_ERR(r, 400, "\"template\" (a string) is required");
  if (cv && (!json_is_integer(cv) || json_integer_value(cv) < 1 || json_integer_value(cv) > 1000))
    return SEND_ERR(r, 400, "\"count\" must be an integer in 1..1000");
  const struct cf_mem_backend *b = &cf_mem_backend_file;
  if (be && !(b = cf_mem_backend_find(be)))
    return SEND_ERR(r, 400, "\"backend\" must be \"file\" or \"uffd\"");
  unsigned n = cv ? (unsigned)json_integer_value(cv) : 1;
  struct cf_net_policy net;
  json_t *nv = json_object_get(body, "net");
  if (nv && !json_is_string(nv))
    return SEND_ERR(r, 400, "\"net\" must be a string: none, all or allow=ADDR[/BITS][:PORT],...");
  if (cf_net_parse(nv ? json_string_value(nv) : NULL, &net) < 0)
    return SEND_ERR(r, 400, "\"net\": %s", cf_error());
  char why[256];
  if (!cf_net_within(&net, &d->ceiling, why, sizeof why)) {
    char c[512];
    cf_net_format(&d->ceiling, c, sizeof c);
    return SEND_ERR(r, 403, "\"net\": %s (--net-ceiling %s)", why, c);
  }
  if (net_reaches_daemon(d, &net))
    return SEND_ERR(r, 403, "\"net\": it would reach the daemon's own TCP port (%s)", d->o->tcp_listen);
  pthread_mutex_lock(&d->lock);
  struct tmpl *t = tmpl_get(d, name);
  int status = 0;
  json_t *err = NULL;
  if (!t) {
    status = errno == ENOENT ? 404 : 400;
    err = err_json(status, "%s", cf_error());
  } else if (!root_visible(d, cf_template_root(t->t))) {
    status = 409;
    err = err_json(409, "template %s runs in the root %s: " ROOT_HIDDEN_HINT, name, cf_template_root(t->t));
  } else if (d->stopping) {
    status = 503;
    err = err_json(503, "the daemon is stopping");
  } else if (d->live + n > d->o->max_live) {
    status = 429;
    d->refused_capacity++;
    err = err_json(429, "%u live sandboxes, %u more asked: the cap (--max-sandboxes %u) is reached", d->live, n,
                   d->o->max_live);
  } else if (live_private(d) >= d->o->max_memory) {
    status = 507;
    d->refused_memory++;
    err = err_json(507, "the live sandboxes hold %llu MiB of private memory: the cap (--max-memory %llu MiB) is "
                        "reached",
                   (unsigned long long)(live_private(d) >> 20), (unsigned long long)(d->o->max_memory >> 20));
  } else if (d->qlen + n > d->o->max_queue) {
    status = 429;
    d->refused_capacity++;
    err = err_json(429, "%u jobs queued: try again later", d->qlen);
  } else if (!(r->made = calloc(n, sizeof *r->made))) {
    status = 500;
    err = err_json(500, "out of memory");
  }
  if (!err) {
    go_async(r);
    for (unsigned i = 0; i < n; i++) {
      struct sbx *s = sbx_new(d);
      if (!s)
        break;
      snprintf(s->origin, sizeof s->origin, "%s", name);
      snprintf(s->cur, sizeof s->cur, "%s", name);
      s->be = b;
      s->net = net;
      s->pending_live = true;
      s->refs++; /* the request's */
      r->made[r->nmade++] = s;
      d->live++;
      enqueue(d, J_CREATE, r, s, t, body);
    }
    if (r->nmade == 0) {
      /* Could not even allocate: answer now (the connection is resumed). */
      r->status = 500;
      r->out = err_json(500, "out of memory");
      r->ready = true;
      pthread_mutex_unlock(&d->lock);
      MHD_resume_connection(r->c);
      return MHD_YES;
    }
  }
  pthread_mutex_unlock(&d->lock);
  return err ? send_json(r, status, err) : MHD_YES;
}

/* The answer to POST /v1/sandboxes once every fork is done: all or nothing. */
static enum MHD_Result finish_create(struct req *r)
{
  struct daemon *d = r->d;
  bool failed = r->status >= 400;
  pthread_mutex_lock(&d->lock);
  json_t *ids = json_array();
  for (unsigned i = 0; i < r->nmade; i++) {
    struct sbx *s = r->made[i];
    if (failed && !s->gone) {
      /* Undo the ones that did start. */
      pthread_mutex_lock(&d->boxlock);
      cf_sandbox_free(s->box);
      s->box = NULL;
      pthread_mutex_unlock(&d->boxlock);
      sbx_close_io(s);
      d->live--;
      sbx_unlink(d, s);
    } else if (!failed) {
      json_array_append_new(ids, json_string(s->id));
    }
  }
  pthread_mutex_unlock(&d->lock);
  int rc = failed ? 0 : persist(d);
  pthread_mutex_lock(&d->lock);
  for (unsigned i = 0; i < r->nmade; i++)
    sbx_unref(r->made[i]);
  r->nmade = 0;
  pthread_mutex_unlock(&d->lock);
  if (failed) {
    json_decref(ids);
    json_t *o = r->out;
    r->out = NULL;
    return send_json(r, r->status, o);
  }
  if (rc < 0) {
    json_decref(ids);
    return SEND_ERR(r, 500, "the state file: %s", cf_error());
  }
  return send_json(r, 201, json_pack("{s:o}", "ids", ids));
}

static enum MHD_Result route_template_post(struct req *r, json_t *body)
{
  struct daemon *d = r->d;
  const char *name = jstr(body, "name"), *program = jstr(body, "program"), *ready = jstr(body, "ready"),
             *root = jstr(body, "root"), *hostname = jstr(body, "hostname");
  json_t *args = json_object_get(body, "args"), *env = json_object_get(body, "env"), *mv = json_object_get(body, "mem"),
         *tv = json_object_get(body, "timeout");
  if (!name || check_tmpl_name(name) < 0 || internal_name(name))
    return SEND_ERR(r, 400, "\"name\" must be a template name: 1-200 of [A-Za-z0-9._-], not starting with '.' "
                            "or '_'");
  if (!program || !*program || strlen(program) >= PATH_MAX)
    return SEND_ERR(r, 400, "\"program\" (a path inside the root) is required");
  if ((args && !json_is_array(args)) || (env && !json_is_array(env)))
    return SEND_ERR(r, 400, "\"args\" and \"env\" must be arrays of strings");
  size_t i;
  json_t *v;
  json_array_foreach(args, i, v) if (!json_is_string(v)) return SEND_ERR(r, 400, "\"args\" must be strings");
  json_array_foreach(env, i, v) if (!json_is_string(v) || !strchr(json_string_value(v), '='))
      return SEND_ERR(r, 400, "\"env\" must be strings NAME=VALUE");
  if (json_array_size(args) > 4096 || json_array_size(env) > 4096)
    return SEND_ERR(r, 400, "too many args or env entries");
  uint64_t mem = 256ull << 20;
  if (mv && !((json_is_string(mv) && cf_parse_size(json_string_value(mv), &mem) == 0) ||
              (json_is_integer(mv) && (mem = (uint64_t)json_integer_value(mv), 1))))
    return SEND_ERR(r, 400, "\"mem\" must be a size (\"64M\") or bytes");
  if (mem % (2 << 20) || mem < (16 << 20) || mem > d->o->max_mem)
    return SEND_ERR(r, 400, "\"mem\" must be a multiple of 2M in 16M..%lluM",
                    (unsigned long long)(d->o->max_mem >> 20));
  if (ready && (!*ready || strlen(ready) > 255))
    return SEND_ERR(r, 400, "\"ready\" is \"stdin\" or a marker of 1-255 bytes");
  if ((json_object_get(body, "hostname") && !hostname) || (hostname && !cf_sandbox_hostname_ok(hostname)))
    return SEND_ERR(r, 400, "\"hostname\" must be 1-64 bytes, no control characters or '/'");
  const char *cwd = jstr(body, "cwd");
  if ((json_object_get(body, "cwd") && !cwd) || (cwd && (cwd[0] != '/' || strlen(cwd) >= PATH_MAX)))
    return SEND_ERR(r, 400, "\"cwd\" must be an absolute path in the sandbox");
  if (root && ((root[0] != '/' && (strchr(root, '/') || cf_root_check_name(root) < 0)) || strlen(root) >= PATH_MAX))
    return SEND_ERR(r, 400, "\"root\" must be a root's name (cowfork root ls) or an absolute host path");
  if (root && root[0] == '/' && !root_visible(d, root))
    return SEND_ERR(r, 400, "\"root\" %s: " ROOT_HIDDEN_HINT, root);
  if (tv && (!json_is_number(tv) || !(json_number_value(tv) > 0) || json_number_value(tv) > d->o->max_timeout))
    return SEND_ERR(r, 400, "\"timeout\" must be a number of seconds in (0, %g]", d->o->max_timeout);
  json_t *dv = json_object_get(body, "disk");
  uint64_t disk = 0;
  if (dv && (!((json_is_string(dv) && cf_parse_size(json_string_value(dv), &disk) == 0) ||
               (json_is_integer(dv) && json_integer_value(dv) > 0 && (disk = (uint64_t)json_integer_value(dv), 1))) ||
             disk % (1 << 20) || disk < (16 << 20) || disk > MAX_DISK))
    return SEND_ERR(r, 400, "\"disk\" must be a size (\"256M\") or bytes, a multiple of 1M in 16M..%lluG",
                    (unsigned long long)(MAX_DISK >> 30));
  pthread_mutex_lock(&d->lock);
  char path[PATH_MAX];
  int status = 0;
  json_t *err = NULL;
  char why[600];
  (void)path;
  if (name_taken(d, name, why, sizeof why)) {
    status = 409;
    err = err_json(409, "%s", why);
  } else if (d->stopping) {
    status = 503;
    err = err_json(503, "the daemon is stopping");
  } else if (d->qlen >= d->o->max_queue) {
    status = 429;
    err = err_json(429, "%u jobs queued: try again later", d->qlen);
  } else {
    go_async(r);
    enqueue(d, J_TEMPLATE, r, NULL, NULL, body);
  }
  pthread_mutex_unlock(&d->lock);
  return err ? send_json(r, status, err) : MHD_YES;
}

static enum MHD_Result route(struct req *r, const char *url, const char *method)
{
  struct daemon *d = r->d;
  char path[512];
  if (strlen(url) >= sizeof path)
    return SEND_ERR(r, 404, "no such route");
  snprintf(path, sizeof path, "%s", url);
  size_t pl = strlen(path);
  while (pl > 1 && path[pl - 1] == '/')
    path[--pl] = 0;
  char *seg[6];
  int nseg = 0;
  for (char *save, *p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
    if (nseg == 6)
      return SEND_ERR(r, 404, "no route %s", url);
    seg[nseg++] = p;
  }
  if (nseg < 2 || strcmp(seg[0], "v1") != 0)
    return SEND_ERR(r, 404, "no route %s (the API is under /v1)", url);
  bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
  if (nseg == 2 && strcmp(seg[1], "health") == 0) {
    if (!get)
      return SEND_ERR(r, 405, "GET only");
    pthread_mutex_lock(&d->lock);
    json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:f,s:s}", "status", "ok", "sandboxes", (int)d->nsb, "live",
                          (int)d->live, "max_live", (int)d->o->max_live, "uptime_s", now_s() - d->t0, "store",
                          cf_store_dir(d->store));
    json_t *lim = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "max_files", (json_int_t)d->o->max_files,
                            "fds_per_sandbox", (json_int_t)d->fd_per_sandbox, "fd_limit", (json_int_t)d->fd_limit,
                            "fd_reserve", (json_int_t)d->fd_reserve, "host_fds", (json_int_t)host_fds(),
                            "max_memory", (json_int_t)d->o->max_memory, "memory_private",
                            (json_int_t)live_private(d));
    json_object_set_new(o, "limits", lim);
    pthread_mutex_unlock(&d->lock);
    return send_json(r, 200, o);
  }
  if (nseg == 2 && strcmp(seg[1], "metrics") == 0) {
    if (!get)
      return SEND_ERR(r, 405, "GET only");
    pthread_mutex_lock(&d->lock);
    char *m = metrics_text(d);
    pthread_mutex_unlock(&d->lock);
    if (!m)
      return SEND_ERR(r, 500, "out of memory");
    return send_text(r, 200, m, strlen(m), "text/plain; version=0.0.4");
  }
  json_t *body = NULL, *err = NULL;
  int status = 0;
  if (post && !(body = body_object(r, &status, &err)))
    return send_json(r, status, err);
  enum MHD_Result rc;
  if (strcmp(seg[1], "templates") == 0 && nseg <= 3) {
    if (nseg == 2 && get) {
      pthread_mutex_lock(&d->lock);
      tmpl_scan(d);
      json_t *arr = json_array();
      for (struct tmpl *t = d->tmpls; t; t = t->next)
        json_array_append_new(arr, tmpl_json(d, t));
      pthread_mutex_unlock(&d->lock);
      rc = send_json(r, 200, json_pack("{s:o}", "templates", arr));
    } else if (nseg == 2 && post) {
      rc = route_template_post(r, body);
    } else if (nseg == 3 && (get || strcmp(method, "DELETE") == 0)) {
      pthread_mutex_lock(&d->lock);
      struct tmpl *t = check_tmpl_name(seg[2]) == 0 ? tmpl_get(d, seg[2]) : NULL;
      if (!t) {
        status = 404;
        err = err_json(404, "no template %s", seg[2]);
      } else if (get) {
        tmpl_scan(d);
        status = 200;
        err = tmpl_json(d, t);
      } else {
        char why[300];
        tmpl_scan(d);
        if (internal_name(t->name)) {
          status = 409;
          err = err_json(409, "template %s is a pause template of a sandbox: delete the sandbox instead", t->name);
        } else if (tmpl_busy(d, t->name, why, sizeof why)) {
          status = 409;
          err = err_json(409, "template %s is in use: %s", t->name, why);
        } else {
          char name[256], parent[256];
          snprintf(name, sizeof name, "%s", t->name);
          snprintf(parent, sizeof parent, "%s", t->parent);
          if (tmpl_remove(d, name) < 0) {
            status = 500;
            err = err_json(500, "%s", cf_error());
          } else {
            tmpl_gc(d, parent);
            status = 200;
            err = json_pack("{s:s,s:b}", "name", name, "deleted", 1);
          }
        }
      }
      pthread_mutex_unlock(&d->lock);
      rc = send_json(r, status, err);
    } else {
      rc = SEND_ERR(r, 405, "%s is not allowed on %s", method, url);
    }
  } else if (strcmp(seg[1], "sandboxes") == 0 && nseg >= 4 && strcmp(seg[3], "ports") == 0 && nseg <= 5) {
    if (!body)
      body = json_object();
    rc = route_ports(r, seg[2], nseg == 5 ? seg[4] : NULL, method, body);
  } else if (strcmp(seg[1], "sandboxes") == 0 && nseg <= 4) {
    if (nseg == 2 && get) {
      pthread_mutex_lock(&d->lock);
      json_t *arr = json_array();
      for (struct sbx *s = d->sbs; s; s = s->next)
        if (!s->pending_live || s->box || s->state != ST_RUNNING)
          json_array_append_new(arr, sbx_json(d, s));
      pthread_mutex_unlock(&d->lock);
      rc = send_json(r, 200, json_pack("{s:o}", "sandboxes", arr));
    } else if (nseg == 2 && post) {
      rc = route_create(r, body);
    } else if (nseg >= 3) {
      if (!body)
        body = json_object();
      rc = route_sandbox(r, seg[2], nseg == 4 ? seg[3] : NULL, method, body);
    } else {
      rc = SEND_ERR(r, 405, "%s is not allowed on %s", method, url);
    }
  } else {
    rc = SEND_ERR(r, 404, "no route %s", url);
  }
  json_decref(body);
  return rc;
}

static bool token_ok(struct req *r)
{
  const char *want = r->d->o->token;
  const char *h = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!want || !h || strncmp(h, "Bearer ", 7) != 0)
    return false;
  h += 7;
  size_t a = strlen(h), b = strlen(want);
  unsigned char diff = a != b;
  for (size_t i = 0; i < a && i < b; i++)
    diff |= (unsigned char)(h[i] ^ want[i]);
  return diff == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
  struct listener *l = cls;
  struct daemon *d = l->d;
  struct req *r = *con_cls;
  (void)version;
  if (!r) {
    if (!(r = calloc(1, sizeof *r)))
      return MHD_NO;
    r->d = d;
    r->c = c;
    r->tcp = l->tcp;
    *con_cls = r;
    __atomic_fetch_add(&d->nreq, 1, __ATOMIC_RELAXED);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > d->o->max_body) {
      r->too_big = true;
      return SEND_ERR(r, 413, "the body is larger than %zu bytes", d->o->max_body);
    }
    return MHD_YES;
  }
  if (r->ready) {
    r->ready = false;
    if (r->nmade)
      return finish_create(r);
    json_t *o = r->out;
    r->out = NULL;
    return send_json(r, r->status ? r->status : 500, o);
  }
  if (*upload_size) {
    if (!r->too_big) {
      if (r->len + *upload_size > d->o->max_body) {
        r->too_big = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
      } else {
        if (r->len + *upload_size > r->cap) {
          size_t cap = r->cap ? r->cap : 4096;
          while (cap < r->len + *upload_size)
            cap *= 2;
          char *b = realloc(r->body, cap);
          if (!b)
            return MHD_NO;
          r->body = b;
          r->cap = cap;
        }
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->too_big)
    return SEND_ERR(r, 413, "the body is larger than %zu bytes", d->o->max_body);
  if (r->tcp && !token_ok(r))
    return SEND_ERR(r, 401, "a bearer token is required on TCP");
  return route(r, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
  struct listener *l = cls;
  (void)c;
  (void)toe;
  struct req *r = *con_cls;
  if (!r)
    return;
  free(r->body);
  free(r->made);
  json_decref(r->out);
  free(r);
  *con_cls = NULL;
  __atomic_fetch_sub(&l->d->nreq, 1, __ATOMIC_RELAXED);
}

/* ---- start and stop ---- */

static int listen_unix(const char *path)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path)
    return cf_fail(ENAMETOOLONG, "socket path too long: %s", path);
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return cf_fail(errno, "socket: %m");
  /* A socket file nobody answers on is stale; one that answers is another daemon. */
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    close(fd);
    return cf_fail(EADDRINUSE, "%s: another daemon is listening there", path);
  }
  unlink(path);
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  umask(old);
  if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 1024) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "%s: %s", path, strerror(e));
  }
  return fd;
}

static int listen_tcp(const char *spec)
{
  char host[64];
  const char *colon = strrchr(spec, ':');
  if (!colon || (size_t)(colon - spec) >= sizeof host)
    return cf_fail(EINVAL, "--listen wants HOST:PORT, got '%s'", spec);
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || (ntohl(a.sin_addr.s_addr) >> 24) != 127)
    return cf_fail(EINVAL, "--listen: only a loopback IPv4 address (127.x.x.x), got '%s'", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0)
    return cf_fail(errno, "socket: %m");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "%s: %s", spec, strerror(e));
  }
  return fd;
}

/* MHD's connection limit per listener (start_mhd). */
#define CONN_LIMIT 512u
/* fds kept besides the sandboxes' and the connections': templates (their
 * layers, spare VMs, uffd listeners), the store, the state file, workers. */
#define FD_RESERVE 256u
/* fds the daemon holds for a live sandbox besides the shim's: its stdin,
 * stdout and stderr memfds, the uffd page server's side of its client
 * (userfaultfd, pidfd, socket). */
#define FD_DAEMON_PER_SANDBOX 6u

static struct MHD_Daemon *start_mhd(struct listener *l, int fd)
{
  return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, 0, NULL,
                          NULL, handler, l, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, completed,
                          l, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                          (unsigned)0, MHD_OPTION_END);
}

/* Why a pause failed: worth retrying once the store has room again. */
static bool retryable(int e)
{
  return e == ENOSPC || e == EDQUOT || e == ENOMEM || e == EMFILE || e == ENFILE || e == EIO || e == EROFS;
}

/* After the shutdown pauses (the workers have ended; this thread owns every
 * sandbox now). Says how many were paused, never more. A sandbox whose
 * pause failed for want of space (or memory, or files) exists only in this
 * process, and its record still says running: the daemon does not exit but
 * keeps it and retries every 10 s, or at once on SIGTERM/SIGINT, until all
 * are paused. SIGKILL loses them (and the next start reports them lost). A
 * sandbox that cannot be paused for another reason (its program ended
 * before its pause point) is recorded lost with the reason. */
static void stop_pauses(struct daemon *d, const sigset_t *sigs)
{
  for (;;) {
    unsigned paused = 0, failed = 0, given_up = 0;
    char first[512] = "";
    for (struct sbx *s = d->sbs; s; s = s->next) {
      if (!s->stop_pause)
        continue;
      if (s->state == ST_PAUSED && !s->pause_err) {
        paused++;
        s->stop_pause = false;
        continue;
      }
      if (s->state != ST_RUNNING || !s->box) {
        s->stop_pause = false;
        continue;
      }
      if (s->pause_err && !retryable(s->pause_err)) {
        s->state = ST_LOST;
        snprintf(s->why, sizeof s->why, "could not be paused when the daemon stopped: %s",
                 strerror(s->pause_err ? s->pause_err : EIO));
        sbx_drop_vm(s);
        d->live--;
        s->stop_pause = false;
        given_up++;
        fprintf(stderr, "cowfork daemon: sandbox %s %s\n", s->id, s->why);
        continue;
      }
      if (!failed++)
        snprintf(first, sizeof first, "%s: %s", s->id, s->pause_err ? strerror(s->pause_err) : "not tried");
    }
    if (paused)
      logmsg(d, "paused %u sandboxes", paused);
    if (given_up && persist(d) < 0)
      fprintf(stderr, "cowfork daemon: the state file could not record the lost sandboxes: %s\n", cf_error());
    if (!failed)
      return;
    /* Loud even with --quiet: this is the one message that must be seen. */
    fprintf(stderr,
            "cowfork daemon: %u sandbox%s could not be paused (%s%s) and exist%s only in this process: not "
            "exiting. Free space in %s, then send SIGTERM to retry (retrying every 10 s); SIGKILL loses %s.\n",
            failed, failed > 1 ? "es" : "", first, failed > 1 ? ", ..." : "", failed > 1 ? "" : "s",
            cf_store_dir(d->store), failed > 1 ? "them" : "it");
    struct timespec ts = {10, 0};
    sigtimedwait(sigs, NULL, &ts);
    for (struct sbx *s = d->sbs; s; s = s->next)
      if (s->stop_pause && s->state == ST_RUNNING && s->box) {
        struct job j = {.k = J_PAUSE, .s = s};
        job_pause(d, &j);
      }
  }
}

/* One daemon per store (two would overwrite each other's state file and
 * remove each other's paused sandboxes), and the lock cf_daemon_probe looks
 * at. Only a daemon holds it exclusive; a `cowfork template rm` that found
 * no daemon holds it shared for a moment while it checks and removes. So
 * where even a shared lock is refused, a daemon holds it: refused at once;
 * where a shared one is granted, only such a CLI is there: wait for it (up
 * to 3 s). */
static int lock_store(struct daemon *d, const char *dir)
{
  char path[PATH_MAX + 8];
  snprintf(path, sizeof path, "%s/lock", dir);
  if ((d->lockfd = cf_private_open(path, O_RDWR)) < 0)
    return -1;
  for (int i = 0; flock(d->lockfd, LOCK_EX | LOCK_NB) < 0; i++) {
    if (errno != EWOULDBLOCK)
      return cf_fail(errno, "lock %s: %m", path);
    int probe = cf_private_open(path, O_RDWR);
    bool daemon = probe >= 0 && flock(probe, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    if (probe >= 0)
      close(probe); /* drops its shared lock, if it got one */
    if (daemon || i == 300)
      return cf_fail(EBUSY, "another cowfork daemon serves the store %s (%s is locked%s)", cf_store_dir(d->store),
                     path, daemon ? "" : " for more than 3 s");
    usleep(10000);
  }
  return 0;
}

static void sd_notify_ready(void)
{
  const char *p = getenv("NOTIFY_SOCKET");
  if (!p || (p[0] != '/' && p[0] != '@') || strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, p);
  if (a.sun_path[0] == '@')
    a.sun_path[0] = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return;
  sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p)));
  close(fd);
}

static void on_uffd_end(void *ctx, uint64_t id, pid_t pid, const struct cf_uffd_stats *st)
{
  (void)id;
  (void)pid;
  struct daemon *d = ctx;
  __atomic_fetch_add(&d->uffd_faults_ended, st->faults, __ATOMIC_RELAXED);
}

/* The start check (docs/daemon.md, "Limits"): every live sandbox may hold
 * max_files + CF_SANDBOX_FIXED_FDS + FD_SBX_THREADS + FD_SBX_PROCS + FD_DAEMON_PER_SANDBOX fds, and
 * max_live of them plus the reserve must fit RLIMIT_NOFILE (its soft limit
 * raised to the hard one, and the hard one too where the process may), so that no sandbox can take another's fds or
 * the connections'. A max_live that was given and does not fit is refused;
 * the default is lowered to what fits, with a log line. --max-memory is
 * checked against the machine's RAM + swap (default: 3/4 of RAM). */
static int fit_limits(struct daemon *d, struct cf_daemon_opts *o, bool live_given)
{
  if (!o->max_files)
    o->max_files = 256; /* the daemon's default share (a sandbox of `cowfork run` has CF_SANDBOX_MAX_FILES) */
  if (o->max_files > CF_SANDBOX_NR_OPEN)
    o->max_files = CF_SANDBOX_NR_OPEN;
  cf_nofile_raise(0); /* its budget is checked against the limit it was given */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return cf_fail(errno, "getrlimit: %m");
  uint64_t lim = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX / 2 : (uint64_t)rl.rlim_cur;
  uint64_t per = o->max_files + CF_SANDBOX_FIXED_FDS + FD_SBX_THREADS + FD_SBX_PROCS + FD_DAEMON_PER_SANDBOX;
  uint64_t reserve = FD_RESERVE + CONN_LIMIT * (o->tcp_listen ? 2 : 1);
  uint64_t need = reserve + per * o->max_live;
  if (need > lim) {
    /* Where allowed (CAP_SYS_RESOURCE, up to fs.nr_open): raise the hard
     * limit too, as a service manager's LimitNOFILE= would. */
    struct rlimit want = {need, (uint64_t)rl.rlim_max > need ? rl.rlim_max : need};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
      logmsg(d, "RLIMIT_NOFILE raised from %llu to %llu (--max-sandboxes %u x %llu fds + %llu)",
             (unsigned long long)lim, (unsigned long long)need, o->max_live, (unsigned long long)per,
             (unsigned long long)reserve);
      lim = need;
    }
  }
  if (need > lim) {
    uint64_t fit = lim > reserve ? (lim - reserve) / per : 0;
    if (live_given || fit == 0)
      return cf_fail(EMFILE,
                     "%u live sandboxes (--max-sandboxes) x %llu fds each (--max-files %u + %u) + %llu for "
                     "connections and templates = %llu fds, more than RLIMIT_NOFILE %llu allows: lower "
                     "--max-sandboxes (at most %llu fit) or --max-files, or raise the limit (ulimit -n, systemd "
                     "LimitNOFILE=)",
                     o->max_live, (unsigned long long)per, o->max_files,
                     CF_SANDBOX_FIXED_FDS + FD_SBX_THREADS + FD_SBX_PROCS + FD_DAEMON_PER_SANDBOX,
                     (unsigned long long)reserve,
                     (unsigned long long)need, (unsigned long long)lim, (unsigned long long)fit);
    logmsg(d,
           "RLIMIT_NOFILE %llu holds %llu live sandboxes of %llu fds (--max-files %u) besides %llu reserved: "
           "--max-sandboxes lowered from %u to %llu (raise the limit for more)",
           (unsigned long long)lim, (unsigned long long)fit, (unsigned long long)per, o->max_files,
           (unsigned long long)reserve, o->max_live, (unsigned long long)fit);
    o->max_live = (unsigned)fit;
  }
  d->fd_limit = lim;
  d->fd_per_sandbox = per;
  d->fd_reserve = reserve;
  struct sysinfo si;
  if (sysinfo(&si) < 0)
    return cf_fail(errno, "sysinfo: %m");
  uint64_t ram = (uint64_t)si.totalram * si.mem_unit, swap = (uint64_t)si.totalswap * si.mem_unit;
  if (!o->max_memory)
    o->max_memory = ram / 4 * 3;
  else if (o->max_memory > ram + swap)
    return cf_fail(ENOMEM, "--max-memory %llu MiB is more than this machine's memory (%llu MiB of RAM, %llu MiB of "
                           "swap)",
                   (unsigned long long)(o->max_memory >> 20), (unsigned long long)(ram >> 20),
                   (unsigned long long)(swap >> 20));
  return 0;
}

int cf_daemon_run(const struct cf_daemon_opts *in)
{
  struct cf_daemon_opts o = *in;
  /* No transparent huge pages in this process. A worker's malloc arena is
   * a 64 MiB reservation of which a few hundred KiB are in use once its
   * sandboxes are freed (malloc_trim below gives the rest back); where THP
   * is "always" (Debian's kernels), khugepaged collapses any 2 MiB-aligned
   * range with even one page present into a huge page, at any time after
   * the trim: measured in scripts/kvm-vm.sh's VM, two arenas went from ~100
   * KiB to 2048 KiB each (AnonHugePages) while the daemon sat idle, and CI
   * saw +6.1 MiB after 100 sandboxes (tests/daemon-memory.sh). Guest memory
   * has THP off already (lib/mem.c), so nothing here wants huge pages; the
   * flag is inherited by any child process and kept across execve. */
  (void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  if (!o.workers) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = (unsigned)(n > 0 ? 2 * n : 4);
  }
  bool live_given = o.max_live != 0;
  if (!o.max_live)
    o.max_live = 512;
  if (!o.max_queue)
    o.max_queue = 4096;
  if (!o.max_body)
    o.max_body = 8u << 20;
  if (!o.max_output)
    o.max_output = 8u << 20;
  if (!(o.default_timeout > 0))
    o.default_timeout = 30;
  if (!(o.max_timeout > 0))
    o.max_timeout = 600;
  if (!o.max_mem)
    o.max_mem = 1ull << 30;
  if (o.tcp_listen && (!o.token || !*o.token))
    return cf_fail(EINVAL, "TCP needs a bearer token (--token-file)");
  struct cf_net_policy ceiling;
  if (cf_net_parse(o.net_ceiling, &ceiling) < 0)
    return cf_fail(EINVAL, "--net-ceiling: %s", cf_error());
  struct daemon *d = calloc(1, sizeof *d);
  if (!d)
    return cf_fail(ENOMEM, "out of memory");
  d->o = &o;
  d->ceiling = ceiling;
  pthread_mutex_init(&d->boxlock, NULL);
  g_boxlock = &d->boxlock;
  if (!cf_net_none(&ceiling))
    cf_seccomp_allow_inet(true); /* (before any worker installs the filter) */
  /* Every live sandbox holds a VM, a vCPU and its open files. */
  if (fit_limits(d, &o, live_given) < 0) {
    free(d);
    return -1;
  }
  d->t0 = now_s();
  pthread_mutex_init(&d->lock, NULL);
  pthread_mutex_init(&d->flock, NULL);
  pthread_cond_init(&d->cond, NULL);
  d->lu = (struct listener){d, false};
  d->lt = (struct listener){d, true};
  int rc = -1, ufd = -1, tfd = -1;
  d->lockfd = -1;
  char sockbuf[PATH_MAX];
  pthread_t *th = NULL;
  unsigned nth = 0;
  sigset_t sigs, oldsigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, &oldsigs);
  signal(SIGPIPE, SIG_IGN);
  if (!(d->store = cf_store_open(o.store_dir)))
    goto out;
  unsigned old_mode, nfixed = cf_store_made_private(d->store, &old_mode);
  if (nfixed)
    logmsg(d, "the store %s was readable by others (mode %04o): made it private (%u entries now 0700/0600/0400)",
           cf_store_dir(d->store), old_mode, nfixed);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/daemon", cf_store_dir(d->store));
  if (cf_private_mkdir(dir) < 0)
    goto out;
  if (snprintf(d->statepath, sizeof d->statepath, "%s/state.json", dir) >= (int)sizeof d->statepath) {
    cf_fail(ENAMETOOLONG, "store path too long");
    goto out;
  }
  if (lock_store(d, dir) < 0)
    goto out;
  sweep_own(d);
  pthread_mutex_lock(&d->lock);
  rc = load_state(d);
  if (rc == 0) {
    /* Internal templates nothing refers to: a pause that was saved but
     * never recorded, or a sandbox deleted before a crash. */
    tmpl_scan(d);
    char names[64][256];
    int n;
    do {
      n = 0;
      for (struct tmpl *t = d->tmpls; t && n < 64; t = t->next) {
        char why[300];
        if (internal_name(t->name) && !tmpl_busy(d, t->name, why, sizeof why))
          snprintf(names[n++], sizeof names[0], "%s", t->name);
      }
      for (int i = 0; i < n; i++) {
        logmsg(d, "removing unreferenced pause template %s", names[i]);
        if (tmpl_remove(d, names[i]) < 0) {
          logmsg(d, "%s", cf_error());
          n = 0;
        }
      }
    } while (n == 64);
  }
  pthread_mutex_unlock(&d->lock);
  if (rc < 0)
    goto out;
  rc = -1;
  if (persist(d) < 0)
    goto out;
  if (!(d->uffd = cf_seccomp_uffd_server_new(on_uffd_end, d)))
    goto out;
  if (!(th = calloc(o.workers, sizeof *th))) {
    cf_fail(ENOMEM, "out of memory");
    goto out;
  }
  for (; nth < o.workers; nth++)
    if (pthread_create(&th[nth], NULL, worker, d) != 0) {
      cf_fail(errno, "pthread_create: %m");
      goto out;
    }
  if ((ufd = listen_unix(o.socket_path)) < 0)
    goto out;
  /* Where `cowfork template rm|ls` find this daemon (cf_daemon_probe). */
  char sockrec[PATH_MAX + 8];
  snprintf(sockrec, sizeof sockrec, "%s/socket", dir);
  if (realpath(o.socket_path, sockbuf) == NULL)
    snprintf(sockbuf, sizeof sockbuf, "%s", o.socket_path);
  if (cf_write_file_atomic(sockrec, sockbuf, strlen(sockbuf), CF_MODE_FILE, false) < 0)
    goto out;
  if (!(d->mhd = start_mhd(&d->lu, ufd))) {
    cf_fail(EIO, "libmicrohttpd could not start on %s", o.socket_path);
    goto out;
  }
  if (o.tcp_listen) {
    if ((tfd = listen_tcp(o.tcp_listen)) < 0)
      goto out;
    if (!(d->mhd_tcp = start_mhd(&d->lt, tfd))) {
      cf_fail(EIO, "libmicrohttpd could not start on %s", o.tcp_listen);
      goto out;
    }
  }
  logmsg(d, "listening on %s%s%s (store %s, %u workers, up to %u live sandboxes of %u open files, %llu MiB of "
            "private memory; %u sandboxes on record, %llu lost)",
         o.socket_path, o.tcp_listen ? " and " : "", o.tcp_listen ? o.tcp_listen : "", cf_store_dir(d->store),
         o.workers, o.max_live, o.max_files, (unsigned long long)(o.max_memory >> 20), d->nsb,
         (unsigned long long)d->lost_at_start);
  sd_notify_ready();
  int sig = 0;
  sigwait(&sigs, &sig);
  logmsg(d, "%s: pausing the running sandboxes and stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  rc = 0;
out:
  /* Stop accepting; let queued and running jobs finish; pause what runs. */
  /* After a quiesce the listening sockets are ours to close; otherwise
   * MHD_stop_daemon closes them. */
  if (d->mhd && MHD_quiesce_daemon(d->mhd) == MHD_INVALID_SOCKET)
    ufd = -1;
  if (d->mhd_tcp && MHD_quiesce_daemon(d->mhd_tcp) == MHD_INVALID_SOCKET)
    tfd = -1;
  pthread_mutex_lock(&d->lock);
  d->stopping = true;
  if (nth)
    for (struct sbx *s = d->sbs; s; s = s->next)
      if (s->state == ST_RUNNING && (s->box || s->pending_live)) {
        s->stop_pause = true;
        enqueue(d, J_PAUSE, NULL, s, NULL, NULL);
      }
  pthread_cond_broadcast(&d->cond);
  pthread_mutex_unlock(&d->lock);
  for (unsigned i = 0; i < nth; i++)
    pthread_join(th[i], NULL);
  stop_pauses(d, &sigs);
  /* The last answers are being sent: give them a moment. */
  for (int i = 0; i < 200 && __atomic_load_n(&d->nreq, __ATOMIC_RELAXED); i++)
    usleep(10000);
  if (d->mhd)
    MHD_stop_daemon(d->mhd);
  if (d->mhd_tcp)
    MHD_stop_daemon(d->mhd_tcp);
  fwd_stop_all(fwd_take(d, NULL, 0));
  if (ufd >= 0)
    close(ufd);
  if (d->mhd || ufd >= 0)
    unlink(o.socket_path);
  if (tfd >= 0)
    close(tfd);
  if (d->store && rc == 0)
    persist(d);
  /* Sandboxes first (their memory may come from the page server). */
  for (struct sbx *s = d->sbs, *n; s; s = n) {
    n = s->next;
    cf_sandbox_free(s->box);
    sbx_close_io(s);
    free(s);
  }
  cf_uffd_server_free(d->uffd);
  for (struct tmpl *t = d->tmpls, *n; t; t = n) {
    n = t->next;
    cf_image_close(t->uimg);
    tmpl_free(t);
  }
  for (struct job *j = d->qhead, *n; j; j = n) {
    n = j->next;
    json_decref(j->args);
    free(j);
  }
  free(th);
  cf_store_close(d->store);
  int e = errno;
  if (d->lockfd >= 0)
    close(d->lockfd);
  pthread_mutex_destroy(&d->lock);
  pthread_mutex_destroy(&d->flock);
  pthread_cond_destroy(&d->cond);
  g_boxlock = NULL;
  pthread_mutex_destroy(&d->boxlock);
  free(d);
  pthread_sigmask(SIG_SETMASK, &oldsigs, NULL);
  errno = e;
  return rc;
}
