"""Pure: the listeners, their processes, the interfaces and the tunnels -> the ways in, worst first.

Nothing here touches the OS; api.audit() gathers the facts and runs the optional probes.

A way in is a listener on a wildcard or non-loopback address, a port a container publishes,
or a local port a tunnel forwards to the outside. Each finding says what the listener is, why
it matters, the evidence a user can check (a flag, the NAME of an environment variable and
whether it is set, a source line; never a token's value) and the fix. What cannot be known
from here is said ("unknown"), and the level then assumes the worse case it cannot rule out.

What a listener is, how dangerous it is when reachable and how to close it is data: the
`DANGERS` rows, first match wins. A row may carry a check (the evidence: is the debugger on,
does Jupyter ask for a token) and a probe (one HTTP request over loopback that settles an
unknown). The rows are meant to move into one catalogue of servers later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import PurePath
from typing import Any

from portinspect import frameworks
from portinspect.errors import UsageError
from portinspect.frameworks import Command, Signature, normalise_argv, parse_command
from portinspect.models import Family, InterfaceAddress, Listener, ProcessInfo, Proto
from portinspect.tunnels import PUBLIC, Target, Tunnel


class Level(str, Enum):
    CRITICAL = "critical"  # code execution for whoever reaches it
    HIGH = "high"  # a development server, or a database without authentication
    MEDIUM = "medium"  # anything else reachable that is not a production server
    INFO = "info"  # production servers bound on purpose; loopback-only services

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.INFO: 0, Level.MEDIUM: 1, Level.HIGH: 2, Level.CRITICAL: 3}
LEVELS = tuple(sorted(Level, key=lambda lv: -lv.rank))  # critical first
DEFAULT_FAIL_ON = Level.HIGH


def parse_level(text: str, what: str = "--fail-on") -> Level:
    try:
        return Level(text.strip().lower())
    except ValueError:
        choices = ", ".join(lv.value for lv in LEVELS)
        raise UsageError(f"{what} must be one of {choices}, not {text!r}") from None


def at_or_above(findings: Iterable[Finding], level: Level) -> list[Finding]:
    return [f for f in findings if f.level.rank >= level.rank]


# How a finding is reached, most direct first in the report.
NETWORK = "network"  # the listener's own address is beyond loopback
TUNNEL = "tunnel"  # a tunnel client forwards it to the outside
CONTAINER = "container"  # a container runtime publishes it
LOOPBACK = "loopback"  # reachable from this machine only (listed with --all)
_EXPOSURE_ORDER = {TUNNEL: 0, NETWORK: 1, CONTAINER: 2, LOOPBACK: 3}


@dataclass(frozen=True, slots=True)
class Via:
    """What makes a listener reachable when its own address does not: a tunnel or a container."""

    kind: str  # "ngrok", "ssh", "cloudflared"..., or "container"
    pid: int | None
    program: str | None
    command: tuple[str, ...] = ()  # secrets replaced by *** (tunnels.redact)
    public: str | None = None  # where it is published (a host, a service)
    access: str | None = None  # tunnels.PUBLIC, LOGIN, ACCOUNT, TAILNET, REMOTE_HOST
    container: str | None = None  # "172.17.0.2:80" from docker-proxy's flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "program": self.program,
            "command": list(self.command),
            "public": self.public,
            "access": self.access,
            "container": self.container,
        }


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One HTTP GET over loopback that can settle an unknown (api.audit runs it)."""

    host: str  # always a loopback address: 127.0.0.1 or ::1
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What came back: status None when the request failed (error says how)."""

    status: int | None
    content_type: str = ""
    body: str = ""  # the first bytes of the answer, decoded leniently
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One way in. port None: a tunnel whose targets are not on its command line.

    address is the most exposed of the listener's addresses (a wildcard first); addresses
    lists them all. pid, program, framework and server describe the listener (None for a
    tunnel to a port where nothing listens, or when the owner is hidden). evidence are facts a
    user can check; unknown names what could not be known (and the level assumes the worse).
    """

    level: Level
    key: str  # the DANGERS row that judged it ("werkzeug", "jupyter"...) or "tunnel", "hidden"
    what: str
    reason: str
    fix: str
    exposure: str  # NETWORK, TUNNEL, CONTAINER or LOOPBACK
    port: int | None = None
    proto: Proto | None = None
    address: str | None = None
    addresses: tuple[str, ...] = ()
    pid: int | None = None
    program: str | None = None
    user: str | None = None
    framework: str | None = None
    server: str | None = None
    evidence: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    via: Via | None = None
    reachable_on: tuple[InterfaceAddress, ...] = ()
    probe: ProbeRequest | None = None
    probed: str | None = None  # what the probe showed, once it ran
    # The unknowns a conclusive probe answer settles (a subset of unknown).
    probe_settles: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one finding of `audit --json`)."""
        return {
            "level": self.level.value,
            "port": self.port,
            "proto": self.proto.value if self.proto is not None else None,
            "address": self.address,
            "addresses": list(self.addresses),
            "pid": self.pid,
            "program": self.program,
            "user": self.user,
            "framework": self.framework,
            "server": self.server,
            "what": self.what,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "unknown": list(self.unknown),
            "fix": self.fix,
            "exposure": self.exposure,
            "via": self.via.to_dict() if self.via is not None else None,
            "reachable_on": [a.to_dict() for a in self.reachable_on],
            "probe": None
            if self.probe is None or self.probed is None
            else {"url": self.probe.url, "result": self.probed},
        }


@dataclass(frozen=True, slots=True)
class Facts:
    """What api.audit() gathered: the machine as the audit sees it."""

    listeners: Sequence[Listener]
    interfaces: Sequence[InterfaceAddress] = ()
    tunnels: Sequence[Tunnel] = ()
    # path -> text of the Python scripts the listeners run (app.run(debug=True) lives there).
    sources: Mapping[str, str] = field(default_factory=dict)
    root: bool = False  # the caller is root: a hidden owner is another namespace, not a user


# ---------------------------------------------------------------------------------------
# What one listener is: the subject of the rows' checks
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Subject:
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


def _subject(group: Sequence[Listener], sources: Mapping[str, str]) -> _Subject:
    first = group[0]
    procs = tuple(h.process for h in first.holders)
    env: dict[str, str] = {}
    for proc in procs:
        for key, value in proc.env.items():
            env.setdefault(key, value)
    return _Subject(
        listener=first,
        addresses=tuple(dict.fromkeys(li.address for li in group)),
        processes=procs,
        commands=tuple(parse_command(p.cmdline) for p in procs),
        signatures=tuple(frameworks.describe(p) for p in procs),
        env=env,
        sources=sources,
    )


@dataclass(frozen=True, slots=True)
class _Check:
    """A row's verdict on one subject; None fields keep the row's own."""

    level: Level | None = None
    what: str | None = None
    reason: str | None = None
    fix: str | None = None
    evidence: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # what could not be known
    probe_settles: tuple[str, ...] = ()  # those of them the row's probe can settle


# A probe's reading: the level it shows, what it showed, and whether the answer settles it.
_Reading = tuple[Level, str, bool]


@dataclass(frozen=True, slots=True)
class _Probe:
    """A request that settles what a check left unknown, and how to read the answer."""

    path: str
    read: Callable[[ProbeResult, Level], _Reading]


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
    when: Callable[[_Subject], bool] | None = None
    check: Callable[[_Subject], _Check] | None = None
    probe: _Probe | None = None
    disarm: str | None = None
    # Databases: the default port, so a container publishing it is judged like the database.
    ports: frozenset[int] = frozenset()
    container_level: Level | None = None

    def matches(self, s: _Subject) -> bool:
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
    """`--name V` or `--name=V` (the last one wins); None when absent."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
    return found


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


