"""The embedded Redis: importing jobengine starts nothing; using Celery starts it, once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from jobengine.embedded import backend_url, broker_url, ensure_redis, stop_redis
from jobengine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# Imports everything a producer, the web service and the CLI import, reports whether anything
# was started, then reads Celery's configuration (as sending a task does) and pings the server.
PROBE = """
import os, sys
import jobengine, jobengine.cli, jobengine.web, jobengine.celery_app as celery_app
import jobengine.tasks.export, jobengine.tasks.image_serving_publish
home = os.environ["JOBENGINE_HOME"]
print("after-import", sorted(os.listdir(home)) if os.path.isdir(home) else [])
print("configured", celery_app.app.configured)
url = celery_app.app.conf.broker_url
import redis
client = redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
print("after-conf", client.ping())
"""


def _probe_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBENGINE_BROKER_URL")}
    return {**env, "JOBENGINE_HOME": str(home), "PYTHONPATH": str(ROOT)}


def test_importing_starts_nothing_and_reading_the_celery_configuration_starts_the_server(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env({"JOBENGINE_HOME": str(home)})
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=_probe_env(home), capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert "after-import []" in lines, lines  # no socket, no pid file, not even the folder
        assert "configured False" in lines
        assert "after-conf True" in lines
        # The server outlives the process that started it, for the next one to share.
        sock = home / "redis" / "redis.sock"
        assert redis.Redis(unix_socket_path=str(sock)).ping()
        assert ensure_redis(settings) is False  # already answering: not started twice
    finally:
        stop_redis(settings)
    assert not _answers(home)


def _answers(home: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(home / "redis" / "redis.sock")).ping())
    except (redis.RedisError, OSError):
        return False


def test_urls_are_addresses_only_and_configured_redis_is_never_embedded(tmp_path: Path) -> None:
    embedded = Settings.from_env({"JOBENGINE_HOME": str(tmp_path)})
    assert broker_url(embedded) == backend_url(embedded)
    assert backend_url(embedded) == f"redis+socket://{tmp_path / 'redis' / 'redis.sock'}"
    assert not (tmp_path / "redis").exists()  # computing an address starts nothing
    configured = Settings.from_env({
        "JOBENGINE_HOME": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0",
        "JOBENGINE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    })  # fmt: skip
    assert broker_url(configured) == "amqp://guest:guest@127.0.0.1:5672//"
    assert backend_url(configured) == "redis://127.0.0.1:1/0"
    assert ensure_redis(configured) is False
    assert not (tmp_path / "redis").exists()
