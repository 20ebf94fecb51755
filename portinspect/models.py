"""The data that flows through portinspect: frozen, typed, no I/O.

scanner  -> Snapshot (Socket + ProcessInfo: facts read from the OS)
classify -> Listener (a socket with its holders, range, service, exposure, framework, app root)
render   -> str
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from portinspect.errors import ExitStatus


class Proto(str, Enum):
    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


ALL_PROTOS = frozenset(Proto)
# IANA's suggested dynamic range (RFC 6335), also Windows' default since Vista and macOS's:
# the ephemeral range where the OS will not tell its own.
IANA_DYNAMIC = (49152, 65535)


class Family(str, Enum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    def __str__(self) -> str:
        return self.value


class PortRange(str, Enum):
    """IANA port ranges (RFC 6335)."""

    WELL_KNOWN = "well-known"  # 0-1023
    REGISTERED = "registered"  # 1024-49151
    DYNAMIC = "dynamic"  # 49152-65535

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What the OS tells us about one process.

    Fields the caller may not read are None (or an empty cmdline): cwd and env of
    another user's process need root; on macOS and Windows more fields may be hidden.
    """

    pid: int
    ppid: int | None
    name: str | None
    user: str | None
    cmdline: tuple[str, ...] = ()
    cwd: str | None = None
    create_time: float | None = None  # seconds since the epoch
    # Only the variables that mark reloader children, kernels and managed services
    # (RUN_MAIN, WERKZEUG_RUN_MAIN, JPY_PARENT_PID, SUPERVISOR_PROCESS_NAME...), never the
    # whole env.
    env: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The process's cgroup path ("/system.slice/nginx.service"), read only where a manager
    # may matter (who, kill): systemd units and containers show there. None when not read.
    cgroup: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Socket:
    """One listening TCP socket or bound UDP socket, as the kernel reports it."""

    proto: Proto
    family: Family
    address: str
    port: int
    # Owning uid, known on Linux even when the owning process is hidden from us.
    uid: int | None = None
    # Kernel socket inode (Linux), or None where the OS does not expose one.
    inode: int | None = None
    # Every process holding this socket, lowest pid first; empty when hidden.
    pids: tuple[int, ...] = ()
    # IPv6 only (IPV6_V6ONLY, or bound to a specific IPv6 address): an IPv6 wildcard without
    # it takes IPv4 connections too. None where the OS does not say (procfs, psutil).
    v6only: bool | None = None


PortKey = tuple[Proto, int]


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address of one network interface of this machine (`lo`, `wlan0`, `docker0`...)."""

    interface: str
    family: Family
    address: str  # without an IPv6 scope id: the interface names the scope

    def to_dict(self) -> dict[str, Any]:
        return {"interface": self.interface, "family": self.family.value, "address": self.address}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Raw facts from one scan: sockets, and the processes that hold them plus their ancestors.

    processes holds every holder of `sockets` and its ancestors; a scan for who/kill adds
    the subtrees the app model may take in. held maps every process known to hold a
    listening socket (of any port, not only those of `sockets`) to the ports it holds: it
    is how the app model sees that a parent's other children serve other ports. A scan of
    every port leaves it empty; it is then read off `sockets` (see held_ports()).
    """

    sockets: tuple[Socket, ...]
    processes: Mapping[int, ProcessInfo]
    # True when some socket's owner could not be seen (not root, hidepid, another namespace).
    owners_hidden: bool = False
    # portinspect's own pid and its ancestors: never an app root, never signalled.
    self_lineage: frozenset[int] = frozenset()
    # uid -> user name, for sockets whose owning process is hidden.
    user_names: Mapping[int, str] = field(default_factory=dict)
    held: Mapping[int, frozenset[PortKey]] = field(default_factory=dict)
    # Ports with a listening socket no visible process holds (another user's, another pid
    # namespace's, the kernel's): signalling our processes never frees such a port.
    hidden_ports: frozenset[PortKey] = frozenset()
    # The OS's range for outgoing connections' local ports (scanner.ephemeral_range()).
    ephemeral: tuple[int, int] = IANA_DYNAMIC
    # We see every process of this pid namespace (root): a hidden owner is then the kernel's
    # or another namespace's, not another user's.
    privileged: bool = False

    def held_ports(self) -> Mapping[int, frozenset[PortKey]]:
        """pid -> the listening ports it holds, of every port the scan looked at."""
        if self.held:
            return self.held
        # By set of holders first: a server's 5000 sockets share one (measured: 100 ms of
        # per-pid set updates at 1000 sockets of 100 workers, 5 ms this way).
        by_holders: dict[tuple[int, ...], set[PortKey]] = {}
        for sock in self.sockets:
            if sock.pids:
                by_holders.setdefault(sock.pids, set()).add((sock.proto, sock.port))
        found: dict[int, set[PortKey]] = {}
        for pids, ports in by_holders.items():
            for pid in pids:
                found.setdefault(pid, set()).update(ports)
        return {pid: frozenset(ports) for pid, ports in found.items()}


