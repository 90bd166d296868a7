/* System V IPC: shared memory segments, semaphore sets and message
 * queues, as Linux's in an IPC namespace of the sandbox's own.
 *
 * The objects of all the sandbox's processes are in one registry, the
 * first process's (sb->ipc, made on the first use; freed with its files:
 * fs.c fs_fini calls ipc_fini), touched under the sandbox's lock only. Ids
 * are made as Linux makes them (ipc/util.c ipc_idr_alloc): an index taken
 * cyclically among the lowest max(64, 3/2 of those in use), and a sequence
 * number bumped each time the indexes wrap, id = seq * 32768 + index. A
 * key names at most one live object; IPC_RMID makes it private (key 0).
 * Permissions are ipcperms's (owner, group, other bits; root passes).
 *
 * Shared memory: a segment is a shared memory object of mm.c (a host
 * memfd, struct shm_obj) that the segment holds a reference on; shmat maps
 * it MAP_SHARED (mm_map_shared) like a MAP_SHARED mapping, so fork maps it
 * in the child too (process.c proc_copy, mm.c fork), and exec and exit
 * drop it with the other mappings. The object points back at its segment
 * (o->sysv): shm_nattch is the number of mapping records of the object in
 * the sandbox's processes (Linux counts VMAs: a part unmapped from the
 * middle of one counts twice there too), and mm.c tells ipc_shm_detached
 * each time a record goes, which updates shm_dtime and shm_lpid and
 * destroys a segment marked by IPC_RMID once nothing maps it (Linux's
 * deferred destroy). shmdt(addr) unmaps the records of the segment
 * attached at addr.
 *
 * Semaphores: a set holds its values and last pids. semop/semtimedop apply
 * all the operations at once or none (on a copy of the values); one that
 * must wait sleeps in sig_wait (the lock released) and tries again when
 * any task of the sandbox is woken (wake_all: every change to a set wakes
 * them), counted in GETNCNT/GETZCNT by the operation it waits on, and
 * fails with EIDRM if its set was removed meanwhile (a set is known again
 * by its id and a serial number no other set has), EINTR on a signal
 * (semop is never restarted, as Linux), EAGAIN at the timeout. SEM_UNDO
 * keeps each process's adjustments (sb->semundo: none after a fork, kept
 * across exec) and applies them when the process ends (ipc_exit), clamped
 * to [0, SEMVMX] as Linux; SETVAL and SETALL clear them.
 *
 * Message queues: a queue holds its messages in order (copies of the
 * senders', at most MSGMAX bytes each) and its counts; msg_qbytes bounds
 * both its bytes and its number of messages (Linux's msg_fits_inqueue).
 * A msgrcv that must wait puts itself (on its stack) at the end of the
 * queue's receivers and sleeps in sig_wait; a msgsnd hands its message to
 * the first receiver that wants it (Linux's pipelined_send: it never
 * enters the queue; a receiver whose buffer is too short without
 * MSG_NOERROR gets E2BIG instead and the next one is tried), else queues
 * it and wakes the sandbox's tasks. A msgsnd that finds the queue full
 * sleeps and tries again when woken (any msgrcv, IPC_SET). Both fail with
 * EIDRM when the queue was removed meanwhile (known again by id and
 * serial, as semop's), EINTR on a signal (never restarted). The bytes
 * queued in the whole sandbox (and a header each) are at most the guest
 * memory's size: past it msgsnd fails with ENOMEM (Linux's kernel memory
 * charged to the sender's cgroup).
 *
 * A template holding any System V object is refused by name
 * (ipc_save_refused): the state file does not carry them. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <time.h>

#include "internal.h"
#include "shim/shim.h"

#define SEQ_MULT 32768 /* ipcmni_seq_shift() without ipcmni_extend */
#define IPC_MNI 32768
#define MIN_CYCLE 64 /* RADIX_TREE_MAP_SIZE */
#define SHMMNI 4096
#define SHMMAX (~0ull - (1ull << 24))
#define SEMMSL 32000
#define SEMMNS (SEMMSL * 32000)
#define SEMMNI 32000
#define SEMOPM 500
#define SEMVMX 32767
#define SEMAEM SEMVMX
#define MSGMNI 32000
#define MSGMAX 8192
#define MSGMNB 16384
#define MSGSSZ 16
#define MSGPOOL (MSGMNI * MSGMNB / 1024)
#define MSGSEG 0xffff /* (MSGPOOL * 1024 / MSGSSZ, at most 0xffff) */
#define MSG_HDR 48    /* what a message costs besides its text (sizeof struct msg_msg) */
#ifndef MSG_COPY
#define MSG_COPY 040000
#endif
#ifndef MSG_STAT_ANY
#define MSG_STAT_ANY 13
#endif
#ifndef SHM_DEST
#define SHM_DEST 01000
#define SHM_LOCKED 02000
#endif
#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif
#ifndef SEM_STAT_ANY
#define SEM_STAT_ANY 20
#endif

/* What every object begins with: Linux's kern_ipc_perm. */
struct kperm {
  int key, id;
  uint32_t uid, gid, cuid, cgid, mode;
  int seq;
  uint64_t serial; /* unique in the sandbox: a waiter knows its set again */
};

/* One kind's ids (Linux's struct ipc_ids). */
struct ids {
  struct kperm **slot;
  int cap, in_use, last_idx, seq, mni;
};

struct ipc_shm {
  struct kperm p;
  uint64_t size;
  struct shm_obj *obj;
  int64_t atime, dtime, ctime;
  int cpid, lpid;
};

struct semv {
  int val, pid;
};

/* A semop waiting: what it waits on (GETNCNT, GETZCNT). On its stack. */
struct semwait {
  struct semwait *next;
  int num;
  bool zero;
};

struct ipc_sem {
  struct kperm p;
  int nsems;
  struct semv *sem;
  int64_t otime, ctime;
  struct semwait *waiters;
};

/* A process's SEM_UNDO adjustments for one set. */
struct semundo {
  int id;
  uint64_t serial;
  int nsems;
  short adj[];
};

/* A message: Linux's msg_msg. */
struct msg {
  struct msg *next;
  long type;
  size_t size;
  char text[];
};

/* A msgrcv waiting (on its stack): what it wants, what a msgsnd gave it. */
struct msgwait {
  struct msgwait *next;
  long type;
  int mode;
  size_t max;      /* the longest message it takes (MSG_NOERROR: any) */
  struct msg *got; /* handed over by a msgsnd (it left the receivers) */
  int err;         /* or an error (-E2BIG): it left them too */
  int pid;
};

