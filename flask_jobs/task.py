"""The :class:`Task`: calling (``delay``/``apply_async``/``apply``), its request, retry and progress."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import threading
import types
from collections.abc import Callable, Iterable
from os import urandom as _urandom
from typing import TYPE_CHECKING, Any

from .exceptions import EncodeError, MaxRetriesExceededError, PayloadTooLarge, Retry

if TYPE_CHECKING:
    from .canvas import Signature
    from .extension import Jobs, JobsState
    from .result import AsyncResult, EagerResult

_UTC = dt.UTC


class Message:
    """One task message, ready for the enqueue script (see ``scripts/enqueue.lua``).

    The group id is not part of it: a group is sent with one call that names it once.
    """

    __slots__ = ("id", "queue", "priority", "name", "ctype", "body", "delay_ms", "expires_ms",
                 "owner", "chosen_id")

    def __init__(self, id: str, queue: str, priority: int, name: str, ctype: str, body: bytes,
                 delay_ms: int = 0, expires_ms: int = 0, owner: str = "",
                 chosen_id: bool = True) -> None:
        self.id, self.queue, self.priority, self.name = id, queue, priority, name
        self.ctype, self.body, self.delay_ms, self.expires_ms = ctype, body, delay_ms, expires_ms
        self.owner = owner
        #: The caller chose the id, so the script checks it is not already live.
        self.chosen_id = chosen_id

    def shape(self) -> tuple[Any, ...]:
        """What this message may share with others of one script call (see
        ``scripts/enqueue.lua``): queue, priority, name, ctype, delay, expiry, owner, check."""
        return (self.queue, self.priority, self.name, self.ctype, self.delay_ms,
                self.expires_ms, self.owner, "1" if self.chosen_id else "")



def parse_rate_limit(value: str | float | None) -> float | None:
    """Milliseconds between two runs for a Celery rate limit (``"10/s"``, ``"100/m"``,
    ``"500/h"``, or a number of runs per second); None for no limit (None, 0, ``"0"``).

    :raises ValueError: the value is not a rate limit.
    """
    if value is None:
        return None
    per = 1.0
    text = value
    if isinstance(value, str):
        text, _, unit = value.strip().partition("/")
        if unit:
            try:
                per = {"s": 1.0, "m": 60.0, "h": 3600.0}[unit.strip()]
            except KeyError:
                raise ValueError(f"Bad rate_limit {value!r}: the unit must be /s, /m or /h") from None
    try:
        rate = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"Bad rate_limit {value!r}: use e.g. '10/s', '100/m' or '500/h'") from None
    if rate < 0 or rate != rate:
        raise ValueError(f"Bad rate_limit {value!r}: it must be positive")
    return None if rate == 0 else per * 1000.0 / rate


@functools.cache
def _async_result() -> type[AsyncResult]:
    # result.py imports this module; import it once, on the first send, not on every call.
    from .result import AsyncResult

    return AsyncResult


def new_task_id() -> str:
    """A random UUID4 string (122 random bits from the OS: unguessable), made quickly."""
    h = _urandom(16).hex()
    # version 4 and the RFC 4122 variant, as uuid.uuid4() sets them
    return (f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-"
            f"{h[20:]}")


def new_task_ids(n: int) -> list[str]:
    """``n`` ids like :func:`new_task_id`'s, from one read of the OS's random source (a group
    of many tasks gets its ids at a third of the cost)."""
    raw = bytearray(_urandom(16 * n))
    # version 4 in byte 6's high nibble and the RFC 4122 variant in byte 8's two high bits
    raw[6::16] = bytes([(b & 0x0F) | 0x40 for b in raw[6::16]])
    raw[8::16] = bytes([(b & 0x3F) | 0x80 for b in raw[8::16]])
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]


def _seconds(option: str, value: Any) -> float:
    """A finite number of seconds, or a clear error naming the option."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if seconds == seconds and abs(seconds) != float("inf"):
            return seconds
    raise TypeError(f"{option} must be a finite number of seconds (or a timedelta), "
                    f"not {value!r}")


