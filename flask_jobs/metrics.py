"""Prometheus metrics, read from Redis at each scrape (so every web process gives the same).

Through ``prometheus-client`` (the optional extra ``metrics``), served at
``<JOBS_URL_PREFIX>/metrics`` when :data:`JOBS_METRICS` is on:

- ``flask_jobs_tasks_total{name, state}``: runs ended, by task name and outcome (``succeeded``,
  ``failed``, ``retried``, ``revoked``, ``expired``, ``dead``), counted by the scripts that
  write outcomes (``m:<name>`` in Redis);
- ``flask_jobs_task_runtime_seconds{name}``: a histogram of runtimes (succeeded and failed);
- ``flask_jobs_queue_length{queue}`` and ``flask_jobs_queue_oldest_age_seconds{queue}``;
- ``flask_jobs_delayed_tasks``, ``flask_jobs_dead_letters``, ``flask_jobs_workers_online``,
  ``flask_jobs_tasks_in_flight``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .connection import text
from .inspection import Inspect
from .state import AppState

#: The runtime buckets of the scripts (ms; lib.lua's BUCKETS), then +Inf.
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
#: The outcome counters.
OUTCOMES = ("succeeded", "failed", "retried", "revoked", "expired", "dead")
#: The media type of the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _client_library() -> Any:
    try:
        import prometheus_client  # noqa: F401
        from prometheus_client import core
    except ImportError:
        raise RuntimeError("JOBS_METRICS needs prometheus-client: "
                           "pip install 'flask-jobs-redis[metrics]'") from None
    return core


class JobsCollector:
    """A ``prometheus_client`` collector of one app's metrics, read from Redis when scraped."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        """The metric families (prometheus-client's collector protocol)."""
        core = _client_library()
        state, keys, client = self.state, self.state.keys, self.state.client
        names = sorted(text(n) for n in client.smembers(keys.counted_names))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.counters_of(name))
        totals = core.CounterMetricFamily("flask_jobs_tasks", "Task runs ended, by outcome",
                                          labels=["name", "state"])
        runtimes = core.HistogramMetricFamily("flask_jobs_task_runtime_seconds",
                                              "Runtime of tasks that succeeded or failed",
                                              labels=["name"])
        for name, raw in zip(names, pipe.execute() if names else [], strict=True):
            counts = {text(k): int(v) for k, v in raw.items()}
            for outcome in OUTCOMES:
                totals.add_metric([name, outcome], counts.get(outcome, 0))
            buckets, running = [], 0
            for i, limit in enumerate(BUCKETS_MS, 1):
                running += counts.get(f"b{i}", 0)
                buckets.append((repr(limit / 1000), running))
            running += counts.get(f"b{len(BUCKETS_MS) + 1}", 0)
            buckets.append(("+Inf", running))
            runtimes.add_metric([name], buckets, counts.get("rt", 0) / 1000)
        yield totals
        yield runtimes
        yield from self._queues(core)
        inspect = Inspect(state, None)
        stats = inspect.stats()
        yield core.GaugeMetricFamily("flask_jobs_workers_online", "Live workers",
                                     value=len(stats))
        yield core.GaugeMetricFamily("flask_jobs_tasks_in_flight",
                                     "Tasks held by live workers (prefetched or running)",
                                     value=sum(s.get("active", 0) for s in stats.values()))
        yield core.GaugeMetricFamily("flask_jobs_delayed_tasks",
                                     "Tasks waiting for a countdown, an eta or a retry",
                                     value=client.zcard(keys.delayed))
        yield core.GaugeMetricFamily("flask_jobs_dead_letters", "Dead letters kept",
                                     value=client.llen(keys.dead_letters))

    def _queues(self, core: Any) -> Iterator[Any]:
        state, keys, client = self.state, self.state.keys, self.state.client
        queues = state.broker.queue_names()
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for prio in range(10):
                pipe.llen(keys.queue(queue, prio))
                pipe.lindex(keys.queue(queue, prio), -1)  # (the oldest: ids go in at the left)
        replies = pipe.execute() if queues else []
        lengths = core.GaugeMetricFamily("flask_jobs_queue_length", "Tasks ready in a queue",
                                         labels=["queue"])
        ages = core.GaugeMetricFamily("flask_jobs_queue_oldest_age_seconds",
                                      "How long the oldest ready task of a queue has waited",
                                      labels=["queue"])
        oldest: dict[str, list[str]] = {}
        for qi, queue in enumerate(queues):
            part = replies[qi * 20:(qi + 1) * 20]
            lengths.add_metric([queue], sum(part[0::2]))
            oldest[queue] = [text(i) for i in part[1::2] if i]
        now_ms = int(float("{}.{:06d}".format(*client.time())) * 1000)
        pipe = client.pipeline(transaction=False)
        for ids in oldest.values():
            for task_id in ids:
                pipe.hget(keys.task(task_id), "upd")
        times = iter(pipe.execute() if any(oldest.values()) else [])
        for queue, ids in oldest.items():
            stamps = [int(t) for t in (next(times) for _ in ids) if t]
            ages.add_metric([queue], max(0, now_ms - min(stamps)) / 1000 if stamps else 0.0)
        yield lengths
        yield ages


def render(state: AppState) -> bytes:
    """The metrics of ``state``'s app in Prometheus's text format.

    :raises RuntimeError: prometheus-client is not installed (the message names the extra).
    """
    _client_library()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(state))
    text: bytes = generate_latest(registry)
    return text
