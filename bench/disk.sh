#!/usr/bin/env bash
# Copy-on-write disks over NBD: `cowfork disk serve` against the strongest
# peer here, `nbdkit --filter=cow file TEMPLATE`, on the same template (a
# SIZE_MIB raw disk, about half its 4 KiB blocks zero), through the same
# clients, in one run:
#   seq-read     nbdcopy URI null:            and fio read 1 MiB, iodepth 16
#   seq-write    nbdcopy NEW.raw URI          and fio write 1 MiB, iodepth 16
#   rand-4k      fio randwrite 4 KiB, iodepth 32, a quarter of the disk
#   mixed        fio: random 64 KiB data writes, all-zero writes and discards
#                at once (three jobs), each an eighth of the disk
# Each row is the median of RUNS (default 5) runs, each against a fresh
# server; both servers keep their overlay in CACHE_DIR (default /dev/shm).
# Throughput is bytes moved / time (fio's own runtime, or nbdcopy's wall
# time), ratio = cowfork / nbdkit (> 1: cowfork faster). "kept" is what a
# child costs after the workload: cowfork's saved child image's own bytes
# (SIGTERM saves it) vs the allocated bytes of nbdkit's cow overlay file
# (found through /proc while nbdkit runs), next to the non-zero data the
# workload wrote. Goal: every ratio >= 1.0, kept <= non-zero data + 1 %.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=$PWD/$BUILD/cowfork
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
CACHE_DIR=${CACHE_DIR:-/dev/shm}
TIMEOUT=${TIMEOUT:-120} # seconds per client run; a run that takes longer is a hang
declare -A HANGS
export PATH="/usr/bin:$PATH"
for p in nbdkit nbdcopy fio python3; do
  command -v $p >/dev/null || { echo "bench/disk.sh: $p is not installed" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "bench/disk.sh: fio has no nbd engine" >&2; exit 1; }
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cowfork-bench-disk.XXXXXX")
K=$(mktemp -d "$CACHE_DIR/cowfork-bench-nbdkit.XXXXXX")
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$W" "$K"
}
trap cleanup EXIT
export COWFORK_STORE=$W/store
SOCK=$W/nbd.sock
URI="nbd+unix:///?socket=$SOCK"
SIZE=$((SIZE_MIB << 20))

