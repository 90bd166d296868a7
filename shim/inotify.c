/* inotify for the changes a sandbox makes to its own files: what Python's
 * (watchdog, inotify_simple) and Node's (libuv fs.watch) watchers call:
 * inotify_init/inotify_init1, inotify_add_watch, read of the events,
 * poll/epoll on the fd, inotify_rm_watch.
 *
 * An instance is a host pipe in packet mode (O_DIRECT): the guest's fd is
 * an F_HOST file on its read end, so read, poll, epoll, O_NONBLOCK and the
 * blocking waits are the pipes' own (fs.c); each event is one packet
 * written to the write end (struct inotify, kept here), so a read returns
 * one whole event (Linux may return several: a reader loops anyway). The
 * write end is a host fd counted in the sandbox's host files
 * (hostfiles, as a shared memory object's). A full pipe (64 KiB) drops the
 * event and queues IN_Q_OVERFLOW once there is room again.
 *
 * Watches are by canonical path (the overlay's, ovl_lookup's): fs.c calls
 * inotify_event after a change succeeds (create, delete, rename,
 * write/truncate/fallocate, chmod/chown/utimes: IN_ATTRIB) and for an
 * open file's own events (IN_OPEN, IN_ACCESS from a read or a listing,
 * IN_CLOSE_WRITE/NOWRITE at the last close: fs.c note_file) with the
 * entry's path; a watch on its directory gets the event with the name, a
 * watch on the entry itself gets the self events (IN_MODIFY, IN_ATTRIB,
 * IN_OPEN..., IN_DELETE_SELF then IN_IGNORED, IN_MOVE_SELF after which
 * the watch follows the new path, as Linux's follows the inode). An event
 * identical to the last one queued and still unread is dropped, as Linux
 * merges them. The instances of a sandbox are the first process's
 * (proc_first: all its processes share them), so a change made by any of
 * its processes reaches every watcher. Only changes made inside the
 * sandbox exist: the root is read-only. Not done: the events of an open
 * file renamed or unlinked since (it is known by the path it was opened
 * at).
 * A sandbox with an inotify fd cannot be saved (fs_save says so).
 *
 * dnotify (fcntl F_NOTIFY on a directory fd) rides on the same events: a
 * registration (struct dnotify, the first process's list) holds the
 * directory's path, its DN_* events and the registering process; an event
 * of an entry in the directory (or the directory's own) that its events
 * name sends that process SIGIO (SI_KERNEL, as Linux's send_sigio without
 * F_SETSIG, which is not done), and without DN_MULTISHOT the registration
 * then goes. Linux's mapping: DN_CREATE is IN_CREATE and IN_MOVED_TO,
 * DN_DELETE IN_DELETE and IN_MOVED_FROM, DN_RENAME a rename in it. A
 * second F_NOTIFY of the same file by the same process adds events;
 * F_NOTIFY without events, or the file's last close, removes them (Linux:
 * each close by the registering process). A sandbox with registrations
 * cannot be saved.
 * Everything runs under the sandbox's lock. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

struct watch {
  int wd;
  uint32_t mask;
  char *path;
};

struct inotify {
  struct sb *owner; /* the first process: its list holds this */
  int wr;           /* the pipe's write end */
  char last[sizeof(struct inotify_event) + 272]; /* the last event written, and its length */
  size_t lastlen;
  int next_wd;
  bool overflow;    /* events were dropped: IN_Q_OVERFLOW when there is room */
  struct watch *w;
  int nw;
  struct inotify *next;
};

static void put(struct inotify *in, int wd, uint32_t mask, uint32_t cookie, const char *name)
{
  size_t nl = name ? strlen(name) : 0, len = nl ? (nl + 1 + 15) & ~(size_t)15 : 0;
  char buf[sizeof(struct inotify_event) + 272] = {0};
  if (len > 272)
    return;
  if (in->overflow) {
    struct inotify_event o = {.wd = -1, .mask = IN_Q_OVERFLOW};
    if (write(in->wr, &o, sizeof o) < 0)
      return;
    in->overflow = false;
  }
  struct inotify_event e = {.wd = wd, .mask = mask, .cookie = cookie, .len = (uint32_t)len};
  memcpy(buf, &e, sizeof e);
  if (nl)
    memcpy(buf + sizeof e, name, nl);
  int queued = 0; /* the last event is unread while the pipe holds anything (it is read last) */
  if (in->lastlen == sizeof e + len && !memcmp(in->last, buf, in->lastlen) && ioctl(in->wr, FIONREAD, &queued) == 0 &&
      queued > 0)
    return; /* merged with it, as Linux */
  if (write(in->wr, buf, sizeof e + len) < 0) {
    in->overflow = true;
    return;
  }
  memcpy(in->last, buf, sizeof e + len);
  in->lastlen = sizeof e + len;
}

