"""Soft and hard time limits in real worker processes, per pool.

The soft limit raises ``SoftTimeLimitExceeded`` inside the task, which may catch it and clean up.
The hard limit ends the task as FAILURE ``TimeLimitExceeded``; in prefork the parent kills a child
that ignores it (stuck with the alarm blocked, as in a C call) and the pool recovers.

In the threads pool a limit is an asynchronous exception, delivered at the task's next Python
bytecode: a task blocked in one long C call (``time.sleep(5)``) sees it only when the call
returns, so the threads cases use tasks that sleep in short steps.
"""

from __future__ import annotations

import pytest

from flask_jobs.exceptions import TimeLimitExceeded
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import children, field


@pytest.mark.parametrize("pool, task", [
    (["-P", "solo"], "soft_limited"),
    (["-P", "prefork", "-c", "1"], "soft_limited"),
    (["-P", "gevent", "-c", "5"], "soft_limited"),
    (["-P", "threads", "-c", "2"], "soft_limited_steps"),
    (["-P", "solo"], "soft_limited_steps"),
], ids=["solo", "prefork", "gevent", "threads", "solo-steps"])
def test_soft_limit_lets_task_clean_up(app, jobs_redis, worker_process, pool, task):
    worker_process(*pool)
    r = getattr(basic, task).delay()
    # the task sleeps 5-10 s unless interrupted; the soft limit (0.2-0.3 s) interrupts it
    assert r.get(timeout=4) == "cleaned up"
    assert basic.add.delay(1, 1).get(timeout=10) == 2


@pytest.mark.parametrize("pool, task", [
    (["-P", "solo"], "hard_limited"),
    (["-P", "solo"], "hard_limited_busy"),
    (["-P", "prefork", "-c", "1"], "hard_limited"),
    (["-P", "prefork", "-c", "1"], "hard_limited_busy"),
    (["-P", "threads", "-c", "2"], "hard_limited_busy"),
    (["-P", "gevent", "-c", "5"], "hard_limited"),
], ids=["solo", "solo-busy", "prefork", "prefork-busy", "threads-busy", "gevent"])
def test_hard_limit_fails_task(app, jobs_redis, worker_process, pool, task):
    w = worker_process(*pool)
    r = getattr(basic, task).delay()
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=4)
    assert r.state == "FAILURE"
    assert field(jobs_redis, r.id, "att") == "1"  # a final failure, not delivered again
    assert basic.add.delay(1, 1).get(timeout=10) == 2
    assert w.proc.poll() is None


def test_per_call_time_limit(app, jobs_redis, worker_process):
    worker_process("-P", "solo")
    r = basic.sleep_for.apply_async((5,), time_limit=0.3)
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=4)


def test_prefork_parent_kills_child_stuck_past_hard_limit(app, jobs_redis, worker_process):
    # Given a prefork child running a task that cannot be interrupted (SIGALRM blocked)
    w = worker_process("-P", "prefork", "-c", "1")
    wait_for(lambda: len(children(w.proc.pid)) == 1, 10, "the child")
    before = children(w.proc.pid)
    r = basic.hard_limited_stuck.delay(30)
    # When it runs past its hard limit (0.3 s) and the grace period
    # Expect the parent to kill the child and record TimeLimitExceeded (not deliver it again)
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=15)
    assert field(jobs_redis, r.id, "att") == "1"
    # ... and the pool to recover with a new child
    wait_for(lambda: (kids := children(w.proc.pid)) and kids != before, 10,
             "a replacement child")
    assert basic.add.delay(1, 1).get(timeout=10) == 2
    assert "past its hard time limit" in w.output()
    assert r.state == "FAILURE" and field(jobs_redis, r.id, "att") == "1"