@dataclass(frozen=True, slots=True)
class Holder:
    """A process holding a listening socket, with its role in the app."""

    process: ProcessInfo
    # "server", "master", "worker", "reloader", "supervisor", or None when unknown.
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket, who holds it and what it is. The unit of `list` and `who`.

    pid, process, cmdline and cwd describe the primary holder: the top-most process
    of the app that holds the socket (the gunicorn master, not a worker). They are
    None when the socket belongs to another user and you are not root; `user` is
    still known on Linux from the socket's uid.
    """

    proto: Proto
    family: Family
    address: str
    port: int
    range: PortRange
    ephemeral: bool
    service: str | None
    exposed: bool
    holders: tuple[Holder, ...] = ()
    uid: int | None = None
    user: str | None = None
    inode: int | None = None
    framework: str | None = None
    server: str | None = None
    # The app's top process: reloader, master or supervisor; the holder itself for a
    # single-process server. None when the owner is hidden.
    app_pid: int | None = None
    # pid -> role for the holders and the app processes above them.
    roles: Mapping[int, str] = field(default_factory=dict, compare=False)

    @property
    def primary(self) -> ProcessInfo | None:
        return self.holders[0].process if self.holders else None

    @property
    def pid(self) -> int | None:
        p = self.primary
        return p.pid if p else None

    @property
    def process(self) -> str | None:
        p = self.primary
        return p.name if p else None

    @property
    def cmdline(self) -> tuple[str, ...]:
        p = self.primary
        return p.cmdline if p else ()

    @property
    def cwd(self) -> str | None:
        p = self.primary
        return p.cwd if p else None

    @property
    def owner_hidden(self) -> bool:
        return not self.holders

    @property
    def endpoint(self) -> str:
        """address:port, with IPv6 in brackets."""
        host = f"[{self.address}]" if self.family is Family.IPV6 else self.address
        return f"{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one listener)."""
        primary = self.primary
        return {
            "port": self.port,
            "proto": self.proto.value,
            "family": self.family.value,
            "address": self.address,
            "pid": self.pid,
            "ppid": primary.ppid if primary else None,
            "process": self.process,
            "user": self.user,
            "uid": self.uid,
            "cmdline": list(self.cmdline),
            "cwd": self.cwd,
            "started": primary.create_time if primary else None,
            "range": self.range.value,
            "ephemeral": self.ephemeral,
            "service": self.service,
            "exposed": self.exposed,
            "framework": self.framework,
            "server": self.server,
            "app_pid": self.app_pid,
            "holders": [
                {"pid": h.process.pid, "process": h.process.name, "role": h.role}
                for h in self.holders
            ],
        }


# ---------------------------------------------------------------------------------------
# The app model (apptree.py): the processes behind a socket, and where the app ends
# ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Boundary:
    """The first process above the app's top that is not part of the app, and why."""

    stop: Stop
    process: ProcessInfo | None  # None when there is no visible parent
    # The other ports, for SERVES_OTHER_PORTS and RUNS_OTHER_SERVICES.
    ports: tuple[PortKey, ...] = ()

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


# ---------------------------------------------------------------------------------------
# kill: the plan for one port, and what happened when it ran
# ---------------------------------------------------------------------------------------


class KillStatus(str, Enum):
    """How `kill` ended for one port. Each maps to one exit status (exit_status)."""

    FREED = "freed"  # no listening socket is left on the port, in either family
    NOT_LISTENING = "not-listening"  # nothing listened when we looked
    PERMISSION_DENIED = "permission-denied"  # another user's process: nothing was signalled
    STILL_HELD = "still-held"  # signals sent, but a listener survived SIGKILL or respawned
    # A process manager runs the app and restarts it (supervisord, pm2, systemd, a container):
    # after the graceful step portinspect stops and names the manager's own stop command.
    MANAGED = "managed"
    REFUSED = "refused"  # protected, portinspect's own lineage, a container, an unseen owner
    DRY_RUN = "dry-run"  # the plan was shown; nothing was signalled
    DECLINED = "declined"  # the user answered no; nothing was signalled, the port is held
    INTERRUPTED = "interrupted"  # Ctrl-C: steps and signalled say what was sent before it

    def __str__(self) -> str:
        return self.value

    @property
    def exit_status(self) -> ExitStatus:
        return _KILL_EXIT[self]


