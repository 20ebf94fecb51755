"""`kill` on a real terminal (a pseudo-terminal): it shows the plan and asks before acting."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from portinspect import scan

from .support import SCRIPT, free_loopback_port, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")

HOLDER = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "time.sleep(120)\n"
)


def _read_until(fd: int, needle: str, timeout: float = 30.0) -> str:
    """What the terminal shows, up to and including `needle`."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} on the terminal; it showed:\n{seen}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                seen += os.read(fd, 4096).decode(errors="replace")
            except OSError:  # EIO: the terminal's other side closed
                break
    return seen


def _kill_on_a_terminal(port: int, answer: str) -> tuple[int, str, str]:
    """Run `portinspect kill PORT` with stdin and stderr on a terminal; answer its question."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [str(SCRIPT), "kill", str(port)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        try:
            shown = _read_until(master, "?")
            os.write(master, f"{answer}\n".encode())
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, shown, out
    finally:
        os.close(master)


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_loopback_port()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(port)])
    try:
        wait_until(lambda: scan(port), what=f"the holder to listen on {port}")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_answering_no_at_the_prompt_touches_nothing(
    holder: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = holder
    code, shown, _ = _kill_on_a_terminal(port, "n")
    assert str(proc.pid) in shown and "plan:" in shown  # the plan came before the question
    assert code == 5  # declined: the port is still held
    assert proc.poll() is None
    assert [li.pid for li in scan(port)] == [proc.pid]


def test_answering_yes_at_the_prompt_frees_the_port(
    holder: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = holder
    code, shown, out = _kill_on_a_terminal(port, "y")
    assert str(proc.pid) in shown
    assert code == 0, out
    assert f"port {port} freed" in out
    assert proc.wait(timeout=10) == -15  # ended by the SIGTERM it was sent
    assert scan(port) == []
