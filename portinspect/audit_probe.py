"""`audit --probe`: one HTTP GET to a listener over loopback, never to any other address.

(`probes` is wait's: other hosts, resolving and retrying; this one never leaves the machine.)

The request carries no credentials and follows no redirect; the answer is read up to a small
bound and only its status, content type and first bytes are kept.
"""

from __future__ import annotations

import ipaddress

from portinspect.audit import ProbeRequest, ProbeResult

TIMEOUT = 2.0  # seconds: a dev server on loopback answers in milliseconds
BODY_LIMIT = 64 * 1024  # Django's debug 404 page names DEBUG = True within its first 10 KB


class NotLoopbackError(ValueError):
    """A probe was asked to leave this machine: refused before any socket is opened."""


def check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a name could resolve anywhere
    if not loopback:
        raise NotLoopbackError(f"refusing to probe {host!r}: probes go to loopback addresses only")


def http_get(request: ProbeRequest, timeout: float = TIMEOUT) -> ProbeResult:
    """GET request.path from request.host:request.port, which must be a loopback address."""
    check_loopback(request.host)
    import http.client  # here: only --probe needs it (3 ms of imports)

    conn = http.client.HTTPConnection(request.host, request.port, timeout=timeout)
    try:
        conn.request("GET", request.path, headers={"User-Agent": "portinspect-audit"})
        response = conn.getresponse()
        body = response.read(BODY_LIMIT)
        return ProbeResult(
            status=response.status,
            content_type=response.getheader("Content-Type") or "",
            body=body.decode("utf-8", "replace"),
        )
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(status=None, error=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()
