"""The app model against real dev servers, seen through psutil the way the scanner sees them.

Each server is started by tests/servers.py on a loopback port leased for it. The
processes map is built with psutil: the holders of the listening socket (all sharers,
not just the one pid psutil.net_connections() names) and their ancestors, with cwd and
the reloader/kernel env markers.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from portinspect import scan
from portinspect.apptree import AppModel, roles_of
from portinspect.classifier import port_range
from portinspect.models import Family, ProcessInfo, Proto, Snapshot, Socket

from . import servers
from .servers import Server, listens
from .support import endpoint, listening, port_of, same_socket

pytestmark = pytest.mark.servers

ENV_MARKERS = ("RUN_MAIN", "WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD", "JPY_PARENT_PID")
SOURCE_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Expected:
    framework: str | None
    server: str | None
    leader_role: str  # role of the pid we started, which must be the app's top
    other_roles: tuple[str, ...] = ()  # roles of the other members, sorted


EXPECTED = {
    "http.server": Expected(None, "http.server", "server"),
    "django": Expected("django", "runserver", "reloader", ("server",)),
    "uvicorn": Expected("fastapi", "uvicorn", "server"),
    "uvicorn-reload": Expected("fastapi", "uvicorn", "reloader", ("server",)),
    "uvicorn-workers": Expected("fastapi", "uvicorn", "master", ("worker", "worker")),
    "flask-debug": Expected("flask", "werkzeug", "reloader", ("server",)),
    "gunicorn": Expected("flask", "gunicorn", "master", ("worker", "worker")),
    "jupyter": Expected("jupyter", "jupyter", "server"),
    "hypercorn": Expected("fastapi", "hypercorn", "master", ("worker",)),
    "daphne": Expected("fastapi", "daphne", "server"),
    "waitress": Expected("flask", "waitress", "server"),
    # The module imports FastAPI and Flask: under --interface wsgi it is served as Flask.
    "granian-wsgi": Expected("flask", "granian", "master", ("worker",)),
    "sanic": Expected("sanic", "sanic", "master", ("worker",)),
    "bottle": Expected("bottle", "wsgiref", "server"),
    "tornado": Expected("tornado", None, "server"),
}


def _process_info(proc: psutil.Process) -> ProcessInfo:
    with proc.oneshot():
        env: dict[str, str] = {}
        with contextlib.suppress(psutil.Error):
            environ = proc.environ()
            env = {k: environ[k] for k in ENV_MARKERS if k in environ}
        cwd = None
        with contextlib.suppress(psutil.Error):
            cwd = proc.cwd()
        return ProcessInfo(
            pid=proc.pid,
            ppid=proc.ppid(),
            name=proc.name(),
            user=proc.username(),
            cmdline=tuple(proc.cmdline()),
            cwd=cwd,
            create_time=proc.create_time(),
            env=env,
        )


def _holders_and_ancestors(port: int) -> tuple[list[int], int, dict[int, ProcessInfo]]:
    """All holders of the LISTEN socket on `port`, the one pid psutil names for it, and the
    holders plus their ancestors as ProcessInfo.

    Stands in for portinspect.scan() so this test can switch to the real scanner.
    psutil.net_connections() names one pid per socket (the last sharer in /proc order),
    so the sharers are found by asking that pid's relatives (research/frameworks.md §1).
    """
    named = [
        c.pid
        for c in psutil.net_connections(kind="tcp4")
        if c.status == psutil.CONN_LISTEN and c.laddr and tuple(c.laddr) == (servers.HOST, port)
    ]
    assert len(named) == 1, f"expected one socket on {servers.HOST}:{port}, psutil says {named}"
    top = psutil.Process(named[0])
    while (parent := top.parent()) is not None and listens(parent, port):
        top = parent
    holders = sorted(p.pid for p in (top, *top.children(recursive=True)) if listens(p, port))
    processes: dict[int, ProcessInfo] = {}
    for pid in holders:
        proc = psutil.Process(pid)
        for member in (proc, *proc.parents()):
            if member.pid not in processes:
                processes[member.pid] = _process_info(member)
    return holders, named[0], processes


def _read_source(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(SOURCE_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None


def _own_lineage() -> frozenset[int]:
    return frozenset({os.getpid(), *(p.pid for p in psutil.Process().parents())})


@dataclass(frozen=True)
class _Identity:
    framework: str | None
    server: str | None
    app_pid: int | None
    roles: dict[int, str]


def identify_app(
    holders: list[int], processes: dict[int, ProcessInfo], lineage: frozenset[int], read: object
) -> _Identity:
    """The app model's answer for one socket held by `holders`, as list would show it."""
    sock = Socket(Proto.TCP, Family.IPV4, servers.HOST, 1, pids=tuple(holders))
    snapshot = Snapshot((sock,), processes, self_lineage=lineage)
    apps = AppModel(snapshot, _read_source).apps([sock])
    main = apps[0]
    return _Identity(main.framework, main.server, main.top, dict(roles_of(apps)))


