"""find_free_ports(): the nearest really free ports, leased so parallel callers never share one.

A candidate goes through these gates, in order:

1. policy   not privileged (< 1024), not in the OS ephemeral range, not on the browsers'
            unsafe list, unless the caller allows it (pure, no I/O);
2. scan     no listener on the port on any address, of any user: ONE dump of the kernel's
            socket table for the whole search, without the /proc owner walk (0.5 ms on an
            idle machine, of which 0.45 ms is the kernel walking its bind hash for gate 5;
            8-17 ms with 5k listeners);
3. lease    an advisory lease file for the port can be created in a per-user directory
            (leases.py), so a parallel caller at the same port is turned away. It comes
            before the probes so that every portinspect caller binds a port only while it
            holds its lease: a probe socket is then never taken for someone else's (gate 5);
4. probe    a bind succeeds on 127.0.0.1, 0.0.0.0, ::1 and :: (each ~9 us, perf.md §8);
5. bound    (Linux 6.8+) no TCP socket bound to the port and not listening, of any user,
            confirmed by a fresh dump when the first one showed one. The socket table is the
            authority here: a socket bound with SO_REUSEADDR passes a probe that sets it too.
A port that fails gate 4 or 5 gives its lease back.

A lease ends when its time is up (DEFAULT_LEASE_SECONDS), as soon as the port has a listener
(the caller's server bound it) unless it was taken with keep_while_bound, or, for leases taken
with release_on_exit, when the process that took it has exited. Nothing has to clean up after
a caller that died.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from portinspect import _interrupts, inputs, scanner
from portinspect.bindprobe import PROBE_ADDRESSES as PROBE_ADDRESSES
from portinspect.bindprobe import Prober as Prober
from portinspect.bindprobe import bind_error as bind_error
from portinspect.bindprobe import errno_text as errno_text
from portinspect.data import read_text
from portinspect.errors import NoFreePortError, UsageError
from portinspect.inputs import MAX_PORT, MIN_PORT, check_count, check_seconds, is_port, spans
from portinspect.leases import DEFAULT_LEASE_SECONDS as DEFAULT_LEASE_SECONDS
from portinspect.leases import LEASE_DIR_ENV as LEASE_DIR_ENV
from portinspect.leases import MAX_LEASE_SECONDS as MAX_LEASE_SECONDS
from portinspect.leases import Lease as Lease
from portinspect.leases import LeaseDirError as LeaseDirError
from portinspect.leases import LeaseDirWarning as LeaseDirWarning
from portinspect.leases import LeaseStore as LeaseStore
from portinspect.leases import lease_directory as lease_directory
from portinspect.leases import release_leases as release_leases
from portinspect.models import Proto
from portinspect.models.free import Skip as Skip
from portinspect.models.free import SkipReason as SkipReason
from portinspect.safetext import clean

if TYPE_CHECKING:
    from portinspect.models import Listener

# Without --near: above the dev servers' favourites (3000, 5000, 8000, 8080, 8888) so the port a
# tool hands out is not the one the user's own `runserver` wants next, and below every OS's
# ephemeral range (Linux 32768, Windows and macOS 49152). portpicker uses 15000-24999 for the
# same reasons.
DEFAULT_NEAR = 15000
MIN_LEASE_SECONDS = 0.001
MAX_COUNT = 1000
PRIVILEGED_BELOW = 1024


ExplainCallback = Callable[[Skip], None]


# --- candidates and policy (pure) -------------------------------------------------------------


def candidates(near: int, low: int, high: int) -> Iterator[int]:
    """Every port of [low, high], nearest to `near` first, upward first on ties.

    8000 in 1-65535 gives 8000, 8001, 7999, 8002, 7998... A `near` outside the range starts
    at the nearest bound, which keeps the order nearest-first.
    """
    start = min(max(near, low), high)
    yield start
    for step in range(1, high - low + 1):
        up, down = start + step, start - step
        if up > high and down < low:
            return
        if up <= high:
            yield up
        if down >= low:
            yield down


@functools.cache
def unsafe_ports() -> frozenset[int]:
    """Ports browsers refuse to load: the bundled Chromium/Fetch list, data/unsafe_ports.tsv."""
    text = read_text("unsafe_ports.tsv")
    return frozenset(
        int(line.split("\t", 1)[0]) for line in text.splitlines() if line and line[0] != "#"
    )


class Policy(NamedTuple):
    """Which ports are never offered, whatever their state."""

    ephemeral: tuple[int, int] | None  # the OS range to skip; None when allowed
    skip_privileged: bool
    unsafe: frozenset[int]  # empty when allowed

    @classmethod
    def make(cls, *, allow_ephemeral: bool, allow_privileged: bool, allow_unsafe: bool) -> Policy:
        return cls(
            ephemeral=None if allow_ephemeral else scanner.ephemeral_range(),
            skip_privileged=not allow_privileged,
            unsafe=frozenset() if allow_unsafe else unsafe_ports(),
        )

    def skip(self, port: int) -> Skip | None:
        if self.skip_privileged and port < PRIVILEGED_BELOW:
            return Skip(port, SkipReason.PRIVILEGED, "privileged (below 1024)")
        if port in self.unsafe:
            return Skip(port, SkipReason.UNSAFE, "unsafe for browsers (ERR_UNSAFE_PORT)")
        if self.ephemeral is not None and self.ephemeral[0] <= port <= self.ephemeral[1]:
            low, high = self.ephemeral
            return Skip(
                port,
                SkipReason.EPHEMERAL,
                f"in the OS ephemeral range {low}-{high} (the kernel picks these for "
                "outgoing connections)",
            )
        return None


# --- bind probes ------------------------------------------------------------------------------


def _protos(tcp: bool, udp: bool) -> frozenset[Proto]:
    protos = frozenset(p for p, on in ((Proto.TCP, tcp), (Proto.UDP, udp)) if on)
    if not protos:
        raise UsageError("nothing to check: ask for tcp, udp or both")
    return protos


def _bounds(near: int | None, port_range: tuple[int, int] | None) -> tuple[int, int, int]:
    """(start, low, high). The search starts at near, else at the range's low end, else 15000."""
    low, high = port_range if port_range is not None else (MIN_PORT, MAX_PORT)
    if not (is_port(low) and is_port(high)) or low > high:
        raise UsageError(f"invalid port range {port_range!r}: expected (low, high) within 1-65535")
    if near is not None and not is_port(near):
        raise UsageError(f"invalid port {near!r}: ports run from 1 to 65535")
    start = near if near is not None else (low if port_range is not None else DEFAULT_NEAR)
    return start, low, high


