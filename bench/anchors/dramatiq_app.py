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


@dramatiq.actor(actor_name="bench_noop_stored", store_results=True)
def noop_stored():
    """The no-op with its (None) result stored: what ``group.get_results`` waits for (the
    group workload; the plain ``noop`` stores nothing, as Dramatiq's default)."""
    c.noop()


@dramatiq.actor(actor_name="bench_add1", store_results=True)
def add1(x):
    return c.add1(x)