struct ipc_msq {
  struct kperm p;
  struct msg *head, **tail;
  uint64_t cbytes, qnum, qbytes;
  int64_t stime, rtime, ctime;
  int lspid, lrpid;
  struct msgwait *recv; /* waiting receivers, first come first */
};

struct ipc {
  struct ids shm, sem, msg;
  uint64_t msg_bytes, msg_hdrs; /* queued in all (MSG_INFO), with a header each at most the guest memory */
  uint64_t shm_pages; /* of every segment: at most the guest memory's (Linux's shmall) */
  int sems;           /* of every set (semmns) */
  uint64_t serial;
};

/* The ipc.h layouts of x86-64 (struct ipc64_perm, shmid64_ds, semid64_ds). */
struct k_perm64 {
  int32_t key;
  uint32_t uid, gid, cuid, cgid, mode;
  uint16_t seq, pad;
  uint64_t unused1, unused2;
};
struct k_shmid64 {
  struct k_perm64 perm;
  uint64_t segsz;
  int64_t atime, dtime, ctime;
  int32_t cpid, lpid;
  uint64_t nattch, unused4, unused5;
};
struct k_semid64 {
  struct k_perm64 perm;
  int64_t otime;
  uint64_t unused1;
  int64_t ctime;
  uint64_t unused2, nsems, unused3, unused4;
};

static struct ipc *ipc_of(struct sb *sb, bool make)
{
  struct sb *r = proc_first(sb);
  if (!r->ipc && make && (r->ipc = calloc(1, sizeof *r->ipc))) {
    r->ipc->shm = (struct ids){.last_idx = -1, .mni = SHMMNI};
    r->ipc->sem = (struct ids){.last_idx = -1, .mni = SEMMNI};
    r->ipc->msg = (struct ids){.last_idx = -1, .mni = MSGMNI};
  }
  return r->ipc;
}

/* ---- ids, keys, permissions ---- */

static struct kperm *ids_find_id(struct ids *ids, int id)
{
  if (id < 0)
    return NULL;
  int idx = id % SEQ_MULT;
  struct kperm *p = idx < ids->cap ? ids->slot[idx] : NULL;
  return p && p->seq == id / SEQ_MULT ? p : NULL;
}

/* The object a *ctl call names: by index for the *_STAT(_ANY) commands
 * (as ipcs walks them), else by id; NULL: EINVAL. */
static struct kperm *ids_find_ctl(struct ids *ids, int id, bool by_index)
{
  if (!by_index)
    return ids_find_id(ids, id);
  return id >= 0 && id < ids->cap ? ids->slot[id] : NULL;
}

static struct kperm *ids_find_key(struct ids *ids, int key)
{
  for (int i = 0; i < ids->cap; i++)
    if (ids->slot[i] && ids->slot[i]->key == key)
      return ids->slot[i];
  return NULL;
}

/* The highest index in use, -1: none (IPC_INFO's result). */
static int ids_max_idx(const struct ids *ids)
{
  for (int i = ids->cap - 1; i >= 0; i--)
    if (ids->slot[i])
      return i;
  return -1;
}

/* p into ids at the next index (Linux's cyclic choice): 0 or -ENOSPC/-ENOMEM. */
static int ids_add(struct ipc *ipc, struct ids *ids, struct kperm *p)
{
  if (ids->in_use >= ids->mni)
    return -ENOSPC;
  int max = ids->in_use * 3 / 2 > MIN_CYCLE ? ids->in_use * 3 / 2 : MIN_CYCLE;
  if (max > ids->mni)
    max = ids->mni;
  if (max > ids->cap) {
    struct kperm **n = realloc(ids->slot, (size_t)max * sizeof *n);
    if (!n)
      return -ENOMEM;
    memset(n + ids->cap, 0, (size_t)(max - ids->cap) * sizeof *n);
    ids->slot = n;
    ids->cap = max;
  }
  int idx = -1;
  for (int k = 0; k < max && idx < 0; k++) {
    int i = (ids->last_idx + 1 + k) % max;
    if (!ids->slot[i])
      idx = i;
  }
  if (idx < 0)
    return -ENOSPC;
  if (idx <= ids->last_idx && ++ids->seq >= IPC_MNI * 2) /* (ipcid_seq_max: INT_MAX / 32768) */
    ids->seq = 0;
  ids->last_idx = idx;
  p->seq = ids->seq;
  p->id = ids->seq * SEQ_MULT + idx;
  p->serial = ++ipc->serial;
  ids->slot[idx] = p;
  ids->in_use++;
  return 0;
}

static void ids_remove(struct ids *ids, struct kperm *p)
{
  ids->slot[p->id % SEQ_MULT] = NULL;
  ids->in_use--;
}

/* Linux's ipcperms: flag's rwx bits (any of the three classes) granted by
 * the object's mode for the caller; root passes. */
static bool perm_ok(struct sb *sb, const struct kperm *p, int flag)
{
  int want = (flag >> 6 | flag >> 3 | flag) & 7, granted = (int)p->mode;
  if ((uint32_t)sb->uid == p->cuid || (uint32_t)sb->uid == p->uid)
    granted >>= 6;
  else if (task_in_group(sb, p->cgid) || task_in_group(sb, p->gid))
    granted >>= 3;
  return !(want & ~granted & 7) || sb->uid == 0;
}

/* IPC_SET, IPC_RMID: the owner, the creator or root. */
static bool owner_ok(struct sb *sb, const struct kperm *p)
{
  return sb->uid == 0 || (uint32_t)sb->uid == p->uid || (uint32_t)sb->uid == p->cuid;
}

static void perm_init(struct sb *sb, struct kperm *p, int key, int flg)
{
  p->key = key;
  p->uid = p->cuid = (uint32_t)sb->uid;
  p->gid = p->cgid = (uint32_t)sb->gid;
  p->mode = (uint32_t)flg & 0777;
}

static void perm_out(const struct kperm *p, uint32_t extra_mode, struct k_perm64 *o)
{
  memset(o, 0, sizeof *o);
  o->key = p->key;
  o->uid = p->uid;
  o->gid = p->gid;
  o->cuid = p->cuid;
  o->cgid = p->cgid;
  o->mode = p->mode | extra_mode;
  o->seq = (uint16_t)p->seq;
}

