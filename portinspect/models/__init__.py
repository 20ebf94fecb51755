"""The data that flows through portinspect: frozen, typed, no I/O.

scanner  -> Snapshot (Socket + ProcessInfo: facts read from the OS)
classify -> Listener (a socket with its holders, range, service, exposure, framework, app root)
render   -> str

This module holds the enums every command reads; the frozen dataclasses live beside it, by
what they describe (models/scan.py: sockets, processes, listeners; app.py, kill.py, wait.py,
run.py) and are imported from here on first use (PEP 562). Each frozen dataclass costs about
a millisecond to build at import (dataclasses compiles its methods): `free` builds none,
`list` only the scan's (benchmarks/RESULTS.md, start-up). Code that builds them at run time
reads them as `models.Socket`, so importing it builds nothing.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portinspect.models.app import App as App
    from portinspect.models.app import Boundary as Boundary
    from portinspect.models.app import Manager as Manager
    from portinspect.models.app import Member as Member
    from portinspect.models.app import PortState as PortState
    from portinspect.models.app import PortView as PortView
    from portinspect.models.app import Role as Role
    from portinspect.models.app import Stop as Stop
    from portinspect.models.app import WhoReport as WhoReport
    from portinspect.models.free import Skip as Skip
    from portinspect.models.free import SkipReason as SkipReason
    from portinspect.models.kill import (
        ContainerHint as ContainerHint,
    )
    from portinspect.models.kill import (
        KillOutcome as KillOutcome,
    )
    from portinspect.models.kill import (
        KillPlan as KillPlan,
    )
    from portinspect.models.kill import (
        KillStatus as KillStatus,
    )
    from portinspect.models.kill import (
        KillStep as KillStep,
    )
    from portinspect.models.kill import (
        KillTarget as KillTarget,
    )
    from portinspect.models.kill import (
        KillTrace as KillTrace,
    )
    from portinspect.models.kill import (
        Reason as Reason,
    )
    from portinspect.models.kill import (
        ReasonKind as ReasonKind,
    )
    from portinspect.models.run import (
        PortCheck as PortCheck,
    )
    from portinspect.models.run import (
        RunEvent as RunEvent,
    )
    from portinspect.models.run import (
        RunOutcome as RunOutcome,
    )
    from portinspect.models.run import (
        RunResult as RunResult,
    )
    from portinspect.models.run import (
        ServerReport as ServerReport,
    )
    from portinspect.models.run import (
        Signalled as Signalled,
    )
    from portinspect.models.run import (
        Teardown as Teardown,
    )
    from portinspect.models.run import (
        TestsReport as TestsReport,
    )
    from portinspect.models.scan import Holder as Holder
    from portinspect.models.scan import InterfaceAddress as InterfaceAddress
    from portinspect.models.scan import Listener as Listener
    from portinspect.models.scan import ProcessInfo as ProcessInfo
    from portinspect.models.scan import Snapshot as Snapshot
    from portinspect.models.scan import Socket as Socket
    from portinspect.models.wait import TargetReport as TargetReport
    from portinspect.models.wait import WaitResult as WaitResult
    from portinspect.models.wait import WaitTarget as WaitTarget

_LAZY = {
    **dict.fromkeys(
        ("Holder", "InterfaceAddress", "Listener", "ProcessInfo", "Snapshot", "Socket"), "scan"
    ),
    **dict.fromkeys(
        ("App", "Boundary", "Manager", "Member", "PortState", "PortView", "Role", "Stop"), "app"
    ),
    "WhoReport": "app",
    **dict.fromkeys(("Skip", "SkipReason"), "free"),
    **dict.fromkeys(
        (
            "ContainerHint",
            "KillOutcome",
            "KillPlan",
            "KillStatus",
            "KillStep",
            "KillTarget",
            "KillTrace",
            "Reason",
            "ReasonKind",
        ),
        "kill",
    ),
    **dict.fromkeys(
        (
            "PortCheck",
            "RunEvent",
            "RunOutcome",
            "RunResult",
            "ServerReport",
            "Signalled",
            "Teardown",
            "TestsReport",
        ),
        "run",
    ),
    **dict.fromkeys(("TargetReport", "WaitResult", "WaitTarget"), "wait"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class Proto(str, Enum):
    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


ALL_PROTOS = frozenset(Proto)
# IANA's suggested dynamic range (RFC 6335), also Windows' default since Vista and macOS's:
# the ephemeral range where the OS will not tell its own.
IANA_DYNAMIC = (49152, 65535)


class Family(str, Enum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    def __str__(self) -> str:
        return self.value


class PortRange(str, Enum):
    """IANA port ranges (RFC 6335)."""

    WELL_KNOWN = "well-known"  # 0-1023
    REGISTERED = "registered"  # 1024-49151
    DYNAMIC = "dynamic"  # 49152-65535

    def __str__(self) -> str:
        return self.value


PortKey = tuple[Proto, int]
