"""What UploadUrlsJob and UploadDirectoryJob share: submit checks, one file stored as an asset
with its log row, and the follow-on publish job when the run ends.

* **Submit.** Options this server does not carry out are refused with NotSupported naming the
  field (:func:`jobengine.kinds.processing_options.refuse_unsupported`); a follow-on job must be
  of a kind this server runs, and passes that kind's checks (:func:`jobengine.kinds.check_request`).
* **One file.** :func:`jobengine.assets.ingest.ingest` stores it under the job's ``overwrite``,
  ``readyForPublish`` and ``preservePublishState``, and sets its upload crop
  (``manualCropOptions``, ``autoColorCropOptions``, ``autoTransparentCropOptions``,
  ``preserveCrop``: :mod:`jobengine.assets.crops`; a crop that cannot be set is an extra
  ``UploadWarning`` row, an image that cannot be measured for it an ``UploadError``); the row is
  ``UploadSuccess`` (created or replaced; a replacement also counts in the JobLog's
  ``fileUpdateCount``),
  ``DuplicateSkipped`` (a warning, counted in ``fileDuplicateCount``: a same-named asset exists
  and overwrite is false) or ``UploadError`` naming the source and the reason.
* **Finish.** Returns the follow-on job, if any, as data; the engine submits it
  (:mod:`jobengine.engine.hooks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import ClassVar, TypeVar

from jobengine.assets.crops import CROP_FIELDS, CropOrder
from jobengine.assets.ingest import BadPath, UploadRules, ingest, ingest_ref
from jobengine.errors import IpsFault, log_reason
from jobengine.kinds.base import (
    AssetRef,
    Finished,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    SubmitReads,
)
from jobengine.kinds.follow_on import FOLLOW_ON_FIELDS, follow_on
from jobengine.kinds.processing_options import refuse_unsupported
from jobengine.model import UploadDirectoryJob, UploadUrlsJob
from jobengine.net.fetch import FetchError
from jobengine.storage import LeadsOut, StorageError

__all__ = ["UploadKind", "upload_error"]

logger = logging.getLogger(__name__)

Up = TypeVar("Up", UploadUrlsJob, UploadDirectoryJob)

SUCCESS, ERROR, SKIPPED, WARNING = (
    "UploadSuccess",
    "UploadError",
    "DuplicateSkipped",
    "UploadWarning",
)
# Fields both upload kinds carry out themselves (the rest are judged by processing_options).
COMMON_FIELDS = frozenset(
    {
        "overwrite",
        "ready_for_publish",
        "preserve_publish_state",
        "email_setting",
        "post_job_only_if_files",
        "preserve_crop",
        *CROP_FIELDS,
        *FOLLOW_ON_FIELDS,
    }
)


def upload_error(source: str, reason: str, name: str | None = None) -> ItemOutcome:
    """The error row of a file that was not uploaded."""
    return ItemOutcome(
        "error",
        ERROR,
        "cannot upload {source}: {reason}",
        AssetRef(name=name),
        args={"source": source, "reason": reason},
    )


def _reason(exc: Exception) -> str:
    """The job log's words for a file that was not uploaded (no storage key, no exception
    class: the worker log has those)."""
    if isinstance(exc, FetchError | BadPath):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "the file is gone"
    if isinstance(exc, LeadsOut):
        return "it is a link that leads out of the folder"
    if isinstance(exc, PermissionError):
        return "it is not a regular file, or may not be read"
    if isinstance(exc, StorageError):
        return "its name cannot be stored"
    return log_reason(exc)


class UploadKind(JobKindHandler[Up]):
    """Base of the upload kinds."""

    honoured: ClassVar[frozenset[str]] = COMMON_FIELDS

    def check(self, reads: SubmitReads, job: Up) -> None:
        refuse_unsupported(self.element, job, self.honoured)

    @staticmethod
    def rules(job: Up) -> UploadRules:
        return UploadRules(
            overwrite=bool(job.overwrite),
            ready_for_publish=bool(job.ready_for_publish),
            preserve_publish_state=job.preserve_publish_state,
            crop=CropOrder.of(job),
        )

    def store(
        self,
        ctx: RunContext[Up],
        item: PlannedItem,
        destination: tuple[str, str],
        source: str,
        chunks: Callable[[], Iterable[bytes]],
    ) -> ItemOutcome:
        """Store one file (``chunks()`` gives its bytes) at ``destination`` (clean folder and
        name); ``source`` names where it came from in the log row."""
        folder, name = destination
        try:
            done = ingest(
                ctx.runtime,
                ctx.company_id,
                folder,
                name,
                chunks,
                rules=self.rules(ctx.job),
                ref=ingest_ref(ctx.run_id, item.key),
            )
        except (FetchError, BadPath, OSError, StorageError) as exc:
            logger.info("run %s: %s not uploaded: %r", ctx.run_id, source, exc)
            return upload_error(source, _reason(exc), name)
        except IpsFault as exc:  # the image could not be measured for its crop
            return upload_error(source, f"the image cannot be cropped: {exc.reason}", name)
        ref = AssetRef(done.name, done.type, done.handle)
        result = {"handle": done.handle, "path": done.path, "outcome": done.outcome}
        if done.crop:
            result["crop"] = done.crop
        if done.crop_warning:
            ctx.log(
                WARNING,
                "{name} is not cropped: {reason}",
                asset=ref,
                name=done.path,
                reason=done.crop_warning,
            )
        if done.outcome == "skipped":
            return ItemOutcome(
                "warning",
                SKIPPED,
                "skipped {path}: an asset of that name exists and overwrite is false",
                ref,
                result=result,
                args={"path": done.path},
                tally="duplicate",
            )
        if done.outcome == "replaced":
            return ItemOutcome(
                "success",
                SUCCESS,
                "replaced {path} with {source}",
                ref,
                done.size,
                result,
                args={"path": done.path, "source": source},
                tally="update",
            )
        return ItemOutcome(
            "success",
            SUCCESS,
            "uploaded {source} as {path}",
            ref,
            done.size,
            result,
            args={"source": source, "path": done.path},
        )

    def finish(self, ctx: RunContext[Up], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        return Finished(follow_on=follow_on(ctx.job))  # submitted by the engine's hook
