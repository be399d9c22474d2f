"""Poison is quarantined (DESIGN.md §3.6): real workers meet a task that kills its process, an
unknown task name, an id without a record, an undecodable or refused body. Each ends in the
dead-letter list with its reason, and the worker keeps serving. ``flask jobs dlq requeue`` sends a
dead letter again.
"""

from __future__ import annotations

import uuid

import pytest

from flask_jobs import group
from flask_jobs.cli import jobs_cli
from flask_jobs.exceptions import DeadLetteredError
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import dead_letters, field, stats, terminal


def _letter(r, task_id):
    return next((d for d in dead_letters(r) if d["id"] == task_id), None)


def test_poison_pill_is_dead_lettered_and_bystanders_succeed(app, jobs_redis, worker_process):
    # Given a prefork worker allowed 2 deliveries per task, and a task that SIGKILLs the
    # process running it, sent in one batch with normal tasks (so children prefetch both)
    w = worker_process("-P", "prefork", "-c", "2", env={"JOBS_MAX_DELIVERIES": "2"})
    g = group([basic.kill_self.s()] + [basic.add.s(i, i) for i in range(30)]).apply_async()
    poison, normal = g[0], list(g)[1:]
    # When the children die on it again and again
    wait_for(lambda: terminal(jobs_redis, [r.id for r in g]), 40, "every task to settle")
    # Expect the poison to be dead-lettered with a reason after exactly 2 deliveries
    assert poison.state == "FAILURE"
    with pytest.raises(DeadLetteredError, match="delivered 2 times"):
        poison.get(timeout=1)
    assert field(jobs_redis, poison.id, "att") == "2"
    letter = _letter(jobs_redis, poison.id)
    assert letter and letter["name"] == "tests.apps.basic.kill_self"
    assert "delivered 2 times" in letter["reason"]
    # ... every other task to succeed: none is dead-lettered for dying next to it
    assert [r.get(timeout=1) for r in normal] == [i * 2 for i in range(30)]
    assert [d["id"] for d in dead_letters(jobs_redis)] == [poison.id]
    # ... and the worker to keep serving with fresh children
    assert w.proc.poll() is None
    assert basic.add.delay(5, 5).get(timeout=10) == 10
    assert "died while running" in w.output()


def test_unknown_task_name_is_dead_lettered(app, jobs_redis, worker_process):
    w = worker_process("-P", "solo")
    r = app.extensions["jobs"].jobs.send_task("no.such.task", [1, 2])
    wait_for(lambda: r.state == "FAILURE", 10, "the unknown task to be dead-lettered")
    letter = _letter(jobs_redis, r.id)
    assert letter["name"] == "no.such.task"
    assert "no.such.task" in letter["reason"] and "not registered" in letter["reason"]
    assert field(jobs_redis, r.id, "reason") == letter["reason"]
    assert "no.such.task" in w.output()  # logged
    # the worker keeps running
    assert basic.add.delay(1, 2).get(timeout=10) == 3
    assert w.proc.poll() is None


def test_id_without_record_is_dead_lettered(app, jobs_redis, worker_process):
    w = worker_process("-P", "solo")
    garbage = f"garbage-{uuid.uuid4()}"
    jobs_redis.lpush("jobs:q:default:5", garbage)  # straight into the queue, no record
    wait_for(lambda: _letter(jobs_redis, garbage), 10, "the garbage id to be dead-lettered")
    assert "record missing" in _letter(jobs_redis, garbage)["reason"]
    assert not jobs_redis.exists(f"jobs:t:{garbage}")  # no fake record is created
    assert basic.add.delay(1, 2).get(timeout=10) == 3
    assert w.proc.poll() is None
    assert stats(jobs_redis)["dead"] == 1


