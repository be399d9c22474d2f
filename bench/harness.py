"""The benchmark harness: one adapter interface, and every measurement loop written once.

How the pieces fit
==================
``bench/run.py`` (the orchestrator) starts a private ``redis-server`` and then, for every
(library, workload) pair, runs this module in a fresh subprocess::

    python -m bench.harness --adapter bench.anchors.celery_bench \\
        --redis-url redis://127.0.0.1:PORT/0 --workload drain_solo --n 20000

The subprocess flushes the database, builds the library's :class:`Adapter`, runs one
workload function below and prints one line ``BENCH_RESULT {json}`` on stdout. Workers
are started as subprocesses in their own sessions (process groups) and are always killed
before the workload returns; the orchestrator additionally sweeps every process that
carries this run's ``BENCH_RUN_ID`` in its environment, so nothing outlives a run.

Writing an adapter (e.g. ``bench/flask_jobs_bench.py``)
=======================================================
A module exposes ``ADAPTER = <subclass of Adapter>``. The subclass says only *how* to do
things with its library; it never times anything. Its task module (imported by both the
producer and the workers) must read the Redis URL from the ``BENCH_REDIS_URL`` environment
variable and define four tasks whose bodies call :mod:`bench.anchors._common`:

``noop()``
    ``_common.noop()`` -- one ``INCR bench:done`` (how every library's completion is counted).
``latency(sent)``
    ``_common.latency(sent)`` -- ``RPUSH bench:lat (time.time() - sent)``.
``echo(x)``
    returns ``x`` through the library's result mechanism.
``progress(n)``
    ``_common.progress(n, update)`` where ``update(i, total)`` calls the library's
    progress/state API once; ``_common.progress`` stores the task's own elapsed time.
``add1(x)``, ``tsum(values)``
    ``_common.add1`` / ``_common.tsum``: a chain's step (``x + 1``) and a chord's body (the
    sum of the header's results); only needed by a library with a chain / chord API.

Methods to implement (the producer side runs in the harness process, after :meth:`setup`):

=============================  =============================================================
``setup()``                    import the task module / create clients (env is already set)
``enqueue_noop()``             enqueue ONE no-op task with the plain one-call API
``enqueue_noop_bulk(n)``       enqueue n no-op tasks with the fastest bulk API
``enqueue_latency(sent)``      enqueue ``latency(sent)``
``roundtrip(x, timeout)``      enqueue ``echo(x)``, block for the result, return it
``enqueue_progress(n)``        enqueue ``progress(n)`` (only if ``supports_progress``)
``solo_worker()``              :class:`WorkerConfig`: one process, one thread of execution
``multi_workers()``            list of :class:`WorkerConfig` to try for "best on 2 cores"
=============================  =============================================================

Canvas workloads (optional; the base class raises :class:`NotSupported`, shown as "n/a"):
``group_canvas(n)``, ``chord_canvas(n)`` and ``chain_canvas(n)`` build (untimed) a group of n
no-ops, a chord of n ``echo(i)`` with a ``tsum`` body, a chain of n ``add1`` steps from 0,
and return a :class:`Canvas`: ``send()`` sends it (the clock runs from here) and returns a
handle, ``collect(handle, timeout)`` blocks for the result(s) (the clock stops here): the n
results of a group, the body's result of a chord, the last step's result of a chain.

Optional: ``start_workers(config)`` (default: launch ``config.commands`` with
:func:`spawn`), ``bulk_api`` (a short text naming the bulk API used) and ``distributions``
(pip distribution names whose versions are reported).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

from bench.anchors import _keys

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = REPO_ROOT / "bench" / "results" / "logs"
RESULT_PREFIX = "BENCH_RESULT "

# How often the drain / readiness loops read the counter (a benchmark, so polling is fine).
POLL_INTERVAL = 0.01
# Drain settings after the first are stopped early when, after ABANDON_AFTER seconds, they
# run below ABANDON_FRACTION x the best complete setting so far (keeps the run short).
ABANDON_AFTER = 3.0
ABANDON_FRACTION = 0.6
LATENCY_SPACING = 0.020  # seconds between two latency tasks
ROUNDTRIP_TIMEOUT = 10.0


class NotSupported(Exception):
    """The library has no API for this workload (reported as "n/a")."""


@dataclass
class WorkerConfig:
    """How to start a worker setting: one argv per OS process tree to launch.

    ``label`` is what the report shows (e.g. ``"prefork c=2"``); ``env`` is added to the
    environment of every command (``BENCH_REDIS_URL``, ``PYTHONPATH`` are always set).
    """

    label: str
    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Canvas:
    """A group, chord or chain built for one measured run (see the module docstring).

    ``send()`` sends it and returns a handle; ``collect(handle, timeout)`` blocks until its
    result(s) are there (raising when ``timeout`` seconds pass) and returns them.
    """

    send: Callable[[], Any]
    collect: Callable[[Any, float], Any]


class Adapter:
    """Base class of the per-library adapters; see the module docstring for the contract."""

    #: column label in the report
    name: str = "?"
    #: pip distributions whose installed versions are reported (first one is "the" version)
    distributions: tuple[str, ...] = ()
    #: short description of the bulk enqueue API used
    bulk_api: str = "loop of enqueue_noop()"
    #: False when the library has no progress/state API (the row shows "n/a")
    supports_progress: bool = True

    def __init__(self, redis_url: str):
        self.redis_url = redis_url

    # -- producer side -------------------------------------------------------------------
    def setup(self) -> None:
        """Import the task module, create clients. Called once, before any other method."""

    def enqueue_noop(self) -> None:
        raise NotImplementedError

    def enqueue_noop_bulk(self, n: int) -> None:
        for _ in range(n):
            self.enqueue_noop()

    def enqueue_latency(self, sent: float) -> None:
        raise NotImplementedError

    def roundtrip(self, x: int, timeout: float):
        raise NotImplementedError

    def enqueue_progress(self, n: int) -> None:
        raise NotSupported("no progress API")

    def enqueue_mixed(self, seconds: float, kind: str) -> None:
        raise NotSupported("no mixed-workload task")

    def mixed_workers(self) -> WorkerConfig:
        """Four consumers, for the mixed workload."""
        raise NotSupported("no four-consumer setting for the mixed workload")

    # -- canvas (built untimed; see Canvas) --------------------------------------------------
    def group_canvas(self, n: int) -> Canvas:
        """A group of n ``noop()`` tasks; ``collect`` returns their n results."""
        raise NotSupported("no group API")

    def chord_canvas(self, n: int) -> Canvas:
        """A chord: header ``echo(i)`` for i in range(n), body ``tsum``; ``collect`` returns
        the body's result."""
        raise NotSupported("no chord API")

    def chain_canvas(self, n: int) -> Canvas:
        """A chain ``add1(0) -> add1 -> ...`` of n steps, each given the previous result;
        ``collect`` returns the last step's result."""
        raise NotSupported("no chain API")

    # -- workers -------------------------------------------------------------------------
    def solo_worker(self) -> WorkerConfig:
        raise NotImplementedError

    def multi_workers(self) -> list[WorkerConfig]:
        raise NotImplementedError

    def start_workers(self, config: WorkerConfig) -> list[subprocess.Popen]:
        """Start every command of ``config``; each gets its own session (process group)."""
        return [
            spawn(argv, config.label, extra_env=config.env, name=self.name)
            for argv in config.commands
        ]

    # -- reporting -----------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        out = {}
        for dist in self.distributions:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out


