"""AutomatedSetGenerationJob and batch set presets: the rules on their own (validation, hostile
patterns, grouping and order), the CLI, and submit() through a real worker on SQLite and
PostgreSQL (image sets by view, spin sets by sequence, re-runs in place, readyForPublish,
refusals at submit, hostile names)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from jobengine import errors, submit
from jobengine.assets.catalog import (
    add_asset,
    company_by_handle,
    ensure_folder,
    put_asset_file,
    set_members,
)
from jobengine.assets.setrules import (
    MAX_PATTERN,
    MAX_SUBJECT,
    SetRule,
    check_pattern,
    group_assets,
    parse_set_preset_handle,
)
from jobengine.kinds import kind_for
from jobengine.kinds.automated_set_generation import item_key, parse_item_key
from jobengine.operations.set_presets import delete_set_preset, get_set_presets, save_set_preset
from jobengine.runtime import get_runtime
from jobengine.storage import safe_name
from jobengine.store import migrate
from jobengine.store.schema import Asset, Folder, SetMember
from tests.support.stack import Stack

VIEWS = r"^(?P<base>.+)_(?P<view>front|back|side)$"
SEQUENCE = r"^(?P<base>.+)_(?P<seq>\d+)$"


# --- the rules (no store) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(?P<base>", "not a regular expression"),
        ("[a-", "not a regular expression"),
        (r"^(?P<name>.+)_front$", "no named group 'base'"),
        ("", "empty"),
        ("(?P<base>" + "a" * MAX_PATTERN + ")", "at most 256"),
        (r"^(?P<base>(a+)+)$", "nests a variable-length repeat"),
        (r"^(?P<base>(?:\w*)*)_x$", "nests a variable-length repeat"),
        (r"^(?P<base>(?:a{1,3}){2,9})$", "nests a variable-length repeat"),
        (r"^(?P<base>(a|ab)*)c$", "repeats an alternation"),
        (r"^(?P<base>.*)(.*)(.*)(.*)x$", "4 variable-length repeats"),
        (r"^(?P<base>a)\1$", "backreferences"),
        (r"^(?P<base>(?=a).+)$", "lookarounds"),
        (r"^(?P<base>a)(?(base)b|c)$", "conditional"),
        ("(?P<base>a)\x00", "control character"),
    ],
)
def test_bad_patterns_are_refused_naming_the_field(pattern: str, words: str) -> None:
    with pytest.raises(errors.IpsFault) as caught:
        check_pattern(pattern)
    assert caught.value.field == "pattern"
    assert words in caught.value.reason


def test_safe_patterns_are_accepted_and_match_fast() -> None:
    for pattern in (
        VIEWS,
        SEQUENCE,
        r"(?P<base>[^_]+)_(?P<view>\w+)",
        r"^(?P<base>(?:ab)+)-(?P<seq>\d{2})$",
        r"(?i)^(?P<base>[a-z0-9]+)[-_](?P<view>FRONT|back)$",
    ):
        check_pattern(pattern)
    # the worst accepted shape on the longest matched name stays fast
    rule = SetRule.build("ImageSet", r"^(?P<base>.*)(.*)(.*)x$")
    started = time.perf_counter()
    assert rule.match("h", "a" * MAX_SUBJECT + ".jpg") is None
    assert time.perf_counter() - started < 2.0
    # a longer name is never matched at all
    assert SetRule.build("ImageSet", r"(?P<base>.+)").match("h", "a" * (MAX_SUBJECT + 1)) is None


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"set_type": "MediaSet"}, "setType", "ImageSet, SpinSet"),
        ({"order": "random"}, "order", "view, sequence, name"),
        ({"order": "view"}, "views", "needs the views"),
        ({"order": "view", "views": ["front"], "pattern": SEQUENCE}, "pattern", "group 'view'"),
        ({"order": "sequence"}, "pattern", "group 'seq'"),
        ({"order": "name", "views": ["front"]}, "views", "only used with order 'view'"),
        ({"order": "view", "views": ["front", "FRONT"]}, "views", "listed twice"),
        ({"order": "view", "views": ["x"] * 51}, "views", "at most 50"),
        ({"order": "view", "views": [""]}, "views", "1 to 64"),
        ({"name_template": "set"}, "nameTemplate", "{base}"),
        ({"name_template": "{base}{other}"}, "nameTemplate", "{base}"),
        ({"name_template": "{base!r}"}, "nameTemplate", "{base}"),
        ({"name_template": "{base}/x"}, "nameTemplate", "may hold only"),
        ({"name_template": "{base}_集合"}, "nameTemplate", "may hold only"),
        ({"name_template": "{base"}, "nameTemplate", "malformed"),
        ({"name_template": "{base}" * 40}, "nameTemplate", "at most 200"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    fields: dict[str, Any], field: str, words: str
) -> None:
    args: dict[str, Any] = {"set_type": "ImageSet", "pattern": VIEWS, **fields}
    with pytest.raises(errors.IpsFault) as caught:
        SetRule.build(**args)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_grouping_orders_members_by_view_sequence_or_name() -> None:
    views = SetRule.build("ImageSet", VIEWS, "view", ["front", "side", "back"], "{base}_set")
    names = ["shoe_back.jpg", "shoe_front.jpg", "bag_front.jpg", "shoe_side.jpg", "hat.jpg"]
    groups = group_assets(views, [(f"h{i}", n) for i, n in enumerate(names)])
    assert {k: [m.name for m in v] for k, v in groups.items()} == {
        "shoe_set": ["shoe_front.jpg", "shoe_side.jpg", "shoe_back.jpg"],
        "bag_set": ["bag_front.jpg"],
    }
    # views not listed come last, by name; matching of views is case-insensitive
    loose = SetRule.build("ImageSet", r"(?P<base>[^_]+)_(?P<view>\w+)", "view", ["Front", "back"])
    pairs = [("1", "a_zoom.jpg"), ("2", "a_BACK.jpg"), ("3", "a_detail.jpg"), ("4", "a_front.jpg")]
    got = [m.name for m in group_assets(loose, pairs)["a"]]
    assert got == ["a_front.jpg", "a_BACK.jpg", "a_detail.jpg", "a_zoom.jpg"]
    spin = SetRule.build("SpinSet", SEQUENCE, "sequence")
    shuffled = [(str(i), f"spin_{i:02d}.jpg") for i in (12, 3, 1, 10, 2, 11, 4, 9, 5, 8, 6, 7)]
    assert [m.name for m in group_assets(spin, shuffled)["spin"]] == [
        f"spin_{i:02d}.jpg" for i in range(1, 13)
    ]
    by_name = SetRule.build("ImageSet", r"(?P<base>[a-z]+)\d")
    assert [m.name for m in group_assets(by_name, [("1", "x2.jpg"), ("2", "x1.jpg")])["x"]] == [
        "x1.jpg",
        "x2.jpg",
    ]


def test_hostile_names_are_only_matched_as_text() -> None:
    rule = SetRule.build("ImageSet", VIEWS, "view", ["front", "back"], "{base} set")
    hostile = [
        ("1", "a(b)*[c]$^.{base}_front.jpg"),
        ("2", "a(b)*[c]$^.{base}_back.jpg"),
        ("3", "ü日本_front.png"),
        ("4", "x" * 5000 + "_front.jpg"),
        ("5", "\\1_back"),
        ("6", ".jpg"),
        ("7", "_front.jpg"),
    ]
    groups = group_assets(rule, hostile)
    assert {k: [m.handle for m in v] for k, v in groups.items()} == {
        "a(b)*[c]$^.{base} set": ["1", "2"],
        "ü日本 set": ["3"],
        "\\1 set": ["5"],
    }


def test_item_keys_and_preset_handles_round_trip() -> None:
    name = "n" * 1000
    key = item_key(7, name)
    assert len(key) <= 400
    preset_id, digest, label = parse_item_key(key)
    assert (preset_id, label) == (7, name[:300])
    assert digest != parse_item_key(item_key(7, name + "x"))[1]
    assert parse_set_preset_handle("47|sp|12") == ("47", 12)
    for bad in ("47|12", "47|sp|x", "|sp|1", "47|sp|99999999999", "47|sp|1|2", "a|1|10|3"):
        with pytest.raises(errors.InvalidParameter):
            parse_set_preset_handle(bad)


# --- the command line ------------------------------------------------------------------------


def test_cli_saves_lists_and_deletes_set_presets(tmp_path: Path) -> None:
    from jobengine.assets.catalog import create_company
    from jobengine.store.db import Store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(db)
    migrate.prepare(store)
    with store.write() as session:
        create_company(session, "c7", "Seven")
    store.dispose()
    env = {**os.environ, "JOBENGINE_HOME": str(tmp_path / "var"), "DATABASE_URL": db}
    env["COLUMNS"] = "300"  # the table in full

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobengine.cli", "set-presets", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    saved = run(
        "save",
        "-c",
        "c7",
        "Views",
        "ImageSet",
        VIEWS,
        "--order",
        "view",
        "--views",
        "front,side,back",
        "--name-template",
        "{base}_set",
    )
    assert saved.returncode == 0, saved.stdout + saved.stderr
    handle = saved.stdout.strip()
    assert handle.startswith("c7|sp|")
    listed = run("list", "-c", "c7")
    assert (
        listed.returncode == 0 and "Views" in listed.stdout and "front,side,back" in listed.stdout
    )
    bad = run("save", "-c", "c7", "Bad", "ImageSet", r"^(?P<base>(a+)+)$")
    assert bad.returncode == 2 and "nests" in bad.stdout
    gone = run("delete", "-c", "c7", handle)
    assert gone.returncode == 0, gone.stdout
    assert "Views" not in run("list", "-c", "c7").stdout
    again = run("delete", "-c", "c7", handle)
    assert again.returncode == 2 and "unknown" in again.stdout


# --- real runs -------------------------------------------------------------------------------


def add_images(company: str, names: list[str], folder: str = "/shots") -> dict[str, str]:
    """One small JPEG asset per name; name -> handle."""
    runtime = get_runtime()
    handles = {}
    with tempfile.TemporaryDirectory() as tmp, runtime.store.write() as session:
        owner = company_by_handle(session, company)
        for n, name in enumerate(names):
            path = Path(tmp) / f"f{n}.jpg"
            Image.new("RGB", (8, 8), (n * 20 % 256, 90, 30)).save(path, "JPEG")
            asset = add_asset(session, runtime.storage, owner, path, folder=folder, name=name)
            handles[name] = asset.handle
    return handles


def raw_asset(company: str, name: str, folder: str = "/raw") -> str:
    """An Image asset with exactly this name (no cleaning), as a hostile catalog could hold."""
    with get_runtime().store.write() as session:
        owner = company_by_handle(session, company)
        place = ensure_folder(session, owner, folder)
        asset, _ = put_asset_file(session, place, name, "Image", key="raw/none.jpg", size=0)
        return asset.handle


def sets_request(
    company: str, assets: list[str], presets: list[str], name: str = "Sets", **extra: Any
) -> dict[str, Any]:
    job = {
        "assetHandleArray": {"items": assets},
        "readyForPublish": "false",
        "autoSetCreationOptions": {"autoSetsArray": {"items": presets}},
        "emailSetting": "None",
        **extra,
    }
    return {"companyHandle": company, "jobName": name, "automatedSetGenerationJob": job}


def sets_in(company: str, folder: str = "/") -> dict[str, Asset]:
    with get_runtime().store.read() as session:
        owner = company_by_handle(session, company)
        rows = session.scalars(
            select(Asset)
            .join(Folder, Folder.id == Asset.folder_id)
            .where(
                Asset.company_id == owner.id,
                Folder.path == folder,
                Asset.type.in_(["ImageSet", "SpinSet"]),
            )
        ).all()
    return {a.name: a for a in rows}


def members(set_asset: Asset) -> list[str]:
    with get_runtime().store.read() as session:
        return [a.name for a in set_members(session, set_asset)]


def test_image_sets_by_view_rerun_in_place_and_ready_for_publish(stack: Stack) -> None:
    company, _ = stack.company(0)
    names = ["shoe_front.jpg", "shoe_back.jpg", "shoe_side.jpg", "bag_front.jpg", "hat.jpg"]
    assets = add_images(company, names)
    preset = save_set_preset(
        company,
        "Views",
        "ImageSet",
        VIEWS,
        order="view",
        views=["front", "side", "back"],
        name_template="{base}_set",
    )
    log = stack.wait(company, submit(sets_request(company, list(assets.values()), [preset])))
    assert log.state == "Done"
    assert (log.total_file_count, log.file_success_count, log.file_error_count) == (2, 2, 0)
    rows = sorted((d.log_type, d.log_message) for d in log.details)
    assert ("UploadWarning", "no set preset matches hat.jpg") in rows
    assert ("UploadSuccess", "made ImageSet shoe_set with 3 member(s)") in rows
    assert ("UploadSuccess", "made ImageSet bag_set with 1 member(s)") in rows
    assert log.details[0].log_type == "BeginUpload" and log.details[-1].log_type == "EndUpload"
    [hat] = [d for d in log.details if "hat.jpg" in d.log_message]
    assert hat.asset_handle == assets["hat.jpg"]
    first = sets_in(company)
    assert sorted(first) == ["bag_set", "shoe_set"]
    assert members(first["shoe_set"]) == ["shoe_front.jpg", "shoe_side.jpg", "shoe_back.jpg"]
    assert members(first["bag_set"]) == ["bag_front.jpg"]
    assert all(s.publish_state == "NotMarkedForPublish" for s in first.values())
    assert log.output == {"sets": 2, "members": 4, "unmatched": 1}

    # a re-run replaces the sets in place: same handles, no duplicates; readyForPublish marks
    again = stack.wait(
        company,
        submit(
            sets_request(company, list(assets.values()), [preset], "Again", readyForPublish="true")
        ),
    )
    assert (again.file_success_count, again.file_update_count) == (2, 2)
    assert any(
        d.log_message == "replaced ImageSet shoe_set with 3 member(s)" for d in again.details
    )
    second = sets_in(company)
    assert {n: a.handle for n, a in second.items()} == {n: a.handle for n, a in first.items()}
    assert all(s.publish_state == "MarkedForPublish" for s in second.values())
    assert members(second["shoe_set"]) == ["shoe_front.jpg", "shoe_side.jpg", "shoe_back.jpg"]
    with get_runtime().store.read() as session:
        count = session.scalar(
            select(func.count())
            .select_from(SetMember)
            .where(SetMember.set_id.in_([a.id for a in second.values()]))
        )
    assert count == 4

    # the German log renders the new messages
    from jobengine import get_job_log_details

    [german] = get_job_log_details(company, job_handle=again.job_handle, locale="de")
    assert any(
        d.log_message == "ImageSet shoe_set durch 3 Mitglied(er) ersetzt" for d in german.details
    )


def test_spin_set_by_sequence_into_dest_folder(stack: Stack) -> None:
    company, _ = stack.company(0)
    order = [7, 3, 12, 1, 9, 5, 11, 2, 10, 4, 8, 6]
    assets = add_images(company, [f"spin_{i:02d}.jpg" for i in order])
    spin = save_set_preset(company, "Spin", "SpinSet", SEQUENCE, order="sequence")
    request = sets_request(company, list(assets.values()), [spin], destFolder="/spins/")
    log = stack.wait(company, submit(request))
    assert (log.state, log.file_success_count) == ("Done", 1)
    made = sets_in(company, "/spins")
    assert list(made) == ["spin"] and made["spin"].type == "SpinSet"
    assert members(made["spin"]) == [f"spin_{i:02d}.jpg" for i in range(1, 13)]
    assert log.output == {"sets": 1, "members": 12, "unmatched": 0}
    assert [p.name for p in get_set_presets(company)] == ["Spin"]


def test_submit_refuses_unknown_presets_foreign_assets_and_bad_folders(stack: Stack) -> None:
    company, _ = stack.company(0)
    other, foreign_assets = stack.company(1)
    mine = add_images(company, ["a_front.jpg"])
    handle = next(iter(mine.values()))
    preset = save_set_preset(company, "Views", "ImageSet", VIEWS)
    theirs = save_set_preset(other, "Theirs", "ImageSet", VIEWS)
    field = "automatedSetGenerationJob/autoSetCreationOptions/autoSetsArray"
    segment, number = parse_set_preset_handle(preset)
    cases: list[tuple[dict[str, Any], type[errors.IpsFault], str]] = [
        (
            sets_request(company, [handle], [f"{segment}|sp|{number + 999}"]),
            errors.InvalidParameter,
            field,
        ),
        (sets_request(company, [handle], ["not-a-handle"]), errors.InvalidParameter, field),
        (sets_request(company, [handle], [theirs]), errors.IllegalCompany, field),
        # another company's id under this company's segment names nothing here
        (
            sets_request(company, [handle], [f"{segment}|sp|{parse_set_preset_handle(theirs)[1]}"]),
            errors.IllegalCompany,
            field,
        ),
        (
            sets_request(company, [foreign_assets[0]], [preset]),
            errors.IllegalCompany,
            "automatedSetGenerationJob/assetHandleArray",
        ),
        (
            sets_request(company, ["a|1|1|999999999"], [preset]),
            errors.InvalidParameter,
            "automatedSetGenerationJob/assetHandleArray",
        ),
        (
            sets_request(company, [handle], [preset], destFolder="/a/../../b"),
            errors.InvalidParameter,
            "automatedSetGenerationJob/destFolder",
        ),
        (
            sets_request(company, [handle], [preset], destFolder="/a\x01b"),
            errors.InvalidParameter,
            "automatedSetGenerationJob/destFolder",
        ),
    ]
    for request, fault, path in cases:
        with pytest.raises(fault) as caught:
            submit(request)
        assert caught.value.field == path, (request, caught.value)
    with pytest.raises(errors.LimitExceeded):
        submit(sets_request(company, [handle], [f"{segment}|sp|{n}" for n in range(1, 102)]))
    # a deleted preset is unknown too
    delete_set_preset(company, preset)
    with pytest.raises(errors.InvalidParameter):
        submit(sets_request(company, [handle], [preset]))
    assert kind_for("automatedSetGenerationJob").slug == "automated_set_generation"


def test_hostile_names_and_collisions_do_not_break_the_run(stack: Stack) -> None:
    company, _ = stack.company(0)
    metachars = "a(b)*[c]$^.{base}"
    handles = [
        raw_asset(company, f"{metachars}_front.jpg"),
        raw_asset(company, f"{metachars}_back.jpg"),
        raw_asset(company, "ü日本_front.png"),
        raw_asset(company, "y" * 400 + "_front.jpg"),
        raw_asset(company, "z" * 198 + "_side.jpg"),
        raw_asset(company, "taken_front.jpg"),
    ]
    # an Image named like a set to be made is in the way of that set
    with get_runtime().store.write() as session:
        owner = company_by_handle(session, company)
        root = ensure_folder(session, owner, "/")
        put_asset_file(session, root, "taken set", "Image", key="raw/x.jpg", size=0)
    preset = save_set_preset(
        company,
        "V",
        "ImageSet",
        VIEWS,
        order="view",
        views=["front", "back", "side"],
        name_template="{base} set",
    )
    log = stack.wait(company, submit(sets_request(company, handles, [preset])))
    assert log.state == "Done"
    by_message = {d.log_message: d.log_type for d in log.details}
    # metacharacters are matched as text; the set's name follows the upload name rules
    odd = safe_name(f"{metachars} set")
    assert by_message[f"made ImageSet {odd} with 2 member(s)"] == "UploadSuccess"
    assert by_message[f"made ImageSet {safe_name('ü日本 set')} with 1 member(s)"] == "UploadSuccess"
    # a name too long to match is reported unmatched
    assert by_message[f"no set preset matches {'y' * 400}_front.jpg"] == "UploadWarning"
    errors_ = [d.log_message for d in log.details if d.log_type == "UploadError"]
    assert any(m.startswith(f"cannot make set {'z' * 198} set: the set name") for m in errors_)
    assert any("taken set" in m and "in the way" in m for m in errors_), errors_
    assert (log.file_success_count, log.file_error_count) == (2, 2)
    made = sets_in(company)
    assert members(made[odd]) == [f"{metachars}_front.jpg", f"{metachars}_back.jpg"]
