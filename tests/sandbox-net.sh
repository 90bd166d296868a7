#!/usr/bin/env bash
# Sockets on a sandbox's own loopback (issue 16, items 1-3 `--net none`;
# shim/net.c), against the same programs run natively:
#  - tests/sandbox/net.c (static): TCP echo between a forked server and its
#    client over 127.0.0.1 and ::1, a non-blocking connect, SO_RCVTIMEO, poll,
#    select and epoll, UDP between processes with recvfrom's address,
#    AF_UNIX path and abstract names, SCM_RIGHTS of a pipe and a /tmp file
#    from a child, ECONNREFUSED, getaddrinfo(localhost); SO_PASSCRED and
#    SO_PEERCRED with a child's pid, TCP resets and a peer's orderly close
#    (poll, recv, send), a non-blocking connect to a full accept queue,
#    UDP-Lite's coverage options;
#  - tests/sandbox/net.py: an asyncio echo server and client (TCP, UDP),
#    http.server in a thread fetched with urllib;
# then, in sandboxes only: the policy (connect and sendto to 10.1.2.3 are
# ENETUNREACH, bind of it EADDRNOTAVAIL, as Linux in a namespace where only
# lo is up; natively this machine's routes decide, so there is nothing to
# compare with), a host server on 127.0.0.1 that a sandbox cannot reach,
# and two sandboxes that bind 127.0.0.1:8000 at the same time.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
requires python3
here=$(cd "$(dirname "$0")" && pwd)
N=$TMP/net
gcc -static -O1 -o "$N" "$here/sandbox/net.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"
: "${SAME_TIMEOUT:=$([ -n "${COWFORK_EMULATED:-}" ] && echo 300 || echo 60)}"
export SAME_TIMEOUT

SAME_MEM=256M same_as_native "net program" "$N"
SAME_MEM=1G same_as_native "python asyncio, http.server + urllib" /usr/bin/python3 "$here/sandbox/net.py"

out=$(timeout "$SAME_TIMEOUT" "$COWFORK" run --root / --mem 64M -- "$N" unreach 2>&1) || fail "net unreach: $out"
want='connect 10.1.2.3:80: Network is unreachable
sendto 10.1.2.3:80: Network is unreachable
bind 10.1.2.3: Cannot assign requested address
socket(AF_NETLINK): Address family not supported by protocol
getaddrinfo(localhost, AI_ADDRCONFIG): ok'
[ "$out" = "$want" ] || fail "the --net none policy: got
$out
want
$want"
echo "ok   --net none: 10.1.2.3 unreachable, AF_NETLINK refused, getaddrinfo(AI_ADDRCONFIG) works"

# A host server on 127.0.0.1: reachable natively, not from a sandbox.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(600)' > "$TMP/hostport" &
hostpid=$!
for _ in $(seq 600); do [ -s "$TMP/hostport" ] && break; sleep 0.1; done # (up to 60 s: python starts slowly under emulation)
hp=$(cat "$TMP/hostport")
native=$("$N" host "$hp")
sb=$(timeout "$SAME_TIMEOUT" "$COWFORK" run --root / --mem 64M -- "$N" host "$hp" 2>&1)
kill "$hostpid"
[ "$native" = "connect to 127.0.0.1:$hp: 0" ] || fail "the host server is not reachable natively: $native"
[ "$sb" = "connect to 127.0.0.1:$hp: Connection refused" ] || fail "a sandbox reached the host's loopback: $sb"
echo "ok   the host's 127.0.0.1:$hp: natively connected, from a sandbox refused"

# Two sandboxes bind 127.0.0.1:8000 at once; each reaches its own.
cat > "$TMP/port8000.py" <<'PY'
import socket, sys, time
l = socket.socket()
l.bind(("127.0.0.1", 8000))
l.listen()
print("bound", flush=True)
time.sleep(float(sys.argv[1]))
c = socket.create_connection(("127.0.0.1", 8000))
s, _ = l.accept()
c.sendall(sys.argv[2].encode())
print("own loopback:", s.recv(100).decode(), flush=True)
PY
wait_s=$([ -n "${COWFORK_EMULATED:-}" ] && echo 20 || echo 3)
"$COWFORK" run --root / --mem 256M -- /usr/bin/python3 "$TMP/port8000.py" "$wait_s" one > "$TMP/one.out" 2>&1 &
p1=$!
"$COWFORK" run --root / --mem 256M -- /usr/bin/python3 "$TMP/port8000.py" "$wait_s" two > "$TMP/two.out" 2>&1 &
p2=$!
r1=0 r2=0
wait "$p1" || r1=$?
wait "$p2" || r2=$?
[ "$r1" = 0 ] && [ "$(cat "$TMP/one.out")" = "bound
own loopback: one" ] || fail "sandbox one ($r1): $(cat "$TMP/one.out")"
[ "$r2" = 0 ] && [ "$(cat "$TMP/two.out")" = "bound
own loopback: two" ] || fail "sandbox two ($r2): $(cat "$TMP/two.out")"
echo "ok   two sandboxes on 127.0.0.1:8000 at once, each on its own loopback"
