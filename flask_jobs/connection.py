"""Redis clients for the configured URL: a Redis server, or its current primary via Sentinel.

Plain URLs (``redis://``, ``rediss://``, ``unix://``) go to :meth:`redis.Redis.from_url`. A
Sentinel URL is written as Celery writes it, so a Celery configuration ports as it is::

    JOBS_BROKER_URL = "sentinel://:password@10.0.0.1:26379/0;sentinel://10.0.0.2:26379"
    JOBS_BROKER_TRANSPORT_OPTIONS = {"master_name": "mymaster"}

Each ``;``-separated part names one Sentinel. The password (and user) and the database number
are those of the primary; the Sentinels' own credentials go in ``sentinel_kwargs``. Every client
made for the app asks the Sentinels for the primary when it connects, and drops its connections
when the primary changes, so after a failover the next command goes to the new primary (a
command caught by the failover fails once; the callers retry as after any lost connection).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.exceptions import MasterDownError, ReadOnlyError
from redis.sentinel import Sentinel

from .exceptions import ImproperlyConfigured

log = logging.getLogger("flask_jobs")

SENTINEL_SCHEME = "sentinel://"

#: ``JOBS_BROKER_TRANSPORT_OPTIONS`` keys used with Sentinel.
SENTINEL_OPTIONS = ("master_name", "sentinel_kwargs", "min_other_sentinels")
#: Celery transport options that mean nothing here, and why (a ported configuration may carry
#: them: they are accepted, with a warning saying so).
IGNORED_OPTIONS = {
    "visibility_timeout": "tasks are leased and the leases renewed by heartbeats "
                          "(JOBS_ORPHAN_TIMEOUT decides when a silent worker's tasks come back)",
    "fanout_prefix": "broadcasts use one channel under JOBS_KEY_PREFIX",
    "fanout_patterns": "broadcasts use one channel under JOBS_KEY_PREFIX",
    "global_keyprefix": "use JOBS_KEY_PREFIX",
    "queue_order_strategy": "queues are read in the order given to the worker, priorities 9 to 0",
    "priority_steps": "priorities are 0-9 (9 runs first), each its own list",
    "sep": "queue keys are named by flask-jobs (see the keys reference)",
    "max_connections": "use JOBS_BROKER_MAX_CONNECTIONS",
    "socket_timeout": "use JOBS_BROKER_TIMEOUT",
    "socket_connect_timeout": "use JOBS_BROKER_CONNECT_TIMEOUT",
    "health_check_interval": "flask-jobs checks its connections itself",
    "polling_interval": "workers block on Redis instead of polling",
}


#: Error replies that say "this server cannot serve us any more", not "this command is wrong":
#: READONLY (a write to a primary demoted to replica by a failover), UNBLOCKED (a blocking read
#: cut short by that demotion), MASTERDOWN (a replica whose primary is gone). redis-py raises
#: them as plain replies (its Sentinel connections turn only a bare READONLY into a lost
#: connection), and a script's call carries them inside its own error.
UNAVAILABLE_REPLIES = ("READONLY", "UNBLOCKED", "MASTERDOWN")


def text(reply: bytes | str) -> str:
    """A reply as text. Our clients return bytes (no ``decode_responses``, so message bodies
    stay bytes); redis-py's types say either."""
    return reply.decode() if isinstance(reply, bytes) else reply


def data(reply: bytes | str) -> bytes:
    """A reply as bytes (see :func:`text`)."""
    return reply if isinstance(reply, bytes) else reply.encode()


def means_unavailable(exc: BaseException) -> bool:
    """Whether a Redis error reply says the server cannot serve us now (see
    :data:`UNAVAILABLE_REPLIES`) rather than that the command was wrong."""
    if isinstance(exc, (ReadOnlyError, MasterDownError)):  # (redis-py strips their codes)
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    if getattr(exc, "status_code", None) in UNAVAILABLE_REPLIES:
        return True
    message = str(exc)  # a bare reply, or one inside a script's error
    return any(message.startswith(code) or f"-{code} " in message
               for code in UNAVAILABLE_REPLIES)


