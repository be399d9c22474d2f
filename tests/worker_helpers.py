"""Helpers shared by the tests that run real worker processes (reliability, shutdown, pools...).

They read what the test tasks of :mod:`tests.apps.basic` recorded in Redis, and the task records
themselves, so a test can check what happened without trusting the engine's own API.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import redis


def starts(r: redis.Redis, key: str = "effects") -> list[tuple[str, int, int]]:
    """``(task id, attempt, pid)`` of every start that ``sleep_and_record`` recorded, in order."""
    return [tuple(json.loads(x)) for x in r.lrange(f"{key}:start", 0, -1)]  # type: ignore[misc]


def ends(r: redis.Redis, key: str = "effects") -> list[str]:
    """Ids of every run of ``sleep_and_record`` that reached its end, in order."""
    return [x.decode() for x in r.lrange(f"{key}:end", 0, -1)]


def start_counts(r: redis.Redis, key: str = "effects") -> Counter[str]:
    """How many times each task id started."""
    return Counter(s[0] for s in starts(r, key))


def record(r: redis.Redis, task_id: str, prefix: str = "jobs") -> dict[str, str]:
    """The task record hash, decoded (``body`` and ``result`` as text)."""
    return {k.decode(): v.decode(errors="replace")
            for k, v in r.hgetall(f"{prefix}:t:{task_id}").items()}


def field(r: redis.Redis, task_id: str, name: str, prefix: str = "jobs") -> str | None:
    """One field of a task record."""
    value = r.hget(f"{prefix}:t:{task_id}", name)
    return None if value is None else value.decode()


def redis_ms(r: redis.Redis) -> int:
    """Now, on the Redis server's clock, in milliseconds (the clock the engine uses)."""
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (prefork pool children)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(x) for x in out.split())


def dead_letters(r: redis.Redis, prefix: str = "jobs") -> list[dict[str, Any]]:
    """Every entry of the dead-letter list, newest first."""
    return [json.loads(x) for x in r.lrange(f"{prefix}:dlq", 0, -1)]


def stats(r: redis.Redis, prefix: str = "jobs") -> dict[str, int]:
    """The engine's counters hash."""
    return {k.decode(): int(v) for k, v in r.hgetall(f"{prefix}:stats").items()}


def active_entries(r: redis.Redis, prefix: str = "jobs") -> dict[str, dict[str, str]]:
    """Every worker's active hash: ``{key: {task id: attempt}}``."""
    out = {}
    for key in r.scan_iter(f"{prefix}:w:*:active"):
        out[key.decode()] = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
    return out


def queued_ids(r: redis.Redis, queue: str = "default", prefix: str = "jobs") -> list[str]:
    """Ids in the ready lists of ``queue`` (all priorities)."""
    ids: list[str] = []
    for p in range(9, -1, -1):
        ids.extend(x.decode() for x in r.lrange(f"{prefix}:q:{queue}:{p}", 0, -1))
    return ids


def terminal(r: redis.Redis, ids: list[str]) -> bool:
    """Whether every task in ``ids`` reached a final state."""
    pipe = r.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(f"jobs:t:{task_id}", "state")
    return all(s in (b"SUCCESS", b"FAILURE", b"REVOKED") for s in pipe.execute())


@contextlib.contextmanager
def worker_on(url: str, *args: str, env: dict[str, str] | None = None,
              ready: bool = True) -> Iterator[Any]:
    """A real worker process on another Redis than the session's; killed on exit."""
    from tests.conftest import WorkerProcess

    w = WorkerProcess(url, *args, env=env)
    try:
        yield w.wait_ready() if ready else w
    finally:
        if w.proc.poll() is None:
            w.kill()
        w.log.close()


@contextlib.contextmanager
def app_on(url: str, **config: Any) -> Iterator[Any]:
    """The test app pointed at ``url``, with its app context pushed."""
    from tests.apps import basic

    app = basic.create_app({"JOBS_BROKER_URL": url, "JOBS_ORPHAN_TIMEOUT": 1.0, **config})
    with app.app_context():
        yield app


def claim_records(r: redis.Redis, worker: str, prefix: str = "jobs") -> dict[str, Any]:
    """A worker's claim records (``w:<worker>:claims``), by consumer slot: ``[seq, id,
    attempt, ...]`` of its last claim; a ``<slot>:h`` field holds the id handed to it since."""
    raw = r.hgetall(f"{prefix}:w:{worker}:claims")
    return {k.decode(): v.decode() if k.endswith(b":h") else json.loads(v)
            for k, v in raw.items()}
