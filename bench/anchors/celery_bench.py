"""Celery 5 adapter (Redis broker + Redis result backend)."""

from __future__ import annotations

import sys

from bench.harness import Adapter, Canvas, WorkerConfig


def _worker(*opts: str, name: str = "bench1") -> list[str]:
    # --without-gossip/mingle/heartbeat: Celery's documented flags that drop worker-to-worker
    # chatter a single-host benchmark does not need (faster start, less Redis traffic).
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.anchors.celery_app",
        "worker",
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"{name}@%h",
        *opts,
    ]


class CeleryAdapter(Adapter):
    name = "celery"
    distributions = ("celery", "kombu", "redis")
    bulk_api = "apply_async(producer=...) loop on one pooled producer"

    def setup(self) -> None:
        import celery

        from bench.anchors import celery_app

        self.m = celery_app
        self.celery = celery

    def enqueue_noop(self) -> None:
        self.m.noop.delay()

    def enqueue_noop_bulk(self, n: int) -> None:
        # Reusing one producer (and its channel) for all messages is the documented way to
        # publish many messages; it beat group(...).apply_async() here.
        task = self.m.noop
        with self.m.app.producer_or_acquire() as producer:
            for _ in range(n):
                task.apply_async(producer=producer)

    def enqueue_latency(self, sent: float) -> None:
        self.m.latency.delay(sent)

    def roundtrip(self, x: int, timeout: float):
        return self.m.echo.delay(x).get(timeout=timeout)

    def enqueue_progress(self, n: int) -> None:
        self.m.progress.delay(n)

    def group_canvas(self, n: int) -> Canvas:
        # GroupResult.get() on the Redis backend is join_native (batched MGETs + pub/sub).
        sig = self.celery.group(self.m.noop.s() for _ in range(n))
        return Canvas(sig.apply_async, lambda res, timeout: res.get(timeout=timeout))

    def chord_canvas(self, n: int) -> Canvas:
        # The Redis backend counts the header in Redis and runs the body (no polling task).
        header = self.celery.chord(self.m.echo.s(i) for i in range(n))
        body = self.m.tsum.s()
        return Canvas(lambda: header(body), lambda res, timeout: res.get(timeout=timeout))

    def chain_canvas(self, n: int) -> Canvas:
        sig = self.celery.chain(self.m.add1.s(0), *(self.m.add1.s() for _ in range(n - 1)))
        return Canvas(sig.apply_async, lambda res, timeout: res.get(timeout=timeout))

    def enqueue_mixed(self, seconds: float, kind: str) -> None:
        self.m.mixed.delay(seconds, kind)

    def mixed_workers(self) -> WorkerConfig:
        # -O fair: Celery's answer to tasks waiting behind long ones (its default prefetch
        # multiplier, 4, is kept as a user would).
        return WorkerConfig("-P prefork -c 4 -O fair", [_worker("-P", "prefork", "-c", "4",
                                                                "-O", "fair")])

    def solo_worker(self) -> WorkerConfig:
        return WorkerConfig("-P solo", [_worker("-P", "solo")])

    def multi_workers(self) -> list[WorkerConfig]:
        # `-P threads -c 4` was tried too and was the slowest; left out to keep the run short.
        return [
            WorkerConfig("2 x -P solo", [_worker("-P", "solo", name=f"bench{i}") for i in (1, 2)]),
            WorkerConfig("-P prefork -c 2", [_worker("-P", "prefork", "-c", "2")]),
            WorkerConfig("-P prefork -c 4", [_worker("-P", "prefork", "-c", "4")]),
        ]


ADAPTER = CeleryAdapter
