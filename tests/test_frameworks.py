"""Pure recognition of dev servers from command lines and process trees.

Command lines are the exact ones measured in research/frameworks.md §2.3 (`V` stands for
the venv's bin directory). Every tree hangs below an interactive shell in an ssh session,
like a developer's terminal, so the app-root walk has somewhere to stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from portinspect.appspec import SourceReader, app_source_paths, framework_from_source
from portinspect.apptree import AppModel, roles_of
from portinspect.catalogue import ASGI, WSGI
from portinspect.cmdline import normalise_argv, parse_command
from portinspect.managers import container_proxy
from portinspect.models import Family, PortKey, ProcessInfo, Proto, Snapshot, Socket
from portinspect.signatures import describe, is_boundary, is_protected

V = "/home/dev/proj/.venv/bin"
CWD = "/home/dev/proj"
PAD = ("",) * 50  # setproctitle / process.title padding
SHELL = 12  # the interactive bash every app below was started from

FASTAPI_SRC = "from fastapi import FastAPI\n\napp = FastAPI()\n"
FLASK_SRC = "import os\nfrom flask import Flask\n\napp = Flask(__name__)\n"
DASH_SRC = "from dash import Dash, html\nimport flask\n\napp = Dash(__name__)\n"


def proc(
    pid: int,
    ppid: int | None,
    *cmdline: str,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    cwd: str | None = CWD,
) -> ProcessInfo:
    return ProcessInfo(
        pid=pid,
        ppid=ppid,
        name=name or "python3",  # comm is useless for detection: tests make it misleading
        user="dev",
        cmdline=cmdline,
        cwd=cwd,
        env=dict(env or {}),
    )


BASE = (
    proc(1, 0, "/sbin/init", name="systemd", cwd="/"),
    proc(10, 1, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", name="sshd"),
    proc(11, 10, "sshd: dev@pts/0", name="sshd"),
    proc(SHELL, 11, "-bash", name="bash"),
)


@dataclass(frozen=True)
class AppIdentity:
    """What list shows for one socket: the main app's framework, server and top, and the
    role of every process the app model took in (tests/test_apptree.py has the rest)."""

    framework: str | None = None
    server: str | None = None
    app_pid: int | None = None
    roles: Mapping[int, str] = field(default_factory=dict)


def model_for(
    holders: Iterable[int],
    processes: Mapping[int, ProcessInfo],
    stop_pids: frozenset[int] = frozenset(),
    read_source: SourceReader | None = None,
    held: Mapping[int, frozenset[PortKey]] | None = None,
) -> tuple[AppModel, Socket]:
    sock = Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 8000, pids=tuple(sorted(set(holders))))
    snapshot = Snapshot((sock,), processes, self_lineage=stop_pids, held=dict(held or {}))
    return AppModel(snapshot, read_source), sock


def identify_app(
    holders: Iterable[int],
    processes: Mapping[int, ProcessInfo],
    stop_pids: frozenset[int] = frozenset(),
    read_source: SourceReader | None = None,
) -> AppIdentity:
    model, sock = model_for(holders, processes, stop_pids, read_source)
    apps = model.apps([sock])
    if not apps:
        return AppIdentity()
    main = apps[0]
    return AppIdentity(main.framework, main.server, main.top, roles_of(apps))


def tree_roles(holders: Iterable[int], processes: Mapping[int, ProcessInfo]) -> dict[int, str]:
    """Roles of every process in the holders' apps, descendants included (who, kill)."""
    model, sock = model_for(holders, processes)
    apps = model.apps([sock], trees=True)
    return {m.process.pid: m.role for app in apps for m in app.members if m.role is not None}


def world(*procs: ProcessInfo) -> dict[int, ProcessInfo]:
    return {p.pid: p for p in (*BASE, *procs)}


def source(name: str, text: str) -> SourceReader:
    """A fake read_source that knows one file in the project directory."""
    return {f"{CWD}/{name}": text}.get


# ---------------------------------------------------------------------------------------
# Command lines
# ---------------------------------------------------------------------------------------


def test_padding_is_stripped_and_a_title_is_split() -> None:
    assert normalise_argv(("gunicorn: master [wsgi_app:app]", *PAD)) == (
        "gunicorn:",
        "master",
        "[wsgi_app:app]",
    )
    assert normalise_argv(("npm run dev", *PAD)) == ("npm", "run", "dev")
    assert normalise_argv(("http-server", *PAD)) == ("http-server",)
    # A path with spaces is a path, not a title (macOS app bundles).
    helper = "/Applications/OrbStack.app/Contents/MacOS/OrbStack Helper"
    assert normalise_argv((helper,)) == (helper,)


