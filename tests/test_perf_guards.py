"""Guards for the speed-ups measured in benchmarks/: cheap checks of structure, never timings.

Timings belong in benchmarks/run.py (whole processes, round-robin, medians). Here we only
check what makes them possible and would silently regress: which modules a command
imports, that the app behind a socket is worked out once per app and not per socket, that
the JSON envelope stays on the C encoder, and that the threaded /proc walk finds exactly
what a single thread finds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portinspect import apptree, classifier, render
from portinspect.models import Family, ProcessInfo, Proto, Snapshot, Socket, Stop
from portinspect.models.app import BOUNDARY_PORTS
from portinspect.render.common import port_list

from .support import LOOPBACK4, endpoint_of, forked_holders, listening, port_of, same_socket

LINUX = sys.platform.startswith("linux")
HEAVY = {"psutil", "tabulate", "rich", "pydantic"}


def _modules_after(code: str, tmp_path: Path, *, full: bool = False) -> set[str]:
    """The modules loaded once `code` has run (or exited) in a fresh interpreter (their top-level
    package names, or with full=True their dotted names)."""
    out = tmp_path / "modules.txt"
    harness = (
        "import sys, atexit\n"
        "def _dump():\n"
        f"    with open({str(out)!r}, 'w') as f:\n"
        "        f.write('\\n'.join(sys.modules))\n"
        "atexit.register(_dump)\n"
        f"{code}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTINSPECT_")}
    subprocess.run(
        [sys.executable, "-c", harness],
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )
    names = out.read_text().split()
    return set(names) if full else {name.split(".")[0] for name in names}


def _cli(*args: str) -> str:
    """The console script's own entry point, with these arguments."""
    return f"from portinspect._entry import main\nmain({list(args)!r})"


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        pytest.param("import portinspect", HEAVY | {"typer"}, id="import portinspect"),
        pytest.param(
            "from portinspect import scan", HEAVY | {"typer"}, id="from portinspect import"
        ),
        pytest.param(
            "import portinspect._linux", HEAVY | {"typer", "socket", "json"}, id="import _linux"
        ),
        pytest.param(
            "from portinspect import scanner\nscanner.collect()", HEAVY | {"typer"}, id="collect"
        ),
        # A listing in a library needs no subprocess (sysctl is macOS's) and no
        # importlib.resources (tempfile, zipfile, random: ~12 ms together).
        pytest.param(
            "from portinspect import api\napi.scan_result()",
            HEAVY | {"typer", "subprocess", "tempfile", "zipfile"},
            id="scan_result",
        ),
        # pydantic: typer 0.29 imports it (~100 ms) to convert values we parse ourselves.
        pytest.param(_cli("list", "--json"), HEAVY, id="list --json"),
        pytest.param(_cli("list"), HEAVY - {"tabulate"}, id="list"),
        pytest.param(
            _cli("list", "-p", "1-3", "--proto", "tcp", "--json"),
            HEAVY,
            id="list with text options",
        ),
        pytest.param(_cli("free", "--near", "8000"), HEAVY, id="free"),
        pytest.param(_cli("wait", "1", "--free", "--timeout", "1"), HEAVY, id="wait"),
        # kill holds psutil.Process handles from discovery on: signals go through them only.
        pytest.param(
            _cli("kill", "1", "2-3", "--dry-run", "--json"),
            HEAVY - {"psutil"},
            id="kill --dry-run",
        ),
        pytest.param(_cli("--help"), HEAVY, id="--help"),
        # audit reads /proc and netlink itself: no psutil, and its report is no table.
        pytest.param(_cli("audit", "--json"), HEAVY, id="audit --json"),
        pytest.param(_cli("audit"), HEAVY, id="audit"),
        # run: a lease, a keeper, the socket table and a port check; no psutil on Linux.
        pytest.param(
            _cli("run", "--server", f"{sys.executable} -c pass", "--", "true"), HEAVY, id="run"
        ),
        # Every pytest run of every project with portinspect installed loads the plugin.
        pytest.param("import portinspect.pytest_plugin", HEAVY | {"typer"}, id="pytest plugin"),
    ],
)
@pytest.mark.skipif(not LINUX, reason="the Linux path is the one that avoids psutil")
def test_commands_import_only_what_they_need(code: str, absent: set[str], tmp_path: Path) -> None:
    loaded = _modules_after(code, tmp_path)
    assert "portinspect" in loaded  # the harness ran
    assert loaded & absent == set()


@pytest.mark.skipif(not LINUX, reason="the Linux path is the one that avoids psutil")
def test_who_needs_neither_psutil_nor_tabulate(tmp_path: Path) -> None:
    with listening(LOOPBACK4) as sock:
        loaded = _modules_after(_cli("who", str(port_of(sock))), tmp_path)
    assert loaded & HEAVY == set()