static void drop_watch(struct inotify *in, int i)
{
  free(in->w[i].path);
  in->w[i] = in->w[--in->nw];
}

struct dnotify {
  struct file *f;
  int pid;
  uint32_t mask; /* DN_* | DN_MULTISHOT */
  char *path;
  struct dnotify *next;
};

static void dn_free(struct dnotify **p)
{
  struct dnotify *d = *p;
  *p = d->next;
  free(d->path);
  free(d);
}

/* The registrations of the directory of path (a child's event) or of path
 * itself (a directory's own: dir) whose events mask's take: SIGIO. */
static void dnotify_event(struct sb *sb, struct sb *r, const char *path, size_t dl, uint32_t mask, bool dir)
{
  uint32_t dn = (mask & IN_ACCESS ? DN_ACCESS : 0) | (mask & IN_MODIFY ? DN_MODIFY : 0) |
                (mask & IN_ATTRIB ? DN_ATTRIB : 0) | (mask & (IN_CREATE | IN_MOVED_TO) ? DN_CREATE : 0) |
                (mask & (IN_DELETE | IN_MOVED_FROM) ? DN_DELETE : 0) |
                (mask & (IN_MOVED_FROM | IN_MOVED_TO) ? DN_RENAME : 0);
  for (struct dnotify **p = &r->dnotifies; *p;) {
    struct dnotify *d = *p;
    bool child = strlen(d->path) == dl && !strncmp(d->path, path, dl);
    bool self = dir && !strcmp(d->path, path) && !(mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO));
    if (!(child || self) || !(d->mask & dn)) {
      p = &d->next;
      continue;
    }
    struct sb *t = proc_find(sb, d->pid);
    if (t) {
      siginfo_t info;
      memset(&info, 0, sizeof info);
      info.si_signo = SIGIO;
      info.si_code = SI_KERNEL;
      sig_queue(t, &info, 0, 0);
    }
    if (d->mask & DN_MULTISHOT) {
      p = &d->next;
    } else {
      struct file *f = d->f;
      dn_free(p);
      bool more = false;
      for (struct dnotify *o = r->dnotifies; o && !more; o = o->next)
        more = o->f == f;
      if (!more)
        f->dn_owner = NULL;
    }
  }
}

long dnotify_set(struct sb *sb, struct file *f, uint64_t arg)
{
  struct sb *r = proc_first(sb);
  uint32_t ev = (uint32_t)arg & (DN_ACCESS | DN_MODIFY | DN_CREATE | DN_DELETE | DN_RENAME | DN_ATTRIB);
  if (!((uint32_t)arg & ~(uint32_t)DN_MULTISHOT)) { /* no events: this process's registrations of f go */
    for (struct dnotify **p = &r->dnotifies; *p;)
      if ((*p)->f == f && (*p)->pid == sb->pid)
        dn_free(p);
      else
        p = &(*p)->next;
    bool more = false;
    for (struct dnotify *o = r->dnotifies; o && !more; o = o->next)
      more = o->f == f;
    if (!more)
      f->dn_owner = NULL;
    return 0;
  }
  if (f->type != F_DIR && f->type != F_TMPDIR && f->type != F_VDIR)
    return -ENOTDIR;
  for (struct dnotify *d = r->dnotifies; d; d = d->next)
    if (d->f == f && d->pid == sb->pid) { /* adds events (Linux's attach_dn) */
      d->mask |= ev | ((uint32_t)arg & DN_MULTISHOT);
      return 0;
    }
  struct dnotify *d = calloc(1, sizeof *d);
  if (!d || !(d->path = strdup(f->path ? f->path : ""))) {
    free(d);
    return -ENOMEM;
  }
  d->f = f;
  d->pid = sb->pid;
  d->mask = ev | ((uint32_t)arg & DN_MULTISHOT);
  d->next = r->dnotifies;
  r->dnotifies = d;
  f->dn_owner = r;
  return 0;
}

