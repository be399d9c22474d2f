"""Time limits and in-task termination, per kind of pool.

Each ``*_limits(soft, hard)`` arms the limits of one run and returns a function that disarms
them. The soft limit raises :class:`~flask_jobs.exceptions.SoftTimeLimitExceeded` inside the task
(so it can clean up); the hard limit raises ``HardTimeLimit``, which the task cannot catch with
``except Exception``, and is recorded as :class:`~flask_jobs.exceptions.TimeLimitExceeded`. In the
prefork pool the parent also kills a child that is still stuck (in C code) after the hard limit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from ..exceptions import SoftTimeLimitExceeded
from ..execution import HardTimeLimit

Disarm = Callable[[], None]


def signal_limits(soft: float | None, hard: float | None) -> Disarm:
    """Limits for a task running in the main thread (solo pool, prefork children): SIGALRM."""
    stages: list[tuple[float, type[BaseException]]] = []
    if soft:
        stages.append((float(soft), SoftTimeLimitExceeded))
    if hard and (not soft or hard > soft):
        stages.append((float(hard), HardTimeLimit))
    if not stages:
        return lambda: None
    elapsed = 0.0

    def on_alarm(signum: int, frame: object) -> None:
        nonlocal elapsed
        at, exc = stages.pop(0)
        elapsed = at
        if stages:
            signal.setitimer(signal.ITIMER_REAL, stages[0][0] - elapsed)
        raise exc(f"time limit ({at:g}s) exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, stages[0][0])

    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    return disarm


def raise_in_thread(thread_id: int, exc: type[BaseException]) -> bool:
    """Raise ``exc`` asynchronously in another Python thread (at its next bytecode)."""
    import ctypes  # here, not at the top: only the threads pool needs it (~0.4 MB per worker)

    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                                      ctypes.py_object(exc))
    return bool(done == 1)


def thread_limits(soft: float | None, hard: float | None) -> Disarm:
    """Limits for a task in a pool thread: timers that raise into the thread."""
    tid = threading.get_ident()
    timers = []
    if soft:
        timers.append(threading.Timer(float(soft), raise_in_thread, (tid, SoftTimeLimitExceeded)))
    if hard and (not soft or hard > soft):
        timers.append(threading.Timer(float(hard), raise_in_thread, (tid, HardTimeLimit)))
    for t in timers:
        t.daemon = True
        t.start()

    def disarm() -> None:
        for t in timers:
            t.cancel()

    return disarm


def gevent_limits(soft: float | None, hard: float | None) -> Disarm:
    """Limits for a task in a greenlet: throw into it later."""
    import gevent

    current = gevent.getcurrent()
    later = []
    if soft:
        later.append(gevent.spawn_later(float(soft), current.throw, SoftTimeLimitExceeded))
    if hard and (not soft or hard > soft):
        later.append(gevent.spawn_later(float(hard), current.throw, HardTimeLimit))

    def disarm() -> None:
        for g in later:
            g.kill(block=False)

    return disarm
