#!/usr/bin/env bash
# Hostile clients against cowfork disk serve: garbage, bad magic, unknown
# client flags, lying option and request lengths, absurd sizes, offsets that
# overflow, requests cut short, disconnects in the middle of a write, and a
# crowd of connections abandoned mid-handshake. None may crash or stall the
# server, apply an unacknowledged write, or change another export's data; a
# well-behaved client keeps working throughout, and SIGTERM still exits 0.
. "$(dirname "$0")/functions.sh"
requires nbdcopy python3 cmp sha256sum
here=$(cd "$(dirname "$0")" && pwd)
SOCK=$TMP/nbd.sock
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }

python3 "$here/gen-raw.py" "$TMP/base.raw" 16 5
cowfork image import "$TMP/base.raw" base
before=$(sha256sum <"$TMP/base.raw")
start_server PID "$SOCK" "$COWFORK" disk serve --unix "$SOCK" \
  --export victim=base:victim-child --export target=base
nbdcopy "$TMP/base.raw" "$(uri victim)" # a full write the server acknowledged

python3 - "$SOCK" <<'PY'
import os, socket, struct, sys, time
path = sys.argv[1]
OPTS, REQ = 0x49484156454F5054, 0x25609513
def conn():
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path); return s
def recvn(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d: raise EOFError("closed")
        b += d
    return b
def opt(o, d=b""): return struct.pack(">QII", OPTS, o, len(d)) + d
def req(flags, t, off, ln, h=7): return struct.pack(">IHHQQI", REQ, flags, t, h, off, ln)
def greet(s, flags=3):
    assert recvn(s, 18)[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", flags))
def export_name(s, name=b"target"):
    greet(s); s.sendall(opt(1, name)); size, fl = struct.unpack(">QH", recvn(s, 10)); return size
def closed(s):  # the server hangs up on us (EOF), and does not just stall
    try:
        while s.recv(65536): pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
def simple_reply(s):
    m, err, h = struct.unpack(">IIQ", recvn(s, 16)); assert m == 0x67446698; return err

# 1. garbage instead of the client flags and options
for n in (1, 4, 100, 5000):
    s = conn(); s.sendall(os.urandom(n)); s.shutdown(socket.SHUT_WR); assert closed(s); s.close()
# 2. unknown client flags
s = conn(); greet(s, 0xff); assert closed(s)
# 3. an option whose length lies (4 GiB - 1) and one with bad magic
s = conn(); greet(s); s.sendall(struct.pack(">QII", OPTS, 7, 0xffffffff) + b"abc"); assert closed(s)
s = conn(); greet(s); s.sendall(struct.pack(">QII", 0x1234, 7, 0)); assert closed(s)
# 4. GO whose name length points past the option: an error reply, not a crash
s = conn(); greet(s); s.sendall(opt(7, struct.pack(">I", 1000) + b"ab" + struct.pack(">H", 0)))
m, o, t, ln = struct.unpack(">QIII", recvn(s, 20)); assert t == 0x80000003, hex(t); recvn(s, ln)
s.sendall(opt(2)); recvn(s, 20); s.close()
# 5. meta context queries with lying counts (after structured replies)
s = conn(); greet(s); s.sendall(opt(8)); recvn(s, 20)
s.sendall(opt(10, struct.pack(">I", 6) + b"target" + struct.pack(">I", 0xffffffff) + struct.pack(">I", 3) + b"abc"))
m, o, t, ln = struct.unpack(">QIII", recvn(s, 20)); assert t == 0x80000003, hex(t); recvn(s, ln); s.close()
# 6. EXPORT_NAME of an unknown export: the server must hang up
s = conn(); greet(s); s.sendall(opt(1, b"nosuch")); assert closed(s)
# 7. bad request magic
s = conn(); export_name(s); s.sendall(b"\xde\xad\xbe\xef" + bytes(24)); assert closed(s)
# 8. a write that says 1 MiB and sends 1000 bytes, then vanishes (to "target" at 0)
s = conn(); export_name(s); s.sendall(req(0, 1, 0, 1 << 20) + b"\xab" * 1000); s.close()
# 9. an absurd write length: dropped without reading 2 GiB
s = conn(); export_name(s); s.sendall(req(0, 1, 0, 0x80000000) + b"x" * 100); assert closed(s)
# 10. offsets that overflow, and requests past the end: EINVAL, stream in step
s = conn(); size = export_name(s)
for off, ln in ((2**64 - 512, 1024), (size, 1), (size - 1, 2), (2**63, 4096)):
    s.sendall(req(0, 0, off, ln)); assert simple_reply(s) == 22
s.sendall(req(0, 1, size - 10, 20) + b"w" * 20); assert simple_reply(s) == 22
s.sendall(req(0, 7, 0, 4096)); assert simple_reply(s) == 22        # no meta context
s.sendall(req(0, 77, 0, 0)); assert simple_reply(s) == 22          # unknown command
s.sendall(req(0xffff, 3, 0, 0)); assert simple_reply(s) == 22      # unknown flags
s.sendall(req(0, 0, 0, 4096)); assert simple_reply(s) == 0; recvn(s, 4096)
s.sendall(req(0, 2, 0, 0)); assert closed(s)
# 11. a request header cut short, and a write cut short by half-close
s = conn(); export_name(s); s.sendall(req(0, 0, 0, 4096)[:10]); s.close()
s = conn(); export_name(s); s.sendall(req(1, 1, 4096, 65536) + b"\xcd" * 30000); s.shutdown(socket.SHUT_WR); assert closed(s)
# 12. a crowd abandoned in the middle of the handshake, then dropped at once
crowd = [conn() for _ in range(100)]
for i, c in enumerate(crowd):
    if i % 2: c.sendall(struct.pack(">I", 3))
for c in crowd: c.close()
# 13. a slow client: one byte at a time
s = conn(); greet(s); msg = opt(1, b"target") 
for b in msg: s.sendall(bytes([b])); time.sleep(0.001)
recvn(s, 10); s.sendall(req(0, 2, 0, 0)); s.close()
print("hostile clients handled")
PY

kill -0 "$PID" || fail "the server died"
# No unacknowledged byte reached 'target'; 'victim' holds exactly its data.
nbdcopy "$(uri target)" "$TMP/target.raw"
cmp "$TMP/base.raw" "$TMP/target.raw" || fail "an unacknowledged write changed 'target'"
nbdcopy "$(uri victim)" "$TMP/victim.raw"
cmp "$TMP/base.raw" "$TMP/victim.raw" || fail "hostile clients changed 'victim'"
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[ $rc -eq 0 ] || fail "server exited $rc after the attack"
cowfork image export victim-child "$TMP/vc.raw"
cmp "$TMP/base.raw" "$TMP/vc.raw" || fail "victim-child differs"
[ "$(sha256sum <"$TMP/base.raw")" = "$before" ] || fail "base.raw changed?"
cowfork image verify base
cowfork image export base "$TMP/after.raw"
[ "$(sha256sum <"$TMP/after.raw")" = "$before" ] || fail "the template changed"
echo "hostile clients: ok"
