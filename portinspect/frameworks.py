"""Pure: command lines and the process tree -> framework, server, roles and app root.

Nothing here touches the OS. Callers hand in ProcessInfo facts and, optionally, a
function that reads an app module's text. The rules come from measurements of real
dev servers (research/frameworks.md §2-3). They shape this module:

- Never trust ProcessInfo.name: it is comm, cut at 15 characters (`jupyter-noteboo`),
  and reloader children are all called `python3`. Everything here reads the cmdline.
- One listening socket is often shared by a whole tree (gunicorn master + workers,
  uvicorn --reload supervisor + child, the werkzeug reloader pair). The app's top
  process is the one to stop: stopping a worker gets it respawned, and stopping only
  a uvicorn --reload child leaves a port that accepts connections and then hangs.
- Wrappers (npm run, npx, `sh -c`, uv run) belong to the app: SIGTERM to npm orphans
  the vite it started, so kill needs to see the whole chain.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import TypedDict

from portinspect.models import Manager, ProcessInfo, Role

# Reads a text file (bounded in size) and returns its content, or None if it cannot.
SourceReader = Callable[[str], "str | None"]

# What one command line is, as far as its argv tells.
KIND_SERVER = "server"  # a program or module we know serves HTTP (uvicorn, manage.py runserver...)
KIND_SCRIPT = "script"  # an interpreter running some script or module we do not know
KIND_MP_CHILD = "mp_child"  # multiprocessing spawn/forkserver child: part of its parent's app
KIND_LAUNCHER = "launcher"  # npm run, npx, uv run...: runs the app as a child
KIND_SHELL_C = "shell_c"  # `sh -c CMD`: a wrapper when a launcher started it
KIND_BOUNDARY = "boundary"  # interactive shells, terminals, init, sshd...: never part of an app
KIND_KERNEL = "kernel"
KIND_OTHER = "other"


@dataclass(frozen=True, slots=True)
class Command:
    """A command line taken apart: which runtime runs which program with which args."""

    runtime: str | None  # "python", "node", or None for a native or retitled program
    program: str  # lower-case name of what runs: script stem, module, or executable
    args: tuple[str, ...] = ()  # what follows the program
    target: str | None = None  # the script path or module name as given, case kept
    module: bool = False  # python -m
    code: str | None = None  # python -c CODE, node -e CODE


@dataclass(frozen=True, slots=True)
class Signature:
    """What one process is, judged from its command line and env markers alone."""

    framework: str | None = None
    server: str | None = None
    kind: str = KIND_OTHER
    role: Role | None = None  # a role the process names itself (setproctitle), or kernel/tracker
    reloads: bool = False  # --reload, --debug, no --noreload: a parent restarts a child
    workers: int = 1  # --workers N
    app: str | None = None  # "main:app", "pkg.wsgi", "app.py": where the app's source is
    app_dir: str | None = None  # uvicorn --app-dir, gunicorn --chdir
    asgi: bool | None = None  # True for ASGI servers, False for WSGI ones, None if unknown


class ContainerProxy(TypedDict):
    """A process that forwards a published container port (docker-proxy, rootlessport)."""

    proxy: str  # "docker-proxy", "rootlesskit", "rootlessport", ...
    runtime: str  # "docker", "rootless", "podman", "docker-desktop", "orbstack"
    proto: str | None
    host_ip: str | None
    host_port: int | None
    container_ip: str | None
    container_port: int | None


# ---------------------------------------------------------------------------------------
# Taking a command line apart
# ---------------------------------------------------------------------------------------

# Suffixes stripped from a program token: pip's Windows launchers, scripts, node files.
_SUFFIXES = ("-script.pyw", "-script.py", ".pyw", ".py", ".exe", ".mjs", ".cjs", ".js")
_PYTHON = re.compile(r"^(python|pythonw|pypy|py)(\d+(\.\d+)*)?[a-z]?$")
_NODE = frozenset({"node", "nodejs"})
# Node options that take the next token as their value.
_NODE_VALUE_OPTS = frozenset(
    {"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions"}
)
_NODE_INLINE_OPTS = frozenset({"-e", "--eval", "-p", "--print"})
# Script files whose stem is not the tool's name.
_ALIASES = {"npm-cli": "npm", "npx-cli": "npx", "nuxi": "nuxt"}


# The pure helpers below are memoised: a listing asks the same questions of the same command
# lines for every process of a fleet (1000 workers: 17k signature look-ups, 90 ms uncached).
_MEMO = 4096


@functools.lru_cache(maxsize=_MEMO)
def _stem(token: str) -> str:
    """Lower-case basename without script/launcher suffixes: "/v/bin/Uvicorn.exe" -> "uvicorn".

    Leading "-" is a login shell ("-bash"); a trailing ":" is a retitled process
    ("gunicorn: master", "sshd: alice@pts/0").
    """
    name = token.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower().lstrip("-").rstrip(":")
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def normalise_argv(cmdline: Sequence[str]) -> tuple[str, ...]:
    """The cmdline without setproctitle padding, a retitled process split into words.

    setproctitle (gunicorn) and node's process.title (npm, http-server) overwrite argv
    in place and pad it with ~50 empty strings: ['gunicorn: master [app:app]', '', ...].
    A lone element with spaces is a title, unless it starts with a path: macOS app
    bundles live in directories with spaces ("/Applications/OrbStack.app/.../OrbStack Helper").
    """
    return _normalised(tuple(cmdline))


@functools.lru_cache(maxsize=_MEMO)
def _normalised(cmdline: tuple[str, ...]) -> tuple[str, ...]:
    argv = [a for a in cmdline if a]
    if len(argv) == 1 and " " in argv[0].strip():
        first = argv[0].split()[0]
        if "/" not in first and "\\" not in first:
            return tuple(argv[0].split())
    return tuple(argv)


def parse_command(cmdline: Sequence[str]) -> Command:
    """Which program a command line runs: the script or module behind an interpreter."""
    return _parsed(normalise_argv(cmdline))


@functools.lru_cache(maxsize=_MEMO)
def _parsed(argv: tuple[str, ...]) -> Command:
    if not argv:
        return Command(runtime=None, program="")
    exe = _stem(argv[0])
    if _PYTHON.match(exe):
        return _parse_python(argv)
    if exe in _NODE:
        return _parse_node(argv)
    return Command(runtime=None, program=exe, args=argv[1:], target=argv[0])


def _parse_python(argv: tuple[str, ...]) -> Command:
    """Skip interpreter options (-B -u -X dev -W error, combined like -Bu) to find the program."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            # --check-hash-based-pycs MODE is the only long option that takes a value.
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        for j, flag in enumerate(arg[1:], start=1):
            rest = arg[j + 1 :]
            if flag in "mc":
                value = rest or (argv[i + 1] if i + 1 < len(argv) else "")
                after = argv[i + (1 if rest else 2) :]
                if flag == "m":
                    module = value.lower()
                    return Command("python", module, after, target=value, module=True)
                return Command("python", "-c", after, code=value)
            if flag in "XW":  # options with a value: -X dev, -Wignore
                if not rest:
                    i += 1
                break
        i += 1
    if i >= len(argv):
        return Command("python", "python")  # the interactive interpreter
    return Command("python", _stem(argv[i]), argv[i + 1 :], target=argv[i])


