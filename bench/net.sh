#!/usr/bin/env bash
# Sockets on a sandbox's own loopback (issue 16 item 7) against the same
# programs run natively, in the same run, interleaved (each row: a native
# run, then `cowfork run --root /`; N rounds, default 5), medians and the
# ratio sandbox/native:
#   - TCP round trip: 1 byte ping-pong between two processes over
#     127.0.0.1, us per round trip (bench/guest/net.c rtt; goal <= 3x);
#   - TCP throughput: 64 KiB writes, MiB/s (tput; goal >= 0.5x native);
#   - connect + accept + close of both ends, us each (conn);
#   - http.server in a thread fetched by urllib in the same sandbox,
#     requests per second (bench/guest/httprps.py);
# then the fork time of a template holding a listener against one without
# (bench/guest/net.c ready 1 / ready 0; `cowfork fork -n C --jobs 1`, the median
# spawn_us of the children: fork to the child's first instruction, and the
# fork's total_ms): what carrying a listener costs each child.
# Under scripts/kvm-vm.sh (COWFORK_EMULATED=1: QEMU TCG + nested KVM) both
# sides run emulated but the sandbox's VM exits cost far more: the ratios
# are not the PVM ratios, and the output says so.
# PREV_COWFORK=PATH adds a third side (another cowfork build, e.g. an older
# commit's), interleaved, and the ratio this/previous.
# ROWS="rtt tput conn http fork" (default: all) picks rows.
# Usage: bench/net.sh [--json] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=${COWFORK:-$PWD/$BUILD/cowfork}
PY=/usr/bin/python3
json=0 N=5
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) N=$1; shift ;;
    *) echo "usage: bench/net.sh [--json] [N]" >&2; exit 2 ;;
  esac
done
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm (scripts/kvm-vm.sh -- bench/net.sh)"; exit 0; }
[ -x "$PY" ] || { echo "SKIP: $PY missing"; exit 0; }
emulated=${COWFORK_EMULATED:-0}
if [ "$emulated" = 1 ]; then
  RT=${RT:-2000} MB=${MB:-64} CN=${CN:-300} HK=${HK:-100} C=${C:-20}
else
  RT=${RT:-20000} MB=${MB:-512} CN=${CN:-3000} HK=${HK:-1000} C=${C:-100}
fi
ROWS=${ROWS:-rtt tput conn http fork}
tmp=$(mktemp -d /var/tmp/cowfork-net.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export COWFORK_STORE=$tmp/store
gcc -static -O2 -o "$tmp/net" bench/guest/net.c

# one SIDE ROW CMD...: one run natively or in a sandbox, "ROW SIDE VALUE".
one() {
  local side=$1 row=$2 out
  shift 2
  if [ "$side" = native ]; then
    out=$("$@" 2>"$tmp/err" </dev/null) || { echo "bench/net.sh: $row natively failed: $(cat "$tmp/err")" >&2; exit 1; }
  else
    local c=$COWFORK
    [ "$side" = previous ] && c=$PREV_COWFORK
    out=$("$c" run --root / --mem 1G -- "$@" 2>"$tmp/err" </dev/null) ||
      { echo "bench/net.sh: $row in a sandbox ($side) failed: $(cat "$tmp/err")" >&2; exit 1; }
  fi
  echo "$row $side $out"
}
sides="native sandbox"
[ -n "${PREV_COWFORK:-}" ] && sides="native sandbox previous"

# fork rows: templates with and without a listener (this build's only: an
# older build cannot save a listener)
"$COWFORK" template create nl0 --root / --mem 64M -- "$tmp/net" ready 0 >/dev/null 2>"$tmp/err" ||
  { echo "bench/net.sh: template create: $(cat "$tmp/err")" >&2; exit 1; }
"$COWFORK" template create nl1 --root / --mem 64M -- "$tmp/net" ready 1 >/dev/null 2>"$tmp/err" ||
  { echo "bench/net.sh: template create with a listener: $(cat "$tmp/err")" >&2; exit 1; }
echo go > "$tmp/in"
fork_row() { # TEMPLATE ROW: "ROW-spawn fork MEDIAN_SPAWN_US", "ROW-total fork TOTAL_MS"
  "$COWFORK" fork "$1" -n "$C" --jobs 1 --input "$tmp/in" --json > "$tmp/j" 2>"$tmp/err" ||
    { echo "bench/net.sh: fork $1: $(tail -n 3 "$tmp/err")" >&2; exit 1; }
  $PY - "$tmp/j" "$2" "$C" <<'PY'
import json, statistics, sys
kids = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"child"')]
summ = [json.loads(l) for l in open(sys.argv[1]) if '"total_ms"' in l][-1]
good = [k for k in kids if k["ok"] and k["status"] == 0 and k["stdout"] == "ok\n"]
if len(good) != int(sys.argv[3]):
    sys.exit("bench/net.sh: %d of %s children answered" % (len(good), sys.argv[3]))
print("%s-spawn fork %.1f" % (sys.argv[2], statistics.median(k["spawn_us"] for k in kids)))
print("%s-total fork %.2f" % (sys.argv[2], summ["total_ms"]))
PY
}

has() { case " $ROWS " in *" $1 "*) return 0 ;; esac; return 1; }
for i in $(seq 1 "$N"); do
  if has rtt; then for side in $sides; do one $side rtt "$tmp/net" rtt "$RT"; done; fi
  if has tput; then for side in $sides; do one $side tput "$tmp/net" tput "$MB"; done; fi
  if has conn; then for side in $sides; do one $side conn "$tmp/net" conn "$CN"; done; fi
  if has http; then for side in $sides; do one $side http "$PY" "$PWD/bench/guest/httprps.py" "$HK"; done; fi
  if has fork; then
    fork_row nl0 f0
    fork_row nl1 f1
  fi
