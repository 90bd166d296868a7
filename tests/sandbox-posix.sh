#!/usr/bin/env bash
# POSIX file semantics as Linux (issue 15, item 3): tests/sandbox/posix.c
# (RLIMIT_NOFILE 1024 raisable, ftruncate, fallocate, SEEK_DATA/SEEK_HOLE on
# upper and root files, O_TMPFILE, renameat2 RENAME_EXCHANGE, mremap,
# msync and MAP_SHARED of upper and copied-up root files across fork,
# getdents64 under concurrent changes, inotify, extended attributes on upper
# files, dnotify's SIGIO) natively and in a sandbox, byte for byte. The shim-level checks run without /dev/kvm in build/tests/shim_fs
# and shim_ovl.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
requires python3
here=$(cd "$(dirname "$0")" && pwd)
gcc -static -O1 -o "$TMP/posix" "$here/sandbox/posix.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
# The root's sparse file: 8 KiB of 'L' at 0 and at 64 KiB, 80 KiB long.
python3 - "$TMP/lower" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"L" * 8192); f.seek(65536); f.write(b"L" * 8192); f.truncate(81920)
PY
ulimit -S -n 1024
same_as_native posix "$TMP/posix" "$TMP/d" "$TMP/lower"
# the root's file is the same after (restored natively; untouched by the sandbox)
python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(d != b"L"*8192 + bytes(65536-8192) + b"L"*8192 + bytes(8192))' "$TMP/lower" ||
  fail "the root's file changed"
echo "ok   the root's file unchanged"
