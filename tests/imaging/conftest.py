"""Fixtures for the imaging tests: the generated inputs (``tests/support/image_samples.py``) and a
session-wide conversion pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from jobengine.imaging import ConversionPool, Limits, parse_modifiers
from tests.support.image_samples import Samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return Samples(tmp_path_factory.mktemp("imaging-samples"))


@pytest.fixture(scope="session")
def pool() -> Iterator[ConversionPool]:
    """Two workers shared by the whole session (tests must leave them usable)."""
    with ConversionPool(2, Limits(timeout_seconds=60)) as p:
        yield p


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def run(pool: ConversionPool, out_dir: Path) -> Callable[..., Path]:
    """``run(src, query, base_name=None)`` -> the single output path."""

    def convert(src: Path, query: str, base_name: str | None = None) -> Path:
        paths = pool.convert(src, out_dir, parse_modifiers(query), base_name or src.name)
        assert len(paths) == 1, paths
        assert not list(out_dir.glob(".*.part"))
        return paths[0]

    return convert


@pytest.fixture
def assert_healthy(pool: ConversionPool, samples: Samples, tmp_path: Path) -> Callable[[], None]:
    """``assert_healthy()``: the pool still converts a good image (call it after a failure)."""

    def check() -> None:
        target = tmp_path / "health"
        target.mkdir(exist_ok=True)
        query = parse_modifiers("fmt=png&wid=32")
        (result,) = pool.convert(samples.jpeg, target, query, "ok.jpg")
        with Image.open(result) as img:
            assert img.size == (32, 24)
        result.unlink()

    return check
