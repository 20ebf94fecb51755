"""`who`: the port, the apps behind it, their trees, how to stop them; or why a free port's
bind may still fail."""

from __future__ import annotations

from collections.abc import Sequence

from portinspect.models import Listener
from portinspect.models.app import App, Manager, Member, PortState, PortView, Stop
from portinspect.render.common import (
    PIPE,
    Screen,
    clean,
    command_line,
    cut_middle,
    fit_line,
    labelled,
    paint,
    plural,
    port_list,
    times,
    uptime,
    visible,
    who,
    wrap,
)

# A tree shows at most this many process lines per app; JSON keeps every process.
TREE_LINES = 20
_TREE_INDENT = "    "
_HOLDS = "[holds port]"

_ROLE_STYLE = {
    "server": "green",
    "master": "green",
    "reloader": "cyan",
    "supervisor": "cyan",
    "wrapper": "cyan",
    "worker": None,
    "parent": "dim",
    "manager": "dim",
    "inherited": "yellow",
}


def _fold(members: Sequence[Member]) -> list[tuple[Member, int]]:
    """Members with identical siblings folded: (member, how many more like it)."""
    shown: list[tuple[Member, int]] = []
    index: dict[tuple[int | None, str | None, tuple[str, ...]], int] = {}
    for member in members:
        info = member.process
        key = (info.ppid, member.role, tuple(a for a in info.cmdline if a))
        if key in index and member.depth > 0:
            first, more = shown[index[key]]
            shown[index[key]] = (first, more + 1)
            continue
        index[key] = len(shown)
        shown.append((member, 0))
    return shown


def _tree_rows(app: App) -> list[tuple[int, str, str, list[str]]]:
    """(pid, role, branches, marks) for each line of the tree, top to bottom."""
    rows: list[tuple[int, str, str, list[str]]] = []
    above = app.boundary.process
    if above is not None and app.boundary.role is not None:
        rows.append((above.pid, app.boundary.role.value, "", []))
    pids = {m.process.pid for m in app.members}
    children: dict[int, list[tuple[Member, int]]] = {}
    folded = _fold(app.members)
    for member, more in folded[1:]:
        parent = member.process.ppid
        children.setdefault(parent if parent in pids else app.top, []).append((member, more))

    def add(member: Member, more: int, branches: str) -> None:
        marks = [_HOLDS] if member.holds else []
        role = member.role.value if member.role is not None else ""
        if more:  # identical siblings: `worker ×4` is this one and three more like it
            role = f"{role} {times(more + 1)}".strip()
        rows.append((member.process.pid, role, branches, marks))

    def walk(pid: int, prefix: str) -> None:
        kids = children.get(pid, [])
        for i, (member, more) in enumerate(kids):
            last = i == len(kids) - 1
            add(member, more, prefix + ("└─ " if last else "├─ "))
            walk(member.process.pid, prefix + ("   " if last else "│  "))

    top, _ = folded[0]
    add(top, 0, "└─ " if rows else "")
    walk(app.top, "   " if rows else "")
    return rows


