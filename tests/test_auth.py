"""Authentication, API tokens, the IPS role matrix and impersonation, on a real store.

Every test that touches the database runs on SQLite and on PostgreSQL (``store_only``).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from jobengine import auth
from jobengine.auth import (
    Caller,
    FailureLimiter,
    authenticate,
    authenticate_token,
    authorize,
    check_impersonation,
    create_token,
    revoke_token,
)
from jobengine.catalog import USER_TYPES, create_company, create_user, verify_password
from jobengine.errors import IpsFault
from jobengine.runtime import get_runtime
from jobengine.store.schema import ApiToken, User

PASSWORD = "correct horse battery staple"

# Section 10 of the IPS reference, written out independently of jobengine.auth: the user types
# each operation refuses. WebServiceUser is listed for no operation.
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


def test_lockout_per_client(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, clock=clock))
    for i in range(5):  # a different user name each time: only the client adds up
        _fail(f"spray-{i}@example.com", client="10.0.0.9")
    with pytest.raises(IpsFault) as exc:
        authenticate(world.emails["IpsUser"], PASSWORD, client="10.0.0.9")
    assert exc.value.reason == "too many failed attempts; try again in 60 s"
    # another client (and no client) are not affected
    assert authenticate(world.emails["IpsUser"], PASSWORD, client="10.0.0.10").user_type
    assert authenticate(world.emails["IpsUser"], PASSWORD).user_type == "IpsUser"


def test_success_resets_the_user_count_but_does_not_count_for_the_client(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(5, 60.0, clock=FakeClock()))
    email = world.emails["ImagePortalContrib"]
    for _ in range(4):
        _fail(email, client="c1")
    authenticate(email, PASSWORD, client="c1")
    for _ in range(4):  # four more for the user: it was reset; none of them locks the client yet
        _fail(email, client="c2")
    assert authenticate(email, PASSWORD, client="c1").email == email
    assert authenticate(email, PASSWORD, client="c1").email == email  # successes do not add up


def test_lockout_with_a_real_short_window(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "LIMITER", FailureLimiter(2, 0.3))
    email = world.emails["ImagePortalAdmin"]
    _fail(email)
    _fail(email)
    assert _fail(email).reason == "too many failed attempts; try again in 1 s"
    time.sleep(0.35)
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
