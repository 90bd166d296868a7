/* Small mechanisms every part of the tree shares: crash-safe file writes and
 * size parsing. Declared in lib/internal.h. */
#include <sys/resource.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

int cf_fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return cf_fail(e, "fsync %s: %s", dir, strerror(e));
  }
  close(fd);
  return 0;
}

int cf_private_mkdir(const char *path)
{
  if (mkdir(path, CF_MODE_DIR) < 0)
    return errno == EEXIST ? 0 : cf_fail(errno, "mkdir %s: %m", path);
  /* Only ever narrower than 0700 here (a umask with owner bits): no window. */
  if (chmod(path, CF_MODE_DIR) < 0)
    return cf_fail(errno, "chmod %s: %m", path);
  return 0;
}

int cf_private_open(const char *path, int flags)
{
  int fd = open(path, flags | O_CREAT | O_CLOEXEC, CF_MODE_FILE);
  if (fd < 0)
    return cf_fail(errno, "open %s: %m", path);
  /* A umask with owner bits made it narrower (unopenable next time), or an
   * older cowfork made it wider: 0600. */
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 07777) != CF_MODE_FILE && st.st_uid == geteuid() &&
      fchmod(fd, CF_MODE_FILE) < 0) {
    int e = errno;
    close(fd);
    return cf_fail(e, "chmod %s: %s", path, strerror(e));
  }
  return fd;
}

int cf_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode, bool noreplace)
{
  char tmp[PATH_MAX], dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  /* A dot name in the same directory: listings that skip dot files (the
   * store's) never see a half-written file. */
  if (snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".") >=
          (int)sizeof dir ||
      snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, slash ? slash + 1 : path) >= (int)sizeof tmp)
    return cf_fail(ENAMETOOLONG, "path too long: %s", path);
  if (dir[0] == 0)
    strcpy(dir, "/");
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return cf_fail(errno, "create a temp file for %s: %m", path);
  if (cf_pwrite_full(fd, buf, len, 0) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return cf_fail(e, "write %s: %s", tmp, strerror(e));
  }
  close(fd);
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, noreplace ? RENAME_NOREPLACE : 0) < 0) {
    int e = errno;
    unlink(tmp);
    return cf_fail(e, "%s: %s", path, e == EEXIST ? "exists already" : strerror(e));
  }
  return cf_fsync_dir(dir);
}

int cf_parse_size(const char *s, uint64_t *out)
{
  char *end;
  if (!*s || *s == '-' || *s == '+' || *s == ' ')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return -1;
  unsigned shift = 0;
  switch (*end) {
  case 0: break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  default: return -1;
  }
  if (*end == 'i' && shift)
    end++;
  if ((*end == 'B' || *end == 'b') && shift)
    end++;
  if (*end || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

void cf_json_puts(const char *s)
{
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      printf("\\u%04x", *s);
    else
      putchar(*s);
  }
  putchar('"');
}

int cf_pin_cpu(int cpu)
{
  cpu_set_t set;
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    errno = EINVAL;
    return -1;
  }
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

void cf_nofile_raise(unsigned long want)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want &&
      setrlimit(RLIMIT_NOFILE, &(struct rlimit){want, want}) == 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
