#!/usr/bin/env bash
# Several connections write overlapping and adjacent ranges of one export at
# once, pipelined, and a lost, torn or misordered write shows as a byte that
# differs from a known expected image.
#  1. Sweeps: four connections write the four quarters of every (64 KiB)
#     block at once, each quarter once, six rounds with new data: their
#     read-modify-writes of one block meet, so a write lock that does not
#     cover the whole block loses quarters (seen in every run when writes
#     only claimed their blocks shared). After each round the disk must read
#     as that round's data.
#  2. Random: each connection writes unaligned ranges of up to three blocks,
#     quarters, whole blocks, heads and tails across block boundaries, and
#     zeroes or trims where the expected image E is zero. Every request
#     carries E's bytes, so whatever order they run in, each byte ends as E's
#     where a request covered it and the last sweep's elsewhere. Three saves
#     run during the writes: each saved byte must be one of the two.
# Then the export (nbdcopy + cmp, qemu-img compare), a commit with `disk
# save`, and the child saved on SIGTERM must equal the expected image.
. "$(dirname "$0")/functions.sh"
requires nbdcopy qemu-img python3 cmp
export PATH="/usr/bin:$PATH"
python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
here=$(cd "$(dirname "$0")" && pwd)
SOCK=$TMP/nbd.sock
URI="nbd+unix:///d?socket=$SOCK"
MIB=16
python3 "$here/gen-raw.py" "$TMP/base.raw" $MIB 3
python3 "$here/gen-raw.py" "$TMP/e.raw" $MIB 4
cowfork image import "$TMP/base.raw" base --block-size 65536 # long read-modify-writes
start_server PID "$SOCK" "$COWFORK" disk serve --unix "$SOCK" --export d=base:final

python3 - "$SOCK" "$TMP" "$COWFORK" <<'PY'
import os, random, subprocess, sys, threading, nbd
sock, tmp, cowfork = sys.argv[1:4]
E = open(f"{tmp}/e.raw", "rb").read()
size, bs, NCONN, DEPTH, ROUNDS = len(E), 65536, 4, 16, 6
covered = bytearray(size)   # 1 where some request covered the byte
cov_lock = threading.Lock()

def ops(k):
    rnd = random.Random(100 + k)
    out = []
    for i in range(800):
        kind = rnd.random()
        if kind < 0.3:   # the k-th quarter of a block the others write too
            b = rnd.randrange(size // bs)
            off, n = b * bs + k * bs // 4, bs // 4
        elif kind < 0.6:  # unaligned, up to three blocks
            off = rnd.randrange(size); n = rnd.randint(1, 3 * bs)
        elif kind < 0.8:  # whole blocks
            off = rnd.randrange(size // bs) * bs; n = bs * rnd.randint(1, 4)
        else:             # around a block boundary: adjacent heads and tails
            off = rnd.randrange(1, size // bs) * bs + rnd.randint(-600, 600); n = rnd.randint(1, 1200)
        n = min(n, size - off)
        out.append((off, n))
    return out

errors = []
def conn(k):
    try:
        h = nbd.NBD()
        h.connect_unix(sock)
        for off, n in ops(k):
            while h.aio_in_flight() >= DEPTH:
                h.poll(-1)
            data = E[off:off + n]
            if data.count(0) == n and n >= 1 and (off + n) % 7 != 0:
                (h.aio_zero if (off // 3) % 2 else h.aio_trim)(n, off)
            else:
                h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off)
            with cov_lock:
                covered[off:off + n] = b"\1" * n
        while h.aio_in_flight() > 0:
            h.poll(-1)
        h.shutdown()
    except Exception as e:
        errors.append(f"connection {k}: {e!r}")

def sweep(handles, D):
    """The connections write the four quarters of every block at once (one
    thread sends all four before waiting), each quarter once, with D's
    bytes: their read-modify-writes of a block meet, and a lost one is never
    repaired by a later write. Then the disk must read as D."""
    for b in range(size // bs):
        for k, h in enumerate(handles):
            off, n = b * bs + k * bs // 4, bs // 4
            while h.aio_in_flight() >= DEPTH:
                h.poll(-1)
            h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(D[off:off + n])), off)
    for h in handles:
        while h.aio_in_flight() > 0:
            h.poll(-1)
    got = handles[0].pread(size, 0)
    bad = [i // bs for i in range(0, size, bs) if got[i:i + bs] != D[i:i + bs]]
    assert not bad, f"quarter-block writes of {len(handles)} connections were lost in blocks {bad[:10]}"

def check_mid(path, what):
    got = open(path, "rb").read()
    bad = [i for i in range(0, size, 4096)
           if got[i:i + 4096] not in (base[i:i + 4096], E[i:i + 4096]) and
           any(g != b and g != e for g, b, e in zip(got[i:i + 4096], base[i:i + 4096], E[i:i + 4096]))]
    assert not bad, f"{what}: bytes that are neither the template's nor E's in blocks {bad[:10]}"

handles = []
for k in range(NCONN):
    handles.append(nbd.NBD())
    handles[-1].connect_unix(sock)
for r in range(ROUNDS):
    base = random.Random(r).randbytes(size)
    sweep(handles, base)
for h in handles:
    h.shutdown()
# From here on every byte is base's (the last sweep's) or E's.
th = [threading.Thread(target=conn, args=(k,)) for k in range(NCONN)]
for t in th:
    t.start()
# Commits while the writes go on: each must be a state made of whole writes.
for n in range(3):
    r = subprocess.run([cowfork, "disk", "save", "d", "--unix", sock, "--as", f"mid{n}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run([cowfork, "image", "export", f"mid{n}", f"{tmp}/mid{n}.raw"], check=True)
    check_mid(f"{tmp}/mid{n}.raw", f"save mid{n} during the writes")
for t in th:
    t.join()
assert not errors, errors
exp = bytes(E[i] if covered[i] else base[i] for i in range(size))
open(f"{tmp}/expected.raw", "wb").write(exp)
print(f"{NCONN} connections, {sum(covered)} of {size} bytes covered")
PY

nbdcopy "$URI" "$TMP/out.raw"
cmp "$TMP/expected.raw" "$TMP/out.raw" || fail "the export differs from the expected image"
qemu-img compare -f raw -F raw "$TMP/expected.raw" "$URI" || fail "qemu-img compare: the export differs"
cowfork disk save d --unix "$SOCK" --as committed
cowfork image export committed "$TMP/committed.raw"
cmp "$TMP/expected.raw" "$TMP/committed.raw" || fail "the committed child differs from the expected image"
kill -TERM "$PID"
wait "$PID" || fail "server exited $?"
cowfork image export final "$TMP/final.raw"
cmp "$TMP/expected.raw" "$TMP/final.raw" || fail "the child saved on SIGTERM differs"
cowfork image export base "$TMP/base-after.raw"
cmp "$TMP/base.raw" "$TMP/base-after.raw" || fail "the template changed"
echo "concurrent writers: ok"
