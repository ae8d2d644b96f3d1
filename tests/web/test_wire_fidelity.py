"""IPS wire fidelity for real clients (issue 12, points 1, 2, 3 and 5), against a real
``jobengine serve`` process and a real worker.

The client's side is tests/data/IpsApi-2016-01-14-beta-wire.wsdl: written by hand from the real
schema (the public stubs' element order, types and required elements), not by jobengine. zeep
reads the server's answers through it (zeep refuses an answer that lacks a required element or
has one out of place), and every raw answer is also validated against its XSD with lxml.
Adobe's documentation envelopes are posted as bytes. The plain-XML endpoint is driven as the
scripts written against IPS drive it.
"""

from __future__ import annotations

import copy
import gzip
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from jobengine import delete_job, submit
from jobengine.model.ipsxml import IPS_NAMESPACE
from jobengine.runtime import get_runtime
from jobengine.store.schema import Job, Run
from tests.support.helpers import PASSWORD, export_request, make_company
from tests.support.stack import Stack
from tests.support.web import SERVICE, WebServer, send_truncated

FIXTURE = Path(__file__).parents[1] / "data" / "IpsApi-2016-01-14-beta-wire.wsdl"
BETA = f"{IPS_NAMESPACE}/2016-01-14-beta"
SCRIPTS = f"{IPS_NAMESPACE}/2017-10-29-beta"  # what the plain-XML scripts send
PLAIN = "/scene7/api/IpsApiService"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"


@pytest.fixture(scope="module")
def real_schema() -> etree.XMLSchema:
    """The fixture's XSD (the real schema's types, 2016-01-14-beta namespace), compiled."""
    schema = etree.parse(str(FIXTURE)).getroot().find(f".//{{{XSD}}}schema")
    assert schema is not None
    return etree.XMLSchema(copy.deepcopy(schema))


class Stub:
    """A zeep client generated from the fixture, its service pointed at the server."""

    def __init__(self, web: WebServer, company: str) -> None:
        import zeep

        self.client = zeep.Client(str(FIXTURE))
        self.service = self.client.create_service(f"{{{BETA}}}IpsApiSoapBinding", web.url + SERVICE)
        header = self.client.get_element(f"{{{BETA}}}authHeader")  # the dated namespace
        self.auth = [
            header(
                user=f"{company}@example.com",
                password=PASSWORD,
                appName="WireTest",
                appVersion="1.2",
            )
        ]

    def call(self, op: str, **params: Any) -> Any:
        return getattr(self.service, op)(_soapheaders=self.auth, **params)

    def raw(self, op: str, **params: Any) -> bytes:
        with self.client.settings(raw_response=True):
            response = getattr(self.service, op)(_soapheaders=self.auth, **params)
        assert response.status_code == 200, response.text
        return bytes(response.content)


