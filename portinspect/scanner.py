"""Facts from the OS: which sockets listen, which processes hold them, and their ancestors.

The facade picks the backend: the fast Linux one (netlink sock_diag, a lean /proc walk,
process details read straight from /proc) where it works, psutil everywhere else, and
psutil on Linux for what only it does well (process trees, and `kill`'s Process handles).

psutil is imported by the functions that use it, never at module load: `import psutil`
costs ~23 ms of start-up, more than a whole `list` scan of an idle Linux machine, and
`free` and `wait` never need it on Linux.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from portinspect import models
from portinspect.models import ALL_PROTOS, IANA_DYNAMIC, PortKey, Proto
from portinspect.safetext import clean

if TYPE_CHECKING:
    from portinspect.models import InterfaceAddress, ProcessInfo, Snapshot, Socket

_T = TypeVar("_T")

# The only environment variables we keep: they mark reloader children, kernels and
# npm wrappers, or switch on what `audit` reports (a debugger, a Jupyter token). Everything
# else in a process's environment stays private.
ENV_MARKERS = (
    "RUN_MAIN",
    "WERKZEUG_RUN_MAIN",
    "WERKZEUG_SERVER_FD",
    "BOTTLE_CHILD",
    "JPY_PARENT_PID",
    "npm_lifecycle_event",
    "npm_command",
    # Managers name the service they run: supervisorctl stop NAME, pm2 stop NAME.
    "SUPERVISOR_PROCESS_NAME",
    "SUPERVISOR_GROUP_NAME",
    "pm_id",
    "name",
    "FLASK_DEBUG",
    "WERKZEUG_DEBUG_PIN",
    "JUPYTER_TOKEN",
    "NODE_OPTIONS",
)


BACKENDS = ("auto", "linux", "psutil")
BACKEND_ENV = "PORTINSPECT_BACKEND"


def _presence(value: str) -> str:
    return "set" if value else "empty"


def _debug_pin(value: str) -> str:
    # "off" switches the PIN off; any other value IS the PIN.
    return "off" if value.strip().lower() == "off" else _presence(value)


def _inspect_options(value: str) -> str:
    # NODE_OPTIONS may carry anything (--require of a private path); only the debugger matters.
    return " ".join(word for word in value.split() if word.startswith("--inspect"))


# Markers whose value may be a secret or private, reduced as the environment is read, so no
# token or PIN is ever held in a ProcessInfo, let alone printed.
_ENV_REDUCED: dict[str, Callable[[str], str]] = {
    "JUPYTER_TOKEN": _presence,
    "WERKZEUG_DEBUG_PIN": _debug_pin,
    "NODE_OPTIONS": _inspect_options,
}


def reduce_env(env: dict[str, str]) -> dict[str, str]:
    """The markers of one process's environment as they may be kept (tokens as "set"/"empty")."""
    for key, reduce in _ENV_REDUCED.items():
        if key in env:
            env[key] = reduce(env[key])
    return env


def _choice(backend: str | None) -> str:
    """ "auto", "linux" (no fallback) or "psutil": the argument, else PORTINSPECT_BACKEND.

    Anything else is a usage error, not a silent "auto": a typo must not hide which
    backend a comparison or a bug report ran on.
    """
    choice = backend or os.environ.get(BACKEND_ENV) or "auto"
    if choice not in BACKENDS:
        from portinspect.errors import UsageError

        source = "backend" if backend else BACKEND_ENV
        shown = clean(choice, 40)
        raise UsageError(f"invalid {source} '{shown}': expected {', '.join(BACKENDS)}")
    return choice


def check_backend() -> None:
    """Raise UsageError now if PORTINSPECT_BACKEND names no backend (the CLI checks it
    before any command runs, so a bad value is the only line it prints)."""
    _choice(None)


def _linux_details(backend: str | None) -> bool:
    return _choice(backend) in ("auto", "linux") and sys.platform.startswith("linux")


