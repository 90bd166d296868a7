/* libFuzzer target: the page server's handshake parser (Firecracker's JSON
 * region list). */
#include <stdlib.h>

#include "cowfork/uffd.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  struct cf_uffd_region *r;
  size_t k;
  long f;
  if (cf_uffd_parse_regions((const char *)d, n, &r, &k, &f) == 0)
    free(r);
  return 0;
}
