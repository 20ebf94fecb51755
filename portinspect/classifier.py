"""Snapshot -> Listeners: IANA range, ephemeral range, service name, exposure, app.

Pure: the OS's ephemeral range comes with the snapshot, the service names from bundled data;
the app behind each socket is apptree's.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from portinspect.appspec import SourceReader
from portinspect.apptree import AppModel, roles_of
from portinspect.data import read_text
from portinspect.models import App, Holder, Listener, PortRange, Proto, Role, Snapshot, Socket


def port_range(port: int) -> PortRange:
    if port <= 1023:
        return PortRange.WELL_KNOWN
    if port <= 49151:
        return PortRange.REGISTERED
    return PortRange.DYNAMIC


def is_ephemeral(port: int, bounds: tuple[int, int]) -> bool:
    low, high = bounds
    return low <= port <= high


@functools.cache
def _services() -> dict[tuple[int, str], str]:
    table: dict[tuple[int, str], str] = {}
    text = read_text("services.tsv")
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        port, proto, name = line.split("\t")
        table[(int(port), proto)] = name
    return table


def service_name(port: int, proto: Proto = Proto.TCP) -> str | None:
    """The IANA service name registered for the port, from bundled data."""
    return _services().get((port, proto.value))


# Cached: a machine has a handful of distinct addresses, and parsing one with ipaddress costs
# ~6 us, 35 ms for 5500 listeners.
@functools.lru_cache(maxsize=1024)
def is_exposed(address: str) -> bool:
    """True when the socket accepts connections from beyond this machine.

    Wildcards (0.0.0.0, ::) and any non-loopback address are exposed; 127.0.0.0/8,
    ::1 and IPv4-mapped loopback (::ffff:127.0.0.1) are not.
    """
    host = address.split("%", 1)[0]  # fe80::1%eth0 -> scope id is not part of the address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True  # unknown form: say exposed rather than hide a risk
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_loopback


@dataclass(frozen=True, slots=True)
class _Owners:
    """What every socket held by the same processes shares: holders in order, roles, app."""

    holders: tuple[Holder, ...]
    roles: Mapping[int, Role]
    main: App | None


def _owners(sock: Socket, model: AppModel) -> _Owners:
    processes = model.processes
    apps = model.apps([sock])
    roles = roles_of(apps)
    order = [m.process.pid for app in apps for m in app.members if m.holds]
    seen = set(order)
    order += sorted(p for p in sock.pids if p in processes and p not in seen)
    holders = tuple(Holder(processes[pid], roles.get(pid)) for pid in order)
    return _Owners(holders, roles, apps[0] if apps else None)


def classify_socket(
    sock: Socket,
    model: AppModel,
    owners: dict[tuple[int, ...], _Owners] | None = None,
) -> Listener:
    """One socket with its holders (the main app's top first), range, service and exposure.

    owners: what was worked out for earlier sockets held by the same processes (a server with
    5000 sockets is one app: the holders and roles are built once, not per socket).
    """
    found = owners.get(sock.pids) if owners is not None else None
    if found is None:
        found = _owners(sock, model)
        if owners is not None:
            owners[sock.pids] = found
    holders, main = found.holders, found.main
    user = holders[0].process.user if holders else None
    if user is None and sock.uid is not None:
        user = model.snapshot.user_names.get(sock.uid)
    return Listener(
        proto=sock.proto,
        family=sock.family,
        address=sock.address,
        port=sock.port,
        range=port_range(sock.port),
        ephemeral=is_ephemeral(sock.port, model.snapshot.ephemeral),
        service=service_name(sock.port, sock.proto),
        exposed=is_exposed(sock.address),
        holders=holders,
        uid=sock.uid,
        user=user,
        inode=sock.inode,
        framework=main.framework if main else None,
        server=main.server if main else None,
        app_pid=main.top if main else None,
        roles=found.roles,
    )


def classify(
    snapshot: Snapshot,
    read_source: SourceReader | None = None,
    *,
    model: AppModel | None = None,
) -> list[Listener]:
    """Every socket of the snapshot as a Listener, in the snapshot's order.

    The app behind a socket is worked out once per set of holders and each app module is read
    once: a server with 5000 sockets is one app, and per socket this took 0.6 ms (3 s at 5000
    listeners, benchmarks/RESULTS.md).
    """
    if model is None:
        reader = functools.cache(read_source) if read_source is not None else None
        model = AppModel(snapshot, reader)
    owners: dict[tuple[int, ...], _Owners] = {}
    return [classify_socket(s, model, owners) for s in snapshot.sockets]
