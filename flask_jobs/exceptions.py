"""Exceptions, with Celery's names where Celery has one."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Base class of every flask-jobs error."""


class Retry(JobsError):  # noqa: N818 - Celery's name
    """Raised by :meth:`Task.retry` to tell the worker the task is being retried.

    :param message: a human-readable reason.
    :param exc: the exception that caused the retry, if any.
    :param when: the countdown in seconds.
    """

    #: New positional arguments for the retry (``retry(args=...)``); None keeps the old ones.
    args_override: list[Any] | None = None
    #: New keyword arguments for the retry (``retry(kwargs=...)``); None keeps the old ones.
    kwargs_override: dict[str, Any] | None = None

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: float | None = None) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        super().__init__(message, exc, when)

    def __str__(self) -> str:
        reason = f": {self.exc!r}" if self.exc is not None else ""
        when = f" in {self.when:g}s" if self.when else ""
        return f"Retry{when}{reason}"


class MaxRetriesExceededError(JobsError):
    """A task asked to retry more times than its ``max_retries``."""


class TaskError(JobsError):
    """Base for errors about a task's run."""


class Ignore(JobsError):
    """Raised in a task: end the run without recording a state (Celery's name). The record
    keeps its last state and expires like a result.

    :meth:`Task.replace <flask_jobs.Task.replace>` raises it with ``replaced_by``: the id of
    the task whose outcome becomes this one's.
    """

    def __init__(self, reason: str = "", replaced_by: str | None = None) -> None:
        super().__init__(reason)
        self.replaced_by = replaced_by


class SoftTimeLimitExceeded(TaskError):
    """Raised inside a task when its ``soft_time_limit`` has passed, so it can clean up."""


class TimeLimitExceeded(TaskError):
    """A task ran past its hard ``time_limit`` and was stopped."""


class TimeoutError(JobsError):  # noqa: A001 - Celery's name
    """:meth:`AsyncResult.get` did not see a final state within its timeout."""


class TaskRevokedError(TaskError):
    """The task was revoked (cancelled or expired) and has no result."""


class WorkerLostError(TaskError):
    """The worker running the task died and the task will not be delivered again."""


class DeadLetteredError(TaskError):
    """The task was moved to the dead-letter list (see ``flask jobs dlq``)."""


class ChordError(TaskError):
    """A chord's header task failed or was revoked, so its body did not run (Celery's name):
    ``Dependency <id> raised <the error>``."""


class IncompleteStream(TaskError):
    """A result's callbacks were collected before all of them were ready (Celery's name)."""


class NotRegistered(JobsError, KeyError):  # noqa: N818 - Celery's name
    """No task of that name is registered with this :class:`~flask_jobs.Jobs`."""

    def __str__(self) -> str:
        return (f"Task {self.args[0]!r} is not registered. Import the module that defines it "
                "before starting the worker, or check the name passed to send_task().")


class EncodeError(JobsError, TypeError):
    """A value could not be encoded with the chosen serializer. Nothing was sent."""


class DecodeError(JobsError, ValueError):
    """A message or result could not be decoded."""


class ContentDisallowed(DecodeError):
    """A message used a content type that is not in :data:`JOBS_ACCEPT_CONTENT`."""


class BrokerUnavailable(JobsError, ConnectionError):
    """Redis could not be reached in time. Web views should answer 503 and let clients retry."""


class PayloadTooLarge(EncodeError):
    """An encoded message is larger than :data:`JOBS_MAX_MESSAGE_SIZE`. Nothing was sent."""


class ImproperlyConfigured(JobsError, RuntimeError):
    """The extension's configuration is missing or wrong."""


def describe(exc: BaseException) -> dict[str, Any]:
    """Return the JSON-safe description of an exception that is stored as a task's failure.

    Only names and strings are kept; nothing is ever imported or unpickled when it is read back
    (the lesson of CVE-2021-23727).
    """
    cls = type(exc)
    try:
        # KeyError's str() is the repr of its key; keep the key so the rebuilt error is equal.
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            message = str(exc.args[0])
        else:
            message = str(exc)
    except Exception:  # a broken __str__ must not break the failure path
        message = object.__repr__(exc)
    return {"exc_type": cls.__name__, "exc_module": cls.__module__, "exc_message": message[:10000]}
