"""The JSON API (``/api/v1/<operation>``) against a real server process and a real worker."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from jobengine import submit
from tests.support.helpers import PASSWORD, export_request, make_company, publish_request
from tests.support.stack import Stack
from tests.support.web import WebServer, send_truncated

OPERATIONS = {
    "submitJob",
    "getActiveJobs",
    "getScheduledJobs",
    "getJobLogs",
    "getJobLogDetails",
    "getAssetJobLogs",
    "stopJob",
    "pauseJob",
    "resumeJob",
    "deleteJob",
    "executeJob",
    "saveImageFormat",
    "getImageFormats",
    "deleteImageFormat",
}


class Api:
    """A JSON client for one user (HTTP Basic)."""

    def __init__(self, server: WebServer, company: str, password: str = PASSWORD) -> None:
        self.server, self.auth = server, (f"{company}@example.com", password)

    def post(self, op: str, body: Any, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("auth", self.auth)
        return httpx.post(f"{self.server.url}/api/v1/{op}", json=body, timeout=30, **kwargs)

    def call(self, op: str, body: dict[str, Any]) -> Any:
        response = self.post(op, body)
        assert response.status_code == 200, response.text
        return response.json()

    def fault(self, op: str, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.post(op, body, **kwargs)
        data = response.json()
        assert set(data) >= {"fault", "code", "reason"}, data
        return response.status_code, data


def items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(data[key]["items"])


def test_submit_and_logs(stack: Stack, web: WebServer) -> None:
    company, _ = make_company(0)
    api = Api(web, company)
    answer = api.call("submitJob", publish_request(company, "My Test Job"))
    assert answer == {"jobHandle": f"{company}|My Test Job|"}
    assert stack.wait(company, answer["jobHandle"]).state == "Done"
    logs = items(api.call("getJobLogs", {"companyHandle": company, "numRows": 5}), "jobLogArray")
    assert [log["originalJobName"] for log in logs] == ["My Test Job"]
    assert logs[0]["jobSubType"] == "full" and logs[0]["fatalError"] is False
    assert logs[0]["startDate"].endswith("+00:00")
    assert "state" not in logs[0] and "detailArray" not in logs[0]
    details = api.call(
        "getJobLogDetails", {"companyHandle": company, "originalName": "My Test Job"}
    )
    [log] = items(details, "jobLogArray")
    assert log["detailTotalRows"] == len(log["detailArray"]["items"]) > 0


def test_job_operations(stack: Stack, web: WebServer) -> None:
    company, assets = make_company(2)
    api = Api(web, company)
    nightly = export_request(company, assets, "Nightly", execSchedule="0 0 3 1 1 ? 2099")
    handle = api.call("submitJob", nightly)["jobHandle"]
    jobs = items(api.call("getScheduledJobs", {"companyHandle": company}), "jobArray")
    assert [j["jobHandle"] for j in jobs] == [handle]
    assert jobs[0]["exportJob"]["assetHandleArray"] == {"items": assets}
    params = {"companyHandle": company, "jobHandle": handle}
    assert api.call("pauseJob", params) == {}
    jobs = items(api.call("getScheduledJobs", params), "jobArray")
    assert jobs[0]["triggerState"] == "Paused"
    assert api.call("resumeJob", params) == {}
    status, fault = api.fault("stopJob", params)
    assert (status, fault["fault"], fault["code"]) == (400, "ipsApiFault", 30001)
    assert api.call("executeJob", params) == {}
    active = api.call("getActiveJobs", {"companyHandle": company, "includeWaitingJobs": True})
    assert {j["originalName"] for j in items(active, "jobArray")} <= {"Nightly"}
    logs = items(api.call("getJobLogs", {"companyHandle": company}), "jobLogArray")
    assert [log["originalJobName"] for log in logs] == ["Nightly"]
    stack.wait(company, handle)
    asset_logs = api.call("getAssetJobLogs", {"companyHandle": company, "assetHandle": assets[0]})
    assert "ReturnSuccess" in {log["logType"] for log in items(asset_logs, "jobLogArray")}
    assert api.call("deleteJob", params) == {}
    assert api.call("getScheduledJobs", {"companyHandle": company}) == {"jobArray": {"items": []}}

    saved = api.call(
        "saveImageFormat", {"companyHandle": company, "name": "t", "urlModifier": "wid=8"}
    )
    formats = api.call("getImageFormats", {"companyHandle": company})
    assert items(formats, "imageFormatArray") == [
        {"imageFormatHandle": saved["imageFormatHandle"], "name": "t", "urlModifier": "wid=8"}
    ]
    params = {"companyHandle": company, "imageFormatHandle": saved["imageFormatHandle"]}
    assert api.call("deleteImageFormat", params) == {}


def test_bearer_token(stack: Stack, web: WebServer) -> None:
    from jobengine.access.auth import create_token

    company, _ = make_company(0)
    token = create_token(f"{company}@example.com", "ci")
    response = httpx.post(
        f"{web.url}/api/v1/getImageFormats",
        json={"companyHandle": company},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imageFormatArray": {"items": []}}


def test_faults(stack: Stack, web: WebServer) -> None:
    mine, _ = make_company(0)
    other, _ = make_company(0)
    api = Api(web, mine)
    body = publish_request(mine)

    status, fault = api.fault("submitJob", body, auth=None)
    assert (status, fault["fault"], fault["code"]) == (401, "authenticationFault", 10000)
    status, fault = Api(web, mine, "wrong").fault("submitJob", body)
    assert (status, fault["code"]) == (401, 10001)
    response = httpx.post(
        f"{web.url}/api/v1/getJobLogs", json={}, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.json()["fault"] == "authenticationFault"

    status, fault = api.fault("submitJob", publish_request(other))
    assert (status, fault["fault"], fault["code"]) == (403, "authorizationFault", 20006)
    status, fault = api.fault("submitJob", {"companyHandle": mine, "jobName": "x"})
    assert (status, fault["code"]) == (400, 30002)
    status, fault = api.fault("getJobLogs", {"companyHandle": mine, "numRows": "many"})
    assert (status, fault["code"], fault["field"]) == (400, 30001, "numRows")
    status, fault = api.fault("getJobLogs", [1, 2])
    assert (status, fault["code"]) == (400, 30003)
    response = httpx.post(f"{web.url}/api/v1/getJobLogs", content=b"{", auth=api.auth)
    assert (response.status_code, response.json()["code"]) == (400, 30003)
    status, fault = api.fault("noSuchOperation", {})
    assert (status, fault["code"]) == (404, 30003)


def test_huge_body_is_refused_unread(stack: Stack, web: WebServer) -> None:
    head = (
        "POST /api/v1/submitJob HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer, took = send_truncated(web, head + b" " * 65536, b"}")
    assert took < 5
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":30003' in answer


def test_openapi_document(web: WebServer) -> None:
    doc = httpx.get(f"{web.url}/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert {path.removeprefix("/api/v1/") for path in doc["paths"]} == OPERATIONS
    submit = doc["paths"]["/api/v1/submitJob"]["post"]
    ref = submit["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"companyHandle", "jobName", "exportJob"} <= set(schema["properties"])
    assert set(schema["required"]) == {"companyHandle", "jobName"}
    assert "Fault" in doc["components"]["schemas"]


# Found by fuzzing the JSON API (tests/web/test_jsonapi_fuzz.py): each of these was a 500 (30000).
def _hostile(company: str) -> list[tuple[str, bytes, int, int, str | None]]:
    """(operation, raw body, status, code, field) for the fuzzer's findings."""

    def body(**fields: Any) -> bytes:
        return json.dumps({"companyHandle": company, **fields}).encode()

    cron = "0 0 0 " + ",".join(["1"] * 200) + " * ?"
    publish = {"publishType": "Full", "emailSetting": "None"}
    return [
        ("getJobLogs", body(startDate="0001-01-01T00:00:00+01:00"), 400, 30001, "startDate"),
        ("getJobLogs", body(endDate="9999-12-31T23:59:59-01:00"), 400, 30001, "endDate"),
        ("submitJob", body(jobName="j", execSchedule=cron, imageServingPublishJob=publish),
         400, 30001, "execSchedule"),
        ("deleteImageFormat", body(imageFormatHandle=f"{company}|{'9' * 30}"),
         400, 30001, "imageFormatHandle"),
        ("deleteImageFormat", body(imageFormatHandle=f"{company}|\u00b2"),
         400, 30001, "imageFormatHandle"),
        ("stopJob", body(jobHandle=f"{company}|x||{'9' * 30}"), 400, 30001, "jobHandle"),
        ("getJobLogs", b"[" * 100_000 + b"]" * 100_000, 400, 30003, None),
        ("getJobLogs", b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", 400, 30003, None),
        ("submitJob", body(exportJob={"assetHandleArray": {"\ud800": 1}}), 400, 30003, None),
    ]  # fmt: skip


def test_fuzzer_findings_are_faults_not_server_errors(stack: Stack, web: WebServer) -> None:
    company, _ = make_company(0)
    api = Api(web, company)
    for op, content, status, code, field in _hostile(company):
        response = httpx.post(f"{web.url}/api/v1/{op}", content=content, auth=api.auth)
        assert (response.status_code, response.json()["code"]) == (status, code), op
        assert response.json().get("field") == field, response.json()
    # a Basic header that is not ASCII is no credentials, not a crash
    response = httpx.post(
        f"{web.url}/api/v1/getJobLogs", json={}, headers={"Authorization": b"Basic \xe9"}
    )
    assert (response.status_code, response.json()["code"]) == (401, 10000)


def test_json_reader_limits() -> None:
    from jobengine.errors import InvalidRequestXml
    from jobengine.web.jsonapi import MAX_JSON_DEPTH, read_json

    nested: Any = {}
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = {"a": nested}
    assert read_json(json.dumps(nested).encode()) == nested
    for bad in (
        json.dumps({"a": nested}).encode(),  # one level too deep
        b"[" * 5000 + b"]" * 5000,  # deeper than the parser's own stack
        b'{"a": "\\udfff"}',
        b'{"\\ud800": 1}',
        b'{"a": [' + b"0," * 200_000 + b"0]}",
    ):
        with pytest.raises(InvalidRequestXml):
            read_json(bad)
    assert read_json(b"") == {}
    assert read_json('{"a": "\U0001f600"}'.encode()) == {"a": "\U0001f600"}


def test_basic_credentials_that_are_not_ascii_are_none() -> None:
    from jobengine.web.http import _basic

    assert _basic("Basic \u00e9") is None
    assert _basic("Basic " + base64.b64encode(b"\xff:\xfe").decode()) is None
    assert _basic("Basic " + base64.b64encode(b"u:p").decode()) == ("u", "p")


def test_openapi_document_describes_every_answer() -> None:
    from jobengine.web.jsonapi import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        op = path.removeprefix("/api/v1/")
        responses = item["post"]["responses"]
        assert set(responses) == {"200", "400", "401", "403", "413", "500"}
        ok = responses["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ok == f"#/components/schemas/{op}Return"
        for status in ("400", "401", "403", "413", "500"):
            fault = responses[status]["content"]["application/json"]["schema"]
            assert fault == {"$ref": "#/components/schemas/Fault"}
    assert schemas["submitJobReturn"]["required"] == ["jobHandle"]
    assert schemas["stopJobReturn"] == {
        "type": "object", "properties": {}, "required": [], "additionalProperties": False
    }  # fmt: skip
    jobs = schemas["getActiveJobsReturn"]["properties"]["jobArray"]
    assert jobs["properties"]["items"]["items"] == {"$ref": "#/components/schemas/ActiveJob"}
    assert schemas["ActiveJob"]["properties"]["exportJob"] == {
        "$ref": "#/components/schemas/ExportJob"
    }
    assert schemas["Fault"]["additionalProperties"] is False
    # IPS arrays are documented in both forms the server reads: a list or {"items": [...]}
    array = schemas["ExportJob"]["properties"]["assetHandleArray"]["anyOf"]
    assert array[0]["type"] == "array" and array[1]["required"] == ["items"]


def test_log_messages_follow_accept_language(stack: Stack, web: WebServer) -> None:
    company, assets = make_company(1)
    handle = submit(export_request(company, assets, "Sprache"))
    stack.wait(company, handle)
    client = Api(web, company)
    body = {"companyHandle": company, "jobHandle": handle}

    def messages(language: str) -> list[str]:
        response = client.post("getJobLogDetails", body, headers={"Accept-Language": language})
        assert response.status_code == 200, response.text
        logs = response.json()["jobLogArray"]["items"]
        return [d["logMessage"] for log in logs for d in log["detailArray"]["items"]]

    assert "Job Sprache gestartet" in messages("de-CH, en;q=0.5")
    assert "job Sprache started" in messages("xx")
