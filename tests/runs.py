"""What the run and serve tests share: a tag every process of a run inherits, and the scan
that finds whatever carries it (reparented daemons included) after the run is over."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psutil

TAG = "PORTINSPECT_TEST_RUN_TAG"


def tagged(tag: str) -> list[psutil.Process]:
    """Every live process carrying the tag: whatever a run left, wherever it was reparented."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def new_tag() -> Iterator[str]:
    """A fresh tag; on the way out, whatever still carries it (a test failed) is killed:
    those processes are the test's own, and only they are touched."""
    value = uuid.uuid4().hex
    try:
        yield value
    finally:
        procs = tagged(value)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=5)
