/* System V IPC (shim/ipc.c) and pidfds (shim/process.c) driven through
 * sys_dispatch on a sandbox state with plain memory and no VM: a segment is
 * one shared object whose stores a second attachment sees, its host fd is
 * counted and given back when IPC_RMID's deferred destroy ends it (at the
 * last detach, or at once with none), ids are Linux's (0, 1, ... in a fresh
 * namespace), keys and their errors; a save is refused naming the object;
 * semaphores: all-or-nothing semop with IPC_NOWAIT, SETALL/GETALL, SEM_UNDO
 * given back when the process ends (ipc_exit); a pidfd of the process
 * itself: close-on-exec, not readable while it runs, pidfd_send_signal's
 * checks, waitid(P_PIDFD) ECHILD, a template carries it (fs_save/fs_load).
 * Across processes of real VMs: tests/sandbox-processes.sh (procs.c). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "shim/shim.h"
#include "shim_util.h"
#include "tap.h"

static char root[] = "/var/tmp/cowfork-shimsysv.XXXXXX";

static void test_shm(void)
{
  diag("System V shared memory");
  int files0 = sb->hostfiles;
  is(S3(SYS_shmget, IPC_PRIVATE, 0, 0600), -EINVAL, "shmget of 0 bytes: EINVAL");
  long id = S3(SYS_shmget, IPC_PRIVATE, 5000, 0600);
  is(id, 0, "the first segment of a namespace has id 0, as Linux's");
  is(sb->hostfiles, files0 + 1, "its memfd is counted in the sandbox's host fds");
  long a = S3(SYS_shmat, id, 0, 0), b = S3(SYS_shmat, id, 0, SHM_RDONLY);
  ok(a > 0 && b > 0 && a != b && a % 4096 == 0, "two attachments at two addresses");
  memcpy(hp((uint64_t)a), "stored", 7);
  ok(!memcmp(hp((uint64_t)b), "stored", 7), "a store through one is seen through the other");
  const struct vma *v = mm_find(sb, (uint64_t)b);
  ok(v && v->prot == PROT_READ && v->end - v->start == 8192, "SHM_RDONLY: read-only, two pages");
  uint64_t ds = galloc(NULL, 128);
  is(S3(SYS_shmctl, id, IPC_STAT, ds), 0, "IPC_STAT");
  struct shmid_ds *d = hp(ds);
  ok(d->shm_segsz == 5000 && d->shm_nattch == 2 && (d->shm_perm.mode & 0777) == 0600 && d->shm_cpid == 2,
     "size 5000, nattch 2, mode 600, cpid 2");
  is(S1(SYS_shmdt, a + 1), -EINVAL, "shmdt of an address inside: EINVAL");
  is(S1(SYS_shmdt, a), 0, "shmdt");
  is(S3(SYS_shmctl, id, IPC_RMID, 0), 0, "IPC_RMID while attached");
  S3(SYS_shmctl, id, IPC_STAT, ds);
  ok((d->shm_perm.mode & SHM_DEST) && d->shm_perm.__key == 0 && d->shm_nattch == 1,
     "it stays, marked SHM_DEST, key 0, one attachment");
  is(sb->hostfiles, files0 + 1, "its memfd still held");
  is(S1(SYS_shmdt, b), 0, "the last detach");
  is(S3(SYS_shmctl, id, IPC_STAT, ds), -EINVAL, "then it is gone");
  is(sb->hostfiles, files0, "and its host fd given back");
  long k = S3(SYS_shmget, 0x1234, 100, IPC_CREAT | IPC_EXCL | 0640);
  is(k, 1, "a keyed segment: the next index (1)");
  is(S3(SYS_shmget, 0x1234, 100, IPC_CREAT | IPC_EXCL), -EEXIST, "IPC_EXCL again: EEXIST");
  is(S3(SYS_shmget, 0x1234, 0, 0), k, "by key: the same id");
  is(S3(SYS_shmget, 0x1234, 8192, 0), -EINVAL, "larger than it: EINVAL");
  is(S3(SYS_shmget, 0x4321, 100, 0), -ENOENT, "a missing key without IPC_CREAT: ENOENT");
  is(S3(SYS_shmget, IPC_PRIVATE, SHIM_MEM, 0600), -ENOSPC, "more than the guest memory in all: ENOSPC");
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "System V shared memory segment 1"), "a save is refused (%s)",
     cf_error());
  free(w.p);
  long c = S3(SYS_shmat, k, 0, 0);
  sb->uid = 1000;
  is(S3(SYS_shmctl, k, IPC_RMID, 0), -EPERM, "IPC_RMID by another user: EPERM");
  is(S3(SYS_shmat, k, 0, 0), -EACCES, "shmat by another user without the mode's permission: EACCES");
  sb->uid = (int)getuid();
  is(S3(SYS_shmctl, k, IPC_RMID, 0), 0, "IPC_RMID by the owner");
  mm_unmap(sb, (uint64_t)c, 4096);
  is(S3(SYS_shmctl, k, IPC_STAT, ds), -EINVAL, "munmap of the last attachment ends the removed segment too");
  is(sb->hostfiles, files0, "every host fd given back");
}

static void test_sem(void)
{
  diag("System V semaphores");
  long id = S3(SYS_semget, IPC_PRIVATE, 3, 0600);
  is(id, 0, "semget: id 0");
  uint16_t init[3] = {1, 0, 5};
  is(S4(SYS_semctl, id, 0, SETALL, galloc(init, sizeof init)), 0, "SETALL 1 0 5");
  struct sembuf two[2] = {{0, 1, 0}, {2, -10, IPC_NOWAIT}};
  is(S3(SYS_semop, id, galloc(two, sizeof two), 2), -EAGAIN, "an operation that would wait: EAGAIN");
  is(S3(SYS_semctl, id, 0, GETVAL), 1, "and nothing applied");
  struct sembuf undo = {2, -3, SEM_UNDO};
  is(S3(SYS_semop, id, galloc(&undo, sizeof undo), 1), 0, "-3 with SEM_UNDO");
  is(S3(SYS_semctl, id, 2, GETVAL), 2, "now 2");
  ipc_exit(sb);
  is(S3(SYS_semctl, id, 2, GETVAL), 5, "the process's end gives it back: 5");
  struct sembuf big = {1, 32767, 0}, more = {1, 1, 0};
  is(S3(SYS_semop, id, galloc(&big, sizeof big), 1), 0, "+32767");
  is(S3(SYS_semop, id, galloc(&more, sizeof more), 1), -ERANGE, "past SEMVMX: ERANGE");
  is(S4(SYS_semctl, id, 0, SETVAL, 40000), -ERANGE, "SETVAL 40000: ERANGE");
  struct sembuf far = {3, 1, 0};
  is(S3(SYS_semop, id, galloc(&far, sizeof far), 1), -EFBIG, "semaphore 3 of 3: EFBIG");
  is(S3(SYS_semop, id, galloc(&far, sizeof far), 501), -E2BIG, "501 operations: E2BIG");
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "semaphore set 0"), "a save is refused (%s)", cf_error());
  free(w.p);
  is(S3(SYS_semctl, id, 0, IPC_RMID), 0, "IPC_RMID");
  is(S3(SYS_semop, id, galloc(&more, sizeof more), 1), -EINVAL, "semop on it after: EINVAL");
}

static void test_pidfd(void)
{
  diag("pidfds (of the process itself: one process, no VM)");
  is(S2(SYS_pidfd_open, 2, 1), -EINVAL, "flags 1: EINVAL");
  is(S2(SYS_pidfd_open, 99, 0), -ESRCH, "no such process: ESRCH");
  long fd = S2(SYS_pidfd_open, 2, 0);
  ok(fd >= 0 && sb->cloexec[fd], "pidfd_open(itself): close-on-exec");
  struct file *f = fs_get(sb, (int)fd);
  is(file_poll(sb, f), 0, "not readable while it runs");
  is(S4(SYS_pidfd_send_signal, fd, 0, 0, 1), -EINVAL, "pidfd_send_signal flags 1: EINVAL");
  is(S4(SYS_pidfd_send_signal, fd, 0, 0, 0), 0, "signal 0");
  is(S4(SYS_pidfd_send_signal, 0, 0, 0, 0), -EBADF, "of a file that is no pidfd: EBADF");
  uint64_t si = galloc(NULL, 128);
  is(S5(SYS_waitid, P_PIDFD, fd, si, WEXITED | WNOHANG, 0), -ECHILD, "waitid(P_PIDFD) of itself: ECHILD");
  is(S5(SYS_waitid, P_PIDFD, 0, si, WEXITED, 0), -EBADF, "of a file that is no pidfd: EBADF");
  long g = S3(SYS_pidfd_getfd, fd, 0, 0);
  ok(g >= 0 && fs_get(sb, (int)g) == fs_get(sb, 0), "pidfd_getfd of its own fd 0: the same open file");
  is(S2(SYS_lseek, fd, 0), -ESPIPE, "lseek: ESPIPE");
  struct wbuf w = {0};
  is(fs_save(sb, &w), 0, "a save with a pidfd");
  int rc;
  struct sb *n = shim_fs_reload(&w, &rc);
  struct file *nf = fs_get(n, (int)fd);
  ok(rc == 0 && nf && nf->type == F_PIDFD && nf->pid == 2, "the template carries it: a pidfd of pid 2");
  fs_fini(n);
  shim_sb_free(n);
  free(w.p);
}

int main(void)
{
  if (!mkdtemp(root))
    abort();
  shim_setup(root);
  test_shm();
  test_sem();
  test_pidfd();
  shim_teardown();
  rmdir(root);
  return done_testing();
}
