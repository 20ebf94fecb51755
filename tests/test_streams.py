"""Closed, full and broken output streams (issue 16): every command still does its job.

Each of the five commands runs as the installed console script with stderr closed (`2>&-`),
stdout closed (`>&-`) and stdout on /dev/full. With stderr gone a command behaves exactly as
usual: stderr only carries diagnostics. With stdout gone the work is still done (kill
finishes its escalation, free gives back the leases nobody was told about), stderr says in
one line that the result could not be written, and the exit code is 1 unless the command
had already failed: what `ls` and `rm -v` do. Never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portinspect import freeport, scanner
from portinspect.errors import ExitStatus
from portinspect.kill import escalate, kill_port

from .holders import holding
from .support import LOOPBACK4, SCRIPT, bound_without_reuse, lease_port, listening

if sys.platform == "win32":
    pytest.skip("POSIX file descriptors", allow_module_level=True)

STREAMS = ["2>&-", ">&-", ">/dev/full"]
COMMANDS = ["list", "who", "free", "kill", "wait"]


@pytest.fixture
def free_port() -> int:
    """A port leased for the test from the shared allocator, whatever lease directory it sets."""
    return lease_port()


def _closing(fd: int) -> Callable[[], None]:
    def close() -> None:  # in the child, after subprocess set up its streams
        os.close(fd)

    return close


def run_with(stream: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The console script with one stream closed or full; (exit code, stdout, stderr)."""
    kwargs: dict[str, Any] = {"env": env, "timeout": 120, "check": False}
    if stream == "2>&-":
        done = subprocess.run(
            [str(SCRIPT), *args], stdout=subprocess.PIPE, preexec_fn=_closing(2), **kwargs
        )
        return done.returncode, done.stdout.decode(), ""
    if stream == ">&-":
        done = subprocess.run(
            [str(SCRIPT), *args], stderr=subprocess.PIPE, preexec_fn=_closing(1), **kwargs
        )
        return done.returncode, "", done.stderr.decode()
    with Path("/dev/full").open("wb") as full:
        done = subprocess.run([str(SCRIPT), *args], stdout=full, stderr=subprocess.PIPE, **kwargs)
    return done.returncode, "", done.stderr.decode()


def _expect_unwritten(code: int, err: str, stream: str) -> None:
    reason = "it is closed" if stream == ">&-" else "no space left on device"
    assert code == ExitStatus.ERROR
    assert err.splitlines()[-1] == f"portinspect: cannot write the result to stdout: {reason}"
    assert "Traceback" not in err


def _check(stream: str, code: int, out: str, err: str, ok_out: Callable[[str], bool]) -> None:
    if stream == "2>&-":
        assert code == ExitStatus.OK and ok_out(out), out
    else:
        _expect_unwritten(code, err, stream)


@pytest.mark.parametrize("stream", STREAMS)
def test_list(stream: str) -> None:
    with listening(LOOPBACK4) as sock:
        port = sock.getsockname()[1]
        code, out, err = run_with(stream, "list", "--port", str(port), "--quiet")
    _check(stream, code, out, err, lambda text: f"\n{port} " in text)


@pytest.mark.parametrize("stream", STREAMS)
def test_who(stream: str) -> None:
    with listening(LOOPBACK4) as sock:
        port = sock.getsockname()[1]
        code, out, err = run_with(stream, "who", str(port), "--json")
    _check(stream, code, out, err, lambda text: json.loads(text)["port"] == port)


@pytest.mark.parametrize("stream", STREAMS)
def test_free(stream: str, free_port: int, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    env = {**os.environ, freeport.LEASE_DIR_ENV: str(leases)}
    code, out, err = run_with(stream, "free", "--near", str(free_port), env=env)
    _check(stream, code, out, err, lambda text: text.strip().isdigit())
    left = sorted(p.name for p in leases.glob("*.lease"))
    if stream == "2>&-":
        assert left == [f"{out.strip()}.lease"]
    else:
        assert left == []  # nobody was told the port: its lease went back


@pytest.mark.parametrize("stream", STREAMS)
def test_kill_finishes_its_escalation(stream: str, free_port: int) -> None:
    """stderr closed: the progress lines have nowhere to go, SIGKILL still follows SIGTERM."""
    # It ignores SIGTERM, so freeing its port takes the whole ladder: SIGTERM, wait, SIGKILL.
    with holding(port=free_port, ignore_term=True) as holder:
        code, out, err = run_with(stream, "kill", str(free_port), "--yes", "--timeout", "0.3")
        assert holder.popen.wait(timeout=30) == -signal.SIGKILL
    _check(stream, code, out, err, lambda text: f"port {free_port} freed in " in text)
    assert "freed in ?" not in out
    assert free_port not in scanner.listening_ports()


@pytest.mark.parametrize("stream", STREAMS)
def test_wait(stream: str) -> None:
    with listening(LOOPBACK4) as sock:
        port = sock.getsockname()[1]
        code, out, err = run_with(stream, "wait", str(port), "--timeout", "30")
    _check(stream, code, out, err, lambda text: f"port {port} listening after" in text)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_failure_keeps_its_code_when_stdout_is_closed(command: str) -> None:
    """The command's own failure code wins over the lost output: the test holds a TCP socket
    bound and not listening, so nothing listens on its port and `free` cannot have it."""
    with bound_without_reuse() as bound:
        port = str(bound.getsockname()[1])
        args = {
            "list": ["list", "--port", port],
            "who": ["who", port],
            "free": ["free", "--range", f"{port}-{port}", "--no-lease"],
            "kill": ["kill", port, "--yes"],
            "wait": ["wait", port, "--proto", "tcp", "--timeout", "0"],
        }[command]
        code, _, err = run_with(">&-", *args, "--json")
    expected = {
        "list": ExitStatus.NOT_LISTENING,
        "who": ExitStatus.NOT_LISTENING,
        "free": ExitStatus.NO_FREE_PORT,
        "kill": ExitStatus.NOT_LISTENING,
        "wait": ExitStatus.TIMEOUT,
    }[command]
    assert code == expected, err
    assert err.splitlines()[-1] == "portinspect: cannot write the result to stdout: it is closed"
    assert "Traceback" not in err


def test_a_kill_that_needed_sigkill_always_says_when_the_port_was_freed(
    free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll right after SIGKILL still sees the socket (the kernel closes it as the process
    dies, a moment after it stops running), so only the final scan sees the port free.

    That instant cannot be aimed at for real: the one stale poll is simulated by replaying
    the last answer that showed the socket, once, the first time the table shows it gone.
    """
    real = escalate.port_sockets
    seen: list[dict[int, frozenset[int | None]]] = []
    replayed: list[bool] = []

    def one_stale_poll(*args: Any, **kwargs: Any) -> dict[int, frozenset[int | None]]:
        now = real(*args, **kwargs)
        if not now and seen and not replayed:
            replayed.append(True)
            return seen[-1]
        if now:
            seen.append(now)
        return now

    monkeypatch.setattr(escalate, "port_sockets", one_stale_poll)
    with holding(port=free_port, ignore_term=True) as holder:
        [outcome] = kill_port(free_port, timeout=0.3)
        assert holder.popen.wait(timeout=30) == -signal.SIGKILL
    assert replayed, "the simulated stale poll never happened"
    assert outcome.status.value == "freed"
    assert [s.signal for s in outcome.steps][-1] == "SIGKILL"
    assert outcome.freed_after is not None
    assert f"port {free_port} freed in {outcome.freed_after:.2f}s" in outcome.message
