"""Canvas: signatures, group (one round trip), chain, and Celery's idioms."""

from __future__ import annotations

import uuid

import pytest

from flask_jobs import GroupResult, Signature, chain, chord, group, signature
from flask_jobs.exceptions import EncodeError, TaskRevokedError
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.apps import basic as tasks
from tests.apps.basic import CustomError
from tests.conftest import wait_for


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


def evalsha_calls(client) -> int:
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_signature_fields_clone_set(app):
    sig = basic.add.s(2)
    assert isinstance(sig, Signature) and isinstance(sig, dict)
    assert sig.name == sig["task"] == "tests.apps.basic.add"
    assert sig.args == (2,) and sig.kwargs == {} and sig.options == {}
    assert not sig.immutable
    assert repr(sig) == "tests.apps.basic.add(2)"

    clone = sig.clone(args=(1,), countdown=3)
    assert clone.args == (1, 2) and clone.options == {"countdown": 3}
    assert sig.args == (2,) and sig.options == {}  # the original is untouched

    assert sig.set(queue="other") is sig
    assert sig.options == {"queue": "other"}

    assert signature(dict(sig)) == sig  # a plain dict (as in a message) comes back
    assert basic.add.signature((1, 2), {}, countdown=1).options == {"countdown": 1}


def test_immutable_signature_ignores_partial_args(app):
    sig = basic.add.si(1, 1)
    assert sig.immutable
    assert sig.clone(args=(99,)).args == (1, 1)


def test_signature_delay_and_apply_async(app, jobs_worker):
    assert basic.add.s(2).delay(3).get(timeout=10) == 5
    assert basic.add.s(2, 3)() == 5  # called, a signature runs here (as in Celery)
    result = basic.request_info.s(1).set(headers={"h": 1}).apply_async((0,))
    info = result.get(timeout=10)
    assert info["args"] == [0, 1] and info["headers"] == {"h": 1}


def test_signature_by_name(app, jobs_worker):
    assert Signature("tests.apps.basic.mul", (6, 7), app=basic.jobs).delay().get(timeout=10) == 42


def test_signature_apply_runs_here(app, jobs_redis):
    result = basic.add.s(2).apply((5,))
    assert result.get() == 7
    assert stored_keys(jobs_redis) == []


def test_group(app, jobs_worker):
    result = group(basic.add.s(i, i) for i in range(10)).apply_async()
    assert isinstance(result, GroupResult)
    assert len(result) == 10
    assert result.get(timeout=10) == [2 * i for i in range(10)]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10
    assert [r.get(timeout=1) for r in result.results] == [2 * i for i in range(10)]
    assert result.children == result.results


def test_group_with_a_failure(app, jobs_worker):
    result = group(basic.add.s(1, 1), basic.fail.s("one bad"), basic.add.s(2, 2))()
    with pytest.raises(CustomError, match="one bad"):
        result.get(timeout=10)
    wait_for(result.ready, message="every member to finish")
    assert result.failed() and not result.successful()
    assert result.completed_count() == 2
    values = result.get(timeout=10, propagate=False)
    assert values[0] == 2 and values[2] == 4 and isinstance(values[1], CustomError)


def test_group_restore_by_id(app, jobs_worker):
    sent = group(basic.mul.s(i, 3) for i in range(5))()
    restored = basic.jobs.GroupResult(sent.id)
    assert restored.id == sent.id
    assert [r.id for r in restored.results] == [r.id for r in sent.results]
    assert restored.get(timeout=10) == [0, 3, 6, 9, 12]
    assert restored.completed_count() == 5


def test_group_messages_in_one_round_trip(app, jobs_redis):
    basic.add.delay(0, 0)  # the enqueue script is loaded now, so no NOSCRIPT retry below
    before = evalsha_calls(jobs_redis)
    result = group(basic.add.s(i, 1) for i in range(50)).apply_async()
    assert evalsha_calls(jobs_redis) - before == 1
    assert len(result) == 50
    assert all(jobs_redis.hget(f"jobs:t:{r.id}", "state") == b"PENDING" for r in result)
    assert jobs_redis.lrange(f"jobs:g:{result.id}", 0, -1) == [r.id.encode() for r in result]


