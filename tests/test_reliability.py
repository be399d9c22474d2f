"""The delivery guarantees of DESIGN.md §3, proven with real worker processes and a real Redis.

Workers are ``flask jobs worker`` processes (``worker_process``); ``JOBS_ORPHAN_TIMEOUT`` is 1 s
in the test app and workers, so a dead worker's tasks come back quickly. Test tasks record what
they did in Redis lists (``sleep_and_record``: start with attempt and pid, end), so duplicates
and losses are read from effects, not from the engine's own bookkeeping.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from flask_jobs import group
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import (
    active_entries,
    app_on,
    ends,
    field,
    redis_ms,
    start_counts,
    starts,
    stats,
    terminal,
    worker_on,
)

# -- §3.1 nothing lost ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pool", [["-P", "solo"], ["-P", "prefork", "-c", "2"]],
                         ids=["solo", "prefork"])
def test_sigkill_loses_nothing(app, jobs_redis, worker_process, pool):
    # Given a worker running and holding (prefetched) some of N tasks
    n = 10
    w1 = worker_process(*pool)
    results = [basic.sleep_and_record.delay(0.4) for _ in range(n)]
    ids = [r.id for r in results]
    wait_for(lambda: len(starts(jobs_redis)) >= 2, 15, "two tasks to start")
    # When the whole worker (parent and children) is SIGKILLed mid-task
    w1.kill()
    # (a task that finished but whose outcome was not written yet counts as interrupted: its
    # effect happened, its acknowledgement did not; at-least-once runs it again)
    done_before = {i for i in ids if terminal(jobs_redis, [i])}
    killed = {s[0] for s in starts(jobs_redis)} - done_before
    assert killed, "the kill should interrupt at least one running task"
    # ... and another worker starts
    worker_process(*pool)
    # Expect every task to finish, none lost
    wait_for(lambda: terminal(jobs_redis, ids), 40, "all tasks to finish")
    assert all(r.state == "SUCCESS" for r in results)
    assert set(ends(jobs_redis)) == set(ids)
    # ... each interrupted task ran again with a higher attempt number
    attempts: dict[str, list[int]] = {}
    for task_id, attempt, _pid in starts(jobs_redis):
        attempts.setdefault(task_id, []).append(attempt)
    for task_id in killed:
        assert len(attempts[task_id]) >= 2, attempts[task_id]
        assert attempts[task_id] == sorted(set(attempts[task_id]))
        assert int(field(jobs_redis, task_id, "att")) == attempts[task_id][-1]
    # ... tasks that were not interrupted ran once
    for task_id in set(ids) - killed:
        assert len(attempts[task_id]) == 1
    assert stats(jobs_redis).get("reaped", 0) >= len(killed)
    assert active_entries(jobs_redis).get("dead", None) is None


# -- §3.2 no duplicate while alive -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("pool", [["-P", "solo", "--prefetch", "1"],
                                  ["-P", "prefork", "-c", "2", "--prefetch", "1"],
                                  ["-P", "gevent", "-c", "2", "--prefetch", "1"]],
                         ids=["solo", "prefork", "gevent"])
def test_long_tasks_run_once_while_worker_alive(app, jobs_redis, worker_process, pool):
    # Given two live workers and tasks 3x longer than the orphan timeout (1 s): sleeping ones,
    # and pure-Python CPU burners that hold the GIL (the heartbeat must not starve)
    worker_process(*pool)
    worker_process(*pool)
    sleepers = [basic.sleep_and_record.delay(3.5) for _ in range(2)]
    burners = [basic.cpu_burn.delay(3.0) for _ in range(2)]
    everything = sleepers + burners
    # When they all run to completion
    wait_for(lambda: terminal(jobs_redis, [r.id for r in everything]), 40, "all tasks")
    # Expect each to have been delivered exactly once
    assert [r.state for r in everything] == ["SUCCESS"] * 4
    assert start_counts(jobs_redis) == {r.id: 1 for r in sleepers}
    for r in everything:
        assert field(jobs_redis, r.id, "att") == "1", f"{r.id} was delivered again"
    assert "reaped" not in stats(jobs_redis)
    assert "stale_writes" not in stats(jobs_redis)


# -- §3.3 a zombie cannot win ----------------------------------------------------------------------


@pytest.mark.slow
def test_zombie_worker_cannot_overwrite_newer_attempt(app, jobs_redis, worker_process):
    # Given a solo worker A running a task
    a = worker_process("-P", "solo", "--prefetch", "1", "-n", "zombie")
    r = basic.sleep_and_record.delay(2.0)
    wait_for(lambda: len(starts(jobs_redis)) == 1, 10, "the task to start on A")
    # When A freezes (SIGSTOP) long enough for its heartbeat to expire,
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        # another worker B takes the task over and finishes it
        b = worker_process("-P", "solo", "--prefetch", "1", "-n", "fresh")
        wait_for(lambda: r.state == "SUCCESS", 20, "B to finish the task")
        assert [s[1] for s in starts(jobs_redis)] == [1, 2]
        b_pid = starts(jobs_redis)[1][2]
        assert r.result == b_pid and field(jobs_redis, r.id, "att") == "2"
    finally:
        # ... then A wakes up and finishes its (stale) attempt
        os.kill(a.proc.pid, signal.SIGCONT)
    wait_for(lambda: len(ends(jobs_redis)) == 2, 10, "A to finish its stale run")
    # Expect A's late result to be refused and counted; the record keeps B's result
    wait_for(lambda: stats(jobs_redis).get("stale_writes", 0) >= 1, 10, "a refused write")
    assert field(jobs_redis, r.id, "att") == "2"
    assert field(jobs_redis, r.id, "worker").startswith("fresh:")
    r._cache = None
    assert r.state == "SUCCESS" and r.result == b_pid
    # ... and A, alive again, keeps serving
    assert b.stop() == 0
    assert basic.add.delay(1, 1).get(timeout=10) == 2
    assert a.proc.poll() is None


def test_task_handed_to_a_frozen_idle_worker_is_not_lost(app, jobs_redis, worker_process):
    # Given an idle solo worker A (registered as idle, blocked on its inbox)
    a = worker_process("-P", "solo", "-n", "frozen")
    wait_for(lambda: jobs_redis.scard("jobs:idle:default") == 1, 10, "A to register as idle")
    # When A freezes and a task is sent: the enqueue hands it to A's inbox, claimed for A
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        r = basic.sleep_and_record.delay(0)
        # (Redis pops it at once for A's blocked BLPOP: it now sits in A's socket buffer)
        assert field(jobs_redis, r.id, "worker").startswith("frozen:")
        # ... and another worker B starts: once A's heartbeat expires, B's reaper gives the
        # task back and B runs it (attempt 2)
        worker_process("-P", "solo", "-n", "fresh")
        wait_for(lambda: r.state == "SUCCESS", 20, "B to run the handed task")
        assert [s[1] for s in starts(jobs_redis)] == [2]
        assert field(jobs_redis, r.id, "worker").startswith("fresh:")
        # ... and A's inbox and idle registration were removed with it
        assert not list(jobs_redis.scan_iter("jobs:w:frozen*"))
        assert all(not m.startswith(b"frozen:") for m in jobs_redis.smembers("jobs:idle:default"))
    finally:
        os.kill(a.proc.pid, signal.SIGKILL)


# -- §3.4 atomic enqueue -----------------------------------------------------------------------------


def test_enqueue_writes_pending_record_with_message(app, jobs_redis):
    # Given no worker at all
    r = basic.add.delay(1, 2)
    # Expect the record to exist at once, PENDING, with the message, and the id queued
    rec = jobs_redis.hgetall(f"jobs:t:{r.id}")
    assert rec[b"state"] == b"PENDING"
    assert rec[b"name"] == b"tests.apps.basic.add" and rec[b"body"]
    # (it has no expiry while it waits: it holds the message; it gets one at its final state)
    assert jobs_redis.pttl(f"jobs:t:{r.id}") == -1
    assert jobs_redis.lrange("jobs:q:default:5", 0, -1) == [r.id.encode()]
    assert r.exists() and r.state == "PENDING"
    # ... while an id that was never enqueued is unknown, not a fake PENDING record
    unknown = app.extensions["jobs"].jobs.AsyncResult(str(uuid.uuid4()))
    assert unknown.exists() is False
    assert jobs_redis.exists(f"jobs:t:{unknown.id}") == 0


# -- §3.5 no polling in the hot path -----------------------------------------------------------------


def _command_calls(r, *names: str) -> int:
    info = r.info("commandstats")
    return sum(info.get(f"cmdstat_{n}", {}).get("calls", 0) for n in names)


def _blocked_on_marker(r) -> bool:
    return any(c.get("cmd") == "blpop" for c in r.client_list())


def test_idle_worker_blocks_and_wakes_at_once(app, jobs_redis, worker_process):
    worker_process("-P", "solo")
    wait_for(lambda: _blocked_on_marker(jobs_redis), 10, "the worker to block on its queue")
    # Given an idle worker: over 2 s (Redis clock) it makes a handful of calls, not hundreds
    before = _command_calls(jobs_redis, "evalsha", "eval", "blpop")
    t0 = redis_ms(jobs_redis)
    wait_for(lambda: redis_ms(jobs_redis) >= t0 + 2000, 10, "a 2 s idle window")
    calls = _command_calls(jobs_redis, "evalsha", "eval", "blpop") - before
    # (about 1 claim + 1 wait per second, and a reaper pass every half orphan timeout)
    assert calls < 30, f"{calls} claim/wait/reap calls in 2 s of idleness: polling?"
    # When a task is sent to the idle worker, Expect it to start soon (generous bound)
    for _ in range(3):
        wait_for(lambda: _blocked_on_marker(jobs_redis), 10, "the worker to be idle")
        sent = redis_ms(jobs_redis)
        r = basic.sleep_and_record.delay(0.3)
        # handed over by the enqueue itself, already claimed for the idle worker
        assert field(jobs_redis, r.id, "worker") and field(jobs_redis, r.id, "att") == "1"
        st = wait_for(lambda r=r: field(jobs_redis, r.id, "st"), 10, "STARTED")
        assert int(st) - sent < 1000
        assert r.get(timeout=10)


def test_countdown_runs_on_time(app, jobs_redis, worker_process):
    worker_process("-P", "solo")
    sent = redis_ms(jobs_redis)
    r = basic.sleep_and_record.apply_async((0.3,), countdown=1.5)
    assert jobs_redis.zscore("jobs:delayed", r.id) is not None
    st = int(wait_for(lambda: field(jobs_redis, r.id, "st"), 10, "the delayed task to start"))
    # Expect it to start after its due time (Redis clock), and within about 1 s of it
    assert st - sent >= 1500
    assert st - sent < 1500 + 1000
    assert r.get(timeout=10)


# -- §3.7 expired is cheap -------------------------------------------------------------------------


def test_expired_backlog_does_not_stall_fresh_tasks(app, jobs_redis, worker_process):
    # Given 10,000 queued tasks that expire after 0.5 s, and no worker
    n = 10_000
    g = group(basic.sleep_and_record.s(0, "expired") for _ in range(n)).apply_async(expires=0.5)
    ids = [r.id for r in g]
    assert len(ids) == n
    last_exp = max(int(field(jobs_redis, ids[i], "exp")) for i in (0, n // 2, n - 1))
    wait_for(lambda: redis_ms(jobs_redis) > last_exp, 10, "the backlog to expire")
    # When 20 fresh tasks are queued behind them and a worker starts
    fresh = [basic.add.delay(i, 1) for i in range(20)]
    worker_process("-P", "solo")
    # Expect the fresh ones to finish (generous bound), the backlog to be REVOKED "expired"
    assert [r.get(timeout=15) for r in fresh] == [i + 1 for i in range(20)]
    pipe = jobs_redis.pipeline(transaction=False)
    for task_id in ids:
        pipe.hmget(f"jobs:t:{task_id}", "state", "reason")
    assert all(v == [b"REVOKED", b"expired"] for v in pipe.execute())
    # ... none of them ran, and they were counted
    assert jobs_redis.llen("expired:start") == 0
    assert stats(jobs_redis)["expired"] == n


# -- §3.8 bounded memory ---------------------------------------------------------------------------


def test_no_leftover_keys_after_run(app, jobs_redis, worker_process):
    # Given two workers (solo and prefork) that ran a mix of tasks: results, failures,
    # progress, retries, delayed, revoked, ignored results, groups
    a = worker_process("-P", "solo")
    b = worker_process("-P", "prefork", "-c", "2")
    results = [basic.add.delay(i, i) for i in range(20)]
    results += [basic.fail.delay(), basic.progress_shortcut.delay(50),
                basic.retry_then_succeed.delay(2), basic.no_result.delay(),
                basic.add.apply_async((1, 1), countdown=0.3), basic.sleep_for.delay(0.2)]
    results += list(group(basic.mul.s(i, 3) for i in range(10)).apply_async())
    revoked = basic.add.apply_async((1, 1), countdown=60)
    revoked.revoke()
    wait_for(lambda: terminal(jobs_redis, [r.id for r in results]), 30, "every task")
    # When the workers stop (warm)
    assert a.stop() == 0
    assert b.stop() == 0
    # Expect no worker bookkeeping left behind
    keys = sorted(k.decode() for k in jobs_redis.scan_iter("jobs:*"))
    leftovers = [k for k in keys if k.startswith(("jobs:w:", "jobs:hb:"))
                 or k in ("jobs:workers", "jobs:delayed")]
    assert leftovers == []
    assert all(jobs_redis.pttl(k) > 0 for k in keys if k.startswith("jobs:lock:"))
    assert not [k for k in keys if k.startswith("jobs:q:")]
    # ... and every key expires, except the counters and the wake-up tokens (one small key
    # per queue holding at most one token: bounded whatever the load); no idle registration
    # of a stopped worker is left
    no_ttl = [k for k in keys if jobs_redis.pttl(k) < 0]
    # (and the rate limits table: one small field per rate-limited task name; the counters of
    # each task name, for the metrics; the settings the scripts read; the events stream, capped
    # by length and age: all bounded whatever the load)
    counted = {f"jobs:m:{r.name}" for r in results} | {"jobs:m:names"}
    assert {k for k in no_ttl if not k.startswith("jobs:wake:")} <= {
        "jobs:stats", "jobs:dlq", "jobs:rates", "jobs:conf", "jobs:events"} | counted
    for k in no_ttl:
        if k.startswith("jobs:wake:"):
            assert jobs_redis.llen(k) <= 1
    for r in results + [revoked]:
        assert 0 < jobs_redis.pttl(f"jobs:t:{r.id}") <= 86_400_000


# -- §3.1 again: Redis restarts under a worker ------------------------------------------------------


@pytest.mark.parametrize("pool", [["-P", "solo"], ["-P", "prefork", "-c", "2"],
                                  ["-P", "threads", "-c", "2"]],
                         ids=["solo", "prefork", "threads"])
def test_worker_survives_redis_restart(pool):
    from flask_jobs.embedded import RedisServer

    # Given a worker on a private Redis that it has already used
    server = RedisServer().start()
    try:
        with worker_on(server.url, *pool) as w, app_on(server.url):
            assert basic.add.delay(1, 1).get(timeout=10) == 2
            # When Redis crashes and comes back empty on the same port
            server.kill()
            wait_for(lambda: "unavailable" in w.output(), 15, "the worker to notice")
            server.start()
            # Expect the worker to still run, reconnect, and run tasks sent after the restart
            results = [basic.add.delay(i, 1) for i in range(5)]
            assert [r.get(timeout=30) for r in results] == [1, 2, 3, 4, 5]
            assert w.proc.poll() is None
            assert w.stop() == 0
    finally:
        server.stop()



@pytest.mark.parametrize("pool", [["-P", "solo"], ["-P", "prefork", "-c", "2"],
                                  ["-P", "threads", "-c", "2"]],
                         ids=["solo", "prefork", "threads"])
def test_worker_survives_its_redis_being_demoted_to_a_replica(pool):
    from flask_jobs.embedded import RedisServer
    from flask_jobs.exceptions import BrokerUnavailable

    # Given a worker on a Redis that it has already used (and another Redis)
    server, other = RedisServer().start(), RedisServer().start()
    try:
        with worker_on(server.url, *pool) as w, app_on(server.url):
            assert basic.add.delay(1, 1).get(timeout=10) == 2
            # When a failover demotes its Redis to a replica under it, connections left open
            # (as behind a managed service's endpoint): writes get READONLY, and blocked reads
            # are cut short with UNBLOCKED
            direct = server.client()
            direct.replicaof("127.0.0.1", other.port)
            wait_for(lambda: "Redis cannot serve this connection any more" in w.output(), 15,
                     "the worker to see the demotion")
            # Expect a send to fail with a clear error meanwhile, ...
            with pytest.raises(BrokerUnavailable, match="Nothing was queued"):
                basic.add.delay(0, 0)
            # ... and once its Redis is a primary again, the worker to carry on, alive
            direct.replicaof("no", "one")
            results = [basic.add.delay(i, 1) for i in range(3)]
            assert [r.get(timeout=30) for r in results] == [1, 2, 3]
            assert w.proc.poll() is None
            assert w.stop() == 0
    finally:
        server.stop()
        other.stop()
