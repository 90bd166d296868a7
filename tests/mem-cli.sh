#!/usr/bin/env bash
# cowfork bench fanout and cowfork mem serve end to end, on a 64 MiB image:
#  - fanout with both backends: every child sees the right bytes, the JSON
#    has every key, the file backend's children share the mapping and each
#    has in it only the pages it wrote (and, where the kernel has no zero
#    page for reads, the pages it only read of empty extents);
#  - --prefetch records a working set into STORE/wset/NAME on the first run
#    and the next run takes (almost) no faults on it;
#  - `cowfork mem serve` plays page server to an unmodified Firecracker-style
#    client (the uffd unit test's helper writes each Firecracker version's
#    JSON by hand); a refused one (2 MiB pages) dies of SIGBUS instead of
#    hanging and the refusal is on the server's stderr;
#  - bad usage gets exit code 2.
. "$(dirname "$0")/functions.sh"
requires python3
[ -w /dev/userfaultfd ] || [ "$(id -u)" = 0 ] || skip "no access to /dev/userfaultfd"
here=$(dirname "$0")
HELPER="$(dirname "$COWFORK")/tests/uffd"
[ -x "$HELPER" ] || skip "$HELPER is not built"
python3 "$here/gen-raw.py" "$TMP/a.raw" 64
cowfork image import "$TMP/a.raw" base
get() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

for b in file uffd; do
  out=$(cowfork bench fanout --image base --children 20 --backend $b --touch 200 --write 10 --json)
  echo "$out"
  [ "$(get failed <<<"$out")" = 0 ] || fail "$b: children failed"
  for k in spawn_p50_us spawn_p99_us all_ready_ms touch_p50_us faults_per_child private_kib_p50 \
           shared_fraction map_private_kib_p50; do
    get $k <<<"$out" >/dev/null || fail "$b: no $k in the JSON"
  done
done
# What a read of untouched anonymous memory costs here: the unit tests' probe
# (tests/unit/mem_util.h t_zero_page), which cowfork's own must agree with.
zp=$("$HELPER" --zero-page | tail -n 1)
"$HELPER" --zero-page | grep '^# kernel:' | sed 's/^# //'
case $zp in 1) zpj=True ;; 0) zpj=False ;; *) fail "the zero-page probe failed" ;; esac
out=$(cowfork bench fanout --image base --children 20 --backend file --touch 200 --write 10 --json)
[ "$(get shared_zero_page <<<"$out")" = $zpj ] || fail "cowfork's zero-page probe disagrees with the test's ($zp)"
python3 - "$out" <<'PY' || fail "file backend: sharing"
import json, sys
r = json.loads(sys.argv[1])
# Only what it wrote is private; where the kernel has no zero page for
# reads, also what it only read of the image's empty extents (exactly
# those pages: each got a private zeroed page).
extra = 0 if r["shared_zero_page"] else r["read_empty_kib"]
assert r["map_private_kib_p50"] <= r["written_kib"] + extra, r
if not r["shared_zero_page"]:
    assert r["read_empty_kib"] > 0, r   # the image has empty runs: the bound above means something
print("ok   file backend: private in the mapping %.0f KiB <= written %.0f KiB%s" % (
    r["map_private_kib_p50"], r["written_kib"],
    "" if r["shared_zero_page"] else " + read of empty extents %.0f KiB (no zero page for reads)" % extra))
assert r["shared_fraction"] > 0.5, r
PY

# Prefetch: record, then use.
[ ! -e "$COWFORK_STORE/wset/base" ] || fail "a working set before any run"
first=$(cowfork bench fanout --image base --children 2 --backend uffd --touch 500 --write 0 --prefetch --json)
[ "$(get recorded <<<"$first")" = True ] || fail "first --prefetch run did not record"
[ -s "$COWFORK_STORE/wset/base" ] || fail "no STORE/wset/base"
none=$(cowfork bench fanout --image base --children 2 --backend uffd --touch 500 --write 0 --json)
with=$(cowfork bench fanout --image base --children 2 --backend uffd --touch 500 --write 0 --prefetch --json)
echo "faults without prefetch $(get faults_per_child <<<"$none"), with $(get faults_per_child <<<"$with")"
python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(not b <= 0.1 * a)' \
  "$(get faults_per_child <<<"$none")" "$(get faults_per_child <<<"$with")" ||
  fail "prefetch did not cut faults by 90 %"
cowfork image ls >/dev/null || fail "the store's image list broke (wset/ must not be in images/)"

# A standalone page server and a Firecracker-style client.
start_server spid "$TMP/uffd.sock" "$COWFORK" mem serve --socket "$TMP/uffd.sock" --image base \
  2>"$TMP/serve.err"
for v in v1.6 v1.7 v1.10 kib; do
  timeout 60 "$HELPER" --helper fc "$COWFORK_STORE" base "$TMP/uffd.sock" $v || fail "fc client ($v)"
done
set +e
timeout 60 "$HELPER" --helper fc "$COWFORK_STORE" base "$TMP/uffd.sock" huge; rc=$?
set -e
[ $rc = $((128 + 7)) ] || fail "a refused fc client (2 MiB pages) exited $rc, not by SIGBUS (124: it hung)"
grep -q "refused.*sent SIGBUS" "$TMP/serve.err" || fail "refusal not logged: $(cat "$TMP/serve.err")"
echo "refused handshake: $(grep -m1 refused "$TMP/serve.err")"
kill "$spid"; wait "$spid" 2>/dev/null || true
[ ! -e "$TMP/uffd.sock" ] || fail "mem serve left its socket behind"

set +e
cowfork bench fanout --children 3 >/dev/null 2>&1; [ $? = 2 ] || fail "no --image: not exit 2"
cowfork bench fanout --image base --backend nope >/dev/null 2>&1; [ $? = 2 ] || fail "bad backend: not exit 2"
cowfork mem serve --image base >/dev/null 2>&1; [ $? = 2 ] || fail "no --socket: not exit 2"
echo ok
