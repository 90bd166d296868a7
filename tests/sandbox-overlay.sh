#!/usr/bin/env bash
# Every path writable, nothing written to the host (issue 15, items 1 and
# 4): with --root / (the host's own files as the lower layer) a sandbox
# writes to /usr, /root, /etc and its --cwd, edits a root file with sed -i,
# deletes one, lists the merged view; the host's files are unchanged after
# (checksums). Python's os.makedirs/os.rename/shutil.rmtree in a fresh
# directory under / as natively; shutil.move of a root directory (EXDEV:
# copied). A template's writes are seen by its children, a child's are not
# seen by its siblings. The shim-level checks run without /dev/kvm in
# build/tests/shim_ovl.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
BB=/bin/busybox
[ -x $BB ] || skip "no $BB"
[ -f /etc/debian_version ] || skip "no /etc/debian_version to delete"

host_sums() {
  sha256sum /etc/passwd /etc/debian_version $BB
  ls -a /usr /root /etc | sha256sum
}

# The program by a relative path from --cwd; the script's name relative too.
cp $BB "$TMP/busybox"
host_sums >"$TMP/before"
cat >"$TMP/w.sh" <<'EOF'
set -e
echo hi >/usr/cowfork-ovl-test
cat /usr/cowfork-ovl-test
mkdir -p /root/cowfork-ovl-dir/a/b
echo deep >/root/cowfork-ovl-dir/a/b/f
cat /root/cowfork-ovl-dir/a/b/f
sed -i 's/^root:/ROOT:/' /etc/passwd
head -n 1 /etc/passwd | cut -d: -f1
rm /etc/debian_version
[ -e /etc/debian_version ] || echo "debian_version gone"
ls /etc | grep -c '^debian_version$' || true
ls /usr | grep -E '^(bin|cowfork-ovl-test)$' | tr '\n' ' '; echo
echo "in cwd" >here
cat "$PWD/here"
pwd
EOF
rc=0
cowfork run --root / --mem 128M --cwd "$TMP" -- ./busybox sh w.sh >"$TMP/out" 2>&1 || rc=$?
cat >"$TMP/expect" <<EOF
hi
deep
ROOT
debian_version gone
0
bin cowfork-ovl-test 
in cwd
$TMP
EOF
[ $rc = 0 ] && diff -u "$TMP/expect" "$TMP/out" || fail "writes in the sandbox (exit $rc): $(cat "$TMP/out")"
echo "ok   writes to /usr, /root, /etc (sed -i, rm) and the cwd, merged ls: as expected"
rm -f "$TMP/out" "$TMP/expect"
host_sums >"$TMP/after"
diff -u "$TMP/before" "$TMP/after" || fail "the host's files changed"
[ ! -e /usr/cowfork-ovl-test ] && [ ! -e /root/cowfork-ovl-dir ] && [ ! -e "$TMP/here" ] ||
  fail "a file written in the sandbox is on the host"
echo "ok   the host's files are untouched (checksums of /etc/passwd, /etc/debian_version, busybox; ls of /usr /root /etc)"

# PWD agrees with --cwd; without --cwd the sandbox starts in /.
out=$(cowfork run --root / --cwd /usr/share -- $BB sh -c 'echo "$PWD $(pwd)"')
[ "$out" = "/usr/share /usr/share" ] || fail "--cwd /usr/share: '$out'"
out=$(cowfork run --root / -- $BB pwd)
[ "$out" = / ] || fail "default cwd: '$out'"
rc=0; cowfork run --root / --cwd /nonexistent -- $BB true 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "No such file" "$TMP/err" || fail "--cwd /nonexistent: exit $rc: $(cat "$TMP/err")"
echo "ok   --cwd: PWD and getcwd agree; default /; a missing one: $(head -n 1 "$TMP/err")"

# Python against Linux in a fresh directory under / (removed at the end).
if [ -x /usr/bin/python3 ]; then
  D=/cowfork-ovl-py.$$
  cleanup_fn "rm -rf '$D'"
  cat >"$TMP/t.py" <<'EOF'
import os, shutil, sys
d = sys.argv[1]
os.makedirs(d + "/a/b/c")
with open(d + "/a/b/c/f", "w") as f:
    f.write("x" * 5000)
os.symlink("b/c/f", d + "/a/link")
print(os.readlink(d + "/a/link"), open(d + "/a/link").read()[:3])
os.rename(d + "/a/b", d + "/a/b2")
os.rename(d + "/a/b2/c/f", d + "/a/g")
os.link(d + "/a/g", d + "/a/h")
print(sorted(os.listdir(d + "/a")), os.stat(d + "/a/h").st_nlink)
for root, dirs, files in os.walk(d):
    print(root[len(d):] or "/", sorted(dirs), sorted(files))
try:
    os.rmdir(d + "/a")
except OSError as e:
    print("rmdir:", e.strerror)
shutil.rmtree(d)
print(os.path.exists(d))
EOF
  same_as_native "python makedirs/rename/link/rmtree under /" /usr/bin/python3 "$TMP/t.py" "$D"
  [ ! -e "$D" ] || fail "$D left on the host"
  # shutil.move of a root directory: rename is EXDEV (overlayfs without
  # redirect_dir), so it copies and deletes; the host keeps it.
  out=$(cowfork run --root / --mem 256M -- /usr/bin/python3 -c '
import os, shutil
shutil.move("/usr/share/doc/adduser", "/root/moved")
print(os.path.exists("/usr/share/doc/adduser"), sorted(os.listdir("/root/moved")) == sorted(os.listdir("/root/moved")), os.path.isdir("/root/moved"))
try:
    os.rename("/usr/share/doc", "/root/doc")
except OSError as e:
    print(e.errno == 18)
')
  [ "$out" = "$(printf 'False True True\nTrue')" ] || fail "shutil.move of a root directory: '$out'"
  [ -d /usr/share/doc/adduser ] && [ ! -e /root/moved ] || fail "shutil.move reached the host"
  echo "ok   shutil.move of a root directory copies (rename EXDEV); the host keeps it"
fi

# A template's upper layer forks with it: children see its writes, not
# each other's.
cowfork template create ovl --root / --mem 64M -- $BB sh -c \
  'echo parent >/etc/ovl-parent; rm /etc/debian_version; exec /bin/busybox sh' 2>"$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
cat >"$TMP/in" <<'EOF'
cat /etc/ovl-parent
[ -e /etc/debian_version ] && echo "debian_version back" || echo "debian_version gone"
[ -e /etc/ovl-child ] && echo "LEAK: $(cat /etc/ovl-child)" || echo "no sibling's file"
echo mine >/etc/ovl-child
EOF
out=$(cowfork fork ovl -n 3 --input "$TMP/in")
want=$(for i in 1 2 3; do printf 'parent\ndebian_version gone\nno sibling'"'"'s file\n'; done)
[ "$out" = "$want" ] || fail "children of the template: '$out'"
[ ! -e /etc/ovl-parent ] && [ ! -e /etc/ovl-child ] && [ -f /etc/debian_version ] || fail "the template's writes reached the host"
echo "ok   3 children see the template's writes and whiteout, not each other's"
