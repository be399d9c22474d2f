"""What the consumers of one worker process share: the :class:`Runtime`, and the flusher.

A worker process runs one consumer (solo, a prefork child) or several (threads, gevent), all over
one runtime: its identity in Redis, its queues, the write buffer, the ids revoked by broadcast,
the tasks running now, and the stop event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from flask import Flask

from .. import states
from ..claims import Claimed
from ..execution import Limits
from ..state import AppState
from ..writes import give_back_write
from .gate import Gate
from .writer import Writer

if TYPE_CHECKING:
    from .slot import Slot  # (not at run time: it loads ctypes, which only prefork needs)

log = logging.getLogger("flask_jobs.worker")


class Runtime:
    """What every consumer of one worker process shares.

    :param name: the identity that owns claimed tasks in Redis (unique per process).
    :param hostname: the worker's node name, shown as ``request.hostname``.
    """

    def __init__(self, app: Flask, name: str, hostname: str, queues: list[str], prefetch: int,
                 limits: Limits | None = None, max_tasks: int | None = None) -> None:
        self.app = app
        self.state: AppState = app.extensions["jobs"]
        self.jobs = self.state.jobs
        self.name = name
        self.hostname = hostname
        self.queues = queues
        self.prefetch = max(1, prefetch)
        self.limits = limits
        self.max_tasks = max_tasks
        self.writer = Writer(self.state, name)
        self.stop_event = threading.Event()
        #: task id -> (thread ident, greenlet or None) of what runs now, for
        #: ``revoke(terminate=True)``.
        self.current: dict[str, tuple[int, Any]] = {}
        #: Ids revoked by broadcast: skipped if they are in a prefetch buffer.
        self.revoked: set[str] = set()
        #: Counts confirmations of our broadcast subscription (see :meth:`on_listen`); a claim
        #: answered across one checks its tasks (Consumer.run).
        self.listen_epoch = 0
        #: The prefetch buffers of this process's consumers, which :meth:`on_listen` checks.
        self.buffers: list[deque[Claimed]] = []
        #: Per consumer: whether it holds nothing (it is claiming or waiting for work).
        self.free: list[bool] = []
        #: Per consumer: ``time.monotonic()`` when its running task started, or None.
        self.started_at: list[float | None] = []
        #: Longest a prefetched task waits behind its consumer's running task
        #: (:data:`JOBS_WORKER_PREFETCH_HOLD`); see :meth:`release_held`.
        self.hold = self.state.settings.prefetch_hold
        self.tasks_done = 0
        #: The prefork slot shared with the parent (children only).
        self.slot: Slot | None = None
        #: Set by a revoke(terminate=True) aimed at the main thread (solo).
        self.terminate_target: str | None = None
        self._result_dumps: Callable[[Any, str], bytes] = self.state.codecs.dumps
        self._result_serializer = self.state.settings.result_serializer
        #: Inbox keys of this process's consumers (a stop pushes a bare wake-up to each).
        self.inboxes: list[str] = []
        #: With several consumers, lets a suspect task run alone in the process (gate.py).
        self.gate: Gate | None = None

    def add_consumer(self, buffer: deque[Claimed]) -> int:
        """Number a new consumer of this process, whose prefetch buffer is ``buffer``; its
        inbox is ``w:<name>:in:<number>``."""
        self.buffers.append(buffer)
        self.free.append(True)
        self.started_at.append(None)
        self.inboxes.append(self.state.keys.inbox(self.name, len(self.inboxes)))
        if len(self.inboxes) == 2:  # (every consumer is made before any of them runs)
            self.gate = Gate()
        return len(self.inboxes) - 1

    def others_free(self, number: int) -> bool:
        """Whether a consumer of this process other than ``number`` holds nothing now (it can
        start a task at once, so consumer ``number`` should claim no lookahead)."""
        return any(free for i, free in enumerate(self.free) if i != number)

    def release_held(self, now: float) -> int:
        """Give back the prefetched tasks of every consumer whose running task has run longer
        than :attr:`hold`, to the front of their queues, where any free consumer takes them
        (fair dispatch: a task does not wait behind a running one while another consumer could
        start it). Returns how many were given back."""
        given = 0
        hold = self.hold
        for buffer, started in zip(self.buffers, self.started_at, strict=True):
            if buffer and started is not None and now - started >= hold:
                while True:
                    try:
                        claimed = buffer.pop()  # (the consumer takes from the other end)
                    except IndexError:
                        break
                    self.writer.add(give_back_write(claimed.id, claimed.attempt))
                    given += 1
        return given

    def hold_wait(self, now: float) -> float | None:
        """Seconds until :meth:`release_held` has something to give back (None: nothing is
        held behind a running task)."""
        due = [started + self.hold - now for buffer, started in zip(self.buffers, self.started_at,
                                                              strict=True)
               if buffer and started is not None]
        return max(0.0, min(due)) if due else None

    def note_revoked(self, task_id: str) -> None:
        """Remember a revoked id, so a prefetch buffer holding it skips it."""
        if len(self.revoked) > 50_000:  # bounded: old ids have long left every buffer
            self.revoked.clear()
        self.revoked.add(task_id)

    def on_listen(self, client: redis.Redis) -> None:
        """Our broadcast subscription was just confirmed (at start, or after a lost one).

        A revoke published before that was not heard, so read the records of every task in a
        prefetch buffer and note those revoked. The epoch moves first: a claim whose reply
        lands in a buffer after the buffers are read saw it move, and checks its own tasks.
        """
        self.listen_epoch += 1
        buffered = [c.id for buffer in self.buffers for c in list(buffer)]
        revoked = self.check_revoked(client, buffered)
        if self.listen_epoch > 1:
            log.info("Subscribed to broadcasts again; %d prefetched task(s) checked, %d of them "
                     "revoked meanwhile", len(buffered), len(revoked))

    def check_revoked(self, client: redis.Redis, task_ids: list[str]) -> list[str]:
        """Note which of ``task_ids`` are REVOKED in their records (one round trip); returns
        those."""
        if not task_ids:
            return []
        found = self.state.broker.task_states(task_ids, client)
        revoked = [task_id for task_id, state in zip(task_ids, found, strict=True)
                   if state == states.REVOKED]
        for task_id in revoked:
            self.note_revoked(task_id)
        return revoked

    def wait_listening(self, timeout: float) -> bool:
        """Wait until the first subscription was confirmed, so no task starts before a revoke
        can be heard; False if it was not within ``timeout`` seconds. (A short sleep loop, not
        an Event: the confirmation may come from another OS thread under gevent.)"""
        deadline = time.monotonic() + timeout
        while self.listen_epoch == 0 and not self.stopping:  # (a stop cuts the wait short)
            if time.monotonic() >= deadline:
                log.warning("Not subscribed to broadcasts after %.0fs; starting anyway (a task "
                            "revoked before the subscription is checked once it is made)",
                            timeout)
                return False
            time.sleep(0.002)
        return self.listen_epoch > 0

    def wake_consumers(self) -> None:
        """Wake this process's idle consumers (blocked on their inboxes), e.g. to stop."""
        if not self.inboxes:
            return
        try:
            pipe = self.state.client.pipeline(transaction=False)
            for key in self.inboxes:
                pipe.rpush(key, b"")
            pipe.execute()
        except Exception:  # Redis down: they wake up on their own within IDLE_WAIT
            pass

    @property
    def stopping(self) -> bool:
        """Whether a shutdown was asked for."""
        return self.stop_event.is_set()

    def dump_result(self, value: Any) -> bytes:
        """Encode a return value with the result serializer."""
        return self._result_dumps(value, self._result_serializer)

    def flush(self, client: redis.Redis, final: bool = True) -> None:
        """Send due writes now (used by the flusher and at shutdown)."""
        writes = self.writer.collect(final=final)
        if not writes:
            return
        try:
            stale = self.state.broker.write(client, self.name, writes)
        except Exception:
            self.writer.putback(writes)
            raise
        if stale:
            log.warning("%d write(s) refused: this worker lost those tasks to another delivery",
                        stale)


def flusher(runtime: Runtime) -> None:
    """Thread body: write STARTED, progress and late outcomes while tasks run.

    It sleeps until a write is due (see :meth:`Writer.wait_time`), not for a fixed tick: while a
    worker drains short tasks, whose writes all ride on its claims, it finds nothing to send.
    """
    client = runtime.state.make_client()
    writer = runtime.writer
    while not runtime.stop_event.is_set():
        wait = writer.wait_time()
        held = runtime.hold_wait(time.monotonic())
        runtime.stop_event.wait(wait if held is None else min(wait, held))
        try:
            given = runtime.release_held(time.monotonic())
            runtime.flush(client, final=bool(given))  # (a give-back goes out at once)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Could not write progress (%s); will retry", exc)
            time.sleep(0.5)  # the writes were put back; Redis is down
        except Exception:
            log.exception("Flusher error")
