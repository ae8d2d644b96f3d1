"""Completion callbacks (httpCompletionUrl, postHttpUrl) against a real HTTP server on 127.0.0.1.

The server (stdlib ``http.server`` in a thread) records every POST to its own random path and
answers with the statuses a test queues (200 when none). The worker may call 127.0.0.1 because
the tests' environment sets ``JOBENGINE_CALLBACK_ALLOWED_HOSTS=127.0.0.1`` (tests/conftest.py).
End-to-end tests go through submit() and the real worker on both stores; the claim and retry
logic is driven directly (:func:`send_callback`, :func:`callbacks_pending`) on both stores.
"""

from __future__ import annotations

import base64
import io
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import update

from jobengine import errors, submit
from jobengine.assets.catalog import company_by_handle
from jobengine.model import parse_submit_job
from jobengine.net.fetch import FetchLimits, PostError, post
from jobengine.net.policy import AddressPolicy
from jobengine.notices import callbacks
from jobengine.notices.callbacks import (
    MAX_ATTEMPTS,
    callback_body,
    callbacks_pending,
    check_completion_url,
    completion_url,
    retry_delay,
    send_callback,
)
from jobengine.runtime import get_runtime
from jobengine.settings import Settings
from jobengine.store.jobs import create_run, find_job
from jobengine.store.schema import Company, Job, Run, utcnow
from tests.support.helpers import make_company, publish_request
from tests.support.lookups import run_of, settled, stored_run
from tests.support.net import Hook, certificate, fake_dns
from tests.support.procs import free_port
from tests.support.stack import Stack

FAR = "2099-01-01T00:00:00Z"  # execTime far ahead: submit() stores the job, no run, no message
LIMITS = FetchLimits(max_bytes=4096, connect_timeout=2, read_timeout=2, deadline=3)
LOCAL = AddressPolicy.parse(["127.0.0.1"])


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.stop()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def _settings(**changes: Any) -> Settings:
    return get_runtime().settings.with_changes(**changes)


def finished_run(
    url: str | None,
    *,
    state: str | None = "Done",
    ended_ago: timedelta = timedelta(seconds=1),
    field: str = "httpCompletionUrl",
) -> int:
    """A job submitted through submit() and a run of it ended in the store (no worker)."""
    company, _ = make_company(0)
    if field == "httpCompletionUrl":
        request = publish_request(company, "Hooked", execTime=FAR)
        element = "imageServingPublishJob"
    else:
        request = {
            "companyHandle": company,
            "jobName": "Hooked upload",
            "execTime": FAR,
            "uploadUrlsJob": {
                "urlArray": {"items": [{"sourceUrl": "https://x.example/a.jpg", "destPath": "a"}]},
                "overwrite": False,
                "readyForPublish": False,
                "createMask": False,
                "emailSetting": "None",
            },
        }
        element = "uploadUrlsJob"
    if url is not None:
        request[element][field] = url
    handle = submit(request)
    with get_runtime().store.write() as session:
        job, _ = find_job(session, company_by_handle(session, company), handle)
        created = create_run(session, job, "test", local_now=utcnow())
        assert created is not None
        run = session.get(Run, created.id)
        assert run is not None
        run.started_at = utcnow() - ended_ago - timedelta(seconds=3)
        run.ended_at = utcnow() - ended_ago
        if state is not None:
            run.state = state
        run.success_count, run.error_count, run.warning_count, run.total_items = 2, 1, 0, 3
        run.total_size = 1234
        return run.id


def soon() -> Any:
    """A sweep time at which every retry scheduled now is due (and the run still young)."""
    return utcnow() + timedelta(hours=2)


# --- the URL and the body (no store) ---------------------------------------------------------


