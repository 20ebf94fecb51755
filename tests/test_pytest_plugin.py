"""The `free_port` and `free_port_factory` fixtures, as a user's test suite sees them.

pytester runs a small suite in a subprocess, so the plugin arrives the way users get it:
through the `pytest11` entry point of the installed package, not through this repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portinspect import freeport

from .test_free import quiet_block

pytest_plugins = ["pytester"]

USER_TESTS = """
import os
import socket
from pathlib import Path

LEASES = Path(os.environ["PORTINSPECT_LEASE_DIR"])


def leased() -> set[int]:
    return {int(p.name.split(".")[0]) for p in LEASES.glob("*.lease")}


def test_free_port_is_a_leased_port(free_port):
    assert isinstance(free_port, int) and 1024 <= free_port <= 65535
    assert free_port in leased()


def test_a_server_can_bind_its_port(free_port_factory):
    port = free_port_factory(near=%(near)d)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()


def test_the_port_is_still_leased_after_the_server_stops(free_port):
    from portinspect import find_free_ports
    from portinspect.freeport import release_leases

    with socket.socket() as s:
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
    port = free_port_factory(near=%(near)d, port_range=(%(near)d, %(near)d + 20), udp=True)
    assert %(near)d <= port <= %(near)d + 20


def test_leases_of_earlier_tests_were_given_back():
    assert leased() == set()
"""


@pytest.fixture
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "leases"
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(path))
    return path


def test_fixtures_through_the_entry_point(pytester: pytest.Pytester, lease_dir: Path) -> None:
    near = quiet_block(30)  # away from other processes' port blocks (benchmarks' loadgen)
    pytester.makepyfile(test_user=USER_TESTS % {"near": near})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=6)
    assert not list(lease_dir.glob("*.lease"))


def test_factory_in_process(lease_dir: Path) -> None:
    """The factory object itself: ports handed out, then given back on release()."""
    from portinspect.pytest_plugin import FreePortFactory

    factory = FreePortFactory()
    ports = [factory(), factory()]
    assert ports[0] != ports[1]
    assert {p.name for p in lease_dir.glob("*.lease")} == {f"{p}.lease" for p in ports}
    factory.release()
    assert not list(lease_dir.glob("*.lease")) and factory.ports == []
