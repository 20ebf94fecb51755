"""Ctrl-C and closed pipes: exit 130 with one line and nothing half done; `| head -1` is quiet.

Real SIGINTs go to the installed console script at points the test knows it has reached (each
started with SIGINT's default disposition, which a test run started in the background of a
non-interactive shell would otherwise pass on as "ignored"): a
module import held open by a test-only import hook (tests/ puts a sitecustomize on the child's
PYTHONPATH; nothing in portinspect knows about it), a progress line on stderr, a lease file in
the lease directory. `wait` is covered in tests/test_wait.py. Where a point can only be reached
from inside (a KeyboardInterrupt from a callback), the test says it is injected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from portinspect import freeport, kill, render
from portinspect.cli import app
from portinspect.errors import ExitStatus, NoFreePortError
from portinspect.freeport import find_free_ports

from .holders import holding, still_running, wait_gone
from .support import (
    LOOPBACK4,
    SCRIPT,
    invoke,
    lease_block,
    lease_port,
    lease_ports,
    listening,
    wait_until,
    with_default_sigint,
)

runner = CliRunner()
INTERRUPTED = "portinspect: interrupted\n"

# Imported by the child interpreter at start-up (site.py imports `sitecustomize` from the path).
# When GATE_MODULE is about to be imported, it says so in GATE_READY and sleeps: the SIGINT the
# test then sends lands inside that import, as a Ctrl-C typed at that moment would.
GATE = textwrap.dedent(
    """
    import os, sys, time

    class Gate:
        def find_spec(self, name, path=None, target=None):
            if name == os.environ["GATE_MODULE"]:
                sys.meta_path.remove(self)
                with open(os.environ["GATE_READY"], "w") as ready:
                    ready.write(str(os.getpid()))
                time.sleep(60)
            return None

    if os.environ.get("GATE_MODULE"):
        sys.meta_path.insert(0, Gate())
    """
)


@pytest.fixture
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "leases"
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(path))
    return path


def leftovers(lease_dir: Path) -> list[str]:
    """Everything a search may leave in the lease directory except the lock file."""
    if not lease_dir.exists():
        return []
    return sorted(p.name for p in lease_dir.iterdir() if p.name != ".lock")


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        with_default_sigint([str(SCRIPT), *args]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def gated_env(tmp_path: Path, module: str) -> dict[str, str]:
    hook = tmp_path / "gate"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(GATE)
    return {
        **os.environ,
        "PYTHONPATH": str(hook),
        "GATE_MODULE": module,
        "GATE_READY": str(tmp_path / "gate-ready"),
        "PORTINSPECT_LEASE_DIR": str(tmp_path / "leases"),
    }


# -- Ctrl-C while a module loads: in _entry, in the group, in a command's body ----------------


@pytest.mark.parametrize(
    ("module", "args", "where"),
    [
        ("typer", ["list", "--json"], "the entry point, before cli.py exists"),
        ("portinspect.freeport", ["free", "--no-lease"], "a command, before its body"),
        ("portinspect.kill", ["kill", "--json", "P", "--dry-run"], "a command, before its body"),
        ("tabulate", ["list"], "a command's body"),
    ],
    ids=["typer", "freeport", "kill", "tabulate"],
)
def test_ctrl_c_while_loading_exits_130_with_one_line(
    tmp_path: Path, module: str, args: list[str], where: str
) -> None:
    env = gated_env(tmp_path, module)
    args = [str(lease_port()) if a == "P" else a for a in args]
    ready = Path(env["GATE_READY"])
    with started(args, env) as proc:
        wait_until(ready.exists, timeout=30, what=f"{' '.join(args)} to import {module}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitStatus.INTERRUPTED, (where, err)
    assert err == INTERRUPTED, where
    if "--json" in args:
        doc = json.loads(out)
        assert doc["exit_code"] == 130 and doc["error"] == {"message": "interrupted"}
    else:
        assert out == ""


# -- Ctrl-C in kill: mid-escalation, nothing more is sent, and the report says what was -------


def test_ctrl_c_mid_escalation_stops_and_reports_what_was_sent() -> None:
    with (
        holding(ignore_term=True) as h,
        started(["kill", str(h.port), "--timeout", "60", "--json"], dict(os.environ)) as proc,
    ):
        assert proc.stderr is not None
        progress = proc.stderr.readline()  # the SIGTERM went out; 30 s until the next stage
        assert f"SIGTERM -> pid {h.root.pid} (top)" in progress
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        # No SIGKILL followed: the holder ignores SIGTERM and still runs, holding its port.
        assert still_running(h.ids) == [h.root.pid]
        assert h.holds_port()
    assert proc.returncode == ExitStatus.INTERRUPTED
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith(
        f"portinspect: port {h.port}: interrupted after SIGTERM to pid {h.root.pid} (server) at "
    )
    assert err.endswith("; nothing more was sent; the port is still held\n")
    [port] = json.loads(out)["ports"]
    assert port["status"] == "interrupted" and port["exit_code"] == 130
    assert port["signalled"] == [h.root.pid]
    assert [(s["signal"], s["scope"]) for s in port["steps"]] == [("SIGTERM", "top")]


def test_ctrl_c_between_ports_leaves_the_next_untouched() -> None:
    """Injected: the progress callback raises KeyboardInterrupt after the first port's SIGTERM."""

    def interrupt(port: int, step: Any) -> None:
        raise KeyboardInterrupt

    with holding() as first, holding() as second:
        ports = sorted([first.port, second.port])
        with pytest.raises(kill.KillInterrupted) as info:
            kill.kill_port(ports, timeout=5, on_step=interrupt)
        held_second = second if ports[1] == second.port else first
        assert still_running(held_second.ids) and held_second.holds_port()
    [outcome] = info.value.outcomes
    assert outcome.port == ports[0] and outcome.status.value == "interrupted"
    assert len(outcome.steps) == 1 and outcome.steps[0].signal == "SIGTERM"
    assert info.value.pending == (ports[1],)
    assert isinstance(info.value, KeyboardInterrupt)  # `except KeyboardInterrupt` still works
    assert render.interrupted_message(info.value.outcomes, info.value.pending).endswith(
        f"; not attempted: port {ports[1]}"
    )


