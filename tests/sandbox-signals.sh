#!/usr/bin/env bash
# Timers, waits and signals in a sandbox against the same programs run
# natively (issue 11, items 4-6): alarm kills a CPU loop (exit by SIGALRM,
# same status) and breaks a `while (!flag);` loop through a handler (the
# kick exit delivers it); setitimer intervals of ITIMER_REAL, _VIRTUAL and
# _PROF fire N times; getitimer gives the time left; nanosleep, futex,
# sigsuspend and poll are interrupted with EINTR; timed futex waits (and
# glibc's sem_timedwait / pthread_cond_timedwait) time out with ETIMEDOUT
# near their deadline; Python's Event().wait(0.05), Lock.acquire(timeout=
# 0.05), Queue().get(timeout=0.05) end in about 50 ms as natively; a timer
# armed in a template fires in its children; perl backticks and bash
# command substitution fork as natively.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
T=$TMP/timers
gcc -static -O1 -o "$T" "$here/sandbox/timers.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"


same_as_native "alarm(1) kills a CPU loop" "$T" alarm-kill
[ "$(cat "$TMP/n.out")" = "" ] && grep -q "SIGALRM" "$TMP/s.err" || fail "the report should name SIGALRM: $(cat "$TMP/s.err")"
same_as_native "setitimer ends pause() by SIGALRM" "$T" alarm-pause
same_as_native "alarm breaks while(!flag) through a handler" "$T" flag-loop
same_as_native "ITIMER_REAL interval fires 5 times" "$T" interval real 5
same_as_native "ITIMER_VIRTUAL interval fires 5 times" "$T" interval virtual 5
same_as_native "ITIMER_PROF interval fires 5 times" "$T" interval prof 5
same_as_native "an interval timer wakes pause() 4 times" "$T" interval-pause
same_as_native "getitimer and alarm give the time left" "$T" getitimer
same_as_native "nanosleep interrupted: EINTR and the time left" "$T" nanosleep
same_as_native "futex timed waits: ETIMEDOUT near the deadline" "$T" futex
same_as_native "sigsuspend: EINTR, the mask back" "$T" sigsuspend
same_as_native "poll sleeps its timeout; a signal interrupts it" "$T" poll
# (A timing off by more than its bound prints what it measured, not "ok":
# the comparison with the native run catches it.)

# An interval timer armed in a template keeps running in its children (the
# state file keeps the time left): the child's busy loop ends by it.
cat > "$TMP/tmpl.c" <<'EOF'
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
static volatile sig_atomic_t n;
static void h(int s) { (void)s; n++; }
int main(void)
{
  char c;
  signal(SIGALRM, h);
  struct itimerval it = {{0, 20000}, {0, 20000}};
  setitimer(ITIMER_REAL, &it, NULL);
  if (read(0, &c, 1) < 0) /* the template pauses here */
    return 1;
  int start = n;
  while (n < start + 3)
    ;
  printf("child: the template's interval timer fired 3 more times\n");
  return 0;
}
EOF
gcc -static -O1 -o "$TMP/tmpl" "$TMP/tmpl.c"
cowfork template create tmr --root / --mem 64M -- "$TMP/tmpl" </dev/null >/dev/null
echo x > "$TMP/in"
out=$(timeout 30 "$COWFORK" fork tmr -n 2 --input "$TMP/in" 2>&1) || fail "fork of a template with a timer: $out"
[ "$(grep -c "fired 3 more times" <<<"$out")" = 2 ] || fail "children of a template with a timer: $out"
echo "ok   a template's interval timer fires in each child"

# Python's timed waits (sem_clockwait, pthread_cond_timedwait) and signal.setitimer.
PY=/usr/bin/python3
if [ -x $PY ]; then
  export OPENBLAS_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
  same_as_native "python3: Event.wait, Lock.acquire, Queue.get with timeout=0.05; setitimer" $PY "$here/sandbox/pywait.py"
else
  echo "skip python3 cases: $PY missing"
fi

# perl backticks and bash command substitution fork and read the child's
# output (they gave up on a refused fork before processes, issue 14): the
# same output and status as natively.
forks() { # NAME CMD...
  local name=$1 rc=0 nrc=0
  shift
  timeout 60 "$COWFORK" run --root / --mem 512M -- "$@" >"$TMP/s.out" 2>"$TMP/s.err" || rc=$?
  "$@" >"$TMP/n.out" 2>"$TMP/n.err" || nrc=$?
  cmp -s "$TMP/n.out" "$TMP/s.out" && cmp -s "$TMP/n.err" "$TMP/s.err" && [ $nrc = $rc ] ||
    fail "$name: native ($nrc) $(cat "$TMP/n.out" "$TMP/n.err"), sandbox ($rc) $(cat "$TMP/s.out" "$TMP/s.err")"
  echo "ok   $name: as natively, exit $rc: $(head -c 200 "$TMP/s.out" | tr '\n' ' ')"
}
if [ -x /usr/bin/perl ]; then
  forks "perl backticks" /usr/bin/perl -e 'my $o = `echo hi`; print defined $o ? "got $o" : "fork failed: $!\n"'
fi
if [ -x /bin/bash ]; then
  forks "bash command substitution" /bin/bash -c 'echo $(echo hi); echo after'
fi
