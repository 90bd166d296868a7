/* The sandbox's writable file system: the upper layer of the overlay over
 * the root (ovl.c says how the layers merge), a tree of files,
 * directories, symlinks, FIFOs, whiteouts (a name that hides the lower's)
 * and opaque directories (that hide the lower directory's entries), rooted
 * at "/" (it merges with the root's "/"); /tmp is an opaque directory of
 * it. /dev/shm is a second tree on the same pages (no lower layer).
 *
 * File data lives where the node's store says (struct store below): `mem`,
 * guest memory, the default and always /tmp's and /dev/shm's, or `disk`,
 * an ext4 disk (--disk, lib/extfs.c) for the rest of the upper layer. The
 * rest of this note is the `mem` store's.
 *
 * File data lives in guest memory: a region [base, base+size) below the
 * stack gap that the program cannot reach: no VMA covers it, the shim
 * refuses to map, unmap or protect it for the guest (mm.c mm_reserved), and
 * the guest page tables map it supervisor-only (cf_vm_guard), so the host
 * mapping the shim reads and writes here always stays read-write. Each file is an array of page addresses in that region (0: a hole
 * reading as zeros), allocated from a bitmap. So a snapshot of guest memory
 * captures /tmp contents, forks share them copy-on-write, and a branch's
 * dirty scan stores exactly the /tmp pages its child wrote. The tree (names,
 * sizes, page lists) is small metadata on the VMM heap, serialized into the
 * template's state file (tmp_save / tmp_load; with /dev/shm, hard links by
 * their target's id, and the shared memory objects' data: "shared memory in
 * a save" below). A page is always fully
 * written when allocated: a freed page is not zeroed (in a child its
 * contents may come back from the template's image).
 *
 * Each node keeps mode, owner, atime/mtime/ctime (chmod, chown, utimensat).
 * A FIFO (mknod S_IFIFO) is a node with a struct fifo and no data: its
 * open files and the host pipe they share are fs.c's (fifo_open); a
 * snapshot keeps the node only (fs_save refuses an open FIFO file).
 *
 * A directory made by tmp_create is opaque; one made by a copy-up
 * (tmp_copyup) is not, and stands where the root has a directory of the
 * same path (ovl.c relies on it: only opaque directories move).
 *
 * Invariants: a node is owned by its parent's kids array while linked, and
 * by the open files (refs) after unlink; it is freed when both are gone.
 * Paths given here are already lexically normalized (path_abs). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cowfork/extfs.h"
#include "cowfork/image.h"
#include "cowfork/store.h"
#include "cowfork/zero.h"
#include "internal.h"
#include "shim/shim.h"

struct tmpfs {
  uint8_t *mem;      /* host mapping of guest memory */
  uint64_t base, npages;
  uint64_t *bitmap;  /* 1: page in use */
  uint64_t hint, used;
  struct tnode *root; /* "/": the upper layer of the overlay over the root (ovl.c) */
  struct tnode *shm; /* /dev/shm: a second tree, on the same pages */
  uint64_t shm_pages; /* pages of the files' shared memory objects (tmp_shared): they count as used */
  uint64_t next_id;  /* tmp_save */
  uint64_t index;    /* the files' page-index entries (sum of npages): bounded by index_max() */
  struct cf_extfs *disk; /* --disk: the file system the `disk` store keeps data in, else NULL */
  uint32_t disk_work;    /* its work/ directory: one inode per file's data, named disk_next */
  uint32_t disk_next;
  uint64_t xattr_bytes; /* the nodes' extended attributes (tmp_setxattr): bounded by xattr_max() */
  struct cf_overlay *disk_ov; /* the device under disk: what a save commits (tmp_disk_commit) */
  bool disk_own;              /* disk_ov is ours to free (a loaded state's), not the caller's (--disk) */
  struct cf_image *disk_img;  /* a loaded state's disk image when no template keeps it (tests), else NULL */
  char disk_image[300];       /* the image the disk was last saved as or loaded from ("" if none) */
  uint8_t disk_id[16];        /* and its id: tmp_save records both */
  bool closing;               /* tmp_destroy: the disk goes with the tree, its files need no unlink */
  struct tnode **saved; /* a save in progress: the nodes tmp_save_shared gave pages (each referenced) */
  size_t nsaved;
};

/* Where a node's file data lives (DESIGN.md convention 5: a vtable). The
 * tree (names, modes, sizes, times, links) is the same for both; the tmp_*
 * calls check the generic rules and a file shared with a memory object
 * (n->obj) first, then call these with a range inside the file's limits.
 * `mem`: pages of the guest-memory region (n->pages). `disk`: an inode of
 * the sandbox's disk (n->dino, made at the first write), so that files
 * larger than guest memory fit. A node takes its directory's store when
 * it is linked there holding no data (add_kid): the root's is `disk` when
 * the sandbox has one, /tmp's and /dev/shm's always `mem`. */
struct store {
  const char *name;
  /* len bytes at off, inside the file's size: the count, or -errno */
  long (*read)(struct tnode *n, void *buf, uint64_t len, uint64_t off);
  /* the count written (short only when room ran out), or -errno */
  long (*write)(struct tnode *n, const void *buf, uint64_t len, uint64_t off);
  /* the size goes from n->size to len: what lies past len reads as zeros */
  int (*truncate)(struct tnode *n, uint64_t len);
  /* room for [off, end) (fallocate mode 0), reading as zeros where it was a hole */
  int (*allocate)(struct tnode *n, uint64_t off, uint64_t end);
  /* [off, end) reads as zeros; whole pages give their room back */
  void (*punch)(struct tnode *n, uint64_t off, uint64_t end);
  /* SEEK_DATA/SEEK_HOLE from off (< n->size): an offset (the caller clamps
   * it at the size), or -ENXIO (no data past off) */
  long (*seek)(struct tnode *n, uint64_t off, int whence);
  /* all of the data goes */
  void (*drop)(struct tnode *n);
  /* the largest file size */
  uint64_t (*max_size)(const struct tmpfs *fs);
};
static const struct store mem_store, disk_store;
#define DISK_MAX_SIZE (1ull << 44) /* the disk store's largest file: ext4's with 4 KiB blocks, 16 TiB */

/* Files are sparse (a hole is a 0 in the page index) up to 8 GiB or the
 * region's size, whichever is larger: CPython's test_io writes at 2 GiB.
 * The indexes (8 bytes per 4 KiB of file size, on the VMM heap) are
 * bounded together, so that no program grows the VMM without bound. */
#define SPARSE_PAGES (1ull << 21)
static uint64_t file_max(const struct tmpfs *fs) { return fs->npages > SPARSE_PAGES ? fs->npages : SPARSE_PAGES; }
static uint64_t index_max(const struct tmpfs *fs) { return 4 * file_max(fs); }

struct tnode {
  struct tmpfs *fs;
  uint64_t id;       /* tmp_save */
  char *name;
  bool dir;
  bool linked;
  bool whiteout;     /* hides the lower name (ovl.c): no data, never opened */
  bool opaque;       /* a directory that hides the lower directory's entries */
  char *link;        /* a symbolic link: its target, else NULL */
  unsigned mode;
  int uid, gid;
  int refs;
  uint64_t ino;
  const struct store *st; /* where the data is (NULL: mem) */
  uint32_t dino, dname; /* the disk store's: the data's inode (0: none yet), its name in work/ */
  uint64_t *pages;   /* mem store: guest addresses of the data pages, 0 = hole; | UNWRITTEN: fallocated, not written */
  struct shm_obj *obj; /* once mapped MAP_SHARED: the data is here, not in pages (tmp_shared) */
  struct tnode *target; /* a hard link (link(2)): a name of target, which it holds a reference on */
  bool linkable;        /* made by O_TMPFILE without O_EXCL and never linked: linkat may name it (tmp_link_node) */
  int nlinks;           /* hard links to this node */
  uint64_t npages;   /* entries in pages */
  uint64_t size;
  struct timespec atime, mtime, ctime; /* chmod/utimensat set them (tmp_chmod, tmp_utimes) */
  struct fifo *fifo; /* a FIFO: its state (fs.c), else NULL */
  bool sock;         /* a socket file (an AF_UNIX path name: net.c keeps which socket is bound to it) */
  bool anon;         /* no file: a shared memory object's data in a save (tmp_save_shared) or a load */
  struct tnode *parent;
  struct tnode **kids;
  int nkids;
  /* Extended attributes (tmp_setxattr): entries by name in descending
   * strcmp order (listxattr's order on Linux's tmpfs, whose rbtree it
   * walks), each a u32 value length, the name and its NUL, the value. */
  uint8_t *xa;
  size_t xalen;
};

/* A page-index entry's low bit: a page fallocate gave and nothing wrote
 * yet. It reads as zeros and holds its room, and SEEK_DATA takes it for a
 * hole, as Linux's tmpfs (a folio not uptodate). PG() is the address. */
#define UNWRITTEN 1ull
#define PG(e) ((e) & ~(PAGE - 1))

static const struct store *st_of(const struct tnode *n) { return n->st ? n->st : &mem_store; }

static uint64_t next_ino = 1000000; /* atomic: sandboxes run on several threads */

static uint64_t page_alloc(struct tmpfs *fs)
{
  if (fs->used + fs->shm_pages >= fs->npages)
    return 0;
  for (uint64_t k = 0; k < fs->npages; k++) {
    uint64_t i = (fs->hint + k) % fs->npages;
    if (!(fs->bitmap[i / 64] & (1ull << (i % 64)))) {
      fs->bitmap[i / 64] |= 1ull << (i % 64);
      fs->hint = i + 1;
      fs->used++;
      return fs->base + i * PAGE;
    }
  }
  return 0;
}

static void page_free(struct tmpfs *fs, uint64_t addr)
{
  uint64_t i = (addr - fs->base) / PAGE;
  fs->bitmap[i / 64] &= ~(1ull << (i % 64));
  fs->used--;
}

static struct tnode *node_new(struct tmpfs *fs, const char *name, bool dir, unsigned mode)
{
  struct tnode *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->fs = fs;
  n->name = strdup(name);
  if (!n->name) {
    free(n);
    return NULL;
  }
  n->dir = dir;
  n->mode = mode & 07777;
  n->ino = __atomic_fetch_add(&next_ino, 1, __ATOMIC_RELAXED);
  n->linked = true;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  n->atime = n->ctime = n->mtime;
  return n;
}

