"""The library's entry points; the CLI calls exactly these."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from portinspect import scanner
from portinspect.inputs import check_ports, check_proto
from portinspect.models import Listener, ProcessInfo, Proto

if TYPE_CHECKING:
    from portinspect.audit import AuditReport
    from portinspect.models.app import PortState, PortView, WhoReport
    from portinspect.tunnels import Tunnel


@dataclass(frozen=True, slots=True)
class ScanResult:
    listeners: list[Listener]
    # Some owner could not be seen: not root, /proc hidepid, or macOS without root
    # (where other users' sockets cannot even be listed).
    owners_hidden: bool
    # We see every process (root): hidden owners are the kernel's or another namespace's.
    privileged: bool = False

    def exposed(self) -> ScanResult:
        """Only the listeners reachable beyond loopback (`list --exposed`)."""
        return replace(self, listeners=[li for li in self.listeners if li.exposed])

    def to_dict(self, risks: Mapping[tuple[str, int], str] | None = None) -> dict[str, Any]:
        """`list --json`: every listener; with risks (`--risk`), each one's audit level."""
        rows = [li.to_dict() for li in self.listeners]
        if risks is not None:
            rows = [{**row, "risk": risks.get((row["proto"], row["port"]))} for row in rows]
        return {"listeners": rows}


def risk_levels(result: ScanResult) -> dict[tuple[str, int], str]:
    """(proto, port) -> the audit's worst level there (`list --risk`), from the same scan."""
    from portinspect import audit

    report = run_audit(include_loopback=True, scanned=result)
    return {key: level.value for key, level in audit.worst_by_port(report.findings).items()}


def scan_result(
    ports: int | Iterable[int] | None = None,
    proto: Proto | str | None = None,
    *,
    backend: str | None = None,
) -> ScanResult:
    """scan(), and whether some owners were hidden from us."""
    from portinspect import appsource, classifier  # only the commands that list need them

    snapshot = scanner.collect(check_ports(ports), check_proto(proto), backend=backend)
    # One deadline for every app module the recognition step reads (appsource.py).
    with appsource.SourceReader() as read_source:
        listeners = classifier.classify(snapshot, read_source)
    return ScanResult(listeners, snapshot.owners_hidden, snapshot.privileged)


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
    from portinspect import apptree, classifier
    from portinspect.models.app import PortView

    snapshot = scanner.collect([port], protos or frozenset(Proto), backend=backend, complete=True)
    roots = apptree.subtree_roots(snapshot)
    snapshot = scanner.with_subtrees(snapshot, roots, backend=backend)
    model = apptree.AppModel(snapshot, scanner.read_source)
    listeners = classifier.classify(snapshot, model=model)
    apps = model.apps(snapshot.sockets, trees=True)
    return PortView(port, snapshot, tuple(listeners), apps)


def port_state(port: int, *, backend: str | None = None) -> PortState:
    """What may make a bind on `port` fail though nothing listens there: sockets bound to it
    without listening, TIME_WAIT and other connections using it as their local port, and
    the binds a server would make, tried the way `free` tries them (closed at once)."""
    from portinspect import bindprobe
    from portinspect.models.app import PortState

    states = scanner.local_port_states(port, backend=backend)
    sockets: dict[str, int] = {}
    for state, count in states.items():
        # A socket bound and not listening reports CLOSE (or BOUND_INACTIVE from 6.18 on).
        name = "bound" if state in ("close", "bound-inactive") else state
        sockets[name] = sockets.get(name, 0) + count
    uid = scanner.taken_ports({Proto.TCP}, backend=backend)[1].get(port)
    failure = bindprobe.Prober({Proto.TCP}).failure(port)
    bind_error = None
    if failure is not None:
        proto, host, code = failure
        bind_error = (host, proto.value, bindprobe.errno_text(code))
    low, high = scanner.ephemeral_range()
    user = None if uid is None else scanner.user_name(uid)
    return PortState(port, sockets, user, bind_error, ephemeral=low <= port <= high)


def who(port: int, *, backend: str | None = None) -> WhoReport:
    """`who PORT`: the port's view with the audit's verdict for it (loopback included), or,
    when nothing listens there, its state."""
    from portinspect.models.app import WhoReport

    view = port_view(port, backend=backend)
    if not view.listeners:
        return WhoReport(port, view, [], port_state(port, backend=backend))
    snapshot = view.snapshot
    scanned = ScanResult(list(view.listeners), snapshot.owners_hidden, snapshot.privileged)
    findings = run_audit(port, include_loopback=True, scanned=scanned, backend=backend).findings
    return WhoReport(port, view, findings)


def run_audit(
    ports: int | Iterable[int] | None = None,
    *,
    probe: bool = False,
    include_loopback: bool = False,
    scanned: ScanResult | None = None,
    backend: str | None = None,
) -> AuditReport:
    """Every way into this machine from outside, worst first (see portinspect.audit).

    ports: only findings about these ports (`who` asks for one). probe: make one HTTP request
    over loopback per finding that a probe can settle (Jupyter's token, the Werkzeug
    debugger, Django's DEBUG); never to any other address. include_loopback: list
    loopback-only listeners too (as info). scanned: a scan of those ports already made
    (`who`, `list --risk`), so the sockets are not read twice.
    """
    from portinspect import audit, dangers

    wanted = check_ports(ports)
    result = scanned if scanned is not None else scan_result(wanted, backend=backend)
    listeners = result.listeners
    tunnels = _tunnels(backend)
    paths = dangers.script_paths(listeners)
    sources = {p: text for p in paths if (text := scanner.read_source(p)) is not None}
    interfaces = scanner.interface_addresses(backend=backend)
    facts = audit.Facts(
        listeners,
        interfaces,
        tunnels,
        sources,
        root=result.privileged,
        v6only=_v6only(listeners, backend),
    )
    findings = audit.assess(facts, include_loopback=include_loopback)
    if wanted is not None:
        findings = [f for f in findings if f.port in wanted]
    if probe:
        from portinspect.audit_probe import http_get

        results = {request: http_get(request) for request in audit.probes(findings)}
        findings = audit.apply_probes(findings, results)
    return audit.AuditReport(
        findings, interfaces, tunnels, result.owners_hidden, probe, result.privileged
    )


def _tunnels(backend: str | None) -> list[Tunnel]:
    """Every running tunnel client (ssh -R, ngrok, cloudflared...), with its user."""
    import os

    from portinspect import tunnels
    from portinspect.cmdline import parse_command

    found = [
        tunnel
        for pid, argv in scanner.command_lines(backend=backend)
        if pid != os.getpid() and parse_command(argv).program in tunnels.PROGRAMS
        if (tunnel := tunnels.parse(argv, pid=pid)) is not None
    ]
    if not found:
        return found
    infos = scanner.read_processes([t.pid for t in found if t.pid is not None], backend=backend)
    return [replace(t, user=infos[t.pid].user) if t.pid in infos else t for t in found]


def _v6only(listeners: Iterable[Listener], backend: str | None) -> dict[tuple[Proto, int], bool]:
    """For each `::` listener: is it IPv6-only? One more netlink dump (on Linux) of its ports, so
    `::` on a dual-stack socket is reachable on IPv4 addresses too, and on an IPv6-only one not."""
    wild = {(li.proto, li.port) for li in listeners if li.address == "::"}
    if not wild:
        return {}
    protos = {proto for proto, _ in wild}
    sockets = scanner.listening_addresses(protos, {port for _, port in wild}, backend=backend)
    return {
        (s.proto, s.port): s.v6only
        for s in sockets
        if s.address == "::" and s.v6only is not None and (s.proto, s.port) in wild
    }
