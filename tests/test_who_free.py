"""`who` on a port nothing listens on: it says the port is free, and what may still make a
server's bind there fail, from real sockets the tests make and hold."""

from __future__ import annotations

import json
import os
import pwd
import random
import socket

import pytest

from portinspect.pytest_plugin import FreePortFactory

from .support import LOOPBACK4, listening, port_of, run_cli


@pytest.fixture
def free_port(free_port_factory: FreePortFactory) -> int:
    """A leased port away from 15000 up, where the suite's other tests bind and close ports
    (their TIME_WAITs would be in every answer, and a plain bind there can fail)."""
    return free_port_factory(near=random.randrange(30000, 32000))


def who(port: int) -> tuple[int, dict[str, object], str, str]:
    """(exit status, the JSON document, the text, stderr) of `who PORT`, both forms."""
    as_json = run_cli("who", str(port), "--json")
    text = run_cli("who", str(port))
    return as_json.returncode, json.loads(as_json.stdout), text.stdout, text.stderr


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def can_see_bound_sockets() -> bool:
    linux = pytest.importorskip("portinspect._linux")
    return bool(linux.can_see_bound_sockets())


def test_a_port_nothing_uses_is_free_and_a_bind_works(free_port: int) -> None:
    code, doc, text, err = who(free_port)
    assert code == 3
    assert err == f"portinspect: nothing is listening on port {free_port}\n"
    assert doc["ok"] is False and doc["port"] == free_port
    free = doc["free"]
    assert isinstance(free, dict)
    assert free["port"] == free_port and free["ephemeral"] is False
    assert free["bind_error"] is None and free["bound_user"] is None
    # Another program's connection may have used the port as its own end, nothing binds it.
    assert set(free["sockets"]) <= {"time-wait", "established", "fin-wait-2", "close-wait"}
    assert text.splitlines()[0] == f"Port {free_port}: free: nothing listens on it, TCP or UDP"
    assert "bind:      works on 127.0.0.1, 0.0.0.0, ::1 and ::" in text


def test_a_socket_bound_and_not_listening_makes_the_bind_fail(free_port: int) -> None:
    with socket.socket() as bound:  # no SO_REUSEADDR: any other bind to the port fails
        bound.bind((LOOPBACK4, free_port))
        code, doc, text, _ = who(free_port)
    assert code == 3
    free = doc["free"]
    assert isinstance(free, dict)
    assert free["bind_error"]["address"] == LOOPBACK4
    assert "EADDRINUSE" in free["bind_error"]["error"]
    assert f"bind:      fails on {LOOPBACK4} tcp: address already in use (EADDRINUSE)" in text
    if can_see_bound_sockets():  # the socket table shows it from Linux 6.8
        assert free["sockets"] == {"bound": 1}
        assert free["bound_user"] == me()
        assert f"1 TCP socket of {me()} bound to it without listening" in text


def test_time_wait_on_the_port_is_named(free_port: int) -> None:
    """The side that closes first keeps TIME_WAIT on its local port: here the client's, a
    port the kernel picked for it (from its ephemeral range, which the allocator never hands
    out: the 60 s of TIME_WAIT bother no other test). The client did not set SO_REUSEADDR,
    so even a server's bind, which sets it, fails there until the TIME_WAIT ends."""
    with listening(LOOPBACK4, port=free_port) as server:
        client = socket.create_connection((LOOPBACK4, port_of(server)))
        accepted, _ = server.accept()
        client_port = client.getsockname()[1]
        client.close()  # first: the client's side goes to TIME_WAIT
        accepted.close()
    code, doc, text, _ = who(client_port)
    assert code == 3
    free = doc["free"]
    assert isinstance(free, dict)
    assert free["sockets"].get("time-wait", 0) >= 1
    assert free["bind_error"]["address"] == LOOPBACK4
    assert "EADDRINUSE" in free["bind_error"]["error"]
    assert free["ephemeral"] is True  # the kernel picked it from its range
    assert "time-wait: " in text and "SO_REUSEADDR" in text
    assert "in the OS's ephemeral range" in text


def test_a_udp_socket_is_not_a_free_port(free_port_factory: FreePortFactory) -> None:
    port = free_port_factory(near=random.randrange(30000, 32000), udp=True)
    with listening(LOOPBACK4, socket.SOCK_DGRAM, port=port):
        code, doc, text, _ = who(port)
    assert code == 0
    assert "free" not in doc
    assert [(li["proto"], li["pid"]) for li in doc["listeners"]] == [("udp", os.getpid())]
    assert f"udp ipv4 {LOOPBACK4}:{port}" in text
