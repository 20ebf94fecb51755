"""Helpers shared by the tests: leased ports, real loopback sockets, unprivileged children, the CLI.

Ports. Every port a test binds or acts on is leased from portinspect's own allocator
(find_free_ports) in the shared per-user lease directory, the one the user's own `portinspect
free` and every other test run of this user share: xdist workers, a second clone's suite run at
the same time and the user's servers never get a port a test holds. The leases are kept while
the port is bound (a test that frees a port and checks it stays free still owns it) and given
back when the test ends (conftest), or, taken outside a test (a module fixture, import time),
when the session ends; the worker's exit ends them in any case. A port is leased only when it
is free for TCP and UDP on every address, so the whole port number is the test's.

The allocator counts a port with only TIME_WAIT connections as free (servers bind with
SO_REUSEADDR), and a port a test gives back is soon handed to another: a test binds TCP with
SO_REUSEADDR as servers do (`listening()` does), or its bind may meet an earlier test's TIME_WAIT.

Tests bind only 127.0.0.1 and ::1 and stop every process they start by pid, even when they fail.
Assertions name the exact socket a test made (`same_socket`): protocol, family, address, port
and pid, never "whatever is on port P".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from portinspect import find_free_ports, freeport
from portinspect.errors import NoFreePortError

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"
SCRIPT = Path(sys.executable).parent / "portinspect"


@functools.cache
def has_ipv6() -> bool:
    """Whether ::1 exists here. The probe's kernel-picked port is bound for microseconds and
    never used; it comes from the ephemeral range, where no lease is ever handed out."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK6, 0))
    except OSError:
        return False
    return True


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


# -- leased ports ------------------------------------------------------------------------------

# Read once, when the suite starts: a test may point PORTINSPECT_LEASE_DIR at a private
# directory (monkeypatch) to test lease files, and the ports it binds must still be leased where
# everyone else looks. A PORTINSPECT_LEASE_DIR set for the whole run (several CI jobs sharing one
# directory) is honoured.
SHARED_LEASES = freeport.lease_directory()
# A backstop only: every lease is given back when its test (or the session) ends, and ends with
# the worker that took it. Long, so a slow session never loses the ports it took at import.
LEASE_SECONDS = 3600.0
# What the allocator runs with, whatever a test set meanwhile: the shared directory, and the
# backend the run started with (a test forcing the psutil backend would make each lease cost
# a full psutil connection walk).
_ALLOCATOR_ENV = {
    freeport.LEASE_DIR_ENV: str(SHARED_LEASES),
    "PORTINSPECT_BACKEND": os.environ.get("PORTINSPECT_BACKEND"),
}


class _Scope:
    """The leases taken while this scope is the innermost one, given back when it closes."""

    def __init__(self) -> None:
        self.ports: list[int] = []

    def release(self) -> None:
        if self.ports:
            with freeport.LeaseStore(SHARED_LEASES) as store:
                store.release_ports(self.ports, os.getpid())
            self.ports.clear()


_SESSION = _Scope()
_SCOPES: list[_Scope] = [_SESSION]


@contextlib.contextmanager
def lease_scope() -> Iterator[None]:
    """Leases taken inside the block (not in an inner scope) are given back when it ends.

    conftest opens one around every test; servers.running() one around each server.
    """
    scope = _Scope()
    _SCOPES.append(scope)
    try:
        yield
    finally:
        _SCOPES.remove(scope)
        scope.release()


def release_session_leases() -> None:
    _SESSION.release()


def give_back(ports: Iterable[int]) -> None:
    """Give back leases taken with lease_ports() before their scope ends (for a test that
    hands a region it found free to a process of its own to lease there)."""
    wanted = set(ports)
    for scope in _SCOPES:
        scope.ports[:] = [port for port in scope.ports if port not in wanted]
    with freeport.LeaseStore(SHARED_LEASES) as store:
        store.release_ports(sorted(wanted), os.getpid())


# Where the suite takes its ports unless a test says otherwise: below `free`'s default start
# (15000), where portinspect hands nothing out unless asked, and from a random point of it.
# Nearest-first from a fixed start would hand a port a test has just freed to the very next
# caller, and a `kill` still watching that port takes a newcomer there for a respawn: seen,
# with another version of portinspect running beside us (one that knows no keep_while_bound
# and ends our leases at the first bind), kill SIGKILLed the pytest worker that got the port.
BAND = (10000, 14999)


