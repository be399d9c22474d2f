"""The :class:`Jobs` extension: configuration, the task registry and the per-app connection state."""

from __future__ import annotations

import datetime
import fnmatch
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import redis
from flask import Flask, current_app, has_app_context

from . import keys as _keys
from .broker import Broker
from .config import check_config
from .connection import Connector, redact_url
from .control import Control
from .exceptions import ImproperlyConfigured, NotRegistered
from .result import AsyncResult, GroupResult
from .serialization import Codecs
from .task import Task

if TYPE_CHECKING:
    from flask import Response

log = logging.getLogger("flask_jobs")
F = TypeVar("F", bound=Callable[..., Any])

#: Every configuration key and its default. Celery users find Celery's setting names, upper-cased
#: with the ``JOBS_`` prefix; see the configuration reference in the docs for each one.
DEFAULTS: dict[str, Any] = {
    "JOBS_BROKER_URL": None,
    "JOBS_BROKER_TRANSPORT_OPTIONS": {},
    "JOBS_RESULT_BACKEND": None,
    "JOBS_RESULT_EXPIRES": 86400,
    "JOBS_TASK_SERIALIZER": "json",
    "JOBS_RESULT_SERIALIZER": "json",
    "JOBS_ACCEPT_CONTENT": ["json"],
    "JOBS_TASK_ROUTES": {},
    "JOBS_TASK_DEFAULT_QUEUE": "default",
    "JOBS_TASK_DEFAULT_PRIORITY": _keys.DEFAULT_PRIORITY,
    "JOBS_TASK_TRACK_STARTED": True,
    "JOBS_BEAT_SCHEDULE": {},
    "JOBS_TIMEZONE": "UTC",
    "JOBS_ALWAYS_EAGER": False,
    "JOBS_EAGER_PROPAGATES": True,
    "JOBS_URL_PREFIX": "/jobs",
    "JOBS_REGISTER_BLUEPRINT": True,
    "JOBS_STATUS_AUTHORIZER": None,
    "JOBS_CURRENT_OWNER": None,
    "JOBS_EXPOSE_TRACEBACKS": False,
    "JOBS_SSE_HEARTBEAT": 15.0,
    "JOBS_SSE_MAX_AGE": 300.0,
    "JOBS_KEY_PREFIX": "jobs",
    "JOBS_PROGRESS_INTERVAL": 0.1,
    "JOBS_ORPHAN_TIMEOUT": 30.0,
    "JOBS_MAX_DELIVERIES": 5,
    "JOBS_DEAD_LETTER_EXPIRES": 7 * 86400,
    "JOBS_MAX_MESSAGE_SIZE": 16 * 1024 * 1024,
    "JOBS_BROKER_CONNECT_TIMEOUT": 2.0,
    "JOBS_BROKER_TIMEOUT": 5.0,
    "JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
    "JOBS_BROKER_CONNECTION_MAX_RETRIES": 100,
    "JOBS_BROKER_MAX_CONNECTIONS": 10000,
    "JOBS_BROKER_BUSY_POLL": 200.0,
    "JOBS_WORKER_SHUTDOWN_TIMEOUT": 25.0,
    "JOBS_WORKER_PREFETCH": 4,
    "JOBS_WORKER_CONCURRENCY": None,
}


