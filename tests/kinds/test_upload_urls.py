"""UploadUrlsJob: the hardened fetcher against a real HTTP(S) server on 127.0.0.1, and real jobs
through submit() and a worker on both stores.

The server (stdlib ``http.server`` in a thread) serves good images, a redirect chain, redirects
to refused addresses, a 404, a body cut short against its Content-Length, oversized bodies, a
slow server and a trickling one. The worker may fetch from 127.0.0.1 because the tests'
environment sets ``JOBENGINE_UPLOAD_ALLOWED_HOSTS=127.0.0.1`` (with a 1 MiB size limit and a
2 s read timeout: ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jobengine import errors, submit
from jobengine.net.fetch import FetchError, FetchLimits, fetch
from jobengine.net.policy import AddressPolicy
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from jobengine.store.schema import Asset, Company, Folder
from tests.support.helpers import image_bytes, upload_request
from tests.support.net import certificate, fake_dns

MiB = 1024 * 1024


JPEG, PNG = image_bytes("JPEG"), image_bytes("PNG")
Route = Callable[[BaseHTTPRequestHandler], None]


class Site:
    """A real HTTP server on 127.0.0.1 in a thread; ``routes`` maps a path to a responder."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                site.seen.append((self.path, dict(self.headers)))
                route = site.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def body(
    data: bytes, content_type: str = "application/octet-stream", length: int | None = None
) -> Route:
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data) if length is None else length))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
        if length is not None:
            h.close_connection = True

    return respond


def redirect(location: str, status: int = 302) -> Route:
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return respond


def unbounded(size: int) -> Route:
    """A body of ``size`` bytes without Content-Length (ends when the connection closes)."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        block = b"\xff" * 65536
        sent = 0
        try:
            while sent < size:
                h.wfile.write(block)
                sent += len(block)
        except OSError:  # the client gave up: what the limit is for
            pass

    return respond


def slow(site: Site, delay: float) -> Route:
    """Headers at once, the body after ``delay`` seconds."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(JPEG)))
        h.end_headers()
        h.wfile.flush()
        if site.stopping.wait(delay):
            return
        with contextlib.suppress(OSError):
            h.wfile.write(JPEG)

    return respond


