#!/usr/bin/env bash
# forkd's workload on this machine: 100 (and 1000) sandboxes each running
# `numpy.zeros(5).tolist()`, from a py-numpy template (shim/py/driver.py,
# numpy preloaded), against its peers in the same run:
#   - 100 x native `python3 -c 'import numpy; print(numpy.zeros(5).tolist())'`,
#     sequential and 2 at a time;
#   - a warm zygote: one Python that imported numpy, then os.fork()s 100
#     children that each run the snippet (all forked, then all reaped);
# and the template's own costs: create time, each child's private memory
# after the request, the share of the template's pages a child shares;
# finally copy-on-write library loading against copying (cowfork run
# --copy-files) for a cold `python3 -c pass` and `import numpy`.
# Medians of R runs (default 5). Usage: bench/python.sh [R]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=${COWFORK:-$PWD/$BUILD/cowfork}
PY=/usr/bin/python3
R=${1:-5}
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm"; exit 0; }
$PY -c 'import numpy' 2>/dev/null || { echo "SKIP: $PY has no numpy (apt-get install python3-numpy)"; exit 0; }
export OPENBLAS_NUM_THREADS=1
W=$(mktemp -d /tmp/cowfork-bench-py.XXXXXX)
trap 'rm -rf "$W"' EXIT
trap 'echo "bench/python.sh: failed at line $LINENO" >&2' ERR
export COWFORK_STORE=$W/store
DRIVER=/usr/lib/cowfork/driver.py # inside every root (lib/root.c)
SNIP='import numpy; print(numpy.zeros(5).tolist())'
echo 'print(numpy.zeros(5).tolist())' > "$W/code.py"
WANT='[0.0, 0.0, 0.0, 0.0, 0.0]'
ms() { date +%s%N; }  # ns; durations below are (ns) / 1000000
med() { $PY -c 'import sys, statistics; v = [float(x) for x in sys.argv[1:]]; print("%.1f" % statistics.median(v))' "$@"; }

# Template creation (a fresh template each time).
create=()
for i in $(seq 1 3); do
  t0=$(ms)
  "$COWFORK" template create py$i --mem 256M -- $PY "$DRIVER" --preload numpy 2> "$W/create.err"
  create+=($(( ($(ms) - t0) / 1000000 )))
done
create_ms=$(med "${create[@]}")
tpages=$(sed -n 's/.*: \([0-9]*\) pages stored.*/\1/p' "$W/create.err")
tmib=$(sed -n 's/.*pages stored (\([0-9.]*\) MiB).*/\1/p' "$W/create.err")

# Fan-out: first request to last result is the fork's own total_ms (children
# created, run to their end, outputs collected; the template opened before).
fan() { # N RUNS [FORK OPTIONS] -> median total_ms; checks every output; keeps the last --json in $W/fan.json
  local n=$1 runs=$2 v=()
  shift 2
  for i in $(seq 1 "$runs"); do
    "$COWFORK" fork py1 -n "$n" --input "$W/code.py" --json "$@" > "$W/fan.json"
    local good
    good=$(grep -c '"status":0.*"stdout":"\[0.0, 0.0, 0.0, 0.0, 0.0\]\\n"' "$W/fan.json" || true)
    [ "$good" = "$n" ] || { echo "fan-out $n: only $good children answered" >&2; exit 1; }
    v+=($(sed -n 's/.*"total_ms":\([0-9.]*\).*/\1/p' "$W/fan.json"))
  done
  med "${v[@]}"
}
fan100=$(fan 100 "$R")
priv=$($PY -c '
import json, statistics, sys
k = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{\"child\"")]
print(int(statistics.median(r["private_kib"] for r in k)))' "$W/fan.json")
# A child in a reused VM (all but each worker's first): spawn (= the reset)
# and run (request to exit), medians over the last 100-child fan-out.
warm=$($PY -c '
import json, statistics, sys
k = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{\"child\"")][4:]
print("%.0f %.0f" % (statistics.median(r["spawn_us"] for r in k), statistics.median(r["run_us"] for r in k)))' "$W/fan.json")
fan1000=$(fan 1000 1)
# The same with a new VM per child (VM reuse is the default).
fan100nr=$(fan 100 "$R" --no-reuse)
fan1000nr=$(fan 1000 1 --no-reuse)