python3 tests/gen-raw.py "$W/tmpl.raw" "$SIZE_MIB" 1
python3 tests/gen-raw.py "$W/new.raw" "$SIZE_MIB" 2
"$COWFORK" image import "$W/tmpl.raw" tmpl
cat "$W/tmpl.raw" "$W/new.raw" "$COWFORK_STORE"/layers/* >/dev/null # page cache
nonzero() { python3 - "$1" <<'PY'
import sys
z = bytes(4096); n = 0
with open(sys.argv[1], "rb") as f:
    while (b := f.read(1 << 20)):
        for i in range(0, len(b), 4096):
            n += b[i:i + 4096] != z[:len(b) - i]
print(n * 4096)
PY
}
NEW_NONZERO=$(nonzero "$W/new.raw")

wait_sock() {
  for _ in $(seq 500); do [ -S "$SOCK" ] && return 0; sleep 0.01; done
  echo "server did not start" >&2; exit 1
}
start() { # start cowfork|nbdkit
  rm -f "$SOCK"
  if [ "$1" = cowfork ]; then
    "$COWFORK" disk serve --export "d=tmpl:child" --unix "$SOCK" --cache-dir "$CACHE_DIR" --quiet 2>>"$W/serve.log" &
  else
    TMPDIR=$K nbdkit -U "$SOCK" -f --filter=cow file file="$W/tmpl.raw" 2>>"$W/serve.log" &
  fi
  SERVER_PID=$!
  wait_sock
}
# stop: set KEPT to the bytes kept (cowfork: the saved child's own bytes;
# nbdkit: its overlay file's allocated bytes) and stop the server. Not in a
# subshell: it waits for the server, which is this shell's child.
stop() {
  local kept
  if [ "$1" = cowfork ]; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID"
    kept=$("$COWFORK" image info child --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["own_bytes"])')
    "$COWFORK" image rm child
  else
    kept=0
    for fd in /proc/"$SERVER_PID"/fd/*; do
      case $(readlink "$fd") in "$K"/*) kept=$((kept + $(stat -L -c %b "$fd") * 512)) ;; esac
    done
    kill -TERM "$SERVER_PID"
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true # a hung nbdkit ignores TERM
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  KEPT=$kept
}
now() { date +%s.%N; }
# fio_run ARGS...: bytes/s over all jobs (fio's runtime of the longest job)
fio_run() {
  timeout "$TIMEOUT" fio --ioengine=nbd --uri="$URI" --size="$SIZE" --output-format=json "$@" 2>/dev/null |
    sed -n '/^{/,$p' | python3 -c '
import json, sys
j = json.load(sys.stdin)
b = sum(x[k]["io_bytes"] for x in j["jobs"] for k in ("read", "write", "trim"))
t = max(x["job_runtime"] for x in j["jobs"]) / 1000
print(b / t)' 2>/dev/null || true # fio failed or hung: no sample
}
# One workload: sets BPS (bytes/s) and KEPT (bytes kept afterwards).
work() { # work NAME SERVER
  local t0 t1 bps
  start "$2"
  case $1 in
    seq-read-nbdcopy)
      t0=$(now); timeout "$TIMEOUT" nbdcopy "$URI" null: || t0=hang; t1=$(now)
      bps=$([ "$t0" = hang ] || awk -v s="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN { print s / (b - a) }') ;;
    seq-write-nbdcopy)
      t0=$(now); timeout "$TIMEOUT" nbdcopy "$W/new.raw" "$URI" || t0=hang; t1=$(now)
      bps=$([ "$t0" = hang ] || awk -v s="$SIZE" -v a="$t0" -v b="$t1" 'BEGIN { print s / (b - a) }') ;;
    seq-read-fio) bps=$(fio_run --name=r --rw=read --bs=1M --iodepth=16) ;;
    seq-write-fio) bps=$(fio_run --name=w --rw=write --bs=1M --iodepth=16) ;;
    rand-4k-fio) bps=$(fio_run --name=r4 --rw=randwrite --bs=4k --iodepth=32 --io_size=$((SIZE / 4)) --randseed=7) ;;
    mixed-fio)
      bps=$(fio_run --bs=64k --iodepth=8 --io_size=$((SIZE / 8)) --randseed=9 \
        --name=data --rw=randwrite \
        --name=zeros --rw=randwrite --zero_buffers \
        --name=discard --rw=randtrim) ;;
  esac
  stop "$2"
  BPS=$bps
  if [ -z "$bps" ]; then # the client failed or hung (timeout): not a sample
    HANGS[$1,$2]=$((${HANGS[$1,$2]:-0} + 1))
    KEPT=
  fi
}
written() { # the non-zero data each workload writes
  case $1 in
    seq-read-*) echo 0 ;;
    seq-write-nbdcopy) echo "$NEW_NONZERO" ;;
    seq-write-fio) echo "$SIZE" ;;
    rand-4k-fio) echo $((SIZE / 4)) ;;
    mixed-fio) echo $((SIZE / 8)) ;;
  esac
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

rows="seq-read-nbdcopy seq-read-fio seq-write-nbdcopy seq-write-fio rand-4k-fio mixed-fio"
declare -A R
for row in $rows; do
  for ((i = 0; i < RUNS; i++)); do
    for srv in cowfork nbdkit; do # alternate, so drift hits both
      work "$row" "$srv"
      [ -n "$BPS" ] && R[$row,$srv]+="$BPS $KEPT"$'\n'
    done
  done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "machine: $cpu, $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -r)"
echo "peer: $(nbdkit --version | head -1) --filter=cow file; clients: $(nbdcopy --version | head -1), $(fio --version)"
echo "template: $SIZE_MIB MiB raw, half its 4 KiB blocks zero; overlays in $CACHE_DIR; median of $RUNS runs"
printf '%-18s %11s %11s %7s %14s %14s %14s %6s\n' workload "cowfork MB/s" "nbdkit MB/s" ratio \
  "cowfork kept" "nbdkit kept" "non-zero data" goal
fails=0
for row in $rows; do
  c=$(awk '{ print $1 }' <<<"${R[$row,cowfork]:-}" | grep . | median)
  n=$(awk '{ print $1 }' <<<"${R[$row,nbdkit]:-}" | grep . | median)
  ck=$(awk '{ print $2 }' <<<"${R[$row,cowfork]:-}" | grep . | median)
  nk=$(awk '{ print $2 }' <<<"${R[$row,nbdkit]:-}" | grep . | median)
  wr=$(written "$row")
  ratio=$(awk -v a="$c" -v b="$n" 'BEGIN { printf "%.2f", a / b }')
  ok=$(awk -v r="$ratio" -v k="$ck" -v w="$wr" 'BEGIN { print (r >= 1.0 && k <= w * 1.01) ? "ok" : "MISS" }')
  [ "$ok" = ok ] || fails=$((fails + 1))
  printf '%-18s %11.0f %11.0f %6sx %14s %14s %14s %6s\n' "$row" "$(awk -v x="$c" 'BEGIN { print x / 1e6 }')" \
    "$(awk -v x="$n" 'BEGIN { print x / 1e6 }')" "$ratio" "$ck" "$nk" "$wr" "$ok"
done
for k in "${!HANGS[@]}"; do echo "note: ${k/,/ on } failed or hung (>${TIMEOUT}s) in ${HANGS[$k]} of $RUNS runs (not counted)"; done
echo "$fails rows missed the goal"
