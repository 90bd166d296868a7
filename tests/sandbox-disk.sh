#!/usr/bin/env bash
# `cowfork run --disk SIZE` (issue 15 item 2, step 2): the data of the files
# a sandbox writes outside /tmp and /dev/shm lives on an ext4 disk (a
# copy-on-write image, lib/extfs.c) instead of guest memory, so a file
# larger than guest memory works: tests/sandbox/bigfile.c writes one (200
# MiB with --mem 64M: ~21 s of the test's ~60 s under emulated KVM; without
# --disk it fails at 16 MiB, ENOSPC), reads it back, makes a hole, SEEK_DATA/SEEK_HOLE, truncates, fallocates, as
# natively. Files under /usr and /root are seen by later programs of the
# same run (a busybox script: write, append, hard link, rename, rm, an open
# deleted file, /tmp still in memory); the host is untouched. The storage
# interface itself: build/tests/shim_* (mem), this test (disk).
# Step 3: template create --disk saves the disk (only the blocks written),
# 3 children share it copy-on-write and stay isolated, a branch stores only
# its child's blocks as a child image, exports pass e2fsck -fn, a damaged
# disk image fails the fork naming it (the template part: ~10 s of the
# script's ~25-30 s under emulated KVM).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
BB=/bin/busybox
[ -x $BB ] || skip "no $BB"
here=$(cd "$(dirname "$0")" && pwd)
gcc -static -O1 -o "$TMP/bigfile" "$here/sandbox/bigfile.c" 2>"$TMP/cc.err" ||
  skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

MIB=200
host_sums() { ls -a /usr /root | sha256sum; }
host_sums >"$TMP/before"

# The big file, natively (in $TMP) and in the sandbox (under /root).
"$TMP/bigfile" "$TMP/big" $MIB >"$TMP/native" 2>&1 || fail "bigfile natively: $(cat "$TMP/native")"
rc=0
start=$(date +%s.%N)
cowfork run --root / --mem 64M --disk 512M -- "$TMP/bigfile" /root/cowfork-disk-big $MIB >"$TMP/sandbox" 2>&1 || rc=$?
t=$(echo "$(date +%s.%N) - $start" | bc)
[ $rc = 0 ] && diff -u "$TMP/native" "$TMP/sandbox" || fail "bigfile in the sandbox (exit $rc) differs: $(cat "$TMP/sandbox")"
echo "ok   a $MIB MiB file with --mem 64M --disk 512M: written, read back, holes, truncate, fallocate as natively (${t%???????} s)"

# Later programs of the same run see the files (the tree is the run's).
cat >"$TMP/w.sh" <<'EOS'
set -e
echo one >/usr/cowfork-disk-f
echo two >>/usr/cowfork-disk-f
mkdir -p /root/cowfork-disk-d/a
cp /usr/cowfork-disk-f /root/cowfork-disk-d/a/g
ln /root/cowfork-disk-d/a/g /root/cowfork-disk-d/h
mv /usr/cowfork-disk-f /root/cowfork-disk-d/moved
echo tmp >/tmp/t
exec 3</root/cowfork-disk-d/moved
rm /root/cowfork-disk-d/moved
cat <&3
EOS
cat >"$TMP/r.sh" <<'EOS'
cat /root/cowfork-disk-d/a/g /root/cowfork-disk-d/h /tmp/t
stat -c '%s %h' /root/cowfork-disk-d/h
ls /root/cowfork-disk-d
[ -e /usr/cowfork-disk-f ] || echo "no /usr/cowfork-disk-f"
stat -f -c '%S %b' /root
EOS
rc=0
cowfork run --root / --mem 64M --disk 64M -- $BB sh -c "$BB sh $TMP/w.sh && $BB sh $TMP/r.sh" >"$TMP/out" 2>&1 || rc=$?
cat >"$TMP/expect" <<EOS
one
two
one
two
one
two
tmp
8 2
a
h
no /usr/cowfork-disk-f
4096 16384
EOS
[ $rc = 0 ] && diff -u "$TMP/expect" "$TMP/out" || fail "files across programs of one run (exit $rc): $(cat "$TMP/out")"
echo "ok   files under /usr and /root (append, cp, hard link, mv, an open deleted file) seen by the next program; statfs of /root: the 64M disk"

