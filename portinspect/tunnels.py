"""Pure: a command line -> the local ports it forwards to the outside, if it is a tunnel client.

A tunnel client holds no listening socket (ssh -R, ngrok and cloudflared dial out), so the
socket table never shows it: `audit` reads every process's argv and asks `parse()`. The argv
shapes come from the tools' documentation (research/managers-and-exposure.md); the clients
cannot run here, so the tests check each shape and simulate the processes.

Where the ports are not on the command line (`ngrok start`, `cloudflared tunnel run NAME`, a
VS Code tunnel) the tunnel says so in `unknown` instead of guessing. `redact()` hides the
tokens and passwords these command lines often carry (`--authtoken`, `--token`, `-s SECRET`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from portinspect.cmdline import option, parse_command

# Who can reach what a tunnel publishes.
PUBLIC = "public"  # anyone on the internet who has (or guesses) the URL
LOGIN = "login"  # a public URL that asks for a login first (ngrok --basic-auth/--oauth)
ACCOUNT = "account"  # the signed-in owner's account only (devtunnel, VS Code tunnels)
TAILNET = "tailnet"  # the devices of your tailnet (tailscale serve)
REMOTE_HOST = "remote-host"  # whoever can reach the forwarded port on the ssh server

# ssh servers that publish a remote forward on the internet (their documented use).
_PUBLIC_SSH_HOSTS = ("pinggy.io", "pinggy.link", "serveo.net", "localhost.run", "srv.us")


@dataclass(frozen=True, slots=True)
class Target:
    """A local address a tunnel forwards to. host None: the tool's default (localhost)."""

    port: int
    host: str | None = None
    scheme: str | None = None  # "http", "https", "tcp", "tls"... as given

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "host": self.host, "scheme": self.scheme}


@dataclass(frozen=True, slots=True)
class Tunnel:
    """A running tunnel client, as its command line describes it.

    targets are empty when the command line does not say: `unknown` then says why (a config
    file, ports chosen in an editor). everything is True for an ssh dynamic remote forward
    (`-R 1080`): the other side may reach every address this machine reaches, loopback
    included. command is the argv with secrets replaced by "***".
    """

    kind: str  # "ssh", "ngrok", "cloudflared", "localtunnel", "bore", "tailscale"...
    targets: tuple[Target, ...] = ()
    public: str | None = None  # where it is published: "a.pinggy.io", "bore.pub:4242"...
    access: str = PUBLIC
    unknown: str | None = None
    everything: bool = False
    pid: int | None = None
    user: str | None = None
    command: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "user": self.user,
            "command": list(self.command),
            "targets": [t.to_dict() for t in self.targets],
            "public": self.public,
            "access": self.access,
            "unknown": self.unknown,
            "everything": self.everything,
        }


# ---------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------

# Patterns as text, compiled by re on first use: most machines run no tunnel.
_SENSITIVE_OPTION = r"(?i)token|secret|pass|auth|key|credential"
_URL_USERINFO = r"(\w[\w+.-]*://[^/\s:@]*:)[^/\s@]*@"
HIDDEN = "***"


def redact(argv: Sequence[str], short: Sequence[str] = ()) -> tuple[str, ...]:
    """argv with the values of options named like secrets (--authtoken, --token, -auth,
    --ServerApp.token, --requirepass, --secret) and the passwords in URLs replaced by ***.

    An option's value is hidden whether it is glued (`--token=X`) or the next argument.
    short: one-letter options that carry a secret for this program (bore's `-s`).
    """
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(HIDDEN)
            hide_next = False
            continue
        if arg in short:
            hide_next = True
        elif short and arg[:2] in short and len(arg) > 2:
            arg = arg[:2] + HIDDEN
        elif arg.startswith("-") and len(arg) > 2:
            name, eq, _value = arg.lstrip("-").partition("=")
            if re.search(_SENSITIVE_OPTION, name):
                if eq:
                    arg = arg[: len(arg) - len(_value)] + HIDDEN
                else:
                    hide_next = True
        out.append(re.sub(_URL_USERINFO, rf"\g<1>{HIDDEN}@", arg))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Addresses as the tools take them
# ---------------------------------------------------------------------------------------

_HOST = r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"  # a name, IPv4 or IPv6
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "rdp": 3389, "smb": 445}


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and 0 < int(text) <= 65535:
        return int(text)
    return None


