"""Check the ``JOBS_*`` configuration once, at ``init_app``, with errors that name the key.

A typo in a setting should stop the app at start with a message saying which key is wrong and
what it takes, not fail later inside a worker with ``could not convert string to float``.
Numbers may be given as numeric strings (as ``app.config.from_prefixed_env()`` can leave them).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from .connection import check_transport_options, redact_url
from .exceptions import ImproperlyConfigured

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
}
_NAMES = ("JOBS_KEY_PREFIX", "JOBS_TASK_DEFAULT_QUEUE", "JOBS_TIMEZONE")
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
    """Raise :class:`~flask_jobs.exceptions.ImproperlyConfigured` for the first bad key."""
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
