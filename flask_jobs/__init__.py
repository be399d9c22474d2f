"""flask-jobs: background jobs with live progress for Flask, on Redis, with Celery's API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    subtask,
    xmap,
    xstarmap,
)
from .exceptions import (
    ChordError,
    MaxRetriesExceededError,
    Retry,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
)
from .extension import Jobs
from .logs import get_task_logger
from .result import AsyncResult, EagerResult, GroupResult
from .task import Task

if TYPE_CHECKING:
    from .schedules import crontab, schedule
    from .solar_schedule import solar

#: Names loaded on first use (Celery has them in ``celery.schedules``): a worker or a web
#: process without periodic tasks does not load the schedule code.
_LAZY = {"crontab": "schedules", "schedule": "schedules", "solar": "solar_schedule"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'flask_jobs' has no attribute {name!r}")


__all__ = [
    "__version__",
    "AsyncResult",
    "ChordError",
    "EagerResult",
    "GroupResult",
    "Jobs",
    "MaxRetriesExceededError",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "chain",
    "chord",
    "chunks",
    "crontab",
    "get_task_logger",
    "group",
    "maybe_signature",
    "schedule",
    "signature",
    "solar",
    "subtask",
    "xmap",
    "xstarmap",
]
