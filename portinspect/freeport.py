"""find_free_ports(): the nearest really free ports, leased so parallel callers never share one.

A candidate goes through four gates, cheapest first:

1. policy   not privileged (< 1024), not in the OS ephemeral range, not on the browsers'
            unsafe list, unless the caller allows it (pure, no I/O);
2. scan     no listener on the port on any address, of any user: ONE listing of the
            listening sockets for the whole search, without the /proc owner walk (0.05 ms
            on an idle machine, 8-17 ms with 5k listeners);
3. probe    a bind succeeds on 127.0.0.1, 0.0.0.0, ::1 and :: (each ~9 us, perf.md §8): this
            catches what a listing cannot see, such as a socket bound but not listening;
4. lease    an advisory lease file for the port can be created in a per-user directory, so
            a parallel caller that passed gates 1-3 at the same moment is turned away.

A lease ends when its time is up (DEFAULT_LEASE_SECONDS), as soon as the port has a listener
(the caller's server bound it), or, for leases taken with release_on_exit, when the process
that took it has exited. Nothing has to clean up after a caller that died.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from portinspect import _interrupts, api, classifier, inputs, scanner
from portinspect.data import read_text
from portinspect.errors import NoFreePortError, PortInspectError, UsageError
from portinspect.inputs import MAX_PORT, MIN_PORT, check_count, check_seconds, is_port
from portinspect.models import Listener, Proto

# Without --near: above the dev servers' favourites (3000, 5000, 8000, 8080, 8888) so the port a
# tool hands out is not the one the user's own `runserver` wants next, and below every OS's
# ephemeral range (Linux 32768, Windows and macOS 49152). portpicker uses 15000-24999 for the
# same reasons.
DEFAULT_NEAR = 15000
# Long enough for a CI step to start a server that runs migrations first; short enough that a port
# handed to a job that then failed comes back within half a minute. get-port withholds 15-30 s.
# A lease also ends as soon as the port has a listener.
DEFAULT_LEASE_SECONDS = 30.0
MAX_LEASE_SECONDS = 24 * 3600.0
MIN_LEASE_SECONDS = 0.001
MAX_COUNT = 1000
PRIVILEGED_BELOW = 1024
LEASE_DIR_ENV = "PORTINSPECT_LEASE_DIR"


class SkipReason(str, Enum):
    HELD = "held"  # the scan saw a listener on the port
    UNBINDABLE = "unbindable"  # a bind probe failed (bound without listening, EACCES...)
    LEASED = "leased"  # another portinspect caller holds an unexpired lease
    EPHEMERAL = "ephemeral"  # the OS gives these to outgoing connections
    PRIVILEGED = "privileged"  # below 1024
    UNSAFE = "unsafe"  # browsers refuse to load it (ERR_UNSAFE_PORT)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Skip:
    """Why one candidate port was not handed out."""

    port: int
    reason: SkipReason
    # One line for humans: "held by pid 4242 (uvicorn) on 127.0.0.1 tcp".
    detail: str
    # The holding process, or the process that took the lease. None when the owner is
    # hidden (another user's socket and we are not root), unknown, or not asked for: holders
    # are only looked up when an explain callback is given.
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "reason": self.reason.value,
            "detail": self.detail,
            "pid": self.pid,
        }


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


@dataclass(frozen=True, slots=True)
class Policy:
    """Which ports are never offered, whatever their state."""

    ephemeral: tuple[int, int] | None  # the OS range to skip; None when allowed
    skip_privileged: bool
    unsafe: frozenset[int]  # empty when allowed

    @classmethod
    def make(cls, *, allow_ephemeral: bool, allow_privileged: bool, allow_unsafe: bool) -> Policy:
        return cls(
            ephemeral=None if allow_ephemeral else classifier.ephemeral_range(),
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

# Probe the addresses a server may use. IPv6 ones get IPV6_V6ONLY so each family is tested on
# its own: a dual-stack probe on :: would pass when only 0.0.0.0 is free, or the reverse.
PROBE_ADDRESSES: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0"),
    (socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::"),
)
_KINDS = {Proto.TCP: socket.SOCK_STREAM, Proto.UDP: socket.SOCK_DGRAM}


def _codes(*names: str) -> frozenset[int]:
    # Windows reports socket errors as WSA codes (WSAEADDRNOTAVAIL = 10049), not POSIX errnos.
    return frozenset(getattr(errno, n) for n in names if hasattr(errno, n))


# The address or family does not exist here (no IPv6, or ::1 missing on lo): skip that address.
_ABSENT = _codes(
    "EADDRNOTAVAIL", "EAFNOSUPPORT", "EPROTONOSUPPORT", "WSAEADDRNOTAVAIL", "WSAEAFNOSUPPORT"
)


def bind_error(family: socket.AddressFamily, proto: Proto, host: str, port: int) -> int | None:
    """The errno of binding host:port the way a server would, or None when the bind works.

    TCP sets SO_REUSEADDR, as servers do, so a port whose old connections sit in TIME_WAIT
    counts as free; a LISTEN socket still conflicts on every OS. UDP must not: on Linux
    SO_REUSEADDR lets two UDP sockets share a port, and the probe would pass a held port.
    Windows gets no SO_REUSEADDR at all: there it means "steal the port".
    """
    try:
        sock = socket.socket(family, _KINDS[proto])
    except OSError as exc:
        return exc.errno or errno.EAFNOSUPPORT
    try:
        if proto is Proto.TCP and sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        return exc.errno or errno.EINVAL
    finally:
        sock.close()
    return None


class Prober:
    """Bind probes for one search; remembers the addresses this host does not have."""

    def __init__(self, protos: Iterable[Proto]) -> None:
        self.protos = sorted(protos)
        self.absent: set[tuple[Proto, str]] = set()

    def failure(self, port: int) -> tuple[Proto, str, int] | None:
        """(proto, address, errno) of the first bind that fails, or None when all work."""
        for proto in self.protos:
            for family, host in PROBE_ADDRESSES:
                if (proto, host) in self.absent:
                    continue
                code = bind_error(family, proto, host, port)
                if code is None:
                    continue
                if code in _ABSENT:
                    self.absent.add((proto, host))
                    continue
                return proto, host, code
        return None


def _errno_text(code: int) -> str:
    name = errno.errorcode.get(code, str(code))
    return f"{os.strerror(code).lower()} ({name})"


# --- leases -----------------------------------------------------------------------------------

_LEASE_SUFFIX = ".lease"
_TMP_SUFFIX = ".tmp"
_ORPHAN_TMP_SECONDS = 60.0  # a temp file lives microseconds; one this old was left by a crash
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Lease:
    """The content of one lease file: who took the port, until when."""

    port: int
    pid: int  # the process that took the lease (0 when the file could not be read)
    expires: float  # seconds since the epoch: leases are shared between processes
    release_on_exit: bool  # the lease also ends when pid exits
    token: str  # tells our own lease from a newer one on the same port

    def encode(self) -> bytes:
        return (
            f"pid={self.pid}\nexpires={self.expires:.3f}\n"
            f"release_on_exit={int(self.release_on_exit)}\ntoken={self.token}\n"
        ).encode("ascii")

    @classmethod
    def decode(cls, port: int, data: bytes) -> Lease | None:
        try:
            fields = dict(line.split("=", 1) for line in data.decode("ascii").splitlines())
            return cls(
                port=port,
                pid=int(fields["pid"]),
                expires=float(fields["expires"]),
                release_on_exit=fields.get("release_on_exit") == "1",
                token=fields.get("token", ""),
            )
        except (ValueError, KeyError, UnicodeDecodeError):
            return None

    def ended(self, now: float, *, bound: bool) -> bool:
        """True when the lease no longer protects the port and may be removed."""
        if bound or now >= self.expires:
            return True
        return self.release_on_exit and not _alive(self.pid)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        # os.kill(pid, 0) would send CTRL_C_EVENT there; psutil asks OpenProcess instead.
        import psutil

        return bool(psutil.pid_exists(pid))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    return True


def _ended_unbound(lease: Lease) -> bool:
    return lease.ended(time.time(), bound=False)


def _same_token(token: str, lease: Lease) -> bool:
    return lease.token == token


def _taken_by(pid: int, lease: Lease) -> bool:
    return lease.pid == pid


class LeaseStore:
    """One directory, one file per leased port: `<port>.lease`.

    Why this is race-free:
    - Taking a lease: the content goes to a private temp file first, which is then hard-linked
      to `<port>.lease`. link() fails with EEXIST when the name exists, so of any number of
      callers exactly one gets the port (the O_EXCL guarantee), and the name never points at a
      half-written file: Ctrl-C or a crash can only leave a temp file behind.
    - Removing a lease (ended, or given back) happens only under an exclusive lock on `.lock`
      (flock; msvcrt on Windows), after re-reading the file under that lock. While we hold the
      lock nobody else can remove the file, and nobody can create a new one over it (link fails
      while the name exists), so the file we unlink is the very one we judged ended. Two
      callers breaking the same stale lease thus cannot delete each other's fresh one.
    - The lock is never held while waiting for anything else, and the kernel drops it when its
      holder dies, so a killed caller cannot wedge the directory.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def default(cls) -> LeaseStore:
        return cls(lease_directory())

    def path(self, port: int) -> Path:
        return self.directory / f"{port}{_LEASE_SUFFIX}"

    def read(self, port: int) -> Lease | None:
        """The lease on port, or None if there is none.

        A file we cannot read or parse (not written by this version) protects its port for
        DEFAULT_LEASE_SECONDS after it was last modified, then counts as expired.
        """
        try:
            fd = os.open(self.path(port), os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            return self._unreadable(port)
        try:
            lease = Lease.decode(port, os.read(fd, 4096))
            mtime = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
        return lease or Lease(port, 0, mtime + DEFAULT_LEASE_SECONDS, False, "")

    def _unreadable(self, port: int) -> Lease | None:
        try:
            mtime = os.lstat(self.path(port)).st_mtime
        except FileNotFoundError:
            return None
        return Lease(port, 0, mtime + DEFAULT_LEASE_SECONDS, False, "")

    @staticmethod
    def new_lease(port: int, seconds: float, *, release_on_exit: bool) -> Lease:
        token = secrets.token_hex(8)
        return Lease(port, os.getpid(), time.time() + seconds, release_on_exit, token)

    def acquire(self, mine: Lease) -> Lease:
        """Try to take the lease `mine`; returns the lease now on the port (`mine` if we won)."""
        theirs: Lease | None = None
        for _attempt in range(3):
            if self._publish(mine):
                return mine
            theirs = self.read(mine.port)
            if theirs is not None and not theirs.ended(time.time(), bound=False):
                return theirs
            self._remove_if(mine.port, _ended_unbound)
        # Lost three races for the same port in a row: leave it to whoever keeps winning.
        return theirs or Lease(mine.port, 0, mine.expires, False, "")

    def _publish(self, lease: Lease) -> bool:
        """Create `<port>.lease` with its full content in one step; False if it exists."""
        # Microseconds, with Ctrl-C held: an interrupt between creating the temp file and
        # the try below would leave the file behind.
        with _interrupts.held():
            return self._publish_now(lease)

    def _publish_now(self, lease: Lease) -> bool:
        tmp = self.directory / f".{lease.port}.{lease.token}{_TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        try:
            try:
                data = lease.encode()
                if os.write(fd, data) != len(data):
                    raise OSError(errno.EIO, f"short write to {tmp}")
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path(lease.port))
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def release(self, leases: Iterable[Lease]) -> None:
        """Give back our own leases; a lease someone else took meanwhile stays."""
        wanted = list(leases)
        if wanted:
            with self._locked():
                for lease in wanted:
                    self._unlink_locked(lease.port, functools.partial(_same_token, lease.token))

    def release_ports(self, ports: Iterable[int], pid: int) -> None:
        """Give back the leases pid took on ports."""
        with self._locked():
            for port in ports:
                self._unlink_locked(port, functools.partial(_taken_by, pid))

    def sweep(self, bound: Container[int]) -> None:
        """Remove every lease that ended: expired, its port now bound, or its owner gone.

        Run before each search. Removing a bound port's lease is what makes a lease last
        "until it is bound": when that server stops, the port is free again at once.
        """
        now = time.time()
        ended: list[int] = []
        for name in os.listdir(self.directory):  # noqa: PTH208 (names only; Path per entry is waste)
            if name.endswith(_LEASE_SUFFIX) and name[: -len(_LEASE_SUFFIX)].isdigit():
                port = int(name[: -len(_LEASE_SUFFIX)])
                lease = self.read(port)
                if lease is not None and lease.ended(now, bound=port in bound):
                    ended.append(port)
            elif name.endswith(_TMP_SUFFIX):
                self._remove_orphan(self.directory / name, now)
        if ended:
            with self._locked():
                for port in ended:
                    self._unlink_locked(
                        port, lambda lease: lease.ended(time.time(), bound=lease.port in bound)
                    )

    def _remove_if(self, port: int, ended: Callable[[Lease], bool]) -> None:
        with self._locked():
            self._unlink_locked(port, ended)

    def _unlink_locked(self, port: int, condition: Callable[[Lease], bool]) -> None:
        """Re-read the lease under the lock and remove it if condition still holds."""
        lease = self.read(port)
        if lease is not None and condition(lease):
            self.path(port).unlink(missing_ok=True)

    def _remove_orphan(self, path: Path, now: float) -> None:
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime > _ORPHAN_TMP_SECONDS:
                path.unlink()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
        try:
            _lock(fd)
            yield
        finally:
            _unlock(fd)
            os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        pass  # closing the fd drops the flock


