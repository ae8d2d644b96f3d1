"""A raw-XML IPS SOAP client for the container tests: what a caller outside the fleet sends."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import httpx

from jobengine.model.ipsxml import IPS_NAMESPACE

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE = "/scene7/services/IpsApiService"
ENDED = "endDate"  # a job log has it once its run has ended


class Soap:
    """One user of the IPS web service at ``base`` (http://127.0.0.1:<published port>)."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password

    def call(self, operation: str, param: str) -> ET.Element:
        """``param`` (an ``<operationParam>`` element, as text) in an envelope with our
        authHeader; the operation's return element (an IPS fault fails the test)."""
        header = (
            f'<authHeader xmlns="{IPS_NAMESPACE}"><user>{escape(self.user)}</user>'
            f"<password>{escape(self.password)}</password></authHeader>"
        )
        envelope = (
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Header>{header}'
            f"</soapenv:Header><soapenv:Body>{param}</soapenv:Body></soapenv:Envelope>"
        )
        response = httpx.post(
            self.base + SERVICE,
            content=envelope.encode(),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body = ET.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
        assert body is not None and len(body) == 1, response.text
        assert body[0].tag == f"{{{IPS_NAMESPACE}}}{operation}Return", response.text
        return body[0]

    def submit(self, param: str) -> str:
        """submitJob with a ``<submitJobParam>`` document; its jobHandle."""
        handle = self.call("submitJob", param).findtext(f"{{{IPS_NAMESPACE}}}jobHandle")
        assert handle, "submitJob returned no jobHandle"
        return handle

    def job_logs(self, company: str) -> list[dict[str, str]]:
        """getJobLogs of the company: each job log's fields by name."""
        param = (
            f'<getJobLogsParam xmlns="{IPS_NAMESPACE}"><companyHandle>{escape(company)}'
            "</companyHandle><numRows>1000</numRows></getJobLogsParam>"
        )
        answer = self.call("getJobLogs", param)
        items = answer.findall(f"{{{IPS_NAMESPACE}}}jobLogArray/{{{IPS_NAMESPACE}}}items")
        return [{child.tag.split("}", 1)[1]: child.text or "" for child in item} for item in items]

    def wait_for_jobs(
        self, company: str, names: list[str], timeout: float = 300
    ) -> dict[str, dict[str, str]]:
        """The job log of each job named (originalJobName) once all of them have ended."""
        deadline = time.monotonic() + timeout
        while True:
            logs = {log["originalJobName"]: log for log in self.job_logs(company)}
            ended = {name: logs[name] for name in names if logs.get(name, {}).get(ENDED)}
            if len(ended) == len(names):
                return ended
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(ended))
                raise AssertionError(f"not ended after {timeout:.0f} s: {missing}")
            time.sleep(1)


def export_param(company: str, name: str, assets: list[str]) -> str:
    """A submitJobParam of an ExportJob with conversion (the demo's: PNG 400 wide, macro)."""
    items = "".join(f"<items>{escape(a)}</items>" for a in assets)
    return (
        f'<submitJobParam xmlns="{IPS_NAMESPACE}"><companyHandle>{escape(company)}'
        f"</companyHandle><jobName>{escape(name)}</jobName><exportJob>"
        f"<assetHandleArray>{items}</assetHandleArray><fmt>convert</fmt>"
        "<is_modifier>&amp;fmt=png&amp;wid=400</is_modifier><macro>$test$</macro>"
        "<emailSetting>None</emailSetting></exportJob></submitJobParam>"
    )


def finished_whole(log: dict[str, Any]) -> bool:
    """Every file of the job succeeded (nothing lost, nothing failed)."""
    total = int(log["totalFileCount"])
    return total > 0 and int(log["fileSuccessCount"]) == total and int(log["fileErrorCount"]) == 0
