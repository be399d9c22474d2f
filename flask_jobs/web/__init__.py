"""The ``jobs`` blueprint: task status as JSON, live events (SSE), revoke, and the JS widget.

``init_app`` registers it at :data:`JOBS_URL_PREFIX` (default ``/jobs``)::

    GET  /jobs/status/<id>    status JSON of a task or a group          (endpoint jobs.status)
    GET  /jobs/events/<id>    Server-Sent Events, one per change        (endpoint jobs.events)
    POST /jobs/revoke/<id>    cancel, returns the status JSON           (endpoint jobs.revoke)
    GET  /jobs/static/...     flask-jobs.js and flask-jobs.css          (endpoint jobs.static)

The status JSON (see ``docs/web.rst`` for every field)::

    {"id", "state", "current", "total", "percent", "status", "meta", "result", "error",
     "eta_seconds", "updated_at"}            + for a group: "completed", "failed", "revoked",
                                               "children": [{"id", "state"}]

Who may read or revoke a task is decided by :meth:`Jobs.current_owner` (a task started with
``owner=`` is only for that user) and :meth:`Jobs.status_authorizer`; both must allow.

The modules, each importing only from those before it:

- :mod:`~flask_jobs.web.status`: building the status JSON;
- :mod:`~flask_jobs.web.encoding`: the status JSON as strict JSON, in a response or an event;
- :mod:`~flask_jobs.web.lookups`: reading a task or group id from Redis (:func:`lookup`);
- :mod:`~flask_jobs.web.auth`: who may read or revoke, and the CSRF check;
- :mod:`~flask_jobs.web.events`: the event streams and what the SSE hub reads;
- :mod:`~flask_jobs.web.views`: the views and :func:`accepted`;
- :mod:`~flask_jobs.web.blueprint`: the blueprint (:func:`make_blueprint`), which imports the
  views at the first request.

Their public names are importable from here, as they were when this was one module (hence
``lookups``, not ``lookup``: ``flask_jobs.web.lookup`` stays the function).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import authorize, refuse_cross_site
    from .blueprint import STATIC_FOLDER, make_blueprint
    from .encoding import dumps
    from .events import SSE_RETRY_MS, EventStream, events_hub
    from .lookups import Found, lookup
    from .status import eager_body, group_body, status_body
    from .views import ID_PATTERN, RETRY_AFTER, accepted

#: Where each public name lives. They are imported on first use (PEP 562), so that a process
#: that only registers the blueprint, such as a worker, does not load the view code (see
#: :mod:`~flask_jobs.web.blueprint`).
_HOMES = {
    "authorize": "auth", "refuse_cross_site": "auth",
    "STATIC_FOLDER": "blueprint", "make_blueprint": "blueprint",
    "dumps": "encoding",
    "SSE_RETRY_MS": "events", "EventStream": "events", "events_hub": "events",
    "Found": "lookups", "lookup": "lookups",
    "eager_body": "status", "group_body": "status", "status_body": "status",
    "ID_PATTERN": "views", "RETRY_AFTER": "views", "accepted": "views",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # (found directly next time)
    return value


__all__ = [
    "ID_PATTERN",
    "RETRY_AFTER",
    "SSE_RETRY_MS",
    "STATIC_FOLDER",
    "EventStream",
    "Found",
    "accepted",
    "authorize",
    "dumps",
    "eager_body",
    "events_hub",
    "group_body",
    "lookup",
    "make_blueprint",
    "refuse_cross_site",
    "status_body",
]
