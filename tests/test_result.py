"""AsyncResult: fields, waiting, exceptions, forget, revoke, expiry, and no busy polling."""

from __future__ import annotations

import datetime as dt
import gc
import json

import pytest

from flask_jobs import AsyncResult
from flask_jobs.exceptions import TaskRevokedError, TimeoutError
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.apps.basic import CustomError
from tests.conftest import wait_for


def test_success_fields(app, jobs_worker):
    result = basic.add.delay(4, 5)
    assert result.get(timeout=10) == 9
    assert result.id == result.task_id
    assert result.state == result.status == "SUCCESS"
    assert result.result == result.info == 9
    assert result.traceback is None
    assert result.ready() and result.successful() and not result.failed()
    assert result.exists()
    assert result.name == "tests.apps.basic.add"
    assert result.worker.startswith("worker@test")
    done = result.date_done
    assert isinstance(done, dt.datetime) and done.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - done).total_seconds()) < 60
    assert result.wait(timeout=1) == 9  # wait is get


def test_pending_fields(app, jobs_redis):
    result = basic.add.delay(1, 1)  # no worker
    assert result.state == "PENDING"
    assert result.result is None and result.date_done is None
    assert not result.ready() and not result.successful() and not result.failed()
    assert result.exists()


def test_failure_with_custom_error(app, jobs_worker):
    result = basic.fail.delay("it broke")
    with pytest.raises(CustomError) as info:
        result.get(timeout=10)
    assert type(info.value) is CustomError  # importable here, so the very same class
    assert str(info.value) == "it broke"
    assert result.state == "FAILURE"
    assert result.failed() and result.ready() and not result.successful()
    assert "Traceback (most recent call last)" in result.traceback
    assert "CustomError: it broke" in result.traceback
    assert "def fail" in result.traceback or "raise CustomError" in result.traceback
    assert result.date_done is not None


def test_failure_with_builtin_error_is_exactly_that_error(app, jobs_worker):
    result = basic.fail_builtin.delay()
    with pytest.raises(KeyError) as info:
        result.get(timeout=10)
    assert type(info.value) is KeyError
    assert info.value.args == ("missing",)
    assert str(info.value) == str(KeyError("missing"))


def test_get_propagate_false_returns_the_exception(app, jobs_worker):
    result = basic.fail.delay("quietly")
    exc = result.get(timeout=10, propagate=False)
    assert isinstance(exc, CustomError) and str(exc) == "quietly"
    assert isinstance(result.result, CustomError)


def test_get_timeout(app, jobs_redis):
    result = basic.add.delay(1, 2)  # no worker runs it
    with pytest.raises(TimeoutError, match=result.id):
        result.get(timeout=0.2)
    assert result.state == "PENDING"


def test_get_after_the_fact_and_from_other_objects(app, jobs_worker):
    sent = basic.mul.delay(6, 7)
    assert sent.get(timeout=10) == 42
    assert basic.jobs.AsyncResult(sent.id).get(timeout=1) == 42
    assert basic.mul.AsyncResult(sent.id).get(timeout=1) == 42
    assert AsyncResult(sent.id).get(timeout=1) == 42  # from the current app
    assert basic.jobs.AsyncResult(sent.id) == sent
    assert basic.mul.AsyncResult(sent.id).name == "tests.apps.basic.mul"


def test_unknown_id_is_pending_but_does_not_exist(app):
    result = basic.jobs.AsyncResult("never-sent")
    assert result.state == "PENDING"
    assert result.exists() is False
    assert result.result is None and not result.ready()


def test_empty_id_is_refused(app):
    with pytest.raises(ValueError):
        basic.jobs.AsyncResult("")


def test_forget(app, jobs_redis, jobs_worker):
    result = basic.add.delay(1, 2)
    assert result.get(timeout=10) == 3
    result.forget()
    assert not jobs_redis.exists(f"jobs:t:{result.id}")
    assert result.state == "PENDING"
    assert result.exists() is False
    assert result.result is None


