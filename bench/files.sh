#!/usr/bin/env bash
# Files in a sandbox against the same work done natively, in the same run,
# interleaved (each round: native, then the sandbox; N rounds, default 5),
# medians and the ratio sandbox/native of the times (> 1: the sandbox is
# slower). Issue 15, item 6. Times are taken inside bench/guest/files.c on
# both sides (no VM or `cowfork` start counted). Natively the files are
# under a directory of /var/tmp (this machine's disk and page cache; a tmpfs
# in scripts/kvm-vm.sh's VM); in the
# sandbox under /root: the upper layer, in guest memory, or on the sandbox's
# disk with --disk.
#   - untar, then re-tar, CPython's Lib/ (/usr/lib/python3.X less test/,
#     site-packages, dist-packages and __pycache__: the file count is
#     printed), GNU tar started by fork+exec (goal: <= 3x native);
#   - create+write(100 B)+fsync+close of SMALL files (default 10000), then
#     their unlink (goal: <= 3x native);
#   - sequential write (1 MiB writes, then fsync) and read back of a MIB MiB
#     file (default 1024) with `--disk DISK` (default 2G) and --mem 256M
#     (goal: >= 0.5x native's throughput, i.e. a time ratio <= 2);
#   - `cowfork fork -n C` (default 10) of a template that wrote FORK_MIB MiB
#     (default 100) to /root against one that wrote nothing: the fork's own
#     total_ms (children made, run to their end, outputs collected), memory
#     upper layer, and the same with `--disk` where a sandbox with a disk
#     can be saved (else the row says why not) (goal: ratio ~1, fork time
#     independent of what the parent wrote).
# Under scripts/kvm-vm.sh (COWFORK_EMULATED=1: QEMU TCG + nested KVM) the
# counts are smaller (SMALL 1000, MIB 128, DISK 512M, N 3) and the ratios
# are not the PVM ratios: the output says so.
# Usage: bench/files.sh [--json] [N]   (SMALL, MIB, DISK, FORK_MIB, C override)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
COWFORK=${COWFORK:-$PWD/$BUILD/cowfork}
PY=/usr/bin/python3
emulated=${COWFORK_EMULATED:-0}
json=0 N=5
[ "$emulated" = 1 ] && N=3
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=1; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) N=$1; shift ;;
    *) echo "usage: bench/files.sh [--json] [N]" >&2; exit 2 ;;
  esac
done
[ -c /dev/kvm ] || { echo "SKIP: no /dev/kvm (scripts/kvm-vm.sh -- bench/files.sh)"; exit 0; }
[ -x "$PY" ] || { echo "SKIP: $PY missing"; exit 0; }
command -v tar >/dev/null || { echo "SKIP: tar missing"; exit 0; }
if [ "$emulated" = 1 ]; then
  SMALL=${SMALL:-1000} MIB=${MIB:-128} DISK=${DISK:-512M}
else
  SMALL=${SMALL:-10000} MIB=${MIB:-1024} DISK=${DISK:-2G}
