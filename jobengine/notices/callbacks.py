"""Completion callbacks: one HTTP POST to a job's ``httpCompletionUrl`` (the publish kinds) or
``postHttpUrl`` (the upload, reprocess and rip kinds) when a run ends.

IPS says only that the URL is "notified on completion"; the request is ours:

* **When.** A run ends (Done, Stopped or Failed), at the moment its e-mail notice is sent: the
  engine's hooks (:mod:`jobengine.engine.hooks`) call :func:`send_callback` right after
  :func:`jobengine.notices.email.notify_run`.
  Every run of a recurring job calls back.
* **What.** ``POST`` with ``Content-Type: application/json`` and ``User-Agent:
  jobengine-callback/1``; the body (:func:`callback_body`) is one JSON object: ``companyHandle``,
  ``jobHandle`` (what submitJob returned), ``jobLogHandle`` (the run's job log, for
  getJobLogDetails), ``jobName`` (the run name), ``originalName``, ``jobType``, ``state``,
  ``fatalError``, ``fileSuccessCount``, ``fileErrorCount``, ``fileWarningCount``,
  ``fileDuplicateCount``, ``fileUpdateCount``, ``totalFileCount``, ``totalSize``, ``startDate``
  and ``endDate`` (ISO 8601, UTC). ``user:password@`` in the URL is sent as HTTP Basic.
* **Hostile URLs.** Sent by :func:`jobengine.net.fetch.post`: every address the host resolves to
must
  be public or on ``JOBENGINE_CALLBACK_ALLOWED_HOSTS`` (its own list: allowing a host to be
  fetched from by UploadUrlsJob does not let producers POST to it), the connection is pinned to
  the vetted address, https is checked, no redirect is followed, the answer's body is read (at
  most 4 KiB) and dropped, and the whole exchange has ``JOBENGINE_CALLBACK_TIMEOUT`` seconds.
  At submit :func:`jobengine.net.callback_url.check_completion_url` refuses a URL that could never
  be called (InvalidParameter naming the field, e.g. ``imageServingPublishJob/httpCompletionUrl``);
  an address the policy refuses is only known when sending (DNS answers change), and gives a
  server log line.
* **Delivered** means a 2xx answer. A certain failure (no connection, a non-2xx answer: a 3xx
  too) is retried by :func:`callbacks_pending` (beat runs it every minute) after 30 s, 1, 2, 5,
  10 and 30 minutes, then hourly, at most :data:`MAX_ATTEMPTS` times and never once the run ended
  more than 24 hours ago. A refused address is not retried. When the request may have arrived
  (the connection broke, or no answer came, after it was sent) it is not sent again.
* **At most once per run.** A sender first claims the run (``runs.callback_state`` NULL or a due
  ``retry`` -> ``sending``, a conditional UPDATE, as :mod:`jobengine.notices.email` does for
  e-mails), so a finishing task run twice, two workers or a sweep never send twice; the claim is
  released for a retry only when the request certainly did not arrive. A sender that dies while
  sending leaves the claim (``sending``): maybe delivered, never sent again.
* **Never in the way.** Nothing here raises, and the run's state is never touched: a callback
  outage neither fails nor delays a job. Outcomes go to the server log (logger
  ``jobengine.notices.callbacks``; URLs without credentials or query string) and to the run's
  ``callback_*`` columns, not to the job log: IPS has no log type for them, and a job log is
  final once its End row is written.

``runs.callback_state``: NULL (not looked at yet), ``none`` (no URL), ``sending``, ``retry`` (at
``callback_next_at``), ``delivered``, ``unknown`` (maybe delivered), ``refused`` (address refused),
``failed`` (gave up); ``callback_attempts``, ``callback_sent_at`` (the last claim) and
``callback_result`` (the last outcome, in words) go with it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from jobengine.handles import run_handle
from jobengine.kinds import KINDS
from jobengine.net.callback_url import (
    CALLBACK_FIELDS,
    MAX_URL_LENGTH,
    check_completion_url,
    completion_url,
)
from jobengine.net.fetch import FetchLimits, PostError, display_url, post
from jobengine.net.policy import AddressPolicy
from jobengine.runtime import get_runtime
from jobengine.settings import Settings
from jobengine.store.db import Store
from jobengine.store.schema import Company, Job, Run, utcnow
from jobengine.store.states import ENDED_RUNS

__all__ = [
    "CALLBACK_FIELDS",
    "MAX_ATTEMPTS",
    "MAX_URL_LENGTH",
    "callback_body",
    "callbacks_pending",
    "check_completion_url",
    "completion_url",
    "may_call_back",
    "retry_delay",
    "send_callback",
    "sweep_in_background",
]

logger = logging.getLogger(__name__)

RESPONSE_BYTES = 4096  # of an answer's body, read and dropped
MAX_ATTEMPTS = 12
MAX_AGE = timedelta(hours=24)  # no attempt once the run ended longer ago
RETRY_DELAYS = (30, 60, 120, 300, 600, 1800)  # seconds after attempt 1, 2...; then hourly
SWEEP_BATCH = 200
SWEEP_BUDGET = 30.0  # seconds a sweep may spend sending; the rest waits for the next sweep


# --- what is sent ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def callback_body(run: Run, job: Job, company: Company) -> dict[str, Any]:
    """The JSON object a run's callback sends."""
    kind = KINDS.get(job.kind)
    return {
        "companyHandle": company.handle,
        "jobHandle": job.handle,
        "jobLogHandle": run_handle(company.handle, run.run_name),
        "jobName": run.run_name,
        "originalName": job.name,
        "jobType": str(kind.job_type) if kind else job.kind,
        "state": run.state,
        "fatalError": bool(run.fatal_error),
        "fileSuccessCount": run.success_count,
        "fileErrorCount": run.error_count,
        "fileWarningCount": run.warning_count,
        "fileDuplicateCount": run.duplicate_count,
        "fileUpdateCount": run.update_count,
        "totalFileCount": run.total_items,
        "totalSize": run.total_size,
        "startDate": _iso(run.started_at),
        "endDate": _iso(run.ended_at),
    }


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after ``attempts`` failed attempts before the next one."""
    index = max(attempts, 1) - 1
    return timedelta(seconds=RETRY_DELAYS[index] if index < len(RETRY_DELAYS) else 3600)


# --- one attempt -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Callback:
    run_id: int
    run_name: str
    url: str | None
    body: bytes
    ended_at: datetime | None


@dataclass(frozen=True)
class _Attempt:
    state: str  # delivered, retry, unknown, refused, failed
    result: str
    network: bool = False  # the host could not be reached (a sweep skips its other runs)


def _load(store: Store, run_id: int) -> _Callback | None:
    with store.read() as session:
        row = session.execute(
            select(Run, Job, Company)
            .join(Job, Job.id == Run.job_id)
            .join(Company, Company.id == Run.company_id)
            .where(Run.id == run_id)
        ).first()
        if row is None:
            return None
        run, job, company = row
        if run.state not in ENDED_RUNS:
            return None
        element = job.payload.get(job.kind)
        found = completion_url(element) if isinstance(element, dict) else None
        if found is None:
            return _Callback(run.id, run.run_name, None, b"", run.ended_at)
        body = json.dumps(callback_body(run, job, company), separators=(",", ":")).encode()
        return _Callback(run.id, run.run_name, found[1], body, run.ended_at)


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        Run.callback_state.is_(None),
        and_(Run.callback_state == "retry", Run.callback_next_at <= now),
    )


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _claim(store: Store, run_id: int, now: datetime, claimed_at: datetime) -> int | None:
    """Claim a run's callback if it is due; returns the attempt's number, or None."""
    with store.write() as session:
        claimed = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.in_(ENDED_RUNS), _due(now))
            .values(
                callback_state="sending",
                callback_sent_at=claimed_at,
                callback_attempts=func.coalesce(Run.callback_attempts, 0) + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if _rowcount(claimed) != 1:
            return None  # another sender holds it, or it is settled, or not due yet
        return int(session.scalar(select(Run.callback_attempts).where(Run.id == run_id)) or 1)


def _settle(
    store: Store, run_id: int, claimed_at: datetime, attempt: _Attempt, next_at: datetime | None
) -> None:
    """Record an attempt's outcome, if the claim is still ours."""
    with store.write() as session:
        session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.callback_state == "sending",
                Run.callback_sent_at == claimed_at,
            )
            .values(
                callback_state=attempt.state,
                callback_next_at=next_at,
                callback_result=attempt.result[:300],
            )
            .execution_options(synchronize_session=False)
        )


