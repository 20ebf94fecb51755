"""`wait`: the line it starts with, progress worth telling, and what decided."""

from __future__ import annotations

from collections.abc import Sequence

from portinspect.models.wait import TargetReport, WaitResult, WaitTarget
from portinspect.render.common import PIPE, Screen, clean, wrap

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


def wait_done(result: WaitResult, screen: Screen = PIPE) -> str:
    """What `wait` prints when every target is ready (or free): bare ports on one line, as
    always (`port 8000 listening after 0.42s`); other targets one per line, with what decided
    (each wrapped under itself on a narrow terminal)."""
    targets = [r.target for r in result.targets]
    state = _condition(targets, result.free)
    if all(t.host is None for t in targets) or len(targets) > _WAIT_LISTED:
        texts = [f"{_targets_text(targets)} {state} after {result.elapsed:.2f}s"]
    else:
        texts = [
            clean(f"{r.target} {state} after {r.ready_after or 0.0:.2f}s ({_how(r)})")
            for r in result.targets
        ]
    return "\n".join(line for text in texts for line in wrap(text, screen.width, indent="  "))
