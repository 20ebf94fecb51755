"""Parsing and checking of what users give us: ports (8000, 8000-8010, 8000,8080),
protocols, durations, counts and wait targets (db:5432, [::1]:8000, http://host/health),
from the command line (text) or the library (values).

Strict on purpose: only ASCII digits count ("８０００" and "1e3" are not ports, "inf" is
no timeout), and every failure is a UsageError whose message fits on one line.
"""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING

from portinspect.errors import UsageError
from portinspect.models import ALL_PROTOS, Proto

if TYPE_CHECKING:
    from portinspect.models.wait import WaitTarget

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


# --- wait targets ---------------------------------------------------------------------------

TARGET_FORMS = "PORT, HOST:PORT, [IPV6]:PORT, tcp://HOST:PORT or http(s)://HOST[:PORT]/PATH"
_DEFAULT_PORTS = {"tcp": None, "http": 80, "https": 443}
# One label of a host name as resolvers take it: letters, digits, hyphens, and underscores
# (compose and Kubernetes service names use them; DNS itself does not forbid them).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"  # compiled on first use: only `wait` reads it
# What a path and query may hold (RFC 3986 unreserved, sub-delims, ':', '@', '/', '?', '%'):
# no blanks, controls or raw non-ASCII, which would end up in the request line as typed.
_URL_PATH = r"[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*"


def _target_error(text: str, why: str) -> UsageError:
    return UsageError(f"invalid target {_shown(text)}: {why}")


def parse_host(host: str, text: str) -> str:
    """A host as typed in a target: localhost, an IP address (canonical) or a host name."""
    import ipaddress  # here: 4 ms that only targets with a host need

    if not host:
        raise _target_error(text, f"no host before the port; expected {TARGET_FORMS}")
    if host.lower().rstrip(".") == "localhost":
        return "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # the kernel takes ::ffff:a.b.c.d as IPv4 a.b.c.d
        if address.is_unspecified:
            raise _target_error(
                text, f"{address} means any address; wait for PORT or 127.0.0.1:PORT instead"
            )
        return str(address)
    if ":" in host:
        raise _target_error(text, "write an IPv6 address in brackets, as in [::1]:8000")
    if len(host) > 253 or not re.fullmatch(_HOST_NAME, host):
        raise _target_error(text, "not a host name or an IP address")
    if host.rstrip(".").rpartition(".")[2].isdigit():
        # 300.1.1.1 or 127.1: no top-level domain is all digits (RFC 3696), and the C
        # resolver would read some of these as IPv4 addresses in shorthand.
        raise _target_error(text, "not a host name or an IP address")
    return host.lower()


def _split_host_port(authority: str, text: str) -> tuple[str, str | None]:
    """'host:port', '[v6]:port', 'host' -> (host, port text or None)."""
    if authority.startswith("["):
        inner, bracket, rest = authority[1:].partition("]")
        if not bracket or ":" not in inner:
            raise _target_error(text, "brackets hold an IPv6 address, as in [::1]:8000")
        if rest and not rest.startswith(":"):
            raise _target_error(text, f"expected {TARGET_FORMS}")
        return inner, rest[1:] if rest else None
    if authority.count(":") > 1:
        raise _target_error(text, "write an IPv6 address in brackets, as in [::1]:8000")
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _parse_url(text: str, stripped: str) -> WaitTarget:
    from portinspect.models.wait import WaitTarget  # only `wait` needs it: not `list`'s import

    scheme, _, rest = stripped.partition("://")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _target_error(text, f"unsupported scheme {_shown(scheme)}; use tcp, http or https")
    rest = rest.partition("#")[0]  # a fragment never goes to the server
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise _target_error(text, "credentials in a URL are not supported")
    host, port_text = _split_host_port(authority, text)
    port = _DEFAULT_PORTS[scheme] if port_text is None else parse_port(port_text)
    if port is None:
        raise _target_error(text, "tcp:// needs a port, as in tcp://db:5432")
    if scheme == "tcp":
        if path not in ("", "/"):
            raise _target_error(text, "tcp:// takes no path")
        return WaitTarget(port=port, host=parse_host(host, text))
    if not re.fullmatch(_URL_PATH, path):
        raise _target_error(text, "the path may hold only URL characters (escape others as %XX)")
    if path.startswith("?"):
        path = "/" + path
    return WaitTarget(port=port, host=parse_host(host, text), scheme=scheme, path=path or "/")


