"""The lease directory: one file per port handed out, a lock, and where the directory lives.

freeport.py decides which ports to hand out; this module only records them, so that parallel
callers (CI shards, xdist workers) never get the same port. It is the only user of fcntl and
msvcrt in portinspect.

The directory may be shared with, or planted by, another local user, so nothing in it is
trusted (POSIX):
- It is opened ONCE, one path component at a time with O_NOFOLLOW, refusing a symlink owned
  by anyone but us or root, and checked on the descriptor (owner, mode). Every later file
  operation is relative to that descriptor (openat, unlinkat, linkat, fstatat): renaming or
  swapping the directory, or a symlink somewhere on its path, cannot send a create or a
  delete anywhere else.
- Lock and lease files are opened O_NOFOLLOW | O_NONBLOCK and used only when fstat says
  regular file: a FIFO, a directory or a symlink named `8000.lease` or `.lock` can neither
  hang us nor be read as a lease. The lock is waited for at most LOCK_TIMEOUT.
- Lease contents are parsed strictly and never raise: a pid, a time or a name out of range
  makes the file "not ours": it keeps its port from being handed out for
  DEFAULT_LEASE_SECONDS after its mtime, and is never trusted beyond that (never a pid to
  look up, never a time in the far future).
- Only names this module writes are ever removed (`<port>.lease`, `.<port>.<token>.tmp`),
  and only regular files.

Windows has no dir_fd: there the same operations go through paths, checked when the store
opens (a directory, not a link); a swap of the directory after that check is not caught.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from portinspect import _interrupts
from portinspect.errors import PortInspectError
from portinspect.inputs import is_port
from portinspect.safetext import clean

LEASE_DIR_ENV = "PORTINSPECT_LEASE_DIR"
# Long enough for a CI step to start a server that runs migrations first; short enough that a port
# handed to a job that then failed comes back within half a minute. get-port withholds 15-30 s.
# A lease also ends as soon as the port has a listener.
DEFAULT_LEASE_SECONDS = 30.0
MAX_LEASE_SECONDS = 24 * 3600.0
# A lock is held for microseconds (re-read a lease, unlink it); a holder that keeps it longer
# is stuck or hostile, and waiting on it must not hang `free`.
LOCK_TIMEOUT = 1.0
# A directory with more entries than this is not one we filled: the sweep stops there.
MAX_SWEEP_ENTRIES = 10_000

_LEASE_SUFFIX = ".lease"
_LOCK_NAME = ".lock"
_LEASE_MAX_BYTES = 4096
_ORPHAN_TMP_SECONDS = 60.0  # a temp file lives microseconds; one this old was left by a crash
_CLOCK_SLACK = 60.0  # mtimes and expiry times this far in the future are not ours
_MAX_PID = 2**31 - 1
# Patterns as text, compiled by `re` (and cached) the first time a lease is read: most runs
# of `free` read none, and compiling them all at import was 1 ms of its start-up.
_TMP_NAME = r"\.([0-9]{1,5})\.([0-9A-Za-z_-]{1,64})\.tmp\Z"
_FIELD_RULES = {
    "pid": r"[0-9]{1,10}\Z",
    "expires": r"[0-9]{1,12}(\.[0-9]{1,9})?\Z",
    "release_on_exit": r"[01]\Z",
    "keep_while_bound": r"[01]\Z",
    "token": r"[0-9A-Za-z_-]{0,64}\Z",
    "created": r"[0-9]{1,12}(\.[0-9]{1,9})?\Z",
}
_SYMLINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
# Every call the descriptor-relative store makes must take a dir_fd here.
_AT_CALLS = {os.open, os.stat, os.unlink, os.link, os.mkdir, os.readlink}
USES_DIR_FD = (
    sys.platform != "win32" and os.supports_dir_fd >= _AT_CALLS and os.scandir in os.supports_fd
)


class LeaseDirError(PortInspectError):
    """The lease directory cannot be used: exit 1, with the way out in the message."""


class LeaseDirWarning(UserWarning):
    """The usual lease directory could not be used and another one was, or the lock is stuck."""


def _shown(path: str) -> str:
    """A path for a message: it may come from the environment or another user's names."""
    return clean(path, 300)


