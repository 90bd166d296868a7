#!/usr/bin/env bash
# Outbound by policy (issue 16 item 3; shim/net.c, lib/netpolicy.c): two
# HTTP servers on the host's 127.0.0.1 (ports A and B). A sandbox fetches
# A with urllib: with --net none (the default) and --net all the address is
# the sandbox's own loopback (Connection refused: nothing listens there);
# with --net allow=127.0.0.1:A it gets A's page, and B stays unreachable
# under that rule; a bad --net is refused with the rule named. Before the
# policy, --net was an unknown option.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires python3
: "${NET_TIMEOUT:=$([ -n "${COWFORK_EMULATED:-}" ] && echo 300 || echo 60)}"
mkdir -p "$TMP/www"
echo "page from the host server" > "$TMP/www/index.html"
serve() { # serve FILE: an http.server on 127.0.0.1:0 in $TMP/www; its port into FILE
  python3 -c '
import http.server, functools, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
h.log_message = lambda *a: None
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
print(s.server_address[1], flush=True)
s.serve_forever()' "$TMP/www" > "$1" &
}
serve "$TMP/a"; apid=$!
serve "$TMP/b"; bpid=$!
trap 'kill $apid $bpid 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$TMP/a" ] && [ -s "$TMP/b" ] && break; sleep 0.1; done
A=$(cat "$TMP/a") B=$(cat "$TMP/b")
[ -n "$A" ] && [ -n "$B" ] || fail "the host servers did not start"
[ "$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$A/').read().decode().strip())")" = "page from the host server" ] ||
  fail "the host server does not answer natively"
FETCH='import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=60).read().decode().strip())
except Exception as e:
    print("error", getattr(e, "reason", e))'
fetch() { # fetch URL [--net ...]: what the sandbox printed
  local url=$1; shift
  timeout "$NET_TIMEOUT" "$COWFORK" run --root / --mem 512M "$@" -- /usr/bin/python3 -c "$FETCH" "$url" 2>&1
}
refused="error [Errno 111] Connection refused"
out=$(fetch "http://127.0.0.1:$A/")
[ "$out" = "$refused" ] || fail "--net none reached the host's 127.0.0.1:$A: $out"
echo "ok   --net none: the host's 127.0.0.1:$A is not reachable (the sandbox's own loopback: refused)"
out=$(fetch "http://127.0.0.1:$A/" --net all)
[ "$out" = "$refused" ] || fail "--net all reached the host's 127.0.0.1:$A: $out"
echo "ok   --net all: still not the host's loopback"
out=$(fetch "http://127.0.0.1:$A/" --net "allow=127.0.0.1:$A")
[ "$out" = "page from the host server" ] || fail "--net allow=127.0.0.1:$A: $out"
echo "ok   --net allow=127.0.0.1:$A: the host server's page"
out=$(fetch "http://127.0.0.1:$B/" --net "allow=127.0.0.1:$A")
[ "$out" = "$refused" ] || fail "--net allow=127.0.0.1:$A reached port $B: $out"
echo "ok   --net allow=127.0.0.1:$A: the host's port $B is still not reachable"
out=$(fetch "http://127.0.0.1:$A/" --net "allow=127.0.0.1:$A,[::1]:$B")
[ "$out" = "page from the host server" ] || fail "two rules: $out"
echo "ok   two rules (IPv4 and IPv6)"
set +e
out=$("$COWFORK" run --net "allow=127.0.0.1:$A,nohost" -- /bin/true 2>&1); rc=$?
set -e
[ $rc = 2 ] && grep -q "bad rule 'nohost'" <<<"$out" || fail "a bad --net: rc $rc: $out"
echo "ok   a bad --net is refused, the rule named"
