"""kill_port(): free a port for good, and prove it. Discover -> plan -> confirm -> escalate.

- discovery (api.port_view): every holder of the port's sockets, the app model behind them
  (apptree.py) and a handle for each process that may be signalled;
- plan (kill/plan.py, pure): what would be signalled, refused, and why;
- escalation (kill/escalate.py): signals, waits and re-checks, nothing else;
- the outcome: one constructor per way it can end (models.KillOutcome); render/kill.py words it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from portinspect import _psutil, api
from portinspect.errors import ExitStatus, UsageError
from portinspect.inputs import check_ports, check_seconds, parse_signal
from portinspect.kill import plan as planning
from portinspect.kill.escalate import (
    DEFAULT_TIMEOUT,
    WATCH_SECONDS,
    Clock,
    Escalation,
    Interrupted,
    ladder,
    port_sockets,
)
from portinspect.kill.plan import Who
from portinspect.models import (
    ALL_PROTOS,
    KillOutcome,
    KillPlan,
    KillStatus,
    KillStep,
    KillTrace,
    ProcessInfo,
    Proto,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "WATCH_SECONDS",
    "KillInterrupted",
    "KillReport",
    "kill_port",
    "report",
]

Confirm = Callable[[KillPlan], bool]
OnStep = Callable[[int, KillStep], None]
_TCP = frozenset({Proto.TCP})


@dataclass(frozen=True, slots=True)
class _Options:
    timeout: float
    signum: int
    force: bool
    dry_run: bool
    confirm: Confirm | None
    on_step: OnStep | None
    who: Who
    protos: frozenset[Proto]
    named: frozenset[int]
    all_ports: bool
    watch: float
    clock: Clock = field(default_factory=Clock)


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
    all_ports: bool = False,
    watch: float = WATCH_SECONDS,
) -> list[KillOutcome]:
    """Stop the app serving each port, for good, and prove it; one outcome per port.

    What is signalled (README "What kill stops"): the processes holding the port's sockets;
    the ancestors that exist only to run them (a reloader, a master, npm/uv run); and their
    descendants that serve nothing else. Never a sibling, a parent that runs other services,
    a process manager, a shell or terminal, portinspect's own ancestors, init or a protected
    daemon, a container's proxy, or another user's process when not root.

    For each port: SIGTERM (or `signal`) to each app's top process; once the tops have
    exited, or after timeout/2, the same signal to the rest of the app and to new holders;
    SIGKILL to whatever is left `timeout` seconds after the first signal. Success is a
    re-scan that finds no listening TCP socket on the port, in either family. When something
    could restart the app (a manager, a parent that runs other services), the freed port is
    watched for `watch` seconds: a manager's respawn ends as MANAGED (exit 5, with the
    manager's own stop command), never as FREED; a manager that restarts the app is never
    sent SIGKILL.

    udp: bound UDP sockets count as listening too; off by default, since a UDP port is often
    shared by unrelated programs (mDNS on 5353).
    all_ports: when the only way to free a port also frees others the same processes serve
    (gunicorn -b :A -b :B), go ahead; without it such a port is REFUSED unless those ports
    are named too, or confirm() (which is shown them) says yes.
    force: SIGKILL the whole tree at once, tops first. dry_run: plan only, nothing is
    signalled. confirm(plan): asked before each port is acted on; False skips it (status
    DECLINED); time spent in it does not count in freed_after. on_step(port, step): called
    as each batch of signals is sent.

    On Windows every step is TerminateProcess (no graceful signal exists): tops first, then
    the tree, then a re-scan; `signal` is ignored.

    Ctrl-C stops the escalation: KillInterrupted (a KeyboardInterrupt) carries the outcomes
    so far, the interrupted port's with the signals it had been sent.
    """
    wanted = check_ports(port_or_ports)
    if not wanted:
        raise UsageError("no port to kill")
    user, privileged = _psutil.whoami()
    from portinspect import scanner

    opts = _Options(
        timeout=check_seconds(timeout, "timeout"),
        signum=parse_signal(signal),
        force=force,
        dry_run=dry_run,
        confirm=confirm,
        on_step=on_step,
        who=Who(user, privileged, scanner.self_lineage()),
        protos=ALL_PROTOS if udp else _TCP,
        named=frozenset(wanted),
        all_ports=all_ports,
        watch=check_seconds(watch, "watch"),
    )
    ports = sorted(wanted)
    outcomes: list[KillOutcome] = []
    try:
        listening = port_sockets(wanted, opts.protos)
        for port in ports:
            outcomes.append(_worded(_kill_one(port, port in listening, opts)))
    except _PortInterrupted as exc:
        outcomes.append(_worded(exc.outcome))
        raise KillInterrupted(outcomes, ports[len(outcomes) :]) from None
    except KeyboardInterrupt:  # between two ports: nothing of either is half done
        raise KillInterrupted(outcomes, ports[len(outcomes) :]) from None
    return outcomes


def _worded(outcome: KillOutcome) -> KillOutcome:
    """The outcome with its one-line message and its reasons in words, written by render from
    the outcome's data."""
    from portinspect.render.kill import kill_message, reason_text

    explained = tuple(reason_text(r, outcome.plan) for r in outcome.reasons)
    return replace(outcome, message=kill_message(outcome), explained=explained)


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


