"""pytest plugin (entry point ``pytest11``): a private Redis and real workers for your tests.

Works with pytest-flask's ``app``/``client`` fixtures. Point your app at the test Redis::

    @pytest.fixture
    def app(jobs_redis_url):
        return create_app({"JOBS_BROKER_URL": jobs_redis_url})

    def test_add(app, jobs_worker):
        assert add.delay(2, 3).get(timeout=5) == 5

Fixtures: ``jobs_redis_url`` (session: a private ``redis-server``, or ``$JOBS_TEST_REDIS_URL``),
``jobs_redis`` (a client; the database is flushed before each test), ``jobs_worker`` (a real
worker consuming in threads of this process for the test's ``app``), ``jobs_eager`` (run tasks
in-process on ``delay()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def jobs_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis the tests use: ``$JOBS_TEST_REDIS_URL`` or a private server."""
    url = os.environ.get("JOBS_TEST_REDIS_URL")
    if url:
        yield url
        return
    from .embedded import RedisServer

    server = RedisServer(directory=str(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def jobs_redis(jobs_redis_url: str) -> Iterator[Any]:
    """A client of the test Redis; its database is flushed before each test."""
    import redis

    client = redis.Redis.from_url(jobs_redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def jobs_worker(app: Any, jobs_redis: Any) -> Iterator[Any]:
    """A real worker for ``app`` (threads of this process), stopped after the test."""
    from .worker.main import BackgroundWorker

    worker = BackgroundWorker(app, concurrency=2).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def jobs_eager(app: Any) -> Iterator[None]:
    """Run tasks in this process, synchronously, on ``delay()``/``apply_async()``."""
    before = app.config["JOBS_ALWAYS_EAGER"]
    app.config["JOBS_ALWAYS_EAGER"] = True  # read at each call, as Celery's task_always_eager
    try:
        yield
    finally:
        app.config["JOBS_ALWAYS_EAGER"] = before
