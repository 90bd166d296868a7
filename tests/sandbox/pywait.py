import queue, threading, time
def timed(name, f):
    t = time.monotonic()
    try:
        r = f()
    except queue.Empty:
        r = "raised Empty"
    dt = time.monotonic() - t
    print(name, r, "ok" if 0.045 <= dt < 0.5 else "took %.3f s" % dt)
timed("Event().wait(0.05):", lambda: threading.Event().wait(0.05))
lock = threading.Lock()
lock.acquire()
timed("Lock.acquire(timeout=0.05) on a held lock:", lambda: lock.acquire(timeout=0.05))
timed("Queue().get(timeout=0.05):", lambda: queue.Queue().get(timeout=0.05))
timed("Condition().wait(0.05):", lambda: (lambda c: (c.acquire(), c.wait(0.05))[1])(threading.Condition()))
timed("time.sleep(0.05):", lambda: time.sleep(0.05))
import signal
class Boom(Exception):
    pass
def boom(sig, frame):
    raise Boom
signal.signal(signal.SIGALRM, boom)
try:  # armed inside: under load the signal may come before the loop starts
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    while True:
        pass
except Boom:
    print("setitimer(0.05) broke a busy loop")
print("getitimer after it fired:", signal.getitimer(signal.ITIMER_REAL))
signal.alarm(5)
print("alarm(0) after alarm(5):", signal.alarm(0))
