#!/usr/bin/env bash
# cowfork root create/ls/rm without a sandbox (issue 12, item 1): a root from
# Debian packages (busybox-static), from a directory, from a tar file; the
# method and bytes reported are checked against the tree itself (an inode
# shared with the host file is a hardlink, a reflink shares extents on XFS);
# hostile tar members are refused and nothing lands outside the tree.
. "$(dirname "$0")/functions.sh"
requires dpkg-query tar python3 stat
dpkg-query -W -f='${db:Status-Abbrev}' busybox-static 2>/dev/null | grep -q '^ii' ||
  skip "busybox-static is not installed (apt-get install busybox-static)"
export COWFORK_ROOTS="$TMP/roots" # not the shared default root of tests/run
R=$COWFORK_ROOTS
jget() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# --- from packages ---
cowfork root create bb --packages busybox-static --json >"$TMP/bb.json" 2>"$TMP/err" || fail "root create bb: $(cat "$TMP/err")"
T=$R/bb/root
[ -x "$T/usr/bin/busybox" ] || [ -x "$T/bin/busybox" ] || fail "no busybox in the root"
[ "$(readlink "$T/bin")" = "$(readlink /bin)" ] || fail "/bin is not the host's link ($(readlink "$T/bin"))"
cmp -s /bin/busybox "$T/bin/busybox" || fail "busybox differs"
[ -f "$T/usr/lib/cowfork/driver.py" ] && cmp -s "$(dirname "$0")/../shim/py/driver.py" "$T/usr/lib/cowfork/driver.py" ||
  fail "the driver is not at /usr/lib/cowfork/driver.py"
[ -x "$T/usr/bin/dpkg" ] || fail "the Essential set (dpkg) is missing"
echo "ok   root bb: busybox, the Essential set, /bin as the host links it, the driver ($(jget 'j["packages"]' <"$TMP/bb.json") packages)"
# The host's secrets are in no package: not in the root.
[ ! -e "$T/etc/shadow" ] && [ ! -e "$T/etc/gshadow" ] || fail "the root has a shadow file"
[ -z "$(ls -A "$T/root" 2>/dev/null)" ] || fail "the root's /root is not empty: $(ls -A "$T/root")"
[ -z "$(ls -A "$T/home" 2>/dev/null)" ] || fail "the root's /home is not empty"
cmp -s "$T/etc/passwd" /usr/share/base-passwd/passwd.master || fail "/etc/passwd is not base-passwd's master"
echo "ok   no /etc/shadow, an empty /root and /home, /etc/passwd from base-passwd's master"

# Truthful figures: every file whose inode is the host file's (same path) is
# a hardlink, every other one a copy (plus the driver and /etc/passwd,
# /etc/group, which are written). Regular files only.
python3 - "$T" "$TMP/bb.json" <<'EOF' || fail "reported figures do not match the tree"
import json, os, sys
top, j = sys.argv[1], json.load(open(sys.argv[2]))
m = j["methods"]
same = other = same_b = other_b = 0
for d, dirs, files in os.walk(top):
    for f in files:
        p = os.path.join(d, f)
        st = os.lstat(p)
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        h = "/" + os.path.relpath(p, top)
        try:
            hs = os.stat(h)
            shared = (hs.st_dev, hs.st_ino) == (st.st_dev, st.st_ino)
        except OSError:
            shared = False
        if shared:
            same += 1; same_b += st.st_size
        else:
            other += 1; other_b += st.st_size
written = 1 + 2  # driver.py, /etc/passwd, /etc/group (not cloned: counted as read/write but passwd/group only)
copied = m["copy_file_range"]["files"] + m["read/write"]["files"]
print("hardlink reported %d/%d B, found %d/%d B; copies reported %d, found %d (+ the driver)" %
      (m["hardlink"]["files"], m["hardlink"]["bytes"], same, same_b, copied, other))
if os.stat(top).st_dev == os.stat("/usr/bin").st_dev:
    ok = m["hardlink"]["files"] == same and m["hardlink"]["bytes"] == same_b and copied + 1 == other
else:
    ok = m["hardlink"]["files"] == 0 and same == 0
