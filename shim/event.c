/* Readiness and the shim's event files: poll, ppoll, select, pselect6,
 * epoll, eventfd, signalfd.
 *
 * One function says what a file is ready for: file_poll, one case per file
 * kind, as Linux's f_op->poll. poll/select/epoll all scan with it, so a new
 * kind (timerfd) adds one case there and nothing else. Host fds (pipes,
 * stdio, host files) ask the host kernel (poll with a zero timeout); /tmp,
 * /proc and /dev files are always ready as on Linux (DEFAULT_POLLMASK;
 * /dev/random and /proc/PID/mounts readable only, as their Linux poll
 * methods say); eventfd, signalfd and epoll files compute it from the
 * shim's state.
 *
 * Waiting: every wait here has the one shape the threads need (see
 * timer.c): scan; if something is ready, return it; else block in sig_poll
 * on the host fds the scan collected (those of nested epolls too) until
 * the timeout, a host fd, a signal or a change of shim state (sig_poll
 * returns), then scan again. Nothing else sleeps. A wait nothing can end
 * (no host fd, no timeout, no timer) ends the sandbox with a report.
 *
 * ppoll, pselect6, epoll_pwait, epoll_pwait2 swap the call's signal mask in
 * for the wait as Linux does (sb->saved_mask, have_saved_mask, as
 * sigsuspend): a call that ends with EINTR leaves the old mask to be
 * restored when the handler returns (signal.c push_frame puts it in the
 * frame), any other result restores it at once, so a signal the call's mask
 * unblocked but that did not interrupt it stays pending.
 *
 * eventfd: a 64-bit counter (EFD_SEMAPHORE, EFD_NONBLOCK); signalfd: a
 * signal set; reading takes pending signals in it off sb->pending
 * (signal.c sig_take) as struct signalfd_siginfo.
 *
 * epoll: an epoll file holds a list of entries (struct epitem), keyed by
 * (file, fd) as Linux's; an entry holds no reference to its file: it is on
 * the file's watchers list and goes when the file's last reference does
 * (event_release), so closing one of two dup'ed fds keeps the entry, as on
 * Linux. Level-triggered entries report whenever the file is ready for
 * their events. Linux's edge-triggered entries report on wake-ups; the shim
 * has no wait queues, so an edge here is a readiness bit not set at the
 * entry's last report, or a wake-up counter of the file that moved
 * (f->wake_in/out: eventfd bumps them where Linux wakes its waiters). A
 * host pipe that receives more data while already readable is therefore no
 * new edge (Linux reports one). The front of the list is Linux's ready
 * list: an entry joins its back when it is found ready (at epoll_ctl, or by
 * a scan: the order of wake-ups between two scans is not known), a reported
 * level-triggered entry goes to its back again, so events come in Linux's
 * order and maxevents smaller than the ready count rotates through them. Nesting follows Linux's
 * rules (ELOOP for a cycle or a chain deeper than 5 epolls), so file_poll's
 * recursion through nested epolls is bounded.
 *
 * Snapshots save all three kinds (fs_save/fs_load call event_save/
 * event_load): the counter and EFD_SEMAPHORE, the signal set, the entries
 * (fd, the file by index, events, data, the last reported bits). Only the
 * new file types carry the new fields, so the state version stays 4 and
 * older state files load as before. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "shim/shim.h"

#define NS 1000000000ll
#define DEFAULT_POLLMASK (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)
#define EP_PRIVATE_BITS (EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE)
#define EPOLLEXCLUSIVE_OK_BITS (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE)
#define EP_MAX_NESTS 4
#define EP_MAX_EVENTS (INT32_MAX / (int)sizeof(struct epoll_event))
#define USER_TOP 0x7ffffffff000ull /* Linux's TASK_SIZE on x86-64 (4-level paging) */
#define UNKILLABLE ((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)))

struct epitem {
  struct epoll *ep;    /* the epoll it belongs to */
  struct file *f;      /* the file it watches (no reference) */
  int fd;
  uint32_t events;     /* as set, with EPOLLERR | EPOLLHUP; ONESHOT fired: EP_PRIVATE_BITS only */
  uint64_t data;
  short last;          /* the ready bits of its last report (edges) */
  uint64_t seen_in, seen_out; /* f->wake_in/out at its last report */
  bool on_rdl;         /* on Linux's ready list: the front of ep's list */
  struct epitem *prev, *next;   /* ep's list: the ready list in order, then the others */
  struct epitem *wprev, *wnext; /* f's watchers */
};

struct epoll {
  struct file *self;
  struct epitem *head, *tail;
  int n;
};

/* ---- readiness ---- */

static short item_poll(struct sb *sb, struct epitem *it, bool *fresh, int depth);

/* /proc/PID/... files have no poll method on Linux (epoll_ctl: EPERM),
 * except mounts; the others of the table (cpuinfo, sys/...) have one. */
static bool virt_is_pid_file(const struct file *f)
{
  const char *p = f->path;
  return !strncmp(p, "/proc/", 6) && p[6] >= '0' && p[6] <= '9';
}

static bool virt_is_mounts(const struct file *f)
{
  size_t n = strlen(f->path);
  return virt_is_pid_file(f) && n >= 7 && !strcmp(f->path + n - 7, "/mounts");
}

static short epoll_ready(struct sb *sb, struct epoll *ep, int depth)
{
  if (depth > EP_MAX_NESTS + 1)
    return 0;
  for (struct epitem *it = ep->head; it; it = it->next) {
    bool fresh;
    if (item_poll(sb, it, &fresh, depth + 1) && fresh)
      return POLLIN | POLLRDNORM;
  }
  return 0;
}