def target(text: str, scheme: str | None = None) -> Target | None:
    """A forward target as ngrok, cloudflared and tailscale take it: `8000`, `localhost:8000`,
    `[::1]:8000`, `http://localhost:8080`, `localhost` (port 80 for http). None when it names
    no TCP port (a unix socket, `file:///dir`, `http_status:404`)."""
    text = text.strip()
    port = _number(text)
    if port is not None:
        return Target(port, None, scheme)
    if "://" in text:
        from urllib.parse import urlsplit  # here: only URLs need it, and `who` audits too

        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return None
        given = parts.scheme.lower() or scheme
        if port is None:
            port = _DEFAULT_PORTS.get(given or "")
        if port is None or not parts.hostname:
            return None
        return Target(port, parts.hostname, given)
    host, colon, rest = text.rpartition(":")
    if colon:
        port = _number(rest)
        host = host.strip("[]")
        if port is None or not re.fullmatch(_HOST, host):
            return None  # unix:/path, http_status:404, /dir:80
        return Target(port, host, scheme)
    if scheme in ("http", "https") and re.fullmatch(_HOST, text):
        return Target(_DEFAULT_PORTS[scheme], text, scheme)
    return None


def _option(args: Sequence[str], *names: str) -> str | None:
    """The value of `--name V`, `--name=V`, `-name=V` or `-xV` (the last one wins)."""
    return option(args, names, dash_equals=True, glued=True)


def _options(args: Sequence[str], *names: str) -> list[str]:
    """Every value of a repeatable option (`-p 8000 -p 8001`, `--port-numbers=8000,8001`)."""
    found = []
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found.append(args[i + 1])
            elif arg.startswith(name + "="):
                found.append(arg[len(name) + 1 :])
    return found


def _positionals(args: Sequence[str], valued: frozenset[str], flags: frozenset[str]) -> list[str]:
    """Arguments that are neither options nor an option's value. An unknown `--option`
    without `=` takes the next argument unless it is a known flag."""
    found: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and len(arg) > 1:
            skip = "=" not in arg and (arg in valued or arg not in flags)
        else:
            found.append(arg)
    return found


# ---------------------------------------------------------------------------------------
# One parser per client
# ---------------------------------------------------------------------------------------

# ssh options that take a value (ssh(1) SYNOPSIS); they may be glued: -p443, -R0:localhost:80.
_SSH_VALUED = frozenset("BbcDEeFIiJLlmOopQRSWw")


def _ssh(args: Sequence[str]) -> Tunnel | None:
    forwards: list[str] = []
    destination = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            destination = args[i + 1] if i + 1 < len(args) else None
            break
        if not arg.startswith("-") or arg == "-":
            destination = arg
            break
        for j in range(1, len(arg)):
            flag = arg[j]
            if flag in _SSH_VALUED:
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    value = args[i] if i < len(args) else ""
                if flag == "R":
                    forwards.append(value)
                elif flag == "o":
                    forwards += _remote_forward_option(value)
                break
        i += 1
    if not forwards:
        return None
    host = (destination or "").rpartition("@")[2] or None
    targets: list[Target] = []
    remote_ports: list[str] = []
    everything = False
    for spec in forwards:
        parsed = _ssh_remote_forward(spec)
        if parsed is None:
            continue  # a unix socket on this side: no TCP port
        listen, tgt = parsed
        remote_ports.append(listen)
        if tgt is None:
            everything = True
        else:
            targets.append(tgt)
    if not targets and not everything:
        return None
    public_service = host is not None and host.lower().endswith(_PUBLIC_SSH_HOSTS)
    where = host
    if host is not None and remote_ports and remote_ports[0] not in ("", "0"):
        where = f"{host}:{remote_ports[0]}"
    return Tunnel(
        "ssh",
        tuple(targets),
        public=where,
        access=PUBLIC if public_service else REMOTE_HOST,
        everything=everything,
    )


def _remote_forward_option(value: str) -> list[str]:
    """`-o RemoteForward=8080 localhost:80` or `-o "RemoteForward 8080 localhost:80"` as an
    -R spec ("8080:localhost:80")."""
    key, _sep, rest = value.strip().replace("=", " ", 1).partition(" ")
    if key.lower() != "remoteforward":
        return []
    words = rest.split()
    return [":".join(words)] if words else []


def _split_forward(spec: str) -> list[str]:
    """`[::1]:8080:localhost:80` -> ["::1", "8080", "localhost", "80"]: colons inside
    brackets belong to an IPv6 address."""
    fields, current, depth = [], "", 0
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ":" and depth == 0:
            fields.append(current)
            current = ""
            continue
        current += ch
    fields.append(current)
    return [f.strip("[]") for f in fields]


