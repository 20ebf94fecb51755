"""What another local user can do to a root portinspect (issue 16), with real processes of `nobody`.

- A listener run as `python .../uvicorn main:app` in a directory where main.py (and the
  package files the recogniser would try next) are FIFOs: `list`, `who`, `kill --dry-run`
  and scan() must not open them, so they return at once instead of never.
- A socket bound with SO_REUSEADDR and not listening: `free` must not hand out its port.
- Escape sequences in a process name or in PORTINSPECT_LEASE_DIR: never raw on a terminal.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portinspect import _linux, api, appsource, find_free_ports, freeport
from portinspect.errors import NoFreePortError
from portinspect.pytest_plugin import FreePortFactory

from .hostile import (
    bound_by_nobody,
    fifo_app,
    fifo_has_reader,
    leased_port,
    needs_root,
    open_directory,
    release_fifos,
)
from .support import SCRIPT, nobody, run_cli
from .test_hostile_input import terminal_unsafe

if not sys.platform.startswith("linux"):
    pytest.skip("FIFOs, /proc/self/comm and sock_diag are Linux's here", allow_module_level=True)

# Generous: before the fix these commands never returned at all; after it they take
# milliseconds. The bound is only there so a regression fails instead of hanging the suite.
HANG = 60.0


@pytest.fixture
def free_port(free_port_factory: FreePortFactory) -> int:
    """The plugin's free_port, leased away from the ports other tests crowd (hostile.py)."""
    return leased_port(free_port_factory)


@pytest.fixture(scope="module")
def fifo_holder() -> Iterator[tuple[int, int, list[Path]]]:
    """(port, pid, FIFOs) of the nobody listener whose app module is a FIFO, for the module."""
    ports = FreePortFactory()
    try:
        port = leased_port(ports)
        with open_directory() as base, fifo_app(port, base) as (proc, fifos):
            yield port, proc.pid, fifos  # listening: it said "ready" after listen()
    finally:
        ports.release()


def _the_listener(doc: dict[str, Any], port: int, pid: int) -> dict[str, Any]:
    [listener] = [li for li in doc["listeners"] if li["port"] == port and li["proto"] == "tcp"]
    assert listener["pid"] == pid and listener["user"] == "nobody"
    return listener


@needs_root
@pytest.mark.parametrize(
    "args",
    [["list", "--json"], ["who", "P", "--json"], ["kill", "P", "--dry-run", "--json"]],
    ids=["list", "who", "kill --dry-run"],
)
def test_fifo_app_module_blocks_no_command(
    fifo_holder: tuple[int, int, list[Path]], args: list[str]
) -> None:
    port, pid, fifos = fifo_holder
    argv = [str(port) if a == "P" else a for a in args]
    try:
        proc = run_cli(*argv, timeout=HANG)
    finally:
        release_fifos(fifos)  # had it hung, the child would be stuck on one
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    if args[0] == "kill":
        [outcome] = doc["ports"]
        assert outcome["status"] == "dry-run" and outcome["server"] == "uvicorn"
        assert [t["pid"] for t in outcome["targets"]] == [pid]
    else:
        listener = _the_listener(doc, port, pid)
        # Recognised from its command line; the framework stays unknown: main.py was not read.
        assert listener["server"] == "uvicorn" and listener["framework"] is None
    assert not any(fifo_has_reader(f) for f in fifos)


@needs_root
def test_fifo_app_module_blocks_no_scan(fifo_holder: tuple[int, int, list[Path]]) -> None:
    port, pid, fifos = fifo_holder
    result: list[Any] = []
    # In a thread, so that a regression fails this test instead of hanging the whole suite.
    worker = threading.Thread(target=lambda: result.append(api.scan(port)), daemon=True)
    worker.start()
    worker.join(HANG)
    stuck = worker.is_alive()
    release_fifos(fifos)
    assert not stuck, "scan() is blocked on the FIFO"
    [listener] = [li for li in result[0] if li.proto.value == "tcp"]
    assert listener.pid == pid and listener.server == "uvicorn" and listener.framework is None


