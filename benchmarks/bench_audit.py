"""What `audit` costs, and what its verdict adds to `who`: whole processes, round-robin, medians.

    .venv/bin/python benchmarks/bench_audit.py [--scales idle,M] [--rounds N] [--before DIR]
                                               [--no-write]

Same method and loads as benchmarks/run.py (loadgen.py on loopback; posix_spawn + wait4; one
warm-up round). Commands: `audit --json` (every listener, every process's command line for
tunnel clients, the interface addresses), `who PORT` for a middle worker's port, and with
--before DIR (an older tree, e.g. `git archive main | tar -x -C DIR`) the same `who` from that
tree, so the price of the verdict is measured in the same rounds. `list --json` is there as
the yardstick. Writes its table between <!-- audit:start --> and <!-- audit:end --> in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_section
from run import (
    PY,
    ROOT,
    SCRIPT,
    Command,
    child_env,
    load,
    measure,
    process_count,
)

START, END = "<!-- audit:start -->", "<!-- audit:end -->"
ROUNDS = {"idle": 15, "S": 11, "M": 9, "L": 7}


def commands(who_port: int | None, before: Path | None) -> list[Command]:
    cmds = [
        Command("list_json", [str(SCRIPT), "list", "--json"], "portinspect list --json"),
        Command(
            "audit_json",
            [str(SCRIPT), "audit", "--json"],
            "portinspect audit --json",
            ok_codes=(0, 9),
        ),
    ]
    if who_port is not None:
        cmds.append(Command("who", [str(SCRIPT), "who", str(who_port)], "portinspect who PORT"))
        if before is not None:
            code = (
                f"import sys; sys.path.insert(0, {str(before)!r}); import runpy; "
                "runpy.run_module('portinspect', run_name='__main__')"
            )
            cmds.append(
                Command(
                    "before_who",
                    [str(PY), "-c", code, "who", str(who_port)],
                    f"portinspect who PORT, code from {before}",
                )
            )
    return cmds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scales", default="idle,M", help="comma-separated: idle,S,M,L")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--before", type=Path, default=None, help="an older tree to time `who` from")
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = p.parse_args()
    compileall.compile_dir(ROOT / "portinspect", quiet=1)
    if args.before is not None:
        compileall.compile_dir(args.before / "portinspect", quiet=1)
    load_avg = Path("/proc/loadavg").read_text().split()[0]
    lines = [
        f"Median [min..max] wall ms, {platform.node()}, {datetime.date.today()}, load average "
        f"{load_avg} at the start (other work on the machine inflates every row alike); "
        "round-robin after one warm-up round.",
        "",
        "| scale | command | median | min..max | failures |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
        with load(scale) as state:
            who_port = None
            if state is not None:
                holders = state["holders"]
                assert isinstance(holders, list)
                middle = holders[len(holders) // 2]
                who_port = middle["tcp"][0][1] if middle["tcp"] else None
            cmds = commands(who_port, args.before)
            measure(cmds, args.rounds or ROUNDS[scale], child_env())
            note = f"{scale} ({process_count()} processes)"
            for cmd in cmds:
                med, low, high = cmd.stats()
                lines.append(
                    f"| {note} | {cmd.label} | {med:.0f} | {low:.0f}..{high:.0f} | {cmd.failures} |"
                )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        block = f"{START}\n{table}\n{END}"
        write_section(block, START, END, heading="## audit and who's verdict\n\n")


if __name__ == "__main__":
    main()
