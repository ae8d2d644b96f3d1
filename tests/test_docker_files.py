"""docker/: the Dockerfile and the compose fleet agree with each other and with the code.

The compose file is parsed with PyYAML and checked against the real CLI (its commands and options
are parsed by the CLI's own click command), the Celery configuration and the scheduler's leader
lock. Then a real compose reads it: ``docker compose config`` where the plugin answers, else
``docker-compose config`` (``make system`` installs Debian's next to a docker client), and its
output (services, interpolated values, exit status) is checked.
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

from tests.support.compose import Compose, probe

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
APP_SERVICES = ("api", "worker", "beat", "flower")
ONE_SHOT = ("migrate",)  # `jobengine db upgrade`, run to completion before the app services
SHARED_ENV = (
    "REDIS_URL", "DATABASE_URL", "JOBENGINE_STORAGE", "JOBENGINE_TIMEZONE", "JOBENGINE_QUEUES",
    "JOBENGINE_DB_UPGRADE",
)  # fmt: skip
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
    assert set(services) == {"redis", "postgres", *APP_SERVICES, *ONE_SHOT}
    assert all("healthcheck" in s for name, s in services.items() if name not in ONE_SHOT)
    # The image runs the CLI: each app service's command is a real command with real options.
    assert _cli_parse(services["worker"]["command"])["concurrency"] == 2  # WORKER_CONCURRENCY
    assert services["beat"]["command"] == ["beat"]
    _cli_parse(services["beat"]["command"])
    flower = _cli_parse(services["flower"]["command"])
    assert flower["address"] == "0.0.0.0" and flower["port"] == 5555
    api = _cli_parse(services["api"]["command"])
    assert api["host"] == "0.0.0.0" and api["port"] == 8080
    assert "/scene7/webservice/IpsApi.wsdl" in " ".join(services["api"]["healthcheck"]["test"])


def test_app_services_share_image_env_and_storage(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], compose["volumes"]
    apps = [services[name] for name in (*APP_SERVICES, *ONE_SHOT)]
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
    for service in apps[: len(APP_SERVICES)]:
        assert {k: d["condition"] for k, d in service["depends_on"].items()} == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
            "migrate": "service_completed_successfully",
        }
        assert _env(service)["JOBENGINE_DB_UPGRADE"] == "check"  # only migrate upgrades


def test_migrate_upgrades_the_store_once_before_the_fleet_starts(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    _cli_parse(migrate["command"])
    assert migrate["restart"] == "no"  # a one-shot: it exits 0 when the store is current
    assert {k: d["condition"] for k, d in migrate["depends_on"].items()} == {
        "postgres": "service_healthy"
    }


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
    from jobengine.engine.celery_config import celery_config
    from jobengine.settings import Settings

    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    grace = int(worker["stop_grace_period"].rstrip("s"))
    soft = celery_config(Settings.from_env({"REDIS_URL": "redis://redis:6379/0"}))
    assert grace > soft["worker_soft_shutdown_timeout"]
    assert "celery -A jobengine.celery_app inspect ping" in " ".join(worker["healthcheck"]["test"])


def test_beat_health_is_the_schedulers_leader_lock(compose: dict[str, Any]) -> None:
    from jobengine.engine.scheduling import LOCK_KEY

    beat = compose["services"]["beat"]
    assert f"'{LOCK_KEY}'" in " ".join(beat["healthcheck"]["test"])
    assert "deploy" not in beat or beat["deploy"].get("replicas", 1) == 1


def test_flower_has_basic_auth_and_a_loopback_port(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert _env(flower)["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert [_interpolate(p) for p in flower["ports"]] == ["127.0.0.1:5555:5555"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_dockerfile_builds_the_package_with_debian_imagemagick(dockerfile: list[str]) -> None:
    # the public base by default; a local stand-in where Docker Hub is out of reach
    assert dockerfile[:2] == ["ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "FROM ${PYTHON_IMAGE}"]
    [apt] = [line for line in dockerfile if "apt-get install" in line]
    assert "--no-install-recommends" in apt
    assert "imagemagick" in apt.split() and re.search(r"\blibmagickwand-6\.q16-\d", apt)
    assert "rm -rf /var/lib/apt/lists/*" in apt
    # the dependencies (from pyproject.toml alone) in a layer before the code's
    deps = next(i for i, line in enumerate(dockerfile) if "pip install -r requirements" in line)
    code = next(
        i for i, ln in enumerate(dockerfile) if ln.startswith("RUN pip install --no-deps .")
    )
    assert (
        dockerfile.index("COPY pyproject.toml ./")
        < deps
        < dockerfile.index("COPY jobengine ./jobengine")
        < code
    )


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


# -- a real compose reads the file -----------------------------------------------------------------

_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_CONFIG")
_TOP_NAME = re.compile(r"^name:[ \t]*([a-z0-9][a-z0-9_-]*)[ \t]*\n", re.MULTILINE)


@pytest.fixture(scope="module")
def real_compose() -> Compose:
    """``docker compose`` when the plugin answers, else ``docker-compose``.

    Skipped (with what was tried) only when neither answers. With a docker client present,
    ``make system`` installs Debian's docker-compose, so there that skip is a failure under CI.
    """
    tried = []
    docker = shutil.which("docker")
    if docker is not None:
        ok, out = probe([docker, "compose"])
        if ok:
            return Compose((docker, "compose"), out)
        tried.append(f"`docker compose version`: {out}")
    else:
        tried.append("no docker client")
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        ok, out = probe([legacy])
        if ok:
            return Compose((legacy,), out)
        tried.append(f"`docker-compose version`: {out}")
    else:
        tried.append("no docker-compose")
    why = "; ".join(tried)
    if docker is not None:  # `make system` provides docker-compose next to a docker client
        from tests.support.stack import unavailable

        unavailable("a compose (plugin or docker-compose)", f"{why} (run `make system`)")
    pytest.skip(f"no compose to check docker/compose.yaml with: {why}")


def _compose_config(
    compose: Compose, tmp_path: Path, variables: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``<compose> config`` of docker/compose.yaml with exactly ``variables`` set.

    No other variable of this process reaches compose (the tests' own JOBENGINE_TIMEZONE would
    be interpolated), and an empty ``--env-file`` keeps a developer's docker/.env out.

    Compose 1.x predates the Compose Specification's top-level ``name`` (compose v2 reads it)
    and refuses the file for it alone. For 1.x that one line is taken out of a copy and given
    as ``--project-name``, which is what it means; the rest of the file is checked unchanged,
    with ``--project-directory docker`` so relative paths resolve as in the original.
    """
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV} | variables
    argv = [*compose.argv, "--env-file", str(env_file), "--project-directory", str(DOCKER)]
    source = DOCKER / "compose.yaml"
    if compose.v1:
        text = source.read_text()
        match = _TOP_NAME.search(text)
        assert match is not None, "compose.yaml names its project (top-level `name:`)"
        source = tmp_path / "compose.yaml"
        source.write_text(text[: match.start()] + text[match.end() :])
        argv += ["--project-name", match.group(1)]
    argv += ["-f", str(source), "config"]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _seconds(value: Any) -> float:
    """A compose duration in seconds: ``60s`` (compose 1.x) or ``1m0s`` (compose v2, Go)."""
    text = str(value)
    parts = _DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, published, target) of each port: short syntax (1.x) or long syntax (v2)."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port["published"]), str(port["target"])))
        else:
            *host, published, target = str(port).split("/")[0].split(":")
            out.append((":".join(host), published, target))
    return out


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of each mount: ``src:target:mode`` (1.x) or long syntax (v2)."""
    out = {}
    for mount in service.get("volumes", []):
        if isinstance(mount, dict):
            out[str(mount["target"])] = str(mount["source"])
        else:
            source, target, *_ = str(mount).split(":")
            out[target] = source
    return out


def test_compose_config_interpolates_the_fleet(real_compose: Compose, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    done = _compose_config(real_compose, tmp_path, COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert set(services) == {"redis", "postgres", *APP_SERVICES, *ONE_SHOT}
    if not real_compose.v1:  # compose v2 prints the project name and its volumes' names
        assert config["name"] == "jobengine"
        assert config["volumes"]["storage"]["name"] == "jobengine_storage"
    shared = {
        "REDIS_URL": "redis://redis:6379/0",
        "DATABASE_URL": "postgresql://jobengine:compose-test@postgres:5432/jobengine",
        "JOBENGINE_STORAGE": "/var/lib/jobengine/storage",
        "JOBENGINE_TIMEZONE": "UTC",
        "JOBENGINE_QUEUES": "",
        "JOBENGINE_DB_UPGRADE": "check",
    }
    for name in (*APP_SERVICES, *ONE_SHOT):
        service = services[name]
        extra = {"FLOWER_BASIC_AUTH": "ops:compose-test"} if name == "flower" else {}
        assert _env(service) == shared | extra, name
        assert service["image"] == "jobengine:latest"
        assert service["build"]["context"] == str(ROOT)  # `..` of docker/
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}
        assert _mounts(service) == {"/var/lib/jobengine/storage": "storage"}
        depends = {k: v["condition"] for k, v in service["depends_on"].items()}
        assert depends == (
            {"postgres": "service_healthy"}
            if name in ONE_SHOT
            else {
                "redis": "service_healthy",
                "postgres": "service_healthy",
                "migrate": "service_completed_successfully",
            }
        ), name
    assert services["redis"]["image"] == "redis:7.4-bookworm"  # the public images by default
    assert services["postgres"]["image"] == "postgres:16-bookworm"
    assert _env(services["postgres"])["POSTGRES_PASSWORD"] == "compose-test"
    assert [str(a) for a in services["worker"]["command"]] == ["worker", "--concurrency", "2"]
    assert _seconds(services["worker"]["stop_grace_period"]) == 60
    # `$$HOSTNAME` is the container's own, not interpolated away (printed escaped or not)
    assert re.search(r"celery@\$\$?HOSTNAME ", " ".join(services["worker"]["healthcheck"]["test"]))
    assert _ports(services["flower"]) == [("127.0.0.1", "5555", "5555")]
    assert _ports(services["api"]) == [("127.0.0.1", "8080", "8080")]
    assert all(
        "ports" not in services[name] for name in ("redis", "postgres", "worker", "beat", *ONE_SHOT)
    )


def test_compose_config_takes_the_optional_variables(real_compose: Compose, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    variables = {
        **COMPOSE_ENV, "WORKER_CONCURRENCY": "5", "JOBENGINE_TIMEZONE": "Europe/Paris",
        "JOBENGINE_QUEUES": "export=convert", "API_PUBLISH": "0.0.0.0:9090",
        "FLOWER_PUBLISH": "127.0.0.1:5601", "JOBENGINE_IMAGE": "registry.example/jobengine:1.2",
        "PYTHON_IMAGE": "base/python:3.11", "REDIS_IMAGE": "base/redis:7",
        "POSTGRES_IMAGE": "base/postgres:16",
    }  # fmt: skip
    done = _compose_config(real_compose, tmp_path, variables)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert [str(a) for a in services["worker"]["command"]] == ["worker", "--concurrency", "5"]
    assert {_env(services[name])["JOBENGINE_TIMEZONE"] for name in APP_SERVICES} == {"Europe/Paris"}
    assert {_env(services[name])["JOBENGINE_QUEUES"] for name in APP_SERVICES} == {"export=convert"}
    assert _ports(services["api"]) == [("0.0.0.0", "9090", "8080")]
    assert _ports(services["flower"]) == [("127.0.0.1", "5601", "5555")]
    apps = (*APP_SERVICES, *ONE_SHOT)
    assert {services[name]["image"] for name in apps} == {"registry.example/jobengine:1.2"}
    assert {services[name]["build"]["args"]["PYTHON_IMAGE"] for name in apps} == {
        "base/python:3.11"
    }
    assert services["redis"]["image"] == "base/redis:7"
    assert services["postgres"]["image"] == "base/postgres:16"


@pytest.mark.parametrize("missing", sorted(COMPOSE_ENV))
def test_compose_config_refuses_without_a_required_variable(
    real_compose: Compose, tmp_path: Path, missing: str
) -> None:
    variables = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
    done = _compose_config(real_compose, tmp_path, variables)
    assert done.returncode != 0
    assert f"set {missing}" in done.stderr  # the file's own message (`${VAR:?set VAR...}`)
    assert not done.stdout.strip()
