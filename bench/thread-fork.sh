#!/usr/bin/env bash
# Forks of threaded templates (issue 13, item 8's last row), in one run:
#   - `cowfork fork -n C` (default 100) of a template with 1 thread
#     (bench/guest/idlethreads.c: reads a line, prints, exits), this commit
#     against the previous one (PREV, default HEAD~1, built in a throwaway
#     worktree): the single-threaded fork row must not regress;
#   - the same of a template with 4 threads (3 idle workers waiting on a
#     condition variable), this commit: the cost of carrying threads into
#     every child (a vCPU, a host thread, registers and FPU state each);
#   - Python: the driver with numpy (1 thread) against a branch of it whose
#     request started a ThreadPoolExecutor(3) (4 threads), C children each
#     running a small request.
# Fork time is the fork's own total_ms (children made, run to their end,
# outputs collected). Medians of N interleaved runs (default 5) and ratios.
# Under emulation (scripts/kvm-vm.sh) ratios are rough.
# Usage: bench/thread-fork.sh [N]   (C=COUNT for the children per fork;
# PREV_COWFORK=PATH: PREV's cowfork built already, e.g. outside an emulator)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
B=$PWD/$BUILD/cowfork
N=${1:-5}
C=${C:-100}
PREV=${PREV:-HEAD~1}
PY=/usr/bin/python3
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm"; exit 0; }
tmp=$(mktemp -d /var/tmp/cowfork-tfork.XXXXXX)
trap 'git worktree remove --force "$tmp/wt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
trap 'echo "bench/thread-fork.sh: failed at line $LINENO" >&2' ERR
if [ -n "${PREV_COWFORK:-}" ]; then # a build of PREV made already
  A=$PREV_COWFORK
else
  git worktree add -q --detach "$tmp/wt" "$PREV"
  make -C "$tmp/wt" -j"$(nproc)" >/dev/null
  A=$tmp/wt/build/cowfork
fi
gcc -static -O2 -pthread -o "$tmp/idle" bench/guest/idlethreads.c
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores${COWFORK_EMULATED:+, emulated KVM (scripts/kvm-vm.sh)}"
prev_label=$(git rev-parse --short "$PREV")
[ -n "${PREV_COWFORK:-}" ] && prev_label="$PREV_COWFORK (PREV_COWFORK)"
echo "previous: $prev_label, this: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'); $C children per fork, median of $N"
# Each version its own store (a state file of this commit is version 6).
COWFORK_STORE=$tmp/sa "$A" template create t1 --root / --mem 256M -- "$tmp/idle" 1 2>/dev/null
COWFORK_STORE=$tmp/sb "$B" template create t1 --root / --mem 256M -- "$tmp/idle" 1 2>/dev/null
COWFORK_STORE=$tmp/sb "$B" template create t4 --root / --mem 256M -- "$tmp/idle" 4 2>/dev/null
echo go > "$tmp/in"
# fork_ms STORE COWFORK TEMPLATE WANT INPUT: total_ms of one fork, every child checked.
fork_ms() {
  COWFORK_STORE=$1 "$2" fork "$3" -n "$C" --input "$5" --json > "$tmp/j"
  local good
  good=$(grep -c "\"status\":0.*\"stdout\":\"$4\\\\n\"" "$tmp/j" || true)
  [ "$good" = "$C" ] || { echo "fork $3: $good of $C children answered: $(head -c 300 "$tmp/j")" >&2; exit 1; }
  sed -n 's/.*"total_ms":\([0-9.]*\).*/\1/p' "$tmp/j"
}
py=0
if $PY -c 'import numpy' 2>/dev/null; then
  py=1
  # --root /: the host's Python and numpy, the driver from this tree
  COWFORK_STORE=$tmp/sb "$B" template create p1 --root / --mem 1G -- $PY "$PWD/shim/py/driver.py" --preload numpy 2>/dev/null
  printf 'import builtins, concurrent.futures as cf\nbuiltins.POOL = cf.ThreadPoolExecutor(3)\nprint(sum(POOL.map(abs, range(-2, 3))))\n' > "$tmp/pool.py"
  COWFORK_STORE=$tmp/sb "$B" fork p1 --branch p4 --input "$tmp/pool.py" > /dev/null 2>&1
  echo 'print(numpy.zeros(2).tolist())' > "$tmp/req.py"
fi
# put KEY STORE COWFORK TEMPLATE WANT INPUT: one measurement, "KEY ms" (a
# failed fork ends the script: set -e sees the assignment fail).
put() {
  k=$1
  shift
  v=$(fork_ms "$@")
  echo "$k $v"
}
for i in $(seq 1 "$N"); do
  put A1 "$tmp/sa" "$A" t1 "ok 1" "$tmp/in"
  put B1 "$tmp/sb" "$B" t1 "ok 1" "$tmp/in"
  put B4 "$tmp/sb" "$B" t4 "ok 4" "$tmp/in"
  if [ $py = 1 ]; then
    put P1 "$tmp/sb" "$B" p1 "\\[0.0, 0.0\\]" "$tmp/req.py"
    put P4 "$tmp/sb" "$B" p4 "\\[0.0, 0.0\\]" "$tmp/req.py"
  fi
done > "$tmp/results"
python3 - "$tmp/results" "$C" <<'EOF'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    r.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in r.items()}
c = int(sys.argv[2])
print("%-44s %9s %9s  %s" % ("row", "ms", "ms/child", "ratio"))
def row(name, k, ratio=""):
    print("%-44s %9.1f %9.2f  %s" % (name, m[k], m[k] / c, ratio))
row("1 thread, previous commit", "A1")
row("1 thread, this commit", "B1", "this/previous %.3f" % (m["B1"] / m["A1"]))
row("4 threads (3 idle workers), this commit", "B4", "4 threads/1 %.3f" % (m["B4"] / m["B1"]))
if "P1" in m:
    row("Python driver + numpy, 1 thread", "P1")
    row("Python, ThreadPoolExecutor(3) branch: 4", "P4", "4 threads/1 %.3f" % (m["P4"] / m["P1"]))
EOF
