#!/usr/bin/env bash
# The store is private and checked, with sandboxes (issue 12, item 5; the
# side without KVM is tests/store-private.sh):
# - under umask 000, template create, fork and a daemon run (create from a
#   template, pause, resume) leave every directory 0700 and every file
#   0600/0400 (the template's state file and image 0400);
# - a flipped byte in the template's layer: `cowfork fork` (file and uffd
#   backends) and the daemon's create from that template refuse, naming the
#   image and the layer; nothing runs.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
requires curl python3
modes() {
  # roots keep their packages' modes (programs must run) behind the 0700 roots directory
  find "$1" -path "$1/roots/*" -prune -o \( -type d ! -perm 0700 \) -o \( ! -type d ! -type l ! -perm 0600 ! -perm 0400 \) -printf '%m %p\n'
}
umask 000
cowfork template create sh --mem 64M -- /bin/busybox sh 2>"$TMP/err" || fail "template create: $(cat "$TMP/err")"
echo 'echo hi' >"$TMP/hi"
echo 'echo ran' >"$TMP/ran"
[ "$(cowfork fork sh --input "$TMP/hi")" = hi ] || fail "fork of a good template"
export COWFORK_SOCKET="$TMP/d.sock"
start_server DPID "$COWFORK_SOCKET" "$COWFORK" daemon -q
api() { curl -sS --unix-socket "$COWFORK_SOCKET" -X "$1" ${3+-H 'Content-Type: application/json' --data-binary "$3"} "http://x$2"; }
for ((i = 0; i < 300; i++)); do curl -s --unix-socket "$COWFORK_SOCKET" -o /dev/null http://x/v1/health && break; sleep 0.01; done
id=$(api POST /v1/sandboxes '{"template": "sh"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])') ||
  fail "daemon create from sh"
api POST "/v1/sandboxes/$id/exec" '{"input": "x=41; echo $((x+1))\n"}' | grep -q '"output": *"42' || fail "daemon exec"
api POST "/v1/sandboxes/$id/pause" >/dev/null
api POST "/v1/sandboxes/$id/resume" >/dev/null
api DELETE "/v1/sandboxes/$id" >/dev/null
kill "$DPID"; wait "$DPID" 2>/dev/null || true
[ "$(stat -c %a "$COWFORK_STORE/templates/sh")" = 400 ] || fail "state file: $(stat -c %a "$COWFORK_STORE/templates/sh")"
bad=$(modes "$COWFORK_STORE")
[ -z "$bad" ] || fail "under umask 000, not private: $bad"
echo "ok   under umask 000, template create, fork and a daemon run leave $(find "$COWFORK_STORE" | wc -l) entries, all 0700/0600/0400"

layer=$(cowfork image info sh.mem --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
lf=$COWFORK_STORE/layers/$layer
chmod u+w "$lf"
python3 - "$lf" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    off = os.path.getsize(sys.argv[1]) // 2
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 1]))
PY
chmod 0400 "$lf"
for be in file uffd; do
  if cowfork fork sh --backend $be --input "$TMP/ran" >"$TMP/out" 2>"$TMP/err"; then
    fail "fork ($be) of a corrupted template: $(cat "$TMP/out")"
  fi
  grep -q "image 'sh.mem': layer $layer is corrupted" "$TMP/err" || fail "fork ($be): $(cat "$TMP/err")"
  ! grep -q ran "$TMP/out" || fail "fork ($be) ran the child"
  echo "ok   fork --backend $be refuses a corrupted template: $(head -n 1 "$TMP/err")"
done
start_server DPID2 "$COWFORK_SOCKET" "$COWFORK" daemon -q
for ((i = 0; i < 300; i++)); do curl -s --unix-socket "$COWFORK_SOCKET" -o /dev/null http://x/v1/health && break; sleep 0.01; done
for be in file uffd; do
  out=$(api POST /v1/sandboxes "{\"template\": \"sh\", \"backend\": \"$be\"}")
  echo "$out" | grep -q "layer $layer is corrupted" || fail "daemon create ($be) from a corrupted template: $out"
  echo "ok   daemon create ($be) from it refused: $out"
done
