"""Huey tasks on RedisHuey (blocking BRPOP dequeue, the default).

``notify_result=True`` is RedisStorage's documented option that makes
``result.get(blocking=True)`` wait with BLPOP instead of polling with back-off;
it is the fastest way Huey offers to wait for a result.
"""

from huey import RedisHuey

from bench.anchors import _common as c

huey = RedisHuey("bench", url=c.REDIS_URL, notify_result=True)


@huey.task()
def noop():
    c.noop()


@huey.task()
def latency(sent):
    c.latency(sent)


@huey.task()
def mixed(seconds, kind):
    c.mixed(seconds, kind)


@huey.task()
def echo(x):
    return c.echo(x)


@huey.task()
def noop_stored():
    """The no-op for the group workload. Huey stores no ``None`` result (``store_none=False``,
    its default, kept for the other rows), so a blocking ``get`` of one would never return:
    this one returns ``True`` instead (same body, one stored result per task as elsewhere)."""
    c.noop()
    return True


@huey.task()
def add1(x):
    return c.add1(x)


@huey.task()
def tsum(values):
    return c.tsum(values)
