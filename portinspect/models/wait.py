"""wait: what to wait for, and how each target fared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portinspect.models import Proto


@dataclass(frozen=True, slots=True)
class WaitTarget:
    """One thing `wait` waits for, as inputs.parse_target read it.

    host is None for a bare port (a listener on any address of this machine will do),
    "localhost" (127.0.0.1 or ::1), an IP address in its canonical form (an IPv4-mapped
    IPv6 address is written as the IPv4 one), or a lower-case host name. scheme is "tcp"
    for PORT, HOST:PORT and tcp://; "http" and "https" add a GET of path (with its query).
    """

    port: int
    host: str | None = None
    scheme: str = "tcp"
    path: str | None = None

    @property
    def http(self) -> bool:
        return self.scheme in ("http", "https")

    def __str__(self) -> str:
        if self.host is None:
            return str(self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self.http:
            return f"{host}:{self.port}"
        return f"{self.scheme}://{host}:{self.port}{self.path or '/'}"


@dataclass(frozen=True, slots=True)
class TargetReport:
    """How one target fared: ready or not, when, and what decided it.

    via names the checks that decided, in order: "socket-table" (this machine's listeners),
    "connect" (a TCP connect to the address, the probe for other hosts, and the fallback
    where the OS does not say whether an IPv6 wildcard takes IPv4), "http" (a GET answered
    below 500). address is the one that accepted (None for a bare port, or while not ready).
    error is why the last check failed; None once ready.
    """

    target: WaitTarget
    proto: Proto
    ready: bool
    ready_after: float | None = None  # seconds from the call to the check that saw it ready
    via: tuple[str, ...] = ()
    attempts: int = 0
    address: str | None = None
    http_status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one target of `wait --json`)."""
        target = self.target
        return {
            "target": str(target),
            "scheme": target.scheme if target.http else None,
            "host": target.host,
            "port": target.port,
            "path": target.path,
            "proto": self.proto.value,
            "ready": self.ready,
            "ready_after": None if self.ready_after is None else round(self.ready_after, 3),
            "via": list(self.via),
            "attempts": self.attempts,
            "address": self.address,
            "http_status": self.http_status,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What wait_for() saw: every target's report, and when the last one became ready.

    ports are the targets' port numbers (kept from before targets had hosts); free is True
    when the wait was for no listener. timeout is None for a wait without limit.
    """

    ports: tuple[int, ...]
    free: bool
    elapsed: float  # seconds from the call to the condition holding (or to giving up)
    polls: int  # rounds of checks
    targets: tuple[TargetReport, ...] = ()
    timed_out: bool = False
    timeout: float | None = None
    proto: Proto = Proto.TCP

    @property
    def pending(self) -> tuple[int, ...]:
        """The ports of the targets that are not ready."""
        return tuple(sorted({r.target.port for r in self.targets if not r.ready}))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (`wait --json`, beside the envelope)."""
        return {
            "ports": list(self.ports),
            "condition": "free" if self.free else "listening",
            "proto": self.proto.value,
            "timeout": self.timeout,
            "timed_out": self.timed_out,
            "pending": list(self.pending),
            "elapsed": round(self.elapsed, 3),
            "targets": [r.to_dict() for r in self.targets],
        }