def body_element(content: bytes) -> etree._Element:
    body = etree.fromstring(content).find(f"{{{SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    return body[0]


def assert_real(schema: etree.XMLSchema, answer: etree._Element, namespace: str = BETA) -> None:
    """``answer`` (an ``<op>Return``) is valid under the real schema: every required element
    there, in the real order, nothing unknown. An answer in another IPS namespace is checked
    as the same document in the fixture's."""
    text = etree.tostring(answer).replace(namespace.encode(), BETA.encode())
    document = etree.fromstring(text)
    if not schema.validate(document):
        raise AssertionError(f"{schema.error_log}\n{text.decode()}")


def children(element: etree._Element | ET.Element) -> list[str]:
    return [str(child.tag).rpartition("}")[2] for child in element]


# --- 1, 2 and 5 through a stub of the real schema ------------------------------------------------


def test_a_stub_of_the_real_schema_reads_every_answer(
    stack: Stack, web: WebServer, real_schema: etree.XMLSchema
) -> None:
    company, assets = make_company(2)
    stub = Stub(web, company)
    export = {"assetHandleArray": {"items": assets}, "fmt": "orig", "emailSetting": "None"}
    handle = stub.call("submitJob", companyHandle=company, jobName="Wire", exportJob=export)
    assert handle == f"{company}|Wire|"
    assert stack.wait(company, handle).state == "Done"

    [log] = stub.call("getJobLogs", companyHandle=company)
    assert (log.originalJobName, log.totalFileCount, log.fatalError) == ("Wire", 2, False)
    [detailed] = stub.call("getJobLogDetails", companyHandle=company, jobHandle=handle)
    rows = detailed.detailArray["items"]
    assert detailed.detailTotalRows == len(rows)
    # as Adobe's example: the begin row, then the job's metadata records
    assert [(r.logType, r.logMessage) for r in rows[1:3]] == [
        ("OriginalJobName", "Wire"),
        ("JobClient", "WireTest 1.2"),
    ]
    assert rows[0].logType == "BeginGet" and all(r.dateCreated.tzinfo for r in rows)

    asset_logs = stub.call("getAssetJobLogs", companyHandle=company, assetHandle=assets[0])
    assert [a.logType for a in asset_logs] == ["ReturnSuccess"]
    assert asset_logs[0].jobName == log.jobName and asset_logs[0].logDate.tzinfo is not None

    # and the raw answers, element for element, under the real schema
    for op, params in (
        ("getJobLogs", {"companyHandle": company}),
        ("getJobLogDetails", {"companyHandle": company, "jobHandle": handle}),
        ("getAssetJobLogs", {"companyHandle": company, "assetHandle": assets[0]}),
        ("getActiveJobs", {"companyHandle": company}),
    ):
        answer = body_element(stub.raw(op, **params))
        assert answer.tag == f"{{{BETA}}}{op}Return"
        assert_real(real_schema, answer)
    raw_assets = body_element(
        stub.raw("getAssetJobLogs", companyHandle=company, assetHandle=assets[1])
    )
    assert children(raw_assets) == ["jobLogArray"]  # not assetJobLogArray


def test_a_waiting_job_has_every_required_element(
    stack: Stack,
    web: WebServer,
    real_schema: etree.XMLSchema,
    private_queue: tuple[dict[str, str], str],
) -> None:
    company, assets = make_company(1)
    handle = submit(export_request(company, assets, "Waiting"))  # to a queue no worker reads
    stub = Stub(web, company)
    try:
        with get_runtime().store.read() as session:
            queued = session.scalars(
                select(Run.created_at).join(Job, Job.id == Run.job_id).where(Job.handle == handle)
            ).one()
        [job] = stub.call("getActiveJobs", companyHandle=company, includeWaitingJobs=True)
        assert (job.state, job.originalName) == ("WaitingCoordinator", "Waiting")
        # startDate and both lastProgressUpdates: required; a waiting run's are its queue time
        assert job.startDate == job.lastProgressUpdate
        started = job.startDate.astimezone(UTC).replace(tzinfo=None)
        assert abs(started - queued.replace(tzinfo=None)) < timedelta(seconds=1)
        [task] = job.taskProgressArray["items"]
        assert (task.taskState, task.lastProgressUpdate) == ("New", job.startDate)
        assert isinstance(job.totalSize, int) and job.exportJob.fmt == "orig"

        answer = body_element(
            stub.raw("getActiveJobs", companyHandle=company, includeWaitingJobs=True)
        )
        assert_real(real_schema, answer)

        # the JSON API writes the same required elements
        response = httpx.post(
            f"{web.url}/api/v1/getActiveJobs",
            json={"companyHandle": company, "includeWaitingJobs": True},
            auth=(f"{company}@example.com", PASSWORD),
            timeout=30,
        )
        [item] = response.json()["jobArray"]["items"]
        assert {"startDate", "triggerTime", "lastProgressUpdate", "totalSize"} <= set(item)
        assert datetime.fromisoformat(item["startDate"]) == job.startDate
        assert "lastProgressUpdate" in item["taskProgressArray"]["items"][0]
    finally:
        delete_job(company, handle)


# --- 5: the served WSDLs describe each version as it is ------------------------------------------


def _types(root: etree._Element) -> dict[str, etree._Element]:
    """Every named complexType and every element's sequence holder, by name."""
    out: dict[str, etree._Element] = {}
    for schema in root.iter(f"{{{XSD}}}schema"):
        for node in schema:
            if node.tag == f"{{{XSD}}}complexType":
                out[node.get("name")] = node
        for node in schema:
            if node.tag == f"{{{XSD}}}element":
                inline = node.find(f"{{{XSD}}}complexType")
                named = out.get(str(node.get("type", "")).rpartition(":")[2])
                holder = inline if inline is not None else named
                if holder is not None:
                    out.setdefault(str(node.get("name")), holder)
    return out


def _sequence(holder: etree._Element) -> list[tuple[str, bool, str]]:
    """(name, required, local type name) of each element of a complexType's sequence."""
    return [
        (str(e.get("name")), e.get("minOccurs") != "0", str(e.get("type")).rpartition(":")[2])
        for e in holder.iter(f"{{{XSD}}}element")
    ]


WIRE_TYPES = (
    "authHeader", "ActiveJob", "TaskProgress", "TaskItemProgress", "JobLog", "JobLogDetail",
    "JobLogDetailAux", "AssetJobLog", "getActiveJobsReturn", "getJobLogsReturn",
    "getJobLogDetailsReturn", "getAssetJobLogsReturn", "submitJobReturn",
)  # fmt: skip


def test_the_served_wsdls_match_the_real_schema(web: WebServer) -> None:
    fixture = _types(etree.parse(str(FIXTURE)).getroot())
    served_beta = httpx.get(f"{web.url}/scene7/webservice/IpsApi-2016-01-14-beta.wsdl", timeout=10)
    assert served_beta.status_code == 200
    served = _types(etree.fromstring(served_beta.content))
    for name in WIRE_TYPES:
        want, got = _sequence(fixture[name]), _sequence(served[name])
        # same elements, order and required-ness; the types wherever the fixture names one
        assert [w[:2] for w in want] == [g[:2] for g in got], name
        typed = [(w, g) for w, g in zip(want, got, strict=True) if w[2] != "anyType"]
        assert all(w[2] == g[2] for w, g in typed), (name, typed)

    # 2016-01-14-beta: authHeader is in the dated namespace; the faults stay in the base one
    beta_root = etree.fromstring(served_beta.content)
    owners = {
        str(e.get("name")): s.get("targetNamespace")
        for s in beta_root.iter(f"{{{XSD}}}schema")
        for e in s
        if e.tag == f"{{{XSD}}}element"
    }
    assert (owners["authHeader"], owners["authenticationFault"]) == (BETA, IPS_NAMESPACE)
    # 2013-02-15 (and the undated one): authHeader in the base namespace, 2013's field order
    old = etree.fromstring(
        httpx.get(f"{web.url}/scene7/webservice/IpsApi-2013-02-15.wsdl", timeout=10).content
    )
    old_owners = {
        str(e.get("name")): s.get("targetNamespace")
        for s in old.iter(f"{{{XSD}}}schema")
        for e in s
        if e.tag == f"{{{XSD}}}element"
    }
    assert old_owners["authHeader"] == IPS_NAMESPACE
    old_header = [n for n, _, _ in _sequence(_types(old)["authHeader"])]
    assert old_header[:3] == ["user", "password", "locale"]


def test_a_stub_of_the_served_beta_wsdl_sends_the_dated_auth_header(
    stack: Stack, web: WebServer
) -> None:
    import zeep

    company, assets = make_company(1)
    handle = submit(export_request(company, assets, "Served"))
    stack.wait(company, handle)
    client = zeep.Client(f"{web.url}/scene7/webservice/IpsApi-2016-01-14-beta.wsdl")
    header = client.get_element(f"{{{BETA}}}authHeader")
    auth = [header(user=f"{company}@example.com", password=PASSWORD, appName="a", appVersion="1")]
    [log] = client.service.getJobLogs(companyHandle=company, _soapheaders=auth)
    assert log.originalJobName == "Served"
    [asset_log] = client.service.getAssetJobLogs(
        companyHandle=company, assetHandle=assets[0], _soapheaders=auth
    )
    assert asset_log.logType == "ReturnSuccess"


# --- Adobe's documentation envelopes, as bytes ---------------------------------------------------

# getJobLogDetails, request example (its company and job log handles replaced)
DOC_JOB_LOG_DETAILS = b"""<ns1:getJobLogDetailsParam xmlns:ns1="http://www.scene7.com/IpsApi/xsd">
   <ns1:companyHandle>%(company)s</ns1:companyHandle>
   <ns1:jobHandle>%(job)s</ns1:jobHandle>
</ns1:getJobLogDetailsParam>"""
# getAssetJobLogs, request example
DOC_ASSET_JOB_LOGS = b"""<getAssetJobLogsParam xmlns="http://www.scene7.com/IpsApi/xsd/2008-01-15">
   <companyHandle>%(company)s</companyHandle>
   <assetHandle>%(asset)s</assetHandle>
</getAssetJobLogsParam>"""
# a 2013-02-15 client's authHeader: the base namespace
DOC_HEADER = b"""<authHeader xmlns="http://www.scene7.com/IpsApi/xsd">
   <user>%(user)s</user><password>%(password)s</password>
   <appName>s7oslo</appName><appVersion>4.2</appVersion>
</authHeader>"""


def _envelope(header: bytes, body: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="'
        + SOAP_ENV.encode()
        + b'">\n<soapenv:Header>'
        + header
        + b"</soapenv:Header>\n<soapenv:Body>\n"
        + body
        + b"\n</soapenv:Body>\n</soapenv:Envelope>"
    )


def _post_soap(web: WebServer, data: bytes, action: str) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action}
    return httpx.post(web.url + SERVICE, content=data, headers=headers, timeout=30)