def _debugger_on_port(s: _Subject) -> tuple[str, str] | None:
    """(debugger name, evidence) when this listener is a holder's debugger port."""
    for proc, cmd in zip(s.processes, s.commands, strict=True):
        for name, find in _DEBUGGERS.items():
            spec = find(proc, cmd)
            if spec is not None and spec[1] == s.port:
                return name, spec[2]
    return None


def _debugger(s: _Subject) -> _Check:
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
    return _Check(what=f"debugger port ({name})", evidence=(evidence,), fix=fixes.get(name))


# Jupyter: token and password as the command line and JUPYTER_TOKEN give them.
_JUPYTER_TOKEN_OPTS = ("--ServerApp.token", "--NotebookApp.token", "--IdentityProvider.token")
_JUPYTER_PASSWORD_OPTS = (
    "--ServerApp.password",
    "--NotebookApp.password",
    "--PasswordIdentityProvider.hashed_password",
    "--ServerApp.hashed_password",
)


def _jupyter(s: _Subject) -> _Check:
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
        return _Check(
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
        return _Check(
            evidence=tuple(evidence),
            unknown=(_JUPYTER_CONFIG_UNKNOWN,),
            probe_settles=(_JUPYTER_CONFIG_UNKNOWN,),
        )
    return _Check(evidence=tuple(evidence))


_JUPYTER_LOGIN_UNKNOWN = "a password set in a config file (`jupyter server password`)"
_JUPYTER_CONFIG_UNKNOWN = "whether a config file turns the token off"


def _jupyter_sub(s: _Subject) -> str:
    for cmd in s.commands:
        if cmd.program in ("jupyter-lab", "jupyterlab"):
            return "lab"
        if cmd.program in ("jupyter-notebook", "notebook", "jupyter-nbclassic", "nbclassic"):
            return "notebook"
    return "server"


def _read_jupyter_probe(result: ProbeResult, level: Level) -> _Reading:
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
_RUN_CALL = re.compile(r"\.run\s*\(")
_DEBUG_TRUE = re.compile(r"\b(debug|use_debugger)\s*=\s*True\b")
_DEBUG_FALSE = re.compile(r"\b(debug|use_debugger)\s*=\s*False\b")
_DEBUG_ASSIGN = re.compile(r"""^\s*\w+\.(debug\s*=\s*True|config\[["']DEBUG["']\]\s*=\s*True)""")


def script_paths(listeners: Iterable[Listener]) -> list[str]:
    """The Python scripts reachable listeners run (`python app.py`): where app.run(debug=True)
    would be. api.audit reads them and passes their text back in Facts.sources."""
    paths: list[str] = []
    for li in listeners:
        for holder in li.holders:
            path = _script_path(holder.process, parse_command(holder.process.cmdline))
            if path is not None and path not in paths:
                paths.append(path)
    return paths


def _script_path(proc: ProcessInfo, cmd: Command) -> str | None:
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
        if _DEBUG_ASSIGN.match(line):
            return True, f"line {number}: {line.strip()[:80]}"
    for match in _RUN_CALL.finditer(text):
        # The call's arguments, up to its closing parenthesis (or 400 characters).
        depth, end = 1, match.end()
        while end < len(text) and depth and end - match.end() < 400:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        call = text[match.start() : end]
        number = text.count("\n", 0, match.start()) + 1
        shown = " ".join(call.split())[:80]
        if _DEBUG_TRUE.search(call):
            return True, f"line {number}: {shown}"
        if _DEBUG_FALSE.search(call):
            return False, f"line {number}: {shown}"
    return None, ""


def _flask_debug_env(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.lower() not in ("", "0", "false", "no")


def _werkzeug(s: _Subject) -> _Check:
    args = s.args()
    evidence: list[str] = []
    debugger: bool | None = None
    env_debug = _flask_debug_env(s.env.get("FLASK_DEBUG"))
    sub = frameworks.parse_command(s.top.cmdline).args if s.top else ()
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
        else:
            debugger = False
            evidence.append("no --debug and no FLASK_DEBUG: debug mode off")
        if debugger and "--no-debugger" in args:
            debugger = False
            evidence.append("--no-debugger: the reloader runs, the debugger does not")
    elif is_plus:
        fix = "python manage.py runserver_plus 127.0.0.1:{port}"
        debugger = True
        evidence.append("runserver_plus (django-extensions) serves the Werkzeug debugger")
    else:
        for proc, cmd in zip(s.processes, s.commands, strict=True):
            path = _script_path(proc, cmd)
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
        return _Check(
            level=Level.CRITICAL,
            what="Werkzeug debugger",
            reason="its in-browser console runs Python as "
            f"{(s.top.user if s.top else None) or 'its user'}, {guard}; its host check "
            "trusts the Host header the client sends",
            evidence=tuple(evidence),
            fix=fix,
        )
    if debugger is None:
        return _Check(
            evidence=tuple(evidence),
            unknown=(_DEBUGGER_UNKNOWN,),
            probe_settles=(_DEBUGGER_UNKNOWN,),
            fix=fix,
        )
    return _Check(evidence=tuple(evidence), fix=fix)


_DEBUGGER_UNKNOWN = "whether the debugger is on (the app's source was not readable)"


def _read_werkzeug_probe(result: ProbeResult, level: Level) -> _Reading:
    path = "the debugger's style.css"
    if result.status is None:
        return level, _inconclusive(path, result), False
    if result.status == 200 and "css" in result.content_type:
        return Level.CRITICAL, f"GET {path}: 200, the debugger is ON", True
    kind = f" ({result.content_type or 'no type'})" if result.status == 200 else ""
    return _at_most(level, Level.HIGH), f"GET {path}: {result.status}{kind}, debugger off", True


def _django(s: _Subject) -> _Check:
    evidence = ["manage.py runserver: Django's development server"]
    if "--insecure" in s.args():
        evidence.append("--insecure: it serves static files whatever DEBUG says")
    unknown = "the DEBUG setting (settings are not read)"
    return _Check(evidence=tuple(evidence), unknown=(unknown,), probe_settles=(unknown,))


def _read_django_probe(result: ProbeResult, level: Level) -> _Reading:
    path = "a page that does not exist"
    if "DEBUG = True" in result.body:
        return level, f"GET {path}: {result.status} with Django's debug page, DEBUG = True", True
    if result.status == 404:
        return level, f"GET {path}: 404 without the debug page, DEBUG off", True
    return level, _inconclusive(path, result), False


def _http_server(s: _Subject) -> _Check:
    args = s.args()
    cwd = s.top.cwd if s.top else None
    given = _value(args, "--directory", "-d")
    if given is not None:
        path = given if PurePath(given).is_absolute() or cwd is None else str(PurePath(cwd) / given)
        return _Check(
            what=f"http.server serving {path}",
            evidence=(f"--directory {given}",),
            fix="python -m http.server {port} --bind 127.0.0.1 --directory " + _quoted(path),
        )
    if cwd is None:
        return _Check(
            unknown=("which directory it serves (its working directory needs root to read)",),
        )
    return _Check(
        what=f"http.server serving {cwd}",
        evidence=(f"it serves its working directory, {cwd}",),
        fix="python -m http.server {port} --bind 127.0.0.1 --directory " + _quoted(cwd),
    )


def _quoted(path: str) -> str:
    return f"'{path}'" if re.search(r"[^\w@%+=:,./-]", path) else path


def _reload(s: _Subject) -> _Check:
    return _Check(
        what=f"{s.server} --reload (development mode)",
        evidence=("--reload on its command line: a development reloader",),
    )


def _next_dev(s: _Subject) -> bool:
    return any(c.program == "next" and c.args[:1] == ("dev",) for c in s.commands)


def _reloads(s: _Subject) -> bool:
    return any(sig.reloads for sig in s.signatures)


# Databases and caches: does the command line say whether clients must authenticate?
@dataclass(frozen=True, slots=True)
class _Auth:
    on: tuple[str, ...] = ()  # options that turn authentication on (values never shown)
    off: tuple[tuple[str, str], ...] = ()  # (option, value) that turn protection off
    config: tuple[str, ...] = ()  # options naming a config file (not read)
    default: str = "unknown"  # "open", "protected", "password" or "unknown"
    default_text: str = ""


def _auth_check(rule: _Auth) -> Callable[[_Subject], _Check]:
    def check(s: _Subject) -> _Check:
        args = s.args()
        on = [o for o in rule.on if _given(args, o)]
        if on:
            names = ", ".join(on)
            return _Check(
                level=Level.MEDIUM,
                evidence=(f"{names} on its command line: clients must authenticate",),
            )
        for option, value in rule.off:
            if (_value(args, option) or "").lower() == value:
                return _Check(
                    level=Level.HIGH,
                    evidence=(f"{option} {value} and no password option: open to anyone",),
                )
        config = [o for o in rule.config if _given(args, o)]
        if config or rule.default == "unknown":
            where = f"its config file ({', '.join(config)})" if config else "its configuration"
            return _Check(
                level=Level.HIGH,
                evidence=(rule.default_text,) if rule.default_text else (),
                unknown=(f"whether clients must authenticate: {where} is not read",),
            )
        level = Level.HIGH if rule.default == "open" else Level.MEDIUM
        return _Check(level=level, evidence=(rule.default_text,))

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
_ON_PURPOSE = (
    "a production server: reachable on purpose, presumably; say so in a firewall too. If it is "
    "not meant to be public, bind it to 127.0.0.1 behind a reverse proxy"
)
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
        probe=_Probe("/api/status", _read_jupyter_probe),
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
        probe=_Probe("/?__debugger__=yes&cmd=resource&f=style.css", _read_werkzeug_probe),
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
        probe=_Probe("/portinspect-probe-not-a-page/", _read_django_probe),
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
        "production server",
        Level.INFO,
        _ON_PURPOSE,
        "nothing, if it is meant to be reachable; else bind it to 127.0.0.1:{port}",
        servers=_PRODUCTION_SERVERS,
        programs=_PRODUCTION_PROGRAMS,
    ),
    _row(
        "system",
        "system service",
        Level.INFO,
        "a system service that listens beyond loopback by design",
        "nothing, if it is meant to be reachable; else restrict it in its own configuration",
        programs=_SYSTEM_PROGRAMS,
    ),
)
_BY_KEY = {d.key: d for d in DANGERS}

