/* Shared memory (shim/mm.c, tmpfs.c, thread.c's futex keys), driven through
 * sys_dispatch on a sandbox state with plain memory and no VM: a
 * MAP_SHARED|MAP_ANONYMOUS mapping is one object that a second address
 * space mapping it (what fork does, mm_fork_vm) sees stores of at once;
 * MADV_DONTNEED, partial munmap and mprotect keep it shared; a /tmp file
 * mapped MAP_SHARED twice is one memory with its read/write; a futex in
 * shared memory is keyed by the object and offset (a wake through another
 * mapping wakes the waiter), a private one by the address space and the
 * address (a vfork child's by its parent's, whose memory it runs in; the
 * parent's end keeps the shared mappings while the child runs there); the host fds
 * are counted and given back; a truncation under a mapping never crashes
 * the shim; a save needs fs_save_prepare while a mapping exists (then
 * goes on, the objects kept: shim_state_shm.c loads such states); link(2)
 * (sem_open links its new file to the name). Forks of
 * real VMs: tests/sandbox-processes.sh (procs.c). */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "shim/shim.h"
#include "shim_util.h"
#include "tap.h"

static char root[] = "/var/tmp/cowfork-shimshm.XXXXXX";


static const char *gpread(int fd, size_t n, off_t off)
{
  static char out[4096];
  uint64_t b = galloc(NULL, n + 1);
  long r = S4(SYS_pread64, fd, b, n, off);
  memcpy(out, hp(b), r > 0 ? (size_t)r : 0);
  out[r > 0 ? r : 0] = 0;
  return out;
}

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void test_anon(void)
{
  diag("MAP_SHARED|MAP_ANONYMOUS: one object, seen by another address space at once");
  int files0 = sb->hostfiles;
  long m = S6(SYS_mmap, 0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ok(m > 0, "mmap MAP_SHARED|MAP_ANONYMOUS, 3 pages");
  is(sb->hostfiles, files0 + 1, "its memfd is counted in the sandbox's host fds");
  uint64_t off;
  struct shm_obj *o = mm_shared_at(sb, (uint64_t)m + 4096, &off);
  ok(o && off == 4096, "the shim knows the object and offset under it");
  /* A second address space (a forked process) maps it elsewhere. */
  struct sb *p2 = shim_sb_new(&opts, SHIM_MEM, PROT_NONE);
  uint64_t at2 = 16ull << 20;
  is(mm_map_shared(p2, at2, 3 * 4096, PROT_READ | PROT_WRITE, o, 0, false), 0, "mapped in another process");
  strcpy(hp((uint64_t)m + 4096), "counter=1");
  ok(strcmp((char *)p2->mem + at2 + 4096, "counter=1") == 0, "the other process sees a store at once");
  strcpy((char *)p2->mem + at2, "from the child");
  ok(strcmp(hp((uint64_t)m), "from the child") == 0, "and the first sees the other's store");
  struct fkey k1 = futex_key(sb, (uint64_t)m + 4096, false), k2 = futex_key(p2, at2 + 4096, false);
  ok(k1.obj == k2.obj && k1.off == k2.off, "a shared futex there has one key in both");
  k1 = futex_key(sb, (uint64_t)m + 4096, true);
  k2 = futex_key(p2, at2 + 4096, true);
  ok(k1.obj != k2.obj, "a private futex there is each process's own (as Linux)");
  /* A vfork child in sb's memory (process.c: its address-space fields
   * are sb's, pulled at each taking of the lock). */
  struct sb *vc = calloc(1, sizeof *vc);
  vc->mm_parent = sb;
  proc_mm_pull(vc);
  k2 = futex_key(vc, (uint64_t)m + 4096, true);
  ok(k2.obj == k1.obj && k2.off == k1.off,
     "a vfork child's private futex is its parent's (one address space: Linux keys by mm)");
  k1 = futex_key(sb, (uint64_t)m + 4096, false);
  k2 = futex_key(vc, (uint64_t)m + 4096, false);
  ok(k1.obj == k2.obj && k1.off == k2.off && k2.obj == o, "and a shared one is the object's");
  k1 = futex_key(sb, 4096, false);
  k2 = futex_key(vc, 4096, false);
  ok(k1.obj == k2.obj && k1.obj == sb, "a futex in private memory: the parent's key in both");
  sb->mm_sharers = 1;
  mm_shared_fini(sb); /* its parent's end while the child runs in its memory (fs_fini) */
  ok(sb->nshmaps == 1 && mm_shared_at(sb, (uint64_t)m + 4096, &off) == o,
     "the parent's end keeps its shared mappings while a vfork child runs in its memory");
  sb->mm_sharers = 0;
  free(vc);

  is(S3(SYS_madvise, m, 3 * 4096, MADV_DONTNEED), 0, "MADV_DONTNEED");
  ok(strcmp(hp((uint64_t)m + 4096), "counter=1") == 0, "the shared bytes stay (Linux reads the object again)");
  ok(strcmp((char *)p2->mem + at2 + 4096, "counter=1") == 0, "and the other's view is not zeroed");
  is(S3(SYS_mprotect, m, 3 * 4096, PROT_READ), 0, "mprotect PROT_READ");
  ok(mm_ptr(sb, (uint64_t)m, 4096, PROT_WRITE) == NULL && mm_ptr(sb, (uint64_t)m, 4096, PROT_READ),
     "read-only to the guest");
  is(S3(SYS_mprotect, m, 3 * 4096, PROT_READ | PROT_WRITE), 0, "and back");
  is(S2(SYS_munmap, m + 4096, 4096), 0, "munmap the middle page");
  is(sb->nshmaps, 2, "two pieces left");
  strcpy((char *)p2->mem + at2 + 2 * 4096, "third");
  ok(strcmp(hp((uint64_t)m + 2 * 4096), "third") == 0, "the third page is still shared");
  is(sb->hostfiles, files0 + 1, "one object still");
  S2(SYS_munmap, m, 3 * 4096);
  is(sb->nshmaps, 0, "munmap: no shared mapping left");
  is(sb->hostfiles, files0 + 1, "the other process holds the object");
  mm_shared_fini(p2);
  is(sb->hostfiles, files0, "its end gives the host fd back");
  shim_sb_free(p2);

  int z = gopen("/dev/zero", O_RDWR, 0);
  m = S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0);
  ok(m > 0 && sb->nshmaps == 1, "MAP_SHARED of /dev/zero: shared anonymous memory (Linux)");
  S2(SYS_munmap, m, 4096);
  S1(SYS_close, z);

  /* The host fds are the sandbox's: past RLIMIT_NOFILE, ENFILE. */
  int saved = sb->hostfiles;
  sb->hostfiles = SB_NOFILE(sb);
  is(S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), -ENFILE,
     "no host fd left: ENFILE");
  sb->hostfiles = saved;
}

