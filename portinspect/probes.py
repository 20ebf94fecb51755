"""Probes for `wait`: name resolution, a TCP connect, an HTTP GET. One bounded attempt each.

Nothing here retries or decides readiness; waiter does. A probe only ever reaches an
address the user named: the IP address typed, or one the typed host name resolves to.

Bounds: a connect and each read wait at most the attempt's budget (socket timeouts), and
so does name resolution, which the C library does not bound (glibc waits 5 s per
unanswering nameserver, times its retries): the lookup runs in a daemon thread that an
attempt waits on for its budget; one still running is waited on again by the next attempt
rather than started twice.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from portinspect import __version__

_REASON_WIDTH = 120


class ProbeFailed(Exception):
    """One attempt failed; the message is one line saying why (`connection refused`)."""


Address = tuple[int, tuple[object, ...]]  # (family, sockaddr) as getaddrinfo gives them


@dataclass
class _Lookup:
    done: threading.Event = field(default_factory=threading.Event)
    addresses: list[Address] = field(default_factory=list)
    error: str | None = None


class Resolver:
    """Host name -> addresses, each lookup bounded by the caller's budget."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, int], _Lookup] = {}

    def resolve(self, host: str, port: int, budget: float) -> list[Address]:
        key = (host, port)
        lookup = self._running.get(key)
        if lookup is None:
            lookup = self._running[key] = _Lookup()
            threading.Thread(
                target=_getaddrinfo, args=(host, port, lookup), name="resolve", daemon=True
            ).start()
        if not lookup.done.wait(budget):
            raise ProbeFailed(f"resolving {host} takes longer than {budget:.2g}s")
        del self._running[key]  # the next attempt asks again: a restarted service moves
        if lookup.error is not None:
            raise ProbeFailed(f"cannot resolve {host}: {lookup.error}")
        return lookup.addresses


def _getaddrinfo(host: str, port: int, lookup: _Lookup) -> None:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except OSError as exc:  # gaierror: EAI_NONAME, EAI_AGAIN... all worth another try
        lookup.error = _reason(exc)
    else:
        seen: set[object] = set()
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6) and sockaddr not in seen:
                seen.add(sockaddr)
                lookup.addresses.append((family, tuple(sockaddr)))
        if not lookup.addresses:
            lookup.error = "no IPv4 or IPv6 address"
    finally:
        lookup.done.set()


def address_of(address: str, port: int) -> Address:
    """The (family, sockaddr) of an IP address in its canonical text form."""
    if ":" in address:
        return socket.AF_INET6, (address, port, 0, 0)
    return socket.AF_INET, (address, port)


def address_text(address: Address) -> str:
    return str(address[1][0])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer in time"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    text = text[0].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text
    return text if len(text) <= _REASON_WIDTH else text[: _REASON_WIDTH - 1] + "…"


def _connected(address: Address, budget: float) -> socket.socket:
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(budget, 0.001))
        sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        raise ProbeFailed(_reason(exc)) from None
    return sock


def connect(address: Address, budget: float) -> None:
    """A TCP connect that is closed at once: something accepts there."""
    _connected(address, budget).close()


def http_get(address: Address, host: str, port: int, path: str, *, tls: bool, budget: float) -> int:
    """GET path from the server at address, as `host` (Host header, TLS name); its status.

    Only the status line and headers are read; the body never is, so a stream or a large
    page costs nothing. TLS certificates are verified as any client would.
    """
    import http.client  # here: ~10 ms that only http targets need

    deadline = time.monotonic() + budget
    sock = _connected(address, budget)
    try:
        if tls:
            import ssl

            context = ssl.create_default_context()
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock = context.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=budget)
        conn.sock = sock  # already connected (and bounded): no second lookup of host
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.request(
            "GET",
            path,
            headers={"User-Agent": f"portinspect/{__version__}", "Connection": "close"},
        )
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = conn.getresponse()
        status = response.status
        response.close()
        return status
    except ProbeFailed:
        raise
    except http.client.HTTPException as exc:
        raise ProbeFailed(f"not an HTTP answer ({type(exc).__name__})") from None
    except OSError as exc:  # ssl.SSLError is one too
        raise ProbeFailed(_reason(exc)) from None
    finally:
        sock.close()
