"""OptimizeImagesJob through submit() and a real worker on SQLite and PostgreSQL: a pyramid TIFF
per image not yet optimized, a second run skips them, a changed image is optimized again, a
corrupt image fails its own item."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sqlalchemy import inspect, text

from jobengine import submit
from jobengine.kinds import PlannedItem, kind_for
from jobengine.kinds.optimize_images import is_optimized, optimized_key
from jobengine.runtime import get_runtime
from jobengine.store import migrate
from jobengine.store.db import Store
from tests.support.helpers import optimize_request
from tests.support.lookups import asset, pyramid_levels, run_context
from tests.support.processing_samples import add_files, corrupt_jpeg, pdf_pages, photo_file
from tests.support.stack import Stack, store_url


def test_optimize_writes_pyramids_once_and_again_when_an_image_changes(stack: Stack) -> None:
    company, _ = stack.company(0)
    handles = add_files(
        company,
        {
            "a.jpg": partial(photo_file, size=(640, 480), shade=1),
            "b.jpg": partial(photo_file, size=(300, 200), shade=2),
            "broken.jpg": corrupt_jpeg,
            "doc.pdf": partial(pdf_pages, pages=1),  # not an image: not planned
        },
        folder="/pics",
    )
    log = stack.wait(company, submit(optimize_request(company)))
    assert log.state == "Done"
    assert (log.total_file_count, log.file_success_count, log.file_error_count) == (3, 2, 1)
    assert log.details[0].log_type == "BeginReoptimize"
    assert log.details[-1].log_type == "endReoptimize"
    rows = {d.asset_name: d for d in log.details if d.asset_name}
    assert rows["a.jpg"].log_type == "ReoptimizeSuccess"
    assert rows["a.jpg"].log_message == "optimized a.jpg"
    assert rows["broken.jpg"].log_type == "ReoptimizeFailure"
    assert rows["broken.jpg"].log_message.startswith("cannot optimize broken.jpg: ")
    assert log.output == {"optimized": 2}

    a, b = asset(handles["a.jpg"]), asset(handles["b.jpg"])
    assert a.optimized_key == optimized_key(company, a.id) and is_optimized(a)
    assert is_optimized(b) and not is_optimized(asset(handles["broken.jpg"]))
    levels = pyramid_levels(str(a.optimized_key))
    assert [size for size, _ in levels] == [(640, 480), (320, 240), (160, 120), (80, 60)]
    assert {tile for _, tile in levels} == {256}
    assert len(pyramid_levels(str(b.optimized_key))) == 3  # 300x200, 150x100, 75x50
    assert not list(get_runtime().storage.path(f"{company}/optimized").glob(".*"))

    # a second run plans only the image that never optimized
    again = stack.wait(company, submit(optimize_request(company, "Optimize again")))
    assert (again.total_file_count, again.file_error_count) == (1, 1)
    assert [d.asset_name for d in again.details if d.asset_name] == ["broken.jpg"]
    assert asset(handles["a.jpg"]).optimized_version == a.optimized_version

    # a new file for b.jpg: optimized again, from the new file
    add_files(company, {"b.jpg": partial(photo_file, size=(200, 160), shade=3)}, folder="/pics")
    assert not is_optimized(asset(handles["b.jpg"]))
    third = stack.wait(company, submit(optimize_request(company, "Optimize changed")))
    assert (third.total_file_count, third.file_success_count) == (2, 1)
    changed = asset(handles["b.jpg"])
    assert is_optimized(changed)
    assert pyramid_levels(str(changed.optimized_key))[0][0] == (200, 160)


def test_an_item_done_twice_skips_the_second_time(stack: Stack) -> None:
    company, _ = stack.company(0)
    handles = add_files(company, {"c.jpg": photo_file})
    log = stack.wait(company, submit(optimize_request(company)))
    assert log.file_success_count == 1
    key = str(asset(handles["c.jpg"]).optimized_key)
    written = get_runtime().storage.path(key).stat().st_mtime_ns
    outcome = kind_for("optimizeImagesJob").process(
        run_context(company, log.job_name), PlannedItem(key=handles["c.jpg"])
    )
    assert (outcome.status, outcome.log_type) == ("success", "ReoptimizeSuccess")
    assert outcome.message_id == "{name} is already optimized"
    assert get_runtime().storage.path(key).stat().st_mtime_ns == written


def test_a_company_without_images_has_nothing_to_do(stack: Stack) -> None:
    company, _ = stack.company(0)
    log = stack.wait(company, submit(optimize_request(company)))
    assert (log.state, log.total_file_count) == ("Done", 0)
    assert [d.log_type for d in log.details] == [
        "BeginReoptimize",
        "OriginalJobName",
        "endReoptimize",
    ]
    assert log.details[0].log_message == "job Optimize started"


def test_an_older_store_gets_the_new_columns_and_table(
    store_only: dict[str, str], tmp_path: Path
) -> None:
    backend = "postgres" if "postgresql" in store_only["DATABASE_URL"] else "sqlite"
    url = store_url(backend, tmp_path)
    old = Store(url)
    migrate.prepare(old)
    with old.engine.begin() as conn:  # a store made before migrations: the assets table as it
        conn.execute(text("DROP TABLE alembic_version"))  # was, and no set_members
        conn.execute(text("DROP TABLE set_members"))
        for column in ("optimized_key", "optimized_version", "derived_from"):
            conn.execute(text(f"ALTER TABLE assets DROP COLUMN {column}"))
    old.dispose()
    new = Store(url)
    migrate.prepare(new)
    found = inspect(new.engine)
    columns = {c["name"] for c in found.get_columns("assets")}
    assert {"optimized_key", "optimized_version", "derived_from"} <= columns
    assert "set_members" in found.get_table_names()
    new.dispose()
