/* Robust futexes at a thread's exit with no VM: set_robust_list keeps the
 * thread's head and robust_exit (thread.c's task_exit calls it) walks the
 * list as Linux's exit_robust_list: a word the thread holds becomes
 * FUTEX_OWNER_DIED keeping FUTEX_WAITERS, another thread's word is left
 * alone, the pending entry is handled once, a PI-marked entry too, and a
 * circular list ends the walk. Before, set_robust_list kept nothing and a
 * thread that ended holding a robust mutex left it locked for ever
 * (tests/sandbox-pthreads.sh's robust mode hung in a VM: a waiter woken by
 * nothing). */
#include <errno.h>
#include <linux/futex.h>

#include "shim_util.h"
#include "tap.h"

/* An entry: its next pointer, then (futex_offset 8) its futex word. */
static uint64_t entry(uint32_t word)
{
  uint64_t e[2] = {0, word};
  return galloc(e, sizeof e);
}
static void link_to(uint64_t e, uint64_t next) { memcpy(hp(e), &next, 8); }
static uint32_t word(uint64_t e)
{
  uint32_t v;
  memcpy(&v, (char *)hp(e) + 8, 4);
  return v;
}

int main(void)
{
  shim_setup("/");
  uint32_t me = (uint32_t)sb->tid, other = me + 1;
  uint64_t head = galloc(NULL, 24);
  is(S2(SYS_set_robust_list, head, 23), -EINVAL, "set_robust_list with a bad length: EINVAL");
  ok(sb->robust_list == 0, "and nothing kept");
  is(S2(SYS_set_robust_list, head, 24), 0, "set_robust_list");
  ok(sb->robust_list == head, "the head is kept");

  uint64_t held_waiters = entry(me | FUTEX_WAITERS), theirs = entry(other), held = entry(me),
           pi_held = entry(me), pending = entry(me);
  link_to(held_waiters, theirs);
  link_to(theirs, held);
  link_to(held, pi_held | 1); /* bit 0: a PI futex */
  link_to(pi_held | 0, head);
  uint64_t h[3] = {held_waiters, 8, pending};
  memcpy(hp(head), h, sizeof h);
  robust_exit(sb);
  is(word(held_waiters), FUTEX_OWNER_DIED | FUTEX_WAITERS, "held with waiters: FUTEX_OWNER_DIED | FUTEX_WAITERS");
  is(word(theirs), other, "another thread's: unchanged");
  is(word(held), FUTEX_OWNER_DIED, "held: FUTEX_OWNER_DIED");
  is(word(pi_held), FUTEX_OWNER_DIED, "a PI-marked entry held: FUTEX_OWNER_DIED");
  is(word(pending), FUTEX_OWNER_DIED, "the pending entry held: FUTEX_OWNER_DIED");
  ok(sb->robust_list == 0, "the head is gone after the exit");

  /* The pending entry is also in the list: handled once (an unlock of a
   * word now 0 stays 0); a list that never comes back to its head ends. */
  uint64_t a = entry(me), loop = entry(me), z = entry(0);
  link_to(a, z);
  link_to(z, loop);
  link_to(loop, loop);
  uint64_t h2[3] = {a, 8, z};
  memcpy(hp(head), h2, sizeof h2);
  S2(SYS_set_robust_list, head, 24);
  robust_exit(sb);
  is(word(a), FUTEX_OWNER_DIED, "a circular list: the entries before the loop are handled");
  is(word(loop), FUTEX_OWNER_DIED, "and the looping one, and the walk ends");
  is(word(z), 0, "a pending entry whose word is 0: left 0");

  /* A head or entries in unmapped memory: nothing happens. */
  S2(SYS_set_robust_list, 0x7f0000000000ull, 24);
  robust_exit(sb);
  ok(1, "a head in unmapped memory: no crash");
  uint64_t h3[3] = {0x7f0000000000ull, 8, 0x7f0000001000ull};
  memcpy(hp(head), h3, sizeof h3);
  S2(SYS_set_robust_list, head, 24);
  robust_exit(sb);
  ok(1, "entries in unmapped memory: no crash");
  return done_testing();
}
