"""`audit`: one block per way in, worst first, and the verdict `who` shows for its port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from portinspect.render.common import PIPE, Screen, clean, command_line, labelled, paint, wrap

if TYPE_CHECKING:
    from portinspect.audit import Finding, Level

_LEVEL_ORDER = ("critical", "high", "medium", "info")  # audit.LEVELS, without importing audit
LEVEL_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "info": "dim"}


def _labelled(label: str, values: Sequence[str], screen: Screen) -> list[str]:
    """label on the first value's line; the others under it."""
    return [
        line
        for i, value in enumerate(values)
        for line in labelled(label if i == 0 else "", value, screen)
    ]


def _finding_head(f: Finding, screen: Screen) -> list[str]:
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
    level = f.level.value.upper()
    lines = wrap(f"{where}  {clean(f.what)}{tail}", screen.width, first=" " * 9, indent=" " * 9)
    painted = paint(level, LEVEL_STYLE.get(f.level.value), screen)
    return [painted + " " * (9 - len(level)) + lines[0][9:], *lines[1:]]


def _via_line(f: Finding) -> str:
    via = f.via
    assert via is not None
    if via.kind == "container":
        inside = f" -> {clean(via.container)}" if via.container else ""
        return f"container: {clean(via.program)} (pid {via.pid}){inside}"
    command = command_line(via.command) if via.command else clean(via.kind)
    where = f" -> {clean(via.public)}" if via.public else ""
    return f"{clean(via.kind)} tunnel, pid {via.pid}: {command}{where}"


def finding_lines(f: Finding, screen: Screen = PIPE) -> list[str]:
    """One finding as a block: head line, then labelled facts (each on one line in a pipe,
    wrapped under its label on a terminal)."""
    lines = _finding_head(f, screen)
    lines += _labelled("why", [clean(f.reason)], screen)
    lines += _labelled("evidence", [clean(e) for e in f.evidence], screen)
    lines += _labelled("unknown", [clean(u) for u in f.unknown], screen)
    if f.reachable_on:
        reach = [f"{clean(a.address)} ({clean(a.interface)})" for a in f.reachable_on]
        lines += _labelled("reachable", [", ".join(reach)], screen)
    elif f.exposure == "network":
        lines += _labelled("reachable", ["no other interface is up now: any that comes up"], screen)
    if f.via is not None:
        lines += _labelled("via", [_via_line(f)], screen)
    if f.probe is not None and f.probed is not None:
        lines += _labelled("probe", [f"{clean(f.probe.url)}: {clean(f.probed)}"], screen)
    lines += _labelled("fix", [clean(f.fix)], screen)
    return lines


def audit_report(
    findings: Sequence[Finding],
    fail_on: Level,
    *,
    failing: int,
    include_loopback: bool,
    screen: Screen = PIPE,
) -> str:
    """The whole `audit` report: the findings, worst first, and a summary line."""
    if not findings:
        scope = "" if include_loopback else "nothing listens beyond loopback, "
        text = (
            f"No way in from outside: {scope}no tunnel forwards a local port, no container "
            "publishes one."
        )
        return "\n".join(wrap(text, screen.width))
    blocks = ["\n".join(finding_lines(f, screen)) for f in findings]
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
    return "\n\n".join([*blocks, "\n".join(wrap(summary, screen.width))])


def audit_verdict(findings: Sequence[Finding], screen: Screen = PIPE) -> list[str]:
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
        level = f.level.value.upper()
        verdict = _labelled("audit", [f"{level}: {clean(f.what)}, {reach}"], screen)
        style = LEVEL_STYLE.get(f.level.value)
        lines += [verdict[0].replace(level, paint(level, style, screen), 1), *verdict[1:]]
        if f.via is not None:
            lines += _labelled("", [_via_line(f)], screen)
        lines += _labelled("", [f"fix: {clean(f.fix)}"], screen)
    return lines
