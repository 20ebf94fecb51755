"""scan() against real sockets on loopback, through every backend this machine has."""

from __future__ import annotations

import os
import socket
import sys

import psutil
import pytest

import portinspect
from portinspect import api, scan, scanner
from portinspect.errors import UsageError
from portinspect.models import Family, PortRange, Proto

from .support import (
    LOOPBACK4,
    LOOPBACK6,
    Endpoint,
    endpoint,
    endpoint_of,
    forked_holders,
    has_ipv6,
    held_by_nobody,
    is_root,
    lease_port,
    listening,
    port_of,
    run_as_nobody,
    same_socket,
)

BACKENDS = ["psutil"]
if sys.platform.startswith("linux"):
    BACKENDS.append("linux")

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")
needs_root = pytest.mark.skipif(not is_root(), reason="needs root to drop to another user")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "linux":
        pytest.importorskip("portinspect._linux")
    return str(request.param)


def _only(listeners: list[portinspect.Listener], where: Endpoint) -> portinspect.Listener:
    """The listener that is this exact socket (one, and only one)."""
    [found] = same_socket(listeners, where)
    return found


def test_tcp_ipv4_listener_with_its_owner(backend: str) -> None:
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        li = _only(scan(backend=backend), endpoint_of(sock))
    me = psutil.Process()
    assert (li.proto, li.family, li.address) == (Proto.TCP, Family.IPV4, LOOPBACK4)
    assert li.pid == os.getpid()
    assert li.user == me.username()
    assert li.cmdline == tuple(me.cmdline())
    assert li.cwd == os.getcwd()
    assert li.exposed is False
    low, high = scanner.ephemeral_range()
    assert li.ephemeral is (low <= port <= high)
    assert li.range is (PortRange.DYNAMIC if port >= 49152 else PortRange.REGISTERED)


