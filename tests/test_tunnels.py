"""Tunnel clients' command lines -> the local ports they publish (pure; portinspect.tunnels).

The clients cannot run here (they dial out to their services), so every documented argv shape
is checked as data; test_audit_real.py runs stand-in processes with the real names and argv.
"""

from __future__ import annotations

import pytest

from portinspect.tunnels import ACCOUNT, LOGIN, PUBLIC, REMOTE_HOST, TAILNET, parse, redact, target

# (argv, kind, [(host, port)], public, access, everything)
SHAPES = [
    # ssh remote forwards: pinggy and serveo are ssh
    (["ssh", "-p", "443", "-R0:localhost:8000", "a.pinggy.io"], "ssh",
     [("localhost", 8000)], "a.pinggy.io", PUBLIC, False),
    (["ssh", "-p", "443", "-R0:localhost:8000", "qr@a.pinggy.io"], "ssh",
     [("localhost", 8000)], "a.pinggy.io", PUBLIC, False),
    (["ssh", "-R", "80:localhost:3000", "serveo.net"], "ssh",
     [("localhost", 3000)], "serveo.net:80", PUBLIC, False),
    (["/usr/bin/ssh", "-NTR", "9000:127.0.0.1:8000", "me@box"], "ssh",
     [("127.0.0.1", 8000)], "box:9000", REMOTE_HOST, False),
    (["ssh", "-R", "0.0.0.0:9000:localhost:8000", "box"], "ssh",
     [("localhost", 8000)], "box:9000", REMOTE_HOST, False),
    (["ssh", "-R", "[::]:9000:[::1]:8000", "box"], "ssh", [("::1", 8000)], "box:9000",
     REMOTE_HOST, False),
    (["ssh", "-o", "RemoteForward 8080 localhost:80", "me@box"], "ssh",
     [("localhost", 80)], "box:8080", REMOTE_HOST, False),
    (["ssh", "-oRemoteForward=8080 localhost:80", "me@box"], "ssh",
     [("localhost", 80)], "box:8080", REMOTE_HOST, False),
    (["ssh", "-o", "remoteforward=8080:localhost:80", "box"], "ssh",
     [("localhost", 80)], "box:8080", REMOTE_HOST, False),
    (["ssh", "-R", "1080", "me@box"], "ssh", [], "box:1080", REMOTE_HOST, True),
    (["ssh", "-R", "8000:localhost:8000", "-R", "8001:localhost:8001", "box"], "ssh",
     [("localhost", 8000), ("localhost", 8001)], "box:8000", REMOTE_HOST, False),
    (["pinggy", "-p", "443", "-R0:localhost:5000", "a.pinggy.io"], "ssh",
     [("localhost", 5000)], "a.pinggy.io", PUBLIC, False),
    # ngrok
    (["ngrok", "http", "8000"], "ngrok", [(None, 8000)], None, PUBLIC, False),
    (["ngrok", "http", "localhost:8000"], "ngrok", [("localhost", 8000)], None, PUBLIC, False),
    (["ngrok", "http", "http://localhost:8080"], "ngrok", [("localhost", 8080)], None, PUBLIC,
     False),
    (["ngrok", "tcp", "22"], "ngrok", [(None, 22)], None, PUBLIC, False),
    (["ngrok", "http", "--domain", "me.ngrok.app", "8000"], "ngrok", [(None, 8000)],
     "me.ngrok.app", PUBLIC, False),
    (["ngrok", "http", "8000", "--url=https://me.ngrok.app"], "ngrok", [(None, 8000)],
     "https://me.ngrok.app", PUBLIC, False),
    (["ngrok", "http", "8000", "--basic-auth", "u:p"], "ngrok", [(None, 8000)], None, LOGIN,
     False),
    (["ngrok", "http", "8000", "--oauth=google"], "ngrok", [(None, 8000)], None, LOGIN, False),
    # cloudflared quick tunnels
    (["cloudflared", "tunnel", "--url", "http://localhost:8000"], "cloudflared",
     [("localhost", 8000)], "trycloudflare.com", PUBLIC, False),
    (["cloudflared", "tunnel", "--url=localhost:8000"], "cloudflared", [("localhost", 8000)],
     "trycloudflare.com", PUBLIC, False),
    (["cloudflared", "--url", "http://127.0.0.1:5000"], "cloudflared", [("127.0.0.1", 5000)],
     "trycloudflare.com", PUBLIC, False),
    # localtunnel: a node script
    (["lt", "--port", "8000"], "localtunnel", [(None, 8000)], "loca.lt", PUBLIC, False),
    (["node", "/usr/lib/node_modules/localtunnel/bin/lt.js", "--port", "8000"], "localtunnel",
     [(None, 8000)], "loca.lt", PUBLIC, False),
    (["node", "/usr/bin/lt", "-p", "3000", "--subdomain", "demo"], "localtunnel",
     [(None, 3000)], "demo.loca.lt", PUBLIC, False),
    (["lt", "--port=8000", "--local-host", "127.0.0.1"], "localtunnel", [("127.0.0.1", 8000)],
     "loca.lt", PUBLIC, False),
    # bore
    (["bore", "local", "8000", "--to", "bore.pub"], "bore", [(None, 8000)], "bore.pub", PUBLIC,
     False),
    (["bore", "local", "8000", "--to", "bore.pub", "-p", "4242"], "bore", [(None, 8000)],
     "bore.pub:4242", PUBLIC, False),
    # tailscale serve (tailnet) and funnel (public)
    (["tailscale", "serve", "8000"], "tailscale", [(None, 8000)], "tailscale serve", TAILNET,
     False),
    (["tailscale", "funnel", "--bg", "3000"], "tailscale", [(None, 3000)], "tailscale funnel",
     PUBLIC, False),
    (["tailscale", "serve", "--https=443", "localhost:8080"], "tailscale", [("localhost", 8080)],
     "tailscale serve", TAILNET, False),
    (["tailscale", "serve", "https", "/", "http://127.0.0.1:3000"], "tailscale",
     [("127.0.0.1", 3000)], "tailscale serve", TAILNET, False),
    # Microsoft dev tunnels
    (["devtunnel", "host", "-p", "8000"], "devtunnel", [(None, 8000)], "devtunnels.ms", ACCOUNT,
     False),
    (["devtunnel", "host", "-p", "8000", "-p", "8001", "--allow-anonymous"], "devtunnel",
     [(None, 8000), (None, 8001)], "devtunnels.ms", PUBLIC, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "kind", "targets", "public", "access", "everything"),
    SHAPES,
    ids=[" ".join(s[0]) for s in SHAPES],
)
def test_tunnel_shapes(
    argv: list[str],
    kind: str,
    targets: list[tuple[str | None, int]],
    public: str | None,
    access: str,
    everything: bool,
) -> None:
    found = parse(argv, pid=4242, user="me")
    assert found is not None
    assert found.kind == kind
    assert [(t.host, t.port) for t in found.targets] == targets
    assert (found.public, found.access, found.everything) == (public, access, everything)
    assert found.unknown is None
    assert (found.pid, found.user) == (4242, "me")


