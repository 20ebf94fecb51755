"""audit's rules, pure: processes' argv, environment markers and sources in, findings out.

The listeners here are built by the real classifier from ProcessInfo facts (the argv shapes
measured in research/frameworks.md), so recognition and the danger rows are tested together;
nothing is mocked. test_audit_real.py runs the real servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from portinspect import audit, classifier, render, scanner
from portinspect.audit import Facts, Finding, Level, ProbeRequest, ProbeResult
from portinspect.dangers import DANGERS, parse_level
from portinspect.errors import UsageError
from portinspect.models import Family, InterfaceAddress, ProcessInfo, Proto, Snapshot, Socket
from portinspect.tunnels import Tunnel, parse

from .test_hostile_input import terminal_unsafe

PY = "/venv/bin/python3"
INIT = ProcessInfo(pid=1, ppid=0, name="init", user="root", cmdline=("/sbin/init",))
IFACES = (
    InterfaceAddress("lo", Family.IPV4, "127.0.0.1"),
    InterfaceAddress("wlan0", Family.IPV4, "192.168.1.23"),
    InterfaceAddress("docker0", Family.IPV4, "172.17.0.1"),
    InterfaceAddress("lo", Family.IPV6, "::1"),
    InterfaceAddress("wlan0", Family.IPV6, "fe80::1"),
)


@dataclass
class Proc:
    """One server process and the sockets it holds."""

    cmdline: tuple[str, ...]
    ports: Sequence[int] = (8000,)
    address: str = "0.0.0.0"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = "/home/me/project"
    proto: Proto = Proto.TCP
    user: str | None = "me"
    hidden: bool = False  # another user's socket: no pid


def facts(
    *procs: Proc,
    tunnels: Sequence[Tunnel] = (),
    sources: Mapping[str, str] | None = None,
    root: bool = False,
    v6only: Mapping[tuple[Proto, int], bool] | None = None,
) -> Facts:
    processes = {1: INIT}
    sockets = []
    for i, p in enumerate(procs):
        pid = 100 + i
        processes[pid] = ProcessInfo(
            pid=pid, ppid=1, name=p.cmdline[0].rsplit("/", 1)[-1][:15], user=p.user,
            cmdline=p.cmdline, cwd=p.cwd, env=dict(p.env),
        )  # fmt: skip
        family = Family.IPV6 if ":" in p.address else Family.IPV4
        for port in p.ports:
            pids = () if p.hidden else (pid,)
            sockets.append(Socket(p.proto, family, p.address, port, uid=1000, pids=pids))
    snapshot = Snapshot(sockets=tuple(sockets), processes=processes, user_names={1000: "me"})
    listeners = classifier.classify(snapshot)
    return Facts(listeners, IFACES, tuple(tunnels), sources or {}, root, v6only or {})


def one(f: Facts, *, include_loopback: bool = False) -> Finding:
    [found] = audit.assess(f, include_loopback=include_loopback)
    return found


def tunnel(*argv: str, pid: int = 4242) -> Tunnel:
    found = parse(argv, pid=pid, user="me")
    assert found is not None
    return found


FLASK = (PY, "/venv/bin/flask", "--app", "app", "run", "--host", "0.0.0.0", "--port", "8000")
JUPYTER = (PY, "/venv/bin/jupyter-server", "--ip", "0.0.0.0", "--port", "8000", "--no-browser")


# --- critical: code execution --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "evidence"),
    [
        ((*FLASK, "--debug"), {}, "flask run --debug"),
        (FLASK, {"FLASK_DEBUG": "1"}, "FLASK_DEBUG=1"),
        (FLASK, {"FLASK_DEBUG": "true"}, "FLASK_DEBUG=true"),
        ((PY, "-m", "flask", "--app", "app", "run", "--debug", "--host", "0.0.0.0"), {}, "--debug"),
        ((PY, "manage.py", "runserver_plus", "0.0.0.0:8000"), {}, "runserver_plus"),
    ],
)
def test_werkzeug_debugger_is_critical(
    argv: tuple[str, ...], env: dict[str, str], evidence: str
) -> None:
    found = one(facts(Proc(argv, env=env)))
    assert found.level is Level.CRITICAL
    assert found.what == "Werkzeug debugger"
    assert any(evidence in e for e in found.evidence), found.evidence
    assert "127.0.0.1" in found.fix


@pytest.mark.parametrize(
    ("argv", "env", "evidence"),
    [
        (FLASK, {}, "debug mode off"),
        (FLASK, {"FLASK_DEBUG": "0"}, "FLASK_DEBUG=0"),
        ((*FLASK, "--debug", "--no-debugger"), {}, "--no-debugger"),
        ((*FLASK, "--no-debug"), {"FLASK_DEBUG": "1"}, "--no-debug"),
    ],
)
def test_werkzeug_without_debugger_is_high(
    argv: tuple[str, ...], env: dict[str, str], evidence: str
) -> None:
    found = one(facts(Proc(argv, env=env)))
    assert found.level is Level.HIGH
    assert found.what == "Werkzeug development server"
    assert any(evidence in e for e in found.evidence), found.evidence
    assert found.fix.startswith("flask run --host 127.0.0.1 --port 8000")


def test_another_user_s_flask_debug_is_unknown_not_off() -> None:
    found = one(facts(Proc(FLASK, cwd=None)))  # no cwd: its environment was not readable
    assert found.level is Level.HIGH
    assert found.unknown and "debugger" in found.unknown[0]
    assert found.evidence == ("no --debug; FLASK_DEBUG unknown (another user's environment)",)


APP_RUN = """\
from flask import Flask