def trickle(site: Site, every: float) -> Route:
    """One byte every ``every`` seconds, never finishing (until the client leaves)."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            while not site.stopping.wait(every):
                h.wfile.write(b"x")
                h.wfile.flush()
        except OSError:
            pass

    return respond


def echo_auth(h: BaseHTTPRequestHandler) -> None:
    body(JPEG)(h)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    server = Site()
    port = server.port
    server.routes.update(
        {
            "/img/a.jpg": body(JPEG, "image/jpeg"),
            "/img/b.png": body(PNG, "image/png"),
            "/img/named.bin": body(PNG),  # a PNG whatever the name says
            "/hop/3": redirect("/hop/2"),
            "/hop/2": redirect(f"http://127.0.0.1:{port}/hop/1", 301),
            "/hop/1": redirect("0", 307),  # relative
            "/hop/0": redirect("/img/b.png", 308),
            "/loop": redirect("/loop"),
            "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-loopback": redirect(f"http://127.0.0.2:{port}/img/a.jpg"),
            "/to-v6-loopback": redirect(f"http://[::1]:{port}/img/a.jpg"),
            "/to-ftp": redirect("ftp://127.0.0.1/a.jpg"),
            "/no-location": redirect(""),
            "/gone": lambda h: h.send_error(410, "Gone"),
            "/cut": body(JPEG[:100], "image/jpeg", length=len(JPEG)),
            "/big": body(b"\0" * (2 * MiB)),
            "/big-unbounded": unbounded(3 * MiB),
            "/empty": body(b""),
            "/slow": slow(server, 4.0),
            "/trickle": trickle(server, 0.2),
            "/auth": redirect("/echo"),
            "/echo": echo_auth,
        }
    )
    yield server
    server.stop()


LOCAL = AddressPolicy.parse(["127.0.0.1"])
LIMITS = FetchLimits(max_bytes=MiB, connect_timeout=2, read_timeout=1, deadline=10)


def _get(url: str, policy: AddressPolicy = LOCAL, limits: FetchLimits = LIMITS, **kw: Any) -> bytes:
    return b"".join(fetch(url, policy=policy, limits=limits, **kw))


def _fails(url: str, text: str, **kw: Any) -> str:
    with pytest.raises(FetchError) as caught:
        _get(url, **kw)
    assert text in caught.value.reason, caught.value.reason
    return caught.value.reason


# --- the fetcher (in this process) -------------------------------------------------------------


def test_fetches_and_follows_a_redirect_chain(site: Site) -> None:
    assert _get(site.url("/img/a.jpg")) == JPEG
    assert _get(site.url("/hop/3")) == PNG  # 4 redirects: 302, 301, 307 (relative), 308


def test_refused_addresses_and_redirect_targets(site: Site) -> None:
    _fails(site.url("/img/a.jpg"), "loopback address", policy=AddressPolicy())
    _fails(site.url("/img/a.jpg", host="localhost"), "loopback address", policy=AddressPolicy())
    _fails(site.url("/to-metadata"), "169.254.169.254): link-local address")
    _fails(site.url("/to-loopback"), "127.0.0.2): loopback address")  # only 127.0.0.1 allowed
    _fails(site.url("/to-v6-loopback"), "(::1): loopback address")
    _fails(site.url("/to-ftp"), "only http and https")
    _fails(site.url("/loop"), "more than 5 redirects")
    _fails(site.url("/no-location"), "without Location")
    _fails("http://[::ffff:127.0.0.1]/x", "loopback (IPv4 127.0.0.1 inside IPv6)", policy=LOCAL)


def test_http_errors_and_broken_bodies(site: Site) -> None:
    _fails(site.url("/missing"), "HTTP 404 Not Found from http://127.0.0.1:")
    _fails(site.url("/gone"), "HTTP 410")
    _fails(site.url("/cut"), f"cut off after 100 of {len(JPEG)} bytes")
    _fails(site.url("/big"), f"{2 * MiB} bytes (Content-Length); at most {MiB} allowed")
    _fails(site.url("/big-unbounded"), f"larger than {MiB} bytes")  # no Content-Length
    _fails(site.url("/empty"), "empty file")


def test_timeouts_and_the_deadline(site: Site) -> None:
    started = time.monotonic()
    _fails(site.url("/slow"), "timed out")
    assert time.monotonic() - started < 3
    started = time.monotonic()
    limits = FetchLimits(max_bytes=MiB, connect_timeout=2, read_timeout=1, deadline=1.5)
    _fails(site.url("/trickle"), "took longer than 2 s", limits=limits)  # each read is quick
    assert time.monotonic() - started < 3


def test_credentials_go_to_their_host_only_and_never_into_reasons(site: Site) -> None:
    site.seen.clear()
    assert _get(site.url("/auth").replace("://", "://alice:s%40cret@")) == JPEG
    (first, headers), (second, again) = site.seen
    assert (first, second) == ("/auth", "/echo")
    assert headers["Authorization"] == "Basic YWxpY2U6c0BjcmV0"  # alice:s@cret
    assert "Authorization" not in again  # not sent to the redirect target
    reason = _fails(site.url("/missing?token=abc").replace("://", "://bob:pw@"), "HTTP 404")
    assert "pw" not in reason and "bob" not in reason and "abc" not in reason


def test_the_vetted_address_is_connected_without_a_second_lookup(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a rebinding name: public-looking first answer allowed here, then a private one
    asked = fake_dns(monkeypatch, {"images.example": ["127.0.0.1", "10.0.0.1"]})
    site.seen.clear()
    assert _get(site.url("/img/a.jpg", host="images.example")) == JPEG
    assert asked == ["images.example"]  # resolved once; the connection used that answer
    assert site.seen[0][1]["Host"] == f"images.example:{site.port}"
    # a name with one refused address among its answers is refused as a whole
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", site.port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.1", site.port)),
        ],
    )
    _fails(site.url("/img/a.jpg", host="mixed.example"), "(192.168.0.1): private address")


def test_https_checks_the_certificate_against_the_url_host_with_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key, pem = certificate(tmp_path, "images.example")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value,misc]
    secure = Site(tls=server_tls)
    secure.routes["/a.jpg"] = body(JPEG)
    try:
        fake_dns(monkeypatch, {"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        client_tls = ssl.create_default_context(cadata=pem.decode())
        url = secure.url("/a.jpg", host="images.example", scheme="https")
        assert _get(url, tls=client_tls) == JPEG
        assert names == ["images.example"]
        other = secure.url("/a.jpg", host="other.example", scheme="https")
        _fails(other, "TLS check of other.example failed", tls=client_tls)
        _fails(url, "TLS check of images.example failed")  # not trusted by the system CAs
    finally:
        secure.stop()


def test_ip_literals_in_every_spelling_are_judged_by_their_address() -> None:
    assert AddressPolicy().refusal("10.0.0.1", 80, ipaddress.ip_address("10.0.0.1")) == "private"
    _fails("http://10.0.0.1:9/x", "(10.0.0.1): private address", policy=AddressPolicy())
    # short, decimal and hex forms resolve (locally, no DNS) to what they are
    for host in ("127.1", "2130706433", "0x7f000001", "0177.0.0.1"):
        _fails(f"http://{host}:9/x", "(127.0.0.1): loopback address", policy=AddressPolicy())
    _fails("http://[::ffff:7f00:1]:9/x", "loopback (IPv4 127.0.0.1 inside IPv6)",
           policy=AddressPolicy())  # fmt: skip


# --- real jobs ---------------------------------------------------------------------------------


def _assets(company_handle: str) -> dict[str, Asset]:
    """The company's assets by path (``/pics/a.jpg``)."""
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .join(Company, Company.id == Asset.company_id)
            .where(Company.handle == company_handle)
        ).all()
    return {f"{path.rstrip('/')}/{a.name}": a for a, path in rows}


