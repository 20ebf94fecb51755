"""Reading an app's source file, which belongs to the process we inspect, not to us.

To tell FastAPI from Flask behind `uvicorn main:app`, portinspect reads the module the
server names (<cwd>/main.py). Whoever runs the server chooses that file: another local user,
when portinspect runs as root. So a read may neither block nor exhaust us:
- only Python source names are read (`*.py`, `*.pyw`): never a device a path could name;
- on Linux the path is opened O_PATH | O_NOFOLLOW first, which opens nothing (no FIFO
  open, no driver's open()), fstat must say regular file, and only that inode is then
  opened for reading, through /proc/self/fd, with O_NONBLOCK (a file lease another process
  holds cannot stall the open). Elsewhere: lstat, open O_NONBLOCK | O_NOFOLLOW, fstat, and
  the inode must be the one lstat saw;
- at most SOURCE_LIMIT bytes of a file, at most BYTES_BUDGET in one recognition step;
- reads run in a worker thread, and the recognition step waits for them RECOGNITION_BUDGET
  in all: a file on a hung network or FUSE mount costs that once, then every framework
  still unknown stays unknown. The budget counts time spent waiting on reads, not the
  classification around them, so a slow machine does not lose frameworks.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

# The imports that name the framework sit at the top of a module; a file is read this far.
SOURCE_LIMIT = 64 * 1024
# One recognition step reads at most this much (the texts are kept while it runs).
BYTES_BUDGET = 16 * 1024 * 1024
# Waiting on reads, in all, per recognition step. A local read takes microseconds.
RECOGNITION_BUDGET = 0.5
SUFFIXES = (".py", ".pyw")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_O_PATH = getattr(os, "O_PATH", 0) if sys.platform.startswith("linux") else 0
_READ_FLAGS = os.O_RDONLY | _NONBLOCK | _CLOEXEC | _NOCTTY


def read_source(path: str, limit: int = SOURCE_LIMIT) -> str | None:
    """The start of an app module (at most limit bytes), or None: not a regular `.py` file,
    unreadable, or gone. Never blocks on a FIFO, a device or a file lease; never raises."""
    if not path.endswith(SUFFIXES):
        return None
    try:
        fd = _open_regular(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    if fd is None:
        return None
    try:
        chunks: list[bytes] = []
        left = limit
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _open_regular(path: str) -> int | None:
    """A read-only descriptor of path if it is a regular file (not followed if a symlink)."""
    if _O_PATH:
        handle = os.open(path, _O_PATH | _NOFOLLOW | _CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                return None
            from portinspect import _linux  # O_PATH is Linux's: so is the way to reopen it

            with contextlib.suppress(FileNotFoundError):  # no /proc here: the portable way
                return _linux.reopen(handle, _READ_FLAGS)
        finally:
            os.close(handle)
    seen = os.lstat(path)
    if not stat.S_ISREG(seen.st_mode):
        return None
    fd = os.open(path, _READ_FLAGS | _NOFOLLOW)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
        seen.st_dev,
        seen.st_ino,
    ):
        os.close(fd)
        return None
    return fd


class SourceReader:
    """read_source for one recognition step: bounded in bytes, and in time spent waiting.

    A callable (path -> text or None) for classifier.classify; use it as a context manager,
    so its worker thread ends with the step. A worker stuck in a hung read is a daemon
    thread: it never keeps the process alive.
    """

    def __init__(
        self,
        budget: float = RECOGNITION_BUDGET,
        read: Callable[[str], str | None] = read_source,
        byte_budget: int = BYTES_BUDGET,
    ) -> None:
        self.budget = budget
        self.bytes_left = byte_budget
        self.waited = 0.0
        self.exhausted = False  # a read outlived the budget, or the bytes ran out
        self._read = read
        self._requests: Any = None
        self._results: Any = None

    def __call__(self, path: str) -> str | None:
        if self.exhausted:
            return None
        left = self.budget - self.waited
        if left <= 0 or self.bytes_left <= 0:
            self.exhausted = True
            return None
        if self._requests is None:
            self._start()
        from queue import Empty

        began = time.monotonic()
        self._requests.put(path)
        try:
            text: str | None = self._results.get(timeout=left)
        except Empty:
            self.exhausted = True  # the worker is stuck in that read: leave it there
            return None
        finally:
            self.waited += time.monotonic() - began
        if text is not None:
            self.bytes_left -= len(text)
        return text

    def _start(self) -> None:
        from queue import SimpleQueue

        self._requests, self._results = SimpleQueue(), SimpleQueue()
        requests, results, read = self._requests, self._results, self._read

        def work() -> None:
            while (path := requests.get()) is not None:
                try:
                    results.put(read(path))
                except Exception:  # a reader that raises reads nothing
                    results.put(None)

        threading.Thread(target=work, name="portinspect-appsource", daemon=True).start()

    def close(self) -> None:
        if self._requests is not None:
            self._requests.put(None)  # a worker that is not stuck ends
            self._requests = None

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