def test_completion_url_reads_both_field_names() -> None:
    publish = parse_submit_job(
        {
            "companyHandle": "47",
            "jobName": "j",
            "imageServingPublishJob": {
                "publishType": "Full",
                "emailSetting": "None",
                "httpCompletionUrl": "https://hooks.example/p",
            },
        }
    ).job
    assert completion_url(publish) == ("httpCompletionUrl", "https://hooks.example/p")
    assert completion_url({"postHttpUrl": "https://hooks.example/u"}) == (
        "postHttpUrl",
        "https://hooks.example/u",
    )
    assert completion_url({"emailSetting": "None"}) is None
    assert completion_url({"postHttpUrl": ""}) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example:0/x",  # port 0
        "https://hooks.example:99999/x",  # no such port
        "https://hooks.exa mple/x",  # a space in the host
        "https://hooks.example/" + "a" * 2100,  # too long
    ],
)
def test_a_url_that_could_never_be_called_is_refused_at_submit(url: str) -> None:
    job = parse_submit_job(
        {
            "companyHandle": "47",
            "jobName": "j",
            "videoPublishJob": {"emailSetting": "None", "httpCompletionUrl": url},
        }
    ).job
    with pytest.raises(errors.InvalidParameter) as caught:
        check_completion_url("videoPublishJob", job)
    assert caught.value.field == "videoPublishJob/httpCompletionUrl"
    assert caught.value.code == 30001
    assert caught.value.reason.startswith("videoPublishJob/httpCompletionUrl ")


def test_acceptable_urls_pass_the_submit_check() -> None:
    for url in (
        "https://hooks.example/x?a=1&b=2",
        "http://user:secret@hooks.example:8080/x",  # credentials go as Basic
        "http://10.0.0.1/x",  # addresses are judged when sending (the allow list may name it)
        "https://[2001:db8::1]/x",
        "https://bücher.example/x",  # IDNA
    ):
        job = parse_submit_job(
            {
                "companyHandle": "47",
                "jobName": "j",
                "videoPublishJob": {"emailSetting": "None", "httpCompletionUrl": url},
            }
        ).job
        check_completion_url("videoPublishJob", job)


