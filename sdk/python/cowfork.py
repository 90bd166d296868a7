"""Python SDK for the cowfork daemon (standard library only).

The daemon (``cowfork daemon``) serves a REST API on a Unix socket; this
module talks to it with :mod:`http.client`. A sandbox is a live micro-VM
forked copy-on-write from a template; each :meth:`Sandbox.exec` hands input
to the template's program (its stdin) and returns what the program wrote
until it read its stdin again (docs/daemon.md, "request protocol").

Example::

    import cowfork

    with cowfork.Sandbox.create("sh") as sb:     # a busybox sh template
        print(sb.exec("x=41; echo $((x + 1))").output)   # 42
        sb.branch("sh-x")                        # a template with x set
        sb.pause()                               # saved in the store, VM freed
        sb = cowfork.Sandbox.resume(sb.id)
        print(sb.exec("echo $x").output)         # 41
"""

import base64
import http.client
import json
import os
import socket

__all__ = ["Client", "Sandbox", "ExecResult", "Template", "CowforkError", "default_socket"]


def default_socket():
    """The daemon's socket: $COWFORK_SOCKET, else $XDG_RUNTIME_DIR/cowfork.sock,
    else /run/cowfork.sock (the daemon's own default)."""
    path = os.environ.get("COWFORK_SOCKET")
    if path:
        return path
    rt = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(rt, "cowfork.sock") if rt else "/run/cowfork.sock"


