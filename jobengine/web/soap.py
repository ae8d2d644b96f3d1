"""SOAP 1.1 document/literal: ``POST /scene7/services/IpsApiService``.

The envelope is read by the hardened reader (:func:`jobengine.model.ipsxml.read_xml`: no DTDs or
entities, size, depth and count limits; 30003 otherwise). The Body holds one ``<op>Param`` in any
IPS namespace version; the answer is ``<op>Return`` in the same namespace. A fault is a
``soapenv:Fault`` whose ``detail`` holds the IPS fault element (base namespace) with ``code`` and
``reason``; its HTTP status is 500, or ``authHeader/faultHttpStatusCode`` (one that cannot
carry a body, 1xx, 204, 205 or 304, is sent as 200: :func:`fault_http_status`).

The ``authHeader`` header (the base IPS namespace, as 2013-02-15 clients send it, or a dated one,
as stubs of 2016-01-14-beta and later do; fields in any order) is read for ``user``,
``password``, ``locale``, ``gzipResponse``, ``faultHttpStatusCode``, ``accessToken``,
``samlResponse``, ``appName`` and ``appVersion`` (the last two only name the client: submitJob
records them for each run's ``JobClient`` row). The caller is authenticated by the first of
these that is given (an empty element counts as absent), the others are not looked at:

1. ``user`` / ``password``: :func:`jobengine.access.auth.authenticate` (a header with a user *and*
an
   accessToken is fine: the user and password are used);
2. ``accessToken``: an API token (``je_...``), as ``Authorization: Bearer``;
3. ``samlResponse``: a base64 SAML 2.0 Response or Assertion signed by the configured identity
   provider (:func:`jobengine.access.auth.authenticate_saml`, :mod:`jobengine.access.saml`);
4. the HTTP ``Authorization`` header: Basic, or Bearer with an API token.

``gzipResponse`` true (``true`` or ``1``, the xsd:boolean forms; anything else is false)
gzip-compresses the answer, a fault too, with ``Content-Encoding: gzip``, once the header could
be read.

:func:`handle_call` is the one path of an XML call, whatever carries it: a :class:`Framing`
says where the authHeader and the operation's element are in a request document and how an
answer and a fault are written. SOAP is :data:`SOAP_FRAMING`; the plain-XML endpoint
(:mod:`jobengine.web.plainxml`) has its own framing and shares everything else.
"""

from __future__ import annotations

import gzip
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobengine.errors import InvalidRequestXml, IpsFault, ServerError, Unavailable
from jobengine.i18n import operation_locale
from jobengine.model.ipsxml import IPS_NAMESPACE, is_ips_namespace, parse_element, read_xml
from jobengine.web.http import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    caller_from,
    client_address,
    read_body,
)
from jobengine.web.service import OPERATION_CLIENT, OPERATION_LOCALE, OPERATIONS, Operation

__all__ = [
    "SOAP_ENV",
    "SOAP_FRAMING",
    "Framing",
    "SoapAnswer",
    "fault_element",
    "handle_call",
    "handle_soap",
    "is_auth_header",
    "serve_xml",
    "soap_endpoint",
]

logger = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CONTENT_TYPE = "text/xml; charset=utf-8"
FAULT_STRINGS = {
    "authenticationFault": "AuthenticationException",
    "authorizationFault": "AuthorizationException",
    "ipsApiFault": "IpsApiException",
}


def _split(tag: object) -> tuple[str | None, str]:
    text = str(tag)
    if text.startswith("{"):
        namespace, _, local = text[1:].partition("}")
        return namespace, local
    return None, text


@dataclass(frozen=True)
class _AuthHeader:
    user: str | None = None
    password: str | None = None
    locale: str | None = None
    fault_status: int | None = None
    gzip: bool = False
    access_token: str | None = None
    saml_response: str | None = None
    client: str | None = None  # "appName appVersion", whichever are given


def _boolean(value: str | None) -> bool:
    """xsd:boolean: ``true`` or ``1`` (whitespace collapsed) is true, anything else false."""
    return value is not None and value.strip() in ("true", "1")


def is_auth_header(element: ET.Element) -> bool:
    """Whether ``element`` is an ``authHeader`` in the base or a dated IPS namespace."""
    namespace, local = _split(element.tag)
    return local == "authHeader" and namespace is not None and is_ips_namespace(namespace)