def test_retry_schedule_backs_off_then_hourly() -> None:
    delays = [retry_delay(n).total_seconds() for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[:6] == [30, 60, 120, 300, 600, 1800]
    assert set(delays[6:]) == {3600}
    assert delays == sorted(delays)


def test_callback_settings() -> None:
    env = {"JOBENGINE_HOME": "/tmp/x"}
    settings = Settings.from_env({**env, "JOBENGINE_CALLBACK_ALLOWED_HOSTS": "10.1.0.0/16, a:81"})
    assert settings.callback_allowed_hosts == ("10.1.0.0/16", "a:81")
    assert settings.callback_timeout == 10.0
    assert settings.upload_allowed_hosts == ()  # a list of its own
    with pytest.raises(errors.ConfigurationError, match="JOBENGINE_CALLBACK_ALLOWED_HOSTS"):
        Settings.from_env({**env, "JOBENGINE_CALLBACK_ALLOWED_HOSTS": "a:b:c:d/x"})
    with pytest.raises(errors.ConfigurationError, match="JOBENGINE_CALLBACK_TIMEOUT"):
        Settings.from_env({**env, "JOBENGINE_CALLBACK_TIMEOUT": "600"})


# --- the POST itself (jobengine.net.fetch.post) --------------------------------------------------


def test_post_sends_json_with_our_user_agent_and_basic_credentials(hook: Hook) -> None:
    answer = post(hook.url("user:p%40ss@", "?sig=secret"), b'{"a":1}', policy=LOCAL, limits=LIMITS)
    assert (answer.status, answer.reason) == (200, "OK")
    [seen] = hook.posts
    assert seen.path == hook.path + "?sig=secret"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("jobengine-callback/")
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert seen.headers["Content-Length"] == "7" and seen.json() == {"a": 1}


def test_post_follows_no_redirect_and_reads_little_of_an_answer(hook: Hook) -> None:
    hook.statuses = [302, 299]
    assert post(hook.url(), b"{}", policy=LOCAL, limits=LIMITS).status == 302
    assert [p.path for p in hook.posts] == [hook.path]  # the Location was not followed
    started = time.monotonic()
    assert post(hook.url(), b"{}", policy=LOCAL, limits=LIMITS).status == 200
    assert time.monotonic() - started < 2  # 64 MiB offered, 4 KiB read


def test_post_over_https_checks_the_certificate_with_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key, pem = certificate(tmp_path, "hooks.example")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value,misc]
    secure = Hook(tls=server_tls)
    try:
        fake_dns(monkeypatch, {"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        client_tls = ssl.create_default_context(cadata=pem.decode())
        url = f"https://hooks.example:{secure.port}{secure.path}"
        assert post(url, b"{}", policy=LOCAL, limits=LIMITS, tls=client_tls).status == 200
        assert names == ["hooks.example"] and len(secure.posts) == 1
        other = f"https://other.example:{secure.port}{secure.path}"
        with pytest.raises(PostError, match=r"TLS check of other\.example failed") as wrong:
            post(other, b"{}", policy=LOCAL, limits=LIMITS, tls=client_tls)
        assert not wrong.value.sent
        with pytest.raises(PostError, match=r"TLS check of hooks\.example failed"):
            post(url, b"{}", policy=LOCAL, limits=LIMITS)  # not trusted by the system CAs
        assert len(secure.posts) == 1
    finally:
        secure.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
        "http://10.0.0.1/hook",  # private
        "http://[::ffff:169.254.169.254]/hook",  # IPv4 inside IPv6
        "http://localhost:{port}/hook",  # a name resolving to loopback, not on the list
        "http://127.0.0.1:{port}/hook",  # loopback with an empty allow list
    ],
)
def test_a_refused_address_is_never_connected_to(
    hook: Hook, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    connected: list[Any] = []
    real = socket.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    with pytest.raises(PostError) as caught:
        post(url.format(port=hook.port), b"{}", policy=AddressPolicy(), limits=LIMITS)
    assert caught.value.refused and not caught.value.sent
    assert "refused to connect" in caught.value.reason
    assert connected == [] and hook.posts == []


def test_post_failures_say_whether_the_request_may_have_arrived(hook: Hook) -> None:
    with pytest.raises(PostError) as down:
        post(f"http://127.0.0.1:{free_port()}/x", b"{}", policy=LOCAL, limits=LIMITS)
    assert not down.value.sent and not down.value.refused
    hook.statuses = [0]  # reads the request, never answers
    quick = FetchLimits(max_bytes=4096, connect_timeout=1, read_timeout=0.5, deadline=1)
    started = time.monotonic()
    with pytest.raises(PostError) as hung:
        post(hook.url(), b"{}", policy=LOCAL, limits=quick)
    assert hung.value.sent and time.monotonic() - started < 3
    assert len(hook.posts) == 1


# --- claim, retry and sweep on both stores (no worker) ---------------------------------------


def test_body_has_the_documented_fields(store_only: Any, hook: Hook) -> None:
    run_id = finished_run(hook.url())
    with get_runtime().store.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        job = session.get(Job, run.job_id)
        company = session.get(Company, run.company_id)
        assert job is not None and company is not None
        body = callback_body(run, job, company)
    assert body == {
        "companyHandle": company.handle,
        "jobHandle": job.handle,
        "jobLogHandle": f"{company.handle}||{run.run_name}",
        "jobName": run.run_name,
        "originalName": "Hooked",
        "jobType": "ImageServingPublish",
        "state": "Done",
        "fatalError": False,
        "fileSuccessCount": 2,
        "fileErrorCount": 1,
        "fileWarningCount": 0,
        "fileDuplicateCount": 0,
        "fileUpdateCount": 0,
        "totalFileCount": 3,
        "totalSize": 1234,
        "startDate": body["startDate"],
        "endDate": body["endDate"],
    }
    assert body["startDate"].endswith("Z") and body["startDate"] < body["endDate"]
    assert send_callback(run_id) is True
    assert hook.posts[0].json() == body


def test_sent_once_when_called_twice_and_from_racing_threads(store_only: Any, hook: Hook) -> None:
    run_id = finished_run(hook.url())
    assert send_callback(run_id) is True
    assert send_callback(run_id) is False  # a finishing task run again
    assert callbacks_pending(now=soon()) >= 0 and len(hook.posts) == 1
    raced = finished_run(hook.url(), field="postHttpUrl")
    barrier, results = threading.Barrier(4), list[bool]()

    def race() -> None:
        barrier.wait()
        results.append(send_callback(raced))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, False, False, True]
    assert len(hook.posts) == 2
    assert hook.posts[1].json()["jobType"] == "UrlUpload"
    run = stored_run(raced)
    assert (run.callback_state, run.callback_attempts, run.callback_result) == (
        "delivered",
        1,
        "HTTP 200 OK",
    )


