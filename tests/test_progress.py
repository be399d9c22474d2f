"""Progress: update_state and progress() seen while the task runs, coalesced writes, events."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from flask_jobs import signals
from tests.apps import basic
from tests.conftest import wait_for


class Events:
    """The states published on a task's channel, read from a subscription made in advance."""

    def __init__(self, client, task_id: str) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(f"jobs:ev:{task_id}")
        self.pubsub.get_message(timeout=1)  # the subscribe confirmation
        self.states: list[str] = []

    def until(self, final: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while final not in self.states:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {final} event within {timeout}s; got {self.states[-5:]}")
            message = self.pubsub.get_message(timeout=left)
            if message is not None:
                self.states.append(message["data"].decode())
        self.pubsub.close()
        return self.states


def snapshot(client, task_id: str) -> tuple[str, object]:
    """State and meta of a task, read together (one HMGET)."""
    state, raw = client.hmget(f"jobs:t:{task_id}", "state", "result")
    return (state or b"").decode(), json.loads(raw) if raw else None


def test_update_state_visible_while_running(app, jobs_redis, jobs_worker):
    result = basic.progress_task.delay(200, pause=0.01)

    def in_progress():
        state, meta = snapshot(jobs_redis, result.id)
        return state == "PROGRESS" and meta["current"] > 0 and meta

    meta = wait_for(in_progress, message="a PROGRESS state with current > 0")
    assert meta["total"] == 200 and meta["status"] == "working"
    assert 0 < meta["current"] < 200
    assert not result.ready()
    assert result.get(timeout=20) == {"current": 200, "total": 200, "status": "done", "result": 42}


def test_progress_shortcut_visible_while_running(app, jobs_redis, jobs_worker):
    result = basic.state_then_gate.delay("gate-progress")
    wait_for(lambda: result.state == "PROGRESS", message="PROGRESS")
    assert result.info == {"current": 3, "total": 10, "status": "three of ten"}
    assert result.result == result.info
    jobs_redis.rpush("gate-progress", "go")
    assert result.get(timeout=10) == "released"
    assert result.state == "SUCCESS"


def test_custom_state_visible_while_running(app, jobs_redis, jobs_worker):
    result = basic.state_then_gate.delay("gate-custom", state="CRUNCHING")
    wait_for(lambda: result.state == "CRUNCHING", message="the custom state")
    assert result.info == {"phase": 1}
    assert not result.ready()
    jobs_redis.rpush("gate-custom", "go")
    assert result.get(timeout=10) == "released"


def test_last_report_lands_before_the_final_state(app, jobs_redis, jobs_worker):
    task_id = str(uuid.uuid4())
    events = Events(jobs_redis, task_id)
    result = basic.custom_state.apply_async(task_id=task_id)  # reports once, returns at once
    assert result.get(timeout=10) == "ok"
    states = events.until("SUCCESS")
    assert states.index("CRUNCHING") < states.index("SUCCESS")
    assert states[-2:] == ["CRUNCHING", "SUCCESS"]


def test_progress_is_coalesced(app, jobs_redis, jobs_worker):
    n = 200_000
    task_id = str(uuid.uuid4())
    metas: list[dict] = []
    lock = threading.Lock()

    def on_progress(sender, task_id=None, state=None, meta=None):
        if task_id == result_id:
            with lock:
                metas.append(meta)

    result_id = task_id
    events = Events(jobs_redis, task_id)
    signals.task_progress.connect(on_progress)
    try:
        before = jobs_redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        result = basic.progress_shortcut.apply_async((n,), task_id=task_id)
        assert result.get(timeout=60) == n
        states = events.until("SUCCESS")
        after = jobs_redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    finally:
        signals.task_progress.disconnect(on_progress)

    progress_events = states.count("PROGRESS")
    assert 1 <= progress_events < 200, progress_events
    assert after - before < 200
    assert states[-2:] == ["PROGRESS", "SUCCESS"]
    assert 1 <= len(metas) < 200  # one signal per report written, not per call
    assert metas[-1] == {"current": n, "total": n, "status": f"step {n}"}


def test_update_state_of_another_task_by_id(app, jobs_redis):
    queued = basic.add.delay(1, 2)  # no worker: stays queued
    basic.add.update_state(task_id=queued.id, state="WAITING", meta={"why": "quota"})
    assert queued.state == "WAITING"
    assert queued.info == {"why": "quota"}
    with pytest.raises(KeyError):
        basic.add.update_state(task_id="no-such-id", state="X", meta={})


def test_progress_outside_a_run_is_an_error(app):
    with pytest.raises(RuntimeError, match="while the task runs"):
        basic.progress_shortcut.progress(1, 2)
    with pytest.raises(RuntimeError):
        basic.progress_shortcut(3)  # a direct call has no run to report to
    with pytest.raises(RuntimeError, match="task_id"):
        basic.progress_task.update_state(state="PROGRESS", meta={})


def test_late_progress_write_is_dropped_not_counted_as_stale(app, jobs_redis):
    # The flusher thread and the claim carry one worker's writes on two connections, so a
    # STARTED or progress write can reach Redis just after the same attempt's final write.
    state = app.extensions["jobs"]
    broker, client = state.broker, state.client
    sent = basic.add.delay(1, 2)
    [claimed], _, _ = broker.claim(client, "worker@late", 1, ["default"])
    att = claimed.attempt
    final = ("F", sent.id, att, "SUCCESS", "json", b"3", "", "", "")
    assert broker.write(client, "worker@late", [final]) == 0
    late = [("S", sent.id, att, "STARTED", "", "", "", "", ""),
            ("P", sent.id, att, "PROGRESS", "json", b'{"current": 1}', "", "", "")]
    assert broker.write(client, "worker@late", late) == 0
    assert sent.get(timeout=1) == 3 and sent.state == "SUCCESS"
    assert "stale_writes" not in broker.stats()
    # A write of another attempt (a zombie's) is still refused and counted.
    zombie = ("P", sent.id, att + 1, "PROGRESS", "json", b'{"current": 2}', "", "", "")
    assert broker.write(client, "worker@late", [zombie]) == 1
    assert broker.stats()["stale_writes"] == 1
    assert sent.state == "SUCCESS"


def test_last_report_is_in_the_final_batch_even_if_the_flusher_took_it(app):
    # The flusher's write of the last report travels on another connection and may land after
    # the final one (then it is dropped): the final batch must carry the last report again.
    from flask_jobs.execution import Outcome
    from flask_jobs.worker.writer import Reporter, Writer

    writer = Writer(app.extensions["jobs"], "worker@unit")
    reporter = Reporter("task-1", 1)
    writer.started(reporter)
    reporter.progress(10, 10, "done", {})
    flushed = writer.collect(final=False)
    assert [w[0] for w in flushed] == ["S", "P"]
    writer.finished(reporter, Outcome("SUCCESS", 42, retval=42))
    final = writer.collect(final=True)
    assert [(w[0], w[3]) for w in final] == [("P", "PROGRESS"), ("F", "SUCCESS")]
    assert json.loads(final[0][5]) == {"current": 10, "total": 10, "status": "done"}


def test_short_task_sends_no_started_and_its_outcome_waits_for_the_claim(app, monkeypatch):
    # A task that finishes before STARTED_DELAY is never written as STARTED, and the flusher
    # leaves its outcome to the next claim for FINAL_FLUSH_DELAY: a worker draining short
    # tasks makes no round trips besides its claims. (The delays are made long, so the test
    # does not depend on how fast this machine is.)
    from flask_jobs.execution import Outcome
    from flask_jobs.worker import writer as w

    monkeypatch.setattr(w, "STARTED_DELAY", 60.0)
    monkeypatch.setattr(w, "FINAL_FLUSH_DELAY", 60.0)
    writer = w.Writer(app.extensions["jobs"], "worker@unit")
    assert writer.wait_time() == w.IDLE_TICK
    reporter = w.Reporter("task-short", 1)
    writer.started(reporter)
    assert 0 < writer.wait_time() <= w.FLUSH_TICK
    assert writer.collect(final=False) == []
    writer.finished(reporter, Outcome("SUCCESS", None, retval=None))
    assert writer.collect(final=False) == []
    assert 0 < writer.wait_time() <= w.FLUSH_TICK
    final = writer.collect(final=True)
    assert [(x[0], x[3], x[5]) for x in final] == [("F", "SUCCESS", b"null")]
    assert writer.wait_time() == w.IDLE_TICK


def test_long_task_is_started_and_a_report_goes_after_its_started(app, monkeypatch):
    from flask_jobs.worker import writer as w

    writer = w.Writer(app.extensions["jobs"], "worker@unit")
    monkeypatch.setattr(w, "STARTED_DELAY", 60.0)
    early = w.Reporter("task-reports-early", 1)
    writer.started(early)
    early.report("CRUNCHING", {"phase": 1})
    # Due at once (the first report), and STARTED goes first even though not due on its own:
    # written after it, STARTED would hide the report.
    assert writer.wait_time() <= 0.001
    assert [(x[0], x[3]) for x in writer.collect(final=False)] == [
        ("S", "STARTED"), ("P", "CRUNCHING")]
    assert writer.collect(final=False) == []

    monkeypatch.setattr(w, "STARTED_DELAY", 0.0)  # this one has run long enough
    long = w.Reporter("task-long", 1)
    writer.started(long)
    assert writer.wait_time() <= 0.001
    assert [(x[0], x[1]) for x in writer.collect(final=False)] == [("S", "task-long")]


def test_started_of_a_long_task_lands_while_it_runs(app, jobs_redis, jobs_worker):
    task_id = str(uuid.uuid4())
    events = Events(jobs_redis, task_id)
    result = basic.wait_gate.apply_async(("gate-started",), task_id=task_id)
    wait_for(lambda: result.state == "STARTED", message="STARTED of the waiting task")
    jobs_redis.rpush("gate-started", "go")
    assert result.get(timeout=10) == "go"
    assert events.until("SUCCESS") == ["STARTED", "SUCCESS"]