static short file_poll_depth(struct sb *sb, struct file *f, int depth)
{
  switch (f->type) {
  case F_HOST: {
    struct pollfd p = {.fd = f->hostfd,
                       .events = POLLIN | POLLPRI | POLLOUT | POLLRDHUP | POLLRDNORM | POLLRDBAND | POLLWRNORM |
                                 POLLWRBAND};
    if (poll(&p, 1, 0) != 1)
      return 0;
    if (f->sock)
      return net_poll(f, p.revents); /* (a local TCP connection's readiness is Linux's, not its host pair's) */
    return fifo_hup_hidden(f) ? p.revents & ~POLLHUP : p.revents; /* a FIFO no writer opened yet */
  }
  case F_DIR:
  case F_TMP:
  case F_TMPDIR:
  case F_VDIR:
    return DEFAULT_POLLMASK;
  case F_VIRT:
    return virt_is_mounts(f) ? POLLIN | POLLRDNORM : DEFAULT_POLLMASK;
  case F_DEV:
    return f->dev == 8 ? POLLIN | POLLRDNORM : DEFAULT_POLLMASK; /* /dev/random: random_poll */
  case F_EVENTFD: {
    short r = 0;
    if (f->count)
      r |= POLLIN;
    if (f->count == UINT64_MAX)
      r |= POLLERR;
    if (f->count < UINT64_MAX - 1)
      r |= POLLOUT;
    return r;
  }
  case F_SIGNALFD:
    return (sb->pending | sb->tpending) & f->sigset ? POLLIN : 0;
  case F_EPOLL:
    return epoll_ready(sb, f->ep, depth);
  case F_TIMERFD:
    return timerfd_poll(sb, f);
  case F_PIDFD: { /* Linux's pidfd_poll: readable once the process ended, hung up once reaped */
    const struct sb *p = pidfd_proc(sb, f);
    return !p ? POLLIN | POLLRDNORM | POLLHUP : p->zombie ? POLLIN | POLLRDNORM : 0;
  }
  }
  return POLLNVAL;
}

short file_poll(struct sb *sb, struct file *f) { return file_poll_depth(sb, f, 0); }

/* An entry's ready bits now (what it would report), *fresh whether that
 * is a report (level-triggered: any; edge-triggered: a new edge). Forgets
 * the bits that went away, so they are edges again when they come back. */
static short item_poll(struct sb *sb, struct epitem *it, bool *fresh, int depth)
{
  *fresh = false;
  uint32_t want = it->events & ~(uint32_t)EP_PRIVATE_BITS;
  if (!want)
    return 0;
  short rev = (short)(file_poll_depth(sb, it->f, depth) & want);
  it->last &= rev;
  if (!rev)
    return 0;
  if (!(it->events & EPOLLET))
    *fresh = true;
  else
    *fresh = (rev & ~it->last) || ((want & EPOLLIN) && it->f->wake_in != it->seen_in) ||
             ((want & EPOLLOUT) && it->f->wake_out != it->seen_out);
  return rev;
}

/* ---- waiting ---- */

/* The host fds a wait blocks on (past HOSTS_MAX the wait polls every
 * 10 ms), and the earliest due time of its timerfds (CLOCK_MONOTONIC ns,
 * 0: none). */
#define HOSTS_MAX 1024
struct hostset {
  struct pollfd p[HOSTS_MAX];
  unsigned n;
  bool over;
  uint64_t due;
};

static void host_add(struct hostset *h, int fd, short ev)
{
  if (h->n == HOSTS_MAX) {
    h->over = true;
    return;
  }
  h->p[h->n++] = (struct pollfd){.fd = fd, .events = ev};
}

/* What a wait for f (events ev) blocks on: its host fd, or those of a
 * nested epoll's entries (an edge-triggered one only for bits it has not
 * reported: its host fd stays ready). */
static void collect(struct file *f, short ev, struct hostset *h, int depth)
{
  if (f->type == F_HOST) {
    if (!fifo_hup_hidden(f) && !(f->sock && net_hup_hidden(f))) /* (else its host fd says POLLHUP at once: a writer's open wakes the wait) */
      host_add(h, f->hostfd, ev); /* events 0 still wakes on POLLERR, POLLHUP */
  } else if (f->type == F_TIMERFD) {
    uint64_t due = timerfd_due(f);
    if (due && (ev & POLLIN) && (!h->due || due < h->due))
      h->due = due;
  } else if (f->type == F_EPOLL && depth <= EP_MAX_NESTS + 1) {
    for (struct epitem *it = f->ep->head; it; it = it->next) {
      short want = (short)(it->events & ~(uint32_t)EP_PRIVATE_BITS);
      if (it->events & EPOLLET)
        want &= ~it->last;
      if (want)
        collect(it->f, want & ~(POLLERR | POLLHUP), h, depth + 1);
    }
  }
}

/* scan: what is ready (> 0), 0, or -errno; fills h with what to block on. */
typedef long scan_fn(struct sb *sb, void *ctx, struct hostset *h);

/* The wait of poll, select and epoll_wait: scan until something is ready,
 * the timeout passes (timeout_ns < 0: none), or a signal interrupts
 * (-EINTR; with a zero timeout only when sig_at_zero, as poll and select
 * look for signals before the timeout and epoll does not). */
