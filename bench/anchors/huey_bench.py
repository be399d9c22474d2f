"""Huey adapter (RedisHuey)."""

from __future__ import annotations

import sys
import time

from bench.harness import Adapter, Canvas, WorkerConfig


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
        import huey

        from bench.anchors import huey_app

        self.m = huey_app
        self.huey_api = huey

    def enqueue_noop(self) -> None:
        self.m.noop()

    def enqueue_noop_bulk(self, n: int) -> None:
        self.m.noop.map([()] * n)

    def enqueue_latency(self, sent: float) -> None:
        self.m.latency(sent)

    def roundtrip(self, x: int, timeout: float):
        return self.m.echo(x).get(blocking=True, timeout=timeout)

    @staticmethod
    def _get_all(results, timeout: float) -> list:
        """Blocking get of every Result, within ``timeout`` seconds in all (BLPOP each, thanks
        to notify_result)."""
        deadline = time.monotonic() + timeout
        out = []
        for res in results:
            left = deadline - time.monotonic()
            value = res.get(blocking=True, timeout=max(0.001, left))
            if value is None:
                raise TimeoutError(f"timed out after {timeout:.0f}s: {len(out)} results")
            out.append(value)
        return out

    def group_canvas(self, n: int) -> Canvas:
        # noop_stored returns True: Huey stores no None result (store_none=False).
        g = self.huey_api.group([self.m.noop_stored.s() for _ in range(n)])
        return Canvas(lambda: self.m.huey.enqueue(g), self._get_all)

    def chord_canvas(self, n: int) -> Canvas:
        # huey.group(...).then(task) is Huey's chord (3.0+): the body gets the results list.
        c = self.huey_api.group([self.m.echo.s(i) for i in range(n)]).then(self.m.tsum)
        return Canvas(lambda: self.m.huey.enqueue(c), lambda res, timeout: self._get_all(
            [res.callback], timeout)[0])

    def chain_canvas(self, n: int) -> Canvas:
        pipe = self.m.add1.s(0)
        for _ in range(n - 1):
            pipe = pipe.then(self.m.add1)
        # enqueue(pipeline) returns a ResultGroup of every step; the chain's is the last one.
        return Canvas(lambda: self.m.huey.enqueue(pipe), lambda res, timeout: self._get_all(
            [list(res)[-1]], timeout)[0])

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
