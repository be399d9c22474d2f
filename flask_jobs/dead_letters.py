"""Dead letters: the tasks quarantined because they could not run (``flask jobs dlq``).

A worker dead-letters a message it cannot decode, a task name it does not know, and a task
delivered more than :data:`JOBS_MAX_DELIVERIES` times (see ``dead_letter`` in
``scripts/lib.lua``): the record becomes FAILURE with the reason and keeps the message, and an
entry ``{id, name, reason, at}`` goes on a capped list (key ``dlq``). From here they can be
listed, queued again, or purged.
"""

from __future__ import annotations

import json
from typing import Any

from .broker import Broker
from .connection import data, text
from .message import Message


class DeadLetters:
    """The dead letters of one app.

    :param broker: the app's :class:`~flask_jobs.broker.Broker`.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.client = broker.client
        self.key = broker.keys.dead_letters

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` dead letters, newest first."""
        return [json.loads(x) for x in self.client.lrange(self.key, 0, limit - 1)]

    def requeue(self, task_id: str) -> bool:
        """Queue a dead-lettered task again (its message is kept in its record); False if its
        record is gone (expired, or never had a message)."""
        record = self.broker.keys.task(task_id)
        body, ctype, name, queue, prio, owner = self.client.hmget(
            record, "body", "ctype", "name", "queue", "prio", "owner")
        if body is None:
            return False
        message = Message(task_id, text(queue or "default"), int(prio or 5), text(name or ""),
                          text(ctype or "json"), data(body), 0, 0, text(owner or ""))
        # The entries to remove are read before the task is queued again: a worker may
        # dead-letter it anew before the removal, and that new entry must stay.
        entries = [raw for raw in self.client.lrange(self.key, 0, -1)
                   if json.loads(raw).get("id") == task_id]
        self.client.hset(record, "state", "REVOKED")  # make the record replaceable by enqueue
        self.broker.enqueue([message])
        for raw in entries:
            self.client.lrem(self.key, 1, text(raw))
        return True

    def purge(self) -> int:
        """Delete every dead letter; returns how many there were."""
        n = self.client.llen(self.key)
        self.client.delete(self.key)
        return int(n)
