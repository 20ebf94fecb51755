"""The lease directory against corrupt state and other local users (issue 16).

- Every corrupt shape of a lease file, name or entry a crash, another version or another user
  can leave: `free` never fails on it, two runs in a row, never trusts it and never touches
  anything but its own files.
- A FIFO named like a lease, a FIFO as the lock, a lock held forever: `free` still finishes.
- A PORTINSPECT_LEASE_DIR that is a symlink, or whose path crosses another user's symlink:
  refused. A lease directory swapped back and forth with renameat2(RENAME_EXCHANGE) by
  another user while root runs `free`: no file is created or removed outside it.
- The default directory taken by another user (nobody squatting root's name, root squatting
  nobody's): a private fallback and a warning naming the squatter.
- A full, read-only or unwritable lease directory: the documented one-line hint, exit 1.

Ports come from the plugin's free_port fixture; each test uses its own lease directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from portinspect import find_free_ports, freeport, leases
from portinspect.cli import app
from portinspect.leases import Lease, LeaseDirWarning
from portinspect.pytest_plugin import FreePortFactory

from .hostile import as_nobody, leased_port, needs_root, open_directory, python_for_nobody
from .support import SCRIPT, nobody, run_as_nobody, run_in_namespace
from .test_hostile_input import terminal_unsafe

if sys.platform == "win32":
    pytest.skip("descriptor-relative leases are POSIX's", allow_module_level=True)

HANG = 60.0  # only so that a regression fails instead of hanging the suite
FAR = time.time() + 3600


@pytest.fixture
def free_port(free_port_factory: FreePortFactory) -> int:
    """The plugin's free_port, leased away from the ports other tests crowd (hostile.py)."""
    return leased_port(free_port_factory)


@pytest.fixture
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "leases"
    path.mkdir(mode=0o700)
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(path))
    return path