sys.exit(0 if ok and m["reflink"]["files"] == 0 else 1)
EOF
echo "ok   figures: $(jget '"hardlink %d files %d B, copy %d files" % (j["methods"]["hardlink"]["files"], j["methods"]["hardlink"]["bytes"], j["methods"]["copy_file_range"]["files"] + j["methods"]["read/write"]["files"])' <"$TMP/bb.json")"
# /etc is never hardlinked (an admin edits conffiles in place), nor a set-id file.
find "$T/etc" -type f -links +1 | grep -q . && fail "a file under /etc is hardlinked: $(find "$T/etc" -type f -links +1 | head -3)"
find "$T" -type f -perm /6000 | grep -q . && fail "a set-id file in the root: $(find "$T" -type f -perm /6000 | head -3)"
echo "ok   nothing under /etc hardlinked, no set-id file"
[ "$(stat -c %a "$R")" = 700 ] || fail "the roots directory is $(stat -c %a "$R"), not 0700"
[ "$(stat -c %a "$T/usr/bin")" = "$(stat -c %a /usr/bin)" ] || fail "directory modes not the host's"
[ -z "$(ls -A "$R" | grep '^\.')" ] || fail "temp debris in $R: $(ls -A "$R")"

# Errors: a package that is not installed, a taken name, a bad name.
rc=0; cowfork root create x --packages no-such-package-zz 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "no-such-package-zz' is not installed" "$TMP/err" || fail "missing package: rc $rc $(cat "$TMP/err")"
rc=0; cowfork root create bb --packages busybox-static 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "exists already" "$TMP/err" || fail "taken name: rc $rc $(cat "$TMP/err")"
rc=0; cowfork root create ../x --from-dir "$TMP" 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "bad root name" "$TMP/err" || fail "bad name: rc $rc $(cat "$TMP/err")"
[ ! -e "$R/x" ] && [ -z "$(ls -A "$R" | grep '^\.')" ] || fail "a failed create left something: $(ls -A "$R")"
echo "ok   a missing package, a taken name and a bad name are refused, leaving nothing"

# --- from a directory: copies (not hardlinks: its files may be written later) ---
S=$TMP/src
mkdir -p "$S/bin" "$S/data/sub"
cp /bin/busybox "$S/bin/busybox"
printf 'hello\n' >"$S/data/sub/f.txt"
chmod 0640 "$S/data/sub/f.txt"
chmod 0750 "$S/data"
ln -s busybox "$S/bin/sh"
cowfork root create fromdir --from-dir "$S" --json >"$TMP/d.json" || fail "root create --from-dir"
D=$R/fromdir/root
cmp -s "$S/bin/busybox" "$D/bin/busybox" && [ "$(readlink "$D/bin/sh")" = busybox ] || fail "--from-dir tree"
[ "$(stat -c %i "$S/bin/busybox")" != "$(stat -c %i "$D/bin/busybox")" ] || fail "--from-dir hardlinked a file"
[ "$(stat -c %a "$D/data/sub/f.txt")" = 640 ] && [ "$(stat -c %a "$D/data")" = 750 ] || fail "--from-dir modes"
[ "$(jget 'j["methods"]["hardlink"]["files"]' <"$TMP/d.json")" = 0 ] || fail "--from-dir reported hardlinks"
[ "$(jget 'sum(v["files"] for v in j["methods"].values())' <"$TMP/d.json")" = 2 ] || fail "--from-dir file count: $(cat "$TMP/d.json")"
echo "ok   --from-dir: files copied ($(jget '[k for k, v in j["methods"].items() if v["files"]]' <"$TMP/d.json")), symlink and modes kept"

