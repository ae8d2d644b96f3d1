"""What the SOAP and JSON surfaces share: the capped body reader and the caller's credentials.

Credentials, first found wins: the SOAP ``authHeader`` (user, password), HTTP Basic, or
``Authorization: Bearer <token>``. With none, :func:`jobengine.auth.authenticate` is asked with
no user and raises authenticationFault 10000.
"""

from __future__ import annotations

import base64

from starlette.requests import Request

from jobengine.auth import Caller, authenticate, authenticate_token
from jobengine.errors import InvalidRequestXml
from jobengine.ipsxml import MAX_DOCUMENT_BYTES

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
    """The peer's address, for the failed-login limiter (behind a proxy: the proxy's, unless
    uvicorn runs with ``--proxy-headers`` and a trusted ``--forwarded-allow-ips``)."""
    return request.client.host if request.client is not None else ""


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
    user: str | None, password: str | None, authorization: str | None, *, client: str
) -> Caller:
    """The authenticated caller; authenticationFault 10000/10001 when it cannot be.

    ``client`` is the remote address: :func:`jobengine.auth.authenticate` limits failed
    attempts per user name and per client.
    """
    if user is None and password is None and authorization:
        basic = _basic(authorization)
        if basic is not None:
            user, password = basic
        else:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return authenticate_token(token.strip())
    return authenticate(user, password, client=client)
