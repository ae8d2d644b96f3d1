"""What the engine does around the end of a run, as an ordered list of hooks (:data:`HOOKS`).

A hook (:class:`RunHook`) has two moments, both run by :mod:`jobengine.engine.runner`:

* ``before_end(ctx, finished)``: in the finishing step, after the kind's finish and before the
  run's end is committed; what it returns joins the run's output, so its log rows come before
  the End row. The follow-on job (:class:`FollowOnHook`) is submitted here.
* ``after_end(run_id)``: after the run ended (Done, Stopped or Failed), by every task that
  ended it or finishes it, a redelivered one too (so what a dead worker missed is sent). The
  e-mail notice (:class:`NoticeHook`) and the completion callback (:class:`CallbackHook`).

A caller that knows the run's job (its kind and stored request, which never change after the
submit: the runner loaded them to run it) passes them to ``after_end`` (:class:`EndedJob`), and
a hook its job never asks for is skipped without reading the store (``RunHook.wanted``): no
e-mail check for a job whose emailSetting is ``None``, no callback check for a job without a
completion URL, the two reads a small job's end used to cost.

Hooks run in order, each isolated: one that raises is logged and the next runs all the same
(as dramatiq's middleware ``after_*`` hooks). The one exception is a store outage in
``before_end``: the finishing step runs again from the top once the store answers.

Each hook runs at most once per run however often it is called: the e-mail and the callback
claim the run in the store before sending (:mod:`jobengine.notices.email`,
:mod:`jobengine.notices.callbacks`); the follow-on is looked up by its ``description`` (``follow-on
of <run name>``) before it is submitted, so a finish that runs again reuses the job the first
submitted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from jobengine.engine.submission import submit
from jobengine.errors import IpsFault, Unavailable
from jobengine.i18n import LogMessage
from jobengine.kinds.base import Finished, RunContext
from jobengine.kinds.follow_on import FollowOn
from jobengine.model import MAX_JOB_NAME_LENGTH, to_ips_dict
from jobengine.notices.callbacks import may_call_back, send_callback
from jobengine.notices.email import may_notify, notify_run
from jobengine.store.schema import Job, Run, User

__all__ = [
    "HOOKS",
    "CallbackHook",
    "EndedJob",
    "FollowOnHook",
    "NoticeHook",
    "RunHook",
    "after_end",
    "before_end",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndedJob:
    """What a caller of :func:`after_end` knows of the run's job: its kind (the submitJob
    element, ``exportJob``) and its stored request (``Job.payload``), never changed once
    submitted."""

    kind: str
    payload: Mapping[str, Any]


class RunHook:
    """One effect of a run's end; override one moment or both (the defaults do nothing)."""

    name = "hook"

    def wanted(self, job: EndedJob) -> bool:
        """Whether ``after_end`` can have anything to do for a run of this job; False skips it
        (a cheap check of the request, no store read)."""
        return True

    def before_end(self, ctx: RunContext[Any], finished: Finished) -> Mapping[str, Any]:
        """Work before the run's end is committed; returns entries for the run's output."""
        return {}

    def after_end(self, run_id: int) -> None:
        """Work after the run ended; called as often as a task ends or finishes the run."""


