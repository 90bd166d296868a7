#!/usr/bin/env bash
# The sandbox's /tmp against Linux (issue 11, items 1, 2 and 7):
# tests/sandbox/fsops.c (mkdir under a missing parent, chmod, utime*, record
# locks, MAP_SHARED, select, socket calls on files, mmap/brk limits) natively
# and in a sandbox with identical output; /usr/bin/mkdir; Python cases
# (os.mkdir, pathlib, shutil.which, tarfile mtimes, sqlite in WAL mode);
# the root's /tmp never seen; the /tmp region out of the program's reach
# (tests/sandbox/hostile.c). The shim-level checks of the same fixes run
# without /dev/kvm in build/tests/shim_fs.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
gcc -static -O1 -o "$TMP/fsops" "$here/sandbox/fsops.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
gcc -static -O1 -o "$TMP/hostile" "$here/sandbox/hostile.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

# fsops natively (in the host's /tmp) and in the sandbox (in its own).
D=/tmp/cowfork-fsops.$$
cleanup_fn "rm -rf '$D'"
"$TMP/fsops" "$D" >"$TMP/native" 2>&1 || fail "fsops natively: $(cat "$TMP/native")"
"$COWFORK" run --root / -- "$TMP/fsops" "$D" >"$TMP/sandbox" 2>&1 || fail "fsops in the sandbox: $(cat "$TMP/sandbox")"
diff -u "$TMP/native" "$TMP/sandbox" || fail "fsops: the sandbox differs from Linux"
echo "ok   fsops: $(wc -l <"$TMP/native") lines identical to the native run"

# /usr/bin/mkdir with a missing parent: its own error, cowfork unharmed.
if [ -x /usr/bin/mkdir ]; then
  rc=0; "$COWFORK" run --root / -- /usr/bin/mkdir /tmp/nope/x 2>"$TMP/err" || rc=$?
  [ $rc = 1 ] && grep -q "No such file or directory" "$TMP/err" || fail "mkdir /tmp/nope/x: exit $rc: $(cat "$TMP/err")"
  echo "ok   /usr/bin/mkdir /tmp/nope/x: exit 1, $(head -n 1 "$TMP/err")"
fi

# The /tmp region: munmap of it leaves /tmp working, MAP_FIXED over it is
# ENOMEM, a store into it is the program's own SIGSEGV at that address.
"$COWFORK" run --root / -- "$TMP/hostile" tmp-region >"$TMP/out" 2>&1 || fail "tmp-region: $(cat "$TMP/out")"
[ "$(cat "$TMP/out")" = "munmap 0, mmap-fixed ENOMEM, mprotect ENOMEM, /tmp ok" ] || fail "tmp-region: $(cat "$TMP/out")"
echo "ok   the /tmp region: $(cat "$TMP/out")"
rc=0; "$COWFORK" run --root / -- "$TMP/hostile" tmp-store >"$TMP/out" 2>&1 || rc=$?
[ $rc = 42 ] && grep -q "caught signal 11 at 0xb700000" "$TMP/out" || fail "tmp-store: exit $rc: $(cat "$TMP/out")"
echo "ok   a store into the /tmp region: $(cat "$TMP/out")"
# A refused access at an address KVM does not give is reported as unknown, not 0x0.
rc=0; "$COWFORK" run --root / -- "$TMP/hostile" rodata >"$TMP/out" 2>&1 || rc=$?
[ $rc = 139 ] && grep -q "at an unknown address" "$TMP/out" && ! grep -q "address 0x0" "$TMP/out" ||
  fail "rodata: exit $rc: $(cat "$TMP/out")"
echo "ok   a write to .rodata: $(grep -m1 -o 'at an unknown address.*' "$TMP/out")"

# The root's /tmp is not the sandbox's: a host file there is never seen.
if [ -x /bin/busybox ]; then
  echo secret >"$D.host"
  cleanup_fn "rm -f '$D.host'"
  rc=0; "$COWFORK" run --root / -- /bin/busybox cat "$D.host" >"$TMP/out" 2>&1 || rc=$?
  [ $rc != 0 ] && ! grep -q secret "$TMP/out" || fail "a host /tmp file was read in the sandbox"
  echo "ok   a file in the host's /tmp is not seen: $(head -n 1 "$TMP/out")"
fi

# Python, compared with the native run where the behaviour is Linux's.
PY=/usr/bin/python3
if [ -x $PY ]; then
  cat >"$TMP/t.py" <<'EOF'
import os, pathlib, shutil, sqlite3, tarfile, io, socket, errno, select, sys
base = sys.argv[1]
os.mkdir(base)
try:
    os.mkdir(base + "/nope/x")
except FileNotFoundError as e:
    print("mkdir:", type(e).__name__)
pathlib.Path(base + "/a/b/c").mkdir(parents=True)
print("parents:", sorted(os.listdir(base)), os.path.isdir(base + "/a/b/c"))
p = base + "/tool"
open(p, "w").write("#!/bin/sh\n")
os.chmod(p, 0o755)
print("which:", shutil.which("tool", path=base) == p)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    ti = tarfile.TarInfo("m.txt"); ti.size = 2; ti.mtime = 1234567890
    t.addfile(ti, io.BytesIO(b"hi"))
buf.seek(0)
with tarfile.open(fileobj=buf) as t:
    t.extractall(base + "/x")
print("tar mtime:", int(os.stat(base + "/x/m.txt").st_mtime))
con = sqlite3.connect(base + "/db")
print("wal:", con.execute("pragma journal_mode=wal").fetchone()[0])
con.execute("create table t(x)"); con.executemany("insert into t values (?)", [(i,) for i in range(100)]); con.commit()
print("sqlite:", con.execute("select count(*), sum(x) from t").fetchone())
con.close()
f = open(base + "/tool")
try:
    socket.socket(fileno=f.fileno())
except OSError as e:
    print("socket(fileno):", errno.errorcode[e.errno])
print("select:", select.select([f], [], [], 0)[0] == [f])
EOF
  P=/tmp/cowfork-py.$$
  cleanup_fn "rm -rf '$P'"
  $PY "$TMP/t.py" "$P" >"$TMP/native" 2>&1 || fail "python natively: $(cat "$TMP/native")"
  rm -rf "$P"
  "$COWFORK" run --root / -- $PY "$TMP/t.py" "$P" >"$TMP/sandbox" 2>&1 || fail "python in the sandbox: $(cat "$TMP/sandbox")"
  diff -u "$TMP/native" "$TMP/sandbox" || fail "python: the sandbox differs from Linux"
  echo "ok   python: $(tr '\n' ';' <"$TMP/native")"
fi
