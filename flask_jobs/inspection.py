"""``jobs.control.inspect()``: which workers are alive and what they hold, as Celery's
``app.control.inspect()`` reports it.

Celery asks its workers over a broadcast channel and waits for their replies. Here there is
nothing to ask: every live worker keeps a heartbeat key in Redis (with its hostname, pid, pool,
concurrency, queues and task names) and an ``active`` hash of the tasks it has claimed, so an
inspection is a couple of reads from Redis, answers at once, and sees a busy worker (one whose
tasks block its threads) as well as an idle one. A worker appears here from its first heartbeat
until it stops or its heartbeat expires (:data:`JOBS_ORPHAN_TIMEOUT`).

Every method returns a dict keyed by worker name (``-n/--hostname``, ``worker@<host>`` by
default), as Celery's do; with no worker alive it returns an empty dict (Celery returns None).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import states
from .connection import text
from .state import AppState

#: States of a claimed task that has not started yet (prefetched): a retried task keeps RETRY
#: until it starts again.
_WAITING = (states.PENDING, states.RETRY)


class Inspect:
    """Read-only views of the live workers; see the module docstring.

    :param state: the app's :class:`~flask_jobs.state.AppState`.
    :param destination: only these worker names (``-n`` values); default every live worker.
    """

    def __init__(self, state: AppState, destination: str | Iterable[str] | None = None) -> None:
        self.state = state
        if isinstance(destination, str):
            destination = [destination]
        self.destination = None if destination is None else set(destination)

    def _workers(self) -> dict[str, tuple[list[str], dict[str, Any]]]:
        """Live workers: ``{name: (identities in Redis, heartbeat info)}``.

        A prefork worker beats for itself and for each child (every child claims under an
        identity of its own, ``<worker identity>.<slot>-<generation>``) with the same info; they
        are one worker here, as the ``-n`` name the user gave it.
        """
        keys, client = self.state.keys, self.state.client
        identities = sorted(text(m) for m in client.smembers(keys.workers))
        if not identities:
            return {}
        beats = client.mget([keys.heartbeat(i) for i in identities])
        processes: dict[tuple[Any, Any], tuple[list[str], dict[str, Any]]] = {}
        for identity, beat in zip(identities, beats, strict=True):
            if beat is None:  # stopped or dead: the reaper will remove it
                continue
            try:
                info = json.loads(beat)
            except ValueError:
                continue
            if not isinstance(info, dict):
                continue
            worker = (info.get("hostname") or identity, info.get("pid"))
            held, known = processes.setdefault(worker, ([], info))
            held.append(identity)
            if len(info) > len(known):  # the worker's own beat, not a child's (Broker.heartbeat)
                processes[worker] = (held, info)
        found: dict[str, tuple[list[str], dict[str, Any]]] = {}
        for (hostname, pid), entry in sorted(processes.items(), key=lambda kv: str(kv[0])):
            name = str(hostname)
            if name in found:  # two processes started with the same -n: keep both apart
                name = f"{name}:{pid}"
            if self.destination is None or name in self.destination \
                    or hostname in self.destination:
                found[name] = entry
        return found

    def ping(self) -> dict[str, dict[str, str]]:
        """``{name: {"ok": "pong"}}`` for each live worker."""
        return {name: {"ok": "pong"} for name in self._workers()}

    def registered(self) -> dict[str, list[str]]:
        """The task names each live worker can run."""
        return {name: list(info.get("tasks", [])) for name, (_, info) in self._workers().items()}

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each live worker's settings: hostname, pid, pool, concurrency, prefetch, queues,
        ``started`` (a Unix time) and ``active`` (how many tasks it holds now)."""
        workers = self._workers()
        pipe = self.state.client.pipeline(transaction=False)
        for identities, _ in workers.values():
            for identity in identities:
                pipe.hlen(self.state.keys.active(identity))
        held = iter(pipe.execute() if workers else [])
        out: dict[str, dict[str, Any]] = {}
        for name, (identities, info) in workers.items():
            entry = {k: v for k, v in info.items() if k != "tasks"}
            entry["active"] = sum(next(held) for _ in identities)
            out[name] = entry
        return out

    def active(self) -> dict[str, list[dict[str, Any]]]:
        """The tasks each live worker is running now (see :meth:`_held` for an entry)."""
        return {name: [t for t in tasks if t["state"] not in _WAITING]
                for name, tasks in self._held().items()}

    def reserved(self) -> dict[str, list[dict[str, Any]]]:
        """The tasks each live worker has claimed (prefetched) and not started yet."""
        return {name: [t for t in tasks if t["state"] in _WAITING]
                for name, tasks in self._held().items()}

    def _held(self) -> dict[str, list[dict[str, Any]]]:
        """Every task each live worker holds, claimed and not finished, oldest start first.

        An entry has Celery's keys ``id``, ``name``, ``args``, ``kwargs``, ``hostname`` and
        ``time_start`` (Unix time, None until it starts), and ``state``, ``queue`` and
        ``delivery_attempt``. ``args`` and ``kwargs`` are None when the message is in a content
        type this app does not accept (it is never decoded here, as a worker would not).
        """
        workers = self._workers()
        if not workers:
            return {}
        keys, client = self.state.keys, self.state.client
        pipe = client.pipeline(transaction=False)
        for identities, _ in workers.values():
            for identity in identities:
                pipe.hkeys(keys.active(identity))
        replies = iter(pipe.execute())
        held = [[i.decode() for identity in identities for i in next(replies)]
                for identities, _ in workers.values()]
        pipe = client.pipeline(transaction=False)
        for ids in held:
            for task_id in ids:
                pipe.hmget(keys.task(task_id), "state", "name", "queue", "st", "dlv", "ctype",
                           "body")
        records = iter(pipe.execute())
        out: dict[str, list[dict[str, Any]]] = {}
        for (name, _), ids in zip(workers.items(), held, strict=True):
            tasks = []
            for task_id in ids:
                state, task, queue, started, dlv, ctype, body = next(records)
                if state is None or state.decode() in states.READY_STATES:
                    continue  # finished (or expired) since the first read
                args, kwargs = self._arguments(ctype, body)
                tasks.append({
                    "id": task_id, "name": task.decode() if task else None, "args": args,
                    "kwargs": kwargs, "hostname": name,
                    "time_start": int(started) / 1000 if started else None,
                    "state": state.decode(), "queue": queue.decode() if queue else None,
                    "delivery_attempt": int(dlv) if dlv else 0,
                })
            tasks.sort(key=lambda t: (t["time_start"] is None, t["time_start"] or 0))
            out[name] = tasks
        return out

    def _arguments(self, ctype: bytes | None, body: bytes | None) -> tuple[Any, Any]:
        """A held task's ``(args, kwargs)``, or ``(None, None)`` if they cannot be shown."""
        if not body or not ctype:
            return None, None
        try:
            # Codecs.loads refuses a content type the app does not accept before decoding it
            message = self.state.codecs.loads(body, ctype.decode())
        except Exception:
            return None, None
        if not isinstance(message, dict):
            return None, None
        return message.get("args"), message.get("kwargs")