void dnotify_release(struct file *f)
{
  struct sb *r = f->dn_owner;
  for (struct dnotify **p = &r->dnotifies; *p;)
    if ((*p)->f == f)
      dn_free(p);
    else
      p = &(*p)->next;
  f->dn_owner = NULL;
}

void inotify_event(struct sb *sb, const char *path, uint32_t mask, uint32_t cookie, bool dir)
{
  struct sb *r = proc_first(sb);
  if (r->dnotifies) {
    const char *sl = strrchr(path, '/');
    if (sl)
      dnotify_event(sb, r, path, sl == path ? 1 : (size_t)(sl - path), mask, dir);
  }
  if (!r->inotifies)
    return;
  const char *slash = strrchr(path, '/');
  if (!slash)
    return;
  size_t dl = slash == path ? 1 : (size_t)(slash - path);
  const char *name = slash + 1;
  uint32_t isdir = dir ? IN_ISDIR : 0;
  bool any = false;
  for (struct inotify *in = r->inotifies; in; in = in->next)
    for (int i = 0; i < in->nw; i++) {
      struct watch *w = &in->w[i];
      bool parent = *name && strlen(w->path) == dl && !strncmp(w->path, path, dl);
      bool self = !strcmp(w->path, path);
      uint32_t m = mask;
      if (self) { /* the entry's own events */
        if (mask & IN_DELETE)
          m = IN_DELETE_SELF;
        else if (mask & (IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO))
          m = 0;
      }
      if (parent && (w->mask & mask)) {
        put(in, w->wd, mask | isdir, cookie, name);
        any = true;
      }
      if (self && (w->mask & m)) {
        put(in, w->wd, m | isdir, 0, NULL); /* (IN_ISDIR on a directory's own events too, as Linux) */
        any = true;
      }
      if (self && m == IN_DELETE_SELF) { /* the watch ends with its inode */
        put(in, w->wd, IN_IGNORED, 0, NULL);
        drop_watch(in, i--);
        any = true;
      } else if ((parent || self) && (w->mask & IN_ONESHOT) && (w->mask & (m | mask))) {
        put(in, w->wd, IN_IGNORED, 0, NULL);
        drop_watch(in, i--);
      }
    }
  if (any)
    wake_all(sb);
}

void inotify_moved(struct sb *sb, const char *from, const char *to, bool dir)
{
  struct sb *r = proc_first(sb);
  size_t fl = strlen(from);
  bool any = false;
  for (struct dnotify *d = r->dnotifies; d; d = d->next) { /* a registration follows its directory */
    if (strncmp(d->path, from, fl) || (d->path[fl] && d->path[fl] != '/'))
      continue;
    char *p = malloc(strlen(to) + strlen(d->path + fl) + 1);
    if (!p)
      continue;
    strcpy(p, to);
    strcat(p, d->path + fl);
    free(d->path);
    d->path = p;
  }
  for (struct inotify *in = r->inotifies; in; in = in->next)
    for (int i = 0; i < in->nw; i++) {
      struct watch *w = &in->w[i];
      if (strncmp(w->path, from, fl) || (w->path[fl] && w->path[fl] != '/'))
        continue;
      if (!w->path[fl] && (w->mask & IN_MOVE_SELF)) {
        put(in, w->wd, IN_MOVE_SELF | (dir ? IN_ISDIR : 0), 0, NULL);
        any = true;
        if (w->mask & IN_ONESHOT) {
          put(in, w->wd, IN_IGNORED, 0, NULL);
          drop_watch(in, i--);
          continue;
        }
      }
      char *p = malloc(strlen(to) + strlen(w->path + fl) + 1);
      if (!p)
        continue; /* (keeps the old path) */
      strcpy(p, to);
      strcat(p, w->path + fl);
      free(w->path);
      w->path = p;
    }
  if (any)
    wake_all(sb);
}

