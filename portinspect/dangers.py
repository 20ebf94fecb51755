"""Pure: what a listener is, how dangerous it is when others can reach it, and the fix.

The rows of `DANGERS` are the data: how to recognise a kind of server (its server, framework
or program name, as signatures.py recognises them), its level when reachable from outside,
why, and the fix. A row may carry a check, which reads the evidence from the holders' command
lines, their marker environment variables and their scripts' source (is the Werkzeug debugger
on? does Jupyter ask for a token?), and a probe: one HTTP request over loopback that settles
what the check could not know. First match wins; `judge()` applies them to one listener.

The rows are meant to move into the one catalogue of servers (issue 15) as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from portinspect import cmdline
from portinspect.cmdline import Command, normalise_argv, parse_command
from portinspect.errors import UsageError
from portinspect.models import Listener, ProcessInfo
from portinspect.models.audit import LEVELS as LEVELS
from portinspect.models.audit import Level as Level
from portinspect.signatures import Signature, describe


def parse_level(text: str, what: str = "--fail-on") -> Level:
    """A level as users type it: any case, spaces or tabs around it (as inputs.py's ports)."""
    try:
        return Level(text.strip(" \t").lower())
    except ValueError:
        choices = ", ".join(lv.value for lv in LEVELS)
        shown = repr(text if len(text) <= 40 else text[:37] + "...")  # one line, escaped
        raise UsageError(f"{what} must be one of {choices}, not {shown}") from None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What came back: status None when the request failed (error says how)."""

    status: int | None
    content_type: str = ""
    body: str = ""  # the first bytes of the answer, decoded leniently
    error: str | None = None


# ---------------------------------------------------------------------------------------
# What one listener is: the subject of the rows' checks
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    listener: Listener  # the most exposed socket of the group
    addresses: tuple[str, ...]
    processes: tuple[ProcessInfo, ...]  # the holders, top first
    commands: tuple[Command, ...]
    signatures: tuple[Signature, ...]
    env: Mapping[str, str]  # the marker variables of the holders, the top's first
    sources: Mapping[str, str]

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def server(self) -> str | None:
        return self.listener.server

    @property
    def programs(self) -> frozenset[str]:
        return frozenset(c.program for c in self.commands)

    @property
    def top(self) -> ProcessInfo | None:
        return self.processes[0] if self.processes else None

    def args(self) -> tuple[str, ...]:
        """The top holder's arguments after its program (a worker's are the same or fewer)."""
        return self.commands[0].args if self.commands else ()

    def sig(self) -> Signature:
        return self.signatures[0] if self.signatures else Signature()

    @property
    def env_known(self) -> bool:
        """Could we read the top holder's environment? /proc's environ and cwd take the same
        access check, and cwd (unlike the environment) is never empty, so a missing cwd means
        another user's process: its FLASK_DEBUG is unknown, not unset."""
        return self.top is not None and self.top.cwd is not None


def subject(group: Sequence[Listener], sources: Mapping[str, str]) -> Subject:
    first = group[0]
    procs = tuple(h.process for h in first.holders)
    env: dict[str, str] = {}
    for proc in procs:
        for key, value in proc.env.items():
            env.setdefault(key, value)
    return Subject(
        listener=first,
        addresses=tuple(dict.fromkeys(li.address for li in group)),
        processes=procs,
        commands=tuple(parse_command(p.cmdline) for p in procs),
        signatures=tuple(describe(p) for p in procs),
        env=env,
        sources=sources,
    )


@dataclass(frozen=True, slots=True)
class Check:
    """A row's verdict on one subject; None fields keep the row's own."""

    level: Level | None = None
    what: str | None = None
    reason: str | None = None
    fix: str | None = None
    evidence: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # what could not be known
    probe_settles: tuple[str, ...] = ()  # those of them the row's probe can settle


