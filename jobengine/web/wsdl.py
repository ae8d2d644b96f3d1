"""The WSDL (``GET /scene7/webservice/IpsApi.wsdl``) with its XSD generated from the models.

Input types come from the pydantic models (:mod:`jobengine.web.params`, SubmitJobRequest and
every payload and option type) through their field shapes, so the schema cannot drift from what
the server reads: fields in declaration (XSD) order, optional fields ``minOccurs="0"``, arrays as
``<XArray>`` of repeated ``items``, enums as string restrictions. The return types (section 5)
are declared in :data:`RESULT_TYPES` next to what :mod:`jobengine.web.results` writes, in the
real schema's element order and with its required elements (no ``minOccurs="0"``): the server
always writes those.

Document/literal, with ``authHeader`` as a SOAP header. The undated WSDL is all in the base
namespace. A dated one (``IpsApi-<date>.wsdl``) describes that version as it is: its operations
in the dated namespace; its ``authHeader`` in the base namespace up to 2013-02-15
(:data:`AUTH_HEADER`), and from 2016-01-14-beta on in the dated namespace, its fields reordered
(:data:`DATED_AUTH_HEADER`, :data:`DATED_AUTH_HEADER_SINCE`). The faults stay in the base
namespace. The server reads an authHeader in either namespace whatever the WSDL says.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from jobengine.model import SubmitJobRequest, UploadPostJob
from jobengine.model.fields import field_shapes
from jobengine.model.ipsxml import IPS_NAMESPACE, is_ips_namespace
from jobengine.settings import SOAP_PATH, get_settings
from jobengine.web.service import OPERATIONS

__all__ = [
    "AUTH_HEADER",
    "DATED_AUTH_HEADER",
    "DATED_AUTH_HEADER_SINCE",
    "RESULT_TYPES",
    "RETURNS",
    "wsdl_document",
    "wsdl_endpoint",
]

S, N, L, D, B, T = "xsd:string", "xsd:int", "xsd:long", "xsd:double", "xsd:boolean", "xsd:dateTime"
_LEAVES: dict[Any, str] = {str: S, int: N, float: D, bool: B, datetime: T}
FAULTS = ("authenticationFault", "authorizationFault", "ipsApiFault")

# name -> [(element, type, required)], in XSD order; an "Array" type is generated for "tns:X[]"
Fields = list[tuple[str, str, bool]]


def _payload_echoes(*, upload_post: bool = False) -> Fields:
    """The optional job payload echo of ActiveJob and ScheduledJob, in submitJob's order;
    ActiveJob's (``upload_post``) also has uploadPostJob, after uploadUrlsJob, as IPS does."""
    echoes: Fields = []
    for shape in field_shapes(SubmitJobRequest):
        if shape.model is None:
            continue
        echoes.append((shape.alias, f"tns:{shape.model.__name__}", False))
        if upload_post and shape.alias == "uploadUrlsJob":
            echoes.append(("uploadPostJob", f"tns:{UploadPostJob.__name__}", False))
    return echoes


