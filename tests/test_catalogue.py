"""The catalogue, one test row per server: argv and environment in, what list says out.

Pure: no process runs. Every row of portinspect/catalogue.py must be matched by at least one
case here (test_every_catalogue_row_has_a_test_row), so adding a server is one row there and
one row here. Command lines follow each server's documented usage; `V` is a venv's bin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from portinspect import catalogue, scanner
from portinspect.appspec import framework_from_source
from portinspect.catalogue import ASGI, RSGI, WSGI
from portinspect.models import ProcessInfo
from portinspect.signatures import describe, evidence, row_for

V = "/home/dev/proj/.venv/bin"
PAD = ("",) * 40  # setproctitle's padding


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    framework: str | None
    server: str | None
    kind: str = "server"
    role: str | None = None
    reloads: bool = False
    workers: int = 1
    interface: str | None = None
    app: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def process(self) -> ProcessInfo:
        return ProcessInfo(100, 12, "python3", "dev", self.argv, "/home/dev/proj", env=self.env)


def py(*args: str) -> tuple[str, ...]:
    return (f"{V}/python3", *args)


def script(name: str, *args: str) -> tuple[str, ...]:
    return (f"{V}/python3", f"{V}/{name}", *args)


def node(name: str, *args: str) -> tuple[str, ...]:
    return ("node", f"/home/dev/proj/node_modules/.bin/{name}", *args)


def title(text: str) -> tuple[str, ...]:
    return (text, *PAD)


ES_JAVA = (
    "/usr/share/elasticsearch/jdk/bin/java", "-Xms1g", "-Xmx1g", "-Des.path.home=/usr/share/es",
    "-cp", "/usr/share/elasticsearch/lib/*", "org.elasticsearch.bootstrap.Elasticsearch",
)  # fmt: skip

CASES: dict[str, Case] = {
    # --- Django ----------------------------------------------------------------------------
    "django runserver": Case(
        py("manage.py", "runserver", "127.0.0.1:8001"), "django", "runserver",
        reloads=True, interface=WSGI,
    ),
    "django runserver --noreload": Case(
        py("manage.py", "runserver", "--noreload"), "django", "runserver", interface=WSGI
    ),
    "django-admin --settings": Case(
        script("django-admin", "--settings", "proj.settings", "runserver"), "django",
        "runserver", reloads=True, interface=WSGI,
    ),
    "python -m django runserver": Case(
        py("-m", "django", "runserver"), "django", "runserver", reloads=True, interface=WSGI
    ),
    "django runserver_plus": Case(
        py("manage.py", "runserver_plus"), "django", "werkzeug", reloads=True, interface=WSGI
    ),
    "django migrate serves nothing": Case(py("manage.py", "migrate"), "django", None, "script"),
    # --- ASGI and WSGI servers ---------------------------------------------------------------
    "uvicorn": Case(
        script("uvicorn", "main:app", "--host", "127.0.0.1"), None, "uvicorn",
        interface=ASGI, app="main:app",
    ),
    "uvicorn --reload": Case(
        py("-m", "uvicorn", "--reload", "main:app"), None, "uvicorn", reloads=True,
        interface=ASGI, app="main:app",
    ),
    "uvicorn --workers": Case(
        script("uvicorn", "--workers", "4", "api.main:app"), None, "uvicorn", workers=4,
        interface=ASGI, app="api.main:app",
    ),
    "uvicorn --interface wsgi": Case(
        script("uvicorn", "--interface", "wsgi", "wsgi:app"), None, "uvicorn",
        interface=WSGI, app="wsgi:app",
    ),
    "gunicorn": Case(
        script("gunicorn", "-w", "4", "-b", "127.0.0.1:8000", "app:app"), None, "gunicorn",
        workers=4, interface=WSGI, app="app:app",
    ),
    "gunicorn django module": Case(
        script("gunicorn", "--chdir", "src", "mysite.wsgi"), None, "gunicorn", interface=WSGI,
        app="mysite.wsgi",
    ),
    "gunicorn uvicorn worker": Case(
        script("gunicorn", "-k", "uvicorn.workers.UvicornWorker", "main:app"), None,
        "gunicorn", interface=ASGI, app="main:app",
    ),
    "gunicorn master title": Case(
        title("gunicorn: master [app:app]"), None, "gunicorn", role="master", app="app:app"
    ),
    "gunicorn worker title": Case(
        title("gunicorn: worker [app:app]"), None, "gunicorn", role="worker", app="app:app"
    ),
    "hypercorn": Case(
        script("hypercorn", "-b", "127.0.0.1:8000", "-w", "2", "main:app"), None, "hypercorn",
        workers=2, interface=ASGI, app="main:app",
    ),
    "hypercorn --reload": Case(
        py("-m", "hypercorn", "--reload", "-k", "trio", "main:app"), None, "hypercorn",
        reloads=True, interface=ASGI, app="main:app",
    ),
    "daphne": Case(
        script("daphne", "-b", "0.0.0.0", "-p", "8001", "proj.asgi:application"), None,
        "daphne", interface=ASGI, app="proj.asgi:application",
    ),
    "granian asgi": Case(
        script("granian", "--interface", "asgi", "main:app"), None, "granian", interface=ASGI,
        app="main:app",
    ),
    "granian wsgi": Case(
        script("granian", "--interface", "wsgi", "--workers", "2", "app:app"), None, "granian",
        workers=2, interface=WSGI, app="app:app",
    ),
    "granian default rsgi": Case(
        script("granian", "--reload", "app:app"), None, "granian", reloads=True, interface=RSGI,
        app="app:app",
    ),
    "granian master title": Case(
        title("granian wsgi 127.0.0.1:8000 app:app"), None, "granian", role="master",
        interface=WSGI, app="app:app",
    ),
    "granian worker title": Case(
        title("granian asgi 127.0.0.1:8000 main:app worker-1"), None, "granian", role="worker",
        interface=ASGI, app="main:app",
    ),
    "waitress-serve": Case(
        script("waitress-serve", "--listen=127.0.0.1:8080", "--threads", "8", "app:app"), None,
        "waitress", interface=WSGI, app="app:app",
    ),
    "python -m waitress": Case(
        py("-m", "waitress", "--port", "8080", "app:app"), None, "waitress", interface=WSGI,
        app="app:app",
    ),
    "uwsgi": Case(
        ("uwsgi", "--http", ":8000", "--module", "app:app", "--processes", "4", "--master"),
        None, "uwsgi", workers=4, interface=WSGI, app="app:app",
    ),
    "uwsgi wsgi-file": Case(
        ("/usr/bin/uwsgi", "--http-socket", ":9090", "--wsgi-file", "app.py"), None, "uwsgi",
        interface=WSGI, app="app.py",
    ),
    "uwsgi master title": Case(title("uWSGI master"), None, "uwsgi", role="master"),
    "uwsgi worker title": Case(title("uWSGI worker 3"), None, "uwsgi", role="worker"),
    # --- frameworks with their own command ----------------------------------------------------
    "flask run": Case(
        script("flask", "--app", "hello", "run"), "flask", "werkzeug", interface=WSGI
    ),
    "flask run --debug": Case(
        script("flask", "--app", "run", "run", "--debug"), "flask", "werkzeug", reloads=True,
        interface=WSGI,
    ),
    "flask run, FLASK_DEBUG=1": Case(
        py("-m", "flask", "run"), "flask", "werkzeug", reloads=True, interface=WSGI,
        env={"FLASK_DEBUG": "1"},
    ),
    "flask --debug --no-reload": Case(
        script("flask", "--debug", "run", "--no-reload"), "flask", "werkzeug", interface=WSGI
    ),
    "flask routes serves nothing": Case(
        script("flask", "--app", "x", "routes"), "flask", None, "script"
    ),
    "werkzeug reloader child": Case(
        py("app.py"), None, "werkzeug", "script", reloads=True, interface=WSGI, app="app.py",
        env={"WERKZEUG_RUN_MAIN": "true", "WERKZEUG_SERVER_FD": "5"},
    ),
    "fastapi dev": Case(
        script("fastapi", "dev", "main.py"), "fastapi", "uvicorn", reloads=True, interface=ASGI
    ),
    "fastapi dev --no-reload": Case(
        script("fastapi", "dev", "--no-reload", "main.py"), "fastapi", "uvicorn", interface=ASGI
    ),
    "fastapi run --workers": Case(
        script("fastapi", "run", "--workers", "4", "main.py"), "fastapi", "uvicorn", workers=4,
        interface=ASGI,
    ),
    "litestar run --reload": Case(
        script("litestar", "--app", "app:app", "run", "--reload", "--wc", "2"), "litestar",
        "uvicorn", reloads=True, workers=2, interface=ASGI,
    ),
    "sanic": Case(
        script("sanic", "server:app", "--host", "0.0.0.0", "--workers", "4"), "sanic", "sanic",
        workers=4,
    ),
    "sanic --dev": Case(script("sanic", "server:app", "--dev"), "sanic", "sanic", reloads=True),
    "aiohttp": Case(
        py("-m", "aiohttp.web", "-H", "localhost", "-P", "8080", "pkg.mod:init_func"),
        "aiohttp", "aiohttp", app="pkg.mod:init_func",
    ),
    "bottle": Case(
        py("-m", "bottle", "--bind", "127.0.0.1:8080", "--reload", "app:app"), "bottle",
        "wsgiref", reloads=True, interface=WSGI, app="app:app",
    ),
    "bottle -s waitress": Case(
        script("bottle.py", "-s", "waitress", "app:app"), "bottle", "waitress", interface=WSGI,
        app="app:app",
    ),
    "bottle reloader child": Case(
        py("app.py"), "bottle", None, app="app.py", env={"BOTTLE_CHILD": "true"}
    ),
    "pserve": Case(
        script("pserve", "development.ini", "--reload"), "pyramid", "pserve", reloads=True,
        interface=WSGI,
    ),
    "http.server": Case(py("-m", "http.server", "8000"), None, "http.server"),
    # --- notebooks, data apps, docs -------------------------------------------------------------
    "jupyter lab dispatcher": Case(script("jupyter", "lab"), "jupyter", "jupyter", "launcher"),
    "jupyter-lab": Case(script("jupyter-lab", "--port", "8888"), "jupyter", "jupyter"),
    "python -m notebook": Case(py("-m", "notebook"), "jupyter", "jupyter"),
    "jupyter nbconvert serves nothing": Case(
        script("jupyter", "nbconvert", "x.ipynb"), "jupyter", None, "script"
    ),
    "jupyter kernel": Case(
        py("-m", "ipykernel_launcher", "-f", "/run/kernel-1.json"), "jupyter", "kernel",
        "kernel", role="kernel",
    ),
    "kernel by its marker": Case(
        py("/opt/kernels/custom_kernel.py", "-f", "/run/kernel-2.json"), "jupyter", "kernel",
        "kernel", role="kernel", app="/opt/kernels/custom_kernel.py",
        env={"JPY_PARENT_PID": "4242"},
    ),
    "jupyter-kernel runs one": Case(
        script("jupyter-kernel", "--kernel=python3"), "jupyter", "kernel", "launcher"
    ),
    "streamlit": Case(script("streamlit", "run", "app.py"), "streamlit", "streamlit"),
    "panel serve": Case(
        script("panel", "serve", "app.py", "--num-procs", "2", "--autoreload"), "panel",
        "bokeh", workers=2,
    ),
    "bokeh serve": Case(script("bokeh", "serve", "--show", "app"), "bokeh", "bokeh"),
    "gradio reload mode": Case(script("gradio", "app.py"), "gradio", None),
    "mkdocs serve": Case(script("mkdocs", "serve"), "mkdocs", "mkdocs"),
    "mkdocs build serves nothing": Case(script("mkdocs", "build"), "mkdocs", None, "script"),
    "sphinx-autobuild": Case(
        script("sphinx-autobuild", "docs", "docs/_build/html"), "sphinx", "sphinx-autobuild"
    ),
    # --- Node --------------------------------------------------------------------------------
    "vite": Case(node("vite", "--port", "5173"), None, "vite"),
    "vite preview": Case(node("vite", "preview"), None, "vite"),
    "vite build serves nothing": Case(node("vite", "build"), None, None, "script"),
    "next dev": Case(node("next", "dev"), "next", "next"),
    "next dev's server child": Case(title("next-server (v14.2.3)"), "next", "next"),
    "nuxt": Case(node("nuxi", "dev"), "nuxt", "nuxt"),
    "angular": Case(("node", "/p/node_modules/@angular/cli/bin/ng.js", "serve"), "angular", "ng"),
    "astro": Case(node("astro", "dev"), "astro", "astro"),
    "webpack-dev-server": Case(node("webpack-dev-server"), None, "webpack-dev-server"),
    "webpack serve": Case(node("webpack", "serve"), None, "webpack-dev-server"),
    "http-server": Case(title("http-server"), None, "http-server"),
    "serve": Case(node("serve", "dist"), None, "serve"),
    "storybook": Case(node("storybook", "dev", "-p", "6006"), "storybook", "storybook"),
    "start-storybook": Case(node("start-storybook"), "storybook", "storybook"),
    "node script": Case(("node", "server.js"), None, "node"),
    "bun script": Case(("bun", "server.ts"), None, "bun"),
    "deno": Case(("deno", "run", "--allow-net", "main.ts"), None, "deno"),
    "npm run dev": Case(title("npm run dev"), None, None, "launcher", role="wrapper"),
    "npx vite": Case(title("npm exec vite"), None, None, "launcher", role="wrapper"),
    "npm-cli.js": Case(
        ("node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "run", "dev"), None, None,
        "launcher", role="wrapper",
    ),
    "pnpm dev": Case(("pnpm", "dev"), None, None, "launcher", role="wrapper"),
    "yarn dev": Case(("yarn", "dev"), None, None, "launcher", role="wrapper"),
    "bun run": Case(("bun", "run", "dev"), None, None, "launcher", role="wrapper"),
    "uv run": Case(("uv", "run", "uvicorn", "main:app"), None, None, "launcher", role="wrapper"),
    "uv pip launches nothing": Case(("uv", "pip", "install", "x"), None, None, "other"),
    "uvx": Case(("uvx", "mkdocs", "serve"), None, None, "launcher", role="wrapper"),
    "poetry run": Case(script("poetry", "run", "serve"), None, None, "launcher", role="wrapper"),
    "watchmedo": Case(
        script("watchmedo", "auto-restart", "--", "python", "app.py"), None, None, "launcher",
        role="wrapper",
    ),
    # --- databases, caches, web servers ----------------------------------------------------------
    "postgres": Case(("/usr/lib/postgresql/16/bin/postgres", "-D", "/pg"), None, "postgres"),
    "postgres backend title": Case(
        title("postgres: dev app 127.0.0.1(51234) idle"), None, "postgres", role="worker"
    ),
    "mysqld": Case(("/usr/sbin/mysqld", "--datadir=/var/lib/mysql"), None, "mysql"),
    "mariadbd": Case(("/usr/sbin/mariadbd",), None, "mariadb"),
    "redis title": Case(title("redis-server 127.0.0.1:6379"), None, "redis"),
    "valkey": Case(("valkey-server", "/etc/valkey.conf"), None, "valkey"),
    "keydb": Case(("keydb-server",), None, "keydb"),
    "mongod": Case(("/usr/bin/mongod", "--dbpath", "/data/db"), None, "mongodb"),
    "memcached": Case(("memcached", "-l", "127.0.0.1"), None, "memcached"),
    "elasticsearch": Case(ES_JAVA, None, "elasticsearch"),
    "elasticsearch cli": Case(
        ("java", "-cp", "lib/*", "org.elasticsearch.launcher.CliToolLauncher"), None,
        "elasticsearch", "launcher",
    ),
    "opensearch": Case(("java", "org.opensearch.bootstrap.OpenSearch"), None, "opensearch"),
    "nginx master": Case(
        title("nginx: master process /usr/sbin/nginx -g daemon off;"), None, "nginx",
        role="master",
    ),
    "nginx worker": Case(title("nginx: worker process"), None, "nginx", role="worker"),
    "apache": Case(("/usr/sbin/apache2", "-k", "start"), None, "httpd"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_catalogue_row(case: Case) -> None:
    sig = describe(case.process())
    got = (
        sig.framework,
        sig.server,
        sig.kind,
        sig.role,
        sig.reloads,
        sig.workers,
        sig.interface,
        sig.app,
    )
    want = (
        case.framework,
        case.server,
        case.kind,
        case.role,
        case.reloads,
        case.workers,
        case.interface,
        case.app,
    )
    assert got == want


def test_every_catalogue_row_has_a_test_row() -> None:
    matched = {row_for(case.process()) for case in CASES.values()}
    rows = (*catalogue.LAUNCHERS, *catalogue.SERVERS, *(m.row for m in catalogue.ENV_MARKS))
    missing = [row.programs or row.server for row in rows if row not in matched]
    assert missing == []


def test_variables_the_catalogue_reads_are_collected() -> None:
    """A row reading a variable the scanner never keeps would silently never match."""
    named: set[str] = set()
    for row in (*catalogue.SERVERS, *(m.row for m in catalogue.ENV_MARKS)):
        named.update(row.child_env, row.reloader.env)
        for _, switch in row.evidence:
            named.update(switch.env)
    for mark in catalogue.ENV_MARKS:
        named.update(mark.names)
    assert named - set(scanner.ENV_MARKERS) == set()


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (script("flask", "run", "--debug"), {}, True),
        (script("flask", "run"), {"FLASK_DEBUG": "true"}, True),
        (script("flask", "run"), {}, False),
        (script("flask", "--debug", "run", "--no-debug"), {}, False),
        (script("sanic", "app:app", "--dev"), {}, True),
        (script("uvicorn", "main:app"), {}, None),  # no such evidence in its row
        (py("app.py"), {}, None),
    ],
)
def test_evidence_switches(
    argv: tuple[str, ...], env: dict[str, str], expected: bool | None
) -> None:
    proc = ProcessInfo(100, 12, "python3", "dev", argv, env=env)
    assert evidence(proc, "debug") is expected


def test_a_python_script_named_like_an_npm_package_is_not_it() -> None:
    assert describe(ProcessInfo(100, 12, "python3", "dev", py("serve.py"))).server is None
    assert describe(ProcessInfo(100, 12, "python3", "dev", py("node.py"))).server is None


# Apps run as `python app.py` name no server: their source names the framework.
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from dash import Dash, html\nimport flask\n", "dash"),
        ("import gradio as gr\n", "gradio"),
        ("import tornado.ioloop, tornado.web\n", "tornado"),
        ("from bottle import Bottle, run\n", "bottle"),
        ("from aiohttp import web\n", "aiohttp"),
        ("from litestar import Litestar\n", "litestar"),
        ("from sanic import Sanic\n", "sanic"),
        ("from pyramid.config import Configurator\n", "pyramid"),
        ("import panel as pn\n", "panel"),
        ("from quart import Quart\n", "quart"),
        ("import falcon\n", "falcon"),
    ],
)
def test_frameworks_of_plain_scripts(source: str, expected: str) -> None:
    assert framework_from_source(source) == expected