/* IPC_SET: the owner, group and permission bits from the caller's. */
static void perm_set(struct kperm *p, const struct k_perm64 *in)
{
  p->uid = in->uid;
  p->gid = in->gid;
  p->mode = (p->mode & ~0777u) | (in->mode & 0777);
}

/* Linux's ipcget: an existing object of key (EEXIST with IPC_CREAT|
 * IPC_EXCL; more: the kind's own check, EINVAL; then the permission), or
 * NULL and *make when a new one is to be made (IPC_PRIVATE, IPC_CREAT). */
static long ipc_get(struct sb *sb, struct ids *ids, int key, int flg, bool (*more)(struct kperm *, long), long arg,
                    struct kperm **out)
{
  *out = NULL;
  if (key == IPC_PRIVATE)
    return 0;
  struct kperm *p = ids_find_key(ids, key);
  if (!p)
    return flg & IPC_CREAT ? 0 : -ENOENT;
  if ((flg & IPC_CREAT) && (flg & IPC_EXCL))
    return -EEXIST;
  if (more && !more(p, arg))
    return -EINVAL;
  if (!perm_ok(sb, p, flg))
    return -EACCES;
  *out = p;
  return 0;
}

/* ---- shared memory ---- */

static bool shm_more(struct kperm *p, long size) { return ((struct ipc_shm *)p)->size >= (uint64_t)size; }

/* Mapping records of s's object in the sandbox's processes (a vfork child
 * shares its parent's: counted once, the running one's being current). */
static uint64_t shm_nattch(struct sb *sb, const struct ipc_shm *s)
{
  int n = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &n) : &sb;
  uint64_t k = 0;
  for (int i = 0; i < n; i++) {
    /* a vfork child's records are its owner's: the caller's copy when it
     * is one (current: pushed back after its call), else the owner's */
    const struct sb *p = ps[i];
    if ((p->mm_parent && p != sb) || p == sb->mm_parent)
      continue;
    for (int j = 0; j < p->nshmaps; j++)
      k += p->shmaps[j].obj == s->obj;
  }
  return k;
}

static void shm_destroy(struct ipc *ipc, struct ipc_shm *s)
{
  ids_remove(&ipc->shm, &s->p);
  ipc->shm_pages -= PAGE_UP(s->size) / PAGE;
  s->obj->sysv = NULL;
  shm_unref(s->obj);
  free(s);
}

void ipc_shm_detached(struct sb *sb, struct shm_obj *o)
{
  struct ipc_shm *s = o->sysv;
  struct ipc *ipc = ipc_of(sb, false);
  if (!s || !ipc)
    return;
  s->dtime = time(NULL);
  s->lpid = sb->pid;
  if ((s->p.mode & SHM_DEST) && !shm_nattch(sb, s))
    shm_destroy(ipc, s);
}

void ipc_shm_attached(struct sb *sb, struct shm_obj *o)
{
  struct ipc_shm *s = o->sysv;
  if (s) {
    s->atime = time(NULL);
    s->lpid = sb->pid;
  }
}

/* shmget(key, size, shmflg) */
long sys_shmget(struct sb *sb, const uint64_t a[6], long nr)
{
  int key = (int)A(0), flg = (int)A(2);
  uint64_t size = A(1);
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  struct kperm *p;
  long r = ipc_get(sb, &ipc->shm, key, flg, shm_more, (long)size, &p);
  if (r < 0 || p)
    return r < 0 ? r : p->id;
  if (size < 1 || size > SHMMAX)
    return -EINVAL;
  if (flg & SHM_HUGETLB)
    return -ENOMEM; /* no huge pages reserved (Linux with an empty pool) */
  uint64_t pages = PAGE_UP(size) / PAGE;
  if (ipc->shm_pages + pages > sb->mem_size / PAGE)
    return -ENOSPC;
  if (ipc->shm.in_use >= ipc->shm.mni)
    return -ENOSPC;
  struct ipc_shm *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  int err = 0;
  if (!(s->obj = shm_new(sb, size, &err))) {
    free(s);
    return err;
  }
  perm_init(sb, &s->p, key, flg);
  s->size = size;
  s->ctime = time(NULL);
  s->cpid = sb->pid;
  if ((r = ids_add(ipc, &ipc->shm, &s->p)) < 0) {
    shm_unref(s->obj);
    free(s);
    return r;
  }
  s->obj->sysv = s;
  ipc->shm_pages += pages;
  return s->p.id;
}

static struct ipc_shm *shm_find(struct sb *sb, int id)
{
  struct ipc *ipc = ipc_of(sb, false);
  return ipc ? (struct ipc_shm *)ids_find_id(&ipc->shm, id) : NULL;
}

/* shmat(shmid, addr, shmflg) */
long sys_shmat(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), flg = (int)A(2);
  uint64_t addr = A(1);
  if (addr % PAGE) { /* SHMLBA is a page on x86 */
    if (!(flg & SHM_RND))
      return -EINVAL;
    addr = PAGE_DOWN(addr);
    if (!addr && (flg & SHM_REMAP))
      return -EINVAL;
  }
  if (id < 0)
    return -EINVAL;
  struct ipc_shm *s = shm_find(sb, id);
  if (!s)
    return -EINVAL;
  int prot = PROT_READ | (flg & SHM_RDONLY ? 0 : PROT_WRITE) | (flg & SHM_EXEC ? PROT_EXEC : 0);
  if (!perm_ok(sb, &s->p, flg & SHM_RDONLY ? 0444 : 0666) || ((flg & SHM_EXEC) && !perm_ok(sb, &s->p, 0111)))
    return -EACCES;
  uint64_t len = PAGE_UP(s->size);
  if (addr && !(flg & SHM_REMAP)) {
    if (addr + len < addr || !mm_is_free(sb, addr, len))
      return -EINVAL;
  } else if (!addr && !(addr = mm_find_free(sb, len))) {
    return -ENOMEM;
  }
  int r = mm_map_shared(sb, addr, len, prot, s->obj, 0, flg & SHM_RDONLY);
  if (r < 0)
    return r == -EINVAL ? -ENOMEM : r; /* (outside the address space: do_mmap's ENOMEM) */
  ipc_shm_attached(sb, s->obj);
  return (long)addr;
}

/* shmdt(addr): every record of the segment attached at addr (a record of
 * its object whose offset 0 would be at addr) goes. */
