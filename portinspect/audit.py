"""Pure: the listeners, their processes, the interfaces and the tunnels -> the ways in, worst first.

Nothing here touches the OS: api.run_audit() gathers the facts (Facts) and runs the optional
probes, whose answers apply_probes() reads.

A way in is a listener on a wildcard or non-loopback address, a port a container publishes,
or a local port a tunnel forwards to the outside (tunnels.py reads the clients' argv). What a
listener is, how dangerous it is when reachable and how to close it comes from dangers.py's
rows; here the rows' verdicts become findings: grouped per served port, given the interface
addresses that reach them, matched to the tunnels that publish them, sorted worst first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from portinspect import managers
from portinspect.dangers import (
    BY_KEY,
    DANGERS,
    LEVELS,
    Level,
    ProbeResult,
    Subject,
    Verdict,
    judge,
    subject,
)
from portinspect.models import Family, InterfaceAddress, Listener, ProcessInfo, Proto
from portinspect.models.audit import Finding as Finding
from portinspect.models.audit import ProbeRequest as ProbeRequest
from portinspect.models.audit import Via as Via
from portinspect.tunnels import PUBLIC, Target, Tunnel

__all__ = [
    "LEVELS",
    "AuditReport",
    "Facts",
    "Finding",
    "Level",
    "ProbeRequest",
    "ProbeResult",
    "Via",
    "apply_probes",
    "assess",
    "at_or_above",
    "counts",
    "probes",
    "worst_by_port",
]


def at_or_above(findings: Iterable[Finding], level: Level) -> list[Finding]:
    return [f for f in findings if f.level.rank >= level.rank]


# How a finding is reached, most direct first in the report.
NETWORK = "network"  # the listener's own address is beyond loopback
TUNNEL = "tunnel"  # a tunnel client forwards it to the outside
CONTAINER = "container"  # a container runtime publishes it
LOOPBACK = "loopback"  # reachable from this machine only (listed with --all)
_EXPOSURE_ORDER = {TUNNEL: 0, NETWORK: 1, CONTAINER: 2, LOOPBACK: 3}


@dataclass(frozen=True, slots=True)
class Facts:
    """What api.audit() gathered: the machine as the audit sees it."""

    listeners: Sequence[Listener]
    interfaces: Sequence[InterfaceAddress] = ()
    tunnels: Sequence[Tunnel] = ()
    # path -> text of the Python scripts the listeners run (app.run(debug=True) lives there).
    sources: Mapping[str, str] = field(default_factory=dict)
    root: bool = False  # the caller is root: a hidden owner is another namespace, not a user
    # (proto, port) -> whether the `::` socket there is IPv6-only (Linux's sock_diag says); a
    # `::` socket missing here is taken as dual-stack, Linux's and macOS's default.
    v6only: Mapping[tuple[Proto, int], bool] = field(default_factory=dict)


def _container(s: Subject) -> tuple[managers.ContainerProxy, ProcessInfo] | None:
    for proc in s.processes:
        proxy = managers.container_proxy(proc)
        if proxy is not None:
            return proxy, proc
    return None


def _container_finding(s: Subject, base: Finding) -> Finding:
    found = _container(s)
    assert found is not None
    proxy, proc = found
    inner = proxy["container_port"]
    where = None
    if proxy["container_ip"] and inner is not None:
        where = f"{proxy['container_ip']}:{inner}"
    row = next((d for d in DANGERS if inner in d.ports and d.container_level), None)
    runtime = proxy["runtime"]
    find = f"docker ps --filter publish={s.port}" if runtime == "docker" else "podman ps"
    fix = (
        f"publish it on loopback only: -p 127.0.0.1:{s.port}:{inner or 'PORT'} (compose: "
        f'ports: ["127.0.0.1:{s.port}:{inner or "PORT"}"]); find it with `{find}`'
    )
    via = Via("container", proc.pid, proxy["proxy"], container=where)
    if row is not None:
        assert row.container_level is not None
        return replace(
            base,
            level=row.container_level,
            key=row.key,
            what=f"container port {inner} ({row.what}, by its port)",
            reason=row.reason,
            evidence=(f"{proxy['proxy']} publishes container port {inner}, {row.what}'s default",),
            unknown=("what runs in the container and whether it asks for a password",),
            fix=fix,
            exposure=CONTAINER,
            via=via,
        )
    return replace(
        base,
        level=Level.MEDIUM,
        key="container",
        what=f"container port {inner if inner is not None else '?'} ({runtime})",
        reason="a container's published port: reachable from other machines",
        evidence=(f"{proxy['proxy']} (pid {proc.pid}) publishes it",),
        unknown=("what runs in the container",),
        fix=fix,
        exposure=CONTAINER,
        via=via,
    )


def _hidden_finding(s: Subject, base: Finding, root: bool) -> Finding:
    owner = s.listener.user or "another user"
    if root:
        why = "its owner is not visible even to root (another pid namespace, or the kernel)"
        fix = "look where it runs: a container (`docker ps`) or the kernel (nfsd, rpcbind)"
    else:
        why = f"it belongs to {owner}, whose processes are hidden from you"
        fix = "run `sudo portinspect audit` to see what it is"
    return replace(
        base,
        level=Level.MEDIUM,
        key="hidden",
        what="unknown service (owner hidden)",
        reason="reachable from other machines; " + why,
        unknown=("what it is",),
        fix=fix,
    )


def _probe_host(address: str) -> str | None:
    """The loopback address that reaches a listener bound to `address`, if one does."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_loopback:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return None