# ----------------------------------------------------------------------------------------
# Process helpers
# ----------------------------------------------------------------------------------------


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(
    argv: list[str], label: str, extra_env: dict[str, str] | None = None, name: str = "worker"
) -> subprocess.Popen:
    """Launch one worker command in a new session, logging to bench/results/logs/."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{name}-{label}").strip("-")
    log = open(LOG_DIR / f"{slug}.log", "ab")  # owned by the Popen below
    log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=worker_env(extra_env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log_path = log.name  # type: ignore[attr-defined]
    log.close()
    return proc


def _proc_stat(pid: str) -> tuple[int, int] | None:
    """(ppid, pgrp) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def group_pids(pgids: set[int]) -> list[int]:
    """Live pids whose process group is one of ``pgids``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(entry)
            if st is not None and st[1] in pgids:
                pids.append(int(entry))
    return pids


def rss_mb(pids: list[int]) -> float:
    """Sum of VmRSS of ``pids`` in MB (MiB), read from /proc/<pid>/status."""
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            pass
    return total_kb / 1024


def stop_workers(procs: list[subprocess.Popen]) -> None:
    """SIGKILL every process group we started and reap the leaders."""
    pgids = {p.pid for p in procs}
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while group_pids(pgids) and time.monotonic() < deadline:
        time.sleep(0.05)


def log_tail(procs: list[subprocess.Popen], chars: int = 600) -> str:
    parts = []
    for p in procs:
        path = getattr(p, "log_path", None)
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - chars))
                parts.append(f.read().decode(errors="replace"))
    return "\n".join(parts)


class WorkerDied(RuntimeError):
    pass


def check_alive(procs: list[subprocess.Popen]) -> None:
    dead = [p for p in procs if p.poll() is not None]
    if dead:
        lines = [ln for ln in log_tail(dead).splitlines() if ln.strip() and "====" not in ln]
        last = lines[-1].strip() if lines else "no output"
        log = os.path.relpath(getattr(dead[0], "log_path", "?"), REPO_ROOT)
        raise WorkerDied(f"worker exited with code {dead[0].returncode} ({log}): {last}")


# ----------------------------------------------------------------------------------------
# Redis helpers
# ----------------------------------------------------------------------------------------


def counter(r: redis.Redis) -> int:
    return int(r.get(_keys.DONE_KEY) or 0)


def snapshot_db(r: redis.Redis) -> list[tuple[bytes, int, bytes]]:
    """DUMP every key (used to replay an identical pre-enqueued backlog for each config)."""
    keys = r.keys("*")
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.pttl(k)
        pipe.dump(k)
    values = pipe.execute()
    return [(k, values[2 * i], values[2 * i + 1]) for i, k in enumerate(keys)]


def restore_db(r: redis.Redis, snapshot: list[tuple[bytes, int, bytes]]) -> None:
    r.flushdb()
    pipe = r.pipeline(transaction=False)
    for key, pttl, data in snapshot:
        pipe.restore(key, pttl if pttl and pttl > 0 else 0, data, replace=True)
    pipe.execute()


def wait_for(predicate, timeout: float, procs: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if procs:
            check_alive(procs)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def wait_ready(
    adapter: Adapter, r: redis.Redis, procs: list[subprocess.Popen], timeout: float = 60.0
) -> None:
    """Block until the workers executed one no-op task, then reset the counter."""
    r.delete(_keys.DONE_KEY)
    adapter.enqueue_noop()
    wait_for(lambda: counter(r) >= 1, timeout, procs, "the worker to run a first task")
    r.delete(_keys.DONE_KEY)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ----------------------------------------------------------------------------------------
# Workloads (each returns a JSON-able dict; "value" is the headline figure)
# ----------------------------------------------------------------------------------------


def wl_enqueue(adapter: Adapter, r: redis.Redis, n: int, **_) -> dict:
    """Workload 1: n one-at-a-time enqueues of the no-op task, no worker running."""
    for _ in range(50):  # warm-up: connections, lazy imports, script loading
        adapter.enqueue_noop()
    t0 = time.perf_counter()
    for _ in range(n):
        adapter.enqueue_noop()
    elapsed = time.perf_counter() - t0
    return {"value": n / elapsed, "unit": "calls/s", "n": n, "elapsed_s": elapsed}


def wl_bulk(adapter: Adapter, r: redis.Redis, n: int, **_) -> dict:
    """Workload 2: n no-op messages through the library's fastest bulk API."""
    adapter.enqueue_noop_bulk(100)  # warm-up
    t0 = time.perf_counter()
    adapter.enqueue_noop_bulk(n)
    elapsed = time.perf_counter() - t0
    return {
        "value": n / elapsed,
        "unit": "msgs/s",
        "n": n,
        "elapsed_s": elapsed,
        "api": adapter.bulk_api,
    }