static long ready_wait(struct sb *sb, scan_fn *scan, void *ctx, int64_t timeout_ns, bool sig_at_zero)
{
  uint64_t deadline = timeout_ns > 0 ? mono_ns() + (uint64_t)timeout_ns : 0;
  struct hostset *h = malloc(sizeof *h);
  if (!h)
    return -ENOMEM;
  long r;
  for (;;) {
    h->n = 0;
    h->over = false;
    h->due = 0;
    r = scan(sb, ctx, h);
    if (r != 0)
      break;
    if (timeout_ns != 0 || sig_at_zero) {
      itimer_poll(sb);
      if (sb->exited || sb->timed_out || (sb->cur && sb->cur->exited) || sig_deliverable(sb)) {
        r = -EINTR;
        break;
      }
    }
    if (timeout_ns == 0)
      break;
    int ms = -1;
    if (timeout_ns > 0) {
      uint64_t now = mono_ns();
      if (now >= deadline)
        break;
      uint64_t left = (deadline - now + 999999) / 1000000;
      ms = left > INT32_MAX ? INT32_MAX : (int)left;
    }
    if (h->over && (ms < 0 || ms > 10))
      ms = 10;
    if (h->due) {
      uint64_t now = mono_ns(), l = h->due > now ? (h->due - now + 999999) / 1000000 : 0;
      if (ms < 0 || l < (uint64_t)ms)
        ms = (int)l;
    }
    r = sig_poll(sb, h->p, h->n, ms);
    if (r < 0 && r != -EAGAIN) /* -EAGAIN: another task woke it: scan again */
      break;
  }
  free(h);
  return r;
}

/* The timeout of a call in ns from a timespec (EINVAL if not valid, as
 * poll_select_set_timeout), -1 for none. */
static long get_timeout(struct sb *sb, uint64_t addr, int64_t *ns)
{
  *ns = -1;
  if (!addr)
    return 0;
  struct timespec ts;
  if (mm_copy_in(sb, &ts, addr, sizeof ts) < 0)
    return -EFAULT;
  if (!ts_valid(&ts))
    return -EINVAL;
  *ns = ts.tv_sec >= INT64_MAX / NS - 1 ? INT64_MAX / 2 : ts.tv_sec * NS + ts.tv_nsec;
  return 0;
}

/* ppoll, pselect6, epoll_pwait(2): the call's signal mask in place of the
 * thread's for the wait (none: addr 0). *swapped: whether it was. */
static long mask_in(struct sb *sb, uint64_t addr, uint64_t size, bool *swapped)
{
  *swapped = false;
  if (!addr)
    return 0;
  if (size != 8)
    return -EINVAL;
  uint64_t set;
  if (mm_copy_in(sb, &set, addr, 8) < 0)
    return -EFAULT;
  sb->saved_mask = sb->sigmask;
  sb->have_saved_mask = true;
  sb->sigmask = set & ~UNKILLABLE;
  *swapped = true;
  return 0;
}

/* After the wait: the old mask back unless the call ends with EINTR (then
 * the handler's frame has it, or signal_after_syscall restores it). */
static long mask_out(struct sb *sb, bool swapped, long r)
{
  if (swapped && r != -EINTR && sb->have_saved_mask) {
    sb->sigmask = sb->saved_mask;
    sb->have_saved_mask = false;
  }
  return r;
}

/* The time left of a wait that started at t0 with timeout ns (for select's
 * and ppoll's write-back). */
static int64_t time_left(uint64_t t0, int64_t ns)
{
  int64_t left = ns - (int64_t)(mono_ns() - t0);
  return left < 0 ? 0 : left;
}

/* ---- poll, ppoll ---- */

struct poll_ctx {
  struct pollfd *p;
  uint64_t n;
};

static long poll_scan(struct sb *sb, void *ctx, struct hostset *h)
{
  struct poll_ctx *c = ctx;
  long ready = 0;
  for (uint64_t i = 0; i < c->n; i++) {
    struct pollfd *p = &c->p[i];
    p->revents = 0;
    if (p->fd < 0)
      continue;
    struct file *f = fs_get(sb, p->fd);
    if (!f) {
      p->revents = POLLNVAL;
    } else {
      p->revents = (short)(file_poll(sb, f) & (p->events | POLLERR | POLLHUP));
      collect(f, p->events, h, 0);
    }
    ready += p->revents != 0;
  }
  return ready;
}

static long do_poll(struct sb *sb, uint64_t fds, uint64_t n, int64_t timeout_ns)
{
  if (n > (uint64_t)fd_limit(sb))
    return -EINVAL;
  struct pollfd *p = mm_ptr(sb, fds, n * sizeof *p, PROT_READ | PROT_WRITE);
  if (!p && n)
    return -EFAULT;
  /* Scan a copy: the program's array is written once, at the end. */
  struct pollfd *q = malloc((n ? n : 1) * sizeof *q);
  if (!q)
    return -ENOMEM;
  memcpy(q, p, n * sizeof *q);
  struct poll_ctx c = {q, n};
  long r = ready_wait(sb, poll_scan, &c, timeout_ns, true);
  /* The wait released the lock: the array is looked up again. */
  if (r >= 0 && n && !(p = mm_ptr(sb, fds, n * sizeof *p, PROT_READ | PROT_WRITE)))
    r = -EFAULT;
  if (r >= 0)
    for (uint64_t i = 0; i < n; i++)
      p[i].revents = q[i].revents;
  free(q);
  return r;
}

long sys_poll(struct sb *sb, const uint64_t a[6], long nr)
{
  int ms = (int)A(2);
  return do_poll(sb, A(0), A(1), ms < 0 ? -1 : (int64_t)ms * 1000000);
}

