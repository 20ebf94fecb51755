"""A loopback socket load for benchmarks: listeners, UDP sockets, established connections, idle fds.

    python benchmarks/loadgen.py --listen 1000 --udp 100 --procs 200 --established 5000 \
        --idle-procs 20 --idle-fds 500 --hold-seconds 600 --state-file /tmp/load.json

What it builds (127.0.0.1 and ::1 only; one socket in three is IPv6):
- P socket-holding processes (comm `lg-w<N>`). Worker w creates TCP listeners i with
  i % workers == w (port base+i) and UDP sockets j likewise, then opens its share of the M
  established connections to its own listeners (client and accepted end both in the worker,
  so each connection is two sockets and two fds).
- One holder in --share-every is a pre-fork child (comm `lg-c<N>`) of a worker: it keeps the
  worker's listeners and UDP sockets and closes the rest, the way gunicorn's workers share the
  master's socket. These listeners have two owner pids, as `ss -p` shows them.
- Every --nobody-every-th worker drops to uid `nobody` once its sockets are open.
- K idle processes (comm `lg-i<N>`) each hold F non-socket fds (/dev/null, pipes, a deleted
  temporary file), forked in between the workers so their pids spread across the pid range.

The port base is chosen at run time below the ephemeral range, where the fewest local ports are
in use; a port that is still taken falls back to one the kernel picks. Every socket has
SO_LINGER {1, 0}: closing it sends RST, so no TIME_WAIT is left to skew the next run.

Bounded and clean: it raises RLIMIT_NOFILE as far as needed, holds for --hold-seconds (capped at
HARD_CAP), and on SIGTERM, SIGINT, SIGHUP, the time cap or any setup error it SIGKILLs every
process it started, by pid, and reaps them. Children also have PR_SET_PDEATHSIG=SIGKILL and a
SIGALRM of their own, so they die with their parent even if it is SIGKILLed.

When ready it prints one line `READY {json}` on stdout and, with --state-file, writes a JSON
document with the counts, the port base and every holder's pid and ports.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HARD_CAP = 1800.0  # seconds: no load outlives this, whatever --hold-seconds says
SETUP_TIMEOUT = 300.0
CHILD_GRACE = 60  # children's own alarm fires this long after the cap
LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
LINGER_RST = struct.pack("ii", 1, 0)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)


class Stop(Exception):
    """A stop signal arrived or the time cap ran out."""


@dataclass
class Spec:
    listen: int
    udp: int
    procs: int
    established: int
    idle_procs: int
    idle_fds: int
    hold: float
    nobody_every: int
    share_every: int
    base: int | None = None
    state_file: Path | None = None

    @property
    def sharers(self) -> int:
        """How many of the P holders are pre-fork children rather than workers."""
        if self.share_every <= 1 or self.procs < 2:
            return 0
        return min(self.procs // self.share_every, self.procs // 2)

    @property
    def workers(self) -> int:
        return self.procs - self.sharers


@dataclass
class Holder:
    index: int
    pid: int
    user: str
    tcp: list[tuple[str, int]] = field(default_factory=list)
    udp: list[tuple[str, int]] = field(default_factory=list)
    established: int = 0
    child: int | None = None


# --- small OS helpers ---------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int | bytes) -> None:
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return
    with contextlib.suppress(AttributeError, OSError):
        _libc.prctl(option, arg, 0, 0, 0)


def _name(comm: str) -> None:
    _prctl(_PR_SET_NAME, comm.encode()[:15])


def _die_with_parent(parent: int, hold: float) -> None:
    """SIGKILL when the parent dies (re-armed after setuid, which clears it) and a last alarm."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    signal.alarm(int(hold) + CHILD_GRACE)


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # root may raise the hard limit up to fs.nr_open
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, nr_open),) * 2)
            return min(needed, nr_open)
        except (OSError, ValueError):
            target = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def used_local_ports() -> set[int]:
    """Every local port in /proc/net/{tcp,tcp6,udp,udp6}, in any state."""
    used: set[int] = set()
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1:
                used.add(int(fields[1].rpartition(":")[2], 16))
    return used


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def choose_base(count: int) -> int:
    """A port base below the ephemeral range where [base, base+count) is the least used."""
    low, high = ephemeral_range()
    used = used_local_ports()
    candidates = list(range(10000, max(10001, low - count), 1000))
    candidates += list(range(high + 1, 65536 - count, 1000))
    if not candidates:
        return 1024
    return min(candidates, key=lambda b: (sum(1 for p in used if b <= p < b + count), b))