# The batch guarantee, in a child (a SIGINT to the pytest process itself would end the session):
# the first signal of a SIGKILL batch raises a real SIGINT; the whole batch must still go out.
BATCH = textwrap.dedent(
    """
    import json, os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever this run inherited
    import psutil
    from portinspect import kill
    real = psutil.Process.send_signal
    def send_then_ctrl_c(self, sig):
        real(self, sig)
        if sig == signal.SIGKILL:
            os.kill(os.getpid(), signal.SIGINT)
    psutil.Process.send_signal = send_then_ctrl_c
    try:
        kill.kill_port(int(sys.argv[1]), force=True)
        print(json.dumps({"interrupted": False}))
    except kill.KillInterrupted as exc:
        [o] = exc.outcomes
        print(json.dumps({"interrupted": True, "status": o.status.value,
                          "steps": [[s.signal, list(s.pids)] for s in o.steps]}))
    """
)


def test_ctrl_c_during_a_sigkill_batch_lets_the_batch_finish() -> None:
    with holding(child=True, ignore_term=True) as h:
        [child] = h.root.children()
        proc = subprocess.run(
            [sys.executable, "-c", BATCH, str(h.port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert wait_gone(h.ids) == []  # the top and its child alike: no orphan left serving
    result = json.loads(proc.stdout)
    assert result["interrupted"] is True and result["status"] == "interrupted"
    assert result["steps"] == [["SIGKILL", [h.root.pid, child.pid]]]


# -- Ctrl-C in free: no lease, no temp file left behind ---------------------------------------


def quiet_window(count: int) -> tuple[int, int]:
    """A range of 3000 ports whose first `count` free ones are leased to this test.

    The search under test runs in a private lease directory, blind to other leases, and
    probes (binds, briefly) every port it takes: it must take only ours. From 20000 up no
    lease is handed out unless asked (the suite's ports come from 10000-14999, `free`'s and
    the plugin's from 15000 up), so the first free ports of the window are exactly the ones
    leased here. (Benchmarks may hold thousands of ports, hence the look for a window.)
    """
    for low in range(20000, 29001, 1000):
        with contextlib.suppress(NoFreePortError):
            lease_ports(count, near=low, port_range=(low, low + 2999), allow_unsafe=True)
            return low, low + 2999
    pytest.skip(f"no range of 3000 ports with {count} free ones in 20000-31999 on this machine")


def test_ctrl_c_mid_search_through_the_console_script_leaves_no_lease(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    env = {**os.environ, "PORTINSPECT_LEASE_DIR": str(leases)}
    # 1000 ports: about 100 ms of probing and leasing, long enough to be caught in the middle.
    low, high = quiet_window(1000)
    args = ["free", "--count", "1000", "--range", f"{low}-{high}", "--allow-unsafe", "--json"]
    for _attempt in range(3):
        with started(args, env) as proc:
            wait_until(
                lambda: proc.poll() is not None or any(".lease" in n for n in leftovers(leases)),
                timeout=30,
                what="the first lease",
            )
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        if proc.returncode == 0:  # it finished first: give the ports back and try again
            freeport.LeaseStore(leases).release_ports(json.loads(out)["ports"], proc.pid)
            continue
        assert proc.returncode == ExitStatus.INTERRUPTED, err
        assert err == INTERRUPTED
        assert json.loads(out)["exit_code"] == 130
        assert leftovers(leases) == []
        return
    pytest.fail("free finished three times before the interrupt reached it")


def test_ctrl_c_in_the_explain_callback_gives_the_leases_back(lease_dir: Path) -> None:
    """Injected: explain() runs after the walk, when every port of the answer is leased."""
    calls = []

    def explain(skip: Any) -> None:
        calls.append(skip)
        raise KeyboardInterrupt

    base = lease_block(4)
    with listening(LOOPBACK4, port=base), pytest.raises(KeyboardInterrupt):
        # base is skipped (held by us) before base+1..base+3 are leased.
        find_free_ports(base, 3, port_range=(base, base + 3), explain=explain)
    assert len(calls) == 1
    assert leftovers(lease_dir) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, BrokenPipeError], ids=["ctrl-c", "epipe"])
def test_free_gives_the_leases_back_when_its_answer_is_not_delivered(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    """Injected: the write of the answer fails (Ctrl-C or a closed stdout while printing)."""
    import portinspect._output

    def broken_write(text: str, *, as_json: bool) -> None:
        raise failure

    monkeypatch.setattr(portinspect._output, "write", broken_write)
    result = runner.invoke(app, ["free", "--count", "3", "--near", str(lease_block(3))])
    assert leftovers(lease_dir) == []
    if failure is KeyboardInterrupt:
        assert result.exit_code == ExitStatus.INTERRUPTED and result.stderr == INTERRUPTED
    else:
        assert isinstance(result.exception, BrokenPipeError)  # for _entry: die as SIGPIPE would


def test_ctrl_c_after_the_search_while_explaining_gives_the_leases_back(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: the interrupt comes while the explain lines are built, leases in hand."""

    def interrupted(skips: Any) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(freeport, "explain_lines", interrupted)
    code, _, err = invoke("free", "--count", "2", "--near", str(lease_block(2)), "--explain")
    assert code == ExitStatus.INTERRUPTED
    assert err == INTERRUPTED
    assert leftovers(lease_dir) == []


# -- the held-interrupt block itself, in a child ----------------------------------------------

HELD = textwrap.dedent(
    """
    import json, os, signal, threading
    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever this run inherited
    from portinspect import _interrupts
    seen = []
    try:
        with _interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            seen.append("block finished")
    except KeyboardInterrupt:
        seen.append("raised after")
    restored = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a program that ignores Ctrl-C keeps its way
    with _interrupts.held():
        os.kill(os.getpid(), signal.SIGINT)
    seen.append("ignored")
    print(json.dumps({"seen": seen, "restored": restored}))
    """
)


def test_held_interrupts_are_raised_after_the_block() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HELD], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "seen": ["block finished", "raised after", "ignored"],
        "restored": True,
    }


# -- closed pipes -----------------------------------------------------------------------------

# A listener whose command line is 300 KB (three arguments, each under the kernel's 128 KiB
# limit): `who` prints it on one line and `list --json` in the document, far more than a pipe
# holds (64 KiB). Many listeners would do too, at the cost of leasing thousands of ports.
BIG = ["x" * 100_000, "y" * 100_000, "z" * 100_000]


@pytest.fixture(scope="module")
def big_listener() -> Iterator[int]:
    with holding(args=BIG) as h:
        yield h.port


@pytest.mark.parametrize(
    ("args", "first"),
    [(["who", "P"], b"Port "), (["list", "--port", "P", "--json"], b"{")],
    ids=["who table", "list json"],
)
def test_piped_to_head_dies_quietly_of_sigpipe(
    big_listener: int, args: list[str], first: bytes
) -> None:
    argv = [str(SCRIPT), *(str(big_listener) if a == "P" else a for a in args)]
    producer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None and producer.stderr is not None
    head = subprocess.Popen(["head", "-1"], stdin=producer.stdout, stdout=subprocess.PIPE)
    producer.stdout.close()  # head alone reads it now, as in a shell pipeline
    try:
        line, _ = head.communicate(timeout=60)
        err = producer.stderr.read()
        producer.wait(timeout=60)
    finally:
        for proc in (producer, head):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        producer.stderr.close()
    assert line.startswith(first)
    assert err == b""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert producer.returncode == -signal.SIGPIPE  # as ls and ss: a shell reports 141


def test_a_closed_stderr_does_not_stop_kill_half_way() -> None:
    with holding() as h:
        proc = subprocess.Popen(
            [str(SCRIPT), "kill", str(h.port), "--timeout", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        proc.stderr.close()  # its progress lines now meet EPIPE
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert wait_gone(h.ids) == []
    assert out.startswith(f"port {h.port} freed in ")
