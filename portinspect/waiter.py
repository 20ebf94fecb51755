"""wait_for(): poll the socket table until ports listen (or are free), or time runs out.

It reads the kernel's socket table rather than connecting, so a server bound to ::1
only, 127.0.0.1 only or a wildcard is seen alike: no `localhost` resolving to the
wrong family (wait-on's trap), and no connection the server has to accept.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from portinspect import scanner
from portinspect.errors import UsageError, WaitTimeoutError
from portinspect.models import Proto
from portinspect.portspec import check_ports, check_proto

DEFAULT_TIMEOUT = 30.0
# 100 ms keeps a wait cheap (one socket-table read per poll, about 1 ms on an idle
# machine) while adding at most a tenth of a second to a CI step.
DEFAULT_INTERVAL = 0.1
MAX_SECONDS = 7 * 24 * 3600.0
MIN_INTERVAL = 0.001


@dataclass(frozen=True, slots=True)
class WaitResult:
    ports: tuple[int, ...]
    free: bool  # True: waited for no listener; False: waited for a listener
    elapsed: float  # seconds from the call to the condition holding
    polls: int


def check_seconds(value: float, what: str, *, minimum: float = 0.0) -> float:
    """A duration from the user: finite, not negative, not absurd."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise UsageError(f"invalid {what} {value!r}: expected a number of seconds")
    if not math.isfinite(value) or value < minimum or value > MAX_SECONDS:
        raise UsageError(
            f"invalid {what} {value!r}: expected seconds from {minimum:g} to {MAX_SECONDS:g}"
        )
    return float(value)


# Seconds as people type them: 30, 0.5, .5. ASCII digits only, like ports: "1e3", "1_0",
# "inf", "nan" and "３０" are all numbers to float(), and none is a duration anyone types.
SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9}")


def parse_seconds(text: str, what: str, *, minimum: float = 0.0) -> float:
    """A duration typed on the command line: `30`, `0.5`; UsageError for anything else."""
    stripped = text.strip(" \t")
    if not SECONDS.fullmatch(stripped):
        shown = repr(text if len(text) <= 40 else text[:37] + "...")
        raise UsageError(f"invalid {what} {shown}: expected seconds, such as 30 or 0.5")
    return check_seconds(float(stripped), what, minimum=minimum)


def listening_ports(ports: frozenset[int], protos: frozenset[Proto]) -> frozenset[int]:
    """Which of `ports` have a listener now, whoever owns it.

    Owners do not matter to a wait, so no walk over /proc/*/fd: one netlink dump on Linux,
    10 ms instead of 1.2 s for a full scan on a machine with 175k open fds (kill's numbers).
    """
    return ports & scanner.listening_ports(protos)


def wait_for(
    ports: int | Iterable[int],
    *,
    free: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    proto: Proto | str | None = None,
    probe: Callable[[frozenset[int], frozenset[Proto]], frozenset[int]] = listening_ports,
) -> WaitResult:
    """Block until every port has a listener (or, with free=True, none has).

    timeout: seconds, None to wait forever; 0 checks once. Raises WaitTimeoutError
    (exit 124 in the CLI) naming the ports still pending when time runs out.
    interval: seconds between polls.
    proto: "tcp" or "udp"; both when None.
    """
    wanted = check_ports(ports) or frozenset()
    if not wanted:
        raise UsageError("no port to wait for")
    protos = check_proto(proto)
    limit = None if timeout is None else check_seconds(timeout, "timeout")
    pause = check_seconds(interval, "interval", minimum=MIN_INTERVAL)
    start = time.monotonic()
    polls = 0
    while True:
        polls += 1
        listening = probe(wanted, protos)
        pending = wanted & listening if free else wanted - listening
        elapsed = time.monotonic() - start
        if not pending:
            return WaitResult(tuple(sorted(wanted)), free, elapsed, polls)
        if limit is not None and elapsed >= limit:
            state = "still listening" if free else "not listening"
            ports_text = ", ".join(map(str, sorted(pending)))
            raise WaitTimeoutError(
                f"timed out after {limit:g}s: port {ports_text} {state}",
                pending=tuple(sorted(pending)),
                elapsed=elapsed,
            )
        remaining = math.inf if limit is None else limit - elapsed
        time.sleep(min(pause, max(remaining, 0.0)))
