#!/usr/bin/env bash
# Threads in a sandbox (issue 13, item 2) against the same program run
# natively: pthread_create/join (CLONE_SETTLS, CLONE_CHILD_CLEARTID + futex
# wake at exit), vCPUs reused by threads made one after another, mutexes,
# condition variables and semaphores (futex WAIT/WAKE/REQUEUE between
# vCPUs), TLS and thread ids, pthread_kill to a thread spinning in its own
# code, a thread blocked on a pipe while another runs, sleeps that overlap,
# exit() in a thread, pthread_exit of main; then Python's threading and
# ThreadPoolExecutor.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
requires gcc
here=$(cd "$(dirname "$0")" && pwd)
T=$TMP/threads
gcc -static -O1 -pthread -o "$T" "$here/sandbox/threads.c" 2>"$TMP/cc.err" || skip "cannot build static programs: $(head -n 1 "$TMP/cc.err")"


same_as_native "8 threads at once" "$T" create 8
same_as_native "30 threads at once" "$T" create 30
same_as_native "100 threads one after another" "$T" serial 100
same_as_native "mutex between 4 threads" "$T" mutex
same_as_native "condition variable" "$T" condvar
same_as_native "TLS and ids" "$T" identity
same_as_native "pthread_kill to a spinning thread" "$T" kill
same_as_native "a thread blocked on a pipe" "$T" pipe
same_as_native "overlapping sleeps" "$T" sleeps
same_as_native "semaphores" "$T" sem
same_as_native "exit() in a thread" "$T" exit
same_as_native "pthread_exit of main" "$T" main-exit
same_as_native "execve in a thread ends the others" "$T" exec
SAME_MEM=2G same_as_native "100 threads alive at once (8 MiB stacks: --mem 2G)" "$T" hold 100

# 130 threads alive at once: Linux starts them all; cowfork's limit is 121
# (a vCPU each, docs/sandbox.md), a difference this test does not assert as
# right. It checks only that the program goes on either way: pthread_create
# fails cleanly (its error printed) and the sandbox ends normally.
"$T" hold 130 | grep -q "^130 of 130 threads alive at once; then none failed" || fail "natively 130 threads should start"
src=0
timeout 120 "$COWFORK" run --root / --mem 2G -- "$T" hold 130 >"$TMP/s.out" 2>"$TMP/s.err" || src=$?
grep -q "^[0-9]* of 130 threads alive at once; then " "$TMP/s.out" && [ "$src" = 0 ] ||
  fail "130 threads: the program should go on and end normally: $src $(cat "$TMP/s.out" "$TMP/s.err")"
echo "ok   130 threads asked for: $(cat "$TMP/s.out") (natively all 130; the limit is cowfork's)"

# --cpus: what the program sees, and threads taking turns on fewer CPUs
# than they need (two threads spin-waiting for each other on one CPU end
# only because the running one is preempted after its time slice).
n=$("$T" affinity)
[ "$n" = "sched_getaffinity: $(nproc) CPUs" ] || fail "native affinity: $n"
if [ "$(nproc)" = 2 ]; then same_as_native "sched_getaffinity (default --cpus 2 = this machine's)" "$T" affinity; fi
got=$(timeout 60 "$COWFORK" run --root / --cpus 3 -- "$T" affinity 2>&1) && [ "$got" = "sched_getaffinity: 3 CPUs" ] ||
  fail "--cpus 3: $got"
got=$(timeout 60 "$COWFORK" run --root / --cpus 3 -- /bin/grep -c ^processor /proc/cpuinfo 2>&1) && [ "$got" = 3 ] ||
  fail "--cpus 3: /proc/cpuinfo lists $got"
got=$(timeout 120 "$COWFORK" run --root / --cpus 1 -- "$T" pingpong 2>&1) && [ "$got" = "20 turns each between two spinning threads" ] ||
  fail "--cpus 1 pingpong: $got"
"$COWFORK" run --root / --cpus 0 -- /bin/true 2>/dev/null && fail "--cpus 0 should be refused"
echo "ok   --cpus: sched_getaffinity and /proc/cpuinfo show N; two spinning threads share one CPU by time slices"

# Python
py='import threading, concurrent.futures as cf
r = []
def w(i): r.append(i * i)
ts = [threading.Thread(target=w, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(r))
with cf.ThreadPoolExecutor(4) as ex: print(sum(ex.map(lambda x: x * x, range(1000))))
e = threading.Event(); threading.Timer(0.05, e.set).start(); print(e.wait(10))
e = threading.Event(); ts = [threading.Thread(target=e.wait) for i in range(3)]; [t.start() for t in ts]
st = open("/proc/self/status").read(); print([l for l in st.splitlines() if l.startswith("Threads")])
print(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[17]); e.set(); [t.join() for t in ts]'
want=$(python3 -c "$py")
got=$(timeout 120 "$COWFORK" run -- /usr/bin/python3 -c "$py" 2>"$TMP/py.err") || fail "python threads: $(cat "$TMP/py.err")"
[ "$got" = "$want" ] || fail "python threads: got '$got', want '$want' ($(cat "$TMP/py.err"))"
echo "ok   python threading, ThreadPoolExecutor, threading.Timer, /proc/self/status Threads and stat num_threads: $(echo "$got" | tr '\n' '|')"

# --cpu-limit counts every thread: two threads spin while main waits in
# pthread_join (the run's own limit timer counts main's CPU time only; a
# program must not escape the limit by computing in threads).
cat > "$TMP/spin2.c" <<'CEOF'
#include <pthread.h>
static void *spin(void *a) { (void)a; for (volatile unsigned long i = 0;; i++) ; return 0; }
int main(void)
{
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&t[i], 0, spin, 0);
  pthread_join(t[0], 0);
  return 0;
}
CEOF
gcc -static -O1 -pthread -o "$TMP/spin2" "$TMP/spin2.c"
t0=$(date +%s%N) rc=0
timeout 120 "$COWFORK" run --root / --cpu-limit 1 --timeout 100 -- "$TMP/spin2" 2>"$TMP/cl.err" || rc=$?
el=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "CPU time limit of 1 s exceeded" "$TMP/cl.err" && [ $rc = 137 ] ||
  fail "--cpu-limit 1 with 2 spinning threads: exit $rc after $el ms: $(cat "$TMP/cl.err")"
echo "ok   --cpu-limit 1 counts every thread: 2 spinning threads (main waiting) ended after $el ms"