def _parse_node(argv: tuple[str, ...]) -> Command:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _NODE_INLINE_OPTS:
            return Command(
                "node", "node", argv[i + 2 :], code=argv[i + 1] if i + 1 < len(argv) else ""
            )
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        i += 2 if arg in _NODE_VALUE_OPTS else 1
    if i >= len(argv):
        return Command("node", "node")
    stem = _stem(argv[i])
    return Command("node", _ALIASES.get(stem, stem), argv[i + 1 :], target=argv[i])


def _first_positional(args: Sequence[str], value_opts: Iterable[str] = ()) -> str:
    """The first argument that is not an option or an option's value ("" if none)."""
    takes_value = frozenset(value_opts)
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value
        else:
            return arg
    return ""


def _option(args: Sequence[str], *names: str) -> str | None:
    """Value of `--name V` or `--name=V` (the last one wins, like argparse and click)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "=") and name.startswith("--"):
                found = arg[len(name) + 1 :]
    return found


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------
# Signatures: what a command line is
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    framework: str | None
    server: str | None
    # Subcommands that serve ("" = no subcommand). None: every invocation serves
    # unless its subcommand is in `idle` (vite serves `vite`, `vite .`, not `vite build`).
    serves: frozenset[str] | None = None
    idle: frozenset[str] = frozenset()
    # Options before the subcommand that take a value (`flask --app x run`).
    value_opts: frozenset[str] = frozenset()
    asgi: bool | None = None
    kind: str = KIND_SERVER
    # "python" or "node": the rule matches that runtime or a native/retitled program,
    # so a Python `serve.py` is not the npm `serve` package. None: any.
    runtime: str | None = None


def _rule(
    framework: str | None,
    server: str | None,
    serves: str | None = None,
    idle: str = "",
    value_opts: str = "",
    asgi: bool | None = None,
    kind: str = KIND_SERVER,
    runtime: str | None = "python",
) -> _Rule:
    """A table row; serves="dev |" style strings list subcommands, "" meaning none given."""
    return _Rule(
        framework,
        server,
        frozenset(s.strip() for s in serves.split("|")) if serves is not None else None,
        frozenset(idle.split()),
        frozenset(value_opts.split()),
        asgi,
        kind,
        runtime,
    )


_DJANGO = _rule(
    "django",
    "runserver",
    "runserver|runsslserver|testserver|runserver_plus",
    value_opts="--settings --pythonpath",
    asgi=False,
)
_JUPYTER = _rule("jupyter", "jupyter")
_NEXT = _rule("next", "next", idle="build lint export info telemetry", runtime="node")

# Keyed by program: a script stem, a `-m` module, or an executable name. The same key
# works for `uvicorn main:app`, `python -m uvicorn main:app` and `uvicorn.exe main:app`.
_PROGRAMS: dict[str, _Rule] = {
    # Python
    "manage": _DJANGO,
    "django-admin": _DJANGO,
    "django": _DJANGO,
    "uvicorn": _rule(None, "uvicorn", asgi=True),
    "hypercorn": _rule(None, "hypercorn", asgi=True),
    "daphne": _rule(None, "daphne", asgi=True),
    "granian": _rule(None, "granian", asgi=True),
    "gunicorn": _rule(None, "gunicorn", asgi=False),
    "waitress-serve": _rule(None, "waitress", asgi=False),
    "waitress": _rule(None, "waitress", asgi=False),
    "uwsgi": _rule(None, "uwsgi", asgi=False, runtime=None),
    # fastapi dev/run serve with uvicorn in-process; the Server header says "uvicorn".
    "fastapi": _rule("fastapi", "uvicorn", "dev|run", asgi=True),
    "flask": _rule("flask", "werkzeug", "run", value_opts="--app -A -e --env-file", asgi=False),
    "streamlit": _rule("streamlit", "streamlit", "run"),
    # `jupyter lab` re-execs `jupyter-lab` (same pid on POSIX, a child on Windows).
    "jupyter": _rule("jupyter", "jupyter", "server|lab|notebook|nbclassic", kind=KIND_LAUNCHER),
    "jupyter-server": _JUPYTER,
    "jupyter-lab": _JUPYTER,
    "jupyter-notebook": _JUPYTER,
    "jupyter-nbclassic": _JUPYTER,
    "jupyter_server": _JUPYTER,
    "jupyterlab": _JUPYTER,
    "notebook": _JUPYTER,
    "nbclassic": _JUPYTER,
    "http.server": _rule(None, "http.server"),
    "simplehttpserver": _rule(None, "http.server"),
    "mkdocs": _rule("mkdocs", "mkdocs", "serve"),
    # Node: argv[1] of `node`, or a retitled/native executable
    "vite": _rule(None, "vite", idle="build optimize", runtime="node"),
    "next": _NEXT,
    "nuxt": _rule("nuxt", "nuxt", idle="build generate analyze typecheck", runtime="node"),
    "ng": _rule("angular", "ng", "serve|s", runtime="node"),
    "astro": _rule("astro", "astro", idle="build check sync add", runtime="node"),
    "webpack-dev-server": _rule(None, "webpack-dev-server", runtime="node"),
    "webpack": _rule(None, "webpack-dev-server", "serve|s", runtime="node"),
    "http-server": _rule(None, "http-server", runtime="node"),
    "serve": _rule(None, "serve", runtime="node"),
    "storybook": _rule("storybook", "storybook", "|dev", runtime="node"),
    "start-storybook": _rule("storybook", "storybook", runtime="node"),
    # Native pre-forking servers: the master and its workers share the socket.
    "nginx": _rule(None, "nginx", runtime=None),
    "httpd": _rule(None, "httpd", runtime=None),
    "apache2": _rule(None, "httpd", runtime=None),
}

# Programs that start the app as a child and forward signals (or should): they are part
# of the app. The value lists the subcommands that launch; None = every subcommand.
_LAUNCHERS: dict[str, frozenset[str] | None] = {
    "npm": None,
    "npx": None,
    "yarn": None,
    "pnpm": None,
    "pnpx": None,
    "bunx": None,
    "bun": frozenset({"run", "x"}),
    "corepack": None,
    "nodemon": None,
    "watchfiles": None,
    "cross-env": None,
    "uv": frozenset({"run", "tool"}),
    "uvx": None,
    "poetry": frozenset({"run"}),
    "pipenv": frozenset({"run"}),
    "hatch": frozenset({"run"}),
    "pdm": frozenset({"run"}),
    "rye": frozenset({"run"}),
    "pipx": frozenset({"run"}),
    "conda": frozenset({"run"}),
    "mamba": frozenset({"run"}),
    "micromamba": frozenset({"run"}),
    "pixi": frozenset({"run"}),
    "watchmedo": frozenset({"auto-restart"}),
}

_SHELLS = frozenset(
    {"sh", "bash", "zsh", "fish", "dash", "ksh", "mksh", "tcsh", "csh", "nu", "xonsh", "elvish"}
    | {"pwsh", "powershell", "cmd"}
)
# Where an app-root walk must stop: whatever started the app, not the app. Shells are
# listed in _SHELLS (a boundary only without -c); protected processes stop it too.
_BOUNDARIES = frozenset(
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
_BOUNDARY_PREFIXES = ("containerd-shim", "code helper", "cursor helper", "electron helper")
# Boundaries that are themselves Python or node scripts (the names above are native
# programs only, so a `python code.py` is not VS Code).
_SCRIPT_BOUNDARIES = frozenset({"supervisord", "circusd", "honcho", "pm2", "code-server"})
_BOUNDARY_SUFFIXES = ("-terminal", "-terminal-server")

# Never an app and never signalled: pid 1 and the machinery the machine or the user's
# session depends on. systemd-* (resolved holds :53) are stopped with systemctl, and
# killing them only gets them restarted.
_PROTECTED = frozenset(
    {
        "init", "systemd", "launchd", "kthreadd", "kernel_task", "sshd", "sshd-session",
        "sshd-auth", "dockerd", "containerd", "docker-init",
        # Windows: the kernel's "System" (pid 4, http.sys ports) is matched by pid + name
        "wininit", "winlogon", "services", "lsass", "csrss", "smss", "svchost",
    }
)  # fmt: skip
_PROTECTED_PREFIXES = ("containerd-shim", "systemd-")

# multiprocessing's spawn/forkserver children and its resource tracker, on every OS.
_MP_MARKERS = ("multiprocessing.spawn", "multiprocessing.forkserver", "spawn_main")
_MP_TRACKER = "multiprocessing.resource_tracker"
_KERNEL_MODULES = frozenset({"ipykernel_launcher", "ipykernel", "ipykernel.kernelapp"})
# Servers whose processes share one cmdline across master and workers; a same-server
# parent is the master. Plain "node" is not here: any node program may start another.
PREFORK = frozenset({"gunicorn", "uwsgi", "nginx", "httpd"})
GENERIC_SERVERS = frozenset({"node", "bun", "deno"})
_INTERACTIVE = frozenset({"python", "ipython", "bpython", "ptpython"})
# Reloaders: the parent re-runs its own cmdline in a child (env RUN_MAIN / WERKZEUG_RUN_MAIN).
_RELOADER_ENV = ("RUN_MAIN", "WERKZEUG_RUN_MAIN")
_WERKZEUG_ENV = ("WERKZEUG_RUN_MAIN", "WERKZEUG_SERVER_FD")

# An app spec as uvicorn/gunicorn/hypercorn take it: "main:app", "pkg.mod:create_app()".
_APP_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*(\(.*\))?$")
# Options of app servers that take a value, so their value is not mistaken for the app.
_APP_VALUE_OPTS = frozenset(
    {
        "-b", "--bind", "-w", "--workers", "-k", "--worker-class", "-c", "--config", "--chdir",
        "--pythonpath", "-n", "--name", "-t", "--timeout", "-e", "--env", "-p", "--pid", "-u",
        "--user", "-g", "--group", "--threads", "--log-level", "--host", "--port", "--app-dir",
        "--env-file", "--root-path", "--uds", "--fd", "--log-config", "--interface",
    }
)  # fmt: skip


def describe(proc: ProcessInfo) -> Signature:
    """Framework, server and kind of one process, from its cmdline and env markers."""
    cmd = parse_command(proc.cmdline)
    sig = _describe_command(cmd)
    if sig.server is None and sig.kind in (KIND_SCRIPT, KIND_OTHER):
        # werkzeug's app.run(debug=True) (Flask, Dash) leaves no trace in argv; its
        # reloader child carries these variables.
        if any(k in proc.env for k in _WERKZEUG_ENV):
            return replace(sig, server="werkzeug", reloads=True, asgi=False, kind=KIND_SCRIPT)
        if "JPY_PARENT_PID" in proc.env and cmd.runtime == "python":
            return Signature(kind=KIND_KERNEL, role=Role.KERNEL)
    if not cmd.program and proc.name:
        # cmdline hidden (another user's process on macOS): comm may still say "a shell".
        name = _stem(proc.name)
        if name in _SHELLS or _is_boundary_name(name):
            return Signature(kind=KIND_BOUNDARY)
    return sig


@functools.lru_cache(maxsize=_MEMO)
def _describe_command(cmd: Command) -> Signature:
    if cmd.code is not None:
        return _describe_inline(cmd)
    if cmd.runtime is None and cmd.program in _SHELLS:
        return Signature(kind=KIND_SHELL_C if _shell_runs_command(cmd) else KIND_BOUNDARY)
    if cmd.runtime == "python" and cmd.program in _KERNEL_MODULES:
        return Signature(kind=KIND_KERNEL, role=Role.KERNEL)
    launcher = _describe_launcher(cmd)
    if launcher is not None:
        return launcher
    rule = _PROGRAMS.get(cmd.program)
    if rule is not None and (cmd.runtime is None or rule.runtime in (None, cmd.runtime)):
        return _describe_known(cmd, rule)
    if cmd.program in _SCRIPT_BOUNDARIES or (
        cmd.runtime is None and _is_boundary_name(cmd.program)
    ):
        return Signature(kind=KIND_BOUNDARY)
    return _describe_unknown(cmd)


def _describe_inline(cmd: Command) -> Signature:
    code = cmd.code or ""
    if _MP_TRACKER in code:
        return Signature(kind=KIND_MP_CHILD, role=Role.RESOURCE_TRACKER)
    if any(m in code for m in _MP_MARKERS) or "--multiprocessing-fork" in cmd.args:
        return Signature(kind=KIND_MP_CHILD)
    return Signature(kind=KIND_SCRIPT if cmd.runtime else KIND_OTHER)


def _shell_runs_command(cmd: Command) -> bool:
    """`sh -c CMD`, `bash --login -lc CMD`, `cmd /d /s /c CMD`, `pwsh -Command CMD`."""
    lowered = [a.lower() for a in cmd.args]
    if cmd.program == "cmd":
        return "/c" in lowered or "/k" in lowered
    if cmd.program in ("pwsh", "powershell"):
        return any(a in ("-c", "-command", "-file", "-f") for a in lowered)
    for arg in cmd.args:  # -c may be combined with other one-letter options before any operand
        if not arg.startswith("-"):
            return False
        if not arg.startswith("--") and "c" in arg[1:]:
            return True
    return False


def _describe_launcher(cmd: Command) -> Signature | None:
    if cmd.program not in _LAUNCHERS:
        return None
    subcommands = _LAUNCHERS[cmd.program]
    if subcommands is not None and (not cmd.args or cmd.args[0] not in subcommands):
        return None
    return Signature(kind=KIND_LAUNCHER, role=Role.WRAPPER)


def _describe_known(cmd: Command, rule: _Rule) -> Signature:
    args = cmd.args
    title_role = _title_role(cmd)
    if title_role is not None:
        # "gunicorn: master [app:app]": the app spec is in brackets; the worker class is
        # gone with the rest of argv, so ASGI or WSGI is unknown.
        spec = args[1] if len(args) > 1 and args[1].startswith("[") else None
        return Signature(
            server=rule.server, kind=KIND_SERVER, role=title_role, app=spec and spec.strip("[]")
        )
    sub = _first_positional(args, rule.value_opts)
    serving = (rule.serves is None or sub in rule.serves) and sub not in rule.idle
    if not serving:
        kind = KIND_SCRIPT if cmd.runtime else KIND_OTHER
        return Signature(framework=rule.framework, kind=kind)
    if sub == "runserver_plus":  # django-extensions serves with werkzeug
        return Signature("django", "werkzeug", rule.kind, reloads="--noreload" not in args)
    workers = _int(_option(args, "--workers", "-w"), 1)
    return Signature(
        framework=rule.framework,
        server=rule.server,
        kind=rule.kind,
        reloads=_reloads(cmd.program, sub, args),
        workers=workers,
        app=_app_spec(rule, args),
        app_dir=_option(args, "--app-dir", "--chdir"),
        asgi=_asgi(rule, args),
    )


def _title_role(cmd: Command) -> Role | None:
    """setproctitle: gunicorn (and uwsgi) name their master and workers in argv0."""
    if cmd.runtime is None and cmd.program in PREFORK and cmd.args:
        word = cmd.args[0].lower()
        if word in (Role.MASTER.value, Role.WORKER.value):
            return Role(word)
    return None


def _reloads(program: str, sub: str, args: Sequence[str]) -> bool:
    """Does this invocation run a reloader or supervisor that restarts a child?"""
    if program == "fastapi":
        return "--no-reload" not in args if sub == "dev" else "--reload" in args
    if program in ("manage", "django-admin", "django"):
        return "--noreload" not in args
    if program == "flask":
        return ("--debug" in args or "--reload" in args) and "--no-reload" not in args
    return "--reload" in args


def _asgi(rule: _Rule, args: Sequence[str]) -> bool | None:
    worker = _option(args, "-k", "--worker-class") or ""
    if "uvicorn" in worker.lower() or "asgi" in worker.lower():
        return True  # gunicorn -k uvicorn.workers.UvicornWorker serves ASGI
    return rule.asgi


def _app_spec(rule: _Rule, args: Sequence[str]) -> str | None:
    """The app argument of uvicorn/gunicorn/flask --app: the module to read for imports."""
    if rule.framework is not None or rule.asgi is None:
        return None  # the framework is known, or this is no Python app server
    previous = ""
    for arg in args:
        if _APP_SPEC.match(arg) and previous not in _APP_VALUE_OPTS:
            return arg
        previous = arg
    # `gunicorn mysite.wsgi` (Django's docs) names a module without ":attr".
    previous = ""
    candidate = None
    for arg in args:
        if _MODULE.match(arg) and previous not in _APP_VALUE_OPTS:
            candidate = arg
        previous = arg
    return candidate


def _describe_unknown(cmd: Command) -> Signature:
    if cmd.runtime == "node":
        return Signature(server="node", kind=KIND_SERVER)
    if cmd.program in ("bun", "deno"):
        return Signature(server=cmd.program, kind=KIND_SERVER)
    if cmd.runtime == "python" and cmd.target is not None:
        return Signature(kind=KIND_SCRIPT, app=cmd.target)
    return Signature(kind=KIND_SCRIPT if cmd.runtime else KIND_OTHER)


def _is_boundary_name(program: str) -> bool:
    return (
        program in _BOUNDARIES
        or program.startswith(_BOUNDARY_PREFIXES)
        or program.endswith(_BOUNDARY_SUFFIXES)
    )


def _program_name(proc: ProcessInfo) -> str:
    """argv0's stem; comm only when the cmdline is hidden (kernel threads, other users on macOS)."""
    argv = normalise_argv(proc.cmdline)
    if argv:
        return _stem(argv[0])
    return _stem(proc.name or "")


