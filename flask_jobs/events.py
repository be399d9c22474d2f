"""Events: what happened to tasks and workers, in a capped Redis stream (``events``).

Celery's event names: ``task-received``, ``task-started``, ``task-succeeded``, ``task-failed``,
``task-retried``, ``task-revoked``, and ours: ``task-progress`` (a ``PROGRESS`` or custom state),
``task-expired``, ``task-dead-lettered``; ``worker-online``, ``worker-heartbeat``,
``worker-offline``. The scripts that apply a worker's writes add the task events of one batch
in one stream entry (so events cost one ``XADD`` per batch, not per task); workers add theirs
from their heartbeat. The stream is capped at :data:`JOBS_EVENTS_MAXLEN` entries and trimmed to
:data:`JOBS_EVENTS_MAX_AGE` by the reaper. ``flask jobs events`` tails it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from .connection import text
from .keys import Keys

#: Every event type (Celery's, then ours).
EVENT_TYPES = (
    "task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
    "task-revoked", "task-progress", "task-expired", "task-dead-lettered",
    "worker-online", "worker-heartbeat", "worker-offline",
)


@dataclass(frozen=True)
class Event:
    """One event.

    :param type: one of :data:`EVENT_TYPES`.
    :param uuid: the task's id (``''`` for a worker event), Celery's name for it.
    :param name: the task's name.
    :param hostname: the worker's identity.
    :param timestamp: when it happened, Unix seconds on Redis's clock.
    :param info: the runtime in ms (succeeded, failed), the state (progress), the countdown in
        ms (retried), the reason (revoked, dead-lettered); a worker's heartbeat info (JSON).
    :param id: the stream entry it came in (pass it to :meth:`EventStream.read` to go on).
    """

    type: str
    uuid: str
    name: str
    hostname: str
    timestamp: float
    info: str = ""
    id: str = field(default="", compare=False)

    @property
    def runtime(self) -> float | None:
        """Seconds the task ran (``task-succeeded``, ``task-failed``)."""
        if self.type in ("task-succeeded", "task-failed") and self.info:
            return float(self.info) / 1000
        return None

    def as_dict(self) -> dict[str, Any]:
        """Celery's event dict: ``type``, ``uuid``, ``name``, ``hostname``, ``timestamp``,
        plus ``runtime`` or ``info``."""
        data: dict[str, Any] = {"type": self.type, "uuid": self.uuid, "name": self.name,
                                "hostname": self.hostname, "timestamp": self.timestamp}
        if self.runtime is not None:
            data["runtime"] = self.runtime
        elif self.info:
            data["info"] = self.info
        return data


def parse_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> list[Event]:
    """The events of one stream entry."""
    eid = text(entry_id)
    timestamp = int(eid.split("-")[0]) / 1000
    worker = text(fields.get(b"w", b""))
    found = []
    for line in text(fields.get(b"e", b"")).split("\n"):
        parts = line.split("\t", 3)
        if len(parts) == 4:
            found.append(Event(parts[0], parts[1], parts[2], worker, timestamp, parts[3], eid))
    return found


class EventStream:
    """Reading (and, for workers, adding) events.

    :param client: a client of the app's Redis (a blocking one to :meth:`read` with ``block``).
    :param keys: the app's key names.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.key = keys.events_stream

    def read(self, after: str = "$", block: float | None = None,
             count: int = 1000) -> tuple[str, list[Event]]:
        """Events after stream id ``after`` (``$``: from now on; ``0``: from the oldest kept),
        waiting up to ``block`` seconds for some; returns the id to go on from, and them."""
        if after == "$":  # from now on: from the newest entry (none comes twice or is lost)
            newest: Any = self.client.xrevrange(self.key, count=1)
            after = text(newest[0][0]) if newest else "0-0"
        reply: Any = self.client.xread({self.key: after}, count=count,
                                  block=None if block is None else max(1, int(block * 1000)))
        events: list[Event] = []
        last = after
        for _, entries in reply or ():
            for entry_id, fields in entries:
                events.extend(parse_entry(entry_id, fields))
                last = text(entry_id)
        return last, events

    def recent(self, count: int = 100) -> list[Event]:
        """The newest events (from the last ``count`` entries), oldest first."""
        entries: Any = self.client.xrevrange(self.key, count=count)
        return [e for entry_id, fields in reversed(entries) for e in parse_entry(entry_id, fields)]

    def follow(self, after: str = "$", block: float = 1.0) -> Iterator[Event]:
        """Every event from ``after`` on, as they come (forever)."""
        while True:
            after, events = self.read(after, block)
            yield from events

    def add_worker_event(self, pipe: Any, kind: str, worker: str, maxlen: int,
                         info: dict[str, Any] | None = None) -> None:
        """Queue a worker event on ``pipe`` (a pipeline of the worker's)."""
        line = f"{kind}\t\t\t{json.dumps(info) if info else ''}"
        pipe.xadd(self.key, {"w": worker, "e": line}, maxlen=maxlen, approximate=True)
