# Python's threads, run natively and in a sandbox by tests/sandbox-pythreads.sh
# (issue 13, item 7): threading, concurrent.futures, queue, asyncio, waits
# with timeouts that expire and ones that do not, and numpy's matmul on
# OpenBLAS's threads. Prints counts, sums and outcomes only, never a time:
# the two runs must print the same.
#   python3 pythreads.py PART...   PART: threading pool queue asyncio timeouts numpy
import sys
import time
import threading


def part_threading():
    lock, rlock = threading.Lock(), threading.RLock()
    total, idents, start = [0], set(), threading.Barrier(16)

    def add(n):
        start.wait()  # all 16 alive at once: their idents differ
        with lock:
            idents.add(threading.get_ident())
        for _ in range(n):
            with lock:
                with rlock:
                    with rlock:
                        total[0] += 1

    ts = [threading.Thread(target=add, args=(2000,), name="adder-%d" % i) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("threading: 16 threads x 2000 under Lock+RLock:", total[0], "distinct idents:", len(idents) == 16,
          "alive after join:", any(t.is_alive() for t in ts))

    # Condition.notify_all releases every waiter; a Barrier's rounds; a BoundedSemaphore's bound.
    cond, go, passed = threading.Condition(), [False], [0]

    def waiter():
        with cond:
            cond.wait_for(lambda: go[0])
            passed[0] += 1

    ws = [threading.Thread(target=waiter) for _ in range(10)]
    for w in ws:
        w.start()
    time.sleep(0.05)
    with cond:
        go[0] = True
        cond.notify_all()
    for w in ws:
        w.join()
    bar, rounds = threading.Barrier(5), []

    def bwork(i):
        for r in range(20):
            if bar.wait() == 0:
                rounds.append(r)

    bs = [threading.Thread(target=bwork, args=(i,)) for i in range(5)]
    for b in bs:
        b.start()
    for b in bs:
        b.join()
    sem, inside, most = threading.BoundedSemaphore(3), [0], [0]
    mlock, three = threading.Lock(), threading.Barrier(3)

    def limited():
        with sem:
            with mlock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            three.wait(30)  # passes only with 3 inside at once; a 4th would show in most
            with mlock:
                inside[0] -= 1

    ls = [threading.Thread(target=limited) for _ in range(12)]
    for t in ls:
        t.start()
    for t in ls:
        t.join()
    try:
        sem.release()
        over = "no error"
    except ValueError:
        over = "ValueError"
    print("threading: notify_all released", passed[0], "of 10; barrier rounds", sorted(rounds) == list(range(20)),
          "; BoundedSemaphore(3) at most", most[0], "inside, release past the bound:", over)

    # threading.local, Timer, excepthook, enumerate/active_count.
    loc = threading.local()
    loc.v = "main"
    seen = []

    def lw(i):
        seen.append(hasattr(loc, "v"))
        loc.v = i
        time.sleep(0.01)
        seen.append(loc.v == i)

    lts = [threading.Thread(target=lw, args=(i,)) for i in range(8)]
    for t in lts:
        t.start()
    for t in lts:
        t.join()
    fired = threading.Event()
    timer = threading.Timer(0.02, fired.set)
    timer.start()
    cancelled = threading.Timer(0.02, lambda: print("cancelled timer fired"))
    cancelled.start()
    cancelled.cancel()
    caught = []
    old = threading.excepthook
    threading.excepthook = lambda a: caught.append(a.exc_type.__name__)
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()
    threading.excepthook = old
    fired.wait(30)
    timer.join()  # (a timer's thread may still be ending after its event is set: active_count races)
    cancelled.join()
    print("threading: local", loc.v, seen.count(False), "unset", seen.count(True), "own; Timer fired",
          fired.wait(30), "; excepthook got", caught, "; active", threading.active_count())


def part_pool():
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(max_workers=8) as ex:
        r = list(ex.map(lambda x: x * x, range(1000)))
        print("pool: map of 1000 tasks on 8 workers: sum", sum(r), "in order", r == [x * x for x in range(1000)])
        futs = [ex.submit(pow, 2, i) for i in range(64)]
        done = sum(f.result() for f in cf.as_completed(futs))
        bad = ex.submit(int, "x")
        try:
            bad.result(30)
            err = "none"
        except ValueError:
            err = "ValueError"
        print("pool: 64 submits via as_completed: sum", done, "; a raising task:", err)
        import threading
        ev = threading.Event()
        slow = ex.submit(ev.wait, 30)
        try:
            slow.result(timeout=0.1)
            to = "no timeout"
        except cf.TimeoutError:
            to = "TimeoutError"
        ev.set()
        print("pool: result(timeout=0.1) of a blocked task:", to, "; then", slow.result(30))
    with cf.ThreadPoolExecutor(4) as ex:
        chunks = list(ex.map(sum, [range(i, i + 1000) for i in range(0, 100000, 1000)]))
    print("pool: 100 chunks summed:", sum(chunks))


def part_queue():
    import queue

    q = queue.Queue(maxsize=16)
    out = []
    olock = threading.Lock()

    def prod(base):
        for i in range(500):
            q.put(base + i)

    def cons():
        while True:
            v = q.get()
            if v is None:
                q.task_done()
                return
            with olock:
                out.append(v)
            q.task_done()

    cs = [threading.Thread(target=cons) for _ in range(4)]
    ps = [threading.Thread(target=prod, args=(k * 10000,)) for k in range(4)]
    for t in cs + ps:
        t.start()
    for p in ps:
        p.join()
    q.join()
    for _ in cs:
        q.put(None)
    for c in cs:
        c.join()
    print("queue: 4 producers x 500 through Queue(16) to 4 consumers:", len(out), "items, sum", sum(out),
          "distinct", len(set(out)))
    pq, lq, sq = queue.PriorityQueue(), queue.LifoQueue(), queue.SimpleQueue()
    for v in (5, 1, 4, 2, 3):
        pq.put(v)
        lq.put(v)
    t = threading.Thread(target=lambda: [sq.put(i) for i in range(100)])
    t.start()
    got = [sq.get(timeout=30) for _ in range(100)]
    t.join()
    print("queue: PriorityQueue", [pq.get() for _ in range(5)], "LifoQueue", [lq.get() for _ in range(5)],
          "SimpleQueue across threads in order", got == list(range(100)))


def part_asyncio():
    import asyncio
    import concurrent.futures as cf

    def blocking(x):
        time.sleep(0.01)
        return x * 2

    async def co(i):
        await asyncio.sleep(0.001 * (i % 5))
        return i

    async def main():
        loop = asyncio.get_running_loop()
        g = await asyncio.gather(*(co(i) for i in range(200)))
        tt = await asyncio.gather(*(asyncio.to_thread(blocking, i) for i in range(20)))
        with cf.ThreadPoolExecutor(3) as ex:
            re = await asyncio.gather(*(loop.run_in_executor(ex, blocking, i) for i in range(12)))
        de = await loop.run_in_executor(None, sum, range(100))
        try:
            await asyncio.wait_for(asyncio.sleep(30), 0.05)
            wf = "no timeout"
        except asyncio.TimeoutError:
            wf = "TimeoutError"
        aq = asyncio.Queue()

        async def aprod():
            for i in range(50):
                await aq.put(i)
                await asyncio.sleep(0)

        s = 0
        p = asyncio.create_task(aprod())
        for _ in range(50):
            s += await aq.get()
        await p
        # call_soon_threadsafe from a plain thread wakes the loop (its self-pipe).
        fut = loop.create_future()
        threading.Thread(target=lambda: (time.sleep(0.02), loop.call_soon_threadsafe(fut.set_result, "woken"))).start()
        w = await asyncio.wait_for(fut, 30)
        print("asyncio: gather of 200 coroutines", g == list(range(200)), "; to_thread x20 sum", sum(tt),
              "; run_in_executor x12 sum", sum(re), "default executor", de, "; wait_for", wf,
              "; asyncio.Queue sum", s, "; call_soon_threadsafe", w)

    asyncio.run(main())


def part_timeouts():
    import queue

    def timed(what, fn, ms):
        t0 = time.monotonic()
        r = fn()
        took = (time.monotonic() - t0) * 1000
        if ms is None:
            print("timeouts: %s -> %r" % (what, r))
        else:
            print("timeouts: %s -> %r after >= %d ms: %s" % (what, r, ms, took >= ms - 1))

    def later(fn, s=0.02):
        threading.Thread(target=lambda: (time.sleep(s), fn())).start()

    ev = threading.Event()
    timed("Event.wait(0.1), never set", lambda: ev.wait(0.1), 100)
    later(ev.set)
    timed("Event.wait(30), set after 20 ms", lambda: ev.wait(30), None)
    lk = threading.Lock()
    lk.acquire()
    timed("Lock.acquire(timeout=0.1), held", lambda: lk.acquire(timeout=0.1), 100)
    later(lk.release)
    timed("Lock.acquire(timeout=30), released after 20 ms", lambda: lk.acquire(timeout=30), None)
    rl = threading.RLock()
    got = []
    holder = threading.Thread(target=lambda: (rl.acquire(), got.append(1), time.sleep(0.5), rl.release()))
    holder.start()
    while not got:
        time.sleep(0.001)
    timed("RLock.acquire(timeout=0.1), held by another thread", lambda: rl.acquire(timeout=0.1), 100)
    holder.join()
    q = queue.Queue()

    def qget(t):
        try:
            return q.get(timeout=t)
        except queue.Empty:
            return "Empty"

    timed("Queue.get(timeout=0.1), empty", lambda: qget(0.1), 100)
    later(lambda: q.put("item"))
    timed("Queue.get(timeout=30), put after 20 ms", lambda: qget(30), None)
    fq = queue.Queue(1)
    fq.put(0)

    def qput(t):
        try:
            fq.put(1, timeout=t)
            return "put"
        except queue.Full:
            return "Full"

    timed("Queue.put(timeout=0.1), full", lambda: qput(0.1), 100)
    later(fq.get)
    timed("Queue.put(timeout=30), a get after 20 ms", lambda: qput(30), None)
    c = threading.Condition()

    def cwait(t):
        with c:
            return c.wait(t)

    timed("Condition.wait(0.1), nobody notifies", lambda: cwait(0.1), 100)

    def notify():
        with c:
            c.notify()

    def cwait_notified():
        with c:
            later(notify)
            return c.wait(30)

    timed("Condition.wait(30), notified after 20 ms", cwait_notified, None)
    s = threading.Semaphore(0)
    timed("Semaphore.acquire(timeout=0.1), zero", lambda: s.acquire(timeout=0.1), 100)
    later(s.release)
    timed("Semaphore.acquire(timeout=30), released after 20 ms", lambda: s.acquire(timeout=30), None)
    t = threading.Thread(target=time.sleep, args=(0.5,))
    t.start()
    timed("Thread.join(0.1) of a thread sleeping 0.5 s, alive", lambda: (t.join(0.1), t.is_alive())[1], 100)
    timed("Thread.join(30) of it, alive", lambda: (t.join(30), t.is_alive())[1], None)
    timed("time.sleep(0.1) in the main thread while another runs",
          lambda: (later(lambda: None, 0.05), time.sleep(0.1))[1], 100)


def part_numpy():
    import ctypes
    import numpy as np

    n = 600
    i = np.arange(n)
    a = ((i[:, None] * 7 + i[None, :] * 3) % 11).astype(np.float64)
    b = ((i[:, None] * 5 + i[None, :]) % 13).astype(np.float64)
    c = a @ b
    ref = a.astype(np.int64) @ b.astype(np.int64)  # integer matmul: numpy's own loop, no BLAS
    blas = "reference BLAS"
    try:  # the BLAS numpy loaded (by its soname): OpenBLAS has this call
        f = ctypes.CDLL("libblas.so.3").openblas_get_num_threads
        f.restype = ctypes.c_int
        blas = "OpenBLAS with %d threads" % f()
    except (OSError, AttributeError):
        pass
    inv = np.linalg.inv(a + np.eye(n) * n)
    ok = np.allclose(inv @ (a + np.eye(n) * n), np.eye(n))
    print("numpy: %s; %dx%d matmul exact: %s, checksum %d; inverse checks: %s" %
          (blas, n, n, bool((c == ref).all()), int(c.sum()), ok))


parts = {"threading": part_threading, "pool": part_pool, "queue": part_queue, "asyncio": part_asyncio,
         "timeouts": part_timeouts, "numpy": part_numpy}
for p in sys.argv[1:]:
    parts[p]()
