"""Processes and sockets that appear and vanish while a scan runs: `list` keeps working.

For real: a churner forks short-lived loopback listeners (TCP and UDP, some exiting at once,
some closing first, some lingering as zombies until reaped) while the scan runs in a loop, in
process and through the console script. Every run must succeed, and whatever it reports about
a churned listener must be true: the pid, start time and port of a process that really listened
there (pid + start time, since pids are reused within the run).

Deterministic, by injection: each /proc read the Linux backend makes (open, listdir, readlink,
read) fails for one holder, as if it exited (ENOENT, ESRCH) or was hidden (EACCES) at that
moment; each psutil call the portable backend makes raises NoSuchProcess, ZombieProcess or
AccessDenied. The scan, the app trees, the table and the JSON must all still work.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from portinspect import api, render

from .holders import holding
from .support import (
    LOOPBACK4,
    SCRIPT,
    endpoint,
    endpoint_of,
    lease_ports,
    listening,
    port_of,
    same_socket,
)

LINUX = sys.platform.startswith("linux")
CHURN_LISTENERS = 300  # at least this many forked listeners per run
MIN_SCANS = 5  # in-process scans done while the churn goes on
MIN_CLI_RUNS = 3  # `portinspect list --json` runs done while the churn goes on
# Churned listeners take turns on this many leased ports (up to 25 children live at once).
CHURN_PORTS = 40

CHURNER = textwrap.dedent(
    """
    import os, random, socket, sys, time
    minimum, records, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ports = [int(p) for p in sys.argv[4:]]
    out = os.open(records, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rng = random.Random(7)
    children, forked = [], 0
    while forked < minimum or not os.path.exists(stop):
        udp = forked % 4 == 1
        # Mostly gone within milliseconds; one in six stays 0.2 s, so that scans on a loaded
        # machine still catch some with their owner.
        life = rng.choice((0, 0, 0.001, 0.005, 0.02, 0.2))
        closes_first = forked % 3 == 0
        forked += 1
        pid = os.fork()
        if pid == 0:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
                try:
                    if not udp:  # an earlier test's TIME_WAIT may linger on a leased port
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", ports[forked * 7 % len(ports)]))
                    if not udp:
                        s.listen()
                except OSError:  # taken by a sibling still alive: this round opens nothing
                    os._exit(0)
                with open("/proc/self/stat", "rb") as f:
                    ticks = f.read().rsplit(b")", 1)[1].split()[19].decode()
                line = f"{os.getpid()} {ticks} {s.getsockname()[1]} {'udp' if udp else 'tcp'}\\n"
                os.write(out, line.encode())
                time.sleep(life)
                if closes_first:
                    s.close()
                    time.sleep(0.001)
            finally:
                os._exit(0)
        children.append(pid)
        if len(children) > 24:  # reaped late: the oldest linger as zombies meanwhile
            os.waitpid(children.pop(0), 0)
        time.sleep(0.004)
    for pid in children:
        os.waitpid(pid, 0)
    print(forked, flush=True)
    """
)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _boot_time() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise AssertionError("no btime in /proc/stat")


def _churned(records: Path) -> dict[tuple[int, float], tuple[int, str]]:
    """(pid, start time) -> (port, proto) for every listener the churner's children opened."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    boot = _boot_time()
    found = {}
    for line in records.read_text().splitlines():
        pid, ticks, port, proto = line.split()
        found[int(pid), int(ticks) / ticks_per_second + boot] = (int(port), proto)
    return found


Seen = list[tuple[int, float | None, int, str]]  # (pid, started, port, proto) as reported


def _named(seen: Seen, churned: dict[tuple[int, float], tuple[int, str]]) -> int:
    """How many reported rows name a churned child, by pid and start time. Each must show that
    child's own socket and nothing else."""
    by_pid: dict[int, list[tuple[float, tuple[int, str]]]] = {}
    for (pid, started), socket_ in churned.items():
        by_pid.setdefault(pid, []).append((started, socket_))
    named = 0
    for pid, started, port, proto in seen:
        if pid is None or started is None:
            continue
        match = [sock for when, sock in by_pid.get(pid, ()) if abs(when - started) < 0.005]
        if match:  # a churned child, by pid and start time: its own socket and nothing else
            assert match[0] == (port, proto), (pid, started, port, proto)
            named += 1
    return named


def _check_stable(listeners: list[dict[str, Any]], witness: Any) -> None:
    [row] = same_socket(listeners, witness)
    assert row["pid"] == os.getpid()


@pytest.mark.skipif(not LINUX, reason="forks listeners; the walk under churn is Linux's")
def test_list_keeps_working_while_listeners_come_and_go(tmp_path: Path) -> None:
    records, stop = tmp_path / "records", tmp_path / "stop"
    seen: Seen = []
    scans = cli_runs = 0
    churn_ports = lease_ports(CHURN_PORTS)
    mine: Seen = []  # rows on the churn ports: only churned children bind there
    with listening(LOOPBACK4) as witness:
        stable = endpoint_of(witness)  # held by this process the whole time: always reported
        churner = subprocess.Popen(
            [sys.executable, "-c", CHURNER, str(CHURN_LISTENERS), str(records), str(stop)]
            + [str(port) for port in churn_ports],
            stdout=subprocess.PIPE,
            text=True,
        )
        cli: subprocess.Popen[bytes] | None = None
        out_path, err_path = tmp_path / "out", tmp_path / "err"
        deadline = time.monotonic() + 120
        try:
            # Scans go on until the churn is done (every listener forked came and went under
            # one) and at least one churned listener was caught with its owner: on a loaded
            # machine a child may well exit before a scan reads its process, so that can take
            # many scans.
            while (
                scans < MIN_SCANS
                or cli_runs < MIN_CLI_RUNS
                or _lines(records) < CHURN_LISTENERS
                or not _named(mine, _churned(records))
            ):
                assert time.monotonic() < deadline, (scans, cli_runs)
                assert churner.poll() is None, "the churner stopped before the scans were done"
                if cli is None:
                    # Into files: a pipe nobody reads while we scan would fill and block it.
                    with open(out_path, "wb") as out, open(err_path, "wb") as err:
                        cli = subprocess.Popen(
                            [str(SCRIPT), "list", "--json", "-q"], stdout=out, stderr=err
                        )
                rows = [li.to_dict() for li in api.scan()]
                _check_stable(rows, stable)
                seen += [(r["pid"], r["started"], r["port"], r["proto"]) for r in rows]
                mine += [row for row in seen[-len(rows) :] if row[2] in churn_ports]
                scans += 1
                if cli.poll() is not None:
                    assert cli.returncode == 0, err_path.read_text()
                    assert err_path.read_text() == ""
                    rows = json.loads(out_path.read_text())["listeners"]
                    _check_stable(rows, stable)
                    seen += [(r["pid"], r["started"], r["port"], r["proto"]) for r in rows]
                    mine += [row for row in seen[-len(rows) :] if row[2] in churn_ports]
                    cli_runs += 1
                    cli = None
            stop.touch()
            forked = int(churner.communicate(timeout=60)[0])
        finally:
            stop.touch()
            for proc in (churner, cli):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=30)
    assert forked >= CHURN_LISTENERS
    churned = _churned(records)
    assert len(churned) >= CHURN_LISTENERS  # every child bound and recorded its socket
    # Whatever any scan said about a churned child was true (checked in _named); and one was
    # caught at least (the loop above ran until then): the test did test something.
    assert _named(seen, churned) > 0


