"""Schemathesis fuzzes the JSON API (``/api/v1/<op>``) from its own OpenAPI document.

A real ``jobengine serve`` process on the store, and no worker is needed (the JSON API writes the
store; the outbox keeps what no worker takes). Every operation is called with a demo user's
valid credentials and without credentials. Each answer must be no 5xx, a documented status code
and content type, and match the documented schema (faults included).

With credentials, a generated ``companyHandle`` is replaced by the user's company, and about half
of the generated job, preset and asset handles (and preset definitions) by ones that exist, so
requests get past authorization and into the operations. The run is deterministic (fixed seed,
no example database) and bounded; ``JOBENGINE_FUZZ_EXAMPLES`` (fuzzing examples per operation,
default 10) and ``JOBENGINE_FUZZ_COVERAGE=1`` (schemathesis' coverage phase: thousands of
boundary and negative cases, many minutes) deepen it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobengine.web.jsonapi import openapi_document
from tests.support.helpers import PASSWORD, export_request, make_company, publish_request
from tests.support.web import WebServer

pytestmark = pytest.mark.slow  # about 20 s per store backend on two cores

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
EXAMPLES = int(os.environ.get("JOBENGINE_FUZZ_EXAMPLES", "10"))
COVERAGE = os.environ.get("JOBENGINE_FUZZ_COVERAGE", "") == "1"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 5,
        "generation": {
            "mode": "all",  # valid and invalid bodies
            "max-examples": EXAMPLES,
            "deterministic": True,
            "database": "none",
            "with-security-parameters": False,  # credentials are the test's own
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": COVERAGE},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)

# Our own document as the server serves it (JSON), loaded when the module is collected; the
# first test checks the server serves exactly this.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(openapi_document())), config=CONFIG)


@dataclass(frozen=True)
class Demo:
    """The server, a demo company's user and handles that exist in that company."""

    server: WebServer
    authorization: str
    known: dict[str, list[str]]


@pytest.fixture(scope="module")
def demo(store_backend: dict[str, str]) -> Iterator[Demo]:
    from jobengine import save_image_format, submit
    from tests.support.stack import apply_env

    apply_env(store_backend)
    company, assets = make_company(2)
    nightly = submit(export_request(company, assets, "Nightly", execSchedule="0 0 3 * * ?"))
    later = submit(publish_request(company, "Later", execTime="2099-01-01T00:00:00Z"))
    now = submit(publish_request(company, "Now"))
    preset = save_image_format(company, "thumb", "wid=64&fmt=png")
    basic = base64.b64encode(f"{company}@example.com:{PASSWORD}".encode()).decode()
    known = {
        "companyHandle": [company],
        "jobHandle": [nightly, later, now],
        "imageFormatHandle": [preset],
        "assetHandle": assets,
        "urlModifier": ["wid=64&fmt=png", "qlt=80&op_sharpen=1", "$thumb$&wid=10"],
    }
    server = WebServer(store_backend)
    yield Demo(server, f"Basic {basic}", known)
    server.stop()
    retire(company)


def retire(company: str, timeout: float = 60) -> None:
    """Delete every job the fuzzing left (schedules, queued and running runs) and wait for the
    runs in progress to end, so that later tests sharing the store and worker see none of them."""
    from jobengine import delete_job, errors, get_active_jobs, get_scheduled_jobs

    jobs = get_scheduled_jobs(company) + get_active_jobs(company, include_waiting_jobs=True)
    for handle in {job.job_handle for job in jobs}:
        with contextlib.suppress(errors.IpsFault):  # deleted already
            delete_job(company, handle)
    deadline = time.monotonic() + timeout
    # runs a worker started end soon; ones that never started wait for a worker, which will
    # find them cancelled or stopped
    while any(job.start_date for job in get_active_jobs(company, include_waiting_jobs=True)):
        assert time.monotonic() < deadline, "the fuzzed jobs did not stop"
        time.sleep(0.2)


@pytest.fixture(scope="module", params=["user", "anonymous"])
def credentials(request: pytest.FixtureRequest, demo: Demo) -> dict[str, str]:
    """The headers every call carries: the demo user's HTTP Basic, or none."""
    return {"Authorization": demo.authorization} if request.param == "user" else {}


def aim(body: Any, known: dict[str, list[str]]) -> None:
    """Point a generated body at the demo company: always its companyHandle, and a known
    handle for about half of the other handles (picked from the generated text, so the run
    stays deterministic). Values that are not non-empty strings are left to test validation."""
    if not isinstance(body, dict):
        return
    for name, values in known.items():
        value = body.get(name)
        if not isinstance(value, str) or not value:
            continue
        if name == "companyHandle" or len(value) % 2 == 0:
            body[name] = values[len(value) % len(values)]


def test_served_document_is_the_fuzzed_one(demo: Demo) -> None:
    served = httpx.get(f"{demo.server.url}/api/v1/openapi.json", timeout=10).json()
    assert served == schema.raw_schema


@schema.parametrize()
def test_json_api_fuzz(case: Case, credentials: dict[str, str], demo: Demo) -> None:
    if credentials:
        aim(case.body, demo.known)
    case.call_and_validate(base_url=demo.server.url, headers=credentials, checks=CHECKS, timeout=30)
