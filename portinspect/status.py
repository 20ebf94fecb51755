"""The exit statuses: one table for every command, the README's exit-code table in code.

At the bottom of the house: results (models) say which status they mean, errors carry one,
and neither has to import the other for it. `portinspect.errors` re-exports ExitStatus.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # unexpected error
    USAGE = 2  # bad input
    NOT_LISTENING = 3  # nothing listens on the port(s) asked about
    PERMISSION = 4  # owner hidden, or a process we may not signal
    STILL_HELD = 5  # the port is still held after `kill`
    NO_FREE_PORT = 6  # no free port in the range
    # `audit` found a way in at or above --fail-on: a verdict, not a failure to run, so it
    # shares no code with an error (7 and 8 are left free for other commands' outcomes).
    FINDINGS = 9
    # `run`'s own codes sit where test commands rarely exit (pytest uses 0-5, shells 126-127,
    # Python 120 for a failed flush at exit); run --json tells them apart for sure.
    SERVER_EXITED = 121  # `run`: a server exited before it was ready, or during the tests
    LEFT_BEHIND = 122  # `run`: teardown left a process or a listening port behind
    TIMEOUT = 124  # `wait` timed out; `run`: a server was not ready in time (timeout(1))
    CANNOT_RUN = 126  # `wait -- COMMAND`: the command is not executable (the shell's code)
    COMMAND_NOT_FOUND = 127  # `wait -- COMMAND`: no such command (the shell's code)
    HANGUP = 129  # `run` was sent SIGHUP (128 + 1), and tore everything down
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # `run` was sent SIGTERM (128 + 15), and tore everything down
