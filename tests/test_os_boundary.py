"""The OS stays behind the backends: what only they may import or read, and what they answer.

The package's own source is read with `ast`: psutil, fcntl and msvcrt may be imported, and
/proc named, only where ALLOWED says. Everything else reaches the OS through the scanner
facade, so the rest stays pure and portable.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from portinspect import scanner
from portinspect.models import IANA_DYNAMIC

PACKAGE = Path(scanner.__file__).parent
GUARDED = ("psutil", "fcntl", "msvcrt", "/proc")

# module (relative to the package) -> what it may use, and why.
ALLOWED: dict[str, frozenset[str]] = {
    "_linux.py": frozenset({"/proc"}),  # the Linux backend: /proc and netlink
    "_psutil.py": frozenset({"psutil"}),  # the portable backend
    "leases.py": frozenset({"fcntl", "msvcrt"}),  # the lease lock, on POSIX and on Windows
    # FIONREAD on the pipes `run` reads its servers' output from: how many bytes its own
    # pipe holds, no fact about sockets or processes (it answers 0 where fcntl is missing).
    "runner.py": frozenset({"fcntl"}),
}


def _uses(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(guarded name, line) for each import of a guarded module and each "/proc..." string
    (docstrings may talk about /proc: they read nothing)."""
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in GUARDED:
                    yield top, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in GUARDED:
                yield top, node.lineno
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("/proc")
            and id(node) not in docstrings
        ):
            yield "/proc", node.lineno


def _used() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name, line in _uses(tree):
            found.setdefault(rel, set()).add(name)
            assert name in ALLOWED.get(rel, frozenset()), f"{rel}:{line} uses {name}"
    return found


def test_only_the_backends_touch_the_os() -> None:
    used = _used()
    # An allowance nobody needs any more is a hole for the next change: drop it.
    unused = {m: sorted(names - used.get(m, set())) for m, names in ALLOWED.items()}
    assert {m: names for m, names in unused.items() if names} == {}


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import psutil\n", ["psutil"]),
        ("from psutil import Process\n", ["psutil"]),
        ("def f():\n    import fcntl\n", ["fcntl"]),
        ("import msvcrt as m\n", ["msvcrt"]),
        ("PATH = '/proc/sys/net/ipv4/ip_local_port_range'\n", ["/proc"]),
        ("open(f'/proc/{pid}/stat')\n", ["/proc"]),
        ("from . import _psutil\nimport psutils_like\n", []),
        ("x = 'see /proc'\n", []),
        ('def f():\n    """/proc on Linux."""\n', []),
    ],
)
def test_the_guard_sees_what_it_must(source: str, caught: list[str]) -> None:
    assert [name for name, _ in _uses(ast.parse(source))] == caught


# --- what the facade answers ---------------------------------------------------------------

LINUX_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not LINUX_RANGE.exists(), reason="Linux only")
def test_ephemeral_range_is_the_kernels_and_comes_with_the_snapshot() -> None:
    low, high = map(int, LINUX_RANGE.read_text().split())
    assert scanner.ephemeral_range() == (low, high)
    assert scanner.collect([1]).ephemeral == (low, high)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32768\t60999\n", (32768, 60999)),  # Linux's file
        ("49152\n65535\n", (49152, 65535)),  # sysctl's two lines
        ("1024 65535", (1024, 65535)),
        ("60999 32768", None),
        ("abc def", None),
        ("0 100", None),
        ("", None),
    ],
)
def test_range_parsing(text: str, expected: tuple[int, int] | None) -> None:
    assert scanner._range_pair(text) == expected


def test_fallback_when_os_says_nothing_simulated_other_os(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: an OS with no readable range (Windows) falls back to 49152-65535."""
    scanner.ephemeral_range.cache_clear()
    monkeypatch.setattr(scanner.sys, "platform", "win32")
    try:
        assert scanner.ephemeral_range() == IANA_DYNAMIC
    finally:
        scanner.ephemeral_range.cache_clear()


def test_privileged_is_root() -> None:
    assert scanner.privileged() is (os.geteuid() == 0)
    assert scanner.collect([1]).privileged is scanner.privileged()


def test_privileged_without_uids_simulated_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: Windows has no euid; elevation is not asked for, so not privileged."""
    monkeypatch.delattr(scanner.os, "geteuid")
    assert scanner.privileged() is False