host_sums >"$TMP/after"
diff -u "$TMP/before" "$TMP/after" || fail "the host's /usr or /root changed"
[ ! -e /root/cowfork-disk-big ] && [ ! -e /usr/cowfork-disk-f ] && [ ! -e /root/cowfork-disk-d ] ||
  fail "a file written in the sandbox is on the host"
echo "ok   the host is untouched"

# Bad sizes are refused; a full disk is ENOSPC.
rc=0; cowfork run --root / --disk 1M -- $BB true 2>"$TMP/err" || rc=$?
[ $rc = 2 ] && grep -q 'bad --disk' "$TMP/err" || fail "--disk 1M: exit $rc: $(cat "$TMP/err")"
out=$(cowfork run --root / --mem 64M --disk 16M -- $BB sh -c \
  "$BB dd if=/dev/zero of=/root/fill bs=1M count=32 2>&1 | $BB head -n 1; $BB ls /root/fill" 2>&1) || true
case "$out" in *"No space left on device"*/root/fill) ;; *) fail "a full disk: '$out'" ;; esac
echo "ok   --disk 1M refused; writing 32M to a 16M disk: $(echo "$out" | head -n 1)"

# ---- Templates with a disk (step 3): saved, forked, branched ----
# template create --disk stores the disk as the image dt.disk holding only
# the blocks written (a 40 MiB file larger than --mem 32M, plus metadata: not
# the 128M disk); each child writes to an overlay of its own over it; a
# branch stores only the blocks its child wrote, as a child image.
t0=$(date +%s.%N)
DT="$TMP/bigfile /root/cowfork-dt-big 40 write && echo template >/root/cowfork-dt-t && mkdir /usr/cowfork-dt &&
echo u >/usr/cowfork-dt/u && exec $BB sh"
cowfork template create dt --root / --mem 32M --disk 128M -- $BB sh -c "$DT" 2>"$TMP/dt.err" ||
  fail "template create --disk: $(cat "$TMP/dt.err")"
stored=$(sed -n 's/.*disk \([0-9]*\) bytes stored.*/\1/p' "$TMP/dt.err")
[ -n "$stored" ] && [ "$stored" -ge $((40 << 20)) ] && [ "$stored" -lt $((44 << 20)) ] ||
  fail "the template's disk should store the 40 MiB written and little more: $(cat "$TMP/dt.err")"
info=$(cowfork image info dt.disk)
own=$(echo "$info" | awk '/^own bytes:/ {print $3}')
size=$(echo "$info" | awk '/^size:/ {print $2}')
[ "$own" = "$stored" ] && [ "$size" = $((128 << 20)) ] || fail "image info dt.disk: $info"
echo "ok   template create --disk 128M: dt.disk stores $stored bytes (the 40 MiB file and metadata) of $size"

mkdir "$TMP/din" "$TMP/dout"
for i in 0 1 2; do
  {
    if [ $i = 0 ]; then echo "$TMP/bigfile /root/cowfork-dt-big 40 check"; else echo "stat -c %s /root/cowfork-dt-big"; fi
    echo "cat /root/cowfork-dt-t /usr/cowfork-dt/u"
    echo "echo child$i >/root/cowfork-dt-k$i; echo child$i >>/root/cowfork-dt-t"
    echo "ls /root | grep cowfork-dt-k; cat /root/cowfork-dt-t"
  } >"$TMP/din/$i"
done
cowfork fork dt -n 3 --input-dir "$TMP/din" --output-dir "$TMP/dout" 2>"$TMP/fork.err" ||
  fail "fork dt -n 3: $(cat "$TMP/fork.err")"
