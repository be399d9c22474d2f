"""Reading an id from Redis: what the views know about a task or a group, as a :class:`Found`.

A view reads an id once and answers from that read: the status JSON, the owners the
authorization checks, and the result object handed to the status authorizer (answered from the
same read, so a hook that looks at ``result.state`` costs no round trip).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from .. import states
from ..result import _FIELDS, AsyncResult, GroupResult, Record
from ..state import AppState, Registry
from .status import group_body, status_body

# The logger of the single module the web layer used to be, so logging configured for it still
# applies.
log = logging.getLogger("flask_jobs.web")

#: The fields of a group member's record that the group's status needs.
_MEMBER_FIELDS = ("state", "st", "upd", "owner")


class _TaskSnapshot(AsyncResult):
    """An :class:`AsyncResult` answered from the record the view read (one round trip)."""

    def __init__(self, task_id: str, jobs: Registry, app: Flask, record: Record) -> None:
        super().__init__(task_id, jobs=jobs, app=app)
        self._cache = record


class _GroupSnapshot(GroupResult):
    """A :class:`GroupResult` with the ``owner`` its members share (None if they differ)."""

    owner: str | None = None


@dataclass
class Found:
    """What one read of an id found: the result object, its status JSON, and its owners."""

    #: ``"task"`` or ``"group"``.
    kind: str
    #: The task's result, or the group's (given to the status authorizer).
    result: AsyncResult | GroupResult
    #: The status JSON (see :func:`~flask_jobs.web.status.status_body`).
    body: dict[str, Any]
    #: The owners of the task or of the group's members (empty: nobody's in particular).
    owners: frozenset[str] = field(default_factory=frozenset)
    #: The pub/sub channels announcing a change: the task's, or every member's.
    channels: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """Whether nothing will change any more."""
        return self.body["state"] in states.READY_STATES

    @property
    def event_id(self) -> str:
        """The SSE ``id:``: the update time in ms (the same for the same final status)."""
        return str(self.body.get("_upd") or 0)


def _int(value: bytes | None) -> int | None:
    """A stored integer (a time in ms), None if the field is missing or empty."""
    return int(value) if value else None


def _owners(values: list[bytes | None]) -> frozenset[str]:
    """The distinct owners among stored ``owner`` fields, missing ones left out."""
    return frozenset(v.decode() for v in values if v)


def _task_found(st: AppState, jobs: Registry, task_id: str, record: Record,
                now_ms: int) -> Found:
    """What the record of task ``task_id`` says, read at ``now_ms`` (Redis's clock)."""
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


def lookup(jobs: Registry, ident: str) -> Found | None:
    """Read the status of a task or group id: one round trip for a task, two for a group.

    Runs in the app context of the app whose Redis holds the id.

    :param jobs: the extension the results are made for.
    :param ident: a task or group id.
    :returns: None for an id that is not known (never enqueued, or expired).
    :raises redis.ConnectionError: Redis is unreachable (the views answer 503).
    """
    st: AppState = current_app.extensions["jobs"]
    pipe = st.client.pipeline(transaction=False)
    pipe.hmget(st.keys.task(ident), _FIELDS)
    pipe.lrange(st.keys.group(ident), 0, -1)
    pipe.time()
    values, member_ids, now = pipe.execute()
    # Redis's clock, the one that stamped ``st`` and ``upd``: a web host with a skewed clock
    # still gets the ETA right.
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