struct tmpfs *tmp_new(uint8_t *mem, uint64_t base, uint64_t size)
{
  struct tmpfs *fs = calloc(1, sizeof *fs);
  if (!fs)
    return NULL;
  fs->mem = mem;
  fs->base = base;
  fs->npages = size / PAGE;
  fs->bitmap = calloc((fs->npages + 63) / 64 + 1, 8);
  fs->root = node_new(fs, "root", true, 0755);
  fs->shm = node_new(fs, "shm", true, 01777);
  struct tnode *t = node_new(fs, "tmp", true, 01777);
  if (!fs->bitmap || !fs->root || !fs->shm || !t) {
    tmp_free(t);
    tmp_destroy(fs);
    return NULL;
  }
  /* /tmp: opaque, so the root's own /tmp is never seen (fs.c) */
  t->opaque = true;
  struct tnode **k = malloc(sizeof *k);
  if (!k) {
    tmp_free(t);
    tmp_destroy(fs);
    return NULL;
  }
  k[0] = t;
  fs->root->kids = k;
  fs->root->nkids = 1;
  t->parent = fs->root;
  return fs;
}

/* Before a whole tree is freed: each hard link lets go of its target (a
 * target out of the tree is freed then; one in it, with the tree). */
static void drop_links(struct tnode *n)
{
  for (int i = 0; i < n->nkids; i++)
    drop_links(n->kids[i]);
  struct tnode *t = n->target;
  if (t) {
    n->target = NULL;
    t->nlinks--;
    tmp_unref(t);
  }
}

void tmp_destroy(struct tmpfs *fs)
{
  if (!fs)
    return;
  if (fs->root)
    drop_links(fs->root);
  if (fs->shm)
    drop_links(fs->shm);
  fs->closing = true;
  tmp_free(fs->root);
  tmp_free(fs->shm);
  if (fs->disk)
    cf_extfs_close(fs->disk); /* (--disk: the caller frees the overlay under it) */
  if (fs->disk_own)
    cf_overlay_free(fs->disk_ov);
  cf_image_close(fs->disk_img);
  free(fs->bitmap);
  free(fs);
}

uint64_t tmp_region_base(const struct tmpfs *fs) { return fs->base; }
uint64_t tmp_region_size(const struct tmpfs *fs) { return fs->npages * PAGE; }
void tmp_set_mem(struct tmpfs *fs, uint8_t *mem) { fs->mem = mem; }

static void drop_pages(struct tnode *n, uint64_t from)
{
  for (uint64_t i = from; i < n->npages; i++)
    if (n->pages[i]) {
      page_free(n->fs, PG(n->pages[i]));
      n->pages[i] = 0;
    }
}

void tmp_free(struct tnode *n)
{
  if (!n)
    return;
  if (n->target) {
    n->target->nlinks--;
    tmp_unref(n->target);
  }
  for (int i = 0; i < n->nkids; i++)
    tmp_free(n->kids[i]);
  st_of(n)->drop(n);
  shm_unref(n->obj); /* the mappings may hold it still */
  n->fs->index -= n->npages;
  if (n->fifo) { /* no open file holds it, so it holds no pipe end (fs.c): closed anyway */
    if (n->fifo->rd >= 0)
      close(n->fifo->rd);
    if (n->fifo->wr >= 0)
      close(n->fifo->wr);
    free(n->fifo);
  }
  free(n->pages);
  free(n->kids);
  n->fs->xattr_bytes -= n->xalen;
  free(n->xa);
  free(n->link);
  free(n->name);
  free(n);
}

/* /dev/shm: the length of its prefix in abs, or 0. */
static size_t shm_prefix(const char *abs)
{
  return strncmp(abs, "/dev/shm", 8) == 0 && (abs[8] == 0 || abs[8] == '/') ? 8 : 0;
}

bool tmp_is_shm(const char *abs) { return shm_prefix(abs) != 0; }

/* The tree abs is in (the upper layer's or /dev/shm's) and the rest of abs
 * after it. */
static struct tnode *tree_of(struct tmpfs *fs, const char *abs, const char **rest)
{
  size_t k = shm_prefix(abs);
  *rest = abs + k;
  return k ? fs->shm : fs->root;
}

bool tmp_is_dir(struct tnode *n) { return n->dir; }

static struct tnode *kid(struct tnode *d, const char *name, size_t len)
{
  for (int i = 0; i < d->nkids; i++)
    if (strlen(d->kids[i]->name) == len && memcmp(d->kids[i]->name, name, len) == 0)
      return d->kids[i];
  return NULL;
}

/* Walk abs (a path of the upper layer, no symlink on the way: ovl.c
 * resolves them; or "/dev/shm/..."). With parent_out: stop at the last
 * component; *parent_out is the directory that holds (or would hold) it and
 * *last its name, or both NULL when abs is the tree's top itself or an
 * earlier component is missing (-ENOENT into *err; a whiteout is missing)
 * or not a directory (-ENOTDIR). The last component may be a whiteout. */
static struct tnode *walk(struct sb *sb, const char *abs, struct tnode **parent_out, const char **last, int *err)
{
  const char *p;
  struct tnode *n = tree_of(sb->tmpfs, abs, &p);
  if (parent_out) {
    *parent_out = NULL;
    *last = NULL;
    *err = 0;
  }
  while (*p == '/')
    p++;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *next = p + len;
    while (*next == '/')
      next++;
    if (!n->dir) {
      if (parent_out)
        *err = -ENOTDIR;
      return NULL;
    }
    if (parent_out && !*next) {
      if (len > 255) {
        *err = -ENAMETOOLONG;
        return NULL;
      }
      *parent_out = n;
      *last = p;
      return kid(n, p, len);
    }
    n = kid(n, p, len);
    if (n && n->target)
      n = n->target;
    if (!n || n->whiteout) {
      if (parent_out)
        *err = -ENOENT;
      return NULL;
    }
    p = next;
  }
  return n;
}

/* The node a name stands for (a hard link's target). */
static struct tnode *res(struct tnode *n) { return n && n->target ? n->target : n; }

struct tnode *tmp_lookup(struct sb *sb, const char *abs)
{
  struct tnode *n = res(walk(sb, abs, NULL, NULL, NULL));
  return n && !n->whiteout ? n : NULL;
}

long tmp_lookup_err(struct sb *sb, const char *abs, struct tnode **out)
{
  struct tnode *parent;
  const char *last;
  int err;
  struct tnode *n = walk(sb, abs, &parent, &last, &err);
  if (!parent && !err) {
    const char *rest;
    n = tree_of(sb->tmpfs, abs, &rest); /* / or /dev/shm itself */
  }
  if (n && n->whiteout)
    n = NULL;
  *out = res(n);
  return n ? 0 : err ? err : -ENOENT;
}

static int add_kid(struct tnode *d, struct tnode *n)
{
  struct tnode **k = realloc(d->kids, (d->nkids + 1) * sizeof *k);
  if (!k)
    return -ENOMEM;
  d->kids = k;
  d->kids[d->nkids++] = n;
  n->parent = d;
  if (!n->pages && !n->dino && !n->obj && !n->size)
    n->st = d->st; /* (add_kid's callers hold no data yet, or move a file: it keeps its store) */
  n->linked = true;
  clock_gettime(CLOCK_REALTIME, &d->mtime);
  d->ctime = d->mtime;
  return 0;
}

static void del_kid(struct tnode *d, struct tnode *n)
{
  for (int i = 0; i < d->nkids; i++)
    if (d->kids[i] == n) {
      memmove(&d->kids[i], &d->kids[i + 1], (d->nkids - i - 1) * sizeof *d->kids);
      d->nkids--;
      break;
    }
  n->linked = false;
  n->parent = NULL;
  clock_gettime(CLOCK_REALTIME, &d->mtime);
  d->ctime = d->mtime;
}

long tmp_create(struct sb *sb, const char *abs, bool dir, unsigned mode, struct tnode **out)
{
  struct tnode *parent;
  const char *last;
  int err;
  struct tnode *n = walk(sb, abs, &parent, &last, &err);
  if (!parent)
    return err ? err : -EEXIST; /* no error: abs is the top itself */
  if (n && !n->whiteout)
    return -EEXIST;
  struct tnode *wh = n;
  n = node_new(sb->tmpfs, last, dir, mode & ~sb->umask);
  if (!n)
    return -ENOMEM;
  n->uid = sb->uid;
  n->gid = sb->gid;
  n->opaque = dir; /* a new directory never shows a lower one's entries (ovl.c) */
  if (add_kid(parent, n) < 0) {
    tmp_free(n);
    return -ENOMEM;
  }
  if (wh) { /* the name is this node's now */
    del_kid(parent, wh);
    tmp_free(wh);
  }
  *out = n;
  return 0;
}

long tmp_symlink(struct sb *sb, const char *abs, const char *target, struct tnode **out)
{
  char *t = strdup(target);
  if (!t)
    return -ENOMEM;
  long r = tmp_create(sb, abs, false, 0777 | 0, out);
  if (r < 0) {
    free(t);
    return r;
  }
  (*out)->mode = 0777; /* a link's mode is not the umask's */
  (*out)->link = t;
  (*out)->size = strlen(t);
  return 0;
}

/* A whiteout named last in dir (replacing what has that name). */
static int put_whiteout(struct tnode *dir, const char *last)
{
  struct tnode *old = kid(dir, last, strlen(last));
  if (old && old->whiteout)
    return 0;
  struct tnode *w = node_new(dir->fs, last, false, 0);
  if (!w)
    return -ENOMEM;
  w->whiteout = true;
  if (add_kid(dir, w) < 0) {
    tmp_free(w);
    return -ENOMEM;
  }
  if (old) {
    del_kid(dir, old);
    if (old->refs == 0)
      tmp_free(old);
  }
  return 0;
}

long tmp_whiteout(struct sb *sb, const char *abs)
{
  struct tnode *parent;
  const char *last;
  int err;
  walk(sb, abs, &parent, &last, &err);
  if (!parent)
    return err ? err : -EBUSY;
  return put_whiteout(parent, last);
}

/* ---- the overlay's view of the tree (ovl.c) ---- */

struct tnode *tmp_root(struct tmpfs *fs) { return fs->root; }
bool tmp_is_whiteout(struct tnode *n) { return n->whiteout; }
bool tmp_is_opaque(struct tnode *n) { return n->opaque; }
const char *tmp_symlink_target(struct tnode *n) { return n->link; }

