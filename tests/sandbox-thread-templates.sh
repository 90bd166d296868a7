#!/usr/bin/env bash
# Templates of threaded programs (issue 13, item 6): a program paused with
# threads in every state (blocked on a condition variable, computing in its
# own code with live FPU registers, in nanosleep, in a timed wait, in
# sigwait, handing a token back and forth, making system calls in a loop)
# is saved whole; every child gets every thread, each with its
# tid, TLS, registers and signal state, and prints what the same program
# prints natively for the same input. Children in reused VMs (checked
# against a fresh child: COWFORK_CHECK_RESET), in new VMs, on the uffd
# backend; Python with a running ThreadPoolExecutor and numpy on OpenBLAS's
# threads; a branch of a threaded child; a live daemon sandbox whose
# thread lives across execs while it is parked between them.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
T=$TMP/thpool
gcc -static -O1 -pthread -o "$T" "$here/sandbox/thpool.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"

# compare_children DIR N: child I's output (DIR/out/I) against the native
# run with the same input (DIR/in/I).
compare_children() {
  local d=$1 n=$2 bad=0
  for i in $(seq 0 $((n - 1))); do
    "$T" < "$d/in/$i" | tail -n +2 > "$d/want" # line 1 was printed before the pause
    cmp -s "$d/want" "$d/out/$i" || { bad=$((bad + 1)); echo "child $i:"; diff "$d/want" "$d/out/$i" | head; cat "$d/out/$i.err"; }
  done
  [ $bad = 0 ] || fail "$bad of $n children differ from the native run"
}

cowfork template create thp --root / --mem 256M -- "$T" 2>"$TMP/create.err" || fail "template create: $(cat "$TMP/create.err")"
echo "ok   template of a program with 11 threads: $(tail -n 1 "$TMP/create.err")"

D=$TMP/c1
mkdir -p "$D/in"
for i in $(seq 0 9); do echo $((i * 3 % 20)) > "$D/in/$i"; done
COWFORK_CHECK_RESET=1 cowfork fork thp -n 10 --jobs 1 --input-dir "$D/in" --output-dir "$D/out" 2>"$TMP/fork.err" ||
  fail "fork -n 10 (reused VMs, checked): $(head -c 600 "$TMP/fork.err")"
compare_children "$D" 10
echo "ok   10 children in reused VMs (each checked against a fresh child), every thread going on: as natively"

D=$TMP/c2
mkdir -p "$D/in"
for i in 0 1 2; do echo $((i + 5)) > "$D/in/$i"; done
cowfork fork thp -n 3 --no-reuse --input-dir "$D/in" --output-dir "$D/out" || fail "fork --no-reuse"
compare_children "$D" 3
mkdir -p "$D/u"
cowfork fork thp -n 3 --backend uffd --input-dir "$D/in" --output-dir "$D/u/out" || fail "fork --backend uffd"
mv "$D/out" "$D/file-out"
mv "$D/u/out" "$D/out"
compare_children "$D" 3
echo "ok   children in new VMs, and on the uffd backend: as natively"

# Paused with one CPU for 11 threads (--cpus 1): most of them wait for the
# CPU at the pause, the children run on 2.
cowfork template create thp1 --root / --mem 256M --cpus 1 -- "$T" 2>"$TMP/create.err" || fail "template create --cpus 1: $(cat "$TMP/create.err")"
D=$TMP/c3
mkdir -p "$D/in"
for i in 0 1 2; do echo $((i + 1)) > "$D/in/$i"; done
cowfork fork thp1 -n 3 --input-dir "$D/in" --output-dir "$D/out" || fail "fork thp1"
compare_children "$D" 3
echo "ok   a template paused with 11 threads on one CPU: children as natively"

PY=/usr/bin/python3
OB=/usr/lib/x86_64-linux-gnu/openblas-pthread
if ! [ -x $PY ] || ! $PY -c 'import numpy' 2>/dev/null; then
  echo "skip Python cases: $PY with numpy missing (apt-get install python3-numpy)"
  exit 0
fi
env=() blas=" (reference BLAS: no threads of its own)"
if [ -e "$OB/libblas.so.3" ]; then
  env=(--env LD_LIBRARY_PATH=$OB) blas=" on OpenBLAS with its thread"
  export LD_LIBRARY_PATH=$OB # the native runs too
  [ "$(LD_LIBRARY_PATH=$OB $PY -c 'import numpy, os; print(len(os.listdir("/proc/self/task")))')" -gt 1 ] ||
    fail "numpy on OpenBLAS started no thread natively"
else
  echo "note: no OpenBLAS ($OB; apt-get install libopenblas0-pthread): numpy runs on the reference BLAS, no threads of its own"
fi
# --mem 1G: the address space is --mem (docs/sandbox.md, "Threads"), and
# OpenBLAS's 128 MiB buffer after 6 threads' stacks and malloc arenas needs
# it (at 512M it retries the mmap forever).
cat > "$TMP/pool.py" <<'EOF'
import sys, threading, concurrent.futures as cf
import numpy as np
ex = cf.ThreadPoolExecutor(4)
assert sum(ex.map(lambda x: x * x, range(100))) == 328350
a = np.arange(90000, dtype=float).reshape(300, 300) / 1e4
w = float((a @ a).sum())
ev = threading.Event()
t = threading.Thread(target=ev.wait)
t.start()
print("ready", threading.active_count(), flush=True)
n = int(sys.stdin.readline())
print(sum(ex.map(lambda x: x * x, range(n))))
b = np.ones((300, 300)) * n
print(int((b @ b).sum()), round(w, 3))
ev.set()
t.join()
print("threads", threading.active_count())
ex.shutdown()
print("threads after shutdown", threading.active_count())
EOF
cowfork template create pyth --root / --mem 1G "${env[@]}" -- $PY "$TMP/pool.py" 2>"$TMP/create.err" ||
  fail "template create (Python threads): $(cat "$TMP/create.err")"