def _kill_one(port: int, was_listening: bool, opts: _Options) -> KillOutcome:
    clock = opts.clock
    start = clock.now()
    plan = KillPlan(port)
    try:
        if not was_listening:
            return KillOutcome.blocked(planning.plan_kill(port, [], []), clock.now() - start)
        view = api.port_view(port, opts.protos)
        plan = planning.plan_kill(
            port,
            view.listeners,
            view.apps,
            who=opts.who,
            named=opts.named,
            held=view.held_by_port(),
            hidden_ports=view.snapshot.hidden_ports,
            hidden_proxies=api.hidden_proxies(view),
        )
        if plan.blocked is KillStatus.NOT_LISTENING:
            # It listened a moment ago: it went with an earlier port's app, or by itself.
            return KillOutcome.gone_meanwhile(plan, start)
        handles = _capture(plan)
        if plan.blocked is None and _psutil.CAN_SIGNAL:
            plan = _preflight(plan, handles)
        if plan.blocked is not None:
            return KillOutcome.blocked(plan, clock.now() - start)
        if opts.dry_run:
            return KillOutcome.dry_run(plan, clock.now() - start)
        consent = not planning.needs_consent(plan, opts.all_ports)
        if opts.confirm is not None:
            asked = clock.now()
            agreed = opts.confirm(plan)
            clock.paused += clock.now() - asked
            if not agreed:
                return KillOutcome.declined(plan, clock.now() - start)
            consent = True
        if not consent:
            blocked = planning.refused_for_collateral(plan)
            return KillOutcome.blocked(blocked, clock.now() - start)
    except KeyboardInterrupt:
        trace = KillTrace(elapsed=clock.now() - start)
        interrupted = KillOutcome.after_signals(KillStatus.INTERRUPTED, plan, trace)
        raise _PortInterrupted(interrupted) from None
    escalation = Escalation(
        plan,
        handles,
        protos=opts.protos,
        who=opts.who,
        clock=clock,
        inodes=set(view.inodes),
        on_step=opts.on_step,
        watch_seconds=opts.watch,
    )
    stages = ladder(
        opts.timeout,
        opts.signum,
        force=opts.force,
        windows=not _psutil.CAN_SIGNAL,
        managed=plan.managed,
    )
    try:
        trace = escalation.run(stages, start)
    except Interrupted as exc:
        outcome = KillOutcome.after_signals(KillStatus.INTERRUPTED, plan, exc.trace)
        raise _PortInterrupted(outcome) from None
    return KillOutcome.after_signals(_status(plan, trace), plan, trace)


def _status(plan: KillPlan, trace: KillTrace) -> KillStatus:
    """FREED only for a port nothing takes back: a manager that restarts what it runs by
    default (supervisord, pm2) makes the port MANAGED even when its restart comes after the
    watch (supervisord's backoff grows with each restart); one that may (a systemd unit, a
    container) is judged by what the watch saw."""
    manager = plan.manager
    if manager is not None and manager.restarts is True:
        return KillStatus.MANAGED
    if trace.free and not (plan.managed and trace.retaken):
        return KillStatus.FREED
    if plan.managed:
        return KillStatus.MANAGED
    return KillStatus.STILL_HELD


def _capture(plan: KillPlan) -> dict[int, _psutil.Handle]:
    """A handle for every target; a process that exited or whose pid was reused gets none."""
    handles: dict[int, _psutil.Handle] = {}
    for target in plan.targets:
        handle = _psutil.capture(target.process)
        if handle is not None:
            handles[handle.pid] = handle
    return handles


def _preflight(plan: KillPlan, handles: dict[int, _psutil.Handle]) -> KillPlan:
    """Signal 0 to every target: may we signal it? Checked before anything is sent."""
    denied: list[ProcessInfo] = [
        t.process
        for t in plan.targets
        if (h := handles.get(t.process.pid)) is not None and h.pid > 0 and not h.may_signal()
    ]
    return planning.denied(plan, denied) if denied else plan


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
    def failed(self) -> tuple[KillOutcome, ...]:
        return tuple(o for o in self.outcomes if o.exit_status is not ExitStatus.OK)

    def to_dict(self, dry_run: bool) -> dict[str, Any]:
        """`kill --json`: one outcome per port shown."""
        return {"ports": [o.to_dict() for o in self.outcomes], "dry_run": dry_run}


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