struct tnode *tmp_kid(struct tnode *dir, const char *name, size_t len)
{
  struct tnode *k = kid(dir, name, len);
  return k && k->target ? k->target : k;
}

void tmp_usage(struct tmpfs *fs, uint64_t *total, uint64_t *used)
{
  *total = fs->npages;
  *used = fs->used + fs->shm_pages;
}

struct tnode *tmp_copyup(struct tnode *dir, const char *name, const struct stat *st, const char *link, long *err)
{
  if (kid(dir, name, strlen(name))) {
    *err = -EEXIST;
    return NULL;
  }
  char *t = link ? strdup(link) : NULL;
  struct fifo *ff = S_ISFIFO(st->st_mode) ? calloc(1, sizeof *ff) : NULL;
  struct tnode *n = node_new(dir->fs, name, S_ISDIR(st->st_mode), st->st_mode);
  if (!n || (link && !t) || (S_ISFIFO(st->st_mode) && !ff) || add_kid(dir, n) < 0) {
    free(t);
    free(ff);
    if (n)
      tmp_free(n);
    *err = -ENOMEM;
    return NULL;
  }
  n->link = t;
  if (t)
    n->size = strlen(t);
  if (ff) {
    ff->rd = ff->wr = -1;
    n->fifo = ff;
  }
  n->ino = st->st_ino; /* as overlayfs keeps the lower's inode number */
  n->uid = (int)st->st_uid;
  n->gid = (int)st->st_gid;
  n->atime = st->st_atim;
  n->mtime = st->st_mtim;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
  return n;
}

void tmp_set_times(struct tnode *n, const struct stat *st)
{
  n->atime = st->st_atim;
  n->mtime = st->st_mtim;
}

void tmp_drop(struct tnode *n)
{
  if (n->parent)
    del_kid(n->parent, n);
  if (n->refs == 0)
    tmp_free(n);
}

void tmp_set_root_attr(struct tmpfs *fs, const struct stat *st)
{
  fs->root->mode = st->st_mode & 07777;
  fs->root->uid = (int)st->st_uid;
  fs->root->gid = (int)st->st_gid;
  fs->root->ino = st->st_ino;
  fs->root->atime = st->st_atim;
  fs->root->mtime = st->st_mtim;
  fs->root->ctime = st->st_ctim;
}

/* The kids of d that are not whiteouts. */
static int live_kids(struct tnode *d)
{
  int c = 0;
  for (int i = 0; i < d->nkids; i++)
    c += !d->kids[i]->whiteout;
  return c;
}

long tmp_mkfifo(struct sb *sb, const char *abs, unsigned mode, struct tnode **out)
{
  struct fifo *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  p->rd = p->wr = -1;
  long r = tmp_create(sb, abs, false, mode, out);
  if (r < 0) {
    free(p);
    return r;
  }
  (*out)->fifo = p;
  return 0;
}

struct fifo *tmp_fifo(struct tnode *n) { return n->fifo; }

long tmp_mksock(struct sb *sb, const char *abs, unsigned mode, struct tnode **out)
{
  long r = tmp_create(sb, abs, false, mode, out);
  if (r == 0)
    (*out)->sock = true;
  return r;
}

bool tmp_is_sock(struct tnode *n) { return n->sock; }

long tmp_unlink(struct sb *sb, const char *abs, bool dir, bool whiteout)
{
  struct tnode *parent;
  const char *last;
  int err;
  struct tnode *n = walk(sb, abs, &parent, &last, &err);
  if (!parent)
    return err ? err : -EBUSY;
  if (!n || n->whiteout)
    return -ENOENT;
  if (dir && !n->dir)
    return -ENOTDIR;
  if (!dir && n->dir)
    return -EISDIR;
  if (dir && live_kids(n))
    return -ENOTEMPTY;
  if (whiteout)
    return put_whiteout(parent, last);
  del_kid(parent, n);
  if (n->refs == 0)
    tmp_free(n);
  return 0;
}

long tmp_tmpfile(struct sb *sb, const char *dir, unsigned mode, bool linkable, struct tnode **out)
{
  struct tnode *n = node_new(sb->tmpfs, "", false, mode & ~sb->umask);
  if (!n)
    return -ENOMEM;
  /* the store of the directory (its nearest ancestor in the tree) */
  const char *rest;
  struct tnode *d = tree_of(sb->tmpfs, dir, &rest);
  for (const char *p = rest; *p == '/';) {
    const char *e = strchr(p + 1, '/');
    size_t len = e ? (size_t)(e - p - 1) : strlen(p + 1);
    struct tnode *k = len ? kid(d, p + 1, len) : NULL;
    if (!k || !k->dir)
      break;
    d = k;
    if (!e)
      break;
    p = e;
  }
  n->st = d->st;
  n->uid = sb->uid;
  n->gid = sb->gid;
  n->linked = false;
  n->linkable = linkable;
  *out = n;
  return 0;
}

long tmp_link(struct sb *sb, const char *from, const char *to)
{
  if (!shm_prefix(from) != !shm_prefix(to))
    return -EXDEV;
  struct tnode *n = tmp_lookup(sb, from);
  if (!n) {
    struct tnode *x;
    return tmp_lookup_err(sb, from, &x);
  }
  return tmp_link_node(sb, n, to);
}

long tmp_link_node(struct sb *sb, struct tnode *n, const char *to)
{
  struct tnode *parent;
  const char *last;
  int err;
  if (n->dir)
    return -EPERM; /* Linux: no hard link to a directory */
  if (!n->linked && !n->linkable)
    return -ENOENT; /* Linux: a deleted file (nlink 0) gets no name again */
  struct tnode *old = walk(sb, to, &parent, &last, &err);
  if (!parent)
    return err ? err : -EEXIST;
  if (old && !old->whiteout)
    return -EEXIST;
  if (!n->linked) { /* an O_TMPFILE file: the name is its own */
    char *name = strdup(last);
    if (!name)
      return -ENOMEM;
    free(n->name);
    n->name = name;
    if (add_kid(parent, n) < 0)
      return -ENOMEM;
    n->linkable = false;
    if (old) {
      del_kid(parent, old);
      tmp_free(old);
    }
    clock_gettime(CLOCK_REALTIME, &n->ctime);
    return 0;
  }
  if (!parent)
    return err ? err : -EEXIST;
  if (old && !old->whiteout)
    return -EEXIST;
  struct tnode *e = node_new(sb->tmpfs, last, false, 0);
  if (!e)
    return -ENOMEM;
  if (add_kid(parent, e) < 0) {
    tmp_free(e);
    return -ENOMEM;
  }
  if (old) {
    del_kid(parent, old);
    tmp_free(old);
  }
  e->target = n;
  tmp_ref(n);
  n->nlinks++;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
  return 0;
}

long tmp_rename(struct sb *sb, const char *from, const char *to, bool whiteout)
{
  struct tnode *fp, *tp;
  const char *fl, *tl;
  int err;
  if (!shm_prefix(from) != !shm_prefix(to))
    return -EXDEV; /* /tmp and /dev/shm are two file systems */
  struct tnode *n = walk(sb, from, &fp, &fl, &err);
  if (!fp)
    return err ? err : -EBUSY;
  if (!n || n->whiteout)
    return -ENOENT;
  struct tnode *old = walk(sb, to, &tp, &tl, &err);
  if (!tp)
    return err ? err : -EBUSY;
  if (!tp->dir)
    return -ENOTDIR;
  for (struct tnode *a = tp; a; a = a->parent)
    if (a == n)
      return -EINVAL;
  if (old == n)
    return 0;
  if (old && !old->whiteout) {
    if (old->dir && !n->dir)
      return -EISDIR;
    if (!old->dir && n->dir)
      return -ENOTDIR;
    if (old->dir && live_kids(old))
      return -ENOTEMPTY;
  }
  char *name = strdup(tl);
  struct tnode *w = whiteout ? node_new(n->fs, fl, false, 0) : NULL;
  if (!name || (whiteout && !w)) {
    free(name);
    tmp_free(w);
    return -ENOMEM;
  }
  if (old) {
    del_kid(tp, old);
    if (old->refs == 0)
      tmp_free(old);
  }
  del_kid(fp, n);
  free(n->name);
  n->name = name;
  int r = add_kid(tp, n);
  if (w) { /* the lower's name stays hidden (ovl.c) */
    w->whiteout = true;
    if (add_kid(fp, w) < 0)
      tmp_free(w);
  }
  return r;
}

long tmp_exchange(struct sb *sb, const char *a, const char *b)
{
  struct tnode *pa, *pb;
  const char *la, *lb;
  int err;
  if (!shm_prefix(a) != !shm_prefix(b))
    return -EXDEV;
  struct tnode *na = walk(sb, a, &pa, &la, &err);
  if (!pa)
    return err ? err : -EBUSY;
  struct tnode *nb = walk(sb, b, &pb, &lb, &err);
  if (!pb)
    return err ? err : -EBUSY;
  if (!na || na->whiteout || !nb || nb->whiteout)
    return -ENOENT;
  if (na == nb)
    return 0;
  for (struct tnode *x = pb; x; x = x->parent)
    if (x == na)
      return -EINVAL;
  for (struct tnode *x = pa; x; x = x->parent)
    if (x == nb)
      return -EINVAL;
  int ia = -1, ib = -1;
  for (int i = 0; i < pa->nkids; i++)
    if (pa->kids[i] == na)
      ia = i;
  for (int i = 0; i < pb->nkids; i++)
    if (pb->kids[i] == nb)
      ib = i;
  if (ia < 0 || ib < 0)
    return -ENOENT;
  pa->kids[ia] = nb;
  pb->kids[ib] = na;
  na->parent = pb;
  nb->parent = pa;
  char *t = na->name;
  na->name = nb->name;
  nb->name = t;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  pa->mtime = pa->ctime = pb->mtime = pb->ctime = na->ctime = nb->ctime = now;
  return 0;
}

void tmp_stat(struct tnode *n, struct stat *st)
{
  memset(st, 0, sizeof *st);
  st->st_dev = 0x7f;
  st->st_ino = n->ino;
  st->st_mode = (n->dir ? S_IFDIR : n->fifo ? S_IFIFO : n->sock ? S_IFSOCK : n->link ? S_IFLNK : S_IFREG) | n->mode;
  st->st_nlink = n->dir ? 2 : (nlink_t)(n->linked + n->nlinks);
  st->st_uid = (uid_t)n->uid;
  st->st_gid = (gid_t)n->gid;
  st->st_size = (off_t)n->size;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
  st->st_atim = n->atime;
  st->st_mtim = n->mtime;
  st->st_ctim = n->ctime;
}