def _drain(
    adapter: Adapter,
    r: redis.Redis,
    config: WorkerConfig,
    n: int,
    stall_timeout: float,
    measure_rss: bool = False,
    abandon_below: float = 0.0,
) -> dict:
    """Start ``config`` on a pre-filled queue of n no-ops; time first -> n-th completion.

    The clock starts at the first poll that sees the counter >= 1 (value c0 then) and stops
    at the first poll that sees it >= n, so worker start-up is excluded; the rate is
    (n - c0) / elapsed, i.e. (n - 1) / elapsed scaled by what had already completed.

    With ``abandon_below``, a setting whose running rate is still below that figure after
    ABANDON_AFTER seconds is stopped early (it cannot be the best one); the result then
    has ``"abandoned": True`` and the partial rate.
    """
    procs = adapter.start_workers(config)
    try:
        t_first = c_first = None
        last_change, last_value = time.monotonic(), 0
        while True:
            c = counter(r)
            now = time.perf_counter()
            if c >= 1 and t_first is None:
                t_first, c_first = now, c
            if c >= n:
                break
            if t_first is not None and abandon_below and now - t_first > ABANDON_AFTER:
                rate = (c - c_first) / (now - t_first)
                if rate < abandon_below:
                    return {"value": rate, "config": config.label, "abandoned": True}
            if c != last_value:
                last_change, last_value = time.monotonic(), c
            elif time.monotonic() - last_change > stall_timeout:
                raise TimeoutError(f"no progress for {stall_timeout:.0f}s at {c}/{n} done")
            check_alive(procs)
            time.sleep(POLL_INTERVAL)
        elapsed = now - t_first
        out = {
            "value": (n - c_first) / elapsed if elapsed > 0 else float("nan"),
            "unit": "tasks/s",
            "config": config.label,
            "n": n,
            "elapsed_s": elapsed,
            "counted_from": c_first,
        }
        if measure_rss:
            pids = group_pids({p.pid for p in procs})
            out["rss_mb"] = rss_mb(pids)
            out["rss_processes"] = len(pids)
            out["rss_mb_each"] = [round(rss_mb([pid]), 1) for pid in sorted(pids)]
        return out
    finally:
        stop_workers(procs)