def _stored_uploads(company: str) -> list[Path]:
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    return sorted(p for p in (storage.root / company / "uploads").rglob("*") if p.is_file())


def test_upload_urls_end_to_end(stack, site: Site) -> None:
    company, _ = stack.company(0)
    entries = [
        (site.url("/img/a.jpg"), "pics/a.jpg"),
        (site.url("/hop/3"), "/pics/sub/b.png"),
        (site.url("/img/named.bin"), "pics/named.jpg"),
        (site.url("/to-metadata"), "pics/meta.jpg"),
        (site.url("/missing"), "pics/missing.jpg"),
        (site.url("/cut"), "pics/cut.jpg"),
        (site.url("/big-unbounded"), "pics/big.jpg"),
        (site.url("/slow"), "pics/slow.jpg"),
        (site.url("/img/a.jpg"), "../../etc/passwd"),
        (site.url("/img/a.jpg"), "pics/tab\there.jpg"),
    ]
    handle = submit(upload_request(company, entries, "Fetch Them"))
    log = stack.wait(company, handle)
    assert log.state == "Done"
    assert (log.file_success_count, log.file_error_count, log.total_file_count) == (3, 7, 10)
    types = [d.log_type for d in log.details]
    assert types[0] == "BeginUploadUrls" and types[-1] == "EndUploadUrls"
    errors_ = sorted(d.log_message for d in log.details if d.log_type == "UploadError")
    expected = [
        "link-local address",
        "HTTP 404 Not Found",
        "cut off after 100 of",
        f"larger than {MiB} bytes",
        "timed out",
        "destPath '../../etc/passwd' leaves the company's folders with '..'",
        "holds the control character '\\t'",
    ]
    for text in expected:
        assert any(text in message for message in errors_), (text, errors_)
    assert all(message.startswith("cannot upload http://127.0.0.1:") for message in errors_)
    assets = _assets(company)
    assert sorted(assets) == ["/pics/a.jpg", "/pics/named.jpg", "/pics/sub/b.png"]
    assert {a.type for a in assets.values()} == {"Image"}  # sniffed, whatever the name says
    assert all(a.publish_state == "NotMarkedForPublish" for a in assets.values())
    done = {d.asset_handle for d in log.details if d.log_type == "UploadSuccess"}
    assert done == {a.handle for a in assets.values()}
    stored = _stored_uploads(company)  # no partial file of a failed transfer anywhere
    assert sorted(p.read_bytes() for p in stored) == sorted([JPEG, PNG, PNG])
    assert not [p for p in (stored[0].parents[2]).rglob(".tmp-*")]