# -- deterministic: one /proc read fails for one holder ---------------------------------------


@pytest.fixture(scope="module")
def holder() -> Iterator[tuple[int, int]]:
    """A real listener in another process: (pid, port). Stopped by pid."""
    with holding() as h:
        yield h.pid, h.port


class ProcFaults:
    """os.open/listdir/readlink/read fail for /proc/<pid>/<what>, as the kernel would."""

    def __init__(self, pid: int, what: str, error: type[OSError], on_read: bool) -> None:
        self.prefix = f"/proc/{pid}/"
        self.what = what
        self.error = error
        self.on_read = on_read  # open works, the read fails (the process exited in between)
        self.fds: dict[int, str] = {}
        self.hits = 0

    def matches(self, path: str) -> bool:
        if not path.startswith(self.prefix):
            return False
        rest = path[len(self.prefix) :]
        if self.what.endswith("/*"):
            return rest.startswith(self.what[:-1])
        return rest == self.what or (self.what == "children" and rest.endswith("/children"))

    def fail(self, path: str) -> None:
        self.hits += 1
        raise self.error(f"injected: {path}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open, real_read = os.open, os.read
        real_listdir, real_readlink, real_close = os.listdir, os.readlink, os.close

        def where(path: Any, dir_fd: int | None) -> str:
            text = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
            if isinstance(path, int):
                return self.fds.get(path, "")
            if dir_fd is not None:
                return f"{self.fds.get(dir_fd, '')}/{text}"
            return text

        def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            full = where(path, dir_fd)
            if self.matches(full) and not self.on_read:
                self.fail(full)
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if full.startswith(self.prefix):
                self.fds[fd] = full
            return fd

        def fake_read(fd: int, size: int) -> bytes:
            full = self.fds.get(fd, "")
            if self.on_read and self.matches(full):
                self.fail(full)
            return real_read(fd, size)

        def fake_close(fd: int) -> None:
            self.fds.pop(fd, None)  # the number will name another file next
            real_close(fd)

        def fake_listdir(path: Any = ".") -> list[str]:
            full = where(path, None)
            if self.matches(full):
                self.fail(full)
            return real_listdir(path)

        def fake_readlink(path: Any, *, dir_fd: Any = None) -> str:
            full = where(path, dir_fd)
            if self.matches(full):
                self.fail(full)
            return real_readlink(path, dir_fd=dir_fd)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "read", fake_read)
        monkeypatch.setattr(os, "listdir", fake_listdir)
        monkeypatch.setattr(os, "close", fake_close)
        monkeypatch.setattr(os, "readlink", fake_readlink)


