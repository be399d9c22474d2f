"""Lost replies: the connection drops after Redis ran a claim (or popped a hand-over for a
blocked consumer) but before the reply reached the worker.

Redis has moved the tasks into the worker's active hash; the worker never heard of them, and as it
is alive, no reaper gives them back. Claims are therefore numbered per consumer, and a claim sent
again with the same number returns what the lost reply carried (``scripts/claim.lua``).

The losses are real: :class:`~tests.proxy.LossyProxy` sits between a real worker and the test Redis
and closes both connections in place of forwarding one chosen reply. ``JOBS_ORPHAN_TIMEOUT`` is
60 s for the proxied workers, so the reaper cannot be what saves a task here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from flask_jobs.worker import consumer as consumer_module
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import (
    active_entries,
    claim_records,
    field,
    queued_ids,
    stats,
    terminal,
)


def _sha(app: Any, script: str) -> bytes:
    return getattr(app.extensions["jobs"].broker, f"_{script}").sha.encode()


def _records(r: redis.Redis) -> list[str]:
    return sorted(json.loads(x) for x in r.lrange("records", 0, -1))


# -- the claim script's rule, call by call -----------------------------------------------------


def test_claim_sent_again_returns_what_its_lost_reply_carried_and_nothing_else(app, jobs_redis):
    broker = app.extensions["jobs"].broker
    client = app.extensions["jobs"].client
    a, b, c = (basic.add.delay(i, 1) for i in range(3))

    # Given a claim of two tasks whose reply never arrived (we drop it here)
    broker.claim(client, "w@x", 2, ["default"], seq=1)
    # When the consumer sends that claim again (same number), Expect the same two back first,
    # with the same attempts (not delivered again), then a third one for the rest of n
    got, _, _ = broker.claim(client, "w@x", 3, ["default"], seq=1)
    assert [(t.id, t.attempt, t.deliveries) for t in got] == [(a.id, 1, 1), (b.id, 1, 1),
                                                             (c.id, 1, 1)]
    # ... and once a reply arrived (the next claim has the next number): nothing comes back twice
    again, _, _ = broker.claim(client, "w@x", 3, ["default"], seq=2)
    assert again == []
    # ... while a claim whose reply was received and that is sent again (seq 2 again) returns
    # only what that reply carried: nothing
    assert broker.claim(client, "w@x", 3, ["default"], seq=2)[0] == []
    # A task finished or revoked since is not returned again
    d = basic.add.delay(5, 1)
    [got_d], _, _ = broker.claim(client, "w@x", 1, ["default"], seq=3)
    d.revoke()
    assert broker.claim(client, "w@x", 1, ["default"], seq=3)[0] == []
    assert got_d.id not in active_entries(jobs_redis).get("jobs:w:w@x:active", {})
    assert terminal(jobs_redis, [d.id])


def test_hand_over_whose_pop_reply_was_lost_is_returned_once(app, jobs_redis):
    broker = app.extensions["jobs"].broker
    client = app.extensions["jobs"].client
    broker.heartbeat(client, ["w@y"], {}, 60_000)  # (only live consumers are handed tasks)
    # Given a consumer that found nothing and registered as idle (claim 1)
    assert broker.claim(client, "w@y", 1, ["default"], idle=True, seq=1)[0] == []
    # When a task is handed to its inbox, and the BLPOP that pops it loses its reply
    h = basic.add.delay(1, 1)
    assert field(jobs_redis, h.id, "worker") == "w@y"
    assert jobs_redis.lpop("jobs:w:w@y:in:0")
    # Expect the claim sent again with the last number to return it, once
    got, _, _ = broker.claim(client, "w@y", 1, ["default"], seq=1)
    assert [(t.id, t.attempt) for t in got] == [(h.id, 1)]
    # ... and the next claim not to return it again
    assert broker.claim(client, "w@y", 1, ["default"], idle=True, seq=2)[0] == []
    # A task handed over and still in the inbox comes once, from the inbox, not twice
    h2 = basic.add.delay(2, 2)
    got, _, _ = broker.claim(client, "w@y", 1, ["default"], seq=2)
    assert [t.id for t in got] == [h2.id]
    # ... and is returned again only if that claim's reply is lost too
    got, _, _ = broker.claim(client, "w@y", 1, ["default"], seq=2)
    assert [t.id for t in got] == [h2.id]
    assert broker.claim(client, "w@y", 1, ["default"], seq=3)[0] == []
    assert active_entries(jobs_redis)["jobs:w:w@y:active"] == {h.id: "1", h2.id: "1"}


# -- real workers, real lost replies -----------------------------------------------------------


def test_tasks_of_a_claim_whose_reply_is_lost_run_once_promptly(app, jobs_redis, proxy,
                                                               proxied_worker):
    # Given a worker busy with a task that waits on a gate, and two tasks queued behind it
    # (the prefetch hold is long: a prefetched task given back to its queue, as it is when it
    # waits behind a running one, would be delivered again with attempt 2 on a slow machine)
    w = proxied_worker({"JOBS_WORKER_PREFETCH_HOLD": 30.0}, concurrency=1, prefetch=2)
    gate = basic.state_then_gate.delay("gate")
    wait_for(lambda: gate.state == "PROGRESS", 10, "the gate task to run")
    ids = [str(uuid.uuid4()) for _ in range(2)]
    for i, task_id in enumerate(ids):
        basic.record.apply_async((i,), task_id=task_id)
    assert sorted(queued_ids(jobs_redis)) == sorted(ids)
    # When the worker's next claim (carrying the gate task's outcome) runs on Redis but its
    # reply is lost
    proxy.arm(_sha(app, "claim"), ids[0].encode())
    jobs_redis.rpush("gate", "open")
    # Expect both tasks to run, once each, promptly (the orphan timeout is 60 s)
    wait_for(lambda: terminal(jobs_redis, ids), 10, "the tasks of the lost claim to run")
    assert len(proxy.lost) == 1 and ids[0].encode() in proxy.lost[0]
    assert _records(jobs_redis) == [0, 1]
    assert [field(jobs_redis, i, "att") for i in ids] == ["1", "1"]
    assert gate.get(timeout=10) == "released"
    # ... nothing left in the worker's active hash, nothing reaped, no write counted as stale
    # (the outcome the lost claim carried was applied, then sent again)
    wait_for(lambda: not active_entries(jobs_redis).get(f"jobs:w:{w.name}:active"), 10,
             "the active hash to empty")
    assert "reaped" not in stats(jobs_redis)
    assert "stale_writes" not in stats(jobs_redis)


def test_hand_over_whose_blpop_reply_is_lost_runs_once_promptly(app, jobs_redis, proxy,
                                                               proxied_worker, monkeypatch):
    # (an idle consumer blocks for 30 s instead of 1 s: it surely is blocked when the task
    # comes, and a lost task cannot come back with a claim after a timeout)
    monkeypatch.setattr(consumer_module, "IDLE_WAIT", 30.0)
    # Given an idle worker, blocked on its inbox
    w = proxied_worker(concurrency=1)
    wait_for(lambda: jobs_redis.sismember("jobs:idle:default", f"{w.name}|0")
             and any(c.get("cmd") == "blpop" for c in jobs_redis.client_list()), 10,
             "the worker to block on its inbox")
    # When a task is handed over to it, and the reply of its BLPOP is lost
    task_id = str(uuid.uuid4())
    proxy.arm(b"BLPOP", task_id.encode())
    r = basic.record.apply_async(("handed",), task_id=task_id)
    assert field(jobs_redis, task_id, "worker") == w.name
    # Expect the task to run once, promptly
    assert r.get(timeout=10) == "handed"
    assert len(proxy.lost) == 1 and task_id.encode() in proxy.lost[0]
    assert _records(jobs_redis) == ["handed"]
    assert field(jobs_redis, task_id, "att") == "1"
    wait_for(lambda: not active_entries(jobs_redis).get(f"jobs:w:{w.name}:active"), 10,
             "the active hash to empty")
    assert "stale_writes" not in stats(jobs_redis)
    # ... and the worker goes on serving
    assert basic.add.delay(2, 2).get(timeout=10) == 4
    assert _records(jobs_redis) == ["handed"]


# -- fencing still refuses zombies; our own write sent twice is no zombie ---------------------------


def test_write_sent_again_after_a_lost_reply_is_not_stale_but_a_zombies_is(app, jobs_redis,
                                                                           proxy):
    state = app.extensions["jobs"]
    broker, direct = state.broker, state.client
    # Given a task claimed by worker A, whose final write Redis applies but whose reply is lost
    lossy = redis.Redis.from_url(proxy.url)
    r = basic.add.delay(1, 2)
    [claimed], _, _ = broker.claim(lossy, "w@a", 1, ["default"], seq=1)
    proxy.arm(_sha(app, "write"), b":0\r\n")
    final = ("F", r.id, claimed.attempt, "SUCCESS", "json", b"3", "", "", "")
    with pytest.raises(redis.ConnectionError):
        broker.write(lossy, "w@a", [final])
    assert len(proxy.lost) == 1
    # When A sends it again (as the flusher does with writes put back, or a claim re-sent)
    # Expect the second application not to count as stale: it is our own, already applied
    assert broker.write(lossy, "w@a", [final]) == 0
    assert r.get(timeout=1) == 3
    assert "stale_writes" not in stats(jobs_redis)
    lossy.close()

    # Given a zombie Z whose task was given back (its heartbeat expired), then claimed by B
    z = basic.add.delay(2, 2)
    [zc], _, _ = broker.claim(direct, "w@zombie", 1, ["default"], seq=1)
    broker.unregister(direct, "w@zombie")
    zombie_final = ("F", z.id, zc.attempt, "SUCCESS", "json", b"666", "", "", "")
    # Expect Z's write to be refused and counted while the task waits ...
    assert broker.write(direct, "w@zombie", [zombie_final]) == 1
    [bc], _, _ = broker.claim(direct, "w@b", 1, ["default"], seq=1)
    assert bc.attempt == zc.attempt + 1
    assert broker.write(direct, "w@b", [("F", z.id, bc.attempt, "SUCCESS", "json", b"4", "",
                                         "", "")]) == 0
    # ... and after B's attempt finished (and a retry of Z's write too)
    assert broker.write(direct, "w@zombie", [zombie_final]) == 1
    assert broker.write(direct, "w@zombie", [zombie_final]) == 1
    assert stats(jobs_redis)["stale_writes"] == 3
    assert z.get(timeout=1) == 4


# -- bounded memory ----------------------------------------------------------------------------


def test_claim_records_are_removed_at_clean_shutdown(app, jobs_redis):
    # Given a worker that ran tasks (its consumers' claim records exist)
    w = BackgroundWorker(app, concurrency=2).start()
    try:
        assert basic.add.delay(1, 1).get(timeout=10) == 2
        # (each consumer records its claims from its first one on; the second may come later)
        wait_for(lambda: set(claim_records(jobs_redis, w.name)) >= {"0", "1"}, 10,
                 "a claim record of each consumer")
    finally:
        # When it stops
        w.stop()
    # Expect no record, and no key of that worker, left
    assert claim_records(jobs_redis, w.name) == {}
    assert not list(jobs_redis.scan_iter(f"jobs:w:{w.name}*"))


def test_claim_records_of_a_dead_worker_are_removed_by_the_reaper(app, jobs_redis,
                                                                  worker_process):
    state = app.extensions["jobs"]
    # Given a worker process that ran a task, then was killed
    w = worker_process("-P", "solo", "-n", "doomed")
    assert basic.add.delay(1, 1).get(timeout=10) == 2
    [name] = [m.decode() for m in jobs_redis.smembers("jobs:workers")
              if m.startswith(b"doomed:")]
    wait_for(lambda: claim_records(jobs_redis, name), 10, "its claim record")
    w.kill()
    # When its heartbeat has expired and a reaper runs (the lock may be held a moment)
    wait_for(lambda: not jobs_redis.exists(f"jobs:hb:{name}"), 10, "the heartbeat to expire")
    wait_for(lambda: state.broker.reap(state.client, "reaper", 100) >= 0
             and not jobs_redis.sismember("jobs:workers", name), 10, "a reaper pass")
    # Expect its claim records gone with the rest of its keys
    assert claim_records(jobs_redis, name) == {}
    assert not list(jobs_redis.scan_iter(f"jobs:w:{name}*"))
