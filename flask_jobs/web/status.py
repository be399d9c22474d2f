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


class Counters:
    """A group's counters as read (``gc:<group>``, see :mod:`flask_jobs.keys`)."""

    __slots__ = ("total", "done", "ok", "failed", "revoked", "created_ms", "updated_ms")

    def __init__(self, total: int, done: int = 0, ok: int = 0, failed: int = 0,
                 revoked: int = 0, created_ms: int | None = None,
                 updated_ms: int | None = None) -> None:
        self.total, self.done, self.ok, self.failed, self.revoked = (total, done, ok, failed,
                                                                    revoked)
        self.created_ms, self.updated_ms = created_ms, updated_ms


def group_body(group_id: str, members: list[tuple[str, str, int | None, int | None]],
               now_ms: int | None = None) -> dict[str, Any]:
    """Build the status JSON of a group from its members' ``(id, state, started, updated)``
    (a group without counters: an eager one, or one sent by an older version).

    :param group_id: the group's id.
    :param members: one tuple per member, in the group's order; times in ms since the epoch.
    :param now_ms: the time now, by the clock the member times come from (default: this host's).
    """
    found = [s for _, s, _, _ in members]
    counters = Counters(len(members), sum(s in states.READY_STATES for s in found),
                        found.count(states.SUCCESS), found.count(states.FAILURE),
                        found.count(states.REVOKED),
                        min((s for _, _, s, _ in members if s), default=None),
                        max((u for _, _, _, u in members if u), default=None))
    return counters_body(group_id, counters, [(i, s) for i, s, _, _ in members], now_ms)


def counters_body(group_id: str, c: Counters, children: list[tuple[str, str]] | None,
                  now_ms: int | None = None) -> dict[str, Any]:
    """Build the status JSON of a group from its counters: one read however many members.

    FAILURE as soon as a member failed (the group has failed: ``get()`` raises); when all
    finished, SUCCESS, or REVOKED if any was revoked. Before that, STARTED once a member
    finished or (for a group small enough to list its ``children``) started; else PENDING.

    :param children: ``(id, state)`` of each member, for a group of at most
        :data:`~flask_jobs.web.lookups.CHILDREN_LIMIT` members (None: not listed).
    """
    total, finished = c.total, c.done
    error = None
    if c.failed:
        state = states.FAILURE
        error = {"type": "GroupFailed", "message": f"{c.failed} of {total} tasks failed"}
    elif finished >= total:
        state = states.REVOKED if c.revoked else states.SUCCESS
        if c.revoked:
            error = {"type": "TaskRevokedError",
                     "message": f"{c.revoked} of {total} tasks were revoked"}
    elif finished or any(s != states.PENDING for _, s in children or ()):
        state = states.STARTED
    else:
        state = states.PENDING
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    status = f"{finished} of {total} done"
    if c.failed:
        status += f", {c.failed} failed"
    body = {
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
            finished, total, c.created_ms, now_ms),
        "updated_at": _iso(c.updated_ms),
        "completed": c.ok,
        "failed": c.failed,
        "revoked": c.revoked,
        "_upd": c.updated_ms,
    }
    if children is not None:
        body["children"] = [{"id": i, "state": s} for i, s in children]
    return body


def workflow_body(body: dict[str, Any], done: float, total: int, status: str,
                  failed: str | None, created_ms: int | None, now_ms: int) -> dict[str, Any]:
    """Fold a workflow's progress into the status JSON of its result task (a chain's last
    step, a chord's body): ``current`` of ``total`` steps, PROGRESS while it moves, FAILURE as
    soon as a chord's header task failed (its body will fail with ChordError).

    :param body: the task's own status JSON (see :func:`status_body`).
    :param done: the steps done, the running one's progress as a fraction.
    :param total: every step (a chord: its header's tasks and the body).
    :param failed: an error message when a step failed (the workflow will fail), or None.
    """
    body = dict(body)
    if body["state"] in states.READY_STATES:  # its own outcome; the steps all counted
        current = total if body["state"] == states.SUCCESS else round(done, 3)
        body.update(current=current, total=total, status=status)
        return body
    if failed:
        body.update(state=states.FAILURE, error={"type": "ChordError", "message": failed},
                    eta_seconds=None)
    elif done > 0 or body["state"] != states.PENDING:
        body["state"] = states.PROGRESS if body["state"] in (states.PENDING, states.STARTED) \
            else body["state"]
        body["eta_seconds"] = _eta(done, total, created_ms, now_ms)
    current = round(done, 3)
    body.update(current=current, total=total, percent=_percent(current, total), status=status)
    if body["state"] == states.PROGRESS and body["meta"] is None:
        body["meta"] = {"current": current, "total": total, "status": status}
    return body


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
