"""Whole-process timings of `portinspect list --json` next to ss, lsof and a psutil script.

    .venv/bin/python benchmarks/run.py [--scales idle,S,M,L] [--rounds N] [--no-write]

For each scale it starts benchmarks/loadgen.py (loopback only, stopped by pid afterwards),
then runs every command round-robin (A B C ... A B C ...) after one warm-up round, so a
drifting background load hits all of them alike. Each command is started with posix_spawn
and reaped with wait4: wall time from spawn to reap, plus the child's maxrss. stdout and
stderr go to /dev/null. PYTHONDONTWRITEBYTECODE is removed for the children and the code is
byte-compiled first, as for an installed CLI.

In the same run it checks that `portinspect list --json` reports the same listeners with the
same owner pids as `ss -Hltunp` (sockets that change between two ss calls are left out: other
programs on the machine open and close sockets while we measure).

Scales (one socket in three is IPv6; see loadgen.py):
  idle  no load: start-up against a minimal typer app (benchmarks/typer_min.py)
  S     20 listeners, 5 UDP, 10 processes
  M     1000 listeners, 100 UDP, 5000 established, 200 socket processes, 20 idle x 500 fds
  L     5000 listeners, 500 UDP, 30000 established, 1000 socket processes, 50 idle x 2000 fds

It prints a table of medians and ratios and writes it between <!-- list:start --> and
<!-- list:end --> in benchmarks/RESULTS.md, leaving the rest of that file alone.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from results import RESULTS, write_section

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
START, END = "<!-- list:start -->", "<!-- list:end -->"
PY = Path(sys.executable)
SCRIPT = PY.parent / "portinspect"

LOADS = {
    "idle": None,
    "S": "--listen 20 --udp 5 --procs 10",
    "M": "--listen 1000 --udp 100 --procs 200 --established 5000 --idle-procs 20 --idle-fds 500",
    "L": "--listen 5000 --udp 500 --procs 1000 --established 30000 --idle-procs 50 --idle-fds 2000",
}
ROUNDS = {"idle": 15, "S": 11, "M": 9, "L": 7}

# What the issue asks for, as (numerator, denominator, limit) per scale.
GOALS = {
    "idle": [("list", "typer_min", 1.5), ("free", "typer_min", 1.3)],
    "M": [("list_json", "ss_ltnp", 1.0), ("list_json", "lsof", 0.5)],
    "L": [("list_json", "ss_ltnp", 0.5), ("list_json", "lsof", 0.2)],
}
RSS_LIMIT_MB = 80

PSUTIL_BASELINE = """\
import socket, psutil
rows = []
for c in psutil.net_connections("inet"):
    if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr):
        name = user = None
        if c.pid:
            try:
                p = psutil.Process(c.pid)
                name, user = p.name(), p.username()
            except psutil.Error:
                pass
        rows.append((c.laddr.ip, c.laddr.port, c.pid, name, user))
for row in sorted(rows, key=str):
    print(*row)
