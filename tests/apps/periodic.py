"""The app of the scheduler tests: periodic tasks from ``JOBS_*`` environment variables.

Beats and workers started as real processes load it with
``flask --app tests.apps.periodic:create_app``; ``JOBS_BEAT_SCHEDULE`` comes JSON-encoded in
the environment (seconds for schedules). The tasks record what ran in Redis lists.
"""

from __future__ import annotations

import json

from flask import Flask, current_app

from flask_jobs import Jobs
from flask_jobs.schedules import schedule
from tests.apps.env import app_from_env

jobs = Jobs()


@jobs.task(bind=True)
def tick(self, key="ticks"):
    """Records the periodic run it is (``periodic_task_name``, ``periodic_task_due``)."""
    headers = self.request.headers or {}
    client = current_app.extensions["jobs"].make_client(blocking=True)
    client.rpush(key, json.dumps([headers.get("periodic_task_name"),
                                  headers.get("periodic_task_due")]))
    return headers.get("periodic_task_due")


@jobs.task(name="celery_app.tasks.add")
def add(x, y):
    """The seed's ``celery_app.tasks.add``."""
    return x + y


@jobs.task(name="celery_app.tasks.xsum")
def xsum(numbers):
    """The seed's ``celery_app.tasks.xsum``."""
    return sum(numbers)


def create_app(config: dict | None = None) -> Flask:
    """Build the app; config from ``JOBS_*`` environment variables, then ``config``."""
    app = app_from_env(__name__, config)
    jobs.init_app(app)
    return app


class every_other(schedule):  # noqa: N801 - named as Celery's schedule classes are
    """A custom schedule class, as the seed allows ("a class inheriting schedule"): twice the
    interval it is given."""

    def next_after(self, after, tz=None):
        return super().next_after(after) + self.run_every