def wl_drain_solo(
    adapter: Adapter, r: redis.Redis, n: int, stall_timeout: float = 30.0, **_
) -> dict:
    """Workload 3a + 7: drain n pre-enqueued no-ops with one single-threaded worker;
    also the worker's RSS (sum over its process group) right after the drain."""
    adapter.enqueue_noop_bulk(n)
    return _drain(adapter, r, adapter.solo_worker(), n, stall_timeout, measure_rss=True)


def wl_drain_multi(
    adapter: Adapter, r: redis.Redis, n: int, max_configs: int = 0, stall_timeout: float = 30.0, **_
) -> dict:
    """Workload 3b: the same drain for each 2-core setting; the best one is the figure.

    The backlog is enqueued once, DUMPed, and RESTOREd byte-identically before each
    setting, so every setting drains exactly the same messages.
    """
    adapter.enqueue_noop_bulk(n)
    snap = snapshot_db(r)
    configs = adapter.multi_workers()
    if max_configs:
        configs = configs[:max_configs]
    tried, ok = {}, {}
    for config in configs:
        restore_db(r, snap)
        floor = ABANDON_FRACTION * max(ok.values(), default=0.0)
        try:
            res = _drain(adapter, r, config, n, stall_timeout, abandon_below=floor)
        except Exception as exc:  # one bad setting must not hide the others
            tried[config.label] = f"error: {type(exc).__name__}: {exc}"[:200]
            continue
        if res.get("abandoned"):
            tried[config.label] = f"abandoned at {res['value']:.0f}/s (< {floor:.0f}/s)"
        else:
            tried[config.label] = ok[config.label] = res["value"]
    if not ok:
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in tried.items()))
    best = max(ok, key=ok.get)
    return {"value": ok[best], "unit": "tasks/s", "config": best, "n": n, "tried": tried}


