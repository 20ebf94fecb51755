"""Results -> text: one renderer per command, pure functions returning strings; nothing here
prints (cli.py does, through _output.py).

    common.py   clean(), the Screen (width, colour), cutting, wrapping, tables that fit
    listing.py  list          who.py   who (and the app trees kill shares)
    kill.py     kill          wait.py  wait          run.py  run          audit.py  audit
    usage.py    the overview a bare `portinspect` prints

`render.X` finds X in its module on first use (PEP 562), so a command imports only its own
renderer (and the models that renderer reads); code inside the package imports from the
modules themselves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portinspect._output import SCHEMA_VERSION as SCHEMA_VERSION
    from portinspect._output import envelope as envelope
    from portinspect.render.audit import audit_report as audit_report
    from portinspect.render.audit import audit_verdict as audit_verdict
    from portinspect.render.audit import finding_lines as finding_lines
    from portinspect.render.common import PIPE as PIPE
    from portinspect.render.common import Screen as Screen
    from portinspect.render.common import clean as clean
    from portinspect.render.common import command_line as command_line
    from portinspect.render.common import pids as pids
    from portinspect.render.common import uptime as uptime
    from portinspect.render.kill import describe_ladder as describe_ladder
    from portinspect.render.kill import interrupted_message as interrupted_message
    from portinspect.render.kill import kill_error as kill_error
    from portinspect.render.kill import kill_message as kill_message
    from portinspect.render.kill import kill_outcome as kill_outcome
    from portinspect.render.kill import kill_outcomes as kill_outcomes
    from portinspect.render.kill import kill_plan as kill_plan
    from portinspect.render.kill import kill_plans as kill_plans
    from portinspect.render.kill import kill_step as kill_step
    from portinspect.render.kill import reason_text as reason_text
    from portinspect.render.kill import signal_name as signal_name
    from portinspect.render.listing import list_table as list_table
    from portinspect.render.listing import program as program
    from portinspect.render.run import run_event as run_event
    from portinspect.render.run import run_teardown as run_teardown
    from portinspect.render.run import server_line as server_line
    from portinspect.render.run import server_tail as server_tail
    from portinspect.render.wait import wait_done as wait_done
    from portinspect.render.wait import wait_progress as wait_progress
    from portinspect.render.wait import wait_start as wait_start
    from portinspect.render.who import free_report as free_report
    from portinspect.render.who import hidden_owner as hidden_owner
    from portinspect.render.who import stop_advice as stop_advice
    from portinspect.render.who import tree_lines as tree_lines
    from portinspect.render.who import who_report as who_report

_HOMES = {
    "portinspect._output": ("SCHEMA_VERSION", "envelope"),
    "portinspect.render.audit": ("audit_report", "audit_verdict", "finding_lines"),
    "portinspect.render.common": (
        "PIPE",
        "Screen",
        "clean",
        "command_line",
        "pids",
        "uptime",
        "who",
    ),
    "portinspect.render.kill": (
        "describe_ladder",
        "interrupted_message",
        "kill_error",
        "kill_message",
        "kill_outcome",
        "kill_outcomes",
        "kill_plan",
        "kill_plans",
        "kill_step",
        "reason_text",
        "signal_name",
    ),
    "portinspect.render.listing": ("list_table", "program"),
    "portinspect.render.run": ("run_event", "run_teardown", "server_line", "server_tail"),
    "portinspect.render.wait": ("wait_done", "wait_progress", "wait_start"),
    "portinspect.render.who": (
        "free_report",
        "hidden_owner",
        "stop_advice",
        "tree_lines",
        "who_report",
    ),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def app_json(app: Any) -> dict[str, Any]:
    """One app of `who --json` and `kill --json` (now App.to_dict())."""
    result: dict[str, Any] = app.to_dict()
    return result
