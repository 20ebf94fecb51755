"""The app model (apptree.py): the processes behind a socket, and where the app ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from portinspect.models import Listener, PortKey, ProcessInfo, Proto, Snapshot

if TYPE_CHECKING:
    from portinspect.models.audit import Finding


class Role(str, Enum):
    """What a process is in an app tree (or, for MANAGER and PARENT, just above it)."""

    SERVER = "server"  # serves the port: a single-process server, a reloader's child
    MASTER = "master"  # holds the socket and runs workers that share it (gunicorn, uvicorn -w)
    WORKER = "worker"  # a master's worker
    RELOADER = "reloader"  # restarts its child on code changes (Django, werkzeug, uvicorn)
    SUPERVISOR = "supervisor"  # started the server and serves nothing itself (same program)
    WRAPPER = "wrapper"  # npm/npx/uv run and the `sh -c` they start: runs the app
    KERNEL = "kernel"  # a Jupyter kernel
    RESOURCE_TRACKER = "resource_tracker"  # multiprocessing's helper
    MANAGER = "manager"  # a process manager (supervisord, honcho, pm2...): never part of an app
    PARENT = "parent"  # a parent that is not part of the app (runs other services, a harness)
    # A shell, terminal, multiplexer or daemon holding an inherited copy of the socket: never
    # signalled by kill; the descriptor leaked into it.
    INHERITED = "inherited"

    def __str__(self) -> str:
        return self.value


class Stop(str, Enum):
    """Why the climb from the holders stopped where it did."""

    INIT = "init"  # the top's parent is init (or the kernel): nothing above
    LINEAGE = "lineage"  # portinspect's own ancestor: the shell or harness running it
    PROTECTED = "protected"  # sshd, dockerd, systemd...: never signalled
    MANAGER = "manager"  # a process manager runs the app (Boundary + App.manager say which)
    BOUNDARY = "boundary"  # an interactive shell, a terminal, a multiplexer, an IDE
    SERVES_OTHER_PORTS = "serves-other-ports"  # the parent listens on other ports itself
    RUNS_OTHER_SERVICES = "runs-other-services"  # the parent's other children serve other ports
    UNRELATED = "unrelated"  # no sign the parent exists only to run the app (a harness, make)
    HIDDEN = "hidden"  # the parent cannot be seen

    def __str__(self) -> str:
        return self.value


BOUNDARY_PORTS = 20


@dataclass(frozen=True, slots=True)
class Boundary:
    """The first process above the app's top that is not part of the app, and why."""

    stop: Stop
    process: ProcessInfo | None  # None when there is no visible parent
    # The other ports, for SERVES_OTHER_PORTS and RUNS_OTHER_SERVICES: the lowest
    # BOUNDARY_PORTS of them, and how many more there are. A launcher of 1000 workers is the
    # boundary of each: every list in full was 5.5 million entries at the L load.
    ports: tuple[PortKey, ...] = ()
    more_ports: int = 0

    @property
    def role(self) -> Role | None:
        """The role to show the boundary process with, above the app in a tree."""
        if self.stop is Stop.MANAGER:
            return Role.MANAGER
        if self.stop in (Stop.SERVES_OTHER_PORTS, Stop.RUNS_OTHER_SERVICES, Stop.UNRELATED):
            return Role.PARENT
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop": self.stop.value,
            "pid": self.process.pid if self.process else None,
            "process": self.process.name if self.process else None,
            "cmdline": list(self.process.cmdline) if self.process else [],
            "ports": [{"proto": proto.value, "port": port} for proto, port in self.ports],
            "more_ports": self.more_ports,
        }


@dataclass(frozen=True, slots=True)
class Manager:
    """A process or service manager that runs the app, and how to stop the app through it."""

    kind: str  # "supervisord", "honcho", "foreman", "pm2", "circus", "systemd", "container"...
    pid: int | None  # the manager process; None for a systemd unit or a container (cgroup)
    service: str | None  # the app's name for the manager (program, unit, container id)
    # True: it restarts a service that dies; None: it may, depending on its configuration.
    restarts: bool | None
    stops_others: bool  # honcho/foreman: when one service exits it stops all the others
    stop: str | None  # the command that stops the service properly, when there is one

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "service": self.service,
            "restarts": self.restarts,
            "stops_others": self.stops_others,
            "stop": self.stop,
        }


@dataclass(frozen=True, slots=True)
class Member:
    """One process of an app."""

    process: ProcessInfo
    role: Role | None  # None: a descendant with no known role (a child the app started)
    holds: bool  # holds one of the sockets the app was found for
    depth: int  # 0 for the top


