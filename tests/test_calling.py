"""Calling tasks: delay, apply_async and its options, send_task, and what a bad call does."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid

import pytest
from flask import Flask

from flask_jobs import Jobs
from flask_jobs.exceptions import (
    BrokerUnavailable,
    EncodeError,
    NotRegistered,
    PayloadTooLarge,
    TaskRevokedError,
)
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.conftest import wait_for


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


def redis_ms(client) -> int:
    """Now on the Redis server's clock, in milliseconds (the clock the engine uses)."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def ready_ids(client, queue="default"):
    """Every id waiting in ``queue``, over all priorities."""
    return [i.decode() for p in range(10) for i in client.lrange(f"jobs:q:{queue}:{p}", 0, -1)]


def recorded(client, key):
    return [json.loads(x) for x in client.lrange(key, 0, -1)]


def test_delay(app, jobs_worker):
    result = basic.add.delay(2, 3)
    assert result.get(timeout=10) == 5
    assert result.name == "tests.apps.basic.add"


def test_apply_async_args_and_kwargs(app, jobs_worker):
    result = basic.echo.apply_async(args=(1, [2, 3]), kwargs={"k": {"n": None}})
    assert result.get(timeout=10) == {"args": [1, [2, 3]], "kwargs": {"k": {"n": None}}}


def test_apply_async_without_arguments(app, jobs_worker):
    assert basic.named.apply_async().get(timeout=10) == "named"


def test_enqueue_writes_pending_record_and_queues(app, jobs_redis):
    result = basic.add.delay(1, 2)
    record = jobs_redis.hgetall(f"jobs:t:{result.id}")
    assert record[b"state"] == b"PENDING"
    assert record[b"name"] == b"tests.apps.basic.add"
    assert record[b"queue"] == b"default" and record[b"prio"] == b"5"
    assert json.loads(record[b"body"])["args"] == [1, 2]
    assert ready_ids(jobs_redis) == [result.id]
    assert result.state == "PENDING" and result.exists()
    # A random UUID4 by default, unguessable.
    assert uuid.UUID(result.id).version == 4


def test_countdown_float(app, jobs_redis, jobs_worker):
    t0 = redis_ms(jobs_redis)
    result = basic.record.apply_async(("later",), {"key": "countdown"}, countdown=0.5)
    assert result.state == "PENDING"
    assert jobs_redis.lrange("countdown", 0, -1) == []
    assert jobs_redis.zscore("jobs:delayed", result.id) is not None
    assert result.get(timeout=10) == "later"
    assert recorded(jobs_redis, "countdown") == ["later"]
    done = int(jobs_redis.hget(f"jobs:t:{result.id}", "done"))
    assert done - t0 >= 500  # never before its due time (same clock: Redis's)


def test_eta_datetime(app, jobs_redis, jobs_worker):
    t0 = redis_ms(jobs_redis)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.4)
    result = basic.record.apply_async(("at eta",), {"key": "eta"}, eta=eta)
    assert result.state == "PENDING"
    assert result.get(timeout=10) == "at eta"
    done = int(jobs_redis.hget(f"jobs:t:{result.id}", "done"))
    assert done - t0 >= 300  # the eta is on the client's clock: allow a little skew


def test_eta_naive_datetime_is_utc(app, jobs_redis):
    eta = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=60)
    t0 = redis_ms(jobs_redis)
    result = basic.add.apply_async((1, 1), eta=eta)
    due = jobs_redis.zscore("jobs:delayed", result.id)
    assert 55_000 <= due - t0 <= 65_000


def test_expired_before_a_worker_starts_is_revoked_and_never_runs(app, jobs_redis):
    result = basic.record.apply_async(("expired",), {"key": "expires"}, expires=0.05)
    fresh = basic.record.apply_async(("fresh",), {"key": "expires"})
    exp = int(jobs_redis.hget(f"jobs:t:{result.id}", "exp"))
    wait_for(lambda: redis_ms(jobs_redis) > exp, message="expiry time to pass")
    with BackgroundWorker(app):
        assert fresh.get(timeout=10) == "fresh"
        with pytest.raises(TaskRevokedError, match="expired"):
            result.get(timeout=10)
    assert result.state == "REVOKED"
    assert jobs_redis.hget(f"jobs:t:{result.id}", "reason") == b"expired"
    assert recorded(jobs_redis, "expires") == ["fresh"]
    assert app.extensions["jobs"].broker.stats()["expired"] == 1


