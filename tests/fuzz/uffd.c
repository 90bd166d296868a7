/* libFuzzer target: the page server's handshake parser (Firecracker's JSON
 * region list, every form Firecracker has sent: no page size, page_size_kib
 * holding bytes, page_size and page_size_kib). Beyond not crashing, its
 * contract: success gives 1..n regions and cowfork_flags within
 * CF_UFFD_ALL_FLAGS or -1; failure gives no array and EINVAL (ENOMEM). */
#include <errno.h>
#include <stdlib.h>

#include "cowfork/error.h"
#include "cowfork/uffd.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  struct cf_uffd_region *r = (void *)1;
  size_t k = 1;
  long f = 0;
  int ret = cf_uffd_parse_regions((const char *)d, n, &r, &k, &f);
  if (ret == 0) {
    if (!r || k == 0 || f < -1 || f > (long)CF_UFFD_ALL_FLAGS)
      abort();
    free(r);
  } else if (ret != -1 || r || k || (cf_errno() != EINVAL && cf_errno() != ENOMEM)) {
    abort();
  }
  return 0;
}
