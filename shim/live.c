/* Live sandboxes: continuing a sandbox that paused at its ready point, in
 * the same VM (the daemon's exec loop; include/cowfork/daemon.h).
 *
 * cf_sandbox_run_until pauses a sandbox *before* serving the system call
 * that reached the ready point (a read of fd 0, for a branch at end of
 * input) and records the user registers to resume with (pause_regs: rip
 * after the SYSCALL instruction, the call's number and arguments intact).
 * A child of a template serves that pending call before its first entry
 * (resume_pending, set when the state is loaded). Running the same sandbox
 * again must do the same: re-entering the VM as it stopped would finish the
 * syscall stub with rax still holding the call's number (a read would
 * "return" 0, end of file). So cf_sandbox_continue puts the vCPU back at
 * CPL3 with pause_regs, exactly the state a forked child starts from, and
 * marks the call pending: the run loop serves it (or, if fd 0 still has
 * nothing, pauses on it again at once).
 *
 * Nothing here keeps state; the sandbox belongs to the calling thread for
 * the call (include/cowfork/shim.h). */
#include <errno.h>

#include "cowfork/daemon.h"
#include "internal.h"
#include "shim/shim.h"

int cf_sandbox_continue(struct cf_sandbox *box, struct cf_sandbox_result *res)
{
  struct sb *sb = &box->s;
  if (sb->exited)
    return cf_fail(EINVAL, "the sandbox has ended");
  if (sb->paused && sb->pause_pending && !sb->resume_pending) {
    if (cf_vm_resume_user(sb->vm, &sb->pause_regs) < 0)
      return -1;
    sb->resume_pending = true;
  }
  return cf_sandbox_run_until(box, res);
}

uint64_t cf_sandbox_uffd_client(const struct cf_sandbox *box)
{
  const struct sb *sb = &box->s;
  return sb->have_memb && sb->memb.backend == &cf_mem_backend_uffd ? sb->memb.client : 0;
}

bool cf_sandbox_is_paused(const struct cf_sandbox *box)
{
  return box->s.paused && !box->s.exited;
}
