"""The :class:`Task`: a registered function with Celery's options, ways to call it, and what it
can do while it runs (``retry``, ``update_state``, ``progress``, ``self.request``).

Sending goes through :mod:`~flask_jobs.calling`, running through
:mod:`~flask_jobs.execution` (in a worker) or :mod:`~flask_jobs.eager` (``apply``). The request
of a run (:class:`Context`, :class:`ExceptionInfo`) lives in :mod:`flask_jobs.request` and the
message format (:func:`parse_rate_limit`) in :mod:`flask_jobs.message`; both are importable
from here as well, where earlier versions defined them.
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import calling
from .canvas import Signature, chunks, maybe_signature, xmap, xstarmap
from .canvas.replace import send_replacement
from .exceptions import Ignore, MaxRetriesExceededError, Retry
from .message import parse_rate_limit, seconds, seconds_until
from .request import Context, ExceptionInfo
from .result import AsyncResult, EagerResult
from .state import Registry

__all__ = ["Context", "ExceptionInfo", "Task", "parse_rate_limit"]

_DEFAULT_CONTEXT = Context()


class Task:
    """A task. Made by :meth:`Jobs.task`; subclass it and pass ``base=`` to add hooks.

    Class attributes are the task's options (Celery's names and defaults).
    """

    #: The registered name (default ``module.function``).
    name: str = ""
    #: The :class:`~flask_jobs.Jobs` the task belongs to.
    jobs: Registry
    #: Whether the function receives the task as ``self``.
    bind = False
    #: Queue to send to (routes in :data:`JOBS_TASK_ROUTES` win).
    queue: str | None = None
    #: Default priority 0-9 (9 first); None means :data:`JOBS_TASK_DEFAULT_PRIORITY`.
    priority: int | None = None
    #: How many times :meth:`retry` may retry; None for no limit.
    max_retries: int | None = 3
    #: Countdown of :meth:`retry` in seconds when none is given.
    default_retry_delay: float = 180
    #: Exception types that retry the task automatically.
    autoretry_for: tuple[type[BaseException], ...] = ()
    #: Options for automatic retries (e.g. ``{"max_retries": 5, "countdown": 2}``).
    retry_kwargs: dict[str, Any] = {}
    #: Exponential backoff for automatic retries: True (factor 1 s) or the factor in seconds.
    retry_backoff: bool | float = False
    #: Upper bound of the backoff in seconds.
    retry_backoff_max: float = 600
    #: Randomise the backoff (full jitter) to spread retries.
    retry_jitter = True
    #: Discard the task unrun if it starts later than this (seconds, timedelta or datetime).
    expires: float | dt.timedelta | dt.datetime | None = None
    #: Do not store the return value.
    ignore_result = False
    #: Hard limit in seconds: the task is stopped and fails with TimeLimitExceeded.
    time_limit: float | None = None
    #: Soft limit in seconds: SoftTimeLimitExceeded is raised inside the task.
    soft_time_limit: float | None = None
    #: Serializer of this task's messages (default :data:`JOBS_TASK_SERIALIZER`).
    serializer: str | None = None
    #: At most this many runs per second, minute or hour over all workers: ``"10/s"``,
    #: ``"100/m"``, ``"500/h"`` or a number (per second). See :func:`parse_rate_limit`.
    rate_limit: str | float | None = None
    #: Check call arguments against the function's signature when sending.
    typing = True
    #: Expected exceptions (Celery's ``throws``): a failure with one of them is logged by the
    #: worker at INFO without a traceback ("raised expected"); it still fails the task.
    throws: tuple[type[BaseException], ...] = ()

    _signature: inspect.Signature | None = None
    #: Number of parameters when all are plain positional ones without defaults, else -1.
    _plain_arity = -1
    _local: threading.local

    def _bind_function(self, fn: Callable[..., Any]) -> None:
        parse_rate_limit(self.rate_limit)  # a typo fails at import, not in the worker
        self._local = threading.local()
        # The function replaces the placeholder method on this instance (Celery's Task.run).
        self.run = types.MethodType(fn, self) if self.bind else fn  # type: ignore[method-assign]
        if self.typing:
            try:
                self._signature = inspect.signature(self.run)
            except (TypeError, ValueError):
                self._signature = None
            else:
                params = self._signature.parameters.values()
                if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params):
                    self._plain_arity = len(params)

    def run(self, *args: Any, **kwargs: Any) -> Any:  # replaced per task
        """The task body."""
        raise NotImplementedError

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Check that a call's arguments fit the function (:attr:`typing`).

        :raises TypeError: naming the task and what does not fit; nothing is sent.
        """
        if self._signature is None or (not kwargs and len(args) == self._plain_arity):
            return  # common case first: plain positional parameters, no keywords, exact count
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"Wrong arguments for task {self.name!r}: {exc}") from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the body here and now, like a plain function call (as in Celery)."""
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # -- request -----------------------------------------------------------------------------

    @property
    def request(self) -> Context:
        """The :class:`Context` of the run in progress in this thread."""
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else _DEFAULT_CONTEXT

    def push_request(self, request: Context) -> None:
        """Make ``request`` current in this thread (the worker does this around each run)."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(request)

    def pop_request(self) -> None:
        """Undo :meth:`push_request`."""
        self._local.stack.pop()

    # -- calling -----------------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task with these arguments: ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Send the task to a worker and return its :class:`AsyncResult`.

        :param args: positional arguments.
        :param kwargs: keyword arguments.
        :param countdown: seconds to wait before running (float).
        :param eta: a :class:`~datetime.datetime` to run at (naive means UTC).
        :param expires: seconds, timedelta or datetime after which it is discarded unrun.
        :param queue: the queue (else routes, the task's queue, the default queue).
        :param priority: 0-9, 9 runs first.
        :param task_id: the id to use (default: a random UUID4, unguessable).
        :param headers: extra data, readable as ``self.request.headers``.
        :param link: signature(s) to call with the result on success.
        :param link_error: signature(s) to call with the task id on failure.
        :param owner: who started it; the status views can allow only that owner.
        :param serializer: ``json`` (default), ``msgpack`` or ``pickle``.
        :param time_limit: override the task's hard limit for this call.
        :param soft_time_limit: override the task's soft limit for this call.
        :raises EncodeError: an argument cannot be encoded; nothing was queued.
        :raises BrokerUnavailable: Redis could not be reached in time.
        """
        return calling.send(self.jobs.state(), self, self.name, args, kwargs, options)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              task_id: str | None = None, **options: Any) -> EagerResult:
        """Run the task here, synchronously, and return an :class:`EagerResult`.

        Retries run at once (countdowns are not waited for). With
        :data:`JOBS_EAGER_PROPAGATES` the task's exception is raised by ``get()``.
        """
        return calling.apply_eagerly(self.jobs.state(), self, args, kwargs,
                                     {**options, "task_id": task_id})

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """The :class:`AsyncResult` of ``task_id``."""
        return AsyncResult(task_id, jobs=self.jobs, task_name=self.name)

    def signature(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  immutable: bool = False, **options: Any) -> Signature:
        """A :class:`~flask_jobs.canvas.Signature` of this task with these arguments and
        options (``immutable=True``: it ignores partial arguments, as :meth:`si`)."""
        return Signature(self.name, args, kwargs, options, immutable=immutable, app=self.jobs)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """Shortcut: ``signature(args, kwargs)``."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it ignores the parent's result in a chain or callback."""
        sig = self.signature(args, kwargs)
        sig["immutable"] = True
        return sig

    def map(self, it: Iterable[Any]) -> xmap:
        """One task calling this one for each item, in order (Celery's ``task.map``)."""
        return xmap(self.s(), it, app=self.jobs)

    def starmap(self, it: Iterable[Any]) -> xstarmap:
        """One task calling this one with each item as its arguments (``task.starmap``)."""
        return xstarmap(self.s(), it, app=self.jobs)

    def chunks(self, it: Iterable[Any], n: int) -> chunks:
        """The items in parts of ``n``, each part a starmap task, sent as a group
        (``task.chunks``)."""
        return chunks(self.s(), it, n, app=self.jobs)

    # -- inside a run ------------------------------------------------------------------------

    def retry(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              exc: BaseException | None = None, throw: bool = True, eta: dt.datetime | None = None,
              countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Retry:
        """Retry the running task: raises :class:`~flask_jobs.exceptions.Retry`.

        :param exc: the cause; raised as the task's failure when retries are exhausted.
        :param countdown: seconds until the retry (float), default ``default_retry_delay``.
        :param eta: when to retry instead of ``countdown``.
        :param max_retries: override the task's ``max_retries`` for this decision.
        :raises MaxRetriesExceededError: no retries left and no ``exc`` was given.
        """
        request = self.request
        if request.called_directly:
            raise RuntimeError(f"{self.name}.retry() was called outside a worker run")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}: max_retries ({limit}) exceeded."
            )
        if countdown is None:
            countdown = seconds_until(eta) if eta is not None else self.default_retry_delay
        retry = Retry(exc=exc, when=max(0.0, seconds("countdown", countdown)))
        retry.args_override = None if args is None else list(args)
        retry.kwargs_override = None if kwargs is None else dict(kwargs)
        if throw:
            raise retry
        return retry

    def replace(self, sig: Any) -> Any:
        """Replace the running task with ``sig`` (a signature, a chain, a group or a chord),
        as Celery's ``Task.replace``: the task ends here, and its id gets the replacement's
        state and result (a group's: the list of its results), so whoever waits on it, its
        group, chord or chain, sees the replacement's outcome. Its callbacks go with it.

        Raises :class:`~flask_jobs.exceptions.Ignore` to end the run (``return
        self.replace(...)`` reads well); run eagerly, it runs ``sig`` here and returns its
        value.
        """
        request = self.request
        if request.is_eager or request.called_directly:
            return maybe_signature(sig, self.jobs).apply().get()
        replaced_by = send_replacement(request, sig, self.jobs)
        raise Ignore("Replaced by new task", replaced_by=replaced_by)

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> None:
        """Record a state and its meta, as Celery's ``update_state``.

        Inside a run, writes are coalesced: call it as often as you like; readers see a value at
        most :data:`JOBS_PROGRESS_INTERVAL` old, and the last one always lands before the final
        state. ``state`` defaults to ``PROGRESS``; custom names are allowed.
        """
        request = self.request
        if task_id is None or task_id == request.id:
            reporter = request.reporter
            if reporter is not None:
                reporter.report(state or "PROGRESS", meta)
                return
            if task_id is None:
                raise RuntimeError(f"{self.name}.update_state() needs a task_id outside a run")
        AsyncResult(task_id, jobs=self.jobs)._store_state(state or "PROGRESS", meta)

    def progress(self, current: float, total: float | None = None, status: str | None = None,
                 **extra: Any) -> None:
        """Report progress: ``update_state(state="PROGRESS", meta={current, total, status, ...})``.

        Costs well under a microsecond when nothing needs writing, so it can sit in a tight loop.
        """
        reporter = self.request.reporter
        if reporter is None:
            raise RuntimeError(f"{self.name}.progress() can only be called while the task runs")
        reporter.progress(current, total, status, extra)

    # -- hooks for base= subclasses ------------------------------------------------------------

    def on_success(self, retval: Any, task_id: str, args: list[Any],
                   kwargs: dict[str, Any]) -> None:
        """Called in the worker after the task returned."""

    def on_failure(self, exc: BaseException, task_id: str, args: list[Any],
                   kwargs: dict[str, Any], einfo: ExceptionInfo) -> None:
        """Called in the worker after the task failed."""

    def on_retry(self, exc: BaseException, task_id: str, args: list[Any],
                 kwargs: dict[str, Any], einfo: ExceptionInfo) -> None:
        """Called in the worker when the task is retried."""

    def after_return(self, status: str, retval: Any, task_id: str, args: list[Any],
                     kwargs: dict[str, Any], einfo: ExceptionInfo | None) -> None:
        """Called in the worker after every run, whatever the outcome."""