@pytest.mark.parametrize("ctype, body, reason", [
    ("json", b"{not json", "Cannot decode 'json'"),
    ("json", b"\xff\xfe\x00garbage", "Cannot decode 'json'"),
    ("pickle", b"cos\nsystem\n(S'echo pwned'\ntR.", "Refusing to decode content type 'pickle'"),
], ids=["truncated-json", "binary", "pickle-refused"])
def test_undecodable_body_is_dead_lettered(app, jobs_redis, worker_process, ctype, body, reason):
    # Given a queued record whose message cannot (or must not) be decoded, between good ones
    before = basic.add.delay(1, 1)
    bad = basic.add.delay(2, 2)
    jobs_redis.hset(f"jobs:t:{bad.id}", mapping={"ctype": ctype, "body": body})
    after = basic.add.delay(3, 3)
    # When a worker fetches it
    w = worker_process("-P", "solo")
    # Expect it dead-lettered with the reason, and the good ones to run
    assert before.get(timeout=10) == 2 and after.get(timeout=10) == 6
    wait_for(lambda: bad.state == "FAILURE", 10, "the bad message to be dead-lettered")
    assert reason in _letter(jobs_redis, bad.id)["reason"]
    with pytest.raises(DeadLetteredError):
        bad.get(timeout=1)
    assert w.proc.poll() is None


# -- the rules behind it, script by script (no heartbeat for "w@dead": the reaper finds it dead)


def _claim(app, worker, n, writes=()):
    st = app.extensions["jobs"]
    claimed, _, _ = st.broker.claim(st.client, worker, n, ["default"], writes)
    return [(t.id, t.suspect) for t in claimed]


def _done(claimed_id):
    return ("F", claimed_id, 1, "SUCCESS", "json", "1", "", "", "")


def test_reaper_counts_a_lone_task_and_makes_suspects_of_a_batch(app, jobs_redis):
    st = app.extensions["jobs"]
    a, b, c = (basic.add.delay(i, 1) for i in range(3))
    # Given a dead worker that held two tasks, and another that held one
    assert len(_claim(app, "w@dead", 2)) == 2
    assert len(_claim(app, "w@dead2", 1)) == 1
    jobs_redis.sadd("jobs:workers", "w@dead", "w@dead2")
    # When the reaper gives them back
    assert st.broker.reap(st.client, "w@reaper", 1000) == 3
    # Expect the lone one to keep its delivery, and the two to lose theirs and become suspects
    assert [(field(jobs_redis, t.id, "dlv"), field(jobs_redis, t.id, "sus")) for t in (a, b)] \
        == [("0", "1"), ("0", "1")]
    assert (field(jobs_redis, c.id, "dlv"), field(jobs_redis, c.id, "sus")) == ("1", None)


def test_a_suspect_is_claimed_alone_and_one_at_a_time(app, jobs_redis):
    a, s1, s2, b = (basic.add.delay(i, 1) for i in range(4))
    for t in (s1, s2):
        jobs_redis.hset(f"jobs:t:{t.id}", "sus", "1")
    # A claim ends before a suspect
    assert _claim(app, "w@x", 10) == [(a.id, False)]
    # The next claim takes it alone (a's outcome rides on it, as a consumer's would)
    assert _claim(app, "w@x", 10, [_done(a.id)]) == [(s1.id, True)]
    # While the worker holds one suspect, another consumer of it gets nothing
    assert _claim(app, "w@x", 10) == []
    # Once it is done, the next suspect comes, alone; then the rest
    assert _claim(app, "w@x", 10, [_done(s1.id)]) == [(s2.id, True)]
    assert _claim(app, "w@x", 10, [_done(s2.id)]) == [(b.id, False)]
    # A retry clears the mark: it ran to its end, so it was not what killed a worker
    assert field(jobs_redis, s2.id, "sus") == "1"
    r = basic.add.delay(9, 1)
    jobs_redis.hset(f"jobs:t:{r.id}", "sus", "1")
    assert _claim(app, "w@x", 10, [_done(b.id)]) == [(r.id, True)]
    st = app.extensions["jobs"]
    st.broker.write(st.client, "w@x", [("R", r.id, 1, "RETRY", "json", "{}", "", "0", "")])
    assert field(jobs_redis, r.id, "sus") is None