@pytest.mark.parametrize(
    ("cmdline", "runtime", "program", "args"),
    [
        (f"{V}/python3 {V}/uvicorn m:app", "python", "uvicorn", "m:app"),
        ("python -m uvicorn m:app", "python", "uvicorn", "m:app"),
        ("python3 -B -u -X dev -W ignore -m flask run", "python", "flask", "run"),
        ("python3 -Wignore -um http.server 80", "python", "http.server", "80"),
        ("python3 -mflask run", "python", "flask", "run"),
        ("python ./manage.py runserver", "python", "manage", "runserver"),
        (
            r"C:\venv\Scripts\python.exe C:\venv\Scripts\uvicorn.exe m:app",
            "python",
            "uvicorn",
            "m:app",
        ),
        (r"C:\venv\Scripts\uvicorn.exe m:app", None, "uvicorn", "m:app"),
        ("python3.11", "python", "python", ""),
        (
            "node --inspect -r dotenv/config /p/node_modules/.bin/vite --port 1",
            "node",
            "vite",
            "--port 1",
        ),
        ("node /p/node_modules/vite/bin/vite.js", "node", "vite", ""),
        # npm's script is npm-cli.js: the catalogue's npm row lists both names.
        ("node /usr/lib/node_modules/npm/bin/npm-cli.js run dev", "node", "npm-cli", "run dev"),
        ("-bash", None, "bash", ""),
    ],
)
def test_parse_command_finds_the_program(
    cmdline: str, runtime: str | None, program: str, args: str
) -> None:
    cmd = parse_command(cmdline.split())
    assert (cmd.runtime, cmd.program, cmd.args) == (runtime, program, tuple(args.split()))


def test_inline_code_is_kept() -> None:
    cmd = parse_command(["python3", "-B", "-c", "from multiprocessing.spawn import spawn_main"])
    assert cmd.program == "-c"
    assert cmd.code == "from multiprocessing.spawn import spawn_main"


@pytest.mark.parametrize(
    ("cmdline", "framework", "server"),
    [
        (["python", "manage.py", "runserver", "127.0.0.1:8001"], "django", "runserver"),
        ([f"{V}/django-admin", "runserver"], "django", "runserver"),
        (["python", "-m", "django", "runserver"], "django", "runserver"),
        (["python", "manage.py", "runserver_plus"], "django", "werkzeug"),
        (["python", "manage.py", "migrate"], "django", None),
        ([f"{V}/python3", f"{V}/flask", "--app", "run", "run"], "flask", "werkzeug"),
        ([f"{V}/python3", f"{V}/flask", "--app", "x", "routes"], "flask", None),
        ([f"{V}/python3", f"{V}/fastapi", "run", "m.py"], "fastapi", "uvicorn"),
        ([f"{V}/python3", f"{V}/hypercorn", "m:app"], None, "hypercorn"),
        ([f"{V}/python3", f"{V}/jupyter", "lab"], "jupyter", "jupyter"),
        ([f"{V}/python3", f"{V}/jupyter", "nbconvert", "x.ipynb"], "jupyter", None),
        (["python", "-m", "jupyterlab"], "jupyter", "jupyter"),
        (["python", "-m", "streamlit", "run", "a.py"], "streamlit", "streamlit"),
        ([f"{V}/python3", f"{V}/mkdocs", "serve"], "mkdocs", "mkdocs"),
        (["node", "/p/node_modules/.bin/vite", "build"], None, None),
        (["node", "/p/node_modules/.bin/vite", "preview"], None, "vite"),
        (["node", "/p/node_modules/.bin/next", "dev"], "next", "next"),
        (["node", "/p/node_modules/.bin/next", "build"], "next", None),
        (["node", "/p/node_modules/@angular/cli/bin/ng.js", "serve"], "angular", "ng"),
        (["node", "srv.js"], None, "node"),
        (["python", "serve.py"], None, None),  # not the npm `serve` package
        (["nginx: master process /usr/sbin/nginx"], None, "nginx"),
        (["python", "app.py"], None, None),
    ],
)
def test_describe(cmdline: list[str], framework: str | None, server: str | None) -> None:
    sig = describe(proc(100, SHELL, *cmdline))
    assert (sig.framework, sig.server) == (framework, server)


def test_describe_never_uses_the_process_name() -> None:
    # comm of `jupyter notebook` is the truncated "jupyter-noteboo"; of a reloader child, "python3".
    notebook = proc(100, SHELL, f"{V}/python3", f"{V}/jupyter-notebook", name="jupyter-noteboo")
    assert describe(notebook).server == "jupyter"
    assert describe(proc(100, SHELL, "python", "x.py", name="uvicorn")).server is None


