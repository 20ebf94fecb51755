"""portinspect: what is on port 8000, and how do I get it back?

>>> from portinspect import scan
>>> for listener in scan(ports=[8000]):
...     print(listener.port, listener.pid, listener.framework, listener.app_pid)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public API is imported on first use (PEP 562): each command of the CLI, and
# `import portinspect._linux`, load only the modules they need. Importing all of it up
# front costs psutil, the classifier and kill to `free` and `list` alike.
_EXPORTS = {
    "scan": "api",
    "run_audit": "api",
    "AuditReport": "audit",
    "find_free_ports": "freeport",
    "reserve": "freeport",
    "Reservation": "freeport",
    "kill_port": "kill",
    "WaitResult": "models",
    "wait_for": "waiter",
    "run": "runner",
    "serve": "runner",
    "Server": "runner",
    "ServerSpec": "runner",
    "ExitStatus": "errors",
    "LeftBehindError": "errors",
    "ServerExitedError": "errors",
    "ServerNotReadyError": "errors",
    "NoFreePortError": "errors",
    "NotListeningError": "errors",
    "PermissionDeniedError": "errors",
    "PortInspectError": "errors",
    "StillHeldError": "errors",
    "UsageError": "errors",
    "WaitTimeoutError": "errors",
    "Family": "models",
    "Holder": "models",
    "KillOutcome": "models",
    "KillPlan": "models",
    "KillStatus": "models",
    "Listener": "models",
    "PortRange": "models",
    "ProcessInfo": "models",
    "Proto": "models",
    "RunResult": "models",
    "ServerReport": "models",
    "Teardown": "models",
    "TargetReport": "models",
    "WaitTarget": "models",
}

if TYPE_CHECKING:
    from portinspect.api import run_audit, scan
    from portinspect.audit import AuditReport
    from portinspect.errors import (
        ExitStatus,
        LeftBehindError,
        NoFreePortError,
        NotListeningError,
        PermissionDeniedError,
        PortInspectError,
        ServerExitedError,
        ServerNotReadyError,
        StillHeldError,
        UsageError,
        WaitTimeoutError,
    )
    from portinspect.freeport import Reservation, find_free_ports, reserve
    from portinspect.kill import kill_port
    from portinspect.models import (
        Family,
        Holder,
        KillOutcome,
        KillPlan,
        KillStatus,
        Listener,
        PortRange,
        ProcessInfo,
        Proto,
        RunResult,
        ServerReport,
        TargetReport,
        Teardown,
        WaitResult,
        WaitTarget,
    )
    from portinspect.runner import Server, ServerSpec, run, serve
    from portinspect.waiter import wait_for


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portinspect' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"portinspect.{module}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AuditReport",
    "ExitStatus",
    "Family",
    "Holder",
    "KillOutcome",
    "KillPlan",
    "KillStatus",
    "LeftBehindError",
    "Listener",
    "NoFreePortError",
    "NotListeningError",
    "PermissionDeniedError",
    "PortInspectError",
    "PortRange",
    "ProcessInfo",
    "Proto",
    "Reservation",
    "RunResult",
    "Server",
    "ServerExitedError",
    "ServerNotReadyError",
    "ServerReport",
    "ServerSpec",
    "StillHeldError",
    "TargetReport",
    "Teardown",
    "UsageError",
    "WaitResult",
    "WaitTarget",
    "WaitTimeoutError",
    "__version__",
    "find_free_ports",
    "kill_port",
    "reserve",
    "run",
    "run_audit",
    "scan",
    "serve",
    "wait_for",
]