# A refused, declined or managed port is still held (or may be again), so scripts see 5.
_KILL_EXIT = {
    KillStatus.FREED: ExitStatus.OK,
    KillStatus.DRY_RUN: ExitStatus.OK,
    KillStatus.NOT_LISTENING: ExitStatus.NOT_LISTENING,
    KillStatus.PERMISSION_DENIED: ExitStatus.PERMISSION,
    KillStatus.STILL_HELD: ExitStatus.STILL_HELD,
    KillStatus.MANAGED: ExitStatus.STILL_HELD,
    KillStatus.REFUSED: ExitStatus.STILL_HELD,
    KillStatus.DECLINED: ExitStatus.STILL_HELD,
    KillStatus.INTERRUPTED: ExitStatus.INTERRUPTED,
}


@dataclass(frozen=True, slots=True)
class KillTarget:
    """A process `kill` will signal: an app's top process or a member of its tree."""

    process: ProcessInfo
    # "reloader", "master", "server", "worker", "wrapper", "kernel"...; None for a process
    # with no recognised role (a child the app started).
    role: Role | None = None
    top: bool = False  # an app's top process: signalled first, so nothing respawns
    holds_port: bool = False

    def to_dict(self) -> dict[str, Any]:
        info = self.process
        return {
            "pid": info.pid,
            "role": self.role.value if self.role is not None else None,
            "top": self.top,
            "holds_port": self.holds_port,
            "process": info.name,
            "user": info.user,
            "cmdline": list(info.cmdline),
        }


@dataclass(frozen=True, slots=True)
class ContainerHint:
    """A published container port: which proxy holds it, and how to stop the container."""

    proxy: str  # "docker-proxy", "rootlesskit", "rootlessport"...
    runtime: str  # "docker", "rootless", "podman", "docker-desktop", "orbstack"
    pid: int | None  # the proxy's pid; None when only its command line was seen
    container: str | None  # "172.17.0.2:80" from the proxy's flags, when it names one
    find: str  # "docker ps --filter publish=8080"
    stop: str  # "docker stop <container>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "runtime": self.runtime,
            "pid": self.pid,
            "container": self.container,
            "find": self.find,
            "stop": self.stop,
        }


class ReasonKind(str, Enum):
    """Why a port is not (or not only) freed; render.py words each one."""

    NOT_LISTENING = "not-listening"
    LINEAGE = "lineage"  # the process is portinspect or one of its ancestors
    PROTECTED = "protected"  # init, sshd, dockerd...
    INHERITED = "inherited"  # a shell, terminal or multiplexer holds a leaked copy
    CONTAINER = "container"  # a container's proxy publishes the port
    HIDDEN = "hidden"  # no visible owner (another user, another pid namespace, the kernel)
    FOREIGN = "foreign"  # another user's process, and we are not root
    DENIED = "denied"  # signal 0 (or a signal) was refused
    COLLATERAL = "collateral"  # freeing the port frees others the user did not name
    STOPS_OTHERS = "stops-others"  # the manager stops its other services when this one exits

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Reason:
    """One fact behind a plan or an outcome, as data: render.py turns it into words."""

    kind: ReasonKind
    process: ProcessInfo | None = None
    more: int = 0  # how many more processes the same holds for
    user: str | None = None  # the owner, for HIDDEN and FOREIGN
    me: str | None = None  # who we are, for FOREIGN
    ports: tuple[PortKey, ...] = ()  # for COLLATERAL
    container: ContainerHint | None = None  # for CONTAINER
    privileged: bool = False  # for HIDDEN: we are root, so sudo would not help

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "pid": self.process.pid if self.process else None,
            "process": self.process.name if self.process else None,
            "user": self.user,
            "ports": [port for _, port in self.ports],
        }


