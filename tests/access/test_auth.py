"""Authentication, API tokens, the IPS role matrix and impersonation, on a real store.

Every test that touches the database runs on SQLite and on PostgreSQL (``store_only``).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select

from jobengine.access import auth
from jobengine.access.auth import (
    Caller,
    FailureLimiter,
    RedisFailureLimiter,
    authenticate,
    authenticate_token,
    authorize,
    authorize_submit,
    check_impersonation,
    create_token,
    revoke_token,
)
from jobengine.assets.catalog import (
    USER_TYPES,
    create_company,
    create_user,
    hash_password,
    verify_password,
)
from jobengine.embedded import redis_client
from jobengine.engine import submit_rules
from jobengine.errors import IpsFault, TooManyAttempts
from jobengine.model import SubmitJobRequest
from jobengine.runtime import get_runtime
from jobengine.settings import get_settings
from jobengine.store.schema import ApiToken, User

PASSWORD = "correct horse battery staple"
DEFAULT_LIMITER = auth.LIMITER  # as imported, before any test replaces it

# Section 10 of the IPS reference, written out independently of jobengine.access.auth: the user
# types each operation refuses. WebServiceUser is listed for no operation.
DENIED: dict[str, set[str]] = {
    "submitJob": {"IpsCompanyAdmin", "ImagePortalUser"},
    "executeJob": {"IpsCompanyAdmin", "ImagePortalUser"},
    "getActiveJobs": {"ImagePortalUser"},
    "getScheduledJobs": {"ImagePortalUser"},
    "stopJob": {"ImagePortalUser"},
    "pauseJob": {"ImagePortalUser"},
    "resumeJob": {"ImagePortalUser"},
    "deleteJob": {"ImagePortalUser"},
    "getJobLogs": set(),
    "getAssetJobLogs": set(),
    "getJobLogDetails": {"TrialSiteAdmin"},
    "saveImageFormat": {
        "TrialSiteAdmin",
        "TrialSiteUser",
        "ImagePortalUser",
        "ImagePortalContrib",
        "ImagePortalContribUser",
    },
    "deleteImageFormat": {
        "TrialSiteAdmin",
        "TrialSiteUser",
        "ImagePortalUser",
        "ImagePortalContrib",
        "ImagePortalContribUser",
    },
    "getImageFormats": {"TrialSiteAdmin", "TrialSiteUser"},
}
for _denied in DENIED.values():
    _denied.add("WebServiceUser")

# The user types that may submit a job as another member of their company (the brief's list).
ADMINS = ["IpsAdmin", "IpsCompanyAdmin", "ImagePortalAdmin", "TrialSiteAdmin"]

SWEEP = [(op, user_type) for op in sorted(DENIED) for user_type in USER_TYPES]


def fault_of(exc: pytest.ExceptionInfo[IpsFault]) -> tuple[str, int, str]:
    return exc.value.fault, exc.value.code, exc.value.reason


@dataclass
class World:
    """Two companies; company A has one user of every type, B one IpsUser."""

    a: str
    b: str
    a_id: int
    b_id: int
    emails: dict[str, str]  # user type -> e-mail (members of A)
    callers: dict[str, Caller]  # user type -> caller (members of A; IpsAdmin of none)
    outsider: str  # e-mail of B's IpsUser


_WORLDS: dict[str, World] = {}


def _build_world() -> World:
    tag = uuid.uuid4().hex[:8]
    a, b = f"auth-a-{tag}", f"auth-b-{tag}"
    emails = {t: f"{t.lower()}-{tag}@example.com" for t in USER_TYPES}
    with get_runtime().store.write() as session:
        ca, cb = create_company(session, a, "A"), create_company(session, b, "B")
        for user_type, email in emails.items():
            companies = [] if user_type == "IpsAdmin" else [ca]
            create_user(session, email, PASSWORD, user_type, companies)
        outsider = f"outsider-{tag}@example.com"
        create_user(session, outsider, PASSWORD, "IpsUser", [cb])
        a_id, b_id = ca.id, cb.id
    callers = {t: authenticate(e, PASSWORD) for t, e in emails.items()}
    return World(a, b, a_id, b_id, emails, callers, outsider)


@pytest.fixture
def world(store_only: dict[str, str]) -> World:
    """One world per store backend, built on first use (users cost an scrypt hash each)."""
    url = store_only["DATABASE_URL"]
    if url not in _WORLDS:
        _WORLDS[url] = _build_world()
    return _WORLDS[url]


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch: pytest.MonkeyPatch) -> Iterator[FailureLimiter]:
    """A limiter of this test's own, so failures never leak between tests."""
    limiter = FailureLimiter()
    monkeypatch.setattr(auth, "LIMITER", limiter)
    yield limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class VerifySpy:
    """Counts scrypt verifications (and can slow them down to widen races)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self._real = verify_password
        self._lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.calls.append(stored)
        time.sleep(self.delay)
        return self._real(password, stored)


# -- the role matrix ---------------------------------------------------------------------------


def test_matrix_is_section_10_literally() -> None:
    assert set(auth.OPERATIONS) == set(DENIED)
    for op, roles in auth.OPERATIONS.items():
        assert roles == set(USER_TYPES) - DENIED[op], op


@pytest.mark.parametrize(("operation", "user_type"), SWEEP, ids=[f"{o}-{t}" for o, t in SWEEP])
def test_every_operation_for_every_user_type(world: World, operation: str, user_type: str) -> None:
    caller = world.callers[user_type]
    if user_type in DENIED[operation]:
        with pytest.raises(IpsFault) as exc:
            authorize(caller, operation, world.a)
        assert (exc.value.fault, exc.value.code) == ("authorizationFault", 20003)
        assert exc.value.name == "NO_OPERATION_PERMISSION"
    else:
        assert authorize(caller, operation, world.a) == world.a_id


def test_unknown_operation_is_refused() -> None:
    caller = Caller(1, "u|1", "x@example.com", "IpsAdmin", frozenset())
    with pytest.raises(IpsFault) as exc:
        authorize(caller, "dropDatabase", None)
    assert exc.value.code == 20003


def test_no_company_handle_gives_none(world: World) -> None:
    assert authorize(world.callers["IpsUser"], "getActiveJobs", None) is None


def test_foreign_company_is_illegal(world: World) -> None:
    with pytest.raises(IpsFault) as exc:
        authorize(world.callers["IpsUser"], "getJobLogs", world.b)
    assert fault_of(exc)[:2] == ("authorizationFault", 20006)
    assert exc.value.field == "companyHandle"
    # a company admin of A is no admin of B
    with pytest.raises(IpsFault) as exc:
        authorize(world.callers["IpsCompanyAdmin"], "getJobLogs", world.b)
    assert exc.value.code == 20006


def test_unknown_company(world: World) -> None:
    for user_type in ("IpsUser", "IpsAdmin"):
        with pytest.raises(IpsFault) as exc:
            authorize(world.callers[user_type], "getJobLogs", "no-such-company")
        assert fault_of(exc)[:2] == ("authorizationFault", 20000)


def test_operation_permission_is_checked_before_the_company(world: World) -> None:
    with pytest.raises(IpsFault) as exc:
        authorize(world.callers["WebServiceUser"], "getJobLogs", "no-such-company")
    assert exc.value.code == 20003


def test_ips_admin_acts_on_every_company(world: World) -> None:
    admin = world.callers["IpsAdmin"]
    assert admin.company_ids == frozenset()
    assert authorize(admin, "submitJob", world.a) == world.a_id
    assert authorize(admin, "submitJob", world.b) == world.b_id
    assert authorize(admin, "getImageFormats", f"c|{world.b}") == world.b_id


def test_member_by_c_prefixed_handle(world: World) -> None:
    assert authorize(world.callers["IpsUser"], "getJobLogs", f"c|{world.a}") == world.a_id


# -- passwords -------------------------------------------------------------------------------------


def test_email_and_handle_both_authenticate(world: World) -> None:
    email = world.emails["IpsUser"]
    by_email = authenticate(email, PASSWORD)
    assert by_email == authenticate(by_email.handle, PASSWORD)
    assert by_email.email == email
    assert by_email.user_type == "IpsUser"
    assert by_email.company_ids == frozenset({world.a_id})
    assert by_email.handle == f"u|{by_email.user_id}"


@pytest.mark.parametrize(
    ("user", "password"), [(None, None), ("", ""), ("a@example.com", None), (None, "x")]
)
def test_missing_credentials(user: str | None, password: str | None) -> None:
    with pytest.raises(IpsFault) as exc:
        authenticate(user, password)
    assert fault_of(exc)[:2] == ("authenticationFault", 10000)
    assert exc.value.name == "NO_CREDENTIALS"


def test_wrong_password_and_unknown_user_are_indistinguishable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = VerifySpy()
    monkeypatch.setattr(auth, "verify_password", spy)
    faults = []
    for user in (world.emails["IpsUser"], "nobody-at-all@example.com", "u|999999999"):
        with pytest.raises(IpsFault) as exc:
            authenticate(user, "wrong password")
        faults.append((type(exc.value), *fault_of(exc), exc.value.field))
    assert faults[0] == faults[1] == faults[2]
    assert faults[0][1:3] == ("authenticationFault", 10001)
    # the same work each time: one real scrypt verification (unknown users against a dummy hash)
    assert len(spy.calls) == 3
    assert all(stored.startswith("scrypt$16384$8$1$") for stored in spy.calls)


def test_user_without_password_cannot_log_in(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    email = f"nopass-{uuid.uuid4().hex[:8]}@example.com"
    with get_runtime().store.write() as session:
        user = create_user(session, email, "temporary", "IpsUser", [])
        user.password_hash = ""
    spy = VerifySpy()
    monkeypatch.setattr(auth, "verify_password", spy)
    for password in ("temporary", "anything"):
        with pytest.raises(IpsFault) as exc:
            authenticate(email, password)
        assert exc.value.code == 10001
    assert len(spy.calls) == 2  # verified against the dummy hash, as for an unknown user


# -- rate limiting -------------------------------------------------------------------------------


def _fail(user: str, client: str = "") -> IpsFault:
    with pytest.raises(IpsFault) as exc:
        authenticate(user, "wrong password", client=client)
    return exc.value


def test_lockout_after_five_failures_then_the_window_passes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, clock=clock))
    email = world.emails["TrialSiteUser"]
    for _ in range(5):
        assert _fail(email).reason == "invalid user name or password"
    spy = VerifySpy()
    monkeypatch.setattr(auth, "verify_password", spy)
    clock.now += 20
    with pytest.raises(IpsFault) as exc:
        authenticate(email, PASSWORD)  # even the right password: the name is locked
    assert fault_of(exc) == (
        "authenticationFault",
        10001,
        "too many failed attempts; try again in 40 s",
    )
    # user names are counted case-insensitively
    with pytest.raises(IpsFault) as exc:
        authenticate(email.upper(), PASSWORD)
    assert "too many failed attempts" in exc.value.reason
    assert spy.calls == []  # failed fast: no scrypt
    clock.now += 40
    assert authenticate(email, PASSWORD).email == email


def test_unknown_users_are_locked_out_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, clock=FakeClock()))
    for _ in range(5):
        assert _fail("ghost@example.com").code == 10001
    assert _fail("ghost@example.com").reason.startswith("too many failed attempts")


def test_one_user_locked_at_an_address_locks_no_one_else(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five wrong passwords of one user behind an office's address lock that pair only."""
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, clock=FakeClock()))
    office, guessed, colleague = "10.0.0.9", world.emails["IpsUser"], world.emails["IpsAdmin"]
    for _ in range(5):
        _fail(guessed, client=office)
    assert _fail(guessed, client=office).reason == "too many failed attempts; try again in 60 s"
    assert authenticate(colleague, PASSWORD, client=office).user_type == "IpsAdmin"
    assert authenticate(guessed, PASSWORD, client="10.0.0.10").user_type == "IpsUser"
    assert authenticate(guessed, PASSWORD).user_type == "IpsUser"


