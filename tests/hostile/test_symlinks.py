"""Symlinked folders in the shared storage: an upload folder (``serverDir``) or a server directory
folder that leads into another company's files or out of the storage is refused, on the storage
itself and through real UploadDirectoryJob and ServerDirectoryPublishJob runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from jobengine import submit
from jobengine.kinds.server_directory_publish import DEFAULT_PREFIX
from jobengine.kinds.upload_directory import upload_root
from jobengine.runtime import get_runtime
from jobengine.storage import LeadsOut, LocalStorage
from jobengine.store.schema import Asset, Company
from tests.support.helpers import directory_request, image_bytes

JPEG = image_bytes("JPEG", (10, 200, 10), 24)  # as tests/kinds/test_upload_directory.py writes


# --- the storage ---------------------------------------------------------------------------


def _two_companies(root: Path) -> tuple[Path, Path]:
    """``ftp/a`` and ``ftp/b`` with b's private files, and links from a's root to them."""
    a, b = root / "ftp" / "a", root / "ftp" / "b"
    (b / "private" / "deep").mkdir(parents=True)
    (b / "private" / "contract.txt").write_text("b's contract")
    (b / "private" / "deep" / "more.txt").write_text("b's notes")
    (a / "own" / "sub").mkdir(parents=True)
    (a / "own" / "mine.jpg").write_bytes(JPEG)
    (a / "own" / "sub" / "mine2.jpg").write_bytes(JPEG)
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    (a / "x48").symlink_to("../b/private")  # relative, as the attacker's SFTP client makes it
    (a / "chain").symlink_to(b)  # a folder on the way
    (a / "abs").symlink_to(outside)  # out of the storage
    (a / "hop").symlink_to("x48")  # a link to a link
    (a / "loop").symlink_to("loop")
    (a / "inside").symlink_to("own")  # stays in a's root: allowed
    (a / "own" / "sub-out").symlink_to(b / "private")  # below serverDir: never followed
    return a, b


def test_a_folder_that_leads_out_of_the_root_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    _two_companies(storage.root)
    for server_dir in ("x48", "chain/private", "chain", "abs", "hop", "hop/deep"):
        key = f"ftp/a/{server_dir}"
        for recursive in (False, True):
            with pytest.raises(LeadsOut):
                storage.list_files(key, recursive=recursive, root="ftp/a")
        with pytest.raises(LeadsOut):
            storage.open_within(key, f"{key}/contract.txt", root="ftp/a")
    # without a root the old rule stands (the folder's own files), so callers must pass it
    assert storage.list_files("ftp/a/x48") == ["ftp/a/x48/contract.txt"]
    # a loop holds nothing; a link that stays inside the root is a folder like any other
    assert storage.list_files("ftp/a/loop", root="ftp/a") == []
    assert storage.list_files("ftp/a/inside", recursive=True, root="ftp/a") == [
        "ftp/a/inside/mine.jpg",
        "ftp/a/inside/sub/mine2.jpg",
    ]
    with storage.open_within("ftp/a/inside", "ftp/a/inside/mine.jpg", root="ftp/a") as fh:
        assert fh.read() == JPEG
    # the text of the key is checked too
    with pytest.raises(LeadsOut):
        storage.list_files("ftp/b/private", root="ftp/a")


def test_a_company_root_that_is_itself_a_link_still_works(tmp_path: Path) -> None:
    """An operator may put a company's upload root on another disk."""
    storage = LocalStorage(tmp_path / "root")
    elsewhere = tmp_path / "disk2" / "a"
    (elsewhere / "in").mkdir(parents=True)
    (elsewhere / "in" / "x.jpg").write_bytes(JPEG)
    (storage.root / "ftp").mkdir(parents=True)
    (storage.root / "ftp" / "a").symlink_to(elsewhere)
    assert storage.list_files("ftp/a/in", root="ftp/a") == ["ftp/a/in/x.jpg"]
    with storage.open_within("ftp/a/in", "ftp/a/in/x.jpg", root="ftp/a") as fh:
        assert fh.read() == JPEG


