/* Image headers: parse, validate, serialize, look up, derive a child.
 *
 * The on-disk form (docs/format.md) is a fixed 96-byte preamble, the layer
 * table (32 bytes a layer) and the extent map (32 bytes an extent), all
 * little-endian, with an XXH3-64 of the whole file (checksum field zeroed).
 *
 * Invariants of a parsed or derived header: size > 0 and a multiple of a
 * power-of-two block_size; extents sorted, each count > 0, contiguous from
 * block 0 to nblocks; every layer index < nlayers or CF_LAYER_EMPTY; every
 * extent inside its layer. The parser checks all of them on untrusted bytes
 * (it has a libFuzzer target: tests/fuzz/header.c), so everything downstream
 * may rely on them. */
#include <endian.h>
#include <string.h>
#include <uuid/uuid.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "cowfork/header.h"
#include "internal.h"

static const char magic[8] = {'C', 'O', 'W', 'F', 'O', 'R', 'K', 'I'};

enum {
  PREAMBLE = 96,
  OFF_CHECKSUM = 80,
  LAYER_SIZE = 32,
  EXTENT_SIZE = 32,
};

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

uint64_t cf_header_checksum(const void *vbuf, size_t len)
{
  const uint8_t *buf = vbuf;
  static const uint8_t zero[8];
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, buf, OFF_CHECKSUM);
  XXH3_64bits_update(&st, zero, 8);
  XXH3_64bits_update(&st, buf + OFF_CHECKSUM + 8, len - OFF_CHECKSUM - 8);
  return XXH3_64bits_digest(&st);
}

void cf_id_format(const uint8_t id[16], char out[37]) { uuid_unparse_lower(id, out); }
int cf_id_parse(const char *s, uint8_t id[16])
{
  if (uuid_parse(s, id) != 0)
    return cf_fail(EINVAL, "'%s' is not a UUID", s);
  return 0;
}
int cf_id_is_null(const uint8_t id[16]) { return uuid_is_null(id); }

void cf_header_free(struct cf_header *h)
{
  if (!h)
    return;
  free(h->layers);
  free(h->extents);
  free(h);
}

static int check_geometry(uint64_t size, uint32_t block_size)
{
  if (!cf_is_pow2(block_size) || block_size < CF_MIN_BLOCK_SIZE || block_size > CF_MAX_BLOCK_SIZE)
    return cf_fail(EINVAL, "block size %u is not a power of two in [%u, %u]", block_size,
                   CF_MIN_BLOCK_SIZE, CF_MAX_BLOCK_SIZE);
  if (size == 0 || size % block_size)
    return cf_fail(EINVAL, "image size %llu is not a positive multiple of the block size %u",
                   (unsigned long long)size, block_size);
  return 0;
}

struct cf_header *cf_header_new_empty(uint64_t size, uint32_t block_size)
{
  if (check_geometry(size, block_size) < 0)
    return NULL;
  struct cf_header *h = calloc(1, sizeof *h);
  struct cf_extent *e = calloc(1, sizeof *e);
  if (!h || !e) {
    free(h);
    free(e);
    return cf_fail_null(ENOMEM, "out of memory");
  }
  h->size = size;
  h->block_size = block_size;
  uuid_generate(h->id);
  *e = (struct cf_extent){.first = 0, .count = size / block_size, .layer = CF_LAYER_EMPTY};
  h->extents = e;
  h->nextents = 1;
  return h;
}

struct cf_header *cf_header_parse(const void *vbuf, size_t len)
{
  const uint8_t *buf = vbuf;
  if (len < PREAMBLE)
    return cf_fail_null(EINVAL, "header truncated: %zu bytes, at least %d needed", len, PREAMBLE);
  if (memcmp(buf, magic, sizeof magic) != 0)
    return cf_fail_null(EINVAL, "bad magic: not a cowfork image header");
  uint32_t version = get32(buf + 8);
  if (version != CF_HEADER_VERSION)
    return cf_fail_null(EINVAL, "unsupported header version %u (this build reads %d)", version,
                        CF_HEADER_VERSION);
  uint32_t nlayers = get32(buf + 64);
  uint64_t nextents = get64(buf + 72);
  /* Sizes first, so that a lying count cannot make us read past the end. */
  if (nlayers > (len - PREAMBLE) / LAYER_SIZE || nextents > (len - PREAMBLE) / EXTENT_SIZE ||
      len != PREAMBLE + (uint64_t)nlayers * LAYER_SIZE + nextents * EXTENT_SIZE)
    return cf_fail_null(EINVAL, "header length %zu does not match %u layers and %llu extents", len,
                        nlayers, (unsigned long long)nextents);
  if (get64(buf + OFF_CHECKSUM) != cf_header_checksum(buf, len))
    return cf_fail_null(EINVAL, "header checksum mismatch (corrupted header)");

