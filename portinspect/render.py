"""Listeners and results -> text. Pure functions returning strings; nothing here prints.

Every string that came from another process (command lines, cwd, names) goes through
`clean()` before it reaches a terminal: a hostile process title must not be able to
move the cursor, recolour the screen or break a row in two.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from portinspect.models import (
    App,
    KillOutcome,
    KillPlan,
    KillStatus,
    KillStep,
    Listener,
    Manager,
    Member,
    PortKey,
    PortView,
    ProcessInfo,
    Reason,
    ReasonKind,
    RunEvent,
    ServerReport,
    Stop,
    TargetReport,
    Teardown,
    WaitResult,
    WaitTarget,
)

if TYPE_CHECKING:
    from portinspect.audit import Finding, Level

SCHEMA_VERSION = 1
CMDLINE_WIDTH = 60

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# Bidi overrides and isolates reorder what follows them on screen; show them escaped.
_CONTROL.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})  # C1 controls (CSI = 0x9b)
# The marks that reorder neutral text (ALM, LRM, RLM), and the Unicode line and paragraph
# separators, which str.splitlines() and some terminals take for a new line.
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)})
# A byte that was not UTF-8 in a command line or cwd arrives as a lone surrogate
# (surrogateescape): written raw, 0x9b alone is CSI to a terminal in a legacy encoding.
_CONTROL.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})
_CONTROL.update({c: f"\\u{c:04x}" for c in (*range(0xD800, 0xDC80), *range(0xDD00, 0xE000))})


def clean(text: str | None, width: int | None = None) -> str:
    """One printable line: control characters escaped, optionally cut to width."""
    if not text:
        return ""
    out = text.translate(_CONTROL)
    if width is not None and len(out) > width:
        out = out[: width - 1] + "…"
    return out


def command_line(argv: Sequence[str], width: int | None = CMDLINE_WIDTH) -> str:
    # setproctitle pads titles with empty strings; they carry nothing.
    return clean(" ".join(a for a in argv if a), width)


def uptime(started: float | None, now: float | None = None) -> str:
    if started is None:
        return "?"
    seconds = max(0, int((now if now is not None else time.time()) - started))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def program(listener: Listener) -> str:
    """What serves the port, in a few words: 'django (runserver)', 'http.server', 'nginx'."""
    if listener.owner_hidden:
        return "(owner hidden)"
    name = clean(listener.process) or "?"
    if listener.framework and listener.server and listener.framework != listener.server:
        return f"{listener.framework} ({listener.server})"
    return listener.framework or listener.server or name


def _pid_cell(listener: Listener) -> str:
    if listener.pid is None:
        return "-"
    extra = len(listener.holders) - 1
    return f"{listener.pid} +{extra}" if extra else str(listener.pid)


def _range_cell(listener: Listener) -> str:
    return f"{listener.range}, ephemeral" if listener.ephemeral else str(listener.range)


LIST_COLUMNS = ("PORT", "PROTO", "ADDRESS", "PID", "PROGRAM", "USER", "RANGE", "SERVICE")


def _list_row(listener: Listener) -> tuple[str, ...]:
    address = clean(listener.address) + (" *" if listener.exposed else "")
    return (
        str(listener.port),
        listener.proto.value,
        address,
        _pid_cell(listener),
        program(listener),
        clean(listener.user) or "?",
        _range_cell(listener),
        listener.service or "",
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    # tabulate is imported here, not at module load: `free` and `wait` never draw a table.
    from tabulate import tabulate

    # disable_numparse: ports stay text, and tabulate is 2.5x faster without number sniffing.
    return tabulate(list(rows), headers=list(headers), tablefmt="simple", disable_numparse=True)


def list_table(
    listeners: Sequence[Listener], risks: Mapping[tuple[str, int], str] | None = None
) -> str:
    """risks: (proto, port) -> audit level, for `list --risk`'s extra column."""
    if not listeners:
        return "No listening sockets match."
    if risks is not None:
        rows = ((*_list_row(li), risks.get((li.proto.value, li.port), "-")) for li in listeners)
        body = table((*LIST_COLUMNS, "RISK"), rows)
    else:
        body = table(LIST_COLUMNS, (_list_row(li) for li in listeners))
    legend = "* = exposed beyond this machine (wildcard or non-loopback address)"
    return f"{body}\n\n{legend}" if any(li.exposed for li in listeners) else body


