"""ImageServingPublishJob: copy the images marked for publish to the Image Serving root.

The publish root is ``_publish/<company>/`` in storage: the images under their folder paths, a
``catalog.json`` describing them and ``presets.mac`` with the company's image presets (what an IS
publish pushes to the image servers). ``Incremental`` publishes what is new or changed since its
last publish, ``Full`` every marked image, ``FullWithSearch`` also writes ``search.json``.
An image with an upload crop (:mod:`jobengine.assets.crops`) has it in its catalog entry (``crop``,
``x,y,w,h`` in source pixels, as IS ``crop=``); its file is published as uploaded.
Planning, the atomic copy and the ``Published`` mark are the publish kinds' (``publish.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from jobengine.assets.crops import parse_crop
from jobengine.kinds.base import Finished, RunContext
from jobengine.kinds.publish import (
    PublishKind,
    asset_path,
    published_catalog,
    write_json,
    write_text,
)
from jobengine.model import ImageServingPublishJob, JobKind
from jobengine.model.constants import JobType
from jobengine.model.logtypes import JobLogType
from jobengine.storage import Storage, safe_name
from jobengine.store.schema import Asset, ImageFormat

__all__ = ["ImageServingPublishKind", "publish_root"]


def publish_root(ctx: RunContext[Any]) -> str:
    """The company's publish root in storage (Image Serving and video publishes)."""
    return f"_publish/{safe_name(ctx.company_handle)}"


def _entry(asset: Asset, folder: str) -> dict[str, Any]:
    """An image's catalog.json entry; ``crop`` (``x,y,w,h`` in source pixels, IS ``crop=``) when
    it has an upload crop (jobengine/assets/crops.py)."""
    entry: dict[str, Any] = {
        "handle": asset.handle,
        "path": asset_path(folder, asset.name),
        "size": asset.size,
    }
    box = parse_crop(asset.crop)
    if box is not None:
        entry["crop"] = box.text()
    return entry


class ImageServingPublishKind(PublishKind[ImageServingPublishJob]):
    kind = JobKind.IMAGE_SERVING_PUBLISH
    job_type = JobType.IMAGE_SERVING_PUBLISH
    begin_log = JobLogType.BEGIN_IMAGE_SERVING_PUBLISH
    end_log = JobLogType.END_IMAGE_SERVING_PUBLISH
    success_log = JobLogType.IMAGE_SERVING_PUBLISH_SUCCESS
    error_log = JobLogType.IMAGE_SERVING_PUBLISH_ERROR
    warning_log = JobLogType.IMAGE_SERVING_PUBLISH_WARNING
    file_types = ("Image",)

    def incremental(self, job: ImageServingPublishJob) -> bool:
        return str(job.publish_type) == "Incremental"

    def destination(self, ctx: RunContext[ImageServingPublishJob]) -> tuple[Storage, str]:
        return ctx.runtime.storage, f"{publish_root(ctx)}/images"

    def finish(self, ctx: RunContext[ImageServingPublishJob], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        job = ctx.job
        rows = published_catalog(ctx, self.file_types)
        catalog = [_entry(a, p) for a, p in rows]
        with ctx.runtime.store.read() as session:  # the presets.mac of the publish context
            presets = session.scalars(
                select(ImageFormat).where(ImageFormat.company_id == ctx.company_id)
            ).all()
        storage, root = ctx.runtime.storage, publish_root(ctx)
        write_json(storage, f"{root}/catalog.json", catalog)
        write_text(
            storage,
            f"{root}/presets.mac",
            "".join(f"{p.name}\t{p.url_modifier}\n" for p in presets),
        )
        out: dict[str, Any] = {"root": root, "published": len(catalog), "presets": len(presets)}
        if str(job.publish_type) == "FullWithSearch":
            names = sorted({a.name for a, _ in rows})
            write_json(storage, f"{root}/search.json", names, indent=None)
            out["search"] = f"{root}/search.json"
        return Finished(out)
