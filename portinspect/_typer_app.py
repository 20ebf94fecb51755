"""How portinspect's typer app behaves, apart from its commands (cli.py).

- every failure outside a command's body (parsing, option callbacks, typer itself) is one
  line on stderr, and with --json one JSON document on stdout (through _output);
- a bare `portinspect` prints the commands on a terminal, and is a usage error in a script;
- --show-completion and --install-completion take a SHELL (typer's own print bash's script
  whatever the shell);
- help names arguments as users type them (PORT, PORT..., [TEST...]), not typer's `{port}`,
  `port <str>` or `ports... <list[str]>`.
"""

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from portinspect import __version__, _typer_lean
from portinspect import _output as writer
from portinspect.errors import ExitStatus, PortInspectError, UsageError

# click is vendored by recent typer and external in older ones; reach its exception
# classes through typer's public BadParameter so both work.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = _ClickUsageError.__mro__[1]

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
# The commands in the order a newcomer meets them (the overview a bare `portinspect` prints).
ORDER = ("list", "who", "free", "kill", "wait", "run", "audit")


def unexpected(exc: BaseException, debug: bool) -> str:
    if debug:
        import traceback  # here: 2.5 ms of imports that only --debug needs

        traceback.print_exception(exc)
    from portinspect.safetext import clean

    message = clean(" ".join(str(exc).split()), 400) or type(exc).__name__
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"unexpected error: {message}{hint}"


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


def debug_from_env() -> bool:
    return os.environ.get("PORTINSPECT_DEBUG", "") not in ("", "0")


class OneLineErrors(_typer_lean.LeanParams, TyperGroup):
    """Every failure outside a command's body (parsing, option callbacks, typer itself) as
    one line on stderr, and with --json one JSON document on stdout; usage errors exit 2.
    The command's return value is the exit code. A bare `portinspect` and the completion
    options are answered here, before typer parses anything."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands, key=_order)

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
        command = next((a for a in argv if a in self.commands), None)
        try:
            with _past_typer():
                code = _before_typer(argv, self)
            if code is None:
                code = super().main(*args, **kwargs)
        except _ClickUsageError as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            code = writer.fail(argv, ExitStatus.USAGE, f"{message} (see --help)", command)
        except _ClickException as exc:
            status = getattr(exc, "exit_code", ExitStatus.ERROR)
            code = writer.fail(argv, status, str(exc), command)
        except PortInspectError as exc:
            code = writer.fail(argv, exc.exit_status, str(exc), command)
        except (_Interrupted, typer.Abort, KeyboardInterrupt, EOFError):
            code = writer.fail(argv, ExitStatus.INTERRUPTED, "interrupted", command)
        except _StdoutClosed as exc:
            raise BrokenPipeError from exc  # for the entry point
        except Exception as exc:
            debug = "--debug" in argv or debug_from_env()
            code = writer.fail(argv, ExitStatus.ERROR, unexpected(exc, debug), command)
        sys.exit(code if isinstance(code, int) else 0)


def _order(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _before_typer(argv: Sequence[str], group: Any) -> int | None:
    """The exit status of what is answered without typer: a bare `portinspect` (the commands,
    one line each, on a terminal; a usage error in a script) and --show-completion or
    --install-completion with or without a SHELL after it. None: typer's to parse."""
    if os.environ.get("_PORTINSPECT_COMPLETE"):  # the shell asks for completions
        from typer._completion_classes import completion_init

        completion_init()  # typer's completion classes, as its own completion options do
        return None
    leading = []
    for i, arg in enumerate(argv):
        if arg in ("--show-completion", "--install-completion"):
            after = argv[i + 1] if i + 1 < len(argv) else None
            return completion(arg, after if after and not after.startswith("-") else None)
        if not arg.startswith("-"):
            return None
        leading.append(arg)
    if any(a not in ("--debug",) for a in leading):
        return None  # --help, --version, a bad option: typer's
    if not writer.is_terminal(sys.stdout):
        message = f"no command given: one of {', '.join(ORDER)} (see --help)"
        return writer.fail(argv, ExitStatus.USAGE, message)
    from portinspect.render.usage import overview

    names = sorted(group.commands, key=_order)
    commands = [(name, group.commands[name].short_help or "") for name in names]
    return _print(overview(__version__, commands, writer.screen(sys.stdout)))


def _print(text: str) -> int:
    """text on stdout: exit 0, or 1 when stdout cannot take it (closed, full); a reader that
    went away (EPIPE) ends the process as SIGPIPE would, through the entry point."""
    try:
        writer.write(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        return writer.unwritten(ExitStatus.OK, exc)
    return ExitStatus.OK


def completion(option: str, shell: str | None) -> int:
    """--show-completion and --install-completion, for SHELL or the shell we run under.
    typer's own options take no SHELL and print bash's script under any shell."""
    # typer's completion machinery (typer >= 0.9 keeps it in _completion_shared).
    from typer import _completion_shared as shared

    if shell is None:
        shell = PurePath(os.environ.get("SHELL", "")).name or "bash"
        with contextlib.suppress(Exception):  # shellingham: the shell we run under
            shell = shared._get_shell_name() or shell
    if shell not in SHELLS:
        raise UsageError(f"no completion for {shell!r}: bash, zsh, fish or powershell")
    var = "_PORTINSPECT_COMPLETE"
    if option == "--show-completion":
        return _print(
            shared.get_completion_script(prog_name="portinspect", complete_var=var, shell=shell)
        )
    _, path = shared.install(shell=shell, prog_name="portinspect", complete_var=var)
    return _print(f"{shell} completion installed in {path}; it works in new shells")


class Command(_typer_lean.LeanCommand):
    """A command whose help names its arguments as users type them: `who [OPTIONS] PORT`,
    `PORT...`, `[TEST...]`, not typer's `{port}`, `port <str>` or `ports... <list[str]>`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = ["[OPTIONS]"]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [
            (_argument_name(p), p.help or "")
            for p in params
            if p.param_type_name == "argument" and not getattr(p, "hidden", False)
        ]
        options = [
            record
            for p in params
            if p.param_type_name == "option" and (record := p.get_help_record(ctx)) is not None
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    name = str(param.metavar or param.name.upper())
    return f"{name}..." if param.nargs == -1 else name


def settings() -> dict[str, Any]:
    """How portinspect's typer app is made (cli.app, and the one-command app main() runs)."""
    return {
        "cls": OneLineErrors,
        "name": "portinspect",
        "help": "What is on a port, and how do I get it back? List, diagnose, free, kill, "
        "wait, run, audit.",
        "add_completion": False,
        "rich_markup_mode": None,
        "pretty_exceptions_enable": False,
        "context_settings": {"help_option_names": ["-h", "--help"]},
    }
