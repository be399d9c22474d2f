"""The ``flask jobs`` command group, and what its commands share."""

from __future__ import annotations

from flask.cli import AppGroup

jobs_cli = AppGroup("jobs", help="Run flask-jobs workers and beats, and operate them.")

#: The ``-l/--loglevel`` choices (Celery's).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
