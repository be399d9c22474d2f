"""The views of the ``jobs`` blueprint (status, events, revoke) and the ``202`` response.

:mod:`~flask_jobs.web.blueprint` routes to them. Each reads its id once
(:func:`~flask_jobs.web.lookups.lookup`), checks who asks (:mod:`~flask_jobs.web.auth`), and
answers with the status JSON (:mod:`~flask_jobs.web.status`, :mod:`~flask_jobs.web.encoding`) or
an event stream (:mod:`~flask_jobs.web.events`). Errors of these views, and a Redis that can't
be reached, are answered as JSON too.
"""

from __future__ import annotations

import logging
import re

from flask import Response, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..result import AsyncResult, EagerResult, GroupResult
from ..state import Registry
from .auth import authorize, refuse_cross_site
from .encoding import error_body, json_response
from .events import stream_response
from .lookups import Found, lookup, related_ids
from .status import eager_body

# The logger of the single module the web layer used to be, so logging configured for it still
# applies.
log = logging.getLogger("flask_jobs.web")

#: Task and group ids the views accept; anything else is a 404 without a Redis round trip.
#: UUIDs (the default ids) and custom ids of letters, digits and ``_ . : @ + = ~ -`` fit.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@+=~-]{1,200}")

#: Seconds a 503 asks clients to wait (``Retry-After``).
RETRY_AFTER = 5


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


def find(jobs: Registry, task_id: str) -> Found:
    """The status of ``task_id`` (a task or a group), or 404."""
    if not ID_PATTERN.fullmatch(task_id):
        raise NotFound("Unknown task id.")
    found = lookup(jobs, task_id)
    if found is None:
        raise NotFound("Unknown task id: it was never queued, or its result expired.")
    return found


def status(jobs: Registry, task_id: str) -> Response:
    """``GET /status/<id>``: the status JSON of a task or group."""
    found = find(jobs, task_id)
    authorize(jobs, "read", found)
    return json_response(found.body)


def events(jobs: Registry, task_id: str) -> Response:
    """``GET /events/<id>``: Server-Sent Events, the status now, then one event per change
    until final."""
    found = find(jobs, task_id)
    authorize(jobs, "read", found)
    return stream_response(task_id, found)


def revoke(jobs: Registry, task_id: str) -> Response:
    """``POST /revoke/<id>``: cancel a task (terminating it if it runs) or every member of a
    group."""
    if request.method != "POST":
        raise MethodNotAllowed(valid_methods=["POST"])
    refuse_cross_site()
    found = find(jobs, task_id)
    authorize(jobs, "revoke", found)
    found.result.revoke(terminate=True)
    for other in related_ids(found):
        AsyncResult(other, jobs=jobs).revoke(terminate=True)
    return json_response((lookup(jobs, task_id) or found).body)


def http_error(exc: HTTPException) -> Response | HTTPException:
    """An HTTP error of these views, as JSON."""
    if exc.code is None or exc.code < 400:
        return exc
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return json_response(error_body(exc.code, type(exc).__name__, exc.description or ""),
                         exc.code, headers)


def unavailable(exc: Exception) -> Response:
    """Redis could not be reached: 503 with ``Retry-After``, as JSON."""
    log.warning("Job store unavailable: %s", exc)
    return json_response(
        error_body(503, "ServiceUnavailable", "The job store is unavailable; try again shortly."),
        503, {"Retry-After": str(RETRY_AFTER)})
