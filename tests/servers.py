"""Real servers for the tests: Django, uvicorn, Flask, gunicorn, Jupyter, http.server, and
hypercorn, daphne, waitress, granian, sanic, bottle and tornado for recognition.

Each server binds only 127.0.0.1, on a port leased for as long as it runs (tests/support.py),
and runs in its own session. `running()` waits until the port accepts connections and the
expected processes hold it (a gunicorn master answers before its workers exist), and
stops the whole tree by pid, SIGTERM first, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .support import lease_port, lease_scope

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's console scripts: uvicorn, flask, gunicorn...
START_TIMEOUT = 30.0  # a cold Jupyter start on a loaded 2-core VM takes a few seconds
TERM_TIMEOUT = 10.0  # gunicorn and uvicorn shut workers down gracefully; measured < 0.5 s
KILL_TIMEOUT = 5.0

# Variables that would change what the servers do, or fake reloader children.
_SCRUB = (
    "RUN_MAIN",
    "WERKZEUG_RUN_MAIN",
    "WERKZEUG_SERVER_FD",
    "JPY_PARENT_PID",
    "DJANGO_SETTINGS_MODULE",
    "FLASK_APP",
    "FLASK_DEBUG",
    "WEB_CONCURRENCY",  # uvicorn's and gunicorn's default worker count
    "GUNICORN_CMD_ARGS",
)

FASTAPI_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict[str, str]:
    return {"hello": "world"}
"""

FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def root() -> str:
    return "hello"
"""

# One module with both: the server's interface decides which app it serves (granian --interface).
BOTH_APP = """\
from fastapi import FastAPI
from flask import Flask

app = Flask(__name__)
api = FastAPI()


@app.get("/")
def root() -> str:
    return "hello"
"""

SANIC_APP = """\
from sanic import Sanic
from sanic.response import text

app = Sanic("portinspect_test")


@app.get("/")
async def root(request: object) -> object:
    return text("hello")
"""

TORNADO_APP = """\
import sys

import tornado.ioloop
import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


tornado.web.Application([(r"/", Hello)]).listen(int(sys.argv[1]), address="127.0.0.1")
tornado.ioloop.IOLoop.current().start()
"""

BOTTLE_APP = """\
import bottle

app = bottle.Bottle()


@app.get("/")
def root() -> str:
    return "hello"
"""

DJANGO_FILES = {
    "manage.py": """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "proj/__init__.py": "",
    "proj/settings.py": """\
SECRET_KEY = "tests-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "proj.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
""",
    "proj/urls.py": """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("hello"))]
""",
}


@dataclass(frozen=True)
class Recipe:
    """How to start one kind of server and how to tell it is fully up."""

    name: str
    argv: Callable[[int, Path], list[str]]  # (port, project dir) -> argv
    files: dict[str, str] = field(default_factory=dict)  # project files to write first
    holders: int = 1  # processes holding the listening socket once it is up
    leader_holds: bool = True  # False for Django: only its reloader child holds the socket
    env: Callable[[Path], dict[str, str]] = lambda _dir: {}


def _jupyter_env(root: Path) -> dict[str, str]:
    # Nothing may leak into the real $HOME: runtime files, config, data, IPython profile.
    dirs = {
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "IPYTHONDIR": "ipython",
        "HOME": "home",
    }
    env = {}
    for var, sub in dirs.items():
        (root / sub).mkdir(exist_ok=True)
        env[var] = str(root / sub)
    return env


def _jupyter_argv(port: int, root: Path) -> list[str]:
    # port_retries=0: if the port was taken after we picked it, fail (and get retried)
    # instead of quietly serving on port + 1.
    return script(
        "jupyter", "server", "--port", str(port), "--ip", HOST, "--no-browser",
        "--ServerApp.token=", "--allow-root", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
    )  # fmt: skip


NPM_PACKAGE = json.dumps(
    {
        "name": "portinspect-test",
        "private": True,
        "scripts": {"serve": f"{shlex.quote(sys.executable)} -m http.server --bind {HOST}"},
    }
)