  /* Reserved bytes are zero, so a later version can give them meaning. */
  if (get32(buf + 68) != 0 || get64(buf + 88) != 0)
    return cf_fail_null(EINVAL, "reserved header field is not zero");
  struct cf_header *h = calloc(1, sizeof *h);
  if (!h)
    return cf_fail_null(ENOMEM, "out of memory");
  h->block_size = get32(buf + 12);
  h->size = get64(buf + 16);
  h->generation = get64(buf + 24);
  memcpy(h->id, buf + 32, 16);
  memcpy(h->parent, buf + 48, 16);
  h->nlayers = nlayers;
  h->nextents = nextents;
  if (check_geometry(h->size, h->block_size) < 0)
    goto bad;
  if (nextents == 0) {
    cf_fail(EINVAL, "extent map is empty");
    goto bad;
  }
  h->layers = calloc(nlayers ? nlayers : 1, sizeof *h->layers);
  h->extents = calloc(nextents, sizeof *h->extents);
  if (!h->layers || !h->extents) {
    cf_fail(ENOMEM, "out of memory");
    goto bad;
  }
  const uint8_t *p = buf + PREAMBLE;
  for (uint32_t i = 0; i < nlayers; i++, p += LAYER_SIZE) {
    struct cf_layer_ref *l = &h->layers[i];
    memcpy(l->id, p, 16);
    l->nblocks = get64(p + 16);
    l->checksum = get64(p + 24);
    for (uint32_t j = 0; j < i; j++)
      if (memcmp(h->layers[j].id, l->id, 16) == 0) {
        cf_fail(EINVAL, "layer %u is listed twice", i);
        goto bad;
      }
  }
  uint64_t nblocks = h->size / h->block_size, next = 0;
  for (uint64_t i = 0; i < nextents; i++, p += EXTENT_SIZE) {
    struct cf_extent *e = &h->extents[i];
    e->first = get64(p);
    e->count = get64(p + 8);
    e->offset = get64(p + 16);
    e->layer = get32(p + 24);
    if (get32(p + 28) != 0) {
      cf_fail(EINVAL, "extent %llu: reserved field is not zero", (unsigned long long)i);
      goto bad;
    }
    if (e->first != next) {
      cf_fail(EINVAL, "extent %llu starts at block %llu, expected %llu (%s)", (unsigned long long)i,
              (unsigned long long)e->first, (unsigned long long)next,
              e->first < next ? "overlap" : "gap");
      goto bad;
    }
    if (e->count == 0 || e->count > nblocks - next) {
      cf_fail(EINVAL, "extent %llu has %llu blocks, outside the image of %llu blocks",
              (unsigned long long)i, (unsigned long long)e->count, (unsigned long long)nblocks);
      goto bad;
    }
    next += e->count;
    if (e->layer == CF_LAYER_EMPTY) {
      if (e->offset != 0) {
        cf_fail(EINVAL, "empty extent %llu has an offset", (unsigned long long)i);
        goto bad;
      }
    } else if (e->layer >= nlayers) {
      cf_fail(EINVAL, "extent %llu names layer %u of %u", (unsigned long long)i, e->layer, nlayers);
      goto bad;
    } else if (e->offset > h->layers[e->layer].nblocks ||
               e->count > h->layers[e->layer].nblocks - e->offset) {
      cf_fail(EINVAL, "extent %llu reaches past the end of layer %u (%llu blocks)",
              (unsigned long long)i, e->layer, (unsigned long long)h->layers[e->layer].nblocks);
      goto bad;
    }
  }
  if (next != nblocks) {
    cf_fail(EINVAL, "extents end at block %llu, image has %llu (gap at the end)",
            (unsigned long long)next, (unsigned long long)nblocks);
    goto bad;
  }
  return h;
bad:
  cf_header_free(h);
  return NULL;
}

