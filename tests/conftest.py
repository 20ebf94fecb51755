"""Shared fixtures: real dev servers (tests/servers.py) that are always stopped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from . import support
from .servers import RECIPES, Server, running


@pytest.fixture(autouse=True)
def _leases_end_with_the_test() -> Iterator[None]:
    """Every port a test leased (tests/support.py) is given back when it ends, after its
    fixtures stopped what held the port: autouse fixtures are set up first, torn down last."""
    with support.lease_scope():
        yield


@pytest.fixture(scope="session", autouse=True)
def _session_leases_end_with_the_session() -> Iterator[None]:
    """Ports leased outside any test (module fixtures, import time) are given back at the end."""
    yield
    support.release_session_leases()


@pytest.fixture
def real_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A running server, named by indirect parametrisation with a key of servers.RECIPES.

    Its whole process tree is stopped (SIGTERM, then SIGKILL) when the test ends,
    passed or failed.
    """
    name = getattr(request, "param", None)
    if name not in RECIPES:
        raise pytest.UsageError(f"real_server needs a parameter, one of {sorted(RECIPES)}")
    with running(RECIPES[name], tmp_path) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """A safety net under every test's own cleanup: when the session ends, any process this
    test process started and nobody stopped (a test that failed before its `finally` could
    know the pid) is killed, through psutil's identity-checked handle, and named on stderr.
    Without it, a leak outlives the run, reparented to init, and holds its port."""
    yield
    leftovers = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            sys.stderr.write(f"\nleft behind by a test, killed: {proc.pid} {proc.cmdline()}\n")
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