def _npm_env(root: Path) -> dict[str, str]:
    # No update check (no network here) and npm's cache and logs under the test's directory.
    return {"npm_config_update_notifier": "false", "npm_config_cache": str(root / ".npm")}


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def script(name: str, *args: str) -> list[str]:
    return [str(BIN / name), *args]


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("http.server", lambda port, _d: _py("-m", "http.server", str(port), "--bind", HOST)),
        Recipe(
            "django",
            lambda port, _d: _py("manage.py", "runserver", f"{HOST}:{port}"),
            files=DJANGO_FILES,
            leader_holds=False,
        ),
        Recipe(
            "uvicorn",
            lambda port, _d: script("uvicorn", "main:app", "--host", HOST, "--port", str(port)),
            files={"main.py": FASTAPI_APP},
        ),
        Recipe(
            "uvicorn-reload",
            lambda port, _d: script(
                "uvicorn", "main:app", "--reload", "--host", HOST, "--port", str(port)
            ),
            files={"main.py": FASTAPI_APP},
            holders=2,
        ),
        Recipe(
            "uvicorn-workers",
            lambda port, _d: script(
                "uvicorn", "main:app", "--workers", "2", "--host", HOST, "--port", str(port)
            ),
            files={"main.py": FASTAPI_APP},
            holders=3,
        ),
        Recipe(
            "flask-debug",
            lambda port, _d: script(
                "flask", "--app", "app", "run", "--debug", "--port", str(port), "--host", HOST
            ),
            files={"app.py": FLASK_APP},
            holders=2,
        ),
        Recipe(
            "gunicorn",
            lambda port, _d: script("gunicorn", "-w", "2", "-b", f"{HOST}:{port}", "app:app"),
            files={"app.py": FLASK_APP},
            holders=3,
        ),
        Recipe("jupyter", _jupyter_argv, env=_jupyter_env),
        # Recognition of more servers (tests/test_frameworks_real.py): one start each.
        Recipe(
            "hypercorn",
            lambda port, _d: script("hypercorn", "-b", f"{HOST}:{port}", "main:app"),
            files={"main.py": FASTAPI_APP},
            holders=2,  # the master and its one spawned worker
        ),
        Recipe(
            "daphne",
            lambda port, _d: script("daphne", "-b", HOST, "-p", str(port), "main:app"),
            files={"main.py": FASTAPI_APP},
        ),
        Recipe(
            "waitress",
            lambda port, _d: script("waitress-serve", f"--listen={HOST}:{port}", "app:app"),
            files={"app.py": FLASK_APP},
        ),
        # granian's workers each bind a socket of their own; the master holds none.
        Recipe(
            "granian-wsgi",
            lambda port, _d: script(
                "granian", "--interface", "wsgi", "--host", HOST, "--port", str(port), "both:app"
            ),
            files={"both.py": BOTH_APP},
            leader_holds=False,
        ),
        Recipe(
            "sanic",
            lambda port, _d: script("sanic", "app:app", "--host", HOST, "--port", str(port)),
            files={"app.py": SANIC_APP},
            holders=2,  # the main process and its server worker
        ),
        Recipe(
            "bottle",
            lambda port, _d: _py("-m", "bottle", "--bind", f"{HOST}:{port}", "app:app"),
            files={"app.py": BOTTLE_APP},
        ),
        Recipe(
            "tornado",
            lambda port, _d: _py("app.py", str(port)),
            files={"app.py": TORNADO_APP},
        ),
        # `npm run serve`: npm starts `sh -c` with the script, which starts the server; npm
        # itself holds nothing (research §2.2). Needs node and npm, never the registry.
        Recipe(
            "npm-run",
            lambda port, _d: ["npm", "run", "--silent", "serve", "--", str(port)],
            files={"package.json": NPM_PACKAGE},
            leader_holds=False,
            env=_npm_env,
        ),
    )
}


