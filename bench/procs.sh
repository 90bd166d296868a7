#!/usr/bin/env bash
# Processes in a sandbox against the same programs run natively, in the same
# run, interleaved (each round: a native run, then the sandbox; N rounds,
# default 5), medians of the rounds and the ratio sandbox/native of the times
# (> 1: the sandbox is slower). Issue 14, item 8. Every time is taken inside
# the program (bench/guest/procs.c), natively and in the sandbox alike, so
# no VM start or `cowfork` start is counted:
#   - fork+exec+wait of /bin/true, FE times a run, each timed: p50, p99 (us)
#     (goal: <= 2x native);
#   - the same with posix_spawn (glibc's clone(CLONE_VM|CLONE_VFORK));
#   - a 5-stage pipeline, `busybox sh -c 'seq 20000 | cat | sort -n | uniq |
#     wc -l'` (busybox runs its applets in forked children), started by
#     fork+exec from the program, PL times a run: p50 (ms); its output is
#     checked against the native one first;
#   - `busybox sh -c 'for i in $(seq 200); do /bin/true; done'`, the same
#     way, LP times a run: p50 (ms);
#   - fork of a parent that has written MIB MiB (default 1024, emulated too)
#     with 1 % of its pages rewritten since the template: in the sandbox a
#     template (`cowfork template create --mem MEM`, default 2G) of
#     `procs bigfork` that wrote MIB MiB and waits for stdin, forked
#     (`cowfork fork`): the child rewrites every 100th page, fork()s (its
#     child checks two pages and exits), waits, R rounds (default 5);
#     natively the same program given its line at once. Rows: the first
#     round's fork() (the 1 % since the template), the median fork() and
#     fork-to-reaped of the R rounds (each after another 1 % rewrite)
#     (goal: the first-fork row faster than native: ratio < 1). Natively
#     with the system's THP setting (printed; under "always" a 1 GiB
#     parent's fork copies 2 MiB entries) and again with MADV_NOHUGEPAGE
#     (4 KiB pages: fork copies 512 page-table entries a 2 MiB).
# A side that fails (fork refused: ENOMEM before issue 14's process core)
# is reported as FAILED with the program's error, and the row has no ratio;
# the other rows go on.
# Under scripts/kvm-vm.sh (COWFORK_EMULATED=1: QEMU TCG + nested KVM) both
# sides are emulated, the counts are smaller, and the ratios are not the
# PVM ratios: the output says so.
# PREV_COWFORK=PATH adds a third side, interleaved: the same sandbox rows
# with another cowfork binary (a build of an older commit), and the ratio
# this/previous.
# Usage: bench/procs.sh [--json] [--native-only] [N]
#   (--native-only: the native side alone, no /dev/kvm needed; FE, PL, LP,
#   MIB, MEM, R override the counts and sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=${COWFORK:-$PWD/$BUILD/cowfork}
json=0 N=5 native_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=1; shift ;;
    --native-only) native_only=1; shift ;;
    -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) N=$1; shift ;;
    *) echo "usage: bench/procs.sh [--json] [--native-only] [N]" >&2; exit 2 ;;
  esac
done
[ -c /dev/kvm ] || [ $native_only = 1 ] || { echo "SKIP: no /dev/kvm (scripts/kvm-vm.sh -- bench/procs.sh)"; exit 0; }
[ -x /bin/busybox ] || { echo "SKIP: /bin/busybox missing"; exit 0; }
[ -x /bin/true ] || { echo "SKIP: /bin/true missing"; exit 0; }
emulated=${COWFORK_EMULATED:-0}
if [ "$emulated" = 1 ]; then
  FE=${FE:-50} PL=${PL:-2} LP=${LP:-1} MIB=${MIB:-1024} MEM=${MEM:-2G} R=${R:-3}
else
  FE=${FE:-300} PL=${PL:-10} LP=${LP:-3} MIB=${MIB:-1024} MEM=${MEM:-2G} R=${R:-5}
