"""UploadUrlsJob: each ``urlArray`` entry fetched over http(s) and stored as an asset.

One item per entry, in order. ``sourceUrl`` is fetched by :func:`jobengine.net.fetch.fetch` (public
addresses only unless ``JOBENGINE_UPLOAD_ALLOWED_HOSTS`` says otherwise, the vetted address
pinned, at most 5 redirects, timeouts, a deadline and a size limit); ``destPath`` is the IPS
folder path and file name from the company root (``pics/2024/a.jpg``; the folder is created when
missing), checked by :func:`jobengine.assets.ingest.split_dest_path`. A bad URL, a refused address,
a failed transfer or a hostile ``destPath`` fails that entry alone with an ``UploadError`` row.

``numUrls`` is IPS's echo of the URL count: when given it must equal the length of ``urlArray``
(a request whose count disagrees is refused at submit rather than guessed at).
"""

from __future__ import annotations

from jobengine.assets.ingest import BadPath, split_dest_path
from jobengine.errors import InvalidParameter, LimitExceeded
from jobengine.kinds.base import ItemOutcome, PlannedItem, RunContext, SubmitReads
from jobengine.kinds.uploading import COMMON_FIELDS, UploadKind, upload_error
from jobengine.model import JobKind, UploadUrlsJob
from jobengine.net.fetch import FetchLimits, display_url, fetch
from jobengine.net.policy import AddressPolicy

__all__ = ["MAX_UPLOAD_URLS", "UploadUrlsKind"]

MAX_UPLOAD_URLS = 10_000


class UploadUrlsKind(UploadKind[UploadUrlsJob]):
    kind = JobKind.UPLOAD_URLS
    job_type = "UrlUpload"
    begin_log = "BeginUploadUrls"
    end_log = "EndUploadUrls"
    honoured = COMMON_FIELDS | {"url_array", "num_urls"}

    def check(self, reads: SubmitReads, job: UploadUrlsJob) -> None:
        super().check(reads, job)
        count = len(job.url_array)
        if job.num_urls is not None and job.num_urls != count:
            raise InvalidParameter(
                f"uploadUrlsJob/numUrls is {job.num_urls} but urlArray holds {count} URL(s)",
                field="uploadUrlsJob/numUrls",
            )
        if count > MAX_UPLOAD_URLS:
            raise LimitExceeded(
                f"an UploadUrlsJob holds at most {MAX_UPLOAD_URLS} URLs; {count} were given",
                field="uploadUrlsJob/urlArray",
            )

    def plan(self, ctx: RunContext[UploadUrlsJob]) -> list[PlannedItem]:
        job = ctx.job
        return [PlannedItem(key=str(n)) for n in range(len(job.url_array))]

    def process(self, ctx: RunContext[UploadUrlsJob], item: PlannedItem) -> ItemOutcome:
        job = ctx.job
        entry = job.url_array[int(item.key)]
        source = display_url(entry.source_url)
        try:
            destination = split_dest_path(entry.dest_path)
        except BadPath as exc:
            return upload_error(source, f"destPath {entry.dest_path!r} {exc.reason}")
        settings = ctx.runtime.settings
        policy = AddressPolicy.parse(settings.upload_allowed_hosts)
        limits = FetchLimits.from_settings(settings)
        url = str(entry.source_url)
        return self.store(
            ctx, item, destination, source, lambda: fetch(url, policy=policy, limits=limits)
        )
