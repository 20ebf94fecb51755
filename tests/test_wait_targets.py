"""`wait` with targets (HOST:PORT, [V6]:PORT, tcp://, http://), TCP by default, `-- COMMAND`.

Real listeners on loopback, on ports leased from the project's allocator and held for the
whole test; wildcard binds only inside a private network namespace. Other hosts are in
tests/test_wait_remote.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portinspect import render, scanner, wait_for
from portinspect.cli import app
from portinspect.errors import ExitStatus, UsageError, WaitTimeoutError
from portinspect.inputs import parse_target, parse_targets
from portinspect.models import Family, Proto, Socket, TargetReport, WaitResult, WaitTarget
from portinspect.pytest_plugin import FreePortFactory
from portinspect.waiter import Verdict, accepts

from .netns import FLAG_HTTP_SERVER
from .support import (
    LOOPBACK4,
    LOOPBACK6,
    SCRIPT,
    has_ipv6,
    listening,
    run_cli,
    run_in_namespace,
)
from .test_hostile_input import assert_one_line_usage_error
from .test_perf_guards import _cli, _modules_after

runner = CliRunner()
needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")


@contextlib.contextmanager
def server_socket(host: str, port: int, kind: int = socket.SOCK_STREAM) -> Iterator[None]:
    """A listener (or bound UDP socket) on a leased port, bound as servers bind: with
    SO_REUSEADDR, since the allocator hands out a port whose only trace is a TIME_WAIT left
    by an earlier server (as a restarting server would find it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        yield


# --- what users type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("8000", ["8000"]),
        ("9000-9002", ["9000", "9001", "9002"]),
        ("8000,8080", ["8000", "8080"]),
        ("127.0.0.1:8000", ["127.0.0.1:8000"]),
        ("[::1]:8000", ["[::1]:8000"]),
        ("[::ffff:127.0.0.1]:8000", ["127.0.0.1:8000"]),  # the kernel's IPv4-mapped form
        ("LocalHost.:8000", ["localhost:8000"]),
        ("db:5432", ["db:5432"]),
        ("my_db.svc.cluster.local:5432", ["my_db.svc.cluster.local:5432"]),
        ("tcp://db:5432", ["db:5432"]),
        ("TCP://[::1]:80/", ["[::1]:80"]),
        ("http://127.0.0.1:8000/health", ["http://127.0.0.1:8000/health"]),
        ("http://db/health?full=1#top", ["http://db:80/health?full=1"]),
        ("https://api.example.test", ["https://api.example.test:443/"]),
    ],
)
def test_targets_as_typed(typed: str, shown: list[str]) -> None:
    assert [str(t) for t in parse_target(typed)] == shown


def test_targets_are_kept_once_in_the_order_given() -> None:
    assert parse_targets(["db:5432", "8000", "tcp://db:5432", "8000-8001"]) == (
        WaitTarget(5432, "db"),
        WaitTarget(8000),
        WaitTarget(8001),
    )


BAD_TARGETS = [
    "db",  # no port
    "::1:8000",  # IPv6 without brackets
    "[::1]",
    "[127.0.0.1]:80",
    "0.0.0.0:8000",  # "any address" is not somewhere to wait
    "[::]:8000",
    "db:0",
    "db:65536",
    "db:80-90",  # ranges only for bare ports
    ":8000",
    "300.1.1.1:80",
    "a..b:80",
    "ftp://db:21",
    "tcp://db",
    "tcp://db:1/path",
    "http://user:secret@db/",
    "http://db/a b",
    "http://db/\x1b[2J",
    "db\x00:80",
    "\u202edb:80",
    "db:８０",
]


@pytest.mark.parametrize("typed", BAD_TARGETS)
def test_bad_targets_are_one_line_and_exit_2(typed: str) -> None:
    for args in (["wait", typed, "--timeout", "0"], ["wait", "--json", typed, "--timeout", "0"]):
        result = runner.invoke(app, args)
        assert_one_line_usage_error(result.exit_code, result.stdout, result.stderr, args)