def lease_directory() -> Path:
    """Where leases live, created on first use.

    $PORTINSPECT_LEASE_DIR if set (used as given: point several jobs at one directory, or
    tests at their own); else $XDG_RUNTIME_DIR/portinspect (per user, on tmpfs, emptied at
    logout); else <tempdir>/portinspect-<uid>, which must be a real directory owned by us
    and writable by nobody else, since anyone can create names in /tmp. On Windows the
    temp dir is already per user (%LOCALAPPDATA%\\Temp), so <tempdir>\\portinspect.
    """
    override = os.environ.get(LEASE_DIR_ENV)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif runtime and Path(runtime).is_dir() and os.access(runtime, os.W_OK):
        path = Path(runtime) / "portinspect"
    elif sys.platform == "win32":
        path = Path(tempfile.gettempdir()) / "portinspect"
    else:
        path = Path(tempfile.gettempdir()) / f"portinspect-{os.geteuid()}"
    try:
        if override:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path
        with contextlib.suppress(FileExistsError):  # a file or symlink there: checked next
            path.mkdir(mode=0o700)
    except OSError as exc:
        raise PortInspectError(
            f"cannot create lease directory {path}: {exc.strerror or exc}; "
            f"set {LEASE_DIR_ENV} or use --no-lease"
        ) from None
    return path if sys.platform == "win32" else _checked_private(path)


