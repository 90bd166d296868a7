#!/usr/bin/env bash
# A real ext4 file system as the template: made with mke2fs -d from a
# directory, imported, served; files are changed through the export by
# debugfs -w (on the export itself through nbdfuse, or, where FUSE is not
# usable, on a copy taken and written back with nbdcopy), the export is saved
# by SIGTERM, and the child image, exported to raw, passes e2fsck -fn and
# holds exactly the changes (debugfs). The template stays bit-identical.
. "$(dirname "$0")/functions.sh"
requires mke2fs e2fsck debugfs nbdcopy nbdinfo cmp sha256sum
SOCK=$TMP/nbd.sock
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }

# The template's files: text, a 3 MiB binary, a directory tree, an empty file.
mkdir -p "$TMP/root/etc" "$TMP/root/data/deep/er"
echo "hello from the template" >"$TMP/root/etc/hello.txt"
echo "delete me" >"$TMP/root/etc/doomed.txt"
head -c $((3 << 20)) /dev/urandom >"$TMP/root/data/blob.bin"
seq 1 20000 >"$TMP/root/data/deep/er/numbers.txt"
: >"$TMP/root/empty"
truncate -s 128M "$TMP/tmpl.raw"
mke2fs -q -F -t ext4 -b 4096 -d "$TMP/root" "$TMP/tmpl.raw"
e2fsck -fn "$TMP/tmpl.raw" >/dev/null
cowfork image import "$TMP/tmpl.raw" tmpl
cowfork image export tmpl "$TMP/before.raw"
before=$(sha256sum <"$TMP/before.raw")

start_server PID "$SOCK" "$COWFORK" disk serve --unix "$SOCK" --export vm=tmpl:vm-child --export other=tmpl

# The changes, as debugfs commands.
echo "written through NBD" >"$TMP/new.txt"
head -c $((5 << 20)) /dev/urandom >"$TMP/big.bin"
cat >"$TMP/cmds" <<EOF
rm /etc/doomed.txt
mkdir /newdir
write $TMP/new.txt /newdir/new.txt
write $TMP/big.bin /data/big.bin
rm /data/deep/er/numbers.txt
EOF

fuse_ok=0
if command -v nbdfuse >/dev/null && [ -c /dev/fuse ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$TMP/mnt"
  nbdfuse "$TMP/mnt/disk" --uri "$(uri vm)" &
  fpid=$!
  cleanup_fn "umount '$TMP/mnt' 2>/dev/null; kill $fpid 2>/dev/null; wait $fpid 2>/dev/null"
  for i in $(seq 100); do [ -f "$TMP/mnt/disk" ] && break; sleep 0.05; done
  [ -f "$TMP/mnt/disk" ] && fuse_ok=1
fi
if [ $fuse_ok = 1 ]; then
  echo "changing files with debugfs -w on the export itself (nbdfuse)"
  debugfs -w -f "$TMP/cmds" "$TMP/mnt/disk"
  e2fsck -fn "$TMP/mnt/disk" || fail "e2fsck through the export"
  umount "$TMP/mnt"
  wait "$fpid" || true
else
  echo "nbdfuse not usable: debugfs -w on a copy, written back with nbdcopy"
  nbdcopy "$(uri vm)" "$TMP/work.raw"
  debugfs -w -f "$TMP/cmds" "$TMP/work.raw"
  nbdcopy "$TMP/work.raw" "$(uri vm)"
fi
nbdcopy "$(uri vm)" "$TMP/vm.raw"
# The other export of the same template does not see them.
nbdcopy "$(uri other)" "$TMP/other.raw"
cmp "$TMP/before.raw" "$TMP/other.raw" || fail "export 'other' changed"

kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[ $rc -eq 0 ] || fail "server exited $rc"
cowfork image verify vm-child
cowfork image export vm-child "$TMP/child.raw"
cmp "$TMP/vm.raw" "$TMP/child.raw" || fail "the saved child differs from the served disk"
e2fsck -fn "$TMP/child.raw" || fail "e2fsck -fn of the saved child"
debugfs -R "cat /newdir/new.txt" "$TMP/child.raw" 2>/dev/null | cmp - "$TMP/new.txt" || fail "new file content"
debugfs -R "dump /data/big.bin $TMP/big.out" "$TMP/child.raw" 2>/dev/null
cmp "$TMP/big.bin" "$TMP/big.out" || fail "big file content"
debugfs -R "dump /data/blob.bin $TMP/blob.out" "$TMP/child.raw" 2>/dev/null
cmp "$TMP/root/data/blob.bin" "$TMP/blob.out" || fail "an unchanged file changed"
debugfs -R "cat /etc/hello.txt" "$TMP/child.raw" 2>/dev/null | grep -q "hello from the template" || fail "hello.txt"
debugfs -R "ls -l /etc" "$TMP/child.raw" 2>/dev/null | grep -q doomed && fail "doomed.txt was not removed"
debugfs -R "ls -l /data/deep/er" "$TMP/child.raw" 2>/dev/null | grep -q numbers && fail "numbers.txt was not removed"
own=$(cowfork image info vm-child --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["own_bytes"])')
echo "vm-child stores $own bytes of its own (5 MiB file + metadata)"
[ "$own" -lt $((8 << 20)) ] || fail "the child stores $own bytes for about 5 MiB of changes"

cowfork image verify tmpl
cowfork image export tmpl "$TMP/after.raw"
[ "$(sha256sum <"$TMP/after.raw")" = "$before" ] || fail "the template changed"
e2fsck -fn "$TMP/after.raw" >/dev/null
echo "ext4 through NBD: ok"
