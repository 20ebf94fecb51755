"""Bind probes: would a server's bind on this port work, on each address it may use?

Below both the free-port search (which probes every candidate) and api.port_state() (which
says why a bind on a port `who` finds free would still fail), so neither imports the other.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterable

from portinspect.models import Proto

# Probe the addresses a server may use. IPv6 ones get IPV6_V6ONLY so each family is tested on
# its own: a dual-stack probe on :: would pass when only 0.0.0.0 is free, or the reverse.
PROBE_ADDRESSES: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0"),
    (socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::"),
)
_KINDS = {Proto.TCP: socket.SOCK_STREAM, Proto.UDP: socket.SOCK_DGRAM}


def _codes(*names: str) -> frozenset[int]:
    # Windows reports socket errors as WSA codes (WSAEADDRNOTAVAIL = 10049), not POSIX errnos.
    return frozenset(getattr(errno, n) for n in names if hasattr(errno, n))


# The address or family does not exist here (no IPv6, or ::1 missing on lo): skip that address.
_ABSENT = _codes(
    "EADDRNOTAVAIL", "EAFNOSUPPORT", "EPROTONOSUPPORT", "WSAEADDRNOTAVAIL", "WSAEAFNOSUPPORT"
)


def bind_error(family: socket.AddressFamily, proto: Proto, host: str, port: int) -> int | None:
    """The errno of binding host:port the way a server would, or None when the bind works.

    TCP sets SO_REUSEADDR, as servers do, so a port whose old connections sit in TIME_WAIT
    counts as free; a LISTEN socket still conflicts on every OS. UDP must not: on Linux
    SO_REUSEADDR lets two UDP sockets share a port, and the probe would pass a held port.
    Windows gets no SO_REUSEADDR at all: there it means "steal the port".
    """
    try:
        sock = socket.socket(family, _KINDS[proto])
    except OSError as exc:
        return exc.errno or errno.EAFNOSUPPORT
    try:
        if proto is Proto.TCP and sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        return exc.errno or errno.EINVAL
    finally:
        sock.close()
    return None


class Prober:
    """Bind probes for one search; remembers the addresses this host does not have."""

    def __init__(self, protos: Iterable[Proto]) -> None:
        self.protos = sorted(protos)
        self.absent: set[tuple[Proto, str]] = set()

    def failure(self, port: int) -> tuple[Proto, str, int] | None:
        """(proto, address, errno) of the first bind that fails, or None when all work."""
        for proto in self.protos:
            for family, host in PROBE_ADDRESSES:
                if (proto, host) in self.absent:
                    continue
                code = bind_error(family, proto, host, port)
                if code is None:
                    continue
                if code in _ABSENT:
                    self.absent.add((proto, host))
                    continue
                return proto, host, code
        return None


def errno_text(code: int) -> str:
    """'address already in use (EADDRINUSE)'."""
    name = errno.errorcode.get(code, str(code))
    return f"{os.strerror(code).lower()} ({name})"


# --- the search -------------------------------------------------------------------------------
