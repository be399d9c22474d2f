"""Prometheus metrics at ``/jobs/metrics``: off by default, behind its authorizer, read from
Redis (so two web processes agree), parsed with prometheus-client's own parser."""

from __future__ import annotations

import pytest
from flask import request

from tests.apps import basic
from tests.conftest import wait_for

prometheus = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.slow


def scrape(app, **headers):
    with app.test_client() as client:
        return client.get("/jobs/metrics", headers=headers)


def samples(response) -> dict:
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_are_off_unless_enabled(app, jobs_redis):
    response = scrape(app)
    assert response.status_code == 404
    assert "JOBS_METRICS" in response.get_data(as_text=True)


def test_counts_runtimes_queues_and_workers(app, jobs_redis, jobs_redis_url, worker_process):
    worker_process("-P", "solo")
    for i in range(3):
        assert basic.add.delay(i, i).get(timeout=10) == 2 * i
    basic.fail.delay().get(timeout=10, propagate=False)
    waiting = [basic.routed.delay() for _ in range(2)]  # (queue 'other': nobody consumes it)
    assert all(r.state == "PENDING" for r in waiting)
    app.config["JOBS_METRICS"] = True
    got = samples(scrape(app))
    add = ("name", "tests.apps.basic.add")
    wait_for(lambda: samples(scrape(app)).get(
        ("flask_jobs_tasks_total", (add, ("state", "succeeded")))) == 3, 10)
    got = samples(scrape(app))
    assert got[("flask_jobs_tasks_total", (("name", "tests.apps.basic.fail"),
                                          ("state", "failed")))] == 1
    assert got[("flask_jobs_task_runtime_seconds_count", (add,))] == 3
    assert got[("flask_jobs_task_runtime_seconds_bucket", (("le", "+Inf"), add))] == 3
    assert got[("flask_jobs_task_runtime_seconds_sum", (add,))] >= 0
    assert got[("flask_jobs_queue_length", (("queue", "other"),))] == 2
    assert got[("flask_jobs_queue_oldest_age_seconds", (("queue", "other"),))] >= 0
    assert got[("flask_jobs_workers_online", ())] == 1
    assert got[("flask_jobs_dead_letters", ())] == 0
    # a second web process (another app on the same Redis) reads the same figures
    other = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_METRICS": True})
    again = samples(scrape(other))
    assert again[("flask_jobs_tasks_total", (add, ("state", "succeeded")))] == 3


def test_the_authorizer_decides_who_may_scrape(app, jobs_redis):
    app.config["JOBS_METRICS"] = True
    app.config["JOBS_METRICS_AUTHORIZER"] = lambda: request.headers.get("X-Token") == "s3cret"
    assert scrape(app).status_code == 403
    ok = scrape(app, **{"X-Token": "s3cret"})
    assert ok.status_code == 200
    assert ok.headers["Content-Type"].startswith("text/plain; version=0.0.4")
