"""The pytest plugin, as a user's project sees it: a tiny project run by ``pytester``."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

USER_APP = '''
from flask import Flask
from flask_jobs import Jobs

jobs = Jobs()


@jobs.task
def add(x, y):
    return x + y


@jobs.task(bind=True)
def shout(self, word):
    self.progress(1, 1)
    return word.upper()


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(config or {})
    jobs.init_app(app)

    @app.post("/add/<int:x>/<int:y>")
    def start(x, y):
        return {"id": add.delay(x, y).id}, 202

    return app
'''

USER_CONFTEST = '''
import pytest

from myapp import create_app


@pytest.fixture
def app(jobs_redis_url):
    return create_app({"TESTING": True, "JOBS_BROKER_URL": jobs_redis_url})
'''

USER_TESTS = '''
from flask_jobs import EagerResult

from myapp import add, jobs, shout


def test_worker_runs_tasks(app, jobs_worker, jobs_redis):
    assert add.delay(2, 3).get(timeout=10) == 5
    assert shout.delay("hi").get(timeout=10) == "HI"
    assert len(jobs_redis.keys("jobs:t:*")) == 2


def test_url_is_a_private_flushed_redis(jobs_redis_url, jobs_redis):
    assert jobs_redis_url.startswith("redis://")
    assert ":6379" not in jobs_redis_url
    assert jobs_redis.ping()
    assert jobs_redis.keys("jobs:t:*") == []  # the previous test's records are gone


def test_client_and_worker(app, client, jobs_worker):
    response = client.post("/add/20/22")
    assert response.status_code == 202
    assert jobs.AsyncResult(response.json["id"]).get(timeout=10) == 42


def test_eager(app, jobs_eager, jobs_redis):
    result = add.delay(1, 1)
    assert isinstance(result, EagerResult)
    assert result.get() == 2
    assert jobs_redis.keys("jobs:t:*") == [] and jobs_redis.keys("jobs:q:*") == []

'''


@pytest.fixture
def user_project(pytester, monkeypatch):
    pytester.makepyfile(myapp=USER_APP, conftest=USER_CONFTEST, test_user=USER_TESTS)
    # The plugin starts its own private Redis, as it does for a user: no override.
    monkeypatch.delenv("JOBS_TEST_REDIS_URL", raising=False)
    return pytester


def test_user_project_passes(user_project):
    outcome = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-q", "test_user.py")
    outcome.assert_outcomes(passed=4)


def test_fixtures_come_from_the_plugin(user_project):
    outcome = user_project.runpytest_subprocess("-p", "no:flask_jobs", "-q", "test_user.py")
    outcome.stdout.fnmatch_lines(["*fixture 'jobs_redis_url' not found*"])
    assert outcome.ret != 0


def test_registered_via_pytest11_entry_point():
    entry_points = importlib.metadata.entry_points(group="pytest11")
    ours = [ep for ep in entry_points if ep.name == "flask_jobs"]
    assert len(ours) == 1
    assert ours[0].value == "flask_jobs.pytest_plugin"
    assert ours[0].load().__name__ == "flask_jobs.pytest_plugin"


def test_plugin_is_loaded_in_this_session(pytestconfig):
    plugin = pytestconfig.pluginmanager.get_plugin("flask_jobs")
    assert plugin is not None and plugin.__name__ == "flask_jobs.pytest_plugin"


def test_stopped_worker_leaves_no_registration(app, jobs_redis):
    # The jobs_worker fixture starts and stops a BackgroundWorker around every test: once
    # stopped, even right after its start, nothing of it may come back (the next test's Redis
    # is flushed before it starts, and a late heartbeat would land in it).
    from flask_jobs.worker.main import BackgroundWorker
    from tests.conftest import wait_for

    for _ in range(5):
        worker = BackgroundWorker(app).start()
        worker.stop()
        wait_for(lambda w=worker: not w.process.ears.is_alive(), timeout=5,
                 message="heartbeat to end")
    assert jobs_redis.smembers("jobs:workers") == set()
    assert jobs_redis.keys("jobs:hb:*") == []
