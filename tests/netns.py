"""Two private network namespaces joined by a veth pair, for `wait`'s probes of other hosts.

"client" runs portinspect; "remote" runs the servers, at an address the test assigns, so this
machine's socket table cannot see them and only a real probe over the link can. The test's own
network namespace is never touched: each namespace is held by a process started with
`unshare`, the veth pair is created from inside the client's namespace with its peer moved
straight into the remote's, and both vanish with their holders (killed by pid at the end,
also when the test fails). The addresses are a random 10.X.Y.Z/30 per pair, and they exist
only inside the two namespaces.

The client also has a private mount namespace in which /etc/hosts and /etc/resolv.conf are
files of the test's: host names resolve only through that hosts file, and a DNS query (with
no nameserver configured, glibc asks 127.0.0.1 inside the client's namespace) never leaves it.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOLDER = "ip link set lo up && echo ready && exec cat >/dev/null"
CLIENT_HOLDER = f'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && {HOLDER}'

# A TCP server: listens on (argv[1], argv[2]), says so, and holds until stdin closes.
TCP_SERVER = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family) as s:
    s.bind((host, port))
    s.listen(16)
    print("listening", flush=True)
    sys.stdin.read()
"""

# An HTTP server on (argv[1], argv[2]) that answers 503 until the file argv[3] exists, then
# 200; each answer is printed ("503 /health") so a test sees the requests it got.
FLAG_HTTP_SERVER = """
import http.server, os, sys
host, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if os.path.exists(flag) else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(status, self.path, flush=True)

    def log_message(self, *args):
        pass

class Server(http.server.HTTPServer):
    address_family = __import__("socket").AF_INET6 if ":" in host else __import__("socket").AF_INET

server = Server((host, port), Handler)
print("listening", flush=True)
server.serve_forever()
"""


@dataclass
class NetnsPair:
    client_pid: int
    remote_pid: int
    client_ip: str
    remote_ip: str
    hosts: Path  # the client's /etc/hosts
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def client(self, *argv: str) -> list[str]:
        """argv run inside the client's network and mount namespaces (nsenter execs it, so
        the pid of the Popen is the command's own)."""
        pid = self.client_pid
        return ["nsenter", f"--net=/proc/{pid}/ns/net", f"--mount=/proc/{pid}/ns/mnt", *argv]

    def remote(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.remote_pid}/ns/net", *argv]

    def start_remote(self, script: str, *args: str) -> subprocess.Popen[str]:
        """A Python script on the remote host; returns once it printed its first line."""
        return self._start(self.remote(sys.executable, "-c", script, *args))

    def start_client(self, script: str, *args: str) -> subprocess.Popen[str]:
        """A Python script in the client's namespace (a server on the client's own machine)."""
        return self._start(self.client(sys.executable, "-c", script, *args))

    def _start(self, argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "listening\n", proc.stderr.read() if proc.stderr else line
        return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _holder(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != "ready\n":
        err = proc.stderr.read() if proc.stderr else ""
        _stop(proc)
        pytest.skip(f"no private network namespace here: {err.strip() or 'unshare failed'}")
    return proc


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"


@contextlib.contextmanager
def netns_pair(tmp_path: Path) -> Iterator[NetnsPair]:
    """A client and a remote namespace, linked; skips where namespaces are refused."""
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} for private network namespaces")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# no nameserver: lookups stay inside the namespace\n")
    rng = random.SystemRandom()
    net = f"10.{rng.randrange(64, 255)}.{rng.randrange(0, 256)}"
    base = 4 * rng.randrange(0, 64)
    client_ip, remote_ip = f"{net}.{base + 1}", f"{net}.{base + 2}"
    holders: list[subprocess.Popen[str]] = []
    pair: NetnsPair | None = None
    try:
        files = [str(hosts), str(resolv)]
        client = _holder(["unshare", "--net", "--mount", "sh", "-c", CLIENT_HOLDER, "sh", *files])
        holders.append(client)
        remote = _holder(["unshare", "--net", "sh", "-c", HOLDER])
        holders.append(remote)
        pair = NetnsPair(client.pid, remote.pid, client_ip, remote_ip, hosts)
        in_client = pair.client
        _run(in_client("ip", "link", "add", "pi-c", "type", "veth", "peer", "name", "pi-r"))
        _run(in_client("ip", "link", "set", "pi-r", "netns", str(remote.pid)))
        _run(in_client("ip", "addr", "add", f"{client_ip}/30", "dev", "pi-c"))
        _run(in_client("ip", "link", "set", "pi-c", "up"))
        _run(pair.remote("ip", "addr", "add", f"{remote_ip}/30", "dev", "pi-r"))
        _run(pair.remote("ip", "link", "set", "pi-r", "up"))
        yield pair
    finally:
        for proc in [*(pair.started if pair else []), *reversed(holders)]:
            _stop(proc)
