"""The JSON API: ``POST /api/v1/<operationName>`` and ``GET /api/v1/openapi.json``.

The body is a JSON object with IPS field names (arrays as a list or ``{"items": [...]}``); the
answer is the operation's ``<op>Return`` content as JSON (arrays as ``{"items": [...]}``,
datetimes ISO 8601 with offset). Credentials: HTTP Basic or ``Authorization: Bearer <token>``.
A fault is ``{"fault": .., "code": .., "reason": ..}`` (and ``field`` when known) with status
401 (authentication), 403 (authorization), 400 (request), 413 (body too large), 404 (unknown
operation) or 500 (30000).

The body is read with the XML reader's limits in JSON terms (:func:`read_json`): at most
:data:`MAX_JSON_DEPTH` levels and :data:`MAX_JSON_VALUES` values, and no lone surrogate (text
that is not Unicode); anything else is 30003. The OpenAPI document describes every answer: the
``<op>Return`` types are those of the WSDL (:data:`jobengine.web.wsdl.RETURNS`), faults are
:data:`FAULT_SCHEMA`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobengine.errors import InvalidRequestXml, IpsFault, ServerError, Unavailable
from jobengine.i18n import operation_locale
from jobengine.model import UploadPostJob, validate_model
from jobengine.model.ipsxml import MAX_DEPTH, MAX_ELEMENTS
from jobengine.web.http import BodyTooLarge, caller_from, client_address, read_body
from jobengine.web.results import to_json
from jobengine.web.service import OPERATION_LOCALE, OPERATIONS, Operation
from jobengine.web.wsdl import RESULT_TYPES, RETURNS, Fields

__all__ = [
    "FAULT_SCHEMA",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "fault_status",
    "json_endpoint",
    "openapi_document",
    "openapi_endpoint",
    "read_json",
]

logger = logging.getLogger(__name__)

# An IPS array is two JSON levels ({"items": [...]}) for one XML element.
MAX_JSON_DEPTH = 2 * MAX_DEPTH
MAX_JSON_VALUES = MAX_ELEMENTS
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def _check_text(text: str) -> None:
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise InvalidRequestXml(
            f"the body holds {bad.group()!r}, a lone surrogate: JSON text must be Unicode"
        )


def _check_shape(data: Any) -> None:
    """Depth, size and text of parsed JSON, walked without recursion."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if seen > MAX_JSON_VALUES:
            raise InvalidRequestXml(f"the body holds more than {MAX_JSON_VALUES} values")
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequestXml(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, child in value.items():
                _check_text(key)
                pending.append((child, depth + 1))
        else:
            pending.extend((child, depth + 1) for child in value)


def read_json(body: bytes) -> dict[str, Any]:
    """The request object; InvalidRequestXml (30003) for anything but a sound JSON object."""
    try:
        data = json.loads(body or b"{}")
    except RecursionError:  # the parser's own stack ran out, far past MAX_JSON_DEPTH
        raise InvalidRequestXml(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise InvalidRequestXml(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestXml("the body must be a JSON object with IPS field names")
    _check_shape(data)
    return data


def _run(op: Operation, body: bytes, authorization: str | None, client: str, language: str | None
         ) -> Any:  # fmt: skip
    data = read_json(body)
    caller = caller_from(None, None, authorization, client=client)
    params = validate_model(op.param, data, root=f"{op.name}Param")
    token = OPERATION_LOCALE.set(operation_locale(None, language))  # localizes logMessage
    try:
        return to_json(op.run(caller, params))
    finally:
        OPERATION_LOCALE.reset(token)


def _run_safely(op: Operation, body: bytes, authorization: str | None, client: str,
                language: str | None = None) -> JSONResponse:  # fmt: skip
    try:
        return JSONResponse(_run(op, body, authorization, client, language))
    except IpsFault as fault:
        return _fault_response(fault)
    except Unavailable as outage:  # the store is down (e.g. while authenticating)
        return _fault_response(outage.as_fault())
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
    language = request.headers.get("accept-language")
    return await run_in_threadpool(
        _run_safely, op, body, authorization, client_address(request), language
    )


FAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["fault", "code", "reason"],
    "properties": {
        "fault": {"enum": ["authenticationFault", "authorizationFault", "ipsApiFault"]},
        "code": {"type": "integer"},
        "reason": {"type": "string"},
        "field": {"type": "string", "description": "the IPS path of the offending field"},
    },
    "additionalProperties": False,
}

_FAULTS = (
    (400, "ipsApiFault: a bad request (30001, 30002, 30003...)"),
    (401, "authenticationFault: no credentials (10000) or wrong ones (10001)"),
    (403, "authorizationFault: not allowed for this user or company (20000...)"),
    (413, "ipsApiFault 30003: the body is too large"),
    (500, "ipsApiFault 30000: the server failed"),
)
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "Basic, with authenticationFault 10000",
        "schema": {"type": "string"},
    }
}
_LEAVES: dict[str, dict[str, Any]] = {
    "xsd:string": {"type": "string"},
    "xsd:int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "xsd:long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "xsd:double": {"type": "number"},
    "xsd:boolean": {"type": "boolean"},
    "xsd:dateTime": {"type": "string", "format": "date-time"},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_type(type_ref: str) -> dict[str, Any]:
    """A WSDL field type in JSON: arrays as ``{"items": [...]}``, ``tns:X`` as a reference."""
    if type_ref.endswith("[]"):
        return {
            "type": "object",
            "properties": {"items": {"type": "array", "items": _json_type(type_ref[:-2])}},
            "required": ["items"],
            "additionalProperties": False,
        }
    if type_ref in _LEAVES:
        return dict(_LEAVES[type_ref])
    return _ref(type_ref.removeprefix("tns:"))


def _json_object(fields: Fields) -> dict[str, Any]:
    """A WSDL sequence as a JSON object: absent values are left out, so only required keys are."""
    return {
        "type": "object",
        "properties": {name: _json_type(type_ref) for name, type_ref, _ in fields},
        "required": [name for name, _, required in fields if required],
        "additionalProperties": False,
    }


def _result_schemas(ops: list[Operation]) -> dict[str, Any]:
    """Every ``<op>Return`` and the result types they use (not the SOAP-only ones)."""
    types = {
        name: _json_object(fields)
        for name, fields in RESULT_TYPES.items()
        if name not in ("AuthHeader", "Fault")
    }
    returns = {f"{op.name}Return": _json_object(RETURNS.get(op.name, [])) for op in ops}
    return {**types, **returns}


def _path(op: Operation, schema: dict[str, Any]) -> dict[str, Any]:
    fault = {"application/json": {"schema": _ref("Fault")}}
    responses: dict[str, Any] = {
        "200": {
            "description": f"The content of {op.name}Return",
            "content": {"application/json": {"schema": _ref(f"{op.name}Return")}},
        }
    }
    for code, why in _FAULTS:
        responses[str(code)] = {"description": why, "content": fault}
    responses["401"]["headers"] = _WWW_AUTHENTICATE
    return {
        "post": {
            "operationId": op.name,
            "summary": op.summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": responses,
        }
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API: request schemas generated from the models,
    answers from the WSDL's return types, faults as :data:`FAULT_SCHEMA`."""
    ops = list(OPERATIONS.values())
    # every input model, and UploadPostJob, which ActiveJob echoes though no operation takes it
    models: list[type[BaseModel]] = [*{op.param: None for op in ops}, UploadPostJob]
    refs, defs = models_json_schema(
        [(m, "validation") for m in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    requests: dict[str, Any] = defs.get("$defs", {})
    results = _result_schemas(ops)
    clash = set(requests) & set(results)
    if clash:
        raise RuntimeError(f"request and result schemas share names: {sorted(clash)}")
    schemas: dict[str, Any] = {**requests, **results, "Fault": FAULT_SCHEMA}
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