def tree_lines(app: App, *, limit: int | None = TREE_LINES, screen: Screen = PIPE) -> list[str]:
    """The app as a tree: the process above it (when it is not part of it), the top, its
    descendants, each line `PID  ROLE  branches command  marks`: the pid and role in columns
    of their own, the branches before the command. Identical siblings folded; at most
    `limit` lines; commands cut in their middle to fit the screen (the tail tells two
    servers apart), their program's directory left out (`command:` and JSON show it)."""
    rows = _tree_rows(app)
    commands = {m.process.pid: m.process.cmdline for m in app.members}
    if app.boundary.process is not None:
        commands.setdefault(app.boundary.process.pid, app.boundary.process.cmdline)
    others = [(m.process.pid, "(other)", "", [m.process.cmdline]) for m in app.others]
    pid_width = max(len(str(row[0])) for row in [*rows, *others])
    # Below 50 columns the command's tail matters more than the role (`holders:` names
    # the roles of the processes that hold the port).
    narrow = screen.width is not None and screen.width < 50
    role_width = 0 if narrow else max(len(row[1]) for row in [*rows, *others])
    lines = []
    for pid, role, branches, marks in rows:
        head = f"{pid:<{pid_width}}"
        if role_width:
            style = _ROLE_STYLE.get(role.split(" ")[0])
            head += f"  {paint(role, style, screen)}" + " " * (role_width - len(role))
        elif "×" in role:
            marks = [*marks, role.rsplit(" ", 1)[-1]]
        lines.append(_tree_line(head, branches, commands.get(pid, ()), marks, screen))
    for pid, _, _, (cmdline,) in others:
        text = f"{command_line(cmdline, short=True)}  (serves ports of its own: not part of it)"
        head = f"{pid:<{pid_width}}" + (f"  {'':<{role_width}}" if role_width else "")
        lines.append(_tree_line(head, "", (), [], screen, text=text))
    if limit is not None and len(lines) > limit:
        hidden = len(lines) - (limit - 1)
        lines = [*lines[: limit - 1], f"... {hidden} more lines (--json lists every process)"]
    return lines


def _tree_line(
    head: str,
    branches: str,
    cmdline: Sequence[str],
    marks: list[str],
    screen: Screen,
    *,
    text: str | None = None,
) -> str:
    command = command_line(cmdline, short=True) if text is None else text
    if screen.width is not None:
        used = len(_TREE_INDENT) + visible(head) + 2 + len(branches)
        tail = sum(len(m) + 2 for m in marks)
        if screen.width - used - tail < 30 and _HOLDS in marks:  # room for the command
            marks = ["[port]" if m == _HOLDS else m for m in marks]
            tail = sum(len(m) + 2 for m in marks)
        command = cut_middle(command, max(10, screen.width - used - tail))
    shown = [paint(m, "green" if m in (_HOLDS, "[port]") else None, screen) for m in marks]
    return "  ".join([f"{head}  {branches}{command}", *shown]).rstrip()


# --- the report -------------------------------------------------------------------------------


def stop_advice(view: PortView, udp_only: bool) -> str:
    """How to free the port: the kill command, or the manager's own stop command."""
    port = view.port
    command = f"portinspect kill {'--udp ' if udp_only else ''}{port}"
    apps = [a for a in view.apps if not a.leaked]
    leaked = [a for a in view.apps if a.leaked]
    if leaked:
        holder = who(leaked[0].members[0].process)
        return (
            f"not with portinspect: {holder} holds an inherited copy of the socket and is never "
            "signalled; the port stays held until it closes that copy or exits"
        )
    if not apps:
        return ""
    manager = next((a.manager for a in apps if a.manager is not None), None)
    if manager is not None and manager.restarts is not False:
        how = f"`{clean(manager.stop)}`" if manager.stop else f"through {manager.kind}"
        by = f" (pid {manager.pid})" if manager.pid is not None else ""
        return (
            f"{how}   ({manager.kind}{by} runs it and would restart it; "
            f"`{command}` stops after the graceful step)"
        )
    tops = ", ".join(f"pid {a.top}" for a in apps)
    whose = "the app's top process" if len(apps) == 1 else "each app's top process"
    text = f"{command}   (SIGTERM to {tops}, {whose}, then verifies the port is free)"
    if manager is not None and manager.stops_others:
        by = f" (pid {manager.pid})" if manager.pid is not None else ""
        text += f"; note: {manager.kind}{by} stops every other service it runs when this one exits"
    return text


