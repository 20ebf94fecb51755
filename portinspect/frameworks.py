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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import TypedDict

from portinspect.models import ProcessInfo

# Reads a text file (bounded in size) and returns its content, or None if it cannot.
SourceReader = Callable[[str], "str | None"]

# Roles a process can have in an app tree (AppIdentity.roles, member_role()).
# The process actually serving: a single-process server, a reloader's child.
SERVER = "server"
# Django/werkzeug autoreloader parent: re-runs its own cmdline as the server.
RELOADER = "reloader"
# uvicorn --reload/--workers, fastapi dev: holds the socket and spawns the server(s).
SUPERVISOR = "supervisor"
# gunicorn/uwsgi/nginx arbiter: holds the socket and respawns workers.
MASTER = "master"
# A worker of a master or of a uvicorn --workers supervisor.
WORKER = "worker"
# npm/npx/yarn/pnpm, their `sh -c`, uv/poetry run: starts the app, serves nothing.
WRAPPER = "wrapper"
# A Jupyter kernel (its own process group, env JPY_PARENT_PID).
KERNEL = "kernel"
# multiprocessing's helper process next to uvicorn's spawn children.
RESOURCE_TRACKER = "resource_tracker"

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
class AppIdentity:
    """What the holders of one socket are, and which process is the app's top.

    framework is None when neither the command lines nor the app's source name one
    (a plain `python -m http.server` has no framework). server is None for a program
    we do not recognise. app_pid is None only when no holder is known at all.
    """

    framework: str | None = None
    server: str | None = None
    app_pid: int | None = None
    # pid -> role ("server", "master", "worker", "reloader", "supervisor", "wrapper", "kernel")
    # for every holder and every ancestor the app-root walk took in.
    roles: Mapping[int, str] = field(default_factory=dict)


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
    role: str | None = None  # a role the process names itself (setproctitle), or kernel/tracker
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
_PREFORK = frozenset({"gunicorn", "uwsgi", "nginx", "httpd"})
_GENERIC_SERVERS = frozenset({"node", "bun", "deno"})
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
            return Signature(kind=KIND_KERNEL, role=KERNEL)
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
        return Signature(kind=KIND_KERNEL, role=KERNEL)
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
        return Signature(kind=KIND_MP_CHILD, role=RESOURCE_TRACKER)
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
    return Signature(kind=KIND_LAUNCHER, role=WRAPPER)


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


def _title_role(cmd: Command) -> str | None:
    """setproctitle: gunicorn (and uwsgi) name their master and workers in argv0."""
    if cmd.runtime is None and cmd.program in _PREFORK and cmd.args:
        word = cmd.args[0].lower()
        if word in (MASTER, WORKER):
            return word
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
# The app tree: walking up from the holders
# ---------------------------------------------------------------------------------------


@dataclass
class _Tree:
    """The facts one identify_app() call works on, with describe() memoised."""

    processes: Mapping[int, ProcessInfo]
    holders: frozenset[int]
    stop_pids: frozenset[int]
    _sigs: dict[int, Signature] = field(default_factory=dict)

    def sig(self, pid: int) -> Signature:
        if pid not in self._sigs:
            self._sigs[pid] = describe(self.processes[pid])
        return self._sigs[pid]

    def parent(self, pid: int) -> ProcessInfo | None:
        ppid = self.processes[pid].ppid
        if ppid is None or ppid == pid:
            return None
        return self.processes.get(ppid)


def _same_command(parent: ProcessInfo, child: ProcessInfo) -> bool:
    """Same cmdline modulo argv0.

    Django's and werkzeug's reloaders re-run `sys.executable + argv`; gunicorn workers
    (without setproctitle) and node cluster workers are forks. An empty tail (a bare
    REPL) never counts.
    """
    a, b = normalise_argv(parent.cmdline)[1:], normalise_argv(child.cmdline)[1:]
    return bool(a) and a == b


