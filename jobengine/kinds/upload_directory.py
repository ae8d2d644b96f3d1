"""UploadDirectoryJob: the files of a directory under the company's upload (FTP) root, stored as
assets.

**The upload root** of a company is the storage prefix ``ftp/<company handle>/`` of the
configured storage (``JOBENGINE_STORAGE``): a folder of a local or shared directory, or a prefix
of an object store, so that every worker of a fleet sees the same files. An FTP or SFTP server
(or any other tool) drops files there; ``serverDir`` is a folder under it (``""`` or ``.`` is
the root itself). It is hostile: an absolute path, ``..``, a backslash, NUL or another control
character is refused at submit (InvalidParameter naming ``uploadDirectoryJob/serverDir``).

One item per file, planned in a stable (sorted) order: the top-level files of ``serverDir``, or
with ``includeSubfolders`` every file below it, its subfolders recreated under ``destFolder``
(the company root when absent). On local storage the listing holds regular files only: a
symlink is followed only to a regular file inside ``serverDir`` (its resolved path is checked,
at listing and again when the file is opened), symlinked folders below ``serverDir`` and special
files (FIFOs, sockets, devices) are left out. ``serverDir`` itself, and every folder on its way,
is resolved too and must stay inside the company's upload root: a symlinked folder leading to
another company's files or out of the storage fails the run's plan with an ``UploadError`` row
and uploads nothing. Files stay where they are after the upload; nothing is moved or deleted in
the upload root.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from jobengine.assets.ingest import BadPath, clean_folder, clean_name, join_folder
from jobengine.errors import InvalidParameter
from jobengine.kinds.base import ItemOutcome, PlannedItem, RunContext, SubmitReads
from jobengine.kinds.uploading import COMMON_FIELDS, ERROR, WARNING, UploadKind, upload_error
from jobengine.model import JobKind, UploadDirectoryJob
from jobengine.storage import LeadsOut, safe_name

__all__ = ["UploadDirectoryKind", "clean_server_dir", "upload_root"]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_ITEM_KEY = 400  # run_items.key
# What the log says when serverDir (or a folder on its way) is a symlink out of the upload root;
# the storage keys involved stay in the worker log.
LEADS_OUT = "the folder is a link that leads out of the company's upload folder"


def upload_root(company_handle: str) -> str:
    """The storage prefix of a company's upload (FTP) root: ``ftp/<company>``."""
    return f"ftp/{safe_name(company_handle)}"


def clean_server_dir(server_dir: str) -> str:
    """``serverDir`` as a folder under the upload root (``a/b``; ``""`` for the root itself);
    BadPath when it is absolute or hostile."""
    if server_dir.startswith(("/", "~")):
        raise BadPath("is an absolute path; give a folder under the company's upload root")
    return clean_folder(server_dir).strip("/")


def _dest_folder(job: UploadDirectoryJob) -> str:
    return clean_folder(job.dest_folder or "/")


class UploadDirectoryKind(UploadKind[UploadDirectoryJob]):
    kind = JobKind.UPLOAD_DIRECTORY
    job_type = "UploadFromServerDirectory"
    begin_log = "BeginUpload"
    end_log = "EndUpload"
    honoured = COMMON_FIELDS | {"dest_folder", "server_dir", "include_subfolders"}

    def check(self, reads: SubmitReads, job: UploadDirectoryJob) -> None:
        super().check(reads, job)
        for field, value, clean in (
            ("serverDir", job.server_dir, clean_server_dir),
            ("destFolder", job.dest_folder or "/", clean_folder),
        ):
            try:
                clean(value)
            except BadPath as exc:
                path = f"{self.element}/{field}"
                raise InvalidParameter(f"{path} {value!r} {exc.reason}", field=path) from None

    @staticmethod
    def _folder_key(ctx: RunContext[UploadDirectoryJob], job: UploadDirectoryJob) -> str:
        inner = clean_server_dir(job.server_dir)
        root = upload_root(ctx.company_handle)
        return f"{root}/{inner}" if inner else root

    def plan(self, ctx: RunContext[UploadDirectoryJob]) -> list[PlannedItem]:
        job = ctx.job
        folder_key = self._folder_key(ctx, job)
        root = upload_root(ctx.company_handle)
        try:
            keys = ctx.runtime.storage.list_files(
                folder_key, recursive=bool(job.include_subfolders), root=root
            )
        except LeadsOut as exc:
            logger.warning("run %s: serverDir refused: %s", ctx.run_id, exc)
            ctx.log(ERROR, "cannot upload {source}: {reason}",
                    source=job.server_dir, reason=LEADS_OUT)  # fmt: skip
            return []
        relative = [key.removeprefix(f"{folder_key}/") for key in keys]
        items = [PlannedItem(key=rel) for rel in relative if len(rel) <= MAX_ITEM_KEY]
        too_long = [rel for rel in relative if len(rel) > MAX_ITEM_KEY]
        if too_long or not items:
            for rel in too_long:
                ctx.log(
                    ERROR,
                    "cannot upload {source}: {reason}",
                    source=f"{rel[:200]}...",
                    reason=f"its path is longer than {MAX_ITEM_KEY} characters",
                )
            if not items:
                ctx.log(WARNING, "no files to upload in {folder}", folder=job.server_dir)
        return items

    def process(self, ctx: RunContext[UploadDirectoryJob], item: PlannedItem) -> ItemOutcome:
        job = ctx.job
        rel = item.key
        source = f"{job.server_dir.rstrip('/')}/{rel}"
        subfolders, _, raw_name = rel.rpartition("/")
        try:
            folder = join_folder(_dest_folder(job), subfolders)
            name = clean_name(raw_name)
        except BadPath as exc:
            return upload_error(source, exc.reason, raw_name[:200])
        storage = ctx.runtime.storage
        folder_key = self._folder_key(ctx, job)

        root = upload_root(ctx.company_handle)

        def chunks() -> Iterator[bytes]:
            with storage.open_within(folder_key, f"{folder_key}/{rel}", root=root) as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return self.store(ctx, item, (folder, name), source, chunks)
