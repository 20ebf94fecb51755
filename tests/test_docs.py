"""The README is the user's manual: it fails the build when it drifts from the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from portinspect.cli import app
from portinspect.errors import ExitStatus

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
COMMAND = typer.main.get_command(app)
# The options every command shares are documented once, in their own table.
SHARED = {"--help", "-h", "--json", "--quiet", "-q", "--wide", "-w", "--no-color"}


def _commands() -> list[str]:
    return sorted(COMMAND.commands)  # type: ignore[attr-defined]


def _options(name: str) -> list[str]:
    command = COMMAND.commands[name]  # type: ignore[attr-defined]
    found: list[str] = []
    for param in command.params:
        found.extend(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return sorted(set(found) - SHARED)


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_a_readme_section(name: str) -> None:
    assert re.search(rf"^###+ `portinspect {name}", README, re.MULTILINE), name


@pytest.mark.parametrize(("name", "option"), [(n, o) for n in _commands() for o in _options(n)])
def test_every_option_is_documented(name: str, option: str) -> None:
    # In the command's own section: `free --udp` documented does not document `kill --udp`.
    section = re.search(rf"^###+ `portinspect {name}.*?(?=^##)", README, re.MULTILINE | re.DOTALL)
    assert section is not None, name
    assert f"`{option}" in section.group(0), f"{name} {option}"


@pytest.mark.parametrize("status", list(ExitStatus))
def test_exit_code_table_lists_every_code(status: ExitStatus) -> None:
    assert re.search(rf"^\| {int(status)} \|", README, re.MULTILINE), status


def test_shared_options_are_documented() -> None:
    for option in (
        "--json",
        "--quiet",
        "--wide",
        "--no-color",
        "--debug",
        "--version",
        "--install-completion",
    ):
        assert f"`{option}" in README, option


def test_readme_keeps_its_set_up_commands_true() -> None:
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    for target in ("run", "test", "bench"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