void tmp_chown(struct tnode *n, int uid, int gid)
{
  if (uid != -1)
    n->uid = uid;
  if (gid != -1)
    n->gid = gid;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
}

void tmp_chmod(struct tnode *n, unsigned mode)
{
  n->mode = mode & 07777;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
}

/* utimensat's times: NULL = now for both, else [atime, mtime] each a time,
 * UTIME_NOW or UTIME_OMIT (checked by the caller). */
void tmp_utimes(struct tnode *n, const struct timespec *ts)
{
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  for (int i = 0; i < 2; i++) {
    struct timespec *t = i ? &n->mtime : &n->atime;
    if (!ts || ts[i].tv_nsec == UTIME_NOW)
      *t = now;
    else if (ts[i].tv_nsec != UTIME_OMIT)
      *t = ts[i];
  }
  n->ctime = now;
}

long tmp_read(struct tnode *n, void *buf, uint64_t len, uint64_t off)
{
  if (n->dir)
    return -EISDIR;
  if (off >= n->size)
    return 0;
  if (len > n->size - off)
    len = n->size - off;
  if (n->obj) {
    ssize_t k = pread(n->obj->fd, buf, len, (off_t)off);
    return k < 0 ? -EIO : (long)k;
  }
  return st_of(n)->read(n, buf, len, off);
}

static long mem_read(struct tnode *n, void *buf, uint64_t len, uint64_t off)
{
  uint8_t *out = buf;
  for (uint64_t done = 0; done < len;) {
    uint64_t pi = (off + done) / PAGE, po = (off + done) % PAGE;
    uint64_t k = PAGE - po < len - done ? PAGE - po : len - done;
    if (pi < n->npages && n->pages[pi])
      memcpy(out + done, n->fs->mem + PG(n->pages[pi]) + po, k);
    else
      memset(out + done, 0, k);
    done += k;
  }
  return (long)len;
}

static int reserve(struct tnode *n, uint64_t size)
{
  uint64_t need = (size + PAGE - 1) / PAGE;
  if (need <= n->npages)
    return 0;
  if (need > file_max(n->fs))
    return -EFBIG;
  uint64_t cap = n->npages ? n->npages : 4;
  while (cap < need)
    cap *= 2;
  if (cap > file_max(n->fs))
    cap = need;
  if (n->fs->index - n->npages + cap > index_max(n->fs))
    return -ENOSPC;
  uint64_t *p = realloc(n->pages, cap * sizeof *p);
  if (!p)
    return -ENOSPC;
  memset(p + n->npages, 0, (cap - n->npages) * sizeof *p);
  n->fs->index += cap - n->npages;
  n->pages = p;
  n->npages = cap;
  return 0;
}

/* Zero [from, to) of the file's bytes that are on allocated pages. */
static void zero_range(struct tnode *n, uint64_t from, uint64_t to)
{
  while (from < to) {
    uint64_t pi = from / PAGE, po = from % PAGE;
    uint64_t k = PAGE - po < to - from ? PAGE - po : to - from;
    if (pi < n->npages && n->pages[pi])
      memset(n->fs->mem + PG(n->pages[pi]) + po, 0, k);
    from += k;
  }
}

/* ---- files in a shared memory object ----
 *
 * A file mapped MAP_SHARED once keeps its data in a host memfd (struct
 * shm_obj, mm.c) from then on: every mapping of it, in any process, maps
 * that memfd, and read, write and truncate go to it, so a store through a
 * mapping is in the file at once and a write is in every mapping. Its size
 * (page-rounded, never shrinking: a mapping past the end of a memfd would
 * raise SIGBUS in the shim) counts against the region's pages as the
 * file's pages did (fs->shm_pages): Linux's tmpfs counts the pages in use;
 * this counts what is reserved, so a sparse file of more than the region
 * cannot be made shared (ENOSPC, ftruncate EFBIG). A truncation zeroes
 * what lies past the new end (Linux: SIGBUS on a page wholly past it). */

/* Zero [from, to) of n's object (a hole: frees its memory). */
static void obj_zero(struct tnode *n, uint64_t from, uint64_t to)
{
  if (to <= from)
    return;
  if (fallocate(n->obj->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) < 0) {
    static const uint8_t z[4096];
    for (uint64_t o = from; o < to;) {
      uint64_t k = to - o < sizeof z ? to - o : sizeof z;
      if (pwrite(n->obj->fd, z, k, (off_t)o) <= 0)
        break;
      o += k;
    }
  }
}

static int obj_grow(struct tnode *n, uint64_t size)
{
  struct tmpfs *fs = n->fs;
  if (size > UINT64_MAX - PAGE)
    return -ENOSPC;
  size = PAGE_UP(size);
  if (size <= n->obj->size)
    return 0;
  if (fs->used + fs->shm_pages + (size - n->obj->size) / PAGE > fs->npages)
    return -ENOSPC;
  return shm_grow(n->obj, size);
}

static long obj_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off)
{
  int r = obj_grow(n, off + len);
  if (r < 0)
    return r;
  if (off > n->size)
    obj_zero(n, n->size, off);
  ssize_t k = pwrite(n->obj->fd, buf, len, (off_t)off);
  if (k < 0)
    return -EIO;
  if (off + (uint64_t)k > n->size)
    n->size = off + (uint64_t)k;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  n->ctime = n->mtime;
  return k;
}

struct shm_obj *tmp_shared(struct sb *sb, struct tnode *n, uint64_t end, int *err)
{
  struct tmpfs *fs = n->fs;
  if (n->obj) {
    if ((*err = obj_grow(n, end)) < 0)
      return NULL;
    return n->obj;
  }
  uint64_t want = end > n->size ? end : n->size, held = 0;
  if (want > UINT64_MAX - PAGE) {
    *err = -ENOSPC;
    return NULL;
  }
  want = PAGE_UP(want);
  for (uint64_t i = 0; i < n->npages; i++)
    held += n->pages[i] != 0;
  if (fs->used - held + fs->shm_pages + want / PAGE > fs->npages) {
    *err = -ENOSPC;
    return NULL;
  }
  struct shm_obj *o = shm_new(sb, want, err);
  if (!o)
    return NULL;
  for (uint64_t i = 0; i < n->npages;) { /* runs of pages next to each other in the region: one write each */
    if (!n->pages[i]) {
      i++;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n->npages && n->pages[j] && PG(n->pages[j]) == PG(n->pages[i]) + (j - i) * PAGE && j - i < 4096)
      j++;
    size_t len = (size_t)(j - i) * PAGE;
    if (pwrite(o->fd, fs->mem + PG(n->pages[i]), len, (off_t)(i * PAGE)) != (ssize_t)len) {
      shm_unref(o);
      *err = -ENOSPC;
      return NULL;
    }
    i = j;
  }
  for (uint64_t off = 0; n->dino && off < n->size;) { /* the disk store's data */
    uint8_t buf[PAGE * 16];
    uint64_t k = n->size - off < sizeof buf ? n->size - off : sizeof buf;
    long got = st_of(n)->read(n, buf, k, off);
    if (got < 0 || pwrite(o->fd, buf, k, (off_t)off) != (ssize_t)k) {
      shm_unref(o);
      *err = got < 0 ? (int)got : -ENOSPC;
      return NULL;
    }
    off += k;
  }
  st_of(n)->drop(n);
  o->charge = &fs->shm_pages;
  fs->shm_pages += o->size / PAGE;
  n->obj = o;
  return o;
}

/* A disk file's data back onto the disk (before a save): its non-zero
 * pages written, the zero ones left holes. */
static int obj_unshare_disk(struct tnode *n)
{
  struct shm_obj *o = n->obj;
  uint8_t buf[PAGE];
  for (uint64_t off = 0; off < n->size; off += PAGE) {
    uint64_t want = n->size - off < PAGE ? n->size - off : PAGE;
    ssize_t k = pread(o->fd, buf, want, (off_t)off);
    if (k < 0) {
      st_of(n)->drop(n);
      return -EIO;
    }
    memset(buf + k, 0, want - (uint64_t)k);
    if (cf_is_zero(buf, want))
      continue;
    long w = st_of(n)->write(n, buf, want, off);
    if (w != (long)want) {
      st_of(n)->drop(n);
      return w < 0 ? (int)w : -ENOSPC;
    }
  }
  n->fs->shm_pages -= o->size / PAGE;
  n->obj = NULL;
  o->charge = NULL;
  shm_unref(o);
  return 0;
}

/* ---- shared memory in a save ----
 *
 * A template holds the data of each shared memory object once: in pages
 * of the /tmp region (so in the first process's memory image: the image's
 * own copy-on-write and dedup, sparse, a branch storing what changed), of
 * the node of the file it is, or of an unlinked node of its own (anon) for
 * one no node holds (MAP_SHARED|MAP_ANONYMOUS, a deleted file's). The
 * objects are not touched: the copies are made before the memory images
 * are taken and freed after the save. A load makes the object again from
 * the node's pages (tmp_shared) once, and every mapping of it in any
 * process of the child maps that one object (mm.c mm_load_shared). */

/* A copy of o's first len bytes into fresh pages of n (holding none). */
static int obj_copy_out(struct tnode *n, uint64_t len)
{
  struct tmpfs *fs = n->fs;
  struct shm_obj *o = n->obj;
  if (len > o->size)
    len = o->size;
  uint64_t np = (len + PAGE - 1) / PAGE;
  if (reserve(n, len) < 0)
    return -1;
  uint8_t buf[PAGE];
  for (uint64_t i = 0; i < np; i++) {
    ssize_t k = pread(o->fd, buf, PAGE, (off_t)(i * PAGE));
    if (k < 0)
      return -1;
    memset(buf + k, 0, PAGE - (uint64_t)k);
    if (cf_is_zero(buf, PAGE))
      continue; /* a hole */
    uint64_t a = page_alloc(fs);
    if (!a)
      return -1;
    memcpy(fs->mem + a, buf, PAGE);
    n->pages[i] = a;
  }
  return 0;
}

static int saved_add(struct tmpfs *fs, struct tnode *n)
{
  struct tnode **p = realloc(fs->saved, (fs->nsaved + 1) * sizeof *p);
  if (!p)
    return -1;
  fs->saved = p;
  fs->saved[fs->nsaved++] = n;
  tmp_ref(n);
  return 0;
}

