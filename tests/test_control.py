"""``jobs.control`` (Celery's ``app.control.revoke`` / ``purge``) and ``flask jobs purge`` /
``flask jobs revoke``, against a real Redis and real workers."""

from __future__ import annotations

import pytest

from flask_jobs import TaskRevokedError, group
from flask_jobs.cli import jobs_cli
from tests.apps import basic
from tests.worker_helpers import field, queued_ids, starts, stats


def test_control_revoke_takes_one_id_or_many(app, jobs_redis, worker_process):
    # Given three queued tasks and no worker
    a, b, c = (basic.sleep_and_record.delay(0) for _ in range(3))
    # When two are revoked through jobs.control, one by id and one in a list
    basic.jobs.control.revoke(a.id)
    basic.jobs.control.revoke([b.id])
    # Expect only the third to run once a worker comes
    worker_process("-P", "solo")
    assert c.get(timeout=10)
    for revoked in (a, b):
        with pytest.raises(TaskRevokedError):
            revoked.get(timeout=5)
    assert [s[0] for s in starts(jobs_redis)] == [c.id]


def test_control_revoke_rejects_non_ids(app):
    with pytest.raises(TypeError, match="task ids"):
        basic.jobs.control.revoke([None])


def test_purge_discards_waiting_tasks_of_the_named_queues_only(app, jobs_redis, worker_process):
    # Given waiting tasks on two queues, at several priorities, a delayed one, and a revoked one
    waiting = [basic.add.apply_async((i, i), priority=i % 10) for i in range(25)]
    routed = basic.routed.delay()
    delayed = basic.add.apply_async((1, 1), countdown=60)
    already = basic.add.delay(0, 0)
    already.revoke()
    # When the default queue is purged
    n = basic.jobs.control.purge("default")
    # Expect every live waiting task of it discarded and REVOKED "purged", and nothing else
    assert n == len(waiting)
    assert queued_ids(jobs_redis) == []
    assert {r.state for r in waiting} == {"REVOKED"}
    assert field(jobs_redis, waiting[0].id, "reason") == "purged"
    assert field(jobs_redis, waiting[0].id, "body") is None
    assert jobs_redis.ttl(f"jobs:t:{waiting[0].id}") > 0
    assert field(jobs_redis, already.id, "reason") == "revoked"
    assert routed.state == delayed.state == "PENDING"
    assert jobs_redis.zscore("jobs:delayed", delayed.id) is not None
    assert stats(jobs_redis)["purged"] == len(waiting)
    with pytest.raises(TaskRevokedError):
        waiting[0].get(timeout=1)
    # And a worker runs what is sent afterwards
    worker_process("-P", "solo", "-Q", "default,other")
    assert basic.add.delay(2, 3).get(timeout=10) == 5
    assert routed.get(timeout=10) == "other"


def test_purge_every_queue_in_chunks(app, jobs_redis):
    # Given more waiting tasks than one script call discards, on two queues
    from flask_jobs.broker import PURGE_CHUNK

    group(basic.add.s(1, 1) for _ in range(PURGE_CHUNK + 5)).apply_async()
    basic.routed.delay()
    # When every queue is purged
    n = basic.jobs.control.purge()
    # Expect all of them gone
    assert n == PURGE_CHUNK + 6
    assert queued_ids(jobs_redis) == queued_ids(jobs_redis, "other") == []


def test_purge_command_asks_first(app, jobs_redis):
    for i in range(3):
        basic.add.delay(i, i)
    basic.routed.delay()
    runner = app.test_cli_runner()
    # Answering no keeps everything
    result = runner.invoke(jobs_cli, ["purge", "-Q", "default"], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert len(queued_ids(jobs_redis)) == 3
    # Yes (or --force) discards the named queue only
    result = runner.invoke(jobs_cli, ["purge", "-Q", "default"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "Purged 3 task(s) from 1 queue(s)." in result.output
    assert queued_ids(jobs_redis) == [] and len(queued_ids(jobs_redis, "other")) == 1
    result = runner.invoke(jobs_cli, ["purge", "--force"])
    assert result.exit_code == 0, result.output
    assert "Purged 1 task(s)" in result.output
    result = runner.invoke(jobs_cli, ["purge", "-Q", " , ", "-f"])
    assert result.exit_code != 0 and "names no queue" in result.output


def test_revoke_command(app, jobs_redis):
    queued = basic.add.delay(1, 2)
    runner = app.test_cli_runner()
    # An unknown id: an error, and nothing revoked
    result = runner.invoke(jobs_cli, ["revoke", queued.id, "no-such-id"])
    assert result.exit_code != 0 and "unknown task id(s): no-such-id" in result.output
    assert queued.state == "PENDING"
    # A known one
    result = runner.invoke(jobs_cli, ["revoke", queued.id])
    assert result.exit_code == 0, result.output
    assert f"revoked {queued.id}" in result.output
    assert queued.state == "REVOKED"
    # One that had finished is left as it was, and said so
    done = basic.add.apply_async((1, 1))
    jobs_redis.hset(f"jobs:t:{done.id}", mapping={"state": "SUCCESS", "rtype": "json",
                                                   "result": "2"})
    result = runner.invoke(jobs_cli, ["revoke", done.id])
    assert result.exit_code == 0, result.output
    assert f"{done.id} had already finished: SUCCESS" in result.output
