"""The escalation: signals, waits and re-checks for one port, and nothing else.

The ladder (research/frameworks.md §7, measured on real dev servers):
- SIGTERM to each app's TOP first: reloaders and masters stop their children themselves, and
  a killed worker would only be respawned. It freed every measured Python server in 2-430 ms.
- Once the tops have exited while the port is still held (npm orphans the vite it started),
  or after half the timeout, the same signal to the rest of the tree and to new holders.
- SIGKILL to whatever is left, tops first, `timeout` after the first signal. SIGKILL of a
  top alone orphans children that keep serving for 40 s and more, so it goes to all.
- "Free" means no listening socket on the port (the socket table), never a bind() test:
  TIME_WAIT makes bind() fail for up to 60 s after a served request.
- Once free, the port is watched for WATCH_SECONDS when something could start the app again
  (a manager, a parent that runs other services): supervisord restarted a killed uvicorn
  1.04 s after it exited. A respawn by a manager is reported, never fought; anything else
  that takes the port back is signalled like the first holders.

Signals go only through the handles captured at discovery (_psutil.Handle), which check the
pid's start time before every signal, so a reused pid is never reached.
"""

from __future__ import annotations

import contextlib
import signal as _signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from portinspect import _interrupts, _psutil, managers, scanner, signatures
from portinspect.kill.plan import Who, refusal
from portinspect.models import (
    KillPlan,
    KillStep,
    KillTrace,
    ProcessInfo,
    Proto,
    Reason,
    ReasonKind,
    Snapshot,
)

# Seconds the graceful signal gets before SIGKILL. SIGTERM to the top freed every
# measured Python server within 0.43 s; gunicorn's own graceful_timeout is 30 s under load.
DEFAULT_TIMEOUT = 5.0
# How long to wait after SIGKILL (or TerminateProcess) for the port to close, and after the
# port is free for the rest of the tree to exit. Release after SIGKILL is bounded by process
# teardown: up to ~1 s was seen on a loaded VM.
KILL_WAIT = 3.0
# How long a freed port is watched for a respawn when something could restart the app.
# supervisord restarts a child ~1 s after it exits (its startsecs/backoff), pm2 and systemd
# within a few hundred ms; two seconds covers them with room.
WATCH_SECONDS = 2.0
# Between checks of the port: a sockets-only check costs ~0.1 ms idle and 10 ms at 5,000
# listeners. The first checks come sooner (2, 4, 8, 16 ms) because http.server, Django and
# werkzeug release the port within 2-20 ms of SIGTERM; then every 20 ms.
POLL = 0.02
FIRST_POLL = 0.002
# A holder that keeps appearing after SIGKILL (one that forks a copy of itself on SIGTERM)
# gets this many more rounds before kill gives up and says who holds the port.
KILL_ROUNDS = 3

SIGKILL = int(getattr(_signal, "SIGKILL", 9))

OnStep = Callable[[int, KillStep], None]


def signal_name(signum: int | None) -> str:
    if signum is None:
        return "terminate"
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return str(signum)


@dataclass(frozen=True, slots=True)
class Stage:
    signal: int | None  # None: terminate(), i.e. TerminateProcess on Windows
    scope: str  # "top", "tree" (whatever was not signalled yet) or "all" (tops first)
    until: float  # wait until this long after the first signal...
    at_least: float  # ...and at least this long after this stage's own signals
    stop_when_tops_exit: bool = False


