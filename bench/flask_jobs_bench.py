"""flask-jobs adapter for the benchmark harness (see bench/harness.py for the contract)."""

from __future__ import annotations

import os
import sys

from bench.harness import Adapter, Canvas, WorkerConfig


def _worker(pool: str, concurrency: int = 1, prefetch: int = 64) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "bench.fj_app:app",
        "jobs",
        "worker",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--prefetch",
        str(prefetch),
        "-l",
        # (WARNING, as the anchors run; FJ_BENCH_LOGLEVEL=INFO measures the per-task log lines)
        os.environ.get("FJ_BENCH_LOGLEVEL", "WARNING"),
    ]


class FlaskJobsAdapter(Adapter):
    name = "flask-jobs"
    distributions = ("flask-jobs-redis", "redis", "hiredis", "flask")
    bulk_api = "group(sigs).apply_async() (one pipelined round trip)"

    def setup(self) -> None:
        from bench import fj_app
        from flask_jobs import chain, chord, group

        self.m = fj_app
        self.group, self.chord, self.chain = group, chord, chain
        self.ctx = fj_app.app.app_context()
        self.ctx.push()

    def enqueue_noop(self) -> None:
        self.m.noop.delay()

    def enqueue_noop_bulk(self, n: int) -> None:
        sig = self.m.noop.s()
        self.group([sig] * n).apply_async()

    def enqueue_latency(self, sent: float) -> None:
        self.m.latency.delay(sent)

    def roundtrip(self, x: int, timeout: float):
        return self.m.echo.delay(x).get(timeout=timeout)

    def enqueue_progress(self, n: int) -> None:
        self.m.progress.delay(n)

    def group_canvas(self, n: int) -> Canvas:
        sig = self.group(self.m.noop.s() for _ in range(n))
        return Canvas(sig.apply_async, lambda res, timeout: res.get(timeout=timeout))

    def chord_canvas(self, n: int) -> Canvas:
        header = self.chord(self.m.echo.s(i) for i in range(n))
        body = self.m.tsum.s()
        return Canvas(lambda: header(body), lambda res, timeout: res.get(timeout=timeout))

    def chain_canvas(self, n: int) -> Canvas:
        sig = self.chain(self.m.add1.s(0), *(self.m.add1.s() for _ in range(n - 1)))
        return Canvas(sig.apply_async, lambda res, timeout: res.get(timeout=timeout))

    def enqueue_mixed(self, seconds: float, kind: str) -> None:
        self.m.mixed.delay(seconds, kind)

    def mixed_workers(self) -> WorkerConfig:
        # The default prefetch (4), as the anchors keep theirs.
        return WorkerConfig("-P prefork -c 4", [_worker("prefork", 4, prefetch=4)])

    def solo_worker(self) -> WorkerConfig:
        return WorkerConfig("-P solo --prefetch 64", [_worker("solo")])

    def multi_workers(self) -> list[WorkerConfig]:
        # -c 4 on 2 cores: while one child waits on Redis another runs, so no core idles
        # (an idle vCPU here costs tens of microseconds to wake). Anchors get the same.
        return [
            WorkerConfig("-P prefork -c 4 --prefetch 64", [_worker("prefork", 4)]),
            WorkerConfig("-P prefork -c 2 --prefetch 64", [_worker("prefork", 2)]),
            WorkerConfig("2 x (-P solo --prefetch 64)", [_worker("solo")] * 2),
        ]


ADAPTER = FlaskJobsAdapter