def is_protected(proc: ProcessInfo) -> bool:
    """True for processes portinspect must never treat as an app or signal.

    pid 0 and 1; init systems, sshd, dockerd/containerd and their shims; Linux kernel
    threads; Windows "System" (pid 4, owner of http.sys ports) and session services.
    Shells and terminals are not protected (a server may run as `bash -c ...`): they
    only end the app-root walk. docker-proxy is not protected either; see container_proxy().
    """
    if proc.pid in (0, 1):
        return True
    name = _program_name(proc)
    if proc.pid == 4 and name == "system":
        return True
    # Kernel threads are kthreadd (pid 2) and its children; they have no cmdline. In a
    # pid namespace pid 2 can be an ordinary process with one.
    if (proc.pid == 2 or proc.ppid == 2) and not normalise_argv(proc.cmdline):
        return True
    return name in _PROTECTED or name.startswith(_PROTECTED_PREFIXES)


def is_boundary(proc: ProcessInfo) -> bool:
    """True where the app-root walk stops: shells without -c, terminals, IDEs, init, sshd..."""
    return is_protected(proc) or describe(proc).kind == KIND_BOUNDARY


# ---------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------

# Forwarders that hold a published port for a container. Docker Desktop's and
# OrbStack's helpers are named in killport's source and not verified here.
_PROXIES = {
    "docker-proxy": "docker",
    "rootlesskit": "rootless",
    "rootlessport": "podman",
    "containers-rootlessport": "podman",
    "com.docker.backend": "docker-desktop",
    "vpnkit-bridge": "docker-desktop",
    "orbstack helper": "orbstack",
}


