"""The events stream and the per-task-name counters, written by real worker processes and read
back (``EventStream``, ``flask jobs events``)."""

from __future__ import annotations

import json

import pytest

from flask_jobs.cli import jobs_cli
from flask_jobs.events import EventStream
from tests.apps import basic
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def events_of(app, task_id=None):
    state = app.extensions["jobs"]
    _, events = EventStream(state.client, state.keys).read("0-0")
    return [e for e in events if task_id is None or e.uuid == task_id]


def test_task_and_worker_events_in_order(worker_process, app, jobs_redis):
    worker = worker_process("-P", "solo", "-n", "events@test")
    ok, bad = basic.add.delay(2, 2), basic.fail.delay("boom")
    retried = basic.retry_then_succeed.delay(2)
    assert ok.get(timeout=10) == 4 and retried.get(timeout=10) is not None
    bad.get(timeout=10, propagate=False)
    wait_for(lambda: [e.type for e in events_of(app, ok.id)][-1:] == ["task-succeeded"], 10)
    # one task's life, in order, with the runtime at the end
    life = events_of(app, ok.id)
    assert [e.type for e in life] == ["task-received", "task-started", "task-succeeded"]
    assert {e.name for e in life} == {"tests.apps.basic.add"}
    assert life[-1].runtime is not None and life[-1].runtime >= 0
    assert life[0].timestamp <= life[-1].timestamp
    assert "task-failed" in [e.type for e in events_of(app, bad.id)]
    assert "task-retried" in [e.type for e in events_of(app, retried.id)]
    # the worker's own events
    assert worker.stop() == 0
    worker_types = [e.type for e in events_of(app) if not e.uuid]
    assert "worker-heartbeat" in worker_types
    assert [t for t in worker_types if t != "worker-heartbeat"] == ["worker-online",
                                                                     "worker-offline"]
    # and the counters the metrics read
    counts = {k.decode(): int(v) for k, v in jobs_redis.hgetall(
        "jobs:m:tests.apps.basic.add").items()}
    assert counts["succeeded"] == 1 and counts["rt"] >= 0
    assert sum(v for k, v in counts.items() if k.startswith("b")) == 1
    assert int(jobs_redis.hget("jobs:m:tests.apps.basic.fail", "failed")) == 1
    assert int(jobs_redis.hget("jobs:m:tests.apps.basic.retry_then_succeed", "retried")) >= 1


def test_revoked_and_expired_tasks_are_events_and_counted(app, jobs_redis, worker_process):
    # (a queue of its own: no other test's worker can take these)
    gate = basic.wait_gate.apply_async(("events-gate",), queue="evq")  # (keeps it busy)
    worker_process("-P", "solo", "-Q", "evq")  # (it turns events on in Redis as it starts)
    wait_for(lambda: gate.state == "STARTED", 10)
    gone = basic.add.apply_async((1, 1), countdown=60, queue="evq")
    gone.revoke()
    old = basic.add.apply_async((1, 2), expires=0.001, queue="evq")
    jobs_redis.rpush("events-gate", 1)
    wait_for(lambda: old.state == "REVOKED", 10)
    wait_for(lambda: "task-expired" in [e.type for e in events_of(app, old.id)], 10)
    assert [e.type for e in events_of(app, gone.id)] == ["task-revoked"]
    counts = jobs_redis.hgetall("jobs:m:tests.apps.basic.add")
    assert int(counts[b"revoked"]) == 1 and int(counts[b"expired"]) == 1


def test_events_off_leaves_no_stream_but_counts(worker_process, app, jobs_redis):
    worker_process("-P", "solo", env={"JOBS_EVENTS": "false"})
    assert basic.add.delay(1, 1).get(timeout=10) == 2
    assert jobs_redis.exists("jobs:events") == 0
    assert int(jobs_redis.hget("jobs:m:tests.apps.basic.add", "succeeded")) == 1


def test_the_stream_is_capped(worker_process, app, jobs_redis):
    worker_process("-P", "solo", "--prefetch", "1", env={"JOBS_EVENTS_MAXLEN": "5"})
    results = [basic.add.delay(i, i) for i in range(300)]
    assert [r.get(timeout=30) for r in results][-1] == 598
    # (approximate trimming keeps whole nodes of 100 entries: bounded, not exact)
    assert jobs_redis.xlen("jobs:events") <= 5 + 100


def test_the_events_command_filters_and_prints_json(worker_process, app, jobs_redis):
    worker_process("-P", "solo")
    ok, bad = basic.add.delay(2, 2), basic.fail.delay("x")
    ok.get(timeout=10)
    bad.get(timeout=10, propagate=False)
    wait_for(lambda: "task-failed" in [e.type for e in events_of(app, bad.id)], 10)
    runner = app.test_cli_runner()
    out = runner.invoke(jobs_cli, ["events", "--since-start", "--type", "task-f*", "--json",
                                   "--timeout", "0.5"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [(r["type"], r["uuid"]) for r in rows] == [("task-failed", bad.id)]
    assert rows[0]["name"] == "tests.apps.basic.fail" and rows[0]["runtime"] >= 0
    lines = runner.invoke(jobs_cli, ["events", "--since-start", "-t", "tests.apps.basic.add",
                                     "-n", "3"]).output.splitlines()
    assert [line.split()[2] for line in lines] == ["task-received", "task-started",
                                                    "task-succeeded"]
    assert f"tests.apps.basic.add[{ok.id}]" in lines[-1] and "runtime=" in lines[-1]