RESULT_TYPES: dict[str, Fields] = {
    "TaskItemProgress": [
        ("itemName", S, True), ("progress", D, True), ("progressMessage", S, True),
        ("lastProgressUpdate", T, True),
    ],
    "TaskProgress": [
        ("taskType", S, True), ("taskState", S, True), ("numProcessed", N, True),
        ("numProcessing", N, True), ("numPending", N, True), ("progress", D, True),
        ("progressMessage", S, True), ("lastProgressUpdate", T, True),
        ("taskItemProgressArray", "tns:TaskItemProgress[]", True),
    ],
    "ActiveJob": [
        ("companyHandle", S, True), ("jobHandle", S, True), ("name", S, True),
        ("originalName", S, True), ("type", S, True), ("state", S, True),
        ("submitUserEmail", S, True), ("locale", S, False), ("description", S, False),
        ("serverName", S, True), ("startDate", T, True), ("triggerTime", T, True),
        ("totalSize", N, True), ("progress", N, True), ("progressMessage", S, True),
        ("lastProgressUpdate", T, True), ("taskProgressArray", "tns:TaskProgress[]", True),
        *_payload_echoes(upload_post=True),
    ],
    "ScheduledJob": [
        ("companyHandle", S, True), ("jobHandle", S, True), ("name", S, True),
        ("originalName", S, True), ("type", S, True), ("submitUserEmail", S, True),
        ("locale", S, False), ("description", S, False), ("execSchedule", S, False),
        ("nextFireTime", T, False), ("timeZone", S, False), ("triggerState", S, False),
        *_payload_echoes(),
    ],
    "JobLogDetailAux": [("logMessage", S, True), ("logType", S, True), ("dateCreated", T, False)],
    "JobLogDetail": [
        ("logMessage", S, True), ("logType", S, True), ("dateCreated", T, True),
        ("assetName", S, False), ("assetType", S, False), ("assetHandle", S, False),
        ("auxArray", "tns:JobLogDetailAux[]", False),
    ],
    "JobLog": [
        ("companyHandle", S, True), ("jobHandle", S, True), ("jobName", S, True),
        ("originalJobName", S, True), ("submitUserEmail", S, True), ("logType", S, True),
        ("jobSubType", S, True), ("startDate", T, False), ("endDate", T, False),
        ("description", S, True), ("fileSuccessCount", N, True), ("fileErrorCount", N, True),
        ("fileWarningCount", N, True), ("fileDuplicateCount", N, True),
        ("fileUpdateCount", N, True), ("totalFileCount", N, True),
        ("transferSuccessCount", N, True), ("transferErrorCount", N, True),
        ("transferWarningCount", N, True), ("fatalError", B, True),
        ("detailTotalRows", N, False), ("detailArray", "tns:JobLogDetail[]", False),
    ],
    "AssetJobLog": [
        ("jobHandle", S, True), ("jobName", S, True), ("logMessage", S, True),
        ("logType", S, True), ("submitUserEmail", S, True), ("logDate", T, True),
        ("auxArray", "tns:JobLogDetailAux[]", False),
    ],
    "ImageFormat": [("imageFormatHandle", S, True), ("name", S, True), ("urlModifier", S, True)],
    "Fault": [("code", N, True), ("reason", S, True)],
}  # fmt: skip

# The authHeader of the base namespace and of the dated ones before 2016-01-14-beta: accessToken
# and samlResponse, which the server also reads, come last.
AUTH_HEADER: Fields = [
    ("user", S, False), ("password", S, False), ("locale", S, False), ("appName", S, False),
    ("appVersion", S, False), ("gzipResponse", B, False), ("faultHttpStatusCode", N, False),
    ("accessToken", S, False), ("samlResponse", S, False),
]  # fmt: skip
# From 2016-01-14-beta on: in the dated namespace, in this order, appName and appVersion
# required (what generated stubs send; the server does not insist on them).
DATED_AUTH_HEADER_SINCE = date(2016, 1, 14)
DATED_AUTH_HEADER: Fields = [
    ("user", S, False), ("password", S, False), ("accessToken", S, False),
    ("samlResponse", S, False), ("locale", S, False), ("appName", S, True),
    ("appVersion", S, True), ("gzipResponse", B, False), ("faultHttpStatusCode", N, False),
]  # fmt: skip

# <op>Return contents; an operation not named here returns an empty element
RETURNS: dict[str, Fields] = {
    "submitJob": [("jobHandle", S, True)],
    "getActiveJobs": [("jobArray", "tns:ActiveJob[]", True)],
    "getScheduledJobs": [("jobArray", "tns:ScheduledJob[]", True)],
    "getJobLogs": [("jobLogArray", "tns:JobLog[]", True)],
    "getJobLogDetails": [("jobLogArray", "tns:JobLog[]", True)],
    "getAssetJobLogs": [("jobLogArray", "tns:AssetJobLog[]", True)],
    "saveImageFormat": [("imageFormatHandle", S, True)],
    "getImageFormats": [("imageFormatArray", "tns:ImageFormat[]", True)],
}


