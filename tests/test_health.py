"""Health checks: ``jobs.control.ping()`` / ``flask jobs ping`` answered by real worker
processes, and the ``--health-file`` touched on every heartbeat."""

from __future__ import annotations

import pytest

from flask_jobs.cli import jobs_cli
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_ping_is_answered_by_each_live_worker(pool, worker_process, app, jobs_redis):
    worker_process("-P", pool, "-c", "1", "-n", f"{pool}@ping")
    # (named: every worker on this Redis hears a broadcast, other tests' included)
    replies = app.extensions["jobs"].jobs.control.ping(f"{pool}@ping", timeout=2.0, limit=1)
    assert replies == [{f"{pool}@ping": {"ok": "pong"}}]
    runner = app.test_cli_runner()
    ok = runner.invoke(jobs_cli, ["ping", "-d", f"{pool}@ping"])
    assert ok.exit_code == 0 and ok.output == f"-> {pool}@ping: OK pong\n"
    missing = runner.invoke(jobs_cli, ["ping", "-d", f"{pool}@ping,nobody@here", "-t", "0.3"])
    assert missing.exit_code == 1
    assert "nobody@here did not answer within 0.3s" in missing.output
    # the reply lists are deleted by the caller; one a late reply made again expires
    assert all(0 < jobs_redis.pttl(k) <= 60_000 for k in jobs_redis.keys("jobs:reply:*"))


def test_ping_without_workers_fails_fast(jobs_redis, jobs_redis_url):
    from tests.apps import basic

    # (a key prefix of its own: a broadcast reaches every worker of a prefix on this Redis,
    # those other tests left running included)
    lonely = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_KEY_PREFIX": "lonely"})
    result = lonely.test_cli_runner().invoke(jobs_cli, ["ping", "-t", "0.2"])
    assert result.exit_code == 1 and "No worker answered within 0.2s" in result.output
    with lonely.app_context():
        assert lonely.extensions["jobs"].jobs.control.ping(timeout=0.1) == []


def test_the_health_file_is_touched_on_every_heartbeat(worker_process, jobs_redis, tmp_path):
    health = tmp_path / "alive"
    worker = worker_process("-P", "solo", "--health-file", str(health))
    wait_for(health.exists, 10, "the health file")
    first = health.stat().st_mtime_ns
    # (JOBS_ORPHAN_TIMEOUT is 1 s in the tests: a beat every 0.25 s)
    wait_for(lambda: health.stat().st_mtime_ns > first, 10, "a newer touch")
    assert worker.stop() == 0


def test_call_and_result_as_celerys(worker_process, app, jobs_redis):
    worker_process("-P", "solo")
    runner = app.test_cli_runner()
    sent = runner.invoke(jobs_cli, ["call", "tests.apps.basic.add", "--args", "[2, 3]"])
    assert sent.exit_code == 0, sent.output
    task_id = sent.output.strip()
    got = runner.invoke(jobs_cli, ["result", task_id, "--timeout", "10"])
    assert (got.exit_code, got.output) == (0, "5\n")
    failed = runner.invoke(jobs_cli, ["call", "tests.apps.basic.fail", "-k", '{"message": "x"}'])
    fail_id = failed.output.strip()
    shown = runner.invoke(jobs_cli, ["result", fail_id, "--timeout", "10"])
    assert shown.exit_code == 1 and "ended FAILURE" in shown.output
    tb = runner.invoke(jobs_cli, ["result", fail_id, "--traceback"])
    assert tb.exit_code == 0 and "CustomError: x" in tb.output
    bad = runner.invoke(jobs_cli, ["call", "tests.apps.basic.add", "--args", "{oops"])
    assert bad.exit_code == 2 and "not JSON" in bad.output
    unknown = runner.invoke(jobs_cli, ["result", "no-such-id"])
    assert unknown.exit_code == 1 and "Unknown task id no-such-id" in unknown.output


