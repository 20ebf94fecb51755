"""`kill`: the pure plan, the escalation ladder on real processes, and real dev servers.

Every process these tests start is stopped by pid (psutil.Process, which checks the
start time) in a finally block or a fixture, whatever the test did.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from portinspect import _psutil, kill, render, scan
from portinspect.errors import ExitStatus, UsageError
from portinspect.inputs import parse_signal
from portinspect.kill import escalate, kill_port
from portinspect.kill.escalate import ladder
from portinspect.kill.plan import plan_kill
from portinspect.models import KillOutcome, KillPlan, KillStatus, ProcessInfo

from .holders import (
    HOLDER,
    holding,
    identities,
    pending_signals,
    session_members,
    still_running,
    wait_gone,
)
from .plans import plan_for, reasons
from .servers import Server
from .support import (
    endpoint,
    invoke,
    is_root,
    lease_block,
    lease_port,
    run_as_nobody,
    run_cli,
    same_socket,
    wait_until,
)

KILL_TIMEOUT = "3"  # seconds of graceful exit; every server here frees its port in < 0.5 s


# -- helpers -------------------------------------------------------------------------------


def kill_json(*args: str) -> tuple[int, dict[str, object], str]:
    proc = run_cli("kill", *args, "--json")
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def untouched(ids: set[tuple[int, float]]) -> bool:
    """Every process still runs and none has a signal waiting: nothing was sent to them.

    Checked at once, without a window: a signal is pending from the moment it is sent
    until its target acts on it, and after that the target has exited.
    """
    pids = [pid for pid, _ in ids]
    return sorted(still_running(ids)) == sorted(pids) and not any(
        pending_signals(pid) & {signal.SIGTERM, signal.SIGKILL, signal.SIGINT} for pid in pids
    )


# -- the plan, pure ------------------------------------------------------------------------


def info(pid: int, ppid: int, *argv: str, user: str = "alice") -> ProcessInfo:
    return ProcessInfo(pid=pid, ppid=ppid, name=argv[0].split("/")[-1], user=user, cmdline=argv)


GUNICORN = {
    100: info(100, 50, "gunicorn: master [app:app]"),
    101: info(101, 100, "gunicorn: worker [app:app]"),
    102: info(102, 100, "gunicorn: worker [app:app]"),
    103: info(103, 101, "/usr/bin/python3", "-c", "helper"),
}


def test_plan_puts_the_top_first_then_the_tree_parents_before_children() -> None:
    holders = [GUNICORN[100], GUNICORN[101], GUNICORN[102]]
    plan = plan_for(8000, holders, GUNICORN, user="alice", privileged=False)
    assert plan.blocked is None
    assert plan.pids == (100, 101, 102, 103)
    assert [t.top for t in plan.targets] == [True, False, False, False]
    assert [t.holds_port for t in plan.targets] == [True, True, True, False]
    assert [t.role for t in plan.targets][:3] == ["master", "worker", "worker"]
    assert plan.server == "gunicorn"


def test_plan_refuses_portinspects_own_lineage() -> None:
    shell = info(40, 1, "/usr/bin/python3", "holder.py")
    plan = plan_for(8000, [shell], {40: shell}, lineage=frozenset({40, 41}))
    assert plan.blocked is KillStatus.REFUSED
    assert "pid 40" in reasons(plan)[0] and "ancestors" in reasons(plan)[0]


def test_plan_refuses_protected_processes() -> None:
    init = info(1, 0, "/sbin/init")
    sshd = info(700, 1, "sshd: /usr/sbin/sshd -D")
    for proc in (init, sshd):
        plan = plan_for(22, [proc], {proc.pid: proc})
        assert plan.blocked is KillStatus.REFUSED, proc
        assert "protected" in reasons(plan)[0]


def test_plan_names_the_container_behind_docker_proxy() -> None:
    flags = (
        "-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80"
    )
    proxy = info(900, 800, "/usr/bin/docker-proxy", *flags.split(" "), user="root")
    plan = plan_for(8080, [proxy], {900: proxy})
    assert plan.blocked is KillStatus.REFUSED
    [hint] = plan.containers
    assert (hint.proxy, hint.pid, hint.container) == ("docker-proxy", 900, "172.17.0.2:80")
    assert "`docker ps --filter publish=8080`" in reasons(plan)[0]
    assert "`docker stop <container>`" in reasons(plan)[0]


def test_plan_finds_the_docker_proxy_of_a_hidden_port_by_its_command_line() -> None:
    proxy = info(900, 0, "docker-proxy", "-host-port", "8080", "-container-port", "80")
    plan = plan_for(8080, [], {}, user="bob", privileged=False, hidden_proxies=(proxy,))
    assert plan.blocked is KillStatus.REFUSED
    assert "docker ps --filter publish=8080" in reasons(plan)[0]


def test_plan_for_another_users_hidden_port_says_sudo() -> None:
    plan = plan_for(8000, [], {}, user="bob", privileged=False)
    assert plan.blocked is KillStatus.PERMISSION_DENIED
    assert reasons(plan) == ["port 8000 belongs to root; run with sudo (nothing was signalled)"]
    as_root = plan_for(8000, [], {}, user="root", privileged=True)
    assert as_root.blocked is KillStatus.REFUSED and "no visible owner" in reasons(as_root)[0]


def test_plan_with_one_foreign_process_in_the_tree_blocks_the_whole_port() -> None:
    top = info(10, 5, "/usr/bin/python3", "serve.py", user="bob")
    child = info(11, 10, "/usr/bin/python3", "helper.py", user="root")
    tree = {10: top, 11: child}
    plan = plan_for(8000, [top], tree, user="bob", privileged=False)
    assert plan.blocked is KillStatus.PERMISSION_DENIED
    assert "pid 11" in reasons(plan)[0] and "sudo" in reasons(plan)[0]
    root_plan = plan_for(8000, [top], tree, user="root")
    assert root_plan.blocked is None


def test_plan_for_a_quiet_port() -> None:
    plan = plan_kill(8000, [], [])
    assert plan.blocked is KillStatus.NOT_LISTENING and plan.targets == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("TERM", signal.SIGTERM), ("sigint", signal.SIGINT), ("15", signal.SIGTERM), ("Hup", 1)],
)
def test_parse_signal(text: str, expected: int) -> None:
    assert parse_signal(text) == expected


@pytest.mark.parametrize("text", ["FOO", "", "0", "SIG", "999", "TERM\n\x1b[2J", 10**6])
def test_parse_signal_rejects_unknown_signals(text: str | int) -> None:
    with pytest.raises(UsageError, match="unknown signal"):
        parse_signal(text)


def test_ladder_sigkill_comes_at_most_timeout_after_the_first_signal() -> None:
    term, kill = signal.SIGTERM, signal.SIGKILL
    stages = ladder(4.0, term, force=False, windows=False)
    assert [(s.signal, s.scope, s.until) for s in stages] == [
        (term, "top", 2.0),
        (term, "tree", 4.0),
        (kill, "all", 0.0),
    ]
    assert stages[0].stop_when_tops_exit
    [forced] = ladder(4.0, term, force=True, windows=False)
    assert (forced.signal, forced.scope) == (kill, "all")
    windows = ladder(4.0, term, force=False, windows=True)
    assert [(s.signal, s.scope) for s in windows] == [(None, "top"), (None, "tree")]
    # A manager restarts what it runs: graceful steps only, never SIGKILL.
    managed = ladder(4.0, term, force=False, windows=False, managed=True)
    assert [(s.signal, s.scope) for s in managed] == [(term, "top"), (term, "tree")]


def _outcome(port: int, status: KillStatus) -> KillOutcome:
    return KillOutcome(port, status, KillPlan(port), message=f"port {port}: {status}")


def error(result: kill.KillReport) -> str | None:
    return render.kill_error(result.status, result.failed, result.empty)


def test_report_counts_a_range_as_one_request_and_the_worst_code_wins() -> None:
    quiet = [_outcome(p, KillStatus.NOT_LISTENING) for p in range(9000, 9005)]
    freed = _outcome(9002, KillStatus.FREED)
    outcomes = [o for o in quiet if o.port != 9002] + [freed]
    result = kill.report(outcomes, [(9000, 9004)])
    assert result.status is ExitStatus.OK and result.outcomes == (freed,)
    assert error(result) is None
    # A port named on its own with nothing listening counts.
    named = kill.report(
        [*outcomes, _outcome(8000, KillStatus.NOT_LISTENING)], [(9000, 9004), (8000, 8000)]
    )
    assert named.status is ExitStatus.NOT_LISTENING
    assert error(named) == "port 8000: not-listening"
    held = kill.report([freed, _outcome(8000, KillStatus.STILL_HELD)], [(9002, 9002), (8000, 8000)])
    assert held.status is ExitStatus.STILL_HELD
    empty = kill.report(quiet, [(9000, 9004)])
    assert empty.status is ExitStatus.NOT_LISTENING and empty.outcomes == ()
    assert error(empty) == "nothing is listening on port 9000-9004"


def test_statuses_map_to_the_documented_exit_codes() -> None:
    codes = {s.value: int(s.exit_status) for s in KillStatus}
    assert codes == {
        "freed": 0,
        "dry-run": 0,
        "not-listening": 3,
        "permission-denied": 4,
        "still-held": 5,
        "managed": 5,
        "refused": 5,
        "declined": 5,
        "interrupted": 130,
    }


def test_cli_default_timeout_is_the_librarys() -> None:
    import inspect

    from portinspect.cli import kill_command

    default = inspect.signature(kill_command).parameters["timeout"].default
    assert float(default) == kill.DEFAULT_TIMEOUT


def test_capture_refuses_a_process_whose_start_time_does_not_match() -> None:
    me = psutil.Process()
    real = ProcessInfo(pid=me.pid, ppid=None, name=None, user=None, create_time=me.create_time())
    assert _psutil.capture(real) is not None
    reused = ProcessInfo(
        pid=me.pid, ppid=None, name=None, user=None, create_time=me.create_time() - 60
    )
    assert _psutil.capture(reused) is None


# -- real processes: the escalation ladder -------------------------------------------------


def test_kill_a_simple_holder_through_the_console_script() -> None:
    with holding() as h:
        code, doc, err = kill_json(str(h.port), "--timeout", KILL_TIMEOUT)
        assert code == 0, err
        h.assert_freed_for_good()
    [port] = doc["ports"]  # type: ignore[index]
    assert port["status"] == "freed" and port["signalled"] == [h.root.pid]
    assert f"port {h.port}: SIGTERM -> pid {h.root.pid} (top)" in err


class DrivenClock:
    """The escalation's clock, advanced by exactly what it sleeps (and the sleeps are real, so
    the holder gets real time to die). The budget is counted on it: a loaded machine that
    stalls the process between two polls cannot make SIGKILL look late. Injected clock;
    the processes and signals are real."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.now += seconds


