"""Task states, with Celery's names and meanings."""

from __future__ import annotations

#: Waiting in a queue, delayed, or unknown to Celery (for us: queued; unknown ids are ``None``).
PENDING = "PENDING"
#: Received by a worker and running.
STARTED = "STARTED"
#: The conventional custom state for progress reports.
PROGRESS = "PROGRESS"
#: Failed, and queued again for another try.
RETRY = "RETRY"
#: Finished and returned a value.
SUCCESS = "SUCCESS"
#: Raised an exception, or was dead-lettered.
FAILURE = "FAILURE"
#: Cancelled, or discarded because it expired.
REVOKED = "REVOKED"

#: A run that raised :class:`~flask_jobs.exceptions.Ignore` (or replaced itself): an outcome
#: the worker writes no state for, never a task's stored state.
IGNORED = "IGNORED"

#: States after which nothing changes.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States in which the task is not finished.
UNREADY_STATES = frozenset({PENDING, STARTED, PROGRESS, RETRY})
#: States whose result is an exception.
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
#: Every state above (Celery's ``celery.states.ALL_STATES``, for code that imports it).
ALL_STATES = READY_STATES | UNREADY_STATES