def test_adobe_documentation_envelopes(
    stack: Stack, web: WebServer, real_schema: etree.XMLSchema
) -> None:
    company, assets = make_company(1)
    who = {b"user": f"{company}@example.com".encode(), b"password": PASSWORD.encode()}
    header = DOC_HEADER % who
    submit_body = (
        b'<submitJobParam xmlns="http://www.scene7.com/IpsApi/xsd">'
        b"<companyHandle>%s</companyHandle><jobName>Add</jobName><exportJob>"
        b"<assetHandleArray><items>%s</items></assetHandleArray><fmt>orig</fmt>"
        b"<emailSetting>None</emailSetting></exportJob></submitJobParam>"
    ) % (company.encode(), assets[0].encode())
    submitted = _post_soap(web, _envelope(header, submit_body), "submitJob")
    assert submitted.status_code == 200, submitted.text
    log = stack.wait(company, f"{company}|Add|")

    asked = {b"company": company.encode(), b"job": log.job_handle.encode()}
    details = _post_soap(web, _envelope(header, DOC_JOB_LOG_DETAILS % asked), "getJobLogDetails")
    assert details.status_code == 200, details.text
    answer = body_element(details.content)
    assert answer.tag == f"{{{IPS_NAMESPACE}}}getJobLogDetailsReturn"
    assert_real(real_schema, answer, IPS_NAMESPACE)
    ns = {"i": IPS_NAMESPACE}
    rows = [
        (r.findtext("i:logType", namespaces=ns), r.findtext("i:logMessage", namespaces=ns))
        for r in answer.iterfind("i:jobLogArray/i:items/i:detailArray/i:items", ns)
    ]
    assert rows[1:3] == [("OriginalJobName", "Add"), ("JobClient", "s7oslo 4.2")]

    dated = f"{IPS_NAMESPACE}/2008-01-15"
    asked = {b"company": company.encode(), b"asset": assets[0].encode()}
    asset_logs = _post_soap(web, _envelope(header, DOC_ASSET_JOB_LOGS % asked), "getAssetJobLogs")
    assert asset_logs.status_code == 200, asset_logs.text
    answer = body_element(asset_logs.content)
    assert answer.tag == f"{{{dated}}}getAssetJobLogsReturn"
    assert children(answer) == ["jobLogArray"]
    [item] = answer[0]
    assert children(item) == [
        "jobHandle", "jobName", "logMessage", "logType", "submitUserEmail", "logDate",
    ]  # fmt: skip
    assert_real(real_schema, answer, dated)


