"""The worker's log lines about tasks, in Celery's words (``Task add[id] received``,
``... succeeded in 0.0041s: 4``, ``... raised unexpected: ValueError('boom')`` and its
traceback, ``... retry: Retry in 10s``).

Each function first asks whether its level is on, so with the worker's default level for
benchmarks (``-l WARNING``) a task costs no formatting at all.
"""

from __future__ import annotations

import logging
import reprlib

from .. import states
from ..execution import Outcome
from ..request import TaskLike

log = logging.getLogger("flask_jobs.worker.tasks")
INFO, ERROR = logging.INFO, logging.ERROR

#: The longest result shown in a "succeeded" line (Celery's ``worker`` ``resultrepr_maxsize``).
RESULT_REPR_MAXSIZE = 1024

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = RESULT_REPR_MAXSIZE
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 100


def short_repr(value: object) -> str:
    """``repr(value)`` cut to :data:`RESULT_REPR_MAXSIZE` characters."""
    text = _repr.repr(value)
    if len(text) > RESULT_REPR_MAXSIZE:
        text = text[:RESULT_REPR_MAXSIZE - 3] + "..."
    return text


def received(name: str, task_id: str) -> None:
    """``Task name[id] received``."""
    if log.isEnabledFor(INFO):
        log.info("Task %s[%s] received", name, task_id)


def discarded(name: str, task_id: str, why: str) -> None:
    """A task dropped without running: revoked or expired."""
    if log.isEnabledFor(INFO):
        log.info("Discarding %s task: %s[%s]", why, name, task_id)


def finished(task: TaskLike, task_id: str, outcome: Outcome, runtime: float) -> None:
    """The line of a run's outcome: succeeded (with the runtime and the result), failed (with
    the traceback, unless the exception is one of the task's ``throws``), retry, revoked."""
    state, name = outcome.state, task.name
    if state == states.SUCCESS:
        if log.isEnabledFor(INFO):
            log.info("Task %s[%s] succeeded in %ss: %s", name, task_id, round(runtime, 6),
                     short_repr(outcome.retval))
    elif state == states.FAILURE:
        exc = outcome.exception
        throws = getattr(task, "throws", ())
        if exc is not None and throws and isinstance(exc, throws):
            if log.isEnabledFor(INFO):
                log.info("Task %s[%s] raised expected: %r", name, task_id, exc)
        elif log.isEnabledFor(ERROR):
            log.error("Task %s[%s] raised unexpected: %r\n%s", name, task_id, exc,
                      outcome.traceback.rstrip())
    elif state == states.RETRY:
        if log.isEnabledFor(INFO):
            log.info("Task %s[%s] retry: Retry in %ss: %r", name, task_id,
                     round(outcome.countdown, 3), outcome.exception)
    elif state == states.REVOKED:
        if log.isEnabledFor(INFO):
            log.info("Task %s[%s] revoked: terminated while running", name, task_id)
    elif log.isEnabledFor(INFO):
        log.info("Task %s[%s] ignored", name, task_id)