@pytest.mark.skipif(not LINUX, reason="the Linux path")
def test_list_pays_for_the_audit_only_with_risk(tmp_path: Path) -> None:
    audit = {"portinspect.audit", "portinspect.dangers", "portinspect.tunnels"}
    assert _modules_after(_cli("list", "--json"), tmp_path, full=True) & audit == set()
    assert audit <= _modules_after(_cli("list", "--risk", "--json"), tmp_path, full=True)


def test_public_names_still_import() -> None:
    import portinspect

    for name in portinspect.__all__:
        assert getattr(portinspect, name) is not None, name
    from portinspect import find_free_ports, kill_port, scan, wait_for

    assert all(callable(f) for f in (scan, find_free_ports, kill_port, wait_for))


# --- the classifier: once per app, not once per socket -----------------------------------


def _prefork_snapshot(sockets: int) -> Snapshot:
    master = ProcessInfo(
        pid=100, ppid=1, name="uvicorn", user="me", cmdline=("uvicorn", "main:app"), cwd="/srv"
    )
    worker = ProcessInfo(
        pid=101, ppid=100, name="uvicorn", user="me", cmdline=("uvicorn", "main:app"), cwd="/srv"
    )
    init = ProcessInfo(pid=1, ppid=0, name="init", user="root", cmdline=("/sbin/init",))
    socks = tuple(
        Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 20000 + i, uid=0, pids=(100, 101))
        for i in range(sockets)
    )
    return Snapshot(sockets=socks, processes={1: init, 100: master, 101: worker})


def test_app_is_identified_once_per_set_of_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = _prefork_snapshot(50)
    reads: list[str] = []

    def read_source(path: str) -> str | None:
        reads.append(path)
        return "from fastapi import FastAPI\napp = FastAPI()\n"

    expected = [
        classifier.classify_socket(s, apptree.AppModel(snapshot, read_source))
        for s in snapshot.sockets
    ]
    calls = []
    real = apptree._Climb.apps

    def counting(self: apptree._Climb, trees: bool) -> object:
        calls.append(self.holders)
        return real(self, trees)

    monkeypatch.setattr(apptree._Climb, "apps", counting)
    reads.clear()
    listeners = classifier.classify(snapshot, read_source)
    assert listeners == expected
    assert listeners[0].framework == "fastapi"
    assert len(calls) == 1
    assert len(reads) == len(set(reads))  # each app module read once


# --- JSON: one document, on the C encoder ------------------------------------------------


def test_envelope_is_the_same_document_with_one_line_per_item() -> None:
    rows = [
        {"port": 8000 + i, "cmdline": ["a b", "é", "\n"], "holders": [{"pid": i}]} for i in range(3)
    ]
    text = render.envelope("list", 0, {"listeners": rows, "empty": []}, error=None, warnings=["w"])
    doc = json.loads(text)
    assert doc == {
        "schema": render.SCHEMA_VERSION,
        "command": "list",
        "ok": True,
        "exit_code": 0,
        "listeners": rows,
        "empty": [],
        "error": None,
        "warnings": ["w"],
    }
    lines = text.splitlines()
    for row in rows:  # each listener on a line of its own
        assert json.dumps(row, ensure_ascii=False) in [line.strip().rstrip(",") for line in lines]
    assert "é" in text  # not \u00e9


# --- the threaded walk finds what one thread finds ----------------------------------------


@pytest.mark.skipif(not LINUX, reason="Linux walk")
@pytest.mark.parametrize("early_exit", [False, True], ids=["full walk", "early exit"])
def test_threaded_walk_finds_what_one_thread_finds(
    monkeypatch: pytest.MonkeyPatch, early_exit: bool
) -> None:
    from portinspect import _linux

    with listening(LOOPBACK4) as a, listening(LOOPBACK4) as b, forked_holders(5) as kids:
        inodes = {os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino}
        monkeypatch.setattr(_linux, "_thread_count", lambda pids: 1)
        single = _linux._find_holders(inodes, early_exit=early_exit)
        monkeypatch.setattr(_linux, "_thread_count", lambda pids: 3)
        threaded = _linux._find_holders(inodes, early_exit=early_exit)
    everyone = {os.getpid(), *kids}
    assert single == threaded == dict.fromkeys(inodes, everyone)


@pytest.mark.skipif(not LINUX, reason="Linux walk")
def test_walk_errors_in_a_thread_reach_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from portinspect import _linux

    def boom(walk: object, pid: int) -> bool:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(_linux._Walk, "scan", boom)
    monkeypatch.setattr(_linux, "_thread_count", lambda pids: 2)
    with pytest.raises(OSError, match="Too many open files"):
        _linux._find_holders({1}, early_exit=False)


