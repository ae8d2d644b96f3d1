"""The base model and the XSD-flavoured field types every IPS model is built from.

Arrays (HandleArray, UploadUrlArray...) are tuples in Python; on input they may be a list or
IPS's ``{"items": [...]}``, on output (``model_dump``) they are always ``{"items": [...]}``.
A rule broken inside a validator raises :func:`ips_error`, which names the fault to report.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

__all__ = [
    "XML_TEXT_PATTERN",
    "Array",
    "FaultKind",
    "HttpUrlText",
    "IpsModel",
    "JsonSchemaHint",
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
# The same rule as a JSON Schema (ECMA-262) pattern, for the OpenAPI document; JSON text cannot
# hold surrogates (the JSON API refuses them), so they are not named.
XML_TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$"
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
# An xsd:dateTime must stay a datetime in every zone (offsets are under a day): UTC, the server's
# zone and the caller's are all used, so the first and last day of datetime's range are refused.
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def ips_error(kind: FaultKind, reason: str, field: str | None = None) -> PydanticCustomError:
    """A validation error that reports as the fault ``kind``; ``field`` is relative to the model."""
    return PydanticCustomError(f"ips_{kind}", "{reason}", {"reason": reason, "field": field})


def show(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to ``limit`` characters for fault reasons."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JsonSchemaHint:
    """Keys added to a type's JSON schema (the OpenAPI document) that validation does not use:
    they tell clients and fuzzers the rule a validator checks (with its own fault reason)."""

    def __init__(self, **keys: Any) -> None:
        self.keys = keys

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(core_schema), **self.keys}


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
    if not _EARLIEST <= value <= _LATEST:
        raise ips_error(
            "invalid",
            f"{value.isoformat()} is out of range; give a time from {_EARLIEST.date()} to "
            f"{_LATEST.date()}",
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
            # a key that is not printable (a lone surrogate from JSON) is shown as its repr
            keys = ", ".join(k if k.isprintable() else show(k) for k in sorted(map(str, value)))
            raise ips_error("invalid", f"an array holds only 'items'; got {keys}")
        items = value.get("items")
        if items is None:
            return []
        return items if isinstance(items, list | tuple) else [items]
    return value


def _wrap_items(value: Any, handler: SerializerFunctionWrapHandler) -> Any:
    return {"items": handler(value)}


class _ArrayJsonSchema:
    """The JSON schema of an IPS array: a list, or ``{"items": [...]}`` (or one item)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        listed = handler(core_schema)
        item = listed.get("items", {})
        wrapped = {
            "type": "object",
            "properties": {"items": {"anyOf": [listed, item]} if item else listed},
            "additionalProperties": False,
        }
        if listed.get("minItems"):
            wrapped["required"] = ["items"]
        return {"anyOf": [listed, wrapped]}


_XML_TEXT = JsonSchemaHint(pattern=XML_TEXT_PATTERN)
Text = Annotated[str, AfterValidator(_xml_safe), _XML_TEXT]
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_xml_safe), _XML_TEXT]
# _http_url's rule (and _xml_safe's) as a pattern: http or https, then a host.
_HTTP_URL = JsonSchemaHint(
    pattern="^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@:\\[\\]\\s\\u0000-\\u001F\\uFFFE\\uFFFF]+(:[0-9]*)?"
    "([/?#][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*)?$",
)
HttpUrlText = Annotated[str, AfterValidator(_xml_safe), AfterValidator(_http_url), _HTTP_URL]
XsdBool = Annotated[bool, BeforeValidator(_xsd_bool)]
XsdInt = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
XsdLong = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
XsdDateTime = Annotated[datetime, BeforeValidator(_no_timestamp), AfterValidator(_aware)]
Array = Annotated[
    tuple[T, ...], BeforeValidator(_unwrap_items), WrapSerializer(_wrap_items), _ArrayJsonSchema()
]
NonEmptyArray = Annotated[
    tuple[T, ...],
    Field(min_length=1),
    BeforeValidator(_unwrap_items),
    WrapSerializer(_wrap_items),
    _ArrayJsonSchema(),
]