def test_a_spray_from_one_address_spares_the_users_who_sign_in_there(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, spray_failures=10, clock=clock))
    office, regular = "10.0.0.9", world.emails["IpsUser"]
    assert authenticate(regular, PASSWORD, client=office).email == regular  # known there now
    spy = VerifySpy()
    monkeypatch.setattr(auth, "verify_password", spy)
    for i in range(10):  # a different user name each time: only the address adds up
        _fail(f"spray-{i}@example.com", client=office)
    assert len(spy.calls) == 10
    assert _fail("spray-x@example.com", client=office).reason.startswith("too many failed")
    assert len(spy.calls) == 10  # the spray now fails fast: no scrypt
    # the user who signs in from there still does; one new to that address waits for the lock
    assert authenticate(regular, PASSWORD, client=office).email == regular
    newcomer = world.emails["IpsAdmin"]
    with pytest.raises(TooManyAttempts):
        authenticate(newcomer, PASSWORD, client=office)
    assert authenticate(newcomer, PASSWORD, client="10.0.0.10").user_type == "IpsAdmin"


def test_many_addresses_guessing_one_user_spare_the_user(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        auth, "LIMITER", FailureLimiter(5, 60.0, spray_failures=10, clock=FakeClock())
    )
    target = world.emails["TrialSiteAdmin"]
    assert authenticate(target, PASSWORD, client="192.0.2.1").email == target  # home
    for i in range(10):  # a botnet: one guess per address
        _fail(target, client=f"203.0.113.{i}")
    assert _fail(target, client="203.0.113.99").reason.startswith("too many failed")
    assert authenticate(target, PASSWORD, client="192.0.2.1").email == target  # from home: fine


