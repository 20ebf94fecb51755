"""`portinspect run`: real servers on leased ports, real tests, real signals, and the proof.

Every run here goes through the installed console script, as a user types it, with a tag in
its environment that every process it starts inherits (keepers, servers, daemons, tests).
After each run the test checks what a user would: the exit status, the JSON document, every
server's port free in the socket table (any address, either family) and no process carrying
the tag left on the machine, which also finds a process that double-forked away from its
parent. Ports are leased by `run` itself from the shared lease directory, as in CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from portinspect import scan, scanner
from portinspect.cli import app
from portinspect.leases import Lease, LeaseStore
from portinspect.models import Proto

from .runs import TAG, assert_not_ours, label, new_tag, project, server_command, tagged
from .support import SCRIPT, endpoint, has_ipv6, same_socket, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: subreaper")

PY = sys.executable
# Variables that would change what the servers do (tests/servers.py scrubs the same).
SCRUB = (
    "RUN_MAIN",
    "WERKZEUG_RUN_MAIN",
    "WERKZEUG_SERVER_FD",
    "DJANGO_SETTINGS_MODULE",
    "FLASK_APP",
    "FLASK_DEBUG",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "PORTINSPECT_LEASE_DIR",  # the shared default, as in CI: parallel runs must see each other
)

# The test command of most runs: GET every named server's URL from the environment run gave it.
CHECK = textwrap.dedent(
    """\
    import os, sys, urllib.request
    for name in sys.argv[1:]:
        url = os.environ[name.upper().replace("-", "_") + "_URL"]
        assert urllib.request.urlopen(url + "/", timeout=20).status == 200, url
    assert os.environ["URL"] and os.environ["PORT"]
    """
)

# A server that daemonizes: double fork, new session, the first child exits 0; only the
# grandchild, reparented away from the top process, serves.
DAEMON = textwrap.dedent(
    """\
    import http.server, os
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            http.server.HTTPServer(
                ("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler
            ).serve_forever()
        os._exit(0)
    """
)


def _env(tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update({TAG: tag, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})
    env["PATH"] = f"{SCRIPT.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def tag() -> Iterator[str]:
    with new_tag() as value:
        yield value


def assert_all_gone(doc: dict[str, Any], tag: str) -> None:
    """The proof a user wants: ports free, no process of the run alive."""
    assert doc["teardown"]["clean"], doc["teardown"]
    for check in doc["teardown"]["ports"]:  # run's own proof, by socket inode
        assert check["free"], check
    assert tagged(tag) == []
    for server in doc["servers"]:
        assert_not_ours(server["port"], tag)
    reported = {s["pid"] for s in doc["servers"] if s["pid"]}
    reported |= {s["pid"] for s in doc["teardown"]["signalled"]}
    for pid in reported:  # gone, or a reused pid that is not ours
        with contextlib.suppress(psutil.Error):
            assert psutil.Process(pid).environ().get(TAG) != tag, pid


def run(
    args: list[str], tag: str, cwd: Path, *, timeout: float = 120
) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [str(SCRIPT), "run", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_env(tag),
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


# -- real dev servers, two at a time -----------------------------------------------------------

needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None, reason="needs node and npm"
)
PAIRS = [
    pytest.param(("django", "uvicorn-reload"), id="django+uvicorn-reload"),
    pytest.param(("gunicorn", "flask-debug"), id="gunicorn-w2+flask-debug"),
    pytest.param(("http.server", "npm"), id="http.server+npm-run", marks=needs_npm),
]


@pytest.mark.servers
@pytest.mark.parametrize("pair", PAIRS)
def test_two_real_servers_serve_the_tests_then_nothing_is_left(
    pair: tuple[str, str], tag: str, tmp_path: Path
) -> None:
    args = []
    names = [label(name) for name in pair]
    for name, shown in zip(pair, names, strict=True):
        args += ["--server", f"{shown}={server_command(name)}", "--http", f"{shown}:/"]
    code, doc, err = run([*args, "--", PY, "-c", CHECK, *names], tag, project(tmp_path))
    assert code == 0, err
    assert doc["ok"] and doc["outcome"] == "tests-passed" and doc["tests"]["exit_status"] == 0
    servers = {s["name"]: s for s in doc["servers"]}
    assert set(servers) == set(names)
    assert len({s["port"] for s in servers.values()}) == 2
    for server in servers.values():
        assert server["url"] == f"http://127.0.0.1:{server['port']}"
        assert server["ready_after"] > 0 and server["pid"]
        if server["name"] != "npm":  # npm's server reads PORT from its environment
            assert str(server["port"]) in " ".join(server["command"])  # {port} was replaced
        # Top first: the reloader, master or npm gets the first signal, its children after.
        first = next(s for s in doc["teardown"]["signalled"] if s["server"] == server["name"])
        assert first["pid"] == server["pid"] and first["signal"] == "SIGTERM"
    assert_all_gone(doc, tag)


# -- servers that misbehave --------------------------------------------------------------------


def test_a_daemonizing_server_is_still_torn_down(tag: str, tmp_path: Path) -> None:
    code, doc, err = run(
        ["--server", f"d={PY} -c '{DAEMON}'", "--http", "/", "--", PY, "-c", CHECK, "d"],
        tag,
        tmp_path,
    )
    assert code == 0, err
    [server] = doc["servers"]
    assert server["exit_status"] == 0  # its top process exited at once...
    [signalled] = doc["teardown"]["signalled"]
    assert signalled["pid"] != server["pid"]  # ...and the daemon was found and stopped
    assert_all_gone(doc, tag)


@pytest.mark.parametrize(
    ("script", "http", "state"),
    [
        ("import time; time.sleep(120)", None, "did not listen"),
        (
            "import http.server as h, os\n"
            "class H(h.BaseHTTPRequestHandler):\n"
            "    def do_GET(self): self.send_error(503)\n"
            "h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()",
            "/health",
            "listens but GET /health did not answer below 500",
        ),
    ],
    ids=["never-listens", "answers-503"],
)
def test_a_server_never_ready_ends_the_run_with_124(
    script: str, http: str | None, state: str, tag: str, tmp_path: Path
) -> None:
    (tmp_path / "srv.py").write_text(script)
    args = ["--server", f"{PY} srv.py", "--wait-timeout", "1.5"]
    args += ["--http", http] if http else []
    code, doc, err = run([*args, "--", "true"], tag, tmp_path)
    assert code == 124, err
    assert doc["outcome"] == "not-ready" and doc["failed"] == "server"
    assert doc["message"] == f"server 'server' was not ready after 1.5s: it {state} " + (
        f"on port {doc['servers'][0]['port']}"
    )
    assert err.strip().splitlines()[-1] == f"portinspect: {doc['message']}"
    assert doc["tests"] is None  # the tests never ran
    assert_all_gone(doc, tag)


def test_a_server_that_crashes_at_start_ends_the_run_with_121(tag: str, tmp_path: Path) -> None:
    # Its last words carry a terminal title escape: shown escaped, never raw.
    crash = "import sys; print('\\x1b]0;owned\\x07cannot import app', file=sys.stderr); sys.exit(3)"
    code, doc, err = run(["--server", f'api={PY} -c "{crash}"', "--", "true"], tag, tmp_path)
    assert code == 121, err
    assert doc["outcome"] == "server-exited" and doc["failed"] == "api"
    assert doc["message"].startswith("server 'api' exited with status 3 before it was ready")
    [server] = doc["servers"]
    assert server["exit_status"] == 3
    assert server["output"] == ["\x1b]0;owned\x07cannot import app"]  # JSON: as printed
    assert "[api] \\x1b]0;owned\\x07cannot import app" in err  # kept apart by its name
    assert "\x1b" not in err and "\x07" not in err
    assert_all_gone(doc, tag)


def test_a_server_that_dies_during_the_tests_stops_them(tag: str, tmp_path: Path) -> None:
    # It serves until the tests touch a file, then exits 1: run stops the tests (SIGTERM).
    flag = tmp_path / "die"
    server = (
        "import http.server, os, threading, time\n"
        "s = http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), "
        "http.server.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=s.serve_forever, daemon=True).start()\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
        "os._exit(1)\n"
    )
    (tmp_path / "srv.py").write_text(server)
    tests = f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(120)"
    code, doc, err = run(["--server", f"{PY} srv.py", "--", PY, "-c", tests], tag, tmp_path)
    assert code == 121, err
    assert doc["outcome"] == "server-exited"
    assert doc["message"].endswith("during the tests")
    assert doc["tests"]["signal"] == "SIGTERM" and doc["tests"]["exit_status"] == 143
    assert_all_gone(doc, tag)


def test_failing_tests_give_run_their_status(tag: str, tmp_path: Path) -> None:
    server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
    code, doc, err = run(["--server", server, "--", PY, "-c", "exit(3)"], tag, tmp_path)
    assert code == 3, err
    assert doc["outcome"] == "tests-failed" and doc["tests"]["exit_status"] == 3
    assert doc["exit_code"] == 3 and doc["message"] == "tests exited with status 3"
    assert_all_gone(doc, tag)


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_a_server_on_ipv6_only_gets_an_ipv6_url(tag: str, tmp_path: Path) -> None:
    # No localhost trap: the socket table says ::1, so the URL the tests get says ::1.
    server = f"{PY} -m http.server {{port}} --bind ::1"
    code, doc, err = run(
        ["--server", f"web={server}", "--http", "/", "--", PY, "-c", CHECK, "web"], tag, tmp_path
    )
    assert code == 0, err
    [web] = doc["servers"]
    assert web["url"] == f"http://[::1]:{web['port']}"
    assert_all_gone(doc, tag)


def test_shell_commands_and_their_orphans_are_torn_down(tag: str, tmp_path: Path) -> None:
    # Through sh -c, without exec: SIGTERM ends the shell and orphans the server, which the
    # keeper (its subreaper) then stops too. start-server-and-test leaves this one running.
    server = f"{PY} -m http.server $PORT --bind 127.0.0.1; echo never"
    code, doc, err = run(
        ["--shell", "--server", server, "--", 'test "$SERVER_PORT" = "$PORT"'], tag, tmp_path
    )
    assert code == 0, err
    assert doc["servers"][0]["command"][:2] == ["/bin/sh", "-c"]
    assert len(doc["teardown"]["signalled"]) == 2  # the shell, then its orphaned server
    assert_all_gone(doc, tag)


def test_log_dir_keeps_server_output_apart(tag: str, tmp_path: Path) -> None:
    crash = "import sys; print('line one'); print('boom', file=sys.stderr); sys.exit(2)"
    logs = tmp_path / "logs"
    code, doc, err = run(
        ["--log-dir", str(logs), "--server", f'api={PY} -c "{crash}"', "--", "true"],
        tag,
        tmp_path,
    )
    assert code == 121
    assert (logs / "api.log").read_text().splitlines() == ["line one", "boom"]
    assert "[api]" not in err  # not streamed to stderr...
    assert "  | boom" in err  # ...but its last lines are shown with the reason
    assert_all_gone(doc, tag)


# -- signals to run ---------------------------------------------------------------------------

SLEEPING_TESTS = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(120)"


@pytest.mark.parametrize(
    ("signum", "to_group", "status"),
    [
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal: run and the tests get it
        (signal.SIGINT, False, 130),  # kill -INT <run>: run passes it on to the tests
        (signal.SIGTERM, False, 143),  # a CI job cancelled
        (signal.SIGHUP, False, 129),  # the terminal closed
    ],
    ids=["SIGINT-to-group", "SIGINT-to-run", "SIGTERM", "SIGHUP"],
)
def test_a_signal_in_the_middle_of_the_tests_tears_down(
    signum: int, to_group: bool, status: int, tag: str, tmp_path: Path
) -> None:
    started = tmp_path / "tests-started"
    server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
    tests = [PY, "-c", SLEEPING_TESTS, str(started)]
    proc = subprocess.Popen(
        [str(SCRIPT), "run", "--json", "--server", server, "--", *tests],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(tag),
        start_new_session=True,  # its own process group, as a shell's foreground job has
    )
    try:
        wait_until(lambda: started.exists() or proc.poll() is not None, 60, "the tests to start")
        assert proc.poll() is None, proc.communicate()
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    doc = json.loads(out)
    assert doc["exit_code"] == status
    assert doc["outcome"] == ("interrupted" if signum == signal.SIGINT else "terminated")
    assert doc["tests"]["signal"] == signal.Signals(signum).name  # the tests stopped with it
    assert_all_gone(doc, tag)


def _started(log: Path) -> int:
    match = re.search(r"ready at http://127\.0\.0\.1:(\d+)", log.read_text())
    return int(match.group(1)) if match else 0


def test_sigkill_of_run_still_tears_everything_down(tag: str, tmp_path: Path) -> None:
    # No handler runs in a SIGKILLed run: its keepers see their control pipe close (and get
    # SIGTERM from the kernel, PR_SET_PDEATHSIG) and tear the trees down themselves.
    err_log = tmp_path / "stderr"
    args = ["--server", f"web={PY} -m http.server {{port}} --bind 127.0.0.1"]
    args += ["--server", f"d={PY} -c '{DAEMON}'", "--http", "d:/"]
    with open(err_log, "w") as err:
        proc = subprocess.Popen(
            [str(SCRIPT), "run", *args], stderr=err, cwd=tmp_path, env=_env(tag)
        )
    try:
        wait_until(lambda: len(re.findall("ready at", err_log.read_text())) == 2, 60, "ready")
        ports = [
            int(p) for p in re.findall(r"ready at http://127\.0\.0\.1:(\d+)", err_log.read_text())
        ]
        servers = scan(ports)  # the exact sockets the two servers listen on
        assert {li.port for li in servers} == set(ports)
        proc.kill()
        proc.wait()
        wait_until(lambda: not tagged(tag), 30, "every process of the run to exit")
        inodes = {li.inode for li in servers}
        left = scanner.listening_sockets(frozenset({Proto.TCP}))
        assert not inodes & {i for port in ports for i in left.get(port, ())}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serving_in_foreground(tag: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`run --json` with one http.server and no test command, once it says the server is up
    (and waits for Ctrl-C): the process and its stderr log. Killed if still running after."""
    err_log = tmp_path / "stderr"
    server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
    with open(err_log, "w") as err:
        proc = subprocess.Popen(
            [str(SCRIPT), "run", "--json", "--server", server],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=tmp_path,
            env=_env(tag),
        )
    try:
        wait_until(lambda: "Ctrl-C" in err_log.read_text(), 60, "the server to be up")
        yield proc, err_log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_test_command_holds_the_servers_until_ctrl_c(tag: str, tmp_path: Path) -> None:
    with serving_in_foreground(tag, tmp_path) as (proc, err_log):
        port = _started(err_log)
        assert [li.port for li in same_socket(scan(port), endpoint(port))] == [port]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    doc = json.loads(out)
    assert doc["outcome"] == "interrupted" and doc["tests"] is None
    assert_all_gone(doc, tag)


def test_a_killed_keeper_still_stops_its_server(tag: str, tmp_path: Path) -> None:
    # What survives when even the keeper dies (SIGKILL, the OOM killer): its server's top
    # process gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and exits; run sees it end.
    with serving_in_foreground(tag, tmp_path) as (proc, _err_log):
        [keeper] = psutil.Process(proc.pid).children()
        keeper.kill()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 121
    doc = json.loads(out)
    assert doc["servers"][0]["pid"] not in {p.pid for p in tagged(tag)}
    assert_all_gone(doc, tag)


# -- ports -----------------------------------------------------------------------------------


def test_ten_runs_in_parallel_get_distinct_ports_and_leave_nothing(
    tag: str, tmp_path: Path
) -> None:
    # The tests of each run wait until all ten servers are up at once (a barrier of files
    # named by port): ten distinct ports are then required, not a matter of timing. A port
    # handed out twice would leave nine files, and the barrier would time out.
    barrier = tmp_path / "up"
    barrier.mkdir()
    script = tmp_path / "tests.py"
    script.write_text(
        "import os, pathlib, sys, time, urllib.request\n"
        "up = pathlib.Path(sys.argv[1])\n"
        "(up / os.environ['PORT']).touch()\n"
        "deadline = time.monotonic() + 60\n"
        "while len(list(up.iterdir())) < 10 and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "assert len(list(up.iterdir())) == 10\n"
        "assert urllib.request.urlopen(os.environ['WEB_URL'], timeout=20).status == 200\n"
    )
    server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
    argv = [str(SCRIPT), "run", "--json", "--quiet", "--server", f"web={server}", "--http", "/"]
    argv += ["--", PY, str(script), str(barrier)]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(tag),
        )
        for _ in range(10)
    ]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    docs = []
    for (out, err), code in results:
        assert code == 0, err
        docs.append(json.loads(out))
    ports = [doc["servers"][0]["port"] for doc in docs]
    assert len(set(ports)) == 10, ports
    for doc in docs:
        assert_all_gone(doc, tag)


