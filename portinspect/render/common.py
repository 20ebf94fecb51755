"""What every renderer shares: terminal-safe text, the screen it goes to, tables that fit it.

Every string that came from another process (command lines, cwd, names) goes through
`clean()` (from portinspect.safetext) before it reaches a terminal: a hostile process title
must not be able to move the cursor, recolour the screen or break a row in two. Colour codes
are added only here (`paint`), after cleaning, so any escape in a rendered string is ours.

A Screen says how wide the reader's screen is (None: no limit, for pipes, files and --wide)
and whether colour may be used; _output.screen() decides it, renderers only obey it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, NamedTuple

from portinspect.inputs import spans as spans
from portinspect.safetext import ELLIPSIS as ELLIPSIS
from portinspect.safetext import clean as clean

if TYPE_CHECKING:
    from portinspect.models import PortKey, ProcessInfo

# --- the screen -----------------------------------------------------------------------------


class Screen(NamedTuple):
    """Where text goes. width: columns to fit, or None for whole lines (a pipe, a file,
    --wide). color: ANSI colours may be used (a terminal, and the user did not say no).

    NamedTuples here, not frozen dataclasses: every command imports this module, and a
    dataclass costs ten times as much to build at import (1 ms against 0.1 ms).
    """

    width: int | None = None
    color: bool = False


PIPE = Screen()  # whole lines, no colour: what a renderer gives when not told otherwise

_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bold red": "1;31",
    "bold yellow": "1;33",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def paint(text: str, style: str | None, screen: Screen) -> str:
    """text in a colour, when the screen takes colour; unchanged otherwise."""
    if not screen.color or not style or not text:
        return text
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m"


def visible(text: str) -> int:
    """The columns text takes on screen: its length without our colour codes."""
    return len(_ANSI.sub("", text)) if "\x1b" in text else len(text)


# --- cutting to a width ---------------------------------------------------------------------


def cut(text: str, width: int | None) -> str:
    """text cut at its end to width columns, the cut marked with an ellipsis."""
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""


def cut_middle(text: str, width: int | None) -> str:
    """text cut in its middle to width, keeping both ends: the tail of a command line is
    what tells two servers apart (`http.server 8000 --bind 127.0.0.1` and `... --bind ::1`),
    the head says what runs. The tail gets the larger share."""
    if width is None or len(text) <= width:
        return text
    if width < 8:
        return cut(text, width)
    head = (width - 1) * 2 // 5
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def fit_line(line: str, width: int | None) -> str:
    """The last resort: a line (maybe coloured) cut to the width. Used where nothing better
    can be done (a width narrower than any layout), so no line ever exceeds the screen."""
    if width is None or visible(line) <= width:
        return line
    plain = _ANSI.sub("", line)
    return cut(plain, width)


def wrap(text: str, width: int | None, *, indent: str = "", first: str = "") -> list[str]:
    """text as lines of at most width columns: `first` before the first line, `indent`
    before the others (a hanging indent under a label). Whole, on one line, without a width.
    Words longer than a line (a path, a URL) are broken where they must be."""
    if width is None:
        return [first + text]
    room = width - max(len(first), len(indent))
    if room < 10:  # too narrow to wrap readably: one line, cut
        return [fit_line(first + text, width)]
    import textwrap  # only on a terminal: 1 ms of import a pipe never pays

    lines = textwrap.wrap(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        drop_whitespace=True,
    )
    return lines or [first.rstrip()]


LABEL = 11  # "program:   ", "reachable: ": values line up after the longest label


def labelled(
    label: str, text: str, screen: Screen, *, margin: int = 2, pad: int = LABEL
) -> list[str]:
    """`  label:     text` (no label: the text under the previous one), wrapped under itself
    when the screen is narrower than the text. pad: the label's column, colon and space
    included."""
    head = " " * margin + (f"{label}:" if label else "").ljust(pad - 1) + " "
    return wrap(text, screen.width, first=head, indent=" " * len(head))


# --- common words ---------------------------------------------------------------------------


def command_line(argv: Sequence[str], width: int | None = None, *, short: bool = False) -> str:
    """A command line, cleaned; setproctitle's padding (empty strings) dropped. short: the
    program's directory dropped (`/srv/venv/bin/python -m x` -> `python -m x`), for trees and
    plans where the full path is noise; who's `command:` line and JSON keep it."""
    args = [a for a in argv if a]
    if short and args and "/" in args[0] and " " not in args[0]:
        args[0] = PurePath(args[0]).name or args[0]
        # `python /venv/bin/uvicorn main:app`: the script an interpreter runs, by name too.
        if len(args) > 1 and args[0].startswith("python") and args[1].startswith("/"):
            args[1] = PurePath(args[1]).name or args[1]
    text = clean(" ".join(args))
    return cut_middle(text, width)


def uptime(started: float | None, now: float | None = None) -> str:
    if started is None:
        return "?"
    seconds = max(0, int((now if now is not None else time.time()) - started))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def who(info: ProcessInfo | None) -> str:
    """'pid 42 (uvicorn)'."""
    if info is None:
        return "an unknown process"
    argv = [a for a in info.cmdline if a]
    name = info.name or (PurePath(argv[0]).name if argv else "")
    return f"pid {info.pid} ({clean(name, 40)})" if name else f"pid {info.pid}"


def pids(numbers: Sequence[int], limit: int = 12) -> str:
    """'pid 42' or 'pids 42, 43' (and 'and N more' past `limit`)."""
    shown = ", ".join(map(str, numbers[:limit]))
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return ("pid " if len(numbers) == 1 else "pids ") + shown + more


