"""What only a real terminal shows: colour (and when there is none), the bare command, kill's
question (and that the time spent answering it is not counted), and the help and completion
every path offers."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from portinspect import scan
from portinspect._typer_app import ORDER

from .support import SCRIPT, lease_port, run_cli, wait_until
from .terminal import ANSI, on_terminal, too_wide

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")

HOLDER = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A process listening on a port leased for the test, stopped by pid."""
    port = lease_port()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(port)], stdin=subprocess.PIPE)
    try:
        wait_until(
            lambda: [li.pid for li in scan(port)] == [proc.pid], what=f"a listener on {port}"
        )
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# --- colour -----------------------------------------------------------------------------------


def test_colour_on_a_terminal_and_never_elsewhere(
    holder: tuple[subprocess.Popen[bytes], int],
) -> None:
    _, port = holder
    args = ["list", "--port", str(port)]
    _, coloured = on_terminal(args, 100)
    assert "\x1b[1mPORT\x1b[0m" in coloured  # the header, bold
    _, no_color = on_terminal(args, 100, env={"NO_COLOR": "1"})
    _, option = on_terminal([*args, "--no-color"], 100)
    _, dumb = on_terminal(args, 100, env={"TERM": "dumb"})
    piped = run_cli(*args).stdout
    for text in (no_color, option, dumb, piped):
        assert "\x1b" not in text
    # Colour changes nothing else.
    assert ANSI.sub("", coloured) == no_color


# --- the bare command -------------------------------------------------------------------------


def test_bare_portinspect_on_a_terminal_lists_the_commands() -> None:
    code, shown = on_terminal([], 60)
    assert code == 0
    lines = ANSI.sub("", shown).splitlines()
    assert lines[0].startswith("portinspect ")
    named = [line.split()[0] for line in lines if line.startswith("  ") and line[2] != " "]
    assert named == list(ORDER)
    assert too_wide(shown, 60) == []


def test_bare_portinspect_in_a_script_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "portinspect: no command given: one of list, who, free, kill, wait, run, audit "
        "(see --help)\n"
    )


# --- kill's question --------------------------------------------------------------------------


def test_time_spent_at_the_prompt_is_not_in_freed_after(
    holder: tuple[subprocess.Popen[bytes], int],
) -> None:
    """The user takes THINK seconds to answer; freed_after and the steps' times count from
    the call without that time. The holder exits at the first SIGTERM (milliseconds), so a
    count that included the pause would be at least THINK."""
    proc, port = holder
    think = 2.0
    master, slave = os.openpty()
    kill = subprocess.Popen(
        [str(SCRIPT), "kill", str(port), "--json"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    try:
        shown = b""
        deadline = time.monotonic() + 60
        while b"?" not in shown:
            assert time.monotonic() < deadline, f"no question on the terminal: {shown!r}"
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                shown += os.read(master, 4096)
        asked = time.monotonic()
        time.sleep(think)  # the user reading the plan: the pause the times must not count
        os.write(master, b"y\n")
        out, _ = kill.communicate(timeout=60)
        answered = time.monotonic() - asked
    finally:
        if kill.poll() is None:
            kill.kill()
            kill.wait()
        os.close(master)
    assert kill.returncode == 0
    [outcome] = json.loads(out)["ports"]
    assert outcome["status"] == "freed"
    assert answered >= think
    assert outcome["freed_after"] < think
    assert all(step["at"] < think for step in outcome["steps"])
    assert proc.wait(timeout=10) == -15


# --- help and completion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("list", "Usage: portinspect list [OPTIONS]"),
        ("who", "Usage: portinspect who [OPTIONS] PORT"),
        ("free", "Usage: portinspect free [OPTIONS]"),
        ("kill", "Usage: portinspect kill [OPTIONS] PORT..."),
        ("wait", "Usage: portinspect wait [OPTIONS] TARGET... [-- COMMAND...]"),
        ("run", "Usage: portinspect run [OPTIONS] [TEST...]"),
        ("audit", "Usage: portinspect audit [OPTIONS]"),
    ],
)
def test_help_names_what_users_type(command: str, usage: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == usage  # not `{port}`, not `ports...`
    for typer_spelling in ("<str>", "list[str]", "<bool>"):
        assert typer_spelling not in proc.stdout, typer_spelling


@pytest.mark.parametrize(
    ("shell", "says"),
    [
        ("bash", "_portinspect_completion()"),
        ("zsh", "#compdef portinspect"),
        ("fish", "complete --command portinspect"),
        ("powershell", "Register-ArgumentCompleter"),
    ],
)
def test_show_completion_prints_the_script_of_the_shell_named(shell: str, says: str) -> None:
    proc = run_cli("--show-completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout


def test_show_completion_for_an_unknown_shell_is_one_line() -> None:
    proc = run_cli("--show-completion", "tcsh")
    assert proc.returncode == 2
    assert proc.stderr == ("portinspect: no completion for 'tcsh': bash, zsh, fish or powershell\n")
