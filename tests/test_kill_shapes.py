"""`kill PORT` stops the app serving PORT and nothing else, on the process trees that fooled it.

Real processes on leased loopback ports (tests/shapes.py). For each shape: what was planned,
what was signalled, that the port is free (or `managed` is reported), and that every other
service still listens from the same pids afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from portinspect.pytest_plugin import FreePortFactory

from . import shapes
from .shapes import PY, assert_stays_free, assert_still_served, holders, served, started, write
from .support import is_root, run_cli, run_in_namespace, wait_until

BIN = Path(PY).parent


def kill(*args: str) -> tuple[int, dict[str, Any]]:
    """`portinspect kill ... --json` through the console script: (exit code, the port's doc)."""
    proc = run_cli("kill", *args, "--json", timeout=120)
    doc = json.loads(proc.stdout)
    ports = doc["ports"]
    return proc.returncode, ports[0] if ports else doc


def who(port: int) -> tuple[int, dict[str, Any], str]:
    as_json = run_cli("who", str(port), "--json")
    text = run_cli("who", str(port))
    return as_json.returncode, json.loads(as_json.stdout), text.stdout + text.stderr


def ports(factory: FreePortFactory, count: int) -> list[int]:
    return [factory() for _ in range(count)]


# -- parents that run several services --------------------------------------------------------


def test_prefork_parent_one_child_per_port(free_port_factory: FreePortFactory) -> None:
    wanted = ports(free_port_factory, 3)
    with started([PY, "-c", shapes.PREFORK, *map(str, wanted)]) as parent:
        before = served(wanted)
        child = next(iter(before[wanted[0]]))
        code, doc = kill(str(wanted[0]))
        assert code == 0, doc
        assert [t["pid"] for t in doc["targets"]] == [child]
        assert doc["signalled"] == [child] and doc["status"] == "freed"
        assert_stays_free(wanted[0])
        assert_still_served({p: before[p] for p in wanted[1:]})
        assert psutil.pid_exists(parent.pid)


def test_prefork_parent_is_named_as_a_parent_not_a_reloader(
    free_port_factory: FreePortFactory,
) -> None:
    wanted = ports(free_port_factory, 3)
    with started([PY, "-c", shapes.PREFORK, *map(str, wanted)]) as parent:
        served(wanted)
        code, doc, text = who(wanted[1])
        assert code == 0
        [app] = doc["apps"]
        assert app["boundary"]["stop"] == "runs-other-services"
        assert app["boundary"]["pid"] == parent.pid
        assert {p["port"] for p in app["boundary"]["ports"]} == {wanted[0], wanted[2]}
        # The tree's PID and ROLE columns: the parent is a parent, nothing is a reloader.
        assert re.search(rf"^ +{parent.pid} +parent ", text, re.MULTILINE)
        assert not re.search(r"^ +\d+ +reloader ", text, re.MULTILINE)


def test_one_app_of_many_identical_workers_stays_readable(
    free_port_factory: FreePortFactory,
) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.SHARED, str(port), "60"]) as app:
        wait_until(lambda: len(holders(port)) == 61, 30, "61 holders")
        dry = run_cli("kill", str(port), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "×60" in dry.stdout  # one row for the 60 identical workers
        assert len(dry.stdout.splitlines()) < 15
        _, doc, text = who(port)
        assert len(doc["apps"][0]["tree"]) == 61  # JSON keeps every process
        assert "×60" in text
        assert len(text.splitlines()) < 30
        code, out = kill(str(port))
        assert code == 0 and out["status"] == "freed"
        assert sorted(out["signalled"])[0] == app.pid


def test_multiprocessing_parent_with_three_servers(
    free_port_factory: FreePortFactory, tmp_path: Path
) -> None:
    wanted = ports(free_port_factory, 3)
    script = write(tmp_path, "three.py", shapes.SPAWN)
    with started([PY, str(script), *map(str, wanted)], cwd=tmp_path) as parent:
        before = served(wanted)
        [child] = before[wanted[1]]
        code, doc = kill(str(wanted[1]))
        assert code == 0, doc
        assert doc["signalled"] == [child]
        assert_stays_free(wanted[1])
        assert_still_served({wanted[0]: before[wanted[0]], wanted[2]: before[wanted[2]]})
        assert psutil.pid_exists(parent.pid)


def test_parent_serving_an_admin_port_keeps_serving(free_port_factory: FreePortFactory) -> None:
    admin, public = ports(free_port_factory, 2)
    with started([PY, "-c", shapes.ADMIN, str(admin), str(public)]) as parent:
        before = served([admin, public])
        [worker] = before[public]
        assert before[admin] == {parent.pid, worker}  # the worker inherited the admin socket
        code, doc = kill(str(public))
        assert code == 0, doc
        assert doc["signalled"] == [worker]
        assert doc["collateral"] == []  # the parent still holds the admin port
        assert_stays_free(public)
        wait_until(lambda: holders(admin) == {parent.pid}, 10, "the worker's copy to close")
        assert_still_served({admin: {parent.pid}})


def test_bash_script_running_two_servers(free_port_factory: FreePortFactory) -> None:
    a, b = ports(free_port_factory, 2)
    server = f"{PY} -m http.server --bind 127.0.0.1"
    script = f"{server} {a} & {server} {b} & wait"
    with started(["bash", "-c", script]) as shell:
        before = served([a, b])
        code, doc = kill(str(a))
        assert code == 0, doc
        assert doc["signalled"] == sorted(before[a])
        assert_stays_free(a)
        assert_still_served({b: before[b]})
        assert psutil.pid_exists(shell.pid)


# -- process managers ---------------------------------------------------------------------------


@pytest.fixture
def procfile(tmp_path: Path, free_port_factory: FreePortFactory) -> tuple[Path, list[int]]:
    wanted = ports(free_port_factory, 2)
    lines = [f"web{i}: {PY} -m http.server --bind 127.0.0.1 {p}" for i, p in enumerate(wanted)]
    write(tmp_path, "Procfile", "\n".join(lines) + "\n")
    return tmp_path, wanted


def test_honcho_is_named_before_anything_is_sent(procfile: tuple[Path, list[int]]) -> None:
    directory, (a, b) = procfile
    with started([str(BIN / "honcho"), "start"], cwd=directory) as honcho:
        before = served([a, b])
        dry = run_cli("kill", str(a), "--dry-run")
        assert f"honcho (pid {honcho.pid}) stops every other service it runs" in dry.stdout
        code, doc = kill(str(a))
        assert code == 0, doc
        assert doc["manager"]["kind"] == "honcho" and doc["manager"]["stops_others"]
        assert doc["signalled"] == sorted(before[a])  # only web0: honcho stops web1 itself
        assert any("stops every other service" in r for r in doc["reasons"])


SUPERVISORD = """\
[supervisord]
nodaemon=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
[unix_http_server]
file={dir}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
[program:web0]
command={py} -m http.server --bind 127.0.0.1 {a}
autorestart=true
startsecs=0
[program:web1]
command={py} -m http.server --bind 127.0.0.1 {b}
autorestart=true
startsecs=0
"""


def test_supervisord_restart_is_reported_as_managed(
    tmp_path: Path, free_port_factory: FreePortFactory
) -> None:
    a, b = ports(free_port_factory, 2)
    conf = write(tmp_path, "sup.conf", SUPERVISORD.format(dir=tmp_path, py=PY, a=a, b=b))
    with started([str(BIN / "supervisord"), "-c", str(conf)]) as supervisord:
        before = served([a, b])
        code, doc = kill(str(a))
        assert code == 5, doc
        assert doc["status"] == "managed"
        assert doc["manager"]["kind"] == "supervisord" and doc["manager"]["pid"] == supervisord.pid
        assert doc["manager"]["stop"] == f"supervisorctl -c {conf} stop web0"
        assert doc["signalled"] == sorted(before[a])
        assert {s["signal"] for s in doc["steps"]} == {"SIGTERM"}  # never SIGKILL under it
        assert f"supervisorctl -c {conf} stop web0" in doc["message"]
        assert_still_served({b: before[b]})
        assert psutil.pid_exists(supervisord.pid)
        supervisord.record()


# -- one process, two ports; several workers, one port ------------------------------------------

WSGI = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"


def test_gunicorn_bound_to_two_ports(tmp_path: Path, free_port_factory: FreePortFactory) -> None:
    a, b = ports(free_port_factory, 2)
    write(tmp_path, "wsgi_two.py", WSGI)
    argv = [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{a}", "-b", f"127.0.0.1:{b}"]
    with started([*argv, "wsgi_two:app"], cwd=tmp_path):
        before = served([a, b])
        wait_until(lambda: len(holders(a)) == 2, 30, "the worker")
        before = served([a, b])
        code, doc = kill(str(a))
        assert code == 5 and doc["status"] == "refused", doc
        assert doc["collateral"] == [b] and doc["signalled"] == []
        assert f"also frees port {b}" in doc["message"] and "--all-ports" in doc["message"]
        assert_still_served(before, 0.2)
        code, doc = kill(str(a), "--all-ports")
        assert code == 0 and doc["status"] == "freed", doc
        assert_stays_free(a)
        assert_stays_free(b)


def test_gunicorn_two_ports_both_named(tmp_path: Path, free_port_factory: FreePortFactory) -> None:
    a, b = ports(free_port_factory, 2)
    write(tmp_path, "wsgi_two.py", WSGI)
    argv = [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{a}", "-b", f"127.0.0.1:{b}"]
    with started([*argv, "wsgi_two:app"], cwd=tmp_path):
        served([a, b])
        proc = run_cli("kill", str(a), str(b), "--json")
        assert proc.returncode == 0, proc.stdout
        assert_stays_free(a)
        assert_stays_free(b)


ASGI = """\
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.mark.skipif(not (BIN / "granian").exists(), reason="granian is not installed")
def test_granian_workers_with_their_own_sockets(
    tmp_path: Path, free_port_factory: FreePortFactory
) -> None:
    port = free_port_factory()
    write(tmp_path, "asgi_app.py", ASGI)
    argv = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
    with started([*argv, "--port", str(port), "--workers", "2", "asgi_app:app"], cwd=tmp_path):
        wait_until(lambda: len(holders(port)) == 2, 30, "two workers")
        code, doc, _ = who(port)
        assert code == 0 and len(doc["listeners"]) == 2  # one SO_REUSEPORT socket each
        [app] = doc["apps"]
        roles = {p["pid"]: p["role"] for p in app["tree"] if p["holds_port"]}
        assert sorted(roles.values()) == ["worker", "worker"]
        assert app["tree"][0]["role"] == "master"
        code, out = kill(str(port))
        assert code == 0 and out["status"] == "freed", out
        assert_stays_free(port)


# -- holders that exit, leave or come back ------------------------------------------------------


def test_zombie_leader_whose_threads_hold_on(free_port_factory: FreePortFactory) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.ZOMBIE_LEADER, str(port)]) as holder:
        assert holder.line() == "ready"
        wait_until(lambda: holders(port) == {holder.pid}, 10, "the zombie leader's socket")
        code, doc = kill(str(port), "--timeout", "1")
        assert code == 0 and doc["status"] == "freed", doc
        assert [s["signal"] for s in doc["steps"]] == ["SIGTERM", "SIGKILL"]
        assert_stays_free(port)


def test_socket_passed_to_an_unrelated_process(free_port_factory: FreePortFactory) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.SCM_RIGHTS, str(port)]) as server:
        receiver, sleeper = map(int, server.line().split())
        server.record([receiver, sleeper])
        wait_until(lambda: holders(port) == {server.pid, receiver}, 10, "both holders")
        code, doc = kill(str(port))
        assert code == 0 and doc["status"] == "freed", doc
        assert {server.pid, receiver} <= set(doc["signalled"])
        assert_stays_free(port)
        shell = psutil.Process(os.getpid()).parent()
        assert shell is None or f"pid {shell.pid}" not in doc["message"]


def test_holder_forking_a_copy_on_sigterm(free_port_factory: FreePortFactory) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.FORK_ON_TERM, str(port)]) as holder:
        holder.line()
        wait_until(lambda: holders(port) == {holder.pid}, 10, "the holder")
        code, doc = kill(str(port), "--timeout", "2")
        holder.record(doc.get("signalled", []))
        assert code == 0 and doc["status"] == "freed", doc
        assert len(doc["signalled"]) >= 2 and doc["respawned"]  # the copies were signalled too
        assert_stays_free(port)


def test_holder_binding_again_is_not_called_freed_too_early(
    free_port_factory: FreePortFactory,
) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.REBIND, str(port)]) as holder:
        holder.line()
        wait_until(lambda: holders(port) == {holder.pid}, 10, "the holder")
        code, doc = kill(str(port), "--timeout", "2")
        assert code == 0 and doc["status"] == "freed", doc
        assert [s["signal"] for s in doc["steps"]][-1] == "SIGKILL"
        assert_stays_free(port)


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
def test_tmux_server_holding_a_leaked_descriptor(
    tmp_path: Path, free_port_factory: FreePortFactory
) -> None:
    port = free_port_factory()
    name = f"pi-test-{uuid.uuid4().hex[:8]}"
    leak = (
        "import os, socket, sys, time\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
        "s.listen()\n"
        "s.set_inheritable(True)\n"
        "tmux = ['tmux', '-L', sys.argv[2], 'new-session', '-d', 'sleep 600']\n"
        "print(os.spawnvp(os.P_WAIT, 'tmux', tmux), flush=True)\n"
        "while True:\n"
        "    time.sleep(60)\n"
    )
    # A short directory: tmux's socket path must fit a sockaddr_un (108 bytes), and pytest's
    # tmp_path under xdist does not always.
    short = Path(tempfile.mkdtemp(prefix="pi-tmux-", dir="/tmp"))
    env = {**os.environ, "TMUX_TMPDIR": str(short)}
    with started([PY, "-c", leak, str(port), name], env=env) as holder:
        try:
            assert holder.line() == "0", "tmux did not start"
            wait_until(lambda: len(holders(port)) == 2, 10, "the server and tmux")
            [tmux] = holders(port) - {holder.pid}
            holder.record([tmux])
            code, doc = kill(str(port))
            assert code == 5 and doc["status"] == "refused", doc
            assert doc["signalled"] == []
            assert f"pid {tmux} (tmux" in doc["message"] and "inherited" in doc["message"]
            assert holders(port) == {holder.pid, tmux}
        finally:
            subprocess.run(["tmux", "-L", name, "kill-server"], env=env, check=False)
            shutil.rmtree(short, ignore_errors=True)


# -- a systemd service, simulated with a real cgroup of that name ------------------------------


def _cgroup_root() -> Path | None:
    for root in (
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup"),
    ):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root
    return None


@pytest.fixture
def service_cgroup() -> Iterator[Callable[[int], str]]:
    """Moves a process into a cgroup named like a systemd unit (no systemd runs here: the
    name is all portinspect reads, from /proc/PID/cgroup). Removed afterwards."""
    root = _cgroup_root()
    if not is_root() or root is None:
        pytest.skip("needs root and a writable cgroup hierarchy")
    tag = uuid.uuid4().hex[:8]
    unit = f"portinspect-test-{tag}.service"
    # A slice of its own, never the machine's system.slice: another suite running at the same
    # time must not find it busy when it removes its own (a real systemd's is never touched).
    group = root / f"portinspect-test-{tag}.slice" / unit
    group.mkdir(parents=True)

    def move(pid: int) -> str:
        (group / "cgroup.procs").write_text(str(pid))
        return unit

    try:
        yield move
    finally:
        wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), 10, "empty cgroup")
        group.rmdir()
        group.parent.rmdir()


def test_systemd_unit_is_named_and_not_fought(
    service_cgroup: Callable[[int], str], free_port_factory: FreePortFactory
) -> None:
    port = free_port_factory()
    with started([PY, "-c", shapes.LISTENER, str(port)]) as holder:
        holder.line()
        unit = service_cgroup(holder.pid)
        wait_until(lambda: holders(port) == {holder.pid}, 10, "the holder")
        _, doc, text = who(port)
        manager = doc["apps"][0]["manager"]
        assert manager == {
            "kind": "systemd",
            "pid": None,
            "service": unit,
            "restarts": None,
            "stops_others": False,
            "stop": f"systemctl stop {unit}",
        }
        assert f"systemctl stop {unit}" in text
        code, out = kill(str(port))
        # Nothing restarted it (no systemd here): freed, after the graceful step only.
        assert code == 0 and out["status"] == "freed", out
        assert {s["signal"] for s in out["steps"]} == {"SIGTERM"}
        assert out["watched"] >= 1.9


# -- who's advice --------------------------------------------------------------------------------


def test_who_on_a_udp_only_port_suggests_kill_udp(free_port_factory: FreePortFactory) -> None:
    port = free_port_factory(udp=True)
    with started([PY, "-c", shapes.LISTENER, str(port), "udp"]) as holder:
        holder.line()
        code, doc, text = who(port)
        assert code == 0
        assert doc["stop"] == f"portinspect kill --udp {port}"
        assert f"portinspect kill --udp {port}" in text


HIDDEN_WHO = """
import json, subprocess, sys
run = subprocess.run([sys.argv[1], "who", sys.argv[2]], capture_output=True, text=True)
print(json.dumps({"code": run.returncode, "out": run.stdout, "err": run.stderr}))
"""


@pytest.mark.skipif(not is_root(), reason="needs root for a private pid namespace")
def test_who_as_root_never_says_sudo(free_port_factory: FreePortFactory) -> None:
    # Inside a private pid namespace (same network) the holder, outside it, is invisible.
    from .support import SCRIPT

    port = free_port_factory()
    with started([PY, "-c", shapes.LISTENER, str(port)]) as holder:
        holder.line()
        result = run_in_namespace(
            ["--pid", "--fork", "--mount", "--mount-proc"], HIDDEN_WHO, str(SCRIPT), str(port)
        )
    assert result["code"] == 4, result
    assert "sudo" not in result["out"] + result["err"]
    assert "another pid namespace" in result["err"]
