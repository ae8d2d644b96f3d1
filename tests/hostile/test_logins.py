"""Failed logins against a real ``jobengine serve``: ``X-Forwarded-For`` is believed only from
the proxies the operator names, and one user's failures lock out no one else."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request

from jobengine.errors import ConfigurationError
from jobengine.settings import Settings, reset_settings
from jobengine.web.http import client_address
from tests.support.helpers import PASSWORD, make_company
from tests.support.stack import Stack
from tests.support.web import WebServer

LOCKED = "too many failed attempts"


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


@pytest.fixture
def proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBENGINE_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/24, ::1")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_forwarded_addresses_are_ignored_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBENGINE_TRUSTED_PROXIES", raising=False)
    reset_settings()
    assert client_address(_request("127.0.0.1", "203.0.113.7")) == "127.0.0.1"
    assert client_address(_request("10.0.0.1", "203.0.113.7")) == "10.0.0.1"


def test_forwarded_addresses_from_named_proxies(proxies: None) -> None:
    assert client_address(_request("10.0.0.1", "203.0.113.7")) == "203.0.113.7"
    # a client's own X-Forwarded-For is kept on the left by proxies: read from the right
    assert client_address(_request("10.0.0.1", "1.2.3.4, 203.0.113.7")) == "203.0.113.7"
    assert client_address(_request("10.0.0.1", "1.2.3.4", "203.0.113.7")) == "203.0.113.7"
    # a chain of trusted proxies is skipped; the first untrusted hop is the client
    assert client_address(_request("10.0.0.1", "203.0.113.7, 192.168.0.9")) == "203.0.113.7"
    assert client_address(_request("::1", "2001:db8::5")) == "2001:db8::5"
    # only proxies, garbage, nothing: the peer itself
    assert client_address(_request("10.0.0.1", "192.168.0.9")) == "10.0.0.1"
    assert client_address(_request("10.0.0.1", "evil, not-an-ip")) == "10.0.0.1"
    assert client_address(_request("10.0.0.1")) == "10.0.0.1"
    assert client_address(_request("10.0.0.1", "x" * 100_000)) == "10.0.0.1"
    # from any other peer the header counts for nothing
    assert client_address(_request("203.0.113.9", "10.0.0.1")) == "203.0.113.9"
    assert client_address(_request("127.0.0.1", "203.0.113.7")) == "127.0.0.1"


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.300", "10.0.0.0/33", "*"])
def test_a_malformed_proxy_list_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="JOBENGINE_TRUSTED_PROXIES"):
        Settings.from_env({"JOBENGINE_HOME": "/tmp/x", "JOBENGINE_TRUSTED_PROXIES": bad})


def _login(server: WebServer, user: str, password: str, forwarded: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/getActiveJobs",
        json={},
        auth=(user, password),
        headers={"X-Forwarded-For": forwarded},
        timeout=30,
    )


@pytest.fixture(scope="module")
def plain_web(stack: Stack) -> Iterator[WebServer]:
    server = WebServer(stack.env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxied_web(stack: Stack) -> Iterator[WebServer]:
    server = WebServer({**stack.env, "JOBENGINE_TRUSTED_PROXIES": "127.0.0.1"})
    yield server
    server.stop()


def test_rotating_x_forwarded_for_does_not_reset_the_limit(plain_web: WebServer) -> None:
    company, _ = make_company(0)
    user = f"{company}@example.com"
    for i in range(5):
        answer = _login(plain_web, user, "wrong", f"203.0.113.{i}")
        assert answer.status_code == 401 and LOCKED not in answer.json()["reason"]
    answer = _login(plain_web, user, PASSWORD, "203.0.113.200")
    assert answer.status_code == 401 and answer.json()["reason"].startswith(LOCKED)
    # another user behind the same address is not locked out
    other, _ = make_company(0)
    assert _login(plain_web, f"{other}@example.com", PASSWORD, "203.0.113.0").status_code == 200


def test_a_trusted_proxy_forwards_the_client_address(proxied_web: WebServer) -> None:
    company, _ = make_company(0)
    user = f"{company}@example.com"
    for _ in range(5):  # the client tries to hide behind a forged left-hand entry
        assert _login(proxied_web, user, "wrong", f"6.6.6.{_}, 203.0.113.5").status_code == 401
    answer = _login(proxied_web, user, PASSWORD, "203.0.113.5")
    assert answer.json()["reason"].startswith(LOCKED)
    # the same user from another address is not locked out
    assert _login(proxied_web, user, PASSWORD, "203.0.113.6").status_code == 200