def test_python_scripts_named_like_tools_are_not_those_tools() -> None:
    assert not is_boundary(proc(100, SHELL, "python", "code.py"))
    assert not is_boundary(proc(100, SHELL, "python", "sh.py"))
    assert is_boundary(proc(100, 1, f"{V}/python3", f"{V}/supervisord"))


# ---------------------------------------------------------------------------------------
# Django
# ---------------------------------------------------------------------------------------

DJANGO = world(
    proc(100, SHELL, "python", "manage.py", "runserver", "127.0.0.1:8001"),
    proc(
        101,
        100,
        f"{V}/python",
        "manage.py",
        "runserver",
        "127.0.0.1:8001",
        env={"RUN_MAIN": "true"},
    ),
)


def test_django_reloader_and_child() -> None:
    app = identify_app([101], DJANGO)
    assert app == AppIdentity("django", "runserver", 100, {100: "reloader", 101: "server"})


def test_django_shebang_manage_py() -> None:
    processes = world(
        proc(100, SHELL, "python", "./manage.py", "runserver", "127.0.0.1:8021"),
        proc(101, 100, f"{V}/python", "./manage.py", "runserver", "127.0.0.1:8021"),
    )
    app = identify_app([101], processes)
    assert (app.framework, app.server, app.app_pid) == ("django", "runserver", 100)


def test_django_child_is_found_by_its_env_when_argv_differs() -> None:
    processes = world(
        proc(100, SHELL, "python", "manage.py", "runserver"),
        proc(
            101,
            100,
            f"{V}/python",
            "-W",
            "ignore",
            "manage.py",
            "runserver",
            env={"RUN_MAIN": "true"},
        ),
    )
    assert identify_app([101], processes).app_pid == 100


def test_django_noreload_is_a_single_server() -> None:
    processes = world(proc(100, SHELL, "python", "manage.py", "runserver", "--noreload"))
    assert identify_app([100], processes) == AppIdentity(
        "django", "runserver", 100, {100: "server"}
    )


# ---------------------------------------------------------------------------------------
# uvicorn and FastAPI
# ---------------------------------------------------------------------------------------

SPAWN = "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)"
TRACKER = "from multiprocessing.resource_tracker import main;main(4)"
UVICORN = (f"{V}/python3", f"{V}/uvicorn", "fa_main:app", "--host", "127.0.0.1", "--port", "8002")


def spawn_child(pid: int, ppid: int) -> ProcessInfo:
    return proc(pid, ppid, f"{V}/python3", "-B", "-c", SPAWN, "--multiprocessing-fork")


def tracker(pid: int, ppid: int) -> ProcessInfo:
    return proc(pid, ppid, f"{V}/python3", "-B", "-c", TRACKER)


@pytest.mark.parametrize(
    "cmdline",
    [UVICORN, ("python", "-m", "uvicorn", "fa_main:app", "--host", "127.0.0.1", "--port", "8012")],
)
def test_uvicorn_single_process_reads_the_app_module(cmdline: tuple[str, ...]) -> None:
    processes = world(proc(100, SHELL, *cmdline))
    assert identify_app(
        [100], processes, read_source=source("fa_main.py", FASTAPI_SRC)
    ) == AppIdentity("fastapi", "uvicorn", 100, {100: "server"})
    # Without the source only the server is known.
    assert identify_app([100], processes).framework is None


def test_uvicorn_app_dir_and_package_module() -> None:
    processes = world(
        proc(100, SHELL, f"{V}/python3", f"{V}/uvicorn", "api.main:app", "--app-dir", "src")
    )
    files = {f"{CWD}/src/api/main.py": FASTAPI_SRC}
    assert identify_app([100], processes, read_source=files.get).framework == "fastapi"


def test_uvicorn_factory_in_a_package_init() -> None:
    processes = world(
        proc(100, SHELL, f"{V}/python3", f"{V}/uvicorn", "--factory", "web:create_app")
    )
    files = {f"{CWD}/web/__init__.py": "from starlette.applications import Starlette\n"}
    assert identify_app([100], processes, read_source=files.get).framework == "starlette"


UVICORN_RELOAD = world(
    proc(100, SHELL, *UVICORN, "--reload"),
    tracker(101, 100),
    spawn_child(102, 100),
)


@pytest.mark.parametrize("holders", [[100, 102], [102]], ids=["all-sharers", "psutil-pid-only"])
def test_uvicorn_reload_supervisor_and_server(holders: list[int]) -> None:
    app = identify_app(holders, UVICORN_RELOAD, read_source=source("fa_main.py", FASTAPI_SRC))
    # --reload is a real reloader: it restarts the server child on code changes.
    assert app == AppIdentity("fastapi", "uvicorn", 100, {100: "reloader", 102: "server"})
    assert tree_roles(holders, UVICORN_RELOAD)[101] == "resource_tracker"


