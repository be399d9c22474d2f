"""Run one task: app context, signals, hooks, retries, and the outcome to record.

Used by the worker for every delivery, and by :mod:`~flask_jobs.eager` (``Task.apply`` and
eager mode) in the caller's process.
"""

from __future__ import annotations

import logging
import random
import traceback as _tb
from collections.abc import Callable
from typing import Any, cast

from flask import Flask

from . import signals, states
from .exceptions import (
    EncodeError,
    Ignore,
    Retry,
    TaskRevokedError,
    TimeLimitExceeded,
    describe,
)
from .logs import current_task
from .message import RETRY_FIELDS
from .request import Context, ExceptionInfo, TaskLike

log = logging.getLogger("flask_jobs.worker")


class Terminated(BaseException):  # noqa: N818 - not an error of the task's
    """Raised inside a task that is revoked with ``terminate=True``.

    A BaseException, so a task's ``except Exception`` cannot swallow it.
    """


class HardTimeLimit(BaseException):  # noqa: N818
    """Raised inside a task that ran past its hard ``time_limit``."""


class Outcome:
    """The result of one run, ready to be written.

    ``state`` is SUCCESS, FAILURE, RETRY or REVOKED; ``value`` the return value, the failure's
    description dict, or the retry's cause; ``countdown`` and ``retry_body`` for RETRY.
    """

    __slots__ = ("state", "value", "exception", "traceback", "countdown", "retry_body", "retval")

    def __init__(self, state: str, value: Any = None, exception: BaseException | None = None,
                 traceback: str = "", countdown: float = 0.0,
                 retry_body: dict[str, Any] | None = None, retval: Any = None) -> None:
        self.state, self.value, self.exception, self.traceback = state, value, exception, traceback
        self.countdown, self.retry_body, self.retval = countdown, retry_body, retval


def _backoff(task: TaskLike, retries: int) -> float:
    factor = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
    countdown = min(factor * (2.0 ** retries), float(task.retry_backoff_max))
    if task.retry_jitter:
        countdown = random.uniform(0, countdown)  # full jitter spreads a thundering herd
    return countdown


def _auto_retry(task: TaskLike, exc: Exception) -> Retry | None:
    """Turn ``exc`` into a Retry if the task asks for automatic retries of it (else None).

    Raises ``exc`` again (through :meth:`Task.retry`) when no retries are left.
    """
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    options = dict(task.retry_kwargs)
    if "countdown" not in options and task.retry_backoff:
        options["countdown"] = _backoff(task, task.request.retries)
    return task.retry(exc=exc, throw=False, **options)


#: Arms a run's time limits, ``(soft, hard) -> disarm`` (see :mod:`flask_jobs.worker.limits`).
Limits = Callable[[float | None, float | None], Callable[[], None]]


