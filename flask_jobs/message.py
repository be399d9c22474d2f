"""The message format: what a producer writes to Redis and a worker writes back.

- :class:`Message` and :func:`build_message`: a task call, checked and encoded for
  ``scripts/enqueue.lua``. Everything that can be wrong with a call is found here, before
  anything reaches Redis.
- :func:`new_task_id`: the one generator of task, group and chain ids.
- :data:`OPTIONAL_FIELDS`: the fields a message body may carry besides ``task``, ``args`` and
  ``kwargs`` (the worker copies them into the request; a retry carries them on).

What a worker writes back is in :mod:`flask_jobs.writes`.
- :func:`parse_rate_limit`: Celery's rate limit strings, read by tasks and by the broker.

Everything here is on the wire: old and new workers share one Redis during a rolling deploy,
so a change to a body field or a write layout must stay readable by the previous version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from os import urandom as _urandom
from typing import Any

from . import tracing
from .config import Settings
from .exceptions import EncodeError, PayloadTooLarge
from .request import TaskLike
from .serialization import Codecs

_UTC = dt.UTC

#: The optional fields of a message body, with the names of Celery's request attributes.
OPTIONAL_FIELDS = ("retries", "eta", "headers", "link", "link_error", "group", "parent_id",
                   "root_id", "owner", "time_limit", "soft_time_limit", "ignore_result", "chain")
#: The fields a retry's new message carries over from the request (``retries`` is counted up,
#: and a retry has its own countdown instead of the ``eta``).
RETRY_FIELDS = tuple(f for f in OPTIONAL_FIELDS if f not in ("retries", "eta"))


class Message:
    """One task message, ready for the enqueue script (see ``scripts/enqueue.lua``).

    The group id is not part of it: a group is sent with one call that names it once.
    """

    __slots__ = ("id", "queue", "priority", "name", "ctype", "body", "delay_ms", "expires_ms",
                 "owner", "chosen_id", "dedup_key", "dedup_ttl_ms")

    def __init__(self, id: str, queue: str, priority: int, name: str, ctype: str, body: bytes,
                 delay_ms: int = 0, expires_ms: int = 0, owner: str = "",
                 chosen_id: bool = True, dedup_key: str = "", dedup_ttl_ms: int = 0) -> None:
        self.id, self.queue, self.priority, self.name = id, queue, priority, name
        self.ctype, self.body, self.delay_ms, self.expires_ms = ctype, body, delay_ms, expires_ms
        self.owner = owner
        #: The caller chose the id, so the script checks it is not already live.
        self.chosen_id = chosen_id
        #: Queue it only if no task holds this key (``apply_async(dedup_key=...)``); ``id``
        #: becomes the holder's when one does.
        self.dedup_key, self.dedup_ttl_ms = dedup_key, dedup_ttl_ms

    def shape(self) -> tuple[Any, ...]:
        """What this message may share with others of one script call (see
        ``scripts/enqueue.lua``): queue, priority, name, ctype, delay, expiry, owner, check,
        dedup key and ttl."""
        return (self.queue, self.priority, self.name, self.ctype, self.delay_ms,
                self.expires_ms, self.owner, "1" if self.chosen_id else "", self.dedup_key,
                self.dedup_ttl_ms)


# -- ids ----------------------------------------------------------------------------------------


def new_task_id() -> str:
    """A random UUID4 string (122 random bits from the OS: unguessable), made quickly.

    The one source of ids: tasks, groups and the links of a chain all get theirs here.
    """
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


# -- times and rates ----------------------------------------------------------------------------


def seconds(option: str, value: Any) -> float:
    """A finite number of seconds (or a timedelta), or a clear error naming the option."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if number == number and abs(number) != float("inf"):
            return number
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


