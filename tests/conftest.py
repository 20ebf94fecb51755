"""Shared fixtures: real dev servers (tests/servers.py) that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import RECIPES, Server, running


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
