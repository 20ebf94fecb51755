"""Exit statuses and the library's errors.

One table maps every failure to one exit code, shared by all commands. The library
raises these errors; the CLI turns them into a message and the code (httpie's
ExitStatus, psutil's errors that carry pid/port context).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portinspect.freeport import Skip
    from portinspect.models import Teardown, WaitResult


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # unexpected error
    USAGE = 2  # bad input
    NOT_LISTENING = 3  # nothing listens on the port(s) asked about
    PERMISSION = 4  # owner hidden, or a process we may not signal
    STILL_HELD = 5  # the port is still held after `kill`
    NO_FREE_PORT = 6  # no free port in the range
    # `audit` found a way in at or above --fail-on: a verdict, not a failure to run, so it
    # shares no code with an error (7 and 8 are left free for other commands' outcomes).
    FINDINGS = 9
    # `run`'s own codes sit where test commands rarely exit (pytest uses 0-5, shells 126-127,
    # Python 120 for a failed flush at exit); run --json tells them apart for sure.
    SERVER_EXITED = 121  # `run`: a server exited before it was ready, or during the tests
    LEFT_BEHIND = 122  # `run`: teardown left a process or a listening port behind
    TIMEOUT = 124  # `wait` timed out; `run`: a server was not ready in time (timeout(1))
    CANNOT_RUN = 126  # `wait -- COMMAND`: the command is not executable (the shell's code)
    COMMAND_NOT_FOUND = 127  # `wait -- COMMAND`: no such command (the shell's code)
    HANGUP = 129  # `run` was sent SIGHUP (128 + 1), and tore everything down
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # `run` was sent SIGTERM (128 + 15), and tore everything down


class PortInspectError(Exception):
    """Base of every error portinspect raises on purpose."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, port: int | None = None, pid: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.port = port
        self.pid = pid

    def __str__(self) -> str:
        return self.message


class UsageError(PortInspectError, ValueError):
    """Bad input: a port of 0, 'abc', a reversed range..."""

    exit_status = ExitStatus.USAGE


class NotListeningError(PortInspectError):
    exit_status = ExitStatus.NOT_LISTENING


class PermissionDeniedError(PortInspectError):
    exit_status = ExitStatus.PERMISSION


class StillHeldError(PortInspectError):
    exit_status = ExitStatus.STILL_HELD


class NoFreePortError(PortInspectError):
    """Too few free ports in the range; no lease is kept. From freeport.reserve(): skips, why
    each candidate was passed over (with explain=True); warnings, what the lease directory
    needed said."""

    exit_status = ExitStatus.NO_FREE_PORT
    skips: tuple[Skip, ...] = ()
    warnings: tuple[str, ...] = ()


class WaitTimeoutError(PortInspectError):
    exit_status = ExitStatus.TIMEOUT

    def __init__(
        self,
        message: str,
        *,
        pending: tuple[int, ...],
        elapsed: float,
        result: WaitResult | None = None,
    ) -> None:
        super().__init__(message, port=pending[0] if pending else None)
        self.pending = pending  # the ports whose condition did not hold in time
        self.elapsed = elapsed
        self.result = result  # every target's report, as wait_for would have returned it


class ServerExitedError(PortInspectError):
    """A server of run()/serve() exited before it was ready (or could not be started).

    name, port and status (its exit code, minus the signal that ended it, or None when it
    could not be started at all); output: the last lines it printed.
    """

    exit_status = ExitStatus.SERVER_EXITED

    def __init__(
        self, message: str, *, name: str, port: int, status: int | None, output: str
    ) -> None:
        super().__init__(message, port=port)
        self.name = name
        self.status = status
        self.output = output


class ServerNotReadyError(PortInspectError):
    """A server of run()/serve() was not ready within the wait timeout (it was stopped)."""

    exit_status = ExitStatus.TIMEOUT

    def __init__(self, message: str, *, name: str, port: int, output: str) -> None:
        super().__init__(message, port=port)
        self.name = name
        self.output = output


class LeftBehindError(PortInspectError):
    """serve()'s teardown left a process or a listening port behind; teardown says which."""

    exit_status = ExitStatus.LEFT_BEHIND

    def __init__(self, message: str, *, teardown: Teardown) -> None:
        super().__init__(message)
        self.teardown = teardown
