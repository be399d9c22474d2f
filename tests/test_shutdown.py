"""Graceful shutdown (DESIGN.md §3.9) of real worker processes, for the solo, threads and prefork
pools.

- SIGTERM: running tasks finish, prefetched ones are given back at once, exit code 0.
- A second SIGTERM: cold stop; running tasks are given back and run again elsewhere; exit 0.
- ``--shutdown-timeout``: a warm stop that lasts too long turns cold.

"Given back at once" is proven twice: right after the worker exits the tasks are already in their
queue (no active entry left), and a second worker whose orphan timeout is 30 s runs them within
a few seconds (it could not have reclaimed them from a dead heartbeat that fast).
"""

from __future__ import annotations

import signal

import pytest

from flask_jobs import group
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import (
    active_entries,
    ends,
    field,
    queued_ids,
    starts,
    terminal,
)

# Each pool with 1 or 2 consumers, each prefetching 3 tasks.
POOLS = [
    pytest.param(["-P", "solo", "--prefetch", "3"], 1, id="solo"),
    pytest.param(["-P", "threads", "-c", "2", "--prefetch", "3"], 2, id="threads"),
    pytest.param(["-P", "prefork", "-c", "2", "--prefetch", "3"], 2, id="prefork"),
]
PATIENT = {"JOBS_ORPHAN_TIMEOUT": "30"}


#: Prefetched tasks stay behind the running ones for the whole test (fair dispatch would give
#: them back after 10 ms; these tests are about what a stop does with prefetched tasks).
HOLDING = {"JOBS_WORKER_PREFETCH_HOLD": "60"}


def _busy_worker(worker_process, jobs_redis, pool, consumers, long_seconds):
    """A worker whose consumers each run one long task, the last one holding two short ones,
    claimed and not started.

    A consumer claims more than one task only while every other consumer is busy (fair
    dispatch), and an idle one is handed a single task at enqueue: so every consumer but the last
    is handed a long task first, and the last, kept busy a moment by a blocker, then claims a
    long task and two short ones together.
    """
    w = worker_process(*pool, env=HOLDING)
    wait_for(lambda: jobs_redis.scard("jobs:idle:default") >= consumers, 10,
             "every consumer to be idle")
    results = []
    for i in range(consumers - 1):
        results.append(basic.sleep_and_record.delay(long_seconds))
        wait_for(lambda n=i + 1: len(starts(jobs_redis)) == n, 10, "a long task to start")
    blocker = basic.sleep_for.delay(1.0)
    wait_for(lambda: field(jobs_redis, blocker.id, "worker"), 10, "the blocker to be handed over")
    results += group(basic.sleep_and_record.s(long_seconds), basic.sleep_and_record.s(0.05),
                     basic.sleep_and_record.s(0.05)).apply_async()
    long_ids = {r.id for r in results[:consumers - 1]} | {results[consumers - 1].id}
    wait_for(lambda: {s[0] for s in starts(jobs_redis)} == long_ids, 15,
             "each consumer to start its long task")
    held = {t for entries in active_entries(jobs_redis).values() for t in entries}
    assert held == {r.id for r in results}, "every task should be claimed by the worker"
    return w, results, long_ids


def _check_clean_exit(jobs_redis, w):
    """Exit code 0 and nothing of the worker left in Redis."""
    assert w.proc.wait(20) == 0, w.output()
    assert active_entries(jobs_redis) == {}
    assert jobs_redis.scard("jobs:workers") == 0
    assert not list(jobs_redis.scan_iter("jobs:hb:*"))


@pytest.mark.parametrize("pool, consumers", POOLS)
def test_sigterm_finishes_running_and_gives_back_prefetched(app, jobs_redis, worker_process,
                                                            pool, consumers):
    # Given a worker running long tasks and holding prefetched ones
    w, results, long_ids = _busy_worker(worker_process, jobs_redis, pool, consumers, 1.5)
    short_ids = [r.id for r in results if r.id not in long_ids]
    # When it gets SIGTERM
    w.signal(signal.SIGTERM)
    # Expect it to exit 0 after finishing the running tasks, starting no other
    _check_clean_exit(jobs_redis, w)
    assert set(ends(jobs_redis)) == long_ids
    assert all(field(jobs_redis, t, "state") == "SUCCESS" for t in long_ids)
    assert {s[0] for s in starts(jobs_redis)} == long_ids
    # ... with the prefetched tasks already back in the queue, not counted as a delivery
    assert sorted(queued_ids(jobs_redis)) == sorted(short_ids)
    assert all(field(jobs_redis, t, "dlv") == "0" for t in short_ids)
    # ... so a worker that would wait 30 s for an orphan runs them at once
    worker_process("-P", "solo", env=PATIENT)
    wait_for(lambda: terminal(jobs_redis, short_ids), 10, "the given-back tasks to run")
    assert all(field(jobs_redis, t, "state") == "SUCCESS" for t in short_ids)


def _warm_logged(w):
    return "Warm shutdown" in w.output()


