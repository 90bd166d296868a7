/* Layered images: header parser rejects bad input, commits store only what
 * changed, chains stay one lookup deep and export byte-identical (checked
 * against a plain array model), gc never breaks a sharing image; the layer
 * writer reaches its file in 2 MiB-aligned writes whatever the runs
 * appended, and the layer reads back as appended; a layer's checksum is
 * read once, then trusted by the record in checked/ by the next store
 * handle (another process) until its file changes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cowfork/error.h"
#include "cowfork/header.h"
#include "cowfork/image.h"
#include "tap.h"

static char tmpl[] = "/tmp/cowfork-image-test.XXXXXX";
static const char *dir;

/* A header with 2 layers and the given extents, serialized then parsed. */
static struct cf_header *roundtrip(struct cf_header *h)
{
  void *buf;
  size_t len;
  if (cf_header_serialize(h, &buf, &len) < 0)
    return NULL;
  struct cf_header *p = cf_header_parse(buf, len);
  free(buf);
  return p;
}

static int rejects(struct cf_header *h, const char *needle, const char *what)
{
  struct cf_header *p = roundtrip(h);
  int good = !p && errno == EINVAL && strstr(cf_error(), needle);
  ok(good, "rejects %s (%s)", what, p ? "accepted" : cf_error());
  cf_header_free(p);
  return good;
}

static void test_parser(void)
{
  struct cf_layer_ref layers[2] = {{.id = {1}, .nblocks = 10}, {.id = {2}, .nblocks = 10}};
  struct cf_extent ext[3] = {{0, 4, 0, 0}, {4, 4, 0, CF_LAYER_EMPTY}, {8, 2, 3, 1}};
  struct cf_header h = {.size = 10 * 4096, .block_size = 4096, .nlayers = 2, .layers = layers,
                        .nextents = 3, .extents = ext};
  struct cf_header *p = roundtrip(&h);
  ok(p && p->nextents == 3 && p->extents[2].offset == 3 && p->extents[1].layer == CF_LAYER_EMPTY,
     "valid header round-trips");
  if (p) {
    is(cf_header_lookup(p, 0), 0, "lookup block 0");
    is(cf_header_lookup(p, 7), 1, "lookup block 7");
    is(cf_header_lookup(p, 9), 2, "lookup block 9");
    ok(cf_header_lookup(p, 10) < 0, "lookup past the end fails");
  }
  cf_header_free(p);

  void *buf;
  size_t len;
  cf_header_serialize(&h, &buf, &len);
  unsigned char *b = buf;
  ok(!cf_header_parse(buf, 50) && strstr(cf_error(), "truncated"), "rejects a truncated preamble");
  ok(!cf_header_parse(buf, len - 1) && strstr(cf_error(), "length"), "rejects a truncated map");
  b[0] ^= 1;
  ok(!cf_header_parse(buf, len) && strstr(cf_error(), "magic"), "rejects a wrong magic");
  b[0] ^= 1;
  b[8] = 2;
  ok(!cf_header_parse(buf, len) && strstr(cf_error(), "version"), "rejects version 2");
  b[8] = 1;
  size_t flips = 0;
  for (size_t i = 0; i < len; i++) {
    b[i] ^= 0x10;
    struct cf_header *q = cf_header_parse(buf, len);
    flips += q == NULL;
    cf_header_free(q);
    b[i] ^= 0x10;
  }
  is(flips, len, "every one of the %zu bytes flipped is caught", len);
  free(buf);

  h.size = 10 * 4096 + 100;
  rejects(&h, "multiple", "size not a multiple of the block size");
  h.size = 10 * 4096;
  h.block_size = 4096 + 512;
  rejects(&h, "power of two", "block size not a power of two");
  h.block_size = 256;
  rejects(&h, "power of two", "block size below 512");
  h.block_size = 4096;
  ext[1].first = 3;
  rejects(&h, "overlap", "overlapping extents");
  ext[1].first = 5;
  rejects(&h, "gap", "a gap between extents");
  ext[1].first = 4;
  ext[2].count = 1;
  rejects(&h, "gap at the end", "extents that stop short");
  ext[2].count = 3;
  rejects(&h, "outside", "extents past the end");
  ext[2].count = 2;
  ext[2].layer = 2;
  rejects(&h, "names layer", "a layer index out of range");
  ext[2].layer = 1;
  ext[2].offset = 9;
  rejects(&h, "past the end of layer", "an offset past the end of a layer");
  ext[2].offset = 3;
  ext[1].offset = 1;
  rejects(&h, "offset", "an empty extent with an offset");
  ext[1].offset = 0;
  memcpy(layers[1].id, layers[0].id, 16);
  rejects(&h, "twice", "a layer listed twice");
  layers[1].id[0] = 2;
  h.nextents = 0;
  rejects(&h, "empty", "an empty extent map");
  h.nextents = 3;
  p = roundtrip(&h);
  ok(p != NULL, "the repaired header parses again");
  cf_header_free(p);
}

