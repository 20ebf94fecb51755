"""Every file in examples/ runs here, for real, so none of them rots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portinspect import scan

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


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env(),
        check=False,
    )


def _ports_in(text: str) -> list[int]:
    return [int(w) for w in text.replace(",", " ").split() if w.isdigit() and 1 <= int(w) <= 65535]


def test_every_example_has_a_test() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.is_file()} == TESTED


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="the CI recipe uses curl")


@needs_curl
def test_ci_shell_script_serves_and_frees_its_port(tmp_path: Path) -> None:
    proc = _run(["bash", str(EXAMPLES / "ci_smoke.sh")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    port = _ports_in(proc.stdout.splitlines()[0])[0]
    assert "port free" in proc.stdout
    assert scan(port) == []


@needs_curl
def test_ci_run_script_serves_tests_and_proves_the_port_free(tmp_path: Path) -> None:
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
    proc = _run(["bash", "-e", "-o", "pipefail", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    port = _ports_in(proc.stdout)[0]
    assert (tmp_path / "kill-report.json").read_text().strip().startswith("{")
    assert scan(port) == []


def test_library_example(tmp_path: Path) -> None:
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
