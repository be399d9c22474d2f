"""The ``JOBS_*`` settings: their defaults, their checks, and the one object that reads them.

Every other module gets its settings from a :class:`Settings`, made once per app by
:meth:`~flask_jobs.Jobs.init_app`; this is the only module that reads ``app.config``. Most keys
are read once, when the app is initialised, and converted then (seconds to milliseconds, route
tables to matchers), so a typo stops the app at start with a message that names the key and what
it takes, not later inside a worker with ``could not convert string to float``.

A few keys are read at each use instead (:data:`LIVE_KEYS`), because Celery users toggle their
Celery twins at run time: a testing config that sets ``JOBS_ALWAYS_EAGER = True`` after
``init_app`` takes effect on the next call, as ``app.conf.task_always_eager = True`` does.
Numbers may be given as numeric strings (as ``app.config.from_prefixed_env()`` can leave them).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .connection import check_transport_options, redact_url
from .exceptions import ImproperlyConfigured
from .keys import DEFAULT_PRIORITY
from .routing import Route, compile_routes

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
    "JOBS_TASK_DEFAULT_PRIORITY": DEFAULT_PRIORITY,
    "JOBS_TASK_TRACK_STARTED": True,
    "JOBS_BEAT_SCHEDULE": {},
    "JOBS_BEAT_LEASE": 3.0,
    "JOBS_BEAT_MAX_LOOP_INTERVAL": 1.0,
    "JOBS_BEAT_MISSED": "once",
    "JOBS_BEAT_MISSED_CAP": 100,
    "JOBS_TIMEZONE": "UTC",
    "JOBS_ALWAYS_EAGER": False,
    "JOBS_EAGER_PROPAGATES": True,
    "JOBS_URL_PREFIX": "/jobs",
    "JOBS_REGISTER_BLUEPRINT": True,
    "JOBS_STATUS_AUTHORIZER": None,
    "JOBS_CURRENT_OWNER": None,
    "JOBS_EXPOSE_TRACEBACKS": False,
    "JOBS_METRICS": False,
    "JOBS_METRICS_AUTHORIZER": None,
    "JOBS_EVENTS": True,
    "JOBS_EVENTS_MAXLEN": 10_000,
    "JOBS_EVENTS_MAX_AGE": 3600.0,
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
    "JOBS_WORKER_PREFETCH_HOLD": 0.01,
    "JOBS_WORKER_CONCURRENCY": None,
}

#: Keys read at each use rather than once at ``init_app`` (see the module docstring): eager mode,
#: which tests switch on after the app is made, and the web layer's per-request settings.
LIVE_KEYS = frozenset({
    "JOBS_ALWAYS_EAGER", "JOBS_EAGER_PROPAGATES", "JOBS_EXPOSE_TRACEBACKS",
    "JOBS_STATUS_AUTHORIZER", "JOBS_CURRENT_OWNER", "JOBS_SSE_HEARTBEAT", "JOBS_SSE_MAX_AGE",
    "JOBS_METRICS", "JOBS_METRICS_AUTHORIZER",
})

#: Keys holding seconds, and whether 0 is allowed.
_SECONDS = {
    "JOBS_RESULT_EXPIRES": False,
    "JOBS_DEAD_LETTER_EXPIRES": False,
    "JOBS_PROGRESS_INTERVAL": True,
    "JOBS_ORPHAN_TIMEOUT": False,
    "JOBS_SSE_HEARTBEAT": False,
    "JOBS_SSE_MAX_AGE": False,
    "JOBS_BROKER_CONNECT_TIMEOUT": False,
    "JOBS_BROKER_TIMEOUT": False,
    "JOBS_WORKER_SHUTDOWN_TIMEOUT": True,
    "JOBS_WORKER_PREFETCH_HOLD": True,
    "JOBS_BEAT_LEASE": False,
    "JOBS_EVENTS_MAX_AGE": False,
    "JOBS_BEAT_MAX_LOOP_INTERVAL": False,
}
#: Keys holding whole numbers: (smallest, largest or None, whether None is allowed).
_INTEGERS = {
    "JOBS_MAX_DELIVERIES": (1, None, False),
    "JOBS_MAX_MESSAGE_SIZE": (1, None, False),
    "JOBS_BROKER_MAX_CONNECTIONS": (1, None, False),
    "JOBS_WORKER_PREFETCH": (1, None, False),
    "JOBS_WORKER_CONCURRENCY": (1, None, True),
    "JOBS_TASK_DEFAULT_PRIORITY": (0, 9, False),
    "JOBS_BROKER_CONNECTION_MAX_RETRIES": (0, None, True),
    "JOBS_BEAT_MISSED_CAP": (1, None, False),
    "JOBS_EVENTS_MAXLEN": (1, None, False),
}
#: What a periodic task does about runs missed while no beat ran (``JOBS_BEAT_MISSED``, or an
#: entry's ``missed``): send one, send none, or send each (up to ``JOBS_BEAT_MISSED_CAP``).
MISSED_POLICIES = ("once", "skip", "all")
_NAMES = ("JOBS_KEY_PREFIX", "JOBS_TASK_DEFAULT_QUEUE")
_URL_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://", "embedded:")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _fail(key: str, value: Any, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{key} must be {expected}, not {value!r}.")


def check_config(config: Mapping[str, Any]) -> None:
    """Raise :class:`~flask_jobs.exceptions.ImproperlyConfigured` for the first bad key.

    :param config: a mapping holding every key of :data:`DEFAULTS`.
    """
    for key, zero_ok in _SECONDS.items():
        value = config[key]
        seconds = _number(value)
        if seconds is None or seconds < 0 or (seconds == 0 and not zero_ok):
            raise _fail(key, value, "a number of seconds (or a timedelta) "
                        + ("of 0 or more" if zero_ok else "above 0"))
    for key, (low, high, none_ok) in _INTEGERS.items():
        value = config[key]
        if value is None and none_ok:
            continue
        number = _number(value)
        if number is None or number != int(number) or number < low or (
                high is not None and number > high):
            span = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise _fail(key, value, f"a whole number {span}" + (" (or None)" if none_ok else ""))
    for key in _NAMES:
        value = config[key]
        if not isinstance(value, str) or not value.strip():
            raise _fail(key, value, "a non-empty string")
    poll = config["JOBS_BROKER_BUSY_POLL"]
    micros = 0.0 if poll is None else _number(poll)
    if micros is None or micros < 0:
        raise _fail("JOBS_BROKER_BUSY_POLL", poll, "microseconds, 0 or more (0 or None: off)")
    check_timezone(config["JOBS_TIMEZONE"])
    lease = _number(config["JOBS_BEAT_LEASE"])
    if lease is not None and lease < 0.1:
        raise _fail("JOBS_BEAT_LEASE", config["JOBS_BEAT_LEASE"], "seconds, 0.1 or more "
                    "(a dead leader is replaced within 4/3 of it)")
    if config["JOBS_BEAT_MISSED"] not in MISSED_POLICIES:
        raise _fail("JOBS_BEAT_MISSED", config["JOBS_BEAT_MISSED"],
                    "'once' (send one run for all missed ones, as Celery), 'skip' or 'all'")
    schedule = config["JOBS_BEAT_SCHEDULE"]
    if schedule is not None and not isinstance(schedule, Mapping):
        raise _fail("JOBS_BEAT_SCHEDULE", schedule, "a dict of entry name -> {'task': ..., "
                    "'schedule': ...}")
    flag = config["JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP"]
    if not isinstance(flag, bool):
        raise _fail("JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP", flag, "True or False")
    prefix = config["JOBS_URL_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise _fail("JOBS_URL_PREFIX", prefix, "a URL path starting with '/', e.g. '/jobs'")
    accept = config["JOBS_ACCEPT_CONTENT"]
    if isinstance(accept, (str, bytes)) or not all(isinstance(a, str) for a in accept or ()):
        raise _fail("JOBS_ACCEPT_CONTENT", accept, "a list of content types, e.g. ['json']")
    routes = config["JOBS_TASK_ROUTES"]
    if routes is not None and not isinstance(routes, Mapping) and not (
            isinstance(routes, (list, tuple)) and all(isinstance(r, Mapping) for r in routes)):
        raise _fail("JOBS_TASK_ROUTES", routes,
                    "a dict of task name (or glob) -> queue, or a list of such dicts")
    for key in ("JOBS_BROKER_URL", "JOBS_RESULT_BACKEND"):
        url = config[key]
        if url and (not isinstance(url, str) or not url.startswith(_URL_SCHEMES)):
            shown = redact_url(url) if isinstance(url, str) else url  # (no password in errors)
            raise _fail(key, shown, "a Redis URL (redis://, rediss://, unix://), Sentinels "
                        "(sentinel://host:26379;sentinel://...) or 'embedded://'")
    check_transport_options(config["JOBS_BROKER_URL"], config["JOBS_BROKER_TRANSPORT_OPTIONS"])


def check_timezone(name: Any) -> datetime.tzinfo:
    """The :class:`~zoneinfo.ZoneInfo` of :data:`JOBS_TIMEZONE` ``name``.

    :raises ImproperlyConfigured: ``name`` is not an IANA time zone name.
    """
    if name == "UTC":  # the default: no zoneinfo import for apps that keep it
        return datetime.UTC
    import zoneinfo  # (here: only apps that name a time zone pay for it)

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise _fail("JOBS_TIMEZONE", name, "an IANA time zone name such as 'UTC', "
                    "'Europe/Berlin' or 'America/New_York'") from None


def settings_for(config: MutableMapping[str, Any]) -> Settings:
    """Fill in the defaults of ``config`` (an ``app.config``: they stay visible there, as with
    other Flask extensions) and read its :class:`Settings`.

    :raises ImproperlyConfigured: naming the first bad key and what it takes.
    """
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    return Settings.from_config(config)


def milliseconds(value: Any) -> int:
    """Seconds (a number, a numeric string) or a :class:`~datetime.timedelta`, in ms."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return int(float(value) * 1000)


