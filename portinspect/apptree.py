"""The app model: which processes make up the app behind a socket, and where it ends.

One module owns the idea of "the app behind a port"; list, who, kill and the renderers read
its result and walk no tree of their own. Pure: it reads a Snapshot (sockets, processes, who
holds which port) and the command-line signatures of signatures.py, nothing from the OS.

From the holders of the sockets it climbs parent by parent, taking a parent in only when
that parent exists to run them (the contract `kill` keeps, README "What kill stops"):
- it holds one of the same sockets (gunicorn's master, uvicorn --reload/--workers, werkzeug);
- it is the reloader of the child (Django's and werkzeug's RUN_MAIN parent, uvicorn --reload);
- it is a launcher (npm, npx, uv run...) or the `sh -c` a launcher started;
- it runs the same known server and spawned the child (granian, hypercorn, gunicorn workers).
It stops, and says why, at init, portinspect's own ancestors, protected daemons, process
managers, shells, terminals and IDEs; at a parent that serves other ports itself or whose
other children do (a pre-fork daemon running one service per child, a test harness, a
`bash -c 'a & b & wait'`); and at any parent with no sign of the above.

Below the top, every descendant belongs to the app (workers, kernels, resource trackers),
except those that serve ports of their own: they are other services and stay out.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from portinspect import appspec, managers
from portinspect.appspec import SourceReader
from portinspect.catalogue import (
    KIND_BOUNDARY,
    KIND_LAUNCHER,
    KIND_MP_CHILD,
    KIND_SCRIPT,
    KIND_SERVER,
    KIND_SHELL_C,
)
from portinspect.models import (
    App,
    Boundary,
    Manager,
    Member,
    PortKey,
    ProcessInfo,
    Role,
    Snapshot,
    Socket,
    Stop,
)
from portinspect.models.app import BOUNDARY_PORTS
from portinspect.signatures import Signature, describe, is_protected, same_command

# Boundaries past which nothing restarts a server by itself: once every process of the app
# has exited under one of these, no respawn can come (kill skips its respawn watch).
QUIET_STOPS = frozenset({Stop.INIT, Stop.LINEAGE, Stop.BOUNDARY, Stop.PROTECTED})


class _Below(NamedTuple):
    ports: tuple[PortKey, ...]  # sorted
    branches: Mapping[int, frozenset[PortKey]]  # child -> the ports served in its subtree
    counts: Counter[PortKey]  # port -> how many branches serve it


@dataclass
class AppModel:
    """The app model over one snapshot; apps() answers for any set of sockets.

    read_source reads an app module (uvicorn main:app -> main.py) to tell FastAPI from
    Flask; without it the framework of a bare app server stays None.
    """

    snapshot: Snapshot
    read_source: SourceReader | None = None
    _sigs: dict[int, Signature] = field(default_factory=dict, repr=False)
    _below: dict[int, _Below] = field(default_factory=dict, repr=False)
    _apps: dict[tuple[tuple[int, ...], bool], tuple[App, ...]] = field(
        default_factory=dict, repr=False
    )

    @property
    def processes(self) -> Mapping[int, ProcessInfo]:
        return self.snapshot.processes

    @functools.cached_property
    def held(self) -> Mapping[int, frozenset[PortKey]]:
        return self.snapshot.held_ports()

    @functools.cached_property
    def _children(self) -> Mapping[int, tuple[int, ...]]:
        found: dict[int, list[int]] = {}
        for pid, info in self.processes.items():
            if info.ppid is not None and info.ppid != pid:
                found.setdefault(info.ppid, []).append(pid)
        return {pid: tuple(sorted(kids)) for pid, kids in found.items()}

    @functools.cached_property
    def _branches(self) -> Mapping[int, Mapping[int, frozenset[PortKey]]]:
        """ancestor -> child on the way down -> the ports held in that child's subtree.

        Read off the holders: every process that holds a port is in the snapshot with its
        ancestors, so each holder's ports are added to every branch above it.
        """
        found: dict[int, dict[int, set[PortKey]]] = {}
        for pid, ports in self.held.items():
            below, current = pid, self.parent(pid)
            seen = {pid}
            while current is not None and current.pid not in seen:
                seen.add(current.pid)
                found.setdefault(current.pid, {}).setdefault(below, set()).update(ports)
                below, current = current.pid, self.parent(current.pid)
        return {
            pid: {child: frozenset(ports) for child, ports in branches.items()}
            for pid, branches in found.items()
        }

    def below(self, pid: int) -> _Below:
        """Every port served below pid, and in how many of its children's branches each is."""
        found = self._below.get(pid)
        if found is None:
            branches = self._branches.get(pid, {})
            counts = Counter(port for ports in branches.values() for port in ports)
            found = self._below[pid] = _Below(tuple(sorted(counts)), branches, counts)
        return found

    def sig(self, pid: int) -> Signature:
        found = self._sigs.get(pid)
        if found is None:
            found = self._sigs[pid] = describe(self.processes[pid])
        return found

    def parent(self, pid: int) -> ProcessInfo | None:
        info = self.processes.get(pid)
        if info is None or info.ppid is None or info.ppid == pid:
            return None
        return self.processes.get(info.ppid)

    # -- the public question ----------------------------------------------------------------

    def apps(self, sockets: Sequence[Socket], *, trees: bool = False) -> tuple[App, ...]:
        """The apps behind these sockets (one socket, or every socket of a port), main app first.

        trees: also take in each top's descendants (who, kill); without it the members are
        the holders and the ancestors the climb took in (list).
        """
        holders = tuple(sorted({p for s in sockets for p in s.pids if p in self.processes}))
        if not holders:
            return ()
        focus = frozenset((s.proto, s.port) for s in sockets)
        key = (holders, trees)
        found = self._apps.get(key)
        if found is None:
            found = self._apps[key] = _Climb(self, frozenset(holders), focus).apps(trees)
        return found