fi
PIPE='seq 20000 | cat | sort -n | uniq | wc -l'
LOOP='for i in $(seq 200); do /bin/true; done'
tmp=$(mktemp -d /var/tmp/cowfork-procs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gcc -static -O2 -o "$tmp/procs" bench/guest/procs.c
echo go > "$tmp/go"

sides="native sandbox"
[ -n "${PREV_COWFORK:-}" ] && sides="native sandbox previous"
[ $native_only = 1 ] && sides=native
bin() { [ "$1" = previous ] && echo "$PREV_COWFORK" || echo "$COWFORK"; }
store() { echo "$tmp/store-$1"; }

# failed ROW SIDE: this side of ROW failed once already (not run again).
failed() { grep -q "^$1 $2 FAILED" "$tmp/results" 2>/dev/null; }
# record ROW SIDE STATUS OUTPUT: "ROW SIDE VALUES..." or "ROW SIDE FAILED why".
record() {
  local row=$1 side=$2 rc=$3 out=$4
  if [ "$rc" = 0 ] && [ -n "$out" ]; then
    echo "$row $side $out" >> "$tmp/results"
  else
    local why
    why=$(tr '\n' ' ' < "$tmp/err" | sed 's/  */ /g' | cut -c1-200)
    echo "$row $side FAILED (exit $rc) ${why:-no output}" >> "$tmp/results"
  fi
}
# one SIDE ROW ARGS...: bench/guest/procs.c ARGS natively or in a sandbox.
one() {
  local side=$1 row=$2 out rc=0
  shift 2
  failed "$row" "$side" && return 0
  if [ "$side" = native ]; then
    out=$("$tmp/procs" "$@" 2>"$tmp/err" </dev/null) || rc=$?
  else
    out=$(COWFORK_STORE=$(store "$side") "$(bin "$side")" run --root / --mem 512M -- \
      "$tmp/procs" "$@" 2>"$tmp/err" </dev/null) || rc=$?
  fi
  record "$row" "$side" "$rc" "$out"
}
# big SIDE: one fork of the bigfork template (natively: the program itself).
big() {
  local side=$1 out rc=0
  failed big "$side" && return 0
  if [ "$side" = native ]; then
    out=$("$tmp/procs" bigfork "$MIB" 1 "$R" 2>"$tmp/err" <"$tmp/go") || rc=$?
    record big "$side" "$rc" "$out"
    # and with 4 KiB pages (MADV_NOHUGEPAGE), whatever the THP setting
    failed big4k native && return 0
    rc=0
    out=$("$tmp/procs" bigfork "$MIB" 1 "$R" nothp 2>"$tmp/err" <"$tmp/go") || rc=$?
    record big4k native "$rc" "$out"
    return 0
  elif [ ! -f "$tmp/big-$side" ]; then
    cp "$tmp/big-$side.err" "$tmp/err"; rc=1; out=
  else
    out=$(COWFORK_STORE=$(store "$side") "$(bin "$side")" fork big --input "$tmp/go" 2>"$tmp/err") || rc=$?
  fi
  record big "$side" "$rc" "$out"
}

: > "$tmp/results"
# The pipeline's output, each side against the native one.
want=$(/bin/busybox sh -c "$PIPE")
for side in $sides; do
  [ "$side" = native ] && continue
  got=$(COWFORK_STORE=$(store "$side") "$(bin "$side")" run --root / --mem 512M -- \
    /bin/busybox sh -c "$PIPE" 2>"$tmp/err" </dev/null) || true
  if [ "$got" != "$want" ]; then
    echo "pipe $side FAILED output '$(echo $got | cut -c1-40)', native '$want': $(tr '\n' ' ' < "$tmp/err" | cut -c1-160)" >> "$tmp/results"
  fi
done
# The bigfork templates (their creation timed: writing MIB MiB + storing it).
for side in $sides; do
  [ "$side" = native ] && continue
  t0=$(date +%s%N)
  if COWFORK_STORE=$(store "$side") "$(bin "$side")" template create big --root / --mem "$MEM" -- \
    "$tmp/procs" bigfork "$MIB" 1 "$R" </dev/null >/dev/null 2>"$tmp/big-$side.err"; then
    touch "$tmp/big-$side"
    echo "create $side $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$tmp/results"
  fi
done

for i in $(seq 1 "$N"); do
  for side in $sides; do one $side forkexec forkexec "$FE" /bin/true; done
  for side in $sides; do one $side spawn spawn "$FE" /bin/true; done
  for side in $sides; do one $side pipe forkexec "$PL" /bin/busybox sh -c "$PIPE"; done
  for side in $sides; do one $side loop forkexec "$LP" /bin/busybox sh -c "$LOOP"; done
  for side in $sides; do big $side; done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)
python3 - "$tmp/results" "$json" "$N" "$emulated" "$cpu" "$(nproc)" "$FE" "$PL" "$LP" "$MIB" "$MEM" "$R" "$thp" <<'EOF'
import json, statistics, sys
path, js, n, emu, cpu, ncpu, fe, pl, lp, mib, mem, rounds, thp = sys.argv[1:]
emu = emu == "1"
v, fail, create = {}, {}, {}
for line in open(path):
    row, side, rest = (line.rstrip("\n").split(" ", 2) + [""])[:3]
    if rest.startswith("FAILED"):
        fail.setdefault(row, {})[side] = rest
    elif row == "create":
        create[side] = float(rest)
    else:
        v.setdefault(row, {}).setdefault(side, []).append([float(x) for x in rest.split()])