def _seconds(value: Any) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


@dataclass(frozen=True)
class Settings:
    """One app's settings, checked and converted; see the configuration reference for each.

    Made by :meth:`from_config`. The attributes are read once; the properties at the end read
    :data:`LIVE_KEYS` from the app's config at each use.
    """

    #: The app's config mapping, for the keys read at each use (:data:`LIVE_KEYS`).
    config: Mapping[str, Any] = field(repr=False, compare=False)
    broker_url: str | None
    transport_options: Mapping[str, Any]
    result_backend: str | None
    key_prefix: str
    result_ttl_ms: int
    dead_ttl_ms: int
    task_serializer: str
    result_serializer: str
    accept_content: tuple[str, ...]
    default_queue: str
    default_priority: int
    routes: tuple[Route, ...] = field(repr=False)
    track_started: bool
    progress_interval: float
    orphan_timeout: float
    max_deliveries: int
    max_message_size: int
    connect_timeout: float
    broker_timeout: float
    retry_on_startup: bool
    connection_max_retries: int | None
    max_connections: int
    busy_poll_us: float
    shutdown_timeout: float
    worker_prefetch: int
    prefetch_hold: float
    worker_concurrency: int | None
    url_prefix: str
    register_blueprint: bool
    events: bool
    events_maxlen: int
    events_max_age: float
    beat_schedule: Mapping[str, Any]
    beat_lease: float
    beat_max_loop_interval: float
    beat_missed: str
    beat_missed_cap: int
    timezone: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Check ``config`` (which holds every key of :data:`DEFAULTS`) and read it.

        :raises ImproperlyConfigured: naming the first bad key and what it takes.
        """
        check_config(config)
        c = config
        retries = c["JOBS_BROKER_CONNECTION_MAX_RETRIES"]
        concurrency = c["JOBS_WORKER_CONCURRENCY"]
        return cls(
            config=config,
            broker_url=c["JOBS_BROKER_URL"] or None,
            transport_options=c["JOBS_BROKER_TRANSPORT_OPTIONS"] or {},
            result_backend=c["JOBS_RESULT_BACKEND"] or None,
            key_prefix=c["JOBS_KEY_PREFIX"],
            result_ttl_ms=milliseconds(c["JOBS_RESULT_EXPIRES"]),
            dead_ttl_ms=milliseconds(c["JOBS_DEAD_LETTER_EXPIRES"]),
            task_serializer=c["JOBS_TASK_SERIALIZER"],
            result_serializer=c["JOBS_RESULT_SERIALIZER"],
            accept_content=tuple(c["JOBS_ACCEPT_CONTENT"] or ()),
            default_queue=c["JOBS_TASK_DEFAULT_QUEUE"],
            default_priority=int(float(c["JOBS_TASK_DEFAULT_PRIORITY"])),
            routes=compile_routes(c["JOBS_TASK_ROUTES"]),
            track_started=bool(c["JOBS_TASK_TRACK_STARTED"]),
            progress_interval=_seconds(c["JOBS_PROGRESS_INTERVAL"]),
            orphan_timeout=_seconds(c["JOBS_ORPHAN_TIMEOUT"]),
            max_deliveries=int(float(c["JOBS_MAX_DELIVERIES"])),
            max_message_size=int(float(c["JOBS_MAX_MESSAGE_SIZE"])),
            connect_timeout=_seconds(c["JOBS_BROKER_CONNECT_TIMEOUT"]),
            broker_timeout=_seconds(c["JOBS_BROKER_TIMEOUT"]),
            retry_on_startup=c["JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP"],
            connection_max_retries=None if retries is None else int(float(retries)),
            max_connections=int(float(c["JOBS_BROKER_MAX_CONNECTIONS"])),
            busy_poll_us=float(c["JOBS_BROKER_BUSY_POLL"] or 0),
            shutdown_timeout=_seconds(c["JOBS_WORKER_SHUTDOWN_TIMEOUT"]),
            worker_prefetch=int(float(c["JOBS_WORKER_PREFETCH"])),
            prefetch_hold=_seconds(c["JOBS_WORKER_PREFETCH_HOLD"]),
            worker_concurrency=None if concurrency is None else int(float(concurrency)),
            url_prefix=c["JOBS_URL_PREFIX"],
            register_blueprint=bool(c["JOBS_REGISTER_BLUEPRINT"]),
            events=bool(c["JOBS_EVENTS"]),
            events_maxlen=int(float(c["JOBS_EVENTS_MAXLEN"])),
            events_max_age=_seconds(c["JOBS_EVENTS_MAX_AGE"]),
            beat_schedule=c["JOBS_BEAT_SCHEDULE"] or {},
            beat_lease=_seconds(c["JOBS_BEAT_LEASE"]),
            beat_max_loop_interval=_seconds(c["JOBS_BEAT_MAX_LOOP_INTERVAL"]),
            beat_missed=c["JOBS_BEAT_MISSED"],
            beat_missed_cap=int(float(c["JOBS_BEAT_MISSED_CAP"])),
            timezone=c["JOBS_TIMEZONE"],
        )

    def route(self, name: str, task_queue: str | None = None) -> str:
        """The queue of a task: :data:`JOBS_TASK_ROUTES`, then the task's own ``queue``, then
        :data:`JOBS_TASK_DEFAULT_QUEUE`."""
        for matches, queue in self.routes:
            if matches(name):
                return queue
        return task_queue or self.default_queue

    # -- read at each use (LIVE_KEYS) --------------------------------------------------------

    @property
    def always_eager(self) -> bool:
        """:data:`JOBS_ALWAYS_EAGER`: run tasks in the caller on ``delay()``."""
        return bool(self.config.get("JOBS_ALWAYS_EAGER"))

    @property
    def eager_propagates(self) -> bool:
        """:data:`JOBS_EAGER_PROPAGATES`: an eager result's ``get()`` raises the failure."""
        return bool(self.config.get("JOBS_EAGER_PROPAGATES", True))

    @property
    def expose_tracebacks(self) -> bool:
        """:data:`JOBS_EXPOSE_TRACEBACKS`: the status JSON includes tracebacks."""
        return bool(self.config.get("JOBS_EXPOSE_TRACEBACKS"))

    @property
    def status_authorizer(self) -> Any:
        """:data:`JOBS_STATUS_AUTHORIZER`: a callable, an import string, or None."""
        return self.config.get("JOBS_STATUS_AUTHORIZER")

    @property
    def current_owner(self) -> Any:
        """:data:`JOBS_CURRENT_OWNER`: a callable, an import string, or None."""
        return self.config.get("JOBS_CURRENT_OWNER")

    @property
    def metrics(self) -> bool:
        """:data:`JOBS_METRICS`: serve ``<prefix>/metrics``."""
        return bool(self.config.get("JOBS_METRICS"))

    @property
    def metrics_authorizer(self) -> Any:
        """:data:`JOBS_METRICS_AUTHORIZER`: a callable, an import string, or None."""
        return self.config.get("JOBS_METRICS_AUTHORIZER")

    @property
    def sse_heartbeat(self) -> float:
        """:data:`JOBS_SSE_HEARTBEAT` in seconds."""
        return _seconds(self.config.get("JOBS_SSE_HEARTBEAT", DEFAULTS["JOBS_SSE_HEARTBEAT"]))

    @property
    def sse_max_age(self) -> float:
        """:data:`JOBS_SSE_MAX_AGE` in seconds."""
        return _seconds(self.config.get("JOBS_SSE_MAX_AGE", DEFAULTS["JOBS_SSE_MAX_AGE"]))
