"""One settings object, read once from the environment, with embedded defaults.

Every setting is declared once here with its default; nothing else reads ``os.environ``.

=============================  ==========================================================
variable                       meaning (default)
=============================  ==========================================================
``JOBENGINE_HOME``             data directory (``./var``)
``REDIS_URL``                  Redis broker and result backend (embedded Redis when unset)
``JOBENGINE_BROKER_URL``       broker, if not Redis (e.g. ``amqp://guest:guest@127.0.0.1//``)
``DATABASE_URL``               job store (``sqlite:///$JOBENGINE_HOME/jobengine.db``)
``JOBENGINE_STORAGE``          asset storage: a directory or any fsspec URL, e.g.
                               ``s3://bucket/prefix`` (``$JOBENGINE_HOME/storage``)
``JOBENGINE_STORAGE_OPTIONS``  fsspec storage options as a JSON object, e.g.
                               ``{"endpoint_url": "http://127.0.0.1:9000"}`` (none)
``JOBENGINE_SERVER_DIRECTORY_ROOT`` ServerDirectoryPublishJob's directory: a directory or any
                               fsspec URL (none: ``_serverdir/`` in the asset storage)
``JOBENGINE_SERVER_DIRECTORY_OPTIONS`` its fsspec storage options, a JSON object (none)
``JOBENGINE_TIMEZONE``         the server's zone for schedules (the machine's, else UTC)
``JOBENGINE_ETA_HORIZON``      seconds ahead an execTime run is sent with a Celery ETA (300)
``JOBENGINE_VISIBILITY_TIMEOUT`` Redis visibility timeout in seconds (7200)
``JOBENGINE_TASK_TIME_LIMIT``  hard time limit per task in seconds (3600)
``JOBENGINE_LEASE_SECONDS``    how long a claim (an item, a run's start or finish) holds without a
                               heartbeat; a live step extends it every quarter lease, a dead
                               worker's claim is taken over one lease after its last beat (30)
``JOBENGINE_OUTBOX_GRACE``     seconds before an unsent run is re-sent by the relay; also how long
                               a process sends nothing after the broker refused a message (10)
``JOBENGINE_INLINE_ITEMS``    runs of at most this many items do them, and their finish, in their
                               start task: one message a job instead of one a step (1; 0: every
                               run fans out). Raise it for many tiny multi-file jobs; a run done
                               inline uses one worker process, so heavy items fan out better
``JOBENGINE_ITEM_CHUNK``       a fanned-out run sends at most this many of its items a message
                               (16; 1: a message an item), fewer while that would make under 32
                               messages: a worker child works through a chunk without waiting on
                               the worker's main process and the broker between items
``JOBENGINE_IDLE_SECONDS``     a queued run, or a run's pending items, whose queue is empty and
                               that made no progress this long wait on a lost message: sent again
                               (5)
``JOBENGINE_STALL_SECONDS``    a run with no progress this long has its pending items re-sent even
                               while its queue holds messages (600)
``JOBENGINE_MISFIRE_THRESHOLD`` a cron fire time late by less than this fires as if on time; one
                               later fires once, then the schedule goes on from now (60, Quartz's)
``JOBENGINE_BEAT_INTERVAL``    seconds between scheduler ticks, on the wall clock (1.0)
``JOBENGINE_QUEUES``           job kinds on queues of their own, ``kind=queue`` by task name
                               part: ``export=convert,rip_pdfs=convert``; every other kind
                               uses the queue ``jobengine`` (none)
``JOBENGINE_DEMO_USER``        demo user's e-mail (``demo@example.com``)
``JOBENGINE_DEMO_PASSWORD``    demo user's password (``demo-password``)
``JOBENGINE_SMTP_HOST``        SMTP server for job e-mails (``127.0.0.1``)
``JOBENGINE_SMTP_PORT``        its port (25)
``JOBENGINE_SMTP_USER``        SMTP login user (none: no login)
``JOBENGINE_SMTP_PASSWORD``    SMTP login password (none)
``JOBENGINE_SMTP_STARTTLS``    ``true`` to upgrade the connection with STARTTLS (false)
``JOBENGINE_MAIL_FROM``        sender of job e-mails (``jobengine@localhost``)
``JOBENGINE_PUBLIC_URL``       the service's public base URL: links to job output in e-mails,
                               the WSDL's endpoint, the SAML Recipient/Destination accepted
                               (none: no links; the WSDL names the host asked for, if allowed)
``JOBENGINE_SAML_IDP_CERT``    PEM file with the X.509 certificate(s) of the SAML identity
                               provider's signing key(s); set, SOAP ``authHeader/samlResponse``
                               sign-on is on (none: off). Read again when the file changes
``JOBENGINE_SAML_IDP_ENTITY_ID`` the IdP's entity id, the assertions' required ``Issuer``
                               (required with the certificate)
``JOBENGINE_SAML_IDPS``        a JSON file of identity providers each trusted for some companies
                               only (``entity_id``, ``certificate``, ``companies``; see
                               jobengine/access/samlidps.py); with or instead of the one above
``JOBENGINE_SAML_AUDIENCE``    our service provider entity id, required in the assertions'
                               ``AudienceRestriction`` (required with the certificate)
``JOBENGINE_SAML_CLOCK_SKEW``  seconds of clock difference allowed on SAML time limits (120)
``JOBENGINE_SAML_MAX_VALIDITY`` seconds after its IssueInstant a SAML assertion is accepted,
                               whatever its NotOnOrAfter says (600); each is accepted once
``JOBENGINE_UPLOAD_ALLOWED_HOSTS`` UploadUrlsJob: comma list of hosts, ``host:port`` or CIDRs
                               that may be fetched although their address is loopback, private,
                               link-local... (none: only public addresses)
``JOBENGINE_UPLOAD_MAX_BYTES``  UploadUrlsJob: largest file fetched, in bytes (536870912)
``JOBENGINE_UPLOAD_CONNECT_TIMEOUT`` UploadUrlsJob: seconds to resolve and connect (10)
``JOBENGINE_UPLOAD_READ_TIMEOUT`` UploadUrlsJob: seconds one read may wait for bytes (30)
``JOBENGINE_UPLOAD_DEADLINE``  UploadUrlsJob: seconds one file may take in all, redirects
                               included (600; at most 80 % of the task time limit is used)
``JOBENGINE_CALLBACK_ALLOWED_HOSTS`` completion callbacks (httpCompletionUrl, postHttpUrl): comma
                               list of hosts, ``host:port`` or CIDRs that may be called although
                               their address is loopback, private... (none: only public ones)
``JOBENGINE_CALLBACK_TIMEOUT`` completion callbacks: seconds one POST may take in all, lookup,
                               connection and answer included (10, at most 60)
``JOBENGINE_ALLOWED_HOSTS``    web service: comma list of the host names a request's ``Host``
                               may name for the WSDL's endpoint when ``JOBENGINE_PUBLIC_URL`` is
                               not set (``localhost``, ``127.0.0.1`` and ``::1`` always; another
                               Host gets 400, so no cache stores a forged endpoint)
``JOBENGINE_METRICS_TOKEN``    web service: a secret ``GET /metrics`` requires as
                               ``Authorization: Bearer <token>`` (none: open to anyone who can
                               reach the port; bind it to a private address then)
``JOBENGINE_TRUSTED_PROXIES``  web service: comma list of the addresses or CIDRs of the
                               reverse proxies whose ``X-Forwarded-For`` names the client (for
                               the failed-login limits and logs); from anyone else the header is
                               ignored (none: the peer's own address always)
``JOBENGINE_ORPHAN_GRACE``     the janitor (jobengine/engine/janitor.py): seconds a stored upload,
                               PDF page or pyramid no asset refers to is kept before it is
                               deleted; keep it above the task time limit (86400)
=============================  ==========================================================
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobengine.errors import ConfigurationError
from jobengine.storage import local_root

__all__ = ["DEFAULT_QUEUE", "SOAP_PATH", "Settings", "get_settings", "reset_settings"]

DEFAULT_QUEUE = "jobengine"  # every job kind's queue unless JOBENGINE_QUEUES routes it
SOAP_PATH = "/scene7/services/IpsApiService"  # the IPS SOAP endpoint (jobengine.web)


def _local_zone_name() -> str:
    """The machine's IANA zone name, or UTC when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def _parsed(env: dict[str, str], name: str, *, blank_is_unset: bool = True) -> float | None:
    """The number ``name`` holds; None when it is unset, empty, or (``blank_is_unset``) blank."""
    raw = env.get(name)
    if raw is None or (raw.strip() if blank_is_unset else raw) == "":
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    value = _parsed(env, name, blank_is_unset=False)  # blanks are "not a number" here
    if value is None:
        return default
    if value <= 0:
        raise ConfigurationError(f"{name}={env[name]!r} must be positive")
    return value


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    """A duration that may be zero."""
    value = _parsed(env, name)
    if value is None:
        return default
    if not 0 <= value <= 86400:
        raise ConfigurationError(f"{name}={env[name]!r} must be from 0 to 86400 seconds")
    return value


