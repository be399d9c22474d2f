"""The :class:`Jobs` extension: ``init_app``, the ``@jobs.task`` decorator and the app-level API.

Per-app state lives in :class:`~flask_jobs.state.AppState` (``app.extensions["jobs"]``),
settings in :class:`~flask_jobs.config.Settings`, the task registry in the
:class:`~flask_jobs.state.Registry` this class extends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from flask import Flask, Response

from . import calling, web
from . import result as results
from .builtin_tasks import register_builtins
from .config import settings_for
from .control import Control
from .result import AsyncResult, BoundGroupResult
from .state import AppState, Registry
from .task import Task
from .web.blueprint import make_blueprint

if TYPE_CHECKING:
    from .beat import ScheduleControl

F = TypeVar("F", bound=Callable[..., Any])


class Jobs(Registry):
    """The flask-jobs extension.

    .. code-block:: python

        jobs = Jobs()

        @jobs.task(bind=True)
        def long_task(self, n): ...

        def create_app():
            app = Flask(__name__)
            app.config["JOBS_BROKER_URL"] = "redis://localhost:6379/0"
            jobs.init_app(app)
            return app

    One :class:`Jobs` can serve several apps: tasks are registered on the :class:`Jobs`, and
    each app keeps its own connection state in ``app.extensions["jobs"]``.

    :param app: an app to initialise at once, as with ``init_app``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__()
        register_builtins(self, self.task)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``: config defaults, state and the ``jobs`` blueprint.

        :raises RuntimeError: if ``app`` already has a flask-jobs extension.
        """
        if "jobs" in app.extensions:
            raise RuntimeError(
                "A 'Jobs' instance has already been registered on this Flask app. Import and use "
                "that instance instead."
            )
        settings = settings_for(app.config)
        app.extensions["jobs"] = AppState(self, app, settings)
        self._remember(app)
        if settings.register_blueprint:
            app.register_blueprint(make_blueprint(self), url_prefix=settings.url_prefix)

    # -- tasks -------------------------------------------------------------------------------

    @overload
    def task(self, fn: F) -> Task: ...

    @overload
    def task(self, fn: None = None, **options: Any) -> Callable[[F], Task]: ...

    def task(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Turn a function into a :class:`Task`; usable as ``@jobs.task`` or ``@jobs.task(...)``.

        :param name: the task's name; default ``module.function`` as in Celery.
        :param bind: pass the task itself as the first argument (``self``).
        :param base: a :class:`Task` subclass to build on (for hooks such as ``on_failure``).
        :param options: any :class:`Task` attribute: ``queue``, ``max_retries``,
            ``default_retry_delay``, ``autoretry_for``, ``retry_backoff``, ``retry_backoff_max``,
            ``retry_jitter``, ``retry_kwargs``, ``expires``, ``ignore_result``, ``time_limit``,
            ``soft_time_limit``, ``serializer``, ``priority``, ``rate_limit``.
        """
        if fn is not None and callable(fn) and not options:
            return self._make_task(fn)
        if fn is not None:
            raise TypeError("Use @jobs.task or @jobs.task(option=...), with keyword options only.")

        def decorator(f: F) -> Task:
            return self._make_task(f, **options)

        return decorator

    def _make_task(self, fn: Callable[..., Any], *, name: str | None = None, bind: bool = False,
                   base: type[Task] | None = None, **options: Any) -> Task:
        base = base or Task
        if not (isinstance(base, type) and issubclass(base, Task)):
            raise TypeError(f"base= must be a subclass of flask_jobs.Task, not {base!r}")
        for key in options:
            if not hasattr(Task, key):
                raise TypeError(f"Unknown task option {key!r}")
        name = name or f"{fn.__module__}.{fn.__qualname__}"
        attrs = {
            "name": name,
            "jobs": self,
            "bind": bind,
            "__doc__": fn.__doc__,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "__wrapped__": fn,
            **options,
        }
        cls = type(fn.__name__, (base,), attrs)
        task: Task = cls()
        task._bind_function(fn)
        self.tasks[name] = task
        return task

    # -- calling and results -----------------------------------------------------------------

    def send_task(self, name: str, args: Iterable[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Enqueue a task by name, without importing it (as Celery's ``send_task``).

        Takes the same options as :meth:`Task.apply_async`. Works in a process that never
        imported the task: only the worker needs it.
        """
        return calling.send(self.state(), self.tasks.get(name), name, args, kwargs, options)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """The :class:`AsyncResult` of ``task_id``."""
        return AsyncResult(task_id, jobs=self)

    @property
    def control(self) -> Control:
        """Celery's ``app.control``: :meth:`~flask_jobs.control.Control.revoke` ids and
        :meth:`~flask_jobs.control.Control.purge` queues."""
        return Control(self)

    # -- periodic tasks ------------------------------------------------------------------------

    def add_periodic_task(self, schedule: Any, sig: Any, args: Iterable[Any] = (),
                          kwargs: dict[str, Any] | None = None, name: str | None = None,
                          **opts: Any) -> str:
        """Add a periodic task, as Celery's ``app.add_periodic_task``: usually from an
        :attr:`on_after_configure` receiver, or before the beat starts.

        :param schedule: seconds, a timedelta, :class:`~flask_jobs.schedules.crontab` or
            :class:`~flask_jobs.solar_schedule.solar`.
        :param sig: the task call, e.g. ``test.s("hello")`` (arguments given here go in
            front of its own, keyword arguments are merged, as Celery's ``sig.clone``).
        :param name: the entry's name; default the call's repr, as Celery.
        :param opts: :meth:`~flask_jobs.Task.apply_async` options, plus ``relative`` and
            ``missed`` (see :doc:`/periodic`).
        :returns: the entry's name.
        """
        if getattr(sig, "subtask_type", None) or not getattr(sig, "task", None):
            raise TypeError("add_periodic_task takes a task's signature, such as "
                            f"add.s(2, 2), not {sig!r}; to run a workflow periodically, "
                            "schedule a task that starts it")
        clone = sig.clone(tuple(args), kwargs or {})
        key = name or repr(clone)
        entry: dict[str, Any] = {"task": clone.task, "schedule": schedule,
                                 "args": tuple(clone.args), "kwargs": dict(clone.kwargs),
                                 "options": {**clone.options}}
        for extra in ("relative", "missed"):
            if extra in opts:
                entry[extra] = opts.pop(extra)
        entry["options"].update(opts)
        self.periodic_tasks[key] = entry
        return key

    @property
    def schedule(self) -> ScheduleControl:
        """The periodic tasks at run time: :meth:`~flask_jobs.beat.ScheduleControl.add`,
        ``remove``, ``pause``, ``resume``, ``run_now``, ``list`` (see :doc:`/periodic`)."""
        from .beat import ScheduleControl  # (here: apps without periodic tasks do not load it)

        return ScheduleControl(self)

    @property
    def GroupResult(self) -> BoundGroupResult:  # noqa: N802 - Celery's name
        """Celery's ``app.GroupResult``: ``jobs.GroupResult.restore(group_id)`` (or
        ``jobs.GroupResult(group_id)``) is the :class:`GroupResult` of a group sent earlier,
        None if it is not known; ``jobs.GroupResult(id, results)`` builds one."""
        return BoundGroupResult(self)

    def accepted(self, result: results.AsyncResult | results.GroupResult) -> Response:
        """Return the ``202 Accepted`` response for a started task or group.

        The ``Location`` header and the JSON body (``{id, status_url, events_url}``) point at
        the ``jobs`` blueprint's status views. An eager result (nothing in Redis) gets ``200``
        with its final status inline instead; see the web docs.
        """
        return web.accepted(result)

    # -- who may see a task (the web layer) ------------------------------------------------

    def status_authorizer(self, fn: F) -> F:
        """Register ``fn(action, result)`` to decide who may use the status views.

        ``action`` is ``"read"`` (status and events) or ``"revoke"``; ``result`` the task's
        :class:`AsyncResult` (or the :class:`GroupResult` of a group), with ``.owner``. Return
        a truthy value to allow; anything else answers 403. Called inside the request, so it can
        look at ``flask_login.current_user``, the session, and so on.
        """
        self._status_authorizer = fn
        return fn

    def current_owner(self, fn: F) -> F:
        """Register ``fn()`` returning the current user's id (or None when anonymous).

        With it, a task started with ``apply_async(..., owner=user_id)`` can be read or
        revoked through the status views only by that user (403 for anyone else).
        """
        self._current_owner = fn
        return fn
