"""Helpers shared by the tests: real loopback sockets, unprivileged children, the CLI.

Tests bind only 127.0.0.1 and ::1, on ports the kernel picks at run time, and every
process they start is stopped by pid, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"
SCRIPT = Path(sys.executable).parent / "portinspect"


def has_ipv6() -> bool:
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


@contextlib.contextmanager
def listening(
    host: str = LOOPBACK4, kind: int = socket.SOCK_STREAM, port: int = 0
) -> Iterator[socket.socket]:
    """A real listening TCP (or bound UDP) socket on loopback, on a port the kernel picks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        yield sock
    finally:
        sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def free_loopback_port() -> int:
    """A port nothing listens on right now (kernel-picked, then released)."""
    with socket.socket() as s:
        s.bind((LOOPBACK4, 0))
        return int(s.getsockname()[1])


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


def run_as_nobody(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run fn() in a forked child that has dropped to the `nobody` user; return its result.

    Everything fn needs must already be imported: after setuid the child may not be
    allowed into the directory the interpreter and the venv live in.
    """
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
    """A socket held by a forked child running as `nobody`; yields the port."""
    uid, gid = nobody()
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
            with listening(host, kind) as sock:
                os.write(ready_w, str(port_of(sock)).encode())
                os.read(stop_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    try:
        port = int(os.read(ready_r, 16) or b"0")
        assert port, "the unprivileged holder failed to bind"
        yield port
    finally:
        os.close(stop_w)  # EOF releases the child
        os.close(ready_r)
        _reap(pid, 10)


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
