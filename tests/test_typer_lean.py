"""The pydantic bypass for typer (portinspect._typer_lean) changes speed, never meaning.

Real typer commands, run through typer's CliRunner: the plain str / list[str] / bool
parameters reach the command exactly as typer itself would hand them over, and a parameter
of any other type is left to typer's own conversion.
"""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from portinspect import _typer_lean

typer_converts = pytest.mark.skipif(
    not hasattr(typer.core, "_TyperParameter"), reason="this typer has no runtime converters"
)


def _app(seen: dict[str, object], cls: type | None) -> typer.Typer:
    app = typer.Typer()
    extra = {"cls": cls} if cls is not None else {}

    @app.command(**extra)
    def run(
        names: Annotated[list[str], typer.Argument()],
        text: Annotated[str | None, typer.Option("--text")] = None,
        flag: Annotated[bool, typer.Option("--flag")] = False,
        number: Annotated[int, typer.Option("--number")] = 3,
    ) -> None:
        seen.update(names=names, text=text, flag=flag, number=number)

    @app.command()
    def other() -> None:  # two commands make a group, as in portinspect's CLI
        pass

    return app


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "a"],
        ["run", "a", "b", "--text", "", "--flag"],
        ["run", "8000-8010", "--text", "x y", "--number", "7"],
        ["run", "\u0668\u0660", "--text", "caf\u00e9\udcff"],  # non-ASCII digits, a surrogate
    ],
)
def test_lean_command_hands_over_what_typer_would(argv: list[str]) -> None:
    plain: dict[str, object] = {}
    lean: dict[str, object] = {}
    first = CliRunner().invoke(_app(plain, None), argv)
    second = CliRunner().invoke(_app(lean, _typer_lean.LeanCommand), argv)
    assert (first.exit_code, first.output) == (second.exit_code, second.output)
    assert lean == plain


def test_bad_values_of_other_types_still_get_typers_error() -> None:
    plain: dict[str, object] = {}
    lean: dict[str, object] = {}
    first = CliRunner().invoke(_app(plain, None), ["run", "a", "--number", "x"])
    second = CliRunner().invoke(_app(lean, _typer_lean.LeanCommand), ["run", "a", "--number", "x"])
    assert first.exit_code == second.exit_code == 2
    assert first.output == second.output
    assert lean == plain == {}


@typer_converts
def test_only_plain_parameters_skip_typers_converter() -> None:
    command = typer.main.get_command(_app({}, _typer_lean.LeanCommand))
    run = command.commands["run"]  # type: ignore[attr-defined]
    ctx = run.make_context("run", ["a"])
    kinds = {p.name: type(p._runtime_param).__name__ for p in run.get_params(ctx)}
    assert kinds["names"] == kinds["text"] == kinds["flag"] == kinds["help"] == "_Identity"
    assert kinds["number"] != "_Identity"  # int: typer converts it
