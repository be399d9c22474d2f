"""Floors: what this machine does with **no job queue at all**, against the benchmark's Redis.

    python -m bench.floors --redis-url redis://127.0.0.1:PORT/0 [--quick] [--parallel 4]

prints the floors as JSON. ``bench/run.py`` measures them once per run and prints them under
the table next to flask-jobs' figures, so a reader can tell how far a figure is from what the
hardware allows rather than only from the other libraries:

``drain_solo``
    one Python process calling the benchmark's no-op task body (``bench.anchors._common.noop``:
    one redis-py ``INCR bench:done``) back to back: the drain rate of a solo worker whose
    dequeue, dispatch and bookkeeping cost nothing.
``drain_parallel``
    the same in ``parallel`` processes at once (4 by default, flask-jobs' best 2-core
    setting): the aggregate INCR rate, an upper bound of any drain where each task does
    one INCR and the workers share the cores with ``redis-server``.
``latency``
    a process blocked in redis-py ``BLPOP``; ``RPUSH key repr(time.time())`` every 20 ms,
    the woken process runs the latency task body (``_common.latency``): the enqueue-to-start
    latency of a "queue" that is one Redis list and nothing else.
``rss``
    ``VmRSS`` of fresh interpreters after ``import redis`` / ``import flask, redis`` (and of
    a bare interpreter): the memory any Flask worker on redis-py starts from.

Every child is a fresh ``sys.executable`` subprocess. Children are synchronised through
Redis (``BLPOP`` on per-run keys) or a pipe, never by sleeping; they carry
``BENCH_REDIS_URL`` (which ``_common`` needs) and whatever ``extra_env`` the caller passes
(``bench/run.py`` passes its ``BENCH_RUN_ID`` so its sweep catches strays).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import redis

from bench.anchors import _keys
from bench.harness import latency_summary, paced, rss_mb

REPO_ROOT = Path(__file__).resolve().parent.parent

# n per floor (full / quick): the same totals as the drain and latency workloads in run.py,
# so a floor and the figure it is set against cover the same amount of work.
DRAIN_N = {False: 20_000, True: 2_000}
LATENCY_N = {False: 300, True: 50}
PARALLEL = 4  # flask-jobs' best 2-core setting (-P prefork -c 4)
WARMUP_CALLS = 200  # per INCR child, before "ready": connection, hiredis, first-call costs
# Limits for one blocking wait on a child; generous because the machine may be busy.
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 120.0
# The interpreters measured for the RSS floor: label -> code run before the measurement.
RSS_IMPORTS = {"python": "pass", "redis": "import redis", "flask_redis": "import flask, redis"}


class FloorError(RuntimeError):
    """A floor could not be measured (a child died or did not answer in time)."""


def _child_env(redis_url: str, extra_env: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra_env or {})
    return env


def _start_child(code: str, redis_url: str, extra_env: dict[str, str] | None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_child_env(redis_url, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass


def _died(procs: list[subprocess.Popen]) -> str | None:
    """A description of the first child that exited, or None while all still run."""
    for p in procs:
        if p.poll() is not None:
            err = p.stderr.read() if p.stderr else ""
            tail = " | ".join(err.strip().splitlines()[-2:]) or "no output"
            return f"child exited with code {p.returncode}: {tail}"[:300]
    return None


def _collect(
    r: redis.Redis, key: str, count: int, timeout: float, procs: list[subprocess.Popen]
) -> list[bytes]:
    """BLPOP ``count`` values from ``key``; fail fast if a child dies, else after ``timeout``.

    BLPOP waits in short slices only to notice a crashed child between them: the wait
    itself ends as soon as a value arrives.
    """
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        got = r.blpop([key], timeout=0.5)
        if got is not None:
            out.append(got[1])
            continue
        # a child that exited 0 pushed its value before exiting, so only a crash is an error
        died = _died([p for p in procs if p.poll() not in (None, 0)])
        if died:
            raise FloorError(died)
        if time.monotonic() > deadline:
            raise FloorError(f"timed out after {timeout:.0f}s waiting for {key} ({len(out)}/{count})")
    return out


def _forget(r: redis.Redis, *keys: str) -> None:
    """Delete our keys; a failure here must not hide the error that led to the cleanup."""
    try:
        r.delete(*keys)
    except redis.RedisError:
        pass


def _check_url(redis_url: str) -> None:
    url = urlparse(redis_url)
    if (url.port or (6379 if url.scheme.startswith("redis") else None)) == 6379:
        raise SystemExit("refusing to measure against port 6379 (the system Redis)")


# ----------------------------------------------------------------------------------------
# Children (run as ``python -c "from bench.floors import ...; ...(...)"``)
# ----------------------------------------------------------------------------------------


def _incr_child(redis_url: str, prefix: str, n: int) -> None:
    """Run the no-op task body n times once told to go; report start/end wall times."""
    from bench.anchors import _common

    noop = _common.noop
    ctl = redis.Redis.from_url(redis_url)
    for _ in range(WARMUP_CALLS):
        noop()
    ctl.rpush(f"{prefix}:ready", os.getpid())
    ctl.blpop([f"{prefix}:go"])
    # time.time(), not perf_counter(): the parent compares these stamps across processes
    t0 = time.time()
    for _ in range(n):
        noop()
    t1 = time.time()
    ctl.rpush(f"{prefix}:result", json.dumps({"n": n, "t0": t0, "t1": t1}))


def _wake_child(redis_url: str, prefix: str) -> None:
    """Block in BLPOP; run the latency task body on each value until told to stop.

    ``sync`` is answered on ``<prefix>:synced``: the list is consumed in order, so by then
    every earlier value's result is stored (lets the parent wait without polling).
    """
    from bench.anchors import _common

    latency = _common.latency
    broker = redis.Redis.from_url(redis_url)  # separate from _common's client, as in a worker
    broker.rpush(f"{prefix}:ready", os.getpid())
    key = f"{prefix}:queue"
    while True:
        _, value = broker.blpop([key])
        if value == b"stop":
            return
        if value == b"sync":
            broker.rpush(f"{prefix}:synced", 1)
            continue
        latency(float(value))


# ----------------------------------------------------------------------------------------
# Floors
# ----------------------------------------------------------------------------------------


def incr_floor(redis_url: str, n: int, processes: int = 1, extra_env: dict[str, str] | None = None) -> dict:
    """Aggregate rate of ``processes`` processes running the no-op task body n times in all.

    Each child warms up, signals ready and blocks on a "go" token, so all start together
    and start-up is excluded. The rate is the total over the span from the earliest start
    to the latest end (like the drain workloads: first to last completion).
    """
    r = redis.Redis.from_url(redis_url)
    prefix = f"bench:floors:{uuid.uuid4().hex}"
    each = max(1, n // processes)
    code = f"from bench.floors import _incr_child; _incr_child({redis_url!r}, {prefix!r}, {each})"
    procs = [_start_child(code, redis_url, extra_env) for _ in range(processes)]
    try:
        _collect(r, f"{prefix}:ready", processes, READY_TIMEOUT, procs)
        r.rpush(f"{prefix}:go", *[1] * processes)
        reports = [json.loads(v) for v in _collect(r, f"{prefix}:result", processes, RUN_TIMEOUT, procs)]
    finally:
        _kill(procs)
        _forget(r, f"{prefix}:ready", f"{prefix}:go", f"{prefix}:result", _keys.DONE_KEY)
    span = max(x["t1"] for x in reports) - min(x["t0"] for x in reports)
    total = sum(x["n"] for x in reports)
    return {
        "value": total / span,
        "unit": "calls/s",
        "processes": processes,
        "n": total,
        "elapsed_s": span,
        "per_process": [round(x["n"] / (x["t1"] - x["t0"])) for x in reports],
    }


def wake_floor(redis_url: str, n: int, extra_env: dict[str, str] | None = None) -> dict:
    """Latency from ``RPUSH`` to a BLPOP-blocked process running the latency task body.

    Paced and measured exactly like ``harness.wl_latency``: a 20-message warm-up round,
    then n messages ``LATENCY_SPACING`` apart; p50/p99 by the same nearest-rank percentile.
    """
    r = redis.Redis.from_url(redis_url)
    prefix = f"bench:floors:{uuid.uuid4().hex}"
    key = f"{prefix}:queue"
    code = f"from bench.floors import _wake_child; _wake_child({redis_url!r}, {prefix!r})"
    procs = [_start_child(code, redis_url, extra_env)]
    try:
        _collect(r, f"{prefix}:ready", 1, READY_TIMEOUT, procs)
        for phase_n in (min(20, n), n):  # warm-up round, then the measured one
            r.delete(_keys.LAT_KEY)
            for _ in paced(phase_n):  # (as wl_latency sends)
                r.rpush(key, repr(time.time()))
            r.rpush(key, "sync")
            _collect(r, f"{prefix}:synced", 1, RUN_TIMEOUT, procs)
        lat = sorted(float(v) * 1000 for v in r.lrange(_keys.LAT_KEY, 0, -1))
        r.rpush(key, "stop")
        procs[0].wait(READY_TIMEOUT)
    finally:
        _kill(procs)
        _forget(r, f"{prefix}:ready", f"{prefix}:synced", key, _keys.LAT_KEY)
    return latency_summary(lat)


def import_rss_floor(extra_env: dict[str, str] | None = None) -> dict:
    """VmRSS (MB) of fresh interpreters right after the imports in ``RSS_IMPORTS``.

    The child imports, says so on stdout and blocks reading stdin; the parent reads its
    VmRSS with ``harness.rss_mb`` (what the RSS row uses for workers), then closes stdin.
    """
    env = dict(os.environ, **(extra_env or {}))
    out: dict[str, float | str] = {"unit": "MB"}
    for label, imports in RSS_IMPORTS.items():
        code = f"{imports}\nimport sys\nprint('ready', flush=True)\nsys.stdin.read()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline()  # blocks until the imports are done
            if line.strip() != "ready":
                raise FloorError(f"{imports!r}: {proc.stderr.read().strip()[-200:] or 'no output'}")
            out[label] = rss_mb([proc.pid])
            proc.stdin.close()
            proc.wait(READY_TIMEOUT)
        finally:
            _kill([proc])
    return out


def measure_floors(
    redis_url: str,
    quick: bool = False,
    parallel: int = PARALLEL,
    extra_env: dict[str, str] | None = None,
    log=None,
) -> dict:
    """Measure every floor; a floor that fails is ``{"error": "..."}``, the others still run.

    ``log(msg)`` (optional) is called after each floor with a one-line summary.
    """
    _check_url(redis_url)
    jobs = {
        "drain_solo": lambda: incr_floor(redis_url, DRAIN_N[quick], 1, extra_env),
        "drain_parallel": lambda: incr_floor(redis_url, DRAIN_N[quick], parallel, extra_env),
        "latency": lambda: wake_floor(redis_url, LATENCY_N[quick], extra_env),
        "rss": lambda: import_rss_floor(extra_env),
    }
    out: dict[str, dict] = {}
    for name, job in jobs.items():
        t0 = time.perf_counter()
        try:
            out[name] = job()
        except Exception as exc:  # one floor must not hide the others (nor break a run)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if log:
            log(f"floor {name:<14} {time.perf_counter() - t0:5.1f}s  {json.dumps(out[name])[:160]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure the no-job-queue floors; print them as JSON.")
    ap.add_argument("--redis-url", required=True, help="a throw-away Redis (never port 6379)")
    ap.add_argument("--quick", action="store_true", help="small N, as bench.run --quick")
    ap.add_argument("--parallel", type=int, default=PARALLEL, help="processes for drain_parallel")
    args = ap.parse_args(argv)
    floors = measure_floors(
        args.redis_url,
        quick=args.quick,
        parallel=args.parallel,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(json.dumps(floors, indent=2))
    return 1 if any("error" in v for v in floors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
