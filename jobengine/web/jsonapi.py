"""The JSON API: ``POST /api/v1/<operationName>`` and ``GET /api/v1/openapi.json``.

The body is a JSON object with IPS field names (arrays as a list or ``{"items": [...]}``); the
answer is the operation's ``<op>Return`` content as JSON (arrays as ``{"items": [...]}``,
datetimes ISO 8601 with offset). Credentials: HTTP Basic or ``Authorization: Bearer <token>``.
A fault is ``{"fault": .., "code": .., "reason": ..}`` (and ``field`` when known) with status
401 (authentication), 403 (authorization), 400 (request), 413 (body too large), 404 (unknown
operation) or 500 (30000).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobengine.errors import InvalidRequestXml, IpsFault, ServerError
from jobengine.model import validate_model
from jobengine.web.http import BodyTooLarge, caller_from, client_address, read_body
from jobengine.web.results import to_json
from jobengine.web.service import OPERATIONS, Operation

__all__ = ["fault_status", "json_endpoint", "openapi_document", "openapi_endpoint"]

logger = logging.getLogger(__name__)


def fault_status(fault: IpsFault) -> int:
    """The HTTP status the JSON API gives ``fault``."""
    if isinstance(fault, BodyTooLarge):
        return 413
    if fault.fault == "authenticationFault":
        return 401
    if fault.fault == "authorizationFault":
        return 403
    return 500 if fault.code == 30000 else 400


def _fault_response(fault: IpsFault, status: int | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="jobengine"'} if fault.code == 10000 else None
    return JSONResponse(fault.to_dict(), status or fault_status(fault), headers=headers)


def _run(op: Operation, body: bytes, authorization: str | None, client: str) -> Any:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestXml(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestXml("the body must be a JSON object with IPS field names")
    caller = caller_from(None, None, authorization, client=client)
    params = validate_model(op.param, data, root=f"{op.name}Param")
    return to_json(op.run(caller, params))


def _run_safely(op: Operation, body: bytes, authorization: str | None, client: str
                ) -> JSONResponse:  # fmt: skip
    try:
        return JSONResponse(_run(op, body, authorization, client))
    except IpsFault as fault:
        return _fault_response(fault)
    except Exception:
        logger.exception("JSON request %s failed", op.name)
        return _fault_response(ServerError("the server could not process the request"))


async def json_endpoint(request: Request) -> Response:
    """``POST /api/v1/<operationName>``."""
    name = str(request.path_params["operation"])
    op = OPERATIONS.get(name)
    if op is None:
        fault = InvalidRequestXml(f"{name!r} is not a known IPS job operation")
        return _fault_response(fault, 404)
    try:
        body = await read_body(request)
    except BodyTooLarge as fault:
        response = _fault_response(fault)
        response.headers["Connection"] = "close"
        return response
    authorization = request.headers.get("authorization")
    return await run_in_threadpool(_run_safely, op, body, authorization, client_address(request))


_FAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["fault", "code", "reason"],
    "properties": {
        "fault": {"enum": ["authenticationFault", "authorizationFault", "ipsApiFault"]},
        "code": {"type": "integer"},
        "reason": {"type": "string"},
        "field": {"type": "string"},
    },
}


def _path(op: Operation, schema: dict[str, Any]) -> dict[str, Any]:
    fault = {"application/json": {"schema": {"$ref": "#/components/schemas/Fault"}}}
    return {
        "post": {
            "operationId": op.name,
            "summary": op.summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": {
                    "description": f"The content of {op.name}Return",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{
                    str(code): {"description": why, "content": fault}
                    for code, why in (
                        (400, "ipsApiFault"),
                        (401, "authenticationFault"),
                        (403, "authorizationFault"),
                        (413, "body too large"),
                        (500, "ipsApiFault 30000"),
                    )
                },
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API, its schemas generated from the models."""
    ops = list(OPERATIONS.values())
    models = list({op.param: None for op in ops})
    refs, defs = models_json_schema(
        [(m, "validation") for m in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = {**defs.get("$defs", {}), "Fault": _FAULT_SCHEMA}
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobengine IPS job operations", "version": "1"},
        "paths": {
            f"/api/v1/{op.name}": _path(op, dict(refs[(op.param, "validation")])) for op in ops
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }


async def openapi_endpoint(request: Request) -> Response:
    """``GET /api/v1/openapi.json``."""
    return JSONResponse(await run_in_threadpool(openapi_document))
