"""`wait` and wait_for() against real servers and sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from portinspect import wait_for
from portinspect.errors import ExitStatus, UsageError, WaitTimeoutError

from .support import (
    LOOPBACK4,
    LOOPBACK6,
    SCRIPT,
    has_ipv6,
    invoke,
    lease_port,
    listening,
    port_of,
    wait_until,
    with_default_sigint,
)


def _http_server(port: int, bind: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", bind],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "bind",
    [
        LOOPBACK4,
        pytest.param(
            LOOPBACK6, marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
        ),
    ],
)
def test_wait_returns_once_a_real_server_listens(bind: str) -> None:
    port = lease_port()
    waiter = subprocess.Popen(
        [str(SCRIPT), "wait", str(port), "--timeout", "30", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        assert waiter.stderr is not None
        assert "waiting" in waiter.stderr.readline()  # it is polling now
        server = _http_server(port, bind)
        out, _ = waiter.communicate(timeout=30)
    finally:
        _stop(waiter)  # type: ignore[arg-type]
        if server is not None:
            _stop(server)
    assert waiter.returncode == 0
    doc = json.loads(out)
    assert doc["ports"] == [port] and doc["condition"] == "listening"
    assert doc["timed_out"] is False and doc["elapsed"] >= 0


def test_wait_free_returns_once_the_server_is_gone() -> None:
    port = lease_port()
    server = _http_server(port, LOOPBACK4)
    try:
        wait_for(port, timeout=20)
        waiter = subprocess.Popen(
            [str(SCRIPT), "wait", str(port), "--free", "--timeout", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiter.stderr is not None
        assert "to be free" in waiter.stderr.readline()
        assert waiter.poll() is None  # still waiting while the server listens
        server.terminate()
        out, _ = waiter.communicate(timeout=30)
    finally:
        _stop(server)
    assert waiter.returncode == 0
    assert f"port {port} free" in out


def test_wait_times_out_with_124_and_names_the_pending_port() -> None:
    port = lease_port()
    code, out, err = invoke("wait", str(port), "--timeout", "0.2", "--json")
    assert code == ExitStatus.TIMEOUT == 124
    doc = json.loads(out)
    assert doc["timed_out"] is True and doc["pending"] == [port]
    assert doc["ok"] is False and doc["exit_code"] == 124
    assert f"port {port} not listening" in err


def test_wait_several_ports_needs_all_of_them() -> None:
    with listening(LOOPBACK4) as sock:
        held, missing = port_of(sock), lease_port()
        with pytest.raises(WaitTimeoutError) as info:
            wait_for([held, missing], timeout=0.2)
        assert info.value.pending == (missing,)
        assert wait_for([held], timeout=1).ports == (held,)


def test_wait_free_on_a_free_port_returns_at_once() -> None:
    result = wait_for(lease_port(), free=True, timeout=0)
    assert result.polls == 1


def test_wait_sees_udp_only_when_asked() -> None:
    import socket

    with listening(LOOPBACK4, socket.SOCK_DGRAM) as sock:
        port = port_of(sock)
        assert wait_for(port, proto="udp", timeout=1).ports == (port,)
        with pytest.raises(WaitTimeoutError):
            wait_for(port, proto="tcp", timeout=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"interval": 0}, "interval"),
        ({"proto": "sctp"}, "protocol"),
    ],
)
def test_wait_for_refuses_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        wait_for(8000, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ["wait", "8000", "--timeout", "-1"],
        ["wait", "8000", "--timeout", "abc"],
        ["wait", "8000", "--timeout", "nan"],
        ["wait", "8000", "--interval", "0"],
        ["wait", "0"],
        ["wait"],
    ],
)
def test_wait_bad_input_exit_2_one_line(args: list[str]) -> None:
    # Refused while parsing: port 8000 is never looked at.
    code, out, err = invoke(*args)
    assert code == ExitStatus.USAGE, err
    assert err.count("\n") == 1
    assert out == ""


def test_ctrl_c_ends_wait_with_130_and_no_traceback() -> None:
    port = lease_port()
    waiter = subprocess.Popen(
        with_default_sigint([str(SCRIPT), "wait", str(port), "--timeout", "60"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None
        assert "waiting" in waiter.stderr.readline()
        waiter.send_signal(signal.SIGINT)
        # Within its 60 s timeout: it ended on the signal, not by timing out (exit 124).
        _, err = waiter.communicate(timeout=50)
    finally:
        _stop(waiter)  # type: ignore[arg-type]
    assert waiter.returncode == ExitStatus.INTERRUPTED == 130
    assert "Traceback" not in err
    assert "interrupted" in err


def test_wait_quiet_says_nothing_on_stderr() -> None:
    with listening(LOOPBACK4) as sock:
        code, out, err = invoke("wait", str(port_of(sock)), "--quiet")
    assert code == 0
    assert err == "" and out == ""


def test_wait_until_helper_is_not_used_for_sleeping() -> None:
    # wait_until raises with a message rather than hanging when a condition never holds.
    with pytest.raises(AssertionError, match="timed out"):
        wait_until(lambda: False, timeout=0.05, what="nothing")
