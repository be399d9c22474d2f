"""Signals: each is sent with Celery's arguments, and a raising receiver breaks nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flask_jobs import signals
from flask_jobs.task import Context, ExceptionInfo
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.apps.basic import CustomError
from tests.conftest import wait_for
from tests.worker_helpers import redis_ms


class Recorder:
    """Collects ``(sender, kwargs)`` of a signal, from any thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append((sender, kwargs))

    def for_task(self, task_id: str, key: str = "task_id") -> list[tuple[Any, dict[str, Any]]]:
        with self.lock:
            return [c for c in self.calls if _task_id(c[1], key) == task_id]


def _task_id(kwargs: dict[str, Any], key: str) -> Any:
    if key == "request":
        return kwargs["request"].id
    return kwargs.get(key)


@contextmanager
def listening(signal) -> Iterator[Recorder]:
    recorder = Recorder()
    signal.connect(recorder)
    try:
        yield recorder
    finally:
        signal.disconnect(recorder)


def test_success_signals(app, jobs_worker):
    with listening(signals.task_received) as received, listening(signals.task_prerun) as prerun, \
            listening(signals.task_postrun) as postrun, listening(signals.task_success) as success:
        result = basic.add.apply_async((2, 3))
        assert result.get(timeout=10) == 5
        wait_for(lambda: postrun.for_task(result.id), message="task_postrun")

    [(sender, kw)] = received.for_task(result.id, key="request")
    assert sender is basic.add
    assert isinstance(kw["request"], Context)
    assert kw["request"].args == [2, 3] and kw["request"].hostname == "worker@test"

    [(sender, kw)] = prerun.for_task(result.id)
    assert sender is basic.add
    assert kw == {"task_id": result.id, "task": basic.add, "args": [2, 3], "kwargs": {}}

    [(sender, kw)] = postrun.for_task(result.id)
    assert sender is basic.add
    assert kw == {"task_id": result.id, "task": basic.add, "args": [2, 3], "kwargs": {},
                  "retval": 5, "state": "SUCCESS"}

    calls = [c for c in success.calls if c[0] is basic.add]
    assert calls == [(basic.add, {"result": 5})]


def test_receivers_for_one_sender_are_reached(app, jobs_worker):
    # The worker skips signals nobody listens to; a receiver for one task only still counts.
    received, prerun, success = Recorder(), Recorder(), Recorder()
    signals.task_received.connect(received, sender=basic.mul)
    signals.task_prerun.connect(prerun, sender=basic.mul)
    signals.task_success.connect(success, sender=basic.mul)
    try:
        assert basic.add.delay(1, 2).get(timeout=10) == 3
        result = basic.mul.delay(2, 3)
        assert result.get(timeout=10) == 6
        wait_for(lambda: success.calls, message="task_success")
    finally:
        signals.task_received.disconnect(received, sender=basic.mul)
        signals.task_prerun.disconnect(prerun, sender=basic.mul)
        signals.task_success.disconnect(success, sender=basic.mul)
    assert [c[1]["request"].id for c in received.calls] == [result.id]
    assert [c[1]["task_id"] for c in prerun.calls] == [result.id]
    assert success.calls == [(basic.mul, {"result": 6})]


def test_failure_signal(app, jobs_worker):
    with listening(signals.task_failure) as failure, listening(signals.task_postrun) as postrun:
        result = basic.fail.delay("bad")
        with pytest.raises(CustomError):
            result.get(timeout=10)
        wait_for(lambda: postrun.for_task(result.id), message="task_postrun")

    [(sender, kw)] = failure.for_task(result.id)
    assert sender is basic.fail
    assert isinstance(kw["exception"], CustomError) and str(kw["exception"]) == "bad"
    assert "CustomError: bad" in kw["traceback"]
    assert kw["args"] == ["bad"] and kw["kwargs"] == {}
    assert isinstance(kw["einfo"], ExceptionInfo) and kw["einfo"].type is CustomError
    [(_, post)] = postrun.for_task(result.id)
    assert post["state"] == "FAILURE" and post["retval"] is None


def test_retry_signal(app, jobs_worker):
    with listening(signals.task_retry) as retry, listening(signals.task_success) as success:
        result = basic.retry_then_succeed.delay(2)
        assert result.get(timeout=10) == 2
        wait_for(lambda: any(c[0] is basic.retry_then_succeed for c in success.calls))

    calls = retry.for_task(result.id, key="request")
    assert len(calls) == 2
    for (sender, kw), expected_retries in zip(calls, [0, 1], strict=True):
        assert sender is basic.retry_then_succeed
        assert isinstance(kw["reason"], ValueError)
        assert str(kw["reason"]) == f"try {expected_retries}"
        assert kw["request"].retries == expected_retries
        assert isinstance(kw["einfo"], ExceptionInfo)


def test_progress_signal(app, jobs_worker):
    with listening(signals.task_progress) as progress:
        result = basic.state_then_gate.apply_async(("sig-gate",), {"state": "CRUNCHING"})
        wait_for(lambda: progress.for_task(result.id), message="task_progress")
        app.extensions["jobs"].client.rpush("sig-gate", "go")
        assert result.get(timeout=10) == "released"
    [(sender, kw)] = progress.for_task(result.id)
    assert sender is basic.state_then_gate
    assert kw == {"task_id": result.id, "state": "CRUNCHING", "meta": {"phase": 1}}


