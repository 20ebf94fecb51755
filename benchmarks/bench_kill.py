"""How long `kill_port` takes to free a port held by each real dev server.

    .venv/bin/python benchmarks/bench_kill.py [--runs 5] [--timeout 5] [--servers a,b]

Each run starts a fresh server with the test harness (tests/servers.py: its own session,
127.0.0.1, a kernel-picked port, stopped by pid afterwards), waits until it is fully up,
then times kill_port(port) from the call:

- first signal: the call until the first SIGTERM left (the scan, the plan, the checks);
- signal->free: the first signal until a scan found no listener on the port;
- call->free:   the call until the port was seen free (what a user waits for);
- watched:      of which the port was watched for a respawn once free (only when something
                could restart the app: a manager, a parent running other services);
- returned:     the call until kill_port returned (it also waits for the rest of the app
                tree to exit, and re-checks the port).

It prints a table and writes it between <!-- kill:start --> and <!-- kill:end --> in
benchmarks/RESULTS.md, leaving the rest of that file alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from portinspect import kill_port  # noqa: E402
from portinspect.models import KillOutcome  # noqa: E402
from tests.servers import RECIPES, running  # noqa: E402

SERVERS = (
    "http.server",
    "django",
    "uvicorn",
    "uvicorn-reload",
    "uvicorn-workers",
    "flask-debug",
    "gunicorn",
    "jupyter",
)
START, END = "<!-- kill:start -->", "<!-- kill:end -->"


@dataclass
class Run:
    first_signal: float
    signal_to_free: float
    call_to_free: float
    returned: float
    watched: float
    steps: int  # 1 = SIGTERM to the top was enough


def one_run(name: str, timeout: float) -> Run:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-kill-{name}-") as tmp,
        running(RECIPES[name], Path(tmp)) as server,
    ):
        started = time.monotonic()
        [outcome] = kill_port(server.port, timeout=timeout)
        returned = time.monotonic() - started
    return _run(name, outcome, returned)


def _run(name: str, outcome: KillOutcome, returned: float) -> Run:
    if outcome.freed_after is None or not outcome.steps:
        raise SystemExit(f"{name}: port not freed: {outcome.message}")
    first = outcome.steps[0].at
    return Run(
        first,
        outcome.freed_after - first,
        outcome.freed_after,
        returned,
        outcome.watched,
        len(outcome.steps),
    )


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ({max(values) * 1000:.0f})"


def table(results: dict[str, list[Run]]) -> str:
    header = (
        "| server | runs | first signal ms | signal->free ms | call->free ms | watched ms | "
        "returned ms | escalated |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {name} | {len(runs)} | {_ms([r.first_signal for r in runs])} "
        f"| {_ms([r.signal_to_free for r in runs])} | {_ms([r.call_to_free for r in runs])} "
        f"| {_ms([r.watched for r in runs])} | {_ms([r.returned for r in runs])} "
        f"| {sum(r.steps > 1 for r in runs)} |"
        for name, runs in results.items()
    ]
    return "\n".join([header, *rows])


def context() -> str:
    listeners = sum(
        1 for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
    )  # once, for the record
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, psutil {psutil.__version__}; "
        f"{len(psutil.pids())} processes and {listeners} TCP listeners on the machine"
    )


def section(results: dict[str, list[Run]], timeout: float) -> str:
    return "\n".join(
        [
            START,
            "## kill: from the call to a free port",
            "",
            f"`benchmarks/bench_kill.py`, {time.strftime('%Y-%m-%d')}: {context()}.",
            f"kill_port(port, timeout={timeout:g}) on a fresh server per run; median (max) in ms.",
            "first signal = scan + plan + permission check; signal->free = until a scan saw no",
            "listener; watched = the respawn watch once free (part of returned, not of",
            "call->free); returned = kill_port also waited for the rest of the app tree to exit.",
            "escalated = runs that needed more than SIGTERM to the app's top process.",
            "",
            table(results),
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    results: dict[str, list[Run]] = {}
    for name in args.servers.split(","):
        results[name] = []
        for _ in range(args.runs):
            results[name].append(one_run(name, args.timeout))
        print(f"{name}: done", file=sys.stderr, flush=True)
    text = section(results, args.timeout)
    print(text)
    if not args.no_write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