def free_cli(*args: str, lease_dir: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if lease_dir is not None:
        env[freeport.LEASE_DIR_ENV] = str(lease_dir)
    return subprocess.run(
        [str(SCRIPT), "free", *args],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=env,
        check=False,
    )


def tree(path: Path) -> dict[str, tuple[int, int, float]]:
    """Every entry under path: name -> (inode, size, mtime), symlinks not followed."""
    found = {}
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            full = Path(root) / name
            info = full.lstat()
            found[str(full.relative_to(path))] = (info.st_ino, info.st_size, info.st_mtime)
    return found


# --- corrupt leases --------------------------------------------------------------------------


def _lease_text(**fields: str) -> bytes:
    base = {"pid": "1", "expires": f"{FAR:.3f}", "release_on_exit": "0", "token": "abc"}
    base.update(fields)
    return "".join(f"{k}={v}\n" for k, v in base.items()).encode()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


# Each: how to make `<P>.lease` (or a name beside it), and whether port P stays protected.
# Content that is not exactly a lease protects P for 30 s from its mtime (it may be another
# version's lease), then counts as expired; a non-regular entry protects P as long as it is
# there (it is never ours to remove); names that are not ours are ignored.
CORRUPT: dict[str, tuple[Any, bool]] = {
    "expires=inf": (_lease_text(expires="inf"), True),
    "expires=nan": (_lease_text(expires="nan"), True),
    "expires=1e300": (_lease_text(expires="1e300"), True),
    "expires=-1": (_lease_text(expires="-1"), True),
    "expires in the year 2286": (_lease_text(expires="9999999999"), True),
    "20-digit pid": (_lease_text(pid="12345678901234567890", release_on_exit="1"), True),
    "pid=-1": (_lease_text(pid="-1"), True),
    "pid=0": (_lease_text(pid="0"), True),
    "pid=2**31": (_lease_text(pid=str(2**31)), True),
    "duplicate pid": (_lease_text() + b"pid=2\n", True),
    "unknown key": (_lease_text() + b"shell=rm -rf /\n", True),
    "no expires": (b"pid=1\n", True),
    "empty file": (b"", True),
    "binary junk": (bytes(range(256)) * 4, True),
    "NUL bytes": (b"pid=1\x00\nexpires=1\n", True),
    "not UTF-8": ("pid=١\n".encode() + b"\xff\n", True),
    "1 MB": (b"pid=1\n" * 200_000, True),
    "directory": ("dir", True),
    "FIFO": ("fifo", True),
    "unix socket": ("socket", True),
    "symlink to /etc/passwd": ("/etc/passwd", True),
    "symlink to a valid lease": ("valid-elsewhere", True),
    "junk with an mtime in the future": ("future", False),
    "named ²³.lease": ("²³.lease", False),
    "named 0P.lease": ("0P.lease", False),
    "named 99999.lease": ("99999.lease", False),
    "named P.lease.tmp": ("P.lease.tmp", False),
}


def _plant(lease_dir: Path, port: int, shape: Any, outside: Path) -> None:
    target = lease_dir / f"{port}.lease"
    if isinstance(shape, bytes):
        target.write_bytes(shape)
    elif shape == "dir":
        target.mkdir()
    elif shape == "fifo":
        _fifo(target)
    elif shape == "socket":
        _unix_socket(target)
    elif shape == "/etc/passwd":
        target.symlink_to("/etc/passwd")
    elif shape == "valid-elsewhere":
        (outside / "real.lease").write_bytes(_lease_text())
        target.symlink_to(outside / "real.lease")
    elif shape == "future":
        target.write_bytes(b"junk")
        later = time.time() + 10 * 365 * 86400
        os.utime(target, (later, later))
    else:
        (lease_dir / shape.replace("P", str(port))).write_bytes(_lease_text())


@pytest.mark.parametrize("shape", list(CORRUPT), ids=list(CORRUPT))
def test_a_corrupt_lease_never_breaks_free(shape: str, free_port: int, tmp_path: Path) -> None:
    content, protects = CORRUPT[shape]
    port = free_port
    lease_dir, outside = tmp_path / "leases", tmp_path / "outside"
    lease_dir.mkdir(mode=0o700)
    outside.mkdir()
    _plant(lease_dir, port, content, outside)
    before_outside = tree(outside)
    passwd = Path("/etc/passwd").read_bytes()
    for _run in range(2):  # some shapes broke every later call too
        proc = free_cli("--range", f"{port}-{port}", "--json", lease_dir=lease_dir)
        assert "Traceback" not in proc.stderr and "unexpected error" not in proc.stderr
        if protects:
            assert proc.returncode == 6, proc.stderr
            assert proc.stderr.endswith(f"no free port in {port}: 1 leased by other callers\n")
        else:
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["ports"] == [port]
            os.unlink(lease_dir / f"{port}.lease")  # ours: the next run may take it again
    assert tree(outside) == before_outside
    assert Path("/etc/passwd").read_bytes() == passwd
    if content in ("dir", "fifo", "socket", "/etc/passwd", "valid-elsewhere"):
        assert os.path.lexists(lease_dir / f"{port}.lease")  # never removed: not ours


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_decoding_any_bytes_never_raises(data: bytes) -> None:
    lease = Lease.decode(8000, data)
    assert lease is None or (1 <= lease.pid < 2**31 and lease.expires < time.time() + 90000)


def test_decode_takes_exactly_what_encode_writes() -> None:
    lease = Lease(8000, 4242, 1_800_000_000.5, True, "0123456789abcdef")
    assert Lease.decode(8000, lease.encode(), now=1_799_990_000.0) == lease


@pytest.mark.parametrize(
    ("name", "port"),
    [
        ("8000.lease", 8000),
        ("1.lease", 1),
        ("65535.lease", 65535),
        ("08000.lease", None),
        ("0.lease", None),
        ("65536.lease", None),
        ("²³.lease", None),
        ("٨٠.lease", None),
        ("8000.lease.tmp", None),
        (".8000.lease", None),
        ("8000", None),
        ("-1.lease", None),
    ],
)
def test_only_our_names_are_lease_files(name: str, port: int | None) -> None:
    assert leases.port_of_name(name) == port


# --- FIFOs and a lock held forever -------------------------------------------------------------

LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(lock: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.communicate(timeout=30)


@pytest.mark.parametrize("lock", ["held forever", "a FIFO", "a directory"])
def test_a_lock_that_cannot_be_had_delays_free_by_a_bounded_time(
    lock: str, free_port: int, lease_dir: Path
) -> None:
    """An expired lease sits on the port, so free needs the lock to remove it. It cannot have
    it: it waits at most leases.LOCK_TIMEOUT, leaves the lease alone, and says so once."""
    port = free_port
    (lease_dir / f"{port}.lease").write_bytes(_lease_text(expires="1"))
    lock_path = lease_dir / ".lock"
    with contextlib.ExitStack() as stack:
        if lock == "held forever":
            stack.enter_context(lock_held(lock_path))
        elif lock == "a FIFO":
            os.mkfifo(lock_path)
        else:
            lock_path.mkdir()
        proc = free_cli("--range", f"{port}-{port}", lease_dir=lease_dir)
    assert proc.returncode == 6
    warning, error = proc.stderr.splitlines()
    assert warning.startswith(f"portinspect: warning: lease directory {lease_dir}: ")
    assert warning.endswith("; ended leases are left in place")
    assert error == f"portinspect: no free port in {port}: 1 leased by other callers"
    assert (lease_dir / f"{port}.lease").exists()


def test_a_fifo_named_like_a_lease_is_skipped_not_read(free_port: int, lease_dir: Path) -> None:
    port = free_port
    os.mkfifo(lease_dir / f"{port}.lease")
    proc = free_cli("--range", f"{port}-{port}", "--explain", lease_dir=lease_dir)
    assert proc.returncode == 6
    assert f"skipped {port}: {port}.lease in the lease directory is a FIFO, not a lease" in (
        proc.stderr
    )


# --- symlinks and swaps ------------------------------------------------------------------------


def test_a_lease_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    proc = free_cli(lease_dir=tmp_path / "link")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"portinspect: lease directory {tmp_path}/link is a symlink; name the directory it "
        "points to; set PORTINSPECT_LEASE_DIR or use --no-lease\n"
    )
    assert list(target.iterdir()) == []


def test_a_symlink_of_ours_higher_up_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    proc = free_cli(lease_dir=tmp_path / "via" / "leases")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "real" / "leases").glob("*.lease")] == [
        f"{proc.stdout.strip()}.lease"
    ]


