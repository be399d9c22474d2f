"""flask-jobs: background jobs with live progress for Flask, on Redis, with Celery's API."""

from __future__ import annotations

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
from .result import AsyncResult, EagerResult, GroupResult
from .task import Task

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
    "group",
    "maybe_signature",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]
