"""pytest fixtures: a cowfork daemon on a private store and socket, with a
busybox sh template "sh". $COWFORK names the binary (tests/run sets it)."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
import cowfork  # noqa: E402

COWFORK = os.environ.get("COWFORK") or os.path.join(ROOT, "build", "cowfork")


def start(env, sock):
    p = subprocess.Popen([COWFORK, "daemon", "-q", "--socket", sock], env=env)
    for _ in range(500):
        try:
            cowfork.Client(sock).health()
            return p
        except OSError:
            if p.poll() is not None:
                raise RuntimeError("the daemon exited with %s" % p.returncode)
            time.sleep(0.01)
    p.kill()
    raise RuntimeError("the daemon did not answer")


class Daemon:
    def __init__(self):
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            pytest.skip("no /dev/kvm")
        if not os.access("/bin/busybox", os.X_OK):
            pytest.skip("no /bin/busybox")
        self.dir = tempfile.mkdtemp(prefix="cowfork-sdk.")
        self.sock = os.path.join(self.dir, "cowfork.sock")
        self.env = dict(os.environ, COWFORK_STORE=os.path.join(self.dir, "store"), COWFORK_SOCKET=self.sock)
        subprocess.run([COWFORK, "template", "create", "sh", "--mem", "64M", "--", "/bin/busybox", "sh"],
                       env=self.env, check=True, stderr=subprocess.DEVNULL)
        self.proc = start(self.env, self.sock)

    def client(self):
        return cowfork.Client(self.sock)

    def restart(self, hard=False):
        if hard:
            self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.proc = start(self.env, self.sock)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    yield d
    d.stop()
