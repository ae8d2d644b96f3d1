"""Turns a pydantic ValidationError into the one IPS fault a caller sees.

Paths in reasons use IPS names from the request root, e.g. ``submitJobParam/exportJob/fmt``;
array items are ``items[n]`` (1-based, as in XPath). The fault's ``field`` is the path without
the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from jobengine.errors import (
    InvalidParameter,
    IpsFault,
    LimitExceeded,
    MissingParameter,
    NotSupported,
)
from jobengine.model.base import show
from jobengine.model.fields import find_field

__all__ = ["fault_from_validation_error", "ips_path", "validate_model"]

M = TypeVar("M", bound=BaseModel)

_CUSTOM: dict[str, type[IpsFault]] = {
    "ips_invalid": InvalidParameter,
    "ips_missing": MissingParameter,
    "ips_not_supported": NotSupported,
    "ips_limit": LimitExceeded,
}
_PREDICATES = ("is ", "must ", "holds ", "has ")


def ips_path(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The IPS names along ``loc`` (pydantic's error location, Python or IPS names)."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"items[{part + 1}]")
            continue
        shape = find_field(model, part) if model is not None else None
        parts.append(shape.alias if shape is not None else part)
        model = shape.model if shape is not None else None
    return parts


def _join(where: str, reason: str) -> str:
    return f"{where} {reason}" if reason.startswith(_PREDICATES) else f"{where}: {reason}"


def _builtin_reason(error: ErrorDetails, where: str) -> tuple[type[IpsFault], str]:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return MissingParameter, f"{where} is required"
    if kind == "extra_forbidden":
        return InvalidParameter, f"{where} is not a known element"
    if kind == "enum":
        allowed = str(ctx.get("expected", "")).replace("' or '", "', '")
        return InvalidParameter, f"{where} must be one of {allowed}; got {show(value)}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return InvalidParameter, f"{where} must hold at least one item"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return InvalidParameter, f"{where} must not be empty"
    message = error["msg"][:1].lower() + error["msg"][1:]
    return InvalidParameter, f"{where}: {message}; got {show(value)}"


def fault_from_validation_error(
    exc: ValidationError, *, root: str, model: type[BaseModel] | None = None
) -> IpsFault:
    """The fault for the first error of ``exc``; ``root`` names the request element."""
    error = exc.errors(include_url=False)[0]
    parts = ips_path(model, error["loc"])
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    fault_class = _CUSTOM.get(error["type"])
    if fault_class is not None and ctx.get("field"):
        parts += str(ctx["field"]).split("/")
    field = "/".join(parts) or None
    where = "/".join([root, *parts])
    if fault_class is not None:
        return fault_class(_join(where, str(ctx.get("reason", error["msg"]))), field=field)
    fault_class, reason = _builtin_reason(error, where)
    return fault_class(reason, field=field)


def validate_model(model: type[M], data: Any, *, root: str) -> M:
    """``model.model_validate(data)``, raising the IPS fault for any validation error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise fault_from_validation_error(exc, root=root, model=model) from exc
