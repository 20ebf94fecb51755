"""What `free --explain` says about each port it passed over."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class SkipReason(str, Enum):
    HELD = "held"  # the scan saw a listener on the port
    BOUND = "bound"  # the scan saw a TCP socket bound to it, not listening (Linux 6.8+)
    UNBINDABLE = "unbindable"  # a bind probe failed (bound without listening, EACCES...)
    LEASED = "leased"  # another portinspect caller holds an unexpired lease
    EPHEMERAL = "ephemeral"  # the OS gives these to outgoing connections
    PRIVILEGED = "privileged"  # below 1024
    UNSAFE = "unsafe"  # browsers refuse to load it (ERR_UNSAFE_PORT)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Skip:
    """Why one candidate port was not handed out."""

    port: int
    reason: SkipReason
    # One line for humans: "held by pid 4242 (uvicorn) on 127.0.0.1 tcp".
    detail: str
    # The holding process, or the process that took the lease. None when the owner is
    # hidden (another user's socket and we are not root), unknown, or not asked for: holders
    # are only looked up when an explain callback is given.
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "reason": self.reason.value,
            "detail": self.detail,
            "pid": self.pid,
        }