# A probe's reading: the level it shows, what it showed, and whether the answer settles it.
Reading = tuple[Level, str, bool]


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A request that settles what a check left unknown, and how to read the answer."""

    path: str
    read: Callable[[ProbeResult, Level], Reading]


@dataclass(frozen=True, slots=True)
class Danger:
    """One kind of listener: how to recognise it, how bad it is when reachable, the fix.

    Matches when the listener's server is in `servers`, its framework in `frameworks`, or a
    holder's program (script stem, module, executable) in `programs`, and `when` (if any)
    agrees. fix is a template: {port}, {app}, {sub}, {directory}, {program}. disarm says what
    must change before it may be shared through a tunnel at all.
    """

    key: str
    what: str
    level: Level
    reason: str
    fix: str
    servers: frozenset[str] = frozenset()
    frameworks: frozenset[str] = frozenset()
    programs: frozenset[str] = frozenset()
    when: Callable[[Subject], bool] | None = None
    check: Callable[[Subject], Check] | None = None
    probe: ProbeSpec | None = None
    disarm: str | None = None
    # Databases: the default port, so a container publishing it is judged like the database.
    ports: frozenset[int] = frozenset()
    container_level: Level | None = None

    def matches(self, s: Subject) -> bool:
        hit = (
            (s.server is not None and s.server in self.servers)
            or (s.listener.framework is not None and s.listener.framework in self.frameworks)
            or bool(self.programs & s.programs)
        )
        if not (self.servers or self.frameworks or self.programs):
            hit = True
        return hit and (self.when is None or self.when(s))


# ---------------------------------------------------------------------------------------
# Reading arguments
# ---------------------------------------------------------------------------------------


def _value(args: Sequence[str], *names: str) -> str | None:
    """`--name V` or `--name=V`, `-n=V` too (the last one wins); None when absent."""
    return cmdline.option(args, names, dash_equals=True)


def _given(args: Sequence[str], *names: str) -> bool:
    return any(a in names or a.split("=", 1)[0] in names for a in args)


def _unquoted(value: str) -> str:
    # traitlets strips one pair of quotes: --ServerApp.token="''" from a Dockerfile is empty.
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _host_port(text: str, default_host: str, default_port: int | None) -> tuple[str, int | None]:
    """`0.0.0.0:5678`, `5678`, `[::]:9229`, `*:5005` -> (host, port)."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "", text
    host = host.strip("[]") or default_host
    number = int(port) if port.isascii() and port.isdigit() else default_port
    return host, number


# ---------------------------------------------------------------------------------------
# The checks: evidence for one kind of listener
# ---------------------------------------------------------------------------------------

# Debuggers: each finds the (host, port) a holder's debugger listens on, and the evidence.
_DebuggerSpec = tuple[str, int | None, str]  # host, port, evidence


def _node_inspect(proc: ProcessInfo, cmd: Command) -> _DebuggerSpec | None:
    argv = normalise_argv(proc.cmdline)
    options = list(argv[1 : argv.index(cmd.target)] if cmd.target in argv else argv[1:])
    source = "its command line"
    if not any(o.startswith("--inspect") for o in options) and proc.env.get("NODE_OPTIONS"):
        options = proc.env["NODE_OPTIONS"].split()
        source = "NODE_OPTIONS"
    spec = None
    port_override = None
    for option in options:
        name, _eq, value = option.partition("=")
        if name in ("--inspect", "--inspect-brk", "--inspect-wait"):
            spec = (name, value)
        elif name == "--inspect-port" and value.isdigit():
            port_override = int(value)
    if spec is None:
        return None
    host, port = _host_port(spec[1], "127.0.0.1", 9229) if spec[1] else ("127.0.0.1", 9229)
    shown = f"{spec[0]}={spec[1]}" if spec[1] else spec[0]
    return host, port_override or port, f"{shown} in {source}"


def _debugpy(proc: ProcessInfo, cmd: Command) -> _DebuggerSpec | None:
    args = cmd.args
    if cmd.program in ("debugpy", "ptvsd"):
        listen = _value(args, "--listen")
        if listen is not None:
            host, port = _host_port(listen, "127.0.0.1", None)
            return host, port, f"{cmd.program} --listen {listen}"
        if cmd.program == "ptvsd" and _value(args, "--port"):
            host = _value(args, "--host") or "127.0.0.1"
            port = _host_port(_value(args, "--port") or "", host, None)[1]
            return host, port, f"ptvsd --host {host} --port {port}"
        return None
    target = (cmd.target or "").replace("\\", "/")
    if "debugpy/adapter" in target or cmd.program == "debugpy.adapter":
        # debugpy.listen() starts this adapter process; it is what holds the port.
        host = _value(args, "--host") or "127.0.0.1"
        port = _host_port(_value(args, "--port") or "", host, None)[1]
        return host, port, f"the debugpy adapter (--host {host} --port {port})"
    return None


