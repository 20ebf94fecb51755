"""`kill` never signals pid 0, pid 1, portinspect itself or its ancestors, nor a reused pid.

Two lines of defence are tested apart: the plan refuses (kill.plan.plan_kill), and the signal path
(kill.escalate.Escalation.signal/send, the code every signal goes through) refuses again even when
handed a plan that lists those processes. Where the processes are real and precious (the pytest
process, its ancestors, this machine's pid 1), os.kill is replaced by a spy that records and
delivers nothing, so a broken guard fails the test instead of killing the test run.

Pid reuse is forced for real, inside a private pid namespace (unshare) where nothing else
forks: a process is captured, exits, and ns_last_pid makes a new process take its pid; the
captured handle must then refuse to signal, and the newcomer must still run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace

import psutil
import pytest

from portinspect import _psutil, scanner
from portinspect.kill import kill_port
from portinspect.kill.escalate import Clock, Escalation, ladder
from portinspect.kill.plan import Who
from portinspect.models import KillPlan, KillStatus, KillTarget, ProcessInfo, Proto

from .plans import plan_for, reasons
from .support import (
    LOOPBACK4,
    SCRIPT,
    is_root,
    lease_port,
    listening,
    port_of,
    run_in_namespace,
    wait_until,
)


def _lineage_now() -> frozenset[int]:
    """This pytest process and every ancestor up to pid 1, read when asked.

    Not at import: an ancestor may exit while the suite runs (a wrapper shell, `nohup`-like
    launchers), and a pid read minutes earlier may be gone. A test reads it when it runs.
    """
    return scanner.self_lineage()


@pytest.fixture
def lineage() -> frozenset[int]:
    return _lineage_now()


@pytest.fixture
def ancestors(lineage: frozenset[int]) -> list[int]:
    return sorted(lineage - {os.getpid()})


def _info(pid: int) -> ProcessInfo:
    found = scanner.read_processes([pid]).get(pid)
    return found or ProcessInfo(pid=pid, ppid=0, name=None, user=None)


@pytest.fixture
def os_kill_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Every os.kill from here on is recorded; only signal 0 (a permission check) goes out."""
    sent: list[tuple[int, int]] = []
    real = os.kill

    def spy(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        if sig == 0:
            real(pid, 0)

    monkeypatch.setattr(os, "kill", spy)
    yield sent


def _signals(sent: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(pid, sig) for pid, sig in sent if sig != 0]


def test_lineage_is_every_ancestor_up_to_pid_1() -> None:
    def psutils() -> frozenset[int]:
        return frozenset({os.getpid(), *(p.pid for p in psutil.Process().parents())})

    # Read twice, by two means: an ancestor exiting between the two reads is retried.
    lineage = wait_until(lambda: (a := _lineage_now()) == psutils() and a, what="agreement")
    assert 1 in lineage


# -- the plan refuses -------------------------------------------------------------------------

PROTECTED = [
    pytest.param(ProcessInfo(pid=0, ppid=0, name="swapper", user="root"), id="pid 0"),
    pytest.param(ProcessInfo(pid=1, ppid=0, name="anything", user="root"), id="pid 1"),
]


@pytest.mark.parametrize("proc", PROTECTED)
def test_plan_refuses_pid_0_and_1(proc: ProcessInfo) -> None:
    plan = plan_for(8000, [proc], {proc.pid: proc})
    assert plan.blocked is KillStatus.REFUSED
    assert "protected" in reasons(plan)[0]


# Pids differ between runs and xdist workers, so each test walks the whole lineage itself.


def test_plan_refuses_this_process_and_each_ancestor(
    lineage: frozenset[int], ancestors: list[int]
) -> None:
    for pid in [os.getpid(), *ancestors]:
        proc = _info(pid)
        plan = plan_for(8000, [proc], {pid: proc}, lineage=lineage)
        assert plan.blocked is KillStatus.REFUSED, pid
        assert f"pid {pid}" in reasons(plan)[0], pid


def test_a_forged_tree_never_takes_in_one_of_ours(
    lineage: frozenset[int], ancestors: list[int]
) -> None:
    """The holder is a stranger, and its tree (forged: ours shown as its child) holds one of
    ours: the app model leaves it out, so the plan cannot name it."""
    top = ProcessInfo(pid=999_999, ppid=1, name="python3", user="root", cmdline=("python3",))
    for pid in [os.getpid(), *ancestors]:
        forged = replace(_info(pid), ppid=top.pid)
        plan = plan_for(8000, [top], {top.pid: top, pid: forged}, lineage=lineage)
        assert pid not in plan.pids, pid
        assert plan.pids == (top.pid,), pid


# -- the signal path refuses, whatever the plan says ------------------------------------------


def _forged_execution(pids: list[int], lineage: frozenset[int]) -> Escalation:
    """An escalation of a plan that wrongly lists pids, with real handles for them."""
    targets = tuple(KillTarget(_info(pid), None, i == 0, True) for i, pid in enumerate(pids))
    handles = {pid: _psutil.Handle(psutil.Process(pid)) for pid in pids}
    return Escalation(
        KillPlan(8000, targets),
        handles,
        protos=frozenset({Proto.TCP}),
        who=Who("root", True, lineage),
        clock=Clock(),
        inodes=set(),
    )


def test_signal_path_never_signals_init_us_or_an_ancestor(
    os_kill_spy: list[tuple[int, int]], lineage: frozenset[int], ancestors: list[int]
) -> None:
    for pid in [1, os.getpid(), *ancestors]:
        execution = _forged_execution([pid], lineage)
        for sig in (signal.SIGTERM, signal.SIGKILL, None):
            assert execution.signal(_psutil.Handle(psutil.Process(pid)), sig) is False, (pid, sig)
        for stage in ladder(0.1, signal.SIGTERM, force=False, windows=False):
            execution.send(stage)
        assert execution.steps == [] and execution.signalled == [], pid
    assert _signals(os_kill_spy) == []


def test_whole_forged_lineage_in_one_batch(
    os_kill_spy: list[tuple[int, int]], lineage: frozenset[int]
) -> None:
    execution = _forged_execution(sorted(lineage), lineage)
    [stage] = ladder(1.0, signal.SIGTERM, force=True, windows=False)
    execution.send(stage)
    assert execution.steps == [] and _signals(os_kill_spy) == []


def test_kill_port_held_by_this_process_is_refused(os_kill_spy: list[tuple[int, int]]) -> None:
    with listening(LOOPBACK4) as sock:
        [out] = kill_port(port_of(sock), timeout=1)
    assert out.status is KillStatus.REFUSED and out.signalled == ()
    assert f"pid {os.getpid()}" in out.message and "ancestors" in out.message
    assert _signals(os_kill_spy) == []


# A holder whose child runs `portinspect kill` on the holder's own port: the holder and the
# child are both ancestors of portinspect, and the child is in the holder's app tree.
GRANDPARENT = textwrap.dedent(
    """
    import json, os, socket, subprocess, sys
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(sys.argv[2])))
    sock.listen()
    port = sock.getsockname()[1]
    child = (
        "import json, subprocess, sys\\n"
        "run = subprocess.run([sys.argv[1], 'kill', sys.argv[2], '--json', '--timeout', '1'],"
        " capture_output=True, text=True)\\n"
        "print(json.dumps({'code': run.returncode, 'out': run.stdout, 'err': run.stderr}))"
    )
    run = subprocess.run([sys.executable, "-c", child, sys.argv[1], str(port)],
                         capture_output=True, text=True)
    print(json.dumps({"pid": os.getpid(), "child": json.loads(run.stdout)}))
    """
)


def test_console_script_refuses_its_grandparent_and_parent() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", GRANDPARENT, str(SCRIPT), str(lease_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # It printed after `portinspect kill` returned, and exited by itself: it was not killed.
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["child"]["code"] == 5, result
    [port] = json.loads(result["child"]["out"])["ports"]
    assert port["status"] == "refused" and port["signalled"] == []
    assert f"pid {result['pid']}" in port["message"] and "ancestors" in port["message"]


def test_capture_refuses_a_start_time_one_clock_tick_off() -> None:
    me = psutil.Process()
    for delta in (0.01, -0.01):
        seen = ProcessInfo(pid=me.pid, ppid=None, name=None, user=None,
                           create_time=me.create_time() + delta)  # fmt: skip
        assert _psutil.capture(seen) is None, delta


# -- pid reuse, forced in a private pid namespace ---------------------------------------------

REUSE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    import psutil
    from portinspect import _psutil
    from portinspect.kill.escalate import Clock, Escalation, ladder
    from portinspect.kill.plan import Who
    from portinspect.models import KillPlan, KillTarget, ProcessInfo, Proto

    SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
    spawned = time.monotonic()
    victim = subprocess.Popen(SLEEPER)
    started = psutil.Process(victim.pid).create_time()
    info = ProcessInfo(pid=victim.pid, ppid=os.getpid(), name="python", user="root",
                       cmdline=tuple(SLEEPER), create_time=started)
    handle = _psutil.capture(info)  # discovery: the handle every signal goes through
    assert handle is not None
    victim.kill()
    victim.wait()
    # psutil tells processes apart by start time, counted in clock ticks (10 ms): a pid
    # reused within the same tick could not be told apart. Let a few ticks pass.
    while time.monotonic() < spawned + 0.05:
        time.sleep(0.01)
    impostor = None
    for _ in range(20):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(victim.pid - 1))
        candidate = subprocess.Popen(SLEEPER)
        if candidate.pid == victim.pid:
            impostor = candidate
            break
        candidate.kill()
        candidate.wait()
    if impostor is None:
        print(json.dumps({"skip": "the pid was not handed out again"}))
        sys.exit(0)
    plan = KillPlan(1, (KillTarget(info, None, True, True),))
    execution = Escalation(plan, {info.pid: handle}, protos=frozenset({Proto.TCP}),
                           who=Who("root", True, frozenset({os.getpid()})), clock=Clock(),
                           inodes=set())
    result = {"pid": victim.pid, "same_pid": impostor.pid == victim.pid}
    result["signal"] = [execution.signal(handle, s) for s in (signal.SIGTERM, signal.SIGKILL)]
    for stage in ladder(0.1, signal.SIGTERM, force=False, windows=False):
        execution.send(stage)
    [forced] = ladder(0.1, signal.SIGTERM, force=True, windows=False)
    execution.send(forced)
    result["steps"] = len(execution.steps)
    result["alive"] = handle.alive()
    result["recaptured"] = _psutil.capture(info) is not None
    # Untouched, proven at once rather than by waiting to see it die: a signal sent to it
    # would still be pending (SigPnd/ShdPnd), or it would have exited.
    pending = 0
    with open(f"/proc/{impostor.pid}/status") as f:
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:")):
                pending |= int(line.split()[1], 16)
    result["impostor_running"] = impostor.poll() is None and pending == 0
    impostor.kill()
    impostor.wait()
    print(json.dumps(result))
    """
)


@pytest.mark.skipif(not is_root(), reason="forcing a pid needs root (ns_last_pid)")
@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1) for a private pid ns")
def test_a_reused_pid_is_never_signalled() -> None:
    result = run_in_namespace(["--pid", "--fork", "--mount", "--mount-proc"], REUSE)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result == {
        "pid": result["pid"],
        "same_pid": True,
        "signal": [False, False],  # psutil saw another start time: NoSuchProcess, not a signal
        "steps": 0,
        "alive": False,
        "recaptured": False,  # a fresh discovery would not take the newcomer for the old one
        "impostor_running": True,
    }
