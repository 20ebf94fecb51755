"""The portable backend, and the only module that imports psutil: sockets and processes on
macOS, Windows, and Linux when /proc is odd; and everywhere, the handles kill signals through.

Two psutil traps shape this module (measured, see research/frameworks.md §1 and §4):
- On Linux net_connections() reports ONE pid per socket even when a gunicorn master
  and its workers share it, so sharers are found by asking the holder's relatives.
- On macOS net_connections() raises AccessDenied without root; we fall back to asking
  each process we may see, and say that other owners are hidden.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import psutil

from portinspect import models
from portinspect.models import Family, Proto

if TYPE_CHECKING:
    from portinspect.models import InterfaceAddress, ProcessInfo, Socket

_T = TypeVar("_T")

_KINDS = {Proto.TCP: "tcp", Proto.UDP: "udp"}
_FAMILIES: dict[int, Family] = {socket.AF_INET: Family.IPV4, socket.AF_INET6: Family.IPV6}
_Key = tuple[Proto, Family, str, int]


class _Conn(Protocol):
    """The fields we use of psutil's sconn/pconn named tuples."""

    @property
    def family(self) -> int: ...
    @property
    def laddr(self) -> Any: ...
    @property
    def raddr(self) -> Any: ...
    @property
    def status(self) -> str: ...


def _is_listening(conn: _Conn, proto: Proto) -> bool:
    if proto is Proto.TCP:
        return conn.status == psutil.CONN_LISTEN
    return not bool(conn.raddr)  # an unconnected UDP socket


def _key(conn: _Conn, proto: Proto) -> _Key | None:
    family = _FAMILIES.get(conn.family)
    if family is None or not conn.laddr:
        return None
    return proto, family, conn.laddr.ip, conn.laddr.port


def _system_wide(proto: Proto) -> Iterator[tuple[_Key, int | None]]:
    for conn in psutil.net_connections(_KINDS[proto]):
        key = _key(conn, proto)
        if key is not None and _is_listening(conn, proto):
            yield key, conn.pid


def _per_process(proto: Proto, procs: Iterable[psutil.Process]) -> Iterator[tuple[_Key, int]]:
    for proc in procs:
        try:
            conns = proc.net_connections(_KINDS[proto])
        except (psutil.Error, OSError):
            continue  # gone, or not ours to see
        for conn in conns:
            key = _key(conn, proto)
            if key is not None and _is_listening(conn, proto):
                yield key, proc.pid


def _relatives(pid: int) -> list[psutil.Process]:
    """The processes that may share a socket with pid: its ancestors and all their children.

    Shared listening sockets are inherited over fork, so sharers are always a parent,
    child or sibling of each other.
    """
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.parents()]
    except psutil.Error:
        return []
    found = {p.pid: p for p in family if p.pid > 1}
    for member in list(found.values()):
        try:
            for child in member.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(found.values())


def _add_sharers(holders: dict[_Key, set[int]], proto: Proto) -> None:
    seeds = {pid for pids in holders.values() for pid in pids}
    checked: set[int] = set()
    for seed in sorted(seeds):
        if seed in checked:
            continue
        relatives = [p for p in _relatives(seed) if p.pid not in checked]
        checked.update(p.pid for p in relatives)
        for key, pid in _per_process(proto, relatives):
            if key in holders:
                holders[key].add(pid)


def _uid_of(pid: int) -> int | None:
    if not hasattr(psutil.Process, "uids"):
        return None  # Windows has no uids
    try:
        return psutil.Process(pid).uids().effective
    except psutil.Error:
        return None


def list_sockets(
    protos: frozenset[Proto], ports: frozenset[int] | None = None
) -> tuple[list[Socket], bool]:
    """Listening TCP and unconnected UDP sockets with every holder pid found.

    Returns (sockets, owners_hidden). A socket whose owner we may not see keeps its
    place with an empty pids tuple; it is never dropped.
    """
    sockets: list[Socket] = []
    hidden = False
    for proto in sorted(protos, key=lambda p: p.value):
        holders: dict[_Key, set[int]] = defaultdict(set)
        try:
            found: Iterable[tuple[_Key, int | None]] = list(_system_wide(proto))
        except psutil.AccessDenied:
            # macOS without root: only our own processes answer.
            found = list(_per_process(proto, psutil.process_iter()))
            hidden = True
        for key, pid in found:
            if ports is not None and key[3] not in ports:
                continue
            holders[key]
            if pid is not None:
                holders[key].add(pid)
        if sys.platform.startswith("linux"):
            _add_sharers(holders, proto)
        for (proto_, family, address, port), pids in holders.items():
            if not pids:
                hidden = True
            ordered = tuple(sorted(pids))
            uid = _uid_of(ordered[0]) if ordered else None
            sockets.append(models.Socket(proto_, family, address, port, uid=uid, pids=ordered))
    return sockets, hidden


