/* lib/util.c: size parsing and crash-safe file writes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "tap.h"

static int entries(const char *dir)
{
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
  if (d)
    closedir(d);
  return n;
}

int main(void)
{
  static const struct {
    const char *s;
    int ok;
    uint64_t v;
  } sizes[] = {
      {"4096", 1, 4096},         {"64K", 1, 65536},     {"1M", 1, 1 << 20},
      {"2GiB", 1, 2ull << 30},   {"512k", 1, 524288},   {"0", 1, 0},
      {"", 0, 0},                {"-1", 0, 0},          {"3x", 0, 0},
      {"1T", 0, 0},              {"K", 0, 0},           {"99999999999999999999", 0, 0},
      {"17179869184G", 0, 0},    {" 1", 0, 0},          {"1KB", 1, 1024},
  };
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    uint64_t v = 0;
    int r = cf_parse_size(sizes[i].s, &v);
    ok(sizes[i].ok ? r == 0 && v == sizes[i].v : r < 0, "cf_parse_size(\"%s\") %s", sizes[i].s,
       sizes[i].ok ? "parses" : "is refused");
  }

  char dir[] = "/tmp/cowfork-util.XXXXXX", path[256], buf[64];
  if (!mkdtemp(dir))
    skip_all("no temp directory");
  snprintf(path, sizeof path, "%s/state", dir);
  ok(cf_write_file_atomic(path, "one", 3, 0640, true) == 0, "write a new file");
  ok(cf_write_file_atomic(path, "two", 3, 0640, true) < 0 && errno == EEXIST,
     "noreplace refuses an existing file: %s", cf_error());
  ok(cf_write_file_atomic(path, "three", 5, 0600, false) == 0, "replace it");
  int fd = open(path, O_RDONLY);
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  ok(n == 5 && memcmp(buf, "three", 5) == 0, "the new contents, whole");
  struct stat st;
  ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode applied");
  is(entries(dir), 1, "no temp file left behind");
  snprintf(path, sizeof path, "%s/missing/state", dir);
  ok(cf_write_file_atomic(path, "x", 1, 0600, false) < 0 && errno == ENOENT,
     "a missing directory fails: %s", cf_error());
  snprintf(path, sizeof path, "rm -rf %s", dir);
  if (system(path) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