# Tunnels whose targets live in a config file, or are chosen elsewhere: unknown, never guessed.
CONFIGURED = [
    (["ngrok", "start", "--all"], "ngrok", "configuration file"),
    (["ngrok", "start", "web", "api"], "ngrok", "configuration file"),
    (["ngrok", "service", "run", "--config", "/etc/ngrok.yml"], "ngrok", "configuration file"),
    (["ngrok", "http", "file:///srv/share"], "ngrok", "files of /srv/share"),
    (["cloudflared", "tunnel", "run", "mytunnel"], "cloudflared", "ingress configuration"),
    (["cloudflared", "tunnel", "--config", "c.yml", "run"], "cloudflared", "ingress"),
    (["cloudflared", "tunnel", "run", "--token", "T"], "cloudflared", "ingress configuration"),
    (["code", "tunnel"], "vscode", "chosen in VS Code"),
    (["code-tunnel", "tunnel", "--accept-server-license-terms", "--name", "box"], "vscode",
     "chosen in VS Code"),
    (["code", "tunnel", "service", "internal-run"], "vscode", "chosen in VS Code"),
    (["devtunnel", "host", "mytunnel"], "devtunnel", "devtunnel port create"),
    (["tailscale", "funnel", "443", "on"], "tailscale", "serve configuration"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "kind", "why"), CONFIGURED, ids=[" ".join(c[0]) for c in CONFIGURED]
)
def test_tunnels_from_config_say_unknown(argv: list[str], kind: str, why: str) -> None:
    found = parse(argv)
    assert found is not None and found.kind == kind
    assert found.targets == ()
    assert found.unknown is not None and why in found.unknown


