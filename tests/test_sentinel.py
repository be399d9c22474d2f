"""Redis Sentinel: the whole product through Sentinels, and across a failover.

A real primary, a real replica and a real Sentinel (``redis-server --sentinel``) run for this
module; the app names only the Sentinel, in Celery's URL form, and a real worker process runs the
tasks. The failover is real too (``SENTINEL FAILOVER``): the replica becomes the primary, and the
old primary becomes its replica, while the worker and the app keep their connections.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flask_jobs import group
from flask_jobs.embedded import RedisServer, find_redis_server
from flask_jobs.embedded.server import free_port
from flask_jobs.exceptions import ImproperlyConfigured
from tests.apps import basic
from tests.conftest import wait_for
from tests.worker_helpers import app_on, worker_on

MASTER = "mymaster"


class SentinelSetup:
    """A primary, its replica and one Sentinel watching them (quorum 1)."""

    def __init__(self) -> None:
        self.primary = RedisServer().start()
        self.replica = RedisServer(extra_args=["--replicaof", "127.0.0.1",
                                               str(self.primary.port)]).start()
        self.dir = tempfile.mkdtemp(prefix="flask-jobs-sentinel-")
        self.port = free_port()
        conf = Path(self.dir) / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n")
        self.log = open(Path(self.dir) / "sentinel.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.sentinel = redis.Redis(port=self.port, socket_timeout=5)
        # Ready once the Sentinel knows the primary and has found its replica (from the
        # primary's INFO), so that a failover has somewhere to go.
        wait_for(self._sees_replica, 30, "the Sentinel to find the primary and its replica")
        self.url = f"sentinel://127.0.0.1:{self.port}/0"

    def _sees_replica(self) -> bool:
        assert self.proc.poll() is None, Path(self.dir, "sentinel.log").read_text()
        try:
            replicas = self.sentinel.sentinel_slaves(MASTER)
        except redis.ConnectionError:
            return False
        return any(r.get("port") == self.replica.port and "s_down" not in r.get("flags", "")
                   and r.get("master-link-status") == "ok" for r in replicas)

    def primary_port(self) -> int:
        """The primary's port as the Sentinel sees it now."""
        return int(self.sentinel.sentinel_get_master_addr_by_name(MASTER)[1])

    def stop(self) -> None:
        """Stop every process."""
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        for server in (self.replica, self.primary):
            server.stop()


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = SentinelSetup()
    yield setup
    setup.stop()


def _config() -> dict[str, Any]:
    return {"JOBS_BROKER_TRANSPORT_OPTIONS": {"master_name": MASTER}}


def _env() -> dict[str, str]:
    return {"JOBS_BROKER_TRANSPORT_OPTIONS": f'{{"master_name": "{MASTER}"}}'}


def test_tasks_run_through_sentinel(sentinel_setup):
    s = sentinel_setup
    # Given an app and a real worker that name only the Sentinel
    with app_on(s.url, **_config()) as app, worker_on(s.url, "-P", "threads", "-c", "2",
                                                      env=_env()) as w:
        # Expect sends, a group, results, and the status view to work through it
        assert basic.add.delay(2, 3).get(timeout=10) == 5
        assert group(basic.add.s(i, i) for i in range(5)).apply_async().get(timeout=10) == [
            0, 2, 4, 6, 8]
        r = basic.add.delay(1, 1)
        assert r.get(timeout=10) == 2
        assert app.test_client().get(f"/jobs/status/{r.id}").get_json()["state"] == "SUCCESS"
        # ... against the primary the Sentinel names, and the banner names the Sentinel URL
        primary = redis.Redis(port=s.primary_port())
        assert primary.hget(f"jobs:t:{r.id}", "state") == b"SUCCESS"
        assert f".> broker:      {s.url}" in w.output()


