"""Pure: a command line taken apart. Which runtime runs which program, with which arguments.

Never trust a process's name: it is comm, cut at 15 characters (`jupyter-noteboo`), and
reloader children are all called `python3`. Everything here reads the cmdline, as measured on
real dev servers (research/frameworks.md §2.3):
- console scripts show as `[python, /venv/bin/uvicorn, ...]`, modules as `python -m uvicorn`,
  pip's Windows launchers as `uvicorn.exe`: all three are the program "uvicorn";
- setproctitle (gunicorn, granian, nginx, postgres) and node's process.title overwrite argv
  with one string padded by ~50 empty ones: that string is the process's title.

The tables here are the parser's own (interpreter options); what a program *is* lives in
catalogue.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

# Suffixes stripped from a program token: pip's Windows launchers, scripts, node files.
_SUFFIXES = ("-script.pyw", "-script.py", ".pyw", ".py", ".exe", ".mjs", ".cjs", ".js")
_PYTHON_STEMS = ("pythonw", "python", "pypy", "py")
_NODE = frozenset({"node", "nodejs"})
# Node options that take the next token as their value.
_NODE_VALUE_OPTS = frozenset(
    {"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions"}
)
_NODE_INLINE_OPTS = frozenset({"-e", "--eval", "-p", "--print"})
# Java options that take the next token as their value; the main class (or -jar's file) follows.
_JAVA = frozenset({"java", "javaw"})
_JAVA_VALUE_OPTS = frozenset(
    {"-cp", "-classpath", "--class-path", "-p", "--module-path", "--add-modules", "--add-opens"}
)
# Interpreters that run a script named by their first argument (foreman is a Ruby script).
_SCRIPT_RUNTIMES = frozenset({"ruby", "perl", "php"})

# The helpers below are memoised: a listing asks the same questions of the same command lines
# for every process of a fleet (1000 workers: 17k signature look-ups, 90 ms uncached).
MEMO = 4096


class Command(NamedTuple):
    """A command line taken apart: which runtime runs which program with which args."""

    runtime: str | None  # "python", "node", "java", "ruby"...; None for a native program
    program: str  # lower-case name of what runs: script stem, module, main class or executable
    args: tuple[str, ...] = ()  # what follows the program
    target: str | None = None  # the script path or module name as given, case kept
    module: bool = False  # python -m
    code: str | None = None  # python -c CODE, node -e CODE
    title: str | None = None  # the whole title of a retitled process ("gunicorn: master [a:b]")


@functools.lru_cache(maxsize=MEMO)
def stem(token: str) -> str:
    """Lower-case basename without script/launcher suffixes: "/v/bin/Uvicorn.exe" -> "uvicorn".

    Leading "-" is a login shell ("-bash"); a trailing ":" is a retitled process
    ("gunicorn: master", "sshd: alice@pts/0").
    """
    name = token.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower().lstrip("-").rstrip(":")
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def normalise_argv(cmdline: Sequence[str]) -> tuple[str, ...]:
    """The cmdline without setproctitle padding, a retitled process split into words.

    A lone element with spaces is a title, unless it starts with a path: macOS app bundles
    live in directories with spaces ("/Applications/OrbStack.app/.../OrbStack Helper").
    """
    return _normalised(tuple(cmdline))[0]


@functools.lru_cache(maxsize=MEMO)
def _normalised(cmdline: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    argv = [a for a in cmdline if a]
    if len(argv) == 1 and " " in argv[0].strip():
        title = argv[0].strip()
        first = title.split()[0]
        if "/" not in first and "\\" not in first:
            return tuple(title.split()), title
    return tuple(argv), None


def parse_command(cmdline: Sequence[str]) -> Command:
    """Which program a command line runs: the script or module behind an interpreter."""
    argv, title = _normalised(tuple(cmdline))
    return _parsed(argv, title)


@functools.lru_cache(maxsize=MEMO)
def _parsed(argv: tuple[str, ...], title: str | None) -> Command:
    if not argv:
        return Command(runtime=None, program="")
    exe = stem(argv[0])
    if title is None:
        if is_python(exe):
            return _parse_python(argv)
        if exe in _NODE:
            return _parse_node(argv)
        if exe in _JAVA:
            return _parse_java(argv)
        if exe in _SCRIPT_RUNTIMES and len(argv) > 1 and not argv[1].startswith("-"):
            return Command(exe, stem(argv[1]), argv[2:], target=argv[1])
    return Command(runtime=None, program=exe, args=argv[1:], target=argv[0], title=title)


@functools.lru_cache(maxsize=256)
def is_python(exe: str) -> bool:
    """python, python3, python3.12, pythonw, pypy3, py, python3.13t..."""
    for name in _PYTHON_STEMS:
        if exe.startswith(name):
            rest = exe[len(name) :]
            if rest[-1:].isalpha():  # python3.13t (free-threaded), python3m
                rest = rest[:-1]
            return all(part.isdigit() for part in rest.split(".")) if rest else True
    return False


def _parse_python(argv: tuple[str, ...]) -> Command:
    """Skip interpreter options (-B -u -X dev -W error, combined like -Bu) to find the program."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            # --check-hash-based-pycs MODE is the only long option that takes a value.
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        for j, flag in enumerate(arg[1:], start=1):
            rest = arg[j + 1 :]
            if flag in "mc":
                value = rest or (argv[i + 1] if i + 1 < len(argv) else "")
                after = argv[i + (1 if rest else 2) :]
                if flag == "m":
                    return Command("python", value.lower(), after, target=value, module=True)
                return Command("python", "-c", after, code=value)
            if flag in "XW":  # options with a value: -X dev, -Wignore
                if not rest:
                    i += 1
                break
        i += 1
    if i >= len(argv):
        return Command("python", "python")  # the interactive interpreter
    return Command("python", stem(argv[i]), argv[i + 1 :], target=argv[i])


