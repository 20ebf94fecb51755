"""Text from other processes made safe to print: one line, no control characters.

Command lines, process names, cwds, paths from the environment and lease files are chosen by
whoever runs them. Written raw they could move the cursor, retitle or clear the screen,
reorder text (bidi overrides) or break a line in two. Library error messages escape them
too, so this sits at the bottom of the house, with no imports: the scanner, the lease store
and the free-port search use it without loading the renderers.
"""

from __future__ import annotations

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# Bidi overrides and isolates reorder what follows them on screen; show them escaped.
_CONTROL.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})  # C1 controls (CSI = 0x9b)
# The marks that reorder neutral text (ALM, LRM, RLM), and the Unicode line and paragraph
# separators, which str.splitlines() and some terminals take for a new line.
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)})
# A byte that was not UTF-8 in a command line or cwd arrives as a lone surrogate
# (surrogateescape): written raw, 0x9b alone is CSI to a terminal in a legacy encoding.
_CONTROL.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})
_CONTROL.update({c: f"\\u{c:04x}" for c in (*range(0xD800, 0xDC80), *range(0xDD00, 0xE000))})

ELLIPSIS = "…"


def clean(text: str | None, width: int | None = None) -> str:
    """One printable line: control characters escaped, optionally cut to width."""
    if not text:
        return ""
    out = text.translate(_CONTROL)
    if width is not None and len(out) > width:
        out = out[: width - 1] + ELLIPSIS
    return out
