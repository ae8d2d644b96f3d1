"""Job e-mails: the notice a run's recipient gets when the run ends, as its emailSetting asks.

``emailSetting`` (IPS): ``All`` and ``JobCompletion`` always mail; ``Error`` only when the run
had errors or a fatal error; ``ErrorAndWarning`` also for warnings; ``None`` never. ``All``,
``Error`` and ``ErrorAndWarning`` list the last few problem log lines, ``JobCompletion`` is the
notice alone. The recipient is the job's ``userHandle`` user, else the submitter; the language,
of the mail and of the log lines it quotes, is the job's ``locale`` (``ll`` or ``ll-CC``: ``de-CH``
falls back to ``de``, then to English; see :mod:`jobengine.i18n`).

Sent at most once. The sender claims the run first (``runs.notified_at`` NULL -> now, a
conditional UPDATE), so a retried finishing task, two workers or a sweep never send twice. Then:

* the server accepted the message (250 to DATA): the claim stays, ``True``;
* it certainly did not (no connection, a timeout or a refusal before DATA, or an error reply to
  DATA): the claim is released, a warning is logged, ``False``; a later :func:`notify_run` or
  :func:`notify_pending` tries again;
* unknown (the connection broke while the message was sent or its reply awaited): the claim
  stays, a warning is logged, ``False``: never a duplicate, at the price of a possible loss.

Nothing here raises: an SMTP or store outage never fails a job, and the run's state is never
touched. Links to output are ``JOBENGINE_PUBLIC_URL`` + ``/`` + the storage key (for an export,
``<company>/exports/<run>.zip``); without that setting the key is shown.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import Enum
from typing import Any
from urllib.parse import quote

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobengine.i18n import log_message, translator
from jobengine.runtime import get_runtime
from jobengine.settings import Settings
from jobengine.store.schema import Job, LogDetail, Run, User, utcnow
from jobengine.store.states import ENDED_RUNS, RunState

__all__ = ["SMTP_TIMEOUT", "may_notify", "notify_pending", "notify_run", "translator"]

logger = logging.getLogger(__name__)

SMTP_TIMEOUT = 5.0  # seconds, for the connection and every SMTP reply
LOG_LINES = 5  # problem log lines quoted in a mail


def _(message: str) -> str:
    """Mark a message for the catalogs; it is translated later, in the job's language."""
    return message


_STATES: dict[str, str] = {
    RunState.DONE: _("Done"),
    RunState.STOPPED: _("Stopped"),
    RunState.FAILED: _("Failed"),
}


class _Sent(Enum):
    YES = "sent"
    NO = "not sent"  # certainly not accepted: the claim is released
    UNKNOWN = "unknown"  # maybe accepted: the claim stays


@dataclass(frozen=True)
class _Notice:
    """What one run's e-mail says, read from the store."""

    run: Run
    job: Job
    user: User
    setting: str
    lines: list[str]


def _email_setting(job: Job) -> str:
    return _setting_of(job.kind, job.payload)


def _setting_of(kind: str, payload: Mapping[str, Any]) -> str:
    element = payload.get(kind)
    value = element.get("emailSetting") if isinstance(element, dict) else None
    return value if isinstance(value, str) else "None"


def may_notify(kind: str, payload: Mapping[str, Any]) -> bool:
    """Whether a job's emailSetting can ask for a notice at all (from its kind and stored
    request, no store read): False for ``None`` (or none given), whose runs never get one, so
    :func:`notify_run` need not be called for them."""
    return _setting_of(kind, payload) in _MAILING


_MAILING = frozenset({"All", "JobCompletion", "Error", "ErrorAndWarning"})  # see _wanted


def _wanted(setting: str, run: Run) -> bool:
    errors = run.error_count > 0 or run.fatal_error
    if setting in ("All", "JobCompletion"):
        return True
    if setting == "Error":
        return errors
    if setting == "ErrorAndWarning":
        return errors or run.warning_count > 0
    return False