class CowforkError(Exception):
    """An error answer of the daemon: ``status`` is the HTTP status (400 bad
    input, 404 unknown id, 409 conflict, 413 too large, 429 over a limit
    (sandboxes, files, queued jobs), 503 stopping, 507 memory or store
    full, 500 internal), ``message`` its explanation."""

    def __init__(self, status, message):
        super().__init__("%s (HTTP %d)" % (message, status))
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Client:
    """A connection to the daemon (one HTTP/1.1 keep-alive connection; not
    shared between threads: make one Client per thread).

    ``socket_path``: the daemon's Unix socket (default :func:`default_socket`).
    ``timeout``: seconds to wait for an answer (None: forever)."""

    def __init__(self, socket_path=None, timeout=None):
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout
        self._conn = None

    def close(self):
        """Close the connection (a later request opens a new one)."""
        if self._conn:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, path, body=None, raw=False):
        """Send one request; return the decoded JSON answer (the text with
        ``raw``). Raises :class:`CowforkError` on an error status."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = _UnixConnection(self.socket_path, self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                text = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the daemon closed: retry once on a new one.
                self.close()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        if resp.status >= 400:
            try:
                msg = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                msg = text.decode(errors="replace")
            raise CowforkError(resp.status, msg)
        return text.decode() if raw else json.loads(text)

    # --- the API, one method per route -------------------------------------
    def health(self):
        """GET /v1/health."""
        return self.request("GET", "/v1/health")

    def metrics(self):
        """GET /v1/metrics: Prometheus text."""
        return self.request("GET", "/v1/metrics", raw=True)

    def create_template(self, name, program, args=(), mem="64M", ready=None, root=None, env=None, timeout=None,
                        disk=None):
        """POST /v1/templates: run ``program`` with ``args`` in a new sandbox until
        its ready point (``ready``: "stdin", the default: its first read of
        stdin; or a marker string it writes) and save it as template ``name``.
        ``disk`` ("256M" or bytes): the files it writes outside /tmp on a disk
        of that size, saved with the template (docs/sandbox.md)."""
        body = {"name": name, "program": program, "args": list(args), "mem": mem}
        for k, v in (("ready", ready), ("root", root), ("env", env), ("timeout", timeout), ("disk", disk)):
            if v is not None:
                body[k] = v
        return Template(self, self.request("POST", "/v1/templates", body))

    def templates(self):
        """GET /v1/templates: a list of :class:`Template`."""
        return [Template(self, t) for t in self.request("GET", "/v1/templates")["templates"]]

    def template(self, name):
        """GET /v1/templates/NAME."""
        return Template(self, self.request("GET", "/v1/templates/" + name))

    def delete_template(self, name):
        """DELETE /v1/templates/NAME (409 while sandboxes or branches use it)."""
        return self.request("DELETE", "/v1/templates/" + name)

    def sandboxes(self):
        """GET /v1/sandboxes: a list of dicts (id, state, template, memory, ...)."""
        return self.request("GET", "/v1/sandboxes")["sandboxes"]


class Template:
    """A template as the daemon describes it (``name``, ``parent``,
    ``mem_size``, ``stored_bytes``, ``info``: the whole answer)."""

    def __init__(self, client, info):
        self.client = client
        self.info = info
        self.name = info.get("name")
        self.parent = info.get("parent", "")
        self.mem_size = info.get("mem_size")
        self.stored_bytes = info.get("stored_bytes")

    def delete(self):
        """Delete the template (409 while sandboxes or branches use it)."""
        self.client.delete_template(self.name)

    def __repr__(self):
        return "Template(%r)" % self.name


class ExecResult:
    """The answer to an exec.

    ``output``/``stderr``: what the program wrote (str; invalid UTF-8 is
    replaced, the exact bytes are in ``output_bytes``/``stderr_bytes``);
    ``exit_code``: None while the program lives on (it is waiting for the
    next input), its status once it ended; ``timed_out`` (by ``timeout`` or
    ``cpu_limit``); ``duration_ms``; ``cpu_ms``: the CPU time it used;
    ``state``: "running" or "exited"."""

    def __init__(self, d):
        self.raw = d
        self.output = d.get("output", "")
        self.stderr = d.get("stderr", "")
        self.output_bytes = (base64.b64decode(d["output_base64"]) if "output_base64" in d
                             else self.output.encode())
        self.stderr_bytes = (base64.b64decode(d["stderr_base64"]) if "stderr_base64" in d
                             else self.stderr.encode())
        self.exit_code = d.get("exit_code")
        self.timed_out = d.get("timed_out", False)
        self.duration_ms = d.get("duration_ms")
        self.cpu_ms = d.get("cpu_ms")
        self.state = d.get("state")

    def __repr__(self):
        return "ExecResult(output=%r, exit_code=%r)" % (self.output, self.exit_code)


class Sandbox:
    """A live sandbox in the daemon. Make one with :meth:`create` (or
    :meth:`resume`, :meth:`get`); use it as a context manager to delete it
    at the end of the block."""

    def __init__(self, client, sandbox_id):
        self.client = client
        self.id = sandbox_id

    @classmethod
    def create(cls, template, backend=None, client=None, socket_path=None):
        """Fork a new live sandbox from ``template`` (``backend``: "file", the
        default, or "uffd")."""
        client = client or Client(socket_path)
        body = {"template": template}
        if backend:
            body["backend"] = backend
        return cls(client, client.request("POST", "/v1/sandboxes", body)["ids"][0])

    @classmethod
    def create_many(cls, template, count, backend=None, client=None, socket_path=None):
        """Fork ``count`` sandboxes from ``template`` in one request."""
        client = client or Client(socket_path)
        body = {"template": template, "count": count}
        if backend:
            body["backend"] = backend
        return [cls(client, i) for i in client.request("POST", "/v1/sandboxes", body)["ids"]]

    @classmethod
    def get(cls, sandbox_id, client=None, socket_path=None):
        """A handle on an existing sandbox (checks that it exists)."""
        client = client or Client(socket_path)
        client.request("GET", "/v1/sandboxes/" + sandbox_id)
        return cls(client, sandbox_id)

    @classmethod
    def resume(cls, sandbox_id, client=None, socket_path=None):
        """Bring a paused sandbox back (also after a daemon restart)."""
        client = client or Client(socket_path)
        client.request("POST", "/v1/sandboxes/%s/resume" % sandbox_id)
        return cls(client, sandbox_id)

    def exec(self, code, timeout=None, cpu_limit=None):
        """Hand ``code`` (str or bytes) to the program's stdin; a newline is
        added to a str that lacks one. Returns an :class:`ExecResult` once the
        program reads its stdin again with nothing left (or ends, or
        ``timeout`` seconds pass, or it uses ``cpu_limit`` seconds of CPU: the
        sandbox is then killed)."""
        body = {}
        if isinstance(code, bytes):
            body["input_base64"] = base64.b64encode(code).decode()
        else:
            body["input"] = code if code.endswith("\n") or not code else code + "\n"
        if timeout is not None:
            body["timeout"] = timeout
        if cpu_limit is not None:
            body["cpu_limit"] = cpu_limit
        return ExecResult(self.client.request("POST", "/v1/sandboxes/%s/exec" % self.id, body))

    def branch(self, name):
        """Save the sandbox as it is now as template ``name`` (only the pages it
        changed are stored); the sandbox goes on. Returns a :class:`Template`."""
        self.client.request("POST", "/v1/sandboxes/%s/branch" % self.id, {"template": name})
        return self.client.template(name)

    def pause(self):
        """Save the sandbox into the store and free its VM; :meth:`resume`
        brings it back, in this daemon or after a restart."""
        return self.client.request("POST", "/v1/sandboxes/%s/pause" % self.id)

    def unpause(self):
        """Resume this paused sandbox (the instance form of :meth:`resume`)."""
        self.client.request("POST", "/v1/sandboxes/%s/resume" % self.id)
        return self

    def info(self):
        """GET /v1/sandboxes/ID: state, template, memory, age, execs."""
        return self.client.request("GET", "/v1/sandboxes/" + self.id)

    @property
    def state(self):
        """"running", "paused", "exited" or "lost"."""
        return self.info()["state"]

    def kill(self):
        """Delete the sandbox (its VM, or its paused state in the store)."""
        try:
            self.client.request("DELETE", "/v1/sandboxes/" + self.id)
        except CowforkError as e:
            if e.status != 404:
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def __repr__(self):
        return "Sandbox(%r)" % self.id