def parse_count(text: str) -> int:
    """--count: a whole number from 1 to MAX_COUNT."""
    return inputs.parse_count(text, "--count", MAX_COUNT)


def parse_seconds(text: str) -> float:
    """--lease-seconds: a positive number of seconds, at most a day (fractions allowed)."""
    return inputs.parse_seconds(
        text, "--lease-seconds", minimum=MIN_LEASE_SECONDS, maximum=MAX_LEASE_SECONDS
    )


def find_free_ports(
    near: int | None = None,
    count: int = 1,
    *,
    port_range: tuple[int, int] | None = None,
    tcp: bool = True,
    udp: bool = False,
    allow_ephemeral: bool = False,
    allow_privileged: bool = False,
    allow_unsafe: bool = False,
    lease: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    release_on_exit: bool = False,
    keep_while_bound: bool = False,
    explain: ExplainCallback | None = None,
) -> list[int]:
    """The `count` free ports nearest to `near`, nearest first, each leased to the caller.

    near: the preferred port, tried first; then near+1, near-1, near+2... Default: the low
        end of port_range, else DEFAULT_NEAR (15000).
    port_range: (low, high), inclusive; default 1-65535.
    tcp, udp: what must be free. Default TCP only; udp=True means TCP and UDP (what an
        HTTP/3 server needs); tcp=False, udp=True means UDP only.
    allow_ephemeral, allow_privileged, allow_unsafe: also offer ports in the OS ephemeral
        range, below 1024, or on the browsers' ERR_UNSAFE_PORT list. Skipped by default.
    lease: reserve each port handed out, so parallel callers (CI shards, xdist workers)
        never get the same one. It ends after lease_seconds, as soon as the port has a
        listener, or, with release_on_exit, when this process exits (whichever comes first);
        release_leases() gives it back earlier. Without a lease, two calls may return the
        same port until something binds it.
    keep_while_bound: the lease does not end when the port gets a listener, only by time,
        exit (release_on_exit) or release_leases(): for a caller that stops and restarts
        its server, or frees the port and checks that it stays free.
    explain: called with a Skip for every candidate passed over, in search order.

    A port is free when nothing listens on it on any address (sockets of every user count),
    and a bind works on 127.0.0.1, 0.0.0.0, ::1 and :: (IPv6 where the host has it); a
    port with only TIME_WAIT connections is free, since servers bind with SO_REUSEADDR.

    Raises UsageError on bad arguments, NoFreePortError when fewer than count ports are free
    in the range (then no lease is kept), LeaseDirError when the lease directory is unusable
    (unsafe, full, read-only); LeaseDirWarning when another one had to be used.
    """
    start, low, high = _bounds(near, port_range)
    check_count(count, "count", MAX_COUNT)
    check_seconds(lease_seconds, "lease time", minimum=MIN_LEASE_SECONDS, maximum=MAX_LEASE_SECONDS)
    protos = _protos(tcp, udp)
    policy = Policy.make(
        allow_ephemeral=allow_ephemeral,
        allow_privileged=allow_privileged,
        allow_unsafe=allow_unsafe,
    )
    seen_at = time.time()  # a lease taken after this read is not judged by it
    listeners, bound = scanner.taken_ports(protos)
    store = LeaseStore.default() if lease else None
    try:
        if store is not None:
            # Listeners only: a socket that is merely bound may be a parallel caller's probe
            # of a port it holds the lease on.
            store.sweep(listeners, seen_at)
        terms = _Terms(lease_seconds, release_on_exit, keep_while_bound)
        search = _Search(policy, protos, listeners, store, terms, explain, bound)
        return search.run(candidates(start, low, high), count, (low, high))
    finally:
        if store is not None:
            store.close()


