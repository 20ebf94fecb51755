"""The processes tests start to hold a port: one script, one class, every shape in one place.

    with holding() as h:                       # a plain listener on a leased port
    with holding(ignore_term=True) as h:       # stubborn: SIGTERM does nothing
    with holding(child=True) as h:             # a reloader pair sharing the socket (werkzeug)
    with holding(child=True, keep=False):      # a launcher whose child alone holds it (npm)
    with holding(respawn=True) as h:           # a supervisor restarting the worker that holds it
    with holding(udp=True, host=LOOPBACK6):    # a bound UDP socket, on ::1
    with hostile() as h:                       # argv, name and cwd full of terminal escapes

Each holder binds a port the test leased (tests/support.py) before it starts, prints `ready
<pid>` once the socket is held and every process of the shape exists, and runs in a session of
its own: the session is its whole family (children, respawned workers, orphans), which `stop()`
kills by pid and identity, and which tests watch to prove that nothing is left that could bind
the port again. A holder left behind by a crashed test exits by itself after LIFETIME seconds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from portinspect import scan

from .support import LOOPBACK4, Endpoint, endpoint, lease_port, same_socket, wait_until

LIFETIME = 300.0

HOLDER = r"""
import os, signal, socket, subprocess, sys, time
env = os.environ
end = time.monotonic() + float(env["LIFETIME"])
# Set either way: an ignored signal stays ignored across fork and exec, so a stubborn
# parent's children would ignore SIGTERM too unless they restore the default.
signal.signal(signal.SIGTERM, signal.SIG_IGN if env.get("IGNORE_TERM") == "1" else signal.SIG_DFL)
if env.get("COMM_HEX"):
    with open("/proc/self/comm", "wb") as f:
        f.write(bytes.fromhex(env["COMM_HEX"]))


def bind():
    host, udp = env["HOST"], env.get("UDP") == "1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(env["PORT"])))
    if not udp:
        sock.listen()
    return sock


def again(**changes):
    # This same program (argv and all) as a child, as reloaders and supervisors run theirs;
    # back once the child has set itself up, so "ready" means the whole shape is in place.
    settled, tell = os.pipe()
    fds = [tell, *([int(changes["HOLD_FD"])] if "HOLD_FD" in changes else [])]
    child_env = dict(env, IGNORE_TERM="0", SETTLED_FD=str(tell), **changes)
    child = subprocess.Popen(sys.orig_argv, executable=sys.executable, env=child_env,
                             pass_fds=fds)
    os.close(tell)
    os.read(settled, 1)
    os.close(settled)
    return child


def ready(announce=True):
    tell = env.pop("SETTLED_FD", None)
    if tell:
        os.write(int(tell), b"!")
        os.close(int(tell))
    if announce:
        print("ready", os.getpid(), flush=True)


role = env.get("ROLE")
if role == "supervisor":  # holds nothing; restarts its worker whenever it exits
    while time.monotonic() < end:
        again(ROLE="worker").wait()
        time.sleep(0.05)  # a worker that cannot start must not make this a busy loop
    sys.exit(0)
if role == "shared":  # a reloader's child: the socket came with it, as an fd
    sock = socket.socket(fileno=int(env["HOLD_FD"]))
    ready(announce=False)
else:
    sock = bind()
    if env.get("CHILD") == "1":
        again(ROLE="shared", HOLD_FD=str(sock.fileno()))
        if env.get("KEEP") == "0":
            sock.close()
    ready()
while time.monotonic() < end:
    time.sleep(0.5)
