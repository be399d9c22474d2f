"""The heartbeat thread: keeps a worker's leases alive, reaps dead workers, hears broadcasts.

It runs in its own thread (in the prefork parent for the children), so a task that blocks or
burns the CPU in its thread cannot stop the heartbeat: a live worker keeps its tasks however long
they run, and a dead one's tasks come back after :data:`JOBS_ORPHAN_TIMEOUT`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from ..extension import JobsState

log = logging.getLogger("flask_jobs.worker")


class Heartbeat(threading.Thread):
    """Renew heartbeats of ``identities()`` every quarter orphan timeout; reap; listen.

    :param on_control: called with each broadcast command (a dict), e.g. revoke.
    """

    def __init__(self, state: JobsState, caller: str, identities: Callable[[], list[str]],
                 info: dict[str, Any], on_control: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name="flask-jobs-heartbeat", daemon=True)
        self.state = state
        self.caller = caller
        self.identities = identities
        self.info = info
        self.on_control = on_control
        self.stop_event = threading.Event()
        #: Held while beating or reaping: once :meth:`stop` returns, no beat is in flight.
        self.beat_lock = threading.Lock()
        self.beats = 0
        timeout = state.orphan_timeout
        self.timeout_ms = max(100, int(timeout * 1000))
        self.interval = max(0.02, timeout / 4)
        self.reap_interval = max(0.05, timeout / 2)

    def stop(self) -> None:
        """Stop the thread (it exits within one interval); no beat is sent after this returns,
        so a worker that unregisters next cannot be registered again by a late beat."""
        with self.beat_lock:
            self.stop_event.set()

    def beat(self, client: redis.Redis) -> None:
        """Renew every heartbeat now."""
        self.state.broker.heartbeat(client, self.identities(), self.info, self.timeout_ms)
        self.beats += 1

    def run(self) -> None:
        """Thread body."""
        client = self.state.make_client()
        pubsub = None
        next_beat = next_reap = 0.0
        while not self.stop_event.is_set():
            try:
                if pubsub is None:
                    pubsub = self.state.make_client(blocking=True).pubsub(
                        ignore_subscribe_messages=True)
                    pubsub.subscribe(self.state.keys.control)
                now = time.monotonic()
                with self.beat_lock:
                    if self.stop_event.is_set():
                        break  # a beat now could register the worker again after it unregistered
                    if now >= next_beat:
                        self.beat(client)
                        next_beat = now + self.interval
                    if now >= next_reap:
                        given = self.state.broker.reap(client, self.caller,
                                                       int(self.reap_interval * 1000))
                        if given:
                            log.warning("Gave back %d task(s) of dead workers to their queues",
                                        given)
                        next_reap = now + self.reap_interval
                message = pubsub.get_message(timeout=max(0.0, next_beat - time.monotonic()))
                if message is not None and message.get("type") == "message":
                    self._control(message["data"])
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Heartbeat: Redis unavailable (%s)", exc)
                if pubsub is not None:
                    pubsub.close()
                pubsub = None
                self.stop_event.wait(min(1.0, self.interval))
            except Exception:
                log.exception("Heartbeat error")
                self.stop_event.wait(self.interval)
        if pubsub is not None:
            pubsub.close()

    def _control(self, data: bytes) -> None:
        try:
            command = json.loads(data)
        except ValueError:
            log.warning("Ignoring an undecodable control message")
            return
        try:
            self.on_control(command)
        except Exception:
            log.exception("Control command %r failed", command)