def _grace(env: dict[str, str], name: str, default: float) -> float:
    """A duration of zero or more seconds, without an upper bound."""
    value = _parsed(env, name)
    if value is None:
        return default
    if not 0 <= value < float("inf"):
        raise ConfigurationError(f"{name}={env[name]!r} must be zero or more seconds")
    return value


def _storage_url(raw: str) -> str:
    """A local storage as its absolute directory (``file://`` URLs too), other URLs as given."""
    root = local_root(raw)
    return raw if root is None else str(root)


def _json_object(env: dict[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name} must be a JSON object")
    return value


def _comma_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated setting as its non-blank entries."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _networks(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma list of IP addresses or CIDRs, each in its canonical network form."""
    found: list[str] = []
    for entry in _comma_list(env, name):
        try:
            found.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ConfigurationError(f"{name}: {entry!r} is not an IP address or CIDR") from None
    return tuple(found)


_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _queue_routes(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """``JOBENGINE_QUEUES`` as (kind slug, queue) pairs, sorted; ConfigurationError if malformed."""
    routes: dict[str, str] = {}
    for entry in _comma_list(env, "JOBENGINE_QUEUES"):
        slug, sep, queue = (part.strip() for part in entry.partition("="))
        if not sep or not _QUEUE_NAME.fullmatch(slug) or not _QUEUE_NAME.fullmatch(queue):
            raise ConfigurationError(
                f"JOBENGINE_QUEUES: {entry!r} is not kind=queue (letters, digits, _ . -)"
            )
        if routes.setdefault(slug, queue) != queue:
            raise ConfigurationError(f"JOBENGINE_QUEUES names two queues for {slug!r}")
    return tuple(sorted(routes.items()))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults a fresh machine runs on."""

    home: Path
    redis_url: str | None = None
    broker_url: str | None = None
    database_url: str = ""
    # the store's migrations at start: "auto" applies them, "check" refuses a store behind
    # (jobengine/store/migrate.py); default auto on SQLite, check elsewhere (a fleet's store)
    db_upgrade: str = "auto"
    # a local directory (absolute) or an fsspec URL; options are fsspec's (may hold secrets)
    storage_url: str = ""
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    # ServerDirectoryPublishJob: where it publishes (None: _serverdir/ in the storage above)
    server_directory_root: str | None = None
    server_directory_options: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    timezone: str = "UTC"
    eta_horizon: float = 300.0
    visibility_timeout: int = 7200
    task_time_limit: int = 3600
    lease_seconds: float = 30.0
    outbox_grace: float = 10.0
    idle_seconds: float = 5.0
    inline_items: int = 1
    item_chunk: int = 16
    stall_seconds: float = 600.0
    misfire_threshold: float = 60.0
    beat_interval: float = 1.0
    # the beat writes cron fires this many seconds ahead and only sends them at their time
    stage_ahead: float = 5.0
    # a worker's task events wait this long for others to share their message (0: next loop turn)
    event_batch: float = 0.05
    queues: tuple[tuple[str, str], ...] = ()  # (kind slug, queue); the rest: DEFAULT_QUEUE
    demo_user: str = "demo@example.com"
    demo_password: str = "demo-password"  # noqa: S105 - documented demo default
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "jobengine@localhost"
    public_url: str | None = None
    saml_idp_cert: str | None = None  # a PEM file; None: SAML sign-on is off
    saml_idp_entity_id: str | None = None
    saml_idps: str | None = None  # a JSON file of company identity providers
    saml_audience: str | None = None
    saml_clock_skew: float = 120.0
    saml_max_validity: float = 600.0
    # UploadUrlsJob (jobengine/net/fetch.py)
    upload_allowed_hosts: tuple[str, ...] = ()
    upload_max_bytes: int = 512 * 1024 * 1024
    upload_connect_timeout: float = 10.0
    upload_read_timeout: float = 30.0
    upload_deadline: float = 600.0
    # completion callbacks (jobengine/notices/callbacks.py)
    callback_allowed_hosts: tuple[str, ...] = ()
    callback_timeout: float = 10.0
    # the janitor (jobengine/engine/janitor.py): how old an unreferenced file must be to go
    orphan_grace: float = 86400.0
    # the web service: proxies whose X-Forwarded-For is believed (addresses or CIDRs), the
    # Host names the WSDL may name, the secret of /metrics
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    metrics_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        env = dict(os.environ) if env is None else env
        home = Path(env.get("JOBENGINE_HOME") or "var").absolute()
        database_url = env.get("DATABASE_URL") or f"sqlite:///{home / 'jobengine.db'}"
        settings = cls(
            home=home,
            redis_url=env.get("REDIS_URL") or None,
            broker_url=env.get("JOBENGINE_BROKER_URL") or None,
            database_url=database_url,
            db_upgrade=env.get("JOBENGINE_DB_UPGRADE")
            or ("auto" if database_url.startswith("sqlite") else "check"),
            storage_url=_storage_url(env.get("JOBENGINE_STORAGE") or str(home / "storage")),
            storage_options=_json_object(env, "JOBENGINE_STORAGE_OPTIONS"),
            server_directory_root=_storage_url(env["JOBENGINE_SERVER_DIRECTORY_ROOT"])
            if env.get("JOBENGINE_SERVER_DIRECTORY_ROOT")
            else None,
            server_directory_options=_json_object(env, "JOBENGINE_SERVER_DIRECTORY_OPTIONS"),
            timezone=env.get("JOBENGINE_TIMEZONE") or _local_zone_name(),
            eta_horizon=_float(env, "JOBENGINE_ETA_HORIZON", 300.0),
            visibility_timeout=int(_float(env, "JOBENGINE_VISIBILITY_TIMEOUT", 7200)),
            task_time_limit=int(_float(env, "JOBENGINE_TASK_TIME_LIMIT", 3600)),
            lease_seconds=_float(env, "JOBENGINE_LEASE_SECONDS", 30.0),
            outbox_grace=_float(env, "JOBENGINE_OUTBOX_GRACE", 10.0),
            idle_seconds=_float(env, "JOBENGINE_IDLE_SECONDS", 5.0),
            inline_items=int(_grace(env, "JOBENGINE_INLINE_ITEMS", 1)),
            item_chunk=max(1, int(_float(env, "JOBENGINE_ITEM_CHUNK", 16))),
            stall_seconds=_float(env, "JOBENGINE_STALL_SECONDS", 600.0),
            misfire_threshold=_seconds(env, "JOBENGINE_MISFIRE_THRESHOLD", 60.0),
            beat_interval=_float(env, "JOBENGINE_BEAT_INTERVAL", 1.0),
            stage_ahead=_seconds(env, "JOBENGINE_STAGE_AHEAD", 5.0),
            event_batch=_seconds(env, "JOBENGINE_EVENT_BATCH_SECONDS", 0.05),
            demo_user=env.get("JOBENGINE_DEMO_USER") or "demo@example.com",
            demo_password=env.get("JOBENGINE_DEMO_PASSWORD") or "demo-password",
            smtp_host=env.get("JOBENGINE_SMTP_HOST") or "127.0.0.1",
            smtp_port=int(_float(env, "JOBENGINE_SMTP_PORT", 25)),
            smtp_user=env.get("JOBENGINE_SMTP_USER") or None,
            smtp_password=env.get("JOBENGINE_SMTP_PASSWORD") or None,
            smtp_starttls=env.get("JOBENGINE_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
            mail_from=env.get("JOBENGINE_MAIL_FROM") or "jobengine@localhost",
            public_url=(env.get("JOBENGINE_PUBLIC_URL") or "").rstrip("/") or None,
            saml_idp_cert=env.get("JOBENGINE_SAML_IDP_CERT") or None,
            saml_idp_entity_id=(env.get("JOBENGINE_SAML_IDP_ENTITY_ID") or "").strip() or None,
            saml_idps=(env.get("JOBENGINE_SAML_IDPS") or "").strip() or None,
            saml_audience=(env.get("JOBENGINE_SAML_AUDIENCE") or "").strip() or None,
            saml_clock_skew=_seconds(env, "JOBENGINE_SAML_CLOCK_SKEW", 120.0),
            saml_max_validity=_float(env, "JOBENGINE_SAML_MAX_VALIDITY", 600.0),
            queues=_queue_routes(env),
            upload_allowed_hosts=_comma_list(env, "JOBENGINE_UPLOAD_ALLOWED_HOSTS"),
            upload_max_bytes=int(_float(env, "JOBENGINE_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)),
            upload_connect_timeout=_float(env, "JOBENGINE_UPLOAD_CONNECT_TIMEOUT", 10.0),
            upload_read_timeout=_float(env, "JOBENGINE_UPLOAD_READ_TIMEOUT", 30.0),
            upload_deadline=_float(env, "JOBENGINE_UPLOAD_DEADLINE", 600.0),
            callback_allowed_hosts=_comma_list(env, "JOBENGINE_CALLBACK_ALLOWED_HOSTS"),
            callback_timeout=_float(env, "JOBENGINE_CALLBACK_TIMEOUT", 10.0),
            orphan_grace=_grace(env, "JOBENGINE_ORPHAN_GRACE", 86400.0),
            trusted_proxies=_networks(env, "JOBENGINE_TRUSTED_PROXIES"),
            allowed_hosts=tuple(
                h.lower().rstrip(".") for h in _comma_list(env, "JOBENGINE_ALLOWED_HOSTS")
            ),
            metrics_token=(env.get("JOBENGINE_METRICS_TOKEN") or "").strip() or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigurationError for settings that cannot work together."""
        if self.db_upgrade not in ("auto", "check"):
            raise ConfigurationError(
                f"JOBENGINE_DB_UPGRADE must be auto or check, not {self.db_upgrade!r}"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"unknown time zone {self.timezone!r}") from exc
        if self.task_time_limit >= self.visibility_timeout:
            raise ConfigurationError(
                "JOBENGINE_TASK_TIME_LIMIT must be below JOBENGINE_VISIBILITY_TIMEOUT, "
                "or Redis redelivers long tasks while they still run"
            )
        if not 0 <= self.stage_ahead < self.misfire_threshold:
            raise ConfigurationError(
                "JOBENGINE_STAGE_AHEAD must be at least 0 and below JOBENGINE_MISFIRE_THRESHOLD"
            )
        if self.event_batch > 60:
            raise ConfigurationError(
                "JOBENGINE_EVENT_BATCH_SECONDS must be at most 60: Flower would show tasks late"
            )
        if self.eta_horizon * 2 >= self.visibility_timeout:
            raise ConfigurationError(
                "JOBENGINE_ETA_HORIZON must be well below JOBENGINE_VISIBILITY_TIMEOUT, "
                "or Redis redelivers ETA messages that are still waiting"
            )
        if self.upload_allowed_hosts:  # UploadUrlsJob's allow list must parse
            from jobengine.net.policy import AddressPolicy

            AddressPolicy.parse(self.upload_allowed_hosts)
        if self.callback_timeout > 60:
            raise ConfigurationError(
                "JOBENGINE_CALLBACK_TIMEOUT must be at most 60 seconds: a callback is sent by the "
                "task that finishes a run, which must not wait long"
            )
        if self.callback_allowed_hosts:  # the completion callbacks' allow list must parse
            from jobengine.net.policy import AddressPolicy

            AddressPolicy.parse(self.callback_allowed_hosts, "JOBENGINE_CALLBACK_ALLOWED_HOSTS")
        if self.saml_idp_cert and not (self.saml_idp_entity_id and self.saml_audience):
            raise ConfigurationError(
                "JOBENGINE_SAML_IDP_CERT needs JOBENGINE_SAML_IDP_ENTITY_ID and "
                "JOBENGINE_SAML_AUDIENCE: an assertion's issuer and audience are always checked"
            )
        if self.saml_idps and not self.saml_audience:
            raise ConfigurationError(
                "JOBENGINE_SAML_IDPS needs JOBENGINE_SAML_AUDIENCE: an assertion's audience is "
                "always checked"
            )

    def queue_of(self, slug: str) -> str:
        """The queue of a job kind's tasks (``export``: ``jobengine`` unless routed)."""
        return dict(self.queues).get(slug, DEFAULT_QUEUE)

    @property
    def all_queues(self) -> list[str]:
        """``jobengine`` and every queue of ``JOBENGINE_QUEUES`` (what workers consume)."""
        return [DEFAULT_QUEUE, *sorted({q for _, q in self.queues} - {DEFAULT_QUEUE})]

    @property
    def soap_endpoint_url(self) -> str | None:
        """The public URL of the IPS SOAP endpoint, when ``JOBENGINE_PUBLIC_URL`` is set."""
        return f"{self.public_url}{SOAP_PATH}" if self.public_url else None

    @property
    def zone(self) -> ZoneInfo:
        """The server's time zone for schedules."""
        return ZoneInfo(self.timezone)

    @property
    def embedded_redis_path(self) -> Path:
        """Where the embedded Redis keeps its database file and socket."""
        return self.home / "redis" / "redis.db"

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some settings replaced (tests and the CLI use it)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings so the next get_settings() reads the environment again."""
    get_settings.cache_clear()