def _ssh_remote_forward(spec: str) -> tuple[str, Target | None] | None:
    """(remote listen port, local target) of one -R spec; target None for a dynamic forward
    (the remote side gets a SOCKS proxy through this machine). None: a unix socket here."""
    fields = _split_forward(spec)
    if len(fields) == 4:
        host, port = fields[2], _number(fields[3])
        return (fields[1], Target(port, host)) if port is not None else None
    if len(fields) == 3:
        port = _number(fields[2])
        return (fields[0], Target(port, fields[1])) if port is not None else None
    if len(fields) in (1, 2) and not any("/" in f for f in fields):
        return fields[-1], None
    return None


_NGROK_PROTOCOLS = frozenset({"http", "tcp", "tls"})
_NGROK_FLAGS = frozenset(
    {"--inspect", "--websocket-tcp-converter", "--pooling-enabled", "--help", "-h", "--all"}
)
_NGROK_LOGIN = ("--basic-auth", "--oauth", "--oidc", "-auth", "--auth", "-httpauth")


def _ngrok(args: Sequence[str]) -> Tunnel | None:
    words = _positionals(args, frozenset(), _NGROK_FLAGS)
    if not words:
        return None
    sub = words[0]
    if sub in ("start", "service"):
        if sub == "service" and (len(words) < 2 or words[1] != "run"):
            return None
        return Tunnel("ngrok", unknown="the tunnels come from ngrok's configuration file")
    if sub not in _NGROK_PROTOCOLS:
        return None  # ngrok config, authtoken, version, api...
    after = words[1:]
    if not after:
        return None
    if after[0].lower().startswith("file://"):
        return Tunnel("ngrok", unknown=f"it serves the files of {after[0][7:]}, no local port")
    found = target(after[0], sub)
    if found is None:
        return None
    login = any(a.split("=", 1)[0] in _NGROK_LOGIN for a in args)
    url = _option(args, "--url", "--domain", "--hostname", "-hostname", "-subdomain")
    return Tunnel("ngrok", (found,), public=url, access=LOGIN if login else PUBLIC)


_CLOUDFLARED_FLAGS = frozenset({"--no-autoupdate", "--hello-world", "--help", "-h", "--quick"})


def _cloudflared(args: Sequence[str]) -> Tunnel | None:
    url = _option(args, "--url", "-url")
    words = _positionals(args, frozenset(), _CLOUDFLARED_FLAGS)
    if words[:1] not in ([], ["tunnel"]):
        return None  # access (a client: its --url is its own listener), service, update...
    if url is not None:
        found = target(url, "http")
        if found is None:
            return None  # unix:/path, http_status:404, hello_world
        return Tunnel("cloudflared", (found,), public="trycloudflare.com", access=PUBLIC)
    if words[:1] == ["tunnel"] and "run" in words[1:]:
        name = next((w for w in words[words.index("run") + 1 :]), None)
        what = f"tunnel {name}" if name else "the tunnel"
        return Tunnel(
            "cloudflared",
            public=name,
            unknown=f"the ports of {what} come from its ingress configuration",
        )
    return None  # `cloudflared tunnel list`, login, create...


def _localtunnel(args: Sequence[str]) -> Tunnel | None:
    port = _number(_option(args, "--port", "-p") or "")
    if port is None:
        return None
    scheme = "https" if "--local-https" in args else "http"
    host = _option(args, "--local-host", "-l")
    server = _option(args, "--host", "-h") or "loca.lt"
    subdomain = _option(args, "--subdomain", "-s")
    public = f"{subdomain}.{server.split('://')[-1]}" if subdomain else server
    return Tunnel("localtunnel", (Target(port, host, scheme),), public=public, access=PUBLIC)


def _bore(args: Sequence[str]) -> Tunnel | None:
    valued = frozenset({"-l", "--local-host", "-t", "--to", "-p", "--port", "-s", "--secret"})
    words = _positionals(args, valued, frozenset({"-h", "--help"}))
    if words[:1] != ["local"] or len(words) < 2:
        return None  # bore server: it listens itself, and the socket table shows it
    port = _number(words[1])
    if port is None:
        return None
    server = _option(args, "--to", "-t")
    remote = _option(args, "--port", "-p")
    public = f"{server}:{remote}" if server and remote else server
    host = _option(args, "--local-host", "-l")
    return Tunnel("bore", (Target(port, host, "tcp"),), public=public, access=PUBLIC)


_TAILSCALE_VALUED = frozenset(
    {"--https", "--http", "--tcp", "--tls-terminated-tcp", "--set-path", "--service"}
)
_TAILSCALE_FLAGS = frozenset({"--bg", "--yes", "-y", "--help", "-h"})


