"""One worker process's consumers, brought up and down in the one order that loses nothing.

Every process that runs tasks goes through :class:`Process`: a solo, threads or gevent worker,
each prefork child, and the :class:`~flask_jobs.worker.main.BackgroundWorker` of tests.

Start: register in Redis before the first claim (so a claim never belongs to an unknown
worker), start the ears (the heartbeat thread, or a prefork child's control listener) and the
flusher, then wait until broadcasts are heard, so no task starts before its revoke could be.

Finish: give back what was prefetched and never started (on a cold stop; a warm one gives it
back from each consumer's loop), write every outcome, stop the ears (a heartbeat after this
would register the worker again), then unregister, which gives back whatever is still held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from flask import Flask

from ..execution import Limits
from .consumer import Consumer
from .control import LISTEN_TIMEOUT
from .runtime import Runtime, flusher

log = logging.getLogger("flask_jobs.worker")

#: Attempts at the final write when Redis fails at the last moment.
FINAL_WRITE_ATTEMPTS = 3


class Ears(Protocol):
    """What hears broadcasts for a process: a :class:`~flask_jobs.worker.heartbeat.Heartbeat`
    or a :class:`~flask_jobs.worker.control.ControlListener`."""

    def start(self) -> None:
        """Start the thread."""

    def stop(self) -> None:
        """Stop; nothing is sent after this returns."""


class Process:
    """The consumers of one OS process and what runs beside them.

    :param app: the Flask app.
    :param name: the identity that owns this process's tasks in Redis.
    :param hostname: the worker's node name.
    :param queues: queues to consume, highest first.
    :param prefetch: tasks each consumer claims at a time.
    :param concurrency: how many consumers.
    :param limits: arms the time limits of a run (pool specific).
    :param max_tasks: stop after this many tasks (a prefork child's recycling).
    """

    def __init__(self, app: Flask, name: str, hostname: str, queues: list[str], prefetch: int,
                 concurrency: int, limits: Limits, max_tasks: int | None = None) -> None:
        self.rt = Runtime(app, name, hostname, queues, prefetch, limits, max_tasks=max_tasks)
        self.consumers = [Consumer(self.rt) for _ in range(concurrency)]
        self.ears: Ears | None = None
        self._flusher: threading.Thread | None = None

    def start(self, ears: Ears, start_ears: Callable[[Ears], None] | None = None) -> None:
        """Start the ears (with ``start_ears(ears)`` if given, e.g. to register first) and the
        flusher thread."""
        self.ears = ears
        if start_ears is None:
            ears.start()
        else:
            start_ears(ears)
        self._flusher = threading.Thread(target=flusher, args=(self.rt,),
                                         name="flask-jobs-flusher", daemon=True)
        self._flusher.start()

    def wait_listening(self) -> None:
        """Return once broadcasts are heard (or after :data:`LISTEN_TIMEOUT`, with a warning)."""
        self.rt.wait_listening(LISTEN_TIMEOUT)

    def finish(self, cold: bool) -> None:
        """Write every outcome, give back whatever is still held, and unregister.

        :param cold: the consumers were cut short; their prefetched tasks go back now.
        """
        rt = self.rt
        rt.stop_event.set()
        if cold:
            # Prefetched, never started: back to the front of the queue without counting the
            # delivery (a warm stop does this in Consumer.run; a cold one cuts it short).
            for consumer in self.consumers:
                consumer.give_back()
        if self._flusher is not None:
            # Its last flush may carry an outcome: it must land before we unregister, or it
            # would be refused as a stranger's write (and the outcome lost).
            self._flusher.join(rt.state.settings.broker_timeout)
        client = rt.state.client
        for attempt in range(1, FINAL_WRITE_ATTEMPTS + 1):
            try:
                rt.flush(client, final=True)
                break
            except Exception as exc:
                log.warning("Could not write final outcomes (%s); retrying", exc)
                if attempt < FINAL_WRITE_ATTEMPTS:
                    time.sleep(0.2)  # (shutting down: nothing else to wait on)
        if self.ears is not None:
            self.ears.stop()  # before unregistering: a beat after it would register us again
        given = rt.state.broker.unregister(client, rt.name)
        if given:
            log.warning("%s stop: gave back %d task(s) to their queues",
                        "Cold" if cold else "Warm", given)
