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
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, current_app, request, stream_with_context, url_for
from werkzeug.exceptions import Forbidden, HTTPException, MethodNotAllowed, NotFound
from werkzeug.utils import import_string

from .. import states
from ..exceptions import BrokerUnavailable
from ..result import _FIELDS, AsyncResult, EagerResult, GroupResult, Record
from ..sse_hub import GONE, Follower, Hub, Update, hub_for
from ..state import AppState
from ..state import Registry as Jobs

log = logging.getLogger("flask_jobs.web")

#: The package's directory, ``flask_jobs``.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: The package's static folder (``flask_jobs/static``: the widget's JS and CSS).
STATIC_FOLDER = _PACKAGE_DIR / "static"

#: Task and group ids the views accept; anything else is a 404 without a Redis round trip.
#: UUIDs (the default ids) and custom ids of letters, digits and ``_ . : @ + = ~ -`` fit.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@+=~-]{1,200}")

#: Reconnection delay suggested to EventSource clients (the SSE ``retry:`` field), in ms.
SSE_RETRY_MS = 2000
#: Seconds a 503 asks clients to wait (``Retry-After``).
RETRY_AFTER = 5
_CROSS_SITE_OK = frozenset({"same-origin", "same-site", "none"})
_BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerUnavailable)
_MEMBER_FIELDS = ("state", "st", "upd", "owner")


# -- reading a status -------------------------------------------------------------------------


class _TaskSnapshot(AsyncResult):
    """An :class:`AsyncResult` answered from the record the view read (one round trip)."""

    def __init__(self, task_id: str, jobs: Jobs, app: Flask, record: Record) -> None:
        super().__init__(task_id, jobs=jobs, app=app)
        self._cache = record


class _GroupSnapshot(GroupResult):
    """A :class:`GroupResult` with the ``owner`` its members share (None if they differ)."""

    owner: str | None = None


@dataclass
class Found:
    """What one read of an id found: the result object, its status JSON, and its owners."""

    kind: str  # "task" or "group"
    result: AsyncResult | GroupResult
    body: dict[str, Any]
    owners: frozenset[str] = field(default_factory=frozenset)
    channels: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """Whether nothing will change any more."""
        return self.body["state"] in states.READY_STATES

    @property
    def event_id(self) -> str:
        """The SSE ``id:``: the update time in ms (the same for the same final status)."""
        return str(self.body.get("_upd") or 0)


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None  # NaN and infinities can't fill a bar


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _percent(current: float | None, total: float | None) -> float | None:
    if current is None or total is None or total <= 0:
        return None
    return round(min(100.0, max(0.0, current * 100.0 / total)), 1)


def _eta(current: float | None, total: float | None, started_ms: int | None,
         now_ms: int) -> float | None:
    """Seconds left at the average rate since the task started (None if unknown)."""
    if current is None or total is None or current <= 0 or not started_ms:
        return None
    if current >= total:
        return 0.0
    elapsed = (now_ms - started_ms) / 1000.0
    if elapsed <= 0:
        return None
    return round(elapsed * (total - current) / current, 1)


def _error(state: str, value: Any, reason: str | None, traceback: str | None,
           expose: bool) -> dict[str, Any] | None:
    """The ``error`` member: type and message; the traceback only if exposed."""
    if state == states.REVOKED:
        message = reason
        if not message and isinstance(value, dict):
            message = value.get("exc_message")
        if not message and isinstance(value, BaseException):
            message = str(value)
        error: dict[str, Any] = {"type": "TaskRevokedError", "message": str(message or "revoked")}
    elif state in (states.FAILURE, states.RETRY):
        if isinstance(value, BaseException):
            error = {"type": type(value).__name__, "message": str(value)}
        elif isinstance(value, dict) and "exc_type" in value:
            error = {"type": str(value["exc_type"]), "message": str(value.get("exc_message", ""))}
        elif value is None and state == states.RETRY:
            return None
        else:
            error = {"type": "Exception", "message": "" if value is None else str(value)}
    else:
        return None
    if expose and traceback:
        error["traceback"] = traceback
    return error


