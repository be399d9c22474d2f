"""The heartbeat thread: keeps a worker's leases alive, reaps dead workers, hears broadcasts.

It runs in its own thread (in the prefork parent for the children), so a task that blocks or
burns the CPU in its thread cannot stop the heartbeat: a live worker keeps its tasks however long
they run, and a dead one's tasks come back after :data:`JOBS_ORPHAN_TIMEOUT`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from ..events import EventStream
from .control import ControlChannel

if TYPE_CHECKING:
    from ..state import AppState

log = logging.getLogger("flask_jobs.worker")


class Heartbeat(threading.Thread):
    """Renew heartbeats of ``identities()`` every quarter orphan timeout; reap; listen.

    :param on_control: called with each broadcast command (a dict), e.g. revoke.
    :param on_listen: called with the heartbeat's client each time the control subscription is
        confirmed (see :mod:`~flask_jobs.worker.control`).
    :param health_file: a file touched after every beat that reached Redis (``--health-file``),
        for container probes that check its age.
    """

    def __init__(self, state: AppState, caller: str, identities: Callable[[], list[str]],
                 info: dict[str, Any], on_control: Callable[[dict[str, Any]], None],
                 on_listen: Callable[[redis.Redis], None] | None = None,
                 health_file: str | None = None) -> None:
        super().__init__(name="flask-jobs-heartbeat", daemon=True)
        self.state = state
        self.caller = caller
        self.identities = identities
        self.info = info
        self.on_control = on_control
        self.on_listen = on_listen
        self.health_file = Path(health_file) if health_file else None
        self.stop_event = threading.Event()
        #: Held while beating or reaping: once :meth:`stop` returns, no beat is in flight.
        self.beat_lock = threading.Lock()
        self.beats = 0
        timeout = state.settings.orphan_timeout
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
        settings = self.state.settings
        if settings.events:
            pipe = client.pipeline(transaction=False)
            EventStream(client, self.state.keys).add_worker_event(
                pipe, "worker-heartbeat", self.caller, settings.events_maxlen,
                {"hostname": self.info.get("hostname"), "pid": self.info.get("pid")})
            pipe.execute()
        if self.health_file is not None:
            try:
                self.health_file.touch()
            except OSError as exc:  # (a probe's problem, not the worker's)
                log.warning("Cannot touch the health file %s: %s", self.health_file, exc)

    def run(self) -> None:
        """Thread body."""
        client = self.state.make_client()
        on_listen = self.on_listen
        channel = ControlChannel(self.state, self.on_control,
                                 None if on_listen is None else lambda: on_listen(client))
        next_beat = next_reap = 0.0
        while not self.stop_event.is_set():
            try:
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
                        if self.state.settings.events:  # (the length is capped by each XADD; the age here)
                            oldest = int((time.time() - self.state.settings.events_max_age)
                                         * 1000)
                            client.xtrim(self.state.keys.events_stream, minid=oldest,
                                         approximate=False)
                channel.poll(max(0.0, next_beat - time.monotonic()))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Heartbeat: Redis unavailable (%s)", exc)
                channel.close()
                self.stop_event.wait(min(1.0, self.interval))
            except Exception:
                log.exception("Heartbeat error")
                self.stop_event.wait(self.interval)
        channel.close()
