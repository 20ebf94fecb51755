"""`list --json`'s document: the time from classified listeners to bytes on stdout, in-process.

    .venv/bin/python benchmarks/bench_json.py [--listeners 1100] [--rounds 31] [--baseline DIR]

The listeners are made up the way the M load of benchmarks/loadgen.py makes them (1100
sockets, one in three IPv6, each with a holder whose command line has 16 arguments, one in
five shared with a pre-fork child), so no load has to run. Timed, each the median of rounds:
Listener.to_dict() for every listener, the envelope (one line per listener), and the write to
/dev/null through the CLI's writer. With --baseline DIR (an older tree) the same steps run in a
child that imports DIR's portinspect, so the two are compared on the same machine, one after
the other. It prints a table and writes it between <!-- json:start --> and <!-- json:end -->
in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from results import write_section

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- json:start -->", "<!-- json:end -->"

CHILD = """
import json, os, statistics, sys, time
from portinspect.models import Family, Holder, Listener, PortRange, ProcessInfo, Proto
try:
    from portinspect._output import envelope, write
except ImportError:  # before issue 14: render.envelope and cli._write
    from portinspect.render import envelope
    from portinspect.cli import _write as write

n, rounds = int(sys.argv[1]), int(sys.argv[2])
argv = ("/srv/bench/.venv/bin/python", "benchmarks/loadgen.py", "--listen", "1000", "--udp", "100",
        "--procs", "200", "--established", "5000", "--idle-procs", "20", "--idle-fds", "500",
        "--hold-seconds", "900", "--state-file", "/tmp/load.json")
listeners = []
for i in range(n):
    owner = ProcessInfo(20000 + i % 200, 19999, f"lg-w{i % 200}", "root", argv, "/srv/bench",
                        1_700_000_000.0)
    holders = (Holder(owner, "server"),)
    if i % 5 == 0:
        holders += (Holder(ProcessInfo(30000 + i, owner.pid, "lg-c", "root", argv), "worker"),)
    v6 = i % 3 == 2
    listeners.append(Listener(Proto.TCP if i < 1000 else Proto.UDP,
                              Family.IPV6 if v6 else Family.IPV4, "::1" if v6 else "127.0.0.1",
                              16000 + i, PortRange.REGISTERED, False, None, False, holders,
                              uid=0, user="root", app_pid=owner.pid))
sink = open(os.devnull, "w")
steps = {"to_dict": [], "envelope": [], "write": [], "total": []}
for _ in range(rounds + 1):
    t0 = time.perf_counter()
    rows = [li.to_dict() for li in listeners]
    t1 = time.perf_counter()
    doc = envelope("list", 0, {"listeners": rows}, error=None, warnings=[])
    t2 = time.perf_counter()
    sys.stdout, real = sink, sys.stdout
    try:
        write(doc, as_json=True)
    finally:
        sys.stdout = real
    t3 = time.perf_counter()
    for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
        steps[key].append(value * 1000)
medians = {k: statistics.median(v[1:]) for k, v in steps.items()}  # the first warms up
print(json.dumps({"bytes": len(doc.encode()), **medians}))
"""


def run(tree: Path, listeners: int, rounds: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(listeners), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tree,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listeners", type=int, default=1100)
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per child")
    parser.add_argument("--children", type=int, default=7, help="children per tree, in turn")
    parser.add_argument("--baseline", type=Path, help="an older tree to compare against")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    trees = {"this tree": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    load = os.getloadavg()[0]
    # The trees in turn, a child each (A B A B ...), so a load that drifts hits both alike;
    # each child's medians, then the median over children, and the ratio pair by pair.
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.children):
        for name, tree in trees.items():
            runs[name].append(run(tree, args.listeners, args.rounds))
    results = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0]}
        for name, found in runs.items()
    }
    lines = [
        "## list --json: the document, from listeners to stdout",
        "",
        f"`benchmarks/bench_json.py`, {datetime.date.today()}: {args.listeners} listeners shaped "
        f"like the M load's, in-process, median ms over {args.children} children of "
        f"{args.rounds} rounds each, the trees in turn (load average "
        f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| tree | bytes | to_dict | envelope | write | total |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['bytes']:.0f} | {r['to_dict']:.2f} | {r['envelope']:.2f} | "
            f"{r['write']:.2f} | **{r['total']:.2f}** |"
        )
    if "baseline" in runs:
        pairs = zip(runs["this tree"], runs["baseline"], strict=True)
        ratio = statistics.median(ours["total"] / base["total"] for ours, base in pairs)
        lines += ["", f"This tree / the baseline, child by child (median): **{ratio:.2f}x**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(f"{START}\n{text}{END}", START, END)


if __name__ == "__main__":
    main()
