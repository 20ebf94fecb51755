"""pytest fixtures for server ports, registered through the `pytest11` entry point.

    def test_server(free_port):                 # an int, leased for this test
        start_server(port=free_port)

    def test_cluster(free_port_factory):        # as many as the test needs, all distinct
        ports = [free_port_factory(near=9000) for _ in range(3)]

Each port is leased like `portinspect free` leases it, so parallel workers (pytest-xdist,
several CI jobs of one user) never get the same one. A fixture's lease lasts until its test
ends, or until the port has a listener, or until this pytest process exits; FIXTURE_LEASE_SECONDS
is only the backstop for a run that hangs.

Every pytest run in an environment with portinspect installed imports this module, so it
loads freeport only when a fixture is used. (Importing it still runs portinspect/__init__.py,
which imports the scanner and psutil: 70-140 ms per pytest start, measured.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Long, because the lease is given back at teardown anyway and a slow test must keep its port
# until it binds it; short enough that a hung run does not keep ports for hours.
FIXTURE_LEASE_SECONDS = 600.0


class FreePortFactory:
    """Call it for a new free port: `factory()`, `factory(near=9000)`, `factory(udp=True)`.

    Keyword options are those of portinspect.find_free_ports (port_range, udp, tcp,
    allow_ephemeral...); count and the lease settings are the factory's own.
    """

    def __init__(self) -> None:
        self.ports: list[int] = []
        self._directories: list[Path] = []

    def __call__(self, near: int | None = None, **options: Any) -> int:
        from portinspect.freeport import find_free_ports, lease_directory

        # Remembered now: the test may change PORTINSPECT_LEASE_DIR before teardown.
        directory = lease_directory()
        [port] = find_free_ports(
            near,
            1,
            lease=True,
            lease_seconds=FIXTURE_LEASE_SECONDS,
            release_on_exit=True,
            **options,
        )
        self.ports.append(port)
        self._directories.append(directory)
        return port

    def release(self) -> None:
        """Give back every port this factory handed out (their leases, not any socket)."""
        from portinspect.freeport import LeaseStore

        for directory, port in zip(self._directories, self.ports, strict=True):
            LeaseStore(directory).release_ports([port], os.getpid())
        self.ports.clear()
        self._directories.clear()


@pytest.fixture
def free_port_factory() -> Iterator[FreePortFactory]:
    """A callable returning a new free port on each call, all distinct; leases end with the test."""
    factory = FreePortFactory()
    try:
        yield factory
    finally:
        factory.release()


@pytest.fixture
def free_port(free_port_factory: FreePortFactory) -> int:
    """A free TCP port for this test, leased until the test ends or the port is bound."""
    return free_port_factory()


__all__ = ["FIXTURE_LEASE_SECONDS", "FreePortFactory", "free_port", "free_port_factory"]
