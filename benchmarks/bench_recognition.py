"""What recognition costs: classify() of one snapshot, cold, as `portinspect list` pays it.

    .venv/bin/python benchmarks/bench_recognition.py [--scale L] [--rounds 9] [--baseline DIR]

It starts benchmarks/loadgen.py at the scale (run.py's loads; loopback only, stopped by pid
afterwards). Each round runs a fresh interpreter that takes one snapshot (not timed) and then
times classifier.classify(snapshot, read_source) once: holders, app trees, roles, signatures
and framework sources, with every cache cold, as in a real run (the app sources are read by
a non-blocking reader of regular files, the same for every version). With --baseline DIR (a copy of
another version's package directory's parent, e.g. from `git archive`), the two versions run
in turn, A B A B ..., so a drifting background load hits both alike; the ratio is taken per
pair. Prints medians and the per-pair ratio; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import LOADS, load  # noqa: E402

# The same reader for every version: regular files only, opened non-blocking, so another
# user's FIFO named main.py cannot stall the measurement (issue 16 makes the scanner's own
# reader do this).
CHILD = """\
import os, stat, time
from portinspect import classifier, scanner

def read_source(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)

snapshot = scanner.collect()
began = time.perf_counter()
listeners = classifier.classify(snapshot, read_source)
print((time.perf_counter() - began) * 1000, len(listeners))
"""


def once(tree: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="L", choices=sorted(LOADS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--baseline", type=Path, help="another version's tree to compare with")
    args = p.parse_args()
    trees = {"this": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    times: dict[str, list[float]] = {name: [] for name in trees}
    counts: set[int] = set()
    with load(args.scale):
        for tree in trees.values():  # warm-up: page cache, pyc files
            once(tree)
        for _ in range(args.rounds):
            for name, tree in trees.items():
                ms, count = once(tree)
                times[name].append(ms)
                counts.add(count)
    load1 = os.getloadavg()[0]
    print(f"scale {args.scale}, {args.rounds} rounds, listeners {sorted(counts)}, load {load1:.2f}")
    for name, values in times.items():
        print(
            f"{name:>9}: classify median {statistics.median(values):7.1f} ms "
            f"[{min(values):.1f}..{max(values):.1f}]"
        )
    if "baseline" in times:
        ratios = [a / b for a, b in zip(times["this"], times["baseline"], strict=True)]
        print(f"this/baseline per pair: median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