@pytest.mark.parametrize("pool, consumers", POOLS)
def test_second_sigterm_is_cold_and_tasks_run_again(app, jobs_redis, worker_process, pool,
                                                    consumers):
    # Given a worker running long tasks, already in warm shutdown
    w, results, long_ids = _busy_worker(worker_process, jobs_redis, pool, consumers, 2.0)
    w.signal(signal.SIGTERM)
    wait_for(lambda: _warm_logged(w), 10, "the warm shutdown to begin")
    # When a second SIGTERM arrives
    w.signal(signal.SIGTERM)
    # Expect a cold stop: exit 0 with the long tasks unfinished and given back
    _check_clean_exit(jobs_redis, w)
    assert ends(jobs_redis) == []
    assert set(queued_ids(jobs_redis)) == {r.id for r in results}
    # (the prefetched ones never started: that delivery does not count towards the limit)
    assert all(field(jobs_redis, r.id, "dlv") == "0" for r in results if r.id not in long_ids)
    # ... and another worker (30 s orphan timeout: no reaping involved) runs them again
    worker_process("-P", "threads", "-c", "6", "--prefetch", "1", env=PATIENT)
    wait_for(lambda: terminal(jobs_redis, [r.id for r in results]), 15, "every task")
    assert all(r.state == "SUCCESS" for r in results)
    second = {s[0]: s[1] for s in starts(jobs_redis)[consumers:]}
    assert all(second[t] == 2 for t in long_ids)


@pytest.mark.parametrize("pool, consumers", POOLS)
def test_shutdown_timeout_turns_cold(app, jobs_redis, worker_process, pool, consumers):
    # Given a worker with a 1 s shutdown timeout running 5 s tasks
    pool = [*pool, "--shutdown-timeout", "1"]
    w, results, long_ids = _busy_worker(worker_process, jobs_redis, pool, consumers, 5.0)
    # When it gets a single SIGTERM
    w.signal(signal.SIGTERM)
    # Expect it to stop cold once the timeout passes, without finishing the tasks: exit 0
    _check_clean_exit(jobs_redis, w)
    assert ends(jobs_redis) == []
    assert set(queued_ids(jobs_redis)) == {r.id for r in results}
    # (the prefetched ones never started: that delivery does not count towards the limit)
    assert all(field(jobs_redis, r.id, "dlv") == "0" for r in results if r.id not in long_ids)
    # ... and the long tasks to be delivered again to the next worker (attempt 2)
    worker_process("-P", "threads", "-c", "6", "--prefetch", "1", env=PATIENT)
    wait_for(lambda: long_ids <= {s[0] for s in starts(jobs_redis) if s[1] == 2}, 10,
             "the long tasks to start again")


@pytest.mark.parametrize("pool", [["-P", "solo"], ["-P", "threads", "-c", "1"],
                                  ["-P", "prefork", "-c", "1"]], ids=["solo", "threads", "prefork"])
def test_time_limits_still_apply_during_warm_shutdown(app, jobs_redis, worker_process, pool):
    # Given a worker running a task with a 0.3 s soft limit that would otherwise run 10 s
    w = worker_process(*pool)
    r = basic.soft_limited_steps.delay(10)
    wait_for(lambda: r.state == "STARTED", 10, "the task to start")
    # When a warm shutdown begins (25 s timeout) while it runs
    w.signal(signal.SIGTERM)
    # Expect the soft limit to fire as usual, the task to clean up, and the worker to exit 0
    assert r.get(timeout=8) == "cleaned up"
    assert w.proc.wait(10) == 0


def test_a_stop_waits_for_the_flushers_last_write_before_unregistering(app, jobs_redis,
                                                                        monkeypatch):
    # Given a worker whose flusher is in the middle of a write (the running task's STARTED and
    # progress) when the stop comes
    import threading

    from flask_jobs.broker import Broker
    from flask_jobs.worker.main import BackgroundWorker

    writing, release = threading.Event(), threading.Event()
    real_write = Broker.write

    def held_write(self, client, worker, writes):
        if threading.current_thread().name == "flask-jobs-flusher" and not release.is_set():
            writing.set()
            release.wait(10)
        return real_write(self, client, worker, writes)

    monkeypatch.setattr(Broker, "write", held_write)
    w = BackgroundWorker(app).start()
    r = basic.state_then_gate.delay("flusher-gate")
    wait_for(writing.is_set, 10, "the flusher to write the running task's progress")
    # When the worker is stopped and its task finishes
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    jobs_redis.rpush("flusher-gate", "go")
    # Expect the stop to wait for the flusher's write (a write landing after the worker
    # unregistered would be refused as a stranger's), then to finish cleanly
    stopper.join(0.5)
    assert stopper.is_alive()
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert r.get(timeout=5) == "released"
    assert jobs_redis.smembers("jobs:workers") == set()
    assert "stale_writes" not in {k.decode() for k in jobs_redis.hkeys("jobs:stats")}
