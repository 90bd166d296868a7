#!/usr/bin/env bash
# POSIX timers, timerfd, rt_sigtimedwait and clock_nanosleep (issue 13 item
# 4) in a sandbox against the same static program run natively
# (tests/sandbox/ptimers.c): a SIGEV_SIGNAL timer's value, SI_TIMER and
# timer id reach an SA_SIGINFO handler's frame (even in a loop with no
# system call), overruns while blocked, sigsuspend woken by it; timerfd
# reads, poll, EAGAIN, fstat, its /proc/self/fd link, an absolute realtime
# expiry; sigqueue'd real-time signals queue with their values and
# sigwaitinfo/sigtimedwait take them, a timer's too; clock_nanosleep
# TIMER_ABSTIME on both clocks, its errors, EINTR with the time left for a
# relative sleep only. Then a template with an armed POSIX timer: each
# child's timer fires; one with an open timerfd is refused by name.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
P=$TMP/ptimers
gcc -static -O1 -o "$P" "$here/sandbox/ptimers.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

SAME_MEM=256M same_as_native "ptimers" "$P"
sed 's/^/ok   /' "$TMP/s.out"

# A template with an armed POSIX timer: each child counts its time left again.
cat > "$TMP/tmpl.c" <<'C'
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t n, v;
static void h(int s, siginfo_t *si, void *uc) { (void)s; (void)uc; n++; v = si->si_value.sival_int; }
int main(int argc, char **argv)
{
  char c;
  struct sigaction sa = {.sa_sigaction = h, .sa_flags = SA_SIGINFO};
  sigaction(SIGRTMIN, &sa, NULL);
  struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 5};
  timer_t t;
  timer_create(CLOCK_MONOTONIC, &ev, &t);
  struct itimerspec its = {{0, 20000000}, {0, 20000000}};
  timer_settime(t, 0, &its, NULL);
  if (argc > 1) { /* with a timerfd open: cannot be saved */
    extern int timerfd_create(int, int);
    timerfd_create(CLOCK_MONOTONIC, 0);
  }
  if (read(0, &c, 1) < 0) /* the template pauses here */
    return 1;
  int start = n;
  while (n < start + 3)
    ;
  printf("child: the template's POSIX timer fired 3 more times, value %d\n", (int)v);
  return 0;
}
C
gcc -static -O1 -o "$TMP/tmpl" "$TMP/tmpl.c"
cowfork template create ptmr --root / --mem 64M -- "$TMP/tmpl" </dev/null >/dev/null
echo x > "$TMP/in"
out=$(timeout 30 "$COWFORK" fork ptmr -n 2 --input "$TMP/in" 2>&1) || fail "fork of a template with a POSIX timer: $out"
[ "$(grep -c "fired 3 more times, value 5" <<<"$out")" = 2 ] || fail "children of a template with a POSIX timer: $out"
echo "ok   a template's POSIX timer fires in each child with its value"
if out=$(cowfork template create ptmrfd --root / --mem 64M -- "$TMP/tmpl" fd </dev/null 2>&1); then
  fail "a template with an open timerfd was saved: $out"
fi
grep -q "timerfd" <<<"$out" || fail "the refusal should name the timerfd: $out"
echo "ok   a template with an open timerfd is refused: $(tail -n 1 <<<"$out")"
