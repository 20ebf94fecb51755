"""What a scan reads and `list` shows: sockets, processes, their holders, listeners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portinspect.models import IANA_DYNAMIC, Family, PortKey, PortRange, Proto


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
    # Only the variables that mark reloader children, kernels and managed services
    # (RUN_MAIN, WERKZEUG_RUN_MAIN, JPY_PARENT_PID, SUPERVISOR_PROCESS_NAME...), never the
    # whole env.
    env: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The process's cgroup path ("/system.slice/nginx.service"), read only where a manager
    # may matter (who, kill): systemd units and containers show there. None when not read.
    cgroup: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A PROCESS of `who --json` and `kill --json` (README: JSON)."""
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "process": self.name,
            "user": self.user,
            "cmdline": list(self.cmdline),
            "cwd": self.cwd,
            "started": self.create_time,
        }


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
    # IPv6 only (IPV6_V6ONLY, or bound to a specific IPv6 address): an IPv6 wildcard without
    # it takes IPv4 connections too. None where the OS does not say (procfs, psutil).
    v6only: bool | None = None


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address of one network interface of this machine (`lo`, `wlan0`, `docker0`...)."""

    interface: str
    family: Family
    address: str  # without an IPv6 scope id: the interface names the scope

    def to_dict(self) -> dict[str, Any]:
        return {"interface": self.interface, "family": self.family.value, "address": self.address}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Raw facts from one scan: sockets, and the processes that hold them plus their ancestors.

    processes holds every holder of `sockets` and its ancestors; a scan for who/kill adds
    the subtrees the app model may take in. held maps every process known to hold a
    listening socket (of any port, not only those of `sockets`) to the ports it holds: it
    is how the app model sees that a parent's other children serve other ports. A scan of
    every port leaves it empty; it is then read off `sockets` (see held_ports()).
    """

    sockets: tuple[Socket, ...]
    processes: Mapping[int, ProcessInfo]
    # True when some socket's owner could not be seen (not root, hidepid, another namespace).
    owners_hidden: bool = False
    # portinspect's own pid and its ancestors: never an app root, never signalled.
    self_lineage: frozenset[int] = frozenset()
    # uid -> user name, for sockets whose owning process is hidden.
    user_names: Mapping[int, str] = field(default_factory=dict)
    held: Mapping[int, frozenset[PortKey]] = field(default_factory=dict)
    # Ports with a listening socket no visible process holds (another user's, another pid
    # namespace's, the kernel's): signalling our processes never frees such a port.
    hidden_ports: frozenset[PortKey] = frozenset()
    # The OS's range for outgoing connections' local ports (scanner.ephemeral_range()).
    ephemeral: tuple[int, int] = IANA_DYNAMIC
    # We see every process of this pid namespace (root): a hidden owner is then the kernel's
    # or another namespace's, not another user's.
    privileged: bool = False

    def held_ports(self) -> Mapping[int, frozenset[PortKey]]:
        """pid -> the listening ports it holds, of every port the scan looked at."""
        if self.held:
            return self.held
        # By set of holders first: a server's 5000 sockets share one (measured: 100 ms of
        # per-pid set updates at 1000 sockets of 100 workers, 5 ms this way).
        by_holders: dict[tuple[int, ...], set[PortKey]] = {}
        for sock in self.sockets:
            if sock.pids:
                by_holders.setdefault(sock.pids, set()).add((sock.proto, sock.port))
        found: dict[int, set[PortKey]] = {}
        for pids, ports in by_holders.items():
            for pid in pids:
                found.setdefault(pid, set()).update(ports)
        return {pid: frozenset(ports) for pid, ports in found.items()}


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
    # pid -> role for the holders and the app processes above them.
    roles: Mapping[int, str] = field(default_factory=dict, compare=False)

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
        # The primary holder once, not through a property per field: `list --json` makes
        # 5500 of these at the L load.
        primary = self.holders[0].process if self.holders else None
        return {
            "port": self.port,
            "proto": self.proto.value,
            "family": self.family.value,
            "address": self.address,
            "pid": primary.pid if primary else None,
            "ppid": primary.ppid if primary else None,
            "process": primary.name if primary else None,
            "user": self.user,
            "uid": self.uid,
            "cmdline": list(primary.cmdline) if primary else [],
            "cwd": primary.cwd if primary else None,
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