@dataclass
class _Climb:
    """One apps() question: the holders of some sockets, climbed and grouped into apps."""

    model: AppModel
    holders: frozenset[int]
    focus: frozenset[PortKey]

    @functools.cached_property
    def app_ports(self) -> frozenset[PortKey]:
        """The ports the holders serve: a parent's subtree serving others is another service."""
        held = self.model.held
        return self.focus.union(*(held.get(pid, frozenset()) for pid in self.holders))

    def apps(self, trees: bool) -> tuple[App, ...]:
        chains = {pid: self.climb(pid) for pid in sorted(self.holders)}
        groups = _group([chain for chain, _ in chains.values()])
        # init, sshd or our own shell holding the socket beside a real app holds a copy it
        # inherited (socket activation, a leaked descriptor); alone, it is the server.
        tops = [self.top_of(group, chains) for group in groups]
        real = any(self.outside(top) is None for top in tops)
        apps = [
            self.app(top, group, chains, trees, beside_real=real)
            for top, group in zip(tops, groups, strict=True)
        ]
        # The main app first: a real one before a shell holding a leaked copy, then the one
        # holding most, then the lowest top.
        apps.sort(key=lambda a: (a.leaked, -sum(m.holds for m in a.members), a.top))
        return tuple(apps)

    # -- climbing ------------------------------------------------------------------------

    def climb(self, holder: int) -> tuple[list[int], Boundary]:
        """The holder and the ancestors that are part of its app, bottom first, and the stop."""
        model = self.model
        chain = [holder]
        if self.outside(holder) is not None:
            # A shell, terminal or daemon holding the socket is an "app" of its own, never
            # a way up: an inherited copy, or a daemon (sshd, init) that is not ours to climb.
            return chain, self.boundary_above(holder)
        current = holder
        while True:
            parent = model.parent(current)
            if parent is None:
                return chain, _no_parent(model.processes[current])
            if parent.pid in chain:  # a ppid cycle (pid reuse mid-read)
                return chain, Boundary(Stop.HIDDEN, None)
            stop = self.stop_at(parent, current)
            if stop is not None:
                return chain, stop
            chain.append(parent.pid)
            current = parent.pid

    def outside(self, pid: int) -> Stop | None:
        return outside(self.model.processes[pid], self.model.snapshot.self_lineage)

    def boundary_above(self, pid: int) -> Boundary:
        parent = self.model.parent(pid)
        if parent is None:
            return _no_parent(self.model.processes[pid])
        return Boundary(self.outside(parent.pid) or Stop.UNRELATED, parent)

    def stop_at(self, parent: ProcessInfo, child: int) -> Boundary | None:
        """None when `parent` is part of the app `child` belongs to; else where and why not."""
        hard = self.outside(parent.pid)
        if hard is not None:
            return Boundary(hard, parent)
        if parent.pid in self.holders:
            return None  # it holds the same socket: a master, a reloader, a supervisor
        own = self.model.held.get(parent.pid, frozenset()) - self.focus
        if own:
            shown = tuple(sorted(own)[:BOUNDARY_PORTS])
            return Boundary(Stop.SERVES_OTHER_PORTS, parent, shown, len(own) - len(shown))
        others, more = self.other_services(parent.pid, child)
        if others:
            return Boundary(Stop.RUNS_OTHER_SERVICES, parent, others, more)
        if self.runs_only(parent, child):
            return None
        return Boundary(Stop.UNRELATED, parent)

    def other_services(self, parent: int, child: int) -> tuple[tuple[PortKey, ...], int]:
        """The lowest BOUNDARY_PORTS ports served in the parent's other branches that are not
        the app's, and how many more there are."""
        below = self.model.below(parent)
        if not below.ports:
            return (), 0
        # Every port below the parent, less the app's and those only the child's branch
        # serves: the first few off the presorted ports, and a count. A launcher of 1000
        # workers is asked once per worker: building each whole answer cost 5.5 s at the L
        # load when sorted anew, and 0.25 s as a full filter.
        mine = below.branches.get(child, frozenset())
        removed = self.app_ports.union(p for p in mine if below.counts[p] == 1)
        rest = itertools.filterfalse(removed.__contains__, below.ports)
        shown = tuple(itertools.islice(rest, BOUNDARY_PORTS))
        if len(shown) < BOUNDARY_PORTS:
            return shown, 0
        total = len(below.ports) - sum(1 for p in removed if p in below.counts)
        return shown, total - len(shown)

    def runs_only(self, parent: ProcessInfo, child: int) -> bool:
        """The parent exists to run the child: a launcher, a reloader, the same server."""
        model = self.model
        psig, csig = model.sig(parent.pid), model.sig(child)
        if psig.kind == KIND_LAUNCHER:
            return True
        if psig.kind == KIND_SHELL_C:  # npm's `sh -c vite`, but not a Makefile's `sh -c`
            grand = model.parent(parent.pid)
            return grand is not None and model.sig(grand.pid).kind == KIND_LAUNCHER
        info = model.processes[child]
        if csig.reloader_child:
            # Django's and werkzeug's reloaders re-run their own command with RUN_MAIN set.
            return psig.kind in (KIND_SERVER, KIND_SCRIPT)
        if csig.kind == KIND_MP_CHILD:
            # uvicorn --reload / --workers, fastapi dev, sanic: the server spawned its children.
            return psig.kind == KIND_SERVER and (psig.reloads or psig.workers > 1 or psig.spawns)
        if same_command(parent, info):
            # A fork or re-run of the same program that serves nothing else (rule 4 checked
            # its other children): a reloader without its marker, a one-child pre-forker.
            return True
        return psig.server is not None and psig.server == csig.server and not psig.generic

    # -- one app -------------------------------------------------------------------------

    def top_of(self, group: Sequence[int], chains: Mapping[int, tuple[list[int], Boundary]]) -> int:
        """The member none of whose chain continues above it."""
        core = set(group)
        tops = [chain[-1] for chain, _ in chains.values() if chain[-1] in core]
        return min(tops, key=lambda pid: (_depth(self.model, pid, core), pid))

    def app(
        self,
        top: int,
        group: Sequence[int],
        chains: Mapping[int, tuple[list[int], Boundary]],
        trees: bool,
        *,
        beside_real: bool = False,
    ) -> App:
        model = self.model
        core = set(group)
        boundary = next(b for chain, b in chains.values() if chain[-1] == top)
        # A shell, terminal, multiplexer or manager holding the socket holds a leaked copy;
        # init, a protected daemon or portinspect's own ancestor stays itself (kill refuses it).
        stop = self.outside(top)
        leaked = stop in (Stop.BOUNDARY, Stop.MANAGER) or (stop is not None and beside_real)
        members = self.members(top, core, leaked)
        others: list[Member] = []
        if trees and not leaked:
            below, others = self.descendants(top, core)
            members = (*members, *below)
        chain_members = [m for m in members if m.process.pid in core]
        framework, server = self.identity(chain_members)
        return App(
            top=top,
            members=members,
            framework=framework,
            server=server,
            boundary=boundary,
            manager=None if leaked else manager_of(model, model.processes[top], boundary),
            ports=frozenset().union(*(model.held.get(p, frozenset()) for p in core)) | self.focus,
            others=tuple(others),
            leaked=leaked,
        )

    def members(self, top: int, core: set[int], leaked: bool) -> tuple[Member, ...]:
        """The chain members, top first and parents before children, with their roles."""
        model = self.model
        if leaked:
            return (Member(model.processes[top], Role.INHERITED, top in self.holders, 0),)
        order = sorted(core, key=lambda pid: (_depth(model, pid, core), pid))
        roles: dict[int, Role | None] = {}
        for pid in order:
            roles[pid] = self.role(pid, core, roles)
        return tuple(
            Member(model.processes[pid], roles[pid], pid in self.holders, _depth(model, pid, core))
            for pid in order
        )

    def role(self, pid: int, core: set[int], roles: Mapping[int, Role | None]) -> Role:
        model = self.model
        sig = model.sig(pid)
        if sig.kind in (KIND_LAUNCHER, KIND_SHELL_C):
            return Role.WRAPPER
        if sig.role is not None:  # setproctitle master/worker, kernel, resource tracker
            return Role(sig.role)
        parent = model.parent(pid)
        above = roles.get(parent.pid) if parent is not None and parent.pid in core else None
        if above is Role.MASTER:
            return Role.WORKER
        if above is Role.RELOADER:
            return Role.SERVER
        children = [c for c in model._children.get(pid, ()) if c in core]
        if children:
            if sig.reloads or any(model.sig(c).reloader_child for c in children):
                return Role.RELOADER
            same_server = sig.server is not None and any(
                model.sig(c).server == sig.server for c in children
            )
            if pid in self.holders or sig.workers > 1 or sig.prefork or same_server:
                return Role.MASTER  # its workers share the socket, or serve as copies of it
            return Role.SUPERVISOR
        if sig.kind == KIND_SERVER and pid in self.holders and (sig.reloads or sig.workers > 1):
            # A uvicorn --reload/--workers parent whose children are gone still holds the port.
            return Role.RELOADER if sig.reloads else Role.MASTER
        return Role.SERVER

    def descendants(self, top: int, core: set[int]) -> tuple[tuple[Member, ...], list[Member]]:
        """The top's other descendants: members, and those serving ports of their own."""
        model = self.model
        lineage = model.snapshot.self_lineage
        members: list[Member] = []
        others: list[Member] = []
        todo = deque((child, 1) for child in model._children.get(top, ()))
        seen = {top}
        while todo:
            pid, depth = todo.popleft()
            if pid in seen or pid in lineage:
                continue
            seen.add(pid)
            if pid in core:  # a chain member: its own children are the app's too
                todo.extend((child, depth + 1) for child in model._children.get(pid, ()))
                continue
            if pid in self.holders:
                continue  # a holder whose climb stopped below: an app of its own
            role = self.descendant_role(pid)
            own = model.held.get(pid, frozenset()) - self.app_ports
            member = Member(model.processes[pid], role, pid in self.holders, depth)
            if own and role is not Role.KERNEL:
                others.append(member)  # its own service: it and its subtree stay out
                continue
            members.append(member)
            todo.extend((child, depth + 1) for child in model._children.get(pid, ()))
        return tuple(members), others

    def descendant_role(self, pid: int) -> Role | None:
        model = self.model
        sig = model.sig(pid)
        if sig.kind in (KIND_LAUNCHER, KIND_SHELL_C):
            return Role.WRAPPER
        if sig.role is not None:
            return Role(sig.role)
        parent = model.parent(pid)
        if parent is None:
            return None
        psig = model.sig(parent.pid)
        if sig.kind == KIND_MP_CHILD:
            return Role.SERVER if psig.reloads and psig.workers <= 1 else Role.WORKER
        if same_command(parent, model.processes[pid]) or (
            sig.prefork and psig.server == sig.server
        ):
            return Role.WORKER
        return None

    def identity(self, members: Sequence[Member]) -> tuple[str | None, str | None]:
        """Framework and server, top first: the master's facts come before a worker's."""
        model = self.model
        pids = [m.process.pid for m in members]
        server = _first(_inherited(model, pid, set(pids), "server") for pid in pids)
        framework = _first(_inherited(model, pid, set(pids), "framework") for pid in pids)
        if framework is None and model.read_source is not None:
            framework = _framework_from_app(model, pids, model.read_source)
        return framework, server