@pytest.mark.skipif(not LINUX, reason="Linux walk")
def test_siblings_under_a_wide_non_holding_parent_are_probed_not_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A launcher forks 40 children and closes the socket; two children keep it.

    Both keepers are found (as by a full walk), but the other 38 siblings are only probed
    at the keepers' fd number instead of having all their fds read.
    """
    from portinspect import _linux

    wide = _linux._WIDE + 8
    with listening(LOOPBACK4) as sock:
        port, inode, fd = port_of(sock), os.fstat(sock.fileno()).st_ino, sock.fileno()
        where = endpoint_of(sock)
        ready_r, ready_w = os.pipe()
        stop_r, stop_w = os.pipe()
        settled_r, settled_w = os.pipe()
        launcher = os.fork()
        if launcher == 0:  # forks `wide` children, then drops its own copy of the socket
            try:
                os.close(ready_r)
                os.close(stop_w)
                kids = []
                for i in range(wide):
                    kid = os.fork()
                    if kid == 0:
                        try:
                            if i not in (3, wide - 1):
                                os.close(fd)
                            os.close(ready_w)
                            os.write(settled_w, b".")  # its fd table is final now
                            os.read(stop_r, 1)
                        finally:
                            os._exit(0)
                    kids.append(kid)
                os.close(fd)
                # Ready once every kid has closed its copy (or kept it): under load a kid may
                # run long after fork() returned, and would still hold the socket.
                settled = 0
                while settled < wide:
                    settled += len(os.read(settled_r, wide))
                os.write(ready_w, b" ".join(str(k).encode() for k in (kids[3], kids[-1])))
                os.close(ready_w)
                os.read(stop_r, 1)
                for kid in kids:
                    os.waitpid(kid, 0)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(stop_r)
        os.close(settled_r)
        os.close(settled_w)
        try:
            keepers = {int(p) for p in os.read(ready_r, 100).split()}
            siblings = set(_linux._children(launcher)) - keepers
            sock.close()  # now only the two keepers hold it
            scanned: list[int] = []
            real_scan = _linux._Walk.scan

            def counting(walk: _linux._Walk, pid: int) -> bool:
                scanned.append(pid)
                return real_scan(walk, pid)

            monkeypatch.setattr(_linux._Walk, "scan", counting)
            early, _ = _linux.list_sockets(frozenset({Proto.TCP}), frozenset({port}))
            walked = set(scanned)
            full, _ = _linux.list_sockets(frozenset({Proto.TCP}))
        finally:
            os.close(stop_w)
            os.close(ready_r)
            os.waitpid(launcher, 0)
    assert [(s.inode, set(s.pids)) for s in same_socket(early, where)] == [(inode, keepers)]
    assert [set(s.pids) for s in full if s.inode == inode] == [keepers]
    assert len(siblings) == wide - 2
    # The walk in pid order reads the few siblings forked before the first keeper; the rest
    # are probed by the relatives check.
    assert len(walked & siblings) < wide // 2


# --- the app model: a launcher of many services ------------------------------------------


def _launcher_snapshot(workers: int) -> Snapshot:
    """A generic parent (one command line for all) forking one child per service port."""
    init = ProcessInfo(pid=1, ppid=0, name="init", user="root", cmdline=("/sbin/init",))
    argv = ("python3", "harness.py")
    parent = ProcessInfo(pid=100, ppid=1, name="python3", user="me", cmdline=argv)
    kids = {
        200 + i: ProcessInfo(pid=200 + i, ppid=100, name="python3", user="me", cmdline=argv)
        for i in range(workers)
    }
    socks = tuple(
        Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 20000 + i, uid=0, pids=(200 + i,))
        for i in range(workers)
    )
    held = {s.pids[0]: frozenset({(s.proto, s.port)}) for s in socks}
    return Snapshot(sockets=socks, processes={1: init, 100: parent, **kids}, held=held)


def test_the_boundary_lists_a_few_of_the_other_services_and_counts_the_rest() -> None:
    """Each worker's app stops at the launcher, which runs 999 other services: the boundary
    names the lowest BOUNDARY_PORTS and counts the others (every list in full was 5.5 million
    entries at the L load), and `who` says how many more."""
    snapshot = _launcher_snapshot(1000)
    model = apptree.AppModel(snapshot)
    middle = snapshot.sockets[500]
    [app] = model.apps([middle], trees=True)
    boundary = app.boundary
    assert app.top == middle.pids[0] and boundary.stop is Stop.RUNS_OTHER_SERVICES
    shown = [port for _, port in boundary.ports]
    assert shown == list(range(20000, 20000 + BOUNDARY_PORTS))
    assert len(shown) + boundary.more_ports == 999
    assert boundary.to_dict()["more_ports"] == 999 - BOUNDARY_PORTS
    text = port_list(boundary.ports, unlisted=boundary.more_ports)
    assert text == f"ports 20000, 20001, 20002, 20003, 20004, 20005 and {999 - 6} more"
