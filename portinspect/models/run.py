"""run and serve(): each server, the tests, and the proof of the teardown."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True, slots=True)
class ServerReport:
    """One server of `run` or `serve()`, as far as it got.

    pid is the server's top process (what its command started), None if it never started.
    url is set once it is ready: http://127.0.0.1:PORT, or http://[::1]:PORT when it listens
    on IPv6 only. ready_after counts from its start; stopped_after from the start of the
    teardown until its port was verified free. exit_status is its top process's: the exit
    code, or minus the signal that ended it; None while it runs or if it never started.
    """

    name: str
    command: tuple[str, ...]
    port: int
    pid: int | None = None
    url: str | None = None
    ready_after: float | None = None
    exit_status: int | None = None
    stopped_after: float | None = None
    output: tuple[str, ...] = ()  # the last lines it printed (stdout and stderr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": list(self.command),
            "port": self.port,
            "pid": self.pid,
            "url": self.url,
            "ready_after": _seconds(self.ready_after),
            "exit_status": self.exit_status,
            "stopped_after": _seconds(self.stopped_after),
            "output": list(self.output),
        }


@dataclass(frozen=True, slots=True)
class Signalled:
    """A signal the teardown sent; at is seconds since that server's teardown began."""

    server: str
    pid: int
    signal: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "pid": self.pid, "signal": self.signal, "at": self.at}


@dataclass(frozen=True, slots=True)
class PortCheck:
    """A server's port after its teardown. free: none of the server's listening sockets is
    left there (any address or family, whoever holds it). holders: what listens on the port
    now, as (pid or None, process name): the server's socket still held when not free; with
    free, a newcomer that took the port since (a parallel run, say)."""

    server: str
    port: int
    free: bool
    holders: tuple[tuple[int | None, str | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "port": self.port,
            "free": self.free,
            "holders": [{"pid": pid, "process": name} for pid, name in self.holders],
        }


@dataclass(frozen=True, slots=True)
class Teardown:
    """What stopping the servers did, and the proof. left: processes of the servers' trees
    still alive after SIGKILL, as (server, pid, cmdline)."""

    signalled: tuple[Signalled, ...] = ()
    left: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    ports: tuple[PortCheck, ...] = ()
    elapsed: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.left and all(check.free for check in self.ports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "signalled": [s.to_dict() for s in self.signalled],
            "left": [
                {"server": server, "pid": pid, "cmdline": list(cmdline)}
                for server, pid, cmdline in self.left
            ],
            "ports": [check.to_dict() for check in self.ports],
            "elapsed": round(self.elapsed, 4),
        }


@dataclass(frozen=True, slots=True)
class TestsReport:
    """The test command of `run`: its exit status as a shell reports it (128+N when signal N
    ended it, then `signal` names it)."""

    __test__ = False  # not a pytest test class, whatever its name says

    command: tuple[str, ...]
    exit_status: int
    signal: str | None = None
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "exit_status": self.exit_status,
            "signal": self.signal,
            "elapsed": round(self.elapsed, 4),
        }


class RunOutcome(str, Enum):
    """What ended a `run` (the teardown's verdict is apart: Teardown.clean)."""

    TESTS_PASSED = "tests-passed"
    TESTS_FAILED = "tests-failed"
    SERVER_EXITED = "server-exited"  # before it was ready, or while the tests ran
    NOT_READY = "not-ready"  # not ready within the wait timeout
    INTERRUPTED = "interrupted"  # SIGINT (Ctrl-C)
    TERMINATED = "terminated"  # SIGTERM or SIGHUP

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class RunResult:
    """The whole of one `run`: exit_status is what `portinspect run` exits with."""

    exit_status: int
    outcome: RunOutcome
    message: str  # one line: what ended it
    servers: tuple[ServerReport, ...]
    tests: TestsReport | None
    teardown: Teardown
    failed: str | None = None  # the server that ended the run (server-exited, not-ready)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "message": self.message,
            "failed": self.failed,
            "servers": [s.to_dict() for s in self.servers],
            "tests": None if self.tests is None else self.tests.to_dict(),
            "teardown": self.teardown.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class RunEvent:
    """Progress of `run`, for a caller that shows it: kind is "starting", "ready", "stopped"
    (with server), "tests" (with command), or "holding" (no test command: up until a signal)."""

    kind: str
    server: ServerReport | None = None
    command: tuple[str, ...] = ()