@needs_root
def test_a_hung_source_read_is_cut_by_the_recognition_deadline(
    fifo_holder: tuple[int, int, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that never returns (a file on a hung NFS or FUSE mount) costs the budget once.

    Simulated: a hung mount cannot be made here, so the open of the app module blocks on an
    event that is set only after scan() has returned. The proof is in the order of events,
    not in a timing: scan() came back while the read was still blocked.
    """
    port, pid, _fifos = fifo_holder
    entered, released = threading.Event(), threading.Event()

    def hung(path: str) -> int | None:
        entered.set()
        released.wait(HANG)
        return None

    monkeypatch.setattr(appsource, "_open_regular", hung)
    try:
        [listener] = [li for li in api.scan(port) if li.proto.value == "tcp"]
        still_blocked = entered.is_set() and not released.is_set()
    finally:
        released.set()
    assert still_blocked
    assert listener.pid == pid and listener.server == "uvicorn" and listener.framework is None


# --- the reader alone, on real files ---------------------------------------------------------


def test_read_source_reads_only_regular_python_files(tmp_path: Path) -> None:
    real = tmp_path / "main.py"
    real.write_text("from fastapi import FastAPI\n")
    (tmp_path / "link.py").symlink_to(real)
    (tmp_path / "dir.py").mkdir()
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "main.txt").write_text("from fastapi import FastAPI\n")
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (appsource.SOURCE_LIMIT * 3))
    assert appsource.read_source(str(real)) == "from fastapi import FastAPI\n"
    assert appsource.read_source(str(tmp_path / "link.py")) is None  # not followed
    assert appsource.read_source(str(tmp_path / "dir.py")) is None
    assert appsource.read_source(str(tmp_path / "fifo.py")) is None  # and not blocked
    assert appsource.read_source(str(tmp_path / "main.txt")) is None  # not a module name
    assert appsource.read_source(str(tmp_path / "missing.py")) is None
    assert appsource.read_source(str(tmp_path / "nul\0.py")) is None
    assert len(appsource.read_source(str(big)) or "") == appsource.SOURCE_LIMIT


@needs_root
def test_read_source_never_opens_a_device(tmp_path: Path) -> None:
    """A character device named main.py (here /dev/zero's numbers): never opened, never read.

    O_PATH opens nothing; were it opened for reading, /dev/zero would give zeros, not None.
    """
    device = tmp_path / "main.py"
    try:
        os.mknod(device, stat.S_IFCHR | 0o644, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("no mknod here")
    assert appsource.read_source(str(device)) is None


def test_the_reader_stops_at_its_byte_budget(tmp_path: Path) -> None:
    module = tmp_path / "main.py"
    module.write_text("x" * 1000)
    with appsource.SourceReader(byte_budget=1500) as read:
        assert read(str(module)) == "x" * 1000
        assert read(str(module)) == "x" * 1000  # 2000 read: over budget from now on
        assert read(str(module)) is None


# --- free and another user's bound socket ----------------------------------------------------

needs_bound_table = pytest.mark.skipif(
    not _linux.can_see_bound_sockets(),
    reason="Linux < 6.8: sock_diag cannot list sockets that are bound and not listening",
)


@needs_root
@needs_bound_table
def test_free_skips_a_port_another_user_bound_with_reuseaddr(
    free_port: int, tmp_path: Path
) -> None:
    """nobody binds the port with SO_REUSEADDR and does not listen: the bind probe (which sets
    SO_REUSEADDR too, as servers do) passes, so only the socket table can say it is taken."""
    env = {**os.environ, freeport.LEASE_DIR_ENV: str(tmp_path / "leases")}
    port = free_port
    with bound_by_nobody(port):
        proc = subprocess.run(
            [str(SCRIPT), "free", "--near", str(port), "--explain", "--json"],
            capture_output=True,
            text=True,
            timeout=HANG,
            env=env,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert port not in doc["ports"]
    [skip] = [s for s in doc["skipped"] if s["port"] == port]
    assert skip["reason"] == "bound"
    assert f"bound by a TCP socket of uid {nobody()[0]} that does not listen" in skip["detail"]


@needs_root
@needs_bound_table
def test_the_library_skips_it_too_without_a_lease(free_port: int) -> None:
    port = free_port
    with bound_by_nobody(port), pytest.raises(NoFreePortError, match="1 bound by a socket"):
        find_free_ports(port, port_range=(port, port), lease=False)
    # Gone with its owner: the port is free again.
    assert find_free_ports(port, port_range=(port, port), lease=False) == [port]


# --- nothing from outside reaches a terminal raw -----------------------------------------------

NAMED_HOLDER = r"""
import socket, sys
with open("/proc/self/comm", "wb") as f:
    f.write(b"\x1b]0;pwned\x07\xe2\x80\xae")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
sys.stdin.read()
"""


def test_free_explain_cleans_the_holders_name(free_port: int, tmp_path: Path) -> None:
    port = free_port
    holder = subprocess.Popen(
        [sys.executable, "-c", NAMED_HOLDER, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        env = {**os.environ, freeport.LEASE_DIR_ENV: str(tmp_path / "leases")}
        proc = subprocess.run(
            [str(SCRIPT), "free", "--near", str(port), "--explain"],
            capture_output=True,
            timeout=HANG,
            env=env,
            check=False,
        )
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode("utf-8")
    [line] = [x for x in err.splitlines() if x.startswith(f"portinspect: skipped {port}:")]
    assert f"held by pid {holder.pid} (\\x1b]0;pwned\\x07\\u202e)" in line
    assert not any(terminal_unsafe(line) for line in err.splitlines())


@pytest.mark.parametrize("command", [["free"], ["free", "--json"]])
def test_a_hostile_lease_dir_is_shown_escaped(tmp_path: Path, command: list[str]) -> None:
    """PORTINSPECT_LEASE_DIR comes from the environment: in the error it is escaped."""
    blocker = tmp_path / "a file \x1b]0;pwned\x07 \u202e"
    blocker.write_text("")
    env = {**os.environ, freeport.LEASE_DIR_ENV: f"{blocker}/leases\x1b[2J"}
    proc = subprocess.run(
        [str(SCRIPT), *command], capture_output=True, timeout=HANG, env=env, check=False
    )
    assert proc.returncode == 1
    err = proc.stderr.decode("utf-8")
    assert err.count("\n") == 1 and "cannot create lease directory" in err
    assert "\\x1b]0;pwned\\x07" in err and "--no-lease" in err
    assert not any(terminal_unsafe(line) for line in err.splitlines())


# --- small things the issue lists -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["list"], ["who", "1"], ["free"], ["kill", "1", "--dry-run"], ["wait", "1", "-t", "0"]],
    ids=["list", "who", "free", "kill", "wait"],
)
def test_an_unknown_backend_is_a_usage_error(args: list[str]) -> None:
    proc = run_cli(*args, env={**os.environ, "PORTINSPECT_BACKEND": "bogus\x1b[2J"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "portinspect: invalid PORTINSPECT_BACKEND 'bogus\\x1b[2J': expected auto, linux, psutil\n"
    )


def test_udp_and_udp_only_together_are_a_usage_error() -> None:
    proc = run_cli("free", "--udp", "--udp-only")
    assert proc.returncode == 2
    assert proc.stderr == (
        "portinspect: --udp (TCP and UDP) and --udp-only (UDP alone) exclude each other\n"
    )
