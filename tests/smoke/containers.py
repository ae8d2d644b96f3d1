"""Small helpers over docker-py for the container tests: wait for a log line or a port."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any


def logs_of(container: Any) -> str:
    """A container's logs as text (docker-py gives bytes, pytest-celery's wrappers text)."""
    logs = container.logs()
    return logs.decode(errors="replace") if isinstance(logs, bytes) else str(logs)


def wait_for_log(container: Any, pattern: str, timeout: float = 90) -> str:
    """The container's logs once ``pattern`` (a regex) appears in them; fails with the logs."""
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        logs = logs_of(container)
        if re.search(pattern, logs):
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.5)
    raise AssertionError(f"{container.name}: no {pattern!r} in {timeout} s; logs:\n{logs[-3000:]}")


def host_port(container: Any, port: str) -> int:
    """The port published for ``port`` (``8080/tcp``), on the host's loopback only."""
    container.reload()
    [binding] = container.attrs["NetworkSettings"]["Ports"][port]
    assert binding["HostIp"] == "127.0.0.1", binding  # nothing of ours on other addresses
    return int(binding["HostPort"])


def http_get(url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` (on 127.0.0.1), retried until it answers 2xx or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=10) as response:
                return bytes(response.read())
        except (TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