# ---------------------------------------------------------------------------------------
# who: the port, the apps behind it, their trees, and how to stop them
# ---------------------------------------------------------------------------------------

# A tree shows at most this many process lines per app; JSON keeps every process.
TREE_LINES = 20


def who(info: ProcessInfo | None) -> str:
    """'pid 42 (uvicorn)'."""
    if info is None:
        return "an unknown process"
    argv = [a for a in info.cmdline if a]
    name = info.name or (PurePath(argv[0]).name if argv else "")
    return f"pid {info.pid} ({clean(name, 40)})" if name else f"pid {info.pid}"


def _fold(members: Sequence[Member]) -> list[tuple[Member, int]]:
    """Members with identical siblings folded: (member, how many more like it)."""
    shown: list[tuple[Member, int]] = []
    index: dict[tuple[int | None, str | None, tuple[str, ...]], int] = {}
    for member in members:
        info = member.process
        key = (info.ppid, member.role, tuple(a for a in info.cmdline if a))
        if key in index and member.depth > 0:
            first, more = shown[index[key]]
            shown[index[key]] = (first, more + 1)
            continue
        index[key] = len(shown)
        shown.append((member, 0))
    return shown


def tree_lines(app: App, *, limit: int | None = TREE_LINES) -> list[str]:
    """The app as a tree: the boundary above it, the top, its descendants with proper
    branches; identical siblings folded, at most `limit` lines."""
    lines: list[str] = []
    above = app.boundary.process
    if above is not None and app.boundary.role is not None:
        lines.append(f"{above.pid} {app.boundary.role.value:<16} {command_line(above.cmdline)}")
    pids = {m.process.pid for m in app.members}
    children: dict[int, list[tuple[Member, int]]] = {}
    folded = _fold(app.members)
    for member, more in folded[1:]:
        parent = member.process.ppid
        children.setdefault(parent if parent in pids else app.top, []).append((member, more))

    def line(member: Member, more: int, prefix: str, branch: str) -> str:
        role = member.role.value if member.role is not None else ""
        mark = " [holds port]" if member.holds else ""
        extra = f"  ... and {more} more like pid {member.process.pid}" if more else ""
        text = f"{member.process.pid} {role:<16} {command_line(member.process.cmdline)}"
        return f"{prefix}{branch}{text}{mark}{extra}".rstrip()

    def walk(pid: int, prefix: str) -> None:
        kids = children.get(pid, [])
        for i, (member, more) in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(line(member, more, prefix, "└─ " if last else "├─ "))
            walk(member.process.pid, prefix + ("   " if last else "│  "))

    top, _ = folded[0]
    lines.append(line(top, 0, "└─ " if lines else "", ""))
    walk(app.top, "   " if len(lines) > 1 else "")
    for other in app.others:
        lines.append(
            f"   (not part of it: {other.process.pid} {command_line(other.process.cmdline)},"
            " serves ports of its own)"
        )
    if limit is not None and len(lines) > limit:
        hidden = len(lines) - (limit - 1)
        lines = [*lines[: limit - 1], f"... {hidden} more lines (--json lists every process)"]
    return lines


def stop_advice(view: PortView, udp_only: bool) -> str:
    """How to free the port: the kill command, or the manager's own stop command."""
    port = view.port
    command = f"portinspect kill {'--udp ' if udp_only else ''}{port}"
    apps = [a for a in view.apps if not a.leaked]
    leaked = [a for a in view.apps if a.leaked]
    if leaked:
        holder = who(leaked[0].members[0].process)
        return (
            f"not with portinspect: {holder} holds an inherited copy of the socket and is never "
            "signalled; the port stays held until it closes that copy or exits"
        )
    if not apps:
        return ""
    manager = next((a.manager for a in apps if a.manager is not None), None)
    if manager is not None and manager.restarts is not False:
        how = f"`{clean(manager.stop)}`" if manager.stop else f"through {manager.kind}"
        by = f" (pid {manager.pid})" if manager.pid is not None else ""
        return (
            f"{how}   ({manager.kind}{by} runs it and would restart it; "
            f"`{command}` stops after the graceful step)"
        )
    tops = ", ".join(f"pid {a.top}" for a in apps)
    text = f"{command}   (SIGTERM to {tops}, the app's top process, then verifies the port is free)"
    if manager is not None and manager.stops_others:
        by = f" (pid {manager.pid})" if manager.pid is not None else ""
        text += f"; note: {manager.kind}{by} stops every other service it runs when this one exits"
    return text


