"""The pools: what differs between solo, threads, gevent and prefork, and nothing else.

The worker's start-up, loop and shutdown are the same for every pool; a :class:`Pool` answers
the few questions whose answers differ: how many consumers by default, how a run's time limits
are armed, how the heartbeat thread is started, how the consumers run in this process, what a
warm stop must interrupt, and how a running task is terminated.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, ClassVar

from ..execution import Limits, Terminated
from .consumer import Wakeup
from .heartbeat import Heartbeat
from .limits import gevent_limits, raise_in_thread, signal_limits, thread_limits
from .process import Ears, Process
from .runtime import Runtime


class Pool:
    """How one kind of pool runs a worker's consumers (see the module docstring)."""

    #: The name given to ``-P``.
    name: ClassVar[str]
    #: Whether the consumers run in the worker's own process (all but prefork).
    in_process: ClassVar[bool] = True

    def default_concurrency(self) -> int:
        """Consumers when neither ``-c`` nor :data:`JOBS_WORKER_CONCURRENCY` says."""
        raise NotImplementedError

    def concurrency(self, requested: int | None) -> int:
        """How many consumers to run for ``requested`` (None: the default)."""
        return int(requested or self.default_concurrency())

    def limits(self) -> Limits:
        """Arms the time limits of a run in one of this pool's consumers."""
        raise NotImplementedError

    def start_ears(self, ears: Ears) -> None:
        """Start the heartbeat thread (registering the worker first, before any claim)."""
        assert isinstance(ears, Heartbeat)
        ears.beat(ears.state.client)
        ears.start()

    def install(self, rt: Runtime) -> None:
        """Install what the pool needs in the main thread (signal handlers) before it runs."""

    def run_consumers(self, process: Process, timeout: float) -> bool:
        """Run the consumers until the process stops; returns whether they were cut short
        (a cold stop) because some still ran ``timeout`` seconds after the stop."""
        raise NotImplementedError

    def on_warm_stop(self, process: Process, timeout: float) -> None:
        """React to the first stop signal, after the stop event is set (in the main thread)."""

    def terminate(self, rt: Runtime, task_id: str, ident: int, greenlet: Any) -> None:
        """Stop the running task ``task_id`` (``revoke(terminate=True)``) that runs in thread
        ``ident`` (and ``greenlet``, under gevent)."""
        raise NotImplementedError


class SoloPool(Pool):
    """One consumer in the main thread: time limits by SIGALRM, terminate by SIGUSR1."""

    name = "solo"

    def __init__(self) -> None:
        self._cold_timer: threading.Timer | None = None

    def default_concurrency(self) -> int:
        """One."""
        return 1

    def concurrency(self, requested: int | None) -> int:
        """Always one."""
        return 1

    def limits(self) -> Limits:
        """SIGALRM in the main thread."""
        return signal_limits

    def install(self, rt: Runtime) -> None:
        """SIGUSR1 raises :class:`Terminated` in the task that a terminate aimed at."""
        def on_terminate(signum: int, frame: Any) -> None:
            target = rt.terminate_target
            if target is not None and target in rt.current:
                rt.terminate_target = None
                raise Terminated()

        signal.signal(signal.SIGUSR1, on_terminate)

    def run_consumers(self, process: Process, timeout: float) -> bool:
        """Run the one consumer here; a cold stop raises out of it."""
        try:
            process.consumers[0].run()
        finally:
            if self._cold_timer is not None:
                self._cold_timer.cancel()
        return False

    def on_warm_stop(self, process: Process, timeout: float) -> None:
        """Arm the cold stop and wake the consumer if it is blocked waiting for work.

        The timeout is a second SIGTERM from a timer thread, not SIGALRM: the running task's
        time limits use SIGALRM and must keep working during a warm stop.
        """
        self._cold_timer = threading.Timer(max(0.01, timeout), os.kill,
                                           (os.getpid(), signal.SIGTERM))
        self._cold_timer.daemon = True
        self._cold_timer.start()
        if process.consumers[0].waiting:
            raise Wakeup()

    def terminate(self, rt: Runtime, task_id: str, ident: int, greenlet: Any) -> None:
        """Signal ourselves: the handler raises in the main thread, where the task runs."""
        rt.terminate_target = task_id
        os.kill(os.getpid(), signal.SIGUSR1)


