#!/usr/bin/env bash
# A branch of a Python template saves the state after its request ran, with
# or without a final "#---" line (shim/py/driver.py). Before, a request
# without "#---" (the README's code.py) was saved unexecuted: the branch
# paused at the driver's read of fd 0 at end of input, which the driver
# needed to see before running its last request, and each child of the
# branch ran it again joined to its own input.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
DRIVER=/usr/lib/cowfork/driver.py # inside every root (the default one here)

cowfork template create py --mem 128M -- $PY "$DRIVER" --preload json 2> "$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
# The request appends to a list kept on a module (a request's own names are
# gone after it); children of the branch print the list.
add='json.L = getattr(json, "L", [])\njson.L.append(len(json.L))\nprint("branch", json.L)\n'
printf 'print("child", json.L)\n' > "$TMP/child.py"
for end in '' '#---\n' '#---'; do
  name=b$(printf '%s' "$end" | wc -c)
  printf "$add$end" > "$TMP/req.py"
  out=$(cowfork fork py --input "$TMP/req.py" --branch $name 2> "$TMP/b.err") || fail "branch ($name): $(cat "$TMP/b.err")"
  [ "$out" = "branch [0]" ] || fail "the branching child ($name, ended by '$end') printed '$out'"
  out=$(cowfork fork $name -n 3 --input "$TMP/child.py" 2>&1) || fail "children of $name: $out"
  [ "$out" = "$(printf 'child [0]\nchild [0]\nchild [0]')" ] || fail "children of the branch ($name, ended by '$end') printed: $out"
  # A branch of the branch, then: the second request ran once too.
  out=$(cowfork fork $name --input "$TMP/req.py" --branch $name-2 2> "$TMP/b.err") || fail "branch of $name: $(cat "$TMP/b.err")"
  [ "$out" = "branch [0, 1]" ] || fail "branch of $name printed '$out'"
  [ "$(cowfork fork $name-2 --input "$TMP/child.py")" = "child [0, 1]" ] || fail "child of $name-2"
done
echo "ok   a request ended by end of input, '#---' or '#---\\n' runs once before the branch is saved; its children and a branch of it see its effect exactly once"
# cowfork snapshot is the same path.
printf "$add" > "$TMP/req.py"
cowfork snapshot py s1 --input "$TMP/req.py" > /dev/null 2>&1 || fail "snapshot"
[ "$(cowfork fork s1 --input "$TMP/child.py")" = "child [0]" ] || fail "child of a snapshot: $(cowfork fork s1 --input "$TMP/child.py" 2>&1)"
echo "ok   cowfork snapshot of a request without #---"
# A request of several reads (a file bigger than one read of the driver)
# without "#---": still one request.
{ printf 'x = 0\n'; for i in $(seq 1 20000); do printf 'x += 1\n'; done; printf 'print(x)\n'; } > "$TMP/big.py"
[ "$(cowfork fork py --input "$TMP/big.py")" = 20000 ] || fail "a request over several reads"
echo "ok   a $(wc -c < "$TMP/big.py")-byte request without #--- is one request"
