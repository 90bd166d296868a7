#!/usr/bin/env bash
# The seccomp filter on the daemon's worker threads (shim/seccomp.c,
# docs/security.md): with COWFORK_SECCOMP_TEST=1 the worker that runs the
# first sandbox makes a forbidden call; the daemon must write the report and
# die of SIGSYS (a watchdog gives it 300 s: nested KVM under TCG is slow).
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
requires curl
REPORT="cowfork: seccomp: forbidden host system call 135 (personality)"
"$COWFORK" template create sh -- /bin/busybox sh 2>"$TMP/err" || { cat "$TMP/err"; fail "template create"; }
# The daemon: a worker dies of SIGSYS on the first sandbox it runs.
export COWFORK_SOCKET="$TMP/d.sock"
COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 "$COWFORK" daemon --socket "$COWFORK_SOCKET" -q 2>"$TMP/derr" &
DPID=$!
cleanup_fn "kill $DPID 2>/dev/null"
for ((i = 0; i < 500; i++)); do
  curl -s --unix-socket "$COWFORK_SOCKET" -o /dev/null http://cowfork/v1/health && break
  sleep 0.02
done
curl -s --unix-socket "$COWFORK_SOCKET" -X POST -H 'Content-Type: application/json' \
  --data-binary '{"template":"sh"}' http://cowfork/v1/sandboxes >/dev/null 2>&1 || true
# A watchdog, not a kill -0 loop (a dead daemon is a zombie until waited
# for); nested KVM under TCG is slow: minutes, not seconds.
(sleep 300; kill -KILL $DPID 2>/dev/null) &
WD=$!
rc=0; wait $DPID || rc=$?
kill $WD 2>/dev/null || true
[ $rc = $((128 + 31)) ] && grep -qF "$REPORT" "$TMP/derr" ||
  { cat "$TMP/derr"; fail "daemon: exit $rc (want 159: SIGSYS) and the report"; }
echo "ok   daemon: killed by SIGSYS on its worker thread"
