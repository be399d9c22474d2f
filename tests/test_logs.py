"""Worker logs in Celery's shape, read from real worker processes' output: received, succeeded,
failed (with or without a traceback), retried, discarded; task loggers; JSON lines; log files."""

from __future__ import annotations

import json
import logging
import re

import pytest

from flask_jobs import get_task_logger, logs, signals
from flask_jobs.worker.main import configure_logging
from tests.apps import basic
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def lines_of(worker, task_id: str) -> list[str]:
    return [line for line in worker.output().splitlines() if task_id in line]


def test_a_worker_at_info_logs_each_task_as_celery(worker_process, app, jobs_redis):
    worker = worker_process("-P", "solo", "-l", "INFO")
    ok = basic.add.delay(2, 2)
    bad = basic.fail.delay("boom")
    assert ok.get(timeout=10) == 4
    bad.get(timeout=10, propagate=False)
    # received, then succeeded with the runtime and the result
    wait_for(lambda: any("succeeded" in line for line in lines_of(worker, ok.id)), 10)
    got = lines_of(worker, ok.id)
    assert got[0].endswith(f"Task tests.apps.basic.add[{ok.id}] received")
    assert re.search(rf"Task tests\.apps\.basic\.add\[{ok.id}\] succeeded in [0-9.e-]+s: 4$",
                     got[1]), got
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+: INFO/MainProcess\] ", got[0])
    # a failure at ERROR, with its traceback on the following lines
    wait_for(lambda: "raised unexpected" in worker.output(), 10)
    out = worker.output()
    assert f"ERROR/MainProcess] Task tests.apps.basic.fail[{bad.id}] raised unexpected: " \
           "CustomError('boom')" in out
    after = out.split(f"[{bad.id}] raised unexpected")[1]
    assert "Traceback (most recent call last)" in after and 'raise CustomError(message)' in after


def test_an_expected_exception_is_logged_without_a_traceback(worker_process, app, jobs_redis):
    worker = worker_process("-P", "solo", "-l", "INFO")
    r = basic.expected_failure.delay()
    r.get(timeout=10, propagate=False)
    assert r.state == "FAILURE"
    wait_for(lambda: "raised expected" in worker.output(), 10)
    line = lines_of(worker, r.id)[-1]
    assert line.endswith(f"Task tests.apps.basic.expected_failure[{r.id}] raised expected: "
                         "CustomError('expected')")
    assert "INFO/MainProcess" in line and "Traceback" not in worker.output()


def test_retries_and_discarded_tasks_are_logged(worker_process, app, jobs_redis):
    worker = worker_process("-P", "solo", "-l", "INFO")
    r = basic.retry_then_succeed.delay(2)
    assert r.get(timeout=10) is not None
    wait_for(lambda: "retry: Retry in" in worker.output(), 10)
    assert re.search(rf"\[{r.id}\] retry: Retry in [0-9.]+s: ", worker.output())
    gated = basic.wait_gate.delay("logs-gate")  # keeps the solo worker busy
    queued = basic.add.delay(1, 1)
    queued.revoke()
    jobs_redis.rpush("logs-gate", 1)
    gated.get(timeout=10)
    wait_for(lambda: f"Discarding revoked task: tests.apps.basic.add[{queued.id}]"
             in worker.output(), 10)


def test_task_loggers_carry_the_task_name_and_id(worker_process, app, jobs_redis):
    worker = worker_process("-P", "threads", "-c", "2", "-l", "INFO")
    r = basic.logs_a_line.delay("hello from the task")
    r.get(timeout=10)
    wait_for(lambda: "hello from the task" in worker.output(), 10)
    line = next(x for x in worker.output().splitlines() if "hello from the task" in x)
    assert re.match(rf"\[[^\]]+: WARNING/MainProcess\] tests\.apps\.basic\.logs_a_line"
                    rf"\[{r.id}\]: hello from the task$", line), line


def test_json_lines_and_a_log_file(worker_process, app, jobs_redis, tmp_path):
    logfile = tmp_path / "worker.log"
    worker = worker_process("-P", "solo", "-l", "INFO", "--log-format", "json",
                            "--logfile", str(logfile), ready=False)
    wait_for(lambda: logfile.exists() and "ready." in logfile.read_text(), 20, "ready")
    r = basic.logs_a_line.delay("as json")
    r.get(timeout=10)
    wait_for(lambda: "succeeded" in logfile.read_text(), 10)
    records = [json.loads(line) for line in logfile.read_text().splitlines()
               if line.startswith("{")]
    assert len(records) == len(logfile.read_text().splitlines())  # every line is an object
    mine = [x for x in records if x.get("task_id") == r.id]
    assert mine and mine[0]["message"] == "as json" and mine[0]["level"] == "WARNING"
    assert mine[0]["task_name"] == "tests.apps.basic.logs_a_line"
    assert any(x["message"].endswith(f"[{r.id}] succeeded in " + x["message"].split(
        "succeeded in ")[-1]) for x in records if "succeeded" in x["message"])
    assert "as json" not in worker.output()  # (the file, not stderr)


def test_at_warning_no_line_per_task(worker_process, app, jobs_redis):
    worker = worker_process("-P", "solo", "-l", "WARNING", ready=False)
    wait_for(lambda: basic.add.delay(1, 2).get(timeout=10) == 3, 20, "a task run")
    assert "received" not in worker.output() and "succeeded" not in worker.output()


def test_setup_logging_receivers_take_over(monkeypatch):
    root = logging.getLogger()
    before = list(root.handlers)
    calls = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    signals.setup_logging.connect(receiver)
    try:
        configure_logging("DEBUG", None, "json")
    finally:
        signals.setup_logging.disconnect(receiver)
    assert calls == [{"loglevel": "DEBUG", "logfile": None, "format": "json"}]
    assert root.handlers == before


def test_get_task_logger_outside_a_task_says_so(caplog):
    logger = get_task_logger("tests.somewhere")
    with caplog.at_level(logging.INFO):
        logger.info("no task here")
    record = caplog.records[-1]
    assert (record.task_name, record.task_id) == ("???", "???")
    assert logs.WorkerFormatter().format(record).endswith("???[???]: no task here")
