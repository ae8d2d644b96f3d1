"""ImageRenderingPublishJob: publish the company's Image Rendering content to its material catalog.

Image Rendering content is what Image Authoring makes
(:data:`jobengine.assets.catalog.RENDER_TYPES`): vignettes (``.vnt``, asset type Vignette) and the
render materials with files of their own, cabinet styles (``.vnc``, Cabinet) and window covering
styles (``.vnw``, WindowsCovering). Textures and decals are images: Image Rendering takes them from
Image Serving (``src=is{…}``), so the Image Serving publish publishes them, not this one.

Each run copies the Image Rendering assets marked for publish that are new or changed since their
last rendering publish (``assets.rendering_published_at``; the payload has no publishType) to
``_publish/<company>/render/<folder path>/<name>``, marks them ``Published``, and writes the
company's material catalog beside that tree, each file whole and atomically:

* ``render.ini``, the catalog attribute file: ``RootId`` (the company handle, the catalog id of
  IR requests), ``RootPath`` (``<company>/render``, under the publish root), ``CatalogFile`` and
  ``VignetteFile``;
* ``render-materials.txt``, the catalog data (tab-separated, a header row): one record per
  published cabinet or window covering: ``Id`` (the name without its suffix), ``Path`` (under
  RootPath), ``Type``;
* ``render-vignettes.txt``, the vignette map: ``Id`` and ``Path`` of every published vignette;
* ``render-catalog.json``, the same records for programs.

A record id is used once per map: an asset whose id an earlier asset of the company already has
(``/a/kitchen.vnt`` and ``/b/kitchen.vnt``) is not published, with an error row. A file whose
first bytes are those of another format (an image, a PDF, a video), that is text, or empty, is not
an Image Authoring file: an error row, and nothing copied.

IPS has no ImageRenderingPublishWarning: an asset whose type or publish state changed since the
run started is skipped with an ImageRenderingPublishError row, counted as a warning.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select

from jobengine.assets.catalog import RENDER_TYPES, asset_type_of
from jobengine.kinds.base import AssetRef, Finished, RunContext
from jobengine.kinds.image_serving_publish import publish_root
from jobengine.kinds.publish import (
    PUBLISHABLE,
    PublishKind,
    asset_path,
    published_catalog,
    write_json,
    write_text,
)
from jobengine.model import ImageRenderingPublishJob, JobKind
from jobengine.model.constants import JobType
from jobengine.model.logtypes import JobLogFileType, JobLogType
from jobengine.storage import Storage
from jobengine.store.schema import Asset, Folder

__all__ = ["ImageRenderingPublishKind", "record_id", "render_file_problem"]

VIGNETTE = "Vignette"
# What each type is called in the rows that refuse a file.
_WHAT = {"Vignette": "vignette", "Cabinet": "cabinet style", "WindowsCovering": "window covering"}
# IPS names the window covering asset type WindowsCovering but its log file type WindowCovering.
_LOG_TYPES = {
    "Vignette": JobLogFileType.VIGNETTE,
    "Cabinet": JobLogFileType.CABINET,
    "WindowsCovering": JobLogFileType.WINDOW_COVERING,
}
_HEAD = 64  # the first bytes looked at (as asset_type_of's)
_TEXT = frozenset(b"\t\n\r\f") | frozenset(range(0x20, 0x7F))
# a catalog record's fields are tab-separated lines: no tab, line break or other control in them
_FIELD_SAFE = re.compile(r"[^\x00-\x1f\x7f]*")


def record_id(name: str) -> str:
    """An asset's id in the material catalog or vignette map: its name without the suffix."""
    return PurePosixPath(name).stem or name


def render_file_problem(asset_type: str, head: bytes) -> str | None:
    """What is wrong with a file stored as an Image Rendering type, told by its first bytes;
    None when nothing is (the formats are not public: only what they cannot be is known)."""
    what = _WHAT.get(asset_type, asset_type)
    if not head:
        return f"the file is empty, not a {what}"
    sniffed = asset_type_of(head)
    if sniffed != "File":
        article = "an" if sniffed[:1] in ("A", "E", "I", "O", "U") else "a"
        return f"the file is {article} {sniffed} file, not a {what}"
    if all(byte in _TEXT for byte in head):
        return f"the file is text, not a {what}"
    return None


def _map_of(asset_type: str) -> tuple[str, ...]:
    """The asset types sharing a record id space with this one (vignettes, or materials)."""
    return (
        (VIGNETTE,) if asset_type == VIGNETTE else tuple(t for t in RENDER_TYPES if t != VIGNETTE)
    )


