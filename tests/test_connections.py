"""The whole product over the connections production Redis deployments use: an ACL user with a
password (``redis://user:pass@host:port/db``) and TLS (``rediss://`` with a CA, mutual TLS).

The ACL user may touch only the keys and channels under the key prefix, which also proves that
flask-jobs stays inside its prefix (a Redis shared with other apps can fence it in).

Each runs on its own private ``redis-server`` (see :mod:`tests.servers`), whatever
``JOBS_TEST_REDIS_URL`` says, with real worker processes: enqueueing every way (including the
producer's own connections of :mod:`flask_jobs.direct`), ``get()`` woken over pub/sub, revoking
(a control broadcast), the status and event-stream endpoints (the SSE hub's own connection),
clear and quick failures on wrong credentials or certificates, and no password in any output.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_jobs import group
from flask_jobs.embedded import RedisServer
from flask_jobs.exceptions import BrokerUnavailable, TaskRevokedError
from tests import servers
from tests.apps import basic
from tests.conftest import WorkerProcess, wait_for
from tests.test_web_sse import Stream, events
from tests.worker_helpers import app_on, starts, worker_on

# -- servers and workers (one of each per transport for the whole module) ----------------------


@dataclass
class Transport:
    """One way of connecting: the URL the app and its workers get, and a look behind it."""

    name: str
    #: What the app and its workers are given.
    url: str
    #: The same server seen as its administrator (the ``default`` user, or the plain unix
    #: socket of the TLS server): to inspect it without going through what is under test.
    admin: redis.Redis
    #: The worker process shared by the tests of this transport.
    worker: WorkerProcess
    #: The banner's broker line: the URL as the worker must show it.
    shown_url: str


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis with an ACL user ``jobs`` (password ``s3cret``) allowed only the ``jobs:`` keys
    and channels (and the test's own ``test:`` keys), and another password for the default
    user."""
    server = servers.acl_server(tmp_path_factory.mktemp("acl"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> servers.Certs:
    """A throwaway CA with a server and a client certificate, and an unrelated CA."""
    return servers.make_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class TLSRedis:
    """A Redis speaking TLS on ``port`` (and plain text only on its admin unix socket)."""

    server: RedisServer
    port: int
    certs: servers.Certs

    def url(self, **changes: Any) -> str:
        """The app's URL; ``changes`` as for :func:`tests.servers.tls_url`."""
        return servers.tls_url(self.port, self.certs, **changes)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: servers.Certs) -> Iterator[TLSRedis]:
    """A TLS-only Redis requiring client certificates; skips if no binary here has TLS."""
    try:
        server, port = servers.tls_server(tmp_path_factory.mktemp("tls"), certs)
    except servers.NoTLSServer as exc:
        pytest.skip(str(exc))
    yield TLSRedis(server, port, certs)
    server.stop()


@pytest.fixture(scope="module", params=["acl", "tls"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """Each transport in turn, with a prefork worker process (two children) running on it."""
    if request.param == "acl":
        server: RedisServer = request.getfixturevalue("acl_redis")
        url = servers.acl_url(server)
        shown = f"redis://{servers.ACL_USER}:**@127.0.0.1:{server.port}/0"
        admin = server.client()
    else:
        tls: TLSRedis = request.getfixturevalue("tls_redis")
        url = shown = tls.url()
        admin = tls.server.client()
    # prefork: the children connect after the fork, as in production.
    worker = WorkerProcess(url, "-P", "prefork", "-c", "2")
    try:
        yield Transport(request.param, url, admin, worker.wait_ready(), shown)
    finally:
        worker.kill()
        worker.log.close()
        admin.close()


@pytest.fixture
def app(transport: Transport) -> Iterator[Flask]:
    """The test app on the transport's URL (this module's own: no session Redis involved)."""
    # A hung event stream must end the test, not hang it. No heartbeat within that time: a
    # stream can only learn of a change through the SSE hub's pub/sub connection.
    with app_on(transport.url, JOBS_SSE_MAX_AGE=20.0, JOBS_SSE_HEARTBEAT=30.0) as app:
        yield app


def subscribers(admin: redis.Redis, channel: str) -> int:
    """How many connections are subscribed to ``channel``."""
    return dict(admin.pubsub_numsub(channel)).get(channel.encode(), 0)


# -- the product works over each transport -------------------------------------------------


def test_delay_apply_async_and_group_run_on_a_worker_process(transport: Transport,
                                                             app: Flask) -> None:
    # Given a worker process on the transport
    # When tasks are sent every way a producer can
    single = basic.add.delay(2, 3)
    options = basic.echo.apply_async((1,), {"k": "v"}, priority=9)
    delayed = basic.mul.apply_async((6, 7), countdown=0.1)  # through the delayed set
    members = group(basic.add.s(i, i) for i in range(5)).apply_async()
    # Expect the worker to run them all and get() to return every result
    assert single.get(timeout=15) == 5
    assert options.get(timeout=15) == {"args": [1], "kwargs": {"k": "v"}}
    assert delayed.get(timeout=15) == 42
    assert members.get(timeout=15) == [0, 2, 4, 6, 8]
    # ... and the sends to have gone over the producer's own connections (flask_jobs.direct),
    # made with the pool's class (TLS: an SSLConnection) and settings (the ACL user: the server
    # refuses any other login)
    pool = app.extensions["jobs"].client.connection_pool
    line = app.extensions["jobs"].broker.direct
    assert line._idle, "delay() did not use the direct line"
    assert {type(conn) for conn in line._idle} == {pool.connection_class}
    assert issubclass(pool.connection_class, redis.SSLConnection) == (transport.name == "tls")


def test_get_is_woken_by_the_result_notification(transport: Transport, app: Flask) -> None:
    # Given a task held by a gate, and a thread waiting on its result
    gate = f"test:gate:{uuid.uuid4()}"
    r = basic.wait_gate.delay(gate)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(r.get(timeout=20)))
    waiter.start()
    # When get() has subscribed to the task's event channel (over the transport)
    wait_for(lambda: subscribers(transport.admin, f"jobs:ev:{r.id}") >= 1, 10,
             "get() to subscribe")
    assert not got
    transport.admin.rpush(gate, "open")
    # Expect get() to return the result
    waiter.join(20)
    assert got == ["open"]


def test_revoke_stops_queued_and_running_tasks(transport: Transport, app: Flask) -> None:
    # Given a delayed task and one running on the worker
    key = f"test:effects:{uuid.uuid4()}"
    delayed = basic.add.apply_async((1, 1), countdown=60)
    running = basic.sleep_and_record.delay(30, key=key)
    wait_for(lambda: starts(transport.admin, key) and running.state == "STARTED", 15,
             "the task to start")
    # When both are revoked, the running one with terminate=True (a broadcast to workers)
    delayed.revoke()
    running.revoke(terminate=True)
    # Expect both to end REVOKED, the running one stopped by its worker
    assert delayed.state == "REVOKED"
    with pytest.raises(TaskRevokedError):
        running.get(timeout=15)
    assert transport.admin.zscore("jobs:delayed", delayed.id) is None
    # ... and the worker to keep serving
    assert basic.add.delay(20, 22).get(timeout=15) == 42


def test_status_and_event_stream_endpoints_follow_a_task(transport: Transport,
                                                         app: Flask) -> None:
    # Given a task that reports progress, then waits on a gate
    gate = f"test:gate:{uuid.uuid4()}"
    r = basic.state_then_gate.delay(gate)
    client = app.test_client()
    wait_for(lambda: client.get(f"/jobs/status/{r.id}").get_json()["state"] == "PROGRESS", 15,
             "the status endpoint to report PROGRESS")
    # When its event stream is opened (the SSE hub subscribes over the transport)
    stream = Stream(client, f"/jobs/events/{r.id}")
    assert stream.response.status_code == 200
    first = stream.next_event().data
    assert first["state"] == "PROGRESS" and first["current"] == 3
    # ... and the task is let go
    transport.admin.rpush(gate, "go")
    # Expect the stream to deliver the change (only pub/sub can within its lifetime) and end
    got = events(stream.rest())
    assert got[-1]["state"] == "SUCCESS" and got[-1]["result"] == "released"
    # ... and the status endpoint to agree, and revoking through HTTP to work too
    assert client.get(f"/jobs/status/{r.id}").get_json()["state"] == "SUCCESS"
    queued = basic.add.apply_async((1, 2), countdown=60)
    assert client.post(f"/jobs/revoke/{queued.id}").get_json()["state"] == "REVOKED"


def test_worker_banner_shows_the_broker_without_secrets(transport: Transport) -> None:
    # Given the shared worker process, after whatever the other tests had it do
    out = transport.worker.output()
    # Expect its banner to name the broker, with any password hidden, and no password at all
    assert f".> broker:      {transport.shown_url}\n" in out
    assert servers.ACL_PASSWORD not in out and servers.ADMIN_PASSWORD not in out


# -- ACL user and password ------------------------------------------------------------------


def test_every_connection_authenticates_as_the_acl_user(acl_redis: RedisServer) -> None:
    # (The administrator looks on one connection, and notes who was connected already.)
    admin = redis.Redis.from_url(acl_redis.url, single_connection_client=True)
    before = {c["id"] for c in admin.client_list()}
    # Given an app and a worker on the ACL user's URL, after a round trip
    url = servers.acl_url(acl_redis)
    with app_on(url), worker_on(url, "-P", "threads", "-c", "2"):
        assert basic.add.delay(1, 2).get(timeout=15) == 3
        # When the server is asked who connected since
        clients = [c for c in admin.client_list() if c["id"] not in before]
    admin.close()
    # Expect every connection (producer, waiter, worker consumers, heartbeat, control) to be
    # the named user's: the default user has another password, so nothing could fall back
    assert len(clients) >= 4, clients
    assert {c["user"] for c in clients} == {servers.ACL_USER}


WRONG_CREDENTIALS = [
    pytest.param(servers.ACL_USER, "wrong", id="wrong-password"),
    pytest.param("", servers.ACL_PASSWORD, id="password-without-user"),
    pytest.param("nobody", servers.ACL_PASSWORD, id="unknown-user"),
]


@pytest.mark.parametrize("user, password", WRONG_CREDENTIALS)
def test_wrong_credentials_fail_fast_with_a_clear_error(acl_redis: RedisServer, user: str,
                                                        password: str) -> None:
    url = servers.acl_url(acl_redis, user=user, password=password)
    records = set(acl_redis.client().keys("jobs:t:*"))
    # Given an app whose URL has wrong credentials
    with app_on(url) as app:
        # When a task is sent
        with pytest.raises(BrokerUnavailable) as caught:
            basic.add.delay(1, 1)
        # Expect an error that says the credentials were refused, names the server without
        # the password, and says nothing was queued
        message = str(caught.value)
        assert "did not accept the user name or password" in message
        assert "invalid username-password pair" in message
        assert f"redis://{user}:**@127.0.0.1:{acl_redis.port}/0" in message
        assert password not in message and "Nothing was queued" in message
        # ... and the web endpoints to answer 503 rather than hang or crash
        client = app.test_client()
        for endpoint in ("status", "events"):
            assert client.get(f"/jobs/{endpoint}/{uuid.uuid4()}").status_code == 503
    assert set(acl_redis.client().keys("jobs:t:*")) == records


def test_worker_with_wrong_password_exits_with_the_reason(acl_redis: RedisServer) -> None:
    # Given a worker process started with a wrong password
    with worker_on(servers.acl_url(acl_redis, password="wr0ng-pw"), "-P", "solo",
                   ready=False) as w:
        # Expect it to stop at once with a non-zero status and the server's reason, not to
        # wait or retry forever
        assert w.proc.wait(30) != 0
        out = w.output()
    assert "invalid username-password pair" in out
    assert "wr0ng-pw" not in out and "ready." not in out


def test_worker_logs_never_show_the_password(acl_redis: RedisServer) -> None:
    url = servers.acl_url(acl_redis)
    # Given a worker logging everything (DEBUG: redis-py's own messages name connections too)
    with app_on(url), worker_on(url, "-P", "solo", "-l", "DEBUG") as w:
        assert basic.add.delay(1, 1).get(timeout=15) == 2
        # When Redis drops every connection of the ACL user (the worker logs the loss)
        acl_redis.client().client_kill_filter(user=servers.ACL_USER)
        wait_for(lambda: "Redis unavailable" in w.output(), 15, "a connection warning")
        # ... and the worker reconnects, runs a task and stops
        assert basic.add.delay(2, 2).get(timeout=15) == 4
        assert w.stop() == 0
        out = w.output()
    # Expect the banner to show the URL with the password hidden, and no line to show it
    assert f".> broker:      redis://jobs:**@127.0.0.1:{acl_redis.port}/0\n" in out
    assert "DEBUG" in out and "stopped." in out  # (the output is complete)
    assert servers.ACL_PASSWORD not in out


# -- TLS ----------------------------------------------------------------------------------


def test_tls_port_refuses_plain_text(tls_redis: TLSRedis) -> None:
    # Given the TLS server's only TCP port
    # (from_url, as flask-jobs makes its clients: it doesn't retry, unlike redis.Redis())
    plain = redis.Redis.from_url(f"redis://127.0.0.1:{tls_redis.port}/0", socket_timeout=5)
    # Expect a plain-text client to fail there: what works in this module went over TLS
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()


def test_tls_server_with_an_untrusted_certificate_is_refused(tls_redis: TLSRedis) -> None:
    url = tls_redis.url(ca=tls_redis.certs.other_ca)
    records = set(tls_redis.server.client().keys("jobs:t:*"))
    # Given an app and a worker that trust another CA than the one that signed the server's
    with app_on(url):
        # When a task is sent, Expect a quick, clear error (the certificate check failed)
        with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            basic.add.delay(1, 1)
    with worker_on(url, "-P", "solo", ready=False) as w:
        # ... and the worker to stop at once with the same reason
        assert w.proc.wait(30) != 0
        assert "CERTIFICATE_VERIFY_FAILED" in w.output()
    assert set(tls_redis.server.client().keys("jobs:t:*")) == records


def test_tls_client_without_certificate_is_refused(tls_redis: TLSRedis) -> None:
    # Given the server requires client certificates, and an app that has none
    url = tls_redis.url(client_cert=False)
    records = set(tls_redis.server.client().keys("jobs:t:*"))
    with app_on(url):
        # When a task is sent, Expect it to fail (nothing queued) rather than hang
        with pytest.raises(BrokerUnavailable):
            basic.add.delay(1, 1)
    # ... and a worker without one to stop at once rather than retry forever
    with worker_on(url, "-P", "solo", ready=False) as w:
        assert w.proc.wait(30) != 0
        assert "ready." not in w.output()
    assert set(tls_redis.server.client().keys("jobs:t:*")) == records


def test_banner_hides_a_client_key_passphrase(tls_redis: TLSRedis, tmp_path: Path) -> None:
    # Given a client key encrypted with a passphrase, given in the URL (redis-py's ssl_password)
    key = servers.encrypt_key(tls_redis.certs.client_key, tmp_path / "client-enc.key", "k3y-pass")
    url = tls_redis.url(keyfile=key, ssl_password="k3y-pass")
    # When a worker runs on it
    with app_on(url), worker_on(url, "-P", "solo") as w:
        assert basic.add.delay(1, 2).get(timeout=15) == 3
        out = w.output()
    # Expect the passphrase to be hidden in its output
    assert "ssl_password=**" in out
    assert "k3y-pass" not in out
