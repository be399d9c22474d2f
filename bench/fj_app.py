"""flask-jobs tasks for the benchmark: the shared bodies wrapped in ``@jobs.task``."""

from __future__ import annotations

import os

from flask import Flask

from bench.anchors import _common as c
from flask_jobs import Jobs

jobs = Jobs()


@jobs.task
def noop():
    c.noop()


@jobs.task
def latency(sent):
    c.latency(sent)


@jobs.task
def mixed(seconds, kind):
    c.mixed(seconds, kind)


@jobs.task
def echo(x):
    return c.echo(x)


@jobs.task
def add1(x):
    return c.add1(x)


@jobs.task
def tsum(values):
    return c.tsum(values)


@jobs.task(bind=True)
def progress(self, n):
    return c.progress(n, lambda i, total: self.progress(i, total))


def create_app() -> Flask:
    """The benchmark app on ``$BENCH_REDIS_URL``."""
    app = Flask(__name__)
    app.config["JOBS_BROKER_URL"] = c.REDIS_URL
    # (a knob to measure what events cost: FJ_BENCH_EVENTS=0 turns them off; on by default,
    # as for users)
    app.config["JOBS_EVENTS"] = os.environ.get("FJ_BENCH_EVENTS", "1") != "0"
    jobs.init_app(app)
    return app


app = create_app()


@jobs.task(bind=True)
def paced_progress(self, n, pause):
    """Report progress n times, ``pause`` seconds apart (the SSE fan-out benchmark)."""
    import time

    for i in range(1, n + 1):
        self.progress(i, n)
        time.sleep(pause)
    return n