def paced(n: int, spacing: float = LATENCY_SPACING) -> Iterator[int]:
    """Yield 0 .. n-1, the i-th at ``i * spacing`` seconds after the first (the pacing of the
    latency workloads: it measures wake-ups of an idle process, so sends must not bunch)."""
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i * spacing - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing, not synchronisation
        yield i


def wl_latency(adapter: Adapter, r: redis.Redis, n: int, **_) -> dict:
    """Workload 4: n latency tasks sent 20 ms apart to an idle solo worker; the task
    records its start time minus the send time (taken just before the enqueue call)."""
    procs = adapter.start_workers(adapter.solo_worker())
    try:
        wait_ready(adapter, r, procs)
        for phase_n in (min(20, n), n):  # warm-up round, then the measured one
            r.delete(_keys.LAT_KEY)
            for _ in paced(phase_n):
                adapter.enqueue_latency(time.time())
            wait_for(lambda k=phase_n: r.llen(_keys.LAT_KEY) >= k, 30, procs, "all latency tasks")
        lat = sorted(float(v) * 1000 for v in r.lrange(_keys.LAT_KEY, 0, -1))
    finally:
        stop_workers(procs)
    return {**latency_summary(lat), "config": "solo"}


def latency_summary(lat: list[float]) -> dict:
    """p50, p99 and max of sorted latencies in ms (the latency rows and their floor)."""
    return {
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1],
        "unit": "ms",
        "n": len(lat),
    }


def wl_roundtrip(adapter: Adapter, r: redis.Redis, n: int, **_) -> dict:
    """Workload 5: n sequential enqueue(echo(i)) -> blocking get, solo worker."""
    procs = adapter.start_workers(adapter.solo_worker())
    try:
        wait_ready(adapter, r, procs)
        for i in range(20):  # warm-up
            adapter.roundtrip(i, ROUNDTRIP_TIMEOUT)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            got = adapter.roundtrip(i, ROUNDTRIP_TIMEOUT)
            times.append((time.perf_counter() - t0) * 1000)
            if got != i:
                raise RuntimeError(f"round trip returned {got!r}, expected {i!r}")
    finally:
        stop_workers(procs)
    times.sort()
    return {
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": times[-1],
        "unit": "ms",
        "n": n,
        "config": "solo",
    }


def wl_progress(adapter: Adapter, r: redis.Redis, n: int, **_) -> dict:
    """Workload 6: one task calls the progress API n times and times itself."""
    if not adapter.supports_progress:
        raise NotSupported("no progress/state API")
    procs = adapter.start_workers(adapter.solo_worker())
    try:
        wait_ready(adapter, r, procs)
        for phase_n in (min(200, n), n):  # warm-up round, then the measured one
            r.delete(_keys.PROGRESS_KEY)
            adapter.enqueue_progress(phase_n)
            wait_for(lambda: r.exists(_keys.PROGRESS_KEY), 300, procs, "the progress task")
        elapsed = float(r.get(_keys.PROGRESS_KEY))
    finally:
        stop_workers(procs)
    return {"value": n / elapsed, "unit": "updates/s", "n": n, "elapsed_s": elapsed}


#: The mixed workload: per group, one long task and this many short ones, their lengths.
MIXED_SHORTS_PER_LONG = 20
MIXED_LONG_S = 2.0
MIXED_SHORT_S = 0.01
MIXED_CONSUMERS = 4


