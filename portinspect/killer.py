"""kill_port(): free a port for good. A pure plan, then signals, waits and a re-scan.

The algorithm follows what was measured on real dev servers (research/frameworks.md):

- Killing "the pid on the port" fails: gunicorn and uvicorn --workers respawn a killed
  worker in ~0.45 s, and a uvicorn --reload supervisor keeps the socket after its child
  dies (the port stays busy and requests hang). The app's TOP process is signalled first.
- SIGTERM to the top freed the port in 2-430 ms for every Python server: Django and
  werkzeug reloaders kill their child on SIGTERM, uvicorn and gunicorn stop their workers.
- SIGKILL of the top alone orphans children that keep serving for 40 s and more, so
  SIGKILL always goes to the whole tree, top first so nothing is respawned in between.
- npm/npx die on SIGTERM but orphan the node server: once every top has exited while the
  port is still held, the rest of the tree is signalled at once, not after the timeout.
- "Free" means "no LISTEN socket on the port" per the scanner, never a bind() test:
  TIME_WAIT makes bind() fail for up to 60 s after a served request.
- Signals go only through the psutil.Process objects captured at discovery. psutil checks
  (pid, create time) before every signal, so a reused pid raises NoSuchProcess instead of
  reaching a stranger (verified by forcing pid reuse, research §5).
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath

import psutil

from portinspect import _interrupts, api, frameworks, render, scanner
from portinspect.errors import ExitStatus, UsageError
from portinspect.inputs import check_ports, check_seconds
from portinspect.models import (
    ALL_PROTOS,
    ContainerHint,
    Holder,
    KillOutcome,
    KillPlan,
    KillStatus,
    KillStep,
    KillTarget,
    Listener,
    ProcessInfo,
    Proto,
    Snapshot,
)

# Read at call time, not import time, so tests can simulate Windows (monkeypatch).
WINDOWS = sys.platform == "win32"

# Seconds the graceful signal gets before SIGKILL. SIGTERM to the top freed every
# measured Python server within 0.43 s; gunicorn's own graceful_timeout is 30 s under load.
DEFAULT_TIMEOUT = 5.0
# How long to wait after SIGKILL (or TerminateProcess) for the port to close, and after
# the port is free for the rest of the tree to exit. Release after SIGKILL is bounded by
# process teardown: up to ~1 s was seen on a loaded VM.
KILL_WAIT = 3.0
# Between checks of the port: a sockets-only check costs ~0.1 ms idle and 10 ms at 5,000
# listeners. The first checks come sooner (2, 4, 8, 16 ms) because http.server, Django
# and werkzeug release the port within 2-20 ms of SIGTERM; then every 20 ms, the research
# harness' poll, so measured times stay comparable.
POLL = 0.02
FIRST_POLL = 0.002
# A holder's start time read by the scan and again by psutil is the same number; a
# different one means the pid was reused between the two reads. Under half a clock tick
# (10 ms on Linux), so a process started one tick later is not taken for the first.
_SAME_START = 0.005

_SIGKILL = int(getattr(_signal, "SIGKILL", 9))
_TCP = frozenset({Proto.TCP})

Confirm = Callable[[KillPlan], bool]
OnStep = Callable[[int, KillStep], None]


# ---------------------------------------------------------------------------------------
# Signals given by name
# ---------------------------------------------------------------------------------------


def parse_signal(value: str | int) -> int:
    """TERM, SIGTERM, term or 15 -> the signal number; UsageError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(_signal.Signals(value))
        except ValueError:
            raise UsageError(f"unknown signal {value!r}") from None
    if not isinstance(value, str):
        raise UsageError(f"unknown signal {value!r}: expected a name such as TERM or INT")
    text = value.strip(" \t").upper()
    if text.isascii() and text.isdigit() and len(text) <= 3:
        return parse_signal(int(text))
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(_signal.Signals[name])
    except KeyError:
        shown = repr(value if len(value) <= 20 else value[:17] + "...")
        raise UsageError(
            f"unknown signal {shown}: expected a name such as TERM, INT, HUP or KILL"
        ) from None


def signal_name(signum: int | None) -> str:
    if signum is None:
        return "terminate"
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return str(signum)


# ---------------------------------------------------------------------------------------
# The plan: pure, from listeners and process trees
# ---------------------------------------------------------------------------------------