fi
FORK_MIB=${FORK_MIB:-100} C=${C:-10}
tmp=$(mktemp -d /var/tmp/cowfork-files.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'echo "bench/files.sh: failed at line $LINENO" >&2' ERR
export COWFORK_STORE=$tmp/store
F=$tmp/files
gcc -static -O2 -o "$F" bench/guest/files.c
lib=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
tar cf "$tmp/lib.tar" -C "$(dirname "$lib")" --exclude="$(basename "$lib")/test" --exclude=__pycache__ \
  --exclude=site-packages --exclude=dist-packages "$(basename "$lib")"
nfiles=$(tar tf "$tmp/lib.tar" | grep -vc '/$')
top=$(basename "$lib")

# one SIDE ROW SCRIPT: SCRIPT (sh, with $D its directory) natively or in a
# sandbox; its output lines, each "ROW SIDE VALUE..."; a failure ends the run.
one() {
  local side=$1 row=$2 script=$3 out opts=(--mem 1G)
  if [ "$side" = native ]; then
    rm -rf "$tmp/nat"; mkdir "$tmp/nat"
    out=$(D=$tmp/nat F=$F sh -c "$script" 2>"$tmp/err") ||
      { echo "bench/files.sh: $row natively failed: $(cat "$tmp/err")" >&2; exit 1; }
    rm -rf "$tmp/nat"
  else
    [ "$row" = stream ] && opts=(--mem 256M --disk "$DISK")
    out=$("$COWFORK" run --root / "${opts[@]}" --timeout 1800 -- /bin/sh -c "mkdir -p /root/w && D=/root/w F=$F && $script" \
      2>"$tmp/err" </dev/null) || { echo "bench/files.sh: $row in a sandbox failed: $(cat "$tmp/err")" >&2; exit 1; }
  fi
  echo "$row $side" $out
}
TAR='$F run tar xf '"$tmp/lib.tar"' -C $D && $F run tar cf $D/out.tar -C $D '"$top"
SMALLS='mkdir $D/s && $F small $D/s '"$SMALL"
STREAM='$F stream $D/big '"$MIB"

# fork_ms TEMPLATE: total_ms of `cowfork fork -n C`, every child checked.
echo go > "$tmp/in"
fork_ms() {
  "$COWFORK" fork "$1" -n "$C" --input "$tmp/in" --json > "$tmp/j"
  local good
  good=$(grep -c '"status":0.*"stdout":"ok\\n"' "$tmp/j" || true)
  [ "$good" = "$C" ] || { echo "bench/files.sh: fork $1: $good of $C children answered: $(head -c 300 "$tmp/j")" >&2; exit 1; }
  sed -n 's/.*"total_ms":\([0-9.]*\).*/\1/p' "$tmp/j"
}
"$COWFORK" template create w0 --root / --mem 512M -- "$F" hold /root/h 0 2>/dev/null
"$COWFORK" template create w1 --root / --mem 512M -- "$F" hold /root/h "$FORK_MIB" 2>/dev/null
disk_why=
if ! "$COWFORK" template create d0 --root / --mem 512M --disk "$DISK" -- "$F" hold /root/h 0 2>"$tmp/err" ||
   ! "$COWFORK" template create d1 --root / --mem 512M --disk "$DISK" -- "$F" hold /root/h "$FORK_MIB" 2>"$tmp/err"; then
  disk_why=$(head -n 1 "$tmp/err")
fi

for i in $(seq 1 "$N"); do
  for side in native sandbox; do one $side tar "$TAR"; done
  for side in native sandbox; do one $side small "$SMALLS"; done
  for side in native sandbox; do one $side stream "$STREAM"; done
  echo "fork sandbox $(fork_ms w0) $(fork_ms w1)"
  [ -n "$disk_why" ] || echo "forkdisk sandbox $(fork_ms d0) $(fork_ms d1)"
done > "$tmp/results"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
$PY - "$tmp/results" "$json" "$N" "$emulated" "$cpu" "$(nproc)" "$nfiles" "$SMALL" "$MIB" "$DISK" "$FORK_MIB" "$C" "$disk_why" <<'EOF'
import json, statistics, sys
path, js, n, emu, cpu, ncpu, nfiles, small, mib, disk, fmib, c, disk_why = sys.argv[1:]
emu = emu == "1"
v = {}
for line in open(path):
    f = line.split()
    row, side, xs = f[0], f[1], [float(x) for x in f[2:]]
    for i, x in enumerate(xs):
        v.setdefault((row, i), {}).setdefault(side, []).append(x)
med = lambda k, s: statistics.median(v[k][s])
rows = []
def pair(key, name, goal):
    a, b = med(key, "native"), med(key, "sandbox")
    rows.append({"row": "%s%d" % key, "name": name, "unit": "ms", "native": a, "sandbox": b,
                 "ratio": b / a, "goal_ratio": goal})
pair(("tar", 0), "untar Lib/ (%s files)" % nfiles, 3)
pair(("tar", 1), "re-tar Lib/", 3)
pair(("small", 0), "create+write+fsync %s small files" % small, 3)
pair(("small", 1), "unlink %s small files" % small, 3)
pair(("stream", 0), "write+fsync %s MiB, --disk %s" % (mib, disk), 2)
pair(("stream", 1), "read back %s MiB, --disk %s" % (mib, disk), 2)
forks = []
for key, name in (("fork", "memory upper layer"), ("forkdisk", "--disk %s" % disk)):
    if (key, 0) not in v:
        forks.append({"row": key, "name": name, "skipped": disk_why})
        continue
    a, b = med((key, 0), "sandbox"), med((key, 1), "sandbox")
    forks.append({"row": key, "name": name, "wrote0_ms": a, "wrote_ms": b, "ratio": b / a})
if js == "1":
    print(json.dumps({"cpu": cpu, "cores": int(ncpu), "emulated": emu, "runs": int(n), "rows": rows,
                      "fork_children": int(c), "fork_mib": int(fmib), "forks": forks}))
    sys.exit(0)
print("cpu: %s, %s cores; median of %s interleaved runs each%s" % (cpu, ncpu, n,
      "; EMULATED (scripts/kvm-vm.sh, QEMU TCG + nested KVM): these ratios are not the PVM ratios" if emu else ""))
print("%-42s %12s %12s %15s" % ("", "native", "sandbox", "sandbox/native"))
for r in rows:
    ok = r["ratio"] <= r["goal_ratio"]
    print("%-42s %9.1f ms %9.1f ms %14.2fx  goal <= %gx: %s%s" % (r["name"], r["native"], r["sandbox"], r["ratio"],
          r["goal_ratio"], "PASS" if ok else "MISS", " (emulated)" if emu else ""))
print("fork -n %s of a template that wrote %s MiB to /root vs one that wrote nothing (total_ms):" % (c, fmib))
for f in forks:
    if "skipped" in f:
        print("  %-28s not measured: %s" % (f["name"], f["skipped"]))
    else:
        print("  %-28s %9.1f ms vs %9.1f ms: %.2fx (goal ~1: independent of what was written)" % (
              f["name"], f["wrote_ms"], f["wrote0_ms"], f["ratio"]))
EOF
