"""ServerDirectoryPublishJob: publish the images, templates and spin sets marked ready to publish
into a server directory.

The server directory is ``JOBENGINE_SERVER_DIRECTORY_ROOT`` (a local directory or any fsspec
URL, with ``JOBENGINE_SERVER_DIRECTORY_OPTIONS``), else ``_serverdir/`` in the asset storage.
Each run writes every Image and Template marked for publish to ``<root>/<company>/<folder
path>/<name>`` and ``<root>/<company>.manifest.json`` (beside the company's folder, so no asset
can collide with it) listing the files and the spin sets (sets have no files of their own).

The directory is a mirror, not an Image Serving publish: every run publishes every marked asset
(the payload has no publishType), and it leaves the assets' publish state alone, which belongs to
the Image Serving publish (marking an image ``Published`` here would make the next incremental
IS publish skip an image the image servers never got).
"""

from __future__ import annotations

import functools
import json

from jobengine.kinds.base import Finished, RunContext
from jobengine.kinds.publish import PublishKind, write_json
from jobengine.model import JobKind, ServerDirectoryPublishJob
from jobengine.model.constants import JobType
from jobengine.model.logtypes import JobLogType
from jobengine.runtime import Runtime
from jobengine.storage import Storage, open_storage, safe_name

__all__ = ["DEFAULT_PREFIX", "ServerDirectoryPublishKind", "server_directory"]

DEFAULT_PREFIX = "_serverdir"  # in the asset storage, when no server directory root is set


@functools.lru_cache(maxsize=8)
def _open(url: str, options: str) -> Storage:
    return open_storage(url, json.loads(options))


def server_directory(runtime: Runtime) -> tuple[Storage, str]:
    """The storage of the server directory and the key prefix of its company folders."""
    settings = runtime.settings
    if not settings.server_directory_root:
        return runtime.storage, DEFAULT_PREFIX
    options = json.dumps(settings.server_directory_options, sort_keys=True)
    return _open(settings.server_directory_root, options), ""


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


class ServerDirectoryPublishKind(PublishKind[ServerDirectoryPublishJob]):
    kind = JobKind.SERVER_DIRECTORY_PUBLISH
    job_type = JobType.SERVER_DIRECTORY_PUBLISH
    begin_log = JobLogType.BEGIN_SERVER_DIRECTORY_PUBLISH
    end_log = JobLogType.END_SERVER_DIRECTORY_PUBLISH
    success_log = JobLogType.SERVER_DIRECTORY_PUBLISH_SUCCESS
    error_log = JobLogType.SERVER_DIRECTORY_PUBLISH_ERROR
    warning_log = JobLogType.SERVER_DIRECTORY_PUBLISH_WARNING
    file_types = ("Image", "Template")
    entry_types = ("SpinSet",)
    marks_published = False

    def incremental(self, job: ServerDirectoryPublishJob) -> bool:
        return False

    def destination(self, ctx: RunContext[ServerDirectoryPublishJob]) -> tuple[Storage, str]:
        storage, prefix = server_directory(ctx.runtime)
        return storage, _join(prefix, safe_name(ctx.company_handle))

    def finish(self, ctx: RunContext[ServerDirectoryPublishJob], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        results = ctx.done_items()
        published = [r for r in results if r.get("path")]
        files = [r for r in published if r.get("type") in self.file_types]
        sets = [r for r in published if r.get("type") in self.entry_types]
        storage, prefix = server_directory(ctx.runtime)
        company = safe_name(ctx.company_handle)
        key = _join(prefix, f"{company}.manifest.json")
        manifest = {
            "company": ctx.company_handle,
            "run": ctx.run_name,
            "files": files,
            "sets": sets,
        }
        write_json(storage, key, manifest)
        return Finished(
            {
                "root": _join(prefix, company),
                "directory": storage.url,
                "manifest": key,
                "files": len(files),
                "sets": len(sets),
            }
        )
