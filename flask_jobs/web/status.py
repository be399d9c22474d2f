"""The status JSON: what ``/status/``, ``/events/`` and ``/revoke/`` answer about a task or group.

These functions turn what was read (a state, a decoded value, a few timestamps) into the body
described in ``docs/web.rst``. They need no Redis, so the shape of the body can be tested
without one; :mod:`~flask_jobs.web.encoding` turns it into JSON.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

from flask import current_app

from .. import states
from ..result import AsyncResult, EagerResult, GroupResult
from ..state import AppState


def _number(value: object) -> int | float | None:
    """``value`` if it can fill a progress bar (a finite number, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None  # NaN and infinities can't fill a bar


def _iso(ms: int | None) -> str | None:
    """A time in ms since the epoch as ISO 8601 in UTC (``...Z``), None for no time."""
    if not ms:
        return None
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _percent(current: float | None, total: float | None) -> float | None:
    """``current`` of ``total`` in percent (0 to 100, one decimal), None if unknown."""
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

    :param task_id: the task's id.
    :param state: the task's state name.
    :param value: the decoded stored value: the meta of a progress or custom state, the return
        value of SUCCESS, the failure description (or exception) of FAILURE/RETRY/REVOKED.
    :param traceback: the stored traceback, shown only with ``expose_tracebacks``.
    :param reason: why the task was revoked, if it was.
    :param started_ms: when the task started (ms since the epoch), for ``eta_seconds``.
    :param updated_ms: when the record last changed, for ``updated_at`` (and the SSE ``id:``).
    :param now_ms: the time now, by the clock ``started_ms`` comes from (default: this host's).
    :param expose_tracebacks: :data:`JOBS_EXPOSE_TRACEBACKS`.
    :returns: the body, plus the private ``_upd`` key that
        :func:`~flask_jobs.web.encoding.dumps` leaves out.
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


def group_body(group_id: str, members: list[tuple[str, str, int | None, int | None]],
               now_ms: int | None = None) -> dict[str, Any]:
    """Build the status JSON of a group from its members' ``(id, state, started, updated)``.

    PENDING while no member has started; STARTED while any is unfinished; when all finished:
    SUCCESS, or FAILURE if any failed, or REVOKED if none failed and any was revoked.

    :param group_id: the group's id.
    :param members: one tuple per member, in the group's order; times in ms since the epoch.
    :param now_ms: the time now, by the clock the member times come from (default: this host's).
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


def eager_body(result: AsyncResult | GroupResult) -> dict[str, Any]:
    """The status JSON of an eager result (run in this process, not stored in Redis).

    :param result: an :class:`~flask_jobs.result.EagerResult`, or a group of them.
    """
    if isinstance(result, GroupResult):
        return group_body(result.id, [(r.id, r.state, None, None) for r in result.results])
    assert isinstance(result, EagerResult)
    now_ms = int(time.time() * 1000)
    st: AppState = current_app.extensions["jobs"]
    return status_body(result.id, result.state, result.result, traceback=result.traceback,
                       updated_ms=now_ms, now_ms=now_ms,
                       expose_tracebacks=st.settings.expose_tracebacks)