def test_progress_signal_of_progress_shortcut(app, jobs_worker):
    with listening(signals.task_progress) as progress:
        result = basic.state_then_gate.apply_async(("sig-gate2",))
        wait_for(lambda: progress.for_task(result.id), message="task_progress")
        app.extensions["jobs"].client.rpush("sig-gate2", "go")
        assert result.get(timeout=10) == "released"
    [(sender, kw)] = progress.for_task(result.id)
    assert sender is basic.state_then_gate
    assert kw["state"] == "PROGRESS"
    assert kw["meta"] == {"current": 3, "total": 10, "status": "three of ten"}


def test_progress_signal_with_sender_filter_and_in_eager_runs(app):
    recorder = Recorder()
    signals.task_progress.connect(recorder, sender=basic.progress_shortcut)
    try:
        basic.progress_task.apply((2,))
        result = basic.progress_shortcut.apply((2,), task_id="eager-progress")
    finally:
        signals.task_progress.disconnect(recorder, sender=basic.progress_shortcut)
    assert result.get() == 2
    assert recorder.calls == [
        (basic.progress_shortcut, {"task_id": "eager-progress", "state": "PROGRESS",
                                   "meta": {"current": i, "total": 2, "status": f"step {i}"}})
        for i in (1, 2)
    ]


def test_sender_filter(app, jobs_worker):
    recorder = Recorder()
    signals.task_success.connect(recorder, sender=basic.mul)
    try:
        assert basic.add.delay(1, 1).get(timeout=10) == 2
        assert basic.mul.delay(3, 3).get(timeout=10) == 9
        wait_for(lambda: recorder.calls, message="task_success of mul")
    finally:
        signals.task_success.disconnect(recorder, sender=basic.mul)
    assert recorder.calls == [(basic.mul, {"result": 9})]


def test_raising_receiver_does_not_break_the_worker(app, jobs_worker):
    def explode(sender, **kwargs):
        raise RuntimeError("receiver bug")

    for sig in (signals.task_received, signals.task_prerun, signals.task_postrun,
                signals.task_success, signals.task_failure, signals.task_progress):
        sig.connect(explode)
    try:
        assert basic.add.delay(1, 2).get(timeout=10) == 3
        with pytest.raises(CustomError):
            basic.fail.delay().get(timeout=10)
        assert basic.progress_task.delay(3).get(timeout=10)["result"] == 42
        assert basic.add.delay(3, 4).get(timeout=10) == 7
    finally:
        for sig in (signals.task_received, signals.task_prerun, signals.task_postrun,
                    signals.task_success, signals.task_failure, signals.task_progress):
            sig.disconnect(explode)


def test_worker_ready_and_shutdown_signals(app, jobs_redis):
    with listening(signals.worker_ready) as ready, listening(signals.worker_shutdown) as shutdown:
        worker = BackgroundWorker(app, hostname="worker@sig").start()
        assert [kw for _, kw in ready.calls] == [{"hostname": "worker@sig"}]
        assert shutdown.calls == []
        worker.stop()
    assert [kw for _, kw in shutdown.calls] == [{"hostname": "worker@sig"}]
    assert ready.calls[0][0] is shutdown.calls[0][0] is worker.worker


def test_revoked_signal_for_tasks_skipped_at_claim(app, jobs_redis):
    # Given a task revoked while queued and one that expired while queued
    revoked = basic.add.delay(1, 1)
    revoked.revoke()
    expired = basic.add.apply_async((2, 2), expires=0.05)
    exp = int(jobs_redis.hget(f"jobs:t:{expired.id}", "exp"))
    wait_for(lambda: redis_ms(jobs_redis) > exp, message="expiry time to pass")
    fresh = basic.add.delay(3, 3)
    # When a worker reaches them
    with listening(signals.task_revoked) as got, BackgroundWorker(app):
        assert fresh.get(timeout=10) == 6
        wait_for(lambda: len(got.calls) == 2, message="task_revoked twice")
    # Expect task_revoked for each, as Celery sends it for a task it discards on receipt
    calls = {kw["request"].id: (sender, kw) for sender, kw in got.calls}
    for result, expired_flag in ((revoked, False), (expired, True)):
        sender, kw = calls[result.id]
        assert sender is basic.add and kw["request"].task == basic.add.name
        assert (kw["terminated"], kw["expired"]) == (False, expired_flag)


def test_revoked_signal_for_a_task_revoked_in_the_prefetch_buffer(app, jobs_redis):
    # Given a worker that claimed two tasks at once and runs the first, which waits
    first = basic.wait_gate.delay("go")
    second = basic.add.delay(4, 4)
    with listening(signals.task_revoked) as got, BackgroundWorker(app, prefetch=4) as worker:
        wait_for(lambda: jobs_redis.hget(f"jobs:t:{second.id}", "att") == b"1",
                 message="the second task to be claimed")
        # When the second is revoked before it starts (and the worker heard the broadcast)
        wait_for(lambda: jobs_redis.pubsub_numsub("jobs:control")[0][1] >= 1,
                 message="the worker to listen for broadcasts")
        second.revoke()
        wait_for(lambda: second.id in worker.runtime.revoked, message="the revoke broadcast")
        jobs_redis.rpush("go", "1")
        assert first.get(timeout=10) == "1"
        # Expect it skipped, with task_revoked
        wait_for(lambda: got.for_task(second.id, key="request"), message="task_revoked")
    assert second.state == "REVOKED"
    [(sender, kw)] = got.for_task(second.id, key="request")
    assert sender is basic.add and (kw["terminated"], kw["expired"]) == (False, False)
