"""The catalogue: every program portinspect recognises, as rows of data.

One row per program (or per program and subcommand): how to know it from its command line,
and how it behaves: the subcommands that serve, the options that take a value, how it turns
a reloader on or off, how many workers it forks, whether it speaks ASGI or WSGI, the process
titles it sets and the role each names. signatures.py reads the rows; no code anywhere
switches on a program's name. Beside the servers: launchers (npm run, uv run), shells,
boundaries (terminals, IDEs, init), protected daemons, process managers, container proxies,
reloader and kernel environment markers, and the frameworks an app's source may import.

Adding a server is one row here and one row in tests/test_catalogue.py.

The rows are Python, not a data file: mypy checks every field, a typo fails at import, and
the byte-compiled module loads with no parser (start-up is what `list` pays for on every
run). They are NamedTuples: creating a slotted dataclass class costs about 4x more at import.
The index from program name to rows is built on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

from portinspect.models import Role

# What one command line is, as far as its argv tells.
KIND_SERVER = "server"  # a program or module we know serves (uvicorn, manage.py runserver...)
KIND_SCRIPT = "script"  # an interpreter running some script or module we do not know
KIND_MP_CHILD = "mp_child"  # multiprocessing spawn/forkserver child: part of its parent's app
KIND_LAUNCHER = "launcher"  # npm run, npx, uv run...: runs the app as a child
KIND_SHELL_C = "shell_c"  # `sh -c CMD`: a wrapper when a launcher started it
KIND_BOUNDARY = "boundary"  # interactive shells, terminals, init, sshd...: never part of an app
KIND_KERNEL = "kernel"  # a Jupyter kernel
KIND_OTHER = "other"

# What an app server speaks, which decides between frameworks an app module imports both of.
ASGI = "asgi"
WSGI = "wsgi"
RSGI = "rsgi"  # granian's own Rust interface

PYTHON = "python"
NODE = "node"
JAVA = "java"


class Switch(NamedTuple):
    """When a behaviour is on: the flags that turn it on or off, variables, the default.

    An off flag wins over an on flag; a variable counts when set to 1, true, yes or on.
    """

    on: tuple[str, ...] = ()
    off: tuple[str, ...] = ()
    default: bool = False
    env: tuple[str, ...] = ()


OFF = Switch()


class Title(NamedTuple):
    """A process title the program sets (setproctitle, process.title): a regular expression
    over the whole title, and the role it names. Named groups `app` and `interface` are read."""

    pattern: str
    role: Role | None = None


class Server(NamedTuple):
    """One program that serves, or runs something that does (a launcher)."""

    # Script stem, `python -m` module, executable, main class (lower case): "uvicorn" matches
    # `uvicorn main:app`, `python -m uvicorn main:app` and `uvicorn.exe main:app`.
    programs: tuple[str, ...]
    server: str | None  # what `list` calls the server
    framework: str | None = None
    # The runtime it runs on: a Python `serve.py` is not the npm `serve` package. A native or
    # retitled process matches any row. None: every runtime.
    runtime: str | None = PYTHON
    # Subcommands that serve ("" = none given). None: every invocation serves unless its
    # subcommand is idle (vite serves `vite`, `vite .`, not `vite build`).
    serves: frozenset[str] | None = None
    idle: frozenset[str] = frozenset()
    # Its options that take a value, so neither the subcommand nor the app is taken for one.
    values: frozenset[str] = frozenset()
    interface: str | None = None  # what it speaks unless an option says otherwise
    # Options that name the interface or worker class, and (substring of their value,
    # interface) pairs, first match wins: gunicorn -k uvicorn.workers.UvicornWorker is ASGI.
    interface_opts: tuple[str, ...] = ()
    interfaces: tuple[tuple[str, str], ...] = ()
    # A parent that watches the code and runs the server in a child it restarts. In-process
    # reloaders (mkdocs, streamlit) are not this: they have no child.
    reloader: Switch = OFF
    child_env: tuple[str, ...] = ()  # set to "true" in the reloader's child (Django: RUN_MAIN)
    workers: tuple[str, ...] = ()  # options giving the number of worker processes
    prefork: bool = False  # a master whose workers are copies of itself (gunicorn, nginx)
    spawns: bool = False  # always serves from multiprocessing children (sanic)
    titles: tuple[Title, ...] = ()
    app_positional: bool = False  # the app spec is an argument: uvicorn main:app
    app_options: tuple[str, ...] = ()  # options naming the app: uwsgi --module, --wsgi-file
    app_dir: tuple[str, ...] = ()  # options naming the directory the app is found from
    server_options: tuple[str, ...] = ()  # options naming the server it runs (bottle -s)
    kind: str = KIND_SERVER
    role: Role | None = None  # the role of every process of this program (kernel, wrapper)
    generic: bool = False  # a runtime that may serve anything (node, bun): no same-server tie
    # Named switches other readers ask about (signatures.evidence): `debug` for flask --debug.
    # audit's per-server evidence (issue 13) extends this rather than keying on names.
    evidence: tuple[tuple[str, Switch], ...] = ()


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _subs(text: str) -> frozenset[str]:
    """ "dev|run" -> {"dev", "run"}; "|dev" -> {"", "dev"} ("" = no subcommand given)."""
    return frozenset(s.strip() for s in text.split("|"))


# --- options that take a value, per server ---------------------------------------------------

_UVICORN_VALUES = _words(
    "--host --port --uds --fd --reload-dir --reload-include --reload-exclude --reload-delay "
    "--workers --loop --http --ws --ws-max-size --ws-max-queue --ws-ping-interval "
    "--ws-ping-timeout --ws-per-message-deflate --lifespan --interface --env-file --log-config "
    "--log-level --root-path --limit-concurrency --backlog --limit-max-requests "
    "--timeout-keep-alive --timeout-graceful-shutdown --ssl-keyfile --ssl-certfile "
    "--ssl-keyfile-password --ssl-version --ssl-cert-reqs --ssl-ca-certs --ssl-ciphers "
    "--header --forwarded-allow-ips --app-dir --h11-max-incomplete-event-size"
)
_GUNICORN_VALUES = _words(
    "-b --bind -w --workers -k --worker-class -c --config --chdir --pythonpath -n --name "
    "-t --timeout -e --env -p --pid -u --user -g --group --threads --log-level --log-file "
    "--access-logfile --error-logfile --error-log --access-logformat --log-config "
    "--max-requests --max-requests-jitter --graceful-timeout --keep-alive --backlog "
    "--worker-connections -m --umask --paste --certfile --keyfile --forwarded-allow-ips "
    "--worker-tmp-dir --reload-extra-file --reload-engine --statsd-host --limit-request-line"
)
_HYPERCORN_VALUES = _words(
    "-b --bind --insecure-bind --quic-bind -w --workers -k --worker-class -c --config "
    "--root-path --keyfile --certfile --ca-certs --ciphers --log-level --access-logfile "
    "--error-logfile --access-logformat --log-config --graceful-timeout --keep-alive "
    "--backlog --max-requests --max-requests-jitter -u --umask --user --group -p --pid "
    "--server-name --read-timeout --websocket-ping-interval"
)
_DAPHNE_VALUES = _words(
    "-p --port -b --bind -u --unix-socket --fd -e --endpoint -v --verbosity -t --http-timeout "
    "--access-log --log-fmt --ping-interval --ping-timeout --application-close-timeout "
    "--root-path --websocket_timeout --websocket_connect_timeout --proxy-headers-host "
    "--proxy-headers-port -s --server-name"
)
_GRANIAN_VALUES = _words(
    "--host --port --interface --http --workers --blocking-threads --runtime-threads "
    "--runtime-mode --loop --task-impl --backlog --backpressure --log-level --log-config "
    "--ssl-keyfile --ssl-certificate --ssl-keyfile-password --url-path-prefix "
    "--respawn-interval --workers-lifetime --workers-kill-timeout --working-dir --env-files "
    "--pid-file --process-name --reload-paths --reload-ignore-dirs --reload-ignore-patterns "
    "--reload-tick --reload-filter --static-path-route --static-path-mount --uds"
)
_WAITRESS_VALUES = _words(
    "--host --port --listen --unix-socket --unix-socket-perms --url-scheme --url-prefix "
    "--ident --threads --backlog --recv-bytes --send-bytes --outbuf-overflow --inbuf-overflow "
    "--connection-limit --cleanup-interval --channel-timeout --max-request-header-size "
    "--max-request-body-size --asyncore-loop-timeout --trusted-proxy --trusted-proxy-count "
    "--trusted-proxy-headers"
)
_UWSGI_VALUES = _words(
    "-s --socket --http --http-socket --https -w --module --wsgi-file --file --wsgi -p "
    "--processes --workers --ini --yaml --json --xml --chdir --chdir2 --pythonpath --pp "
    "--home -H --virtualenv --venv --uid --gid --plugin --plugins --callable --mount "
    "--threads --harakiri --buffer-size -b --max-requests --stats --pidfile --daemonize "
    "--logto --env --static-map --py-autoreload --procname-prefix --procname"
)
_SANIC_VALUES = _words(
    "-H --host -p --port -u --unix -w --workers --cert --key --tls -R --reload-dir --motd-display"
)
_FLASK_VALUES = _words("--app -A -e --env-file -h --host -p --port --cert --key --extra-files")
_DJANGO_VALUES = _words("--settings --pythonpath")
_LITESTAR_VALUES = _words(
    "--app --app-dir -p --port -H --host -W --wc --web-concurrency -R --reload-dir "
    "-I --reload-include -E --reload-exclude --fd --uds --ssl-certfile --ssl-keyfile "
    "--root-path"
)
_FASTAPI_VALUES = _words("--host --port --workers --root-path --app --entrypoint -e")
_BOKEH_VALUES = _words(
    "--port --address --allow-websocket-origin --num-procs --prefix --index --log-level "
    "--args --static-dirs --session-ids --unused-session-lifetime --check-unused-sessions"
)
_BOTTLE_VALUES = _words("-b --bind -s --server -p --plugin -c --conf -C --param")

_JUPYTER_SERVERS = _names(
    "jupyter-server jupyter-lab jupyter-notebook jupyter-nbclassic "
    "jupyter_server jupyterlab notebook nbclassic"
)
_RELOAD = Switch(on=("--reload",))
# The werkzeug reloader's child: Flask's `--debug`, Dash's and Flask's app.run(debug=True).
_WERKZEUG_CHILD = ("WERKZEUG_RUN_MAIN",)

_DJANGO = Server(
    ("manage", "django-admin", "django"),
    "runserver",
    "django",
    serves=_subs("runserver|runsslserver|testserver"),
    values=_DJANGO_VALUES,
    interface=WSGI,
    reloader=Switch(off=("--noreload",), default=True),
    child_env=("RUN_MAIN",),
)
# fastapi dev and run serve with uvicorn in-process; the Server header says "uvicorn".
_FASTAPI_DEV = Server(
    ("fastapi",),
    "uvicorn",
    "fastapi",
    serves=_subs("dev"),
    values=_FASTAPI_VALUES,
    interface=ASGI,
    reloader=Switch(off=("--no-reload",), default=True),
    workers=("--workers",),
)

# Keyed by program: a script stem, a `-m` module, a main class or an executable name. Several
# rows for one program are tried in order; the first whose subcommand serves wins.
PYTHON_SERVERS: tuple[Server, ...] = (
    _DJANGO,
    # django-extensions' runserver_plus serves with werkzeug and its reloader.
    _DJANGO._replace(server="werkzeug", serves=_subs("runserver_plus"), child_env=_WERKZEUG_CHILD),
    Server(
        ("uvicorn",),
        "uvicorn",
        values=_UVICORN_VALUES,
        interface=ASGI,
        interface_opts=("--interface",),
        interfaces=(("wsgi", WSGI), ("asgi", ASGI)),
        reloader=_RELOAD,
        workers=("--workers",),
        app_positional=True,
        app_dir=("--app-dir",),
    ),
    Server(
        ("gunicorn",),
        "gunicorn",
        values=_GUNICORN_VALUES,
        interface=WSGI,
        interface_opts=("-k", "--worker-class"),
        interfaces=(("uvicorn", ASGI), ("asgi", ASGI)),
        reloader=_RELOAD,
        workers=("-w", "--workers"),
        prefork=True,
        titles=(
            Title(r"gunicorn: master \[(?P<app>[^\]]*)\]", Role.MASTER),
            Title(r"gunicorn: worker \[(?P<app>[^\]]*)\]", Role.WORKER),
        ),
        app_positional=True,
        app_dir=("--chdir",),
    ),
    # hypercorn's worker classes (asyncio, uvloop, trio) all serve ASGI.
    Server(
        ("hypercorn",),
        "hypercorn",
        values=_HYPERCORN_VALUES,
        interface=ASGI,
        reloader=_RELOAD,
        workers=("-w", "--workers"),
        spawns=True,
        app_positional=True,
    ),
    Server(("daphne",), "daphne", values=_DAPHNE_VALUES, interface=ASGI, app_positional=True),
    # granian's default interface is its own RSGI; setproctitle titles name the interface.
    Server(
        ("granian",),
        "granian",
        values=_GRANIAN_VALUES,
        interface=RSGI,
        interface_opts=("--interface",),
        interfaces=(("asgi", ASGI), ("wsgi", WSGI), ("rsgi", RSGI)),
        reloader=_RELOAD,
        workers=("--workers",),
        titles=(
            Title(r"granian (?P<interface>\S+) \S+ (?P<app>\S+) worker-\d+", Role.WORKER),
            Title(r"granian (?P<interface>\S+) \S+ (?P<app>\S+)", Role.MASTER),
        ),
        app_positional=True,
        app_dir=("--working-dir",),
    ),
    Server(
        ("waitress-serve", "waitress"),
        "waitress",
        values=_WAITRESS_VALUES,
        interface=WSGI,
        app_positional=True,
    ),
    # With --auto-procname uWSGI titles its master and workers.
    Server(
        ("uwsgi",),
        "uwsgi",
        runtime=None,
        values=_UWSGI_VALUES,
        interface=WSGI,
        workers=("-p", "--processes", "--workers"),
        prefork=True,
        titles=(
            Title(r"uWSGI master", Role.MASTER),
            Title(r"uWSGI worker \d+", Role.WORKER),
        ),
        app_options=("--module", "-w", "--wsgi-file", "--file", "--wsgi"),
        app_dir=("--chdir",),
    ),
    _FASTAPI_DEV,
    _FASTAPI_DEV._replace(serves=_subs("run"), reloader=_RELOAD),
    Server(
        ("flask",),
        "werkzeug",
        "flask",
        serves=_subs("run"),
        values=_FLASK_VALUES,
        interface=WSGI,
        reloader=Switch(on=("--debug", "--reload"), off=("--no-reload",), env=("FLASK_DEBUG",)),
        child_env=_WERKZEUG_CHILD,
        evidence=(("debug", Switch(on=("--debug",), off=("--no-debug",), env=("FLASK_DEBUG",))),),
    ),
    # litestar run serves with uvicorn; --reload and --wc run uvicorn as a child.
    Server(
        ("litestar",),
        "uvicorn",
        "litestar",
        serves=_subs("run"),
        values=_LITESTAR_VALUES,
        interface=ASGI,
        reloader=Switch(on=("-r", "--reload")),
        workers=("-W", "--wc", "--web-concurrency"),
        evidence=(("debug", Switch(on=("-d", "--debug"))),),
    ),
    # sanic serves from spawned worker processes, its main process holding the socket.
    Server(
        ("sanic",),
        "sanic",
        "sanic",
        values=_SANIC_VALUES,
        idle=_words("inspect"),
        reloader=Switch(on=("-r", "--reload", "--auto-reload", "-d", "--dev")),
        workers=("-w", "--workers"),
        spawns=True,
        evidence=(("debug", Switch(on=("--debug", "-d", "--dev"))),),
    ),
    Server(
        ("aiohttp.web",),
        "aiohttp",
        "aiohttp",
        values=_words("-H --hostname -P --port -U --path"),
        app_positional=True,
    ),
    Server(
        ("bottle",),
        "wsgiref",  # bottle's default server; -s names another
        "bottle",
        values=_BOTTLE_VALUES,
        interface=WSGI,
        reloader=_RELOAD,
        child_env=("BOTTLE_CHILD",),
        app_positional=True,
        server_options=("-s", "--server"),
    ),
    # pyramid's pserve runs the server its .ini names; --reload runs it under hupper.
    Server(("pserve",), "pserve", "pyramid", interface=WSGI, reloader=_RELOAD),
    Server(("http.server", "simplehttpserver"), "http.server"),
)
# Notebooks, data apps and docs.
DATA_APPS: tuple[Server, ...] = (
    # `jupyter lab` re-execs `jupyter-lab` (same pid on POSIX, a child on Windows).
    Server(
        ("jupyter",),
        "jupyter",
        "jupyter",
        serves=_subs("server|lab|notebook|nbclassic"),
        kind=KIND_LAUNCHER,
    ),
    Server(_JUPYTER_SERVERS, "jupyter", "jupyter"),
    # A kernel listens on 5-6 random loopback ZMQ ports of its own.
    Server(
        ("ipykernel_launcher", "ipykernel", "ipykernel.kernelapp"),
        "kernel",
        "jupyter",
        kind=KIND_KERNEL,
        role=Role.KERNEL,
    ),
    # `jupyter kernel` (jupyter_client) runs one kernel as its child and serves nothing itself.
    Server(("jupyter-kernel",), "kernel", "jupyter", kind=KIND_LAUNCHER),
    Server(("streamlit",), "streamlit", "streamlit", serves=_subs("run|hello")),
    Server(
        ("panel",),
        "bokeh",
        "panel",
        serves=_subs("serve"),
        values=_BOKEH_VALUES,
        workers=("--num-procs",),
    ),
    Server(
        ("bokeh",),
        "bokeh",
        "bokeh",
        serves=_subs("serve"),
        values=_BOKEH_VALUES,
        workers=("--num-procs",),
    ),
    # `gradio app.py` is reload mode: a file watcher thread, in-process.
    Server(("gradio",), None, "gradio", idle=_words("deploy environment cc sketch info")),
    Server(("mkdocs",), "mkdocs", "mkdocs", serves=_subs("serve")),
    Server(("sphinx-autobuild", "sphinx_autobuild"), "sphinx-autobuild", "sphinx"),
)
# Node: argv[1] of `node`, or a retitled or native executable.
NODE_SERVERS: tuple[Server, ...] = (
    Server(("vite",), "vite", runtime=NODE, idle=_words("build optimize")),
    Server(
        ("next", "next-server"),  # next dev's server child titles itself "next-server (vX)"
        "next",
        "next",
        runtime=NODE,
        idle=_words("build lint export info telemetry"),
    ),
    Server(
        ("nuxt", "nuxi"),
        "nuxt",
        "nuxt",
        runtime=NODE,
        idle=_words("build generate analyze typecheck"),
    ),
    Server(("ng",), "ng", "angular", runtime=NODE, serves=_subs("serve|s")),
    Server(("astro",), "astro", "astro", runtime=NODE, idle=_words("build check sync add")),
    Server(("webpack-dev-server",), "webpack-dev-server", runtime=NODE),
    Server(("webpack",), "webpack-dev-server", runtime=NODE, serves=_subs("serve|s")),
    Server(("http-server",), "http-server", runtime=NODE),
    Server(("serve",), "serve", runtime=NODE),
    Server(("storybook",), "storybook", "storybook", runtime=NODE, serves=_subs("|dev")),
    Server(("start-storybook",), "storybook", "storybook", runtime=NODE),
)
DATABASES_AND_WEB_SERVERS: tuple[Server, ...] = (
    Server(
        ("postgres", "postmaster"),
        "postgres",
        runtime=None,
        prefork=True,
        titles=(Title(r"postgres: .*", Role.WORKER),),  # checkpointer, walwriter, backends
    ),
    Server(("mysqld",), "mysql", runtime=None),
    Server(("mariadbd",), "mariadb", runtime=None),
    Server(("redis-server", "redis-stack-server"), "redis", runtime=None),
    Server(("valkey-server",), "valkey", runtime=None),
    Server(("keydb-server",), "keydb", runtime=None),
    Server(("mongod", "mongos"), "mongodb", runtime=None),
    Server(("memcached",), "memcached", runtime=None),
    Server(("org.elasticsearch.bootstrap.elasticsearch",), "elasticsearch", runtime=JAVA),
    # Elasticsearch 8's CLI process starts the server JVM as its child and forwards signals.
    Server(
        ("org.elasticsearch.launcher.clitoollauncher",),
        "elasticsearch",
        runtime=JAVA,
        kind=KIND_LAUNCHER,
    ),
    Server(("org.opensearch.bootstrap.opensearch",), "opensearch", runtime=JAVA),
    # Native pre-forking servers: the master and its workers share the socket.
    Server(
        ("nginx",),
        "nginx",
        runtime=None,
        prefork=True,
        titles=(
            Title(r"nginx: master process.*", Role.MASTER),
            Title(r"nginx: (worker|cache manager|cache loader) process.*", Role.WORKER),
        ),
    ),
    Server(("httpd", "apache2"), "httpd", runtime=None, prefork=True),
)
# Runtimes that serve whatever script they run: tried when no row names the script.
RUNTIMES: tuple[Server, ...] = (
    Server(("node",), "node", runtime=NODE, generic=True),
    Server(("bun",), "bun", runtime=None, generic=True),  # after its launcher row (bun run)
    Server(("deno",), "deno", runtime=None, generic=True),
)

SERVERS = (*PYTHON_SERVERS, *DATA_APPS, *NODE_SERVERS, *DATABASES_AND_WEB_SERVERS, *RUNTIMES)


def _launcher(programs: str, subcommands: str | None = None) -> Server:
    """A program that starts the app as a child and forwards signals (or should): part of
    the app. subcommands: those that launch ("run|tool"); None: every one."""
    return Server(
        _names(programs),
        None,
        runtime=None,
        serves=_subs(subcommands) if subcommands is not None else None,
        kind=KIND_LAUNCHER,
        role=Role.WRAPPER,
    )


LAUNCHERS: tuple[Server, ...] = (
    _launcher("npm npm-cli npx npx-cli yarn pnpm pnpx bunx corepack nodemon cross-env"),
    _launcher("watchfiles uvx"),
    _launcher("uv", "run|tool"),
    _launcher("bun", "run|x"),
    _launcher("poetry pipenv hatch pdm rye pipx conda mamba micromamba pixi", "run"),
    _launcher("watchmedo", "auto-restart"),
)


class Shell(NamedTuple):
    """A shell: a boundary when interactive, a wrapper when it runs one command."""

    programs: tuple[str, ...]
    # Options that make it run a command (case-insensitive). posix: `-c`, also combined
    # with other one-letter options before any operand (`bash -lc CMD`).
    command_options: tuple[str, ...] = ()
    posix: bool = True


SHELLS: tuple[Shell, ...] = (
    Shell(("sh", "bash", "zsh", "fish", "dash", "ksh", "mksh", "tcsh", "csh", "nu", "xonsh")),
    Shell(("elvish",)),
    Shell(("pwsh", "powershell"), ("-c", "-command", "-file", "-f"), posix=False),
    Shell(("cmd",), ("/c", "/k"), posix=False),
)

# Where an app-root walk must stop: whatever started the app, not the app. Shells are in
# SHELLS (a boundary only without -c); protected processes stop it too.
BOUNDARIES = frozenset(
    {
        # terminals, multiplexers, remote logins
        "tmux", "screen", "zellij", "abduco", "dtach", "mosh-server", "sshd", "sshd-session",
        "login", "su", "sudo", "doas", "runuser", "konsole", "xterm", "uxterm", "urxvt", "rxvt",
        "alacritty", "kitty", "wezterm", "wezterm-gui", "terminator", "tilix", "foot", "ghostty",
        "iterm2", "terminal", "hyper", "tabby", "mintty", "conhost", "openconsole",
        "windowsterminal", "conemu64", "conemuc64", "st", "yakuake", "guake", "terminology",
        # IDEs and editors that run servers from their terminals or tasks
        "code", "code-insiders", "codium", "cursor", "code-server", "code-tunnel", "electron",
        "pycharm", "pycharm64", "idea", "idea64", "webstorm", "goland", "clion", "rider",
        "fleet", "zed", "sublime_text", "emacs", "vim", "nvim", "fsnotifier",
        # init systems, service and container managers, process managers
        "init", "systemd", "launchd", "tini", "dumb-init", "docker-init", "s6-supervise",
        "runsv", "runsvdir", "supervisord", "pm2", "dockerd", "containerd", "conmon", "runc",
        "crun", "cron", "crond", "atd", "explorer", "services", "svchost", "honcho", "foreman",
        "overmind",
    }
)  # fmt: skip
BOUNDARY_PREFIXES = ("containerd-shim", "code helper", "cursor helper", "electron helper")
BOUNDARY_SUFFIXES = ("-terminal", "-terminal-server")
# Boundaries that are themselves Python or node scripts (the names above are native programs
# only, so a `python code.py` is not VS Code).
SCRIPT_BOUNDARIES = frozenset({"supervisord", "circusd", "honcho", "pm2", "code-server"})

# Never an app and never signalled: pid 1 and the machinery the machine or the user's session
# depends on. systemd-* (resolved holds :53) are stopped with systemctl, and killing them
# only gets them restarted.
PROTECTED = frozenset(
    {
        "init", "systemd", "launchd", "kthreadd", "kernel_task", "sshd", "sshd-session",
        "sshd-auth", "dockerd", "containerd", "docker-init",
        "wininit", "winlogon", "services", "lsass", "csrss", "smss", "svchost",
    }
)  # fmt: skip
PROTECTED_PREFIXES = ("containerd-shim", "systemd-")
# Processes protected by pid and name together: Windows' kernel "System" is pid 4 and holds
# http.sys's ports; pid 4 elsewhere (a container) is just a pid.
PROTECTED_PIDS: Mapping[int, str] = {4: "system"}


class Inline(NamedTuple):
    """Code passed with `python -c` that marks a helper of its parent's app."""

    markers: tuple[str, ...]
    kind: str
    role: Role | None = None


