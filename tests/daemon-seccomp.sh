#!/usr/bin/env bash
# The seccomp filter on the daemon's threads that serve guests (shim/seccomp.c,
# docs/security.md).
# 1. Every thread but the main one (signals, the state file) and
#    libmicrohttpd's (requests) runs under the filter from the daemon's start:
#    the workers (they run sandboxes) and the uffd page server's workers
#    (they serve guests' page faults), not only a worker that has run one.
# 2. With COWFORK_SECCOMP_TEST=1 the first guest system call a worker serves
#    (an exec's input read: creating a sandbox serves none, the child is
#    forked paused at its read of stdin) also makes a forbidden host call:
#    the daemon writes the report and dies of SIGSYS.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/daemon/functions.sh"
REPORT="cowfork: seccomp: forbidden host system call 135 (personality)"
make_sh_template sh

# filtered_threads PID: "TID:COMM:SECCOMP-MODE" per thread
threads() {
  local t
  for t in /proc/$1/task/*; do
    echo "${t##*/}:$(cat "$t/comm"):$(sed -n 's/^Seccomp:\t*//p' "$t/status")"
  done
}
COWFORK_SECCOMP=1 COWFORK_SECCOMP_TEST=1 up "$TMP/derr" --workers 2
bad=""
for ((i = 0; i < 500; i++)); do
  bad=$(threads "$DPID" | grep -v "^$DPID:" | grep -v ":MHD-[^:]*:" | grep -v ':2$' || true)
  [ -z "$bad" ] && break
  sleep 0.02
done
[ -z "$bad" ] || { threads "$DPID"; fail "threads of the daemon without the filter: $bad"; }
n=$(threads "$DPID" | grep -c ':2$')
# 2 workers + the uffd server's workers (1 + one per CPU)
[ "$n" -ge 3 ] || { threads "$DPID"; fail "only $n threads under the filter"; }
echo "ok   $n threads of the daemon under the filter from its start (all but main and libmicrohttpd's)"

api POST /v1/sandboxes '{"template":"sh"}' >"$TMP/c"
expect 201 "create"
ID=$(jget "$(cat "$TMP/c")" 'j["ids"][0]')
# The exec's connection is cut when the daemon dies: curl fails, that is
# expected.
curl -s --max-time 600 --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' \
  --data-binary '{"input":"echo hi\n"}' "http://cowfork/v1/sandboxes/$ID/exec" >/dev/null 2>&1 || true
# The exec returned (its connection closed): the daemon is dead or dying.
# A watchdog, not a kill -0 loop (a dead daemon is a zombie until waited for).
(sleep 120; kill -KILL "$DPID" 2>/dev/null) &
WD=$!
rc=0; wait "$DPID" || rc=$?
kill $WD 2>/dev/null || true
[ $rc = $((128 + 31)) ] && grep -qF "$REPORT" "$TMP/derr" ||
  { cat "$TMP/derr"; fail "daemon: exit $rc (want 159: SIGSYS) and the report"; }
echo "ok   daemon: killed by SIGSYS on its worker thread, with the report"