def _mark_none(store: Store, run_ids: list[int]) -> None:
    if not run_ids:
        return
    with store.write() as session:
        session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.callback_state.is_(None))
            .values(callback_state="none")
            .execution_options(synchronize_session=False)
        )


def _limits(settings: Settings) -> FetchLimits:
    timeout = settings.callback_timeout
    return FetchLimits(
        max_bytes=RESPONSE_BYTES, connect_timeout=timeout, read_timeout=timeout, deadline=timeout
    )


def _send(url: str, body: bytes, settings: Settings) -> _Attempt:
    """POST once; what came of it (``retry`` stands for any certain failure)."""
    policy = AddressPolicy.parse(
        settings.callback_allowed_hosts, "JOBENGINE_CALLBACK_ALLOWED_HOSTS"
    )
    try:
        response = post(url, body, policy=policy, limits=_limits(settings))
    except PostError as exc:
        if exc.refused:
            return _Attempt("refused", exc.reason)
        if exc.sent:
            return _Attempt("unknown", exc.reason, network=True)
        return _Attempt("retry", exc.reason, network=True)
    said = f"HTTP {response.status} {response.reason}".strip()
    if 200 <= response.status < 300:
        return _Attempt("delivered", said)
    return _Attempt("retry", said)


def _attempt(
    store: Store, callback: _Callback, settings: Settings, now: datetime
) -> _Attempt | None:
    """Claim, send and settle one run's callback; None when it was not ours to send."""
    assert callback.url is not None
    claimed_at = utcnow()
    number = _claim(store, callback.run_id, now, claimed_at)
    if number is None:
        return None
    attempt = _send(callback.url, callback.body, settings)
    next_at = None
    if attempt.state == "retry":
        next_at = utcnow() + retry_delay(number)
        ended = callback.ended_at or claimed_at
        if number >= MAX_ATTEMPTS or next_at - ended > MAX_AGE:
            attempt, next_at = _Attempt("failed", attempt.result, attempt.network), None
    _settle(store, callback.run_id, claimed_at, attempt, next_at)
    _log(callback, attempt, number, next_at)
    return attempt


