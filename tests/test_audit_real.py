"""`portinspect audit` against real servers, real wildcard binds and simulated tunnel clients.

Wildcard binds happen only inside a private network namespace made for the test (`unshare
--net`, plus a private pid namespace so the audit sees only the scenario's processes): lo up
and a veth pair with 10.213.0.1, so "reachable on" has an address to name. Nothing bound there
is reachable from the host. Probes go to the namespace's loopback; nothing else is contacted.

Tunnel clients cannot run here (they dial out to ngrok, pinggy, Cloudflare...). Each is
simulated by a harmless process with the real program name and argv: a script NAMED `ngrok`
(or `ssh`, `cloudflared`; a node script `lt.js` for localtunnel) that only sleeps. The audit
must match its target to the real local listener it would expose.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portinspect import scanner
from portinspect.audit import ProbeRequest

from .servers import BIN, DJANGO_FILES, FASTAPI_APP, FLASK_APP
from .support import (
    SCRIPT,
    is_root,
    listening,
    port_of,
    run_as_nobody,
    run_cli,
    run_in_namespace,
    wait_until,
)
from .test_hostile_input import terminal_unsafe

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces"),
]
needs_netns = pytest.mark.skipif(
    not (is_root() and shutil.which("unshare") and shutil.which("ip")),
    reason="needs root, unshare and ip for a private network namespace",
)

NETNS = ["--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
RUNNER = Path(__file__).with_name("netns_scenario.py")
VETH = "10.213.0.1"


def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    code = f"import runpy; runpy.run_path({str(RUNNER)!r}, run_name='__main__')"
    result: dict[str, Any] = run_in_namespace(NETNS, code, json.dumps(spec), str(SCRIPT))
    return result


def once_per_session(
    name: str, spec: dict[str, Any], factory: pytest.TempPathFactory, worker_id: str
) -> dict[str, Any]:
    """The scenario's result, run by the first xdist worker that needs it and read from disk
    by the other (pytest-xdist's recipe for a session-wide fixture): the servers start once."""
    if worker_id == "master":
        return scenario(spec)
    root = factory.getbasetemp().parent  # shared by the workers of this run only
    done = root / f"audit-{name}.json"
    with open(root / f"audit-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            cached: dict[str, Any] = json.loads(done.read_text())
            return cached
        result = scenario(spec)
        done.write_text(json.dumps(result))
        return result


def doc(run: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(run["stdout"])
    return parsed


def by_port(findings: list[dict[str, Any]], port: int, exposure: str = "network") -> dict[str, Any]:
    [found] = [f for f in findings if f["port"] == port and f["exposure"] == exposure]
    return found


def flask_cmd(port: str, *extra: str) -> list[str]:
    return [str(BIN / "flask"), "--app", "app", "run", "--host", "0.0.0.0", "--port", port, *extra]


def jupyter_cmd(port: str, *extra: str) -> list[str]:
    return [
        str(BIN / "jupyter"), "server", "--ip", "0.0.0.0", "--port", port, "--no-browser",
        "--allow-root", "--ServerApp.port_retries=0", *extra,
    ]  # fmt: skip


APP_RUN = (
    FLASK_APP
    + """
if __name__ == "__main__":
    app.run(host="0.0.0.0", port={port:runapp},
            debug=True)
"""
)
PIN, TOKEN, ENV_TOKEN = "SECRET-PIN-913", "SECRET-TOKEN-42", "SECRET-ENV-77"

CONSOLES = {
    "files": {"app/app.py": FLASK_APP, "runapp/app.py": APP_RUN},
    "servers": [
        {"name": "debug", "cwd": "app", "argv": flask_cmd("{port:debug}", "--debug"),
         "env": {"WERKZEUG_DEBUG_PIN": PIN}},
        {"name": "envdebug", "cwd": "app", "argv": flask_cmd("{port:envdebug}"),
         "env": {"FLASK_DEBUG": "1"}},
        {"name": "runapp", "cwd": "runapp", "argv": ["{python}", "app.py"]},
        {"name": "open", "cwd": "j1", "argv": jupyter_cmd("{port:open}", "--ServerApp.token=")},
        {"name": "token", "cwd": "j2",
         "argv": jupyter_cmd("{port:token}", f"--ServerApp.token={TOKEN}"),
         "env": {"JUPYTER_TOKEN": ENV_TOKEN}},
    ],
    "commands": {
        "probe": ["audit", "--json", "--probe"],
        "text": ["audit", "--probe"],
        "critical": ["audit", "--fail-on", "critical", "--json"],
        "who": ["who", "{port:debug}", "--json"],
        "who_text": ["who", "{port:open}"],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def consoles(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    return once_per_session("consoles", CONSOLES, tmp_path_factory, worker_id)


@needs_netns
@pytest.mark.servers
def test_consoles_reachable_from_outside_are_critical(consoles: dict[str, Any]) -> None:
    ports = consoles["ports"]
    run = consoles["runs"]["probe"]
    report = doc(run)
    assert run["rc"] == 9 and report["exit_code"] == 9 and report["ok"] is False
    assert report["error"] == {"message": "5 findings at or above --fail-on high"}
    findings = report["findings"]
    assert [f["level"] for f in findings] == ["critical"] * 4 + ["high"]

    debug = by_port(findings, ports["debug"])
    assert (debug["what"], debug["framework"], debug["server"]) == (
        "Werkzeug debugger",
        "flask",
        "werkzeug",
    )
    assert debug["evidence"][0] == "flask run --debug on its command line"
    assert "WERKZEUG_DEBUG_PIN is set in its environment (value not shown)" in debug["evidence"]
    assert debug["probe"]["result"].endswith("200, the debugger is ON")
    assert debug["probe"]["url"].startswith(f"http://127.0.0.1:{ports['debug']}/")
    assert debug["fix"].startswith(f"flask run --host 127.0.0.1 --port {ports['debug']}")
    assert debug["reachable_on"] == [{"interface": "pi0", "family": "ipv4", "address": VETH}]

    env = by_port(findings, ports["envdebug"])
    assert env["level"] == "critical" and env["evidence"] == ["FLASK_DEBUG=1 in its environment"]

    runapp = by_port(findings, ports["runapp"])
    assert runapp["level"] == "critical" and runapp["program"] == "python"
    [line] = runapp["evidence"]
    number = APP_RUN.splitlines().index("            debug=True)") + 1
    assert line.endswith(f"runapp/app.py line {number}: debug=True)")

    open_ = by_port(findings, ports["open"])
    assert (open_["level"], open_["what"]) == ("critical", "Jupyter without a token")
    assert open_["probe"]["result"] == "GET /api/status without a token: 200, NO authentication"
    assert open_["unknown"] == []  # the probe settled the password question
    assert open_["fix"].startswith("jupyter server --ip 127.0.0.1 with a token")

    token = by_port(findings, ports["token"])
    assert (token["level"], token["what"]) == ("high", "Jupyter server")
    assert token["probe"]["result"] == "GET /api/status without a token: 403, authentication is on"
    assert "JUPYTER_TOKEN is set in its environment (value not shown)" in token["evidence"]


@needs_netns
@pytest.mark.servers
def test_no_secret_reaches_any_output(consoles: dict[str, Any]) -> None:
    """The PIN and tokens are in the servers' argv and environment; the audit never prints them
    (who's own listing of the command line is another matter: it prints argv as it is)."""
    for name in ("probe", "text", "critical"):
        run = consoles["runs"][name]
        for secret in (PIN, TOKEN, ENV_TOKEN):
            assert secret not in run["stdout"] + run["stderr"], (name, secret)
    who = doc(consoles["runs"]["who"])
    assert PIN not in json.dumps(who["audit"])


@needs_netns
@pytest.mark.servers
def test_fail_on_and_the_text_report(consoles: dict[str, Any]) -> None:
    critical = consoles["runs"]["critical"]
    assert critical["rc"] == 9
    assert doc(critical)["error"] == {"message": "4 findings at or above --fail-on critical"}
    assert doc(critical)["probed"] is False
    text = consoles["runs"]["text"]
    assert text["rc"] == 9
    assert text["stderr"] == "portinspect: 5 findings at or above --fail-on high\n"
    lines = text["stdout"].splitlines()
    assert lines[0].startswith("CRITICAL tcp 0.0.0.0:")
    assert f"  reachable: {VETH} (pi0)" in lines
    assert lines[-1].startswith("5 ways in: 4 critical, 1 high; 5 at or above --fail-on high.")


@needs_netns
@pytest.mark.servers
def test_who_shows_the_same_verdict(consoles: dict[str, Any]) -> None:
    ports = consoles["ports"]
    who = doc(consoles["runs"]["who"])
    [verdict] = who["audit"]
    assert (verdict["level"], verdict["port"], verdict["what"]) == (
        "critical",
        ports["debug"],
        "Werkzeug debugger",
    )
    text = consoles["runs"]["who_text"]["stdout"]
    assert "  audit:     CRITICAL: Jupyter without a token, reachable from other machines" in text


# --- development servers, production servers, tunnels --------------------------------------

V6ONLY_SERVER = """\
import http.server, socket, sys


class V6Only(http.server.HTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


V6Only(("::", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""
HOSTILE_DIR = "share \x1b[31mred\u202eevil"
HOSTILE_DOMAIN = "x\x1b]0;owned\x07.ngrok.app"
NGROK_TOKEN = "SECRET-NGROK-5"

DEV = {
    "files": {
        **{f"dj/{k}": v for k, v in DJANGO_FILES.items()},
        "uv/main.py": FASTAPI_APP,
        "gu/app.py": FLASK_APP,
        "v6only.py": V6ONLY_SERVER,
        f"{HOSTILE_DIR}/index.html": "hello",
    },
    "spare": ["nothing"],
    "servers": [
        # Loopback only: reported because ngrok shares it, never as a direct way in.
        {"name": "django", "cwd": "dj",
         "argv": ["{python}", "manage.py", "runserver", "127.0.0.1:{port:django}"]},
        {"name": "uvicorn", "cwd": "uv",
         "argv": [str(BIN / "uvicorn"), "main:app", "--reload", "--host", "0.0.0.0", "--port",
                  "{port:uvicorn}"]},
        {"name": "gunicorn", "cwd": "gu",
         "argv": [str(BIN / "gunicorn"), "-w", "2", "-b", "0.0.0.0:{port:gunicorn}", "app:app"]},
        {"name": "files", "argv": ["{python}", "-m", "http.server", "{port:files}", "--bind",
                                   "0.0.0.0", "--directory", HOSTILE_DIR]},
        {"name": "private", "argv": ["{python}", "-m", "http.server", "{port:private}", "--bind",
                                     "127.0.0.1"]},
        # `::` twice: http.server makes it dual-stack (IPv4 too), the other sets IPV6_V6ONLY.
        {"name": "dual", "argv": ["{python}", "-m", "http.server", "{port:dual}", "--bind", "::"],
         "ready": "::1"},
        {"name": "v6only", "argv": ["{python}", "v6only.py", "{port:v6only}"], "ready": "::1"},
    ],
    "tunnels": [
        {"program": "ngrok", "args": ["http", "{port:django}", "--authtoken", NGROK_TOKEN,
                                      "--domain", HOSTILE_DOMAIN]},
        {"program": "ssh", "args": ["-p", "443", "-R0:localhost:{port:nothing}", "a.pinggy.io"]},
        {"program": "lt", "node": True, "args": ["--port", "{port:uvicorn}"]},
        {"program": "cloudflared", "args": ["tunnel", "run", "mytunnel"]},
    ],
    "commands": {
        "probe": ["audit", "--json", "--probe"],
        "all": ["audit", "--all", "--json"],
        "text": ["audit"],
        "critical": ["audit", "--fail-on", "critical"],
        "risk": ["list", "--risk"],
        "risk_json": ["list", "--risk", "--json"],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    if not shutil.which("node"):
        pytest.skip("the localtunnel stand-in is a node script")
    return once_per_session("dev", DEV, tmp_path_factory, worker_id)


@needs_netns
@pytest.mark.servers
def test_development_and_production_servers(dev: dict[str, Any]) -> None:
    ports, scratch = dev["ports"], dev["dir"]
    report = doc(dev["runs"]["probe"])
    assert dev["runs"]["probe"]["rc"] == 9
    findings = report["findings"]

    uvicorn = by_port(findings, ports["uvicorn"])
    assert (uvicorn["level"], uvicorn["what"]) == ("high", "uvicorn --reload (development mode)")
    assert uvicorn["fix"] == f"uvicorn main:app --host 127.0.0.1 --port {ports['uvicorn']}"

    files = by_port(findings, ports["files"])
    assert files["level"] == "high"
    assert files["what"] == f"http.server serving {scratch}/{HOSTILE_DIR}"
    assert files["evidence"] == [f"--directory {HOSTILE_DIR}"]

    gunicorn = by_port(findings, ports["gunicorn"])
    assert (gunicorn["level"], gunicorn["server"]) == ("info", "gunicorn")
    assert gunicorn["what"] == "gunicorn (production server)"

    # A loopback-only server is not a way in; with --all it is listed, as info.
    assert all(f["port"] != ports["private"] for f in findings)
    everything = doc(dev["runs"]["all"])["findings"]
    private = by_port(everything, ports["private"], "loopback")
    assert (private["level"], private["reachable_on"]) == ("info", [])


@needs_netns
@pytest.mark.servers
def test_an_ipv6_wildcard_is_reachable_on_ipv4_only_when_dual_stack(dev: dict[str, Any]) -> None:
    ports = dev["ports"]
    findings = doc(dev["runs"]["probe"])["findings"]
    dual = by_port(findings, ports["dual"])
    only6 = by_port(findings, ports["v6only"])
    assert dual["address"] == only6["address"] == "::"
    families = {f["family"] for f in dual["reachable_on"]}
    assert families == {"ipv4", "ipv6"} and VETH in [f["address"] for f in dual["reachable_on"]]
    assert only6["reachable_on"] and {f["family"] for f in only6["reachable_on"]} == {"ipv6"}


@needs_netns
@pytest.mark.servers
def test_tunnels_are_matched_to_the_listeners_they_expose(dev: dict[str, Any]) -> None:
    ports = dev["ports"]
    findings = doc(dev["runs"]["probe"])["findings"]
    tunnels = {f["via"]["kind"]: f for f in findings if f["exposure"] == "tunnel"}
    assert set(tunnels) == {"ngrok", "ssh", "localtunnel", "cloudflared"}

    # The loopback-only Django server, shared through ngrok: public.
    django = tunnels["ngrok"]
    assert (django["level"], django["port"], django["framework"]) == (
        "high",
        ports["django"],
        "django",
    )
    assert django["what"] == "Django development server (runserver)"
    assert django["evidence"][0].startswith(f"ngrok (pid {django['via']['pid']}) forwards port")
    assert django["probe"]["result"].endswith("with Django's debug page, DEBUG = True")
    assert django["unknown"] == []
    assert django["via"]["command"][-4:] == ["--authtoken", "***", "--domain", HOSTILE_DOMAIN]
    assert django["fix"].startswith(f"stop the tunnel (ngrok, pid {django['via']['pid']}")
    assert "`portinspect kill` does not apply" in django["fix"]
    assert not any(f["port"] == ports["django"] and f["exposure"] == "network" for f in findings)

    uvicorn = tunnels["localtunnel"]
    assert (uvicorn["port"], uvicorn["level"], uvicorn["via"]["public"]) == (
        ports["uvicorn"],
        "high",
        "loca.lt",
    )
    nothing = tunnels["ssh"]
    assert (nothing["port"], nothing["pid"], nothing["level"]) == (ports["nothing"], None, "medium")
    assert nothing["via"]["public"] == "a.pinggy.io"
    unknown = tunnels["cloudflared"]
    assert (unknown["port"], unknown["level"]) == (None, "medium")
    assert unknown["unknown"] == [
        "the ports of tunnel mytunnel come from its ingress configuration"
    ]

    tunnel_list = doc(dev["runs"]["probe"])["tunnels"]
    assert sorted(t["kind"] for t in tunnel_list) == ["cloudflared", "localtunnel", "ngrok", "ssh"]
    for run in dev["runs"].values():
        assert NGROK_TOKEN not in run["stdout"] + run["stderr"]


@needs_netns
@pytest.mark.servers
def test_hostile_names_stay_escaped_and_fail_on(dev: dict[str, Any]) -> None:
    text = dev["runs"]["text"]
    assert text["rc"] == 9
    unsafe = [line for line in text["stdout"].splitlines() if terminal_unsafe(line)]
    assert unsafe == []
    assert "share \\x1b[31mred\\u202eevil" in text["stdout"]
    assert "x\\x1b]0;owned\\x07.ngrok.app" in text["stdout"]
    critical = dev["runs"]["critical"]
    assert critical["rc"] == 0  # high at worst here
    assert "none at or above --fail-on critical" in critical["stdout"]


@needs_netns
@pytest.mark.servers
def test_list_risk_column(dev: dict[str, Any]) -> None:
    ports = dev["ports"]
    rows = {
        line.split()[0]: line.split()[-1]
        for line in dev["runs"]["risk"]["stdout"].splitlines()
        if line[:1].isdigit()
    }
    assert rows[str(ports["django"])] == "high"  # loopback, but shared through ngrok
    assert rows[str(ports["private"])] == "info"
    assert rows[str(ports["gunicorn"])] == "info"
    assert rows[str(ports["files"])] == "high"
    listed = doc(dev["runs"]["risk_json"])["listeners"]
    assert {li["port"]: li["risk"] for li in listed}[ports["uvicorn"]] == "high"


# --- a quiet machine ---------------------------------------------------------------------------


@needs_netns
def test_a_quiet_machine_exits_0() -> None:
    """A fresh namespace has no listener at all (the CI host may have some of its own)."""
    result = scenario(
        {
            "commands": {
                "text": ["audit"],
                "json": ["audit", "--json", "--fail-on", "info", "--all", "--probe"],
            }
        }
    )
    text, js = result["runs"]["text"], result["runs"]["json"]
    assert (text["rc"], text["stderr"]) == (0, "")
    assert text["stdout"].startswith("No way in from outside: nothing listens beyond loopback")
    report = doc(js)
    assert (js["rc"], report["ok"], report["findings"], report["tunnels"]) == (0, True, [], [])
    assert report["counts"] == {"critical": 0, "high": 0, "medium": 0, "info": 0}


# --- on the host: no wildcard, no server --------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_bad_fail_on_is_a_usage_error(as_json: bool) -> None:
    result = run_cli("audit", "--fail-on", "severe\x1b[2J", *(["--json"] if as_json else []))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("portinspect: --fail-on must be one of critical, high, medium, info")
    assert "\x1b" not in line
    if as_json:
        assert json.loads(result.stdout)["exit_code"] == 2
    else:
        assert result.stdout == ""


def test_who_gives_a_loopback_listener_its_verdict() -> None:
    with listening() as sock:  # bound by the test itself on 127.0.0.1 and held
        result = run_cli("who", str(port_of(sock)), "--json")
    [verdict] = json.loads(result.stdout)["audit"]
    assert (verdict["level"], verdict["exposure"], verdict["pid"]) == (
        "info",
        "loopback",
        os.getpid(),
    )


def test_probes_refuse_every_address_but_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spy on the socket layer: a refused probe must not even open a connection."""
    import http.client

    from portinspect import audit_probe as probe

    opened: list[object] = []
    monkeypatch.setattr(http.client.HTTPConnection, "connect", lambda self: opened.append(self))
    for host in ("192.0.2.1", "10.213.0.1", "0.0.0.0", "::", "localhost", "example.com", "fe80::1"):
        with pytest.raises(probe.NotLoopbackError, match="loopback addresses only"):
            probe.http_get(ProbeRequest(host, 80, "/"))
    assert opened == []


def test_probe_of_a_real_loopback_server(tmp_path: Path) -> None:
    from portinspect import audit_probe as probe
    from portinspect import find_free_ports

    [port] = find_free_ports()  # leased: no other worker gets it while the server starts
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        answer = wait_until(
            lambda: (r := probe.http_get(ProbeRequest("127.0.0.1", port, "/"))).status and r,
            what="http.server to answer",
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert answer.status == 200 and answer.content_type.startswith("text/html")


@pytest.mark.parametrize("backend", ["linux", "psutil"])
def test_secrets_in_the_environment_are_never_kept(backend: str) -> None:
    """A real process with a token, a PIN and private NODE_OPTIONS: the scanner keeps only
    whether each is set (and NODE_OPTIONS' --inspect flags), on both backends."""
    env = {
        **os.environ,
        "JUPYTER_TOKEN": "SECRET-1",
        "WERKZEUG_DEBUG_PIN": "SECRET-2",
        "NODE_OPTIONS": "--require /SECRET-3.js --inspect=0.0.0.0:9229",
        "FLASK_DEBUG": "1",
    }
    code = "import time; print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    try:
        # Read it once it runs: between fork and exec /proc shows the test's own environment.
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        info = scanner.read_processes([proc.pid], backend=backend)[proc.pid]
        tree = scanner.process_tree(proc.pid, backend=backend)[proc.pid]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    expected = {
        "JUPYTER_TOKEN": "set",
        "WERKZEUG_DEBUG_PIN": "set",
        "NODE_OPTIONS": "--inspect=0.0.0.0:9229",
        "FLASK_DEBUG": "1",
    }
    assert dict(info.env) == expected
    assert dict(tree.env) == expected


@pytest.mark.unprivileged
@pytest.mark.skipif(not is_root(), reason="drops to nobody: needs root")
def test_an_ordinary_user_sees_root_s_listener_as_hidden() -> None:
    """As `nobody`, root's listener has a hidden owner: the audit names its user, not a guess."""
    from portinspect import _linux, api, audit, audit_probe, dangers, tunnels  # noqa: F401 (before setuid)

    with listening() as sock:  # root's socket, bound by the test and held
        port = port_of(sock)

        api.run_audit(port, include_loopback=True)  # warm: nobody may not read the venv

        def as_nobody() -> list[dict[str, Any]]:
            report = api.run_audit(port, include_loopback=True)
            return [f.to_dict() for f in report.findings]

        [found] = run_as_nobody(as_nobody)
    assert (found["level"], found["exposure"], found["pid"], found["user"]) == (
        "info",
        "loopback",
        None,
        "root",
    )
    assert found["what"] == "unknown service (owner hidden)"
    assert found["unknown"] == ["what it is"]