def test_a_busy_fixed_port_names_its_holder_and_reclaim_frees_it(
    tag: str, tmp_path: Path, free_port: int
) -> None:
    holder = subprocess.Popen(
        [PY, "-m", "http.server", str(free_port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(tag),
    )
    try:
        wait_until(lambda: scan(free_port), 30, "the holder to listen")
        server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
        args = ["--server", server, "--port", str(free_port), "--", "true"]
        proc = subprocess.run(
            [str(SCRIPT), "run", *args], capture_output=True, text=True, env=_env(tag), check=False
        )
        assert proc.returncode == 6
        assert proc.stderr == (
            f"portinspect: server 'server': port {free_port} is not free: held by pid "
            f"{holder.pid} (http.server) on 127.0.0.1 tcp; --reclaim (reclaim=True) stops its "
            "holder first\n"
        )
        assert holder.poll() is None  # nothing was touched
        code, doc, err = run([*args[:-2], "--reclaim", "--", "true"], tag, tmp_path)
        assert code == 0, err
        assert holder.wait(timeout=10) == -signal.SIGTERM  # through kill's graceful path
        assert doc["servers"][0]["port"] == free_port
        assert_all_gone(doc, tag)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# A server that hands its listening socket to a process outside its tree (SCM_RIGHTS): the
# teardown stops the whole tree, the port stays held, and run says so with its own code.
HOLDER = textwrap.dedent(
    """\
    import pathlib, socket, sys
    path = sys.argv[1]
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen(1)
    pathlib.Path(path + ".ready").touch()
    conn, _ = unix.accept()
    msg, fds, flags, addr = socket.recv_fds(conn, 1, 1)
    kept = socket.socket(fileno=fds[0])
    pathlib.Path(path + ".holding").touch()
    sys.stdin.read()  # until the test says
    """
)
GIVER = textwrap.dedent(
    """\
    import os, socket, sys, time
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server does
    sock.bind(("127.0.0.1", int(os.environ["PORT"])))
    sock.listen()
    unix = socket.socket(socket.AF_UNIX)
    unix.connect(sys.argv[1])
    socket.send_fds(unix, [b"x"], [sock.fileno()])
    time.sleep(120)
    """
)


def test_a_port_still_held_after_teardown_gives_122(tag: str, tmp_path: Path) -> None:
    path = str(tmp_path / "hand-over")
    (tmp_path / "holder.py").write_text(HOLDER)
    (tmp_path / "giver.py").write_text(GIVER)
    holder = subprocess.Popen([PY, "holder.py", path], stdin=subprocess.PIPE, cwd=tmp_path)
    try:
        wait_until(lambda: Path(path + ".ready").exists(), 30, "the holder")
        wait_for_handover = (
            f"import os, time\nwhile not os.path.exists({path + '.holding'!r}): time.sleep(0.01)"
        )
        code, doc, err = run(
            ["--server", f"{PY} giver.py {path}", "--", PY, "-c", wait_for_handover], tag, tmp_path
        )
        assert code == 122, err
        assert doc["outcome"] == "tests-passed"  # the tests passed; the machine is not clean
        [check] = doc["teardown"]["ports"]
        assert check["free"] is False
        assert [h["pid"] for h in check["holders"]] == [holder.pid]
        assert doc["teardown"]["left"] == []  # every process of the tree did stop
        assert f"port {check['port']} still listening" in doc["message"]
    finally:
        holder.kill()  # ours, by pid, not reaped yet
        holder.wait()


# -- what users get wrong ------------------------------------------------------------------------


BAD_INPUT = [
    ([], "no server to start: give --server COMMAND (or NAME=COMMAND)"),
    (["--server", ""], "server 'server': the command is empty"),
    (["--server", "no-such-xyz"], "server 'server': command not found: 'no-such-xyz'"),
    (["--server", "a=true", "--port", "b:8000"], "--port 'b:8000': no server named 'b' (a)"),
    (["--server", "true", "--port", "0"], "invalid --port '0': ports run from 1 to 65535"),
    (
        ["--server", "true", "--near", "80x"],
        "invalid --near '80x': expected a number from 1 to 65535",
    ),
    (
        ["--server", "true", "--http", "health"],
        "server 'server': invalid HTTP path 'health': it starts with / and has no spaces "
        "(percent-encode the rest)",
    ),
    (["--server", "a=true", "--server", "a=true"], "two servers are named 'a' (names must differ)"),
    (
        ["--server", "true", "--wait-timeout", "abc"],
        "invalid --wait-timeout 'abc': expected seconds, such as 30 or 0.5",
    ),
    (
        ["--server", "true", "--port", "9000", "--near", "9001"],
        "server 'server': --port and --near exclude each other",
    ),
    (
        ["--server", "a=true", "--server", "b=true", "--port", "9000"],
        "--port: two servers cannot share a port (write --port NAME:PORT each)",
    ),
    (
        ["--server", "'unbalanced"],
        "server 'server': cannot split \"'unbalanced\": No closing quotation",
    ),
    (["--server", "true", "--", "no-such-xyz"], "test command: command not found: 'no-such-xyz'"),
    (["--server", "true", "--http", "a:/"], "--http 'a:/': no server named 'a' (server)"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    for json_flag in ([], ["--json"]):
        result = CliRunner().invoke(app, ["run", *json_flag, *args])
        assert result.exit_code == 2, result.stderr
        assert result.stderr == f"portinspect: {message}\n"
        if json_flag:
            doc = json.loads(result.stdout)
            assert doc["command"] == "run" and doc["exit_code"] == 2
            assert doc["error"] == {"message": message}
        else:
            assert result.stdout == ""


# -- the leases run relies on, under parallel runs ------------------------------------------------


def test_a_stale_socket_table_cannot_end_a_newer_lease(tmp_path: Path) -> None:
    # A caller read the socket table while an old server still listened on the port; that
    # server stopped and another caller leased the port. The first caller's sweep must not
    # take the listener it saw for the new lease's server (else a third caller gets the port).
    seen_at = time.time()
    bound = {15000, 15001}  # what that stale read saw
    old = Lease(15001, os.getpid(), time.time() + 60, False, "old", created=seen_at - 1)
    (tmp_path / "15001.lease").write_bytes(old.encode())  # leased before it: its server bound
    with LeaseStore(tmp_path) as store:
        store.acquire(store.new_lease(15000, 60, release_on_exit=False))  # leased after it
        store.sweep(bound, seen_at)
        assert store.read(15000) is not None
        assert store.read(15001) is None


# The tests count the SIGINTs they get. A second one, if run were to pass the terminal's Ctrl-C
# on, would come within run's 10 ms loop; half a second of watching is ample.
COUNTING_TESTS = textwrap.dedent(
    """\
    import pathlib, signal, sys, time
    got = []
    signal.signal(signal.SIGINT, lambda *_: got.append(1))
    pathlib.Path(sys.argv[1]).touch()
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    pathlib.Path(sys.argv[2]).write_text(str(len(got)))
    sys.exit(1)
    """
)


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is stdin (the pty), so
    the terminal's ^C goes to its foreground process group: run and its test command."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_ctrl_c_on_a_terminal_reaches_the_tests_once(tag: str, tmp_path: Path) -> None:
    started, count = tmp_path / "started", tmp_path / "count"
    server = f"{PY} -m http.server {{port}} --bind 127.0.0.1"
    tests = [PY, "-c", COUNTING_TESTS, str(started), str(count)]
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [str(SCRIPT), "run", "--json", "--server", server, "--", *tests],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=tmp_path,
            env=_env(tag),
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        try:
            wait_until(lambda: started.exists() or proc.poll() is not None, 60, "the tests")
            os.write(master, b"\x03")  # Ctrl-C, typed
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
    assert proc.returncode == 130
    assert count.read_text() == "1"  # the terminal's SIGINT, and no second one from run
    doc = json.loads(out)
    assert doc["outcome"] == "interrupted" and doc["tests"]["exit_status"] == 1
    assert_all_gone(doc, tag)