def _same_app(tree: _Tree, parent: ProcessInfo, child: ProcessInfo) -> bool:
    """Is `parent` part of the app `child` belongs to?"""
    if parent.pid in tree.holders:  # holds the same socket: werkzeug, uvicorn, gunicorn
        return True
    psig, csig = tree.sig(parent.pid), tree.sig(child.pid)
    if psig.kind == KIND_LAUNCHER:
        return True
    if psig.kind == KIND_SHELL_C:  # npm's `sh -c vite`, but not a Makefile's `sh -c`
        grand = tree.parent(parent.pid)
        return grand is not None and tree.sig(grand.pid).kind == KIND_LAUNCHER
    if _same_command(parent, child):
        return True
    if csig.kind == KIND_MP_CHILD:
        # A spawn child belongs to the program that spawned it, unless that is a kernel
        # or a REPL: stopping a notebook to free its uvicorn would lose the notebook.
        program = parse_command(parent.cmdline).program
        return psig.kind in (KIND_SERVER, KIND_SCRIPT) and program not in _INTERACTIVE
    if any(child.env.get(k) == "true" for k in _RELOADER_ENV):
        return psig.kind in (KIND_SERVER, KIND_SCRIPT)
    return (
        psig.server is not None
        and psig.server == csig.server
        and psig.server not in _GENERIC_SERVERS
    )


def _walk_up(tree: _Tree, holder: int) -> list[int]:
    """The holder and every ancestor that is part of its app, bottom first."""
    chain = [holder]
    current = tree.processes[holder]
    while True:
        parent = tree.parent(current.pid)
        if (
            parent is None
            or parent.pid in tree.stop_pids
            or parent.pid in chain
            or _outside(tree, parent.pid)
            or not _same_app(tree, parent, current)
        ):
            return chain
        chain.append(parent.pid)
        current = parent


def app_root(
    pid: int,
    processes: Mapping[int, ProcessInfo],
    holder_pids: Iterable[int] = (),
    stop_pids: frozenset[int] = frozenset(),
) -> int:
    """The top process of the app `pid` belongs to (pid itself if it is not in `processes`)."""
    if pid not in processes:
        return pid
    tree = _Tree(processes, frozenset(holder_pids) | {pid}, stop_pids)
    return _walk_up(tree, pid)[-1]


# ---------------------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------------------


def _role(tree: _Tree, pid: int, members: frozenset[int]) -> str:
    sig = tree.sig(pid)
    if sig.kind in (KIND_LAUNCHER, KIND_SHELL_C):
        return WRAPPER
    if sig.role is not None:  # setproctitle master/worker, kernel
        return sig.role
    parent = tree.parent(pid)
    parent_member = parent is not None and parent.pid in members
    if sig.server in _PREFORK:
        same = parent_member and parent is not None and tree.sig(parent.pid).server == sig.server
        return WORKER if same else MASTER
    if sig.kind == KIND_MP_CHILD and parent is not None and parent_member:
        return _spawn_child_role(tree, parent.pid, members)
    children = [m for m in members if m != pid and tree.processes[m].ppid == pid]
    if children:
        reloader = sig.server in ("runserver", "werkzeug") or any(
            _same_command(tree.processes[pid], tree.processes[c]) for c in children
        )
        return RELOADER if reloader else SUPERVISOR
    if sig.kind == KIND_SERVER and sig.asgi and (sig.reloads or sig.workers > 1):
        # A uvicorn/fastapi supervisor whose children are gone still holds the port.
        return SUPERVISOR
    return SERVER


def _spawn_child_role(tree: _Tree, parent: int, members: frozenset[int]) -> str:
    """uvicorn --workers N spawns workers; --reload (and fastapi dev) spawns one server."""
    psig = tree.sig(parent)
    if psig.workers > 1:
        return WORKER
    if psig.reloads:
        return SERVER
    siblings = [m for m in members if tree.processes[m].ppid == parent]
    return WORKER if len(siblings) > 1 else SERVER


def member_role(
    proc: ProcessInfo,
    processes: Mapping[int, ProcessInfo],
    identity: AppIdentity | None = None,
) -> str | None:
    """Role of any process in an app tree, including those outside identity.roles.

    kill shows the whole tree it stops: kernels, multiprocessing resource trackers,
    npm's `sh -c` and workers that hold no socket. None for a process with no known role.
    """
    if identity is not None and proc.pid in identity.roles:
        return identity.roles[proc.pid]
    sig = describe(proc)
    if sig.kind in (KIND_LAUNCHER, KIND_SHELL_C):
        return WRAPPER
    if sig.role is not None:
        return sig.role
    parent = processes.get(proc.ppid) if proc.ppid is not None else None
    if sig.kind == KIND_MP_CHILD:
        psig = describe(parent) if parent is not None else Signature()
        return SERVER if psig.reloads and psig.workers <= 1 else WORKER
    if sig.server in _PREFORK and parent is not None and describe(parent).server == sig.server:
        return WORKER
    return None


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


