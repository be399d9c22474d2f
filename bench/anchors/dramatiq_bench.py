"""Dramatiq adapter (RedisBroker, Results middleware with RedisBackend)."""

from __future__ import annotations

import sys

from bench.harness import Adapter, Canvas, NotSupported, WorkerConfig


def _worker(processes: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.anchors.dramatiq_app",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]


class DramatiqAdapter(Adapter):
    name = "dramatiq"
    distributions = ("dramatiq", "redis")
    bulk_api = "broker.enqueue(actor.message()) loop (no pipelined bulk API)"
    supports_progress = False  # Dramatiq has no task progress/state API

    def setup(self) -> None:
        import dramatiq

        from bench.anchors import dramatiq_app

        self.m = dramatiq_app
        self.dramatiq = dramatiq

    def enqueue_noop(self) -> None:
        self.m.noop.send()

    def enqueue_noop_bulk(self, n: int) -> None:
        enqueue, message = self.m.broker.enqueue, self.m.noop.message
        for _ in range(n):
            enqueue(message())

    def enqueue_latency(self, sent: float) -> None:
        self.m.latency.send(sent)

    def roundtrip(self, x: int, timeout: float):
        msg = self.m.echo.send(x)
        return msg.get_result(block=True, timeout=int(timeout * 1000))

    def group_canvas(self, n: int) -> Canvas:
        # noop_stored: the no-op with store_results=True, so the group has results to wait for.
        g = self.dramatiq.group(self.m.noop_stored.message() for _ in range(n))

        def collect(group, timeout: float) -> list:
            return list(group.get_results(block=True, timeout=int(timeout * 1000)))

        return Canvas(g.run, collect)

    def chord_canvas(self, n: int) -> Canvas:
        raise NotSupported(
            "no chord: a group's completion callback (GroupCallbacks) gets no results"
        )

    def chain_canvas(self, n: int) -> Canvas:
        message = self.m.add1.message
        pipe = self.dramatiq.pipeline([message(0), *(message() for _ in range(n - 1))])

        def collect(p, timeout: float):
            return p.get_result(block=True, timeout=int(timeout * 1000))

        return Canvas(pipe.run, collect)

    def enqueue_mixed(self, seconds: float, kind: str) -> None:
        self.m.mixed.send(seconds, kind)

    def mixed_workers(self) -> WorkerConfig:
        return WorkerConfig("--processes 1 --threads 4", [_worker(1, 4)])

    def solo_worker(self) -> WorkerConfig:
        return WorkerConfig("--processes 1 --threads 1", [_worker(1, 1)])

    def multi_workers(self) -> list[WorkerConfig]:
        # 2 x 8 is Dramatiq's default; 2 x 1 was tried too and is far slower (prefetch 2).
        return [
            WorkerConfig("--processes 2 --threads 8", [_worker(2, 8)]),
            WorkerConfig("--processes 2 --threads 4", [_worker(2, 4)]),
            WorkerConfig("--processes 1 --threads 8", [_worker(1, 8)]),
        ]


ADAPTER = DramatiqAdapter