def test_sigterm_ignored_escalates_to_sigkill_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with holding(ignore_term=True) as h:
        monkeypatch.setattr(escalate, "time", DrivenClock())
        [out] = kill_port(h.port, timeout=1)
        monkeypatch.undo()
        h.assert_freed_for_good()
    assert out.status is KillStatus.FREED
    assert [(s.signal, s.scope) for s in out.steps] == [("SIGTERM", "top"), ("SIGKILL", "all")]
    # SIGKILL when the 1 s graceful budget is spent: not before, and at the first poll after.
    assert 1.0 <= out.steps[1].at - out.steps[0].at <= 1.0 + escalate.POLL


def test_when_the_top_exits_and_its_child_holds_on_the_tree_is_signalled_at_once() -> None:
    # npm/npx die on SIGTERM and orphan the server that holds the port (research §2.2).
    with holding(child=True, keep=False) as h:
        [child] = h.root.children()
        outcomes = kill_port(h.port, timeout=60)
        h.assert_freed_for_good()
    [out] = outcomes
    assert out.status is KillStatus.FREED
    assert [(s.signal, s.scope, s.pids) for s in out.steps] == [
        ("SIGTERM", "top", (h.root.pid,)),
        ("SIGTERM", "tree", (child.pid,)),
    ]
    # As soon as the top was seen gone, not when the tops' half of the budget (30 s) ran out.
    assert out.steps[1].at - out.steps[0].at < 30
    # It re-ran its own command and serves nothing itself: it started the server.
    assert out.plan.targets[0].role == "supervisor"