def test_results_expire(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_RESULT_EXPIRES": 1})
    with app.app_context(), BackgroundWorker(app):
        result = basic.add.delay(2, 2)
        assert result.get(timeout=10) == 4
        key = f"jobs:t:{result.id}"
        ttl = jobs_redis.pttl(key)
        assert 0 < ttl <= 1000
        wait_for(lambda: not jobs_redis.exists(key), timeout=5, message="record to expire")
        assert basic.jobs.AsyncResult(result.id).exists() is False


def test_default_result_ttl_is_a_day(app, jobs_redis, jobs_worker):
    result = basic.add.delay(2, 2)
    assert result.get(timeout=10) == 4
    ttl = jobs_redis.pttl(f"jobs:t:{result.id}")
    assert 86_000_000 < ttl <= 86_400_000


def test_revoke_queued_task_never_runs(app, jobs_redis):
    doomed = basic.record.apply_async(("revoked",), {"key": "revoke"})
    delayed = basic.record.apply_async(("delayed",), {"key": "revoke"}, countdown=0.2)
    doomed.revoke()
    delayed.revoke()
    assert doomed.state == "REVOKED" and delayed.state == "REVOKED"
    assert doomed.ready() and not doomed.successful()
    assert jobs_redis.zscore("jobs:delayed", delayed.id) is None
    with BackgroundWorker(app):
        after = basic.record.apply_async(("after",), {"key": "revoke"}, countdown=0.3)
        assert after.get(timeout=10) == "after"
    with pytest.raises(TaskRevokedError, match="revoked"):
        doomed.get(timeout=1)
    assert isinstance(delayed.get(timeout=1, propagate=False), TaskRevokedError)
    assert [json.loads(x) for x in jobs_redis.lrange("revoke", 0, -1)] == ["after"]


def test_revoke_finished_task_keeps_its_result(app, jobs_worker):
    result = basic.add.delay(1, 1)
    assert result.get(timeout=10) == 2
    result.revoke()
    assert result.state == "SUCCESS"


def test_result_of_ignore_result_task(app, jobs_redis, jobs_worker):
    result = basic.no_result.delay()
    assert result.get(timeout=10) is None
    assert result.state == "SUCCESS"
    assert jobs_redis.hget(f"jobs:t:{result.id}", "result") is None


def test_ignored_result_is_not_encoded(app, jobs_redis, jobs_worker):
    # The result of an ignore_result run is dropped, so one the serializer cannot encode is no
    # error (it used to raise in the worker's writer, out of the consumer loop).
    results = [basic.unencodable_result.apply_async(ignore_result=True) for _ in range(3)]
    for result in results:
        assert result.get(timeout=10) is None
        assert result.state == "SUCCESS"
        assert jobs_redis.hget(f"jobs:t:{result.id}", "result") is None
    assert basic.add.delay(1, 2).get(timeout=10) == 3  # the consumers live on


def test_none_result_is_stored_as_null(app, jobs_redis, jobs_worker):
    results = [basic.record.delay(None, key="none-results") for _ in range(3)]
    for result in results:
        assert result.get(timeout=10) is None
        assert result.state == "SUCCESS"
        assert jobs_redis.hget(f"jobs:t:{result.id}", "result") == b"null"


def command_calls(client) -> dict[str, int]:
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


def test_get_does_not_busy_poll(app, jobs_redis, jobs_worker):
    result = basic.sleep_for.delay(1.0)
    wait_for(lambda: result.state == "STARTED", message="the task to start")
    before = command_calls(jobs_redis)
    assert result.get(timeout=10) == 1.0
    after = command_calls(jobs_redis)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta.pop("cmdstat_info", None)
    # Everyone's commands over ~1 s (the worker's heartbeats and claims included): a handful.
    assert sum(delta.values()) < 100, delta
    # The reader's own reads: a couple, not one per poll.
    assert delta.get("cmdstat_hmget", 0) <= 5, delta
    assert delta.get("cmdstat_subscribe", 0) <= 2, delta


def test_result_repr_and_str(app):
    result = basic.jobs.AsyncResult("abc")
    assert str(result) == "abc"
    assert repr(result) == "<AsyncResult: abc>"
    assert result == "abc" and hash(result) == hash("abc")


def test_waiting_keeps_no_connection_once_the_app_is_gone(jobs_redis_url, jobs_redis):
    def connections() -> int:
        gc.collect()
        return len(jobs_redis.client_list())

    baseline = connections()
    for _ in range(3):
        app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_ORPHAN_TIMEOUT": 1.0})
        with app.app_context(), BackgroundWorker(app):
            assert basic.sleep_for.delay(0.05).get(timeout=10) == 0.05
        del app
    wait_for(lambda: connections() <= baseline, timeout=5,
             message="the apps' connections to be closed")


def test_result_expires_as_timedelta(jobs_redis_url, jobs_redis):
    # Celery's result_expires takes seconds or a timedelta; so does JOBS_RESULT_EXPIRES.
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url,
                            "JOBS_RESULT_EXPIRES": dt.timedelta(minutes=2)})
    with app.app_context(), BackgroundWorker(app):
        result = basic.add.delay(2, 2)
        assert result.get(timeout=10) == 4
        assert 110_000 < jobs_redis.pttl(f"jobs:t:{result.id}") <= 120_000
