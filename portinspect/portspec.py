"""Parsing of the ports users type: 8000, 8000-8010, 8000,8080,9000-9002.

Strict on purpose: only ASCII digits count ("８０００" and "1e3" are not ports), and
every failure is a UsageError whose message fits on one line.
"""

from __future__ import annotations

from collections.abc import Iterable

from portinspect.errors import UsageError
from portinspect.models import ALL_PROTOS, Proto

MIN_PORT = 1
MAX_PORT = 65535
# Spaces and tabs around a port are forgiven; str.strip() would also take "\n", "\x1c" or
# "\u3000", and "8000\n" is no more a port than "８０００".
_BLANKS = " \t"


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
