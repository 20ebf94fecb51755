"""How the console script ends: like sys.exit, without the interpreter's teardown.

Each case runs a real interpreter with the entry point as the console script runs it
(main() without arguments, reading sys.argv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from portinspect.errors import ExitStatus

from .support import lease_port


def _console(tmp_path: Path, *args: str, before: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"{before}\n"
        f"sys.argv = ['portinspect', *{list(args)!r}]\n"
        "from portinspect._entry import main\n"
        "main()\n"
    )
    # Buffered stdout, as in a terminal-less run without PYTHONUNBUFFERED.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PORTINSPECT_") and k != "PYTHONUNBUFFERED"
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_the_whole_document_arrives_and_the_exit_code_is_kept(tmp_path: Path) -> None:
    port = lease_port()  # nothing listens there, and nothing of ours will
    proc = _console(tmp_path, "list", "--port", str(port), "--json")
    assert proc.returncode == ExitStatus.NOT_LISTENING
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == ExitStatus.NOT_LISTENING and doc["listeners"] == []
    assert proc.stderr == f"portinspect: nothing is listening on port {port}\n"


def test_atexit_functions_still_run(tmp_path: Path) -> None:
    # coverage.py saves its data this way when it measures the console script.
    marker = tmp_path / "ran"
    before = f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').close())"
    proc = _console(tmp_path, "--version", before=before)
    assert proc.returncode == 0 and proc.stdout.startswith("portinspect ")
    assert marker.exists()


def test_what_an_atexit_function_prints_is_flushed(tmp_path: Path) -> None:
    # Written after portinspect's own last flush: the interpreter's teardown would flush it.
    before = "import atexit\natexit.register(lambda: print('late', end=''))"
    proc = _console(tmp_path, "--version", before=before)
    assert proc.returncode == 0
    assert proc.stdout.endswith("\nlate")


def test_a_message_as_exit_code_goes_to_stderr_with_status_1() -> None:
    code = "from portinspect._entry import _end\n_end('boom')"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr) == (1, "boom\n")


def test_an_in_process_caller_gets_system_exit(tmp_path: Path) -> None:
    code = (
        "from portinspect._entry import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    print('caught', exc.code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "caught 0"
