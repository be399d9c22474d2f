"""The ``flask jobs`` command group, and what its commands share."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup

from ..exceptions import BrokerUnavailable, ImproperlyConfigured


class JobsGroup(AppGroup):
    """The ``flask jobs`` group: a configuration error or an unreachable Redis, in any of its
    commands (loading the app included), prints one line naming the problem, not a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ImproperlyConfigured, BrokerUnavailable) as exc:
            raise click.ClickException(str(exc)) from None


jobs_cli = JobsGroup("jobs", help="Run flask-jobs workers and beats, and operate them.")

#: The ``-l/--loglevel`` choices (Celery's).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
