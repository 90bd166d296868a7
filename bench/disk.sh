#!/usr/bin/env bash
# Copy-on-write disks over NBD: `cowfork disk serve` against the two strongest
# peers here, `nbdkit --filter=cow file TEMPLATE` and `qemu-nbd` on a qcow2
# overlay (`qemu-img create -f qcow2 -b TEMPLATE -F raw`), on the same
# template (a SIZE_MIB raw disk, about half its 4 KiB blocks zero), through
# the same clients, in one run:
#   seq-read-nbdcopy   nbdcopy URI null:
#   seq-write-nbdcopy  nbdcopy NEW.raw URI
#   {seq,rand}-{read,write}-{1m,4k}  fio, 1 MiB at iodepth 16 / 4 KiB at
#                      iodepth 32; the whole disk at 1 MiB, a quarter of it
#                      at 4 KiB
#   mixed              fio: random 64 KiB data writes, all-zero writes and
#                      discards at once (three jobs), each an eighth of the disk
# Each row is the median of RUNS (default 5) runs, each against a fresh
# server; in each round the three servers run one after the other (the
# order rotates), so drift and other load hit all of them. Every server keeps
# its overlay in CACHE_DIR (default /dev/shm). Throughput is bytes moved /
# time (fio's own runtime, or nbdcopy's wall time); ratio = cowfork / peer
# (> 1: cowfork faster). "kept" is what a child costs after the workload:
# cowfork's saved child image's own bytes (SIGTERM saves it) vs the
# allocated bytes of nbdkit's cow overlay file (found through /proc while
# nbdkit runs) and of qemu's qcow2 overlay, next to the non-zero data the
# workload wrote. Goal: every ratio >= 1.0, cowfork kept <= non-zero data + 1 %.
# ROWS="row ..." runs only those rows.
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
for p in nbdkit qemu-nbd qemu-img nbdcopy fio python3; do
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
QCOW=$K/overlay.qcow2
start() { # start cowfork|nbdkit|qemu
  rm -f "$SOCK"
  case $1 in
    cowfork)
      "$COWFORK" disk serve --export "d=tmpl:child" --unix "$SOCK" --cache-dir "$CACHE_DIR" --quiet 2>>"$W/serve.log" & ;;
    nbdkit)
      TMPDIR=$K nbdkit -U "$SOCK" -f --filter=cow file file="$W/tmpl.raw" 2>>"$W/serve.log" & ;;
    qemu)
      rm -f "$QCOW"
      qemu-img create -q -f qcow2 -b "$W/tmpl.raw" -F raw "$QCOW"
      qemu-nbd -k "$SOCK" -t -e 0 -f qcow2 --cache=writeback --discard=unmap "$QCOW" 2>>"$W/serve.log" & ;;
  esac
  SERVER_PID=$!
  wait_sock
}
# stop: set KEPT to the bytes kept (cowfork: the saved child's own bytes;
# nbdkit, qemu: its overlay file's allocated bytes) and stop the server. Not in a
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
    [ "$1" = qemu ] && kept=$(($(stat -c %b "$QCOW") * 512)) # one file, maybe opened twice
    kill -TERM "$SERVER_PID"
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true # a hung nbdkit ignores TERM
    rm -f "$QCOW"
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
    seq-read-1m) bps=$(fio_run --name=r --rw=read --bs=1M --iodepth=16) ;;
    seq-write-1m) bps=$(fio_run --name=w --rw=write --bs=1M --iodepth=16) ;;
    rand-read-1m) bps=$(fio_run --name=r --rw=randread --bs=1M --iodepth=16 --randseed=5) ;;
    rand-write-1m) bps=$(fio_run --name=w --rw=randwrite --bs=1M --iodepth=16 --randseed=5) ;;
    seq-read-4k) bps=$(fio_run --name=r --rw=read --bs=4k --iodepth=32 --io_size=$((SIZE / 4))) ;;
    seq-write-4k) bps=$(fio_run --name=w --rw=write --bs=4k --iodepth=32 --io_size=$((SIZE / 4))) ;;
    rand-read-4k) bps=$(fio_run --name=r --rw=randread --bs=4k --iodepth=32 --io_size=$((SIZE / 4)) --randseed=7) ;;
    rand-write-4k) bps=$(fio_run --name=w --rw=randwrite --bs=4k --iodepth=32 --io_size=$((SIZE / 4)) --randseed=7) ;;
    mixed)
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
    *-read-*) echo 0 ;;
    seq-write-nbdcopy) echo "$NEW_NONZERO" ;;
    seq-write-1m) echo "$SIZE" ;;
    rand-write-1m) echo "$SIZE" ;; # fio's random map visits every block once
    *-write-4k) echo $((SIZE / 4)) ;;
    mixed) echo $((SIZE / 8)) ;;
  esac
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

