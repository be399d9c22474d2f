"""The :class:`Worker`: banner, signals, pools (solo, threads, gevent, prefork), shutdown.

Shutdown (SIGTERM or Ctrl-C): stop claiming, let running tasks finish for up to
:data:`JOBS_WORKER_SHUTDOWN_TIMEOUT` seconds, give prefetched tasks back to the front of their
queues, write every outcome, unregister, exit 0. A second SIGTERM/SIGINT (or the timeout) is a
cold stop: the running tasks are given back at once and run again on another worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import redis

from .. import signals
from ..exceptions import BrokerUnavailable
from ..execution import Terminated
from .consumer import Consumer, Runtime, Wakeup, flusher
from .control import LISTEN_TIMEOUT
from .heartbeat import Heartbeat
from .limits import gevent_limits, raise_in_thread, signal_limits, thread_limits

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_jobs.worker")

POOLS = ("solo", "threads", "gevent", "prefork")


class ColdShutdown(BaseException):  # noqa: N818
    """Raised in the main thread to stop at once."""


class Worker:
    """A worker process running the tasks of ``app``.

    :param pool: ``solo``, ``threads``, ``gevent`` or ``prefork``.
    :param concurrency: consumers (threads, greenlets or child processes); default the CPU count
        (prefork), 8 (threads), 100 (gevent), 1 (solo).
    :param queues: queues to consume, in priority order (default :data:`JOBS_TASK_DEFAULT_QUEUE`).
    :param hostname: the node name (default ``worker@<host>``).
    :param prefetch: tasks each consumer claims at a time (default :data:`JOBS_WORKER_PREFETCH`).
    :param max_tasks_per_child: recycle a prefork child after this many tasks.
    """

    def __init__(self, app: Flask, pool: str = "prefork", concurrency: int | None = None,
                 queues: list[str] | None = None, hostname: str | None = None,
                 prefetch: int | None = None, max_tasks_per_child: int | None = None,
                 shutdown_timeout: float | None = None) -> None:
        if pool not in POOLS:
            raise ValueError(f"Unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
        self.app = app
        self.state = app.extensions["jobs"]
        cfg = self.state.settings
        self.pool = pool
        default_c = {"solo": 1, "threads": 8, "gevent": 100, "prefork": os.cpu_count() or 1}
        self.concurrency = 1 if pool == "solo" else int(
            concurrency or cfg.worker_concurrency or default_c[pool])
        self.queues = queues or [cfg.default_queue]
        self.hostname = hostname or f"worker@{socket.gethostname()}"
        self.prefetch = int(prefetch or cfg.worker_prefetch)
        self.max_tasks_per_child = max_tasks_per_child
        self.shutdown_timeout = float(shutdown_timeout if shutdown_timeout is not None
                                      else cfg.shutdown_timeout)
        #: The identity owning this process's tasks in Redis: unique per process and start.
        self.name = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(3)}"
        self.info = {"hostname": self.hostname, "pid": os.getpid(), "pool": pool,
                     "concurrency": self.concurrency, "queues": self.queues,
                     "prefetch": self.prefetch, "started": time.time(),
                     # (for jobs.control.inspect().registered())
                     "tasks": sorted(self.state.jobs.tasks)}
        self._signals_seen = 0
        self._cold_timer: threading.Timer | None = None
        self._main_hub: Any = None  # gevent pool: the hub of the consumers' thread

    # -- banner ------------------------------------------------------------------------------

    def banner(self) -> str:
        """The start-up banner, like Celery's: app, broker, pool, queues and tasks."""
        from .. import __version__

        tasks = "\n".join(f"  . {name}" for name in sorted(self.state.jobs.tasks)) or "  (none)"
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
        self.state.broker.register_rate_limits(
            {name: task.rate_limit for name, task in self.state.jobs.tasks.items()})
        if self.pool == "prefork":
            from .prefork import PreforkSupervisor

            return PreforkSupervisor(self).run()
        return self._run_in_process()

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
        retries = settings.connection_max_retries
        if not settings.retry_on_startup:
            retries = 0
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

    def _run_in_process(self) -> int:
        limits: Any = {"solo": signal_limits, "threads": thread_limits,
                       "gevent": gevent_limits}[self.pool]
        rt = Runtime(self.app, self.name, self.hostname, self.queues, self.prefetch, limits)
        consumers = [Consumer(rt) for _ in range(self.concurrency)]
        main_thread = threading.get_ident()
        hb = Heartbeat(self.state, self.name, lambda: [self.name], self.info,
                       lambda cmd: self._control(rt, cmd, main_thread), rt.on_listen)
        hb.beat(self.state.client)  # registered before the first claim
        if self.pool == "gevent":
            self._main_hub = _start_native_thread(hb)
        else:
            hb.start()
        flush_thread = threading.Thread(target=flusher, args=(rt,), name="flask-jobs-flusher",
                                        daemon=True)
        flush_thread.start()
        self._install_signals(rt, consumers)
        rt.wait_listening(LISTEN_TIMEOUT)  # (after the handlers: a stop may come meanwhile)
        signals.send(signals.worker_ready, self, hostname=self.hostname)
        log.info("%s ready.", self.hostname)
        cold = False
        try:
            if self.pool == "solo":
                consumers[0].run()
            else:
                threads = [threading.Thread(target=c.run, name=f"flask-jobs-consumer-{i}",
                                            daemon=True) for i, c in enumerate(consumers)]
                for t in threads:
                    t.start()
                rt.stop_event.wait()
                rt.wake_consumers()  # idle ones are blocked on their inboxes
                deadline = time.monotonic() + self.shutdown_timeout
                for t in threads:
                    t.join(max(0.0, deadline - time.monotonic()))
                cold = any(t.is_alive() for t in threads)
        except ColdShutdown:
            cold = True
        finally:
            if self._cold_timer is not None:
                self._cold_timer.cancel()
            rt.stop_event.set()
            signal.setitimer(signal.ITIMER_REAL, 0)
            for consumer in consumers if cold else ():
                # Prefetched, never started: back to the front of the queue without counting
                # the delivery (a warm stop does this in Consumer.run; a cold one cuts it short).
                while consumer.local:
                    claimed = consumer.local.popleft()
                    rt.writer.add(("L", claimed.id, claimed.attempt, "", "", "", "", "", ""))
            self._finish(rt, hb, cold)
        return 0

    def _finish(self, rt: Runtime, hb: Heartbeat, cold: bool) -> None:
        """Write every outcome, then give back whatever is still held, and unregister."""
        signals.send(signals.worker_shutdown, self, hostname=self.hostname)
        client = self.state.client
        for _ in range(3):
            try:
                rt.flush(client, final=True)
                break
            except Exception as exc:
                log.warning("Could not write final outcomes (%s); retrying", exc)
                time.sleep(0.2)
        hb.stop()  # before unregistering: a beat after it would register this worker again
        given = self.state.broker.unregister(client, self.name)
        if given:
            log.warning("%s stop: gave back %d task(s) to their queues", "Cold" if cold else
                        "Warm", given)
        log.info("%s stopped.", self.hostname)

    # -- signals and control -----------------------------------------------------------------

    def _install_signals(self, rt: Runtime, consumers: list[Consumer]) -> None:
        def on_stop(signum: int, frame: Any) -> None:
            self._signals_seen += 1
            if self._signals_seen > 1:
                log.warning("Cold shutdown: giving running tasks back")
                raise ColdShutdown()
            log.info("Warm shutdown: finishing running tasks (%.0fs at most); press Ctrl-C "
                     "again for a cold stop", self.shutdown_timeout)
            rt.stop_event.set()
            if self.pool == "solo":
                # The timeout is a second SIGTERM from a timer thread, not SIGALRM: the running
                # task's time limits use SIGALRM and must keep working during a warm stop.
                self._cold_timer = threading.Timer(max(0.01, self.shutdown_timeout), os.kill,
                                                   (os.getpid(), signal.SIGTERM))
                self._cold_timer.daemon = True
                self._cold_timer.start()
                if consumers[0].waiting:
                    raise Wakeup()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        if self.pool == "solo":
            def on_terminate(signum: int, frame: Any) -> None:
                target = getattr(rt, "terminate_target", None)
                if target is not None and target in rt.current:
                    rt.terminate_target = None
                    raise Terminated()

            signal.signal(signal.SIGUSR1, on_terminate)

    def _control(self, rt: Runtime, command: dict[str, Any], main_thread: int) -> None:
        if command.get("op") != "revoke":
            return
        task_id = str(command.get("id"))
        rt.note_revoked(task_id)
        if not command.get("terminate") or task_id not in rt.current:
            return
        ident, consumer = rt.current[task_id]
        log.info("Terminating task %s", task_id)
        if self.pool == "solo":
            rt.terminate_target = task_id  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGUSR1)
        elif self.pool == "gevent":
            import gevent

            if consumer.greenlet is not None:
                # we run in the heartbeat's own OS thread: hand the kill to the workers' hub
                self._main_hub.loop.run_callback_threadsafe(gevent.kill, consumer.greenlet,
                                                            Terminated)
        else:
            raise_in_thread(ident, Terminated)


