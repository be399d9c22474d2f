"""The SSE hub: one pub/sub connection per process and app, one read per change per id.

Several streams at once are served by a real threaded server (one thread per stream, as in
production); Flask's test client can only iterate one stream per thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from flask_jobs import group, sse_hub, web
from flask_jobs.embedded import RedisServer
from flask_jobs.web import events as web_events
from tests.apps import basic
from tests.conftest import wait_for
from tests.test_web_sse import Block, Stream, blocks, subscribers

HEARTBEAT = 0.2


@pytest.fixture
def client(app: Flask) -> Any:
    # Heartbeats would re-read the status and blur the read counts: push them out of the way.
    # A hung stream still ends the test, after JOBS_SSE_MAX_AGE.
    app.config.update(JOBS_SSE_HEARTBEAT=60.0, JOBS_SSE_MAX_AGE=10.0)
    return app.test_client()


@contextmanager
def serve(app: Flask) -> Iterator[int]:
    """Serve ``app`` on a real threaded server; yields its port."""
    # Short heartbeats: a server notices a client that went away at its next write.
    app.config.update(JOBS_SSE_HEARTBEAT=HEARTBEAT, JOBS_SSE_MAX_AGE=20.0)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def port(app: Flask) -> Iterator[int]:
    with serve(app) as port_:
        yield port_


class LiveStream:
    """An event stream from a real server, read by a thread of its own."""

    def __init__(self, port: int, path: str) -> None:
        # HTTP/1.0, as the benchmark's clients: no chunked framing; the server closes at the end.
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert b" 200 " in status, status
        while self.file.readline() not in (b"\r\n", b""):  # the headers
            pass
        self.blocks: queue.Queue[Block | None] = queue.Queue()
        self.pings = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for block in blocks(iter(self.file.readline, b"")):
                if block.comments == ["ping"]:
                    self.pings += 1
                self.blocks.put(block)
        except (OSError, ValueError, AssertionError):  # closed by close()
            pass
        self.blocks.put(None)

    def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event's data (heartbeats skipped); fails if the stream ends or stalls."""
        deadline = time.monotonic() + timeout
        while True:
            block = self.blocks.get(timeout=max(0.0, deadline - time.monotonic()))
            assert block is not None, "stream ended"
            if block.data is not None:
                return block.data

    def close(self) -> None:
        """Go away as a browser tab does: the server notices at its next write."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.file.close()
        self.sock.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Counter[str]]:
    """Status reads (``lookup`` calls by the hub's reader in ``flask_jobs.web.events``) by id:
    made by the hub's listener on a notified change ("hub"), or by a stream (its first read,
    its heartbeats: "streams")."""
    counts: dict[str, Counter[str]] = {"hub": Counter(), "streams": Counter()}
    real = web_events.lookup

    def counting(jobs: Any, ident: str) -> Any:
        who = "hub" if threading.current_thread().name == "flask-jobs-sse-hub" else "streams"
        counts[who][ident] += 1
        return real(jobs, ident)

    monkeypatch.setattr(web_events, "lookup", counting)
    return counts


def pubsub_clients(redis_client: Any) -> int:
    """Hub connections to the test database that are subscribed to something (other tests'
    workers and get() waiters may hold pub/sub connections of their own)."""
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    return sum(c.get("db") == db and "P" in c.get("flags", "") and c.get("name") == sse_hub.CLIENT_NAME
               for c in redis_client.client_list())


def numsub(redis_client: Any, task_id: str) -> int:
    return redis_client.pubsub_numsub(f"jobs:ev:{task_id}")[0][1]


def hub_of(app: Flask) -> sse_hub.Hub:
    return web.events_hub(app.extensions["jobs"])


def progress_record(current: int, total: int = 10) -> dict[str, str]:
    """A PROGRESS record as a worker writes it (written here without a notification)."""
    return {"state": "PROGRESS", "rtype": "json",
            "result": json.dumps({"current": current, "total": total})}


def test_streams_share_one_connection_and_one_read_per_change(
        app: Flask, port: int, jobs_redis: Any, reads: dict[str, Counter[str]]) -> None:
    # Given five streams of one task and two of another
    a, b = basic.add.delay(1, 1), basic.add.delay(2, 2)
    streams_a = [LiveStream(port, f"/jobs/events/{a.id}") for _ in range(5)]
    streams_b = [LiveStream(port, f"/jobs/events/{b.id}") for _ in range(2)]
    for s in streams_a + streams_b:
        assert s.next_event()["state"] == "PENDING"
    # Expect one pub/sub connection for all of them, one subscription per task
    assert pubsub_clients(jobs_redis) == 1
    assert numsub(jobs_redis, a.id) == numsub(jobs_redis, b.id) == 1

    # When task a reports progress, every stream of a gets it from ONE status read
    app.extensions["jobs"].broker.store_state(a.id, "PROGRESS", {"current": 3, "total": 10})
    for s in streams_a:
        assert s.next_event()["current"] == 3
    assert reads["hub"] == {a.id: 1}

    # Expect the subscription to last while one stream of the task remains, and to go with it
    for s in streams_a[:-1]:
        s.close()
    wait_for(lambda: hub_of(app).stats()["streams"] == 3, 5, "four streams to leave")
    assert numsub(jobs_redis, a.id) == 1
    streams_a[-1].close()
    wait_for(lambda: numsub(jobs_redis, a.id) == 0, 5, "a's subscription to go")
    assert numsub(jobs_redis, b.id) == 1
    for s in streams_b:
        s.close()
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "every subscription to go")
    stats = hub_of(app).stats()
    assert (stats["ids"], stats["channels"], stats["streams"]) == (0, 0, 0)
    # ... and the hub's connection to close once it has been idle for a moment
    wait_for(lambda: not hub_of(app).stats()["connected"], sse_hub.LINGER + 5, "the hub to close")
    assert pubsub_clients(jobs_redis) == 0


def test_heartbeat_rereads_are_shared(app: Flask, port: int,
                                      reads: dict[str, Counter[str]]) -> None:
    r = basic.add.delay(1, 1)
    streams = [LiveStream(port, f"/jobs/events/{r.id}") for _ in range(10)]
    for s in streams:
        s.next_event()
    reads["streams"].clear()
    started = time.monotonic()
    wait_for(lambda: all(s.pings >= 5 for s in streams), 10, "five heartbeats on every stream")
    elapsed = time.monotonic() - started
    # A heartbeat reuses a read of the same id that started at most half a heartbeat ago:
    # at most two reads per heartbeat period however many streams (unshared: ten).
    assert reads["streams"][r.id] <= 2 * elapsed / HEARTBEAT + 2, (reads, elapsed)
    for s in streams:
        s.close()


def test_many_streams_opened_and_closed_leave_nothing(app: Flask, port: int,
                                                      jobs_redis: Any) -> None:
    tasks = [basic.add.delay(i, i) for i in range(10)]
    for round_ in range(3):
        streams = [LiveStream(port, f"/jobs/events/{t.id}") for t in tasks for _ in range(3)]
        for s in streams:
            s.next_event()
        assert subscribers(jobs_redis) == 10, round_
        for s in streams:
            s.close()
        wait_for(lambda: subscribers(jobs_redis) == 0, 5, "every subscription to go")
    wait_for(lambda: hub_of(app).stats()["streams"] == 0, 5, "every stream to leave")


def test_a_stream_joining_late_gets_the_current_status(app: Flask, port: int) -> None:
    r = basic.add.delay(1, 1)
    first = LiveStream(port, f"/jobs/events/{r.id}")
    assert first.next_event()["state"] == "PENDING"
    app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 5, "total": 10})
    assert first.next_event()["current"] == 5
    late = LiveStream(port, f"/jobs/events/{r.id}")
    assert late.next_event()["current"] == 5
    app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 6, "total": 10})
    assert late.next_event()["current"] == 6
    assert first.next_event()["current"] == 6  # no step back, no duplicate
    first.close()
    late.close()


def test_reconnects_and_rereads_after_its_connection_is_killed(app: Flask, client: Any,
                                                               jobs_redis: Any) -> None:
    # Given a stream following a task
    r = basic.add.delay(1, 1)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.next_event().data["state"] == "PENDING"
    # When a change is made whose notification gets lost (written without one here), and the
    # hub's connection is killed
    jobs_redis.hset(f"jobs:t:{r.id}", mapping=progress_record(3))
    assert jobs_redis.client_kill_filter(_type="pubsub") >= 1
    # Expect the hub to reconnect, re-read, and send the change (heartbeats are 60 s away)
    assert stream.next_event().data["current"] == 3
    # ... and to be subscribed again: a notified change arrives
    wait_for(lambda: subscribers(jobs_redis) == 1, 5, "the subscription to be back")
    app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 4, "total": 10})
    assert stream.next_event().data["current"] == 4
    stream.close()
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the subscription to go")


def test_survives_a_redis_restart(tmp_path: Any) -> None:
    # A private Redis that keeps its data over a crash (append-only file, fsync always).
    server = RedisServer(directory=str(tmp_path),
                         extra_args=("--appendonly", "yes", "--appendfsync", "always")).start()
    try:
        app = basic.create_app({"JOBS_BROKER_URL": server.url, "JOBS_SSE_HEARTBEAT": 60.0,
                                "JOBS_SSE_MAX_AGE": 20.0, "JOBS_BROKER_TIMEOUT": 1.0})
        direct = server.client()
        with app.app_context():
            r = basic.add.delay(1, 1)
            stream = Stream(app.test_client(), f"/jobs/events/{r.id}")
            assert stream.next_event().data["state"] == "PENDING"
            # A change the stream cannot be told about: Redis crashes right after it.
            direct.hset(f"jobs:t:{r.id}", mapping=progress_record(7))
            server.kill()
            server.start()
            # The hub reconnects, subscribes again and re-reads: the change arrives.
            assert stream.next_event().data["current"] == 7
            wait_for(lambda: direct.pubsub_numsub(f"jobs:ev:{r.id}")[0][1] == 1, 5,
                     "the subscription to be back")
            app.extensions["jobs"].broker.store_state(r.id, "SUCCESS", 2)
            rest = stream.rest()
            assert [b.data["state"] for b in rest if b.data] == ["SUCCESS"]
        wait_for(lambda: direct.pubsub_numsub(f"jobs:ev:{r.id}")[0][1] == 0, 5, "unsubscribed")
    finally:
        server.stop()


def test_each_app_has_its_own_hub(app: Flask, port: int, jobs_redis_url: str,
                                  jobs_redis: Any) -> None:
    # Two apps in one process, each with its own keys: each hub reads in its own app.
    other = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_KEY_PREFIX": "other"})
    r = basic.add.delay(1, 1)
    with other.app_context():
        o = basic.add.delay(2, 2)
    with serve(other) as other_port:
        mine = LiveStream(port, f"/jobs/events/{r.id}")
        theirs = LiveStream(other_port, f"/jobs/events/{o.id}")
        assert mine.next_event()["state"] == theirs.next_event()["state"] == "PENDING"
        assert hub_of(app) is not hub_of(other)
        assert pubsub_clients(jobs_redis) == 2
        other.extensions["jobs"].broker.store_state(o.id, "PROGRESS", {"current": 2, "total": 4})
        app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 1, "total": 4})
        assert theirs.next_event()["current"] == 2
        assert mine.next_event()["current"] == 1
        mine.close()
        theirs.close()


def test_group_stream_reads_at_most_once_per_interval(app: Flask, client: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = app.extensions["jobs"]
    monkeypatch.setattr(state, "settings", dataclasses.replace(state.settings, progress_interval=0.3))
    g = group(basic.add.s(i, i) for i in range(3)).apply_async()
    members = [r.id for r in g.results]
    stream = Stream(client, f"/jobs/events/{g.id}")
    assert stream.next_event().data["state"] == "PENDING"
    times: list[float] = []
    real = web_events.lookup
    monkeypatch.setattr(web_events, "lookup", lambda jobs, ident: times.append(time.monotonic())
                        or real(jobs, ident))
    state.broker.store_state(members[0], "PROGRESS", {"current": 1, "total": 2})
    assert stream.next_event().data["children"][0]["state"] == "PROGRESS"
    state.broker.store_state(members[1], "PROGRESS", {"current": 1, "total": 2})
    assert stream.next_event().data["children"][1]["state"] == "PROGRESS"
    assert len(times) == 2
    # The second change waited for the interval (0.3 s after the first read started; the
    # margin is for a busy machine: without the interval the gap is a few ms).
    assert times[1] - times[0] >= 0.25, times
    stream.close()


def test_follow_times_out_when_redis_does_not_answer(app: Flask) -> None:
    # Nothing listens on this port: the hub keeps trying; a stream gives up after the timeout.
    dead = basic.create_app({"JOBS_BROKER_URL": "redis://127.0.0.1:9/0",
                             "JOBS_BROKER_TIMEOUT": 0.3, "JOBS_BROKER_CONNECT_TIMEOUT": 0.2})
    hub = web.events_hub(dead.extensions["jobs"])
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError, match="JOBS_BROKER_TIMEOUT"):
        hub.follow("x", ["jobs:ev:x"])
    assert time.monotonic() - started < 3
    assert hub.stats()["streams"] == hub.stats()["channels"] == 0


def test_a_forked_child_makes_its_own_hub(app: Flask, client: Any, jobs_redis: Any) -> None:
    r = basic.add.delay(1, 1)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.next_event().data["state"] == "PENDING"
    parent_hub = hub_of(app)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            child_hub = hub_of(app)
            if child_hub is not parent_hub and child_hub.pid == os.getpid():
                child = Stream(app.test_client(), f"/jobs/events/{r.id}")
                code = 0 if child.next_event().data["state"] == "PENDING" else 2
                child.close()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    statuses: list[int] = []

    def child_done() -> bool:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            statuses.append(status)
        return bool(got)

    try:
        wait_for(child_done, 15, "the child to finish")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    assert os.waitstatus_to_exitcode(statuses[0]) == 0
    # The parent's hub still works.
    app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 1, "total": 2})
    assert stream.next_event().data["current"] == 1
    stream.close()