static struct sb *wake_sb;
static uint64_t wake_addr;
static void wake_other(int sig)
{
  (void)sig;
  futex_wake(wake_sb, wake_addr, 1, FUTEX_BITSET_MATCH_ANY);
}

static void test_file(void)
{
  diag("a /tmp file mapped MAP_SHARED twice: one memory, with its read and write");
  int fd = gopen("/tmp/f", O_CREAT | O_RDWR, 0644);
  uint64_t b = galloc(NULL, 8192);
  memset(hp(b), 'a', 8192);
  is(S3(SYS_write, fd, b, 8192), 8192, "write 8 KiB");
  long m1 = S6(SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  long m2 = S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
  ok(m1 > 0 && m2 > 0, "mapped whole, and its second page alone");
  memcpy(hp((uint64_t)m1 + 4096), "Page2", 5);
  ok(memcmp(hp((uint64_t)m2), "Page2", 5) == 0, "a store in one is in the other");
  ok(strcmp(gpread(fd, 5, 4096), "Page2") == 0, "and in the file");

  /* FUTEX_WAIT through one mapping, FUTEX_WAKE through the other: the same
   * word of the same file (Linux keys it by the file and offset). */
  memset(hp((uint64_t)m1 + 4096), 0, 4);
  struct timespec ts = {0, 60000000};
  uint64_t tsg = galloc(&ts, sizeof ts);
  wake_sb = sb;
  wake_addr = (uint64_t)m2;
  struct sigaction sa = {.sa_handler = wake_other};
  sigaction(SIGUSR2, &sa, NULL);
  timer_t ht;
  struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
  struct itimerspec its = {.it_value = {0, 20000000}};
  timer_create(CLOCK_MONOTONIC, &sev, &ht);
  double t = now_ms();
  timer_settime(ht, 0, &its, NULL);
  long r = S6(SYS_futex, m1 + 4096, FUTEX_WAIT, 0, tsg, 0, 0);
  t = now_ms() - t;
  timer_delete(ht);
  is(r, 0, "FUTEX_WAIT on one mapping woken by FUTEX_WAKE on the other (%.1f ms)", t);

  is(S2(SYS_ftruncate, fd, 100), 0, "ftruncate to 100 bytes under the mappings");
  ok(((char *)hp((uint64_t)m2))[0] == 0, "past the end: zeros (no SIGBUS in the shim)");
  is(S4(SYS_pwrite64, fd, gs("Z"), 1, 5000), 1, "pwrite at 5000 grows it");
  ok(((char *)hp((uint64_t)m1))[5000] == 'Z' && ((char *)hp((uint64_t)m1))[4096] == 0,
     "the mapping shows it, zeros before it");
  is(S3(SYS_read, fd, galloc(NULL, 1), 0), 0, "read of 0 bytes");

  /* A save (its round trips: shim_state_shm.c): not without its
   * preparation (the objects' data copied into the /tmp region before the
   * memory images), then it goes on, and the objects stay. */
  struct wbuf w = {0};
  ok(fs_save(sb, &w) < 0 && strstr(cf_error(), "shared mapping"), "a save with a shared mapping, unprepared: refused (%s)",
     cf_error());
  free(w.p);
  int files = sb->hostfiles;
  memset(&w, 0, sizeof w);
  ok(fs_save_prepare(sb) == 0 && fs_save(sb, &w) == 0, "prepared: the save goes on (%s)", cf_error());
  fs_save_done(sb);
  free(w.p);
  S2(SYS_munmap, m1, 8192);
  S2(SYS_munmap, m2, 4096);
  is(sb->hostfiles, files, "the file keeps its memfd");
  ok(strcmp(gpread(fd, 5, 0), "aaaaa") == 0 && gpread(fd, 1, 5000)[0] == 'Z', "and the file reads the same");
  S1(SYS_close, fd);

  fd = gopen("/dev/shm/sem.x", O_CREAT | O_RDWR, 0600);
  ok(fd >= 0, "shm_open: /dev/shm/sem.x");
  memset(&w, 0, sizeof w);
  ok(fs_save_prepare(sb) == 0 && fs_save(sb, &w) == 0, "a save with a file in /dev/shm goes on (%s)", cf_error());
  fs_save_done(sb);
  free(w.p);
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/dev/shm/sem.x"));

  /* The /tmp region's size bounds the files' shared memory. */
  fd = gopen("/tmp/big", O_CREAT | O_RDWR, 0644);
  is(S2(SYS_ftruncate, fd, tmp_region_size(sb->tmpfs) + 4096), 0, "a sparse file larger than /tmp");
  is(S6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), -ENOMEM,
     "mapping it MAP_SHARED: ENOMEM (its memory would not fit in /tmp)");
  S1(SYS_close, fd);
  S1(SYS_unlink, gs("/tmp/big"));
}

