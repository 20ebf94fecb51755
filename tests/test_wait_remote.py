"""`wait` for another host: a server in a network namespace the test creates, reached over a
veth pair whose addresses the test assigns (tests/netns.py), so this machine's socket table
cannot see it and only the probe path can. Nothing outside the two namespaces is contacted.

Each test reads the waiter's stderr line by line: "waiting ...", then the probe's first
failure ("connection refused", "HTTP 503", "cannot resolve ..."), which proves a failed
attempt happened before the test lets the server come up; then the wait must succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portinspect.errors import ExitStatus

from .netns import FLAG_HTTP_SERVER, TCP_SERVER, NetnsPair, netns_pair
from .support import SCRIPT

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to create network namespaces and a veth pair",
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NetnsPair]:
    with netns_pair(tmp_path) as made:
        yield made


class Waiter:
    """`portinspect wait ...` running in the client namespace."""

    def __init__(self, pair: NetnsPair, *args: str) -> None:
        self.proc = subprocess.Popen(
            pair.client(str(SCRIPT), "wait", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.readline()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def waiters() -> Iterator[list[Waiter]]:
    started: list[Waiter] = []
    try:
        yield started
    finally:
        for waiter in started:
            waiter.stop()


def test_a_remote_server_that_starts_late(
    pair: NetnsPair, free_port: int, waiters: list[Waiter]
) -> None:
    target = f"{pair.remote_ip}:{free_port}"
    waiter = Waiter(pair, target, "--timeout", "60", "--json")
    waiters.append(waiter)
    assert waiter.line().startswith(f"portinspect: waiting up to 60s for {target}")
    assert waiter.line() == f"portinspect: {target}: not ready yet: connection refused\n"
    pair.start_remote(TCP_SERVER, pair.remote_ip, str(free_port))
    code, out, _ = waiter.finish()
    assert code == 0
    [report] = json.loads(out)["targets"]
    assert report["via"] == ["connect"] and report["address"] == pair.remote_ip
    assert report["attempts"] >= 2 and report["error"] is None
    # The client's own socket table never saw that listener: only the probe could.
    seen = subprocess.run(
        pair.client(str(SCRIPT), "list", "--port", str(free_port)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert seen.returncode == ExitStatus.NOT_LISTENING, seen.stdout + seen.stderr


def test_a_remote_http_target_waits_through_503_until_200(
    pair: NetnsPair, free_port: int, tmp_path: Path, waiters: list[Waiter]
) -> None:
    flag = tmp_path / "healthy"
    server = pair.start_remote(FLAG_HTTP_SERVER, pair.remote_ip, str(free_port), str(flag))
    url = f"http://{pair.remote_ip}:{free_port}/health"
    waiter = Waiter(pair, url, "--timeout", "60", "--json")
    waiters.append(waiter)
    assert "waiting" in waiter.line()
    assert waiter.line() == f"portinspect: {url}: not ready yet: HTTP 503\n"
    assert server.stdout is not None and server.stdout.readline() == "503 /health\n"
    flag.touch()
    code, out, _ = waiter.finish()
    assert code == 0
    [report] = json.loads(out)["targets"]
    assert report["via"] == ["http"] and report["http_status"] == 200
    assert report["address"] == pair.remote_ip and report["attempts"] >= 2


def test_an_unknown_name_is_retried_until_the_deadline(pair: NetnsPair, free_port: int) -> None:
    waiter = Waiter(pair, f"nothing.invalid:{free_port}", "--timeout", "1.5", "--json")
    try:
        code, out, err = waiter.finish()
    finally:
        waiter.stop()
    assert code == ExitStatus.TIMEOUT
    doc = json.loads(out)
    [report] = doc["targets"]
    assert report["via"] == ["resolve"] and report["attempts"] >= 2
    assert report["error"].startswith("cannot resolve nothing.invalid: ")
    assert err.splitlines()[-1].startswith(
        f"portinspect: timed out after 1.5s: nothing.invalid:{free_port}: cannot resolve"
    )


def test_a_name_that_resolves_late_then_a_command_runs(
    pair: NetnsPair, free_port: int, waiters: list[Waiter]
) -> None:
    # The compose shape: `wait db:5432 -- pytest` before the service's name exists.
    name = "db.late.invalid"
    check = (
        "import socket, sys\n"
        f"socket.create_connection(({name!r}, {free_port}), timeout=5).close()\n"
        "print('connected')\n"
        "sys.exit(3)\n"
    )
    waiter = Waiter(
        pair, f"{name}:{free_port}", "--timeout", "60", "--", sys.executable, "-c", check
    )
    waiters.append(waiter)
    assert "waiting" in waiter.line()
    assert waiter.line().startswith(
        f"portinspect: {name}:{free_port}: not ready yet: cannot resolve"
    )
    pair.start_remote(TCP_SERVER, pair.remote_ip, str(free_port))
    with pair.hosts.open("a") as hosts:  # in place: the client's bind mount keeps the inode
        hosts.write(f"{pair.remote_ip} {name}\n")
    code, out, err = waiter.finish()
    assert code == 3, err
    assert out == "connected\n"
    assert f"{name}:{free_port} ready after" in err


def test_a_name_of_this_machine_is_decided_by_the_socket_table(
    pair: NetnsPair, free_port: int
) -> None:
    # self.invalid is ::1 in the client's hosts file; its server listens on 127.0.0.1 only.
    with pair.hosts.open("a") as hosts:
        hosts.write("::1 self.invalid\n")
    pair.start_client(TCP_SERVER, "127.0.0.1", str(free_port))
    target = f"self.invalid:{free_port}"
    late = Waiter(pair, target, "--timeout", "0.5", "--json")
    try:
        code, out, _ = late.finish()
    finally:
        late.stop()
    assert code == ExitStatus.TIMEOUT
    [report] = json.loads(out)["targets"]
    assert report["via"] == ["resolve", "socket-table"]  # resolved to this machine: no probe
    assert report["error"] == "not listening on ::1 (only on 127.0.0.1)"

    pair.start_client(TCP_SERVER, "::1", str(free_port))
    ready = Waiter(pair, target, "--timeout", "30", "--json")
    try:
        code, out, _ = ready.finish()
    finally:
        ready.stop()
    assert code == 0
    [report] = json.loads(out)["targets"]
    assert report["via"] == ["resolve", "socket-table"] and report["address"] == "::1"
