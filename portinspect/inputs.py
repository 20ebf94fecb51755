"""Parsing and checking of what users give us: ports (8000, 8000-8010, 8000,8080),
protocols, durations and counts, from the command line (text) or the library (values).

Strict on purpose: only ASCII digits count ("８０００" and "1e3" are not ports, "inf" is
no timeout), and every failure is a UsageError whose message fits on one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from portinspect.errors import UsageError
from portinspect.models import ALL_PROTOS, Proto

MIN_PORT = 1
MAX_PORT = 65535
# Spaces and tabs around a port are forgiven; str.strip() would also take "\n", "\x1c" or
# "\u3000", and "8000\n" is no more a port than "８０００".
_BLANKS = " \t"


# The longest wait or timeout anyone means: a week.
MAX_SECONDS = 7 * 24 * 3600.0
# Seconds as people type them: 30, 0.5, .5. ASCII digits only, like ports: "1e3", "1_0",
# "inf", "nan" and "３０" are all numbers to float(), and none is a duration anyone types.
SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9}")


def _shown(text: str) -> str:
    """The user's text, safe to echo on one line (no control characters, bounded)."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    return repr(shown)


def parse_port(text: str, *, what: str = "port") -> int:
    """One port number, 1-65535."""
    stripped = text.strip(_BLANKS)
    if not stripped:
        raise UsageError(f"invalid {what} {_shown(text)}: expected a number from 1 to 65535")
    # str.isdigit() accepts any Unicode digit; only ASCII digits are port numbers.
    if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > 5:
        raise UsageError(f"invalid {what} {_shown(text)}: expected a number from 1 to 65535")
    port = int(stripped)
    if not MIN_PORT <= port <= MAX_PORT:
        raise UsageError(f"invalid {what} {_shown(text)}: ports run from 1 to 65535")
    return port


def parse_range(text: str, *, what: str = "range") -> tuple[int, int]:
    """A closed range 'A-B' with A <= B, or a single port as (P, P)."""
    low_text, sep, high_text = text.strip(_BLANKS).partition("-")
    if not sep:
        port = parse_port(text, what=what)
        return port, port
    low = parse_port(low_text, what=what)
    high = parse_port(high_text, what=what)
    if low > high:
        raise UsageError(f"invalid {what} {_shown(text)}: {low} is greater than {high}")
    return low, high


def parse_port_spec(spec: str) -> frozenset[int]:
    """A comma-separated list of ports and ranges: '8000', '8000-8010', '8000,8080'."""
    if not spec.strip(_BLANKS):
        raise UsageError(f"invalid port {_shown(spec)}: expected e.g. 8000, 8000-8010 or 8000,8080")
    ports: set[int] = set()
    for part in spec.split(","):
        low, high = parse_range(part, what="port")
        ports.update(range(low, high + 1))
    return frozenset(ports)


def parse_port_specs(specs: Iterable[str]) -> frozenset[int]:
    """Several specs, as given as separate arguments: `kill 8000 9000-9002`."""
    ports: set[int] = set()
    for spec in specs:
        ports |= parse_port_spec(spec)
    return frozenset(ports)


def check_ports(ports: int | Iterable[int] | None) -> frozenset[int] | None:
    """Ports given to the library: an int or an iterable of ints, each 1-65535."""
    if ports is None:
        return None
    if isinstance(ports, (str, bytes)) or not isinstance(ports, (int, Iterable)):
        raise UsageError(f"invalid ports {ports!r}: expected an int or an iterable of ints")
    wanted = frozenset([ports] if isinstance(ports, int) else ports)
    for port in wanted:
        if isinstance(port, bool) or not isinstance(port, int) or not MIN_PORT <= port <= MAX_PORT:
            raise UsageError(f"invalid port {port!r}: ports run from 1 to 65535")
    return wanted


def check_proto(proto: Proto | str | None) -> frozenset[Proto]:
    """ "tcp", "udp" (any case) or None for both."""
    if proto is None:
        return ALL_PROTOS
    try:
        return frozenset([Proto(proto.lower() if isinstance(proto, str) else proto)])
    except (ValueError, AttributeError):
        raise UsageError(f"invalid protocol {proto!r}: expected tcp or udp") from None


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and MIN_PORT <= value <= MAX_PORT


def check_seconds(
    value: float, what: str, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    """A duration given to the library: finite, within [minimum, maximum]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise UsageError(f"invalid {what} {value!r}: expected a number of seconds")
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise UsageError(
            f"invalid {what} {value!r}: expected seconds from {minimum:g} to {maximum:g}"
        )
    return float(value)


def parse_seconds(
    text: str, what: str, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    """A duration typed on the command line: `30`, `0.5`; UsageError for anything else."""
    stripped = text.strip(_BLANKS)
    if not SECONDS.fullmatch(stripped):
        raise UsageError(f"invalid {what} {_shown(text)}: expected seconds, such as 30 or 0.5")
    return check_seconds(float(stripped), what, minimum=minimum, maximum=maximum)


def check_count(count: int, what: str, maximum: int) -> int:
    """A number of things given to the library: a whole number from 1 to maximum."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= maximum:
        raise UsageError(f"invalid {what} {count!r}: expected 1 to {maximum}")
    return count


def parse_count(text: str, what: str, maximum: int) -> int:
    """A number of things typed on the command line: ASCII digits, 1 to maximum."""
    stripped = text.strip(_BLANKS)
    # Length first: int() refuses more than 4300 digits with a ValueError of its own.
    if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > len(str(maximum)):
        raise UsageError(f"invalid {what} {_shown(text)}: expected a number from 1 to {maximum}")
    return check_count(int(stripped), what, maximum)
