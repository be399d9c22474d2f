"""``jobs.control.inspect()``, ``flask jobs status`` and ``flask jobs inspect`` against real worker
processes: which workers are alive, what they run, what they prefetched, what they can run.
"""

from __future__ import annotations

import json
import pickle

from flask_jobs.cli import jobs_cli
from tests.apps import basic
from tests.conftest import wait_for


def test_live_workers_are_listed_with_their_settings(app, worker_process):
    # Given two workers with their own names, pools and queues
    a = worker_process("-P", "solo", "-n", "a@test")
    worker_process("-P", "threads", "-c", "3", "-Q", "default,other", "-n", "b@test",
                   "--prefetch", "5")
    inspect = basic.jobs.control.inspect()
    # Expect both to answer a ping, with their settings and the tasks they can run
    wait_for(lambda: inspect.ping().keys() == {"a@test", "b@test"}, 10, "both workers")
    stats = inspect.stats()
    assert stats["a@test"]["pool"] == "solo" and stats["a@test"]["concurrency"] == 1
    assert stats["a@test"]["pid"] == a.proc.pid
    assert stats["b@test"]["pool"] == "threads" and stats["b@test"]["concurrency"] == 3
    assert stats["b@test"]["queues"] == ["default", "other"]
    assert stats["b@test"]["prefetch"] == 5
    assert stats["a@test"]["active"] == 0
    registered = inspect.registered()
    for name in ("tests.apps.basic.add", "custom.name", "tests.apps.basic.wait_gate"):
        assert name in registered["a@test"] and name in registered["b@test"]
    # ... and a destination picks one of them
    assert basic.jobs.control.inspect(destination="b@test").ping() == {"b@test": {"ok": "pong"}}
    assert basic.jobs.control.inspect(destination=["nobody@test"]).stats() == {}

    # The CLI says the same, as `celery status` does
    result = app.test_cli_runner().invoke(jobs_cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "a@test: OK" in result.output and "b@test: OK" in result.output
    assert "2 nodes online." in result.output
    result = app.test_cli_runner().invoke(jobs_cli, ["inspect", "registered", "-d", "a@test"])
    assert result.exit_code == 0, result.output
    assert "-> a@test: OK" in result.output and "b@test" not in result.output
    assert "    * custom.name" in result.output

    # When a worker stops, it is gone from every view at once
    assert a.stop() == 0
    assert inspect.ping().keys() == {"b@test"}


def test_active_and_reserved_tasks_of_a_busy_worker(app, jobs_redis, worker_process):
    # Given three tasks queued before a solo worker starts: it claims all three at once
    gates = ["gate-1", "gate-2", "gate-3"]
    sent = [basic.wait_gate.delay(g, 20) for g in gates]
    # (and keeps the two it prefetched: fair dispatch would give them back after 10 ms)
    worker_process("-P", "solo", "-n", "busy@test", env={"JOBS_WORKER_PREFETCH_HOLD": "60"})
    first, later = sent[0].id, {r.id for r in sent[1:]}
    inspect = basic.jobs.control.inspect()

    # Expect the first one to be active (started, with its arguments) and the two others
    # reserved (prefetched, not started)
    wait_for(lambda: [t["id"] for t in inspect.active().get("busy@test", [])] == [first], 10,
             "the first task active")
    (running,) = inspect.active()["busy@test"]
    assert running["name"] == "tests.apps.basic.wait_gate"
    assert running["args"] == ["gate-1", 20] and running["kwargs"] == {}
    assert running["state"] == "STARTED" and running["queue"] == "default"
    assert running["hostname"] == "busy@test" and running["delivery_attempt"] == 1
    redis_now = jobs_redis.time()[0]
    assert abs(running["time_start"] - redis_now) < 60  # a Unix time on Redis's clock
    reserved = inspect.reserved()["busy@test"]
    assert {t["id"] for t in reserved} == later
    assert all(t["time_start"] is None and t["state"] == "PENDING" for t in reserved)
    assert inspect.stats()["busy@test"]["active"] == 3

    # The CLI shows them, as text and as JSON
    result = app.test_cli_runner().invoke(jobs_cli, ["inspect", "active"])
    assert result.exit_code == 0, result.output
    assert "-> busy@test: OK" in result.output
    assert first in result.output and "tests.apps.basic.wait_gate" in result.output
    result = app.test_cli_runner().invoke(jobs_cli, ["inspect", "reserved", "--json"])
    assert result.exit_code == 0, result.output
    assert {t["id"] for t in json.loads(result.output)["busy@test"]} == later

    # When the gates open, every task finishes and the worker holds nothing
    for g in gates:
        jobs_redis.rpush(g, "go")
    assert [r.get(timeout=10) for r in sent] == ["go", "go", "go"]
    wait_for(lambda: inspect.stats()["busy@test"]["active"] == 0, 10, "nothing held")
    assert inspect.active() == {"busy@test": []} and inspect.reserved() == {"busy@test": []}
    result = app.test_cli_runner().invoke(jobs_cli, ["inspect", "active"])
    assert "- empty -" in result.output


def test_no_worker_online_is_an_error_for_the_cli(app):
    # Given no worker at all
    assert basic.jobs.control.inspect().ping() == {}
    # Expect `status` and `inspect` to say so and exit 1 (scripts can check it)
    for args in (["status"], ["inspect", "active"], ["inspect", "stats", "--json"]):
        result = app.test_cli_runner().invoke(jobs_cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "No worker is online" in result.output
    result = app.test_cli_runner().invoke(jobs_cli, ["inspect", "everything"])
    assert result.exit_code == 2 and "everything" in result.output


def test_arguments_in_a_refused_content_type_are_never_decoded(app, jobs_redis, tmp_path):
    # Given a live worker (its heartbeat and active hash, as a worker writes them) holding a
    # task whose message is pickle, which this app does not accept, and which would create a
    # file if it were ever unpickled
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    identity = "evil@test:1:abc"
    jobs_redis.set(f"jobs:hb:{identity}", json.dumps({"hostname": "evil@test", "pid": 1}),
                   px=10_000)
    jobs_redis.sadd("jobs:workers", identity)
    jobs_redis.hset(f"jobs:w:{identity}:active", "t1", 1)
    jobs_redis.hset("jobs:t:t1", mapping={
        "state": "STARTED", "name": "tests.apps.basic.add", "queue": "default", "st": 1,
        "ctype": "pickle", "body": pickle.dumps({"args": [Exploit()], "kwargs": {}})})
    # Expect the task to be listed without its arguments, and nothing unpickled
    (task,) = basic.jobs.control.inspect().active()["evil@test"]
    assert task["id"] == "t1" and task["args"] is None and task["kwargs"] is None
    assert not marker.exists()


def test_a_prefork_worker_is_one_worker_with_its_children_tasks(app, jobs_redis, worker_process):
    # Given a prefork worker with two children (each claims under an identity of its own),
    # each claiming one task at a time, so each runs one of the two below
    worker_process("-P", "prefork", "-c", "2", "--prefetch", "1", "-n", "forked@test")
    inspect = basic.jobs.control.inspect()
    wait_for(lambda: inspect.ping(), 10, "the worker")
    # When both children run a task each
    sent = [basic.wait_gate.delay(g, 20) for g in ("pf-1", "pf-2")]
    # Expect one worker, running both
    wait_for(lambda: len(inspect.active().get("forked@test", [])) == 2, 10, "both tasks active")
    assert list(inspect.ping()) == ["forked@test"]
    assert {t["id"] for t in inspect.active()["forked@test"]} == {r.id for r in sent}
    assert inspect.stats()["forked@test"]["active"] == 2
    result = app.test_cli_runner().invoke(jobs_cli, ["status"])
    assert "forked@test: OK" in result.output and "2 held" in result.output
    assert "1 node online." in result.output
    for g in ("pf-1", "pf-2"):
        jobs_redis.rpush(g, "go")
    assert [r.get(timeout=10) for r in sent] == ["go", "go"]