def execute(task: TaskLike, request: Context, app: Flask, limits: Limits | None = None,
            result_serializer: Callable[[Any], bytes] | None = None) -> Outcome:
    """Run ``task`` for ``request`` inside ``app``'s context and return the :class:`Outcome`.

    Never raises for anything the task does (except ``KeyboardInterrupt``); hooks and signal
    receivers that raise are logged and ignored.

    :param limits: arms the time limits, a callable ``(soft, hard) -> disarm`` (pool specific).
    :param result_serializer: ``dumps(value) -> bytes``; a return value it cannot encode fails
        the task with :class:`EncodeError` instead of breaking the worker. A ``None`` return
        value is left as it is: every serializer can encode it, and the worker's writer keeps
        its encoding, so the most common return value is not encoded again for every task.
    """
    args, kwargs, task_id = request.args, request.kwargs, request.id
    task.push_request(request)
    running = current_task.set((task.name, cast(str, task_id)))  # (for get_task_logger)
    einfo: ExceptionInfo | None = None
    outcome: Outcome
    try:
        with app.app_context():
            # Signals are checked for receivers here, not only in signals.send: building the
            # keyword arguments of a send nobody listens to is a measurable share of a no-op.
            if signals.task_prerun.receivers:
                signals.send(signals.task_prerun, task, task_id=task_id, task=task, args=args,
                             kwargs=kwargs)
            disarm = None
            try:
                soft = request.soft_time_limit or task.soft_time_limit
                hard = request.time_limit or task.time_limit
                if limits is not None and (soft or hard):
                    disarm = limits(soft, hard)
                try:
                    retval = task.run(*args, **kwargs)
                finally:
                    if disarm is not None:
                        disarm()
            except Retry as retry:
                outcome = _retry_outcome(task, request, retry)
            except Ignore as ignore:
                outcome = Outcome(states.IGNORED, ignore.replaced_by)
            except Terminated:
                outcome = Outcome(states.REVOKED, describe(TaskRevokedError("terminated")))
            except HardTimeLimit:
                exc = TimeLimitExceeded(f"Task ran longer than its time limit ({hard}s)")
                outcome = Outcome(states.FAILURE, describe(exc), exc, _format(exc))
            except Exception as exc:
                auto: Retry | None
                try:
                    auto = _auto_retry(task, exc)
                except Retry as r:  # pragma: no cover - throw=False never raises Retry
                    auto = r
                except Exception as final:
                    exc = final
                    auto = None
                if auto is not None:
                    outcome = _retry_outcome(task, request, auto)
                else:
                    outcome = Outcome(states.FAILURE, describe(exc), exc, _format(exc))
            else:
                outcome = Outcome(states.SUCCESS, retval, retval=retval)
                if (result_serializer is not None and retval is not None
                        and not _ignores_result(task, request)):
                    try:
                        outcome.value = result_serializer(retval)
                    except EncodeError as exc:
                        err = EncodeError(
                            f"Task {task.name!r} returned a {type(retval).__qualname__}, which "
                            f"the result serializer cannot encode: {exc}"
                        )
                        outcome = Outcome(states.FAILURE, describe(err), err, _format(err))
            if outcome.exception is not None:
                einfo = ExceptionInfo(outcome.exception, outcome.traceback)
            _run_hooks(task, request, outcome, einfo)
            if signals.task_postrun.receivers:
                signals.send(signals.task_postrun, task, task_id=task_id, task=task, args=args,
                             kwargs=kwargs, retval=outcome.retval, state=outcome.state)
    finally:
        current_task.reset(running)
        task.pop_request()
    return outcome


def _ignores_result(task: TaskLike, request: Context) -> bool:
    return bool(task.ignore_result if request.ignore_result is None else request.ignore_result)


def _format(exc: BaseException) -> str:
    return "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))


def _retry_outcome(task: TaskLike, request: Context, retry: Retry) -> Outcome:
    cause = retry.exc if retry.exc is not None else retry
    new_args = retry.args_override  # None: keep; [] is a new (empty) list
    new_kwargs = retry.kwargs_override
    body: dict[str, Any] = {
        "id": request.id,
        "task": task.name,
        "args": request.args if new_args is None else new_args,
        "kwargs": request.kwargs if new_kwargs is None else new_kwargs,
        "retries": request.retries + 1,
    }
    for key in RETRY_FIELDS:
        value = getattr(request, key, None)
        if value is not None and value != {}:
            body[key] = value
    return Outcome(states.RETRY, describe(cause), cause, _format(cause),
                   countdown=retry.when or 0.0, retry_body=body)


def _run_hooks(task: TaskLike, request: Context, outcome: Outcome,
               einfo: ExceptionInfo | None) -> None:
    """Call the task's hooks and the outcome's signal; their errors never reach the worker."""
    args, kwargs = request.args, request.kwargs
    task_id = cast(str, request.id)  # (always set for a run)
    exception = outcome.exception
    try:
        if outcome.state == states.SUCCESS:
            task.on_success(outcome.retval, task_id, args, kwargs)
            if signals.task_success.receivers:
                signals.send(signals.task_success, task, result=outcome.retval)
        elif outcome.state == states.RETRY:
            assert exception is not None and einfo is not None  # (a retry always has a cause)
            task.on_retry(exception, task_id, args, kwargs, einfo)
            signals.send(signals.task_retry, task, request=request, reason=outcome.exception,
                         einfo=einfo)
        elif outcome.state == states.FAILURE:
            assert exception is not None and einfo is not None  # (a failure has its exception)
            task.on_failure(exception, task_id, args, kwargs, einfo)
            signals.send(signals.task_failure, task, task_id=task_id,
                         exception=outcome.exception, traceback=outcome.traceback, args=args,
                         kwargs=kwargs, einfo=einfo)
        elif outcome.state == states.REVOKED:
            signals.send(signals.task_revoked, task, request=request, terminated=True,
                         expired=False)
        if outcome.state != states.RETRY:  # as Celery (RETRY is in its IGNORE_STATES) and docs
            task.after_return(outcome.state, outcome.retval, task_id, args, kwargs, einfo)
    except Exception:
        log.exception("A hook of task %s[%s] raised; ignoring it", task.name, task_id)

