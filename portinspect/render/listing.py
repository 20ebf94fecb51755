"""`list`: one row per socket, fitted to the screen, with the legend its marks need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portinspect.models import Listener
from portinspect.render.common import PIPE, Column, Screen, clean, paint, table, wrap

# On a narrow screen the columns give way in this order (README "Output"): SERVICE, RANGE and
# USER leave, then ADDRESS and PROGRAM are cut (an address in its middle), then TOP and PROTO
# leave. PORT and PID stay: they are what the next command (`who`, `kill`) takes.
COLUMNS = (
    Column("PORT"),
    Column("PROTO", give=6),
    Column("ADDRESS", give=4, least=9, middle=True),
    Column("PID"),
    Column("TOP", give=5),
    Column("PROGRAM", give=4, least=8),
    Column("USER", give=3),
    Column("RANGE", give=2),
    Column("SERVICE", give=1),
)
RISK = Column("RISK", give=4, least=4, keep_empty=True)

_RISK_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "info": "dim"}


def program(listener: Listener) -> str:
    """What serves the port, in a few words: 'django (runserver)', 'jupyter (kernel)',
    'http.server', 'nginx'; an unrecognised holder by its process name and role."""
    if listener.owner_hidden:
        return "(owner hidden)"
    if listener.framework and listener.server and listener.framework != listener.server:
        return f"{clean(listener.framework)} ({clean(listener.server)})"
    if listener.framework or listener.server:
        return clean(listener.framework or listener.server)
    name = clean(listener.process) or "?"
    role = listener.roles.get(listener.pid or 0)
    # A worker or a kernel nobody recognised still says what it is in its app.
    return f"{name} ({role})" if role in ("worker", "kernel", "wrapper") else name


def _pid(listener: Listener) -> str:
    if listener.pid is None:
        return "-"
    extra = len(listener.holders) - 1
    return f"{listener.pid} +{extra}" if extra else str(listener.pid)


def _top(listener: Listener) -> str:
    """The app's top process when it is not the holder shown under PID (Django's reloader,
    npm above vite): the process `kill` signals first and `who` calls the app top."""
    top = listener.app_pid
    return str(top) if top is not None and top != listener.pid else ""


def _range(listener: Listener) -> str:
    return f"{listener.range}, ephemeral" if listener.ephemeral else str(listener.range)


def _row(listener: Listener, risk: str | None) -> list[str]:
    address = clean(listener.address) + (" *" if listener.exposed else "")
    row = [
        str(listener.port),
        listener.proto.value,
        address,
        _pid(listener),
        _top(listener),
        program(listener),
        clean(listener.user) or "?",
        _range(listener),
        listener.service or "",
    ]
    if risk is not None:
        row.append(risk)
    return row


def _styles(listener: Listener, risk: str | None) -> list[str | None]:
    styles: list[str | None] = [None] * len(COLUMNS)
    styles[2] = "bold red" if listener.exposed else None
    styles[5] = "dim" if listener.owner_hidden else "cyan"
    styles[7] = "dim" if listener.ephemeral else None
    if risk is not None:
        styles.append(_RISK_STYLE.get(risk))
    return styles


def list_table(
    listeners: Sequence[Listener],
    risks: Mapping[tuple[str, int], str] | None = None,
    screen: Screen = PIPE,
) -> str:
    """The table of `list`, and a legend for the marks it shows. risks: (proto, port) ->
    audit level, for `list --risk`'s extra column."""
    if not listeners:
        return "No listening sockets match."
    cells = [
        (li, None if risks is None else risks.get((li.proto.value, li.port), "-"))
        for li in listeners
    ]
    columns = (*COLUMNS, RISK) if risks is not None else COLUMNS
    rows = [_row(li, risk) for li, risk in cells]
    styles = [_styles(li, risk) for li, risk in cells] if screen.color else None
    drawn = table(columns, rows, screen, styles=styles)
    notes = []
    if any(li.exposed for li in listeners):
        notes.append("* exposed beyond this machine (a wildcard or non-loopback address)")
    if any(row[4] for row in rows) and "TOP" not in drawn.hidden:
        notes.append(
            "PID holds the socket (+N: N more processes share it); TOP: the app's top process "
            "(a reloader, npm), which `kill` stops first; `who PORT` shows the whole app"
        )
    if drawn.hidden:
        shown = ", ".join(drawn.hidden)
        notes.append(f"{shown} left out to fit {screen.width} columns: --wide shows every column")
    lines = [line for note in notes for line in wrap(note, screen.width)]
    if lines:
        lines = [paint(line, "dim", screen) for line in lines]
    return "\n".join([drawn.text, *([""] if lines else []), *lines])
