"""run() and serve(): start servers on leased ports, wait until they are ready, run the tests,
tear everything down, and prove the ports free.

The loop every CI job glues together by hand, and gets wrong where the peers did
(research/peers.md): start-server-and-test had to learn to kill the server's children and
still orphans servers started through a shell; home-made wrappers signal the shell and leave
the real server holding the port; harnesses leak servers on Ctrl-C and the next run fails
with "Address already in use"; waiting on `localhost` finds ::1 while the server listens on
127.0.0.1. Here:

- Each server runs under its own keeper process (portinspect/_supervise.py, which says why):
  a child subreaper on Linux, so double-forked and setsid'ed processes stay in reach, that
  tears the tree down when asked, or when its caller dies however it died.
- Ready means the server's own process tree holds a listening socket on its port (the socket
  table, any address, either family: no `localhost` trap, and a stranger that took the port
  does not count), and with `http`, a GET to the address it listens on answers below 500.
- Teardown: SIGTERM to the top process first (reloaders and masters stop their children, as
  measured in research/frameworks.md), then to every process left (npm's orphaned node), then
  SIGKILL; then the socket table must show no listener on any of the ports.

Nothing here prints: progress goes to the caller's callbacks, results come back as the
frozen dataclasses of models/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from portinspect import _interrupts, _supervise, scanner
from portinspect.errors import (
    ExitStatus,
    LeftBehindError,
    NoFreePortError,
    PortInspectError,
    ServerExitedError,
    ServerNotReadyError,
    UsageError,
)
from portinspect.inputs import check_seconds, is_port
from portinspect.models import (
    PortCheck,
    Proto,
    RunEvent,
    RunOutcome,
    RunResult,
    ServerReport,
    Signalled,
    Socket,
    Teardown,
    TestsReport,
)

DEFAULT_WAIT_TIMEOUT = 30.0
# The graceful budget of a teardown before SIGKILL, as for `kill`: SIGTERM to the top freed
# every measured Python server within 0.43 s.
DEFAULT_STOP_TIMEOUT = 5.0
TAIL_LINES = 20  # lines of a server's output kept for the reason it failed
_TAIL_LINE = 1000  # characters kept of each of those lines
# The readiness poll: one socket dump per poll (0.1 ms on an idle machine), so 5 ms costs
# little and keeps "listening -> ready" well under the 50 ms goal; on a loaded machine the
# pause grows to ten times what a poll cost, at most 50 ms.
_POLL_MIN = 0.005
_POLL_MAX = 0.05
_HTTP_TIMEOUT = 2.0  # one readiness GET: Django compiles its URLconf on the first request
# How long after its teardown a port may still show its listener: none is expected, since
# the keeper reports only once every process of the tree has been reaped.
_PORT_FREE_WAIT = 1.0
_KEEPER_MARGIN = 2.0  # beyond stop-timeout + the keeper's own KILL_WAIT
_LEASE_MARGIN = 60.0  # a lease lasts the wait timeout and this, or until the server binds
_TCP = frozenset({Proto.TCP})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")

Events = Callable[[RunEvent], None]
Lines = Callable[[str, str], None]  # (server name, one line of its output)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A server to start.

    command: a string, split as a POSIX shell would split it (shlex) but never run through
        one unless shell=True; or an argv. Every `{port}` in it becomes the server's port,
        which is also in its environment as PORT.
    name: letters, digits, `_` and `-`; the test command gets <NAME>_PORT and <NAME>_URL.
    port: a fixed port (it must be free); else a free port is leased, nearest to `near`.
    http: a path: ready only once a GET of it answers below 500.
    """

    command: str | Sequence[str]
    name: str = "server"
    port: int | None = None
    near: int | None = None
    http: str | None = None


def env_prefix(name: str) -> str:
    """api -> API, web-1 -> WEB_1: the prefix of the server's variables for the tests."""
    return name.upper().replace("-", "_")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# ---------------------------------------------------------------------------------------
# Checking what was asked, before anything starts
# ---------------------------------------------------------------------------------------


def _check_spec(spec: ServerSpec, seen: set[str]) -> None:
    if not isinstance(spec.name, str) or not _NAME.fullmatch(spec.name):
        raise UsageError(
            f"invalid server name {_shown(str(spec.name))}: letters, digits, _ and -, "
            "starting with a letter or _, at most 40"
        )
    key = env_prefix(spec.name)
    if key in seen:
        raise UsageError(f"two servers are named {spec.name!r} (names must differ)")
    seen.add(key)
    if spec.port is not None and spec.near is not None:
        raise UsageError(f"server {spec.name!r}: a fixed port and a preferred one (near)")
    for what, value in (("port", spec.port), ("near", spec.near)):
        if value is not None and not is_port(value):
            raise UsageError(f"server {spec.name!r}: invalid {what} {value!r}: 1 to 65535")
    if spec.http is not None and (
        not isinstance(spec.http, str)
        or not spec.http.startswith("/")
        or not spec.http.isascii()
        or any(c.isspace() or not c.isprintable() for c in spec.http)
    ):
        raise UsageError(
            f"server {spec.name!r}: invalid HTTP path {_shown(str(spec.http))}: "
            "it starts with / and has no spaces (percent-encode the rest)"
        )


