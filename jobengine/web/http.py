"""What the SOAP and JSON surfaces share: the capped body reader and the caller's credentials.

Credentials, first found wins: the SOAP ``authHeader``'s user and password, its accessToken (an
API token, as Bearer), its samlResponse (:func:`jobengine.access.auth.authenticate_saml`), then the
HTTP ``Authorization`` header: Basic, or ``Bearer <token>``. An empty field counts as absent. With
none, :func:`jobengine.access.auth.authenticate` is asked with no user and raises
authenticationFault
10000.
"""

from __future__ import annotations

import base64
import functools
import ipaddress

from starlette.requests import Request

from jobengine.access.auth import Caller, authenticate, authenticate_saml, authenticate_token
from jobengine.errors import InvalidRequestXml
from jobengine.model.ipsxml import MAX_DOCUMENT_BYTES
from jobengine.net.policy import IPAddress, IPNetwork
from jobengine.settings import get_settings

__all__ = ["MAX_BODY_BYTES", "BodyTooLarge", "caller_from", "client_address", "read_body"]

# The largest request body read: an IPS document plus room for the SOAP envelope around it.
MAX_BODY_BYTES = MAX_DOCUMENT_BYTES + 64 * 1024


class BodyTooLarge(InvalidRequestXml):
    """Raised when a request body is (or says it is) over the limit; the rest is never read."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused as soon as its declared or received size passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is {int(declared)} bytes; at most {limit} are read")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLarge(f"the request body is over {limit} bytes")
    return bytes(received)


def client_address(request: Request) -> str:
    """The caller's address, for the failed-login limits: the peer's, or when the peer is one
    of ``JOBENGINE_TRUSTED_PROXIES``, the address those proxies forwarded (``X-Forwarded-For``,
    read from the right: the first hop that is no trusted proxy). From any other peer the header
    is ignored, so no caller can choose the address its failures count on."""
    peer = request.client.host if request.client is not None else ""
    trusted = _networks(get_settings().trusted_proxies)
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed(hops[-_MAX_HOPS:]):
        if not _within(hop, trusted):
            return hop if _address(hop) is not None else peer  # garbage: keep the proxy's
    return peer


_MAX_HOPS = 20  # a longer chain is read from its right end only


@functools.lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(text: str, networks: tuple[IPNetwork, ...]) -> bool:
    address = _address(text)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def _basic(value: str) -> tuple[str, str] | None:
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 inside
        return None
    return (user, password) if sep else None


def caller_from(
    user: str | None,
    password: str | None,
    authorization: str | None,
    *,
    client: str,
    access_token: str | None = None,
    saml_response: str | None = None,
) -> Caller:
    """The authenticated caller; authenticationFault 10000/10001 when it cannot be.

    In this order: ``user``/``password`` (either given), ``access_token``, ``saml_response``,
    then the HTTP ``authorization`` header (Basic or Bearer). ``client`` is the remote address:
    :func:`jobengine.access.auth.authenticate` limits failed attempts per user name and per client,
    :func:`jobengine.access.auth.authenticate_saml` per client.
    """
    if user or password:
        return authenticate(user, password, client=client)
    if access_token and access_token.strip():
        return authenticate_token(access_token.strip())
    if saml_response and saml_response.strip():
        return authenticate_saml(saml_response, client=client)
    if authorization:
        basic = _basic(authorization)
        if basic is not None:
            user, password = basic
        else:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return authenticate_token(token.strip())
    return authenticate(user, password, client=client)