def _jdwp(proc: ProcessInfo, cmd: Command) -> _DebuggerSpec | None:
    for arg in normalise_argv(proc.cmdline):
        if arg.startswith(("-agentlib:jdwp=", "-Xrunjdwp:")):
            opts = dict(p.partition("=")[::2] for p in arg.split("=", 1)[1].split(","))
            if opts.get("server", "n") != "y" or "address" not in opts:
                return None  # the JVM dials out to a debugger: nothing listens
            host, port = _host_port(opts["address"], "127.0.0.1", None)
            return ("0.0.0.0" if host == "*" else host), port, f"-agentlib:jdwp address={port}"
    return None


def _delve(proc: ProcessInfo, cmd: Command) -> _DebuggerSpec | None:
    if cmd.program != "dlv" or "--headless" not in cmd.args:
        return None
    listen = _value(cmd.args, "--listen", "-l") or "127.0.0.1:0"
    host, port = _host_port(listen, "127.0.0.1", None)
    return host, port, f"dlv --headless --listen={listen}"


_DEBUGGERS: dict[str, Callable[[ProcessInfo, Command], _DebuggerSpec | None]] = {
    "node --inspect": _node_inspect,
    "debugpy": _debugpy,
    "jdwp": _jdwp,
    "delve": _delve,
}


def _debugger_on_port(s: Subject) -> tuple[str, str] | None:
    """(debugger name, evidence) when this listener is a holder's debugger port."""
    for proc, cmd in zip(s.processes, s.commands, strict=True):
        for name, find in _DEBUGGERS.items():
            spec = find(proc, cmd)
            if spec is not None and spec[1] == s.port:
                return name, spec[2]
    return None


def _debugger(s: Subject) -> Check:
    found = _debugger_on_port(s)
    name, evidence = found if found is not None else ("debugger", "")
    fixes = {
        "node --inspect": "node --inspect=127.0.0.1:{port} (its default host); reach it from "
        "elsewhere through `ssh -L {port}:127.0.0.1:{port}`",
        "debugpy": "debugpy --listen 127.0.0.1:{port}; reach it from elsewhere through "
        "`ssh -L {port}:127.0.0.1:{port}`",
        "jdwp": "-agentlib:jdwp=transport=dt_socket,server=y,address=127.0.0.1:{port}",
        "delve": "dlv --headless --listen=127.0.0.1:{port}",
    }
    return Check(what=f"debugger port ({name})", evidence=(evidence,), fix=fixes.get(name))


# Jupyter: token and password as the command line and JUPYTER_TOKEN give them.
_JUPYTER_TOKEN_OPTS = ("--ServerApp.token", "--NotebookApp.token", "--IdentityProvider.token")
_JUPYTER_PASSWORD_OPTS = (
    "--ServerApp.password",
    "--NotebookApp.password",
    "--PasswordIdentityProvider.hashed_password",
    "--ServerApp.hashed_password",
)


def _jupyter(s: Subject) -> Check:
    args = s.args()
    user = (s.top.user if s.top else None) or "its user"
    evidence: list[str] = []
    token_off = False
    token_on = False
    for name in _JUPYTER_TOKEN_OPTS:
        value = _value(args, name)
        if value is None:
            continue
        if _unquoted(value) == "":
            token_off = True
            evidence.append(f"{name}='' on its command line: token authentication off")
        else:
            token_on = True
            evidence.append(f"{name} set on its command line (value not shown)")
    from_env = s.env.get("JUPYTER_TOKEN")
    if from_env == "set":
        token_on = True
        evidence.append("JUPYTER_TOKEN is set in its environment (value not shown)")
    elif from_env == "empty":
        evidence.append("JUPYTER_TOKEN is set but empty (ignored: Jupyter makes a random token)")
    password = [n for n in _JUPYTER_PASSWORD_OPTS if _unquoted(_value(args, n) or "")]
    evidence += [f"{n} set on its command line (value not shown)" for n in password]
    sub = _jupyter_sub(s)
    if token_off and not token_on and not password:
        return Check(
            level=Level.CRITICAL,
            what="Jupyter without a token",
            reason=f"no token: whoever reaches it runs code as {user} (notebooks, terminals)",
            evidence=tuple(evidence),
            unknown=(_JUPYTER_LOGIN_UNKNOWN,),
            probe_settles=(_JUPYTER_LOGIN_UNKNOWN,),
            fix=f"jupyter {sub} --ip 127.0.0.1 with a token (drop the empty token option)",
        )
    if not token_on and not password:
        evidence.append("no token option: Jupyter requires its random token by default")
        return Check(
            evidence=tuple(evidence),
            unknown=(_JUPYTER_CONFIG_UNKNOWN,),
            probe_settles=(_JUPYTER_CONFIG_UNKNOWN,),
        )
    return Check(evidence=tuple(evidence))


