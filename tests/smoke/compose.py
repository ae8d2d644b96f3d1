"""One compose project of the container tests: a copy of a compose file, run by a real compose.

The project has a name of its own (its containers, network and volumes carry it), publishes on
free ports of the host's loopback only, and is taken down with its volumes at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.compose import Compose, probe

_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG")
_TOP_NAME = re.compile(r"^name:[ \t]*[a-z0-9][a-z0-9_-]*[ \t]*\n", re.MULTILINE)
PROJECT_LABEL = "com.docker.compose.project"


def find_compose() -> Compose | None:
    """``docker compose`` when the plugin answers, else ``docker-compose``, else None."""
    docker, legacy = shutil.which("docker"), shutil.which("docker-compose")
    for argv in ([docker, "compose"] if docker else None, [legacy] if legacy else None):
        if argv is not None:
            ok, version = probe(argv)
            if ok:
                return Compose(tuple(argv), version)
    return None


def free_loopback_port() -> int:
    """A port nothing listens on at 127.0.0.1 now (the engine binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Project:
    """``<compose> -p <name> -f <file> ...`` with exactly the given variables."""

    def __init__(self, compose: Compose, name: str, directory: Path, env: dict[str, str]) -> None:
        self.compose, self.name, self.directory = compose, name, directory
        self.env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV} | env
        self.file: Path | None = None

    def use(self, text: str, label: str) -> None:
        """Run ``text`` (a compose file) from now on. Compose 1.x refuses the Compose
        Specification's top-level ``name`` (the project is named by ``-p`` anyway)."""
        if self.compose.v1:
            text = _TOP_NAME.sub("", text)
        self.file = self.directory / "docker" / f"compose.{label}.yaml"
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_text(text)

    def __call__(self, *args: str, timeout: float = 600, **env: str) -> str:
        """Run a compose command; its standard output (a failure shows both streams)."""
        assert self.file is not None
        argv = [
            *self.compose.argv, "--project-name", self.name, "--project-directory",
            str(self.file.parent), "-f", str(self.file), *args,
        ]  # fmt: skip
        done = subprocess.run(
            argv, env=self.env | env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{' '.join(args)}: {done.returncode}\n{done.stderr[-4000:]}"
        return done.stdout

    def containers(self, engine: Any, service: str | None = None) -> list[Any]:
        """The project's containers (of one service), running or not."""
        labels = [f"{PROJECT_LABEL}={self.name}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return list(engine.containers.list(all=True, filters={"label": labels}))

    def leftovers(self, engine: Any) -> list[str]:
        """Whatever of the project the engine still has: containers, networks, volumes."""
        found = [f"container {c.name}" for c in self.containers(engine)]
        label = {"label": f"{PROJECT_LABEL}={self.name}"}
        found += [f"network {n.name}" for n in engine.networks.list(filters=label)]
        found += [f"volume {v.name}" for v in engine.volumes.list(filters=label)]
        return found
