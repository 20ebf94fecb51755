"""The data that flows through portinspect: frozen, typed, no I/O.

scanner  -> Snapshot (Socket + ProcessInfo: facts read from the OS)
classify -> Listener (a socket with its holders, range, service, exposure, framework, app root)
render   -> str
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Proto(str, Enum):
    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


ALL_PROTOS = frozenset(Proto)


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


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What the OS tells us about one process.

    Fields the caller may not read are None (or an empty cmdline): cwd and env of
    another user's process need root; on macOS and Windows more fields may be hidden.
    """

    pid: int
    ppid: int | None
    name: str | None
    user: str | None
    cmdline: tuple[str, ...] = ()
    cwd: str | None = None
    create_time: float | None = None  # seconds since the epoch
    # Only the variables that mark reloader children and kernels (RUN_MAIN,
    # WERKZEUG_RUN_MAIN, JPY_PARENT_PID, npm_lifecycle_event...), never the whole env.
    env: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Socket:
    """One listening TCP socket or bound UDP socket, as the kernel reports it."""

    proto: Proto
    family: Family
    address: str
    port: int
    # Owning uid, known on Linux even when the owning process is hidden from us.
    uid: int | None = None
    # Kernel socket inode (Linux), or None where the OS does not expose one.
    inode: int | None = None
    # Every process holding this socket, lowest pid first; empty when hidden.
    pids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Raw facts from one scan: sockets, and the processes that hold them plus their ancestors."""

    sockets: tuple[Socket, ...]
    processes: Mapping[int, ProcessInfo]
    # True when some socket's owner could not be seen (not root, hidepid, another namespace).
    owners_hidden: bool = False
    # portinspect's own pid and its ancestors: never an app root, never signalled.
    self_lineage: frozenset[int] = frozenset()
    # uid -> user name, for sockets whose owning process is hidden.
    user_names: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Holder:
    """A process holding a listening socket, with its role in the app."""

    process: ProcessInfo
    # "server", "master", "worker", "reloader", "supervisor", or None when unknown.
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket, who holds it and what it is. The unit of `list` and `who`.

    pid, process, cmdline and cwd describe the primary holder: the top-most process
    of the app that holds the socket (the gunicorn master, not a worker). They are
    None when the socket belongs to another user and you are not root; `user` is
    still known on Linux from the socket's uid.
    """

    proto: Proto
    family: Family
    address: str
    port: int
    range: PortRange
    ephemeral: bool
    service: str | None
    exposed: bool
    holders: tuple[Holder, ...] = ()
    uid: int | None = None
    user: str | None = None
    inode: int | None = None
    framework: str | None = None
    server: str | None = None
    # The app's top process: reloader, master or supervisor; the holder itself for a
    # single-process server. None when the owner is hidden.
    app_pid: int | None = None

    @property
    def primary(self) -> ProcessInfo | None:
        return self.holders[0].process if self.holders else None

    @property
    def pid(self) -> int | None:
        p = self.primary
        return p.pid if p else None

    @property
    def process(self) -> str | None:
        p = self.primary
        return p.name if p else None

    @property
    def cmdline(self) -> tuple[str, ...]:
        p = self.primary
        return p.cmdline if p else ()

    @property
    def cwd(self) -> str | None:
        p = self.primary
        return p.cwd if p else None

    @property
    def owner_hidden(self) -> bool:
        return not self.holders

    @property
    def endpoint(self) -> str:
        """address:port, with IPv6 in brackets."""
        host = f"[{self.address}]" if self.family is Family.IPV6 else self.address
        return f"{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in the README (one listener)."""
        primary = self.primary
        return {
            "port": self.port,
            "proto": self.proto.value,
            "family": self.family.value,
            "address": self.address,
            "pid": self.pid,
            "process": self.process,
            "user": self.user,
            "uid": self.uid,
            "cmdline": list(self.cmdline),
            "cwd": self.cwd,
            "started": primary.create_time if primary else None,
            "range": self.range.value,
            "ephemeral": self.ephemeral,
            "service": self.service,
            "exposed": self.exposed,
            "framework": self.framework,
            "server": self.server,
            "app_pid": self.app_pid,
            "holders": [
                {"pid": h.process.pid, "process": h.process.name, "role": h.role}
                for h in self.holders
            ],
        }