def test_uvicorn_reload_supervisor_alone_is_still_a_supervisor() -> None:
    # The zombie port: the server child died, the supervisor keeps the socket.
    processes = world(proc(100, SHELL, *UVICORN, "--reload"), tracker(101, 100))
    assert identify_app([100], processes).roles == {100: "reloader"}


def test_python_m_uvicorn_reload() -> None:
    processes = world(
        proc(100, SHELL, "python", "-m", "uvicorn", "fa_main:app", "--reload"),
        tracker(101, 100),
        spawn_child(102, 100),
    )
    app = identify_app([100, 102], processes)
    assert (app.server, app.app_pid, app.roles) == (
        "uvicorn",
        100,
        {100: "reloader", 102: "server"},
    )


def test_uvicorn_workers() -> None:
    processes = world(
        proc(100, SHELL, *UVICORN, "--workers", "2"),
        tracker(101, 100),
        spawn_child(102, 100),
        spawn_child(103, 100),
    )
    app = identify_app([100, 102, 103], processes)
    # The --workers parent holds the socket its spawned workers share: a master.
    assert app == AppIdentity(None, "uvicorn", 100, {100: "master", 102: "worker", 103: "worker"})
    assert identify_app([103], processes).app_pid == 100


def test_fastapi_dev() -> None:
    processes = world(
        proc(
            100,
            SHELL,
            f"{V}/python3",
            f"{V}/fastapi",
            "dev",
            "fa_main.py",
            "--host",
            "127.0.0.1",
            "--port",
            "8042",
        ),
        tracker(101, 100),
        spawn_child(102, 100),
    )
    app = identify_app([100, 102], processes)
    assert app == AppIdentity("fastapi", "uvicorn", 100, {100: "reloader", 102: "server"})


def test_uv_run_is_a_wrapper_of_the_app() -> None:
    processes = world(
        proc(90, SHELL, "uv", "run", "uvicorn", "fa_main:app", "--reload"),
        proc(100, 90, f"{V}/python3", f"{V}/uvicorn", "fa_main:app", "--reload"),
        spawn_child(102, 100),
    )
    app = identify_app([100, 102], processes)
    assert app.app_pid == 90
    assert app.roles == {90: "wrapper", 100: "reloader", 102: "server"}
    # portinspect running under that same `uv run` must not take it into the app.
    assert identify_app([100, 102], processes, stop_pids=frozenset({90, SHELL})).app_pid == 100


def test_uvicorn_in_a_notebook_kernel_is_the_kernels_not_jupyters() -> None:
    processes = world(
        proc(100, SHELL, f"{V}/python3", f"{V}/jupyter-lab", "--port", "8888"),
        proc(
            200,
            100,
            f"{V}/python3",
            "-m",
            "ipykernel_launcher",
            "-f",
            "/r/kernel-1.json",
            env={"JPY_PARENT_PID": "100"},
        ),
        spawn_child(201, 200),
    )
    assert identify_app([200], processes) == AppIdentity("jupyter", "kernel", 200, {200: "kernel"})
    # A spawn child of a kernel is not taken into the kernel: stopping it would lose the notebook.
    assert identify_app([201], processes).app_pid == 201


# ---------------------------------------------------------------------------------------
# gunicorn
# ---------------------------------------------------------------------------------------

GUNICORN_ARGS = ("-w", "2", "-b", "127.0.0.1:8024", "wsgi_app:app")


def gunicorn_titled() -> dict[int, ProcessInfo]:
    return world(
        proc(100, SHELL, "gunicorn: master [wsgi_app:app]", *PAD, name="gunicorn: maste"),
        proc(101, 100, "gunicorn: worker [wsgi_app:app]", *PAD, name="gunicorn: worke"),
        proc(102, 100, "gunicorn: worker [wsgi_app:app]", *PAD, name="gunicorn: worke"),
    )


def gunicorn_plain(*args: str) -> dict[int, ProcessInfo]:
    cmd = (f"{V}/python3", f"{V}/gunicorn", *args)
    return world(proc(100, SHELL, *cmd), proc(101, 100, *cmd), proc(102, 100, *cmd))


@pytest.mark.parametrize(
    "processes", [gunicorn_titled(), gunicorn_plain(*GUNICORN_ARGS)], ids=["setproctitle", "plain"]
)
@pytest.mark.parametrize(
    "holders", [[100, 101, 102], [102]], ids=["all-sharers", "psutil-pid-only"]
)
def test_gunicorn_master_and_workers(processes: dict[int, ProcessInfo], holders: list[int]) -> None:
    app = identify_app(holders, processes, read_source=source("wsgi_app.py", FLASK_SRC))
    assert (app.framework, app.server, app.app_pid) == ("flask", "gunicorn", 100)
    assert app.roles[100] == "master"
    assert app.roles[102] == "worker"
    assert tree_roles(holders, processes)[101] == "worker"