class _FailoverAware:
    """Mixed into the connection class of every client: a reply that means the server cannot
    serve us any more closes the connection and is raised as :class:`redis.ConnectionError`.

    Every caller already treats a lost connection as "back off, reconnect, carry on", and a
    reconnection finds the new primary (through Sentinel, or the DNS name of a managed service
    that follows it). Without this, a worker whose Redis was demoted under it by a failover
    died on the ``READONLY`` error of its next claim.
    """

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.ResponseError as exc:
            if not means_unavailable(exc):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"Redis cannot serve this connection any more "
                                        f"({str(exc)[:200]}); reconnecting") from exc


_aware_classes: dict[type, type] = {}


def _failover_aware(cls: type) -> type:
    """``cls`` with :class:`_FailoverAware` mixed in (one subclass per class, made once)."""
    if issubclass(cls, _FailoverAware):
        return cls
    aware = _aware_classes.get(cls)
    if aware is None:
        aware = _aware_classes[cls] = type(f"FailoverAware{cls.__name__}", (_FailoverAware, cls),
                                           {"__module__": __name__})
    return aware


class SentinelSpec:
    """A parsed Sentinel URL: the Sentinels' addresses and the primary's database and login."""

    def __init__(self, hosts: list[tuple[str, int]], db: int, username: str | None,
                 password: str | None, master_name: str | None) -> None:
        self.hosts = hosts
        self.db = db
        self.username = username
        self.password = password
        #: From the URL's ``?master_name=`` (else from the transport options).
        self.master_name = master_name


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Sentinels (``sentinel://...``) rather than a Redis server."""
    return url.startswith(SENTINEL_SCHEME)


def parse_sentinel_url(url: str) -> SentinelSpec:
    """Parse ``sentinel://[user:password@]host:port[/db][?master_name=name][;sentinel://...]``.

    :raises ImproperlyConfigured: a part is not a ``sentinel://host:port`` address.
    """
    hosts: list[tuple[str, int]] = []
    db, username, password, master = 0, None, None, None
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        if not is_sentinel_url(part):
            raise ImproperlyConfigured(
                f"JOBS_BROKER_URL: every ';'-separated part of a Sentinel URL must start with "
                f"'sentinel://', not {redact_url(part)!r}.")
        pieces = urlsplit(part)
        try:
            port = pieces.port or 26379
        except ValueError as exc:
            raise ImproperlyConfigured(f"JOBS_BROKER_URL: bad Sentinel address in "
                                       f"{redact_url(part)!r} ({exc}).") from None
        if not pieces.hostname:
            raise ImproperlyConfigured(
                f"JOBS_BROKER_URL: no host in {redact_url(part)!r}; write "
                "'sentinel://host:26379'.")
        hosts.append((pieces.hostname, port))
        if pieces.password is not None and password is None:  # (the first one given)
            password = unquote(pieces.password)
            username = unquote(pieces.username) if pieces.username else None
        path = pieces.path.strip("/")
        if path:
            if not path.isdigit():
                raise ImproperlyConfigured(
                    f"JOBS_BROKER_URL: the database of a Sentinel URL is a number, not {path!r}.")
            db = int(path)
        names = parse_qs(pieces.query).get("master_name")
        if names:
            master = names[0]
    if not hosts:
        raise ImproperlyConfigured("JOBS_BROKER_URL: a Sentinel URL names no Sentinel.")
    return SentinelSpec(hosts, db, username, password, master)


def check_transport_options(url: str | None, options: Any) -> None:
    """Check ``JOBS_BROKER_TRANSPORT_OPTIONS`` against the broker URL (at ``init_app``).

    Unknown keys Celery knows are accepted with a warning (a ported configuration may carry
    them); a Sentinel URL needs a ``master_name``.

    :raises ImproperlyConfigured: not a dict, a bad value, or no primary's name for Sentinel.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(
            f"JOBS_BROKER_TRANSPORT_OPTIONS must be a dict, e.g. {{'master_name': 'mymaster'}}, "
            f"not {options!r}.")
    for key in options:
        if key in IGNORED_OPTIONS:
            log.warning("JOBS_BROKER_TRANSPORT_OPTIONS[%r] has no effect in flask-jobs: %s.", key,
                        IGNORED_OPTIONS[key])
        elif key not in SENTINEL_OPTIONS:
            raise ImproperlyConfigured(
                f"JOBS_BROKER_TRANSPORT_OPTIONS has an unknown key {key!r}; flask-jobs knows "
                f"{', '.join(SENTINEL_OPTIONS)}.")
    kwargs = options.get("sentinel_kwargs")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ImproperlyConfigured(
            "JOBS_BROKER_TRANSPORT_OPTIONS['sentinel_kwargs'] must be a dict of connection "
            f"options for the Sentinels, e.g. {{'password': '...'}}, not {type(kwargs).__name__}.")
    others = options.get("min_other_sentinels", 0)
    if isinstance(others, bool) or not isinstance(others, int) or others < 0:
        raise ImproperlyConfigured(
            "JOBS_BROKER_TRANSPORT_OPTIONS['min_other_sentinels'] must be a whole number of 0 or "
            f"more, not {others!r}.")
    if isinstance(url, str) and is_sentinel_url(url):
        spec = parse_sentinel_url(url)
        name = spec.master_name or options.get("master_name")
        if not name or not isinstance(name, str):
            raise ImproperlyConfigured(
                "A Sentinel JOBS_BROKER_URL needs the name of the primary the Sentinels monitor: "
                "set JOBS_BROKER_TRANSPORT_OPTIONS = {'master_name': 'mymaster'} (as in Celery), "
                "or add '?master_name=mymaster' to the URL.")


class Connector:
    """Makes the Redis clients of one app for its broker URL (see the module docstring).

    :param options: ``JOBS_BROKER_TRANSPORT_OPTIONS``.
    :param common: keyword arguments for every client (timeouts, pool size, health checks).
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None, **common: Any) -> None:
        self.url = url
        self.options = dict(options or {})
        self.common = common
        self._sentinel: Sentinel | None = None
        self._master_name = ""
        if is_sentinel_url(url):
            spec = parse_sentinel_url(url)
            self._master_name = spec.master_name or self.options["master_name"]
            # The Sentinels get the same connect and read timeouts as Redis, unless told
            # otherwise: a Sentinel that does not answer must not hang a send.
            sentinel_kwargs = {
                "socket_connect_timeout": common.get("socket_connect_timeout"),
                "socket_timeout": common.get("socket_timeout") or
                common.get("socket_connect_timeout"),
                **(self.options.get("sentinel_kwargs") or {}),
            }
            # One Sentinel manager for every client of the app: its connections to the
            # Sentinels are shared.
            self._sentinel = Sentinel(
                spec.hosts, min_other_sentinels=int(self.options.get("min_other_sentinels", 0)),
                sentinel_kwargs=sentinel_kwargs, db=spec.db, username=spec.username,
                password=spec.password)

    @property
    def is_sentinel(self) -> bool:
        """Whether clients reach the primary through Sentinel."""
        return self._sentinel is not None

    def client(self, **overrides: Any) -> redis.Redis:
        """A new client (its own connection pool); ``overrides`` replace the common kwargs."""
        kwargs = {**self.common, **overrides}
        if self._sentinel is None:
            client = redis.Redis.from_url(self.url, **kwargs)
        else:
            client = self._sentinel.master_for(self._master_name, redis_class=redis.Redis,
                                               **kwargs)
        # (before any connection is made: the pool makes them all from this class)
        pool = client.connection_pool
        pool.connection_class = _failover_aware(pool.connection_class)
        return client


#: Query option names holding a secret contain one of these (redis-py reads ``password`` and
#: ``ssl_password`` from the query string).
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential")


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``**`` (for banners, logs and errors): the password
    of its user part, and query options that hold one (``password``, ``ssl_password``, anything
    named like a secret). Each part of a ``;``-separated Sentinel URL is redacted."""
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:  # unparsable: show nothing that could be a secret
        return f"{parts.scheme}://**"
    netloc = parts.netloc
    if password is not None:
        # Only the text after the user part's ':' changes, so the host (IPv6 brackets, port)
        # stays exactly as written.
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:**@{hostport}"
    query = parts.query
    if query:
        query = "&".join(_redact_option(option) for option in query.split("&"))
    if netloc == parts.netloc and query == parts.query:
        return url
    # (by hand, not urlunsplit: that drops the '//' of 'unix:///path')
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def _redact_option(option: str) -> str:
    name, sep, value = option.partition("=")
    if sep and value and any(word in name.lower() for word in _SECRET_WORDS):
        return f"{name}=**"
    return option
