"""A worker's options: the command line's and the app's settings, resolved once."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import redis
from flask import Flask

from .. import signals
from ..events import EventStream
from ..state import AppState
from .pools import Pool, make_pool

if TYPE_CHECKING:
    from ..beat import Beat

log = logging.getLogger("flask_jobs.worker")

#: The prefix of the built-in tasks' names (see :mod:`flask_jobs.builtin_tasks`).
BUILTIN = "flask_jobs."


class WorkerOptions:
    """Everything a worker runs with, defaults filled in from the app's settings.

    :param app: the Flask app whose tasks it runs.
    :param pool: ``solo``, ``threads``, ``gevent`` or ``prefork``.
    :param concurrency: consumers (threads, greenlets or child processes); default
        :data:`JOBS_WORKER_CONCURRENCY`, else the pool's (CPUs, 8, 100; solo is always 1).
    :param queues: queues to consume, in priority order (default :data:`JOBS_TASK_DEFAULT_QUEUE`).
    :param hostname: the node name (default ``worker@<host>``).
    :param prefetch: tasks each consumer claims at a time (default :data:`JOBS_WORKER_PREFETCH`).
    :param max_tasks_per_child: recycle a prefork child after this many tasks.
    :param shutdown_timeout: seconds a warm stop waits for running tasks (default
        :data:`JOBS_WORKER_SHUTDOWN_TIMEOUT`).
    :param beat: also run a :class:`~flask_jobs.beat.Beat` in this process (``-B``).
    :param health_file: touch this file after every heartbeat that reached Redis.
    :raises ValueError: an unknown pool.
    """

    def __init__(self, app: Flask, pool: str = "prefork", concurrency: int | None = None,
                 queues: list[str] | None = None, hostname: str | None = None,
                 prefetch: int | None = None, max_tasks_per_child: int | None = None,
                 shutdown_timeout: float | None = None, beat: bool = False,
                 health_file: str | None = None) -> None:
        #: How the consumers run (see :mod:`~flask_jobs.worker.pools`).
        self.pool_type: Pool = make_pool(pool)
        self.app = app
        self.state: AppState = app.extensions["jobs"]
        settings = self.state.settings
        #: The pool's name.
        self.pool = pool
        self.concurrency = self.pool_type.concurrency(concurrency or settings.worker_concurrency)
        self.queues = queues or [settings.default_queue]
        self.hostname = hostname or f"worker@{socket.gethostname()}"
        self.prefetch = int(prefetch or settings.worker_prefetch)
        self.max_tasks_per_child = max_tasks_per_child
        self.shutdown_timeout = float(shutdown_timeout if shutdown_timeout is not None
                                      else settings.shutdown_timeout)
        #: The identity owning this process's tasks in Redis: unique per process and start.
        self.name = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(3)}"
        #: Touched after every heartbeat (``--health-file``), for liveness probes.
        self.health_file = health_file
        #: The beat this worker runs (``-B``), started by :meth:`start_beat`.
        self.beat: Beat | None = None
        if beat:
            from ..beat import Beat  # (here: a worker without -B does not load the scheduler)

            self.beat = Beat(app, hostname=self.hostname)
        #: The heartbeat's payload, read by ``jobs.control.inspect()``.
        self.info: dict[str, Any] = {
            "hostname": self.hostname, "pid": os.getpid(), "pool": pool,
            "concurrency": self.concurrency, "queues": self.queues, "prefetch": self.prefetch,
            "started": time.time(), "tasks": self.task_names(),
        }

    # -- the beat inside (-B) -------------------------------------------------------------------

    def setup_beat(self) -> None:
        """Check and write the beat's entries (at start, before any fork: a bad entry stops
        the worker with its name)."""
        if self.beat is not None:
            self.beat.setup()
            log.info("beat: this worker runs a beat (-B), id %s; periodic tasks:\n%s",
                     self.beat.id, self.beat.entry_lines())

    def start_beat(self) -> None:
        """Run the beat in a thread (after the pool forked its children)."""
        if self.beat is not None:
            self.beat.start()

    def stop_beat(self) -> None:
        """Stop the beat (it gives up its lease at once, for another beat to take)."""
        if self.beat is not None:
            self.beat.stop(timeout=self.beat.lease)

    # -- what every worker announces ----------------------------------------------------------

    def announce_ready(self) -> None:
        """Send :data:`~flask_jobs.signals.worker_ready` and log that the worker is up."""
        signals.send(signals.worker_ready, self, hostname=self.hostname)
        self.worker_event("worker-online")
        log.info("%s ready.", self.hostname)

    def announce_shutdown(self) -> None:
        """Send :data:`~flask_jobs.signals.worker_shutdown` (before the last writes)."""
        signals.send(signals.worker_shutdown, self, hostname=self.hostname)
        self.worker_event("worker-offline")

    def worker_event(self, kind: str) -> None:
        """Add ``worker-online`` or ``worker-offline`` to the events (when they are on)."""
        settings = self.state.settings
        if not settings.events:
            return
        try:
            pipe = self.state.client.pipeline(transaction=False)
            EventStream(self.state.client, self.state.keys).add_worker_event(
                pipe, kind, self.name, settings.events_maxlen,
                {"hostname": self.hostname, "pid": os.getpid(), "pool": self.pool,
                 "concurrency": self.concurrency, "queues": self.queues})
            pipe.execute()
        except redis.RedisError as exc:  # (an event is not worth failing a start or stop)
            log.warning("Could not add the %s event: %s", kind, exc)

    def task_names(self) -> list[str]:
        """The names of the app's tasks, sorted, without the built-ins (``flask_jobs.*``), as
        Celery leaves out its ``celery.*`` ones."""
        return sorted(name for name in self.state.jobs.tasks if not name.startswith(BUILTIN))