def test_gunicorn_worker_class_decides_between_asgi_and_wsgi() -> None:
    both = "from fastapi import FastAPI\nfrom flask import Flask\n"
    read = source("fa_main.py", both)
    asgi = gunicorn_plain("-w", "2", "-k", "uvicorn.workers.UvicornWorker", "fa_main:app")
    wsgi = gunicorn_plain("-w", "2", "fa_main:app")
    assert identify_app([100, 101, 102], asgi, read_source=read).framework == "fastapi"
    assert identify_app([100, 101, 102], wsgi, read_source=read).framework == "flask"


def test_gunicorn_django_project_module() -> None:
    processes = gunicorn_plain("--workers", "3", "mysite.wsgi")
    files = {f"{CWD}/mysite/wsgi.py": "from django.core.wsgi import get_wsgi_application\n"}
    app = identify_app([100, 101, 102], processes, read_source=files.get)
    assert (app.framework, app.server) == ("django", "gunicorn")


# ---------------------------------------------------------------------------------------
# Flask, werkzeug, Dash
# ---------------------------------------------------------------------------------------

WERKZEUG_CHILD = {"WERKZEUG_RUN_MAIN": "true", "WERKZEUG_SERVER_FD": "5"}
FLASK_RUN = ("--app", "flask_app", "run", "--debug", "--host", "127.0.0.1", "--port", "8005")


@pytest.mark.parametrize(
    ("parent", "child"),
    [
        ((f"{V}/python3", f"{V}/flask", *FLASK_RUN), (f"{V}/python3", f"{V}/flask", *FLASK_RUN)),
        (("python", "-m", "flask", *FLASK_RUN), (f"{V}/python", "-m", "flask", *FLASK_RUN)),
    ],
    ids=["flask-script", "python-m-flask"],
)
def test_flask_reloader_pair(parent: tuple[str, ...], child: tuple[str, ...]) -> None:
    processes = world(proc(100, SHELL, *parent), proc(101, 100, *child, env=WERKZEUG_CHILD))
    for holders in ([100, 101], [101]):
        app = identify_app(holders, processes)
        assert app == AppIdentity("flask", "werkzeug", 100, {100: "reloader", 101: "server"})


def test_dash_pair_is_recognised_from_env_and_source() -> None:
    processes = world(
        proc(100, SHELL, "python", "dash_app.py", "--debug"),
        proc(101, 100, f"{V}/python", "dash_app.py", "--debug", env=WERKZEUG_CHILD),
    )
    app = identify_app([100, 101], processes, read_source=source("dash_app.py", DASH_SRC))
    assert app == AppIdentity("dash", "werkzeug", 100, {100: "reloader", 101: "server"})
    assert identify_app([101], processes).framework is None  # no source, no framework token


def test_plain_python_script_framework_comes_from_its_source() -> None:
    processes = world(proc(100, SHELL, "python", "app.py"))
    app = identify_app([100], processes, read_source=source("app.py", FLASK_SRC))
    assert (app.framework, app.server, app.roles) == ("flask", None, {100: "server"})


# ---------------------------------------------------------------------------------------
# Jupyter, Streamlit, http.server
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["jupyter-server", "jupyter-lab", "jupyter-notebook"])
def test_jupyter_and_its_kernel(script: str) -> None:
    processes = world(
        proc(100, SHELL, f"{V}/python3", f"{V}/{script}", "--port", "8888", name=script[:15]),
        proc(
            101,
            100,
            f"{V}/python3",
            "-m",
            "ipykernel_launcher",
            "-f",
            "/r/kernel-1.json",
            env={"JPY_PARENT_PID": "100"},
        ),
    )
    app = identify_app([100], processes)
    assert app == AppIdentity("jupyter", "jupyter", 100, {100: "server"})
    assert tree_roles([100], processes)[101] == "kernel"


def test_jupyter_dispatcher_on_windows_is_a_wrapper() -> None:
    # On Windows `jupyter lab` starts jupyter-lab as a child instead of exec'ing it.
    processes = world(
        proc(90, SHELL, r"C:\venv\Scripts\jupyter.exe", "lab"),
        proc(100, 90, r"C:\venv\Scripts\python.exe", r"C:\venv\Scripts\jupyter-lab-script.py"),
    )
    app = identify_app([100], processes)
    assert (app.framework, app.server, app.app_pid) == ("jupyter", "jupyter", 90)
    assert app.roles == {90: "wrapper", 100: "server"}