def outside(info: ProcessInfo, lineage: frozenset[int] = frozenset()) -> Stop | None:
    """Why this process can never be part of an app (nor be climbed past), or None."""
    pid = info.pid
    if pid <= 1 or (pid == 2 and not info.cmdline):
        return Stop.INIT
    if pid in lineage:
        return Stop.LINEAGE
    if is_protected(info):
        return Stop.PROTECTED
    if managers.manager_row(info) is not None:
        return Stop.MANAGER
    if describe(info).kind == KIND_BOUNDARY:
        return Stop.BOUNDARY
    return None


def subtree_roots(snapshot: Snapshot) -> set[int]:
    """For each holder, its highest ancestor that the app model could still take in: the
    subtrees below these are all an app's members can come from (api.port_view reads them)."""
    roots: set[int] = set()
    processes = snapshot.processes
    for pid in {p for s in snapshot.sockets for p in s.pids if p in processes}:
        top, seen = pid, {pid}
        parent = processes.get(processes[pid].ppid or 0)
        while (
            parent is not None
            and parent.pid not in seen
            and outside(parent, snapshot.self_lineage) is None
        ):
            seen.add(parent.pid)
            top = parent.pid
            parent = processes.get(parent.ppid or 0)
        roots.add(top)
    return roots


def _no_parent(info: ProcessInfo) -> Boundary:
    # ppid 0 (init itself), 1, 2 (kernel threads), or a parent we could not read.
    if info.ppid is not None and info.ppid <= 1:
        return Boundary(Stop.INIT, None)
    return Boundary(Stop.HIDDEN, None)


