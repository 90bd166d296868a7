#!/usr/bin/env bash
# Debian's /usr/bin/python3 (dynamic, 3.11) in a sandbox against the same
# interpreter run natively: -c, -m json.tool, the stdlib modules the issue
# names, numpy; threads and processes refused with clear Python errors; exit
# statuses; /proc/self/exe. Outputs must be byte-identical to the native run.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
export OPENBLAS_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
same() { # NAME STDIN-FILE ARGS...: native and sandbox give the same stdout, stderr, status
  local name=$1 in=$2; shift 2
  local nrc=0 src=0
  (cd / && "$@") < "$in" > "$TMP/n.out" 2> "$TMP/n.err" || nrc=$?
  (cd / && cowfork run --root / --mem 512M -- "$@") < "$in" > "$TMP/s.out" 2> "$TMP/s.err" || src=$?
  if cmp -s "$TMP/n.out" "$TMP/s.out" && cmp -s "$TMP/n.err" "$TMP/s.err" && [ $nrc = $src ]; then
    echo "ok   $name"
  else
    echo "native ($nrc):"; head -c 600 "$TMP/n.out" "$TMP/n.err"
    echo "sandbox ($src):"; head -c 600 "$TMP/s.out" "$TMP/s.err"
    fail "$name differs from the native run"
  fi
}
printf '{"b": [1, 2.5, null], "a": "\\u00e9"}\n' > "$TMP/in.json"
same "python3 -c 'print(1)'" /dev/null $PY -c 'print(1)'
same "python3 -m json.tool" "$TMP/in.json" $PY -m json.tool --sort-keys
same "import json, hashlib, decimal, re, sqlite3" /dev/null $PY -c '
import json, hashlib, decimal, re, sqlite3
print(json.dumps({"x": [1, 2]}), hashlib.sha256(b"cowfork").hexdigest(), hashlib.md5(b"x").hexdigest())
decimal.getcontext().prec = 50
print(decimal.Decimal(1) / decimal.Decimal(7), re.sub(r"(\w+) (\w+)", r"\2 \1", "hello world"))
db = sqlite3.connect(":memory:")
db.execute("create table t (k text, v int)")
db.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2), ("a", 3)])
print(db.execute("select k, sum(v) from t group by k order by k").fetchall())'
same "stdin, exceptions and exit status" "$TMP/in.json" $PY -c '
import sys, json
d = json.load(sys.stdin)
print(sorted(d))
try:
    1 / 0
except ZeroDivisionError as e:
    print("caught", e)
sys.exit(3)'
if $PY -c 'import numpy' 2>/dev/null; then
  same "import numpy; numpy.zeros(5).tolist()" /dev/null $PY -c '
import numpy as np
print(np.zeros(5).tolist())
a = np.arange(12, dtype=np.float64).reshape(3, 4)
print(a @ a.T, np.linalg.det(np.array([[2.0, 1.0], [1.0, 3.0]])).round(6), np.sort(np.array([3, 1, 2])))
print(np.fft.fft(np.ones(4)).real.tolist(), np.random.default_rng(1).integers(0, 100, 5).tolist())'
else
  echo "skip numpy: not installed (apt-get install python3-numpy)"
fi

# Threads and processes: a thread runs, subprocess.run captures a child's
# output, os.fork + os.waitpid give the child's exit status.
cowfork run --root / -- $PY -c '
import threading, subprocess, os
t = threading.Thread(target=print, args=("thread: ran",))
t.start(); t.join()
print("subprocess:", subprocess.run(["/bin/echo", "hi"], capture_output=True).stdout)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(os.path.realpath("/proc/self/exe"), os.readlink("/proc/self") == str(os.getpid()))' > "$TMP/r.out" 2>&1 || fail "processes: $(cat "$TMP/r.out")"
[ "$(cat "$TMP/r.out")" = "$(printf "thread: ran\nsubprocess: b'hi\\\\n'\nfork: 7\n%s True" "$(readlink -f $PY)")" ] ||
  fail "processes: $(cat "$TMP/r.out")"
echo "ok   a thread runs; subprocess.run and os.fork + waitpid work; /proc/self/exe is the program"
# A program that was exec'd (sh -c "exec python3") may still setpgid its new
# child: the child has not exec'd (its fork inherited the parent's exec flag).
cat > "$TMP/pg.py" <<'PGPY'
import os, time
pid = os.fork()
if pid == 0:
    time.sleep(1)
    os._exit(0)
os.setpgid(pid, pid)
print("setpgid of a child:", os.getpgid(pid) == pid, os.waitpid(pid, 0)[1])
PGPY
same_as_native "setpgid of a child after exec" /bin/sh -c "exec $PY $TMP/pg.py"

# Writable files: the sandbox's /tmp (tempfile), and any other path (the
# overlay: written in the sandbox's memory, never on the host).
rm -f /etc/cowfork-test
cowfork run --root / -- $PY -c '
import tempfile, os
with tempfile.NamedTemporaryFile("w", delete=False) as f:
    f.write("data")
print(open(f.name).read(), f.name.startswith("/tmp/"))
with open("/etc/cowfork-test", "w") as f:
    f.write("etc")
print(open("/etc/cowfork-test").read())' > "$TMP/w.out" 2>&1
[ "$(cat "$TMP/w.out")" = "$(printf 'data True\netc')" ] || fail "files: $(cat "$TMP/w.out")"
[ ! -e /etc/cowfork-test ] || fail "files: the sandbox's /etc/cowfork-test reached the host"
echo "ok   tempfile in the sandbox's /tmp; a write to /etc stays in the sandbox"

# The libraries are mapped copy-on-write from the host files, not copied.
cowfork run --root / -v -- $PY -c pass 2> "$TMP/v.err" || fail "-v: $(cat "$TMP/v.err")"
grep -q 'file pages: [1-9][0-9]* mapped copy-on-write, 0 copied' "$TMP/v.err" || fail "-v: $(cat "$TMP/v.err")"
echo "ok   python3 -c pass: $(grep -o 'file pages:.*' "$TMP/v.err")"
