#!/usr/bin/env bash
# Templates and forks: a busybox sh template forked 100 times with a
# different command per child (outputs compared with native busybox sh),
# isolation between children, the template and its image, fresh identity per
# child (getrandom, clock, generation id), the marker ready point, the uffd backend, a
# branch, and a chain of 10 branches each storing only its own changes.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
requires gcc
BB=/bin/busybox
D=$(cd "$(dirname "$0")/sandbox" && pwd)
DRV=$TMP/driver
gcc -static -O1 -o "$DRV" "$D/driver.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

# --root /: the children read this test's files ($D) by their host paths
cowfork template create sh --root / --mem 64M -- $BB sh 2>"$TMP/create.err" || fail "template create: $(cat "$TMP/create.err")"
echo "ok   template create: $(cat "$TMP/create.err")"
[ -f "$COWFORK_STORE/templates/sh" ] || fail "no state file"
! cowfork template create sh -- $BB sh 2>/dev/null || fail "a template was overwritten"
echo "ok   templates are immutable"
cowfork image verify sh.mem >/dev/null || fail "template image does not verify"
cowfork image export sh.mem "$TMP/before.raw"
before=$(md5sum < "$TMP/before.raw")

# 100 children, a different command each: builtins, then one busybox applet
# by exec (each child is one process: a template is made from one).
apps=("seq 1 %d" "expr %d '*' 7" "basename /a/b/file%d.txt .txt" "printf '%%05d\n' %d" "echo applet %d"
      "md5sum $D/words.txt" "head -n %d $D/words.txt" "wc -c $D/nums.txt" "tail -n %d /words.txt" "sort -n -r $D/nums.txt")
