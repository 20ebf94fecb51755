"""The command line: parse -> call the library -> render -> exit code. The only module that
prints, through _output.py (`writer`: the one writer it shares with the console-script boundary).

Each command is a body that returns an Outcome; `_run` owns the contract they share: with
--json exactly one JSON document on stdout (also on failure), warnings and errors on stderr,
one line per error, the exit codes of errors.ExitStatus; on a terminal, text fitted to its
width and coloured (unless --wide, --no-color, NO_COLOR). No state lives in this module: the
global options travel in typer's context object.

Start-up is part of the interface (benchmarks/bench_startup.py): nothing is imported here
that every command does not need, and main() builds only the command it runs.
"""

# No `from __future__ import annotations` here: typer reads every parameter's annotation
# through typing.get_type_hints, which takes evaluated annotations as they are and evals each
# string one (PEP 563), a compile per parameter (benchmarks/RESULTS.md, start-up).
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn

import typer

from portinspect import __version__, _interrupts
from portinspect import _output as writer
from portinspect._typer_app import (
    Command,
    completion,
    debug_from_env,
    settings,
    unexpected,
)
from portinspect._typer_app import OneLineErrors as _OneLineErrors  # noqa: F401 (its old name)
from portinspect.errors import ExitStatus, PortInspectError, UsageError

if TYPE_CHECKING:
    from portinspect.models import KillPlan, TargetReport
    from portinspect.render.common import Screen


# --- what a command produced, and how it is written ---------------------------------------


class Globals(NamedTuple):
    """The options given before the command: typer's context object (ctx.obj)."""

    debug: bool = False


# NamedTuples, not dataclasses: a dataclass costs a millisecond to build at import, and
# start-up is part of the interface (every command pays for these).
class Output(NamedTuple):
    """How a command's result is to be written: the shared options of every command."""

    as_json: bool = False
    quiet: bool = False
    debug: bool = False
    wide: bool = False
    no_color: bool = False

    def screen(self, stream: Any) -> "Screen":
        return writer.screen(stream, wide=self.wide, no_color=self.no_color)

    @property
    def stdout(self) -> "Screen":
        return self.screen(sys.stdout)

    def say(self, line: str | None) -> None:
        """A progress line on stderr, unless --quiet."""
        if line is not None and not self.quiet:
            writer.say(line)


class Outcome(NamedTuple):
    """What a command produced, before it is written."""

    status: int  # an ExitStatus; `run` exits with its test command's status, any int
    payload: dict[str, Any] = {}  # noqa: RUF012 (never mutated: each Outcome gets its own)
    human: str = ""
    warnings: Sequence[str] = ()
    error: str | None = None
    notes: Sequence[str] = ()  # stderr lines even with --quiet (--explain)
    # Run when the result never reached the reader (Ctrl-C or a closed stdout while it was
    # written): `free` gives back the leases of ports nobody was told about.
    undo: Callable[[], None] | None = None


def _emit(command: str, out: Output, outcome: Outcome) -> int:
    for note in outcome.notes:
        writer.say(note)
    if not out.quiet:
        for warning in outcome.warnings:
            writer.say(f"warning: {warning}")
    if outcome.error is not None:
        writer.say(outcome.error)
    if out.as_json:
        error = {"message": outcome.error} if outcome.error is not None else None
        doc = writer.envelope(
            command, int(outcome.status), outcome.payload, error=error, warnings=outcome.warnings
        )
        writer.write(doc, as_json=True)
    elif outcome.human:
        writer.write(outcome.human, as_json=False)
    return int(outcome.status)


def _run(command: str, out: Output, body: Callable[[], Outcome]) -> int:
    """Run one command's body under the shared error and output contract."""
    try:
        outcome = body()
    except PortInspectError as exc:
        outcome = Outcome(exc.exit_status, error=str(exc))
    except KeyboardInterrupt:
        outcome = Outcome(ExitStatus.INTERRUPTED, error="interrupted")
    except Exception as exc:
        outcome = Outcome(ExitStatus.ERROR, error=unexpected(exc, out.debug))
    try:
        return _emit(command, out, outcome)
    except BaseException as exc:
        if outcome.undo is not None:
            with _interrupts.held():
                outcome.undo()
        if isinstance(exc, KeyboardInterrupt):
            # Part of the output may be out already: no second JSON document after it.
            writer.say("interrupted")
            return ExitStatus.INTERRUPTED
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            return writer.unwritten(outcome.status, exc)
        raise  # EPIPE: the entry point ends the process as SIGPIPE would


