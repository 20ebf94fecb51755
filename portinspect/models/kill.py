"""kill: the plan for one port, and what happened when it ran."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from portinspect.models import PortKey, ProcessInfo
from portinspect.models.app import App, Manager, Role
from portinspect.status import ExitStatus


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
    """Why a port is not (or not only) freed; render/kill.py words each one."""

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
    """One fact behind a plan or an outcome, as data: render/kill.py turns it into words."""

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
    # Each of `reasons` in words (render.reason_text), filled by kill_port with the message.
    explained: tuple[str, ...] = ()

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
        """One port of `kill --json`: what happened, in data and in words, and the apps."""
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
            "reasons": list(self.explained),
            "apps": [app.to_dict() for app in plan.apps],
        }
