"""The follow-on publish job of a processing job: ``postImageServingPublishJob``,
``postImageRenderingPublishJob`` or ``postVideoPublishJob`` (at most one, the model checks).

At submit, :func:`check_follow_on` refuses a follow-on whose kind this server does not run
(NotSupported naming the field, e.g. ``uploadUrlsJob/postVideoPublishJob``) and runs that kind's
own submit checks on its payload. When the run ends, :func:`submit_follow_on` submits it for the
same company through the normal submit path (:func:`jobengine.engine.submission.submit`): named
``<jobName>_Pub`` as IPS names follow-on jobs, with the job's submitter, ``userHandle`` and
``locale``, and the ``emailSetting`` its own payload gives; with ``postJobOnlyIfFiles`` true only
if files were processed. Its handle goes into the run's output (``followOn``) and a log row.

A finishing step that runs again (its worker died) does not submit a second follow-on: the
follow-on's ``description`` names the run (``follow-on of <run name>``) and is looked up first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, select

from jobengine.errors import IpsFault
from jobengine.i18n import LogMessage
from jobengine.kinds.base import RunContext
from jobengine.model import MAX_JOB_NAME_LENGTH, to_ips_dict
from jobengine.store.schema import Job, User

__all__ = ["FOLLOW_ON_FIELDS", "check_follow_on", "follow_on", "submit_follow_on"]

# payload attribute -> the submitJob element of the follow-on job
FOLLOW_ON_FIELDS = {
    "post_image_serving_publish_job": "imageServingPublishJob",
    "post_image_rendering_publish_job": "imageRenderingPublishJob",
    "post_video_publish_job": "videoPublishJob",
}
_SUFFIX = "_Pub"


def follow_on(job: BaseModel) -> tuple[str, str, BaseModel] | None:
    """The follow-on of a payload: (its field's IPS name, the job element, the payload)."""
    fields = type(job).model_fields
    for attribute, element in FOLLOW_ON_FIELDS.items():
        payload = getattr(job, attribute, None)
        if isinstance(payload, BaseModel):
            return fields[attribute].alias or attribute, element, payload
    return None


def check_follow_on(db: Connection, company_id: int, element: str, job: BaseModel) -> None:
    """Submit-time checks of the follow-on: this server runs its kind, its payload passes."""
    from jobengine.kinds import kind_for  # the kinds table imports the kinds using this module

    found = follow_on(job)
    if found is None:
        return
    alias, target, payload = found
    path = f"{element}/{alias}"
    try:
        kind_for(target).check(db, company_id, payload)
    except IpsFault as fault:
        inner = (fault.field or "").removeprefix(target).strip("/")
        fault.field = f"{path}/{inner}" if inner else path
        own = f"{target}/"  # the follow-on kind names its own fields from its element
        if fault.reason.startswith(own):
            fault.reason = f"{path}/{fault.reason.removeprefix(own)}"
        else:
            fault.reason = f"{path}: {fault.reason}"
        fault.args = (fault.reason,)
        raise


def _follow_on_name(name: str) -> str:
    return name[: MAX_JOB_NAME_LENGTH - len(_SUFFIX)] + _SUFFIX


def _request(ctx: RunContext, target: str, payload: BaseModel, marker: str) -> dict[str, Any]:
    """The follow-on's submitJob request and the submitting user's handle (``user``)."""
    with ctx.runtime.store.read() as session:
        job = session.get(Job, ctx.job_id)
        assert job is not None
        request: dict[str, Any] = {
            "companyHandle": ctx.company_handle,
            "jobName": _follow_on_name(job.name),
            "description": marker,
            target: to_ips_dict(payload),
        }
        if job.locale:
            request["locale"] = job.locale
        run_as = session.get(User, job.run_as_user_id) if job.run_as_user_id else None
        if run_as is not None:
            request["userHandle"] = run_as.handle
        submitter = session.get(User, job.submit_user_id) if job.submit_user_id else None
        request["user"] = submitter.handle if submitter else None
    return request


def _submitted(ctx: RunContext, marker: str) -> str | None:
    with ctx.runtime.store.read() as session:
        return session.scalar(
            select(Job.handle)
            .where(Job.company_id == ctx.company_id, Job.description == marker)
            .order_by(Job.id)
            .limit(1)
        )


def submit_follow_on(
    ctx: RunContext, *, files: int, warning_type: str, info_type: str = "InitiatingJobName"
) -> dict[str, Any]:
    """Submit the run's follow-on job, if it has one; returns the output entries to add.

    ``files`` counts the files the run processed. Rows: ``info_type`` (submitted, or not for
    want of files), ``warning_type`` when the submit was refused (the run itself stays done).
    """
    from jobengine.engine.submission import submit

    job: Any = ctx.job
    found = follow_on(job)
    if found is None:
        return {}
    _, target, payload = found
    kind = target[:1].upper() + target[1:]
    if job.post_job_only_if_files and files == 0:
        with ctx.runtime.store.write() as session:
            ctx.log(
                session,
                info_type,
                "follow-on job {kind} not submitted: no files were processed",
                kind=kind,
            )
        return {"followOn": None}
    marker = f"follow-on of {ctx.run_name}"
    handle = _submitted(ctx, marker)
    if handle is None:
        request = _request(ctx, target, payload, marker)
        user = request.pop("user")
        try:
            handle = submit(request, user=user)
        except IpsFault as fault:
            with ctx.runtime.store.write() as session:
                ctx.log(
                    session,
                    warning_type,
                    "follow-on job {kind} not submitted: {reason}",
                    kind=kind,
                    reason=fault.reason,
                )
            return {"followOn": None}
    with ctx.runtime.store.write() as session:
        message: LogMessage = "submitted follow-on job {kind} {handle}"
        ctx.log(session, info_type, message, kind=kind, handle=handle)
    return {"followOn": handle}
