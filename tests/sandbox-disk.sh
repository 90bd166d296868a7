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