long sys_ppoll(struct sb *sb, const uint64_t a[6], long nr)
{
  int64_t ns;
  long r = get_timeout(sb, A(2), &ns);
  if (r < 0)
    return r;
  bool swapped;
  if ((r = mask_in(sb, A(3), A(4), &swapped)) < 0)
    return r;
  uint64_t t0 = mono_ns();
  r = do_poll(sb, A(0), A(1), ns);
  if (ns > 0) { /* the time left, as Linux writes it back (EINTR too) */
    int64_t left = time_left(t0, ns);
    struct timespec tl = {left / NS, left % NS};
    mm_copy_out(sb, A(2), &tl, sizeof tl);
  }
  return mask_out(sb, swapped, r);
}

/* ---- select, pselect6 ---- */

#define SEL_WORDS 256 /* 16384 fds */
#define POLLIN_SET (POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR)
#define POLLOUT_SET (POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR)
#define POLLEX_SET (POLLPRI)

struct sel_ctx {
  int64_t nfds;
  uint64_t in[3][SEL_WORDS], out[3][SEL_WORDS];
};

static long select_scan(struct sb *sb, void *ctx, struct hostset *h)
{
  struct sel_ctx *c = ctx;
  long count = 0;
  memset(c->out, 0, sizeof c->out);
  for (int64_t fd = 0; fd < c->nfds; fd++) {
    uint64_t w = (uint64_t)fd / 64, bit = 1ull << (fd % 64);
    bool r = c->in[0][w] & bit, wr = c->in[1][w] & bit, ex = c->in[2][w] & bit;
    if (!r && !wr && !ex)
      continue;
    struct file *f = fs_get(sb, (int)fd);
    if (!f)
      return -EBADF;
    short rev = file_poll(sb, f);
    if (r && (rev & POLLIN_SET))
      c->out[0][w] |= bit, count++;
    if (wr && (rev & POLLOUT_SET))
      c->out[1][w] |= bit, count++;
    if (ex && (rev & POLLEX_SET))
      c->out[2][w] |= bit, count++;
    collect(f, (short)((r ? POLLIN : 0) | (wr ? POLLOUT : 0) | (ex ? POLLPRI : 0)), h, 0);
  }
  return count;
}

/* select, pselect6: the fd sets are read, every set fd must be open (else
 * EBADF, as Linux), the sets are rewritten with the ready ones, and the
 * timeout (select's timeval, pselect6's timespec) gets the time left. */
static long do_select(struct sb *sb, long nr, const uint64_t a[6])
{
  int64_t nfds = (int)A(0); /* an int: the upper half of the register is not looked at */
  if (nfds < 0)
    return -EINVAL;
  if (nfds > SEL_WORDS * 64)
    nfds = SEL_WORDS * 64; /* Linux clips nfds to its fd table's size; this is far above MAX_FDS */
  uint64_t words = ((uint64_t)nfds + 63) / 64;
  int64_t ns = -1;
  if (A(4)) {
    struct timespec ts;
    if (nr == SYS_select) {
      struct timeval tv;
      if (mm_copy_in(sb, &tv, A(4), sizeof tv) < 0)
        return -EFAULT;
      if (tv.tv_sec < 0 || tv.tv_usec < 0)
        return -EINVAL;
      ts.tv_sec = tv.tv_sec + tv.tv_usec / 1000000;
      ts.tv_nsec = tv.tv_usec % 1000000 * 1000;
    } else {
      if (mm_copy_in(sb, &ts, A(4), sizeof ts) < 0)
        return -EFAULT;
      if (!ts_valid(&ts))
        return -EINVAL;
    }
    ns = ts.tv_sec >= INT64_MAX / NS - 1 ? INT64_MAX / 2 : ts.tv_sec * NS + ts.tv_nsec;
  }
  bool swapped = false;
  if (nr == SYS_pselect6 && A(5)) {
    uint64_t sig[2]; /* { const sigset_t *ss; size_t ss_len } */
    if (mm_copy_in(sb, sig, A(5), sizeof sig) < 0)
      return -EFAULT;
    long r = mask_in(sb, sig[0], sig[1], &swapped);
    if (r < 0)
      return r;
  }
  struct sel_ctx *c = calloc(1, sizeof *c);
  if (!c)
    return mask_out(sb, swapped, -ENOMEM);
  c->nfds = nfds;
  long r = 0;
  for (int k = 0; k < 3 && r == 0; k++)
    if (A(1 + k) && words && mm_copy_in(sb, c->in[k], A(1 + k), words * 8) < 0)
      r = -EFAULT;
  uint64_t t0 = mono_ns();
  if (r == 0)
    r = ready_wait(sb, select_scan, c, ns, true);
  if (r >= 0)
    for (int k = 0; k < 3; k++)
      if (A(1 + k) && words && mm_copy_out(sb, A(1 + k), c->out[k], words * 8) < 0)
        r = -EFAULT;
  free(c);
  if (A(4) && ns > 0 && (r >= 0 || r == -EINTR)) {
    int64_t left = r > 0 || r == -EINTR ? time_left(t0, ns) : 0;
    if (nr == SYS_select) {
      struct timeval tv = {left / NS, left % NS / 1000};
      mm_copy_out(sb, A(4), &tv, sizeof tv);
    } else {
      struct timespec tl = {left / NS, left % NS};
      mm_copy_out(sb, A(4), &tl, sizeof tl);
    }
  }
  return mask_out(sb, swapped, r);
}

long sys_select(struct sb *sb, const uint64_t a[6], long nr) { return do_select(sb, nr, a); }

