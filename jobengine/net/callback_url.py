"""The completion URL of a job-type payload (``httpCompletionUrl`` of the publish kinds,
``postHttpUrl`` of the upload, reprocess and rip kinds): which field holds it, and the submit-time
check that it could ever be called.

It sits below the job kinds, which check it at submit, and below :mod:`jobengine.notices.callbacks`,
which calls it when a run ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from jobengine.errors import InvalidParameter
from jobengine.net.fetch import FetchError, check_url

__all__ = ["CALLBACK_FIELDS", "MAX_URL_LENGTH", "check_completion_url", "completion_url"]

# payload attribute -> its IPS name: publish kinds, then upload / reprocess / rip kinds
CALLBACK_FIELDS = {"http_completion_url": "httpCompletionUrl", "post_http_url": "postHttpUrl"}
MAX_URL_LENGTH = 2048


def completion_url(payload: BaseModel | Mapping[str, Any]) -> tuple[str, str] | None:
    """A job-type payload's completion URL and the IPS name of its field
    (``httpCompletionUrl`` or ``postHttpUrl``), from the model or from its stored IPS dict."""
    for attribute, name in CALLBACK_FIELDS.items():
        if isinstance(payload, BaseModel):
            value = getattr(payload, attribute, None)
        else:
            value = payload.get(name)
        if isinstance(value, str) and value:
            return name, value
    return None


def check_completion_url(element: str, job: BaseModel) -> None:
    """Submit-time check of a payload's completion URL: InvalidParameter naming the field
    (``<element>/httpCompletionUrl``) for one too long or that could never be called."""
    found = completion_url(job)
    if found is None:
        return
    name, url = found
    path = f"{element}/{name}"
    if len(url) > MAX_URL_LENGTH:
        raise InvalidParameter(
            f"{path} is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed",
            field=path,
        )
    try:
        check_url(url)
    except FetchError as exc:
        raise InvalidParameter(f"{path} cannot be called: {exc.reason}", field=path) from None
