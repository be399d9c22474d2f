"""``flask jobs ...``: the worker, the beat and the operations commands.

Each module adds its commands to :data:`jobs_cli` (the ``flask.commands`` entry point):
:mod:`.run` (worker, beat), :mod:`.schedule`, :mod:`.inspect` (queues, status, ping,
inspect), :mod:`.tasks` (call, result, purge, revoke), :mod:`.events`, :mod:`.dlq`,
:mod:`.multi` (background workers) and :mod:`.dev`.
"""

from __future__ import annotations

from . import dev, dlq, events, inspect, multi, run, schedule, tasks
from .group import jobs_cli

__all__ = ["dev", "dlq", "events", "inspect", "multi", "jobs_cli", "run", "schedule", "tasks"]
