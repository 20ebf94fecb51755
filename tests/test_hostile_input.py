"""Bad input on every command and option: exit 2, one printable line on stderr, never a traceback.

The full matrix (every command x every option x every bad value, with and without --json) goes
through typer's CliRunner; a sample of it through the installed console script, which is what
users type (NUL bytes cannot be in a real argv: execve ends an argument at the first NUL). No
case can act on anything: `kill` cases carry --dry-run, `free` cases --no-lease and a private
lease directory, `wait` cases a port nothing listens on and --timeout 0 or --free.

Also here: property-based tests of the parsers beyond tests/test_inputs.py, and unexpected
errors (one line and exit 1; the traceback with --debug or PORTINSPECT_DEBUG=1), raised inside
a command and outside one (the group, option callbacks, a broken install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from portinspect import api, cli, inputs
from portinspect.cli import app
from portinspect.errors import ExitStatus, UsageError
from portinspect.inputs import parse_port_spec

from .support import SCRIPT, free_loopback_port

runner = CliRunner()
# What must never reach a terminal raw: C0/C1 controls and DEL (Cc), lone surrogates (Cs, bytes
# that were not UTF-8), line and paragraph separators, and the bidi controls and marks.
# Unassigned or invisible but inert characters (U+D7FC, U+200B) may pass.
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def terminal_unsafe(line: str) -> list[str]:
    return [c for c in line if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI]


QUIET_PORT = str(free_loopback_port())  # nothing listens here; a wrongly accepted value is harmless

# -- the bad values, by what the option takes -------------------------------------------------

PORT = [
    "0",
    "65536",
    "-1",
    "80x",
    "",
    " ",
    "\t",
    "1e3",
    "9" * 40,
    "9" * 5000,
    "８０００",  # full-width digits: digits to str.isdigit(), not a port
    "٨٠٠٠",  # Arabic-Indic digits
    "80\x0000",  # a NUL byte
    "8000\n",
    "+80",
    "0x50",
    "80.0",
    "1_000",  # int() takes it
    "\x1b[2J80",
    "\u202e8000",
    "\udcff80",  # a byte that is not UTF-8, as Python decodes argv
    "8000 8001",
]
SPEC = [
    *PORT,
    "8000-7000",
    "8000,",
    ",8000",
    ",",
    "8000,,8001",
    "8000--8001",
    "1-2-3",
    "8000-",
    "0-10",
    "65530-65536",
]
SECONDS = [
    "-1",
    "-0.5",
    "abc",
    "",
    " ",
    "nan",
    "inf",
    "-inf",
    "1e3",  # float() takes these four; nobody types them for a duration
    "1e400",
    "1_0",
    "３０",
    "0x10",
    "\x00",
    "9" * 40,
    "1.2.3",
    "5s",
    "1,5",
    "\u202e5",
]
COUNT = ["0", "-1", "1001", "abc", "", "1e3", "１", "9" * 40, "9" * 5000, "1.5", "\x00", "+1"]
RANGE = [
    "9000-8000",
    "9000-",
    "-9000",
    "",
    " ",
    "1-2-3",
    "0-10",
    "1-65536",
    "８０００-９０００",
    "a-b",
    "80x",
    "9" * 40,
]
SIGNAL = [
    "FOO",
    "",
    " ",
    "0",
    "SIG",
    "999",
    "-15",
    "\x00",
    "TERM\n",
    "ＴＥＲＭ",
    "9" * 40,
    "TERM;KILL",
    "TERM\x1b[2J",
]
PROTO = ["sctp", "", "TCP\x00", "ｔｃｐ", "tcp,udp", "tcp6", "udp ", "\x1b"]
LEVEL = ["", " ", "severe", "crit", "0", "9", "high,medium", "ＨＩＧＨ", "high\n", "high\x00",
         "\x1b[2Jhigh", "\u202ehigh", "\udcffhigh", "h" * 5000]  # fmt: skip

Build = Callable[[str], list[str]]
P = QUIET_PORT
SLOTS: list[tuple[str, Build, list[str]]] = [
    ("list --port", lambda v: ["list", "--port", v], SPEC),
    ("list --proto", lambda v: ["list", "--proto", v], PROTO),
    ("who PORT", lambda v: ["who", v], [*PORT, "8000-8001", "8000,8001"]),
    ("wait PORTS", lambda v: ["wait", v, "--timeout", "0"], SPEC),
    ("wait --timeout", lambda v: ["wait", P, "--free", "--timeout", v], [*SECONDS, "604801"]),
    ("wait --interval", lambda v: ["wait", P, "--free", "--interval", v], [*SECONDS, "0", ".0001"]),
    ("wait --proto", lambda v: ["wait", P, "--free", "--proto", v], PROTO),
    ("free --near", lambda v: ["free", "--no-lease", "--near", v], PORT),
    ("free --count", lambda v: ["free", "--no-lease", "--count", v], COUNT),
    ("free --range", lambda v: ["free", "--no-lease", "--range", v], RANGE),
    ("free --lease-seconds", lambda v: ["free", "--no-lease", "--lease-seconds", v],
     [*SECONDS, "0", "86401"]),
    ("kill PORTS", lambda v: ["kill", v, "--dry-run"], SPEC),
    ("kill --timeout", lambda v: ["kill", P, "--dry-run", "--timeout", v], [*SECONDS, "604801"]),
    ("kill --signal", lambda v: ["kill", P, "--dry-run", "--signal", v], SIGNAL),
    ("audit --fail-on", lambda v: ["audit", "--fail-on", v], LEVEL),
]  # fmt: skip
# Mistakes in the shape of the command line, which click itself catches.
STRUCTURE = [
    ["frobnicate"],
    ["--bogus"],
    ["list", "--bogus"],
    ["list", "--exposed=yes"],
    ["list", "--port"],
    ["who"],
    ["who", "1", "2"],
    ["wait"],
    ["wait", QUIET_PORT, "--timeout"],
    ["free", "--near"],
    ["free", "--udp=1"],
    ["kill"],
    ["kill", QUIET_PORT, "--dry-run", "--force", "--signal", "INT"],
    ["kill", QUIET_PORT, "--dry-run", "--timeout"],
    ["audit", "--fail-on"],
    ["audit", "8000"],
    ["audit", "--probe=yes"],
]
COMMANDS = ("list", "who", "wait", "free", "kill", "audit")

CASES = [
    pytest.param(build(value), id=f"{slot}={value[:12]!r}")
    for slot, build, values in SLOTS
    for value in values
] + [pytest.param(args, id=" ".join(args).replace(QUIET_PORT, "P")) for args in STRUCTURE]


def with_json(args: list[str]) -> list[str]:
    """--json right after the command, so no option can take it for its value."""
    return [args[0], "--json", *args[1:]]


@pytest.fixture(autouse=True)
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "leases"
    monkeypatch.setenv("PORTINSPECT_LEASE_DIR", str(path))
    return path


def assert_one_line_usage_error(code: int, out: str, err: str, args: list[str]) -> None:
    assert code == ExitStatus.USAGE, (args, code, out, err)
    assert "Traceback" not in out + err
    assert err.startswith("portinspect: ") and err.endswith("\n") and err.count("\n") == 1, err
    # The user's text is echoed escaped: no control, bidi or unpaired surrogate reaches the tty.
    assert terminal_unsafe(err[:-1]) == [], err
    assert len(err) < 300, err
    if "--json" not in args:
        assert out == ""
        return
    doc = json.loads(out)  # exactly one document: trailing text would fail to parse
    assert doc["ok"] is False and doc["exit_code"] == ExitStatus.USAGE
    assert doc["command"] == args[0]
    assert doc["error"]["message"] == err[len("portinspect: ") : -1]


@pytest.mark.parametrize("args", CASES)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert_one_line_usage_error(result.exit_code, result.stdout, result.stderr, args)
    if args[0] in COMMANDS:
        result = runner.invoke(app, with_json(args))
        assert_one_line_usage_error(result.exit_code, result.stdout, result.stderr, with_json(args))


# A sample through the real entry point: one or two values of every slot, run side by side.
SAMPLE: list[list[str | bytes]] = [
    ["list", "--port", "8000-7000"],
    ["list", "--json", "--port", "８０００"],
    ["list", "--proto", "sctp"],
    ["who", "65536"],
    ["who", "--json", "1e3"],
    [b"who", b"\xff80"],  # not UTF-8
    ["wait", "9" * 40, "--timeout", "0"],
    ["wait", QUIET_PORT, "--free", "--timeout", "-1"],
    ["wait", "--json", QUIET_PORT, "--free", "--interval", "nan"],
    ["free", "--no-lease", "--count", "9" * 5000],
    ["free", "--no-lease", "--range", ""],
    ["free", "--json", "--no-lease", "--lease-seconds", "1e3"],
    ["kill", "0", "--dry-run"],
    ["kill", QUIET_PORT, "--dry-run", "--signal", "TERM\x1b[2J"],
    ["kill", "--json", QUIET_PORT, "--dry-run", "--timeout", "abc"],
    ["frobnicate\x1b[31m"],
    ["list", "--json", "--bogus"],
    ["audit", "--json", "--fail-on", "ＨＩＧＨ"],
]


def test_bad_input_through_the_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "PORTINSPECT_LEASE_DIR": str(tmp_path / "leases")}
    procs = [
        subprocess.Popen(
            [os.fsencode(SCRIPT), *(os.fsencode(a) for a in args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for args in SAMPLE
    ]
    try:
        results = [(p.returncode, *p.communicate(timeout=60)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for args, proc, (_, out, err) in zip(SAMPLE, procs, results, strict=True):
        text_args = [os.fsdecode(a) for a in args]
        assert_one_line_usage_error(proc.returncode, out.decode(), err.decode(), text_args)


# -- properties of the parsers ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=16))
def test_who_any_text_is_a_port_or_one_usage_line(text: str) -> None:
    # After "--" the text is the PORT argument even when it reads like an option ("--help").
    result = runner.invoke(app, ["who", "--json", "--", text])
    assert "Traceback" not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == result.exit_code
    if result.exit_code == ExitStatus.USAGE:
        assert result.stderr.count("\n") == 1 and terminal_unsafe(result.stderr[:-1]) == []
    else:  # a real port: someone holds it (0, 4) or nobody does (3)
        assert result.exit_code in (0, 3, 4)
        assert text.strip(" \t").isascii() and text.strip(" \t").isdigit()


ranges = st.lists(
    st.tuples(st.integers(1, 65535), st.integers(0, 20), st.sampled_from(["", " ", "\t", "  "])),
    min_size=1,
    max_size=5,
)


@given(ranges)
def test_specs_as_people_type_them_parse_to_their_ports(parts: list[tuple[int, int, str]]) -> None:
    expected: set[int] = set()
    texts = []
    for low, width, pad in parts:
        high = min(65535, low + width)
        expected.update(range(low, high + 1))
        texts.append(f"{pad}{low}-{high}{pad}" if width else f"{pad}{low}{pad}")
    assert parse_port_spec(",".join(texts)) == expected


@given(st.text(max_size=12))
def test_seconds_are_plain_decimals_or_one_usage_line(text: str) -> None:
    try:
        seconds = inputs.parse_seconds(text, "--timeout")
    except UsageError as exc:
        assert "\n" not in str(exc) and terminal_unsafe(str(exc)) == []
    else:
        assert 0 <= seconds <= inputs.MAX_SECONDS
        assert inputs.SECONDS.fullmatch(text.strip(" \t"))


@given(st.integers(0, 10**6), st.integers(0, 999))
def test_seconds_read_back_as_typed(whole: int, millis: int) -> None:
    text = f"{whole}.{millis:03d}"
    if whole + millis / 1000 <= inputs.MAX_SECONDS:
        assert inputs.parse_seconds(text, "--timeout") == float(text)


# -- unexpected errors: one line and exit 1; --debug or PORTINSPECT_DEBUG shows the traceback ---


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom\nsecond line \x1b[31m")


@pytest.fixture
def broken_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process fault (monkeypatch through CliRunner): the scanner raises something unplanned."""
    monkeypatch.delenv("PORTINSPECT_DEBUG", raising=False)
    monkeypatch.setattr(api, "scan_result", _boom)