@needs_root
def test_another_users_symlink_on_the_path_is_refused(tmp_path: Path) -> None:
    uid, gid = nobody()
    (tmp_path / "real").mkdir()
    link = tmp_path / "via"
    link.symlink_to(tmp_path / "real")
    os.lchown(link, uid, gid)
    proc = free_cli(lease_dir=link / "leases")
    assert proc.returncode == 1
    assert f"{link} is a symlink owned by uid {uid}, who could point it anywhere" in proc.stderr
    assert list((tmp_path / "real").iterdir()) == []


SWAPPER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b = sys.argv[1].encode(), sys.argv[2].encode()
print("ready", flush=True)
swaps, deadline = 0, time.monotonic() + float(sys.argv[3])
os.set_blocking(0, False)
while time.monotonic() < deadline:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
        swaps += 1
    try:
        if os.read(0, 1) == b"":
            break  # the test closed our stdin: stop
    except BlockingIOError:
        pass
    # Thousands of swaps during each run of free, and a CPU left to the rest of the suite
    # (a spinning loop starved timing-sensitive tests running beside it).
    time.sleep(0.0001)
print(swaps, flush=True)
"""


@needs_root
@pytest.mark.parametrize("decoy", ["a symlink to a victim directory", "nobody's own directory"])
def test_a_lease_dir_swapped_under_free_sends_nothing_elsewhere(decoy: str, free_port: int) -> None:
    """nobody owns the parent of root's lease directory and swaps it, as fast as it can, with a
    decoy, while root runs `free` 8 times. Whatever each run opened, it is the real directory
    or a refusal: the victim and the decoy are left exactly as they were."""
    if python_for_nobody() is None:
        pytest.skip("no Python interpreter here that the nobody user may run")
    if not hasattr(ctypes.CDLL(None), "renameat2"):
        pytest.skip("no renameat2 in this C library (glibc < 2.28)")
    uid, gid = nobody()
    with open_directory() as base:
        parent, victim = base / "parent", base / "victim"
        parent.mkdir(mode=0o755)
        os.chown(parent, uid, gid)
        real = parent / "leases"
        real.mkdir(mode=0o700)  # root's
        victim.mkdir(mode=0o700)  # root's too, elsewhere: what a symlink would aim root at
        stale = time.time() - 3600
        for name, data in (
            (f"{free_port}.lease", _lease_text(expires="1")),  # what a sweep would remove
            (f".{free_port}.0123456789abcdef.tmp", b""),  # an "orphan" it would remove too
        ):
            (victim / name).write_bytes(data)
            os.utime(victim / name, (stale, stale))
        decoy_path = parent / "decoy"
        if decoy.startswith("a symlink"):
            decoy_path.symlink_to(victim)
            os.lchown(decoy_path, uid, gid)
        else:
            decoy_path.mkdir(mode=0o777)
            os.chown(decoy_path, uid, gid)
        before = {"victim": tree(victim), "decoy": tree(decoy_path)}
        argv = [str(python_for_nobody()), "-c", SWAPPER, str(real), str(decoy_path), "60"]
        results = []
        with as_nobody(argv) as swapper:
            for _ in range(8):
                results.append(free_cli("--near", str(free_port), lease_dir=real))
            out, _ = swapper.communicate(timeout=HANG)  # EOF on its stdin stops it
            swaps = int(out.split()[-1])
        assert swaps > 0  # it was swapping before the first run and until after the last
        for proc in results:
            assert "Traceback" not in proc.stderr
            assert proc.returncode in (0, 1), proc.stderr
            if proc.returncode == 1:
                assert proc.stderr.count("\n") == 1 and "--no-lease" in proc.stderr
        assert tree(victim) == before["victim"]
        # The two names may have ended up swapped: nobody's directory is whichever it owns.
        for entry in parent.iterdir():
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == uid:
                assert tree(entry) == before["decoy"], "root wrote into nobody's directory"


# --- the default directory, squatted -----------------------------------------------------------


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A /tmp of our own, sticky and world-writable as /tmp is: the default lease dir's parent."""
    with open_directory() as base:
        base.chmod(0o1777)
        monkeypatch.delenv(freeport.LEASE_DIR_ENV, raising=False)
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setattr("tempfile.tempdir", str(base))
        yield base


