"""`kill`: the plan shown before acting, a line per batch of signals, a line per outcome.

Plans and outcomes are grouped: ports whose plan is the same (one app serving 1,500 ports)
show one plan with the ports counted, and outcomes that say the same for many ports are one
line. JSON keeps one entry per port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from portinspect.models.kill import KillOutcome, KillPlan, KillStatus, KillStep, Reason, ReasonKind
from portinspect.render.common import (
    PIPE,
    Column,
    Screen,
    clean,
    command_line,
    fit_line,
    labelled,
    paint,
    pids,
    plural,
    port_list,
    spans,
    table,
    times,
    who,
    wrap,
)
from portinspect.render.who import _fold, manager_text

# A plan shows at most this many process rows per app on a terminal; JSON keeps them all.
PLAN_ROWS = 20
# PID (`*`: a top, signalled first), ROLE, HOLDS (`yes`: holds the port's socket), USER,
# COMMAND; on a narrow screen HOLDS and USER leave first, then ROLE and COMMAND are cut.
PLAN_COLUMNS = (
    Column("PID"),
    Column("ROLE", give=2, least=8),
    Column("HOLDS", give=1),
    Column("USER", give=1),
    Column("COMMAND", give=2, least=16, middle=True),
)


def describe_ladder(timeout: float, signum: int, *, force: bool, windows: bool) -> str:
    """The escalation, in words, for the plan shown before acting."""
    if windows:
        return "terminate the top process(es) (*), then the rest of the tree, then re-scan"
    name = signal_name(signum)
    if force:
        return "SIGKILL the top process(es) (*), then the rest of the tree, then re-scan"
    return (
        f"{name} the top process(es) (*); once they exit or after {timeout / 2:g}s, "
        f"{name} the rest of the tree; SIGKILL what is left after {timeout:g}s; re-scan"
    )


def signal_name(signum: int | None) -> str:
    import signal

    if signum is None:
        return "terminate"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _what(plan: KillPlan) -> str:
    what = clean(plan.framework or plan.server or "")
    if plan.server and plan.framework and plan.server != plan.framework:
        what = f"{clean(plan.framework)} ({clean(plan.server)})"
    return what


def _ports_head(ports: Sequence[int]) -> str:
    if len(ports) == 1:
        return f"port {ports[0]}"
    return f"ports {spans(ports)} ({len(ports)} ports)"


def kill_plan(plan: KillPlan, how: str, screen: Screen = PIPE, ports: Sequence[int] = ()) -> str:
    """The plan for one port (or for `ports`, which share it): per app, its processes (top
    first, identical siblings folded), what else the plan touches, and what will be sent."""
    ports = ports or [plan.port]
    what = _what(plan)
    head = _ports_head(ports) + (f": {what}" if what else "")
    if plan.blocked is not None:
        text = f"{head}: {plan.blocked}: " + "; ".join(reason_text(r, plan) for r in plan.reasons)
        return "\n".join(wrap(text, screen.width, indent="  "))
    inner = Screen(None if screen.width is None else screen.width - 2, screen.color)
    drawn = table(PLAN_COLUMNS, _plan_rows(plan), inner)
    body = ["  " + line for line in drawn.text.splitlines()]
    notes = [reason_text(r, plan) for r in plan.reasons]
    if plan.manager is not None and plan.managed:
        notes.append(f"managed by {manager_text(plan.manager)}")
    lines = [*wrap(f"{head}, {plural(len(plan.targets), 'process', 'processes')}", screen.width)]
    lines += body
    for note in notes:
        lines += labelled("note", note, screen, pad=6)
    lines += labelled("plan", how, screen, pad=6)
    return "\n".join(fit_line(line, screen.width) for line in lines)


def _plan_rows(plan: KillPlan) -> list[list[str]]:
    roles = {t.process.pid: t for t in plan.targets}
    rows: list[list[str]] = []
    for app in plan.apps:
        if app.leaked:
            continue
        members = [m for m in app.members if m.process.pid in roles]
        folded = _fold(members)
        for member, more in folded[:PLAN_ROWS]:
            target = roles[member.process.pid]
            role = target.role.value if target.role else ""
            if more:  # identical siblings: `worker ×4` is this one and three more like it
                role = f"{role} {times(more + 1)}".strip()
            holds = "yes" if target.holds_port else ""
            command = command_line(member.process.cmdline, short=True)
            pid = f"{member.process.pid}{' *' if target.top else ''}"
            rows.append([pid, role, holds, clean(member.process.user) or "?", command])
        if len(folded) > PLAN_ROWS:
            rest = sum(1 + more for _, more in folded[PLAN_ROWS:])
            rows.append(["...", f"{rest} more", "", "", "(--json lists every process)"])
    return rows


def kill_plans(outcomes: Sequence[KillOutcome], how: str, screen: Screen = PIPE) -> str:
    """The plans of a dry run, ports with the same plan (the same processes, the same
    verdict) shown once with their count."""
    groups: dict[tuple[object, ...], list[KillOutcome]] = {}
    for outcome in outcomes:
        plan = outcome.plan
        words = "; ".join(reason_text(r, plan) for r in plan.reasons)
        key = (plan.blocked, plan.pids, plan.framework, plan.server, _same_words(plan.port, words))
        groups.setdefault(key, []).append(outcome)
    return "\n".join(
        kill_plan(group[0].plan, how, screen, ports=[o.port for o in group])
        for group in groups.values()
    )


def kill_step(port: int, step: KillStep) -> str:
    """A progress line, as each batch of signals goes out."""
    return f"port {port}: {step.signal} -> {pids(step.pids)} ({step.scope}) at {step.at:.2f}s"


def reason_text(reason: Reason, plan: KillPlan) -> str:
    """One reason, in words."""
    port = plan.port
    proc = reason.process
    kind = reason.kind
    if kind is ReasonKind.NOT_LISTENING:
        return f"nothing is listening on port {port}"
    if kind is ReasonKind.LINEAGE:
        return (
            f"{who(proc)} is this portinspect or one of its ancestors (your shell, terminal, "
            "IDE, or the server hosting them); stop it from there"
        )
    if kind is ReasonKind.PROTECTED:
        return (
            f"{who(proc)} is protected: init, sshd, dockerd/containerd and system services "
            "are never signalled"
        )
    if kind is ReasonKind.INHERITED:
        return (
            f"{who(proc)} also holds port {port}: a shell, terminal, multiplexer or manager "
            "that inherited the socket (a leaked descriptor); portinspect never signals it, "
            "so the port stays held until it closes the descriptor or exits"
        )
    if kind is ReasonKind.CONTAINER and reason.container is not None:
        hint = reason.container
        pid = f" (pid {hint.pid})" if hint.pid is not None else ""
        to = f" to {hint.container}" if hint.container else ""
        return (
            f"port {port} is published by a container: {hint.proxy}{pid} forwards it{to}; "
            f"killing the proxy would only break the mapping. Find the container with "
            f"`{hint.find}` and stop it with `{hint.stop}`"
        )
    if kind is ReasonKind.HIDDEN:
        if reason.privileged:
            return (
                f"port {port} has no visible owner (a kernel socket, or a process in another "
                "pid namespace); nothing was signalled"
            )
        owner = clean(reason.user) or "another user"
        return f"port {port} belongs to {owner}; run with sudo (nothing was signalled)"
    if kind is ReasonKind.FOREIGN:
        more = f" and {reason.more} more" if reason.more else ""
        owner = clean(reason.user) or "another user"
        mine = f", not {clean(reason.me)}" if reason.me else ""
        return (
            f"port {port}: {who(proc)}{more} belongs to {owner}{mine}; run with sudo "
            "(nothing was signalled)"
        )
    if kind is ReasonKind.DENIED:
        more = f" and {reason.more} more" if reason.more else ""
        return f"port {port}: {who(proc)}{more}: permission denied; run with sudo"
    if kind is ReasonKind.COLLATERAL:
        listed = port_list(reason.ports)
        return (
            f"freeing port {port} also frees {listed}: the same processes serve "
            f"{'it' if len(reason.ports) == 1 else 'them'}; name "
            f"{'it' if len(reason.ports) == 1 else 'them'} too or pass --all-ports"
        )
    if kind is ReasonKind.STOPS_OTHERS and plan.manager is not None:
        manager = plan.manager
        by = f" (pid {manager.pid})" if manager.pid is not None else ""
        return f"{manager.kind}{by} stops every other service it runs when this one exits"
    return str(kind)


def _named(plan: KillPlan, numbers: Sequence[int]) -> str:
    roles = {t.process.pid: t.role for t in plan.targets}
    named = [f"{pid} ({roles[pid]})" if roles.get(pid) else str(pid) for pid in numbers[:12]]
    more = f" and {len(numbers) - 12} more" if len(numbers) > 12 else ""
    return ("pid " if len(numbers) == 1 else "pids ") + ", ".join(named) + more


def _sent(outcome: KillOutcome) -> str:
    return "; ".join(
        f"{s.signal} to {_named(outcome.plan, s.pids)} at {s.at:.2f}s" for s in outcome.steps
    )


def kill_message(outcome: KillOutcome) -> str:
    """One line: what happened to the port, or what to do next."""
    plan, port, status = outcome.plan, outcome.port, outcome.status
    if status in (KillStatus.NOT_LISTENING, KillStatus.REFUSED, KillStatus.PERMISSION_DENIED):
        return "; ".join(reason_text(r, plan) for r in plan.reasons) or str(status)
    if status is KillStatus.DRY_RUN:
        return f"port {port}: dry run, would signal {pids(plan.pids)}; nothing was sent"
    if status is KillStatus.DECLINED:
        return f"port {port}: not confirmed; nothing was signalled"
    if status is KillStatus.INTERRUPTED:
        sent = _sent(outcome)
        what = (
            f"interrupted after {sent}; nothing more was sent"
            if sent
            else "interrupted before anything was signalled"
        )
        state = "the port is free" if outcome.free else "the port is still held"
        return f"port {port}: {what}; {state}"
    if status is KillStatus.FREED:
        return _freed(outcome)
    if status is KillStatus.MANAGED:
        return _managed(outcome)
    return _held(outcome)


def _freed(outcome: KillOutcome) -> str:
    took = f"{outcome.freed_after:.2f}s" if outcome.freed_after is not None else "an instant"
    sent = _sent(outcome)
    if not outcome.steps:
        return f"port {outcome.port} is free (it closed while other ports were handled)"
    text = f"port {outcome.port} freed in {took}: {sent}"
    if outcome.plan.collateral:
        text += f"; also freed {port_list(outcome.plan.collateral)}"
    if outcome.survivors:
        text += f"; {pids(outcome.survivors)} still running but no longer holding the port"
    if outcome.watched:
        text += f"; no respawn in {outcome.watched:.1f}s"
    return text


def _managed(outcome: KillOutcome) -> str:
    manager = outcome.plan.manager
    assert manager is not None
    by = f" (pid {manager.pid})" if manager.pid is not None else ""
    sent = _sent(outcome)
    if outcome.respawned:
        after = "it was freed, then " if outcome.freed_after is not None else ""
        happened = f"{after}{manager.kind} started it again as {pids(outcome.respawned)}"
    elif outcome.free:
        happened = f"it is free for now, but {manager.kind} restarts what it runs"
    else:
        happened = "it is still held after the graceful step"
    stop = (
        f"stop it with `{clean(manager.stop)}`"
        if manager.stop
        else f"stop it through {manager.kind}"
    )
    return (
        f"port {outcome.port} is managed by {manager.kind}{by}: {sent or 'nothing was sent'}; "
        f"{happened}; {stop}"
    )


def _held(outcome: KillOutcome) -> str:
    respawned = set(outcome.respawned)
    signalled = set(outcome.signalled)
    last_kill = bool(outcome.steps) and outcome.steps[-1].signal == "SIGKILL"
    parts = []
    for info in outcome.holders:
        text = who(info)
        if info.pid in respawned:
            text += " (appeared after the first signal)"
        elif info.pid in signalled and last_kill:
            text += " (survived SIGKILL)"
        parts.append(text)
    holders = ", ".join(parts) if parts else "a process we cannot see"
    text = f"port {outcome.port} is still held by {holders}"
    notes = [reason_text(r, outcome.plan) for r in outcome.notes]
    if notes:
        text += "; " + "; ".join(dict.fromkeys(notes))
    return text


def kill_outcome(outcome: KillOutcome) -> str:
    text = kill_message(outcome)
    # Messages that already name the port ("nothing is listening on port 8000") stand alone.
    return text if re.search(rf"\bport {outcome.port}\b", text) else f"port {outcome.port}: {text}"


def _same_words(port: int, text: str) -> str:
    """text with its port number taken out, so that outcomes saying the same of different
    ports compare equal."""
    return re.sub(rf"\bport {port}\b", "port {port}", text)


_ALIKE = {
    # One app's other ports, freed with the first: said once, with the count.
    "port {port} is free (it closed while other ports were handled)": (
        "{ports} are free too: they closed while other ports were handled"
    ),
}


def kill_outcomes(outcomes: Sequence[KillOutcome], screen: Screen = PIPE) -> str:
    """One line per outcome, outcomes that say the same of several ports on one line."""
    groups: dict[str, list[KillOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(_same_words(outcome.port, kill_outcome(outcome)), []).append(outcome)
    lines = []
    for words, group in groups.items():
        if len(group) == 1:
            text = kill_outcome(group[0])
        else:
            ports = _ports_head([o.port for o in group])
            template = _ALIKE.get(words)
            if template is not None:
                text = template.format(ports=ports)
            else:
                text = f"{ports}, each: " + words.replace("port {port}", "the port")
        style = _STATUS_STYLE.get(group[0].status)
        lines += [paint(line, style, screen) for line in wrap(text, screen.width, indent="  ")]
    return "\n".join(lines)


_STATUS_STYLE = {
    KillStatus.FREED: "green",
    KillStatus.STILL_HELD: "red",
    KillStatus.MANAGED: "yellow",
    KillStatus.REFUSED: "yellow",
    KillStatus.PERMISSION_DENIED: "yellow",
}


def kill_error(
    report_status: int, failed: Sequence[KillOutcome], empty: Sequence[tuple[int, int]]
) -> str | None:
    """One line for stderr when a kill did not free everything asked: the one reason, or the
    ports counted by status."""
    if report_status == 0:
        return None
    texts = [o.message or kill_message(o) for o in failed]
    texts += [f"nothing is listening on port {lo}-{hi}" for lo, hi in empty]
    if len(texts) == 1:
        return texts[0]
    by_status: dict[str, list[int]] = {}
    for o in failed:
        by_status.setdefault(str(o.status), []).append(o.port)
    parts = [f"{spans(ports)} ({status})" for status, ports in by_status.items()]
    parts += [f"{lo}-{hi} (not-listening)" for lo, hi in empty]
    count = len(failed) + len(empty)
    return f"{count} ports not freed: " + ", ".join(parts)


def interrupted_message(outcomes: Sequence[KillOutcome], pending: Sequence[int]) -> str:
    """One line for stderr: what the interrupted port had been sent, the ports not tried."""
    parts = [o.message or kill_message(o) for o in outcomes if o.status is KillStatus.INTERRUPTED]
    if pending:
        more = ", ..." if len(pending) > 8 else ""
        parts.append(f"not attempted: port {', '.join(map(str, pending[:8]))}{more}")
    return "; ".join(parts) or "interrupted"
