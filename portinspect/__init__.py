"""portinspect: what is on port 8000, and how do I get it back?

>>> from portinspect import scan
>>> for listener in scan(ports=[8000]):
...     print(listener.port, listener.pid, listener.framework, listener.app_pid)
"""

from __future__ import annotations

from portinspect.api import scan
from portinspect.errors import (
    ExitStatus,
    NoFreePortError,
    NotListeningError,
    PermissionDeniedError,
    PortInspectError,
    StillHeldError,
    UsageError,
    WaitTimeoutError,
)
from portinspect.freeport import find_free_ports
from portinspect.killer import kill_port
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
)
from portinspect.waiter import WaitResult, wait_for

__version__ = "0.1.0"

__all__ = [
    "ExitStatus",
    "Family",
    "Holder",
    "KillOutcome",
    "KillPlan",
    "KillStatus",
    "Listener",
    "NoFreePortError",
    "NotListeningError",
    "PermissionDeniedError",
    "PortInspectError",
    "PortRange",
    "ProcessInfo",
    "Proto",
    "StillHeldError",
    "UsageError",
    "WaitResult",
    "WaitTimeoutError",
    "__version__",
    "find_free_ports",
    "kill_port",
    "scan",
    "wait_for",
]