app = Flask(__name__)

if __name__ == "__main__":
    app.run(
        host="0.0.0.0",
        debug={debug},
    )
"""
RELOADER_ENV = {"WERKZEUG_RUN_MAIN": "true", "WERKZEUG_SERVER_FD": "3"}


@pytest.mark.parametrize(
    ("source", "level", "evidence", "unknown"),
    [
        (APP_RUN.format(debug="True"), Level.CRITICAL, "app.py line 8: debug=True,", False),
        (APP_RUN.format(debug="False"), Level.HIGH, "app.py line 8: debug=False,", False),
        ("app.debug = True\napp.run(host='0.0.0.0')\n", Level.CRITICAL,
         "app.py line 1: app.debug = True", False),
        (None, Level.HIGH, None, True),  # the source could not be read
    ],
)  # fmt: skip
def test_app_run_debug_in_the_source(
    source: str | None, level: Level, evidence: str | None, unknown: bool
) -> None:
    sources = {"/home/me/project/app.py": source} if source is not None else {}
    f = facts(Proc((PY, "app.py"), env=RELOADER_ENV), sources=sources)
    assert f.listeners[0].server == "werkzeug"  # the reloader child's environment says so
    found = one(f)
    assert found.level is level
    if evidence is not None:
        assert found.evidence == (f"/home/me/project/{evidence}",)
    assert bool(found.unknown) is unknown
    assert (found.probe is not None) is True  # the debugger's resource answers the question


def test_script_paths_are_the_scripts_the_listeners_run() -> None:
    from portinspect.dangers import script_paths

    f = facts(
        Proc((PY, "app.py"), ports=[8000]),
        Proc((PY, "/srv/abs.py"), ports=[8001]),
        Proc((PY, "-m", "http.server"), ports=[8002]),
        Proc((PY, "rel.py"), ports=[8003], cwd=None),
    )
    assert script_paths(f.listeners) == ["/home/me/project/app.py", "/srv/abs.py"]


@pytest.mark.parametrize(
    ("env", "evidence"),
    [
        ({"WERKZEUG_DEBUG_PIN": "off"}, "WERKZEUG_DEBUG_PIN=off: the console asks for no PIN"),
        ({"WERKZEUG_DEBUG_PIN": "set"}, "WERKZEUG_DEBUG_PIN is set in its environment"),
    ],
)
def test_debugger_pin_evidence(env: dict[str, str], evidence: str) -> None:
    found = one(facts(Proc((*FLASK, "--debug"), env=env)))
    assert any(e.startswith(evidence) for e in found.evidence), found.evidence


@pytest.mark.parametrize(
    "option",
    [
        "--ServerApp.token=",
        "--ServerApp.token=''",  # quotes kept by a Dockerfile's JSON form; traitlets strips them
        '--NotebookApp.token=""',
        "--IdentityProvider.token=",
    ],
)
def test_jupyter_without_token_is_critical(option: str) -> None:
    found = one(facts(Proc((*JUPYTER, option))))
    assert found.level is Level.CRITICAL
    assert found.what == "Jupyter without a token"
    assert any("token authentication off" in e for e in found.evidence)
    # A password would still guard it, and one set with `jupyter server password` lives in a
    # config file: say so, and let --probe settle it.
    assert found.unknown and "password" in found.unknown[0]
    assert found.probe == ProbeRequest("127.0.0.1", 8000, "/api/status")
    assert found.fix.startswith("jupyter server --ip 127.0.0.1")


@pytest.mark.parametrize(
    ("extra", "env", "unknown"),
    [
        (("--ServerApp.token=abc",), {}, False),
        (("--ServerApp.token=", "--ServerApp.password=sha1:x"), {}, False),
        ((), {"JUPYTER_TOKEN": "set"}, False),
        ((), {}, True),  # the default random token, unless a config file turns it off
        ((), {"JUPYTER_TOKEN": "empty"}, True),
    ],
)
def test_jupyter_with_a_token_is_high(
    extra: tuple[str, ...], env: dict[str, str], unknown: bool
) -> None:
    found = one(facts(Proc((*JUPYTER, *extra), env=env)))
    assert found.level is Level.HIGH
    assert bool(found.unknown) is unknown
    assert "abc" not in repr(found.to_dict()) and "sha1:x" not in repr(found.to_dict())


@pytest.mark.parametrize(
    ("argv", "port", "env", "name"),
    [
        (("node", "--inspect=0.0.0.0:9229", "app.js"), 9229, {}, "node --inspect"),
        (("node", "--inspect-brk=0.0.0.0", "app.js"), 9229, {}, "node --inspect"),
        (("node", "--inspect=0.0.0.0:9230", "--inspect-port=9231", "a.js"), 9231, {}, "node"),
        (("node", "app.js"), 9229, {"NODE_OPTIONS": "--inspect=0.0.0.0:9229"}, "NODE_OPTIONS"),
        ((PY, "-m", "debugpy", "--listen", "0.0.0.0:5678", "app.py"), 5678, {}, "debugpy"),
        ((PY, "/venv/lib/debugpy/adapter", "--host", "0.0.0.0", "--port", "5678"), 5678, {},
         "debugpy adapter"),
        (("java", "-agentlib:jdwp=transport=dt_socket,server=y,address=*:5005", "-jar", "a.jar"),
         5005, {}, "jdwp"),
        (("dlv", "debug", "--headless", "--listen=:2345"), 2345, {}, "dlv"),
    ],
)  # fmt: skip
def test_debugger_ports_are_critical(
    argv: tuple[str, ...], port: int, env: dict[str, str], name: str
) -> None:
    found = one(facts(Proc(argv, ports=[port], env=env)))
    assert found.level is Level.CRITICAL
    assert found.key == "debugger"
    assert any(name in e for e in found.evidence) or name in found.what, found


def test_a_debugged_process_s_own_port_is_not_the_debugger() -> None:
    findings = audit.assess(
        facts(Proc(("node", "--inspect=0.0.0.0:9229", "srv.js"), ports=[3000, 9229]))
    )
    by_port = {f.port: f for f in findings}
    assert by_port[9229].level is Level.CRITICAL
    assert by_port[3000].key != "debugger"


def test_debugger_on_loopback_is_only_info() -> None:
    f = facts(Proc(("node", "--inspect", "app.js"), ports=[9229], address="127.0.0.1"))
    assert audit.assess(f) == []
    found = one(f, include_loopback=True)
    assert found.level is Level.INFO and found.exposure == audit.LOOPBACK
    assert "critical" in found.reason  # what it would be if it were reachable


# --- high: development servers, open databases ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "key", "fix"),
    [
        ((PY, "manage.py", "runserver", "0.0.0.0:8000"), "django",
         "python manage.py runserver 127.0.0.1:8000"),
        (("/venv/bin/uvicorn", "main:app", "--reload", "--host", "0.0.0.0"), "reload",
         "uvicorn main:app --host 127.0.0.1 --port 8000"),
        ((PY, "/venv/bin/fastapi", "dev", "main.py", "--host", "0.0.0.0"), "fastapi-dev",
         "fastapi dev --host 127.0.0.1"),
        (("node", "/p/node_modules/.bin/vite", "--host"), "vite", "vite --host 127.0.0.1"),
        (("node", "/p/node_modules/.bin/webpack", "serve"), "webpack-dev-server",
         "webpack serve --host 127.0.0.1"),
        (("node", "/p/node_modules/.bin/next", "dev"), "next-dev", "next dev -H 127.0.0.1"),
        ((PY, "/venv/bin/mkdocs", "serve", "-a", "0.0.0.0:8000"), "static-dev", "mkdocs serve"),
    ],
)  # fmt: skip
def test_development_servers_are_high(argv: tuple[str, ...], key: str, fix: str) -> None:
    found = one(facts(Proc(argv)))
    assert (found.level, found.key) == (Level.HIGH, key)
    assert fix in found.fix


@pytest.mark.parametrize(
    ("argv", "cwd", "what", "fix"),
    [
        ((PY, "-m", "http.server", "8000"), "/home/me", "http.server serving /home/me",
         "--directory /home/me"),
        ((PY, "-m", "http.server", "--directory", "site"), "/home/me", "serving /home/me/site",
         "--directory /home/me/site"),
        ((PY, "-m", "http.server", "-d", "/srv/my files"), "/", "serving /srv/my files",
         "--directory '/srv/my files'"),
    ],
)  # fmt: skip
def test_http_server_names_the_directory_it_serves(
    argv: tuple[str, ...], cwd: str, what: str, fix: str
) -> None:
    found = one(facts(Proc(argv, cwd=cwd)))
    assert found.level is Level.HIGH
    assert what in found.what
    assert found.fix.startswith("python -m http.server 8000 --bind 127.0.0.1") and fix in found.fix


def test_http_server_of_another_user_says_the_directory_is_unknown() -> None:
    found = one(facts(Proc((PY, "-m", "http.server"), cwd=None)))
    assert found.level is Level.HIGH
    assert "which directory it serves" in found.unknown[0]


def test_django_debug_setting_is_unknown_until_probed() -> None:
    found = one(facts(Proc((PY, "manage.py", "runserver", "0.0.0.0:8000"))))
    assert found.unknown == ("the DEBUG setting (settings are not read)",)
    assert found.probe is not None and found.probe.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "level", "says"),
    [
        (("redis-server", "*:6379"), Level.HIGH, "redis rewrites its command line"),
        (("mongod", "--bind_ip_all"), Level.HIGH, "unless started with --auth"),
        (("mongod", "--bind_ip_all", "--auth"), Level.MEDIUM, "--auth on its command line"),
        (("mongod", "--config", "/etc/mongod.conf"), Level.HIGH, None),
        (("memcached", "-l", "0.0.0.0"), Level.HIGH, "no authentication unless"),
        (("memcached", "-S"), Level.MEDIUM, "-S on its command line"),
        (("/usr/lib/postgresql/16/bin/postgres", "-D", "/var/lib/pg"), Level.MEDIUM, "pg_hba"),
        (("/usr/sbin/mysqld",), Level.MEDIUM, "MySQL accounts"),
    ],
)
def test_databases_and_caches(argv: tuple[str, ...], level: Level, says: str | None) -> None:
    found = one(facts(Proc(argv, ports=[6379])))
    assert found.level is level
    if says is not None:
        assert any(says in e for e in found.evidence), found.evidence
    if level is Level.HIGH and "unless" not in (says or ""):
        assert found.unknown  # a config it cannot read: the worse case, said out loud


def test_redis_password_given_on_the_command_line_is_never_shown() -> None:
    found = one(facts(Proc(("redis-server", "--requirepass", "hunter2"), ports=[6379])))
    assert found.level is Level.MEDIUM
    assert "hunter2" not in repr(found.to_dict())


# --- medium and info --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "level", "what"),
    [
        (("/venv/bin/gunicorn", "-b", "0.0.0.0:8000", "app:app"), Level.INFO, "gunicorn"),
        (("nginx: master process /usr/sbin/nginx",), Level.INFO, "nginx"),
        (("/venv/bin/uvicorn", "main:app", "--host", "0.0.0.0"), Level.INFO, "uvicorn"),
        ((PY, "/venv/bin/fastapi", "run", "main.py"), Level.INFO, "uvicorn"),
        (("/usr/sbin/sshd", "-D"), Level.INFO, "sshd (system service)"),
        (("/opt/thing/bin/thingd", "--serve"), Level.MEDIUM, "thingd service"),
        (("node", "server.js"), Level.MEDIUM, "node service"),
        ((PY, "/venv/bin/streamlit", "run", "st.py"), Level.MEDIUM, "Streamlit"),
    ],
)
def test_production_servers_are_info_and_the_rest_medium(
    argv: tuple[str, ...], level: Level, what: str
) -> None:
    found = one(facts(Proc(argv)))
    assert found.level is level
    assert what in found.what


def test_udp_is_a_way_in_too() -> None:
    found = one(facts(Proc(("/opt/dns/bin/mydns",), ports=[5353], proto=Proto.UDP)))
    assert (found.level, found.proto) == (Level.MEDIUM, Proto.UDP)


@pytest.mark.parametrize("root", [False, True])
def test_hidden_owner_is_medium_and_says_how_to_see_it(root: bool) -> None:
    found = one(facts(Proc(("x",), hidden=True), root=root))
    assert (found.level, found.key, found.pid) == (Level.MEDIUM, "hidden", None)
    assert ("another pid namespace" in found.reason) is root
    assert ("sudo portinspect audit" in found.fix) is not root


# --- containers ---------------------------------------------------------------------------


def _proxy(port: int, inner: int, host_ip: str = "0.0.0.0") -> Proc:
    argv = (
        "/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", host_ip, "-host-port", str(port),
        "-container-ip", "172.17.0.2", "-container-port", str(inner), "-use-listen-fd",
    )  # fmt: skip
    return Proc(argv, ports=[port], address=host_ip, user="root")


def test_published_container_port() -> None:
    found = one(facts(_proxy(8080, 80)))
    assert (found.level, found.exposure) == (Level.MEDIUM, audit.CONTAINER)
    assert found.via is not None and found.via.kind == "container"
    assert found.via.container == "172.17.0.2:80"
    assert "docker ps --filter publish=8080" in found.fix
    assert "-p 127.0.0.1:8080:80" in found.fix


def test_published_database_port_is_judged_like_the_database() -> None:
    found = one(facts(_proxy(6379, 6379)))
    assert found.level is Level.HIGH and found.key == "redis"
    assert found.unknown


def test_container_published_on_loopback_is_only_info() -> None:
    assert audit.assess(facts(_proxy(5432, 5432, "127.0.0.1"))) == []


# --- where it can be reached from -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reach"),
    [
        ("0.0.0.0", ["192.168.1.23 (wlan0)", "172.17.0.1 (docker0)"]),
        ("::", ["192.168.1.23 (wlan0)", "172.17.0.1 (docker0)", "fe80::1 (wlan0)"]),
        ("172.17.0.1", ["172.17.0.1 (docker0)"]),
    ],
)
def test_reachable_on_the_machine_s_interfaces(address: str, reach: list[str]) -> None:
    found = one(facts(Proc(("/opt/x/bin/xd",), address=address)))
    assert [f"{a.address} ({a.interface})" for a in found.reachable_on] == reach


def test_an_ipv6_only_wildcard_is_not_reachable_on_ipv4() -> None:
    f = facts(Proc(("/opt/x/bin/xd",), address="::"), v6only={(Proto.TCP, 8000): True})
    assert [a.address for a in one(f).reachable_on] == ["fe80::1"]


def test_loopback_only_services_are_listed_only_when_asked() -> None:
    f = facts(
        Proc((PY, "manage.py", "runserver"), address="127.0.0.1"),
        Proc(("x",), address="::1", ports=[9]),
    )
    assert audit.assess(f) == []
    found = audit.assess(f, include_loopback=True)
    assert [(x.level, x.exposure) for x in found] == [(Level.INFO, audit.LOOPBACK)] * 2
    assert found[0].reachable_on == ()


def test_probes_go_to_loopback_only() -> None:
    """A listener bound to one non-loopback address cannot be reached over loopback, so it is
    not probed at all; a wildcard or loopback one is probed on the loopback of its family."""
    cases = {"0.0.0.0": "127.0.0.1", "::": "::1", "127.0.0.1": "127.0.0.1", "192.168.1.23": None}
    for address, host in cases.items():
        f = facts(Proc((*JUPYTER[:2], "--ServerApp.token="), address=address))
        [found] = audit.assess(f, include_loopback=True)
        assert (found.probe.host if found.probe else None) == host, address


# --- tunnels ------------------------------------------------------------------------------------

DJANGO_LOCAL = Proc((PY, "manage.py", "runserver", "127.0.0.1:8000"), address="127.0.0.1")


@pytest.mark.parametrize(
    "argv",
    [
        ("ngrok", "http", "8000"),
        ("ngrok", "http", "http://localhost:8000"),
        ("ssh", "-p", "443", "-R0:localhost:8000", "a.pinggy.io"),
        ("cloudflared", "tunnel", "--url", "http://127.0.0.1:8000"),
        ("node", "/usr/lib/node_modules/localtunnel/bin/lt.js", "--port", "8000"),
        ("bore", "local", "8000", "--to", "bore.pub"),
        ("tailscale", "funnel", "8000"),
        ("devtunnel", "host", "-p", "8000"),
    ],
)
def test_a_loopback_server_shared_by_a_tunnel_is_reported(argv: tuple[str, ...]) -> None:
    found = one(facts(DJANGO_LOCAL, tunnels=[tunnel(*argv)]))
    assert (found.level, found.key, found.exposure) == (Level.HIGH, "django", audit.TUNNEL)
    assert found.port == 8000 and found.pid == 100
    assert found.via is not None and found.via.pid == 4242
    assert found.evidence[0].startswith(f"{found.via.kind} (pid 4242) forwards port 8000")
    assert "stop the tunnel" in found.fix and "pid 4242" in found.fix
    assert "portinspect kill` does not apply" in found.fix


def test_tunnel_to_a_console_is_critical_and_says_what_to_turn_off() -> None:
    jupyter = Proc((*JUPYTER[:2], "--ServerApp.token="), address="127.0.0.1")
    found = one(facts(jupyter, tunnels=[tunnel("ngrok", "http", "8000")]))
    assert found.level is Level.CRITICAL
    assert "before sharing it again: keep a token or a password" in found.fix


def test_a_production_server_behind_a_tunnel_is_at_least_medium() -> None:
    gunicorn = Proc(("/venv/bin/gunicorn", "app:app"), address="127.0.0.1")
    found = one(facts(gunicorn, tunnels=[tunnel("ngrok", "http", "8000")]))
    assert (found.level, found.exposure) == (Level.MEDIUM, audit.TUNNEL)


def test_exposed_and_tunnelled_is_two_ways_in_tunnel_first() -> None:
    uvicorn = Proc(("/venv/bin/uvicorn", "m:app", "--reload", "--host", "0.0.0.0"))
    findings = audit.assess(facts(uvicorn, tunnels=[tunnel("lt", "--port", "8000")]))
    assert [(f.exposure, f.level) for f in findings] == [
        (audit.TUNNEL, Level.HIGH),
        (audit.NETWORK, Level.HIGH),
    ]


def test_tunnel_where_nothing_listens() -> None:
    found = one(facts(tunnels=[tunnel("ngrok", "http", "8000")]))
    assert (found.level, found.port, found.pid) == (Level.MEDIUM, 8000, None)
    assert "nothing listens on port 8000" in found.reason


def test_tunnel_target_must_reach_the_listener_s_address() -> None:
    """ngrok to localhost:8000 does not reach a server bound to 192.168.1.23:8000 only."""
    lan_only = Proc(("/opt/x/bin/xd",), address="192.168.1.23")
    findings = audit.assess(facts(lan_only, tunnels=[tunnel("ngrok", "http", "8000")]))
    assert [(f.exposure, f.pid) for f in findings] == [(audit.TUNNEL, None), (audit.NETWORK, 100)]


@pytest.mark.parametrize(
    ("argv", "level", "says"),
    [
        (("ngrok", "start", "--all"), Level.MEDIUM, "configuration file"),
        (("cloudflared", "tunnel", "run", "web"), Level.MEDIUM, "ingress configuration"),
        (("code", "tunnel"), Level.MEDIUM, "chosen in VS Code"),
    ],
)
def test_tunnels_whose_ports_are_unknown(argv: tuple[str, ...], level: Level, says: str) -> None:
    found = one(facts(tunnels=[tunnel(*argv)]))
    assert (found.level, found.port) == (level, None)
    assert says in found.unknown[0]


def test_ssh_dynamic_remote_forward_reaches_everything() -> None:
    found = one(facts(tunnels=[tunnel("ssh", "-R", "1080", "me@box")]))
    assert found.level is Level.HIGH
    assert "loopback-only services included" in found.reason


def test_tunnel_to_another_machine() -> None:
    found = one(facts(tunnels=[tunnel("ngrok", "http", "10.0.0.9:80")]))
    assert found.level is Level.MEDIUM and "another machine" in found.reason


# --- order, levels, probes, JSON -----------------------------------------------------------


def test_most_dangerous_first() -> None:
    f = facts(
        Proc(("/venv/bin/gunicorn", "app:app"), ports=[8001]),
        Proc(("/opt/x/bin/xd",), ports=[8002]),
        Proc((*FLASK, "--debug"), ports=[8003]),
        Proc((PY, "manage.py", "runserver", "0.0.0.0:8004"), ports=[8004]),
    )
    assert [(x.level, x.port) for x in audit.assess(f)] == [
        (Level.CRITICAL, 8003),
        (Level.HIGH, 8004),
        (Level.MEDIUM, 8002),
        (Level.INFO, 8001),
    ]


def test_dual_stack_sockets_of_one_app_are_one_way_in() -> None:
    procs = {1: INIT, 100: ProcessInfo(100, 1, "xd", "me", ("/opt/x/bin/xd",), "/")}
    socks = tuple(
        Socket(Proto.TCP, fam, addr, 8000, uid=1000, pids=(100,))
        for fam, addr in ((Family.IPV4, "0.0.0.0"), (Family.IPV6, "::"))
    )
    listeners = classifier.classify(Snapshot(socks, procs))
    found = one(Facts(listeners, IFACES))
    assert found.address == "0.0.0.0" and found.addresses == ("0.0.0.0", "::")


@pytest.mark.parametrize(
    ("fail_on", "failing"),
    [("critical", 1), ("high", 2), ("medium", 3), ("info", 4), ("HIGH", 2), (" info ", 4)],
)
def test_fail_on_levels(fail_on: str, failing: int) -> None:
    levels = [Level.CRITICAL, Level.HIGH, Level.MEDIUM, Level.INFO]
    findings = [Finding(lv, "x", "x", "x", "x", audit.NETWORK) for lv in levels]
    assert len(audit.at_or_above(findings, parse_level(fail_on))) == failing


@pytest.mark.parametrize("bad", ["", "severe", "crit", "0", "high,medium"])
def test_fail_on_bad_level(bad: str) -> None:
    with pytest.raises(UsageError, match="--fail-on must be one of critical, high, medium, info"):
        parse_level(bad)


JUPYTER_OPEN = Proc((*JUPYTER[:2], "--ServerApp.token="))
WERKZEUG_UNKNOWN = Proc((PY, "app.py"), env=RELOADER_ENV)
DJANGO = Proc((PY, "manage.py", "runserver", "0.0.0.0:8000"))
CSS = "text/css; charset=utf-8"


@pytest.mark.parametrize(
    ("proc", "result", "level", "shows", "settled"),
    [
        (JUPYTER_OPEN, ProbeResult(403), Level.HIGH, "403, authentication is on", True),
        (JUPYTER_OPEN, ProbeResult(200), Level.CRITICAL, "200, NO authentication", True),
        (Proc(JUPYTER), ProbeResult(200), Level.CRITICAL, "NO authentication", True),
        (JUPYTER_OPEN, ProbeResult(None, error="ConnectionRefusedError"), Level.CRITICAL,
         "failed", False),
        (JUPYTER_OPEN, ProbeResult(500), Level.CRITICAL, "inconclusive", False),
        (WERKZEUG_UNKNOWN, ProbeResult(200, CSS), Level.CRITICAL, "debugger is ON", True),
        (WERKZEUG_UNKNOWN, ProbeResult(404, "text/html"), Level.HIGH, "debugger off", True),
        (WERKZEUG_UNKNOWN, ProbeResult(200, "text/html"), Level.HIGH, "debugger off", True),
        (DJANGO, ProbeResult(404, "text/html", "<code>DEBUG = True</code>"), Level.HIGH,
         "DEBUG = True", True),
        (DJANGO, ProbeResult(404, "text/html", "<h1>Not Found</h1>"), Level.HIGH, "DEBUG off",
         True),
        (DJANGO, ProbeResult(400, "text/html", "Bad Request"), Level.HIGH, "inconclusive", False),
    ],
)  # fmt: skip
def test_probe_answers_settle_unknowns(
    proc: Proc, result: ProbeResult, level: Level, shows: str, settled: bool
) -> None:
    [found] = audit.assess(facts(proc))
    assert found.probe is not None and audit.probes([found, found]) == [found.probe]
    [probed] = audit.apply_probes([found], {found.probe: result})
    assert probed.level is level
    assert probed.probed is not None and shows in probed.probed
    assert (not probed.unknown) is settled
    assert probed.to_dict()["probe"] == {"url": found.probe.url, "result": probed.probed}


def test_finding_json_schema() -> None:
    [found] = audit.assess(facts(DJANGO_LOCAL, tunnels=[tunnel("ngrok", "http", "8000")]))
    doc = found.to_dict()
    assert set(doc) == {
        "level", "port", "proto", "address", "addresses", "pid", "program", "user", "framework",
        "server", "what", "reason", "evidence", "unknown", "fix", "exposure", "via",
        "reachable_on", "probe",
    }  # fmt: skip
    assert doc["level"] == "high" and doc["proto"] == "tcp" and doc["framework"] == "django"
    assert set(doc["via"]) == {"kind", "pid", "program", "command", "public", "access", "container"}
    assert doc["via"]["command"] == ["ngrok", "http", "8000"]
    assert doc["probe"] is None  # not probed


def test_every_row_has_a_reason_and_a_fix() -> None:
    keys = [d.key for d in DANGERS]
    assert len(keys) == len(set(keys))
    for row in DANGERS:
        assert row.reason and row.fix and row.what, row.key


# --- what the environment may hold ----------------------------------------------------------


def test_secret_environment_values_are_reduced_as_they_are_read() -> None:
    env = {
        "JUPYTER_TOKEN": "tok",
        "WERKZEUG_DEBUG_PIN": "123-456-789",
        "NODE_OPTIONS": "--require /secret/path.js --inspect=0.0.0.0:9229 --max-old-space-size=8",
        "FLASK_DEBUG": "1",
    }
    assert scanner.reduce_env(dict(env)) == {
        "JUPYTER_TOKEN": "set",
        "WERKZEUG_DEBUG_PIN": "set",
        "NODE_OPTIONS": "--inspect=0.0.0.0:9229",
        "FLASK_DEBUG": "1",
    }
    assert scanner.reduce_env({"JUPYTER_TOKEN": "", "WERKZEUG_DEBUG_PIN": " OFF "}) == {
        "JUPYTER_TOKEN": "empty",
        "WERKZEUG_DEBUG_PIN": "off",
    }


# --- the text report --------------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202eevil\nline"


def test_report_escapes_everything_that_came_from_outside() -> None:
    procs = Proc((PY, "-m", "http.server", "-d", HOSTILE), cwd=f"/home/{HOSTILE}", user=HOSTILE)
    t = tunnel("ngrok", "http", "9000", "--domain", HOSTILE)
    findings = audit.assess(facts(procs, tunnels=[t]))
    text = render.audit_report(findings, Level.HIGH, failing=1, include_loopback=False)
    assert [line for line in text.splitlines() if terminal_unsafe(line)] == []
    assert "\\x1b[2J" in text and "\\u202e" in text
    # One line per fact: a newline in the data never starts a line of its own.
    blocks = [render.finding_lines(f) for f in findings]
    assert len(text.splitlines()) == sum(len(b) + 1 for b in blocks) + 1  # blanks, summary


def test_report_summary_and_quiet_machine() -> None:
    findings = audit.assess(facts(DJANGO))
    text = render.audit_report(findings, Level.HIGH, failing=1, include_loopback=False)
    assert text.splitlines()[0].startswith("HIGH     tcp 0.0.0.0:8000  Django development server")
    assert text.endswith(
        "1 way in: 1 high; 1 at or above --fail-on high. Loopback-only services are not listed "
        "(--all lists them)."
    )
    quiet = render.audit_report([], Level.HIGH, failing=0, include_loopback=False)
    assert quiet.startswith("No way in from outside")