class _Schema:
    """Collects named XSD types, generating each model's and enum's type once."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}

    def sequence(self, name: str, fields: Fields) -> str:
        if name not in self.types:
            self.types[name] = ""  # claimed first: a model may refer to itself
            self.types[name] = _complex(name, [(n, self.ref(t), r) for n, t, r in fields])
        return f"tns:{name}"

    def ref(self, type_ref: str) -> str:
        """``tns:X[]`` becomes the generated ``tns:XArray``; other refs are kept."""
        if not type_ref.endswith("[]"):
            return type_ref
        item = type_ref.removesuffix("[]")
        local = item.partition(":")[2]
        name = f"{local[:1].upper()}{local[1:]}Array"
        return self.sequence(name, [("items", item + "*", False)])

    def enum(self, tp: type[Enum]) -> str:
        if tp.__name__ not in self.types:
            values = "".join(f"<xsd:enumeration value={quoteattr(str(m.value))}/>" for m in tp)
            self.types[tp.__name__] = (
                f'<xsd:simpleType name="{tp.__name__}"><xsd:restriction base="xsd:string">'
                f"{values}</xsd:restriction></xsd:simpleType>"
            )
        return f"tns:{tp.__name__}"

    def leaf(self, tp: Any) -> str:
        if isinstance(tp, type) and issubclass(tp, Enum):
            return self.enum(tp)
        for base, xsd in _LEAVES.items():
            if isinstance(tp, type) and issubclass(tp, base) and not (base is int and tp is bool):
                return xsd
        return S

    def model(self, model: type[BaseModel], name: str | None = None) -> str:
        if (name or model.__name__) in self.types:
            return f"tns:{name or model.__name__}"
        fields: Fields = []
        for shape in field_shapes(model):
            item = self.model(shape.model) if shape.model is not None else self.leaf(shape.target)
            fields.append((shape.alias, item + "[]" if shape.kind == "array" else item,
                           shape.required))  # fmt: skip
        return self.sequence(name or model.__name__, fields)


def _complex(name: str, fields: Fields) -> str:
    parts = []
    for element, type_ref, required in fields:
        repeated = type_ref.endswith("*")
        occurs = "" if required else ' minOccurs="0"'
        occurs += ' maxOccurs="unbounded"' if repeated else ""
        parts.append(f'<xsd:element name="{element}" type="{type_ref.rstrip("*")}"{occurs}/>')
    return f'<xsd:complexType name="{name}"><xsd:sequence>{"".join(parts)}</xsd:sequence>' + (
        "</xsd:complexType>"
    )


def _dated_auth_header(namespace: str) -> bool:
    """Whether this version's authHeader is in its own (dated) namespace: 2016-01-14-beta on."""
    match = _DATE.search(namespace) if namespace != IPS_NAMESPACE else None
    if match is None:
        return False
    year, month, day = (int(part) for part in match.groups())
    return date(year, month, day) >= DATED_AUTH_HEADER_SINCE


_DATE = re.compile(r"/(\d{4})-(\d{2})-(\d{2})(?:-beta)?$")


def _auth_header(schema: _Schema, fields: Fields) -> list[str]:
    header = schema.sequence("AuthHeader", fields)
    return [f'<xsd:element name="authHeader" type="{header}"/>']


def _faults(schema: _Schema) -> list[str]:
    fault = schema.sequence("Fault", RESULT_TYPES["Fault"])
    return [f'<xsd:element name="{name}" type="{fault}"/>' for name in FAULTS]


def _xsd(namespace: str, schema: _Schema, elements: list[str]) -> str:
    return (
        f'<xsd:schema targetNamespace="{namespace}" elementFormDefault="qualified">'
        + "".join(schema.types.values())
        + "".join(elements)
        + "</xsd:schema>"
    )


def _schema(namespace: str = IPS_NAMESPACE) -> str:
    """The types: one schema in the base namespace; for a dated namespace, the operations (and
    from 2016-01-14-beta on, authHeader) in a schema of their own, beside the base one that
    holds the faults (and before 2016-01-14-beta, authHeader)."""
    schema = _Schema()
    dated = namespace != IPS_NAMESPACE
    own_header = _dated_auth_header(namespace)
    elements: list[str] = []
    if own_header:
        elements += _auth_header(schema, DATED_AUTH_HEADER)
    elif not dated:
        elements += _auth_header(schema, AUTH_HEADER) + _faults(schema)
    schema.model(UploadPostJob)  # echoed by ActiveJob, never submitted
    for name, fields in RESULT_TYPES.items():
        if not (dated and name == "Fault"):
            schema.sequence(name, fields)
    for op in OPERATIONS.values():
        param = schema.model(op.param, None if op.param is SubmitJobRequest else f"{op.name}Param")
        result = schema.sequence(f"{op.name}Return", RETURNS.get(op.name, []))
        elements.append(f'<xsd:element name="{op.name}Param" type="{param}"/>')
        elements.append(f'<xsd:element name="{op.name}Return" type="{result}"/>')
    ops = _xsd(namespace, schema, elements)
    if not dated:
        return ops
    base = _Schema()
    parts = ([] if own_header else _auth_header(base, AUTH_HEADER)) + _faults(base)
    return _xsd(IPS_NAMESPACE, base, parts).replace('"tns:', '"ips:') + ops