/* ---- eventfd ---- */

static struct file *event_file(enum file_type t, int flags, const char *name)
{
  return file_new(t, -1, O_RDWR | (flags & O_NONBLOCK), name);
}

/* eventfd, eventfd2 */
long sys_eventfd(struct sb *sb, const uint64_t a[6], long nr)
{
  int flags = nr == SYS_eventfd2 ? (int)A(1) : 0;
  if (flags & ~(EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE))
    return -EINVAL;
  struct file *f = event_file(F_EVENTFD, flags, "anon_inode:[eventfd]");
  if (!f)
    return -ENOMEM;
  f->count = (uint32_t)A(0);
  f->semaphore = flags & EFD_SEMAPHORE;
  int fd = fd_install(sb, f, 0, flags & EFD_CLOEXEC);
  if (fd < 0)
    file_unref(f);
  return fd;
}

/* Wait until f is ready for ev (a file of the shim: no host fd to poll):
 * 0, or -RESTARTSYS when a signal interrupts (Linux's ERESTARTSYS). */
static long wait_file(struct sb *sb, struct file *f, short ev)
{
  for (;;) {
    if (file_poll(sb, f) & ev)
      return 0;
    long r = sig_poll(sb, NULL, 0, -1);
    if (r < 0 && r != -EAGAIN) /* -EAGAIN: another task woke it: look again */
      return r == -EINTR ? -RESTARTSYS : r;
  }
}

static long efd_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len)
{
  if (len < 8)
    return -EINVAL;
  if (!f->count) {
    if (f->flags & O_NONBLOCK)
      return -EAGAIN;
    long r = wait_file(sb, f, POLLIN);
    if (r < 0)
      return r;
  }
  uint64_t v = f->semaphore ? 1 : f->count;
  f->count -= v;
  f->wake_out++;
  wake_all(sb);
  return mm_copy_out(sb, buf, &v, 8) < 0 ? -EFAULT : 8;
}

static long efd_write(struct sb *sb, struct file *f, const void *p, uint64_t len)
{
  if (len < 8)
    return -EINVAL;
  uint64_t v;
  memcpy(&v, p, 8);
  if (v == UINT64_MAX)
    return -EINVAL;
  while (UINT64_MAX - f->count <= v) {
    if (f->flags & O_NONBLOCK)
      return -EAGAIN;
    /* Wait for a read to make room (another thread's: with one thread
     * only a signal ends this). */
    for (;;) {
      long r = sig_poll(sb, NULL, 0, -1);
      if (r < 0 && r != -EAGAIN)
        return r == -EINTR ? -RESTARTSYS : r;
      if (UINT64_MAX - f->count > v)
        break;
    }
  }
  f->count += v;
  f->wake_in++;
  wake_all(sb);
  return 8;
}

/* ---- signalfd ---- */

/* signalfd, signalfd4 */
long sys_signalfd(struct sb *sb, const uint64_t a[6], long nr)
{
  int ufd = (int)A(0);
  int flags = nr == SYS_signalfd4 ? (int)A(3) : 0;
  if (flags & ~(SFD_CLOEXEC | SFD_NONBLOCK))
    return -EINVAL;
  if (A(2) != 8)
    return -EINVAL;
  uint64_t set;
  if (mm_copy_in(sb, &set, A(1), 8) < 0)
    return -EFAULT;
  set &= ~UNKILLABLE;
  if (ufd != -1) {
    struct file *f = fs_get(sb, ufd);
    if (!f)
      return -EBADF;
    if (f->type != F_SIGNALFD)
      return -EINVAL;
    f->sigset = set;
    wake_all(sb);
    return ufd;
  }
  struct file *f = event_file(F_SIGNALFD, flags, "anon_inode:[signalfd]");
  if (!f)
    return -ENOMEM;
  f->sigset = set;
  int fd = fd_install(sb, f, 0, flags & SFD_CLOEXEC);
  if (fd < 0)
    file_unref(f);
  return fd;
}

static long sfd_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len)
{
  uint64_t n = len / sizeof(struct signalfd_siginfo);
  if (!n)
    return -EINVAL;
  if (n > 64) /* at most 64 signals are pending at once here */
    n = 64;
  struct signalfd_siginfo out[64];
  long total = 0;
  for (uint64_t i = 0; i < n; i++) {
    int code, sig = sig_take(sb, f->sigset, &code);
    if (!sig) {
      if (i)
        break; /* only the first one waits */
      if (f->flags & O_NONBLOCK)
        return -EAGAIN;
      long r = wait_file(sb, f, POLLIN);
      if (r < 0)
        return r;
      i--;
      continue;
    }
    struct signalfd_siginfo si = {.ssi_signo = (uint32_t)sig, .ssi_code = code};
    if (code == SI_USER) {
      si.ssi_pid = (uint32_t)sb->pid;
      si.ssi_uid = (uint32_t)sb->uid;
    }
    out[i] = si;
    total += (long)sizeof si;
  }
  return mm_copy_out(sb, buf, out, (uint64_t)total) < 0 ? -EFAULT : total;
}

/* ---- read and write of the event files (fs.c do_read, do_write) ---- */

long event_read(struct sb *sb, struct file *f, uint64_t buf, uint64_t len)
{
  switch (f->type) {
  case F_EVENTFD:
    return efd_read(sb, f, buf, len);
  case F_SIGNALFD:
    return sfd_read(sb, f, buf, len);
  default:
    return -EINVAL; /* epoll: no read method */
  }
}