def container_proxy(proc: ProcessInfo) -> ContainerProxy | None:
    """The container port this process forwards, if it is docker-proxy or a rootless forwarder.

    docker-proxy's flags (moby cmd/docker-proxy) give the published and the container
    port; stopping it only breaks the container's mapping, so kill should name the
    container (`docker ps --filter publish=N`) instead.
    """
    argv = [a for a in proc.cmdline if a]
    if not argv:
        return None
    name = _stem(argv[0])
    runtime = _PROXIES.get(name)
    if runtime is None:
        return None
    flags = _go_flags(argv[1:])
    return ContainerProxy(
        proxy=name,
        runtime=runtime,
        proto=flags.get("proto"),
        host_ip=flags.get("host-ip"),
        host_port=_port(flags.get("host-port")),
        container_ip=flags.get("container-ip"),
        container_port=_port(flags.get("container-port")),
    )


def _go_flags(args: Sequence[str]) -> dict[str, str]:
    """Go's flag syntax: -name value, -name=value, --name value; bare booleans."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, eq, value = arg.lstrip("-").partition("=")
            if eq:
                flags[name] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[name] = args[i + 1]
                i += 1
            else:
                flags[name] = "true"
        i += 1
    return flags


def _port(text: str | None) -> int | None:
    value = _int(text, -1)
    return value if 0 <= value <= 65535 else None


# ---------------------------------------------------------------------------------------
# Framework from the app's source
# ---------------------------------------------------------------------------------------

# First match wins. Dash first: a Dash app is a Flask app and may import flask too;
# FastAPI before Starlette, which FastAPI apps import for responses and middleware.
_FRAMEWORK_ORDER = (
    "dash", "gradio", "fastapi", "litestar", "quart", "sanic", "flask", "django",
    "falcon", "bottle", "pyramid", "aiohttp", "tornado", "starlette",
)  # fmt: skip
_ASGI_ONLY = frozenset({"fastapi", "litestar", "quart", "sanic", "starlette"})
_WSGI_ONLY = frozenset({"flask", "bottle", "pyramid", "dash"})
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)|import[ \t]+([^#;\n]+))", re.MULTILINE)


# Cached: every holder of a 5000-socket load runs the same module, and scanning it costs
# ~160 us a time. The classifier reads each path once, so a hit is an identity check.
@functools.lru_cache(maxsize=16)
def framework_from_source(text: str, asgi: bool | None = None) -> str | None:
    """The web framework a module imports, e.g. "fastapi" for `from fastapi import FastAPI`.

    asgi breaks ties the way the server does: a module that mounts a Flask app in a
    FastAPI one is FastAPI under uvicorn and Flask under gunicorn's sync worker.
    """
    found: set[str] = set()
    for match in _IMPORT.finditer(text):
        if match.group(1):
            found.add(match.group(1))
        else:
            for item in match.group(2).split(","):
                words = item.split()
                if words:
                    found.add(words[0].split(".")[0])
    known = [f for f in _FRAMEWORK_ORDER if f in found]
    if not known:
        return None

    def mismatch(fw: str) -> bool:
        return (asgi is True and fw in _WSGI_ONLY) or (asgi is False and fw in _ASGI_ONLY)

    return min(known, key=lambda fw: (mismatch(fw), _FRAMEWORK_ORDER.index(fw)))


@functools.lru_cache(maxsize=_MEMO)
def app_source_paths(app: str, cwd: str | None, app_dir: str | None = None) -> tuple[str, ...]:
    """Files that may hold the app `app` names, resolved like uvicorn/gunicorn/python do.

    "main:app" -> <cwd>/main.py, <cwd>/main/__init__.py; "pkg.wsgi" -> <cwd>/pkg/wsgi.py...;
    "app.py" -> <cwd>/app.py. --app-dir/--chdir is relative to cwd. A relative path with
    no known cwd resolves to nothing.
    """
    base = PurePath(cwd) if cwd else None
    if app_dir:
        base = base / app_dir if base is not None else PurePath(app_dir)
        if not base.is_absolute():
            return ()

    def resolve(rel: str) -> str | None:
        path = PurePath(rel)
        if path.is_absolute():
            return str(path)
        return str(base / path) if base is not None else None

    spec = app.strip()
    if spec.endswith((".py", ".pyw")) or "/" in spec or "\\" in spec:
        # flask --app hello/app.py:create_app(); a Windows drive colon is not an attribute.
        file_part, colon, attr = spec.rpartition(":")
        found = resolve(file_part if colon and _CALLABLE.match(attr) else spec)
        return (found,) if found else ()
    module = spec.split(":", 1)[0].split("(", 1)[0]
    if not _MODULE.match(module):
        return ()
    rel = module.replace(".", "/")
    candidates = (f"{rel}.py", f"{rel}/__init__.py", f"{rel}/__main__.py")
    return tuple(p for p in (resolve(c) for c in candidates) if p is not None)


def same_command(parent: ProcessInfo, child: ProcessInfo) -> bool:
    """Same cmdline modulo argv0: a fork (gunicorn workers without setproctitle, node cluster
    workers) or a re-run of the same command (Django's and werkzeug's reloaders). An empty
    tail (a bare REPL) never counts."""
    a, b = normalise_argv(parent.cmdline)[1:], normalise_argv(child.cmdline)[1:]
    return bool(a) and a == b


# ---------------------------------------------------------------------------------------
# Process and service managers (research/managers-and-exposure.md)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManagerRow:
    """How one process manager shows, what it does when a service dies, how to stop one."""

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
    # Subcommands that make the program a manager (honcho start, not honcho check); None: any.
    serves: frozenset[str] | None = None


_MANAGERS: dict[str, ManagerRow] = {
    "supervisord": ManagerRow(
        "supervisord",
        True,
        False,
        "supervisorctl{config} stop {service}",
        ("SUPERVISOR_PROCESS_NAME",),
    ),
    "honcho": ManagerRow("honcho", False, True, serves=frozenset({"start"})),
    "foreman": ManagerRow("foreman", False, True, serves=frozenset({"start"})),
    "pm2": ManagerRow("pm2", True, False, "pm2 stop {service}", ("name", "pm_id")),
    "circusd": ManagerRow("circus", True, False, "circusctl stop {service}"),
    "overmind": ManagerRow("overmind", None, False, "overmind stop {service}"),
    "concurrently": ManagerRow("concurrently", False, False),
    "runsv": ManagerRow("runit", True, False, "sv stop {service}"),
    "s6-supervise": ManagerRow("s6", True, False, "s6-svc -d {service}"),
}


def manager_row(proc: ProcessInfo) -> ManagerRow | None:
    """The manager this process is, if it is one (supervisord, honcho start, pm2...)."""
    argv = normalise_argv(proc.cmdline)
    if not argv:
        return None
    cmd = parse_command(argv)
    program = cmd.program
    if program == "ruby" and len(argv) > 1:  # foreman is a Ruby script
        program, args = _stem(argv[1]), argv[2:]
    else:
        args = cmd.args
    row = _MANAGERS.get(program)
    if row is None:
        return None
    if row.serves is not None and _first_positional(args) not in row.serves:
        return None
    return row


def manager_for(row: ManagerRow, manager: ProcessInfo, top: ProcessInfo) -> Manager:
    """The Manager record for an app `manager` runs, its service named from the app's env."""
    service = next((top.env[k] for k in row.service_env if top.env.get(k)), None)
    if row.kind == "supervisord" and service is not None:
        group = top.env.get("SUPERVISOR_GROUP_NAME")
        if group and group != service:
            service = f"{group}:{service}"
    if row.kind == "concurrently":
        kills = any(a in ("-k", "--kill-others", "--kill-others-on-fail") for a in manager.cmdline)
        row = replace(row, stops_others=kills)
    stop = None
    if row.stop is not None and service is not None:
        config = _option(normalise_argv(manager.cmdline), "-c", "--configuration")
        stop = row.stop.format(service=service, config=f" -c {config}" if config else "")
    return Manager(row.kind, manager.pid, service, row.restarts, row.stops_others, stop)


_CONTAINER_ID = re.compile(r"(?:docker|libpod|crio|cri-containerd)[-/]([0-9a-f]{12,64})")


def cgroup_manager(proc: ProcessInfo) -> Manager | None:
    """A systemd service or a container, from the process's cgroup path.

    /system.slice/NAME.service is a system unit, .../user@UID.service/.../NAME.service a user
    unit; a .scope is a login session or a transient run, which nothing restarts. Containers
    show as docker-ID.scope, /docker/ID or libpod-ID.scope.
    """
    path = proc.cgroup
    if not path:
        return None
    match = _CONTAINER_ID.search(path)
    if match is not None:
        runtime = "podman" if "libpod" in path else "docker"
        cid = match.group(1)[:12]
        return Manager("container", None, cid, None, False, f"{runtime} stop {cid}")
    parts = [p for p in path.split("/") if p]
    units = [p for p in parts if p.endswith(".service") and not p.startswith("user@")]
    if not units:
        return None
    unit = units[-1]
    user = any(p.startswith("user@") for p in parts)
    command = f"systemctl {'--user ' if user else ''}stop {unit}"
    return Manager("systemd", None, unit, None, False, command)