int cf_header_serialize(const struct cf_header *h, void **out, size_t *outlen)
{
  size_t len = PREAMBLE + (size_t)h->nlayers * LAYER_SIZE + h->nextents * EXTENT_SIZE;
  uint8_t *buf = calloc(1, len);
  if (!buf)
    return cf_fail(ENOMEM, "out of memory");
  memcpy(buf, magic, sizeof magic);
  put32(buf + 8, CF_HEADER_VERSION);
  put32(buf + 12, h->block_size);
  put64(buf + 16, h->size);
  put64(buf + 24, h->generation);
  memcpy(buf + 32, h->id, 16);
  memcpy(buf + 48, h->parent, 16);
  put32(buf + 64, h->nlayers);
  put64(buf + 72, h->nextents);
  uint8_t *p = buf + PREAMBLE;
  for (uint32_t i = 0; i < h->nlayers; i++, p += LAYER_SIZE) {
    memcpy(p, h->layers[i].id, 16);
    put64(p + 16, h->layers[i].nblocks);
    put64(p + 24, h->layers[i].checksum);
  }
  for (uint64_t i = 0; i < h->nextents; i++, p += EXTENT_SIZE) {
    put64(p, h->extents[i].first);
    put64(p + 8, h->extents[i].count);
    put64(p + 16, h->extents[i].offset);
    put32(p + 24, h->extents[i].layer);
  }
  put64(buf + OFF_CHECKSUM, cf_header_checksum(buf, len));
  *out = buf;
  *outlen = len;
  return 0;
}

int64_t cf_header_lookup(const struct cf_header *h, uint64_t block)
{
  if (block >= cf_header_nblocks(h))
    return cf_fail(EINVAL, "block %llu is past the end of the image", (unsigned long long)block);
  uint64_t lo = 0, hi = h->nextents; /* extents[lo].first <= block < extents[hi].first */
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (h->extents[mid].first <= block)
      lo = mid;
    else
      hi = mid;
  }
  return (int64_t)lo;
}

