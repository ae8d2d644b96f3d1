"""docker/: the Dockerfile and the compose fleet agree with each other and with the code.

The compose file is parsed with PyYAML and checked against the real CLI (its commands and options
are parsed by the CLI's own click command), the Celery configuration and the scheduler's leader
lock. ``docker compose config`` runs only where the compose plugin answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
APP_SERVICES = ("worker", "beat", "flower")
SHARED_ENV = ("REDIS_URL", "DATABASE_URL", "JOBENGINE_STORAGE", "JOBENGINE_TIMEZONE")
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test", "FLOWER_BASIC_AUTH": "ops:compose-test"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed in this environment (add pyyaml to the test group)"
    )
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DOCKER / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str] = COMPOSE_ENV) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, from ``env``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return str(arg)
        raise AssertionError(f"compose would refuse: {name} unset ({arg})")

    return _VARIABLE.sub(one, value)


def _cli_parse(args: list[str]) -> dict[str, Any]:
    """Parse ``jobengine <args>`` with the CLI's own click command (nothing runs)."""
    import typer.main

    from jobengine.cli import app

    group: Any = typer.main.get_command(app)  # typer ships its own click
    args = [_interpolate(a) for a in args]
    with group.context_class(group, info_name="jobengine") as parent:
        command = group.get_command(parent, args[0])
        assert command is not None, f"unknown command {args[0]!r}"
        with command.make_context(args[0], args[1:], parent=parent) as ctx:
            return dict(ctx.params)


def test_services_are_the_real_parts_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", *APP_SERVICES}
    assert all("healthcheck" in s for s in services.values())
    # The image runs the CLI: each app service's command is a real command with real options.
    assert _cli_parse(services["worker"]["command"])["concurrency"] == 2  # WORKER_CONCURRENCY
    assert services["beat"]["command"] == ["beat"]
    _cli_parse(services["beat"]["command"])
    flower = _cli_parse(services["flower"]["command"])
    assert flower["address"] == "0.0.0.0" and flower["port"] == 5555


def test_app_services_share_image_env_and_storage(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], compose["volumes"]
    apps = [services[name] for name in APP_SERVICES]
    assert len({s["image"] for s in apps}) == 1
    assert all(s["build"]["dockerfile"] == "docker/Dockerfile" for s in apps)
    assert all((DOCKER / s["build"]["context"] / s["build"]["dockerfile"]).is_file() for s in apps)
    envs = [_env(s) for s in apps]
    for key in SHARED_ENV:
        assert len({env[key] for env in envs}) == 1, key
    storage = envs[0]["JOBENGINE_STORAGE"]
    for service in apps:
        mounts = [v.split(":") for v in service["volumes"]]
        [volume] = [src for src, target, *_ in mounts if target == storage]
        assert volume in volumes  # a named volume, shared by every worker on this host
        assert set(service["depends_on"]) == {"redis", "postgres"}
        assert all(d["condition"] == "service_healthy" for d in service["depends_on"].values())


def test_urls_point_at_the_fleets_redis_and_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = {k: _interpolate(v) for k, v in _env(services["worker"]).items()}
    redis_url = urlsplit(env["REDIS_URL"])
    assert redis_url.scheme == "redis" and redis_url.hostname == "redis"
    assert redis_url.port == 6379
    db = urlsplit(env["DATABASE_URL"])
    pg = _env(services["postgres"])
    assert db.scheme == "postgresql" and db.hostname == "postgres" and db.port == 5432
    assert db.username == pg["POSTGRES_USER"] and db.path == f"/{pg['POSTGRES_DB']}"
    assert pg["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")  # no default password
    assert db.password == _interpolate(pg["POSTGRES_PASSWORD"]) == "compose-test"
    assert "postgres-data" in " ".join(services["postgres"]["volumes"])


def test_redis_keeps_every_message(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in command and "--appendonly yes" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "ports" not in redis  # reachable from the fleet's network only


def test_workers_scale_and_stop_gracefully(compose: dict[str, Any]) -> None:
    from config.celery import celery_config
    from jobengine.settings import Settings

    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    grace = int(worker["stop_grace_period"].rstrip("s"))
    soft = celery_config(Settings.from_env({"REDIS_URL": "redis://redis:6379/0"}))
    assert grace > soft["worker_soft_shutdown_timeout"]
    assert "celery -A jobengine.celery_app inspect ping" in " ".join(worker["healthcheck"]["test"])


def test_beat_health_is_the_schedulers_leader_lock(compose: dict[str, Any]) -> None:
    from jobengine.scheduling import LOCK_KEY

    beat = compose["services"]["beat"]
    assert f"'{LOCK_KEY}'" in " ".join(beat["healthcheck"]["test"])
    assert "deploy" not in beat or beat["deploy"].get("replicas", 1) == 1


def test_flower_has_basic_auth_and_a_loopback_port(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert _env(flower)["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_dockerfile_builds_the_package_with_debian_imagemagick(dockerfile: list[str]) -> None:
    assert dockerfile[0] == "FROM python:3.11-slim-bookworm"
    [apt] = [line for line in dockerfile if "apt-get install" in line]
    assert "--no-install-recommends" in apt
    assert "imagemagick" in apt.split() and re.search(r"\blibmagickwand-6\.q16-\d", apt)
    assert "rm -rf /var/lib/apt/lists/*" in apt
    assert any(re.match(r"RUN pip install \.( |$)", line) for line in dockerfile)


def test_dockerfile_uses_our_policy_and_a_non_root_user(dockerfile: list[str]) -> None:
    [copy] = [line for line in dockerfile if line.startswith("COPY config/policy.xml ")]
    target = Path(copy.split()[-1])
    env = " ".join(line for line in dockerfile if line.startswith("ENV "))
    assert f"MAGICK_CONFIGURE_PATH={target.parent}" in env
    assert f"JOBENGINE_IMAGING_POLICY_DIR={target.parent}" in env  # the conversion helpers' own
    [user] = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert user.split(":")[0] not in ("0", "root")
    assert dockerfile.index(f"USER {user}") > max(
        i for i, line in enumerate(dockerfile) if line.startswith("RUN ")
    )
    for line in dockerfile:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def _compose_available() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        first = (probe.stderr or probe.stdout).strip().splitlines()[:1]
        return f"`docker compose version` failed: {' '.join(first)[:200]}"
    return None


def test_docker_compose_accepts_the_file() -> None:
    why = _compose_available()
    if why:
        pytest.skip(f"docker compose plugin not available: {why}")
    docker = str(shutil.which("docker"))
    env = {**os.environ, **COMPOSE_ENV}
    ok = subprocess.run(
        [docker, "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bare = {k: v for k, v in env.items() if k not in COMPOSE_ENV}
    missing = subprocess.run(
        [docker, "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=DOCKER.parent,
    )
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
