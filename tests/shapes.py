"""Process trees of the shapes `kill` must get right, started for real on leased ports.

Each shape is a small program (a pre-forking daemon, a multiprocessing parent, a bash script
running two servers, a holder that forks on SIGTERM...) started in its own session. Every
process it starts, even one that leaves the tree (a daemonized receiver, a copy forked on
SIGTERM), is recorded by pid and start time and stopped when the test ends, passed or failed.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from portinspect import api
from portinspect.models import Family, Proto

from .support import wait_until

HOST = "127.0.0.1"
PY = sys.executable


@dataclass
class Started:
    """A started shape: its root process, and every process recorded as belonging to it."""

    popen: subprocess.Popen[str]
    procs: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def record(self, pids: Iterable[int] = ()) -> list[psutil.Process]:
        """Remember the root's whole tree, plus `pids` (processes that left it)."""
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.popen.pid)
            found = [root, *root.children(recursive=True)]
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        for proc in found:
            self.procs.setdefault(proc.pid, proc)
        return found

    def line(self) -> str:
        """The next line the shape prints (a handshake: its pids, its ports)."""
        assert self.popen.stdout is not None
        return self.popen.stdout.readline().strip()

    def stop(self) -> None:
        self.record()
        for proc in self.procs.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()  # psutil checks the start time: a reused pid is never hit
        psutil.wait_procs(list(self.procs.values()), timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@contextlib.contextmanager
def started(
    argv: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Started]:
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    shape = Started(popen)
    try:
        yield shape
    finally:
        shape.stop()


def holders(port: int, *, proto: Proto = Proto.TCP, address: str = HOST) -> set[int]:
    """The pids holding the exact socket address:port (IPv4, proto): no other socket counts."""
    view = api.port_view(port, frozenset({proto}))
    return {
        h.process.pid
        for li in view.listeners
        if li.address == address and li.family is Family.IPV4 and li.proto is proto
        for h in li.holders
    }


def served(ports: Iterable[int], *, timeout: float = 30.0) -> dict[int, set[int]]:
    """Wait until every port has a holder; port -> its holders' pids."""
    found: dict[int, set[int]] = {}

    def ready() -> bool:
        for port in ports:
            found[port] = holders(port)
        return all(found.values())

    wait_until(ready, timeout, f"listeners on {sorted(ports)}")
    return found


def assert_still_served(expected: Mapping[int, set[int]], seconds: float = 1.0) -> None:
    """Every other service keeps its socket, held by the same pids, over `seconds`.

    A second is enough: honcho stops its other services within milliseconds of one exiting,
    and kill, which has returned, sends nothing more; a sibling killed by mistake shows at
    once, since SIGTERM to http.server or a bare holder closes its socket in under 100 ms.
    """
    deadline = time.monotonic() + seconds
    while True:
        for port, pids in expected.items():
            assert holders(port) == pids, f"port {port}: {holders(port)} != {pids}"
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def assert_stays_free(port: int, seconds: float = 1.0, *, proto: Proto = Proto.TCP) -> None:
    """Nothing holds the port, and nothing takes it back while we look (kill's own watch
    covered the first two seconds after it was freed, where the shapes here respawn)."""
    deadline = time.monotonic() + seconds
    while True:
        assert holders(port, proto=proto) == set(), f"port {port} is held again"
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the shapes ---------------------------------------------------------------------------

# A parent that forks one child per port; each child serves its own port. Parent and children
# share one command line, like a generic pre-fork daemon or a test harness.
PREFORK = """
import os, socket, sys, time
for port in sys.argv[1:]:
    if os.fork() == 0:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        s.listen()
        while True:
            time.sleep(60)
while True:
    time.sleep(60)
"""

# A parent that binds one socket and forks N children that inherit it: one app of N+1
# processes on one port (the plan folds the identical workers).
SHARED = """
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
for _ in range(int(sys.argv[2])):
    if os.fork() == 0:
        while True:
            time.sleep(60)
while True:
    time.sleep(60)
"""

# multiprocessing (spawn) running one http.server per port.
SPAWN = """
import http.server
import multiprocessing as mp
import sys


def serve(port):
    handler = http.server.SimpleHTTPRequestHandler
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    mp.set_start_method("spawn")
    procs = [mp.Process(target=serve, args=(int(p),)) for p in sys.argv[1:]]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
"""

# A parent that serves an admin port itself and forks a worker for the public port; the worker
# keeps its inherited copy of the admin socket (nobody closed it), the worst case.
ADMIN = """
import os, socket, sys, time
admin = socket.socket()
admin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
admin.bind(("127.0.0.1", int(sys.argv[1])))
admin.listen()
if os.fork() == 0:
    public = socket.socket()
    public.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    public.bind(("127.0.0.1", int(sys.argv[2])))
    public.listen()
    while True:
        time.sleep(60)
while True:
    time.sleep(60)
"""

# Main thread gone (pthread_exit), a zombie thread group leader; the thread that holds the
# socket blocks SIGTERM, so only SIGKILL ends it: kill must keep waiting and escalate.
ZOMBIE_LEADER = """
import ctypes, signal, socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
ready = threading.Event()
def serve():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    ready.set()
    while True:
        time.sleep(60)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
threading.Thread(target=serve).start()
ready.wait()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""

# A server that hands a copy of its listening socket over SCM_RIGHTS to an unrelated process:
# a receiver that double-forks away (its parent becomes init) and starts a `sleep` child.
SCM_RIGHTS = """
import array, os, socket, subprocess, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
ours, theirs = socket.socketpair(socket.AF_UNIX)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        ours.close()
        server.close()
        msg, anc, flags, addr = theirs.recvmsg(16, socket.CMSG_LEN(4))
        fds = array.array("i")
        fds.frombytes(anc[0][2][:4])
        held = socket.socket(fileno=fds[0])
        child = subprocess.Popen(["sleep", "600"])
        theirs.sendall(f"{os.getpid()} {child.pid}\\n".encode())
        while True:
            time.sleep(60)
    os._exit(0)
os.wait()
ours.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [server.fileno()]))])
print(ours.recv(64).decode().strip(), flush=True)
while True:
    time.sleep(60)
"""

# On SIGTERM it forks a copy that keeps the socket, and exits: the copy does the same.
FORK_ON_TERM = """
import os, signal, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
def again(signum, frame):
    if os.fork() == 0:
        return  # the copy goes on holding the socket
    os._exit(0)
signal.signal(signal.SIGTERM, again)
print(os.getpid(), flush=True)
while True:
    time.sleep(0.05)
"""

# On SIGTERM it closes its socket, waits 0.3 s and binds the port again: free for a moment only.
REBIND = """
import os, signal, socket, sys, time
port = int(sys.argv[1])
def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s
held = [listen()]
def rebind(signum, frame):
    held[0].close()
    time.sleep(0.3)
    held[0] = listen()
signal.signal(signal.SIGTERM, rebind)
print(os.getpid(), flush=True)
while True:
    time.sleep(60)
"""

# A plain listener that prints its pid, for a bystander or a process to move into a cgroup.
LISTENER = """
import os, socket, sys, time
s = socket.socket(type=socket.SOCK_DGRAM if len(sys.argv) > 2 else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
if len(sys.argv) <= 2:
    s.listen()
print(os.getpid(), flush=True)
while True:
    time.sleep(60)
"""
