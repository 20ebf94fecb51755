"""wait_for(): until every target is ready (or, with free=True, no listener is left), or time
runs out.

A target of this machine (a bare port, localhost, a loopback or interface address) is decided
by the kernel's socket table, not by connecting, and the address counts: 127.0.0.1:P needs a
listener that accepts on 127.0.0.1 (bound there, to 0.0.0.0, or to an IPv6 wildcard that is
not IPv6-only), so a server on ::1 alone does not satisfy it, as it would not satisfy a client
tied to 127.0.0.1. A bare port takes a listener on any address, localhost one on 127.0.0.1 or
::1. The server never sees a probe, except the GET of an http:// target, which goes to the
address the user named.

Any other host is probed (probes.py): its name resolved again at each attempt, a TCP connect
(or, for http(s)://, a GET answered below 500), with backoff from `interval` up to a second,
each attempt bounded. Nothing is contacted that the user did not name.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from portinspect import scanner
from portinspect.errors import UsageError, WaitTimeoutError
from portinspect.inputs import check_proto, check_seconds, check_targets
from portinspect.models import Family, Proto, Socket, TargetReport, WaitResult, WaitTarget

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "MIN_INTERVAL",
    "WaitResult",
    "accepts",
    "listening_ports",
    "validate",
    "wait_for",
]

DEFAULT_TIMEOUT = 30.0
# 100 ms keeps a wait cheap (one socket-table read per poll, about 1 ms on an idle
# machine) while adding at most a tenth of a second to a CI step.
DEFAULT_INTERVAL = 0.1
MIN_INTERVAL = 0.001
# Probes of other hosts back off from `interval`, doubling, to one attempt a second: the
# pace of wait-for-it, and a service that comes up is seen within a second.
MAX_BACKOFF = 1.0
# The longest one attempt (a lookup, a connect, a GET) may take before it counts as failed:
# a LAN or a compose network answers in milliseconds, and a lookup still running after it is
# waited on again by the next attempt (probes.Resolver), so no work is lost.
ATTEMPT_SECONDS = 2.0
# The least an attempt is given near the deadline (and with timeout 0, which checks once).
MIN_ATTEMPT_SECONDS = 0.25
# What localhost stands for. Not resolved: /etc/hosts often maps it to one family only,
# while a server on either loopback is on "this machine" for anyone who types localhost.
LOCALHOST = ("127.0.0.1", "::1")
TABLE, CONNECT, HTTP, RESOLVE = "socket-table", "connect", "http", "resolve"

if TYPE_CHECKING:
    from portinspect.probes import Resolver

Update = Callable[[TargetReport], None]


def listening_ports(ports: frozenset[int], protos: frozenset[Proto]) -> frozenset[int]:
    """Which of `ports` have a listener now, on any address, whoever owns it."""
    return ports & scanner.listening_ports(protos)


# --- the socket table's verdict (pure) --------------------------------------------------------


class Verdict(Enum):
    ACCEPTS = "accepts"
    REFUSES = "refuses"
    UNSURE = "unsure"  # an IPv6 wildcard, and the OS did not say whether it takes IPv4


@functools.lru_cache(maxsize=4096)
def _canonical(address: str) -> str:
    """An address as the targets spell it: IPv6 compressed, no zone, ::ffff:a.b.c.d as a.b.c.d."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"  # kept apart from a plain IPv4 bind: see accepts()
    return str(ip)


def accepts(sock: Socket, address: str) -> Verdict:
    """Whether a listener takes connections to `address`, an IP of this machine (canonical).

    An IPv4 socket takes its own address or, bound to 0.0.0.0, any. An IPv6 socket takes its
    own address or, bound to ::, any IPv6 one, and IPv4 ones too unless it is IPv6-only; bound
    to ::ffff:a.b.c.d it takes IPv4 a.b.c.d (Linux).
    """
    bound = _canonical(sock.address)
    ipv4 = ":" not in address
    if sock.family is Family.IPV4:
        return Verdict.ACCEPTS if ipv4 and bound in ("0.0.0.0", address) else Verdict.REFUSES
    if not ipv4:
        return Verdict.ACCEPTS if bound in ("::", address) else Verdict.REFUSES
    if bound == "::":
        if sock.v6only is None:
            return Verdict.UNSURE
        return Verdict.REFUSES if sock.v6only else Verdict.ACCEPTS
    return Verdict.ACCEPTS if bound in ("::ffff:0.0.0.0", f"::ffff:{address}") else Verdict.REFUSES


