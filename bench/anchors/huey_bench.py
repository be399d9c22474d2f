"""Huey adapter (RedisHuey)."""

from __future__ import annotations

import sys

from bench.harness import Adapter, WorkerConfig


def _consumer(workers: int, kind: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "bench.anchors.huey_app.huey",
        "-w",
        str(workers),
        "-k",
        kind,
        "-q",
    ]


class HueyAdapter(Adapter):
    name = "huey"
    distributions = ("huey", "redis")
    bulk_api = "task.map() (Huey has no pipelined bulk enqueue)"
    supports_progress = False  # Huey has no task progress/state API

    def setup(self) -> None:
        from bench.anchors import huey_app

        self.m = huey_app

    def enqueue_noop(self) -> None:
        self.m.noop()

    def enqueue_noop_bulk(self, n: int) -> None:
        self.m.noop.map([()] * n)

    def enqueue_latency(self, sent: float) -> None:
        self.m.latency(sent)

    def roundtrip(self, x: int, timeout: float):
        return self.m.echo(x).get(blocking=True, timeout=timeout)

    def enqueue_mixed(self, seconds: float, kind: str) -> None:
        self.m.mixed(seconds, kind)

    def mixed_workers(self) -> WorkerConfig:
        return WorkerConfig("-w 4 -k thread", [_consumer(4, "thread")])

    def solo_worker(self) -> WorkerConfig:
        return WorkerConfig("-w 1 -k thread", [_consumer(1, "thread")])

    def multi_workers(self) -> list[WorkerConfig]:
        return [
            WorkerConfig("-w 2 -k process", [_consumer(2, "process")]),
            WorkerConfig("-w 4 -k process", [_consumer(4, "process")]),
            WorkerConfig("-w 4 -k thread", [_consumer(4, "thread")]),
            WorkerConfig("2 x (-w 1 -k thread)", [_consumer(1, "thread")] * 2),
        ]


ADAPTER = HueyAdapter