mkdir -p "$TMP/in" "$TMP/want"
for i in $(seq 0 99); do
  a=${apps[$((i % ${#apps[@]}))]}
  cmd=$(printf "$a" $((i % 7 + 1)))
  printf 'x=%d; echo "child $x: $((x * x))"; cd /etc; pwd\nexec busybox %s\n' "$i" "$cmd" > "$TMP/in/$i"
  (cd / && $BB sh < "$TMP/in/$i") > "$TMP/want/$i" 2>&1 || true
done
cowfork fork sh -n 100 --input-dir "$TMP/in" --output-dir "$TMP/out" || fail "fork -n 100 failed"
bad=0
for i in $(seq 0 99); do
  cat "$TMP/out/$i" "$TMP/out/$i.err" > "$TMP/got"
  cmp -s "$TMP/want/$i" "$TMP/got" || { bad=$((bad + 1)); echo "child $i differs:"; diff "$TMP/want/$i" "$TMP/got" | head -5; }
done
[ $bad -eq 0 ] || fail "$bad of 100 children differ from native busybox sh"
echo "ok   100 children of a busybox sh template, each a different command, identical to native"

# In order on the terminal, and --json.
printf 'echo one\n' > "$TMP/in1"
[ "$(cowfork fork sh -n 3 --input "$TMP/in1")" = "$(printf 'one\none\none')" ] || fail "stdout not in child order"
cowfork fork sh -n 2 --input "$TMP/in1" --json > "$TMP/j"
grep -q '"child":1,"ok":true,"status":0' "$TMP/j" && grep -q '"spawn_us":' "$TMP/j" && grep -q '"private_kib":' "$TMP/j" &&
  grep -q '"stdout":"one\\n"' "$TMP/j" && grep -q '"children":2,"failed":0' "$TMP/j" || fail "json: $(cat "$TMP/j")"
echo "ok   output in child order; --json: $(head -n 1 "$TMP/j" | cut -c1-150)"

# Isolation: one child writes /tmp and its memory (a shell variable and a
# function); its siblings, the template and later children see none of it.
mkdir -p "$TMP/iso"
printf 'SECRET=42; f() { echo fn; }; echo s > /tmp/secret; echo written\n' > "$TMP/iso/0"
for i in 1 2 3; do printf 'echo "v=$SECRET"; type f >/dev/null 2>&1 && echo has-f; read l < /tmp/secret && echo "file=$l"; echo done\n' > "$TMP/iso/$i"; done
cowfork fork sh -n 4 --input-dir "$TMP/iso" > "$TMP/iso.out" 2>/dev/null
[ "$(cat "$TMP/iso.out")" = "$(printf 'written\nv=\ndone\nv=\ndone\nv=\ndone')" ] || fail "isolation: $(cat "$TMP/iso.out")"
echo "ok   a child's memory and /tmp writes are invisible to its siblings"

# Fresh identity: getrandom differs in every child, the clock is now.
cowfork template create drv --root / --mem 64M --ready READY -- "$DRV" > "$TMP/drv.out" 2>/dev/null
[ "$(cat "$TMP/drv.out")" = READY ] || fail "marker template printed: $(cat "$TMP/drv.out")"
printf 'rand\ntime\ninc\n' > "$TMP/rt"
cowfork fork drv -n 20 --input "$TMP/rt" > "$TMP/rt.out"
[ "$(grep -c '^[0-9a-f]\{32\}$' "$TMP/rt.out")" = 20 ] || fail "rand: $(head "$TMP/rt.out")"
[ "$(grep '^[0-9a-f]\{32\}$' "$TMP/rt.out" | sort -u | wc -l)" = 20 ] || fail "two children got the same getrandom output"
now=$(date +%s)
for t in $(grep -x '[0-9]\{10\}' "$TMP/rt.out"); do [ $((now - t)) -le 5 ] && [ $((t - now)) -le 5 ] || fail "child clock $t, now $now"; done
[ "$(grep -cx 1 "$TMP/rt.out")" = 20 ] || fail "a child saw another's counter"
echo "ok   20 children: 20 different getrandom outputs, correct clock, private counters (marker template)"
# The same program paused at its first read of stdin.
cowfork template create drv2 --root / --mem 64M -- "$DRV" > "$TMP/drv2.out" 2>/dev/null
[ "$(cowfork fork drv2 --input "$TMP/rt" | sed -n 3p)" = 1 ] || fail "stdin template"
echo "ok   the same program as a stdin template"

# A generation id (docs/sandbox.md, "Generation"): the page the auxiliary
# vector's CF_AT_GENERATION names holds a new id in every child (a new VM,
# a reused one, the uffd backend), the same for the whole life of one
# sandbox; a branch's children each get a new one. Natively there is none.
[ "$(printf 'gen\n' | "$DRV" | sed -n 2p)" = none ] || fail "a native run has a generation"
printf 'gen\ninc\ngen\n' > "$TMP/g"
gens() { # FILE N: N children, each printing the same id twice; prints the ids
  # (drv's "READY\n" is two writes and the marker pauses after the first: a
  # child of drv prints the "\n" first. Empty lines are not counted.)
  [ "$(grep -c '^[0-9a-f]\{12\}4[0-9a-f]\{19\}$' "$1")" = $((2 * $2)) ] || fail "generation ids: $(head -n 6 "$1")"
  grep -v '^$' "$1" | awk 'NR % 3 == 1 { a = $0 } NR % 3 == 0 && $0 != a { bad = 1 } END { exit bad }' ||
    fail "a child's generation changed while it ran: $(head -n 6 "$1")"
  grep -v '^$' "$1" | awk 'NR % 3 == 1'
}
cowfork fork drv -n 20 --input "$TMP/g" > "$TMP/g.out" || fail "fork for generations"
ids=$(gens "$TMP/g.out" 20)
[ "$(echo "$ids" | sort -u | wc -l)" = 20 ] || fail "two children had the same generation: $(head "$TMP/g.out")"
COWFORK_CHECK_RESET=1 cowfork fork drv -n 6 --jobs 1 --input "$TMP/g" > "$TMP/g1.out" 2> "$TMP/g1.err" ||
  fail "generations in reused VMs, checked: $(head -c 500 "$TMP/g1.err")"
cowfork fork drv -n 3 --backend uffd --input "$TMP/g" > "$TMP/g2.out" || fail "generations, uffd"
cowfork fork drv -n 3 --no-reuse --input "$TMP/g" > "$TMP/g3.out" || fail "generations, --no-reuse"
all=$(cat "$TMP/g.out" "$TMP/g1.out" "$TMP/g2.out" "$TMP/g3.out" | grep -v "^$" | awk 'NR % 3 == 1')
[ "$(echo "$all" | sort -u | wc -l)" = 32 ] || fail "generations repeat across runs: $(echo "$all" | sort | uniq -d)"
gens "$TMP/g1.out" 6 > /dev/null; gens "$TMP/g2.out" 3 > /dev/null; gens "$TMP/g3.out" 3 > /dev/null
cowfork fork drv2 --input "$TMP/g" --branch gb > "$TMP/gb.out" 2>/dev/null || fail "branch for generations"
g0=$(gens "$TMP/gb.out" 1)
cowfork fork gb -n 3 --input "$TMP/g" > "$TMP/gc.out" || fail "fork of a branch for generations"
gc=$(gens "$TMP/gc.out" 3)
[ "$(printf '%s\n%s\n' "$g0" "$gc" | sort -u | wc -l)" = 4 ] || fail "a branch's children share a generation: $g0 / $gc"
echo "ok   generation ids: 32 children, 32 ids (reused VMs checked, uffd, --no-reuse), each stable while it runs; a branch's 3 children get 3 new ones; none natively"

# The uffd backend gives the same outputs.
cowfork fork sh -n 10 --backend uffd --input-dir "$TMP/in" --output-dir "$TMP/uout" || fail "uffd fork failed"
for i in $(seq 0 9); do cmp -s "$TMP/out/$i" "$TMP/uout/$i" || fail "uffd child $i differs"; done
echo "ok   10 children on the uffd backend, same outputs"

# A branch: variables, cwd and /tmp carried over, only the child's pages stored.
printf 'X=5; cd /tmp; echo branch-file > f; echo made\n' > "$TMP/b"
[ "$(cowfork fork sh --input "$TMP/b" --branch b1 2>"$TMP/b.err")" = made ] || fail "branch: $(cat "$TMP/b.err")"
echo "ok   $(cat "$TMP/b.err")"
printf 'echo "X=$X"; pwd; read l < f; echo "$l"\n' > "$TMP/c"
[ "$(cowfork fork b1 -n 3 --input "$TMP/c")" = "$(printf 'X=5\n/tmp\nbranch-file\n%.0s' 1 2 3 | head -c -1)" ] ||
  fail "fork of a branch: $(cowfork fork b1 --input "$TMP/c" 2>&1)"
[ "$(cowfork fork sh --input "$TMP/c" 2>/dev/null | head -n 2)" = "$(printf 'X=\n/')" ] || fail "the branch leaked into its template"
echo "ok   3 children of the branch see its variables, cwd and /tmp file; the template does not"
cowfork snapshot b1 b2 --input "$TMP/in1" >/dev/null 2>&1 || fail "cowfork snapshot"
echo "ok   cowfork snapshot"

# A chain of 10 branches: link i sets V$i and writes /tmp/l$i.
prev=sh owns=""
for i in $(seq 1 10); do
  printf 'V%d=%d; echo %d > /tmp/l%d\n' $i $i $i $i > "$TMP/l"
  cowfork fork $prev --input "$TMP/l" --branch c$i >/dev/null 2>"$TMP/l.err" || fail "link $i: $(cat "$TMP/l.err")"
  own=$(cowfork image info c$i.mem --json | sed 's/.*"own_bytes": *\([0-9]*\).*/\1/')
  gen=$(cowfork image info c$i.mem | awk '/^generation/ {print $2}')
  [ "$gen" = $i ] || fail "link $i: generation $gen"
  [ "$own" -le $((256 * 1024)) ] || fail "link $i stores $own bytes: more than its own changes"
  owns="$owns $((own / 1024))K"
  prev=c$i
done
printf 'echo $V1 $V2 $V3 $V4 $V5 $V6 $V7 $V8 $V9 $V10; cd /tmp; for i in 1 2 3 4 5 6 7 8 9 10; do read x < l$i; printf "%%s " $x; done; echo\n' > "$TMP/l"
[ "$(cowfork fork c10 --input "$TMP/l")" = "$(printf '1 2 3 4 5 6 7 8 9 10\n1 2 3 4 5 6 7 8 9 10 ')" ] ||
  fail "end of chain: $(cowfork fork c10 --input "$TMP/l" 2>&1)"
echo "ok   chain of 10 branches; each link stores only its own pages:$owns"

# 1000 children on all CPUs, every one must start and answer: guest memory
# torn down twice once let one thread's munmap take another VM's memory.
printf 'echo hi\n' > "$TMP/hi"
cowfork fork sh -n 1000 --input "$TMP/hi" --json > "$TMP/k.json" 2>"$TMP/k.err" || fail "fork -n 1000: $(head -c 300 "$TMP/k.err")"
good=$(grep -c '"status":0.*"stdout":"hi\\n"' "$TMP/k.json" || true)
[ "$good" = 1000 ] || fail "fork -n 1000: $good children answered; $(head -c 300 "$TMP/k.err")"
echo "ok   1000 children, all answered"

# The template's image is bit-identical after all of it.
cowfork image verify sh.mem >/dev/null || fail "template image does not verify after forks"
cowfork image export sh.mem "$TMP/after.raw"
[ "$(md5sum < "$TMP/after.raw")" = "$before" ] || fail "the template image changed"
echo "ok   the template image is bit-identical after 100+ children and 12 branches"