def _via_backend(backend: str | None, linux: Callable[[], _T], portable: Callable[[], _T]) -> _T:
    """The fast Linux backend where it works; psutil elsewhere, or when /proc or netlink fail
    (unless "linux" was asked for, then the error stands)."""
    if _linux_details(backend):
        try:
            return linux()
        except OSError:
            if _choice(backend) == "linux":
                raise
    return portable()


def _backend_sockets(
    protos: frozenset[Proto], ports: frozenset[int] | None, backend: str | None
) -> tuple[list[Socket], bool]:
    def linux() -> tuple[list[Socket], bool]:
        from portinspect import _linux

        return _linux.list_sockets(protos, ports)

    def portable() -> tuple[list[Socket], bool]:
        from portinspect import _psutil

        return _psutil.list_sockets(protos, ports)

    return _via_backend(backend, linux, portable)


def listening_ports(
    protos: Iterable[Proto] = ALL_PROTOS, *, backend: str | None = None
) -> frozenset[int]:
    """The ports with a listener on any address, of any user, without looking for the owners.

    `free` and `wait` need only this, and skipping the owner walk keeps it to one netlink
    dump on Linux (~0.1 ms on an idle box) instead of a walk over every process's fds.
    """
    wanted = frozenset(protos)

    def linux() -> frozenset[int]:
        from portinspect import _linux

        return frozenset(_linux.listening_port_numbers(wanted))

    return _via_backend(
        backend, linux, lambda: frozenset(listening_sockets(wanted, backend="psutil"))
    )


def taken_ports(
    protos: Iterable[Proto] = ALL_PROTOS, *, backend: str | None = None
) -> tuple[frozenset[int], dict[int, int]]:
    """(ports with a listener, {port: uid} of TCP sockets bound but not listening), any user.

    `free`'s view of the socket table. The second part needs Linux 6.8's sock_diag
    (see _linux.taken_port_numbers); elsewhere it is empty and only the bind probe is left,
    which a socket bound with SO_REUSEADDR passes.
    """
    wanted = frozenset(protos)

    def linux() -> tuple[frozenset[int], dict[int, int]]:
        from portinspect import _linux

        listening, bound = _linux.taken_port_numbers(wanted)
        return frozenset(listening), bound

    def portable() -> tuple[frozenset[int], dict[int, int]]:
        return frozenset(listening_sockets(wanted, backend="psutil")), {}

    return _via_backend(backend, linux, portable)


