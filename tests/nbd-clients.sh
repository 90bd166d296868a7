#!/usr/bin/env bash
# cowfork disk serve against real NBD clients: nbdinfo (size, --map), nbdcopy
# (whole disk out and in, cmp), qemu-img (info, convert, compare), qemu-io
# (FUA writes, write -z, discard, pattern reads), nbdsh (every command, the
# advertised flags, error replies), 64 concurrent connections, saving with
# `cowfork disk save` and with SIGTERM. The template image is bit-identical
# at the end (image verify + checksum of an export taken before and after).
. "$(dirname "$0")/functions.sh"
requires nbdinfo nbdcopy nbdsh qemu-img qemu-io python3 cmp sha256sum
# nbdsh runs `python3 -mnbd`: Debian's own python3 has that module.
export PATH="/usr/bin:$PATH"
python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd (nbdsh's module) is not installed"
here=$(cd "$(dirname "$0")" && pwd)
SOCK=$TMP/nbd.sock
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }
MiB=$((1 << 20))

python3 "$here/gen-raw.py" "$TMP/base.raw" 64 1
python3 "$here/gen-raw.py" "$TMP/new.raw" 64 2
cowfork image import "$TMP/base.raw" base
cowfork image export base "$TMP/before.raw"
before=$(sha256sum <"$TMP/before.raw")
cmp "$TMP/base.raw" "$TMP/before.raw"
zero_bytes=$(python3 - "$TMP/base.raw" <<'PY'
import sys
z = bytes(4096); n = 0
with open(sys.argv[1], "rb") as f:
    while (b := f.read(4096)):
        n += b == z
print(n * 4096)
PY
)

start_server PID "$SOCK" "$COWFORK" disk serve --unix "$SOCK" \
  --export a=base:child-a --export b=base --export c=base:child-c --export d=base
[ -S "$SOCK.ctl" ] || fail "no control socket next to $SOCK"

# nbdinfo: size, list, and a map showing the image's empty extents as holes.
[ "$(nbdinfo --size "$(uri a)")" -eq $((64 * MiB)) ] || fail "nbdinfo --size"
nbdinfo --list "nbd+unix://?socket=$SOCK" >"$TMP/list"
for e in a b c d; do grep -q "export=\"$e\"" "$TMP/list" || fail "nbdinfo --list misses $e"; done
nbdinfo --map "$(uri b)" >"$TMP/map"
head -4 "$TMP/map"
holes=$(awk '$3 == 3 { s += $2 } END { print s + 0 }' "$TMP/map")
data=$(awk '$3 == 0 { s += $2 } END { print s + 0 }' "$TMP/map")
[ "$holes" -eq "$zero_bytes" ] || fail "--map shows $holes bytes hole,zero, the image has $zero_bytes"
[ $((holes + data)) -eq $((64 * MiB)) ] || fail "--map does not cover the disk"

# nbdcopy: the whole disk out, then a new disk in and out again.
nbdcopy "$(uri a)" "$TMP/out.raw"
cmp "$TMP/base.raw" "$TMP/out.raw" || fail "nbdcopy out differs from the image"
nbdcopy "$TMP/new.raw" "$(uri a)"
nbdcopy "$(uri a)" "$TMP/out.raw"
cmp "$TMP/new.raw" "$TMP/out.raw" || fail "nbdcopy in then out differs"
# Writes are private to their export.
qemu-img compare -f raw -F raw "$TMP/base.raw" "$(uri b)" || fail "export b changed by writes to a"

# qemu-img: info, convert out (qcow2) and in (-n onto export c), compare.
qemu-img info "$(uri b)" | tee "$TMP/info"
grep -q 'virtual size: 64 MiB' "$TMP/info" || fail "qemu-img info"
qemu-img convert -O qcow2 "$(uri a)" "$TMP/a.qcow2"
qemu-img compare -f raw "$TMP/new.raw" "$TMP/a.qcow2" || fail "qemu-img convert out"
qemu-img convert -n -f raw -O raw "$TMP/new.raw" "$(uri c)"
qemu-img compare -f raw -F raw "$TMP/new.raw" "$(uri c)" || fail "qemu-img convert in"

# qemu-io on c: FUA writes, write -z (with and without unmap), discard,
# unaligned writes, and reads that check the patterns.
qemu-io -f raw \
  -c 'write -f -P 0x5a 1000 20000' \
  -c 'write -P 0x11 4096 4096' \
  -c 'write -z -u 65536 131072' \
  -c 'write -z 300001 5000' \
  -c 'discard 1048576 2097152' \
  -c 'write -f -P 0x22 2099200 100' \
  -c 'read -P 0x5a 1000 3096' \
  -c 'read -P 0x11 4096 4096' \
  -c 'read -P 0x5a 8192 12808' \
  -c 'read -P 0 65536 131072' \
  -c 'read -P 0 300001 5000' \
  -c 'read -P 0 1048576 1050624' \
  -c 'read -P 0x22 2099200 100' \
  -c 'read -P 0 2099300 1048276' \
  -c 'flush' \
  "$(uri c)" >"$TMP/qemu-io.log" 2>&1 || { cat "$TMP/qemu-io.log"; fail "qemu-io failed"; }