def status_body(task_id: str, state: str, value: Any, *, traceback: str | None = None,
                reason: str | None = None, started_ms: int | None = None,
                updated_ms: int | None = None, now_ms: int | None = None,
                expose_tracebacks: bool = False) -> dict[str, Any]:
    """Build the status JSON of one task.

    :param value: the decoded stored value: the meta of a progress or custom state, the return
        value of SUCCESS, the failure description (or exception) of FAILURE/RETRY/REVOKED.
    """
    meta = None
    result = None
    if state == states.SUCCESS:
        result = value
        lifted = value if isinstance(value, dict) else {}
    elif state in states.READY_STATES or state in (states.PENDING, states.STARTED, states.RETRY):
        lifted = {}
    else:  # PROGRESS or a custom state: the value is the meta
        meta = value
        lifted = value if isinstance(value, dict) else {}
    current = _number(lifted.get("current"))
    total = _number(lifted.get("total"))
    status = lifted.get("status")
    if state == states.SUCCESS:
        percent: float | None = 100.0
    elif state == states.PENDING:
        percent = 0.0
    else:
        percent = _percent(current, total)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return {
        "id": task_id,
        "state": state,
        "current": current,
        "total": total,
        "percent": percent,
        "status": status if isinstance(status, str) else None,
        "meta": meta,
        "result": result,
        "error": _error(state, value, reason, traceback, expose_tracebacks),
        "eta_seconds": None if state in states.READY_STATES else _eta(current, total,
                                                                        started_ms, now_ms),
        "updated_at": _iso(updated_ms),
        "_upd": updated_ms,
    }


def _int(value: bytes | None) -> int | None:
    return int(value) if value else None


def _task_found(st: AppState, jobs: Jobs, task_id: str, record: Record,
                now_ms: int) -> Found:
    state = record.state_name
    value: Any = None
    undecodable = False
    if record.result is not None and state not in (states.PENDING, states.STARTED):
        try:
            value = st.codecs.loads_result(record.result, (record.rtype or b"json").decode())
        except Exception as exc:  # an undecodable or refused payload: say so, don't 500
            log.warning("Could not decode the stored result of task %s: %s", task_id, exc)
            undecodable = True
    body = status_body(
        task_id, state, value,
        traceback=record.tb.decode(errors="replace") if record.tb else None,
        reason=record.reason.decode(errors="replace") if record.reason else None,
        started_ms=_int(record.st), updated_ms=_int(record.upd), now_ms=now_ms,
        expose_tracebacks=st.settings.expose_tracebacks)
    if undecodable and body["error"] is None:
        body["error"] = {"type": "DecodeError", "message": "The stored value could not be decoded."}
    return Found("task", _TaskSnapshot(task_id, jobs, st.app, record), body,
                 _owners([record.owner]), [st.keys.events(task_id)])


def _owners(values: list[bytes | None]) -> frozenset[str]:
    return frozenset(v.decode() for v in values if v)


def group_body(group_id: str, members: list[tuple[str, str, int | None, int | None]],
               now_ms: int | None = None) -> dict[str, Any]:
    """Build the status JSON of a group from its members' ``(id, state, started, updated)``.

    PENDING while no member has started; STARTED while any is unfinished; when all finished:
    SUCCESS, or FAILURE if any failed, or REVOKED if none failed and any was revoked.
    """
    total = len(members)
    counts = {s: 0 for s in (states.SUCCESS, states.FAILURE, states.REVOKED, states.PENDING)}
    for _, state, _, _ in members:
        if state in counts:
            counts[state] += 1
    finished = counts[states.SUCCESS] + counts[states.FAILURE] + counts[states.REVOKED]
    error = None
    if finished == total:
        if counts[states.FAILURE]:
            state = states.FAILURE
            error = {"type": "GroupFailed",
                     "message": f"{counts[states.FAILURE]} of {total} tasks failed"}
        elif counts[states.REVOKED]:
            state = states.REVOKED
            error = {"type": "TaskRevokedError",
                     "message": f"{counts[states.REVOKED]} of {total} tasks were revoked"}
        else:
            state = states.SUCCESS
    elif counts[states.PENDING] == total:
        state = states.PENDING
    else:
        state = states.STARTED
    started = [s for _, _, s, _ in members if s]
    updated = max((u for _, _, _, u in members if u), default=None)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    status = f"{finished} of {total} done"
    if counts[states.FAILURE]:
        status += f", {counts[states.FAILURE]} failed"
    return {
        "id": group_id,
        "state": state,
        "current": finished,
        "total": total,
        "percent": _percent(finished, total) if total else 100.0,
        "status": status,
        "meta": None,
        "result": None,
        "error": error,
        "eta_seconds": None if state in states.READY_STATES else _eta(
            finished, total, min(started, default=None), now_ms),
        "updated_at": _iso(updated),
        "completed": counts[states.SUCCESS],
        "failed": counts[states.FAILURE],
        "revoked": counts[states.REVOKED],
        "children": [{"id": i, "state": s} for i, s, _, _ in members],
        "_upd": updated,
    }