def _checked_private(path: Path) -> Path:
    """Refuse a lease directory another user could have planted or can write into."""
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symlink?)"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to you"
    elif info.st_mode & 0o022:
        problem = "is writable by other users"
    if problem is not None:
        raise PortInspectError(
            f"lease directory {path} {problem}; remove it, set {LEASE_DIR_ENV}, or use --no-lease"
        )
    return path


def release_leases(ports: Iterable[int]) -> None:
    """Give back, before they expire, the leases this process took on ports.

    Leases other processes took on the same ports are left alone.
    """
    LeaseStore.default().release_ports(ports, os.getpid())


# --- the search -------------------------------------------------------------------------------


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
    explain: called with a Skip for every candidate passed over, in search order.

    A port is free when nothing listens on it on any address (sockets of every user count),
    and a bind works on 127.0.0.1, 0.0.0.0, ::1 and :: (IPv6 where the host has it); a
    port with only TIME_WAIT connections is free, since servers bind with SO_REUSEADDR.

    Raises UsageError on bad arguments, NoFreePortError when fewer than count ports are free
    in the range (then no lease is kept), PortInspectError when the lease directory is unsafe.
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
    listeners = scanner.listening_ports(protos)
    store = LeaseStore.default() if lease else None
    if store is not None:
        store.sweep(listeners)
    search = _Search(policy, protos, listeners, store, lease_seconds, release_on_exit, explain)
    return search.run(candidates(start, low, high), count, (low, high))