class ImageRenderingPublishKind(PublishKind[ImageRenderingPublishJob]):
    kind = JobKind.IMAGE_RENDERING_PUBLISH
    job_type = JobType.IMAGE_RENDERING_PUBLISH
    begin_log = JobLogType.BEGIN_IMAGE_RENDERING_PUBLISH
    end_log = JobLogType.END_IMAGE_RENDERING_PUBLISH
    success_log = JobLogType.IMAGE_RENDERING_PUBLISH_SUCCESS
    error_log = JobLogType.IMAGE_RENDERING_PUBLISH_ERROR
    warning_log = JobLogType.IMAGE_RENDERING_PUBLISH_ERROR  # IPS has no warning type for it
    file_types = RENDER_TYPES
    published_column = "rendering_published_at"

    def destination(self, ctx: RunContext[ImageRenderingPublishJob]) -> tuple[Storage, str]:
        return ctx.runtime.storage, f"{publish_root(ctx)}/render"

    def log_asset(self, asset: Asset) -> AssetRef:
        return AssetRef(asset.name, _LOG_TYPES.get(asset.type, asset.type), asset.handle)

    def refusal(
        self, ctx: RunContext[ImageRenderingPublishJob], asset: Asset, folder: str
    ) -> str | None:
        if not _FIELD_SAFE.fullmatch(asset_path(folder, asset.name)):
            return "its folder path or name holds a control character, which a catalog cannot"
        taken = self._id_taken(ctx, asset)
        if taken is not None:
            return f"its catalog id {record_id(asset.name)} is already used by {taken}"
        if asset.file_key is None:
            return None  # the copy says the file is missing
        with ctx.runtime.storage.open(asset.file_key) as fh:
            head = fh.read(_HEAD)
        return render_file_problem(asset.type, head)

    @staticmethod
    def _id_taken(ctx: RunContext[ImageRenderingPublishJob], asset: Asset) -> str | None:
        """The path of an earlier asset of the company with the same record id in its map."""
        wanted = record_id(asset.name)
        with ctx.runtime.store.read() as session:
            rows = session.execute(
                select(Asset.name, Folder.path)
                .join(Folder, Folder.id == Asset.folder_id)
                .where(
                    Asset.company_id == ctx.company_id,
                    Asset.type.in_(_map_of(asset.type)),
                    Asset.publish_state.in_(PUBLISHABLE),
                    Asset.id < asset.id,
                )
                .order_by(Asset.id)
            ).all()
        for name, path in rows:
            if record_id(name) == wanted:
                return asset_path(path, name)
        return None

    def finish(self, ctx: RunContext[ImageRenderingPublishJob], stopped: bool) -> Finished:
        if stopped:
            return Finished()
        records: list[dict[str, Any]] = []
        seen: set[tuple[bool, str]] = set()
        for asset, folder in published_catalog(ctx, self.file_types):
            key = (asset.type == VIGNETTE, record_id(asset.name))
            if key in seen:  # published before an earlier asset took its id: the first keeps it
                continue
            seen.add(key)
            path = asset_path(folder, asset.name)
            records.append(
                {
                    "id": key[1],
                    "handle": asset.handle,
                    "type": asset.type,
                    "path": path,
                    "size": asset.size,
                }
            )
        return Finished(self._write_catalog(ctx, records))

    @staticmethod
    def _write_catalog(
        ctx: RunContext[ImageRenderingPublishJob], records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The catalog files; the attribute file last, as IR reloads a catalog when it changes."""
        storage, root = ctx.runtime.storage, publish_root(ctx)
        vignettes = [r for r in records if r["type"] == VIGNETTE]
        materials = [r for r in records if r["type"] != VIGNETTE]
        write_text(
            storage,
            f"{root}/render-materials.txt",
            "Id\tPath\tType\n"
            + "".join(f"{r['id']}\t{r['path'].lstrip('/')}\t{r['type']}\n" for r in materials),
        )
        write_text(
            storage,
            f"{root}/render-vignettes.txt",
            "Id\tPath\n" + "".join(f"{r['id']}\t{r['path'].lstrip('/')}\n" for r in vignettes),
        )
        write_json(storage, f"{root}/render-catalog.json", records)
        write_text(
            storage,
            f"{root}/render.ini",
            f"RootId={ctx.company_handle}\n"
            f"RootPath={root.removeprefix('_publish/')}/render\n"
            "CatalogFile=render-materials.txt\n"
            "VignetteFile=render-vignettes.txt\n",
        )
        return {
            "root": f"{root}/render",
            "catalog": f"{root}/render.ini",
            "vignettes": len(vignettes),
            "materials": len(materials),
        }