def who_report(view: PortView, now: float | None = None, screen: Screen = PIPE) -> str:
    """The human diagnosis of one port: sockets, apps, trees, and how to stop them."""
    listeners = view.listeners
    first = listeners[0]
    facts = [first.range.value, "ephemeral range" if first.ephemeral else "not ephemeral"]
    if first.service:
        facts.append(f"IANA service {first.service}")
    lines = _headed(f"Port {view.port}", ", ".join(facts), screen)
    exposed = "EXPOSED beyond this machine"
    for li in listeners:
        reach = exposed if li.exposed else "loopback only"
        text = f"  {li.proto.value} {li.family.value} {clean(li.endpoint)}  ({reach})"
        wrapped = wrap(text, screen.width, indent="    ")
        lines += [line.replace(exposed, paint(exposed, "bold red", screen)) for line in wrapped]
    for app in view.apps:
        lines.append("")
        lines.extend(_app_section(app, now, screen))
    hidden = [li for li in listeners if li.owner_hidden]
    if hidden:
        lines.append("")
        lines.extend(_hidden_section(hidden, view.snapshot.privileged, screen))
    advice = stop_advice(view, udp_only=all(li.proto.value == "udp" for li in listeners))
    if advice:
        lines.extend(labelled("stop it", advice, screen))
    return "\n".join(fit_line(line, screen.width) for line in lines)


def _hidden_section(hidden: Sequence[Listener], privileged: bool, screen: Screen) -> list[str]:
    owner = clean(hidden[0].user) or "another user"
    if privileged:
        return labelled(
            "owner",
            f"not visible from here (belongs to {owner}): a kernel socket, or a process in "
            "another pid namespace or container",
            screen,
        )
    return [
        *labelled("owner", f"hidden (the socket belongs to {owner})", screen),
        *labelled(
            "next", f"run `sudo portinspect who {hidden[0].port}` to see the process", screen
        ),
    ]


def _app_section(app: App, now: float | None, screen: Screen) -> list[str]:
    top = app.members[0].process
    if app.leaked:
        return labelled(
            "also held",
            f"{who(top)}, which inherited the socket (a leaked descriptor in a shell, "
            "terminal, multiplexer or manager); kill never signals it",
            screen,
        )
    holders = ", ".join(
        f"{m.process.pid} ({m.role.value if m.role else 'holder'})" for m in app.holders[:8]
    )
    if len(app.holders) > 8:
        holders += f" and {len(app.holders) - 8} more"
    primary = app.holders[0].process if app.holders else top
    role = f" ({app.members[0].role.value})" if app.members[0].role else ""
    lines = [
        *labelled("program", _program(app), screen),
        *labelled("app top", f"pid {app.top}{role}, up {uptime(top.create_time, now)}", screen),
        *labelled("holders", holders, screen),
        *labelled("user", clean(primary.user) or "?", screen),
        *labelled("cwd", clean(primary.cwd) or "? (needs root)", screen),
        *labelled("command", _whole_command(primary.cmdline, screen), screen),
        *labelled("parent", _boundary_text(app), screen),
    ]
    if app.manager is not None:
        lines.extend(labelled("manager", manager_text(app.manager), screen))
    lines.append("  app tree:")
    lines.extend(_TREE_INDENT + line for line in tree_lines(app, screen=screen))
    return [fit_line(line, screen.width) for line in lines]


def _whole_command(argv: Sequence[str], screen: Screen) -> str:
    """The holder's whole command line: wrapped on a terminal, but at most four lines of it
    (a command line can be 128 KiB long), cut in the middle."""
    text = command_line(argv)
    if screen.width is None:
        return text
    return cut_middle(text, max(20, (screen.width - 13) * 4))


def _program(app: App) -> str:
    if app.framework and app.server and app.framework != app.server:
        return f"{clean(app.framework)} ({clean(app.server)})"
    return clean(app.framework or app.server) or clean(app.members[0].process.name) or "?"


_STOP_WORDS = {
    Stop.INIT: "init (started as a daemon, or its parent exited)",
    Stop.LINEAGE: "{who}, which runs this portinspect",
    Stop.PROTECTED: "{who}, a system service",
    Stop.MANAGER: "{who}, a process manager",
    Stop.BOUNDARY: "{who}, a shell, terminal or editor",
    Stop.SERVES_OTHER_PORTS: "{who}, which serves {ports} itself: not part of this app",
    Stop.RUNS_OTHER_SERVICES: "{who}, which also runs services on {ports}: not part of this app",
    Stop.UNRELATED: "{who}, which is not part of the app",
    Stop.HIDDEN: "not visible from here",
}


