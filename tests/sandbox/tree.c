/* A tree of processes paused into a template (issue 14 item 6), run by
 * tests/sandbox-tree.sh natively and as a template's children: the parent
 * forks a server child (its own process group, a copy of the parent's
 * memory it changes) and a child that exits at once (a zombie at the
 * pause), then reads a line from stdin (the template's ready point). After
 * it, the parent hands the line to the server through a file, reaps both
 * children and prints what each saw; both write through one open file
 * description opened before the fork (a shared offset). Prints no pid.
 *
 * With "late", it first reads a line (a template's ready point) and only
 * then forks, so the tree exists at its second read: a branch of a child
 * (tests/sandbox-tree.sh) is saved with both processes.
 *
 *   tree DIR [late]     DIR: where the files go (a sandbox's /tmp) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[200];

static const char *path(const char *name)
{
  static char p[4][300];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

int main(int argc, char **argv)
{
  snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : "/tmp");
  setvbuf(stdout, NULL, _IOLBF, 0);
  static int counter = 41;
  char line[64];
  if (argc > 2 && strcmp(argv[2], "late") == 0) {
    if (!fgets(line, sizeof line, stdin))
      strcpy(line, "(eof)\n");
    printf("parent: first line %s", line);
  }
  int log = open(path("log"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  pid_t z = fork();
  if (z == 0)
    _exit(3); /* a zombie until the parent waits, after the pause */
  siginfo_t si;
  waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT); /* ended for sure (a WNOHANG wait later must find it) */
  pid_t p = fork();
  if (p == 0) {
    counter += 100;
    setpgid(0, 0);
    close(creat(path("ready"), 0644));
    char buf[64] = "";
    for (;;) {
      int fd = open(path("go"), O_RDONLY);
      if (fd >= 0) {
        int n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
          buf[n] = 0;
          break;
        }
      }
      usleep(2000);
    }
    printf("server: counter %d, parent %s, own group %s, asked %s", counter, getppid() == 1 ? "gone" : "alive",
           getpgid(0) == getpid() ? "yes" : "no", buf);
    write(log, "server\n", 7);
    _exit(7);
  }
  while (access(path("ready"), F_OK) != 0)
    usleep(1000);
  printf("parent: before the pause, children %s\n", p > 0 && z > 0 ? "started" : "failed");
  if (!fgets(line, sizeof line, stdin))
    strcpy(line, "(eof)\n");
  counter += 1;
  printf("parent: the server's group is its own: %s\n", getpgid(p) == p ? "yes" : "no");
  int fd = open(path("go.tmp"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  write(fd, line, strlen(line));
  close(fd);
  rename(path("go.tmp"), path("go"));
  int st = 0, zst = 0;
  pid_t r = waitpid(p, &st, 0);
  pid_t rz = waitpid(z, &zst, WNOHANG);
  printf("parent: server %s, exit %d; the zombie %s, exit %d; counter %d\n", r == p ? "reaped" : "not reaped",
         WIFEXITED(st) ? WEXITSTATUS(st) : -1, rz == z ? "reaped" : "not reaped",
         WIFEXITED(zst) ? WEXITSTATUS(zst) : -1, counter);
  printf("parent: no more children: %s\n", waitpid(-1, NULL, WNOHANG) < 0 ? "yes" : "no");
  write(log, "parent\n", 7);
  char all[64] = "";
  int n = pread(log, all, sizeof all - 1, 0);
  all[n > 0 ? n : 0] = 0;
  printf("parent: the shared log (one offset): %s", all);
  return 0;
}
