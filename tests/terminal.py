"""The installed console script on a real pseudo-terminal of a given width, and servers whose
command lines differ only at their tail. Every process is stopped by pid, also on failure."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from portinspect import scan

from .support import SCRIPT, has_ipv6, wait_until

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_all(fd: int, deadline: float) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: every process on the terminal's other side has gone
            break
        if not data:
            break
        out += data
    return out


def on_terminal(
    args: Sequence[str],
    columns: int,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str]:
    """Run `portinspect ARGS` with stdin, stdout and stderr on a new terminal `columns` wide
    (the window size is set, COLUMNS is not); (exit status, what the terminal shows)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    try:
        proc = subprocess.Popen(
            [str(SCRIPT), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**base, **(env or {})},
        )
        os.close(slave)
        slave = -1
        try:
            shown = _read_all(master, time.monotonic() + timeout)
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return code, shown.decode("utf-8", "replace").replace("\r\n", "\n")


def too_wide(text: str, columns: int) -> list[str]:
    """The lines of text that take more than `columns` on screen (colour codes aside)."""
    return [line for line in text.splitlines() if len(ANSI.sub("", line)) > columns]


@dataclass(frozen=True)
class Pair:
    """Two http.servers on one port, one per loopback: their command lines end differently."""

    port: int
    pid4: int
    pid6: int | None  # None where this machine has no IPv6


@contextlib.contextmanager
def http_server_pair(port: int) -> Iterator[Pair]:
    """`python -m http.server PORT --bind 127.0.0.1` and `... --bind ::1`, listening."""
    hosts = ["127.0.0.1", *(["::1"] if has_ipv6() else [])]
    procs = []
    try:
        for host in hosts:
            argv = [sys.executable, "-m", "http.server", str(port), "--bind", host]
            procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        wanted = {p.pid for p in procs}
        wait_until(
            lambda: wanted <= {li.pid for li in scan(port)},
            what=f"both http.servers listening on {port}",
        )
        yield Pair(port, procs[0].pid, procs[1].pid if len(procs) > 1 else None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