# First match wins: the resource tracker's code also names multiprocessing.
INLINE: tuple[Inline, ...] = (
    Inline(("multiprocessing.resource_tracker",), KIND_MP_CHILD, Role.RESOURCE_TRACKER),
    Inline(
        ("multiprocessing.spawn", "multiprocessing.forkserver", "spawn_main", "hupper.ipc"),
        KIND_MP_CHILD,
    ),
)
MP_FORK_ARG = "--multiprocessing-fork"  # multiprocessing's children on every OS


class EnvMark(NamedTuple):
    """A script whose argv says nothing, recognised by variables its framework sets."""

    names: tuple[str, ...]  # any of them set
    row: Server


# werkzeug's app.run(debug=True) (Flask, Dash) leaves no trace in argv; its reloader's child
# carries these. A kernel started under any name has its server's pid in JPY_PARENT_PID.
ENV_MARKS: tuple[EnvMark, ...] = (
    EnvMark(
        ("WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD"),
        Server(
            (),
            "werkzeug",
            interface=WSGI,
            reloader=Switch(default=True),
            child_env=_WERKZEUG_CHILD,
            kind=KIND_SCRIPT,
        ),
    ),
    EnvMark(("BOTTLE_CHILD",), Server((), None, "bottle", child_env=("BOTTLE_CHILD",))),
    EnvMark(
        ("JPY_PARENT_PID",), Server((), "kernel", "jupyter", kind=KIND_KERNEL, role=Role.KERNEL)
    ),
)


