"""The network as the tests see it: a DNS answered by the test, a self-signed certificate, and an
HTTP server on 127.0.0.1 that records the completion callbacks posted to it."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Resolve the given names to the given addresses (changing on each lookup); returns the
    names looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host in answers:
            asked.append(host)
            address = answers[host][min(len(asked), len(answers[host])) - 1]
            return real(address, port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def certificate(tmp: Path, name: str) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for ``name`` and its key, written to ``tmp``: (cert, key, PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp / "cert.pem", tmp / "key.pem", pem


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Hook:
    """A real HTTP server on 127.0.0.1 in a thread. POSTs to its path (``/hook/<random>``) are
    recorded and answered with the next queued status (200 when none; 0: no answer at all)."""

    def __init__(
        self, port: int = 0, statuses: tuple[int, ...] = (), tls: ssl.SSLContext | None = None
    ) -> None:
        self.path = f"/hook/{uuid.uuid4().hex}"
        self.posts: list[Posted] = []
        self.statuses = list(statuses)
        self.stopping = threading.Event()
        self.extra: dict[str, bytes] = {}  # GET path -> body
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0] != hook.path:  # another test's run: not ours
                    self._answer(404, b"no")
                    return
                hook.posts.append(Posted(self.path, dict(self.headers.items()), data))
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 0:
                    hook.stopping.wait(10)  # never answers (the client times out first)
                    self.close_connection = True
                    return
                if status == 302:
                    self.send_response(302)
                    self.send_header("Location", f"{hook.path}/moved")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if status == 299:  # 200 with a large body: the client reads 4 KiB at most
                    self.send_response(200)
                    self.send_header("Content-Length", str(64 * 1024 * 1024))
                    self.end_headers()
                    try:
                        for _ in range(1024):
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self._answer(status, b"ok")

            def do_GET(self) -> None:
                data = hook.extra.get(self.path)
                self._answer(200 if data else 404, data or b"no")

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, userinfo: str = "", query: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{self.path}{query}"

    def wait_posts(self, n: int, timeout: float = 15) -> list[Posted]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posts

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