def lookup(jobs: Jobs, ident: str) -> Found | None:
    """Read the status of a task or group id: one round trip for a task, two for a group.

    :returns: None for an id that is not known (never enqueued, or expired).
    :raises redis.ConnectionError: Redis is unreachable (the views answer 503).
    """
    st: AppState = current_app.extensions["jobs"]
    pipe = st.client.pipeline(transaction=False)
    pipe.hmget(st.keys.task(ident), _FIELDS)
    pipe.lrange(st.keys.group(ident), 0, -1)
    pipe.time()
    values, member_ids, now = pipe.execute()
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    record = Record(values)
    if record.exists:
        return _task_found(st, jobs, ident, record, now_ms)
    if not member_ids:
        return None
    ids = [m.decode() for m in member_ids]
    pipe = st.client.pipeline(transaction=False)
    for m in ids:
        pipe.hmget(st.keys.task(m), _MEMBER_FIELDS)
    rows = pipe.execute()
    members = [(m, (row[0] or b"PENDING").decode(), _int(row[1]), _int(row[2]))
               for m, row in zip(ids, rows, strict=True)]
    owners = _owners([row[3] for row in rows])
    result = _GroupSnapshot(ident, [AsyncResult(m, jobs=jobs) for m in ids], jobs=jobs, app=st.app)
    result.owner = next(iter(owners)) if len(owners) == 1 else None
    return Found("group", result, group_body(ident, members, now_ms), owners,
                 [st.keys.events(m) for m in ids])


def eager_body(result: AsyncResult | GroupResult) -> dict[str, Any]:
    """The status JSON of an eager result (run in this process, not stored in Redis)."""
    if isinstance(result, GroupResult):
        return group_body(result.id, [(r.id, r.state, None, None) for r in result.results])
    assert isinstance(result, EagerResult)
    now_ms = int(time.time() * 1000)
    st: AppState = current_app.extensions["jobs"]
    return status_body(result.id, result.state, result.result, traceback=result.traceback,
                       updated_ms=now_ms, now_ms=now_ms,
                       expose_tracebacks=st.settings.expose_tracebacks)


# -- responses ----------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    default = getattr(current_app.json, "default", None)
    if default is not None:
        try:
            return default(value)
        except TypeError:
            pass
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (not JSON; browsers refuse them) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(body: dict[str, Any]) -> str:
    """Compact JSON on one line (as SSE ``data:`` needs); private ``_`` keys left out."""
    public = {k: v for k, v in body.items() if not k.startswith("_")}
    try:
        return json.dumps(public, default=_json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(public), default=_json_default, separators=(",", ":"))


def _json_response(body: dict[str, Any], status: int = 200,
                   headers: dict[str, str] | None = None) -> Response:
    response = current_app.response_class(dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def _error_body(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}, "http_status": code}