@pytest.mark.parametrize("real_server", sorted(EXPECTED), indirect=True)
def test_real_server_is_identified(real_server: Server) -> None:
    expected = EXPECTED[real_server.recipe.name]
    holders, named, processes = _holders_and_ancestors(real_server.port)
    context = f"{real_server.recipe.name}: holders {holders}, processes {processes}"

    app = identify_app(holders, processes, _own_lineage(), _read_source)

    assert (app.framework, app.server) == (expected.framework, expected.server), context
    assert app.app_pid == real_server.pid, context
    assert app.roles[real_server.pid] == expected.leader_role, context
    others = sorted(role for pid, role in app.roles.items() if pid != real_server.pid)
    assert tuple(others) == expected.other_roles, context
    # Every member the walk took in belongs to the server's own tree.
    assert set(app.roles) <= {p.pid for p in real_server.record_tree()}, context

    # The real pipeline (scanner -> classifier) reports the same app as this psutil view,
    # with every holder, range and exposure, as `portinspect list --json` shows it.
    [listener] = same_socket(scan(real_server.port, proto="tcp"), endpoint(real_server.port))
    assert sorted(h.process.pid for h in listener.holders) == holders, context
    assert (listener.framework, listener.server, listener.app_pid) == (
        expected.framework,
        expected.server,
        real_server.pid,
    ), context
    # The top holder comes first: the master or reloader when it holds the socket too.
    top_holder = real_server.pid if real_server.recipe.leader_holds else holders[0]
    assert listener.pid == top_holder, context
    assert listener.exposed is False and listener.address == servers.HOST
    assert listener.range is port_range(real_server.port)
    assert listener.cwd == str(real_server.cwd)
    assert {h.process.pid: h.role for h in listener.holders} == {
        pid: role for pid, role in app.roles.items() if pid in holders
    }, context

    # Naive tools see only the one pid psutil names (a worker, the reloader child):
    # the walk still finds the same app.
    alone = identify_app([named], processes, _own_lineage(), _read_source)
    assert (alone.app_pid, alone.framework, alone.server) == (
        app.app_pid,
        app.framework,
        app.server,
    ), context


# ---------------------------------------------------------------------------------------
# The server helper itself: retries, failure messages, cleanup
# ---------------------------------------------------------------------------------------


def test_a_taken_port_is_retried_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # As if a process that takes no lease had bound the server's port first.
    with listening(servers.HOST) as taken:
        picks = iter([port_of(taken), servers.free_port()])
        monkeypatch.setattr(servers, "free_port", lambda: next(picks))
        with servers.running(servers.RECIPES["http.server"], tmp_path) as server:
            assert server.port != port_of(taken)
            assert servers.accepts(server.port)


def test_a_server_that_cannot_start_fails_with_its_output(tmp_path: Path) -> None:
    broken = servers.Recipe(
        "broken",
        lambda port, _d: servers.script("uvicorn", "nosuchmodule:app", "--port", str(port)),
    )
    with (
        pytest.raises(servers.ServerFailed, match="nosuchmodule"),
        servers.running(broken, tmp_path),
    ):
        pass


def test_the_whole_tree_is_stopped_even_when_the_test_fails(tmp_path: Path) -> None:
    tree: list[psutil.Process] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        with servers.running(servers.RECIPES["uvicorn-reload"], tmp_path) as server:
            tree = server.record_tree()
            raise RuntimeError("the test failed")
    # supervisor, resource tracker and server child
    assert len(tree) == 3
    assert all(servers.gone(p) for p in tree)