long event_write(struct sb *sb, struct file *f, const void *p, uint64_t len)
{
  return f->type == F_EVENTFD ? efd_write(sb, f, p, len) : -EINVAL;
}

/* ---- epoll ---- */

static void item_unlink(struct epitem *it)
{
  struct epoll *ep = it->ep;
  *(it->prev ? &it->prev->next : &ep->head) = it->next;
  *(it->next ? &it->next->prev : &ep->tail) = it->prev;
  it->prev = it->next = NULL;
}

static void item_append(struct epitem *it)
{
  struct epoll *ep = it->ep;
  it->prev = ep->tail;
  it->next = NULL;
  *(ep->tail ? &ep->tail->next : &ep->head) = it;
  ep->tail = it;
}

/* Onto the back of the ready list (after the last entry on it). */
static void rdl_append(struct epitem *it)
{
  struct epoll *ep = it->ep;
  item_unlink(it);
  struct epitem *after = NULL;
  for (struct epitem *x = ep->head; x && x->on_rdl; x = x->next)
    after = x;
  it->on_rdl = true;
  it->prev = after;
  it->next = after ? after->next : ep->head;
  *(it->next ? &it->next->prev : &ep->tail) = it;
  *(after ? &after->next : &ep->head) = it;
}

/* Off the ready list (to the back of the others). */
static void rdl_remove(struct epitem *it)
{
  item_unlink(it);
  it->on_rdl = false;
  item_append(it);
}

static void item_free(struct epitem *it)
{
  item_unlink(it);
  it->ep->n--;
  struct file *f = it->f;
  *(it->wprev ? &it->wprev->wnext : &f->watchers) = it->wnext;
  if (it->wnext)
    it->wnext->wprev = it->wprev;
  free(it);
}

void event_release(struct file *f)
{
  while (f->watchers)
    item_free(f->watchers);
  if (f->ep) {
    while (f->ep->head)
      item_free(f->ep->head);
    free(f->ep);
    f->ep = NULL;
  }
}

static struct epitem *item_new(struct epoll *ep, struct file *f, int fd)
{
  struct epitem *it = calloc(1, sizeof *it);
  if (!it)
    return NULL;
  it->ep = ep;
  it->f = f;
  it->fd = fd;
  item_append(it);
  ep->n++;
  it->wnext = f->watchers;
  if (f->watchers)
    f->watchers->wprev = it;
  f->watchers = it;
  return it;
}

static struct epitem *item_find(struct epoll *ep, struct file *f, int fd)
{
  for (struct epitem *it = ep->head; it; it = it->next)
    if (it->f == f && it->fd == fd)
      return it;
  return NULL;
}

static struct file *epoll_new(void)
{
  struct file *f = event_file(F_EPOLL, 0, "anon_inode:[eventpoll]");
  if (!f)
    return NULL;
  if (!(f->ep = calloc(1, sizeof *f->ep))) {
    file_unref(f);
    return NULL;
  }
  f->ep->self = f;
  return f;
}

/* epoll_create, epoll_create1 */
long sys_epoll_create(struct sb *sb, const uint64_t a[6], long nr)
{
  int flags = 0;
  if (nr == SYS_epoll_create && (int)A(0) <= 0)
    return -EINVAL;
  if (nr == SYS_epoll_create1 && ((flags = (int)A(0)) & ~EPOLL_CLOEXEC))
    return -EINVAL;
  struct file *f = epoll_new();
  if (!f)
    return -ENOMEM;
  int fd = fd_install(sb, f, 0, flags & EPOLL_CLOEXEC);
  if (fd < 0)
    file_unref(f);
  return fd;
}

/* Whether f has a poll method on Linux (epoll_ctl: EPERM without). */
static bool can_poll(struct file *f)
{
  switch (f->type) {
  case F_HOST: { /* the host says: regular files and /dev/null have none, pipes and terminals do */
    int e = epoll_create1(EPOLL_CLOEXEC);
    if (e < 0)
      return true;
    struct epoll_event ev = {.events = 0};
    bool ok = epoll_ctl(e, EPOLL_CTL_ADD, f->hostfd, &ev) == 0;
    close(e);
    return ok;
  }
  case F_DIR:
  case F_TMP:
  case F_TMPDIR:
  case F_VDIR:
    return false;
  case F_DEV:
    return f->dev == 8;
  case F_VIRT:
    return !virt_is_pid_file(f) || virt_is_mounts(f);
  case F_EVENTFD:
  case F_SIGNALFD:
  case F_EPOLL:
  case F_TIMERFD:
  case F_PIDFD:
    return true;
  }
  return false;
}

/* Linux's ep_loop_check: the depth of epolls below ep (itself 0), that
 * above it, and whether target is below ep. */
static int depth_down(struct epoll *ep, struct epoll *target, int depth)
{
  int result = 0;
  for (struct epitem *it = ep->head; it; it = it->next) {
    if (it->f->type != F_EPOLL)
      continue;
    struct epoll *e = it->f->ep;
    if (e == target || depth > EP_MAX_NESTS)
      return EP_MAX_NESTS + 1;
    int d = depth_down(e, target, depth + 1) + 1;
    if (d > result)
      result = d;
    if (result > EP_MAX_NESTS)
      break;
  }
  return result;
}

static int depth_up(struct epoll *ep, int depth)
{
  int result = 0;
  if (depth > EP_MAX_NESTS)
    return EP_MAX_NESTS + 1;
  for (struct epitem *it = ep->self->watchers; it; it = it->wnext) {
    int d = depth_up(it->ep, depth + 1) + 1;
    if (d > result)
      result = d;
  }
  return result;
}