def plan_kill(
    port: int,
    listeners: Sequence[Listener],
    trees: Mapping[int, Mapping[int, ProcessInfo]],
    *,
    lineage: frozenset[int] = frozenset(),
    user: str | None = None,
    privileged: bool = True,
    hidden_proxies: Sequence[ProcessInfo] = (),
) -> KillPlan:
    """What `kill` would do to `port`, and whether it may.

    listeners: the port's listening sockets (scan(port)); trees: app top pid -> the top
    and all its descendants. lineage: portinspect's own pid and ancestors. user and
    privileged: who we are; a process of another user blocks the whole port unless
    privileged (root). hidden_proxies: docker-proxy processes found by command line for
    a port whose owner we cannot see.
    """
    if not listeners:
        reason = f"nothing is listening on port {port}"
        return KillPlan(port, blocked=KillStatus.NOT_LISTENING, reasons=(reason,))
    named = next((li for li in listeners if li.framework or li.server), listeners[0])
    plan = KillPlan(
        port,
        _targets(listeners, trees, lineage),
        framework=named.framework,
        server=named.server,
    )
    holders = [t.process for t in plan.targets if t.holds_port]
    containers = _container_hints(port, [*holders, *hidden_proxies])
    if containers:
        reasons = tuple(_container_reason(port, c) for c in containers)
        return replace(plan, blocked=KillStatus.REFUSED, reasons=reasons, containers=containers)
    refusals = [r for r in (refusal(t.process, lineage) for t in plan.targets) if r]
    if refusals:
        return replace(plan, blocked=KillStatus.REFUSED, reasons=tuple(refusals))
    hidden = [li for li in listeners if li.owner_hidden]
    if hidden:
        status = KillStatus.REFUSED if privileged else KillStatus.PERMISSION_DENIED
        return replace(plan, blocked=status, reasons=(_hidden_reason(port, hidden, privileged),))
    if not privileged:
        foreign = [t.process for t in plan.targets if _foreign(t.process, user)]
        if foreign:
            reason = _foreign_reason(port, foreign, user)
            return replace(plan, blocked=KillStatus.PERMISSION_DENIED, reasons=(reason,))
    return plan


def refusal(info: ProcessInfo | None, lineage: frozenset[int]) -> str | None:
    """Why this process must never be signalled, or None."""
    if info is None:
        return None
    if info.pid in lineage:
        return (
            f"{_who(info)} is this portinspect or one of its ancestors (your shell, terminal, "
            "IDE, or the server hosting them); stop it from there"
        )
    if frameworks.is_protected(info):
        return (
            f"{_who(info)} is protected: init, sshd, dockerd/containerd and system services "
            "are never signalled"
        )
    return None


def _targets(
    listeners: Sequence[Listener],
    trees: Mapping[int, Mapping[int, ProcessInfo]],
    lineage: frozenset[int],
) -> tuple[KillTarget, ...]:
    """Every app's top first, then the rest of each tree, parents before children."""
    holders = {h.process.pid: h for li in listeners for h in li.holders}
    tops = list(dict.fromkeys(li.app_pid for li in listeners if li.holders and li.app_pid))
    top_set = set(tops)
    firsts: list[KillTarget] = []
    rest: list[KillTarget] = []
    seen: set[int] = set()
    for top in tops:
        tree = trees.get(top) or _holders_as_tree(top, listeners)
        roles = _roles(tree, holders, lineage)
        for pid in _tree_order(top, tree):
            if pid in seen:
                continue
            seen.add(pid)
            target = KillTarget(tree[pid], roles.get(pid), pid in top_set, pid in holders)
            (firsts if target.top else rest).append(target)
    # A holder outside every captured tree (its tree vanished mid-scan) is still a target.
    for pid, holder in holders.items():
        if pid not in seen:
            rest.append(KillTarget(holder.process, holder.role, False, True))
    return (*firsts, *rest)


def _holders_as_tree(top: int, listeners: Sequence[Listener]) -> dict[int, ProcessInfo]:
    return {h.process.pid: h.process for li in listeners if li.app_pid == top for h in li.holders}


def _tree_order(top: int, tree: Mapping[int, ProcessInfo]) -> list[int]:
    """Breadth first from the top, so a parent is always signalled before its children."""
    children: dict[int, list[int]] = {}
    for pid, info in tree.items():
        if info.ppid is not None and pid != top:
            children.setdefault(info.ppid, []).append(pid)
    order = [top] if top in tree else []
    for pid in order:  # grows while we walk it
        order.extend(sorted(children.get(pid, [])))
    return order + sorted(set(tree) - set(order))


def _roles(
    tree: Mapping[int, ProcessInfo], holders: Mapping[int, Holder], lineage: frozenset[int]
) -> dict[int, str]:
    held = sorted(pid for pid in holders if pid in tree)
    identity = frameworks.identify_app(held, tree, lineage) if held else None
    roles: dict[int, str] = {}
    for pid, info in tree.items():
        role = holders[pid].role if pid in holders else None
        role = role or frameworks.member_role(info, tree, identity)
        if role:
            roles[pid] = role
    return roles


def _foreign(info: ProcessInfo, user: str | None) -> bool:
    # An unknown owner is left to the signal-0 check before anything is sent.
    return user is not None and info.user is not None and info.user != user


