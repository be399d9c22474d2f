"""Revoking tasks with real workers: queued, delayed and prefetched tasks never run; running ones
stop with ``terminate=True`` in every pool that supports it, and the worker keeps serving.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis

from flask_jobs import group
from flask_jobs.exceptions import TaskRevokedError
from flask_jobs.worker import control
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import active_entries, children, ends, field, starts


def test_revoked_queued_and_delayed_tasks_never_run(app, jobs_redis, worker_process):
    # Given a queued and a delayed task, revoked before any worker runs
    queued = basic.sleep_and_record.delay(0)
    delayed = basic.sleep_and_record.apply_async((0,), countdown=0.5)
    queued.revoke()
    delayed.revoke()
    assert queued.state == delayed.state == "REVOKED"
    assert jobs_redis.zscore("jobs:delayed", delayed.id) is None
    # When a worker runs, past the delayed task's due time
    worker_process("-P", "solo")
    after = basic.sleep_and_record.apply_async((0,), countdown=0.6)
    after.get(timeout=10)
    # Expect neither revoked task to have run
    assert [s[0] for s in starts(jobs_redis)] == [after.id]
    with pytest.raises(TaskRevokedError):
        queued.get(timeout=1)
    assert field(jobs_redis, queued.id, "reason") == "revoked"


#: A task prefetched behind a running one stays there (fair dispatch would give it back after
#: 10 ms; these tests are about a revoked task waiting in a prefetch buffer).
HOLDING = {"JOBS_WORKER_PREFETCH_HOLD": "60"}


# One consumer each: a revoked task waits in the buffer of the consumer that runs the blocker,
# and a worker can run another task only once its long one is stopped.
ONE_CONSUMER_POOLS = [
    pytest.param(["-P", "solo"], id="solo"),
    pytest.param(["-P", "threads", "-c", "1"], id="threads"),
    pytest.param(["-P", "prefork", "-c", "1"], id="prefork"),
    pytest.param(["-P", "gevent", "-c", "1"], id="gevent"),
]


@pytest.mark.parametrize("pool", ONE_CONSUMER_POOLS)
def test_revoked_prefetched_task_never_runs(app, jobs_redis, worker_process, pool):
    # Given a worker running a task with another one claimed in its buffer
    worker_process(*pool, "--prefetch", "2", env=HOLDING)
    # (an idle worker is handed one task at enqueue; the next claim of a busy one takes two)
    blocker = basic.sleep_and_record.delay(0.3)
    wait_for(lambda: len(starts(jobs_redis)) == 1, 10, "the blocker to start")
    first, second = group(basic.sleep_and_record.s(1.0), basic.sleep_and_record.s(0)).apply_async()
    wait_for(lambda: len(starts(jobs_redis)) == 2, 10, "the first task to start")
    assert second.id in next(iter(active_entries(jobs_redis).values()))
    # When the buffered one is revoked
    second.revoke()
    # Expect it never to start, to stay REVOKED, and the first to finish normally
    assert first.get(timeout=10)
    wait_for(lambda: not active_entries(jobs_redis), 10, "the worker to settle")
    assert second.state == "REVOKED"
    assert [s[0] for s in starts(jobs_redis)] == [blocker.id, first.id]


def _running_one_with_a_victim_buffered(jobs_redis):
    """With a one-consumer worker (prefetch 2) started: get it running a task that holds until
    ``gate:2`` is pushed, with another task (the victim) claimed in its buffer behind it."""
    basic.hold_until_released.delay("gate:1")
    wait_for(lambda: len(starts(jobs_redis)) == 1, 10, "the first task to start")
    second, victim = group(basic.hold_until_released.s("gate:2"),
                           basic.sleep_and_record.s(0)).apply_async()
    jobs_redis.rpush("gate:1", 1)
    wait_for(lambda: len(starts(jobs_redis)) == 2, 10, "the second task to start")
    assert victim.id in next(iter(active_entries(jobs_redis).values()))
    return second, victim


@pytest.mark.parametrize("pool", ONE_CONSUMER_POOLS)
def test_revoke_sent_while_worker_not_subscribed_is_not_missed(app, jobs_redis, worker_process,
                                                               pool):
    # Given a worker running a task with another one claimed in its buffer
    w = worker_process(*pool, "--prefetch", "2", env=HOLDING)
    second, victim = _running_one_with_a_victim_buffered(jobs_redis)
    # When its subscription to broadcasts is cut, and the buffered task is revoked meanwhile
    # (the broadcast reaches nobody: the worker waits before it subscribes again)
    jobs_redis.client_kill_filter(_type="pubsub")
    victim.revoke()
    wait_for(lambda: "Subscribed to broadcasts again" in w.output(), 10, "a new subscription")
    jobs_redis.rpush("gate:2", 1)
    # Expect the revoked task never to start and the running one to finish normally
    assert second.get(timeout=10) is True
    wait_for(lambda: not active_entries(jobs_redis), 10, "the worker to settle")
    assert victim.state == "REVOKED"
    assert victim.id not in [s[0] for s in starts(jobs_redis)]
    assert w.proc.poll() is None


def test_revoke_is_not_missed_when_the_subscription_dies_silently(app, jobs_redis, proxy,
                                                                  proxied_worker, monkeypatch,
                                                                  caplog):
    # (silence on the subscription for 0.3 s brings a PING; one unanswered for 1 s, a new one)
    monkeypatch.setattr(control, "PING_AFTER", 0.3)
    caplog.set_level(logging.INFO, logger="flask_jobs.worker")
    # Given a worker (whose connections all go through a proxy) running a task, with another
    # one claimed in its buffer
    proxied_worker(config={"JOBS_BROKER_TIMEOUT": 1.0, "JOBS_WORKER_PREFETCH_HOLD": 60},
                   concurrency=1, prefetch=2)
    second, victim = _running_one_with_a_victim_buffered(jobs_redis)
    # When its subscription to broadcasts goes silent without a reset (as when a NAT drops an
    # idle connection), and the buffered task is revoked: the broadcast reaches nobody
    assert proxy.freeze(b"SUBSCRIBE") == 1
    victim.revoke()
    # Expect the worker to notice the silence, subscribe again and check its buffer
    wait_for(lambda: "Subscribed to broadcasts again" in caplog.text, 10, "a new subscription")
    assert "no reply to PING on the control subscription" in caplog.text
    jobs_redis.rpush("gate:2", 1)
    # ... so the revoked task never starts, and the running one finishes normally
    assert second.get(timeout=10) is True
    wait_for(lambda: not active_entries(jobs_redis), 10, "the worker to settle")
    assert victim.state == "REVOKED"
    assert victim.id not in [s[0] for s in starts(jobs_redis)]


def test_a_quiet_healthy_subscription_is_pinged_and_kept(app, jobs_redis, monkeypatch):
    # Given a control subscription that hears nothing but answers its PINGs
    monkeypatch.setattr(control, "PING_AFTER", 0.05)
    listens: list[int] = []
    channel = control.ControlChannel(app.extensions["jobs"], lambda command: None,
                                     lambda: listens.append(1))
    pings: list[int] = []
    ping = redis.client.PubSub.ping
    monkeypatch.setattr(redis.client.PubSub, "ping",
                        lambda self, *a: (pings.append(1), ping(self, *a))[1])
    deadline = time.monotonic() + 10
    # When it is polled through three PINGs and their answers
    while len(pings) < 3 or channel._pinged is not None:
        assert time.monotonic() < deadline, "timed out waiting for 3 answered PINGs"
        channel.poll(0.05)
    # Expect it never to have been taken for dead: subscribed once
    assert listens == [1]
    channel.close()


def test_claim_answered_across_a_new_subscription_checks_its_tasks(app, jobs_redis):
    # Given a consumer whose claim was sent before a (re)subscription and answered after it,
    # with one of the claimed tasks revoked before that subscription (so never heard of)
    from flask_jobs.claims import Claimed
    from flask_jobs.worker.consumer import Consumer
    from flask_jobs.worker.runtime import Runtime

    rt = Runtime(app, "w-test", "worker@test", ["default"], 4)
    consumer = Consumer(rt)
    kept, revoked = basic.add.delay(1, 2), basic.add.delay(3, 4)
    revoked.revoke()
    claimed = [Claimed(r.id, 1, 1, "json", b"{}", basic.add.name) for r in (kept, revoked)]
    epoch = rt.listen_epoch
    # When the claim is answered in the same epoch, nothing is read; across one, it is checked
    consumer._check_missed_revokes(epoch, claimed)
    assert rt.revoked == set()
    rt.on_listen(jobs_redis)
    consumer._check_missed_revokes(epoch, claimed)
    # Expect only the revoked one to be skipped when its turn comes
    assert rt.revoked == {revoked.id}


@pytest.mark.parametrize("pool", ONE_CONSUMER_POOLS)
def test_terminate_running_task(app, jobs_redis, worker_process, pool):
    # Given a worker whose only consumer runs a 30 s task (recorded as STARTED)
    w = worker_process(*pool, "--prefetch", "1")
    r = basic.sleep_and_record.delay(30)
    wait_for(lambda: starts(jobs_redis) and r.state == "STARTED", 10, "the task to start")
    # When it is revoked with terminate=True
    r.revoke(terminate=True)
    # Expect it to become REVOKED
    with pytest.raises(TaskRevokedError):
        r.get(timeout=10)
    assert r.state == "REVOKED"
    # ... and really stop: the single consumer is free to run another task long before 30 s
    assert basic.add.delay(2, 2).get(timeout=10) == 4
    assert ends(jobs_redis) == []
    assert w.proc.poll() is None
    assert "failed" not in w.output()  # the control command did not raise
    # ... and the revoked task is not delivered again
    assert len(starts(jobs_redis)) == 1
    assert not active_entries(jobs_redis) or r.id not in str(active_entries(jobs_redis))


def test_terminate_with_sigkill_in_prefork_replaces_child(app, jobs_redis, worker_process):
    w = worker_process("-P", "prefork", "-c", "1")
    before = children(w.proc.pid)
    r = basic.sleep_and_record.delay(30)
    wait_for(lambda: starts(jobs_redis), 10, "the task to start")
    r.revoke(terminate=True, signal="SIGKILL")
    with pytest.raises(TaskRevokedError):
        r.get(timeout=10)
    wait_for(lambda: (kids := children(w.proc.pid)) and kids != before, 10,
             "a new child")
    assert basic.add.delay(2, 2).get(timeout=10) == 4
    assert len(starts(jobs_redis)) == 1
