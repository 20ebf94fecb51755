"""Processes run as another local user (`nobody`), for the tests of what such a user can do to
a root portinspect: a server-like listener in a directory of FIFOs, a socket bound and not
listening. Each is started by pid and stopped by pid, also when the test fails.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from portinspect.pytest_plugin import FreePortFactory

from .support import is_root, nobody

needs_root = pytest.mark.skipif(not is_root(), reason="needs root to act as another user")

# Tests elsewhere in the suite still search from 15000 (free's default start) in private
# lease directories and then listen there, unseen by the shared leases (issue 11 moves them
# onto the shared allocator). The tests of issue 16 lease their ports away from that crowd,
# below every OS's ephemeral range.
QUIET_NEAR = (30000, 32000)


def leased_port(factory: FreePortFactory) -> int:
    """A port from the plugin's factory (leased for the test), away from the 15000 crowd."""
    return factory(near=random.randrange(*QUIET_NEAR))


@functools.cache
def python_for_nobody() -> str | None:
    """An interpreter `nobody` may run: ours when its path is open to all, else the system's.

    The holders below need the standard library only. A checkout in a private directory
    (or a pyenv under /root) cannot be entered by nobody.
    """
    uid, gid = nobody()
    for candidate in (
        os.path.realpath(sys.executable),
        shutil.which("python3"),
        "/usr/bin/python3",
    ):
        if not candidate:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [candidate, "-c", "pass"],
                user=uid,
                group=gid,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                return candidate
    return None


def _interpreter() -> str:
    python = python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter here that the nobody user may run")
    return python


@contextlib.contextmanager
def as_nobody(argv: list[str], cwd: str = "/", **env: str) -> Iterator[subprocess.Popen[str]]:
    """argv run as nobody, its stdin a pipe: it waits for EOF there, prints 'ready' first."""
    uid, gid = nobody()
    proc = subprocess.Popen(
        argv,
        user=uid,
        group=gid,
        extra_groups=[],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the nobody holder did not start: {line!r} {err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ValueError):  # the test may have talked to it already
            proc.communicate(timeout=30)


# Binds PORT on 127.0.0.1 with SO_REUSEADDR (as servers do: a leased port may still have
# TIME_WAIT connections) and, unless told otherwise, listens; says "ready", then holds it
# until its stdin closes. Its argv is whatever the test runs it as (a file named "uvicorn").
HOLDER = """\
import os, socket, sys
port = int(os.environ["PORT"])
sock = socket.socket()
if os.environ.get("REUSE", "1") == "1":
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
if os.environ.get("LISTEN", "1") == "1":
    sock.listen()
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def open_directory() -> Iterator[Path]:
    """A new directory every user may enter (mode 0755, in the temp dir), removed at the end.

    Not under tmp_path: pytest keeps that private to root, and opening it up would open
    every other test's files too.
    """
    path = Path(tempfile.mkdtemp(prefix="portinspect-test-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _world_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def fifo_app(port: int, base: Path) -> Iterator[tuple[subprocess.Popen[str], list[Path]]]:
    """A listener run as nobody as `python .../uvicorn main:app --port PORT`, in base/app,
    where every file the recogniser would read for `main:app` is a FIFO owned by nobody
    (base: a directory nobody may enter, see open_directory).

    Yields (the holder, the FIFOs). Whatever happens, every FIFO is opened for writing at the
    end, so a reader stuck on one (the bug this guards against) is released.
    """
    uid, gid = nobody()
    bin_dir = _world_dir(base / "bin")
    app_dir = _world_dir(base / "app")
    (app_dir / "main").mkdir()
    script = bin_dir / "uvicorn"
    script.write_text(HOLDER)
    script.chmod(0o755)
    fifos = [
        app_dir / "main.py",
        app_dir / "main" / "__init__.py",
        app_dir / "main" / "__main__.py",
    ]
    for fifo in fifos:
        os.mkfifo(fifo, 0o644)
    for path in (app_dir, app_dir / "main", *fifos):
        os.chown(path, uid, gid)
    argv = [_interpreter(), str(script), "main:app", "--port", str(port)]
    try:
        with as_nobody(argv, cwd=str(app_dir), PORT=str(port)) as proc:
            yield proc, fifos
    finally:
        release_fifos(fifos)


def release_fifos(fifos: list[Path]) -> None:
    """Open each FIFO for writing: a reader blocked in open() on it gets through."""
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def fifo_has_reader(fifo: Path) -> bool:
    """Whether some process has the FIFO open for reading right now (ENXIO: nobody has)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def bound_by_nobody(port: int, *, reuse: bool = True) -> Iterator[subprocess.Popen[str]]:
    """A TCP socket on 127.0.0.1:port, bound (SO_REUSEADDR by default) and NOT listening, held
    by a process of the nobody user."""
    argv = [_interpreter(), "-c", HOLDER]
    with as_nobody(argv, PORT=str(port), LISTEN="0", REUSE=str(int(reuse))) as proc:
        yield proc
