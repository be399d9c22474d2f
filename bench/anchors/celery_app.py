"""Celery 5 tasks: Redis broker and Redis result backend, otherwise default settings."""

from celery import Celery

from bench.anchors import _common as c

app = Celery("bench_celery", broker=c.REDIS_URL, backend=c.REDIS_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop():
    c.noop()


@app.task(name="bench.latency")
def latency(sent):
    c.latency(sent)


@app.task(name="bench.mixed")
def mixed(seconds, kind):
    c.mixed(seconds, kind)


@app.task(name="bench.echo")
def echo(x):
    return c.echo(x)


@app.task(name="bench.add1")
def add1(x):
    return c.add1(x)


@app.task(name="bench.tsum")
def tsum(values):
    return c.tsum(values)


@app.task(name="bench.progress", bind=True)
def progress(self, n):
    def update(i, total):
        self.update_state(state="PROGRESS", meta={"current": i, "total": total})

    return c.progress(n, update)