def lease_ports(
    count: int = 1,
    *,
    near: int | None = None,
    port_range: tuple[int, int] | None = None,
    **options: Any,
) -> list[int]:
    """`count` ports, free for TCP and UDP on every address, leased until the scope ends.

    Without near or port_range: from a random point of BAND, else anywhere. The options are
    find_free_ports' (allow_ephemeral, allow_unsafe...). Raises NoFreePortError like it when
    the range has too few free ports.
    """
    if near is None and port_range is None:
        with contextlib.suppress(NoFreePortError):  # the band is full: anywhere, then
            return lease_ports(count, near=random.randint(*BAND), port_range=BAND, **options)
    with _environment(_ALLOCATOR_ENV):
        ports = find_free_ports(
            near,
            count,
            port_range=port_range,
            udp=True,
            lease_seconds=LEASE_SECONDS,
            release_on_exit=True,
            keep_while_bound=True,
            **options,
        )
    _SCOPES[-1].ports.extend(ports)
    return ports


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """os.environ with these values (None: unset) for the block, then exactly as it was."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set_env(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def lease_port(**options: Any) -> int:
    """One leased port (see lease_ports)."""
    [port] = lease_ports(1, **options)
    return port


def lease_block(size: int, *, band: tuple[int, int] = BAND, **options: Any) -> int:
    """The first of `size` consecutive leased ports, from a random point of the band.

    For tests that need neighbours (a search from base walks base, base+1...).
    """
    low, high = band
    first = random.randint(low, high - size)
    for base in itertools.chain(range(first, high - size, size), range(low, first, size)):
        with contextlib.suppress(NoFreePortError):
            lease_ports(size, near=base, port_range=(base, base + size - 1), **options)
            return base
    raise AssertionError(f"no {size} consecutive free ports in {low}-{high}")


def free_loopback_port() -> int:
    """A port nothing listens on: leased, so nothing else binds it until the test ends."""
    return lease_port()


@contextlib.contextmanager
def listening(
    host: str = LOOPBACK4, kind: int = socket.SOCK_STREAM, port: int = 0
) -> Iterator[socket.socket]:
    """A real listening TCP (or bound UDP) socket on loopback; port 0: a leased port.

    TCP binds with SO_REUSEADDR, as servers do, so a listener conflicts with every other
    bind on its port while a TIME_WAIT left on it by an earlier test does not stop it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            # As servers bind, and as the allocator counts a port free: a connection of an
            # earlier test may sit in TIME_WAIT there. (Never for UDP: two UDP sockets with it
            # may share a port on Linux.)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port or lease_port()))
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def bound_without_reuse(host: str = LOOPBACK4) -> Iterator[socket.socket]:
    """A TCP socket on a leased port, bound without SO_REUSEADDR and not listening: what a
    process that never listens leaves, and what every bind probe then fails on.

    Such a bind cannot share a port with an earlier test's TIME_WAIT (the allocator counts
    that port free): then the next leased port is tried.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, lease_port()))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        with sock:
            yield sock
        return
    raise AssertionError("20 leased ports in a row had a TIME_WAIT on them")


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# -- the exact socket --------------------------------------------------------------------------


class Endpoint(NamedTuple):
    """A socket as portinspect names it: what `list --json` rows and Listeners carry."""

    proto: str  # "tcp" or "udp"
    family: str  # "ipv4" or "ipv6"
    address: str
    port: int


def endpoint_of(sock: socket.socket) -> Endpoint:
    address, port = sock.getsockname()[:2]
    return Endpoint(
        "udp" if sock.type == socket.SOCK_DGRAM else "tcp",
        "ipv6" if sock.family == socket.AF_INET6 else "ipv4",
        address,
        port,
    )


def endpoint(port: int, host: str = LOOPBACK4, proto: str = "tcp") -> Endpoint:
    return Endpoint(proto, "ipv6" if ":" in host else "ipv4", host, port)


def _endpoint_of_row(row: Any) -> Endpoint:
    """A JSON row (dict) or a Listener/Socket object, as an Endpoint."""
    if isinstance(row, dict):
        return Endpoint(row["proto"], row["family"], row["address"], row["port"])
    return Endpoint(str(row.proto.value), str(row.family.value), row.address, row.port)


def same_socket(rows: Iterable[Any], where: socket.socket | Endpoint) -> list[Any]:
    """The rows (JSON dicts, Listeners or Sockets) that are this exact socket: protocol,
    family, address and port. A test then asserts the pid of what it found."""
    wanted = endpoint_of(where) if isinstance(where, socket.socket) else where
    return [row for row in rows if _endpoint_of_row(row) == wanted]


# -- waiting -----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll a condition (no fixed sleeps in tests); fail with a message on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


# -- the CLI -----------------------------------------------------------------------------------


class Invoked(NamedTuple):
    code: int
    out: str
    err: str


def invoke(*args: str, input: str | None = None) -> Invoked:
    """The CLI in this process, through typer's CliRunner: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from portinspect.cli import app

    result = CliRunner().invoke(app, list(args), input=input)
    return Invoked(result.exit_code, result.stdout, result.stderr)


