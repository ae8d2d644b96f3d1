"""The base model and the XSD-flavoured field types every IPS model is built from.

Arrays (HandleArray, UploadUrlArray...) are tuples in Python; on input they may be a list or
IPS's ``{"items": [...]}``, on output (``model_dump``) they are always ``{"items": [...]}``.
A rule broken inside a validator raises :func:`ips_error`, which names the fault to report.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = [
    "Array",
    "FaultKind",
    "HttpUrlText",
    "IpsModel",
    "NonEmptyArray",
    "NonEmptyText",
    "Text",
    "XsdBool",
    "XsdDateTime",
    "XsdInt",
    "XsdLong",
    "ips_error",
    "show",
]

T = TypeVar("T")

FaultKind = Literal["invalid", "missing", "not_supported", "limit"]

# Characters XML 1.0 cannot carry: C0 controls except tab, LF, CR; surrogates; U+FFFE, U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def ips_error(kind: FaultKind, reason: str, field: str | None = None) -> PydanticCustomError:
    """A validation error that reports as the fault ``kind``; ``field`` is relative to the model."""
    return PydanticCustomError(f"ips_{kind}", "{reason}", {"reason": reason, "field": field})


def show(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to ``limit`` characters for fault reasons."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class IpsModel(BaseModel):
    """Base of every IPS model: frozen, no unknown fields, IPS element names as aliases."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
    )


def _xml_safe(value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise ips_error("invalid", f"holds {bad.group()!r}, a character XML cannot carry")
    return value


def _xsd_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = value.strip() if isinstance(value, str) else value
    if text in ("true", "1", 1):
        return True
    if text in ("false", "0", 0):
        return False
    raise ips_error("invalid", f"must be an xsd:boolean (true, false, 1 or 0); got {show(value)}")


def _no_timestamp(value: Any) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ips_error("invalid", f"must be an xsd:dateTime string; got {show(value)}")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ips_error(
            "invalid",
            f"{value.isoformat()} has no timezone; give one, e.g. 2030-01-01T12:00:00Z or +02:00",
        )
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ips_error("invalid", f"must be an absolute http or https URL; got {show(value)}")
    return value


def _unwrap_items(value: Any) -> Any:
    """Accepts ``[...]``, ``{"items": [...]}``, ``{"items": x}`` and ``{}`` for an array."""
    if isinstance(value, dict):
        if not set(value) <= {"items"}:
            keys = ", ".join(sorted(map(str, value)))
            raise ips_error("invalid", f"an array holds only 'items'; got {keys}")
        items = value.get("items")
        if items is None:
            return []
        return items if isinstance(items, list | tuple) else [items]
    return value


def _wrap_items(value: Any, handler: SerializerFunctionWrapHandler) -> Any:
    return {"items": handler(value)}


Text = Annotated[str, AfterValidator(_xml_safe)]
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_xml_safe)]
HttpUrlText = Annotated[str, AfterValidator(_xml_safe), AfterValidator(_http_url)]
XsdBool = Annotated[bool, BeforeValidator(_xsd_bool)]
XsdInt = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
XsdLong = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
XsdDateTime = Annotated[datetime, BeforeValidator(_no_timestamp), AfterValidator(_aware)]
Array = Annotated[tuple[T, ...], BeforeValidator(_unwrap_items), WrapSerializer(_wrap_items)]
NonEmptyArray = Annotated[
    tuple[T, ...], Field(min_length=1), BeforeValidator(_unwrap_items), WrapSerializer(_wrap_items)
]
