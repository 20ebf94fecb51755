"""Pure: what `kill` would signal for one port, what it must refuse, and why.

The processes come from the app model (apptree.py): every app behind the port's sockets,
each with its members. The plan signals members only; everything above an app's top (a
parent running other services, a process manager, a shell) is out of reach by construction.
What is left here is refusing what must never be signalled and naming what the user did not
ask for: another port the same processes serve, a manager that restarts the app or stops its
siblings when it dies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from portinspect import apptree, managers, signatures
from portinspect.models import (
    App,
    ContainerHint,
    KillPlan,
    KillStatus,
    KillTarget,
    Listener,
    Manager,
    PortKey,
    ProcessInfo,
    Reason,
    ReasonKind,
    Role,
)


@dataclass(frozen=True, slots=True)
class Who:
    """Who runs kill: their user, whether they may signal anyone's process, their lineage."""

    user: str | None = None
    privileged: bool = True
    lineage: frozenset[int] = frozenset()


def plan_kill(
    port: int,
    listeners: Sequence[Listener],
    apps: Sequence[App],
    *,
    who: Who = Who(),
    named: Iterable[int] = (),
    held: Mapping[PortKey, frozenset[int]] | None = None,
    hidden_ports: Iterable[PortKey] = (),
    hidden_proxies: Sequence[ProcessInfo] = (),
) -> KillPlan:
    """What `kill` would do to `port`, and whether it may.

    listeners: the port's sockets (classified); apps: the app model behind them, with trees.
    named: every port the user asked to free; another port the plan frees that is not named
    is `collateral` (the CLI then asks, or refuses without --all-ports). held: (proto, port)
    -> every pid holding it, to tell which other ports die with the app; hidden_ports: ports
    with a socket no visible process holds. hidden_proxies: docker-proxy processes found by
    command line for a port whose owner we cannot see.
    """
    if not listeners:
        return KillPlan(port, blocked=KillStatus.NOT_LISTENING, reasons=(_not_listening(),))
    named_app = next((a for a in apps if a.framework or a.server), apps[0] if apps else None)
    targets = _targets(apps)
    plan = KillPlan(
        port,
        targets,
        framework=named_app.framework if named_app else None,
        server=named_app.server if named_app else None,
        apps=tuple(apps),
        manager=_manager(apps),
        watch=_may_respawn(apps),
    )
    plan = replace(
        plan, collateral=_collateral(plan, apps, set(named) | {port}, held, hidden_ports)
    )
    return _checked(plan, listeners, apps, who, hidden_proxies)


def _not_listening() -> Reason:
    return Reason(ReasonKind.NOT_LISTENING)


def _targets(apps: Sequence[App]) -> tuple[KillTarget, ...]:
    """Every app's top first, then the rest of each app, parents before children."""
    firsts: list[KillTarget] = []
    rest: list[KillTarget] = []
    seen: set[int] = set()
    for app in apps:
        if app.leaked:
            continue
        for member in sorted(app.members, key=lambda m: m.depth):
            pid = member.process.pid
            if pid in seen:
                continue
            seen.add(pid)
            target = KillTarget(member.process, member.role, pid == app.top, member.holds)
            (firsts if target.top else rest).append(target)
    return (*firsts, *rest)


def _manager(apps: Sequence[App]) -> Manager | None:
    """The manager to name: one that restarts the app first, then one that stops siblings."""
    managers = [a.manager for a in apps if a.manager is not None and not a.leaked]
    managers.sort(key=lambda m: (m.restarts is False, not m.stops_others))
    return managers[0] if managers else None


def _may_respawn(apps: Sequence[App]) -> bool:
    """Could anything restart the app once it is gone? Then kill watches the port a while.

    Not when every app sits right under init, a shell, a terminal or portinspect's own
    ancestors with no manager: nothing there restarts a server by itself.
    """
    return any(
        a.manager is not None or a.boundary.stop not in apptree.QUIET_STOPS
        for a in apps
        if not a.leaked
    )


def _collateral(
    plan: KillPlan,
    apps: Sequence[App],
    named: set[int],
    held: Mapping[PortKey, frozenset[int]] | None,
    hidden_ports: Iterable[PortKey],
) -> tuple[PortKey, ...]:
    """Other listening ports that go with the plan's processes: every holder of them is a
    target (gunicorn -b :A -b :B). A kernel's ports are the notebook's, not a service's."""
    if held is None:
        return ()
    targets = set(plan.pids)
    hidden = set(hidden_ports)
    kernels = {m.process.pid for a in apps for m in a.members if m.role is Role.KERNEL}
    found = {
        key
        for key, pids in held.items()
        if key[1] not in named
        and key not in hidden
        and pids
        and pids <= targets
        and not pids <= kernels
    }
    return tuple(sorted(found, key=lambda k: (k[1], k[0].value)))


