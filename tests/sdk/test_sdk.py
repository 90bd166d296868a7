"""The Python SDK against a real daemon: the README example, exec, branch,
pause/resume (also across a restart), kill, the context manager, errors,
and concurrent execs."""
import threading

import pytest

import cowfork


def test_readme_example(daemon):
    client = daemon.client()
    with cowfork.Sandbox.create("sh", client=client) as sb:
        assert sb.exec("x=41; echo $((x + 1))").output == "42\n"
        t = sb.branch("sh-x")
        assert t.parent == "sh" and t.stored_bytes > 0
        sb.pause()
        assert sb.state == "paused"
        sb = cowfork.Sandbox.resume(sb.id, client=client)
        assert sb.exec("echo $x").output == "41\n"
    with cowfork.Sandbox.create("sh-x", client=client) as child:
        assert child.exec("echo child $x").output == "child 41\n"
    client.delete_template("sh-x")


def test_exec_result(daemon):
    with cowfork.Sandbox.create("sh", socket_path=daemon.sock) as sb:
        r = sb.exec("echo out; echo err >&2")
        assert (r.output, r.stderr, r.exit_code, r.state) == ("out\n", "err\n", None, "running")
        assert r.duration_ms > 0
        r = sb.exec(b"printf '\\377'\n")
        assert r.output_bytes == b"\xff"
        r = sb.exec("exit 4")
        assert (r.exit_code, r.state) == (4, "exited")
        with pytest.raises(cowfork.CowforkError) as e:
            sb.exec("echo")
        assert e.value.status == 409


def test_timeout(daemon):
    sb = cowfork.Sandbox.create("sh", socket_path=daemon.sock)
    r = sb.exec("while :; do :; done", timeout=0.3)
    assert r.timed_out and r.state == "exited"
    sb.kill()
    sb.kill()  # twice is fine


def test_cpu_limit(daemon):
    sb = cowfork.Sandbox.create("sh", socket_path=daemon.sock)
    r = sb.exec("while :; do :; done", cpu_limit=0.3, timeout=20)
    assert r.timed_out and r.state == "exited"
    assert 0.25 < r.cpu_ms / 1000 < 3
    sb.kill()


def test_errors(daemon):
    c = daemon.client()
    with pytest.raises(cowfork.CowforkError) as e:
        cowfork.Sandbox.create("no-such-template", client=c)
    assert e.value.status == 404
    with pytest.raises(cowfork.CowforkError) as e:
        cowfork.Sandbox.get("sb-nope", client=c)
    assert e.value.status == 404
    with pytest.raises(cowfork.CowforkError) as e:
        cowfork.Sandbox.resume("sb-nope", client=c)
    assert e.value.status == 404
    with cowfork.Sandbox.create("sh", client=c) as sb:
        with pytest.raises(cowfork.CowforkError) as e:
            sb.branch("sh")
        assert e.value.status == 409
        with pytest.raises(cowfork.CowforkError) as e:
            c.delete_template("sh")
        assert e.value.status == 409


def test_templates(daemon):
    c = daemon.client()
    t = c.create_template("sh32", "/bin/busybox", ["sh"], mem="32M")
    assert t.name == "sh32"
    assert "sh32" in [x.name for x in c.templates()]
    with cowfork.Sandbox.create("sh32", client=c) as sb:
        assert sb.exec("echo 32").output == "32\n"
        assert sb.info()["memory"]["size"] == 32 << 20
    t.delete()
    assert "sh32" not in [x.name for x in c.templates()]
    assert "cowfork_forks_total" in c.metrics()


def test_pause_resume_across_restart(daemon):
    c = daemon.client()
    sb = cowfork.Sandbox.create("sh", client=c)
    sb.exec("v=kept; echo $v > /tmp/v")
    sb.pause()
    daemon.restart(hard=True)
    c = daemon.client()
    sb = cowfork.Sandbox.resume(sb.id, client=c)
    assert sb.exec("read w < /tmp/v; echo $v $w").output == "kept kept\n"
    running = cowfork.Sandbox.create("sh", client=c)
    daemon.restart(hard=True)
    c = daemon.client()
    assert cowfork.Sandbox.get(running.id, client=c).state == "lost"
    cowfork.Sandbox(c, running.id).kill()
    cowfork.Sandbox(c, sb.id).kill()


def test_concurrent_execs(daemon):
    boxes = cowfork.Sandbox.create_many("sh", 10, client=daemon.client())
    errors = []

    def run(i):
        c = daemon.client()
        sb = cowfork.Sandbox(c, boxes[i % 10].id)
        try:
            r = sb.exec("echo req %d" % i)
            if r.output != "req %d\n" % i:
                errors.append((i, r.output))
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for b in boxes:
        b.kill()