def _tailscale(args: Sequence[str]) -> Tunnel | None:
    words = _positionals(args, frozenset(), frozenset())
    if not words or words[0] not in ("serve", "funnel"):
        return None
    sub = words[0]
    rest = _positionals(args[args.index(sub) + 1 :], _TAILSCALE_VALUED, _TAILSCALE_FLAGS)
    if not rest or rest[0] in ("status", "reset", "get-config", "set-config") or "off" in rest:
        return None
    if "on" in rest:  # before 1.52: `tailscale funnel 443 on` publishes what serve set up
        return Tunnel("tailscale", public="tailscale funnel", unknown="the serve configuration")
    scheme = "http"  # what tailscale's proxy speaks to a bare local port
    for name in ("--tcp", "--tls-terminated-tcp"):
        if _option(args, name) is not None:
            scheme = "tcp"
    found = next((t for t in (target(w, scheme) for w in reversed(rest)) if t is not None), None)
    if found is None:
        return None
    access = PUBLIC if sub == "funnel" else TAILNET
    return Tunnel("tailscale", (found,), public=f"tailscale {sub}", access=access)


# `code tunnel <sub>` commands that manage a tunnel rather than run one.
_VSCODE_ADMIN = frozenset(
    {"user", "status", "kill", "restart", "rename", "unregister", "prune", "help"}
)


_VSCODE_FLAGS = frozenset(
    {"--accept-server-license-terms", "--random-name", "--no-sleep", "--verbose", "--help"}
)


def _vscode(args: Sequence[str]) -> Tunnel | None:
    words = _positionals(args, frozenset(), _VSCODE_FLAGS)
    if words[:1] != ["tunnel"]:
        return None  # the editor itself
    sub = words[1:2]
    if sub and (sub[0] in _VSCODE_ADMIN or (sub[0] == "service" and "internal-run" not in words)):
        return None
    return Tunnel(
        "vscode",
        public="vscode.dev",
        access=ACCOUNT,
        unknown="it gives the signed-in account a terminal and the files; forwarded ports are "
        "chosen in VS Code",
    )


def _devtunnel(args: Sequence[str]) -> Tunnel | None:
    flags = frozenset({"-a", "--allow-anonymous", "--help", "-h"})
    words = _positionals(args, frozenset(), flags)
    if words[:1] != ["host"]:
        return None
    ports = [
        port
        for value in _options(args, "-p", "--port-numbers")
        for part in value.split(",")
        if (port := _number(part.strip())) is not None
    ]
    anonymous = "--allow-anonymous" in args or "-a" in args
    access = PUBLIC if anonymous else ACCOUNT
    if not ports:
        name = words[1] if len(words) > 1 else None
        return Tunnel(
            "devtunnel",
            public=name,
            access=access,
            unknown="the ports were set with `devtunnel port create`",
        )
    targets = tuple(Target(p, None, _option(args, "--protocol")) for p in ports)
    return Tunnel("devtunnel", targets, public="devtunnels.ms", access=access)


# One-letter options whose value is a secret, per program (long ones are found by name).
_SHORT_SECRETS = {"bore": ("-s",)}

# Program (script stem, module or executable, as cmdline.parse_command names it) -> parser.
# localtunnel is a node script (`node .../bin/lt.js --port 8000`); pinggy's CLI takes ssh's flags.
_PARSERS: dict[str, Callable[[Sequence[str]], Tunnel | None]] = {
    "ssh": _ssh,
    "pinggy": _ssh,
    "ngrok": _ngrok,
    "cloudflared": _cloudflared,
    "lt": _localtunnel,
    "localtunnel": _localtunnel,
    "bore": _bore,
    "tailscale": _tailscale,
    "code": _vscode,
    "code-insiders": _vscode,
    "code-tunnel": _vscode,
    "devtunnel": _devtunnel,
}
PROGRAMS = frozenset(_PARSERS)


def parse(argv: Sequence[str], *, pid: int | None = None, user: str | None = None) -> Tunnel | None:
    """The tunnel a command line runs, or None when it is no tunnel client (or forwards no
    TCP port: a unix socket, `ngrok version`, `ssh host` without -R)."""
    cmd = parse_command(argv)
    parser = _PARSERS.get(cmd.program)
    if parser is None:
        return None
    found = parser(cmd.args)
    if found is None:
        return None
    return Tunnel(
        found.kind,
        found.targets,
        found.public,
        found.access,
        found.unknown,
        found.everything,
        pid,
        user,
        redact([a for a in argv if a], _SHORT_SECRETS.get(cmd.program, ())),
    )