def _log(callback: _Callback, attempt: _Attempt, number: int, next_at: datetime | None) -> None:
    where = display_url(callback.url or "")
    what = f"run {callback.run_id} ({callback.run_name}): completion callback to {where}"
    if attempt.state == "delivered":
        logger.info("%s delivered: %s", what, attempt.result)
    elif attempt.state == "retry":
        logger.warning(
            "%s not delivered (%s); attempt %d, next at %s",
            what,
            attempt.result,
            number,
            _iso(next_at),
        )
    elif attempt.state == "failed":
        logger.warning(
            "%s not delivered (%s); gave up after %d attempt(s)", what, attempt.result, number
        )
    elif attempt.state == "unknown":
        logger.warning("%s may have arrived (%s); it is not sent again", what, attempt.result)
    else:
        logger.warning("%s not sent: %s", what, attempt.result)


# --- entry points ----------------------------------------------------------------------------


def may_call_back(kind: str, payload: Mapping[str, Any]) -> bool:
    """Whether a job has a completion URL (from its kind and stored request, no store read):
    :func:`send_callback` has nothing to do for the runs of a job without one (the sweep marks
    them ``none``)."""
    element = payload.get(kind)
    return isinstance(element, dict) and completion_url(element) is not None


def send_callback(run_id: int, *, settings: Settings | None = None) -> bool:
    """Call a finished run's completion URL, if it has one; True when it was delivered now.

    Call it after the run ended, as often as you like: it sends at most once per run (a failure
    that certainly did not arrive is left to :func:`callbacks_pending`) and never raises.
    ``settings`` overrides the runtime's (tests use it).
    """
    try:
        runtime = get_runtime()
        callback = _load(runtime.store, run_id)
        if callback is None or callback.url is None:
            return False
        attempt = _attempt(runtime.store, callback, settings or runtime.settings, utcnow())
        return attempt is not None and attempt.state == "delivered"
    except Exception:  # a callback must never fail the job that ended
        logger.exception("completion callback of run %s failed", run_id)
        return False