def _datetime(option: str, value: Any) -> dt.datetime:
    """A datetime from a datetime or an ISO 8601 string (Celery takes both)."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise TypeError(f"{option} must be a datetime or an ISO 8601 string, not {value!r}")


def _seconds_until(when: Any, option: str = "eta") -> float:
    when = _datetime(option, when)
    if when.tzinfo is None:  # naive datetimes are UTC, as in Celery with enable_utc
        when = when.replace(tzinfo=_UTC)
    return (when - dt.datetime.now(_UTC)).total_seconds()


def _expires_seconds(expires: float | dt.datetime | dt.timedelta | str | None) -> float | None:
    if expires is None:
        return None
    if isinstance(expires, (dt.datetime, str)):
        return _seconds_until(expires, "expires")
    return _seconds("expires", expires)


def build_message(
    state: JobsState,
    task: Task | None,
    name: str,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
    eta: dt.datetime | None = None,
    expires: float | dt.datetime | dt.timedelta | None = None,
    queue: str | None = None,
    priority: int | None = None,
    task_id: str | None = None,
    headers: dict[str, Any] | None = None,
    link: Any = None,
    link_error: Any = None,
    owner: Any = None,
    serializer: str | None = None,
    retries: int = 0,
    group_id: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    ignore_result: bool | None = None,
    validated: bool = False,
    **unknown: Any,
) -> Message:
    """Validate the call and encode it as a :class:`Message`.

    Everything that can be wrong with a call is found here, before anything reaches Redis: a bad
    option, arguments that do not fit the function, a value the serializer cannot encode, a
    message over :data:`JOBS_MAX_MESSAGE_SIZE`.
    """
    if unknown:
        raise TypeError(f"apply_async() got unexpected options: {', '.join(sorted(unknown))}")
    if args is None:
        args = []
    elif isinstance(args, (list, tuple)):
        args = list(args)
    else:  # a string would be split into letters, a dict into its keys
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
    if not kwargs:
        kwargs = {}
    elif isinstance(kwargs, dict):
        kwargs = dict(kwargs)
    else:
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    if not validated and task is not None and task._signature is not None and not (
            # Common case first: plain positional parameters, no keywords, exact count.
            not kwargs and len(args) == task._plain_arity):
        try:
            task._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"Wrong arguments for task {name!r}: {exc}") from None
    chosen_id = bool(task_id)
    if not task_id:
        task_id = new_task_id()
    elif not isinstance(task_id, str):
        task_id = str(task_id)
    # The id is not in the body (the record's key names it), so a signature repeated in a group
    # is encoded once and sent under many ids (Broker.enqueue's ids).
    body: dict[str, Any] = {"task": name, "args": args, "kwargs": kwargs}
    if retries:
        body["retries"] = retries
    delay = 0.0
    if countdown is not None:
        delay = _seconds("countdown", countdown)
    elif eta is not None:
        when = _datetime("eta", eta)
        delay = _seconds_until(when)
        body["eta"] = when.isoformat()
    if task is not None and expires is None:
        expires = task.expires
    expires_s = _expires_seconds(expires)
    if expires_s is not None:
        # Relative to the enqueue, measured on Redis's clock by the script.
        expires_ms = max(1, int(expires_s * 1000))
    else:
        expires_ms = 0
    if headers:
        if not isinstance(headers, dict):
            raise TypeError(f"headers must be a dict, not {type(headers).__name__}")
        body["headers"] = headers
    if link is not None:
        body["link"] = _signature_list(link)
    if link_error is not None:
        body["link_error"] = _signature_list(link_error)
    if group_id:
        body["group"] = group_id
    if parent_id:
        body["parent_id"] = parent_id
    if root_id:
        body["root_id"] = root_id
    if time_limit is not None:
        body["time_limit"] = _seconds("time_limit", time_limit)
    if soft_time_limit is not None:
        body["soft_time_limit"] = _seconds("soft_time_limit", soft_time_limit)
    if ignore_result is not None:
        body["ignore_result"] = bool(ignore_result)
    if owner is not None:
        body["owner"] = str(owner)
    ctype = serializer or (task.serializer if task is not None else None) or state.task_serializer
    if ctype not in state.codecs.accept:  # e.g. pickle must be opted into, for sending too
        state.codecs.check_serializer(ctype)
    try:
        data = state.codecs.dumps(body, ctype)
    except EncodeError as exc:
        raise EncodeError(_explain_encode_error(state, name, ctype, args, kwargs, exc)) from exc
    if len(data) > state.max_message_size:
        raise PayloadTooLarge(
            f"The message of task {name!r} is {len(data)} bytes, over JOBS_MAX_MESSAGE_SIZE "
            f"({state.max_message_size}). Pass a reference (a file path, a database id) instead "
            "of the data itself."
        )
    if priority is None:
        priority = task.priority if task is not None and task.priority is not None else (
            state.default_priority)
    if not (isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 9):
        raise ValueError(f"priority must be an integer between 0 and 9 (9 runs first), "
                         f"not {priority!r}")
    if queue is not None and not isinstance(queue, str):
        raise TypeError(f"queue must be a queue name (str), not {queue!r}")
    return Message(
        task_id,
        queue or state.route(name, task),
        int(priority),
        name,
        ctype,
        data,
        max(0, int(delay * 1000)),
        expires_ms,
        "" if owner is None else str(owner),
        chosen_id,
    )


def _explain_encode_error(state: JobsState, name: str, ctype: str, args: list[Any],
                          kwargs: dict[str, Any], exc: Exception) -> str:
    """Name the argument the serializer could not encode (only runs on the error path)."""
    for where, value in [*((f"argument {i}", a) for i, a in enumerate(args)),
                         *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
        try:
            state.codecs.dumps(value, ctype)
        except EncodeError:
            return (
                f"Cannot send task {name!r}: its {where} is a {type(value).__module__}."
                f"{type(value).__qualname__}, which the {ctype!r} serializer cannot encode. Pass "
                "plain data (numbers, strings, lists, dicts, datetimes, ids) instead. Nothing was "
                "queued."
            )
    return f"Cannot send task {name!r}: {exc}. Nothing was queued."


def _signature_list(value: Any) -> list[dict[str, Any]]:
    from .canvas import signature

    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(signature(s)) for s in items]


class ExceptionInfo:
    """What hooks receive as ``einfo``: the exception, its type and the formatted traceback."""

    def __init__(self, exception: BaseException, traceback: str) -> None:
        self.exception = exception
        self.type = type(exception)
        self.traceback = traceback

    def __str__(self) -> str:
        return self.traceback


class Context:
    """The request of a running task: ``self.request`` inside a bound task.

    Attributes (Celery's names): ``id``, ``task``, ``args``, ``kwargs``, ``retries``, ``hostname``,
    ``delivery_info`` (``queue``, ``priority``), ``delivery_attempt`` (deliveries since the task
    was queued, 1 on the first), ``attempt`` (every delivery ever, the fencing token), ``eta``,
    ``headers``, ``group``, ``parent_id``, ``root_id``, ``owner``, ``is_eager``,
    ``called_directly``, ``time_limit``, ``soft_time_limit``.
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
    ignore_result: bool | None = None
    #: Where progress goes (set by the worker or eager runner), see :class:`Reporter`.
    reporter: Any = None

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


_DEFAULT_CONTEXT = Context()


class Task:
    """A task. Made by :meth:`Jobs.task`; subclass it and pass ``base=`` to add hooks.

    Class attributes are the task's options (Celery's names and defaults).
    """

    #: The registered name (default ``module.function``).
    name: str = ""
    #: The :class:`~flask_jobs.Jobs` the task belongs to.
    jobs: Jobs
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

    _signature: inspect.Signature | None = None
    #: Number of parameters when all are plain positional ones without defaults, else -1.
    _plain_arity = -1
    _local: threading.local

    def _bind_function(self, fn: Callable[..., Any]) -> None:
        parse_rate_limit(self.rate_limit)  # a typo fails at import, not in the worker
        self._local = threading.local()
        self.run = types.MethodType(fn, self) if self.bind else fn
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
        state = self.jobs.state()
        if state.eager:
            # The checks of a real send (options, arguments, encoding, size), so code that
            # passes in eager tests does not fail in production.
            build_message(state, self, self.name, args, kwargs, **options)
            return self.apply(args, kwargs, **options)
        message = build_message(state, self, self.name, args, kwargs, **options)
        state.broker.enqueue((message,), options.get("group_id") or "")
        return _async_result()(message.id, jobs=self.jobs, app=state.app, task_name=self.name)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              task_id: str | None = None, **options: Any) -> EagerResult:
        """Run the task here, synchronously, and return an :class:`EagerResult`.

        Retries run at once (countdowns are not waited for). With
        :data:`JOBS_EAGER_PROPAGATES` the task's exception is raised by ``get()``.
        """
        from .execution import run_eagerly

        return run_eagerly(self, list(args or ()), dict(kwargs or {}), task_id, options)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """The :class:`AsyncResult` of ``task_id``."""
        from .result import AsyncResult

        return AsyncResult(task_id, jobs=self.jobs, task_name=self.name)

    def signature(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  **options: Any) -> Signature:
        """A :class:`~flask_jobs.canvas.Signature` of this task with these arguments."""
        from .canvas import Signature

        return Signature(self.name, args, kwargs, options, app=self.jobs)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """Shortcut: ``signature(args, kwargs)``."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it ignores the parent's result in a chain or callback."""
        sig = self.signature(args, kwargs)
        sig["immutable"] = True
        return sig

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
            countdown = _seconds_until(eta) if eta is not None else self.default_retry_delay
        retry = Retry(exc=exc, when=max(0.0, _seconds("countdown", countdown)))
        retry.args_override = None if args is None else list(args)  # type: ignore[attr-defined]
        retry.kwargs_override = None if kwargs is None else dict(kwargs)  # type: ignore[attr-defined]
        if throw:
            raise retry
        return retry

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
        from .result import AsyncResult

        AsyncResult(task_id, jobs=self.jobs)._store_state(state or "PROGRESS", meta)  # type: ignore[arg-type]

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