cat "$TMP/qemu-io.log"
if grep -qiE 'fail|error' "$TMP/qemu-io.log"; then fail "qemu-io reported a failure"; fi
python3 - "$TMP/new.raw" "$TMP/c-expect.raw" <<'PY'
import shutil, sys
shutil.copy(sys.argv[1], sys.argv[2])
with open(sys.argv[2], "r+b") as f:
    def put(off, b): f.seek(off); f.write(b)
    put(1000, b"\x5a" * 20000); put(4096, b"\x11" * 4096); put(65536, bytes(131072))
    put(300001, bytes(5000)); put(1048576, bytes(2097152)); put(2099200, b"\x22" * 100)
PY
nbdcopy "$(uri c)" "$TMP/c.raw"
cmp "$TMP/c-expect.raw" "$TMP/c.raw" || fail "export c differs from what qemu-io wrote"
nbdinfo --map "$(uri c)" | awk '$1 <= 1048576 && $1 + $2 >= 2097152 { f = 1 } END { exit !f }' ||
  fail "the discarded range is not reported as a hole"

# libnbd's Python module (what nbdsh runs): every command, the flags, block status and the error replies.
python3 - "$(uri d)" "nbd+unix://?socket=$SOCK" <<'PY'
import errno, sys, nbd
uri, default_uri = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(uri)
size = h.get_size()
assert size == 64 << 20
for f in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_multi_conn", "can_df",
          "can_meta_context"):
    assert (getattr(h, f)("base:allocation") if f == "can_meta_context" else getattr(h, f)()), f
assert not h.is_read_only()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20
assert h.get_structured_replies_negotiated()

def status(off, n, flags=0):
    out = []
    def cb(ctx, o, entries, err):
        out.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(n, off, cb, flags)
    return out

# Unaligned write/read round trip, with FUA; then flush.
data = bytes(range(256)) * 40
h.pwrite(data, 4095, nbd.CMD_FLAG_FUA)
assert h.pread(len(data), 4095) == data
h.flush()
# Block status: the written blocks are data; an all-zero write is a hole.
assert status(4096, 4096) == [(4096, 0)], status(4096, 4096)
h.pwrite(bytes(8192), 40960)
assert status(40960, 8192) == [(8192, 3)], status(40960, 8192)
# TRIM and WRITE_ZEROES (NO_HOLE, FAST_ZERO, FUA) read back as zeros.
h.pwrite(b"\xff" * 65536, 1 << 20)
h.trim(65536, 1 << 20)
assert h.pread(65536, 1 << 20) == bytes(65536)
assert status(1 << 20, 65536) == [(65536, 3)]
h.pwrite(b"\xee" * 65536, 2 << 20)
h.zero(30000, (2 << 20) + 100, nbd.CMD_FLAG_NO_HOLE)
h.zero(4096, (2 << 20) + 40960, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_FUA)
got = h.pread(65536, 2 << 20)
assert got[:100] == b"\xee" * 100 and got[100:30100] == bytes(30000) and got[30100:40960] == b"\xee" * 10860
assert got[40960:45056] == bytes(4096) and got[45056:] == b"\xee" * (65536 - 45056)
# REQ_ONE gives one extent; a whole-disk query covers the disk.
assert len(status(0, size, nbd.CMD_FLAG_REQ_ONE)) == 1
assert sum(n for n, f in status(0, size)) <= size
# Errors from the server (strict mode off, so libnbd sends what it is told).
h.set_strict_mode(0)
def expect(err, fn, *a):
    try:
        fn(*a)
    except nbd.Error as e:
        assert e.errnum == err, (fn.__name__, a, e.errnum, e.string)
        return
    raise AssertionError(f"{fn.__name__}{a[1:] if fn == h.pwrite else a} succeeded")
expect(errno.EINVAL, h.pread, 4096, size - 100)
expect(errno.EINVAL, h.pread, 512, size)
expect(errno.EINVAL, h.pread, 512, 1 << 63)
expect(errno.EINVAL, h.pwrite, b"x" * 4096, size - 4095)
expect(errno.EINVAL, h.trim, 8192, size - 4096)
expect(errno.EINVAL, h.zero, 8192, size)
expect(errno.EINVAL, h.block_status, 8192, size - 4096, lambda *a: 0)
expect(errno.EINVAL, h.pread, (32 << 20) + 1, 0)
expect(errno.EINVAL, h.pwrite, b"y" * ((32 << 20) + 4096), 0)   # payload read and dropped
expect(errno.EINVAL, h.pread, 4096, 0, nbd.CMD_FLAG_REQ_ONE)    # a flag READ does not take
expect(errno.EINVAL, h.trim, 4096, 0, nbd.CMD_FLAG_NO_HOLE)
# The stream is still in step after the refused 32 MiB write.
assert h.pread(len(data), 4095) == data
assert h.pread(4096, 0) != b"y" * 4096
h.shutdown()