def test_a_repeated_signature_is_sent_as_tasks_of_their_own(app, jobs_redis):
    # Given one signature repeated over several script calls' worth of messages
    # (ENQUEUE_CHUNK each), and a connection of the line that Redis has closed, so the first
    # send fails and is sent again with every id checked
    from flask_jobs.broker import ENQUEUE_CHUNK

    n = ENQUEUE_CHUNK * 2 + 500
    basic.add.delay(0, 0)
    jobs_redis.delete("jobs:q:default:5")
    jobs_redis.client_kill_filter(_type="normal", skipme=True)
    sig = basic.add.s(2, 3)
    # When the group is sent
    result = group([sig] * n).apply_async()
    # Expect n tasks with distinct random (UUID4) ids, each queued once, in the group's order
    ids = [r.id for r in result]
    assert len(set(ids)) == n
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    queued = [x.decode() for x in jobs_redis.lrange("jobs:q:default:5", 0, -1)]
    assert sorted(queued) == sorted(ids)
    assert jobs_redis.lrange(f"jobs:g:{result.id}", 0, -1) == [i.encode() for i in ids]
    # ... each with its own record holding the one encoded message
    bodies = {jobs_redis.hget(f"jobs:t:{i}", "body") for i in ids[::97]}
    assert len(bodies) == 1 and None not in bodies


def test_group_with_one_bad_member_sends_nothing(app, jobs_redis):
    with pytest.raises(TypeError):
        group(basic.add.s(1, 1), basic.add.s(1, 2, 3), basic.add.s(2, 2)).apply_async()
    with pytest.raises(EncodeError, match="argument 1"):
        group(basic.add.s(1, 1), basic.add.s(1, object())).apply_async()
    assert stored_keys(jobs_redis) == []


def test_empty_group(app):
    result = group([]).apply_async()
    assert result.results == [] and result.get(timeout=1) == []


def test_chain(app, jobs_worker):
    result = chain(basic.add.s(2, 2), basic.add.s(4), basic.mul.s(8))()
    assert result.get(timeout=10) == 64
    assert result.parent.get(timeout=10) == 8
    assert result.parent.parent.get(timeout=10) == 4
    assert result.parent.parent.parent is None
    assert result.name == "tests.apps.basic.mul"
    assert result.parent.parent.name == "tests.apps.basic.add"


def test_chain_with_pipe(app, jobs_worker):
    assert (basic.add.s(1, 2) | basic.mul.s(10) | basic.add.s(1))().get(timeout=10) == 31


def test_chain_with_immutable_signature(app, jobs_worker):
    result = chain(basic.add.s(1, 1), basic.add.si(10, 10), basic.mul.s(2))()
    assert result.get(timeout=10) == 40
    assert result.parent.get(timeout=10) == 20
    assert result.parent.parent.get(timeout=10) == 2