long sys_shmdt(struct sb *sb, const uint64_t a[6], long nr)
{
  uint64_t addr = A(0);
  if (addr % PAGE)
    return -EINVAL;
  struct shm_obj *o = NULL;
  uint64_t end = 0;
  for (int i = 0; i < sb->nshmaps && !o; i++) {
    const struct shmap *m = &sb->shmaps[i];
    if (m->obj->sysv && m->start == addr + m->off) {
      o = m->obj;
      end = addr + PAGE_UP(m->obj->sysv->size);
    }
  }
  if (!o)
    return -EINVAL;
  shm_ref(o); /* (the last record may go, and with it the segment) */
  for (bool again = true; again;) {
    again = false;
    for (int i = 0; i < sb->nshmaps; i++) {
      const struct shmap *m = &sb->shmaps[i];
      if (m->obj == o && m->start - m->off == addr && m->start < end) {
        mm_unmap(sb, m->start, m->end - m->start);
        again = true;
        break;
      }
    }
  }
  shm_unref(o);
  return 0;
}

/* shmctl(shmid, cmd, buf) */
long sys_shmctl(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), cmd = (int)A(1);
  uint64_t buf = A(2);
  if (cmd < 0 || id < 0)
    return -EINVAL;
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  if (cmd == IPC_INFO || cmd == SHM_INFO) {
    int mx = ids_max_idx(&ipc->shm);
    if (cmd == IPC_INFO) {
      struct shminfo64 {
        uint64_t shmmax, shmmin, shmmni, shmseg, shmall, unused[4];
      } in = {SHMMAX, 1, SHMMNI, SHMMNI, sb->mem_size / PAGE, {0}};
      if (mm_copy_out(sb, buf, &in, sizeof in) < 0)
        return -EFAULT;
    } else {
      struct {
        int used_ids;
        uint64_t shm_tot, shm_rss, shm_swp, swap_attempts, swap_successes;
      } in = {ipc->shm.in_use, ipc->shm_pages, 0, 0, 0, 0};
      for (int i = 0; i < ipc->shm.cap; i++) /* resident: the pages of the memfds in use */
        if (ipc->shm.slot[i]) {
          struct stat st;
          if (fstat(((struct ipc_shm *)ipc->shm.slot[i])->obj->fd, &st) == 0)
            in.shm_rss += (uint64_t)st.st_blocks * 512 / PAGE;
        }
      if (mm_copy_out(sb, buf, &in, sizeof in) < 0)
        return -EFAULT;
    }
    return mx < 0 ? 0 : mx;
  }
  struct ipc_shm *s = (struct ipc_shm *)ids_find_ctl(&ipc->shm, id, cmd == SHM_STAT || cmd == SHM_STAT_ANY);
  if (!s)
    return -EINVAL;
  switch (cmd) {
  case IPC_STAT:
  case SHM_STAT:
  case SHM_STAT_ANY: {
    if (cmd != SHM_STAT_ANY && !perm_ok(sb, &s->p, 0444))
      return -EACCES;
    struct k_shmid64 o;
    memset(&o, 0, sizeof o);
    perm_out(&s->p, 0, &o.perm);
    o.segsz = s->size;
    o.atime = s->atime;
    o.dtime = s->dtime;
    o.ctime = s->ctime;
    o.cpid = s->cpid;
    o.lpid = s->lpid;
    o.nattch = shm_nattch(sb, s);
    if (mm_copy_out(sb, buf, &o, sizeof o) < 0)
      return -EFAULT;
    return cmd == IPC_STAT ? 0 : s->p.id;
  }
  case IPC_SET: {
    struct k_shmid64 in;
    if (mm_copy_in(sb, &in, buf, sizeof in) < 0)
      return -EFAULT;
    if (!owner_ok(sb, &s->p))
      return -EPERM;
    perm_set(&s->p, &in.perm);
    s->ctime = time(NULL);
    return 0;
  }
  case IPC_RMID:
    if (!owner_ok(sb, &s->p))
      return -EPERM;
    s->p.mode |= SHM_DEST;
    s->p.key = IPC_PRIVATE; /* nobody finds it by its key any more */
    if (!shm_nattch(sb, s))
      shm_destroy(ipc, s);
    return 0;
  case SHM_LOCK:
  case SHM_UNLOCK:
    if (!owner_ok(sb, &s->p))
      return -EPERM;
    if (cmd == SHM_LOCK)
      s->p.mode |= SHM_LOCKED;
    else
      s->p.mode &= ~(uint32_t)SHM_LOCKED;
    return 0;
  }
  return -EINVAL;
}

/* ---- semaphores ---- */

static bool sem_more(struct kperm *p, long nsems) { return ((struct ipc_sem *)p)->nsems >= nsems; }

/* semget(key, nsems, semflg) */
long sys_semget(struct sb *sb, const uint64_t a[6], long nr)
{
  int key = (int)A(0), nsems = (int)A(1), flg = (int)A(2);
  if (nsems < 0 || nsems > SEMMSL)
    return -EINVAL;
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  struct kperm *p;
  long r = ipc_get(sb, &ipc->sem, key, flg, sem_more, nsems, &p);
  if (r < 0 || p)
    return r < 0 ? r : p->id;
  if (!nsems)
    return -EINVAL;
  if (ipc->sems + nsems > SEMMNS)
    return -ENOSPC;
  struct ipc_sem *s = calloc(1, sizeof *s);
  if (!s || !(s->sem = calloc((size_t)nsems, sizeof *s->sem))) {
    free(s);
    return -ENOMEM;
  }
  perm_init(sb, &s->p, key, flg);
  s->nsems = nsems;
  s->ctime = time(NULL);
  if ((r = ids_add(ipc, &ipc->sem, &s->p)) < 0) {
    free(s->sem);
    free(s);
    return r;
  }
  ipc->sems += nsems;
  return s->p.id;
}

static struct ipc_sem *sem_find(struct sb *sb, int id)
{
  struct ipc *ipc = ipc_of(sb, false);
  return ipc ? (struct ipc_sem *)ids_find_id(&ipc->sem, id) : NULL;
}

/* The process's undo entry of set s (made when make), NULL: none or no memory. */
static struct semundo *undo_of(struct sb *sb, struct ipc_sem *s, bool make)
{
  for (int i = 0; i < sb->nsemundo; i++) {
    struct semundo *u = sb->semundo[i];
    if (u->serial == s->p.serial)
      return u;
  }
  if (!make)
    return NULL;
  struct semundo **n = realloc(sb->semundo, (size_t)(sb->nsemundo + 1) * sizeof *n);
  if (!n)
    return NULL;
  sb->semundo = n;
  struct semundo *u = calloc(1, sizeof *u + (size_t)s->nsems * sizeof u->adj[0]);
  if (!u)
    return NULL;
  u->id = s->p.id;
  u->serial = s->p.serial;
  u->nsems = s->nsems;
  sb->semundo[sb->nsemundo++] = u;
  return u;
}

