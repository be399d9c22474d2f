"""The ``jobs`` blueprint (status, events, revoke, the widget's files) and the ``202`` response.

The views only route: each reads its id once (:func:`~flask_jobs.web.lookups.lookup`), checks
who asks (:mod:`~flask_jobs.web.auth`), and answers with the status JSON
(:mod:`~flask_jobs.web.status`, :mod:`~flask_jobs.web.encoding`) or an event stream
(:mod:`~flask_jobs.web.events`). Errors of these views, and a Redis that can't be reached, are
answered as JSON too.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import redis
from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..exceptions import BrokerUnavailable
from ..result import AsyncResult, EagerResult, GroupResult
from ..state import Registry
from .auth import authorize, refuse_cross_site
from .encoding import error_body, json_response
from .events import stream_response
from .lookups import Found, lookup
from .status import eager_body

# The logger of the single module the web layer used to be, so logging configured for it still
# applies.
log = logging.getLogger("flask_jobs.web")

#: The package's directory, ``flask_jobs``.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: The package's static folder (``flask_jobs/static``: the widget's JS and CSS).
STATIC_FOLDER = _PACKAGE_DIR / "static"

#: Task and group ids the views accept; anything else is a 404 without a Redis round trip.
#: UUIDs (the default ids) and custom ids of letters, digits and ``_ . : @ + = ~ -`` fit.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@+=~-]{1,200}")

#: Seconds a 503 asks clients to wait (``Retry-After``).
RETRY_AFTER = 5

#: Errors meaning the job store can't be reached: answered 503, not 500.
_BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerUnavailable)


def accepted(result: AsyncResult | GroupResult) -> Response:
    """The response for a task or group just started: ``202`` + ``Location`` + JSON.

    The body is ``{id, status_url, events_url}``; ``Location`` is the status URL. A group
    gets one URL for the whole group. An eager result (``JOBS_ALWAYS_EAGER`` or ``apply()``)
    is not stored in Redis, so its status URL would be 404: it gets ``200`` with its final
    status inline (the status JSON plus ``status_url`` and ``events_url``).

    :param result: what ``delay()``, ``apply_async()`` or a group's ``apply_async()`` returned.
    :raises TypeError: ``result`` is not a result.
    :raises ValueError: the id cannot be part of a status URL (see :data:`ID_PATTERN`).
    """
    if isinstance(result, GroupResult):
        eager = not result.results or any(isinstance(r, EagerResult) for r in result.results)
    elif isinstance(result, AsyncResult):
        eager = isinstance(result, EagerResult)
    else:
        raise TypeError(f"accepted() takes an AsyncResult or GroupResult, not {result!r}")
    if not ID_PATTERN.fullmatch(result.id):
        raise ValueError(
            f"The id {result.id!r} cannot be used in a status URL: use at most 200 letters, "
            "digits or '_.:@+=~-' (the default UUID ids always fit)."
        )
    status_url = url_for("jobs.status", task_id=result.id)
    events_url = url_for("jobs.events", task_id=result.id)
    urls = {"status_url": status_url, "events_url": events_url}
    headers = {"Location": status_url}
    if eager:
        return json_response({**eager_body(result), **urls}, 200, headers)
    return json_response({"id": result.id, **urls}, 202, headers)


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

    def find(task_id: str) -> Found:
        if not ID_PATTERN.fullmatch(task_id):
            raise NotFound("Unknown task id.")
        found = lookup(jobs, task_id)
        if found is None:
            raise NotFound("Unknown task id: it was never queued, or its result expired.")
        return found

    @bp.get("/status/<task_id>")
    def status(task_id: str) -> Response:
        """The status JSON of a task or group."""
        found = find(task_id)
        authorize(jobs, "read", found)
        return json_response(found.body)

    @bp.get("/events/<task_id>")
    def events(task_id: str) -> Response:
        """Server-Sent Events: the status now, then one event per change until final."""
        found = find(task_id)
        authorize(jobs, "read", found)
        return stream_response(task_id, found)

    @bp.route("/revoke/<task_id>", methods=["GET", "POST"])
    def revoke(task_id: str) -> Response:
        """Cancel a task (terminating it if it runs) or every member of a group."""
        if request.method != "POST":
            raise MethodNotAllowed(valid_methods=["POST"])
        refuse_cross_site()
        found = find(task_id)
        authorize(jobs, "revoke", found)
        found.result.revoke(terminate=True)
        return json_response((lookup(jobs, task_id) or found).body)

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
        if exc.code is None or exc.code < 400:
            return exc
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_response(error_body(exc.code, type(exc).__name__, exc.description or ""),
                             exc.code, headers)

    def unavailable(exc: Exception) -> Response:
        log.warning("Job store unavailable: %s", exc)
        return json_response(
            error_body(503, "ServiceUnavailable", "The job store is unavailable; try again shortly."),
            503, {"Retry-After": str(RETRY_AFTER)})

    for exc_type in _BROKER_ERRORS:
        bp.register_error_handler(exc_type, unavailable)

    return bp