def ladder(
    timeout: float, signum: int, *, force: bool, windows: bool, managed: bool = False
) -> tuple[Stage, ...]:
    """Graceful to the tops, graceful to the rest, SIGKILL to all; the graceful budget is
    `timeout` in total, so SIGKILL comes at most `timeout` after the first signal.

    managed: a manager will restart the app, so there is no SIGKILL: the graceful steps,
    then the manager's own stop command is the way (KillStatus.MANAGED).
    """
    if windows:
        # No graceful signal exists: terminate() is TerminateProcess, and children are
        # not killed with their parent. Top first so it cannot respawn, then the tree.
        return (Stage(None, "top", 0.0, 0.0), Stage(None, "tree", 0.0, KILL_WAIT))
    if force:
        return (Stage(SIGKILL, "all", 0.0, KILL_WAIT),)
    graceful = (
        Stage(signum, "top", timeout / 2, 0.0, stop_when_tops_exit=True),
        Stage(signum, "tree", timeout, 0.0),
    )
    return graceful if managed else (*graceful, Stage(SIGKILL, "all", 0.0, KILL_WAIT))


def port_sockets(
    ports: frozenset[int], protos: frozenset[Proto]
) -> dict[int, frozenset[int | None]]:
    """port -> inodes of its listening sockets, for the ports of `ports` that have any.

    Sockets only, no holders: on Linux one netlink dump (10 ms at 5,000 listeners), where
    finding the holders walks every process's fds (1.2 s at 1,100 processes and 175k fds).
    """
    return {p: inodes for p, inodes in scanner.listening_sockets(protos).items() if p in ports}


@dataclass
class Clock:
    """Seconds since the kill_port() call, not counting time spent at a confirmation prompt."""

    # Looked up at each call, not bound at import: tests drive the module's clock.
    t0: float = field(default_factory=lambda: time.monotonic())
    paused: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0 - self.paused