@needs_root
def test_root_falls_back_when_nobody_took_its_directory(
    shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid, _ = nobody()
    if python_for_nobody() is None:
        pytest.skip("no Python interpreter here that the nobody user may run")
    squat = shared_tmp / f"portinspect-{os.geteuid()}"
    subprocess.run(
        [str(python_for_nobody()), "-c", f"import os; os.mkdir({str(squat)!r}, 0o777)"],
        user=uid,
        group=nobody()[1],
        extra_groups=[],
        check=True,
        timeout=HANG,
    )
    assert squat.stat().st_uid == uid
    # The fallback is ~/.cache/portinspect: a test must not write into the real home.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setattr(leases, "_home", lambda: str(home))
    with pytest.warns(LeaseDirWarning) as caught:
        ports = find_free_ports()
    [message] = [str(w.message) for w in caught]
    assert message == (
        f"lease directory {squat} is taken (a directory of uid {uid}); "
        f"using {home}/.cache/portinspect instead"
    )
    assert [p.name for p in (home / ".cache" / "portinspect").glob("*.lease")] == [
        f"{ports[0]}.lease"
    ]
    assert list(squat.iterdir()) == []
    with pytest.warns(LeaseDirWarning):  # the same fallback, said again
        freeport.release_leases(ports)
    assert list((home / ".cache" / "portinspect").glob("*.lease")) == []


@needs_root
@pytest.mark.unprivileged
def test_nobody_falls_back_when_root_took_its_directory(shared_tmp: Path) -> None:
    uid, _ = nobody()
    squat = shared_tmp / f"portinspect-{uid}"
    squat.mkdir(mode=0o700)  # root's, with nobody's name

    def search() -> dict[str, Any]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ports = find_free_ports()
        where = Path(str(leases.lease_directory()))
        return {
            "ports": ports,
            "warnings": [str(w.message) for w in caught],
            "leases": sorted(p.name for p in where.glob("*.lease")),
            "where": str(where),
        }

    result = run_as_nobody(search)
    assert result["where"].startswith(f"{shared_tmp}/portinspect-{uid}-")  # private, new
    assert result["leases"] == [f"{result['ports'][0]}.lease"]
    [message] = result["warnings"]
    assert message.startswith(f"lease directory {squat} is taken (a directory of uid 0); ")
    assert message.endswith(", which other portinspect processes will not see")
    assert list(squat.iterdir()) == []


@needs_root
def test_root_ignores_a_runtime_dir_that_is_not_its_own(
    shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `su` without `-`, root keeps the user's XDG_RUNTIME_DIR: passed over, as the XDG
    spec asks (it must be ours, mode 0700)."""
    uid, gid = nobody()
    runtime = shared_tmp / "run-user"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, uid, gid)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert leases.lease_directory() == shared_tmp / f"portinspect-{os.geteuid()}"
    assert list(runtime.iterdir()) == []


# --- full, read-only, unwritable --------------------------------------------------------------

NAMESPACE = textwrap.dedent(
    """
    import json, os, subprocess, sys, tempfile
    script, port = sys.argv[1], sys.argv[2]
    results = {}
    for name, options in (("full", "nr_inodes=1"), ("read-only", "ro")):
        where = tempfile.mkdtemp()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", where], check=True)
        env = dict(os.environ, PORTINSPECT_LEASE_DIR=where)
        done = subprocess.run([script, "free", "--near", port], capture_output=True, text=True,
                              env=env, timeout=60)
        results[name] = {"code": done.returncode, "err": done.stderr, "where": where}
    print(json.dumps(results))
    """
)


@needs_root
def test_a_full_or_read_only_lease_dir_is_the_documented_hint(free_port: int) -> None:
    results = run_in_namespace(["--mount"], NAMESPACE, str(SCRIPT), str(free_port))
    reasons = {"full": "no space left on device", "read-only": "read-only file system"}
    for name, reason in reasons.items():
        got = results[name]
        assert got["code"] == 1, got
        assert got["err"] == (
            f"portinspect: cannot write a lease in {got['where']}: {reason}; "
            "set PORTINSPECT_LEASE_DIR or use --no-lease\n"
        )


@needs_root
@pytest.mark.unprivileged
def test_an_unwritable_lease_dir_is_the_documented_hint() -> None:
    uid, gid = nobody()
    with open_directory() as base:
        locked = base / "leases"
        locked.mkdir(mode=0o500)
        os.chown(locked, uid, gid)

        def free() -> dict[str, Any]:
            os.environ[freeport.LEASE_DIR_ENV] = str(locked)
            result = CliRunner().invoke(app, ["free"])
            return {"code": result.exit_code, "err": result.stderr}

        got = run_as_nobody(free)
    assert got == {
        "code": 1,
        "err": f"portinspect: cannot write a lease in {locked}: permission denied; "
        "set PORTINSPECT_LEASE_DIR or use --no-lease\n",
    }
    assert not terminal_unsafe(got["err"].rstrip("\n"))