# Native, sequential and 2 at a time.
seqv=() parv=()
for i in $(seq 1 "$R"); do
  t0=$(ms)
  for j in $(seq 1 100); do $PY -c "$SNIP" > "$W/n.out"; done
  seqv+=($(( ($(ms) - t0) / 1000000 )))
  [ "$(cat "$W/n.out")" = "$WANT" ]
  t0=$(ms)
  seq 1 100 | xargs -P 2 -I{} $PY -c "$SNIP" > "$W/p.out"
  parv+=($(( ($(ms) - t0) / 1000000 )))
  [ "$(grep -cxF "$WANT" "$W/p.out")" = 100 ]
done
seq_ms=$(med "${seqv[@]}")
par_ms=$(med "${parv[@]}")

# Warm zygote: numpy imported once, then 100 os.fork() children, each runs
# the snippet and writes to a pipe; first fork to last child reaped.
zyg=$($PY - "$R" <<'PYEOF'
import os, sys, time, statistics
import numpy
res = []
for _ in range(int(sys.argv[1])):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pids = []
    for i in range(100):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, (str(numpy.zeros(5).tolist()) + "\n").encode())
            os._exit(0)
        pids.append(pid)
    for p in pids:
        os.waitpid(p, 0)
    res.append((time.perf_counter() - t0) * 1e3)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    assert out.count(b"[0.0, 0.0, 0.0, 0.0, 0.0]\n") == 100
print("%.1f" % statistics.median(res))
PYEOF
)

# Copy-on-write library loading vs copying, cold sandboxes.
cold() { # ARGS... -> median wall ms of `cowfork run ARGS`
  local v=()
  for i in $(seq 1 "$R"); do
    t0=$(ms)
    "$COWFORK" run --mem 256M "$@" > /dev/null
    v+=($(( ($(ms) - t0) / 1000000 )))
  done
  med "${v[@]}"
}
cow_pass=$(cold -- $PY -c pass)
copy_pass=$(cold --copy-files -- $PY -c pass)
cow_np=$(cold -- $PY -c 'import numpy')
copy_np=$(cold --copy-files -- $PY -c 'import numpy')
pages=$("$COWFORK" run -v -- $PY -c 'import numpy' 2>&1 >/dev/null | sed -n 's/.*file pages: \([0-9]*\) mapped.*/\1/p')

$PY - <<PYEOF
rows = []
def row(name, v, unit, peer="", ratio="", goal=""):
    rows.append((name, v, unit, peer, ratio, goal))
f100, f1000, seq, par, zyg = $fan100, $fan1000, $seq_ms, $par_ms, $zyg
f100nr, f1000nr = $fan100nr, $fan1000nr
priv, tp = $priv, $tpages
shared = 1 - (priv / 4) / tp
print("machine: %s" % open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip())
print("%-58s %12s   %s" % ("", "cowfork", "peers (ratio = peer / cowfork)"))
def line(name, v, peers, goal=""):
    p = "  ".join("%s %.1f ms (%.2fx)" % (n, x, x / v) for n, x in peers)
    print("%-58s %9.1f ms   %s%s" % (name, v, p, ("   " + goal) if goal else ""))
line("100 children numpy.zeros(5).tolist(), request -> last result", f100,
     [("native seq", seq), ("native -P2", par), ("zygote fork", zyg)],
     "%s  (goal <= 100 ms)" % ("PASS" if f100 <= 100 else "MISS"))
line("1000 children, the same", f1000, [("native seq x10", seq * 10), ("native -P2 x10", par * 10), ("zygote x10", zyg * 10)])
line("100 children, --no-reuse (a new VM per child)", f100nr, [("reuse", f100)])
line("1000 children, --no-reuse", f1000nr, [("reuse", f1000)])
print("%-58s %9s us   run %s us (medians; the VM reset is the spawn)" % ("a child in a reused VM: spawn", "$warm".split()[0], "$warm".split()[1]))
print("%-58s %9d KiB  %s" % ("a child's private memory after the request (median)", priv,
      "%s  (goal <= 1024 KiB)" % ("PASS" if priv <= 1024 else "MISS")))
print("%-58s %10.1f %%   of %d template pages (%s MiB)" % ("template pages a child shares", 100 * shared, tp, "$tmib"))
print("%-58s %9.1f ms" % ("template create (python3 driver.py --preload numpy, 256M)", $create_ms))
print("%-58s %9.1f ms   copied %.1f ms (%.2fx)" % ("cold python3 -c pass, libraries mapped copy-on-write", $cow_pass, $copy_pass, $copy_pass / $cow_pass))
print("%-58s %9.1f ms   copied %.1f ms (%.2fx); %d file pages" % ("cold python3 -c 'import numpy', mapped copy-on-write", $cow_np, $copy_np, $copy_np / $cow_np, $pages))
PYEOF