class ThreadsPool(Pool):
    """Consumers in threads: time limits by timers, terminate by an asynchronous exception."""

    name = "threads"

    def default_concurrency(self) -> int:
        """Eight."""
        return 8

    def limits(self) -> Limits:
        """Timers that raise into the task's thread."""
        return thread_limits

    def run_consumers(self, process: Process, timeout: float) -> bool:
        """Start a thread per consumer, wait for the stop, then for the threads."""
        threads = self.start_consumers(process)
        process.rt.stop_event.wait()
        return self.join_consumers(process, threads, timeout)

    def start_consumers(self, process: Process) -> list[threading.Thread]:
        """Start a thread (a greenlet, once patched) per consumer."""
        threads = [threading.Thread(target=c.run, name=f"flask-jobs-consumer-{i}", daemon=True)
                   for i, c in enumerate(process.consumers)]
        for t in threads:
            t.start()
        return threads

    def join_consumers(self, process: Process, threads: list[threading.Thread],
                       timeout: float) -> bool:
        """After the stop: wake idle consumers and wait for all; returns whether some still
        ran after ``timeout`` seconds."""
        process.rt.wake_consumers()  # idle ones are blocked on their inboxes
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return any(t.is_alive() for t in threads)

    def terminate(self, rt: Runtime, task_id: str, ident: int, greenlet: Any) -> None:
        """Raise :class:`Terminated` in the task's thread (at its next bytecode)."""
        raise_in_thread(ident, Terminated)


class GeventPool(ThreadsPool):
    """Consumers in greenlets (the process is monkey-patched), the heartbeat in a real thread."""

    name = "gevent"

    def __init__(self) -> None:
        self._hub: Any = None  # the hub of the consumers' thread

    def default_concurrency(self) -> int:
        """A hundred."""
        return 100

    def limits(self) -> Limits:
        """Greenlets that throw into the task's greenlet."""
        return gevent_limits

    def start_ears(self, ears: Ears) -> None:
        """Run the heartbeat in a real OS thread (gevent gives it its own hub).

        As a greenlet it would starve behind a task that never yields (CPU-bound): its
        heartbeat would lapse and the task would be delivered again while it still runs.
        """
        import gevent
        from gevent import monkey

        assert isinstance(ears, Heartbeat)
        ears.beat(ears.state.client)
        ears.stop_event = monkey.get_original("threading", "Event")()
        ears.beat_lock = monkey.get_original("threading", "Lock")()
        monkey.get_original("_thread", "start_new_thread")(ears.run, ())
        self._hub = gevent.get_hub()

    def terminate(self, rt: Runtime, task_id: str, ident: int, greenlet: Any) -> None:
        """Kill the task's greenlet with :class:`Terminated`, from the workers' hub (the
        command is heard in the heartbeat's own OS thread)."""
        import gevent

        if greenlet is not None:
            self._hub.loop.run_callback_threadsafe(gevent.kill, greenlet, Terminated)


class PreforkPool(Pool):
    """Forked child processes, each a solo consumer, under a supervising parent (see
    :mod:`~flask_jobs.worker.prefork`)."""

    name = "prefork"
    in_process = False

    def default_concurrency(self) -> int:
        """The number of CPUs."""
        return os.cpu_count() or 1

    def limits(self) -> Limits:
        """SIGALRM in each child's main thread (the parent kills a child stuck past it)."""
        return signal_limits


#: The pools by name, in the order ``-P`` lists them.
POOL_TYPES: dict[str, type[Pool]] = {p.name: p for p in (SoloPool, ThreadsPool, GeventPool,
                                                          PreforkPool)}
#: The names ``-P`` takes.
POOLS = tuple(POOL_TYPES)


def make_pool(name: str) -> Pool:
    """A new :class:`Pool` for ``-P name``.

    :raises ValueError: naming the pools there are.
    """
    try:
        return POOL_TYPES[name]()
    except KeyError:
        raise ValueError(f"Unknown pool {name!r}; choose one of {', '.join(POOLS)}") from None