def who_report(view: PortView, now: float | None = None) -> str:
    """The human diagnosis of one port: sockets, apps, trees, and how to stop them."""
    listeners = view.listeners
    first = listeners[0]
    facts = [first.range.value, "ephemeral range" if first.ephemeral else "not ephemeral"]
    if first.service:
        facts.append(f"IANA service {first.service}")
    lines = [f"Port {view.port}: {', '.join(facts)}"]
    for li in listeners:
        reach = "EXPOSED beyond this machine" if li.exposed else "loopback only"
        lines.append(f"  {li.proto.value} {li.family.value} {clean(li.endpoint)}  ({reach})")
    for app in view.apps:
        lines.append("")
        lines.extend(_app_section(view, app, now))
    hidden = [li for li in listeners if li.owner_hidden]
    if hidden:
        lines.append("")
        lines.extend(_hidden_section(hidden, view.snapshot.privileged))
    advice = stop_advice(view, udp_only=all(li.proto.value == "udp" for li in listeners))
    if advice:
        lines.append(f"  stop it:   {advice}")
    return "\n".join(lines)


def _hidden_section(hidden: Sequence[Listener], privileged: bool) -> list[str]:
    owner = clean(hidden[0].user) or "another user"
    if privileged:
        return [
            f"  owner:     not visible from here (belongs to {owner}): a kernel socket, or a "
            "process in another pid namespace or container",
        ]
    return [
        f"  owner:     hidden (the socket belongs to {owner})",
        f"  next:      run `sudo portinspect who {hidden[0].port}` to see the process",
    ]


def _app_section(view: PortView, app: App, now: float | None) -> list[str]:
    top = app.members[0].process
    if app.leaked:
        return [
            f"  also held: {who(top)}, which inherited the socket (a leaked descriptor in a "
            "shell, terminal, multiplexer or manager); kill never signals it",
        ]
    what = _program(app)
    holders = ", ".join(
        f"{m.process.pid} ({m.role.value if m.role else 'holder'})" for m in app.holders[:8]
    )
    if len(app.holders) > 8:
        holders += f" and {len(app.holders) - 8} more"
    primary = app.holders[0].process if app.holders else top
    lines = [
        f"  program:   {what}",
        f"  app top:   pid {app.top}"
        + (f" ({app.members[0].role.value})" if app.members[0].role else "")
        + f", up {uptime(top.create_time, now)}",
        f"  holders:   {holders}",
        f"  user:      {clean(primary.user) or '?'}",
        f"  cwd:       {clean(primary.cwd) or '? (needs root)'}",
        f"  command:   {command_line(primary.cmdline, None)}",
        f"  runs under: {_boundary_text(app)}",
    ]
    if app.manager is not None:
        lines.append(f"  manager:   {_manager_text(app.manager)}")
    lines.append("  app tree:")
    lines.extend("    " + line for line in tree_lines(app))
    return lines


def _program(app: App) -> str:
    if app.framework and app.server and app.framework != app.server:
        return f"{clean(app.framework)} ({clean(app.server)})"
    return clean(app.framework or app.server) or clean(app.members[0].process.name) or "?"


_STOP_WORDS = {
    Stop.INIT: "init (started as a daemon, or its parent exited)",
    Stop.LINEAGE: "{who}, which runs this portinspect",
    Stop.PROTECTED: "{who}, a system service",
    Stop.MANAGER: "{who}, a process manager",
    Stop.BOUNDARY: "{who}, a shell, terminal or editor",
    Stop.SERVES_OTHER_PORTS: "{who}, which serves {ports} itself: not part of this app",
    Stop.RUNS_OTHER_SERVICES: "{who}, which also runs services on {ports}: not part of this app",
    Stop.UNRELATED: "{who}, which is not part of the app",
    Stop.HIDDEN: "a parent we cannot see",
}


