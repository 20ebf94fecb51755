"""Run the test suite many times and count, per test, how often it failed.

    python3 scripts/test_repeat.py --runs 10                  # this checkout's venv, pytest only
    python3 scripts/test_repeat.py --runs 3 --jobs 4          # with 4 xdist workers
    python3 scripts/test_repeat.py --runs 1 --fresh           # a fresh clone: make test, first run
    python3 scripts/test_repeat.py --runs 1 --fresh --private # ... under a 0700 directory
    python3 scripts/test_repeat.py --runs 2 --fresh --concurrent 2   # two clones at once, twice

`make test-repeat N=10 [JOBS=4] [FRESH=1] [PRIVATE=1] [CONCURRENT=2]` runs the same.

A fresh clone is `git clone` of this checkout's HEAD (commit first: uncommitted changes are
not in it) into a new temporary directory, world-readable unless --private (then mode 0700, as
`mktemp -d` makes it); it runs `make test` there, with its own new venv (pip's cache keeps the
install quick), and the clone is removed afterwards unless --keep. Without --fresh, each run is
this checkout's pytest. Failures and skips are read from each run's JUnit XML report.
Exit status: 0 when every run passed.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    label: str
    seconds: float = 0.0
    code: int = -1
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: list[str] = field(default_factory=list)  # test ids that failed or errored
    skips: list[str] = field(default_factory=list)  # skip reasons
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.failed

    def line(self) -> str:
        c = self.counts
        return (
            f"{self.label}: {'ok' if self.ok else 'FAILED'} (exit {self.code}), "
            f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
            f"{c['skipped']} skipped in {self.seconds:.1f}s"
        )


def _read_report(run: Run, report: Path) -> None:
    if not report.exists():
        run.failed.append("<no report: the run did not get as far as pytest>")
        return
    for case in ET.parse(report).iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                run.failed.append(test)
                break
            if child.tag == "skipped":
                outcome = "skipped"
                run.skips.append(child.get("message", "").strip())
        run.counts[outcome] += 1


def _clone(parent: Path, name: str) -> Path:
    target = parent / name
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def _run(run: Run, checkout: Path, jobs: int, make: bool, extra: list[str], logs: Path) -> None:
    report = logs / f"{run.label}.xml"
    run.log = logs / f"{run.label}.log"
    env = dict(os.environ, PYTEST_ADDOPTS=f"--junitxml={report} -p no:cacheprovider")
    if make:
        argv = ["make", "test", f"JOBS={jobs}"]
        if extra:
            env["PYTEST_ADDOPTS"] += " " + " ".join(extra)
    else:
        argv = [str(checkout / ".venv" / "bin" / "pytest"), "-n", str(jobs), "-q", *extra]
    started = time.monotonic()
    with open(run.log, "wb") as out:
        proc = subprocess.run(argv, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
    run.seconds = time.monotonic() - started
    run.code = proc.returncode
    _read_report(run, report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", "-N", type=int, default=10, help="rounds to run (default 10)")
    parser.add_argument("--jobs", "-n", type=int, default=2, help="pytest workers (default 2)")
    parser.add_argument("--fresh", action="store_true", help="each run in a fresh clone")
    parser.add_argument("--private", action="store_true", help="clones under a 0700 directory")
    parser.add_argument("--concurrent", type=int, default=1, help="clones run at once per round")
    parser.add_argument("--keep", action="store_true", help="keep the clones and logs")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    if args.concurrent > 1 and not args.fresh:
        parser.error("--concurrent runs several clones: it needs --fresh")
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if args.fresh and dirty:
        print("note: uncommitted changes are not in the clones", file=sys.stderr)

    base = Path(tempfile.mkdtemp(prefix="portinspect-repeat-"))  # 0700, as mktemp -d
    if not args.private:
        base.chmod(0o755)
    logs = base / "logs"
    logs.mkdir()
    print(
        f"runs: {args.runs} x {args.concurrent}, workers: {args.jobs}, "
        f"{'fresh clones in ' + str(base) if args.fresh else 'this checkout'}"
        f"{' (private, 0700)' if args.private else ''}; logs in {logs}",
        flush=True,
    )
    runs: list[Run] = []
    try:
        for round_ in range(1, args.runs + 1):
            batch = []
            for clone in range(1, args.concurrent + 1):
                label = f"run{round_:02d}" + (f"-clone{clone}" if args.concurrent > 1 else "")
                checkout = _clone(base, label) if args.fresh else ROOT
                batch.append((Run(label), checkout))
            threads = [
                threading.Thread(
                    target=_run,
                    args=(run, checkout, args.jobs, args.fresh, args.pytest_args, logs),
                )
                for run, checkout in batch
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for run, checkout in batch:
                runs.append(run)
                print(run.line(), flush=True)
                for test in run.failed:
                    print(f"    {test}", flush=True)
                if args.fresh and not args.keep:
                    shutil.rmtree(checkout, ignore_errors=True)
    finally:
        _summary(runs)
        if not args.keep and all(run.ok for run in runs):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"logs kept in {logs}")
    return 0 if runs and all(run.ok for run in runs) else 1


def _summary(runs: list[Run]) -> None:
    if not runs:
        return
    seconds = [run.seconds for run in runs]
    print(
        f"\n{sum(run.ok for run in runs)} of {len(runs)} runs passed; wall time per run "
        f"min {min(seconds):.1f}s, median {statistics.median(seconds):.1f}s, "
        f"max {max(seconds):.1f}s"
    )
    failures = collections.Counter(test for run in runs for test in set(run.failed))
    if failures:
        print("failures per test (runs in which it failed):")
        for test, count in failures.most_common():
            print(f"  {count:3d}  {test}")
    skips = collections.Counter(reason for run in runs for reason in run.skips)
    if skips:
        print(f"skips (over all {len(runs)} runs):")
        for reason, count in skips.most_common():
            print(f"  {count:3d}  {reason}")


if __name__ == "__main__":
    sys.exit(main())
