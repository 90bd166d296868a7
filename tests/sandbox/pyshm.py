# A Python that made a multiprocessing.Value and Lock (a /dev/shm file
# mapped MAP_SHARED, a POSIX semaphore) and is paused into a template at its
# read of stdin (tests/sandbox-tree-shm.sh); after it, a forked Process
# changes the value under the lock and the parent prints what it sees.
import multiprocessing as mp, sys
mp.set_start_method("fork")
v = mp.Value("i", 41)
lock = mp.Lock()
def work(v, lock, n):
    with lock:
        v.value = v.value * 2 + n
print("before the pause", v.value, flush=True)
n = int(sys.stdin.readline())
print("after it", v.value, flush=True)
p = mp.Process(target=work, args=(v, lock, n))
p.start(); p.join()
print("the child process made", v.value, "exit", p.exitcode, flush=True)