class _Search:
    """One walk over the candidates; gives back its leases if it fails or is interrupted."""

    def __init__(
        self,
        policy: Policy,
        protos: frozenset[Proto],
        listeners: Container[int],
        store: LeaseStore | None,
        lease_seconds: float,
        release_on_exit: bool,
        explain: ExplainCallback | None,
    ) -> None:
        self.policy = policy
        self.protos = protos
        self.listeners = listeners
        self.prober = Prober(protos)
        self.store = store
        self.lease_seconds = lease_seconds
        self.release_on_exit = release_on_exit
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
        failure = self.prober.failure(port)
        if failure is not None:
            proto, host, code = failure
            return Skip(
                port, SkipReason.UNBINDABLE, f"cannot bind {host} {proto}: {_errno_text(code)}"
            )
        return self._lease(port)

    def _lease(self, port: int) -> Skip | None:
        if self.store is None:
            return None
        mine = self.store.new_lease(port, self.lease_seconds, release_on_exit=self.release_on_exit)
        # Recorded before the file exists, so an interrupt right after link() still gives it
        # back; release() only removes a file that carries this lease's token.
        self.leases.append(mine)
        lease = self.store.acquire(mine)
        if lease is mine:
            return None
        self.leases.pop()
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
        user = listener.user or "another user"
        uid = f" (uid {listener.uid})" if listener.uid is not None else ""
        detail = f"held by user {user}{uid} {where}; run with sudo to see the process"
        return replace(skip, detail=detail)
    what = listener.framework or listener.server or listener.process or "?"
    return replace(skip, detail=f"held by pid {listener.pid} ({what}) {where}", pid=listener.pid)


_TALLY_WORDS = {
    SkipReason.HELD: "held by a listener",
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


def spans(ports: Iterable[int]) -> str:
    """6000, 6665, 6666, 6667 -> '6000, 6665-6667'."""
    ordered = sorted(set(ports))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


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