# --- from a tar file (as docker export writes one, made with tar(1)) ---
(cd "$S" && ln bin/busybox bin/bb-hard && tar -cf "$TMP/ok.tar" bin data && rm bin/bb-hard)
printf 'x' >"$TMP/.wh.gone" && tar -C "$TMP" -rf "$TMP/ok.tar" .wh.gone
cowfork root create fromtar --from-tar "$TMP/ok.tar" --json >"$TMP/t.json" || fail "root create --from-tar"
X=$R/fromtar/root
cmp -s /bin/busybox "$X/bin/busybox" && [ "$(readlink "$X/bin/sh")" = busybox ] || fail "--from-tar tree"
[ "$(stat -c %i "$X/bin/busybox")" = "$(stat -c %i "$X/bin/bb-hard")" ] || fail "--from-tar: the hardlink member is not a hardlink"
[ "$(stat -c %a "$X/data/sub/f.txt")" = 640 ] && [ "$(stat -c %a "$X/data")" = 750 ] || fail "--from-tar modes"
[ ! -e "$X/.wh.gone" ] && [ "$(jget 'j["whiteouts"]' <"$TMP/t.json")" = 1 ] || fail "--from-tar whiteout"
[ -f "$X/usr/lib/cowfork/driver.py" ] || fail "--from-tar: no driver"
echo "ok   --from-tar: files, a symlink, a hardlink member, modes; a whiteout skipped and counted"

# Hostile members: '../evil' (tar -P keeps it), an absolute name, a member
# under a symlink member that points out of the tree. Each refused, nothing
# written outside, no root left behind.
mkdir -p "$TMP/h/in" && printf 'evil\n' >"$TMP/h/evil"
(cd "$TMP/h/in" && tar -cPf "$TMP/dotdot.tar" ../evil)
tar -tPf "$TMP/dotdot.tar" | grep -qx '../evil' || fail "tar did not keep the ../evil name: $(tar -tPf "$TMP/dotdot.tar")"
python3 - "$TMP" <<'EOF'
import io, sys, tarfile
t = sys.argv[1]
def add(tf, name, data=b"x", link=None):
    ti = tarfile.TarInfo(name)
    if link is not None:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
        tf.addfile(ti)
    else:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
with tarfile.open(t + "/abs.tar", "w", format=tarfile.GNU_FORMAT) as tf:
    add(tf, "/abs-evil")
with tarfile.open(t + "/through.tar", "w", format=tarfile.GNU_FORMAT) as tf:
    add(tf, "esc", link=t + "/outside")
    add(tf, "esc/pwned")
EOF
mkdir -p "$TMP/outside"
for f in dotdot abs through; do
  rc=0; cowfork root create bad-$f --from-tar "$TMP/$f.tar" 2>"$TMP/err" || rc=$?
  [ $rc = 1 ] || fail "$f.tar: accepted (rc $rc)"
  [ ! -e "$R/bad-$f" ] || fail "$f.tar: a root was left"
  echo "ok   $f.tar refused: $(cat "$TMP/err")"
done
[ ! -e "$TMP/evil2" ] && [ ! -e "$TMP/outside/pwned" ] && [ ! -e /abs-evil ] || fail "a member landed outside the tree"
[ -z "$(ls -A "$R" | grep '^\.')" ] || fail "temp debris in $R: $(ls -A "$R")"
grep -q "a '..' component" <(cowfork root create q --from-tar "$TMP/dotdot.tar" 2>&1) || fail "the '..' refusal does not say why"
grep -q "symlink" <(cowfork root create q --from-tar "$TMP/through.tar" 2>&1) || fail "the symlink refusal does not say why"

# --- ls, rm ---
cowfork root ls >"$TMP/ls" && grep -q '^bb  *packages' "$TMP/ls" && grep -q '^fromtar  *tar' "$TMP/ls" || fail "root ls: $(cat "$TMP/ls")"
[ "$(cowfork root ls --json | jget '[r["name"] for r in j]')" = "['bb', 'fromdir', 'fromtar']" ] || fail "root ls --json"
[ "$(cowfork root ls --json | jget '[r["source"] for r in j]')" = "['packages', 'dir', 'tar']" ] || fail "root ls --json sources"
cowfork root rm fromdir fromtar || fail "root rm"
[ ! -e "$R/fromdir" ] && [ ! -e "$R/fromtar" ] || fail "root rm left the trees"
rc=0; cowfork root rm fromdir 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "no such root" "$TMP/err" || fail "rm of a missing root: $(cat "$TMP/err")"
[ -e /bin/busybox ] && [ -e "$S/bin/busybox" ] || fail "root rm removed a source"
echo "ok   root ls (human, --json), root rm (sources untouched; a missing root is an error)"

