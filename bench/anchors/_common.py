"""Task bodies shared by every library's task module, so all libraries do the same work.

Every task module (``bench/anchors/<lib>_app.py`` and the flask-jobs one) wraps these in
its own task decorator. Completion is counted identically everywhere: one Redis ``INCR``
of ``bench:done`` through the module-level client below (same URL as the broker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import redis

from bench.anchors._keys import DONE_KEY, LAT_KEY, MIXED_KEY, PROGRESS_KEY

REDIS_URL = os.environ["BENCH_REDIS_URL"]  # no default on purpose: never hit the system Redis

counter = redis.Redis.from_url(REDIS_URL)


def noop() -> None:
    counter.incr(DONE_KEY)


def latency(sent: float) -> None:
    counter.rpush(LAT_KEY, time.time() - sent)


def mixed(seconds: float, kind: str) -> None:
    """A task of the mixed workload: record its start, sleep ``seconds``, record its end time
    (by kind)."""
    counter.rpush(f"{MIXED_KEY}:start", time.time())
    time.sleep(seconds)
    counter.rpush(f"{MIXED_KEY}:{kind}", time.time())


def echo(x):
    return x


def add1(x: int) -> int:
    """One step of the chain workload: ``add1.s(0) | add1.s() | ...`` ends at the step count."""
    return x + 1


def tsum(values) -> int:
    """The body of the chord workload: the sum of the header's results."""
    return sum(values)


def progress(n: int, update: Callable[[int, int], object]) -> float:
    """Call ``update(i, n)`` n times (the library's progress API); store and return elapsed s."""
    t0 = time.perf_counter()
    for i in range(n):
        update(i, n)
    elapsed = time.perf_counter() - t0
    counter.set(PROGRESS_KEY, repr(elapsed))
    return elapsed