def _reachable_on(
    addresses: Sequence[str], interfaces: Sequence[InterfaceAddress], v6only: bool | None
) -> tuple[InterfaceAddress, ...]:
    """The interface addresses other machines can use to reach these bound addresses.

    A wildcard is every non-loopback address of its family; `::` also takes IPv4 unless the
    socket is IPv6-only (v6only None: not known, taken as dual-stack).
    """
    found: list[InterfaceAddress] = []
    for address in addresses:
        for iface in interfaces:
            if _is_loopback(iface.address):
                continue
            if address in ("0.0.0.0", "::ffff:0.0.0.0"):
                hit = iface.family is Family.IPV4
            elif address == "::":
                hit = iface.family is Family.IPV6 or not v6only
            else:
                hit = iface.address == address.split("%", 1)[0]
            if hit and iface not in found:
                found.append(iface)
    return tuple(found)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_WILDCARDS = ("0.0.0.0", "::", "::ffff:0.0.0.0")


def _groups(listeners: Sequence[Listener]) -> list[list[Listener]]:
    """One group per served port: the IPv4 and IPv6 sockets of one app are one way in.
    The most exposed socket (a wildcard, then any non-loopback address) comes first."""
    groups: dict[tuple[Any, ...], list[Listener]] = {}
    for li in listeners:
        owner: Any = li.app_pid if li.app_pid is not None else ("uid", li.uid, li.address)
        groups.setdefault((li.proto, li.port, owner), []).append(li)
    ordered = []
    for group in groups.values():
        group.sort(key=lambda li: (li.address not in _WILDCARDS, not li.exposed))
        ordered.append(group)
    return ordered


def _listener_finding(
    group: Sequence[Listener], facts: Facts
) -> tuple[Finding, Subject, Verdict | None]:
    """The finding as it would be were the listener reachable from outside (the caller
    makes it a loopback one when it is not), its subject, and the row's verdict."""
    s = subject(group, facts.sources)
    li = s.listener
    top = s.top
    exposed_addresses = tuple(x.address for x in group if x.exposed)
    base = Finding(
        level=Level.INFO,
        key="other",
        what="service",
        reason="",
        fix="",
        exposure=NETWORK,
        port=li.port,
        proto=li.proto,
        address=li.address,
        addresses=s.addresses,
        pid=li.pid,
        program=li.process,
        user=li.user,
        framework=li.framework,
        server=li.server,
        reachable_on=_reachable_on(
            exposed_addresses, facts.interfaces, facts.v6only.get((li.proto, li.port))
        ),
    )
    if li.owner_hidden:
        return _hidden_finding(s, base, facts.root), s, None
    if _container(s) is not None:
        return _container_finding(s, base), s, None
    verdict = judge(s)
    host = _probe_host(li.address)
    row = verdict.row
    found = replace(
        base,
        level=verdict.level,
        key=row.key,
        what=verdict.what,
        reason=verdict.reason,
        fix=verdict.fix,
        evidence=verdict.evidence,
        unknown=verdict.unknown,
        probe_settles=verdict.probe_settles,
        probe=ProbeRequest(host, li.port, row.probe.path) if row.probe and host else None,
        user=top.user if top is not None and top.user else li.user,
    )
    return found, s, verdict