def _messages(base: str = "tns", header: str = "tns") -> str:
    out = [f'<wsdl:message name="authHeader"><wsdl:part name="authHeader" '
           f'element="{header}:authHeader"/></wsdl:message>']  # fmt: skip
    out += [f'<wsdl:message name="{f}"><wsdl:part name="fault" element="{base}:{f}"/>'
            "</wsdl:message>" for f in FAULTS]  # fmt: skip
    for op in OPERATIONS:
        for suffix, element in (("Request", "Param"), ("Response", "Return")):
            out.append(f'<wsdl:message name="{op}{suffix}"><wsdl:part name="parameters" '
                       f'element="tns:{op}{element}"/></wsdl:message>')  # fmt: skip
    return "".join(out)


def _operations(binding: bool) -> str:
    out = []
    for op in OPERATIONS:
        if binding:
            faults = "".join(f'<wsdl:fault name="{f}"><soap:fault name="{f}" use="literal"/>'
                             "</wsdl:fault>" for f in FAULTS)  # fmt: skip
            out.append(
                f'<wsdl:operation name="{op}"><soap:operation soapAction="{op}"/><wsdl:input>'
                '<soap:header message="tns:authHeader" part="authHeader" use="literal"/>'
                '<soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/>'
                f"</wsdl:output>{faults}</wsdl:operation>"
            )
        else:
            faults = "".join(f'<wsdl:fault name="{f}" message="tns:{f}"/>' for f in FAULTS)
            out.append(
                f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}Request"/>'
                f'<wsdl:output message="tns:{op}Response"/>{faults}</wsdl:operation>'
            )
    return "".join(out)


@cache
def wsdl_document(location: str, namespace: str = IPS_NAMESPACE) -> bytes:
    """The WSDL, its service at ``location``; ``namespace`` is the base or a dated IPS one
    (``IpsApi-2014-04-03.wsdl``), in which the operations' elements then are."""
    base = "tns" if namespace == IPS_NAMESPACE else "ips"
    header = "tns" if namespace == IPS_NAMESPACE or _dated_auth_header(namespace) else "ips"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:ips="{IPS_NAMESPACE}" xmlns:tns="{namespace}" targetNamespace="{namespace}">'
        f"<wsdl:types>{_schema(namespace)}</wsdl:types>{_messages(base, header)}"
        f'<wsdl:portType name="IpsApiPortType">{_operations(binding=False)}</wsdl:portType>'
        '<wsdl:binding name="IpsApiSoapBinding" type="tns:IpsApiPortType">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{_operations(binding=True)}</wsdl:binding>"
        '<wsdl:service name="IpsApiService"><wsdl:port name="IpsApiSoapPort" '
        f'binding="tns:IpsApiSoapBinding"><soap:address location={quoteattr(location)}/>'
        "</wsdl:port></wsdl:service></wsdl:definitions>"
    ).encode()


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST = re.compile(
    r"(?P<name>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)


def service_location(request: Request) -> str | None:
    """The SOAP endpoint the WSDL names: under ``JOBENGINE_PUBLIC_URL`` when set, else on the
    request's ``Host`` if it is ``localhost``, a loopback address or one of
    ``JOBENGINE_ALLOWED_HOSTS``; None for any other Host (a forged one must not reach a cache)."""
    settings = get_settings()
    if settings.soap_endpoint_url:
        return settings.soap_endpoint_url
    match = _HOST.fullmatch(request.headers.get("host", ""))
    if match is None:
        return None
    name = match.group("name").lower().rstrip(".").strip("[]")
    if name not in _LOCAL_HOSTS and name not in settings.allowed_hosts:
        return None
    return f"{request.url.scheme}://{match.group(0)}{SOAP_PATH}"


async def wsdl_endpoint(request: Request) -> Response:
    """``GET /scene7/webservice/IpsApi.wsdl`` (or ``IpsApi-<yyyy-mm-dd>.wsdl`` for a dated
    namespace): the service address is :func:`service_location`'s."""
    location = service_location(request)
    if location is None:
        return Response(
            "this Host is not served: set JOBENGINE_PUBLIC_URL or JOBENGINE_ALLOWED_HOSTS\n",
            400,
            media_type="text/plain",
        )
    version = request.path_params.get("version")
    namespace = IPS_NAMESPACE if version is None else f"{IPS_NAMESPACE}/{version}"
    if not is_ips_namespace(namespace):
        return Response(f"no WSDL for IPS version {version!r}\n", 404, media_type="text/plain")
    return Response(wsdl_document(location, namespace), media_type="text/xml; charset=utf-8")
