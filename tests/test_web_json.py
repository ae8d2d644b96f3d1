"""The JSON API (``/api/v1/<operation>``) against a real server process and a real worker."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.helpers import PASSWORD, export_request, make_company, publish_request
from tests.test_web_soap import WebServer

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


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[WebServer]:
    server = WebServer(stack.env)
    yield server
    server.stop()


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
    assert "ReturnSuccess" in {log["logType"] for log in items(asset_logs, "assetJobLogArray")}
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
    from jobengine.auth import create_token

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
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(head + b" " * 65536)
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert time.monotonic() - started < 5
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