def _as_loopback(found: Finding) -> Finding:
    return replace(
        found,
        level=Level.INFO,
        exposure=LOOPBACK,
        reason="loopback only: other machines cannot reach it, every local user and program "
        f"can (reachable from outside, it would be {found.level})",
        fix="nothing while it stays on loopback and no tunnel forwards it",
    )


# ---------------------------------------------------------------------------------------
# Tunnels
# ---------------------------------------------------------------------------------------

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _target_is_local(t: Target, interfaces: Sequence[InterfaceAddress]) -> bool:
    if t.host is None or t.host.lower() in _LOCAL_NAMES or t.host.endswith(".localhost"):
        return True
    if _is_loopback(t.host) or t.host in _WILDCARDS:
        return True
    return any(iface.address == t.host for iface in interfaces)


def _serves_target(li: Listener, t: Target) -> bool:
    """Does a connection to the tunnel's target reach this listener?"""
    if li.proto is not Proto.TCP or li.port != t.port:
        return False
    if li.address in _WILDCARDS or _is_loopback(li.address):
        return t.host is None or _is_loopback_name(t.host) or t.host in _WILDCARDS
    return t.host == li.address


def _is_loopback_name(host: str) -> bool:
    lowered = host.lower()
    return lowered in _LOCAL_NAMES or lowered.endswith(".localhost") or _is_loopback(host)


def _via(t: Tunnel) -> Via:
    return Via(
        t.kind,
        t.pid,
        t.kind,
        command=t.command,
        public=t.public,
        access=t.access,
    )


def _stop_tunnel(t: Tunnel) -> str:
    who = f"pid {t.pid}" if t.pid is not None else "its process"
    return (
        f"stop the tunnel ({t.kind}, {who}: `kill {t.pid}` or Ctrl-C where it runs); "
        "`portinspect kill` does not apply: a tunnel holds no listening socket"
        if t.pid is not None
        else f"stop the tunnel ({t.kind}); `portinspect kill` does not apply to tunnels"
    )


_ACCESS_TEXT = {
    PUBLIC: "public: anyone with the URL",
    "login": "public, behind the tunnel's login",
    "account": "the signed-in account",
    "tailnet": "every device of your tailnet",
    "remote-host": "whoever can reach that port on the ssh server",
}


def _tunnel_evidence(t: Tunnel, target: Target | None) -> str:
    where = f" to {t.public}" if t.public else ""
    port = f" port {target.port}" if target is not None else ""
    access = _ACCESS_TEXT.get(t.access, t.access)
    return f"{t.kind} (pid {t.pid}) forwards{port}{where} ({access})"


def _tunnel_findings(
    t: Tunnel,
    judged: Sequence[tuple[Finding, Subject, Verdict | None]],
    facts: Facts,
) -> list[Finding]:
    via = _via(t)
    stop = _stop_tunnel(t)
    found: list[Finding] = []
    if t.everything:
        found.append(
            Finding(
                level=Level.HIGH,
                key="tunnel",
                what=f"{t.kind} dynamic remote forward",
                reason="the ssh server's side gets a SOCKS proxy through this machine: every "
                "port of it, loopback-only services included",
                fix=stop,
                exposure=TUNNEL,
                evidence=(_tunnel_evidence(t, None),),
                via=via,
            )
        )
    if not t.targets and t.unknown is not None:
        found.append(
            Finding(
                level=Level.MEDIUM,
                key="tunnel",
                what=f"{t.kind} tunnel",
                reason="a tunnel publishes local services; which ones is not on its command line",
                fix=stop,
                exposure=TUNNEL,
                evidence=(_tunnel_evidence(t, None),),
                unknown=(t.unknown,),
                via=via,
            )
        )
    for target in t.targets:
        if not _target_is_local(target, facts.interfaces):
            found.append(
                Finding(
                    level=Level.MEDIUM,
                    key="tunnel",
                    what=f"{t.kind} tunnel to {target.host}:{target.port}",
                    reason="it forwards the outside to another machine, through this one",
                    fix=stop,
                    exposure=TUNNEL,
                    port=target.port,
                    proto=Proto.TCP,
                    address=target.host,
                    evidence=(_tunnel_evidence(t, target),),
                    via=via,
                )
            )
            continue
        matched = [j for j in judged if _serves_target(j[1].listener, target)]
        if not matched:
            found.append(
                Finding(
                    level=Level.MEDIUM,
                    key="tunnel",
                    what=f"{t.kind} tunnel to port {target.port}",
                    reason=f"nothing listens on port {target.port} now: whatever starts there "
                    "will be published",
                    fix=stop,
                    exposure=TUNNEL,
                    port=target.port,
                    proto=Proto.TCP,
                    evidence=(_tunnel_evidence(t, target),),
                    via=via,
                )
            )
        for finding, subj, verdict in matched:
            found.append(_through_tunnel(finding, subj, verdict, t, target, via, stop))
    return found


