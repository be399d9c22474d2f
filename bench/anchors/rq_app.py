"""RQ 2 task functions (plain functions; RQ imports them by dotted path)."""

from rq import get_current_job

from bench.anchors import _common as c


def noop():
    c.noop()


def latency(sent):
    c.latency(sent)


def echo(x):
    return c.echo(x)


def progress(n):
    job = get_current_job()

    def update(i, total):
        job.meta["progress"] = {"current": i, "total": total}
        job.save_meta()

    return c.progress(n, update)