def _hidden_owners_warning(privileged: bool) -> str:
    if privileged:
        # Root sees every process in its pid namespace; what is left is a kernel
        # socket (nfsd...) or a process in another container's namespace.
        return "some sockets have no visible owner (kernel, or another pid namespace)"
    return "some sockets belong to other users and their processes are hidden; run with sudo"


app = typer.Typer(**settings())

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No warnings on stderr.")]
WideOpt = Annotated[
    bool, typer.Option("--wide", "-w", help="Whole lines, whatever the terminal's width.")
]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No colours (also NO_COLOR=1).")]


def _output(ctx: typer.Context, as_json: bool, quiet: bool, wide: bool, no_color: bool) -> Output:
    globals_ = ctx.obj if isinstance(ctx.obj, Globals) else Globals(debug_from_env())
    return Output(as_json, quiet, globals_.debug, wide, no_color)


def _version(value: bool) -> None:
    if value:
        try:
            writer.write(f"portinspect {__version__}")
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise typer.Exit(writer.unwritten(ExitStatus.OK, exc)) from None
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    install_completion: Annotated[
        bool,
        typer.Option(
            "--install-completion",
            help="[SHELL]: install shell completion (bash, zsh, fish, powershell; "
            "default: this shell).",
        ),
    ] = False,
    show_completion: Annotated[
        bool,
        typer.Option("--show-completion", help="[SHELL]: print the completion script."),
    ] = False,
) -> None:
    # The completion options are answered before typer parses (_before_typer): declared
    # here for --help, and as a fallback that detects the shell.
    if install_completion or show_completion:
        option = "--install-completion" if install_completion else "--show-completion"
        raise typer.Exit(completion(option, None))
    ctx.obj = Globals(debug=debug or debug_from_env())
    from portinspect.scanner import check_backend

    check_backend()


# --- the commands ---------------------------------------------------------------------------