def test_streamlit() -> None:
    processes = world(
        proc(
            100,
            SHELL,
            f"{V}/python3",
            f"{V}/streamlit",
            "run",
            "st_app.py",
            "--server.port",
            "8501",
        )
    )
    assert identify_app([100], processes) == AppIdentity(
        "streamlit", "streamlit", 100, {100: "server"}
    )


def test_http_server() -> None:
    processes = world(
        proc(100, SHELL, "python", "-m", "http.server", "8003", "--bind", "127.0.0.1")
    )
    assert identify_app([100], processes) == AppIdentity(None, "http.server", 100, {100: "server"})


# ---------------------------------------------------------------------------------------
# node, npm and npx
# ---------------------------------------------------------------------------------------

VITE_ARGS = ("--host", "127.0.0.1", "--port", "5173", "--strictPort")


@pytest.mark.parametrize(
    ("wrapper", "event"),
    [(("npm exec vite " + " ".join(VITE_ARGS),), "npx"), (("npm run dev",), "dev")],
    ids=["npx-vite", "npm-run-dev"],
)
def test_npm_chains_up_to_npm(wrapper: tuple[str, ...], event: str) -> None:
    processes = world(
        proc(100, SHELL, *wrapper, *PAD, name="npm " + event),
        proc(101, 100, "sh", "-c", "vite " + " ".join(VITE_ARGS), name="sh"),
        proc(
            102,
            101,
            "node",
            "/home/dev/proj/node_modules/.bin/vite",
            *VITE_ARGS,
            name="node",
            env={"npm_lifecycle_event": event},
        ),
    )
    app = identify_app([102], processes)
    assert app == AppIdentity(None, "vite", 100, {100: "wrapper", 101: "wrapper", 102: "server"})


def test_npx_http_server_retitled() -> None:
    processes = world(
        proc(100, SHELL, "npm exec http-server site", *PAD, name="npm exec http-"),
        proc(101, 100, "sh", "-c", "http-server site", name="sh"),
        proc(102, 101, "http-server", *PAD, name="http-server"),
    )
    app = identify_app([102], processes)
    assert (app.server, app.app_pid) == ("http-server", 100)


def test_plain_node() -> None:
    processes = world(proc(100, SHELL, "node", "srv.js", name="node"))
    assert identify_app([100], processes) == AppIdentity(None, "node", 100, {100: "server"})


def test_node_cluster_primary_holds_the_socket() -> None:
    processes = world(
        proc(100, SHELL, "node", "cluster.js", name="node"),
        proc(101, 100, "node", "cluster.js", name="node"),
        proc(102, 100, "node", "cluster.js", name="node"),
    )
    assert identify_app([100], processes) == AppIdentity(None, "node", 100, {100: "server"})


def test_sh_c_outside_a_launcher_is_not_the_app() -> None:
    # make -> sh -c "python manage.py runserver": stopping make or its shell is not our call.
    processes = world(
        proc(90, SHELL, "make", "serve", name="make"),
        proc(91, 90, "/bin/sh", "-c", "python manage.py runserver", name="sh"),
        proc(100, 91, "python", "manage.py", "runserver"),
        proc(101, 100, f"{V}/python", "manage.py", "runserver", env={"RUN_MAIN": "true"}),
    )
    assert identify_app([101], processes).app_pid == 100


# ---------------------------------------------------------------------------------------
# Where the app-root walk stops
# ---------------------------------------------------------------------------------------

HTTP = ("python", "-m", "http.server", "8000")


@pytest.mark.parametrize(
    "parent",
    [
        proc(50, 1, "bash", name="bash"),
        proc(50, 1, "/usr/bin/zsh", "-l", name="zsh"),
        proc(50, 1, "fish", name="fish"),
        proc(50, 1, "tmux", "new", "-s", "dev", name="tmux: server"),
        proc(50, 1, "SCREEN", "-S", "x", name="screen"),
        proc(50, 1, "sshd: dev@pts/1", name="sshd"),
        proc(50, 1, "/usr/lib/systemd/systemd", "--user", name="systemd"),
        proc(50, 1, "/usr/bin/gnome-terminal-server", name="gnome-terminal-"),
        proc(50, 1, "/usr/bin/xfce4-terminal", name="xfce4-terminal"),
        proc(50, 1, "/usr/bin/python3", "/usr/bin/supervisord", "-n", name="supervisord"),
        proc(
            50, 1, "/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", name="containerd-shim"
        ),
        proc(50, 1, "/usr/share/code/code", "--type=utility", name="code"),
    ],
    ids=lambda p: p.cmdline[0],
)
def test_walk_stops_at_shells_terminals_and_managers(parent: ProcessInfo) -> None:
    # Even a same-socket parent stops the walk if it is a shell or a manager: its copy of the
    # socket was inherited (a leaked descriptor), and it is never part of the app.
    processes = {1: BASE[0], 50: parent, 100: proc(100, 50, *HTTP)}
    assert identify_app([100], processes).app_pid == 100
    shared = identify_app([50, 100], processes)
    assert (shared.app_pid, shared.roles) == (100, {100: "server", 50: "inherited"})


