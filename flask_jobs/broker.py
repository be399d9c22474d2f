"""Queue movement on Redis: enqueue, claim, write outcomes, give back, reap, revoke, dead letters.

Each operation is one Lua script call (one round trip); the scripts live in ``scripts/`` and
share ``scripts/lib.lua``. Key names are documented in :mod:`flask_jobs.keys`.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from .claims import Claimed, parse_handed
from .config import Settings
from .connection import text
from .direct import DirectLine
from .exceptions import BrokerUnavailable
from .keys import Keys
from .message import Message, new_task_ids, parse_rate_limit
from .scripts import script_source
from .serialization import Codecs
from .writes import Write

log = logging.getLogger("flask_jobs")

#: Messages per enqueue script call; larger groups are sent as several calls in one pipeline.
ENQUEUE_CHUNK = 1000
#: Most ready tasks one purge script call discards (a long backlog takes several calls).
PURGE_CHUNK = 1000


class Broker:
    """Redis operations of one app: queue movement and the task records.

    :param client: the app's shared client (worker threads pass their own to the worker-side
        calls).
    :param keys: the key names.
    :param settings: the app's settings (expiries, delivery limit, busy polling).
    :param codecs: the app's serializers (for :meth:`store_state`).
    :param location: the Redis URL with secrets hidden, for error messages.
    """

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, codecs: Codecs,
                 location: str = "Redis") -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.codecs = codecs
        self.location = location
        self.base = keys.base
        self._enqueue = client.register_script(script_source("enqueue"))
        #: Producer hot path: enqueue calls skip redis-py's pool (see :mod:`flask_jobs.direct`).
        self.direct = DirectLine(client.connection_pool, settings.busy_poll_us)
        self._claim = client.register_script(script_source("claim"))
        #: The worker-side lines, one per client (see :meth:`_worker_call`).
        self._lines: weakref.WeakKeyDictionary[redis.Redis, DirectLine] = (
            weakref.WeakKeyDictionary())
        self._write = client.register_script(script_source("write"))
        self._reap = client.register_script(script_source("reap"))
        self._revoke = client.register_script(script_source("revoke"))
        self._fail_links = client.register_script(script_source("fail_links"))
        self._placeholders = client.register_script(script_source("placeholders"))
        self._purge = client.register_script(script_source("purge"))
        self._chord = client.register_script(script_source("chord"))

    # -- producer side -----------------------------------------------------------------------

    def enqueue(self, messages: Sequence[Message], group: str = "",
                ids: list[str] | None = None, group_size: int = 0) -> int:
        """Write PENDING records and queue the messages, atomically per script call.

        One round trip however many messages: up to :data:`ENQUEUE_CHUNK` per script call,
        and the calls are pipelined, so Redis runs one chunk while the next is packed. A
        connection lost before the replies came is retried once with every id checked by the
        script, so nothing is queued twice.

        :param group: the group id of every message (``group(...).apply_async()``).
        :param group_size: the size of the group sent here in full: the message ids become its
            member list and its counters get this total. 0: the members were listed already
            (a chord's header, a group of chains), or there is no group.
        :param ids: for a group: an empty list, filled with the id each message was sent
            under. A message object that comes more than once in ``messages`` (a signature
            repeated in a group, encoded once) is sent each time after the first under a fresh
            random id, made chunk by chunk while Redis runs the previous chunk.
        :raises BrokerUnavailable: Redis did not answer in time, or refused the credentials; the
            caller should answer 503.
        """
        check, reconnected, loaded = "", False, False
        seen: set[int] = set()  # id(message) of the messages named already (kept on a resend)
        try:
            while True:
                try:
                    return self._send(messages, group, check, ids, seen, group_size)
                except redis.exceptions.NoScriptError:
                    if loaded:
                        raise
                    loaded = True  # Redis restarted or SCRIPT FLUSH: nothing ran
                    self.direct.load(script_source("enqueue"))
                except redis.AuthenticationError:
                    raise  # (a ConnectionError too) sending again can't fix a wrong password
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if reconnected:
                        raise
                    reconnected = True
                    # The first send may have run before the connection dropped: check ids.
                    check = "1"
                    log.info("Redis connection lost while queueing (%s); sending again", exc)
        except redis.AuthenticationError as exc:
            raise BrokerUnavailable(
                f"Could not queue the task: Redis at {self.location} did not "
                f"accept the user name or password ({exc}). Nothing was queued; check JOBS_BROKER_URL."
            ) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(
                f"Could not queue the task: Redis at {self.location} did not "
                f"answer ({exc}). Nothing was queued; try again later."
            ) from exc
        except redis.ResponseError as exc:
            if "OOM" not in str(exc):
                raise
            raise BrokerUnavailable(
                f"Could not queue the task: Redis at {self.location} is out of "
                "memory (maxmemory reached). Nothing was queued; free memory or raise maxmemory."
            ) from exc

    def _send(self, messages: Sequence[Message], group: str, check_all: str,
              ids: list[str] | None, seen: set[int], group_size: int) -> int:
        head = (self.base, self.settings.result_ttl_ms, group, check_all, group_size)
        if len(messages) == 1 and ids is None:  # delay(): one shape, one task
            m = messages[0]
            reply = self.direct.evalsha(self._enqueue.sha, (self.keys.task(m.id),),
                                        (*head, 1, *m.shape(), 1, m.id, 1, m.body))
            if isinstance(reply, list):  # its dedup key is held: it takes the holder's id
                m.id = text(reply[1])
                return 0
            return int(reply)
        if any(m.dedup_key for m in messages):
            raise TypeError("dedup_key works with one task at a time (apply_async()), not in "
                            "a group")
        if ids is None:
            ids = []

        def calls() -> Iterator[tuple[list[str], list[Any]]]:
            # Built chunk by chunk while Redis runs the previous one (see DirectLine).
            for start in range(0, len(messages), ENQUEUE_CHUNK):
                shapes: dict[tuple[Any, ...], int] = {}
                numbers: dict[int, int] = {}  # id(message) -> shape number (copies share one)
                tail: list[Any] = []
                end = start + ENQUEUE_CHUNK
                chunk = messages[start:end]
                if len(ids) < start + len(chunk):  # not a resend: name this chunk's tasks
                    repeat = []
                    for m in chunk:
                        if id(m) in seen:
                            repeat.append(True)
                        else:
                            seen.add(id(m))
                            repeat.append(False)
                    fresh = iter(new_task_ids(sum(repeat)))
                    ids.extend([next(fresh) if r else m.id
                                for m, r in zip(chunk, repeat, strict=True)])
                for task_id, m in zip(ids[start:end], chunk, strict=True):
                    number = numbers.get(id(m))
                    if number is None:
                        shape = m.shape()
                        number = shapes.get(shape)
                        if number is None:
                            number = shapes[shape] = len(shapes) + 1
                        numbers[id(m)] = number
                    tail += (task_id, number, m.body)
                args: list[Any] = [*head, len(shapes)]
                for shape in shapes:
                    args += shape
                args.append(len(tail) // 3)
                args += tail
                yield [self.keys.task(tail[0])], args

        return sum(self.direct.evalsha_many(self._enqueue.sha, calls()))

    def revoke(self, task_id: str, terminate: bool = False, signal: str = "SIGTERM") -> str | None:
        """Revoke a task (see ``scripts/revoke.lua``) and tell workers; returns its state."""
        state = self._revoke(keys=[self.keys.task(task_id)],
                             args=[self.base, task_id, self.settings.result_ttl_ms, "revoked"])
        self.client.publish(self.keys.control, json.dumps(
            {"op": "revoke", "id": task_id, "terminate": bool(terminate), "signal": signal}))
        return state.decode() if isinstance(state, bytes) else None

    def fail_links(self, task_ids: Sequence[str], state: str, result: str | bytes,
                   traceback: str = "") -> int:
        """Record ``state`` for chain links that will never be sent (see ``fail_links.lua``)."""
        if not task_ids:
            return 0
        return int(self._fail_links(keys=[self.keys.task(task_ids[0])],
                                    args=[self.base, self.settings.result_ttl_ms, state, result,
                                          traceback, *task_ids]))

    def placeholders(self, tasks: Sequence[tuple[str, str, str]], owner: str = "",
                     chain: str = "") -> int:
        """Write PENDING records for a chain's tasks, ``(id, name, group)`` each (the group a
        chain's last task counts in, or ''), and the chain's counters, before its first task
        is sent (see ``scripts/placeholders.lua``); returns how many were written."""
        if not tasks:
            return 0
        args: list[Any] = [self.base, self.settings.result_ttl_ms, owner, chain]
        for task_id, name, group in tasks:
            args.extend((task_id, name, group))
        return int(self._placeholders(keys=[self.keys.task(tasks[0][0])], args=args))

    def hold_chord(self, group: str, body: Message | None, members: Sequence[str],
                   owner: str = "", member_of: str = "") -> int:
        """List a group's members (their ids, in order), set up its counters and, for a
        chord, hold its ``body`` until they are all done (see ``scripts/chord.lua``); call it
        before sending the members. Returns the number of members.

        :param member_of: the group the body itself counts in (a chord in a group).
        """
        fields: tuple[Any, ...] = ("", "", "", "", "", "", 0)
        if body is not None:
            fields = (body.id, body.queue, body.priority, body.name, body.ctype, body.body,
                      body.expires_ms)
        args: list[Any] = [self.base, self.settings.result_ttl_ms, group, owner, member_of,
                           *fields, *members]
        return int(self._chord(keys=[self.keys.counters(group)], args=args))

    def store_state(self, task_id: str, state: str, meta: Any) -> None:
        """Write a state and meta to an existing record, without fencing."""
        rtype = self.settings.result_serializer
        data = self.codecs.dumps(meta, rtype)
        key = self.keys.task(task_id)
        if not self.client.exists(key):
            raise KeyError(f"Unknown task id {task_id!r}")
        pipe = self.client.pipeline()
        pipe.hset(key, mapping={"state": state, "rtype": rtype, "result": data})
        pipe.publish(self.keys.events(task_id), state)
        pipe.execute()

    # -- worker side -------------------------------------------------------------------------

    def claim(self, client: redis.Redis, worker: str, n: int, queues: Sequence[str],
              writes: Sequence[Write] = (), inbox: int = 0,
              idle: bool = False, seq: int | None = None,
              dropped: list[tuple[str, str, bool]] | None = None
              ) -> tuple[list[Claimed], bool, float | None]:
        """Apply ``writes`` and claim up to ``n`` tasks for ``worker``, in one round trip.

        :param inbox: the calling consumer's inbox number; what was handed to it comes first.
        :param idle: when nothing is claimed, register the consumer as idle on ``queues`` so
            the next task is handed to its inbox (see ``scripts/enqueue.lua``).
        :param seq: the consumer's claim number. Redis records what each claim returned; a
            claim sent again with the same number (its reply was lost) returns those tasks
            again, and a task handed over since, before claiming more. Number claims 1, 2, 3...
            and reuse a number only when its reply (or that of a wait on the inbox after it) may
            have been lost. None: no record, no replay.
        :param dropped: if given, gets ``(id, name, expired)`` of each task the claim found
            revoked (while queued, or expired just now) and skipped.
        :returns: the claimed tasks (a suspect comes alone, flagged ``suspect``: run it with
            nothing else running in the process), whether to claim again at once (scan budget exhausted), and
            seconds until the next delayed task is due (None if none).
        """
        st = self.settings
        args: list[Any] = [self.base, worker, n, st.max_deliveries, st.result_ttl_ms,
                           st.dead_ttl_ms, inbox, "1" if idle else "",
                           "" if seq is None else seq, len(queues), *queues, len(writes)]
        for w in writes:
            args.extend(w)
        out = self._worker_call(client, "claim", self._claim, [self.keys.active(worker)], args)
        count, more, next_due, handed = int(out[0]), bool(out[1]), int(out[2]), int(out[3])
        claimed = [parse_handed(out[i]) for i in range(6, 6 + handed)]
        end = 6 + handed + count * 6
        for i in range(6 + handed, end, 6):
            claimed.append(Claimed(out[i].decode(), int(out[i + 1]), int(out[i + 2]),
                                   out[i + 3].decode(), out[i + 4], out[i + 5].decode()))
        if out[4] == 1:  # a suspect, claimed alone
            claimed[-1].suspect = True
        if dropped is not None:
            for i in range(end, end + int(out[5]) * 3, 3):
                dropped.append((out[i].decode(), out[i + 1].decode(), out[i + 2] == b"1"))
        return claimed, more, (next_due / 1000.0 if next_due >= 0 else None)

    def write(self, client: redis.Redis, worker: str, writes: Sequence[Write]) -> int:
        """Apply a batch of worker writes; returns how many were refused as stale."""
        args: list[Any] = [self.base, worker, self.settings.result_ttl_ms,
                           self.settings.dead_ttl_ms, len(writes)]
        for w in writes:
            args.extend(w)
        return int(self._worker_call(client, "write", self._write, [self.keys.active(worker)],
                                     args))

    def _worker_call(self, client: redis.Redis, name: str, script: Script, keys: list[str],
                     args: list[Any]) -> Any:
        """Run a worker's claim or write script on ``client``'s server, over a
        :class:`~flask_jobs.direct.DirectLine` of that client.

        A claim carries a batch of 9-field write records: redis-py's own packer encodes each
        argument in Python (about a sixth of a solo drain's time in a profile), where the line
        packs the command in C with hiredis. Errors are raised as from the client: the line
        fails fast and never retries, which the lost-reply handling of claims relies on.
        """
        line = self._lines.get(client)
        if line is None:
            line = self._lines[client] = DirectLine(client.connection_pool)
        try:
            return line.evalsha(script.sha, keys, args)
        except redis.exceptions.NoScriptError:  # Redis restarted or SCRIPT FLUSH: nothing ran
            line.load(script_source(name))
            return line.evalsha(script.sha, keys, args)

    def heartbeat(self, client: redis.Redis, workers: Iterable[str], info: dict[str, Any],
                  timeout_ms: int) -> None:
        """Renew the heartbeat keys of ``workers`` and register them, in one round trip.

        The first of ``workers`` is the worker itself and gets the whole ``info`` (read by
        :mod:`~flask_jobs.inspection`); the others, a prefork worker's children, only its
        hostname and pid, which tie them to it: the task names are not copied per child.
        """
        pipe = client.pipeline(transaction=False)
        payload = json.dumps(info)
        tie = json.dumps({"hostname": info.get("hostname"), "pid": info.get("pid")})
        names = list(workers)
        for i, name in enumerate(names):
            pipe.set(self.keys.heartbeat(name), payload if i == 0 else tie, px=timeout_ms)
        if names:
            pipe.sadd(self.keys.workers, *names)
        pipe.execute()

    def register_rate_limits(self, limits: dict[str, str | float | None]) -> None:
        """Publish the rate limits of tasks (``{name: rate_limit}``, Celery's form) for the
        claim and enqueue scripts.

        The limits live in Redis (``rates``: task name -> ms between runs) because they apply
        over all workers; the last worker to start wins if two disagree.
        """
        limited = {name: parse_rate_limit(limit) for name, limit in limits.items()}
        pipe = self.client.pipeline(transaction=False)
        for name, interval in limited.items():
            if interval:
                pipe.hset(self.keys.rates, name, repr(interval))
            else:
                pipe.hdel(self.keys.rates, name)
        pipe.execute()

    def reap(self, client: redis.Redis, caller: str, lock_ms: int, give_back: str = "") -> int:
        """Give back the tasks of dead workers (and of ``give_back``); returns how many."""
        return int(self._reap(keys=[self.keys.workers], args=[self.base, caller, lock_ms, give_back],
                              client=client))

    def unregister(self, client: redis.Redis, worker: str) -> int:
        """Remove a stopping worker, giving back anything it still holds, and delete its
        bookkeeping (active hash, idle registrations, inboxes, claim records)."""
        return self.reap(client, worker, 0, give_back=worker)

    # -- inspection and dead letters ---------------------------------------------------------

    def queue_names(self) -> list[str]:
        """The queues that hold ready tasks now, and the default queue, sorted."""
        found = {k.decode().split(":")[-2] for k in self.client.scan_iter(
            f"{self.keys.prefix}:q:*", count=1000)}
        return sorted(found | {self.settings.default_queue})

    def purge(self, queues: Sequence[str], progress: Any = None) -> int:
        """Discard every ready task of ``queues`` (see ``scripts/purge.lua``); returns how many.
        Delayed tasks (countdown, eta, retries) and running ones are left alone: revoke those.
        ``progress(n)``, if given, is called with the ids taken by each chunk."""
        discarded = 0
        for queue in queues:
            for prio in range(10):
                taken = PURGE_CHUNK
                while taken == PURGE_CHUNK:  # (a chunk short of full emptied the list)
                    n, taken = self._purge(keys=[self.keys.queue(queue, prio)],
                                           args=[self.base, queue, prio,
                                                 self.settings.result_ttl_ms, PURGE_CHUNK])
                    discarded += int(n)
                    if progress is not None:
                        progress(int(taken))
        return discarded

    def task_states(self, task_ids: Sequence[str],
                    client: redis.Redis | None = None) -> list[str | None]:
        """The state of each task, ``None`` for an unknown id (one round trip). ``client``:
        the caller's own connection (a worker thread's), else the app's."""
        pipe = (client or self.client).pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hget(self.keys.task(task_id), "state")
        return [s.decode() if s else None for s in pipe.execute()]

    def queue_length(self, queue: str) -> int:
        """Number of ready tasks in ``queue`` over all priorities."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(10):
            pipe.llen(self.keys.queue(queue, p))
        return sum(pipe.execute())

    def stats(self) -> dict[str, int]:
        """The counters (expired, dead, stale_writes, reaped)."""
        return {text(k): int(v) for k, v in self.client.hgetall(self.keys.stats).items()}
