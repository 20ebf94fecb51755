"""What `audit` reports: a level, and each way in (Finding) with what makes it reachable.

Results, so they live with the others: `who` shows a port's findings (WhoReport) without the
model importing the audit that makes them. portinspect.audit and portinspect.dangers
re-export these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from portinspect.models import InterfaceAddress, Proto


class Level(str, Enum):
    CRITICAL = "critical"  # code execution for whoever reaches it
    HIGH = "high"  # a development server, or a database without authentication
    MEDIUM = "medium"  # anything else reachable that is not a production server
    INFO = "info"  # production servers bound on purpose; loopback-only services

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.INFO: 0, Level.MEDIUM: 1, Level.HIGH: 2, Level.CRITICAL: 3}
LEVELS = tuple(sorted(Level, key=lambda lv: -lv.rank))  # critical first


@dataclass(frozen=True, slots=True)
class Via:
    """What makes a listener reachable when its own address does not: a tunnel or a container."""

    kind: str  # "ngrok", "ssh", "cloudflared"..., or "container"
    pid: int | None
    program: str | None
    command: tuple[str, ...] = ()  # secrets replaced by *** (tunnels.redact)
    public: str | None = None  # where it is published (a host, a service)
    access: str | None = None  # tunnels.PUBLIC, LOGIN, ACCOUNT, TAILNET, REMOTE_HOST
    container: str | None = None  # "172.17.0.2:80" from docker-proxy's flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "program": self.program,
            "command": list(self.command),
            "public": self.public,
            "access": self.access,
            "container": self.container,
        }


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One HTTP GET over loopback that can settle an unknown (api.audit runs it)."""

    host: str  # always a loopback address: 127.0.0.1 or ::1
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One way in. port None: a tunnel whose targets are not on its command line.

    address is the most exposed of the listener's addresses (a wildcard first); addresses
    lists them all. pid, program, framework and server describe the listener (None for a
    tunnel to a port where nothing listens, or when the owner is hidden). evidence are facts a
    user can check; unknown names what could not be known (and the level assumes the worse).
    """

    level: Level
    key: str  # the DANGERS row that judged it ("werkzeug", "jupyter"...) or "tunnel", "hidden"
    what: str
    reason: str
    fix: str
    exposure: str  # NETWORK, TUNNEL, CONTAINER or LOOPBACK
    port: int | None = None
    proto: Proto | None = None
    address: str | None = None
    addresses: tuple[str, ...] = ()
    pid: int | None = None
    program: str | None = None
    user: str | None = None
    framework: str | None = None
    server: str | None = None
    evidence: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    via: Via | None = None
    reachable_on: tuple[InterfaceAddress, ...] = ()
    probe: ProbeRequest | None = None
    probed: str | None = None  # what the probe showed, once it ran
    # The unknowns a conclusive probe answer settles (a subset of unknown).
    probe_settles: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one finding of `audit --json`)."""
        return {
            "level": self.level.value,
            "port": self.port,
            "proto": self.proto.value if self.proto is not None else None,
            "address": self.address,
            "addresses": list(self.addresses),
            "pid": self.pid,
            "program": self.program,
            "user": self.user,
            "framework": self.framework,
            "server": self.server,
            "what": self.what,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "unknown": list(self.unknown),
            "fix": self.fix,
            "exposure": self.exposure,
            "via": self.via.to_dict() if self.via is not None else None,
            "reachable_on": [a.to_dict() for a in self.reachable_on],
            "probe": None
            if self.probe is None or self.probed is None
            else {"url": self.probe.url, "result": self.probed},
        }
