#!/usr/bin/env bash
# The store is private and checked (issue 12, item 5), without a sandbox:
# - under umask 000, everything image import/commit, a fabricated template
#   and a daemon run make in the store is 0700 (directories) or 0600/0400
#   (files); an older store with wider modes is made private when opened,
#   said once on stderr;
# - a second daemon on a store is refused at once (not after 3 s);
# - a flipped byte in a layer makes image export (both paths), image commit
#   over it and disk serve refuse, naming the image and the layer; image
#   info (metadata only) still works and image verify names the layer.
# The fork and daemon-run side (needs KVM) is tests/sandbox-store.sh.
. "$(dirname "$0")/functions.sh"
requires python3 curl
here=$(cd "$(dirname "$0")" && pwd)

# modes DIR: every entry not 0700 (dirs) or 0600/0400 (files, sockets), listed.
modes() {
  find "$1" \( -type d ! -perm 0700 \) -o \( ! -type d ! -type l ! -perm 0600 ! -perm 0400 \) -printf '%m %p\n'
}

umask 000
python3 "$here/gen-raw.py" "$TMP/a.raw" 8 2>/dev/null || head -c 8M /dev/urandom >"$TMP/a.raw"
cowfork image import "$TMP/a.raw" a >/dev/null
cp "$TMP/a.raw" "$TMP/b.raw"
printf 'changed' | dd of="$TMP/b.raw" bs=1 seek=8192 conv=notrunc 2>/dev/null
cowfork image commit a "$TMP/b.raw" b >/dev/null
python3 "$here/mk-template.py" "$COWFORK" "$COWFORK_STORE" t >/dev/null
# mk-template.py writes the state file itself (Python, umask 000): only
# cowfork's own files count; its state file is made by cf_sandbox_save,
# checked in tests/sandbox-store.sh.
rm -f "$COWFORK_STORE/templates/t"
export COWFORK_SOCKET="$TMP/d.sock"
start_server DPID "$COWFORK_SOCKET" "$COWFORK" daemon -q
for ((i = 0; i < 300; i++)); do curl -s --unix-socket "$COWFORK_SOCKET" -o /dev/null http://x/v1/health && break; sleep 0.01; done
[ -f "$COWFORK_STORE/daemon/state.json" ] || fail "the daemon wrote no state.json"

# A second daemon on the same store: refused at once, not after 3 s.
t0=$(date +%s.%N)
if "$COWFORK" daemon -q --socket "$TMP/d2.sock" 2>"$TMP/err"; then fail "a second daemon started on the same store"; fi
t1=$(date +%s.%N)
grep -q "another cowfork daemon serves the store" "$TMP/err" || fail "second daemon: $(cat "$TMP/err")"
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 1) }' ||
  fail "the second daemon was refused only after $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s"
echo "ok   a second daemon on the store is refused at once: $(cat "$TMP/err")"
kill "$DPID"; wait "$DPID" 2>/dev/null || true

bad=$(modes "$COWFORK_STORE")
[ -z "$bad" ] || fail "under umask 000, not private: $bad"
n=$(find "$COWFORK_STORE" | wc -l)
[ "$(stat -c %a "$COWFORK_STORE"/layers/* | sort -u)" = 400 ] || fail "layers: $(stat -c '%a %n' "$COWFORK_STORE"/layers/*)"
[ "$(stat -c %a "$COWFORK_STORE"/images/* | sort -u)" = 400 ] || fail "images: $(stat -c '%a %n' "$COWFORK_STORE"/images/*)"
[ "$(stat -c %a "$COWFORK_STORE/daemon/state.json")" = 600 ] || fail "state.json: $(stat -c %a "$COWFORK_STORE/daemon/state.json")"
echo "ok   under umask 000 all $n entries of the store are 0700/0600/0400 (layers and images 0400)"

# A store an older cowfork left readable: made private at the next open, said once.
chmod 0755 "$COWFORK_STORE" "$COWFORK_STORE/layers" "$COWFORK_STORE/images" "$COWFORK_STORE/daemon"
chmod 0444 "$COWFORK_STORE"/layers/* "$COWFORK_STORE"/images/*
chmod 0644 "$COWFORK_STORE/daemon/state.json"
cowfork image ls >/dev/null 2>"$TMP/said"
grep -q "was readable by others (mode 0755): made it private" "$TMP/said" || fail "no word of the fix: $(cat "$TMP/said")"
bad=$(modes "$COWFORK_STORE")
[ -z "$bad" ] || fail "not made private: $bad"
[ "$(stat -c %a "$COWFORK_STORE"/layers/* | sort -u)" = 400 ] || fail "layers after the fix: $(stat -c '%a %n' "$COWFORK_STORE"/layers/*)"
cowfork image ls >/dev/null 2>"$TMP/err"
[ ! -s "$TMP/err" ] || fail "said twice: $(cat "$TMP/err")"
echo "ok   an older store (0755/0444) is made private when opened, said once: $(cat "$TMP/said")"

# A flipped byte in the layer of image a (which b shares).
layer=$(cowfork image info a --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
lf=$COWFORK_STORE/layers/$layer
[ -f "$lf" ] || fail "no layer file $lf"
chmod u+w "$lf"
python3 - "$lf" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096 + 17)
    b = f.read(1)
    f.seek(4096 + 17)
    f.write(bytes([b[0] ^ 0x20]))
PY
chmod 0400 "$lf"
cowfork image info a >/dev/null || fail "image info (no data read) refused"
expect_refused() { # WHAT CMD...: fails, naming the image and the layer as corrupted
  local what=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then fail "$what used a corrupted layer: $(cat "$TMP/out")"; fi
  grep -q "layer $layer is corrupted" "$TMP/err" || fail "$what: $(cat "$TMP/err")"
  echo "ok   $what refused: $(head -n 1 "$TMP/err")"
}
expect_refused "image export a (one layer: the clone path)" "$COWFORK" image export a "$TMP/x.raw"
grep -q "image 'a'" "$TMP/err" || fail "the message does not name the image: $(cat "$TMP/err")"
expect_refused "image export b (a child sharing that layer)" "$COWFORK" image export b "$TMP/y.raw"
expect_refused "image commit over it" "$COWFORK" image commit a "$TMP/b.raw" c
expect_refused "disk serve" "$COWFORK" disk serve --export x=b --unix "$TMP/nbd.sock"
[ ! -e "$TMP/nbd.sock" ] || fail "disk serve listened"
if cowfork image verify a >/dev/null 2>"$TMP/err"; then fail "image verify passed a corrupted layer"; fi
grep -q "$layer" "$TMP/err" || fail "image verify: $(cat "$TMP/err")"
echo "ok   image verify names it too"
