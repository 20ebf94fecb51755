"""Runs INSIDE a private network and pid namespace (see test_audit_real.py): starts the servers
and simulated tunnel clients a scenario names, runs portinspect commands, prints one JSON
document with their results, and stops everything.

Every bind here happens in a network namespace that exists only for this run (lo, plus a veth
pair so a wildcard has a non-loopback address to be reachable on): nothing is reachable from
the host, let alone beyond it. Probes go to the namespace's own loopback. Being pid 1 of its
own pid namespace, this script takes every process it started down with it, even on a crash.

argv: the scenario as JSON, and the path of the portinspect console script. In a scenario,
"{port:NAME}" is replaced by the port leased for NAME and "{dir}" by the scratch directory; a
server is ready when it answers HTTP on 127.0.0.1 (or on its "ready" address, e.g. "::1").
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from portinspect import find_free_ports

VETH_ADDRESS = "10.213.0.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _network() -> None:
    _ip("link", "set", "lo", "up")
    # No dummy module on every kernel; a veth pair is always there. Both ends up: an
    # interface without carrier still has its address, but keep it ordinary.
    _ip("link", "add", "pi0", "type", "veth", "peer", "name", "pi1")
    _ip("addr", "add", f"{VETH_ADDRESS}/24", "dev", "pi0")
    _ip("link", "set", "pi0", "up")
    _ip("link", "set", "pi1", "up")


def _fill(value: str, ports: dict[str, int], scratch: Path) -> str:
    for name, port in ports.items():
        value = value.replace(f"{{port:{name}}}", str(port))
    return value.replace("{dir}", str(scratch)).replace("{python}", sys.executable)


def _answers(port: int, deadline: float, host: str = "127.0.0.1") -> bool:
    """Until the server answers HTTP on loopback (any status: 404 and 403 are answers)."""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            conn.close()
    return False


def _fake_program(scratch: Path, name: str) -> str:
    """A harmless stand-in for a tunnel client: a script NAMED like it that only sleeps."""
    path = scratch / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    path.chmod(0o755)
    return str(path)


def main() -> None:
    scenario = json.loads(sys.argv[1])
    script = sys.argv[2]
    _network()
    scratch = Path(tempfile.mkdtemp(prefix="pi-audit-"))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, object] = {"veth": VETH_ADDRESS, "dir": str(scratch)}
    try:
        names = [s["name"] for s in scenario.get("servers", [])] + scenario.get("spare", [])
        # A fresh namespace: nothing else binds here, and leases are not needed.
        leased = find_free_ports(count=len(names), lease=False) if names else []
        ports = dict(zip(names, leased, strict=True))
        result["ports"] = ports
        for rel, text in scenario.get("files", {}).items():
            path = scratch / _fill(rel, ports, scratch)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_fill(text, ports, scratch))
        base_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FLASK_DEBUG", "FLASK_APP", "WERKZEUG_RUN_MAIN", "JUPYTER_TOKEN")
        }
        base_env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", HOME=str(scratch))
        for server in scenario.get("servers", []):
            cwd = scratch / _fill(server.get("cwd", ""), ports, scratch)
            cwd.mkdir(parents=True, exist_ok=True)
            env = dict(base_env)
            env.update({k: _fill(v, ports, scratch) for k, v in server.get("env", {}).items()})
            argv = [_fill(a, ports, scratch) for a in server["argv"]]
            log = open(scratch / f"{server['name']}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        down = [
            s["name"]
            for s in scenario.get("servers", [])
            if not _answers(ports[s["name"]], deadline, s.get("ready", "127.0.0.1"))
        ]
        if down:
            logs = {n: (scratch / f"{n}.log").read_text(errors="replace")[-2000:] for n in down}
            raise SystemExit(f"servers not up: {down}\n{json.dumps(logs, indent=1)}")
        for tunnel in scenario.get("tunnels", []):
            program = tunnel["program"]
            if tunnel.get("node"):
                target = scratch / "node" / f"{program}.js"
                target.parent.mkdir(exist_ok=True)
                target.write_text("setInterval(() => {}, 1 << 30);\n")
                argv = ["node", str(target)]
            else:
                argv = [_fake_program(scratch, program)]
            argv += [_fill(a, ports, scratch) for a in tunnel["args"]]
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True))
        runs = {}
        for name, args in scenario.get("commands", {}).items():
            done = subprocess.run(
                [script, *[_fill(a, ports, scratch) for a in args]],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**base_env, "COLUMNS": "200"},
            )
            runs[name] = {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        result["runs"] = runs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
