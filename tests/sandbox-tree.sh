#!/usr/bin/env bash
# Templates of several processes (issue 14 item 6): a program that forked a
# server child (its own group, memory it changed) and a child that already
# exited (a zombie) is paused into a template at its read of stdin; every
# child of the template gets the whole tree: the same output as the program
# natively (tests/sandbox/tree.c), the zombie reaped, one open file
# description shared; 100 children from it, each as natively; its images
# (one per process) go with `template rm`. A child that forks after the
# template's ready point is branched with its processes (each stores what
# differs from the template's memory) and the branch's children go on as
# natively. Then a busybox sh template whose background job runs across the
# pause.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
CROOT=$TMP/croot
mkdir -p "$CROOT" "$TMP/native"
gcc -static -O1 -o "$CROOT/tree" "$(dirname "$0")/sandbox/tree.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
echo hello > "$TMP/in"
"$CROOT/tree" "$TMP/native" < "$TMP/in" > "$TMP/want.all" || fail "the program natively"
head -n 1 "$TMP/want.all" > "$TMP/want.create"
tail -n +2 "$TMP/want.all" > "$TMP/want"

# the template: two processes alive and a zombie at the pause
cowfork template create tree --root "$CROOT" -- /tree > "$TMP/create.out" 2>"$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
cmp -s "$TMP/create.out" "$TMP/want.create" || fail "template create printed: $(cat "$TMP/create.out")"
cowfork image ls > "$TMP/images" 2>&1
grep -q '^tree\.mem\b' "$TMP/images" && grep -q '^tree\.mem\.[0-9]' "$TMP/images" ||
  fail "the template's images (one per process alive): $(cat "$TMP/images")"
echo "ok   template create: $(grep -c '^tree\.mem' "$TMP/images") images (first process, server)"

# one child, as natively
cowfork fork tree --input "$TMP/in" > "$TMP/got" 2>"$TMP/got.err" || fail "fork: $(cat "$TMP/got.err")"
if ! cmp -s "$TMP/got" "$TMP/want"; then
  diff -u "$TMP/want" "$TMP/got" | sed 's/^/    /'
  fail "a child of the tree template differs from the program natively"
fi
echo "ok   a child of the tree template: $(wc -l < "$TMP/got") lines as natively (server, zombie, group, shared offset)"

# 100 children
cowfork fork tree -n 100 --input "$TMP/in" --json > "$TMP/100.json" 2>"$TMP/100.err" ||
  fail "fork -n 100: $(tail -n 3 "$TMP/100.err")"
python3 - "$TMP/100.json" "$TMP/want" <<'PY' || fail "fork -n 100 of the tree template"
import json, sys
want = open(sys.argv[2]).read()
kids = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"child"')]
bad = [k["child"] for k in kids if not k["ok"] or k["status"] != 0 or k["stdout"] != want]
print(f"ok   100 children of the tree template: {len(kids) - len(bad)} of {len(kids)} as natively")
sys.exit(1 if bad or len(kids) != 100 else 0)
PY

# a branch of a child that forked: the program reads a line (the template's
# ready point), forks its server and zombie, and is saved at its next read
# with both; the branch's children go on from there as natively
printf 'one\ntwo\n' > "$TMP/in2"
echo one > "$TMP/in.1"
echo two > "$TMP/in.2"
mkdir -p "$TMP/native2"
"$CROOT/tree" "$TMP/native2" late < "$TMP/in2" > "$TMP/want.late" || fail "the program natively (late)"
cowfork template create treel --root "$CROOT" -- /tree /tmp late > "$TMP/l.create" 2>"$TMP/l.err" ||
  fail "template create (late): $(cat "$TMP/l.err")"
[ ! -s "$TMP/l.create" ] || fail "template create (late) printed: $(cat "$TMP/l.create")"
cowfork fork treel --branch treeb --input "$TMP/in.1" > "$TMP/b.1" 2>"$TMP/b.err" ||
  fail "fork --branch of a child with two processes: $(cat "$TMP/b.err")"
cowfork image ls > "$TMP/images" 2>&1
grep -q '^treeb\.mem\.[0-9]' "$TMP/images" || fail "the branch's images (one per process): $(cat "$TMP/images")"
for i in 1 2 3; do
  cowfork fork treeb --input "$TMP/in.2" > "$TMP/b.2" 2>"$TMP/b2.err" || fail "fork of the branch: $(cat "$TMP/b2.err")"
  if ! cat "$TMP/b.1" "$TMP/b.2" | cmp -s - "$TMP/want.late"; then
    cat "$TMP/b.1" "$TMP/b.2" | diff -u "$TMP/want.late" - | sed 's/^/    /'
    fail "a child of the branch of a tree differs from the program natively"
  fi
done
echo "ok   a branch of a child with two processes and a zombie: 3 children of it as natively ($(grep -o '[0-9]* pages stored, [0-9]* zeroed' "$TMP/b.err"))"
cowfork template rm treeb 2>"$TMP/rm.err" || fail "template rm of the branch: $(cat "$TMP/rm.err")"
cowfork template rm treel 2>"$TMP/rm.err" || fail "template rm: $(cat "$TMP/rm.err")"

# its images go with it
cowfork template rm tree 2>"$TMP/rm.err" || fail "template rm: $(cat "$TMP/rm.err")"
cowfork image ls > "$TMP/images" 2>&1
! grep -q '^tree\.mem' "$TMP/images" || fail "template rm left images: $(grep '^tree\.mem' "$TMP/images")"
echo "ok   template rm removed every process's image"

# a shell whose background job runs across the pause
BB=/bin/busybox
if [ -x $BB ]; then
  script='(until [ -e /tmp/stop ]; do sleep 0.05; done; echo "background: done") & read x; echo "got $x"; : > /tmp/stop; wait; echo "all done"'
  cowfork template create shbg --root / --mem 64M -- $BB sh -c "$script" > "$TMP/sh.create" 2>"$TMP/sh.err" ||
    fail "template create of a shell with a background job: $(cat "$TMP/sh.err")"
  (cd "$TMP" && $BB sh -c "${script//\/tmp\/stop/$TMP\/stop}" < "$TMP/in") > "$TMP/sh.want" ||
    fail "the shell script natively"
  cowfork fork shbg -n 3 --input "$TMP/in" > "$TMP/sh.got" 2>"$TMP/sh.goterr" || fail "fork shbg: $(cat "$TMP/sh.goterr")"
  for i in 1 2 3; do cat "$TMP/sh.want"; done > "$TMP/sh.want3"
  if ! cmp -s "$TMP/sh.got" "$TMP/sh.want3"; then
    diff -u "$TMP/sh.want3" "$TMP/sh.got" | sed 's/^/    /'
    fail "children of a shell template with a background job"
  fi
  echo "ok   busybox sh with a background job across the pause: 3 children as natively"
else
  echo "ok   # SKIP busybox sh with a background job: /bin/busybox missing"
fi
echo "PASS"