static bool loop_check(struct epoll *into, struct epoll *to)
{
  int down = depth_down(to, into, 0);
  if (down > EP_MAX_NESTS)
    return false;
  return down + 1 + depth_up(into, 0) <= EP_MAX_NESTS;
}

long sys_epoll_ctl(struct sb *sb, const uint64_t a[6], long nr)
{
  int epfd = (int)A(0), op = (int)A(1), fd = (int)A(2);
  struct epoll_event ev = {0};
  bool has_event = op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD;
  if (has_event && mm_copy_in(sb, &ev, A(3), sizeof ev) < 0)
    return -EFAULT;
  struct file *ef = fs_get(sb, epfd), *tf = fs_get(sb, fd);
  if (!ef || !tf)
    return -EBADF;
  if (!can_poll(tf))
    return -EPERM;
  if (has_event)
    ev.events &= ~(uint32_t)EPOLLWAKEUP; /* needs CAP_BLOCK_SUSPEND: dropped, as Linux does without it */
  if (ef == tf || ef->type != F_EPOLL)
    return -EINVAL;
  if (has_event && (ev.events & EPOLLEXCLUSIVE)) {
    if (op == EPOLL_CTL_MOD)
      return -EINVAL;
    if (op == EPOLL_CTL_ADD && (tf->type == F_EPOLL || (ev.events & ~(uint32_t)EPOLLEXCLUSIVE_OK_BITS)))
      return -EINVAL;
  }
  struct epoll *ep = ef->ep;
  if (op == EPOLL_CTL_ADD && tf->type == F_EPOLL && !loop_check(ep, tf->ep))
    return -ELOOP;
  struct epitem *it = item_find(ep, tf, fd);
  switch (op) {
  case EPOLL_CTL_ADD:
    if (it)
      return -EEXIST;
    if (!(it = item_new(ep, tf, fd)))
      return -ENOMEM;
    break;
  case EPOLL_CTL_DEL:
    if (!it)
      return -ENOENT;
    item_free(it);
    wake_all(sb);
    return 0;
  case EPOLL_CTL_MOD:
    if (!it)
      return -ENOENT;
    if (it->events & EPOLLEXCLUSIVE)
      return -EINVAL;
    break;
  default:
    return -EINVAL;
  }
  /* ADD and MOD: the entry is polled again, a ready file reports at once
   * (edge-triggered too), as Linux queues it */
  it->events = ev.events | EPOLLERR | EPOLLHUP;
  it->data = ev.data.u64;
  it->last = 0;
  it->seen_in = tf->wake_in;
  it->seen_out = tf->wake_out;
  bool fresh;
  if (!it->on_rdl && item_poll(sb, it, &fresh, 1) && fresh)
    rdl_append(it);
  wake_all(sb);
  return 0;
}

struct ep_ctx {
  struct epoll *ep;
  uint64_t out; /* guest address of max entries */
  int max;
};

/* Linux's ep_send_events over an emulated ready list: entries that became
 * ready since the last scan join its back (the wake-ups the shim has no
 * queues for), then it is walked from the front: an entry no longer ready
 * leaves it, a reported level-triggered one goes to its back, a reported
 * edge-triggered or one-shot one leaves it. */
static long epoll_scan(struct sb *sb, void *ctx, struct hostset *h)
{
  struct ep_ctx *c = ctx;
  struct epoll *ep = c->ep;
  bool fresh;
  for (struct epitem *it = ep->head, *next; it; it = next) {
    next = it->next;
    if (!it->on_rdl && item_poll(sb, it, &fresh, 1) && fresh)
      rdl_append(it);
  }
  int nready = 0;
  for (struct epitem *it = ep->head; it && it->on_rdl; it = it->next)
    nready++;
  CLEANUP_FREE struct epitem **rdl = malloc((size_t)(2 * nready + 2) * sizeof *rdl);
  if (!rdl)
    return -ENOMEM;
  struct epitem **back = rdl + nready + 1;
  int nr = 0, nb = 0, n = 0;
  for (struct epitem *it = ep->head; it && it->on_rdl && nr < nready; it = it->next)
    rdl[nr++] = it;
  for (int i = 0; i < nr && n < c->max; i++) {
    struct epitem *it = rdl[i];
    short rev = item_poll(sb, it, &fresh, 1);
    if (!fresh) {
      rdl_remove(it);
      continue;
    }
    struct epoll_event e = {.events = (uint16_t)rev, .data.u64 = it->data};
    /* Linux checks the buffer when it writes an event: a bad one is
     * EFAULT for the first, the end of the list for a later one */
    if (mm_copy_out(sb, c->out + (uint64_t)n * sizeof e, &e, sizeof e) < 0) {
      if (!n)
        return -EFAULT;
      break;
    }
    n++;
    it->last = rev;
    it->seen_in = it->f->wake_in;
    it->seen_out = it->f->wake_out;
    if (it->events & EPOLLONESHOT)
      it->events &= EP_PRIVATE_BITS;
    if (it->events & (EPOLLET | EPOLLONESHOT))
      rdl_remove(it);
    else
      back[nb++] = it;
  }
  for (int i = 0; i < nb; i++)
    rdl_append(back[i]);
  if (!n)
    collect(ep->self, POLLIN, h, 0);
  return n;
}

