"""Celery's canvas guide (docs/userguide/canvas.rst in celery/celery), example by example.

Each test runs one of the guide's examples with only the imports changed, on a real worker and
real Redis, and checks the value the guide prints.
"""
# ruff: noqa: B905 - the guide's zip() calls, as written there

from __future__ import annotations

import json

import pytest
from flask import Flask

from flask_jobs import (
    ChordError,
    GroupResult,
    Jobs,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    xmap,
    xstarmap,
)
from tests.apps.basic import (
    add,
    log_error,
    log_error_bound,
    log_error_id,
    mul,
    raising_task,
    record,
    tsum,
)
from tests.conftest import wait_for

T = 10  # seconds: the deadline of every wait


# -- Signatures ------------------------------------------------------------------------------


def test_signature_by_name_with_options(app):
    s = signature("tests.apps.basic.add", args=(2, 2), countdown=10)
    assert s.task == "tests.apps.basic.add" and s.args == (2, 2)
    assert s.options == {"countdown": 10}
    s = add.signature((2, 2), {"debug": True}, countdown=10)
    assert (s.args, s.kwargs, s.options) == ((2, 2), {"debug": True}, {"countdown": 10})
    assert add.s(2, 2, debug=True).kwargs == {"debug": True}
    assert add.s(2, 2).set(countdown=1).options == {"countdown": 1}


def test_signature_is_plain_json(app):
    s = add.s(2, 2).set(countdown=1)
    s.link(mul.s(4))
    data = json.loads(json.dumps(s))
    again = signature(data)
    assert (again.task, again.args, again.options["countdown"]) == (s.task, (2, 2), 1)
    assert again.options["link"][0]["task"] == "tests.apps.basic.mul"
    assert again == signature(json.loads(json.dumps(again)))


def test_calling_a_signature_runs_it_here(app, jobs_redis):
    assert add.s(2, 2)() == 4
    assert jobs_redis.keys("jobs:t:*") == []


def test_delay_apply_async_and_partials(app, jobs_worker):
    assert add.s(2, 2).delay().get(timeout=T) == 4
    assert add.signature((2, 2), countdown=0.01).apply_async().get(timeout=T) == 4
    partial = add.s(2)
    assert partial.delay(4).get(timeout=T) == 6
    assert partial.apply_async((4,)).get(timeout=T) == 6
    assert add.s(x=1).delay(y=2).get(timeout=T) == 3


def test_partial_kwargs_and_options_merge(app):
    s = add.s(2, 2)
    assert s.clone(kwargs={"debug": True}).kwargs == {"debug": True}
    s = add.signature((2, 2), countdown=10)
    assert s.clone(countdown=1).options["countdown"] == 1
    s = add.s(2)
    c = s.clone(args=(4,), kwargs={"debug": True})
    assert c.args == (4, 2) and c.kwargs == {"debug": True}


def test_immutable_signatures(app, jobs_redis, jobs_worker):
    assert add.signature((2, 2), immutable=True).immutable
    assert add.si(2, 2).immutable
    res = add.apply_async((2, 2), link=record.signature(("done",), immutable=True))
    assert res.get(timeout=T) == 4
    wait_for(lambda: jobs_redis.lrange("records", 0, -1), T)
    assert jobs_redis.lrange("records", 0, -1) == [b'"done"']


def test_invert_sends_and_waits(app, jobs_worker):
    assert ~add.s(2, 2) == 4


def test_callbacks_get_the_parent_result(app, jobs_worker):
    res = add.apply_async((2, 2), link=mul.s(16))
    assert res.get(timeout=T) == 4
    children = wait_for(lambda: res.children, T, "the callback to be recorded")
    assert children[0].get(timeout=T) == 64
    assert [(r.id, v) for r, v in res.collect()] == [(res.id, 4), (children[0].id, 64)]


def test_several_links_on_one_signature(app, jobs_redis, jobs_worker):
    s = add.s(2, 2)
    s.link(mul.s(4))
    s.link(record.s())
    assert s.delay().get(timeout=T) == 4
    wait_for(lambda: jobs_redis.lrange("records", 0, -1), T)
    assert jobs_redis.lrange("records", 0, -1) == [b"4"]


# -- errbacks: Celery's two styles -----------------------------------------------------------


