"""The one error hierarchy of jobengine.

Every failure a caller can see is an :class:`IpsFault`: it carries the IPS fault element name
(``authenticationFault``, ``authorizationFault`` or ``ipsApiFault``), the numeric code and a reason
written for a person. Each surface (Python, SOAP, JSON, CLI) maps it once.

::

    JobEngineError
     +-- IpsFault                          fault, code, reason
     |    +-- AuthenticationFault           10000-10002
     |    |    +-- NoCredentials            10000 no user and password (or token)
     |    |    +-- InvalidCredentials       10001 wrong password, unknown user, bad token
     |    |         +-- TooManyAttempts     10001 locked out for a while after failures
     |    +-- AuthorizationFault            20000-20009
     |    |    +-- InvalidCompany           20000 unknown company
     |    |    +-- InvalidRequestUser       20002 userHandle names no user
     |    |    +-- NoOperationPermission    20003 role may not call the operation
     |    |    +-- NoImpersonationPermission 20004 may not act as that userHandle
     |    |    +-- IllegalCompany           20006 company not the caller's
     |    |    +-- IllegalRequestUser       20007 userHandle's user is not in the company
     |    +-- IpsApiFault
     |         +-- ServerError              30000 the engine could not do it (broker down...)
     |         |    +-- ConversionFailed    30000 one image failed (jobengine.imaging.errors)
     |         +-- InvalidParameter         30001 bad value, unknown handle, bad cron
     |         |    +-- NotSupported        30001 a job kind or option this server cannot run yet
     |         |    +-- LimitExceeded       30001 export size / count limits
     |         +-- MissingParameter         30002 required element absent, no job type
     |         +-- InvalidRequestXml        30003 malformed or hostile XML
     +-- Unavailable                        a service is down for now: retried, never a verdict
     |    +-- StoreUnavailable              the job store cannot be reached (or is locked, full)
     +-- ConfigurationError                 settings that cannot work (not a caller fault)
     +-- RunStopped                         a signal, no failure: the run was stopped (stopJob,
                                            deleteJob) while an item worked; it is cancelled

``Unavailable`` is deliberately not an ``IpsFault``: code that turns faults into per-asset log
rows (``except IpsFault``) must never record an outage as a failed file. The worker waits and
tries the step again; the public operations (:func:`caller_faults`) and the web surfaces give
callers the IPS fault ``ServerError`` (30000) with the reason.
"""

from __future__ import annotations

import errno
import functools
import math
from collections.abc import Callable
from typing import ClassVar, ParamSpec, TypeVar

__all__ = [
    "AuthenticationFault",
    "AuthorizationFault",
    "ConfigurationError",
    "IllegalCompany",
    "IllegalRequestUser",
    "InvalidCompany",
    "InvalidCredentials",
    "InvalidParameter",
    "InvalidRequestUser",
    "InvalidRequestXml",
    "IpsApiFault",
    "IpsFault",
    "JobEngineError",
    "LimitExceeded",
    "MissingParameter",
    "NoCredentials",
    "NoImpersonationPermission",
    "NoOperationPermission",
    "NotSupported",
    "RunStopped",
    "ServerError",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unavailable",
    "caller_faults",
    "log_reason",
]


class JobEngineError(Exception):
    """Base of every error jobengine raises on purpose."""


class ConfigurationError(JobEngineError):
    """Raised when settings cannot work (bad URL, unreachable service at start-up)."""


class RunStopped(JobEngineError):
    """Raised inside an item when its run was stopped while it worked (a conversion in flight
    is ended); the runner cancels the item instead of counting it as failed."""


class IpsFault(JobEngineError):
    """Raised for every failure reported to a caller, as an IPS fault with code and reason."""

    fault: ClassVar[str] = "ipsApiFault"
    code: ClassVar[int] = 30000
    name: ClassVar[str] = "EXCEPTION"

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.fault} {self.code} ({self.name}): {self.reason}"

    def to_dict(self) -> dict[str, object]:
        """The fault as plain data (the shape the JSON API returns)."""
        out: dict[str, object] = {"fault": self.fault, "code": self.code, "reason": self.reason}
        if self.field is not None:
            out["field"] = self.field
        return out


class AuthenticationFault(IpsFault):
    """Raised when credentials are missing (10000), wrong (10001) or name no user (10002)."""

    fault = "authenticationFault"
    code = 10001
    name = "INVALID_CREDENTIALS"


class NoCredentials(AuthenticationFault):
    """Raised when a request carries no user name and password (or token)."""

    code = 10000
    name = "NO_CREDENTIALS"


class InvalidCredentials(AuthenticationFault):
    """Raised for a wrong password, an unknown user, or a bad, unknown or revoked token."""

    code = 10001
    name = "INVALID_CREDENTIALS"


