"""The IPS SOAP endpoint against a real server process (``jobengine serve``) and a real worker."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from jobengine import submit
from jobengine.model.ipsxml import IPS_NAMESPACE
from tests.support.helpers import PASSWORD, export_request, make_company
from tests.support.stack import Stack
from tests.support.web import (
    SERVICE,
    Fault,
    WebServer,
    auth_header,
    body_child,
    envelope,
    parse_fault,
    send_truncated,
    texts,
)

DATED = f"{IPS_NAMESPACE}/2014-04-03"
SEED = """<submitJobParam xmlns="http://www.scene7.com/IpsApi/xsd">
   <companyHandle>{company}</companyHandle>
   <jobName>My Test Job</jobName>
   <imageServingPublishJob>
      <publishType>Full</publishType>
      <emailSetting>Error</emailSetting>
   </imageServingPublishJob>
</submitJobParam>"""


def element(name: str, value: Any, ns: str) -> ET.Element:
    """``value`` (dict, list = IPS array, or leaf) as the element ``name``."""
    out = ET.Element(f"{{{ns}}}{name}")
    if isinstance(value, dict) and set(value) == {"items"}:
        value = list(value["items"])
    if isinstance(value, dict):
        out.extend(element(k, v, ns) for k, v in value.items())
    elif isinstance(value, list):
        out.extend(element("items", v, ns) for v in value)
    else:
        out.text = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class Soap:
    """A raw-XML SOAP client for one user."""

    def __init__(self, server: WebServer, user: str) -> None:
        self.server, self.user = server, user

    def post(self, body: str | bytes, **headers: str) -> httpx.Response:
        return httpx.post(
            self.server.url + SERVICE,
            content=body,
            headers={"Content-Type": "text/xml; charset=utf-8", **headers},
            timeout=30,
        )

    def send(self, op: str, params: dict[str, Any], ns: str = IPS_NAMESPACE) -> httpx.Response:
        body = ET.tostring(element(f"{op}Param", params, ns), encoding="unicode")
        return self.post(envelope(body, auth_header(self.user)), SOAPAction=op)

    def call(self, op: str, params: dict[str, Any], ns: str = IPS_NAMESPACE) -> ET.Element:
        response = self.send(op, params, ns)
        assert response.status_code == 200, response.text
        answer = body_child(response)
        assert answer.tag == f"{{{ns}}}{op}Return"
        return answer

    def fault(self, op: str, params: dict[str, Any]) -> Fault:
        return parse_fault(self.send(op, params))


def test_seed_example_end_to_end(stack: Stack, web: WebServer) -> None:
    company, _ = make_company(0)
    soap = Soap(web, f"{company}@example.com")
    response = soap.post(envelope(SEED.format(company=company), auth_header(soap.user)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    expected = (
        f'<submitJobReturn xmlns="{IPS_NAMESPACE}">'
        f"<jobHandle>{company}|My Test Job|</jobHandle></submitJobReturn>"
    )
    assert expected in response.text
    log = stack.wait(company, f"{company}|My Test Job|")
    assert log.state == "Done"
    logs = soap.call("getJobLogs", {"companyHandle": company})
    assert texts(logs, "jobLogArray/items/originalJobName") == ["My Test Job"]
    assert texts(logs, "jobLogArray/items/submitUserEmail") == [soap.user]
    assert texts(logs, "jobLogArray/items/jobSubType") == ["full"]


def test_seed_example_verbatim_on_company_47(stack: Stack, web: WebServer) -> None:
    from sqlalchemy import select

    from jobengine.assets.catalog import create_company, create_user
    from jobengine.runtime import get_runtime
    from jobengine.store.schema import Company

    with get_runtime().store.write() as session:
        company = session.scalar(select(Company).where(Company.handle == "47"))
        if company is None:
            company = create_company(session, "47", "Seed company")
        create_user(session, "web-seed-47@example.com", PASSWORD, "IpsUser", [company])
    soap = Soap(web, "web-seed-47@example.com")
    response = soap.post(envelope(SEED.format(company="47"), auth_header(soap.user)))
    assert response.status_code == 200, response.text
    answer = ET.tostring(body_child(response), encoding="unicode")
    assert answer == (
        '<ns0:submitJobReturn xmlns:ns0="http://www.scene7.com/IpsApi/xsd">'
        "<ns0:jobHandle>47|My Test Job|</ns0:jobHandle></ns0:submitJobReturn>"
    )
    assert (
        '<submitJobReturn xmlns="http://www.scene7.com/IpsApi/xsd">'
        "<jobHandle>47|My Test Job|</jobHandle></submitJobReturn>"
    ) in response.text
    assert stack.wait("47", "47|My Test Job|").state == "Done"


def test_job_operations(stack: Stack, web: WebServer) -> None:
    company, assets = make_company(2)
    soap = Soap(web, f"{company}@example.com")
    export = export_request(company, assets, "Export now")
    handle = texts(soap.call("submitJob", export), "jobHandle")[0]
    done = stack.wait(company, handle)
    assert done.state == "Done"

    nightly = export_request(company, assets, "Nightly", execSchedule="0 0 3 1 1 ? 2099")
    scheduled = texts(soap.call("submitJob", nightly, ns=DATED), "jobHandle", DATED)[0]
    jobs = soap.call("getScheduledJobs", {"companyHandle": company})
    assert texts(jobs, "jobArray/items/jobHandle") == [scheduled]
    assert texts(jobs, "jobArray/items/exportJob/fmt") == ["orig"]
    assert texts(jobs, "jobArray/items/exportJob/assetHandleArray/items") == assets
    assert texts(jobs, "jobArray/items/triggerState") == ["Normal"]
    assert texts(jobs, "jobArray/items/nextFireTime")[0].startswith("2099-01-01T03:00:00")

    params = {"companyHandle": company, "jobHandle": scheduled}
    assert len(soap.call("pauseJob", params)) == 0
    jobs = soap.call("getScheduledJobs", {"companyHandle": company, "jobHandle": scheduled})
    assert texts(jobs, "jobArray/items/triggerState") == ["Paused"]
    assert len(soap.call("resumeJob", params)) == 0
    stopped = soap.fault("stopJob", params)
    assert (stopped.element, stopped.code) == ("ipsApiFault", 30001)
    assert "not running" in stopped.reason
    assert len(soap.call("executeJob", params)) == 0
    active = soap.call("getActiveJobs", {"companyHandle": company, "includeWaitingJobs": True})
    assert set(texts(active, "jobArray/items/originalName")) <= {"Nightly"}
    assert len(soap.call("deleteJob", params)) == 0
    assert texts(soap.call("getScheduledJobs", {"companyHandle": company}), "jobArray") == [""]

    details = soap.call(
        "getJobLogDetails",
        {"companyHandle": company, "jobHandle": handle, "logTypeArray": ["ReturnSuccess"]},
    )
    assert texts(details, "jobLogArray/items/detailTotalRows") == ["2"]
    assert set(texts(details, "jobLogArray/items/detailArray/items/assetHandle")) == set(assets)
    dates = texts(details, "jobLogArray/items/detailArray/items/dateCreated")
    assert all(d.endswith("+00:00") for d in dates)
    logs = soap.call("getAssetJobLogs", {"companyHandle": company, "assetHandle": assets[0]})
    assert handle.split("|")[0] in texts(logs, "jobLogArray/items/jobHandle")[0]

    saved = soap.call(
        "saveImageFormat", {"companyHandle": company, "name": "thumb", "urlModifier": "wid=80"}
    )
    preset = texts(saved, "imageFormatHandle")[0]
    formats = soap.call("getImageFormats", {"companyHandle": company})
    assert texts(formats, "imageFormatArray/items/imageFormatHandle") == [preset]
    assert texts(formats, "imageFormatArray/items/urlModifier") == ["wid=80"]
    params = {"companyHandle": company, "imageFormatHandle": preset}
    assert len(soap.call("deleteImageFormat", params)) == 0
    assert texts(soap.call("getImageFormats", {"companyHandle": company}), "imageFormatArray") == [
        ""
    ]


def test_http_basic_auth_and_fault_status(stack: Stack, web: WebServer) -> None:
    company, _ = make_company(0)
    soap = Soap(web, f"{company}@example.com")
    body = f'<getImageFormatsParam xmlns="{IPS_NAMESPACE}"><companyHandle>{company}'
    body += "</companyHandle></getImageFormatsParam>"
    response = httpx.post(
        web.url + SERVICE, content=envelope(body), auth=(soap.user, PASSWORD), timeout=30
    )
    assert response.status_code == 200, response.text
    assert body_child(response).tag == f"{{{IPS_NAMESPACE}}}getImageFormatsReturn"
    # faultHttpStatusCode chooses the status of a fault
    bad = envelope(body, auth_header(soap.user, "wrong", status=200))
    fault = parse_fault(soap.post(bad))
    assert (fault.status, fault.code, fault.faultstring) == (200, 10001, "AuthenticationException")


def test_authentication_and_authorization_faults(stack: Stack, web: WebServer) -> None:
    mine, _ = make_company(0)
    other, _ = make_company(0)
    seed = SEED.format(company=mine)
    fault = parse_fault(Soap(web, "").post(envelope(seed)))
    assert (fault.status, fault.faultcode, fault.faultstring) == (
        500,
        "soapenv:Client",
        "AuthenticationException",
    )
    assert (fault.element, fault.code) == ("authenticationFault", 10000)

    fault = parse_fault(Soap(web, "").post(envelope(seed, auth_header(f"{mine}@example.com", "x"))))
    assert (fault.element, fault.code) == ("authenticationFault", 10001)

    foreign = envelope(SEED.format(company=other), auth_header(f"{mine}@example.com"))
    fault = parse_fault(Soap(web, "").post(foreign))
    assert (fault.status, fault.element, fault.code) == (500, "authorizationFault", 20006)
    assert fault.faultstring == "AuthorizationException"


def test_request_faults(stack: Stack, web: WebServer) -> None:
    company, _ = make_company(0)
    soap = Soap(web, f"{company}@example.com")
    header = auth_header(soap.user)

    def fault_of(body: str | bytes) -> Fault:
        return parse_fault(soap.post(body))

    wrong_ns = SEED.format(company=company).replace(IPS_NAMESPACE, "http://example.com/other")
    fault = fault_of(envelope(wrong_ns, header))
    assert (fault.element, fault.code, fault.faultstring) == (
        "ipsApiFault",
        30003,
        "IpsApiException",
    )
    assert "not an IPS namespace" in fault.reason or "is in namespace" in fault.reason

    assert fault_of(envelope("<submitJobParam", header)).code == 30003
    assert fault_of(b"not xml at all").code == 30003
    assert fault_of(SEED.format(company=company)).code == 30003  # no envelope

    xxe = (
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + envelope(f'<getImageFormatsParam xmlns="{IPS_NAMESPACE}"><companyHandle>&x;'
                   "</companyHandle></getImageFormatsParam>", header)
    )  # fmt: skip
    fault = fault_of(xxe)
    assert fault.code == 30003 and "root:" not in fault.reason
    laughs = '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;">'
    laughs += '<!ENTITY c "&b;&b;&b;&b;">]>' + envelope("<x>&c;</x>", header)
    assert fault_of(laughs).code == 30003

    unknown = envelope(f'<fooParam xmlns="{IPS_NAMESPACE}"/>', header)
    assert fault_of(unknown).code == 30003
    missing = soap.fault("submitJob", {"companyHandle": company, "jobName": "no type"})
    assert (missing.element, missing.code) == ("ipsApiFault", 30002)
    bad = soap.fault("getJobLogs", {"companyHandle": company, "startDate": "yesterday"})
    assert (bad.code, bad.faultcode) == (30001, "soapenv:Client")


def test_huge_body_is_refused_unread(stack: Stack, web: WebServer) -> None:
    size = 50 * 1024 * 1024
    head = (
        f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    answer, took = send_truncated(web, head + b"<" * 65536, b"</soapenv:Envelope>")
    assert took < 5
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"<code>30003</code>" in answer
    # the server is still there
    assert httpx.get(web.url + "/api/v1/openapi.json", timeout=10).status_code == 200


def test_wsdl_with_a_zeep_client(stack: Stack, web: WebServer) -> None:
    import zeep
    from zeep.exceptions import Fault as ZeepFault

    response = httpx.get(f"{web.url}/scene7/webservice/IpsApi.wsdl", timeout=10)
    assert response.status_code == 200
    assert f'location="{web.url}{SERVICE}"' in response.text
    assert httpx.get(f"{web.url}{SERVICE}?wsdl", timeout=10).content == response.content

    company, assets = make_company(1)
    client = zeep.Client(f"{web.url}/scene7/webservice/IpsApi.wsdl")
    header = client.get_element(f"{{{IPS_NAMESPACE}}}authHeader")
    auth = [header(user=f"{company}@example.com", password=PASSWORD)]
    export = {"assetHandleArray": {"items": assets}, "fmt": "orig", "emailSetting": "None"}
    handle = client.service.submitJob(
        companyHandle=company, jobName="Zeep", exportJob=export, _soapheaders=auth
    )
    assert handle == f"{company}|Zeep|"
    assert stack.wait(company, handle).state == "Done"

    logs = client.service.getJobLogs(companyHandle=company, _soapheaders=auth)
    [log] = logs  # zeep unwraps the one array of a response into a list
    assert (log.originalJobName, log.totalFileCount, log.fatalError) == ("Zeep", 1, False)
    assert log.startDate.tzinfo is not None
    [detailed] = client.service.getJobLogDetails(
        companyHandle=company, jobHandle=handle, _soapheaders=auth
    )
    assert detailed.detailTotalRows == len(detailed.detailArray["items"]) > 0

    client.service.submitJob(
        companyHandle=company,
        jobName="Later",
        execSchedule="0 0 3 1 1 ? 2099",
        exportJob=export,
        _soapheaders=auth,
    )
    [job] = client.service.getScheduledJobs(companyHandle=company, _soapheaders=auth)
    assert (job.originalName, job.exportJob.fmt) == ("Later", "orig")
    assert job.exportJob.assetHandleArray["items"] == assets

    bad = [header(user=f"{company}@example.com", password="wrong")]
    with pytest.raises(ZeepFault) as caught:
        client.service.getJobLogs(companyHandle=company, _soapheaders=bad)
    assert caught.value.message == "AuthenticationException"
    assert caught.value.detail is not None
    assert caught.value.detail.findtext(f".//{{{IPS_NAMESPACE}}}code") == "10001"


def test_log_messages_follow_the_auth_header_locale(stack: Stack, web: WebServer) -> None:
    company, assets = make_company(1)
    handle = submit(export_request(company, assets, "Localized"))
    stack.wait(company, handle)
    soap = Soap(web, f"{company}@example.com")
    params = {"companyHandle": company, "jobHandle": handle}
    body = ET.tostring(element("getJobLogDetailsParam", params, IPS_NAMESPACE), encoding="unicode")

    def messages(header: str, **headers: str) -> list[str]:
        response = soap.post(envelope(body, header), SOAPAction="getJobLogDetails", **headers)
        assert response.status_code == 200, response.text
        return texts(body_child(response), "jobLogArray/items/detailArray/items/logMessage")

    german = auth_header(soap.user).replace("<locale>en-US</locale>", "<locale>de-DE</locale>")
    assert "Job Localized gestartet" in messages(german)
    assert "job Localized started" in messages(auth_header(soap.user))
    no_locale = auth_header(soap.user).replace("<locale>en-US</locale>", "")
    assert "Tâche Localized démarrée" in messages(no_locale, **{"Accept-Language": "fr;q=0.9"})


def test_dated_wsdl_with_a_zeep_client(stack: Stack, web: WebServer) -> None:
    import zeep

    dated = f"{IPS_NAMESPACE}/2014-04-03"
    url = f"{web.url}/scene7/webservice/IpsApi-2014-04-03.wsdl"
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and f'targetNamespace="{dated}"' in response.text
    missing = httpx.get(f"{web.url}/scene7/webservice/IpsApi-latest.wsdl", timeout=10)
    assert missing.status_code == 404

    company, assets = make_company(1)
    client = zeep.Client(url)
    header = client.get_element(f"{{{IPS_NAMESPACE}}}authHeader")  # always the base namespace
    auth = [header(user=f"{company}@example.com", password=PASSWORD, locale="de")]
    export = {"assetHandleArray": {"items": assets}, "fmt": "orig", "emailSetting": "None"}
    handle = client.service.submitJob(
        companyHandle=company, jobName="Datiert", exportJob=export, _soapheaders=auth
    )
    assert handle == f"{company}|Datiert|"
    stack.wait(company, handle)
    [detailed] = client.service.getJobLogDetails(
        companyHandle=company, jobHandle=handle, _soapheaders=auth
    )
    messages = [d.logMessage for d in detailed.detailArray["items"]]
    assert "Job Datiert gestartet" in messages  # authHeader/locale, through zeep
    with client.settings(raw_response=True):
        raw = client.service.getJobLogs(companyHandle=company, _soapheaders=auth)
    assert f'<getJobLogsReturn xmlns="{dated}">' in raw.text  # answered in the asked namespace
