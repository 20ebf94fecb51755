"""`run`: progress lines, server output, and what a teardown left. One line each: progress
goes to stderr as it happens, and a server's own lines are passed through whole."""

from __future__ import annotations

from portinspect.models.run import RunEvent, ServerReport, Teardown
from portinspect.render.common import clean, command_line


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