def _checked(
    plan: KillPlan,
    listeners: Sequence[Listener],
    apps: Sequence[App],
    who: Who,
    hidden_proxies: Sequence[ProcessInfo],
) -> KillPlan:
    """The plan, or the plan blocked with the reasons it may not run."""
    holders = [t.process for t in plan.targets if t.holds_port]
    holders += [m.process for a in apps if a.leaked for m in a.members]
    containers = container_hints(plan.port, [*holders, *hidden_proxies])
    if containers:
        reasons = tuple(Reason(ReasonKind.CONTAINER, container=c) for c in containers)
        return replace(plan, blocked=KillStatus.REFUSED, reasons=reasons, containers=containers)
    refusals = [r for r in (refusal(t.process, who.lineage) for t in plan.targets) if r]
    refusals += [
        refusal(a.members[0].process, who.lineage)
        or Reason(ReasonKind.INHERITED, a.members[0].process)
        for a in apps
        if a.leaked
    ]
    if refusals:
        return replace(plan, blocked=KillStatus.REFUSED, reasons=tuple(refusals))
    hidden = [li for li in listeners if li.owner_hidden]
    if hidden:
        status = KillStatus.REFUSED if who.privileged else KillStatus.PERMISSION_DENIED
        return replace(plan, blocked=status, reasons=(_hidden(hidden, who.privileged),))
    if not who.privileged:
        foreign = [t.process for t in plan.targets if _foreign(t.process, who.user)]
        if foreign:
            reason = Reason(
                ReasonKind.FOREIGN, foreign[0], len(foreign) - 1, foreign[0].user, who.user
            )
            return replace(plan, blocked=KillStatus.PERMISSION_DENIED, reasons=(reason,))
    notes: list[Reason] = []
    if plan.manager is not None and plan.manager.stops_others:
        notes.append(Reason(ReasonKind.STOPS_OTHERS))
    if plan.collateral:
        notes.append(Reason(ReasonKind.COLLATERAL, ports=plan.collateral))
    return replace(plan, reasons=tuple(notes))


def refusal(info: ProcessInfo | None, lineage: frozenset[int]) -> Reason | None:
    """Why this process must never be signalled, or None."""
    if info is None:
        return None
    if info.pid in lineage:
        return Reason(ReasonKind.LINEAGE, info)
    if info.pid <= 1 or signatures.is_protected(info):
        return Reason(ReasonKind.PROTECTED, info)
    return None


def _hidden(hidden: Sequence[Listener], privileged: bool) -> Reason:
    owners = sorted({li.user or (f"uid {li.uid}" if li.uid is not None else "?") for li in hidden})
    user = " and ".join(owners) if owners != ["?"] else None
    return Reason(ReasonKind.HIDDEN, user=user, privileged=privileged)


def _foreign(info: ProcessInfo, user: str | None) -> bool:
    # An unknown owner is left to the signal-0 check before anything is sent.
    return user is not None and info.user is not None and info.user != user


def needs_consent(plan: KillPlan, allow_collateral: bool) -> bool:
    """The plan frees ports the user did not name and did not allow: ask, or refuse."""
    return bool(plan.collateral) and not allow_collateral


def refused_for_collateral(plan: KillPlan) -> KillPlan:
    return replace(plan, blocked=KillStatus.REFUSED)


def container_hints(port: int, procs: Iterable[ProcessInfo]) -> tuple[ContainerHint, ...]:
    hints: dict[tuple[str, int], ContainerHint] = {}
    for info in procs:
        proxy = managers.container_proxy(info)
        if proxy is None:
            continue
        cli = proxy["cli"]
        ip, inner = proxy["container_ip"], proxy["container_port"]
        hints[(proxy["proxy"], info.pid)] = ContainerHint(
            proxy=proxy["proxy"],
            runtime=proxy["runtime"],
            pid=info.pid if info.pid > 0 else None,
            container=f"{ip}:{inner}" if ip and inner is not None else None,
            find=f"{cli} ps --filter publish={port}",
            stop=f"{cli} stop <container>",
        )
    return tuple(hints.values())


def denied(plan: KillPlan, procs: Sequence[ProcessInfo]) -> KillPlan:
    """The plan blocked because signal 0 was refused for these targets."""
    reason = Reason(ReasonKind.DENIED, procs[0], len(procs) - 1, procs[0].user)
    return replace(plan, blocked=KillStatus.PERMISSION_DENIED, reasons=(reason,))