def run_cli(*args: str, timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (the real entry point users type)."""
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


# A shell without job control (a CI script's `make test &`, nohup) starts its background jobs
# with SIGINT ignored, every child inherits that, and Python then never installs the handler
# that raises KeyboardInterrupt. A test about Ctrl-C gives its child the default back first;
# exec keeps the pid, so the child is the very process the test signals.
_SIGINT_DEFAULT = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def with_default_sigint(argv: list[str]) -> list[str]:
    """argv, run with SIGINT's default disposition whatever this test run inherited."""
    return [sys.executable, "-I", "-S", "-c", _SIGINT_DEFAULT, *argv]


# -- another user ------------------------------------------------------------------------------


@functools.cache
def _preloaded() -> None:
    """Every module of portinspect and of the libraries its commands load lazily (typer's
    parameter machinery, click's, tabulate, psutil), imported in this process.

    A child that dropped to `nobody` may not read the venv (a checkout under a private home
    or `mktemp -d`): what it imports lazily then fails, or not, depending on which tests this
    worker happened to run before. `__main__` modules (they run a CLI) and test packages are
    left out.
    """
    import importlib
    import pkgutil

    for top in ("portinspect", "typer", "click", "tabulate", "psutil"):
        with contextlib.suppress(ImportError):
            package = importlib.import_module(top)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{top}."):
            if info.name.endswith("__main__") or ".tests" in info.name:
                continue
            with contextlib.suppress(Exception):  # a module for another OS
                importlib.import_module(info.name)


def run_as_nobody(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run fn() in a forked child that has dropped to the `nobody` user; return its result.

    Everything fn needs must already be imported: after setuid the child may not be
    allowed into the directory the interpreter and the venv live in (a checkout under a
    private home or `mktemp -d`). portinspect, typer, click, tabulate and psutil are imported
    whole first; fn's other needs are the test's to import. The fork needs no exec, so it
    works wherever the checkout is.
    """
    _preloaded()
    uid, gid = nobody()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_end)
            _close_inherited_sockets()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            payload = {"ok": fn()}
        except BaseException:
            payload = {"error": traceback.format_exc()}
            code = 1
        with os.fdopen(write_end, "w") as out:
            json.dump(payload, out, default=str)
        os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as inp:
            data = inp.read()
    finally:
        _reap(pid, timeout)
    result = json.loads(data or '{"error": "child wrote nothing"}')
    if "error" in result:
        raise AssertionError(f"unprivileged child failed:\n{result['error']}")
    return result["ok"]


def _close_inherited_sockets() -> None:
    """A forked child inherits the parent's sockets and would hold them itself."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                os.close(int(name))


def _reap(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@contextlib.contextmanager
def held_by_nobody(host: str = LOOPBACK4, kind: int = socket.SOCK_STREAM) -> Iterator[int]:
    """A socket on a leased port, held by a forked child running as `nobody`; yields the port."""
    uid, gid = nobody()
    port = lease_port()
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, then bind and hold until told to stop
        try:
            os.close(ready_r)
            os.close(stop_w)  # else our own copy would keep the "stop" pipe from ever closing
            _close_inherited_sockets()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with listening(host, kind, port) as sock:
                os.write(ready_w, str(port_of(sock)).encode())
                os.read(stop_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    try:
        bound = int(os.read(ready_r, 16) or b"0")
        assert bound == port, "the unprivileged holder failed to bind"
        yield port
    finally:
        os.close(stop_w)  # EOF releases the child
        os.close(ready_r)
        _reap(pid, 10)


# -- namespaces and forked holders -------------------------------------------------------------


def run_in_namespace(unshare: list[str], script: str, *args: str, timeout: float = 120.0) -> Any:
    """Run a Python script under `unshare` (private pid, mount or network namespaces, so the
    test can remount /proc or bind wildcards without touching the host) and return the JSON
    it prints. Skips, naming the reason, where this machine refuses namespaces."""
    import pytest

    proc = subprocess.run(
        ["unshare", *unshare, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 and "unshare" in proc.stderr:
        pytest.skip(f"no private namespace here ({' '.join(unshare)}): {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@contextlib.contextmanager
def forked_holders(count: int = 1) -> Iterator[list[int]]:
    """`count` forked children that hold every fd we hold (sockets included) until the block ends.

    A child shares the sockets from the moment fork() returns (the fd table is copied before
    it runs), so there is nothing to wait for. Each is killed and reaped by pid: unreaped
    until waitpid, its pid cannot have been reused meanwhile.
    """
    pids: list[int] = []
    read_end, write_end = os.pipe()
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:  # touch nothing of pytest's, just wait for the parent to go away
                try:
                    os.close(write_end)
                    os.read(read_end, 1)
                finally:
                    os._exit(0)
            pids.append(pid)
        yield pids
    finally:
        os.close(write_end)
        os.close(read_end)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
