"""The per-app state: one app's settings, Redis clients, scripts and codecs, made on first use.

:class:`AppState` is what :meth:`~flask_jobs.Jobs.init_app` keeps in ``app.extensions["jobs"]``.
:class:`Registry` is the part of the :class:`~flask_jobs.Jobs` extension that the layers below
it use: the registered tasks, and which app is the current one. Clients are made on first use,
so an app factory can be imported without a Redis running.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis
from blinker import Signal
from flask import Flask, current_app, has_app_context

from .broker import Broker
from .config import Settings
from .connection import Connector, redact_url
from .exceptions import ImproperlyConfigured, NotRegistered
from .keys import Keys
from .request import TaskLike
from .serialization import Codecs


class Registry:
    """The tasks of a :class:`~flask_jobs.Jobs` extension, the apps it serves, and the hooks
    registered on it.

    :class:`~flask_jobs.Jobs` is a registry; results, signatures and tasks hold one to find
    the app state they send through, and the web layer reads its hooks.
    """

    #: Set by :meth:`Jobs.status_authorizer <flask_jobs.Jobs.status_authorizer>`;
    #: :data:`JOBS_STATUS_AUTHORIZER` takes precedence.
    _status_authorizer: Callable[[str, Any], Any] | None = None
    #: Set by :meth:`Jobs.current_owner <flask_jobs.Jobs.current_owner>`;
    #: :data:`JOBS_CURRENT_OWNER` takes precedence.
    _current_owner: Callable[[], Any] | None = None

    def __init__(self) -> None:
        #: Registered tasks by name.
        self.tasks: dict[str, TaskLike] = {}
        self._apps: list[weakref.ref[Flask]] = []
        #: Entries of ``add_periodic_task`` by name, in Celery's form (the beat adds them to
        #: :data:`JOBS_BEAT_SCHEDULE`'s).
        self.periodic_tasks: dict[str, dict[str, Any]] = {}
        #: Celery's ``app.on_after_configure``: sent (``sender`` = this extension) once, before
        #: a beat reads its schedule, so receivers can call ``sender.add_periodic_task``.
        self.on_after_configure = Signal("on_after_configure")
        #: Celery's ``app.on_after_finalize``: sent once, after ``on_after_configure``.
        self.on_after_finalize = Signal("on_after_finalize")
        self._finalized = False

    def finalize(self) -> None:
        """Send :attr:`on_after_configure` and :attr:`on_after_finalize`, once (as Celery
        does when its app is finalized); the beat calls it before reading its schedule."""
        if self._finalized:
            return
        self._finalized = True
        self.on_after_configure.send(self)
        self.on_after_finalize.send(self)

    def _remember(self, app: Flask) -> None:
        """Note that ``app`` was initialised with this extension (weakly)."""
        self._apps = [r for r in self._apps if r() is not None] + [weakref.ref(app)]

    def state(self, app: Flask | None = None) -> AppState:
        """The :class:`AppState` of ``app``, the current app, or the only app initialised.

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
        assert app is not None
        try:
            state = app.extensions["jobs"]
        except KeyError:
            raise RuntimeError(
                "The current Flask app is not registered with this 'Jobs' instance. Did you "
                "forget to call 'init_app', or did you create multiple 'Jobs' instances?"
            ) from None
        if state.jobs is not self:
            raise RuntimeError("The current Flask app is registered with another 'Jobs' instance.")
        return state  # type: ignore[no-any-return]

    def task_named(self, name: str) -> TaskLike:
        """The registered task called ``name``.

        :raises NotRegistered: no task of that name is registered in this process.
        """
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(name) from None


def resolve_broker_url(app: Flask, url: str | None) -> str:
    """Return the Redis URL to use for ``app``, starting the embedded server if asked to.

    ``embedded://`` (or no ``JOBS_BROKER_URL`` at all while ``app.debug`` or ``app.testing`` is
    on) starts or joins a private ``redis-server`` on a unix socket in the instance folder.
    """
    if not url:
        if not (app.debug or app.testing):
            raise ImproperlyConfigured(
                "JOBS_BROKER_URL is not set. Set it to your Redis, e.g. "
                "app.config['JOBS_BROKER_URL'] = 'redis://localhost:6379/0', or use "
                "'embedded://' to run a private Redis in the instance folder (development only)."
            )
        url = "embedded://"
    if url.startswith("embedded:"):
        from .embedded import ensure_embedded  # (starts a server: only when asked for)

        return ensure_embedded(app.instance_path)
    return url


class AppState:
    """What one Flask app needs to talk to Redis: settings, keys, codecs, clients, scripts.

    :param jobs: the extension the app was initialised with.
    :param app: the app.
    :param settings: its settings (see :meth:`Settings.from_config
        <flask_jobs.config.Settings.from_config>`).
    """

    def __init__(self, jobs: Registry, app: Flask, settings: Settings) -> None:
        self.jobs = jobs
        self.app = app
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.codecs = Codecs(settings.accept_content)
        for name in (settings.task_serializer, settings.result_serializer):
            self.codecs.check_serializer(name)
        self._lock = threading.RLock()
        self._broker_url: str | None = None
        self._connector: Connector | None = None
        self._client: redis.Redis | None = None
        self._broker: Broker | None = None

    @property
    def eager(self) -> bool:
        """Whether tasks run in the caller (:data:`JOBS_ALWAYS_EAGER`, read at each call)."""
        return self.settings.always_eager

    # -- connections -------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        """The resolved broker URL (``embedded://`` and the debug default become a unix socket)."""
        if self._broker_url is None:
            self._broker_url = resolve_broker_url(self.app, self.settings.broker_url)
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
            socket_timeout=None if blocking else self.settings.broker_timeout)

    @property
    def connector(self) -> Connector:
        """What makes this app's clients (see :mod:`flask_jobs.connection`)."""
        if self._connector is None:
            with self._lock:
                if self._connector is None:
                    s = self.settings
                    if s.result_backend and s.result_backend != self.broker_url:
                        # One Redis holds queues and records together so enqueue stays one
                        # atomic step.
                        raise ImproperlyConfigured(
                            "JOBS_RESULT_BACKEND must be the same Redis as JOBS_BROKER_URL: "
                            "flask-jobs writes the message and its PENDING record in one atomic "
                            "step. Leave it unset."
                        )
                    self._connector = Connector(
                        self.broker_url, s.transport_options,
                        socket_connect_timeout=s.connect_timeout,
                        socket_timeout=s.broker_timeout,
                        # A threaded web server may run hundreds of requests at once, each
                        # taking a pool connection; redis-py's own default cap (100) would
                        # refuse the 101st.
                        max_connections=s.max_connections,
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
                    self._broker = Broker(self.client, self.keys, self.settings, self.codecs,
                                          self.broker_url_safe)
        return self._broker

    # -- tasks -------------------------------------------------------------------------------

    def route(self, name: str, task: TaskLike | None) -> str:
        """The queue for a task name: :data:`JOBS_TASK_ROUTES`, then the task's own, then the
        default."""
        return self.settings.route(name, task.queue if task is not None else None)

    def task(self, name: str) -> TaskLike:
        """The registered task called ``name``; raises :class:`NotRegistered`."""
        return self.jobs.task_named(name)