uint32_t inotify_cookie(struct sb *sb)
{
  static uint32_t next = 1; /* under the sandbox's lock; distinct enough across sandboxes */
  (void)sb;
  return __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
}

void inotify_release(struct file *f)
{
  struct inotify *in = f->inotify;
  if (!in)
    return;
  for (struct inotify **p = &in->owner->inotifies; *p; p = &(*p)->next)
    if (*p == in) {
      *p = in->next;
      break;
    }
  for (int i = 0; i < in->nw; i++)
    free(in->w[i].path);
  free(in->w);
  close(in->wr);
  in->owner->hostfiles--;
  free(in);
  f->inotify = NULL;
}

/* inotify_init, inotify_init1 */
long sys_inotify_init(struct sb *sb, const uint64_t a[6], long nr)
{
  int flags = nr == SYS_inotify_init1 ? (int)A(0) : 0;
  if (flags & ~(IN_CLOEXEC | IN_NONBLOCK))
    return -EINVAL;
  struct sb *r = proc_first(sb);
  if (r->hostfiles + 2 > SB_NOFILE(r))
    return -ENFILE; /* (the read end is counted by fd_install) */
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK | O_DIRECT) < 0)
    return errno == EMFILE || errno == ENFILE ? -ENFILE : -ENOMEM;
  struct inotify *in = calloc(1, sizeof *in);
  struct file *f = in ? file_new(F_HOST, p[0], O_RDONLY | (flags & IN_NONBLOCK), "anon_inode:inotify") : NULL;
  if (!f) {
    free(in);
    close(p[0]);
    close(p[1]);
    return -ENOMEM;
  }
  in->owner = r;
  in->wr = p[1];
  in->next_wd = 1;
  r->hostfiles++;
  f->inotify = in;
  in->next = r->inotifies;
  r->inotifies = in;
  int fd = fd_install(sb, f, 0, flags & IN_CLOEXEC);
  if (fd < 0)
    file_unref(f);
  return fd;
}

long sys_inotify_add_watch(struct sb *sb, const uint64_t a[6], long nr)
{
  struct file *f = fs_get(sb, (int)A(0));
  uint32_t mask = (uint32_t)A(2);
  if (!f)
    return -EBADF;
  if (!f->inotify)
    return -EINVAL;
  if (!(mask & IN_ALL_EVENTS) || (mask & IN_MASK_ADD && mask & IN_MASK_CREATE))
    return -EINVAL;
  char abs[PATH_MAX];
  bool isdir;
  long r = fs_canonical(sb, A(1), !(mask & IN_DONT_FOLLOW), abs, &isdir);
  if (r < 0)
    return r;
  if ((mask & IN_ONLYDIR) && !isdir)
    return -ENOTDIR;
  struct inotify *in = f->inotify;
  uint32_t keep = mask & (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK);
  for (int i = 0; i < in->nw; i++)
    if (!strcmp(in->w[i].path, abs)) {
      if (mask & IN_MASK_CREATE)
        return -EEXIST;
      in->w[i].mask = (mask & IN_MASK_ADD) ? in->w[i].mask | keep : keep;
      return in->w[i].wd;
    }
  struct watch *w = realloc(in->w, (size_t)(in->nw + 1) * sizeof *w);
  if (!w)
    return -ENOMEM;
  in->w = w;
  char *p = strdup(abs);
  if (!p)
    return -ENOMEM;
  in->w[in->nw++] = (struct watch){in->next_wd++, keep, p};
  return in->w[in->nw - 1].wd;
}

long sys_inotify_rm_watch(struct sb *sb, const uint64_t a[6], long nr)
{
  struct file *f = fs_get(sb, (int)A(0));
  int wd = (int)A(1);
  if (!f)
    return -EBADF;
  if (!f->inotify)
    return -EINVAL;
  struct inotify *in = f->inotify;
  for (int i = 0; i < in->nw; i++)
    if (in->w[i].wd == wd) {
      put(in, wd, IN_IGNORED, 0, NULL);
      drop_watch(in, i);
      wake_all(sb);
      return 0;
    }
  return -EINVAL;
}
