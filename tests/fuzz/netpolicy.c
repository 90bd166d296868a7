/* libFuzzer target: the network policy parser (lib/netpolicy.c), which
 * reads the daemon's create requests and --net. A policy that parses must
 * format to a canonical text that parses to the same policy and formats the
 * same again; it lies within itself and within "all" unless it names the
 * host's loopback; and lookups of a few addresses must not fault. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cowfork/netpolicy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *spec = malloc(size + 1);
  memcpy(spec, data, size);
  spec[size] = 0;
  struct cf_net_policy p, q, all;
  if (cf_net_parse(spec, &p) == 0) {
    char a[8192], b[8192], why[256];
    int n = cf_net_format(&p, a, sizeof a);
    if (n < 0 || (size_t)n >= sizeof a)
      abort();
    if (cf_net_parse(a, &q) != 0)
      abort(); /* the canonical text must parse */
    cf_net_format(&q, b, sizeof b);
    if (strcmp(a, b) != 0)
      abort(); /* and format the same again */
    if (!cf_net_within(&p, &p, why, sizeof why))
      abort();
    if (cf_net_parse("all", &all) != 0)
      abort();
    bool lo = false;
    for (unsigned i = 0; i < p.n; i++) {
      uint8_t x[16] = {0};
      memcpy(x, p.r[i].addr, 16);
      if (!cf_net_allows(&p, x, p.r[i].port ? p.r[i].port : 80))
        abort(); /* a rule's own first address is allowed */
      static const uint8_t v4lo[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      lo |= (!memcmp(x, v4lo, 12) && x[12] == 127) || (p.r[i].bits == 128 && x[15] == 1 && !memcmp(x, (uint8_t[15]){0}, 15));
    }
    if (!lo && !cf_net_within(&p, &all, why, sizeof why))
      abort();
    cf_net_none(&p);
  }
  free(spec);
  return 0;
}
