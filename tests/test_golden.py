"""Every command's look, on fixed data: a change to the output is a diff in tests/golden/.

The renderers are pure, so each command's text is built here from constructed processes,
sockets and outcomes (the app model and the planner run on them for real, no OS involved)
and compared with tests/golden/COMMAND.txt, whole: in a pipe (no width) and at 40, 80 and 120
columns. A change to the look must change the golden file in the same commit:

    PORTINSPECT_GOLDEN=update .venv/bin/pytest tests/test_golden.py

rewrites the files; read the diff before committing it. Beside the files, each test checks
what must hold whatever the look: no line wider than the screen, and colour that changes
nothing but colour.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from portinspect import render
from portinspect.apptree import AppModel
from portinspect.audit import Level, assess
from portinspect.classifier import classify
from portinspect.kill.plan import Who, plan_kill
from portinspect.models import (
    Family,
    KillOutcome,
    KillStatus,
    KillStep,
    KillTrace,
    PortState,
    PortView,
    ProcessInfo,
    Proto,
    RunEvent,
    ServerReport,
    Snapshot,
    Socket,
    TargetReport,
    Teardown,
    WaitResult,
    WaitTarget,
)
from portinspect.models.run import PortCheck
from portinspect.render.common import Screen
from portinspect.render.usage import overview

from .test_audit import FLASK, Proc, facts, tunnel

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PORTINSPECT_GOLDEN") == "update"
WIDTHS = (None, 40, 80, 120)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = 1_700_000_400.0  # "now" for uptimes: 400 s after the processes started

Render = Callable[[Screen], str]


def golden(
    name: str, cases: dict[str, Render], lines: dict[str, Callable[[], str]] | None = None
) -> None:
    """Render every case at every width, check what must always hold, compare with the file.
    lines: one-line messages (progress and errors on stderr, a server's own lines), which stay
    one line whatever the width: the terminal wraps them."""
    sections = []
    for title, line in (lines or {}).items():
        text = line()
        assert "\n" not in text, f"{title}: more than one line"
        sections.append(f"== {title}, one line\n{text}\n")
    for title, draw in cases.items():
        for width in WIDTHS:
            plain = draw(Screen(width, color=False))
            coloured = draw(Screen(width, color=True))
            assert ANSI.sub("", coloured) == plain, f"{title}: colour changed the text"
            if width is not None:
                wide = [line for line in plain.splitlines() if len(line) > width]
                assert not wide, f"{title} at {width} columns: {wide}"
            sections.append(f"== {title}, {width or 'pipe'}\n{plain}\n")
    text = "\n".join(sections)
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    diff = "\n".join(
        difflib.unified_diff(
            expected.splitlines(), text.splitlines(), "golden", "now", lineterm="", n=1
        )
    )
    assert text == expected, f"the look of `{name}` changed:\n{diff}"


# --- one machine, made up: a demo runner with four apps under it -----------------------------

V = "/srv/app/.venv/bin"
STARTED = NOW - 400


def proc(pid: int, ppid: int, *argv: str, env: dict[str, str] | None = None) -> ProcessInfo:
    name = argv[0].rsplit("/", 1)[-1][:15]
    return ProcessInfo(
        pid, ppid, name, "dev", tuple(argv), "/srv/app", STARTED, env=dict(env or {})
    )


PROCESSES = {
    p.pid: p
    for p in (
        ProcessInfo(1, 0, "init", "root", ("/sbin/init",)),
        proc(4000, 1, f"{V}/python", "demo.py", "--all"),
        # uvicorn --reload: the reloader holds the socket, its spawned child serves.
        proc(4242, 4000, f"{V}/python", f"{V}/uvicorn", "main:app", "--reload", "--port", "8002"),
        proc(
            4243,
            4242,
            f"{V}/python",
            "-B",
            "-c",
            "from multiprocessing.resource_tracker import main;main(4)",
        ),
        proc(
            4244,
            4242,
            f"{V}/python",
            "-B",
            "-c",
            "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)",
            "--multiprocessing-fork",
        ),
        # Two http.servers on port 8000, one per loopback: only their tails differ.
        proc(4300, 4000, f"{V}/python", "-m", "http.server", "8000", "--bind", "127.0.0.1"),
        proc(4301, 4000, f"{V}/python", "-m", "http.server", "8000", "--bind", "::1"),
        # gunicorn -w 4: a master and four identical workers sharing its socket.
        proc(4400, 4000, "gunicorn: master [shop:app]"),
        *(proc(4401 + i, 4400, "gunicorn: worker [shop:app]") for i in range(4)),
        # A Jupyter server and its kernel, which listens on ports of its own.
        proc(4700, 4000, f"{V}/python", f"{V}/jupyter-server", "--port", "8888", "--no-browser"),
        proc(
            4701,
            4700,
            f"{V}/python",
            "-m",
            "ipykernel_launcher",
            "-f",
            "/srv/app/.local/share/jupyter/runtime/kernel-1a2b.json",
            env={"JPY_PARENT_PID": "4700"},
        ),
        # npm runs vite through `sh -c`: npm is the app's top, node holds the socket.
        proc(4600, 4000, "npm run dev"),
        proc(4601, 4600, "sh", "-c", "vite --port 5173"),
        proc(4602, 4601, "node", "/srv/app/node_modules/.bin/vite", "--port", "5173"),
        # Django's autoreloader: only its child holds the socket.
        proc(4500, 4000, f"{V}/python", "manage.py", "runserver", "0.0.0.0:8001"),
        proc(
            4501,
            4500,
            f"{V}/python",
            "manage.py",
            "runserver",
            "0.0.0.0:8001",
            env={"RUN_MAIN": "true"},
        ),
    )
}
SOCKETS = (
    Socket(Proto.TCP, Family.IPV4, "0.0.0.0", 8001, uid=1000, pids=(4501,)),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 8000, uid=1000, pids=(4300,)),
    Socket(Proto.TCP, Family.IPV6, "::1", 8000, uid=1000, pids=(4301,)),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 8002, uid=1000, pids=(4242, 4244)),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 8003, uid=1000, pids=(4400, *range(4401, 4405))),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 8888, uid=1000, pids=(4700,)),
    *(
        Socket(Proto.TCP, Family.IPV4, "127.0.0.1", p, uid=1000, pids=(4701,))
        for p in (41003, 41007)
    ),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 5173, uid=1000, pids=(4602,)),
    Socket(Proto.UDP, Family.IPV4, "0.0.0.0", 5353, uid=0, pids=()),
    Socket(Proto.TCP, Family.IPV4, "127.0.0.1", 5432, uid=0, pids=()),
)
SNAPSHOT = Snapshot(
    SOCKETS,
    PROCESSES,
    owners_hidden=True,
    user_names={0: "root", 1000: "dev"},
    ephemeral=(32768, 60999),
    privileged=False,
)


def view(port: int) -> PortView:
    """What api.port_view() gives for one port of the made-up machine."""
    model = AppModel(SNAPSHOT)
    mine = tuple(s for s in SOCKETS if s.port == port)
    listeners = tuple(li for li in classify(SNAPSHOT, model=model) if li.port == port)
    return PortView(port, SNAPSHOT, listeners, model.apps(mine, trees=True))


def test_list() -> None:
    listeners = classify(SNAPSHOT)
    risks = {("tcp", 8001): "high", ("tcp", 8000): "info", ("udp", 5353): "medium"}
    golden(
        "list",
        {
            "the table": lambda s: render.list_table(listeners, screen=s),
            "with --risk": lambda s: render.list_table(listeners, risks, s),
            "nothing": lambda s: render.list_table([], screen=s),
        },
    )


def test_who() -> None:
    free = PortState(
        8010,
        {"bound": 1, "time-wait": 3, "established": 1},
        bound_user="dev",
        bind_error=("0.0.0.0", "tcp", "address already in use (EADDRINUSE)"),
        ephemeral=True,
    )
    golden(
        "who",
        {
            "uvicorn --reload": lambda s: render.who_report(view(8002), NOW, s),
            "two http.servers": lambda s: render.who_report(view(8000), NOW, s),
            "gunicorn -w 4": lambda s: render.who_report(view(8003), NOW, s),
            "django, exposed": lambda s: render.who_report(view(8001), NOW, s),
            "another user's": lambda s: render.who_report(view(5432), NOW, s),
            "a Jupyter kernel's port": lambda s: render.who_report(view(41003), NOW, s),
            "vite under npm": lambda s: render.who_report(view(5173), NOW, s),
            "free, but a bind fails": lambda s: render.free_report(free, s),
            "free and clear": lambda s: render.free_report(PortState(8011), s),
        },
    )


# --- kill -------------------------------------------------------------------------------------

WHO = Who("dev", False, frozenset())
HOW = render.describe_ladder(5.0, 15, force=False, windows=False)


def plan(port: int) -> KillOutcome:
    v = view(port)
    planned = plan_kill(port, v.listeners, v.apps, who=WHO, named=(port,), held=v.held_by_port())
    return KillOutcome.dry_run(planned, 0.01)


def freed(port: int) -> KillOutcome:
    planned = plan(port).plan
    step = KillStep("SIGTERM", "top", planned.pids[:1], 0.012)
    trace = KillTrace(steps=(step,), signalled=step.pids, freed_after=0.046, free=True)
    return KillOutcome.after_signals(KillStatus.FREED, planned, trace)


def worded(outcome: KillOutcome) -> KillOutcome:
    return replace(outcome, message=render.kill_message(outcome))


def test_kill() -> None:
    # One app serving many ports: the same plan for each, and the others freed with the first.
    gunicorn = plan(8003)
    many = [
        replace(gunicorn, port=p, plan=replace(gunicorn.plan, port=p)) for p in range(9000, 9030)
    ]
    gone = [
        worded(KillOutcome.gone_meanwhile(replace(gunicorn.plan, port=p), 0.05))
        for p in range(9001, 9030)
    ]
    outcomes = [worded(freed(8002)), worded(freed(8003)), *gone]
    failed = [worded(KillOutcome.blocked(plan(5432).plan, 0.0))] if plan(5432).plan.blocked else []
    golden(
        "kill",
        {
            "dry run": lambda s: render.kill_plans([plan(8002), plan(8000), plan(8003)], HOW, s),
            "dry run of 30 ports of one app": lambda s: render.kill_plans(many, HOW, s),
            "outcomes": lambda s: render.kill_outcomes(outcomes, s),
            "refused": lambda s: render.kill_outcomes(failed, s),
        },
        {
            "progress": lambda: render.kill_step(8002, KillStep("SIGTERM", "top", (4242,), 0.01)),
            "the error for several ports": lambda: (
                render.kill_error(5, failed, [(7000, 7010)]) or ""
            ),
        },
    )


# --- wait, run, audit, the bare command --------------------------------------------------------


def test_wait() -> None:
    db, web = WaitTarget(5432, "db"), WaitTarget(8000, "127.0.0.1", "http", "/health")
    ready = (
        TargetReport(db, Proto.TCP, True, 1.3, ("resolve", "connect"), 5, "10.0.0.2"),
        TargetReport(web, Proto.TCP, True, 0.51, ("socket-table", "http"), 3, "127.0.0.1", 200),
    )
    refused = TargetReport(db, Proto.TCP, False, error="connection refused")
    bare = (TargetReport(WaitTarget(8000), Proto.TCP, True, 0.42),)
    golden(
        "wait",
        {
            "done": lambda s: render.wait_done(WaitResult((5432, 8000), False, 1.3, 9, ready), s),
            "bare port": lambda s: render.wait_done(WaitResult((8000,), False, 0.42, 4, bare), s),
        },
        {
            "start": lambda: render.wait_start([db, web], 30.0, free=False),
            "progress": lambda: render.wait_progress(refused) or "",
        },
    )


def test_run() -> None:
    api = ServerReport("api", ("uvicorn", "main:app", "--port", "15000"), 15000, 4240)
    up = replace(api, url="http://127.0.0.1:15000", ready_after=0.62)
    left = Teardown(
        left=(("api", 4241, (f"{V}/python", "worker.py")),),
        ports=(PortCheck("api", 15000, False, ((4241, "python"),)),),
    )
    golden(
        "run",
        {},
        {
            "starting": lambda: render.run_event(RunEvent("starting", api)),
            "ready": lambda: render.run_event(RunEvent("ready", up)),
            "tests": lambda: render.run_event(RunEvent("tests", command=("pytest", "-x"))),
            "a server's line": lambda: render.server_line("api", "INFO: \x1b[32mstarted\x1b[0m"),
            "teardown left: a process": lambda: render.run_teardown(left)[0],
            "teardown left: a port": lambda: render.run_teardown(left)[1],
        },
    )


def test_audit() -> None:
    findings = assess(
        facts(
            Proc((*FLASK, "--debug"), ports=(5000,)),
            Proc((PY_, "manage.py", "runserver", "127.0.0.1:8000"), address="127.0.0.1"),
            tunnels=[tunnel("ngrok", "http", "8000")],
        )
    )
    golden(
        "audit",
        {
            "report": lambda s: render.audit_report(
                findings, Level.HIGH, failing=2, include_loopback=False, screen=s
            ),
            "who's verdict": lambda s: "\n".join(render.audit_verdict(findings[:1], s)),
            "nothing": lambda s: render.audit_report(
                [], Level.HIGH, failing=0, include_loopback=False, screen=s
            ),
        },
    )


PY_ = "/venv/bin/python3"


def test_bare_command() -> None:
    from typer.main import get_command

    from portinspect._typer_app import ORDER
    from portinspect.cli import app

    group = get_command(app)
    commands = [(name, group.commands[name].short_help or "") for name in ORDER]  # type: ignore[attr-defined]
    golden("usage", {"portinspect": lambda s: overview("0.1.0", commands, s)})


@pytest.mark.parametrize("width", [1, 5, 10, 20])
def test_no_width_breaks_a_renderer(width: int) -> None:
    """Narrower than any layout: every line still fits, cut at its end as a last resort."""
    screen = Screen(width)
    texts = [
        render.list_table(classify(SNAPSHOT), screen=screen),
        render.who_report(view(8002), NOW, screen),
        render.kill_plans([plan(8002)], HOW, screen),
    ]
    for text in texts:
        assert all(len(line) <= max(width, 0) for line in text.splitlines()), text