@dataclass(frozen=True, slots=True)
class _Terms:
    """The terms of every lease one search takes."""

    seconds: float
    release_on_exit: bool
    keep_while_bound: bool


class Reservation:
    """Ports found free and leased to the caller, until they are used or given back.

    What `portinspect free` prints: a caller that then cannot pass the ports on (its output
    is closed, Ctrl-C while it prints) calls release(), so no lease outlives ports nobody
    was told about; as a context manager, a block that ends by an exception does it.
    lease_seconds: None when the ports were not leased. skips: why each candidate was passed
    over, in search order (explained: they were asked for). warnings: what the lease
    directory needed said (another user's directory, a stuck lock).
    """

    def __init__(
        self,
        ports: Sequence[int],
        lease_seconds: float | None,
        *,
        skips: Sequence[Skip] = (),
        explained: bool = False,
        warnings: Sequence[str] = (),
    ) -> None:
        self.ports = list(ports)
        self.lease_seconds = lease_seconds
        self.skips = tuple(skips)
        self.explained = explained
        self.warnings = tuple(warnings)
        self._held = lease_seconds is not None

    def release(self) -> None:
        """Give the leases back; once, and a second Ctrl-C does not cut it short."""
        if not self._held:
            return
        self._held = False
        import warnings

        with _interrupts.held(), warnings.catch_warnings():
            warnings.simplefilter("ignore", LeaseDirWarning)  # said once already, by reserve()
            release_leases(self.ports)

    def to_dict(self) -> dict[str, Any]:
        """`free --json`: the ports, the lease, and with explain every port passed over."""
        doc: dict[str, Any] = {"ports": list(self.ports), "lease_seconds": self.lease_seconds}
        if self.explained:
            doc["skipped"] = [skip.to_dict() for skip in self.skips]
        return doc

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.release()


def reserve(
    near: int | None = None,
    count: int = 1,
    *,
    explain: bool = False,
    **options: Any,
) -> Reservation:
    """find_free_ports() as a Reservation: the ports, the skips (with explain), the lease
    directory's warnings as text, and release(). Takes find_free_ports' options. When too
    few ports are free, NoFreePortError carries the skips and the warnings."""
    import warnings

    skips: list[Skip] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LeaseDirWarning)
        try:
            ports = find_free_ports(
                near, count, explain=skips.append if explain else None, **options
            )
        except NoFreePortError as exc:
            exc.skips = tuple(skips)
            exc.warnings = tuple(str(w.message) for w in caught)
            raise
    leased = options.get("lease", True)
    lease = options.get("lease_seconds", DEFAULT_LEASE_SECONDS) if leased else None
    said = [str(w.message) for w in caught]
    return Reservation(ports, lease, skips=skips, explained=explain, warnings=said)