def _auth_header(block: ET.Element | None) -> _AuthHeader:
    """The fields of an ``authHeader`` element (None: no header)."""
    if block is None:
        return _AuthHeader()
    fields = {_split(child.tag)[1]: (child.text or "") for child in block}
    client = " ".join(
        f for f in (fields.get("appName"), fields.get("appVersion")) if f and f.strip()
    )
    return _AuthHeader(
        user=fields.get("user"),
        password=fields.get("password"),
        locale=fields.get("locale"),
        fault_status=fault_http_status(fields.get("faultHttpStatusCode")),
        gzip=_boolean(fields.get("gzipResponse")),
        access_token=fields.get("accessToken"),
        saml_response=fields.get("samlResponse"),
        client=" ".join(client.split()) or None,
    )


# Statuses whose answers carry no body (RFC 9110: 1xx, 204, 205; 304): a fault cannot be sent
# with them, so it goes with 200, what a client asking for another status than 500 wants.
_NO_BODY = frozenset({204, 205, 304})
_STATUS = re.compile(r"[0-9]{3}")


def fault_http_status(value: str | None) -> int | None:
    """The HTTP status of a fault from ``authHeader/faultHttpStatusCode``: 100-599 as asked,
    except those that cannot carry a body (1xx, 204, 205, 304), which become 200; anything
    else (out of range, not three ASCII digits) is ignored (None: the default 500)."""
    text = (value or "").strip()
    if not _STATUS.fullmatch(text) or not 100 <= int(text) <= 599:
        return None
    status = int(text)
    return 200 if status < 200 or status in _NO_BODY else status


def _soap_parts(root: ET.Element) -> tuple[ET.Element | None, ET.Element]:
    """The authHeader block of the envelope's Header (or None) and the one element in Body."""
    header, payload = _envelope_parts(root)
    block = next((b for b in header if is_auth_header(b)), None) if header is not None else None
    return block, payload


def _envelope_parts(root: ET.Element) -> tuple[ET.Element | None, ET.Element]:
    """The Header (or None) and the one element inside Body."""
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise InvalidRequestXml(f"the root element is {root.tag}; expected a SOAP 1.1 Envelope")
    parts = [_split(child.tag)[1] if _split(child.tag)[0] == SOAP_ENV else None for child in root]
    if parts not in (["Body"], ["Header", "Body"]):  # one Body, after at most one Header
        raise InvalidRequestXml(
            "a SOAP envelope holds one optional Header and then one Body, nothing else"
        )
    header = root.find(f"{{{SOAP_ENV}}}Header")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    payload = list(body)
    if len(payload) != 1:
        raise InvalidRequestXml(f"the SOAP Body holds {len(payload)} elements; expected one")
    return header, payload[0]


def _operation(element: ET.Element) -> tuple[Operation, str]:
    namespace, local = _split(element.tag)
    if namespace is None or not is_ips_namespace(namespace):
        found = f"namespace {namespace}" if namespace else "no namespace"
        raise InvalidRequestXml(
            f"<{local}> is in {found}; IPS requests use {IPS_NAMESPACE} or a dated version of it"
        )
    op = OPERATIONS.get(local.removesuffix("Param")) if local.endswith("Param") else None
    if op is None:
        raise InvalidRequestXml(f"<{local}> is not a known IPS job operation request")
    return op, namespace


