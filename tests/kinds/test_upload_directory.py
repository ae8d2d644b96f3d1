"""UploadDirectoryJob: the storage listing it relies on (local, ``memory://`` and S3 through
moto), hostile upload folders (symlinks out of the root, special files), and real jobs through
submit() and a worker on both stores."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jobengine import errors, submit
from jobengine.kinds.upload_directory import upload_root
from jobengine.runtime import get_runtime
from jobengine.storage import FsspecStorage, LocalStorage, Storage, StorageError, open_storage
from jobengine.store.schema import Asset, Company, Folder
from tests.support.helpers import directory_request, image_bytes
from tests.support.moto_s3 import MotoS3

JPEG, PNG = image_bytes("JPEG", (10, 200, 10), 24), image_bytes("PNG", (10, 10, 200), 24)


# --- the listing, on every storage -------------------------------------------------------------


@pytest.fixture(params=["local", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_storage(str(tmp_path / "root"))
    if request.param == "memory":
        return open_storage(f"memory://listing-{uuid.uuid4().hex[:8]}")
    server: MotoS3 = request.getfixturevalue("moto_s3")
    url = f"s3://{server.bucket}/listing-{uuid.uuid4().hex[:8]}"
    made = open_storage(url, server.options)
    assert isinstance(made, FsspecStorage) and made.object_store
    return made


def _put(storage: Storage, key: str, data: bytes = b"data") -> None:
    with storage.writer(key) as out:
        out.write(data)


def test_list_files_top_level_and_recursive(storage: Storage) -> None:
    for key in ("ftp/c/in/a.jpg", "ftp/c/in/b c.png", "ftp/c/in/sub/d.jpg", "ftp/c/in/sub/x/e.jpg",
                "ftp/c/other/f.jpg", "ftp/c/in.txt"):  # fmt: skip
        _put(storage, key)
    assert storage.list_files("ftp/c/in") == ["ftp/c/in/a.jpg", "ftp/c/in/b c.png"]
    assert storage.list_files("ftp/c/in", recursive=True) == [
        "ftp/c/in/a.jpg",
        "ftp/c/in/b c.png",
        "ftp/c/in/sub/d.jpg",
        "ftp/c/in/sub/x/e.jpg",
    ]
    assert storage.list_files("ftp/c/missing") == []
    assert storage.list_files("ftp/c/missing", recursive=True) == []
    assert storage.list_files("ftp/c/in/a.jpg") == []  # a file is not a folder
    _put(storage, "ftp/c/in/new.jpg")  # a listing is never stale
    assert "ftp/c/in/new.jpg" in storage.list_files("ftp/c/in")
    with pytest.raises(StorageError):
        storage.list_files("ftp/../c")


def test_open_within(storage: Storage) -> None:
    _put(storage, "ftp/c/in/sub/a.jpg", b"inside")
    _put(storage, "ftp/c/out.jpg", b"outside")
    with storage.open_within("ftp/c/in", "ftp/c/in/sub/a.jpg") as fh:
        assert fh.read() == b"inside"
    with pytest.raises(PermissionError):
        storage.open_within("ftp/c/in", "ftp/c/out.jpg")
    with pytest.raises(FileNotFoundError):
        storage.open_within("ftp/c/in", "ftp/c/in/nope.jpg")
    with pytest.raises(StorageError):
        storage.open_within("ftp/c/in", "ftp/c/in/../out.jpg")


def test_s3_names_that_are_no_valid_keys_are_left_out(moto_s3: MotoS3) -> None:
    url = f"s3://{moto_s3.bucket}/odd-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url, moto_s3.options)
    fs = moto_s3.fs()
    root = url.removeprefix("s3://")
    fs.pipe({f"{root}/in/ok.jpg": b"1", f"{root}/in/dir/": b"", f"{root}/in/back\\slash": b"2"})
    assert storage.list_files("in") == ["in/ok.jpg"]
    assert storage.list_files("in", recursive=True) == ["in/ok.jpg"]


def _hostile_folder(root: Path) -> Path:
    """An upload folder holding a file, a symlink out of it, one inside it, a symlinked folder,
    a dangling and a looping symlink and a FIFO."""
    folder = root / "ftp" / "c" / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(JPEG)
    (folder / "sub" / "b.jpg").write_bytes(JPEG)
    secret = root.parent / "secret.txt"
    secret.write_text("do not upload me")
    (root / "ftp" / "c" / "sibling.jpg").write_bytes(b"another folder")
    (folder / "link-out").symlink_to(secret)
    (folder / "link-sibling.jpg").symlink_to(root / "ftp" / "c" / "sibling.jpg")
    (folder / "link-in.jpg").symlink_to(folder / "sub" / "b.jpg")
    (folder / "link-dir").symlink_to(root.parent)
    (folder / "dangling").symlink_to(folder / "nope")
    (folder / "loop").symlink_to(folder / "loop")
    os.mkfifo(folder / "fifo")
    return folder


def test_local_listing_never_leaves_the_folder_or_opens_special_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    folder = _hostile_folder(storage.root)
    assert storage.list_files("ftp/c/in") == ["ftp/c/in/a.jpg", "ftp/c/in/link-in.jpg"]
    assert storage.list_files("ftp/c/in", recursive=True) == [
        "ftp/c/in/a.jpg",
        "ftp/c/in/link-in.jpg",
        "ftp/c/in/sub/b.jpg",
    ]
    for name in ("link-out", "link-sibling.jpg", "link-dir"):
        with pytest.raises(PermissionError):
            storage.open_within("ftp/c/in", f"ftp/c/in/{name}")
    with pytest.raises(PermissionError, match="not a regular file"):
        storage.open_within("ftp/c/in", "ftp/c/in/fifo")  # refused without blocking
    with pytest.raises(OSError):
        storage.open_within("ftp/c/in", "ftp/c/in/loop")
    # a file swapped for a symlink after the listing is refused when opened
    (folder / "a.jpg").unlink()
    (folder / "a.jpg").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PermissionError):
        storage.open_within("ftp/c/in", "ftp/c/in/a.jpg")


# --- real jobs ---------------------------------------------------------------------------------


def _assets(company: str) -> dict[str, Asset]:
    with get_runtime().store.read() as session:
        rows = session.execute(
            select(Asset, Folder.path)
            .join(Folder, Folder.id == Asset.folder_id)
            .join(Company, Company.id == Asset.company_id)
            .where(Company.handle == company)
        ).all()
    return {f"{path.rstrip('/')}/{a.name}": a for a, path in rows}


def _upload_folder(company: str) -> Path:
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    root = storage.root / upload_root(company)
    incoming = root / "incoming"
    (incoming / "sub" / "deeper").mkdir(parents=True)
    (incoming / "tab\tdir").mkdir()
    (incoming / "a.jpg").write_bytes(JPEG)
    (incoming / "b.png").write_bytes(PNG)
    (incoming / "notes.txt").write_text("plain text")
    (incoming / "sub" / "c.jpg").write_bytes(JPEG)
    (incoming / "sub" / "deeper" / "d.png").write_bytes(PNG)
    (incoming / "tab\tdir" / "e.jpg").write_bytes(JPEG)
    secret = storage.root.parent / f"secret-{company}.txt"
    secret.write_bytes(b"SECRET")
    (incoming / "link-out.jpg").symlink_to(secret)
    (incoming / "sub" / "link-other-company.jpg").symlink_to(root.parent / "t0000000" / "x.jpg")
    os.mkfifo(incoming / "fifo.jpg")
    return incoming


def test_upload_directory_end_to_end(stack) -> None:
    company, _ = stack.company(0)
    incoming = _upload_folder(company)
    before = sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*"))

    top = stack.wait(
        company, submit(directory_request(company, "incoming", "Top", destFolder="/dest"))
    )
    assert top.state == "Done"
    assert (top.file_success_count, top.file_error_count, top.total_file_count) == (3, 0, 3)
    types = [d.log_type for d in top.details]
    assert types[0] == "BeginUpload" and types[-1] == "EndUpload"
    assets = _assets(company)
    assert sorted(assets) == ["/dest/a.jpg", "/dest/b.png", "/dest/notes.txt"]
    assert [assets[p].type for p in sorted(assets)] == ["Image", "Image", "File"]
    messages = sorted(d.log_message for d in top.details if d.log_type == "UploadSuccess")
    assert messages[0] == "uploaded incoming/a.jpg as /dest/a.jpg"

    tree = stack.wait(
        company,
        submit(
            directory_request(
                company,
                "./incoming/",
                "Tree",
                destFolder="tree",
                includeSubfolders=True,
                readyForPublish=True,
            )
        ),
    )
    assert (tree.file_success_count, tree.file_error_count, tree.total_file_count) == (5, 1, 6)
    assets = _assets(company)
    uploaded = sorted(p for p in assets if p.startswith("/tree/"))
    assert uploaded == [
        "/tree/a.jpg",
        "/tree/b.png",
        "/tree/notes.txt",
        "/tree/sub/c.jpg",
        "/tree/sub/deeper/d.png",
    ]
    assert {assets[p].publish_state for p in uploaded} == {"MarkedForPublish"}
    [error] = [d.log_message for d in tree.details if d.log_type == "UploadError"]
    assert error == ("cannot upload ./incoming/tab\tdir/e.jpg: holds the control character '\\t'")
    storage = get_runtime().storage
    stored = [storage.open(a.file_key).read() for a in assets.values() if a.file_key]
    assert b"SECRET" not in stored  # the symlink out of the root was never followed
    # the files stay where they were
    assert sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*")) == before

    again = stack.wait(company, submit(directory_request(company, "incoming", "Again",
                                                         destFolder="/dest")))  # fmt: skip
    assert (again.file_warning_count, again.file_duplicate_count) == (3, 3)

    nothing = stack.wait(company, submit(directory_request(company, "not/there", "Nothing")))
    assert (nothing.state, nothing.total_file_count) == ("Done", 0)
    assert [d.log_message for d in nothing.details if d.log_type == "UploadWarning"] == [
        "no files to upload in not/there"
    ]


@pytest.mark.parametrize(
    ("options", "fault", "field"),
    [
        ({"serverDir": "/etc"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "~root"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "../other"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "a/../../b"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "C:/Windows"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "a\\..\\b"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"serverDir": "a\tb"}, errors.InvalidParameter, "uploadDirectoryJob/serverDir"),
        ({"destFolder": "../x"}, errors.InvalidParameter, "uploadDirectoryJob/destFolder"),
        ({"processMetadataFiles": True}, errors.NotSupported,
         "uploadDirectoryJob/processMetadataFiles"),
        ({"createMask": True}, errors.NotSupported, "uploadDirectoryJob/createMask"),
        ({"xmpKeywords": "a,b"}, errors.NotSupported, "uploadDirectoryJob/xmpKeywords"),
    ],
)  # fmt: skip
def test_hostile_or_unsupported_requests_are_refused_at_submit(
    stack, options: dict[str, Any], fault: type[errors.IpsFault], field: str
) -> None:
    company, _ = stack.company(0)
    request = directory_request(company, "incoming")
    request["uploadDirectoryJob"].update(options)
    with pytest.raises(fault) as caught:
        submit(request)
    assert caught.value.code == 30001 and caught.value.field == field
    assert field in caught.value.reason