/* SETVAL, SETALL (num -1: all): every process's adjustments of them go. */
static void undo_clear(struct sb *sb, struct ipc_sem *s, int num)
{
  int n = 1;
  struct sb *const *ps = sb->w ? proc_list(sb, &n) : &sb;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < ps[k]->nsemundo; i++) {
      struct semundo *u = ps[k]->semundo[i];
      if (u->serial != s->p.serial)
        continue;
      if (num < 0)
        memset(u->adj, 0, (size_t)u->nsems * sizeof u->adj[0]);
      else if (num < u->nsems)
        u->adj[num] = 0;
    }
}

struct sembuf_ {
  uint16_t num;
  int16_t op, flg;
};

/* Linux's perform_atomic_semop: 0 (done), 1 (must wait; *block the
 * operation), -EAGAIN (IPC_NOWAIT), -ERANGE. */
static int sem_try(struct sb *sb, struct ipc_sem *s, const struct sembuf_ *ops, unsigned n, struct semundo *u,
                   int *block)
{
  int vals[SEMOPM];
  int adj[SEMOPM];
  for (unsigned i = 0; i < n; i++) { /* the running values, operation by operation */
    int v = s->sem[ops[i].num].val, d = u ? u->adj[ops[i].num] : 0;
    for (unsigned j = 0; j < i; j++)
      if (ops[j].num == ops[i].num) {
        v = vals[j];
        d = adj[j];
      }
    int op = ops[i].op;
    if ((!op && v) || v + op < 0) {
      *block = (int)i;
      return ops[i].flg & IPC_NOWAIT ? -EAGAIN : 1;
    }
    v += op;
    if (v > SEMVMX)
      return -ERANGE;
    if (ops[i].flg & SEM_UNDO) {
      d -= op;
      if (d < -SEMAEM - 1 || d > SEMAEM)
        return -ERANGE;
    }
    vals[i] = v;
    adj[i] = d;
  }
  for (unsigned i = 0; i < n; i++) {
    s->sem[ops[i].num].val = vals[i];
    s->sem[ops[i].num].pid = sb->pid;
    if (ops[i].flg & SEM_UNDO)
      u->adj[ops[i].num] = (short)adj[i];
  }
  s->otime = time(NULL);
  return 0;
}

/* semop(semid, sops, nsops), semtimedop(..., timeout) */
long sys_semop(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0);
  uint64_t nops = A(2);
  if (nops < 1 || id < 0)
    return -EINVAL;
  if (nops > SEMOPM)
    return -E2BIG;
  struct sembuf_ ops[SEMOPM];
  if (mm_copy_in(sb, ops, A(1), nops * sizeof ops[0]) < 0)
    return -EFAULT;
  struct timespec dl, *dlp = NULL;
  if (nr == SYS_semtimedop && A(3)) {
    struct timespec ts;
    if (mm_copy_in(sb, &ts, A(3), sizeof ts) < 0)
      return -EFAULT;
    if (!ts_valid(&ts))
      return -EINVAL;
    dl = ts_after(CLOCK_MONOTONIC, &ts);
    dlp = &dl;
  }
  int max = 0;
  bool undo = false, alter = false;
  for (unsigned i = 0; i < nops; i++) {
    if (ops[i].num > max)
      max = ops[i].num;
    undo |= (ops[i].flg & SEM_UNDO) != 0;
    alter |= ops[i].op != 0;
  }
  struct ipc_sem *s = sem_find(sb, id);
  if (!s)
    return -EINVAL;
  if (max >= s->nsems)
    return -EFBIG;
  if (!perm_ok(sb, &s->p, alter ? 0222 : 0444))
    return -EACCES;
  uint64_t serial = s->p.serial;
  struct semundo *u = undo ? undo_of(sb, s, true) : NULL;
  if (undo && !u)
    return -ENOMEM;
  for (;;) {
    int block = 0;
    int r = sem_try(sb, s, ops, (unsigned)nops, u, &block);
    if (r <= 0) {
      if (r == 0 && alter)
        wake_all(sb); /* waiters look again */
      return r;
    }
    struct semwait w = {s->waiters, ops[block].num, ops[block].op == 0};
    s->waiters = &w;
    long wr = sig_wait(sb, CLOCK_MONOTONIC, dlp);
    s = sem_find(sb, id);
    if (!s || s->p.serial != serial)
      return -EIDRM; /* (its waiter list went with it) */
    for (struct semwait **pw = &s->waiters; *pw; pw = &(*pw)->next)
      if (*pw == &w) {
        *pw = w.next;
        break;
      }
    if (wr == 0)
      return -EAGAIN; /* the timeout */
    if (wr == -EINTR)
      return -EINTR; /* never restarted (Linux) */
    if (wr == -EDEADLK)
      return wait_forever(sb, "semop");
  }
}

static void semset_destroy(struct ipc *ipc, struct ipc_sem *s)
{
  ids_remove(&ipc->sem, &s->p);
  ipc->sems -= s->nsems;
  free(s->sem);
  free(s);
}

