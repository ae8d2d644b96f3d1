"""Small pieces with no services: handles, storage keys, settings, passwords, asset sniffing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from jobengine.assets.catalog import asset_type_of, hash_password, verify_password
from jobengine.errors import ConfigurationError, InvalidParameter, IpsFault, NotSupported
from jobengine.handles import JobRef, job_handle, parse_job_handle, run_name
from jobengine.settings import Settings
from jobengine.storage import LocalStorage, StorageError, safe_name


@pytest.mark.parametrize(
    ("handle", "ref"),
    [
        ("47|My Test Job|", JobRef("47", "My Test Job", "", None)),
        ("0|Cleanup|", JobRef("0", "Cleanup", "", None)),
        ("47||Add_2007-09-14-15:04:34", JobRef("47", "", "Add_2007-09-14-15:04:34", None)),
        ("j|6||Add_2007-10-24-16:11:07", JobRef("6", "", "Add_2007-10-24-16:11:07", None)),
        ("47|Dup||12", JobRef("47", "Dup", "", 12)),
        ("j|2101||uploadFileServlet-1376682217351|54091",
         JobRef("2101", "", "uploadFileServlet-1376682217351", 54091)),
    ],
)  # fmt: skip
def test_every_observed_job_handle_form_parses(handle: str, ref: JobRef) -> None:
    assert parse_job_handle(handle) == ref


@pytest.mark.parametrize("bad", ["", "47", "47||", "|x|", "47|x||abc", "a|b|c|d|e"])
def test_bad_job_handles_are_a_30001_fault(bad: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_job_handle(bad)
    assert caught.value.code == 30001


@pytest.mark.parametrize("bad_id", ["2147483648", "9" * 30, "\u00b2", "\u0663"])
def test_job_ids_are_ascii_and_fit_the_store(bad_id: str) -> None:
    # Found by fuzzing: "²" passed isdigit() and failed int(); a huge id overflowed the store.
    with pytest.raises(InvalidParameter, match="has a bad id"):
        parse_job_handle(f"47|x||{bad_id}")
    assert parse_job_handle("47|x||2147483647").job_id == 2**31 - 1


def test_handles_and_run_names_are_written_in_one_form() -> None:
    assert job_handle("47", "My Test Job") == "47|My Test Job|"
    assert job_handle("c|47", "X", 9) == "47|X||9"
    when = datetime(2026, 11, 23, 8, 30, 5)
    assert run_name("Add", when) == "Add_2026-11-23-08:30:05"
    assert run_name("Add", when, 2) == "Add_2026-11-23-08:30:05-2"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", "", "a//b"])
def test_storage_refuses_keys_that_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).path(key)


def test_storage_writes_are_atomic(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.writer("a/b.bin") as out:
        out.write(b"old")
    with pytest.raises(RuntimeError), storage.writer("a/b.bin") as out:
        out.write(b"half")
        raise RuntimeError("crash mid-write")
    assert storage.path("a/b.bin").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]  # no temp file left


def test_safe_name() -> None:
    assert safe_name("My Test Job_2026-11-23-08:30:00") == "My Test Job_2026-11-23-08_30_00"
    assert safe_name("../..") == "_"
    assert safe_name("...") == "file"
    assert safe_name("c|47") == "c_47"


def test_passwords_are_hashed_with_scrypt() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret!", stored)
    assert not verify_password("s3cret", "garbage")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0rest", "Image"),
        (b"\x89PNG\r\n\x1a\nrest", "Image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "Image"),
        (b"%PDF-1.7", "Pdf"),
        (b"%!PS-Adobe-3.0 EPSF", "PostScript"),
        (b"\x00\x00\x00\x18ftypmp42", "Video"),
        (b"\x00\x00\x00\x18ftypavif", "Image"),
        (b"<svg xmlns=", "File"),
    ],
)
def test_asset_types_come_from_bytes(head: bytes, kind: str) -> None:
    assert asset_type_of(head) == kind


def test_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    base = {"JOBENGINE_HOME": str(tmp_path)}
    assert Settings.from_env(base).database_url == f"sqlite:///{tmp_path / 'jobengine.db'}"
    with pytest.raises(ConfigurationError, match="time zone"):
        Settings.from_env({**base, "JOBENGINE_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigurationError, match="VISIBILITY"):
        Settings.from_env({**base, "JOBENGINE_TASK_TIME_LIMIT": "9000"})
    with pytest.raises(ConfigurationError, match="not a number"):
        Settings.from_env({**base, "JOBENGINE_ETA_HORIZON": "soon"})


def test_faults_carry_type_code_and_reason() -> None:
    fault = NotSupported("OptimizeImagesJob is not supported", field="optimizeImagesJob")
    assert isinstance(fault, InvalidParameter) and isinstance(fault, IpsFault)
    assert (fault.fault, fault.code, fault.name) == ("ipsApiFault", 30001, "INVALID_PARAMETER")
    assert fault.to_dict() == {
        "fault": "ipsApiFault",
        "code": 30001,
        "reason": "OptimizeImagesJob is not supported",
        "field": "optimizeImagesJob",
    }