static int save_walk(struct tnode *n)
{
  if (n->target)
    n = n->target; /* (an unlinked target's object too) */
  if (n->obj && st_of(n) != &disk_store && !n->obj->save_node) { /* (a disk file's: prepare_disk) */
    if (saved_add(n->fs, n) < 0)
      return cf_fail(ENOMEM, "out of memory");
    n->obj->save_node = n;
    if (obj_copy_out(n, n->size) < 0)
      return cf_fail(ENOSPC, "%s: no room in /tmp for a copy of its shared memory in the template", n->name);
  }
  for (int i = 0; i < n->nkids; i++)
    if (save_walk(n->kids[i]) < 0)
      return -1;
  return 0;
}

int tmp_save_shared(struct tmpfs *fs, struct tnode *const *extra, size_t nextra, struct shm_obj *const *objs,
                    size_t nobjs)
{
  if (save_walk(fs->root) < 0 || save_walk(fs->shm) < 0)
    return -1;
  for (size_t i = 0; i < nextra; i++)
    if (save_walk(extra[i]) < 0)
      return -1;
  for (size_t i = 0; i < nobjs; i++) {
    struct shm_obj *o = objs[i];
    if (o->save_node)
      continue;
    struct tnode *n = node_new(fs, "shm", false, 0600);
    if (!n || saved_add(fs, n) < 0) {
      tmp_free(n);
      return cf_fail(ENOMEM, "out of memory");
    }
    n->linked = false;
    n->anon = true;
    n->obj = o;
    n->parent = NULL;
    shm_ref(o);
    n->size = o->size;
    o->save_node = n;
    if (o->size > fs->npages * PAGE || obj_copy_out(n, o->size) < 0)
      return cf_fail(ENOSPC, "no room in /tmp for a copy of a MAP_SHARED mapping's memory (%llu KiB) in the template",
                     (unsigned long long)(o->size >> 10));
  }
  return 0;
}

void tmp_save_shared_done(struct tmpfs *fs)
{
  for (size_t i = 0; i < fs->nsaved; i++) {
    struct tnode *n = fs->saved[i];
    if (n->obj) {
      n->obj->save_node = NULL;
      drop_pages(n, 0); /* the copy: the object holds the data */
    }
    tmp_unref(n); /* an anon node goes */
  }
  free(fs->saved);
  fs->saved = NULL;
  fs->nsaved = 0;
}

/* A file of the disk that had a memory object (it was mapped MAP_SHARED):
 * its data goes back onto the disk. One still mapped is not saved yet (its
 * copy would need pages of the region, which a disk node does not hold). */
static int prepare_disk(struct tnode *n)
{
  if (n->obj && st_of(n) == &disk_store) {
    if (n->obj->refs > 1)
      return cf_fail(ENOTSUP, "%s is on the sandbox's disk and mapped MAP_SHARED: such a sandbox cannot be saved "
                     "yet (unmap it before the pause)", n->name);
    if (obj_unshare_disk(n) < 0)
      return cf_fail(ENOSPC, "%s: no room on the disk to save it", n->name);
  }
  for (int i = 0; i < n->nkids; i++)
    if (prepare_disk(n->kids[i]) < 0)
      return -1;
  return 0;
}

int tmp_save_prepare(struct tmpfs *fs, struct tnode *const *extra, size_t nextra)
{
  if (!fs->disk)
    return 0;
  if (prepare_disk(fs->root) < 0)
    return -1;
  for (size_t i = 0; i < nextra; i++)
    if (prepare_disk(extra[i]) < 0)
      return -1;
  return 0;
}

long tmp_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off)
{
  if (n->dir)
    return -EISDIR;
  if (off + len < off)
    return -EFBIG;
  if (n->obj)
    return obj_write(n, buf, len, off);
  if (off + len > st_of(n)->max_size(n->fs))
    return -EFBIG;
  long done = st_of(n)->write(n, buf, len, off);
  if (done < 0)
    return done;
  if (done == 0 && len)
    return -ENOSPC;
  if (off + (uint64_t)done > n->size)
    n->size = off + (uint64_t)done;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  n->ctime = n->mtime;
  return done;
}

static long mem_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off)
{
  int r = reserve(n, off + len);
  if (r < 0)
    return r;
  if (off > n->size)
    zero_range(n, n->size, off);
  const uint8_t *in = buf;
  uint64_t done = 0;
  while (done < len) {
    uint64_t pi = (off + done) / PAGE, po = (off + done) % PAGE;
    uint64_t k = PAGE - po < len - done ? PAGE - po : len - done;
    if (!n->pages[pi]) {
      uint64_t a = page_alloc(n->fs);
      if (!a)
        break;
      memset(n->fs->mem + a, 0, PAGE); /* a page is fully written when allocated */
      n->pages[pi] = a;
    }
    n->pages[pi] &= ~UNWRITTEN;
    memcpy(n->fs->mem + n->pages[pi] + po, in + done, k);
    done += k;
  }
  return (long)done;
}

long tmp_truncate(struct tnode *n, uint64_t len)
{
  if (n->dir)
    return -EISDIR;
  if (len > st_of(n)->max_size(n->fs))
    return -EFBIG;
  if (n->obj) {
    int r = obj_grow(n, len);
    if (r < 0)
      return r == -ENOSPC ? -EFBIG : r;
    /* zeros past the end (a mapping may have stored there) and in what it grows by */
    if (len < n->size)
      obj_zero(n, len, n->obj->size);
    else
      obj_zero(n, n->size, len);
  } else {
    int r = st_of(n)->truncate(n, len);
    if (r < 0)
      return r;
  }
  n->size = len;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  n->ctime = n->mtime;
  return 0;
}

static int mem_truncate(struct tnode *n, uint64_t len)
{
  if (len < n->size) {
    drop_pages(n, (len + PAGE - 1) / PAGE);
    zero_range(n, len, (len + PAGE - 1) / PAGE * PAGE);
  } else if (len > n->size) {
    zero_range(n, n->size, len);
  }
  return 0;
}

/* fallocate(2) on a file, as Linux's tmpfs (shmem_fallocate): mode 0 or
 * KEEP_SIZE gives the holes of [off, off+len) pages of zeros (so later
 * writes there cannot fail for room: ENOSPC now instead, nothing kept),
 * the size growing to off+len unless KEEP_SIZE; PUNCH_HOLE|KEEP_SIZE frees
 * the whole pages in the range and zeroes the rest of it. Other modes are
 * EOPNOTSUPP (the caller checked the generic rules). An allocated page is
 * UNWRITTEN until written: SEEK_DATA skips it, as Linux's tmpfs. */
long tmp_fallocate(struct tnode *n, int mode, uint64_t off, uint64_t len)
{
  if (n->dir)
    return -EISDIR;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
    return -EOPNOTSUPP;
  uint64_t end = off + len;
  if (end < off || end > st_of(n)->max_size(n->fs))
    return -EFBIG;
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    if (n->obj)
      obj_zero(n, off, end < n->obj->size ? end : n->obj->size);
    else
      st_of(n)->punch(n, off, end);
  } else if (n->obj) {
    int r = obj_grow(n, end);
    if (r < 0)
      return r;
  } else {
    int r = st_of(n)->allocate(n, off, end);
    if (r < 0)
      return r;
  }
  if (!(mode & FALLOC_FL_KEEP_SIZE) && end > n->size)
    n->size = end;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
  if (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_PUNCH_HOLE))
    n->mtime = n->ctime;
  return 0;
}

static void mem_punch(struct tnode *n, uint64_t off, uint64_t end)
{
  uint64_t first = (off + PAGE - 1) / PAGE, last = end / PAGE; /* whole pages [first, last) */
  if (first < last)
    for (uint64_t i = first; i < last && i < n->npages; i++)
      if (n->pages[i]) {
        page_free(n->fs, PG(n->pages[i]));
        n->pages[i] = 0;
      }
  if (first >= last) {
    zero_range(n, off, end);
  } else {
    zero_range(n, off, first * PAGE);
    zero_range(n, last * PAGE, end);
  }
}

static int mem_allocate(struct tnode *n, uint64_t off, uint64_t end)
{
  int r = reserve(n, end);
  if (r < 0)
    return r;
  uint64_t first = off / PAGE, last = (end + PAGE - 1) / PAGE, holes = 0;
  for (uint64_t i = first; i < last; i++)
    holes += !n->pages[i];
  if (n->fs->used + n->fs->shm_pages + holes > n->fs->npages)
    return -ENOSPC;
  for (uint64_t i = first; i < last; i++)
    if (!n->pages[i]) {
      uint64_t a = page_alloc(n->fs);
      memset(n->fs->mem + a, 0, PAGE); /* room was checked: a != 0 */
      n->pages[i] = a | UNWRITTEN;
    }
  return 0;
}

/* lseek SEEK_DATA/SEEK_HOLE: the store's data and holes (a shared
 * object's: the memfd's own holes), the end of the file a hole. */
long tmp_seek_data(struct tnode *n, int64_t off, int whence)
{
  if (n->dir)
    return -EINVAL;
  if (off < 0 || (uint64_t)off >= n->size)
    return -ENXIO;
  uint64_t r;
  if (n->obj) {
    off_t k = lseek(n->obj->fd, off, whence);
    if (k < 0)
      return errno == ENXIO ? (whence == SEEK_DATA ? -ENXIO : (long)n->size) : -errno;
    r = (uint64_t)k;
  } else {
    long k = st_of(n)->seek(n, (uint64_t)off, whence);
    if (k < 0)
      return k;
    r = (uint64_t)k;
  }
  if (r >= n->size)
    return whence == SEEK_DATA ? -ENXIO : (long)n->size;
  return (long)r;
}

/* A page of the index is data, a 0 or UNWRITTEN a hole. */
static long mem_seek(struct tnode *n, uint64_t o, int whence)
{
  uint64_t i = o / PAGE;
  while (i < n->npages && (n->pages[i] != 0 && !(n->pages[i] & UNWRITTEN)) != (whence == SEEK_DATA))
    i++;
  if (whence == SEEK_DATA && i >= n->npages)
    return -ENXIO;
  return (long)(i * PAGE > o ? i * PAGE : o);
}

static void mem_drop(struct tnode *n) { drop_pages(n, 0); }