def _container_hints(port: int, procs: Iterable[ProcessInfo]) -> tuple[ContainerHint, ...]:
    hints: dict[tuple[str, int], ContainerHint] = {}
    for info in procs:
        proxy = frameworks.container_proxy(info)
        if proxy is None:
            continue
        cli = "podman" if proxy["runtime"] == "podman" else "docker"
        ip, inner = proxy["container_ip"], proxy["container_port"]
        hints[(proxy["proxy"], info.pid)] = ContainerHint(
            proxy=proxy["proxy"],
            runtime=proxy["runtime"],
            pid=info.pid if info.pid > 0 else None,
            container=f"{ip}:{inner}" if ip and inner is not None else None,
            find=f"{cli} ps --filter publish={port}",
            stop=f"{cli} stop <container>",
        )
    return tuple(hints.values())


def _container_reason(port: int, hint: ContainerHint) -> str:
    pid = f" (pid {hint.pid})" if hint.pid is not None else ""
    to = f" to {hint.container}" if hint.container else ""
    return (
        f"port {port} is published by a container: {hint.proxy}{pid} forwards it{to}; "
        f"killing the proxy would only break the mapping. Find the container with "
        f"`{hint.find}` and stop it with `{hint.stop}`"
    )


def _hidden_reason(port: int, hidden: Sequence[Listener], privileged: bool) -> str:
    if privileged:
        return (
            f"port {port} has no visible owner (a kernel socket, or a process in another "
            "pid namespace); nothing was signalled"
        )
    owners = sorted({li.user or (f"uid {li.uid}" if li.uid is not None else "?") for li in hidden})
    who = " and ".join(owners) if owners != ["?"] else "another user"
    return f"port {port} belongs to {render.clean(who)}; run with sudo (nothing was signalled)"


def _foreign_reason(port: int, foreign: Sequence[ProcessInfo], user: str | None) -> str:
    first = foreign[0]
    more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
    owner = render.clean(first.user) or "another user"
    mine = f", not {render.clean(user)}" if user else ""
    return (
        f"port {port}: {_who(first)}{more} belongs to {owner}{mine}; run with sudo "
        "(nothing was signalled)"
    )


def _who(info: ProcessInfo) -> str:
    argv = [a for a in info.cmdline if a]
    name = info.name or (PurePath(argv[0]).name if argv else "")
    return f"pid {info.pid} ({render.clean(name, 40)})" if name else f"pid {info.pid}"


# ---------------------------------------------------------------------------------------
# Discovery: the scan, and the psutil.Process objects every signal will go through
# ---------------------------------------------------------------------------------------


@dataclass
class _Discovery:
    listeners: list[Listener]
    trees: dict[int, dict[int, ProcessInfo]] = field(default_factory=dict)
    handles: dict[int, psutil.Process] = field(default_factory=dict)
    hidden_proxies: list[ProcessInfo] = field(default_factory=list)


def _discover(port: int, protos: frozenset[Proto]) -> _Discovery:
    # api.scan takes one protocol, or None for all of them.
    found = _Discovery(api.scan(port, None if protos == ALL_PROTOS else next(iter(protos))))
    for li in found.listeners:
        for holder in li.holders:
            proc = capture(holder.process)
            if proc is not None:
                found.handles[proc.pid] = proc
    for li in found.listeners:
        if li.app_pid is None or li.app_pid in found.trees or li.owner_hidden:
            continue
        top = _top_handle(li, found.handles)
        if top is not None:
            found.trees[top.pid] = _capture_tree(top, found.handles)
    if any(li.owner_hidden for li in found.listeners):
        found.hidden_proxies = _hidden_proxies(port)
    return found


def capture(info: ProcessInfo) -> psutil.Process | None:
    """A psutil.Process for a process the scan saw; None if it exited or its pid was reused."""
    try:
        proc = psutil.Process(info.pid)
        started = info.create_time
        if started is not None and abs(proc.create_time() - started) > _SAME_START:
            return None
    except psutil.Error:
        return None
    return proc


def _top_handle(li: Listener, handles: Mapping[int, psutil.Process]) -> psutil.Process | None:
    """The app's top as a Process reached from a holder: parent() checks start times,
    so the top we get is the one that started the holder, not a reuser of its pid."""
    for holder in li.holders:
        proc = handles.get(holder.process.pid)
        if proc is None:
            continue
        if proc.pid == li.app_pid:
            return proc
        with contextlib.suppress(psutil.Error):
            for parent in proc.parents():
                if parent.pid == li.app_pid:
                    return parent
    return None


def _capture_tree(
    top: psutil.Process, handles: dict[int, psutil.Process]
) -> dict[int, ProcessInfo]:
    try:
        members = [top, *top.children(recursive=True)]
    except psutil.Error:
        members = [top]
    tree: dict[int, ProcessInfo] = {}
    for proc in members:
        info = scanner.process_info(proc)
        if info is not None:
            tree[info.pid] = info
            handles.setdefault(info.pid, proc)
    return tree