D=$TMP/p1
mkdir -p "$D/in"
for i in 0 1 2 3; do echo $((i * 50 + 1)) > "$D/in/$i"; done
cowfork fork pyth -n 4 --input-dir "$D/in" --output-dir "$D/out" 2>"$TMP/fork.err" || fail "fork pyth: $(head -c 600 "$TMP/fork.err")"
bad=0
for i in 0 1 2 3; do
  $PY "$TMP/pool.py" < "$D/in/$i" | tail -n +2 > "$D/want"
  cmp -s "$D/want" "$D/out/$i" || { bad=$((bad + 1)); diff "$D/want" "$D/out/$i"; cat "$D/out/$i.err"; }
done
[ $bad = 0 ] || fail "$bad of 4 Python children differ from the native run"
echo "ok   Python template with a running ThreadPoolExecutor, a waiting thread and numpy$blas: 4 children as natively"

# A branch of a threaded child: the driver with numpy, one request starts a
# pool (kept in builtins: each request has a fresh namespace) and the child
# is saved; its children use the pool.
DRIVER=/usr/lib/cowfork/driver.py # inside every root (the default one here)
cowfork template create pyd --mem 1G "${env[@]}" -- $PY "$DRIVER" --preload numpy,queue,threading 2>"$TMP/create.err" ||
  fail "template create (driver): $(cat "$TMP/create.err")"
printf 'import builtins, concurrent.futures as cf\nbuiltins.POOL = cf.ThreadPoolExecutor(3)\nprint(sum(POOL.map(abs, range(-5, 5))))\n' > "$TMP/req1.py"
cowfork fork pyd --branch pyd-pool --input "$TMP/req1.py" > "$TMP/b.out" 2>"$TMP/b.err" || fail "branch: $(cat "$TMP/b.err")"
[ "$(cat "$TMP/b.out")" = 25 ] || fail "branch printed: $(cat "$TMP/b.out") $(cat "$TMP/b.err")"
printf 'import threading\nprint(sorted(POOL.map(lambda x: x * x, range(6))), threading.active_count(), int(np.ones((200, 200)).dot(np.ones(200)).sum()))\n' > "$TMP/req2.py"
cowfork fork pyd-pool -n 5 --input "$TMP/req2.py" > "$TMP/b2.out" 2>"$TMP/b2.err" || fail "children of the branch: $(head -c 600 "$TMP/b2.err")"
want="[0, 1, 4, 9, 16, 25] 4 40000"
[ "$(sort -u "$TMP/b2.out")" = "$want" ] && [ "$(wc -l < "$TMP/b2.out")" = 5 ] ||
  fail "children of the branch printed: $(cat "$TMP/b2.out") $(head -c 400 "$TMP/b2.err")"
echo "ok   a branch saved with a pool of 3 threads running: 5 children use it ($want)"

# The daemon: a live sandbox starts a thread in one exec and uses it in the
# next ones; it is parked between execs (each unpark checked byte for byte).
# queue and threading are preloaded: a module loaded from a file after the
# fork maps a host file, and such a sandbox is not parked (docs/daemon.md).
. "$here/daemon/functions.sh"
COWFORK_CHECK_PARK=1 start_daemon -q
ID=$(jget "$(api POST /v1/sandboxes '{"template":"pyd"}')" 'j["ids"][0]')
REQ='import builtins, threading, queue\nbuiltins.Q, builtins.R = queue.Queue(), queue.Queue()\ndef serve():\n    for x in iter(Q.get, None):\n        R.put(x * 2)\nbuiltins.T = threading.Thread(target=serve)\nT.start()\nQ.put(1)\nprint(R.get())\n#---\n'
api POST /v1/sandboxes/$ID/exec "{\"input\":\"$REQ\"}" > "$TMP/e"; expect 200 "exec that starts a thread"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = 2 ] || fail "first exec: $(cat "$TMP/e")"
for i in 21 50; do
  [ "$(jget "$(api GET /v1/sandboxes/$ID)" 'j["parked"]')" = True ] || fail "a sandbox with a thread is not parked: $(api GET /v1/sandboxes/$ID)"
  api POST /v1/sandboxes/$ID/exec "{\"input\":\"Q.put($i)\\nprint(R.get(timeout=30), T.is_alive())\\n#---\\n\"}" > "$TMP/e"
  [ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = "$((i * 2)) True" ] || fail "exec after a park: $(cat "$TMP/e")"
done
api POST /v1/sandboxes/$ID/exec '{"input":"Q.put(None)\nT.join()\nprint(threading.active_count())\n#---\n"}' > "$TMP/e"
[ "$(jget "$(cat "$TMP/e")" 'j["output"]')" = 1 ] || fail "thread end: $(cat "$TMP/e")"
stop_daemon
echo "ok   daemon: a thread started in one exec serves the next ones, the sandbox parked between them"
