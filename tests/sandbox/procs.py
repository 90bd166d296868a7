# Python's ways to start processes, run natively and in a sandbox by
# tests/sandbox-processes.sh (issue 14, item 7): python3 -c "$(cat procs.py)"
# MODE. Prints no pids (a sandbox's are its own), only what they relate to.
import os
import resource
import signal
import subprocess
import sys


def mode_subprocess():
    r = subprocess.run(["echo", "hello"], capture_output=True, text=True)
    print("run echo:", r.returncode, repr(r.stdout))
    r = subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    print("run sh:", r.returncode, r.stdout, r.stderr)
    r = subprocess.run(["tr", "a-z", "A-Z"], input=b"stdin text\n", stdout=subprocess.PIPE)
    print("run with input:", r.stdout)
    print("check_output shell pipeline:", subprocess.check_output("seq 1 100 | grep 7 | wc -l", shell=True))
    try:
        subprocess.run(["false"], check=True)
    except subprocess.CalledProcessError as e:
        print("check=True:", type(e).__name__, e.returncode)
    try:
        subprocess.run(["/nonexistent/prog"])
    except OSError as e:
        print("missing program:", type(e).__name__, e.errno == 2)
    try:
        subprocess.run(["sleep", "10"], timeout=0.3)
    except subprocess.TimeoutExpired as e:
        print("timeout:", type(e).__name__)
    r = subprocess.run(["sh", "-c", "kill -TERM $$"])
    print("killed by SIGTERM: returncode", r.returncode)
    r = subprocess.run(["sh", "-c", "echo $0 $1; pwd"], capture_output=True, text=True, cwd="/tmp")
    print("cwd=/tmp:", r.stdout.split())
    r = subprocess.run(["sh", "-c", 'echo "$X"'], capture_output=True, text=True, env={"X": "from env="})
    print("env:", r.stdout.strip())
    r = subprocess.run("exec 3>&1; echo to fd3 >&3", shell=True, capture_output=True, text=True, close_fds=True)
    print("close_fds:", r.returncode, r.stdout.strip())
    r = subprocess.run(["cat"], stdin=subprocess.DEVNULL, capture_output=True)
    print("stdin DEVNULL:", r.returncode, r.stdout)
    r = subprocess.run(["sh", "-c", "echo a; echo b >&2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print("stderr=STDOUT:", r.stdout.split())
    print("getoutput:", subprocess.getoutput("echo one; echo two"))
    print("getstatusoutput:", subprocess.getstatusoutput("exit 5"))


def mode_popen():
    p = subprocess.Popen(["sort", "-r"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(b"".join(b"%d\n" % i for i in range(2000)))
    print("communicate 2000 lines through sort -r:", len(out), out[:15], err, p.returncode)
    big = b"x" * (1 << 20)
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(big)
    print("1 MiB through cat:", len(out), out == big, p.returncode)
    p1 = subprocess.Popen(["seq", "1", "1000"], stdout=subprocess.PIPE)
    p2 = subprocess.Popen(["grep", "5"], stdin=p1.stdout, stdout=subprocess.PIPE)
    p3 = subprocess.Popen(["wc", "-l"], stdin=p2.stdout, stdout=subprocess.PIPE)
    p1.stdout.close()
    p2.stdout.close()
    print("Popen pipeline seq | grep | wc:", p3.communicate()[0], p1.wait(), p2.wait(), p3.returncode)
    p = subprocess.Popen(["sleep", "10"])
    print("poll while running:", p.poll())
    p.terminate()
    print("terminate: wait", p.wait())
    p = subprocess.Popen(["sleep", "10"])
    p.kill()
    print("kill: wait", p.wait())
    p = subprocess.Popen(["sh", "-c", "read x; exit $x"], stdin=subprocess.PIPE)
    p.stdin.write(b"7\n")
    p.stdin.close()
    print("exit status from stdin:", p.wait())
    p = subprocess.Popen(["sleep", "10"])
    try:
        p.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        print("wait(timeout) expired")
    p.kill()
    p.wait()
    p = subprocess.Popen(["sh", "-c", "sleep 0.2; echo late"], stdout=subprocess.PIPE, text=True)
    try:
        p.communicate(timeout=0.05)
    except subprocess.TimeoutExpired:
        print("communicate(timeout) expired, then:", p.communicate()[0].strip())
    with subprocess.Popen(["echo", "with"], stdout=subprocess.PIPE) as p:
        print("context manager:", p.stdout.read())
    print("returncode:", p.returncode)
    p = subprocess.Popen(["sh", "-c", "echo $$ > /dev/null; kill -STOP $$; echo continued"], stdout=subprocess.PIPE)
    _, st = os.waitpid(p.pid, os.WUNTRACED)
    print("WUNTRACED:", os.WIFSTOPPED(st), signal.Signals(os.WSTOPSIG(st)).name)
    os.kill(p.pid, signal.SIGCONT)
    print("after SIGCONT:", p.communicate()[0], p.returncode)
    p = subprocess.Popen(["sleep", "10"], start_new_session=True)
    print("start_new_session: own session", os.getsid(p.pid) == p.pid, "own group", os.getpgid(p.pid) == p.pid)
    os.killpg(p.pid, signal.SIGKILL)
    print("killpg:", p.wait())
    p = subprocess.Popen(["sleep", "10"], process_group=0)
    print("process_group=0: own group", os.getpgid(p.pid) == p.pid, "same session", os.getsid(p.pid) == os.getsid(0))
    p.kill()
    p.wait()


def mode_fork():
    for code in (0, 1, 77, 255):
        pid = os.fork()
        if pid == 0:
            os._exit(code)
        rpid, st = os.waitpid(pid, 0)
        print("fork, _exit(%d):" % code, rpid == pid, os.WIFEXITED(st), os.WEXITSTATUS(st), os.waitstatus_to_exitcode(st))
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGUSR1):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        os.kill(pid, sig)
        _, st = os.waitpid(pid, 0)
        os.close(w)
        print("killed by %s:" % sig.name, os.WIFSIGNALED(st), os.WIFEXITED(st), signal.Signals(os.WTERMSIG(st)).name,
              os.waitstatus_to_exitcode(st))
    pid = os.fork()
    if pid == 0:
        os.abort()
    _, st = os.waitpid(pid, 0)
    print("os.abort:", os.WIFSIGNALED(st), signal.Signals(os.WTERMSIG(st)).name)
    r, w = os.pipe()
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, b"%d %d" % (os.getppid() == me, os.getpid() != me))
        os._exit(0)
    os.close(w)
    print("child's getppid is the parent:", os.read(r, 100))
    os.waitpid(pid, 0)
    print("waitpid WNOHANG without children:", end=" ")
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        print("ChildProcessError")
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sh", ["sh", "-c", "exit 9"])
    print("fork + execv sh -c 'exit 9':", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    x = [1]
    pid = os.fork()
    if pid == 0:
        x.append(2)
        os._exit(len(x))
    _, st = os.waitpid(pid, 0)
    print("copy-on-write: child saw", os.WEXITSTATUS(st), "items, parent has", len(x))
    pid = os.fork()
    if pid == 0:
        os._exit(4)
    rpid, st, ru = os.wait4(pid, 0)
    print("wait4:", rpid == pid, os.WEXITSTATUS(st), type(ru).__name__)
    pid = os.fork()
    if pid == 0:
        os._exit(6)
    res = os.waitid(os.P_PID, pid, os.WEXITED)
    print("waitid:", res.si_pid == pid, res.si_status, res.si_code == os.CLD_EXITED)
    pid = os.fork()
    if pid == 0:
        os._exit(2)
    rpid, st = os.wait()
    print("wait:", rpid == pid, os.WEXITSTATUS(st))


def mode_system():
    sys.stdout.flush()
    print("system true:", os.system("true"))
    print("system exit 3:", os.system("exit 3"), os.waitstatus_to_exitcode(os.system("exit 3")))
    sys.stdout.flush()
    st = os.system("echo from the shell; echo a b c | wc -w")
    print("system pipeline:", st)
    print("system kill -KILL $$:", os.waitstatus_to_exitcode(os.system("kill -KILL $$")))


def mode_ospopen():
    with os.popen("echo one; echo two") as f:
        print("popen read:", f.read().split())
    f = os.popen("exit 3")
    f.read()
    print("popen close status:", f.close())
    f = os.popen("cat > /tmp/cowfork-popen.txt", "w")
    f.write("written through popen\n")
    print("popen w close:", f.close())
    with open("/tmp/cowfork-popen.txt") as g:
        print("file:", g.read().strip())
    os.unlink("/tmp/cowfork-popen.txt")
    print("popen of a pipeline:", os.popen("seq 1 50 | grep 5 | tr '\\n' + | wc -c").read().strip())


def mode_pool(method):
    import multiprocessing as mp
    import math
    import operator
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        print(method, "Pool.map factorial:", sum(pool.map(math.factorial, range(200))) % 1000003)
        print(method, "Pool.starmap mul:", pool.starmap(operator.mul, [(i, i + 1) for i in range(10)]))
        r = pool.apply_async(pow, (3, 40))
        print(method, "apply_async:", r.get(timeout=60))
        print(method, "imap_unordered sorted:", sorted(pool.imap_unordered(abs, range(-5, 5))))
        try:
            pool.apply(operator.truediv, (1, 0))
        except ZeroDivisionError as e:
            print(method, "an exception in a worker:", type(e).__name__)
    p = ctx.Process(target=os._exit, args=(7,))
    p.start()
    p.join()
    print(method, "Process exitcode:", p.exitcode)
    q = ctx.Queue()
    p = ctx.Process(target=q.put, args=("through a Queue",))
    p.start()
    print(method, "Queue:", q.get(timeout=60))
    p.join()
    a, b = ctx.Pipe()
    p = ctx.Process(target=b.send, args=({"k": [1, 2, 3]},))
    p.start()
    print(method, "Pipe:", a.recv())
    p.join()
    print(method, "active children after:", len(ctx.active_children()))


def mode_spawn():
    # subprocess starts its children with vfork; os.posix_spawn is glibc's
    # (clone(CLONE_VM|CLONE_VFORK)): its exec error comes back through the
    # memory the child shares with the parent.
    for argv in (["no-such-program-here"], ["/no/such/program"]):
        try:
            subprocess.run(argv)
            print("subprocess of", argv[0], "ran")
        except FileNotFoundError as e:
            print("subprocess of", argv[0], "FileNotFoundError", e.errno == 2)
    try:
        pid = os.posix_spawn("/no/such/program", ["x"], {})
        print("os.posix_spawn of a missing path: no error, child", os.waitpid(pid, 0)[1])
    except FileNotFoundError as e:
        print("os.posix_spawn of a missing path: FileNotFoundError", e.errno == 2)
    try:
        pid = os.posix_spawnp("no-such-program-here", ["x"], os.environ)
        print("os.posix_spawnp of a missing program: no error, child", os.waitpid(pid, 0)[1])
    except FileNotFoundError as e:
        print("os.posix_spawnp of a missing program: FileNotFoundError", e.errno == 2)
    r, w = os.pipe()
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo spawned; echo to stderr >&2; exit 4"], os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2),
                                       (os.POSIX_SPAWN_CLOSE, r)])
    os.close(w)
    out = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        out += b
    os.close(r)
    print("os.posix_spawn with file actions:", out, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    r = subprocess.run(["sh", "-c", "echo out; exit 2"], capture_output=True)
    print("subprocess after them:", r.returncode, r.stdout)


def _add(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _fill(name):
    from multiprocessing import shared_memory
    m = shared_memory.SharedMemory(name=name)
    m.buf[:5] = b"child"
    m.close()


def mode_shared():
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    v = ctx.Value("i", 0)
    ps = [ctx.Process(target=_add, args=(v, 200)) for _ in range(3)]
    for p in ps:
        p.start()
    _add(v, 200)
    for p in ps:
        p.join()
    print("Value with its Lock, 4 processes x 200:", v.value, [p.exitcode for p in ps])
    lock = ctx.Lock()
    lock.acquire()
    p = ctx.Process(target=lock.release)
    p.start()
    p.join()
    print("a Lock released by a child:", lock.acquire(timeout=30))
    a = ctx.Array("d", 4)
    p = ctx.Process(target=a.__setitem__, args=(slice(0, 4), [1.5, 2.5, 3.5, 4.5]))
    p.start()
    p.join()
    print("Array set by a child:", list(a))
    from multiprocessing import shared_memory
    m = shared_memory.SharedMemory(create=True, size=4096)
    p = ctx.Process(target=_fill, args=(m.name,))
    p.start()
    p.join()
    print("SharedMemory written by a child:", bytes(m.buf[:5]))
    m.close()
    m.unlink()


def mode_pidfd():
    # asyncio's PidfdChildWatcher (Python 3.9+): pidfd_open, the pidfd in the
    # event loop (epoll), waitpid after it became readable
    import asyncio

    async def run():
        p = await asyncio.create_subprocess_exec("sh", "-c", "echo from the child; exit 5",
                                                 stdout=asyncio.subprocess.PIPE)
        out = await p.stdout.read()
        print("asyncio subprocess:", out.decode().strip(), "exit", await p.wait())

    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    asyncio.run(run())
    # os.pidfd_open, signal.pidfd_send_signal, select on the pidfd
    import select
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    fd = os.pidfd_open(pid)
    print("os.pidfd_open: inheritable", os.get_inheritable(fd))
    signal.pidfd_send_signal(fd, signal.SIGTERM)
    r, _, _ = select.select([fd], [], [], 10)
    print("select on the pidfd: readable", r == [fd])
    _, st = os.waitpid(pid, 0)
    print("the child: killed by", signal.Signals(os.WTERMSIG(st)).name)
    os.close(fd)


resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # abort and SIGSEGV: no core files
mode = sys.argv[1]
if mode.startswith("pool-"):
    mode_pool(mode[5:])
else:
    globals()["mode_" + mode]()