def _host(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", url, None


def callbacks_pending(
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    budget: float = SWEEP_BUDGET,
) -> int:
    """Send the callbacks that are due: retries, and those of runs that ended in the last 24 h
    whose task did not send them (it died first). Returns how many were delivered.

    A sweep for a periodic task. It spends at most ``budget`` seconds sending (the rest waits
    for the next sweep) and tries one run per unreachable host: the others of that host wait
    for the next sweep without using up an attempt. ``now`` decides what is due (tests move it
    ahead); runs without a URL are marked ``none`` so that no sweep looks at them again.
    """
    delivered = 0
    try:
        runtime = get_runtime()
        settings = settings or runtime.settings
        now = now or utcnow()
        deadline = time.monotonic() + budget
        unreachable: set[tuple[str, str, int | None]] = set()
        after = 0
        while time.monotonic() < deadline:
            with runtime.store.read() as session:
                rows = session.execute(
                    select(Run.id, Job.kind, Job.payload)
                    .join(Job, Job.id == Run.job_id)
                    .where(
                        Run.id > after,
                        Run.state.in_(ENDED_RUNS),
                        Run.ended_at >= now - MAX_AGE,
                        _due(now),
                    )
                    .order_by(Run.id)
                    .limit(SWEEP_BATCH)
                ).all()
            if not rows:
                break
            after = int(rows[-1][0])
            without: list[int] = []
            for run_id, kind, payload in rows:
                element = payload.get(kind) if isinstance(payload, dict) else None
                found = completion_url(element) if isinstance(element, dict) else None
                if found is None:
                    without.append(int(run_id))
                    continue
                if _host(found[1]) in unreachable or time.monotonic() >= deadline:
                    continue
                callback = _load(runtime.store, int(run_id))
                if callback is None or callback.url is None:
                    continue
                attempt = _attempt(runtime.store, callback, settings, now)
                if attempt is None:
                    continue
                delivered += attempt.state == "delivered"
                if attempt.network:
                    unreachable.add(_host(callback.url))
            _mark_none(runtime.store, without)
    except Exception:
        logger.exception("sweep of pending completion callbacks failed")
    return delivered


_SWEEPER: list[threading.Thread] = []  # the last sweep's thread
_SWEEPER_LOCK = threading.Lock()


def sweep_in_background() -> bool:
    """Run :func:`callbacks_pending` in a daemon thread, unless the last one still runs (beat
    calls it: slow callback hosts must not hold up its schedules). True when one started."""
    with _SWEEPER_LOCK:
        if _SWEEPER and _SWEEPER[-1].is_alive():
            return False
        thread = threading.Thread(target=callbacks_pending, name="jobengine callbacks", daemon=True)
        _SWEEPER[:] = [thread]
        thread.start()
        return True