@pytest.mark.parametrize(
    "args",
    [
        ["db.invalid:5432", "--free"],  # another host has no socket table of ours
        ["http://127.0.0.1:8000/", "--free"],
        ["db.invalid:53", "--proto", "udp"],  # UDP only where the socket table shows it
        ["http://127.0.0.1:8000/", "--proto", "udp"],
        ["8000", "--forever", "--timeout", "5"],
        ["8000", "--json", "--", "true"],  # the command owns stdout
        ["8000", "--"],
        ["--", "true"],
    ],
)
def test_impossible_combinations_are_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, ["wait", *args])
    assert_one_line_usage_error(result.exit_code, result.stdout, result.stderr, ["wait", *args])


def test_library_takes_the_same_targets_and_the_old_int_calls() -> None:
    with pytest.raises(UsageError, match="no port"):
        wait_for("db", timeout=0)
    with pytest.raises(UsageError, match="no target"):
        wait_for([], timeout=0)
    with pytest.raises(UsageError, match="invalid target"):
        wait_for([8000, True], timeout=0)  # type: ignore[list-item]
    with listening(LOOPBACK4) as a, listening(LOOPBACK4) as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        assert wait_for(pa, timeout=0).ports == (pa,)
        assert wait_for({pa, pb}, timeout=0).ports == tuple(sorted((pa, pb)))
        mixed = wait_for([pa, f"127.0.0.1:{pb}", WaitTarget(pb, "localhost")], timeout=0)
        assert [str(r.target) for r in mixed.targets] == [
            str(pa),
            f"127.0.0.1:{pb}",
            f"localhost:{pb}",
        ]


# --- the socket table's verdict ----------------------------------------------------------------


def _sock(address: str, v6only: bool | None = None) -> Socket:
    family = Family.IPV6 if ":" in address else Family.IPV4
    return Socket(Proto.TCP, family, address, 8000, v6only=v6only)


@pytest.mark.parametrize(
    ("bound", "v6only", "address", "verdict"),
    [
        ("127.0.0.1", None, "127.0.0.1", Verdict.ACCEPTS),
        ("127.0.0.1", None, "::1", Verdict.REFUSES),
        ("127.0.0.1", None, "127.0.0.2", Verdict.REFUSES),  # 127/8 is not one address
        ("0.0.0.0", None, "127.0.0.1", Verdict.ACCEPTS),
        ("0.0.0.0", None, "::1", Verdict.REFUSES),
        ("::1", True, "127.0.0.1", Verdict.REFUSES),
        ("::1", True, "::1", Verdict.ACCEPTS),
        ("::", False, "127.0.0.1", Verdict.ACCEPTS),  # dual-stack wildcard
        ("::", True, "127.0.0.1", Verdict.REFUSES),  # IPV6_V6ONLY
        ("::", None, "127.0.0.1", Verdict.UNSURE),  # the OS did not say (procfs, psutil)
        ("::", True, "::1", Verdict.ACCEPTS),
        ("::ffff:127.0.0.1", False, "127.0.0.1", Verdict.ACCEPTS),  # IPv4-mapped bind
        ("::ffff:127.0.0.1", False, "::1", Verdict.REFUSES),
        ("fe80::1%eth0", True, "fe80::1", Verdict.ACCEPTS),
    ],
)
def test_which_listener_accepts_which_address(
    bound: str, v6only: bool | None, address: str, verdict: Verdict
) -> None:
    assert accepts(_sock(bound, v6only), address) is verdict


# --- loopback listeners --------------------------------------------------------------------------


