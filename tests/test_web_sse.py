"""``/jobs/events/<id>``: Server-Sent Events of a task's or group's status changes."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_jobs import group, sse_hub, web
from flask_jobs.web import events as web_events
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.conftest import ROOT, wait_for


@pytest.fixture
def client(app: Flask) -> Any:
    # A hung stream must end the test, not hang it: every stream closes after this many seconds.
    app.config["JOBS_SSE_MAX_AGE"] = 20.0
    return app.test_client()


class Block:
    """One SSE block: its ``data`` (parsed JSON), ``id``, ``retry`` and comment lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.fields: dict[str, str] = {}
        self.comments: list[str] = []
        data = []
        for line in text.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    self.fields[name] = value
        self.data = json.loads("\n".join(data)) if data else None

    def __repr__(self) -> str:
        return f"Block({self.text!r})"


def blocks(chunks: Iterator[bytes]) -> Iterator[Block]:
    """Split a stream of chunks into SSE blocks as they arrive."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            text, buffer = buffer.split("\n\n", 1)
            yield Block(text)
    assert buffer == "", f"stream ended inside a block: {buffer!r}"


class Stream:
    """A streamed response of the test client, read block by block."""

    def __init__(self, client: Any, url: str, **kwargs: Any) -> None:
        self.response = client.get(url, buffered=False, **kwargs)
        self.blocks = blocks(iter(self.response.response))

    def next_event(self) -> Block:
        for block in self.blocks:
            if block.data is not None:
                return block
        raise AssertionError("stream ended")

    def rest(self) -> list[Block]:
        return list(self.blocks)

    def close(self) -> None:
        self.response.close()


def events(blocks_: list[Block]) -> list[dict[str, Any]]:
    return [b.data for b in blocks_ if b.data is not None]


def subscribers(redis_client: Any) -> int:
    """Subscriptions to task event channels (a worker's control channel is not counted)."""
    channels = redis_client.pubsub_channels("jobs:ev:*")
    return sum(n for _, n in redis_client.pubsub_numsub(*channels)) if channels else 0


def connections(redis_client: Any) -> int:
    """Clients connected to the test database (CLIENT LIST is server-wide)."""
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    return sum(c.get("db") == db for c in redis_client.client_list())


def strip_clock(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("eta_seconds", "updated_at")}


# -- the stream of one task -------------------------------------------------------------------


def test_progress_stream_from_queued_to_success(app: Flask, client: Any,
                                                jobs_redis: Any) -> None:
    r = basic.progress_task.delay(6, 0.15)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.response.status_code == 200
    assert stream.response.mimetype == "text/event-stream"
    assert stream.response.headers["Cache-Control"] == "no-store"
    first_block = next(stream.blocks)
    assert first_block.fields == {"retry": "2000"} and first_block.data is None
    first = stream.next_event()
    assert first.fields["id"]
    # The first event is the current status, exactly as /status reports it.
    assert strip_clock(first.data) == strip_clock(client.get(f"/jobs/status/{r.id}").get_json())
    assert first.data["state"] == "PENDING"
    worker = BackgroundWorker(app, concurrency=1).start()
    try:
        rest = stream.rest()
    finally:
        worker.stop()
    got = events(rest)
    progress = [e["current"] for e in got if e["state"] == "PROGRESS"]
    assert len(progress) >= 2, got
    assert progress == sorted(set(progress)), "PROGRESS events must have increasing current"
    assert got[-1]["state"] == "SUCCESS"
    assert got[-1]["result"]["result"] == 42 and got[-1]["percent"] == 100.0
    assert all(b.fields.get("id") for b in rest if b.data is not None)
    assert [e["state"] for e in got].count("SUCCESS") == 1
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the pub/sub connection to be released")


def test_stream_of_a_finished_task_sends_one_event(client: Any, jobs_worker: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    r = basic.add.delay(2, 2)
    r.get(timeout=10)
    subscribed = []
    real = sse_hub.Hub.follow
    monkeypatch.setattr(sse_hub.Hub, "follow", lambda *a, **k: subscribed.append(a) or real(*a, **k))
    stream = Stream(client, f"/jobs/events/{r.id}")
    got = stream.rest()
    assert [b.fields.get("retry") for b in got] == ["2000", None]
    assert got[1].data["state"] == "SUCCESS" and got[1].data["result"] == 4
    assert subscribed == []  # no subscription for a final status

    # EventSource reconnects after the stream ends; a reconnect that already saw the final
    # event gets 204, which tells the browser to stop.
    again = client.get(f"/jobs/events/{r.id}", headers={"Last-Event-ID": got[1].fields["id"]})
    assert again.status_code == 204
    other = Stream(client, f"/jobs/events/{r.id}", headers={"Last-Event-ID": "1"})
    assert events(other.rest())[0]["state"] == "SUCCESS"


def test_stream_failure_and_revoke_end_it(app: Flask, client: Any, jobs_worker: Any) -> None:
    r = basic.sleep_and_record.delay(30)
    wait_for(lambda: r.state == "STARTED")
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.next_event().data["state"] == "STARTED"
    assert client.post(f"/jobs/revoke/{r.id}").status_code == 200
    got = events(stream.rest())
    assert got[-1]["state"] == "REVOKED"
    assert got[-1]["error"]["type"] == "TaskRevokedError"

    f = basic.fail.delay("no")
    final = events(Stream(client, f"/jobs/events/{f.id}").rest())[-1]
    assert final["state"] == "FAILURE" and final["error"] == {"type": "CustomError",
                                                             "message": "no"}


def test_heartbeat_and_max_age(app: Flask, client: Any, jobs_redis: Any) -> None:
    app.config.update(JOBS_SSE_HEARTBEAT=0.05, JOBS_SSE_MAX_AGE=0.6)
    r = basic.add.delay(1, 1)  # no worker: stays PENDING
    started = time.monotonic()
    got = Stream(client, f"/jobs/events/{r.id}").rest()
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5, elapsed
    assert len(events(got)) == 1
    pings = [b for b in got if b.comments == ["ping"]]
    assert len(pings) >= 3, got
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the pub/sub connection to be released")


def test_heartbeat_rereads_and_sends_a_missed_change(app: Flask, client: Any,
                                                     jobs_redis: Any) -> None:
    # A change whose notification was lost (e.g. to a reconnect) is still delivered: each
    # heartbeat re-reads the status.
    app.config.update(JOBS_SSE_HEARTBEAT=0.05)
    r = basic.progress_task.delay(10)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.next_event().data["state"] == "PENDING"
    jobs_redis.hset(f"jobs:t:{r.id}", mapping={"state": "REVOKED", "reason": "quietly"})
    got = events(stream.rest())
    assert got[-1]["state"] == "REVOKED" and got[-1]["error"]["message"] == "quietly"


def test_burst_of_notifications_is_coalesced(app: Flask, client: Any, jobs_redis: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    app.config.update(JOBS_SSE_MAX_AGE=1.0)
    r = basic.progress_task.delay(10)
    reads = []
    real = web_events.lookup

    def counting(*args: Any) -> Any:
        reads.append(1)
        return real(*args)

    monkeypatch.setattr(web_events, "lookup", counting)
    stream = Stream(client, f"/jobs/events/{r.id}")
    stream.next_event()
    reads.clear()
    app.extensions["jobs"].broker.store_state(r.id, "PROGRESS", {"current": 5, "total": 10})
    pipe = jobs_redis.pipeline(transaction=False)
    for _ in range(2000):
        pipe.publish(f"jobs:ev:{r.id}", "PROGRESS")
    pipe.execute()
    got = events(stream.rest())
    assert [e["current"] for e in got] == [5]  # one event for the change, no duplicates
    assert len(reads) < 50, len(reads)  # not one status read per notification


# -- errors and authorization -----------------------------------------------------------------


def test_events_unknown_is_404(client: Any) -> None:
    resp = client.get(f"/jobs/events/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.mimetype == "application/json"


def test_events_forbidden_by_owner_rule(app: Flask, client: Any, jobs_redis: Any) -> None:
    app.config["JOBS_CURRENT_OWNER"] = lambda: "bob"
    r = basic.add.apply_async((1, 1), owner="alice")
    resp = client.get(f"/jobs/events/{r.id}")
    assert resp.status_code == 403
    assert subscribers(jobs_redis) == 0


# -- releasing the pub/sub connection -----------------------------------------------------------


def test_closing_the_stream_early_releases_the_connection(client: Any, jobs_redis: Any) -> None:
    r = basic.add.delay(1, 1)
    client.get(f"/jobs/status/{r.id}")  # warm the shared pool
    baseline = connections(jobs_redis)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.next_event().data["state"] == "PENDING"
    assert subscribers(jobs_redis) == 1
    stream.close()
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the subscriber to go")
    wait_for(lambda: connections(jobs_redis) <= baseline, 5, "connections back to baseline")


def test_closing_before_the_first_chunk_releases_the_connection(client: Any,
                                                                jobs_redis: Any) -> None:
    r = basic.add.delay(1, 1)
    resp = client.get(f"/jobs/events/{r.id}", buffered=False)
    assert subscribers(jobs_redis) == 1  # subscribed before the response was returned
    resp.close()
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the subscriber to go")


def test_client_disconnect_on_a_threaded_server_releases_the_connection(
        app: Flask, jobs_redis: Any) -> None:
    app.config.update(JOBS_SSE_HEARTBEAT=0.05, JOBS_SSE_MAX_AGE=30)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        r = basic.add.delay(1, 1)
        conns = []
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            conn.request("GET", f"/jobs/events/{r.id}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert b"PENDING" in b"".join(resp.readline() for _ in range(4))
            conns.append((conn, resp))
        # Three streams of one task: one subscription, in the process's hub.
        hub = web.events_hub(app.extensions["jobs"])
        assert hub.stats()["streams"] == 3
        assert subscribers(jobs_redis) == 1
        for conn, resp in conns:
            resp.close()
            conn.close()
        # The server notices at its next write (a heartbeat) and closes the stream.
        wait_for(lambda: hub.stats()["streams"] == 0, 10, "every stream to leave the hub")
        wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the subscription to go")
    finally:
        server.shutdown()
        thread.join(5)


# -- groups -------------------------------------------------------------------------------------


def test_group_stream(app: Flask, client: Any, jobs_worker: Any, jobs_redis: Any) -> None:
    g = group(basic.add.s(i, i) for i in range(5)).apply_async()
    got = events(Stream(client, f"/jobs/events/{g.id}").rest())
    assert got[-1]["state"] == "SUCCESS"
    assert got[-1]["completed"] == 5 and got[-1]["total"] == 5
    currents = [e["current"] for e in got]
    assert currents == sorted(currents)
    wait_for(lambda: subscribers(jobs_redis) == 0, 5, "the pub/sub connection to be released")


# -- gevent -------------------------------------------------------------------------------------

GEVENT_SERVER = """
from gevent import monkey; monkey.patch_all()
import sys
from gevent.pywsgi import WSGIServer
from tests.apps import basic
app = basic.create_app({"JOBS_BROKER_URL": sys.argv[1], "JOBS_SSE_HEARTBEAT": float(sys.argv[2]),
                        "JOBS_SSE_MAX_AGE": 30})
server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
print(server.server_port, flush=True)
server.serve_forever()
"""


def gevent_server(redis_url: str, heartbeat: float) -> tuple[subprocess.Popen[str], int]:
    """A gevent WSGI server (monkey-patched) for the test app; returns it and its port."""
    pytest.importorskip("gevent")
    proc = subprocess.Popen([sys.executable, "-c", GEVENT_SERVER, redis_url, str(heartbeat)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())  # type: ignore[union-attr]


def follow_in_thread(port: int, task_id: str) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """Read a stream in a thread; returns the thread and the list its events go to."""
    received: list[dict[str, Any]] = []

    def follow() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", f"/jobs/events/{task_id}")
        resp = conn.getresponse()
        for block in blocks(iter(resp.readline, b"")):
            if block.data is not None:
                received.append(block.data)
        conn.close()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread, received


def test_many_streams_under_gevent(app: Flask, jobs_redis_url: str, jobs_redis: Any) -> None:
    proc, port = gevent_server(jobs_redis_url, heartbeat=0.5)
    try:
        r = basic.progress_task.delay(10)
        threads, received = zip(*(follow_in_thread(port, r.id) for _ in range(50)), strict=True)
        wait_for(lambda: all(received), 10, "every stream's first event")
        # The server's SSE hub: one subscription for the fifty streams.
        assert subscribers(jobs_redis) == 1
        # Idle streams cost no CPU: nothing polls while waiting for a change.
        cpu = _cpu_seconds(proc.pid)
        time.sleep(1.0)  # measuring idle CPU over a fixed window
        assert _cpu_seconds(proc.pid) - cpu < 0.3
        broker = app.extensions["jobs"].broker
        broker.store_state(r.id, "PROGRESS", {"current": 3, "total": 10})
        wait_for(lambda: all(ev[-1]["state"] == "PROGRESS" for ev in received), 5,
                 "every stream to see the progress")
        # What the worker's final write does: the record, then the notification.
        jobs_redis.hset(f"jobs:t:{r.id}", mapping={"state": "SUCCESS", "rtype": "json",
                                                   "result": "42"})
        jobs_redis.publish(f"jobs:ev:{r.id}", "SUCCESS")
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads), "streams must end at a final state"
        assert all([e["state"] for e in ev] == ["PENDING", "PROGRESS", "SUCCESS"]
                   for ev in received)
        assert all(ev[-1]["result"] == 42 for ev in received)
        wait_for(lambda: subscribers(jobs_redis) == 0, 5, "every subscriber to go")
    finally:
        proc.kill()
        proc.wait(10)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_gevent_hub_reconnects_and_rereads(app: Flask, jobs_redis_url: str,
                                           jobs_redis: Any) -> None:
    # Heartbeats (which re-read too) are far away: only the hub's re-read can deliver the change.
    proc, port = gevent_server(jobs_redis_url, heartbeat=60.0)
    try:
        r = basic.progress_task.delay(10)
        threads, received = zip(*(follow_in_thread(port, r.id) for _ in range(20)), strict=True)
        wait_for(lambda: all(received), 10, "every stream's first event")
        # A change whose notification is lost: written without one, then the hub's connection
        # is killed.
        jobs_redis.hset(f"jobs:t:{r.id}", mapping={"state": "PROGRESS", "rtype": "json",
                                                   "result": json.dumps({"current": 5, "total": 10})})
        assert jobs_redis.client_kill_filter(_type="pubsub") >= 1
        wait_for(lambda: all(ev[-1].get("current") == 5 for ev in received), 10,
                 "every stream to get the change made while the hub was away")
        wait_for(lambda: subscribers(jobs_redis) == 1, 5, "the subscription to be back")
        app.extensions["jobs"].broker.store_state(r.id, "SUCCESS", 42)
        for t in threads:
            t.join(10)
        assert all([e["state"] for e in ev] == ["PENDING", "PROGRESS", "SUCCESS"] for ev in received)
        wait_for(lambda: subscribers(jobs_redis) == 0, 5, "every subscriber to go")
    finally:
        proc.kill()
        proc.wait(10)