def test_suspect_runs_alone_in_a_threads_worker(app, jobs_redis, worker_process):
    # Given a threads worker running a task that waits for the test
    worker_process("-P", "threads", "-c", "2", "--prefetch", "1")
    blocker = basic.counted_gate.delay("release")
    wait_for(lambda: blocker.state == "PROGRESS", 10, "the first task to run")
    # When a suspect (as the reaper leaves a task a dead worker held among others) is queued
    suspect = basic.counted_record.apply_async(["seen"], queue="parked")
    jobs_redis.hset(f"jobs:t:{suspect.id}", mapping={"sus": "1", "queue": "default"})
    assert jobs_redis.lmove("jobs:q:parked:5", "jobs:q:default:5", "RIGHT", "LEFT")
    jobs_redis.rpush("jobs:wake:default", "1")
    # and claimed by the other thread while the first task still runs
    wait_for(lambda: field(jobs_redis, suspect.id, "att") == "1", 10, "the suspect's claim")
    jobs_redis.rpush("release", "go")
    # Expect it to have run alone: after the first task, not beside it
    assert blocker.get(timeout=10) is True
    suspect.get(timeout=10)
    assert jobs_redis.lrange("seen", 0, -1) == [b"1"]


def test_dlq_requeue_runs_task_after_deploy(app, jobs_redis, worker_process):
    # Given an old worker that does not know a task yet: it dead-letters it
    old = worker_process("-P", "solo")
    r = app.extensions["jobs"].jobs.send_task("tests.late_deployed", [4])
    wait_for(lambda: _letter(jobs_redis, r.id), 10, "the unknown task to be dead-lettered")
    assert old.stop() == 0
    # When a new worker that knows it is deployed and the operator requeues the dead letter
    worker_process("-P", "solo", env={"JOBS_TEST_LATE_DEPLOY": "1"})
    result = app.test_cli_runner().invoke(jobs_cli, ["dlq", "requeue", r.id])
    assert result.exit_code == 0, result.output
    # Expect it to run this time, and to leave the dead-letter list
    assert r.get(timeout=10) == 40
    assert _letter(jobs_redis, r.id) is None


@pytest.mark.parametrize("pool", [
    ("-P", "solo", "--prefetch", "3"),
    ("-P", "threads", "-c", "2", "--prefetch", "2"),
], ids=["solo", "threads"])
def test_poison_pill_neighbours_survive(app, jobs_redis, worker_process, pool):
    # Given a poison pill queued in front of four normal tasks, workers that prefetch several
    # tasks (so a crash leaves the reaper several held tasks and no word of which one ran), and
    # 2 deliveries allowed
    env = {"JOBS_MAX_DELIVERIES": "2"}
    g = group([basic.kill_self.s()] + [basic.add.s(i, i) for i in range(4)]).apply_async()
    # When workers keep dying on it (each restarted, as a supervisor would)
    deaths = 0
    for _ in range(6):
        w = worker_process(*pool, env=env, ready=False)
        wait_for(lambda w=w: w.proc.poll() is not None or terminal(jobs_redis, [g[0].id]), 20,
                 "the worker to die on the poison, or the poison to be dead-lettered")
        if terminal(jobs_redis, [g[0].id]):
            break
        deaths += 1
    if w.proc.poll() is not None:
        worker_process(*pool, env=env)
    # Expect the poison dead-lettered after its 2 counted deliveries, and its neighbours to
    # succeed, each counted once
    wait_for(lambda: terminal(jobs_redis, [r.id for r in g]), 20, "every task to settle")
    assert g[0].state == "FAILURE"
    assert "delivered 2 times" in _letter(jobs_redis, g[0].id)["reason"]
    assert [r.state for r in g.results[1:]] == ["SUCCESS"] * 4
    assert [field(jobs_redis, r.id, "dlv") for r in g.results[1:]] == ["1"] * 4
    assert deaths <= 3  # one on the batch, then one per counted delivery
