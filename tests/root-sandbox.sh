#!/usr/bin/env bash
# Sandboxes in roots of their own (issue 12, item 1): without --root a
# sandbox runs in the root "default" (Essential + busybox-static + python3 +
# numpy), where the host's /etc/shadow, /root, the project directory and the
# test's own files do not exist; busybox runs in a root made from its
# package, from a directory and from a tar; `--root /` still shows the host
# (unsafe, on purpose); a root a template uses is not removed.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
BB=/bin/busybox
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }

# The default root: python3 with numpy runs as natively.
if [ -x /usr/bin/python3 ] && python3 -c 'import numpy' 2>/dev/null; then
  code='import numpy, sys; print(numpy.arange(6).reshape(2, 3).sum(axis=0).tolist(), sys.version_info[:2])'
  want=$(cd / && python3 -c "$code")
  got=$(cowfork run --timeout 120 -- /usr/bin/python3 -c "$code" 2>"$TMP/err") || fail "python3 in the default root: $(cat "$TMP/err")"
  [ "$got" = "$want" ] || fail "python3 in the default root: [$got], natively [$want]"
  ok "cowfork run -- /usr/bin/python3 (default root) prints what it prints natively: $got"
fi
realroot=$(readlink -f "$COWFORK_STORE/roots/default/root")

# Isolation: what the host has, the default root has not.
[ -e /etc/shadow ] || fail "the host has no /etc/shadow to hide"
rc=0; cowfork run -- $BB cat /etc/shadow >"$TMP/out" 2>&1 || rc=$?
[ $rc != 0 ] && ! grep -q '^root:' "$TMP/out" || fail "the guest read the host's /etc/shadow: $(head -c 200 "$TMP/out")"
ok "/etc/shadow: $(head -1 "$TMP/out")"
mkdir -p "$TMP/secret" && echo s3cret >"$TMP/secret/token"
for p in /root "$PROJECT" "$TMP/secret"; do
  out=$(cowfork run -- $BB ls -A "$p" 2>&1) && [ -n "$out" ] && fail "the guest lists $p: $out"
  ok "$p: nothing to see ($(echo "$out" | head -1))"
done
rc=0; cowfork run -- $BB cat "$TMP/secret/token" >"$TMP/out" 2>&1 || rc=$?
[ $rc != 0 ] && ! grep -q s3cret "$TMP/out" || fail "the guest read the test's file"
ok "the test's own file: $(cat "$TMP/out")"
# The root's /etc/passwd is base-passwd's, not the host's.
[ "$(cowfork run -- $BB cat /etc/passwd)" = "$(cat /usr/share/base-passwd/passwd.master)" ] || fail "/etc/passwd in the default root"
ok "/etc/passwd is base-passwd's master"
# --root / is the host (unsafe, documented): the same reads work there.
[ "$(cowfork run --root / -- $BB cat "$TMP/secret/token")" = s3cret ] || fail "--root / does not show the host"
cowfork run --root / -- $BB ls "$PROJECT" | grep -q '^Makefile$' || fail "--root /: project not visible"
ok "--root / still shows the host (the control: the checks above would see a leak)"

# busybox in a root of its own package, from a directory, from a tar.
COWFORK_ROOTS_SAVE=${COWFORK_ROOTS-}
cowfork root create bb --packages busybox-static >/dev/null 2>"$TMP/err" || fail "root create bb: $(cat "$TMP/err")"
[ "$(cowfork run --root bb -- $BB sh -c 'echo $((6 * 7)); ls /usr/bin/busybox')" = "42
/usr/bin/busybox" ] || fail "busybox in root bb"
ok "busybox runs in a root made from busybox-static"
mkdir -p "$TMP/d/bin" && cp $BB "$TMP/d/bin/" && ln -s busybox "$TMP/d/bin/sh" && echo from-dir >"$TMP/d/what"
cowfork root create dir --from-dir "$TMP/d" >/dev/null || fail "root create --from-dir"
# (/tmp: the sandbox's own, a directory of its writable upper layer, listed
# in / though the root has none)
[ "$(cowfork run --root dir -- /bin/busybox cat /what)" = from-dir ] &&
  [ "$(cowfork run --root dir -- /bin/busybox ls /)" = "bin
tmp
usr
what" ] || fail "busybox in the --from-dir root: $(cowfork run --root dir -- /bin/busybox ls / 2>&1)"
ok "busybox runs in a --from-dir root, which holds only its files (and the driver)"
tar -C "$TMP/d" -cf "$TMP/d.tar" .
cowfork root create tarred --from-tar "$TMP/d.tar" >/dev/null || fail "root create --from-tar"
[ "$(cowfork run --root tarred -- /bin/busybox cat /what)" = from-dir ] || fail "busybox in the --from-tar root"
# A host directory by path (with a '/') works as before.
[ "$(cowfork run --root "$TMP/d" -- /bin/busybox cat /what)" = from-dir ] || fail "--root DIR"
ok "busybox runs in a --from-tar root and in a host directory given by path"
rc=0; cowfork run --root nosuch -- /bin/sh -c true 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "no root 'nosuch'" "$TMP/err" || fail "--root nosuch: rc $rc $(cat "$TMP/err")"
ok "--root NAME of no root: $(cat "$TMP/err")"

# A template records its root; root rm refuses while it exists.
cowfork template create t --root bb --mem 64M -- $BB sh 2>/dev/null || fail "template create --root bb"
printf 'exec ls /usr/lib/cowfork\n' >"$TMP/in.sh" # exec: the shell would fork for a command it reads
[ "$(cowfork fork t -n 1 --input "$TMP/in.sh" 2>&1)" = driver.py ] && [ ! -e "$COWFORK_STORE/roots/bb/root/usr/bin/python3" ] ||
  fail "the template's child is not in root bb: $(cowfork fork t -n 1 --input "$TMP/in.sh" 2>&1)"
rc=0; cowfork root rm bb 2>"$TMP/err" || rc=$?
[ $rc = 1 ] && grep -q "templates made in it: t" "$TMP/err" || fail "root rm of a used root: rc $rc $(cat "$TMP/err")"
cowfork template rm t && cowfork root rm bb || fail "root rm after template rm"
ok "root rm refuses a root a template was made in, then removes it"

# The Python driver is in the default root, where the README runs it.
if [ -x /usr/bin/python3 ]; then
  cowfork template create py --mem 256M -- /usr/bin/python3 /usr/lib/cowfork/driver.py --preload json 2>"$TMP/err" ||
    fail "template create with the driver: $(cat "$TMP/err")"
  printf 'print(json.dumps([1]))\n' >"$TMP/in.py"
  [ "$(cowfork fork py -n 1 --input "$TMP/in.py")" = "[1]" ] || fail "driver child"
  ok "/usr/lib/cowfork/driver.py runs from the default root (template $realroot)"
fi
echo "1..$n"
