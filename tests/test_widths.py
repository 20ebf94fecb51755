"""Output that fits the screen: CliRunner and the installed console script at 40 to 200
columns, on a terminal and in a pipe, against two real http.servers on one port whose command
lines differ only at their tail (`--bind 127.0.0.1`, `--bind ::1`).

On a terminal no line is wider than the screen (except with --wide), and the tails that tell
the two servers apart survive the cutting; in a pipe every line is whole, whatever COLUMNS
says; JSON is the same document at every width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from portinspect import _output
from portinspect.cli import app

from .support import lease_port, lease_scope, run_cli
from .terminal import Pair, http_server_pair, on_terminal, too_wide

WIDTHS = [40, 60, 80, 120, 200]
runner = CliRunner()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    # Leased from the suite's allocator for the whole module, held while the servers run.
    with lease_scope():
        with http_server_pair(lease_port()) as servers:
            yield servers


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: CliRunner's stdout is a BytesIO, never a terminal; this makes portinspect
    take it for one (COLUMNS then says how wide). The console-script tests below run on a
    real pseudo-terminal instead."""
    monkeypatch.setattr(_output, "is_terminal", lambda stream: True)


def invoke(*args: str, columns: int | None = None) -> tuple[int, str]:
    env = {"NO_COLOR": "1", "COLUMNS": str(columns) if columns else None}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout


def commands(pair: Pair) -> list[list[str]]:
    port = str(pair.port)
    return [["list", "--port", port], ["who", port], ["kill", port, "--dry-run"]]


def tree_line(text: str, pid: int | None) -> str:
    """The line of `who`'s tree or `kill`'s plan that starts with pid."""
    [line] = [ln for ln in text.splitlines() if ln.split()[:1] == [str(pid)]]
    return line


@pytest.mark.parametrize("columns", WIDTHS)
def test_on_a_terminal_no_line_is_wider_than_it_and_the_tails_stay(
    pair: Pair, terminal: None, columns: int
) -> None:
    for args in commands(pair):
        code, out = invoke(*args, columns=columns)
        assert code == 0, out
        assert too_wide(out, columns) == [], args
    _, who = invoke("who", str(pair.port), columns=columns)
    _, plan = invoke("kill", str(pair.port), "--dry-run", columns=columns)
    for text in (who, plan):
        # Cut in the middle, each server's line still ends with its own address.
        assert "127.0.0.1" in tree_line(text, pair.pid4)
        if pair.pid6 is not None:
            assert "::1" in tree_line(text, pair.pid6)


def test_wide_shows_every_column_and_whole_lines(pair: Pair, terminal: None) -> None:
    _, narrow = invoke("list", "--port", str(pair.port), columns=40)
    code, wide = invoke("list", "--port", str(pair.port), "--wide", columns=40)
    assert code == 0
    assert "--wide shows every column" in narrow
    assert too_wide(wide, 40) and "RANGE" in wide.splitlines()[0]
    _, who = invoke("who", str(pair.port), "-w", columns=40)
    assert "--bind 127.0.0.1  [holds port]" in who


def test_in_a_pipe_lines_are_whole_whatever_columns_says(pair: Pair) -> None:
    code, out = invoke("who", str(pair.port), columns=40)  # CliRunner: not a terminal
    assert code == 0
    assert too_wide(out, 40)  # whole lines: COLUMNS is for terminals
    assert "-m http.server" in tree_line(out, pair.pid4)
    proc = run_cli("who", str(pair.port), env={**os.environ, "COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    same = [line for line in proc.stdout.splitlines() if "app top:" not in line]  # uptimes
    assert same == [line for line in out.splitlines() if "app top:" not in line]
    assert "\x1b" not in proc.stdout  # no colour in a pipe


@pytest.mark.parametrize("args", [["list", "--json", "--port"], ["who", "--json"]])
def test_json_is_the_same_document_at_every_width(
    pair: Pair, terminal: None, args: list[str]
) -> None:
    docs = set()
    for columns in [None, *WIDTHS]:
        code, out = invoke(*args, str(pair.port), columns=columns)
        assert code == 0
        docs.add(json.dumps(json.loads(out), sort_keys=True))
    assert len(docs) == 1


@pytest.mark.parametrize("columns", [40, 120])
def test_the_console_script_on_a_real_terminal(pair: Pair, columns: int) -> None:
    for args in commands(pair):
        code, shown = on_terminal(args, columns, env={"NO_COLOR": "1"})
        assert code == 0, shown
        assert too_wide(shown, columns) == [], args
    # COLUMNS, when set, is the width on a terminal: the window says 40, COLUMNS 100.
    _, shown = on_terminal(["who", str(pair.port)], 40, env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert too_wide(shown, 100) == [] and too_wide(shown, 40)
