"""benchmarks/RESULTS.md: each benchmark owns one section between its two markers."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(
    block: str, start: str, end: str, *, heading: str = "", path: Path = RESULTS
) -> None:
    """Put `block` (which holds both markers) where the old section was, or, the first time,
    at the end of the file after `heading`."""
    old = path.read_text("utf-8") if path.exists() else "# Benchmark results\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + heading + block + "\n"
    path.write_text(new, "utf-8")