def wl_mixed(adapter: Adapter, r: redis.Redis, n: int = 2, **_) -> dict:
    """Workload 8: n groups of one 2 s task and 20 short ones (10 ms), each group's long task
    first, queued before four consumers start; the figure is the time from the first task's
    start to the end of the last short one. A short task that waits behind a long one while a
    consumer is idle costs its 2 s here; the ideal is the short tasks' work spread over the
    consumers the long ones leave free."""
    for _ in range(n):
        adapter.enqueue_mixed(MIXED_LONG_S, "long")
        for _ in range(MIXED_SHORTS_PER_LONG):
            adapter.enqueue_mixed(MIXED_SHORT_S, "short")
    shorts = n * MIXED_SHORTS_PER_LONG
    procs = adapter.start_workers(adapter.mixed_workers())
    try:
        wait_for(lambda: r.llen(f"{_keys.MIXED_KEY}:short") >= shorts, 60, procs,
                 "every short task")
        first = min(float(v) for v in r.lrange(f"{_keys.MIXED_KEY}:start", 0, -1))
        last = max(float(v) for v in r.lrange(f"{_keys.MIXED_KEY}:short", 0, -1))
    finally:
        stop_workers(procs)
    free = max(1, MIXED_CONSUMERS - n)
    return {"value": last - first, "unit": "s", "config": adapter.mixed_workers().label,
            "ideal_s": shorts * MIXED_SHORT_S / free, "n_long": n, "n_short": shorts}


#: How long a canvas run may take before ``collect`` gives up (below run.py's time limits).
CANVAS_TIMEOUT = 90.0


def multi_config(adapter: Adapter, label: str = "") -> WorkerConfig:
    """The 2-core setting called ``label`` (run.py passes the best of the drain_multi row of
    the same run), else the adapter's first one."""
    configs = adapter.multi_workers()
    return next((c for c in configs if c.label == label), configs[0])


def _canvas_runs(
    adapter: Adapter,
    r: redis.Redis,
    build: Callable[[int], Canvas],
    check: Callable[[int, Any], None],
    config: WorkerConfig,
    n: int,
    warm_n: int,
    reps: int,
    timeout: float,
) -> dict:
    """Start ``config``, make sure it ran a task, send one warm-up canvas of ``warm_n``, then
    time ``reps`` canvases of n one after another (each built before its clock starts, with
    the workers idle); ``check(n, value)`` raises on a wrong answer. Workers are stopped at
    the end whatever happens. Returns the median time and every run's figures."""
    warm = build(warm_n)  # NotSupported surfaces here, before any worker starts
    procs = adapter.start_workers(config)
    try:
        wait_ready(adapter, r, procs)
        r.delete(_keys.DONE_KEY)
        check(warm_n, warm.collect(warm.send(), timeout))
        totals, sends = [], []
        for _ in range(reps):
            canvas = build(n)
            r.delete(_keys.DONE_KEY)
            t0 = time.perf_counter()
            handle = canvas.send()
            t_sent = time.perf_counter()
            value = canvas.collect(handle, timeout)
            t_end = time.perf_counter()
            check(n, value)
            check_alive(procs)
            totals.append(t_end - t0)
            sends.append(t_sent - t0)
    finally:
        stop_workers(procs)
    median = statistics.median(totals)
    return {
        "elapsed_s": median,
        "send_s": statistics.median(sends),
        "runs_s": [round(t, 4) for t in totals],
        "n": n,
        "reps": reps,
        "config": config.label,
    }