"""


@dataclass
class Holder:
    """A running holder: the process we started (`root`), the port, and its family."""

    popen: subprocess.Popen[bytes]
    port: int
    endpoint: Endpoint
    root: psutil.Process
    procs: list[psutil.Process] = field(default_factory=list)  # its processes when ready

    @property
    def pid(self) -> int:
        return self.root.pid

    @property
    def ids(self) -> set[tuple[int, float]]:
        """(pid, start time) of its processes when it was ready."""
        return identities(self.procs)

    def next_ready(self, timeout: float = 30.0) -> int:
        """The pid of the next process to print `ready` (a respawned worker)."""
        assert self.popen.stdout is not None
        line = _readline(self.popen.stdout, timeout)
        word, pid = line.split()
        assert word == b"ready", line
        return int(pid)

    def session(self) -> list[psutil.Process]:
        """Every process of its session still running: all it started, orphans included.

        The kernel does not reuse a session's id while a member lives. Once none does, the
        id may be given again, with the root's pid, to a new process that starts a session
        of its own: then nothing of ours is left.
        """
        if psutil.pid_exists(self.root.pid) and not self.root.is_running():
            return []  # the pid is another process's now (is_running checks the start time)
        return session_members(self.root.pid)

    def holds_port(self) -> bool:
        """Its own socket (exact address, family, protocol) is there, held by its processes."""
        pids = {p.pid for p in self.session()}
        rows = same_socket(scan(self.port, proto=self.endpoint.proto), self.endpoint)
        return any(h.process.pid in pids for row in rows for h in row.holders)

    def assert_freed_for_good(self, timeout: float = 30.0) -> None:
        """Its family is gone and its socket with it: nothing is left that could bind again.

        Proof rather than a watch over a window: every process that could re-bind the port
        (the holder, its children, a supervisor and whatever it spawned) is in the holder's
        session, and once no process of the session runs, none ever will again.
        """
        wait_until(lambda: not self.session(), timeout, f"holder session {self.pid} to end")
        assert same_socket(scan(self.port, proto=self.endpoint.proto), self.endpoint) == []

    def stop(self) -> None:
        """SIGKILL its whole session by pid (psutil checks the start time), then reap."""
        procs = {p.pid: p for p in [*self.procs, *self.session()]}
        for proc in procs.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(list(procs.values()), timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@contextlib.contextmanager
def holding(
    *,
    port: int | None = None,
    host: str = LOOPBACK4,
    udp: bool = False,
    ignore_term: bool = False,
    child: bool = False,
    keep: bool = True,
    respawn: bool = False,
    argv0: str | bytes | None = None,
    args: Sequence[str | bytes] = (),
    cwd: str | bytes | Path | None = None,
    comm: bytes | None = None,
) -> Iterator[Holder]:
    """Start a holder (see the module docstring), yield it once it holds its port, stop it.

    port: a leased one when None. argv0, args: what its command line shows besides
    `-c HOLDER` (argv0 defaults to this interpreter's path). comm: /proc/self/comm.
    """
    port = port or lease_port()
    env = {
        **os.environ,
        "LIFETIME": str(LIFETIME),
        "HOST": host,
        "PORT": str(port),
        "UDP": "1" if udp else "0",
        "IGNORE_TERM": "1" if ignore_term else "0",
        "CHILD": "1" if child else "0",
        "KEEP": "1" if keep else "0",
    }
    if respawn:
        env["ROLE"] = "supervisor"
    if comm is not None:
        env["COMM_HEX"] = comm.hex()
    argv = [argv0 or sys.executable, "-c", HOLDER, *args]
    popen = subprocess.Popen(
        argv,  # type: ignore[arg-type]  # str and bytes: hostile ones are not UTF-8
        executable=sys.executable,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    where = endpoint(port, host, "udp" if udp else "tcp")
    holder = Holder(popen, port, where, psutil.Process(popen.pid))
    try:
        holder.next_ready()
        holder.procs = [holder.root, *holder.root.children(recursive=True)]
        yield holder
    finally:
        holder.stop()


# Strings a hostile process shows: terminal escapes, bidi controls, bytes that are not UTF-8.
HOSTILE_ARGS = [
    b"\x1b[2J\x1b[31m",  # clear the screen, turn red
    b"\x1b]0;owned\x07",  # set the terminal title
    b"line one\nline two",
    b"carriage\rreturn",
    "\u202eevil right-to-left".encode(),
    "\u200fmark\u061c".encode(),  # RLM and ALM
    "\u2028separator\u2029".encode(),
    "\u0085next line".encode(),
    b"\x9b31m raw CSI byte",  # not UTF-8: a C1 CSI to a terminal in a legacy encoding
    b"\xff\xfe not utf-8",
    b"\t tab \x7f del",
    b"x" * 5000,
]
HOSTILE_CWD = b"dir with spaces\nnewline\x1b[31mesc\xe2\x80\xaertl\xff"
HOSTILE_NAME = b"\x1b[31m\n\xe2\x80\xaeev\xff"  # /proc/self/comm: 15 bytes at most


@contextlib.contextmanager
def hostile(parent: Path) -> Iterator[tuple[Holder, list[bytes], bytes]]:
    """A listener whose every visible string is hostile: (holder, its argv, its cwd).

    argv[0] is a bare "python" so that what fits in a table's command column does not depend
    on where the interpreter lives (CI's venv path is longer than a laptop's).
    """
    cwd = os.fsencode(parent) + b"/" + HOSTILE_CWD
    os.mkdir(cwd)
    with holding(argv0=b"python", args=HOSTILE_ARGS, cwd=cwd, comm=HOSTILE_NAME) as holder:
        argv = [b"python", b"-c", HOLDER.encode(), *HOSTILE_ARGS]
        yield holder, argv, cwd


# -- processes by identity ---------------------------------------------------------------------


def identities(procs: Iterable[psutil.Process]) -> set[tuple[int, float]]:
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            found.add((proc.pid, proc.create_time()))
    return found


def still_running(ids: set[tuple[int, float]]) -> list[int]:
    """Which (pid, start time) pairs still run. A bare pid check is fooled by pid reuse;
    a zombie has exited and only waits for its parent (the test) to reap it."""
    running = []
    for pid, started in ids:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            continue
    return running


def wait_gone(ids: set[tuple[int, float]], timeout: float = 30.0) -> list[int]:
    """Wait until none of them runs; the ones still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := still_running(ids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def session_members(sid: int) -> list[psutil.Process]:
    """The processes of session `sid` that have not exited (a zombie has)."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) != sid:
                continue
            proc = psutil.Process(pid)
            if os.getsid(pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue  # exited meanwhile
    return found


def pending_signals(pid: int) -> set[int]:
    """Signals sent to pid and not yet acted on (Linux: SigPnd and ShdPnd in its status).

    Lets a test prove that nothing was sent to a process at once, without waiting to see
    whether it dies: a signal is pending from the moment it is sent until the target runs.
    """
    pending = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                pending |= int(line.split()[1], 16)
    return {n for n in range(1, 65) if pending >> (n - 1) & 1}


def _readline(stream: object, timeout: float) -> bytes:
    """One line from a child's stdout pipe, or fail after timeout (a holder that hangs)."""
    import select

    fd = stream.fileno()  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line from the holder after {timeout}s (so far {line!r})"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, f"the holder exited before it was ready (so far {line!r})"
            line += chunk
    return line