# --- what each target needs ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    target: WaitTarget
    # The addresses to check: None for a bare port (any address), () for a host name
    # (resolved at every attempt).
    addresses: tuple[str, ...] | None
    local: bool  # the socket table decides (the addresses are this machine's)


@dataclass(frozen=True, slots=True)
class _Check:
    """One look at one target."""

    ready: bool
    via: tuple[str, ...]
    address: str | None = None
    http_status: int | None = None
    error: str | None = None
    networked: bool = False  # a lookup, connect or GET happened: retry with backoff


def _is_loopback(address: str) -> bool:
    return address == "::1" or address.startswith("127.")


def _plan(target: WaitTarget, local_ips: Callable[[], frozenset[str]]) -> _Plan:
    host = target.host
    if host is None:
        return _Plan(target, None, local=True)
    if host == "localhost":
        return _Plan(target, LOCALHOST, local=True)
    if not _is_address(host):
        return _Plan(target, (), local=False)
    local = _is_loopback(host) or host.split("%")[0] in local_ips()
    return _Plan(target, (host,), local=local)


def _is_address(host: str) -> bool:
    # inputs.parse_host wrote IP addresses canonically; a host name has a letter in its
    # last label, and never a ':'.
    return ":" in host or host.rpartition(".")[2].isdigit()


def _refuse(plan: _Plan, proto: Proto, free: bool) -> None:
    target = plan.target
    if free and (target.http or not plan.local):
        raise UsageError(
            f"cannot wait for {target} to be free: only ports of this machine"
            " (PORT, localhost:PORT or one of its addresses) can be"
        )
    if proto is Proto.UDP and (target.http or not plan.local):
        raise UsageError(
            f"cannot wait for {target} over UDP: only this machine's socket table"
            " shows UDP sockets (PORT, localhost:PORT or one of its addresses)"
        )


# --- the checks ---------------------------------------------------------------------------


class _Checker:
    """Runs one check of a target: the socket table (read at most once per round) and probes."""

    def __init__(self, proto: Proto, free: bool, ports: frozenset[int]) -> None:
        self.proto = proto
        self.free = free
        self.ports = ports
        self._table: list[Socket] | None = None
        self._local_ips: frozenset[str] | None = None
        self._resolver: Resolver | None = None

    def new_round(self) -> None:
        self._table = None

    def table(self) -> list[Socket]:
        if self._table is None:
            self._table = scanner.listening_addresses([self.proto], self.ports)
        return self._table

    def local_ips(self) -> frozenset[str]:
        if self._local_ips is None:
            self._local_ips = scanner.local_addresses()
        return self._local_ips

    def check(self, plan: _Plan, budget: float) -> _Check:
        target = plan.target
        if plan.addresses is None:
            return self._bare(target.port)
        if plan.addresses:
            return self._at(target, plan.addresses, plan.local, budget)
        from portinspect import probes

        if self._resolver is None:
            self._resolver = probes.Resolver()
        deadline = time.monotonic() + budget
        try:
            assert target.host is not None
            found = self._resolver.resolve(target.host, target.port, budget)
        except probes.ProbeFailed as exc:
            return _Check(False, (RESOLVE,), error=str(exc), networked=True)
        # Each address as it is: this machine's by the table (in the table's spelling),
        # others by a probe (as resolved: an IPv6 link-local address keeps its zone).
        addresses: list[tuple[str, bool]] = []
        for raw in map(probes.address_text, found):
            canonical = _canonical(raw)
            local = _is_loopback(canonical) or canonical in self.local_ips()
            addresses.append((canonical, True) if local else (raw, False))
        check = self._mixed(target, addresses, deadline)
        return _Check(
            check.ready,
            (RESOLVE, *check.via),
            check.address,
            check.http_status,
            check.error,
            networked=True,
        )

    def _mixed(
        self, target: WaitTarget, addresses: list[tuple[str, bool]], deadline: float
    ) -> _Check:
        """The first of a name's addresses that is ready, in the resolver's order."""
        reasons: list[str] = []
        last = _Check(False, ())
        for address, local in addresses:
            budget = max(deadline - time.monotonic(), 0.05)
            last = self._at(target, (address,), local, budget)
            if last.ready:
                return last
            reasons.append(f"{address}: {last.error}" if len(addresses) > 1 else str(last.error))
        return _Check(False, last.via, error="; ".join(reasons) or "no address", networked=True)

    def _bare(self, port: int) -> _Check:
        bound = sorted({_canonical(s.address) for s in self.table() if s.port == port})
        if self.free:
            error = f"still listening on {', '.join(bound)}" if bound else None
            return _Check(not bound, (TABLE,), error=error)
        return _Check(bool(bound), (TABLE,), error=None if bound else "not listening")

    def _at(
        self, target: WaitTarget, addresses: tuple[str, ...], local: bool, budget: float
    ) -> _Check:
        if not local:
            return self._probe(target, addresses[0], budget, ())
        on_port = [s for s in self.table() if s.port == target.port]
        via: tuple[str, ...] = (TABLE,)
        open_at: list[str] = []
        for address in addresses:
            verdicts = {accepts(s, address) for s in on_port}
            if Verdict.ACCEPTS in verdicts:
                open_at.append(address)
            elif Verdict.UNSURE in verdicts:
                if self.free or self.proto is Proto.UDP:
                    # Free: a socket that may take the address still holds it. UDP: no way
                    # to ask, and dual-stack is the default on Linux and macOS.
                    open_at.append(address)
                elif self._connects(address, target.port, budget):
                    # The OS did not say whether the IPv6 wildcard takes IPv4: a connect to
                    # the address the user named does.
                    via = (TABLE, CONNECT)
                    open_at.append(address)
        if self.free:
            if not open_at:
                return _Check(True, via)
            return _Check(False, via, error=f"still listening on {', '.join(open_at)}")
        if not open_at:
            return _Check(False, via, error=_not_listening(addresses, on_port))
        if not target.http:
            return _Check(True, via, address=open_at[0])
        return self._probe(target, open_at[0], budget, via)

    def _connects(self, address: str, port: int, budget: float) -> bool:
        from portinspect import probes

        try:
            probes.connect(probes.address_of(address, port), budget)
        except probes.ProbeFailed:
            return False
        return True

    def _probe(
        self, target: WaitTarget, address: str, budget: float, via: tuple[str, ...]
    ) -> _Check:
        """A connect, or the GET of an http(s) target, to one address."""
        from portinspect import probes

        where = probes.address_of(address, target.port)
        try:
            if not target.http:
                probes.connect(where, budget)
                return _Check(True, (*via, CONNECT), address=address, networked=True)
            assert target.host is not None and target.path is not None
            status = probes.http_get(
                where,
                target.host,
                target.port,
                target.path,
                tls=target.scheme == "https",
                budget=budget,
            )
        except probes.ProbeFailed as exc:
            step = HTTP if target.http else CONNECT
            return _Check(False, (*via, step), error=str(exc), networked=True)
        ready = status < 500  # the server answers: a 404 or a redirect is a server that is up
        return _Check(
            ready,
            (*via, HTTP),
            address=address,
            http_status=status,
            error=None if ready else f"HTTP {status}",
            networked=True,
        )


