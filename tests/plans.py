"""Kill plans for made-up process trees: the app model and the planner, no OS involved."""

from __future__ import annotations

from collections.abc import Mapping

from portinspect import render
from portinspect.apptree import AppModel
from portinspect.classifier import classify
from portinspect.kill.plan import Who, plan_kill
from portinspect.models import Family, KillPlan, PortKey, ProcessInfo, Proto, Snapshot, Socket


def plan_for(
    port: int,
    holders: list[ProcessInfo],
    tree: Mapping[int, ProcessInfo],
    *,
    lineage: frozenset[int] = frozenset(),
    user: str | None = None,
    privileged: bool = True,
    named: tuple[int, ...] = (),
    held: Mapping[int, frozenset[PortKey]] | None = None,
    hidden_proxies: tuple[ProcessInfo, ...] = (),
) -> KillPlan:
    """The plan for a port whose one socket `holders` hold, the app model reading `tree`
    (the holders, their ancestors and descendants). No holders: another user's socket.
    held: pid -> the listening ports it holds beyond this one (gunicorn's second bind)."""
    pids = tuple(h.pid for h in holders)
    sock = Socket(Proto.TCP, Family.IPV4, "127.0.0.1", port, uid=0, pids=pids)
    processes = {**tree, **{h.pid: h for h in holders}}
    every = {pid: frozenset({(Proto.TCP, port)}) for pid in pids}
    for pid, ports in (held or {}).items():
        every[pid] = every.get(pid, frozenset()) | ports
    snapshot = Snapshot(
        (sock,), processes, self_lineage=lineage, user_names={0: "root"}, held=every
    )
    model = AppModel(snapshot)
    listeners = classify(snapshot, model=model)
    apps = model.apps(snapshot.sockets, trees=True)
    by_port: dict[PortKey, frozenset[int]] = {}
    for pid, keys in every.items():
        for key in keys:
            by_port[key] = by_port.get(key, frozenset()) | {pid}
    return plan_kill(
        port,
        listeners,
        apps,
        who=Who(user, privileged, lineage),
        named=named,
        held=by_port,
        hidden_proxies=hidden_proxies,
    )


def reasons(plan: KillPlan) -> list[str]:
    return [render.reason_text(r, plan) for r in plan.reasons]