def _everything_about(port: int) -> list[dict[str, Any]]:
    """What list, who and their renderers make of the port; none of it may raise.

    The rows of its TCP socket on 127.0.0.1 (the only one a test here makes on the port)."""
    listeners = api.scan(port)
    render.list_table(listeners)
    view = api.port_view(port)
    if view.listeners:
        render.who_report(view)
    render.envelope("who", 0, {"apps": [render.app_json(app) for app in view.apps]})
    return same_socket([li.to_dict() for li in listeners], endpoint(port))


# (what under /proc/<pid>/, errors, what the port's row must show)
#   hidden: the socket is listed, its owner is not (the fd walk could not see the holder)
#   gone:   the holder exited as far as the scan knows: no row, or a row without a pid
#   partial: the holder is listed, the field that could not be read is empty
LINUX_FAULTS = [
    ("fd", (FileNotFoundError, ProcessLookupError, PermissionError), "hidden"),
    ("fd/*", (FileNotFoundError, PermissionError), "hidden"),
    ("stat", (FileNotFoundError, ProcessLookupError), "gone"),
    ("stat", (PermissionError,), "partial"),
    ("status", (FileNotFoundError, ProcessLookupError), "gone"),
    ("status", (PermissionError,), "partial"),
    ("cmdline", (FileNotFoundError, ProcessLookupError), "gone"),
    ("cmdline", (PermissionError,), "partial"),
    ("environ", (FileNotFoundError, ProcessLookupError, PermissionError), "partial"),
    ("cwd", (FileNotFoundError, PermissionError), "partial"),
    ("task", (FileNotFoundError, PermissionError), "partial"),
    ("children", (FileNotFoundError, ProcessLookupError, PermissionError), "partial"),
]
LINUX_CASES = [
    pytest.param(what, error, expect, on_read, id=f"{what}-{error.__name__}-{stage}")
    for what, errors, expect in LINUX_FAULTS
    for error in errors
    for on_read, stage in ((False, "open"), (True, "read"))
    if not on_read or what in ("stat", "status", "cmdline", "environ", "children")
]


