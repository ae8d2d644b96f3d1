"""IPS XML in and out: hardened parsing into the request models, and XSD-ordered writing.

Reading refuses, as ``InvalidRequestXml`` (30003): DTDs, entity declarations and external
references (defusedxml), documents over ``max_bytes``, elements nested deeper than ``max_depth``
or more than ``max_elements`` of them, an element with more than :data:`MAX_ATTRIBUTES`
attributes, malformed or undecodable text (an encoding other than the ones expat reads, such as
UTF-7, included), mixed content, repeated elements, and a root that is not ``<root>`` in an IPS
namespace (the base one, or one dated with a real date no later than today).
Element order is not checked on input. What the elements hold is converted and validated by the
target model, so a bad value is the same fault as from a dict: 30001 or 30002.

The walk is driven by the model's fields (:mod:`jobengine.model.fields`), so any IPS operation's
model can be read and written without code of its own.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser
from pydantic import BaseModel, TypeAdapter, ValidationError

from jobengine.errors import InvalidParameter, InvalidRequestXml
from jobengine.model.faults import validate_model
from jobengine.model.fields import FieldShape, field_shapes, find_field
from jobengine.model.request import SUBMIT_JOB_ROOT, SubmitJobRequest

__all__ = [
    "IPS_NAMESPACE",
    "MAX_ATTRIBUTES",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_ELEMENTS",
    "is_ips_namespace",
    "parse_document",
    "parse_element",
    "parse_submit_job",
    "parse_submit_job_xml",
    "parse_submit_jobs",
    "read_xml",
    "to_xml",
]

M = TypeVar("M", bound=BaseModel)

IPS_NAMESPACE = "http://www.scene7.com/IpsApi/xsd"
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 32
MAX_ELEMENTS = 200_000
MAX_ATTRIBUTES = 64  # on one element; IPS requests carry at most xsi:nil

_DATED = re.compile(re.escape(IPS_NAMESPACE) + r"/(\d{4})-(\d{2})-(\d{2})(-beta)?")
_FIRST_VERSION = date(2006, 1, 1)  # before the first IPS API version
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_NAMESPACES = f"{IPS_NAMESPACE} or a dated version such as {IPS_NAMESPACE}/2014-04-03"


def is_ips_namespace(namespace: str) -> bool:
    """Whether ``namespace`` is the base IPS namespace or a dated version of it: a real date,
    not before 2006 nor after today (``.../xsd/2099-99-99`` is no version of anything)."""
    if namespace == IPS_NAMESPACE:
        return True
    match = _DATED.fullmatch(namespace)
    if match is None:
        return False
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    return _FIRST_VERSION <= day <= datetime.now(UTC).date() + timedelta(days=1)


class _LimitedBuilder(ET.TreeBuilder):
    """A TreeBuilder that stops at the depth and element-count limits while parsing."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        super().__init__()
        self._depth = 0
        self._count = 0
        self._max_depth = max_depth
        self._max_elements = max_elements

    def start(self, tag: Any, attrs: dict[Any, Any], /) -> ET.Element:
        self._depth += 1
        self._count += 1
        if len(attrs) > MAX_ATTRIBUTES:
            raise InvalidRequestXml(f"an element has more than {MAX_ATTRIBUTES} attributes")
        if self._depth > self._max_depth:
            raise InvalidRequestXml(f"elements are nested deeper than {self._max_depth} levels")
        if self._count > self._max_elements:
            raise InvalidRequestXml(f"the document holds more than {self._max_elements} elements")
        return super().start(tag, attrs)

    def end(self, tag: Any, /) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def _size(xml: str | bytes, max_bytes: int) -> int:
    if isinstance(xml, bytes) or len(xml) > max_bytes:
        return len(xml)
    return len(xml.encode("utf-8", "surrogatepass"))


