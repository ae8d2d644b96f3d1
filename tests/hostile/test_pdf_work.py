"""PDFs whose work is out of proportion to their size: the work a document may cost is bounded
(pixels per page, pixels and seconds per document), and stopJob ends a rip in flight: the
helper is killed, nothing it wrote stays, and the run ends Stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from jobengine import delete_job, get_job_log_details, stop_job, submit
from jobengine.errors import RunStopped
from jobengine.imaging import ConversionFailed, ConversionPool, ConversionTimeout, Limits
from jobengine.runtime import get_runtime
from jobengine.store.schema import Asset, Company
from tests.support.helpers import rip_request
from tests.support.processing_samples import add_files, pdf_pages
from tests.support.stack import Stack

LETTER = (612.0, 792.0)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_tiny_pdf_of_huge_pages_is_refused_before_any_page(tmp_path: Path) -> None:
    pdf = pdf_pages(tmp_path / "huge.pdf", 499, size=(14400, 14400), image=False)
    assert pdf.stat().st_size < 100_000  # the 60 KB file
    out = tmp_path / "out"
    out.mkdir()
    with ConversionPool(1) as pool:
        started = time.monotonic()
        with pytest.raises(ConversionFailed, match=r"megapixels at 600 dpi; at most 2000"):
            pool.rip_pdf(pdf, out, "page", dpi=600)
        assert time.monotonic() - started < 30  # refused from the page sizes, not rendered
    assert list(out.iterdir()) == []


def test_a_page_is_capped_in_pixels(tmp_path: Path) -> None:
    pdf = pdf_pages(tmp_path / "poster.pdf", 1, size=(14400, 7200), image=False)
    out = tmp_path / "out"
    out.mkdir()
    with ConversionPool(1, Limits(max_pdf_page_pixels=1_000_000)) as pool:
        (page,) = pool.rip_pdf(pdf, out, "page", dpi=600)
    with Image.open(page) as img:
        assert img.width * img.height <= 1_000_000
        assert abs(img.width / img.height - 2) < 0.01


def test_a_document_has_a_time_limit_of_its_own(tmp_path: Path) -> None:
    pdf = pdf_pages(tmp_path / "long.pdf", 40, size=LETTER, image=False)
    out = tmp_path / "out"
    out.mkdir()
    with ConversionPool(1, Limits(max_pdf_seconds=1.0)) as pool:
        with pytest.raises(ConversionTimeout, match="document took longer than 1 s"):
            pool.rip_pdf(pdf, out, "page", dpi=600)
        assert list(out.iterdir()) == []
        (page,) = pool.rip_pdf(pdf, out, "again", dpi=36, first_page_only=True)  # still usable
        assert page.name == "again-1.jpg"


@pytest.mark.parametrize("when", ["after a page", "mid-page"])
def test_a_cancelled_rip_kills_its_helper_and_leaves_nothing(tmp_path: Path, when: str) -> None:
    pdf = pdf_pages(tmp_path / "long.pdf", 40, size=LETTER, image=False)
    out = tmp_path / "out"
    out.mkdir()
    with ConversionPool(1) as pool:
        pool.rip_pdf(pdf, out, "warm", dpi=36, first_page_only=True)  # the helper is up
        (pid,) = pool.worker_pids()
        for stale in out.iterdir():
            stale.unlink()
        asked: list[float] = []
        started = time.monotonic()

        def cancelled() -> bool:
            asked.append(time.monotonic())
            if when == "after a page":
                return any(out.glob("page-*.jpg"))
            return time.monotonic() - started > 1.5

        with pytest.raises(RunStopped):
            pool.rip_pdf(pdf, out, "page", dpi=600, cancelled=cancelled)
        assert time.monotonic() - started < 30  # 40 pages at 600 dpi would take minutes
        assert not _alive(pid)
        assert list(out.iterdir()) == []  # no page, no temporary file
        (page,) = pool.rip_pdf(pdf, out, "next", dpi=36, first_page_only=True)
        assert page.exists()


def _run_handle(company: str, job_handle: str) -> str:
    """The handle of the job's run (a deleted job keeps its runs and their logs)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = get_job_log_details(company, job_handle=job_handle)
        if logs:
            return str(logs[0].job_handle)
        time.sleep(0.1)
    raise AssertionError("the run never started")


