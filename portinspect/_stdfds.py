"""The standard fds as the user gave them: filled with /dev/null while we run, closed again
for a command we exec.

Its own module, below both the entry point (which fills them before anything opens a file)
and the CLI (which closes them again before `wait -- COMMAND` execs): neither has to import
the other for it.
"""

from __future__ import annotations

import contextlib
import os

# The standard fds that were closed when we started, now on /dev/null.
_FILLED: list[int] = []


def fill() -> None:
    """Put /dev/null on fds 0-2 when the caller closed them (`>&-`, `2>&-`).

    Else the next file we open (a netlink socket, a lease file) would get the lowest free
    number, 1 or 2, and anything written to "stdout" or "stderr" below Python (a C library,
    a child) would land in it. Python has already seen them closed: sys.stdout or sys.stderr
    stays None, which is how the CLI knows its output has nowhere to go.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
                _FILLED.append(fd)


def reclose() -> None:
    """Close again the fds fill() filled: before exec'ing a command (`wait -- CMD`),
    which must find them closed, as the user left them."""
    while _FILLED:
        with contextlib.suppress(OSError):
            os.close(_FILLED.pop())