static uint64_t mem_max(const struct tmpfs *fs) { return file_max(fs) * PAGE; }

static const struct store mem_store = {
  .name = "mem",
  .read = mem_read,
  .write = mem_write,
  .truncate = mem_truncate,
  .allocate = mem_allocate,
  .punch = mem_punch,
  .seek = mem_seek,
  .drop = mem_drop,
  .max_size = mem_max,
};

/* ---- the disk store ----
 *
 * A file's data is the inode n->dino of the sandbox's ext4 disk (lib/extfs.c),
 * named work/<dname> there while the tree keeps the file's names, made at the
 * first write or allocation. Its size there is at most n->size and what lies
 * past it reads as zeros, so a grow needs no I/O. libext2fs takes care of
 * room: ENOSPC when the disk is full.
 *
 * Saving (state version 8): tmp_disk_commit flushes the file system and
 * commits its overlay as an image (only the blocks written since the
 * overlay was made); tmp_save records each disk node's inode and work/
 * name and, on the root, that image's name and id. A load (tmp_load,
 * disk_attach) opens the file system on an overlay of its own over that
 * image, so the children of a template share its disk copy-on-write. The
 * inodes stay named in work/ until their node goes (an open file whose
 * last name went included), so a saved disk has no orphan inode; when the
 * whole tree goes (tmp_destroy) they are left as they are. */

static long disk_err(void) { return errno ? -errno : -EIO; }

static int disk_make(struct tnode *n)
{
  struct tmpfs *fs = n->fs;
  if (n->dino)
    return 0;
  char name[16];
  uint32_t id = ++fs->disk_next;
  snprintf(name, sizeof name, "%u", id);
  if (cf_extfs_create(fs->disk, fs->disk_work, name, S_IFREG | 0600, 0, NULL, 0, 0, &n->dino) < 0)
    return (int)disk_err();
  n->dname = id;
  return 0;
}

static long disk_read(struct tnode *n, void *buf, uint64_t len, uint64_t off)
{
  long k = 0;
  if (n->dino && (k = cf_extfs_read(n->fs->disk, n->dino, buf, len, off)) < 0)
    return disk_err();
  memset((uint8_t *)buf + k, 0, len - (uint64_t)k); /* past the inode's size */
  return (long)len;
}

static long disk_write(struct tnode *n, const void *buf, uint64_t len, uint64_t off)
{
  int r = disk_make(n);
  if (r < 0)
    return r;
  long k = cf_extfs_write(n->fs->disk, n->dino, buf, len, off);
  return k < 0 ? disk_err() : k;
}

static int disk_truncate(struct tnode *n, uint64_t len)
{
  if (n->dino && len < n->size && cf_extfs_truncate(n->fs->disk, n->dino, len) < 0)
    return (int)disk_err();
  return 0;
}

/* Holes of [off, end) written with zeros: libext2fs keeps them as blocks
 * (the overlay stores zero blocks as nothing), so later writes there have
 * their room. On ENOSPC what was allocated stays (Linux gives it back). */
static int disk_allocate(struct tnode *n, uint64_t off, uint64_t end)
{
  int r = disk_make(n);
  if (r < 0)
    return r;
  enum { CHUNK = 1 << 20 };
  uint8_t *buf = NULL;
  for (uint64_t o = off; o < end;) {
    uint64_t k = end - o < CHUNK ? end - o : CHUNK;
    if (!buf && !(buf = malloc(CHUNK))) {
      r = -ENOMEM;
      break;
    }
    /* what is there stays: read it, write it back with the holes as zeros */
    long got = cf_extfs_read(n->fs->disk, n->dino, buf, k, o);
    if (got < 0) {
      r = (int)disk_err();
      break;
    }
    memset(buf + got, 0, k - (uint64_t)got);
    if (cf_extfs_write(n->fs->disk, n->dino, buf, k, o) < 0) {
      r = (int)disk_err();
      break;
    }
    o += k;
  }
  free(buf);
  return r;
}

static void disk_punch(struct tnode *n, uint64_t off, uint64_t end)
{
  if (n->dino)
    cf_extfs_punch(n->fs->disk, n->dino, off, end - off); /* (no error Linux would give) */
}

static long disk_seek(struct tnode *n, uint64_t off, int whence)
{
  if (!n->dino)
    return whence == SEEK_DATA ? -ENXIO : (long)off;
  int64_t r = cf_extfs_seek_data(n->fs->disk, n->dino, off, whence);
  if (r < 0) /* past the inode's size: a hole to the end */
    return whence == SEEK_DATA ? -ENXIO : (long)off;
  return (long)r;
}

static void disk_drop(struct tnode *n)
{
  if (!n->dino)
    return;
  if (n->fs->closing) { /* the whole disk goes (or stays as saved): no unlink per file */
    n->dino = 0;
    return;
  }
  char name[16];
  snprintf(name, sizeof name, "%u", n->dname);
  cf_extfs_unlink(n->fs->disk, n->fs->disk_work, name, false, NULL);
  n->dino = 0;
}

static uint64_t disk_max(const struct tmpfs *fs)
{
  (void)fs;
  return DISK_MAX_SIZE;
}

static const struct store disk_store = {
  .name = "disk",
  .read = disk_read,
  .write = disk_write,
  .truncate = disk_truncate,
  .allocate = disk_allocate,
  .punch = disk_punch,
  .seek = disk_seek,
  .drop = disk_drop,
  .max_size = disk_max,
};

bool tmp_disk_usage(struct tmpfs *fs, uint64_t *blocks, uint64_t *bfree, uint64_t *files, uint64_t *ffree)
{
  if (!fs->disk)
    return false;
  cf_extfs_statfs(fs->disk, blocks, bfree, files, ffree);
  return true;
}

int tmp_set_disk(struct tmpfs *fs, struct cf_extfs *disk, struct cf_overlay *ov)
{
  if (cf_extfs_create(disk, CF_EXTFS_ROOT, "upper", S_IFDIR | 0755, 0, NULL, 0, 0, &(uint32_t){0}) < 0 ||
      cf_extfs_create(disk, CF_EXTFS_ROOT, "work", S_IFDIR | 0700, 0, NULL, 0, 0, &fs->disk_work) < 0)
    return -1;
  fs->disk = disk;
  fs->disk_ov = ov;
  fs->root->st = &disk_store;
  for (int i = 0; i < fs->root->nkids; i++) /* /tmp (tmp_new's) stays in memory */
    fs->root->kids[i]->st = &mem_store;
  fs->shm->st = &mem_store;
  return 0;
}

int tmp_disk_commit(struct tmpfs *fs, struct cf_store *s, const char *image, uint64_t *stored)
{
  *stored = 0;
  if (!fs->disk)
    return 0;
  if (cf_extfs_flush(fs->disk) < 0 || cf_overlay_save(fs->disk_ov, s, image) < 0)
    return cf_fail(cf_errno() ? cf_errno() : EIO, "saving the disk as image %s: %s", image, cf_error());
  struct cf_header *h = cf_store_get_header(s, image);
  if (!h)
    return -1;
  struct cf_image_stats ist;
  cf_image_stats(h, &ist);
  *stored = ist.own_bytes;
  memcpy(fs->disk_id, h->id, 16);
  snprintf(fs->disk_image, sizeof fs->disk_image, "%s", image);
  cf_header_free(h);
  return 0;
}

bool tmp_has_disk(const struct tmpfs *fs) { return fs->disk != NULL; }

/* A loaded state's disk (tmp_load): an overlay of its own over the saved
 * image (snapshot.c disk_overlay_load: its template's, shared), the file
 * system on it, the tree's root on it. -1 + cf_error. */
static int disk_attach(struct sb *sb, struct tmpfs *fs, const char *image, const uint8_t id[16], uint64_t work,
                       uint64_t next)
{
  struct cf_image *own = NULL;
  struct cf_overlay *ov = disk_overlay_load(sb, image, id, &own);
  if (!ov)
    return -1;
  struct cf_extfs *x = cf_extfs_open(ov);
  if (!x) {
    int e = cf_errno();
    char msg[256];
    snprintf(msg, sizeof msg, "%s", cf_error());
    cf_overlay_free(ov);
    cf_image_close(own);
    return cf_fail(e ? e : EIO, "disk image %s: %s", image, msg);
  }
  fs->disk = x;
  fs->disk_ov = ov;
  fs->disk_own = true;
  fs->disk_img = own;
  snprintf(fs->disk_image, sizeof fs->disk_image, "%s", image);
  memcpy(fs->disk_id, id, 16);
  struct stat st;
  uint64_t b, bf, files, ff;
  cf_extfs_statfs(x, &b, &bf, &files, &ff);
  if (work < 1 || work > files || next > UINT32_MAX || cf_extfs_stat(x, (uint32_t)work, &st) < 0 ||
      !S_ISDIR(st.st_mode))
    return cf_fail(EINVAL, "disk image %s: the state's work directory (inode %llu) is not one", image,
                   (unsigned long long)work);
  fs->disk_work = (uint32_t)work;
  fs->disk_next = (uint32_t)next;
  fs->root->st = &disk_store;
  fs->shm->st = &mem_store;
  return 0;
}

struct tnode *tmp_child(struct tnode *dir, uint64_t idx, const char **name)
{
  if (idx >= (uint64_t)dir->nkids)
    return NULL;
  *name = dir->kids[idx]->name;
  return res(dir->kids[idx]);
}

void tmp_ref(struct tnode *n) { n->refs++; }

void tmp_unref(struct tnode *n)
{
  if (--n->refs == 0 && !n->linked && n->parent == NULL)
    tmp_free(n);
}

/* ---- extended attributes ---- */

/* The room the nodes' attributes may take (host memory): tmpfs charges
 * each against its inode space (max_inodes * 1024 bytes, ENOSPC past it);
 * here an eighth of the region, at least 1 MiB. */
static uint64_t xattr_max(const struct tmpfs *fs)
{
  uint64_t m = fs->npages * PAGE / 8;
  return m < (1u << 20) ? 1u << 20 : m;
}

/* The entry of name in n's attributes: its offset, or the offset where it
 * would go (*found false). */
static size_t xa_find(const struct tnode *n, const char *name, bool *found)
{
  size_t off = 0;
  *found = false;
  while (off < n->xalen) {
    uint32_t vl;
    memcpy(&vl, n->xa + off, 4);
    const char *k = (const char *)n->xa + off + 4;
    int c = strcmp(k, name);
    if (c <= 0) {
      *found = c == 0;
      return off;
    }
    off += 4 + strlen(k) + 1 + vl;
  }
  return off;
}

