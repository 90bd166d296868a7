#!/usr/bin/env bash
# The system call fuzzer guest (tests/sandbox/fuzz-syscalls.c): random calls
# with random arguments, pointers into every region, for a bounded time. The
# sandbox may end in any way; the cowfork process must not: it exits by
# itself (never killed by a signal, SIGSYS of the seccomp filter included),
# with the program's status or 128+signal and a report, and with no
# sanitizer error. Run in `cowfork run` and in children of a template
# (`cowfork fork`: the worker threads, VM reuse after a fuzzed child).
#   FUZZ_SECONDS   total budget (default 20)
#   FUZZ_SEED      first seed (default: the time); each run prints its seed,
#                  so a failure is replayed with FUZZ_SEED=N FUZZ_SECONDS=1
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc python3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$TMP/fzroot"
gcc -static -O1 -fno-stack-protector -o "$TMP/fzroot/fuzz-syscalls" "$here/sandbox/fuzz-syscalls.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
# a root of its own holding only the fuzzer (as root: the jailed process too)
"$COWFORK" root create fz --from-dir "$TMP/fzroot" >/dev/null 2>"$TMP/rc.err" || fail "root create: $(cat "$TMP/rc.err")"
F=/fuzz-syscalls
budget=${FUZZ_SECONDS:-20}
seed=${FUZZ_SEED:-$(date +%s)}
per=$(( budget < 5 ? budget : 5 ))
[ "$per" -ge 1 ] || per=1

# check WHAT: cowfork ran as $TMP/st (exit status or -signal), $TMP/err.
check() {
  local what=$1 st
  st=$(cat "$TMP/st")
  # the guest ran (it says its seed first): an error before it started is no pass
  # (grep reads the files itself: `cat | grep -q` fails under pipefail when
  # grep stops at the match and cat dies of SIGPIPE on a long output)
  grep -aqs "fuzz-syscalls: seed" "$TMP/out" "$TMP/err" ||
    fail "$what: the fuzzer did not start (status $st): $(head -c 300 "$TMP/err")"
  if [ "$st" -lt 0 ] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|cowfork: seccomp:" "$TMP/err" ||
     { [ "$st" -ge 128 ] && ! grep -qE "killed by SIG|timed out|CPU time limit" "$TMP/err"; }; then
    tail -n 40 "$TMP/err"
    fail "$what: cowfork ended with status $st (negative: killed by that signal); replay with FUZZ_SEED=$seed"
  fi
}

# Run CMD..., recording cowfork's own exit status (-N when killed by signal N).
runst() {
  python3 -c '
import subprocess, sys
with open(sys.argv[1], "w") as st, open(sys.argv[2], "wb") as err, open(sys.argv[3], "wb") as out:
    p = subprocess.run(sys.argv[4:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    st.write(str(p.returncode))' "$TMP/st" "$TMP/err" "$TMP/out" "$@"
}

end=$(( $(date +%s) + budget ))
runs=0
while [ "$(date +%s)" -lt "$end" ]; do
  runst "$COWFORK" run --root fz --timeout $((per + 5)) -- "$F" "$seed" 10000000 "$per"
  check "run seed $seed"
  echo "ok   run seed $seed: status $(cat "$TMP/st"): $(grep -m1 -E 'done:|killed by|timed out' "$TMP/err" | cut -c1-160)"
  seed=$((seed + 1)) runs=$((runs + 1))
  # Every other round: children of a template that paused reading its seed.
  if [ $((runs % 2)) = 0 ] && [ "$(date +%s)" -lt "$end" ]; then
    name=fz$runs
    "$COWFORK" template create "$name" --root fz -- "$F" - 10000000 "$per" >/dev/null 2>"$TMP/tc.err" ||
      { cat "$TMP/tc.err"; fail "template create"; }
    mkdir -p "$TMP/in$runs"
    for i in 0 1 2; do echo $((seed + i)) >"$TMP/in$runs/$i"; done
    runst "$COWFORK" fork "$name" -n 3 --jobs 1 --timeout $((per + 5)) --input-dir "$TMP/in$runs"
    check "fork seeds $seed..$((seed + 2))"
    echo "ok   fork seeds $seed..$((seed + 2)): status $(cat "$TMP/st"): $(grep -c 'done:' "$TMP/err") of 3 finished the budget"
    seed=$((seed + 3))
    "$COWFORK" template rm "$name" >/dev/null 2>&1 || true
  fi
done
echo "ok   $runs runs, no cowfork crash"