def test_a_port_in_the_ephemeral_range_is_marked_so(backend: str) -> None:
    low, high = scanner.ephemeral_range()
    port = lease_port(near=(low + high) // 2, port_range=(low, high), allow_ephemeral=True)
    with listening(LOOPBACK4, port=port) as sock:
        li = _only(scan(port, backend=backend), endpoint_of(sock))
    assert li.ephemeral is True and li.pid == os.getpid()


@needs_ipv6
def test_tcp_ipv6_listener(backend: str) -> None:
    with listening(LOOPBACK6) as sock:
        port = port_of(sock)
        li = _only(scan(port, backend=backend), endpoint_of(sock))
    assert (li.family, li.address, li.pid) == (Family.IPV6, LOOPBACK6, os.getpid())
    assert li.endpoint == f"[::1]:{port}"


@needs_ipv6
def test_same_port_on_both_families_is_two_listeners(backend: str) -> None:
    # The port is leased for TCP and UDP on every address: ::1 is ours too.
    with listening(LOOPBACK4) as v4, listening(LOOPBACK6, port=port_of(v4)) as v6:
        found = scan(port_of(v4), backend=backend)
        four, six = endpoint_of(v4), endpoint_of(v6)
    assert _only(found, four).pid == _only(found, six).pid == os.getpid()


def test_udp_bound_socket_is_listed_as_udp(backend: str) -> None:
    with listening(LOOPBACK4, socket.SOCK_DGRAM) as sock:
        port = port_of(sock)
        found = scan(port, backend=backend)
        li = _only(found, endpoint_of(sock))
    assert li.proto is Proto.UDP and li.pid == os.getpid()
    assert same_socket(found, endpoint(port, LOOPBACK4, "tcp")) == []


def test_connected_udp_socket_is_not_a_listener(backend: str) -> None:
    with listening(LOOPBACK4, socket.SOCK_DGRAM) as server:
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Bound to a leased port of its own first, so that port is ours to look at.
            client.bind((LOOPBACK4, lease_port()))
            client.connect((LOOPBACK4, port_of(server)))
            found = scan(port_of(client), proto="udp", backend=backend)
            mine = endpoint_of(client)
        finally:
            client.close()
    assert same_socket(found, mine) == []


def test_clients_and_accepted_connections_are_not_listeners(backend: str) -> None:
    with listening(LOOPBACK4) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        client.bind((LOOPBACK4, lease_port()))  # a port of ours to look at
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        try:
            assert same_socket(scan(port_of(client), backend=backend), endpoint_of(client)) == []
            # The server's port lists the listener once, not the accepted socket (which
            # has the same local address, family, protocol and port).
            found = scan(port_of(server), proto="tcp", backend=backend)
            assert [li.pid for li in same_socket(found, endpoint_of(server))] == [os.getpid()]
        finally:
            accepted.close()
            client.close()


def test_bound_but_not_listening_tcp_is_not_listed(backend: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as listening() does
        sock.bind((LOOPBACK4, lease_port()))
        assert same_socket(scan(port_of(sock), backend=backend), endpoint_of(sock)) == []


def test_socket_shared_with_a_forked_child_has_both_holders(backend: str) -> None:
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        with forked_holders() as [child]:
            li = _only(scan(port, backend=backend), endpoint_of(sock))
    assert {h.process.pid for h in li.holders} == {os.getpid(), child}
    # The parent is this very process, portinspect's own lineage, which the app model never
    # takes in: the fork is the app, and our copy is an inherited one.
    assert li.pid == child and li.app_pid == child
    assert li.roles[os.getpid()] == "inherited"


def test_port_filter_returns_only_those_ports(backend: str) -> None:
    with listening() as a, listening() as b, listening() as c:
        wanted = {port_of(a), port_of(c)}
        found = scan(wanted, backend=backend)
        assert {li.port for li in found} <= wanted
        assert _only(found, endpoint_of(a)).pid == _only(found, endpoint_of(c)).pid == os.getpid()
        assert same_socket(found, endpoint_of(b)) == []


def test_exposure_and_service_are_classified(backend: str) -> None:
    with listening(LOOPBACK4) as sock:
        li = _only(scan(port_of(sock), backend=backend), endpoint_of(sock))
    assert li.exposed is False
    assert li.to_dict()["exposed"] is False


@pytest.mark.parametrize("bad", [0, 65536, -1, "8000", 3.5, True])
def test_scan_refuses_bad_ports(bad: object) -> None:
    with pytest.raises(UsageError):
        scan(bad)  # type: ignore[arg-type]


def test_scan_refuses_unknown_protocols() -> None:
    with pytest.raises(UsageError):
        scan(proto="sctp")


@needs_root
@pytest.mark.unprivileged
def test_unprivileged_scan_lists_roots_socket_with_owner_hidden() -> None:
    pytest.importorskip("portinspect._linux")
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)

        def look() -> dict[str, object]:
            result = api.scan_result(port)
            rows = [li.to_dict() for li in result.listeners]
            return {"hidden": result.owners_hidden, "rows": rows}

        # Once as root first: portinspect imports and reads some things on first use (the
        # ephemeral range, codecs), and `nobody` may not read the interpreter's directory.
        look()
        seen = run_as_nobody(look)
    assert seen["hidden"] is True
    [row] = same_socket(seen["rows"], endpoint(port))
    assert row["pid"] is None and row["process"] is None
    assert row["uid"] == 0
    assert row["user"] == "root"


@needs_root
@pytest.mark.unprivileged
def test_root_sees_a_socket_held_by_another_user(backend: str) -> None:
    with held_by_nobody() as port:
        li = _only(scan(port, backend=backend), endpoint(port))
    assert li.user == "nobody"
    assert li.pid is not None


def test_macos_without_root_falls_back_to_own_processes_simulated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated macOS: net_connections() raises AccessDenied without root (psutil#1219).

    The psutil backend must fall back to asking each process, still find our own real
    listener, and report that other owners are hidden.
    """
    from portinspect import _psutil

    def denied(kind: str = "inet") -> list[object]:
        raise psutil.AccessDenied(pid=None)

    monkeypatch.setattr(_psutil.psutil, "net_connections", denied)
    monkeypatch.setattr(_psutil.sys, "platform", "darwin")
    with listening(LOOPBACK4) as sock:
        result = api.scan_result(port_of(sock), backend="psutil")
        mine = endpoint_of(sock)
    assert result.owners_hidden is True
    assert _only(result.listeners, mine).pid == os.getpid()
