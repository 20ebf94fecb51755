"""Listeners and results -> text. Pure functions returning strings; nothing here prints.

Every string that came from another process (command lines, cwd, names) goes through
`clean()` before it reaches a terminal: a hostile process title must not be able to
move the cursor, recolour the screen or break a row in two.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from portinspect.frameworks import member_role
from portinspect.models import (
    KillOutcome,
    KillPlan,
    KillStep,
    Listener,
    ProcessInfo,
    RunEvent,
    ServerReport,
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


def _tree_lines(
    root: int, tree: Mapping[int, ProcessInfo], roles: Mapping[int, str], held: set[int]
) -> list[str]:
    children: dict[int, list[int]] = {}
    for pid, info in tree.items():
        if info.ppid is not None and info.ppid in tree and pid != root:
            children.setdefault(info.ppid, []).append(pid)
    lines: list[str] = []

    def walk(pid: int, depth: int) -> None:
        info = tree[pid]
        role = roles.get(pid, "")
        mark = " [holds port]" if pid in held else ""
        prefix = "    " + "  " * depth + ("└─ " if depth else "")
        lines.append(f"{prefix}{pid} {role:<10} {command_line(info.cmdline)}{mark}".rstrip())
        for child in sorted(children.get(pid, [])):
            walk(child, depth + 1)

    if root in tree:
        walk(root, 0)
    return lines


def who_report(
    port: int,
    listeners: Sequence[Listener],
    trees: Mapping[int, Mapping[int, ProcessInfo]],
    now: float | None = None,
) -> str:
    """The human diagnosis of one port: sockets, app, tree, and how to stop it."""
    first = listeners[0]
    facts = [first.range.value, "ephemeral range" if first.ephemeral else "not ephemeral"]
    if first.service:
        facts.append(f"IANA service {first.service}")
    lines = [f"Port {port}: {', '.join(facts)}"]
    for li in listeners:
        reach = "EXPOSED beyond this machine" if li.exposed else "loopback only"
        lines.append(f"  {li.proto.value} {li.family.value} {clean(li.endpoint)}  ({reach})")
    seen: set[int | None] = set()
    for li in listeners:
        if li.app_pid in seen:
            continue
        seen.add(li.app_pid)
        lines.append("")
        lines.extend(_app_section(li, trees.get(li.app_pid or -1, {}), now))
    return "\n".join(lines)


def _app_section(li: Listener, tree: Mapping[int, ProcessInfo], now: float | None) -> list[str]:
    if li.owner_hidden:
        owner = clean(li.user) or "another user"
        return [
            f"  owner:     hidden (the socket belongs to {owner})",
            "  next:      run `sudo portinspect who "
            f"{li.port}` to see the process and how to stop it",
        ]
    primary = li.primary
    assert primary is not None
    what = program(li)
    root_info = tree.get(li.app_pid) if li.app_pid is not None else None
    started = root_info.create_time if root_info else primary.create_time
    holders = ", ".join(f"{h.process.pid} ({h.role or 'holder'})" for h in li.holders)
    lines = [
        f"  program:   {what}",
        f"  app root:  pid {li.app_pid}, up {uptime(started, now)}",
        f"  holders:   {holders}",
        f"  user:      {clean(li.user) or '?'}",
        f"  cwd:       {clean(li.cwd) or '? (needs root)'}",
        f"  command:   {command_line(primary.cmdline, None)}",
    ]
    if tree:
        held = {h.process.pid for h in li.holders}
        roles = tree_roles(li, tree)
        lines.append("  app tree:")
        lines.extend(_tree_lines(li.app_pid or primary.pid, tree, roles, held))
    lines.append(
        f"  stop it:   portinspect kill {li.port}   "
        f"(SIGTERM to pid {li.app_pid}, the app's top process, then verifies the port is free)"
    )
    return lines


def tree_roles(li: Listener, tree: Mapping[int, ProcessInfo]) -> dict[int, str]:
    """Roles of every process in an app tree: those the classifier found, then the rest."""
    roles: dict[int, str] = {}
    for pid, info in tree.items():
        role = li.roles.get(pid) or member_role(info, tree)
        if role:
            roles[pid] = role
    return roles


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


def apps_json(
    listeners: Sequence[Listener], trees: Mapping[int, Mapping[int, ProcessInfo]]
) -> list[dict[str, Any]]:
    """The apps behind the listeners, each with its whole process tree (for `who --json`)."""
    apps: list[dict[str, Any]] = []
    seen: set[int] = set()
    for li in listeners:
        if li.app_pid is None or li.app_pid in seen:
            continue
        seen.add(li.app_pid)
        tree = trees.get(li.app_pid, {})
        roles = tree_roles(li, tree)
        apps.append(
            {
                "app_pid": li.app_pid,
                "framework": li.framework,
                "server": li.server,
                "tree": [
                    {**process_dict(info), "role": roles.get(pid)}
                    for pid, info in sorted(tree.items())
                ],
            }
        )
    return apps


# ---------------------------------------------------------------------------------------
# kill: the plan shown before acting, a line per batch of signals, a line per outcome
# ---------------------------------------------------------------------------------------

PLAN_COLUMNS = ("PID", "ROLE", "USER", "COMMAND")


def pids(numbers: Sequence[int]) -> str:
    """'pid 42' or 'pids 42, 43'."""
    return ("pid " if len(numbers) == 1 else "pids ") + ", ".join(map(str, numbers))


def kill_plan(plan: KillPlan, how: str) -> str:
    """The plan for one port: the processes, top first, and what will be sent."""
    what = clean(plan.framework or plan.server or "")
    if plan.server and plan.framework and plan.server != plan.framework:
        what = f"{clean(plan.framework)} ({clean(plan.server)})"
    head = f"port {plan.port}" + (f": {what}" if what else "")
    if plan.blocked is not None:
        return f"{head}: {plan.blocked}: " + "; ".join(plan.reasons)
    rows = [
        (
            f"{t.process.pid}{' *' if t.top else ''}",
            (t.role or "") + (" [holds port]" if t.holds_port else ""),
            clean(t.process.user) or "?",
            command_line(t.process.cmdline),
        )
        for t in plan.targets
    ]
    drawn = table(PLAN_COLUMNS, rows)
    body = "\n".join("  " + line for line in drawn.splitlines())
    return f"{head}, {len(plan.targets)} process(es)\n{body}\n  plan: {how}"


def kill_step(port: int, step: KillStep) -> str:
    """A progress line, as each batch of signals goes out."""
    return f"port {port}: {step.signal} -> {pids(step.pids)} ({step.scope}) at {step.at:.2f}s"


def kill_outcome(outcome: KillOutcome) -> str:
    text = outcome.message
    prefix = f"port {outcome.port}"
    # Messages that already name the port ("nothing is listening on port 8000") stand alone.
    return text if re.search(rf"\bport {outcome.port}\b", text) else f"{prefix}: {text}"


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
