"""Pure: what one process is, from its command line and marker variables, read off the catalogue.

describe() takes a ProcessInfo and answers with a Signature: framework, server, kind (server,
launcher, shell, kernel...), the role its title names, whether it runs a reloader, its worker
count, where its app's source is and what interface it speaks. Every answer comes from a row of
catalogue.py; nothing here is keyed by a program's name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from portinspect import catalogue as cat
from portinspect.catalogue import (
    KIND_BOUNDARY,
    KIND_MP_CHILD,
    KIND_OTHER,
    KIND_SCRIPT,
    KIND_SHELL_C,
    Server,
    Switch,
)
from portinspect.cmdline import (
    MEMO,
    Command,
    as_int,
    first_positional,
    has_flag,
    normalise_argv,
    option,
    parse_command,
    positionals,
    same_tail,
    stem,
)
from portinspect.models import ProcessInfo, Role


class Signature(NamedTuple):
    """What one process is, judged from its command line and env markers alone."""

    framework: str | None = None
    server: str | None = None
    kind: str = KIND_OTHER
    role: Role | None = None  # a role the process names itself (setproctitle), or kernel/tracker
    reloads: bool = False  # a parent that restarts the server in a child (--reload, runserver)
    workers: int = 1  # --workers N
    app: str | None = None  # "main:app", "pkg.wsgi", "app.py": where the app's source is
    app_dir: str | None = None  # uvicorn --app-dir, gunicorn --chdir
    interface: str | None = None  # catalogue.ASGI, WSGI, RSGI; None if unknown
    prefork: bool = False  # its workers are copies of it (gunicorn, nginx)
    spawns: bool = False  # serves from multiprocessing children even without workers/reload
    generic: bool = False  # node, bun, deno: any program, so a same-server child proves nothing
    reloader_child: bool = False  # the child a reloader runs (RUN_MAIN=true)


_NONE: tuple[Server | None, Signature] = (None, Signature())


def describe(proc: ProcessInfo) -> Signature:
    """Framework, server and kind of one process, from its cmdline and env markers."""
    return _read(proc)[1]


def row_for(proc: ProcessInfo) -> Server | None:
    """The catalogue row describe() read for this process; None when no row fits."""
    return _read(proc)[0]


def evidence(proc: ProcessInfo, name: str) -> bool | None:
    """A named switch of the process's catalogue row (`debug`: flask --debug or FLASK_DEBUG=1);
    None when its row has no such switch."""
    row = row_for(proc)
    switch = dict(row.evidence).get(name) if row is not None else None
    if switch is None:
        return None
    return _switched(switch, parse_command(proc.cmdline).args, proc.env)


def _read(proc: ProcessInfo) -> tuple[Server | None, Signature]:
    cmd = parse_command(proc.cmdline)
    row, sig = _from_command(cmd)
    env = proc.env
    if sig.server is None and sig.kind in (KIND_SCRIPT, KIND_OTHER) and env:
        marked = _from_env(cmd, env)
        if marked is not None:
            row, sig = marked
    if row is not None and env:
        reloads = sig.reloads or (bool(row.reloader.env) and _switched(row.reloader, cmd.args, env))
        child = any(env.get(k) == "true" for k in row.child_env)
        if reloads != sig.reloads or child:
            sig = sig._replace(reloads=reloads, reloader_child=child)
    if not cmd.program and proc.name and is_boundary_name(stem(proc.name)):
        # cmdline hidden (another user's process on macOS): comm may still say "a shell".
        return None, Signature(kind=KIND_BOUNDARY)
    return row, sig


def _from_env(cmd: Command, env: Mapping[str, str]) -> tuple[Server, Signature] | None:
    for mark in cat.ENV_MARKS:
        if any(k in env for k in mark.names) and cmd.runtime is not None:
            row = mark.row
            sig = _signature(cmd, row)
            # Keep the script: its source names the framework (Flask, Dash).
            return row, sig._replace(app=sig.app or _script(cmd))
    return None


@functools.lru_cache(maxsize=MEMO)
def _from_command(cmd: Command) -> tuple[Server | None, Signature]:
    if cmd.code is not None:
        return None, _inline(cmd)
    shell = cat.shell_for(cmd.program) if cmd.runtime is None else None
    if shell is not None:
        return None, Signature(kind=KIND_SHELL_C if _runs_command(cmd, shell) else KIND_BOUNDARY)
    rows = [r for r in cat.servers_for(cmd.program) if _runtime_fits(r, cmd)]
    known = _known(cmd, rows)
    if known is not None:
        return known
    if cmd.program in cat.SCRIPT_BOUNDARIES or (
        cmd.runtime is None and is_boundary_name(cmd.program)
    ):
        return None, Signature(kind=KIND_BOUNDARY)
    generic = [r for r in cat.servers_for(cmd.runtime or "") if _runtime_fits(r, cmd)]
    if generic:  # node srv.js: the runtime serves a script we do not know
        return generic[0], _signature(cmd, generic[0])
    if cmd.runtime is not None:
        return None, Signature(kind=KIND_SCRIPT, app=_script(cmd))
    return _NONE


def _runtime_fits(row: Server, cmd: Command) -> bool:
    return cmd.runtime is None or row.runtime in (None, cmd.runtime)


def _known(cmd: Command, rows: Sequence[Server]) -> tuple[Server | None, Signature] | None:
    """The first row whose subcommand serves; a known program that does not serve now (django
    migrate, vite build) keeps its framework and runs as a script."""
    for row in rows:
        sub = first_positional(cmd.args, row.values)
        if (row.serves is None or sub in row.serves) and sub not in row.idle:
            return row, _signature(cmd, row)
    if rows:
        return None, Signature(rows[0].framework, kind=KIND_SCRIPT if cmd.runtime else KIND_OTHER)
    return None


def _signature(cmd: Command, row: Server) -> Signature:
    args = cmd.args
    common = Signature(
        framework=row.framework,
        server=_server(row, args),
        kind=row.kind,
        role=row.role,
        interface=_interface(row, args),
        prefork=row.prefork,
        spawns=row.spawns,
        generic=row.generic,
    )
    if cmd.title is not None and row.titles:
        titled = _titled(cmd.title, row, common)
        if titled is not None:
            return titled
    return common._replace(
        reloads=_switched(row.reloader, args, {}),
        workers=as_int(option(args, row.workers), 1) if row.workers else 1,
        app=_app_spec(row, args),
        app_dir=option(args, row.app_dir) if row.app_dir else None,
    )


def _titled(title: str, row: Server, common: Signature) -> Signature | None:
    """setproctitle: "gunicorn: worker [app:app]", "granian wsgi 127.0.0.1:8000 app:app
    worker-1". The rest of argv is gone: options, and so reloading and workers, are unknown."""
    for pattern in row.titles:
        match = _regex(pattern.pattern).fullmatch(title)
        if match is None:
            continue
        fields = match.groupdict()
        interface = fields.get("interface")
        return common._replace(
            role=pattern.role,
            app=fields.get("app") or None,
            # The worker class went with the rest of argv: unknown unless the title says.
            interface=_match_interface(row, interface) if interface else None,
        )
    return None