def _framework_from_app(tree: _Tree, order: Sequence[int], read_source: SourceReader) -> str | None:
    for pid in order:
        sig = tree.sig(pid)
        if sig.app is None:
            continue
        cwd = tree.processes[pid].cwd
        for path in app_source_paths(sig.app, cwd, sig.app_dir):
            text = read_source(path)
            framework = framework_from_source(text, sig.asgi) if text is not None else None
            if framework is not None:
                return framework
    return None


# ---------------------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------------------


def identify_app(
    holder_pids: Sequence[int],
    processes: Mapping[int, ProcessInfo],
    stop_pids: frozenset[int] = frozenset(),
    read_source: SourceReader | None = None,
) -> AppIdentity:
    """Framework, server, app root and roles for the holders of one socket.

    holder_pids: every process holding the socket (master and workers alike; order
    does not matter). processes: those holders and their ancestors. stop_pids:
    portinspect's own lineage, never taken into an app. read_source reads an app
    module (uvicorn main:app -> main.py) to tell FastAPI from Flask; without it the
    framework of a bare app server stays None.
    """
    visible = sorted({pid for pid in holder_pids if pid in processes})
    if not visible:
        hidden = sorted(set(holder_pids))
        return AppIdentity(app_pid=hidden[0] if hidden else None)
    tree = _Tree(processes, frozenset(visible), stop_pids)
    chains = [_walk_up(tree, pid) for pid in visible]
    app_pid = _pick_root(tree, chains)
    members = frozenset(pid for chain in chains for pid in chain)
    # A shell or init that inherited the socket holds it but is no part of the app.
    roles = {pid: _role(tree, pid, members) for pid in sorted(members) if not _outside(tree, pid)}
    # Top of the tree first, so the master's facts come before a worker's.
    order = sorted(members, key=lambda pid: (_depth(tree, pid, members), pid))
    server = _first(_inherited(tree, pid, members, "server") for pid in order)
    framework = _first(_inherited(tree, pid, members, "framework") for pid in order)
    if framework is None and read_source is not None:
        framework = _framework_from_app(tree, order, read_source)
    return AppIdentity(framework=framework, server=server, app_pid=app_pid, roles=roles)


def _outside(tree: _Tree, pid: int) -> bool:
    return is_protected(tree.processes[pid]) or tree.sig(pid).kind == KIND_BOUNDARY


def _pick_root(tree: _Tree, chains: Sequence[Sequence[int]]) -> int:
    """The root most holders lead to, never a shell or init that merely inherited the
    socket while an app holds it too; the lowest pid on a tie (unrelated sharers are rare)."""
    tops = [chain[-1] for chain in chains]
    return min(set(tops), key=lambda top: (_outside(tree, top), -tops.count(top), top))


def _depth(tree: _Tree, pid: int, members: frozenset[int]) -> int:
    depth, seen = 0, {pid}
    parent = tree.parent(pid)
    while parent is not None and parent.pid in members and parent.pid not in seen:
        depth += 1
        seen.add(parent.pid)
        parent = tree.parent(parent.pid)
    return depth


def _inherited(tree: _Tree, pid: int, members: frozenset[int], attr: str) -> str | None:
    """A signature field, taken from the nearest member ancestor when the process has none
    (a multiprocessing child is whatever spawned it)."""
    seen: set[int] = set()
    current: int | None = pid
    while current is not None and current in members and current not in seen:
        value: str | None = getattr(tree.sig(current), attr)
        if value is not None:
            return value
        if tree.sig(current).kind != KIND_MP_CHILD:
            return None
        seen.add(current)
        parent = tree.parent(current)
        current = parent.pid if parent is not None else None
    return None


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v is not None), None)