for i in 0 1 2; do
  if [ $i = 0 ]; then echo "/root/cowfork-dt-big: 0 of 40 MiB differ, then 0 bytes"; else echo $((40 << 20)); fi
  printf 'template\nu\ncowfork-dt-k%s\ntemplate\nchild%s\n' $i $i
done >"$TMP/expect3"
cat "$TMP/dout/0" "$TMP/dout/1" "$TMP/dout/2" >"$TMP/got3"
diff -u "$TMP/expect3" "$TMP/got3" || fail "children of dt: $(cat "$TMP/dout/"*.err)"
echo "ok   3 children of dt see its files (the 40 MiB one byte for byte), write their own, see none of the others'"

printf 'echo branch >/root/cowfork-dt-b\necho more >>/root/cowfork-dt-t\nrm /usr/cowfork-dt/u\n' >"$TMP/inb"
cowfork fork dt --branch db --input "$TMP/inb" 2>"$TMP/db.err" || fail "branch db: $(cat "$TMP/db.err")"
bstored=$(sed -n 's/.*disk \([0-9]*\) bytes stored.*/\1/p' "$TMP/db.err")
[ -n "$bstored" ] && [ "$bstored" -le $((1 << 20)) ] || fail "the branch should store a few blocks: $(cat "$TMP/db.err")"
[ "$(cowfork image info --json db.disk | sed -n 's/.*"parent_name": "\([^"]*\)".*/\1/p')" = dt.disk ] ||
  fail "db.disk is not a child of dt.disk: $(cowfork image info --json db.disk)"
printf 'cat /root/cowfork-dt-b /root/cowfork-dt-t\nls /usr/cowfork-dt\nstat -c %%s /root/cowfork-dt-big\n' >"$TMP/inc"
out=$(cowfork fork db --input "$TMP/inc" 2>&1) || fail "fork db: $out"
[ "$out" = "$(printf 'branch\ntemplate\nmore\n%s' $((40 << 20)))" ] || fail "a child of the branch db: '$out'"
echo "ok   branch db stores $bstored bytes of disk (a child image of dt.disk); its child sees the branch's files"

if command -v e2fsck >/dev/null; then
  for im in dt.disk db.disk; do
    cowfork image export $im "$TMP/$im.raw" >/dev/null || fail "image export $im"
    e2fsck -fn "$TMP/$im.raw" >"$TMP/fsck.out" 2>&1 || fail "e2fsck -fn $im: $(cat "$TMP/fsck.out")"
    rm -f "$TMP/$im.raw"
  done
  echo "ok   dt.disk and db.disk exported pass e2fsck -fn"
else
  echo "skip e2fsck of the exported disks: e2fsck is not installed"
fi

# A damaged disk image: the fork fails naming it, nothing crashes.
id=$(cowfork image info dt.disk | awk '/^id:/ {print $2}')
layer="$COWFORK_STORE/layers/$id"
[ -f "$layer" ] || fail "no layer $layer"
chmod u+w "$layer"
printf 'cowfork: damaged' | dd of="$layer" bs=1 seek=12345 conv=notrunc status=none
rc=0
cowfork fork dt --input "$TMP/din/1" >/dev/null 2>"$TMP/bad.err" || rc=$?
[ $rc != 0 ] && [ $rc -lt 128 ] && grep -q 'dt.disk.*corrupted' "$TMP/bad.err" ||
  fail "a fork over a damaged disk image (exit $rc): $(cat "$TMP/bad.err")"
echo "ok   a damaged dt.disk: the fork fails (exit $rc): $(head -c 300 "$TMP/bad.err")"
cowfork template rm db >/dev/null && cowfork template rm dt >/dev/null || fail "template rm"
! cowfork image ls | grep -q '\.disk' || fail "template rm left its disk image: $(cowfork image ls)"
echo "ok   template rm removes the disk images ($(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s for the templates)"
