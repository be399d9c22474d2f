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
from ..connection import data, text
from ..result import FIELDS, AsyncResult, GroupResult, Record
from ..state import AppState, Registry
from .status import Counters, counters_body, group_body, status_body, workflow_body

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
    #: For a chain's last step or a chord's body: ``("chain" or "chord", the workflow's id)``.
    workflow: tuple[str, str] | None = None

    @property
    def final(self) -> bool:
        """Whether nothing will change any more."""
        return self.body["state"] in states.READY_STATES

    @property
    def event_id(self) -> str:
        """The SSE ``id:``: the update time in ms (the same for the same final status)."""
        return str(self.body.get("_upd") or 0)


def _int(value: bytes | str | None) -> int | None:
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


#: A group's status lists its members' states (``children``) up to this many members; a larger
#: one answers from its counters alone.
CHILDREN_LIMIT = 100
#: The counters a workflow's status reads (``gc:<id>``).
_COUNTERS = ("total", "done", "ok", "failed", "revoked", "fail", "at", "upd", "owner", "cur",
             "last")


def lookup(jobs: Registry, ident: str) -> Found | None:
    """Read the status of a task, group, chain or chord id: one round trip for a task or a
    large group, two for a group listing its children or a workflow's result, three while a
    chain's step runs (its progress), however many members a workflow has.

    A group answers from its counters; a chain's result (its last step) folds in the chain's
    counters and the running step's progress; a chord's result (its body) folds in its
    header's counters.

    Runs in the app context of the app whose Redis holds the id.

    :param jobs: the extension the results are made for.
    :param ident: a task or group id.
    :returns: None for an id that is not known (never enqueued, or expired).
    :raises redis.ConnectionError: Redis is unreachable (the views answer 503).
    """
    st: AppState = current_app.extensions["jobs"]
    keys = st.keys
    pipe = st.client.pipeline(transaction=False)
    pipe.hmget(keys.task(ident), *FIELDS, "hdr", "chain")
    pipe.hmget(keys.counters(ident), _COUNTERS)
    pipe.lrange(keys.group(ident), 0, CHILDREN_LIMIT)  # (a group's first members, at most)
    pipe.time()
    values, counters, first_ids, now = pipe.execute()
    hdr, chain = values[-2:]
    # Redis's clock, the one that stamped ``st`` and ``upd``: a web host with a skewed clock
    # still gets the ETA right.
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    record = Record(values[:-2])
    if record.exists:
        found = _task_found(st, jobs, ident, record, now_ms)
        if chain or hdr:
            return _workflow_found(st, found, text(chain or hdr), bool(chain), now_ms)
        return found
    if counters[0] is not None:
        return _group_found(st, jobs, ident, dict(zip(_COUNTERS, counters, strict=True)),
                            [text(m) for m in first_ids], now_ms)
    return _listed_group_found(st, jobs, ident, now_ms) if first_ids else None


def _workflow_found(st: AppState, found: Found, workflow: str, is_chain: bool,
                    now_ms: int) -> Found:
    """A chain's last step or a chord's body, with the whole workflow's progress."""
    c = dict(zip(_COUNTERS, st.client.hmget(st.keys.counters(workflow), _COUNTERS),
                 strict=True))
    if c["total"] is None:  # expired meanwhile: the task's own status
        return found
    if is_chain and c["last"] is not None and text(c["last"]) != found.result.id:
        return found  # an earlier step of a chain: its own status
    total, done = int(c["total"]), int(c["done"] or 0)
    channels = [*found.channels, st.keys.events(workflow)]
    if is_chain:
        fraction = 0.0
        if c["cur"] and done < total:
            fraction = _step_fraction(st, text(c["cur"]))
        status = f"step {min(done + 1, total)} of {total}"
        body = workflow_body(found.body, done + fraction, total, status, None,
                             _int(c["at"]), now_ms)
    else:  # a chord's body: the header's tasks, then the body itself
        failed = None
        if c["failed"] or c["revoked"]:
            n = int(c["failed"] or 0) + int(c["revoked"] or 0)
            failed = f"{n} of {total} header tasks failed"
        own = found.body
        fraction = (own["current"] / own["total"]) if own["state"] == states.PROGRESS and \
            own["current"] is not None and own["total"] else 0.0
        body = workflow_body(own, done + fraction, total + 1,
                             f"{done} of {total} done", failed, _int(c["at"]), now_ms)
    return Found("task", found.result, body, found.owners, channels,
                 ("chain" if is_chain else "chord", workflow))


