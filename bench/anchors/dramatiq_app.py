"""Dramatiq actors on RedisBroker, with the Results middleware (RedisBackend) for round trips."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from bench.anchors import _common as c

broker = RedisBroker(url=c.REDIS_URL)
broker.add_middleware(Results(backend=RedisBackend(url=c.REDIS_URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop")
def noop():
    c.noop()


@dramatiq.actor(actor_name="bench_latency")
def latency(sent):
    c.latency(sent)


@dramatiq.actor(actor_name="bench_mixed")
def mixed(seconds, kind):
    c.mixed(seconds, kind)


@dramatiq.actor(actor_name="bench_echo", store_results=True)
def echo(x):
    return c.echo(x)