/* semctl(semid, semnum, cmd, arg) */
long sys_semctl(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), num = (int)A(1), cmd = (int)A(2);
  uint64_t arg = A(3);
  if (id < 0)
    return -EINVAL;
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  if (cmd == IPC_INFO || cmd == SEM_INFO) {
    struct seminfo in = {.semmap = SEMMNS, .semmni = SEMMNI, .semmns = SEMMNS, .semmnu = SEMMNS,
                         .semmsl = SEMMSL, .semopm = SEMOPM, .semume = SEMOPM, .semusz = 20,
                         .semvmx = SEMVMX, .semaem = SEMAEM};
    if (cmd == SEM_INFO) {
      in.semusz = ipc->sem.in_use;
      in.semaem = ipc->sems;
    }
    if (mm_copy_out(sb, arg, &in, sizeof in) < 0)
      return -EFAULT;
    int mx = ids_max_idx(&ipc->sem);
    return mx < 0 ? 0 : mx;
  }
  struct ipc_sem *s = (struct ipc_sem *)ids_find_ctl(&ipc->sem, id, cmd == SEM_STAT || cmd == SEM_STAT_ANY);
  if (!s)
    return -EINVAL;
  switch (cmd) {
  case IPC_STAT:
  case SEM_STAT:
  case SEM_STAT_ANY: {
    if (cmd != SEM_STAT_ANY && !perm_ok(sb, &s->p, 0444))
      return -EACCES;
    struct k_semid64 o;
    memset(&o, 0, sizeof o);
    perm_out(&s->p, 0, &o.perm);
    o.otime = s->otime;
    o.ctime = s->ctime;
    o.nsems = (uint64_t)s->nsems;
    if (mm_copy_out(sb, arg, &o, sizeof o) < 0)
      return -EFAULT;
    return cmd == IPC_STAT ? 0 : s->p.id;
  }
  case IPC_SET: {
    struct k_semid64 in;
    if (mm_copy_in(sb, &in, arg, sizeof in) < 0)
      return -EFAULT;
    if (!owner_ok(sb, &s->p))
      return -EPERM;
    perm_set(&s->p, &in.perm);
    s->ctime = time(NULL);
    return 0;
  }
  case IPC_RMID:
    if (!owner_ok(sb, &s->p))
      return -EPERM;
    semset_destroy(ipc, s);
    wake_all(sb); /* its waiters fail with EIDRM */
    return 0;
  case GETVAL:
  case GETPID:
  case GETNCNT:
  case GETZCNT: {
    if (num < 0 || num >= s->nsems)
      return -EINVAL;
    if (!perm_ok(sb, &s->p, 0444))
      return -EACCES;
    if (cmd == GETVAL)
      return s->sem[num].val;
    if (cmd == GETPID)
      return s->sem[num].pid;
    int k = 0;
    for (const struct semwait *w = s->waiters; w; w = w->next)
      k += w->num == num && w->zero == (cmd == GETZCNT);
    return k;
  }
  case GETALL:
  case SETALL: {
    if (!perm_ok(sb, &s->p, cmd == GETALL ? 0444 : 0222))
      return -EACCES;
    uint16_t *v = calloc((size_t)s->nsems, sizeof *v);
    if (!v)
      return -ENOMEM;
    long r = 0;
    if (cmd == GETALL) {
      for (int i = 0; i < s->nsems; i++)
        v[i] = (uint16_t)s->sem[i].val;
      if (mm_copy_out(sb, arg, v, (uint64_t)s->nsems * sizeof *v) < 0)
        r = -EFAULT;
    } else if (mm_copy_in(sb, v, arg, (uint64_t)s->nsems * sizeof *v) < 0) {
      r = -EFAULT;
    } else {
      for (int i = 0; i < s->nsems && !r; i++)
        if (v[i] > SEMVMX)
          r = -ERANGE;
      for (int i = 0; i < s->nsems && !r; i++) {
        s->sem[i].val = v[i];
        s->sem[i].pid = sb->pid;
      }
      if (!r) {
        undo_clear(sb, s, -1);
        s->ctime = time(NULL);
        wake_all(sb);
      }
    }
    free(v);
    return r;
  }
  case SETVAL: {
    int val = (int)arg;
    if (num < 0 || num >= s->nsems)
      return -EINVAL;
    if (val < 0 || val > SEMVMX)
      return -ERANGE;
    if (!perm_ok(sb, &s->p, 0222))
      return -EACCES;
    s->sem[num].val = val;
    s->sem[num].pid = sb->pid;
    undo_clear(sb, s, num);
    s->ctime = time(NULL);
    wake_all(sb);
    return 0;
  }
  }
  return -EINVAL;
}

/* ---- message queues ---- */

/* msqid64_ds of x86-64 */
struct k_msqid64 {
  struct k_perm64 perm;
  int64_t stime, rtime, ctime;
  uint64_t cbytes, qnum, qbytes;
  int32_t lspid, lrpid;
  uint64_t unused4, unused5;
};

/* Linux's search modes (convert_mode). */
enum { SEARCH_ANY, SEARCH_EQUAL, SEARCH_NOTEQUAL, SEARCH_LESSEQUAL, SEARCH_NUMBER };

static bool msg_test(const struct msg *m, long type, int mode)
{
  switch (mode) {
  case SEARCH_EQUAL:
    return m->type == type;
  case SEARCH_NOTEQUAL:
    return m->type != type;
  case SEARCH_LESSEQUAL:
    return m->type <= type;
  }
  return true; /* SEARCH_ANY, SEARCH_NUMBER */
}

/* Linux's find_msg: the link to the message wanted (the first of the
 * lowest type for SEARCH_LESSEQUAL, the type-th for SEARCH_NUMBER), NULL: none. */
static struct msg **msg_find(struct ipc_msq *q, long type, int mode)
{
  struct msg **found = NULL;
  long count = 0;
  for (struct msg **pm = &q->head; *pm; pm = &(*pm)->next) {
    if (!msg_test(*pm, type, mode))
      continue;
    if (mode == SEARCH_LESSEQUAL && (*pm)->type != 1) {
      type = (*pm)->type - 1;
      found = pm;
    } else if (mode != SEARCH_NUMBER || count == type) {
      return pm;
    }
    count++;
  }
  return found;
}

static struct ipc_msq *msq_find(struct sb *sb, int id)
{
  struct ipc *ipc = ipc_of(sb, false);
  return ipc ? (struct ipc_msq *)ids_find_id(&ipc->msg, id) : NULL;
}

static void msq_destroy(struct ipc *ipc, struct ipc_msq *q)
{
  ids_remove(&ipc->msg, &q->p);
  for (struct msg *m = q->head, *n; m; m = n) {
    n = m->next;
    free(m);
  }
  ipc->msg_bytes -= q->cbytes;
  ipc->msg_hdrs -= q->qnum;
  free(q); /* (its waiting receivers see it gone: EIDRM) */
}

/* msgget(key, msgflg) */
long sys_msgget(struct sb *sb, const uint64_t a[6], long nr)
{
  int key = (int)A(0), flg = (int)A(1);
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  struct kperm *p;
  long r = ipc_get(sb, &ipc->msg, key, flg, NULL, 0, &p);
  if (r < 0 || p)
    return r < 0 ? r : p->id;
  struct ipc_msq *q = calloc(1, sizeof *q);
  if (!q)
    return -ENOMEM;
  perm_init(sb, &q->p, key, flg);
  q->tail = &q->head;
  q->qbytes = MSGMNB;
  q->ctime = time(NULL);
  if ((r = ids_add(ipc, &ipc->msg, &q->p)) < 0) {
    free(q);
    return r;
  }
  return q->p.id;
}

