/* Shared memory in a template of several processes (issue 14 item 6), run
 * by tests/sandbox-tree-shm.sh natively and as a template's children: the
 * parent maps a MAP_SHARED|MAP_ANONYMOUS region, makes two POSIX
 * semaphores (sem_open: a /dev/shm file, linked to its name, mapped
 * MAP_SHARED) and a hard link in DIR, forks a server that doubles the
 * region's value at each request, does one round, then reads a line from
 * stdin (the template's ready point). After it: the value it finds (each
 * child must find the template's, not another child's), one request with
 * the line's number (the server's store is seen by the parent: the two
 * processes of a child still share), the hard link (one inode, two links)
 * and the semaphore's file, then the server's end. A second line, when
 * there is one (a branch's ready point: tests/sandbox-tree-shm.sh saves a
 * child there), is a second request. Prints no pid.
 *
 *   treeshm DIR     DIR: where the hard link goes (a sandbox's /tmp) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
  volatile int value, quit;
};

int main(int argc, char **argv)
{
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  setvbuf(stdout, NULL, _IOLBF, 0);
  char rq[64], rs[64], l1[300], l2[300], semfile[128];
  snprintf(rq, sizeof rq, "/cf-treeshm-rq-%d", (int)getpid());
  snprintf(rs, sizeof rs, "/cf-treeshm-rs-%d", (int)getpid());
  snprintf(semfile, sizeof semfile, "/dev/shm/sem.%s", rq + 1);
  snprintf(l1, sizeof l1, "%s/treeshm-l1", dir);
  snprintf(l2, sizeof l2, "%s/treeshm-l2", dir);
  sem_t *req = sem_open(rq, O_CREAT | O_EXCL, 0600, 0), *resp = sem_open(rs, O_CREAT | O_EXCL, 0600, 0);
  struct shared *s = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (req == SEM_FAILED || resp == SEM_FAILED || s == MAP_FAILED) {
    perror("sem_open/mmap");
    return 1;
  }
  int fd = open(l1, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0 || write(fd, "linked\n", 7) != 7 || close(fd) < 0 || link(l1, l2) < 0) {
    perror("hard link");
    return 1;
  }
  s->value = 41;
  pid_t srv = fork();
  if (srv == 0) {
    for (;;) {
      sem_wait(req);
      if (s->quit)
        _exit(7);
      s->value = s->value * 2 + 1;
      sem_post(resp);
    }
  }
  sem_post(req);
  sem_wait(resp);
  printf("before the pause: value %d\n", s->value);
  char line[64];
  if (!fgets(line, sizeof line, stdin))
    strcpy(line, "0\n");
  printf("after it: value %d\n", s->value);
  s->value = atoi(line);
  sem_post(req);
  sem_wait(resp);
  printf("the server made %d of %d\n", s->value, atoi(line));
  if (fgets(line, sizeof line, stdin)) { /* a branch's ready point */
    printf("second line: value %d\n", s->value);
    s->value = atoi(line);
    sem_post(req);
    sem_wait(resp);
    printf("the server made %d of %d\n", s->value, atoi(line));
  }
  struct stat a, b, c;
  if (stat(l1, &a) == 0 && stat(l2, &b) == 0)
    printf("hard link: one inode %s, links %lu %lu\n", a.st_ino == b.st_ino ? "yes" : "no", (unsigned long)a.st_nlink,
           (unsigned long)b.st_nlink);
  else
    printf("hard link: missing\n");
  if (stat(semfile, &c) == 0)
    printf("semaphore file: %lu bytes, %lu link, mode %o\n", (unsigned long)c.st_size, (unsigned long)c.st_nlink,
           (unsigned)(c.st_mode & 07777));
  else
    printf("semaphore file: missing\n");
  s->quit = 1;
  sem_post(req);
  int st = 0;
  waitpid(srv, &st, 0);
  printf("server: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  sem_unlink(rq);
  sem_unlink(rs);
  unlink(l1);
  unlink(l2);
  return 0;
}