def _hint(message: str) -> LeaseDirError:
    return LeaseDirError(f"{message}; set {LEASE_DIR_ENV} or use --no-lease")


# --- one lease --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """The content of one lease file: who took the port, until when."""

    port: int
    pid: int  # the process that took the lease (0 when the file is not one we can trust)
    expires: float  # seconds since the epoch: leases are shared between processes
    release_on_exit: bool  # the lease also ends when pid exits
    token: str  # tells our own lease from a newer one on the same port
    # Set when `<port>.lease` is not a regular file (a directory, a FIFO, a symlink): it is
    # never read, never removed, and its port is not handed out while it is there.
    odd: str | None = None
    # When it was taken (seconds since the epoch; 0 in files of older versions): a socket
    # table read before then cannot say its port got bound (see LeaseStore.sweep).
    created: float = 0.0
    # The lease outlives the first bind: a caller that stops and restarts its server, or
    # frees the port and checks that it stays free, keeps it until it gives it back.
    keep_while_bound: bool = False

    def encode(self) -> bytes:
        # Only when set, so that every other lease reads exactly as before.
        kept = "keep_while_bound=1\n" if self.keep_while_bound else ""
        return (
            f"pid={self.pid}\nexpires={self.expires:.3f}\n"
            f"release_on_exit={int(self.release_on_exit)}\ntoken={self.token}\n"
            f"created={self.created:.6f}\n{kept}"
        ).encode("ascii")

    @classmethod
    def decode(cls, port: int, data: bytes, now: float | None = None) -> Lease | None:
        """The lease in data, or None when data is not exactly what encode() writes.

        Never raises. Bounds: a pid of 1 to 2**31-1, an expiry no later than the longest
        lease from now (so `inf`, `nan` and `1e300` are not leases), a short plain token.
        """
        if len(data) > _LEASE_MAX_BYTES or not data.isascii():
            return None
        fields: dict[str, str] = {}
        for line in data.decode("ascii").splitlines():
            key, eq, value = line.partition("=")
            rule = _FIELD_RULES.get(key)
            if not eq or rule is None or key in fields or not re.match(rule, value):
                return None
            fields[key] = value
        if "pid" not in fields or "expires" not in fields:
            return None
        pid, expires = int(fields["pid"]), float(fields["expires"])
        latest = (time.time() if now is None else now) + MAX_LEASE_SECONDS + _CLOCK_SLACK
        if not (1 <= pid <= _MAX_PID and math.isfinite(expires) and expires <= latest):
            return None
        return cls(
            port=port,
            pid=pid,
            expires=expires,
            release_on_exit=fields.get("release_on_exit") == "1",
            token=fields.get("token", ""),
            created=float(fields.get("created", "0")),
            keep_while_bound=fields.get("keep_while_bound") == "1",
        )

    def ended(self, now: float, *, bound: bool) -> bool:
        """True when the lease no longer protects the port and may be removed."""
        if self.odd is not None:
            return False  # not ours to judge or remove
        if now >= self.expires or (bound and not self.keep_while_bound):
            return True
        return self.release_on_exit and self.pid > 0 and not _alive(self.pid)


def _alive(pid: int) -> bool:
    from portinspect import scanner

    return scanner.pid_exists(pid)


def _untrusted(port: int, mtime: float, now: float) -> Lease:
    """A lease file we cannot read or parse (another version, another user, junk).

    It protects its port for DEFAULT_LEASE_SECONDS after it was last written, then counts as
    expired; an mtime in the future (set on purpose, it cannot be ours) counts as expired now.
    """
    expires = mtime + DEFAULT_LEASE_SECONDS if mtime <= now + _CLOCK_SLACK else 0.0
    return Lease(port, 0, expires, False, "")


def lease_name(port: int) -> str:
    return f"{port}{_LEASE_SUFFIX}"


def port_of_name(name: str) -> int | None:
    """8000 for '8000.lease'; None for anything else ('08000.lease', '²³.lease', 'x.lease')."""
    if not name.endswith(_LEASE_SUFFIX):
        return None
    stem = name[: -len(_LEASE_SUFFIX)]
    if not (0 < len(stem) <= 5 and stem.isascii() and stem.isdigit()) or stem[0] == "0":
        return None
    port = int(stem)
    return port if is_port(port) else None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


# --- the directory, opened once ---------------------------------------------------------------