def _split(command: str | Sequence[str], what: str, *, shell: bool) -> list[str]:
    """The argv of a command as given; with shell, one string for `sh -c`."""
    if isinstance(command, str):
        if shell:
            parts = [command] if command.strip() else []
        else:
            try:
                parts = shlex.split(command)
            except ValueError as exc:  # "No closing quotation"
                raise UsageError(f"{what}: cannot split {_shown(command)}: {exc}") from None
    else:
        parts = [str(part) for part in command]
        if shell:
            parts = [shlex.join(parts)] if parts else []
    if not parts or not parts[0]:
        raise UsageError(f"{what}: the command is empty")
    if any("\0" in part for part in parts):
        raise UsageError(f"{what}: a NUL byte cannot be part of a command")
    return parts


def _check_runnable(argv0: str, env: Mapping[str, str], cwd: str | None, what: str) -> None:
    """A command that cannot start is a usage error before any server starts, not a crash."""
    if os.sep in argv0:
        path = Path(cwd or ".") / argv0
        if path.is_file() and os.access(path, os.X_OK):
            return
    elif shutil.which(argv0, path=env.get("PATH", os.defpath)):
        return
    raise UsageError(f"{what}: command not found: {_shown(argv0)}")


def _with_port(argv: Sequence[str], port: int, *, shell: bool) -> tuple[str, ...]:
    done = [part.replace("{port}", str(port)) for part in argv]
    return ("/bin/sh", "-c", *done) if shell else tuple(done)


def _test_argv(
    tests: Sequence[str], *, shell: bool, env: Mapping[str, str], cwd: str | None
) -> tuple[str, ...]:
    argv = _split(" ".join(tests) if shell else list(tests), "test command", shell=shell)
    if shell:
        return ("/bin/sh", "-c", *argv)
    _check_runnable(argv[0], env, cwd, "test command")
    return tuple(argv)


# ---------------------------------------------------------------------------------------
# The command line's way of saying it: --server [NAME=]COMMAND, --port [NAME:]P...
# ---------------------------------------------------------------------------------------

_NAMED_COMMAND = re.compile(r"([A-Za-z_][A-Za-z0-9_-]{0,39})=(.*)", re.DOTALL)


def parse_servers(
    commands: Sequence[str],
    *,
    ports: Sequence[str] = (),
    near: Sequence[str] = (),
    http: Sequence[str] = (),
) -> list[ServerSpec]:
    """`run`'s options as typed: each --server is `[NAME=]COMMAND` (a bare one is named
    `server`, then server2, server3...); --port, --near and --http are `VALUE` for every
    server or `NAME:VALUE` for one (an --http path starts with /, so `/health` is for all)."""
    from portinspect.inputs import parse_port

    specs: list[ServerSpec] = []
    count = 0
    for text in commands:
        named = _NAMED_COMMAND.fullmatch(text)
        if named:
            name, command = named.group(1), named.group(2)
        else:
            count += 1
            name, command = ("server" if count == 1 else f"server{count}"), text
        specs.append(ServerSpec(command, name=name))
    if not specs:
        raise UsageError("no server to start: give --server COMMAND (or NAME=COMMAND)")
    names = [s.name for s in specs]

    def per_server(option: str, values: Sequence[str], path: bool) -> dict[str, str]:
        found: dict[str, str] = {}
        for value in values:
            name, sep, rest = value.partition(":")
            if (path and value.startswith("/")) or not sep:
                targets, rest = names, value
            elif name in names:
                targets = [name]
            else:
                known = ", ".join(names)
                raise UsageError(f"{option} {_shown(value)}: no server named {name!r} ({known})")
            for target in targets:
                if target in found:
                    raise UsageError(f"{option} is given twice for server {target!r}")
                found[target] = rest
        return found

    fixed = per_server("--port", ports, path=False)
    if len(fixed) > 1 and len(set(fixed.values())) < len(fixed):
        raise UsageError("--port: two servers cannot share a port (write --port NAME:PORT each)")
    nearest = per_server("--near", near, path=False)
    paths = per_server("--http", http, path=True)
    result = []
    for spec in specs:
        name = spec.name
        if name in fixed and name in nearest:
            raise UsageError(f"server {name!r}: --port and --near exclude each other")
        result.append(
            ServerSpec(
                spec.command,
                name=name,
                port=parse_port(fixed[name], what="--port") if name in fixed else None,
                near=parse_port(nearest[name], what="--near") if name in nearest else None,
                http=paths.get(name),
            )
        )
    return result


# ---------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------