def related_ids(found: Found) -> list[str]:
    """What else revoking ``found`` cancels, so a workflow stops as a whole: a group's
    members, a chord's header tasks, the running step of a chain (its later steps then end
    REVOKED with it)."""
    st: AppState = current_app.extensions["jobs"]
    if found.kind == "group":
        listed = isinstance(found.result, GroupResult) and found.result.results
        if listed or not found.body["total"]:
            return []
        return [text(m) for m in st.client.lrange(st.keys.group(found.result.id), 0, -1)]
    if found.workflow is None:
        return []
    kind, workflow = found.workflow
    if kind == "chord":
        return [text(m) for m in st.client.lrange(st.keys.group(workflow), 0, -1)]
    cur = st.client.hget(st.keys.counters(workflow), "cur")
    return [text(cur)] if cur else []


def _step_fraction(st: AppState, step_id: str) -> float:
    """How far the running step of a chain is (0 to 1), from its progress report."""
    state, rtype, result = st.client.hmget(st.keys.task(step_id), "state", "rtype", "result")
    if state != b"PROGRESS" or result is None:
        return 0.0
    try:
        meta = st.codecs.loads_result(data(result), text(rtype or b"json"))
        current, total = float(meta["current"]), float(meta["total"])
    except Exception:  # no current/total in the meta: nothing to fold in
        return 0.0
    return min(1.0, max(0.0, current / total)) if total > 0 else 0.0


def _group_found(st: AppState, jobs: Registry, group_id: str, c: dict[str, Any],
                 first_ids: list[str], now_ms: int) -> Found:
    """A group, from its counters (and its members' states, if it has few: ``first_ids``
    are all of them then)."""
    counters = Counters(int(c["total"]), int(c["done"] or 0), int(c["ok"] or 0),
                        int(c["failed"] or 0), int(c["revoked"] or 0), _int(c["at"]),
                        _int(c["upd"]))
    children = None
    ids: list[str] = []
    if counters.total <= CHILDREN_LIMIT and first_ids:
        ids = first_ids
        pipe = st.client.pipeline(transaction=False)
        for m in ids:
            pipe.hget(st.keys.task(m), "state")
        children = [(m, text(s or b"PENDING")) for m, s in zip(ids, pipe.execute(),
                                                                    strict=True)]
    owner = text(c["owner"]) if c["owner"] else None
    owners = frozenset() if owner is None or owner == "\0mixed" else frozenset([owner])
    result = _GroupSnapshot(group_id, [AsyncResult(m, jobs=jobs) for m in ids], jobs=jobs,
                            app=st.app)
    result.owner = next(iter(owners)) if owners else None
    # A group's channel hears each member finish; a listed member's own channel its start and
    # progress too (for the children's states), up to CHILDREN_LIMIT channels.
    return Found("group", result, counters_body(group_id, counters, children, now_ms), owners,
                 [st.keys.events(group_id), *(st.keys.events(m) for m in ids)])


def _listed_group_found(st: AppState, jobs: Registry, group_id: str,
                        now_ms: int) -> Found | None:
    """A group without counters (sent by an older version): read from every member."""
    member_ids = st.client.lrange(st.keys.group(group_id), 0, -1)
    if not member_ids:
        return None
    ids = [text(m) for m in member_ids]
    pipe = st.client.pipeline(transaction=False)
    for m in ids:
        pipe.hmget(st.keys.task(m), _MEMBER_FIELDS)
    rows = pipe.execute()
    members = [(m, (row[0] or b"PENDING").decode(), _int(row[1]), _int(row[2]))
               for m, row in zip(ids, rows, strict=True)]
    owners = _owners([row[3] for row in rows])
    result = _GroupSnapshot(group_id, [AsyncResult(m, jobs=jobs) for m in ids], jobs=jobs,
                            app=st.app)
    result.owner = next(iter(owners)) if len(owners) == 1 else None
    return Found("group", result, group_body(group_id, members, now_ms), owners,
                 [st.keys.events(m) for m in ids])