def local_port_states(port: int) -> dict[str, int]:
    """How many TCP sockets have `port` as their local port, by state, listeners apart (as
    _linux.local_port_states; psutil sees no socket that is bound without listening)."""
    found: dict[str, int] = {}
    try:
        conns = psutil.net_connections("tcp")
    except psutil.Error:  # macOS without root: other users' sockets cannot be listed
        return found
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status != psutil.CONN_LISTEN:
            name = str(conn.status).lower().replace("_", "-")
            found[name] = found.get(name, 0) + 1
    return found


def interface_addresses() -> list[InterfaceAddress]:
    """Every IPv4 and IPv6 address of every interface (getifaddrs)."""
    found = []
    for name, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            family = _FAMILIES.get(addr.family)
            if family is not None and addr.address:
                found.append(models.InterfaceAddress(name, family, addr.address.split("%", 1)[0]))
    return found


def command_lines() -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process whose command line we may read."""
    found = []
    for proc in psutil.process_iter():
        try:
            argv = tuple(proc.cmdline())
        except (psutil.Error, OSError):
            continue  # gone, a zombie, or not ours to read (macOS, Windows)
        if argv:
            found.append((proc.pid, argv))
    return found


# ---------------------------------------------------------------------------------------
# Processes: details, lineage and trees where /proc is not ours to read
# ---------------------------------------------------------------------------------------


def _safe(getter: Callable[[], _T]) -> _T | None:
    """A field we may not be allowed to read (cwd of another user) is None, not an error."""
    try:
        return getter()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


EnvReducer = Callable[[dict[str, str]], dict[str, str]]


def _env_markers(
    proc: psutil.Process, keys: Iterable[str], reduce_env: EnvReducer | None
) -> dict[str, str]:
    try:
        env = proc.environ()
    except (psutil.Error, OSError):
        return {}  # another user's process: env needs root
    found = {k: env[k] for k in keys if k in env}
    return reduce_env(found) if reduce_env is not None else found


def process_info(
    proc: psutil.Process, env_keys: Iterable[str] = (), reduce_env: EnvReducer | None = None
) -> ProcessInfo | None:
    """Everything we may read about one process; None if it has gone."""
    try:
        with proc.oneshot():
            ppid = proc.ppid()
            name = proc.name()
            create_time = proc.create_time()
            user = _safe(proc.username)
            cmdline = tuple(_safe(proc.cmdline) or ())
            cwd = _safe(proc.cwd)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return models.ProcessInfo(pid=proc.pid, ppid=None, name=None, user=None)
    return models.ProcessInfo(
        pid=proc.pid,
        ppid=ppid,
        name=name,
        user=user,
        cmdline=cmdline,
        cwd=cwd or None,
        create_time=create_time,
        env=_env_markers(proc, env_keys, reduce_env),
    )


def read_process(
    pid: int, env_keys: Iterable[str] = (), reduce_env: EnvReducer | None = None
) -> ProcessInfo | None:
    try:
        return process_info(psutil.Process(pid), env_keys, reduce_env)
    except psutil.Error:
        return None


def lineage(pid: int) -> set[int]:
    found = {pid}
    with contextlib.suppress(psutil.Error):
        found.update(p.pid for p in psutil.Process(pid).parents())
    return found


def process_tree(
    root: int, env_keys: Iterable[str] = (), reduce_env: EnvReducer | None = None
) -> dict[int, ProcessInfo]:
    try:
        top = psutil.Process(root)
        members = [top, *top.children(recursive=True)]
    except psutil.Error:
        return {}
    tree: dict[int, ProcessInfo] = {}
    for proc in members:
        info = process_info(proc, env_keys, reduce_env)
        if info is not None:
            tree[info.pid] = info
    return tree


def pid_exists(pid: int) -> bool:
    return bool(psutil.pid_exists(pid))


def ephemeral_range_text() -> str | None:
    """macOS's and the BSDs' range for outgoing connections' local ports (two lines), or None.

    Not psutil's: sysctl is the only portable way to read it there, and this backend is the
    one those systems use. Fixed argv, no user input.
    """
    import subprocess  # here: 4 ms of imports that Linux never needs

    try:
        return subprocess.run(
            ["sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"],
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def whoami() -> tuple[str | None, bool]:
    """Our user name, and whether we may signal other users' processes (root)."""
    try:
        user: str | None = psutil.Process().username()
    except psutil.Error:
        user = None
    # Windows: elevation is not a uid; the TerminateProcess call itself says AccessDenied.
    privileged = not hasattr(os, "geteuid") or os.geteuid() == 0
    return user, privileged


