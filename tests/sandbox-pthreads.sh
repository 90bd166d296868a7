#!/usr/bin/env bash
# glibc's thread synchronization under stress in a sandbox against the same
# program run natively (issue 13, item 7; tests/sandbox/pthread-stress.c):
# mutexes (normal, recursive, errorcheck, trylock), a condvar queue with
# signal, broadcast rounds, a barrier, rwlocks, timed waits that must time
# out and ones that must not (pthread_cond_timedwait on both clocks,
# pthread_mutex_timedlock/clocklock, sem_timedwait/clockwait,
# pthread_timedjoin_np), TLS, keys and pthread_once, 100 threads joined at
# once, detached threads, pthread_cancel at cancellation points, and robust
# mutexes whose owner thread ends holding them; blocking pipe reads and
# writes that a signal ends or its handler feeds (one thread alone too).
# Each mode prints counts and error names only, never a time.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
P=$TMP/pthread-stress
gcc -static -O1 -pthread -o "$P" "$here/sandbox/pthread-stress.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
# Under emulated KVM (COWFORK_EMULATED, scripts/kvm-vm.sh) guest code is
# ~10-20x slower: the loop counts stay at scale 1; natively-fast hardware
# runs them 4 times longer.
scale=4
[ -n "${COWFORK_EMULATED:-}" ] && scale=1 && echo "emulated KVM: loop counts at scale 1"
export SAME_TIMEOUT=300
for m in mutex condvar broadcast barrier rwlock timeouts tls join cancel robust interrupt; do
  same_as_native "pthread $m" "$P" $m $scale
done
