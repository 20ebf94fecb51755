"""Ctrl-C held back for the few steps that must not be cut in half.

A KeyboardInterrupt can be raised between any two bytecodes. Most of portinspect may stop
anywhere, but a few steps leave harm behind when cut: a batch of SIGKILLs where the top died
and its workers did not (orphans that keep serving), a lease file created but not yet on the
list of leases to give back, leases half given back by a second Ctrl-C. Those steps take
microseconds, so they finish first and the interrupt is raised right after them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Run the block to its end; a Ctrl-C that came meanwhile is raised when it is done.

    Only where Python's own handler is installed, in the main thread (the only one that
    may change handlers): a program that ignores SIGINT or handles it itself keeps its way.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pending: list[int] = []

    def defer(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    signal.signal(signal.SIGINT, defer)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pending:
            raise KeyboardInterrupt