# (key, source row, column in its output, name, unit, scale, goal)
rows = [
    ("fe50", "forkexec", 0, "fork+exec+wait /bin/true, p50 (%s a run)" % fe, "us", 1, 2.0),
    ("fe99", "forkexec", 1, "fork+exec+wait /bin/true, p99", "us", 1, None),
    ("sp50", "spawn", 0, "posix_spawn+wait /bin/true, p50 (%s a run)" % fe, "us", 1, None),
    ("sp99", "spawn", 1, "posix_spawn+wait /bin/true, p99", "us", 1, None),
    ("pipe", "pipe", 0, "5-stage pipeline, busybox sh (p50 of %s)" % pl, "ms", 1e-3, None),
    ("loop", "loop", 0, "sh: for $(seq 200) /bin/true (p50 of %s)" % lp, "ms", 1e-3, None),
    ("big1", "big", 0, "fork() of a %s MiB parent, 1 %% rewritten, first" % mib, "us", 1, 1.0),
    ("bigf", "big", 1, "  the same, median of %s rounds" % rounds, "us", 1, None),
    ("bigw", "big", 2, "  fork to child reaped, median of %s" % rounds, "us", 1, None),
    ("big4k1", "big", 0, "  first fork(), native with MADV_NOHUGEPAGE", "us", 1, None),
    ("big4kf", "big", 1, "  median fork(), native with MADV_NOHUGEPAGE", "us", 1, None),
]
have = set(s for d in list(v.values()) + list(fail.values()) for s in d)
sides = [s for s in ("native", "sandbox", "previous") if s in have or s == "native"]
out = []
for key, src, col, name, unit, scale, goal in rows:
    r = {"row": key, "name": name, "unit": unit, "goal_ratio": goal}
    for s in sides:
        if key.startswith("big4k") and s == "native":
            src = "big4k"  # the native side of these rows; the sandbox's is "big"
        elif key.startswith("big4k"):
            src = "big"
        if s in fail.get(src, {}):
            r[s] = None
            r[s + "_error"] = fail[src][s]
        elif s in v.get(src, {}):
            runs = [x[col] * scale for x in v[src][s]]
            r[s], r[s + "_runs"] = statistics.median(runs), runs
        else:
            r[s] = None
    if r["native"] and r.get("sandbox"):
        r["ratio"] = r["sandbox"] / r["native"]
    if r["native"] and r.get("previous"):
        r["previous_ratio"] = r["previous"] / r["native"]
        if r.get("sandbox"):
            r["this_vs_previous"] = r["sandbox"] / r["previous"]
    out.append(r)
info = {"cpu": cpu, "cores": int(ncpu), "emulated": emu, "rounds": int(n), "thp": thp,
        "bigfork_mib": int(mib), "bigfork_mem": mem, "template_create_ms": create}
if js == "1":
    print(json.dumps(dict(info, rows=out)))
    sys.exit(0)
print("cpu: %s, %s cores; median of %s interleaved rounds%s" % (cpu, ncpu, n,
      "; EMULATED (scripts/kvm-vm.sh, QEMU TCG + nested KVM): these ratios are not the PVM ratios" if emu else ""))
print("native THP: %s; bigfork: %s MiB written, sandbox --mem %s%s" % (thp, mib, mem,
      "" if mib == "1024" else " (scaled down from 1 GiB)"))
prev = "previous" in sides
def cell(r, s):
    if r.get(s) is not None:
        return "%10.1f %s" % (r[s], r["unit"])
    return "%13s" % ("FAILED" if r.get(s + "_error") else "not run")
print("%-52s %13s %13s %9s%s" % ("", "native", "sandbox", "sbx/nat",
      " %13s %9s %9s" % ("previous", "prev/nat", "this/prev") if prev else ""))
for r in out:
    ratio = "%8.2fx" % r["ratio"] if "ratio" in r else "%9s" % "-"
    p = ""
    if prev:
        p = " %s %9s %9s" % (cell(r, "previous"),
                             "%8.2fx" % r["previous_ratio"] if "previous_ratio" in r else "%9s" % "-",
                             "%9.3f" % r["this_vs_previous"] if "this_vs_previous" in r else "%9s" % "-")
    goal = ""
    if r["goal_ratio"] is not None:
        g = r["goal_ratio"]
        what = "<= 2x" if g == 2.0 else "< 1x (faster than native)"
        res = "n/a" if "ratio" not in r else ("PASS" if (r["ratio"] <= g if g == 2.0 else r["ratio"] < g) else "MISS")
        goal = "  goal %s: %s%s" % (what, res, " (emulated)" if emu and res != "n/a" else "")
    print("%-52s %s %s %s%s%s" % (r["name"], cell(r, "native"), cell(r, "sandbox"), ratio, p, goal))
for s in create:
    print("template create (%s MiB written, stored), %s: %.0f ms" % (mib, s, create[s]))
errs = {}
for src in ("forkexec", "spawn", "pipe", "loop", "big", "big4k"):
    for s, e in sorted(fail.get(src, {}).items()):
        errs.setdefault((s, e), []).append(src)
for (s, e), srcs in errs.items():
    print("%s, %s: %s" % (s, " ".join(srcs), e))
EOF
