/* System V IPC (shim/ipc.c) and pidfds (shim/process.c) driven through
 * sys_dispatch on a sandbox state with plain memory and no VM: a segment is
 * one shared object whose stores a second attachment sees, its host fd is
 * counted and given back when IPC_RMID's deferred destroy ends it (at the
 * last detach, or at once with none), ids are Linux's (0, 1, ... in a fresh
 * namespace), keys and their errors; a save is refused naming the object;
 * semaphores: all-or-nothing semop with IPC_NOWAIT, SETALL/GETALL, SEM_UNDO
 * given back when the process ends (ipc_exit); an SHM_RDONLY attachment
 * that mprotect cannot make writable; message queues: msgtyp 0, > 0, < 0,
 * MSG_EXCEPT, MSG_NOERROR, E2BIG, MSG_COPY (and its EINVAL cases), a full
 * queue's EAGAIN, msg_qbytes by IPC_SET (EPERM above MSGMNB for others),
 * IPC_INFO, MSG_INFO, MSG_STAT, a refused save; a pidfd of the process
 * itself: close-on-exec, not readable while it runs, pidfd_send_signal's
 * checks, waitid(P_PIDFD) ECHILD, a template carries it (fs_save/fs_load).
 * Across processes of real VMs: tests/sandbox-processes.sh (procs.c). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
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
  is(S3(SYS_mprotect, b, 8192, PROT_READ | PROT_WRITE), -EACCES, "mprotect writable of SHM_RDONLY: EACCES");
  v = mm_find(sb, (uint64_t)b);
  ok(v && v->prot == PROT_READ, "and it stays read-only");
  is(S3(SYS_mprotect, b, 8192, PROT_READ | PROT_EXEC), 0, "executable: allowed (as Linux)");
  is(S3(SYS_mprotect, a, 8192, PROT_NONE), 0, "the writable attachment: PROT_NONE");
  is(S3(SYS_mprotect, a, 8192, PROT_READ | PROT_WRITE), 0, "and writable again");
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

struct tmsg {
  long type;
  char text[64];
};

/* msgsnd of type t, text s (its length without the NUL). */
static long snd(long id, long t, const char *s, int flg)
{
  struct tmsg m = {t, {0}};
  memcpy(m.text, s, strlen(s));
  return S4(SYS_msgsnd, id, galloc(&m, sizeof m), strlen(s), flg);
}

/* msgrcv into a fresh buffer of n bytes of text: the result, the type and text in *out. */
static long rcv(long id, size_t n, long t, int flg, struct tmsg *out)
{
  uint64_t b = galloc(NULL, sizeof(struct tmsg));
  long r = S5(SYS_msgrcv, id, b, n, t, flg);
  memcpy(out, hp(b), sizeof *out);
  if (r >= 0 && r < 64)
    out->text[r] = 0;
  return r;
}

