"""The schedule's state in Redis: entries, their due times, the leader's lease, and the one
script that sends a run (see ``scripts/beat_*.lua`` and the ``beat:`` keys in
:mod:`flask_jobs.keys`).

Nothing about a schedule lives in a file or in one process: any beat, on any host, reads the
same entries, and the entry's next run is the fencing token that makes each due run go out once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ..connection import text
from ..keys import Keys
from ..message import Message
from ..scripts import script_source


@dataclass
class StoredEntry:
    """An entry's definition and run state as Redis holds them (times in Redis ms)."""

    name: str
    definition: str
    source: str
    next_ms: int | None
    last_ms: int | None
    due_ms: int | None
    total: int
    last_id: str | None
    paused: bool


class FireResult:
    """What :meth:`ScheduleStore.fire` did: ``SENT``, ``MOVED_ON`` (another beat sent the run,
    or the entry changed), ``NOT_LEADER`` or ``NOT_DUE``."""

    SENT, MOVED_ON, NOT_LEADER, NOT_DUE = 1, 0, -1, -2


class ScheduleStore:
    """Redis operations of the scheduler for one app.

    :param client: the app's client.
    :param keys: the app's key names.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._lease = client.register_script(script_source("beat_lease"))
        self._fire = client.register_script(script_source("beat_fire"))
        self._sync = client.register_script(script_source("beat_sync"))

    def now_ms(self) -> int:
        """Redis's clock, in ms: due times are compared with it, never with this host's."""
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- the leader's lease --------------------------------------------------------------------

    def lease(self, beat_id: str, lease_ms: int) -> tuple[bool, str]:
        """Take or renew the lease for ``beat_id`` (0 ms: give it up); returns whether it holds
        the lease and who does."""
        held, holder = self._lease(keys=[self.keys.beat_leader],
                                   args=[self.keys.base, beat_id, lease_ms])
        return bool(held), text(holder)

    def leader(self) -> str | None:
        """The id of the beat holding the lease, if any."""
        holder = self.client.get(self.keys.beat_leader)
        return text(holder) if holder else None

    # -- entries -------------------------------------------------------------------------------

    def sync(self, source: str, entries: Sequence[tuple[str, str, int]]) -> list[str]:
        """Write ``(name, definition, first next ms)`` entries (see ``beat_sync.lua``): with
        ``source`` ``config``, the whole configuration (older configured entries it lacks are
        removed). Returns the names touched, each after ``+`` (new), ``~`` (changed) or ``-``."""
        args: list[Any] = [self.keys.base, source, len(entries)]
        for name, definition, next_ms in entries:
            args += (name, definition, next_ms)
        return [text(n) for n in self._sync(keys=[self.keys.beat_names], args=args)]

    def names(self) -> list[str]:
        """Every entry's name, sorted."""
        return sorted(text(n) for n in self.client.smembers(self.keys.beat_names))

    def get(self, name: str) -> StoredEntry | None:
        """One entry, or None if there is none of that name."""
        f = self.client.hgetall(self.keys.beat_entry(name))
        if not f.get(b"def"):
            return None

        def number(key: bytes) -> int | None:
            value = f.get(key)
            return int(value) if value else None

        return StoredEntry(name, text(f[b"def"]), text(f.get(b"src", b"")), number(b"next"),
                           number(b"last"), number(b"due"), int(f.get(b"total") or 0),
                           text(f[b"last_id"]) if f.get(b"last_id") else None,
                           f.get(b"paused") == b"1")

    def due(self, now_ms: int, limit: int = 100) -> list[tuple[str, int]]:
        """``(name, next ms)`` of the enabled entries due at ``now_ms``, oldest first."""
        found: list[tuple[bytes, float]] = self.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.beat_due, "-inf", now_ms, start=0, num=limit, withscores=True)
        return [(text(name), int(score)) for name, score in found]

    def first_due_ms(self) -> int | None:
        """The earliest next run of any enabled entry."""
        first = self.client.zrange(self.keys.beat_due, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def remove(self, name: str) -> bool:
        """Delete an entry; returns whether there was one."""
        pipe = self.client.pipeline()
        pipe.delete(self.keys.beat_entry(name))
        pipe.zrem(self.keys.beat_due, name)
        pipe.srem(self.keys.beat_names, name)
        return bool(pipe.execute()[0])

    def pause(self, name: str) -> None:
        """Stop sending an entry's runs (it keeps its state)."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.beat_entry(name), "paused", 1)
        pipe.zrem(self.keys.beat_due, name)
        pipe.execute()

    def resume(self, name: str, next_ms: int) -> None:
        """Send an entry's runs again, the next at ``next_ms``."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.beat_entry(name), mapping={"paused": 0, "next": next_ms})
        pipe.zadd(self.keys.beat_due, {name: next_ms})
        pipe.execute()

    # -- sending -------------------------------------------------------------------------------

    def fire(self, mode: str, beat_id: str, name: str, expected_ms: int | None, next_ms: int | None,
             due_ms: int | None, message: Message | None) -> tuple[int, str]:
        """Send a run and/or advance the entry, atomically and fenced (see ``beat_fire.lua``).

        :param mode: ``tick`` (a due run), ``skip`` (advance past missed runs, send nothing) or
            ``run`` (send now, schedule untouched).
        :returns: a :class:`FireResult` code and the script's detail (the server time, the
            entry's next run, or the lease holder).
        """
        m = message
        task: tuple[Any, ...] = ("", "", 0, "", "", 0, 0, b"", "")
        if m is not None:
            task = (m.id, m.queue, m.priority, m.name, m.ctype, m.delay_ms, m.expires_ms, m.body,
                    m.owner)
        code, detail = self._fire(
            keys=[self.keys.beat_entry(name)],
            args=[self.keys.base, mode, beat_id, name, "" if expected_ms is None else expected_ms,
                  "" if next_ms is None else next_ms, "" if due_ms is None else due_ms, *task])
        return int(code), text(detail) if isinstance(detail, bytes) else str(detail)