def test_walk_stops_at_pid_1_and_at_a_missing_parent() -> None:
    assert identify_app([100], {100: proc(100, 1, *HTTP), 1: BASE[0]}).app_pid == 100
    orphan = {100: proc(100, 4242, *HTTP), 101: proc(101, 100, *HTTP)}
    assert identify_app([101], orphan).app_pid == 100


def test_walk_stops_at_stop_pids() -> None:
    # portinspect's own lineage is never part of an app, even a same-command parent.
    assert identify_app([101], DJANGO, stop_pids=frozenset({100})).app_pid == 101


def test_walk_stops_at_a_different_app() -> None:
    processes = world(proc(90, SHELL, *UVICORN), proc(100, 90, *HTTP))
    assert identify_app([100], processes).app_pid == 100


def test_bash_c_server_under_an_interactive_shell() -> None:
    processes = world(
        proc(90, SHELL, "bash", "-c", "python -m http.server 8000", name="bash"),
        proc(100, 90, *HTTP),
    )
    assert identify_app([100], processes).app_pid == 100


def test_no_visible_holder() -> None:
    assert identify_app([], {}) == AppIdentity()
    assert identify_app([4242], {}) == AppIdentity()  # hidden: no app, no top


def test_ppid_cycles_do_not_hang() -> None:
    loop = {100: proc(100, 101, *HTTP), 101: proc(101, 100, *HTTP)}
    assert identify_app([100], loop).app_pid in (100, 101)


# ---------------------------------------------------------------------------------------
# Protected processes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "process",
    [
        ProcessInfo(0, None, "swapper", "root"),
        ProcessInfo(1, 0, "systemd", "root", ("/sbin/init", "splash")),
        ProcessInfo(
            1, 0, "python", "root", ("python", "-m", "http.server")
        ),  # pid 1 of a container
        ProcessInfo(2, 0, "kthreadd", "root"),
        ProcessInfo(77, 2, "kworker/0:1", "root"),
        ProcessInfo(4, 0, "System", "SYSTEM"),
        ProcessInfo(
            600, 1, "sshd", "root", ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",)
        ),
        ProcessInfo(601, 600, "sshd", "root", ("sshd: dev@pts/0",)),
        ProcessInfo(700, 1, "dockerd", "root", ("/usr/bin/dockerd", "-H", "fd://")),
        ProcessInfo(701, 1, "containerd", "root", ("/usr/bin/containerd",)),
        ProcessInfo(
            702, 1, "containerd-shim", "root", ("/usr/bin/containerd-shim-runc-v2", "-id", "x")
        ),
        ProcessInfo(900, 1, "systemd", "dev", ("/usr/lib/systemd/systemd", "--user")),
        ProcessInfo(
            901, 1, "systemd-resolve", "systemd-resolve", ("/lib/systemd/systemd-resolved",)
        ),
        ProcessInfo(1, 0, "launchd", "root", ("/sbin/launchd",)),
        ProcessInfo(
            800, 4, "svchost.exe", "SYSTEM", (r"C:\Windows\system32\svchost.exe", "-k", "x")
        ),
    ],
    ids=lambda p: f"{p.pid}-{p.name}",
)
def test_protected(process: ProcessInfo) -> None:
    assert is_protected(process)
    assert is_boundary(process)


@pytest.mark.parametrize(
    "process",
    [
        ProcessInfo(3000, 12, "bash", "dev", ("bash",)),
        ProcessInfo(3001, 12, "tmux: server", "dev", ("tmux",)),
        ProcessInfo(3002, 12, "python", "dev", HTTP),
        ProcessInfo(3003, 700, "docker-proxy", "root", ("/usr/bin/docker-proxy", "-proto", "tcp")),
        ProcessInfo(4, 1, "python", "dev", HTTP),  # pid 4 on Linux (in a container) is just a pid
        ProcessInfo(2, 1, "python", "dev", HTTP),  # so is pid 2 in a pid namespace
        ProcessInfo(3004, 2, "python", "dev", HTTP),
        ProcessInfo(3005, 12, "sshfs", "dev", ("sshfs", "host:/", "/mnt")),
    ],
    ids=lambda p: f"{p.pid}-{p.name}",
)
def test_not_protected(process: ProcessInfo) -> None:
    assert not is_protected(process)


