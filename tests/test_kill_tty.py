"""`kill` on a real terminal (a pseudo-terminal): it shows the plan and asks before acting."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from .holders import Holder, holding, still_running
from .support import SCRIPT

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")


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
def holder() -> Iterator[Holder]:
    with holding() as h:
        yield h


def test_answering_no_at_the_prompt_touches_nothing(holder: Holder) -> None:
    code, shown, _ = _kill_on_a_terminal(holder.port, "n")
    assert str(holder.pid) in shown and "plan:" in shown  # the plan came before the question
    assert code == 5  # declined: the port is still held
    assert still_running(holder.ids) == [holder.pid]
    assert holder.holds_port()


def test_answering_yes_at_the_prompt_frees_the_port(holder: Holder) -> None:
    code, shown, out = _kill_on_a_terminal(holder.port, "y")
    assert str(holder.pid) in shown
    assert code == 0, out
    assert f"port {holder.port} freed" in out
    assert holder.popen.wait(timeout=30) == -signal.SIGTERM  # ended by the SIGTERM it was sent
    holder.assert_freed_for_good()
