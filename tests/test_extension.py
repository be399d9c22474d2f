"""The :class:`Jobs` extension: init styles, several apps, config defaults, errors, routing."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask import Flask

from flask_jobs import Jobs
from flask_jobs.config import DEFAULTS
from flask_jobs.exceptions import ImproperlyConfigured
from flask_jobs.state import AppState
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


def plain_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_constructor_with_app(jobs_redis_url):
    app = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    jobs = Jobs(app)
    assert isinstance(app.extensions["jobs"], AppState)
    assert app.extensions["jobs"].jobs is jobs
    assert jobs.state(app) is app.extensions["jobs"]


def test_init_app_factory(jobs_redis_url, jobs_redis):
    jobs = Jobs()

    @jobs.task
    def double(x):
        return 2 * x

    def create_app():
        app = plain_app(JOBS_BROKER_URL=jobs_redis_url, TESTING=True)
        jobs.init_app(app)
        return app

    app = create_app()
    assert app.extensions["jobs"].jobs is jobs
    with app.app_context():
        with BackgroundWorker(app):
            assert double.delay(21).get(timeout=10) == 42


def test_config_defaults_present(jobs_redis_url):
    app = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    Jobs(app)
    for key, value in DEFAULTS.items():
        assert key in app.config, key
        if key != "JOBS_BROKER_URL":
            assert app.config[key] == value, key
    assert app.config["JOBS_BROKER_URL"] == jobs_redis_url  # user values are kept
    assert app.config["JOBS_RESULT_EXPIRES"] == 86400
    assert app.config["JOBS_TASK_DEFAULT_QUEUE"] == "default"
    assert app.config["JOBS_ACCEPT_CONTENT"] == ["json"]
    assert app.config["JOBS_KEY_PREFIX"] == "jobs"


def test_double_registration_is_an_error(jobs_redis_url):
    app = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    Jobs(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        Jobs().init_app(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        basic.jobs.init_app(app)


def test_state_of_app_registered_with_another_jobs(jobs_redis_url):
    app = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    Jobs(app)
    other = Jobs()
    with app.app_context(), pytest.raises(RuntimeError, match="another 'Jobs' instance"):
        other.state()


def test_outside_app_context_with_no_app():
    jobs = Jobs()

    @jobs.task
    def nothing():
        return None

    with pytest.raises(RuntimeError) as info:
        nothing.delay()
    message = str(info.value)
    assert "app_context" in message and "init_app" in message
    assert "0 apps" in message


def test_outside_app_context_with_two_apps(jobs_redis_url, jobs_redis):
    jobs = Jobs()

    @jobs.task
    def nothing():
        return None

    app1 = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    app2 = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    jobs.init_app(app1)
    jobs.init_app(app2)
    with pytest.raises(RuntimeError) as info:
        nothing.delay()
    assert "2 apps" in str(info.value) and "app_context" in str(info.value)
    assert stored_keys(jobs_redis) == []
    # Inside a context it works, and it sends through that app.
    with app2.app_context():
        assert nothing.delay().exists()


def test_outside_app_context_with_one_app_uses_it(jobs_redis_url, jobs_redis):
    jobs = Jobs()

    @jobs.task
    def nothing():
        return None

    app = plain_app(JOBS_BROKER_URL=jobs_redis_url)
    jobs.init_app(app)
    result = nothing.delay()
    assert jobs_redis.hget(f"jobs:t:{result.id}", "state") == b"PENDING"


def test_missing_broker_url_in_production(jobs_redis):
    jobs = Jobs()

    @jobs.task
    def nothing():
        return None

    app = plain_app()  # neither debug nor testing: production
    jobs.init_app(app)
    with app.app_context(), pytest.raises(ImproperlyConfigured) as info:
        nothing.delay()
    message = str(info.value)
    assert "JOBS_BROKER_URL" in message
    assert "redis://" in message  # shows what to set


def test_one_jobs_serves_two_apps_with_different_prefixes(jobs_redis_url, jobs_redis):
    app_a = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_KEY_PREFIX": "appa"})
    app_b = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_KEY_PREFIX": "appb"})
    with app_a.app_context():
        sent_a = basic.record.delay("from a", key="ran")
    assert jobs_redis.hget(f"appa:t:{sent_a.id}", "state") == b"PENDING"
    assert not jobs_redis.exists(f"appb:t:{sent_a.id}")

    worker_b = BackgroundWorker(app_b, hostname="worker@b").start()
    try:
        with app_b.app_context():
            sent_b = basic.record.delay("from b", key="ran")
            # B's worker is alive and runs B's task...
            assert sent_b.get(timeout=10) == "from b"
            assert sent_b.worker.startswith("worker@b")
        # ... but never A's.
        assert sent_a.state == "PENDING"
        assert jobs_redis.lrange("ran", 0, -1) == [b'"from b"']
        worker_a = BackgroundWorker(app_a, hostname="worker@a").start()
        try:
            assert sent_a.get(timeout=10) == "from a"
            assert sent_a.worker.startswith("worker@a")
        finally:
            worker_a.stop()
    finally:
        worker_b.stop()
    assert sorted(jobs_redis.lrange("ran", 0, -1)) == [b'"from a"', b'"from b"']


def test_task_routes_exact_and_glob(jobs_redis_url, jobs_redis):
    routes = {"tests.apps.basic.add": "other", "tests.apps.basic.m*": {"queue": "other"}}
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_TASK_ROUTES": routes})
    with app.app_context():
        state = app.extensions["jobs"]
        assert state.route("tests.apps.basic.add", basic.add) == "other"
        assert state.route("tests.apps.basic.mul", basic.mul) == "other"
        assert state.route("tests.apps.basic.xsum", basic.xsum) == "default"
        added = basic.add.delay(1, 2)
        multiplied = basic.mul.delay(3, 4)
        summed = basic.xsum.delay([1, 2, 3])
        assert jobs_redis.hget(f"jobs:t:{added.id}", "queue") == b"other"
        assert jobs_redis.hget(f"jobs:t:{multiplied.id}", "queue") == b"other"
        assert jobs_redis.hget(f"jobs:t:{summed.id}", "queue") == b"default"

        with BackgroundWorker(app):  # default queue only
            assert summed.get(timeout=10) == 6
            assert added.state == "PENDING" and multiplied.state == "PENDING"
        with BackgroundWorker(app, queues=["other"]):
            assert added.get(timeout=10) == 3
            assert multiplied.get(timeout=10) == 12


def test_bad_route_target_is_an_error(jobs_redis_url):
    with pytest.raises(ImproperlyConfigured, match="JOBS_TASK_ROUTES"):
        basic.create_app({"JOBS_BROKER_URL": jobs_redis_url,
                          "JOBS_TASK_ROUTES": {"tests.apps.basic.add": 5}})


def test_queue_option_routes_to_other_queue(app, jobs_redis, jobs_worker):
    # `routed` is declared with queue="other"; the default worker never runs it.
    on_other = basic.routed.delay()
    by_call = basic.add.apply_async((5, 5), queue="other")
    on_default = basic.add.delay(1, 1)
    assert on_default.get(timeout=10) == 2
    assert jobs_redis.hget(f"jobs:t:{on_other.id}", "queue") == b"other"
    assert jobs_redis.hget(f"jobs:t:{by_call.id}", "queue") == b"other"
    assert on_other.state == "PENDING" and by_call.state == "PENDING"
    with BackgroundWorker(app, queues=["other"]):
        assert on_other.get(timeout=10) == "other"
        assert by_call.get(timeout=10) == 10


def test_extension_registered_and_tasks_listed(app):
    state = app.extensions["jobs"]
    assert state.jobs is basic.jobs
    assert basic.jobs.tasks["tests.apps.basic.add"] is basic.add
    assert basic.jobs.tasks["custom.name"] is basic.named


def test_worker_of_app_serves_tasks_in_app_context(app, jobs_worker):
    app.config["MY_SETTING"] = "from the app"
    assert basic.config_value.delay("MY_SETTING").get(timeout=10) == "from the app"
    assert basic.config_value.delay("JOBS_KEY_PREFIX").get(timeout=10) == "jobs"


def test_default_queue_and_priority_config(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_TASK_DEFAULT_QUEUE": "main",
                            "JOBS_TASK_DEFAULT_PRIORITY": 2})
    with app.app_context():
        result = basic.add.delay(1, 2)
        assert jobs_redis.lrange("jobs:q:main:2", 0, -1) == [result.id.encode()]
        with BackgroundWorker(app) as worker:
            assert worker.worker.queues == ["main"]
            assert result.get(timeout=10) == 3


@pytest.mark.parametrize("key, value, expected", [
    ("JOBS_ORPHAN_TIMEOUT", "abc", "a number of seconds"),
    ("JOBS_ORPHAN_TIMEOUT", 0, "above 0"),
    ("JOBS_RESULT_EXPIRES", "1 day", "a number of seconds"),
    ("JOBS_PROGRESS_INTERVAL", -1, "of 0 or more"),
    ("JOBS_MAX_DELIVERIES", 0, "a whole number of 1 or more"),
    ("JOBS_WORKER_CONCURRENCY", 2.5, "a whole number of 1 or more (or None)"),
    ("JOBS_TASK_DEFAULT_PRIORITY", 10, "a whole number from 0 to 9"),
    ("JOBS_KEY_PREFIX", "", "a non-empty string"),
    ("JOBS_TASK_DEFAULT_QUEUE", None, "a non-empty string"),
    ("JOBS_ACCEPT_CONTENT", "json", "a list of content types"),
    ("JOBS_TASK_ROUTES", [1], "a dict of task name"),
    ("JOBS_URL_PREFIX", "jobs", "a URL path starting with '/'"),
    ("JOBS_BROKER_URL", "http://localhost", "a Redis URL"),
    ("JOBS_BROKER_BUSY_POLL", "fast", "microseconds"),
    ("JOBS_BROKER_CONNECTION_MAX_RETRIES", -1, "a whole number of 0 or more (or None)"),
    ("JOBS_BROKER_CONNECTION_RETRY_ON_STARTUP", "yes", "True or False"),
    ("JOBS_BROKER_TRANSPORT_OPTIONS", ["master_name"], "a dict"),
])
def test_bad_config_stops_init_app_naming_the_key(key, value, expected):
    app = Flask(__name__)
    app.config["JOBS_BROKER_URL"] = "redis://localhost:6379/0"
    app.config[key] = value
    with pytest.raises(ImproperlyConfigured, match=f"^{key} must be .*{re.escape(expected)}"):
        Jobs(app)
    assert "jobs" not in app.extensions


def test_config_numbers_may_be_numeric_strings_or_timedeltas():
    app = Flask(__name__)
    app.config.update(JOBS_BROKER_URL="redis://localhost:6379/0", JOBS_ORPHAN_TIMEOUT="12.5",
                      JOBS_RESULT_EXPIRES=dt.timedelta(hours=1), JOBS_MAX_DELIVERIES="3")
    state = Jobs(app).state(app)
    settings = state.settings
    assert (settings.orphan_timeout, settings.result_ttl_ms, settings.max_deliveries) == (12.5, 3_600_000, 3)