"""


# What `portinspect list --json` does once typer has parsed the command line: the cost of
# the library and the interpreter alone, to show what the CLI layer adds.
NO_TYPER = """\
import sys
from portinspect import api, render
result = api.scan_result()
rows = [li.to_dict() for li in result.listeners]
sys.stdout.write(render.envelope("list", 0, {"listeners": rows}, error=None, warnings=[]) + "\\n")
"""


@dataclass
class Command:
    key: str
    argv: list[str]
    label: str
    times: list[float] = field(default_factory=list)  # ms
    rss: list[int] = field(default_factory=list)  # KiB
    ok_codes: tuple[int, ...] = (0,)
    failures: int = 0

    def stats(self) -> tuple[float, float, float]:
        return statistics.median(self.times), min(self.times), max(self.times)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTINSPECT_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def spawn_timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(wall ms, maxrss KiB, exit status) of one run, output to /dev/null."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter_ns() - start) / 1e6
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def commands(
    scale: str, who_port: int | None, has_free: bool, before: Path | None
) -> list[Command]:
    py = str(PY)
    cmds = [
        Command("list_json", [str(SCRIPT), "list", "--json"], "portinspect list --json"),
        Command("list", [str(SCRIPT), "list"], "portinspect list"),
    ]
    if before is not None:
        # Through the old tree's own __main__.py: its console-script entry point may differ.
        code = (
            f"import sys; sys.path.insert(0, {str(before)!r}); import runpy; "
            "runpy.run_module('portinspect', run_name='__main__')"
        )
        cmds.append(
            Command(
                "before_list_json",
                [py, "-c", code, "list", "--json"],
                f"portinspect list --json, code from {before}",
            )
        )
    if who_port is not None:
        cmds.append(
            Command("who", [str(SCRIPT), "who", str(who_port)], "portinspect who PORT (see below)")
        )
    if has_free:
        cmds.append(
            Command("free", [str(SCRIPT), "free", "--near", "8000"], "portinspect free --near 8000")
        )
    ss = shutil.which("ss")
    if ss:
        cmds += [
            Command("ss_ltnp", [ss, "-ltnp"], "ss -ltnp"),
            Command("ss_ltunp", [ss, "-ltunp"], "ss -ltunp"),
        ]
    lsof = shutil.which("lsof")
    if lsof:
        cmds.append(
            Command(
                "lsof",
                [lsof, "-iTCP", "-sTCP:LISTEN", "-nP"],
                "lsof -iTCP -sTCP:LISTEN -nP",
                ok_codes=(0, 1),  # 1: nothing matched
            )
        )
    cmds += [
        Command(
            "psutil", [py, "-c", PSUTIL_BASELINE], "python: psutil.net_connections + name/user"
        ),
        Command("no_typer", [py, "-c", NO_TYPER], "python: list --json's library calls, no typer"),
        Command(
            "typer_min", [py, str(BENCH / "typer_min.py"), "--json"], "minimal typer app, 1 option"
        ),
    ]
    if scale == "idle":
        cmds += [
            Command(
                "typer_bare",
                [py, str(BENCH / "typer_min.py"), "--bare"],
                "minimal typer app, no option",
            ),
            Command("py_pass", [py, "-c", "pass"], "python -c pass"),
        ]
    return cmds


def measure(cmds: list[Command], rounds: int, env: dict[str, str]) -> None:
    for r in range(rounds + 1):  # round 0 warms the page cache and the dentry cache
        shift = r % len(cmds)
        for cmd in cmds[shift:] + cmds[:shift]:
            wall, rss, code = spawn_timed(cmd.argv, env)
            if r == 0:
                continue
            cmd.times.append(wall)
            cmd.rss.append(rss)
            if code not in cmd.ok_codes:
                cmd.failures += 1


# --- the load --------------------------------------------------------------------------------


@contextlib.contextmanager
def load(scale: str) -> Iterator[dict[str, object] | None]:
    args = LOADS[scale]
    if args is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        state_file = Path(tmp, "state.json")
        argv = [str(PY), str(BENCH / "loadgen.py"), *args.split(), "--hold-seconds", "900"]
        argv += ["--state-file", str(state_file)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"loadgen failed to start: {line!r}")
            yield json.loads(state_file.read_text())
        finally:
            proc.terminate()  # loadgen SIGKILLs each of its children by pid and reaps them
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def open_fds() -> int:
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                total += len(os.listdir(f"/proc/{name}/fd"))
    return total


def process_count() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


# --- correctness: the same listeners and owners as ss -ltunp --------------------------------


def _host(address: str) -> str:
    host = address.split("%", 1)[0].strip("[]")
    return "*" if host in ("*", "0.0.0.0", "::") else host


def ss_listeners() -> Counter[tuple[str, str, int, tuple[int, ...]]]:
    out = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout
    found: Counter[tuple[str, str, int, tuple[int, ...]]] = Counter()
    for line in out.splitlines():
        fields = line.split(None, 6)
        netid, state, local = fields[0], fields[1], fields[4]
        if (netid, state) not in (("tcp", "LISTEN"), ("udp", "UNCONN")):
            continue  # newer kernels dump bound-only TCP sockets too when asked for CLOSE
        host, _, port = local.rpartition(":")
        users = fields[6] if len(fields) > 6 else ""
        pids = tuple(sorted({int(p.split(",")[0]) for p in users.split("pid=")[1:]}))
        found[(netid, _host(host), int(port), pids)] += 1
    return found


def portinspect_listeners(env: dict[str, str]) -> Counter[tuple[str, str, int, tuple[int, ...]]]:
    out = subprocess.run(
        [str(SCRIPT), "list", "--json"], capture_output=True, text=True, env=env, check=False
    ).stdout
    found: Counter[tuple[str, str, int, tuple[int, ...]]] = Counter()
    for li in json.loads(out)["listeners"]:
        pids = tuple(sorted(h["pid"] for h in li["holders"]))
        found[(li["proto"], _host(li["address"]), li["port"], pids)] += 1
    return found


def check_same_as_ss(env: dict[str, str], load_ports: set[int]) -> dict[str, object]:
    before = ss_listeners()
    ours = portinspect_listeners(env)
    after = ss_listeners()
    # Other programs (test suites, dev servers) open and close sockets while we run: compare
    # what ss saw identically before and after us, and everything of the load.
    stable = before & after
    stable_sockets = {key[:3] for key in stable}
    missing = stable - ours
    extra = Counter(
        {
            key: n
            for key, n in (ours - stable).items()
            if key[:3] in stable_sockets or key[2] in load_ports
        }
    )
    load_seen = sum(n for key, n in ours.items() if key[2] in load_ports)
    return {
        "compared": sum(stable.values()),
        "load_listeners": load_seen,
        "missing": sorted(missing.elements())[:10],
        "extra": sorted(extra.elements())[:10],
        "ok": not missing and not extra,
    }


# --- report --------------------------------------------------------------------------------


@dataclass
class ScaleResult:
    scale: str
    cmds: list[Command]
    facts: dict[str, object]
    check: dict[str, object] | None

    def get(self, key: str) -> Command | None:
        return next((c for c in self.cmds if c.key == key), None)

    def ratio(self, num: str, den: str) -> float | None:
        a, b = self.get(num), self.get(den)
        if a is None or b is None or not a.times or not b.times or a.failures or b.failures:
            return None  # a failed run's time says nothing
        return statistics.median(a.times) / statistics.median(b.times)


def versions() -> str:
    from importlib import metadata

    parts = [f"Python {platform.python_version()}"]
    for dist in ("psutil", "typer", "pydantic", "tabulate"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{dist} {metadata.version(dist)}")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        parts.append(subprocess.run(["ss", "-V"], capture_output=True, text=True).stdout.strip())
    lsof = shutil.which("lsof")
    if lsof:
        out = subprocess.run([lsof, "-v"], capture_output=True, text=True).stderr
        rev = next((x.split(":")[1].strip() for x in out.splitlines() if "revision" in x), "?")
        parts.append(f"lsof {rev}")
    else:
        parts.append("lsof not installed: its column is empty (apt-get install -y lsof)")
    return ", ".join(parts)


def fmt_ms(cmd: Command) -> str:
    med, lo, hi = cmd.stats()
    failed = f" ({cmd.failures} runs FAILED)" if cmd.failures else ""
    return f"**{med:.0f}** [{lo:.0f}..{hi:.0f}]{failed}"


def render(results: list[ScaleResult], rounds_note: str) -> str:
    lines = [
        "## list: whole-process time against ss, lsof and psutil",
        "",
        f"`make bench` (benchmarks/run.py), {datetime.date.today()}: Linux {platform.release()}, "
        f"{os.cpu_count()} CPUs, {versions()}.",
        f"Median [min..max] wall ms of whole processes (start-up included), {rounds_note}, "
        "round-robin after one warm-up round. Loads from benchmarks/loadgen.py on loopback.",
        "",
    ]
    keys: list[tuple[str, str]] = []
    for res in results:
        for c in res.cmds:
            if (c.key, c.label) not in keys:
                keys.append((c.key, c.label))
    header = "| command | " + " | ".join(r.scale for r in results) + " |"
    lines += [header, "|---|" + "---|" * len(results)]
    for key, label in keys:
        row = [f"`{label}`"]
        for res in results:
            cmd = res.get(key)
            row.append(fmt_ms(cmd) if cmd and cmd.times else "-")
        lines.append("| " + " | ".join(row) + " |")
    facts = ["processes", "open fds", "listeners (TCP+UDP)", "established"]
    facts.append("load avg (1 min) at start")
    for fact in facts:
        lines.append(
            f"| _{fact}_ | " + " | ".join(str(r.facts.get(fact, "-")) for r in results) + " |"
        )
    lines += [
        "",
        "portinspect's /proc walk runs on one thread per CPU (up to 4) where ss and lsof use one:",
        "when other work keeps the machine busy (load average above), its M and L times rise",
        "more than theirs. `who` stops its walk at the port's holders (the middle worker's port:",
        "about half the processes come before it).",
    ]
    lines += ["", "Ratios of medians (lower is faster):", ""]
    ratio_rows = [
        ("list_json", "ss_ltnp"),
        ("list_json", "ss_ltunp"),
        ("list_json", "lsof"),
        ("list_json", "psutil"),
        ("list", "typer_min"),
        ("free", "typer_min"),
        ("who", "list_json"),
        ("list_json", "before_list_json"),
        ("no_typer", "ss_ltnp"),
        ("no_typer", "lsof"),
    ]
    lines += [header.replace("command", "ratio"), "|---|" + "---|" * len(results)]
    for num, den in ratio_rows:
        cells = []
        for res in results:
            r = res.ratio(num, den)
            cells.append(f"{r:.2f}x" if r is not None else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {num} / {den} | " + " | ".join(cells) + " |")
    lines += ["", "Goals (issue 6):", ""]
    for res in results:
        for num, den, limit in GOALS.get(res.scale, []):
            r = res.ratio(num, den)
            failed = [c.label for c in (res.get(num), res.get(den)) if c and c.failures]
            if failed:
                verdict = f"no verdict: runs of {', '.join(failed)} failed"
            elif r is None:
                verdict = "not measured"
            else:
                verdict = f"{r:.2f}x, goal <= {limit}x: {'met' if r <= limit else 'NOT met'}"
            lines.append(f"- {res.scale}: {num} / {den}: {verdict}")
        big = res.get("list_json")
        if res.scale == "L" and big and big.rss:
            mb = max(big.rss) / 1024
            ok = "met" if mb < RSS_LIMIT_MB else "NOT met"
            med = statistics.median(big.rss) / 1024
            lines.append(
                f"- L: portinspect list --json RSS {mb:.0f} MB at most (median {med:.0f} MB), "
                f"goal < {RSS_LIMIT_MB} MB: {ok}"
            )
    lines += ["", "Same listeners and owner pids as `ss -Hltunp` (checked in the same run):", ""]
    for res in results:
        if res.check is None:
            continue
        c = res.check
        verdict = (
            "identical" if c["ok"] else f"DIFFERENT: missing {c['missing']} extra {c['extra']}"
        )
        lines.append(
            f"- {res.scale}: {c['compared']} listeners compared "
            f"({c['load_listeners']} of the load): {verdict}"
        )
    for res in results:
        who = res.get("who")
        if who is not None:
            lines.append(f"- {res.scale}: `who` asked for {res.facts.get('who port')}.")
    return "\n".join(lines)


def has_command(name: str, env: dict[str, str]) -> bool:
    proc = subprocess.run([str(SCRIPT), name, "--help"], capture_output=True, env=env, check=False)
    return proc.returncode == 0


def run_scale(
    scale: str, rounds: int, env: dict[str, str], has_free: bool, before: Path | None
) -> ScaleResult:
    started = time.monotonic()
    with load(scale) as state:
        facts: dict[str, object] = {"processes": process_count(), "open fds": open_fds()}
        facts["load avg (1 min) at start"] = Path("/proc/loadavg").read_text().split()[0]
        who_port = None
        load_ports: set[int] = set()
        if state is not None:
            holders = state["holders"]
            assert isinstance(holders, list)
            for h in holders:
                load_ports.update(p for _, p in h["tcp"] + h["udp"])
            # The middle worker's first listener: a walk that stops at its holder reads
            # about half of the processes.
            middle = holders[len(holders) // 2]
            who_port = middle["tcp"][0][1] if middle["tcp"] else None
            facts["listeners (TCP+UDP)"] = f"{state['listen']}+{state['udp']}"
            facts["established"] = state["established"]
            facts["who port"] = f"port {who_port}, held by pid {middle['pids'][0]} (middle worker)"
        cmds = commands(scale, who_port, has_free, before)
        check = check_same_as_ss(env, load_ports) if scale != "idle" else None
        measure(cmds, rounds, env)
    elapsed = time.monotonic() - started
    print(f"  {scale}: {elapsed:.0f} s", file=sys.stderr)
    return ScaleResult(scale, cmds, facts, check)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scales", default="idle,S,M,L", help="comma-separated: idle,S,M,L")
    p.add_argument("--rounds", type=int, default=None, help="runs per command (default per scale)")
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    p.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also time `list --json` with the portinspect package found in this directory\n"
        "(e.g. `git worktree add /tmp/old <commit>`), in the same rounds",
    )
    args = p.parse_args()
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    unknown = [s for s in scales if s not in LOADS]
    if unknown:
        p.error(f"unknown scale(s) {unknown}; choose from {list(LOADS)}")
    if not sys.platform.startswith("linux"):
        p.error("benchmarks/run.py measures the Linux scanner against ss: Linux only")
    if not SCRIPT.exists():
        p.error(f"{SCRIPT} is missing: run `make install` first")
    compileall.compile_dir(ROOT / "portinspect", quiet=1)
    compileall.compile_file(BENCH / "typer_min.py", quiet=1)
    env = child_env()
    has_free = has_command("free", env)
    if not shutil.which("lsof"):
        print(
            "lsof is not installed: its rows stay empty (apt-get install -y lsof)", file=sys.stderr
        )
    results = []
    for scale in scales:
        rounds = args.rounds or ROUNDS[scale]
        results.append(run_scale(scale, rounds, env, has_free, args.before))
    counts = ", ".join(f"{r.scale} n={len(r.cmds[0].times)}" for r in results)
    text = render(results, counts)
    print(text)
    failures = [f"{c.label} at {r.scale}" for r in results for c in r.cmds if c.failures]
    if failures:
        print(f"\nsome runs failed: {failures}", file=sys.stderr)
    if not args.no_write:
        write_section(f"{START}\n{text}\n{END}", START, END)
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