@needs_ipv6
def test_a_v6_only_server_satisfies_localhost_and_the_port_but_not_127_0_0_1(
    free_port: int,
) -> None:
    with server_socket(LOOPBACK6, free_port):
        targets = [f"localhost:{free_port}", str(free_port), f"[::1]:{free_port}"]
        result = run_cli("wait", *targets, "--timeout", "10", "--json")
        assert result.returncode == 0, result.stderr
        reports = json.loads(result.stdout)["targets"]
        assert [r["target"] for r in reports] == targets
        assert all(r["ready"] and r["via"] == ["socket-table"] for r in reports)
        assert [r["address"] for r in reports] == [LOOPBACK6, None, LOOPBACK6]

        result = run_cli("wait", f"127.0.0.1:{free_port}", "--timeout", "0.3", "--json")
        assert result.returncode == ExitStatus.TIMEOUT
        doc = json.loads(result.stdout)
        assert doc["ok"] is False and doc["timed_out"] is True and doc["pending"] == [free_port]
        [report] = doc["targets"]
        assert report["ready"] is False and report["attempts"] >= 2
        assert report["error"] == "not listening on 127.0.0.1 (only on ::1)"
        assert f"127.0.0.1:{free_port}: not listening on 127.0.0.1 (only on ::1)" in result.stderr

        # The library says the same; and waiting for 127.0.0.1 to be free is over at once.
        with pytest.raises(WaitTimeoutError) as info:
            wait_for(f"127.0.0.1:{free_port}", timeout=0)
        assert info.value.pending == (free_port,) and info.value.result is not None
        assert wait_for(f"127.0.0.1:{free_port}", free=True, timeout=0).polls == 1
        with pytest.raises(WaitTimeoutError):
            wait_for(f"localhost:{free_port}", free=True, timeout=0)


@needs_ipv6
def test_a_v4_only_server_does_not_satisfy_ipv6_loopback(free_port: int) -> None:
    with server_socket(LOOPBACK4, free_port):
        assert wait_for(f"localhost:{free_port}", timeout=5).targets[0].address == LOOPBACK4
        with pytest.raises(WaitTimeoutError, match=r"not listening on ::1 \(only on 127.0.0.1\)"):
            wait_for(f"[::1]:{free_port}", timeout=0.2)


