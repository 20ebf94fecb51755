"""Exit statuses and the library's errors.

One table maps every failure to one exit code, shared by all commands. The library
raises these errors; the CLI turns them into a message and the code (httpie's
ExitStatus, psutil's errors that carry pid/port context).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portinspect.status import ExitStatus as ExitStatus

if TYPE_CHECKING:
    from portinspect.models import Skip, Teardown, WaitResult


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