def wl_group(
    adapter: Adapter, r: redis.Redis, n: int, config: str = "", reps: int = 1,
    timeout: float = CANVAS_TIMEOUT, **_,
) -> dict:
    """Workload 9: a group of n no-ops, from sending it to having its n results, on the
    2-core setting of the drain_multi row, already warm; tasks/s = n / elapsed."""

    def check(k: int, values: Any) -> None:
        values = list(values)
        if len(values) != k:
            raise RuntimeError(f"group returned {len(values)} results, expected {k}")
        done = counter(r)
        if done != k:
            raise RuntimeError(f"group ran {done} no-ops, expected {k}")

    out = _canvas_runs(adapter, r, adapter.group_canvas, check, multi_config(adapter, config),
                       n, max(10, min(500, n // 10)), reps, timeout)
    return {"value": n / out["elapsed_s"], "unit": "tasks/s", **out}


def wl_chord(
    adapter: Adapter, r: redis.Redis, n: int, config: str = "", reps: int = 3,
    timeout: float = CANVAS_TIMEOUT, **_,
) -> dict:
    """Workload 10: a chord of n ``echo(i)`` with a ``tsum`` body, from sending it to the
    body's result (checked: the sum of 0..n-1), on the drain_multi row's 2-core setting;
    the median of ``reps`` runs; tasks/s = n header tasks / elapsed."""

    def check(k: int, value: Any) -> None:
        if value != k * (k - 1) // 2:
            raise RuntimeError(f"chord body returned {value!r}, expected {k * (k - 1) // 2}")

    out = _canvas_runs(adapter, r, adapter.chord_canvas, check, multi_config(adapter, config),
                       n, max(10, n // 10), reps, timeout)
    return {"value": n / out["elapsed_s"], "unit": "tasks/s", **out}


def wl_chain(
    adapter: Adapter, r: redis.Redis, n: int, reps: int = 5, timeout: float = CANVAS_TIMEOUT,
    **_,
) -> dict:
    """Workload 11: a chain of n ``add1`` steps from 0 (checked: it ends at n), from sending
    it to the last step's result, solo worker, warm; the median of ``reps`` runs, and the
    time per step (one step = the worker runs a task and sends the next one)."""

    def check(k: int, value: Any) -> None:
        if value != k:
            raise RuntimeError(f"chain ended at {value!r}, expected {k}")

    out = _canvas_runs(adapter, r, adapter.chain_canvas, check, adapter.solo_worker(),
                       n, min(10, n), reps, timeout)
    ms = out["elapsed_s"] / n * 1000
    return {"value": ms, "ms_per_step": ms, "unit": "ms/step", **out}


def wl_info(adapter: Adapter, r: redis.Redis, **_) -> dict:
    """Not a workload: versions and the settings the adapter would use."""
    return {
        "versions": adapter.versions(),
        "bulk_api": adapter.bulk_api,
        "solo": adapter.solo_worker().label,
        "multi": [c.label for c in adapter.multi_workers()],
        "supports_progress": adapter.supports_progress,
    }


WORKLOADS = {
    "info": wl_info,
    "enqueue": wl_enqueue,
    "bulk": wl_bulk,
    "drain_solo": wl_drain_solo,
    "drain_multi": wl_drain_multi,
    "latency": wl_latency,
    "roundtrip": wl_roundtrip,
    "progress": wl_progress,
    "mixed": wl_mixed,
    "group_10k": wl_group,
    "chord_1k": wl_chord,
    "chain_100": wl_chain,
}


def load_adapter(module_name: str, redis_url: str) -> Adapter:
    module = importlib.import_module(module_name)
    return module.ADAPTER(redis_url)


def run_one(module_name: str, redis_url: str, workload: str, params: dict) -> dict:
    if urlparse(redis_url).port == 6379:
        raise SystemExit("refusing to benchmark against port 6379 (the system Redis)")
    os.environ["BENCH_REDIS_URL"] = redis_url
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    try:
        adapter = load_adapter(module_name, redis_url)
        adapter.setup()
        result = WORKLOADS[workload](adapter, r, **params)
        return {"ok": True, "result": result}
    except NotSupported as exc:
        return {"ok": False, "na": True, "error": str(exc)}
    except Exception as exc:  # reported, never fatal to the run
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        r.flushdb()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run ONE workload of ONE adapter (see run.py).")
    ap.add_argument("--adapter", required=True, help="module exposing ADAPTER")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    ap.add_argument("--params", default="{}", help="JSON keyword arguments for the workload")
    args = ap.parse_args(argv)
    out = run_one(args.adapter, args.redis_url, args.workload, json.loads(args.params))
    sys.stdout.write(RESULT_PREFIX + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    # Run the copy of this module the adapters import (bench.harness), not __main__: else an
    # adapter's NotSupported (bench.harness.NotSupported) is not the class run_one catches,
    # and an "n/a" cell would read "error: NotSupported: ...".
    from bench import harness

    harness.main()