/* The model: one byte per block, the block filled with it (0: zero block). */
enum { NB = 700, BS = 4096 };

static int write_raw(const char *path, const unsigned char *model, size_t nb)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  static char blk[BS];
  for (size_t i = 0; i < nb; i++) {
    memset(blk, model[i], BS);
    if (model[i])
      memcpy(blk, &i, sizeof i); /* distinct blocks */
    if (pwrite(fd, blk, BS, (off_t)i * BS) != BS)
      return -1;
  }
  close(fd);
  return 0;
}

static int same_file(const char *a, const char *b)
{
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
  return system(cmd) == 0;
}

static void test_chain(struct cf_store *s, unsigned seed)
{
  unsigned char model[NB], prev[NB];
  char raw[256], out[256], name[64], parent[64];
  snprintf(raw, sizeof raw, "%s/in.raw", dir);
  snprintf(out, sizeof out, "%s/out.raw", dir);
  srand(seed);
  for (int i = 0; i < NB; i++)
    model[i] = rand() % 2 ? 1 + rand() % 255 : 0;
  write_raw(raw, model, NB);
  int fd = open(raw, O_RDONLY);
  snprintf(name, sizeof name, "chain%u-0", seed);
  ok(cf_image_import(s, fd, name, BS, NULL, NULL) == 0, "import %s: %s", name, cf_error());
  close(fd);
  size_t nonzero = 0;
  for (int i = 0; i < NB; i++)
    nonzero += model[i] != 0;
  struct cf_header *h = cf_store_get_header(s, name);
  struct cf_image_stats st;
  cf_image_stats(h, &st);
  is(st.stored_bytes, nonzero * BS, "import stores exactly the non-zero blocks");
  is(h->generation, 0, "an imported image is generation 0");
  ok(cf_id_is_null(h->parent), "an imported image has no parent");
  cf_header_free(h);

  int bad = 0;
  for (int g = 1; g <= 20; g++) {
    memcpy(prev, model, NB);
    size_t changed_nonzero = 0;
    for (int k = 0; k < 1 + rand() % 30; k++) {
      int at = rand() % NB, len = 1 + rand() % 8;
      int kind = rand() % 3; /* data, zeros, revert to nothing new */
      for (int i = at; i < at + len && i < NB; i++)
        model[i] = kind == 0 ? 1 + rand() % 255 : kind == 1 ? 0 : model[i];
    }
    for (int i = 0; i < NB; i++)
      changed_nonzero += model[i] != prev[i] && model[i] != 0;
    write_raw(raw, model, NB);
    snprintf(parent, sizeof parent, "%s", name);
    snprintf(name, sizeof name, "chain%u-%d", seed, g);
    struct cf_image *p = cf_image_open(s, parent);
    fd = open(raw, O_RDONLY);
    if (!p || cf_image_commit_raw(s, p, fd, name, NULL, NULL) < 0) {
      ok(0, "commit %s: %s", name, cf_error());
      return;
    }
    close(fd);
    cf_image_close(p);
    struct cf_image *img = cf_image_open(s, name);
    const struct cf_header *ch = cf_image_header(img);
    cf_image_stats(ch, &st);
    bad += st.own_bytes != changed_nonzero * BS;
    bad += ch->generation != (uint64_t)g;
    /* Every block read alone matches the model. */
    char blk[BS];
    for (int i = 0; i < NB; i++) {
      cf_image_read(img, blk, BS, (uint64_t)i * BS);
      bad += (unsigned char)blk[BS - 1] != model[i];
    }
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bad += cf_image_export(img, fo, NULL, NULL) != 0;
    close(fo);
    bad += !same_file(raw, out);
    bad += cf_image_verify(img, NULL, NULL) != 0;
    /* Coalesced: no two neighbours continue each other. */
    for (uint64_t i = 1; i < ch->nextents; i++) {
      const struct cf_extent *a = &ch->extents[i - 1], *b = &ch->extents[i];
      bad += a->layer == b->layer &&
             (a->layer == CF_LAYER_EMPTY || a->offset + a->count == b->offset);
    }
    cf_image_close(img);
  }
  is(bad, 0, "seed %u: 20 commits each store only their changes, read, export and verify", seed);

  /* An unchanged commit writes no layer. */
  struct cf_image *p = cf_image_open(s, name);
  fd = open(raw, O_RDONLY);
  char same[64];
  snprintf(same, sizeof same, "chain%u-same", seed);
  ok(cf_image_commit_raw(s, p, fd, same, NULL, NULL) == 0, "commit with no change");
  close(fd);
  cf_image_close(p);
  h = cf_store_get_header(s, same);
  cf_image_stats(h, &st);
  is(st.own_bytes, 0, "a commit that changes nothing stores no data");
  cf_header_free(h);
}

