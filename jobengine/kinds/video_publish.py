"""VideoPublishJob: copy the videos marked for publish to the company's video publish root.

Each Video asset marked for publish goes to ``_publish/<company>/video/<folder path>/<name>`` in
storage, and ``_publish/<company>/video-catalog.json`` lists every published video (beside the
tree, so no asset name can collide with it). The payload has no publishType: every run is
incremental, publishing what is new or changed since the asset's last publish.
"""

from __future__ import annotations

from jobengine.kinds.base import Finished, RunContext
from jobengine.kinds.image_serving_publish import publish_root
from jobengine.kinds.publish import PublishKind, asset_path, published_catalog, write_json
from jobengine.model import JobKind, VideoPublishJob
from jobengine.model.constants import JobType
from jobengine.model.logtypes import JobLogType
from jobengine.storage import Storage

__all__ = ["VideoPublishKind"]


class VideoPublishKind(PublishKind[VideoPublishJob]):
    kind = JobKind.VIDEO_PUBLISH
    job_type = JobType.VIDEO_PUBLISH
    begin_log = JobLogType.BEGIN_VIDEO_PUBLISH
    end_log = JobLogType.END_VIDEO_PUBLISH
    # IPS spells its success type "VideoPubilshSuccess" (sic); there is no other spelling.
    success_log = JobLogType.VIDEO_PUBILSH_SUCCESS
    error_log = JobLogType.VIDEO_PUBLISH_ERROR
    warning_log = JobLogType.VIDEO_PUBLISH_WARNING
    file_types = ("Video",)

    def destination(self, ctx: RunContext[VideoPublishJob]) -> tuple[Storage, str]:
        return ctx.runtime.storage, f"{publish_root(ctx)}/video"

    def finish(self, ctx: RunContext[VideoPublishJob], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        rows = published_catalog(ctx, self.file_types)
        catalog = [
            {"handle": a.handle, "path": asset_path(p, a.name), "size": a.size} for a, p in rows
        ]
        key = f"{publish_root(ctx)}/video-catalog.json"
        write_json(ctx.runtime.storage, key, catalog)
        out = {"root": f"{publish_root(ctx)}/video", "catalog": key, "published": len(catalog)}
        return Finished(out)