def test_each_further_lock_of_a_pair_lasts_twice_as_long(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, max_lock=200.0, clock=clock))
    email = world.emails["ImagePortalUser"]
    for lock in (60, 120, 200, 200):  # doubled each time, capped
        for _ in range(5):
            _fail(email, client="c")
        assert _fail(email, client="c").reason == f"too many failed attempts; try again in {lock} s"
        clock.now += lock
    for _ in range(4):
        _fail(email, client="c")
    assert authenticate(email, PASSWORD, client="c").email == email  # a success forgets them all
    for _ in range(5):
        _fail(email, client="c")
    assert _fail(email, client="c").reason == "too many failed attempts; try again in 60 s"
    clock.now += 60 + 86400  # a day without locks forgets them too
    for _ in range(5):
        _fail(email, client="c")
    assert _fail(email, client="c").reason == "too many failed attempts; try again in 60 s"


def test_success_resets_the_pair_and_does_not_count_for_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = FailureLimiter(5, 60.0, spray_failures=9, clock=FakeClock())
    monkeypatch.setattr(auth, "LIMITER", limiter)
    email = world.emails["ImagePortalContrib"]
    for _ in range(4):
        _fail(email, client="c1")
    authenticate(email, PASSWORD, client="c1")
    for _ in range(4):  # four more on another pair: the user name's count was given back
        _fail(email, client="c2")
    assert authenticate(email, PASSWORD, client="c3").email == email
    assert authenticate(email, PASSWORD, client="c1").email == email  # successes do not add up
    assert limiter._entries["user:" + email.lower()][1] == 8  # the failures on c1 and c2 only


