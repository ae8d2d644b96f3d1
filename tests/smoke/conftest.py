"""The container tests: a Docker engine, our image, and pytest-celery for tests/smoke only.

``make test`` (and CI) first runs docker/local/engine.sh: it installs docker.io when missing,
starts dockerd when no engine answers and builds the local base images. When Docker cannot be
had on a machine it says why in var/docker/unavailable, and these tests skip with that reason.
Under CI, a machine that did not say so must run them: a missing engine there is an error.

pytest-celery's plugin is disabled for the whole suite (``-p no:celery`` in pyproject.toml):
importing it registers its demo tasks (``pytest_celery.vendors.worker.tasks.*``) in every Celery
app of the process, jobengine's included. Here its fixtures are imported into this conftest, so
they exist for tests/smoke only, and only once a Docker engine has answered.

pytest-docker-tools' plugin (pytest-celery's dependency: the ``docker_client`` fixture, the
``--reuse-containers`` option its container factories read) stays auto-loaded: importing it
changes nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.smoke.engine import ROOT, SKIP_REASON

if SKIP_REASON is None:
    from pytest_celery import *  # noqa: F403 (its fixtures, for this directory only)


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A docker-py client of the engine; dangling images of our test builds go at the end."""
    import docker
    from tests.smoke.images import prune_test_images
    from tests.smoke.stale import sweep

    client = docker.from_env(timeout=600)
    for leftover in sweep(client):
        print(f"removed {leftover}, left by an interrupted earlier run")
    yield client
    prune_test_images(client)
    client.close()


@pytest.fixture(scope="session")
def jobengine_image(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """docker/Dockerfile of this tree, built from a context holding only what it copies."""
    from tests.smoke.images import TAG, build

    image, seconds = build(engine, ROOT, tmp_path_factory.mktemp("context"), TAG)
    print(f"\nbuilt {TAG} in {seconds:.1f} s")
    return image
