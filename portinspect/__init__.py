"""portinspect: what is on port 8000, and how do I get it back?

>>> from portinspect import scan
>>> for listener in scan(ports=[8000]):
...     print(listener.port, listener.pid, listener.framework, listener.app_pid)
"""

from __future__ import annotations

from portinspect.api import scan
from portinspect.waiter import WaitResult, wait_for
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
from portinspect.models import Family, Holder, Listener, PortRange, ProcessInfo, Proto

__version__ = "0.1.0"

__all__ = [
    "ExitStatus",
    "Family",
    "Holder",
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
    "scan",
    "wait_for",
]
