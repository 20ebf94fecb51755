"""The bundled data files read the same by a plain open() and by importlib.resources."""

from __future__ import annotations

import builtins
from importlib import resources
from typing import Any

import pytest

from portinspect import data

FILES = ["services.tsv", "unsafe_ports.tsv"]


@pytest.mark.parametrize("name", FILES)
def test_plain_read_is_what_importlib_resources_reads(name: str) -> None:
    expected = resources.files("portinspect.data").joinpath(name).read_text("utf-8")
    assert data.read_text(name) == expected
    assert expected.count("\n") > 10  # the real table, not an empty file


@pytest.mark.parametrize("name", FILES)
def test_a_package_inside_a_zip_falls_back_to_importlib_resources_simulated(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulated: inside a zip the path next to __init__.py is no directory at all.
    real_open = builtins.open

    def zip_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(name):
            raise NotADirectoryError(20, "Not a directory", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", zip_open)
    assert data.read_text(name) == resources.files("portinspect.data").joinpath(name).read_text(
        "utf-8"
    )
