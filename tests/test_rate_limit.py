"""``rate_limit``: at most N runs per second/minute/hour of a task name, over all workers."""

from __future__ import annotations

import pytest

from flask_jobs import Jobs
from flask_jobs.task import parse_rate_limit
from tests.apps import basic
from tests.conftest import wait_for


@pytest.mark.parametrize("value, interval", [
    ("10/s", 100.0), ("120/m", 500.0), ("2/h", 1_800_000.0), (4, 250.0), ("0.5", 2000.0),
    (None, None), (0, None), ("0/s", None),
])
def test_parse_rate_limit(value, interval):
    assert parse_rate_limit(value) == interval


@pytest.mark.parametrize("value", ["ten/s", "10/d", "-1/s", "", object()])
def test_bad_rate_limit_fails_at_definition(value):
    jobs = Jobs()
    with pytest.raises(ValueError, match="rate_limit"):
        @jobs.task(rate_limit=value)
        def limited():
            pass


def _starts(jobs_redis) -> list[int]:
    return [int(x) for x in jobs_redis.lrange("rate:starts", 0, -1)]


def test_rate_limit_spaces_runs_over_all_workers(app, jobs_redis, worker_process):
    # Given two workers (three consumers in all) serving a task limited to 10 runs per second
    worker_process("-P", "solo")
    worker_process("-P", "threads", "-c", "2")
    wait_for(lambda: jobs_redis.hget("jobs:rates", basic.rate_limited.name), 10,
             "the workers to publish the rate limit")
    # When 12 of them are sent at once (and, the consumers being idle, none may be handed over
    # at enqueue: only a claim applies the limit)
    results = [basic.rate_limited.delay(i) for i in range(12)]
    wait_for(lambda: all(r.ready() for r in results), 20, "all of them to run")
    assert [r.get() for r in results] == list(range(12))
    # Expect their starts (Redis clock) about 100 ms apart, whichever worker ran them: 12 runs
    # take over a second, not the few ms three idle consumers need without a limit. (Slots
    # are exactly 100 ms apart; a start is recorded a little into the run, so the bounds leave
    # room for a loaded machine.)
    starts = sorted(_starts(jobs_redis))
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 50, gaps
    assert starts[-1] - starts[0] >= 1000, gaps
    # ... and an unlimited task is not slowed down meanwhile
    assert basic.add.delay(1, 2).get(timeout=5) == 3
