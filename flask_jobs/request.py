"""The request of a running task (``self.request``), what its hooks receive, and what the
layers below :mod:`flask_jobs.task` need of a task.

:class:`Context` is Celery's ``Task.request``: the id, arguments and delivery details of the run
in progress. :class:`ExceptionInfo` is the ``einfo`` of ``on_failure``/``on_retry``.
:class:`TaskLike` names the attributes and methods of :class:`~flask_jobs.Task` that the
message builder, the executor and the eager runner use, so those modules need not import the
task module (which imports them to send and run tasks).
"""

from __future__ import annotations

from typing import Any, Protocol

from .exceptions import Retry


class ExceptionInfo:
    """What hooks receive as ``einfo``: the exception, its type and the formatted traceback."""

    def __init__(self, exception: BaseException, traceback: str) -> None:
        self.exception = exception
        self.type = type(exception)
        self.traceback = traceback

    def __str__(self) -> str:
        return self.traceback


class Reporter(Protocol):
    """Where a running task's ``update_state``/``progress`` calls go (the worker's writer or
    the eager runner)."""

    def report(self, state: str, meta: Any) -> None:
        """Record ``state`` with its ``meta``."""

    def progress(self, current: float, total: float | None, status: str | None,
                 extra: dict[str, Any]) -> None:
        """Record a ``PROGRESS`` report (see :func:`progress_meta`)."""


def progress_meta(current: float, total: float | None, status: str | None,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """The meta dict of a :meth:`Task.progress <flask_jobs.Task.progress>` call (Celery's
    progress-bar shape: ``current``, ``total``, ``status`` and any extra keys)."""
    meta: dict[str, Any] = {"current": current, "total": total}
    if status is not None:
        meta["status"] = status
    if extra:
        meta.update(extra)
    return meta


class Context:
    """The request of a running task: ``self.request`` inside a bound task.

    Attributes (Celery's names): ``id``, ``task``, ``args``, ``kwargs``, ``retries``, ``hostname``,
    ``delivery_info`` (``queue``, ``priority``), ``delivery_attempt`` (deliveries since the task
    was queued, 1 on the first), ``attempt`` (every delivery ever, the fencing token), ``eta``,
    ``headers``, ``group``, ``parent_id``, ``root_id``, ``owner``, ``is_eager``,
    ``called_directly``, ``time_limit``, ``soft_time_limit``, ``link`` and ``link_error``
    (Celery's ``callbacks`` and ``errbacks``), ``chain``.
    """

    id: str | None = None
    task: str | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    retries = 0
    hostname: str | None = None
    delivery_info: dict[str, Any] = {}
    delivery_attempt = 1
    attempt = 1
    eta: str | None = None
    expires: str | None = None
    headers: dict[str, Any] = {}
    group: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    owner: str | None = None
    is_eager = False
    called_directly = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    link: list[dict[str, Any]] | None = None
    link_error: list[dict[str, Any]] | None = None
    #: The rest of the chain this task is a step of (the next step last), or None.
    chain: list[dict[str, Any]] | None = None
    ignore_result: bool | None = None
    #: Where progress goes (set by the worker or the eager runner), see :class:`Reporter`.
    reporter: Reporter | None = None

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Context:
        """A context whose attributes are ``fields``; the dict is taken over, not copied.

        The worker's way to build one per task, without packing and unpacking keyword
        arguments (a measurable share of a short task's overhead).
        """
        context = cls.__new__(cls)
        context.__dict__ = fields
        return context

    def __repr__(self) -> str:
        return f"<Context {self.task}[{self.id}] retries={self.retries}>"


class TaskLike(Protocol):
    """What the message builder, the executor and the eager runner use of a task.

    :class:`~flask_jobs.Task` has all of it; see there for what each member means.
    """

    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def expires(self) -> Any: ...
    @property
    def serializer(self) -> str | None: ...
    @property
    def ignore_result(self) -> bool: ...
    @property
    def time_limit(self) -> float | None: ...
    @property
    def soft_time_limit(self) -> float | None: ...
    @property
    def autoretry_for(self) -> tuple[type[BaseException], ...]: ...
    @property
    def retry_kwargs(self) -> dict[str, Any]: ...
    @property
    def retry_backoff(self) -> bool | float: ...
    @property
    def retry_backoff_max(self) -> float: ...
    @property
    def retry_jitter(self) -> bool: ...
    @property
    def request(self) -> Context: ...

    def run(self, *args: Any, **kwargs: Any) -> Any: ...
    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None: ...
    def push_request(self, request: Context) -> None: ...
    def pop_request(self) -> None: ...
    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
              throw: bool = True, eta: Any = None, countdown: float | None = None,
              max_retries: int | None = None, **options: Any) -> Retry: ...
    def on_success(self, retval: Any, task_id: str, args: list[Any],
                   kwargs: dict[str, Any]) -> None: ...
    def on_failure(self, exc: BaseException, task_id: str, args: list[Any],
                   kwargs: dict[str, Any], einfo: ExceptionInfo) -> None: ...
    def on_retry(self, exc: BaseException, task_id: str, args: list[Any],
                 kwargs: dict[str, Any], einfo: ExceptionInfo) -> None: ...
    def after_return(self, status: str, retval: Any, task_id: str, args: list[Any],
                     kwargs: dict[str, Any], einfo: ExceptionInfo | None) -> None: ...