def _start_native_thread(hb: Heartbeat) -> Any:
    """Under gevent, run the heartbeat in a real OS thread (gevent gives it its own hub): as a
    greenlet it would starve behind a task that never yields (CPU-bound), its heartbeat would
    lapse and the task would be delivered again while it still runs. Returns the caller's hub.
    """
    import gevent
    from gevent import monkey

    hb.stop_event = monkey.get_original("threading", "Event")()
    hb.beat_lock = monkey.get_original("threading", "Lock")()
    monkey.get_original("_thread", "start_new_thread")(hb.run, ())
    return gevent.get_hub()



def configure_logging(level: str = "INFO") -> None:
    """Log to stderr in Celery's format, at ``level``."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    )


class BackgroundWorker:
    """A worker running in threads of the current process: for tests and notebooks.

    It claims, runs and records tasks exactly as ``flask jobs worker -P threads`` does, but
    installs no signal handlers. Use :meth:`start` and :meth:`stop` (or ``with``).
    """

    def __init__(self, app: Flask, concurrency: int = 1, queues: list[str] | None = None,
                 prefetch: int | None = None, hostname: str = "worker@test") -> None:
        self.worker = Worker(app, pool="threads", concurrency=concurrency, queues=queues,
                             hostname=hostname, prefetch=prefetch)
        self.runtime = Runtime(app, self.worker.name, hostname, self.worker.queues,
                               self.worker.prefetch, thread_limits)
        self._threads: list[threading.Thread] = []
        self._hb: Heartbeat | None = None

    @property
    def name(self) -> str:
        """The identity owning this worker's tasks in Redis."""
        return self.worker.name

    def start(self) -> BackgroundWorker:
        """Start the consumers, the heartbeat and the flusher."""
        rt, w = self.runtime, self.worker
        w.state.broker.register_rate_limits(
            {name: task.rate_limit for name, task in w.state.jobs.tasks.items()})
        self._hb = Heartbeat(w.state, w.name, lambda: [w.name], w.info,
                             lambda cmd: w._control(rt, cmd, -1), rt.on_listen)
        self._hb.beat(w.state.client)
        self._hb.start()
        rt.wait_listening(LISTEN_TIMEOUT)
        self._threads = [threading.Thread(target=Consumer(rt).run, daemon=True)
                         for _ in range(w.concurrency)]
        self._threads.append(threading.Thread(target=flusher, args=(rt,), daemon=True))
        for t in self._threads:
            t.start()
        signals.send(signals.worker_ready, w, hostname=w.hostname)  # as _finish sends shutdown
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, wait for running tasks, write outcomes, unregister."""
        self.runtime.stop_event.set()
        self.runtime.wake_consumers()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert self._hb is not None
        self.worker._finish(self.runtime, self._hb, cold=any(t.is_alive()
                                                             for t in self._threads))

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