def _problem_lines(session: Session, run_id: int, setting: str, locale: str | None) -> list[str]:
    if setting == "JobCompletion":
        return []
    kinds: list[ColumnElement[bool]] = [
        LogDetail.log_type.like("%Error%"),
        LogDetail.log_type.like("%Failure%"),
    ]
    if setting != "Error":
        kinds += [LogDetail.log_type.like("%Warning%"), LogDetail.log_type == "FileCancel"]
    rows = session.scalars(
        select(LogDetail)
        .where(LogDetail.run_id == run_id, or_(*kinds))
        .order_by(LogDetail.id.desc())
        .limit(LOG_LINES)
    ).all()
    texts = [
        (row.log_type, log_message(row.message, row.message_id, row.message_args, locale))
        for row in reversed(rows)
    ]
    return [f"[{log_type}] {text[:300]}" for log_type, text in texts]


def _load(session: Session, run_id: int) -> _Notice | None:
    run = session.get(Run, run_id)
    job = session.get(Job, run.job_id) if run is not None else None
    if run is None or job is None or run.state not in ENDED_RUNS or run.notified_at:
        return None
    setting = _email_setting(job)
    if not _wanted(setting, run):
        return None
    user_id = job.run_as_user_id or job.submit_user_id
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.email:
        logger.info("run %s (%s): no recipient for emailSetting %s", run_id, run.run_name, setting)
        return None
    return _Notice(run, job, user, setting, _problem_lines(session, run_id, setting, job.locale))


def _subject(notice: _Notice, tr: Callable[[str], str]) -> str:
    run = notice.run
    if run.state == RunState.FAILED:
        text = _("Job {job} failed")
    elif run.state == RunState.STOPPED:
        text = _("Job {job} stopped")
    elif run.error_count or run.fatal_error:
        text = _("Job {job} completed with errors")
    elif run.warning_count:
        text = _("Job {job} completed with warnings")
    else:
        text = _("Job {job} completed")
    return tr(text).format(job=notice.job.name)


def _when(value: datetime | None, settings: Settings) -> str:
    return value.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def _link(output: dict[str, Any], settings: Settings) -> str | None:
    key = output.get("zip")
    if not isinstance(key, str) or not key:
        return None
    return f"{settings.public_url}/{quote(key)}" if settings.public_url else key


def _body(notice: _Notice, tr: Callable[[str], str], settings: Settings) -> str:
    run, name = notice.run, notice.user.first_name
    lines = [tr(_("Hello {name},")).format(name=name) if name else tr(_("Hello,")), ""]
    lines += [
        tr(_("Your job has ended.")),
        "",
        tr(_("Job: {job}")).format(job=notice.job.name),
        tr(_("Run: {run}")).format(run=run.run_name),
        tr(_("State: {state}")).format(state=tr(_STATES.get(run.state, run.state))),
        tr(_("Files: {success} succeeded, {errors} failed, {warnings} warnings of {total}")).format(
            success=run.success_count,
            errors=run.error_count,
            warnings=run.warning_count,
            total=run.total_items,
        ),
        tr(_("Started: {time}")).format(time=_when(run.started_at, settings)),
        tr(_("Ended: {time}")).format(time=_when(run.ended_at, settings)),
    ]
    link = _link(run.output or {}, settings)
    if link:
        lines.append(tr(_("Output: {link}")).format(link=link))
    if run.fatal_error:
        lines += ["", tr(_("The job stopped on a fatal error."))]
    if notice.lines:
        lines += ["", tr(_("Last log entries:")), *notice.lines]
    footer = _("You receive this e-mail because the job's emailSetting is {setting}.")
    lines += ["", "-- ", tr(footer).format(setting=notice.setting)]
    return "\n".join(lines) + "\n"


def _message(notice: _Notice, settings: Settings) -> EmailMessage:
    tr = translator(notice.job.locale)
    msg = EmailMessage()
    msg["Subject"] = _subject(notice, tr)
    msg["From"] = settings.mail_from
    msg["To"] = Address(display_name=notice.user.first_name, addr_spec=notice.user.email)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(f"jobengine.run{notice.run.id}")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_body(notice, tr, settings), charset="utf-8", cte="quoted-printable")
    if notice.job.locale:  # after set_content, which drops every Content-* header
        msg["Content-Language"] = notice.job.locale
    return msg