/* msgsnd(msqid, msgp, msgsz, msgflg) */
long sys_msgsnd(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), flg = (int)A(3);
  uint64_t buf = A(1), size = A(2);
  int64_t type;
  if (mm_copy_in(sb, &type, buf, sizeof type) < 0)
    return -EFAULT;
  if (size > MSGMAX || id < 0 || type < 1)
    return -EINVAL;
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  if (ipc->msg_bytes + (ipc->msg_hdrs + 1) * MSG_HDR + size > sb->mem_size)
    return -ENOMEM;
  struct msg *m = malloc(sizeof *m + size);
  if (!m)
    return -ENOMEM;
  *m = (struct msg){NULL, type, size};
  if (mm_copy_in(sb, m->text, buf + sizeof type, size) < 0) {
    free(m);
    return -EFAULT;
  }
  struct ipc_msq *q = msq_find(sb, id);
  uint64_t serial = q ? q->p.serial : 0;
  long err = q ? 0 : -EINVAL;
  while (!err) {
    if (!perm_ok(sb, &q->p, 0222)) {
      err = -EACCES;
      break;
    }
    if (size + q->cbytes <= q->qbytes && 1 + q->qnum <= q->qbytes)
      break; /* (msg_fits_inqueue) */
    if (flg & IPC_NOWAIT) {
      err = -EAGAIN;
      break;
    }
    long wr = sig_wait(sb, CLOCK_MONOTONIC, NULL);
    q = msq_find(sb, id);
    if (!q || q->p.serial != serial)
      err = -EIDRM;
    else if (wr == -EINTR)
      err = -EINTR; /* never restarted (Linux) */
    else if (wr == -EDEADLK)
      err = wait_forever(sb, "msgsnd");
  }
  if (err) {
    free(m);
    return err;
  }
  q->lspid = sb->pid;
  q->stime = time(NULL);
  bool woke = false;
  for (struct msgwait **pw = &q->recv; *pw;) { /* pipelined_send */
    struct msgwait *w = *pw;
    if (!msg_test(m, w->type, w->mode)) {
      pw = &w->next;
      continue;
    }
    *pw = w->next;
    woke = true;
    if (w->max < m->size) {
      w->err = -E2BIG;
      continue;
    }
    q->lrpid = w->pid;
    q->rtime = q->stime;
    w->got = m;
    m = NULL;
    break;
  }
  if (m) {
    *q->tail = m;
    q->tail = &m->next;
    q->cbytes += size;
    q->qnum++;
    ipc->msg_bytes += size;
    ipc->msg_hdrs++;
  }
  if (woke)
    wake_all(sb);
  return 0;
}

/* The message to msgbuf buf (of size bytes of text): the bytes copied. */
static long msg_out(struct sb *sb, uint64_t buf, uint64_t size, const struct msg *m)
{
  int64_t type = m->type;
  uint64_t n = size < m->size ? size : m->size;
  if (mm_copy_out(sb, buf, &type, sizeof type) < 0 || mm_copy_out(sb, buf + sizeof type, m->text, n) < 0)
    return -EFAULT;
  return (long)n;
}

/* msgrcv(msqid, msgp, msgsz, msgtyp, msgflg) */
long sys_msgrcv(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), flg = (int)A(4);
  uint64_t buf = A(1), size = A(2);
  long type = (long)A(3);
  if (id < 0 || (int64_t)size < 0)
    return -EINVAL;
  int mode = SEARCH_EQUAL;
  if (flg & MSG_COPY) {
    if ((flg & MSG_EXCEPT) || !(flg & IPC_NOWAIT))
      return -EINVAL;
    char probe[MSGMAX]; /* (Linux's prepare_copy reads the buffer) */
    if (mm_copy_in(sb, probe, buf, size < MSGMAX ? size : MSGMAX) < 0)
      return -EFAULT;
    mode = SEARCH_NUMBER;
  } else if (!type) {
    mode = SEARCH_ANY;
  } else if (type < 0) {
    type = type == LONG_MIN ? LONG_MAX : -type;
    mode = SEARCH_LESSEQUAL;
  } else if (flg & MSG_EXCEPT) {
    mode = SEARCH_NOTEQUAL;
  }
  struct ipc *ipc = ipc_of(sb, false);
  struct ipc_msq *q = msq_find(sb, id);
  if (!q)
    return -EINVAL;
  uint64_t serial = q->p.serial;
  struct msg *m;
  for (;;) {
    if (!perm_ok(sb, &q->p, 0444))
      return -EACCES;
    struct msg **pm = msg_find(q, type, mode);
    if (pm) {
      m = *pm;
      if (size < m->size && !(flg & MSG_NOERROR))
        return -E2BIG;
      if (flg & MSG_COPY) /* (Linux's copy_msg: a copy no longer than the buffer or MSGMAX) */
        return m->size > (size < MSGMAX ? size : MSGMAX) ? -EINVAL : msg_out(sb, buf, size, m);
      if (!(*pm = m->next))
        q->tail = pm;
      q->qnum--;
      q->cbytes -= m->size;
      ipc->msg_hdrs--;
      ipc->msg_bytes -= m->size;
      q->rtime = time(NULL);
      q->lrpid = sb->pid;
      wake_all(sb); /* senders waiting for room */
      break;
    }
    if (flg & IPC_NOWAIT)
      return -ENOMSG;
    struct msgwait w = {NULL, type, mode, flg & MSG_NOERROR ? INT_MAX : size, NULL, 0, sb->pid}, **pw = &q->recv;
    while (*pw)
      pw = &(*pw)->next;
    *pw = &w;
    long wr = sig_wait(sb, CLOCK_MONOTONIC, NULL);
    if ((m = w.got))
      break; /* (a message handed over is taken even with a signal pending, as Linux) */
    if (w.err)
      return w.err;
    q = msq_find(sb, id);
    if (!q || q->p.serial != serial)
      return -EIDRM;
    for (pw = &q->recv; *pw; pw = &(*pw)->next)
      if (*pw == &w) {
        *pw = w.next;
        break;
      }
    if (wr == -EINTR)
      return -EINTR; /* never restarted (Linux) */
    if (wr == -EDEADLK)
      return wait_forever(sb, "msgrcv");
  }
  long r = msg_out(sb, buf, size, m);
  free(m);
  return r;
}

