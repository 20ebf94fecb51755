"""What a bare `portinspect` prints on a terminal: the commands, one line each."""

from __future__ import annotations

from collections.abc import Sequence

from portinspect.render.common import PIPE, Screen, paint, wrap


def overview(version: str, commands: Sequence[tuple[str, str]], screen: Screen = PIPE) -> str:
    """A few lines: what portinspect is, each command with its summary, where help is."""
    width = max(len(name) for name, _ in commands)
    head = f"portinspect {version}: what is on a port, and how do I get it back?"
    lines = [*wrap(head, screen.width), ""]
    for name, summary in commands:
        first = f"  {name:<{width}}  "
        wrapped = wrap(summary, screen.width, first=first, indent=" " * len(first))
        lines += [wrapped[0].replace(name, paint(name, "bold", screen), 1), *wrapped[1:]]
    lines += [
        "",
        *wrap(
            "`portinspect COMMAND --help` shows a command's options, `portinspect --help` the "
            "global ones.",
            screen.width,
        ),
    ]
    return "\n".join(lines)