def _parse_node(argv: tuple[str, ...]) -> Command:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _NODE_INLINE_OPTS:
            code = argv[i + 1] if i + 1 < len(argv) else ""
            return Command("node", "node", argv[i + 2 :], code=code)
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        i += 2 if arg in _NODE_VALUE_OPTS else 1
    if i >= len(argv):
        return Command("node", "node")
    return Command("node", stem(argv[i]), argv[i + 1 :], target=argv[i])


def _parse_java(argv: tuple[str, ...]) -> Command:
    """`java [opts] MAIN.CLASS args`, `java -jar app.jar`, `java -m mod/MAIN.CLASS`."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-jar", "-m", "--module") and i + 1 < len(argv):
            value = argv[i + 1]
            program = stem(value) if arg == "-jar" else value.rsplit("/", 1)[-1].lower()
            return Command("java", program, argv[i + 2 :], target=value)
        if not arg.startswith("-"):
            return Command("java", arg.lower(), argv[i + 1 :], target=arg)
        i += 2 if arg in _JAVA_VALUE_OPTS else 1
    return Command("java", "java")


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


def positionals(args: Sequence[str], value_opts: Iterable[str] = ()) -> Iterator[str]:
    """The arguments that are neither options nor an option's value."""
    takes_value = value_opts if isinstance(value_opts, frozenset) else frozenset(value_opts)
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value
        else:
            yield arg


def first_positional(args: Sequence[str], value_opts: Iterable[str] = ()) -> str:
    """The first argument that is not an option or an option's value ("" if none)."""
    return next(positionals(args, value_opts), "")


def option(
    args: Sequence[str], names: Iterable[str], *, dash_equals: bool = False, glued: bool = False
) -> str | None:
    """Value of `--name V`, `--name=V` or `-n V` (the last one wins, like argparse and click).

    dash_equals: `-n=V` and `-name=V` give V too (Go's flag package and hand-written parsers
    read it so). glued: `-nV` for one-letter names (ssh, cloudflared, localtunnel).
    """
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "=") and (dash_equals or name.startswith("--")):
                found = arg[len(name) + 1 :]
            elif glued and len(name) == 2 and name[1] != "-" and arg.startswith(name):
                found = arg[2:] or found
    return found


def has_flag(args: Sequence[str], names: Iterable[str]) -> bool:
    """Any of these flags given (`--reload`, `--reload=true`, or `-r`)."""
    wanted = tuple(names)
    return any(arg in wanted or arg.split("=", 1)[0] in wanted for arg in args)


def as_int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def go_flags(args: Sequence[str]) -> dict[str, str]:
    """Go's flag syntax: -name value, -name=value, --name value; bare booleans."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, eq, value = arg.lstrip("-").partition("=")
            if eq:
                flags[name] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[name] = args[i + 1]
                i += 1
            else:
                flags[name] = "true"
        i += 1
    return flags


def same_tail(a: Sequence[str], b: Sequence[str]) -> bool:
    """Same cmdline modulo argv0 (a fork, or a re-run of the same command). An empty tail (a
    bare REPL) never counts."""
    ta, tb = normalise_argv(a)[1:], normalise_argv(b)[1:]
    return bool(ta) and ta == tb
