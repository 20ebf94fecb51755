"""Pure: what has a say over an app besides its own processes.

Process managers that restart it or stop its siblings (supervisord, honcho, pm2...), the
systemd unit or container its cgroup names, and the container proxies (docker-proxy) that
publish a container's port on the host. The rows are in catalogue.py
(research/managers-and-exposure.md).
"""

from __future__ import annotations

import functools
import re
from typing import TypedDict

from portinspect import catalogue as cat
from portinspect.cmdline import first_positional, go_flags, has_flag, option, parse_command, stem
from portinspect.models import Manager, ProcessInfo


def manager_row(proc: ProcessInfo) -> cat.ManagerRow | None:
    """The manager this process is, if it is one (supervisord, honcho start, pm2...)."""
    cmd = parse_command(proc.cmdline)
    row = cat.manager_for_program(cmd.program) if cmd.program else None
    if row is None:
        return None
    if row.serves is not None and first_positional(cmd.args) not in row.serves:
        return None
    return row


def manager_for(row: cat.ManagerRow, manager: ProcessInfo, top: ProcessInfo) -> Manager:
    """The Manager record for an app `manager` runs, its service named from the app's env."""
    service = next((top.env[k] for k in row.service_env if top.env.get(k)), None)
    if row.group_env is not None and service is not None:
        group = top.env.get(row.group_env)
        if group and group != service:
            service = f"{group}:{service}"
    args = parse_command(manager.cmdline).args
    stops_others = row.stops_others or (
        bool(row.stops_others_options) and has_flag(args, row.stops_others_options)
    )
    stop = None
    if row.stop is not None and service is not None:
        config = option(args, row.config_options) if row.config_options else None
        stop = row.stop.format(service=service, config=f" -c {config}" if config else "")
    return Manager(row.kind, manager.pid, service, row.restarts, stops_others, stop)


@functools.cache
def _container_id() -> re.Pattern[str]:
    markers = "|".join(re.escape(marker) for marker, _, _ in cat.CONTAINER_CGROUPS)
    return re.compile(rf"(?:{markers})[-/]([0-9a-f]{{12,64}})")


def cgroup_manager(proc: ProcessInfo) -> Manager | None:
    """A systemd service or a container, from the process's cgroup path.

    /system.slice/NAME.service is a system unit, .../user@UID.service/.../NAME.service a user
    unit; a .scope is a login session or a transient run, which nothing restarts. Containers
    show as docker-ID.scope, /docker/ID or libpod-ID.scope.
    """
    path = proc.cgroup
    if not path:
        return None
    match = _container_id().search(path)
    if match is not None:
        cli = next(c for marker, _, c in cat.CONTAINER_CGROUPS if marker in match.group(0))
        cid = match.group(1)[:12]
        return Manager("container", None, cid, None, False, f"{cli} stop {cid}")
    parts = [p for p in path.split("/") if p]
    units = [p for p in parts if p.endswith(".service") and not p.startswith("user@")]
    if not units:
        return None
    unit = units[-1]
    user = any(p.startswith("user@") for p in parts)
    command = f"systemctl {'--user ' if user else ''}stop {unit}"
    return Manager("systemd", None, unit, None, False, command)


class ContainerProxy(TypedDict):
    """A process that forwards a published container port (docker-proxy, rootlessport)."""

    proxy: str  # "docker-proxy", "rootlesskit", "rootlessport", ...
    runtime: str  # "docker", "rootless", "podman", "docker-desktop", "orbstack"
    cli: str  # the command that finds and stops the container: "docker", "podman"
    proto: str | None
    host_ip: str | None
    host_port: int | None
    container_ip: str | None
    container_port: int | None


def container_proxy(proc: ProcessInfo) -> ContainerProxy | None:
    """The container port this process forwards, if it is docker-proxy or a rootless forwarder.

    docker-proxy's flags (moby cmd/docker-proxy) give the published and the container
    port; stopping it only breaks the container's mapping, so kill should name the
    container (`docker ps --filter publish=N`) instead.
    """
    argv = [a for a in proc.cmdline if a]
    if not argv:
        return None
    name = stem(argv[0])
    row = cat.proxy_for(name)
    if row is None:
        return None
    flags = go_flags(argv[1:])
    return ContainerProxy(
        proxy=name,
        runtime=row.runtime,
        cli=row.cli,
        proto=flags.get("proto"),
        host_ip=flags.get("host-ip"),
        host_port=_port(flags.get("host-port")),
        container_ip=flags.get("container-ip"),
        container_port=_port(flags.get("container-port")),
    )


def _port(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else -1
    except ValueError:
        return None
    return value if 0 <= value <= 65535 else None
