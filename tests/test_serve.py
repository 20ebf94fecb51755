"""portinspect.serve() and the pytest fixtures built on it, against real servers.

The same proof as tests/test_run.py: after the block (or the test session), the port is
free in the socket table and no process carrying the test's tag is alive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from portinspect import (
    PortInspectError,
    ServerExitedError,
    ServerNotReadyError,
    scan,
    serve,
)

from .runs import TAG, assert_not_ours, new_tag, tagged
from .support import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: subreaper")
pytest_plugins = ["pytester"]

PY = sys.executable
HTTP_SERVER = [PY, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]


@pytest.fixture
def tag() -> Iterator[str]:
    with new_tag() as value:
        yield value


def _env(tag: str) -> dict[str, str]:
    return {**os.environ, TAG: tag}


def assert_gone(port: int, pid: int | None, tag: str) -> None:
    assert tagged(tag) == []
    assert_not_ours(port, tag)
    if pid is not None:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).environ().get(TAG) != tag


def test_serve_gives_a_ready_server_and_tears_it_down(tag: str) -> None:
    with serve(HTTP_SERVER, http="/", env=_env(tag)) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert urllib.request.urlopen(server.url, timeout=10).status == 200
        assert [li.pid for li in scan(server.port)] == [server.pid]
        assert "GET / HTTP/1.1" in server.output()  # the readiness GET, then ours
    assert server.teardown is not None and server.teardown.clean
    assert server.report().stopped_after is not None
    assert_gone(server.port, server.pid, tag)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_serve_tears_down_when_the_block_raises(error: type[BaseException], tag: str) -> None:
    with pytest.raises(error), serve(HTTP_SERVER, env=_env(tag)) as server:
        raise error("the test failed")
    assert_gone(server.port, server.pid, tag)


def test_serve_from_another_thread(tag: str) -> None:
    # No PR_SET_PDEATHSIG off the main thread (it fires when the forking THREAD exits): the
    # keeper relies on its control pipe alone, and the server outlives the thread that
    # started it.
    found: list[object] = []

    def start() -> None:
        found.append(serve(HTTP_SERVER, env=_env(tag)))
        found.append(found[0].__enter__())  # type: ignore[attr-defined]

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    serving, server = found
    assert scan(server.port)  # type: ignore[attr-defined]
    serving.__exit__(None, None, None)  # type: ignore[attr-defined]
    assert_gone(server.port, server.pid, tag)  # type: ignore[attr-defined]


def test_serve_raises_when_the_server_exits_first(tag: str) -> None:
    crash = [PY, "-c", "import sys; print('no module named app'); sys.exit(2)"]
    with pytest.raises(ServerExitedError) as info:
        serve(crash, name="api", env=_env(tag)).__enter__()
    assert info.value.name == "api" and info.value.status == 2
    assert info.value.output == "no module named app"
    assert str(info.value).startswith("server 'api' exited with status 2 before it was ready")
    assert_gone(info.value.port or 0, None, tag)


def test_serve_raises_when_the_server_is_never_ready(tag: str) -> None:
    with pytest.raises(ServerNotReadyError) as info:
        serve([PY, "-c", "import time; time.sleep(60)"], wait_timeout=1, env=_env(tag)).__enter__()
    assert info.value.exit_status == 124
    assert_gone(info.value.port or 0, None, tag)


def test_windows_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: no Windows here. There a Job Object would hold the tree; without one,
    # serve() says so instead of leaving children behind (TerminateProcess kills no child).
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(PortInspectError, match="Job Object"):
        serve(HTTP_SERVER)


# -- the pytest plugin, as a user's suite gets it (entry point, subprocess) -------------------

USER_TESTS = textwrap.dedent(
    """\
    import json, os, sys, urllib.request
    from portinspect.pytest_plugin import server_fixture

    SEEN = os.environ["SEEN_FILE"]
    web = server_fixture(%(argv)r, http="/", scope="module")


    def seen(server):
        with open(SEEN, "a") as f:
            f.write(json.dumps([server.port, server.pid]) + "\\n")


    def test_module_server(web):
        seen(web)
        assert urllib.request.urlopen(web.url, timeout=10).status == 200


    def test_same_server_for_the_module(web):
        assert web.port == json.loads(open(SEEN).readline())[0]


    def test_fails_and_still_tears_down(server_factory):
        seen(server_factory(%(argv)r, name="adhoc"))
        assert False, "this test fails on purpose"


    def test_dies_mid_test(server_factory):
        seen(server_factory(%(argv)r, name="doomed"))
        if os.environ.get("DIE"):
            os._exit(3)  # what pytest-timeout's thread method does on a timeout
    """
)


@pytest.mark.parametrize("die", [False, True], ids=["test-fails", "pytest-killed"])
def test_server_fixtures_tear_down_in_a_users_suite(
    die: bool, pytester: pytest.Pytester, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_file = pytester.path / "seen.jsonl"
    monkeypatch.setenv("SEEN_FILE", str(seen_file))
    monkeypatch.setenv(TAG, tag)
    if die:
        monkeypatch.setenv("DIE", "1")
    pytester.makepyfile(test_user=USER_TESTS % {"argv": HTTP_SERVER})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    if die:
        assert result.ret == 3  # the process died in the middle of a test
    else:
        result.assert_outcomes(passed=3, failed=1)
    seen = [json.loads(line) for line in seen_file.read_text().splitlines()]
    assert len(seen) == 3  # the module's server, adhoc, doomed
    # After a hard exit the keepers tear down on their own: give them their moment.
    wait_until(lambda: not tagged(tag), 30, "every server of the suite to be gone")
    for port, pid in seen:
        assert_gone(port, pid, tag)


def test_on_windows_the_import_works_and_the_refusal_is_one_line(tmp_path: Path) -> None:
    # Simulated in a fresh interpreter, once the CLI (typer) is loaded: no SIGHUP, no SIGCHLD,
    # sys.platform "win32". Importing the runner must not trip on the missing signals; run
    # refuses with its reason, exit 1, one line.
    code = textwrap.dedent(
        """\
        import signal, sys
        from portinspect import cli
        del signal.SIGHUP, signal.SIGCHLD
        sys.platform = "win32"
        assert "portinspect.runner" not in sys.modules
        from portinspect._entry import main
        main(["run", "--server", "true", "--", "true"])
        """
    )
    proc = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.endswith("a Job Object would be the tool, and it is not implemented\n")
    assert proc.stderr.count("\n") == 1


def test_a_server_that_cannot_be_executed_is_one_clear_error(tag: str, tmp_path: Path) -> None:
    # Executable bit, no format the kernel knows: it passes the up-front check, and exec fails
    # in the keeper, which says so.
    bad = tmp_path / "bad-server"
    bad.write_bytes(b"\x7fNOT-AN-ELF")
    bad.chmod(0o755)
    with pytest.raises(ServerExitedError) as info:
        serve([str(bad)], env=_env(tag), cwd=tmp_path).__enter__()
    assert str(info.value) == (
        f"server 'server' could not start: {str(bad)!r}: Exec format error before it was ready "
        f"(port {info.value.port})"
    )
    assert info.value.status is None
    assert_gone(info.value.port or 0, None, tag)