def test_errback_taking_request_exc_traceback_is_called_in_the_worker(app, jobs_redis,
                                                                        jobs_worker):
    res = raising_task.s().on_error(log_error.s()).delay()
    with pytest.raises(ValueError, match="something"):
        res.get(timeout=T)
    wait_for(lambda: jobs_redis.lrange("errors", 0, -1), T, "the errback")
    task_id, exc, has_tb = json.loads(jobs_redis.lrange("errors", 0, -1)[0])
    assert task_id == res.id and "ValueError('something something')" == exc and has_tb
    # (called directly, as in Celery: no task record of its own)
    assert jobs_redis.keys("jobs:t:*") == [f"jobs:t:{res.id}".encode()]


def test_errbacks_with_one_argument_or_bound_are_sent_with_the_task_id(app, jobs_redis,
                                                                          jobs_worker):
    res = raising_task.apply_async(link_error=[log_error_id.s(), log_error_bound.s()])
    with pytest.raises(ValueError):
        res.get(timeout=T)
    wait_for(lambda: jobs_redis.lrange("error-ids", 0, -1), T)
    wait_for(lambda: jobs_redis.lrange("error-ids-bound", 0, -1), T)
    assert jobs_redis.lrange("error-ids", 0, -1) == [res.id.encode()]
    assert jobs_redis.lrange("error-ids-bound", 0, -1) == [res.id.encode()]


def test_group_errback_runs_once_per_failed_member(app, jobs_redis, jobs_worker):
    g = group(raising_task.s(), raising_task.s())
    g.link_error(log_error_id.s())
    res = g()
    with pytest.raises(ValueError):
        res.get(timeout=T)
    wait_for(lambda: jobs_redis.llen("error-ids") == 2, T)
    assert sorted(jobs_redis.lrange("error-ids", 0, -1)) == sorted(r.id.encode() for r in res)


# -- chain -----------------------------------------------------------------------------------


def test_chain_examples(app, jobs_worker):
    assert chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=T) == 16
    assert (add.s(2, 2) | add.s(4) | add.s(8))().get(timeout=T) == 16
    res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    assert res.get(timeout=T) == 16
    assert res.parent.get(timeout=T) == 8
    assert res.parent.parent.get(timeout=T) == 4


def test_chain_parents(app, jobs_worker):
    res = chain(add.s(4, 4), mul.s(8), mul.s(10))
    assert repr(res) == ("tests.apps.basic.add(4, 4) | tests.apps.basic.mul(8) | "
                         "tests.apps.basic.mul(10)")
    res = res()
    assert res.get(timeout=T) == 640
    assert res.parent.get(timeout=T) == 64
    assert res.parent.parent.get(timeout=T) == 8
    assert (add.s(2, 2) | mul.s(8) | mul.s(10)).apply_async().get(timeout=T) == 320


def test_partial_chain_called_with_an_argument(app, jobs_worker):
    c1 = add.s(4) | mul.s(8)
    assert c1(16).get(timeout=T) == 160


def test_chain_of_chains_flattens(app, jobs_worker):
    c2 = add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8))
    assert isinstance(c2, chain) and len(c2.tasks) == 4
    assert c2().get(timeout=T) == 352


def test_group_then_task_is_a_chord(app, jobs_worker):
    c3 = group(add.s(i, i) for i in range(10)) | tsum.s()
    assert isinstance(c3, chord)
    assert c3().get(timeout=T) == 90


def test_task_then_group(app, jobs_worker):
    res = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
    assert isinstance(res, GroupResult)
    assert res.get(timeout=T) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert res.parent.get(timeout=T) == 8


def test_group_of_one_is_unrolled_in_a_chain(app, jobs_worker):
    assert repr(chain(add.s(2, 2), group(add.s(1)), add.s(1))) == (
        "tests.apps.basic.add(2, 2) | tests.apps.basic.add(1) | tests.apps.basic.add(1)")
    assert chain(add.s(2, 2), group(add.s(1)), add.s(1))().get(timeout=T) == 6
    c = chain(add.s(2, 2), group(add.s(1), add.s(2)), tsum.s())
    assert c().get(timeout=T) == 5 + 6


def test_chain_in_a_group(app, jobs_worker):
    res = group(add.s(1, 1) | mul.s(10), add.s(2, 2) | mul.s(10), add.s(3, 3))()
    assert res.get(timeout=T) == [20, 40, 6]


def test_group_followed_by_group_and_task(app, jobs_worker):
    res = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s() | mul.s(2))()
    assert res.get(timeout=T) == 14