def parse_target(text: str) -> tuple[WaitTarget, ...]:
    """One target as typed: PORT (or a range or list of them: 9000-9002, 8000,8080),
    HOST:PORT, [IPV6]:PORT, tcp://HOST:PORT or http(s)://HOST[:PORT]/PATH."""
    from portinspect.models.wait import WaitTarget

    stripped = text.strip(_BLANKS)
    if "://" in stripped:
        return (_parse_url(text, stripped),)
    if ":" not in stripped and "[" not in stripped:
        if stripped and not any(c in "0123456789-, \t" for c in stripped):
            raise _target_error(text, f"no port; expected {TARGET_FORMS}")
        return tuple(WaitTarget(port=port) for port in sorted(parse_port_spec(text)))
    host, port_text = _split_host_port(stripped, text)
    if port_text is None:
        raise _target_error(text, f"no port; expected {TARGET_FORMS}")
    if "-" in port_text or "," in port_text:
        raise _target_error(text, "ranges and lists are for bare ports: 9000-9002")
    port = parse_port(port_text)
    return (WaitTarget(port=port, host=parse_host(host, text)),)


def parse_targets(texts: Iterable[str]) -> tuple[WaitTarget, ...]:
    """Several targets as typed (`wait 8000 db:5432`), each once, in the order given."""
    found: dict[WaitTarget, None] = {}
    for text in texts:
        found.update(dict.fromkeys(parse_target(text)))
    if not found:
        raise UsageError("no target to wait for")
    return tuple(found)


def check_targets(targets: object) -> tuple[WaitTarget, ...]:
    """Targets given to the library: a port (int), a target as typed (str), a WaitTarget, or an
    iterable of them."""
    from portinspect.models.wait import WaitTarget

    if isinstance(targets, (int, str, WaitTarget)):
        targets = [targets]
    if isinstance(targets, bytes) or not isinstance(targets, Iterable):
        raise UsageError(f"invalid targets {targets!r}: expected ports, strings or WaitTargets")
    found: dict[WaitTarget, None] = {}
    for item in targets:
        if isinstance(item, WaitTarget):
            found[item] = None
        elif isinstance(item, str):
            found.update(dict.fromkeys(parse_target(item)))
        elif is_port(item):
            found[WaitTarget(port=item)] = None
        else:
            raise UsageError(f"invalid target {item!r}: a port runs from 1 to 65535")
    if not found:
        raise UsageError("no target to wait for")
    return tuple(found)


def parse_signal(value: str | int) -> int:
    """TERM, SIGTERM, term or 15 -> the signal number; UsageError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(signal.Signals(value))
        except ValueError:
            raise UsageError(f"unknown signal {value!r}") from None
    if not isinstance(value, str):
        raise UsageError(f"unknown signal {value!r}: expected a name such as TERM or INT")
    text = value.strip(" \t").upper()
    if text.isascii() and text.isdigit() and len(text) <= 3:
        return parse_signal(int(text))
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        shown = repr(value if len(value) <= 20 else value[:17] + "...")
        raise UsageError(
            f"unknown signal {shown}: expected a name such as TERM, INT, HUP or KILL"
        ) from None


def spans(ports: Iterable[int]) -> str:
    """6000, 6665, 6666, 6667 -> '6000, 6665-6667': a set of ports the way users write them."""
    ordered = sorted(set(ports))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)