class FollowOnHook(RunHook):
    """Submits the follow-on job a run's finish asked for (``postImageServingPublishJob``...)
    through :func:`jobengine.engine.submission.submit`: named ``<jobName>_Pub`` as IPS names
    follow-on jobs, with the job's submitter, ``userHandle`` and ``locale``, and the
    ``emailSetting`` its own payload gives; with ``postJobOnlyIfFiles`` only if the run processed
    files. Its handle goes into the run's output (``followOn``) and a log row; a refused submit is a
    warning row (the run itself stays done)."""

    name = "follow-on"
    SUFFIX = "_Pub"

    def before_end(self, ctx: RunContext[Any], finished: Finished) -> Mapping[str, Any]:
        wanted = finished.follow_on
        if wanted is None:
            return {}
        if wanted.only_if_files and _processed(ctx) == 0:
            ctx.log(
                wanted.info_type,
                "follow-on job {kind} not submitted: no files were processed",
                kind=wanted.kind_name,
            )
            return {"followOn": None}
        marker = f"follow-on of {ctx.run_name}"
        handle = _submitted(ctx, marker)  # a finish run again: the first one's job
        if handle is None:
            request, user = self._request(ctx, wanted, marker)
            try:
                handle = submit(request, user=user)
            except IpsFault as fault:
                ctx.log(
                    wanted.warning_type,
                    "follow-on job {kind} not submitted: {reason}",
                    kind=wanted.kind_name,
                    reason=fault.reason,
                )
                return {"followOn": None}
        message: LogMessage = "submitted follow-on job {kind} {handle}"
        ctx.log(wanted.info_type, message, kind=wanted.kind_name, handle=handle)
        return {"followOn": handle}

    def _request(
        self, ctx: RunContext[Any], wanted: FollowOn, marker: str
    ) -> tuple[dict[str, Any], str | None]:
        """The follow-on's submitJob request, and the handle of the user who submits it."""
        with ctx.runtime.store.read() as session:
            job = session.get(Job, ctx.job_id)
            assert job is not None
            request: dict[str, Any] = {
                "companyHandle": ctx.company_handle,
                "jobName": job.name[: MAX_JOB_NAME_LENGTH - len(self.SUFFIX)] + self.SUFFIX,
                "description": marker,
                wanted.element: to_ips_dict(wanted.payload),
            }
            if job.locale:
                request["locale"] = job.locale
            run_as = session.get(User, job.run_as_user_id) if job.run_as_user_id else None
            if run_as is not None:
                request["userHandle"] = run_as.handle
            submitter = session.get(User, job.submit_user_id) if job.submit_user_id else None
        return request, submitter.handle if submitter else None


def _processed(ctx: RunContext[Any]) -> int:
    """The files the run processed (its successes)."""
    with ctx.runtime.store.read() as session:
        count = session.scalar(select(Run.success_count).where(Run.id == ctx.run_id))
    return int(count or 0)


def _submitted(ctx: RunContext[Any], marker: str) -> str | None:
    with ctx.runtime.store.read() as session:
        return session.scalar(
            select(Job.handle)
            .where(Job.company_id == ctx.company_id, Job.description == marker)
            .order_by(Job.id)
            .limit(1)
        )


class NoticeHook(RunHook):
    """The e-mail notice, as the job's emailSetting asks
    (:func:`jobengine.notices.email.notify_run`)."""

    name = "e-mail notice"

    def wanted(self, job: EndedJob) -> bool:
        return may_notify(job.kind, job.payload)

    def after_end(self, run_id: int) -> None:
        notify_run(run_id)


class CallbackHook(RunHook):
    """The completion callback, ``httpCompletionUrl`` / ``postHttpUrl``
    (:func:`jobengine.notices.callbacks.send_callback`)."""

    name = "completion callback"

    def wanted(self, job: EndedJob) -> bool:
        return may_call_back(job.kind, job.payload)

    def after_end(self, run_id: int) -> None:
        send_callback(run_id)


# In order: the follow-on is submitted before the end (its row and handle are part of the
# run), then the e-mail, then the callback, as the tasks sent them before there were hooks.
HOOKS: tuple[RunHook, ...] = (FollowOnHook(), NoticeHook(), CallbackHook())


def before_end(
    ctx: RunContext[Any], finished: Finished, hooks: tuple[RunHook, ...] = HOOKS
) -> dict[str, Any]:
    """Run every hook's ``before_end``; their output entries over the kind's output."""
    output = dict(finished.output)
    for hook in hooks:
        try:
            output.update(hook.before_end(ctx, finished))
        except Unavailable:
            raise  # the store is down: the finishing step runs again once it answers
        except Exception:  # one hook failing never stops the others, nor the run's end
            logger.exception("run %s: the %s hook failed", ctx.run_id, hook.name)
    return output


def after_end(
    run_id: int, hooks: tuple[RunHook, ...] = HOOKS, *, job: EndedJob | None = None
) -> None:
    """Run every hook's ``after_end`` for a run that ended; never raises. With ``job`` (the
    run's job, as the caller loaded it), the hooks it never asks for are skipped."""
    for hook in hooks:
        try:
            if job is not None and not hook.wanted(job):
                continue
            hook.after_end(run_id)
        except Exception:  # one hook failing never stops the others
            logger.exception("run %s: the %s hook failed", run_id, hook.name)
