"""Every pool (solo, threads, prefork, gevent) runs tasks in a real ``flask jobs worker`` process.

Each pool gets the same round trips: a result, a failure with its type, progress seen by a reader
while the task runs, and a task that reads ``current_app`` (so it runs inside the app context).
"""

from __future__ import annotations

import pytest

from flask_jobs import group
from tests.apps import basic
from tests.conftest import wait_for

POOLS = [
    pytest.param(["-P", "solo"], id="solo"),
    pytest.param(["-P", "threads", "-c", "4"], id="threads"),
    pytest.param(["-P", "prefork", "-c", "2"], id="prefork"),
    pytest.param(["-P", "gevent", "-c", "10"], id="gevent"),
]


@pytest.mark.parametrize("pool", POOLS)
def test_pool_runs_tasks(app, jobs_redis, worker_process, pool):
    w = worker_process(*pool, "-n", "pooltest")
    assert f".> pool:        {pool[1]}" in w.output()

    # round trip
    assert basic.add.delay(2, 3).get(timeout=10) == 5

    # failure keeps its type and message
    r = basic.fail.delay("kaput")
    with pytest.raises(Exception) as info:
        r.get(timeout=10)
    assert type(info.value).__name__ == "CustomError"
    assert "kaput" in str(info.value)
    assert r.state == "FAILURE"

    # inside the app context: the task reads the worker's app config
    assert basic.config_value.delay("JOBS_ORPHAN_TIMEOUT").get(timeout=10) == 1.0

    # request info comes from this worker
    info_ = basic.whoami.delay().get(timeout=10)
    assert info_["hostname"] == "pooltest"
    assert info_["attempt"] == 1

    # progress is visible while the task runs, then the final result
    r = basic.progress_task.delay(40, 0.05)
    meta = wait_for(lambda: r.state == "PROGRESS" and r.info, 10, "a PROGRESS report")
    assert meta["total"] == 40 and 0 <= meta["current"] < 40
    assert r.get(timeout=20) == {"current": 40, "total": 40, "status": "done", "result": 42}

    # a batch runs to completion (several consumers where the pool has them)
    g = group(basic.mul.s(i, 2) for i in range(30)).apply_async()
    assert g.get(timeout=20) == [i * 2 for i in range(30)]

    assert w.stop() == 0