def test_a_reloader_pair_sharing_the_socket_is_freed_by_sigterm_to_the_top() -> None:
    # werkzeug: parent and child both hold the socket; SIGTERM to the parent alone is
    # not enough here (this parent does not stop its child), so the tree follows.
    with holding(child=True) as h:
        outcomes = kill_port(h.port, timeout=2)
        h.assert_freed_for_good()
    [out] = outcomes
    assert out.status is KillStatus.FREED
    assert {t.process.pid for t in out.plan.targets if t.holds_port} == {p for p, _ in h.ids}


def test_two_ports_in_one_call() -> None:
    with holding() as a, holding() as b:
        code, doc, err = kill_json(str(a.port), str(b.port), "--timeout", KILL_TIMEOUT)
        assert code == 0, err
        for h in (a, b):
            h.assert_freed_for_good()
    assert [p["port"] for p in doc["ports"]] == sorted([a.port, b.port])  # type: ignore[index]
    assert {p["status"] for p in doc["ports"]} == {"freed"}  # type: ignore[index]


def test_worst_code_wins_across_ports() -> None:
    quiet = lease_port()
    with holding() as h:
        code, doc, _ = kill_json(str(h.port), str(quiet), "--timeout", KILL_TIMEOUT)
        assert wait_gone(h.ids) == []
    assert code == ExitStatus.NOT_LISTENING
    statuses = {p["port"]: p["status"] for p in doc["ports"]}  # type: ignore[index]
    assert statuses == {h.port: "freed", quiet: "not-listening"}