def test_a_folder_swapped_for_a_link_after_the_check_is_caught_at_open(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    a, b = _two_companies(storage.root)
    (a / "swap").mkdir()
    (a / "swap" / "contract.txt").write_text("a's own")
    assert storage.list_files("ftp/a/swap", root="ftp/a") == ["ftp/a/swap/contract.txt"]
    (a / "swap" / "contract.txt").unlink()
    (a / "swap").rmdir()
    (a / "swap").symlink_to(b / "private")
    with pytest.raises(LeadsOut):
        storage.open_within("ftp/a/swap", "ftp/a/swap/contract.txt", root="ftp/a")


def test_writes_within_a_folder_never_follow_a_link_out_of_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    theirs = storage.root / "_serverdir" / "b" / "pics"
    theirs.mkdir(parents=True)
    (storage.root / "_serverdir" / "a").mkdir()
    (storage.root / "_serverdir" / "a" / "pics").symlink_to(theirs)
    (storage.root / "_serverdir" / "a" / "far").symlink_to(tmp_path)
    for key in ("_serverdir/a/pics/x.jpg", "_serverdir/a/pics/new/x.jpg", "_serverdir/a/far/x/y"):
        with pytest.raises(LeadsOut), storage.writer(key, within="_serverdir/a") as out:
            out.write(b"published")
    assert list(theirs.iterdir()) == []  # no file, no temporary file, no folder made there
    assert not (tmp_path / "x").exists()
    with pytest.raises(LeadsOut):
        storage.writer("_serverdir/b/pics/x.jpg", within="_serverdir/a").__enter__()
    # a plain folder is written as always, and a link within the folder is fine
    (storage.root / "_serverdir" / "a" / "alias").symlink_to("sub")
    (storage.root / "_serverdir" / "a" / "sub").mkdir()
    with storage.writer("_serverdir/a/alias/x.jpg", within="_serverdir/a") as out:
        out.write(b"ok")
    assert (storage.root / "_serverdir" / "a" / "sub" / "x.jpg").read_bytes() == b"ok"
    assert storage.copy("_serverdir/a/sub/x.jpg", "_serverdir/a/y.jpg", within="_serverdir/a")
    with pytest.raises(LeadsOut):
        storage.copy("_serverdir/a/sub/x.jpg", "_serverdir/a/pics/y.jpg", within="_serverdir/a")


# --- real jobs -----------------------------------------------------------------------------


def _asset_names(company: str) -> list[str]:
    with get_runtime().store.read() as session:
        return sorted(
            session.scalars(
                select(Asset.name).join(Company, Company.id == Asset.company_id)
                .where(Company.handle == company)
            )
        )  # fmt: skip


def test_upload_directory_never_imports_another_companys_files(stack) -> None:
    attacker, _ = stack.company(0)
    victim, _ = stack.company(0)
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    mine = storage.root / upload_root(attacker)
    theirs = storage.root / upload_root(victim)
    (theirs / "private" / "deep").mkdir(parents=True)
    (theirs / "private" / "contract.txt").write_text("the victim's contract")
    (theirs / "private" / "deep" / "more.txt").write_text("more")
    (mine / "in").mkdir(parents=True)
    (mine / "in" / "ok.jpg").write_bytes(JPEG)
    (mine / "x48").symlink_to(f"../{victim}/private")
    (mine / "chain").symlink_to(f"../{victim}")
    (mine / "in" / "sub").symlink_to(f"../../{victim}/private")
    for server_dir, subfolders in (("x48", False), ("x48", True), ("chain/private", True)):
        name = f"steal {server_dir} {subfolders}"
        request = directory_request(attacker, server_dir, name, destFolder="/stolen",
                                    includeSubfolders=subfolders)  # fmt: skip
        log = stack.wait(attacker, submit(request))
        assert log.state == "Done" and log.total_file_count == 0
        [row] = [d for d in log.details if d.log_type == "UploadError"]
        assert row.log_message == (
            f"cannot upload {server_dir}: the folder is a link that leads out of "
            "the company's upload folder"
        )
        assert victim not in row.log_message  # no storage key of the other company
    # a link below serverDir is left out; the company's own files still upload
    log = stack.wait(attacker, submit(directory_request(attacker, "in", "own",
                                                         includeSubfolders=True)))  # fmt: skip
    assert (log.state, log.file_success_count, log.total_file_count) == ("Done", 1, 1)
    assert _asset_names(attacker) == ["ok.jpg"]
    assert _asset_names(victim) == []


def test_server_directory_publish_never_writes_through_a_link(stack) -> None:
    attacker, _ = stack.company(2)  # two images in /pics, marked for publish
    victim, _ = stack.company(0)
    storage = get_runtime().storage
    assert isinstance(storage, LocalStorage)
    theirs = storage.root / DEFAULT_PREFIX / victim / "pics"
    theirs.mkdir(parents=True)
    (storage.root / DEFAULT_PREFIX / attacker).mkdir(parents=True)
    (storage.root / DEFAULT_PREFIX / attacker / "pics").symlink_to(theirs)
    request = {
        "companyHandle": attacker,
        "jobName": "sd through a link",
        "serverDirectoryPublishJob": {"emailSetting": "None"},
    }
    log = stack.wait(attacker, submit(request))
    assert (log.file_success_count, log.file_error_count) == (0, 2)
    # the two items run at once on the worker's two children: their rows come in either order
    errors = sorted(d.log_message for d in log.details if d.log_type.endswith("Error"))
    assert errors == [
        f"cannot publish img00{n}.jpg: the destination folder is a link that leads out of "
        "the company's folder"
        for n in range(2)
    ]
    assert os.listdir(theirs) == []
