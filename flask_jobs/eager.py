"""Eager runs: a task run in the caller's process (``Task.apply`` and :data:`JOBS_ALWAYS_EAGER`).

The run goes through the same :func:`~flask_jobs.execution.execute` as a worker's (app
context, signals, hooks, retries); what differs is that retries run again at once, progress is
kept in memory, and the outcome comes back as an :class:`~flask_jobs.EagerResult` instead of
being written to Redis.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, has_app_context

from . import signals, states
from .execution import execute
from .message import new_task_id, signature_dict
from .request import Context, TaskLike, progress_meta
from .result import EagerResult
from .state import AppState


class EagerReporter:
    """Progress reporter of an eager run: keeps the last state for the :class:`EagerResult`."""

    def __init__(self, task: TaskLike | None = None, task_id: str | None = None) -> None:
        self.task, self.task_id = task, task_id
        self.state: str | None = None
        self.meta: Any = None
        self.count = 0

    def report(self, state: str, meta: Any) -> None:
        """Remember ``state`` and ``meta``."""
        self.state, self.meta = state, meta
        self.count += 1
        signals.send(signals.task_progress, self.task, task_id=self.task_id, state=state,
                     meta=meta)

    def progress(self, current: float, total: float | None, status: str | None,
                 extra: dict[str, Any]) -> None:
        """Remember a ``PROGRESS`` report."""
        self.report(states.PROGRESS, progress_meta(current, total, status, extra))


def run_eagerly(state: AppState, task: TaskLike, args: list[Any], kwargs: dict[str, Any],
                task_id: str | None, options: dict[str, Any]) -> EagerResult:
    """Run ``task`` in this process and return its :class:`EagerResult`.

    Retries run again at once. On success, the ``link`` callbacks in ``options`` run eagerly
    too, with the result as their first argument (unless immutable), as a worker would send
    them.
    """
    app = current_app._get_current_object() if has_app_context() else state.app  # type: ignore[attr-defined]
    task_id = task_id or new_task_id()
    retries = 0
    while True:
        reporter = EagerReporter(task, task_id)
        request = Context(id=task_id, task=task.name, args=args, kwargs=kwargs, retries=retries,
                          is_eager=True, called_directly=False, hostname="eager",
                          delivery_info={"queue": options.get("queue")},
                          headers=options.get("headers") or {}, reporter=reporter,
                          owner=options.get("owner"))
        outcome = execute(task, request, app)
        if outcome.state != states.RETRY:
            break
        retries += 1
        body = outcome.retry_body or {}
        args, kwargs = body.get("args", args), body.get("kwargs", kwargs)
    if outcome.state == states.SUCCESS and options.get("link"):
        links = options["link"]
        for link in links if isinstance(links, (list, tuple)) else [links]:
            sig = signature_dict(link)
            link_args = sig["args"] if sig["immutable"] else [outcome.retval, *sig["args"]]
            link_options = dict(sig["options"])
            run_eagerly(state, state.task(sig["task"]), link_args, sig["kwargs"],
                        link_options.pop("task_id", None), link_options)
    return EagerResult(task_id, outcome.state, outcome.retval if outcome.state == states.SUCCESS
                       else outcome.exception, outcome.traceback, jobs=state.jobs,
                       propagate=state.settings.eager_propagates, last_meta=reporter.meta,
                       task_name=task.name)
