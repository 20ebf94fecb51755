"""Bundled static data: IANA service names, browser-unsafe ports."""

from __future__ import annotations

import os


def read_text(name: str) -> str:
    """One bundled data file, as text.

    A plain read of the file next to this module: importing importlib.resources costs about
    8 ms (tempfile, random, zipfile...), a tenth of an idle `portinspect list`. Where the
    package does not live on a file system (a zip), importlib.resources reads it.
    """
    path = os.path.join(os.path.dirname(__file__), name)  # noqa: PTH118, PTH120 (pathlib: 2 ms)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        from importlib import resources

        return resources.files(__name__).joinpath(name).read_text("utf-8")
