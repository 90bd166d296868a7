#!/usr/bin/env bash
# Every child of a Python template starts with its own random state: the
# driver (shim/py/driver.py) reads the sandbox's generation id before each
# request and, in a new child, reseeds `random` and `numpy.random`
# (docs/python.md, "Random state"). Before, all children printed the
# template's next random number.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
DRIVER=/usr/lib/cowfork/driver.py # inside every root (the default one here)
export OPENBLAS_NUM_THREADS=1

distinct() { # FILE COLUMN N: the column holds N different values in N lines
  [ "$(wc -l < "$1")" = "$3" ] && [ "$(cut -d' ' -f"$2" "$1" | sort -u | wc -l)" = "$3" ]
}

# `random` imported in the template (its state is the template's).
cowfork template create py-rand --mem 128M -- $PY "$DRIVER" --preload random 2> "$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
printf 'print(random.random(), random.getrandbits(64))\n' > "$TMP/r.py"
cowfork fork py-rand -n 6 --input "$TMP/r.py" > "$TMP/r.out" 2> "$TMP/r.err" || fail "fork: $(cat "$TMP/r.err")"
distinct "$TMP/r.out" 1 6 && distinct "$TMP/r.out" 2 6 || fail "6 children printed: $(cat "$TMP/r.out")"
# In reused VMs one after another (--jobs 1), and a fresh VM each.
cowfork fork py-rand -n 6 --jobs 1 --input "$TMP/r.py" > "$TMP/r1.out" && distinct "$TMP/r1.out" 1 6 ||
  fail "--jobs 1: $(cat "$TMP/r1.out")"
cowfork fork py-rand -n 6 --no-reuse --input "$TMP/r.py" > "$TMP/r2.out" && distinct "$TMP/r2.out" 1 6 ||
  fail "--no-reuse: $(cat "$TMP/r2.out")"
echo "ok   6 children print 6 different random.random() and getrandbits(64) (reused VMs and new ones)"
# One child's requests continue one stream (no reseed within a child):
# seed(1) in the first request, the second request draws what seed(1) gives next.
want=$($PY -c 'import random; random.seed(1); random.random(); print(random.random())')
printf 'random.seed(1)\nrandom.random()\n#---\nprint(random.random())\n' > "$TMP/s.py"
[ "$(cowfork fork py-rand --input "$TMP/s.py")" = "$want" ] || fail "a child reseeded between its requests"
echo "ok   within one child the generator is not reseeded between requests"
# A branch's children: each reseeded again.
printf 'random.seed(7)\n' > "$TMP/b.py"
cowfork fork py-rand --input "$TMP/b.py" --branch py-rand-b 2> "$TMP/b.err" || fail "branch: $(cat "$TMP/b.err")"
cowfork fork py-rand-b -n 6 --input "$TMP/r.py" > "$TMP/rb.out" && distinct "$TMP/rb.out" 1 6 ||
  fail "a branch's children: $(cat "$TMP/rb.out")"
echo "ok   6 children of a branch that seeded random print 6 different values"

if $PY -c 'import numpy' 2>/dev/null; then
  cowfork template create py-numpy --mem 256M -- $PY "$DRIVER" --preload numpy 2> "$TMP/create.err" ||
    fail "template create: $(cat "$TMP/create.err")"
  printf 'import random\nprint(random.random(), np.random.random(), np.random.randint(1 << 62))\n' > "$TMP/n.py"
  cowfork fork py-numpy -n 6 --input "$TMP/n.py" > "$TMP/n.out" 2> "$TMP/n.err" || fail "fork: $(cat "$TMP/n.err")"
  distinct "$TMP/n.out" 1 6 && distinct "$TMP/n.out" 2 6 && distinct "$TMP/n.out" 3 6 ||
    fail "6 numpy children printed: $(cat "$TMP/n.out")"
  echo "ok   6 children of a numpy template print 6 different random.random() and numpy.random.random()"
else
  echo "SKIP (part): numpy missing for $PY (apt-get install python3-numpy): numpy.random not tested"
fi
