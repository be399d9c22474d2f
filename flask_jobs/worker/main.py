"""The :class:`Worker`: banner, start-up, and the run of a solo, threads or gevent worker.

A worker connects to Redis (waiting for it at start), publishes its tasks' rate limits, then
runs its consumers: in this process for the solo, threads and gevent pools (see
:meth:`Worker.serve`), or in forked children under a supervisor for prefork (see
:mod:`~flask_jobs.worker.prefork`). Stopping is described in :mod:`~flask_jobs.worker.shutdown`.
:class:`BackgroundWorker` runs the same consumers in threads of the caller, for tests.
"""

from __future__ import annotations

import logging
import signal
import ssl
import time
from typing import Any

import redis
from flask import Flask

from .. import logs, signals
from .._version import __version__
from ..exceptions import BrokerUnavailable
from .control import answer
from .heartbeat import Heartbeat
from .options import WorkerOptions
from .pools import POOLS, ThreadsPool
from .process import Process
from .runtime import Runtime
from .shutdown import ColdShutdown, StopSignals

__all__ = ["POOLS", "BackgroundWorker", "Worker", "configure_logging"]

log = logging.getLogger("flask_jobs.worker")


class Worker(WorkerOptions):
    """A worker process running the tasks of ``app``; takes the :class:`WorkerOptions
    <flask_jobs.worker.options.WorkerOptions>` (``pool``, ``concurrency``, ``queues``,
    ``hostname``, ``prefetch``, ``max_tasks_per_child``, ``shutdown_timeout``).
    """

    def banner(self) -> str:
        """The start-up banner, like Celery's: app, broker, pool, queues and tasks."""
        tasks = "\n".join(f"  . {name}" for name in self.task_names()) or "  (none)"
        return (
            f"-------------- {self.hostname} flask-jobs v{__version__}\n"
            f".> app:         {self.app.import_name}\n"
            f".> broker:      {self.state.broker_url_safe}\n"
            f".> pool:        {self.pool}\n"
            f".> concurrency: {self.concurrency}\n"
            f".> prefetch:    {self.prefetch}\n"
            f".> queues:      {', '.join(self.queues)}\n"
            f"\n[tasks]\n{tasks}\n"
        )

    # -- running -----------------------------------------------------------------------------

    def start(self) -> int:
        """Run until stopped; returns the exit code.

        :raises BrokerUnavailable: Redis could not be reached at start (see
            :meth:`connect_at_start`).
        """
        self.connect_at_start()  # before any fork
        self.register_rate_limits()
        self.setup_beat()
        try:
            if self.pool_type.in_process:
                return self.serve()
            # Imported here: it loads ctypes (shared memory), which only this pool needs.
            from .prefork import PreforkSupervisor

            return PreforkSupervisor(self).run()
        finally:
            self.stop_beat()

    def connect_at_start(self) -> None:
        """Reach Redis before anything else, as Celery's worker does
        (:data:`JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP`): a Redis that is not up yet, e.g.
        started at the same time in a container setup, is waited for with growing pauses (1, 2,
        4... up to 10 s), a log line each, for :data:`JOBS_BROKER_CONNECTION_MAX_RETRIES`
        attempts. Refused credentials or TLS settings stop the worker at once: waiting cannot
        fix them.

        :raises BrokerUnavailable: with the reason and the URL (secrets hidden).
        """
        settings = self.state.settings
        retries = settings.connection_max_retries if settings.retry_on_startup else 0
        where = self.state.broker_url_safe
        attempt = 0
        while True:
            try:
                self.state.client.ping()
                return
            except redis.AuthenticationError as exc:
                raise BrokerUnavailable(f"Redis at {where} refused the user name or password "
                                        f"({exc}); check JOBS_BROKER_URL.") from None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                reason = str(exc).rstrip(".")
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, ssl.SSLError) or "SSL" in str(exc):
                    raise BrokerUnavailable(f"Cannot connect to Redis at {where}: the TLS "
                                            f"handshake failed ({reason}).") from None
                attempt += 1
                if retries is not None and attempt > int(retries):
                    raise BrokerUnavailable(f"Cannot connect to Redis at {where}: {reason}"
                                            + (f" (tried {attempt} times)" if attempt > 1 else "")
                                            ) from None
                pause = min(10.0, 2.0 ** (attempt - 1))
                log.warning("Cannot connect to Redis at %s: %s. Trying again in %gs (attempt "
                            "%d of %s)...", where, reason, pause, attempt,
                            "unlimited" if retries is None else retries)
                time.sleep(pause)  # (Ctrl-C stops it: no signal handlers are installed yet)

    def register_rate_limits(self) -> None:
        """Publish the rate limits of this worker's tasks (they apply over all workers), and
        the settings the scripts read (:data:`JOBS_EVENTS`: the events stream's length)."""
        self.state.broker.register_rate_limits(
            {name: getattr(task, "rate_limit", None)
             for name, task in self.state.jobs.tasks.items()})
        settings = self.state.settings
        self.state.client.hset(self.state.keys.conf, "events",
                               settings.events_maxlen if settings.events else 0)

    def process(self) -> Process:
        """A :class:`~flask_jobs.worker.process.Process` of this worker's consumers."""
        return Process(self.app, self.name, self.hostname, self.queues, self.prefetch,
                       self.concurrency, self.pool_type.limits())

    def heartbeat(self, rt: Runtime) -> Heartbeat:
        """The heartbeat of a worker whose consumers share ``rt``: it beats for this worker,
        reaps dead ones and hears broadcasts for ``rt``."""
        return Heartbeat(self.state, self.name, lambda: [self.name], self.info,
                         lambda command: self.control(rt, command), rt.on_listen,
                         self.health_file)

    def serve(self) -> int:
        """Run the consumers in this process (solo, threads, gevent) until stopped."""
        pool = self.pool_type
        process = self.process()
        rt = process.rt
        process.start(self.heartbeat(rt), pool.start_ears)
        self.start_beat()

        def warm() -> None:
            rt.stop_event.set()
            pool.on_warm_stop(process, self.shutdown_timeout)

        StopSignals(self.shutdown_timeout, warm, _cold).install()
        pool.install(rt)
        process.wait_listening()  # (after the handlers: a stop may come meanwhile)
        self.announce_ready()
        cold = False
        try:
            cold = pool.run_consumers(process, self.shutdown_timeout)
        except ColdShutdown:
            cold = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.finish(process, cold)
        return 0

    def finish(self, process: Process, cold: bool) -> None:
        """Announce the shutdown, then write, give back and unregister (see
        :meth:`Process.finish <flask_jobs.worker.process.Process.finish>`)."""
        self.announce_shutdown()
        process.finish(cold)
        log.info("%s stopped.", self.hostname)

    def control(self, rt: Runtime, command: dict[str, Any]) -> None:
        """Act on a broadcast command: answer a ping; note a revoke, and terminate the task if
        asked to."""
        if command.get("op") != "revoke":
            answer(self.state, self.hostname, command)
            return
        task_id = str(command.get("id"))
        rt.note_revoked(task_id)
        running = rt.current.get(task_id)
        if not command.get("terminate") or running is None:
            return
        log.info("Terminating task %s", task_id)
        self.pool_type.terminate(rt, task_id, *running)


