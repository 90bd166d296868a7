#!/usr/bin/env bash
# A vCPU keeps its host thread (shim/thread.c's opening note): guest
# threads made one after another run on one parked-and-reused host thread,
# not a new host thread each. A new one cost every pthread_create an RCU
# grace period in KVM (KVM_RUN from another thread than the vCPU's last:
# 14.6 ms per thread under scripts/kvm-vm.sh's 6.12 kernel; bench/threads.sh).
# Counted with strace: the host threads `cowfork run` makes for 30 serial
# guest threads against 1, and the program's output against the native run.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
requires strace
here=$(cd "$(dirname "$0")" && pwd)
T=$TMP/threads
gcc -static -O1 -pthread -o "$T" "$here/sandbox/threads.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

same_as_native "30 threads one after another" "$T" serial 30

hosts() { # N: host threads made by `cowfork run` of N serial guest threads
  # (LeakSanitizer cannot run under ptrace: off for a SAN=1 build)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    strace -f -qq -e trace=clone,clone3 -o "$TMP/st.$1" "$COWFORK" run --root / -- "$T" serial "$1" >"$TMP/out.$1" 2>&1 ||
    fail "serial $1 under strace: $(cat "$TMP/out.$1")"
  grep -cE '^[0-9]+ +clone3?\(.*CLONE_THREAD.* = [0-9]+$' "$TMP/st.$1" || true
}
one=$(hosts 1)
thirty=$(hosts 30)
[ "$one" -ge 1 ] || fail "no host thread seen for one guest thread (strace output: $(head -c 300 "$TMP/st.1"))"
[ "$thirty" = "$one" ] ||
  fail "30 serial guest threads made $thirty host threads, 1 made $one: each should reuse the vCPU's host thread"
echo "ok   30 serial guest threads: $thirty host thread(s) made, as for 1"