def test_chain_stops_at_a_failure_and_its_result_raises(app, jobs_redis, jobs_worker):
    result = chain(basic.add.s(1, 1), basic.fail.s(), basic.record.s(key="chain-after"),
                   basic.record.s(key="chain-after"))()
    # As in Celery: the rest of the chain never runs, and waiting on its result raises the
    # error instead of hanging.
    with pytest.raises(CustomError, match="2"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    assert result.parent.state == "FAILURE"
    assert isinstance(result.parent.result, CustomError)
    assert result.parent.parent.state == "FAILURE"  # the task that failed
    assert "CustomError" in result.traceback
    assert result.parent.parent.parent.get(timeout=1) == 2
    assert jobs_redis.lrange("chain-after", 0, -1) == []


def test_link_callback_is_not_failed_with_its_parent(app, jobs_redis, jobs_worker):
    failed = basic.fail.apply_async(link=basic.record.s(key="cb"))
    with pytest.raises(CustomError):
        failed.get(timeout=10)
    assert jobs_redis.lrange("cb", 0, -1) == []
    assert jobs_redis.keys("jobs:t:*") == [f"jobs:t:{failed.id}".encode()]


def test_chain_with_partial_args(app, jobs_worker):
    assert chain(basic.add.s(1), basic.mul.s(3)).delay(2).get(timeout=10) == 9


def test_link_option(app, jobs_redis, jobs_worker):
    first = basic.add.apply_async((3, 4), link=basic.record.s(key="linked"))
    assert first.get(timeout=10) == 7
    wait_for(lambda: jobs_redis.lrange("linked", 0, -1), message="the linked task")
    assert jobs_redis.lrange("linked", 0, -1) == [b"7"]


def test_link_error_option(app, jobs_redis, jobs_worker):
    # (an errback of one argument is sent as a task with the failed task's id; one taking
    # more is called in the worker: test_canvas_celery.py)
    failed = basic.fail.apply_async(("x",), link_error=basic.log_error_id.s())
    with pytest.raises(CustomError):
        failed.get(timeout=10)
    wait_for(lambda: jobs_redis.lrange("error-ids", 0, -1), message="the error callback")
    assert jobs_redis.lrange("error-ids", 0, -1) == [failed.id.encode()]


def test_seed_idioms(app, jobs_worker):
    assert group(tasks.add.s(i, i) for i in range(10))().get(timeout=10) == [
        0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert chain(tasks.add.s(2, 2), tasks.add.s(5), tasks.mul.s(8))().get(timeout=10) == 72
    # header: [3, 12]; body: xsum([3, 12])
    promise = chord(header=[tasks.add.s(1, 2), tasks.mul.s(3, 4)], body=tasks.xsum.s())()
    assert promise.get(timeout=10) == 15


def test_canvas_in_eager_mode(app, jobs_eager, jobs_redis):
    assert group(basic.add.s(i, i) for i in range(3))().get() == [0, 2, 4]
    assert chain(basic.add.s(2, 2), basic.add.s(5), basic.mul.s(8))().get() == 72
    assert stored_keys(jobs_redis) == []


def test_chain_status_reads_pending_before_the_chain_gets_there(app, jobs_redis):
    # Given a chain sent while no worker runs: only its first task is queued
    result = chain(basic.add.s(2, 2), basic.add.s(4), basic.mul.s(8))()
    # Expect its status URL (its last task's) to say PENDING, not unknown (404), at once
    client = app.test_client()
    for r in (result, result.parent):
        resp = client.get(f"/jobs/status/{r.id}")
        assert resp.status_code == 200 and resp.get_json()["state"] == "PENDING"
    assert app.extensions["jobs"].broker.queue_length("default") == 1
    # When a worker runs it, Expect the placeholders replaced by the real tasks
    with BackgroundWorker(app):
        assert result.get(timeout=10) == 64
    assert client.get(f"/jobs/status/{result.id}").get_json()["state"] == "SUCCESS"
    assert jobs_redis.hget(f"jobs:t:{result.id}", "ph") is None


def test_chain_result_revoked_before_the_chain_gets_there_never_runs(app, jobs_redis):
    result = chain(basic.add.s(1, 1), basic.add.s(1), basic.record.s(key="never"))()
    result.revoke()
    assert result.state == "REVOKED"
    with BackgroundWorker(app):
        assert result.parent.get(timeout=10) == 3
        with pytest.raises(TaskRevokedError):
            result.get(timeout=10)
    assert jobs_redis.lrange("never", 0, -1) == []


def test_chain_task_revoked_before_the_chain_gets_there_ends_the_chain(app, jobs_redis):
    # Given a chain whose middle task is revoked before the chain gets to it
    result = chain(basic.add.s(1, 1), basic.record.s(key="never"), basic.record.s(key="never"))()
    result.parent.revoke()
    # Expect the tasks after it never to run, and waiting on the chain to raise, not hang
    with BackgroundWorker(app):
        assert result.parent.parent.get(timeout=10) == 2
        with pytest.raises(TaskRevokedError):
            result.get(timeout=10)
    assert result.parent.state == result.state == "REVOKED"
    assert jobs_redis.lrange("never", 0, -1) == []


def test_chain_placeholders_expire_like_results(app, jobs_redis):
    result = chain(basic.add.s(1, 1), basic.add.s(1))()
    ttl = jobs_redis.pttl(f"jobs:t:{result.id}")
    assert 0 < ttl <= app.config["JOBS_RESULT_EXPIRES"] * 1000
    assert jobs_redis.pttl(f"jobs:t:{result.parent.id}") == -1  # the queued one holds a message


def test_chain_link_with_wrong_arguments_fails_the_chain(app, jobs_worker):
    # add.s(1, 2) gets the parent's result as a third argument: add() takes two.
    result = chain(basic.add.s(1, 1), basic.add.s(1, 2), basic.mul.s(2))()
    with pytest.raises(TypeError, match="Wrong arguments for task 'tests.apps.basic.add'"):
        result.get(timeout=10)
    assert result.parent.state == "FAILURE"
    assert result.parent.parent.get(timeout=1) == 2


def test_a_long_chain_runs_to_its_end(app, jobs_worker):
    # Each step carries the rest of the chain as a flat list (not nested callbacks), so a
    # chain of any length runs: 500 steps here.
    result = chain(basic.add.s(0, 0), *[basic.add.s(1) for _ in range(499)])()
    assert result.get(timeout=60) == 499
    assert result.parent.get(timeout=1) == 498


def test_two_chords_in_a_chain_then_a_task(app, jobs_worker):
    res = (chord([basic.add.s(1, 1), basic.add.s(2, 2)], basic.xsum.s())
           | chord([basic.add.s(10), basic.add.s(20)], basic.xsum.s())
           | basic.mul.s(2))()
    assert res.get(timeout=10) == ((6 + 10) + (6 + 20)) * 2


def test_a_failure_inside_a_chord_of_a_chain_ends_the_chain(app, jobs_worker):
    res = (basic.add.s(1, 1) | chord([basic.add.s(1), basic.fail.si()], basic.xsum.s())
           | basic.mul.s(2))()
    with pytest.raises(Exception, match="Dependency"):
        res.get(timeout=10)
    assert res.state == "FAILURE"
