"""The worker pool: crashes, hangs, memory caps, isolation, limits, threads, the default pool."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobengine.errors import ConfigurationError, LimitExceeded
from jobengine.imaging import (
    ConversionFailed,
    ConversionPool,
    ConversionTimeout,
    Limits,
    default_pool,
    parse_modifiers,
    shutdown_default_pool,
)
from jobengine.imaging import pool as pool_module
from tests.support.image_samples import Samples

HERE = Path(__file__).parent  # fake_engines.py, for the workers' PYTHONPATH

MiB = 1024 * 1024
FAKE_LIMITS = Limits(memory_bytes=768 * MiB, timeout_seconds=5, max_tasks_per_worker=3)


@pytest.fixture(scope="module")
def fake_pool() -> Iterator[ConversionPool]:
    """One worker running tests/imaging/fake_engines.py (behaviour chosen by the base name)."""
    env = {"PYTHONPATH": str(HERE), "JOBENGINE_TEST_SECRET": "leak"}
    with ConversionPool(1, FAKE_LIMITS, engine="fake_engines:engine", extra_env=env) as p:
        yield p


def fake(pool: ConversionPool, out_dir: Path, behaviour: str, **kw: float) -> list[Path]:
    src = out_dir.parent / "src.bin"
    src.write_bytes(b"x")
    return pool.convert(src, out_dir, parse_modifiers(""), behaviour, **kw)


def report(pool: ConversionPool, out_dir: Path) -> dict[str, object]:
    (path,) = fake(pool, out_dir, "report")
    data: dict[str, object] = json.loads(path.read_text())
    path.unlink()
    return data


def test_worker_environment_is_isolated(fake_pool: ConversionPool, out_dir: Path) -> None:
    os.environ["JOBENGINE_TEST_PARENT_ONLY"] = "secret"
    try:
        seen = report(fake_pool, out_dir)
    finally:
        del os.environ["JOBENGINE_TEST_PARENT_ONLY"]
    env = seen["env"]
    assert isinstance(env, dict)
    assert Path(env["MAGICK_CONFIGURE_PATH"], "policy.xml").is_file()
    assert env["MAGICK_THREAD_LIMIT"] == "1" and env["OMP_NUM_THREADS"] == "1"
    # heap reuse across images instead of mmap/munmap (and page faults) per pixel cache
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 * MiB)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(64 * MiB)
    assert env["HOME"] == env["TMPDIR"] == env["MAGICK_TEMPORARY_PATH"] == seen["cwd"]
    assert "JOBENGINE_TEST_PARENT_ONLY" not in env  # nothing else leaks from the parent
    assert seen["rlimit_as"] == FAKE_LIMITS.memory_bytes
    assert seen["rlimit_core"] == 0
    assert seen["pid"] != os.getpid()


@pytest.mark.parametrize(("behaviour", "words"), [("abort", "SIGABRT"), ("exit", "exit status 1")])
def test_crashing_worker_is_replaced(
    fake_pool: ConversionPool, out_dir: Path, behaviour: str, words: str
) -> None:
    before = report(fake_pool, out_dir)["pid"]
    with pytest.raises(ConversionFailed, match="worker crashed") as info:
        fake(fake_pool, out_dir, behaviour)
    assert words in info.value.reason
    assert report(fake_pool, out_dir)["pid"] != before


def test_memory_cap(fake_pool: ConversionPool, out_dir: Path) -> None:
    with pytest.raises(ConversionFailed, match="MemoryError"):
        fake(fake_pool, out_dir, "memory")
    assert report(fake_pool, out_dir)["pid"]  # a MemoryError does not kill the worker


def test_hang_is_killed_and_partial_output_removed(
    fake_pool: ConversionPool, out_dir: Path
) -> None:
    with pytest.raises(ConversionTimeout):
        fake(fake_pool, out_dir, "hang", timeout=0.5)
    assert list(out_dir.iterdir()) == []  # page 1 and the .part file are gone
    assert report(fake_pool, out_dir)["pid"]


def test_workers_are_recycled_after_max_tasks(fake_pool: ConversionPool, out_dir: Path) -> None:
    pids = [report(fake_pool, out_dir)["pid"] for _ in range(2 * FAKE_LIMITS.max_tasks_per_worker)]
    assert len(set(pids)) >= 2


def test_policy_must_be_in_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policy.xml").write_text("<policymap></policymap>\n")
    monkeypatch.setenv("JOBENGINE_IMAGING_POLICY_DIR", str(tmp_path))
    with ConversionPool(1) as p, pytest.raises(ConfigurationError, match="policy is not in force"):
        p.convert(tmp_path / "x.jpg", tmp_path, parse_modifiers(""), "x")
    monkeypatch.setenv("JOBENGINE_IMAGING_POLICY_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"no ImageMagick policy\.xml"):
        pool_module.policy_dir()


def test_limits(samples: Samples, out_dir: Path) -> None:
    limits = Limits(max_file_bytes=200_000, max_source_pixels=200_000, max_output_pixels=50_000,
                    max_pdf_pages=1)  # fmt: skip
    with ConversionPool(1, limits) as p:
        with pytest.raises(ConversionFailed, match="max_file_bytes"):
            p.convert(samples.big_jpeg, out_dir, parse_modifiers(""), "big.jpg")
        with pytest.raises(ConversionFailed, match="640x480 = 307200 pixels"):
            p.convert(samples.jpeg, out_dir, parse_modifiers(""), "photo.jpg")
        with pytest.raises(LimitExceeded, match="MaxPix"):
            p.convert(samples.tiff, out_dir, parse_modifiers("wid=300"), "scan.tif")
        with pytest.raises(ConversionFailed, match="2 pages; at most 1"):
            p.convert(samples.pdf, out_dir, parse_modifiers(""), "two.pdf")
        assert p.convert(samples.tiff, out_dir, parse_modifiers("wid=200"), "scan.tif")
        with pytest.raises(ConversionFailed, match="cannot be read"):
            p.convert(out_dir / "missing.jpg", out_dir, parse_modifiers(""), "missing.jpg")
        with pytest.raises(ConversionFailed, match="not a regular file"):
            p.convert(out_dir, out_dir, parse_modifiers(""), "dir")


def test_unsupported_output(pool: ConversionPool, samples: Samples, out_dir: Path) -> None:
    from jobengine.errors import NotSupported

    with pytest.raises(NotSupported, match="'eps'"):
        pool.convert(samples.jpeg, out_dir, parse_modifiers("fmt=eps"), "x.jpg")
    with pytest.raises(NotSupported, match="mac"):
        pool.convert(samples.jpeg, out_dir, parse_modifiers("fmt=gif&quantize=mac"), "x.jpg")
    with pytest.raises(NotSupported, match="not installed"):
        pool.convert(samples.jpeg, out_dir, parse_modifiers("icc=NoSuchProfile"), "x.jpg")
    assert list(out_dir.iterdir()) == []


def test_threads_share_the_pool(pool: ConversionPool, samples: Samples, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    outputs: list[Path] = []

    def work(n: int) -> None:
        target = tmp_path / f"t{n}"
        target.mkdir()
        try:
            for i in range(3):
                req = parse_modifiers(f"fmt=png&wid={20 + n + i}")
                outputs.extend(pool.convert(samples.jpeg, target, req, f"p{i}.jpg"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(outputs) == 12 and all(p.is_file() for p in outputs)


def test_a_scratch_conversion_writes_the_same_files_unflushed(
    samples: Samples, tmp_path: Path
) -> None:
    """``durable=False`` (an export's staged conversions, made again if lost) skips the flush
    to disk before the rename; the files, their names and bytes are those of a durable one."""
    made = {}
    with ConversionPool(1) as p:
        for durable in (True, False):
            out = tmp_path / f"durable-{durable}"
            out.mkdir()
            request = parse_modifiers("fmt=png&wid=200")
            paths = p.convert(samples.pdf, out, request, "doc.pdf", durable=durable)
            made[durable] = [(path.name, path.read_bytes()) for path in paths]
            assert sorted(f.name for f in out.iterdir()) == sorted(n for n, _ in made[durable])
    assert len(made[True]) == 2 and made[False] == made[True]


def test_closed_pool_refuses(samples: Samples, out_dir: Path) -> None:
    p = ConversionPool(1)
    p.close()
    p.close()
    with pytest.raises(ConversionFailed, match="closed"):
        p.convert(samples.jpeg, out_dir, parse_modifiers(""), "x.jpg")
    with pytest.raises(ConfigurationError):
        ConversionPool(0)


def test_default_pool(monkeypatch: pytest.MonkeyPatch, samples: Samples, out_dir: Path) -> None:
    monkeypatch.setenv("JOBENGINE_IMAGING_WORKERS", "1")
    monkeypatch.setenv("JOBENGINE_IMAGING_TIMEOUT_SECONDS", "42")
    shutdown_default_pool()
    try:
        first = default_pool()
        assert first is default_pool() and first.limits.timeout_seconds == 42
        (path,) = pool_module.convert(samples.jpeg, out_dir, parse_modifiers("wid=10"), "d.jpg")
        assert path.name == "d.jpg"
    finally:
        shutdown_default_pool()
    assert default_pool() is not first
    shutdown_default_pool()


def test_limits_from_env() -> None:
    limits = Limits.from_env(
        {"JOBENGINE_IMAGING_MAX_PDF_PAGES": "7", "JOBENGINE_IMAGING_PDF_DPI": "72.5"}
    )
    assert (limits.max_pdf_pages, limits.pdf_dpi) == (7, 72.5)
    with pytest.raises(ConfigurationError, match="not a number"):
        Limits.from_env({"JOBENGINE_IMAGING_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(ConfigurationError, match="positive"):
        Limits(max_pdf_pages=0)


# A resize holds the source, one filtered pass and the result in ImageMagick's Q16 pixel cache,
# up to 8 bytes per pixel each; past the memory limit they must fit the memory-mapped cache, or
# ImageMagick reads and writes them row by row on disk, hundreds of times slower.
WORST_RESIZE_CACHE = 3 * 100_000_000 * 8


def _policy_bytes(name: str) -> int:
    import re

    text = (pool_module.policy_dir() / "policy.xml").read_text()
    match = re.search(rf'name="{name}" value="(\d+)GiB"', text)
    assert match, name
    return int(match.group(1)) * 1024 * MiB


def test_default_limits_hold_a_100_megapixel_resize_in_the_mapped_cache() -> None:
    limits = Limits()
    assert limits.max_source_pixels == limits.max_output_pixels == 100_000_000
    for name, mine in (("map", limits.magick_map_bytes), ("disk", limits.magick_disk_bytes)):
        assert min(mine, _policy_bytes(name)) >= WORST_RESIZE_CACHE, name
    assert limits.memory_bytes >= limits.magick_map_bytes + 768 * MiB  # maps count in RLIMIT_AS


@pytest.mark.slow
def test_a_100_megapixel_jpeg_shrinks_by_less_than_2x_with_default_limits(
    tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    src = tmp_path / "mp100.jpg"
    gradient = Image.linear_gradient("L").resize((12240, 8160))
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient)).save(
        src, "JPEG", quality=85
    )
    del gradient
    with ConversionPool(1, Limits()) as p:  # the default 120 s timeout per image
        (result,) = p.convert(src, out_dir, parse_modifiers("fmt=jpeg&wid=8000"), "mp100.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our own output, read for its size
    with Image.open(result) as img:
        assert img.size == (8000, 5333)