# --- 3: the plain-XML endpoint -------------------------------------------------------------------


def _plain_request(call: str, header: str = "", namespace: str = SCRIPTS) -> bytes:
    return f'<Request xmlns="{namespace}">{header}{call}</Request>'.encode()


def _plain_header(user: str, password: str = PASSWORD, extra: str = "") -> str:
    return f"<authHeader><user>{user}</user><password>{password}</password>{extra}</authHeader>"


def _post_plain(web: WebServer, data: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        web.url + PLAIN,
        content=data,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        timeout=30,
    )


def _plain_fault(response: httpx.Response) -> tuple[str, int, str]:
    root = ET.fromstring(response.content)
    namespace, _, local = root.tag[1:].partition("}")
    assert namespace == IPS_NAMESPACE, response.text
    return (
        local,
        int(root.findtext(f"{{{IPS_NAMESPACE}}}code") or 0),
        (root.findtext(f"{{{IPS_NAMESPACE}}}reason") or ""),
    )


def test_plain_xml_calls(stack: Stack, web: WebServer, real_schema: etree.XMLSchema) -> None:
    company, assets = make_company(1)
    user = f"{company}@example.com"
    header = _plain_header(user, extra="<appName>audit.sh</appName>")
    submit_call = (
        f"<submitJobParam><companyHandle>{company}</companyHandle><jobName>Script</jobName>"
        f"<exportJob><assetHandleArray><items>{assets[0]}</items></assetHandleArray>"
        "<fmt>orig</fmt><emailSetting>None</emailSetting></exportJob></submitJobParam>"
    )
    submitted = _post_plain(web, _plain_request(submit_call, header))
    assert submitted.status_code == 200, submitted.text
    assert submitted.content.startswith(b"<?xml")
    root = ET.fromstring(submitted.content)
    assert root.tag == f"{{{SCRIPTS}}}submitJobReturn"  # the answer is the return element
    handle = root.findtext(f"{{{SCRIPTS}}}jobHandle") or ""
    assert handle == f"{company}|Script|"
    stack.wait(company, handle)

    logs_call = f"<getJobLogsParam><companyHandle>{company}</companyHandle></getJobLogsParam>"
    answer = _post_plain(web, _plain_request(logs_call, header))
    assert answer.status_code == 200, answer.text
    root = ET.fromstring(answer.content)
    assert root.tag == f"{{{SCRIPTS}}}getJobLogsReturn"
    [item] = root.findall(f"{{{SCRIPTS}}}jobLogArray/{{{SCRIPTS}}}items")  # the scripts' path
    assert item.findtext(f"{{{SCRIPTS}}}originalJobName") == "Script"
    assert_real(real_schema, etree.fromstring(answer.content), SCRIPTS)

    details_call = (
        f"<getJobLogDetailsParam><companyHandle>{company}</companyHandle>"
        f"<jobHandle>{handle}</jobHandle></getJobLogDetailsParam>"
    )
    details = ET.fromstring(_post_plain(web, _plain_request(details_call, header)).content)
    path = "/".join(f"{{{SCRIPTS}}}{p}" for p in ("jobLogArray", "items", "detailArray", "items"))
    clients = [r.findtext(f"{{{SCRIPTS}}}logMessage") for r in details.iterfind(path)
               if r.findtext(f"{{{SCRIPTS}}}logType") == "JobClient"]  # fmt: skip
    assert clients == ["audit.sh"]

    # an authHeader in the base namespace, or none and HTTP Basic: the same answer
    base_header = f'<authHeader xmlns="{IPS_NAMESPACE}"><user>{user}</user>' + (
        f"<password>{PASSWORD}</password></authHeader>"
    )
    assert _post_plain(web, _plain_request(logs_call, base_header)).status_code == 200
    basic = httpx.post(
        web.url + PLAIN, content=_plain_request(logs_call), auth=(user, PASSWORD), timeout=30
    )
    assert basic.status_code == 200 and basic.content == answer.content

    # gzipResponse
    zipped = _plain_header(user, extra="<gzipResponse>true</gzipResponse>")
    compressed = _post_plain(web, _plain_request(logs_call, zipped))
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.content == answer.content  # httpx inflated it
    request = _plain_request(logs_call, zipped)
    with httpx.stream("POST", web.url + PLAIN, content=request, timeout=30) as raw:
        assert gzip.decompress(b"".join(raw.iter_raw())) == answer.content