_JUPYTER_LOGIN_UNKNOWN = "a password set in a config file (`jupyter server password`)"
_JUPYTER_CONFIG_UNKNOWN = "whether a config file turns the token off"


def _jupyter_sub(s: Subject) -> str:
    for cmd in s.commands:
        if cmd.program in ("jupyter-lab", "jupyterlab"):
            return "lab"
        if cmd.program in ("jupyter-notebook", "notebook", "jupyter-nbclassic", "nbclassic"):
            return "notebook"
    return "server"


def _read_jupyter_probe(result: ProbeResult, level: Level) -> Reading:
    if result.status in (401, 403):
        shown = f"GET /api/status without a token: {result.status}, authentication is on"
        return _at_most(level, Level.HIGH), shown, True
    if result.status == 200:
        return Level.CRITICAL, "GET /api/status without a token: 200, NO authentication", True
    return level, _inconclusive("/api/status", result), False


def _at_most(level: Level, cap: Level) -> Level:
    return level if level.rank <= cap.rank else cap


def _inconclusive(path: str, result: ProbeResult) -> str:
    if result.status is None:
        return f"GET {path} failed ({result.error}): still unknown"
    return f"GET {path}: {result.status}, inconclusive"


# Werkzeug: is the debugger on? From flask's flags, FLASK_DEBUG, or app.run(debug=True).
# Patterns as text: re compiles (and caches) them on first use, so importing this module for
# `who` costs no regex compile unless a script's source is read.
_RUN_CALL = r"\.run\s*\("
_DEBUG_TRUE = r"\b(debug|use_debugger)\s*=\s*True\b"
_DEBUG_FALSE = r"\b(debug|use_debugger)\s*=\s*False\b"
_DEBUG_ASSIGN = r"""^\s*\w+\.(debug\s*=\s*True|config\[["']DEBUG["']\]\s*=\s*True)"""


def script_paths(listeners: Iterable[Listener]) -> list[str]:
    """The Python scripts reachable listeners run (`python app.py`): where app.run(debug=True)
    would be. api.audit reads them and passes their text back in Facts.sources."""
    paths: list[str] = []
    for li in listeners:
        for holder in li.holders:
            path = script_path(holder.process, parse_command(holder.process.cmdline))
            if path is not None and path not in paths:
                paths.append(path)
    return paths


def script_path(proc: ProcessInfo, cmd: Command) -> str | None:
    if cmd.runtime != "python" or cmd.module or cmd.target is None:
        return None
    if not cmd.target.endswith((".py", ".pyw")):
        return None
    path = PurePath(cmd.target)
    if path.is_absolute():
        return str(path)
    return str(PurePath(proc.cwd) / path) if proc.cwd else None


def _debug_in_source(text: str) -> tuple[bool | None, str]:
    """(debugger on?, "file line N: ...") from an app script; None when it does not say."""
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if re.match(_DEBUG_ASSIGN, line):
            return True, f"line {number}: {line.strip()[:80]}"
    for match in re.finditer(_RUN_CALL, text):
        # The call's arguments, up to its closing parenthesis (or 400 characters).
        depth, end = 1, match.end()
        while end < len(text) and depth and end - match.end() < 400:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        call = text[match.start() : end]
        for pattern, on in ((_DEBUG_TRUE, True), (_DEBUG_FALSE, False)):
            found = re.search(pattern, call)
            if found is not None:
                number = text.count("\n", 0, match.start() + found.start()) + 1
                return on, f"line {number}: {lines[number - 1].strip()[:80]}"
    return None, ""


