"""The console script and `python -m portinspect`: nothing here may be slow to import.

The CLI needs typer, whose import is most of the start-up time; a Ctrl-C or a broken install
there happens before any of cli.py runs, so the process boundary is guarded here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from portinspect import _stdfds


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script (argv None: sys.argv) or an in-process call with argv.

    The console script ends without the interpreter's teardown (see _end); an in-process
    caller gets the usual SystemExit.
    """
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is None:
            _end(exc.code)
        raise


def _end(code: object) -> NoReturn:
    """Exit as sys.exit would, minus tearing down every module and object one by one.

    That teardown is 10 ms of a listing at 1000 listeners and grows with them, and nothing
    in it is ours: atexit functions still run (coverage, a caller's harness), the streams
    are flushed, and no non-daemon thread exists by now.
    """
    import atexit

    if code is None or isinstance(code, int):
        status = code or 0
    else:  # sys.exit("message")
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(f"{code}\n")
        status = 1
    atexit._run_exitfuncs()  # the call Py_Finalize makes first
    try:
        if sys.stdout is not None:  # None: closed before we started
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()
    except (OSError, ValueError):
        status = status or 1
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os._exit(status)


def _main(argv: Sequence[str] | None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    _stdfds.fill()
    try:
        from portinspect import cli

        # A run is short but allocates tens of thousands of objects (5500 listeners), and each
        # full cyclic-GC pass walked everything the imports made too: 8 % of `list` at the L
        # load (benchmarks/RESULTS.md). Frozen, those objects are skipped; the run's own
        # garbage is still collected, which long `wait` and `kill` runs rely on.
        gc.freeze()
        cli.main(args)
    except KeyboardInterrupt:
        _fail(args, 130, "interrupted")  # errors.ExitStatus.INTERRUPTED
    except BrokenPipeError:
        _stdout_closed()
    except Exception as exc:  # before the CLI's own handlers exist: a broken install
        if "--debug" in args or os.environ.get("PORTINSPECT_DEBUG", "") not in ("", "0"):
            import traceback

            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        _fail(args, 1, f"unexpected error: {message}")  # errors.ExitStatus.ERROR


def _fail(args: Sequence[str], code: int, message: str) -> NoReturn:
    """One line on stderr and, with --json, the error document: through _output, the
    CLI's own writer, unless that is what failed to import (a broken install)."""
    try:
        from portinspect import _output
    except Exception:
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        # AttributeError: a stream closed before we started is None.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(f"portinspect: {text}\n")
        sys.exit(code)
    _output.fail(args, code, message)
    sys.exit(code)


def _stdout_closed() -> NoReturn:
    """stdout's reader went away (`portinspect list | head -1`): end the way ls and ss do.

    The command has done its work (cli.py gives back what only the output made useful, such
    as free's leases); what is left is to die of SIGPIPE, quietly, so a shell sees 141 as
    for any other tool, and `set -o pipefail` treats portinspect like the rest of the pipe.
    """
    # Else the interpreter's last flush would print "Exception ignored ... BrokenPipeError".
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if hasattr(os, "kill") and sys.platform != "win32":
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(1)
