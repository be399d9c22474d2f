"""Dedup: apply_async(dedup_key=..., dedup_ttl=...) starts one job for a button clicked twice."""

from __future__ import annotations

import pytest

from flask_jobs import group
from tests.apps import basic
from tests.conftest import wait_for


def test_the_second_send_gets_the_first_task_id(app, jobs_redis):
    first = basic.add.apply_async((1, 1), dedup_key="report:42")
    second = basic.add.apply_async((1, 1), dedup_key="report:42")
    assert second.id == first.id
    assert jobs_redis.keys("jobs:t:*") == [f"jobs:t:{first.id}".encode()]
    assert sum(jobs_redis.llen(k) for k in jobs_redis.keys("jobs:q:*")) == 1
    other = basic.add.apply_async((1, 1), dedup_key="report:43")
    assert other.id != first.id


def test_both_clicks_get_the_same_status_url(app):
    client = app.test_client()

    @app.post("/start")
    def start():
        return basic.jobs.accepted(basic.add.apply_async((2, 2), dedup_key="button"))

    one, two = client.post("/start"), client.post("/start")
    assert one.status_code == two.status_code == 202
    assert one.headers["Location"] == two.headers["Location"]
    assert one.get_json()["id"] == two.get_json()["id"]


def test_a_finished_task_holds_its_key_until_the_ttl(app, jobs_redis, jobs_worker):
    first = basic.add.apply_async((3, 3), dedup_key="k", dedup_ttl=0.3)
    assert first.get(timeout=10) == 6
    # within the ttl: the same task, finished
    again = basic.add.apply_async((3, 3), dedup_key="k", dedup_ttl=0.3)
    assert again.id == first.id and again.get(timeout=1) == 6
    # after it: a new task
    wait_for(lambda: not jobs_redis.exists("jobs:dd:k"), 5, "the dedup key to expire")
    later = basic.add.apply_async((3, 3), dedup_key="k", dedup_ttl=0.3)
    assert later.id != first.id and later.get(timeout=10) == 6


def test_bad_dedup_options_are_refused_and_send_nothing(app, jobs_redis):
    with pytest.raises(TypeError, match="dedup_key must be a non-empty string"):
        basic.add.apply_async((1, 1), dedup_key="")
    with pytest.raises(TypeError, match="dedup_ttl needs a dedup_key"):
        basic.add.apply_async((1, 1), dedup_ttl=5)
    with pytest.raises(TypeError, match="one task at a time"):
        group(basic.add.s(1, 1).set(dedup_key="g"), basic.add.s(2, 2)).apply_async()
    assert jobs_redis.keys("jobs:t:*") == []


def test_dedup_in_eager_mode_runs_each_call(app, jobs_eager):
    assert basic.add.apply_async((1, 1), dedup_key="x").get() == 2
    assert basic.add.apply_async((1, 1), dedup_key="x").get() == 2
