#!/usr/bin/env bash
# SIGTERM with a full store (issue 11, item 12): the daemon logged "pause ...
# No space left on device" then "paused 1 sandboxes", exited, and the
# sandbox was lost. Now a pause that fails is not reported as done, the
# daemon keeps the sandbox and does not exit until it can pause it, and
# after a restart the sandbox resumes with its state. Store: a 24 MiB tmpfs.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/api.sh"

[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
# --- 2. SIGTERM with a full store ----------------------------------------------------
[ "$(id -u)" = 0 ] || skip "mounting a small tmpfs store needs root"
mkdir "$TMP/small"
mount -t tmpfs -o size=24m tmpfs "$TMP/small" || skip "cannot mount a tmpfs"
cleanup_fn "umount -l '$TMP/small'"
export COWFORK_STORE="$TMP/small/store"
link_test_roots
cowfork template create sh --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
up "$TMP/log2"
A=$(jget "$(api POST /v1/sandboxes '{"template":"sh"}')" 'j["ids"][0]')
# 4 MiB of guest heap to save (a builtin loop in the shell itself).
out=$(jget "$(api POST /v1/sandboxes/$A/exec '{"input":"x=41; v=a; i=0; while [ $i -lt 22 ]; do v=$v$v; i=$((i+1)); done; echo ${#v}\n"}')" 'j["output"]')
[ "$out" = 4194304 ] || fail "exec in A: $out"
dd if=/dev/zero of="$TMP/small/fill" bs=64k status=none 2>/dev/null || true
kill -TERM "$DPID"
for ((i = 0; i < 300; i++)); do grep -q "could not be paused" "$TMP/log2" && break; sleep 0.05; done
grep -q "could not be paused" "$TMP/log2" || fail "no loud failure: $(cat "$TMP/log2")"
grep -q "paused 1 sandboxes" "$TMP/log2" && fail "claims it paused the sandbox: $(cat "$TMP/log2")"
sleep 1
kill -0 "$DPID" 2>/dev/null || fail "the daemon exited with a sandbox only in its memory: $(cat "$TMP/log2")"
echo "ok   full store: the pause fails loudly, the daemon keeps the sandbox and does not exit"
rm -f "$TMP/small/fill"
kill -TERM "$DPID"
for ((i = 0; i < 600; i++)); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$DPID" 2>/dev/null && fail "the daemon did not stop after space was freed: $(cat "$TMP/log2")"
wait "$DPID" 2>/dev/null || true
grep -q "paused 1 sandboxes" "$TMP/log2" || fail "no pause after space was freed: $(cat "$TMP/log2")"
up "$TMP/log2"
api POST /v1/sandboxes/$A/resume >/dev/null
[ "$code" = 200 ] || fail "resume A after the restart: $code $body"
out=$(jget "$(api POST /v1/sandboxes/$A/exec '{"input":"echo $x ${#v}\n"}')" 'j["output"]')
[ "$out" = "41 4194304" ] || fail "A after the restart: '$out'"
echo "ok   after space was freed it paused, stopped, and A resumed with its state"