def port_list(keys: Sequence[PortKey], limit: int = 6, unlisted: int = 0) -> str:
    """'port 8001' or 'ports 8001, 8002 and 3 more' (unlisted: more not in keys)."""
    numbers = sorted({port for _, port in keys})
    hidden = max(len(numbers) - limit, 0) + unlisted
    text = ", ".join(map(str, numbers[:limit]))
    more = f" and {hidden} more" if hidden else ""
    return ("port " if len(numbers) + unlisted == 1 else "ports ") + text + more


def times(count: int) -> str:
    """'×3': a process shown once for itself and identical siblings (trees, plans)."""
    return f"×{count}"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


# --- tables that fit --------------------------------------------------------------------------


class Column(NamedTuple):
    """One column of a table, and how it gives way on a narrow screen.

    give: when it gives way, as a rank (1 first; None: never): a column with a `least` width
    is then cut, down to that width; one without leaves the table. middle: cut in the middle
    (commands, addresses) rather than at the end. Empty columns (no cell has text) always
    leave, unless keep_empty.
    """

    header: str
    give: int | None = None
    least: int | None = None
    middle: bool = False
    keep_empty: bool = False
    style: str | None = None  # a colour for every cell of the column (on a terminal)


class Table(NamedTuple):
    """A laid-out table: its text, and the columns left out for want of width."""

    text: str
    hidden: tuple[str, ...] = ()
    cut: bool = False  # some cell was cut to fit


_GAP = 2  # tabulate's "plain" format puts two spaces between columns


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    screen: Screen = PIPE,
    *,
    styles: Sequence[Sequence[str | None]] | None = None,
) -> Table:
    """rows under columns, fitted to the screen: empty columns leave; if still too wide, the
    cuttable columns shrink toward their least width (the widest first); if that is not
    enough, columns leave in their drop order and the rest shrink again. Whole cells on a
    screen without a width. styles: a colour per cell (row by row), for terminals.

    tabulate draws it (format "plain", the header and a rule passed as rows, so its header
    padding does not widen narrow columns).
    """
    keep = [i for i, col in enumerate(columns) if col.keep_empty or any(row[i] for row in rows)]
    natural = {i: max([len(columns[i].header), *(len(row[i]) for row in rows)]) for i in keep}
    widths, hidden = _fit(columns, keep, natural, screen.width)
    shown = [i for i in keep if i in widths]
    header = [columns[i].header for i in shown]
    body: list[list[str]] = [header, ["-" * widths[i] for i in shown]]
    was_cut = False
    for r, row in enumerate(rows):
        cells = []
        for i in shown:
            text = row[i]
            if len(text) > widths[i]:
                text = cut_middle(text, widths[i]) if columns[i].middle else cut(text, widths[i])
                was_cut = True
            style = styles[r][i] if styles is not None else columns[i].style
            cells.append(paint(text, style, screen))
        body.append(cells)
    if screen.color:
        body[0] = [paint(h, "bold", screen) for h in header]
    from tabulate import tabulate  # here, not at module load: `free` and `wait` draw no table

    # disable_numparse: ports stay text, and tabulate is 2.5x faster without number sniffing.
    text = tabulate(body, tablefmt="plain", disable_numparse=True)
    lines = [line.rstrip() for line in text.splitlines()]
    if screen.width is not None:
        lines = [fit_line(line, screen.width) for line in lines]
    return Table("\n".join(lines), tuple(columns[i].header for i in hidden), was_cut)


def _fit(
    columns: Sequence[Column], keep: list[int], natural: dict[int, int], width: int | None
) -> tuple[dict[int, int], list[int]]:
    """(column -> width, the columns left out): the columns give way rank by rank until the
    table fits; at the last rank, what is left is cut to its least widths (and the lines cut
    by table(), if even that is too wide)."""
    if width is None:
        return dict(natural), []
    ranks = sorted({give for i in keep if (give := columns[i].give) is not None})
    given: set[int] = set()
    dropped: list[int] = []
    shown = list(keep)
    for level in [0, *ranks]:
        given = {i for i in keep if 0 < (columns[i].give or 0) <= level}
        dropped = [i for i in keep if i in given and columns[i].least is None]
        shown = [i for i in keep if i not in dropped]
        widths = _shrink(columns, shown, natural, width, cuttable=given)
        if widths is not None:
            return widths, sorted(dropped, key=lambda i: columns[i].give or 0)
    least = {i: _least(columns[i], natural[i]) if i in given else natural[i] for i in shown}
    return least, sorted(dropped, key=lambda i: columns[i].give or 0)


def _least(column: Column, natural: int) -> int:
    if column.least is None:
        return natural
    return min(natural, max(column.least, len(column.header)))


def _shrink(
    columns: Sequence[Column],
    shown: list[int],
    natural: dict[int, int],
    width: int,
    *,
    cuttable: set[int],
) -> dict[int, int] | None:
    """Widths for `shown` that fit `width`, the widest cuttable column cut first; None when
    even the least widths do not fit."""
    widths = {i: natural[i] for i in shown}
    least = {i: _least(columns[i], natural[i]) if i in cuttable else natural[i] for i in shown}
    gaps = _GAP * (len(shown) - 1)
    if sum(least.values()) + gaps > width:
        return None
    total = sum(widths.values()) + gaps
    while total > width:
        i = max((i for i in shown if widths[i] > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
        total -= 1
    return widths
