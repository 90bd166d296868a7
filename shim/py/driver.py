"""cowfork's Python driver: the program a Python template runs.

    python3 driver.py [--preload MODULE[,MODULE...]]... [--frames]

It imports the preloaded modules (and binds them by name, plus `np` for
numpy), freezes the garbage collector's view of everything imported so far
(gc.freeze: a collection in a child then never writes to the template's
objects), and then loops: read one request from stdin, execute it, write the
result, until end of input.

Framing. A request is Python source: the lines up to a line that is exactly
"#---" or up to the end of input, so a plain .py file is one request. It runs
with exec() in a fresh namespace holding the preloaded modules (names the
previous request defined are gone). Its result is what it prints: stdout and
stderr are the process's own. An exception prints its traceback to stderr and
the driver goes on with the next request; at the end the exit status is 1 if
any request failed, else 0 (the driver ends with os._exit: no interpreter
finalization, which would write to every object of the template). With --frames, each result is followed on stdout
by a line "#--- ok" or "#--- error" (for a client that streams several
requests through one sandbox).

As a cowfork template (docs/python.md):

    cowfork template create py-numpy --mem 512M -- /usr/bin/python3 \\
        /usr/lib/cowfork/driver.py --preload numpy  # in every root (lib/root.c)
    cowfork fork py-numpy -n 100 --input code.py

The template pauses at the driver's first read of stdin, after the imports:
every child starts there with numpy loaded and reads its own request.

End of input. A request without a final "#---" line ends at the end of
input, so the driver must see it before running the request. It asks
without waiting (preadv2 with RWF_NOWAIT, which the sandbox does not count
as waiting for input), runs the request, and then reads once more
(waiting): a branch or a live sandbox pauses at that read, after the
request ran; elsewhere it finds the end of input again and the driver ends.

Generations. Every child of a template starts with the template's random
state. Before each request the driver reads the sandbox's generation id
(docs/sandbox.md, "Generation": 16 bytes on a read-only page whose address
is the auxiliary vector's CF_AT_GENERATION); when it differs from the one it
last saw, this is a new child: it reseeds `random` and, if imported,
`numpy.random`'s global generator from it.
"""

import gc
import os
import sys
import traceback

SEP = b"#---"
AT_GENERATION = 0x43460001  # include/cowfork/vmm.h CF_AT_GENERATION


def parse_args(argv):
    preload, frames = [], False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--preload" and i + 1 < len(argv):
            preload += [m for m in argv[i + 1].split(",") if m]
            i += 2
        elif a.startswith("--preload="):
            preload += [m for m in a.split("=", 1)[1].split(",") if m]
            i += 1
        elif a == "--frames":
            frames = True
            i += 1
        else:
            sys.stderr.write("driver.py: unknown argument %r\n" % a)
            sys.exit(2)
    return preload, frames


def load(preload):
    env = {"__name__": "__main__", "__builtins__": __builtins__}
    for name in preload:
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
        env[name.split(".")[0]] = sys.modules[name.split(".")[0]]
        env[name] = mod
        if name == "numpy":
            env["np"] = mod
    return env


def nowait_reader(fd):
    """A read of fd that does not wait (preadv2 with RWF_NOWAIT), or None
    where that is not possible (no os.preadv, a file that refuses the flag):
    returns the bytes read (b"" at end of input) or None when it would have
    to wait."""
    flag = getattr(os, "RWF_NOWAIT", 0)
    if not flag or not hasattr(os, "preadv"):
        return None
    buf = bytearray(65536)
    state = {"ok": True}

    def read():
        if not state["ok"]:
            return None
        try:
            n = os.preadv(fd, [buf], -1, flag)
        except BlockingIOError:
            return None
        except OSError:  # EOPNOTSUPP, ESPIPE, EINVAL...: never again
            state["ok"] = False
            return None
        return bytes(buf[:n])
    return read


def requests(fd):
    """Yield each request (bytes) read from fd.

    Reads the fd itself (os.read), not through sys.stdin.buffer: each call
    on a buffered stream takes its lock, and CPython 3.11 reads the
    monotonic clock for every lock acquisition, which is a system call in a
    sandbox (no vDSO), one per request.

    With part of a request in hand, the next read does not wait (if it
    can): at the end of input that request is complete and runs before the
    driver waits for more, so a pause at the waiting read comes after it
    ran. The driver ends at an end of input with nothing in hand."""
    lines, buf = [], b""
    nowait = nowait_reader(fd)
    while True:
        chunk = nowait() if nowait and (lines or buf) else None
        if chunk is None:
            chunk = os.read(fd, 65536)
        if not chunk:
            if not (lines or buf):
                break
            if buf.rstrip(b"\r\n") == SEP:
                yield b"".join(lines)
            else:
                yield b"".join(lines) + buf
            lines, buf = [], b""
            continue  # wait for more (a pause point), or end of input again
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl + 1]
            start = nl + 1
            if line.rstrip(b"\r\n") == SEP:
                yield b"".join(lines)
                lines = []
            else:
                lines.append(line)
        buf = buf[start:]


def generation_reader():
    """A function returning this sandbox's generation id (16 bytes), or None
    outside cowfork. The page's address comes from the auxiliary vector
    (CF_AT_GENERATION); reading it is a memory load, no system call."""
    try:
        import ctypes
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        addr = getauxval(AT_GENERATION)
    except (ImportError, OSError, AttributeError):
        return None
    if not addr:
        return None
    return lambda: ctypes.string_at(addr, 16)


def reseed(gen):
    """A new child: reseed the generators every child would otherwise share
    with the template, from the generation id (128 random bits the host
    drew for this child). Modules not imported need nothing: they seed
    themselves from getrandom when a child imports them."""
    rnd = sys.modules.get("random")
    if rnd is not None:
        rnd.seed(int.from_bytes(gen, "little"))
    npr = sys.modules.get("numpy.random")
    if npr is not None:
        npr.seed([int.from_bytes(gen[i:i + 4], "little") for i in range(0, 16, 4)])


def run(code, env):
    try:
        exec(compile(code, "<request>", "exec"), dict(env))
        return True
    except SystemExit as e:
        if e.code not in (None, 0):
            sys.stderr.write("request exited with %r\n" % (e.code,))
            return False
        return True
    except BaseException:
        traceback.print_exc()
        return False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main():
    preload, frames = parse_args(sys.argv[1:])
    env = load(preload)
    generation = generation_reader()
    seen = generation() if generation else None
    gc.collect()
    gc.freeze()
    failed = False
    for code in requests(sys.stdin.fileno()):
        if generation:
            gen = generation()
            if gen != seen:
                seen = gen
                reseed(gen)
        ok = run(code, env)
        failed |= not ok
        if frames:
            sys.stdout.write("#--- %s\n" % ("ok" if ok else "error"))
            sys.stdout.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter finalization: it would touch (and so copy) every object
    # the template holds, megabytes of private pages per child for nothing.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