def _ports(keys: Sequence[PortKey], limit: int = 6) -> str:
    numbers = sorted({port for _, port in keys})
    text = ", ".join(map(str, numbers[:limit]))
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return ("port " if len(numbers) == 1 else "ports ") + text + more


def _boundary_text(app: App) -> str:
    boundary = app.boundary
    return _STOP_WORDS[boundary.stop].format(
        who=who(boundary.process), ports=_ports(boundary.ports)
    )


def _manager_text(manager: Manager) -> str:
    by = f" (pid {manager.pid})" if manager.pid is not None else ""
    service = f", service {clean(manager.service)}" if manager.service else ""
    if manager.restarts is True:
        does = "restarts it when it exits"
    elif manager.restarts is None:
        does = "may restart it, depending on its configuration"
    else:
        does = "does not restart it"
    if manager.stops_others:
        does += "; stops every other service it runs when this one exits"
    stop = f"; stop it with `{clean(manager.stop)}`" if manager.stop else ""
    return f"{manager.kind}{by}{service}: {does}{stop}"


def process_dict(info: ProcessInfo) -> dict[str, Any]:
    return {
        "pid": info.pid,
        "ppid": info.ppid,
        "process": info.name,
        "user": info.user,
        "cmdline": list(info.cmdline),
        "cwd": info.cwd,
        "started": info.create_time,
    }


def envelope(command: str, exit_code: int, payload: Mapping[str, Any], **extra: Any) -> str:
    """The one JSON document a command prints with --json (success or failure alike).

    One field per line, and one line per item of a list (a listener, an app): readable and
    greppable, and the C encoder does all the work. json.dumps(indent=...) falls back to the
    pure-Python encoder: 130 ms and +30 MB of peak memory for 5500 listeners, against 35 ms.
    """
    import json  # here, not at module load: only --json needs it

    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "command": command,
        "ok": exit_code == 0,
        "exit_code": exit_code,
    }
    doc.update(payload)
    doc.update(extra)
    encode = json.JSONEncoder(ensure_ascii=False).encode
    fields = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n".join("    " + encode(item) for item in value)
            fields.append(f"  {encode(key)}: [\n{items}\n  ]")
        else:
            fields.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(fields) + "\n}"


def app_json(app: App) -> dict[str, Any]:
    """One app of `who --json` and `kill --json`: every process, never folded."""
    return {
        "app_pid": app.top,
        "framework": app.framework,
        "server": app.server,
        "leaked": app.leaked,
        "ports": [{"proto": proto.value, "port": port} for proto, port in sorted(app.ports)],
        "boundary": app.boundary.to_dict(),
        "manager": app.manager.to_dict() if app.manager else None,
        "tree": [
            {
                **process_dict(m.process),
                "role": m.role.value if m.role else None,
                "holds_port": m.holds,
            }
            for m in app.members
        ],
        "others": [process_dict(m.process) for m in app.others],
    }


# ---------------------------------------------------------------------------------------
# kill: the plan shown before acting, a line per batch of signals, a line per outcome
# ---------------------------------------------------------------------------------------

PLAN_COLUMNS = ("PID", "ROLE", "USER", "COMMAND")
# A plan shows at most this many process rows per app on a terminal; JSON keeps them all.
PLAN_ROWS = 20


def pids(numbers: Sequence[int], limit: int = 12) -> str:
    """'pid 42' or 'pids 42, 43' (and 'and N more' past `limit`)."""
    shown = ", ".join(map(str, numbers[:limit]))
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return ("pid " if len(numbers) == 1 else "pids ") + shown + more


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


def _plan_head(plan: KillPlan) -> str:
    what = clean(plan.framework or plan.server or "")
    if plan.server and plan.framework and plan.server != plan.framework:
        what = f"{clean(plan.framework)} ({clean(plan.server)})"
    return f"port {plan.port}" + (f": {what}" if what else "")


