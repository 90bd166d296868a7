/* Live sandboxes: small queries the daemon makes of a sandbox it keeps
 * between execs (include/cowfork/daemon.h). Going on after a pause is
 * cf_sandbox_run_until itself (shim/sandbox.c); parking is reuse.c. */
#include <errno.h>

#include "cowfork/daemon.h"
#include "internal.h"
#include "shim/shim.h"

uint64_t cf_sandbox_uffd_client(const struct cf_sandbox *box)
{
  const struct cf_mem *m = sb_memb(&box->s);
  return m && m->backend == &cf_mem_backend_uffd ? m->client : 0;
}

bool cf_sandbox_is_paused(const struct cf_sandbox *box)
{
  return box->s.paused && !box->s.exited;
}

bool cf_sandbox_is_parked(const struct cf_sandbox *box) { return box->s.park != NULL; }