# ---------------------------------------------------------------------------------------
# Handles: the only way kill signals a process
# ---------------------------------------------------------------------------------------

# Windows has no graceful signal: send_signal(SIGTERM) and terminate() are both
# TerminateProcess, and signal 0 does not exist (research/frameworks.md §4.3). Read at call
# time by kill, so tests can simulate Windows.
CAN_SIGNAL = sys.platform != "win32"
# A start time read by the scan and again by psutil is the same number; a different one means
# the pid was reused between the two reads. Under half a clock tick (10 ms on Linux), so a
# process started one tick later is not taken for the first.
_SAME_START = 0.005


class Sent(Enum):
    SENT = "sent"
    GONE = "gone"  # exited, or its pid now belongs to someone else
    DENIED = "denied"


class Handle:
    """One process as kill knows it: psutil checks (pid, start time) before every signal, so a
    reused pid raises NoSuchProcess instead of reaching a stranger (research §5)."""

    __slots__ = ("_proc", "pid")

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    def alive(self) -> bool:
        """Running and still the process we captured. A zombie has exited and closed its
        sockets, unless it is a thread group leader whose other threads still run (a
        multithreaded server whose main thread returned first: mkdocs, gradio)."""
        proc = self._proc
        try:
            if not proc.is_running():
                return False
            if proc.status() != psutil.STATUS_ZOMBIE:
                return True
            return proc.num_threads() > 1
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True

    def signal(self, signum: int | None) -> Sent:
        """signum None: terminate() (TerminateProcess on Windows)."""
        try:
            if signum is None:
                self._proc.terminate()
            else:
                self._proc.send_signal(signum)
        except psutil.NoSuchProcess:
            return Sent.GONE
        except psutil.AccessDenied:
            return Sent.DENIED
        return Sent.SENT

    def may_signal(self) -> bool:
        """Signal 0: would a signal be allowed? (True where the OS has no signal 0.)"""
        if not CAN_SIGNAL:
            return True
        return self.signal(0) is not Sent.DENIED

    def children(self) -> list[Handle]:
        try:
            return [Handle(p) for p in self._proc.children(recursive=True)]
        except psutil.Error:
            return []

    def name(self) -> str | None:
        try:
            return self._proc.name()
        except psutil.Error:
            return None

    def send(self, signum: int) -> bool:
        """The ProcessHandle protocol run/serve use: False when the process has gone."""
        return self.signal(signum) is not Sent.GONE

    def close(self) -> None:
        return None


def capture(info: ProcessInfo) -> Handle | None:
    """A Handle for a process the scan saw; None if it exited or its pid was reused."""
    try:
        proc = psutil.Process(info.pid)
        started = info.create_time
        if started is not None and abs(proc.create_time() - started) > _SAME_START:
            return None
    except psutil.Error:
        return None
    return Handle(proc)


# --- run/serve: a process tree where no pidfds exist (macOS, old Linux) ----------------------


def descendants(root: int) -> list[int]:
    """root's descendants (root excluded), parents before their children; [] if root has gone."""
    return [h.pid for h in pin_descendants(root)]


def pin_descendants(root: int) -> list[Handle]:
    """Handles to root's descendants, parents first (psutil appends each child when it
    reaches its parent); [] if root has gone."""
    try:
        return [Handle(proc) for proc in psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return []


def tree_sockets(root: int, ports: frozenset[int], protos: frozenset[Proto]) -> list[Socket]:
    """The listening sockets on `ports` held by root's descendants, with those holders' pids."""
    found: dict[_Key, set[int]] = defaultdict(set)
    for pid in descendants(root):
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            continue
        for proto in protos:
            for key, holder in _per_process(proto, [proc]):
                if key[3] in ports:
                    found[key].add(holder)
    return [
        models.Socket(proto, family, address, port, pids=tuple(sorted(pids)))
        for (proto, family, address, port), pids in found.items()
    ]