def _server(row: Server, args: Sequence[str]) -> str | None:
    named = option(args, row.server_options) if row.server_options else None
    return named.lower() if named else row.server


def _interface(row: Server, args: Sequence[str]) -> str | None:
    value = option(args, row.interface_opts) if row.interface_opts else None
    return _match_interface(row, value) if value else row.interface


def _match_interface(row: Server, value: str) -> str | None:
    lowered = value.lower()
    for part, interface in row.interfaces:
        if part in lowered:
            return interface
    return row.interface


def _switched(switch: Switch, args: Sequence[str], env: Mapping[str, str]) -> bool:
    if switch.off and has_flag(args, switch.off):
        return False
    if switch.on and has_flag(args, switch.on):
        return True
    if any(env.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in switch.env):
        return True
    return switch.default


def _inline(cmd: Command) -> Signature:
    code = cmd.code or ""
    for inline in cat.INLINE:
        if any(m in code for m in inline.markers):
            return Signature(kind=inline.kind, role=inline.role)
    if cat.MP_FORK_ARG in cmd.args:
        return Signature(kind=KIND_MP_CHILD)
    return Signature(kind=KIND_SCRIPT if cmd.runtime else KIND_OTHER)


def _runs_command(cmd: Command, shell: cat.Shell) -> bool:
    """`sh -c CMD`, `bash --login -lc CMD`, `cmd /d /s /c CMD`, `pwsh -Command CMD`."""
    if not shell.posix:
        return any(a.lower() in shell.command_options for a in cmd.args)
    for arg in cmd.args:  # -c may be combined with other one-letter options before any operand
        if not arg.startswith("-"):
            return False
        if not arg.startswith("--") and "c" in arg[1:]:
            return True
    return False