def _hidden_proxies(port: int) -> list[ProcessInfo]:
    """docker-proxy processes publishing `port`, found by command line.

    Without root the socket's owner is hidden, but /proc/<pid>/cmdline stays readable,
    and docker-proxy names the port it publishes (-host-port N).
    """
    found: list[ProcessInfo] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or ()
        info = ProcessInfo(pid=proc.pid, ppid=None, name=None, user=None, cmdline=tuple(cmdline))
        proxy = frameworks.container_proxy(info) if cmdline else None
        if proxy is not None and proxy["host_port"] == port:
            found.append(info)
    return found


def _whoami() -> tuple[str | None, bool]:
    """Our user name, and whether we may signal other users' processes (root)."""
    try:
        user: str | None = psutil.Process().username()
    except psutil.Error:
        user = None
    # Windows: elevation is not a uid; the TerminateProcess call itself says AccessDenied.
    privileged = not hasattr(os, "geteuid") or os.geteuid() == 0
    return user, privileged


def _preflight(plan: KillPlan, handles: Mapping[int, psutil.Process]) -> KillPlan:
    """Signal 0 to every target: may we signal it? Checked before anything is sent."""
    denied: list[ProcessInfo] = []
    for target in plan.targets:
        proc = handles.get(target.process.pid)
        if proc is None or proc.pid <= 0:
            continue
        try:
            proc.send_signal(0)
        except psutil.NoSuchProcess:
            continue  # already gone
        except psutil.AccessDenied:
            denied.append(target.process)
    if not denied:
        return plan
    reason = _foreign_reason(plan.port, denied, None)
    return replace(plan, blocked=KillStatus.PERMISSION_DENIED, reasons=(reason,))


# ---------------------------------------------------------------------------------------
# Execution: the escalation ladder
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stage:
    signal: int | None  # None: terminate(), i.e. TerminateProcess on Windows
    scope: str  # "top", "tree" (whatever was not signalled yet) or "all" (tops first)
    until: float  # wait until this long after the first signal...
    at_least: float  # ...and at least this long after this stage's own signals
    stop_when_tops_exit: bool = False


def ladder(timeout: float, signum: int, *, force: bool, windows: bool) -> tuple[_Stage, ...]:
    """The steps of the issue: graceful to the tops, graceful to the rest, SIGKILL to all.

    The graceful budget is `timeout` in total, so SIGKILL comes at most `timeout` after
    the first signal: the tops get the first half to themselves (or less: the stage ends
    as soon as every top has exited while the port is still held).
    """
    if windows:
        # No graceful signal exists: terminate() is TerminateProcess, and children are
        # not killed with their parent. Top first so it cannot respawn, then the tree.
        return (_Stage(None, "top", 0.0, 0.0), _Stage(None, "tree", 0.0, KILL_WAIT))
    if force:
        return (_Stage(_SIGKILL, "all", 0.0, KILL_WAIT),)
    return (
        _Stage(signum, "top", timeout / 2, 0.0, stop_when_tops_exit=True),
        _Stage(signum, "tree", timeout, 0.0),
        _Stage(_SIGKILL, "all", 0.0, KILL_WAIT),
    )


def port_sockets(
    ports: frozenset[int], protos: frozenset[Proto] = _TCP
) -> dict[int, frozenset[int | None]]:
    """port -> inodes of its listening sockets, for the ports of `ports` that have any.

    Sockets only, no holders: on Linux one netlink dump (10 ms at 5,000 listeners),
    where a scan with holders walks /proc (1.2 s at 1,100 processes and 175k fds).
    """
    return {p: inodes for p, inodes in scanner.listening_sockets(protos).items() if p in ports}


