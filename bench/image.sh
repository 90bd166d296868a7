#!/usr/bin/env bash
# Import and export throughput of `cowfork image` on a 1 GiB raw file with
# about half its 4 KiB blocks zero, read from the page cache, against the
# peers that do the same job with coreutils in the same run:
#   import ~ cp --sparse=always (also detects zero blocks, writes only data),
#            once without and once with an fsync of the result (our import
#            fsyncs its layer);
#   export ~ the same cp from the raw file.
# Prints the median of RUNS (default 5) runs of each, GB/s of raw size, and
# the ratio cowfork/peer (> 1 means cowfork is faster). --json for scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=$PWD/$BUILD/cowfork
RUNS=${RUNS:-5}
json=0; [ "${1:-}" = --json ] && json=1
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cowfork-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
export COWFORK_STORE=$W/store
python3 tests/gen-raw.py "$W/a.raw" 1024
[ "${DENSE:-0}" = 1 ] && { cp --sparse=never "$W/a.raw" "$W/d.raw"; mv "$W/d.raw" "$W/a.raw"; }
cat "$W/a.raw" >/dev/null # into the page cache
SIZE=$(stat -c %s "$W/a.raw")

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timeit() { # timeit CMD...: seconds for one run
  local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
run() { # run NAME SETUP CMD: median seconds over RUNS, SETUP before each
  local name=$1 setup=$2 cmd=$3 i
  for ((i = 0; i < RUNS; i++)); do eval "$setup"; timeit bash -c "$cmd"; done | median
}

imp=$(run import "rm -rf $W/store" "$COWFORK image import $W/a.raw img")
cpn=$(run cp "rm -f $W/b.raw" "cp --sparse=always --reflink=never $W/a.raw $W/b.raw")
cps=$(run cp-sync "rm -f $W/b.raw" "cp --sparse=always --reflink=never $W/a.raw $W/b.raw && sync $W/b.raw")
"$COWFORK" image import "$W/a.raw" img 2>/dev/null || true
cat "$COWFORK_STORE"/layers/* >/dev/null
exp=$(run export "rm -f $W/c.raw" "$COWFORK image export img $W/c.raw")
cmp "$W/a.raw" "$W/c.raw"
stored=$("$COWFORK" image info img --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')

gbs() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.2f", s / t / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
if [ $json = 1 ]; then
  printf '{"cpu": "%s", "raw_bytes": %s, "stored_bytes": %s, "runs": %s,\n' "$cpu" "$SIZE" "$stored" "$RUNS"
  printf ' "import_s": %s, "cp_sparse_s": %s, "cp_sparse_fsync_s": %s, "export_s": %s}\n' "$imp" "$cpn" "$cps" "$exp"
  exit 0
fi
echo "cpu: $cpu, $(nproc) cores; 1 GiB raw, $stored bytes non-zero; median of $RUNS runs"
printf '%-40s %9s %8s %14s\n' "job" "seconds" "GB/s" "cowfork/peer"
printf '%-40s %9s %8s %14s\n' "cowfork image import (fsync)" "$imp" "$(gbs "$imp")" ""
printf '%-40s %9s %8s %14s\n' "  peer: cp --sparse=always" "$cpn" "$(gbs "$cpn")" "$(ratio "$imp" "$cpn")x"
printf '%-40s %9s %8s %14s\n' "  peer: cp --sparse=always + sync FILE" "$cps" "$(gbs "$cps")" "$(ratio "$imp" "$cps")x"
printf '%-40s %9s %8s %14s\n' "cowfork image export (fsync)" "$exp" "$(gbs "$exp")" ""
printf '%-40s %9s %8s %14s\n' "  peer: cp --sparse=always + sync FILE" "$cps" "$(gbs "$cps")" "$(ratio "$exp" "$cps")x"
g=$(gbs "$imp")
awk -v g="$g" 'BEGIN { exit !(g >= 1.0) }' && echo "PASS import >= 1 GB/s ($g GB/s)" || echo "MISS import >= 1 GB/s ($g GB/s)"