_GENERIC = Danger(
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
class _Verdict:
    row: Danger
    level: Level
    what: str
    reason: str
    fix: str
    evidence: tuple[str, ...]
    unknown: tuple[str, ...]
    probe_settles: tuple[str, ...]


def _judge(s: _Subject) -> _Verdict:
    row = next((d for d in DANGERS if d.matches(s)), _GENERIC)
    check = row.check(s) if row.check is not None else _Check()
    sig = s.sig()
    fields = {
        "port": str(s.port),
        "app": sig.app or "APP",
        "sub": _jupyter_sub(s),
        "program": next(iter(sorted(s.programs)), "it") if s.server is None else s.server,
        "directory": (s.top.cwd if s.top else None) or ".",
    }
    what = check.what or row.what
    if row is _GENERIC:
        what = f"{s.listener.server or (s.top.name if s.top else None) or 'unknown'} service"
    return _Verdict(
        row=row,
        level=check.level or row.level,
        what=what,
        reason=check.reason or row.reason,
        fix=_fill(check.fix or row.fix, fields),
        evidence=check.evidence,
        unknown=check.unknown,
        probe_settles=check.probe_settles,
    )


def _fill(template: str, fields: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fields.get(m.group(1), m.group(0)), template)


def _container(s: _Subject) -> tuple[frameworks.ContainerProxy, ProcessInfo] | None:
    for proc in s.processes:
        proxy = frameworks.container_proxy(proc)
        if proxy is not None:
            return proxy, proc
    return None


def _container_finding(s: _Subject, base: Finding) -> Finding:
    found = _container(s)
    assert found is not None
    proxy, proc = found
    inner = proxy["container_port"]
    where = None
    if proxy["container_ip"] and inner is not None:
        where = f"{proxy['container_ip']}:{inner}"
    row = next((d for d in DANGERS if inner in d.ports and d.container_level), None)
    runtime = proxy["runtime"]
    find = f"docker ps --filter publish={s.port}" if runtime == "docker" else "podman ps"
    fix = (
        f"publish it on loopback only: -p 127.0.0.1:{s.port}:{inner or 'PORT'} (compose: "
        f'ports: ["127.0.0.1:{s.port}:{inner or "PORT"}"]); find it with `{find}`'
    )
    via = Via("container", proc.pid, proxy["proxy"], container=where)
    if row is not None:
        assert row.container_level is not None
        return replace(
            base,
            level=row.container_level,
            key=row.key,
            what=f"container port {inner} ({row.what}, by its port)",
            reason=row.reason,
            evidence=(f"{proxy['proxy']} publishes container port {inner}, {row.what}'s default",),
            unknown=("what runs in the container and whether it asks for a password",),
            fix=fix,
            exposure=CONTAINER,
            via=via,
        )
    return replace(
        base,
        level=Level.MEDIUM,
        key="container",
        what=f"container port {inner if inner is not None else '?'} ({runtime})",
        reason="a container's published port: reachable from other machines",
        evidence=(f"{proxy['proxy']} (pid {proc.pid}) publishes it",),
        unknown=("what runs in the container",),
        fix=fix,
        exposure=CONTAINER,
        via=via,
    )


def _hidden_finding(s: _Subject, base: Finding, root: bool) -> Finding:
    owner = s.listener.user or "another user"
    if root:
        why = "its owner is not visible even to root (another pid namespace, or the kernel)"
        fix = "find it where it runs (a container: `docker ps`; the kernel: nfsd, rpc)"
    else:
        why = f"it belongs to {owner}, whose processes are hidden from you"
        fix = "run `sudo portinspect audit` to see what it is"
    return replace(
        base,
        level=Level.MEDIUM,
        key="hidden",
        what="unknown service (owner hidden)",
        reason="reachable from other machines; " + why,
        unknown=("what it is",),
        fix=fix,
    )


def _probe_host(address: str) -> str | None:
    """The loopback address that reaches a listener bound to `address`, if one does."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_loopback:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return None


def _reachable_on(
    addresses: Sequence[str], interfaces: Sequence[InterfaceAddress]
) -> tuple[InterfaceAddress, ...]:
    """The interface addresses other machines can use to reach these bound addresses.

    A wildcard is every non-loopback address of its family; `::` also takes IPv4 (Linux's
    sockets are dual-stack unless the server set IPV6_V6ONLY, which we cannot see here).
    """
    found: list[InterfaceAddress] = []
    for address in addresses:
        for iface in interfaces:
            if _is_loopback(iface.address):
                continue
            if address in ("0.0.0.0", "::ffff:0.0.0.0"):
                hit = iface.family is Family.IPV4
            elif address == "::":
                hit = True
            else:
                hit = iface.address == address.split("%", 1)[0]
            if hit and iface not in found:
                found.append(iface)
    return tuple(found)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_WILDCARDS = ("0.0.0.0", "::", "::ffff:0.0.0.0")


def _groups(listeners: Sequence[Listener]) -> list[list[Listener]]:
    """One group per served port: the IPv4 and IPv6 sockets of one app are one way in.
    The most exposed socket (a wildcard, then any non-loopback address) comes first."""
    groups: dict[tuple[Any, ...], list[Listener]] = {}
    for li in listeners:
        owner: Any = li.app_pid if li.app_pid is not None else ("uid", li.uid, li.address)
        groups.setdefault((li.proto, li.port, owner), []).append(li)
    ordered = []
    for group in groups.values():
        group.sort(key=lambda li: (li.address not in _WILDCARDS, not li.exposed))
        ordered.append(group)
    return ordered


def _listener_finding(
    group: Sequence[Listener], facts: Facts
) -> tuple[Finding, _Subject, _Verdict | None]:
    """The finding as it would be were the listener reachable from outside (the caller
    makes it a loopback one when it is not), its subject, and the row's verdict."""
    s = _subject(group, facts.sources)
    li = s.listener
    top = s.top
    exposed_addresses = tuple(x.address for x in group if x.exposed)
    base = Finding(
        level=Level.INFO,
        key="other",
        what="service",
        reason="",
        fix="",
        exposure=NETWORK,
        port=li.port,
        proto=li.proto,
        address=li.address,
        addresses=s.addresses,
        pid=li.pid,
        program=li.process,
        user=li.user,
        framework=li.framework,
        server=li.server,
        reachable_on=_reachable_on(exposed_addresses, facts.interfaces),
    )
    if li.owner_hidden:
        return _hidden_finding(s, base, facts.root), s, None
    if _container(s) is not None:
        return _container_finding(s, base), s, None
    verdict = _judge(s)
    host = _probe_host(li.address)
    row = verdict.row
    found = replace(
        base,
        level=verdict.level,
        key=row.key,
        what=verdict.what,
        reason=verdict.reason,
        fix=verdict.fix,
        evidence=verdict.evidence,
        unknown=verdict.unknown,
        probe_settles=verdict.probe_settles,
        probe=ProbeRequest(host, li.port, row.probe.path) if row.probe and host else None,
        user=top.user if top is not None and top.user else li.user,
    )
    return found, s, verdict


def _as_loopback(found: Finding) -> Finding:
    return replace(
        found,
        level=Level.INFO,
        exposure=LOOPBACK,
        reason="loopback only: other machines cannot reach it, every local user and program "
        f"can (reachable from outside, it would be {found.level})",
        fix="nothing while it stays on loopback and no tunnel forwards it",
    )


# ---------------------------------------------------------------------------------------
# Tunnels
# ---------------------------------------------------------------------------------------

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _target_is_local(t: Target, interfaces: Sequence[InterfaceAddress]) -> bool:
    if t.host is None or t.host.lower() in _LOCAL_NAMES or t.host.endswith(".localhost"):
        return True
    if _is_loopback(t.host) or t.host in _WILDCARDS:
        return True
    return any(iface.address == t.host for iface in interfaces)


def _serves_target(li: Listener, t: Target) -> bool:
    """Does a connection to the tunnel's target reach this listener?"""
    if li.proto is not Proto.TCP or li.port != t.port:
        return False
    if li.address in _WILDCARDS or _is_loopback(li.address):
        return t.host is None or _is_loopback_name(t.host) or t.host in _WILDCARDS
    return t.host == li.address


def _is_loopback_name(host: str) -> bool:
    lowered = host.lower()
    return lowered in _LOCAL_NAMES or lowered.endswith(".localhost") or _is_loopback(host)


def _via(t: Tunnel) -> Via:
    return Via(
        t.kind,
        t.pid,
        t.kind,
        command=t.command,
        public=t.public,
        access=t.access,
    )


def _stop_tunnel(t: Tunnel) -> str:
    who = f"pid {t.pid}" if t.pid is not None else "its process"
    return (
        f"stop the tunnel ({t.kind}, {who}: `kill {t.pid}` or Ctrl-C where it runs); "
        "`portinspect kill` does not apply: a tunnel holds no listening socket"
        if t.pid is not None
        else f"stop the tunnel ({t.kind}); `portinspect kill` does not apply to tunnels"
    )


_ACCESS_TEXT = {
    PUBLIC: "public: anyone with the URL",
    "login": "public, behind the tunnel's login",
    "account": "the signed-in account",
    "tailnet": "every device of your tailnet",
    "remote-host": "whoever can reach that port on the ssh server",
}


def _tunnel_evidence(t: Tunnel, target: Target | None) -> str:
    where = f" to {t.public}" if t.public else ""
    port = f" port {target.port}" if target is not None else ""
    access = _ACCESS_TEXT.get(t.access, t.access)
    return f"{t.kind} (pid {t.pid}) forwards{port}{where} ({access})"


def _tunnel_findings(
    t: Tunnel,
    judged: Sequence[tuple[Finding, _Subject, _Verdict | None]],
    facts: Facts,
) -> list[Finding]:
    via = _via(t)
    stop = _stop_tunnel(t)
    found: list[Finding] = []
    if t.everything:
        found.append(
            Finding(
                level=Level.HIGH,
                key="tunnel",
                what=f"{t.kind} dynamic remote forward",
                reason="the ssh server's side gets a SOCKS proxy through this machine: every "
                "port of it, loopback-only services included",
                fix=stop,
                exposure=TUNNEL,
                evidence=(_tunnel_evidence(t, None),),
                via=via,
            )
        )
    if not t.targets and t.unknown is not None:
        found.append(
            Finding(
                level=Level.MEDIUM,
                key="tunnel",
                what=f"{t.kind} tunnel",
                reason="a tunnel publishes local services; which ones is not on its command line",
                fix=stop,
                exposure=TUNNEL,
                evidence=(_tunnel_evidence(t, None),),
                unknown=(t.unknown,),
                via=via,
            )
        )
    for target in t.targets:
        if not _target_is_local(target, facts.interfaces):
            found.append(
                Finding(
                    level=Level.MEDIUM,
                    key="tunnel",
                    what=f"{t.kind} tunnel to {target.host}:{target.port}",
                    reason="it forwards the outside to another machine, through this one",
                    fix=stop,
                    exposure=TUNNEL,
                    port=target.port,
                    proto=Proto.TCP,
                    address=target.host,
                    evidence=(_tunnel_evidence(t, target),),
                    via=via,
                )
            )
            continue
        matched = [j for j in judged if _serves_target(j[1].listener, target)]
        if not matched:
            found.append(
                Finding(
                    level=Level.MEDIUM,
                    key="tunnel",
                    what=f"{t.kind} tunnel to port {target.port}",
                    reason=f"nothing listens on port {target.port} now: whatever starts there "
                    "will be published",
                    fix=stop,
                    exposure=TUNNEL,
                    port=target.port,
                    proto=Proto.TCP,
                    evidence=(_tunnel_evidence(t, target),),
                    via=via,
                )
            )
        for finding, subject, verdict in matched:
            found.append(_through_tunnel(finding, subject, verdict, t, target, via, stop))
    return found


def _through_tunnel(
    finding: Finding,
    s: _Subject,
    verdict: _Verdict | None,
    t: Tunnel,
    target: Target,
    via: Via,
    stop: str,
) -> Finding:
    disarm = verdict.row.disarm if verdict is not None else None
    # A tunnel is there to publish: even a production server behind one is worth a look.
    level = max(finding.level, Level.MEDIUM, key=lambda lv: lv.rank)
    fix = stop
    if disarm and level is Level.CRITICAL:
        fix = f"{stop}; before sharing it again: {disarm}"
    return replace(
        finding,
        level=level,
        fix=fix,
        exposure=TUNNEL,
        evidence=(_tunnel_evidence(t, target), *finding.evidence),
        via=via,
        reachable_on=(),
    )


# ---------------------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------------------


def assess(facts: Facts, *, include_loopback: bool = False) -> list[Finding]:
    """Every way in, worst first: listeners beyond loopback, published container ports, and
    local ports forwarded by tunnels. Loopback-only listeners (info) only with include_loopback:
    they are not reachable from other machines, and every machine has a dozen of them."""
    judged = [_listener_finding(group, facts) for group in _groups(facts.listeners)]
    findings = [
        found if s.listener.exposed else _as_loopback(found)
        for found, s, _verdict in judged
        if include_loopback or s.listener.exposed
    ]
    for tunnel in facts.tunnels:
        findings += _tunnel_findings(tunnel, judged, facts)
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (
            -f.level.rank,
            _EXPOSURE_ORDER[f.exposure],
            f.port if f.port is not None else -1,
            f.proto.value if f.proto else "",
            (f.via.pid or 0) if f.via else 0,
        ),
    )