@pytest.mark.skipif(not LINUX, reason="the Linux backend's /proc reads")
@pytest.mark.parametrize(("what", "error", "expect", "on_read"), LINUX_CASES)
def test_linux_scan_survives_a_proc_read_failing_injected(
    holder: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    what: str,
    error: type[OSError],
    expect: str,
    on_read: bool,
) -> None:
    pid, port = holder
    monkeypatch.setenv("PORTINSPECT_BACKEND", "linux")
    faults = ProcFaults(pid, what, error, on_read)
    with listening(LOOPBACK4) as witness:
        faults.install(monkeypatch)
        rows = _everything_about(port)
        witness_rows = _everything_about(port_of(witness))
        monkeypatch.undo()
    assert faults.hits, f"/proc/{pid}/{what} was never read: the injection missed"
    assert [r["pid"] for r in witness_rows] == [os.getpid()]  # the rest of the scan is whole
    if expect == "hidden":
        [row] = rows
        assert row["pid"] is None and row["port"] == port and row["uid"] == os.getuid()
    elif expect == "gone":
        assert all(r["pid"] is None for r in rows)
    else:
        [row] = rows
        assert row["pid"] == pid and row["port"] == port


# -- the portable backend: psutil raises ------------------------------------------------------

PSUTIL_CALLS = [
    "net_connections",
    "parents",
    "children",
    "uids",
    "ppid",
    "name",
    "create_time",
    "username",
    "cmdline",
    "cwd",
    "environ",
]
PSUTIL_ERRORS: dict[str, Callable[[int], psutil.Error]] = {
    "NoSuchProcess": lambda pid: psutil.NoSuchProcess(pid, msg="injected"),
    "ZombieProcess": lambda pid: psutil.ZombieProcess(pid, msg="injected"),
    "AccessDenied": lambda pid: psutil.AccessDenied(pid, msg="injected"),
}


@pytest.mark.parametrize("error", sorted(PSUTIL_ERRORS))
@pytest.mark.parametrize("call", PSUTIL_CALLS)
def test_psutil_scan_survives_each_call_raising_injected(
    holder: tuple[int, int], monkeypatch: pytest.MonkeyPatch, call: str, error: str
) -> None:
    pid, port = holder
    monkeypatch.setenv("PORTINSPECT_BACKEND", "psutil")
    hits = []
    real = getattr(psutil.Process, call)

    @functools.wraps(real)  # keeps psutil's oneshot() cache hooks on the method
    def failing(self: psutil.Process, *args: Any, **kwargs: Any) -> Any:
        if self.pid == pid:
            hits.append(call)
            raise PSUTIL_ERRORS[error](pid)
        return real(self, *args, **kwargs)

    with listening(LOOPBACK4) as witness:
        monkeypatch.setattr(psutil.Process, call, failing)
        rows = _everything_about(port)
        witness_rows = _everything_about(port_of(witness))
        monkeypatch.undo()
    assert [r["pid"] for r in witness_rows] == [os.getpid()]
    if not hits:
        pytest.skip(f"psutil.Process.{call} is not called for a holder on this path")
    # Listed with what could be read; or, if the holder "exited", without it.
    assert all(r["port"] == port for r in rows)
    assert all(r["pid"] in (pid, None) for r in rows)