def test_lockout_with_a_real_short_window(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A window long enough for three scrypt checks on a loaded machine (0.3 s was not, in CI).
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(2, 2.0))
    email = world.emails["ImagePortalAdmin"]
    _fail(email)
    _fail(email)
    locked = time.monotonic()  # the lock runs from the second failure
    assert re.fullmatch(r"too many failed attempts; try again in [12] s", _fail(email).reason)
    time.sleep(max(0.0, locked + 2.1 - time.monotonic()))
    assert authenticate(email, PASSWORD).user_type == "ImagePortalAdmin"


def test_concurrent_guesses_cannot_pass_the_limit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = VerifySpy(delay=0.05)
    monkeypatch.setattr(auth, "verify_password", spy)
    email = world.emails["IpsUser"]
    reasons: list[str] = []
    lock = threading.Lock()

    def guess() -> None:
        try:
            authenticate(email, "wrong password")
        except IpsFault as fault:
            with lock:
                reasons.append(fault.reason)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reasons) == 20
    assert len(spy.calls) == 5
    assert sum(r.startswith("too many failed attempts") for r in reasons) == 15


def test_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(5, 60.0, clock=clock, max_keys=10)
    for i in range(50):
        limiter.begin([f"user:{i}"])
    assert len(limiter._entries) <= 10
    clock.now += 61
    limiter.begin(["user:new"])
    limiter.begin([f"user:{i}" for i in range(100, 111)])
    assert len(limiter._entries) <= 10


def test_store_failure_is_not_counted_against_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = FailureLimiter(1, 60.0, clock=FakeClock())
    monkeypatch.setattr(auth, "LIMITER", limiter)

    def broken(user: str, password: str) -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(auth, "_check_password", broken)
    for _ in range(3):  # never TooManyAttempts: the broken store's attempts were given back
        with pytest.raises(RuntimeError):
            authenticate("someone@example.com", "pw", client="c")


# -- the limit across a fleet: counts in Redis ----------------------------------------------------
#
# Two RedisFailureLimiter instances are what two web processes have: their own Redis client and
# their own fallback. The Redis is the test session's (tests/conftest.py base_env).


@pytest.fixture
def redis_prefix(base_env: dict[str, str]) -> Iterator[str]:
    """A key prefix of this test's own on the session's Redis; its keys are deleted after."""
    prefix = f"jobengine:test-login-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis_client(get_settings())
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def _raw(prefix: str) -> dict[str, tuple[int, int]]:
    """The limiter's keys in Redis: key -> (count, TTL in ms)."""
    client = redis_client(get_settings())
    try:
        return {
            key.decode(): (int(client.get(key) or 0), int(client.pttl(key)))
            for key in client.scan_iter(match=prefix + "*")
        }
    finally:
        client.close()


