"""``flask jobs ...``: the worker, the beat and the operations commands.

Each module adds its commands to :data:`jobs_cli` (the ``flask.commands`` entry point):
:mod:`.run` (worker, beat), :mod:`.schedule`, :mod:`.inspect` (queues, status, ping,
inspect), :mod:`.tasks` (call, result, purge, revoke), :mod:`.events` and :mod:`.dlq`.
"""

from __future__ import annotations

from . import dlq, events, inspect, run, schedule, tasks
from .group import jobs_cli

__all__ = ["dlq", "events", "inspect", "jobs_cli", "run", "schedule", "tasks"]