@pytest.mark.usefixtures("broken_scan")
def test_unexpected_error_in_a_command_is_one_line_and_exit_1() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == ExitStatus.ERROR
    assert result.stderr == (
        "portinspect: unexpected error: boom second line \\x1b[31m "
        "(run with --debug for the traceback)\n"
    )
    assert result.stdout == ""
    result = runner.invoke(app, ["list", "--json"])
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 1 and "boom" in doc["error"]["message"]


@pytest.mark.usefixtures("broken_scan")
@pytest.mark.parametrize("how", ["--debug", "PORTINSPECT_DEBUG=1"])
def test_debug_shows_the_traceback(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["list"]
    if how == "--debug":
        args = ["--debug", "list"]
    else:
        monkeypatch.setenv("PORTINSPECT_DEBUG", "1")
    result = runner.invoke(app, args)
    assert result.exit_code == ExitStatus.ERROR
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "portinspect: unexpected error: boom second line \\x1b[31m"
    )


def test_unexpected_error_outside_a_command_body_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # cli._output runs in the command function, before _run: typer's own path, not _run's.
    monkeypatch.delenv("PORTINSPECT_DEBUG", raising=False)
    monkeypatch.setattr(cli, "_output", _boom)
    result = runner.invoke(app, ["who", "--json", "8000"])
    assert result.exit_code == ExitStatus.ERROR
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "unexpected error: boom second line" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["command"] == "who" and doc["exit_code"] == 1