def accepted(result: AsyncResult | GroupResult) -> Response:
    """The response for a task or group just started: ``202`` + ``Location`` + JSON.

    The body is ``{id, status_url, events_url}``; ``Location`` is the status URL. A group
    gets one URL for the whole group. An eager result (``JOBS_ALWAYS_EAGER`` or ``apply()``)
    is not stored in Redis, so its status URL would be 404: it gets ``200`` with its final
    status inline (the status JSON plus ``status_url`` and ``events_url``).
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
        return _json_response({**eager_body(result), **urls}, 200, headers)
    return _json_response({"id": result.id, **urls}, 202, headers)


# -- authorization ------------------------------------------------------------------------------


_imported: dict[str, Any] = {}


def _hook(config_key: str, value: Any,
          fallback: Callable[..., Any] | None) -> Callable[..., Any] | None:
    if isinstance(value, str):
        if value not in _imported:
            _imported[value] = import_string(value)
        value = _imported[value]
    if value is not None and not callable(value):
        raise TypeError(f"{config_key} must be a callable or an import string, not {value!r}")
    return value or fallback


def authorize(jobs: Jobs, action: str, found: Found) -> None:
    """Refuse with 403 unless both rules allow ``action`` ("read" or "revoke") on ``found``.

    1. The owner rule, when a current-owner hook is configured: a task started with
       ``owner=`` is only for the user whose id the hook returns (for a group: every member's
       owner must match). Tasks without an owner are not restricted by it.
    2. The status authorizer, when configured: ``authorizer(action, result)`` must be truthy.

    Either hook may also raise an HTTP error itself (``abort(404)`` to hide existence).
    """
    settings = jobs.state().settings
    owner_hook = _hook("JOBS_CURRENT_OWNER", settings.current_owner, jobs._current_owner)
    if owner_hook is not None and found.owners:
        me = owner_hook()
        if me is None or any(str(me) != owner for owner in found.owners):
            raise Forbidden("This task belongs to another user.")
    authorizer = _hook("JOBS_STATUS_AUTHORIZER", settings.status_authorizer,
                       jobs._status_authorizer)
    if authorizer is not None and not authorizer(action, found.result):
        raise Forbidden(f"Not allowed to {action} this task.")


def refuse_cross_site() -> None:
    """Refuse a state-changing request sent by another site (CSRF), with 403.

    Browsers send ``Sec-Fetch-Site``: only ``same-origin``, ``same-site`` and ``none`` (typed
    by the user) pass. Older browsers send ``Origin`` on cross-origin POSTs: its host must be
    this request's host. Requests with neither (non-browser clients) pass.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.lower() not in _CROSS_SITE_OK:
            raise Forbidden("Cross-site request refused.")
        return
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
        raise Forbidden("Cross-origin request refused.")


# -- events (SSE) -------------------------------------------------------------------------------


def _fingerprint(body: dict[str, Any]) -> str:
    """What a client needs to see again: all but the clock-driven fields."""
    return dumps({k: v for k, v in body.items() if k not in ("eta_seconds", "updated_at")})


def _sse(found: Found) -> bytes:
    return f"id: {found.event_id}\ndata: {dumps(found.body)}\n\n".encode()


def _update(found: Found | None) -> Update:
    """A read rendered once for every stream of its id (``GONE`` if the id is not known)."""
    if found is None:
        return GONE
    return Update(_fingerprint(found.body), _sse(found), found.final)


def _read_update(jobs: Jobs, ident: str) -> Update:
    """The SSE hub's reader: the status of ``ident`` now (in the app context)."""
    return _update(lookup(jobs, ident))


def events_hub(st: AppState) -> Hub:
    """The SSE hub of ``st``'s app in this process: one pub/sub connection for all its streams."""
    return hub_for(st, functools.partial(_read_update, st.jobs))