def _lease(spec: ServerSpec, *, reclaim: bool, lease_seconds: float, stop_timeout: float) -> int:
    """The server's port: the free port nearest to `near`, leased (the lease ends when the
    server binds it, or with us); or its fixed port, once checked free."""
    from portinspect import freeport

    if spec.port is None:
        leased = freeport.find_free_ports(
            spec.near, 1, lease_seconds=lease_seconds, release_on_exit=True
        )
        return leased[0]
    port = spec.port
    # The exact port the user asked for: none of the search's own exclusions apply, and a
    # lease someone else took does not count (`PORT=$(portinspect free)` leased it for us).
    options: dict[str, Any] = {"lease": False, "port_range": (port, port)}
    options.update(allow_ephemeral=True, allow_privileged=True, allow_unsafe=True)
    skips: list[freeport.Skip] = []
    for attempt in (1, 2):
        skips.clear()
        try:
            return freeport.find_free_ports(port, 1, explain=skips.append, **options)[0]
        except NoFreePortError:
            pass
        held = next((s for s in skips if s.reason is freeport.SkipReason.HELD), None)
        if not (reclaim and held is not None and attempt == 1):
            break
        _reclaim(spec.name, port, stop_timeout)
    detail = skips[0].detail if skips else "not free"
    hint = "; --reclaim (reclaim=True) stops its holder first" if not reclaim and held else ""
    raise NoFreePortError(
        f"server {spec.name!r}: port {port} is not free: {detail}{hint}",
        port=port,
        pid=held.pid if held else None,
    )


def _reclaim(name: str, port: int, stop_timeout: float) -> None:
    """Free a busy fixed port through kill's safe path (its refusals and checks included)."""
    from portinspect.kill import kill_port
    from portinspect.models import KillStatus

    [outcome] = kill_port(port, timeout=stop_timeout)
    if outcome.status not in (KillStatus.FREED, KillStatus.NOT_LISTENING):
        error = PortInspectError(
            f"server {name!r}: could not reclaim port {port}: {outcome.message}"
        )
        error.port, error.exit_status = port, outcome.exit_status
        raise error


def _loopback(sockets: Sequence[Socket], port: int) -> str:
    """The address to reach a server on, from the sockets it listens on: its IPv4 loopback or
    wildcard as 127.0.0.1, else ::1 for IPv6 ones; a specific address of this machine as
    itself. A dual-stack `::` (not IPv6-only: netlink says which on Linux; elsewhere a
    connect to 127.0.0.1 decides) also takes 127.0.0.1, the friendlier URL."""
    addresses = [s.address for s in sockets]
    v4 = [a for a in addresses if ":" not in a]
    for address in v4:
        if address.startswith("127.") or address == "0.0.0.0":
            return "127.0.0.1" if address == "0.0.0.0" else address
    if "::" in addresses and _dual_stack([s for s in sockets if s.address == "::"], port):
        return "127.0.0.1"
    if "::1" in addresses or "::" in addresses:
        return "::1"
    return (v4 or addresses)[0]


def _dual_stack(wildcards: Sequence[Socket], port: int) -> bool:
    inodes = {s.inode for s in wildcards}
    for sock in scanner.listening_addresses(_TCP, [port]):
        if sock.inode in inodes and sock.inode is not None and sock.v6only is not None:
            return not sock.v6only
    return _connects("127.0.0.1", port)


def _connects(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _http_answers(host: str, port: int, path: str, timeout: float) -> bool:
    """GET path answers below 500. By hand over a socket: http.client costs 38 ms to import
    (email, ssl), most of a readiness check's budget, for one status line."""
    import socket

    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portinspect-run\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request.encode("ascii"))
            head = b""
            while b"\r\n" not in head and len(head) < 8192:
                chunk = sock.recv(8192)
                if not chunk:
                    break
                head += chunk
            # Read on a little so the server is not cut off mid-reply (a broken pipe in its
            # log); a big or endless body is not waited for.
            sock.settimeout(0.05)
            with contextlib.suppress(OSError):
                for _ in range(8):
                    if not sock.recv(65536):
                        break
    except OSError:
        return False
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False
    return int(parts[1]) < 500


# ---------------------------------------------------------------------------------------
# One server: its keeper, its output, its state
# ---------------------------------------------------------------------------------------


