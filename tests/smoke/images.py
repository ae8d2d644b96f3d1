"""Our image and the base images of the container tests; names shared with docker/.

The bases are the public images docker/Dockerfile and docker/compose.yaml name by default, or
their local stand-ins (docker/local/engine.sh builds them from Debian's packages) where those are
present, as on machines that do not reach Docker Hub. ``JOBENGINE_TEST_<NAME>_IMAGE`` overrides.

Images are kept between runs (the engine's layer cache makes a rebuild of unchanged code a
matter of seconds); only the dangling ones our builds leave (labelled) are pruned.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# What docker/Dockerfile copies, and the Dockerfile: nothing else is sent to the engine.
CONTEXT = ("pyproject.toml", "README.md", "jobengine", "tasks", "config", "docker/Dockerfile")
LABEL = "org.jobengine.test-build"
TAG = "jobengine:test"
# jobengine 0.1.0, the last release without migrations (tests/store/test_migrations.py's oldest
# schema): the "old image" of the upgrade test is built from its source, taken from git.
OLD_RELEASE = "de79425f0e86849d79ddac1a5d9aef6d2f5814bf"
OLD_TAG = "jobengine:test-0.1.0"

PUBLIC = {
    "python": "python:3.11-slim-bookworm",
    "redis": "redis:7.4-bookworm",
    "postgres": "postgres:16-bookworm",
}
LOCAL = {name: f"jobengine-local/{name}" for name in PUBLIC}


def base_image(client: Any, name: str) -> str:
    """The image to use for ``name`` (python, redis, postgres) on this engine."""
    chosen = os.environ.get(f"JOBENGINE_TEST_{name.upper()}_IMAGE")
    if chosen:
        return chosen
    for candidate in (LOCAL[name], PUBLIC[name]):
        try:
            client.images.get(candidate)
            return candidate
        except Exception:
            continue
    return PUBLIC[name]  # the engine pulls it (Docker Hub reachable)


def _copy_context(source: Path, target: Path) -> None:
    for name in CONTEXT:
        src, dst = source / name, target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)


def old_release_source(target: Path) -> Path:
    """0.1.0's files (``git archive``), with today's docker/Dockerfile: that release's own
    Dockerfile had no PYTHON_IMAGE argument, so it could not build where Docker Hub is not
    reachable; the image's contents (its code and dependencies) are 0.1.0's."""
    names = [n for n in CONTEXT if not n.startswith("docker/")]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", OLD_RELEASE, *names],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "docker").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "docker" / "Dockerfile", target / "docker" / "Dockerfile")
    return target


def build(client: Any, source: Path, context: Path, tag: str) -> tuple[Any, float]:
    """docker/Dockerfile of ``source`` built as ``tag``; returns the image and the seconds."""
    _copy_context(source, context)
    started = time.monotonic()
    image, _ = client.images.build(
        path=str(context),
        dockerfile="docker/Dockerfile",
        tag=tag,
        buildargs={"PYTHON_IMAGE": base_image(client, "python")},
        labels={LABEL: "1"},
        rm=True,
        forcerm=True,
    )
    return image, time.monotonic() - started


def prune_test_images(client: Any) -> None:
    """Dangling images of earlier test builds (a tag moved to a newer build)."""
    client.images.prune(filters={"dangling": True, "label": LABEL})
