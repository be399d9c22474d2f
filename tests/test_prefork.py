"""The prefork pool's supervision: children killed from outside are replaced and their task is
delivered again at once, ``--max-tasks-per-child`` recycles children, and children do not outlive
a parent that was killed.
"""

from __future__ import annotations

import os
import signal

import pytest

from flask_jobs import group
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import children, start_counts, starts, terminal


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not running any more
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"


def test_killed_child_is_replaced_and_its_task_redelivered(app, jobs_redis, worker_process):
    # Given two children, each running a task
    w = worker_process("-P", "prefork", "-c", "2", "--prefetch", "1", "-n", "pf")
    wait_for(lambda: len(children(w.proc.pid)) == 2, 10, "two children")
    original = children(w.proc.pid)
    results = list(group(basic.sleep_and_record.s(1.5) for _ in range(2)).apply_async())
    wait_for(lambda: len(starts(jobs_redis)) == 2, 10, "both tasks to start")
    victim_task, _attempt, victim_pid = starts(jobs_redis)[0]
    assert victim_pid in original
    # When one child is SIGKILLed from outside
    os.kill(victim_pid, signal.SIGKILL)
    # Expect the parent to replace it and deliver its task again at once (no orphan wait)
    wait_for(lambda: terminal(jobs_redis, [r.id for r in results]), 15, "both tasks")
    assert all(r.state == "SUCCESS" for r in results)
    assert [s[1] for s in starts(jobs_redis) if s[0] == victim_task] == [1, 2]
    assert start_counts(jobs_redis)[[r.id for r in results if r.id != victim_task][0]] == 1
    now = children(w.proc.pid)
    assert len(now) == 2 and victim_pid not in now
    assert set(original) - {victim_pid} <= set(now)  # the other child was left alone
    assert "died while running" in w.output()
    # ... and the pool keeps working
    assert basic.add.delay(3, 4).get(timeout=10) == 7


def test_max_tasks_per_child_recycles_children(app, jobs_redis, worker_process):
    # Given one child allowed 3 tasks, prefetching more than that
    w = worker_process("-P", "prefork", "-c", "1", "--max-tasks-per-child", "3")
    first_child = children(w.proc.pid)
    # When 9 tasks run
    results = list(group(basic.sleep_and_record.s(0) for _ in range(9)).apply_async())
    pids = [r.get(timeout=20) for r in results]
    # Expect all to succeed, each child to have run at most 3, children to change
    assert len(pids) == 9
    per_child = {pid: pids.count(pid) for pid in set(pids)}
    assert max(per_child.values()) <= 3 and len(per_child) >= 3
    assert first_child[0] in per_child
    # ... and no task to run twice (the prefetched extra is given back, not lost)
    assert set(start_counts(jobs_redis).values()) == {1}
    wait_for(lambda: (kids := children(w.proc.pid)) and kids[0] not in per_child, 10,
             "a fresh child after the last recycle")


@pytest.mark.slow
def test_children_die_with_killed_parent(app, jobs_redis, worker_process):
    # Given a prefork worker whose children run long tasks
    w = worker_process("-P", "prefork", "-c", "2", "--prefetch", "1")
    results = list(group(basic.sleep_and_record.s(2) for _ in range(2)).apply_async())
    wait_for(lambda: len(starts(jobs_redis)) == 2, 10, "both tasks to start")
    kids = children(w.proc.pid)
    # When only the parent is SIGKILLed (not its process group)
    os.kill(w.proc.pid, signal.SIGKILL)
    w.proc.wait(10)
    # Expect the children to die too (no orphan keeps running tasks without a heartbeat)
    wait_for(lambda: not any(_alive(pid) for pid in kids), 10, "the children to exit")
    # ... and the tasks to be recovered by another worker after the orphan timeout
    worker_process("-P", "threads", "-c", "2")
    wait_for(lambda: terminal(jobs_redis, [r.id for r in results]), 20, "both tasks")
    assert all(r.state == "SUCCESS" for r in results)
    assert sorted(s[1] for s in starts(jobs_redis)) == [1, 1, 2, 2]
