/* The jail of the process that runs guests: cf_jail_enter
 * (include/cowfork/jail.h, docs/security.md).
 *
 * Defence in depth behind the shim and the seccomp filter: should a guest
 * take over the process, the host files it could reach are those this
 * process can see. Where run as root, the process moves into its own mount
 * namespace (private propagation: nothing mounted here reaches the host and
 * back); with a root directory other than the host's /, a new root replaces
 * /: a tmpfs holding bind mounts of the kept paths at their own paths (the
 * store, the sandbox's root), a fresh procfs (the shim and lib/dirty.c read
 * /proc/self: maps, pagemap, fd links), the device nodes a VM needs
 * (/dev/kvm for every new VM, /dev/userfaultfd) and a few harmless ones,
 * and an empty /tmp (a page server's socket); the tmpfs is private to this
 * namespace and small (16 MiB). pivot_root then detaches the
 * old root: it is not reachable by "..", by /proc/self/root or by an fd
 * (the kept paths are opened O_PATH before the tmpfs goes over /tmp and
 * bound from /proc/self/fd/N, so a kept path under /tmp is not hidden by
 * it; those fds are closed after).
 *
 * The user comes last: supplementary groups (the user's own, as
 * initgroups gives them: the kvm group's membership), gid, uid. Changing
 * uid makes the process non-dumpable, which turns /proc/self's files into
 * root's and the shim could no longer open /proc/self/pagemap: it is made
 * dumpable again (the process then belongs to that user, which is the
 * point). Everything after (a new VM's /dev/kvm, the store) is opened as
 * that user.
 *
 * unshare(CLONE_NEWNS) refuses a process whose threads share its file
 * system information: call it before the first thread. No state: a
 * process calls it once. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cowfork/jail.h"
#include "internal.h"

#define NEWROOT "/tmp" /* where the new root is built (in the new namespace only) */

static const char *const devs[] = {"/dev/kvm", "/dev/userfaultfd", "/dev/null", "/dev/zero", "/dev/random",
                                   "/dev/urandom"};

/* mkdir -p of PATH (absolute) under the new root, the last component a
 * directory (dir) or an empty file to bind a file onto. */
static int make_at(const char *path, bool dir)
{
  char p[PATH_MAX];
  if (snprintf(p, sizeof p, "%s%s", NEWROOT, path) >= (int)sizeof p)
    return cf_fail(ENAMETOOLONG, "%s: name too long", path);
  for (char *s = p + strlen(NEWROOT) + 1; (s = strchr(s, '/')); s++) {
    *s = 0;
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
      return cf_fail(errno, "mkdir %s: %m", p);
    *s = '/';
  }
  if (dir) {
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
      return cf_fail(errno, "mkdir %s: %m", p);
  } else {
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return cf_fail(errno, "%s: %m", p);
    close(fd);
  }
  return 0;
}

/* Bind the file or directory open as FD (O_PATH) at PATH in the new root. */
static int bind_fd(int fd, const char *path, bool dir, bool ro)
{
  char src[64], dst[PATH_MAX];
  if (make_at(path, dir) < 0)
    return -1;
  snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
  snprintf(dst, sizeof dst, "%s%s", NEWROOT, path);
  if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
    return cf_fail(errno, "bind mount of %s: %m", path);
  if (ro && mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    return cf_fail(errno, "making %s read-only: %m", path);
  return 0;
}

static int new_root(const struct cf_jail_opts *o)
{
  int fds[64 + sizeof devs / sizeof devs[0]];
  bool isdir[sizeof fds / sizeof fds[0]];
  const char *paths[sizeof fds / sizeof fds[0]];
  size_t n = 0;
  int rc = -1;
  if (o->nkeep > 64)
    return cf_fail(EINVAL, "too many paths to keep (%zu)", o->nkeep);
  for (size_t i = 0; i < o->nkeep + sizeof devs / sizeof devs[0]; i++) {
    bool dev = i >= o->nkeep;
    const char *p = dev ? devs[i - o->nkeep] : o->keep[i];
    if (p[0] != '/') {
      cf_fail(EINVAL, "%s: not an absolute path", p);
      goto out;
    }
    int fd = open(p, O_PATH | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
      if (fd >= 0)
        close(fd);
      if (dev && errno == ENOENT)
        continue;
      cf_fail(errno, "%s: %m", p);
      goto out;
    }
    paths[n] = p;
    isdir[n] = S_ISDIR(st.st_mode);
    fds[n++] = fd;
  }
  if (mount("cowfork-root", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755") < 0) {
    cf_fail(errno, "mounting a tmpfs for the new root on %s: %m", NEWROOT);
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    if (bind_fd(fds[i], paths[i], isdir[i], i < o->nkeep && o->readonly && o->readonly[i]) < 0)
      goto out;
  if (make_at("/proc", true) < 0)
    goto out;
  /* A procfs of this mount namespace; where a new one cannot be mounted
   * (some containers), the host's, bound. */
  if (mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
      mount("/proc", NEWROOT "/proc", NULL, MS_BIND | MS_REC, NULL) < 0) {
    cf_fail(errno, "mounting /proc in the new root: %m");
    goto out;
  }
  if (make_at("/tmp", true) < 0 || chmod(NEWROOT "/tmp", 01777) < 0 || make_at("/.old", true) < 0)
    goto out;
  if (syscall(SYS_pivot_root, NEWROOT, NEWROOT "/.old") < 0) {
    cf_fail(errno, "pivot_root: %m");
    goto out;
  }
  if (chdir("/") < 0 || umount2("/.old", MNT_DETACH) < 0 || rmdir("/.old") < 0) {
    cf_fail(errno, "detaching the old root: %m");
    goto out;
  }
  rc = 0;
out:
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
  return rc;
}

int cf_jail_enter(const struct cf_jail_opts *o)
{
  if (geteuid() != 0) {
    if (o->user)
      return cf_fail(EPERM, "--user %s needs root (this process runs as uid %d)", o->user, (int)geteuid());
    return 0;
  }
  uid_t uid = 0;
  gid_t gid = 0, groups[256];
  int ngroups = 256;
  if (o->user) {
    /* Looked up before the host's /etc goes away. */
    errno = 0;
    struct passwd *pw = getpwnam(o->user);
    if (!pw)
      return cf_fail(errno ? errno : ENOENT, "--user %s: no such user", o->user);
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    if (getgrouplist(o->user, gid, groups, &ngroups) < 0)
      return cf_fail(E2BIG, "--user %s: more than 256 groups", o->user);
  }
  if (unshare(CLONE_NEWNS) < 0)
    return cf_fail(errno, "unshare(CLONE_NEWNS): %m");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return cf_fail(errno, "making the mount namespace private: %m");
  if (o->pivot && new_root(o) < 0)
    return -1;
  if (o->user) {
    if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
      return cf_fail(errno, "--user %s: switching to uid %d gid %d: %m", o->user, (int)uid, (int)gid);
    if (setuid(0) == 0)
      return cf_fail(EPERM, "--user %s: could take root back", o->user);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (access("/dev/kvm", R_OK | W_OK) < 0)
      return cf_fail(errno, "--user %s: /dev/kvm: %m (a member of its group, usually kvm?)", o->user);
  }
  return 1;
}
