"""The hostile corpus (tests/hostile/corpus.py) through every entry point: Python submit(),
SOAP, JSON, the CLI, and the workers through real jobs. Each input gets its expected outcome,
and nothing else happens: no request reaches a listener on 127.0.0.2, no file appears outside
the company's folders, no worker dies, and every input is answered within a generous bound."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from jobengine import submit
from jobengine.errors import IpsFault
from jobengine.kinds.upload_directory import upload_root
from jobengine.runtime import get_runtime
from jobengine.storage import LocalStorage
from tests.hostile.corpus import (
    Listener,
    coder_payloads,
    field_cases,
    plain_document,
    soap_document,
    ssrf_urls,
    xml_cases,
)
from tests.support.helpers import (
    PASSWORD,
    directory_request,
    export_request,
    make_company,
    rip_request,
    upload_request,
)
from tests.support.processing_samples import add_files, pdf_pages
from tests.support.stack import Stack
from tests.support.web import SERVICE, WebServer, auth_header, parse_fault

BOUND = 30.0  # seconds any one hostile input may take to be answered (generous on purpose)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    started = Listener("127.0.0.2").start()
    yield started
    started.stop()


def _timed(call: object) -> float:
    started = time.monotonic()
    call()  # type: ignore[operator]
    return time.monotonic() - started


def _worker_alive(stack: Stack) -> None:
    assert all(w.proc.poll() is None for w in stack.workers), "a worker died"


def test_xml_corpus_through_python_soap_and_the_cli(
    stack: Stack, web: WebServer, listener: Listener, tmp_path: Path
) -> None:
    company, _ = make_company(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    header = auth_header(f"{company}@example.com")
    plain = xml_cases(listener.port, plain_document, company)
    soap = xml_cases(listener.port, soap_document(header), company)
    for name, (document, code) in plain.items():

        def python(document: bytes = document, code: int = code, name: str = name) -> None:
            with pytest.raises(IpsFault) as caught:
                submit(document)
            assert caught.value.code == code, (name, caught.value.reason)

        assert _timed(python) < BOUND, name
        envelope, soap_code = soap[name]

        def over_soap(envelope: bytes = envelope, code: int = soap_code, name: str = name) -> None:
            answer = httpx.post(web.url + SERVICE, content=envelope, timeout=BOUND,
                                headers={"Content-Type": "text/xml; charset=utf-8"})  # fmt: skip
            if not envelope:  # nothing to wrap: the empty body itself
                assert answer.status_code == 500 and b"<code>30003</code>" in answer.content
                return
            fault = parse_fault(answer)
            assert fault.code == code and fault.faultcode == "soapenv:Client", (name, fault)

        assert _timed(over_soap) < BOUND, name
    # the CLI reads the same documents from files
    for name in ("xxe-http", "billion-laughs", "utf7", "huge", "deep-nesting"):
        path = tmp_path / f"{name}.xml"
        path.write_bytes(plain[name][0])
        done = subprocess.run(
            [sys.executable, "-m", "jobengine.cli", "submit", str(path)],
            env={**os.environ, **stack.env, "COLUMNS": "400"},
            capture_output=True, text=True, timeout=BOUND * 2, check=False,
        )  # fmt: skip
        assert done.returncode == 2 and "30003" in done.stdout, (name, done.stdout, done.stderr)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 1024, f"the test process grew by {grown_mib:.0f} MiB"
    assert listener.hits == 0  # no entity or DTD was ever fetched
    _worker_alive(stack)


def test_field_corpus_through_python_and_json(stack: Stack, web: WebServer) -> None:
    company, assets = make_company(1)
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    before = {p for p in storage.root.rglob("*")}
    for name, (request, code) in field_cases(company, assets[0]).items():
        with pytest.raises(IpsFault) as caught:
            submit(request)
        assert caught.value.code == code, (name, caught.value.reason)
        answer = httpx.post(f"{web.url}/api/v1/submitJob", json=request, timeout=BOUND,
                            auth=(f"{company}@example.com", PASSWORD))  # fmt: skip
        assert answer.status_code in (400, 500), (name, answer.text)
        assert answer.json()["code"] == code, (name, answer.text)
    assert {p for p in storage.root.rglob("*")} == before  # a refused job wrote nothing
    _worker_alive(stack)


def test_ssrf_spellings_never_reach_a_listener(stack: Stack, listener: Listener) -> None:
    company, _ = make_company(0)
    v6 = Listener("::1").start()
    try:
        urls = [*ssrf_urls(listener.port), f"http://[::1]:{v6.port}/a.jpg",
                f"http://[0:0:0:0:0:0:0:1]:{v6.port}/a.jpg"]  # fmt: skip
        for n, url in enumerate(urls):
            try:
                handle = submit(upload_request(company, [(url, f"/ssrf/f{n}.jpg")], f"SSRF {n}"))
            except IpsFault as refused:  # refused at submit: fine, and nothing was fetched
                assert refused.code == 30001, (url, refused.reason)
                continue
            log = stack.wait(company, handle)
            assert (log.file_success_count, log.file_error_count) == (0, 1), url
            [row] = [d.log_message for d in log.details if d.log_type == "UploadError"]
            assert "refused to connect" in row or "cannot resolve" in row, row
        assert listener.hits == 0 and v6.hits == 0
    finally:
        v6.stop()
    _worker_alive(stack)


def test_coder_payloads_and_bombs_through_upload_and_export(
    stack: Stack, listener: Listener, tmp_path: Path
) -> None:
    company, _ = make_company(0)
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    sentinel = tmp_path / "pwned"
    folder = storage.root / upload_root(company) / "hostile"
    folder.mkdir(parents=True)
    payloads = coder_payloads(str(sentinel), listener.port)
    for name, data in payloads.items():
        (folder / name).write_bytes(data)
    (folder / "loop").symlink_to("loop")
    (folder / "chain").symlink_to("loop2")
    (folder / "loop2").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo.jpg")
    uploaded = stack.wait(company, submit(directory_request(company, "hostile", "Payloads",
                                                            destFolder="/h")))  # fmt: skip
    assert uploaded.state == "Done"
    assert uploaded.file_success_count == len(payloads)  # stored as given, not decoded
    names = {
        d.asset_name: d.asset_handle for d in uploaded.details if d.log_type == "UploadSuccess"
    }
    assert "passwd" not in " ".join(names) and "loop" not in names and "fifo.jpg" not in names
    handles = [h for h in names.values() if h]
    request = export_request(company, handles, "Convert payloads")
    request["exportJob"].update(fmt="convert", is_modifier="wid=64&fmt=png")
    exported = stack.wait(company, submit(request), timeout=120)
    assert exported.state == "Done"
    converted = [d for d in exported.details if d.log_type == "ReturnSuccess"
                 and d.log_message.startswith("converted")]  # fmt: skip
    assert converted == []  # nothing of the corpus is an image anyone should decode
    assert not sentinel.exists() and listener.hits == 0
    _worker_alive(stack)


def test_pdfs_of_thousands_of_pages_fail_at_once(stack: Stack) -> None:
    company, _ = make_company(0)
    pdfs = add_files(company, {
        "thousands.pdf": partial(pdf_pages, pages=2000, image=False),
        "huge-pages.pdf": partial(pdf_pages, pages=499, size=(14400, 14400), image=False),
    })  # fmt: skip
    started = time.monotonic()
    log = stack.wait(company, submit(rip_request(company, list(pdfs.values()), resolution=600)))
    assert time.monotonic() - started < 60
    errors = sorted(d.log_message for d in log.details if d.log_type == "PdfRipError")
    assert len(errors) == 2
    assert "2000 pages; at most 500" in errors[1] and "megapixels" in errors[0]
    _worker_alive(stack)
