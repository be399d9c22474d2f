"""The ``jobs`` blueprint: its routes, the widget's files, and its JSON error pages.

The view code (:mod:`~flask_jobs.web.views` and what it uses: the status JSON, the lookups,
the event streams) is imported at the first request, as in Flask's "Lazily Loading Views"
pattern: ``init_app`` registers the blueprint in every process of the app, worker processes
included, and a worker, which never serves a request, saves the memory of that code (about
0.7 MB of a solo worker's RSS).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import redis
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from ..exceptions import BrokerUnavailable
from ..state import Registry

#: The package's directory, ``flask_jobs``.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: The package's static folder (``flask_jobs/static``: the widget's JS and CSS).
STATIC_FOLDER = _PACKAGE_DIR / "static"

#: Errors meaning the job store can't be reached: answered 503, not 500.
BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerUnavailable)


def _views() -> ModuleType:
    """The view code, imported on first use (see the module docstring)."""
    from . import views

    return views


def make_blueprint(jobs: Registry) -> Blueprint:
    """Build the ``jobs`` blueprint for ``jobs`` (``init_app`` registers it at
    :data:`JOBS_URL_PREFIX`; with ``JOBS_REGISTER_BLUEPRINT = False`` register it yourself).

    :param jobs: the :class:`~flask_jobs.Jobs` extension whose tasks the views show.
    """
    # The root stays the package directory, as when the blueprint was made in
    # ``flask_jobs/web.py``; the static folder is absolute, so the widget is served from it
    # either way.
    bp = Blueprint("jobs", __name__, static_folder=str(STATIC_FOLDER), static_url_path="/static",
                   root_path=str(_PACKAGE_DIR))

    @bp.get("/status/<task_id>")
    def status(task_id: str) -> Response:
        """The status JSON of a task or group."""
        response: Response = _views().status(jobs, task_id)
        return response

    @bp.get("/events/<task_id>")
    def events(task_id: str) -> Response:
        """Server-Sent Events: the status now, then one event per change until final."""
        response: Response = _views().events(jobs, task_id)
        return response

    @bp.route("/revoke/<task_id>", methods=["GET", "POST"])
    def revoke(task_id: str) -> Response:
        """Cancel a task (terminating it if it runs) or every member of a group."""
        response: Response = _views().revoke(jobs, task_id)
        return response

    @bp.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics (:data:`JOBS_METRICS`)."""
        from .metrics import metrics as view  # (here: most apps never serve metrics)

        return view(jobs)

    @bp.after_request
    def no_store(response: Response) -> Response:
        if request.endpoint != "jobs.static":
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # Error handlers of a blueprint only see errors raised by its own views, so the app's own
    # 404 and error pages are untouched.
    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | HTTPException:
        answer: Response | HTTPException = _views().http_error(exc)
        return answer

    def unavailable(exc: Exception) -> Response:
        response: Response = _views().unavailable(exc)
        return response

    for exc_type in BROKER_ERRORS:
        bp.register_error_handler(exc_type, unavailable)

    return bp
