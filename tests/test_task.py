"""Tasks: the decorator, names, the request of a bound task, hooks of ``base=``, retries."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flask_jobs import Jobs, Task
from flask_jobs.exceptions import EncodeError, MaxRetriesExceededError, Retry
from flask_jobs.task import Context
from tests.apps import basic
from tests.apps.basic import CustomError

#: The tasks every Jobs registers for the canvas (as Celery's app has celery.*).
BUILTINS = {"flask_jobs.map", "flask_jobs.starmap", "flask_jobs.identity"}


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


def hooks(jobs_redis, task_id=None):
    """The hook calls RecordingTask wrote, optionally only those of one task."""
    calls = [json.loads(x) for x in jobs_redis.lrange("hooks", 0, -1)]
    return [c for c in calls if task_id is None or task_id in c]


def test_decorator_without_parentheses():
    jobs = Jobs()

    @jobs.task
    def plain(x):
        return x + 1

    assert isinstance(plain, Task)
    assert plain.name == f"{__name__}.test_decorator_without_parentheses.<locals>.plain"
    assert jobs.tasks[plain.name] is plain
    assert plain.bind is False


def test_decorator_with_parentheses_and_options():
    jobs = Jobs()

    @jobs.task()
    def empty():
        return 1

    @jobs.task(max_retries=7, queue="q1", ignore_result=True)
    def configured():
        return 2

    assert isinstance(empty, Task) and isinstance(configured, Task)
    assert configured.max_retries == 7
    assert configured.queue == "q1"
    assert configured.ignore_result is True
    assert empty.max_retries == 3  # Celery's default
    assert set(jobs.tasks) - BUILTINS == {empty.name, configured.name}


def test_default_name_is_module_and_function():
    assert basic.add.name == "tests.apps.basic.add"
    assert basic.whoami.name == "tests.apps.basic.whoami"
    assert repr(basic.add) == "<@task: tests.apps.basic.add>"


def test_explicit_name():
    assert basic.named.name == "custom.name"
    assert basic.jobs.tasks["custom.name"] is basic.named
    assert "tests.apps.basic.named" not in basic.jobs.tasks


def test_unknown_option_is_a_type_error():
    jobs = Jobs()
    with pytest.raises(TypeError, match="colour"):
        @jobs.task(colour="blue")
        def painted():
            return None
    assert set(jobs.tasks) == BUILTINS  # (nothing registered)


def test_base_must_be_a_task_subclass():
    jobs = Jobs()
    with pytest.raises(TypeError, match="base="):
        @jobs.task(base=dict)
        def wrong():
            return None


def test_positional_options_are_refused():
    jobs = Jobs()
    with pytest.raises(TypeError, match="keyword"):
        jobs.task(lambda: None, name="x")


def test_calling_the_task_runs_it_here(app, jobs_redis):
    assert basic.add(2, 3) == 5
    assert basic.echo(1, a=2) == {"args": [1], "kwargs": {"a": 2}}
    info = basic.whoami()
    assert info["id"] is None and info["retries"] == 0 and info["name"] == "tests.apps.basic.whoami"
    assert stored_keys(jobs_redis) == []  # nothing was sent


def test_task_runs_in_app_context(app, jobs_worker):
    app.config["GREETING"] = "hello from config"
    assert basic.config_value.delay("GREETING").get(timeout=10) == "hello from config"


def test_bound_request_fields(app, jobs_worker):
    result = basic.request_info.apply_async((1, "two"), {"three": 3}, headers={"trace": "abc"})
    info = result.get(timeout=10)
    assert info == {
        "id": result.id,
        "task": "tests.apps.basic.request_info",
        "args": [1, "two"],
        "kwargs": {"three": 3},
        "retries": 0,
        "hostname": "worker@test",
        "delivery_attempt": 1,
        "attempt": 1,
        "headers": {"trace": "abc"},
        "called_directly": False,
        "is_eager": False,
        "name": "tests.apps.basic.request_info",
    }


def test_request_carries_every_option_of_the_message(app, jobs_worker):
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=20)
    link = basic.record.si("linked", key="request-link")
    result = basic.request_fields.apply_async(
        headers={"trace": "abc"}, eta=eta, owner="alice", time_limit=30, soft_time_limit=20,
        parent_id="parent-1", root_id="root-1", ignore_result=False, link=link,
        link_error=basic.record.si("failed", key="request-link-error"))
    info = result.get(timeout=10)
    assert info["eta"] == eta.isoformat()
    assert info["headers"] == {"trace": "abc"}
    assert (info["owner"], info["time_limit"], info["soft_time_limit"]) == ("alice", 30.0, 20.0)
    assert (info["parent_id"], info["root_id"], info["ignore_result"]) == (
        "parent-1", "root-1", False)
    assert [s["task"] for s in info["link"]] == ["tests.apps.basic.record"]
    assert [s["args"] for s in info["link_error"]] == [["failed"]]
    assert info["delivery_info"] == {} and info["expires"] is None


def test_request_of_a_plain_message_has_the_defaults(app, jobs_worker):
    first = basic.request_fields.delay().get(timeout=10)  # scribbles on its headers
    info = basic.request_fields.delay().get(timeout=10)
    assert first["headers"] == info["headers"] == {}  # a fresh dict each run: nothing leaked
    assert Context.headers == {}
    defaults = {"retries": 0, "eta": None, "group": None, "parent_id": None, "root_id": None,
                "owner": None, "time_limit": None, "soft_time_limit": None, "link": None,
                "link_error": None, "ignore_result": None, "called_directly": False,
                "is_eager": False, "expires": None, "delivery_info": {}}
    assert {k: info[k] for k in defaults} == defaults
    assert (info["hostname"], info["delivery_attempt"], info["attempt"]) == ("worker@test", 1, 1)
    # The fields the worker sets on the request itself, whatever the message holds.
    assert info["own"] == sorted([
        "id", "task", "args", "kwargs", "retries", "hostname", "delivery_attempt", "attempt",
        "eta", "headers", "group", "parent_id", "root_id", "owner", "time_limit",
        "soft_time_limit", "link", "link_error", "ignore_result", "called_directly", "reporter"])
    assert first["own"] == info["own"]


def test_whoami(app, jobs_worker):
    result = basic.whoami.delay()
    info = result.get(timeout=10)
    assert info["id"] == result.id
    assert info["hostname"] == "worker@test"
    assert info["args"] == [] and info["headers"] == {}
    assert (info["delivery_attempt"], info["attempt"], info["retries"]) == (1, 1, 0)


def test_request_outside_a_run_is_the_default():
    request = basic.whoami.request
    assert request.id is None
    assert request.called_directly is True


def test_hooks_on_success(app, jobs_redis, jobs_worker):
    result = basic.hooked.delay(21)
    assert result.get(timeout=10) == 42
    assert hooks(jobs_redis, result.id) == [
        ["on_success", "42", result.id],
        ["after_return", "SUCCESS", result.id],
    ]


def test_hooks_on_failure(app, jobs_redis, jobs_worker):
    result = basic.hooked.delay(-1)
    with pytest.raises(CustomError, match="negative"):
        result.get(timeout=10)
    assert hooks(jobs_redis, result.id) == [
        ["on_failure", "CustomError", result.id, "True"],
        ["after_return", "FAILURE", result.id],
    ]


def test_retry_then_success_and_on_retry_hook(app, jobs_redis, jobs_worker):
    result = basic.retry_then_succeed.delay(2)
    assert result.get(timeout=10) == 2  # the number of retries it took
    assert hooks(jobs_redis, result.id) == [
        ["on_retry", "ValueError", result.id],
        ["on_retry", "ValueError", result.id],
        ["on_success", "2", result.id],
        ["after_return", "SUCCESS", result.id],
    ]
    assert jobs_redis.hget(f"jobs:t:{result.id}", "att") == b"3"


def test_retry_countdown_is_respected(app, jobs_redis, jobs_worker):
    t0 = _redis_ms(jobs_redis)
    result = basic.retry_then_succeed.delay(1)  # one retry with countdown=0.05
    assert result.get(timeout=10) == 1
    # Finished no earlier than the countdown after the first try, on Redis's clock.
    done = int(jobs_redis.hget(f"jobs:t:{result.id}", "done"))
    assert done - t0 >= 50


def _redis_ms(client):
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def test_max_retries_exceeded_reraises_the_cause(app, jobs_worker):
    result = basic.retry_forever.delay()
    with pytest.raises(CustomError, match="always"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    assert isinstance(result.result, CustomError)


def test_retry_without_exc_past_max_is_max_retries_exceeded(app, jobs_worker):
    result = basic.retry_without_exc.delay()
    with pytest.raises(MaxRetriesExceededError, match="max_retries"):
        result.get(timeout=10)
    assert result.state == "FAILURE"


def test_autoretry_for_with_backoff(app, jobs_redis, jobs_worker):
    result = basic.autoretry.delay(2)
    assert result.get(timeout=10) == "ok"
    assert jobs_redis.lrange("autoretry", 0, -1) == [b"0", b"1", b"2"]


def test_autoretry_gives_up_after_max_retries(app, jobs_redis, jobs_worker):
    result = basic.autoretry.delay(10)  # retry_kwargs max_retries=3
    with pytest.raises(ConnectionError, match="flaky network"):
        result.get(timeout=10)
    assert jobs_redis.lrange("autoretry", 0, -1) == [b"0", b"1", b"2", b"3"]


def test_retry_outside_a_run_is_an_error():
    with pytest.raises(RuntimeError, match="outside a worker run"):
        basic.retry_forever.retry(countdown=1)


def test_retry_with_throw_false_returns_the_retry():
    task = basic.retry_then_succeed
    task.push_request(basic.retry_then_succeed.request.__class__(id="x", called_directly=False))
    try:
        retry = task.retry(exc=ValueError("v"), countdown=2.5, throw=False)
    finally:
        task.pop_request()
    assert isinstance(retry, Retry)
    assert retry.when == 2.5 and isinstance(retry.exc, ValueError)


def test_retry_with_unencodable_arguments_fails_the_task(app, jobs_worker):
    result = basic.retry_with_unencodable_args.delay()
    with pytest.raises(EncodeError, match="object"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    # The worker survives it: its consumers keep running tasks.
    assert [basic.add.delay(i, 1).get(timeout=10) for i in range(4)] == [1, 2, 3, 4]


def test_retry_with_new_arguments_even_empty_ones(app, jobs_worker):
    result = basic.retry_with_new_args.delay(1, 2, first=True)
    assert result.get(timeout=10) == {"args": [], "kwargs": {"second": True}}
    eager = basic.retry_with_new_args.apply((1, 2), {"first": True})
    assert eager.get() == {"args": [], "kwargs": {"second": True}}
