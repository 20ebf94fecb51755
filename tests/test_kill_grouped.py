"""`kill` of many ports one app serves: one plan with the ports counted, a few lines of
outcome, and JSON that still has every port. A real process holds 30 leased ports."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from portinspect import scan
from portinspect.pytest_plugin import FreePortFactory
from portinspect.render.common import spans

from .support import run_cli, wait_until

COUNT = 30
HOLDER = (
    "import socket, sys\n"
    "held = []\n"
    "for port in sys.argv[1:]:\n"
    "    s = socket.socket()\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('127.0.0.1', int(port)))\n"
    "    s.listen()\n"
    "    held.append(s)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def ports(free_port_factory: FreePortFactory) -> list[int]:
    start = random.randrange(30000, 32000)  # away from the ports other tests crowd
    return sorted(free_port_factory(near=start) for _ in range(COUNT))


@pytest.fixture
def holder(ports: list[int]) -> Iterator[subprocess.Popen[str]]:
    """One process listening on every port; killed by pid, whatever the test did to it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, ports)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        wait_until(lambda: len(scan(ports)) == COUNT, what=f"{COUNT} listeners")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_dry_run_shows_one_plan_for_the_ports_of_one_app(
    ports: list[int], holder: subprocess.Popen[str]
) -> None:
    proc = run_cli("kill", *map(str, ports), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ports ") and f"({COUNT} ports)" in lines[0]
    assert sum(line.startswith(("port ", "ports ")) for line in lines) == 1  # one plan
    [row] = [line for line in lines if line.split()[:1] == [str(holder.pid)]]  # once
    assert "yes" in row.split()  # it holds the ports
    assert len(lines) < 10
    doc = json.loads(run_cli("kill", *map(str, ports), "--dry-run", "--json").stdout)
    assert [p["port"] for p in doc["ports"]] == ports  # JSON: every port
    assert {p["status"] for p in doc["ports"]} == {"dry-run"}
    assert holder.poll() is None  # nothing was signalled


def test_the_outcome_of_many_ports_freed_at_once_is_a_few_lines(
    ports: list[int], holder: subprocess.Popen[str]
) -> None:
    proc = run_cli("kill", *map(str, ports))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"port {ports[0]} freed in ")
    assert lines[1] == (
        f"ports {spans(ports[1:])} ({COUNT - 1} ports) are free too: they closed while "
        "other ports were handled"
    )
    assert len(lines) == 2
    assert holder.wait(timeout=10) == -15  # the one SIGTERM, to the one holder