# --- managers and containers -----------------------------------------------------------------


class ManagerRow(NamedTuple):
    """How one process manager shows, what it does when a service dies, how to stop one."""

    programs: tuple[str, ...]
    kind: str
    # True: restarts a service that dies (supervisord's default autorestart=unexpected counts
    # a death by signal as unexpected); None: only if configured so; False: never.
    restarts: bool | None
    stops_others: bool  # stops every other service when one exits (honcho, foreman)
    # The command that stops one service, with {service} (and {config}) filled in; None
    # where the manager has none (honcho: stop the whole thing).
    stop: str | None = None
    # Environment variables of the service's process that name it, first found wins.
    service_env: tuple[str, ...] = ()
    group_env: str | None = None  # names the service's group: "group:service"
    config_options: tuple[str, ...] = ()  # the manager's config file, for {config}
    # Subcommands that make the program a manager (honcho start, not honcho check); None: any.
    serves: frozenset[str] | None = None
    # Options that make it stop the other services when one exits (concurrently -k).
    stops_others_options: tuple[str, ...] = ()


MANAGERS: tuple[ManagerRow, ...] = (
    ManagerRow(
        ("supervisord",),
        "supervisord",
        True,
        False,
        "supervisorctl{config} stop {service}",
        ("SUPERVISOR_PROCESS_NAME",),
        group_env="SUPERVISOR_GROUP_NAME",
        config_options=("-c", "--configuration"),
    ),
    ManagerRow(("honcho",), "honcho", False, True, serves=_subs("start")),
    ManagerRow(("foreman",), "foreman", False, True, serves=_subs("start")),
    ManagerRow(("pm2",), "pm2", True, False, "pm2 stop {service}", ("name", "pm_id")),
    ManagerRow(("circusd",), "circus", True, False, "circusctl stop {service}"),
    ManagerRow(("overmind",), "overmind", None, False, "overmind stop {service}"),
    ManagerRow(
        ("concurrently",),
        "concurrently",
        False,
        False,
        stops_others_options=("-k", "--kill-others", "--kill-others-on-fail"),
    ),
    ManagerRow(("runsv",), "runit", True, False, "sv stop {service}"),
    ManagerRow(("s6-supervise",), "s6", True, False, "s6-svc -d {service}"),
)