@app.command(
    "list", cls=Command, short_help="every listening socket: port, address, owner, program"
)
def list_command(
    ctx: typer.Context,
    port: Annotated[
        str | None,
        typer.Option(
            "--port", "-p", metavar="SPEC", help="Only these ports: 8000, 8000-8010, 8000,8080."
        ),
    ] = None,
    proto: Annotated[
        str | None, typer.Option("--proto", metavar="tcp|udp", help="One protocol.")
    ] = None,
    exposed: Annotated[
        bool, typer.Option("--exposed", help="Only sockets reachable beyond loopback.")
    ] = False,
    risk: Annotated[
        bool, typer.Option("--risk", help="Add the audit's level for each port (RISK column).")
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Every listening TCP socket and bound UDP socket, with its owner and framework."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from portinspect import api, render
        from portinspect.inputs import parse_port_spec

        result = api.scan_result(parse_port_spec(port) if port is not None else None, proto)
        result = result.exposed() if exposed else result
        risks = api.risk_levels(result) if risk else None
        hidden = [_hidden_owners_warning(result.privileged)] if result.owners_hidden else []
        if port is not None and not result.listeners:
            shown = ",".join(part.strip(" \t") for part in port.split(","))  # parsed: digits, -
            error = f"nothing is listening on port {shown}"
            return Outcome(
                ExitStatus.NOT_LISTENING, {"listeners": []}, warnings=hidden, error=error
            )
        # Only the output asked for: the table costs 140 ms at 5000 listeners (+50 ms to import
        # tabulate), the JSON dicts 17 ms.
        if as_json:
            return Outcome(ExitStatus.OK, result.to_dict(risks), warnings=hidden)
        human = render.list_table(result.listeners, risks, out.stdout)
        return Outcome(ExitStatus.OK, human=human, warnings=hidden)

    return _run("list", out, body)


@app.command("who", cls=Command, short_help="who holds PORT, the app behind it, how to stop it")
def who_command(
    ctx: typer.Context,
    port: Annotated[str, typer.Argument(metavar="PORT", help="The port to diagnose.")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Who holds PORT: every holder, the app tree, framework, cwd, uptime, how to stop it; on
    a free port, what may still make a bind fail."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from portinspect import api, render
        from portinspect.inputs import parse_port

        report = api.who(parse_port(port))
        screen = out.stdout
        if report.state is not None:
            human = render.free_report(report.state, screen)
            error = f"nothing is listening on port {report.port}"
            return Outcome(ExitStatus.NOT_LISTENING, report.to_dict(), human, error=error)
        parts = [render.who_report(report.view, screen=screen)]
        parts += ["\n".join(render.audit_verdict(report.findings, screen))]
        human = "\n\n".join(filter(None, parts))
        if report.owners_hidden:
            error = render.hidden_owner(report.view)
            return Outcome(ExitStatus.PERMISSION, report.to_dict(), human, error=error)
        return Outcome(ExitStatus.OK, report.to_dict(), human)

    return _run("who", out, body)


_WAIT_COMMAND = "portinspect.wait.command"


class _WaitCommand(Command):
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


@app.command(
    "wait", cls=_WaitCommand, short_help="wait until ports or services are ready (or free)"
)
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
            help="Give up after SECONDS (exit 124); default 30, 0 checks once.",
        ),
    ] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Wait without a time limit.")] = False,
    free: Annotated[
        bool, typer.Option("--free", help="Wait until nothing listens instead.")
    ] = False,
    interval: Annotated[
        str, typer.Option("--interval", metavar="SECONDS", help="Seconds between polls.")
    ] = "0.1",  # waiter.DEFAULT_INTERVAL (tests check they agree)
    proto: Annotated[
        str | None, typer.Option("--proto", metavar="tcp|udp", help="tcp (the default) or udp.")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Wait until every TARGET is ready (or, with --free, has no listener); then run
    `-- COMMAND...` if given, and exit with its status."""
    out = _output(ctx, as_json, quiet, wide, no_color)
    command: list[str] | None = ctx.meta.get(_WAIT_COMMAND)
    done: list[str] = []  # the ready line, for stderr when a command takes stdout over

    def body() -> Outcome:
        from portinspect import render, waiter
        from portinspect.errors import WaitTimeoutError
        from portinspect.inputs import parse_targets

        # Every argument is checked before the "waiting" line: bad input is one line.
        seconds, pause = _wait_times(timeout, forever, interval)
        _check_command(command, as_json)
        wanted = waiter.validate(parse_targets(targets), free=free, proto=proto)
        out.say(render.wait_start(wanted, seconds, free=free))

        def progress(report: "TargetReport") -> None:
            out.say(render.wait_progress(report))

        try:
            result = waiter.wait_for(
                wanted, free=free, timeout=seconds, interval=pause, proto=proto, on_update=progress
            )
        except WaitTimeoutError as exc:
            payload = exc.result.to_dict() if exc.result is not None else {}
            return Outcome(exc.exit_status, payload, error=str(exc))
        human = "" if quiet else render.wait_done(result, out.stdout)
        if command is not None:
            done.append(human)  # stdout is the command's
            human = ""
        return Outcome(ExitStatus.OK, result.to_dict(), human)

    status = _run("wait", out, body)
    if status != ExitStatus.OK or command is None:
        return status
    for line in filter(None, done):
        writer.say(line)
    return _run_command(command)


def _wait_times(timeout: str | None, forever: bool, interval: str) -> tuple[float | None, float]:
    """(the time limit, None for --forever; the pause between polls), from what was typed."""
    from portinspect.inputs import parse_seconds
    from portinspect.waiter import DEFAULT_TIMEOUT, MIN_INTERVAL

    if forever and timeout is not None:
        raise UsageError("--forever and --timeout exclude each other")
    given = f"{DEFAULT_TIMEOUT:g}" if timeout is None else timeout
    seconds = None if forever else parse_seconds(given, "--timeout")
    return seconds, parse_seconds(interval, "--interval", minimum=MIN_INTERVAL)


def _check_command(command: list[str] | None, as_json: bool) -> None:
    if command is not None and not command:
        raise UsageError("nothing to run after --")
    if command is not None and as_json:
        raise UsageError("--json cannot go with -- COMMAND: the command writes to stdout")


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
    from portinspect import _stdfds

    _stdfds.reclose()  # the command gets its streams as the user left them
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (no shell on purpose: argv as the user gave it)
    except OSError as exc:
        from portinspect.safetext import clean

        missing = isinstance(exc, FileNotFoundError)
        status = ExitStatus.COMMAND_NOT_FOUND if missing else ExitStatus.CANNOT_RUN
        reason = "command not found" if missing else (exc.strerror or str(exc))
        writer.say(f"cannot run {clean(argv[0], 200)!r}: {reason}")
        return status
    raise AssertionError("unreachable: execvp returned")  # pragma: no cover


@app.command(
    "free", cls=Command, short_help="the nearest free port(s), leased for parallel callers"
)
def free_command(
    ctx: typer.Context,
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
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Print the nearest free port(s), one per line; parallel callers get different ones."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from portinspect import freeport
        from portinspect.errors import NoFreePortError
        from portinspect.inputs import parse_port, parse_range

        if udp and udp_only:
            raise UsageError("--udp (TCP and UDP) and --udp-only (UDP alone) exclude each other")
        options: dict[str, Any] = {
            "port_range": None if port_range is None else parse_range(port_range, what="--range"),
            "tcp": not udp_only,
            "udp": udp or udp_only,
            "allow_ephemeral": allow_ephemeral,
            "allow_privileged": allow_privileged,
            "allow_unsafe": allow_unsafe,
            "lease": not no_lease,
            "lease_seconds": freeport.parse_seconds(lease_seconds),
        }
        start = parse_port(near, what="--near") if near is not None else None
        try:
            found = freeport.reserve(start, freeport.parse_count(count), explain=explain, **options)
        except NoFreePortError as exc:  # no lease was kept
            notes = freeport.explain_lines(exc.skips)
            warned = list(exc.warnings)
            return Outcome(exc.exit_status, warnings=warned, error=str(exc), notes=notes)
        with found:  # until the Outcome exists, a failure gives the leases back
            return Outcome(
                ExitStatus.OK,
                found.to_dict(),
                human="\n".join(map(str, found.ports)),
                warnings=list(found.warnings),
                notes=freeport.explain_lines(found.skips),
                undo=found.release,
            )

    return _run("free", out, body)


@app.command(
    "audit", cls=Command, short_help="what others can reach here, how bad, how to close it"
)
def audit_command(
    ctx: typer.Context,
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
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """What others can reach on this machine, how dangerous it is, and how to close it."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from portinspect import api, audit, render
        from portinspect.dangers import parse_level

        level = parse_level(fail_on)
        report = api.run_audit(probe=probe, include_loopback=include_loopback)
        failing = audit.at_or_above(report.findings, level)
        payload = report.to_dict(level) if as_json else {}
        human = (
            ""
            if as_json
            else render.audit_report(
                report.findings,
                level,
                failing=len(failing),
                include_loopback=include_loopback,
                screen=out.stdout,
            )
        )
        hidden = [_hidden_owners_warning(report.privileged)] if report.owners_hidden else []
        if not failing:
            return Outcome(ExitStatus.OK, payload, human, hidden)
        noun = "finding" if len(failing) == 1 else "findings"
        error = f"{len(failing)} {noun} at or above --fail-on {level.value}"
        return Outcome(ExitStatus.FINDINGS, payload, human, hidden, error)

    return _run("audit", out, body)


@app.command("kill", cls=Command, short_help="free PORT: stop its app, top first, and verify")
def kill_command(
    ctx: typer.Context,
    ports: Annotated[
        list[str],
        typer.Argument(metavar="PORT", help="Ports or ranges: 8000 8000-8010 8000,8080."),
    ],
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
        str | None,
        typer.Option("--signal", "-s", metavar="NAME", help="Graceful signal instead of TERM."),
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
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Free PORT: stop the app serving it (its top first), escalating; verify nothing listens."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from portinspect import kill, render

        requests = _kill_requests(ports)
        signum, seconds, how = _ladder(timeout, signal_name, force)
        interrupted: kill.KillInterrupted | None = None
        try:
            outcomes = kill.kill_port(
                {port for low, high in requests for port in range(low, high + 1)},
                timeout=seconds,
                signal=signum,
                force=force,
                dry_run=dry_run,
                confirm=None if yes or dry_run or not _interactive() else _asker(out, how),
                on_step=lambda port, step: out.say(render.kill_step(port, step)),
                udp=udp,
                all_ports=all_ports,
                watch=_seconds(watch, "--watch"),
            )
        except kill.KillInterrupted as exc:  # Ctrl-C: say what was sent, then stop
            interrupted, outcomes = exc, list(exc.outcomes)
        result = kill.report(outcomes, requests)
        shown = result.outcomes
        screen = out.stdout
        human = (
            render.kill_plans(shown, how, screen)
            if dry_run
            else render.kill_outcomes(shown, screen)
        )
        if interrupted is not None:
            stopped = render.interrupted_message(interrupted.outcomes, interrupted.pending)
            return Outcome(ExitStatus.INTERRUPTED, result.to_dict(dry_run), human, error=stopped)
        error = render.kill_error(result.status, result.failed, result.empty)
        return Outcome(result.status, result.to_dict(dry_run), human, error=error)

    return _run("kill", out, body)


def _kill_requests(specs: Sequence[str]) -> list[tuple[int, int]]:
    """Each port or range as typed (8000 8000-8010 8000,8080): a range is one request."""
    from portinspect.inputs import parse_port_spec, parse_range

    requests: list[tuple[int, int]] = []
    for spec in specs:
        parse_port_spec(spec)  # its one-line errors for "", "80x", "9-1"
        requests += [parse_range(part, what="port") for part in spec.split(",")]
    return requests


def _seconds(text: str, what: str) -> float:
    from portinspect.inputs import parse_seconds

    return parse_seconds(text, what)


def _ladder(timeout: str, signal_name: str | None, force: bool) -> tuple[int, float, str]:
    """(the graceful signal, the seconds before SIGKILL, the escalation in words)."""
    from portinspect import _psutil
    from portinspect.inputs import parse_signal
    from portinspect.render.kill import describe_ladder

    if force and signal_name is not None:
        raise UsageError("--force sends SIGKILL; it cannot be combined with --signal")
    signum = parse_signal("TERM" if signal_name is None else signal_name)
    seconds = _seconds(timeout, "--timeout")
    how = describe_ladder(seconds, signum, force=force, windows=not _psutil.CAN_SIGNAL)
    return signum, seconds, how


def _interactive() -> bool:
    # None: the stream was closed before we started (`2>&-`); no terminal to ask on then.
    stdin, stderr = sys.stdin, sys.stderr
    return stdin is not None and stderr is not None and stdin.isatty() and stderr.isatty()


def _asker(out: Output, how: str) -> "Callable[[KillPlan], bool]":
    """kill's question on the terminal: the plan, fitted to stderr's screen, then y/N."""
    from portinspect.render.kill import kill_plan

    def ask(plan: "KillPlan") -> bool:
        writer.say_raw(kill_plan(plan, how, out.screen(sys.stderr)))
        try:
            return typer.confirm(f"Stop them to free port {plan.port}?", err=True)
        except typer.Abort:
            raise KeyboardInterrupt from None

    return ask


@app.command(
    "run",
    cls=Command,
    short_help="servers on free ports around your tests, torn down, verified",
    # Everything after the first word of the test command is the test command's: `run
    # --server X pytest -x` passes -x to pytest (as does `-- pytest -x`).
    context_settings={"allow_interspersed_args": False},
)
def run_command(
    ctx: typer.Context,
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
    wide: WideOpt = False,
    no_color: NoColorOpt = False,
) -> int:
    """Start servers on free ports, wait until ready, run the tests, stop it all, verify."""
    out = _output(ctx, as_json, quiet, wide, no_color)

    def body() -> Outcome:
        from pathlib import Path

        from portinspect import render, runner

        specs = runner.parse_servers(
            servers or [], ports=port or [], near=near or [], http=http or []
        )
        result = runner.run(
            specs,
            tests or None,
            wait_timeout=_seconds(wait_timeout, "--wait-timeout"),
            stop_timeout=_seconds(stop_timeout, "--stop-timeout"),
            reclaim=reclaim,
            shell=shell,
            log_dir=log_dir,
            on_line=None if log_dir is not None else _server_line,
            on_event=lambda event: out.say(render.run_event(event)),
            # stdout holds the one JSON document: the tests' own output goes to stderr.
            test_stdout=2 if as_json else None,
        )
        notes = render.run_teardown(result.teardown)
        if log_dir is not None and result.failed is not None:  # its output was not on stderr
            failed = next(s for s in result.servers if s.name == result.failed)
            notes += render.server_tail(failed, Path(log_dir) / f"{failed.name}.log")
        error = None if result.exit_status == 0 else render.clean(result.message)
        return Outcome(result.exit_status, result.to_dict(), error=error, notes=notes)

    return _run("run", out, body)


def _server_line(name: str, line: str) -> None:
    from portinspect.render.run import server_line

    writer.say_raw(server_line(name, line))


# --- the entry point ------------------------------------------------------------------------


def _app_for(args: Sequence[str]) -> typer.Typer:
    """The app with only the command that runs: typer builds every command's parameters
    before it parses (a few milliseconds each, a fifth of `free`'s start-up), and one is
    used. The whole app for help, completion and anything that names no command."""
    if os.environ.get("_PORTINSPECT_COMPLETE"):
        return app
    name = next((a for a in args if not a.startswith("-")), None)
    wanted = [info for info in app.registered_commands if info.name == name]
    if not wanted:
        return app
    lean = typer.Typer(**settings())
    lean.registered_callback = app.registered_callback
    lean.registered_commands = wanted
    return lean


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    _app_for(args)(args=args, prog_name="portinspect")
    sys.exit(0)  # pragma: no cover - the group's main always exits