class _Dir:
    """An open lease directory: every operation is relative to its descriptor (POSIX)."""

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path  # for messages, and the operations on Windows
        self.fd = fd

    def _where(self, name: str) -> str:
        return name if self.fd is not None else os.path.join(self.path, name)  # noqa: PTH118

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        return os.open(self._where(name), flags | _CLOEXEC, mode, dir_fd=self.fd)

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(self._where(name), dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name: str) -> None:
        os.unlink(self._where(name), dir_fd=self.fd)

    def link(self, src: str, dst: str) -> None:
        os.link(
            self._where(src),
            self._where(dst),
            src_dir_fd=self.fd,
            dst_dir_fd=self.fd,
            follow_symlinks=False,
        )

    def entries(self) -> Iterator[os.DirEntry[str]]:
        with os.scandir(self.fd if self.fd is not None else self.path) as it:
            yield from it

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def _trusted_owner(uid: int) -> bool:
    return uid in (0, _euid())


def _walk(path: str, *, create: bool) -> tuple[int, str]:
    """(descriptor, real path) of directory `path`, opened one component at a time.

    Symlinks are followed only when root or we own them (macOS's /tmp -> /private/tmp, a
    home directory moved elsewhere); one another user owns is refused, as is a symlink as the
    last component (what it points at can change between any two uses). `..` is resolved
    lexically. With create, missing components are made, mode 0700.
    """
    parts = [p for p in os.path.normpath(path).split("/") if p]
    done: list[str] = []
    hops = 0
    fd = os.open("/", _DIR_FLAGS)
    try:
        while parts:
            name = parts.pop(0)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)
                parts.insert(0, name)
                continue
            except OSError as exc:
                where = "/" + "/".join([*done, name])
                # O_NOFOLLOW on a symlink: ELOOP (Linux, macOS), EMLINK (FreeBSD).
                info = None
                if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if info is None or not stat.S_ISLNK(info.st_mode):
                    raise OSError(exc.errno, exc.strerror, where) from None
                if not parts:
                    raise _hint(
                        f"lease directory {_shown(where)} is a symlink; "
                        "name the directory it points to"
                    ) from exc
                if not _trusted_owner(info.st_uid):
                    raise _hint(
                        f"{_shown(where)} is a symlink owned by uid {info.st_uid}, "
                        "who could point it anywhere"
                    ) from exc
                hops += 1
                if hops > _SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), where) from exc
                target = os.readlink(name, dir_fd=fd)
                base = [] if target.startswith("/") else done
                full = os.path.normpath("/" + "/".join([*base, target, *parts]))
                parts = [p for p in full.split("/") if p]
                done = []
                os.close(fd)
                fd = os.open("/", _DIR_FLAGS)
                continue
            os.close(fd)
            fd = child
            done.append(name)
    except BaseException:
        os.close(fd)
        raise
    return fd, "/" + "/".join(done)


def _open_dir(path: str, *, create: bool) -> _Dir:
    """The directory at path, opened safely (POSIX) or checked by path (Windows)."""
    if not USES_DIR_FD:
        p = Path(path)
        if create:
            p.mkdir(mode=0o700, parents=True, exist_ok=True)
        if p.is_symlink() or not p.is_dir():
            raise _hint(f"lease directory {_shown(path)} is not a directory")
        return _Dir(str(p), None)
    fd, real = _walk(os.path.abspath(path), create=create)  # noqa: PTH100
    return _Dir(real, fd)


def _problem(info: os.stat_result, *, private: bool) -> str | None:
    """Why a lease directory we opened may not be used, or None.

    private (the default places): ours, and writable by nobody else. Named by the user
    (PORTINSPECT_LEASE_DIR): ours, or root's (a shared directory such as one under /srv); a
    directory another user owns could be emptied or filled by them at will.
    """
    owner = info.st_uid
    if owner != _euid() and (private or owner != 0):
        return f"belongs to uid {owner}, not to you"
    if private and info.st_mode & 0o022:
        return "is writable by other users"
    return None


class _Squatted(NamedTuple):
    path: str
    uid: int
    what: str