def _group(chains: Iterable[Sequence[int]]) -> list[list[int]]:
    """Chains that share a process are one app (a worker and its master both hold the socket)."""
    groups: list[set[int]] = []
    for chain in chains:
        merged = set(chain)
        rest = []
        for group in groups:
            if group & merged:
                merged |= group
            else:
                rest.append(group)
        groups = [*rest, merged]
    return [sorted(g) for g in groups]


def _depth(model: AppModel, pid: int, members: set[int] | frozenset[int]) -> int:
    depth, seen = 0, {pid}
    parent = model.parent(pid)
    while parent is not None and parent.pid in members and parent.pid not in seen:
        depth += 1
        seen.add(parent.pid)
        parent = model.parent(parent.pid)
    return depth


def _inherited(model: AppModel, pid: int, members: set[int], attr: str) -> str | None:
    """A signature field, from the nearest member ancestor when the process has none (a
    multiprocessing child is whatever spawned it)."""
    seen: set[int] = set()
    current: int | None = pid
    while current is not None and current in members and current not in seen:
        value: str | None = getattr(model.sig(current), attr)
        if value is not None:
            return value
        if model.sig(current).kind != KIND_MP_CHILD:
            return None
        seen.add(current)
        parent = model.parent(current)
        current = parent.pid if parent is not None else None
    return None