def test_a_udp_socket_does_not_satisfy_a_wait_unless_udp_is_asked(
    free_port_factory: FreePortFactory,
) -> None:
    port = free_port_factory(udp=True)  # free for UDP too, and leased while the test holds it
    with server_socket(LOOPBACK4, port, socket.SOCK_DGRAM):
        result = run_cli("wait", str(port), "--timeout", "0.3")
        assert result.returncode == ExitStatus.TIMEOUT, result.stderr
        assert f"port {port} not listening" in result.stderr
        targets = [str(port), f"127.0.0.1:{port}", f"localhost:{port}"]
        result = run_cli("wait", *targets, "--proto", "udp", "--timeout", "10", "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["proto"] == "udp" and all(r["ready"] for r in doc["targets"])


def test_waiting_forever_ends_when_the_server_comes(free_port: int) -> None:
    waiter = subprocess.Popen(
        [str(SCRIPT), "wait", f"localhost:{free_port}", "--forever", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None
        assert "waiting without a time limit for" in waiter.stderr.readline()
        with server_socket(LOOPBACK4, free_port):
            out, _ = waiter.communicate(timeout=60)
    finally:
        _stop(waiter)
    assert waiter.returncode == 0
    doc = json.loads(out)
    assert doc["timeout"] is None and doc["targets"][0]["address"] == LOOPBACK4


# --- http:// on this machine: the socket table, then a GET ------------------------------------


@pytest.fixture
def flag_server(
    free_port: int, tmp_path: Path
) -> Iterator[tuple[int, Path, subprocess.Popen[str]]]:
    """An HTTP server on 127.0.0.1 answering 503 until its flag file exists, then 200."""
    flag = tmp_path / "ready"
    server = subprocess.Popen(
        [sys.executable, "-c", FLAG_HTTP_SERVER, LOOPBACK4, str(free_port), str(flag)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "listening\n"
        yield free_port, flag, server
    finally:
        _stop(server)


def test_http_target_waits_through_503_until_200(
    flag_server: tuple[int, Path, subprocess.Popen[str]],
) -> None:
    port, flag, server = flag_server
    waiter = subprocess.Popen(
        [str(SCRIPT), "wait", f"http://127.0.0.1:{port}/health", "--json", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None and server.stdout is not None
        assert "waiting up to 60s for" in waiter.stderr.readline()
        assert "not ready yet: HTTP 503" in waiter.stderr.readline()  # listening, not ready
        assert server.stdout.readline() == "503 /health\n"
        flag.touch()
        out, _ = waiter.communicate(timeout=60)
    finally:
        _stop(waiter)
    assert waiter.returncode == 0
    [report] = json.loads(out)["targets"]
    assert report["via"] == ["socket-table", "http"] and report["http_status"] == 200
    assert report["address"] == LOOPBACK4 and report["attempts"] >= 2


# --- -- COMMAND: run once ready, exit with its status (wait-for-it's shape) ---------------------


def test_command_runs_once_ready_and_its_status_is_the_exit_status(free_port: int) -> None:
    # The command connects to the port: it can only succeed if it runs after the listener
    # is there; and it prints its pid, which is wait's own (exec, no process in between).
    command = (
        "import os, socket, sys\n"
        f"socket.create_connection(('127.0.0.1', {free_port}), timeout=5).close()\n"
        "print(os.getpid(), sys.argv[1:])\n"
        "sys.exit(7)\n"
    )
    argv = [sys.executable, "-c", command, "$HOME", "*", ";", "--json"]
    with server_socket(LOOPBACK4, free_port):
        proc = subprocess.Popen(
            [str(SCRIPT), "wait", f"127.0.0.1:{free_port}", "--timeout", "10", "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert out == f"{proc.pid} ['$HOME', '*', ';', '--json']\n"  # no shell, argv as given
    assert f"127.0.0.1:{free_port} ready after" in err  # the ready line moved to stderr


def test_like_wait_for_it_strict_the_command_does_not_run_on_timeout(
    free_port: int, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    result = run_cli(
        "wait",
        str(free_port),
        "--timeout",
        "0.3",
        "--",
        sys.executable,
        "-c",
        f"open({str(marker)!r}, 'w')",
    )
    assert result.returncode == ExitStatus.TIMEOUT
    assert not marker.exists()
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"portinspect: timed out after 0.3s: port {free_port} not listening"
    )


def test_like_wait_for_it_quiet_only_the_command_speaks(free_port: int) -> None:
    with server_socket(LOOPBACK4, free_port):
        result = run_cli(
            "wait",
            "--quiet",
            f"localhost:{free_port}",
            "--",
            sys.executable,
            "-c",
            "print('from the command')",
        )
    assert result.returncode == 0
    assert result.stdout == "from the command\n" and result.stderr == ""


def test_a_command_that_cannot_run_exits_126_or_127(free_port: int, tmp_path: Path) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    with server_socket(LOOPBACK4, free_port):
        missing = run_cli("wait", "-q", str(free_port), "--", str(tmp_path / "no-such-command"))
        refused = run_cli("wait", "-q", str(free_port), "--", str(plain))
    assert missing.returncode == ExitStatus.COMMAND_NOT_FOUND == 127
    assert missing.stderr.endswith("no-such-command': command not found\n")
    assert refused.returncode == ExitStatus.CANNOT_RUN == 126
    assert refused.stderr.count("\n") == 1 and "Permission denied" in refused.stderr


# --- IPv6 wildcards: dual-stack or not, in a private network namespace ------------------------

DUAL_STACK = """
import json, os, socket, subprocess, sys
from portinspect import render, scanner, wait_for
from portinspect.errors import WaitTimeoutError

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
port = int(sys.argv[1])
found = {}
for backend in ("linux", "psutil"):  # psutil cannot say whether a socket is IPv6-only
    os.environ["PORTINSPECT_BACKEND"] = backend
    for v6only in (0, 1):
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            s.bind(("::", port))
            s.listen()
            for name, target in (("v4", f"127.0.0.1:{port}"), ("v6", f"[::1]:{port}")):
                try:
                    via = list(wait_for(target, timeout=0).targets[0].via)
                except WaitTimeoutError:
                    via = None
                found[f"{backend} v6only={v6only} {name}"] = via
print(json.dumps(found))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private network namespace")
def test_ipv6_wildcards_take_ipv4_only_when_not_v6only(free_port: int) -> None:
    found = run_in_namespace(["--net"], DUAL_STACK, str(free_port))
    assert found == {
        # The kernel says (sock_diag's INET_DIAG_SKV6ONLY): the socket table decides alone.
        "linux v6only=0 v4": ["socket-table"],
        "linux v6only=0 v6": ["socket-table"],
        "linux v6only=1 v4": None,
        "linux v6only=1 v6": ["socket-table"],
        # Nobody says: a connect to the address the user named decides, for IPv4 only.
        "psutil v6only=0 v4": ["socket-table", "connect"],
        "psutil v6only=0 v6": ["socket-table"],
        "psutil v6only=1 v4": None,
        "psutil v6only=1 v6": ["socket-table"],
    }


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux path avoids psutil")
def test_waiting_on_this_machine_loads_no_probe(tmp_path: Path) -> None:
    # `socket` alone is ~7 ms of start-up; a wait on this machine's ports needs none of the
    # probes' modules (socket, http, ssl), nor psutil.
    loaded = _modules_after(_cli("wait", "1", "localhost:1", "--free", "--timeout", "0"), tmp_path)
    assert "portinspect" in loaded
    assert loaded & {"socket", "http", "ssl", "psutil"} == set()


def test_wait_lines_as_people_read_them() -> None:
    bare, db = WaitTarget(8000), WaitTarget(5432, "db")
    web = WaitTarget(8080, "127.0.0.1", "http", "/health")
    assert (
        render.wait_start([bare], 30, free=False)
        == "waiting up to 30s for port 8000 to be listening"
    )
    assert render.wait_start([bare], None, free=True) == (
        "waiting without a time limit for port 8000 to be free"
    )
    assert render.wait_start([db, web], 60, free=False) == (
        "waiting up to 60s for db:5432, http://127.0.0.1:8080/health to be ready"
    )
    ready = [
        TargetReport(db, Proto.TCP, True, 1.3, ("resolve", "connect"), 5, "10.0.0.2"),
        TargetReport(web, Proto.TCP, True, 0.5, ("socket-table", "http"), 3, "127.0.0.1", 200),
    ]
    assert render.wait_done(WaitResult((5432, 8080), False, 1.3, 9, tuple(ready))) == (
        "db:5432 ready after 1.30s (resolve, connect at 10.0.0.2)\n"
        "http://127.0.0.1:8080/health ready after 0.50s (socket table, HTTP 200)"
    )
    one = (TargetReport(bare, Proto.TCP, True, 0.42, ("socket-table",), 4),)
    assert render.wait_done(WaitResult((8000,), False, 0.42, 4, one)) == (
        "port 8000 listening after 0.42s"
    )
    # Progress: a probe's failure or a listener elsewhere, not the plain "not listening".
    waiting = TargetReport(bare, Proto.TCP, False, error="not listening")
    refused = TargetReport(db, Proto.TCP, False, error="connection refused")
    assert render.wait_progress(waiting) is None
    assert render.wait_progress(refused) == "db:5432: not ready yet: connection refused"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares the Linux backend")
def test_interface_addresses_agree_between_netlink_and_psutil() -> None:
    linux = scanner.local_addresses(backend="linux")
    assert {"127.0.0.1"} <= linux
    assert linux == scanner.local_addresses(backend="psutil")