@dataclass(frozen=True, slots=True)
class KillPlan:
    """What `kill` would do to one port, decided before anything is signalled.

    targets: the app tops first, then the rest of each app tree, parents before
    children (the SIGKILL order). blocked is None when the plan may run; otherwise
    it is NOT_LISTENING, REFUSED or PERMISSION_DENIED, reasons say why and what to
    do next, and nothing will be signalled. apps: the app model behind the port.
    collateral: other ports the same processes serve, freed with this one. manager: a
    manager that restarts the app (kill then stops after the graceful step). watch: whether
    a respawn is possible, so the port is watched for a while once free.
    """

    port: int
    targets: tuple[KillTarget, ...] = ()
    framework: str | None = None
    server: str | None = None
    blocked: KillStatus | None = None
    reasons: tuple[Reason, ...] = ()
    containers: tuple[ContainerHint, ...] = ()
    apps: tuple[App, ...] = ()
    collateral: tuple[PortKey, ...] = ()
    manager: Manager | None = None
    watch: bool = False

    @property
    def tops(self) -> tuple[KillTarget, ...]:
        return tuple(t for t in self.targets if t.top)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(t.process.pid for t in self.targets)

    @property
    def managed(self) -> bool:
        """A manager runs the app that restarts it (or may): do not fight it."""
        return self.manager is not None and self.manager.restarts is not False


@dataclass(frozen=True, slots=True)
class KillStep:
    """One batch of signals `kill` sent."""

    signal: str  # "SIGTERM", "SIGKILL", or "terminate" (Windows' TerminateProcess)
    scope: str  # "top": the app tops; "tree": the rest and new holders; "all": tops then rest
    pids: tuple[int, ...]  # in the order they were signalled
    at: float  # seconds since the kill_port() call, not counting time at a prompt

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "scope": self.scope,
            "pids": list(self.pids),
            "at": round(self.at, 4),
        }


@dataclass(frozen=True, slots=True)
class KillTrace:
    """What one escalation did and saw: the raw material of an outcome."""

    steps: tuple[KillStep, ...] = ()
    signalled: tuple[int, ...] = ()
    respawned: tuple[int, ...] = ()
    survivors: tuple[int, ...] = ()
    holders: tuple[ProcessInfo, ...] = ()  # who held the port at the end, when held
    notes: tuple[Reason, ...] = ()
    freed_after: float | None = None
    watched: float = 0.0
    elapsed: float = 0.0
    free: bool = False  # the port was free at the end
    retaken: bool = False  # it was free, then held again


@dataclass(frozen=True, slots=True)
class KillOutcome:
    """What happened to one port; build one with the constructor named after its status.

    freed_after: seconds from the kill_port() call to the first check that found no
    listener, not counting time spent at a confirmation prompt; None when the port was never
    seen free. watched: seconds the port was then watched for a respawn (0 when nothing
    could respawn it). survivors: members of the app tree still running at the end although
    the port is free. respawned: processes that began holding the port after the first
    signal (a master, a manager or the app itself restarted them). holders: who holds the
    port at the end, when it is held. notes: what got in the way (a denied signal, a new
    holder we may not signal).
    """

    port: int
    status: KillStatus
    plan: KillPlan
    steps: tuple[KillStep, ...] = ()
    signalled: tuple[int, ...] = ()
    respawned: tuple[int, ...] = ()
    survivors: tuple[int, ...] = ()
    holders: tuple[ProcessInfo, ...] = ()
    notes: tuple[Reason, ...] = ()
    freed_after: float | None = None
    watched: float = 0.0
    elapsed: float = 0.0  # seconds spent on this port
    free: bool = False  # no listener was left on the port at the last check
    # One line: what happened, or what to do next (render.kill_message, filled by kill_port).
    message: str = ""

    @property
    def exit_status(self) -> ExitStatus:
        return self.status.exit_status

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return (*self.plan.reasons, *self.notes)

    # -- one constructor per way a port's kill can end --------------------------------------

    @classmethod
    def blocked(cls, plan: KillPlan, elapsed: float) -> KillOutcome:
        assert plan.blocked is not None
        return cls(plan.port, plan.blocked, plan, elapsed=elapsed)

    @classmethod
    def dry_run(cls, plan: KillPlan, elapsed: float) -> KillOutcome:
        return cls(plan.port, KillStatus.DRY_RUN, plan, elapsed=elapsed)

    @classmethod
    def declined(cls, plan: KillPlan, elapsed: float) -> KillOutcome:
        return cls(plan.port, KillStatus.DECLINED, plan, elapsed=elapsed)

    @classmethod
    def gone_meanwhile(cls, plan: KillPlan, at: float) -> KillOutcome:
        """It listened a moment ago and closed while other ports were handled."""
        return cls(plan.port, KillStatus.FREED, plan, freed_after=at, free=True)

    @classmethod
    def after_signals(cls, status: KillStatus, plan: KillPlan, trace: KillTrace) -> KillOutcome:
        """FREED, STILL_HELD, MANAGED or INTERRUPTED, from what the escalation saw."""
        return cls(
            port=plan.port,
            status=status,
            plan=plan,
            steps=tuple(trace.steps),
            signalled=tuple(trace.signalled),
            respawned=tuple(trace.respawned),
            survivors=tuple(trace.survivors),
            holders=tuple(trace.holders),
            notes=tuple(trace.notes),
            freed_after=trace.freed_after,
            watched=trace.watched,
            elapsed=trace.elapsed,
            free=trace.free,
        )

    def to_dict(self) -> dict[str, Any]:
        """The data of one port of `kill --json` (render.kill_json adds the words)."""
        plan = self.plan
        return {
            "port": self.port,
            "status": self.status.value,
            "exit_code": int(self.exit_status),
            "message": self.message,
            "framework": plan.framework,
            "server": plan.server,
            "targets": [t.to_dict() for t in plan.targets],
            "containers": [c.to_dict() for c in plan.containers],
            "collateral": [port for _, port in plan.collateral],
            "manager": plan.manager.to_dict() if plan.manager else None,
            "steps": [s.to_dict() for s in self.steps],
            "signalled": list(self.signalled),
            "respawned": list(self.respawned),
            "survivors": list(self.survivors),
            "holders": [h.pid for h in self.holders],
            "freed_after": None if self.freed_after is None else round(self.freed_after, 4),
            "watched": round(self.watched, 4),
            "elapsed": round(self.elapsed, 4),
        }