static void test_link(void)
{
  diag("link(2) in /tmp and /dev/shm (sem_open makes its semaphore so)");
  int fd = gopen("/dev/shm/sem.tmpXYZ", O_CREAT | O_RDWR | O_EXCL, 0600);
  is(S3(SYS_write, fd, gs("semaphore"), 9), 9, "write the new file");
  is(S2(SYS_link, gs("/dev/shm/sem.tmpXYZ"), gs("/dev/shm/sem.name")), 0, "link it to its name");
  is(S2(SYS_link, gs("/dev/shm/sem.tmpXYZ"), gs("/dev/shm/sem.name")), -EEXIST, "again: EEXIST");
  is(S1(SYS_unlink, gs("/dev/shm/sem.tmpXYZ")), 0, "unlink the first name");
  int fd2 = gopen("/dev/shm/sem.name", O_RDWR, 0);
  ok(fd2 >= 0 && strcmp(gpread(fd2, 9, 0), "semaphore") == 0, "the other name has the data");
  is(S4(SYS_pwrite64, fd, gs("S"), 1, 0), 1, "a write through the first file");
  ok(strcmp(gpread(fd2, 9, 0), "Semaphore") == 0, "is in the same file");
  struct stat st;
  uint64_t stg = galloc(NULL, sizeof st);
  is(S2(SYS_fstat, fd2, stg), 0, "fstat");
  memcpy(&st, hp(stg), sizeof st);
  is((long)st.st_nlink, 1, "one name left: st_nlink 1");
  is(S2(SYS_link, gs("/dev/shm/sem.name"), gs("/tmp/x")), -EXDEV, "link from /dev/shm to /tmp: EXDEV");
  is(S2(SYS_link, gs("/tmp"), gs("/tmp/d")), -EPERM, "link a directory: EPERM");
  is(S2(SYS_link, gs("/tmp/nope"), gs("/tmp/d")), -ENOENT, "link a missing file: ENOENT");
  is(S2(SYS_link, gs("/plain"), gs("/plain2")), 0, "link outside /tmp: in the upper layer (a copy-up first)");
  S1(SYS_close, fd);
  S1(SYS_close, fd2);
  S1(SYS_unlink, gs("/dev/shm/sem.name"));
  ok(strcmp(glist("/dev/shm"), "") == 0, "/dev/shm empty again");
  fd = gopen("/tmp/l1", O_CREAT | O_RDWR, 0600);
  S1(SYS_close, fd);
  is(S2(SYS_link, gs("/tmp/l1"), gs("/tmp/l2")), 0, "link in /tmp");
  struct wbuf w = {0};
  ok(fs_save(sb, &w) == 0, "a save with a hard link goes on (%s)", cf_error());
  free(w.p);
  /* left for the teardown: a tree with a link is freed whole */
}

int main(void)
{
  if (!mkdtemp(root))
    abort();
  char p[300];
  snprintf(p, sizeof p, "%s/plain", root);
  int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    abort();
  close(fd);
  shim_setup(root);
  test_anon();
  test_file();
  test_link();
  shim_teardown();
  unlink(p);
  rmdir(root);
  return done_testing();
}
