"""The command line: parse -> call the library -> render -> exit code. The only module that prints.

Every command goes through `_run`, which owns the contract shared by all of them:
with --json exactly one JSON document on stdout (also on failure), warnings and
errors on stderr, one line per error, and the exit codes of errors.ExitStatus.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from portinspect import __version__, _interrupts, _typer_lean, api, render, waiter
from portinspect.errors import (
    ExitStatus,
    NotListeningError,
    PermissionDeniedError,
    PortInspectError,
    WaitTimeoutError,
)
from portinspect.inputs import (
    parse_port,
    parse_port_spec,
    parse_seconds,
    parse_targets,
)
from portinspect.models import TargetReport
from portinspect.waiter import DEFAULT_INTERVAL, DEFAULT_TIMEOUT, MIN_INTERVAL

# click is vendored by recent typer and external in older ones; reach its exception
# classes through typer's public BadParameter so both work.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = _ClickUsageError.__mro__[1]


def _hidden_owners_warning(privileged: bool) -> str:
    if privileged:
        # Root sees every process in its pid namespace; what is left is a kernel
        # socket (nfsd...) or a process in another container's namespace.
        return "some sockets have no visible owner (kernel, or another pid namespace)"
    return "some sockets belong to other users and their processes are hidden; run with sudo"


@dataclass
class Outcome:
    """What a command produced, before it is printed."""

    status: ExitStatus | int  # int: `run` exits with its test command's status
    payload: dict[str, Any]
    human: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # stderr lines even with --quiet (--explain)
    # Run when the result never reached the reader (Ctrl-C or a closed stdout while it was
    # printed): `free` gives back the leases of ports nobody was told about.
    undo: Callable[[], None] | None = None


@dataclass
class Output:
    as_json: bool = False
    quiet: bool = False
    debug: bool = False


def _say(text: str) -> None:
    """One line on stderr, cleaned: it may carry a path, a name or a value from outside.

    A stderr that is closed (`2>&-`: sys.stderr is None), full or whose reader went away
    (`kill 8000 2>&1 | head -1`) must not stop a command half-way: kill goes on escalating,
    and its result still goes to stdout.
    """
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(f"portinspect: {render.clean(text)}\n")
        stream.flush()


# In JSON strings these go out as \uXXXX escapes, which every parser reads back as the same
# text (JSON itself escapes only C0): DEL and the C1 controls (a terminal may take U+009B for
# CSI), bidi controls, Unicode line separators, and lone surrogates (the bytes of a command
# line that is not UTF-8, which would make the document invalid UTF-8 or stop the write).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # JSON spells these as a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _write(text: str, *, as_json: bool) -> None:
    """One write to stdout that a hostile process title cannot break or turn into escapes.

    Raises OSError when stdout cannot take it: EBADF when it was closed before we started
    (`>&-`), ENOSPC (`>/dev/full`), EPIPE (BrokenPipeError) when its reader went away.
    """
    if sys.stdout is None:
        raise OSError(errno.EBADF, "it is closed")
    if as_json and (not text.isascii() or "\x7f" in text):
        text = _JSON_UNSAFE.sub(_json_escape, text)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        data = f"{text}\n".encode(encoding, getattr(sys.stdout, "errors", None) or "strict")
    except UnicodeEncodeError:  # stdout is not UTF-8 (LANG=en_US.ISO-8859-1...)
        if as_json:
            text = _NON_ASCII.sub(_json_escape, text)
        data = f"{text}\n".encode(encoding, "backslashreplace")
    sys.stdout.flush()  # whatever was written through the text layer goes first
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(data.decode(encoding))
        sys.stdout.flush()
        return
    # With PYTHONUNBUFFERED (common in containers) sys.stdout writes through to the raw
    # file, and a short write() is dropped without a word: a reader that goes away mid-way
    # (`| head -1`) would get exit 0 and a truncated document. So: every byte, or EPIPE.
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking stdout that is full
            time.sleep(0.001)
            continue
        view = view[written:]
    out.flush()


def _emit(command: str, out: Output, outcome: Outcome) -> int:
    for note in outcome.notes:
        _say(note)
    if not out.quiet:
        for warning in outcome.warnings:
            _say(f"warning: {warning}")
    if outcome.error is not None:
        _say(outcome.error)
    if out.as_json:
        error = {"message": outcome.error} if outcome.error is not None else None
        doc = render.envelope(
            command,
            int(outcome.status),
            outcome.payload,
            error=error,
            warnings=outcome.warnings,
        )
        _write(doc, as_json=True)
    elif outcome.human:
        _write(outcome.human, as_json=False)
    return int(outcome.status)


def _unexpected(exc: BaseException, debug: bool) -> str:
    if debug:
        import traceback  # here: 2.5 ms of imports that only --debug needs

        traceback.print_exception(exc)
    message = render.clean(" ".join(str(exc).split()), 400) or type(exc).__name__
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"unexpected error: {message}{hint}"


def _run(command: str, out: Output, body: Callable[[], Outcome]) -> int:
    """Run one command's body under the shared error and output contract."""
    try:
        outcome = body()
    except PortInspectError as exc:
        outcome = Outcome(exc.exit_status, {}, error=str(exc))
    except KeyboardInterrupt:
        outcome = Outcome(ExitStatus.INTERRUPTED, {}, error="interrupted")
    except Exception as exc:
        outcome = Outcome(ExitStatus.ERROR, {}, error=_unexpected(exc, out.debug))
    try:
        return _emit(command, out, outcome)
    except BaseException as exc:
        if outcome.undo is not None:
            with _interrupts.held():
                outcome.undo()
        if isinstance(exc, KeyboardInterrupt):
            # Part of the output may be out already: no second JSON document after it.
            _say("interrupted")
            return ExitStatus.INTERRUPTED
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            return _unwritten(outcome.status, exc)
        raise  # EPIPE: the entry point ends the process as SIGPIPE would