def seconds_until(when: Any, option: str = "eta") -> float:
    """Seconds from now until ``when`` (a datetime or ISO string; naive means UTC, as in
    Celery with ``enable_utc``)."""
    moment = _datetime(option, when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return (moment - dt.datetime.now(_UTC)).total_seconds()


def _expires_seconds(expires: Any) -> float | None:
    if expires is None:
        return None
    if isinstance(expires, (dt.datetime, str)):
        return seconds_until(expires, "expires")
    return seconds("expires", expires)


def parse_rate_limit(value: str | float | None) -> float | None:
    """Milliseconds between two runs for a Celery rate limit (``"10/s"``, ``"100/m"``,
    ``"500/h"``, or a number of runs per second); None for no limit (None, 0, ``"0"``).

    :raises ValueError: the value is not a rate limit.
    """
    if value is None:
        return None
    per = 1.0
    text: Any = value
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


# -- building a message -------------------------------------------------------------------------


def signature_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """The plain form of a signature (a :class:`~flask_jobs.Signature` or a dict of one) as
    it travels in a message: ``{task, args, kwargs, options, immutable}``."""
    if not isinstance(value, Mapping) or not isinstance(value.get("task"), str):
        raise TypeError(f"Expected a signature (e.g. add.s(2)) or a dict with a 'task' name, "
                        f"not {value!r}")
    return {"task": value["task"], "args": list(value.get("args") or ()),
            "kwargs": dict(value.get("kwargs") or {}), "options": dict(value.get("options") or {}),
            "subtask_type": value.get("subtask_type"), "immutable": bool(value.get("immutable"))}


def _signature_list(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [signature_dict(s) for s in items]


def build_message(
    settings: Settings,
    codecs: Codecs,
    task: TaskLike | None,
    name: str,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
    eta: dt.datetime | str | None = None,
    expires: float | dt.datetime | dt.timedelta | str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    task_id: Any = None,  # (a str; anything else, e.g. a UUID, is made one)
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
    dedup_key: str | None = None,
    dedup_ttl: float | None = None,
    chord: dict[str, Any] | None = None,
    chain: list[Any] | None = None,
    validated: bool = False,
    **unknown: Any,
) -> Message:
    """Validate a call of task ``name`` and encode it as a :class:`Message`.

    Everything that can be wrong with a call is found here, before anything reaches Redis: a bad
    option, arguments that do not fit the function, a value the serializer cannot encode, a
    message over :data:`JOBS_MAX_MESSAGE_SIZE`.

    :param task: the registered task (its defaults and argument check), or None when sending
        by name a task this process does not know.
    :param dedup_key: queue it only if no task sent with this key within ``dedup_ttl``
        seconds (default 60) is known; otherwise the message takes that task's id.
    :param chord: the body of a chord: ``{"header": group id, "results": whether the header's
        results go in front of the arguments}``; the worker reads them (or fails with
        :class:`~flask_jobs.exceptions.ChordError`).
    :param chain: the rest of the chain this task is a step of, as a stack (the next step
        last, as Celery's ``request.chain``): the worker sends the next step with this task's
        result, and the rest with it.
    :param validated: the arguments were checked already (a signature repeated in a group).
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
    if not validated and task is not None:
        # (a chord's body gets the header's results in front of its arguments)
        task.check_arguments([[], *args] if chord and chord.get("results") else args, kwargs)
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
        delay = seconds("countdown", countdown)
    elif eta is not None:
        when = _datetime("eta", eta)
        delay = seconds_until(when)
        body["eta"] = when.isoformat()
    if task is not None and expires is None:
        expires = task.expires
    expires_s = _expires_seconds(expires)
    # Relative to the enqueue, measured on Redis's clock by the script.
    expires_ms = max(1, int(expires_s * 1000)) if expires_s is not None else 0
    if headers is not None and not isinstance(headers, dict):
        raise TypeError(f"headers must be a dict, not {type(headers).__name__}")
    headers = tracing.inject(headers)  # (the sender's trace, when OpenTelemetry is on)
    if headers:
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
        body["time_limit"] = seconds("time_limit", time_limit)
    if soft_time_limit is not None:
        body["soft_time_limit"] = seconds("soft_time_limit", soft_time_limit)
    if ignore_result is not None:
        body["ignore_result"] = bool(ignore_result)
    if owner is not None:
        body["owner"] = str(owner)
    if chord is not None:
        body["chord"] = chord
    if chain:
        # (not copied item by item as link is: a chain's rest is long, comes from a message
        # decoded by the worker or from chain.prepare, and every step passes it on)
        if not isinstance(chain, list) or not all(isinstance(s, dict) for s in chain):
            raise TypeError(f"chain must be a list of signatures, not {chain!r}")
        body["chain"] = chain
    dedup_ttl_ms = 0
    if dedup_key is not None:
        if not isinstance(dedup_key, str) or not dedup_key:
            raise TypeError(f"dedup_key must be a non-empty string, not {dedup_key!r}")
        dedup_ttl_ms = max(1, int(seconds("dedup_ttl", 60.0 if dedup_ttl is None
                                          else dedup_ttl) * 1000))
    elif dedup_ttl is not None:
        raise TypeError("dedup_ttl needs a dedup_key")
    ctype = serializer or (task.serializer if task is not None else None) or (
        settings.task_serializer)
    if ctype not in codecs.accept:  # e.g. pickle must be opted into, for sending too
        codecs.check_serializer(ctype)
    try:
        data = codecs.dumps(body, ctype)
    except EncodeError as exc:
        raise EncodeError(_explain_encode_error(codecs, name, ctype, args, kwargs, exc)) from exc
    if len(data) > settings.max_message_size:
        raise PayloadTooLarge(
            f"The message of task {name!r} is {len(data)} bytes, over JOBS_MAX_MESSAGE_SIZE "
            f"({settings.max_message_size}). Pass a reference (a file path, a database id) "
            "instead of the data itself."
        )
    if priority is None:
        priority = task.priority if task is not None and task.priority is not None else (
            settings.default_priority)
    if not (isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 9):
        raise ValueError(f"priority must be an integer between 0 and 9 (9 runs first), "
                         f"not {priority!r}")
    if queue is not None and not isinstance(queue, str):
        raise TypeError(f"queue must be a queue name (str), not {queue!r}")
    return Message(
        task_id,
        queue or settings.route(name, task.queue if task is not None else None),
        int(priority),
        name,
        ctype,
        data,
        max(0, int(delay * 1000)),
        expires_ms,
        "" if owner is None else str(owner),
        chosen_id,
        dedup_key or "",
        dedup_ttl_ms,
    )


def _explain_encode_error(codecs: Codecs, name: str, ctype: str, args: list[Any],
                          kwargs: dict[str, Any], exc: Exception) -> str:
    """Name the argument the serializer could not encode (only runs on the error path)."""
    for where, value in [*((f"argument {i}", a) for i, a in enumerate(args)),
                         *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
        try:
            codecs.dumps(value, ctype)
        except EncodeError:
            return (
                f"Cannot send task {name!r}: its {where} is a {type(value).__module__}."
                f"{type(value).__qualname__}, which the {ctype!r} serializer cannot encode. Pass "
                "plain data (numbers, strings, lists, dicts, datetimes, ids) instead. Nothing was "
                "queued."
            )
    return f"Cannot send task {name!r}: {exc}. Nothing was queued."
