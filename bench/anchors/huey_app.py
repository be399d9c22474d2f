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