def test_an_error_answer_is_retried_with_backoff_until_delivered(
    store_only: Any, hook: Hook
) -> None:
    hook.statuses = [500, 302]
    run_id = finished_run(hook.url())
    assert send_callback(run_id) is False
    run = stored_run(run_id)
    assert (run.state, run.callback_state, run.callback_attempts) == ("Done", "retry", 1)
    assert run.callback_result == "HTTP 500 Internal Server Error"
    assert run.callback_next_at is not None and run.callback_sent_at is not None
    wait = run.callback_next_at - run.callback_sent_at
    assert timedelta(seconds=29) < wait < timedelta(seconds=32)
    assert send_callback(run_id) is False  # not due yet: nothing sent
    assert callbacks_pending() == 0 and len(hook.posts) == 1
    assert callbacks_pending(now=soon()) == 0  # due: a 302 is a failure too
    run = stored_run(run_id)
    assert (run.callback_state, run.callback_attempts) == ("retry", 2)
    assert run.callback_next_at - run.callback_sent_at > timedelta(seconds=59)  # type: ignore[operator]
    assert callbacks_pending(now=soon()) == 1  # 200 at last
    assert len(hook.posts) == 3 and stored_run(run_id).callback_state == "delivered"
    assert callbacks_pending(now=soon()) == 0 and len(hook.posts) == 3


def test_giving_up_after_the_last_attempt_or_a_day(store_only: Any, hook: Hook) -> None:
    hook.statuses = [503, 503]
    tired = finished_run(hook.url())
    with get_runtime().store.write() as session:
        session.execute(
            update(Run)
            .where(Run.id == tired)
            .values(
                callback_state="retry",
                callback_attempts=MAX_ATTEMPTS - 1,
                callback_next_at=utcnow() - timedelta(seconds=1),
            )
        )
    old = finished_run(hook.url(), ended_ago=timedelta(hours=23, minutes=59, seconds=50))
    send_callback(tired)
    send_callback(old)  # the next attempt would come more than 24 h after the run ended
    assert [
        (stored_run(r).callback_state, stored_run(r).callback_next_at) for r in (tired, old)
    ] == [
        ("failed", None),
        ("failed", None),
    ]
    assert stored_run(tired).callback_attempts == MAX_ATTEMPTS
    assert callbacks_pending(now=soon()) == 0 and len(hook.posts) == 2


def test_maybe_delivered_is_never_sent_again(store_only: Any, hook: Hook) -> None:
    hook.statuses = [0]  # takes the request, never answers
    run_id = finished_run(hook.url())
    assert send_callback(run_id, settings=_settings(callback_timeout=0.5)) is False
    run = stored_run(run_id)
    assert run.callback_state == "unknown" and run.callback_next_at is None
    assert callbacks_pending(now=soon()) == 0
    assert send_callback(run_id) is False and len(hook.posts) == 1