def _cold() -> None:
    raise ColdShutdown()


def configure_logging(level: str = "INFO", logfile: str | None = None,
                      log_format: str = "text") -> None:
    """Log to stderr (or ``logfile``) in Celery's format (or JSON lines), at ``level``; a
    receiver of :data:`~flask_jobs.signals.setup_logging` takes this over, as in Celery."""
    if signals.setup_logging.receivers:
        signals.send(signals.setup_logging, None, loglevel=level, logfile=logfile,
                     format=log_format)
        return
    logs.configure_logging(level, logfile, log_format)
    signals.send(signals.after_setup_logger, None, logger=logging.getLogger(), loglevel=level,
                 logfile=logfile, format=log_format)


class BackgroundWorker:
    """A worker running in threads of the current process: for tests and notebooks.

    It claims, runs and records tasks exactly as ``flask jobs worker -P threads`` does, but
    installs no signal handlers. Use :meth:`start` and :meth:`stop` (or ``with``).
    """

    def __init__(self, app: Flask, concurrency: int = 1, queues: list[str] | None = None,
                 prefetch: int | None = None, hostname: str = "worker@test") -> None:
        self.worker = Worker(app, pool="threads", concurrency=concurrency, queues=queues,
                             hostname=hostname, prefetch=prefetch)
        self.process = self.worker.process()
        #: What the consumers share (see :class:`~flask_jobs.worker.runtime.Runtime`).
        self.runtime = self.process.rt
        self._pool = ThreadsPool()
        self._threads: list[Any] = []

    @property
    def name(self) -> str:
        """The identity owning this worker's tasks in Redis."""
        return self.worker.name

    def start(self) -> BackgroundWorker:
        """Start the consumers, the heartbeat and the flusher."""
        w = self.worker
        w.register_rate_limits()
        self.process.start(w.heartbeat(self.runtime), self._pool.start_ears)
        self.process.wait_listening()
        self._threads = self._pool.start_consumers(self.process)
        w.announce_ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, wait for running tasks, write outcomes, unregister."""
        self.runtime.stop_event.set()
        cold = self._pool.join_consumers(self.process, self._threads, timeout)
        self.worker.finish(self.process, cold)

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