static void test_store(struct cf_store *s)
{
  char raw[256], path[512], out[256];
  unsigned char model[NB];
  snprintf(raw, sizeof raw, "%s/in.raw", dir);
  snprintf(out, sizeof out, "%s/out.raw", dir);
  for (int i = 0; i < NB; i++)
    model[i] = i % 3 ? i % 251 + 1 : 0;
  write_raw(raw, model, NB);
  int fd = open(raw, O_RDONLY);
  ok(cf_image_import(s, fd, "base", BS, NULL, NULL) == 0, "import base");
  ok(cf_image_import(s, fd, "base", BS, NULL, NULL) < 0 && errno == EEXIST, "a name is taken once");
  close(fd);
  model[5] = 7;
  write_raw(raw, model, NB);
  struct cf_image *b = cf_image_open(s, "base");
  fd = open(raw, O_RDONLY);
  ok(cf_image_commit_raw(s, b, fd, "kid", NULL, NULL) == 0, "commit kid");
  close(fd);
  cf_image_close(b);
  ok(cf_store_remove(s, "base") == 0, "remove the parent");
  struct cf_image *k = cf_image_open(s, "kid");
  ok(k && cf_image_verify(k, NULL, NULL) == 0, "the child still opens and verifies");
  int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ok(k && cf_image_export(k, fo, NULL, NULL) == 0 && same_file(raw, out), "and exports the same bytes");
  close(fo);
  cf_image_close(k);
  ok(cf_store_remove(s, "base") < 0 && errno == ENOENT, "removing a missing image fails with ENOENT");
  ok(cf_store_check_name("../x") < 0 && cf_store_check_name(".hidden") < 0 &&
         cf_store_check_name("a/b") < 0 && cf_store_check_name("") < 0 &&
         cf_store_check_name("ok-name_1.2") == 0,
     "image names are checked");

  /* A corrupt header makes gc refuse and delete nothing. */
  snprintf(path, sizeof path, "%s/store/images/junk", dir);
  fd = open(path, O_WRONLY | O_CREAT, 0644);
  ok(write(fd, "garbage", 7) == 7, "write a junk header");
  close(fd);
  struct cf_gc_stats st;
  ok(cf_store_gc(s, &st) < 0 && strstr(cf_error(), "refused"), "gc refuses with a bad header");
  unlink(path);
  ok(cf_store_gc(s, &st) == 0, "gc runs");
  k = cf_image_open(s, "kid");
  ok(k && cf_image_verify(k, NULL, NULL) == 0, "the child survives gc");
  cf_image_close(k);

  /* A missing layer and a short layer are named at open. */
  struct cf_header *h = cf_store_get_header(s, "kid");
  char lp[400];
  cf_store_layer_path(s, h->layers[0].id, lp, sizeof lp);
  snprintf(path, sizeof path, "%s.bak", lp);
  rename(lp, path);
  k = cf_image_open(s, "kid");
  ok(!k && errno == ENOENT && strstr(cf_error(), "layer"), "a missing layer is reported: %s", cf_error());
  cf_image_close(k);
  rename(path, lp);
  chmod(lp, 0644);
  truncate(lp, (off_t)(h->layers[0].nblocks - 1) * BS);
  k = cf_image_open(s, "kid");
  ok(!k && strstr(cf_error(), "header says"), "a short layer is reported: %s", cf_error());
  cf_image_close(k);
  cf_header_free(h);

  /* Bad import input. */
  fd = open(raw, O_RDWR);
  ftruncate(fd, BS * 3 + 100);
  ok(cf_image_import(s, fd, "odd", BS, NULL, NULL) < 0 && strstr(cf_error(), "multiple"),
     "import of a size not a multiple of the block size fails");
  ok(cf_image_import(s, fd, "odd", 3000, NULL, NULL) < 0 && strstr(cf_error(), "power of two"),
     "import with a block size not a power of two fails");
  ftruncate(fd, 0);
  ok(cf_image_import(s, fd, "odd", BS, NULL, NULL) < 0 && strstr(cf_error(), "empty"),
     "import of an empty file fails");
  close(fd);
  struct cf_gc_stats g = {0};
  int gc = cf_store_gc(s, &g); /* before ok(): its arguments are evaluated in any order */
  ok(gc == 0 && g.tmp_removed == 0, "failed imports leave no temp files (%llu)", (unsigned long long)g.tmp_removed);
}