/* msgctl(msqid, cmd, buf) */
long sys_msgctl(struct sb *sb, const uint64_t a[6], long nr)
{
  int id = (int)A(0), cmd = (int)A(1);
  uint64_t buf = A(2);
  if (cmd < 0 || id < 0)
    return -EINVAL;
  struct ipc *ipc = ipc_of(sb, true);
  if (!ipc)
    return -ENOMEM;
  if (cmd == IPC_INFO || cmd == MSG_INFO) {
    struct {
      int pool, map, max, mnb, mni, ssz, tql;
      uint16_t seg;
    } in;
    memset(&in, 0, sizeof in); /* (its padding too) */
    in = (typeof(in)){MSGPOOL, MSGMNB, MSGMAX, MSGMNB, MSGMNI, MSGSSZ, MSGMNB, MSGSEG};
    if (cmd == MSG_INFO) {
      in.pool = ipc->msg.in_use;
      in.map = ipc->msg_hdrs > INT_MAX ? INT_MAX : (int)ipc->msg_hdrs;
      in.tql = ipc->msg_bytes > INT_MAX ? INT_MAX : (int)ipc->msg_bytes;
    }
    if (mm_copy_out(sb, buf, &in, sizeof in) < 0)
      return -EFAULT;
    int mx = ids_max_idx(&ipc->msg);
    return mx < 0 ? 0 : mx;
  }
  struct k_msqid64 in;
  if (cmd == IPC_SET && mm_copy_in(sb, &in, buf, sizeof in) < 0)
    return -EFAULT; /* (before the id is looked at, as Linux) */
  struct ipc_msq *q = (struct ipc_msq *)ids_find_ctl(&ipc->msg, id, cmd == MSG_STAT || cmd == MSG_STAT_ANY);
  if (!q)
    return -EINVAL;
  switch (cmd) {
  case IPC_STAT:
  case MSG_STAT:
  case MSG_STAT_ANY: {
    if (cmd != MSG_STAT_ANY && !perm_ok(sb, &q->p, 0444))
      return -EACCES;
    struct k_msqid64 o;
    memset(&o, 0, sizeof o);
    perm_out(&q->p, 0, &o.perm);
    o.stime = q->stime;
    o.rtime = q->rtime;
    o.ctime = q->ctime;
    o.cbytes = q->cbytes;
    o.qnum = q->qnum;
    o.qbytes = q->qbytes;
    o.lspid = q->lspid;
    o.lrpid = q->lrpid;
    if (mm_copy_out(sb, buf, &o, sizeof o) < 0)
      return -EFAULT;
    return cmd == IPC_STAT ? 0 : q->p.id;
  }
  case IPC_SET:
    if (!owner_ok(sb, &q->p))
      return -EPERM;
    if (in.qbytes > MSGMNB && sb->uid != 0)
      return -EPERM; /* (CAP_SYS_RESOURCE) */
    perm_set(&q->p, &in.perm);
    q->qbytes = in.qbytes;
    q->ctime = time(NULL);
    wake_all(sb); /* senders may fit now, receivers may not read any more */
    return 0;
  case IPC_RMID:
    if (!owner_ok(sb, &q->p))
      return -EPERM;
    msq_destroy(ipc, q);
    wake_all(sb); /* its waiters fail with EIDRM */
    return 0;
  }
  return -EINVAL;
}

/* ---- the process's end, the sandbox's ---- */

void ipc_exit(struct sb *sb)
{
  bool woke = false;
  for (int i = 0; i < sb->nsemundo; i++) {
    struct semundo *u = sb->semundo[i];
    struct ipc_sem *s = sem_find(sb, u->id);
    if (s && s->p.serial == u->serial) /* Linux's exit_sem: clamped to [0, SEMVMX] */
      for (int k = 0; k < u->nsems && k < s->nsems; k++)
        if (u->adj[k]) {
          int v = s->sem[k].val + u->adj[k];
          s->sem[k].val = v < 0 ? 0 : v > SEMVMX ? SEMVMX : v;
          s->sem[k].pid = sb->pid;
          woke = true;
        }
    free(u);
  }
  free(sb->semundo);
  sb->semundo = NULL;
  sb->nsemundo = 0;
  if (woke)
    wake_all(sb);
}

void ipc_fini(struct sb *sb)
{
  struct ipc *ipc = sb->ipc;
  if (!ipc)
    return;
  for (int i = 0; i < ipc->shm.cap; i++)
    if (ipc->shm.slot[i])
      shm_destroy(ipc, (struct ipc_shm *)ipc->shm.slot[i]);
  for (int i = 0; i < ipc->sem.cap; i++)
    if (ipc->sem.slot[i])
      semset_destroy(ipc, (struct ipc_sem *)ipc->sem.slot[i]);
  for (int i = 0; i < ipc->msg.cap; i++)
    if (ipc->msg.slot[i])
      msq_destroy(ipc, (struct ipc_msq *)ipc->msg.slot[i]);
  free(ipc->shm.slot);
  free(ipc->sem.slot);
  free(ipc->msg.slot);
  free(ipc);
  sb->ipc = NULL;
}

int ipc_save_refused(struct sb *sb, char *why, size_t size)
{
  struct ipc *ipc = ipc_of(sb, false);
  if (!ipc)
    return 0;
  for (int i = 0; i < ipc->shm.cap; i++)
    if (ipc->shm.slot[i]) {
      const struct kperm *p = ipc->shm.slot[i];
      snprintf(why, size, "the System V shared memory segment %d (key 0x%08x) cannot be saved (the state does "
                          "not hold System V objects): remove it (shmctl IPC_RMID, ipcrm) before the pause",
               p->id, (unsigned)p->key);
      return -1;
    }
  for (int i = 0; i < ipc->sem.cap; i++)
    if (ipc->sem.slot[i]) {
      const struct kperm *p = ipc->sem.slot[i];
      snprintf(why, size, "the System V semaphore set %d (key 0x%08x) cannot be saved (the state does not hold "
                          "System V objects): remove it (semctl IPC_RMID, ipcrm) before the pause",
               p->id, (unsigned)p->key);
      return -1;
    }
  for (int i = 0; i < ipc->msg.cap; i++)
    if (ipc->msg.slot[i]) {
      const struct kperm *p = ipc->msg.slot[i];
      snprintf(why, size, "the System V message queue %d (key 0x%08x) cannot be saved (the state does not hold "
                          "System V objects): remove it (msgctl IPC_RMID, ipcrm) before the pause",
               p->id, (unsigned)p->key);
      return -1;
    }
  return 0;
}