def _flask_debug_env(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.lower() not in ("", "0", "false", "no")


def _werkzeug(s: Subject) -> Check:
    args = s.args()
    evidence: list[str] = []
    debugger: bool | None = None
    env_debug = _flask_debug_env(s.env.get("FLASK_DEBUG"))
    sub = parse_command(s.top.cmdline).args if s.top else ()
    is_flask = "flask" in s.programs
    is_plus = "runserver_plus" in sub
    fix = "bind it to 127.0.0.1 (app.run(host='127.0.0.1')) and keep debug off on shared networks"
    if is_flask:
        fix = "flask run --host 127.0.0.1 --port {port}, without --debug on a shared network"
        if "--debug" in args:
            debugger = True
            evidence.append("flask run --debug on its command line")
        elif "--no-debug" in args:
            debugger = False
            evidence.append("flask run --no-debug on its command line")
        elif env_debug is not None:
            debugger = env_debug
            shown = s.env.get("FLASK_DEBUG", "")
            evidence.append(f"FLASK_DEBUG={shown} in its environment")
        elif s.env_known:
            debugger = False
            evidence.append("no --debug and no FLASK_DEBUG: debug mode off")
        else:
            evidence.append("no --debug; FLASK_DEBUG unknown (another user's environment)")
        if debugger and "--no-debugger" in args:
            debugger = False
            evidence.append("--no-debugger: the reloader runs, the debugger does not")
    elif is_plus:
        fix = "python manage.py runserver_plus 127.0.0.1:{port}"
        debugger = True
        evidence.append("runserver_plus (django-extensions) serves the Werkzeug debugger")
    else:
        for proc, cmd in zip(s.processes, s.commands, strict=True):
            path = script_path(proc, cmd)
            if path is None or path not in s.sources:
                continue
            found, where = _debug_in_source(s.sources[path])
            if found is not None:
                debugger = found
                evidence.append(f"{path} {where}")
                break
        if debugger is None and env_debug:
            debugger = True
            evidence.append(f"FLASK_DEBUG={s.env.get('FLASK_DEBUG', '')} in its environment")
    pin = s.env.get("WERKZEUG_DEBUG_PIN")
    if pin == "off":
        evidence.append("WERKZEUG_DEBUG_PIN=off: the console asks for no PIN")
    elif pin is not None:
        evidence.append(f"WERKZEUG_DEBUG_PIN is {pin} in its environment (value not shown)")
    if debugger:
        guard = "with no PIN at all" if pin == "off" else "behind a PIN printed in its log"
        return Check(
            level=Level.CRITICAL,
            what="Werkzeug debugger",
            reason="its in-browser console runs Python as "
            f"{(s.top.user if s.top else None) or 'its user'}, {guard}; its host check "
            "trusts the Host header the client sends",
            evidence=tuple(evidence),
            fix=fix,
        )
    if debugger is None:
        return Check(
            evidence=tuple(evidence),
            unknown=(_DEBUGGER_UNKNOWN,),
            probe_settles=(_DEBUGGER_UNKNOWN,),
            fix=fix,
        )
    return Check(evidence=tuple(evidence), fix=fix)


_DEBUGGER_UNKNOWN = "whether the debugger is on (its script or environment is not readable)"


def _read_werkzeug_probe(result: ProbeResult, level: Level) -> Reading:
    path = "the debugger's style.css"
    if result.status is None:
        return level, _inconclusive(path, result), False
    if result.status == 200 and "css" in result.content_type:
        return Level.CRITICAL, f"GET {path}: 200, the debugger is ON", True
    kind = f" ({result.content_type or 'no type'})" if result.status == 200 else ""
    return _at_most(level, Level.HIGH), f"GET {path}: {result.status}{kind}, debugger off", True


def _django(s: Subject) -> Check:
    evidence = ["manage.py runserver: Django's development server"]
    if "--insecure" in s.args():
        evidence.append("--insecure: it serves static files whatever DEBUG says")
    unknown = "the DEBUG setting (settings are not read)"
    return Check(evidence=tuple(evidence), unknown=(unknown,), probe_settles=(unknown,))


def _read_django_probe(result: ProbeResult, level: Level) -> Reading:
    path = "a page that does not exist"
    if "DEBUG = True" in result.body:
        return level, f"GET {path}: {result.status} with Django's debug page, DEBUG = True", True
    if result.status == 404:
        return level, f"GET {path}: 404 without the debug page, DEBUG off", True
    return level, _inconclusive(path, result), False


def _http_server(s: Subject) -> Check:
    args = s.args()
    cwd = s.top.cwd if s.top else None
    given = _value(args, "--directory", "-d")
    if given is not None:
        path = given if PurePath(given).is_absolute() or cwd is None else str(PurePath(cwd) / given)
        return Check(
            what=f"http.server serving {path}",
            evidence=(f"--directory {given}",),
            fix="python -m http.server {port} --bind 127.0.0.1 --directory " + _quoted(path),
        )
    if cwd is None:
        return Check(
            unknown=("which directory it serves (its working directory needs root to read)",),
        )
    return Check(
        what=f"http.server serving {cwd}",
        evidence=(f"it serves its working directory, {cwd}",),
        fix="python -m http.server {port} --bind 127.0.0.1 --directory " + _quoted(cwd),
    )


def _quoted(path: str) -> str:
    return f"'{path}'" if re.search(r"[^\w@%+=:,./-]", path) else path


def _reload(s: Subject) -> Check:
    return Check(
        what=f"{s.server} --reload (development mode)",
        evidence=("--reload on its command line: a development reloader",),
    )


def _next_dev(s: Subject) -> bool:
    return any(c.program == "next" and c.args[:1] == ("dev",) for c in s.commands)


def _reloads(s: Subject) -> bool:
    return any(sig.reloads for sig in s.signatures)


# Databases and caches: does the command line say whether clients must authenticate?
@dataclass(frozen=True, slots=True)
class _Auth:
    on: tuple[str, ...] = ()  # options that turn authentication on (values never shown)
    off: tuple[tuple[str, str], ...] = ()  # (option, value) that turn protection off
    config: tuple[str, ...] = ()  # options naming a config file (not read)
    default: str = "unknown"  # "open", "password" (asks by default) or "unknown"
    default_text: str = ""


def _auth_check(rule: _Auth) -> Callable[[Subject], Check]:
    def check(s: Subject) -> Check:
        args = s.args()
        on = [o for o in rule.on if _given(args, o)]
        if on:
            names = ", ".join(on)
            return Check(
                level=Level.MEDIUM,
                evidence=(f"{names} on its command line: clients must authenticate",),
            )
        for option, value in rule.off:
            if (_value(args, option) or "").lower() == value:
                return Check(
                    level=Level.HIGH,
                    evidence=(f"{option} {value} and no password option: open to anyone",),
                )
        config = [o for o in rule.config if _given(args, o)]
        if config or rule.default == "unknown":
            where = f"its config file ({', '.join(config)})" if config else "its configuration"
            return Check(
                level=Level.HIGH,
                evidence=(rule.default_text,) if rule.default_text else (),
                unknown=(f"whether clients must authenticate: {where} is not read",),
            )
        if rule.default == "open":
            return Check(level=Level.HIGH, evidence=(rule.default_text,))
        return Check(
            level=Level.MEDIUM,
            evidence=(rule.default_text,),
            unknown=("whether every account asks for a password: its configuration is not read",),
        )

    return check


# ---------------------------------------------------------------------------------------
# The rows: first match wins
# ---------------------------------------------------------------------------------------

_PRODUCTION_SERVERS = frozenset(
    {"gunicorn", "uwsgi", "uvicorn", "hypercorn", "daphne", "granian", "waitress", "nginx", "httpd"}
)
_PRODUCTION_PROGRAMS = frozenset({"caddy", "haproxy", "traefik", "envoy", "apache2", "lighttpd"})
_SYSTEM_PROGRAMS = frozenset(
    {
        "sshd", "avahi-daemon", "cupsd", "dhclient", "dhcpcd", "systemd-resolved",
        "systemd-networkd", "chronyd", "ntpd", "systemd-timesyncd",
    }
)  # fmt: skip
_ON_PURPOSE = "a production server, presumably reachable on purpose"
_LOOPBACK_FIX = "bind it to 127.0.0.1 (its host or bind option), or firewall port {port}"


def _row(key: str, what: str, level: Level, reason: str, fix: str, **kw: Any) -> Danger:
    for name in ("servers", "frameworks", "programs", "ports"):
        if name in kw:
            kw[name] = frozenset(kw[name])
    return Danger(key, what, level, reason, fix, **kw)


DANGERS: tuple[Danger, ...] = (
    # --- code execution ------------------------------------------------------------------
    _row(
        "debugger",
        "debugger port",
        Level.CRITICAL,
        "a debugger runs any code in the process for whoever connects: there is no password",
        _LOOPBACK_FIX,
        when=lambda s: _debugger_on_port(s) is not None,
        check=_debugger,
        disarm="never forward a debugger port; use `ssh -L` to reach it",
    ),
    _row(
        "jupyter",
        "Jupyter server",
        Level.HIGH,
        "a Jupyter server runs code for whoever gets in; its token is the only guard",
        "jupyter {sub} --ip 127.0.0.1 (keep its token)",
        servers={"jupyter"},
        check=_jupyter,
        probe=ProbeSpec("/api/status", _read_jupyter_probe),
        disarm="keep a token or a password (never --ServerApp.token='')",
    ),
    _row(
        "werkzeug",
        "Werkzeug development server",
        Level.HIGH,
        "a development server, not hardened (Werkzeug's docs: do not use it in production)",
        "bind it to 127.0.0.1",
        servers={"werkzeug"},
        check=_werkzeug,
        probe=ProbeSpec("/?__debugger__=yes&cmd=resource&f=style.css", _read_werkzeug_probe),
        disarm="turn the debugger off (no --debug, FLASK_DEBUG unset, debug=False)",
    ),
    # --- development servers -----------------------------------------------------------
    _row(
        "django",
        "Django development server (runserver)",
        Level.HIGH,
        "runserver is not hardened (Django's docs: do not use it in production); with DEBUG "
        "on its error pages show settings and tracebacks",
        "python manage.py runserver 127.0.0.1:{port}",
        servers={"runserver"},
        check=_django,
        probe=ProbeSpec("/portinspect-probe-not-a-page/", _read_django_probe),
    ),
    _row(
        "fastapi-dev",
        "fastapi dev (development mode)",
        Level.HIGH,
        "a development server with a reloader, meant for your own machine",
        "fastapi dev --host 127.0.0.1 --port {port} (its default host)",
        programs={"fastapi"},
        when=_reloads,
    ),
    _row(
        "reload",
        "development server (--reload)",
        Level.HIGH,
        "a server in development mode, meant for your own machine",
        "{program} {app} --host 127.0.0.1 --port {port}",
        servers={"uvicorn", "hypercorn", "granian", "daphne", "gunicorn"},
        when=_reloads,
        check=_reload,
    ),
    _row(
        "http.server",
        "http.server",
        Level.HIGH,
        "python -m http.server hands every file of its directory to whoever asks (its docs: "
        "not for production)",
        "python -m http.server {port} --bind 127.0.0.1",
        servers={"http.server"},
        check=_http_server,
    ),
    _row(
        "vite",
        "vite dev server",
        Level.HIGH,
        "a development server that serves your source tree (and whatever server.fs.allow permits)",
        "vite --host 127.0.0.1 (vite's default is localhost: drop --host)",
        servers={"vite"},
    ),
    _row(
        "webpack-dev-server",
        "webpack dev server",
        Level.HIGH,
        "a development server that serves your source tree",
        "webpack serve --host 127.0.0.1 (or devServer.host)",
        servers={"webpack-dev-server"},
    ),
    _row(
        "next-dev",
        "next dev",
        Level.HIGH,
        "Next.js in development mode: source maps, error overlays, no hardening",
        "next dev -H 127.0.0.1",
        servers={"next"},
        when=_next_dev,
    ),
    _row(
        "node-dev",
        "development server",
        Level.HIGH,
        "a framework's development server: source maps, error overlays, no hardening",
        "start it with --host 127.0.0.1",
        servers={"nuxt", "ng", "astro", "storybook"},
    ),
    _row(
        "static-dev",
        "static file server",
        Level.HIGH,
        "a development file server: every file of its directory to whoever asks",
        "bind it to 127.0.0.1 (http-server -a 127.0.0.1, mkdocs serve -a 127.0.0.1:{port})",
        servers={"http-server", "serve", "mkdocs"},
    ),
    # --- databases and caches -----------------------------------------------------------
    _row(
        "redis",
        "Redis",
        Level.HIGH,
        "a database or cache on a wildcard address: without a password anyone reaching it "
        "reads and writes your data (and Redis can be turned into a file writer)",
        "redis-server --bind 127.0.0.1 -::1, and set requirepass (or ACL users)",
        programs={"redis-server", "valkey-server", "keydb-server", "redis-stack-server"},
        check=_auth_check(
            _Auth(
                on=("--requirepass", "--aclfile"),
                off=(("--protected-mode", "no"),),
                default="unknown",
                default_text="redis rewrites its command line (proc-title-template), so its "
                "options cannot be read from outside",
            )
        ),
        ports={6379},
        container_level=Level.HIGH,  # the official image runs with protected-mode off
    ),
    _row(
        "memcached",
        "memcached",
        Level.HIGH,
        "a cache on a wildcard address: anyone reaching it reads and writes it",
        "memcached -l 127.0.0.1",
        programs={"memcached"},
        check=_auth_check(
            _Auth(
                on=("-S", "--enable-sasl"),
                default="open",
                default_text="memcached has no authentication unless started with -S (SASL)",
            )
        ),
        ports={11211},
        container_level=Level.HIGH,
    ),
    _row(
        "mongodb",
        "MongoDB",
        Level.HIGH,
        "a database on a wildcard address: without --auth anyone reaching it owns the data",
        "mongod --bind_ip 127.0.0.1 --auth",
        programs={"mongod"},
        check=_auth_check(
            _Auth(
                on=("--auth", "--keyFile"),
                config=("--config", "-f"),
                default="open",
                default_text="mongod accepts clients without credentials unless started with "
                "--auth (or security.authorization in its config)",
            )
        ),
        ports={27017},
        container_level=Level.HIGH,
    ),
    _row(
        "postgres",
        "PostgreSQL",
        Level.MEDIUM,
        "a database on a wildcard address: pg_hba.conf decides who may log in",
        "listen_addresses = 'localhost' in postgresql.conf",
        programs={"postgres", "postmaster"},
        check=_auth_check(
            _Auth(
                default="password",
                default_text="PostgreSQL asks for a password unless pg_hba.conf says trust "
                "(pg_hba.conf is not read)",
            )
        ),
        ports={5432},
        container_level=Level.MEDIUM,
    ),
    _row(
        "mysql",
        "MySQL / MariaDB",
        Level.MEDIUM,
        "a database on a wildcard address: its accounts' passwords are the only guard",
        "bind-address = 127.0.0.1 in its config",
        programs={"mysqld", "mariadbd"},
        check=_auth_check(
            _Auth(
                default="password",
                default_text="MySQL accounts need a password unless created without one (not read)",
            )
        ),
        ports={3306},
        container_level=Level.MEDIUM,
    ),
    _row(
        "elasticsearch",
        "Elasticsearch",
        Level.HIGH,
        "a search database on a wildcard address: without security anyone reads and writes it",
        "network.host: 127.0.0.1 in elasticsearch.yml, security on",
        programs={"elasticsearch"},
        check=_auth_check(
            _Auth(
                default="unknown",
                default_text="security is on by default since 8.0 and off before",
            )
        ),
        ports={9200},
        container_level=Level.HIGH,
    ),
    # --- production and system services --------------------------------------------------
    _row(
        "streamlit",
        "Streamlit app",
        Level.MEDIUM,
        "an app server that runs your Python for every visitor (it binds every address by default)",
        "streamlit run ... --server.address 127.0.0.1",
        servers={"streamlit"},
    ),
    _row(
        "production",
        "{program} (production server)",
        Level.INFO,
        _ON_PURPOSE,
        "nothing if it is meant to be reachable; otherwise bind it to 127.0.0.1:{port} and put "
        "a reverse proxy in front",
        servers=_PRODUCTION_SERVERS,
        programs=_PRODUCTION_PROGRAMS,
    ),
    _row(
        "system",
        "{program} (system service)",
        Level.INFO,
        "a system service that listens beyond loopback by design",
        "nothing if it is meant to be reachable; otherwise restrict it in its own configuration",
        programs=_SYSTEM_PROGRAMS,
    ),
)
BY_KEY = {d.key: d for d in DANGERS}

GENERIC = Danger(
    "other",
    "service",
    Level.MEDIUM,
    "reachable from other machines; portinspect does not know what it is",
    _LOOPBACK_FIX,
)


# ---------------------------------------------------------------------------------------
# Judging one listener
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    row: Danger
    level: Level
    what: str
    reason: str
    fix: str
    evidence: tuple[str, ...]
    unknown: tuple[str, ...]
    probe_settles: tuple[str, ...]


def judge(s: Subject) -> Verdict:
    row = next((d for d in DANGERS if d.matches(s)), GENERIC)
    check = row.check(s) if row.check is not None else Check()
    sig = s.sig()
    fields = {
        "port": str(s.port),
        "app": sig.app or "APP",
        "sub": _jupyter_sub(s),
        "program": s.server or _row_program(row, s),
        "directory": (s.top.cwd if s.top else None) or ".",
    }
    what = _fill(check.what or row.what, fields)
    if row is GENERIC:
        what = f"{s.listener.server or (s.top.name if s.top else None) or 'unknown'} service"
    return Verdict(
        row=row,
        level=check.level or row.level,
        what=what,
        reason=check.reason or row.reason,
        fix=_fill(check.fix or row.fix, fields),
        evidence=check.evidence,
        unknown=check.unknown,
        probe_settles=check.probe_settles,
    )


def _row_program(row: Danger, s: Subject) -> str:
    """The holder's program the row matched (`sshd`, `caddy`), else any of them."""
    return next((p for p in sorted(s.programs) if p in row.programs), min(s.programs, default="it"))


def _fill(template: str, fields: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fields.get(m.group(1), m.group(0)), template)
