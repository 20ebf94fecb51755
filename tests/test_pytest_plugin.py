"""The `free_port` and `free_port_factory` fixtures, as a user's test suite sees them.

pytester runs a small suite in a subprocess, so the plugin arrives the way users get it:
through the `pytest11` entry point of the installed package, not through this repository. It
leases in the user's shared lease directory, beside this suite's own leases and any other
suite's, as a user's suite would: only the leases its own process took are its business.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portinspect import freeport

from .support import SHARED_LEASES, give_back, lease_block

pytest_plugins = ["pytester"]

USER_TESTS = """
import os
import socket
from pathlib import Path

from portinspect.freeport import LeaseStore

LEASES = Path(os.environ["PORTINSPECT_LEASE_DIR"])


def leased() -> set[int]:
    \"\"\"The ports this pytest process holds a lease on.\"\"\"
    ports = {int(p.name.split(".")[0]) for p in LEASES.glob("*.lease")}
    with LeaseStore(LEASES) as store:
        return {port for port in ports if (lease := store.read(port)) and lease.pid == os.getpid()}


def test_free_port_is_a_leased_port(free_port):
    assert isinstance(free_port, int) and 1024 <= free_port <= 65535
    assert free_port in leased()


def test_a_server_can_bind_its_port(free_port_factory):
    port = free_port_factory(near=%(near)d)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_the_port_is_still_leased_after_the_server_stops(free_port):
    from portinspect import find_free_ports
    from portinspect.freeport import release_leases

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", free_port))
        s.listen()
        other = find_free_ports(free_port)  # a search while the port is bound sweeps leases
        release_leases(other)
    assert free_port in leased() and free_port not in other


def test_factory_gives_distinct_ports(free_port_factory):
    ports = [free_port_factory() for _ in range(5)]
    assert len(set(ports)) == 5
    assert set(ports) <= leased()


def test_factory_takes_find_free_ports_options(free_port_factory):
    port = free_port_factory(near=%(near)d, port_range=(%(near)d, %(near)d + 200), udp=True)
    assert %(near)d <= port <= %(near)d + 200


def test_leases_of_earlier_tests_were_given_back():
    assert leased() == set()
"""


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's lease directory, named explicitly so the subprocess uses the same one."""
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(SHARED_LEASES))
    return SHARED_LEASES


def _leases_of(directory: Path, pid: int) -> list[int]:
    ports = [int(p.name.split(".")[0]) for p in directory.glob("*.lease")]
    with freeport.LeaseStore(directory) as store:
        return [port for port in ports if (lease := store.read(port)) and lease.pid == pid]


def test_fixtures_through_the_entry_point(pytester: pytest.Pytester, shared: Path) -> None:
    # Where the user's suite asks for ports near: a stretch found free (benchmarks may hold
    # thousands of ports), handed over for the user's fixtures to lease there themselves.
    near = lease_block(30, band=(15000, 29999))
    give_back(range(near, near + 30))
    pytester.makepyfile(test_user=USER_TESTS % {"near": near})
    pytester.makeconftest(
        "import os, pathlib\n"
        "pathlib.Path('pid').write_text(str(os.getpid()))\n"  # whose leases to look for
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=6)
    pid = int((pytester.path / "pid").read_text())
    assert _leases_of(shared, pid) == []


def test_factory_in_process(shared: Path) -> None:
    """The factory object itself: ports handed out, then given back on release()."""
    from portinspect.pytest_plugin import FreePortFactory

    factory = FreePortFactory()
    ports = [factory(), factory()]
    assert ports[0] != ports[1]
    assert set(ports) <= set(_leases_of(shared, os.getpid()))
    factory.release()
    assert not set(ports) & set(_leases_of(shared, os.getpid())) and factory.ports == []
