"""The web service as the tests reach it: ``jobengine serve`` as a process, raw SOAP envelopes,
their answers and faults read back."""

from __future__ import annotations

import socket
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import httpx

from jobengine.model.ipsxml import IPS_NAMESPACE
from tests.support.helpers import PASSWORD
from tests.support.procs import Service, free_port

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE = "/scene7/services/IpsApiService"


class WebServer(Service):
    """``python -m jobengine.cli serve`` on a free port, stopped by its PID."""

    what = "server"

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "jobengine.cli", "serve", "--port", str(self.port)]
        self.start(argv, Path(env["JOBENGINE_HOME"]) / f"web-{self.port}.log", env)
        self.wait_ready()

    def ready(self) -> bool:
        try:
            httpx.get(f"{self.url}/api/v1/openapi.json", timeout=2).raise_for_status()
        except httpx.HTTPError:
            return False
        return True


def send_truncated(web: WebServer, data: bytes, until: bytes) -> tuple[bytes, float]:
    """Send ``data`` (a request whose body is far shorter than its Content-Length) on a raw
    socket and read the answer up to ``until``; returns it and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while until not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def envelope(body: str, header: str = "") -> str:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Header>{header}</soapenv:Header>'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


def auth_header(user: str, password: str = PASSWORD, status: int | None = None) -> str:
    extra = f"<faultHttpStatusCode>{status}</faultHttpStatusCode>" if status else ""
    return (
        f'<authHeader xmlns="{IPS_NAMESPACE}"><user>{user}</user><password>{password}</password>'
        f"<locale>en-US</locale>{extra}</authHeader>"
    )


@dataclass
class Fault:
    status: int
    faultcode: str
    faultstring: str
    element: str
    code: int
    reason: str


def body_child(response: httpx.Response) -> ET.Element:
    root = ET.fromstring(response.content)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    return body[0]


def parse_fault(response: httpx.Response) -> Fault:
    fault = body_child(response)
    assert fault.tag == f"{{{SOAP_ENV}}}Fault", response.text
    detail = fault.find("detail")
    assert detail is not None and len(detail) == 1
    ips = detail[0]
    namespace, _, local = ips.tag[1:].partition("}")
    assert namespace == IPS_NAMESPACE
    return Fault(
        response.status_code,
        fault.findtext("faultcode") or "",
        fault.findtext("faultstring") or "",
        local,
        int(ips.findtext(f"{{{IPS_NAMESPACE}}}code") or 0),
        ips.findtext(f"{{{IPS_NAMESPACE}}}reason") or "",
    )


def texts(parent: ET.Element, path: str, ns: str = IPS_NAMESPACE) -> list[str]:
    q = "/".join(f"{{{ns}}}{p}" for p in path.split("/"))
    return [e.text or "" for e in parent.findall(q)]
