#!/usr/bin/env bash
# Python's threads in a sandbox against the same script run natively (issue
# 13, item 7; tests/sandbox/pythreads.py): threading (Lock, RLock,
# Condition.notify_all, Barrier, BoundedSemaphore, local, Timer,
# excepthook), ThreadPoolExecutor (a map of 1000 tasks, as_completed, a
# raising task, result(timeout)), queue (Queue with 4 producers and 4
# consumers, PriorityQueue, LifoQueue, SimpleQueue), asyncio (gather,
# to_thread, run_in_executor, wait_for, call_soon_threadsafe), waits with
# timeouts that expire and ones that do not (Event, Lock, RLock, Queue
# get/put, Condition, Semaphore, Thread.join), and numpy's matmul on
# OpenBLAS's worker threads, OPENBLAS_NUM_THREADS unset.
. "$(dirname "$0")/functions.sh"
[ -c /dev/kvm ] && [ -r /dev/kvm ] || skip "no /dev/kvm"
PY=/usr/bin/python3
[ -x $PY ] || skip "$PY missing (apt-get install python3)"
S=$(cd "$(dirname "$0")" && pwd)/sandbox/pythreads.py
export SAME_TIMEOUT=300 SAME_MEM=1G
unset OPENBLAS_NUM_THREADS
for part in threading pool queue asyncio timeouts; do
  same_as_native "python $part" $PY "$S" $part
done
# numpy with OpenBLAS: Debian's numpy uses the BLAS alternative
# (libblas.so.3); OpenBLAS's own directory put first loads OpenBLAS for
# these runs only, whatever the machine's alternative is (through env: a
# sandbox's environment is a clean default, never the caller's).
ob=/usr/lib/x86_64-linux-gnu/openblas-pthread
if ! $PY -c 'import numpy' 2>/dev/null || [ ! -e $ob/libblas.so.3 ]; then
  echo "skip numpy with OpenBLAS threads: needs python3-numpy and libopenblas0-pthread"
  exit 0
fi
env LD_LIBRARY_PATH=$ob $PY "$S" numpy | grep -q "^numpy: OpenBLAS with [0-9]* threads" ||
  fail "natively numpy did not load OpenBLAS: $(env LD_LIBRARY_PATH=$ob $PY "$S" numpy 2>&1)"
same_as_native "numpy matmul on OpenBLAS threads" /usr/bin/env LD_LIBRARY_PATH=$ob $PY "$S" numpy
