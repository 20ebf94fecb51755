"""The CLI on real sockets: through typer's CliRunner and through the installed console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

from portinspect.errors import ExitStatus

from .support import (
    LOOPBACK4,
    SCRIPT,
    endpoint_of,
    invoke,
    is_root,
    lease_port,
    listening,
    port_of,
    run_as_nobody,
    run_cli,
    same_socket,
)

LIST_COLUMNS = ("PORT", "PROTO", "ADDRESS", "PID", "PROGRAM", "USER", "RANGE", "SERVICE")


def invoke_as_nobody(*args: str) -> tuple[int, str, str]:
    """The same command in a child that dropped to `nobody`.

    It runs once here first: typer imports its parameter machinery (and the stdlib
    modules behind it) lazily, and after setuid the child may not be allowed into the
    interpreter's directory to import them.
    """
    invoke(*args)
    code, out, err = run_as_nobody(lambda: list(invoke(*args)))
    return int(code), str(out), str(err)


def test_list_shows_a_real_listener_in_the_table() -> None:
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        code, out, _ = invoke("list", "--port", str(port))
    assert code == 0
    header, _rule, *rows = out.splitlines()
    [row] = [r for r in rows if r.split()[:3] == [str(port), "tcp", LOOPBACK4]]
    # SERVICE and TOP show only when some row has one (this port may have an IANA name).
    assert header.split()[:4] == ["PORT", "PROTO", "ADDRESS", "PID"]
    shown = set(header.split())
    assert {"PROGRAM", "USER", "RANGE"} <= shown <= {*LIST_COLUMNS}
    assert row.split()[:4] == [str(port), "tcp", LOOPBACK4, str(os.getpid())]


def test_list_json_schema() -> None:
    with listening(LOOPBACK4) as sock:
        mine = endpoint_of(sock)
        port = port_of(sock)
        code, out, _ = invoke("list", "--port", str(port), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["command"] == "list"
    [row] = same_socket(doc["listeners"], mine)
    expected = {
        "port": int,
        "proto": str,
        "family": str,
        "address": str,
        "pid": int,
        "process": str,
        "user": str,
        "cmdline": list,
        "cwd": str,
        "range": str,
        "ephemeral": bool,
        "exposed": bool,
        "app_pid": int,
        "holders": list,
    }
    for key, kind in expected.items():
        assert isinstance(row[key], kind), key
    for key in ("service", "framework", "server"):
        assert key in row
    assert row["port"] == port and row["proto"] == "tcp" and row["family"] == "ipv4"
    assert row["pid"] == os.getpid()
    assert all(isinstance(arg, str) for arg in row["cmdline"])


def test_list_filters_by_proto_and_port_spec() -> None:
    with listening(LOOPBACK4) as tcp, listening(LOOPBACK4, socket.SOCK_DGRAM) as udp:
        tcp_socket, udp_socket = endpoint_of(tcp), endpoint_of(udp)
        spec = f"{port_of(tcp)},{port_of(udp)}"
        _, out, _ = invoke("list", "--port", spec, "--proto", "udp", "--json")
    rows = json.loads(out)["listeners"]
    assert {r["proto"] for r in rows} == {"udp"}
    assert [r["pid"] for r in same_socket(rows, udp_socket)] == [os.getpid()]
    assert same_socket(rows, tcp_socket) == []


def test_list_exposed_filter_hides_loopback() -> None:
    with listening(LOOPBACK4) as sock:
        code, out, _ = invoke("list", "--port", str(port_of(sock)), "--exposed", "--json")
    # Nothing on the port asked about is exposed, so nothing matched the question.
    assert json.loads(out)["listeners"] == []
    assert code == ExitStatus.NOT_LISTENING


def test_list_port_with_nothing_listening_exits_3() -> None:
    port = lease_port()
    code, _out, err = invoke("list", "--port", str(port))
    assert code == ExitStatus.NOT_LISTENING
    assert f"nothing is listening on port {port}" in err


def test_who_describes_the_holder_and_how_to_stop_it() -> None:
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        code, out, _ = invoke("who", str(port))
    assert code == 0
    assert f"Port {port}" in out
    assert f"127.0.0.1:{port}" in out and "loopback only" in out
    assert f"app top:   pid {os.getpid()}" in out
    assert f"portinspect kill {port}" in out


def test_who_json() -> None:
    with listening(LOOPBACK4) as sock:
        mine = endpoint_of(sock)
        port = port_of(sock)
        code, out, _ = invoke("who", str(port), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["port"] == port
    [row] = same_socket(doc["listeners"], mine)
    assert row["pid"] == os.getpid()
    [app_doc] = doc["apps"]
    assert app_doc["app_pid"] == os.getpid()
    assert os.getpid() in [p["pid"] for p in app_doc["tree"]]


def test_who_nothing_listening_exits_3_with_json_error() -> None:
    port = lease_port()
    code, out, err = invoke("who", str(port), "--json")
    assert code == ExitStatus.NOT_LISTENING
    doc = json.loads(out)
    assert doc["ok"] is False and doc["exit_code"] == 3
    assert str(port) in doc["error"]["message"]
    assert err.count("\n") == 1


# Refused while parsing: no port named here is ever looked at.
@pytest.mark.parametrize(
    "args",
    [
        ["who", "0"],
        ["who", "65536"],
        ["who", "abc"],
        ["who", "８０００"],
        ["who", "1e3"],
        ["who", ""],
        ["list", "--port", "8000-7000"],
        ["list", "--port", "80x"],
        ["list", "--proto", "sctp"],
        ["list", "--bogus"],
        ["who"],
        ["frobnicate"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    code, out, err = invoke(*args)
    assert code == ExitStatus.USAGE, (out, err)
    assert err.count("\n") == 1, err
    assert "Traceback" not in err + out
    assert out == ""


def test_bad_input_json_still_prints_one_json_document() -> None:
    code, out, _ = invoke("who", "abc", "--json")
    assert code == ExitStatus.USAGE
    doc = json.loads(out)
    assert doc["exit_code"] == 2 and "abc" in doc["error"]["message"]


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("portinspect ")


@pytest.mark.skipif(not is_root(), reason="needs root to drop to another user")
@pytest.mark.unprivileged
def test_who_as_unprivileged_user_on_roots_port_exits_4() -> None:
    pytest.importorskip("portinspect._linux")
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        code, out, err = invoke_as_nobody("who", str(port))
    assert code == ExitStatus.PERMISSION
    assert "root" in out and "sudo" in out
    assert "run with sudo" in err


@pytest.mark.skipif(not is_root(), reason="needs root to drop to another user")
@pytest.mark.unprivileged
def test_list_as_unprivileged_user_warns_once_and_still_lists() -> None:
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)
        code, out, err = invoke_as_nobody("list", "--port", str(port))
    assert code == 0
    mine = [r for r in out.splitlines() if r.split()[:3] == [str(port), "tcp", LOOPBACK4]]
    assert len(mine) == 1 and "hidden" in out
    assert err.count("sudo") == 1


# -- the installed console script and `python -m` --------------------------------------


def test_console_script_lists_a_real_listener() -> None:
    with listening(LOOPBACK4) as sock:
        mine = endpoint_of(sock)
        port = port_of(sock)
        proc = run_cli("list", "--port", str(port), "--json")
    assert proc.returncode == 0, proc.stderr
    [row] = same_socket(json.loads(proc.stdout)["listeners"], mine)
    assert row["pid"] == os.getpid()


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "portinspect", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("portinspect ")


def test_console_script_bad_input_exit_2_without_traceback() -> None:
    proc = run_cli("kill-nothing")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_console_script_who_nothing_listening_exits_3() -> None:
    proc = run_cli("who", str(lease_port()))
    assert proc.returncode == 3
    assert "nothing is listening" in proc.stderr


def test_shell_completion_completes_commands() -> None:
    env = {**os.environ, "_PORTINSPECT_COMPLETE": "complete_bash"}
    env.update({"COMP_WORDS": "portinspect ki", "COMP_CWORD": "1"})
    proc = run_cli(env=env)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["kill"]


def test_show_completion_prints_a_script_for_the_shell() -> None:
    # typer names the shell from the nearest shell among the script's ancestors, which depend
    # on how the suite was started (make's /bin/sh, a CI runner...): run it from bash, as a
    # user typing it would. Two commands, so bash waits for it rather than exec'ing it.
    proc = subprocess.run(
        ["bash", "-c", '"$@"; exit $?', "bash", str(SCRIPT), "--show-completion"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_portinspect_completion" in proc.stdout


def test_list_json_names_the_parent_and_start_time_of_the_holder() -> None:
    with listening(LOOPBACK4) as sock:
        mine = endpoint_of(sock)
        code, out, _ = invoke("list", "--port", str(port_of(sock)), "--json")
    assert code == 0
    [row] = same_socket(json.loads(out)["listeners"], mine)
    assert row["pid"] == os.getpid() and row["ppid"] == os.getppid()
    assert abs(row["started"] - psutil.Process().create_time()) < 1
