#!/usr/bin/env bash
# This commit against a previous one (default HEAD~1, or PREV=REV) in the
# same run, interleaved: the median of N pairs (default 9) of
#   - a system call round trip (getppid in a loop, bench/guest/sysloop.c),
#   - `cowfork run --root / -- /bin/busybox true`, wall clock,
# and the ratio this/previous. The previous commit is built in a
# throwaway worktree. What a change to the shim's hot path costs; under
# emulation (scripts/kvm-vm.sh) the ratios are noisy and say little.
# Usage: bench/prev.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
B=$PWD/$BUILD/cowfork
N=${1:-9}
PREV=${PREV:-HEAD~1}
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm"; exit 0; }
[ -x /bin/busybox ] || { echo "SKIP: /bin/busybox missing"; exit 0; }
tmp=$(mktemp -d /var/tmp/cowfork-prev.XXXXXX)
trap 'git worktree remove --force "$tmp/wt" 2>/dev/null; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/wt" "$PREV"
make -C "$tmp/wt" -j"$(nproc)" >/dev/null
A=$tmp/wt/build/cowfork
gcc -static -O2 -o "$tmp/sysloop" bench/guest/sysloop.c
export COWFORK_STORE=$tmp/store
echo "previous: $(git rev-parse --short "$PREV"), this: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
for i in $(seq 1 "$N"); do
  for v in A B; do
    c=${!v}
    us=$("$c" run --root / -- "$tmp/sysloop" 5000)
    t0=$(date +%s%N); "$c" run --root / -- /bin/busybox true; t1=$(date +%s%N)
    echo "$v $us $(( (t1 - t0) / 1000 ))"
  done
done | python3 -c '
import sys, statistics
r = {"A": ([], []), "B": ([], [])}
for line in sys.stdin:
    v, us, run = line.split(); r[v][0].append(float(us)); r[v][1].append(float(run) / 1000)
for k, name, unit in ((0, "syscall round trip", "us"), (1, "run busybox true", "ms")):
    a, b = statistics.median(r["A"][k]), statistics.median(r["B"][k])
    print(f"{name:20} previous {a:9.1f} {unit}  this {b:9.1f} {unit}  this/previous {b / a:.3f}")'