def local_port_states(port: int, *, backend: str | None = None) -> dict[str, int]:
    """TCP sockets of any user whose local port is `port`, counted by state ("time-wait",
    "established", "bound-inactive"...), listeners apart: what may still make a bind there
    fail when nothing listens (`who PORT`)."""

    def linux() -> dict[str, int]:
        from portinspect import _linux

        return _linux.local_port_states(port)

    def portable() -> dict[str, int]:
        from portinspect import _psutil

        return _psutil.local_port_states(port)

    return _via_backend(backend, linux, portable)


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (of any user)."""
    if sys.platform == "win32":
        # os.kill(pid, 0) would send CTRL_C_EVENT there; psutil asks OpenProcess instead.
        from portinspect import _psutil

        return _psutil.pid_exists(pid)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    except OverflowError:
        return False
    return True


def listening_sockets(
    protos: Iterable[Proto] = ALL_PROTOS, *, backend: str | None = None
) -> dict[int, frozenset[int | None]]:
    """port -> inodes of its listening sockets, of any user, without looking for the owners.

    kill re-checks its ports with this between signals: a new inode on a port is a new
    holder (a respawn) worth a full scan. The inode is None where the OS gives none (psutil).
    """
    wanted = frozenset(protos)

    def linux() -> list[tuple[int, int | None]]:
        from portinspect import _linux

        return _linux.listening_inodes(wanted)

    def portable() -> list[tuple[int, int | None]]:
        from portinspect import _psutil

        return [(s.port, s.inode) for s in _psutil.list_sockets(wanted)[0]]

    found: dict[int, set[int | None]] = {}
    for port, inode in _via_backend(backend, linux, portable):
        found.setdefault(port, set()).add(inode)
    return {port: frozenset(inodes) for port, inodes in found.items()}


def listening_addresses(
    protos: Iterable[Proto] = ALL_PROTOS,
    ports: Iterable[int] | None = None,
    *,
    backend: str | None = None,
) -> list[Socket]:
    """The listening sockets (optionally only on `ports`) with their addresses, of any user,
    without looking for the owners: where a connection would be accepted, not who takes it.

    On Linux each IPv6 socket says whether it is IPv6-only (Socket.v6only); None elsewhere.
    `wait` polls this: one netlink dump, no walk over the processes' fds.
    """
    wanted = frozenset(protos)
    only = frozenset(ports) if ports is not None else None

    def linux() -> list[Socket]:
        from portinspect import _linux

        return _linux.listening_endpoints(wanted, only)

    def portable() -> list[Socket]:
        from portinspect import _psutil

        return _psutil.list_sockets(wanted, only)[0]

    return _via_backend(backend, linux, portable)


def interface_addresses(*, backend: str | None = None) -> list[InterfaceAddress]:
    """Every address of every network interface: where a wildcard listener can be reached."""

    def linux() -> list[InterfaceAddress]:
        from portinspect import _linux

        return _linux.interface_addresses()

    def portable() -> list[InterfaceAddress]:
        from portinspect import _psutil

        return _psutil.interface_addresses()

    return _via_backend(backend, linux, portable)


def local_addresses(*, backend: str | None = None) -> frozenset[str]:
    """The IP addresses of this machine's interfaces, loopback's included (127.0.0.1, ::1)."""
    return frozenset(a.address for a in interface_addresses(backend=backend))


def _process_reader(
    backend: str | None, *, cgroups: bool = False
) -> Callable[[int], ProcessInfo | None]:
    """/proc on Linux (same fields as psutil, ~5x cheaper per process), psutil elsewhere."""
    if _linux_details(backend):
        from portinspect import _linux

        with contextlib.suppress(OSError):  # no readable /proc/stat: not a procfs we know
            return _linux.ProcessReader(ENV_MARKERS, reduce_env, cgroups=cgroups).read
    from portinspect import _psutil

    return functools.partial(_psutil.read_process, env_keys=ENV_MARKERS, reduce_env=reduce_env)


def read_processes(
    pids: Iterable[int], *, backend: str | None = None, cgroups: bool = False
) -> dict[int, ProcessInfo]:
    """The given processes and all their ancestors, up to init."""
    read = _process_reader(backend, cgroups=cgroups)
    found: dict[int, ProcessInfo] = {}
    todo = sorted(set(pids))
    while todo:
        pid = todo.pop()
        if pid in found or pid <= 0:
            continue
        info = read(pid)
        if info is None:
            continue
        found[pid] = info
        if info.ppid and info.ppid not in found:
            todo.append(info.ppid)
    return found


def self_lineage(*, backend: str | None = None) -> frozenset[int]:
    """portinspect's own pid and every ancestor: the shell, the terminal, the IDE..."""
    if _linux_details(backend):
        from portinspect import _linux

        return frozenset(_linux.lineage(os.getpid()))
    from portinspect import _psutil

    return frozenset(_psutil.lineage(os.getpid()))


@functools.cache
def ephemeral_range() -> tuple[int, int]:
    """The OS's range for outgoing connections' local ports.

    Linux reads ip_local_port_range (default 32768-60999), macOS/BSD ask sysctl; Windows and
    anything unreadable fall back to 49152-65535 (IANA's dynamic range, Windows' documented
    default).
    """
    text: str | None = None
    if sys.platform.startswith("linux"):
        from portinspect import _linux

        with contextlib.suppress(OSError):
            text = _linux.ephemeral_range_text()
    elif sys.platform == "darwin" or "bsd" in sys.platform:
        from portinspect import _psutil

        text = _psutil.ephemeral_range_text()
    return (_range_pair(text) if text else None) or IANA_DYNAMIC


def _range_pair(text: str) -> tuple[int, int] | None:
    fields = text.split()
    if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
        return None
    low, high = int(fields[0]), int(fields[1])
    if not 1 <= low <= high <= 65535:
        return None
    return low, high