def _lexical(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _put(parent: ET.Element, name: str, value: Any, namespace: str) -> None:
    if value is None:
        return
    element = ET.SubElement(parent, f"{{{namespace}}}{name}")
    if isinstance(value, dict):
        for key, child in value.items():
            _put(element, key, child, namespace)
    elif isinstance(value, list | tuple):
        for item in value:
            _put(element, "items", item, namespace)
    else:
        element.text = _lexical(value)


def return_element(name: str, tree: dict[str, Any], namespace: str) -> bytes:
    """``<name>`` in ``namespace`` (as default namespace) holding ``tree``, no declaration."""
    element = ET.Element(f"{{{namespace}}}{name}")
    for key, value in tree.items():
        _put(element, key, value, namespace)
    data: bytes = ET.tostring(element, encoding="utf-8", default_namespace=namespace,
                              xml_declaration=False)  # fmt: skip
    return data


def envelope(body: bytes) -> bytes:
    """A SOAP 1.1 envelope around ``body``."""
    return (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<soapenv:Envelope xmlns:soapenv="' + SOAP_ENV.encode() + b'"><soapenv:Body>'
        + body + b"</soapenv:Body></soapenv:Envelope>"
    )  # fmt: skip


def fault_element(fault: IpsFault) -> bytes:
    """The IPS fault element (base namespace) with ``code`` and ``reason``."""
    return return_element(fault.fault, {"code": fault.code, "reason": fault.reason},
                          IPS_NAMESPACE)  # fmt: skip


def fault_envelope(fault: IpsFault) -> bytes:
    """The ``soapenv:Fault`` for ``fault``; ``detail`` holds the IPS fault element."""
    code = "soapenv:Server" if fault.code == 30000 else "soapenv:Client"
    name = FAULT_STRINGS.get(fault.fault, "Exception")
    return envelope(
        f"<soapenv:Fault><faultcode>{code}</faultcode><faultstring>{name}</faultstring>".encode()
        + b"<detail>" + fault_element(fault) + b"</detail></soapenv:Fault>"
    )  # fmt: skip


@dataclass(frozen=True)
class SoapAnswer:
    """One response: the document (uncompressed), its HTTP status, and whether to gzip it."""

    body: bytes
    status: int
    gzip: bool = False

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        """The bytes to send and the headers that describe them (``Content-Encoding``)."""
        if not self.gzip:
            return self.body, {}
        return gzip.compress(self.body, compresslevel=6), {"Content-Encoding": "gzip"}


@dataclass(frozen=True)
class Framing:
    """How one XML surface carries the IPS elements of a call.

    ``parts`` takes the parsed request document to its authHeader element (None if it has
    none) and the operation's ``<op>Param`` element, raising InvalidRequestXml (30003) for any
    other shape; ``answer`` makes the response document of an ``<op>Return`` element;
    ``fault`` the document of a fault.
    """

    parts: Callable[[ET.Element], tuple[ET.Element | None, ET.Element]]
    answer: Callable[[bytes], bytes]
    fault: Callable[[IpsFault], bytes]


SOAP_FRAMING = Framing(parts=_soap_parts, answer=envelope, fault=fault_envelope)


def handle_call(
    body: bytes,
    framing: Framing,
    authorization: str | None,
    client: str = "",
    accept_language: str | None = None,
) -> SoapAnswer:
    """The response document and HTTP status for one request body (blocking: runs the op).

    ``client`` (the remote address) keys the failed-login limiter with the user name; the
    operation locale is ``authHeader/locale``, else ``accept_language``. The answer is to be
    gzipped when ``authHeader/gzipResponse`` asked for it (a fault too, once the header is read).
    """
    auth = _AuthHeader()
    try:
        block, payload = framing.parts(read_xml(body, max_bytes=MAX_BODY_BYTES))
        auth = _auth_header(block)
        op, namespace = _operation(payload)
        caller = caller_from(
            auth.user,
            auth.password,
            authorization,
            client=client,
            access_token=auth.access_token,
            saml_response=auth.saml_response,
        )
        params, _ = parse_element(payload, root=f"{op.name}Param", model=op.param)
        locale = OPERATION_LOCALE.set(operation_locale(auth.locale, accept_language))
        app = OPERATION_CLIENT.set(auth.client)
        try:
            tree = op.run(caller, params)
        finally:
            OPERATION_CLIENT.reset(app)
            OPERATION_LOCALE.reset(locale)
        answer = framing.answer(return_element(f"{op.name}Return", tree, namespace))
        return SoapAnswer(answer, 200, auth.gzip)
    except IpsFault as fault:
        return SoapAnswer(framing.fault(fault), auth.fault_status or 500, auth.gzip)
    except Unavailable as outage:  # the store is down (e.g. while authenticating)
        return SoapAnswer(framing.fault(outage.as_fault()), auth.fault_status or 500, auth.gzip)
    except Exception:
        logger.exception("IPS XML request failed")
        unexpected = ServerError("the server could not process the request")
        return SoapAnswer(framing.fault(unexpected), auth.fault_status or 500, auth.gzip)


def handle_soap(
    body: bytes, authorization: str | None, client: str = "", accept_language: str | None = None
) -> SoapAnswer:
    """:func:`handle_call` for a SOAP 1.1 envelope."""
    return handle_call(body, SOAP_FRAMING, authorization, client, accept_language)


def _answer(
    body: bytes,
    framing: Framing,
    authorization: str | None,
    client: str,
    accept_language: str | None,
) -> tuple[bytes, int, dict[str, str]]:
    answer = handle_call(body, framing, authorization, client, accept_language)
    content, headers = answer.encoded()
    return content, answer.status, headers


async def serve_xml(request: Request, framing: Framing) -> Response:
    """One XML call over HTTP: the capped body, then :func:`handle_call` in a thread."""
    try:
        body = await read_body(request)
    except BodyTooLarge as fault:
        return Response(framing.fault(fault), 413, media_type=CONTENT_TYPE,
                        headers={"Connection": "close"})  # fmt: skip
    content, status, headers = await run_in_threadpool(
        _answer,
        body,
        framing,
        request.headers.get("authorization"),
        client_address(request),
        request.headers.get("accept-language"),
    )
    return Response(content, status, media_type=CONTENT_TYPE, headers=headers)


async def soap_endpoint(request: Request) -> Response:
    """``POST /scene7/services/IpsApiService``."""
    return await serve_xml(request, SOAP_FRAMING)