def probes(findings: Iterable[Finding]) -> list[ProbeRequest]:
    """The requests --probe makes: one per distinct (loopback address, port, path)."""
    return list(dict.fromkeys(f.probe for f in findings if f.probe is not None))


def apply_probes(
    findings: Iterable[Finding], results: Mapping[ProbeRequest, ProbeResult]
) -> list[Finding]:
    """The findings with what each probe showed: the level and the unknowns it settles."""
    updated = []
    for f in findings:
        result = results.get(f.probe) if f.probe is not None else None
        row = _BY_KEY.get(f.key)
        if result is None or row is None or row.probe is None:
            updated.append(f)
            continue
        level, shown, conclusive = row.probe.read(result, f.level)
        if f.exposure == LOOPBACK:
            level = Level.INFO
        elif f.exposure == TUNNEL:
            level = max(level, Level.MEDIUM, key=lambda lv: lv.rank)
        unknown = f.unknown
        if conclusive:
            unknown = tuple(u for u in unknown if u not in f.probe_settles)
        updated.append(replace(f, level=level, probed=shown, unknown=unknown))
    return sort_findings(updated)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    found = {lv.value: 0 for lv in LEVELS}
    for f in findings:
        found[f.level.value] += 1
    return found


def worst_by_port(findings: Iterable[Finding]) -> dict[tuple[str, int], Level]:
    """(proto, port) -> the worst level found for it: `list --risk`'s column."""
    worst: dict[tuple[str, int], Level] = {}
    for f in findings:
        if f.port is None or f.proto is None:
            continue
        key = (f.proto.value, f.port)
        if key not in worst or f.level.rank > worst[key].rank:
            worst[key] = f.level
    return worst
