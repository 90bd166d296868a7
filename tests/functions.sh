# Sourced by every tests/*.sh. Gives:
#   requires PROGRAM...   skip the test (exit 77, saying why) unless each is on PATH
#   skip "why"            skip the test now
#   fail "why"            fail the test now
#   cleanup_fn CMD...     run CMD at exit (last registered runs first)
#   $TMP                  a fresh directory removed at exit, under /var/tmp
#                         ($COWFORK_TEST_DIR): not under /tmp, which a sandbox
#                         never sees (its /tmp is its own, docs/sandbox.md)
#   cowfork ARGS...       the cowfork binary under test, with a private store
#                         whose root "default" is tests/run's shared one
#   start_server PIDVAR SOCKET CMD...  run CMD in the background, wait for SOCKET
set -euo pipefail
: "${COWFORK:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/cowfork}"
_cleanups=()
_run_cleanups() {
  local i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
}
trap _run_cleanups EXIT
cleanup_fn() { _cleanups+=("$*"); }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
requires() {
  local p
  for p in "$@"; do command -v "$p" >/dev/null 2>&1 || skip "$p is not installed"; done
}
# CPython's own suites in a sandbox (python-suites, -threads, -processes):
# PY=/usr/bin/python3 and Debian's libpython3.11-testsuite, or skip saying
# which is missing. (The /dev/kvm check stays in each test: tests/run finds
# the tests to run under nested KVM by it.)
requires_cpython_suite() {
  PY=/usr/bin/python3
  [ -x $PY ] || skip "$PY missing (apt-get install python3)"
  $PY -c 'import test.libregrtest' 2>/dev/null || skip "CPython's tests missing (apt-get install libpython3.11-testsuite)"
  export PYTHONDONTWRITEBYTECODE=1
}
# regrtest_vs_native WHAT MEM LIMIT ARGS...: `$PY -m test -v ARGS` natively,
# then in a sandbox over / with --mem MEM, each bounded by LIMIT seconds.
# Passes when both exit alike and print the same results: the per-module
# counts and regrtest's summary, and with REGRTEST_CASES=1 each case's result
# too. Else prints what differs (and the cases that differ) and fails, naming
# WHAT ("thread suites (5 modules)").
regrtest_vs_native() {
  local what=$1 mem=$2 limit=$3 nrc=0 src=0
  shift 3
  (cd / && timeout "$limit" $PY -m test -v "$@") >"$TMP/n.txt" 2>&1 || nrc=$?
  (cd / && cowfork run --root / --mem "$mem" --timeout "$limit" -- $PY -m test -v "$@") >"$TMP/s.txt" 2>&1 || src=$?
  _regrtest_results "$TMP/n.txt" >"$TMP/n.res"
  _regrtest_results "$TMP/s.txt" >"$TMP/s.res"
  grep -q '^== Tests result' "$TMP/n.res" || fail "native regrtest printed no summary (exit $nrc, $limit s): $(tail -n 20 "$TMP/n.txt")"
  if ! cmp -s "$TMP/n.res" "$TMP/s.res" || [ "$nrc" != "$src" ]; then
    echo "native exit $nrc, sandbox exit $src; results --- native +++ sandbox:"
    diff "$TMP/n.res" "$TMP/s.res" || true
    echo "the cases whose results differ:"
    diff <(_regrtest_cases "$TMP/n.txt") <(_regrtest_cases "$TMP/s.txt") | head -n 40 || true
    grep -E -A12 '^(ERROR|FAIL):' "$TMP/s.txt" | head -n 120 || true
    tail -n 30 "$TMP/s.txt"
    fail "CPython's $what: the sandbox's results differ from the native run"
  fi
  echo "ok   CPython regrtest, $what as natively: $(grep -c '^Ran' "$TMP/s.res") result lines," \
    "$(grep -E '^Ran' "$TMP/s.res" | awk '{s += $2} END {print s}') cases$([ "${REGRTEST_CASES:-0}" = 1 ] &&
      echo " ($(grep -c ' \.\.\. ok$' "$TMP/s.res") ok, each case's result compared)");" \
    "$(grep -o 'Total duration.*' "$TMP/n.txt") natively, $(grep -o 'Total duration.*' "$TMP/s.txt" | sed 's/Total duration: //') in the sandbox"
}
_regrtest_cases() { # each case's result, sorted (a file name holding the pid masked, as test_fileio's skip reason)
  { grep -E ' \.\.\. (ok|skipped|FAIL|ERROR|expected failure|unexpected success)' "$1" || true; } |
    sed -E 's/ in [0-9.]+s$//; s/@test_[0-9]+_/@test_PID_/g' | LC_ALL=C sort
}
_regrtest_results() { # [each case's result,] the per-module counts and results, then regrtest's summary
  [ "${REGRTEST_CASES:-0}" != 1 ] || _regrtest_cases "$1"
  { grep -E '^(Ran [0-9]+ tests?|OK|FAILED)' "$1" || true; } | sed -E 's/ in [0-9.]+s$//'
  sed -n '/^== Tests result/,/^Total duration/p' "$1" | { grep -v '^Total duration' || true; }
}
TMP=$(mktemp -d "${COWFORK_TEST_DIR:-/var/tmp}/cowfork-test.XXXXXX")
cleanup_fn "rm -rf '$TMP'"
export COWFORK_STORE="$TMP/store"
# The default root: tests/run builds it once ($COWFORK_TEST_ROOTS) and every
# test's store links to it (a test run alone builds its own on first use).
# link_test_roots: the same for the store now in $COWFORK_STORE (a test that
# moves to another store).
link_test_roots() {
  if [ -n "${COWFORK_TEST_ROOTS:-}" ] && [ -e "$COWFORK_TEST_ROOTS/default/root" ]; then
    (umask 077 && mkdir -p "$COWFORK_STORE/roots")
    ln -s "$COWFORK_TEST_ROOTS/default" "$COWFORK_STORE/roots/default"
  fi
}
link_test_roots
cowfork() { "$COWFORK" "$@"; }
start_server() {
  local var=$1 sock=$2; shift 2
  "$@" &
  local pid=$!
  eval "$var=$pid"
  cleanup_fn "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
  local i
  for ((i = 0; i < 500; i++)); do
    [ -S "$sock" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "server exited before creating $sock"
    sleep 0.01
  done
  fail "server did not create $sock within 5 s"
}

# mount_xfs_reflink MNT: a 300 MiB XFS with reflink on a loop device at MNT
# (made here, unmounted at exit); skips where loop mounts are not possible.
mount_xfs_reflink() {
  [ "$(id -u)" = 0 ] || skip "mounting a loop XFS needs root"
  mkdir -p "$1"
  truncate -s 300M "$TMP/xfs.img"
  mkfs.xfs -q -m reflink=1 "$TMP/xfs.img" || fail "mkfs.xfs -m reflink=1 failed"
  mount -o loop "$TMP/xfs.img" "$1" 2>"$TMP/mount.err" ||
    skip "cannot loop-mount XFS here (no loop devices, not root, or a container):" "$(head -c 200 "$TMP/mount.err")"
  cleanup_fn "umount '$1'"
}

# same_as_native NAME CMD...: CMD natively and in a sandbox (cowfork run
# --root /) must print the same stdout and exit the same; on a difference
# both runs are shown and the test fails. SAME_MEM (default 512M) and
# SAME_TIMEOUT (seconds, default 60) tune the runs; stdin is /dev/null.
same_as_native() {
  local name=$1 nrc=0 src=0
  shift
  timeout "${SAME_TIMEOUT:-60}" "$@" </dev/null >"$TMP/n.out" 2>"$TMP/n.err" || nrc=$?
  timeout "${SAME_TIMEOUT:-60}" "$COWFORK" run --root / --mem "${SAME_MEM:-512M}" -- "$@" </dev/null \
    >"$TMP/s.out" 2>"$TMP/s.err" || src=$?
  if ! cmp -s "$TMP/n.out" "$TMP/s.out" || [ "$nrc" != "$src" ]; then
    echo "native ($nrc):"; cat "$TMP/n.out" "$TMP/n.err"
    echo "sandbox ($src):"; cat "$TMP/s.out" "$TMP/s.err"
    diff "$TMP/n.out" "$TMP/s.out" || true
    fail "$name differs from the native run"
  fi
  echo "ok   $name: exit $src, $(wc -l <"$TMP/s.out") lines as natively: $(head -c 200 "$TMP/s.out" | tr '\n' '|')"
}