NOT_TUNNELS = [
    ["ssh", "me@box"],
    ["ssh", "-L", "8080:localhost:80", "me@box"],  # a local forward listens here: a listener
    ["ssh", "-D", "1080", "me@box"],
    ["ssh", "-R", "8080:/run/app.sock", "me@box"],  # a unix socket: no TCP port
    ["ssh", "box", "-R", "8000:localhost:8000"],  # after the host: the remote command's words
    ["ngrok", "version"],
    ["ngrok", "config", "add-authtoken", "T"],
    ["ngrok", "http"],
    ["cloudflared", "access", "tcp", "--hostname", "x.example", "--url", "localhost:9000"],
    ["cloudflared", "tunnel", "list"],
    ["cloudflared", "proxy-dns"],
    ["lt"],
    ["bore", "server"],
    ["tailscale", "up"],
    ["tailscale", "serve", "status"],
    ["tailscale", "serve", "reset"],
    ["tailscale", "funnel", "3000", "off"],
    ["code", "."],
    ["code", "tunnel", "status"],
    ["code", "tunnel", "user", "login"],
    ["devtunnel", "list"],
    ["python", "-m", "http.server"],
    [],
]


@pytest.mark.parametrize("argv", NOT_TUNNELS, ids=[" ".join(a) or "empty" for a in NOT_TUNNELS])
def test_not_a_tunnel(argv: list[str]) -> None:
    assert parse(argv) is None


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["ngrok", "http", "8000", "--authtoken", "s3cr3t"], "ngrok http 8000 --authtoken ***"),
        (["ngrok", "http", "8000", "--authtoken=s3cr3t"], "ngrok http 8000 --authtoken=***"),
        (["ngrok", "http", "-auth=u:s3cr3t", "8000"], "ngrok http -auth=*** 8000"),
        (["ngrok", "http", "8000", "--basic-auth", "u:s3cr3t"], "ngrok http 8000 --basic-auth ***"),
        (["cloudflared", "tunnel", "run", "--token", "s3cr3t"],
         "cloudflared tunnel run --token ***"),
        (["bore", "local", "8000", "--to", "h", "-s", "s3cr3t"], "bore local 8000 --to h -s ***"),
        (["bore", "local", "8000", "--to", "h", "--secret", "s3cr3t"],
         "bore local 8000 --to h --secret ***"),
        (["cloudflared", "tunnel", "--url", "http://u:s3cr3t@localhost:8000"],
         "cloudflared tunnel --url http://u:***@localhost:8000"),
    ],
)  # fmt: skip
def test_tunnel_commands_never_carry_secrets(argv: list[str], shown: str) -> None:
    found = parse(argv)
    assert found is not None
    assert " ".join(found.command) == shown
    assert "s3cr3t" not in repr(found.to_dict())


def test_redact_names_secrets_by_their_option() -> None:
    argv = ["jupyter", "--ServerApp.token=abc", "--ServerApp.password", "h", "--port", "8888"]
    assert redact(argv) == (
        "jupyter",
        "--ServerApp.token=***",
        "--ServerApp.password",
        "***",
        "--port",
        "8888",
    )
    assert redact(["redis-server", "--requirepass", "pw"]) == (
        "redis-server",
        "--requirepass",
        "***",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8000", (None, 8000, None)),
        ("localhost:8000", ("localhost", 8000, None)),
        ("[::1]:8000", ("::1", 8000, None)),
        ("http://localhost:8080", ("localhost", 8080, "http")),
        ("https://127.0.0.1", ("127.0.0.1", 443, "https")),
        ("tcp://localhost:22", ("localhost", 22, "tcp")),
        ("0", None),
        ("65536", None),
        ("unix:/run/app.sock", None),
        ("http_status:404", None),
        ("file:///srv", None),
        ("/tmp/x:80", None),
    ],
)
def test_targets(text: str, expected: tuple[str | None, int, str | None] | None) -> None:
    found = target(text)
    assert (None if found is None else (found.host, found.port, found.scheme)) == expected


def test_script_interpreters_are_looked_through() -> None:
    """A Python or node stand-in named like the client counts as the client (how the real
    tests simulate them), as `node .../lt.js` is localtunnel."""
    found = parse(["/venv/bin/python3", "/tmp/x/ngrok", "http", "8000"])
    assert found is not None and found.kind == "ngrok" and found.targets[0].port == 8000
