"""``jobengine companies|users|tokens`` as real processes on SQLite and PostgreSQL; then the user
and the token they create sign in to the real API (``jobengine serve``)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobengine.assets.catalog import verify_password
from jobengine.runtime import get_runtime
from jobengine.store.schema import User
from tests.support.web import WebServer

JOBENGINE = [sys.executable, "-m", "jobengine.cli"]
PASSWORD = "correct horse battery staple"


def _run(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        JOBENGINE + args,
        env={**os.environ, **env, "COLUMNS": "200"},  # rich: no wrapped table cells
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _fails(out: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2 and one line saying what is wrong (no traceback)."""
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stdout + out.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in out.stderr, out.stderr


@pytest.fixture(scope="module")
def web(store_backend: dict[str, str]) -> Iterator[WebServer]:
    server = WebServer(store_backend)
    yield server
    server.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _api(
    web: WebServer,
    operation: str,
    company: str,
    auth: tuple[str, str] | None = None,
    token: str | None = None,
) -> int:
    """The HTTP status of a JSON API call signed in with a password or a Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{web.url}/api/v1/{operation}"
    body = {"companyHandle": company}
    return httpx.post(url, json=body, auth=auth, headers=headers, timeout=30).status_code


def test_a_created_user_and_token_sign_in_to_the_api(
    store_only: dict[str, str], web: WebServer
) -> None:
    env, tag = store_only, _tag()
    first, second = f"a{tag}", f"b{tag}"
    for handle, name in ((first, "Acme Inc."), (second, "Beta & Co [test]")):
        added = _run(["companies", "add", handle, name], env)
        assert added.returncode == 0 and added.stdout.strip() == handle, added.stdout
    listed = _run(["companies", "list"], env).stdout
    assert first in listed and "Beta & Co [test]" in listed  # names are data, not markup

    email = f"ops-{tag}@example.com"
    args = ["users", "add", email, "--type", "IpsCompanyAdmin", "-c", first, "-c", second]
    added = _run([*args, "--first-name", "Ada", "--password-stdin"], env, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.strip().startswith("u|")
    assert PASSWORD not in added.stdout + added.stderr
    members = _run(["users", "list", "-c", second], env).stdout
    assert email in members and "IpsCompanyAdmin" in members and f"{first},{second}" in members
    assert PASSWORD not in members and "scrypt" not in members
    with get_runtime().store.read() as session:  # hashed as the auth module checks it
        stored = session.query(User).filter_by(email=email).one().password_hash
    assert stored.startswith("scrypt$") and verify_password(PASSWORD, stored)

    assert _api(web, "getImageFormats", second, auth=(email, PASSWORD)) == 200
    assert _api(web, "getImageFormats", first, auth=(email, "nope")) == 401
    assert _api(web, "getImageFormats", f"z{tag}", auth=(email, PASSWORD)) == 403  # no member

    created = _run(["tokens", "create", email, "--name", "nightly export"], env)
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip()
    assert token.startswith("je_") and "shown only now" in created.stderr
    assert _api(web, "getJobLogs", first, token=token) == 200
    tokens = _run(["tokens", "list", "--user", email], env).stdout
    assert "nightly export" in tokens and email in tokens and token not in tokens
    [token_id] = [line.split()[1] for line in tokens.splitlines() if "nightly export" in line]

    revoked = _run(["tokens", "revoke", token_id], env)
    assert revoked.returncode == 0, revoked.stdout
    assert _api(web, "getJobLogs", first, token=token) == 401
    assert _run(["tokens", "revoke", token_id], env).returncode == 0  # again: nothing happens

    changed = _run(["users", "passwd", email, "--password-stdin"], env, stdin="second one\n")
    assert changed.returncode == 0, changed.stdout
    assert _api(web, "getJobLogs", first, auth=(email, PASSWORD)) == 401
    assert _api(web, "getJobLogs", first, auth=(email, "second one")) == 200


def test_bad_input_is_one_line_and_exit_2(store_only: dict[str, str]) -> None:
    env, tag = store_only, _tag()
    company, email = f"c{tag}", f"dup-{tag}@example.com"
    assert _run(["companies", "add", company, "Dup"], env).returncode == 0
    _fails(_run(["companies", "add", company, "Again"], env), "30001", "exists already")
    _fails(_run(["companies", "add", "a|b", "Pipe"], env), "30001", "company handle")
    _fails(_run(["companies", "add", f"e{tag}", "  "], env), "30001", "name cannot be empty")

    def add_user(
        address: str, user_type: str, *companies: str, password: str = PASSWORD
    ) -> subprocess.CompletedProcess[str]:
        args = ["users", "add", address, "--type", user_type, "--password-stdin"]
        args += [arg for c in companies for arg in ("-c", c)]
        return _run(args, env, stdin=password + "\n")

    assert add_user(email, "IpsUser", company).returncode == 0
    _fails(add_user(email, "IpsUser", company), "30001", "exists already")
    _fails(add_user(email.upper(), "IpsUser", company), "30001", "exists already")  # any case
    _fails(
        add_user(f"x{tag}@example.com", "Root", company), "30001", "unknown user type", "IpsAdmin"
    )
    _fails(add_user(f"x{tag}@example.com", "IpsUser", "nope-" + tag), "20000", "unknown company")
    _fails(add_user("not an address", "IpsUser", company), "30001", "not an e-mail address")
    _fails(add_user(f"x{tag}@localhost", "IpsUser", company), "30001", "not an e-mail address")
    _fails(add_user(f"x{tag}@example.com", "IpsUser", company, password=""), "30002", "empty")
    _fails(add_user(f"x{tag}@example.com", "IpsUser"), "30002", "at least one company")
    assert email not in _run(["users", "list"], env).stdout.replace(email, "", 1)  # listed once
    assert f"x{tag}@example.com" not in _run(["users", "list"], env).stdout  # nothing written

    _fails(_run(["tokens", "create", f"nobody-{tag}@example.com", "-n", "x"], env), "20002")
    _fails(_run(["tokens", "create", email, "-n", "   "], env), "30001", "token name")
    _fails(_run(["tokens", "revoke", "2147483647"], env), "30001", "unknown API token")
    _fails(_run(["tokens", "revoke", "99999999999999999999999"], env), "30001", "unknown API token")
    _fails(_run(["tokens", "revoke", "je_never-issued"], env), "30001", "unknown API token")
    _fails(_run(["users", "list", "-c", f"nope-{tag}"], env), "20000")
    _fails(
        _run(["users", "passwd", f"nobody-{tag}@example.com", "--password-stdin"], env, "x\n"),
        "20002",
    )
    no_tty = _run(["users", "add", f"y{tag}@example.com", "-t", "IpsUser", "-c", company], env)
    _fails(no_tty, "--password-stdin")


def _take_terminal() -> None:
    """In the child, after setsid: make its stdin (the pty) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} in {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        assert chunk, f"no {marker!r} in {bytes(seen)!r}"
        seen += chunk


def test_the_password_prompt_does_not_echo_and_argv_holds_no_password(
    store_only: dict[str, str],
) -> None:
    """On a terminal the password is asked twice without echo; it never is in the argv."""
    env, tag = store_only, _tag()
    company, email = f"p{tag}", f"tty-{tag}@example.com"
    assert _run(["companies", "add", company, "Prompted"], env).returncode == 0
    secret = f"tty-secret-{tag}"
    master, slave = pty.openpty()
    argv = [*JOBENGINE, "users", "add", email, "-t", "IpsUser", "-c", company]
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **env},
        start_new_session=True,  # the pty is its terminal, as an operator's shell's is
        preexec_fn=_take_terminal,  # noqa: PLW1509 - one ioctl, no threads involved
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Password: ", seen)  # the whole prompt: echo is off by then
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline and b"users" in cmdline
        os.write(master, secret.encode() + b"\n")
        _read_until(master, b"confirmation: ", seen)
        os.write(master, secret.encode() + b"\n")
        _read_until(master, b"u|", seen)
        assert proc.wait(timeout=30) == 0, bytes(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert secret.encode() not in seen  # not echoed, not printed
    with get_runtime().store.read() as session:
        stored = session.query(User).filter_by(email=email).one().password_hash
    assert verify_password(secret, stored)
