"""Renderers return strings; terminal safety of data that other processes control."""

from __future__ import annotations

import json

from portinspect import render
from portinspect.models import Family, Holder, Listener, PortRange, ProcessInfo, Proto


def _listener(**over: object) -> Listener:
    proc = ProcessInfo(
        pid=4242,
        ppid=1,
        name="python3",
        user="dev",
        cmdline=("python", "-m", "http.server", "8000"),
        cwd="/srv/site",
        create_time=1000.0,
    )
    fields: dict[str, object] = {
        "proto": Proto.TCP,
        "family": Family.IPV4,
        "address": "127.0.0.1",
        "port": 8000,
        "range": PortRange.REGISTERED,
        "ephemeral": False,
        "service": None,
        "exposed": False,
        "holders": (Holder(proc, "server"),),
        "user": "dev",
        "server": "http.server",
        "app_pid": 4242,
    }
    fields.update(over)
    return Listener(**fields)  # type: ignore[arg-type]


def test_clean_escapes_terminal_controls() -> None:
    hostile = "evil\x1b[2J\x1b]0;title\x07\nnext\rline\u202eabc\x9b31m"
    out = render.clean(hostile)
    assert "\x1b" not in out and "\n" not in out and "\r" not in out
    assert "\u202e" not in out and "\x9b" not in out
    assert "\\x1b[2J" in out and "\\n" in out and "\\u202e" in out


def test_clean_cuts_long_text() -> None:
    assert len(render.clean("x" * 5000, width=60)) == 60


def test_command_line_drops_setproctitle_padding() -> None:
    argv = ("gunicorn: master [app:app]", *[""] * 50)
    assert render.command_line(argv) == "gunicorn: master [app:app]"


def test_list_table_one_line_per_row_even_with_hostile_data() -> None:
    proc = ProcessInfo(pid=7, ppid=1, name="x\ny", user="u\x1b[31m", cmdline=("a\nb",))
    rows = [_listener(), _listener(port=9000, holders=(Holder(proc),), user="u\x1b[31m")]
    out = render.list_table(rows)
    lines = out.split("\n\n")[0].splitlines()  # the table, without its legend
    assert len(lines) == 2 + len(rows)  # header, rule, one line per listener
    assert "\x1b" not in out


def test_list_table_marks_exposed_and_explains_the_mark() -> None:
    out = render.list_table([_listener(address="0.0.0.0", exposed=True)])
    assert "0.0.0.0 *" in out
    assert "exposed beyond this machine" in out


def test_program_prefers_framework_and_server() -> None:
    assert render.program(_listener(framework="django", server="runserver")) == (
        "django (runserver)"
    )
    assert render.program(_listener(framework=None, server="http.server")) == "http.server"
    hidden = _listener(holders=(), user="root")
    assert "hidden" in render.program(hidden)


def test_uptime_formats() -> None:
    assert render.uptime(100.0, now=105.0) == "5s"
    assert render.uptime(0.0, now=3 * 3600 + 120) == "3h 2m"
    assert render.uptime(None) == "?"


def test_envelope_is_one_json_document_with_status() -> None:
    doc = json.loads(render.envelope("list", 0, {"listeners": []}, warnings=[]))
    assert doc["command"] == "list" and doc["ok"] is True and doc["exit_code"] == 0
    assert doc["listeners"] == []


def test_json_keeps_hostile_data_faithfully() -> None:
    proc = ProcessInfo(pid=7, ppid=1, name="n", user="u", cmdline=("a\x1b[2Jb", "ü\u202e"))
    li = _listener(holders=(Holder(proc),))
    doc = json.loads(render.envelope("list", 0, {"listeners": [li.to_dict()]}))
    assert doc["listeners"][0]["cmdline"] == ["a\x1b[2Jb", "ü\u202e"]