class _Search:
    """One walk over the candidates; gives back its leases if it fails or is interrupted."""

    def __init__(
        self,
        policy: Policy,
        protos: frozenset[Proto],
        listeners: Container[int],
        store: LeaseStore | None,
        terms: _Terms,
        explain: ExplainCallback | None,
        bound: Mapping[int, int] | None = None,
    ) -> None:
        self.policy = policy
        self.protos = protos
        self.listeners = listeners
        self.bound = bound or {}
        self.prober = Prober(protos)
        self.store = store
        self.terms = terms
        self.explain = explain
        self.tally: Counter[SkipReason] = Counter()
        self.leases: list[Lease] = []
        self.skips: list[Skip] = []  # kept only when someone asked for explanations

    def run(self, ports: Iterable[int], count: int, bounds: tuple[int, int]) -> list[int]:
        found: list[int] = []
        try:
            for port in ports:
                skip = self._skip(port)
                if skip is None:
                    found.append(port)
                    if len(found) == count:
                        break
                    continue
                self.tally[skip.reason] += 1
                if self.explain is not None:
                    self.skips.append(skip)
            self._report()
        except BaseException:
            self._give_back()  # Ctrl-C or an error mid-search: keep no lease
            raise
        if len(found) < count:
            self._give_back()
            raise NoFreePortError(_failure(bounds, count, len(found), self.tally))
        return found

    def _report(self) -> None:
        """Hand every skip to the explain callback, held ports named by ONE owner scan.

        Named after the walk rather than per port: each scan costs a socket dump (17 ms at 5k
        listeners), and a walk may pass thousands of held ports.
        """
        if self.explain is None:
            return
        held = {s.port for s in self.skips if s.reason is SkipReason.HELD}
        holders: dict[int, Listener] = {}
        if held:
            from portinspect import api  # only with --explain: naming holders is a scan

            proto = next(iter(self.protos)) if len(self.protos) == 1 else None
            for listener in api.scan(held, proto):
                holders.setdefault(listener.port, listener)
        for skip in self.skips:
            if skip.reason is SkipReason.HELD:
                skip = _named(skip, holders.get(skip.port))
            self.explain(skip)

    def _give_back(self) -> None:
        if self.store is not None:
            with _interrupts.held():  # a second Ctrl-C must not leave half of them behind
                self.store.release(self.leases)

    def _skip(self, port: int) -> Skip | None:
        policy_skip = self.policy.skip(port)
        if policy_skip is not None:
            return policy_skip
        if port in self.listeners:
            return Skip(port, SkipReason.HELD, "held by a listener")
        # The lease comes before the probes: every portinspect caller then probes a port only
        # while it holds that port's lease, so a bound socket seen while WE hold it is not
        # another caller's probe (a parallel search would skip, or worse, un-lease, the
        # ports it sees probed).
        leased = self._lease(port)
        if leased is not None:
            return leased
        skip = self._probe(port) or self._bound(port)
        if skip is not None:
            self._give_back_last()
        return skip

    def _probe(self, port: int) -> Skip | None:
        failure = self.prober.failure(port)
        if failure is None:
            return None
        proto, host, code = failure
        return Skip(port, SkipReason.UNBINDABLE, f"cannot bind {host} {proto}: {errno_text(code)}")

    def _bound(self, port: int) -> Skip | None:
        """A TCP socket bound to port and not listening, still there now that we hold the lease.

        The search's first dump is only a hint: what it showed may have been a parallel
        caller's bind probe, there for microseconds. A fresh dump settles it (about 1 ms, paid
        only for ports the first one showed).
        """
        if port not in self.bound or Proto.TCP not in self.protos:
            return None
        self.bound = scanner.taken_ports(frozenset([Proto.TCP]))[1]
        if port not in self.bound:
            return None
        uid = self.bound[port]
        detail = f"bound by a TCP socket of uid {uid} that does not listen (yet)"
        return Skip(port, SkipReason.BOUND, detail)

    def _give_back_last(self) -> None:
        """Give back the lease just taken on a port that then failed a check."""
        if self.store is not None and self.leases:
            with _interrupts.held():
                self.store.release([self.leases.pop()])

    def _lease(self, port: int) -> Skip | None:
        if self.store is None:
            return None
        terms = self.terms
        mine = self.store.new_lease(
            port,
            terms.seconds,
            release_on_exit=terms.release_on_exit,
            keep_while_bound=terms.keep_while_bound,
        )
        # Recorded before the file exists, so an interrupt right after link() still gives it
        # back; release() only removes a file that carries this lease's token.
        self.leases.append(mine)
        try:
            lease = self.store.acquire(mine)
        except LeaseDirError:
            self.leases.pop()  # it could not be written: nothing to give back
            raise
        if lease is mine:
            return None
        self.leases.pop()
        if lease.odd is not None:
            name = self.store.path(port).name
            detail = f"{name} in the lease directory is {lease.odd}, not a lease; remove it"
            return Skip(port, SkipReason.LEASED, detail)
        until = time.strftime("%H:%M:%S", time.localtime(lease.expires))
        who = f"pid {lease.pid}" if lease.pid else "another caller"
        return Skip(
            port,
            SkipReason.LEASED,
            f"leased by {who} until {until} (another portinspect caller)",
            lease.pid or None,
        )