# ---------------------------------------------------------------------------------------
# wait: what to wait for, and how each target fared
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaitTarget:
    """One thing `wait` waits for, as inputs.parse_target read it.

    host is None for a bare port (a listener on any address of this machine will do),
    "localhost" (127.0.0.1 or ::1), an IP address in its canonical form (an IPv4-mapped
    IPv6 address is written as the IPv4 one), or a lower-case host name. scheme is "tcp"
    for PORT, HOST:PORT and tcp://; "http" and "https" add a GET of path (with its query).
    """

    port: int
    host: str | None = None
    scheme: str = "tcp"
    path: str | None = None

    @property
    def http(self) -> bool:
        return self.scheme in ("http", "https")

    def __str__(self) -> str:
        if self.host is None:
            return str(self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self.http:
            return f"{host}:{self.port}"
        return f"{self.scheme}://{host}:{self.port}{self.path or '/'}"


@dataclass(frozen=True, slots=True)
class TargetReport:
    """How one target fared: ready or not, when, and what decided it.

    via names the checks that decided, in order: "socket-table" (this machine's listeners),
    "connect" (a TCP connect to the address, the probe for other hosts, and the fallback
    where the OS does not say whether an IPv6 wildcard takes IPv4), "http" (a GET answered
    below 500). address is the one that accepted (None for a bare port, or while not ready).
    error is why the last check failed; None once ready.
    """

    target: WaitTarget
    proto: Proto
    ready: bool
    ready_after: float | None = None  # seconds from the call to the check that saw it ready
    via: tuple[str, ...] = ()
    attempts: int = 0
    address: str | None = None
    http_status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one target of `wait --json`)."""
        target = self.target
        return {
            "target": str(target),
            "scheme": target.scheme if target.http else None,
            "host": target.host,
            "port": target.port,
            "path": target.path,
            "proto": self.proto.value,
            "ready": self.ready,
            "ready_after": None if self.ready_after is None else round(self.ready_after, 3),
            "via": list(self.via),
            "attempts": self.attempts,
            "address": self.address,
            "http_status": self.http_status,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What wait_for() saw: every target's report, and when the last one became ready.

    ports are the targets' port numbers (kept from before targets had hosts); free is True
    when the wait was for no listener. timeout is None for a wait without limit.
    """

    ports: tuple[int, ...]
    free: bool
    elapsed: float  # seconds from the call to the condition holding (or to giving up)
    polls: int  # rounds of checks
    targets: tuple[TargetReport, ...] = ()
    timed_out: bool = False
    timeout: float | None = None
    proto: Proto = Proto.TCP

    @property
    def pending(self) -> tuple[int, ...]:
        """The ports of the targets that are not ready."""
        return tuple(sorted({r.target.port for r in self.targets if not r.ready}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (`wait --json`, beside the envelope)."""
        return {
            "ports": list(self.ports),
            "condition": "free" if self.free else "listening",
            "proto": self.proto.value,
            "timeout": self.timeout,
            "timed_out": self.timed_out,
            "pending": list(self.pending),
            "elapsed": round(self.elapsed, 3),
            "targets": [r.to_dict() for r in self.targets],
        }


# --- run / serve --------------------------------------------------------------------------------


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True, slots=True)
class ServerReport:
    """One server of `run` or `serve()`, as far as it got.

    pid is the server's top process (what its command started), None if it never started.
    url is set once it is ready: http://127.0.0.1:PORT, or http://[::1]:PORT when it listens
    on IPv6 only. ready_after counts from its start; stopped_after from the start of the
    teardown until its port was verified free. exit_status is its top process's: the exit
    code, or minus the signal that ended it; None while it runs or if it never started.
    """

    name: str
    command: tuple[str, ...]
    port: int
    pid: int | None = None
    url: str | None = None
    ready_after: float | None = None
    exit_status: int | None = None
    stopped_after: float | None = None
    output: tuple[str, ...] = ()  # the last lines it printed (stdout and stderr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": list(self.command),
            "port": self.port,
            "pid": self.pid,
            "url": self.url,
            "ready_after": _seconds(self.ready_after),
            "exit_status": self.exit_status,
            "stopped_after": _seconds(self.stopped_after),
            "output": list(self.output),
        }


@dataclass(frozen=True, slots=True)
class Signalled:
    """A signal the teardown sent; at is seconds since that server's teardown began."""

    server: str
    pid: int
    signal: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "pid": self.pid, "signal": self.signal, "at": self.at}


@dataclass(frozen=True, slots=True)
class PortCheck:
    """A server's port after its teardown. free: none of the server's listening sockets is
    left there (any address or family, whoever holds it). holders: what listens on the port
    now, as (pid or None, process name): the server's socket still held when not free; with
    free, a newcomer that took the port since (a parallel run, say)."""

    server: str
    port: int
    free: bool
    holders: tuple[tuple[int | None, str | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "port": self.port,
            "free": self.free,
            "holders": [{"pid": pid, "process": name} for pid, name in self.holders],
        }


@dataclass(frozen=True, slots=True)
class Teardown:
    """What stopping the servers did, and the proof. left: processes of the servers' trees
    still alive after SIGKILL, as (server, pid, cmdline)."""

    signalled: tuple[Signalled, ...] = ()
    left: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    ports: tuple[PortCheck, ...] = ()
    elapsed: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.left and all(check.free for check in self.ports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "signalled": [s.to_dict() for s in self.signalled],
            "left": [
                {"server": server, "pid": pid, "cmdline": list(cmdline)}
                for server, pid, cmdline in self.left
            ],
            "ports": [check.to_dict() for check in self.ports],
            "elapsed": round(self.elapsed, 4),
        }


@dataclass(frozen=True, slots=True)
class TestsReport:
    """The test command of `run`: its exit status as a shell reports it (128+N when signal N
    ended it, then `signal` names it)."""

    __test__ = False  # not a pytest test class, whatever its name says

    command: tuple[str, ...]
    exit_status: int
    signal: str | None = None
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "exit_status": self.exit_status,
            "signal": self.signal,
            "elapsed": round(self.elapsed, 4),
        }


class RunOutcome(str, Enum):
    """What ended a `run` (the teardown's verdict is apart: Teardown.clean)."""

    TESTS_PASSED = "tests-passed"
    TESTS_FAILED = "tests-failed"
    SERVER_EXITED = "server-exited"  # before it was ready, or while the tests ran
    NOT_READY = "not-ready"  # not ready within the wait timeout
    INTERRUPTED = "interrupted"  # SIGINT (Ctrl-C)
    TERMINATED = "terminated"  # SIGTERM or SIGHUP

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class RunResult:
    """The whole of one `run`: exit_status is what `portinspect run` exits with."""

    exit_status: int
    outcome: RunOutcome
    message: str  # one line: what ended it
    servers: tuple[ServerReport, ...]
    tests: TestsReport | None
    teardown: Teardown
    failed: str | None = None  # the server that ended the run (server-exited, not-ready)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "message": self.message,
            "failed": self.failed,
            "servers": [s.to_dict() for s in self.servers],
            "tests": None if self.tests is None else self.tests.to_dict(),
            "teardown": self.teardown.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class RunEvent:
    """Progress of `run`, for a caller that shows it: kind is "starting", "ready", "stopped"
    (with server), "tests" (with command), or "holding" (no test command: up until a signal)."""

    kind: str
    server: ServerReport | None = None
    command: tuple[str, ...] = ()