def test_dlq_list_says_when_there_are_none(app, jobs_redis):
    out = app.test_cli_runner().invoke(jobs_cli, ["dlq", "list"])
    assert (out.exit_code, out.output) == (0, "No dead letters.\n")


def _commands(group, prefix=()):
    import click

    for name, command in sorted(group.commands.items()):
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_help_text_reads_as_plain_text(app):
    # Given every command and group of 'flask jobs'
    runner = app.test_cli_runner()
    for path, _command in [((), jobs_cli), *_commands(jobs_cli)]:
        out = runner.invoke(jobs_cli, [*path, "--help"])
        # Then its help shows, with no reST markup, and no command's line in a listing is
        # cut off with "..."
        assert out.exit_code == 0, (path, out.output)
        assert "``" not in out.output and ":data:" not in out.output, (path, out.output)
        if "Commands:" in out.output:
            listed = out.output.split("Commands:")[1].splitlines()
            assert not [line for line in listed if line.rstrip().endswith("...")], (
                path, out.output)


def test_dlq_requeue_all_shows_a_progress_bar(app, jobs_redis, worker_process):
    from tests.conftest import wait_for

    old = worker_process("-P", "solo")  # (does not know tests.late_deployed)
    sent = [app.extensions["jobs"].jobs.send_task("tests.late_deployed", [i]) for i in range(25)]
    wait_for(lambda: jobs_redis.llen("jobs:dlq") == 25, 20, "25 dead letters")
    assert old.stop() == 0
    worker_process("-P", "solo", env={"JOBS_TEST_LATE_DEPLOY": "1"})
    runner = app.test_cli_runner()
    both = runner.invoke(jobs_cli, ["dlq", "requeue", "--all", sent[0].id])
    assert both.exit_code == 2 and "not both" in both.output
    out = runner.invoke(jobs_cli, ["dlq", "requeue", "--all"])
    assert out.exit_code == 0, out.output
    assert "Requeueing" in out.output and "requeued 25 task(s)" in out.output
    assert [r.get(timeout=20) for r in sent] == [10 * i for i in range(25)]


def test_a_configuration_error_prints_one_line(tmp_path, jobs_redis_url):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "JOBS_BROKER_URL": jobs_redis_url, "PYTHONPATH": str(ROOT),
           "JOBS_TIMEZONE": "Mars/Olympus"}
    for args in (["queues"], ["worker", "-P", "solo"], ["beat"]):
        done = subprocess.run([sys.executable, "-m", "flask", "--app",
                               "tests.apps.basic:create_app", "jobs", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, (args, done.stderr)
        assert "Error: JOBS_TIMEZONE must be an IANA time zone name" in done.stderr, args
        assert "Traceback" not in done.stderr, (args, done.stderr)


def test_purging_thousands_shows_a_progress_bar(app, jobs_redis):
    from flask_jobs import group
    from tests.apps import basic

    group(basic.add.s(i, i) for i in range(6000)).apply_async()
    out = app.test_cli_runner().invoke(jobs_cli, ["purge", "-Q", "default", "-f"])
    assert out.exit_code == 0, out.output
    assert "Purging" in out.output and "Purged 6000 task(s) from 1 queue(s)." in out.output


def test_the_operations_commands_as_real_processes(worker_process, app, jobs_redis,
                                                   jobs_redis_url):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    worker_process("-P", "solo", "-n", "cli@test")
    env = {**os.environ, "JOBS_BROKER_URL": jobs_redis_url, "PYTHONPATH": str(ROOT)}

    def flask(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app",
                               "tests.apps.basic:create_app", "jobs", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    sent = flask("call", "tests.apps.basic.add", "-a", "[20, 22]")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    assert flask("result", task_id, "--timeout", "10").stdout == "42\n"
    assert flask("ping", "-d", "cli@test").stdout == "-> cli@test: OK pong\n"
    events = flask("events", "--since-start", "-t", "tests.apps.basic.add", "--type",
                   "task-succeeded", "-n", "1", "--json")
    assert events.returncode == 0, events.stderr
    assert f'"uuid": "{task_id}"' in events.stdout