class EventStream:
    """The body of one ``/events/`` response: an iterator of SSE chunks.

    Follows its id through the process's SSE hub (``follower``, already subscribed; None for a
    status that is already final) and leaves it when the stream ends or the response is closed,
    whichever comes first (``close()`` is idempotent and also runs if the client went away
    before the first chunk).
    """

    def __init__(self, first: Update, follower: Follower | None, heartbeat: float,
                 max_age: float) -> None:
        self._first = first
        self._follower = follower
        self._heartbeat = max(0.01, heartbeat)
        self._deadline = time.monotonic() + max_age
        self._gen = self._events()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def close(self) -> None:
        """Stop the stream and leave the hub (the last stream of an id unsubscribes)."""
        try:
            self._gen.close()
        except ValueError:  # closed from another thread while running: left below
            pass
        self._leave()

    def _leave(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.close()

    def _events(self) -> Generator[bytes, None, None]:
        try:
            yield f"retry: {SSE_RETRY_MS}\n\n".encode()
            update = self._first
            yield update.chunk
            if update.final or self._follower is None:
                return
            yield from self._follow(self._follower, update)
        except GeneratorExit:
            raise
        except (redis.RedisError, OSError) as exc:
            # Redis went away mid-stream: end it; the client reconnects after `retry`.
            log.info("Event stream ended by a Redis error: %s", exc)
        finally:
            self._leave()

    def _follow(self, follower: Follower, update: Update) -> Generator[bytes, None, None]:
        last = update.fingerprint
        next_beat = time.monotonic() + self._heartbeat
        while not follower.closed:
            now = time.monotonic()
            if now >= self._deadline:
                return
            got = follower.wait(min(next_beat, self._deadline) - now)
            if got is None:
                if time.monotonic() < next_beat:
                    continue  # the deadline, or closed
                # Heartbeat time: re-read (shared with the id's other streams) as a safety net
                # for a change whose notification was lost; send it, or a comment that keeps
                # proxies from closing an idle connection.
                got = follower.refresh(not_before=time.monotonic() - self._heartbeat / 2)
                if got.fingerprint == last:
                    yield b": ping\n\n"
                    next_beat = time.monotonic() + self._heartbeat
                    continue
            if got.fingerprint != last:
                last = got.fingerprint
                if got.chunk:
                    yield got.chunk
                next_beat = time.monotonic() + self._heartbeat
            if got.final:  # or gone: forgotten or expired meanwhile
                return


# -- the blueprint ------------------------------------------------------------------------------


def make_blueprint(jobs: Jobs) -> Blueprint:
    """Build the ``jobs`` blueprint for ``jobs`` (``init_app`` registers it at
    :data:`JOBS_URL_PREFIX`; with ``JOBS_REGISTER_BLUEPRINT = False`` register it yourself)."""
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
        return _json_response(found.body)

    @bp.get("/events/<task_id>")
    def events(task_id: str) -> Response:
        """Server-Sent Events: the status now, then one event per change until final."""
        found = find(task_id)
        authorize(jobs, "read", found)
        st: AppState = current_app.extensions["jobs"]
        follower = None
        if found.final:
            if request.headers.get("Last-Event-ID") == found.event_id:
                # A reconnect after the final event: 204 tells EventSource to stop.
                return Response(status=204, headers={"Cache-Control": "no-store"})
            first = _update(found)
        else:
            # One pub/sub connection per process for all streams; returns once subscribed.
            min_interval = st.settings.progress_interval if found.kind == "group" else 0.0
            follower = events_hub(st).follow(task_id, found.channels, min_interval=min_interval)
            try:
                # Read again now that we are subscribed: no change can slip in between.
                first = follower.refresh()
            except BaseException:
                follower.close()
                raise
            if first is GONE:  # forgotten or expired meanwhile: send what we found, and end
                first = replace(_update(found), final=True)
        stream = EventStream(first, follower,
                             heartbeat=st.settings.sse_heartbeat,
                             max_age=st.settings.sse_max_age)
        response = Response(stream_with_context(stream), mimetype="text/event-stream")
        response.call_on_close(stream.close)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
        return response

    @bp.route("/revoke/<task_id>", methods=["GET", "POST"])
    def revoke(task_id: str) -> Response:
        """Cancel a task (terminating it if it runs) or every member of a group."""
        if request.method != "POST":
            raise MethodNotAllowed(valid_methods=["POST"])
        refuse_cross_site()
        found = find(task_id)
        authorize(jobs, "revoke", found)
        found.result.revoke(terminate=True)
        return _json_response((lookup(jobs, task_id) or found).body)

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
        return _json_response(_error_body(exc.code, type(exc).__name__, exc.description or ""),
                              exc.code, headers)

    def unavailable(exc: Exception) -> Response:
        log.warning("Job store unavailable: %s", exc)
        return _json_response(
            _error_body(503, "ServiceUnavailable", "The job store is unavailable; try again shortly."),
            503, {"Retry-After": str(RETRY_AFTER)})

    for exc_type in _BROKER_ERRORS:
        bp.register_error_handler(exc_type, unavailable)

    return bp