/* epoll_wait, epoll_pwait, epoll_pwait2 */
long sys_epoll_wait(struct sb *sb, const uint64_t a[6], long nr)
{
  int epfd = (int)A(0), max = (int)A(2);
  int64_t ns = -1;
  long r;
  if (nr == SYS_epoll_pwait2) {
    if ((r = get_timeout(sb, A(3), &ns)) < 0)
      return r;
  } else if ((int)A(3) >= 0) {
    ns = (int64_t)(int)A(3) * 1000000;
  }
  bool swapped = false;
  if (nr != SYS_epoll_wait && (r = mask_in(sb, A(4), A(5), &swapped)) < 0)
    return r;
  if (max <= 0 || max > EP_MAX_EVENTS)
    return mask_out(sb, swapped, -EINVAL);
  /* access_ok: the buffer lies in user space (its pages are checked as
   * events are written) */
  if (A(1) + (uint64_t)max * sizeof(struct epoll_event) > USER_TOP || A(1) > USER_TOP)
    return mask_out(sb, swapped, -EFAULT);
  struct file *f = fs_get(sb, epfd);
  if (!f)
    return mask_out(sb, swapped, -EBADF);
  if (f->type != F_EPOLL)
    return mask_out(sb, swapped, -EINVAL);
  struct ep_ctx c = {f->ep, A(1), max};
  f->refs++; /* the wait may release the lock: a close by another thread must not free it */
  r = ready_wait(sb, epoll_scan, &c, ns, false);
  file_unref(f);
  return mask_out(sb, swapped, r);
}

bool epoll_watches_fd0(struct sb *sb, int epfd)
{
  struct file *f = fs_get(sb, epfd), *in = fs_get(sb, 0);
  if (!f || f->type != F_EPOLL || !in)
    return false;
  for (struct epitem *it = f->ep->head; it; it = it->next)
    if (it->f == in && it->fd == 0 && (it->events & EPOLLIN))
      return true;
  return false;
}

/* ---- state files (fs.c fs_save, fs_load) ---- */

/* Loading: an epoll's entries by file index, until every file exists. */
struct pending_item {
  uint64_t fd, file, events, data, last;
};
struct pending {
  uint64_t n;
  struct pending_item it[];
};

int event_save(struct sb *sb, struct file *f, struct wbuf *w)
{
  (void)sb;
  switch (f->type) {
  case F_EVENTFD:
    w_u64(w, f->count);
    w_u64(w, f->semaphore);
    break;
  case F_SIGNALFD:
    w_u64(w, f->sigset);
    break;
  case F_EPOLL:
    w_u64(w, (uint64_t)f->ep->n);
    for (struct epitem *it = f->ep->head; it; it = it->next) {
      if (it->f->save_id < 0) /* cannot be: a file without an fd has no entries */
        return cf_fail(ENOTSUP, "an epoll entry watches a file that is not open");
      w_u64(w, (uint64_t)it->fd);
      w_u64(w, (uint64_t)it->f->save_id);
      w_u64(w, it->events);
      w_u64(w, it->data);
      w_u64(w, (uint64_t)(uint16_t)it->last);
    }
    break;
  default:
    break;
  }
  return 0;
}

int event_load(struct sb *sb, struct file *f, struct rbuf *r, uint64_t nfiles)
{
  (void)sb;
  switch (f->type) {
  case F_EVENTFD:
    f->count = r_u64(r);
    f->semaphore = r_u64(r) != 0;
    return r->err || f->count == UINT64_MAX ? -1 : 0;
  case F_SIGNALFD:
    f->sigset = r_u64(r) & ~UNKILLABLE;
    return r->err ? -1 : 0;
  case F_EPOLL: {
    uint64_t n = r_u64(r);
    if (r->err || n > MAX_FDS * 4)
      return -1;
    if (!(f->ep = calloc(1, sizeof *f->ep)))
      return -1;
    f->ep->self = f;
    struct pending *p = malloc(sizeof *p + (n ? n : 1) * sizeof p->it[0]);
    if (!p)
      return -1;
    p->n = n;
    f->vdata = (char *)p; /* until event_link_all */
    for (uint64_t i = 0; i < n; i++) {
      struct pending_item *q = &p->it[i];
      q->fd = r_u64(r), q->file = r_u64(r), q->events = r_u64(r), q->data = r_u64(r), q->last = r_u64(r);
      if (r->err || q->fd >= MAX_FDS || q->file >= nfiles || q->events > UINT32_MAX || q->last > 0xffff)
        return -1;
    }
    return 0;
  }
  default:
    return -1;
  }
}

int event_link_all(struct sb *sb, struct file **files, uint64_t nfiles)
{
  (void)sb;
  int rc = 0;
  for (uint64_t i = 0; i < nfiles; i++) {
    struct file *f = files[i];
    if (f->type != F_EPOLL || !f->vdata)
      continue;
    struct pending *p = (struct pending *)f->vdata;
    for (uint64_t k = 0; k < p->n && rc == 0; k++) {
      struct pending_item *q = &p->it[k];
      struct file *t = files[q->file];
      struct epitem *it;
      if (t == f || !can_poll(t) || item_find(f->ep, t, (int)q->fd) ||
          (t->type == F_EPOLL && !loop_check(f->ep, t->ep)) || !(it = item_new(f->ep, t, (int)q->fd))) {
        rc = -1;
        break;
      }
      it->events = (uint32_t)q->events;
      it->data = q->data;
      it->last = (short)(uint16_t)q->last;
    }
    free(p);
    f->vdata = NULL;
  }
  /* A file left with its pending list (an error above): drop them all. */
  for (uint64_t i = 0; i < nfiles; i++)
    if (files[i]->type == F_EPOLL && files[i]->vdata) {
      free(files[i]->vdata);
      files[i]->vdata = NULL;
    }
  return rc;
}
