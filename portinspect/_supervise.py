"""The keeper of one server's process tree, for `portinspect run` and `portinspect.serve()`.

    python -I -c BOOT <package dir> --control FD --status FD --parent PID --grace S
                      [--pdeathsig] -- ARGV...

Why a process of its own, between the caller and the server:
- Teardown must reach every process the server started, also those that double-forked or
  called setsid. On Linux the keeper is a child subreaper (PR_SET_CHILD_SUBREAPER): orphans
  are reparented to it, so its children, recursively, ARE the server's processes, and it
  reaps them all, so none of their pids can be reused while it still has to signal them.
  Making `run` itself the subreaper would do the same for `run`, but `serve()` runs inside
  the caller's process (pytest): a subreaper there would collect every orphan of the whole
  test session, which pytest then never reaps. The keeper confines that to one server.
- It must outlive its caller just long enough to clean up. It asks for SIGTERM when its
  parent dies (PR_SET_PDEATHSIG, Linux) and also watches a control pipe whose only writer is
  the caller: end of file means the caller is gone, however it died (SIGKILL included), on
  every POSIX system. Either way it tears the tree down gracefully, then exits.
- It runs in its own session, so a Ctrl-C in the terminal reaches `run` (and the tests) but
  not the servers: `run` stops them in order, top process first, instead of every process
  of every server handling SIGINT at once.
- The server's own top process gets PR_SET_PDEATHSIG=SIGTERM too: if the keeper itself is
  SIGKILLed, the top still hears of it and shuts its children down (reloaders and masters
  do; see research/frameworks.md).

Messages to the caller, one JSON object per line on the status pipe:
    {"event": "started", "pid": N}          the server's top process is running
    {"event": "failed", "error": "..."}     it could not be started (exec failed)
    {"event": "exited", "status": N}        the top process exited (negative: killed by -N)
    {"event": "gone"}                       no process of the tree is left; the keeper exits
    {"event": "teardown", "signalled": [{"pid", "signal", "at"}], "left": [{"pid", "cmdline"}],
     "status": N | null, "elapsed": S}      after a teardown; the keeper exits

The caller asks for a teardown by writing "stop <grace seconds>\\n" on the control pipe.
stdout and stderr belong to the server (its log): the keeper writes nothing there.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from portinspect import scanner

# The keeper runs isolated (-I: no PYTHON* variables, no user site, no cwd on sys.path, so a
# project's own `select.py` cannot shadow the stdlib) with the package's directory put first
# on sys.path by hand: that works for an installed, an editable and a source-tree portinspect.
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from portinspect._supervise import main;main()"

# After SIGKILL, how long we wait for the tree to be gone (process teardown; up to ~1 s was
# seen on a loaded VM, research/frameworks.md).
KILL_WAIT = 3.0
_POLL = 0.02  # between checks while waiting for processes to exit
# By name: runner.py imports this module on every OS, Windows (no SIGHUP) included.
_STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")


def command(
    argv: Sequence[str], *, control: int, status: int, grace: float, pdeathsig: bool
) -> list[str]:
    """The keeper's own command line, for the caller to start."""
    package_dir = str(Path(__file__).resolve().parent.parent)
    options = ["--control", str(control), "--status", str(status)]
    options += ["--parent", str(os.getpid()), "--grace", repr(float(grace))]
    if pdeathsig:
        options.append("--pdeathsig")
    return [sys.executable, "-I", "-c", _BOOT, package_dir, *options, "--", *argv]


class _Options:
    def __init__(self, args: Sequence[str]) -> None:
        split = list(args).index("--")
        head, self.argv = list(args[:split]), list(args[split + 1 :])
        self.pdeathsig = "--pdeathsig" in head
        values = dict(zip(head[::2], head[1::2], strict=False))
        self.control = int(values["--control"])
        self.status = int(values["--status"])
        self.parent = int(values["--parent"])
        self.grace = float(values["--grace"])


