"""What the run and serve tests (and benchmarks/bench_run.py) share: the real servers as
`run --server` commands, a tag every process of a run inherits, and the scan that finds
whatever carries it (reparented daemons included) after the run is over."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil

from .servers import DJANGO_FILES, FASTAPI_APP, FLASK_APP, RECIPES

TAG = "PORTINSPECT_TEST_RUN_TAG"

NODE_SERVER = """\
const http = require("http");
http.createServer((req, res) => res.end("hello from node\\n"))
  .listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
"""
PACKAGE_JSON = json.dumps(
    {"name": "run-test", "version": "1.0.0", "private": True, "scripts": {"dev": "node server.js"}}
)


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


def label(name: str) -> str:
    """A server name run accepts (letters, digits, _ and -) for a recipe's name."""
    return name.replace(".", "-")


def server_command(name: str) -> str:
    """A recipe of tests/servers.py as a `run --server` command, `{port}` in place of the port."""
    if name == "npm":
        return "npm run dev"
    # The recipes format the port into their argv; given the text "{port}" they write the
    # placeholder where the number would go (127.0.0.1:{port}, --port {port}).
    argv = RECIPES[name].argv("{port}", Path())  # type: ignore[arg-type]
    return " ".join(argv)


def project(root: Path) -> Path:
    """One directory every recipe runs from: Django's, FastAPI's, Flask's and npm's files."""
    files = {**DJANGO_FILES, "main.py": FASTAPI_APP, "app.py": FLASK_APP}
    files.update({"server.js": NODE_SERVER, "package.json": PACKAGE_JSON})
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def assert_not_ours(port: int, tag: str) -> None:
    """Whatever listens on the port now is not a process of ours. A parallel run (another
    xdist worker, another suite) may take a port the moment ours frees it, so "nothing
    listens on it" would be a race; "nothing of ours does" is the fact to check."""
    from portinspect import scan

    for listener in scan(port):
        for holder in listener.holders:
            with contextlib.suppress(psutil.Error):
                env = psutil.Process(holder.process.pid).environ()
                assert env.get(TAG) != tag, (port, holder)
