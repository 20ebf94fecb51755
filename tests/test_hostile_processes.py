"""Real processes with hostile command lines, names and working directories.

The tables (`list`, `who`, `kill --dry-run`) stay one line per row and never write a control
character, a bidi control or an undecodable byte to the terminal; the JSON carries the argv,
cwd and name exactly as the process has them (bytes that are not UTF-8 included, as the
lone surrogates Python's os.fsdecode makes of them), and is terminal-safe too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from .holders import HOSTILE_NAME, hostile
from .support import SCRIPT, endpoint, same_socket
from .test_hostile_input import terminal_unsafe

if not sys.platform.startswith("linux"):
    pytest.skip("argv bytes, cwd bytes and /proc/self/comm are Linux's", allow_module_level=True)


Hostile = tuple[int, int, list[bytes], bytes]


@pytest.fixture(scope="module")
def hostile_holder(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hostile]:
    """(pid, port, argv, cwd) of a real listener whose every visible string is hostile."""
    with hostile(tmp_path_factory.mktemp("hostile")) as (holder, argv, cwd):
        yield holder.pid, holder.port, argv, cwd


def run(*args: str) -> str:
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    return proc.stdout.decode("utf-8")  # strict: every byte written is valid UTF-8


def assert_terminal_safe(text: str) -> None:
    for number, line in enumerate(text.split("\n")):
        bad = terminal_unsafe(line)
        names = [unicodedata.name(c, hex(ord(c))) for c in bad]
        assert not bad, f"line {number} writes {names} to the terminal: {line[:120]!r}"


def test_list_table_is_one_line_per_row_and_escaped(
    hostile_holder: Hostile,
) -> None:
    pid, port, _, _ = hostile_holder
    out = run("list", "--port", str(port))
    assert_terminal_safe(out)
    header, rule, *rows = out.rstrip("\n").split("\n")
    assert header.split()[0] == "PORT" and set(rule) <= {"-", " "}
    [row] = [r for r in rows if r.split()[:3] == [str(port), "tcp", "127.0.0.1"]]
    assert row.split()[3] == str(pid)
    assert "\\x1b[31m\\n\\u202eev\\xff" in row  # the name, escaped


def test_who_report_escapes_every_field(
    hostile_holder: Hostile,
) -> None:
    _, port, _, _ = hostile_holder
    out = run("who", str(port))
    assert_terminal_safe(out)
    lines = out.split("\n")
    [cwd] = [line for line in lines if line.lstrip().startswith("cwd:")]
    assert cwd.endswith("dir with spaces\\nnewline\\x1b[31mesc\\u202ertl\\xff")
    [command] = [line for line in lines if line.lstrip().startswith("command:")]
    for escaped in (
        "\\x1b[2J\\x1b[31m",
        "\\x1b]0;owned\\x07",
        "line one\\nline two",
        "carriage\\rreturn",
        "\\u202eevil",
        "\\u200fmark\\u061c",
        "\\u2028separator\\u2029",
        "\\x85next line",
        "\\x9b31m raw CSI byte",
        "\\xff\\xfe not utf-8",
        "\\t tab \\x7f del",
        "x" * 5000,
    ):
        assert escaped in command, escaped


def test_kill_plan_table_is_escaped(hostile_holder: Hostile) -> None:
    pid, port, _, _ = hostile_holder
    out = run("kill", str(port), "--dry-run")
    assert_terminal_safe(out)
    lines = out.rstrip("\n").split("\n")
    assert lines[0] == f"port {port}, 1 process"
    [row] = [line for line in lines if line.lstrip().startswith(f"{pid} *")]
    assert " -c \\nimport os, signal, socket," in row  # the program's newlines, escaped


@pytest.mark.parametrize("command", ["list", "who"])
def test_json_carries_the_data_byte_for_byte(hostile_holder: Hostile, command: str) -> None:
    pid, port, argv, cwd = hostile_holder
    args = ["list", "--port", str(port)] if command == "list" else ["who", str(port)]
    out = run(*args, "--json")
    # Terminal-safe as well: JSON escapes C0 controls itself, portinspect the C1 and bidi ones.
    assert_terminal_safe(out)
    doc = json.loads(out)
    [row] = same_socket(doc["listeners"], endpoint(port))
    assert row["pid"] == pid
    assert [os.fsencode(arg) for arg in row["cmdline"]] == argv
    assert os.fsencode(row["cwd"]) == cwd
    assert os.fsencode(row["process"]) == HOSTILE_NAME
    if command == "who":
        [app] = doc["apps"]
        [member] = [p for p in app["tree"] if p["pid"] == pid]
        assert [os.fsencode(arg) for arg in member["cmdline"]] == argv


def test_hostile_directory_really_is_the_cwd(
    hostile_holder: Hostile,
) -> None:
    pid, _, _, cwd = hostile_holder
    assert os.readlink(f"/proc/{pid}/cwd".encode()) == cwd
    assert Path(os.fsdecode(cwd)).is_dir()
