"""The web service against hostile requests on a real ``jobengine serve``: fault statuses that
cannot carry a body, encodings expat cannot read, a second Body, made-up dated namespaces,
hordes of attributes, forged Host headers, and who may read /metrics."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request

from jobengine.model.ipsxml import IPS_NAMESPACE, MAX_ATTRIBUTES, is_ips_namespace
from jobengine.settings import reset_settings
from jobengine.web.soap import fault_http_status
from jobengine.web.wsdl import service_location
from tests.support.helpers import make_company
from tests.support.stack import Stack
from tests.support.web import SERVICE, SOAP_ENV, WebServer, auth_header, envelope, parse_fault


@pytest.fixture(scope="module")
def configured(stack: Stack) -> Iterator[WebServer]:
    server = WebServer(
        {
            **stack.env,
            "JOBENGINE_PUBLIC_URL": "https://ips.example.com",
            "JOBENGINE_METRICS_TOKEN": "s3cret-metrics",
        }
    )
    yield server
    server.stop()


def _post(web: WebServer, body: str | bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        web.url + SERVICE,
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        timeout=30,
    )


def _raw_status(web: WebServer, body: bytes) -> tuple[int, bytes]:
    """Status and body as sent, read off the socket (httpx would refuse some of them)."""
    request = (
        f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def _get_active(company: str) -> str:
    return (
        f'<getActiveJobsParam xmlns="{IPS_NAMESPACE}"><companyHandle>{company}</companyHandle>'
        "</getActiveJobsParam>"
    )


@pytest.mark.parametrize(
    ("asked", "sent"),
    [("101", 200), ("100", 200), ("199", 200), ("204", 200), ("205", 200), ("304", 200),
     ("200", 200), ("404", 404), ("599", 599), ("99", 500), ("600", 500), ("²⁰⁴", 500),
     ("", 500), ("+200", 500), (" 418 ", 418)],
)  # fmt: skip
def test_every_fault_status_carries_the_fault(web: WebServer, asked: str, sent: int) -> None:
    assert fault_http_status(asked) == (None if sent == 500 else sent)
    header = (
        f'<authHeader xmlns="{IPS_NAMESPACE}"><user>nobody@example.com</user>'
        f"<password>wrong</password><faultHttpStatusCode>{asked}</faultHttpStatusCode></authHeader>"
    )
    status, body = _raw_status(web, envelope(_get_active("c"), header).encode())
    assert status == sent
    assert b"<code>10001</code>" in body and body.rstrip().endswith(b"</soapenv:Envelope>")


@pytest.mark.parametrize("encoding", ["UTF-7", "UTF-16", "x-no-such-encoding", "UTF-32"])
def test_an_unreadable_encoding_is_malformed_input(web: WebServer, encoding: str) -> None:
    company, _ = make_company(0)
    body = f'<?xml version="1.0" encoding="{encoding}"?>' + envelope(
        _get_active(company), auth_header(f"{company}@example.com")
    )
    fault = parse_fault(_post(web, body.encode()))
    assert (fault.status, fault.code) == (500, 30003)
    assert fault.faultcode == "soapenv:Client"  # the caller's fault, not the server's


def test_the_envelope_has_one_body_after_at_most_one_header(web: WebServer) -> None:
    company, _ = make_company(0)
    header = auth_header(f"{company}@example.com")
    good = envelope(_get_active(company), header)
    assert _post(web, good).status_code == 200
    second_body = good.replace(
        "</soapenv:Envelope>",
        f"<soapenv:Body>{_get_active('other')}</soapenv:Body></soapenv:Envelope>",
    )
    two_headers = good.replace(
        "<soapenv:Body>", f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body>", 1
    )
    header_last = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>{_get_active(company)}'
        f"</soapenv:Body><soapenv:Header>{header}</soapenv:Header></soapenv:Envelope>"
    )
    extra = good.replace("</soapenv:Envelope>", "<x:junk xmlns:x='urn:x'/></soapenv:Envelope>")
    for body in (second_body, two_headers, header_last, extra):
        fault = parse_fault(_post(web, body))
        assert (fault.code, fault.reason) == (
            30003, "a SOAP envelope holds one optional Header and then one Body, nothing else"
        )  # fmt: skip


@pytest.mark.parametrize(
    "version", ["2099-99-99", "2099-01-01", "2014-02-30", "1999-01-01", "2014-04-03-alpha"]
)
def test_made_up_dated_namespaces_are_refused(web: WebServer, version: str) -> None:
    company, _ = make_company(0)
    namespace = f"{IPS_NAMESPACE}/{version}"
    assert not is_ips_namespace(namespace)
    body = envelope(
        f'<getActiveJobsParam xmlns="{namespace}"><companyHandle>{company}</companyHandle>'
        "</getActiveJobsParam>",
        auth_header(f"{company}@example.com"),
    )
    assert parse_fault(_post(web, body)).code == 30003
    wsdl = httpx.get(f"{web.url}/scene7/webservice/IpsApi-{version}.wsdl", timeout=10)
    assert wsdl.status_code == 404
    assert is_ips_namespace(f"{IPS_NAMESPACE}/2014-04-03")
    assert is_ips_namespace(f"{IPS_NAMESPACE}/2021-04-26-beta")


def test_two_hundred_thousand_attributes_are_refused(web: WebServer) -> None:
    many = " ".join(f'a{i}="x"' for i in range(200_000))
    body = envelope(f'<getActiveJobsParam xmlns="{IPS_NAMESPACE}" {many}/>')
    fault = parse_fault(_post(web, body))
    assert fault.code == 30003
    assert f"more than {MAX_ATTRIBUTES} attributes" in fault.reason or "bytes" in fault.reason
    few = " ".join(f'a{i}="x"' for i in range(MAX_ATTRIBUTES + 1))
    fault = parse_fault(
        _post(web, envelope(f'<getActiveJobsParam xmlns="{IPS_NAMESPACE}" {few}/>'))
    )
    assert (fault.code, fault.reason) == (
        30003,
        f"an element has more than {MAX_ATTRIBUTES} attributes",
    )


def test_a_forged_host_never_reaches_the_wsdl(web: WebServer, configured: WebServer) -> None:
    evil = httpx.get(f"{web.url}/scene7/webservice/IpsApi.wsdl", headers={"Host": "evil.example"})
    assert evil.status_code == 400 and b"evil.example" not in evil.content
    for host in (f"localhost:{web.port}", f"127.0.0.1:{web.port}", f"[::1]:{web.port}"):
        wsdl = httpx.get(f"{web.url}/scene7/webservice/IpsApi.wsdl", headers={"Host": host})
        assert f'location="http://{host}{SERVICE}"'.encode() in wsdl.content
    for host in ("evil.example", "127.0.0.1@evil.example", 'x"><script>', "localhost:80/x"):
        wsdl = httpx.get(f"{configured.url}{SERVICE}?wsdl", headers={"Host": host})
        assert wsdl.status_code == 200
        assert f'location="https://ips.example.com{SERVICE}"'.encode() in wsdl.content
        assert host.encode() not in wsdl.content


def test_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    def location(host: str) -> str | None:
        scope = {"type": "http", "scheme": "http", "path": "/", "server": ("10.0.0.5", 80),
                 "headers": [(b"host", host.encode())]}  # fmt: skip
        return service_location(Request(scope))

    monkeypatch.setenv("JOBENGINE_ALLOWED_HOSTS", "ips.internal, Media.Example.COM.")
    monkeypatch.delenv("JOBENGINE_PUBLIC_URL", raising=False)
    reset_settings()
    try:
        assert location("ips.internal:8080") == f"http://ips.internal:8080{SERVICE}"
        assert location("MEDIA.example.com") == f"http://MEDIA.example.com{SERVICE}"
        for forged in ("evil.example", "ips.internal.evil.example", "", "ips.internal:99999999"):
            assert location(forged) is None, forged
    finally:
        monkeypatch.undo()
        reset_settings()


def test_metrics_with_and_without_a_token(web: WebServer, configured: WebServer) -> None:
    assert httpx.get(f"{web.url}/metrics", timeout=30).status_code == 200  # the default: open
    url = f"{configured.url}/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic s3cret-metrics"},
    ):
        denied = httpx.get(url, headers=headers, timeout=30)
        assert denied.status_code == 401 and b"jobengine_" not in denied.content
    allowed = httpx.get(url, headers={"Authorization": "Bearer s3cret-metrics"}, timeout=30)
    assert allowed.status_code == 200 and b"jobengine_" in allowed.content


def test_a_gzip_bomb_body_is_never_inflated(web: WebServer) -> None:
    bomb = gzip.compress(b"<" * (100 * 1024 * 1024), compresslevel=9)  # 100 MiB in ~100 KiB
    answer = _post(web, bomb, **{"Content-Encoding": "gzip"})
    assert parse_fault(answer).code == 30003  # read as the bytes sent: not XML
    json_answer = httpx.post(f"{web.url}/api/v1/getActiveJobs", content=bomb, timeout=30,
                             headers={"Content-Encoding": "gzip",
                                      "Content-Type": "application/json"})  # fmt: skip
    assert json_answer.status_code in (400, 401) and "code" in json_answer.json()