def _unwritten(status: ExitStatus | int, exc: OSError) -> int:
    """stdout closed, full or failing: the work is done (kill finished, free gave its leases
    back), the result is lost. Say so; a failure the command already had keeps its code,
    a success becomes exit 1, as `ls` and `rm -v` do when they cannot write."""
    reason = exc.strerror or str(exc)
    _say(f"cannot write the result to stdout: {reason.lower()}")
    return int(status) if status != ExitStatus.OK else int(ExitStatus.ERROR)


class _Interrupted(Exception):
    """Ctrl-C outside a command's body, carried past typer (which would exit 130 silently)."""


class _StdoutClosed(Exception):
    """stdout's reader went away, carried past typer (which would exit 1)."""


@contextlib.contextmanager
def _past_typer() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt as exc:
        raise _Interrupted from exc
    except BrokenPipeError as exc:
        raise _StdoutClosed from exc


class _OneLineErrors(_typer_lean.LeanParams, TyperGroup):
    """Every failure outside a command's body (parsing, option callbacks, typer itself) as
    one line on stderr, and with --json one JSON document on stdout; usage errors exit 2.
    The command's return value is the exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _past_typer():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _past_typer():
            return super().invoke(ctx)

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        given = kwargs.get("args", args[0] if args else None)
        argv = [str(a) for a in (sys.argv[1:] if given is None else given)]
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except _ClickUsageError as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            code = self._fail(argv, ExitStatus.USAGE, f"{message} (see --help)")
        except _ClickException as exc:
            status = getattr(exc, "exit_code", ExitStatus.ERROR)
            code = self._fail(argv, status, str(exc))
        except PortInspectError as exc:
            code = self._fail(argv, exc.exit_status, str(exc))
        except (_Interrupted, typer.Abort, KeyboardInterrupt, EOFError):
            code = self._fail(argv, ExitStatus.INTERRUPTED, "interrupted")
        except _StdoutClosed as exc:
            raise BrokenPipeError from exc  # for the entry point
        except Exception as exc:
            debug = _state.debug or "--debug" in argv or _debug_from_env()
            code = self._fail(argv, ExitStatus.ERROR, _unexpected(exc, debug))
        sys.exit(code if isinstance(code, int) else 0)

    def _fail(self, argv: Sequence[str], status: int, message: str) -> int:
        text = render.clean(" ".join(message.split()))
        _say(text)
        if "--json" in argv:
            command = next((a for a in argv if a in self.commands), None)
            doc = render.envelope(command or "", status, {}, error={"message": text}, warnings=[])
            with contextlib.suppress(OSError):
                _write(doc, as_json=True)
        return status


app = typer.Typer(
    cls=_OneLineErrors,
    name="portinspect",
    help="What is on a port, and how do I get it back? List, diagnose, free, kill, wait, audit.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = Output()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No warnings on stderr.")]


def _version(value: bool) -> None:
    if value:
        try:
            _write(f"portinspect {__version__}", as_json=False)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise typer.Exit(_unwritten(ExitStatus.OK, exc)) from None
        raise typer.Exit(0)


def _debug_from_env() -> bool:
    return os.environ.get("PORTINSPECT_DEBUG", "") not in ("", "0")


@app.callback()
def _global(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    _state.debug = debug or _debug_from_env()
    from portinspect.scanner import check_backend

    check_backend()


def _output(as_json: bool, quiet: bool) -> Output:
    return Output(as_json=as_json, quiet=quiet, debug=_state.debug)


@app.command("list", cls=_typer_lean.LeanCommand)
def list_command(
    port: Annotated[
        str | None,
        typer.Option("--port", "-p", help="Only these ports: 8000, 8000-8010, 8000,8080."),
    ] = None,
    proto: Annotated[str | None, typer.Option("--proto", help="tcp or udp.")] = None,
    exposed: Annotated[
        bool, typer.Option("--exposed", help="Only sockets reachable beyond loopback.")
    ] = False,
    risk: Annotated[
        bool, typer.Option("--risk", help="Add the audit's level for each port (RISK column).")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Every listening TCP socket and bound UDP socket with its owner and framework."""

    def body() -> Outcome:
        ports = parse_port_spec(port) if port is not None else None
        result = api.scan_result(ports, proto)
        listeners = [li for li in result.listeners if li.exposed or not exposed]
        risks = _risks(result) if risk else None
        warnings = [_hidden_owners_warning(result.privileged)] if result.owners_hidden else []
        status = ExitStatus.OK
        error = None
        if port is not None and not listeners:
            shown = ",".join(part.strip(" \t") for part in port.split(","))  # parsed: digits, -
            status, error = ExitStatus.NOT_LISTENING, f"nothing is listening on port {shown}"
        # Only the output asked for: the table costs 140 ms at 5000 listeners (+50 ms to import
        # tabulate), the JSON dicts 17 ms.
        rows = [li.to_dict() for li in listeners] if as_json else []
        if risks is not None:
            rows = [{**row, "risk": risks.get((row["proto"], row["port"]))} for row in rows]
        return Outcome(
            status,
            {"listeners": rows} if as_json else {},
            human=render.list_table(listeners, risks) if error is None and not as_json else "",
            warnings=warnings,
            error=error,
        )

    return _run("list", _output(as_json, quiet), body)