def _socket(af: int, kind: int) -> socket.socket:
    sock = socket.socket(af, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    if af == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def _bind(sock: socket.socket, af: int, port: int) -> None:
    try:
        sock.bind((LOOPBACK[af], port))
    except OSError:
        sock.bind((LOOPBACK[af], 0))  # taken at run time: let the kernel pick


# --- children ------------------------------------------------------------------------------


def _worker(spec: Spec, w: int, base: int, report: int, parent: int, scratch: str) -> None:
    """Open this worker's sockets, report them, optionally fork a sharer, then wait."""
    _die_with_parent(parent, spec.hold)
    _name(f"lg-w{w}")
    workers = spec.workers
    listeners: list[socket.socket] = []
    udps: list[socket.socket] = []
    conns: list[socket.socket] = []
    tcp: list[tuple[str, int]] = []
    udp: list[tuple[str, int]] = []
    for i in range(w, spec.listen, workers):
        af = socket.AF_INET6 if i % 3 == 2 else socket.AF_INET
        sock = _socket(af, socket.SOCK_STREAM)
        _bind(sock, af, base + i)
        sock.listen(1024)
        listeners.append(sock)
        tcp.append((LOOPBACK[af], sock.getsockname()[1]))
    for j in range(w, spec.udp, workers):
        af = socket.AF_INET6 if j % 3 == 2 else socket.AF_INET
        sock = _socket(af, socket.SOCK_DGRAM)
        _bind(sock, af, base + spec.listen + j)
        udps.append(sock)
        udp.append((LOOPBACK[af], sock.getsockname()[1]))
    share = spec.established // workers + (1 if w < spec.established % workers else 0)
    for k in range(share if listeners else 0):
        target = listeners[k % len(listeners)]
        client = _socket(target.family, socket.SOCK_STREAM)
        client.connect(target.getsockname()[:2])
        accepted, _ = target.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        conns += (client, accepted)
    # The ports go to a file (any size, written before we may lose the right to), the pipe
    # only gets a short line: writes up to PIPE_BUF never interleave.
    Path(scratch, f"w{w}.json").write_text(json.dumps({"tcp": tcp, "udp": udp}))
    user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if (
        spec.nobody_every > 0
        and w % spec.nobody_every == spec.nobody_every - 1
        and os.geteuid() == 0
    ):
        nobody = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        user = "nobody"
        _die_with_parent(parent, spec.hold)  # setuid cleared the death signal
    child = None
    if w < spec.sharers:
        me = os.getpid()
        child = os.fork()
        if child == 0:
            try:
                _die_with_parent(me, spec.hold)
                _name(f"lg-c{w}")
                for c in conns:
                    c.close()
                os.close(report)
                while True:
                    signal.pause()
            finally:
                os._exit(0)
    state = {"index": w, "pid": os.getpid(), "user": user}
    state |= {"established": len(conns) // 2, "child": child}
    os.write(report, (json.dumps(state) + "\n").encode())
    os.close(report)
    while True:
        signal.pause()


def _idle(spec: Spec, n: int, report: int, parent: int, scratch: str) -> None:
    _die_with_parent(parent, spec.hold)
    _name(f"lg-i{n}")
    held: list[int] = []
    fd, path = tempfile.mkstemp(dir=scratch)
    os.unlink(path)  # shows as "(deleted)" in /proc/<pid>/fd
    held.append(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    held.append(null)
    while len(held) < spec.idle_fds:
        kind = len(held) % 4
        if kind == 0:
            r, w = os.pipe()
            held += (r, w)
        elif kind == 1:
            held.append(os.dup(fd))
        else:
            held.append(os.dup(null))
    os.write(report, (json.dumps({"idle": n, "pid": os.getpid()}) + "\n").encode())
    os.close(report)
    while True:
        signal.pause()


def _fork(target: Callable[..., None], *args: object) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sig in _STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            target(*args)
        except BaseException as exc:
            sys.stderr.write(f"loadgen child {os.getpid()}: {exc!r}\n")
            code = 1
        finally:
            os._exit(code)
    return pid


# --- the load ------------------------------------------------------------------------------


class Load:
    """The processes of one load; stop() kills every one of them by pid and reaps it."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.children: list[int] = []  # forked by us: reaped by us
        self.grandchildren: list[int] = []  # sharers, reparented to us (subreaper) when orphaned
        self.holders: list[Holder] = []
        self.base = 0

    def start(self) -> None:
        spec = self.spec
        # Holders need their sockets + 2 per connection; idles their fds; all inherit the limit.
        per_worker = (spec.listen + spec.udp) // max(1, spec.workers) + 1
        per_worker += 2 * (spec.established // max(1, spec.workers) + 1)
        raise_nofile(max(per_worker, spec.idle_fds) + 64)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self.base = spec.base or choose_base(spec.listen + spec.udp)
        parent = os.getpid()
        read_end, write_end = os.pipe()
        scratch = tempfile.mkdtemp(prefix="loadgen-")
        try:
            # Idle k is forked after worker (k * workers) // idle_procs: spread over the pids.
            idle_after = [
                (k * spec.workers) // max(1, spec.idle_procs) for k in range(spec.idle_procs)
            ]
            for w in range(spec.workers):
                self.children.append(_fork(_worker, spec, w, self.base, write_end, parent, scratch))
                for k in (k for k, after in enumerate(idle_after) if after == w):
                    self.children.append(_fork(_idle, spec, k, write_end, parent, scratch))
            os.close(write_end)
            write_end = -1
            self._collect(read_end, scratch)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
            shutil.rmtree(scratch, ignore_errors=True)

    def _collect(self, read_end: int, scratch: str) -> None:
        deadline = time.monotonic() + SETUP_TIMEOUT
        buf = b""
        expected = self.spec.workers + self.spec.idle_procs
        ready = 0
        while ready < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("children did not get ready in time")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                raise RuntimeError(f"a child failed during setup ({ready}/{expected} ready)")
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                ready += 1
                state = json.loads(line)
                if "idle" in state:
                    continue
                ports = json.loads(Path(scratch, f"w{state['index']}.json").read_text())
                holder = Holder(
                    state["index"],
                    state["pid"],
                    state["user"],
                    [(host, port) for host, port in ports["tcp"]],
                    [(host, port) for host, port in ports["udp"]],
                    state["established"],
                    state["child"],
                )
                self.holders.append(holder)
                if holder.child:
                    self.grandchildren.append(holder.child)
        self.holders.sort(key=lambda h: h.index)

    def stop(self) -> None:
        # Sharers first, while their parents are alive and do not reap: their pids cannot be
        # reused before the SIGKILL lands. Then the direct children, then reap everything.
        for pid in [*self.grandchildren, *self.children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        # Orphaned sharers were reparented to us (child subreaper); reap whatever is left.
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
        self.children.clear()
        self.grandchildren.clear()

    def state(self) -> dict[str, object]:
        holders = []
        for h in self.holders:
            pids = [h.pid] if h.child is None else [h.pid, h.child]
            holders.append(
                {"pids": pids, "user": h.user, "tcp": h.tcp, "udp": h.udp, "est": h.established}
            )
        return {
            "pid": os.getpid(),
            "base": self.base,
            "listen": sum(len(h.tcp) for h in self.holders),
            "udp": sum(len(h.udp) for h in self.holders),
            "established": sum(h.established for h in self.holders),
            "processes": len(self.children) + len(self.grandchildren),
            "holders": holders,
        }


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_args(argv: list[str] | None = None) -> Spec:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--listen", type=int, default=20, help="TCP listeners")
    p.add_argument("--udp", type=int, default=0, help="bound UDP sockets")
    p.add_argument("--procs", type=int, default=10, help="socket-holding processes")
    p.add_argument("--established", type=int, default=0, help="TCP connections (2 sockets each)")
    p.add_argument("--idle-procs", type=int, default=0, help="processes without sockets")
    p.add_argument("--idle-fds", type=int, default=0, help="non-socket fds per idle process")
    p.add_argument("--hold-seconds", type=float, default=600.0, help=f"capped at {HARD_CAP:g}")
    p.add_argument("--nobody-every", type=int, default=4, help="0: nobody drops to `nobody`")
    p.add_argument("--share-every", type=int, default=10, help="0: no pre-fork sharers")
    p.add_argument("--port-base", type=int, default=None, help="default: chosen at run time")
    p.add_argument("--state-file", type=Path, default=None)
    args = p.parse_args(argv)
    if args.procs < 1:
        p.error("--procs must be at least 1")
    return Spec(
        listen=args.listen,
        udp=args.udp,
        procs=args.procs,
        established=args.established,
        idle_procs=args.idle_procs,
        idle_fds=args.idle_fds,
        hold=min(args.hold_seconds, HARD_CAP),
        nobody_every=args.nobody_every,
        share_every=args.share_every,
        base=args.port_base,
        state_file=args.state_file,
    )


def main(argv: list[str] | None = None) -> int:
    spec = parse_args(argv)
    load = Load(spec)
    started = time.monotonic()
    try:
        with stop_on_signals():
            signal.alarm(int(spec.hold) + 1)  # the time cap, setup included
            try:
                load.start()
                state = load.state()
                state["setup_seconds"] = round(time.monotonic() - started, 2)
                if spec.state_file is not None:
                    spec.state_file.write_text(json.dumps(state))
                summary = {k: v for k, v in state.items() if k != "holders"}
                print("READY " + json.dumps(summary), flush=True)
                while True:
                    signal.pause()
            except Stop as stop:
                sys.stderr.write(f"loadgen: stopping ({stop})\n")
            finally:
                signal.alarm(0)
                load.stop()
    except Stop:  # a second signal during cleanup: finish it anyway
        load.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