def _helpers(stack: Stack) -> set[int]:
    """The imaging helpers under the stack's Celery workers."""
    found: set[int] = set()
    for worker in stack.workers:
        for child in worker.children():
            path = Path(f"/proc/{child}/task/{child}/children")
            for pid in path.read_text().split() if path.exists() else []:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"jobengine.imaging.worker" in cmdline:
                    found.add(int(pid))
    return found


def _pages(company: str) -> list[str]:
    with get_runtime().store.read() as session:
        return list(
            session.scalars(
                select(Asset.name)
                .join(Company, Company.id == Asset.company_id)
                .where(Company.handle == company, Asset.type != "Pdf")
            )
        )


@pytest.mark.parametrize("control", [stop_job, delete_job])
def test_stop_and_delete_end_a_rip_in_flight(stack: Stack, control: Callable[..., None]) -> None:
    company, _ = stack.company(0)
    long_pdf = partial(pdf_pages, pages=50, size=LETTER, image=False)
    handles = add_files(company, {"long.pdf": long_pdf})
    storage = get_runtime().storage
    with get_runtime().store.read() as session:
        pdf_id = session.scalar(select(Asset.id).where(Asset.handle == handles["long.pdf"]))
    folder = storage.path(f"{company}/pages/{pdf_id}")
    handle = submit(rip_request(company, list(handles.values()), resolution=600))
    run_handle = _run_handle(company, handle)
    deadline = time.monotonic() + 60
    while not any(folder.rglob("page-*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(folder.rglob("page-*.jpg")), "the rip never wrote a page"
    busy = _helpers(stack)
    stopped_at = time.monotonic()
    control(company, handle)
    log = stack.wait(company, run_handle, timeout=60)
    took = time.monotonic() - stopped_at
    assert log.state == "Stopped", [d.log_message for d in log.details]
    assert took < 30  # the 50 pages would take minutes
    messages = [d.log_message for d in log.details]
    assert f"{handles['long.pdf']} cancelled: job stopped" in messages
    assert (log.file_success_count, log.file_error_count) == (0, 0)
    assert _pages(company) == []  # nothing recorded
    assert not any(p.is_file() for p in folder.rglob("*"))  # nothing stored
    # the helper that was rendering was killed (the pool starts a fresh one when next needed);
    # an idle helper of the worker's other process may live on
    assert busy and any(not _alive(pid) for pid in busy), busy


def test_a_stop_flag_that_cannot_be_read_lets_the_work_go_on(tmp_path: Path) -> None:
    """The store down for a while: the conversion is not stopped, nor failed, by it."""
    pdf = pdf_pages(tmp_path / "short.pdf", 3, size=LETTER, image=False)
    out = tmp_path / "out"
    out.mkdir()
    asked: list[int] = []

    def unreadable() -> bool:
        asked.append(1)
        raise RuntimeError("the job store is unreachable")

    with ConversionPool(1) as pool:
        pages = pool.rip_pdf(pdf, out, "page", dpi=72, cancelled=unreadable)
    assert [p.name for p in pages] == ["page-1.jpg", "page-2.jpg", "page-3.jpg"] and asked


def test_an_interrupt_while_converting_never_returns_a_busy_helper(tmp_path: Path) -> None:
    pdf = pdf_pages(tmp_path / "long.pdf", 40, size=LETTER, image=False)
    out = tmp_path / "out"
    out.mkdir()

    def interrupted() -> bool:
        raise KeyboardInterrupt  # as a signal or a task time limit arriving mid-conversion

    with ConversionPool(1) as pool:
        pool.rip_pdf(pdf, out, "warm", dpi=36, first_page_only=True)
        (pid,) = pool.worker_pids()
        with pytest.raises(KeyboardInterrupt):
            pool.rip_pdf(pdf, out, "page", dpi=600, cancelled=interrupted)
        assert not _alive(pid)
        assert sorted(p.name for p in out.iterdir()) == ["warm-1.jpg"]
        (page,) = pool.rip_pdf(pdf, out, "next", dpi=36, first_page_only=True)  # a fresh helper
        assert page.name == "next-1.jpg"
