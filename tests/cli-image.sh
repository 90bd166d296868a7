#!/usr/bin/env bash
# cowfork image: the CLI end to end on a 1 GiB image (the foundation issue's
# "done when"): import stores only non-zero blocks, export gives the same
# bytes, a 1 % commit stores about 1 %, a chain of 20 commits exports
# byte-identical, verify catches a flipped byte, rm/gc keep shared layers,
# and bad usage or input gets a clear error and the right exit code.
. "$(dirname "$0")/functions.sh"
requires python3 cmp fallocate
here=$(dirname "$0")
MiB=$((1 << 20))
stored() { cowfork image info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

# 1 GiB, about half its blocks zero.
python3 "$here/gen-raw.py" "$TMP/a.raw" 1024
nonzero=$(python3 - "$TMP/a.raw" <<'PY'
import sys
z = bytes(4096); n = 0
with open(sys.argv[1], "rb") as f:
    while (b := f.read(4096)):
        n += b != z
print(n * 4096)
PY
)
cowfork image import "$TMP/a.raw" base
s=$(stored base stored_bytes)
echo "import: stored $s bytes, non-zero data $nonzero bytes"
[ "$s" -eq "$nonzero" ] || fail "import stored $s bytes, expected exactly the non-zero $nonzero"
limit=$(( (1 << 29) + (1 << 30) / 100 ))
[ "$s" -le "$limit" ] || fail "import stored $s > 0.5 GiB + 1 %"
[ "$(stored base empty_bytes)" -eq $(( (1 << 30) - nonzero )) ] || fail "empty_bytes is wrong"
cowfork image export base "$TMP/b.raw"
cmp "$TMP/a.raw" "$TMP/b.raw" || fail "export differs from the import"
alloc=$(( $(stat -c %b "$TMP/b.raw") * 512 ))
[ "$alloc" -le $(( nonzero + 16 * MiB )) ] || fail "export is not sparse: $alloc bytes allocated"
rm "$TMP/b.raw"

# Change 1 % of the blocks (random ones, data and zeros), commit.
python3 - "$TMP/a.raw" <<'PY'
import os, random, sys
r = random.Random(7)
with open(sys.argv[1], "r+b") as f:
    for blk in r.sample(range(262144), 2621):
        f.seek(blk * 4096)
        f.write(bytes(4096) if r.random() < 0.2 else os.urandom(4096))
PY
cowfork image commit base "$TMP/a.raw" child
own=$(stored child own_bytes)
echo "commit of 1 % changed blocks: stored $own bytes"
[ "$own" -le $(( (1 << 30) / 100 + MiB )) ] || fail "commit stored $own > 1 % + 1 MiB"
[ "$own" -gt 0 ] || fail "commit stored nothing"
cowfork image export child "$TMP/c.raw"
cmp "$TMP/a.raw" "$TMP/c.raw" || fail "export of the child differs"
rm "$TMP/c.raw"

# A chain of 20 commits on a smaller image, each a few changes; every link exports identical.
python3 "$here/gen-raw.py" "$TMP/s.raw" 64 3
cowfork image import "$TMP/s.raw" g0
for g in $(seq 1 20); do
  python3 - "$TMP/s.raw" "$g" <<'PY'
import os, random, sys
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    for blk in r.sample(range(16384), 50):
        f.seek(blk * 4096)
        f.write(bytes(4096) if r.random() < 0.3 else os.urandom(4096))
PY
  # Holes punched where the parent had data must read as zeros in the child.
  [ $((g % 5)) -eq 0 ] && fallocate -p -o $((g * 1000 * 4096 + 512)) -l $((300 * 4096)) "$TMP/s.raw"
  cowfork image commit "g$((g - 1))" "$TMP/s.raw" "g$g"
done
cowfork image export g20 "$TMP/t.raw"
cmp "$TMP/s.raw" "$TMP/t.raw" || fail "generation 20 exports different bytes"
[ "$(stored g20 generation)" -eq 20 ] || fail "generation is not 20"
cowfork image verify g20 >/dev/null
echo "chain of 20: ok, $(stored g20 layers) layers, $(stored g20 extents) extents"

# rm of the middle and of the root keeps the descendants whole; gc collects.
cowfork image rm g10 g0
cowfork image verify g20 >/dev/null || fail "g20 broken after removing ancestors"
cowfork image export g20 "$TMP/t.raw"
cmp "$TMP/s.raw" "$TMP/t.raw" || fail "g20 differs after removing ancestors"
cowfork image gc --json | grep -q '"layers_removed": 0' || fail "a second gc found garbage"
cowfork image ls --json | python3 -c 'import json,sys; n=[i["name"] for i in json.load(sys.stdin)]; assert "g10" not in n and "g20" in n, n'

# verify: one flipped byte in a layer, then in the header.
flip() { python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^1]))' "$1" "$2"; }
layer=$(cowfork image info child --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
lp="$COWFORK_STORE/layers/$layer"
flip "$lp" 12345
if out=$(cowfork image verify child 2>&1); then fail "verify missed a flipped layer byte"; fi
echo "$out"
grep -q "$layer" <<<"$out" || fail "verify did not name the bad layer"
flip "$lp" 12345
cowfork image verify child >/dev/null || fail "verify fails after the flip was undone"
hp="$COWFORK_STORE/images/child"
flip "$hp" 200
rc=0; out=$(cowfork image verify child 2>&1) || rc=$?
echo "$out"
[ $rc -eq 1 ] && grep -q "checksum" <<<"$out" || fail "verify missed a flipped header byte (rc $rc)"
flip "$hp" 200

# Exit codes and messages.
expect() { # expect RC CMD... : the command exits RC with a one-line error
  local want=$1 rc=0; shift
  out=$("$@" 2>&1 >/dev/null) || rc=$?
  [ $rc -eq "$want" ] || fail "'$*' exited $rc, expected $want: $out"
  [ -n "$out" ] || fail "'$*' printed no error"
}
expect 1 cowfork image info nosuch
expect 1 cowfork image export nosuch "$TMP/x.raw"
expect 1 cowfork image import "$TMP/nosuch.raw" x
expect 1 cowfork image import "$TMP/s.raw" g20
expect 1 cowfork image import "$TMP/s.raw" ../evil
expect 2 cowfork image import "$TMP/s.raw"
expect 2 cowfork image import "$TMP/s.raw" x --block-size 3x
expect 1 cowfork image import "$TMP/s.raw" x --block-size 3000
expect 2 cowfork image info g20 --bogus
expect 2 cowfork image frobnicate
expect 2 cowfork nosuchcommand
head -c 5000 /dev/urandom >"$TMP/odd.raw"
expect 1 cowfork image import "$TMP/odd.raw" odd
expect 1 cowfork image commit g20 "$TMP/odd.raw" odd
for c in "image import" "image export" "image commit" "image info" "image verify" "image ls" "image rm" "image gc"; do
  # shellcheck disable=SC2086
  cowfork $c --help | grep -q "^Usage: cowfork $c" || fail "$c --help"
done
cowfork --help | grep -q "image import" || fail "cowfork --help does not list the commands"
# A progress bar on a terminal (script(1) gives the command one), none otherwise.
if command -v script >/dev/null; then
  script -qec "$COWFORK image export g20 $TMP/p.raw" /dev/null >"$TMP/tty.out"
  grep -q "export .*100%" "$TMP/tty.out" || fail "no progress bar on a terminal"
fi
cowfork image export g20 "$TMP/p.raw" 2>"$TMP/notty.err"
[ ! -s "$TMP/notty.err" ] || fail "progress output when stderr is not a terminal"
echo "all image CLI checks passed"
