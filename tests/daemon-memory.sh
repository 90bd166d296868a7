#!/usr/bin/env bash
# The daemon gives memory back after sandboxes are deleted (issue 11, item
# 13: Pss ~39 MB after 500 busybox sandboxes created and deleted). Pss of the
# daemon (/proc/PID/smaps_rollup) after 500 sandboxes created, exec'd once
# and deleted must stay within 8 MiB of its Pss after the first 20.
. "$(dirname "$0")/functions.sh"
requires python3 curl
export COWFORK_SOCKET="$TMP/d.sock"
SOCK=$COWFORK_SOCKET
api() {
  local out
  out=$(curl -sS --unix-socket "$SOCK" -X "$1" ${3+-H 'Content-Type: application/json' --data-binary "$3"} \
    -w '\n%{http_code}' "http://cowfork$2")
  code=${out##*$'\n'}
  body=${out%$'\n'*}
  printf '%s' "$body"
}
jget() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
up() { # up LOG: start a daemon, wait for an answer
  start_server DPID "$SOCK" "$COWFORK" daemon "${@:2}" 2>>"$1"
  local i
  for ((i = 0; i < 500; i++)); do
    curl -s --unix-socket "$SOCK" -o /dev/null http://cowfork/v1/health && return 0
    kill -0 "$DPID" 2>/dev/null || fail "the daemon exited: $(cat "$1")"
    sleep 0.01
  done
  fail "the daemon did not answer within 5 s"
}
down() { kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; }

[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
# --- 3. memory given back after sandboxes are deleted ----------------------------------
cowfork template create sh --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
up "$TMP/log3" -q
pss() { awk '/^Pss:/ { print $2 }' "/proc/$DPID/smaps_rollup"; }
round() { # round N: create N sandboxes, exec each once, delete them
  local ids id
  ids=$(jget "$(api POST /v1/sandboxes "{\"template\":\"sh\",\"count\":$1}")" '" ".join(j["ids"])')
  for id in $ids; do api POST /v1/sandboxes/$id/exec '{"input":"v=a; i=0; while [ $i -lt 16 ]; do v=$v$v; i=$((i+1)); done; echo ${#v}\n"}' >/dev/null; done
  for id in $ids; do api DELETE /v1/sandboxes/$id >/dev/null; done
}
round 20
sleep 0.5
p0=$(pss)
for k in 1 2 3 4 5; do round 100; done
sleep 0.5
p1=$(pss)
echo "Pss after 20 sandboxes: $p0 kB; after 500 more created, exec'd and deleted: $p1 kB"
[ $((p1 - p0)) -lt 8192 ] || fail "the daemon kept $(((p1 - p0) >> 10)) MiB after its sandboxes were deleted"
echo "ok   memory is given back after deletes (+$(((p1 - p0) >> 10)) MiB over 500 sandboxes)"
