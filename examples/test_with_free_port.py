"""A test suite that takes its server ports from portinspect's pytest plugin.

Installing portinspect registers the plugin; the `free_port` fixture gives each test a port
that is free on every loopback address and not handed to any parallel worker.
Run: pytest examples/test_with_free_port.py
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable

from portinspect import kill_port, wait_for


def test_http_server_on_a_free_port(free_port: int) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(free_port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(free_port, timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/", timeout=10) as reply:
            assert reply.status == 200
    finally:
        kill_port(free_port, timeout=5)
        if server.poll() is None:  # it never listened, so kill_port found nothing to stop
            server.kill()
        server.wait(timeout=10)
    wait_for(free_port, free=True, timeout=10)


def test_several_ports_are_distinct(free_port_factory: Callable[[], int]) -> None:
    ports = {free_port_factory() for _ in range(3)}
    assert len(ports) == 3