def test_overwrite_preserve_publish_state_and_ready_for_publish(stack, site: Site) -> None:
    company, _ = stack.company(0)
    first = stack.wait(
        company,
        submit(
            upload_request(
                company, [(site.url("/img/a.jpg"), "x/a.jpg")], "U1", readyForPublish=True
            )
        ),
    )
    assert first.file_success_count == 1
    before = _assets(company)["/x/a.jpg"]
    assert (before.publish_state, before.size, before.type) == (
        "MarkedForPublish",
        len(JPEG),
        "Image",
    )

    # overwrite false: skipped with a warning, nothing fetched, nothing changed
    site.seen.clear()
    second = stack.wait(
        company, submit(upload_request(company, [(site.url("/img/b.png"), "x/a.jpg")], "U2"))
    )
    assert (second.file_success_count, second.file_warning_count) == (0, 1)
    assert second.file_duplicate_count == 1
    skipped = [d for d in second.details if d.log_type == "DuplicateSkipped"]
    assert skipped[0].log_message == (
        "skipped /x/a.jpg: an asset of that name exists and overwrite is false"
    )
    assert skipped[0].asset_handle == before.handle
    assert site.seen == []
    assert _assets(company)["/x/a.jpg"].file_key == before.file_key

    # overwrite true, preservePublishState unset (keep): same handle, new file, state kept
    third = stack.wait(
        company,
        submit(
            upload_request(company, [(site.url("/img/b.png"), "x/a.jpg")], "U3", overwrite=True)
        ),
    )
    assert (third.file_success_count, third.file_update_count) == (1, 1)
    after = _assets(company)["/x/a.jpg"]
    assert after.handle == before.handle and after.id == before.id
    assert (after.size, after.publish_state) == (len(PNG), "MarkedForPublish")
    assert after.updated_at > before.updated_at and after.file_key != before.file_key
    storage = get_runtime().storage
    assert storage.exists(after.file_key) and not storage.exists(before.file_key)
    replaced = [d.log_message for d in third.details if d.log_type == "UploadSuccess"]
    assert replaced == [f"replaced /x/a.jpg with {site.url('/img/b.png')}"]

    # overwrite true, preservePublishState false, readyForPublish false: reset
    fourth = stack.wait(
        company,
        submit(
            upload_request(
                company,
                [(site.url("/img/a.jpg"), "x/a.jpg")],
                "U4",
                overwrite=True,
                preservePublishState=False,
            )
        ),
    )
    assert fourth.file_success_count == 1
    last = _assets(company)["/x/a.jpg"]
    assert (last.handle, last.size) == (before.handle, len(JPEG))
    assert last.publish_state == "NotMarkedForPublish"
    assert len(_stored_uploads(company)) == 1  # every replaced file was removed