def _not_listening(addresses: tuple[str, ...], on_port: list[Socket]) -> str:
    elsewhere = sorted({_canonical(s.address) for s in on_port})
    where = " or ".join(addresses)
    if not elsewhere:
        return "not listening"
    return f"not listening on {where} (only on {', '.join(elsewhere)})"


# --- the loop -------------------------------------------------------------------------------


class _Progress:
    """Where one target stands during the wait."""

    __slots__ = ("attempts", "delay", "due", "last", "plan", "ready_after")

    def __init__(self, plan: _Plan, delay: float) -> None:
        self.plan = plan
        self.attempts = 0
        self.due = 0.0  # seconds since the start at which to check next
        self.delay = delay
        self.last: _Check | None = None
        self.ready_after: float | None = None

    def report(self, proto: Proto) -> TargetReport:
        last = self.last or _Check(False, ())
        return TargetReport(
            target=self.plan.target,
            proto=proto,
            ready=self.ready_after is not None,
            ready_after=self.ready_after,
            via=last.via,
            attempts=self.attempts,
            address=last.address,
            http_status=last.http_status,
            error=None if self.ready_after is not None else last.error,
        )


def wait_for(
    targets: int | str | WaitTarget | Iterable[int | str | WaitTarget],
    *,
    free: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    proto: Proto | str | None = None,
    on_update: Update | None = None,
) -> WaitResult:
    """Block until every target is ready (or, with free=True, has no listener left).

    targets: a port (8000), a target as typed ("8000", "9000-9002", "127.0.0.1:8000",
    "[::1]:8000", "localhost:8000", "db:5432", "tcp://db:5432", "http://db:8080/health"),
    a WaitTarget, or an iterable of them.
    timeout: seconds, None to wait without limit; 0 checks each target once. Raises
    WaitTimeoutError (exit 124 in the CLI) naming what is still pending; its .result is the
    WaitResult with every target's report.
    interval: seconds between socket-table polls; probes of other hosts start there and
    back off to a second.
    proto: "tcp" (the default, also for None) or "udp" (this machine's targets only).
    on_update: called with a target's report whenever its state changes (ready, or another
    reason for not being ready).
    """
    limit = None if timeout is None else check_seconds(timeout, "timeout")
    pause = check_seconds(interval, "interval", minimum=MIN_INTERVAL)
    checker, plans = _prepare(targets, free, proto)
    progress = [_Progress(plan, pause) for plan in plans]
    return _loop(progress, checker, limit, pause, on_update)