# Without structured replies: simple replies, errors still EINVAL.
h = nbd.NBD()
h.set_request_structured_replies(False)
h.connect_uri(uri)
assert not h.get_structured_replies_negotiated()
assert h.pread(len(data), 4095) == data
h.set_strict_mode(0)
expect(errno.EINVAL, h.pread, 4096, size)
assert h.pread(10, 4095) == data[:10]
h.shutdown()

# Option haggling: list, info, unknown export, the default export.
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(default_uri)
names = []
h.opt_list(lambda n, d: names.append(n))
assert names == ["a", "b", "c", "d"], names
h.set_export_name("nosuch")
try:
    h.opt_info()
    raise AssertionError("opt_info of an unknown export succeeded")
except nbd.Error:
    pass
h.set_export_name("")
h.opt_go()   # the empty name is the first export
assert h.get_size() == size
h.shutdown()
print("nbdsh checks passed")
PY

# 64 concurrent connections: every one writes its own block, then every one
# reads every block (multi-conn: one overlay shared by all), in threads.
python3 - "$(uri d)" <<'PY'
import sys, threading, nbd
uri = sys.argv[1]
hs = []
for i in range(64):
    h = nbd.NBD()
    h.connect_uri(uri)
    hs.append(h)
base = 8 << 20
errors = []
def work(i):
    try:
        h = hs[i]
        for k in range(20):
            h.pwrite(bytes([i + 1]) * 4096, base + (i * 20 + k) * 4096)
        h.flush()
    except Exception as e:
        errors.append(e)
ts = [threading.Thread(target=work, args=(i,)) for i in range(64)]
[t.start() for t in ts]
[t.join() for t in ts]
assert not errors, errors
for i, h in enumerate(hs):
    got = h.pread(64 * 20 * 4096, base)
    for j in range(64):
        assert got[j * 20 * 4096:(j + 1) * 20 * 4096] == bytes([j + 1]) * 20 * 4096, (i, j)
for h in hs:
    h.shutdown()
print("64 concurrent connections: ok")
PY

# Save while serving: `cowfork disk save`, again with no change, then change.
cowfork disk save a --unix "$SOCK" --as snap-a | tee "$TMP/save1"
grep -q "saved export a as snap-a" "$TMP/save1" || fail "disk save output"
cowfork disk save a --unix "$SOCK" --as snap-a | grep -q unchanged || fail "a second save with no change wrote again"
cowfork image export snap-a "$TMP/snap-a.raw"
cmp "$TMP/new.raw" "$TMP/snap-a.raw" || fail "snap-a differs from what was written"
rc=0; out=$(cowfork disk save b --control "$SOCK.ctl" 2>&1) || rc=$?
[ $rc -eq 1 ] && grep -q "no name to save as" <<<"$out" || fail "save of an export without SAVE_AS: rc $rc: $out"
rc=0; out=$(cowfork disk save nosuch --unix "$SOCK" 2>&1) || rc=$?
[ $rc -eq 1 ] && grep -q "no export" <<<"$out" || fail "save of an unknown export: rc $rc: $out"
rc=0; out=$(cowfork disk save a --unix "$SOCK" --as base 2>&1) || rc=$?
[ $rc -eq 1 ] && grep -q "exists" <<<"$out" || fail "save over the template: rc $rc: $out"
nbdsh -u "$(uri a)" -c 'h.pwrite(b"\x77" * 4096, 0)'
printf '\x77%.0s' $(seq 4096) | dd of="$TMP/new.raw" conv=notrunc status=none
cowfork disk save a --unix "$SOCK" --as snap-a | grep -q "saved export a as snap-a" || fail "re-save"
cowfork image export snap-a "$TMP/snap-a.raw"
cmp "$TMP/new.raw" "$TMP/snap-a.raw" || fail "the replaced snap-a differs"
cowfork image verify snap-a

# SIGTERM: stop accepting, save a and c, exit 0.
nbdcopy "$(uri c)" "$TMP/c.raw"
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[ $rc -eq 0 ] || fail "server exited $rc on SIGTERM"
[ ! -e "$SOCK" ] && [ ! -e "$SOCK.ctl" ] || fail "sockets left behind"
for e in a c; do
  cowfork image verify "child-$e"
  cowfork image export "child-$e" "$TMP/child-$e.raw"
done
cmp "$TMP/new.raw" "$TMP/child-a.raw" || fail "child-a differs from what was written"
cmp "$TMP/c.raw" "$TMP/child-c.raw" || fail "child-c differs from what was written"
# The child stores about what differs from the template, not the whole disk.
own=$(cowfork image info child-c --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["own_bytes"])')
nz=$(python3 - "$TMP/c.raw" "$TMP/base.raw" <<'PY'
import sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb"); z = bytes(4096); n = 0
while (x := a.read(4096)):
    y = b.read(4096)
    n += x != y and x != z
print(n * 4096)
PY
)
echo "child-c: own bytes $own, changed non-zero blocks $nz bytes"
[ "$own" -le $((nz + nz / 100)) ] || fail "child-c stores $own bytes for $nz changed"

# The template is bit-identical.
cowfork image verify base
cowfork image export base "$TMP/after.raw"
[ "$(sha256sum <"$TMP/after.raw")" = "$before" ] || fail "the template image changed"
echo "all NBD client checks passed"
