"""Test data made at run time: companies, users, images (no binary fixtures), and the submitJob
requests of each job kind."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import uuid
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from jobengine.assets.catalog import add_set, create_company, create_user, import_files
from jobengine.runtime import get_runtime
from jobengine.store.schema import Job, LogDetail, Run

PASSWORD = "secret-password"


def image_bytes(fmt: str, color: tuple[int, int, int] = (200, 40, 40), size: int = 32) -> bytes:
    """A ``size``-pixel square of ``color``, encoded as ``fmt`` (``JPEG``, ``PNG``...)."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, fmt)
    return out.getvalue()


def make_images(folder: Path, n: int, size: tuple[int, int] = (64, 48), pad: int = 0) -> list[Path]:
    """``n`` small distinct JPEGs (``pad`` adds that many bytes of comment to each)."""
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        Image.new("RGB", size, (i * 7 % 256, 80, 160)).save(path, "JPEG", quality=80)
        if pad:
            with path.open("ab") as fh:
                fh.write(b"\0" * pad)
        paths.append(path)
    return paths


def make_company(
    n_images: int = 3,
    *,
    ready: bool = True,
    sets: int = 0,
    pad: int = 0,
    user_type: str = "IpsUser",
    size: tuple[int, int] = (64, 48),
) -> tuple[str, list[str]]:
    """A fresh company (unique handle) with a user ``<handle>@example.com``; (handle, assets)."""
    runtime = get_runtime()
    handle = f"t{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        company = create_company(session, handle, f"Test {handle}")
        create_user(session, f"{handle}@example.com", PASSWORD, user_type, [company])
        files = make_images(Path(tmp), n_images, size=size, pad=pad)
        assets = import_files(
            session,
            runtime.storage,
            company,
            files,
            folder="/pics",
            ready_for_publish=ready,
            max_bytes=pad + 1024 * 1024,  # padded test images may pass the tests' upload cap
        )
        handles = [a.handle for a in assets]
        handles += [add_set(session, company, f"set{i}", "ImageSet").handle for i in range(sets)]
    return handle, handles


def export_request(
    company: str, assets: list[str], name: str = "Export", **extra: Any
) -> dict[str, Any]:
    """A submitJob dict for an ExportJob of ``assets`` as originals."""
    return {
        "companyHandle": company,
        "jobName": name,
        "exportJob": {"assetHandleArray": {"items": assets}, "fmt": "orig", "emailSetting": "None"},
        **extra,
    }


def publish_request(
    company: str, name: str = "Publish", publish_type: str = "Full", **extra: Any
) -> dict[str, Any]:
    """A submitJob dict for an ImageServingPublishJob."""
    return {
        "companyHandle": company,
        "jobName": name,
        "imageServingPublishJob": {"publishType": publish_type, "emailSetting": "Error"},
        **extra,
    }


def upload_request(
    company: str, entries: list[tuple[str, str]], name: str = "Upload", **options: Any
) -> dict[str, Any]:
    """A submitJob dict for an UploadUrlsJob of (sourceUrl, destPath) pairs."""
    job = {
        "urlArray": {"items": [{"sourceUrl": u, "destPath": d} for u, d in entries]},
        "overwrite": False,
        "readyForPublish": False,
        "createMask": False,
        "emailSetting": "None",
        **options,
    }
    return {"companyHandle": company, "jobName": name, "uploadUrlsJob": job}


def directory_request(
    company: str, server_dir: str, name: str = "Upload Dir", **options: Any
) -> dict[str, Any]:
    """A submitJob dict for an UploadDirectoryJob."""
    job = {
        "serverDir": server_dir,
        "overwrite": False,
        "readyForPublish": False,
        "includeSubfolders": False,
        "createMask": False,
        "processMetadataFiles": False,
        "emailSetting": "None",
        **options,
    }
    return {"companyHandle": company, "jobName": name, "uploadDirectoryJob": job}


def rip_request(company: str, handles: list[str], name: str = "Rip", **pdf: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "pdfHandleArray": {"items": handles},
        "createMask": "false",
        "emailSetting": "None",
    }
    if pdf:
        job["pdfOptions"] = pdf
    return {"companyHandle": company, "jobName": name, "ripPdfsJob": job}


def reprocess_request(
    company: str, handles: list[str], name: str = "Reprocess", **extra: Any
) -> dict[str, Any]:
    job = {"assetHandleArray": {"items": handles}, "createMask": "0", "emailSetting": "None"}
    return {"companyHandle": company, "jobName": name, "reprocessAssetsJob": {**job, **extra}}


def optimize_request(company: str, name: str = "Optimize") -> dict[str, Any]:
    return {
        "companyHandle": company,
        "jobName": name,
        "optimizeImagesJob": {"emailSetting": "None"},
    }


def duplicated_successes() -> int:
    """Success rows beyond one per (run, asset): an item done and counted twice (the fault
    scenarios' run-once count)."""
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(LogDetail.run_id, LogDetail.asset_handle).where(
                LogDetail.log_type == "ReturnSuccess"
            )
        ).all()
    return sum(n - 1 for n in Counter(rows).values() if n > 1)


def zip_members(storage: Any, key: str) -> int:
    """The members of the stored ZIP ``key`` (a LocalStorage's), each read back whole and
    none twice."""
    with zipfile.ZipFile(storage.path(key)) as zf:
        names = zf.namelist()
        assert zf.testzip() is None  # whole: every member reads back
    assert len(names) == len(set(names))
    return len(names)


def run_named(name: str) -> Run:
    """The run of the job named ``name`` (a test's own name: one run)."""
    with get_runtime().store.read() as session:
        run = session.scalar(select(Run).join(Job, Job.id == Run.job_id).where(Job.name == name))
    assert run is not None
    return run


def queued_messages(client: Any, queue: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(task name, task id, kwargs) of every message waiting in ``queue``, oldest first."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):  # LPUSH: the oldest is last
        envelope = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        out.append((envelope["headers"]["task"], envelope["headers"]["id"], kwargs))
    return out
