# Sourced (after tests/functions.sh) by tests/daemon/functions.sh and by the
# daemon tests that make their own checks for /dev/kvm (or need none): a
# daemon on a private socket, `up`/`down` to start and stop it, and
# `api METHOD PATH [BODY]` (curl over the Unix socket: prints the body, sets
# $code), `jget`, `expect`.
requires curl python3
export COWFORK_SOCKET="$TMP/cowfork.sock"
SOCK=$COWFORK_SOCKET
# up LOG [ARGS...]: start `cowfork daemon ARGS` (its stderr appended to LOG,
# or left as it is when LOG is ""), wait until it answers
up() {
  local log=$1
  shift
  if [ -n "$log" ]; then
    start_server DPID "$SOCK" "$COWFORK" daemon "$@" 2>>"$log"
  else
    start_server DPID "$SOCK" "$COWFORK" daemon "$@"
  fi
  # A socket left by a killed daemon would look ready: wait for an answer.
  local i
  for ((i = 0; i < 500; i++)); do
    curl -s --unix-socket "$SOCK" -o /dev/null http://cowfork/v1/health && return 0
    kill -0 "$DPID" 2>/dev/null || fail "the daemon exited${log:+: $(cat "$log")}"
    sleep 0.01
  done
  fail "the daemon did not answer within 5 s"
}
down() {
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
