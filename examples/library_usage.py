"""portinspect as a library: find a port, start a server, inspect it, stop it.

Run: python examples/library_usage.py
"""

from __future__ import annotations

import subprocess
import sys

from portinspect import find_free_ports, kill_port, scan, wait_for


def main() -> int:
    [port] = find_free_ports(near=8000)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        waited = wait_for(port, timeout=30)
        print(f"port {port} listening after {waited.elapsed:.2f}s")

        for listener in scan(port):
            print(
                f"{listener.endpoint} pid={listener.pid} server={listener.server} "
                f"app_pid={listener.app_pid} exposed={listener.exposed} range={listener.range}"
            )

        [outcome] = kill_port(port, timeout=5)
        print(f"kill: {outcome.status} after {outcome.elapsed:.3f}s ({outcome.message})")
        return 0 if outcome.status == "freed" and not scan(port) else 1
    finally:
        if server.poll() is None:  # only if kill_port did not stop it
            server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