def validate(
    targets: int | str | WaitTarget | Iterable[int | str | WaitTarget],
    *,
    free: bool = False,
    proto: Proto | str | None = None,
) -> tuple[WaitTarget, ...]:
    """The targets wait_for would wait for, or the UsageError it would raise, without waiting."""
    _, plans = _prepare(targets, free, proto)
    return tuple(plan.target for plan in plans)


def _prepare(
    targets: object, free: bool, proto: Proto | str | None
) -> tuple[_Checker, list[_Plan]]:
    wanted = check_targets(targets)
    (kind,) = check_proto(Proto.TCP if proto is None else proto)
    checker = _Checker(kind, free, frozenset(t.port for t in wanted))
    plans = [_plan(t, checker.local_ips) for t in wanted]
    for plan in plans:
        _refuse(plan, kind, free)
    return checker, plans


def _loop(
    progress: list[_Progress],
    checker: _Checker,
    limit: float | None,
    pause: float,
    on_update: Update | None,
) -> WaitResult:
    start = time.monotonic()
    polls = 0
    while True:
        polls += 1
        checker.new_round()
        for item in progress:
            now = time.monotonic() - start
            if item.ready_after is not None or item.due > now:
                continue
            left = math.inf if limit is None else limit - now
            budget = min(ATTEMPT_SECONDS, max(left, MIN_ATTEMPT_SECONDS))
            check = checker.check(item.plan, budget)
            item.attempts += 1
            seen = time.monotonic() - start
            before = item.last
            item.last = check
            if check.ready:
                item.ready_after = seen
            elif check.networked:
                item.due = seen + item.delay
                item.delay = min(item.delay * 2, max(MAX_BACKOFF, pause))
            else:
                item.due = seen + pause
            changed = before is None or check.ready or check.error != before.error
            if on_update is not None and changed:
                on_update(item.report(checker.proto))
        elapsed = time.monotonic() - start
        pending = [item for item in progress if item.ready_after is None]
        if not pending:
            return _result(progress, checker, elapsed, polls, limit, timed_out=False)
        if limit is not None and elapsed >= limit:
            result = _result(progress, checker, elapsed, polls, limit, timed_out=True)
            raise WaitTimeoutError(
                f"timed out after {limit:g}s: {_pending_text(result)}",
                pending=result.pending,
                elapsed=elapsed,
                result=result,
            )
        wake = min(item.due for item in pending)
        if limit is not None:
            wake = min(wake, limit)
        time.sleep(max(wake - (time.monotonic() - start), 0.0))


def _result(
    progress: list[_Progress],
    checker: _Checker,
    elapsed: float,
    polls: int,
    limit: float | None,
    *,
    timed_out: bool,
) -> WaitResult:
    reports = tuple(item.report(checker.proto) for item in progress)
    done = [r.ready_after for r in reports if r.ready_after is not None]
    return WaitResult(
        ports=tuple(sorted({r.target.port for r in reports})),
        free=checker.free,
        # When the condition held: the last target seen ready (not the end of the round).
        elapsed=elapsed if timed_out or not done else max(done),
        polls=polls,
        targets=reports,
        timed_out=timed_out,
        timeout=limit,
        proto=checker.proto,
    )


_SHOWN_PENDING = 4


def _pending_text(result: WaitResult) -> str:
    """What is still pending, in one line: `port 8000, 8001 not listening; db:5432: connection
    refused` (bare ports grouped as they always were)."""
    state = "still listening" if result.free else "not listening"
    pending = [r for r in result.targets if not r.ready]
    bare = [r.target.port for r in pending if r.target.host is None]
    parts = []
    if bare:
        more = f" and {len(bare) - 8} more" if len(bare) > 8 else ""
        shown = ", ".join(map(str, bare[:8])) + more
        parts.append(f"port {shown} {state}")
    others = [r for r in pending if r.target.host is not None]
    parts += [f"{r.target}: {r.error or state}" for r in others[:_SHOWN_PENDING]]
    if len(others) > _SHOWN_PENDING:
        parts.append(f"and {len(others) - _SHOWN_PENDING} more")
    return "; ".join(parts)