def _locked_reason(limiter: FailureLimiter | RedisFailureLimiter, keys: list[str]) -> str:
    with pytest.raises(TooManyAttempts) as exc:
        limiter.begin(keys)
    return exc.value.reason


def _down_redis(path: Path) -> Callable[[], redis.Redis]:
    """A client of a Redis that does not run (yet): a Unix socket nothing listens on."""
    return lambda: redis.Redis(
        unix_socket_path=str(path), socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def test_the_default_limiter_counts_in_redis() -> None:
    assert isinstance(DEFAULT_LIMITER, RedisFailureLimiter)
    assert (DEFAULT_LIMITER.max_failures, DEFAULT_LIMITER.window) == (
        auth.MAX_FAILURES,
        auth.FAILURE_WINDOW,
    )


def _hashed(prefix: str, kind: str, value: str) -> str:
    return f"{prefix}{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


def test_two_limiters_share_the_count(redis_prefix: str) -> None:
    one = RedisFailureLimiter(3, 60.0, spray_failures=3, prefix=redis_prefix)
    two = RedisFailureLimiter(3, 60.0, spray_failures=3, prefix=redis_prefix)
    one.begin(["user:ann@example.com", "client:10.0.0.1"])
    two.begin(["user:ann@example.com"])
    one.begin(["user:ann@example.com"])
    assert _locked_reason(two, ["user:ann@example.com"]) == (
        "too many failed attempts; try again in 60 s"
    )
    assert _locked_reason(one, ["user:ann@example.com", "client:10.0.0.2"]).startswith("too many")
    two.begin(["user:bob@example.com", "client:10.0.0.1"])  # other keys: not locked
    # in Redis: hashed keys (no user name kept), counted once each, the window as TTL, and the
    # strike of the lock (for the next lock's backoff)
    ann, bob, client = (
        _hashed(redis_prefix, kind, value)
        for kind, value in (
            ("user", "ann@example.com"),
            ("user", "bob@example.com"),
            ("client", "10.0.0.1"),
        )
    )
    raw = _raw(redis_prefix)
    assert set(raw) == {ann, bob, client, f"{ann}:strikes"}  # nothing counted for 10.0.0.2
    assert (raw[ann][0], raw[bob][0], raw[client][0], raw[f"{ann}:strikes"][0]) == (3, 1, 2, 1)
    assert all(0 < ttl <= 60_000 for key, (_, ttl) in raw.items() if not key.endswith("strikes"))
    assert 86_000_000 < raw[f"{ann}:strikes"][1] <= 86_400_000
    # a given-back attempt (a success) frees one for both; clearing the user frees it for both
    one.give_back(["user:ann@example.com"])
    assert _raw(redis_prefix)[f"{ann}:strikes"][0] == 0  # that attempt's strike, taken back
    two.begin(["user:ann@example.com"])
    assert _locked_reason(one, ["user:ann@example.com"]).startswith("too many")
    two.clear("user:ann@example.com")
    assert f"{ann}:strikes" not in _raw(redis_prefix)
    one.begin(["user:ann@example.com"])
    # nothing was counted in the processes themselves
    assert one.fallback._entries == {} and two.fallback._entries == {}


def test_shared_locks_back_off_and_known_pairs_are_shared(redis_prefix: str) -> None:
    one = RedisFailureLimiter(2, 1.0, max_lock=3.0, prefix=redis_prefix)
    two = RedisFailureLimiter(2, 1.0, max_lock=3.0, prefix=redis_prefix)
    pair = ["pair:ann@example.com 10.0.0.1"]
    pttl = _hashed(redis_prefix, "pair", "ann@example.com 10.0.0.1")
    for limiter, lock_ms in ((one, 1000), (two, 2000), (one, 3000)):
        limiter.begin(pair)
        (two if limiter is one else one).begin(pair)
        assert _locked_reason(limiter, pair).startswith("too many")
        assert lock_ms - 200 < _raw(redis_prefix)[pttl][1] <= lock_ms
        client = redis_client(get_settings())
        client.delete(pttl)  # the lock has run out (without waiting for it)
        client.close()
    assert not one.known("known:ann@example.com 10.0.0.1")
    two.remember("known:ann@example.com 10.0.0.1")
    assert one.known("known:ann@example.com 10.0.0.1")
    known = _raw(redis_prefix)[_hashed(redis_prefix, "known", "ann@example.com 10.0.0.1")]
    assert 29 * 86_400_000 < known[1] <= 30 * 86_400_000


def test_logins_on_two_processes_share_the_lockout(
    world: World, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    processes = [RedisFailureLimiter(5, 60.0, prefix=redis_prefix) for _ in range(2)]
    email = world.emails["ImagePortalUser"]
    for i in range(5):  # a load balancer alternates between the two web processes
        monkeypatch.setattr(auth, "LIMITER", processes[i % 2])
        assert _fail(email.upper() if i else email, client="10.9.9.9").reason == (
            "invalid user name or password"
        )
    spy = VerifySpy()
    monkeypatch.setattr(auth, "verify_password", spy)
    for limiter in processes:
        monkeypatch.setattr(auth, "LIMITER", limiter)
        with pytest.raises(IpsFault) as exc:
            authenticate(email, PASSWORD, client="10.9.9.9")  # the pair, on either process
        assert fault_of(exc) == (
            "authenticationFault",
            10001,
            "too many failed attempts; try again in 60 s",
        )
        # an unknown user is locked out the same way on either process (no oracle)
        for _ in range(5):
            _fail("ghost-of-the-fleet@example.com")
        assert _fail("ghost-of-the-fleet@example.com").reason.startswith("too many")
    assert len(spy.calls) == 5  # the unknown user's first five, against the dummy hash
    # the same user elsewhere, and another user at the same address, are not locked
    assert authenticate(email, PASSWORD, client="10.1.1.1").email == email
    assert authenticate(world.emails["IpsUser"], PASSWORD, client="10.9.9.9").user_type


def test_concurrent_guesses_on_many_processes_cannot_pass_the_limit(redis_prefix: str) -> None:
    processes = [
        RedisFailureLimiter(5, 60.0, spray_failures=5, prefix=redis_prefix) for _ in range(4)
    ]
    outcomes: list[bool] = []
    lock = threading.Lock()

    def guess(limiter: RedisFailureLimiter) -> None:
        try:
            limiter.begin(["user:target@example.com", "client:10.6.6.6"])
            ok = True
        except TooManyAttempts:
            ok = False
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=guess, args=(random.choice(processes),)) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 35 + [True] * 5
    counts = {key.endswith(":strikes"): count for key, (count, _) in _raw(redis_prefix).items()}
    assert counts == {False: 5, True: 1}  # five attempts on each key, one lock each


def test_the_shared_window_expires(
    world: World, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    one = RedisFailureLimiter(2, 1.0, prefix=redis_prefix)
    two = RedisFailureLimiter(2, 1.0, prefix=redis_prefix)
    email = world.emails["ImagePortalContribUser"]
    monkeypatch.setattr(auth, "LIMITER", one)
    _fail(email)
    monkeypatch.setattr(auth, "LIMITER", two)
    _fail(email)
    assert _fail(email).reason == "too many failed attempts; try again in 1 s"
    monkeypatch.setattr(auth, "LIMITER", one)
    assert _fail(email).reason == "too many failed attempts; try again in 1 s"

    def counters() -> dict[str, tuple[int, int]]:
        return {k: v for k, v in _raw(redis_prefix).items() if not k.endswith(":strikes")}

    assert all(0 < ttl <= 1000 for _, ttl in counters().values())
    deadline = time.monotonic() + 3
    while counters() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counters() == {}  # expired in Redis: only the strikes stay (a day, for the backoff)
    assert authenticate(email, PASSWORD).user_type == "ImagePortalContribUser"


def test_redis_down_counts_in_the_process_and_logins_work(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connects: list[int] = []

    def connect() -> redis.Redis:
        connects.append(1)
        return _down_redis(tmp_path / "nothing.sock")()

    limiter = RedisFailureLimiter(3, 60.0, connect=connect, retry_interval=60.0)
    monkeypatch.setattr(auth, "LIMITER", limiter)
    email = world.emails["IpsUser"]
    with caplog.at_level(logging.WARNING, logger="jobengine.access.loginlimit"):
        assert authenticate(email, PASSWORD).email == email  # never fails because of Redis
        for _ in range(3):
            assert _fail(email, client="10.3.3.3").reason == "invalid user name or password"
        started = time.monotonic()
        with pytest.raises(IpsFault) as exc:  # the limit holds, in this process
            authenticate(email, PASSWORD, client="10.3.3.3")
        assert exc.value.reason == "too many failed attempts; try again in 60 s"
        assert time.monotonic() - started < 0.5  # Redis is not tried again before the interval
    assert connects == [1]
    outage = [r for r in caplog.records if "Redis is unavailable" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelno == logging.WARNING  # once per outage


class _OutOfMemory(redis.Redis):
    """A real Redis whose scripts fail as under ``maxmemory`` with ``noeviction``."""

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ResponseError(
            "OOM command not allowed when used memory > 'maxmemory'."
        )


def test_a_failing_limiter_never_lifts_the_limit(
    world: World, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    from jobengine.embedded import redis_url

    limiter = RedisFailureLimiter(
        2,
        60.0,
        prefix=redis_prefix,
        retry_interval=0.0,  # Redis is asked every time, and fails every time
        connect=lambda: _OutOfMemory.from_url(redis_url(get_settings())),
    )
    monkeypatch.setattr(auth, "LIMITER", limiter)
    email = world.emails["TrialSiteUser"]
    _fail(email)
    _fail(email)
    with pytest.raises(IpsFault) as exc:
        authenticate(email, PASSWORD)
    assert exc.value.reason.startswith("too many failed attempts")
    assert authenticate(world.emails["TrialSiteAdmin"], PASSWORD).user_type == "TrialSiteAdmin"


def test_redis_coming_back_shares_the_count_again_and_keeps_outage_locks(
    base_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jobengine.embedded import _server_binary

    sock = tmp_path / "r.sock"
    one, two = (
        RedisFailureLimiter(2, 60.0, spray_failures=2, connect=_down_redis(sock), retry_interval=0)
        for _ in range(2)
    )
    with caplog.at_level(logging.WARNING, logger="jobengine.access.loginlimit"):
        one.begin(["user:a"])  # Redis down: counted in process one only
        one.begin(["user:a"])
        two.begin(["user:b"])
        assert _locked_reason(one, ["user:a"]).startswith("too many")
        two.begin(["user:a"])  # process two never saw those
        argv = [_server_binary(), "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path)]
        server = subprocess.Popen([*argv, "--save", ""], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            one.begin(["user:b"])  # Redis back: counted there, shared
            two.begin(["user:b"])
            assert _locked_reason(one, ["user:b"]).startswith("too many")
            assert _locked_reason(two, ["user:b"]).startswith("too many")
            assert _locked_reason(one, ["user:a"]).startswith("too many")  # the outage's lock
            two.begin(["user:a"])  # in Redis: 1 (process two's own outage count stays local)
        finally:
            server.terminate()
            server.wait(10)
    messages = [r.getMessage() for r in caplog.records if r.name == "jobengine.access.loginlimit"]
    assert sum("Redis is unavailable" in m for m in messages) == 2  # once per process
    assert sum("shared through Redis again" in m for m in messages) == 2


# -- API tokens ----------------------------------------------------------------------------------


def test_token_create_use_revoke(world: World) -> None:
    email = world.emails["IpsUser"]
    secret = create_token(email, "nightly exporter")
    assert secret.startswith("je_") and len(secret) > 40
    assert authenticate_token(secret) == authenticate(email, PASSWORD)
    with get_runtime().store.read() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "nightly exporter")).all()[-1]
        owner = session.get(User, row.user_id)
        assert owner is not None and owner.email == email
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.last_used_at is not None and row.revoked_at is None
    second = create_token(world.callers["IpsUser"].handle, "second")
    assert second != secret
    revoke_token(secret)
    revoke_token(secret)  # again: nothing happens
    with pytest.raises(IpsFault) as exc:
        authenticate_token(secret)
    assert fault_of(exc) == ("authenticationFault", 10001, "invalid API token")
    assert authenticate_token(second).email == email  # the other token still works


@pytest.mark.parametrize(
    "token", ["garbage", "je_", "je_" + "A" * 43, "Bearer je_x", "je_" + "x" * 500, "je_\u00e9"]
)
def test_garbage_tokens(store_only: dict[str, str], token: str) -> None:
    with pytest.raises(IpsFault) as exc:
        authenticate_token(token)
    assert fault_of(exc) == ("authenticationFault", 10001, "invalid API token")


def test_empty_token_is_no_credentials() -> None:
    with pytest.raises(IpsFault) as exc:
        authenticate_token("")
    assert exc.value.code == 10000


def test_token_for_unknown_user_or_without_name(world: World) -> None:
    with pytest.raises(IpsFault) as exc:
        create_token("nobody@example.com", "x")
    assert exc.value.code == 20002
    with pytest.raises(IpsFault) as exc:
        create_token(world.emails["IpsUser"], "  ")
    assert exc.value.code == 30001
    with pytest.raises(IpsFault) as exc:
        revoke_token("je_never-issued")
    assert exc.value.code == 30001


def test_token_follows_the_users_current_type(world: World) -> None:
    email = f"svc-{uuid.uuid4().hex[:8]}@example.com"
    with get_runtime().store.write() as session:
        create_user(session, email, PASSWORD, "IpsUser", [])
    secret = create_token(email, "svc")
    assert authenticate_token(secret).user_type == "IpsUser"
    with get_runtime().store.write() as session:
        create_user(session, email, PASSWORD, "WebServiceUser", [])
    assert authenticate_token(secret).user_type == "WebServiceUser"


# -- impersonation (submitJob userHandle) ---------------------------------------------------------


def test_acting_as_oneself_is_always_allowed(world: World) -> None:
    for user_type, caller in world.callers.items():
        check_impersonation(caller, None, world.a_id)
        check_impersonation(caller, "", world.a_id)
        check_impersonation(caller, caller.handle, world.a_id)
        check_impersonation(caller, world.emails[user_type], world.a_id)


@pytest.mark.parametrize("user_type", ADMINS)
def test_admins_may_act_as_members(world: World, user_type: str) -> None:
    admin = world.callers[user_type]
    member = world.callers["IpsUser"]
    check_impersonation(admin, member.handle, world.a_id)
    check_impersonation(admin, world.emails["ImagePortalUser"], world.a_id)
    with pytest.raises(IpsFault) as exc:
        check_impersonation(admin, world.outsider, world.a_id)  # not a member of A
    assert fault_of(exc)[:2] == ("authorizationFault", 20007)
    with pytest.raises(IpsFault) as exc:
        check_impersonation(admin, "nobody@example.com", world.a_id)
    assert fault_of(exc)[:2] == ("authorizationFault", 20002)


def test_ips_admin_acts_for_members_of_any_company(world: World) -> None:
    check_impersonation(world.callers["IpsAdmin"], world.outsider, world.b_id)


@pytest.mark.parametrize("user_type", [t for t in USER_TYPES if t not in ADMINS])
def test_others_may_not_impersonate(world: World, user_type: str) -> None:
    caller = world.callers[user_type]
    other = world.callers["IpsAdmin" if user_type != "IpsAdmin" else "IpsUser"]
    for target in (other.handle, world.outsider, "nobody@example.com"):
        with pytest.raises(IpsFault) as exc:
            check_impersonation(caller, target, world.a_id)
        # 20004 every time: an unknown user is not told apart from a known one
        assert fault_of(exc)[:2] == ("authorizationFault", 20004)
        assert exc.value.name == "NO_IMPERSONATION_PERMISSION"


def test_company_admin_of_another_company_may_not_impersonate(world: World) -> None:
    with pytest.raises(IpsFault) as exc:
        check_impersonation(world.callers["TrialSiteAdmin"], world.outsider, world.b_id)
    assert exc.value.code == 20004


# -- passwords ---------------------------------------------------------------------------------


def test_passwords_are_hashed_with_scrypt() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret!", stored)
    assert not verify_password("s3cret", "garbage")


# -- submitJob resolved once (authorize_submit) ----------------------------------------------------


def _two_step(caller: Caller, company: str, user_handle: str | None) -> tuple[Any, ...]:
    """What a submit was checked by before issue 13: authorize and check_impersonation, then the
    submission service resolving company, userHandle and submitter again on its connection."""
    try:
        company_id = authorize(caller, "submitJob", company)
        assert company_id is not None
        check_impersonation(caller, user_handle, company_id)
        request = SimpleNamespace(company_handle=company, user_handle=user_handle)
        with get_runtime().store.connect() as conn:
            actor = submit_rules.resolve(conn, cast(SubmitJobRequest, request), caller.handle)
    except IpsFault as fault:
        return (fault.code, fault.field, fault.reason)
    return (actor.company_id, actor.company_handle, actor.user_id, actor.run_as_id)


def _once(caller: Caller, company: str, user_handle: str | None) -> tuple[Any, ...]:
    try:
        actor = authorize_submit(caller, company, user_handle)
    except IpsFault as fault:
        return (fault.code, fault.field, fault.reason)
    return (actor.company_id, actor.company_handle, actor.user_id, actor.run_as_id)


@pytest.mark.parametrize("user_type", USER_TYPES)
def test_authorize_submit_gives_the_two_step_outcome(world: World, user_type: str) -> None:
    caller = world.callers[user_type]
    targets = [None, "", caller.handle, caller.email, world.callers["IpsUser"].handle,
               world.outsider, "nobody@example.com"]  # fmt: skip
    for company in (world.a, f"c|{world.a}", world.b, "no-such-company"):
        for target in targets:
            assert _once(caller, company, target) == _two_step(caller, company, target), (
                company,
                target,
            )
    if user_type == "IpsAdmin":  # a member of no company: it may name any, submit in none
        assert _once(caller, world.b, None)[:2] == (20007, "user")
        assert _once(caller, world.a, caller.handle)[:2] == (20007, "userHandle")