_CALLBACK_RAISES: list[BaseException] = []


def _raising_callback(value: str | None) -> str | None:
    if value is not None:
        raise _CALLBACK_RAISES[-1]
    return value


# An app on the same group class, whose option callback raises what a test puts above.
callback_app = typer.Typer(cls=cli._OneLineErrors, rich_markup_mode=None)


@callback_app.command("go")
def _go(
    thing: Annotated[str | None, typer.Option("--thing", callback=_raising_callback)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> int:
    return 0


@callback_app.command("other")
def _other() -> int:  # a second command, so "go" stays a subcommand
    return 0


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ValueError("bad\nvalue"), 1, "unexpected error: bad value"),
        (UsageError("invalid thing 'x'"), 2, "invalid thing 'x'"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (typer.BadParameter("not \x1b[2J good"), 2, "not \\x1b[2J good"),
    ],
    ids=["unexpected", "usage", "ctrl-c", "bad-parameter"],
)
def test_errors_in_option_callbacks_are_one_line(
    error: BaseException, code: int, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTINSPECT_DEBUG", raising=False)
    monkeypatch.setattr(sys.modules[__name__], "_CALLBACK_RAISES", [error])
    result = runner.invoke(callback_app, ["go", "--json", "--thing", "x"])
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert line in result.stderr
    doc = json.loads(result.stdout)
    assert doc["command"] == "go" and doc["exit_code"] == code


@pytest.mark.parametrize("debug", [False, True])
def test_a_broken_install_is_one_line_from_the_entry_point(debug: bool) -> None:
    """Injected: typer cannot be imported, so nothing of cli.py runs; _entry still answers."""
    code = (
        "import sys\nsys.modules['typer'] = None\n"
        "from portinspect._entry import main\nmain(['list', '--json'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PORTINSPECT_DEBUG"}
    if debug:
        env["PORTINSPECT_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == ExitStatus.ERROR
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("portinspect: unexpected error: import of typer halted")
    assert ("Traceback" in proc.stderr) is debug
    if not debug:
        assert proc.stderr.count("\n") == 1
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 1 and doc["ok"] is False