def read_xml(
    xml: str | bytes,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> ET.Element:
    """The root element of ``xml``, parsed with every hardening above; InvalidRequestXml if not."""
    if not isinstance(xml, str | bytes):
        raise InvalidRequestXml(f"expected XML as str or bytes; got {type(xml).__name__}")
    size = _size(xml, max_bytes)
    if size > max_bytes:
        raise InvalidRequestXml(f"the document is {size} bytes; at most {max_bytes} are allowed")
    if not xml.strip():
        raise InvalidRequestXml("the document is empty")
    parser = DefusedXMLParser(
        target=_LimitedBuilder(max_depth, max_elements),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(xml)
        root: ET.Element = parser.close()
    except DTDForbidden as exc:
        named = f"; it refers to {exc.sysid}" if exc.sysid else ""
        raise InvalidRequestXml(
            f"a DTD (<!DOCTYPE {exc.name}>) is not allowed in an IPS request{named}"
        ) from None
    except EntitiesForbidden:
        raise InvalidRequestXml("entity declarations are not allowed in an IPS request") from None
    except ExternalReferenceForbidden:
        raise InvalidRequestXml("external references are not allowed in an IPS request") from None
    except ET.ParseError as exc:
        raise InvalidRequestXml(f"malformed XML: {exc}") from None
    except UnicodeError as exc:
        raise InvalidRequestXml(f"the document is not valid text: {exc}") from None
    except (ValueError, LookupError) as exc:  # expat: "multi-byte encodings are not supported"
        raise InvalidRequestXml(
            f"the document's encoding cannot be read ({exc}); send UTF-8"
        ) from None
    return root


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def _has_text(text: str | None) -> bool:
    return text is not None and text.strip() != ""


class _Reader:
    """Turns the children of one document's elements into plain data for its model."""

    def __init__(self, root: str, namespace: str) -> None:
        self.root = root
        self.namespace = namespace

    def where(self, path: list[str]) -> str:
        return "/".join([self.root, *path])

    def local(self, element: ET.Element, path: list[str]) -> str:
        namespace, local = _split(str(element.tag))
        if namespace != self.namespace:
            found = f"namespace {namespace}" if namespace else "no namespace"
            raise InvalidRequestXml(
                f"{self.where([*path, local])} is in {found}; expected {self.namespace}"
            )
        return local

    def complex(self, element: ET.Element, model: type[BaseModel], path: list[str]) -> Any:
        if _has_text(element.text) or any(_has_text(child.tail) for child in element):
            raise InvalidRequestXml(f"{self.where(path)} holds text between elements")
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for child in element:
            local = self.local(child, path)
            shape = find_field(model, local, alias_only=True)
            here = [*path, local]
            if shape is None:
                raise InvalidParameter(
                    f"{self.where(here)} is not a known element", field="/".join(here)
                )
            if local in seen:
                raise InvalidRequestXml(f"{self.where(here)} appears more than once")
            seen.add(local)
            if child.get(_XSI_NIL) in ("true", "1"):
                continue
            if shape.kind == "array":
                out[local] = self.array(child, shape, here)
            else:
                out[local] = self.value(child, shape, here)
        return out

    def array(self, element: ET.Element, shape: FieldShape, path: list[str]) -> list[Any]:
        if _has_text(element.text) or any(_has_text(child.tail) for child in element):
            raise InvalidRequestXml(f"{self.where(path)} holds text between elements")
        items: list[Any] = []
        for number, child in enumerate(element, start=1):
            local = self.local(child, path)
            if local != "items":
                raise InvalidParameter(
                    f"{self.where([*path, local])} is not a known element; "
                    "an array holds repeated <items>",
                    field="/".join([*path, local]),
                )
            if child.get(_XSI_NIL) not in ("true", "1"):
                items.append(self.value(child, shape, [*path, f"items[{number}]"]))
        return items

    def value(self, element: ET.Element, shape: FieldShape, path: list[str]) -> Any:
        model = shape.model
        if model is not None:
            return self.complex(element, model, path)
        if len(element):
            raise InvalidParameter(
                f"{self.where(path)} must hold text, not elements", field="/".join(path)
            )
        text = element.text or ""
        return text if shape.target is str else text.strip()


def parse_element(element: ET.Element, *, root: str, model: type[M]) -> tuple[M, str]:
    """The validated ``model`` for an already parsed ``<root>`` element, and its namespace."""
    namespace, local = _split(str(element.tag))
    if namespace is None:
        raise InvalidRequestXml(f"<{local}> has no namespace; IPS requests use {_NAMESPACES}")
    if not is_ips_namespace(namespace):
        raise InvalidRequestXml(
            f"namespace {namespace} is not an IPS namespace; IPS requests use {_NAMESPACES}"
        )
    if local != root:
        raise InvalidRequestXml(f"the root element is <{local}>; expected <{root}>")
    data = _Reader(root, namespace).complex(element, model, [])
    return validate_model(model, data, root=root), namespace


def parse_document(
    xml: str | bytes,
    *,
    root: str,
    model: type[M],
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
) -> tuple[M, str]:
    """The validated ``model`` read from an IPS XML document, and the namespace it used."""
    element = read_xml(xml, max_bytes=max_bytes, max_depth=max_depth)
    return parse_element(element, root=root, model=model)


def parse_submit_job_xml(xml: str | bytes) -> SubmitJobRequest:
    """A SubmitJobRequest from a ``<submitJobParam>`` document."""
    return parse_document(xml, root=SUBMIT_JOB_ROOT, model=SubmitJobRequest)[0]


def _lexical(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if not isinstance(value, float) else repr(value)


def _put(element: ET.Element, value: Any, namespace: str) -> None:
    if isinstance(value, BaseModel):
        _write(element, value, namespace)
    else:
        element.text = _lexical(value)


def _write(parent: ET.Element, model: BaseModel, namespace: str) -> None:
    for shape in field_shapes(type(model)):
        value = getattr(model, shape.name)
        if value is None:
            continue
        element = ET.SubElement(parent, f"{{{namespace}}}{shape.alias}")
        if shape.kind == "array":
            for item in value:
                _put(ET.SubElement(element, f"{{{namespace}}}items"), item, namespace)
        else:
            _put(element, value, namespace)


def to_xml(model: BaseModel, *, root: str, namespace: str = IPS_NAMESPACE) -> bytes:
    """``model`` as a UTF-8 ``<root>`` document: XSD element order, ``items`` for arrays."""
    element = ET.Element(f"{{{namespace}}}{root}")
    _write(element, model, namespace)
    data: bytes = ET.tostring(
        element, encoding="utf-8", xml_declaration=True, default_namespace=namespace
    )
    return data


def parse_submit_job(data: SubmitJobRequest | Mapping[str, Any] | str | bytes) -> SubmitJobRequest:
    """A validated SubmitJobRequest from a model, a mapping (IPS or Python names) or IPS XML.

    Raises one :class:`~jobengine.errors.IpsFault` for anything invalid.
    """
    if isinstance(data, str | bytes):
        return parse_submit_job_xml(data)
    if isinstance(data, SubmitJobRequest):
        data = data.model_dump(exclude_none=True)
    if not isinstance(data, Mapping):
        raise InvalidParameter(
            f"{SUBMIT_JOB_ROOT} must be a mapping or IPS XML; got {type(data).__name__}"
        )
    inner = data.get(SUBMIT_JOB_ROOT)
    if len(data) == 1 and isinstance(inner, Mapping):
        data = inner
    return validate_model(SubmitJobRequest, dict(data), root=SUBMIT_JOB_ROOT)


_REQUESTS = TypeAdapter(list[SubmitJobRequest])


def parse_submit_jobs(data: Sequence[Any]) -> list[SubmitJobRequest] | None:
    """:func:`parse_submit_job` of each of ``data`` at once, when they are all plain dicts
    (a bulk submission's usual input): one validation of the list, about 30% less than one
    call each. None when they are not all dicts or any of them is invalid: the caller then
    parses them one by one, which raises the first bad one's fault as ever."""
    if not all(type(one) is dict for one in data):
        return None
    unwrapped = [
        dict(one[SUBMIT_JOB_ROOT])
        if len(one) == 1 and isinstance(one.get(SUBMIT_JOB_ROOT), Mapping)
        else one
        for one in data
    ]
    try:
        return _REQUESTS.validate_python(unwrapped)
    except ValidationError:
        return None