def test_dry_run_shows_the_plan_and_signals_nothing() -> None:
    with holding(child=True) as h:
        proc = run_cli("kill", str(h.port), "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert untouched(h.ids)
        assert h.holds_port()
        assert proc.stderr == ""  # no progress: nothing was sent
    lines = proc.stdout.splitlines()
    assert lines[0] == f"port {h.port}, 2 processes"
    # Parent and child share the socket, the parent re-ran its own command: a master.
    assert f"{h.root.pid} *" in proc.stdout and "master" in proc.stdout
    assert lines[-1].startswith("  plan: SIGTERM the top process(es) (*)")


def test_nothing_listening_exits_3() -> None:
    port = lease_port()
    proc = run_cli("kill", str(port))
    assert proc.returncode == 3
    assert proc.stderr == f"portinspect: nothing is listening on port {port}\n"


def test_a_quiet_range_exits_3_with_one_line() -> None:
    low = lease_block(3)
    code, out, err = invoke("kill", f"{low}-{low + 2}")
    assert code == 3 and out == ""
    assert err == f"portinspect: nothing is listening on port {low}-{low + 2}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["kill", "8000", "--signal", "FOO"],
        ["kill", "8000", "--force", "--signal", "INT"],
        ["kill", "8000", "--timeout", "-1"],
        ["kill", "0"],
        ["kill"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    # Refused while parsing: port 8000 is never looked at.
    code, out, err = invoke(*args)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_json_shape() -> None:
    with holding() as h:
        name, user = h.root.name(), h.root.username()
        code, doc, _ = kill_json(str(h.port), "--timeout", KILL_TIMEOUT)
        assert wait_gone(h.ids) == []
    assert code == 0
    assert {k: doc[k] for k in ("schema", "command", "ok", "exit_code", "dry_run")} == {
        "schema": 1,
        "command": "kill",
        "ok": True,
        "exit_code": 0,
        "dry_run": False,
    }
    [port] = doc["ports"]  # type: ignore[index]
    assert set(port) == {
        "port", "status", "exit_code", "message", "framework", "server", "targets", "reasons",
        "containers", "collateral", "manager", "steps", "signalled", "respawned", "survivors",
        "holders", "freed_after", "watched", "elapsed", "apps",
    }  # fmt: skip
    [target] = port["targets"]
    assert target == {
        "pid": h.root.pid,
        "role": "server",
        "top": True,
        "holds_port": True,
        "process": name,
        "user": user,
        "cmdline": [sys.executable, "-c", HOLDER],
    }
    assert port["steps"][0]["signal"] == "SIGTERM" and port["steps"][0]["pids"] == [h.root.pid]
    # freed_after counts from the call, elapsed is this port's whole handling: one port here.
    assert 0 < port["freed_after"] <= port["elapsed"] + 0.05


def test_force_sigkills_the_tree_top_first() -> None:
    with holding(child=True, ignore_term=True) as h:
        [child] = h.root.children()
        [out] = kill_port(h.port, force=True)
        h.assert_freed_for_good()
    assert [(s.signal, s.pids) for s in out.steps] == [("SIGKILL", (h.root.pid, child.pid))]
    assert out.status is KillStatus.FREED


def test_declined_confirmation_signals_nothing() -> None:
    seen: list[KillPlan] = []

    def no(plan: KillPlan) -> bool:
        seen.append(plan)
        return False

    with holding() as h:
        [out] = kill_port(h.port, confirm=no)
        assert untouched(h.ids) and h.holds_port()
    assert out.status is KillStatus.DECLINED and out.exit_status == 5
    assert [p.pids for p in seen] == [(h.root.pid,)]


@pytest.mark.parametrize(("answer", "code", "status"), [("n", 5, "declined"), ("y", 0, "freed")])
def test_on_a_terminal_the_plan_is_shown_and_confirmed(
    monkeypatch: pytest.MonkeyPatch, answer: str, code: int, status: str
) -> None:
    import portinspect.cli

    monkeypatch.setattr(portinspect.cli, "_interactive", lambda: True)
    with holding() as h:
        result = invoke("kill", str(h.port), "--json", input=f"{answer}\n")
        assert result.code == code, result.err
        if answer == "n":
            assert untouched(h.ids) and h.holds_port()
        else:
            h.assert_freed_for_good()
    # CliRunner echoes the typed answer into stdout; a terminal echoes it on the tty.
    echoed, document = result.out.split("\n", 1)
    assert echoed.strip() == answer
    [port] = json.loads(document)["ports"]
    assert port["status"] == status
    assert f"port {h.port}, 1 process" in result.err
    assert f"Stop them to free port {h.port}? [y/N]" in result.err


def test_yes_skips_the_question_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import portinspect.cli

    monkeypatch.setattr(portinspect.cli, "_interactive", lambda: True)
    with holding() as h:
        code, _, err = invoke("kill", str(h.port), "--yes")
        assert code == 0, err
        assert wait_gone(h.ids) == []
    assert "[y/N]" not in err


def test_kill_simulated_windows_terminates_top_then_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no graceful signal: terminate() is TerminateProcess, immediate, and
    children survive their parent. Simulated: terminate() kills, send_signal must not run."""
    calls: list[int] = []

    def terminate(self: psutil.Process) -> None:
        calls.append(self.pid)
        self.kill()

    def no_signals(self: psutil.Process, sig: int) -> None:
        raise AssertionError(f"send_signal({sig}) on Windows")

    with holding(child=True, ignore_term=True) as h:
        [child] = h.root.children()
        monkeypatch.setattr(_psutil, "CAN_SIGNAL", False)
        monkeypatch.setattr(psutil.Process, "terminate", terminate)
        monkeypatch.setattr(psutil.Process, "send_signal", no_signals)
        [out] = kill_port(h.port, timeout=1)
        monkeypatch.undo()
        h.assert_freed_for_good()
    assert calls == [h.root.pid, child.pid]
    assert [(s.signal, s.scope) for s in out.steps] == [("terminate", "top"), ("terminate", "tree")]
    assert out.status is KillStatus.FREED


SELF_KILL = r"""
import json, os, socket, subprocess, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[2])))
sock.listen()
port = sock.getsockname()[1]
run = subprocess.run([sys.argv[1], "kill", str(port), "--json", "--timeout", "1"],
                     capture_output=True, text=True)