def alive(proc: psutil.Process) -> bool:
    """Running, and still the process we captured. A zombie has exited (and closed its
    sockets); only its parent's wait() is missing."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class _Execution:
    """One port's kill: signals through captured handles, scans, the outcome."""

    def __init__(
        self,
        plan: KillPlan,
        handles: Mapping[int, psutil.Process],
        *,
        lineage: frozenset[int],
        user: str | None,
        privileged: bool,
        inodes: Iterable[int | None],
        t0: float,
        on_step: OnStep | None,
        protos: frozenset[Proto] = _TCP,
    ) -> None:
        self.plan = plan
        self.port = plan.port
        self.protos = protos
        self.lineage = lineage
        self.user = user
        self.privileged = privileged
        self.t0 = t0
        self.on_step = on_step
        self.handles = {pid: handles[pid] for pid in plan.pids if pid in handles}
        self.order = list(self.handles)  # tops first, then parents before children
        top_pids = {t.process.pid for t in plan.tops}
        self.tops = [self.handles[pid] for pid in self.order if pid in top_pids]
        self.roots = list(self.tops)  # whose new descendants join the kill
        self.seen = set(plan.pids)
        self.signalled: list[int] = []
        self.steps: list[KillStep] = []
        self.respawned: list[int] = []
        self.notes: list[str] = []
        self.first_signal: float | None = None
        self.freed_after: float | None = None
        self.last: Snapshot | None = None  # the latest full scan, for holders
        self.free = False
        self.stranger = False
        self.inodes: set[int | None] = set(inodes)  # the port's sockets at discovery

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self, stages: Sequence[_Stage], start: float) -> KillOutcome:
        """start: when this port's handling began (before discovery), since the call."""
        try:
            for stage in stages:
                began = self.send(stage)
                if self.wait(stage, began):
                    break
            if self.freed_after is not None:
                self.settle()
            return self.outcome(start)
        except KeyboardInterrupt:
            raise _PortInterrupted(self.interrupted(start)) from None

    # -- signalling ----------------------------------------------------------------------

    def send(self, stage: _Stage) -> float:
        if stage.scope == "top":
            procs = self.tops
        else:
            self.adopt_descendants()  # before any top dies: orphans leave the tree
            done = set(self.signalled) if stage.scope == "tree" else set()
            procs = [self.handles[pid] for pid in self.order if pid not in done]
        # A batch goes out whole or not at all: a Ctrl-C between a top's SIGKILL and its
        # workers' would leave orphans serving the port. Its step is recorded before the
        # interrupt is raised, so the report names every signal sent.
        step = None
        with _interrupts.held():
            sent = [p.pid for p in procs if alive(p) and self.signal(p, stage.signal)]
            began = self.now()
            if self.first_signal is None:
                self.first_signal = began
            if sent:
                step = KillStep(signal_name(stage.signal), stage.scope, tuple(sent), began)
                self.steps.append(step)
        if step is not None and self.on_step is not None:
            self.on_step(self.port, step)
        return began

    def signal(self, proc: psutil.Process, signum: int | None) -> bool:
        if proc.pid <= 1 or proc.pid in self.lineage:
            return False  # whatever a plan says: never init, never ourselves or our parents
        try:
            if signum is None:
                proc.terminate()
            else:
                proc.send_signal(signum)
        except psutil.NoSuchProcess:  # exited, or its pid now belongs to someone else
            return False
        except psutil.AccessDenied:
            self.notes.append(f"{_who_proc(proc)}: permission denied")
            return False
        if proc.pid not in self.signalled:
            self.signalled.append(proc.pid)
        return True

    def adopt_descendants(self) -> None:
        """Children the app started since discovery: a respawned worker, a new child."""
        for root in list(self.roots):
            # Never down from init or our own lineage, whatever the plan says: their
            # descendants are every process on the machine, and this shell's siblings.
            if root.pid <= 1 or root.pid in self.lineage or not alive(root):
                continue
            try:
                children = root.children(recursive=True)  # psutil checks start times
            except psutil.Error:
                continue
            for child in children:
                if child.pid not in self.handles and child.pid not in self.lineage:
                    self.handles[child.pid] = child
                    self.order.append(child.pid)

    def adopt_holders(self, snapshot: Snapshot) -> None:
        """A process that began holding the port after discovery joins the kill, if allowed."""
        for sock in snapshot.sockets:
            for pid in sock.pids:
                if pid in self.seen:
                    continue
                self.seen.add(pid)
                self.respawned.append(pid)
                info = snapshot.processes.get(pid)
                reason = refusal(info, self.lineage)
                if info is not None and reason is None and self._foreign(info):
                    reason = f"{_who(info)} belongs to {render.clean(info.user)}"
                proc = capture(info) if info is not None and reason is None else None
                if reason is not None:
                    self.notes.append(f"new holder {reason}")
                elif proc is not None:
                    self.handles[pid] = proc
                    self.order.append(pid)
                    self.roots.append(proc)

    def _foreign(self, info: ProcessInfo) -> bool:
        return not self.privileged and _foreign(info, self.user)

    # -- waiting -------------------------------------------------------------------------

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
        """Who holds the port now: the full scan, with the /proc walk for holders.

        Only when a socket we did not know appeared, and for the final report: the walk
        is what costs, and the holders of a known socket are already ours.
        """
        self.last = scanner.collect([self.port], self.protos)
        self.free = not self.last.sockets
        if self.free and self.freed_after is None:
            self.freed_after = self.now()  # else "freed in ?" when only this scan saw it free
        self.inodes |= {s.inode for s in self.last.sockets}
        self.adopt_holders(self.last)

    def wait(self, stage: _Stage, began: float) -> bool:
        """Poll until the port is free (True) or the stage is over (False)."""
        first = self.first_signal if self.first_signal is not None else began
        deadline = max(first + stage.until, began + stage.at_least)
        pause = FIRST_POLL
        while not self.poll():
            if (
                self.now() >= deadline
                # npm/npx: the wrapper is gone and its server holds on; go on at once.
                or (stage.stop_when_tops_exit and not any(alive(p) for p in self.tops))
                # None of ours is left: waiting longer changes nothing.
                or not any(alive(p) for p in self.handles.values())
            ):
                if self.stranger:
                    self.rescan()  # its holders join the next stage
                return self.free
            time.sleep(pause)
            pause = min(pause * 2, POLL)
        return True

    def settle(self) -> None:
        """The port is free: let the rest of the tree exit, then check once more.

        Once every process of the app has exited, nothing in it can respawn a holder;
        a holder seen now was started from outside (systemd, supervisord...).
        """
        deadline = self.now() + KILL_WAIT
        while any(alive(p) for p in self.handles.values()) and self.now() < deadline:
            time.sleep(POLL)
        self.poll()

    # -- the result ----------------------------------------------------------------------

    def outcome(self, start: float) -> KillOutcome:
        if not self.free:
            self.rescan()  # who holds it, for the message
        free = self.free
        survivors = tuple(pid for pid, proc in self.handles.items() if alive(proc))
        status = KillStatus.FREED if free else KillStatus.STILL_HELD
        message = self.freed_message(survivors) if free else self.held_message()
        return KillOutcome(
            port=self.port,
            status=status,
            message=message,
            plan=self.plan,
            steps=tuple(self.steps),
            signalled=tuple(self.signalled),
            respawned=tuple(self.respawned),
            survivors=survivors,
            freed_after=self.freed_after,
            elapsed=self.now() - start,
        )

    def interrupted(self, start: float) -> KillOutcome:
        """Ctrl-C: nothing more is sent. What was sent, and whether the port is free now."""
        with _interrupts.held(), contextlib.suppress(Exception):
            self.poll()  # one socket-table read: free or still held, for the report
        state = "the port is free" if self.free else "the port is still held"
        sent = [f"{s.signal} to {self._named(s.pids)} at {s.at:.2f}s" for s in self.steps]
        if sent:
            what = f"interrupted after {'; '.join(sent)}; nothing more was sent"
        else:
            what = "interrupted before anything was signalled"
        return KillOutcome(
            port=self.port,
            status=KillStatus.INTERRUPTED,
            message=f"port {self.port}: {what}; {state}",
            plan=self.plan,
            steps=tuple(self.steps),
            signalled=tuple(self.signalled),
            respawned=tuple(self.respawned),
            survivors=tuple(pid for pid, proc in self.handles.items() if alive(proc)),
            freed_after=self.freed_after,
            elapsed=self.now() - start,
        )

    def freed_message(self, survivors: Sequence[int]) -> str:
        took = f"{self.freed_after:.2f}s" if self.freed_after is not None else "?"
        sent = [f"{s.signal} to {self._named(s.pids)} at {s.at:.2f}s" for s in self.steps]
        text = f"port {self.port} freed in {took}" + (f": {'; '.join(sent)}" if sent else "")
        if survivors:
            text += f"; {render.pids(survivors)} still running but no longer holding the port"
        return text

    def _named(self, pids: Sequence[int]) -> str:
        roles = {t.process.pid: t.role for t in self.plan.targets}
        named = [f"{pid} ({roles[pid]})" if roles.get(pid) else str(pid) for pid in pids]
        return ("pid " if len(pids) == 1 else "pids ") + ", ".join(named)

    def held_message(self) -> str:
        holders: list[str] = []
        if self.last is not None:
            for pid in dict.fromkeys(p for s in self.last.sockets for p in s.pids):
                holders.append(self._describe_holder(pid))
        who = ", ".join(holders) if holders else "a process we cannot see"
        text = f"port {self.port} is still held by {who}"
        if self.notes:
            text += "; " + "; ".join(dict.fromkeys(self.notes))
        return text

    def _describe_holder(self, pid: int) -> str:
        assert self.last is not None
        info = self.last.processes.get(pid)
        desc = _who(info) if info is not None else f"pid {pid}"
        if pid in self.respawned:
            parent = self.last.processes.get(info.ppid) if info and info.ppid else None
            by = f", started by {_who(parent)}: stop that first" if parent else ""
            return f"{desc} (respawned{by})"
        if pid in self.signalled and self.steps and self.steps[-1].signal == "SIGKILL":
            return f"{desc} (survived SIGKILL)"
        return desc