def kill_plan(plan: KillPlan, how: str) -> str:
    """The plan for one port: per app, its processes (top first, identical siblings folded),
    what else the plan touches, and what will be sent."""
    head = _plan_head(plan)
    if plan.blocked is not None:
        return f"{head}: {plan.blocked}: " + "; ".join(reason_text(r, plan) for r in plan.reasons)
    roles = {t.process.pid: t for t in plan.targets}
    rows: list[tuple[str, str, str, str]] = []
    for app in plan.apps:
        if app.leaked:
            continue
        members = [m for m in app.members if m.process.pid in roles]
        folded = _fold(members)
        for member, more in folded[:PLAN_ROWS]:
            target = roles[member.process.pid]
            role = (target.role.value if target.role else "") + (
                " [holds port]" if target.holds_port else ""
            )
            command = command_line(member.process.cmdline)
            if more:
                command += f"  (and {more} more like it)"
            rows.append(
                (
                    f"{member.process.pid}{' *' if target.top else ''}",
                    role,
                    clean(member.process.user) or "?",
                    command,
                )
            )
        if len(folded) > PLAN_ROWS:
            rest = sum(1 + more for _, more in folded[PLAN_ROWS:])
            rows.append(("...", f"{rest} more", "", "(--json lists every process)"))
    drawn = table(PLAN_COLUMNS, rows)
    body = "\n".join("  " + line for line in drawn.splitlines())
    notes = [f"  note: {reason_text(r, plan)}" for r in plan.reasons]
    if plan.manager is not None and plan.managed:
        notes.append(f"  note: managed by {_manager_text(plan.manager)}")
    count = len(plan.targets)
    return "\n".join([f"{head}, {count} process(es)", body, *notes, f"  plan: {how}"])


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
        listed = _ports(reason.ports)
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
        text += f"; also freed {_ports(outcome.plan.collateral)}"
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


# --- wait -------------------------------------------------------------------------------------

_WAIT_LISTED = 8  # targets named one by one; beyond, a count


def _targets_text(targets: Sequence[WaitTarget]) -> str:
    if all(t.host is None for t in targets):  # bare ports, worded as they always were
        if len(targets) > _WAIT_LISTED:
            return f"{len(targets)} ports"
        return "port " + ", ".join(str(t.port) for t in targets)
    if len(targets) > _WAIT_LISTED:
        return f"{len(targets)} targets"
    return ", ".join(map(str, targets))


def _condition(targets: Sequence[WaitTarget], free: bool) -> str:
    bare = all(t.host is None for t in targets)
    return "free" if free else "listening" if bare else "ready"


def wait_start(targets: Sequence[WaitTarget], timeout: float | None, *, free: bool) -> str:
    """The line `wait` starts with: what it waits for, and how long at most."""
    limit = "without a time limit" if timeout is None else f"up to {timeout:g}s"
    return clean(f"waiting {limit} for {_targets_text(targets)} to be {_condition(targets, free)}")


def wait_progress(report: TargetReport) -> str | None:
    """A progress line when a target's reason for not being ready is worth telling: a probe's
    failure (cannot resolve, refused, HTTP 503), or a listener on another address. The plain
    "not listening" (or, with --free, "still listening") is what the start line said."""
    error = report.error
    if report.ready or error is None or error == "not listening" or error.startswith("still "):
        return None
    return clean(f"{report.target}: not ready yet: {error}")


def _how(report: TargetReport) -> str:
    """What decided, for a person: `socket table`, `resolve, connect at 10.0.0.2`, `HTTP 200`."""
    steps = [step.replace("-", " ") for step in report.via]
    if report.http_status is not None:
        steps[-1] = f"HTTP {report.http_status}"
    elsewhere = report.address is not None and report.address != report.target.host
    return ", ".join(steps) + (f" at {report.address}" if elsewhere else "")


def wait_done(result: WaitResult) -> str:
    """What `wait` prints when every target is ready (or free): bare ports on one line, as
    always (`port 8000 listening after 0.42s`); other targets one per line, with what decided."""
    targets = [r.target for r in result.targets]
    state = _condition(targets, result.free)
    if all(t.host is None for t in targets) or len(targets) > _WAIT_LISTED:
        return f"{_targets_text(targets)} {state} after {result.elapsed:.2f}s"
    return "\n".join(
        clean(f"{r.target} {state} after {r.ready_after or 0.0:.2f}s ({_how(r)})")
        for r in result.targets
    )


