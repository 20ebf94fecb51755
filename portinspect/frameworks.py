"""Pure: command lines and the process tree -> framework, server, roles and app root.

INTERFACE STUB: the implementation is being written; the signatures below are the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from portinspect.models import ProcessInfo

# Reads a text file (bounded in size) and returns its content, or None if it cannot.
SourceReader = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class AppIdentity:
    framework: str | None = None
    server: str | None = None
    app_pid: int | None = None
    # pid -> role ("server", "master", "worker", "reloader", "supervisor", "wrapper", "kernel")
    roles: Mapping[int, str] = field(default_factory=dict)


def identify_app(
    holder_pids: Sequence[int],
    processes: Mapping[int, ProcessInfo],
    stop_pids: frozenset[int] = frozenset(),
    read_source: SourceReader | None = None,
) -> AppIdentity:
    """Framework, server, app root and roles for the holders of one socket."""
    top = min(holder_pids) if holder_pids else None
    return AppIdentity(app_pid=top)


def is_protected(proc: ProcessInfo) -> bool:
    """True for processes portinspect must never treat as an app or signal."""
    return proc.pid in (0, 1)