class JobsState:
    """What one Flask app needs to talk to Redis: config values, clients, scripts, codecs.

    Created by :meth:`Jobs.init_app` and kept in ``app.extensions["jobs"]``. Clients are made on
    first use, so an app factory can be imported without a Redis running.
    """

    def __init__(self, jobs: Jobs, app: Flask) -> None:
        self.jobs = jobs
        self.app = app
        c = app.config
        check_config(c)
        self.config = c
        self.keys = _keys.Keys(c["JOBS_KEY_PREFIX"])
        self.codecs = Codecs(c["JOBS_ACCEPT_CONTENT"])
        for name in (c["JOBS_TASK_SERIALIZER"], c["JOBS_RESULT_SERIALIZER"]):
            self.codecs.check_serializer(name)
        self.task_serializer: str = c["JOBS_TASK_SERIALIZER"]
        self.result_serializer: str = c["JOBS_RESULT_SERIALIZER"]
        self.result_ttl_ms = _milliseconds(c["JOBS_RESULT_EXPIRES"])
        self.dead_ttl_ms = _milliseconds(c["JOBS_DEAD_LETTER_EXPIRES"])
        self.default_queue: str = c["JOBS_TASK_DEFAULT_QUEUE"]
        self.default_priority = int(c["JOBS_TASK_DEFAULT_PRIORITY"])
        self.eager = bool(c["JOBS_ALWAYS_EAGER"])
        self.eager_propagates = bool(c["JOBS_EAGER_PROPAGATES"])
        self.max_message_size = int(c["JOBS_MAX_MESSAGE_SIZE"])
        self.progress_interval = float(c["JOBS_PROGRESS_INTERVAL"])
        self.orphan_timeout = float(c["JOBS_ORPHAN_TIMEOUT"])
        self.max_deliveries = int(c["JOBS_MAX_DELIVERIES"])
        self.track_started = bool(c["JOBS_TASK_TRACK_STARTED"])
        self._routes = _compile_routes(c["JOBS_TASK_ROUTES"])
        self._lock = threading.RLock()
        self._broker_url: str | None = None
        self._connector: Connector | None = None
        self._client: redis.Redis | None = None
        self._broker: Broker | None = None

    # -- connections -------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        """The resolved broker URL (``embedded://`` and the debug default become a unix socket)."""
        if self._broker_url is None:
            self._broker_url = resolve_broker_url(self.app)
        return self._broker_url

    @property
    def broker_url_safe(self) -> str:
        """The broker URL with any password hidden, for logs and banners."""
        return redact_url(self.broker_url)

    def make_client(self, *, blocking: bool = False) -> redis.Redis:
        """A new Redis client for this app (its own connection pool), to the Redis server of
        :data:`JOBS_BROKER_URL` or, for a Sentinel URL, to the current primary. ``blocking``
        clients have no read timeout."""
        return self.connector.client(
            socket_timeout=None if blocking else float(self.config["JOBS_BROKER_TIMEOUT"]))

    @property
    def connector(self) -> Connector:
        """What makes this app's clients (see :mod:`flask_jobs.connection`)."""
        if self._connector is None:
            with self._lock:
                if self._connector is None:
                    c = self.config
                    if c["JOBS_RESULT_BACKEND"] and c["JOBS_RESULT_BACKEND"] != self.broker_url:
                        # One Redis holds queues and records together so enqueue stays one
                        # atomic step.
                        raise ImproperlyConfigured(
                            "JOBS_RESULT_BACKEND must be the same Redis as JOBS_BROKER_URL: "
                            "flask-jobs writes the message and its PENDING record in one atomic "
                            "step. Leave it unset."
                        )
                    self._connector = Connector(
                        self.broker_url, c["JOBS_BROKER_TRANSPORT_OPTIONS"],
                        socket_connect_timeout=float(c["JOBS_BROKER_CONNECT_TIMEOUT"]),
                        socket_timeout=float(c["JOBS_BROKER_TIMEOUT"]),
                        # A threaded web server may run hundreds of requests at once, each
                        # taking a pool connection; redis-py's own default cap (100) would
                        # refuse the 101st.
                        max_connections=int(c["JOBS_BROKER_MAX_CONNECTIONS"]),
                        health_check_interval=30,
                    )
        return self._connector

    @property
    def client(self) -> redis.Redis:
        """The shared client (thread safe: redis-py pools connections, and resets them on fork)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self.make_client()
        return self._client

    @property
    def broker(self) -> Broker:
        """The :class:`~flask_jobs.broker.Broker` on the shared client."""
        if self._broker is None:
            with self._lock:
                if self._broker is None:
                    self._broker = Broker(self, self.client)
        return self._broker

    # -- routing -----------------------------------------------------------------------------

    def route(self, name: str, task: Task | None) -> str:
        """The queue for a task name: ``JOBS_TASK_ROUTES``, then the task's own, then the default."""
        for matches, queue in self._routes:
            if matches(name):
                return queue
        if task is not None and task.queue:
            return task.queue
        return self.default_queue

    def task(self, name: str) -> Task:
        """The registered task called ``name``; raises :class:`NotRegistered`."""
        try:
            return self.jobs.tasks[name]
        except KeyError:
            raise NotRegistered(name) from None


