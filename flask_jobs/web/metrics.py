"""The ``/metrics`` view: Prometheus's text format (see :mod:`flask_jobs.metrics`), off unless
:data:`JOBS_METRICS` is on, and then for whoever :data:`JOBS_METRICS_AUTHORIZER` allows."""

from __future__ import annotations

from flask import Response
from werkzeug.exceptions import Forbidden, NotFound

from ..state import Registry
from .auth import _hook


def metrics(jobs: Registry) -> Response:
    """The app's metrics; 404 when :data:`JOBS_METRICS` is off, 403 when the authorizer says
    no (it is called with no arguments, inside the request: check a token header, the client
    address, the logged-in user...)."""
    state = jobs.state()
    settings = state.settings
    if not settings.metrics:
        raise NotFound("Metrics are off: set JOBS_METRICS = True to serve them.")
    authorizer = _hook("JOBS_METRICS_AUTHORIZER", settings.metrics_authorizer, None)
    if authorizer is not None and not authorizer():
        raise Forbidden("Not allowed to read the metrics.")
    from ..metrics import CONTENT_TYPE, render  # (here: prometheus-client only when served)

    return Response(render(state), content_type=CONTENT_TYPE)
