"""Keep typer from importing pydantic for parameters that need no conversion.

typer 0.29 converts every parameter value through a pydantic TypeAdapter that it builds on
first use, and it builds one even when the value is None (an option not given, or its own
--install-completion). Importing pydantic and building the adapter costs about 100 ms per
run on a 2-CPU VM: half of `portinspect list` on an idle machine (benchmarks/RESULTS.md).

portinspect declares every parameter as str, str | None, list[str] or bool and parses the
text itself (portinspect.inputs), so for those the conversion is the identity and none
needs pydantic. LeanCommand (and LeanParams for the group) gives such parameters a
converter that returns the value click parsed; any other value, or any other annotation,
still goes to typer's own. get_params() is the hook because it also returns the --help
option click makes per context.

This leans on typer's private `_runtime_param` slot. Where it is absent (older or newer
typer), nothing is changed: the CLI behaves the same, only slower.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

# annotation -> the type click's value must have to pass through unchanged
_PLAIN: dict[Any, type] = {
    str: str,
    str | None: str,
    list[str]: str,
    list[str] | None: str,
    bool: bool,
    bool | None: bool,
}


class _Identity:
    """A stand-in for typer's RuntimeParam: hands back click's value when it is plain text."""

    def __init__(self, param: Any, kind: type) -> None:
        self._param = param
        self._kind = kind
        self._real: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        kind = self._kind
        if multi and isinstance(value, (list, tuple)) and all(isinstance(v, kind) for v in value):
            return list(value)
        if not multi and isinstance(value, kind):
            return value
        return self._typer_own().coerce(value, param, ctx)

    def _typer_own(self) -> Any:
        if self._real is None:
            from typer._coercion import build_runtime_param

            self._real = build_runtime_param(self._param.type_descriptor)
        return self._real


def lean(params: Any) -> None:
    """Give the plain parameters among params the identity converter (idempotent)."""
    for param in params:
        kind = _plain_kind(param)
        if kind is not None:
            param._runtime_param = _Identity(param, kind)


class LeanParams:
    """Mixin for typer's command classes: lean parameters, whoever asks for them."""

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # type: ignore[misc]
        lean(params)
        return params


class LeanCommand(LeanParams, TyperCommand):
    """A typer command whose plain parameters skip pydantic (`@app.command(cls=LeanCommand)`)."""


def _plain_kind(param: Any) -> type | None:
    """str or bool for a parameter typer has not converted yet and that needs no conversion."""
    descriptor = getattr(param, "type_descriptor", None)
    info = getattr(descriptor, "parameter_info", None)
    if getattr(param, "_runtime_param", "absent") is not None or info is None:
        return None
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    try:
        return _PLAIN.get(getattr(descriptor, "annotation", None))
    except TypeError:  # an unhashable annotation
        return None