class TooManyAttempts(InvalidCredentials):
    """Raised, without checking anything, while a user name or client is locked out."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed attempts; try again in {self.retry_after} s")


class AuthorizationFault(IpsFault):
    """Raised when the caller may not do what it asked."""

    fault = "authorizationFault"
    code = 20009
    name = "MISSING_PERMISSION"


class InvalidCompany(AuthorizationFault):
    """Raised when a company handle names no company."""

    code = 20000
    name = "INVALID_COMPANY"


class InvalidRequestUser(AuthorizationFault):
    """Raised when a userHandle names no user."""

    code = 20002
    name = "INVALID_REQUEST_USER"


class IllegalRequestUser(AuthorizationFault):
    """Raised when a userHandle's user is not a member of the request's company."""

    code = 20007
    name = "ILLEGAL_REQUEST_USER"


class NoImpersonationPermission(AuthorizationFault):
    """Raised when submitJob's userHandle names another user the caller may not act for."""

    code = 20004
    name = "NO_IMPERSONATION_PERMISSION"


class NoOperationPermission(AuthorizationFault):
    """Raised when the caller's user type may not call the operation."""

    code = 20003
    name = "NO_OPERATION_PERMISSION"


class IllegalCompany(AuthorizationFault):
    """Raised when a handle belongs to a company the caller is not a member of."""

    code = 20006
    name = "ILLEGAL_COMPANY"


class IpsApiFault(IpsFault):
    """Raised for request and processing faults (the ipsApiFault element)."""


class ServerError(IpsApiFault):
    """Raised when the engine cannot carry out a valid request (for example the broker is down)."""

    code = 30000
    name = "EXCEPTION"


class InvalidParameter(IpsApiFault):
    """Raised for a bad value: enum, handle, cron, date, locale, two job types, both times."""

    code = 30001
    name = "INVALID_PARAMETER"


class NotSupported(InvalidParameter):
    """Raised when a job kind or option is valid IPS but this server does not run it yet."""


class LimitExceeded(InvalidParameter):
    """Raised when a request passes a documented limit (export of more than 500 assets or 1 GB)."""


class MissingParameter(IpsApiFault):
    """Raised when a required element is absent, including a request with no job type."""

    code = 30002
    name = "MISSING_PARAMETER"


class InvalidRequestXml(IpsApiFault):
    """Raised for XML that is malformed, hostile (entities, DTDs) or of the wrong shape."""

    code = 30003
    name = "INVALID_REQUEST_XML"


class Unavailable(JobEngineError):
    """Raised when a service the engine needs is down for now (retried; see the module doc)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def as_fault(self) -> ServerError:
        """What a caller is told: the IPS server error, with the reason."""
        return ServerError(self.reason)


class StoreUnavailable(Unavailable):
    """Raised when the job store cannot be reached, or stays locked or full past its timeout."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def caller_faults(operation: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a public operation: an outage reaches its caller as the IPS fault ServerError."""

    @functools.wraps(operation)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return operation(*args, **kwargs)
        except Unavailable as exc:
            raise exc.as_fault() from exc

    return wrapper


def log_reason(exc: BaseException) -> str:
    """What a job log row says about a failure, for the user: a fault's reason; a file error's
    cause in words (never its path: storage keys and local paths stay in the worker log);
    anything else only that it was unexpected. The caller logs the exception itself."""
    if isinstance(exc, IpsFault):
        return exc.reason
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        key = str(getattr(exc, "key", ""))  # StorageFull names the key: the file's name is told
        return (
            f"no space left on device writing {key.rpartition('/')[2]}"
            if key
            else ("no space left on the storage")
        )
    if isinstance(exc, FileNotFoundError):
        return "the file is missing"
    if isinstance(exc, PermissionError):
        return "the file may not be read or written here"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the file could not be read or written ({exc.strerror.lower()})"
    return "an unexpected error (the worker log has the details)"


# Codes by fault element, for the surfaces that map codes back to names.
FAULT_CODE_NAMES: dict[int, str] = {
    10000: "NO_CREDENTIALS",
    10001: "INVALID_CREDENTIALS",
    10002: "INVALID_USER",
    20000: "INVALID_COMPANY",
    20001: "INVALID_REQUEST_USERNAME",
    20002: "INVALID_REQUEST_USER",
    20003: "NO_OPERATION_PERMISSION",
    20004: "NO_IMPERSONATION_PERMISSION",
    20005: "ILLEGAL_PARAMETER_VALUE",
    20006: "ILLEGAL_COMPANY",
    20007: "ILLEGAL_REQUEST_USER",
    20008: "ILLEGAL_ACCESS_GROUP",
    20009: "MISSING_PERMISSION",
    30000: "EXCEPTION",
    30001: "INVALID_PARAMETER",
    30002: "MISSING_PARAMETER",
    30003: "INVALID_REQUEST_XML",
}
