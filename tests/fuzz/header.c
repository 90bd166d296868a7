/* libFuzzer target: the image header parser. The input's checksum field is
 * recomputed first, so that mutations reach the structural checks instead of
 * all dying at the checksum. A header that parses must serialize back to the
 * same bytes and answer lookups inside its extents. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *buf = malloc(size ? size : 1);
  memcpy(buf, data, size);
  if (size >= 96 && (data[95] & 1)) { /* half the time: fix the checksum up */
    uint64_t c = cf_header_checksum(buf, size);
    memcpy(buf + 80, &c, 8);
  }
  struct cf_header *h = cf_header_parse(buf, size);
  if (h) {
    void *out;
    size_t len;
    if (cf_header_serialize(h, &out, &len) == 0) {
      if (len != size || memcmp(out, buf, size) != 0)
        abort();
      free(out);
    }
    uint64_t nb = cf_header_nblocks(h);
    uint64_t probes[] = {0, nb - 1, nb / 2, nb / 3};
    for (int i = 0; i < 4; i++) {
      int64_t e = cf_header_lookup(h, probes[i]);
      if (e < 0 || h->extents[e].first > probes[i] ||
          probes[i] - h->extents[e].first >= h->extents[e].count)
        abort();
    }
    cf_header_free(h);
  }
  free(buf);
  return 0;
}