def _milliseconds(value: Any) -> int:
    """Seconds (a number) or a :class:`~datetime.timedelta`, as Celery accepts, in ms."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return int(float(value) * 1000)


def _compile_routes(routes: Any) -> list[tuple[Callable[[str], bool], str]]:
    """Turn ``JOBS_TASK_ROUTES`` (a dict of name or glob -> queue or ``{"queue": q}``, or a list
    of such dicts) into matchers, in order."""
    if isinstance(routes, dict):
        routes = [routes]
    compiled: list[tuple[Callable[[str], bool], str]] = []
    for table in routes or ():
        for pattern, target in table.items():
            queue = target.get("queue") if isinstance(target, dict) else target
            if not isinstance(queue, str):
                raise ImproperlyConfigured(
                    f"JOBS_TASK_ROUTES[{pattern!r}] must be a queue name or {{'queue': name}}, "
                    f"not {target!r}."
                )
            if any(ch in pattern for ch in "*?["):
                compiled.append((lambda n, p=pattern: fnmatch.fnmatchcase(n, p), queue))
            else:
                compiled.append((lambda n, p=pattern: n == p, queue))
    return compiled


def resolve_broker_url(app: Flask) -> str:
    """Return the Redis URL to use for ``app``, starting the embedded server if asked to.

    ``embedded://`` (or no ``JOBS_BROKER_URL`` at all while ``app.debug`` or ``app.testing`` is
    on) starts or joins a private ``redis-server`` on a unix socket in the instance folder.
    """
    url = app.config.get("JOBS_BROKER_URL")
    if not url:
        if not (app.debug or app.testing):
            raise ImproperlyConfigured(
                "JOBS_BROKER_URL is not set. Set it to your Redis, e.g. "
                "app.config['JOBS_BROKER_URL'] = 'redis://localhost:6379/0', or use "
                "'embedded://' to run a private Redis in the instance folder (development only)."
            )
        url = "embedded://"
    if url.startswith("embedded:"):
        from .embedded import ensure_embedded

        return ensure_embedded(app.instance_path)
    return url


class Jobs:
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
        #: Registered tasks by name.
        self.tasks: dict[str, Task] = {}
        self._apps: list[weakref.ref[Flask]] = []
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
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        app.extensions["jobs"] = JobsState(self, app)
        self._apps = [r for r in self._apps if r() is not None] + [weakref.ref(app)]
        if app.config["JOBS_REGISTER_BLUEPRINT"]:
            try:
                from .web import make_blueprint
            except ImportError:  # the web layer is optional while it is being built
                pass
            else:
                app.register_blueprint(make_blueprint(self), url_prefix=app.config["JOBS_URL_PREFIX"])

    # -- state -------------------------------------------------------------------------------

    def state(self, app: Flask | None = None) -> JobsState:
        """The :class:`JobsState` of ``app``, the current app, or the only app initialised.

        Outside an app context (a script, a shell) the only app this extension was initialised
        with is used, so ``task.delay()`` works there as it does with Celery.
        """
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            else:
                apps = [a for a in (r() for r in self._apps) if a is not None]
                if len(apps) != 1:
                    raise RuntimeError(
                        "Working outside of application context, and this Jobs extension is "
                        f"initialised on {len(apps)} apps. Use 'with app.app_context():'"
                        + (" or call 'jobs.init_app(app)' first." if not apps else ".")
                    )
                app = apps[0]
        try:
            state = app.extensions["jobs"]
        except KeyError:
            raise RuntimeError(
                "The current Flask app is not registered with this 'Jobs' instance. Did you "
                "forget to call 'init_app', or did you create multiple 'Jobs' instances?"
            ) from None
        if state.jobs is not self:
            raise RuntimeError("The current Flask app is registered with another 'Jobs' instance.")
        return state

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
        task = cls()
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
        task = self.tasks.get(name)
        if task is not None:
            return task.apply_async(args, kwargs, **options)
        state = self.state()
        if state.eager:
            raise NotRegistered(name)
        from .task import build_message

        message = build_message(state, None, name, args, kwargs, **options)
        state.broker.enqueue([message], options.get("group_id") or "")
        return AsyncResult(message.id, jobs=self, app=state.app, task_name=name)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """The :class:`AsyncResult` of ``task_id``."""
        return AsyncResult(task_id, jobs=self)

    @property
    def control(self) -> Control:
        """Celery's ``app.control``: :meth:`~flask_jobs.control.Control.revoke` ids and
        :meth:`~flask_jobs.control.Control.purge` queues."""
        return Control(self)

    def GroupResult(self, group_id: str) -> GroupResult:  # noqa: N802 - Celery's name
        """Restore the :class:`GroupResult` of a group applied earlier (from its id)."""
        return GroupResult.restore(group_id, jobs=self)

    def accepted(self, result: AsyncResult | GroupResult) -> Response:
        """Return the ``202 Accepted`` response for a started task or group.

        The ``Location`` header and the JSON body (``{id, status_url, events_url}``) point at
        the ``jobs`` blueprint's status views. An eager result (nothing in Redis) gets ``200``
        with its final status inline instead; see the web docs.
        """
        from .web import accepted

        return accepted(result)

    # -- who may see a task (the web layer) ------------------------------------------------

    #: Set by :meth:`status_authorizer`; ``JOBS_STATUS_AUTHORIZER`` takes precedence.
    _status_authorizer: Callable[[str, Any], Any] | None = None
    #: Set by :meth:`current_owner`; ``JOBS_CURRENT_OWNER`` takes precedence.
    _current_owner: Callable[[], Any] | None = None

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