# ---------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------


def test_docker_proxy() -> None:
    cmd = (
        "/usr/bin/docker-proxy",
        "-proto",
        "tcp",
        "-host-ip",
        "0.0.0.0",
        "-host-port",
        "8080",
        "-container-ip",
        "172.17.0.2",
        "-container-port",
        "80",
        "-use-listen-fd",
    )
    found = container_proxy(ProcessInfo(700, 600, "docker-proxy", "root", cmd))
    assert found == {
        "proxy": "docker-proxy",
        "runtime": "docker",
        "cli": "docker",
        "proto": "tcp",
        "host_ip": "0.0.0.0",
        "host_port": 8080,
        "container_ip": "172.17.0.2",
        "container_port": 80,
    }


def test_docker_proxy_with_equals_flags_and_libexec_path() -> None:
    cmd = (
        "/usr/libexec/docker/docker-proxy",
        "--proto=tcp",
        "-host-ip=::",
        "-host-port=5432",
        "-container-ip=172.18.0.3",
        "-container-port=5432",
    )
    found = container_proxy(ProcessInfo(700, 600, None, "root", cmd))
    assert found is not None
    assert (found["host_ip"], found["host_port"], found["container_port"]) == ("::", 5432, 5432)


@pytest.mark.parametrize(
    ("cmdline", "runtime"),
    [
        (("rootlessport",), "podman"),
        (("/usr/libexec/podman/rootlessport",), "podman"),
        (("rootlesskit", "--net=slirp4netns", "--port-driver=builtin", "dockerd"), "rootless"),
    ],
)
def test_rootless_forwarders(cmdline: tuple[str, ...], runtime: str) -> None:
    found = container_proxy(ProcessInfo(800, 700, None, "dev", cmdline))
    assert found is not None
    assert found["runtime"] == runtime
    assert found["cli"] == ("podman" if runtime == "podman" else "docker")
    assert found["host_port"] is None


def test_not_a_container_proxy() -> None:
    assert container_proxy(ProcessInfo(100, 1, "python", "dev", HTTP)) is None
    assert container_proxy(ProcessInfo(100, 1, "docker-proxy", "root")) is None  # cmdline hidden


# ---------------------------------------------------------------------------------------
# Reading the app's source
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "interface", "expected"),
    [
        (FASTAPI_SRC, None, "fastapi"),
        (FLASK_SRC, None, "flask"),
        (DASH_SRC, None, "dash"),
        (
            "from fastapi import FastAPI\nfrom starlette.responses import Response\n",
            None,
            "fastapi",
        ),
        ("import os, flask\n", None, "flask"),
        ("import django.core.wsgi as w\n", None, "django"),
        ("from .app import app\n", None, None),
        ("# from fastapi import FastAPI\nx = 'import flask'\n", None, None),
        ("from fastapi import FastAPI\nfrom flask import Flask\n", ASGI, "fastapi"),
        ("from fastapi import FastAPI\nfrom flask import Flask\n", WSGI, "flask"),
    ],
)
def test_framework_from_source(text: str, interface: str | None, expected: str | None) -> None:
    assert framework_from_source(text, interface) == expected


@pytest.mark.parametrize(
    ("app", "cwd", "app_dir", "expected"),
    [
        ("main:app", "/p", None, ("/p/main.py", "/p/main/__init__.py", "/p/main/__main__.py")),
        (
            "pkg.mod:create_app()",
            "/p",
            "src",
            ("/p/src/pkg/mod.py", "/p/src/pkg/mod/__init__.py", "/p/src/pkg/mod/__main__.py"),
        ),
        ("app.py", "/p", None, ("/p/app.py",)),
        ("hello/app.py:create_app()", "/p", None, ("/p/hello/app.py",)),
        ("/abs/app.py", None, None, ("/abs/app.py",)),
        ("main:app", None, None, ()),
        (
            "main:app",
            None,
            "/srv/app",
            ("/srv/app/main.py", "/srv/app/main/__init__.py", "/srv/app/main/__main__.py"),
        ),
        ("not a module", "/p", None, ()),
    ],
)
def test_app_source_paths(
    app: str, cwd: str | None, app_dir: str | None, expected: tuple[str, ...]
) -> None:
    assert app_source_paths(app, cwd, app_dir) == expected


def test_unreadable_source_leaves_the_framework_unknown() -> None:
    processes = world(proc(100, SHELL, *UVICORN))
    assert identify_app([100], processes, read_source=lambda _path: None).framework is None