static void test_msg(void)
{
  diag("System V message queues");
  struct tmsg m;
  long id = S2(SYS_msgget, IPC_PRIVATE, 0600);
  is(id, 0, "msgget: id 0");
  is(S2(SYS_msgget, 0x77, 0), -ENOENT, "a missing key: ENOENT");
  long k = S2(SYS_msgget, 0x77, IPC_CREAT | IPC_EXCL | 0600);
  is(k, 1, "a keyed queue: id 1");
  is(S2(SYS_msgget, 0x77, IPC_CREAT | IPC_EXCL), -EEXIST, "IPC_EXCL again: EEXIST");
  is(S2(SYS_msgget, 0x77, IPC_CREAT), k, "by key: the same id");
  is(snd(id, 0, "x", 0), -EINVAL, "mtype 0: EINVAL");
  is(S4(SYS_msgsnd, id, galloc(&m, sizeof m), 8193, 0), -EINVAL, "8193 bytes (past MSGMAX): EINVAL");
  is(S4(SYS_msgsnd, id, 0, 1, 0), -EFAULT, "a bad buffer: EFAULT");
  is(snd(id + 32768, 1, "x", 0), -EINVAL, "a stale id: EINVAL");
  is(snd(id, 3, "three", 0) | snd(id, 1, "one", 0) | snd(id, 2, "two", 0) | snd(id, 1, "uno", 0), 0, "send 3 1 2 1");
  uint64_t ds = galloc(NULL, sizeof(struct msqid_ds));
  struct msqid_ds *d = hp(ds);
  is(S3(SYS_msgctl, id, IPC_STAT, ds), 0, "IPC_STAT");
  ok(d->msg_qnum == 4 && d->msg_cbytes == 14 && d->msg_qbytes == 16384 && d->msg_lspid == 2 && d->msg_lrpid == 0,
     "4 messages, 14 bytes, qbytes 16384, lspid 2, lrpid 0");
  is(rcv(id, 64, 2, 0, &m), 3, "msgtyp 2: the first of type 2");
  ok(m.type == 2 && !strcmp(m.text, "two"), "(two)");
  is(rcv(id, 64, 2, MSG_COPY | IPC_NOWAIT, &m), 3, "MSG_COPY of the message at index 2 (msgtyp 2 as an index)");
  ok(m.type == 1 && !strcmp(m.text, "uno"), "(uno, left in the queue)");
  is(rcv(id, 64, 5, MSG_COPY | IPC_NOWAIT, &m), -ENOMSG, "MSG_COPY past the end: ENOMSG");
  is(rcv(id, 64, 0, MSG_COPY, &m), -EINVAL, "MSG_COPY without IPC_NOWAIT: EINVAL");
  is(rcv(id, 64, 0, MSG_COPY | IPC_NOWAIT | MSG_EXCEPT, &m), -EINVAL, "MSG_COPY with MSG_EXCEPT: EINVAL");
  is(rcv(id, 2, 0, MSG_COPY | IPC_NOWAIT | MSG_NOERROR, &m), -EINVAL,
     "MSG_COPY with MSG_NOERROR into a shorter buffer: EINVAL (Linux's copy_msg)");
  is(rcv(id, 64, 1, MSG_EXCEPT, &m), 5, "MSG_EXCEPT 1: the first of another type");
  ok(m.type == 3 && !strcmp(m.text, "three"), "(three)");
  is(snd(id, 5, "five", 0) | snd(id, 4, "four", 0), 0, "send 5 4");
  is(rcv(id, 64, -4, 0, &m), 3, "msgtyp -4: the first of the lowest type <= 4");
  ok(m.type == 1 && !strcmp(m.text, "one"), "(one)");
  is(rcv(id, 2, -4, 0, &m), -E2BIG, "a buffer of 2 for 3 bytes: E2BIG");
  is(rcv(id, 2, -4, MSG_NOERROR, &m), 2, "MSG_NOERROR: 2 bytes");
  ok(m.type == 1 && !memcmp(m.text, "un", 2), "(un, the rest dropped)");
  is(rcv(id, 64, 7, IPC_NOWAIT, &m), -ENOMSG, "no message of type 7, IPC_NOWAIT: ENOMSG");
  is(rcv(id, 64, 0, 0, &m), 4, "msgtyp 0: the first");
  ok(m.type == 5, "(five)");
  is(rcv(id, 64, LONG_MIN, 0, &m), 4, "msgtyp LONG_MIN: any type (LONG_MAX)");
  ok(m.type == 4, "(four)");
  struct tmsg *big = calloc(1, 8 + 8192);
  big->type = 1;
  uint64_t bb = galloc(big, 8 + 8192);
  free(big);
  is(S4(SYS_msgsnd, id, bb, 8192, IPC_NOWAIT) | S4(SYS_msgsnd, id, bb, 8192, IPC_NOWAIT), 0, "two of 8192 bytes");
  is(S4(SYS_msgsnd, id, bb, 1, IPC_NOWAIT), -EAGAIN, "a full queue, IPC_NOWAIT: EAGAIN");
  is(S4(SYS_msgsnd, id, bb, 0, IPC_NOWAIT), 0, "0 bytes still fit");
  S3(SYS_msgctl, id, IPC_STAT, ds);
  d->msg_qbytes = 2;
  is(S3(SYS_msgctl, id, IPC_SET, ds), 0, "IPC_SET msg_qbytes 2");
  is(S4(SYS_msgsnd, id, bb, 0, IPC_NOWAIT), -EAGAIN, "then 3 messages of 0 bytes do not fit: EAGAIN");
  d->msg_qbytes = 20000;
  sb->uid = 1000;
  is(S3(SYS_msgctl, id, IPC_SET, ds), -EPERM, "IPC_SET by another user: EPERM");
  is(snd(id, 1, "x", IPC_NOWAIT), -EACCES, "msgsnd by another user without the mode's permission: EACCES");
  sb->uid = 0;
  is(S3(SYS_msgctl, id, IPC_SET, ds), 0, "msg_qbytes 20000 as root");
  struct msqid_ds *o = hp(galloc(NULL, sizeof *o));
  is(S3(SYS_msgctl, id, MSG_STAT, galloc(NULL, sizeof *o)), id, "MSG_STAT of index 0: its id");
  is(S3(SYS_msgctl, 5, MSG_STAT, ds), -EINVAL, "MSG_STAT of an unused index: EINVAL");
  (void)o;
  uint64_t ib = galloc(NULL, sizeof(struct msginfo));
  struct msginfo *in = hp(ib);
  is(S3(SYS_msgctl, 0, IPC_INFO, ib), 1, "IPC_INFO: the highest index in use (1)");
  ok(in->msgmax == 8192 && in->msgmnb == 16384 && in->msgmni == 32000 && in->msgseg == 0xffff,
     "msgmax 8192, msgmnb 16384, msgmni 32000, msgseg 0xffff (%d %d %d %d)", in->msgmax, in->msgmnb, in->msgmni, in->msgseg);
  is(S3(SYS_msgctl, 0, MSG_INFO, ib), 1, "MSG_INFO");
  ok(in->msgpool == 2 && in->msgmap == 3 && in->msgtql == 16384, "2 queues, 3 messages, 16384 bytes");
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "message queue 0"), "a save is refused (%s)", cf_error());
  free(w.p);
  sb->uid = (int)getuid();
  is(S3(SYS_msgctl, id, IPC_RMID, 0), 0, "IPC_RMID");
  is(snd(id, 1, "x", 0), -EINVAL, "msgsnd to it after: EINVAL");
  is(S3(SYS_msgctl, k, IPC_RMID, 0), 0, "IPC_RMID of the other");
  is(S3(SYS_msgctl, 0, MSG_INFO, ib), 0, "MSG_INFO: none in use");
  ok(in->msgpool == 0 && in->msgmap == 0 && in->msgtql == 0, "no queue, message or byte left");
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
  test_msg();
  test_pidfd();
  shim_teardown();
  rmdir(root);
  return done_testing();
}