class _Output:
    """Drains a server's stdout+stderr: the last lines kept, each line to the callback, all
    bytes to the log. In a thread of its own, so a chatty server never blocks on a full pipe
    while we wait on something else."""

    def __init__(self, name: str, fd: int, log: Path | None, on_line: Lines | None) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._fd = fd
        self._log = log
        self._on_line = on_line
        self._taken = 0  # chunks read and handled: the pump's progress, for caught_up()
        self.thread = threading.Thread(target=self._pump, name=f"portinspect-{name}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        log = open(self._log, "ab") if self._log is not None else None  # noqa: SIM115
        pending = b""
        try:
            while chunk := os.read(self._fd, 1 << 16):
                if log is not None:
                    log.write(chunk)
                    log.flush()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                self._taken += 1
            if pending:
                self._line(pending)
        finally:
            # Only here: closing it under a blocked read() could hand its number to another
            # file that the read would then drain.
            os.close(self._fd)
            if log is not None:
                log.close()

    def _line(self, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        # Kept whole for the callback; cut for the tail, which goes into reasons and JSON.
        kept = text if len(text) <= _TAIL_LINE else text[: _TAIL_LINE - 1] + "…"
        self.tail.append(kept)
        if self._on_line is not None:
            with contextlib.suppress(Exception):  # a closed stderr must not stop the draining
                self._on_line(self.name, text)

    def text(self) -> str:
        return "\n".join(self.tail)

    def caught_up(self, within: float = 1.0) -> None:
        """Wait, at most `within`, until the pump has taken in what is in the pipe.

        A server that fails at once (its error on stderr, then exit) is seen exiting through
        its keeper, on a loaded machine before this thread has read its last words: the
        reason would then come without them. The pipe cannot be waited on for EOF (the keeper
        holds it open); it is done when nothing is unread and the pump stopped moving.
        """
        deadline = time.monotonic() + within
        while self.thread.is_alive() and time.monotonic() < deadline:
            taken = self._taken
            if _unread(self._fd):
                time.sleep(0.005)
                continue
            time.sleep(0.01)  # the pump may be between its read and its lines
            if self._taken == taken and not _unread(self._fd):
                return


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD), 0 where that cannot be asked."""
    try:
        import fcntl
        import termios
    except ImportError:  # Windows
        return 0
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


class _Server:
    """The state of one server, from its port lease to its verified-free port."""

    def __init__(self, spec: ServerSpec, argv: list[str], shell: bool) -> None:
        self.spec = spec
        self.name = spec.name
        self.template = argv
        self.shell = shell
        self.port = 0
        self.argv: tuple[str, ...] = ()
        self.keeper: subprocess.Popen[bytes] | None = None
        self.control = -1
        self.status_fd = -1
        self._buffer = b""
        self.output: _Output | None = None
        self.started = 0.0
        self.pid: int | None = None
        self.failure: str | None = None  # it could not be started
        self.exit_status: int | None = None
        self.gone = False  # no process of its tree is left
        self.ended = False  # the keeper has exited and said all it had to say
        self.ready_at: float | None = None
        self.url: str | None = None
        self.teardown: dict[str, Any] | None = None
        self.stopped_after: float | None = None
        self.inodes: set[int | None] = set()  # of its listening sockets (None: not known)

    def report(self) -> ServerReport:
        return ServerReport(
            name=self.name,
            command=self.argv,
            port=self.port,
            pid=self.pid,
            url=self.url,
            ready_after=None if self.ready_at is None else self.ready_at - self.started,
            exit_status=self.exit_status,
            stopped_after=self.stopped_after,
            output=tuple(self.output.tail) if self.output is not None else (),
        )

    # -- the keeper's messages -------------------------------------------------------------

    def read_events(self) -> None:
        while not self.ended and self.status_fd >= 0:
            try:
                data = os.read(self.status_fd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                self._end()
                return
            *lines, self._buffer = (self._buffer + data).split(b"\n")
            for line in lines:
                self._event(line)

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("event")
        if kind == "started":
            self.pid = int(event["pid"])
        elif kind == "failed":
            self.failure = str(event.get("error"))
        elif kind == "exited":
            self.exit_status = int(event["status"])
        elif kind == "gone":
            self.gone = True
        elif kind == "teardown":
            self.teardown = event
            self.gone = True
            if event.get("status") is not None:
                self.exit_status = int(event["status"])

    def _end(self) -> None:
        self.ended = True
        os.close(self.status_fd)
        self.status_fd = -1

    def early_exit(self) -> str | None:
        """Why the server is over before anyone asked it to stop, or None while it lives.

        A top process that exits with 0 while its tree goes on has daemonized: that is not
        an exit. A non-zero exit is, and so is a tree with nothing left in it.
        """
        self.read_events()
        reason = self._over()
        if reason is None and self.keeper is not None and self.keeper.poll() is not None:
            self.read_events()  # its last words, written before it exited
            reason = self._over() or f"server {self.name!r}: its keeper died"
        return reason

    def _over(self) -> str | None:
        if self.failure is not None:
            return f"server {self.name!r} could not start: {self.failure}"
        if self.gone or self.exit_status not in (None, 0):
            return f"server {self.name!r} exited with status {self.exit_status}"
        return None

    def own_sockets(self) -> list[Socket]:
        """The listening sockets its tree holds on its port; their inodes are remembered, to
        tell after the teardown our socket, still held, from a newcomer that took the port."""
        if self.keeper is None:
            return []
        sockets = scanner.tree_sockets(self.keeper.pid, [self.port], _TCP)
        self.inodes.update(s.inode for s in sockets)
        return sockets

    def check_ready(self) -> bool:
        """Its tree listens on its port (and, with http, a GET answers below 500)."""
        assert self.keeper is not None
        sockets = self.own_sockets()
        if not sockets:
            return False
        host = _loopback(sockets, self.port)
        path = self.spec.http
        if path is not None and not _http_answers(host, self.port, path, _HTTP_TIMEOUT):
            return False
        self.ready_at = time.monotonic()
        self.url = _url(host, self.port)
        return True


# ---------------------------------------------------------------------------------------
# The servers of one run (or one serve())
# ---------------------------------------------------------------------------------------


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Fleet:
    def __init__(
        self,
        specs: Sequence[ServerSpec],
        *,
        wait_timeout: float,
        stop_timeout: float,
        reclaim: bool,
        shell: bool,
        env: Mapping[str, str] | None,
        cwd: str | None,
        logs: Mapping[str, Path],
        on_line: Lines | None,
        on_event: Events | None,
    ) -> None:
        if sys.platform == "win32":
            raise PortInspectError(
                "run and serve() need POSIX process control (sessions, signals, a subreaper); "
                "on Windows a Job Object would be the tool, and it is not implemented"
            )
        if not specs:
            raise UsageError("no server to start (give at least one --server)")
        self.wait_timeout = check_seconds(wait_timeout, "wait timeout")
        self.stop_timeout = check_seconds(stop_timeout, "stop timeout")
        self.reclaim = reclaim
        self.base_env = dict(os.environ if env is None else env)
        self.cwd = None if cwd is None else str(cwd)
        self.logs = logs  # server name -> the file its output is appended to
        self.on_line = on_line
        self.on_event = on_event
        seen: set[str] = set()
        self.servers: list[_Server] = []
        for spec in specs:
            _check_spec(spec, seen)
            what = f"server {spec.name!r}"
            argv = _split(spec.command, what, shell=shell)
            if not shell:
                _check_runnable(argv[0], self.base_env, self.cwd, what)
            self.servers.append(_Server(spec, argv, shell))
        fixed = [s.spec.port for s in self.servers if s.spec.port is not None]
        if len(fixed) != len(set(fixed)):
            raise UsageError("two servers were given the same fixed port")

    def _emit(self, kind: str, server: _Server) -> None:
        if self.on_event is not None:
            self.on_event(RunEvent(kind, server.report()))

    # -- ports and environments -------------------------------------------------------------

    def allocate(self) -> None:
        """Lease every server's port before any starts: a port problem starts nothing."""
        lease_seconds = self.wait_timeout + _LEASE_MARGIN
        try:
            for server in self.servers:
                server.port = _lease(
                    server.spec,
                    reclaim=self.reclaim,
                    lease_seconds=lease_seconds,
                    stop_timeout=self.stop_timeout,
                )
                server.argv = _with_port(server.template, server.port, shell=server.shell)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        from portinspect import freeport

        ports = [s.port for s in self.servers if s.port]
        if ports:
            with contextlib.suppress(PortInspectError, OSError):
                freeport.release_leases(ports)

    def ports_env(self, *, urls: bool) -> dict[str, str]:
        env: dict[str, str] = {}
        for server in self.servers:
            prefix = env_prefix(server.name)
            env[f"{prefix}_PORT"] = str(server.port)
            if urls and server.url is not None:
                env[f"{prefix}_URL"] = server.url
        first = self.servers[0]
        if urls and first.url is not None:
            env["PORT"], env["URL"] = str(first.port), first.url
        return env

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        ports = self.ports_env(urls=False)
        # PR_SET_PDEATHSIG fires when the forking THREAD exits: only the main thread lives as
        # long as the process. Elsewhere the control pipe alone tells the keeper.
        pdeathsig = threading.current_thread() is threading.main_thread()
        for server in self.servers:
            env = {**self.base_env, **ports, "PORT": str(server.port)}
            self._spawn(server, env, pdeathsig)
            self._emit("starting", server)

    def _spawn(self, server: _Server, env: dict[str, str], pdeathsig: bool) -> None:
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        out_r, out_w = os.pipe()
        argv = _supervise.command(
            server.argv,
            control=control_r,
            status=status_w,
            grace=self.stop_timeout,
            pdeathsig=pdeathsig,
        )
        log = self.logs.get(server.name)
        try:
            # Ctrl-C waits for the spawn to finish: a keeper started is one we know of.
            with _interrupts.held():
                server.keeper = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=out_w,
                    pass_fds=(control_r, status_w),
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
                server.started = time.monotonic()
                server.control, server.status_fd = control_w, status_r
        except BaseException:
            for fd in (control_w, status_r, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (control_r, status_w, out_w):
                os.close(fd)
        os.set_blocking(status_r, False)
        server.output = _Output(server.name, out_r, log, self.on_line)

    # -- ready -----------------------------------------------------------------------------

    def wait_ready(self, stopping: Callable[[], int | None] | None = None) -> None:
        """Until every server is ready; raises ServerExitedError, ServerNotReadyError, or
        _Stopped when `stopping()` names a signal."""
        deadline = min(s.started for s in self.servers) + self.wait_timeout
        pending = list(self.servers)
        while True:
            for server in pending:
                reason = server.early_exit()
                if reason is not None:
                    raise self._exited(server, f"{reason} before it was ready")
            began = time.monotonic()
            listening = scanner.listening_ports(_TCP)
            for server in pending:
                if server.port in listening and server.check_ready():
                    self._emit("ready", server)
            pending = [s for s in pending if s.ready_at is None]
            if not pending:
                return
            now = time.monotonic()
            signum = stopping() if stopping is not None else None
            if signum is not None:
                raise _Stopped(signum)
            if now >= deadline:
                raise self._not_ready(pending[0])
            pause = min(max(_POLL_MIN, 10 * (now - began)), _POLL_MAX, deadline - now)
            time.sleep(pause)

    def _exited(self, server: _Server, reason: str) -> ServerExitedError:
        if server.output is not None:
            server.output.caught_up()
        output = server.output.text() if server.output is not None else ""
        return ServerExitedError(
            f"{reason} (port {server.port})",
            name=server.name,
            port=server.port,
            status=server.exit_status,
            output=output,
        )

    def _not_ready(self, server: _Server) -> ServerNotReadyError:
        listening = server.keeper is not None and bool(
            scanner.tree_sockets(server.keeper.pid, [server.port], _TCP)
        )
        state = (
            f"listens but GET {server.spec.http} did not answer below 500"
            if listening
            else "did not listen"
        )
        output = server.output.text() if server.output is not None else ""
        return ServerNotReadyError(
            f"server {server.name!r} was not ready after {self.wait_timeout:g}s: it {state} "
            f"on port {server.port}",
            name=server.name,
            port=server.port,
            output=output,
        )

    def exited(self) -> ServerExitedError | None:
        """A server that ended by itself since it was ready, if any."""
        for server in self.servers:
            reason = server.early_exit()
            if reason is not None:
                return self._exited(server, reason)
        return None

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> Teardown:
        """Tear every server down (in parallel), then prove its port free. Always completes."""
        t0 = time.monotonic()
        started = [s for s in self.servers if s.keeper is not None]
        for server in started:
            server.read_events()
            if not server.gone:
                server.own_sockets()
                with contextlib.suppress(OSError):  # the keeper is gone already (EPIPE)
                    os.write(server.control, f"stop {self.stop_timeout!r}\n".encode())
        deadline = t0 + self.stop_timeout + _supervise.KILL_WAIT + _KEEPER_MARGIN
        checks: list[PortCheck] = []
        signalled: list[Signalled] = []
        left: list[tuple[str, int, tuple[str, ...]]] = []
        pending = list(started)
        while pending:
            for server in list(pending):
                assert server.keeper is not None
                if server.keeper.poll() is None and time.monotonic() < deadline:
                    server.read_events()
                    continue
                pending.remove(server)
                left += self._finish(server)
                checks.append(self._verify(server, t0))
                if server.teardown is not None:
                    signalled += [
                        Signalled(server.name, int(s["pid"]), str(s["signal"]), float(s["at"]))
                        for s in server.teardown.get("signalled", ())
                    ]
                self._emit("stopped", server)
            if pending:
                time.sleep(0.005)
        self._release()
        for server in self.servers:
            if server.output is not None:
                server.output.thread.join(timeout=0.5)
        return Teardown(tuple(signalled), tuple(left), tuple(checks), time.monotonic() - t0)

    def _finish(self, server: _Server) -> list[tuple[str, int, tuple[str, ...]]]:
        """The keeper is done (or given up on): its last words, and what it left alive."""
        keeper = server.keeper
        assert keeper is not None
        left: list[tuple[str, int, tuple[str, ...]]] = []
        if keeper.poll() is None:
            # It did not answer in time: its tree as we see it now is left, and the keeper
            # (our child, not reaped yet, so its pid is still its own) is killed.
            for pid in scanner.descendants(keeper.pid):
                info = scanner.process(pid)
                left.append((server.name, pid, info.cmdline if info is not None else ()))
            keeper.kill()
            keeper.wait()
        server.read_events()
        if server.status_fd >= 0:
            server._end()
        os.close(server.control)
        server.control = -1
        if server.teardown is not None:
            for entry in server.teardown.get("left", ()):
                left.append((server.name, int(entry["pid"]), tuple(entry.get("cmdline", ()))))
        return left

    def _verify(self, server: _Server, t0: float) -> PortCheck:
        """The proof: none of the server's listening sockets is left on its port, any address,
        either family, held by anyone. Another socket there is a newcomer's: the port was
        free, and someone took it (a parallel run). Where the OS gives no socket inodes
        (psutil), any listener counts against us."""
        deadline = time.monotonic() + _PORT_FREE_WAIT
        while True:
            inodes = scanner.listening_sockets(_TCP).get(server.port, frozenset())
            ours = {None} | server.inodes
            if not inodes & ours:
                break
            if time.monotonic() >= deadline:
                return PortCheck(server.name, server.port, False, _holders(server.port))
            time.sleep(0.005)
        server.stopped_after = time.monotonic() - t0
        return PortCheck(server.name, server.port, True, _holders(server.port) if inodes else ())


def _holders(port: int) -> tuple[tuple[int | None, str | None], ...]:
    from portinspect import api

    return tuple((li.pid, li.process) for li in api.scan(port, "tcp"))


# ---------------------------------------------------------------------------------------
# run(): servers, tests, teardown
# ---------------------------------------------------------------------------------------


# By name: Windows has no SIGHUP, and this module must import there to refuse politely.
_SIGNAL_OUTCOME = {
    "SIGINT": (RunOutcome.INTERRUPTED, ExitStatus.INTERRUPTED),
    "SIGTERM": (RunOutcome.TERMINATED, ExitStatus.TERMINATED),
    "SIGHUP": (RunOutcome.TERMINATED, ExitStatus.HANGUP),
}


class _Signals:
    """SIGINT, SIGTERM and SIGHUP become a note for the whole run (main thread only), so a
    signal never cuts a step in half: each loop of run() looks at the note and ends in order.
    """

    watched = tuple(
        getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)
    )

    def __init__(self) -> None:
        self.first: int | None = None
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.watched:
                self._old[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.first is None:
            self.first = signum
        self.count += 1

    def pending(self) -> int | None:
        return self.first


def _on_terminal_foreground() -> bool:
    """Whether we are in the terminal's foreground process group: then a Ctrl-C reached the
    test command (in our group) as it reached us, and is not sent a second time."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _shell_status(returncode: int) -> tuple[int, str | None]:
    if returncode < 0:
        return 128 - returncode, signal.Signals(-returncode).name
    return returncode, None


@dataclass
class _TestRun:
    report: TestsReport | None = None
    crash: ServerExitedError | None = None


def _run_tests(
    fleet: _Fleet,
    argv: tuple[str, ...],
    signals: _Signals,
    stdout: IO[Any] | int | None,
) -> _TestRun:
    """The test command, in our process group (a terminal's Ctrl-C reaches it), stopped
    early if a server dies or we are signalled: its own signal first, SIGKILL after the stop
    timeout. A terminal's Ctrl-C already reached it; a second one, or one sent to us alone,
    is passed on."""
    env = {**fleet.base_env, **fleet.ports_env(urls=True)}
    if fleet.on_event is not None:
        fleet.on_event(RunEvent("tests", command=argv))
    began = time.monotonic()
    result = _TestRun()
    try:
        proc = subprocess.Popen(argv, env=env, cwd=fleet.cwd, stdout=stdout)
    except OSError as exc:  # went away or lost its x bit since it was checked: as a shell says
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        result.report = TestsReport(argv, status, None, time.monotonic() - began)
        return result
    passed_on = 0
    stop_at: float | None = None
    foreground = _on_terminal_foreground()
    while proc.poll() is None:
        now = time.monotonic()
        if signals.first is not None and passed_on < signals.count:
            if not (signals.first == signal.SIGINT and signals.count == 1 and foreground):
                proc.send_signal(signals.first)
            passed_on = signals.count
            stop_at = stop_at or now
        if result.crash is None and stop_at is None:
            result.crash = fleet.exited()
            if result.crash is not None:
                proc.terminate()
                stop_at = now
        if stop_at is not None and now - stop_at >= fleet.stop_timeout:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)  # how soon the end of the tests is noticed
    status, name = _shell_status(proc.returncode)
    result.report = TestsReport(argv, status, name, time.monotonic() - began)
    return result


def _hold(fleet: _Fleet, signals: _Signals) -> ServerExitedError | None:
    """No test command: the servers stay up until a signal, or until one of them exits."""
    if fleet.on_event is not None:
        fleet.on_event(RunEvent("holding"))
    while signals.first is None:
        crash = fleet.exited()
        if crash is not None:
            return crash
        time.sleep(0.05)
    return None


@dataclass(frozen=True, slots=True)
class _Ending:
    outcome: RunOutcome
    status: int
    message: str
    failed: str | None = None


def _ending(
    signum: int | None,
    failure: ServerExitedError | ServerNotReadyError | None,
    tests: _TestRun,
) -> _Ending:
    if signum is not None:
        name = signal.Signals(signum).name
        outcome, status = _SIGNAL_OUTCOME[name]
        text = "interrupted" if signum == signal.SIGINT else f"stopped by {name}"
        return _Ending(outcome, status, text)
    crash = tests.crash or (failure if isinstance(failure, ServerExitedError) else None)
    if crash is not None:
        where = " during the tests" if tests.crash is not None else ""
        return _Ending(
            RunOutcome.SERVER_EXITED, ExitStatus.SERVER_EXITED, f"{crash}{where}", crash.name
        )
    if isinstance(failure, ServerNotReadyError):
        return _Ending(RunOutcome.NOT_READY, ExitStatus.TIMEOUT, str(failure), failure.name)
    report = tests.report
    if report is None:  # pragma: no cover - every other way out is above
        return _Ending(RunOutcome.TESTS_PASSED, ExitStatus.OK, "done")
    if report.exit_status == 0:
        return _Ending(RunOutcome.TESTS_PASSED, ExitStatus.OK, "tests passed")
    how = f" ({report.signal})" if report.signal else ""
    return _Ending(
        RunOutcome.TESTS_FAILED,
        report.exit_status,
        f"tests exited with status {report.exit_status}{how}",
    )


def run(
    servers: Sequence[ServerSpec],
    tests: Sequence[str] | None = None,
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    reclaim: bool = False,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    on_line: Lines | None = None,
    on_event: Events | None = None,
    test_stdout: IO[Any] | int | None = None,
) -> RunResult:
    """Start the servers, wait until they are ready, run `tests`, tear everything down.

    Without tests the servers stay up until SIGINT, SIGTERM or SIGHUP (or until one of them
    exits). Those three signals are handled for the duration when called from the main
    thread: the test command is stopped, the servers torn down, and the result says so.

    Raises (before anything starts) UsageError for bad input and NoFreePortError when a
    fixed port is taken; after that, everything is in the result: exit_status is what the
    `portinspect run` command exits with (the tests' own status when they ran and the
    teardown was clean).

    on_line(name, line): each line a server prints (stdout and stderr); with log_dir, each
    server's output also goes to <log_dir>/<name>.log. on_event(RunEvent): progress.
    test_stdout: where the test command's stdout goes (default: ours).
    """
    cwd_text = None if cwd is None else os.fspath(cwd)
    logs: dict[str, Path] = {}
    if log_dir is not None:
        folder = Path(log_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot use the log directory {_shown(str(folder))}: {exc}") from None
        logs = {spec.name: folder / f"{spec.name}.log" for spec in servers}
    fleet = _Fleet(
        servers,
        wait_timeout=wait_timeout,
        stop_timeout=stop_timeout,
        reclaim=reclaim,
        shell=shell,
        env=env,
        cwd=cwd_text,
        logs=logs,
        on_line=on_line,
        on_event=on_event,
    )
    test_argv = (
        None if not tests else _test_argv(tests, shell=shell, env=fleet.base_env, cwd=fleet.cwd)
    )
    fleet.allocate()
    failure: ServerExitedError | ServerNotReadyError | None = None
    tests_run = _TestRun()
    with _Signals() as signals:
        try:
            fleet.start()
            try:
                fleet.wait_ready(signals.pending)
            except (ServerExitedError, ServerNotReadyError) as exc:
                failure = exc
            except _Stopped:
                pass
            else:
                if test_argv is not None:
                    tests_run = _run_tests(fleet, test_argv, signals, test_stdout)
                else:
                    tests_run.crash = _hold(fleet, signals)
        finally:
            teardown = fleet.stop()
        ending = _ending(signals.first, failure, tests_run)
    status, message = ending.status, ending.message
    if not teardown.clean:  # a dirty machine outranks every other ending
        status, message = ExitStatus.LEFT_BEHIND, f"{_left_message(teardown)} ({message})"
    return RunResult(
        exit_status=int(status),
        outcome=ending.outcome,
        message=message,
        servers=tuple(s.report() for s in fleet.servers),
        tests=tests_run.report,
        teardown=teardown,
        failed=ending.failed,
    )


# ---------------------------------------------------------------------------------------
# serve(): one server for the length of a `with` block
# ---------------------------------------------------------------------------------------


class Server:
    """A server serve() started: name, port, url, pid (its top process), command, and the
    last lines it printed (output()). After the `with` block, teardown says what stopping
    it did."""

    def __init__(self, state: _Server) -> None:
        self._state = state
        self.teardown: Teardown | None = None

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def port(self) -> int:
        return self._state.port

    @property
    def url(self) -> str:
        return self._state.url or _url("127.0.0.1", self._state.port)

    @property
    def pid(self) -> int | None:
        return self._state.pid

    @property
    def command(self) -> tuple[str, ...]:
        return self._state.argv

    def output(self) -> str:
        """The last lines the server printed (stdout and stderr)."""
        return self._state.output.text() if self._state.output is not None else ""

    def report(self) -> ServerReport:
        return self._state.report()

    def __repr__(self) -> str:
        return f"<Server {self.name} {self.url} pid={self.pid}>"


class Serving:
    """The context manager serve() returns; `with` gives the running Server."""

    def __init__(self, fleet: _Fleet) -> None:
        self._fleet = fleet
        self._server: Server | None = None

    def __enter__(self) -> Server:
        fleet = self._fleet
        fleet.allocate()
        try:
            fleet.start()
            fleet.wait_ready()
        except BaseException:
            self._stop()
            raise
        self._server = Server(fleet.servers[0])
        return self._server

    def _stop(self) -> Teardown:
        with _interrupts.held():  # a Ctrl-C waits for the teardown: no half-stopped tree
            return self._fleet.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        teardown = self._stop()
        if self._server is not None:
            self._server.teardown = teardown
        if not teardown.clean and exc_type is None:
            raise LeftBehindError(_left_message(teardown), teardown=teardown)


def _left_message(teardown: Teardown) -> str:
    parts = [f"pid {pid} ({server})" for server, pid, _ in teardown.left]
    parts += [f"port {c.port} still listening" for c in teardown.ports if not c.free]
    return "teardown left something behind: " + ", ".join(parts)


def serve(
    command: str | Sequence[str],
    *,
    name: str = "server",
    port: int | None = None,
    near: int | None = None,
    http: str | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    reclaim: bool = False,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log: str | os.PathLike[str] | None = None,
) -> Serving:
    """One server for the length of a `with` block, torn down on the way out, exceptions
    and Ctrl-C included:

        with serve("uvicorn main:app --port {port}", http="/health") as server:
            requests.get(server.url + "/items")

    On entry: a leased free port (nearest to `near`; or the fixed `port`), `{port}` and PORT
    set, then a wait until the server's process tree listens on it (and GET `http` answers
    below 500). Raises ServerExitedError if it exits first, ServerNotReadyError after
    wait_timeout (it is torn down before either is raised); NoFreePortError if a fixed port
    is taken (reclaim=True frees it through kill_port first). On exit: the teardown; a
    LeftBehindError if a process or the port survived it (when the block raised nothing).

    log: append the server's output (stdout and stderr) to this file; server.output() has
    the last lines either way. The keeper process that serve() starts is described in
    portinspect/_supervise.py: no signal handler is installed in your process.
    """
    spec = ServerSpec(command, name=name, port=port, near=near, http=http)
    fleet = _Fleet(
        [spec],
        wait_timeout=wait_timeout,
        stop_timeout=stop_timeout,
        reclaim=reclaim,
        shell=shell,
        env=env,
        cwd=None if cwd is None else os.fspath(cwd),
        logs={} if log is None else {name: Path(log)},
        on_line=None,
        on_event=None,
    )
    return Serving(fleet)