def _through_tunnel(
    finding: Finding,
    s: Subject,
    verdict: Verdict | None,
    t: Tunnel,
    target: Target,
    via: Via,
    stop: str,
) -> Finding:
    disarm = verdict.row.disarm if verdict is not None else None
    # A tunnel is there to publish: even a production server behind one is worth a look.
    level = max(finding.level, Level.MEDIUM, key=lambda lv: lv.rank)
    fix = stop
    if disarm and level is Level.CRITICAL:
        fix = f"{stop}; before sharing it again: {disarm}"
    return replace(
        finding,
        level=level,
        fix=fix,
        exposure=TUNNEL,
        evidence=(_tunnel_evidence(t, target), *finding.evidence),
        via=via,
        reachable_on=(),
    )


# ---------------------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------------------


def assess(facts: Facts, *, include_loopback: bool = False) -> list[Finding]:
    """Every way in, worst first: listeners beyond loopback, published container ports, and
    local ports forwarded by tunnels. Loopback-only listeners (info) only with include_loopback:
    they are not reachable from other machines, and every machine has a dozen of them."""
    judged = [_listener_finding(group, facts) for group in _groups(facts.listeners)]
    findings = [
        found if s.listener.exposed else _as_loopback(found)
        for found, s, _verdict in judged
        if include_loopback or s.listener.exposed
    ]
    for tunnel in facts.tunnels:
        findings += _tunnel_findings(tunnel, judged, facts)
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (
            -f.level.rank,
            _EXPOSURE_ORDER[f.exposure],
            f.port if f.port is not None else -1,
            f.proto.value if f.proto else "",
            (f.via.pid or 0) if f.via else 0,
        ),
    )


def probes(findings: Iterable[Finding]) -> list[ProbeRequest]:
    """The requests --probe makes: one per distinct (loopback address, port, path)."""
    return list(dict.fromkeys(f.probe for f in findings if f.probe is not None))


def apply_probes(
    findings: Iterable[Finding], results: Mapping[ProbeRequest, ProbeResult]
) -> list[Finding]:
    """The findings with what each probe showed: the level and the unknowns it settles."""
    updated = []
    for f in findings:
        result = results.get(f.probe) if f.probe is not None else None
        row = BY_KEY.get(f.key)
        if result is None or row is None or row.probe is None:
            updated.append(f)
            continue
        level, shown, conclusive = row.probe.read(result, f.level)
        if f.exposure == LOOPBACK:
            level = Level.INFO
        elif f.exposure == TUNNEL:
            level = max(level, Level.MEDIUM, key=lambda lv: lv.rank)
        unknown = f.unknown
        if conclusive:
            unknown = tuple(u for u in unknown if u not in f.probe_settles)
        updated.append(replace(f, level=level, probed=shown, unknown=unknown))
    return sort_findings(updated)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    found = {lv.value: 0 for lv in LEVELS}
    for f in findings:
        found[f.level.value] += 1
    return found


def worst_by_port(findings: Iterable[Finding]) -> dict[tuple[str, int], Level]:
    """(proto, port) -> the worst level found for it: `list --risk`'s column."""
    worst: dict[tuple[str, int], Level] = {}
    for f in findings:
        if f.port is None or f.proto is None:
            continue
        key = (f.proto.value, f.port)
        if key not in worst or f.level.rank > worst[key].rank:
            worst[key] = f.level
    return worst


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What `audit` found: every way in, worst first, and the facts it was judged from."""

    findings: list[Finding]
    interfaces: list[InterfaceAddress]
    tunnels: list[Tunnel]
    owners_hidden: bool
    probed: bool  # --probe ran: each probe-able finding got at most one loopback request
    privileged: bool = False  # root: hidden owners are the kernel's or another namespace's

    def to_dict(self, fail_on: Level) -> dict[str, Any]:
        """`audit --json`: the findings, worst first, and what they were judged from."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "fail_on": fail_on.value,
            "counts": counts(self.findings),
            "probed": self.probed,
            "interfaces": [a.to_dict() for a in self.interfaces],
            "tunnels": [t.to_dict() for t in self.tunnels],
        }