/* Bytes of the one temp file in store dir sd's tmp/ (-1: none or several). */
static long long tmp_size(const char *sd)
{
  char p[512];
  snprintf(p, sizeof p, "%s/tmp", sd);
  DIR *d = opendir(p);
  struct dirent *e;
  long long size = -1;
  int n = 0;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') {
      struct stat st;
      snprintf(p, sizeof p, "%s/tmp/%s", sd, e->d_name);
      size = stat(p, &st) == 0 ? st.st_size : -1;
      n++;
    }
  if (d)
    closedir(d);
  return n == 1 ? size : -1;
}

/* The layer writer stages appends (lib/store.c): runs of a few blocks reach
 * the file as whole 2 MiB writes at multiples of 2 MiB, so the page cache
 * keeps a new layer in large folios (bench/check: its first check reads it
 * back half again as fast). The runs come back byte for byte. */
static void test_writer(uint32_t bs)
{
  char sd[300];
  snprintf(sd, sizeof sd, "%s/writer%u", dir, bs);
  struct cf_store *s = cf_store_open(sd);
  const uint64_t stage = 2u << 20, nblocks = 3 * stage / bs + 7;
  char *model = malloc(nblocks * bs), name[32];
  for (uint64_t i = 0; i < nblocks * bs; i++)
    model[i] = (char)(i * 7 + i / bs + 1);
  struct cf_layer_writer *w = s ? cf_layer_writer_new(s, bs) : NULL;
  struct cf_changes ch = {0};
  /* Runs of 1, 2, 3... blocks up to the first 2 MiB, then one of exactly
   * 2 MiB from a 2 MiB boundary (written around the stage), then the rest
   * in runs that cross the next boundary. */
  uint64_t b = 0, off = 0, k = 1;
  int good = w != NULL;
  long long first_size = -1, at_stage = -1;
  while (good && b < nblocks) {
    uint64_t n = b == stage / bs ? stage / bs : k++ % 37 + 1;
    if (b < stage / bs && b + n > stage / bs)
      n = stage / bs - b;
    if (b + n > nblocks)
      n = nblocks - b;
    good = cf_layer_writer_append(w, model + b * bs, n, &off) == 0 && off == b &&
           cf_changes_add(&ch, b, n, CF_LAYER_NEW, off) == 0;
    if (b == 0)
      first_size = tmp_size(sd);
    b += n;
    if (b == stage / bs)
      at_stage = tmp_size(sd);
  }
  ok(good, "block size %u: append %llu blocks in runs%s%s", bs, (unsigned long long)nblocks, good ? "" : ": ",
     good ? "" : cf_error());
  ok(first_size == 0, "block size %u: the first run is staged, not yet in the file (%lld bytes there)", bs,
     first_size);
  ok(at_stage == (long long)stage, "block size %u: the file gets the first 2 MiB in one piece (%lld bytes)", bs,
     at_stage);
  long long before = tmp_size(sd);
  ok(before >= 0 && (uint64_t)before % stage == 0 && (uint64_t)before < nblocks * bs,
     "block size %u: only whole 2 MiB pieces before finish (%lld of %llu bytes)", bs, before,
     (unsigned long long)(nblocks * bs));
  snprintf(name, sizeof name, "w%u", bs);
  struct cf_header *parent = cf_header_new_empty(nblocks * bs, bs);
  int committed = good && parent && cf_image_commit(s, parent, name, &ch, w) == 0;
  ok(committed, "block size %u: commit%s%s", bs, committed ? "" : ": ", committed ? "" : cf_error());
  cf_header_free(parent);
  cf_changes_free(&ch);
  struct cf_image *img = s ? cf_image_open(s, name) : NULL;
  char *back = malloc(nblocks * bs);
  ok(img && cf_image_read(img, back, nblocks * bs, 0) == 0 && memcmp(back, model, nblocks * bs) == 0,
     "block size %u: the layer reads back as appended (its checksum checked first)", bs);
  cf_image_close(img);
  free(back);
  free(model);
  cf_store_close(s);
}

/* Bytes this process has read so far (rchar of /proc/self/io). */
static long long rchar(void)
{
  long long v = -1;
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "rchar: %lld", &v) == 1)
      break;
  if (f)
    fclose(f);
  return v;
}

