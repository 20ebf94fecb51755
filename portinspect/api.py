"""The library's entry points; the CLI calls exactly these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from portinspect import apptree, classifier, scanner
from portinspect.inputs import check_ports, check_proto
from portinspect.models import Listener, PortView, ProcessInfo, Proto, Snapshot


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


def hidden_proxies(view: PortView) -> tuple[ProcessInfo, ...]:
    """docker-proxy processes publishing the port, found by command line.

    Without root the socket's owner is hidden, but /proc/<pid>/cmdline stays readable,
    and docker-proxy names the port it publishes (-host-port N).
    """
    if not any(li.owner_hidden for li in view.listeners):
        return ()
    return scanner.container_proxies(view.port)


def port_view(
    port: int, protos: frozenset[Proto] | None = None, *, backend: str | None = None
) -> PortView:
    """The sockets on `port` and the apps behind them, with every process that may belong.

    Every process's fds are walked (so a holder is never missed, even one a socket was
    passed to), and the subtrees the app model may take in are read: below each holder's
    topmost ancestor that could still be part of its app.
    """
    snapshot = scanner.collect([port], protos or frozenset(Proto), backend=backend, complete=True)
    roots = _subtree_roots(snapshot)
    snapshot = scanner.with_subtrees(snapshot, roots, backend=backend)
    model = apptree.AppModel(snapshot, scanner.read_source)
    listeners = classifier.classify(snapshot, model=model)
    apps = model.apps(snapshot.sockets, trees=True)
    return PortView(port, snapshot, tuple(listeners), apps)


def _subtree_roots(snapshot: Snapshot) -> set[int]:
    """For each holder, its highest ancestor that the app model could still take in."""
    roots: set[int] = set()
    processes = snapshot.processes
    for pid in {p for s in snapshot.sockets for p in s.pids if p in processes}:
        top, seen = pid, {pid}
        parent = processes.get(processes[pid].ppid or 0)
        while (
            parent is not None
            and parent.pid not in seen
            and apptree.outside(parent, snapshot.self_lineage) is None
        ):
            seen.add(parent.pid)
            top = parent.pid
            parent = processes.get(parent.ppid or 0)
        roots.add(top)
    return roots