# --- the default root: Essential + busybox-static + python3 + numpy ---
s0=$(date +%s.%N)
cowfork root create default --json >"$TMP/def.json" 2>"$TMP/err" || fail "root create default: $(cat "$TMP/err")"
secs=$(awk -v s="$s0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
DF=$R/default/root
[ -x "$DF/bin/busybox" ] || fail "default: no busybox"
if [ -x /usr/bin/python3 ]; then
  [ -e "$DF/usr/bin/python3" ] || fail "default: no python3"
  ls "$DF"/usr/lib/python3.*/__pycache__/os.*.pyc >/dev/null 2>&1 || fail "default: no compiled standard library"
fi
python3 -c 'import numpy' 2>/dev/null && { [ -f "$DF/usr/lib/python3/dist-packages/numpy/__init__.py" ] || fail "default: no numpy"; }
# update-alternatives' links are in no package's list: numpy needs libblas.so.3 through them.
if [ -e /usr/lib/x86_64-linux-gnu/libblas.so.3 ] && [ -f "$DF/usr/lib/python3/dist-packages/numpy/__init__.py" ]; then
  [ "$(cd "$DF" && readlink -f usr/lib/x86_64-linux-gnu/libblas.so.3 | sed "s|^$DF||")" = "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)" ] ||
    [ -e "$DF$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)" ] && [ -L "$DF/usr/lib/x86_64-linux-gnu/libblas.so.3" ] &&
    [ -L "$DF/etc/alternatives/$(basename "$(readlink /usr/lib/x86_64-linux-gnu/libblas.so.3)")" ] || fail "default: no libblas.so.3 alternative"
fi
echo "ok   default root in $secs s: $(jget '"%d packages, %d files hardlinked (%d B), %d reflinked, %d copied (%d B)" % (j["packages"], j["methods"]["hardlink"]["files"], j["methods"]["hardlink"]["bytes"], j["methods"]["reflink"]["files"], j["methods"]["copy_file_range"]["files"] + j["methods"]["read/write"]["files"], j["copied_bytes"])' <"$TMP/def.json")"

# --- reflink: a store on XFS with reflink; --from-dir of a directory there ---
if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
  mount_xfs_reflink "$TMP/xfs"
   mkdir -p "$TMP/xfs/src" && head -c 3000000 /dev/urandom >"$TMP/xfs/src/blob" && cp /bin/busybox "$TMP/xfs/src/"
   COWFORK_ROOTS=$TMP/xfs/roots cowfork root create rl --from-dir "$TMP/xfs/src" --json >"$TMP/rl.json" || fail "root create on XFS"
   [ "$(jget 'j["methods"]["reflink"]["files"]' <"$TMP/rl.json")" = 2 ] || fail "on XFS: not reflinked: $(cat "$TMP/rl.json")"
   [ "$(jget 'j["methods"]["reflink"]["bytes"]' <"$TMP/rl.json")" = $((3000000 + $(stat -c %s /bin/busybox))) ] || fail "reflink bytes"
   cmp -s "$TMP/xfs/src/blob" "$TMP/xfs/roots/rl/root/blob" || fail "reflinked blob differs"
   # From packages onto another file system: no reflink, no hardlink: copies, said so.
   COWFORK_ROOTS=$TMP/xfs/roots cowfork root create pk --packages busybox-static --json >"$TMP/pk.json" || fail "packages onto XFS"
   [ "$(jget 'j["methods"]["hardlink"]["files"] + j["methods"]["reflink"]["files"]' <"$TMP/pk.json")" = 0 ] ||
     fail "packages onto XFS: claims sharing across file systems: $(cat "$TMP/pk.json")"
   echo "ok   on XFS: --from-dir reflinked ($(jget 'j["methods"]["reflink"]' <"$TMP/rl.json")); packages from another file system copied ($(jget 'j["copied_bytes"]' <"$TMP/pk.json") B)"
else
  echo "ok   # SKIP reflink case: needs root and mkfs.xfs"
fi