# -- group -----------------------------------------------------------------------------------


def test_group_examples(app, jobs_worker):
    g = group(add.s(2, 2), add.s(4, 4))
    res = g()
    assert res.get(timeout=T) == [4, 8]
    assert group(add.s(i, i) for i in range(100))().get(timeout=T) == [
        i + i for i in range(100)]


def test_group_results(app, jobs_worker):
    job = group([add.s(2, 2), add.s(4, 4), add.s(8, 8), add.s(16, 16), add.s(32, 32)])
    result = job.apply_async()
    assert result.get(timeout=T) == [4, 8, 16, 32, 64]
    assert result.ready() and result.successful() and not result.failed()
    assert not result.waiting() and result.completed_count() == 5
    assert result.join(timeout=T) == [4, 8, 16, 32, 64]
    assert [r.get(timeout=T) for r in result.children] == [4, 8, 16, 32, 64]


def test_group_result_save_and_restore(app, jobs_worker):
    result = group(add.s(i, i) for i in range(5)).apply_async()
    result.save()
    again = GroupResult.restore(result.id)  # from current_app, as in Celery
    assert again.id == result.id and again.get(timeout=T) == [0, 2, 4, 6, 8]
    assert GroupResult.restore("no-such-group") is None
    # a GroupResult built by hand and saved comes back too
    a, b = add.delay(1, 1), add.delay(2, 2)
    mine = GroupResult("hand-made", [a, b])
    mine.save()
    assert GroupResult.restore("hand-made").get(timeout=T) == [2, 4]
    mine.delete()
    assert GroupResult.restore("hand-made") is None


def test_group_get_propagates_the_first_failure_in_order(app, jobs_worker):
    res = group(add.s(1, 1), raising_task.s(), add.s(2, 2))()
    with pytest.raises(ValueError, match="something"):
        res.get(timeout=T)
    values = res.get(timeout=T, propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError) and values[2] == 4
    assert res.failed() and not res.successful() and res.completed_count() == 2


def test_group_skew(app, jobs_worker):
    g = add.chunks(zip(range(10), range(10)), 2).group()
    g.skew(start=0, stop=0.1, step=0.05)
    assert [m.options["countdown"] for m in g.tasks] == [0, 0.05, 0.1, 0.1, 0.1]
    assert g().get(timeout=T) == [[0, 2], [4, 6], [8, 10], [12, 14], [16, 18]]


# -- chord -----------------------------------------------------------------------------------


def test_chord_examples(app, jobs_worker):
    res = chord((add.s(i, i) for i in range(10)), tsum.s())()
    assert res.get(timeout=T) == 90
    callback = tsum.s()
    header = [add.s(i, i) for i in range(100)]
    result = chord(header)(callback)
    assert result.get(timeout=T) == 9900 == sum(i + i for i in range(100))
    assert isinstance(result.parent, GroupResult) and len(result.parent) == 100


def test_chord_with_an_immutable_body(app, jobs_worker):
    assert chord([add.s(1, 1), add.s(2, 2)], add.si(10, 10))().get(timeout=T) == 20


def test_chord_error(app, jobs_redis, jobs_worker):
    c = chord([add.s(4, 4), raising_task.s(), add.s(8, 8)])
    result = c(tsum.s())
    with pytest.raises(ChordError) as info:
        result.get(timeout=T)
    failed = result.parent[1].id
    assert str(info.value) == (f"Dependency {failed} raised "
                               "ValueError('something something')")
    assert result.parent[2].get(timeout=T) == 16  # the rest of the header still runs


def test_chord_errback_runs_once(app, jobs_redis, jobs_worker):
    result = (group(raising_task.s() for _ in range(3)) |
              tsum.s().on_error(log_error.s())).delay()
    with pytest.raises(ChordError):
        result.get(timeout=T)
    wait_for(lambda: jobs_redis.lrange("errors", 0, -1), T, "the chord's errback")
    task_id, exc, _ = json.loads(jobs_redis.lrange("errors", 0, -1)[0])
    assert task_id == result.id and exc.startswith('ChordError("Dependency ')
    assert jobs_redis.llen("errors") == 1


