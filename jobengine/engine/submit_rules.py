"""What a submitted request becomes before it is written, for submit() and submit_many() alike:
when it runs (:func:`timing_of`), who it acts as (:func:`resolve`, :func:`user_of`,
:func:`actor_of`), and whether the live job holding its name still holds it (:func:`holds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, or_, select, update

from jobengine.cron import parse as parse_cron
from jobengine.errors import InvalidCompany, InvalidParameter, InvalidRequestUser
from jobengine.handles import company_handle_forms
from jobengine.model import SubmitJobRequest
from jobengine.settings import Settings
from jobengine.store.hot import HotStatement
from jobengine.store.jobs import fire_key
from jobengine.store.schema import JOBS, RUNS, Company, Membership, User
from jobengine.store.states import ACTIVE_RUNS, LIVE_TRIGGERS, TriggerState
from jobengine.store.users import Actor, CompanyRef, not_a_member

__all__ = [
    "JOB_INSERT",
    "JOB_KEYS",
    "Timing",
    "actor_of",
    "holds",
    "resolve",
    "still_holds",
    "timing_of",
    "user_of",
]


@dataclass(frozen=True)
class Timing:
    trigger_state: TriggerState
    next_fire_at: datetime | None
    run_now: bool
    eta: datetime | None
    fire_key: str


def timing_of(req: SubmitJobRequest, settings: Settings, now: datetime) -> Timing:
    if req.exec_schedule:
        nxt = parse_cron(req.exec_schedule).next_after(now, settings.zone)
        if nxt is None:
            raise InvalidParameter(
                f"execSchedule {req.exec_schedule!r} never fires after {now:%Y-%m-%d %H:%M:%S %Z}",
                field="execSchedule",
            )
        return Timing(TriggerState.NORMAL, nxt, False, None, "")
    if req.exec_time is not None:
        at = req.exec_time
        near = at <= now + timedelta(seconds=settings.eta_horizon)
        return Timing(TriggerState.NORMAL, at, near, at if at > now else None, fire_key("at", at))
    return _NOW


_NOW = Timing(TriggerState.NONE, None, True, None, "now")  # a job that starts now


_COMPANIES = cast(Table, Company.__table__)
_USERS = cast(Table, User.__table__)
_MEMBERS = cast(Table, Membership.__table__)
_COMPANY = HotStatement(
    select(_COMPANIES.c.id, _COMPANIES.c.handle).where(_COMPANIES.c.handle == bindparam("handle"))
)
_USER = HotStatement(
    select(_USERS.c.id).where(
        (_USERS.c.handle == bindparam("handle")) | (_USERS.c.email == bindparam("handle"))
    )
)
_MEMBER = HotStatement(
    select(_MEMBERS.c.user_id).where(
        _MEMBERS.c.user_id == bindparam("user"), _MEMBERS.c.company_id == bindparam("company")
    )
)
_HOLDER_ACTIVE = HotStatement(
    select(RUNS.c.id)
    .where(RUNS.c.job_id == bindparam("job"), or_(*(RUNS.c.state == s for s in ACTIVE_RUNS)))
    .limit(1)
)
_RELEASE_NAME = HotStatement(
    update(JOBS).where(JOBS.c.id == bindparam("job")).values(live_key=None)
)
JOB_KEYS = ("company_id", "live_key", "handle", "name", "kind", "payload", "submit_user_id",
             "run_as_user_id", "locale", "description", "exec_time", "exec_schedule", "time_zone",
             "trigger_state", "next_fire_at", "fired_through", "created_at", "client")  # fmt: skip
JOB_INSERT = HotStatement(insert(JOBS).returning(JOBS.c.id), insert_keys=JOB_KEYS)


def _company(conn: Connection, handle: str) -> CompanyRef:
    """The company with ``handle`` (``47`` or ``c|47``), detached; InvalidCompany if none."""
    for form in company_handle_forms(handle):
        row = _COMPANY.first(conn, {"handle": form})
        if row is not None:
            return CompanyRef(int(row[0]), str(row[1]))
    raise InvalidCompany(f"unknown company {handle!r}", field="companyHandle")


def user_of(conn: Connection, handle: str | None, company: CompanyRef, field: str) -> int | None:
    """The id of the user with this handle or e-mail, who must be a member of ``company``."""
    if not handle:
        return None
    user_id = _USER.scalar(conn, {"handle": handle})
    if user_id is None:
        raise InvalidRequestUser(f"unknown user {handle!r}", field=field)
    if _MEMBER.first(conn, {"user": user_id, "company": company.id}) is None:
        raise not_a_member(handle, company.handle, field)
    return int(user_id)


def resolve(conn: Connection, req: SubmitJobRequest, submitter: str | None) -> Actor:
    """Who a request of the Python API acts as (no caller resolved it): its company, its
    ``userHandle`` and the submitter, each a member of the company."""
    company = _company(conn, req.company_handle)
    run_as = user_of(conn, req.user_handle, company, "userHandle")
    user = user_of(conn, submitter, company, "user")
    return Actor(company.id, company.handle, user, run_as)


def actor_of(req: SubmitJobRequest, actor: Actor) -> Actor:
    """``actor``, checked to be the request's company's (a caller's bug otherwise)."""
    if actor.company_handle not in company_handle_forms(req.company_handle):
        raise ValueError(f"{actor} does not act on company {req.company_handle!r}")
    return actor


def still_holds(conn: Connection, job_id: int, trigger_state: str) -> bool:
    """Whether the job holding a name still holds it: a live trigger or an active run; an ended
    holder hands the name on (released here)."""
    if trigger_state in LIVE_TRIGGERS or _HOLDER_ACTIVE.first(conn, {"job": job_id}) is not None:
        return True
    _RELEASE_NAME.execute(conn, {"job": job_id})
    return False


def holds(conn: Connection, holder: tuple[int, str, bool] | None) -> bool:
    """:func:`still_holds` for a holder read with whether it has an active run."""
    if holder is None:
        return False
    job_id, trigger_state, active = holder
    if trigger_state in LIVE_TRIGGERS or active:
        return True
    _RELEASE_NAME.execute(conn, {"job": job_id})
    return False