@dataclass(frozen=True, slots=True)
class App:
    """The processes behind a socket: the top, every member, and where and why it ends.

    members: the top first, then parents before children. Without trees (list) they are the
    holders and the ancestors the climb took in; with trees (who, kill) every descendant of
    the top too, except `others`: descendants serving ports of their own (other services,
    never signalled). ports: every listening port the app's core processes hold; the port
    asked about and, when one process serves several (gunicorn -b A -b B), the others too.
    leaked: the "app" is a shell, terminal, multiplexer or daemon holding an inherited copy of
    the socket (its only member has role INHERITED).
    """

    top: int
    members: tuple[Member, ...]
    framework: str | None
    server: str | None
    boundary: Boundary
    manager: Manager | None = None
    ports: frozenset[PortKey] = frozenset()
    others: tuple[Member, ...] = ()
    leaked: bool = False

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(m.process.pid for m in self.members)

    @property
    def holders(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.holds)

    def to_dict(self) -> dict[str, Any]:
        """One app of `who --json` and `kill --json`: every process, never folded."""
        return {
            "app_pid": self.top,
            "framework": self.framework,
            "server": self.server,
            "leaked": self.leaked,
            "ports": [{"proto": proto.value, "port": port} for proto, port in sorted(self.ports)],
            "boundary": self.boundary.to_dict(),
            "manager": self.manager.to_dict() if self.manager else None,
            "tree": [
                {
                    **m.process.to_dict(),
                    "role": m.role.value if m.role else None,
                    "holds_port": m.holds,
                }
                for m in self.members
            ],
            "others": [m.process.to_dict() for m in self.others],
        }


@dataclass(frozen=True, slots=True)
class PortView:
    """Everything behind one port, for who and kill: its sockets with every holder, and the
    app model behind them with whole trees (members, roles, boundary, manager)."""

    port: int
    snapshot: Snapshot
    listeners: tuple[Listener, ...]
    apps: tuple[App, ...]

    @property
    def inodes(self) -> frozenset[int | None]:
        return frozenset(li.inode for li in self.listeners)

    def held_by_port(self) -> dict[PortKey, frozenset[int]]:
        """(proto, port) -> every pid holding a listening socket on it."""
        found: dict[PortKey, set[int]] = {}
        for pid, keys in self.snapshot.held_ports().items():
            for key in keys:
                found.setdefault(key, set()).add(pid)
        return {key: frozenset(pids) for key, pids in found.items()}


@dataclass(frozen=True, slots=True)
class PortState:
    """A port nothing listens on (TCP or UDP), and what may still make a bind there fail:
    what `who PORT` says when the port is free.

    sockets: TCP sockets of any user whose local port it is, counted by state: "bound" (bound
    and not listening: a bind fails unless both sockets set SO_REUSEADDR; seen from Linux
    6.8), "time-wait" (connections closed from this side, kept up to 60 s: meanwhile a bind
    fails unless both sockets set SO_REUSEADDR, which a server's own connections do and an
    outgoing connection's do not), "established" and the other connection states (an
    outgoing connection's local port, an accepted connection that outlived its listener: the
    same). bound_user: the owner of one bound socket (a name, or a uid), when there is one.
    bind_error: the first bind a server would make (SO_REUSEADDR, on 127.0.0.1, 0.0.0.0, ::1,
    ::) that fails, as (address, protocol, error), or None when each one works. ephemeral:
    the port lies in the OS's range for outgoing connections' local ports.
    """

    port: int
    sockets: Mapping[str, int] = field(default_factory=dict)
    bound_user: str | None = None
    bind_error: tuple[str, str, str] | None = None
    ephemeral: bool = False

    @property
    def clear(self) -> bool:
        """Nothing here would make a server's bind fail."""
        return not self.sockets and self.bind_error is None

    def to_dict(self) -> dict[str, Any]:
        error = self.bind_error
        return {
            "port": self.port,
            "sockets": dict(self.sockets),
            "bound_user": self.bound_user,
            "bind_error": None
            if error is None
            else {"address": error[0], "proto": error[1], "error": error[2]},
            "ephemeral": self.ephemeral,
        }


@dataclass(frozen=True, slots=True)
class WhoReport:
    """Everything `who PORT` says: the sockets and the apps behind them (view), the audit's
    findings for the port, and when nothing listens there, what may still make a bind fail
    (state; None when something listens)."""

    port: int
    view: PortView
    findings: list[Finding]
    state: PortState | None = None

    @property
    def listening(self) -> bool:
        return bool(self.view.listeners)

    @property
    def owners_hidden(self) -> bool:
        """Every socket on the port belongs to a process we cannot see."""
        return self.listening and all(li.owner_hidden for li in self.view.listeners)

    @property
    def stop(self) -> str:
        udp_only = all(li.proto is Proto.UDP for li in self.view.listeners)
        return f"portinspect kill {'--udp ' if udp_only else ''}{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """`who --json` (README: JSON); a free port gives its port and `free`."""
        if self.state is not None:
            return {"port": self.port, "free": self.state.to_dict()}
        return {
            "port": self.port,
            "listeners": [li.to_dict() for li in self.view.listeners],
            "apps": [app.to_dict() for app in self.view.apps],
            "stop": self.stop,
            "audit": [f.to_dict() for f in self.findings],
        }