def privileged() -> bool:
    """Whether we see every process of this pid namespace and may signal it: root on POSIX.

    False on Windows, where elevation is not a uid (the call itself answers AccessDenied).
    """
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def user_name(uid: int) -> str:
    """The user's name, or the uid as text when it has none (or on Windows)."""
    return _user_names([uid]).get(uid, str(uid))


def _user_names(uids: Iterable[int]) -> dict[int, str]:
    try:
        import pwd
    except ImportError:  # Windows
        return {}
    names: dict[int, str] = {}
    for uid in set(uids):
        try:
            names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            names[uid] = str(uid)
    return names


def collect(
    ports: Iterable[int] | None = None,
    protos: Iterable[Proto] = ALL_PROTOS,
    *,
    backend: str | None = None,
    complete: bool = False,
) -> Snapshot:
    """One snapshot of the listening sockets (optionally only `ports`) and their owners.

    With ports, the holders are those related to the first one found (a quick walk that
    stops early: `list --port`). complete=True (who, kill) walks every process instead, so
    a socket passed to an unrelated process is seen too, records for every process which
    listening ports it holds (Snapshot.held: the app model needs to know a parent's other
    children serve other ports) and reads the holders' cgroups (systemd units, containers).

    backend: "auto" (default), "linux" or "psutil"; the PORTINSPECT_BACKEND
    environment variable chooses too.
    """
    wanted = frozenset(ports) if ports is not None else None
    protos = frozenset(protos)
    if complete and wanted is not None:
        everything, hidden = _backend_sockets(protos, None, backend)
        sockets = [s for s in everything if s.port in wanted]
        held = _held(everything)
        hidden = any(not s.pids for s in sockets)
        hidden_ports = frozenset((s.proto, s.port) for s in everything if not s.pids)
    else:
        sockets, hidden = _backend_sockets(protos, wanted, backend)
        held, hidden_ports = {}, frozenset((s.proto, s.port) for s in sockets if not s.pids)
    sockets.sort(key=lambda s: (s.port, s.proto.value, s.family.value, s.address))
    holders = {pid for s in sockets for pid in s.pids}
    processes = read_processes(holders, backend=backend, cgroups=complete)
    live = [s for s in (_without_dead(s, processes) for s in sockets) if s is not None]
    return models.Snapshot(
        sockets=tuple(live),
        processes=processes,
        owners_hidden=hidden,
        self_lineage=self_lineage(backend=backend),
        user_names=_user_names(s.uid for s in live if s.uid is not None),
        held=held,
        hidden_ports=hidden_ports,
        ephemeral=ephemeral_range(),
        privileged=privileged(),
    )


def _held(sockets: Iterable[Socket]) -> dict[int, frozenset[PortKey]]:
    found: dict[int, set[PortKey]] = {}
    for sock in sockets:
        for pid in sock.pids:
            found.setdefault(pid, set()).add((sock.proto, sock.port))
    return {pid: frozenset(ports) for pid, ports in found.items()}


def with_subtrees(
    snapshot: Snapshot, roots: Iterable[int], *, backend: str | None = None
) -> Snapshot:
    """The snapshot with every descendant of `roots` added to its processes (who, kill)."""
    processes = dict(snapshot.processes)
    for root in sorted(set(roots)):
        for pid, info in process_tree(root, backend=backend, cgroups=True).items():
            processes.setdefault(pid, info)
    return replace(snapshot, processes=processes)


def _without_dead(sock: Socket, processes: Mapping[int, ProcessInfo]) -> Socket | None:
    """Drop holders that exited since the socket dump; drop the socket if all of them did.

    A socket we never saw an owner for is kept: hidden is not the same as gone.
    """
    alive = tuple(p for p in sock.pids if p in processes)
    if alive == sock.pids:
        return sock
    return replace(sock, pids=alive) if alive else None


def read_source(path: str) -> str | None:
    """The start of an app module, for spotting its framework; None if unreadable.

    Bounded and non-blocking (appsource.py): the file belongs to whoever runs the server.
    """
    from portinspect import appsource

    return appsource.read_source(path)