def _who_proc(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({render.clean(proc.name(), 40)})"
    except psutil.Error:
        return f"pid {proc.pid}"


# ---------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    timeout: float
    signum: int
    force: bool
    dry_run: bool
    confirm: Confirm | None
    on_step: OnStep | None
    lineage: frozenset[int]
    user: str | None
    privileged: bool
    t0: float
    protos: frozenset[Proto]


def kill_port(
    port_or_ports: int | Iterable[int],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    signal: str | int = "SIGTERM",
    force: bool = False,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    on_step: OnStep | None = None,
    udp: bool = False,
) -> list[KillOutcome]:
    """Stop whatever listens on each port, for good, and prove it; one outcome per port.

    For each port: SIGTERM (or `signal`) to each app's top process (reloader, master,
    supervisor); once the tops have exited, or after timeout/2, the same signal to the
    rest of the app tree and to any new holder; SIGKILL to whatever is left, tops first,
    at most `timeout` seconds after the first signal. Success is a re-scan that finds no
    listening TCP socket on the port, in either family.

    udp: bound UDP sockets count as listening too (a DNS or QUIC dev server); off by
    default, since a UDP port is often shared by unrelated programs (mDNS on 5353).

    force: SIGKILL the whole tree at once, tops first. dry_run: plan only, nothing is
    signalled. confirm(plan): asked before each port is acted on; False skips it
    (status "declined"). on_step(port, step): called as each batch of signals is sent.

    Nothing is signalled on a port whose plan is blocked: portinspect's own lineage,
    protected processes (pid 1, sshd, dockerd...), a container's proxy, or another
    user's process when not root. On Windows every step is TerminateProcess (no graceful
    signal exists): tops first, then the tree, then a re-scan; `signal` is ignored.

    Ctrl-C stops the escalation: KillInterrupted (a KeyboardInterrupt) carries the outcomes
    so far, the interrupted port's with the signals it had been sent.
    """
    wanted = check_ports(port_or_ports)
    if not wanted:
        raise UsageError("no port to kill")
    user, privileged = _whoami()
    opts = _Options(
        timeout=check_seconds(timeout, "timeout"),
        signum=parse_signal(signal),
        force=force,
        dry_run=dry_run,
        confirm=confirm,
        on_step=on_step,
        lineage=scanner.self_lineage(),
        user=user,
        privileged=privileged,
        t0=time.monotonic(),
        protos=ALL_PROTOS if udp else _TCP,
    )
    ports = sorted(wanted)
    outcomes: list[KillOutcome] = []
    try:
        listening = port_sockets(wanted, opts.protos)
        for port in ports:
            outcomes.append(_kill_one(port, port in listening, opts))
    except _PortInterrupted as exc:
        outcomes.append(exc.outcome)
        raise KillInterrupted(outcomes, ports[len(outcomes) :]) from None
    except KeyboardInterrupt:  # between two ports: nothing of either is half done
        raise KillInterrupted(outcomes, ports[len(outcomes) :]) from None
    return outcomes


class KillInterrupted(KeyboardInterrupt):
    """Ctrl-C during kill_port(): no signal is sent after it, and nothing is undone.

    A SIGTERM already sent stays sent (the app may be shutting down; Ctrl-C means "stop
    escalating", not "restart it"), and a batch of signals being sent when Ctrl-C came was
    finished first. outcomes: one per port handled, the interrupted one last with status
    INTERRUPTED, the signals it had sent and whether its port is free now; pending: the
    ports not looked at. A KeyboardInterrupt, so `except KeyboardInterrupt` still works.
    """

    def __init__(self, outcomes: Sequence[KillOutcome], pending: Sequence[int]) -> None:
        super().__init__("interrupted")
        self.outcomes = tuple(outcomes)
        self.pending = tuple(pending)


class _PortInterrupted(KeyboardInterrupt):
    def __init__(self, outcome: KillOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


def interrupted_message(exc: KillInterrupted) -> str:
    """One line for stderr: what the interrupted port had been sent, the ports not tried."""
    parts = [o.message for o in exc.outcomes if o.status is KillStatus.INTERRUPTED]
    if exc.pending:
        more = ", ..." if len(exc.pending) > 8 else ""
        parts.append(f"not attempted: port {', '.join(map(str, exc.pending[:8]))}{more}")
    return "; ".join(parts) or "interrupted"


def _kill_one(port: int, was_listening: bool, opts: _Options) -> KillOutcome:
    start = time.monotonic() - opts.t0
    plan = KillPlan(port)
    try:
        if not was_listening:
            return _blocked(plan_kill(port, [], {}), start, opts)
        plan, found = _plan_port(port, opts)
        if plan.blocked is KillStatus.NOT_LISTENING:
            # It listened a moment ago: it went with an earlier port's app, or by itself.
            message = f"port {port} is free (it closed while other ports were handled)"
            return KillOutcome(port, KillStatus.FREED, message, plan, freed_after=start)
        if plan.blocked is not None:
            return _blocked(plan, start, opts)
        if opts.dry_run:
            message = (
                f"port {port}: dry run, would signal {render.pids(plan.pids)}; nothing was sent"
            )
            elapsed = _since(start, opts)
            return KillOutcome(port, KillStatus.DRY_RUN, message, plan, elapsed=elapsed)
        if opts.confirm is not None and not opts.confirm(plan):
            message = f"port {port}: not confirmed; nothing was signalled"
            elapsed = _since(start, opts)
            return KillOutcome(port, KillStatus.DECLINED, message, plan, elapsed=elapsed)
    except KeyboardInterrupt:
        message = f"port {port}: interrupted before anything was signalled"
        interrupted = KillOutcome(
            port, KillStatus.INTERRUPTED, message, plan, elapsed=_since(start, opts)
        )
        raise _PortInterrupted(interrupted) from None
    execution = _Execution(
        plan,
        found.handles,
        lineage=opts.lineage,
        user=opts.user,
        privileged=opts.privileged,
        inodes={li.inode for li in found.listeners},
        t0=opts.t0,
        protos=opts.protos,
        on_step=opts.on_step,
    )
    stages = ladder(opts.timeout, opts.signum, force=opts.force, windows=WINDOWS)
    return execution.run(stages, start)


def _plan_port(port: int, opts: _Options) -> tuple[KillPlan, _Discovery]:
    """Discover, plan, and check with signal 0 that every target may be signalled."""
    found = _discover(port, opts.protos)
    plan = plan_kill(
        port,
        found.listeners,
        found.trees,
        lineage=opts.lineage,
        user=opts.user,
        privileged=opts.privileged,
        hidden_proxies=found.hidden_proxies,
    )
    # Windows' send_signal() knows no signal 0; there TerminateProcess says AccessDenied.
    if plan.blocked is None and not WINDOWS:
        plan = _preflight(plan, found.handles)
    return plan, found


def _blocked(plan: KillPlan, start: float, opts: _Options) -> KillOutcome:
    assert plan.blocked is not None
    message = "; ".join(plan.reasons) or str(plan.blocked)
    return KillOutcome(plan.port, plan.blocked, message, plan, elapsed=_since(start, opts))


def _since(start: float, opts: _Options) -> float:
    return time.monotonic() - opts.t0 - start


# ---------------------------------------------------------------------------------------
# Several ports: which outcomes to report, and the exit status
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KillReport:
    """The outcomes of one `kill` call, as the user asked for them.

    A range is one request: `kill 8000-8010` that frees 8003 exits 0, and the ten quiet
    ports are not reported one by one. A port named on its own that has nothing
    listening is reported and counts (exit 3). Then the worst exit status wins.
    """

    status: ExitStatus
    outcomes: tuple[KillOutcome, ...]  # the ones to show, by port
    empty: tuple[tuple[int, int], ...]  # ranges where nothing listened at all

    @property
    def error(self) -> str | None:
        """One line for stderr when the status is not OK."""
        if self.status is ExitStatus.OK:
            return None
        failed = [o for o in self.outcomes if o.exit_status is not ExitStatus.OK]
        texts = [o.message for o in failed]
        texts += [f"nothing is listening on port {lo}-{hi}" for lo, hi in self.empty]
        if len(texts) == 1:
            return texts[0]
        parts = [f"{o.port} ({o.status})" for o in failed]
        parts += [f"{lo}-{hi} (not-listening)" for lo, hi in self.empty]
        return f"{len(parts)} ports not freed: " + ", ".join(parts)


def report(outcomes: Iterable[KillOutcome], requests: Sequence[tuple[int, int]]) -> KillReport:
    """Group outcomes by the ports and ranges (low, high) the user typed."""
    by_port = {o.port: o for o in outcomes}
    codes: list[ExitStatus] = []
    shown: dict[int, KillOutcome] = {}
    empty: list[tuple[int, int]] = []
    for low, high in requests:
        members = [by_port[p] for p in range(low, high + 1) if p in by_port]
        if low != high:
            members = [o for o in members if o.status is not KillStatus.NOT_LISTENING]
            if not members:
                empty.append((low, high))
                codes.append(ExitStatus.NOT_LISTENING)
        codes += [o.exit_status for o in members]
        shown.update((o.port, o) for o in members)
    status = max(codes, default=ExitStatus.NOT_LISTENING)
    return KillReport(status, tuple(shown[p] for p in sorted(shown)), tuple(dict.fromkeys(empty)))


# ---------------------------------------------------------------------------------------
# Text (pure): the escalation as the plan shows it (render.py draws the plan itself)
# ---------------------------------------------------------------------------------------


def describe_ladder(timeout: float, signum: int, *, force: bool, windows: bool) -> str:
    if windows:
        return "terminate the top process(es) (*), then the rest of the tree, then re-scan"
    name = signal_name(signum)
    if force:
        return "SIGKILL the top process(es) (*), then the rest of the tree, then re-scan"
    return (
        f"{name} the top process(es) (*); once they exit or after {timeout / 2:g}s, "
        f"{name} the rest of the tree; SIGKILL what is left after {timeout:g}s; re-scan"
    )
