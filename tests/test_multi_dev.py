"""``flask jobs multi`` (background workers with pid and log files) and ``flask jobs dev``
(app, worker and beat in one command), as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flask_jobs.processes import alive
from tests.apps import basic
from tests.conftest import ROOT, LoggedProcess, wait_for

pytestmark = pytest.mark.slow


def flask(redis_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBS_BROKER_URL": redis_url, "JOBS_ORPHAN_TIMEOUT": "1.0",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "tests.apps.basic:create_app",
                           "jobs", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_multi_starts_and_stops_background_workers(app, jobs_redis, jobs_redis_url, tmp_path):
    files = ["--pidfile", f"{tmp_path}/%n.pid", "--logfile", f"{tmp_path}/%n.log"]
    shown = flask(jobs_redis_url, "multi", "show", "2", "-P", "solo", *files)
    assert shown.returncode == 0 and shown.stdout.count("jobs worker -n worker") == 2
    started = flask(jobs_redis_url, "multi", "start", "2", "-P", "solo", *files)
    host = socket.gethostname()
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"> worker1@{host}: OK" in started.stdout
        pids = [int((tmp_path / f"worker{i}.pid").read_text()) for i in (1, 2)]
        assert all(alive(pid) for pid in pids)
        # they run tasks and answer pings, after the command returned
        assert basic.add.delay(2, 2).get(timeout=10) == 4
        replies = app.extensions["jobs"].jobs.control.ping(
            [f"worker1@{host}", f"worker2@{host}"], timeout=3, limit=2)
        assert {name for r in replies for name in r} == {f"worker1@{host}", f"worker2@{host}"}
        again = flask(jobs_redis_url, "multi", "start", "2", *files)
        assert "already running" in again.stdout
    finally:
        stopped = flask(jobs_redis_url, "multi", "stop", "2", *files)
    assert stopped.returncode == 0 and stopped.stdout.count("stopping") == 2
    assert not any(alive(pid) for pid in pids)  # (stop waited for their warm shutdown)
    assert not list(tmp_path.glob("*.pid"))
    assert "stopped." in (tmp_path / "worker1.log").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dev_runs_the_app_a_worker_and_a_beat(app, jobs_redis, jobs_redis_url, tmp_path):
    port = _free_port()
    env = {**os.environ, "JOBS_BROKER_URL": jobs_redis_url, "PYTHONPATH": str(ROOT),
           "JOBS_BEAT_SCHEDULE": '{"tick": {"task": "tests.apps.basic.record", '
                                 '"schedule": 0.5, "args": ["tick", "dev-ticks"]}}'}
    dev = LoggedProcess([sys.executable, "-m", "flask", "--app", "tests.apps.basic:create_app",
                         "jobs", "dev", "--port", str(port), "-P", "solo"], env,
                        tmp_path / "dev.log")
    try:
        wait_for(lambda: "Running on http://" in dev.output() or dev.proc.poll() is not None,
                 60, "the dev server")
        assert dev.proc.poll() is None, dev.output()
        assert "[worker]" in dev.output()
        # the app answers, the worker runs what it sends, the beat sends the periodic task
        task_id = basic.add.delay(1, 2).id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/status/{task_id}") as r:
            assert r.status == 200
        wait_for(lambda: jobs_redis.llen("dev-ticks") >= 2, 20, "periodic runs")
    finally:
        dev.signal(signal.SIGTERM)
        code = dev.proc.wait(30)
        dev.log.close()
    assert code == 0, dev.output()
    assert "dev: stopping the worker" in dev.output()
    assert "stopped." in Path(tmp_path / "dev.log").read_text()
