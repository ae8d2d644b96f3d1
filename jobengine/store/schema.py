"""The durable job store's tables (SQLAlchemy 2, SQLite or PostgreSQL).

A *job* is what submitJob created (the definition, with its trigger); a *run* is one execution of
it (its job log); a run's *items* are the files it works on, one task each; *log details* are the
JobLogDetail rows. Times are stored as naive UTC and read back as aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobengine.store.states import ItemState

__all__ = [
    "JOBS",
    "RUNS",
    "ApiToken",
    "Asset",
    "Base",
    "Company",
    "Folder",
    "ImageFormat",
    "Job",
    "LogDetail",
    "Membership",
    "Run",
    "RunItem",
    "SetMember",
    "SetPreset",
    "User",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC in the database, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    user_type: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), primary_key=True)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("company_id", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    path: Mapped[str] = mapped_column(String(1024))


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("company_id", "folder_id", "name"),
        Index("ix_assets_publish", "company_id", "publish_state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(128), unique=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))
    name: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(32))
    file_key: Mapped[str | None] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    publish_state: Mapped[str] = mapped_column(String(32), default="NotMarkedForPublish")
    published_at: Mapped[datetime | None]  # ImageServingPublishJob / VideoPublishJob
    # ImageRenderingPublishJob's own: its vignettes and materials go to another catalog
    rendering_published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # UploadUrlsJob / UploadDirectoryJob (jobengine/assets/ingest.py): the upload item that last
    # wrote the file, so that an item run again after its worker died knows its own asset.
    ingest_ref: Mapped[str | None] = mapped_column(String(64))
    # OptimizeImagesJob / ReprocessAssetsJob: the pyramid TIFF and the updated_at of the file
    # version it was made from (it is stale once updated_at differs).
    optimized_key: Mapped[str | None] = mapped_column(String(1024))
    optimized_version: Mapped[datetime | None]
    # RipPdfsJob / ReprocessAssetsJob: the PDF asset a page image or eCatalog was ripped from.
    derived_from: Mapped[int | None] = mapped_column(Integer)
    # Upload crop (UploadUrlsJob, UploadDirectoryJob, ReprocessAssetsJob;
    # jobengine/assets/crops.py): "x,y,w,h" in pixels of the (oriented) image, applied by export
    # convert, optimize and publish; and the crop the pyramid was made with (it is stale once they
    # differ).
    crop: Mapped[str | None] = mapped_column(String(64))
    optimized_crop: Mapped[str | None] = mapped_column(String(64))


class SetMember(Base):
    """One member of a set asset (an eCatalog's pages...), at its position (0-based) in the set."""

    __tablename__ = "set_members"
    set_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)


class ImageFormat(Base):
    """An image preset (IS macro): name unique per company, definition at most 512 characters."""

    __tablename__ = "image_formats"
    __table_args__ = (UniqueConstraint("company_id", "name_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    url_modifier: Mapped[str] = mapped_column(String(512))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SetPreset(Base):
    """A batch set preset (AutomatedSetGenerationJob): name unique per company (case-insensitive)
    and its rule, see :mod:`jobengine.assets.setrules`. ``views`` is a JSON list of strings."""

    __tablename__ = "set_presets"
    __table_args__ = (UniqueConstraint("company_id", "name_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    set_type: Mapped[str] = mapped_column(String(32))
    pattern: Mapped[str] = mapped_column(String(512))
    member_order: Mapped[str] = mapped_column(String(16))
    views: Mapped[list[str]] = mapped_column(JSON, default=list)
    name_template: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A submitted job definition and its trigger (one-shot execTime or cron execSchedule)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("company_id", "live_key"),
        Index("ix_jobs_due", "trigger_state", "next_fire_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    # The scheduler key of the handle while the job lives; NULL for duplicates and ended jobs.
    live_key: Mapped[str | None] = mapped_column(String(255))
    handle: Mapped[str] = mapped_column(String(400))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    submit_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    run_as_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    locale: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    exec_time: Mapped[datetime | None]
    exec_schedule: Mapped[str | None] = mapped_column(String(255))
    time_zone: Mapped[str] = mapped_column(String(64))
    # A TriggerState (jobengine/store/states.py), Quartz's: Normal, Paused, Complete... Plain
    # strings in and out: a member is its string.
    trigger_state: Mapped[str] = mapped_column(String(16))
    next_fire_at: Mapped[datetime | None]
    fired_through: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    # The client that submitted it (authHeader appName and appVersion): each run's JobClient row.
    client: Mapped[str | None] = mapped_column(String(255))


class Run(Base):
    """One execution of a job: its job log, counters, progress and control flags."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("company_id", "run_name"),
        UniqueConstraint("job_id", "fire_key"),
        Index("ix_runs_state", "state"),
        # getJobLogs (a company's latest runs) and getActiveJobs (its runs in progress) on a big
        # store: migration 0004
        Index("ix_runs_company_started", "company_id", "started_at", "id"),
        Index("ix_runs_company_state", "company_id", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    run_name: Mapped[str] = mapped_column(String(300))
    fire_key: Mapped[str] = mapped_column(String(100))
    task_id: Mapped[str] = mapped_column(String(64))
    # A RunState (jobengine/store/states.py): Queued, Running, Stopping, Done, Failed...
    state: Mapped[str] = mapped_column(String(16))
    eta: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None]
    planned: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    finish_sent_at: Mapped[datetime | None]
    swept_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]  # the completion e-mail was sent (sent once)
    # The completion callback (jobengine/notices/callbacks.py): NULL not looked at yet, none,
    # sending (claimed), retry (at callback_next_at), delivered, unknown, refused, failed.
    callback_state: Mapped[str | None] = mapped_column(String(16))
    callback_attempts: Mapped[int | None] = mapped_column(Integer)
    callback_sent_at: Mapped[datetime | None]  # the last claim (the attempt's start)
    callback_next_at: Mapped[datetime | None]
    callback_result: Mapped[str | None] = mapped_column(String(300))  # the last outcome, in words
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    finished_items: Mapped[int] = mapped_column(Integer, default=0)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    update_count: Mapped[int] = mapped_column(Integer, default=0)
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    progress_message: Mapped[str] = mapped_column(String(255), default="")
    last_progress_update: Mapped[datetime | None]
    fatal_error: Mapped[bool] = mapped_column(Boolean, default=False)
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunItem(Base):
    """One file of a run; its state change is the run-once guard of the item's task."""

    __tablename__ = "run_items"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(400))
    # An ItemState (jobengine/store/states.py): pending, running, done, failed, cancelled.
    state: Mapped[str] = mapped_column(String(16), default=ItemState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LogDetail(Base):
    """A JobLogDetail row.

    ``message`` is the English text. ``message_id`` (a :data:`jobengine.i18n.LogMessage`) and
    ``message_args`` (its arguments, strings) let the read operations render it in the caller's
    language; rows written before they existed have neither and show ``message``.
    """

    __tablename__ = "log_details"
    __table_args__ = (
        Index("ix_log_details_run", "run_id", "id"),
        Index("ix_log_details_asset", "asset_handle"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    log_type: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    message_args: Mapped[dict[str, Any] | None]
    asset_name: Mapped[str | None] = mapped_column(String(512))
    asset_type: Mapped[str | None] = mapped_column(String(32))
    asset_handle: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The plain tables, for Core statements on hot paths.
COMPANIES = cast(Table, Company.__table__)
JOBS = cast(Table, Job.__table__)
RUNS = cast(Table, Run.__table__)


class ApiToken(Base):
    """An API token of a service user: only the SHA-256 (hex) of the secret is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