def _script(cmd: Command) -> str | None:
    return cmd.target if cmd.runtime is not None and not cmd.module else None


# ---------------------------------------------------------------------------------------
# The app spec: which module to read for the framework's imports
# ---------------------------------------------------------------------------------------

# An app spec as uvicorn/gunicorn/hypercorn take it: "main:app", "pkg.mod:create_app()".
_APP_SPEC = r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?"
_MODULE = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _app_spec(row: Server, args: Sequence[str]) -> str | None:
    """uwsgi --module app:app, uvicorn main:app, `gunicorn mysite.wsgi` (Django's docs)."""
    if row.app_options:
        named = option(args, row.app_options)
        if named:
            return named
    if not row.app_positional:
        return None
    found_args = list(positionals(args, row.values))
    spec = _regex(_APP_SPEC)
    found = next((a for a in found_args if spec.fullmatch(a)), None)
    if found is None:
        module = _regex(_MODULE)
        found = next((a for a in reversed(found_args) if module.fullmatch(a)), None)
    return found


# ---------------------------------------------------------------------------------------
# Boundaries and protected processes
# ---------------------------------------------------------------------------------------


def is_boundary_name(program: str) -> bool:
    return (
        program in cat.BOUNDARIES
        or cat.shell_for(program) is not None
        or program.startswith(cat.BOUNDARY_PREFIXES)
        or program.endswith(cat.BOUNDARY_SUFFIXES)
    )


def program_name(proc: ProcessInfo) -> str:
    """argv0's stem; comm only when the cmdline is hidden (kernel threads, other users on macOS)."""
    argv = normalise_argv(proc.cmdline)
    if argv:
        return stem(argv[0])
    return stem(proc.name or "")


def is_protected(proc: ProcessInfo) -> bool:
    """True for processes portinspect must never treat as an app or signal.

    pid 0 and 1; init systems, sshd, dockerd/containerd and their shims; Linux kernel
    threads; Windows "System" (pid 4, owner of http.sys ports) and session services.
    Shells and terminals are not protected (a server may run as `bash -c ...`): they
    only end the app-root walk. docker-proxy is not protected either; see
    managers.container_proxy().
    """
    if proc.pid in (0, 1):
        return True
    name = program_name(proc)
    if cat.PROTECTED_PIDS.get(proc.pid) == name:
        return True
    # Kernel threads are kthreadd (pid 2) and its children; they have no cmdline. In a
    # pid namespace pid 2 can be an ordinary process with one.
    if (proc.pid == 2 or proc.ppid == 2) and not normalise_argv(proc.cmdline):
        return True
    return name in cat.PROTECTED or name.startswith(cat.PROTECTED_PREFIXES)


def is_boundary(proc: ProcessInfo) -> bool:
    """True where the app-root walk stops: shells without -c, terminals, IDEs, init, sshd..."""
    return is_protected(proc) or describe(proc).kind == KIND_BOUNDARY


def same_command(parent: ProcessInfo, child: ProcessInfo) -> bool:
    """Same cmdline modulo argv0: a fork (gunicorn workers without setproctitle, node cluster
    workers) or a re-run of the same command (Django's and werkzeug's reloaders)."""
    return same_tail(parent.cmdline, child.cmdline)