def test_plain_xml_faults(web: WebServer) -> None:
    company, _ = make_company(0)
    other, _ = make_company(0)
    user = f"{company}@example.com"
    logs_call = f"<getJobLogsParam><companyHandle>{company}</companyHandle></getJobLogsParam>"

    wrong = _post_plain(web, _plain_request(logs_call, _plain_header(user, "wrong")))
    assert wrong.status_code == 500
    assert _plain_fault(wrong)[:2] == ("authenticationFault", 10001)
    nobody = _post_plain(web, _plain_request(logs_call))
    assert (nobody.status_code, _plain_fault(nobody)[:2]) == (500, ("authenticationFault", 10000))

    status_200 = _plain_header(user, "wrong", "<faultHttpStatusCode>200</faultHttpStatusCode>")
    asked_200 = _post_plain(web, _plain_request(logs_call, status_200))
    assert asked_200.status_code == 200
    assert _plain_fault(asked_200)[:2] == ("authenticationFault", 10001)

    foreign = f"<getJobLogsParam><companyHandle>{other}</companyHandle></getJobLogsParam>"
    denied = _post_plain(web, _plain_request(foreign, _plain_header(user)))
    assert (denied.status_code, _plain_fault(denied)[0]) == (500, "authorizationFault")

    # the faults of the request itself: 30003 (30002 for what the operation lacks)
    header = _plain_header(user)
    malformed = [
        _plain_request(logs_call, header)[:-5],  # cut short
        b"<!DOCTYPE r [<!ENTITY e 'x'>]>" + _plain_request(logs_call, header),
        _plain_request(logs_call + logs_call, header),  # two operations
        _plain_request("", header),  # none
        _plain_request(logs_call, header + header),
        _plain_request(logs_call, header, namespace="urn:not-ips"),
        _plain_request(logs_call, header)
        .replace(b"<Request", b"<Envelope")
        .replace(b"</Request>", b"</Envelope>"),
        _plain_request(logs_call, header).replace(b"</authHeader>", b"</authHeader>text"),
        _plain_request("<x>" * 40 + "</x>" * 40, header),  # nested past the depth limit
        b"\xff\xfe<not xml",
        b"",
    ]
    for data in malformed:
        answer = _post_plain(web, data)
        assert answer.status_code == 500, data
        assert _plain_fault(answer)[:2] == ("ipsApiFault", 30003), (data, answer.text)
    missing = _post_plain(web, _plain_request("<getJobLogDetailsParam/>", header))
    assert _plain_fault(missing)[:2] == ("ipsApiFault", 30002)
    unknown = _post_plain(web, _plain_request("<getNothingParam/>", header))
    assert _plain_fault(unknown)[:2] == ("ipsApiFault", 30003)

    # a body over the limit is refused before it is read, as on the SOAP path
    head = (
        f"POST {PLAIN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        "Content-Length: 999999999\r\n\r\n<Request"
    ).encode()
    data, seconds = send_truncated(web, head, b"</ipsApiFault>")
    assert data.startswith(b"HTTP/1.1 413") and b"<code>30003</code>" in data
    assert seconds < 10
