#!/usr/bin/env bash
# The Python template (shim/py/driver.py): numpy preloaded, paused at the
# driver's first read of stdin; 100 children each run a request and print the
# right result; framing (#--- separators, --frames), errors, isolation between
# children, and the children's private memory.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
$PY -c 'import numpy' 2>/dev/null || skip "numpy missing for $PY (apt-get install python3-numpy)"
DRIVER=/usr/lib/cowfork/driver.py # inside every root (the default one here)
export OPENBLAS_NUM_THREADS=1

cowfork template create py-numpy --mem 256M -- $PY "$DRIVER" --preload numpy 2> "$TMP/create.err" ||
  fail "template create: $(cat "$TMP/create.err")"
echo "ok   $(tail -n 1 "$TMP/create.err")"

echo 'print(numpy.zeros(5).tolist())' > "$TMP/code.py"
cowfork fork py-numpy -n 100 --input "$TMP/code.py" > "$TMP/out" 2> "$TMP/err" || fail "fork -n 100: $(head -c 500 "$TMP/err")"
[ "$(grep -cx '\[0.0, 0.0, 0.0, 0.0, 0.0\]' "$TMP/out")" = 100 ] && [ "$(wc -l < "$TMP/out")" = 100 ] ||
  fail "fork -n 100 printed: $(sort "$TMP/out" | uniq -c | head)"
echo "ok   100 children: 100 x [0.0, 0.0, 0.0, 0.0, 0.0]"

# Per child: exit 0, private memory, nothing mapped anew (numpy is in the template).
cowfork fork py-numpy -n 4 --input "$TMP/code.py" --json > "$TMP/j"
[ "$(grep -c '"status":0.*"pages_mapped":0,"pages_copied":0,"stdout":"\[0.0, 0.0, 0.0, 0.0, 0.0\]\\n","stderr":""' "$TMP/j")" = 4 ] ||
  fail "json: $(head -c 600 "$TMP/j")"
priv=$(grep -o '"private_kib":[0-9]*' "$TMP/j" | head -n 1 | cut -d: -f2)
echo "ok   --json; a child's private memory after the request: $priv KiB"

# Several requests through one child, framed; a failing request.
printf 'x = np.arange(4)\nprint(int(x.sum()))\n#---\nprint(x)\n#---\nprint(json.dumps([1]))\n' > "$TMP/multi.py"
cowfork fork py-numpy --input "$TMP/multi.py" > "$TMP/m.out" 2> "$TMP/m.err" && fail "a failing request exited 0"
[ "$(cat "$TMP/m.out")" = 6 ] || fail "framing: $(cat "$TMP/m.out")"
grep -q "NameError: name 'x' is not defined" "$TMP/m.err" && grep -q "NameError: name 'json' is not defined" "$TMP/m.err" ||
  fail "errors: $(cat "$TMP/m.err")"
echo "ok   requests separated by #---, each in a fresh namespace; errors as tracebacks, exit status 1"
cowfork template create py-frames --mem 256M -- $PY "$DRIVER" --preload numpy,json --frames 2>/dev/null
printf 'print(json.dumps(np.ones(2).tolist()))\n#---\nraise ValueError("bad")\n' > "$TMP/f.py"
cowfork fork py-frames --input "$TMP/f.py" > "$TMP/f.out" 2>/dev/null || true
[ "$(cat "$TMP/f.out")" = "$(printf '[1.0, 1.0]\n#--- ok\n#--- error')" ] || fail "--frames: $(cat "$TMP/f.out")"
echo "ok   --frames marks each result; --preload numpy,json"

# Isolation: a child that changes numpy and writes /tmp; its siblings see none of it.
mkdir -p "$TMP/in"
printf 'numpy.zeros = None\nopen("/tmp/mark", "w").write("x")\nprint("changed")\n' > "$TMP/in/0"
for i in 1 2; do printf 'import os\nprint(numpy.zeros(2).tolist(), os.path.exists("/tmp/mark"))\n' > "$TMP/in/$i"; done
[ "$(cowfork fork py-numpy -n 3 --input-dir "$TMP/in")" = "$(printf 'changed\n[0.0, 0.0] False\n[0.0, 0.0] False')" ] ||
  fail "isolation: $(cowfork fork py-numpy -n 3 --input-dir "$TMP/in" 2>&1)"
echo "ok   a child's changes to numpy and /tmp are invisible to its siblings"

# VM reuse, checked the slow way (COWFORK_CHECK_RESET=1, docs/sandbox.md):
# children that change numpy, write /tmp, allocate 80 MB (past the pages a
# reset keeps private), fail, or only print, one after another in the same
# VMs; each must see the template exactly, and every reset must compare
# equal to a fresh child.
rm -rf "$TMP/rin" && mkdir -p "$TMP/rin" "$TMP/rout"
for i in $(seq 0 19); do
  case $((i % 4)) in
  0) printf 'import os\nprint(getattr(np, "mark", None), os.path.exists("/tmp/s"), numpy.zeros(2).tolist())\n' ;;
  1) printf 'np.mark = 1\nnumpy.zeros = None\nopen("/tmp/s", "w").write("x" * 100000)\nprint("changed")\n' ;;
  2) printf 'a = np.ones(10_000_000)\nprint(int(a.sum()))\n' ;;
  3) printf 'raise ValueError("boom")\n' ;;
  esac > "$TMP/rin/$i"
done
for jobs in 1 2; do
  COWFORK_CHECK_RESET=1 cowfork fork py-numpy -n 20 --jobs $jobs --input-dir "$TMP/rin" --output-dir "$TMP/rout" \
    2> "$TMP/r.err" || fail "reuse check, --jobs $jobs: $(head -c 800 "$TMP/r.err")"
  for i in $(seq 0 19); do
    case $((i % 4)) in
    0) want='None False [0.0, 0.0]' ;; 1) want=changed ;; 2) want=10000000 ;; 3) want= ;;
    esac
    [ "$(cat "$TMP/rout/$i")" = "$want" ] || fail "reuse, --jobs $jobs, child $i printed: $(cat "$TMP/rout/$i")"
  done
done
echo "ok   20 children in reused VMs (numpy and /tmp changed, 80 MB allocated, errors): every reset equal to a fresh child"
