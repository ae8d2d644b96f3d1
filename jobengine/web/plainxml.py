"""Plain XML (no SOAP envelope): ``POST /scene7/api/IpsApiService``.

What scripts written against IPS send: one document

.. code-block:: xml

    <Request xmlns="http://www.scene7.com/IpsApi/xsd/2017-10-29-beta">
      <authHeader><user>..</user><password>..</password></authHeader>
      <getJobLogsParam><companyHandle>..</companyHandle></getJobLogsParam>
    </Request>

``Request`` in the base or any dated IPS namespace the server serves, holding at most one
``authHeader`` (in an IPS namespace) and exactly one operation's ``<op>Param``. The answer is
the ``<op>Return`` element alone, as the document (in the param's namespace), e.g.
``<getJobLogsReturn><jobLogArray><items>..``. A fault is the IPS fault element alone
(``<authenticationFault><code/><reason/></authenticationFault>``, base namespace).

Everything else is the SOAP endpoint's own code (:func:`jobengine.web.soap.handle_call`): the
hardened reader and its limits, authentication (authHeader, then HTTP Authorization),
authorization, the operation table, the fault statuses (500, or ``faultHttpStatusCode``), the
``gzipResponse`` option and the 413 of a body over the limit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from jobengine.errors import InvalidRequestXml, IpsFault
from jobengine.model.ipsxml import IPS_NAMESPACE, is_ips_namespace
from jobengine.web.soap import Framing, fault_element, is_auth_header, serve_xml

__all__ = ["PLAIN_XML_FRAMING", "PLAIN_XML_PATH", "plain_xml_endpoint"]

PLAIN_XML_PATH = "/scene7/api/IpsApiService"
_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'


def _has_text(text: str | None) -> bool:
    return text is not None and text.strip() != ""


def _request_parts(root: ET.Element) -> tuple[ET.Element | None, ET.Element]:
    """The authHeader (or None) and the one operation element of a ``<Request>``."""
    tag = str(root.tag)
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if local != "Request" or not namespace or not is_ips_namespace(namespace):
        where = f"in namespace {namespace}" if namespace else "in no namespace"
        raise InvalidRequestXml(
            f"the root element is <{local}> {where}; expected <Request> in {IPS_NAMESPACE} "
            "or a dated version of it"
        )
    if _has_text(root.text) or any(_has_text(child.tail) for child in root):
        raise InvalidRequestXml("<Request> holds text between elements")
    headers = [child for child in root if is_auth_header(child)]
    calls = [child for child in root if not is_auth_header(child)]
    if len(headers) > 1:
        raise InvalidRequestXml(f"<Request> holds {len(headers)} authHeader elements; at most one")
    if len(calls) != 1:
        raise InvalidRequestXml(
            f"<Request> holds {len(calls)} operation elements; expected one <op>Param"
        )
    return (headers[0] if headers else None), calls[0]


def _document(element: bytes) -> bytes:
    return _DECLARATION + element


def _fault(fault: IpsFault) -> bytes:
    return _document(fault_element(fault))


PLAIN_XML_FRAMING = Framing(parts=_request_parts, answer=_document, fault=_fault)


async def plain_xml_endpoint(request: Request) -> Response:
    """``POST /scene7/api/IpsApiService``."""
    return await serve_xml(request, PLAIN_XML_FRAMING)
