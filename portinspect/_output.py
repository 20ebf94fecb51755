"""The one writer of what portinspect prints: a JSON document, a result, a one-line message.

cli.py and the console-script boundary (_entry.py) write only through here, so every JSON
document is the same envelope, every error one cleaned line on stderr, and a closed, full or
broken stream is met the same way wherever it happens (README "Closed or full output").

Only the standard library is imported at load: _entry needs this module before anything
else is known to import (a broken install, a Ctrl-C during typer's import).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from portinspect.render.common import Screen

SCHEMA_VERSION = 1


# --- JSON ---------------------------------------------------------------------------------


def envelope(command: str | None, exit_code: int, payload: Mapping[str, Any], **extra: Any) -> str:
    """The one JSON document a command prints with --json (success or failure alike).

    One field per line, and one line per item of a list (a listener, an app): readable and
    greppable, and the C encoder does all the work. json.dumps(indent=...) falls back to the
    pure-Python encoder: 130 ms and +30 MB of peak memory for 5500 listeners, against 35 ms.
    extra: error (None or {"message": ...}) and warnings, after the payload.
    """

    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "command": command,
        "ok": exit_code == 0,
        "exit_code": exit_code,
    }
    doc.update(payload)
    doc.update(extra)
    encode = _encoder()
    fields = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(map(encode, value))
            fields.append(f"  {encode(key)}: [\n    {items}\n  ]")
        else:
            fields.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(fields) + "\n}"


def _encoder() -> Callable[[Any], str]:
    """json.dumps(ensure_ascii=False) of one value, on the C encoder built once.

    JSONEncoder.encode builds a C encoder for every call, and the envelope calls it once per
    listener; built once, the document of 1100 listeners takes 0.77x the time (paired runs,
    benchmarks/bench_json.py). No circular check: our documents are trees of fresh dicts and
    lists. Where the C encoder is missing (another Python), JSONEncoder does the same work.
    """
    import json
    from json import encoder

    fallback = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return fallback

    def unknown(value: object) -> object:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    try:
        chunks = make(
            None, unknown, encoder.encode_basestring, None, ": ", ", ", False, False, True
        )
    except TypeError:  # a C encoder with another signature
        return fallback
    return lambda value: "".join(chunks(value, 0))


# In JSON strings these go out as \uXXXX escapes, which every parser reads back as the same
# text (JSON itself escapes only C0): DEL and the C1 controls (a terminal may take U+009B for
# CSI), bidi controls, Unicode line separators, and lone surrogates (the bytes of a command
# line that is not UTF-8, which would make the document invalid UTF-8 or stop the write).
# As text: `re` compiles them the first time a document is not plain ASCII.
_JSON_UNSAFE = "[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
_NON_ASCII = "[^\x00-\x7f]"


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # JSON spells these as a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


# --- stdout -------------------------------------------------------------------------------


def write(text: str, *, as_json: bool = False) -> None:
    """One write to stdout that a hostile process title cannot break or turn into escapes.

    Raises OSError when stdout cannot take it: EBADF when it was closed before we started
    (`>&-`), ENOSPC (`>/dev/full`), EPIPE (BrokenPipeError) when its reader went away.
    """
    if sys.stdout is None:
        raise OSError(errno.EBADF, "it is closed")
    if as_json and (not text.isascii() or "\x7f" in text):
        text = re.sub(_JSON_UNSAFE, _json_escape, text)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        data = f"{text}\n".encode(encoding, getattr(sys.stdout, "errors", None) or "strict")
    except UnicodeEncodeError:  # stdout is not UTF-8 (LANG=en_US.ISO-8859-1...)
        if as_json:
            text = re.sub(_NON_ASCII, _json_escape, text)
        data = f"{text}\n".encode(encoding, "backslashreplace")
    sys.stdout.flush()  # whatever was written through the text layer goes first
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(data.decode(encoding))
        sys.stdout.flush()
        return
    # With PYTHONUNBUFFERED (common in containers) sys.stdout writes through to the raw
    # file, and a short write() is dropped without a word: a reader that goes away mid-way
    # (`| head -1`) would get exit 0 and a truncated document. So: every byte, or EPIPE.
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking stdout that is full
            time.sleep(0.001)
            continue
        view = view[written:]
    out.flush()


def unwritten(status: int, exc: OSError) -> int:
    """stdout closed, full or failing: the work is done (kill finished, free gave its leases
    back), the result is lost. Say so; a failure the command already had keeps its code,
    a success becomes exit 1, as `ls` and `rm -v` do when they cannot write."""
    reason = exc.strerror or str(exc)
    say(f"cannot write the result to stdout: {reason.lower()}")
    return int(status) if status != 0 else 1


# --- stderr -------------------------------------------------------------------------------


def _printable(text: str) -> str:
    if text.isascii() and text.isprintable():  # most messages: nothing to escape, no import
        return text
    try:
        from portinspect.safetext import clean
    except Exception:  # a broken install: what failed may be this very import
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return clean(text)


def say(text: str) -> None:
    """One line on stderr, cleaned: it may carry a path, a name or a value from outside.

    A stderr that is closed (`2>&-`: sys.stderr is None), full or whose reader went away
    (`kill 8000 2>&1 | head -1`) must not stop a command half-way: kill goes on escalating,
    and its result still goes to stdout.
    """
    say_raw(f"portinspect: {_printable(text)}")


def say_raw(text: str) -> None:
    """Text already made safe for a terminal (a server's line, a plan), as it is."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(f"{text}\n")
        stream.flush()


def fail(argv: Sequence[str], status: int, message: str, command: str | None = None) -> int:
    """A failure outside a command's body (parsing, start-up): one line on stderr, and with
    --json anywhere in argv one JSON document on stdout. Returns status."""
    text = _printable(" ".join(message.split()))
    say_raw(f"portinspect: {text}")
    if "--json" in argv:
        doc = envelope(command, status, {}, error={"message": text}, warnings=[])
        with contextlib.suppress(OSError, ValueError):
            write(doc, as_json=True)
    return status


# --- what the reader's screen can take ------------------------------------------------------


def screen(stream: TextIO | None, *, wide: bool = False, no_color: bool = False) -> Screen:
    """The width and colour for text going to `stream`.

    Width: on a terminal, COLUMNS when it is set to a number (it overrides the size the
    terminal reports, as for most tools), else the terminal's own width; none with --wide.
    A pipe or a file gets whole lines whatever COLUMNS says: a parent may export it without
    meaning to (GNU readline does, in any Python that imports it), and a script's input must
    not depend on that. Colour: only on a terminal, never with --no-color, NO_COLOR set to
    anything (no-color.org) or TERM=dumb.
    """
    from portinspect.render.common import Screen

    if not is_terminal(stream):
        return Screen()
    colour = not no_color and not os.environ.get("NO_COLOR") and not _dumb()
    return Screen(width=None if wide else _width(stream), color=colour)


def is_terminal(stream: TextIO | None) -> bool:
    """Whether the stream is a terminal (False when it is closed, or was at start)."""
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):  # closed
        return False


def _dumb() -> bool:
    return os.environ.get("TERM", "") == "dumb"


def _width(stream: TextIO | None) -> int | None:
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        size = os.get_terminal_size(stream.fileno()).columns if stream is not None else 0
    except (OSError, ValueError):
        return None
    return size if size > 0 else None