def test_work_goes_on_across_a_failover(sentinel_setup):
    s = sentinel_setup
    old = s.primary_port()
    with app_on(s.url, **_config()), worker_on(s.url, "-P", "solo", env=_env()) as w:
        # Given a worker and an app that have used their connections to the primary
        before = basic.add.delay(1, 2)
        assert before.get(timeout=10) == 3
        # When the Sentinel fails over to the replica (the old primary becomes its replica)
        assert s.sentinel.execute_command("SENTINEL FAILOVER", MASTER)
        wait_for(lambda: s.primary_port() != old, 30, "the Sentinel to name a new primary")
        wait_for(lambda: redis.Redis(port=old).info("replication")["role"] == "slave", 30,
                 "the old primary to become a replica")
        # Expect new tasks to be sent to the new primary and run by the same worker
        after = [basic.add.delay(i, 10) for i in range(3)]
        assert [r.get(timeout=30) for r in after] == [10, 11, 12]
        new = redis.Redis(port=s.primary_port())
        assert all(new.hget(f"jobs:t:{r.id}", "state") == b"SUCCESS" for r in after)
        # ... and what was written before the failover still to be readable
        assert before.get(timeout=10) == 3
        assert w.proc.poll() is None


def test_sentinel_url_needs_the_primary_name():
    # A Sentinel URL without master_name (option or query) is refused at init_app, clearly
    with pytest.raises(ImproperlyConfigured, match="master_name"):
        basic.create_app({"JOBS_BROKER_URL": "sentinel://127.0.0.1:26379/0"})
    # ... and the query form is enough
    app = basic.create_app({"JOBS_BROKER_URL":
                            f"sentinel://127.0.0.1:26379/0?master_name={MASTER}"})
    assert app.extensions["jobs"].connector.is_sentinel


def test_unknown_and_celery_only_transport_options():
    url = "redis://127.0.0.1:1/0"
    # A Celery-only option (e.g. visibility_timeout) is accepted with a warning, ...
    basic.create_app({"JOBS_BROKER_URL": url,
                      "JOBS_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 3600}})
    # ... an unknown one is refused, naming it
    with pytest.raises(ImproperlyConfigured, match="'visibilty_timeout'"):
        basic.create_app({"JOBS_BROKER_URL": url,
                          "JOBS_BROKER_TRANSPORT_OPTIONS": {"visibilty_timeout": 3600}})
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        basic.create_app({"JOBS_BROKER_URL": url, "JOBS_BROKER_TRANSPORT_OPTIONS": "x"})
    with pytest.raises(ImproperlyConfigured, match="'min_other_sentinels'"):
        basic.create_app({"JOBS_BROKER_URL": url,
                          "JOBS_BROKER_TRANSPORT_OPTIONS": {"min_other_sentinels": "two"}})


def test_sentinel_url_parsing_and_redaction():
    from flask_jobs.connection import parse_sentinel_url, redact_url

    url = "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://10.0.0.2;sentinel://u:pw@h3:26380"
    spec = parse_sentinel_url(url)
    assert spec.hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("h3", 26380)]
    assert (spec.db, spec.username, spec.password) == (2, None, "s3cret")  # (the first given)
    shown = redact_url(url)
    assert "s3cret" not in shown and "pw" not in shown
    assert shown == "sentinel://:**@10.0.0.1:26379/2;sentinel://10.0.0.2;sentinel://u:**@h3:26380"
    # (the host stays as written; secrets in the query string are hidden too)
    assert redact_url("redis://u:p@[::1]:6379/0") == "redis://u:**@[::1]:6379/0"
    assert redact_url("unix:///r.sock?db=1&password=zz") == "unix:///r.sock?db=1&password=**"
    assert redact_url("rediss://h/0?ssl_password=k&ssl_ca_certs=/ca") == (
        "rediss://h/0?ssl_password=**&ssl_ca_certs=/ca")
    with pytest.raises(ImproperlyConfigured, match="must start with 'sentinel://'"):
        parse_sentinel_url("sentinel://a:1;redis://:s3cret@b:2")
    with pytest.raises(ImproperlyConfigured) as info:
        basic.create_app({"JOBS_BROKER_URL": "redsi://:s3cret@host/0"})
    assert "s3cret" not in str(info.value)