static size_t xa_entry_len(const struct tnode *n, size_t off)
{
  uint32_t vl;
  memcpy(&vl, n->xa + off, 4);
  return 4 + strlen((const char *)n->xa + off + 4) + 1 + vl;
}

long tmp_getxattr(struct tnode *n, const char *name, void *buf, size_t size)
{
  n = res(n);
  bool found;
  size_t off = xa_find(n, name, &found);
  if (!found)
    return -ENODATA;
  uint32_t vl;
  memcpy(&vl, n->xa + off, 4);
  if (size == 0)
    return vl;
  if (size < vl)
    return -ERANGE;
  memcpy(buf, n->xa + off + 4 + strlen(name) + 1, vl);
  return vl;
}

long tmp_listxattr(struct tnode *n, char *buf, size_t size, bool trusted)
{
  n = res(n);
  size_t total = 0;
  for (size_t off = 0; off < n->xalen; off += xa_entry_len(n, off)) {
    const char *k = (const char *)n->xa + off + 4;
    size_t kl = strlen(k) + 1;
    if (!trusted && strncmp(k, "trusted.", 8) == 0)
      continue;
    if (size) {
      if (total + kl > size)
        return -ERANGE;
      memcpy(buf + total, k, kl);
    }
    total += kl;
  }
  return (long)total;
}

long tmp_setxattr(struct tnode *n, const char *name, const void *val, size_t len, int flags)
{
  n = res(n);
  bool found;
  size_t off = xa_find(n, name, &found);
  if ((flags & XATTR_CREATE) && found)
    return -EEXIST;
  if (!found && (!val || (flags & XATTR_REPLACE)))
    return -ENODATA;
  size_t old = found ? xa_entry_len(n, off) : 0, nl = strlen(name) + 1;
  size_t add = val ? 4 + nl + len : 0;
  if (add > old && n->fs->xattr_bytes + (add - old) > xattr_max(n->fs))
    return -ENOSPC;
  size_t nlen = n->xalen - old + add;
  uint8_t *x = nlen ? malloc(nlen) : NULL;
  if (nlen && !x)
    return -ENOMEM;
  if (x) {
    if (off)
      memcpy(x, n->xa, off);
    if (val) {
      uint32_t vl = (uint32_t)len;
      memcpy(x + off, &vl, 4);
      memcpy(x + off + 4, name, nl);
      memcpy(x + off + 4 + nl, val, len);
    }
    if (n->xalen > off + old)
      memcpy(x + off + add, n->xa + off + old, n->xalen - off - old);
  }
  free(n->xa);
  n->xa = x;
  n->fs->xattr_bytes = n->fs->xattr_bytes - n->xalen + nlen;
  n->xalen = nlen;
  clock_gettime(CLOCK_REALTIME, &n->ctime);
  return 0;
}

/* The attributes of a saved node (NODE_XATTR): whether blob is well formed
 * (entries in order, names NUL-terminated, 1-255 bytes, values at most
 * 65536). */
static bool xa_valid(const uint8_t *b, size_t len)
{
  const char *prev = NULL;
  size_t off = 0;
  while (off < len) {
    if (len - off < 4)
      return false;
    uint32_t vl;
    memcpy(&vl, b + off, 4);
    const char *k = (const char *)b + off + 4;
    const char *z = memchr(k, 0, len - off - 4);
    if (!z || z == k || z - k > 255 || vl > 65536 || (size_t)(len - off - 4 - (size_t)(z - k) - 1) < vl ||
        (prev && strcmp(prev, k) <= 0))
      return false;
    prev = k;
    off += 4 + (size_t)(z - k) + 1 + vl;
  }
  return true;
}

/* ---- snapshots ---- */

uint64_t tmp_node_id(struct tnode *n) { return n->id; }

/* A node's second word: bit 0 dir, bits 1-12 the mode, NODE_V2: atime,
 * ctime, uid and gid follow mtime (state version 2; a version 1 node has
 * mtime only, and is owned by root). */
#define NODE_V2 (1ull << 20)
#define NODE_FIFO (1ull << 21) /* a FIFO (no data): older versions load it as an empty file */
/* The overlay (the upper layer of "/"; no state version of its own: a
 * state without NODE_ROOT on its first node holds /tmp's tree only, and
 * loads as /tmp under an empty upper layer). */
#define NODE_ROOT (1ull << 22)     /* the first node is "/", not /tmp */
#define NODE_WHITEOUT (1ull << 23) /* a whiteout (no data) */
#define NODE_OPAQUE (1ull << 24)   /* an opaque directory */
#define NODE_SYMLINK (1ull << 25)  /* a symbolic link: its target follows gid */
#define NODE_SOCK (1ull << 26)     /* a socket file (no data, no listener after a load) */
#define NODE_XATTR (1ull << 27)    /* extended attributes: their length and bytes follow (a symlink's target) */
/* The node's store is the disk (state version 8): after its page list, its
 * data's inode and work/ name (0 0: none yet); the root's then has the
 * disk: the image it was saved as, its id, work/'s inode, the next name. */
#define NODE_DISK (1ull << 28)

/* Version 8 (no version of its own: a state before it has none of these). */
#define NODE_SHMDIR (1ull << 29)   /* /dev/shm (parent 0): its files follow */
#define NODE_ANON (1ull << 30)     /* a shared memory object's data (parent 0, no name of its own) */
#define NODE_HARDLINK (1ull << 31) /* a hard link: its target's id follows, after the attributes (no data) */

static void save_node(struct tnode *n, uint64_t parent, struct wbuf *w)
{
  w_u64(w, parent);
  w_str(w, n->name);
  w_u64(w, (uint64_t)n->dir | (uint64_t)n->mode << 1 | NODE_V2 | (n->fifo ? NODE_FIFO : 0) |
             (n == n->fs->root ? NODE_ROOT : 0) | (n->whiteout ? NODE_WHITEOUT : 0) |
             (n->opaque ? NODE_OPAQUE : 0) | (n->link ? NODE_SYMLINK : 0) | (n->sock ? NODE_SOCK : 0) |
             (n->xalen ? NODE_XATTR : 0) | (st_of(n) == &disk_store ? NODE_DISK : 0) |
             (n == n->fs->shm ? NODE_SHMDIR : 0) | (n->anon ? NODE_ANON : 0) | (n->target ? NODE_HARDLINK : 0));
  w_u64(w, n->ino);
  w_u64(w, n->size);
  w_u64(w, (uint64_t)n->mtime.tv_sec);
  w_u64(w, (uint64_t)n->mtime.tv_nsec);
  w_u64(w, (uint64_t)n->atime.tv_sec);
  w_u64(w, (uint64_t)n->atime.tv_nsec);
  w_u64(w, (uint64_t)n->ctime.tv_sec);
  w_u64(w, (uint64_t)n->ctime.tv_nsec);
  w_u64(w, (uint64_t)(uint32_t)n->uid);
  w_u64(w, (uint64_t)(uint32_t)n->gid);
  if (n->link)
    w_str(w, n->link);
  if (n->xalen) {
    w_u64(w, n->xalen);
    w_bytes(w, n->xa, n->xalen);
  }
  if (n->target)
    w_u64(w, n->target->id);
  uint64_t np = (n->size + PAGE - 1) / PAGE;
  if (np > n->npages)
    np = n->npages;
  if (n->target)
    np = 0;
  w_u64(w, np);
  w_bytes(w, n->pages, np * sizeof *n->pages);
  if (st_of(n) == &disk_store) {
    w_u64(w, n->dino);
    w_u64(w, n->dino ? n->dname : 0);
    if (n == n->fs->root) {
      w_str(w, n->fs->disk_image);
      w_bytes(w, n->fs->disk_id, 16);
      w_u64(w, n->fs->disk_work);
      w_u64(w, n->fs->disk_next);
    }
  }
  for (int i = 0; i < n->nkids; i++)
    save_node(n->kids[i], n->id, w);
}

struct tops {
  struct tnode **v;
  size_t n, cap;
  bool err;
};

static void tops_add(struct tops *t, struct tnode *n)
{
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 16;
    struct tnode **p = realloc(t->v, cap * sizeof *p);
    if (!p) {
      t->err = true;
      return;
    }
    t->v = p;
    t->cap = cap;
  }
  t->v[t->n++] = n;
}

/* Ids in preorder; the unlinked targets of hard links into t. */
static void number(struct tnode *n, struct tops *t)
{
  n->id = ++n->fs->next_id;
  if (n->target && !n->target->linked)
    tops_add(t, n->target);
  for (int i = 0; i < n->nkids; i++)
    number(n->kids[i], t);
}

/* Nodes in preorder: "/", then /dev/shm (parent 0), then the unlinked
 * nodes (parent 0): the deleted files that open files hold (extra; the
 * linked ones of extra are in the tree), the anon nodes of a save's shared
 * memory (tmp_save_shared), the targets of hard links that lost their
 * first name. A hard link names its target by id. */
int tmp_save(struct tmpfs *fs, struct wbuf *w, struct tnode *const *extra, size_t nextra)
{
  struct tops t = {0}, tops = {0};
  fs->next_id = 0;
  number(fs->root, &t);
  number(fs->shm, &t);
  for (size_t i = 0; i < nextra; i++)
    if (!extra[i]->linked)
      tops_add(&t, extra[i]);
  for (size_t i = 0; i < fs->nsaved; i++)
    if (fs->saved[i]->anon)
      tops_add(&t, fs->saved[i]);
  for (size_t i = 0; i < t.n; i++)
    t.v[i]->id = 0;
  for (size_t i = 0; i < t.n; i++)
    if (t.v[i]->id == 0) { /* once each */
      t.v[i]->id = ++fs->next_id;
      tops_add(&tops, t.v[i]);
    }
  if (!t.err && !tops.err) {
    w_u64(w, fs->next_id);
    save_node(fs->root, 0, w);
    save_node(fs->shm, 0, w);
    for (size_t i = 0; i < tops.n; i++)
      save_node(tops.v[i], 0, w); /* a file or an empty dir: no kids */
  }
  free(t.v);
  free(tops.v);
  return w->err || t.err || tops.err ? -ENOMEM : 0;
}