def test_expires_not_reached_runs(app, jobs_worker):
    assert basic.add.apply_async((1, 2), expires=dt.timedelta(minutes=5)).get(timeout=10) == 3


def test_queue_option(app, jobs_redis):
    result = basic.add.apply_async((1, 2), queue="special")
    assert ready_ids(jobs_redis, "special") == [result.id]
    assert ready_ids(jobs_redis) == []
    with BackgroundWorker(app, queues=["special"]):
        assert result.get(timeout=10) == 3


def test_priority_order(app, jobs_redis):
    for value, priority in [("low", 1), ("lowest", 0), ("mid", 5), ("high", 9), ("default", None)]:
        basic.record.apply_async((value,), {"key": "order"}, priority=priority)
    last = basic.record.apply_async(("last",), {"key": "order"}, priority=0)
    with BackgroundWorker(app, concurrency=1, prefetch=1):
        assert last.get(timeout=10) == "last"
    assert recorded(jobs_redis, "order") == ["high", "mid", "default", "low", "lowest", "last"]


def test_bad_priority(app, jobs_redis):
    with pytest.raises(ValueError, match="priority"):
        basic.add.apply_async((1, 2), priority=10)
    assert stored_keys(jobs_redis) == []


@pytest.mark.parametrize("options, error, message", [
    ({"countdown": "abc"}, TypeError, "countdown must be a finite number of seconds"),
    ({"countdown": float("nan")}, TypeError, "countdown must be a finite number"),
    ({"countdown": float("inf")}, TypeError, "countdown must be a finite number"),
    ({"expires": "soon"}, TypeError, "expires must be a datetime or an ISO 8601 string"),
    ({"eta": 12}, TypeError, "eta must be a datetime or an ISO 8601 string"),
    ({"eta": "tomorrow"}, TypeError, "eta must be a datetime or an ISO 8601 string"),
    ({"time_limit": "x"}, TypeError, "time_limit must be a finite number"),
    ({"priority": "high"}, ValueError, "priority must be an integer between 0 and 9"),
    ({"priority": 1.5}, ValueError, "priority must be an integer between 0 and 9"),
    ({"queue": 5}, TypeError, "queue must be a queue name"),
    ({"headers": [1, 2]}, TypeError, "headers must be a dict"),
    ({"args": "ab"}, TypeError, "args must be a list or tuple, not str"),
    ({"kwargs": [("x", 1)]}, TypeError, "kwargs must be a dict, not list"),
], ids=lambda v: str(v)[:30])
def test_bad_call_options_raise_clear_errors_and_queue_nothing(app, jobs_redis, options, error,
                                                               message):
    call = {"args": (1, 2), **options}
    with pytest.raises(error, match=message):
        basic.add.apply_async(**call)
    assert stored_keys(jobs_redis) == []


def test_eta_and_expires_take_iso_strings_as_in_celery(app, jobs_redis):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    t0 = redis_ms(jobs_redis)
    result = basic.add.apply_async((1, 1), eta=soon, expires=soon)
    assert 55_000 <= jobs_redis.zscore("jobs:delayed", result.id) - t0 <= 65_000
    assert 55_000 <= int(jobs_redis.hget(f"jobs:t:{result.id}", "exp")) - t0 <= 65_000


def test_custom_task_id(app, jobs_worker):
    result = basic.request_info.apply_async(task_id="my-own-id")
    assert result.id == "my-own-id"
    assert result.get(timeout=10)["id"] == "my-own-id"


def test_resending_a_live_id_does_not_queue_twice(app, jobs_redis):
    first = basic.record.apply_async(("one",), {"key": "dedup"}, task_id="same-id")
    second = basic.record.apply_async(("two",), {"key": "dedup"}, task_id="same-id")
    assert first.id == second.id == "same-id"
    assert ready_ids(jobs_redis) == ["same-id"]
    with BackgroundWorker(app):
        assert first.get(timeout=10) == "one"
        # A finished id may be used again: it runs again.
        again = basic.record.apply_async(("three",), {"key": "dedup"}, task_id="same-id")
        assert again.get(timeout=10) == "three"
    assert recorded(jobs_redis, "dedup") == ["one", "three"]


def test_headers(app, jobs_worker):
    result = basic.request_info.apply_async(headers={"tenant": "acme", "n": 1})
    assert result.get(timeout=10)["headers"] == {"tenant": "acme", "n": 1}