class Supervisor:
    def __init__(self, opts: _Options) -> None:
        self.opts = opts
        self.top: subprocess.Popen[bytes] | None = None
        self.top_status: int | None = None
        self.stop_grace: float | None = None  # set when a teardown is asked for
        self.signalled: list[dict[str, object]] = []
        self._sent: set[tuple[int, int]] = set()
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        os.set_inheritable(opts.control, False)  # the server must not hold our pipes
        os.set_inheritable(opts.status, False)
        signal.set_wakeup_fd(wake_w)
        # A Python handler makes the C handler write to the wakeup fd: SIGCHLD wakes select().
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for name in _STOP_SIGNALS:
            signal.signal(getattr(signal, name), self._asked_to_stop)

    # -- talking to the caller ---------------------------------------------------------------

    def report(self, event: str, **fields: object) -> None:
        data = memoryview((json.dumps({"event": event, **fields}) + "\n").encode())
        # Every byte: a teardown report of a big tree is more than a pipe writes at once.
        # EPIPE: the caller is gone, and the teardown goes on regardless.
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.opts.status, data) :]

    def _asked_to_stop(self, signum: int, frame: object) -> None:
        if self.stop_grace is None:
            self.stop_grace = self.opts.grace

    def _read_control(self) -> None:
        try:
            data = os.read(self.opts.control, 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if self.stop_grace is not None:
            return
        if not data:  # the caller exited, however it died
            self.stop_grace = self.opts.grace
            return
        for line in data.decode(errors="replace").splitlines():
            word, _, value = line.partition(" ")
            if word == "stop":
                try:
                    self.stop_grace = max(0.0, float(value))
                except ValueError:
                    self.stop_grace = self.opts.grace

    # -- the server ----------------------------------------------------------------------------

    def spawn(self) -> None:
        me = os.getpid()

        def in_child() -> None:
            # Single-threaded keeper, so a preexec function is safe here. If we die, the top
            # hears SIGTERM; if we died before this line, do not start at all.
            scanner.die_with_parent(signal.SIGTERM)
            if os.getppid() != me:
                os._exit(1)

        self.top = subprocess.Popen(self.opts.argv, stdin=subprocess.DEVNULL, preexec_fn=in_child)

    def reap(self) -> bool:
        """Collect every child that exited; True when no child (hence no descendant) is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if self.top is not None and pid == self.top.pid:
                self.top_status = os.waitstatus_to_exitcode(status)
                self.top.returncode = self.top_status  # we reaped it, not Popen
                self.report("exited", status=self.top_status)

    def pause(self, seconds: float) -> None:
        """Sleep until a signal, a control message or `seconds`, whichever comes first."""
        watched = [self._wake_r]
        if self.stop_grace is None:  # once stopping, the caller has nothing more to say
            watched.append(self.opts.control)
        try:
            readable, _, _ = select.select(watched, [], [], max(0.0, seconds))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            readable = []
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if self.opts.control in readable:
            self._read_control()

    # -- teardown ------------------------------------------------------------------------------

    def _send(self, handles: Sequence[scanner.ProcessHandle], signum: int, t0: float) -> None:
        for handle in handles:
            if (handle.pid, signum) in self._sent or not handle.send(signum):
                continue
            self._sent.add((handle.pid, signum))
            at = round(time.monotonic() - t0, 4)
            self.signalled.append(
                {"pid": handle.pid, "signal": signal.Signals(signum).name, "at": at}
            )

    def _wait(self, until: Callable[[], bool], deadline: float) -> bool:
        """Reap and wait until the tree is gone (True), `until()` holds or the deadline passes."""
        while True:
            if self.reap():
                return True
            if until() or time.monotonic() >= deadline:
                return False
            self.pause(min(_POLL, deadline - time.monotonic()))

    def teardown(self, grace: float) -> list[dict[str, object]]:
        """Graceful, then forced: SIGTERM the top (a reloader or master stops its own children);
        once it exits, or after half the grace, SIGTERM every process left (npm's orphaned
        node, a daemon); SIGKILL what is left after `grace`, parents first so nothing is
        respawned, until the tree is gone. Returns what is still alive after KILL_WAIT."""
        t0 = time.monotonic()
        never = lambda: False  # noqa: E731
        gone = self.reap()
        if not gone and self.top is not None and self.top_status is None:
            # Our own child, not reaped yet: its pid cannot belong to anyone else.
            self._send([_Child(self.top.pid)], signal.SIGTERM, t0)
            gone = self._wait(lambda: self.top_status is not None, t0 + grace / 2)
        if not gone:
            self._close(self._send_all(signal.SIGTERM, t0))
            gone = self._wait(never, t0 + grace)
        deadline = time.monotonic() + KILL_WAIT
        while not gone and time.monotonic() < deadline:
            self._close(self._send_all(signal.SIGKILL, t0))
            gone = self._wait(never, min(deadline, time.monotonic() + 0.1))
        return [] if gone else self._left()

    def _send_all(self, signum: int, t0: float) -> list[scanner.ProcessHandle]:
        handles = scanner.pin_descendants(os.getpid())
        self._send(handles, signum, t0)
        return handles

    @staticmethod
    def _close(handles: Sequence[scanner.ProcessHandle]) -> None:
        for handle in handles:
            handle.close()

    def _left(self) -> list[dict[str, object]]:
        left = []
        for pid in scanner.descendants(os.getpid()):
            info = scanner.process(pid)
            left.append({"pid": pid, "cmdline": list(info.cmdline) if info else []})
        return left

    # -- the whole life ----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.spawn()
        except (OSError, subprocess.SubprocessError) as exc:
            error = getattr(exc, "strerror", None) or str(exc)
            self.report("failed", error=f"{self.opts.argv[0]!r}: {error}")
            return 1
        assert self.top is not None
        self.report("started", pid=self.top.pid)
        while self.stop_grace is None:
            if self.reap():
                self.report("gone")
                return 0
            self.pause(1.0)
        t0 = time.monotonic()
        left = self.teardown(self.stop_grace)
        self.report(
            "teardown",
            signalled=self.signalled,
            left=left,
            status=self.top_status,
            elapsed=round(time.monotonic() - t0, 4),
        )
        return 1 if left else 0


class _Child:
    """Our direct, unreaped child: a plain kill() is safe (its pid is ours until we reap it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def send(self, signum: int) -> bool:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        return None


def main(args: Sequence[str] | None = None) -> None:
    opts = _Options(sys.argv[2:] if args is None else args)
    scanner.keep_orphans()
    if opts.pdeathsig:
        scanner.die_with_parent(signal.SIGTERM)
    if os.getppid() != opts.parent:
        os._exit(0)  # the caller died before we could ask to hear of it: start nothing
    code = Supervisor(opts).run()
    os._exit(code)
