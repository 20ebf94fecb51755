"""The library's entry points; the CLI calls exactly these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from portinspect import appsource, classifier, scanner
from portinspect.inputs import check_ports, check_proto
from portinspect.models import Listener, ProcessInfo, Proto


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
    snapshot = scanner.collect(check_ports(ports), check_proto(proto), backend=backend)
    # One deadline for every app module the recognition step reads (appsource.py).
    with appsource.SourceReader() as read_source:
        listeners = classifier.classify(snapshot, read_source)
    return ScanResult(listeners, snapshot.owners_hidden)


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
