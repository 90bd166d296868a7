#!/usr/bin/env bash
# shim/py/driver.py run natively (no sandbox needed): its framing, and the
# order of its reads that a branch or a live sandbox relies on: a request
# runs before the driver's first *waiting* read that finds the end of input
# (the pause point of a branch, docs/sandbox.md), whether or not it ends
# with "#---"; the driver learns of the end of input without waiting
# (preadv2 with RWF_NOWAIT) and ends at an end of input with nothing in
# hand. Before, a request without "#---" ran only after that read. Also:
# a request spread over several writes to a pipe stays one request, and
# reseed() gives generators a state that depends on the generation id.
. "$(dirname "$0")/functions.sh"
requires strace
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
DRIVER=$(cd "$(dirname "$0")/../shim/py" && pwd)/driver.py

# Framing, natively (the same outputs as in a sandbox, tests/python-template.sh).
printf 'x = 2\nprint(x * 3)\n#---\nprint(x)\n#---\nprint(7)' > "$TMP/multi.py"
$PY "$DRIVER" < "$TMP/multi.py" > "$TMP/m.out" 2> "$TMP/m.err" && fail "a failing request exited 0"
[ "$(cat "$TMP/m.out")" = "$(printf '6\n7')" ] && grep -q "NameError: name 'x'" "$TMP/m.err" || fail "framing: $(cat "$TMP/m.out" "$TMP/m.err")"
for end in '' '\n' '\n#---' '\n#---\n'; do
  printf "print(1)$end" > "$TMP/one.py"
  [ "$($PY "$DRIVER" --frames < "$TMP/one.py")" = "$(printf '1\n#--- ok')" ] || fail "one request ending '$end': $($PY "$DRIVER" --frames < "$TMP/one.py")"
done
[ -z "$($PY "$DRIVER" --frames < /dev/null)" ] || fail "no input, some output"
[ "$(printf '#---\n' | $PY "$DRIVER" --frames)" = "#--- ok" ] || fail "an empty request"
echo "ok   framing: #--- separators, a last request with or without #---, --frames"

# The order of reads: with stdin a regular file, strace the driver. The
# write of the request's output must come before the first read of fd 0
# that returns 0 (end of input), and that read must be a waiting one.
order() { # FILE -> the fd-0 reads and the writes to fd 1, one per line: "read N", "nowait N", "write"
  strace -f -qq -e trace=read,preadv2,write -e signal=none -o "$TMP/trace" $PY "$DRIVER" < "$1" > /dev/null
  awk '/^[0-9]+ +read\(0,/ { sub(/.*= /, ""); print "read " $1 }
       /^[0-9]+ +preadv2\(0,/ { sub(/.*= /, ""); print "nowait " $1 }
       /^[0-9]+ +write\(1,/ { print "write" }' "$TMP/trace"
}
for end in '' '\n#---\n'; do
  printf "print(42)$end" > "$TMP/req.py"
  order "$TMP/req.py" > "$TMP/order"
  first_eof=$(grep -n -m1 -E '^read 0$' "$TMP/order" | cut -d: -f1)
  first_write=$(grep -n -m1 '^write' "$TMP/order" | cut -d: -f1)
  [ -n "$first_eof" ] && [ -n "$first_write" ] && [ "$first_write" -lt "$first_eof" ] ||
    fail "request ending '$end': its output came after the driver's waiting read at end of input: $(tr '\n' ' ' < "$TMP/order")"
  [ "$(grep -c -E '^read 0$' "$TMP/order")" = 1 ] || fail "request ending '$end': waiting reads at end of input: $(tr '\n' ' ' < "$TMP/order")"
done
grep -q '^nowait 0$' <(printf 'print(42)' > "$TMP/req.py"; order "$TMP/req.py") ||
  fail "no non-waiting read found the end of input: $(tr '\n' ' ' < "$TMP/order")"
echo "ok   a request with or without #--- runs before the driver waits at end of input (one waiting read there)"

# A pipe: a request written in pieces, the end of input later: one request,
# run once the writer closes.
{ printf 'x = [1,\n'; sleep 0.3; printf '2]\nprint(sum(x)'; sleep 0.3; printf ')\n'; } | $PY "$DRIVER" > "$TMP/p.out" 2>&1 ||
  fail "pipe: $(cat "$TMP/p.out")"
[ "$(cat "$TMP/p.out")" = 3 ] || fail "a request in pieces through a pipe: $(cat "$TMP/p.out")"
echo "ok   a request written to a pipe in pieces is one request"

# reseed(): the state follows the generation id.
(cd "$(dirname "$DRIVER")" && $PY -c '
import random, driver
draw = lambda g: (driver.reseed(g), random.random())[1]
a, b, a2 = draw(b"a" * 16), draw(b"b" * 16), draw(b"a" * 16)
assert a == a2 and a != b, (a, b, a2)
try:
    import numpy
except ImportError:
    print("numpy missing: numpy.random not checked")
else:
    import numpy.random
    f = lambda g: (driver.reseed(g), numpy.random.random())[1]
    x, y, x2 = f(b"a" * 16), f(b"c" * 16), f(b"a" * 16)
    assert x == x2 and x != y, (x, y, x2)
assert driver.generation_reader() is None  # natively: no CF_AT_GENERATION
') || fail "reseed"
echo "ok   reseed(generation) sets random and numpy.random from the id; no generation natively"