class Proxy(NamedTuple):
    """A process that forwards a published container port, and the CLI that stops the
    container. Docker Desktop's and OrbStack's helpers are named in killport's source and
    not verified here."""

    programs: tuple[str, ...]
    runtime: str  # "docker", "rootless", "podman", "docker-desktop", "orbstack"
    cli: str  # the command that finds and stops the container


PROXIES: tuple[Proxy, ...] = (
    Proxy(("docker-proxy",), "docker", "docker"),
    Proxy(("rootlesskit",), "rootless", "docker"),
    Proxy(("rootlessport", "containers-rootlessport"), "podman", "podman"),
    Proxy(("com.docker.backend", "vpnkit-bridge"), "docker-desktop", "docker"),
    Proxy(("orbstack helper",), "orbstack", "docker"),
)

# Container ids in cgroup paths (docker-ID.scope, /docker/ID, libpod-ID.scope), first match
# wins: (marker in the path, runtime, the CLI that stops it).
CONTAINER_CGROUPS: tuple[tuple[str, str, str], ...] = (
    ("libpod", "podman", "podman"),
    ("crio", "cri-o", "crictl"),
    ("cri-containerd", "containerd", "crictl"),
    ("docker", "docker", "docker"),
)


# --- frameworks an app module may import -----------------------------------------------------


