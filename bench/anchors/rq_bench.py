"""RQ 2 adapter."""

from __future__ import annotations

import math
import os
import sys
import time

from bench.harness import Adapter, Canvas, NotSupported, WorkerConfig

QUEUE = "bench"
SIMPLE = "rq.worker.SimpleWorker"  # documented worker class that runs jobs without forking


def _worker(cmd: str = "worker", *opts: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rq.cli",
        cmd,
        "--url",
        os.environ["BENCH_REDIS_URL"],
        *opts,
        QUEUE,
    ]


class RQAdapter(Adapter):
    name = "rq"
    distributions = ("rq", "redis")
    bulk_api = "Queue.enqueue_many(Queue.prepare_data(...), pipeline=...)"

    def setup(self) -> None:
        from redis import Redis
        from rq import Queue

        from bench.anchors import rq_app

        self.m = rq_app
        self.Queue = Queue
        self.conn = Redis.from_url(self.redis_url)
        self.q = Queue(QUEUE, connection=self.conn)

    def enqueue_noop(self) -> None:
        self.q.enqueue(self.m.noop)

    def enqueue_noop_bulk(self, n: int) -> None:
        datas = [self.Queue.prepare_data(self.m.noop) for _ in range(n)]
        with self.conn.pipeline() as pipe:
            self.q.enqueue_many(datas, pipeline=pipe)
            pipe.execute()

    def enqueue_latency(self, sent: float) -> None:
        self.q.enqueue(self.m.latency, sent)

    def roundtrip(self, x: int, timeout: float):
        job = self.q.enqueue(self.m.echo, x)
        result = job.latest_result(timeout=max(1, int(timeout)))  # blocking XREAD
        if result is None:
            raise TimeoutError("no result")
        return result.return_value

    def group_canvas(self, n: int) -> Canvas:
        # RQ has no group result: Queue.enqueue_many (one pipeline), then each job's result.
        datas = [self.Queue.prepare_data(self.m.noop) for _ in range(n)]

        def send() -> list:
            with self.conn.pipeline() as pipe:
                jobs = self.q.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
            return jobs

        def collect(jobs: list, timeout: float) -> list:
            deadline = time.monotonic() + timeout
            out = []
            for job in jobs:
                left = max(1, math.ceil(deadline - time.monotonic()))
                result = job.latest_result(timeout=left)  # blocking XREAD
                if result is None:
                    raise TimeoutError(f"timed out after {timeout:.0f}s: {len(out)} results")
                if result.type != result.Type.SUCCESSFUL:
                    raise RuntimeError(f"job {job.id} ended {result.type.name}")
                out.append(result.return_value)
            return out

        return Canvas(send, collect)

    def chord_canvas(self, n: int) -> Canvas:
        raise NotSupported("depends_on does not pass the dependencies' results to the job")

    def chain_canvas(self, n: int) -> Canvas:
        raise NotSupported("depends_on does not pass the previous job's result on")

    def enqueue_progress(self, n: int) -> None:
        self.q.enqueue(self.m.progress, n, job_timeout=600)

    def solo_worker(self) -> WorkerConfig:
        return WorkerConfig(
            "SimpleWorker", [_worker("worker", "-w", SIMPLE, "--logging_level", "WARNING")]
        )

    def multi_workers(self) -> list[WorkerConfig]:
        # `rq worker-pool -n 2 -w SimpleWorker` measured the same as two separate workers, so
        # only separate SimpleWorker processes are tried (keeps the run short). The default
        # forking Worker is far slower for tiny jobs (one fork per job).
        simple = _worker("worker", "-w", SIMPLE, "--logging_level", "WARNING")
        return [
            WorkerConfig("2 x SimpleWorker", [list(simple) for _ in range(2)]),
            WorkerConfig("3 x SimpleWorker", [list(simple) for _ in range(3)]),
            WorkerConfig("4 x SimpleWorker", [list(simple) for _ in range(4)]),
        ]


ADAPTER = RQAdapter