/* cf_image_check through a fresh store handle (as the next process would):
 * its result, and the bytes read meanwhile in *read. */
static int check_fresh(const char *sd, long long *read)
{
  struct cf_store *s = cf_store_open(sd);
  struct cf_image *img = s ? cf_image_open(s, "c") : NULL;
  long long r0 = rchar();
  int r = img ? cf_image_check(img) : -1;
  *read = rchar() - r0;
  cf_image_close(img);
  cf_store_close(s);
  return r;
}

static int count_entries(const char *path)
{
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    n += de->d_name[0] != '.';
  if (d)
    closedir(d);
  return d ? n : -1;
}

static void test_checked(void)
{
  const uint64_t size = 8u << 20;
  char sd[300], raw[320], rec[340], lpath[4096];
  snprintf(sd, sizeof sd, "%s/checked-store", dir);
  snprintf(raw, sizeof raw, "%s/checked.raw", dir);
  snprintf(rec, sizeof rec, "%s/checked", sd);
  char *data = malloc(size);
  for (uint64_t i = 0; i < size; i++)
    data[i] = (char)(i * 13 + i / 4096 + 1);
  int fd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ok(fd >= 0 && write(fd, data, size) == (ssize_t)size, "write an 8 MiB raw file");
  struct cf_store *s = cf_store_open(sd);
  ok(s && lseek(fd, 0, SEEK_SET) == 0 && cf_image_import(s, fd, "c", BS, NULL, NULL) == 0, "import it: %s",
     cf_error());
  close(fd);
  free(data);
  struct cf_image *img = s ? cf_image_open(s, "c") : NULL;
  ok(img && cf_image_header(img)->nlayers == 1 &&
         cf_store_layer_path(s, cf_image_header(img)->layers[0].id, lpath, sizeof lpath) == 0,
     "its one layer");
  cf_image_close(img);
  cf_store_close(s);
  is(count_entries(rec), 1, "the layer writer left a record in checked/");
  long long n;
  int r;
  r = check_fresh(sd, &n);
  ok(r == 0 && n < 65536, "another store handle trusts it without reading it (%lld bytes read)",
     n);
  /* One flipped byte: the write changes the file's ctime, so the record no longer matches. */
  char b;
  chmod(lpath, 0600);
  fd = open(lpath, O_RDWR);
  ok(fd >= 0 && pread(fd, &b, 1, 4097) == 1, "read a byte of the layer");
  b ^= 0x40;
  ok(pwrite(fd, &b, 1, 4097) == 1, "flip it");
  r = check_fresh(sd, &n);
  ok(r < 0 && cf_errno() == EIO && strstr(cf_error(), "is corrupted") && n >= 4097,
     "the changed layer is read and refused: %s", cf_error());
  b ^= 0x40;
  ok(pwrite(fd, &b, 1, 4097) == 1, "flip it back");
  close(fd);
  chmod(lpath, 0400);
  r = check_fresh(sd, &n);
  ok(r == 0 && n >= (long long)size, "restored, it is read again and found good (%lld bytes)", n);
  r = check_fresh(sd, &n);
  ok(r == 0 && n < 65536, "then trusted again without reading (%lld bytes)", n);
  /* A damaged record is only a cost: the layer is read again. */
  char rp[640];
  DIR *d = opendir(rec);
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (de->d_name[0] != '.')
      snprintf(rp, sizeof rp, "%s/%s", rec, de->d_name);
  if (d)
    closedir(d);
  fd = open(rp, O_WRONLY);
  ok(fd >= 0 && pwrite(fd, "x", 1, 20) == 1, "damage the record");
  close(fd);
  r = check_fresh(sd, &n);
  ok(r == 0 && n >= (long long)size, "a damaged record: the layer is read and checked (%lld bytes)",
     n);
  s = cf_store_open(sd);
  ok(s && cf_store_remove(s, "c") == 0, "remove the image");
  cf_store_close(s);
  is(count_entries(rec), 0, "gc removed the layer's record with it");
}

int main(void)
{
  dir = mkdtemp(tmpl);
  char sd[256];
  snprintf(sd, sizeof sd, "%s/store", dir);
  struct cf_store *s = cf_store_open(sd);
  ok(s != NULL, "open store");
  test_parser();
  test_chain(s, 1);
  test_chain(s, 2);
  test_store(s);
  test_writer(4096);
  test_writer(512);
  test_checked();
  cf_store_close(s);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", dir, dir);
  if (system(cmd) != 0)
    diag("could not remove %s", dir);
  return done_testing();
}
