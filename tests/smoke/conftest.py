"""pytest-celery for tests/smoke only, and only when a Docker engine answers.

pytest-celery's plugin is disabled for the whole suite (``-p no:celery`` in pyproject.toml):
importing it registers its demo tasks (``pytest_celery.vendors.worker.tasks.*``) in every Celery
app of the process, jobengine's included. Here its fixtures are imported into this conftest, so
they exist for tests/smoke only, and only once a Docker engine has answered; otherwise nothing of
it is imported and the smoke tests skip with :data:`SKIP_REASON`.

pytest-docker-tools' plugin (pytest-celery's dependency: the ``docker_client`` fixture, the
``--reuse-containers`` option its container factories read) stays auto-loaded: importing it
changes nothing else.
"""

from __future__ import annotations

from importlib.util import find_spec


def _skip_reason() -> str | None:
    """Why the smoke tests cannot run here, or None."""
    if find_spec("pytest_celery") is None:
        return "pytest-celery is not installed (pip install 'pytest-celery[redis]')"
    import docker

    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine answers: {type(exc).__name__}: {exc}"
    return None


SKIP_REASON = _skip_reason()

if SKIP_REASON is None:
    from pytest_celery import *  # noqa: F403 (its fixtures, for this directory only)