def _boundary_text(app: App) -> str:
    boundary = app.boundary
    return _STOP_WORDS[boundary.stop].format(
        who=who(boundary.process), ports=port_list(boundary.ports, unlisted=boundary.more_ports)
    )


def manager_text(manager: Manager) -> str:
    by = f" (pid {manager.pid})" if manager.pid is not None else ""
    service = f", service {clean(manager.service)}" if manager.service else ""
    if manager.restarts is True:
        does = "restarts it when it exits"
    elif manager.restarts is None:
        does = "may restart it, depending on its configuration"
    else:
        does = "does not restart it"
    if manager.stops_others:
        does += "; stops every other service it runs when this one exits"
    stop = f"; stop it with `{clean(manager.stop)}`" if manager.stop else ""
    return f"{manager.kind}{by}{service}: {does}{stop}"


def _headed(head: str, text: str, screen: Screen) -> list[str]:
    """`Port 8000: facts`, wrapped, `Port 8000` in bold."""
    lines = wrap(f"{head}: {text}", screen.width, indent="  ")
    if not lines[0].startswith(head):  # cut short on a very narrow screen
        return lines
    return [paint(head, "bold", screen) + lines[0][len(head) :], *lines[1:]]


def hidden_owner(view: PortView) -> str:
    """`who`'s one-line error when every socket on the port has an owner we cannot see."""
    user = clean(view.listeners[0].user) or "another user"
    if view.snapshot.privileged:
        # Root sees every process of its pid namespace: the owner lives elsewhere.
        return (
            f"port {view.port} belongs to {user} in another pid namespace or the kernel; "
            "its process is not visible from here"
        )
    return f"port {view.port} belongs to {user}; run with sudo to see its process"


# --- a port nothing listens on ----------------------------------------------------------------


def free_report(state: PortState, screen: Screen = PIPE) -> str:
    """`who` on a port nothing listens on: say it is free, and what may still make a bind
    there fail (a socket bound to it, TIME_WAIT, a connection using it as its local port),
    with the result of the binds a server would make."""
    sockets = dict(state.sockets)
    lines = _headed(f"Port {state.port}", "free: nothing listens on it, TCP or UDP", screen)
    bound = sockets.pop("bound", 0)
    waiting = sockets.pop("time-wait", 0)
    if bound:
        owner = f" of {clean(state.bound_user)}" if state.bound_user else ""
        lines += labelled(
            "bound",
            f"{plural(bound, 'TCP socket')}{owner} bound to it without listening (a server "
            "about to listen, or a socket left bound): a bind fails unless both set "
            "SO_REUSEADDR",
            screen,
        )
    if waiting:
        lines += labelled(
            "time-wait",
            f"{plural(waiting, 'connection')} closed from this side, kept by the kernel for up "
            "to 60s: until then a bind fails unless both sockets set SO_REUSEADDR (a "
            "server's own connections do; an outgoing connection's do not)",
            screen,
        )
    if sockets:
        states = ", ".join(f"{n} {state}" for state, n in sorted(sockets.items()))
        lines += labelled(
            "in use",
            f"as the local port of {plural(sum(sockets.values()), 'connection')} ({states}): "
            "while they last a bind fails unless both sockets set SO_REUSEADDR",
            screen,
        )
    if state.bind_error is not None:
        address, proto, error = state.bind_error
        lines += labelled(
            "bind", paint(f"fails on {address} {proto}: {error}", "red", screen), screen
        )
    else:
        lines += labelled(
            "bind",
            "works on 127.0.0.1, 0.0.0.0, ::1 and :: (with SO_REUSEADDR, as servers bind; "
            "tried and closed at once)",
            screen,
        )
    if state.ephemeral:
        lines += labelled(
            "note",
            "in the OS's ephemeral range: the kernel may give it to an outgoing connection at "
            "any moment (`portinspect free` hands out ports outside it)",
            screen,
        )
    return "\n".join(fit_line(line, screen.width) for line in lines)