rows=${ROWS:-"seq-read-nbdcopy seq-write-nbdcopy seq-read-1m seq-write-1m rand-read-1m rand-write-1m seq-read-4k seq-write-4k rand-read-4k rand-write-4k mixed"}
servers=(cowfork nbdkit qemu)
declare -A R
for ((i = 0; i < RUNS; i++)); do
  for row in $rows; do
    for ((k = 0; k < 3; k++)); do # rotate the order, so drift hits every server
      srv=${servers[(i + k) % 3]}
      work "$row" "$srv"
      [ -n "$BPS" ] && R[$row,$srv]+="$BPS $KEPT"$'\n'
    done
  done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "machine: $cpu, $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: $(nbdkit --version | head -1) --filter=cow file; $(qemu-nbd --version | head -1) -f qcow2 --cache=writeback --discard=unmap, overlay: qemu-img create -f qcow2 -b TEMPLATE -F raw"
echo "clients: $(nbdcopy --version | head -1), $(fio --version) (nbd engine)"
echo "template: $SIZE_MIB MiB raw, half its 4 KiB blocks zero; overlays in $CACHE_DIR; median of $RUNS rounds"
col() { # col ROW SERVER FIELD: the median of one column
  awk -v f="$3" '{ print $f }' <<<"${R[$1,$2]:-}" | grep . | median
}
mb() { awk -v x="$1" 'BEGIN { if (x == "") print "-"; else printf "%.0f", x / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
printf '%-18s %9s %9s %9s %8s %8s %12s %12s %12s %12s %5s\n' workload "cowfork" "nbdkit" "qemu-nbd" "/nbdkit" "/qemu" \
  "cowfork kept" "nbdkit kept" "qemu kept" "non-zero" goal
printf '%-18s %9s %9s %9s\n' "" MB/s MB/s MB/s
fails=0
for row in $rows; do
  c=$(col "$row" cowfork 1); n=$(col "$row" nbdkit 1); q=$(col "$row" qemu 1)
  ck=$(col "$row" cowfork 2); nk=$(col "$row" nbdkit 2); qk=$(col "$row" qemu 2)
  wr=$(written "$row")
  rn=$(ratio "$c" "$n"); rq=$(ratio "$c" "$q")
  ok=$(awk -v a="$rn" -v b="$rq" -v k="$ck" -v w="$wr" 'BEGIN { print (a != "-" && b != "-" && a >= 1.0 && b >= 1.0 && k <= w * 1.01) ? "ok" : "MISS" }')
  [ "$ok" = ok ] || fails=$((fails + 1))
  printf '%-18s %9s %9s %9s %7sx %7sx %12s %12s %12s %12s %5s\n' "$row" "$(mb "$c")" "$(mb "$n")" "$(mb "$q")" "$rn" "$rq" \
    "$ck" "$nk" "$qk" "$wr" "$ok"
done
for k in "${!HANGS[@]}"; do echo "note: ${k/,/ on } failed or hung (>${TIMEOUT}s) in ${HANGS[$k]} of $RUNS runs (not counted)"; done
if [ -n "${RAW_OUT:-}" ]; then # every sample, for a closer look
  for key in "${!R[@]}"; do awk -v k="$key" 'NF { print k, $0 }' <<<"${R[$key]}"; done | sort >"$RAW_OUT"
fi
echo "$fails rows missed the goal"