def kill_json(outcome: KillOutcome) -> dict[str, Any]:
    """One port of `kill --json`: the outcome's data, its words, and the apps behind it."""
    plan = outcome.plan
    return {
        **outcome.to_dict(),
        "message": outcome.message or kill_message(outcome),
        "reasons": [reason_text(r, plan) for r in outcome.reasons],
        "apps": [app_json(app) for app in plan.apps],
    }


def kill_error(
    report_status: int, failed: Sequence[KillOutcome], empty: Sequence[tuple[int, int]]
) -> str | None:
    """One line for stderr when a kill did not free everything asked."""
    if report_status == 0:
        return None
    texts = [o.message or kill_message(o) for o in failed]
    texts += [f"nothing is listening on port {lo}-{hi}" for lo, hi in empty]
    if len(texts) == 1:
        return texts[0]
    parts = [f"{o.port} ({o.status})" for o in failed]
    parts += [f"{lo}-{hi} (not-listening)" for lo, hi in empty]
    return f"{len(parts)} ports not freed: " + ", ".join(parts)


def interrupted_message(outcomes: Sequence[KillOutcome], pending: Sequence[int]) -> str:
    """One line for stderr: what the interrupted port had been sent, the ports not tried."""
    parts = [o.message or kill_message(o) for o in outcomes if o.status is KillStatus.INTERRUPTED]
    if pending:
        more = ", ..." if len(pending) > 8 else ""
        parts.append(f"not attempted: port {', '.join(map(str, pending[:8]))}{more}")
    return "; ".join(parts) or "interrupted"


# ---------------------------------------------------------------------------------------
# audit: one block per way in, worst first; the verdict line `who` shows for its port
# ---------------------------------------------------------------------------------------

_LABEL = 11  # "reachable: " and the other labels line up at this width
_LEVEL_ORDER = ("critical", "high", "medium", "info")  # audit.LEVELS, without importing audit


def _labelled(label: str, values: Sequence[str]) -> list[str]:
    lines = []
    for i, value in enumerate(values):
        head = f"{label}:" if i == 0 and label else ""
        lines.append(f"  {head:<{_LABEL}}{value}")
    return lines


def _finding_head(f: Finding) -> str:
    where = "(port unknown)"
    if f.port is not None:
        host = f.address or "localhost"
        host = f"[{host}]" if ":" in host else host
        where = f"{f.proto.value if f.proto else 'tcp'} {clean(host)}:{f.port}"
    who = []
    if f.framework or f.server:
        pair = (f.framework, f.server)
        shown = f"{pair[0]} ({pair[1]})" if all(pair) and pair[0] != pair[1] else pair[0] or pair[1]
        who.append(clean(shown))
    elif f.program:
        who.append(clean(f.program))
    if f.pid is not None:
        who.append(f"pid {f.pid}")
    if f.user:
        who.append(clean(f.user))
    tail = f"  [{', '.join(who)}]" if who else ""
    return f"{f.level.value.upper():<9}{where}  {clean(f.what)}{tail}"


def _via_line(f: Finding) -> str:
    via = f.via
    assert via is not None
    if via.kind == "container":
        inside = f" -> {clean(via.container)}" if via.container else ""
        return f"container: {clean(via.program)} (pid {via.pid}){inside}"
    command = command_line(via.command, None) if via.command else clean(via.kind)
    where = f" -> {clean(via.public)}" if via.public else ""
    return f"{clean(via.kind)} tunnel, pid {via.pid}: {command}{where}"


def finding_lines(f: Finding) -> list[str]:
    """One finding as a block: head line, then labelled facts."""
    lines = [_finding_head(f)]
    lines += _labelled("why", [clean(f.reason)])
    lines += _labelled("evidence", [clean(e) for e in f.evidence])
    lines += _labelled("unknown", [clean(u) for u in f.unknown])
    if f.reachable_on:
        reach = [f"{clean(a.address)} ({clean(a.interface)})" for a in f.reachable_on]
        lines += _labelled("reachable", [", ".join(reach)])
    elif f.exposure == "network":
        lines += _labelled("reachable", ["no other interface is up now: any that comes up"])
    if f.via is not None:
        lines += _labelled("via", [_via_line(f)])
    if f.probe is not None and f.probed is not None:
        lines += _labelled("probe", [f"{clean(f.probe.url)}: {clean(f.probed)}"])
    lines += _labelled("fix", [clean(f.fix)])
    return lines