class Escalation:
    """One port's signals, waits and re-checks; run() returns what it did as a KillTrace."""

    def __init__(
        self,
        plan: KillPlan,
        handles: Mapping[int, _psutil.Handle],
        *,
        protos: frozenset[Proto],
        who: Who,
        clock: Clock,
        inodes: set[int | None],
        on_step: OnStep | None = None,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        self.plan = plan
        self.port = plan.port
        self.protos = protos
        self.who = who
        self.clock = clock
        self.on_step = on_step
        self.watch_seconds = watch_seconds
        self.handles = {pid: handles[pid] for pid in plan.pids if pid in handles}
        self.order = list(self.handles)  # tops first, then parents before children
        top_pids = {t.process.pid for t in plan.tops}
        self.tops = [self.handles[pid] for pid in self.order if pid in top_pids]
        self.roots = list(self.tops)  # whose new descendants join the kill
        self.seen = set(plan.pids)
        self.inodes = inodes  # the port's sockets we know the holders of
        self.signalled: list[int] = []
        self.steps: list[KillStep] = []
        self.respawned: list[int] = []
        self.notes: list[Reason] = []
        self.first_signal: float | None = None
        self.freed_after: float | None = None
        self.last: Snapshot | None = None  # the latest full scan of the port, for its holders
        self.free = False
        self.stranger = False
        self.retaken = False
        self.adopted = False  # a new holder joined since the last batch of signals
        self.watched = 0.0

    def now(self) -> float:
        return self.clock.now()

    # -- the whole run ---------------------------------------------------------------------

    def run(self, stages: Sequence[Stage], start: float) -> KillTrace:
        """start: when this port's handling began, on the clock (elapsed counts from it)."""
        try:
            self.climb(stages)
            rounds = 0
            while self.free and self.after_free() and rounds < KILL_ROUNDS:
                rounds += 1  # taken back by one of ours or a new holder: go on
                self.climb(stages[-1:] if stages[-1].signal == SIGKILL else stages)
            return self.trace(start)
        except KeyboardInterrupt:
            raise Interrupted(self.trace(start, interrupted=True)) from None

    def climb(self, stages: Sequence[Stage]) -> None:
        """The ladder, then more SIGKILL rounds while new holders keep appearing."""
        for stage in stages:
            began = self.send(stage)
            if self.wait(stage, began):
                return
        last = stages[-1]
        for _ in range(KILL_ROUNDS):
            if last.signal != SIGKILL or not self.adopted:
                return
            began = self.send(last)
            if self.wait(last, began):
                return

    # -- signalling ------------------------------------------------------------------------

    def send(self, stage: Stage) -> float:
        if stage.scope == "top":
            procs = self.tops
        else:
            self.adopt_descendants()  # before any top dies: orphans leave the tree
            done = set(self.signalled) if stage.scope == "tree" else set()
            procs = [self.handles[pid] for pid in self.order if pid not in done]
        self.adopted = False
        # A batch goes out whole or not at all: a Ctrl-C between a top's SIGKILL and its
        # workers' would leave orphans serving the port. Its step is recorded before the
        # interrupt is raised, so the report names every signal sent.
        step = None
        with _interrupts.held():
            sent = [h.pid for h in procs if h.alive() and self.signal(h, stage.signal)]
            began = self.now()
            if self.first_signal is None:
                self.first_signal = began
            if sent:
                step = KillStep(signal_name(stage.signal), stage.scope, tuple(sent), began)
                self.steps.append(step)
        if step is not None and self.on_step is not None:
            with contextlib.suppress(OSError):  # a closed stderr must not stop the escalation
                self.on_step(self.port, step)
        return began

    def signal(self, handle: _psutil.Handle, signum: int | None) -> bool:
        if handle.pid <= 1 or handle.pid in self.who.lineage:
            return False  # whatever a plan says: never init, never ourselves or our parents
        sent = handle.signal(signum)
        if sent is _psutil.Sent.DENIED:
            info = self._info(handle.pid)
            self.notes.append(Reason(ReasonKind.DENIED, info))
            return False
        if sent is not _psutil.Sent.SENT:
            return False
        if handle.pid not in self.signalled:
            self.signalled.append(handle.pid)
        return True

    def _info(self, pid: int) -> ProcessInfo:
        for target in self.plan.targets:
            if target.process.pid == pid:
                return target.process
        if self.last is not None and pid in self.last.processes:
            return self.last.processes[pid]
        return ProcessInfo(pid=pid, ppid=None, name=None, user=None)

    def adopt_descendants(self) -> None:
        """Children the app started since discovery: a respawned worker, a new child."""
        for root in list(self.roots):
            # Never down from init or our own lineage, whatever the plan says: their
            # descendants are every process on the machine, and this shell's siblings.
            if root.pid <= 1 or root.pid in self.who.lineage or not root.alive():
                continue
            for child in root.children():  # psutil checks start times
                if child.pid not in self.handles and child.pid not in self.who.lineage:
                    self.handles[child.pid] = child
                    self.order.append(child.pid)

    def adopt_holders(self, snapshot: Snapshot) -> None:
        """A process that began holding the port after discovery joins the kill, if allowed;
        under a manager that restarts the app it is the manager's respawn, left alone."""
        for sock in snapshot.sockets:
            for pid in sock.pids:
                if pid in self.seen:
                    continue
                self.seen.add(pid)
                self.respawned.append(pid)
                if self.plan.managed:
                    continue
                info = snapshot.processes.get(pid)
                reason = self._refusal(info)
                if reason is not None:
                    self.notes.append(reason)
                    continue
                handle = _psutil.capture(info) if info is not None else None
                if handle is not None:
                    self.handles[pid] = handle
                    self.order.append(pid)
                    self.roots.append(handle)
                    self.adopted = True

    def _refusal(self, info: ProcessInfo | None) -> Reason | None:
        if info is None:
            return None
        reason = refusal(info, self.who.lineage)
        if reason is not None:
            return reason
        if signatures.is_boundary(info) or managers.manager_row(info) is not None:
            return Reason(ReasonKind.INHERITED, info)
        if not self.who.privileged and info.user not in (None, self.who.user):
            return Reason(ReasonKind.FOREIGN, info, user=info.user, me=self.who.user)
        return None

    # -- checking --------------------------------------------------------------------------

    def poll(self) -> bool:
        """True when no listening socket is left on the port, in either family."""
        sockets = port_sockets(frozenset([self.port]), self.protos).get(self.port, frozenset())
        self.free = not sockets
        # A socket we have not seen means a holder we do not know: someone re-bound the port.
        self.stranger = None in sockets or not sockets <= self.inodes
        if self.free and self.freed_after is None:
            self.freed_after = self.now()
        return self.free

    def rescan(self) -> None:
        """Who holds the port now, every holder (a full walk): for new holders, and the report.

        Only when a socket we did not know appeared, when none of ours is left while the port
        is held, and for the final report: the walk is what costs.
        """
        self.last = scanner.collect([self.port], self.protos, complete=True)
        self.free = not self.last.sockets
        if self.free and self.freed_after is None:
            self.freed_after = self.now()  # else "freed in ?" when only this scan saw it free
        self.inodes |= {s.inode for s in self.last.sockets}
        self.adopt_holders(self.last)

    def ours_alive(self) -> bool:
        return any(h.alive() for h in self.handles.values())

    def wait(self, stage: Stage, began: float) -> bool:
        """Poll until the port is free (True) or the stage is over (False)."""
        first = self.first_signal if self.first_signal is not None else began
        deadline = max(first + stage.until, began + stage.at_least)
        pause = FIRST_POLL
        while not self.poll():
            over = self.now() >= deadline
            tops_gone = stage.stop_when_tops_exit and not any(h.alive() for h in self.tops)
            # None of ours is left, yet the port is held: a copy forked on SIGTERM, a
            # socket passed on. Find it now rather than wait out the stage.
            none_left = not self.ours_alive()
            if over or tops_gone or none_left:
                if self.stranger or none_left:
                    self.rescan()  # its holders join the next stage
                return self.free
            time.sleep(pause)
            pause = min(pause * 2, POLL)
        return True

    def after_free(self) -> bool:
        """The port is free: let the rest of the tree exit, and watch for a respawn.

        Members get KILL_WAIT to exit, and the port is watched while they do (one that
        ignored SIGTERM may bind again); when the plan says something could restart the app,
        it is watched for watch_seconds in any case. True when a holder kill may signal took
        the port back (go on escalating).
        """
        began = self.now()
        settle_end = began + KILL_WAIT
        watch_end = began + (self.watch_seconds if self.plan.watch else 0.0)
        while True:
            now = self.now()
            if now >= watch_end and (now >= settle_end or not self.ours_alive()):
                break
            if not self.poll():
                self.watched = self.now() - began
                self.retaken = True
                self.rescan()
                return not self.plan.managed and (self.adopted or self.ours_alive())
            time.sleep(POLL)
        self.watched = self.now() - began if self.plan.watch else 0.0
        return False

    # -- the result ------------------------------------------------------------------------

    def trace(self, start: float, *, interrupted: bool = False) -> KillTrace:
        if interrupted:
            with _interrupts.held(), contextlib.suppress(Exception):
                self.poll()  # one socket-table read: free or still held, for the report
        elif not self.free:
            self.rescan()  # who holds it, for the report
        holders: tuple[ProcessInfo, ...] = ()
        if not self.free and self.last is not None:
            pids = dict.fromkeys(p for s in self.last.sockets for p in s.pids)
            holders = tuple(self.last.processes[p] for p in pids if p in self.last.processes)
        survivors = tuple(pid for pid, h in self.handles.items() if h.alive())
        return KillTrace(
            steps=tuple(self.steps),
            signalled=tuple(self.signalled),
            respawned=tuple(self.respawned),
            survivors=survivors,
            holders=holders,
            notes=tuple(dict.fromkeys(self.notes)),
            freed_after=self.freed_after,
            watched=self.watched,
            elapsed=self.now() - start,
            free=self.free,
            retaken=self.retaken,
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during an escalation: nothing more is sent; trace says what was."""

    def __init__(self, trace: KillTrace) -> None:
        super().__init__("interrupted")
        self.trace = trace