def test_unknown_apply_async_option(app, jobs_redis):
    with pytest.raises(TypeError, match="cuntdown"):
        basic.add.apply_async((1, 2), cuntdown=1)
    assert stored_keys(jobs_redis) == []


def test_send_task_by_name_from_code_without_the_task(app, jobs_redis_url, jobs_redis, jobs_worker):
    client_jobs = Jobs()  # knows no tasks, as a separate service would
    client_app = Flask("client")
    client_app.config.update(JOBS_BROKER_URL=jobs_redis_url, JOBS_REGISTER_BLUEPRINT=False)
    client_jobs.init_app(client_app)
    # (only the canvas's built-ins, as Celery's app has its celery.* tasks)
    assert set(client_jobs.tasks) == {"flask_jobs.map", "flask_jobs.starmap",
                                      "flask_jobs.identity"}
    with client_app.app_context():
        result = client_jobs.send_task("tests.apps.basic.add", args=(20, 22))
        by_name = client_jobs.send_task("custom.name")
    assert result.get(timeout=10) == 42
    assert by_name.get(timeout=10) == "named"
    assert jobs_redis.hget(f"jobs:t:{result.id}", "name") == b"tests.apps.basic.add"


def test_send_task_with_registered_task_uses_it(app, jobs_worker):
    assert basic.jobs.send_task("tests.apps.basic.mul", (6, 7)).get(timeout=10) == 42


def test_send_task_unknown_name_is_dead_lettered(app, jobs_redis, jobs_worker):
    result = basic.jobs.send_task("no.such.task", (1,))
    with pytest.raises(Exception, match="not registered") as info:
        result.get(timeout=10)
    assert type(info.value).__name__ == "DeadLetteredError"
    assert json.loads(jobs_redis.lindex("jobs:dlq", 0))["id"] == result.id


def test_send_task_unknown_name_in_eager_mode(app, jobs_eager):
    with pytest.raises(NotRegistered):
        basic.jobs.send_task("no.such.task")


def test_wrong_arguments_raise_at_the_call_and_queue_nothing(app, jobs_redis):
    with pytest.raises(TypeError, match="tests.apps.basic.add"):
        basic.add.delay(1)
    with pytest.raises(TypeError):
        basic.add.delay(1, 2, 3)
    with pytest.raises(TypeError):
        basic.add.apply_async((1,), {"z": 2})
    with pytest.raises(TypeError):
        basic.whoami.delay("unexpected")  # bound: self is not an argument
    assert stored_keys(jobs_redis) == []


def test_unencodable_argument_is_named(app, jobs_redis):
    with pytest.raises(EncodeError) as info:
        basic.echo.delay(1, object())
    message = str(info.value)
    assert "argument 1" in message and "builtins.object" in message
    assert "Nothing was queued" in message
    with pytest.raises(EncodeError, match="keyword argument 'when'.*builtins.object"):
        basic.echo.delay(when=object())
    assert stored_keys(jobs_redis) == []
    # A set is fine: it travels as a list.
    sent = basic.echo.delay({3, 4})
    assert sorted(json.loads(jobs_redis.hget(f"jobs:t:{sent.id}", "body"))["args"][0]) == [3, 4]


def test_payload_too_large(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_MAX_MESSAGE_SIZE": 1000})
    with app.app_context():
        assert basic.echo.delay("x" * 500).exists()
        jobs_redis.flushdb()
        with pytest.raises(PayloadTooLarge, match="JOBS_MAX_MESSAGE_SIZE"):
            basic.echo.delay("x" * 2000)
        assert isinstance(PayloadTooLarge("x"), EncodeError)
    assert stored_keys(jobs_redis) == []


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_broker_down_raises_broker_unavailable_quickly():
    app = basic.create_app({"JOBS_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
                            "JOBS_BROKER_CONNECT_TIMEOUT": 0.5})
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="Nothing was queued"):
            basic.add.delay(1, 2)
        assert time.monotonic() - started < 5.0  # bounded, not a hang
    assert isinstance(BrokerUnavailable("x"), ConnectionError)


def test_broker_hung_raises_broker_unavailable_within_timeout():
    silent = socket.socket()  # accepts connections (kernel backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        app = basic.create_app({
            "JOBS_BROKER_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            "JOBS_BROKER_TIMEOUT": 0.3,
        })
        with app.app_context():
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                basic.add.delay(1, 2)
            assert time.monotonic() - started < 5.0
    finally:
        silent.close()
