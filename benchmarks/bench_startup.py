"""Start-up: the whole `portinspect` process against the interpreter and typer, paired.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 21] [--baseline DIR] [--no-write]

Start-up is part of the interface: `PORT=$(portinspect free)` in a script and `portinspect
list` at a prompt pay it every time. The yardsticks run in the same rounds as portinspect,
in turn (A B C ... A B C ...), so a load that drifts hits them all alike:

    python -c pass              the interpreter
    python -c "import typer"    the framework every command needs: the floor we build on
    typer_min.py --json         a minimal typer app with one option (pydantic included)

and the goal is portinspect's own cost over `import typer`: the median over rounds of
(command - import typer) taken pair by pair within each round. `free --no-lease` and
`list --json` are what scripts run most; `--version` is the CLI's floor. With --baseline
DIR (a checkout of an older tree) the same commands run from it too, through the same
entry point (`python -c` that puts DIR first on sys.path), against ours run the same way.

Every tree is byte-compiled first and PYTHONDONTWRITEBYTECODE is removed for the children,
as for an installed CLI. stdout and stderr go to /dev/null. The machine's load average is
printed: on a shared machine read the medians and the paired deltas, not single runs.
It prints a table and writes it between <!-- startup:start --> and <!-- startup:end --> in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from results import write_section
from run import spawn_timed

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
START, END = "<!-- startup:start -->", "<!-- startup:end -->"
PY = sys.executable
SCRIPT = str(Path(PY).parent / "portinspect")
FLOOR = "import_typer"


@dataclass
class Command:
    key: str
    argv: list[str]
    label: str
    times: list[float] = field(default_factory=list)  # ms, one per round


def entry(tree: Path, *args: str) -> list[str]:
    """The CLI of `tree` through its own entry point, whatever is installed."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        "from portinspect._entry import main; main()"
    )
    return [PY, "-c", code, *args]


def commands(baseline: Path | None) -> list[Command]:
    cmds = [
        Command("py_pass", [PY, "-c", "pass"], "python -c pass"),
        Command(FLOOR, [PY, "-c", "import typer"], 'python -c "import typer"'),
        Command("typer_min", [PY, str(BENCH / "typer_min.py"), "--json"], "minimal typer app"),
        Command("version", [SCRIPT, "--version"], "portinspect --version"),
        Command("free", [SCRIPT, "free", "--no-lease"], "portinspect free --no-lease"),
        Command("list_json", [SCRIPT, "list", "--json"], "portinspect list --json"),
        Command("list", [SCRIPT, "list"], "portinspect list (table, in a pipe)"),
    ]
    if baseline is not None:
        for key, args in (("free", ("free", "--no-lease")), ("list_json", ("list", "--json"))):
            cmds.append(Command(f"ours_{key}", entry(ROOT, *args), f"this tree: {' '.join(args)}"))
            cmds.append(
                Command(f"base_{key}", entry(baseline, *args), f"baseline: {' '.join(args)}")
            )
    return cmds


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTINSPECT_")}
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "COLUMNS"):
        env.pop(name, None)
    return env


def measure(cmds: list[Command], rounds: int) -> None:
    env = child_env()
    for r in range(rounds + 1):  # round 0 warms the page cache
        shift = r % len(cmds)
        for cmd in cmds[shift:] + cmds[:shift]:
            wall, _rss, code = spawn_timed(cmd.argv, env)
            if code != 0:
                raise SystemExit(f"{cmd.label} exited {code}")
            if r:
                cmd.times.append(wall)


def paired(cmd: Command, floor: Command) -> float:
    """The median, over rounds, of cmd minus the floor in the same round."""
    return statistics.median(a - b for a, b in zip(cmd.times, floor.times, strict=True))


def report(cmds: list[Command], rounds: int, loads: tuple[float, float]) -> str:
    by_key = {c.key: c for c in cmds}
    floor = by_key[FLOOR]
    lines = [
        "## start-up: the whole process against python and typer",
        "",
        f"`benchmarks/bench_startup.py --rounds {rounds}`, {datetime.date.today()}: Linux "
        f"{platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end. Median "
        "[min..max] wall ms of whole processes, output to /dev/null, every command once per "
        "round in turn; `over typer`: the median of (command - `import typer`) within each "
        "round.",
        "",
        "| command | ms | over typer |",
        "|---|---|---|",
    ]
    for cmd in cmds:
        med = statistics.median(cmd.times)
        over = paired(cmd, floor)
        lines.append(
            f"| `{cmd.label}` | **{med:.1f}** [{min(cmd.times):.1f}..{max(cmd.times):.1f}] "
            f"| {over:+.1f} |"
        )
    if "base_free" in by_key:
        lines += ["", "This tree against the baseline, pair by pair (median of ours - theirs):", ""]
        for key in ("free", "list_json"):
            ours, base = by_key[f"ours_{key}"], by_key[f"base_{key}"]
            lines.append(f"- {key}: {paired(ours, base):+.1f} ms")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--baseline", type=Path, help="an older tree to compare against")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    for tree in filter(None, (ROOT, args.baseline)):
        compileall.compile_dir(tree / "portinspect", quiet=1)
    compileall.compile_dir(BENCH, quiet=1, maxlevels=0)
    cmds = commands(args.baseline)
    start = os.getloadavg()[0]
    measure(cmds, args.rounds)
    text = report(cmds, args.rounds, (start, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        write_section(f"{START}\n{text}{END}", START, END)


if __name__ == "__main__":
    main()
