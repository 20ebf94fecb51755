"""How fast `portinspect run` sees a server ready, and frees its port once the tests end.

    .venv/bin/python benchmarks/bench_run.py [--runs 5] [--servers a,b] [--no-write]

Each run starts the real console script, `portinspect run --server NAME=COMMAND [--http /]
-- TEST`, on a fresh server of tests/servers.py (a project in a temporary directory, 127.0.0.1,
a port `run` leases itself), and times from the outside, on CLOCK_MONOTONIC (one clock for
every process on the machine):

- listen -> ready: from the moment the port's listening socket appears in the socket table
  (a thread here polls it every millisecond once `run` has said which port it leased) to
  the moment `run`'s "ready" line reaches us. Without --http that is run's own poll; with
  --http / it includes the server answering its first GET (Django builds its URLconf then).
- tests end -> free: from the test command's last instant (it writes CLOCK_MONOTONIC and
  calls _exit) to the moment `run`'s line "stopped, port N free" reaches us: noticing the
  exit, the teardown (SIGTERM to the top process, the rest, reaping), and the socket table
  showing no listener on the port.

It prints a table and writes it between <!-- run:start --> and <!-- run:end --> in
benchmarks/RESULTS.md, leaving the rest of that file alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from portinspect import scanner  # noqa: E402
from portinspect.models import Proto  # noqa: E402
from tests.runs import label, project, server_command  # noqa: E402
from tests.servers import RECIPES  # noqa: E402

SCRIPT = Path(sys.executable).parent / "portinspect"
START, END = "<!-- run:start -->", "<!-- run:end -->"
SERVERS = (*RECIPES, "npm")
TCP = frozenset({Proto.TCP})
# The test command: the instant it ends, on the shared monotonic clock, into the file named
# by its argument, then _exit (no interpreter teardown between that instant and the exit).
TEST = (
    "import os, sys, time; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600); "
    "os.write(fd, repr(time.monotonic()).encode()); os._exit(0)"
)


@dataclass
class Run:
    listen_to_ready: float
    end_to_free: float


def _watch_listen(port: int, seen: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        if port in scanner.listening_ports(TCP):
            seen["listen"] = time.monotonic()
            return
        time.sleep(0.001)


def one_run(name: str, http: bool, where: Path) -> Run:
    argv = [str(SCRIPT), "run", "--server", f"{label(name)}={server_command(name)}"]
    argv += ["--http", "/"] if http else []
    end_file = where / "tests-ended"
    argv += ["--", sys.executable, "-c", TEST, str(end_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(RECIPES[name].env(where) if name in RECIPES else {})
    proc = subprocess.Popen(
        argv, cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen: dict[str, float] = {}
    stop = threading.Event()
    watcher: threading.Thread | None = None
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.monotonic()
        if watcher is None and (match := re.search(r"starting on port (\d+)", line)):
            watcher = threading.Thread(target=_watch_listen, args=(int(match[1]), seen, stop))
            watcher.start()
        elif " ready at " in line:
            seen["ready"] = now
        elif "stopped, port" in line and " free " in line:
            seen["free"] = now
    proc.wait()
    stop.set()
    if watcher is not None:
        watcher.join()
    if proc.returncode != 0 or not {"listen", "ready", "free"} <= set(seen):
        raise SystemExit(f"{name}: run failed (exit {proc.returncode}, saw {sorted(seen)})")
    ended = float(end_file.read_text())
    return Run(seen["ready"] - seen["listen"], seen["free"] - ended)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ({max(values) * 1000:.1f})"


def table(results: dict[str, dict[bool, list[Run]]]) -> str:
    header = (
        "| server | runs | listen->ready ms | listen->ready, --http / ms | tests end->free ms |\n"
        "|---|---|---|---|---|"
    )
    rows = []
    for name, by_http in results.items():
        plain, http = by_http[False], by_http[True]
        free = [r.end_to_free for r in plain + http]
        rows.append(
            f"| {name} | {len(plain)}+{len(http)} | {_ms([r.listen_to_ready for r in plain])} "
            f"| {_ms([r.listen_to_ready for r in http])} | {_ms(free)} |"
        )
    return "\n".join([header, *rows])


def context() -> str:
    procs = len([p for p in os.listdir("/proc") if p.isdigit()])
    listeners = len(scanner.listening_ports(TCP))
    load = Path("/proc/loadavg").read_text().split()[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {procs} processes and {listeners} TCP "
        f"listening ports on the machine, load average {load} at the end"
    )


def section(results: dict[str, dict[bool, list[Run]]]) -> str:
    return "\n".join(
        [
            START,
            "## run: listen -> ready, and tests end -> port verified free",
            "",
            f"`benchmarks/bench_run.py`, {time.strftime('%Y-%m-%d')}: {context()}.",
            "`portinspect run --server NAME=COMMAND [--http /] -- TEST`, a fresh server per run;",
            "median (max) in ms, timed from outside on CLOCK_MONOTONIC. listen = the socket",
            "appears in the socket table (1 ms poll); ready = run's line reaches us. end->free:",
            "from the test command's last instant to run's line saying the port is free",
            "(teardown: SIGTERM to the top process, the rest, reaping, then the socket table).",
            "",
            table(results),
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if not SCRIPT.exists():
        raise SystemExit(f"{SCRIPT} is missing: run `make install` first")
    results: dict[str, dict[bool, list[Run]]] = {}
    for name in args.servers.split(","):
        if name == "npm" and not shutil.which("npm"):
            print("npm: not installed, skipped", file=sys.stderr)
            continue
        results[name] = {False: [], True: []}
        for _ in range(args.runs):
            for http in (False, True):
                with tempfile.TemporaryDirectory(prefix=f"bench-run-{name}-") as tmp:
                    where = project(Path(tmp))
                    results[name][http].append(one_run(name, http, where))
        print(f"{name}: done", file=sys.stderr, flush=True)
    text = section(results)
    print(text)
    if not args.no_write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
