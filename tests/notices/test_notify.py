"""Job e-mails through a real SMTP server (aiosmtpd), on both store backends."""

from __future__ import annotations

import ast
import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from jobengine import submit
from jobengine.assets.catalog import company_by_handle, create_user
from jobengine.i18n import CATALOG_MESSAGES
from jobengine.locales import LOCALE_DIR, catalogs, compile_po, parse_po
from jobengine.notices import email as notify
from jobengine.notices.email import notify_pending, notify_run, translator
from jobengine.runtime import get_runtime
from jobengine.settings import Settings
from jobengine.store.jobs import create_run, find_job
from jobengine.store.runs import write_log
from jobengine.store.schema import Run, utcnow
from tests.support.helpers import PASSWORD, export_request, make_company
from tests.support.procs import free_port

FAR = "2099-01-01T00:00:00Z"  # execTime far ahead: submit() stores the job, no run, no message


@dataclass
class Inbox:
    """An aiosmtpd handler keeping every message it accepted."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    reply: str = "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return self.reply

    def only(self) -> EmailMessage:
        assert len(self.messages) == 1, [m[2]["Subject"] for m in self.messages]
        return self.messages[0][2]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Settings]]:
    """A real SMTP server on a free port, and settings that point at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = get_runtime().settings.with_changes(
        smtp_port=controller.port, public_url="https://files.example.com", timezone="UTC"
    )
    yield inbox, settings
    controller.stop()


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def finished_run(
    setting: str = "All",
    *,
    state: str = "Done",
    counts: tuple[int, int, int] = (3, 0, 0),
    fatal: bool = False,
    locale: str | None = None,
    run_as: bool = False,
    submitter: bool = True,
    output: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """A job submitted through submit() and a run of it ended in the store; (run id, company)."""
    company, assets = make_company(1)
    extra: dict[str, Any] = {"execTime": FAR}
    if locale:
        extra["locale"] = locale
    if run_as:
        with get_runtime().store.write() as session:
            other = create_user(
                session,
                f"owner-{company}@example.com",
                PASSWORD,
                "IpsUser",
                [company_by_handle(session, company)],
                first_name="Ōtani",
            )
            extra["userHandle"] = other.handle
    request = export_request(company, assets, "Nightly Export", **extra)
    request["exportJob"]["emailSetting"] = setting
    handle = submit(request, user=f"{company}@example.com" if submitter else None)
    success, errors, warnings = counts
    with get_runtime().store.write() as session:
        job, _ = find_job(session, company_by_handle(session, company), handle)
        created = create_run(session, job, "test", local_now=utcnow())
        assert created is not None
        run = session.get(Run, created.id)  # create_run inserts with Core: load the row
        assert run is not None
        run.state, run.fatal_error = state, fatal
        run.started_at, run.ended_at = utcnow() - timedelta(minutes=2), utcnow()
        run.success_count, run.error_count, run.warning_count = success, errors, warnings
        run.total_items = success + errors + warnings
        run.output = output or {}
        for n in range(errors):
            name = f"img{n}.jpg"
            write_log(session, run, "GetFailure", "cannot read {name}: {error}", name=name, error=5)
        for n in range(warnings):
            skipped = "skipped {name}: {type} assets cannot be exported"
            write_log(session, run, "FileCancel", skipped, name=f"set{n}", type="ImageSet")
        write_log(
            session,
            run,
            "EndExport",
            "job done: {success} succeeded, {errors} failed, "
            "{warnings} warnings of {total} file(s)",
            success=success,
            errors=errors,
            warnings=warnings,
            total=success + errors + warnings,
        )
        return run.id, company


def _run(run_id: int) -> Run:
    with get_runtime().store.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


# --- emailSetting --------------------------------------------------------------------------

CASES = [
    # setting, counts (success, errors, warnings), fatal, mails?
    ("All", (3, 0, 0), False, True),
    ("JobCompletion", (3, 0, 0), False, True),
    ("JobCompletion", (1, 2, 0), False, True),
    ("None", (1, 2, 0), True, False),
    ("Error", (3, 0, 0), False, False),
    ("Error", (2, 0, 1), False, False),
    ("Error", (2, 1, 0), False, True),
    ("Error", (0, 0, 0), True, True),
    ("ErrorAndWarning", (3, 0, 0), False, False),
    ("ErrorAndWarning", (2, 0, 1), False, True),
    ("ErrorAndWarning", (2, 1, 0), False, True),
]


@pytest.mark.parametrize(("setting", "counts", "fatal", "mails"), CASES)
def test_email_setting_decides(store_only, smtp, setting, counts, fatal, mails) -> None:
    inbox, settings = smtp
    run_id, company = finished_run(setting, counts=counts, fatal=fatal)
    assert notify_run(run_id, settings=settings) is mails
    assert len(inbox.messages) == int(mails)
    assert (_run(run_id).notified_at is not None) is mails
    if mails:
        sender, rcpts, _ = inbox.messages[0]
        assert (sender, rcpts) == ("jobengine@localhost", [f"{company}@example.com"])


def test_body_has_counts_times_link_and_last_errors(store_only, smtp) -> None:
    inbox, settings = smtp
    zip_key = "tX/exports/Nightly Export_2026-01-01-00_00_00.zip"
    run_id, _ = finished_run("All", counts=(4, 7, 1), output={"zip": zip_key})
    assert notify_run(run_id, settings=settings)
    msg = inbox.only()
    run = _run(run_id)
    assert msg["Subject"] == "Job Nightly Export completed with errors"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = _body(msg)
    assert "Job: Nightly Export" in body and f"Run: {run.run_name}" in body
    assert "State: Done" in body
    assert "Files: 4 succeeded, 7 failed, 1 warnings of 12" in body
    assert f"Started: {run.started_at:%Y-%m-%d %H:%M:%S} UTC" in body  # type: ignore[str-format]
    assert f"Ended: {run.ended_at:%Y-%m-%d %H:%M:%S} UTC" in body  # type: ignore[str-format]
    link = "https://files.example.com/tX/exports/Nightly%20Export_2026-01-01-00_00_00.zip"
    assert f"Output: {link}" in body
    quoted = body.split("Last log entries:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(quoted) == notify.LOG_LINES  # the last five problem lines, oldest first
    assert quoted[:-1] == [f"[GetFailure] cannot read img{n}.jpg: 5" for n in (3, 4, 5, 6)]
    assert quoted[-1] == "[FileCancel] skipped set0: ImageSet assets cannot be exported"
    assert "EndExport" not in body
    assert "emailSetting is All" in body


def test_completion_notice_lists_no_log_lines_and_error_skips_warnings(store_only, smtp) -> None:
    inbox, settings = smtp
    done, _ = finished_run("JobCompletion", counts=(1, 1, 1))
    errors, _ = finished_run("Error", counts=(1, 1, 1))
    assert notify_run(done, settings=settings) and notify_run(errors, settings=settings)
    completion, error = (_body(m[2]) for m in inbox.messages)
    assert "Last log entries" not in completion
    assert "[GetFailure]" in error and "[FileCancel]" not in error


@pytest.mark.parametrize(
    ("state", "fatal", "subject"),
    [
        ("Failed", True, "Job Nightly Export failed"),
        ("Stopped", False, "Job Nightly Export stopped"),
    ],
)
def test_failed_and_stopped_runs(store_only, smtp, state, fatal, subject) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All", state=state, counts=(0, 0, 0), fatal=fatal)
    assert notify_run(run_id, settings=settings)
    msg = inbox.only()
    assert msg["Subject"] == subject
    assert ("The job stopped on a fatal error." in _body(msg)) is fatal


def test_unfinished_runs_are_not_notified(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All", state="Running")
    assert notify_run(run_id, settings=settings) is False
    assert notify_run(10**9, settings=settings) is False  # no such run
    assert inbox.messages == []


# --- recipient -----------------------------------------------------------------------------


def test_recipient_is_the_user_handle_user_before_the_submitter(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, company = finished_run("All", run_as=True)
    assert notify_run(run_id, settings=settings)
    _, rcpts, msg = inbox.messages[0]
    assert rcpts == [f"owner-{company}@example.com"]
    assert msg["To"].addresses[0].display_name == "Ōtani"
    assert _body(msg).startswith("Hello Ōtani,\n")


def test_no_recipient_no_mail(store_only, smtp, caplog) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All", submitter=False)
    with caplog.at_level("INFO", logger="jobengine.notices.email"):
        assert notify_run(run_id, settings=settings) is False
    assert inbox.messages == [] and _run(run_id).notified_at is None
    assert "no recipient" in caplog.text


# --- locale --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "subject", "line"),
    [
        (None, "Job Nightly Export completed", "State: Done"),
        ("de", "Job Nightly Export abgeschlossen", "Status: Abgeschlossen"),
        ("de-CH", "Job Nightly Export abgeschlossen", "Status: Abgeschlossen"),
        ("fr-FR", "Tâche Nightly Export terminée", "État : Terminé"),
        ("ja", "ジョブ Nightly Export が完了しました", "状態: 完了"),
        ("xx", "Job Nightly Export completed", "State: Done"),
    ],
)
def test_subject_and_body_follow_the_job_locale(store_only, smtp, locale, subject, line) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All", locale=locale)
    assert notify_run(run_id, settings=settings)
    msg = inbox.only()
    assert msg["Subject"] == subject
    assert line in _body(msg)
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Language"] == locale


def test_japanese_subject_is_encoded_utf8_on_the_wire(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("Error", counts=(1, 1, 0), locale="ja-JP")
    assert notify_run(run_id, settings=settings)
    raw = inbox.only()
    wire = raw.as_bytes(policy=policy.SMTP)
    assert wire.isascii()  # RFC 2047 words and quoted-printable: 7-bit safe
    assert b"=?utf-8?" in wire.split(b"\r\n\r\n", 1)[0].lower()
    assert raw["Subject"] == "ジョブ Nightly Export がエラーありで完了しました"
    assert "ファイル: 全 2 件中 成功 1 件、失敗 1 件、警告 0 件" in _body(raw)


def test_quoted_log_lines_follow_the_job_locale(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("ErrorAndWarning", counts=(1, 1, 1), locale="de-AT")
    assert notify_run(run_id, settings=settings)
    body = _body(inbox.only())
    assert "Letzte Protokolleinträge:" in body
    assert "[GetFailure] img0.jpg kann nicht gelesen werden: 5" in body
    skipped = (
        "[FileCancel] set0 übersprungen: Assets vom Typ ImageSet können nicht exportiert werden"
    )
    assert skipped in body


def test_translator_fallbacks() -> None:
    assert translator("de-CH")("Failed") == "Fehlgeschlagen"
    assert translator("de_AT")("Failed") == "Fehlgeschlagen"
    assert translator("fr")("Failed") == "Échoué"
    assert translator("xx-YY")("Failed") == "Failed"
    assert translator("../../etc")("Failed") == "Failed"
    assert translator("de\n")("Failed") == "Failed"
    assert translator(None)("Failed") == "Failed"


# --- once only -----------------------------------------------------------------------------


def test_sent_once_when_called_twice(store_only, smtp) -> None:
    inbox, settings = smtp
    _settle_other_tests_notices()  # the sweep below is store-wide
    run_id, _ = finished_run("All")
    assert notify_run(run_id, settings=settings) is True
    assert notify_run(run_id, settings=settings) is False
    assert notify_pending(settings=settings) == 0
    assert len(inbox.messages) == 1


def _settle_other_tests_notices() -> None:
    from sqlalchemy import update

    from jobengine.store.schema import Run, utcnow

    with get_runtime().store.write() as session:
        session.execute(update(Run).where(Run.notified_at.is_(None)).values(notified_at=utcnow()))


def test_sent_once_from_concurrent_threads(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All")
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def race() -> None:
        barrier.wait()
        results.append(notify_run(run_id, settings=settings))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, False, False, True]
    assert len(inbox.messages) == 1


# --- SMTP outages ----------------------------------------------------------------------------


def test_smtp_down_returns_false_and_a_later_sweep_sends(store_only, smtp, caplog) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All")
    before = _run(run_id)
    down = settings.with_changes(smtp_port=free_port())  # nothing listens there
    with caplog.at_level("WARNING", logger="jobengine.notices.email"):
        assert notify_run(run_id, settings=down) is False
    assert "unavailable" in caplog.text
    after = _run(run_id)
    assert (after.state, after.ended_at, after.notified_at) == ("Done", before.ended_at, None)
    assert notify_pending(settings=down) == 0
    assert notify_pending(settings=settings) == 1  # the server is back: the sweep sends it
    assert inbox.only()["Subject"] == "Job Nightly Export completed"
    assert notify_pending(settings=settings) == 0


def test_smtp_that_never_answers_times_out(store_only, smtp, monkeypatch) -> None:
    _, settings = smtp
    run_id, _ = finished_run("All")
    monkeypatch.setattr(notify, "SMTP_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        hung = settings.with_changes(smtp_port=silent.getsockname()[1])
        assert notify_run(run_id, settings=hung) is False
    assert _run(run_id).notified_at is None


def test_rejected_message_releases_the_claim(store_only, smtp) -> None:
    inbox, settings = smtp
    run_id, _ = finished_run("All")
    inbox.reply = "554 no thanks"
    assert notify_run(run_id, settings=settings) is False
    assert _run(run_id).notified_at is None
    inbox.reply = "250 OK"
    assert notify_run(run_id, settings=settings) is True
    assert len(inbox.messages) == 1


# --- end to end ------------------------------------------------------------------------------


def test_real_run_then_notice(stack, smtp) -> None:
    inbox, settings = smtp
    company, assets = stack.company(2, sets=1)
    request = export_request(company, assets, "Weekly Export", locale="de-CH")
    request["exportJob"]["emailSetting"] = "ErrorAndWarning"
    handle = submit(request, user=f"{company}@example.com")
    log = stack.wait(company, handle)
    assert log.state == "Done" and log.file_warning_count == 1
    with get_runtime().store.read() as session:
        run_id = session.scalar(select(Run.id).where(Run.run_name == log.job_name))
    assert run_id is not None
    assert notify_run(run_id, settings=settings)
    assert not notify_run(run_id, settings=settings)
    msg = inbox.only()
    assert msg["Subject"] == "Job Weekly Export mit Warnungen abgeschlossen"
    body = _body(msg)
    assert "Dateien: 2 erfolgreich, 0 fehlgeschlagen, 1 Warnungen von 3" in body
    assert f"https://files.example.com/{company}/exports/" in body
    assert "[FileCancel]" in body


# --- catalogs --------------------------------------------------------------------------------


def _messages_in_code() -> set[str]:
    """The e-mail texts marked with ``_()`` in jobengine/notices/email.py, and the job log
    messages."""
    tree = ast.parse(Path(notify.__file__).read_text(encoding="utf-8"))
    return set(CATALOG_MESSAGES) | {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_catalogs_translate_every_message_and_mo_files_are_in_sync() -> None:
    wanted = _messages_in_code()
    template = parse_po((LOCALE_DIR / "jobengine.pot").read_text(encoding="utf-8"))
    assert set(template) - {""} == wanted
    languages = {po.parent.parent.name for po in catalogs()}
    assert {"en", "de", "fr", "ja"} <= languages
    for po in catalogs():
        text = po.read_text(encoding="utf-8")
        messages = parse_po(text)
        assert set(messages) - {""} == wanted, po
        for msgid, msgstr in messages.items():
            if msgid:
                placeholders = sorted(p.split("}")[0] for p in msgid.split("{")[1:])
                assert sorted(p.split("}")[0] for p in msgstr.split("{")[1:]) == placeholders
        assert po.with_suffix(".mo").read_bytes() == compile_po(text), (
            f"{po.with_suffix('.mo')} is stale: run python -m jobengine.locales"
        )
