"""The follow-on publish job of a processing job: ``postImageServingPublishJob``,
``postImageRenderingPublishJob`` or ``postVideoPublishJob`` (at most one, the model checks).

Here it is data only. At submit the kinds table (:func:`jobengine.kinds.check_request`) runs
the follow-on kind's own checks on its payload, with :func:`within_follow_on` naming the field
(e.g. ``uploadUrlsJob/postVideoPublishJob``). When the run ends its kind's ``finish`` returns
:class:`FollowOn`, and the engine's follow-on hook (:mod:`jobengine.engine.hooks`) submits it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pydantic import BaseModel

from jobengine.errors import IpsFault

__all__ = ["FOLLOW_ON_FIELDS", "FollowOn", "follow_on", "within_follow_on"]

# payload attribute -> the submitJob element of the follow-on job
FOLLOW_ON_FIELDS = {
    "post_image_serving_publish_job": "imageServingPublishJob",
    "post_image_rendering_publish_job": "imageRenderingPublishJob",
    "post_video_publish_job": "videoPublishJob",
}


@dataclass(frozen=True)
class FollowOn:
    """A run's follow-on job, as its finish asks for it (the hook decides and submits)."""

    alias: str  # the IPS name of the field that holds it, e.g. postImageServingPublishJob
    element: str  # the follow-on's submitJob element, e.g. imageServingPublishJob
    payload: BaseModel
    only_if_files: bool = False  # postJobOnlyIfFiles: only when the run processed files
    warning_type: str = "UploadWarning"  # the row of a submit that was refused
    info_type: str = "InitiatingJobName"  # the row of a submitted (or skipped) follow-on

    @property
    def kind_name(self) -> str:
        """The follow-on's job type as the log rows name it: ``ImageServingPublishJob``."""
        return self.element[:1].upper() + self.element[1:]


@functools.cache
def _fields_of(model: type[BaseModel]) -> tuple[tuple[str, str, str], ...]:
    """The follow-on fields a payload model has: (attribute, IPS name, job element); computed
    once per model (most have none: submit's hot path asks every request)."""
    fields = model.model_fields
    return tuple(
        (attribute, fields[attribute].alias or attribute, element)
        for attribute, element in FOLLOW_ON_FIELDS.items()
        if attribute in fields
    )


def follow_on(job: BaseModel) -> FollowOn | None:
    """The follow-on a payload asks for, if any."""
    for attribute, alias, element in _fields_of(type(job)):
        payload = getattr(job, attribute)
        if isinstance(payload, BaseModel):
            only = bool(getattr(job, "post_job_only_if_files", False))
            return FollowOn(alias, element, payload, only)
    return None


def within_follow_on(fault: IpsFault, element: str, found: FollowOn) -> IpsFault:
    """A fault of the follow-on kind's checks, renamed to the field of the follow-on in
    ``element``'s payload (``uploadUrlsJob/postVideoPublishJob/httpCompletionUrl``)."""
    path, target = f"{element}/{found.alias}", found.element
    inner = (fault.field or "").removeprefix(target).strip("/")
    fault.field = f"{path}/{inner}" if inner else path
    own = f"{target}/"  # the follow-on kind names its own fields from its element
    if fault.reason.startswith(own):
        fault.reason = f"{path}/{fault.reason.removeprefix(own)}"
    else:
        fault.reason = f"{path}: {fault.reason}"
    fault.args = (fault.reason,)
    return fault
