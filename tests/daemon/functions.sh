# Sourced by tests/daemon-*.sh (after functions.sh): a daemon on a private
# socket and store, a busybox sh template, and `api METHOD PATH [BODY]`
# (curl over the Unix socket: prints the body, sets $code).
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
requires curl python3
export COWFORK_SOCKET="$TMP/cowfork.sock"
SOCK=$COWFORK_SOCKET
start_daemon() {
  # A socket left by a killed daemon would look ready: wait for an answer.
  start_server DPID "$SOCK" "$COWFORK" daemon "$@"
  local i
  for ((i = 0; i < 500; i++)); do
    curl -s --unix-socket "$SOCK" -o /dev/null http://cowfork/v1/health && return 0
    kill -0 "$DPID" 2>/dev/null || fail "the daemon exited"
    sleep 0.01
  done
  fail "the daemon did not answer within 5 s"
}
stop_daemon() {
  kill "$DPID" 2>/dev/null || true
  wait "$DPID" 2>/dev/null || true
}
api() {
  local out
  out=$(curl -sS --unix-socket "$SOCK" -X "$1" ${3+-H 'Content-Type: application/json' --data-binary "$3"} \
    -w '\n%{http_code}' "http://cowfork$2")
  code=${out##*$'\n'}
  body=${out%$'\n'*}
  printf '%s' "$body"
}
# jget JSON EXPR: python expression over j
jget() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
expect() { # expect CODE WHAT  (after api)
  [ "$code" = "$1" ] || fail "$2: HTTP $code, expected $1: $body"
  echo "ok   $2 ($code)"
}
make_sh_template() {
  cowfork template create "${1:-sh}" --mem 64M -- /bin/busybox sh 2>/dev/null || fail "template create"
}
