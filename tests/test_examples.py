"""Every file in examples/ runs here, for real, so none of them rots."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .holders import session_members
from .support import SHARED_LEASES, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent
TESTED = {
    "ci_run.sh",
    "ci_smoke.sh",
    "github-actions.yml",
    "library_usage.py",
    "test_with_free_port.py",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The venv first, so `portinspect` and `python3` are the ones under test. The lease
    # directory stays the user's default, as in a real CI: the examples ask for the same
    # port (--near 8000) while running in parallel, and only shared leases keep them apart.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@contextlib.contextmanager
def _one_example_at_a_time() -> Iterator[None]:
    """The examples that serve on `--near 8000` run one at a time, across every suite of this
    user (a lock in the shared lease directory; the kernel drops it if its holder dies).

    Their last step waits for their port to be free after `kill`; their lease ended when
    their server bound the port, so an example started in that gap may take the very port,
    and the wait would time out. That is the examples' flow in a parallel CI, not portinspect.
    """
    with open(SHARED_LEASES / "examples.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run an example in a session of its own, and wait until nothing of that session runs:
    whatever the example started is stopped, by the example itself (it must be)."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: not session_members(proc.pid), 30, "what the example started to stop")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _ports_in(text: str) -> list[int]:
    return [int(w) for w in text.replace(",", " ").split() if w.isdigit() and 1 <= int(w) <= 65535]


def test_every_example_has_a_test() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.is_file()} == TESTED


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="the CI recipe uses curl")


@needs_curl
def test_ci_shell_script_serves_and_frees_its_port(tmp_path: Path) -> None:
    with _one_example_at_a_time():
        proc = _run(["bash", str(EXAMPLES / "ci_smoke.sh")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _ports_in(proc.stdout.splitlines()[0])
    assert "port free" in proc.stdout  # its own `wait --free`: its server is gone too


@needs_curl
def test_ci_run_script_serves_tests_and_proves_the_port_free(tmp_path: Path) -> None:
    with _one_example_at_a_time():  # near 8000 too: it could take the port another frees
        proc = _run(["bash", str(EXAMPLES / "ci_run.sh")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.endswith("tests passed, server stopped, port free\n")
    report = json.loads((tmp_path / "run-report.json").read_text())
    assert report["outcome"] == "tests-passed" and report["teardown"]["clean"]
    [server] = report["servers"]
    assert f"served on {server['port']}" in proc.stderr  # the tests' stdout, beside --json
    # The port's proof is run's own, by socket: the other examples may take port 8000 next.
    assert [check["free"] for check in report["teardown"]["ports"]] == [True]


def _workflow_script(path: Path, step: str) -> str:
    """The `run: |` block of one named step (enough YAML for our own snippet)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {step}")
    run = next(i for i in range(start, len(lines)) if lines[i].strip() == "run: |")
    indent = len(lines[run + 1]) - len(lines[run + 1].lstrip())
    block: list[str] = []
    for line in lines[run + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block)


@needs_curl
def test_github_actions_steps_run_as_written(tmp_path: Path) -> None:
    script = _workflow_script(EXAMPLES / "github-actions.yml", "Serve, test, stop")
    with _one_example_at_a_time():
        proc = _run(["bash", "-e", "-o", "pipefail", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _ports_in(proc.stdout)
    assert (tmp_path / "kill-report.json").read_text().strip().startswith("{")


def test_library_example(tmp_path: Path) -> None:
    with _one_example_at_a_time():
        proc = _run([sys.executable, str(EXAMPLES / "library_usage.py")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "server=http.server" in proc.stdout
    assert "kill: freed" in proc.stdout


def test_pytest_plugin_example(tmp_path: Path) -> None:
    proc = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_with_free_port.py"),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