def _open_private(parent: _Dir, name: str) -> _Dir | _Squatted:
    """parent/name, created if missing: ours and private, or who took the name from us."""
    assert parent.fd is not None
    path = os.path.join(parent.path, name)  # noqa: PTH118
    try:
        os.mkdir(name, 0o700, dir_fd=parent.fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _hint(f"cannot create lease directory {_shown(path)}: {_reason(exc)}") from None
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
    except OSError:
        info = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        if info.st_uid == _euid():  # our own doing: say so rather than work around it
            what = f"{_kind(info.st_mode)}, not a directory"
            raise _private_error(path, what) from None
        return _Squatted(path, info.st_uid, _kind(info.st_mode))
    found = _Dir(path, fd)
    info = os.fstat(fd)
    if info.st_uid != _euid():
        found.close()
        return _Squatted(path, info.st_uid, "a directory")
    problem = _problem(info, private=True)
    if problem is not None:
        found.close()
        raise _private_error(path, problem.removeprefix("is "))
    return found


def _private_error(path: str, problem: str) -> LeaseDirError:
    return LeaseDirError(
        f"lease directory {_shown(path)} is {problem}; "
        f"remove it, set {LEASE_DIR_ENV}, or use --no-lease"
    )


def _runtime_dir() -> _Dir | None:
    """$XDG_RUNTIME_DIR when it is what the spec promises: ours, mode 0700.

    After `su` without `-`, root still has the user's XDG_RUNTIME_DIR: a directory that user
    controls. It is then passed over, silently, as the spec asks.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not runtime.startswith("/"):
        return None
    try:
        found = _open_dir(runtime, create=False)
    except (OSError, LeaseDirError):
        return None
    assert found.fd is not None
    info = os.fstat(found.fd)
    if info.st_uid != _euid() or info.st_mode & 0o077:
        found.close()
        return None
    return found


def _home() -> str | None:
    """Our home directory from the password database, not $HOME (which `su` keeps)."""
    try:
        import pwd

        return pwd.getpwuid(_euid()).pw_dir
    except (ImportError, KeyError):
        return None


def _home_dir() -> _Dir | None:
    """~/.cache/portinspect, the fallback when the temp dir's name is taken by another user."""
    home = _home()
    if not home:
        return None
    try:
        found = _open_dir(home, create=False)
    except (OSError, LeaseDirError):
        return None
    try:
        assert found.fd is not None
        if os.fstat(found.fd).st_uid != _euid():
            return None
        cache = _open_private(found, ".cache")
        if isinstance(cache, _Squatted):
            return None
        try:
            leases = _open_private(cache, "portinspect")
        finally:
            cache.close()
        return leases if isinstance(leases, _Dir) else None
    except (OSError, LeaseDirError):
        return None
    finally:
        found.close()


# The private directory each process fell back to: (pid, euid, temp dir) -> its path.
_PRIVATE: dict[tuple[int, int, str], str] = {}


def _open_private_fallback(path: str) -> _Dir | None:
    try:
        found = _open_dir(path, create=False)
    except (OSError, LeaseDirError):
        return None
    assert found.fd is not None
    if _problem(os.fstat(found.fd), private=True) is not None:
        found.close()
        return None
    return found


def _fallback(squatted: _Squatted) -> _Dir:
    """A private directory when <tmp>/portinspect-<uid> was taken by another user."""
    found = _home_dir()
    shared = found is not None
    if found is None:
        # Private to this process: leases then keep apart only the searches it runs, and
        # every call in it must find the same directory, or it could not give leases back.
        key = (os.getpid(), _euid(), tempfile.gettempdir())
        path = _PRIVATE.get(key)
        found = _open_private_fallback(path) if path else None
        if found is None:
            found = _open_dir(tempfile.mkdtemp(prefix=f"portinspect-{_euid()}-"), create=False)
            _PRIVATE[key] = found.path
    warnings.warn(
        LeaseDirWarning(
            f"lease directory {_shown(squatted.path)} is taken ({squatted.what} of uid "
            f"{squatted.uid}); using {_shown(found.path)} instead"
            + ("" if shared else ", which other portinspect processes will not see")
        ),
        stacklevel=4,
    )
    return found


def _open_default() -> _Dir:
    """$PORTINSPECT_LEASE_DIR, else $XDG_RUNTIME_DIR/portinspect, else <tmp>/portinspect-<uid>
    (else a private fallback, with a warning, when another user took that name)."""
    override = os.environ.get(LEASE_DIR_ENV)
    if override:
        return open_named(override)
    if not USES_DIR_FD:  # Windows: checked by path, see the module docstring
        name = "portinspect" if sys.platform == "win32" else f"portinspect-{_euid()}"
        return _open_dir(os.path.join(tempfile.gettempdir(), name), create=True)  # noqa: PTH118
    runtime = _runtime_dir()
    if runtime is not None:
        try:
            found = _open_private(runtime, "portinspect")
        finally:
            runtime.close()
        if isinstance(found, _Dir):
            return found
        return _fallback(found)
    tmp = _open_dir(tempfile.gettempdir(), create=False)
    try:
        found = _open_private(tmp, f"portinspect-{_euid()}")
    finally:
        tmp.close()
    return found if isinstance(found, _Dir) else _fallback(found)


def open_named(path: str) -> _Dir:
    """A directory the user named (PORTINSPECT_LEASE_DIR, or one lease_directory() gave):
    created if missing, reached without another user's symlinks, ours or root's."""
    try:
        found = _open_dir(path, create=True)
    except LeaseDirError:
        raise
    except OSError as exc:
        raise _hint(f"cannot create lease directory {_shown(path)}: {_reason(exc)}") from None
    if found.fd is not None:
        problem = _problem(os.fstat(found.fd), private=False)
        if problem is not None:
            found.close()
            raise _hint(f"lease directory {_shown(path)} {problem}")
    return found


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def _opened(opener: Callable[[], _Dir]) -> _Dir:
    try:
        return opener()
    except LeaseDirError:
        raise
    except OSError as exc:
        where = f" {_shown(exc.filename)}" if isinstance(exc.filename, str) else ""
        raise _hint(f"cannot open lease directory{where}: {_reason(exc)}") from None


def lease_directory() -> Path:
    """Where leases live, created on first use; see the module docstring for the checks.

    $PORTINSPECT_LEASE_DIR if set (point several jobs at one directory, or tests at their
    own); else $XDG_RUNTIME_DIR/portinspect when that is ours and private (per user, on
    tmpfs, emptied at logout); else <tempdir>/portinspect-<uid>, which must be a real
    directory owned by us and writable by nobody else. When another user took that name,
    ~/.cache/portinspect, else a new private directory, with a LeaseDirWarning naming them.
    On Windows the temp dir is already per user (%LOCALAPPDATA%\\Temp): <tempdir>\\portinspect.
    """
    found = _opened(_open_default)
    found.close()
    return Path(found.path)


# --- the store --------------------------------------------------------------------------------


def _same_token(token: str, lease: Lease) -> bool:
    return lease.token == token


def _taken_by(pid: int, lease: Lease) -> bool:
    return lease.pid == pid


class LeaseStore:
    """One directory, one file per leased port: `<port>.lease`.

    Why this is race-free:
    - Taking a lease: the content goes to a private temp file first, which is then hard-linked
      to `<port>.lease`. link() fails with EEXIST when the name exists, so of any number of
      callers exactly one gets the port (the O_EXCL guarantee), and the name never points at a
      half-written file: Ctrl-C or a crash can only leave a temp file behind.
    - Removing a lease (ended, or given back) happens only under an exclusive lock on `.lock`
      (flock; msvcrt on Windows), after re-reading the file under that lock. While we hold the
      lock nobody else can remove the file, and nobody can create a new one over it (link fails
      while the name exists), so the file we unlink is the very one we judged ended. Two
      callers breaking the same stale lease thus cannot delete each other's fresh one.
    - The lock is never held while waiting for anything else, the kernel drops it when its
      holder dies, and we wait for it at most LOCK_TIMEOUT: when a stuck or hostile process
      holds it, nothing is removed (stale leases keep their ports a little longer) and the
      search goes on.

    A store holds its directory open: use it as a context manager, or close() it.
    """

    def __init__(self, directory: Path | str | _Dir) -> None:
        self._dir = (
            directory
            if isinstance(directory, _Dir)
            else _opened(lambda: open_named(str(directory)))
        )
        self.directory = Path(self._dir.path)
        self._lock_stuck = False

    @classmethod
    def default(cls) -> LeaseStore:
        return cls(_opened(_open_default))

    def close(self) -> None:
        self._dir.close()

    def __enter__(self) -> LeaseStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def path(self, port: int) -> Path:
        return self.directory / lease_name(port)

    # -- reading -------------------------------------------------------------------------

    def read(self, port: int) -> Lease | None:
        """The lease on port, or None if there is none. Never raises for what is in the file."""
        now = time.time()
        name = lease_name(port)
        try:
            info = self._dir.lstat(name)
        except FileNotFoundError:
            return None
        except OSError:
            return Lease(port, 0, now + DEFAULT_LEASE_SECONDS, False, "", odd="unreadable")
        if not stat.S_ISREG(info.st_mode):
            return Lease(port, 0, 0.0, False, "", odd=_kind(info.st_mode))
        try:
            fd = self._dir.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:  # another user's file in a shared directory, or swapped meanwhile
            return _untrusted(port, info.st_mtime, now)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                return Lease(port, 0, 0.0, False, "", odd=_kind(opened.st_mode))
            data = os.read(fd, _LEASE_MAX_BYTES + 1)
        except OSError:
            return _untrusted(port, info.st_mtime, now)
        finally:
            os.close(fd)
        return Lease.decode(port, data, now) or _untrusted(port, opened.st_mtime, now)

    # -- taking --------------------------------------------------------------------------

    @staticmethod
    def new_lease(
        port: int, seconds: float, *, release_on_exit: bool, keep_while_bound: bool = False
    ) -> Lease:
        # What secrets.token_hex(8) returns, without importing secrets: it pulls in hmac and
        # hashlib, 7 ms of every `free` (benchmarks/RESULTS.md, start-up).
        token = os.urandom(8).hex()
        now = time.time()
        return Lease(
            port,
            os.getpid(),
            now + seconds,
            release_on_exit,
            token,
            created=now,
            keep_while_bound=keep_while_bound,
        )

    def acquire(self, mine: Lease) -> Lease:
        """Try to take the lease `mine`; returns the lease now on the port (`mine` if we won)."""
        theirs: Lease | None = None
        for _attempt in range(3):
            if self._publish(mine):
                return mine
            theirs = self.read(mine.port)
            if theirs is not None and not theirs.ended(time.time(), bound=False):
                return theirs
            if not self._remove_if(mine.port, _ended_unbound):
                break  # the lock is stuck: leave the port to whoever holds it
        # Lost three races for the same port in a row: leave it to whoever keeps winning.
        return theirs or Lease(mine.port, 0, mine.expires, False, "")

    def _publish(self, lease: Lease) -> bool:
        """Create `<port>.lease` with its full content in one step; False if it exists."""
        # Microseconds, with Ctrl-C held: an interrupt between creating the temp file and
        # the try below would leave the file behind.
        with _interrupts.held():
            return self._publish_now(lease)

    def _publish_now(self, lease: Lease) -> bool:
        tmp = f".{lease.port}.{lease.token}.tmp"
        try:
            fd = self._dir.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW)
        except OSError as exc:
            raise self._write_error(exc) from None
        try:
            try:
                data = lease.encode()
                if os.write(fd, data) != len(data):
                    raise OSError(errno.EIO, "short write")
            finally:
                os.close(fd)
            try:
                self._dir.link(tmp, lease_name(lease.port))
            except FileExistsError:
                return False
            return True
        except OSError as exc:
            raise self._write_error(exc) from None
        finally:
            with contextlib.suppress(OSError):
                self._dir.unlink(tmp)

    def _write_error(self, exc: OSError) -> LeaseDirError:
        """ENOSPC, EROFS, EACCES, EDQUOT, a file system without hard links: one line."""
        return _hint(f"cannot write a lease in {_shown(self._dir.path)}: {_reason(exc)}")

    # -- giving back and sweeping --------------------------------------------------------

    def release(self, leases: Iterable[Lease]) -> None:
        """Give back our own leases; a lease someone else took meanwhile stays."""
        wanted = list(leases)
        if wanted:
            with self._locked() as locked:
                if locked:
                    for lease in wanted:
                        self._unlink_locked(lease.port, functools.partial(_same_token, lease.token))

    def release_ports(self, ports: Iterable[int], pid: int) -> None:
        """Give back the leases pid took on ports."""
        with self._locked() as locked:
            if locked:
                for port in ports:
                    self._unlink_locked(port, functools.partial(_taken_by, pid))

    def sweep(self, bound: Container[int], seen_at: float | None = None) -> None:
        """Remove every lease that ended: expired, its port now bound, or its owner gone.

        Run before each search. Removing a bound port's lease is what makes a lease last
        "until it is bound": when that server stops, the port is free again at once. Only
        regular files with the names we write are looked at; the rest of the directory is
        not ours.

        bound: the ports that had a listener when the socket table was read, at seen_at
        (time.time()). A lease taken after that read is never taken for bound: the listener
        seen may be an old server that stopped since, its port leased anew a moment later;
        removing that new lease on the word of the old read let a third caller take the
        same port (ten `portinspect run`s in parallel on one port block found it).
        """
        now = time.time()
        before = now if seen_at is None else seen_at

        def ended_now(lease: Lease) -> bool:
            return lease.ended(time.time(), bound=lease.port in bound and lease.created < before)

        ended: list[int] = []
        try:
            for count, entry in enumerate(self._dir.entries()):
                if count >= MAX_SWEEP_ENTRIES:
                    break
                name = entry.name
                port = port_of_name(name)
                if port is not None:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    lease = self.read(port)
                    if lease is not None and ended_now(lease):
                        ended.append(port)
                elif name.endswith(".tmp") and re.match(_TMP_NAME, name):
                    self._remove_orphan(name, now)
        except OSError:
            return  # an unlistable directory: nothing to sweep, the search goes on
        if ended:
            with self._locked() as locked:
                if locked:
                    for port in ended:
                        self._unlink_locked(port, ended_now)

    def _remove_if(self, port: int, ended: Callable[[Lease], bool]) -> bool:
        """Remove the lease on port if `ended` holds under the lock; False if no lock."""
        with self._locked() as locked:
            if locked:
                self._unlink_locked(port, ended)
            return locked

    def _unlink_locked(self, port: int, condition: Callable[[Lease], bool]) -> None:
        """Re-read the lease under the lock and remove it if condition still holds."""
        lease = self.read(port)
        if lease is not None and lease.odd is None and condition(lease):
            # EPERM in a sticky shared directory, EROFS...: the lease stays, the port is skipped.
            with contextlib.suppress(OSError):
                self._dir.unlink(lease_name(port))

    def _remove_orphan(self, name: str, now: float) -> None:
        with contextlib.suppress(OSError):
            info = self._dir.lstat(name)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > _ORPHAN_TMP_SECONDS:
                self._dir.unlink(name)

    # -- the lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        """Yields True with the directory's lock held, False when it cannot be had in time."""
        try:
            fd = self._dir.open(_LOCK_NAME, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK)
        except OSError as exc:
            self._warn_once(f"cannot open its lock: {_reason(exc)}")
            yield False
            return
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                self._warn_once(f"its lock {_LOCK_NAME} is {_kind(mode)}")
                yield False
                return
            timeout = 0.0 if self._lock_stuck else LOCK_TIMEOUT
            locked = _lock(fd, timeout)
            if not locked:
                self._warn_once(f"its lock has been held by another process for {timeout:g}s")
            yield locked
        finally:
            os.close(fd)  # and with it the lock

    def _warn_once(self, why: str) -> None:
        if not self._lock_stuck:
            self._lock_stuck = True
            warnings.warn(
                LeaseDirWarning(
                    f"lease directory {_shown(self._dir.path)}: {why}; "
                    "ended leases are left in place"
                ),
                stacklevel=5,
            )


def _ended_unbound(lease: Lease) -> bool:
    return lease.ended(time.time(), bound=False)


def _retry(attempt: Callable[[], bool], timeout: float) -> bool:
    """Try attempt() until it succeeds or timeout passes (at least once)."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return True


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int, timeout: float) -> bool:
        def attempt() -> bool:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError:
                return False
            return True

        return _retry(attempt, timeout)

else:
    import fcntl

    def _lock(fd: int, timeout: float) -> bool:
        def attempt() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        return _retry(attempt, timeout)


def release_leases(ports: Iterable[int]) -> None:
    """Give back, before they expire, the leases this process took on ports.

    Leases other processes took on the same ports are left alone.
    """
    with LeaseStore.default() as store:
        store.release_ports(ports, os.getpid())
