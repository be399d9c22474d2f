"""``jobs.control``: Celery's remote-control calls that a Flask app makes, on Redis.

Celery's ``app.control.revoke(...)``, ``app.control.purge()`` and ``app.control.inspect()`` port
as ``jobs.control.revoke``, ``jobs.control.purge`` and ``jobs.control.inspect``. Workers need no
reply channel for these: a revoke is recorded in Redis (and broadcast for ``terminate``), a purge
happens inside Redis, and an inspection reads what the workers keep there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask

from .inspection import Inspect
from .message import new_task_id
from .state import Registry


class Control:
    """Revoke tasks by id, discard queued tasks and inspect workers, for the current app (or
    ``app``)."""

    def __init__(self, jobs: Registry, app: Flask | None = None) -> None:
        self.jobs = jobs
        self.app = app

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str = "SIGTERM", **_ignored: Any) -> None:
        """Revoke one task id or several, as :meth:`AsyncResult.revoke
        <flask_jobs.AsyncResult.revoke>` does for one.

        :param task_id: an id, or a list of ids.
        :param terminate: also stop the task if it is running.
        :param signal: ``SIGTERM`` or ``SIGKILL`` (see :meth:`AsyncResult.revoke
            <flask_jobs.AsyncResult.revoke>`).
        """
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        for one in ids:
            if not isinstance(one, str) or not one:
                raise TypeError(f"revoke() takes task ids (str), not {one!r}")
        broker = self.jobs.state(self.app).broker
        for one in ids:
            broker.revoke(one, terminate=terminate, signal=signal)

    def purge(self, queues: str | Iterable[str] | None = None, progress: Any = None) -> int:
        """Discard every task waiting in ``queues`` (default: every queue); returns how many.

        Each discarded task becomes ``REVOKED`` with reason ``purged``, so its status page ends
        and ``get()`` raises :class:`~flask_jobs.TaskRevokedError`. Delayed tasks (countdown,
        eta, a retry's wait) and running ones are not touched: revoke those. Tasks sent while
        the purge runs may be kept. There is no undo.

        :param progress: called with the number of ids each chunk took (a progress bar's
            ``update``).
        """
        broker = self.jobs.state(self.app).broker
        if queues is None:
            names = broker.queue_names()
        else:
            names = [queues] if isinstance(queues, str) else list(queues)
            for name in names:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"purge() takes queue names (str), not {name!r}")
        return broker.purge(names, progress)

    def ping(self, destination: str | Iterable[str] | None = None, timeout: float = 1.0,
             limit: int | None = None) -> list[dict[str, dict[str, str]]]:
        """Ask the workers to answer, as Celery's ``app.control.ping()``: a list of replies
        ``{worker name: {"ok": "pong"}}``, empty when none answered within ``timeout``.

        The answer comes from each worker process itself (its heartbeat thread, which also
        keeps its tasks' leases), so a worker that answers is alive and hears broadcasts.

        :param destination: only these worker names (``-n``).
        :param limit: stop waiting after this many replies (default: wait for ``timeout``).
        """
        names = [destination] if isinstance(destination, str) else (
            list(destination) if destination else None)
        state = self.jobs.state(self.app)
        key = state.keys.reply(new_task_id())
        client = state.make_client(blocking=True)
        replies: list[dict[str, dict[str, str]]] = []
        try:
            client.publish(state.keys.control, json.dumps(
                {"op": "ping", "destination": names, "reply": key}))
            deadline = time.monotonic() + timeout
            while limit is None or len(replies) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                got = client.blpop([key], timeout=max(left, 0.01))
                if got:
                    replies.append(json.loads(got[1]))
            client.delete(key)
        finally:
            client.close()
        return replies

    def inspect(self, destination: str | Iterable[str] | None = None,
                **_ignored: Any) -> Inspect:
        """What the live workers run, hold and can run, as Celery's ``app.control.inspect()``.

        :param destination: only these worker names (``-n``); default every live worker.

        Celery's ``timeout=`` and ``limit=`` are accepted and ignored: the answer is read from
        Redis, not awaited from the workers (see :class:`~flask_jobs.inspection.Inspect`).
        """
        return Inspect(self.jobs.state(self.app), destination)
