"""The producer's own connections (flask_jobs.direct) under a real Redis: lost connections,
flushed scripts, forks and threads never lose or duplicate a send."""

from __future__ import annotations

import os
import threading

from tests.apps import basic


def _queued(jobs_redis) -> list[str]:
    return [x.decode() for x in jobs_redis.lrange("jobs:q:default:5", 0, -1)]


def _line(app):
    return app.extensions["jobs"].broker.direct


def test_killed_connection_is_replaced_and_nothing_is_queued_twice(app, jobs_redis):
    # Given a send that left its connection idle for reuse
    first = basic.add.delay(1, 1)
    # When Redis drops every connection of the client (as a restart or a proxy would)
    jobs_redis.client_kill_filter(_type="normal", skipme=True)
    # Expect the next send to go through on a new connection, queued exactly once
    second = basic.add.delay(2, 2)
    assert _queued(jobs_redis).count(second.id) == 1
    assert sorted(_queued(jobs_redis)) == sorted([first.id, second.id])


def test_flushed_scripts_are_loaded_again(app, jobs_redis):
    basic.add.delay(1, 1)
    jobs_redis.script_flush()
    r = basic.add.delay(2, 2)
    assert _queued(jobs_redis).count(r.id) == 1


def test_a_forked_child_never_uses_the_parents_sockets(app, jobs_redis):
    # Given a connection of the parent, idle in the line
    basic.add.delay(1, 1)
    line = _line(app)
    parents = list(line._idle)
    assert parents
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a send must work, on a connection of its own
        try:
            r = basic.add.delay(2, 2)
            ok = r.id in _queued(jobs_redis) and all(c not in parents for c in line._idle)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    # ... and the parent's connection still works for the parent
    r = basic.add.delay(3, 3)
    assert r.id in _queued(jobs_redis)


def test_threads_send_concurrently(app, jobs_redis):
    # 8 threads x 50 sends over the shared line: every id queued once
    ids: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        with app.app_context():
            mine = [basic.add.delay(i, i).id for i in range(50)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    queued = _queued(jobs_redis)
    assert len(ids) == 400 and sorted(queued) == sorted(ids)
    assert len(_line(app)._idle) <= 8


def test_a_send_in_a_burst_busy_polls_for_its_reply(app, jobs_redis, monkeypatch):
    from flask_jobs import direct

    # Given the default JOBS_BROKER_BUSY_POLL, and sends that all count as one burst
    monkeypatch.setattr(direct, "BURST_GAP", float("inf"))
    line = _line(app)
    assert line._spin > 0
    # When two tasks are sent
    first = basic.add.delay(1, 2)
    second = basic.add.delay(3, 4)
    # Expect the second reply to have been awaited by polling, and both sends to have worked
    conn = line._idle[-1]
    assert conn._flask_jobs_poll[0] == conn._sock.fileno()
    assert {first.id, second.id} <= set(_queued(jobs_redis))


def test_a_lone_send_does_not_busy_poll(app, jobs_redis):
    from flask_jobs.direct import DirectLine

    # Given a line that polls, whose last reply is long past (here: it never had one)
    line = DirectLine(app.extensions["jobs"].client.connection_pool, busy_poll_us=200)
    assert line._last_reply == float("-inf")
    # When it sends once
    assert line.evalsha(jobs_redis.script_load("return 7"), (), ()) == 7
    # Expect the reply to have been awaited by a blocking read, not by polling
    assert not hasattr(line._idle[-1], "_flask_jobs_poll")


def test_busy_polling_can_be_turned_off(app, jobs_redis):
    from flask_jobs.direct import DirectLine

    line = DirectLine(app.extensions["jobs"].client.connection_pool, busy_poll_us=0)
    assert line.evalsha(jobs_redis.script_load("return 7"), (), ()) == 7
    assert not hasattr(line._idle[-1], "_flask_jobs_poll")


def test_replies_that_come_too_late_pause_busy_polling(app, jobs_redis, monkeypatch):
    from flask_jobs import direct

    # Given a line whose polling budget (1 µs) no reply can meet: the script runs for a few
    # milliseconds in Redis (like a Redis far away, in effect); every call is in a burst
    monkeypatch.setattr(direct, "BURST_GAP", float("inf"))
    line = direct.DirectLine(app.extensions["jobs"].client.connection_pool, busy_poll_us=1)
    slow = jobs_redis.script_load("local x = 0 for i = 1, 300000 do x = x + i end return 1")
    sha = jobs_redis.script_load("return 1")
    # When SPIN_MISSES sends in a row miss it
    for _ in range(direct.SPIN_MISSES):
        assert line.evalsha(slow, (), ()) == 1
    # Expect the line to stop polling (each call only counts down the pause) ...
    assert line._misses == direct.SPIN_MISSES
    line.evalsha(sha, (), ())
    assert line._misses == direct.SPIN_MISSES + 1
    # ... and to try again after SPIN_PAUSE calls
    for _ in range(direct.SPIN_PAUSE - 1):
        line.evalsha(sha, (), ())
    assert line._misses == direct.SPIN_MISSES // 2