def test_a_refused_address_is_not_retried_and_credentials_are_not_logged(
    store_only: Any, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = finished_run("http://admin:hunter2@169.254.169.254/latest/meta-data/?t=tok")
    with caplog.at_level("WARNING", logger="jobengine.notices.callbacks"):
        assert send_callback(run_id) is False
    run = stored_run(run_id)
    assert run.callback_state == "refused" and "link-local" in (run.callback_result or "")
    assert "http://169.254.169.254/latest/meta-data/?..." in caplog.text
    assert "hunter2" not in caplog.text and "tok" not in caplog.text
    assert "hunter2" not in (run.callback_result or "")


def test_a_server_that_is_down_is_tried_again_by_a_sweep(store_only: Any) -> None:
    port = free_port()
    first = finished_run(f"http://127.0.0.1:{port}/hook/a")
    second = finished_run(f"http://127.0.0.1:{port}/hook/b", field="postHttpUrl")
    assert send_callback(first) is False
    run = stored_run(first)
    assert (run.state, run.callback_state, run.callback_attempts) == ("Done", "retry", 1)
    # one sweep tries one run of an unreachable host: the other waits, using up no attempt
    callbacks_pending(now=soon())
    assert stored_run(first).callback_attempts == 2
    assert (stored_run(second).callback_state, stored_run(second).callback_attempts) == (None, None)
    server = Hook(port=port)
    try:
        server.path = "/hook/a"
        assert callbacks_pending(now=soon()) >= 1
        assert stored_run(first).callback_state == "delivered"
        server.path = "/hook/b"
        callbacks_pending(now=soon())
        assert stored_run(second).callback_state == "delivered"
        assert [p.path for p in server.posts] == ["/hook/a", "/hook/b"]
    finally:
        server.stop()


def test_a_sweep_sends_what_a_dead_task_did_not_and_marks_runs_without_url(
    store_only: Any, hook: Hook
) -> None:
    orphan = finished_run(hook.url())  # its finishing task died before calling back
    plain = finished_run(None)
    running = finished_run(hook.url(), state="Running")
    assert callbacks_pending() >= 1
    assert stored_run(orphan).callback_state == "delivered" and len(hook.posts) == 1
    assert stored_run(plain).callback_state == "none"
    assert stored_run(running).callback_state is None  # not ended: not called
    assert send_callback(running) is False and len(hook.posts) == 1


@pytest.mark.parametrize("state", ["Stopped", "Failed"])
def test_stopped_and_failed_runs_call_back_too(store_only: Any, hook: Hook, state: str) -> None:
    run_id = finished_run(hook.url(), state=state)
    assert send_callback(run_id) is True
    assert hook.posts[0].json()["state"] == state


def test_beat_sweeps_in_a_thread_of_its_own(store_only: Any, hook: Hook) -> None:
    orphan = finished_run(hook.url())
    assert callbacks.sweep_in_background() is True
    callbacks._SWEEPER[-1].join(30)
    assert stored_run(orphan).callback_state == "delivered" and len(hook.posts) == 1


def test_nothing_raises_out_of_the_entry_points(
    store_only: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store down")

    monkeypatch.setattr(callbacks, "_load", broken)
    run_id = finished_run("http://127.0.0.1:9/x")
    assert send_callback(run_id) is False
    assert callbacks_pending() == 0


# --- end to end: submit() and the real worker ------------------------------------------------


def test_publish_job_calls_back_once_with_the_documented_body(stack: Stack, hook: Hook) -> None:
    company, _ = stack.company(1)
    request = publish_request(company, "Hooked publish", "Full")
    request["imageServingPublishJob"]["httpCompletionUrl"] = hook.url(query="?job=1")
    handle = submit(request)
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_success_count == 1
    [posted] = hook.wait_posts(1)
    body = posted.json()
    assert body == {
        "companyHandle": company,
        "jobHandle": handle,
        "jobLogHandle": f"{company}||{log.job_name}",
        "jobName": log.job_name,
        "originalName": "Hooked publish",
        "jobType": "ImageServingPublish",
        "state": "Done",
        "fatalError": False,
        "fileSuccessCount": 1,
        "fileErrorCount": 0,
        "fileWarningCount": 0,
        "fileDuplicateCount": 0,
        "fileUpdateCount": 0,
        "totalFileCount": 1,
        "totalSize": body["totalSize"],
        "startDate": body["startDate"],
        "endDate": body["endDate"],
    }
    assert body["totalSize"] > 0 and body["startDate"] <= body["endDate"]
    assert posted.path == hook.path + "?job=1"
    assert posted.headers["Content-Type"] == "application/json"
    assert posted.headers["User-Agent"].startswith("jobengine-callback/")
    run = settled(run_of(company, log).id)
    assert (run.callback_state, run.callback_attempts) == ("delivered", 1)
    # the finishing task run again, and a sweep: nothing more is sent
    assert send_callback(run.id) is False and send_callback(run.id) is False
    callbacks_pending(now=soon())
    time.sleep(0.3)
    assert len(hook.posts) == 1


def test_upload_job_calls_its_post_http_url(stack: Stack, hook: Hook) -> None:
    company, _ = stack.company(0)
    hook.extra["/a.jpg"] = _jpeg()
    request = {
        "companyHandle": company,
        "jobName": "Hooked upload",
        "uploadUrlsJob": {
            "urlArray": {
                "items": [
                    {"sourceUrl": f"http://127.0.0.1:{hook.port}/a.jpg", "destPath": "in/a.jpg"},
                    {"sourceUrl": f"http://127.0.0.1:{hook.port}/gone.jpg", "destPath": "b.jpg"},
                ]
            },
            "overwrite": False,
            "readyForPublish": False,
            "createMask": False,
            "emailSetting": "None",
            "postHttpUrl": hook.url(),
        },
    }
    handle = submit(request)
    log = stack.wait(company, handle)
    assert (log.file_success_count, log.file_error_count) == (1, 1)
    [posted] = hook.wait_posts(1)
    body = posted.json()
    assert (body["jobHandle"], body["jobType"], body["state"]) == (handle, "UrlUpload", "Done")
    assert (body["fileSuccessCount"], body["fileErrorCount"], body["totalFileCount"]) == (1, 1, 2)
    assert settled(run_of(company, log).id).callback_state == "delivered"


def test_an_error_answer_then_success_through_the_worker(stack: Stack, hook: Hook) -> None:
    hook.statuses = [500]
    company, _ = stack.company(0)
    request = publish_request(company, "Hooked 500", "Full")
    request["imageServingPublishJob"]["httpCompletionUrl"] = hook.url()
    log = stack.wait(company, submit(request))
    assert log.state == "Done"  # a callback outage never fails a job
    hook.wait_posts(1)
    run = settled(run_of(company, log).id)
    assert (run.callback_state, run.callback_result) == ("retry", "HTTP 500 Internal Server Error")
    assert callbacks_pending(now=soon()) >= 1  # what beat does every minute
    assert len(hook.posts) == 2 and hook.posts[0].body == hook.posts[1].body
    assert stored_run(run.id).callback_state == "delivered"


def test_a_down_server_leaves_the_job_done_and_is_called_later(stack: Stack) -> None:
    port = free_port()
    company, _ = stack.company(0)
    request = publish_request(company, "Hooked down", "Full")
    request["imageServingPublishJob"]["httpCompletionUrl"] = f"http://127.0.0.1:{port}/hook/d"
    log = stack.wait(company, submit(request))
    assert log.state == "Done" and log.fatal_error is False
    run = settled(run_of(company, log).id)
    assert (run.callback_state, run.callback_attempts) == ("retry", 1)
    assert "cannot connect" in (run.callback_result or "")
    server = Hook(port=port)
    server.path = "/hook/d"
    try:
        assert callbacks_pending(now=soon()) >= 1
        [posted] = server.posts
        assert posted.json()["jobName"] == log.job_name
    finally:
        server.stop()


def test_a_refused_address_through_the_worker(stack: Stack) -> None:
    company, _ = stack.company(0)
    request = publish_request(company, "Hooked metadata", "Full")
    request["imageServingPublishJob"]["httpCompletionUrl"] = "http://169.254.169.254/latest/"
    log = stack.wait(company, submit(request))
    assert log.state == "Done"
    run = settled(run_of(company, log).id)
    assert run.callback_state == "refused" and run.callback_attempts == 1
    assert "169.254.169.254" in (run.callback_result or "")
    assert "link-local" in (run.callback_result or "")