def _framework_from_app(
    model: AppModel, order: Sequence[int], read_source: SourceReader
) -> str | None:
    for pid in order:
        sig = model.sig(pid)
        if sig.app is None:
            continue
        cwd = model.processes[pid].cwd
        for path in appspec.app_source_paths(sig.app, cwd, sig.app_dir):
            text = read_source(path)
            framework = appspec.framework_from_source(text, sig.interface) if text else None
            if framework is not None:
                return framework
    return None


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v is not None), None)


# ---------------------------------------------------------------------------------------
# Managers: who would restart the app, or stop its siblings, when it dies
# ---------------------------------------------------------------------------------------


def manager_of(model: AppModel, top: ProcessInfo, boundary: Boundary) -> Manager | None:
    """The process manager or service manager that runs this app, if any.

    The parent where the climb stopped, or the manager one level above a `sh -c` it started
    for a Procfile line; else a systemd unit or a container named by the top's cgroup.
    """
    above = boundary.process
    if above is not None and boundary.stop is not Stop.MANAGER:
        if model.sig(above.pid).kind == KIND_SHELL_C:
            grand = model.parent(above.pid)
            above = grand if grand is not None and managers.manager_row(grand) else None
        else:
            above = None
    if above is not None:
        row = managers.manager_row(above)
        if row is not None:
            # honcho runs each service from a forked copy of itself: name the one on top.
            while (up := model.parent(above.pid)) is not None and managers.manager_row(up) == row:
                above = up
            return managers.manager_for(row, above, top)
    return managers.cgroup_manager(top)


def roles_of(apps: Iterable[App]) -> dict[int, Role]:
    """pid -> role for every member of these apps that has one."""
    return {m.process.pid: m.role for app in apps for m in app.members if m.role is not None}