def audit_report(
    findings: Sequence[Finding],
    fail_on: Level,
    *,
    failing: int,
    include_loopback: bool,
) -> str:
    """The whole `audit` report: the findings, worst first, and a summary line."""
    if not findings:
        scope = "" if include_loopback else "nothing listens beyond loopback, "
        return (
            f"No way in from outside: {scope}no tunnel forwards a local port, no container "
            "publishes one."
        )
    blocks = ["\n".join(finding_lines(f)) for f in findings]
    tally: dict[str, int] = {}
    for f in findings:
        tally[f.level.value] = tally.get(f.level.value, 0) + 1
    parts = ", ".join(f"{n} {lv}" for lv in _LEVEL_ORDER if (n := tally.get(lv)))
    noun = "way in" if len(findings) == 1 else "ways in"
    verdict = (
        f"{failing} at or above --fail-on {fail_on.value}"
        if failing
        else f"none at or above --fail-on {fail_on.value}"
    )
    summary = f"{len(findings)} {noun}: {parts}; {verdict}."
    if not include_loopback:
        summary += " Loopback-only services are not listed (--all lists them)."
    return "\n\n".join([*blocks, summary])


def audit_verdict(findings: Sequence[Finding]) -> list[str]:
    """`who`'s lines for its port: each way in, its level and the fix."""
    if not findings:
        return []
    lines = []
    for f in findings:
        reach = {
            "network": "reachable from other machines",
            "tunnel": "published by a tunnel",
            "container": "published by a container",
            "loopback": "loopback only",
        }[f.exposure]
        lines += _labelled("audit", [f"{f.level.value.upper()}: {clean(f.what)}, {reach}"])
        if f.via is not None:
            lines += _labelled("", [_via_line(f)])
        lines += _labelled("", [f"fix: {clean(f.fix)}"])
    return lines


# ---------------------------------------------------------------------------------------
# run: progress lines, server output, and what a teardown left
# ---------------------------------------------------------------------------------------


def run_event(event: RunEvent) -> str:
    """One progress line of `run` (for stderr)."""
    server = event.server
    if event.kind == "tests":
        return f"running the tests: {command_line(event.command, None)}"
    if event.kind == "holding":
        return "servers are up; Ctrl-C (or SIGTERM) stops them"
    assert server is not None
    name = clean(server.name)
    if event.kind == "starting":
        return f"{name}: starting on port {server.port}: {command_line(server.command, None)}"
    if event.kind == "ready":
        after = f" after {server.ready_after:.2f}s" if server.ready_after is not None else ""
        return f"{name}: ready at {server.url}{after} (pid {server.pid})"
    if server.stopped_after is None:
        return f"{name}: stopped, but port {server.port} is still held"
    return f"{name}: stopped, port {server.port} free after {server.stopped_after:.2f}s"


def server_line(name: str, line: str) -> str:
    """A line a server printed, prefixed with its name, safe for a terminal."""
    return f"[{clean(name)}] {clean(line)}"


def server_tail(server: ServerReport, log: object) -> list[str]:
    """The last lines a failed server printed, when they went to its log, not to stderr."""
    lines = [f"last lines of {clean(server.name)}'s output ({clean(str(log))}):"]
    return lines + [f"  | {clean(line)}" for line in server.output]


def run_teardown(teardown: Teardown) -> list[str]:
    """Lines naming what the teardown left behind (none when it was clean)."""
    lines = [
        f"left running by {clean(server)}: pid {pid} {command_line(cmdline)}"
        for server, pid, cmdline in teardown.left
    ]
    for check in teardown.ports:
        if not check.free:
            who = ", ".join(
                f"pid {pid} ({clean(name)})" if pid is not None else "a hidden owner"
                for pid, name in check.holders
            )
            lines.append(
                f"port {check.port} of {clean(check.server)} still listening: {who or '?'}"
            )
    return lines