print(json.dumps({"port": port, "pid": os.getpid(), "code": run.returncode,
                  "out": run.stdout, "err": run.stderr}))
"""


def test_a_process_killing_its_own_port_is_refused() -> None:
    from .support import SCRIPT

    proc = subprocess.run(
        [sys.executable, "-c", SELF_KILL, str(SCRIPT), str(lease_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # It printed after `portinspect kill` returned, and exited by itself: it was not killed.
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["code"] == ExitStatus.STILL_HELD, result
    [port] = json.loads(result["out"])["ports"]
    assert port["status"] == "refused" and port["signalled"] == []
    assert f"pid {result['pid']}" in port["message"] and "ancestors" in port["message"]


@pytest.mark.skipif(not is_root(), reason="needs root to drop to another user")
@pytest.mark.unprivileged
def test_unprivileged_user_cannot_kill_roots_server(tmp_path: Path) -> None:
    pytest.importorskip("portinspect._linux")
    from .servers import RECIPES, running

    with running(RECIPES["http.server"], tmp_path) as server:
        ids = identities(server.record_tree())
        invoke("kill", str(lease_port()), "--json")  # import typer's and our lazy modules
        invoke("kill", str(server.port), "--dry-run")  # as root: signal 0 only
        code, out, err = run_as_nobody(lambda: list(invoke("kill", str(server.port), "--yes")))
        assert code == ExitStatus.PERMISSION
        assert untouched(ids)
        assert server.holders()
    assert err == (
        f"portinspect: port {server.port} belongs to root; run with sudo (nothing was signalled)\n"
    )
    assert out.startswith(f"port {server.port} belongs to root")


# -- real dev servers (tests/servers.py) ---------------------------------------------------

KILLED_SERVERS = [
    "django",
    "uvicorn",
    "uvicorn-reload",
    "uvicorn-workers",
    "gunicorn",
    "flask-debug",
    "jupyter",
    "http.server",
    pytest.param(
        "npm-run",
        marks=pytest.mark.skipif(shutil.which("npm") is None, reason="needs node and npm"),
    ),
]


@pytest.mark.servers
@pytest.mark.parametrize("real_server", KILLED_SERVERS, indirect=True)
def test_kill_frees_a_real_server_for_good(real_server: Server) -> None:
    server = real_server
    tree = identities(server.record_tree())
    assert len(tree) >= server.recipe.holders
    # Another service on its own port, the way a laptop runs several: never touched.
    with holding() as bystander:
        code, doc, err = kill_json(str(server.port), "--timeout", KILL_TIMEOUT)
        assert code == 0, (doc, err, server.output())
        # For good: the server runs in a session of its own, so once no process of that
        # session runs, nothing is left that could bind the port again (no window to watch).
        wait_until(lambda: not session_members(server.pid), 30, f"{server.recipe.name} to exit")
        assert same_socket(scan(server.port), endpoint(server.port)) == []
        # The bystander still listens from the same processes, watched for a second: what the
        # issue asks, and longer than any server here takes to exit once signalled (< 0.5 s).
        watch_end = time.monotonic() + 1.0
        while time.monotonic() < watch_end:
            assert untouched(bystander.ids) and bystander.holds_port()
            time.sleep(0.05)
    [port] = doc["ports"]  # type: ignore[index]
    assert port["status"] == "freed" and port["survivors"] == [] and port["respawned"] == []
    steps = [(s["signal"], s["scope"], s["pids"]) for s in port["steps"]]
    if server.recipe.leader_holds or server.recipe.name == "django":
        # SIGTERM to the app's top process alone did it (research §2.2: 2-430 ms for all).
        assert steps == [("SIGTERM", "top", [server.pid])]
    else:
        # npm dies on SIGTERM and leaves its script's server holding the port: the tree is
        # signalled as soon as the top is seen gone (research §2.2).
        assert steps[0] == ("SIGTERM", "top", [server.pid])


# -- UDP: only with --udp ------------------------------------------------------------------


def test_a_udp_only_port_is_killed_with_udp_and_left_alone_without() -> None:
    with holding(udp=True) as h:
        code, doc, _ = kill_json(str(h.port), "--timeout", KILL_TIMEOUT)
        assert code == ExitStatus.NOT_LISTENING
        assert untouched(h.ids) and h.holds_port()
        code, doc, err = kill_json(str(h.port), "--udp", "--timeout", KILL_TIMEOUT)
        assert code == 0, err
        h.assert_freed_for_good()
    [port] = doc["ports"]  # type: ignore[index]
    assert port["status"] == "freed" and port["signalled"] == [h.root.pid]


def test_without_udp_a_udp_socket_on_the_same_port_is_not_touched() -> None:
    with holding() as tcp, holding(udp=True, port=tcp.port) as udp:
        code, _, err = kill_json(str(tcp.port), "--timeout", KILL_TIMEOUT)
        assert code == 0, err
        assert wait_gone(tcp.ids) == []
        assert untouched(udp.ids) and udp.holds_port()
