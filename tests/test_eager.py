"""Eager mode: ``apply()``, ``JOBS_ALWAYS_EAGER`` and the ``jobs_eager`` fixture."""

from __future__ import annotations

import pytest

from flask_jobs import EagerResult
from flask_jobs.exceptions import EncodeError, MaxRetriesExceededError
from tests.apps import basic
from tests.apps.basic import CustomError


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


@pytest.fixture
def eager_app(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_ALWAYS_EAGER": True})
    with app.app_context():
        yield app


def test_apply_returns_eager_result(app, jobs_redis):
    result = basic.add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert result.get() == 5 and result.result == 5 and result.info == 5
    assert result.state == result.status == "SUCCESS"
    assert result.ready() and result.successful() and not result.failed()
    assert result.exists()
    assert stored_keys(jobs_redis) == []  # nothing went through Redis


def test_apply_with_kwargs_and_task_id(app):
    result = basic.request_info.apply((1,), {"k": 2}, task_id="eager-id", headers={"h": "v"})
    info = result.get()
    assert result.id == "eager-id"
    assert info["id"] == "eager-id" and info["args"] == [1] and info["kwargs"] == {"k": 2}
    assert info["is_eager"] is True and info["called_directly"] is False
    assert info["headers"] == {"h": "v"}


def test_always_eager_delay(eager_app, jobs_redis):
    result = basic.add.delay(4, 4)
    assert isinstance(result, EagerResult)
    assert result.get() == 8
    assert basic.add.apply_async((1, 1), countdown=10).get() == 2
    assert stored_keys(jobs_redis) == []


def test_eager_runs_in_app_context(eager_app):
    eager_app.config["EAGER_SETTING"] = 123
    assert basic.config_value.delay("EAGER_SETTING").get() == 123


def test_eager_exception_propagates_on_get(eager_app):
    result = basic.fail.delay("eager boom")
    assert result.state == "FAILURE" and result.failed()
    assert isinstance(result.result, CustomError)
    assert "CustomError: eager boom" in result.traceback
    with pytest.raises(CustomError, match="eager boom"):
        result.get()
    assert isinstance(result.get(propagate=False), CustomError)


def test_eager_propagates_off(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_ALWAYS_EAGER": True,
                            "JOBS_EAGER_PROPAGATES": False})
    with app.app_context():
        result = basic.fail.delay("kept")
        assert result.state == "FAILURE"
        assert isinstance(result.get(), CustomError)


def test_eager_retries_run_inline(app):
    result = basic.retry_then_succeed.apply((2,))
    assert result.get() == 2
    forever = basic.retry_forever.apply()
    assert forever.state == "FAILURE"
    with pytest.raises(CustomError, match="always"):
        forever.get()
    with pytest.raises(MaxRetriesExceededError):
        basic.retry_without_exc.apply().get()


def test_eager_autoretry(app, jobs_redis):
    assert basic.autoretry.apply((2,)).get() == "ok"
    assert jobs_redis.lrange("autoretry", 0, -1) == [b"0", b"1", b"2"]


def test_eager_update_state_records_last_meta(app):
    result = basic.progress_task.apply((3,))
    assert result.get()["result"] == 42
    assert result.last_meta == {"current": 2, "total": 3, "status": "working"}
    shortcut = basic.progress_shortcut.apply((4,))
    assert shortcut.last_meta == {"current": 4, "total": 4, "status": "step 4"}
    assert basic.custom_state.apply().last_meta == {"phase": 1}
    assert basic.add.apply((1, 1)).last_meta is None


def test_eager_hooks(app, jobs_redis):
    result = basic.hooked.apply((5,))
    assert result.get() == 10
    assert jobs_redis.lrange("hooks", 0, -1) == [
        f'["on_success", "10", "{result.id}"]'.encode(),
        f'["after_return", "SUCCESS", "{result.id}"]'.encode(),
    ]


def test_jobs_eager_fixture(app, jobs_eager, jobs_redis):
    result = basic.mul.delay(6, 7)
    assert isinstance(result, EagerResult) and result.get() == 42
    assert stored_keys(jobs_redis) == []


def test_jobs_eager_fixture_is_undone(app):
    assert app.extensions["jobs"].eager is False
    assert not isinstance(basic.add.delay(1, 1), EagerResult)


def test_eager_result_forget_and_revoke_are_harmless(app):
    result = basic.add.apply((1, 2))
    result.forget()
    result.revoke()
    assert result.get() == 3


def test_eager_send_checks_the_call_like_a_real_send(eager_app, jobs_redis):
    # What would fail at a real delay() fails at an eager one too, before anything runs.
    with pytest.raises(TypeError, match="tests.apps.basic.record"):
        basic.record.delay()
    with pytest.raises(EncodeError, match="argument 0"):
        basic.record.delay(object(), key="eager-checks")
    with pytest.raises(TypeError, match="cuntdown"):
        basic.record.apply_async(("x",), {"key": "eager-checks"}, cuntdown=1)
    assert stored_keys(jobs_redis) == []  # nothing ran (record writes to Redis) or was sent


def test_eager_settings_set_after_init_app_take_effect_at_the_next_call(app, jobs_redis):
    # Given an app initialised without eager mode (a testing config that switches it on
    # later, as app.conf.task_always_eager = True does in Celery)
    assert not isinstance(basic.add.delay(1, 1), EagerResult)
    jobs_redis.flushdb()
    # When it is switched on after init_app: the next call runs here, and nothing is stored
    app.config["JOBS_ALWAYS_EAGER"] = True
    try:
        result = basic.add.delay(2, 3)
        assert isinstance(result, EagerResult) and result.get() == 5
        assert stored_keys(jobs_redis) == []
        # ... and so does JOBS_EAGER_PROPAGATES, read at the call too
        app.config["JOBS_EAGER_PROPAGATES"] = False
        failed = basic.fail.delay("late")
        assert isinstance(failed.get(), CustomError)
        app.config["JOBS_EAGER_PROPAGATES"] = True
        with pytest.raises(CustomError):
            basic.fail.delay("late").get()
    finally:
        app.config["JOBS_ALWAYS_EAGER"] = False
    # Expect the next call after switching it off to be queued again
    assert not isinstance(basic.add.delay(1, 1), EagerResult)