done > "$tmp/results"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
$PY - "$tmp/results" "$json" "$N" "$emulated" "$cpu" "$(nproc)" "$RT" "$MB" "$CN" "$HK" "$C" <<'EOF'
import json, statistics, sys
path, js, n, emu, cpu, ncpu, rt, mb, cn, hk, c = sys.argv[1:]
emu = emu == "1"
v = {}
for line in open(path):
    row, side, x = line.split()
    v.setdefault(row, {}).setdefault(side, []).append(float(x))
rows = [  # key, name, unit, higher is better, goal
    ("rtt", "TCP round trip, 1 byte (%s)" % rt, "us", False, 3.0),
    ("tput", "TCP throughput, 64 KiB writes (%s MiB)" % mb, "MiB/s", True, 0.5),
    ("conn", "connect+accept+close (%s)" % cn, "us", False, None),
    ("http", "http.server + urllib, same sandbox (%s)" % hk, "req/s", True, None),
]
out = []
for key, name, unit, up, goal in rows:
    if key not in v:
        continue
    a, b = statistics.median(v[key]["native"]), statistics.median(v[key]["sandbox"])
    r = {"row": key, "name": name, "unit": unit, "native": a, "sandbox": b, "ratio": b / a, "goal": goal,
         "higher_is_better": up, "native_runs": v[key]["native"], "sandbox_runs": v[key]["sandbox"]}
    if "previous" in v[key]:
        p = statistics.median(v[key]["previous"])
        r.update({"previous": p, "previous_ratio": p / a, "this_vs_previous": b / p, "previous_runs": v[key]["previous"]})
    out.append(r)
fk = {k: statistics.median(v[k]["fork"]) for k in ("f0-spawn", "f1-spawn", "f0-total", "f1-total") if k in v}
if js == "1":
    print(json.dumps({"cpu": cpu, "cores": int(ncpu), "emulated": emu, "runs": int(n), "rows": out,
                      "fork": {"children": int(c), "spawn_us_no_listener": fk.get("f0-spawn"),
                               "spawn_us_listener": fk.get("f1-spawn"), "total_ms_no_listener": fk.get("f0-total"),
                               "total_ms_listener": fk.get("f1-total")}}))
    sys.exit(0)
prev = bool(out) and "previous" in out[0]
print("cpu: %s, %s cores; median of %s interleaved runs each%s" % (cpu, ncpu, n,
      "; EMULATED (scripts/kvm-vm.sh, QEMU TCG + nested KVM): these ratios are not the PVM ratios" if emu else ""))
print("%-44s %14s %14s %15s%s" % ("", "native", "sandbox", "sandbox/native",
      "  %14s %14s" % ("previous", "this/previous") if prev else ""))
for r in out:
    goal = ""
    if r["goal"]:
        ok = r["ratio"] >= r["goal"] if r["higher_is_better"] else r["ratio"] <= r["goal"]
        goal = "  goal %s %gx: %s%s" % (">=" if r["higher_is_better"] else "<=", r["goal"], "PASS" if ok else "MISS",
                                       " (emulated)" if emu else "")
    p = "  %8.1f %-5s %13.3f" % (r["previous"], r["unit"], r["this_vs_previous"]) if prev else ""
    print("%-44s %8.1f %-5s %8.1f %-5s %14.2fx%s%s" % (r["name"], r["native"], r["unit"], r["sandbox"], r["unit"],
                                                    r["ratio"], p, goal))
if not fk:
    sys.exit(0)
print("fork -n %s of a template, median spawn_us per child (fork to first instruction) / fork total_ms:" % c)
print("  no listener %8.1f us %9.2f ms" % (fk["f0-spawn"], fk["f0-total"]))
print("  1 listener  %8.1f us %9.2f ms   difference %+.1f us per child%s" % (fk["f1-spawn"], fk["f1-total"],
      fk["f1-spawn"] - fk["f0-spawn"], " (emulated)" if emu else ""))
EOF
