"""Structured logging: the job, company and run of the running task on every log record.

The tasks (:mod:`jobengine.engine.taskkit`) enter :func:`job_context` with their message's labels; a
:class:`JobContextFilter` on the handlers copies them onto every record emitted meanwhile (from any
logger, the task's own or a library's), and :class:`JsonFormatter` writes one JSON object a line.

Celery workers get both through the ``after_setup_logger`` / ``after_setup_task_logger`` signals
connected here (``jobengine.celery_app`` imports this module). ``JOBENGINE_LOG_JSON=1`` (what
``jobengine worker --json-logs`` sets) switches the worker's output to JSON.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger

__all__ = [
    "CONTEXT_FIELDS",
    "JobContextFilter",
    "JsonFormatter",
    "configure_logging",
    "current_context",
    "job_context",
]

CONTEXT_FIELDS = ("job", "company", "run")
JSON_ENV = "JOBENGINE_LOG_JSON"

_context: ContextVar[dict[str, str] | None] = ContextVar("jobengine_log_context", default=None)


def current_context() -> dict[str, str]:
    """The job, company and run of the task running in this context ({} outside tasks)."""
    return dict(_context.get() or {})


@contextmanager
def job_context(labels: Mapping[str, Any]) -> Iterator[None]:
    """Label the records logged inside the block with ``labels``' job, company and run."""
    fields = {k: str(labels[k]) for k in CONTEXT_FIELDS if labels.get(k) is not None}
    token = _context.set(fields)
    try:
        yield
    finally:
        _context.reset(token)


def _task_labels() -> dict[str, str]:
    """The labels of the Celery task this thread is running, from its message's kwargs: for
    Celery's own lines about our tasks (``Task ... succeeded in ...``), logged around them."""
    from celery import current_task

    request = getattr(current_task, "request", None) if current_task else None
    kwargs = getattr(request, "kwargs", None)
    if not isinstance(kwargs, dict):
        return {}
    return {k: str(kwargs[k]) for k in CONTEXT_FIELDS if kwargs.get(k) is not None}


class JobContextFilter(logging.Filter):
    """Sets ``record.job``, ``record.company`` and ``record.run`` (None outside a task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get() or _task_labels()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:  # an explicit extra= wins
                setattr(record, name, fields.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, job/company/run, task, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in (*CONTEXT_FIELDS, "task_id", "task_name"):
            value = getattr(record, name, None)
            if value is not None and value != "???":  # Celery's placeholder outside tasks
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(json: bool, logger: logging.Logger | None = None) -> None:
    """Put the context filter (and, with ``json``, the JSON formatter) on ``logger``'s handlers.

    ``logger`` defaults to the root logger; with no handler there, a stderr handler is added.
    Calling it again does not add a second filter.
    """
    target = logger or logging.getLogger()
    if not target.handlers:
        target.addHandler(logging.StreamHandler())
    for handler in target.handlers:
        if not any(isinstance(f, JobContextFilter) for f in handler.filters):
            handler.addFilter(JobContextFilter())
        if json:
            handler.setFormatter(JsonFormatter())


def json_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``JOBENGINE_LOG_JSON`` asks for JSON output."""
    value = (environ if environ is not None else os.environ).get(JSON_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


@after_setup_logger.connect  # type: ignore[untyped-decorator]
@after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def _on_celery_logging(logger: logging.Logger, **_: Any) -> None:
    configure_logging(json=json_from_env(), logger=logger)