def _risks(result: api.ScanResult) -> dict[tuple[str, int], str]:
    """(proto, port) -> the audit's worst level there (`list --risk`), from the same scan."""
    from portinspect import audit

    report = api.run_audit(include_loopback=True, scanned=result)
    return {key: level.value for key, level in audit.worst_by_port(report.findings).items()}


@app.command("who", cls=_typer_lean.LeanCommand)
def who_command(
    port: Annotated[str, typer.Argument(help="The port to diagnose.")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Who holds PORT: every holder, the app tree, framework, cwd, uptime, how to stop it."""

    def body() -> Outcome:
        number = parse_port(port)
        view = api.port_view(number)
        listeners = view.listeners
        if not listeners:
            raise NotListeningError(f"nothing is listening on port {number}", port=number)
        udp_only = all(li.proto.value == "udp" for li in listeners)
        # The audit's verdict for this port: exposure, tunnels, containers (loopback included).
        scanned = api.ScanResult(
            list(listeners), view.snapshot.owners_hidden, view.snapshot.privileged
        )
        findings = api.run_audit(number, include_loopback=True, scanned=scanned).findings
        payload = {
            "port": number,
            "listeners": [li.to_dict() for li in listeners],
            "apps": [render.app_json(app) for app in view.apps],
            "stop": f"portinspect kill {'--udp ' if udp_only else ''}{number}",
            "audit": [f.to_dict() for f in findings],
        }
        human = render.who_report(view)
        verdict = render.audit_verdict(findings)
        if verdict:
            human += "\n\n" + "\n".join(verdict)
        outcome = Outcome(ExitStatus.OK, payload, human=human)
        if all(li.owner_hidden for li in listeners):
            user = render.clean(listeners[0].user) or "another user"
            if view.snapshot.privileged:
                # Root sees every process of its pid namespace: the owner lives elsewhere.
                message = (
                    f"port {number} belongs to {user} in another pid namespace or the kernel; "
                    "its process is not visible from here"
                )
            else:
                message = f"port {number} belongs to {user}; run with sudo to see its process"
            hidden = PermissionDeniedError(message, port=number)
            outcome.status, outcome.error = hidden.exit_status, str(hidden)
        return outcome

    return _run("who", _output(as_json, quiet), body)


_WAIT_COMMAND = "portinspect.wait.command"


class _WaitCommand(_typer_lean.LeanCommand):
    """`wait TARGET... [-- COMMAND...]`: what follows the first `--` is the command to run;
    click would take it for more targets."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[_WAIT_COMMAND] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND...]"]


@app.command("wait", cls=_WaitCommand)
def wait_command(
    ctx: typer.Context,
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="TARGET",
            show_default=False,
            help="PORT (or 9000-9002), HOST:PORT, [IPV6]:PORT, tcp://HOST:PORT,"
            " http(s)://HOST[:PORT]/PATH.",
        ),
    ],
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            "-t",
            metavar="SECONDS",
            help=f"Give up after SECONDS (exit 124); default {DEFAULT_TIMEOUT:g}, 0 checks once.",
        ),
    ] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Wait without a time limit.")] = False,
    free: Annotated[
        bool, typer.Option("--free", help="Wait until nothing listens instead.")
    ] = False,
    interval: Annotated[
        str, typer.Option("--interval", metavar="SECONDS", help="Seconds between polls.")
    ] = f"{DEFAULT_INTERVAL:g}",
    proto: Annotated[str | None, typer.Option("--proto", help="tcp (the default) or udp.")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Wait until every TARGET is ready (or, with --free, has no listener); then run
    `-- COMMAND...` if given, and exit with its status."""
    command: list[str] | None = ctx.meta.get(_WAIT_COMMAND)
    done: list[str] = []  # the ready line, for stderr when a command takes stdout over

    def body() -> Outcome:
        from portinspect.errors import UsageError

        # Every argument is checked before the "waiting" line: bad input is one line.
        if forever and timeout is not None:
            raise UsageError("--forever and --timeout exclude each other")
        given = f"{DEFAULT_TIMEOUT:g}" if timeout is None else timeout
        seconds = None if forever else parse_seconds(given, "--timeout")
        pause = parse_seconds(interval, "--interval", minimum=MIN_INTERVAL)
        if command is not None and not command:
            raise UsageError("nothing to run after --")
        if command is not None and as_json:
            raise UsageError("--json cannot go with -- COMMAND: the command writes to stdout")
        wanted = waiter.validate(parse_targets(targets), free=free, proto=proto)
        if not quiet:
            _say(render.wait_start(wanted, seconds, free=free))

        def progress(report: TargetReport) -> None:
            line = render.wait_progress(report)
            if line is not None:
                _say(line)

        try:
            result = waiter.wait_for(
                wanted,
                free=free,
                timeout=seconds,
                interval=pause,
                proto=proto,
                on_update=None if quiet else progress,
            )
        except WaitTimeoutError as exc:
            payload = exc.result.to_dict() if exc.result is not None else {}
            return Outcome(exc.exit_status, payload, error=str(exc))
        human = "" if quiet else render.wait_done(result)
        if command is not None:
            done.append(human)
            human = ""
        return Outcome(ExitStatus.OK, result.to_dict(), human=human)

    status = _run("wait", _output(as_json, quiet), body)
    if status != ExitStatus.OK or command is None:
        return status
    for line in filter(None, done):
        _say(line)
    return _run_command(command)


def _run_command(argv: list[str]) -> int:
    """Become the command, as wait-for-it's `exec "$@"`: its exit status and the signals sent
    to it are its own, and no process of ours stays in between. No shell: argv as given."""
    import signal

    with contextlib.suppress(OSError, ValueError, AttributeError):  # None: closed at start
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    if sys.platform == "win32":  # exec there starts a new process and ends this one early
        import subprocess

        return subprocess.call(argv)
    # Python ignores these for itself; a program run from a shell expects the defaults
    # (`yes | head -1` must end by SIGPIPE, not loop on EPIPE).
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    from portinspect import _entry

    _entry.reclose_std_fds()  # the command gets its streams as the user left them
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (no shell on purpose: argv as the user gave it)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        status = ExitStatus.COMMAND_NOT_FOUND if missing else ExitStatus.CANNOT_RUN
        reason = "command not found" if missing else (exc.strerror or str(exc))
        _say(f"cannot run {render.clean(argv[0], 200)!r}: {reason}")
        return status
    raise AssertionError("unreachable: execvp returned")  # pragma: no cover


@app.command("free", cls=_typer_lean.LeanCommand)
def free_command(
    near: Annotated[
        str | None,
        typer.Option(
            "--near",
            "-n",
            metavar="PORT",
            help="Preferred port, tried first (default: low end of --range, else 15000).",
        ),
    ] = None,
    count: Annotated[
        str, typer.Option("--count", "-c", metavar="N", help="How many ports, 1-1000.")
    ] = "1",
    port_range: Annotated[
        str | None, typer.Option("--range", "-r", metavar="A-B", help="Search only A-B.")
    ] = None,
    udp: Annotated[bool, typer.Option("--udp", help="UDP must be free too (TCP and UDP).")] = False,
    udp_only: Annotated[bool, typer.Option("--udp-only", help="Check UDP instead of TCP.")] = False,
    allow_ephemeral: Annotated[
        bool, typer.Option("--allow-ephemeral", help="Also offer the OS ephemeral range.")
    ] = False,
    allow_privileged: Annotated[
        bool, typer.Option("--allow-privileged", help="Also offer ports below 1024.")
    ] = False,
    allow_unsafe: Annotated[
        bool, typer.Option("--allow-unsafe", help="Also offer ports browsers refuse to load.")
    ] = False,
    no_lease: Annotated[
        bool, typer.Option("--no-lease", help="Do not reserve the ports from other callers.")
    ] = False,
    lease_seconds: Annotated[
        str, typer.Option("--lease-seconds", metavar="S", help="Reserved this long or until bound.")
    ] = "30",
    explain: Annotated[
        bool, typer.Option("--explain", help="Say on stderr why each skipped port was skipped.")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Print the nearest free port(s), one per line; parallel callers get different ones."""
    from portinspect import freeport
    from portinspect.errors import UsageError
    from portinspect.inputs import parse_range

    def body() -> Outcome:
        if udp and udp_only:
            raise UsageError("--udp (TCP and UDP) and --udp-only (UDP alone) exclude each other")
        seconds = freeport.parse_seconds(lease_seconds)
        skips: list[freeport.Skip] = []
        # A lease directory taken by another user, or a stuck lock: the library warns, the
        # CLI says it the way it says every warning.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", freeport.LeaseDirWarning)
            outcome = search(seconds, skips)
        outcome.warnings += [str(w.message) for w in caught]
        return outcome

    def search(seconds: float, skips: list[freeport.Skip]) -> Outcome:
        try:
            ports = freeport.find_free_ports(
                parse_port(near, what="--near") if near is not None else None,
                freeport.parse_count(count),
                port_range=None if port_range is None else parse_range(port_range, what="--range"),
                tcp=not udp_only,
                udp=udp or udp_only,
                allow_ephemeral=allow_ephemeral,
                allow_privileged=allow_privileged,
                allow_unsafe=allow_unsafe,
                lease=not no_lease,
                lease_seconds=seconds,
                explain=skips.append if explain else None,
            )
        except PortInspectError as exc:  # find_free_ports kept no lease
            return Outcome(exc.exit_status, {}, error=str(exc), notes=freeport.explain_lines(skips))
        # The ports are leased: until they are printed, a failure gives them back.
        give_back = None if no_lease else functools.partial(_give_back, ports)
        try:
            lease = None if no_lease else seconds
            payload: dict[str, Any] = {"ports": ports, "lease_seconds": lease}
            if explain:
                payload["skipped"] = [skip.to_dict() for skip in skips]
            notes = freeport.explain_lines(skips)
        except BaseException:
            if give_back is not None:
                with _interrupts.held():
                    give_back()
            raise
        human = "\n".join(map(str, ports))
        return Outcome(ExitStatus.OK, payload, human=human, notes=notes, undo=give_back)

    return _run("free", _output(as_json, quiet), body)


def _give_back(ports: Sequence[int]) -> None:
    from portinspect import freeport

    with warnings.catch_warnings():  # said once already, by the search
        warnings.simplefilter("ignore", freeport.LeaseDirWarning)
        freeport.release_leases(ports)


@app.command("audit", cls=_typer_lean.LeanCommand)
def audit_command(
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            metavar="LEVEL",
            help="Exit 9 when a finding is at or above LEVEL: critical, high, medium, info.",
        ),
    ] = "high",
    probe: Annotated[
        bool,
        typer.Option("--probe", help="Settle unknowns with one HTTP request over loopback."),
    ] = False,
    include_loopback: Annotated[
        bool, typer.Option("--all", help="Also list loopback-only services (info).")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """What others can reach on this machine, how dangerous it is, and how to close it."""
    from portinspect import audit
    from portinspect.dangers import parse_level

    def body() -> Outcome:
        level = parse_level(fail_on)
        report = api.run_audit(probe=probe, include_loopback=include_loopback)
        failing = audit.at_or_above(report.findings, level)
        payload: dict[str, Any] = {}
        if as_json:
            payload = {
                "findings": [f.to_dict() for f in report.findings],
                "fail_on": level.value,
                "counts": audit.counts(report.findings),
                "probed": report.probed,
                "interfaces": [a.to_dict() for a in report.interfaces],
                "tunnels": [t.to_dict() for t in report.tunnels],
            }
        human = render.audit_report(
            report.findings, level, failing=len(failing), include_loopback=include_loopback
        )
        error = None
        if failing:
            noun = "finding" if len(failing) == 1 else "findings"
            error = f"{len(failing)} {noun} at or above --fail-on {level.value}"
        return Outcome(
            ExitStatus.FINDINGS if failing else ExitStatus.OK,
            payload,
            human=human,
            warnings=[_hidden_owners_warning(report.privileged)] if report.owners_hidden else [],
            error=error,
        )

    return _run("audit", _output(as_json, quiet), body)


def _kill_requests(specs: Sequence[str]) -> list[tuple[int, int]]:
    """Each port or range as typed (8000 8000-8010 8000,8080): a range is one request."""
    from portinspect.inputs import parse_range

    requests: list[tuple[int, int]] = []
    for spec in specs:
        parse_port_spec(spec)  # its one-line errors for "", "80x", "9-1"
        requests += [parse_range(part, what="port") for part in spec.split(",")]
    return requests


def _interactive() -> bool:
    # None: the stream was closed before we started (`2>&-`); no terminal to ask on then.
    stdin, stderr = sys.stdin, sys.stderr
    return stdin is not None and stderr is not None and stdin.isatty() and stderr.isatty()


@app.command("kill", cls=_typer_lean.LeanCommand)
def kill_command(
    ports: Annotated[list[str], typer.Argument(help="Ports or ranges: 8000 8000-8010 8000,8080.")],
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout",
            "-t",
            metavar="SECONDS",
            help="Seconds of graceful exit before SIGKILL.",
        ),
    ] = "5",  # kill.DEFAULT_TIMEOUT (tests check they agree)
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Act without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan, signal nothing.")
    ] = False,
    signal_name: Annotated[
        str | None, typer.Option("--signal", "-s", help="Graceful signal instead of TERM.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="SIGKILL the whole app tree at once, top first.")
    ] = False,
    udp: Annotated[
        bool, typer.Option("--udp", help="Bound UDP sockets on the port count too.")
    ] = False,
    all_ports: Annotated[
        bool,
        typer.Option(
            "--all-ports",
            help="Also free other ports the same processes serve (gunicorn -b A -b B).",
        ),
    ] = False,
    watch: Annotated[
        str,
        typer.Option(
            "--watch", metavar="SECONDS", help="Watch a freed port this long for a respawn."
        ),
    ] = "2",  # kill.WATCH_SECONDS (tests check they agree)
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Free PORT: stop the app serving it (its top first), escalating; verify nothing listens."""
    from portinspect import _psutil, kill
    from portinspect.errors import UsageError
    from portinspect.inputs import parse_signal
    from portinspect.models import KillPlan

    def body() -> Outcome:
        requests = _kill_requests(ports)
        if force and signal_name is not None:
            raise UsageError("--force sends SIGKILL; it cannot be combined with --signal")
        signum = parse_signal("TERM" if signal_name is None else signal_name)
        seconds = parse_seconds(timeout, "--timeout")
        watching = parse_seconds(watch, "--watch")
        how = render.describe_ladder(seconds, signum, force=force, windows=not _psutil.CAN_SIGNAL)

        def ask(plan: KillPlan) -> bool:
            sys.stderr.write(render.kill_plan(plan, how) + "\n")
            try:
                return typer.confirm(f"Stop them to free port {plan.port}?", err=True)
            except typer.Abort:
                raise KeyboardInterrupt from None

        interrupted: kill.KillInterrupted | None = None
        try:
            outcomes = kill.kill_port(
                {port for low, high in requests for port in range(low, high + 1)},
                timeout=seconds,
                signal=signum,
                force=force,
                dry_run=dry_run,
                confirm=None if yes or dry_run or not _interactive() else ask,
                on_step=None if quiet else lambda port, step: _say(render.kill_step(port, step)),
                udp=udp,
                all_ports=all_ports,
                watch=watching,
            )
        except kill.KillInterrupted as exc:  # Ctrl-C: say what was sent, then stop
            interrupted, outcomes = exc, list(exc.outcomes)
        result = kill.report(outcomes, requests)
        lines = [
            render.kill_plan(o.plan, how) if dry_run else render.kill_outcome(o)
            for o in result.outcomes
        ]
        payload = {"ports": [render.kill_json(o) for o in result.outcomes], "dry_run": dry_run}
        if interrupted is not None:
            stopped = render.interrupted_message(interrupted.outcomes, interrupted.pending)
            return Outcome(ExitStatus.INTERRUPTED, payload, human="\n".join(lines), error=stopped)
        error = render.kill_error(result.status, result.failed, result.empty)
        return Outcome(result.status, payload, human="\n".join(lines), error=error)

    return _run("kill", _output(as_json, quiet), body)


@app.command(
    "run",
    cls=_typer_lean.LeanCommand,
    # Everything after the first word of the test command is the test command's: `run
    # --server X pytest -x` passes -x to pytest (as does `-- pytest -x`).
    context_settings={"allow_interspersed_args": False},
)
def run_command(
    tests: Annotated[
        list[str] | None,
        typer.Argument(metavar="TEST", help="The test command and its arguments, after --."),
    ] = None,
    servers: Annotated[
        list[str] | None,
        typer.Option(
            "--server", metavar="[NAME=]COMMAND", help="A server to start; {port} is its port."
        ),
    ] = None,
    near: Annotated[
        list[str] | None,
        typer.Option("--near", metavar="[NAME:]PORT", help="Lease the free port nearest this."),
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option("--port", metavar="[NAME:]PORT", help="A fixed port instead of a lease."),
    ] = None,
    http: Annotated[
        list[str] | None,
        typer.Option("--http", metavar="[NAME:]PATH", help="Ready once GET PATH answers < 500."),
    ] = None,
    wait_timeout: Annotated[
        str,
        typer.Option(
            "--wait-timeout", metavar="SECONDS", help="Give up on a server not ready (exit 124)."
        ),
    ] = "30",  # runner.DEFAULT_WAIT_TIMEOUT
    stop_timeout: Annotated[
        str,
        typer.Option("--stop-timeout", metavar="SECONDS", help="Graceful stop before SIGKILL."),
    ] = "5",  # runner.DEFAULT_STOP_TIMEOUT
    reclaim: Annotated[
        bool, typer.Option("--reclaim", help="Stop whatever holds a fixed --port first.")
    ] = False,
    shell: Annotated[
        bool, typer.Option("--shell", help="Run the commands through /bin/sh -c.")
    ] = False,
    log_dir: Annotated[
        str | None,
        typer.Option("--log-dir", metavar="DIR", help="Server output to DIR/NAME.log."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Start servers on free ports, wait until ready, run the tests, stop it all, verify."""
    from portinspect import runner

    def body() -> Outcome:
        specs = runner.parse_servers(
            servers or [], ports=port or [], near=near or [], http=http or []
        )
        progress = None if quiet else lambda event: _say(render.run_event(event))
        result = runner.run(
            specs,
            tests or None,
            wait_timeout=parse_seconds(wait_timeout, "--wait-timeout"),
            stop_timeout=parse_seconds(stop_timeout, "--stop-timeout"),
            reclaim=reclaim,
            shell=shell,
            log_dir=log_dir,
            on_line=None if log_dir is not None else _server_line,
            on_event=progress,
            # stdout holds the one JSON document: the tests' own output goes to stderr.
            test_stdout=2 if as_json else None,
        )
        notes = render.run_teardown(result.teardown)
        if log_dir is not None and result.failed is not None:  # its output was not on stderr
            failed = next(s for s in result.servers if s.name == result.failed)
            notes += render.server_tail(failed, Path(log_dir) / f"{failed.name}.log")
        error = None if result.exit_status == 0 else render.clean(result.message)
        return Outcome(result.exit_status, result.to_dict(), error=error, notes=notes)

    return _run("run", _output(as_json, quiet), body)


def _server_line(name: str, line: str) -> None:
    _say_raw(render.server_line(name, line))


def _say_raw(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{text}\n")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    app(args=list(argv) if argv is not None else None, prog_name="portinspect")
    sys.exit(0)  # pragma: no cover - the group's main always exits