def _named(skip: Skip, listener: Listener | None) -> Skip:
    """The held-port skip with its holder: pid and program, or the user when hidden from us."""
    if listener is None:
        return replace(skip, detail="held by a listener (gone since the scan)")
    where = f"on {listener.address} {listener.proto}"
    if listener.owner_hidden:
        user = clean(listener.user, 40) or "another user"
        uid = f" (uid {listener.uid})" if listener.uid is not None else ""
        detail = f"held by user {user}{uid} {where}; run with sudo to see the process"
        return replace(skip, detail=detail)
    # The process name is the holder's to choose: escapes in it must not reach a terminal.
    what = clean(listener.framework or listener.server or listener.process, 40) or "?"
    detail = f"held by pid {listener.pid} ({what}) {where}"
    return replace(skip, detail=detail, pid=listener.pid)


_TALLY_WORDS = {
    SkipReason.HELD: "held by a listener",
    SkipReason.BOUND: "bound by a socket that does not listen",
    SkipReason.UNBINDABLE: "not bindable",
    SkipReason.LEASED: "leased by other callers",
    SkipReason.EPHEMERAL: "in the ephemeral range (--allow-ephemeral)",
    SkipReason.PRIVILEGED: "privileged (--allow-privileged)",
    SkipReason.UNSAFE: "unsafe for browsers (--allow-unsafe)",
}


def _failure(bounds: tuple[int, int], count: int, found: int, tally: Counter[SkipReason]) -> str:
    low, high = bounds
    where = f"{low}-{high}" if low != high else str(low)
    head = (
        f"no free port in {where}"
        if count == 1
        else f"only {found} of {count} free ports in {where}"
    )
    why = ", ".join(f"{n} {_TALLY_WORDS[reason]}" for reason, n in tally.most_common())
    return f"{head}: {why}" if why else head


# --- explain, for the CLI ---------------------------------------------------------------------

_ALLOW_FLAG = {
    SkipReason.EPHEMERAL: "--allow-ephemeral",
    SkipReason.PRIVILEGED: "--allow-privileged",
    SkipReason.UNSAFE: "--allow-unsafe",
}


def explain_lines(skips: Sequence[Skip]) -> list[str]:
    """One line per port passed over for its state, in search order; then one line per policy.

    Policy skips are folded into spans: a search from 40000 walks thousands of ephemeral
    ports, and a line each would bury the few lines that matter.
    """
    lines = [f"skipped {s.port}: {s.detail}" for s in skips if s.reason not in _ALLOW_FLAG]
    by_policy: dict[tuple[SkipReason, str], list[int]] = {}
    for s in skips:
        if s.reason in _ALLOW_FLAG:
            by_policy.setdefault((s.reason, s.detail), []).append(s.port)
    for (reason, detail), ports in by_policy.items():
        lines.append(f"skipped {spans(ports)}: {detail}; {_ALLOW_FLAG[reason]} allows them")
    return lines
