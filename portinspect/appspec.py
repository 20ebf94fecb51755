"""Pure: an app spec (`main:app`, `pkg.wsgi`, `app.py`) -> the files that hold the app, and the
framework their source imports.

The server names a module, not a framework: `uvicorn main:app` serves FastAPI, Starlette or
Litestar alike, so the app's own imports decide. The caller reads the files (bounded: they
belong to whoever runs the server); this module only says which paths and what the text means.
The frameworks and their interfaces are rows of catalogue.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import PurePath

from portinspect import catalogue as cat

# Reads a text file (bounded in size) and returns its content, or None if it cannot.
SourceReader = Callable[[str], "str | None"]

_IMPORT = r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)|import[ \t]+([^#;\n]+))"
_MODULE = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_CALLABLE = r"[A-Za-z_][\w.]*(\(.*\))?"


@functools.cache
def _regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Cached: every holder of a 5000-socket load runs the same module, and scanning it costs
# ~160 us a time. The classifier reads each path once, so a hit is an identity check.
@functools.lru_cache(maxsize=16)
def framework_from_source(text: str, interface: str | None = None) -> str | None:
    """The web framework a module imports, e.g. "fastapi" for `from fastapi import FastAPI`.

    interface breaks ties the way the server does: a module that mounts a Flask app in a
    FastAPI one is FastAPI under uvicorn (ASGI) and Flask under gunicorn's sync worker (WSGI).
    """
    found: set[str] = set()
    for match in _regex(_IMPORT, re.MULTILINE).finditer(text):
        if match.group(1):
            found.add(match.group(1))
        else:
            for item in match.group(2).split(","):
                words = item.split()
                if words:
                    found.add(words[0].split(".")[0])
    known = [(i, fw) for i, fw in enumerate(cat.FRAMEWORKS) if fw.name in found]
    if not known:
        return None

    def mismatch(fw: cat.Framework) -> bool:
        return interface in (cat.ASGI, cat.WSGI) and fw.interface not in (None, interface)

    return min(known, key=lambda item: (mismatch(item[1]), item[0]))[1].name


@functools.lru_cache(maxsize=4096)
def app_source_paths(app: str, cwd: str | None, app_dir: str | None = None) -> tuple[str, ...]:
    """Files that may hold the app `app` names, resolved like uvicorn/gunicorn/python do.

    "main:app" -> <cwd>/main.py, <cwd>/main/__init__.py; "pkg.wsgi" -> <cwd>/pkg/wsgi.py...;
    "app.py" -> <cwd>/app.py. --app-dir/--chdir is relative to cwd. A relative path with
    no known cwd resolves to nothing.
    """
    base = PurePath(cwd) if cwd else None
    if app_dir:
        base = base / app_dir if base is not None else PurePath(app_dir)
        if not base.is_absolute():
            return ()

    def resolve(rel: str) -> str | None:
        path = PurePath(rel)
        if path.is_absolute():
            return str(path)
        return str(base / path) if base is not None else None

    spec = app.strip()
    if spec.endswith((".py", ".pyw")) or "/" in spec or "\\" in spec:
        # flask --app hello/app.py:create_app(); a Windows drive colon is not an attribute.
        file_part, colon, attr = spec.rpartition(":")
        found = resolve(file_part if colon and _regex(_CALLABLE).fullmatch(attr) else spec)
        return (found,) if found else ()
    module = spec.split(":", 1)[0].split("(", 1)[0]
    if not _regex(_MODULE).fullmatch(module):
        return ()
    rel = module.replace(".", "/")
    candidates = (f"{rel}.py", f"{rel}/__init__.py", f"{rel}/__main__.py")
    return tuple(p for p in (resolve(c) for c in candidates) if p is not None)