@dataclass
class Server:
    """A running server: its session leader (the pid we started) and its project dir."""

    recipe: Recipe
    port: int
    cwd: Path
    popen: subprocess.Popen[bytes]
    log: Path
    leader: psutil.Process
    # Every process seen in the tree, keyed by (pid, create_time): a pid alone may be reused.
    seen: dict[tuple[int, float], psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.leader.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def record_tree(self) -> list[psutil.Process]:
        """The leader and its descendants now, remembered for cleanup."""
        try:
            members = [self.leader, *self.leader.children(recursive=True)]
        except psutil.Error:
            members = []
        for proc in members:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault((proc.pid, proc.create_time()), proc)
        return members

    def holders(self) -> set[int]:
        """pids in the server's tree that hold its listening socket."""
        return {p.pid for p in self.record_tree() if listens(p, self.port)}


class ServerFailed(AssertionError):
    pass


def free_port() -> int:
    """A port leased for the server (see running()): nobody else binds it while it is held."""
    return lease_port()


def listens(proc: psutil.Process, port: int) -> bool:
    """proc holds the server's own socket: TCP, listening, on HOST and this port."""
    try:
        conns = proc.net_connections(kind="tcp4")
    except psutil.Error:
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and tuple(c.laddr) == (HOST, port) for c in conns
    )


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _env(recipe: Recipe, cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(recipe.env(cwd))
    return env


def _write_files(cwd: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = cwd / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _launch(recipe: Recipe, cwd: Path, attempt: int) -> Server:
    port = free_port()  # looked up at call time: a test replaces it to offer a taken port
    log = cwd / f".server-{attempt}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            recipe.argv(port, cwd),
            cwd=cwd,
            env=_env(recipe, cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: no terminal signals from the test run
        )
    leader = psutil.Process(popen.pid)
    server = Server(recipe, port, cwd, popen, log, leader)
    server.record_tree()
    return server


def _ready(server: Server) -> bool:
    if not accepts(server.port):
        return False
    holders = server.holders()
    if server.recipe.leader_holds != (server.pid in holders):
        return False
    return len(holders) >= server.recipe.holders


def _wait_ready(server: Server, deadline: float) -> None:
    """Poll until the server is up; raise ServerFailed if it exits, TimeoutError if too slow."""
    delay = 0.02
    while not _ready(server):
        if server.popen.poll() is not None:
            raise ServerFailed(
                f"{server.recipe.name} exited with {server.popen.returncode} on port "
                f"{server.port}:\n{server.output()}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{server.recipe.name} was not up on port {server.port} after "
                f"{START_TIMEOUT:.0f}s (holders {sorted(server.holders())}, expected "
                f"{server.recipe.holders}):\n{server.output()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    server.record_tree()


def stop(server: Server) -> None:
    """SIGTERM every process of the tree, then SIGKILL what is left; by pid and create time.

    The tree is what we recorded plus the leader's descendants now (a respawned worker).
    psutil.Process checks create_time before signalling, so a reused pid is never hit.
    """
    server.record_tree()
    procs = list(server.seen.values())
    _signal_all(procs, kill=False)
    alive = _wait_gone(procs, TERM_TIMEOUT)
    if alive:
        _signal_all(alive, kill=True)
        alive = _wait_gone(alive, KILL_TIMEOUT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.popen.wait(timeout=KILL_TIMEOUT)  # reap the leader: it is our child
    if alive:
        raise AssertionError(f"{server.recipe.name}: could not stop {[p.pid for p in alive]}")


def _signal_all(procs: Iterable[psutil.Process], *, kill: bool) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if kill:
                proc.kill()
            else:
                proc.terminate()


def gone(proc: psutil.Process) -> bool:
    # A zombie has exited; its parent (or init) reaps it, we need not wait for that.
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if not gone(p)]
    return alive


@contextlib.contextmanager
def running(recipe: Recipe, cwd: Path) -> Iterator[Server]:
    """Start the server, yield it once it is fully up, and always stop its whole tree.

    Its port stays leased until the tree is stopped. A process that does not lease (the
    user's own server) could still take it first; a server that exits during start-up is
    retried once on a new port.
    """
    _write_files(cwd, recipe.files)
    deadline = time.monotonic() + START_TIMEOUT
    with lease_scope():
        for attempt in (1, 2):
            server = _launch(recipe, cwd, attempt)
            try:
                _wait_ready(server, deadline)
            except ServerFailed:
                stop(server)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                stop(server)
                raise
            try:
                yield server
            finally:
                stop(server)
            return