def test_follow_on_publish_runs_after_the_upload(stack, site: Site) -> None:
    company, _ = stack.company(0)
    request = upload_request(
        company,
        [(site.url("/img/a.jpg"), "pub/a.jpg"), (site.url("/missing"), "pub/b.jpg")],
        "With Publish",
        readyForPublish=True,
        postJobOnlyIfFiles=True,
        postImageServingPublishJob={"publishType": "Full", "emailSetting": "None"},
    )
    log = stack.wait(company, submit(request, user=f"{company}@example.com"))
    follow = log.output["followOn"]
    assert follow == f"{company}|With Publish_Pub|"
    rows = [d.log_message for d in log.details if d.log_type == "InitiatingJobName"]
    assert rows == [f"submitted follow-on job ImageServingPublishJob {follow}"]
    published = stack.wait(company, follow)
    assert published.state == "Done" and published.original_job_name == "With Publish_Pub"
    assert published.submit_user_email == f"{company}@example.com"
    assert published.file_success_count == 1
    assert [d.asset_name for d in published.details if d.log_type.endswith("Success")] == ["a.jpg"]
    assert _assets(company)["/pub/a.jpg"].publish_state == "Published"

    # postJobOnlyIfFiles with nothing uploaded: no follow-on
    none = upload_request(
        company,
        [(site.url("/missing"), "pub/c.jpg")],
        "Nothing",
        postJobOnlyIfFiles=True,
        postImageServingPublishJob={"publishType": "Full", "emailSetting": "None"},
    )
    empty = stack.wait(company, submit(none))
    assert empty.output == {"followOn": None}
    assert [d.log_message for d in empty.details if d.log_type == "InitiatingJobName"] == [
        "follow-on job ImageServingPublishJob not submitted: no files were processed"
    ]


def test_submit_refuses_what_this_server_does_not_do(stack) -> None:
    company, _ = stack.company(0)
    url = "https://files.example/a.jpg"
    cases = [
        ({"autoSmartCropOptionsArray": {"items": [{"name": "sq", "width": 1, "height": 1,
                                                   "type": "x"}]}},
         errors.NotSupported, "uploadUrlsJob/autoSmartCropOptionsArray"),
        ({"createMask": True}, errors.NotSupported, "uploadUrlsJob/createMask"),
        ({"pdfOptions": {"process": "Rasterize"}}, errors.NotSupported, "uploadUrlsJob/pdfOptions"),
        ({"postImageServingPublishJob": {"publishType": "Full", "emailSetting": "None",
                                         "httpCompletionUrl": "https://hooks.example:0/x"}},
         errors.InvalidParameter, "uploadUrlsJob/postImageServingPublishJob/httpCompletionUrl"),
        ({"numUrls": 2}, errors.InvalidParameter, "uploadUrlsJob/numUrls"),
    ]  # fmt: skip
    for options, fault, field in cases:
        with pytest.raises(fault) as caught:
            submit(upload_request(company, [(url, "a.jpg")], "Refused", **options))
        assert caught.value.code == 30001 and caught.value.field == field, caught.value
        assert field in caught.value.reason
    # a follow-on of a kind this server does not run names its field
    from jobengine.kinds import KINDS

    for attribute, element in (
        ("postImageRenderingPublishJob", "imageRenderingPublishJob"),
        ("postVideoPublishJob", "videoPublishJob"),
    ):
        if element in KINDS:
            continue
        with pytest.raises(errors.NotSupported) as caught:
            submit(
                upload_request(
                    company, [(url, "a.jpg")], "F", **{attribute: {"emailSetting": "None"}}
                )
            )
        assert caught.value.field == f"uploadUrlsJob/{attribute}"
    # options that ask for nothing are accepted, and numUrls that agrees
    accepted = upload_request(
        company,
        [(url, "a.jpg")],
        "Accepted",
        numUrls=1,
        manualCropOptions={"left": 0, "right": 0, "top": 0, "bottom": 0},
        colorManagementOptions={"colorManagement": "Default"},
        pdfOptions={"process": "None"},
    )
    accepted["execTime"] = "2099-01-01T00:00:00Z"  # accepted, never run here
    assert submit(accepted) == f"{company}|Accepted|"
