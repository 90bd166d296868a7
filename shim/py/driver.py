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
        $PWD/shim/py/driver.py --preload numpy
    cowfork fork py-numpy -n 100 --input code.py

The template pauses at the driver's first read of stdin, after the imports:
every child starts there with numpy loaded and reads its own request.
"""

import gc
import os
import sys
import traceback

SEP = b"#---"


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


def requests(fd):
    """Yield each request (bytes) read from fd.

    Reads the fd itself (os.read), not through sys.stdin.buffer: each call
    on a buffered stream takes its lock, and CPython 3.11 reads the
    monotonic clock for every lock acquisition, which is a system call in a
    sandbox (no vDSO), one per request."""
    lines, buf = [], b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
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
    if buf:
        if buf.rstrip(b"\r\n") == SEP:
            yield b"".join(lines)
            lines = []
        else:
            lines.append(buf)
    if lines:
        yield b"".join(lines)


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
    gc.collect()
    gc.freeze()
    failed = False
    for code in requests(sys.stdin.fileno()):
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
