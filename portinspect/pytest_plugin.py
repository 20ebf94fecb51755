"""pytest fixtures for server ports and servers, registered through the `pytest11` entry point.

    def test_server(free_port):                 # an int, leased for this test
        start_server(port=free_port)

    def test_cluster(free_port_factory):        # as many as the test needs, all distinct
        ports = [free_port_factory(near=9000) for _ in range(3)]

    # conftest.py: a server for the whole session (or scope="module"/"function")
    api = server_fixture("uvicorn main:app --port {port}", http="/health", scope="session")

    def test_items(api):                        # a running portinspect.runner.Server
        requests.get(api.url + "/items")

    def test_adhoc(server_factory):             # started now, torn down after the test
        web = server_factory("python -m http.server {port} --bind 127.0.0.1")

Each port is leased like `portinspect free` leases it, so parallel workers (pytest-xdist,
several CI jobs of one user) never get the same one. A fixture's lease lasts until its test
ends, or until the port has a listener, or until this pytest process exits; FIXTURE_LEASE_SECONDS
is only the backstop for a run that hangs.

Servers run under portinspect.serve(): a leased port (so xdist workers, each with its own
session fixtures, never collide), torn down when their scope ends, also when a test fails or
raises; if pytest itself is killed (pytest-timeout's thread method exits the process), each
server's keeper process notices and tears its tree down.

Every pytest run in an environment with portinspect installed imports this module, so it
loads freeport and the runner only when a fixture is used: importing it costs about 1.4 ms
(-X importtime, portinspect/__init__.py included; no psutil, no typer).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from portinspect.runner import Server

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


# --- servers -------------------------------------------------------------------------------

Scope = Literal["function", "class", "module", "package", "session"]


def server_fixture(
    command: str | Sequence[str], *, scope: Scope = "function", **options: Any
) -> Any:
    """A fixture that runs `command` for its scope and yields the running Server.

        api = server_fixture("uvicorn main:app --port {port}", http="/health", scope="session")

    Assign it in a conftest.py or test module: the fixture takes the name it is assigned to.
    options are those of portinspect.serve() (name, http, near, port, wait_timeout,
    stop_timeout, env, cwd, log, shell...). The server is torn down when the scope ends,
    whatever the tests did.
    """

    def fixture() -> Iterator[Server]:
        from portinspect.runner import serve

        with serve(command, **options) as server:
            yield server

    return pytest.fixture(scope=scope)(fixture)


class ServerFactory:
    """Call it to start a server now: `server_factory("cmd --port {port}", http="/")`; every
    one it started is torn down when the test ends (options as for portinspect.serve())."""

    def __init__(self) -> None:
        from contextlib import ExitStack

        self._stack = ExitStack()

    def __call__(self, command: str | Sequence[str], **options: Any) -> Server:
        from portinspect.runner import serve

        return self._stack.enter_context(serve(command, **options))

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Server]]:
    """Start servers inside a test; all torn down (last started first) when it ends."""
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.close()


__all__ = [
    "FIXTURE_LEASE_SECONDS",
    "FreePortFactory",
    "ServerFactory",
    "free_port",
    "free_port_factory",
    "server_factory",
    "server_fixture",
]
