"""A chord survives its header's worker being killed: the body runs exactly once, with the
right list. Real worker processes, SIGKILL, the reaper (JOBS_ORPHAN_TIMEOUT 1 s)."""

from __future__ import annotations

import json

from flask_jobs import chord
from tests.apps.basic import body_record, gated_member
from tests.conftest import wait_for

N = 12


def test_chord_whose_header_worker_is_killed_runs_its_body_once(app, jobs_redis,
                                                                  worker_process):
    # Given a chord of N header tasks that wait on a gate, and a worker running 4 of them
    # (with more prefetched) when it is SIGKILLed, after 3 of the header have finished
    first = worker_process("-P", "threads", "-c", "4", "--prefetch", "4")
    result = chord(gated_member.s(i, "gate") for i in range(N))(body_record.s())
    jobs_redis.rpush("gate", 1, 1, 1)
    wait_for(lambda: jobs_redis.hget(f"jobs:gc:{result.parent.id}", "done") == b"3", 20,
             "three header tasks to finish")
    wait_for(lambda: jobs_redis.llen("member-runs") >= 7, 20, "four more to start")
    first.kill()
    # When another worker takes over (the reaper gives the dead worker's tasks back) and
    # every header task can finish
    worker_process("-P", "threads", "-c", "4")
    jobs_redis.rpush("gate", *([1] * (2 * N)))
    # Then the body runs once, with every header result in order
    assert result.get(timeout=30) == sum(range(N))
    assert [json.loads(v) for v in jobs_redis.lrange("body-runs", 0, -1)] == [list(range(N))]
    counters = jobs_redis.hgetall(f"jobs:gc:{result.parent.id}")
    assert counters[b"done"] == counters[b"total"] == str(N).encode()
    assert counters[b"ok"] == str(N).encode()
    # (some header tasks did run twice: the kill interrupted them)
    runs = [json.loads(v) for v in jobs_redis.lrange("member-runs", 0, -1)]
    assert any(attempt > 1 for _, attempt in runs), runs
    assert sorted({i for i, _ in runs}) == list(range(N))