def process_tree(
    root: int, *, backend: str | None = None, cgroups: bool = False
) -> dict[int, ProcessInfo]:
    """The root process and all its descendants."""
    if _linux_details(backend):
        from portinspect import _linux

        with contextlib.suppress(OSError):  # without CONFIG_PROC_CHILDREN psutil does it
            return _linux.process_tree(root, ENV_MARKERS, reduce_env, cgroups=cgroups)
    from portinspect import _psutil

    return _psutil.process_tree(root, ENV_MARKERS, reduce_env)


def container_proxies(port: int) -> tuple[ProcessInfo, ...]:
    """docker-proxy and rootless forwarders that name `port` on their command line."""
    from portinspect.managers import container_proxy

    found: list[ProcessInfo] = []
    for pid, cmdline in command_lines():
        info = models.ProcessInfo(pid=pid, ppid=None, name=None, user=None, cmdline=cmdline)
        proxy = container_proxy(info)
        if proxy is not None and proxy["host_port"] == port:
            found.append(info)
    return tuple(found)


def command_lines(*, backend: str | None = None) -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process we may see; the argv only, never the environment."""

    def linux() -> list[tuple[int, tuple[str, ...]]]:
        from portinspect import _linux

        return _linux.command_lines()

    def portable() -> list[tuple[int, tuple[str, ...]]]:
        from portinspect import _psutil

        return _psutil.command_lines()

    return _via_backend(backend, linux, portable)


# --- process trees, for run/serve's supervisor ----------------------------------------------


class ProcessHandle(Protocol):
    """A process pinned when it was found: send() reaches it or nothing, never a process that
    was given its pid later (a pidfd on Linux, psutil's start-time check elsewhere)."""

    pid: int

    def send(self, signum: int) -> bool: ...  # False: it has gone
    def close(self) -> None: ...


def keep_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants (a child subreaper, Linux).

    False where no OS support exists (macOS, Windows): orphans then go to init or launchd.
    """
    if not sys.platform.startswith("linux"):
        return False
    from portinspect import _linux

    try:
        _linux.set_child_subreaper()
    except OSError:
        return False
    return True


def die_with_parent(signum: int) -> bool:
    """Ask the kernel for signum when our parent exits (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    from portinspect import _linux

    try:
        _linux.set_parent_death_signal(signum)
    except OSError:
        return False
    return True


def descendants(root: int, *, backend: str | None = None) -> list[int]:
    """root's descendants (root excluded), parents before their children."""

    def linux() -> list[int]:
        from portinspect import _linux

        return _linux.descendants(root)

    def portable() -> list[int]:
        from portinspect import _psutil

        return _psutil.descendants(root)

    return _via_backend(backend, linux, portable)


def pin_descendants(root: int, *, backend: str | None = None) -> list[ProcessHandle]:
    """Handles to root's descendants, parents first: signal through them, close them after."""

    def linux() -> list[ProcessHandle]:
        from portinspect import _linux

        return list(_linux.pin_descendants(root))

    def portable() -> list[ProcessHandle]:
        from portinspect import _psutil

        return list(_psutil.pin_descendants(root))

    return _via_backend(backend, linux, portable)


def tree_sockets(
    root: int,
    ports: Iterable[int],
    protos: Iterable[Proto] = (Proto.TCP,),
    *,
    backend: str | None = None,
) -> list[Socket]:
    """The listening sockets on `ports` (any address, either family) held by root's
    descendants, each with the pids among them that hold it."""
    wanted, kinds = frozenset(ports), frozenset(protos)

    def linux() -> list[Socket]:
        from portinspect import _linux

        return _linux.tree_sockets(root, wanted, kinds)

    def portable() -> list[Socket]:
        from portinspect import _psutil

        return _psutil.tree_sockets(root, wanted, kinds)

    return _via_backend(backend, linux, portable)


def process(pid: int, *, backend: str | None = None) -> ProcessInfo | None:
    """What we may read about one process; None if it has gone."""
    return _process_reader(backend)(pid)
