"""The library's entry points; the CLI calls exactly these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from portinspect import classifier, scanner
from portinspect.errors import UsageError
from portinspect.models import Listener, ProcessInfo, Proto
from portinspect.portspec import MAX_PORT, MIN_PORT


def _ports(ports: int | Iterable[int] | None) -> frozenset[int] | None:
    if ports is None:
        return None
    if isinstance(ports, (str, bytes)) or not isinstance(ports, (int, Iterable)):
        raise UsageError(f"invalid ports {ports!r}: expected an int or an iterable of ints")
    wanted = frozenset([ports] if isinstance(ports, int) else ports)
    for port in wanted:
        if isinstance(port, bool) or not isinstance(port, int) or not MIN_PORT <= port <= MAX_PORT:
            raise UsageError(f"invalid port {port!r}: ports run from 1 to 65535")
    return wanted


def _protos(proto: Proto | str | None) -> frozenset[Proto]:
    if proto is None:
        return scanner.ALL_PROTOS
    try:
        return frozenset([Proto(proto)])
    except ValueError:
        raise UsageError(f"invalid protocol {proto!r}: expected tcp or udp") from None


@dataclass(frozen=True, slots=True)
class ScanResult:
    listeners: list[Listener]
    # Some owner could not be seen: not root, /proc hidepid, or macOS without root
    # (where other users' sockets cannot even be listed).
    owners_hidden: bool


def scan_result(
    ports: int | Iterable[int] | None = None,
    proto: Proto | str | None = None,
    *,
    backend: str | None = None,
) -> ScanResult:
    """scan(), and whether some owners were hidden from us."""
    snapshot = scanner.collect(_ports(ports), _protos(proto), backend=backend)
    return ScanResult(classifier.classify(snapshot, scanner.read_source), snapshot.owners_hidden)


def scan(
    ports: int | Iterable[int] | None = None,
    proto: Proto | str | None = None,
    *,
    backend: str | None = None,
) -> list[Listener]:
    """Every listening TCP socket and bound UDP socket (IPv4 and IPv6), classified.

    ports: only these ports (an int or any iterable of ints); all when None.
    proto: "tcp" or "udp"; both when None.
    backend: "auto" (default), "linux" or "psutil".

    Each Listener carries its holders (all processes sharing the socket, the app's
    top process first), IANA range, ephemeral flag, service name, exposure, framework,
    server and app_pid. A socket owned by another user is listed with pid None and
    the owning user named (on Linux); it is never dropped.
    """
    return scan_result(ports, proto, backend=backend).listeners


def app_trees(listeners: Iterable[Listener]) -> dict[int, dict[int, ProcessInfo]]:
    """For each app root among the listeners, the root and all its descendants."""
    roots = {li.app_pid for li in listeners if li.app_pid is not None}
    return {root: scanner.process_tree(root) for root in sorted(roots)}