def test_chord_with_a_failing_body_runs_its_errback(app, jobs_redis, jobs_worker):
    result = chord([add.s(1, 1)], raising_task.si().on_error(log_error_id.s()))()
    with pytest.raises(ValueError):
        result.get(timeout=T)
    wait_for(lambda: jobs_redis.lrange("error-ids", 0, -1), T)
    assert jobs_redis.lrange("error-ids", 0, -1) == [result.id.encode()]


def test_chord_of_one_thousand(app, jobs_worker):
    result = chord(add.s(i, i) for i in range(1000))(tsum.s())
    assert result.get(timeout=30) == sum(i + i for i in range(1000))


def test_chord_in_a_chain_and_a_chain_in_a_chord(app, jobs_worker):
    res = (add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()) | mul.s(10))()
    assert res.get(timeout=T) == ((2 + 1) + (2 + 2)) * 10
    res = chord([add.s(1, 1) | mul.s(3), add.s(2, 2) | mul.s(3)], tsum.s())()
    assert res.get(timeout=T) == 6 + 12


def test_nested_chords(app, jobs_worker):
    inner = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    res = chord([inner, add.s(10, 10)], tsum.s())()
    assert res.get(timeout=T) == 6 + 20
    # a chord as a body: each of its header's members gets the outer header's list
    res = chord([add.s(1, 1), add.s(2, 2)], chord([tsum.s(), tsum.s()], tsum.s()))()
    assert res.get(timeout=T) == 6 + 6


def test_chord_with_an_empty_header_runs_the_body_with_an_empty_list(app, jobs_worker):
    assert chord([], tsum.s())().get(timeout=T) == 0


def test_canvas_by_name_from_an_app_that_has_none_of_the_tasks(app, jobs_redis_url,
                                                                jobs_worker):
    # A second app on the same Redis, with no task registered: it sends workflows by name
    # only; the worker (of the test app) runs them.
    sender = Flask("sender")
    sender.config["JOBS_BROKER_URL"] = jobs_redis_url
    sender_jobs = Jobs(sender)
    assert not [n for n in sender_jobs.tasks if n.startswith("tests.")]
    with sender.app_context():
        header = [signature("tests.apps.basic.add", args=(i, i)) for i in range(5)]
        body = signature("tests.apps.basic.tsum")
        assert chord(header, body)().get(timeout=T) == 20
        c = json.loads(json.dumps(chord(header, body)))  # plain JSON, as a message carries it
        assert maybe_signature(c).apply_async().get(timeout=T) == 20
        pipeline = (signature("tests.apps.basic.add", args=(2, 2))
                    | signature("tests.apps.basic.mul", args=(10,)))
        assert pipeline().get(timeout=T) == 40
        assert group(signature("tests.apps.basic.add", args=(i, i)) for i in range(3))().get(
            timeout=T) == [0, 2, 4]


def test_revoking_a_chord(app, jobs_redis):
    result = chord([add.s(1, 1), add.s(2, 2)], tsum.s())()
    result.parent.revoke()
    result.revoke()
    assert result.state == "REVOKED"
    assert [r.state for r in result.parent] == ["REVOKED", "REVOKED"]


# -- map, starmap, chunks --------------------------------------------------------------------


def test_map_and_starmap(app, jobs_worker):
    assert ~tsum.map([list(range(10)), list(range(100))]) == [45, 4950]
    assert ~add.starmap(zip(range(10), range(10))) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert add.starmap(zip(range(3), range(3))).apply_async(countdown=0.01).get(timeout=T) \
        == [0, 2, 4]
    assert isinstance(tsum.map([[1]]), xmap) and isinstance(add.starmap([(1, 1)]), xstarmap)


def test_chunks(app, jobs_worker):
    c = add.chunks(zip(range(100), range(100)), 10)
    assert isinstance(c, chunks)
    res = c()
    assert res.get(timeout=T) == [[i + i for i in range(j, j + 10)] for j in range(0, 100, 10)]
    assert add.chunks(zip(range(100), range(100)), 10).apply_async().get(timeout=T) == \
        res.get(timeout=T)
    g = add.chunks(zip(range(100), range(100)), 10).group()
    assert isinstance(g, group) and len(g) == 10


def test_chord_in_eager_mode(app, jobs_eager, jobs_redis):
    assert chord((add.s(i, i) for i in range(10)), tsum.s())().get() == 90
    assert (group(add.s(i, i) for i in range(3)) | tsum.s())().get() == 6
    assert ~tsum.map([[1, 2], [3]]) == [3, 3]
    assert jobs_redis.keys("jobs:*") == []