class Framework(NamedTuple):
    name: str  # the top-level package an app imports
    interface: str | None = None  # ASGI-only or WSGI-only; None: either, or its own server


# First match wins. Dash first: a Dash app is a Flask app and may import flask too; FastAPI
# before Starlette, which FastAPI apps import for responses and middleware.
FRAMEWORKS: tuple[Framework, ...] = (
    Framework("dash", WSGI),
    Framework("gradio"),
    Framework("fastapi", ASGI),
    Framework("litestar", ASGI),
    Framework("quart", ASGI),
    Framework("sanic", ASGI),
    Framework("flask", WSGI),
    Framework("django"),
    Framework("falcon"),
    Framework("bottle", WSGI),
    Framework("pyramid", WSGI),
    Framework("aiohttp"),
    Framework("tornado"),
    Framework("panel"),
    Framework("bokeh"),
    Framework("starlette", ASGI),
)


# --- look-ups ----------------------------------------------------------------------------------


@functools.cache
def _index() -> Mapping[str, tuple[Server, ...]]:
    found: dict[str, list[Server]] = {}
    for row in (*LAUNCHERS, *SERVERS):
        for program in row.programs:
            found.setdefault(program, []).append(row)
    return {program: tuple(rows) for program, rows in found.items()}


def servers_for(program: str) -> tuple[Server, ...]:
    """The rows (launchers first) of a program, in the order they are tried."""
    return _index().get(program, ())


@functools.cache
def _shells() -> Mapping[str, Shell]:
    return {program: shell for shell in SHELLS for program in shell.programs}


def shell_for(program: str) -> Shell | None:
    return _shells().get(program)


@functools.cache
def _managers() -> Mapping[str, ManagerRow]:
    return {program: row for row in MANAGERS for program in row.programs}


def manager_for_program(program: str) -> ManagerRow | None:
    return _managers().get(program)


@functools.cache
def _proxies() -> Mapping[str, Proxy]:
    return {program: row for row in PROXIES for program in row.programs}


def proxy_for(program: str) -> Proxy | None:
    return _proxies().get(program)