void tmp_pages(struct tmpfs *fs, int (*fn)(void *ctx, uint64_t addr), void *ctx)
{
  for (uint64_t i = 0; i < fs->npages; i++)
    if (fs->bitmap[i / 64] & (1ull << (i % 64)))
      fn(ctx, fs->base + i * PAGE);
}

int tmp_load(struct sb *sb, struct tmpfs *fs, struct rbuf *r, struct tnode ***nodes_out, size_t *nn)
{
  uint64_t total = r_u64(r);
  if (r->err || total == 0 || total > (1u << 20))
    return -EINVAL;
  struct tnode **nodes = calloc(total, sizeof *nodes);
  uint64_t *links = calloc(total, sizeof *links); /* a hard link's target id */
  if (!nodes || !links) {
    free(nodes);
    free(links);
    return -ENOMEM;
  }
  int ret = -EINVAL;
  bool shmdir = false;
  struct tnode *tmpdir = fs->root->nkids == 1 ? fs->root->kids[0] : NULL; /* tmp_new's */
  bool whole = false; /* the first node is "/" (NODE_ROOT) */
  uint8_t *xa = NULL; /* the node's attributes being read (NODE_XATTR) */
  for (uint64_t i = 0; i < total; i++) {
    uint64_t parent = r_u64(r);
    char name[256];
    r_str(r, name, sizeof name);
    uint64_t dm = r_u64(r), ino = r_u64(r), size = r_u64(r);
    struct timespec mt, at, ct;
    mt.tv_sec = (time_t)r_u64(r);
    mt.tv_nsec = (long)r_u64(r);
    at = ct = mt;
    uint64_t uid = 0, gid = 0;
    if (dm & NODE_V2) {
      at.tv_sec = (time_t)r_u64(r);
      at.tv_nsec = (long)r_u64(r);
      ct.tv_sec = (time_t)r_u64(r);
      ct.tv_nsec = (long)r_u64(r);
      uid = r_u64(r);
      gid = r_u64(r);
    }
    char link[PATH_MAX] = "";
    if (dm & NODE_SYMLINK)
      r_str(r, link, sizeof link);
    uint64_t xalen = 0;
    if (dm & NODE_XATTR) {
      xalen = r_u64(r);
      if (r->err || xalen == 0 || xalen > r->n - r->off || fs->xattr_bytes + xalen > xattr_max(fs))
        goto bad;
      if (!(xa = malloc(xalen))) {
        ret = -ENOMEM;
        goto bad;
      }
      r_bytes(r, xa, xalen);
      if (r->err || !xa_valid(xa, xalen) || (dm & NODE_WHITEOUT))
        goto bad;
    }
    uint64_t tid = dm & NODE_HARDLINK ? r_u64(r) : 0;
    uint64_t np = r_u64(r);
    const uint64_t kinds = NODE_FIFO | NODE_SOCK | NODE_WHITEOUT | NODE_SYMLINK | NODE_OPAQUE | NODE_ROOT;
    if (((dm & NODE_SHMDIR) && (i == 0 || parent || !(dm & 1) || shmdir || (dm & (kinds | NODE_ANON | NODE_HARDLINK)))) ||
        ((dm & NODE_ANON) && (i == 0 || parent || (dm & 1) || (dm & (kinds | NODE_HARDLINK)))) ||
        ((dm & NODE_HARDLINK) && (i == 0 || !parent || (dm & 1) || size || np || !tid || tid > total ||
                                  tid == i + 1 || (dm & kinds))))
      goto bad;
    links[i] = tid;
    if (i == 0 && (dm & NODE_ROOT) && tmpdir) { /* the saved tree has its own /tmp */
      whole = true;
      tmp_drop(tmpdir);
      tmpdir = NULL;
    }
    uint64_t size_max = (dm & NODE_DISK) ? DISK_MAX_SIZE : fs->npages * PAGE;
    if (r->err || parent > i || (i == 0 && (parent || !(dm & 1))) || !name[0] ||
        strchr(name, '/') || np > fs->npages || size > size_max || np > (size + PAGE - 1) / PAGE ||
        ((dm & NODE_DISK) && (np || (i == 0 ? !whole : !fs->disk))) ||
        ((dm & (NODE_FIFO | NODE_SOCK)) && (i == 0 || (dm & 1) || size || np)) || ((dm & NODE_FIFO) && (dm & NODE_SOCK)) ||
        (i == 0 && !whole && !tmpdir) ||
        (i > 0 && (dm & NODE_ROOT)) || ((dm & (NODE_WHITEOUT | NODE_SYMLINK)) && (i == 0 || (dm & 1) || np)) ||
        ((dm & NODE_SYMLINK) && (!link[0] || (dm & (NODE_WHITEOUT | NODE_FIFO | NODE_SOCK)))) ||
        ((dm & NODE_WHITEOUT) && (dm & (NODE_FIFO | NODE_SOCK))) || ((dm & NODE_OPAQUE) && !(dm & 1)))
      goto bad;
    if (dm & NODE_SHMDIR)
      shmdir = true;
    struct tnode *n = i == 0                ? (whole ? fs->root : tmpdir)
                      : (dm & NODE_SHMDIR) ? fs->shm
                                            : node_new(fs, name, dm & 1, (unsigned)(dm >> 1));
    if (!n) {
      ret = -ENOMEM;
      goto bad;
    }
    nodes[i] = n;
    if (xa) {
      fs->xattr_bytes = fs->xattr_bytes - n->xalen + xalen;
      free(n->xa);
      n->xa = xa;
      n->xalen = xalen;
      xa = NULL;
    }
    n->dir = dm & 1;
    n->mode = (unsigned)(dm >> 1) & 07777;
    n->ino = ino;
    n->size = n->dir ? 0 : size;
    n->mtime = mt;
    n->atime = at;
    n->ctime = ct;
    n->uid = (int)(uint32_t)uid;
    n->gid = (int)(uint32_t)gid;
    n->whiteout = dm & NODE_WHITEOUT;
    n->opaque = (dm & NODE_OPAQUE) || (i == 0 && !whole); /* an older state's /tmp */
    if ((dm & NODE_SYMLINK) && !n->link) {
      if (!(n->link = strdup(link))) {
        ret = -ENOMEM;
        goto bad;
      }
      n->size = strlen(link);
    }
    if ((dm & NODE_FIFO) && !n->fifo) {
      if (!(n->fifo = calloc(1, sizeof *n->fifo))) {
        ret = -ENOMEM; /* n is nodes[i], parentless: bad's loop frees it */
        goto bad;
      }
      n->fifo->rd = n->fifo->wr = -1;
    }
    n->sock = dm & NODE_SOCK;
    if (i > 0 && parent == 0 && n != fs->shm)
      n->linked = false; /* held only by open files, hard links, or (anon) the load (fs_load_done) */
    if (dm & NODE_ANON) {
      n->anon = true;
      n->refs++;
    }
    if (np) {
      if (n->dir || reserve(n, np * PAGE) < 0)
        goto bad;
      r_bytes(r, n->pages, np * sizeof *n->pages);
      if (r->err)
        goto bad;
      for (uint64_t k = 0; k < np; k++) {
        uint64_t a = PG(n->pages[k]);
        if (!n->pages[k])
          continue;
        if (n->pages[k] % PAGE & ~UNWRITTEN)
          a = 1; /* (refused below) */
        uint64_t pi = (a - fs->base) / PAGE;
        if (a < fs->base || a % PAGE || pi >= fs->npages || (fs->bitmap[pi / 64] & (1ull << (pi % 64)))) {
          /* never free what is not ours: this page and the unchecked rest */
          memset(&n->pages[k], 0, (np - k) * sizeof *n->pages);
          goto bad;
        }
        fs->bitmap[pi / 64] |= 1ull << (pi % 64);
        fs->used++;
      }
    }
    if (dm & NODE_DISK) {
      uint64_t dino = r_u64(r), dname = r_u64(r);
      if (i == 0) { /* the disk itself */
        char image[300];
        uint8_t id[16];
        r_str(r, image, sizeof image);
        r_bytes(r, id, 16);
        uint64_t work = r_u64(r), next = r_u64(r);
        if (r->err || dino || dname)
          goto bad;
        if (disk_attach(sb, fs, image, id, work, next) < 0) {
          ret = -EIO; /* cf_error says why */
          goto bad;
        }
      } else {
        uint64_t b, bf, files, ff;
        cf_extfs_statfs(fs->disk, &b, &bf, &files, &ff);
        if (r->err || (dino && (n->dir || n->link || n->fifo || n->sock || n->whiteout || dino > files ||
                                 !dname || dname > fs->disk_next)) ||
            (!dino && dname))
          goto bad;
        n->dino = (uint32_t)dino;
        n->dname = (uint32_t)dname;
      }
    }
    if (i > 0 && parent) {
      struct tnode *p = nodes[parent - 1];
      struct timespec pmt = p->mtime, pct = p->ctime; /* the saved ones: add_kid would stamp them now */
      if (!p->dir || !p->linked || kid(p, name, strlen(name)) || add_kid(p, n) < 0) /* (an unlinked dir: empty) */
        goto bad;
      p->mtime = pmt;
      p->ctime = pct;
    }
    if (i > 0 && fs->disk) /* its own (add_kid gave it its directory's: a file moved keeps its store) */
      n->st = (dm & NODE_DISK) ? &disk_store : &mem_store;
  }
  /* Hard links: each target a node of the tree or an unlinked one, not a directory,
   * itself no link (all checked before any is made: nothing fails after). */
  for (uint64_t i = 0; i < total; i++)
    if (links[i]) {
      struct tnode *t = nodes[links[i] - 1];
      if (t->dir || links[links[i] - 1] || t->whiteout || t->anon)
        goto bad;
    }
  for (uint64_t i = 0; i < total; i++)
    if (links[i]) {
      struct tnode *t = nodes[links[i] - 1];
      nodes[i]->target = t;
      tmp_ref(t);
      t->nlinks++;
    }
  free(links);
  *nodes_out = nodes;
  *nn = total;
  return 0;
bad:
  free(xa);
  /* Unlinked nodes not yet owned by anything: free them here. */
  for (uint64_t i = 1; i < total; i++)
    if (nodes[i] && !nodes[i]->parent && nodes[i] != fs->shm)
      tmp_free(nodes[i]);
  free(nodes);
  free(links);
  return ret;
}

bool tmp_is_linked(struct tnode *n) { return n->linked; }
bool tmp_is_anon(struct tnode *n) { return n->anon; }
int tmp_refs(struct tnode *n) { return n->refs; }
