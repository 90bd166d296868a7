#!/usr/bin/env bash
# Shared memory in templates of several processes (issue 14 item 6): a
# program that mapped MAP_SHARED|MAP_ANONYMOUS memory, made two POSIX
# semaphores (sem_open: /dev/shm files mapped MAP_SHARED, linked to their
# names) and a hard link in /tmp, and forked a server it talks to through
# them is paused into a template at its read of stdin
# (tests/sandbox/treeshm.c). Each child prints what the program natively
# does: the template's value (no child sees another's stores), the
# server's answer (the two processes of a child still share), one inode
# with two links, the semaphore's file. Before (state version 7) template
# create refused the shared mapping by name.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
CROOT=$TMP/croot
mkdir -p "$CROOT" "$TMP/native"
gcc -static -O1 -o "$CROOT/treeshm" "$(dirname "$0")/sandbox/treeshm.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
for v in 5 7; do
  echo $v > "$TMP/in.$v"
  "$CROOT/treeshm" "$TMP/native" < "$TMP/in.$v" > "$TMP/want.all" || fail "the program natively"
  head -n 1 "$TMP/want.all" > "$TMP/want.create"
  tail -n +2 "$TMP/want.all" > "$TMP/want.$v"
done

t0=$(date +%s%N)
cowfork template create treeshm --root "$CROOT" -- /treeshm > "$TMP/create.out" 2>"$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
cmp -s "$TMP/create.out" "$TMP/want.create" || fail "template create printed: $(cat "$TMP/create.out")"
echo "ok   template create with shared memory, /dev/shm files and a hard link ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"

# two children one after the other, other input: the second finds the
# template's value, not the first's
for v in 5 7; do
  cowfork fork treeshm --input "$TMP/in.$v" > "$TMP/got.$v" 2>"$TMP/got.err" || fail "fork: $(cat "$TMP/got.err")"
  if ! cmp -s "$TMP/got.$v" "$TMP/want.$v"; then
    diff -u "$TMP/want.$v" "$TMP/got.$v" | sed 's/^/    /'
    fail "a child (input $v) differs from the program natively"
  fi
done
echo "ok   two children, inputs 5 and 7: each as natively (its processes share, the children do not)"

# three at once
cowfork fork treeshm -n 3 --input "$TMP/in.5" --json > "$TMP/3.json" 2>"$TMP/3.err" ||
  fail "fork -n 3: $(tail -n 3 "$TMP/3.err")"
python3 - "$TMP/3.json" "$TMP/want.5" <<'PY' || fail "fork -n 3 of the template with shared memory"
import json, sys
want = open(sys.argv[2]).read()
kids = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"child"')]
bad = [k["child"] for k in kids if not k["ok"] or k["status"] != 0 or k["stdout"] != want]
for k in kids:
    if k["child"] in bad:
        print("    child", k["child"], repr(k.get("stdout")), k.get("error"))
print(f"ok   3 children at once: {len(kids) - len(bad)} of {len(kids)} as natively")
sys.exit(1 if bad or len(kids) != 3 else 0)
PY
cowfork template rm treeshm 2>"$TMP/rm.err" || fail "template rm: $(cat "$TMP/rm.err")"
echo "PASS"
