"""Process details read from /proc (the Linux listing path) equal psutil's, field for field.

The Linux backend reads ProcessInfo straight from /proc to keep psutil (its import and its
~190 us per process) off the listing path; psutil stays the reference. Each test starts the
processes it compares (a long comm, a setproctitle title, a deleted cwd, a zombie, another
user) and also compares every process on the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import psutil
import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("Linux-only reader", allow_module_level=True)

from portinspect import _linux, _psutil, scanner
from portinspect.models import ProcessInfo

from .support import is_root, lease_port, nobody, wait_until


def _psutil_view(pid: int) -> ProcessInfo | None:
    try:
        return _psutil.process_info(psutil.Process(pid), scanner.ENV_MARKERS)
    except psutil.Error:
        return None


def _as_psutil_reads_it(info: ProcessInfo | None) -> ProcessInfo | None:
    """psutil reads cmdline in text mode ("\r" becomes "\n"); our reader keeps "\r"."""
    if info is None or not any("\r" in arg for arg in info.cmdline):
        return info
    argv = tuple(arg.replace("\r\n", "\n").replace("\r", "\n") for arg in info.cmdline)
    return dataclasses.replace(info, cmdline=argv)


def _as_we_cut_it(info: ProcessInfo | None) -> ProcessInfo | None:
    """Our reader keeps the first ARGV_LIMIT bytes of a command line (a documented cut, see
    _linux.ARGV_LIMIT); psutil keeps it all. A process with a longer one (a test's 300 KB
    listener, maybe another suite's) is compared as we would cut it."""
    if info is None:
        return None
    raw = b"".join(os.fsencode(arg) + b"\0" for arg in info.cmdline)
    if len(raw) < _linux.ARGV_LIMIT:
        return info
    argv = _linux._argv(raw[: _linux.ARGV_LIMIT], cut=True)
    return dataclasses.replace(info, cmdline=argv)


def _same(pid: int) -> tuple[ProcessInfo | None, ProcessInfo | None]:
    ours = _linux.ProcessReader(scanner.ENV_MARKERS).read(pid)
    theirs = _psutil_view(pid)
    return _as_psutil_reads_it(ours), _as_we_cut_it(theirs)


def _assert_same(pid: int) -> ProcessInfo:
    ours, theirs = _same(pid)
    assert ours is not None
    assert ours == theirs
    assert theirs is not None
    assert dict(ours.env) == dict(theirs.env)  # env is compare=False on the dataclass
    return ours


@contextlib.contextmanager
def _child(
    code: str, *, cwd: str | None = None, env: dict[str, str] | None = None
) -> Iterator[int]:
    """A python child that runs `code`, prints READY and waits; killed by pid afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code + "\nprint('READY', flush=True)\nimport time\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_every_process_on_the_machine_reads_the_same() -> None:
    compared = 0
    for pid in psutil.pids():
        for _ in range(3):  # a process may exec or chdir between the two reads: read again
            ours, theirs = _same(pid)
            if ours == theirs and (not ours or not theirs or dict(ours.env) == dict(theirs.env)):
                break
        if ours is None or theirs is None:
            continue  # it exited between the two reads
        if ours.create_time != theirs.create_time:
            continue  # the pid was reused between the two reads
        assert ours == theirs, pid
        assert dict(ours.env) == dict(theirs.env), pid
        compared += 1
    assert compared > 1


def test_reloader_markers_are_read_from_the_environment() -> None:
    with _child("", env={"RUN_MAIN": "true", "npm_command": "run-script", "SECRET": "x"}) as pid:
        info = _assert_same(pid)
    assert dict(info.env) == {"RUN_MAIN": "true", "npm_command": "run-script"}


def test_long_comm_is_completed_from_argv_like_psutil() -> None:
    # comm is cut at 15 characters; psutil then takes basename(argv[0]) if it starts the same.
    link_dir = tempfile.mkdtemp()
    try:
        long_exe = os.path.join(link_dir, "python-with-a-very-long-name")
        os.symlink(sys.executable, long_exe)
        proc = subprocess.Popen([long_exe, "-c", "import time; time.sleep(60)"])
        try:
            wait_until(lambda: psutil.Process(proc.pid).cmdline(), what="the child's argv")
            info = _assert_same(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(link_dir)
    assert info.name == "python-with-a-very-long-name"


def test_setproctitle_titles_read_like_psutil() -> None:
    pytest.importorskip("setproctitle")
    with _child(
        "import setproctitle; setproctitle.setproctitle('gunicorn: master [app:app]')"
    ) as pid:
        info = _assert_same(pid)
    # Whichever way this setproctitle version writes argv (NUL padding or spaces), both agree.
    assert " ".join(info.cmdline).startswith("gunicorn: master [app:app]")


def test_arguments_with_carriage_returns_and_spaces() -> None:
    # psutil reads cmdline in text mode: "\r" becomes "\n". Ours keeps the argument as it is.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "a b", "c\rd", "é"]
    )
    try:
        wait_until(lambda: len(psutil.Process(proc.pid).cmdline()) == 6, what="the child's argv")
        _assert_same(proc.pid)
        info = _linux.ProcessReader().read(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert info is not None
    assert info.cmdline[-3:] == ("a b", "c\rd", "é")


def test_deleted_working_directory() -> None:
    gone = tempfile.mkdtemp()
    with _child(f"import os; os.chdir({gone!r}); os.rmdir({gone!r})") as pid:
        info = _assert_same(pid)
    assert info.cwd == gone  # " (deleted)" dropped, as psutil does


def test_zombie_reads_the_same() -> None:
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        wait_until(lambda: psutil.Process(child).status() == psutil.STATUS_ZOMBIE, what="zombie")
        info = _assert_same(child)
        assert info.cmdline == () and info.cwd is None
    finally:
        os.waitpid(child, 0)


def test_a_process_that_has_gone_is_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert _linux.ProcessReader().read(proc.pid) is None


@pytest.mark.unprivileged
@pytest.mark.skipif(not is_root(), reason="needs root to start a process as another user")
def test_another_users_process() -> None:
    uid, gid = nobody()
    proc = subprocess.Popen(
        ["/bin/sleep", "60"], user=uid, group=gid, extra_groups=[], cwd="/", env={"RUN_MAIN": "1"}
    )
    try:
        wait_until(lambda: psutil.Process(proc.pid).username() == "nobody", what="setuid")
        info = _assert_same(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert info.user == "nobody"


def test_lineage_is_psutils_parent_chain() -> None:
    me = psutil.Process()
    assert _linux.lineage(os.getpid()) == {os.getpid(), *(p.pid for p in me.parents())}


def test_process_tree_is_psutils_children() -> None:
    code = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        " for _ in range(2)]\n"
        "print('READY', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        # Popen returns once exec closed its error pipe, before the kernel has set up the new
        # argv: /proc/<pid>/cmdline can still read empty then (seen under load).
        kids = psutil.Process(proc.pid).children()
        wait_until(lambda: all(k.cmdline() for k in kids), what="the children's argv")
        ours = scanner.process_tree(proc.pid, backend="linux")
        theirs = scanner.process_tree(proc.pid, backend="psutil")
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.kill()
        proc.wait()
    assert len(ours) == 3, ours
    assert ours == theirs, {pid: (ours.get(pid), theirs.get(pid)) for pid in ours.keys() | theirs}
    assert scanner.process_tree(proc.pid, backend="linux") == {}  # gone


def test_collect_reads_the_same_processes_through_both_paths() -> None:
    listener = (
        "import socket; s = socket.socket()"
        "; s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)"
        f"; s.bind(('127.0.0.1', {lease_port()})); s.listen()"
    )
    with _child(listener) as pid:
        linux = scanner.read_processes([pid], backend="linux")
        portable = scanner.read_processes([pid], backend="psutil")
    assert pid in linux
    assert linux == portable  # the process and each of its ancestors
    assert scanner.self_lineage(backend="linux") == scanner.self_lineage(backend="psutil")


def test_a_stopped_process_is_still_read() -> None:
    with _child("") as pid:
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 10
            while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            _assert_same(pid)
        finally:
            os.kill(pid, signal.SIGCONT)


# --- psutil's parsing rules, without a process ----------------------------------------------


@pytest.mark.parametrize(
    ("raw", "argv"),
    [
        (b"", ()),
        (b"python\0-m\0http.server\0", ("python", "-m", "http.server")),
        (b"python\0\0", ("python", "")),
        # setproctitle without NUL padding: the whole title is one space-separated string
        (b"gunicorn: master [app:app]", ("gunicorn:", "master", "[app:app]")),
        (b"gunicorn: worker [app:app]\0", ("gunicorn:", "worker", "[app:app]")),
        (b"a\r\nb\0c\rd\0", ("a\r\nb", "c\rd")),  # not psutil's "\n": kept as they are
        (b"caf\xc3\xa9\0\xff\0", ("café", "\udcff")),
    ],
)
def test_argv_rules(raw: bytes, argv: tuple[str, ...]) -> None:
    assert _linux._argv(raw) == argv


def test_environ_rules() -> None:
    keys = ("A", "B", "C", "D", "")
    assert _linux._environ(b"A=1\0B=x=y\0=z\0A=2\0", keys) == {"A": "2", "B": "x=y"}
    assert _linux._environ(b"A=1\0\0C=3\0", keys) == {"A": "1"}  # stops at an empty entry
    assert _linux._environ(b"A=1\0D=unterminated", keys) == {"A": "1"}
    assert _linux._environ(b"", keys) == {}