def _deliver(msg: EmailMessage, recipient: str, settings: Settings) -> _Sent:
    """Send over SMTP, telling a certain failure from one after the message may have arrived."""
    try:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT)
    except OSError as exc:  # refused, unreachable, timed out, bad greeting
        logger.warning("SMTP %s:%s unavailable: %s", settings.smtp_host, settings.smtp_port, exc)
        return _Sent.NO
    try:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.ehlo_or_helo_if_needed()
        code, reply = smtp.mail(settings.mail_from)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, settings.mail_from)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("SMTP refused the mail to %s before sending it: %s", recipient, exc)
        _close(smtp)
        return _Sent.NO
    try:
        code, reply = smtp.data(msg.as_bytes(policy=policy.SMTP))  # returns the final reply
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354): nothing was sent
        logger.warning("SMTP refused DATA for the mail to %s: %s", recipient, exc)
        return _Sent.NO
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("SMTP broke off while sending the mail to %s: %s", recipient, exc)
        return _Sent.UNKNOWN
    finally:
        _close(smtp)
    if code != 250:  # an error reply: the server did not take it
        logger.warning("SMTP rejected the mail to %s: %s %r", recipient, code, reply)
        return _Sent.NO
    return _Sent.YES


def _close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()
    smtp.close()


def _notify(run_id: int, settings: Settings) -> _Sent | None:
    """Send a run's notice once; None when there is nothing to send (or someone else sends)."""
    store = get_runtime().store
    with store.read() as session:
        notice = _load(session, run_id)
    if notice is None:
        return None
    msg = _message(notice, settings)
    claimed_at = utcnow()
    with store.write() as session:
        claim = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.notified_at.is_(None))
            .values(notified_at=claimed_at)
        )
        if getattr(claim, "rowcount", 0) != 1:
            return None  # another sender holds it, or it was sent already
    outcome = _deliver(msg, notice.user.email, settings)
    if outcome is _Sent.NO:
        with store.write() as session:
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.notified_at == claimed_at)
                .values(notified_at=None)
            )
    logger.info("run %s: notice to %s %s", run_id, notice.user.email, outcome.value)
    return outcome


def notify_run(run_id: int, *, settings: Settings | None = None) -> bool:
    """E-mail a finished run's notice if its emailSetting asks; True when the server took it.

    Call it after the run ended (Done, Stopped or Failed), as often as you like: it sends at most
    once per run and never raises. ``settings`` overrides the runtime's (tests use it).
    """
    try:
        return _notify(run_id, settings or get_runtime().settings) is _Sent.YES
    except Exception:  # a notice must never fail the job that ended
        logger.exception("notice of run %s failed", run_id)
        return False


def notify_pending(within: float = 3600.0, *, settings: Settings | None = None) -> int:
    """Send the notices still due for runs that ended in the last ``within`` seconds.

    A sweep for a periodic task: it retries notices an SMTP outage held back (and sends those of
    runs whose finishing task died before :func:`notify_run`). It stops at the first failure, so
    a dead server costs one timeout per sweep. Returns how many mails were sent.
    """
    since, sent = utcnow() - timedelta(seconds=within), 0
    try:
        with get_runtime().store.read() as session:
            ids = session.scalars(
                select(Run.id)
                .where(Run.state.in_(ENDED_RUNS), Run.notified_at.is_(None))
                .where(Run.ended_at >= since)
                .order_by(Run.id)
            ).all()
        for run_id in ids:
            outcome = _notify(run_id, settings or get_runtime().settings)
            if outcome in (_Sent.NO, _Sent.UNKNOWN):
                break
            sent += outcome is _Sent.YES
    except Exception:
        logger.exception("sweep of pending notices failed")
    return sent