/* Append to c, merged into the last entry when it continues it. */
static int changes_push(struct cf_changes *c, uint64_t first, uint64_t count, uint32_t layer,
                        uint64_t offset)
{
  if (layer == CF_LAYER_EMPTY)
    offset = 0;
  if (c->n) {
    struct cf_extent *last = &c->v[c->n - 1];
    if (first == last->first + last->count && layer == last->layer &&
        offset == (layer == CF_LAYER_EMPTY ? 0 : last->offset + last->count)) {
      last->count += count;
      return 0;
    }
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    struct cf_extent *v = realloc(c->v, cap * sizeof *v);
    if (!v)
      return cf_fail(ENOMEM, "out of memory");
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = (struct cf_extent){first, count, offset, layer};
  return 0;
}

int cf_changes_add(struct cf_changes *c, uint64_t first, uint64_t count, uint32_t layer, uint64_t offset)
{
  if (count == 0)
    return 0;
  if (layer != CF_LAYER_NEW && layer != CF_LAYER_EMPTY)
    return cf_fail(EINVAL, "a change is either new data or empty");
  if (c->n && first < c->v[c->n - 1].first + c->v[c->n - 1].count)
    return cf_fail(EINVAL, "changes out of order at block %llu", (unsigned long long)first);
  return changes_push(c, first, count, layer, offset);
}

void cf_changes_free(struct cf_changes *c)
{
  free(c->v);
  *c = (struct cf_changes){0};
}

/* Building a child map: extents are emitted in order and merged with the
 * previous one when they continue it. Parent layer indices are renumbered in
 * order of first use, so the child references only what it uses. */
struct builder {
  struct cf_changes out; /* reused for its growth and merge logic, with real layer indices */
  uint32_t *remap;       /* parent layer -> child layer, UINT32_MAX if unused yet */
  uint32_t newidx;       /* child index of CF_LAYER_NEW, UINT32_MAX if unused yet */
  uint32_t nused;
};

static int emit(struct builder *b, uint64_t first, uint64_t count, uint32_t layer, uint64_t offset)
{
  uint32_t idx = CF_LAYER_EMPTY;
  if (layer == CF_LAYER_NEW) {
    if (b->newidx == UINT32_MAX)
      b->newidx = b->nused++;
    idx = b->newidx;
  } else if (layer != CF_LAYER_EMPTY) {
    if (b->remap[layer] == UINT32_MAX)
      b->remap[layer] = b->nused++;
    idx = b->remap[layer];
  }
  return changes_push(&b->out, first, count, idx, offset);
}

/* Emit the parent's map over [from, to), starting the search at *cursor
 * (an extent index that only moves forward). */
static int emit_parent(struct builder *b, const struct cf_header *p, uint64_t *cursor, uint64_t from,
                       uint64_t to)
{
  while (from < to) {
    while (p->extents[*cursor].first + p->extents[*cursor].count <= from)
      (*cursor)++;
    const struct cf_extent *e = &p->extents[*cursor];
    uint64_t skip = from - e->first;
    uint64_t n = e->first + e->count - from;
    if (n > to - from)
      n = to - from;
    if (emit(b, from, n, e->layer, e->layer == CF_LAYER_EMPTY ? 0 : e->offset + skip) < 0)
      return -1;
    from += n;
  }
  return 0;
}

struct cf_header *cf_header_derive(const struct cf_header *p, const struct cf_extent *ch, size_t nch,
                                   const struct cf_layer_ref *newlayer)
{
  uint64_t nblocks = cf_header_nblocks(p), prev_end = 0;
  for (size_t i = 0; i < nch; i++) {
    const struct cf_extent *c = &ch[i];
    if (c->count == 0 || c->first < prev_end || c->first > nblocks || c->count > nblocks - c->first)
      return cf_fail_null(EINVAL, "change %zu [%llu, +%llu) is out of order or outside the image", i,
                          (unsigned long long)c->first, (unsigned long long)c->count);
    if (c->layer == CF_LAYER_NEW) {
      if (!newlayer || c->offset > newlayer->nblocks || c->count > newlayer->nblocks - c->offset)
        return cf_fail_null(EINVAL, "change %zu reaches past the end of the new layer", i);
    } else if (c->layer != CF_LAYER_EMPTY)
      return cf_fail_null(EINVAL, "change %zu is neither new data nor empty", i);
    prev_end = c->first + c->count;
  }

  struct builder b = {.newidx = UINT32_MAX};
  struct cf_header *h = calloc(1, sizeof *h);
  b.remap = malloc((p->nlayers ? p->nlayers : 1) * sizeof *b.remap);
  if (!h || !b.remap) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  memset(b.remap, 0xff, (p->nlayers ? p->nlayers : 1) * sizeof *b.remap);
  uint64_t cursor = 0, pos = 0;
  for (size_t i = 0; i < nch; i++) {
    if (emit_parent(&b, p, &cursor, pos, ch[i].first) < 0 ||
        emit(&b, ch[i].first, ch[i].count, ch[i].layer, ch[i].offset) < 0)
      goto err;
    pos = ch[i].first + ch[i].count;
  }
  if (emit_parent(&b, p, &cursor, pos, nblocks) < 0)
    goto err;

  h->layers = calloc(b.nused ? b.nused : 1, sizeof *h->layers);
  if (!h->layers) {
    cf_fail(ENOMEM, "out of memory");
    goto err;
  }
  for (uint32_t i = 0; i < p->nlayers; i++)
    if (b.remap[i] != UINT32_MAX)
      h->layers[b.remap[i]] = p->layers[i];
  if (b.newidx != UINT32_MAX) {
    h->layers[b.newidx] = *newlayer;
    memcpy(h->id, newlayer->id, 16);
  } else
    uuid_generate(h->id);
  h->nlayers = b.nused;
  h->extents = b.out.v;
  h->nextents = b.out.n;
  h->size = p->size;
  h->block_size = p->block_size;
  h->generation = p->generation + 1;
  memcpy(h->parent, p->id, 16);
  free(b.remap);
  return h;
err:
  free(b.remap);
  free(b.out.v);
  free(h);
  return NULL;
}
